"""Sparkplug B payload messages for the tests, built at run time from a hand-written descriptor.

The field names and numbers follow Eclipse Tahu's sparkplug_b.proto (Payload, Payload.Metric,
Payload.PropertySet, Payload.PropertyValue; the DataSet, Template and MetaData messages are left
out, as diode does not read them). Nothing is generated or copied: the descriptor below is the
list of fields, so no protoc is needed.
"""

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto

# Datatypes (Tahu numbering).
INT8, INT16, INT32, INT64 = 1, 2, 3, 4
UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT = 9, 10, 11, 12, 13, 14


def _field(message, name, number, kind, label=F.LABEL_OPTIONAL, type_name=None, oneof=None):
    field = message.field.add(name=name, number=number, type=kind, label=label)
    if type_name:
        field.type_name = type_name
    if oneof is not None:
        field.oneof_index = oneof
    return field


def _build():
    file = descriptor_pb2.FileDescriptorProto(
        name="diode_tests_sparkplug_b.proto", package="org.eclipse.tahu.protobuf", syntax="proto2"
    )
    payload = file.message_type.add(name="Payload")

    property_value = payload.nested_type.add(name="PropertyValue")
    _field(property_value, "type", 1, F.TYPE_UINT32)
    _field(property_value, "is_null", 2, F.TYPE_BOOL)
    property_value.oneof_decl.add(name="value")
    for name, number, kind in [
        ("int_value", 3, F.TYPE_UINT32),
        ("long_value", 4, F.TYPE_UINT64),
        ("float_value", 5, F.TYPE_FLOAT),
        ("double_value", 6, F.TYPE_DOUBLE),
        ("boolean_value", 7, F.TYPE_BOOL),
        ("string_value", 8, F.TYPE_STRING),
    ]:
        _field(property_value, name, number, kind, oneof=0)

    property_set = payload.nested_type.add(name="PropertySet")
    _field(property_set, "keys", 1, F.TYPE_STRING, label=F.LABEL_REPEATED)
    _field(
        property_set,
        "values",
        2,
        F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".org.eclipse.tahu.protobuf.Payload.PropertyValue",
    )

    metric = payload.nested_type.add(name="Metric")
    _field(metric, "name", 1, F.TYPE_STRING)
    _field(metric, "alias", 2, F.TYPE_UINT64)
    _field(metric, "timestamp", 3, F.TYPE_UINT64)
    _field(metric, "datatype", 4, F.TYPE_UINT32)
    _field(metric, "is_historical", 5, F.TYPE_BOOL)
    _field(metric, "is_transient", 6, F.TYPE_BOOL)
    _field(metric, "is_null", 7, F.TYPE_BOOL)
    _field(metric, "properties", 9, F.TYPE_MESSAGE, type_name=".org.eclipse.tahu.protobuf.Payload.PropertySet")
    metric.oneof_decl.add(name="value")
    for name, number, kind in [
        ("int_value", 10, F.TYPE_UINT32),
        ("long_value", 11, F.TYPE_UINT64),
        ("float_value", 12, F.TYPE_FLOAT),
        ("double_value", 13, F.TYPE_DOUBLE),
        ("boolean_value", 14, F.TYPE_BOOL),
        ("string_value", 15, F.TYPE_STRING),
        ("bytes_value", 16, F.TYPE_BYTES),
    ]:
        _field(metric, name, number, kind, oneof=0)

    _field(payload, "timestamp", 1, F.TYPE_UINT64)
    _field(payload, "metrics", 2, F.TYPE_MESSAGE, label=F.LABEL_REPEATED, type_name=".org.eclipse.tahu.protobuf.Payload.Metric")
    _field(payload, "seq", 3, F.TYPE_UINT64)
    _field(payload, "uuid", 4, F.TYPE_STRING)
    _field(payload, "body", 5, F.TYPE_BYTES)

    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("org.eclipse.tahu.protobuf.Payload"))


Payload = _build()


def set_value(metric, datatype, value):
    """Puts `value` in the field Tahu uses for `datatype` (signed integers as two's complement)."""
    if datatype in (INT8, INT16, INT32):
        metric.int_value = value & 0xFFFFFFFF
    elif datatype in (UINT8, UINT16, UINT32):
        metric.int_value = value
    elif datatype in (INT64, DATETIME):
        metric.long_value = value & 0xFFFFFFFFFFFFFFFF
    elif datatype == UINT64:
        metric.long_value = value
    elif datatype == FLOAT:
        metric.float_value = value
    elif datatype == DOUBLE:
        metric.double_value = value
    elif datatype == BOOLEAN:
        metric.boolean_value = value
    elif datatype in (STRING, TEXT):
        metric.string_value = value
    else:
        raise ValueError(f"datatype {datatype} is not used by the tests")

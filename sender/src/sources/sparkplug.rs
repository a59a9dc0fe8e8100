//! Sparkplug B over MQTT: the payload (protobuf, Eclipse Tahu's `sparkplug_b.proto`, written out
//! here with `prost` so no code generator is needed) and the state a host application keeps per
//! edge node: births, aliases, datatypes, sequence numbers and deaths. Pure: topic, bytes and the
//! receiving clock in, records and requests out; no IO (the MQTT client is in `mqtt`).
//!
//! Mapping (also in `config/sender.toml` and the README):
//! - Topic `spBv1.0/<group>/<type>/<edge node>[/<device>]`. NBIRTH and DBIRTH name the metrics
//!   (name, alias, datatype); NDATA and DDATA carry values by name or by alias. Each metric is the
//!   series `<series_prefix><group>/<edge node>[/<device>]/<metric name>`, no tags.
//! - Time: the metric's timestamp, else the payload's, else the receiving clock (all ms).
//!   Historical metrics (`is_historical`) are stored like the others, at their own timestamp, so a
//!   node's store-and-forward backlog fills the replica where it belongs; transient ones too.
//! - Values: Int8..Int64, UInt8..UInt32 and DateTime (ms since the epoch) as integers, UInt64 as
//!   an integer up to 2^63 − 1 (above: refused, counted malformed), Float and Double as floats
//!   (NaN and infinities refused), Boolean, String, Text and UUID as they are. DataSet, Bytes,
//!   File, Template and arrays are skipped and counted as unsupported.
//! - Quality: good, unless the metric is null (`is_null`: bad, stored as 0, false or "" by its
//!   datatype, whatever came before, so a replica is the same after a sender restart) or carries a `Quality` property: an integer is an OPC DA quality (192..=255
//!   good, 64..=127 uncertain, other values bad), a string is read like `ingest.quality_tag`
//!   (good, uncertain, bad, a status code).
//! - Death: NDEATH marks every metric of the node and its devices stale, DDEATH those of the
//!   device: each metric that has had a value gets one record at the death time (DDEATH's
//!   timestamp, else the receiving clock; NDEATH is the broker's will, written at connect time,
//!   so always the receiving clock) with its last value and quality Bad_NoCommunication
//!   (0x80310000). Queries with `--good-only` then stop at the death.
//! - Sequence: every message after NBIRTH carries `seq`, one more than the previous modulo 256. A
//!   gap, an unknown alias or data from a node not seen born is counted and answered with a
//!   rebirth request (NCMD `Node Control/Rebirth`), at most one per node per rebirth interval.
//!   Values with an unknown alias cannot be named and are dropped (counted); named ones are kept.

use std::collections::HashMap;

use diode_common::record::{Quality, Record, SeriesKey, Value};
use prost::Message;

/// Sparkplug B namespace: the first topic level.
pub const NAMESPACE: &str = "spBv1.0";
/// The metric a host application sets to ask an edge node for a rebirth.
pub const REBIRTH_METRIC: &str = "Node Control/Rebirth";
/// OPC UA Bad_NoCommunication: the quality of a metric after its node or device died.
pub const STALE_QUALITY: Quality = Quality(0x8031_0000);

/// Edge nodes one source tracks; births beyond are refused (counted malformed).
pub const MAX_NODES: usize = 100_000;
/// Devices per edge node.
pub const MAX_DEVICES_PER_NODE: usize = 10_000;
/// Metrics one birth may define.
pub const MAX_METRICS_PER_BIRTH: usize = 100_000;

/// The Tahu `Payload` message (the fields diode reads; others are skipped by the decoder).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    /// When the payload was made, in ms since the Unix epoch; the fallback time of its metrics.
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    /// The metrics it carries (births define them, data messages give values).
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    /// The message's sequence number, 0 to 255 and wrapping; absent in NDEATH.
    #[prost(uint64, optional, tag = "3")]
    pub seq: Option<u64>,
    /// Tahu's payload UUID; not used.
    #[prost(string, optional, tag = "4")]
    pub uuid: Option<String>,
    /// Tahu's opaque body; not used.
    #[prost(bytes = "vec", optional, tag = "5")]
    pub body: Option<Vec<u8>>,
}

/// `Payload.Metric`. Field 8 (MetaData), 17 (DataSet), 18 (Template) and 19 (extension) are not
/// read: a metric carrying them has no value here and is counted as unsupported.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    /// The metric's name; in data messages it may be left out for `alias`.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// The number a birth assigns to the name, so data messages can be shorter.
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    /// The value's time, in ms since the Unix epoch.
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    /// Tahu's datatype number; given in births, remembered per metric for data.
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    /// A store-and-forward value, stored like the others at its own time.
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    /// A value the node says need not be historized; stored anyway.
    #[prost(bool, optional, tag = "6")]
    pub is_transient: Option<bool>,
    /// The metric has no value: stored as 0, false or "" with quality bad.
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    /// Properties, of which diode reads only `Quality`.
    #[prost(message, optional, tag = "9")]
    pub properties: Option<PropertySet>,
    /// The value, by wire type; its meaning comes from `datatype`.
    #[prost(oneof = "MetricValue", tags = "10, 11, 12, 13, 14, 15, 16")]
    pub value: Option<MetricValue>,
}

/// `Payload.Metric.value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum MetricValue {
    /// Int8..Int32 and UInt8..UInt32, in 32 bits.
    #[prost(uint32, tag = "10")]
    IntValue(u32),
    /// Int64, UInt64 and DateTime.
    #[prost(uint64, tag = "11")]
    LongValue(u64),
    /// Float.
    #[prost(float, tag = "12")]
    FloatValue(f32),
    /// Double.
    #[prost(double, tag = "13")]
    DoubleValue(f64),
    /// Boolean.
    #[prost(bool, tag = "14")]
    BooleanValue(bool),
    /// String, Text and UUID.
    #[prost(string, tag = "15")]
    StringValue(String),
    /// Bytes and File: not stored.
    #[prost(bytes = "vec", tag = "16")]
    BytesValue(Vec<u8>),
}

/// `Payload.PropertySet`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertySet {
    /// Property names, paired by position with `values`.
    #[prost(string, repeated, tag = "1")]
    pub keys: Vec<String>,
    /// Property values, paired by position with `keys`.
    #[prost(message, repeated, tag = "2")]
    pub values: Vec<PropertyValue>,
}

/// `Payload.PropertyValue` (nested property sets, field 9 and up, are not read).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertyValue {
    /// Tahu's datatype number of the property.
    #[prost(uint32, optional, tag = "1")]
    pub r#type: Option<u32>,
    /// The property has no value.
    #[prost(bool, optional, tag = "2")]
    pub is_null: Option<bool>,
    /// The property's scalar value.
    #[prost(oneof = "PropertyScalar", tags = "3, 4, 5, 6, 7, 8")]
    pub value: Option<PropertyScalar>,
}

/// `Payload.PropertyValue.value`, scalars only.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum PropertyScalar {
    /// Int8..Int32, UInt8..UInt32.
    #[prost(uint32, tag = "3")]
    IntValue(u32),
    /// Int64, UInt64 and DateTime.
    #[prost(uint64, tag = "4")]
    LongValue(u64),
    /// Float.
    #[prost(float, tag = "5")]
    FloatValue(f32),
    /// Double.
    #[prost(double, tag = "6")]
    DoubleValue(f64),
    /// Boolean.
    #[prost(bool, tag = "7")]
    BooleanValue(bool),
    /// String and Text.
    #[prost(string, tag = "8")]
    StringValue(String),
}

/// Sparkplug datatypes diode stores (Tahu's numbering).
mod datatype {
    pub(super) const INT8: u32 = 1;
    pub(super) const INT16: u32 = 2;
    pub(super) const INT32: u32 = 3;
    pub(super) const INT64: u32 = 4;
    pub(super) const UINT8: u32 = 5;
    pub(super) const UINT16: u32 = 6;
    pub(super) const UINT32: u32 = 7;
    pub(super) const UINT64: u32 = 8;
    pub(super) const FLOAT: u32 = 9;
    pub(super) const DOUBLE: u32 = 10;
    pub(super) const BOOLEAN: u32 = 11;
    pub(super) const STRING: u32 = 12;
    pub(super) const DATETIME: u32 = 13;
    pub(super) const TEXT: u32 = 14;
    pub(super) const UUID: u32 = 15;
}

/// The kinds of Sparkplug message diode handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// NBIRTH: an edge node names its metrics; restarts its sequence at 0.
    NodeBirth,
    /// NDEATH: the node's will, published by the broker when the node is gone.
    NodeDeath,
    /// DBIRTH: a device of the node names its metrics.
    DeviceBirth,
    /// DDEATH: a device is gone.
    DeviceDeath,
    /// NDATA: values of the node's metrics.
    NodeData,
    /// DDATA: values of a device's metrics.
    DeviceData,
    /// NCMD, DCMD and STATE: commands and host state, not plant data; ignored.
    Other,
}

/// A parsed Sparkplug topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic<'a> {
    /// The group id, the second topic level.
    pub group: &'a str,
    /// The message type, the third level.
    pub message_type: MessageType,
    /// The edge node id, the fourth level.
    pub node: &'a str,
    /// The device id, the fifth level, for DBIRTH, DDATA and DDEATH.
    pub device: Option<&'a str>,
}

/// Why a message was refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SparkplugError {
    /// The topic is not a Sparkplug B topic: check the subscription's topic filter.
    #[error("topic is not spBv1.0/<group>/<type>/<edge node>[/<device>]")]
    BadTopic,
    /// The payload does not decode as protobuf; counted malformed.
    #[error("payload is not a Sparkplug B protobuf: {0}")]
    BadPayload(String),
    /// A birth over the limits ([`MAX_NODES`], [`MAX_DEVICES_PER_NODE`],
    /// [`MAX_METRICS_PER_BIRTH`]) or defining a metric twice; counted malformed.
    #[error("birth refused: {0}")]
    BirthRefused(String),
}

/// What one message gave: records to spool, counts for the metrics, and maybe a rebirth
/// request to publish.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// Records to spool, in message order.
    pub records: Vec<Record>,
    /// Sequence gaps, unknown aliases and data from a node not seen born.
    pub sequence_gaps: u64,
    /// Metrics whose value could not be stored (NaN, too long, UInt64 above i64::MAX, no name).
    pub malformed: u64,
    /// Metrics of types diode does not store.
    pub unsupported: u64,
    /// A node or device died.
    pub death: bool,
    /// Publish a rebirth request to this (group, edge node).
    pub rebirth: Option<(String, String)>,
    /// The first problem met, for the (rate-limited) log.
    pub problem: Option<String>,
}

impl Outcome {
    fn note(&mut self, problem: impl FnOnce() -> String) {
        if self.problem.is_none() {
            self.problem = Some(problem());
        }
    }
}

/// Parses a topic; `None` when it is not Sparkplug B.
pub fn parse_topic(topic: &str) -> Option<Topic<'_>> {
    let mut levels = topic.split('/');
    if levels.next()? != NAMESPACE {
        return None;
    }
    let group = levels.next()?;
    let kind = levels.next()?;
    if kind == "STATE" || group == "STATE" {
        return Some(Topic { group, message_type: MessageType::Other, node: "", device: None });
    }
    let node = levels.next()?;
    let device = levels.next();
    if levels.next().is_some() || group.is_empty() || node.is_empty() || device.is_some_and(str::is_empty) {
        return None;
    }
    let message_type = match (kind, device.is_some()) {
        ("NBIRTH", false) => MessageType::NodeBirth,
        ("NDEATH", false) => MessageType::NodeDeath,
        ("NDATA", false) => MessageType::NodeData,
        ("DBIRTH", true) => MessageType::DeviceBirth,
        ("DDEATH", true) => MessageType::DeviceDeath,
        ("DDATA", true) => MessageType::DeviceData,
        ("NCMD", false) | ("DCMD", true) => MessageType::Other,
        _ => return None,
    };
    Some(Topic { group, message_type, node, device })
}

/// One metric a birth defined.
#[derive(Debug, Clone)]
struct MetricInfo {
    series: SeriesKey,
    datatype: Option<u32>,
    last: Option<Value>,
}

/// The metrics of a node or of one of its devices.
#[derive(Debug, Default, Clone)]
struct MetricTable {
    /// `<series_prefix><group>/<node>/[<device>/]`: what a metric's name is appended to.
    prefix: String,
    metrics: Vec<MetricInfo>,
    by_name: HashMap<String, usize>,
    by_alias: HashMap<u64, usize>,
}

#[derive(Debug, Default)]
struct NodeState {
    /// `seq` of the last message, once known.
    seq: Option<u8>,
    /// An NBIRTH was seen (or restored) since the last NDEATH.
    born: bool,
    metrics: MetricTable,
    devices: HashMap<String, MetricTable>,
    last_rebirth_request_ns: Option<i64>,
}

/// The host application's view of every edge node heard on one MQTT connection.
#[derive(Debug)]
pub struct SparkplugDecoder {
    series_prefix: String,
    rebirth_interval_ns: i64,
    nodes: HashMap<(String, String), NodeState>,
}

impl SparkplugDecoder {
    /// `series_prefix` starts every series name; a node is asked for a rebirth at most once per
    /// `rebirth_interval_ns` (0: never asked).
    pub fn new(series_prefix: &str, rebirth_interval_ns: i64) -> Self {
        Self { series_prefix: series_prefix.to_owned(), rebirth_interval_ns, nodes: HashMap::new() }
    }

    /// Handles one message received at `now_ns`.
    pub fn handle(&mut self, topic: &str, payload: &[u8], now_ns: i64) -> Result<Outcome, SparkplugError> {
        let parsed = parse_topic(topic).ok_or(SparkplugError::BadTopic)?;
        if parsed.message_type == MessageType::Other {
            return Ok(Outcome::default());
        }
        let payload = Payload::decode(payload).map_err(|e| SparkplugError::BadPayload(e.to_string()))?;
        let mut outcome = Outcome::default();
        let key = (parsed.group.to_owned(), parsed.node.to_owned());
        if !self.nodes.contains_key(&key) && self.nodes.len() >= MAX_NODES {
            return Err(SparkplugError::BirthRefused(format!("more than {MAX_NODES} edge nodes")));
        }
        let prefix = format!("{}{}/{}/", self.series_prefix, parsed.group, parsed.node);
        let node = self.nodes.entry(key.clone()).or_default();
        if node.metrics.prefix.is_empty() {
            // Not born yet: named data is still stored where a birth would have put it.
            node.metrics.prefix.clone_from(&prefix);
        }
        match parsed.message_type {
            MessageType::NodeBirth => {
                let table = birth_table(&payload, &prefix)?;
                node.metrics = table;
                node.devices.clear();
                node.born = true;
                node.seq = payload.seq.map(|seq| seq as u8);
                data(&mut node.metrics, &payload, now_ns, &mut outcome);
            }
            MessageType::NodeDeath => {
                outcome.death = true;
                let tables = std::iter::once(&mut node.metrics).chain(node.devices.values_mut());
                for table in tables {
                    stale(table, now_ns, &mut outcome);
                }
                node.born = false;
                node.seq = None;
            }
            MessageType::DeviceBirth | MessageType::DeviceData | MessageType::DeviceDeath | MessageType::NodeData => {
                check_sequence(node, &payload, &mut outcome);
                let device = parsed.device.unwrap_or_default();
                let device_prefix = format!("{prefix}{device}/");
                match parsed.message_type {
                    MessageType::NodeData => data(&mut node.metrics, &payload, now_ns, &mut outcome),
                    MessageType::DeviceBirth => {
                        if !node.devices.contains_key(device) && node.devices.len() >= MAX_DEVICES_PER_NODE {
                            return Err(SparkplugError::BirthRefused(format!(
                                "more than {MAX_DEVICES_PER_NODE} devices on one edge node"
                            )));
                        }
                        let table = birth_table(&payload, &device_prefix)?;
                        let table = node.devices.entry(device.to_owned()).insert_entry(table).into_mut();
                        data(table, &payload, now_ns, &mut outcome);
                    }
                    MessageType::DeviceData => match node.devices.get_mut(device) {
                        Some(table) => data(table, &payload, now_ns, &mut outcome),
                        None => {
                            // Named metrics can still be stored; aliases cannot be resolved.
                            outcome.sequence_gaps += 1;
                            outcome.note(|| format!("DDATA from device {device} before its DBIRTH"));
                            let mut unknown = MetricTable { prefix: device_prefix, ..MetricTable::default() };
                            data(&mut unknown, &payload, now_ns, &mut outcome);
                        }
                    },
                    _ => {
                        outcome.death = true;
                        let time_ns = payload.timestamp.and_then(ms_to_ns).unwrap_or(now_ns);
                        if let Some(table) = node.devices.get_mut(device) {
                            stale(table, time_ns, &mut outcome);
                        }
                    }
                }
            }
            MessageType::Other => {}
        }
        if outcome.sequence_gaps > 0 && self.rebirth_interval_ns > 0 {
            let due =
                node.last_rebirth_request_ns.is_none_or(|at| now_ns.saturating_sub(at) >= self.rebirth_interval_ns);
            if due {
                node.last_rebirth_request_ns = Some(now_ns);
                outcome.rebirth = Some(key);
            }
        }
        Ok(outcome)
    }

    /// Replays a birth remembered from before a restart: names, aliases and datatypes only; no
    /// records, no sequence check.
    pub fn restore_birth(&mut self, topic: &str, payload: &[u8]) -> Result<(), SparkplugError> {
        let parsed = parse_topic(topic).ok_or(SparkplugError::BadTopic)?;
        let payload = Payload::decode(payload).map_err(|e| SparkplugError::BadPayload(e.to_string()))?;
        let key = (parsed.group.to_owned(), parsed.node.to_owned());
        let prefix = format!("{}{}/{}/", self.series_prefix, parsed.group, parsed.node);
        match (parsed.message_type, parsed.device) {
            (MessageType::NodeBirth, None) => {
                let node = self.nodes.entry(key).or_default();
                node.metrics = birth_table(&payload, &prefix)?;
                node.devices.clear();
                node.born = true;
            }
            (MessageType::DeviceBirth, Some(device)) => {
                let table = birth_table(&payload, &format!("{prefix}{device}/"))?;
                self.nodes.entry(key).or_default().devices.insert(device.to_owned(), table);
            }
            _ => return Err(SparkplugError::BadTopic),
        }
        Ok(())
    }

    /// Edge nodes known.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

/// The NCMD topic and payload that ask `node` of `group` for a rebirth, stamped `now_ms`.
pub fn rebirth_request(group: &str, node: &str, now_ms: u64) -> (String, Vec<u8>) {
    let payload = Payload {
        timestamp: Some(now_ms),
        metrics: vec![Metric {
            name: Some(REBIRTH_METRIC.to_owned()),
            timestamp: Some(now_ms),
            datatype: Some(datatype::BOOLEAN),
            value: Some(MetricValue::BooleanValue(true)),
            ..Metric::default()
        }],
        ..Payload::default()
    };
    (format!("{NAMESPACE}/{group}/NCMD/{node}"), payload.encode_to_vec())
}

fn ms_to_ns(ms: u64) -> Option<i64> {
    i64::try_from(ms).ok()?.checked_mul(1_000_000)
}

fn check_sequence(node: &mut NodeState, payload: &Payload, outcome: &mut Outcome) {
    if !node.born {
        outcome.sequence_gaps += 1;
        outcome.note(|| "a message from an edge node not seen born (no NBIRTH since start or NDEATH)".to_owned());
    }
    let Some(seq) = payload.seq else { return };
    let seq = seq as u8;
    if let Some(last) = node.seq {
        let expected = last.wrapping_add(1);
        if seq != expected && node.born {
            outcome.sequence_gaps += 1;
            outcome.note(|| format!("sequence gap: expected seq {expected}, got {seq}"));
        }
    }
    node.seq = Some(seq);
}

/// The metric table a birth defines. A metric without a name is ignored; a name given twice
/// keeps its last definition.
fn birth_table(payload: &Payload, prefix: &str) -> Result<MetricTable, SparkplugError> {
    if payload.metrics.len() > MAX_METRICS_PER_BIRTH {
        return Err(SparkplugError::BirthRefused(format!(
            "{} metrics; at most {MAX_METRICS_PER_BIRTH}",
            payload.metrics.len()
        )));
    }
    let mut table = MetricTable { prefix: prefix.to_owned(), ..MetricTable::default() };
    for metric in &payload.metrics {
        let Some(name) = metric.name.as_deref() else { continue };
        let series = SeriesKey::new(format!("{prefix}{name}"));
        let info = MetricInfo { series, datatype: metric.datatype, last: None };
        let index = match table.by_name.get(name) {
            Some(&index) => {
                table.metrics[index] = info;
                index
            }
            None => {
                table.metrics.push(info);
                table.by_name.insert(name.to_owned(), table.metrics.len() - 1);
                table.metrics.len() - 1
            }
        };
        if let Some(alias) = metric.alias {
            table.by_alias.insert(alias, index);
        }
    }
    Ok(table)
}

/// Records for every metric of a birth or data message, resolved through `table`.
fn data(table: &mut MetricTable, payload: &Payload, now_ns: i64, outcome: &mut Outcome) {
    let payload_time_ns = payload.timestamp.and_then(ms_to_ns);
    for metric in &payload.metrics {
        let index = match (&metric.name, metric.alias) {
            (Some(name), _) => table.by_name.get(name.as_str()).copied(),
            (None, Some(alias)) => table.by_alias.get(&alias).copied(),
            (None, None) => {
                outcome.malformed += 1;
                outcome.note(|| "a metric with neither name nor alias".to_owned());
                continue;
            }
        };
        let index = match (index, &metric.name) {
            (Some(index), _) => index,
            (None, Some(name)) => {
                // A name the birth did not define: stored under its name all the same, and the
                // node asked for a rebirth, since its birth was not the whole truth.
                outcome.sequence_gaps += 1;
                outcome.note(|| format!("metric {name} was not in the birth"));
                if table.metrics.len() >= MAX_METRICS_PER_BIRTH {
                    continue;
                }
                let series = SeriesKey::new(format!("{}{name}", table.prefix));
                table.metrics.push(MetricInfo { series, datatype: metric.datatype, last: None });
                table.by_name.insert(name.clone(), table.metrics.len() - 1);
                table.metrics.len() - 1
            }
            (None, None) => {
                outcome.sequence_gaps += 1;
                outcome.note(|| format!("alias {} is not in the birth", metric.alias.unwrap_or_default()));
                continue;
            }
        };
        let info = &mut table.metrics[index];
        let time_ns = metric.timestamp.and_then(ms_to_ns).or(payload_time_ns).unwrap_or(now_ns);
        if let Some(record) = metric_record(info, metric, time_ns, outcome) {
            info.last = Some(record.value.clone());
            outcome.records.push(record);
        }
    }
}

/// Stale records for a table's metrics that have had a value.
fn stale(table: &mut MetricTable, time_ns: i64, outcome: &mut Outcome) {
    for info in &table.metrics {
        if let Some(value) = &info.last {
            let record = Record {
                series: info.series.clone(),
                timestamp_ns: time_ns,
                value: value.clone(),
                quality: STALE_QUALITY,
            };
            if record.validate().is_ok() {
                outcome.records.push(record);
            }
        }
    }
}

/// One metric's record, or `None` (counted) when it cannot be stored.
fn metric_record(info: &mut MetricInfo, metric: &Metric, time_ns: i64, outcome: &mut Outcome) -> Option<Record> {
    let datatype = metric.datatype.or(info.datatype);
    let is_null = metric.is_null == Some(true);
    let value = if is_null {
        default_value(datatype)
    } else {
        match convert(datatype, metric.value.as_ref()) {
            Converted::Value(value) => Some(value),
            Converted::Unsupported => {
                outcome.unsupported += 1;
                outcome.note(|| format!("{}: datatype {} is not stored", info.series, datatype.unwrap_or_default()));
                return None;
            }
            Converted::Invalid(why) => {
                outcome.malformed += 1;
                outcome.note(|| format!("{}: {why}", info.series));
                return None;
            }
        }
    };
    let Some(value) = value else {
        outcome.unsupported += 1;
        return None;
    };
    let quality = if is_null { Quality::BAD } else { property_quality(metric.properties.as_ref()) };
    let record = Record { series: info.series.clone(), timestamp_ns: time_ns, value, quality };
    match record.validate() {
        Ok(()) => Some(record),
        Err(error) => {
            outcome.malformed += 1;
            outcome.note(|| format!("{}: {error}", info.series));
            None
        }
    }
}

enum Converted {
    Value(Value),
    Unsupported,
    Invalid(String),
}

/// A metric value as diode stores it, by datatype (inferred from the value's field when the
/// metric and its birth give none).
fn convert(datatype: Option<u32>, value: Option<&MetricValue>) -> Converted {
    use MetricValue as V;
    use datatype::*;
    let Some(value) = value else { return Converted::Unsupported };
    let converted = match (datatype, value) {
        (Some(INT8), V::IntValue(v)) => Value::I64(i64::from(*v as u8 as i8)),
        (Some(INT16), V::IntValue(v)) => Value::I64(i64::from(*v as u16 as i16)),
        (Some(INT32), V::IntValue(v)) => Value::I64(i64::from(*v as i32)),
        (Some(UINT8), V::IntValue(v)) => Value::I64(i64::from(*v as u8)),
        (Some(UINT16), V::IntValue(v)) => Value::I64(i64::from(*v as u16)),
        (Some(UINT32) | None, V::IntValue(v)) => Value::I64(i64::from(*v)),
        (Some(INT8 | INT16 | INT32 | INT64 | DATETIME), V::LongValue(v)) => Value::I64(*v as i64),
        (Some(UINT8 | UINT16 | UINT32 | UINT64) | None, V::LongValue(v)) => match i64::try_from(*v) {
            Ok(v) => Value::I64(v),
            Err(_) => return Converted::Invalid(format!("unsigned value {v} is above 2^63 - 1")),
        },
        (Some(FLOAT | DOUBLE) | None, V::FloatValue(v)) => Value::F64(f64::from(*v)),
        (Some(FLOAT | DOUBLE) | None, V::DoubleValue(v)) => Value::F64(*v),
        (Some(BOOLEAN) | None, V::BooleanValue(v)) => Value::Bool(*v),
        (Some(STRING | TEXT | UUID) | None, V::StringValue(v)) => Value::String(v.clone()),
        (Some(datatype), value) if datatype <= UUID && !matches!(value, V::BytesValue(_)) => {
            return Converted::Invalid(format!("datatype {datatype} does not match the value's field"));
        }
        _ => return Converted::Unsupported,
    };
    match converted {
        Value::F64(v) if !v.is_finite() => Converted::Invalid(format!("non-finite value {v}")),
        value => Converted::Value(value),
    }
}

/// What a null metric is stored as.
fn default_value(datatype: Option<u32>) -> Option<Value> {
    use datatype::*;
    match datatype? {
        INT8 | INT16 | INT32 | INT64 | UINT8 | UINT16 | UINT32 | UINT64 | DATETIME => Some(Value::I64(0)),
        FLOAT | DOUBLE => Some(Value::F64(0.0)),
        BOOLEAN => Some(Value::Bool(false)),
        STRING | TEXT | UUID => Some(Value::String(String::new())),
        _ => None,
    }
}

/// The quality a metric's `Quality` property gives (good when there is none).
fn property_quality(properties: Option<&PropertySet>) -> Quality {
    let Some(properties) = properties else { return Quality::GOOD };
    let Some(index) = properties.keys.iter().position(|key| key.eq_ignore_ascii_case("quality")) else {
        return Quality::GOOD;
    };
    match properties.values.get(index).and_then(|value| value.value.as_ref()) {
        Some(PropertyScalar::IntValue(code)) => da_quality(u64::from(*code)),
        Some(PropertyScalar::LongValue(code)) => da_quality(*code),
        Some(PropertyScalar::StringValue(text)) => Quality::parse_text(text).unwrap_or(Quality::BAD),
        _ => Quality::GOOD,
    }
}

/// An OPC DA quality (the byte Sparkplug publishers such as Ignition send: 192 good).
fn da_quality(code: u64) -> Quality {
    match code {
        192..=255 => Quality::GOOD,
        64..=127 => Quality::UNCERTAIN,
        _ => Quality::BAD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_NS: i64 = 1_767_225_600_000_000_000;

    fn metric(name: Option<&str>, alias: Option<u64>, datatype: u32, value: MetricValue) -> Metric {
        Metric {
            name: name.map(str::to_owned),
            alias,
            datatype: Some(datatype),
            value: Some(value),
            ..Metric::default()
        }
    }

    fn payload(seq: u64, timestamp_ms: u64, metrics: Vec<Metric>) -> Vec<u8> {
        Payload { timestamp: Some(timestamp_ms), seq: Some(seq), metrics, ..Payload::default() }.encode_to_vec()
    }

    fn birth(decoder: &mut SparkplugDecoder) -> Outcome {
        let metrics = vec![
            metric(Some("Temp"), Some(1), datatype::DOUBLE, MetricValue::DoubleValue(20.5)),
            metric(Some("Count"), Some(2), datatype::INT16, MetricValue::IntValue(0xFFFF)),
            metric(Some("Bdseq"), None, datatype::INT64, MetricValue::LongValue(7)),
        ];
        decoder.handle("spBv1.0/plant/NBIRTH/edge1", &payload(0, 1_000, metrics), NOW_NS).unwrap()
    }

    fn values(outcome: &Outcome) -> Vec<(String, i64, Value, Quality)> {
        outcome
            .records
            .iter()
            .map(|r| (r.series.name.to_string(), r.timestamp_ns, r.value.clone(), r.quality))
            .collect()
    }

    #[test]
    fn a_birth_names_the_metrics_and_stores_their_values() {
        let mut decoder = SparkplugDecoder::new("site/", 0);
        let outcome = birth(&mut decoder);
        assert_eq!(
            values(&outcome),
            [
                ("site/plant/edge1/Temp".to_owned(), 1_000_000_000, Value::F64(20.5), Quality::GOOD),
                ("site/plant/edge1/Count".to_owned(), 1_000_000_000, Value::I64(-1), Quality::GOOD),
                ("site/plant/edge1/Bdseq".to_owned(), 1_000_000_000, Value::I64(7), Quality::GOOD),
            ]
        );
    }

    #[test]
    fn data_by_alias_takes_the_birth_name_and_the_metric_timestamp() {
        let mut decoder = SparkplugDecoder::new("", 0);
        birth(&mut decoder);
        let mut temp = metric(None, Some(1), datatype::DOUBLE, MetricValue::DoubleValue(21.0));
        temp.timestamp = Some(2_500);
        temp.is_historical = Some(true);
        let outcome = decoder.handle("spBv1.0/plant/NDATA/edge1", &payload(1, 3_000, vec![temp]), NOW_NS).unwrap();
        assert_eq!(values(&outcome), [("plant/edge1/Temp".to_owned(), 2_500_000_000, Value::F64(21.0), Quality::GOOD)]);
        assert_eq!(outcome.sequence_gaps, 0);
    }

    #[test]
    fn a_sequence_gap_is_counted_and_asks_for_one_rebirth_per_interval() {
        let mut decoder = SparkplugDecoder::new("", 1_000_000_000);
        birth(&mut decoder);
        let data =
            |seq| payload(seq, 3_000, vec![metric(None, Some(1), datatype::DOUBLE, MetricValue::DoubleValue(1.0))]);
        let ok = decoder.handle("spBv1.0/plant/NDATA/edge1", &data(1), NOW_NS).unwrap();
        assert_eq!((ok.sequence_gaps, ok.rebirth.clone()), (0, None));
        let gap = decoder.handle("spBv1.0/plant/NDATA/edge1", &data(5), NOW_NS).unwrap();
        assert_eq!(gap.sequence_gaps, 1);
        assert_eq!(gap.rebirth, Some(("plant".to_owned(), "edge1".to_owned())));
        assert_eq!(gap.records.len(), 1, "values of a message after a gap are still stored");
        let again = decoder.handle("spBv1.0/plant/NDATA/edge1", &data(9), NOW_NS + 1).unwrap();
        assert_eq!((again.sequence_gaps, again.rebirth), (1, None), "one request per interval");
    }

    #[test]
    fn the_sequence_wraps_from_255_to_0() {
        let mut decoder = SparkplugDecoder::new("", 1);
        birth(&mut decoder);
        for seq in 1..=300u64 {
            let data =
                payload(seq % 256, 3_000, vec![metric(None, Some(1), datatype::DOUBLE, MetricValue::DoubleValue(1.0))]);
            let outcome = decoder.handle("spBv1.0/plant/NDATA/edge1", &data, NOW_NS).unwrap();
            assert_eq!(outcome.sequence_gaps, 0, "seq {seq}");
        }
    }

    #[test]
    fn an_unknown_alias_is_dropped_counted_and_asks_for_a_rebirth() {
        let mut decoder = SparkplugDecoder::new("", 1);
        let data = payload(4, 3_000, vec![metric(None, Some(9), datatype::DOUBLE, MetricValue::DoubleValue(1.0))]);
        let outcome = decoder.handle("spBv1.0/plant/NDATA/edge1", &data, NOW_NS).unwrap();
        assert!(outcome.records.is_empty());
        assert!(outcome.sequence_gaps >= 1);
        assert_eq!(outcome.rebirth, Some(("plant".to_owned(), "edge1".to_owned())));
        let (topic, request) = rebirth_request("plant", "edge1", 5);
        assert_eq!(topic, "spBv1.0/plant/NCMD/edge1");
        let request = Payload::decode(request.as_slice()).unwrap();
        assert_eq!(request.metrics[0].name.as_deref(), Some(REBIRTH_METRIC));
        assert_eq!(request.metrics[0].value, Some(MetricValue::BooleanValue(true)));
    }

    #[test]
    fn a_node_death_marks_its_and_its_devices_metrics_stale_with_their_last_values() {
        let mut decoder = SparkplugDecoder::new("", 0);
        birth(&mut decoder);
        let device = vec![metric(Some("Level"), Some(1), datatype::FLOAT, MetricValue::FloatValue(2.5))];
        decoder.handle("spBv1.0/plant/DBIRTH/edge1/tank", &payload(1, 2_000, device), NOW_NS).unwrap();
        let death = decoder.handle("spBv1.0/plant/NDEATH/edge1", &payload(0, 0, vec![]), NOW_NS).unwrap();
        assert!(death.death);
        let mut stale = values(&death);
        stale.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            stale,
            [
                ("plant/edge1/Bdseq".to_owned(), NOW_NS, Value::I64(7), STALE_QUALITY),
                ("plant/edge1/Count".to_owned(), NOW_NS, Value::I64(-1), STALE_QUALITY),
                ("plant/edge1/Temp".to_owned(), NOW_NS, Value::F64(20.5), STALE_QUALITY),
                ("plant/edge1/tank/Level".to_owned(), NOW_NS, Value::F64(2.5), STALE_QUALITY),
            ]
        );
    }

    #[test]
    fn null_metrics_and_quality_properties_set_the_quality() {
        let mut decoder = SparkplugDecoder::new("", 0);
        birth(&mut decoder);
        let mut null = Metric { alias: Some(1), is_null: Some(true), ..Metric::default() };
        null.timestamp = Some(4_000);
        let mut uncertain = metric(None, Some(2), datatype::INT16, MetricValue::IntValue(3));
        uncertain.properties = Some(PropertySet {
            keys: vec!["Quality".into()],
            values: vec![PropertyValue { r#type: Some(3), is_null: None, value: Some(PropertyScalar::IntValue(64)) }],
        });
        uncertain.timestamp = Some(4_000);
        let outcome =
            decoder.handle("spBv1.0/plant/NDATA/edge1", &payload(1, 3_000, vec![null, uncertain]), NOW_NS).unwrap();
        assert_eq!(
            values(&outcome),
            [
                ("plant/edge1/Temp".to_owned(), 4_000_000_000, Value::F64(0.0), Quality::BAD),
                ("plant/edge1/Count".to_owned(), 4_000_000_000, Value::I64(3), Quality::UNCERTAIN),
            ]
        );
    }

    #[test]
    fn unsupported_and_invalid_values_are_counted_not_stored() {
        let mut decoder = SparkplugDecoder::new("", 0);
        let metrics = vec![
            metric(Some("Blob"), None, 17, MetricValue::BytesValue(vec![1, 2])),
            metric(Some("Nan"), None, datatype::DOUBLE, MetricValue::DoubleValue(f64::NAN)),
            metric(Some("Huge"), None, datatype::UINT64, MetricValue::LongValue(u64::MAX)),
            metric(Some("Fine"), None, datatype::STRING, MetricValue::StringValue("ok".into())),
        ];
        let outcome = decoder.handle("spBv1.0/g/NBIRTH/n", &payload(0, 1, metrics), NOW_NS).unwrap();
        assert_eq!((outcome.unsupported, outcome.malformed, outcome.records.len()), (1, 2, 1));
    }

    #[test]
    fn commands_and_state_are_ignored_and_bad_topics_or_payloads_refused() {
        let mut decoder = SparkplugDecoder::new("", 0);
        assert_eq!(decoder.handle("spBv1.0/g/NCMD/n", b"\xff", NOW_NS), Ok(Outcome::default()));
        assert_eq!(decoder.handle("spBv1.0/STATE/host", b"{}", NOW_NS), Ok(Outcome::default()));
        assert_eq!(decoder.handle("plant/g/NDATA/n", b"", NOW_NS), Err(SparkplugError::BadTopic));
        assert_eq!(decoder.handle("spBv1.0/g/DDATA/n", b"", NOW_NS), Err(SparkplugError::BadTopic));
        assert!(matches!(decoder.handle("spBv1.0/g/NDATA/n", b"\xff\xff", NOW_NS), Err(SparkplugError::BadPayload(_))));
    }

    #[test]
    fn a_restored_birth_resolves_aliases_after_a_restart() {
        let mut first = SparkplugDecoder::new("", 0);
        let metrics = vec![metric(Some("Temp"), Some(1), datatype::DOUBLE, MetricValue::DoubleValue(20.5))];
        let birth = payload(0, 1_000, metrics);
        first.handle("spBv1.0/plant/NBIRTH/edge1", &birth, NOW_NS).unwrap();
        let mut restarted = SparkplugDecoder::new("", 0);
        restarted.restore_birth("spBv1.0/plant/NBIRTH/edge1", &birth).unwrap();
        let data = payload(9, 3_000, vec![metric(None, Some(1), datatype::DOUBLE, MetricValue::DoubleValue(1.0))]);
        let outcome = restarted.handle("spBv1.0/plant/NDATA/edge1", &data, NOW_NS).unwrap();
        assert_eq!(values(&outcome), [("plant/edge1/Temp".to_owned(), 3_000_000_000, Value::F64(1.0), Quality::GOOD)]);
        assert_eq!(outcome.sequence_gaps, 0, "the first sequence number after a restart is taken as it comes");
    }
}

//! The columnar encoding of one series: timestamps, values and qualities (layout in the
//! [module documentation](super)).
//!
//! Encoders pick, per column, the smallest of a few encodings and say which with a tag byte, so a
//! decoder never guesses. Decoders trust nothing: every count is checked against the remaining
//! input and the [`DecodeBudget`] before anything is allocated for it.

use std::collections::HashMap;

use super::wire::{BitReader, BitWriter, Reader, put_bytes, put_signed_varint, put_varint, varint_len, zigzag};
use super::{CodecError, MAX_DECODED_STRING_BYTES, MAX_RECORDS_PER_PAYLOAD, SeriesColumns, Values};
use crate::record::{Quality, SeriesKey, Value, ValueKind};

const VALUES_F64: u8 = ValueKind::F64 as u8;
const VALUES_I64: u8 = ValueKind::I64 as u8;
const VALUES_BOOL: u8 = ValueKind::Bool as u8;
const VALUES_STRING: u8 = ValueKind::String as u8;
const VALUES_MIXED: u8 = 4;

const INTEGERS_DELTA: u8 = 0;
const INTEGERS_DELTA_OF_DELTA: u8 = 1;

const F64_RAW: u8 = 0;
const F64_XOR: u8 = 1;
const F64_DECIMAL: u8 = 2;

const BOOL_RUNS: u8 = 0;
const BOOL_PACKED: u8 = 1;

/// Largest `d` of the decimal float encoding (`value == integer / 10^d`).
const MAX_DECIMAL_DIGITS: usize = 9;
const POWERS_OF_TEN: [f64; MAX_DECIMAL_DIGITS + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// What one decode call may still materialise: records and string bytes. Shared by all the
/// series of a payload, so a hostile payload cannot multiply a small input into a huge output
/// (a 64 KiB string repeated by a run length of millions, for instance).
#[derive(Debug)]
pub(super) struct DecodeBudget {
    records_left: u64,
    string_bytes_left: u64,
}

impl DecodeBudget {
    pub(super) fn new() -> Self {
        Self { records_left: MAX_RECORDS_PER_PAYLOAD as u64, string_bytes_left: MAX_DECODED_STRING_BYTES as u64 }
    }

    fn take_records(&mut self, count: usize) -> Result<(), CodecError> {
        self.records_left = self.records_left.checked_sub(count as u64).ok_or(CodecError::TooManyRecords)?;
        Ok(())
    }

    fn take_string_bytes(&mut self, length_bytes: usize, repeats: usize) -> Result<(), CodecError> {
        let total = (length_bytes as u64).saturating_mul(repeats as u64);
        self.string_bytes_left = self.string_bytes_left.checked_sub(total).ok_or(CodecError::TooManyStringBytes)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Encodes `columns` with timestamps relative to `base_ns` (0 for a stand-alone chunk).
///
/// # Panics
/// If the three columns do not have the same length: that is a bug in the caller, not bad input.
pub(super) fn encode_columns_with_base(columns: &SeriesColumns, base_ns: i64, out: &mut Vec<u8>) {
    let count = columns.timestamps_ns.len();
    assert!(
        columns.values.len() == count && columns.qualities.len() == count,
        "series {} has {} timestamps, {} values and {} qualities; the columns must have equal lengths",
        columns.key,
        count,
        columns.values.len(),
        columns.qualities.len()
    );
    put_varint(out, count as u64);
    encode_timestamps(&columns.timestamps_ns, base_ns, out);
    encode_values(&columns.values, out);
    encode_qualities(&columns.qualities, out);
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The largest tick that divides every offset from `base_ns` (1 ms for millisecond timestamps).
fn timestamp_tick(timestamps_ns: &[i64], base_ns: i64) -> i64 {
    let mut tick: u64 = 0;
    for &timestamp in timestamps_ns {
        let offset = timestamp.wrapping_sub(base_ns).unsigned_abs();
        if tick == 0 || offset % tick != 0 {
            tick = gcd(tick, offset);
            if tick == 1 {
                break;
            }
        }
    }
    // 0 when every offset is 0; above i64::MAX only for the single offset 2^63.
    if tick == 0 || tick > i64::MAX as u64 { 1 } else { tick as i64 }
}

fn encode_timestamps(timestamps_ns: &[i64], base_ns: i64, out: &mut Vec<u8>) {
    if timestamps_ns.is_empty() {
        return;
    }
    let tick = timestamp_tick(timestamps_ns, base_ns);
    put_varint(out, tick as u64);
    let ticks: Vec<i64> = timestamps_ns.iter().map(|&t| t.wrapping_sub(base_ns) / tick).collect();
    encode_integers(&ticks, out);
}

/// Writes `values` as delta or delta-of-delta zigzag varints, whichever is smaller.
fn encode_integers(values: &[i64], out: &mut Vec<u8>) {
    let Some(&first) = values.first() else { return };
    let mut delta_bytes = 0;
    let mut delta_of_delta_bytes = 0;
    let mut previous_delta = 0i64;
    for (index, pair) in values.windows(2).enumerate() {
        let delta = pair[1].wrapping_sub(pair[0]);
        delta_bytes += varint_len(zigzag(delta));
        let second_order = if index == 0 { delta } else { delta.wrapping_sub(previous_delta) };
        delta_of_delta_bytes += varint_len(zigzag(second_order));
        previous_delta = delta;
    }
    let delta_of_delta = delta_of_delta_bytes < delta_bytes;
    out.push(if delta_of_delta { INTEGERS_DELTA_OF_DELTA } else { INTEGERS_DELTA });
    put_signed_varint(out, first);
    out.reserve(delta_bytes.min(delta_of_delta_bytes));
    let mut previous_delta = 0i64;
    for (index, pair) in values.windows(2).enumerate() {
        let delta = pair[1].wrapping_sub(pair[0]);
        if delta_of_delta && index > 0 {
            put_signed_varint(out, delta.wrapping_sub(previous_delta));
        } else {
            put_signed_varint(out, delta);
        }
        previous_delta = delta;
    }
}

fn encode_values(values: &Values, out: &mut Vec<u8>) {
    match values {
        Values::F64(values) => {
            out.push(VALUES_F64);
            encode_f64s(values, out);
        }
        Values::I64(values) => {
            out.push(VALUES_I64);
            encode_integers(values, out);
        }
        Values::Bool(values) => {
            out.push(VALUES_BOOL);
            encode_bools(values, out);
        }
        Values::String(values) => {
            out.push(VALUES_STRING);
            encode_strings(values.iter().map(String::as_str), values.len(), out);
        }
        Values::Mixed(values) => {
            out.push(VALUES_MIXED);
            encode_mixed(values, out);
        }
    }
}

/// `value` as `integer / 10^digits`, if that reproduces its bits exactly (never for -0.0, NaN or
/// infinities, so those fall back to XOR or raw).
#[inline]
fn decimal_integer(value: f64, digits: usize) -> Option<i64> {
    let power = POWERS_OF_TEN[digits];
    let scaled = (value * power).round();
    // Inside the i64 range (and not NaN): the cast below is then exact.
    if !(scaled.abs() < 9.2e18) {
        return None;
    }
    let integer = scaled as i64;
    ((integer as f64 / power).to_bits() == value.to_bits()).then_some(integer)
}

/// The fewest decimal digits that represent every value exactly, and the integers, if any.
fn decimal_integers(values: &[f64]) -> Option<(u8, Vec<i64>)> {
    // `integer / 10^d` also holds at every larger `d` (while integers stay below 2^53), so the
    // column needs the largest of the values' own digit counts; the final pass re-checks all.
    let mut digits = 0;
    for &value in values {
        while decimal_integer(value, digits).is_none() {
            digits += 1;
            if digits > MAX_DECIMAL_DIGITS {
                return None;
            }
        }
    }
    let integers = values.iter().map(|&value| decimal_integer(value, digits)).collect::<Option<Vec<i64>>>()?;
    Some((digits as u8, integers))
}

#[cfg(test)]
pub(super) fn decimal_digits_for_tests(values: &[f64]) -> Option<u8> {
    decimal_integers(values).map(|(digits, _)| digits)
}

/// Where Gorilla XOR bits go: a real writer, or a counter used to size the encoding first.
trait BitSink {
    fn write(&mut self, value: u64, count: u32);
}

impl BitSink for BitWriter {
    fn write(&mut self, value: u64, count: u32) {
        BitWriter::write(self, value, count);
    }
}

#[derive(Default)]
struct BitCounter(usize);

impl BitSink for BitCounter {
    fn write(&mut self, _value: u64, count: u32) {
        self.0 += count as usize;
    }
}

/// Gorilla XOR: the first value's 64 bits, then per value the XOR with the previous one: `0` for
/// equal; `10` + the meaningful bits when they fit the previous window; `11` + 6 bits of leading
/// zeros + 6 bits of (meaningful length - 1) + the meaningful bits otherwise.
fn write_xor<S: BitSink>(values: &[f64], sink: &mut S) {
    let Some(first) = values.first() else { return };
    let mut previous = first.to_bits();
    sink.write(previous, 64);
    // (leading zeros, trailing zeros) of the current window; none before the first change.
    let mut window: Option<(u32, u32)> = None;
    for value in &values[1..] {
        let bits = value.to_bits();
        let xor = bits ^ previous;
        previous = bits;
        if xor == 0 {
            sink.write(0, 1);
            continue;
        }
        let leading = xor.leading_zeros();
        let trailing = xor.trailing_zeros();
        match window {
            Some((window_leading, window_trailing)) if leading >= window_leading && trailing >= window_trailing => {
                sink.write(0b10, 2);
                sink.write(xor >> window_trailing, 64 - window_leading - window_trailing);
            }
            _ => {
                let meaningful = 64 - leading - trailing;
                sink.write(0b11, 2);
                sink.write(u64::from(leading), 6);
                sink.write(u64::from(meaningful - 1), 6);
                sink.write(xor >> trailing, meaningful);
                window = Some((leading, trailing));
            }
        }
    }
}

fn encode_f64s(values: &[f64], out: &mut Vec<u8>) {
    if values.is_empty() {
        return;
    }
    let raw_bytes = 8 * values.len();
    let mut xor_bits = BitCounter::default();
    write_xor(values, &mut xor_bits);
    let xor_stream_bytes = xor_bits.0.div_ceil(8);
    let xor_bytes = varint_len(xor_stream_bytes as u64) + xor_stream_bytes;

    let mut decimal = Vec::new();
    if let Some((digits, integers)) = decimal_integers(values) {
        decimal.push(digits);
        encode_integers(&integers, &mut decimal);
    }
    if !decimal.is_empty() && decimal.len() <= xor_bytes && decimal.len() <= raw_bytes {
        out.push(F64_DECIMAL);
        out.extend_from_slice(&decimal);
    } else if xor_bytes <= raw_bytes {
        out.push(F64_XOR);
        let mut writer = BitWriter::with_capacity(xor_stream_bytes);
        write_xor(values, &mut writer);
        put_bytes(out, &writer.into_bytes());
    } else {
        out.push(F64_RAW);
        for value in values {
            out.extend_from_slice(&value.to_bits().to_le_bytes());
        }
    }
}

/// Lengths of the runs of equal items, in order.
fn runs<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<(T, usize)> {
    let mut runs: Vec<(T, usize)> = Vec::new();
    for item in items {
        match runs.last_mut() {
            Some((last, length)) if *last == item => *length += 1,
            _ => runs.push((item, 1)),
        }
    }
    runs
}

fn encode_bools(values: &[bool], out: &mut Vec<u8>) {
    let Some(&first) = values.first() else { return };
    let runs = runs(values.iter().copied());
    let runs_bytes = 1 + runs.iter().map(|&(_, length)| varint_len(length as u64)).sum::<usize>();
    if runs_bytes <= values.len().div_ceil(8) {
        out.push(BOOL_RUNS);
        out.push(u8::from(first));
        for (_, length) in runs {
            put_varint(out, length as u64);
        }
    } else {
        out.push(BOOL_PACKED);
        for chunk in values.chunks(8) {
            let byte = chunk.iter().enumerate().fold(0u8, |byte, (bit, &value)| byte | (u8::from(value) << bit));
            out.push(byte);
        }
    }
}

fn encode_strings<'a>(values: impl Iterator<Item = &'a str> + Clone, count: usize, out: &mut Vec<u8>) {
    if count == 0 {
        return;
    }
    let mut dictionary: HashMap<&str, usize> = HashMap::new();
    let mut entries: Vec<&str> = Vec::new();
    let runs = runs(values.map(|value| {
        *dictionary.entry(value).or_insert_with(|| {
            entries.push(value);
            entries.len() - 1
        })
    }));
    put_varint(out, entries.len() as u64);
    for entry in entries {
        put_bytes(out, entry.as_bytes());
    }
    for (index, length) in runs {
        put_varint(out, index as u64);
        put_varint(out, length as u64);
    }
}

fn encode_mixed(values: &[Value], out: &mut Vec<u8>) {
    if values.is_empty() {
        return;
    }
    for (kind, length) in runs(values.iter().map(Value::kind)) {
        out.push(kind as u8);
        put_varint(out, length as u64);
    }
    let floats: Vec<f64> = values.iter().filter_map(|v| if let Value::F64(x) = v { Some(*x) } else { None }).collect();
    let integers: Vec<i64> = values.iter().filter_map(|v| if let Value::I64(x) = v { Some(*x) } else { None }).collect();
    let bools: Vec<bool> = values.iter().filter_map(|v| if let Value::Bool(x) = v { Some(*x) } else { None }).collect();
    let strings = values.iter().filter_map(|v| if let Value::String(x) = v { Some(x.as_str()) } else { None });
    let string_count = strings.clone().count();
    encode_f64s(&floats, out);
    encode_integers(&integers, out);
    encode_bools(&bools, out);
    encode_strings(strings, string_count, out);
}

fn encode_qualities(qualities: &[Quality], out: &mut Vec<u8>) {
    for (quality, length) in runs(qualities.iter().copied()) {
        put_varint(out, u64::from(quality.0));
        put_varint(out, length as u64);
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decodes what [`encode_columns_with_base`] wrote, with the same `base_ns`.
pub(super) fn decode_columns_with_base(
    bytes: &[u8],
    key: SeriesKey,
    base_ns: i64,
    budget: &mut DecodeBudget,
) -> Result<SeriesColumns, CodecError> {
    let mut reader = Reader::new(bytes);
    // Every record costs at least one byte of timestamp, so the count is bounded by the input.
    let count = reader.count_of_byte_items("record count", MAX_RECORDS_PER_PAYLOAD as u64)?;
    budget.take_records(count)?;
    let timestamps_ns = decode_timestamps(&mut reader, count, base_ns)?;
    let values = decode_values(&mut reader, count, budget)?;
    let qualities = decode_qualities(&mut reader, count)?;
    reader.expect_end("series columns")?;
    Ok(SeriesColumns { key, timestamps_ns, values, qualities })
}

fn decode_timestamps(reader: &mut Reader<'_>, count: usize, base_ns: i64) -> Result<Vec<i64>, CodecError> {
    let mut timestamps = Vec::with_capacity(count);
    if count == 0 {
        return Ok(timestamps);
    }
    let offset = reader.position();
    let tick = reader.varint("timestamp tick")?;
    if tick == 0 || tick > i64::MAX as u64 {
        return Err(CodecError::OutOfRange {
            what: "timestamp tick",
            offset,
            value: tick,
            expected: "between 1 and 2^63 - 1 nanoseconds",
        });
    }
    decode_integers(reader, count, "timestamps", &mut timestamps)?;
    let tick = tick as i64;
    for timestamp in &mut timestamps {
        *timestamp = base_ns.wrapping_add(timestamp.wrapping_mul(tick));
    }
    Ok(timestamps)
}

fn decode_integers(
    reader: &mut Reader<'_>,
    count: usize,
    what: &'static str,
    out: &mut Vec<i64>,
) -> Result<(), CodecError> {
    if count == 0 {
        return Ok(());
    }
    let offset = reader.position();
    let mode = reader.u8(what)?;
    if mode != INTEGERS_DELTA && mode != INTEGERS_DELTA_OF_DELTA {
        return Err(CodecError::UnknownEncoding { what, offset, tag: mode });
    }
    let mut value = reader.signed_varint(what)?;
    out.push(value);
    let mut delta = 0i64;
    for index in 1..count {
        let change = reader.signed_varint(what)?;
        delta = if mode == INTEGERS_DELTA_OF_DELTA && index > 1 { delta.wrapping_add(change) } else { change };
        value = value.wrapping_add(delta);
        out.push(value);
    }
    Ok(())
}

fn decode_values(reader: &mut Reader<'_>, count: usize, budget: &mut DecodeBudget) -> Result<Values, CodecError> {
    let offset = reader.position();
    let tag = reader.u8("value column kind")?;
    Ok(match tag {
        VALUES_F64 => Values::F64(decode_f64s(reader, count)?),
        VALUES_I64 => {
            let mut values = Vec::with_capacity(count);
            decode_integers(reader, count, "integer values", &mut values)?;
            Values::I64(values)
        }
        VALUES_BOOL => Values::Bool(decode_bools(reader, count)?),
        VALUES_STRING => Values::String(decode_strings(reader, count, budget)?),
        VALUES_MIXED => Values::Mixed(decode_mixed(reader, count, budget)?),
        tag => return Err(CodecError::UnknownEncoding { what: "value column kind", offset, tag }),
    })
}

fn decode_f64s(reader: &mut Reader<'_>, count: usize) -> Result<Vec<f64>, CodecError> {
    let mut values = Vec::with_capacity(count);
    if count == 0 {
        return Ok(values);
    }
    let offset = reader.position();
    match reader.u8("float encoding")? {
        F64_RAW => {
            let bytes = reader.bytes("raw floats", 8 * count as u64)?;
            values.extend(bytes.chunks_exact(8).map(|chunk| {
                let mut bits = [0u8; 8];
                bits.copy_from_slice(chunk);
                f64::from_bits(u64::from_le_bytes(bits))
            }));
        }
        F64_XOR => {
            let stream = reader.length_prefixed("XOR floats")?;
            read_xor(stream, count, &mut values)?;
        }
        F64_DECIMAL => {
            let digits_offset = reader.position();
            let digits = reader.u8("decimal digits")?;
            let Some(&power) = POWERS_OF_TEN.get(usize::from(digits)) else {
                return Err(CodecError::OutOfRange {
                    what: "decimal digits",
                    offset: digits_offset,
                    value: u64::from(digits),
                    expected: "between 0 and 9",
                });
            };
            let mut integers = Vec::with_capacity(count);
            decode_integers(reader, count, "decimal floats", &mut integers)?;
            values.extend(integers.into_iter().map(|integer| integer as f64 / power));
        }
        tag => return Err(CodecError::UnknownEncoding { what: "float encoding", offset, tag }),
    }
    Ok(values)
}

fn read_xor(stream: &[u8], count: usize, values: &mut Vec<f64>) -> Result<(), CodecError> {
    const WHAT: &str = "XOR floats";
    let mut reader = BitReader::new(stream);
    let mut previous = reader.read(64, WHAT)?;
    values.push(f64::from_bits(previous));
    let mut window: Option<(u32, u32)> = None;
    for _ in 1..count {
        if reader.read_bit(WHAT)? {
            let (leading, meaningful) = if reader.read_bit(WHAT)? {
                let leading = reader.read(6, WHAT)? as u32;
                let meaningful = reader.read(6, WHAT)? as u32 + 1;
                if leading + meaningful > 64 {
                    return Err(CodecError::OutOfRange {
                        what: "XOR float window",
                        offset: reader.byte_position(),
                        value: u64::from(leading + meaningful),
                        expected: "leading zeros plus meaningful bits of at most 64",
                    });
                }
                window = Some((leading, 64 - leading - meaningful));
                (leading, meaningful)
            } else {
                let Some((leading, trailing)) = window else {
                    return Err(CodecError::OutOfRange {
                        what: "XOR float window",
                        offset: reader.byte_position(),
                        value: 0,
                        expected: "a window defined before it is reused",
                    });
                };
                (leading, 64 - leading - trailing)
            };
            let trailing = 64 - leading - meaningful;
            previous ^= reader.read(meaningful, WHAT)? << trailing;
        }
        values.push(f64::from_bits(previous));
    }
    Ok(())
}

/// A run length between 1 and `left`.
fn read_run(reader: &mut Reader<'_>, what: &'static str, left: usize) -> Result<usize, CodecError> {
    let offset = reader.position();
    let length = reader.varint(what)?;
    if length == 0 || length > left as u64 {
        return Err(CodecError::OutOfRange {
            what,
            offset,
            value: length,
            expected: "between 1 and the number of records left in the column",
        });
    }
    Ok(length as usize)
}

fn decode_bools(reader: &mut Reader<'_>, count: usize) -> Result<Vec<bool>, CodecError> {
    let mut values = Vec::with_capacity(count);
    if count == 0 {
        return Ok(values);
    }
    let offset = reader.position();
    match reader.u8("boolean encoding")? {
        BOOL_RUNS => {
            let first_offset = reader.position();
            let mut value = match reader.u8("first boolean")? {
                0 => false,
                1 => true,
                other => {
                    return Err(CodecError::OutOfRange {
                        what: "first boolean",
                        offset: first_offset,
                        value: u64::from(other),
                        expected: "0 or 1",
                    });
                }
            };
            while values.len() < count {
                let length = read_run(reader, "boolean run length", count - values.len())?;
                values.resize(values.len() + length, value);
                value = !value;
            }
        }
        BOOL_PACKED => {
            let bytes = reader.bytes("packed booleans", count.div_ceil(8) as u64)?;
            values.extend((0..count).map(|index| bytes[index / 8] & (1 << (index % 8)) != 0));
        }
        tag => return Err(CodecError::UnknownEncoding { what: "boolean encoding", offset, tag }),
    }
    Ok(values)
}

fn decode_strings(reader: &mut Reader<'_>, count: usize, budget: &mut DecodeBudget) -> Result<Vec<String>, CodecError> {
    let mut values = Vec::with_capacity(count);
    if count == 0 {
        return Ok(values);
    }
    let offset = reader.position();
    let dictionary_size = reader.count_of_byte_items("string dictionary size", count as u64)?;
    if dictionary_size == 0 {
        return Err(CodecError::OutOfRange {
            what: "string dictionary size",
            offset,
            value: 0,
            expected: "at least 1 for a non-empty column",
        });
    }
    let mut dictionary = Vec::with_capacity(dictionary_size);
    for _ in 0..dictionary_size {
        dictionary.push(reader.utf8("string dictionary entry")?);
    }
    while values.len() < count {
        let index_offset = reader.position();
        let index = reader.varint("string index")?;
        let Some(&entry) = usize::try_from(index).ok().and_then(|index| dictionary.get(index)) else {
            return Err(CodecError::OutOfRange {
                what: "string index",
                offset: index_offset,
                value: index,
                expected: "an index into the column's string dictionary",
            });
        };
        let length = read_run(reader, "string run length", count - values.len())?;
        budget.take_string_bytes(entry.len(), length)?;
        values.extend(std::iter::repeat_n(entry, length).map(str::to_owned));
    }
    Ok(values)
}

fn decode_mixed(reader: &mut Reader<'_>, count: usize, budget: &mut DecodeBudget) -> Result<Vec<Value>, CodecError> {
    let mut kinds: Vec<(ValueKind, usize)> = Vec::new();
    let mut counts = [0usize; 4];
    let mut decoded = 0;
    while decoded < count {
        let offset = reader.position();
        let byte = reader.u8("mixed value kind")?;
        let kind = ValueKind::from_u8(byte).ok_or(CodecError::UnknownEncoding {
            what: "mixed value kind",
            offset,
            tag: byte,
        })?;
        let length = read_run(reader, "mixed kind run length", count - decoded)?;
        kinds.push((kind, length));
        counts[kind as usize] += length;
        decoded += length;
    }
    let mut floats = decode_f64s(reader, counts[ValueKind::F64 as usize])?.into_iter();
    let mut integers = Vec::with_capacity(counts[ValueKind::I64 as usize]);
    decode_integers(reader, counts[ValueKind::I64 as usize], "mixed integer values", &mut integers)?;
    let mut integers = integers.into_iter();
    let mut bools = decode_bools(reader, counts[ValueKind::Bool as usize])?.into_iter();
    let mut strings = decode_strings(reader, counts[ValueKind::String as usize], budget)?.into_iter();

    let mut values = Vec::with_capacity(count);
    for (kind, length) in kinds {
        for _ in 0..length {
            // The sub-columns hold exactly `counts[kind]` items, so none runs dry.
            let value = match kind {
                ValueKind::F64 => floats.next().map(Value::F64),
                ValueKind::I64 => integers.next().map(Value::I64),
                ValueKind::Bool => bools.next().map(Value::Bool),
                ValueKind::String => strings.next().map(Value::String),
            };
            values.extend(value);
        }
    }
    debug_assert_eq!(values.len(), count);
    Ok(values)
}

fn decode_qualities(reader: &mut Reader<'_>, count: usize) -> Result<Vec<Quality>, CodecError> {
    let mut qualities = Vec::with_capacity(count);
    while qualities.len() < count {
        let code = reader.varint_at_most("quality", u64::from(u32::MAX), "a 32-bit OPC UA status code")?;
        let length = read_run(reader, "quality run length", count - qualities.len())?;
        qualities.resize(qualities.len() + length, Quality(code as u32));
    }
    Ok(qualities)
}

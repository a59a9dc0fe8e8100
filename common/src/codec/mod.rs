//! The segment payload codec: records grouped into columns per series, encoded with the Gorilla
//! ideas (delta-of-delta timestamps, XOR or decimal-delta floats), then compressed with zstd.
//!
//! The sender seals what [`encode_payload`] produces into a segment; the receiver verifies the
//! segment and calls [`decode_payload`], then stores each series' [`encode_columns`] bytes as a
//! chunk in RocksDB. Every payload is self-contained: it carries the names and tags of the series
//! it uses, and its series ids are indexes into its own table.
//!
//! Decoding is total: any input gives `Ok` or an error naming what is wrong and where, never a
//! panic, and never more memory than the limits below allow ([`MAX_PAYLOAD_DECODED_BYTES`],
//! [`MAX_RECORDS_PER_PAYLOAD`], [`MAX_SERIES_PER_PAYLOAD`], [`MAX_DECODED_TEXT_BYTES`]). Any `f64` bit pattern (NaN
//! payloads, infinities, -0.0) and any `i64` timestamp round-trip exactly, even those that
//! [`Record::validate`] refuses: the codec is not where policy lives.
//!
//! # Payload format, version 2
//!
//! Fixed-width integers are little-endian. *varint* is unsigned LEB128 (7 bits a byte, least
//! significant group first, high bit set on all bytes but the last, at most 10 bytes); *svarint* is
//! a zigzag-mapped signed varint (0, -1, 1, -2, ... map to 0, 1, 2, 3, ...); *bytes* is a varint
//! length and that many bytes; *string* is *bytes* holding UTF-8.
//!
//! ```text
//! payload  = magic "DPAY" | version u8 = 2 | compression u8 | decoded_length u32 | body
//!            compression 1: body is zstd data that decompresses to exactly decoded_length bytes
//!            compression 0: body is the decoded bytes themselves (written only if zstd fails)
//! decoded  = series_count varint | name_prefixes bytes | names_and_tags bytes
//!          | base_timestamp_ns svarint
//!          | block_count varint | series_id_steps bytes | columns
//!   name_prefixes  : per series, varint: bytes of the name shared with the previous series' name
//!   names_and_tags : per series, the rest of the name (bytes), tag_count varint, then
//!                    (key string | value string) per tag
//!            The table is sorted by (name, tags) and its names are front-coded, cut at a '/'.
//!   series_id_steps: per block, svarint (table index - previous block's index - 1): blocks keep
//!            the encoder's input order, and a key may appear in several blocks.
//! columns  = 15 field streams, each as bytes, in this order; every block appends to each stream
//!            the fields it has, in block order:
//!    1 counts            record count varint
//!    2 tick exponents    u8 e   } timestamps are base + tick * integer, with tick = f * 10^e the
//!    3 tick factors      varint f } largest common divisor of the offsets (f=1, e=6 for ms data)
//!    4 value kinds       u8: 0 float, 1 integer, 2 boolean, 3 string, 4 mixed
//!    5 encodings         u8 tags: integer modes, float encodings, decimal digits, boolean encodings
//!    6 timestamp heads   } an integer column's head (see "integers" below) and body, for the
//!    7 timestamps        } timestamp offsets in ticks
//!    8 value heads       } the same for integer values and decimal floats
//!    9 values            }
//!   10 float bits        XOR streams as bytes; raw floats as 8 bytes of IEEE 754 bits each
//!   11 booleans          runs: first value u8 (0 or 1) and run lengths; packed: ceil(n/8) bytes,
//!                        record k in bit (k % 8) of byte k / 8
//!   12 string dictionaries  entry count varint, then the entries as strings (first-use order)
//!   13 string runs       (dictionary index varint | run length varint)*
//!   14 mixed kinds       (kind u8 | run length varint)*
//!   15 qualities         (status code varint | run length varint)*
//!   A run length of 0 means "the rest of the column"; the encoder writes it for every last run.
//! ```
//!
//! Per block, in order: the count; if count > 0, the tick and the timestamp integers; the value
//! kind (always, so an empty column keeps its variant); if count > 0, the values; the qualities.
//!
//! ```text
//! integers(n), mode u8 in "encodings" (head svarints in the head stream, body in the body stream):
//!   0 delta         head: first            body: n - 1 deltas
//!   1 delta-of-delta head: first, first delta  body: n - 2 deltas of deltas
//!   2 linear        head: base, slope      body: n residuals v[i] - (base + i * slope)
//!   3 stride        head: first, step      body: none; v[i] = first + i * step (version 2)
//!   All arithmetic wraps modulo 2^64, so every i64 sequence round-trips.
//!   Version 1 is version 2 without mode 3; this build reads both.
//! float column, encoding u8 in "encodings":
//!   0 raw           n * 8 bytes in float bits
//!   1 XOR           one bytes item in float bits: a Gorilla XOR bit stream, most significant bit
//!                   first: the first value's 64 bits; then per value '0' if equal to the previous,
//!                   '10' and the XOR's bits inside the previous window, or '11', 6 bits of leading
//!                   zeros, 6 bits of (meaningful bits - 1) and the meaningful bits
//!   2 decimal       then digits u8 (0..=9) in "encodings"; integers(n) i, value = (i as f64) / 10^digits
//! integer column: integers(n).   boolean column: encoding u8 (0 runs, 1 packed) in "encodings".
//! string column: dictionary, then runs.   mixed column: kind runs, then the float, integer,
//! boolean and string sub-columns of the records of each kind (each absent when it has none).
//! ```
//!
//! [`encode_columns`] writes one series the same way, without a table or ids: the 15 field streams
//! of that single block, with `base = 0`.
//!
//! # Choices, measured on the plant simulator (1,000 series, mean 10 samples/s, 1 s segments)
//!
//! - Integer mode per column by the fewest estimated bits (significant bits of each zigzag
//!   value), not bytes: after zstd, what counts is entropy. An exact arithmetic sequence (the
//!   timestamps of a scan with no jitter, a constant) is always a stride: a replica chunk is not
//!   compressed until RocksDB's last levels, and a stride is decoded without reading a byte per
//!   value. Linear residuals suit jittered scan
//!   timestamps and noisy readings around a level; deltas suit drift; deltas of deltas counters.
//! - Zigzag varints rather than Gorilla's bit-packed timestamp buckets: zstd entropy-codes varint
//!   bytes but finds nothing in bit-packed data. With timestamps as delta-of-delta varints the
//!   payload cost 1.83 bytes/record, as Gorilla buckets 2.12, with the adaptive modes 1.78.
//! - Decimal floats: quantised instrument readings are integers in disguise. With XOR only the
//!   payload cost 3.23 bytes/record, with decimal 1.78. The float encoding is the smallest of the
//!   three; decimal applies only if every value reproduces its exact bits, so -0.0, NaN and
//!   infinities fall back to XOR or raw.
//! - Field streams rather than one self-contained block per series: 2.00 -> 1.89 bytes/record;
//!   front coding cut at '/': 1.87; tags beside their names: 1.78. The series table is about a
//!   quarter of a 1 s payload.
//!
//! Short segments cost more per record because each carries its own series table and each series'
//! first timestamp and value: at 50 ms segments about 8 bytes/record (10 samples/s) or 20 (1/s).

mod columns;
mod group;
mod wire;

#[cfg(test)]
mod tests;

use std::cell::RefCell;

use crate::record::{self, MAX_TAGS_PER_SERIES, Quality, Record, RecordError, SeriesKey, Value};
pub use columns::Effort;
use columns::{ColumnReader, ColumnWriter, DecodeBudget};
pub use group::{GroupSlot, Grouper, group_records};
use wire::{Reader, put_bytes, put_signed_varint};
pub use wire::{put_varint, unzigzag, varint_prefix, zigzag};

/// The first four bytes of every payload.
pub const PAYLOAD_MAGIC: [u8; 4] = *b"DPAY";
/// The payload format this build writes. It reads this one and every earlier one
/// ([`OLDEST_PAYLOAD_VERSION`]..=`PAYLOAD_VERSION`): version 2 added the stride integer mode.
pub const PAYLOAD_VERSION: u8 = 2;
/// The oldest payload format this build reads: version 1 is version 2 without the stride mode.
pub const OLDEST_PAYLOAD_VERSION: u8 = 1;
/// Bytes before the (compressed) body: magic, version, compression, decoded length.
pub const PAYLOAD_HEADER_BYTES: usize = 10;
/// Largest decoded (decompressed) payload accepted. Sealed segments are far smaller (hundreds of
/// KiB); the bound only stops a hostile payload from claiming gigabytes.
pub const MAX_PAYLOAD_DECODED_BYTES: usize = 64 * 1024 * 1024;
/// Most records one payload may hold.
pub const MAX_RECORDS_PER_PAYLOAD: usize = 4_000_000;
/// Most series table entries, and most column blocks, one payload may hold.
pub const MAX_SERIES_PER_PAYLOAD: usize = 1_000_000;
/// Most bytes of text one decode may materialise: string values, and series names and tags
/// counted once in the table and once more per block that uses them. Strings are
/// dictionary-coded and names front-coded, so a tiny payload could otherwise expand into
/// gigabytes; a sealer keeps its segments far below this bound (see [`check_payload_limits`]).
pub const MAX_DECODED_TEXT_BYTES: usize = 128 * 1024 * 1024;

const COMPRESSION_NONE: u8 = 0;
const COMPRESSION_ZSTD: u8 = 1;

/// The values of one series' records, typed when they all have one kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Every record holds a float.
    F64(Vec<f64>),
    /// Every record holds an integer.
    I64(Vec<i64>),
    /// Every record holds a boolean.
    Bool(Vec<bool>),
    /// Every record holds a string.
    String(Vec<String>),
    /// Records of more than one kind, in record order.
    Mixed(Vec<Value>),
}

impl Values {
    /// How many values the column holds, whatever their kind.
    pub fn len(&self) -> usize {
        match self {
            Self::F64(values) => values.len(),
            Self::I64(values) => values.len(),
            Self::Bool(values) => values.len(),
            Self::String(values) => values.len(),
            Self::Mixed(values) => values.len(),
        }
    }

    /// True if the column holds no value (it still has a kind: its variant).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `index`th value. Panics if `index >= len()`, like slice indexing.
    pub fn get(&self, index: usize) -> Value {
        match self {
            Self::F64(values) => Value::F64(values[index]),
            Self::I64(values) => Value::I64(values[index]),
            Self::Bool(values) => Value::Bool(values[index]),
            Self::String(values) => Value::String(values[index].clone()),
            Self::Mixed(values) => values[index].clone(),
        }
    }

    /// Appends `value`, turning the column into [`Values::Mixed`] if its kind differs.
    pub fn push(&mut self, value: Value) {
        match (&mut *self, value) {
            (Self::F64(values), Value::F64(v)) => values.push(v),
            (Self::I64(values), Value::I64(v)) => values.push(v),
            (Self::Bool(values), Value::Bool(v)) => values.push(v),
            (Self::String(values), Value::String(v)) => values.push(v),
            (Self::Mixed(values), value) => values.push(value),
            (_, value) => {
                let mut mixed: Vec<Value> = (0..self.len()).map(|index| self.get(index)).collect();
                mixed.push(value);
                *self = Self::Mixed(mixed);
            }
        }
    }

    /// An empty column typed for `value`'s kind.
    fn empty_for(value: &Value) -> Self {
        Self::with_capacity_for(value, 0)
    }

    /// An empty column typed for `value`'s kind, with room for `count` values.
    fn with_capacity_for(value: &Value, count: usize) -> Self {
        match value {
            Value::F64(_) => Self::F64(Vec::with_capacity(count)),
            Value::I64(_) => Self::I64(Vec::with_capacity(count)),
            Value::Bool(_) => Self::Bool(Vec::with_capacity(count)),
            Value::String(_) => Self::String(Vec::with_capacity(count)),
        }
    }

    /// Whether the column is typed (not mixed) for `value`'s kind.
    fn holds_kind_of(&self, value: &Value) -> bool {
        matches!(
            (self, value),
            (Self::F64(_), Value::F64(_))
                | (Self::I64(_), Value::I64(_))
                | (Self::Bool(_), Value::Bool(_))
                | (Self::String(_), Value::String(_))
        )
    }

    /// Same variant and bit-identical values (see [`Value::bit_eq`]).
    pub fn bit_eq(&self, other: &Values) -> bool {
        match (self, other) {
            (Self::F64(a), Self::F64(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            (Self::Mixed(a), Self::Mixed(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.bit_eq(y)),
            (Self::I64(a), Self::I64(b)) => a == b,
            (Self::Bool(a), Self::Bool(b)) => a == b,
            (Self::String(a), Self::String(b)) => a == b,
            _ => false,
        }
    }
}

/// The records of one series as parallel columns, in record order. The three columns always have
/// the same length.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesColumns {
    /// The series the records belong to.
    pub key: SeriesKey,
    /// Each record's timestamp, in ns since the Unix epoch: in record order, not necessarily
    /// sorted, duplicates kept.
    pub timestamps_ns: Vec<i64>,
    /// Each record's value, in record order.
    pub values: Values,
    /// Each record's quality, in record order.
    pub qualities: Vec<Quality>,
}

/// 1 if `a < b`, else 0, without a comparison: the sign of `a - b`, corrected for overflow
/// (Hacker's Delight, 2-12), in operations every x86-64 vector unit has.
#[inline]
fn less(a: i64, b: i64) -> u64 {
    let difference = a.wrapping_sub(b);
    (difference ^ ((a ^ b) & (difference ^ a))) as u64 >> 63
}

impl SeriesColumns {
    /// Empty columns for `key`, typed for floats until a value of another kind arrives.
    pub fn new(key: SeriesKey) -> Self {
        Self { key, timestamps_ns: Vec::new(), values: Values::F64(Vec::new()), qualities: Vec::new() }
    }

    /// Empty columns for `key` with room for `count` samples, typed for `first`'s kind.
    pub fn with_capacity(key: SeriesKey, first: &Value, count: usize) -> Self {
        let values = Values::with_capacity_for(first, count);
        Self { key, timestamps_ns: Vec::with_capacity(count), values, qualities: Vec::with_capacity(count) }
    }

    /// Appends one sample.
    pub fn push(&mut self, timestamp_ns: i64, value: Value, quality: Quality) {
        if !self.values.holds_kind_of(&value) && self.timestamps_ns.is_empty() && self.values.is_empty() {
            self.values = Values::empty_for(&value);
        }
        self.timestamps_ns.push(timestamp_ns);
        self.values.push(value);
        self.qualities.push(quality);
    }

    /// Appends every sample of `other` (whatever its key), as pushing them one by one would.
    pub fn append(&mut self, other: &SeriesColumns) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            self.values = match &other.values {
                // Pushed one by one, a mixed column of one kind would end up typed.
                Values::Mixed(more) => {
                    let mut values = Values::empty_for(&more[0]);
                    more.iter().for_each(|value| values.push(value.clone()));
                    values
                }
                typed => typed.clone(),
            };
        } else {
            match (&mut self.values, &other.values) {
                (Values::F64(values), Values::F64(more)) => values.extend_from_slice(more),
                (Values::I64(values), Values::I64(more)) => values.extend_from_slice(more),
                (Values::Bool(values), Values::Bool(more)) => values.extend_from_slice(more),
                (Values::String(values), Values::String(more)) => values.extend_from_slice(more),
                (values, more) => (0..more.len()).for_each(|index| values.push(more.get(index))),
            }
        }
        self.timestamps_ns.extend_from_slice(&other.timestamps_ns);
        self.qualities.extend_from_slice(&other.qualities);
    }

    /// Checks every record the columns hold as [`Record::validate`] would, the key once: the
    /// first error found, not necessarily the first record's (find that with
    /// [`Record::validate`]).
    pub fn validate(&self) -> Result<(), RecordError> {
        self.key.validate()?;
        self.timestamps_ns.iter().try_for_each(|&timestamp_ns| record::validate_timestamp(timestamp_ns))?;
        match &self.values {
            Values::F64(values) => values.iter().try_for_each(|&value| record::validate_f64(value)),
            Values::String(values) => values.iter().try_for_each(|value| record::validate_string(value)),
            Values::I64(_) | Values::Bool(_) => Ok(()),
            Values::Mixed(values) => values.iter().try_for_each(|value| match value {
                Value::F64(value) => record::validate_f64(*value),
                Value::String(value) => record::validate_string(value),
                Value::I64(_) | Value::Bool(_) => Ok(()),
            }),
        }
    }

    /// How many records the columns hold.
    pub fn len(&self) -> usize {
        self.timestamps_ns.len()
    }

    /// Whether the timestamps are strictly ascending. Without an early exit or a 64-bit compare
    /// (which SSE2 lacks), so the comparisons run several at a time.
    pub fn strictly_ascending(&self) -> bool {
        self.timestamps_ns.windows(2).fold(1, |ascending, pair| ascending & less(pair[0], pair[1])) == 1
    }

    /// True if the columns hold no record.
    pub fn is_empty(&self) -> bool {
        self.timestamps_ns.is_empty()
    }

    /// The records, in order, each with a clone of the key.
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        (0..self.len()).map(move |index| Record {
            series: self.key.clone(),
            timestamp_ns: self.timestamps_ns[index],
            value: self.value(index),
            quality: self.qualities[index],
        })
    }

    /// The `index`th value. Panics if `index >= len()`, like slice indexing.
    pub fn value(&self, index: usize) -> Value {
        self.values.get(index)
    }

    /// Earliest and latest timestamp, or `None` when empty.
    pub fn min_max_timestamp(&self) -> Option<(i64, i64)> {
        let first = *self.timestamps_ns.first()?;
        Some(self.timestamps_ns.iter().fold((first, first), |(min, max), &t| (min.min(t), max.max(t))))
    }

    /// Same key, same timestamps and qualities, bit-identical values of the same variant.
    pub fn bit_eq(&self, other: &SeriesColumns) -> bool {
        self.key == other.key
            && self.timestamps_ns == other.timestamps_ns
            && self.qualities == other.qualities
            && self.values.bit_eq(&other.values)
    }
}

/// Merges groups made by [`group_records`] from consecutive runs of records into the groups
/// [`group_records`] would make from all of them at once: series in order of first appearance,
/// each series' columns in run order. Costs a lookup per series per run instead of one per record.
pub fn merge_groups<'a>(runs: impl IntoIterator<Item = &'a [SeriesColumns]>) -> Vec<SeriesColumns> {
    let mut index_of: foldhash::HashMap<&'a SeriesKey, usize> = foldhash::HashMap::default();
    let mut groups: Vec<SeriesColumns> = Vec::new();
    for run in runs {
        for columns in run {
            match index_of.entry(&columns.key) {
                std::collections::hash_map::Entry::Occupied(slot) => groups[*slot.get()].append(columns),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(groups.len());
                    groups.push(columns.clone());
                }
            }
        }
    }
    groups
}

/// Appends the uncompressed columnar encoding of one series' columns, without its key (layout in
/// the module documentation). The receiver stores these bytes as chunks in RocksDB.
///
/// # Panics
/// If the columns have different lengths: a bug in the caller.
pub fn encode_columns(columns: &SeriesColumns, out: &mut Vec<u8>) {
    ChunkEncoder::default().encode(columns, out);
}

/// [`encode_columns`] for many series in a row: keeps its working memory (field streams,
/// deltas, scratch) from one series to the next, so a replica applying a segment of thousands of
/// series allocates it once instead of per series. Gives exactly [`encode_columns`]'s bytes.
#[derive(Debug, Default)]
pub struct ChunkEncoder {
    writer: ColumnWriter,
}

impl ChunkEncoder {
    /// An encoder that looks as hard as `effort` says for each column's smallest form
    /// ([`Default`] looks hardest, as [`encode_columns`] does).
    pub fn with_effort(effort: Effort) -> ChunkEncoder {
        ChunkEncoder { writer: ColumnWriter::with_effort(effort) }
    }

    /// Appends the encoding of `columns` to `out`, as [`encode_columns`] does.
    pub fn encode(&mut self, columns: &SeriesColumns, out: &mut Vec<u8>) {
        self.writer.clear();
        self.writer.write_series(columns, 0);
        self.writer.finish(out);
    }
}

/// [`decode_columns`], and whether the timestamps are known to be strictly ascending without
/// looking at them (a stride with a positive step): `false` says only that they were not checked.
pub fn decode_columns_ordered(bytes: &[u8], key: SeriesKey) -> Result<(SeriesColumns, bool), CodecError> {
    let mut reader = Reader::new(bytes);
    let mut columns = ColumnReader::parse(&mut reader)?;
    reader.expect_end("series columns")?;
    let series = columns.read_series(key, 0, &mut DecodeBudget::new())?;
    columns.expect_end()?;
    Ok((series, columns.known_ascending))
}

/// Decodes what [`encode_columns`] wrote, giving the columns the `key` stored beside them.
pub fn decode_columns(bytes: &[u8], key: SeriesKey) -> Result<SeriesColumns, CodecError> {
    Ok(decode_columns_ordered(bytes, key)?.0)
}

/// Encodes a whole segment payload: header, series table, every series' columns, compressed with
/// zstd at `zstd_level` (clamped to zstd's range; 3 is a good default, 19 for archival).
///
/// The same key may appear in several entries of `series`; [`decode_payload`] gives back exactly
/// `series`, in order. The caller keeps a payload within the decode limits
/// ([`MAX_RECORDS_PER_PAYLOAD`], [`MAX_SERIES_PER_PAYLOAD`], [`MAX_DECODED_TEXT_BYTES`],
/// [`MAX_PAYLOAD_DECODED_BYTES`]);
/// [`check_payload_limits`] checks the first two.
///
/// # Panics
/// If some columns have different lengths: a bug in the caller.
pub fn encode_payload(series: &[SeriesColumns], zstd_level: i32) -> Vec<u8> {
    encode_payload_with(series, zstd_level, Effort::Smallest)
}

/// [`encode_payload`], looking as hard as `effort` says for the smallest form of each column.
///
/// # Panics
/// If some columns have different lengths: a bug in the caller.
pub fn encode_payload_with(series: &[SeriesColumns], zstd_level: i32, effort: Effort) -> Vec<u8> {
    let decoded = encode_decoded_payload(series, effort);
    // A decoded payload above 4 GiB cannot be decoded anyway (the limit is 64 MiB); saturate
    // rather than wrap so the decoder refuses it with a clear message.
    let decoded_length = u32::try_from(decoded.len()).unwrap_or(u32::MAX);
    let level = zstd_level.clamp(*zstd::compression_level_range().start(), *zstd::compression_level_range().end());
    // zstd only fails here when it cannot allocate its context; the uncompressed form is still a
    // valid payload, so fall back to it rather than panic.
    let (compression, body) = match zstd_compress(&decoded, level) {
        Ok(compressed) => (COMPRESSION_ZSTD, compressed),
        Err(_) => (COMPRESSION_NONE, decoded),
    };
    let mut payload = Vec::with_capacity(PAYLOAD_HEADER_BYTES + body.len());
    payload.extend_from_slice(&PAYLOAD_MAGIC);
    payload.push(PAYLOAD_VERSION);
    payload.push(compression);
    payload.extend_from_slice(&decoded_length.to_le_bytes());
    payload.extend_from_slice(&body);
    payload
}

fn encode_decoded_payload(series: &[SeriesColumns], effort: Effort) -> Vec<u8> {
    // The table is the sorted, distinct keys; ids[block] is the table index of block's key.
    let mut order: Vec<usize> = (0..series.len()).collect();
    order.sort_unstable_by(|&a, &b| series[a].key.cmp(&series[b].key));
    let mut table: Vec<&SeriesKey> = Vec::with_capacity(series.len());
    let mut ids = vec![0usize; series.len()];
    for block in order {
        let key = &series[block].key;
        if table.last() != Some(&key) {
            table.push(key);
        }
        ids[block] = table.len() - 1;
    }

    let record_count: usize = series.iter().map(SeriesColumns::len).sum();
    let mut out = Vec::with_capacity(64 + 32 * table.len() + 4 * record_count);
    write_series_table(&table, &mut out);

    let base_ns = series.iter().filter_map(SeriesColumns::min_max_timestamp).map(|(min, _)| min).min().unwrap_or(0);
    put_signed_varint(&mut out, base_ns);
    put_varint(&mut out, series.len() as u64);
    let mut id_steps = Vec::with_capacity(series.len());
    let mut columns_writer = ColumnWriter::with_effort(effort);
    let mut previous_id: i64 = -1;
    for (columns, &id) in series.iter().zip(&ids) {
        // Ids as the step from the previous block's: 0 when blocks follow the table's order.
        let id = id as i64;
        put_signed_varint(&mut id_steps, id - previous_id - 1);
        previous_id = id;
        columns_writer.write_series(columns, base_ns);
    }
    put_bytes(&mut out, &id_steps);
    columns_writer.finish(&mut out);
    out
}

/// The series table, sorted, as two streams: the bytes each name shares with the previous one,
/// then the rest of each name with its tags. (Tags right after the name they belong to compress
/// best: `flow` and `unit=m3/h` recur together.)
fn write_series_table(table: &[&SeriesKey], out: &mut Vec<u8>) {
    put_varint(out, table.len() as u64);
    let mut prefixes = Vec::with_capacity(table.len());
    let mut entries = Vec::new();
    let mut previous_name: &str = "";
    for key in table {
        let shared = shared_prefix_bytes(previous_name, &key.name);
        put_varint(&mut prefixes, shared as u64);
        put_bytes(&mut entries, &key.name.as_bytes()[shared..]);
        put_varint(&mut entries, key.tags.len() as u64);
        for (tag_key, tag_value) in key.tags.iter() {
            put_bytes(&mut entries, tag_key.as_bytes());
            put_bytes(&mut entries, tag_value.as_bytes());
        }
        previous_name = &key.name;
    }
    put_bytes(out, &prefixes);
    put_bytes(out, &entries);
}

/// Bytes of the longest common prefix of `a` and `b` that ends with a `/` (whole path components
/// only: the rest is then a whole word such as `steam_temp`, which zstd matches against its
/// earlier occurrences far better than a fragment such as `eam_temp`).
fn shared_prefix_bytes(a: &str, b: &str) -> usize {
    let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    b.as_bytes()[..common].iter().rposition(|&byte| byte == b'/').map_or(0, |slash| slash + 1)
}

/// Checks the limits [`decode_payload`] enforces that an encoder can see before encoding: the
/// record count and the bytes of string values. A sealer calls it (or keeps its own bounds far
/// below) so that it never seals a payload the receiver must refuse.
pub fn check_payload_limits(series: &[SeriesColumns]) -> Result<(), CodecError> {
    let records: usize = series.iter().map(SeriesColumns::len).sum();
    if records > MAX_RECORDS_PER_PAYLOAD {
        return Err(CodecError::TooManyRecords);
    }
    if series.len() > MAX_SERIES_PER_PAYLOAD {
        return Err(CodecError::TooManySeries { count: series.len() as u64 });
    }
    let text_bytes: usize = series
        .iter()
        .map(|columns| {
            // Counted twice: in the table and in the block (an upper bound when keys repeat).
            2 * key_text_bytes(&columns.key) + string_value_bytes(&columns.values)
        })
        .sum();
    if text_bytes > MAX_DECODED_TEXT_BYTES {
        return Err(CodecError::TooManyTextBytes);
    }
    Ok(())
}

/// Bytes of the string values in `values`.
fn string_value_bytes(values: &Values) -> usize {
    match values {
        Values::String(values) => values.iter().map(String::len).sum(),
        Values::Mixed(values) => values.iter().map(string_bytes).sum(),
        _ => 0,
    }
}

/// Bytes of `value` if it is a string, else 0.
fn string_bytes(value: &Value) -> usize {
    if let Value::String(s) = value { s.len() } else { 0 }
}

/// Most bytes one record adds to a decoded payload besides its string value's own bytes: a
/// timestamp varint (10), a mixed column's kind run (2), an integer or float value (10; a
/// string's dictionary index, run length and entry length take less), a quality run (6), and
/// four to spare. The encoder's worst columns take about 25 (checked in the tests).
const RECORD_BOUND_BYTES: usize = 32;
/// Most bytes one series adds to a decoded payload besides its key's text: its table entry's
/// varints (a few per tag, counted in [`series_bound_bytes`]) and its block's count, tick, kinds,
/// encodings and column heads.
const SERIES_BOUND_BYTES: usize = 128;
/// Most [`decoded_bytes_bound`] a sealer puts in one payload. Under it a payload decodes within
/// every decode limit ([`MAX_PAYLOAD_DECODED_BYTES`], [`MAX_RECORDS_PER_PAYLOAD`],
/// [`MAX_SERIES_PER_PAYLOAD`], [`MAX_DECODED_TEXT_BYTES`], which counts a key's text twice and
/// the bound once) and, compressed, fits a sealed segment (16 MiB less its header and
/// signature: zstd adds at most about 1/256 to data it cannot compress).
pub const MAX_PAYLOAD_BOUND_BYTES: usize = 15 * 1024 * 1024;
const _: () = assert!(
    MAX_PAYLOAD_BOUND_BYTES / RECORD_BOUND_BYTES <= MAX_RECORDS_PER_PAYLOAD
        && MAX_PAYLOAD_BOUND_BYTES / SERIES_BOUND_BYTES <= MAX_SERIES_PER_PAYLOAD
        && 2 * MAX_PAYLOAD_BOUND_BYTES <= MAX_DECODED_TEXT_BYTES
        && MAX_PAYLOAD_BOUND_BYTES <= MAX_PAYLOAD_DECODED_BYTES
);

/// An upper bound on the bytes `columns` adds to a decoded payload (its table entry, its block
/// and its records). The bound of several series is their sum; a payload that merges them (keys
/// that repeat share one table entry) takes no more.
fn series_bound_bytes(columns: &SeriesColumns) -> usize {
    key_bound_bytes(&columns.key) + columns.len() * RECORD_BOUND_BYTES + string_value_bytes(&columns.values)
}

/// The part of [`decoded_bytes_bound`] a series adds once whatever its records: its table entry
/// and its block. Groups of one key merged ([`merge_groups`]) make one entry and one block, so a
/// sealer merging frames may count this once per distinct key: the bound of the merged payload
/// is the frames' bounds less this for every repeat of a key.
pub fn key_bound_bytes(key: &SeriesKey) -> usize {
    key_text_bytes(key) + 8 * key.tags.len() + SERIES_BOUND_BYTES
}

/// [`series_bound_bytes`] summed over `series`: a payload of them decodes to at most this many
/// bytes.
pub fn decoded_bytes_bound(series: &[SeriesColumns]) -> usize {
    series.iter().map(series_bound_bytes).sum()
}

/// `frame` cut, in order, into frames of at most [`MAX_PAYLOAD_BOUND_BYTES`] each (a series
/// whose records alone exceed it is cut between records, its records kept in order), each with
/// its [`decoded_bytes_bound`]; `frame` itself when it is within the bound, as any frame of
/// numbers is. Each series' records keep their order across the frames, so sealing the frames in
/// order keeps every record's rank.
pub fn split_to_bound(frame: Vec<SeriesColumns>) -> Vec<(Vec<SeriesColumns>, usize)> {
    let whole = decoded_bytes_bound(&frame);
    if whole <= MAX_PAYLOAD_BOUND_BYTES {
        return vec![(frame, whole)];
    }
    let mut frames = Vec::new();
    let mut current = Vec::new();
    let mut current_bound = 0;
    for columns in frame {
        let bound = series_bound_bytes(&columns);
        if current_bound + bound <= MAX_PAYLOAD_BOUND_BYTES {
            current_bound += bound;
            current.push(columns);
            continue;
        }
        if !current.is_empty() {
            frames.push((std::mem::take(&mut current), current_bound));
        }
        if bound <= MAX_PAYLOAD_BOUND_BYTES {
            current_bound = bound;
            current.push(columns);
            continue;
        }
        // One series beyond the bound: its records in pieces, each a frame (but the last,
        // which later series may join).
        let empty = || SeriesColumns::new(columns.key.clone());
        let mut piece = empty();
        let mut piece_bound = series_bound_bytes(&piece);
        for record in columns.records() {
            let record_bound = RECORD_BOUND_BYTES + string_bytes(&record.value);
            if !piece.is_empty() && piece_bound + record_bound > MAX_PAYLOAD_BOUND_BYTES {
                frames.push((vec![std::mem::replace(&mut piece, empty())], piece_bound));
                piece_bound = series_bound_bytes(&piece);
            }
            piece_bound += record_bound;
            piece.push(record.timestamp_ns, record.value, record.quality);
        }
        current_bound = piece_bound;
        current.push(piece);
    }
    if !current.is_empty() {
        frames.push((current, current_bound));
    }
    frames
}

/// Bytes of text in a key: its name, tag keys and tag values.
fn key_text_bytes(key: &SeriesKey) -> usize {
    key.name.len() + key.tags.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
}

/// Decodes a payload written by [`encode_payload`]. Total: any input gives `Ok` or an error.
pub fn decode_payload(bytes: &[u8]) -> Result<Vec<SeriesColumns>, CodecError> {
    decode_payload_into(bytes, None)
}

/// A payload's blocks decoded, each with its columns as a replica chunk where the payload's own
/// bytes give it ([`decode_payload_with_chunks`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DecodedPayload {
    /// What [`decode_payload`] gives.
    pub series: Vec<SeriesColumns>,
    /// Every block's chunk, one after the other.
    chunk_bytes: Vec<u8>,
    /// Where each block's chunk ends in `chunk_bytes` (it starts where the previous one ends); a
    /// block without one ends where the previous one does.
    chunk_ends: Vec<usize>,
}

impl DecodedPayload {
    /// The chunk of block `block` (the entry of [`DecodedPayload::series`] at that index): bytes
    /// [`decode_columns`] reads as exactly that entry's columns, as [`encode_columns`]'s would
    /// be, though not always the same bytes (the sealer's encodings are kept). `None` for a block
    /// without records.
    pub fn chunk(&self, block: usize) -> Option<&[u8]> {
        let end = *self.chunk_ends.get(block)?;
        let start = if block == 0 { 0 } else { self.chunk_ends[block - 1] };
        (end > start).then(|| &self.chunk_bytes[start..end])
    }
}

/// [`decode_payload`], and each block's columns as a replica chunk taken from the payload's bytes
/// rather than encoded again: re-encoding the decoded columns of every series was about a fifth of
/// the receiver's apply. What it costs is a copy of the payload's column bytes.
pub fn decode_payload_with_chunks(bytes: &[u8]) -> Result<DecodedPayload, CodecError> {
    let mut chunks = DecodedPayload::default();
    chunks.series = decode_payload_into(bytes, Some(&mut chunks))?;
    Ok(chunks)
}

/// Decodes a payload; with `chunks`, also writes each block's chunk into it.
fn decode_payload_into(
    bytes: &[u8],
    mut chunks: Option<&mut DecodedPayload>,
) -> Result<Vec<SeriesColumns>, CodecError> {
    let decoded = decompress_payload(bytes)?;
    let mut reader = Reader::new(&decoded);
    let mut budget = DecodeBudget::new();
    let table = read_series_table(&mut reader, &mut budget)?;
    let base_ns = reader.signed_varint("base timestamp")?;
    let block_count = reader.varint("column block count")?;
    if block_count > MAX_SERIES_PER_PAYLOAD as u64 {
        return Err(CodecError::TooManySeries { count: block_count });
    }
    let mut id_steps = Reader::new(reader.length_prefixed("series ids")?);
    // Every block has an id step of at least one byte, so the count is bounded by the input.
    if block_count > id_steps.remaining() as u64 {
        return Err(CodecError::OutOfRange {
            what: "column block count",
            offset: reader.position(),
            value: block_count,
            expected: "at most the bytes of the series ids",
        });
    }
    let mut columns = ColumnReader::parse(&mut reader)?;
    reader.expect_end("payload")?;
    if let Some(chunks) = chunks.as_deref_mut() {
        // The column bytes and, per block, fifteen stream lengths of a byte or two.
        chunks.chunk_bytes.reserve(decoded.len() + block_count as usize * 20);
        chunks.chunk_ends.reserve(block_count as usize);
    }

    let mut series = Vec::with_capacity(block_count as usize);
    // Encodes the timestamps of a chunk whose own cannot be moved to base 0 as they are.
    let mut timestamp_writer = ColumnWriter::with_effort(Effort::Fast);
    let mut previous_id: i64 = -1;
    for block in 0..block_count as usize {
        let id_offset = id_steps.position();
        let step = id_steps.signed_varint("series id step")?;
        let id = previous_id.wrapping_add(1).wrapping_add(step);
        let Some(key) = usize::try_from(id).ok().and_then(|id| table.get(id)) else {
            return Err(CodecError::OutOfRange {
                what: "series id",
                offset: id_offset,
                value: id as u64,
                expected: "an index into the payload's series table",
            });
        };
        previous_id = id;
        budget.take_text_bytes(key_text_bytes(key), 1)?;
        let start = columns.positions();
        let decoded = columns.read_series(key.clone(), base_ns, &mut budget).map_err(|error| CodecError::InBlock {
            block,
            series: key.to_string(),
            error: Box::new(error),
        })?;
        if let Some(chunks) = chunks.as_deref_mut() {
            let DecodedPayload { chunk_bytes, chunk_ends, .. } = chunks;
            columns.write_chunk_since(&start, base_ns, &decoded.timestamps_ns, &mut timestamp_writer, chunk_bytes);
            chunk_ends.push(chunk_bytes.len());
        }
        series.push(decoded);
    }
    id_steps.expect_end("series ids")?;
    columns.expect_end()?;
    Ok(series)
}

/// Checks the header and returns the decoded (decompressed) body.
fn decompress_payload(bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
    let Some((header, body)) = bytes.split_first_chunk::<PAYLOAD_HEADER_BYTES>() else {
        return Err(CodecError::HeaderTruncated { length_bytes: bytes.len() });
    };
    let [m0, m1, m2, m3, version, compression, l0, l1, l2, l3] = *header;
    let magic = [m0, m1, m2, m3];
    if magic != PAYLOAD_MAGIC {
        return Err(CodecError::BadMagic { found: magic });
    }
    if !(OLDEST_PAYLOAD_VERSION..=PAYLOAD_VERSION).contains(&version) {
        return Err(CodecError::UnsupportedVersion { version });
    }
    let declared_bytes = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    if declared_bytes > MAX_PAYLOAD_DECODED_BYTES {
        return Err(CodecError::DecodedSizeTooLarge { declared_bytes });
    }
    let decoded = match compression {
        COMPRESSION_NONE => body.to_vec(),
        // The capacity bounds the allocation: zstd refuses to produce more than declared.
        COMPRESSION_ZSTD => zstd_decompress(body, declared_bytes)
            .map_err(|error| CodecError::Decompress { reason: error.to_string() })?,
        code => return Err(CodecError::UnknownCompression { code }),
    };
    if decoded.len() != declared_bytes {
        return Err(CodecError::DecodedSizeMismatch { declared_bytes, actual_bytes: decoded.len() });
    }
    Ok(decoded)
}

thread_local! {
    /// One zstd compression context per thread, with its level, and one decompression context:
    /// making a context (about a megabyte to allocate and clear) cost more than compressing a
    /// small payload, and spool frames and live segments are small and many.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// `zstd::bulk::compress`, with this thread's context: the same bytes. A thread that alternates
/// levels (spool frames at 1, segments at 3, when one thread does both) sets the level on its
/// context rather than making another.
fn zstd_compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with_borrow_mut(|slot| {
        match slot {
            Some((current, compressor)) if *current != level => {
                compressor.set_compression_level(level)?;
                *current = level;
            }
            Some(_) => {}
            None => *slot = Some((level, zstd::bulk::Compressor::new(level)?)),
        }
        let (_, compressor) = slot.as_mut().expect("set just above");
        compressor.compress(data)
    })
}

/// `zstd::bulk::decompress`, with this thread's context: at most `capacity` bytes.
fn zstd_decompress(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with_borrow_mut(|slot| {
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        slot.as_mut().expect("set just above").decompress(data, capacity)
    })
}

thread_local! {
    /// The series table this thread decoded last. A plant's consecutive segments name the same
    /// series, so an entry equal to one of these takes its key (two reference counts) instead of
    /// allocating and validating a new one, and the keys then compare by pointer downstream.
    static LAST_TABLE: RefCell<Vec<SeriesKey>> = const { RefCell::new(Vec::new()) };
}

/// How `key` orders against the series `name` with `tags`, as [`SeriesKey`]'s `Ord` does: by
/// name, then by tags.
fn key_order(key: &SeriesKey, name: &[u8], tags: &[(&str, &str)]) -> std::cmp::Ordering {
    key.name.as_bytes().cmp(name).then_with(|| {
        let known = key.tags.iter().map(|(key, value)| (key.as_str(), value.as_str()));
        known.cmp(tags.iter().copied())
    })
}

fn read_series_table(reader: &mut Reader<'_>, budget: &mut DecodeBudget) -> Result<Vec<SeriesKey>, CodecError> {
    let count = reader.varint("series count")?;
    if count > MAX_SERIES_PER_PAYLOAD as u64 {
        return Err(CodecError::TooManySeries { count });
    }
    let mut prefixes = Reader::new(reader.length_prefixed("series name prefixes")?);
    let mut entries = Reader::new(reader.length_prefixed("series names and tags")?);
    // Every series has a prefix length of at least one byte, so the count is bounded by the input.
    if count > prefixes.remaining() as u64 {
        return Err(CodecError::OutOfRange {
            what: "series count",
            offset: 0,
            value: count,
            expected: "at most the bytes of the series name prefixes",
        });
    }
    // The last table's keys, looked for in order: tables are sorted by key, so a cursor that only
    // moves forward finds each key the two tables share.
    let last = LAST_TABLE.with_borrow_mut(std::mem::take);
    let mut cursor = 0;
    let mut table: Vec<SeriesKey> = Vec::with_capacity(count as usize);
    let mut name = Vec::new();
    let mut tags: Vec<(&str, &str)> = Vec::new();
    for index in 0..count as usize {
        let shared = prefixes.varint_at_most(
            "series name shared prefix",
            name.len() as u64,
            "at most the previous series name's length",
        )? as usize;
        let suffix_offset = entries.position();
        let suffix = entries.length_prefixed("series name")?;
        budget.take_text_bytes(shared + suffix.len(), 1)?;
        name.truncate(shared);
        name.extend_from_slice(suffix);
        let text = std::str::from_utf8(&name)
            .map_err(|_| CodecError::InvalidUtf8 { what: "series name", offset: suffix_offset })?;
        let tag_count = entries.varint_at_most(
            "series tag count",
            MAX_TAGS_PER_SERIES as u64,
            "at most MAX_TAGS_PER_SERIES (32)",
        )? as usize;
        tags.clear();
        for _ in 0..tag_count {
            let tag_key = entries.utf8("tag key")?;
            let tag_value = entries.utf8("tag value")?;
            budget.take_text_bytes(tag_key.len() + tag_value.len(), 1)?;
            tags.push((tag_key, tag_value));
        }
        while last.get(cursor).is_some_and(|key| key_order(key, &name, &tags).is_lt()) {
            cursor += 1;
        }
        let key = match last.get(cursor) {
            // Equal to a key that was validated when it was first decoded.
            Some(known) if key_order(known, &name, &tags).is_eq() => {
                cursor += 1;
                known.clone()
            }
            _ => {
                let owned: Vec<(String, String)> =
                    tags.iter().map(|&(key, value)| (key.to_owned(), value.to_owned())).collect();
                let key = SeriesKey { name: text.into(), tags: owned.into() };
                key.validate().map_err(|reason| CodecError::InvalidSeriesKey { index, reason })?;
                key
            }
        };
        table.push(key);
    }
    prefixes.expect_end("series name prefixes")?;
    entries.expect_end("series names and tags")?;
    LAST_TABLE.with_borrow_mut(|kept| kept.clone_from(&table));
    Ok(table)
}

/// Why a payload or chunk could not be decoded (or, for the limits, encoded). Offsets count bytes
/// from the start of the stream the field was read from: the decoded payload, or one of its
/// length-prefixed streams (the series table's two streams, the series ids, the 15 field
/// streams).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Shorter than the [`PAYLOAD_HEADER_BYTES`]-byte payload header.
    #[error("payload is {length_bytes} bytes, shorter than its {PAYLOAD_HEADER_BYTES}-byte header: it was truncated")]
    HeaderTruncated {
        /// Bytes given.
        length_bytes: usize,
    },
    /// Does not start with [`PAYLOAD_MAGIC`].
    #[error("payload starts with {found:02X?}, not the magic \"DPAY\": these bytes are not a diode segment payload")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// A payload format version outside [`OLDEST_PAYLOAD_VERSION`]..=[`PAYLOAD_VERSION`].
    #[error(
        "payload format version {version} is not supported; this build reads versions {OLDEST_PAYLOAD_VERSION} to {PAYLOAD_VERSION}: upgrade the receiver"
    )]
    UnsupportedVersion {
        /// The version found.
        version: u8,
    },
    /// A compression code other than 0 (none) and 1 (zstd).
    #[error("payload compression code {code} is unknown; version 1 knows 0 (none) and 1 (zstd)")]
    UnknownCompression {
        /// The code found.
        code: u8,
    },
    /// The header declares more decoded bytes than [`MAX_PAYLOAD_DECODED_BYTES`]; refused before
    /// anything is decompressed.
    #[error("payload declares {declared_bytes} decoded bytes; the limit is {MAX_PAYLOAD_DECODED_BYTES}")]
    DecodedSizeTooLarge {
        /// The decoded length the header declares.
        declared_bytes: usize,
    },
    /// zstd refused the body: it is corrupt, or decompresses to more than the header declares.
    #[error("zstd could not decompress the payload body: {reason}")]
    Decompress {
        /// zstd's message.
        reason: String,
    },
    /// The body decoded to fewer (or, uncompressed, other) bytes than the header declares.
    #[error("payload body decompressed to {actual_bytes} bytes but its header declares {declared_bytes}")]
    DecodedSizeMismatch {
        /// The decoded length the header declares.
        declared_bytes: usize,
        /// The decoded body's actual length.
        actual_bytes: usize,
    },
    /// A field runs past the end of the stream it is read from.
    #[error(
        "{what} at byte {offset} needs {needed_bytes} bytes but only {remaining_bytes} remain: the data is truncated"
    )]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where the field starts.
        offset: usize,
        /// Bytes it needs.
        needed_bytes: u64,
        /// Bytes left in the stream.
        remaining_bytes: usize,
    },
    /// A varint longer than 10 bytes, or whose value does not fit in 64 bits.
    #[error("{what} at byte {offset} is a varint longer than 64 bits")]
    VarintOverflow {
        /// The field being read.
        what: &'static str,
        /// Where the varint starts.
        offset: usize,
    },
    /// A field holds a value the format does not allow there: a count more than its data could
    /// hold or above a limit, an index outside a table, a run past its column.
    #[error("{what} at byte {offset} is {value}; expected {expected}")]
    OutOfRange {
        /// The field being read.
        what: &'static str,
        /// Where the field starts.
        offset: usize,
        /// The value found.
        value: u64,
        /// What the format allows there.
        expected: &'static str,
    },
    /// A value kind, integer mode or float or boolean encoding tag that format version 1 does not
    /// define.
    #[error("{what} at byte {offset} has the unknown encoding tag {tag}; the payload may come from a newer sender")]
    UnknownEncoding {
        /// The field being read.
        what: &'static str,
        /// Where the tag is.
        offset: usize,
        /// The tag found.
        tag: u8,
    },
    /// A series name, tag or string value is not valid UTF-8.
    #[error("{what} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field being read.
        what: &'static str,
        /// Where the text starts.
        offset: usize,
    },
    /// Bytes are left over after the last field of a stream, or of the whole payload or chunk:
    /// every byte must be accounted for.
    #[error("{what} ends at byte {offset} but {remaining_bytes} more bytes follow")]
    TrailingBytes {
        /// The stream that should have ended.
        what: &'static str,
        /// Where it should have ended.
        offset: usize,
        /// Bytes left over.
        remaining_bytes: usize,
    },
    /// More than [`MAX_RECORDS_PER_PAYLOAD`] records: found while decoding, or by
    /// [`check_payload_limits`] before encoding.
    #[error("the payload holds more than {MAX_RECORDS_PER_PAYLOAD} records, the limit per payload")]
    TooManyRecords,
    /// More than [`MAX_DECODED_TEXT_BYTES`] of text (string values, series names and tags) would
    /// be materialised: found while decoding, or by [`check_payload_limits`] before encoding.
    #[error(
        "the payload's string values, series names and tags add up to more than {MAX_DECODED_TEXT_BYTES} bytes, the limit per payload"
    )]
    TooManyTextBytes,
    /// More than [`MAX_SERIES_PER_PAYLOAD`] series table entries or column blocks.
    #[error("the payload has {count} series or column blocks; the limit is {MAX_SERIES_PER_PAYLOAD}")]
    TooManySeries {
        /// The count found, or given to [`check_payload_limits`].
        count: u64,
    },
    /// An entry of the series table breaks the rules of [`SeriesKey::validate`]. The message
    /// includes the reason, so it is not also reported as a `source`.
    #[error("series {index} of the payload's series table is invalid: {reason}")]
    InvalidSeriesKey {
        /// The entry's index in the table, from 0.
        index: usize,
        /// The rule it breaks.
        reason: RecordError,
    },
    /// A column block of the payload does not decode. The message includes the inner error, so
    /// it is not also reported as a `source`.
    #[error("column block {block} (series {series}): {error}")]
    InBlock {
        /// The block's index, from 0.
        block: usize,
        /// The block's series, as `name{key=value,...}`.
        series: String,
        /// What is wrong inside the block.
        error: Box<CodecError>,
    },
}

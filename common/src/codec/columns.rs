//! The columnar encoding of series: timestamps, values and qualities, split into field streams
//! (layout in the [module documentation](super)).
//!
//! Each field (record counts, timestamp ticks, encoding tags, timestamp residuals, value residuals,
//! ...) of every series goes to its own stream, so zstd sees long runs of alike bytes: the tags of
//! a thousand series that all use the same encodings compress to almost nothing. Encoders pick, per
//! column, the smallest of a few encodings and say which with a tag byte, so a decoder never
//! guesses. Decoders trust nothing: every count is checked against the remaining input and the
//! [`DecodeBudget`] before anything is allocated for it.

use std::collections::HashMap;

use super::wire::{
    BitReader, BitWriter, Reader, put_bytes, put_signed_varint, put_varint, unzigzag, varint_len, varint_prefix, zigzag,
};
use super::{CodecError, MAX_DECODED_TEXT_BYTES, MAX_RECORDS_PER_PAYLOAD, SeriesColumns, Values};
use crate::record::{Quality, SeriesKey, Value, ValueKind};

const VALUES_MIXED: u8 = 4;

const INTEGERS_DELTA: u8 = 0;
const INTEGERS_DELTA_OF_DELTA: u8 = 1;
const INTEGERS_LINEAR: u8 = 2;
/// An exact arithmetic sequence (a regular scan's timestamps, a constant): the head alone.
const INTEGERS_STRIDE: u8 = 3;

const F64_RAW: u8 = 0;
const F64_XOR: u8 = 1;
const F64_DECIMAL: u8 = 2;

const BOOL_RUNS: u8 = 0;
const BOOL_PACKED: u8 = 1;

/// Largest `d` of the decimal float encoding (`value == integer / 10^d`).
const MAX_DECIMAL_DIGITS: usize = 9;
const POWERS_OF_TEN: [f64; MAX_DECIMAL_DIGITS + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/// 10^0 ..= 10^18, every power of ten an i64 holds.
const POWERS_OF_TEN_I64: [i64; 19] = {
    let mut powers = [1i64; 19];
    let mut index = 1;
    while index < powers.len() {
        powers[index] = powers[index - 1] * 10;
        index += 1;
    }
    powers
};

/// The field streams, in the order they are written. Every series appends to each stream it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// Record count of each series (varint).
    Counts,
    /// Timestamp tick as `factor * 10^exponent`: exponents (u8).
    TickExponents,
    /// Timestamp tick factors (varint).
    TickFactors,
    /// Value kind of each series (u8: 0 float, 1 integer, 2 boolean, 3 string, 4 mixed).
    ValueKinds,
    /// Encoding tags: integer modes, float encodings, decimal digits, boolean encodings (u8 each).
    Encodings,
    /// First value (or base and slope) of each timestamp integer column (svarint).
    TimestampHeads,
    /// Timestamp deltas, deltas of deltas or residuals (svarint).
    Timestamps,
    /// First value (or base and slope) of each value integer column (svarint).
    ValueHeads,
    /// Integer and decimal-float deltas, deltas of deltas or residuals (svarint).
    Values,
    /// Gorilla XOR streams (bytes) and raw floats (8 bytes each, little-endian).
    FloatBits,
    /// Boolean columns: first value and run lengths, or packed bits.
    Booleans,
    /// String dictionaries: entry count (varint), then the entries (bytes).
    StringDictionaries,
    /// String runs: dictionary index and run length (varints).
    StringRuns,
    /// Mixed columns' kind runs: kind (u8) and run length (varint).
    MixedKinds,
    /// Quality runs: status code and run length (varints).
    Qualities,
}

const FIELD_COUNT: usize = 15;
const FIELDS: [Field; FIELD_COUNT] = [
    Field::Counts,
    Field::TickExponents,
    Field::TickFactors,
    Field::ValueKinds,
    Field::Encodings,
    Field::TimestampHeads,
    Field::Timestamps,
    Field::ValueHeads,
    Field::Values,
    Field::FloatBits,
    Field::Booleans,
    Field::StringDictionaries,
    Field::StringRuns,
    Field::MixedKinds,
    Field::Qualities,
];

/// Where an integer column's head (first value, or base and slope) and body (the rest) go.
#[derive(Debug, Clone, Copy)]
struct IntegerFields {
    head: Field,
    body: Field,
}

const TIMESTAMP_INTEGERS: IntegerFields = IntegerFields { head: Field::TimestampHeads, body: Field::Timestamps };
const VALUE_INTEGERS: IntegerFields = IntegerFields { head: Field::ValueHeads, body: Field::Values };

/// What one decode call may still materialise: records and bytes of text (string values, series
/// names and tags). Shared by all the series of a payload, so a hostile payload cannot multiply a
/// small input into a huge output (a 64 KiB string repeated by a run length of millions, a long
/// name repeated by front coding, or a key cloned into a million empty blocks).
#[derive(Debug)]
pub(super) struct DecodeBudget {
    records_left: u64,
    text_bytes_left: u64,
}

impl DecodeBudget {
    pub(super) fn new() -> Self {
        Self { records_left: MAX_RECORDS_PER_PAYLOAD as u64, text_bytes_left: MAX_DECODED_TEXT_BYTES as u64 }
    }

    fn take_records(&mut self, count: usize) -> Result<(), CodecError> {
        self.records_left = self.records_left.checked_sub(count as u64).ok_or(CodecError::TooManyRecords)?;
        Ok(())
    }

    /// Charges `repeats` copies of a text of `length_bytes`.
    pub(super) fn take_text_bytes(&mut self, length_bytes: usize, repeats: usize) -> Result<(), CodecError> {
        let total = (length_bytes as u64).saturating_mul(repeats as u64);
        self.text_bytes_left = self.text_bytes_left.checked_sub(total).ok_or(CodecError::TooManyTextBytes)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// How hard an encoder looks for the smallest form of each column. Either gives bytes every
/// decoder reads; only their size and the encoder's time differ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Effort {
    /// Every integer mode, lines included (their medians are most of the encoding's time), and
    /// decimal floats where they are smaller: what the wire and the replica store.
    #[default]
    Smallest,
    /// Integers as deltas or deltas of deltas only: for bytes kept a short while, such as the
    /// sender's spool frames, which live until they are sealed.
    Fast,
}

/// Collects the field streams of one or more series; [`finish`](Self::finish) writes them out.
#[derive(Debug, Default)]
pub(super) struct ColumnWriter {
    /// How hard to look for the smallest form of each column.
    effort: Effort,
    fields: [Vec<u8>; FIELD_COUNT],
    /// Reused for the medians of the integer modes, to save an allocation per column.
    scratch: Vec<i64>,
    /// Reused for a series' timestamps in ticks, an integer column's deltas and a float column's
    /// decimal integers: a writer that encodes many series allocates these once.
    ticks: Vec<i64>,
    deltas: Vec<i64>,
    decimals: Vec<i64>,
}

impl ColumnWriter {
    /// A writer that looks as hard as `effort` says for each column's smallest form.
    pub(super) fn with_effort(effort: Effort) -> Self {
        Self { effort, ..Self::default() }
    }

    /// Empties the field streams, keeping their memory for the next series.
    pub(super) fn clear(&mut self) {
        for field in &mut self.fields {
            field.clear();
        }
    }

    fn field(&mut self, field: Field) -> &mut Vec<u8> {
        &mut self.fields[field as usize]
    }

    /// Appends one series' columns, with timestamps relative to `base_ns`.
    ///
    /// # Panics
    /// If the three columns do not have the same length: that is a bug in the caller, not bad input.
    pub(super) fn write_series(&mut self, columns: &SeriesColumns, base_ns: i64) {
        let count = columns.timestamps_ns.len();
        assert!(
            columns.values.len() == count && columns.qualities.len() == count,
            "series {} has {} timestamps, {} values and {} qualities; the columns must have equal lengths",
            columns.key,
            count,
            columns.values.len(),
            columns.qualities.len()
        );
        put_varint(self.field(Field::Counts), count as u64);
        self.write_timestamps(&columns.timestamps_ns, base_ns);
        self.write_values(&columns.values);
        self.write_qualities(&columns.qualities);
    }

    /// Writes every field stream as a varint length and its bytes.
    pub(super) fn finish(&self, out: &mut Vec<u8>) {
        for field in &self.fields {
            put_bytes(out, field);
        }
    }

    fn write_timestamps(&mut self, timestamps_ns: &[i64], base_ns: i64) {
        if timestamps_ns.is_empty() {
            return;
        }
        let tick = timestamp_tick(timestamps_ns, base_ns);
        let (exponent, factor) = tick_parts(tick);
        self.field(Field::TickExponents).push(exponent);
        put_varint(self.field(Field::TickFactors), factor as u64);
        let mut ticks = std::mem::take(&mut self.ticks);
        ticks.clear();
        ticks.extend(timestamps_ns.iter().map(|&t| t.wrapping_sub(base_ns) / tick));
        self.write_integers(&ticks, TIMESTAMP_INTEGERS);
        self.ticks = ticks;
    }

    /// Writes `values` in whichever integer mode promises the fewest bits: deltas (noisy or
    /// drifting values), deltas of deltas (steady counters), or residuals from a line (timestamps
    /// of a regular scan with jitter: slope = the period; noisy readings around a level: slope 0).
    fn write_integers(&mut self, values: &[i64], fields: IntegerFields) {
        let Some(&first) = values.first() else { return };
        if values.len() == 1 {
            self.field(Field::Encodings).push(INTEGERS_DELTA);
            put_signed_varint(self.field(fields.head), first);
            return;
        }
        let mut deltas = std::mem::take(&mut self.deltas);
        deltas.clear();
        deltas.extend(values.windows(2).map(|pair| pair[1].wrapping_sub(pair[0])));
        self.write_integer_body(values, &deltas, fields);
        self.deltas = deltas;
    }

    /// [`write_integers`](Self::write_integers) for two or more values, given their deltas.
    fn write_integer_body(&mut self, values: &[i64], deltas: &[i64], fields: IntegerFields) {
        let first = values[0];
        if deltas.iter().all(|&delta| delta == deltas[0]) {
            // Every value is first + index * step: two head varints instead of a body byte per
            // value, and a decoder that fills the column without reading any.
            self.field(Field::Encodings).push(INTEGERS_STRIDE);
            put_signed_varint(self.field(fields.head), first);
            put_signed_varint(self.field(fields.head), deltas[0]);
            return;
        }
        let delta_bits = estimated_bits(first) + deltas.iter().map(|&d| estimated_bits(d)).sum::<u64>();
        let delta_of_delta_bits = estimated_bits(first)
            + estimated_bits(deltas[0])
            + deltas.windows(2).map(|pair| estimated_bits(pair[1].wrapping_sub(pair[0]))).sum::<u64>();
        if self.effort == Effort::Fast {
            // Deltas or deltas of deltas only: the line's medians cost more than the rest.
            self.write_deltas(values, deltas, fields, delta_of_delta_bits < delta_bits);
            return;
        }
        let period = median(&mut self.scratch, deltas.iter().copied());
        let (mut linear_bits, mut base) = linear_fit(&mut self.scratch, values, period);
        let mut slope = period;
        if period != 0 {
            let (level_bits, level_base) = linear_fit(&mut self.scratch, values, 0);
            if level_bits < linear_bits {
                (linear_bits, base, slope) = (level_bits, level_base, 0);
            }
        }

        if linear_bits < delta_bits.min(delta_of_delta_bits) {
            self.field(Field::Encodings).push(INTEGERS_LINEAR);
            put_signed_varint(self.field(fields.head), base);
            put_signed_varint(self.field(fields.head), slope);
            let body = self.field(fields.body);
            for (index, value) in values.iter().enumerate() {
                put_signed_varint(body, value.wrapping_sub(base.wrapping_add((index as i64).wrapping_mul(slope))));
            }
        } else {
            self.write_deltas(values, deltas, fields, delta_of_delta_bits < delta_bits);
        }
    }

    /// Writes two or more integers as deltas of deltas or as deltas.
    fn write_deltas(&mut self, values: &[i64], deltas: &[i64], fields: IntegerFields, of_deltas: bool) {
        let first = values[0];
        if of_deltas {
            self.field(Field::Encodings).push(INTEGERS_DELTA_OF_DELTA);
            put_signed_varint(self.field(fields.head), first);
            put_signed_varint(self.field(fields.head), deltas[0]);
            let body = self.field(fields.body);
            for pair in deltas.windows(2) {
                put_signed_varint(body, pair[1].wrapping_sub(pair[0]));
            }
        } else {
            self.field(Field::Encodings).push(INTEGERS_DELTA);
            put_signed_varint(self.field(fields.head), first);
            let body = self.field(fields.body);
            for &delta in deltas {
                put_signed_varint(body, delta);
            }
        }
    }

    fn write_values(&mut self, values: &Values) {
        let kind = match values {
            Values::F64(_) => ValueKind::F64 as u8,
            Values::I64(_) => ValueKind::I64 as u8,
            Values::Bool(_) => ValueKind::Bool as u8,
            Values::String(_) => ValueKind::String as u8,
            Values::Mixed(_) => VALUES_MIXED,
        };
        self.field(Field::ValueKinds).push(kind);
        match values {
            Values::F64(values) => self.write_f64s(values),
            Values::I64(values) => self.write_integers(values, VALUE_INTEGERS),
            Values::Bool(values) => self.write_bools(values),
            Values::String(values) => self.write_strings(values.iter().map(String::as_str), values.len()),
            Values::Mixed(values) => self.write_mixed(values),
        }
    }

    fn write_f64s(&mut self, values: &[f64]) {
        if values.is_empty() {
            return;
        }
        if self.effort == Effort::Fast {
            self.write_f64s_fast(values);
            return;
        }
        let raw_bytes = 8 * values.len();
        let mut xor_bits = BitCounter::default();
        write_xor(values, &mut xor_bits);
        let xor_stream_bytes = xor_bits.0.div_ceil(8);
        let xor_bytes = varint_len(xor_stream_bytes as u64) + xor_stream_bytes;

        let mut integers = std::mem::take(&mut self.decimals);
        let decimal = decimal_integers(values, &mut integers);
        let decimal_bytes = decimal.map(|_| estimated_integer_bytes(&integers));
        match (decimal, decimal_bytes) {
            (Some(digits), Some(bytes)) if bytes <= xor_bytes && bytes <= raw_bytes => {
                self.field(Field::Encodings).extend_from_slice(&[F64_DECIMAL, digits]);
                self.write_integers(&integers, VALUE_INTEGERS);
            }
            _ if xor_bytes <= raw_bytes => {
                self.field(Field::Encodings).push(F64_XOR);
                let mut writer = BitWriter::with_capacity(xor_stream_bytes);
                write_xor(values, &mut writer);
                put_bytes(self.field(Field::FloatBits), &writer.into_bytes());
            }
            _ => {
                self.field(Field::Encodings).push(F64_RAW);
                let out = self.field(Field::FloatBits);
                for value in values {
                    out.extend_from_slice(&value.to_bits().to_le_bytes());
                }
            }
        }
        self.decimals = integers;
    }

    /// [`write_f64s`](Self::write_f64s) without sizing the forms against each other: decimals when
    /// every value is one (readings usually are), XOR otherwise. One pass fewer over the column (two
    /// for decimals), for frames that are read back once.
    fn write_f64s_fast(&mut self, values: &[f64]) {
        let mut integers = std::mem::take(&mut self.decimals);
        if let Some(digits) = decimal_integers(values, &mut integers) {
            self.field(Field::Encodings).extend_from_slice(&[F64_DECIMAL, digits]);
            self.write_integers(&integers, VALUE_INTEGERS);
        } else {
            self.field(Field::Encodings).push(F64_XOR);
            let mut writer = BitWriter::with_capacity(values.len() * 2);
            write_xor(values, &mut writer);
            put_bytes(self.field(Field::FloatBits), &writer.into_bytes());
        }
        self.decimals = integers;
    }

    fn write_bools(&mut self, values: &[bool]) {
        let Some(&first) = values.first() else { return };
        let runs = runs(values.iter().copied());
        let runs_bytes = 1 + runs.iter().map(|&(_, length)| varint_len(length as u64)).sum::<usize>();
        if runs_bytes <= values.len().div_ceil(8) {
            self.field(Field::Encodings).push(BOOL_RUNS);
            let out = self.field(Field::Booleans);
            out.push(u8::from(first));
            let last = runs.len() - 1;
            for (index, (_, length)) in runs.into_iter().enumerate() {
                put_run_length(out, length, index == last);
            }
        } else {
            self.field(Field::Encodings).push(BOOL_PACKED);
            let out = self.field(Field::Booleans);
            for chunk in values.chunks(8) {
                let byte = chunk.iter().enumerate().fold(0u8, |byte, (bit, &value)| byte | (u8::from(value) << bit));
                out.push(byte);
            }
        }
    }

    fn write_strings<'a>(&mut self, values: impl Iterator<Item = &'a str>, count: usize) {
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
        let out = self.field(Field::StringDictionaries);
        put_varint(out, entries.len() as u64);
        for entry in entries {
            put_bytes(out, entry.as_bytes());
        }
        let out = self.field(Field::StringRuns);
        let last = runs.len() - 1;
        for (run, (index, length)) in runs.into_iter().enumerate() {
            put_varint(out, index as u64);
            put_run_length(out, length, run == last);
        }
    }

    fn write_mixed(&mut self, values: &[Value]) {
        if values.is_empty() {
            return;
        }
        let kinds = runs(values.iter().map(Value::kind));
        let out = self.field(Field::MixedKinds);
        let last = kinds.len() - 1;
        for (index, (kind, length)) in kinds.into_iter().enumerate() {
            out.push(kind as u8);
            put_run_length(out, length, index == last);
        }
        let floats: Vec<f64> =
            values.iter().filter_map(|v| if let Value::F64(x) = v { Some(*x) } else { None }).collect();
        let integers: Vec<i64> =
            values.iter().filter_map(|v| if let Value::I64(x) = v { Some(*x) } else { None }).collect();
        let bools: Vec<bool> =
            values.iter().filter_map(|v| if let Value::Bool(x) = v { Some(*x) } else { None }).collect();
        let strings = values.iter().filter_map(|v| if let Value::String(x) = v { Some(x.as_str()) } else { None });
        let string_count = strings.clone().count();
        self.write_f64s(&floats);
        self.write_integers(&integers, VALUE_INTEGERS);
        self.write_bools(&bools);
        self.write_strings(strings, string_count);
    }

    fn write_qualities(&mut self, qualities: &[Quality]) {
        let out = self.field(Field::Qualities);
        let mut rest = qualities;
        while let Some(&quality) = rest.first() {
            let length = rest.iter().take_while(|&&q| q == quality).count();
            rest = &rest[length..];
            put_varint(out, u64::from(quality.0));
            put_run_length(out, length, rest.is_empty());
        }
    }
}

/// The tick (exponent, factor varint) and timestamp heads with which a series' timestamps, read
/// with `base_ns` from the streams `slice` gives, are written with base 0 without touching their
/// body ([`ColumnReader::write_chunk_since`]); `None` when the body would change.
fn moved_timestamp_heads<'a>(slice: &impl Fn(Field) -> &'a [u8], base_ns: i64) -> Option<(u8, Vec<u8>, Vec<u8>)> {
    let exponent = Reader::new(slice(Field::TickExponents)).u8("tick").ok()?;
    let factor = Reader::new(slice(Field::TickFactors)).varint("tick").ok()?;
    let tick = tick_of(exponent, factor)?;
    // `tick > 0` and `chunk_tick > 0` below, so no `%` or `/` here can overflow.
    let chunk_tick = if base_ns % tick == 0 {
        tick
    } else if slice(Field::Timestamps).is_empty() {
        // At most `tick`, so it fits.
        gcd(tick as u64, base_ns.unsigned_abs()) as i64
    } else {
        return None;
    };
    let (scale, base_ticks) = (tick / chunk_tick, base_ns / chunk_tick);
    // base + t * tick == (base / tick' + t * scale) * tick', in the wrapping arithmetic the reader
    // uses. The first head is the first tick (delta, delta of deltas, stride) or a line's base
    // (linear, which always has a body, so its scale is 1); any further head is a difference (a
    // first delta, a step, a slope), which scales but does not move.
    let heads = slice(Field::TimestampHeads);
    let mut head_reader = Reader::new(heads);
    let mut moved = Vec::with_capacity(heads.len() + 10);
    let mut first = true;
    while !head_reader.is_empty() {
        let head = head_reader.signed_varint("timestamp head").ok()?;
        let shifted = if first { head.wrapping_mul(scale).wrapping_add(base_ticks) } else { head.wrapping_mul(scale) };
        put_signed_varint(&mut moved, shifted);
        first = false;
    }
    let (chunk_exponent, chunk_factor) = tick_parts(chunk_tick);
    let mut factor_bytes = Vec::with_capacity(10);
    put_varint(&mut factor_bytes, chunk_factor as u64);
    Some((chunk_exponent, factor_bytes, moved))
}

/// A positive tick as factor * 10^exponent, the exponent as large as it goes: (1, 6) for
/// milliseconds, two bytes that recur in every series.
fn tick_parts(tick: i64) -> (u8, i64) {
    let (mut exponent, mut factor) = (0u8, tick);
    while factor % 10 == 0 {
        factor /= 10;
        exponent += 1;
    }
    (exponent, factor)
}

/// The tick `factor * 10^exponent` as read, if it is between 1 and `i64::MAX` nanoseconds.
fn tick_of(exponent: u8, factor: u64) -> Option<i64> {
    POWERS_OF_TEN_I64
        .get(usize::from(exponent))
        .and_then(|&power| i64::try_from(factor).ok()?.checked_mul(power))
        .filter(|&tick| tick > 0)
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

/// Estimated bits of a zigzag value once zstd has entropy-coded its varint: its significant bits
/// (at least one). A proxy for choosing between integer modes; byte counts are too coarse, since
/// most values of a good mode fit one byte anyway.
#[inline]
fn estimated_bits(value: i64) -> u64 {
    u64::from(65 - zigzag(value).leading_zeros())
}

/// Bytes the integers take as plain deltas, or as a stride when they are one: a quick, fair
/// yardstick against XOR and raw floats.
fn estimated_integer_bytes(integers: &[i64]) -> usize {
    let first = integers.first().map_or(0, |&first| varint_len(zigzag(first)));
    let mut deltas = integers.windows(2).map(|pair| pair[1].wrapping_sub(pair[0]));
    let step = deltas.next();
    if step.is_some_and(|step| deltas.all(|delta| delta == step)) {
        return first + step.map_or(0, |step| varint_len(zigzag(step)));
    }
    first + integers.windows(2).map(|pair| varint_len(zigzag(pair[1].wrapping_sub(pair[0])))).sum::<usize>()
}

/// The median of `values`, selected in `scratch`.
fn median(scratch: &mut Vec<i64>, values: impl Iterator<Item = i64>) -> i64 {
    scratch.clear();
    scratch.extend(values);
    let middle = scratch.len() / 2;
    *scratch.select_nth_unstable(middle).1
}

/// Residuals of `values` from the line `base + index * slope`, with `base` the median that makes
/// them smallest for this slope. Returns (estimated bits, base).
fn linear_fit(scratch: &mut Vec<i64>, values: &[i64], slope: i64) -> (u64, i64) {
    let detrend = |(index, value): (usize, &i64)| value.wrapping_sub((index as i64).wrapping_mul(slope));
    let base = median(scratch, values.iter().enumerate().map(detrend));
    let bits = estimated_bits(base)
        + estimated_bits(slope)
        + values.iter().enumerate().map(|item| estimated_bits(detrend(item).wrapping_sub(base))).sum::<u64>();
    (bits, base)
}

/// `value` as `integer / 10^digits`, if that reproduces its bits exactly (never for -0.0, NaN or
/// infinities, so those fall back to XOR or raw).
#[inline]
fn decimal_integer(value: f64, digits: usize) -> Option<i64> {
    let power = POWERS_OF_TEN[digits];
    let scaled = value * power;
    // Inside the i64 range (and not NaN): the casts below are then exact.
    if scaled.is_nan() || scaled.abs() >= 9.2e18 {
        return None;
    }
    // `scaled.round()` (half away from zero) without a call to libm's `round`, which the portable
    // x86-64 build cannot inline (it was 2 % of the receiver's apply thread): the cast truncates
    // toward zero, and `scaled - truncated` is exact (both are within one unit of each other, and
    // at or above 2^52 `scaled` is already an integer).
    let truncated = scaled as i64;
    let fraction = scaled - truncated as f64;
    let integer = truncated + i64::from(fraction >= 0.5) - i64::from(fraction <= -0.5);
    ((integer as f64 / power).to_bits() == value.to_bits()).then_some(integer)
}

/// The fewest decimal digits that represent every value exactly, with the integers in `integers`
/// (cleared first), if any.
fn decimal_integers(values: &[f64], integers: &mut Vec<i64>) -> Option<u8> {
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
    integers.clear();
    for &value in values {
        integers.push(decimal_integer(value, digits)?);
    }
    Some(digits as u8)
}

#[cfg(test)]
pub(super) fn decimal_digits_for_tests(values: &[f64]) -> Option<u8> {
    decimal_integers(values, &mut Vec::new())
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

/// Writes a run length; the last run of a column is written as 0, "the rest", so that the usual
/// column of a single run (all good, pump still running) costs one very common byte.
fn put_run_length(out: &mut Vec<u8>, length: usize, is_last: bool) {
    put_varint(out, if is_last { 0 } else { length as u64 });
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

// ---------------------------------------------------------------------------------------------
// Decoding

/// Reads series from the field streams a [`ColumnWriter`] wrote.
#[derive(Debug)]
pub(super) struct ColumnReader<'a> {
    fields: [Reader<'a>; FIELD_COUNT],
    /// The last series read had timestamps known to be strictly ascending without looking at
    /// them: at most one, or a stride with a positive step that does not wrap.
    pub(super) known_ascending: bool,
}

impl<'a> ColumnReader<'a> {
    /// Splits the field streams off `reader`.
    pub(super) fn parse(reader: &mut Reader<'a>) -> Result<Self, CodecError> {
        let mut fields = [const { Reader::empty() }; FIELD_COUNT];
        for field in &mut fields {
            *field = Reader::new(reader.length_prefixed("column field stream")?);
        }
        Ok(Self { fields, known_ascending: false })
    }

    fn field(&mut self, field: Field) -> &mut Reader<'a> {
        &mut self.fields[field as usize]
    }

    /// Errors unless every stream has been read to its end.
    pub(super) fn expect_end(&self) -> Result<(), CodecError> {
        for (reader, field) in self.fields.iter().zip(FIELDS) {
            reader.expect_end(field.name())?;
        }
        Ok(())
    }

    /// Where each field stream stands: taken before [`read_series`](Self::read_series), it lets
    /// [`write_chunk_since`](Self::write_chunk_since) find the bytes of the series read.
    pub(super) fn positions(&self) -> [usize; FIELD_COUNT] {
        std::array::from_fn(|index| self.fields[index].position())
    }

    /// Appends the series read since `start` ([`positions`](Self::positions)), written with
    /// `base_ns`, whose timestamps were `timestamps_ns`, as a chunk: what a [`ColumnWriter`] with
    /// base 0 writes for one series, the field streams as length-prefixed bytes. The values and
    /// qualities are taken as they are, so a chunk decodes to exactly the columns read, in the
    /// encodings the payload's writer chose. So are the timestamps where they can be: a
    /// timestamp is `base + ticks * tick`, and with base 0 it is `ticks' * tick'` for a `tick'`
    /// dividing both `tick` and `base`. Where `tick` divides `base` it stays, and only the first
    /// head moves (by `base / tick`); where the column is its heads alone (one record, two, or a
    /// stride: no body to scale), `tick' = gcd(tick, base)` and every head is scaled by
    /// `tick / tick'`. Otherwise `writer` encodes the timestamps again. Appends nothing and
    /// returns false for a series without records.
    pub(super) fn write_chunk_since(
        &self,
        start: &[usize; FIELD_COUNT],
        base_ns: i64,
        timestamps_ns: &[i64],
        writer: &mut ColumnWriter,
        out: &mut Vec<u8>,
    ) -> bool {
        if timestamps_ns.is_empty() {
            return false;
        }
        let slice = |field: Field| self.fields[field as usize].since(start[field as usize]);
        if let Some((tick_exponent, tick_factor, heads)) = moved_timestamp_heads(&slice, base_ns) {
            for field in FIELDS {
                match field {
                    Field::TickExponents => put_bytes(out, &[tick_exponent]),
                    Field::TickFactors => put_bytes(out, &tick_factor),
                    Field::TimestampHeads => put_bytes(out, &heads),
                    _ => put_bytes(out, slice(field)),
                }
            }
            return true;
        }
        writer.clear();
        writer.write_timestamps(timestamps_ns, 0);
        // A block's first encoding tag is its timestamps' integer mode (they are written first).
        let value_encodings = slice(Field::Encodings).get(1..).unwrap_or_default();
        writer.field(Field::Encodings).extend_from_slice(value_encodings);
        for field in FIELDS {
            match field {
                Field::TickExponents
                | Field::TickFactors
                | Field::TimestampHeads
                | Field::Timestamps
                | Field::Encodings => put_bytes(out, &writer.fields[field as usize]),
                _ => put_bytes(out, slice(field)),
            }
        }
        true
    }

    /// Reads the next series' columns, written with the same `base_ns`.
    pub(super) fn read_series(
        &mut self,
        key: SeriesKey,
        base_ns: i64,
        budget: &mut DecodeBudget,
    ) -> Result<SeriesColumns, CodecError> {
        let counts = self.field(Field::Counts);
        let offset = counts.position();
        let count = counts.varint("record count")?;
        // Unless the timestamps are a stride (no body), every record but the first two has a
        // timestamp of at least one byte in its stream (the head holds up to two), so the count
        // is bounded by the input before anything is allocated for it; a stride's count is
        // bounded by the budget alone, like a run of one quality.
        let timestamp_mode = self.field(Field::Encodings).peek_u8();
        if count > 0 && timestamp_mode != Some(INTEGERS_STRIDE) {
            let bound = (self.field(Field::Timestamps).remaining() as u64 + 2).min(MAX_RECORDS_PER_PAYLOAD as u64);
            if count > bound {
                return Err(CodecError::OutOfRange {
                    what: "record count",
                    offset,
                    value: count,
                    expected: "at most two more than the bytes left in the timestamps stream",
                });
            }
        }
        let count = count as usize;
        budget.take_records(count)?;
        let timestamps_ns = self.read_timestamps(count, base_ns)?;
        let values = self.read_values(count, budget)?;
        let qualities = self.read_qualities(count)?;
        Ok(SeriesColumns { key, timestamps_ns, values, qualities })
    }

    fn read_timestamps(&mut self, count: usize, base_ns: i64) -> Result<Vec<i64>, CodecError> {
        self.known_ascending = count <= 1;
        let mut timestamps = Vec::with_capacity(count);
        if count == 0 {
            return Ok(timestamps);
        }
        let exponent = self.field(Field::TickExponents).u8("timestamp tick exponent")?;
        let factors = self.field(Field::TickFactors);
        let offset = factors.position();
        let factor = factors.varint("timestamp tick factor")?;
        let Some(tick) = tick_of(exponent, factor) else {
            return Err(CodecError::OutOfRange {
                what: "timestamp tick factor",
                offset,
                value: factor,
                expected: "a tick of factor * 10^exponent between 1 and 2^63 - 1 nanoseconds",
            });
        };
        if self.field(Field::Encodings).peek_u8() == Some(INTEGERS_STRIDE) {
            // A regular scan: one addition per timestamp (wrapping arithmetic is a ring, so this
            // is exactly base + (first + i * step) * tick).
            self.field(Field::Encodings).u8("integer mode")?;
            let head = self.field(TIMESTAMP_INTEGERS.head);
            let first = head.signed_varint("timestamps")?;
            let step = head.signed_varint("timestamps")?;
            let (mut timestamp_ns, step_ns) = (base_ns.wrapping_add(first.wrapping_mul(tick)), step.wrapping_mul(tick));
            // Ascending when each step adds a positive amount and the last does not wrap.
            let span = i128::from(step_ns) * (count as i128 - 1);
            self.known_ascending = step_ns > 0 && i128::from(timestamp_ns) + span <= i128::from(i64::MAX);
            timestamps.resize(count, 0);
            for slot in &mut timestamps {
                *slot = timestamp_ns;
                timestamp_ns = timestamp_ns.wrapping_add(step_ns);
            }
            return Ok(timestamps);
        }
        timestamps.resize(count, 0);
        let to_ns = |ticks: i64| base_ns.wrapping_add(ticks.wrapping_mul(tick));
        self.read_integers(TIMESTAMP_INTEGERS, "timestamps", &mut timestamps, to_ns)?;
        Ok(timestamps)
    }

    /// Fills `out` with an integer column of `out.len()` values, each as `finish` makes it (a
    /// timestamp from ticks, a float from a decimal integer): one pass, from the varints to the
    /// column.
    fn read_integers<T>(
        &mut self,
        fields: IntegerFields,
        what: &'static str,
        out: &mut [T],
        finish: impl Fn(i64) -> T,
    ) -> Result<(), CodecError> {
        if out.is_empty() {
            return Ok(());
        }
        let encodings = self.field(Field::Encodings);
        let offset = encodings.position();
        let mode = encodings.u8("integer mode")?;
        match mode {
            INTEGERS_DELTA => {
                let mut value = self.field(fields.head).signed_varint(what)?;
                out[0] = finish(value);
                read_signed_varints(self.field(fields.body), what, &mut out[1..], |delta| {
                    value = value.wrapping_add(delta);
                    finish(value)
                })?;
            }
            INTEGERS_DELTA_OF_DELTA => {
                let head = self.field(fields.head);
                let mut value = head.signed_varint(what)?;
                out[0] = finish(value);
                if out.len() == 1 {
                    return Ok(());
                }
                let mut delta = head.signed_varint(what)?;
                value = value.wrapping_add(delta);
                out[1] = finish(value);
                read_signed_varints(self.field(fields.body), what, &mut out[2..], |delta_of_delta| {
                    delta = delta.wrapping_add(delta_of_delta);
                    value = value.wrapping_add(delta);
                    finish(value)
                })?;
            }
            INTEGERS_LINEAR => {
                let head = self.field(fields.head);
                let base = head.signed_varint(what)?;
                let slope = head.signed_varint(what)?;
                let mut line = base;
                read_signed_varints(self.field(fields.body), what, out, |residual| {
                    let value = line.wrapping_add(residual);
                    line = line.wrapping_add(slope);
                    finish(value)
                })?;
            }
            INTEGERS_STRIDE => {
                let head = self.field(fields.head);
                let first = head.signed_varint(what)?;
                let step = head.signed_varint(what)?;
                let mut value = first;
                for slot in out.iter_mut() {
                    *slot = finish(value);
                    value = value.wrapping_add(step);
                }
            }
            tag => return Err(CodecError::UnknownEncoding { what: "integer mode", offset, tag }),
        }
        Ok(())
    }

    fn read_values(&mut self, count: usize, budget: &mut DecodeBudget) -> Result<Values, CodecError> {
        let kinds = self.field(Field::ValueKinds);
        let offset = kinds.position();
        let tag = kinds.u8("value kind")?;
        Ok(match ValueKind::from_u8(tag) {
            Some(ValueKind::F64) => Values::F64(self.read_f64s(count)?),
            Some(ValueKind::I64) => {
                let mut values = vec![0; count];
                self.read_integers(VALUE_INTEGERS, "integer values", &mut values, |value| value)?;
                Values::I64(values)
            }
            Some(ValueKind::Bool) => Values::Bool(self.read_bools(count)?),
            Some(ValueKind::String) => Values::String(self.read_strings(count, budget)?),
            None if tag == VALUES_MIXED => Values::Mixed(self.read_mixed(count, budget)?),
            None => return Err(CodecError::UnknownEncoding { what: "value kind", offset, tag }),
        })
    }

    fn read_f64s(&mut self, count: usize) -> Result<Vec<f64>, CodecError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let encodings = self.field(Field::Encodings);
        let offset = encodings.position();
        match encodings.u8("float encoding")? {
            F64_RAW => {
                let bytes = self.field(Field::FloatBits).bytes("raw floats", 8 * count as u64)?;
                Ok(bytes
                    .chunks_exact(8)
                    .map(|chunk| {
                        let mut bits = [0u8; 8];
                        bits.copy_from_slice(chunk);
                        f64::from_bits(u64::from_le_bytes(bits))
                    })
                    .collect())
            }
            F64_XOR => {
                let stream = self.field(Field::FloatBits).length_prefixed("XOR floats")?;
                let mut values = Vec::with_capacity(count);
                read_xor(stream, count, &mut values)?;
                Ok(values)
            }
            F64_DECIMAL => {
                let digits_offset = encodings.position();
                let digits = encodings.u8("decimal digits")?;
                let Some(&power) = POWERS_OF_TEN.get(usize::from(digits)) else {
                    return Err(CodecError::OutOfRange {
                        what: "decimal digits",
                        offset: digits_offset,
                        value: u64::from(digits),
                        expected: "between 0 and 9",
                    });
                };
                let mut values = vec![0.0; count];
                self.read_integers(VALUE_INTEGERS, "decimal floats", &mut values, |integer| integer as f64 / power)?;
                Ok(values)
            }
            tag => Err(CodecError::UnknownEncoding { what: "float encoding", offset, tag }),
        }
    }

    fn read_bools(&mut self, count: usize) -> Result<Vec<bool>, CodecError> {
        let mut values = Vec::with_capacity(count);
        if count == 0 {
            return Ok(values);
        }
        let encodings = self.field(Field::Encodings);
        let offset = encodings.position();
        let encoding = encodings.u8("boolean encoding")?;
        let reader = self.field(Field::Booleans);
        match encoding {
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

    fn read_strings(&mut self, count: usize, budget: &mut DecodeBudget) -> Result<Vec<String>, CodecError> {
        let mut values = Vec::with_capacity(count);
        if count == 0 {
            return Ok(values);
        }
        let dictionaries = self.field(Field::StringDictionaries);
        let offset = dictionaries.position();
        // Every entry takes at least its length byte, so the size is bounded by the input.
        let size = dictionaries.count_of_byte_items("string dictionary size", count as u64)?;
        if size == 0 {
            return Err(CodecError::OutOfRange {
                what: "string dictionary size",
                offset,
                value: 0,
                expected: "at least 1 for a non-empty column",
            });
        }
        let mut dictionary = Vec::with_capacity(size);
        for _ in 0..size {
            dictionary.push(dictionaries.utf8("string dictionary entry")?);
        }
        let runs = self.field(Field::StringRuns);
        while values.len() < count {
            let index_offset = runs.position();
            let index = runs.varint("string index")?;
            let Some(&entry) = usize::try_from(index).ok().and_then(|index| dictionary.get(index)) else {
                return Err(CodecError::OutOfRange {
                    what: "string index",
                    offset: index_offset,
                    value: index,
                    expected: "an index into the column's string dictionary",
                });
            };
            let length = read_run(runs, "string run length", count - values.len())?;
            budget.take_text_bytes(entry.len(), length)?;
            values.extend(std::iter::repeat_n(entry, length).map(str::to_owned));
        }
        Ok(values)
    }

    fn read_mixed(&mut self, count: usize, budget: &mut DecodeBudget) -> Result<Vec<Value>, CodecError> {
        let mut kinds: Vec<(ValueKind, usize)> = Vec::new();
        let mut counts = [0usize; 4];
        let mut decoded = 0;
        let reader = self.field(Field::MixedKinds);
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
        let mut floats = self.read_f64s(counts[ValueKind::F64 as usize])?.into_iter();
        let mut integers = vec![0; counts[ValueKind::I64 as usize]];
        self.read_integers(VALUE_INTEGERS, "mixed integer values", &mut integers, |value| value)?;
        let mut integers = integers.into_iter();
        let mut bools = self.read_bools(counts[ValueKind::Bool as usize])?.into_iter();
        let mut strings = self.read_strings(counts[ValueKind::String as usize], budget)?.into_iter();

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

    fn read_qualities(&mut self, count: usize) -> Result<Vec<Quality>, CodecError> {
        let mut qualities = Vec::with_capacity(count);
        let reader = self.field(Field::Qualities);
        while qualities.len() < count {
            let code = reader.varint_at_most("quality", u64::from(u32::MAX), "a 32-bit OPC UA status code")?;
            let length = read_run(reader, "quality run length", count - qualities.len())?;
            qualities.resize(qualities.len() + length, Quality(code as u32));
        }
        Ok(qualities)
    }
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Self::Counts => "record counts stream",
            Self::TickExponents => "tick exponents stream",
            Self::TickFactors => "tick factors stream",
            Self::ValueKinds => "value kinds stream",
            Self::Encodings => "encodings stream",
            Self::TimestampHeads => "timestamp heads stream",
            Self::Timestamps => "timestamps stream",
            Self::ValueHeads => "value heads stream",
            Self::Values => "values stream",
            Self::FloatBits => "float bits stream",
            Self::Booleans => "booleans stream",
            Self::StringDictionaries => "string dictionaries stream",
            Self::StringRuns => "string runs stream",
            Self::MixedKinds => "mixed kinds stream",
            Self::Qualities => "qualities stream",
        }
    }
}

fn read_xor(stream: &[u8], count: usize, values: &mut Vec<f64>) -> Result<(), CodecError> {
    const WHAT: &str = "XOR floats";
    let mut reader = BitReader::new(stream);
    let mut previous = reader.read(64, WHAT)?;
    values.push(f64::from_bits(previous));
    let mut window: Option<(u32, u32)> = None;
    for _ in 1..count {
        if let Some(next) = next_xor_whole(&mut reader, previous, &mut window) {
            previous = next;
            values.push(f64::from_bits(previous));
            continue;
        }
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

/// [`read_xor`]'s next value when the stream surely holds all of it (control bits, window and
/// meaningful bits) and it is valid, read with two loads; `None` leaves the reader where it was,
/// for the checked reads to decode it or say what is wrong.
#[inline]
fn next_xor_whole(reader: &mut BitReader<'_>, previous: u64, window: &mut Option<(u32, u32)>) -> Option<u64> {
    // Two control bits, 6 + 6 bits of window, up to 64 meaningful bits.
    if reader.available_bits() < 2 + 12 + 64 {
        return None;
    }
    let head = reader.peek_64();
    if head >> 63 == 0 {
        reader.skip(1);
        return Some(previous);
    }
    let (leading, trailing, header_bits) = if head >> 62 & 1 == 0 {
        let (leading, trailing) = (*window)?;
        (leading, trailing, 2)
    } else {
        let leading = (head >> 56 & 0x3F) as u32;
        let meaningful = (head >> 50 & 0x3F) as u32 + 1;
        if leading + meaningful > 64 {
            return None;
        }
        let trailing = 64 - leading - meaningful;
        *window = Some((leading, trailing));
        (leading, trailing, 14)
    };
    let meaningful = 64 - leading - trailing;
    reader.skip(header_bits);
    let bits = reader.peek_64() >> (64 - meaningful);
    reader.skip(meaningful);
    Some(previous ^ (bits << trailing))
}

/// The unread bytes of `reader`.
fn unread<'a>(reader: &Reader<'a>) -> &'a [u8] {
    let mut rest = reader.clone();
    rest.bytes("unread bytes", rest.remaining() as u64).unwrap_or_default()
}

/// Fills `out` with `map` of each of the next `out.len()` signed varints of `reader`, in order:
/// the same values, and the same error at the same place, as that many
/// [`Reader::signed_varint`] calls. Eight one-byte varints (the usual deltas and residuals) are
/// recognised and decoded at once, without a check per byte; whatever the fast loop cannot decode
/// whole (the end of the input, a bad varint) is left to `signed_varint`, which reports it.
#[inline]
fn read_signed_varints<T>(
    reader: &mut Reader<'_>,
    what: &'static str,
    out: &mut [T],
    mut map: impl FnMut(i64) -> T,
) -> Result<(), CodecError> {
    const CONTINUATION_BITS: u64 = 0x8080_8080_8080_8080;
    let bytes = unread(reader);
    let (mut filled, mut position) = (0, 0);
    while out.len() - filled >= 8 {
        let Some(word) = bytes.get(position..position + 8) else { break };
        let word: [u8; 8] = word.try_into().expect("eight bytes");
        let continued = u64::from_le_bytes(word) & CONTINUATION_BITS;
        if continued == 0 {
            for (slot, byte) in out[filled..filled + 8].iter_mut().zip(word) {
                *slot = map(unzigzag(u64::from(byte)));
            }
            (filled, position) = (filled + 8, position + 8);
            continue;
        }
        // The one-byte varints before the first longer one (fewer than eight), then that one.
        let singles = (continued.trailing_zeros() / 8) as usize;
        for (slot, &byte) in out[filled..filled + singles].iter_mut().zip(&word) {
            *slot = map(unzigzag(u64::from(byte)));
        }
        (filled, position) = (filled + singles, position + singles);
        let Some((value, length)) = varint_prefix(&bytes[position..]) else { break };
        out[filled] = map(unzigzag(value));
        (filled, position) = (filled + 1, position + length);
    }
    reader.bytes(what, position as u64)?;
    for slot in &mut out[filled..] {
        *slot = map(reader.signed_varint(what)?);
    }
    Ok(())
}

/// A run length between 1 and `left`; 0 stands for `left` (see [`put_run_length`]).
fn read_run(reader: &mut Reader<'_>, what: &'static str, left: usize) -> Result<usize, CodecError> {
    let offset = reader.position();
    let length = reader.varint(what)?;
    if length == 0 {
        return Ok(left);
    }
    if length > left as u64 {
        return Err(CodecError::OutOfRange {
            what,
            offset,
            value: length,
            expected: "at most the number of records left in the column",
        });
    }
    Ok(length as usize)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The rounding without libm takes the integer `f64::round` takes, halves included.
    #[test]
    fn decimal_integers_round_as_f64_round_does() {
        let mut state = 0x853c_49e6_748f_ea9b_u64;
        let mut values: Vec<f64> =
            vec![0.5, -0.5, 1.5, -1.5, 2.5, 0.49999999999999994, 4503599627370497.0, 21.37, -0.0];
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let digits = (state % 7) as i32;
            let integer = (state >> 20) as i64 % 2_000_000_001 - 1_000_000_000;
            // Readings of a few decimals, their halves, and arbitrary bit patterns.
            values.push(integer as f64 / 10f64.powi(digits));
            values.push((integer as f64 + 0.5) / 10f64.powi(digits));
            values.push(f64::from_bits(state));
        }
        for value in values {
            for (digits, power) in POWERS_OF_TEN.iter().enumerate() {
                let scaled = value * power;
                let expected = (!scaled.is_nan() && scaled.abs() < 9.2e18)
                    .then(|| scaled.round() as i64)
                    .filter(|&integer| (integer as f64 / power).to_bits() == value.to_bits());
                assert_eq!(decimal_integer(value, digits), expected, "{value:e} at {digits} digits");
            }
        }
    }

    /// Bytes that are mostly one-byte varints, with longer ones, over-long ones and stray
    /// continuation bytes mixed in.
    fn varint_bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                6 => (0u8..0x80).prop_map(|byte| vec![byte]),
                2 => any::<i64>().prop_map(|value| {
                    let mut out = Vec::new();
                    put_signed_varint(&mut out, value);
                    out
                }),
                1 => proptest::collection::vec(0x80u8.., 1..12),
                1 => proptest::collection::vec(any::<u8>(), 1..12),
            ],
            0..64,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        /// The batched reader gives what one `signed_varint` call per value gives: the same
        /// values, the same error, and the reader left at the same place.
        #[test]
        fn signed_varints_read_in_batches_as_one_by_one(bytes in varint_bytes(), count in 0usize..80) {
            let mut one_by_one = Reader::new(&bytes);
            let expected: Result<Vec<i64>, CodecError> =
                (0..count).map(|_| one_by_one.signed_varint("test")).collect();
            let mut batched = Reader::new(&bytes);
            let mut values = vec![0; count];
            let got = read_signed_varints(&mut batched, "test", &mut values, |value| value).map(|()| values);
            prop_assert_eq!(format!("{got:?}"), format!("{expected:?}"));
            if expected.is_ok() {
                prop_assert_eq!(batched.position(), one_by_one.position());
            }
        }

        /// Bits read with one load each are the bits, most significant first, and running past
        /// the end is refused.
        #[test]
        fn bits_read_at_any_offset(bytes in proptest::collection::vec(any::<u8>(), 0..24), counts in proptest::collection::vec(0u32..=64, 1..12)) {
            let mut reader = BitReader::new(&bytes);
            let mut position = 0usize;
            for count in counts {
                let got = reader.read(count, "test");
                if position + count as usize > bytes.len() * 8 {
                    prop_assert!(got.is_err());
                    break;
                }
                let expected = (position..position + count as usize)
                    .fold(0u64, |value, bit| (value << 1) | u64::from(bytes[bit / 8] >> (7 - bit % 8) & 1));
                prop_assert_eq!(got.unwrap(), expected);
                position += count as usize;
            }
        }
    }
}

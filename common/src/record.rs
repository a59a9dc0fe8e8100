//! The historian record: one sample of one series, `(series, timestamp, value, quality)`.
//!
//! Everything diode carries is a [`Record`]. Validation lives here so that every source (line
//! protocol, CSV, simulator) rejects the same things with the same words.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Longest series name accepted, in bytes (UTF-8). Plant tag paths are far shorter; the bound keeps
/// segment definitions and replica keys small.
pub const MAX_SERIES_NAME_BYTES: usize = 512;
/// Most tags one series may carry.
pub const MAX_TAGS_PER_SERIES: usize = 32;
/// Longest tag key or tag value, in bytes.
pub const MAX_TAG_BYTES: usize = 256;
/// Longest string value, in bytes.
pub const MAX_STRING_VALUE_BYTES: usize = 64 * 1024;
/// Earliest accepted timestamp: 1900-01-01T00:00:00Z in ns since the Unix epoch.
pub const MIN_TIMESTAMP_NS: i64 = -2_208_988_800_000_000_000;
/// Latest accepted timestamp: 2262-04-11T00:00:00Z (just inside the i64 ns range).
pub const MAX_TIMESTAMP_NS: i64 = 9_223_286_400_000_000_000;

/// Nanoseconds per unit of an epoch number whose unit is not given, judged by its magnitude:
/// seconds below 1e11 (until the year 5138), milliseconds below 1e14, microseconds below 1e17,
/// nanoseconds above. CSV backfill and the query CLI read bare epoch numbers with this one rule.
pub fn epoch_unit_ns_by_magnitude(number: i64) -> i64 {
    match number.unsigned_abs() {
        0..100_000_000_000 => 1_000_000_000,
        100_000_000_000..100_000_000_000_000 => 1_000_000,
        100_000_000_000_000..100_000_000_000_000_000 => 1_000,
        _ => 1,
    }
}

/// Identity of a series: a slash-separated name such as `plant1/boiler3/steam_temp` plus optional
/// tags, kept sorted by key so that equal series compare equal.
///
/// Name and tags are shared (`Arc`): every record carries its series, so cloning a key is two
/// reference counts rather than an allocation per string, and two keys cloned from one compare
/// equal without reading their text.
#[derive(Debug, Clone, Eq, PartialOrd, Ord)]
pub struct SeriesKey {
    /// Non-empty UTF-8 of at most [`MAX_SERIES_NAME_BYTES`] bytes, without control characters.
    pub name: Arc<str>,
    /// Sorted by key, keys unique.
    pub tags: Arc<[(String, String)]>,
}

impl PartialEq for SeriesKey {
    fn eq(&self, other: &Self) -> bool {
        (Arc::ptr_eq(&self.name, &other.name) || self.name == other.name)
            && (Arc::ptr_eq(&self.tags, &other.tags) || self.tags == other.tags)
    }
}

impl Hash for SeriesKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.tags.hash(state);
    }
}

impl SeriesKey {
    /// A series without tags.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self { name: name.into(), tags: Arc::new([]) }
    }

    /// A series with tags; tags are sorted by key. Duplicate keys are caught by [`validate`](Self::validate).
    pub fn with_tags(name: impl Into<Arc<str>>, mut tags: Vec<(String, String)>) -> Self {
        tags.sort();
        Self { name: name.into(), tags: tags.into() }
    }

    /// The addresses of the shared name and tags. Two keys with one identity are equal (as long
    /// as both are alive: an address is reused only after its text is freed); equal keys may
    /// have different identities.
    pub fn identity(&self) -> (usize, usize) {
        (Arc::as_ptr(&self.name).cast::<u8>() as usize, Arc::as_ptr(&self.tags).cast::<u8>() as usize)
    }

    /// Checks the limits and character rules every source applies.
    pub fn validate(&self) -> Result<(), RecordError> {
        validate_name(&self.name)?;
        if self.tags.len() > MAX_TAGS_PER_SERIES {
            return Err(RecordError::TooManyTags { count: self.tags.len() });
        }
        for window in self.tags.windows(2) {
            if window[0].0 >= window[1].0 {
                return Err(RecordError::TagsNotSortedOrDuplicated { key: window[1].0.clone() });
            }
        }
        for (key, value) in self.tags.iter() {
            validate_tag_part(key)?;
            validate_tag_part(value)?;
        }
        Ok(())
    }
}

impl fmt::Display for SeriesKey {
    /// `name` or `name{key=value,key=value}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.tags.is_empty() {
            f.write_str("{")?;
            for (i, (key, value)) in self.tags.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{key}={value}")?;
            }
            f.write_str("}")?;
        }
        Ok(())
    }
}

fn validate_name(name: &str) -> Result<(), RecordError> {
    if name.is_empty() {
        return Err(RecordError::EmptySeriesName);
    }
    if name.len() > MAX_SERIES_NAME_BYTES {
        return Err(RecordError::SeriesNameTooLong { length_bytes: name.len() });
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(RecordError::ControlCharacter { name: name.to_owned(), character: c });
    }
    Ok(())
}

/// The timestamp rule of [`Record::validate`]: within [`MIN_TIMESTAMP_NS`]..=[`MAX_TIMESTAMP_NS`].
pub fn validate_timestamp(timestamp_ns: i64) -> Result<(), RecordError> {
    if (MIN_TIMESTAMP_NS..=MAX_TIMESTAMP_NS).contains(&timestamp_ns) {
        Ok(())
    } else {
        Err(RecordError::TimestampOutOfRange { timestamp_ns })
    }
}

/// [`Record::validate_sample`] of a record's parts, for a source that groups values without
/// building records.
pub fn validate_sample(timestamp_ns: i64, value: &Value) -> Result<(), RecordError> {
    validate_timestamp(timestamp_ns)?;
    match value {
        Value::F64(v) => validate_f64(*v),
        Value::String(s) => validate_string(s),
        Value::I64(_) | Value::Bool(_) => Ok(()),
    }
}

/// The float rule of [`Record::validate`]: finite.
pub fn validate_f64(value: f64) -> Result<(), RecordError> {
    if value.is_finite() { Ok(()) } else { Err(RecordError::NonFiniteValue { value }) }
}

/// The string rule of [`Record::validate`]: at most [`MAX_STRING_VALUE_BYTES`].
pub fn validate_string(value: &str) -> Result<(), RecordError> {
    if value.len() > MAX_STRING_VALUE_BYTES {
        Err(RecordError::StringValueTooLong { length_bytes: value.len() })
    } else {
        Ok(())
    }
}

fn validate_tag_part(part: &str) -> Result<(), RecordError> {
    if part.is_empty() || part.len() > MAX_TAG_BYTES {
        return Err(RecordError::BadTag { part: part.to_owned() });
    }
    if let Some(c) = part.chars().find(|c| c.is_control()) {
        return Err(RecordError::ControlCharacter { name: part.to_owned(), character: c });
    }
    Ok(())
}

/// A sample value. A series normally keeps one kind; the codec copes when it does not.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A measurement. Sources refuse NaN and infinities ([`Record::validate`]); the codec
    /// carries any bit pattern.
    F64(f64),
    /// A count, a state number or any other integer.
    I64(i64),
    /// An on/off signal: a pump running, a valve open.
    Bool(bool),
    /// Text, such as a batch id or an alarm message; at most [`MAX_STRING_VALUE_BYTES`] bytes.
    String(String),
}

/// The kind of a [`Value`], as stored in segments and the replica catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ValueKind {
    /// [`Value::F64`], stored as 0.
    F64 = 0,
    /// [`Value::I64`], stored as 1.
    I64 = 1,
    /// [`Value::Bool`], stored as 2.
    Bool = 2,
    /// [`Value::String`], stored as 3.
    String = 3,
}

impl ValueKind {
    /// The kind stored as `byte` (the inverse of `kind as u8`), or `None` for a byte no kind
    /// has.
    pub fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Self::F64),
            1 => Some(Self::I64),
            2 => Some(Self::Bool),
            3 => Some(Self::String),
            _ => None,
        }
    }

    /// The name shown to people and in JSON: `float`, `integer`, `boolean` or `string`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F64 => "float",
            Self::I64 => "integer",
            Self::Bool => "boolean",
            Self::String => "string",
        }
    }
}

impl Value {
    /// Which of the four kinds this value is.
    pub fn kind(&self) -> ValueKind {
        match self {
            Self::F64(_) => ValueKind::F64,
            Self::I64(_) => ValueKind::I64,
            Self::Bool(_) => ValueKind::Bool,
            Self::String(_) => ValueKind::String,
        }
    }

    /// Bit-exact equality (so `-0.0 != 0.0` and equal NaN payloads compare equal): what the codec
    /// promises to preserve.
    pub fn bit_eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Self::F64(a), Self::F64(b)) => a.to_bits() == b.to_bits(),
            _ => self == other,
        }
    }

    /// The value as a number for aggregation: booleans count as 0 and 1, strings have none.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::F64(v) => Some(*v),
            Self::I64(v) => Some(*v as f64),
            Self::Bool(v) => Some(f64::from(u8::from(*v))),
            Self::String(_) => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::F64(v) => write!(f, "{v}"),
            Self::I64(v) => write!(f, "{v}"),
            Self::Bool(v) => write!(f, "{v}"),
            Self::String(v) => f.write_str(v),
        }
    }
}

/// An OPC UA StatusCode: the top two bits give the severity (00 good, 01 uncertain, 10 bad), bits
/// 16..30 the sub-code, the low 16 bits info flags. Stored as the raw `u32` so nothing is lost when a
/// source sends a code diode does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Quality(pub u32);

/// Severity of a [`Quality`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// Top bits `00`: the value can be used.
    Good,
    /// Top bits `01`: the value may be used with care (a sensor out of calibration, a value
    /// substituted by the collector).
    Uncertain,
    /// Top bits `10` (and the reserved `11`): the value must not be used as a measurement.
    Bad,
}

impl Quality {
    /// OPC UA `Good` (0): what sources record when they are given no quality.
    pub const GOOD: Quality = Quality(0);
    /// OPC UA `Uncertain` (0x40000000) with no sub-code.
    pub const UNCERTAIN: Quality = Quality(0x4000_0000);
    /// OPC UA `Bad` (0x80000000) with no sub-code.
    pub const BAD: Quality = Quality(0x8000_0000);

    /// A quality of the given severity with a 14-bit OPC UA sub-code (e.g. `0x008A` for
    /// `Bad_SensorFailure` is `Quality::with_sub_code(Severity::Bad, 0x008A)`).
    pub fn with_sub_code(severity: Severity, sub_code: u16) -> Quality {
        let top = match severity {
            Severity::Good => 0,
            Severity::Uncertain => 0x4000_0000,
            Severity::Bad => 0x8000_0000,
        };
        Quality(top | (u32::from(sub_code & 0x3FFF) << 16))
    }

    /// The severity in the top two bits; the reserved `11` reads as [`Severity::Bad`].
    pub fn severity(self) -> Severity {
        match self.0 >> 30 {
            0 => Severity::Good,
            1 => Severity::Uncertain,
            // 0b11 is reserved in OPC UA; treating it as bad is the safe reading.
            _ => Severity::Bad,
        }
    }

    /// The 14-bit sub-code in bits 16..30: which condition, within the severity.
    pub fn sub_code(self) -> u16 {
        ((self.0 >> 16) & 0x3FFF) as u16
    }

    /// True if the severity is [`Severity::Good`], whatever the sub-code and flags.
    pub fn is_good(self) -> bool {
        self.severity() == Severity::Good
    }

    /// Reads a status code as people write it: decimal, `0x` hexadecimal, or `good`,
    /// `uncertain`, `bad`. The error completes a sentence such as "quality \"x\" …".
    pub fn parse_text(text: &str) -> Result<Quality, &'static str> {
        const WHY: &str = "is not a status code: use a decimal or 0x-hexadecimal OPC UA StatusCode (0..=4294967295), or good, uncertain or bad";
        for (name, quality) in [("good", Quality::GOOD), ("uncertain", Quality::UNCERTAIN), ("bad", Quality::BAD)] {
            if text.eq_ignore_ascii_case(name) {
                return Ok(quality);
            }
        }
        let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => u32::from_str_radix(hex, 16),
            Some(_) => return Err(WHY),
            None if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text.parse::<u32>(),
            None => return Err(WHY),
        };
        parsed.map(Quality).map_err(|_| WHY)
    }
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity() {
            Severity::Good => "good",
            Severity::Uncertain => "uncertain",
            Severity::Bad => "bad",
        };
        if self.0 & 0x3FFF_FFFF == 0 { f.write_str(severity) } else { write!(f, "{severity}(0x{:08X})", self.0) }
    }
}

/// One sample of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The series the sample belongs to.
    pub series: SeriesKey,
    /// Nanoseconds since the Unix epoch, UTC.
    pub timestamp_ns: i64,
    /// The sample; a float must be finite ([`Record::validate`]).
    pub value: Value,
    /// The sample's OPC UA status; [`Quality::GOOD`] when the source gives none.
    pub quality: Quality,
}

impl Record {
    /// Checks every rule a source must enforce before a record enters the spool.
    ///
    /// NaN policy: floating-point values must be finite. A sensor that has failed is reported with a
    /// bad quality and its last (or a substitute) value, as OPC UA does, never with NaN or infinity,
    /// because NaN breaks aggregates and has no portable textual form in CSV or JSON.
    pub fn validate(&self) -> Result<(), RecordError> {
        self.series.validate()?;
        self.validate_sample()
    }

    /// [`validate`](Self::validate) without the series: the timestamp and the value. For a source
    /// that has checked its record's series once already (a parser's cached series).
    pub fn validate_sample(&self) -> Result<(), RecordError> {
        validate_sample(self.timestamp_ns, &self.value)
    }

    /// Bit-exact equality (see [`Value::bit_eq`]).
    pub fn bit_eq(&self, other: &Record) -> bool {
        self.series == other.series
            && self.timestamp_ns == other.timestamp_ns
            && self.quality == other.quality
            && self.value.bit_eq(&other.value)
    }
}

/// Why a record was refused. Messages name the value and the rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    /// The series name is empty.
    #[error("series name is empty; give every series a name such as plant1/boiler3/steam_temp")]
    EmptySeriesName,
    /// The series name is longer than [`MAX_SERIES_NAME_BYTES`].
    #[error("series name is {length_bytes} bytes; the limit is {MAX_SERIES_NAME_BYTES}")]
    SeriesNameTooLong {
        /// The name's length in bytes.
        length_bytes: usize,
    },
    /// A series name, tag key or tag value contains a control character (a newline, a tab,
    /// NUL), which would break line-oriented formats, CSV output and logs.
    #[error("{name:?} contains the control character {character:?}; names and tags must be printable")]
    ControlCharacter {
        /// The name, tag key or tag value, as given.
        name: String,
        /// The first control character in it.
        character: char,
    },
    /// The series has more than [`MAX_TAGS_PER_SERIES`] tags.
    #[error("series has {count} tags; the limit is {MAX_TAGS_PER_SERIES}")]
    TooManyTags {
        /// How many tags it has.
        count: usize,
    },
    /// Two tags share a key, or the tags are not sorted by key ([`SeriesKey::with_tags`] sorts
    /// them).
    #[error("tag key {key:?} appears twice or tags are not sorted by key")]
    TagsNotSortedOrDuplicated {
        /// The key at which the order breaks.
        key: String,
    },
    /// A tag key or value is empty or longer than [`MAX_TAG_BYTES`].
    #[error("tag key or value {part:?} is empty or longer than {MAX_TAG_BYTES} bytes")]
    BadTag {
        /// The key or value, as given.
        part: String,
    },
    /// The timestamp is outside [`MIN_TIMESTAMP_NS`]`..=`[`MAX_TIMESTAMP_NS`]: most often a
    /// source whose precision (ns, µs, ms, s) is set wrongly, so its timestamps are scaled too far.
    #[error(
        "timestamp {timestamp_ns} ns is outside 1900-01-01..2262-04-11; check the source's precision (ns, us, ms, s)"
    )]
    TimestampOutOfRange {
        /// The timestamp, in ns since the Unix epoch.
        timestamp_ns: i64,
    },
    /// A float value is NaN or infinite (the NaN policy is at [`Record::validate`]).
    #[error("value {value} is not finite; report a failed sensor with a bad quality, not NaN or infinity")]
    NonFiniteValue {
        /// The value given.
        value: f64,
    },
    /// A string value is longer than [`MAX_STRING_VALUE_BYTES`].
    #[error("string value is {length_bytes} bytes; the limit is {MAX_STRING_VALUE_BYTES}")]
    StringValueTooLong {
        /// The value's length in bytes.
        length_bytes: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: Value) -> Record {
        Record { series: SeriesKey::new("plant1/boiler3/steam_temp"), timestamp_ns: 0, value, quality: Quality::GOOD }
    }

    #[test]
    fn nan_and_infinity_are_refused() {
        assert!(matches!(record(Value::F64(f64::NAN)).validate(), Err(RecordError::NonFiniteValue { .. })));
        assert!(matches!(record(Value::F64(f64::INFINITY)).validate(), Err(RecordError::NonFiniteValue { .. })));
        assert!(record(Value::F64(-0.0)).validate().is_ok());
    }

    #[test]
    fn empty_and_over_long_names_are_refused() {
        let mut r = record(Value::I64(1));
        r.series.name = "".into();
        assert_eq!(r.validate(), Err(RecordError::EmptySeriesName));
        r.series.name = "x".repeat(MAX_SERIES_NAME_BYTES + 1).into();
        assert!(matches!(r.validate(), Err(RecordError::SeriesNameTooLong { .. })));
    }

    #[test]
    fn timestamps_outside_the_supported_range_are_refused() {
        let mut r = record(Value::Bool(true));
        r.timestamp_ns = i64::MAX;
        let message = r.validate().unwrap_err().to_string();
        assert!(message.contains("precision"), "{message}");
    }

    #[test]
    fn duplicate_tag_keys_are_refused() {
        let series = SeriesKey::with_tags("a", vec![("k".into(), "1".into()), ("k".into(), "2".into())]);
        assert!(matches!(series.validate(), Err(RecordError::TagsNotSortedOrDuplicated { .. })));
    }

    #[test]
    fn quality_keeps_severity_and_sub_code() {
        let q = Quality::with_sub_code(Severity::Bad, 0x008A);
        assert_eq!(q.severity(), Severity::Bad);
        assert_eq!(q.sub_code(), 0x008A);
        assert_eq!(q.to_string(), "bad(0x808A0000)");
        assert!(Quality::GOOD.is_good());
        assert_eq!(Quality::UNCERTAIN.severity(), Severity::Uncertain);
    }

    #[test]
    fn quality_text_accepts_names_decimal_and_hex() {
        assert_eq!(Quality::parse_text("Good"), Ok(Quality::GOOD));
        assert_eq!(Quality::parse_text("bad"), Ok(Quality::BAD));
        assert_eq!(Quality::parse_text("0x808A0000"), Ok(Quality(0x808A_0000)));
        assert_eq!(Quality::parse_text("1073741824"), Ok(Quality::UNCERTAIN));
        assert!(Quality::parse_text("0x").is_err());
        assert!(Quality::parse_text("-1").is_err());
        assert!(Quality::parse_text("4294967296").is_err());
    }

    #[test]
    fn epoch_numbers_are_scaled_by_their_magnitude() {
        assert_eq!(epoch_unit_ns_by_magnitude(1_700_000_000), 1_000_000_000);
        assert_eq!(epoch_unit_ns_by_magnitude(1_700_000_000_000), 1_000_000);
        assert_eq!(epoch_unit_ns_by_magnitude(1_700_000_000_000_000), 1_000);
        assert_eq!(epoch_unit_ns_by_magnitude(1_700_000_000_000_000_000), 1);
        assert_eq!(epoch_unit_ns_by_magnitude(-1_700_000_000), 1_000_000_000);
    }

    #[test]
    fn series_display_shows_tags() {
        let s = SeriesKey::with_tags("m/f", vec![("unit".into(), "C".into()), ("area".into(), "b".into())]);
        assert_eq!(s.to_string(), "m/f{area=b,unit=C}");
    }
}

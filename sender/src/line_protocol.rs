//! InfluxDB line protocol in, diode [`Record`]s out: the parser behind the sender's write endpoint,
//! so Telegraf, historian exporters and InfluxDB client libraries can feed diode unchanged.
//!
//! Pure and total: bytes of a request body in, records or the first bad line out, never a panic.
//!
//! # Mapping
//!
//! | line protocol                                       | diode record                                          |
//! |-----------------------------------------------------|-------------------------------------------------------|
//! | field `f` of measurement `m`                        | one [`Record`] of series `m/f` (one record per field) |
//! | tags `k=v`                                          | [`SeriesKey::tags`], sorted by key, quality tag removed |
//! | float `1`, `1.0`, `-1.5e3`, `.5`                    | [`Value::F64`]; `NaN` and `inf` refused, as InfluxDB does |
//! | integer `12i`                                       | [`Value::I64`]                                        |
//! | unsigned `12u`                                      | [`Value::I64`] when ≤ `i64::MAX`, otherwise refused   |
//! | boolean `t T true True TRUE f F false False FALSE`  | [`Value::Bool`]                                       |
//! | string `"text"`                                     | [`Value::String`]                                     |
//! | timestamp, in units of [`ParseOptions::precision`]  | `timestamp_ns`; absent: `now_ns` truncated to the precision |
//! | [`ParseOptions::quality_tag`] / [`quality_field`](ParseOptions::quality_field) | [`Record::quality`] of every record of the line; absent: [`Quality::GOOD`] |
//!
//! # Syntax
//!
//! `measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]`,
//! as in InfluxDB's line protocol reference:
//!
//! - A backslash escapes a comma or space in a measurement; a comma, equals sign or space in a tag
//!   key, tag value or field key; a double quote in a string value; and a backslash anywhere
//!   (`\\` is one `\`). A backslash before any other character is kept as it is, so `C:\temp`
//!   needs no escaping.
//! - Lines whose first non-blank character is `#` are comments; blank lines are skipped; a `\r`
//!   before the `\n` is dropped. Line numbers count every physical line, comments included.
//! - Spaces before a line and between its sections are tolerated, as InfluxDB does.
//! - Precision names are InfluxDB's: v2's `ns us ms s` and v1's `n u µ ms s m h`.
//!
//! Where diode is stricter than InfluxDB, it is because a record must mean one thing:
//! a field key given twice on one line is refused (InfluxDB keeps the last); a string value cannot
//! span lines (the reference does not support newlines in values); unsigned values above
//! `i64::MAX` are refused because records hold signed integers. Names starting with `_` are
//! accepted: InfluxDB reserves them for its own columns, diode has none.
//!
//! # Errors
//!
//! Parsing stops at the first bad line and reports its 1-based number in InfluxDB's words
//! (`unable to parse '<line>': <reason>`). The whole body is then rejected: `out` is left as it was
//! given, so a writer can fix the line and retry the body atomically, with no half-written batch to
//! reconcile. Every record produced has passed [`Record::validate`]; its refusals are reported for
//! the line that caused them.
//!
//! # Speed
//!
//! Lines are scanned byte by byte once, with no regular expressions; names without escapes are
//! borrowed from the body rather than copied. The measurement-and-tags part of a line is parsed
//! once per distinct raw text and cached for the call (at most 4096 of them); once such a part
//! repeats, the series of each of its fields is checked and cached too, so a repeated series costs
//! a clone of its key and no second check. A body of all-different series pays only for what its records own. Floats use
//! `str::parse::<f64>` (correctly rounded, fast enough: allocation of the records' strings, not
//! number parsing, dominates). `benches/line_protocol.rs` measures 1.2 to 1.7 million points/s on
//! one core of a shared machine.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::convert::Infallible;
use std::ops::ControlFlow;
use std::str::FromStr;

use diode_common::codec::{GroupSlot, Grouper};
use diode_common::record::{self, Quality, Record, SeriesKey, Value};

/// Longest excerpt of a bad line quoted in a [`LineError`], in bytes; the rest is cut with `…` so
/// that an error about a megabyte line stays readable and bounded.
pub const MAX_QUOTED_LINE_BYTES: usize = 200;
/// Longest reason in a [`LineError`], in bytes (reasons quote the offending token).
pub const MAX_REASON_BYTES: usize = 400;

/// Distinct measurement-and-tag sections cached in one [`parse_lines`] call. Past this the cache is
/// emptied and refilled, so memory stays bounded whatever the body's cardinality.
const MAX_CACHED_SERIES_SECTIONS: usize = 4096;

/// Field keys cached per section; further keys of a very wide measurement are parsed each time.
const MAX_CACHED_FIELDS_PER_SECTION: usize = 64;

/// Characters a backslash escapes in a measurement.
const MEASUREMENT_ESCAPES: &[u8] = b", \\";
/// Characters a backslash escapes in tag keys, tag values and field keys.
const KEY_ESCAPES: &[u8] = b",= \\";
/// Characters a backslash escapes in a string field value.
const STRING_ESCAPES: &[u8] = b"\"\\";

/// Unit of the timestamps in a body, chosen by the writer (the `precision` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// `ns` (InfluxDB v2) or `n` (v1); the default, as in InfluxDB.
    #[default]
    Nanoseconds,
    /// `us` (v2), `u` or `µ` (v1).
    Microseconds,
    /// `ms`.
    Milliseconds,
    /// `s`.
    Seconds,
    /// `m` (InfluxDB v1 only).
    Minutes,
    /// `h` (InfluxDB v1 only).
    Hours,
}

impl Precision {
    /// Nanoseconds in one unit of this precision.
    pub fn nanoseconds_per_unit(self) -> i64 {
        match self {
            Self::Nanoseconds => 1,
            Self::Microseconds => 1_000,
            Self::Milliseconds => 1_000_000,
            Self::Seconds => 1_000_000_000,
            Self::Minutes => 60_000_000_000,
            Self::Hours => 3_600_000_000_000,
        }
    }

    /// The canonical name, as InfluxDB v2 spells it where it has one.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nanoseconds => "ns",
            Self::Microseconds => "us",
            Self::Milliseconds => "ms",
            Self::Seconds => "s",
            Self::Minutes => "m",
            Self::Hours => "h",
        }
    }
}

/// A precision name InfluxDB does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown timestamp precision {given:?}; use ns, us, ms or s (or InfluxDB v1's n, u, m, h)")]
pub struct UnknownPrecision {
    /// What was given, cut to 32 characters.
    pub given: String,
}

impl FromStr for Precision {
    type Err = UnknownPrecision;

    /// Accepts what InfluxDB's write APIs accept: v2's `ns us ms s` and v1's `n u µ ms s m h`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "ns" | "n" => Ok(Self::Nanoseconds),
            // U+00B5 MICRO SIGN and U+03BC GREEK SMALL LETTER MU look alike; accept both.
            "us" | "u" | "\u{b5}" | "\u{3bc}" => Ok(Self::Microseconds),
            "ms" => Ok(Self::Milliseconds),
            "s" => Ok(Self::Seconds),
            "m" => Ok(Self::Minutes),
            "h" => Ok(Self::Hours),
            _ => Err(UnknownPrecision { given: name.chars().take(32).collect() }),
        }
    }
}

/// How to read a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseOptions {
    /// Unit of the timestamps written in the body.
    pub precision: Precision,
    /// The receiving clock, in ns since the Unix epoch: the timestamp of lines that have none
    /// (truncated to `precision`, as InfluxDB does).
    pub now_ns: i64,
    /// A field key whose value is the OPC UA status code of every record of its line: an integer
    /// (`0i`, `2150891520u`) in `0..=u32::MAX`, or a string in the syntax of `quality_tag`. The
    /// field is consumed, not stored as a series.
    pub quality_field: Option<String>,
    /// A tag key whose value is the OPC UA status code of every record of its line: decimal,
    /// `0x` hexadecimal, or `good`, `uncertain`, `bad`. The tag is removed from the series key.
    pub quality_tag: Option<String>,
}

impl ParseOptions {
    /// Nanosecond precision, no quality tag or field.
    pub fn new(now_ns: i64) -> Self {
        Self { precision: Precision::Nanoseconds, now_ns, quality_field: None, quality_tag: None }
    }
}

/// The first bad line of a body. `Display` reads like InfluxDB's own message, prefixed with the
/// line number: `line 3: unable to parse 'cpu value=': missing field value for field key "value"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line_number}: {message}")]
pub struct LineError {
    /// 1-based, counting every physical line (comments and blank lines included).
    pub line_number: usize,
    /// `unable to parse '<line, cut to MAX_QUOTED_LINE_BYTES>': <reason and what to do>`.
    pub message: String,
}

impl LineError {
    fn new(line_number: usize, line: &str, reason: &str) -> Self {
        let excerpt = cut(line, MAX_QUOTED_LINE_BYTES);
        let reason = cut(reason, MAX_REASON_BYTES);
        Self { line_number, message: format!("unable to parse '{excerpt}': {reason}") }
    }
}

/// `text` cut to at most `max_bytes` on a character boundary, marked with `…` when cut.
fn cut(text: &str, max_bytes: usize) -> Cow<'_, str> {
    if text.len() <= max_bytes {
        return Cow::Borrowed(text);
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &text[..end]))
}

/// Parses `body` and appends one record per field to `out`; returns how many were appended.
///
/// On the first bad line, returns its number and reason and leaves `out` as it was given: diode
/// takes a body whole or not at all (see the module documentation).
pub fn parse_lines(body: &str, options: &ParseOptions, out: &mut Vec<Record>) -> Result<usize, LineError> {
    let len_before = out.len();
    let parsed = parse_into(body, options, out);
    if parsed.is_err() {
        out.truncate(len_before);
    }
    debug_assert!(out[len_before..].iter().all(|record| record.validate().is_ok()));
    parsed
}

/// [`parse_lines`] straight into a [`Grouper`]: the records of every line, grouped by series into
/// spool frames, without building a [`Record`] (and cloning its series key) for each value; the
/// same checks, the same error. On `Err` the grouper holds part of the body: drop it.
pub fn parse_lines_grouped(body: &str, options: &ParseOptions, out: &mut Grouper) -> Result<usize, LineError> {
    parse_into(body, options, out)
}

/// Where a parser puts each record it has checked.
trait RecordSink {
    /// Records taken so far.
    fn taken(&self) -> usize;
    /// Takes one checked record; `slot` is kept beside a cached series, for a [`Grouper`].
    fn take(&mut self, series: Cow<'_, SeriesKey>, slot: Option<&mut GroupSlot>, sample: Sample);
}

/// A record without its series: timestamp (ns), value and quality.
type Sample = (i64, Value, Quality);

impl RecordSink for Vec<Record> {
    fn taken(&self) -> usize {
        self.len()
    }

    fn take(&mut self, series: Cow<'_, SeriesKey>, _: Option<&mut GroupSlot>, sample: Sample) {
        let (timestamp_ns, value, quality) = sample;
        self.push(Record { series: series.into_owned(), timestamp_ns, value, quality });
    }
}

impl RecordSink for Grouper {
    fn taken(&self) -> usize {
        self.records()
    }

    fn take(&mut self, series: Cow<'_, SeriesKey>, slot: Option<&mut GroupSlot>, sample: Sample) {
        let (timestamp_ns, value, quality) = sample;
        match slot {
            Some(slot) => self.push_at(slot, &series, timestamp_ns, value, quality),
            None => self.push(&series, timestamp_ns, value, quality),
        }
    }
}

/// [`parse_lines_grouped`] for a stream with nobody to answer (TCP, UDP): a bad line is handed to
/// `skipped` and costs only itself (a refused line leaves nothing in the grouper), and parsing
/// goes on with the next, keeping the parser's cache of series. Returns the records taken.
pub fn parse_lines_grouped_skipping(
    body: &str,
    options: &ParseOptions,
    out: &mut Grouper,
    mut skipped: impl FnMut(LineError),
) -> usize {
    let parsed = parse_into_with(body, options, out, |error| {
        skipped(error);
        ControlFlow::<Infallible>::Continue(())
    });
    match parsed {
        Ok(taken) => taken,
        Err(never) => match never {},
    }
}

fn parse_into(body: &str, options: &ParseOptions, out: &mut impl RecordSink) -> Result<usize, LineError> {
    parse_into_with(body, options, out, ControlFlow::Break)
}

/// Parses every line into `out`; a bad line is handed to `bad_line`, which stops the parse (with
/// what it breaks with) or lets it go on.
fn parse_into_with<B>(
    body: &str,
    options: &ParseOptions,
    out: &mut impl RecordSink,
    mut bad_line: impl FnMut(LineError) -> ControlFlow<B>,
) -> Result<usize, B> {
    let taken_before = out.taken();
    let mut parser = LineParser::new(options);
    for (index, physical_line) in body.split('\n').enumerate() {
        let line = physical_line.strip_suffix('\r').unwrap_or(physical_line);
        let content = line.trim_start_matches([' ', '\t']);
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if let Err(reason) = parser.parse_line(content, out)
            && let ControlFlow::Break(error) = bad_line(LineError::new(index + 1, line, &reason))
        {
            return Err(error);
        }
    }
    Ok(out.taken() - taken_before)
}

/// The measurement and tags of a line, parsed once per distinct raw section. Borrows from the
/// body unless escapes had to be removed.
struct SeriesSection<'a> {
    measurement: Cow<'a, str>,
    /// Sorted by key, keys unique, quality tag removed.
    tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The value of the quality tag, when configured and present.
    quality: Option<Quality>,
    /// Whether a line before this one had the same section: only then are series kept in
    /// `series_by_field`, so a body of all-different series pays nothing for the cache.
    repeated: bool,
    /// Field keys as written (escaped) and the series each names.
    series_by_field: Vec<(&'a str, SeriesKey, GroupSlot)>,
}

/// A field parsed but not yet a record: its line's timestamp comes after it.
struct PendingField {
    series: PendingSeries,
    value: Value,
}

/// The series of a pending field.
enum PendingSeries {
    /// The section's cached series at this index in `series_by_field`: it passed
    /// [`SeriesKey::validate`] when it was cached.
    Cached(usize),
    /// Built for this field; `checked` when it passed [`SeriesKey::validate`] already.
    Built { series: SeriesKey, checked: bool },
}

impl PendingSeries {
    fn key<'s>(&'s self, section: &'s SeriesSection<'_>) -> &'s SeriesKey {
        match self {
            PendingSeries::Cached(index) => &section.series_by_field[*index].1,
            PendingSeries::Built { series, .. } => series,
        }
    }
}

struct LineParser<'a, 'o> {
    options: &'o ParseOptions,
    /// foldhash, seeded per process: a body's sections cannot be chosen to collide.
    sections: foldhash::HashMap<&'a str, SeriesSection<'a>>,
    /// Reused for every line so that parsing a line allocates only what its records own.
    pending: Vec<PendingField>,
}

impl<'a, 'o> LineParser<'a, 'o> {
    fn new(options: &'o ParseOptions) -> Self {
        Self { options, sections: foldhash::HashMap::default(), pending: Vec::new() }
    }

    /// Parses one non-blank, non-comment line (no leading blanks, no line ending).
    fn parse_line(&mut self, line: &'a str, out: &mut impl RecordSink) -> Result<(), String> {
        let (raw_section, after_section) = split_at_unescaped(line, b' ');
        let fields = after_section.map(|rest| rest.trim_start_matches(' ')).unwrap_or("");
        if fields.is_empty() {
            return Err("missing fields: a line needs at least one field after a space, such as `value=1`".into());
        }
        let options = self.options;
        if self.sections.len() >= MAX_CACHED_SERIES_SECTIONS && !self.sections.contains_key(raw_section) {
            self.sections.clear();
        }
        let section = match self.sections.entry(raw_section) {
            Entry::Occupied(entry) => {
                let section = entry.into_mut();
                section.repeated = true;
                section
            }
            Entry::Vacant(entry) => entry.insert(parse_series_section(raw_section, options)?),
        };
        let pending = &mut self.pending;
        pending.clear();
        let mut field_quality = None;
        let after_fields = parse_fields(fields, section, options, pending, &mut field_quality)?;
        let timestamp_ns = parse_timestamp(after_fields, options)?;
        let quality = match (section.quality, field_quality) {
            (Some(_), Some(_)) => {
                return Err("the line gives its quality twice, as a tag and as a field; keep one".into());
            }
            (Some(quality), None) | (None, Some(quality)) => quality,
            (None, None) => Quality::GOOD,
        };
        if pending.is_empty() {
            return Err("the line has only its quality field; add at least one value field".into());
        }
        // Every field is checked before any is taken, so a refused line leaves nothing behind.
        for field in pending.iter() {
            // A cached series was checked when it was cached: a repeated series costs no scan.
            let series = field.series.key(section);
            let valid = match &field.series {
                PendingSeries::Cached(_) | PendingSeries::Built { checked: true, .. } => Ok(()),
                PendingSeries::Built { checked: false, .. } => series.validate(),
            };
            valid
                .and_then(|()| record::validate_sample(timestamp_ns, &field.value))
                .map_err(|error| format!("series {}: {error}", cut(&series.name, 100)))?;
        }
        for field in pending.drain(..) {
            let (series, slot) = match field.series {
                PendingSeries::Cached(index) => {
                    let (_, series, slot) = &mut section.series_by_field[index];
                    (Cow::Borrowed(&*series), Some(slot))
                }
                PendingSeries::Built { series, .. } => (Cow::Owned(series), None),
            };
            out.take(series, slot, (timestamp_ns, field.value, quality));
        }
        Ok(())
    }
}

/// Parses `measurement[,key=value...]` (no unescaped spaces inside).
fn parse_series_section<'a>(raw: &'a str, options: &ParseOptions) -> Result<SeriesSection<'a>, String> {
    let (raw_measurement, mut rest) = split_at_unescaped(raw, b',');
    if raw_measurement.is_empty() {
        return Err("missing measurement: a line starts with its measurement name".into());
    }
    let measurement = unescape(raw_measurement, MEASUREMENT_ESCAPES);
    let mut tags: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::new();
    while let Some(raw_tags) = rest {
        let (raw_tag, next) = split_at_unescaped(raw_tags, b',');
        rest = next;
        let (raw_key, raw_value) = split_at_unescaped(raw_tag, b'=');
        if raw_key.is_empty() {
            return Err("missing tag key: a comma after the measurement or a tag must be followed by key=value".into());
        }
        let key = unescape(raw_key, KEY_ESCAPES);
        let raw_value = match raw_value {
            Some(value) if !value.is_empty() => value,
            _ => {
                return Err(format!("missing tag value for tag key {key:?}; omit the tag instead of leaving it empty"));
            }
        };
        if split_at_unescaped(raw_value, b'=').1.is_some() {
            return Err(format!(
                "invalid tag format: the value of tag key {key:?} has an unescaped '='; write it as \\="
            ));
        }
        tags.push((key, unescape(raw_value, KEY_ESCAPES)));
    }
    tags.sort();
    if let Some(pair) = tags.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(format!("duplicate tags: tag key {:?} appears twice", pair[0].0));
    }
    let mut quality = None;
    if let Some(quality_key) = &options.quality_tag
        && let Ok(index) = tags.binary_search_by(|(key, _)| key.as_ref().cmp(quality_key.as_str()))
    {
        let (key, value) = tags.remove(index);
        quality = Some(Quality::parse_text(&value).map_err(|why| format!("quality tag {key}={value:?} {why}"))?);
    }
    Ok(SeriesSection { measurement, tags, quality, repeated: false, series_by_field: Vec::new() })
}

/// Parses the field set; returns what follows it (empty, or spaces and the timestamp).
fn parse_fields<'a>(
    mut rest: &'a str,
    section: &mut SeriesSection<'a>,
    options: &ParseOptions,
    pending: &mut Vec<PendingField>,
    field_quality: &mut Option<Quality>,
) -> Result<&'a str, String> {
    loop {
        let (raw_key, after_key) = split_field_key(rest)?;
        let (value, after_value) = parse_field_value(after_key, raw_key)?;
        let is_quality = match &options.quality_field {
            Some(quality_key) => unescape(raw_key, KEY_ESCAPES) == quality_key.as_str(),
            None => false,
        };
        if is_quality {
            if field_quality.is_some() {
                return Err(format!("duplicate fields: quality field {raw_key:?} appears twice"));
            }
            *field_quality =
                Some(quality_from_field(&value).map_err(|why| format!("quality field {raw_key:?} {why}"))?);
        } else {
            let series = series_for_field(section, raw_key);
            let name = &series.key(section).name;
            if pending.iter().any(|field| field.series.key(section).name == *name) {
                return Err(format!(
                    "duplicate fields: field key {:?} appears twice; one series has one value per instant",
                    unescape(raw_key, KEY_ESCAPES)
                ));
            }
            pending.push(PendingField { series, value });
        }
        match after_value.as_bytes().first() {
            None | Some(b' ') => return Ok(after_value),
            Some(b',') => rest = &after_value[1..],
            // `parse_field_value` ends every value at a comma, a space or the end of the line.
            Some(_) => return Err("unexpected character after a field value".into()),
        }
    }
}

/// Splits `key=rest` at the first unescaped `=`, refusing keys that end at a space or comma.
fn split_field_key(fields: &str) -> Result<(&str, &str), String> {
    if fields.is_empty() {
        return Err("missing field key after ',': a field is key=value".into());
    }
    let bytes = fields.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' if i == 0 => return Err("missing field key: a field is key=value".into()),
            b'=' => return Ok((&fields[..i], &fields[i + 1..])),
            b' ' | b',' if i == 0 => return Err("missing field key: a field is key=value".into()),
            b' ' | b',' => break,
            _ => i += 1,
        }
    }
    let key = &fields[..i.min(bytes.len())];
    Err(format!("invalid field format: field key {:?} has no '=' and value", unescape(key, KEY_ESCAPES)))
}

/// Parses one field value at the start of `text`; returns it and what follows it.
fn parse_field_value<'a>(text: &'a str, raw_key: &str) -> Result<(Value, &'a str), String> {
    let bytes = text.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(format!("missing field value for field key {:?}", unescape(raw_key, KEY_ESCAPES)));
    };
    if first == b'"' {
        return parse_string_value(text, raw_key);
    }
    let end = bytes.iter().position(|&b| b == b',' || b == b' ').unwrap_or(bytes.len());
    let (token, rest) = text.split_at(end);
    if token.is_empty() {
        return Err(format!("missing field value for field key {:?}", unescape(raw_key, KEY_ESCAPES)));
    }
    let value = match first {
        b'-' | b'.' | b'0'..=b'9' => parse_number(token)?,
        b't' | b'T' | b'f' | b'F' => parse_boolean(token)?,
        _ if is_non_finite_literal(token) => return Err(non_finite_message(token)),
        _ => {
            return Err(format!(
                "field value {token:?} has no recognised type: quote strings (\"{token}\"), write numbers as 1.5, 12i or 12u, booleans as true or false"
            ));
        }
    };
    Ok((value, rest))
}

/// Parses `"…"` with `\"` and `\\` escapes; returns the string and what follows the closing quote.
fn parse_string_value<'a>(text: &'a str, raw_key: &str) -> Result<(Value, &'a str), String> {
    let bytes = text.as_bytes();
    debug_assert_eq!(bytes.first(), Some(&b'"'));
    let mut i = 1;
    let mut has_escape = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if matches!(bytes.get(i + 1), Some(b'"' | b'\\')) => {
                has_escape = true;
                i += 2;
            }
            b'"' => {
                let raw = &text[1..i];
                let rest = &text[i + 1..];
                if let Some(&next) = rest.as_bytes().first()
                    && next != b','
                    && next != b' '
                {
                    return Err(format!(
                        "unexpected text after the string value of field key {:?}; escape quotes inside strings as \\\"",
                        unescape(raw_key, KEY_ESCAPES)
                    ));
                }
                let value = if has_escape { unescape(raw, STRING_ESCAPES).into_owned() } else { raw.to_owned() };
                return Ok((Value::String(value), rest));
            }
            _ => i += 1,
        }
    }
    Err(format!(
        "unbalanced quotes: the string value of field key {:?} has no closing '\"' on this line",
        unescape(raw_key, KEY_ESCAPES)
    ))
}

/// Parses `1.5`, `-1.5e3`, `12i` or `12u`.
fn parse_number(token: &str) -> Result<Value, String> {
    if is_non_finite_literal(token) {
        return Err(non_finite_message(token));
    }
    let bytes = token.as_bytes();
    let Some(&last) = bytes.last() else {
        return Err("missing number".into());
    };
    match last {
        b'i' => {
            let digits = &token[..token.len() - 1];
            if !is_integer_syntax(digits, true) {
                return Err(format!("invalid number {token:?}: an integer is digits followed by i, such as -12i"));
            }
            digits
                .parse::<i64>()
                .map(Value::I64)
                .map_err(|_| format!("integer {token} is out of range; integers are signed 64-bit (-9223372036854775808i..9223372036854775807i)"))
        }
        b'u' => {
            let digits = &token[..token.len() - 1];
            if !is_integer_syntax(digits, false) {
                return Err(format!(
                    "invalid number {token:?}: an unsigned integer is digits followed by u, such as 12u"
                ));
            }
            match digits.parse::<u64>().map(i64::try_from) {
                Ok(Ok(value)) => Ok(Value::I64(value)),
                _ => Err(format!(
                    "unsigned integer {token} is above 9223372036854775807, the largest integer diode stores (records hold signed 64-bit integers); send it as a float if rounding is acceptable"
                )),
            }
        }
        _ => {
            if !is_float_syntax(bytes) {
                return Err(format!("invalid number {token:?}: write floats as 1, 1.5 or -1.5e3, integers as 12i"));
            }
            match token.parse::<f64>() {
                Ok(value) if value.is_finite() => Ok(Value::F64(value)),
                _ => Err(format!("float {token} is out of the range of a 64-bit float")),
            }
        }
    }
}

/// `-?[0-9]+` (or `[0-9]+` when `signed` is false).
fn is_integer_syntax(text: &str, signed: bool) -> bool {
    let digits = if signed { text.strip_prefix('-').unwrap_or(text) } else { text };
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `-?(digits[.digits*] | .digits)([eE][+-]?digits)?`: what InfluxDB accepts as a float, and
/// nothing more of what `str::parse::<f64>` would (no `inf`, `NaN` or leading `+`).
fn is_float_syntax(bytes: &[u8]) -> bool {
    let mut i = usize::from(bytes.first() == Some(&b'-'));
    let digits_start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let mut mantissa_digits = i - digits_start;
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        let fraction_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        mantissa_digits += i - fraction_start;
    }
    if mantissa_digits == 0 {
        return false;
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        i += 1;
        if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
            i += 1;
        }
        let exponent_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == exponent_start {
            return false;
        }
    }
    i == bytes.len()
}

/// `NaN`, `inf`, `infinity`, signed or not, in any case.
fn is_non_finite_literal(token: &str) -> bool {
    let unsigned = token.strip_prefix(['-', '+']).unwrap_or(token);
    ["nan", "inf", "infinity"].iter().any(|word| unsigned.eq_ignore_ascii_case(word))
}

fn non_finite_message(token: &str) -> String {
    format!(
        "invalid number {token:?}: NaN and infinity are not accepted (InfluxDB refuses them too); report a failed sensor with a bad quality"
    )
}

fn parse_boolean(token: &str) -> Result<Value, String> {
    match token {
        "t" | "T" | "true" | "True" | "TRUE" => Ok(Value::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => Ok(Value::Bool(false)),
        _ => Err(format!("invalid boolean {token:?}: use t, T, true, True, TRUE, f, F, false, False or FALSE")),
    }
}

/// The series `raw_key` names in `section`: the cache's (only valid series are cached), or built
/// (and, when the section repeats, checked and cached). Every record still passes
/// [`Record::validate`] or, for a series known valid, [`Record::validate_sample`].
fn series_for_field<'a>(section: &mut SeriesSection<'a>, raw_key: &'a str) -> PendingSeries {
    if !section.repeated {
        return PendingSeries::Built { series: build_series(section, raw_key), checked: false };
    }
    if let Some(index) = section.series_by_field.iter().position(|(key, ..)| *key == raw_key) {
        return PendingSeries::Cached(index);
    }
    let series = build_series(section, raw_key);
    let checked = series.validate().is_ok();
    if checked && section.series_by_field.len() < MAX_CACHED_FIELDS_PER_SECTION {
        section.series_by_field.push((raw_key, series, GroupSlot::default()));
        return PendingSeries::Cached(section.series_by_field.len() - 1);
    }
    PendingSeries::Built { series, checked }
}

/// `measurement/field_key` with the section's tags (already sorted and unique).
fn build_series(section: &SeriesSection<'_>, raw_key: &str) -> SeriesKey {
    let key = unescape(raw_key, KEY_ESCAPES);
    let mut name = String::with_capacity(section.measurement.len() + 1 + key.len());
    name.push_str(&section.measurement);
    name.push('/');
    name.push_str(&key);
    let tags: Vec<(String, String)> =
        section.tags.iter().map(|(key, value)| (String::from(key.as_ref()), String::from(value.as_ref()))).collect();
    SeriesKey { name: name.into(), tags: tags.into() }
}

/// Parses what follows the field set: nothing, or spaces, a timestamp and optional spaces.
fn parse_timestamp(rest: &str, options: &ParseOptions) -> Result<i64, String> {
    let unit_ns = options.precision.nanoseconds_per_unit();
    match plain_timestamp(rest, unit_ns) {
        Some(timestamp_ns) => Ok(timestamp_ns),
        None => any_timestamp(rest, options),
    }
}

/// [`parse_timestamp`] of any text: the rules and every error.
fn any_timestamp(rest: &str, options: &ParseOptions) -> Result<i64, String> {
    let unit_ns = options.precision.nanoseconds_per_unit();
    let rest = rest.trim_start_matches(' ');
    if rest.is_empty() {
        // Saturating: a clock near i64::MIN gives a timestamp `Record::validate` refuses, not a panic.
        return Ok(options.now_ns.saturating_sub(options.now_ns.rem_euclid(unit_ns)));
    }
    let (token, after) = rest.split_at(rest.find(' ').unwrap_or(rest.len()));
    if !after.trim_start_matches(' ').is_empty() {
        return Err(format!(
            "unexpected text after the timestamp: {:?}; a line ends with its timestamp",
            after.trim_start_matches(' ')
        ));
    }
    if !is_integer_syntax(token, true) {
        return Err(format!(
            "bad timestamp {token:?}: a timestamp is a whole number of {}",
            unit_name(options.precision)
        ));
    }
    token.parse::<i64>().ok().and_then(|units| units.checked_mul(unit_ns)).ok_or_else(|| {
        format!(
            "timestamp {token} {} is out of range; check the precision (ns, us, ms, s) the writer uses",
            options.precision.name()
        )
    })
}

/// The common shape of what follows a field set, one space and 1 to 19 digits, read in one pass;
/// `None` for anything else (no timestamp, a sign, more spaces, an error, an overflow), which
/// [`parse_timestamp`] reads the long way with the same result.
fn plain_timestamp(rest: &str, unit_ns: i64) -> Option<i64> {
    let digits = rest.as_bytes().strip_prefix(b" ")?;
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut units: u64 = 0;
    for &byte in digits {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        // 19 digits stay below 10^19 < 2^64: no overflow.
        units = units * 10 + u64::from(digit);
    }
    i64::try_from(units).ok()?.checked_mul(unit_ns)
}

fn unit_name(precision: Precision) -> &'static str {
    match precision {
        Precision::Nanoseconds => "nanoseconds",
        Precision::Microseconds => "microseconds",
        Precision::Milliseconds => "milliseconds",
        Precision::Seconds => "seconds",
        Precision::Minutes => "minutes",
        Precision::Hours => "hours",
    }
}

/// The quality a quality field's value gives; the error completes "quality field \"q\" ".
fn quality_from_field(value: &Value) -> Result<Quality, String> {
    match value {
        Value::I64(code) => u32::try_from(*code)
            .map(Quality)
            .map_err(|_| format!("has value {code}; an OPC UA StatusCode is in 0..=4294967295")),
        Value::String(text) => Quality::parse_text(text).map_err(|why| format!("has value {text:?}, which {why}")),
        Value::F64(_) | Value::Bool(_) => {
            Err(format!("has value {value}; write the status code as an integer such as 0i or 2150891520u"))
        }
    }
}

/// Splits `text` at the first `delimiter` not preceded by an escaping backslash. A backslash always
/// takes the byte after it with it, so `\\,` is an escaped backslash followed by a delimiter.
fn split_at_unescaped(text: &str, delimiter: u8) -> (&str, Option<&str>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'\\' {
            i += 2;
        } else if byte == delimiter {
            // `delimiter` is ASCII, so `i` and `i + 1` are character boundaries.
            return (&text[..i], Some(&text[i + 1..]));
        } else {
            i += 1;
        }
    }
    (text, None)
}

/// Removes the backslash of every `\c` where `c` is in `escapable`; other backslashes stay.
/// Borrows when there is nothing to remove.
fn unescape<'t>(raw: &'t str, escapable: &[u8]) -> Cow<'t, str> {
    let bytes = raw.as_bytes();
    if !bytes.contains(&b'\\') {
        return Cow::Borrowed(raw);
    }
    let mut unescaped = String::with_capacity(raw.len());
    let mut copied_up_to = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(next) = bytes.get(i + 1)
                && escapable.contains(next)
            {
                unescaped.push_str(&raw[copied_up_to..i]);
                copied_up_to = i + 1;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    unescaped.push_str(&raw[copied_up_to..]);
    Cow::Owned(unescaped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use diode_common::record::{MAX_STRING_VALUE_BYTES, MAX_TAGS_PER_SERIES};

    const NOW_NS: i64 = 1_700_000_000_123_456_789;

    fn options() -> ParseOptions {
        ParseOptions::new(NOW_NS)
    }

    fn parse_with(body: &str, options: &ParseOptions) -> Vec<Record> {
        let mut out = Vec::new();
        let count = parse_lines(body, options, &mut out).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(count, out.len());
        out
    }

    fn parse(body: &str) -> Vec<Record> {
        parse_with(body, &options())
    }

    fn single(body: &str) -> Record {
        let mut records = parse(body);
        assert_eq!(records.len(), 1, "{records:?}");
        records.remove(0)
    }

    fn error_with(body: &str, options: &ParseOptions) -> LineError {
        let mut out = Vec::new();
        let error = parse_lines(body, options, &mut out).expect_err("the body should be refused");
        assert!(out.is_empty(), "a refused body must leave out untouched: {out:?}");
        error
    }

    fn error(body: &str) -> LineError {
        error_with(body, &options())
    }

    /// Asserts that `body` is refused at `line_number` with a reason containing `words`.
    fn assert_refused(body: &str, line_number: usize, words: &str) {
        let error = error(body);
        assert_eq!(error.line_number, line_number, "{body:?}: {error}");
        assert!(error.message.contains(words), "{body:?}: expected {words:?} in {error}");
    }

    fn series(name: &str, tags: &[(&str, &str)]) -> SeriesKey {
        SeriesKey::with_tags(name, tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn record(name: &str, tags: &[(&str, &str)], timestamp_ns: i64, value: Value) -> Record {
        Record { series: series(name, tags), timestamp_ns, value, quality: Quality::GOOD }
    }

    #[test]
    fn a_plant_line_becomes_one_record_per_field() {
        let records =
            parse("boiler,plant=p1,unit=b3 steam_temp=512.3,pressure=41.07,running=true 1700000000123000000\n");
        let tags = [("plant", "p1"), ("unit", "b3")];
        let ts = 1_700_000_000_123_000_000;
        assert_eq!(
            records,
            vec![
                record("boiler/steam_temp", &tags, ts, Value::F64(512.3)),
                record("boiler/pressure", &tags, ts, Value::F64(41.07)),
                record("boiler/running", &tags, ts, Value::Bool(true)),
            ]
        );
    }

    #[test]
    fn tags_are_sorted_by_key_whatever_order_they_are_written_in() {
        let r = single("cpu,region=us-west,host=server01 usage_idle=97.5 1700000000000000000");
        assert_eq!(r.series, series("cpu/usage_idle", &[("host", "server01"), ("region", "us-west")]));
        assert_eq!(r.series.tags[0].0, "host");
    }

    #[test]
    fn an_escaped_space_in_a_tag_value_is_kept() {
        let r = single(r"cpu,host=server\ 01 value=1 1");
        assert_eq!(*r.series.tags, [("host".to_string(), "server 01".to_string())]);
    }

    #[test]
    fn escaped_commas_and_spaces_in_a_measurement_are_kept() {
        assert_eq!(&*single(r"my\ plant\,north value=1 1").series.name, "my plant,north/value");
    }

    #[test]
    fn an_equals_sign_in_a_measurement_needs_no_escape() {
        assert_eq!(&*single("a=b value=1 1").series.name, "a=b/value");
        assert_eq!(single("a=b,t=v value=1 1").series, series("a=b/value", &[("t", "v")]));
    }

    #[test]
    fn escaped_commas_equals_signs_and_spaces_in_tag_keys_and_values_are_kept() {
        let r = single(r"m,tag\ key\,1\=x=tag\ value\,2\=y f=1 1");
        assert_eq!(*r.series.tags, [("tag key,1=x".to_string(), "tag value,2=y".to_string())]);
    }

    #[test]
    fn escaped_commas_equals_signs_and_spaces_in_field_keys_are_kept() {
        assert_eq!(&*single(r"m field\ key\,1\=x=1 1").series.name, "m/field key,1=x");
    }

    #[test]
    fn backslashes_are_read_as_the_reference_table_says() {
        // InfluxDB's table: with two contiguous backslashes, the first escapes the second.
        let table =
            [(r"\", r"\"), (r"\\", r"\"), (r"\\\", r"\\"), (r"\\\\", r"\\"), (r"\\\\\", r"\\\"), (r"\\\\\\", r"\\\")];
        for (written, meant) in table {
            let line = format!(r#"m{written}x,t{written}x=v{written}x f{written}x=1,s="s{written}x" 1"#);
            let records = parse(&line);
            let expected_series =
                series(&format!("m{meant}x/f{meant}x"), &[(&format!("t{meant}x"), &format!("v{meant}x"))]);
            assert_eq!(records[0].series, expected_series, "{line}");
            assert_eq!(records[1].value, Value::String(format!("s{meant}x")), "{line}");
        }
    }

    #[test]
    fn a_backslash_before_an_ordinary_character_is_kept() {
        let r = single(r"m,path=C:\temp f=1 1");
        assert_eq!(r.series.tags[0].1, r"C:\temp");
    }

    #[test]
    fn an_escaped_backslash_can_end_a_tag_value() {
        let r = single(r"m,path=C:\\ f=1 1");
        assert_eq!(r.series.tags[0].1, r"C:\");
    }

    #[test]
    fn a_quoted_string_keeps_escaped_quotes_and_backslashes() {
        let r = single(r#"m msg="say \"hi\" to C:\\dir" 1"#);
        assert_eq!(r.value, Value::String(r#"say "hi" to C:\dir"#.to_string()));
    }

    #[test]
    fn a_quoted_string_may_hold_commas_spaces_and_equals_signs() {
        let records = parse(r#"m msg="a, b = c d",n=1i 1"#);
        assert_eq!(records[0].value, Value::String("a, b = c d".to_string()));
        assert_eq!(records[1].value, Value::I64(1));
    }

    #[test]
    fn an_empty_quoted_string_is_an_empty_string() {
        assert_eq!(single(r#"m msg="" 1"#).value, Value::String(String::new()));
    }

    #[test]
    fn a_string_value_that_looks_like_a_number_stays_a_string() {
        assert_eq!(single(r#"m msg="1.5" 1"#).value, Value::String("1.5".to_string()));
    }

    #[test]
    fn floats_are_written_with_or_without_point_and_exponent() {
        let table = [
            ("1", 1.0),
            ("1.0", 1.0),
            ("-1.5e3", -1500.0),
            ("1.5E+3", 1500.0),
            ("2e-3", 0.002),
            (".5", 0.5),
            ("-.5", -0.5),
            ("1.", 1.0),
            ("-0", -0.0),
            ("0.1", 0.1),
            ("1.7976931348623157e308", f64::MAX),
            ("-1.234456e+78", -1.234456e78),
        ];
        for (written, meant) in table {
            let value = single(&format!("m f={written} 1")).value;
            assert!(value.bit_eq(&Value::F64(meant)), "{written}: {value:?}");
        }
    }

    #[test]
    fn integers_take_an_i_suffix_and_span_the_signed_64_bit_range() {
        for (written, meant) in [
            ("12i", 12),
            ("-12i", -12),
            ("0i", 0),
            ("9223372036854775807i", i64::MAX),
            ("-9223372036854775808i", i64::MIN),
        ] {
            assert_eq!(single(&format!("m f={written} 1")).value, Value::I64(meant), "{written}");
        }
    }

    #[test]
    fn unsigned_integers_take_a_u_suffix_up_to_i64_max() {
        for (written, meant) in [("0u", 0), ("12u", 12), ("9223372036854775807u", i64::MAX)] {
            assert_eq!(single(&format!("m f={written} 1")).value, Value::I64(meant), "{written}");
        }
    }

    #[test]
    fn unsigned_integers_above_i64_max_are_refused_saying_why() {
        assert_refused("m f=1 1\nm f=9223372036854775808u 1", 2, "above 9223372036854775807");
        assert_refused("m f=18446744073709551616u 1", 1, "above 9223372036854775807");
    }

    #[test]
    fn integers_outside_the_signed_64_bit_range_are_refused() {
        assert_refused("m f=9223372036854775808i 1", 1, "out of range");
        assert_refused("m f=-9223372036854775809i 1", 1, "out of range");
    }

    #[test]
    fn floats_beyond_the_64_bit_range_are_refused() {
        assert_refused("m f=1e400 1", 1, "out of the range of a 64-bit float");
    }

    #[test]
    fn every_boolean_spelling_is_accepted() {
        for written in ["t", "T", "true", "True", "TRUE"] {
            assert_eq!(single(&format!("m f={written} 1")).value, Value::Bool(true), "{written}");
        }
        for written in ["f", "F", "false", "False", "FALSE"] {
            assert_eq!(single(&format!("m f={written} 1")).value, Value::Bool(false), "{written}");
        }
    }

    #[test]
    fn every_field_type_maps_to_its_value_kind() {
        let values: Vec<Value> = parse(r#"m f=1.5,i=-3i,u=3u,b=T,s="x" 1"#).into_iter().map(|r| r.value).collect();
        assert_eq!(
            values,
            vec![Value::F64(1.5), Value::I64(-3), Value::I64(3), Value::Bool(true), Value::String("x".into())]
        );
    }

    #[test]
    fn every_precision_scales_the_timestamp() {
        let table = [
            (Precision::Nanoseconds, "1700000000123456789", 1_700_000_000_123_456_789),
            (Precision::Microseconds, "1700000000123456", 1_700_000_000_123_456_000),
            (Precision::Milliseconds, "1700000000123", 1_700_000_000_123_000_000),
            (Precision::Seconds, "1700000000", 1_700_000_000_000_000_000),
            (Precision::Minutes, "28333333", 28_333_333 * 60_000_000_000),
            (Precision::Hours, "472222", 472_222 * 3_600_000_000_000),
        ];
        for (precision, written, meant) in table {
            let options = ParseOptions { precision, ..options() };
            let records = parse_with(&format!("m f=1 {written}"), &options);
            assert_eq!(records[0].timestamp_ns, meant, "{precision:?}");
        }
    }

    #[test]
    fn precision_names_are_influxdbs() {
        let table = [
            ("ns", Precision::Nanoseconds),
            ("n", Precision::Nanoseconds),
            ("us", Precision::Microseconds),
            ("u", Precision::Microseconds),
            ("\u{b5}", Precision::Microseconds),
            ("\u{3bc}", Precision::Microseconds),
            ("ms", Precision::Milliseconds),
            ("s", Precision::Seconds),
            ("m", Precision::Minutes),
            ("h", Precision::Hours),
        ];
        for (name, precision) in table {
            assert_eq!(name.parse::<Precision>(), Ok(precision), "{name}");
        }
        for precision in [Precision::Nanoseconds, Precision::Microseconds, Precision::Milliseconds, Precision::Seconds]
        {
            assert_eq!(precision.name().parse::<Precision>(), Ok(precision));
        }
        assert_eq!(Precision::default(), Precision::Nanoseconds);
        let refusal = "sec".parse::<Precision>().unwrap_err().to_string();
        assert!(refusal.contains("\"sec\"") && refusal.contains("ns, us, ms or s"), "{refusal}");
        assert!("".parse::<Precision>().is_err());
        assert!("NS".parse::<Precision>().is_err());
    }

    #[test]
    fn a_line_without_timestamp_takes_now_truncated_to_the_precision() {
        assert_eq!(single("m f=1").timestamp_ns, NOW_NS);
        let table = [
            (Precision::Microseconds, 1_700_000_000_123_456_000),
            (Precision::Milliseconds, 1_700_000_000_123_000_000),
            (Precision::Seconds, 1_700_000_000_000_000_000),
        ];
        for (precision, meant) in table {
            let options = ParseOptions { precision, ..options() };
            assert_eq!(parse_with("m f=1\n", &options)[0].timestamp_ns, meant, "{precision:?}");
        }
    }

    #[test]
    fn now_before_1970_is_truncated_towards_the_past() {
        let options = ParseOptions { precision: Precision::Seconds, ..ParseOptions::new(-1_500_000_000) };
        assert_eq!(parse_with("m f=1", &options)[0].timestamp_ns, -2_000_000_000);
    }

    #[test]
    fn a_clock_at_the_end_of_the_i64_range_is_refused_not_a_panic() {
        for now_ns in [i64::MIN, i64::MAX] {
            let options = ParseOptions { precision: Precision::Hours, ..ParseOptions::new(now_ns) };
            let error = error_with("m f=1", &options);
            assert!(error.message.contains("outside 1900-01-01..2262-04-11"), "{error}");
        }
    }

    #[test]
    fn negative_timestamps_before_1970_are_accepted() {
        let options = ParseOptions { precision: Precision::Seconds, ..options() };
        assert_eq!(parse_with("m f=1 -315619200", &options)[0].timestamp_ns, -315_619_200_000_000_000);
    }

    #[test]
    fn timestamps_that_overflow_nanoseconds_are_refused_naming_the_precision() {
        let options = ParseOptions { precision: Precision::Seconds, ..options() };
        let error = error_with("m f=1 1\nm f=1 9999999999999", &options);
        assert_eq!(error.line_number, 2);
        assert!(error.message.contains("9999999999999 s is out of range"), "{error}");
        assert_refused("m f=1 99999999999999999999", 1, "out of range");
    }

    #[test]
    fn timestamps_outside_1900_to_2262_are_refused_by_record_validation() {
        let options = ParseOptions { precision: Precision::Seconds, ..options() };
        let error = error_with("m f=1 -5000000000", &options);
        assert_eq!(error.line_number, 1);
        assert!(error.message.contains("outside 1900-01-01..2262-04-11"), "{error}");
    }

    #[test]
    fn comments_and_blank_lines_are_skipped_but_still_counted() {
        let body = "# exported by the historian\n\n   \nm f=1 1\n  # indented comment\n\t\nm f=2 2\n";
        assert_eq!(parse(body).len(), 2);
        assert_refused(&format!("{body}m f=oops 3\n"), 8, "no recognised type");
    }

    #[test]
    fn crlf_line_endings_are_tolerated() {
        let records = parse("# comment\r\nm f=1 1\r\n\r\nm s=\"x\"\r\nm g=2i 3\r\n");
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].timestamp_ns, 1);
        assert_eq!(records[1].value, Value::String("x".into()));
        assert_eq!(records[2].timestamp_ns, 3);
        assert_refused("m f=1 1\r\nm f=1x 2\r\n", 2, "invalid number");
    }

    #[test]
    fn leading_spaces_and_runs_of_spaces_between_sections_are_tolerated() {
        let records = parse("  m,t=a   f=1   5   \n\tm g=2   ");
        assert_eq!(records[0].series, series("m/f", &[("t", "a")]));
        assert_eq!(records[0].timestamp_ns, 5);
        assert_eq!(records[1].timestamp_ns, NOW_NS);
    }

    #[test]
    fn an_empty_body_gives_no_records() {
        assert!(parse("").is_empty());
        assert!(parse("\n\n# nothing\n").is_empty());
    }

    #[test]
    fn records_are_appended_after_what_out_already_holds() {
        let mut out = parse("m f=1 1");
        assert_eq!(parse_lines("m g=2 2\nm h=3 3", &options(), &mut out), Ok(2));
        assert_eq!(out.len(), 3);
        assert_eq!(&*out[2].series.name, "m/h");
    }

    #[test]
    fn a_bad_line_rejects_the_whole_body() {
        let mut out = parse("m f=1 1");
        let error = parse_lines("m g=2 2\nm h=3 3\nm broken\nm i=4 4", &options(), &mut out).unwrap_err();
        assert_eq!(error.line_number, 3);
        assert_eq!(out, parse("m f=1 1"), "records already held stay, none of the refused body is added");
    }

    #[test]
    fn the_error_reads_like_influxdbs_with_the_line_number() {
        let error = error("cpu value=1 1\ncpu value=");
        assert_eq!(
            error.to_string(),
            "line 2: unable to parse 'cpu value=': missing field value for field key \"value\""
        );
    }

    #[test]
    fn the_error_quotes_the_line_without_its_carriage_return() {
        assert_eq!(error("cpu value=x\r\n").message, error("cpu value=x").message);
    }

    #[test]
    fn a_long_bad_line_is_quoted_cut_short() {
        let line = format!("m,t={} f=oops", "é".repeat(1000));
        let error = error(&line);
        assert!(error.message.len() < MAX_QUOTED_LINE_BYTES + 300, "{}", error.message.len());
        assert!(error.message.contains("…'"), "{error}");
        assert!(error.message.contains("no recognised type"), "{error}");
    }

    #[test]
    fn a_huge_bad_token_gives_a_bounded_message() {
        for body in [format!("m f={}x", "9".repeat(1_000_000)), format!("m f=1 1 {}", "é".repeat(100_000))] {
            let error = error(&body);
            assert!(error.message.len() <= MAX_QUOTED_LINE_BYTES + MAX_REASON_BYTES + 100, "{}", error.message.len());
        }
    }

    #[test]
    fn a_line_without_fields_is_refused_with_its_line_number() {
        assert_refused("m f=1 1\ncpu\n", 2, "missing fields");
        assert_refused("cpu,host=a", 1, "missing fields");
        assert_refused("m f=1 1\n\ncpu   \n", 3, "missing fields");
        assert_refused(r"cpu\ ", 1, "missing fields");
    }

    #[test]
    fn a_line_starting_with_a_comma_has_no_measurement() {
        assert_refused(",t=a f=1", 1, "missing measurement");
    }

    #[test]
    fn an_unterminated_string_is_refused_with_its_line_number() {
        assert_refused("m f=1 1\nm f=2 2\nm s=\"abc 3\n", 3, "unbalanced quotes");
        assert_refused(r#"m s="abc\" 3"#, 1, "unbalanced quotes");
    }

    #[test]
    fn a_string_cannot_span_lines() {
        assert_refused("m s=\"first\nsecond\" 1", 1, "unbalanced quotes");
    }

    #[test]
    fn a_bad_number_is_refused_with_its_line_number() {
        for written in
            ["1.2.3", "1e", "1e+", "--1", "1i2", "1.5i", "1e3i", "-3u", "1.5u", "0x10", "1_000", "-", ".", "-.", "1ii"]
        {
            assert_refused(&format!("m f=1 1\nm f={written} 2"), 2, "invalid number");
        }
    }

    #[test]
    fn a_bad_boolean_is_refused_with_its_line_number() {
        for written in ["tru", "truE", "Yes", "tRUE", "falsey", "FaLSE"] {
            let body = format!("m f=1 1\nm f=2 2\nm f={written} 3");
            let error = error(&body);
            assert_eq!(error.line_number, 3, "{written}");
            assert!(
                error.message.contains("invalid boolean") || error.message.contains("no recognised type"),
                "{error}"
            );
        }
        assert_refused("m f=tru 1", 1, "invalid boolean");
    }

    #[test]
    fn nan_and_infinity_are_refused_like_influxdb_does() {
        for written in ["NaN", "nan", "-nan", "inf", "-Inf", "+inf", "Infinity", "-infinity"] {
            assert_refused(&format!("m f=1 1\nm f={written} 2"), 2, "NaN and infinity are not accepted");
        }
    }

    #[test]
    fn a_value_of_no_known_type_is_refused() {
        assert_refused("m f=abc 1", 1, "no recognised type");
        assert_refused("m f=+1 1", 1, "no recognised type");
        assert_refused("m f='quoted' 1", 1, "no recognised type");
    }

    #[test]
    fn a_stream_skips_its_bad_lines_and_keeps_the_rest_as_line_by_line_parsing_would() {
        // Line 3's first field is fine and its second too long: the line leaves nothing behind.
        let too_long = "x".repeat(diode_common::record::MAX_STRING_VALUE_BYTES + 1);
        let body = format!(
            "m a=1,b=2 1000\n\
             m a=3,a=4 2000\n\
             m a=5,b=\"{too_long}\" 2500\n\
             n,t=x c=7i 3000\n\
             garbage\n\
             m a=8,b=9 4000\n\
             n,t=x c=10i 5000"
        );
        let body = body.as_str();
        let mut expected = Vec::new();
        let mut refused = 0;
        for line in body.lines() {
            refused += usize::from(parse_lines(line, &options(), &mut expected).is_err());
        }
        assert_eq!(refused, 3, "the duplicate field, the long string and the garbage");
        let mut grouper = Grouper::new(4);
        let mut skipped = Vec::new();
        let taken =
            parse_lines_grouped_skipping(body, &options(), &mut grouper, |error| skipped.push(error.line_number));
        assert_eq!(skipped, [2, 3, 5]);
        assert_eq!(taken, expected.len());
        let frames: Vec<_> = expected.chunks(4).map(diode_common::codec::group_records).collect();
        assert_eq!(grouper.finish(), frames);
    }

    #[test]
    fn the_one_pass_timestamp_reads_what_the_long_way_reads() {
        let texts = [
            "",
            " ",
            "  5",
            " 0",
            " 0001",
            " 5 ",
            " -5",
            " +5",
            " 12a",
            " 1.5",
            " 9223372036854775807",
            " 9223372036854775808",
            " 9999999999999999999",
            " 18446744073709551616",
            " 99999999999999999999",
            " 1700000000000000000",
            " 1700000000",
        ];
        assert_eq!(plain_timestamp(" 1700000000000000000", 1), Some(1_700_000_000_000_000_000));
        for precision in [Precision::Nanoseconds, Precision::Microseconds, Precision::Seconds, Precision::Hours] {
            let options = ParseOptions { precision, ..options() };
            for text in texts {
                let long_way = any_timestamp(text, &options);
                if let Some(timestamp_ns) = plain_timestamp(text, precision.nanoseconds_per_unit()) {
                    assert_eq!(Ok(timestamp_ns), long_way, "{text:?} at {precision:?}");
                }
                assert_eq!(parse_timestamp(text, &options), long_way, "{text:?} at {precision:?}");
            }
        }
    }

    #[test]
    fn text_after_the_timestamp_is_refused() {
        assert_refused("m f=1 1\nm f=1 1700000000 garbage", 2, "unexpected text after the timestamp");
        assert_refused("m f=1 1 2", 1, "unexpected text after the timestamp");
    }

    #[test]
    fn a_timestamp_that_is_not_a_whole_number_is_refused() {
        for written in ["1.5", "12abc", "+5", "-", "1e9", "0x10"] {
            assert_refused(&format!("m f=1 {written}"), 1, "bad timestamp");
        }
    }

    #[test]
    fn text_glued_to_a_string_value_is_refused() {
        assert_refused(r#"m s="a"b 1"#, 1, "unexpected text after the string value");
    }

    #[test]
    fn duplicate_tag_keys_are_refused() {
        assert_refused("m f=1 1\nm,a=1,b=2,a=3 f=1", 2, "duplicate tags: tag key \"a\"");
        assert_refused(r"m,a\ b=1,a\ b=2 f=1", 1, "duplicate tags");
    }

    #[test]
    fn duplicate_field_keys_are_refused() {
        assert_refused("m f=1,g=2,f=3 1", 1, "duplicate fields: field key \"f\"");
        assert_refused(r"m a\b=1,a\\b=2 1", 1, "duplicate fields");
    }

    #[test]
    fn a_tag_without_a_value_is_refused() {
        assert_refused("m,host f=1", 1, "missing tag value for tag key \"host\"");
        assert_refused("m,host= f=1", 1, "missing tag value");
        assert_refused("m,a=1,host f=1", 1, "missing tag value");
    }

    #[test]
    fn a_tag_without_a_key_is_refused() {
        assert_refused("m,=a f=1", 1, "missing tag key");
        assert_refused("m, f=1", 1, "missing tag key");
        assert_refused("m,,a=1 f=1", 1, "missing tag key");
        assert_refused("m,a=1, f=1", 1, "missing tag key");
    }

    #[test]
    fn an_unescaped_equals_sign_in_a_tag_value_is_refused() {
        assert_refused("m,t=a=b f=1", 1, "invalid tag format");
        assert_eq!(single(r"m,t=a\=b f=1").series.tags[0].1, "a=b");
    }

    #[test]
    fn a_field_without_a_value_is_refused() {
        assert_refused("m f= 1", 1, "missing field value");
        assert_refused("m f=", 1, "missing field value");
        assert_refused("m f=,g=1", 1, "missing field value");
    }

    #[test]
    fn a_field_without_a_key_is_refused() {
        assert_refused("m =1", 1, "missing field key");
        assert_refused("m f=1,=2", 1, "missing field key");
        assert_refused("m f=1, g=2", 1, "missing field key");
        assert_refused("m f=1,", 1, "missing field key");
    }

    #[test]
    fn a_field_without_an_equals_sign_is_refused() {
        assert_refused("m f 1", 1, "invalid field format");
        assert_refused("m f=1,g", 1, "invalid field format");
        assert_refused("m f=1,g 1", 1, "invalid field format");
    }

    #[test]
    fn record_validation_refusals_are_reported_for_their_line() {
        assert_refused("m f=1 1\nm,t=a\u{1}b f=1", 2, "control character");
        assert_refused("m,t=a\tb f=1", 1, "control character");
        // A section seen before: its new series is checked before it could be cached.
        assert_refused("m,t=a f=1\nm,t=a g\u{1}h=1", 2, "control character");
        assert_refused(&format!("m,t=a f=1\nm,t=a {}=1", "g".repeat(600)), 2, "series name is");
        assert_refused(&format!("{} f=1", "m".repeat(600)), 1, "series name is");
        let many_tags: Vec<String> = (0..=MAX_TAGS_PER_SERIES).map(|i| format!("t{i:02}=v")).collect();
        assert_refused(&format!("m,{} f=1", many_tags.join(",")), 1, "tags; the limit is 32");
        let long = "x".repeat(MAX_STRING_VALUE_BYTES + 1);
        assert_refused(&format!("m f=1 1\nm s=\"{long}\" 1"), 2, "string value is");
    }

    fn quality_options() -> ParseOptions {
        ParseOptions { quality_tag: Some("q".into()), quality_field: Some("quality".into()), ..options() }
    }

    #[test]
    fn a_quality_tag_sets_the_quality_and_is_removed_from_the_series_tags() {
        let records = parse_with("m,q=bad,unit=b3 f=1,g=2 1", &quality_options());
        assert_eq!(records.len(), 2);
        for r in &records {
            assert_eq!(r.quality, Quality::BAD);
            assert_eq!(*r.series.tags, [("unit".to_string(), "b3".to_string())]);
        }
        let table = [
            ("good", Quality::GOOD),
            ("Uncertain", Quality::UNCERTAIN),
            ("BAD", Quality::BAD),
            ("0", Quality::GOOD),
            ("1073741824", Quality::UNCERTAIN),
            ("0x808A0000", Quality(0x808A_0000)),
            ("0X808a0000", Quality(0x808A_0000)),
            ("4294967295", Quality(u32::MAX)),
        ];
        for (written, meant) in table {
            let records = parse_with(&format!("m,q={written} f=1 1"), &quality_options());
            assert_eq!(records[0].quality, meant, "{written}");
            assert!(records[0].series.tags.is_empty());
        }
    }

    #[test]
    fn a_quality_field_sets_the_quality_and_is_not_a_series() {
        let records = parse_with("m f=1,quality=2156527616i,g=2 1", &quality_options());
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|r| r.quality == Quality(0x808A_0000)));
        assert_eq!(&*records[1].series.name, "m/g");
        for (written, meant) in
            [("0u", Quality::GOOD), ("\"bad\"", Quality::BAD), ("\"0x40000000\"", Quality::UNCERTAIN)]
        {
            assert_eq!(
                parse_with(&format!("m f=1,quality={written}"), &quality_options())[0].quality,
                meant,
                "{written}"
            );
        }
    }

    #[test]
    fn lines_without_quality_are_good() {
        assert_eq!(parse_with("m,unit=b3 f=1 1", &quality_options())[0].quality, Quality::GOOD);
        assert_eq!(single("m f=1 1").quality, Quality::GOOD);
    }

    #[test]
    fn a_quality_tag_that_is_not_a_status_code_is_refused() {
        for written in ["broken", "0x", "0xG", "4294967296", "-1", "0x100000000", "1.5"] {
            let error = error_with(&format!("m f=1 1\nm,q={written} f=1 2"), &quality_options());
            assert_eq!(error.line_number, 2, "{written}");
            assert!(
                error.message.contains("quality tag q=") && error.message.contains("is not a status code"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_quality_field_that_is_not_a_status_code_is_refused() {
        for written in ["1.5", "-1i", "4294967296i", "true", "\"meh\""] {
            let error = error_with(&format!("m f=1,quality={written} 2"), &quality_options());
            assert_eq!(error.line_number, 1, "{written}");
            assert!(error.message.contains("quality field \"quality\" has value"), "{error}");
        }
    }

    #[test]
    fn a_line_with_only_its_quality_field_is_refused() {
        let error = error_with("m quality=0i 1", &quality_options());
        assert!(error.message.contains("only its quality field"), "{error}");
    }

    #[test]
    fn a_line_giving_quality_twice_is_refused() {
        let error = error_with("m,q=good f=1,quality=0i 1", &quality_options());
        assert!(error.message.contains("quality twice"), "{error}");
        let error = error_with("m f=1,quality=0i,quality=0i 1", &quality_options());
        assert!(error.message.contains("quality field \"quality\" appears twice"), "{error}");
    }

    #[test]
    fn quality_names_are_ordinary_tags_and_fields_unless_configured() {
        let records = parse("m,q=bad f=1,quality=3i 1");
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].series, series("m/quality", &[("q", "bad")]));
        assert!(records.iter().all(|r| r.quality == Quality::GOOD));
    }

    #[test]
    fn an_escaped_quality_field_key_is_matched_after_unescaping() {
        let options = ParseOptions { quality_field: Some("the quality".into()), ..options() };
        assert_eq!(parse_with(r"m f=1,the\ quality=2147483648i 1", &options)[0].quality, Quality::BAD);
        assert_eq!(parse_with(r#"m f=1,the\ quality="bad" 1"#, &options)[0].quality, Quality::BAD);
    }

    #[test]
    fn lines_sharing_a_series_section_keep_their_own_fields() {
        let records = parse("m,t=a f=1 1\nm,t=a g=2 2\nm,t=b f=3 3\nm,t=a f=4 4");
        let names: Vec<String> = records.iter().map(|r| r.series.to_string()).collect();
        assert_eq!(names, ["m/f{t=a}", "m/g{t=a}", "m/f{t=b}", "m/f{t=a}"]);
    }

    #[test]
    fn bodies_with_more_series_than_the_cache_holds_parse_the_same() {
        let count = MAX_CACHED_SERIES_SECTIONS * 2 + 7;
        let mut body = String::new();
        for round in 0..2 {
            for i in 0..count {
                body.push_str(&format!("m,unit=u{i} f={round} {i}\n"));
            }
        }
        let records = parse(&body);
        assert_eq!(records.len(), 2 * count);
        for (index, r) in records.iter().enumerate() {
            let i = index % count;
            assert_eq!(r.series, series("m/f", &[("unit", &format!("u{i}"))]));
            assert_eq!(r.timestamp_ns, i as i64);
            assert_eq!(r.value, Value::F64((index / count) as f64));
        }
    }

    #[test]
    fn measurements_wider_than_the_field_cache_parse_the_same() {
        let fields: Vec<String> = (0..MAX_CACHED_FIELDS_PER_SECTION * 2).map(|i| format!("f{i}={i}")).collect();
        let line = format!("m,t=a {} 1\n", fields.join(","));
        let records = parse(&line.repeat(2));
        assert_eq!(records.len(), 4 * MAX_CACHED_FIELDS_PER_SECTION);
        for (index, r) in records.iter().enumerate() {
            let i = index % (2 * MAX_CACHED_FIELDS_PER_SECTION);
            assert_eq!(r.series, series(&format!("m/f{i}"), &[("t", "a")]));
        }
    }

    #[test]
    fn names_may_hold_any_printable_unicode() {
        let r = single("myMeasurement,tagKey=🍭 fieldKey=\"Launch 🚀\" 1556813561098000000");
        assert_eq!(r.series, series("myMeasurement/fieldKey", &[("tagKey", "🍭")]));
        assert_eq!(r.value, Value::String("Launch 🚀".into()));
    }

    /// Property tests: the parser is total, and valid lines written by an independent encoder come
    /// back as the records they describe.
    mod properties {
        use std::collections::BTreeMap;

        use proptest::prelude::*;

        use super::*;
        use diode_common::record::{MAX_TIMESTAMP_NS, MIN_TIMESTAMP_NS};

        #[derive(Debug, Clone)]
        enum WrittenValue {
            Float { value: f64, exponent_form: bool },
            Integer(i64),
            Unsigned(u64),
            Boolean(&'static str),
            Text(String),
        }

        impl WrittenValue {
            fn meant(&self) -> Value {
                match self {
                    Self::Float { value, .. } => Value::F64(*value),
                    Self::Integer(value) => Value::I64(*value),
                    Self::Unsigned(value) => Value::I64(i64::try_from(*value).expect("generated within i64")),
                    Self::Boolean(spelling) => Value::Bool(spelling.starts_with(['t', 'T'])),
                    Self::Text(text) => Value::String(text.clone()),
                }
            }
        }

        #[derive(Debug, Clone)]
        struct WrittenLine {
            measurement: String,
            tags: BTreeMap<String, String>,
            fields: BTreeMap<String, WrittenValue>,
            timestamp_units: Option<i64>,
        }

        /// Backslash-escapes `\` and every character of `special`: the encoder side of the reference.
        fn escape(text: &str, special: &[char]) -> String {
            let mut escaped = String::with_capacity(text.len() * 2);
            for c in text.chars() {
                if c == '\\' || special.contains(&c) {
                    escaped.push('\\');
                }
                escaped.push(c);
            }
            escaped
        }

        fn encode(line: &WrittenLine) -> String {
            let mut text = escape(&line.measurement, &[',', ' ']);
            for (key, value) in &line.tags {
                text.push_str(&format!(",{}={}", escape(key, &[',', '=', ' ']), escape(value, &[',', '=', ' '])));
            }
            for (index, (key, value)) in line.fields.iter().enumerate() {
                text.push(if index == 0 { ' ' } else { ',' });
                text.push_str(&escape(key, &[',', '=', ' ']));
                text.push('=');
                match value {
                    WrittenValue::Float { value, exponent_form: true } => text.push_str(&format!("{value:e}")),
                    WrittenValue::Float { value, exponent_form: false } => text.push_str(&format!("{value}")),
                    WrittenValue::Integer(value) => text.push_str(&format!("{value}i")),
                    WrittenValue::Unsigned(value) => text.push_str(&format!("{value}u")),
                    WrittenValue::Boolean(spelling) => text.push_str(spelling),
                    WrittenValue::Text(value) => text.push_str(&format!("\"{}\"", escape(value, &['"']))),
                }
            }
            if let Some(units) = line.timestamp_units {
                text.push_str(&format!(" {units}"));
            }
            text
        }

        /// Names built from the characters line protocol treats specially, and a few others.
        fn name() -> impl Strategy<Value = String> {
            let alphabet =
                vec!['a', 'b', 'Z', '0', '9', ' ', ',', '=', '\\', '"', '#', '_', '/', '.', '-', '\'', 'é', '🍭'];
            prop::collection::vec(prop::sample::select(alphabet), 1..8).prop_map(|chars| chars.into_iter().collect())
        }

        fn text() -> impl Strategy<Value = String> {
            let alphabet = vec!['a', ' ', ',', '=', '\\', '"', '#', '\t', '\r', 'é', '🚀'];
            prop::collection::vec(prop::sample::select(alphabet), 0..12).prop_map(|chars| chars.into_iter().collect())
        }

        fn value() -> impl Strategy<Value = WrittenValue> {
            let spellings = vec!["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"];
            prop_oneof![
                (any::<f64>().prop_filter("finite", |v| v.is_finite()), any::<bool>())
                    .prop_map(|(value, exponent_form)| WrittenValue::Float { value, exponent_form }),
                any::<i64>().prop_map(WrittenValue::Integer),
                (0..=i64::MAX as u64).prop_map(WrittenValue::Unsigned),
                prop::sample::select(spellings).prop_map(WrittenValue::Boolean),
                text().prop_map(WrittenValue::Text),
            ]
        }

        fn precision() -> impl Strategy<Value = Precision> {
            prop::sample::select(vec![
                Precision::Nanoseconds,
                Precision::Microseconds,
                Precision::Milliseconds,
                Precision::Seconds,
                Precision::Minutes,
                Precision::Hours,
            ])
        }

        fn line(precision: Precision) -> impl Strategy<Value = WrittenLine> {
            let unit_ns = precision.nanoseconds_per_unit();
            (
                name().prop_filter("a leading # makes a comment", |m| !m.starts_with('#')),
                prop::collection::btree_map(name(), name(), 0..4),
                prop::collection::btree_map(name(), value(), 1..5),
                prop::option::of(MIN_TIMESTAMP_NS / unit_ns..=MAX_TIMESTAMP_NS / unit_ns),
            )
                .prop_map(|(measurement, tags, fields, timestamp_units)| WrittenLine {
                    measurement,
                    tags,
                    fields,
                    timestamp_units,
                })
        }

        fn body() -> impl Strategy<Value = (Precision, Vec<WrittenLine>, bool)> {
            precision().prop_flat_map(|precision| {
                (Just(precision), prop::collection::vec(line(precision), 1..6), any::<bool>())
            })
        }

        /// Text made mostly of the characters that steer the parser, to reach its error paths.
        fn line_protocol_noise() -> impl Strategy<Value = String> {
            "[a-z0-9 ,=\\\\\"#.\\-+eEiuTtFfNn\r\n\t]{0,80}"
        }

        fn assert_total(body: &str) {
            for options in [options(), quality_options()] {
                let mut out = Vec::new();
                let parsed = parse_lines(body, &options, &mut out);
                match &parsed {
                    Ok(count) => {
                        assert_eq!(*count, out.len());
                        for record in &out {
                            assert_eq!(record.validate(), Ok(()), "{record:?}");
                        }
                    }
                    Err(error) => {
                        assert!(out.is_empty());
                        assert!((1..=body.split('\n').count()).contains(&error.line_number), "{error}");
                        assert!(error.message.starts_with("unable to parse '"), "{error}");
                    }
                }
                assert_grouped_alike(body, &options, &parsed, &out);
            }
        }

        /// Parsing into a grouper refuses what parsing into records refuses, with the same error,
        /// and otherwise gives the frames that grouping those records gives.
        fn assert_grouped_alike(
            body: &str,
            options: &ParseOptions,
            parsed: &Result<usize, LineError>,
            records: &[Record],
        ) {
            const FRAME: usize = 3;
            let mut grouper = Grouper::new(FRAME);
            let grouped = parse_lines_grouped(body, options, &mut grouper);
            assert_eq!(&grouped, parsed);
            if grouped.is_ok() {
                let expected: Vec<_> = records.chunks(FRAME).map(diode_common::codec::group_records).collect();
                assert_eq!(grouper.finish(), expected);
            }
        }

        proptest! {
            #[test]
            fn the_parser_never_panics_on_arbitrary_text(body in any::<String>()) {
                assert_total(&body);
            }

            #[test]
            fn the_parser_never_panics_on_line_protocol_like_noise(body in line_protocol_noise()) {
                assert_total(&body);
            }

            #[test]
            fn the_parser_never_panics_on_damaged_valid_lines(
                (precision, lines, _) in body(),
                cut in any::<prop::sample::Index>(),
                insert in prop::sample::select(vec!["", " ", ",", "=", "\\", "\"", "\n", "#", "x"]),
            ) {
                let _ = precision;
                let text: String = lines.iter().map(encode).collect::<Vec<_>>().join("\n");
                let mut at = cut.index(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                assert_total(&format!("{}{insert}{}", &text[..at], &text[at..]));
            }

            #[test]
            fn valid_lines_round_trip_through_an_independent_encoder((precision, lines, crlf) in body()) {
                let options = ParseOptions { precision, ..options() };
                let now_ns = NOW_NS - NOW_NS.rem_euclid(precision.nanoseconds_per_unit());
                let mut text = String::new();
                let mut expected = Vec::new();
                for (index, line) in lines.iter().enumerate() {
                    if index % 2 == 1 {
                        text.push_str("# a comment between lines");
                        text.push_str(if crlf { "\r\n" } else { "\n" });
                    }
                    text.push_str(&encode(line));
                    text.push_str(if crlf { "\r\n" } else { "\n" });
                    let tags: Vec<(String, String)> = line.tags.clone().into_iter().collect();
                    for (key, value) in &line.fields {
                        expected.push(Record {
                            series: SeriesKey::with_tags(format!("{}/{key}", line.measurement), tags.clone()),
                            timestamp_ns: line.timestamp_units.map_or(now_ns, |units| units * precision.nanoseconds_per_unit()),
                            value: value.meant(),
                            quality: Quality::GOOD,
                        });
                    }
                }
                let mut out = Vec::new();
                let count = parse_lines(&text, &options, &mut out).map_err(|error| TestCaseError::fail(format!("{error}\n{text}")))?;
                prop_assert_eq!(count, expected.len());
                assert_grouped_alike(&text, &options, &Ok(count), &out);
                for (got, meant) in out.iter().zip(&expected) {
                    prop_assert!(got.bit_eq(meant), "got {:?}\nmeant {:?}\nbody {}", got, meant, text);
                }
            }
        }
    }
}

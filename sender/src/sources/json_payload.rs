//! JSON payloads from MQTT: where in the document the time, value and quality are (JSON
//! pointers, RFC 6901), and which series a topic names (a template). Pure: topic, bytes and the
//! receiving clock in, records out; total (any input gives records or an error, never a panic).
//!
//! - A document is one object, or an array of objects, each one sample.
//! - The series is the template with `{topic}` replaced by the whole topic and `{1}`, `{2}`, …
//!   by its levels (1-based): `plant1/{2}/{3}` on topic `site/boiler3/steam_temp` gives
//!   `plant1/boiler3/steam_temp`.
//! - The value (`value_pointer`) is a number, a boolean or a string; `value_type = "float"` (the
//!   default) stores every number as a float, `"auto"` keeps integers as integers. When the
//!   value is an object, each of its scalar members is a sample of the series `<series>/<member>`
//!   (one message, many points).
//! - The time (`time_pointer`) is an epoch number in `time_unit` (`auto` judges s, ms, µs or ns
//!   by magnitude) or an RFC 3339 string; absent, the receiving clock.
//! - The quality (`quality_pointer`) is an OPC UA status code as a number, or a string as
//!   `ingest.quality_tag` reads it (good, uncertain, bad, decimal, 0x-hex); absent, good.

use diode_common::record::{Quality, Record, SeriesKey, Value, epoch_unit_ns_by_magnitude};
use serde_json::Value as Json;

/// Samples one message may carry; the rest are refused (counted malformed).
pub const MAX_SAMPLES_PER_MESSAGE: usize = 100_000;

/// The unit of numeric timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    /// Seconds, milliseconds, microseconds or nanoseconds, judged by magnitude.
    Auto,
    /// `s`: seconds since the Unix epoch.
    #[serde(rename = "s")]
    Seconds,
    /// `ms`: milliseconds since the Unix epoch.
    #[serde(rename = "ms")]
    Milliseconds,
    /// `us`: microseconds since the Unix epoch.
    #[serde(rename = "us")]
    Microseconds,
    /// `ns`: nanoseconds since the Unix epoch.
    #[serde(rename = "ns")]
    Nanoseconds,
}

/// How JSON numbers are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// Every number as a float, so a sensor sending `20` then `20.5` keeps one type.
    Float,
    /// Integers (that fit in i64) as integers, other numbers as floats.
    Auto,
}

/// One part of a series template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Topic,
    Level(usize),
}

/// A series name made from a topic: text with `{topic}` and `{N}` (1-based topic level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesTemplate {
    parts: Vec<Part>,
}

impl SeriesTemplate {
    /// Parses a template; the error says what is wrong with it.
    pub fn parse(template: &str) -> Result<SeriesTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close = rest[open..].find('}').ok_or_else(|| format!("\"{template}\" has a {{ without }}"))? + open;
            let name = &rest[open + 1..close];
            parts.push(match name {
                "topic" => Part::Topic,
                level => match level.parse::<usize>() {
                    Ok(level) if level >= 1 => Part::Level(level),
                    _ => {
                        return Err(format!(
                            "\"{template}\": {{{name}}} is neither {{topic}} nor a topic level {{1}}, {{2}}, …"
                        ));
                    }
                },
            });
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("\"{template}\" has a }} without {{"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err("the series template is empty".to_owned());
        }
        Ok(SeriesTemplate { parts })
    }

    /// The series name for `topic`, or `None` when the template names a level the topic lacks.
    pub fn name(&self, topic: &str) -> Option<String> {
        let mut name = String::with_capacity(topic.len() + 16);
        for part in &self.parts {
            match part {
                Part::Text(text) => name.push_str(text),
                Part::Topic => name.push_str(topic),
                Part::Level(level) => name.push_str(topic.split('/').nth(level - 1)?),
            }
        }
        Some(name)
    }
}

/// Where a JSON document keeps each part of a sample.
#[derive(Debug, Clone)]
pub struct JsonMapping {
    /// Names the series from the topic (`series` setting).
    pub series: SeriesTemplate,
    /// JSON pointer to the value; an object there gives one series per scalar member.
    pub value_pointer: String,
    /// JSON pointer to the time; nothing there: the receiving clock.
    pub time_pointer: String,
    /// Unit of numeric times.
    pub time_unit: TimeUnit,
    /// JSON pointer to the quality; nothing there: good.
    pub quality_pointer: String,
    /// Whether numbers are all stored as floats.
    pub value_type: ValueType,
}

/// Why a message, or a sample of it, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The payload does not parse as JSON; the message is refused whole.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The payload parses but is not an object or an array of objects.
    #[error("the document is neither an object nor an array of objects")]
    NotAnObject,
    /// The `series` template uses `{n}` beyond the topic's levels: check the template against
    /// the topic filter.
    #[error("the series template names a topic level the topic does not have")]
    TopicTooShort,
    /// An object has nothing at `value_pointer` (the pointer is named).
    #[error("no value at {0}")]
    NoValue(String),
    /// The value is an array (or a nested object) or a number out of range: diode cannot store it.
    #[error("the value at {pointer} is {found}; expected a number, boolean or string")]
    BadValue {
        /// Where the value was looked for.
        pointer: String,
        /// The JSON type found there.
        found: &'static str,
    },
    /// The time is neither an epoch number nor RFC 3339 text, or is out of range.
    #[error("the time at {pointer} cannot be read: {why}")]
    BadTime {
        /// Where the time was looked for.
        pointer: String,
        /// What is wrong with it.
        why: String,
    },
    /// The quality is neither a status code nor good, uncertain or bad.
    #[error("the quality at {pointer} cannot be read: {why}")]
    BadQuality {
        /// Where the quality was looked for.
        pointer: String,
        /// What is wrong with it.
        why: String,
    },
    /// The sample makes an invalid record (a name or string too long, a NaN, …).
    #[error("record refused: {0}")]
    Invalid(String),
    /// The message holds more than [`MAX_SAMPLES_PER_MESSAGE`] samples; refused whole.
    #[error("more than {MAX_SAMPLES_PER_MESSAGE} samples in one message")]
    TooManySamples,
}

/// What one message gave.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Samples refused (the rest of the message is kept).
    pub refused: u64,
    /// The first refusal, for the log.
    pub first_error: Option<JsonError>,
}

impl JsonMapping {
    /// Appends the records of one message to `out`. A document that cannot be read at all is an
    /// error and appends nothing; within an array, bad samples are counted in [`Decoded`] and
    /// the good ones kept.
    pub fn decode(
        &self,
        topic: &str,
        payload: &[u8],
        now_ns: i64,
        out: &mut Vec<Record>,
    ) -> Result<Decoded, JsonError> {
        let document: Json = serde_json::from_slice(payload).map_err(|e| JsonError::NotJson(e.to_string()))?;
        let series = self.series.name(topic).ok_or(JsonError::TopicTooShort)?;
        let samples: &[Json] = match &document {
            Json::Array(items) => items,
            Json::Object(_) => std::slice::from_ref(&document),
            _ => return Err(JsonError::NotAnObject),
        };
        if samples.len() > MAX_SAMPLES_PER_MESSAGE {
            return Err(JsonError::TooManySamples);
        }
        let mut decoded = Decoded::default();
        let start = out.len();
        for sample in samples {
            let mark = out.len();
            if let Err(error) = self.sample(&series, sample, now_ns, out) {
                out.truncate(mark);
                decoded.refused += 1;
                decoded.first_error.get_or_insert(error);
            }
            if out.len() - start > MAX_SAMPLES_PER_MESSAGE {
                out.truncate(start);
                return Err(JsonError::TooManySamples);
            }
        }
        Ok(decoded)
    }

    fn sample(&self, series: &str, sample: &Json, now_ns: i64, out: &mut Vec<Record>) -> Result<(), JsonError> {
        if !sample.is_object() {
            return Err(JsonError::NotAnObject);
        }
        let timestamp_ns = match sample.pointer(&self.time_pointer) {
            None | Some(Json::Null) => now_ns,
            Some(time) => self.time(time)?,
        };
        let quality = match sample.pointer(&self.quality_pointer) {
            None | Some(Json::Null) => Quality::GOOD,
            Some(quality) => self.quality(quality)?,
        };
        let value =
            sample.pointer(&self.value_pointer).ok_or_else(|| JsonError::NoValue(self.value_pointer.clone()))?;
        match value {
            Json::Object(members) => {
                for (member, value) in members {
                    let Some(value) = self.scalar(value)? else { continue };
                    let series = SeriesKey::new(format!("{series}/{member}"));
                    push(out, Record { series, timestamp_ns, value, quality })?;
                }
                Ok(())
            }
            value => {
                let value = self.scalar(value)?.ok_or_else(|| JsonError::NoValue(self.value_pointer.clone()))?;
                push(out, Record { series: SeriesKey::new(series), timestamp_ns, value, quality })
            }
        }
    }

    /// A scalar as a value; `None` for null, an error for arrays and objects.
    fn scalar(&self, value: &Json) -> Result<Option<Value>, JsonError> {
        let bad = |found| JsonError::BadValue { pointer: self.value_pointer.clone(), found };
        Ok(Some(match value {
            Json::Null => return Ok(None),
            Json::Bool(v) => Value::Bool(*v),
            Json::String(v) => Value::String(v.clone()),
            Json::Number(n) => match (self.value_type, n.as_i64()) {
                (ValueType::Auto, Some(v)) => Value::I64(v),
                _ => Value::F64(n.as_f64().ok_or_else(|| bad("a number out of range"))?),
            },
            Json::Array(_) => return Err(bad("an array")),
            Json::Object(_) => return Err(bad("an object")),
        }))
    }

    fn time(&self, time: &Json) -> Result<i64, JsonError> {
        let bad = |why: String| JsonError::BadTime { pointer: self.time_pointer.clone(), why };
        match time {
            Json::String(text) => text
                .parse::<jiff::Timestamp>()
                .map(|t| t.as_nanosecond())
                .map_err(|e| bad(format!("\"{}\" is not RFC 3339: {e}", cut(text))))
                .and_then(|ns| i64::try_from(ns).map_err(|_| bad("out of range".into()))),
            Json::Number(number) => {
                if let Some(integer) = number.as_i64() {
                    let unit_ns = self.unit_ns(integer);
                    integer.checked_mul(unit_ns).ok_or_else(|| bad(format!("{integer} is out of range")))
                } else {
                    let float = number.as_f64().ok_or_else(|| bad("not a number".into()))?;
                    let unit_ns = self.unit_ns(float as i64);
                    let ns = float * unit_ns as f64;
                    if ns.is_finite() && ns.abs() < 9.2e18 {
                        Ok(ns.round() as i64)
                    } else {
                        Err(bad(format!("{float} is out of range")))
                    }
                }
            }
            _ => Err(bad("expected an epoch number or an RFC 3339 string".into())),
        }
    }

    fn unit_ns(&self, magnitude: i64) -> i64 {
        match self.time_unit {
            TimeUnit::Auto => epoch_unit_ns_by_magnitude(magnitude),
            TimeUnit::Seconds => 1_000_000_000,
            TimeUnit::Milliseconds => 1_000_000,
            TimeUnit::Microseconds => 1_000,
            TimeUnit::Nanoseconds => 1,
        }
    }

    fn quality(&self, quality: &Json) -> Result<Quality, JsonError> {
        let bad = |why: String| JsonError::BadQuality { pointer: self.quality_pointer.clone(), why };
        match quality {
            Json::Number(n) => n
                .as_u64()
                .and_then(|code| u32::try_from(code).ok())
                .map(Quality)
                .ok_or_else(|| bad(format!("{n} is not a status code (0..=4294967295)"))),
            Json::String(text) => Quality::parse_text(text).map_err(|why| bad(format!("\"{}\" {why}", cut(text)))),
            _ => Err(bad("expected a status code or good, uncertain, bad".into())),
        }
    }
}

fn push(out: &mut Vec<Record>, record: Record) -> Result<(), JsonError> {
    record.validate().map_err(|e| JsonError::Invalid(e.to_string()))?;
    out.push(record);
    Ok(())
}

/// Text quoted in an error, cut to 64 bytes on a character boundary.
fn cut(text: &str) -> &str {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_NS: i64 = 1_767_225_600_000_000_000;

    fn mapping(template: &str) -> JsonMapping {
        JsonMapping {
            series: SeriesTemplate::parse(template).unwrap(),
            value_pointer: "/value".into(),
            time_pointer: "/ts".into(),
            time_unit: TimeUnit::Auto,
            quality_pointer: "/q".into(),
            value_type: ValueType::Float,
        }
    }

    fn decode(mapping: &JsonMapping, topic: &str, payload: &str) -> Result<(Vec<Record>, Decoded), JsonError> {
        let mut out = Vec::new();
        let decoded = mapping.decode(topic, payload.as_bytes(), NOW_NS, &mut out)?;
        Ok((out, decoded))
    }

    #[test]
    fn the_template_takes_topic_levels_and_the_whole_topic() {
        let template = SeriesTemplate::parse("plant1/{2}/{3}").unwrap();
        assert_eq!(template.name("site/boiler3/steam_temp").as_deref(), Some("plant1/boiler3/steam_temp"));
        assert_eq!(template.name("site/boiler3"), None);
        assert_eq!(SeriesTemplate::parse("x/{topic}").unwrap().name("a/b").as_deref(), Some("x/a/b"));
        for bad in ["{0}", "{name}", "a{", "a}", ""] {
            assert!(SeriesTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_object_is_one_sample_with_its_time_value_and_quality() {
        let (records, decoded) =
            decode(&mapping("{topic}"), "line/temp", r#"{"ts": 1767225600123, "value": 20, "q": 1073741824}"#).unwrap();
        assert_eq!(decoded.refused, 0);
        assert_eq!(records.len(), 1);
        assert_eq!(&*records[0].series.name, "line/temp");
        assert_eq!(records[0].timestamp_ns, 1_767_225_600_123_000_000);
        assert_eq!(records[0].value, Value::F64(20.0));
        assert_eq!(records[0].quality, Quality::UNCERTAIN);
    }

    #[test]
    fn value_type_auto_keeps_integers_and_text_times_and_qualities_are_read() {
        let mut mapping = mapping("{topic}");
        mapping.value_type = ValueType::Auto;
        let (records, _) =
            decode(&mapping, "t", r#"{"ts": "2026-01-01T00:00:01.5Z", "value": 20, "q": "bad"}"#).unwrap();
        assert_eq!(records[0].value, Value::I64(20));
        assert_eq!(records[0].timestamp_ns, NOW_NS + 1_500_000_000);
        assert_eq!(records[0].quality, Quality::BAD);
    }

    #[test]
    fn an_object_value_gives_one_series_per_member_and_an_array_many_samples() {
        let payload = r#"[{"ts": 1, "value": {"temp": 1.5, "run": true, "mode": "auto", "gone": null}}, {"value": 2}]"#;
        let (records, _) = decode(&mapping("m"), "t", payload).unwrap();
        let mut names: Vec<(&str, i64)> = records.iter().map(|r| (&*r.series.name, r.timestamp_ns)).collect();
        names.sort();
        assert_eq!(
            names,
            [("m", NOW_NS), ("m/mode", 1_000_000_000), ("m/run", 1_000_000_000), ("m/temp", 1_000_000_000)]
        );
    }

    #[test]
    fn bad_samples_are_counted_and_the_good_ones_kept() {
        let payload =
            r#"[{"value": 1}, {"value": [1]}, {"novalue": 1}, {"value": 2, "ts": "yesterday"}, {"value": 3, "q": -1}]"#;
        let (records, decoded) = decode(&mapping("m"), "t", payload).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(decoded.refused, 4);
        assert!(matches!(decoded.first_error, Some(JsonError::BadValue { .. })));
    }

    #[test]
    fn documents_that_cannot_be_read_are_refused_whole() {
        let mapping = mapping("a/{3}");
        assert!(matches!(decode(&mapping, "x/y/z", "{"), Err(JsonError::NotJson(_))));
        assert_eq!(decode(&mapping, "x/y/z", "42").unwrap_err(), JsonError::NotAnObject);
        assert_eq!(decode(&mapping, "x/y", r#"{"value": 1}"#).unwrap_err(), JsonError::TopicTooShort);
    }
}

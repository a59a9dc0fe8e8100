//! The NATS sink's message bodies: one JSON object per series per applied segment (split into
//! several when it would exceed `max_message_bytes`), and the message ids that make a republish a
//! server-side duplicate.
//!
//! ```json
//! {"apply_number":42,"sender":3,"epoch":1767225600,"sequence":17,
//!  "series":"plant1/boiler3/steam_temp","tags":{"unit":"C"},"kind":"f64",
//!  "points":[[1767225600000000000,431.25,0],[1767225600250000000,431.5,0]]}
//! ```
//!
//! `points` holds `[time, value, quality]` rows ascending by time, one per time: time in ns since
//! the Unix epoch (an integer above 2^53: read it as a 64-bit integer, not a double), quality the
//! OPC UA status code (0: good). `kind` says what the values are: `f64` (JSON numbers; a
//! non-finite value, which sources refuse, as the string `"NaN"`, `"inf"` or `"-inf"`), `i64`
//! (integers), `bool`, `string`, or `mixed`, where each value is an object naming its kind:
//! `{"f64":1.5}`, `{"i64":3}`, `{"bool":true}`, `{"string":"open"}`.

use std::io::Write;

use diode_common::codec::{SeriesColumns, Values};
use diode_common::record::Value;

/// What every message of one series in one applied segment says about where it comes from.
pub struct Head<'a> {
    /// The segment's place in the replica's apply log.
    pub apply_number: u64,
    /// The segment's sender, epoch and sequence.
    pub sender_id: u64,
    /// The sender's epoch.
    pub epoch: u64,
    /// The segment's sequence in its epoch.
    pub sequence: u64,
    /// The series' name.
    pub name: &'a str,
    /// The series' tags, sorted by key.
    pub tags: &'a [(String, String)],
}

/// One message body and the time range of its points.
pub struct Part {
    /// The JSON object.
    pub body: Vec<u8>,
    /// Time of its first point, ns.
    pub first_ns: i64,
    /// Time of its last point, ns.
    pub last_ns: i64,
}

/// The kind named in a body.
fn kind_of(values: &Values) -> &'static str {
    match values {
        Values::F64(_) => "f64",
        Values::I64(_) => "i64",
        Values::Bool(_) => "bool",
        Values::String(_) => "string",
        Values::Mixed(_) => "mixed",
    }
}

fn put_json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
}

fn put_f64(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        serde_json::to_writer(&mut *out, &value).expect("writing to a Vec cannot fail");
    } else if value.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if value > 0.0 {
        out.extend_from_slice(b"\"inf\"");
    } else {
        out.extend_from_slice(b"\"-inf\"");
    }
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::F64(value) => put_f64(out, *value),
        Value::I64(value) => {
            let _ = write!(out, "{value}");
        }
        Value::Bool(value) => out.extend_from_slice(if *value { b"true" } else { b"false" }),
        Value::String(value) => put_json_string(out, value),
    }
}

/// Appends point `row` as `[time,value,quality]`.
fn put_point(out: &mut Vec<u8>, columns: &SeriesColumns, row: usize) {
    let _ = write!(out, "[{},", columns.timestamps_ns[row]);
    match &columns.values {
        Values::F64(values) => put_f64(out, values[row]),
        Values::I64(values) => put_value(out, &Value::I64(values[row])),
        Values::Bool(values) => put_value(out, &Value::Bool(values[row])),
        Values::String(values) => put_json_string(out, &values[row]),
        Values::Mixed(values) => {
            let value = &values[row];
            let _ = write!(out, "{{\"{}\":", crate::sinks::postgres::kind_name(value.kind()));
            put_value(out, value);
            out.push(b'}');
        }
    }
    let _ = write!(out, ",{}]", columns.qualities[row].0);
}

/// The opening of every body of `head`'s series, up to and including `"points":[`.
fn opening(head: &Head<'_>, kind: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + head.name.len());
    let _ = write!(
        out,
        "{{\"apply_number\":{},\"sender\":{},\"epoch\":{},\"sequence\":{},\"series\":",
        head.apply_number, head.sender_id, head.epoch, head.sequence
    );
    put_json_string(&mut out, head.name);
    out.extend_from_slice(b",\"tags\":{");
    for (index, (tag, value)) in head.tags.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        put_json_string(&mut out, tag);
        out.push(b':');
        put_json_string(&mut out, value);
    }
    let _ = write!(out, "}},\"kind\":\"{kind}\",\"points\":[");
    out
}

/// The bodies of one series' points in one applied segment: one, or several of at most
/// `max_bytes` each (a single point always fits: see `MIN_NATS_MESSAGE_BYTES`), each covering a
/// run of consecutive times.
pub fn encode(head: &Head<'_>, columns: &SeriesColumns, max_bytes: usize) -> Vec<Part> {
    let opening = opening(head, kind_of(&columns.values));
    let mut parts = Vec::new();
    let mut body = opening.clone();
    let mut first_row = 0;
    let mut point = Vec::with_capacity(64);
    for row in 0..columns.timestamps_ns.len() {
        point.clear();
        put_point(&mut point, columns, row);
        let in_part = row - first_row;
        if in_part > 0 && body.len() + point.len() + 3 > max_bytes {
            body.extend_from_slice(b"]}");
            let body = std::mem::replace(&mut body, opening.clone());
            parts.push(Part {
                body,
                first_ns: columns.timestamps_ns[first_row],
                last_ns: columns.timestamps_ns[row - 1],
            });
            first_row = row;
        } else if in_part > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&point);
    }
    if let Some(&last_ns) = columns.timestamps_ns.last() {
        body.extend_from_slice(b"]}");
        parts.push(Part { body, first_ns: columns.timestamps_ns[first_row], last_ns });
    }
    parts
}

/// The `Nats-Msg-Id` of a series' message: `<sink>:<sender>:<epoch>:<sequence>:<series digest>`,
/// and when the series' points were split, `:<first ns>:<last ns>` of the part.
///
/// Republished after a failure, a message gets the same id and the server drops it as a
/// duplicate (within the stream's duplicate window). A republish can only carry fewer points of
/// the same segment (some overridden since, by segments whose own messages carry the winners), so
/// a part dropped as a duplicate never held a point the stored one lacks.
pub fn message_id(sink: &str, head: &Head<'_>, series_digest: &str, split: Option<&Part>) -> String {
    let mut id = format!("{sink}:{}:{}:{}:{series_digest}", head.sender_id, head.epoch, head.sequence);
    if let Some(part) = split {
        let _ = std::fmt::Write::write_fmt(&mut id, format_args!(":{}:{}", part.first_ns, part.last_ns));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use diode_common::record::{Quality, SeriesKey};

    fn head<'a>(tags: &'a [(String, String)]) -> Head<'a> {
        Head { apply_number: 42, sender_id: 3, epoch: 7, sequence: 17, name: "plant1/boiler3/steam_temp", tags }
    }

    #[test]
    fn a_body_is_the_documented_json() {
        let tags = vec![("unit".to_owned(), "°C".to_owned())];
        let mut columns = SeriesColumns::new(SeriesKey::new("x"));
        columns.push(1_767_225_600_000_000_000, Value::F64(431.25), Quality(0));
        columns.push(1_767_225_600_250_000_000, Value::F64(1.0), Quality(0x4000_0000));
        let parts = encode(&head(&tags), &columns, 1 << 20);
        assert_eq!(parts.len(), 1);
        let text = String::from_utf8(parts[0].body.clone()).unwrap();
        assert_eq!(
            text,
            "{\"apply_number\":42,\"sender\":3,\"epoch\":7,\"sequence\":17,\"series\":\"plant1/boiler3/steam_temp\",\
             \"tags\":{\"unit\":\"°C\"},\"kind\":\"f64\",\"points\":[[1767225600000000000,431.25,0],\
             [1767225600250000000,1.0,1073741824]]}"
        );
        let mut mixed = SeriesColumns::new(SeriesKey::new("x"));
        mixed.push(1, Value::I64(-3), Quality(0));
        mixed.push(2, Value::String("a\"b".to_owned()), Quality(0));
        mixed.push(3, Value::F64(f64::NEG_INFINITY), Quality(0));
        let text = String::from_utf8(encode(&head(&[]), &mixed, 1 << 20).remove(0).body).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["kind"], "mixed");
        assert_eq!(
            json["points"],
            serde_json::json!([[1, {"i64": -3}, 0], [2, {"string": "a\"b"}, 0], [3, {"f64": "-inf"}, 0]])
        );
    }

    #[test]
    fn many_points_are_split_into_bodies_under_the_limit_each_a_run_of_times() {
        let mut columns = SeriesColumns::new(SeriesKey::new("x"));
        for time in 0..10_000 {
            columns.push(time, Value::I64(time * 7), Quality(0));
        }
        let parts = encode(&head(&[]), &columns, 4_096);
        assert!(parts.len() > 10);
        let mut next = 0;
        for part in &parts {
            assert!(part.body.len() <= 4_096);
            let json: serde_json::Value = serde_json::from_slice(&part.body).unwrap();
            let points = json["points"].as_array().unwrap();
            assert_eq!(points[0][0], next);
            assert_eq!(part.first_ns, next);
            next = points.last().unwrap()[0].as_i64().unwrap() + 1;
            assert_eq!(part.last_ns, next - 1);
        }
        assert_eq!(next, 10_000);
        let ids: std::collections::BTreeSet<_> =
            parts.iter().map(|part| message_id("sink", &head(&[]), "d", Some(part))).collect();
        assert_eq!(ids.len(), parts.len());
        assert_eq!(message_id("sink", &head(&[]), "d", None), "sink:3:7:17:d");
    }
}

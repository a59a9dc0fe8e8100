//! Fuzzes the JSON payload mapping: any bytes on any topic, under each option, must give records
//! that pass `Record::validate` (appended after what the output held) or one error that leaves
//! the output untouched, never a panic.
//!
//! The first byte picks the options and the topic's number of levels; the rest is the payload.
#![no_main]

use diode_common::record::{Quality, Record, SeriesKey, Value};
use diode_sender::sources::json_payload::{JsonMapping, SeriesTemplate, TimeUnit, ValueType};
use libfuzzer_sys::fuzz_target;

const UNITS: [TimeUnit; 5] =
    [TimeUnit::Auto, TimeUnit::Seconds, TimeUnit::Milliseconds, TimeUnit::Microseconds, TimeUnit::Nanoseconds];
const TOPICS: [&str; 4] = ["a", "a/b", "a/b/c", "a//c/\u{7f}"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else { return };
    let mapping = JsonMapping {
        series: SeriesTemplate::parse(if selector & 0x80 != 0 { "x/{2}/{3}" } else { "{topic}" }).unwrap(),
        value_pointer: if selector & 0x40 != 0 { "/v".into() } else { "".into() },
        time_pointer: "/t".into(),
        time_unit: UNITS[usize::from(selector & 0x07) % UNITS.len()],
        quality_pointer: "/q".into(),
        value_type: if selector & 0x08 != 0 { ValueType::Auto } else { ValueType::Float },
    };
    let topic = TOPICS[usize::from(selector >> 4 & 0x03)];
    let sentinel =
        Record { series: SeriesKey::new("s"), timestamp_ns: 0, value: Value::Bool(true), quality: Quality::GOOD };
    let mut out = vec![sentinel.clone()];
    match mapping.decode(topic, payload, 1_767_225_600_000_000_000, &mut out) {
        Ok(_) => {
            assert_eq!(out[0], sentinel);
            for record in &out[1..] {
                assert_eq!(record.validate(), Ok(()), "{record:?}");
            }
        }
        Err(_) => assert_eq!(out, vec![sentinel], "a refused message leaves the output untouched"),
    }
});

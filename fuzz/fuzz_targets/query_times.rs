//! The times and durations analysts write into query parameters: the query API's
//! (`receiver/src/time.rs`: RFC 3339, epoch numbers, `now-1h`, `1h30m`) and the Prometheus API's
//! (`receiver/src/prometheus/times.rs`: Unix seconds with decimals, RFC 3339, seconds or PromQL
//! durations). Never a panic; a duration read is never negative unless written so; and every
//! time read is written back by the receiver's own formatter as text that reads as the same time.
//! The modules are compiled in from the receiver's source, so this crate stays free of RocksDB.
#![no_main]

#[allow(dead_code)]
#[path = "../../receiver/src/prometheus"]
mod prometheus {
    pub mod functions;
    pub mod parse;
    pub mod times;
}

#[allow(dead_code, unreachable_pub)]
#[path = "../../receiver/src/time.rs"]
mod time;

use libfuzzer_sys::fuzz_target;
use prometheus::times::{format_time_ms, parse_duration_ms, parse_time_ms};

/// 2026-01-01T00:00:00Z: a fixed "now", so that a failure reproduces.
const NOW_NS: i64 = 1_767_225_600_000_000_000;

fuzz_target!(|bytes: &[u8]| {
    // Any i64 formats to text that reads back as itself.
    if let Some(head) = bytes.get(..8) {
        let number = i64::from_le_bytes(head.try_into().expect("8 bytes"));
        assert_eq!(parse_time_ms(&format_time_ms(number)), Ok(number), "{number} ms");
        assert_eq!(parse_duration_ms(&format_time_ms(number)), Ok(number), "{number} ms as a duration");
        let text = time::format_rfc3339(number);
        assert_eq!(time::parse_rfc3339(&text).ok(), Some(number), "{number} ns as {text:?}");
        assert_eq!(time::parse_time(&text, NOW_NS).ok(), Some(number), "{number} ns as {text:?}");
    }
    let Ok(text) = std::str::from_utf8(bytes) else { return };

    if let Ok(ns) = time::parse_duration(text) {
        assert!(ns >= 0, "{text:?} read as {ns} ns");
    }
    match time::parse_time(text, NOW_NS) {
        Ok(ns) => assert_eq!(time::parse_time(&time::format_rfc3339(ns), NOW_NS).ok(), Some(ns), "{text:?}"),
        Err(error) => assert!(!error.with_causes().is_empty()),
    }
    if let Ok(ns) = time::parse_rfc3339(text) {
        assert_eq!(time::parse_rfc3339(&time::format_rfc3339(ns)).ok(), Some(ns), "{text:?}");
    }

    if let Ok(ms) = parse_time_ms(text) {
        assert_eq!(parse_time_ms(&format_time_ms(ms)), Ok(ms), "{text:?}");
    }
    if let Ok(ms) = parse_duration_ms(text) {
        assert!(ms >= 0 || text.trim_start().starts_with('-'), "{text:?} read as {ms} ms");
        assert_eq!(parse_duration_ms(&format_time_ms(ms)), Ok(ms), "{text:?}");
    }
});

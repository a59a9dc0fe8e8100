//! The NATS sink's series tokens (`receiver/src/sinks/nats/subject.rs`), read back from subject
//! text a consumer receives: never panic; a token that reads as a series is exactly that series'
//! full token, and that series passes the sources' checks. The module is compiled in from the
//! receiver's source, so this crate stays free of RocksDB and NATS.
#![no_main]

#[path = "../../receiver/src/sinks/nats/subject.rs"]
#[allow(dead_code, unreachable_pub)]
mod subject;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(token) = std::str::from_utf8(bytes) else { return };
    if let Some(series) = subject::parse_series_token(token) {
        assert!(series.validate().is_ok(), "{series}");
        assert_eq!(subject::full_series_token(&series), token);
    }
});

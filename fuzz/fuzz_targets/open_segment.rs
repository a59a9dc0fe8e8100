//! The segment opener on arbitrary bytes: never panics; a segment that opens under the trusted
//! key must decode to records consistent with its header. Seeds (`fuzz/seeds/open_segment/`,
//! written by `cargo run --release -p diode-common --example fuzz_seeds`) are valid segments
//! sealed with that key, so mutations get past the signature to the payload checks.
#![no_main]

use std::sync::OnceLock;

use diode_common::keys::{SenderKey, TrustedKeys};
use diode_common::seal;
use libfuzzer_sys::fuzz_target;

fn trusted() -> &'static TrustedKeys {
    static TRUSTED: OnceLock<TrustedKeys> = OnceLock::new();
    TRUSTED.get_or_init(|| TrustedKeys::single(SenderKey::from_seed([7; 32]).public_key()))
}

fuzz_target!(|bytes: &[u8]| {
    // The framing parser alone, which the replica's auditor also runs on stored bytes.
    if let Ok(segment) = seal::parse(bytes) {
        assert_eq!(segment.to_bytes(), bytes);
        let _ = seal::decode_verified(&segment);
    }
    if let Ok((segment, series)) = seal::open_records(bytes, trusted()) {
        let count: usize = series.iter().map(|s| s.len()).sum();
        assert_eq!(count, segment.header.record_count as usize);
    }
});

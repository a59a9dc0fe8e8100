//! The proof file reader and offline checker on arbitrary bytes: never panics; whatever parses
//! encodes back to the same bytes, and whatever checks under the trusted key is consistent with
//! itself. Seeds (`fuzz/seeds/open_proof/`, written by `cargo run --release -p diode-common
//! --example fuzz_seeds`) are valid proofs signed by that key, so mutations reach every check.
#![no_main]

use std::sync::OnceLock;

use diode_common::keys::{SenderKey, TrustedKeys};
use diode_common::proof::{Proof, check_proof};
use libfuzzer_sys::fuzz_target;

fn trusted() -> &'static TrustedKeys {
    static TRUSTED: OnceLock<TrustedKeys> = OnceLock::new();
    TRUSTED.get_or_init(|| TrustedKeys::single(SenderKey::from_seed([7; 32]).public_key()))
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(proof) = Proof::from_bytes(bytes) else {
        assert!(check_proof(bytes, trusted()).is_err(), "a file that does not parse cannot check");
        return;
    };
    assert_eq!(proof.to_bytes(), bytes, "a parsed proof encodes back to the same bytes");
    let Ok(checked) = check_proof(bytes, trusted()) else { return };
    assert_eq!(checked.series, proof.series);
    assert_eq!(checked.points, proof.points);
    assert_eq!(checked.segments.len(), proof.segments.len());
    assert!(!checked.points.is_empty() && !checked.chain_runs.is_empty());
    for point in &checked.points {
        assert!((point.segment_index as usize) < checked.segments.len());
    }
    for pair in checked.segments.windows(2) {
        assert!(pair[0].position < pair[1].position, "segments are strictly ascending");
    }
});

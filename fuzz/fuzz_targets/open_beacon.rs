//! The beacon opener and the unverified order peek on arbitrary bytes: never panic, and nothing
//! unsigned opens.
#![no_main]

use std::sync::OnceLock;

use diode_common::beacon::{Beacon, peek_order, peek_software};
use diode_common::keys::{SenderKey, TrustedKeys};
use libfuzzer_sys::fuzz_target;

fn trusted() -> &'static TrustedKeys {
    static TRUSTED: OnceLock<TrustedKeys> = OnceLock::new();
    TRUSTED.get_or_init(|| TrustedKeys::single(SenderKey::from_seed([7; 32]).public_key()))
}

fuzz_target!(|bytes: &[u8]| {
    // Without the secret key the fuzzer cannot sign, so nothing may ever open.
    assert!(Beacon::open(bytes, trusted()).is_err());
    // The unverified peek used to drop replays is total too.
    let _ = peek_order(bytes);
    // And so is the software field's reader that status pages use on stored beacons.
    if let Some(software) = peek_software(bytes) {
        assert!(software.bytes().all(|b| b.is_ascii_graphic() || b == b' '), "{software:?}");
    }
});

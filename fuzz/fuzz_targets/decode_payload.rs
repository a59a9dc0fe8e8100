//! Fuzzes the segment payload decoder: any bytes must give `Ok` or an error, never a panic or an
//! unbounded allocation, and whatever decodes must survive a re-encode unchanged.
#![no_main]

use diode_common::codec::{decode_payload, encode_payload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(series) = decode_payload(bytes) else { return };
    let again = decode_payload(&encode_payload(&series, 1)).expect("a re-encoded payload decodes");
    assert_eq!(again.len(), series.len(), "re-encoding changed the number of series");
    for (decoded, original) in again.iter().zip(&series) {
        assert!(decoded.bit_eq(original), "re-encoding changed a series: {original:?} became {decoded:?}");
    }
});

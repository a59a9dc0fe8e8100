//! Fuzzes the segment payload decoder: any bytes must give `Ok` or an error, never a panic or an
//! unbounded allocation, and whatever decodes must survive a re-encode unchanged. Decoded with
//! its chunks (what the replica stores), it must give the same series, and every chunk must
//! decode as its block.
//!
//! The decoder keeps the series table it decoded last on its thread and reuses its keys; each
//! input is decoded from a known state (after an empty payload, so nothing to reuse) and then
//! again straight after itself (every key reusable), and both must give the same series, so a run
//! never depends on the inputs before it and the reuse is checked against the full validation.
#![no_main]

use std::sync::OnceLock;

use diode_common::codec::{decode_columns, decode_payload, decode_payload_with_chunks, encode_payload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    static EMPTY: OnceLock<Vec<u8>> = OnceLock::new();
    decode_payload(EMPTY.get_or_init(|| encode_payload(&[], 1))).expect("an empty payload decodes");
    let fresh = decode_payload(bytes);
    let reused = decode_payload(bytes);
    let (series, reused) = match (fresh, reused) {
        (Ok(fresh), Ok(reused)) => (fresh, reused),
        (Err(fresh), Err(reused)) => {
            assert_eq!(fresh.to_string(), reused.to_string(), "the last table changed the error");
            return;
        }
        (fresh, reused) => panic!("the last table changed the outcome: {fresh:?} then {reused:?}"),
    };
    assert_eq!(reused.len(), series.len(), "the last table changed the number of series");
    for (reused, fresh) in reused.iter().zip(&series) {
        assert!(reused.bit_eq(fresh), "the last table changed a series: {fresh:?} became {reused:?}");
    }
    let with_chunks = decode_payload_with_chunks(bytes).expect("decodes with its chunks as it does without");
    assert_eq!(with_chunks.series.len(), series.len(), "chunks changed the number of series");
    for (block, (decoded, fresh)) in with_chunks.series.iter().zip(&series).enumerate() {
        assert!(decoded.bit_eq(fresh), "chunks changed a series: {fresh:?} became {decoded:?}");
        match with_chunks.chunk(block) {
            Some(chunk) => {
                let from_chunk = decode_columns(chunk, fresh.key.clone()).expect("a chunk decodes");
                assert!(from_chunk.bit_eq(fresh), "a chunk differs from its block: {fresh:?} became {from_chunk:?}");
            }
            None => assert!(fresh.is_empty(), "a block with records has no chunk"),
        }
    }
    let again = decode_payload(&encode_payload(&series, 1)).expect("a re-encoded payload decodes");
    assert_eq!(again.len(), series.len(), "re-encoding changed the number of series");
    for (decoded, original) in again.iter().zip(&series) {
        assert!(decoded.bit_eq(original), "re-encoding changed a series: {original:?} became {decoded:?}");
    }
});

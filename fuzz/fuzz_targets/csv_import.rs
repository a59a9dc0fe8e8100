//! CSV backfill on arbitrary bytes: never panics; every row read is either a record or a bad
//! row, and no record is made from nothing.
#![no_main]

use diode_sender::import::{TimestampUnit, check_csv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(summary) = check_csv(bytes, TimestampUnit::Auto) {
        assert!(summary.records <= summary.rows);
        assert!(summary.records + summary.bad_rows >= summary.rows);
    }
});

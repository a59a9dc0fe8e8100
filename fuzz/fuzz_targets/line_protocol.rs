//! Fuzzes the line protocol parser: any text, under every precision and quality option, must give
//! records that pass `Record::validate` or one error that names a real line and leaves the output
//! untouched, never a panic.
//!
//! The first byte chooses the options; the rest is the body, used only when it is valid UTF-8 (the
//! HTTP layer refuses other bodies with 400 before parsing).
#![no_main]

use diode_sender::line_protocol::{ParseOptions, Precision, parse_lines};
use libfuzzer_sys::fuzz_target;

const PRECISIONS: [Precision; 6] = [
    Precision::Nanoseconds,
    Precision::Microseconds,
    Precision::Milliseconds,
    Precision::Seconds,
    Precision::Minutes,
    Precision::Hours,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let Ok(body) = std::str::from_utf8(body) else {
        return;
    };
    let mut options = ParseOptions::new(1_700_000_000_123_456_789);
    options.precision = PRECISIONS[usize::from(selector) % PRECISIONS.len()];
    if selector & 0x10 != 0 {
        options.quality_tag = Some("q".to_owned());
    }
    if selector & 0x20 != 0 {
        options.quality_field = Some("quality".to_owned());
    }
    if selector & 0x40 != 0 {
        options.now_ns = -options.now_ns;
    }
    let mut out = Vec::new();
    match parse_lines(body, &options, &mut out) {
        Ok(count) => {
            assert_eq!(count, out.len());
            for record in &out {
                assert_eq!(record.validate(), Ok(()), "{record:?}");
            }
        }
        Err(error) => {
            assert!(out.is_empty(), "a refused body must leave the output untouched");
            let lines = body.split('\n').count();
            assert!((1..=lines).contains(&error.line_number), "line {} of {lines}", error.line_number);
            assert!(error.message.starts_with("unable to parse '"), "{error}");
        }
    }
});

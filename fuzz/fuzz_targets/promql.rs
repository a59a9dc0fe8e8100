//! PromQL of the receiver's Prometheus API on arbitrary text: never panics, and whatever it reads
//! has a type.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The parser and the function names it knows, from the receiver's own source files.
#[allow(dead_code)]
#[path = "../../receiver/src/prometheus"]
mod prometheus {
    pub mod functions;
    pub mod parse;
}

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Ok(expr) = prometheus::parse::parse(text) {
            let _ = expr.value_type();
        }
    }
});

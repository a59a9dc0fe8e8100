//! Structured logs through `tracing`: human-readable by default, JSON on request; the level comes
//! from `RUST_LOG` (default `info`). Logs go to standard error, so standard output stays for a
//! command's own answer.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. A second call (tests) is harmless and changes nothing.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

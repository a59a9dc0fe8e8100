//! Each sink's live figures, shared by its thread, the counters and the HTTP routes. A leaf
//! module, so the counters can hold them without importing the sinks.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64};

/// Live figures of one sink, for `/metrics` and `/api/v1/status`.
#[derive(Debug)]
pub struct SinkStats {
    /// The sink's `name` from its configuration.
    pub name: String,
    /// `postgres`, `parquet` or `nats`.
    pub kind: &'static str,
    /// The durable cursor: every segment up to this apply number is in the target.
    pub cursor: AtomicU64,
    /// Points written to the target since the receiver started.
    pub points_exported: AtomicU64,
    /// Applied segments written to the target since the receiver started.
    pub segments_exported: AtomicU64,
    /// Failed steps (each retried).
    pub errors: AtomicU64,
    /// 1 while the sink is connected and following, 0 while it waits to retry.
    pub up: AtomicBool,
    /// The latest failure's message, kept until the next success clears it.
    pub last_error: Mutex<Option<String>>,
}

impl SinkStats {
    /// A sink's figures before it has started: everything 0, down, no error.
    pub(crate) fn new(name: &str, kind: &'static str) -> SinkStats {
        SinkStats {
            name: name.to_owned(),
            kind,
            cursor: AtomicU64::new(0),
            points_exported: AtomicU64::new(0),
            segments_exported: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            up: AtomicBool::new(false),
            last_error: Mutex::new(None),
        }
    }
}

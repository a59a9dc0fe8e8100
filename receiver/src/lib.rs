//! diode-receiver: the IT appliance. Rebuilds segments from one-way datagrams, verifies them and
//! applies them exactly once to a RocksDB replica that analysts query and auditors verify.
//!
//! Map: `config` (TOML), `run` (starts the receive and apply threads and the HTTP listener),
//! `state` (what they share), `counters` (metrics), `http` (metrics and API), `status` (status and
//! gap reports), `sinks` (PostgreSQL and Parquet fed from the replica), `query`, `prometheus`
//! (the Prometheus-compatible API over `query`'s scans), `audit`, `time`, `replicate` (further
//! replicas over QUIC, IT side only). The replica itself (the RocksDB layout) is the
//! `diode-replica` crate.
#![forbid(unsafe_code)]

/// This build of diode-receiver: its version and the git commit it was built from, as `--version`
/// prints it and as `status` and the metrics show it beside each sender's.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("DIODE_GIT_COMMIT"), ")");

pub mod audit;
pub mod config;
pub mod config_error;
pub mod counters;
pub mod http;
pub mod locks;
pub mod logging;
pub mod prometheus;
pub mod query;
pub mod replicate;
pub mod run;
pub mod sinks;
pub mod state;
pub mod status;
pub mod time;

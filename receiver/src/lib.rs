//! diode-receiver: the IT appliance. Rebuilds segments from one-way datagrams, verifies them and
//! applies them exactly once to a RocksDB replica that analysts query and auditors verify.
//!
//! Map: `config` (TOML), `run` (starts the receive and apply threads and the HTTP listener),
//! `state` (what they share), `counters` (metrics), `http` (metrics and API), `status` (status and
//! gap reports), `sinks` (PostgreSQL and Parquet fed from the replica), `query`, `audit`, `time`. The replica itself (the RocksDB layout) is the
//! `diode-replica` crate.
#![forbid(unsafe_code)]

pub mod audit;
pub mod config;
pub mod counters;
pub mod http;
pub mod locks;
pub mod logging;
pub mod query;
pub mod run;
pub mod sinks;
pub mod state;
pub mod status;
pub mod time;

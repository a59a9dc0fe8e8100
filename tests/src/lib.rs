//! The loopback lab shared by the end-to-end tests (`tests/tests/`), the demo and the harness
//! (`benches/`): real diode-sender and diode-receiver processes, a seeded lossy relay between
//! them, and an exact comparison of the replica with the records the simulator produced.
#![forbid(unsafe_code)]

pub mod lab;
pub mod ports;
pub mod relay;
pub mod replicas;

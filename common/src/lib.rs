//! diode's protocol core, free of IO: everything that crosses the diode is defined here.
//!
//! The sender and receiver crates add sockets, files, RocksDB and clocks around these pure
//! functions and state machines, so loss, reordering, duplication and forgery can be tested
//! deterministically, with seeds, in milliseconds.
#![forbid(unsafe_code)]

pub mod beacon;
pub mod codec;
pub mod fec;
pub mod gaps;
pub mod keys;
pub mod packet;
pub mod plant;
pub mod proof;
pub mod reassembly;
pub mod record;
pub mod rng;
pub mod seal;

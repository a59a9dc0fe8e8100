//! One policy for poisoned locks, shared with the sender: take the guard back and go on
//! (`diode_host::sync` says why). Nothing the receiver guards can be left half changed by a
//! panicking holder: the replica's stored state changes only through atomic RocksDB write batches,
//! its in-memory state only after such a batch is written, and the counters behind a mutex are
//! plain tallies. Every lock in the receiver is taken through these.

pub use diode_host::sync::{lock, read, write};

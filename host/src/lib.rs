//! diode-host: what both appliances need from the machine they run on, written once.
//!
//! `common` is the protocol and never touches the host; `sender` and `receiver` are the
//! appliances. What sits between (the wall clock, logging set-up, SIGTERM, reading secret key
//! files, and what to do with a lock whose holder panicked) lives here, so the two appliances
//! cannot drift apart on it.

pub mod clock;
pub mod keyfile;
pub mod logging;
pub mod signals;
pub mod sync;

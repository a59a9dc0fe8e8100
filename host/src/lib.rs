//! diode-host: what both appliances need from the machine they run on, written once.
//!
//! `common` is the protocol and never touches the host; `sender` and `receiver` are the
//! appliances. What sits between (the wall clock, logging set-up, SIGTERM, reading secret key
//! files, what to do with a lock whose holder panicked, and serving HTTP and accepting connections
//! so that slow or hostile clients cannot stop an appliance) lives here, so the two appliances
//! cannot drift apart on it.

pub mod backoff;
pub mod clock;
pub mod exposition;
pub mod fd_limit;
pub mod generated;
pub mod http_server;
pub mod keyfile;
pub mod logging;
pub mod process;
pub mod signals;
pub mod sync;

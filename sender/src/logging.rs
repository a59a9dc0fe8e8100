//! Structured logs, set up the same way on both appliances (`diode_host::logging`).

pub use diode_host::logging::init;

//! Wall-clock time as nanoseconds since the Unix epoch, the unit of every timestamp in diode (one
//! clock for both appliances: `diode_host::clock`).

pub use diode_host::clock::now_ns;

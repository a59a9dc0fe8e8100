//! Queries over the replica for IT analysts: raw ranges, aggregates over windows, interpolation,
//! latest values; as CLI commands and HTTP routes.

pub mod cli;
pub mod http;

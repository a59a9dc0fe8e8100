//! The pure core of queries: points and series info in, rows out.
//!
//! Aggregation over windows ([`aggregate`]), interpolation at instants ([`interpolate`], reading
//! one point ahead through [`lookahead`]) and picking series by name or glob ([`select`], matching
//! with [`glob`]) need nothing but [`Point`](diode_replica::Point)s, blocks of columns and
//! [`SeriesInfo`](diode_replica::SeriesInfo): these modules import no RocksDB, axum or tokio type,
//! take their points from any iterator and hand their rows to whoever asked. Where the points come
//! from is [`super::source`]; running a request over them is [`super::engine`].

pub mod aggregate;
pub mod glob;
pub mod interpolate;
mod lookahead;
pub mod select;

//! The pure core of queries: points and series info in, rows out.
//!
//! Aggregation over windows ([`aggregate`], with the spans each point governs summed by
//! `weighted`), values at instants ([`interpolate`]), raw reads with bounding values
//! ([`bounds`]) and plot reads ([`plot`]), each reading one point ahead through [`lookahead`],
//! and picking series by name or glob ([`select`], matching
//! with [`glob`]) need nothing but [`Point`](diode_replica::Point)s, blocks of columns and
//! [`SeriesInfo`](diode_replica::SeriesInfo): these modules import no RocksDB, axum or tokio type,
//! take their points from any iterator and hand their rows to whoever asked. Where the points come
//! from is [`super::source`]; running a request over them is [`super::engine`].

pub mod aggregate;
pub mod bounds;
pub mod glob;
pub mod interpolate;
mod lookahead;
pub mod plot;
#[cfg(test)]
mod points_for_tests;
pub mod select;
mod weighted;

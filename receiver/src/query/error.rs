//! Why a query was refused or failed.

use diode_replica::ReplicaError;

use super::core::select::NoSeries;

/// Why a query was refused or failed. Messages name the input and say what to write instead.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// An unknown series or a glob matching nothing.
    #[error(transparent)]
    NotFound(#[from] NoSeries),
    /// A bad parameter: the message is complete.
    #[error("{0}")]
    Invalid(String),
    /// Reading the replica failed (damage, I/O); the message says what to do.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// Writing the answer failed (the HTTP client went away, or standard output failed).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// The query ran past its deadline (HTTP: `http.query_timeout_ms`).
    #[error(
        "the query ran longer than http.query_timeout_ms ({timeout_ms} ms) and was stopped; ask for a shorter range, \
         fewer series or longer windows, or page with a smaller limit"
    )]
    TimedOut {
        /// The deadline it ran past, in ms.
        timeout_ms: u128,
    },
}

//! Wall-clock time as nanoseconds since the Unix epoch, the unit of every timestamp in diode.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in ns since the Unix epoch (UTC). A clock before 1970 reads as 0; one past 2262 as
/// `i64::MAX`.
pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

//! Wall-clock time as nanoseconds since the Unix epoch, the unit of every timestamp in diode, and
//! the calling thread's CPU time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in ns since the Unix epoch (UTC). A clock before 1970 reads as 0; one past 2262 as
/// `i64::MAX`.
pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

/// CPU time the calling thread has run, in ns (Linux `/proc/thread-self/schedstat`); `None`
/// where that is not available. About a microsecond to read: for accounting a batch's work, not a
/// record's.
pub fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threads_cpu_time_grows_with_its_work() {
        let Some(before) = thread_cpu_ns() else { return };
        // The kernel updates the figure at its scheduler ticks, so a short burst of work on a
        // fast machine can end before the next one: work in rounds until it grows, at most 50.
        let mut x = 1u64;
        let grew = (0..50).any(|_| {
            for i in 0..20_000_000u64 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i);
            }
            std::hint::black_box(x);
            thread_cpu_ns().expect("read before") > before
        });
        assert!(grew, "the thread's CPU time did not grow over 50 rounds of work");
    }
}

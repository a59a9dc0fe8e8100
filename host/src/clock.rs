//! Wall-clock time as nanoseconds since the Unix epoch, the unit of every timestamp in diode, and
//! the calling thread's CPU time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in ns since the Unix epoch (UTC). A clock before 1970 reads as 0; one past 2262 as
/// `i64::MAX`.
pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

/// CPU time the calling thread has run, in ns (Linux `CLOCK_THREAD_CPUTIME_ID`: a system call,
/// about 0.5 µs here). Reading `/proc/thread-self/schedstat` instead, as this once did, opened a
/// file each time (about 6.2 µs): 7 % of the plant simulator's thread in a profile of it running
/// live, two reads every 10 ms. `None` is kept for a clock that cannot be read, which Linux does
/// not have.
pub fn thread_cpu_ns() -> Option<u64> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let seconds = u64::try_from(now.tv_sec).ok()?;
    let nanoseconds = u64::try_from(now.tv_nsec).ok()?;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanoseconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threads_cpu_time_grows_with_its_work() {
        let Some(before) = thread_cpu_ns() else { return };
        // Work in rounds until it grows, at most 50 (a clock that only moved at scheduler ticks
        // could miss one short burst of work on a fast machine).
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

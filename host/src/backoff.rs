//! What a listener does when accepting or receiving fails (out of descriptors, out of memory): it
//! logs, at most once per interval, waits a little longer each time, and carries on. A listener
//! that returned on its first error would stay deaf until the appliance restarts.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;

/// The first wait after an error.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest wait: errors that persist are retried once a second.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A warning repeated more often than this is counted, not logged.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Waits of 10 ms, doubling up to 1 s, until [`reset`](Self::reset) (after a success).
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST_BACKOFF }
    }
}

impl Backoff {
    /// The wait to take now; the one after it is twice as long, at most [`MAX_BACKOFF`].
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        wait
    }

    /// After a success: the next error waits [`FIRST_BACKOFF`] again.
    pub fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }
}

/// A warning logged at most once per [`WARNING_INTERVAL`], with the number of repeats left out.
#[derive(Debug, Default)]
pub struct RateLimitedWarning {
    /// When it was last logged, and how many times it was left out since.
    state: Mutex<Option<(Instant, u64)>>,
}

impl RateLimitedWarning {
    /// Logs `message` at warn level unless it was logged less than [`WARNING_INTERVAL`] ago.
    pub fn warn(&self, message: impl FnOnce() -> String) {
        let mut state = lock(&self.state);
        let now = Instant::now();
        match &mut *state {
            Some((at, suppressed)) if now.duration_since(*at) < WARNING_INTERVAL => *suppressed += 1,
            Some((at, suppressed)) => {
                tracing::warn!(repeats_not_logged = *suppressed, "{}", message());
                (*at, *suppressed) = (now, 0);
            }
            None => {
                tracing::warn!("{}", message());
                *state = Some((now, 0));
            }
        }
    }
}

/// Whether an accept failed because the process or the system ran out of file descriptors.
pub fn out_of_descriptors(error: &std::io::Error) -> bool {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    matches!(error.raw_os_error(), Some(EMFILE | ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_ten_milliseconds_to_one_second_and_reset_after_a_success() {
        let mut backoff = Backoff::default();
        let waits: Vec<u128> = (0..9).map(|_| backoff.next_wait().as_millis()).collect();
        assert_eq!(waits, vec![10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next_wait(), FIRST_BACKOFF);
    }

    #[test]
    fn emfile_and_enfile_are_out_of_descriptors() {
        assert!(out_of_descriptors(&std::io::Error::from_raw_os_error(24)));
        assert!(out_of_descriptors(&std::io::Error::from_raw_os_error(23)));
        assert!(!out_of_descriptors(&std::io::Error::from_raw_os_error(104)));
    }
}

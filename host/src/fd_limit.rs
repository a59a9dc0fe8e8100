//! File descriptors for the connection caps.
//!
//! Every listener with a connection cap reserves that many descriptors; the process's soft
//! `RLIMIT_NOFILE` is raised (never above the hard limit) to the sum plus [`BASE_DESCRIPTORS`] for
//! everything else (RocksDB's files, bounded by the replica, the spool and segment logs, sockets,
//! logs). systemd starts services with a soft limit of 1,024 and a much higher hard limit, which
//! 1,024 HTTP connections alone would exhaust. When the hard limit is too low, a warning says
//! which settings to change; the caps still hold, and a listener that runs out of descriptors
//! closes idle connections and backs off rather than failing (see [`crate::http_server`]).

use std::sync::Mutex;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::sync::lock;

/// Descriptors kept for everything but connections: RocksDB's open files (at most 512, see
/// `diode-replica`), the sender's logs, sockets, the runtime and log files.
pub const BASE_DESCRIPTORS: u64 = 1_024;

/// Descriptors reserved so far by connection caps.
static RESERVED: Mutex<u64> = Mutex::new(0);

/// Reserves `descriptors` for a listener's connections, raising the soft open-file limit to cover
/// every reservation plus [`BASE_DESCRIPTORS`] where the hard limit allows. `setting` names what
/// to lower in the warning when it does not. Returns the soft limit now in force.
pub fn reserve(descriptors: usize, setting: &str) -> u64 {
    let wanted = {
        let mut reserved = lock(&RESERVED);
        *reserved = reserved.saturating_add(descriptors as u64);
        reserved.saturating_add(BASE_DESCRIPTORS)
    };
    raise_soft_limit(wanted, setting)
}

fn raise_soft_limit(wanted: u64, setting: &str) -> u64 {
    let limit = getrlimit(Resource::Nofile);
    // `None` is RLIM_INFINITY.
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= wanted {
        return current;
    }
    let maximum = limit.maximum.unwrap_or(u64::MAX);
    let target = wanted.min(maximum);
    let now = if target > current {
        match setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: limit.maximum }) {
            Ok(()) => {
                tracing::info!(
                    from = current,
                    to = target,
                    "raised the open-file limit (RLIMIT_NOFILE) for the connection caps"
                );
                target
            }
            Err(error) => {
                tracing::warn!("cannot raise the open-file limit from {current} to {target}: {error}");
                current
            }
        }
    } else {
        current
    };
    if now < wanted {
        tracing::warn!(
            "the open-file limit is {now} (hard limit {maximum}) but the connection caps need {wanted}; raise \
             LimitNOFILE in the service unit or lower {setting}: until then a listener out of descriptors backs off \
             and retries (an HTTP listener closes its longest idle connection first)"
        );
    }
    now
}

/// The soft open-file limit in force (`u64::MAX` when unlimited).
pub fn soft_limit() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_leaves_the_soft_limit_at_least_as_high_as_before() {
        let before = soft_limit();
        let after = reserve(16, "a test setting");
        assert!(after >= before.min(getrlimit(Resource::Nofile).maximum.unwrap_or(u64::MAX)));
        assert_eq!(after, soft_limit());
    }
}

//! One policy for poisoned locks, for both appliances.
//!
//! A lock is poisoned when a thread panicked while holding it. diode's shared state is changed
//! only in steps that leave it whole (a RocksDB batch is written atomically before the in-memory
//! state follows it; the spool's counters move only after a durable append), so what a panicking
//! holder leaves behind is still consistent, and an appliance on a security boundary must keep
//! serving rather than answer 500 for ever. So a poisoned lock is taken as it is, with a warning.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

fn recovered<G>(poisoned: PoisonError<G>, what: &str) -> G {
    tracing::warn!(lock = what, "a thread panicked while holding this lock; carrying on with its state");
    poisoned.into_inner()
}

/// Locks `mutex`, recovering it if poisoned. `what` names it in the warning.
pub fn lock<'a, T>(mutex: &'a Mutex<T>, what: &str) -> MutexGuard<'a, T> {
    mutex.lock().unwrap_or_else(|poisoned| recovered(poisoned, what))
}

/// Takes `lock` for reading, recovering it if poisoned. `what` names it in the warning.
pub fn read<'a, T>(lock: &'a RwLock<T>, what: &str) -> RwLockReadGuard<'a, T> {
    lock.read().unwrap_or_else(|poisoned| recovered(poisoned, what))
}

/// Takes `lock` for writing, recovering it if poisoned. `what` names it in the warning.
pub fn write<'a, T>(lock: &'a RwLock<T>, what: &str) -> RwLockWriteGuard<'a, T> {
    lock.write().unwrap_or_else(|poisoned| recovered(poisoned, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_poisoned_by_a_panic_is_still_usable() {
        let shared = std::sync::Arc::new(Mutex::new(41));
        let clone = std::sync::Arc::clone(&shared);
        let _ = std::thread::spawn(move || {
            let mut guard = clone.lock().unwrap();
            *guard += 1;
            panic!("a bug while holding the lock");
        })
        .join();
        assert!(shared.is_poisoned());
        assert_eq!(*lock(&shared, "test"), 42);
    }
}

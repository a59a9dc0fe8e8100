//! One policy for poisoned locks, for both appliances.
//!
//! A lock is poisoned when a thread panicked while holding it. diode's shared state is changed
//! only in steps that leave it whole (a RocksDB batch is written atomically before the in-memory
//! state follows it; the spool's counters move only after a durable append), so what a panicking
//! holder leaves behind is still consistent, and an appliance on a security boundary must keep
//! serving rather than answer 500 for ever. So a poisoned lock is taken as it is.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Shared access to `lock`, poisoned or not.
pub fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Exclusive access to `lock`, poisoned or not.
pub fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// The guard of `mutex`, poisoned or not.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
        assert_eq!(*lock(&shared), 42);
    }
}

//! One policy for poisoned locks: take the guard back and go on.
//!
//! A lock is poisoned when a thread panicked while holding it. Nothing the receiver guards can be
//! left half changed by that: the replica's stored state changes only through atomic RocksDB write
//! batches, its in-memory state only after such a batch is written, and the counters behind a
//! mutex are plain tallies. The appliance must keep serving status, metrics and queries whatever
//! one thread did, so every lock in the receiver is taken through these helpers, which recover the
//! guard from a poisoned lock instead of panicking in turn.

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

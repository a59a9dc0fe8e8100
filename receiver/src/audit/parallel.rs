//! How the audit spreads work over its threads: batches handed out one at a time to whichever
//! thread is free (series and segments differ in size, so fixed halves leave a core idle), with
//! the results put back in batch order, so that the report does not depend on the scheduling.
//!
//! The threads are a pool kept for the life of the process, not threads started for each batch
//! of work: what one window decodes is freed while the next is decoded, and a freed block returns
//! cheaply to a thread that still runs (its allocator heap reuses the memory), where a thread that
//! has ended leaves its pages to be reclaimed one free at a time and fresh ones faulted in.

use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;

/// The pools built so far, by their number of threads.
type Pools = Mutex<Vec<(usize, Arc<rayon::ThreadPool>)>>;

/// The pool of `threads` workers, built the first time it is asked for and kept.
fn pool(threads: usize) -> Arc<rayon::ThreadPool> {
    static POOLS: OnceLock<Pools> = OnceLock::new();
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, pool)) = pools.iter().find(|(count, _)| *count == threads) {
        return Arc::clone(pool);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|index| format!("audit-{index}"))
        .build()
        .expect("the audit's worker threads start");
    let pool = Arc::new(pool);
    pools.push((threads, Arc::clone(&pool)));
    pool
}

/// `work` over `items` cut in batches of `batch` items, on `threads` threads, each taking the next
/// batch as it finishes one; the results in batch order.
pub(super) fn in_batches<T: Sync, R: Send>(
    items: &[T],
    batch: usize,
    threads: usize,
    work: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let batches: Vec<&[T]> = items.chunks(batch.max(1)).collect();
    // One pool per configured count, whatever the number of batches: a pool per smaller count
    // would keep idle threads for the life of the process.
    if threads <= 1 || batches.len() <= 1 {
        return batches.into_iter().map(work).collect();
    }
    // One batch per task (`with_max_len(1)`): a free thread takes the next, and `collect` on an
    // indexed iterator keeps batch order.
    pool(threads).install(|| batches.par_iter().with_max_len(1).map(|items| work(items)).collect())
}

/// Drops `items` on `threads` of the pool's threads and returns when all are freed: a window's
/// decoded segments are millions of small blocks, and freeing them on the calling thread alone
/// left the other cores idle between windows (a sixth of the audit's wall time on two threads).
pub(super) fn drop_all<T: Send>(items: Vec<T>, threads: usize) {
    if threads <= 1 || items.len() <= 1 {
        drop(items);
        return;
    }
    pool(threads).install(|| items.into_par_iter().with_max_len(1).for_each(drop));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_batch_order_on_any_number_of_threads() {
        let items: Vec<u32> = (0..1_000).collect();
        for threads in [1, 2, 3, 8] {
            let sums = in_batches(&items, 7, threads, |batch| batch.iter().sum::<u32>());
            let expected: Vec<u32> = items.chunks(7).map(|batch| batch.iter().sum()).collect();
            assert_eq!(sums, expected);
        }
        assert!(in_batches(&[] as &[u32], 4, 2, |batch| batch.len()).is_empty());
    }

    #[test]
    fn a_pool_is_built_once_per_thread_count() {
        assert!(Arc::ptr_eq(&pool(3), &pool(3)));
        assert!(!Arc::ptr_eq(&pool(3), &pool(2)));
        assert_eq!(pool(3).current_num_threads(), 3);
    }
}

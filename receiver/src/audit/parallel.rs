//! How the audit spreads work over its threads: batches handed out one at a time to whichever
//! thread is free (series and segments differ in size, so fixed halves leave a core idle), with
//! the results put back in batch order, so that the report does not depend on the scheduling.

use std::sync::atomic::{AtomicUsize, Ordering};

/// `work` over `items` cut in batches of `batch` items, on `threads` threads, each taking the next
/// batch as it finishes one; the results in batch order.
pub(super) fn in_batches<T: Sync, R: Send>(
    items: &[T],
    batch: usize,
    threads: usize,
    work: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let batches: Vec<&[T]> = items.chunks(batch.max(1)).collect();
    let threads = threads.clamp(1, batches.len().max(1));
    if threads == 1 {
        return batches.into_iter().map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let (batches, next, work) = (&batches, &next, &work);
    let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None).take(batches.len()).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&items) = batches.get(index) else { break };
                        done.push((index, work(items)));
                    }
                    done
                })
            })
            .collect();
        for worker in workers {
            for (index, result) in worker.join().expect("an audit worker panicked") {
                results[index] = Some(result);
            }
        }
    });
    results.into_iter().map(|result| result.expect("every batch is done once")).collect()
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
}

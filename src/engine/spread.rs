//! Running one piece of work per stem on several threads. The stems' graphs are independent
//! within an iteration (and their priors load and calibrate independently), so they can run side
//! by side; results come back in stem order, so every sum over stems is taken in the same order
//! and the output does not depend on the thread count.

/// Runs `work` on every item, spread over at most `threads` threads (contiguous runs of items,
/// the first on the calling thread), and returns the results in item order, or the first error
/// in item order.
pub fn spread<T, R, E>(
    threads: usize,
    items: Vec<T>,
    work: &(impl Fn(T) -> Result<R, E> + Sync),
) -> Result<Vec<R>, E>
where
    T: Send,
    R: Send,
    E: Send,
{
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.into_iter().map(work).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let mut runs: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut items = items.into_iter();
    loop {
        let run: Vec<T> = items.by_ref().take(per_thread).collect();
        if run.is_empty() {
            break;
        }
        runs.push(run);
    }
    let mut runs = runs.into_iter();
    let first = runs.next().unwrap_or_default();
    let results: Vec<Result<Vec<R>, E>> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .map(|run| scope.spawn(move || run.into_iter().map(work).collect::<Result<Vec<R>, E>>()))
            .collect();
        let mut results = vec![first.into_iter().map(work).collect()];
        for handle in handles {
            // A panic in a stem's work is the caller's panic, as it would be on one thread.
            results.push(
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        results
    });
    let mut all = Vec::new();
    for run in results {
        all.extend(run?);
    }
    Ok(all)
}

/// Threads worth using on this machine: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_item_order_for_any_thread_count() {
        for threads in 1..=6 {
            for n in 0..7usize {
                let items: Vec<usize> = (0..n).collect();
                let out: Vec<usize> = spread(threads, items, &|i| Ok::<_, ()>(i * 10)).unwrap();
                assert_eq!(
                    out,
                    (0..n).map(|i| i * 10).collect::<Vec<_>>(),
                    "{threads} threads, {n} items"
                );
            }
        }
    }

    #[test]
    fn the_first_error_in_item_order_is_returned() {
        let out = spread(3, (0..6).collect(), &|i: i32| {
            if i % 2 == 1 {
                Err(i)
            } else {
                Ok(i)
            }
        });
        assert_eq!(out, Err(1));
    }

    #[test]
    fn items_may_be_mutable_borrows_of_separate_buffers() {
        let mut buffers = vec![vec![0u32; 4]; 5];
        let items: Vec<(usize, &mut Vec<u32>)> = buffers.iter_mut().enumerate().collect();
        spread(2, items, &|(i, b): (usize, &mut Vec<u32>)| {
            b.fill(i as u32);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert!(buffers
            .iter()
            .enumerate()
            .all(|(i, b)| b.iter().all(|&v| v == i as u32)));
    }
}

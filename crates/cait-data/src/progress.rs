//! Progress reporting (the CLI shows bars) and the worker pool that ticks it.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Receives progress (the CLI shows bars); called from worker threads.
pub trait Progress: Sync {
    /// A phase of `total` steps begins.
    fn begin(&self, _phase: &str, _total: u64) {}
    /// One step done.
    fn tick(&self) {}
    /// The phase is over.
    fn end(&self) {}
}

/// No progress output.
pub struct Silent;

impl Progress for Silent {}

/// Runs `work(state, i)` for every `i < n` on `threads` workers, each with its own `init()` state,
/// ticking `progress` once per item; returns the states (merge them in any order). The first
/// error stops the other workers early; a worker's panic is resumed on the caller's thread.
pub fn parallel<S: Send, E: Send>(
    n: usize,
    threads: usize,
    progress: &dyn Progress,
    init: impl Fn() -> Result<S, E> + Sync,
    work: impl Fn(&mut S, usize) -> Result<(), E> + Sync,
) -> Result<Vec<S>, E> {
    let next = AtomicUsize::new(0);
    let threads = threads.clamp(1, n.max(1));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut state = init()?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(state);
                        }
                        if let Err(e) = work(&mut state, i) {
                            next.store(n, Ordering::Relaxed);
                            return Err(e);
                        }
                        progress.tick();
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Threads for parallel work: what the machine offers.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

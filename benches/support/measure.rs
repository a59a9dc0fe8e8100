//! Timing for the plain (`harness = false`) benches of every crate, which include this file by
//! path so that they all print figures the same way: wall time and on-CPU time (on a shared
//! machine the second says more), best of a few runs.

// Each bench uses part of this.
#![allow(dead_code)]

use std::hint::black_box;
use std::time::Instant;

/// Runs per figure; the best is reported.
pub(crate) const RUNS: usize = 3;

/// On-CPU seconds of this thread (Linux `CLOCK_THREAD_CPUTIME_ID`, nanoseconds). `None`
/// elsewhere.
pub(crate) fn thread_cpu_seconds() -> Option<f64> {
    Some(diode_host::clock::thread_cpu_ns()? as f64 / 1e9)
}

/// On-CPU seconds of the whole process, all threads (Linux `/proc/self/stat`, 10 ms ticks).
/// `None` elsewhere.
pub(crate) fn process_cpu_seconds() -> Option<f64> {
    Some(diode_host::process::stat(std::process::id())?.cpu_seconds)
}

/// Wall and on-CPU seconds of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Elapsed wall-clock seconds.
    pub(crate) wall: f64,
    /// On-CPU seconds from the bench's chosen clock; `None` where that clock is unavailable.
    pub(crate) cpu: Option<f64>,
}

impl Timing {
    /// `items` per second, wall and per CPU-second (left out when the CPU clock did not move).
    pub(crate) fn describe(self, items: f64, unit: &str) -> String {
        let rate = |seconds: f64| items / seconds / 1e6;
        match self.cpu.filter(|&cpu| cpu > 0.0) {
            Some(cpu) => format!(
                "{:.2} M {unit}/s wall ({:.2} s), {:.2} M {unit}/s per CPU-second ({cpu:.2} s on-CPU)",
                rate(self.wall),
                self.wall,
                rate(cpu)
            ),
            None => format!("{:.2} M {unit}/s ({:.2} s)", rate(self.wall), self.wall),
        }
    }
}

/// Best of [`RUNS`] runs by wall time (the on-CPU time is the best too), with the last run's
/// result. `cpu` measures this thread or the whole process; `prepare` runs before each timed run,
/// untimed.
pub(crate) fn best_of<S, T>(
    cpu: fn() -> Option<f64>,
    mut prepare: impl FnMut() -> S,
    mut run: impl FnMut(S) -> T,
) -> (Timing, T) {
    let mut best = Timing { wall: f64::INFINITY, cpu: None };
    let mut result = None;
    for _ in 0..RUNS {
        let state = prepare();
        let (started, cpu_started) = (Instant::now(), cpu());
        let value = black_box(run(state));
        let wall = started.elapsed().as_secs_f64();
        let spent = cpu().zip(cpu_started).map(|(end, start)| end - start);
        best.wall = best.wall.min(wall);
        best.cpu = match (best.cpu, spent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        result = Some(value);
    }
    (best, result.expect("at least one run"))
}

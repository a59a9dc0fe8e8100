//! What Linux says about a process and its threads (`/proc/<pid>/stat`, `/proc/<pid>/task`): the
//! figures of Prometheus's standard `process_*` metrics, which both appliances export, and the
//! CPU time of each of their threads, which says which stage of an appliance is the busy one.
//! Elsewhere than Linux every reading is `None` (or empty) and nothing is exported.

use std::fmt::Write as _;

use crate::exposition::label_value;

/// Linux's `USER_HZ`: the clock ticks per second in which `/proc/<pid>/stat` counts CPU time.
/// Fixed at 100 in the kernel's ABI on every architecture diode runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// The fields of `/proc/<pid>/stat` (or `/proc/<pid>/task/<tid>/stat`) that the metrics use.
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    /// The command or thread name (`comm`), at most 15 bytes.
    pub name: String,
    /// The parent's process id.
    pub parent: u32,
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Threads in the process.
    pub threads: u64,
    /// When the process started, in clock ticks since the machine booted.
    pub start_ticks: u64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: u64,
    /// Resident set size, in pages.
    pub resident_pages: u64,
}

/// Parses one `stat` line. The name is in parentheses and may itself hold spaces and
/// parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let (head, rest) = line.rsplit_once(')')?;
    let (_, name) = head.split_once('(')?;
    // After the name: state(3) ppid(4) … utime(14) stime(15) … num_threads(20) … starttime(22)
    // vsize(23) rss(24), numbered as proc(5) numbers them.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |number: usize| -> Option<u64> { fields.get(number - 3)?.parse().ok() };
    Some(Stat {
        name: name.to_owned(),
        parent: u32::try_from(field(4)?).ok()?,
        cpu_seconds: (field(14)? + field(15)?) as f64 / TICKS_PER_SECOND,
        threads: field(20)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_pages: field(24)?,
    })
}

/// The process `pid` now; `None` once it has gone (or off Linux).
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// One thread of a process, as [`threads`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadStat {
    /// The thread's id (its directory under `/proc/<pid>/task`).
    pub tid: u32,
    /// The thread's name (`link`, `apply`, `encoder-0`, …), at most 15 bytes.
    pub name: String,
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
}

/// The threads of process `pid` now, in thread id order; empty once it has gone. A thread that
/// ends while they are read is left out.
pub fn threads(pid: u32) -> Vec<ThreadStat> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut threads: Vec<ThreadStat> = tasks
        .flatten()
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse().ok()?;
            let stat = parse_stat(&std::fs::read_to_string(task.path().join("stat")).ok()?)?;
            Some(ThreadStat { tid, name: stat.name, cpu_seconds: stat.cpu_seconds })
        })
        .collect();
    threads.sort_by_key(|thread| thread.tid);
    threads
}

/// When the machine booted, in seconds since the Unix epoch (`btime` in `/proc/stat`).
fn boot_time_seconds() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines().find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

/// Descriptors this process has open.
fn open_descriptors() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// Appends this process's standard `process_*` metrics (as Prometheus's own clients name them,
/// so the usual dashboards find them) and `<prefix>_thread_cpu_seconds_total` by thread name.
/// Threads of one name (a runtime's workers) are summed. Nothing is appended off Linux.
pub fn render_metrics(out: &mut String, prefix: &str) {
    let Some(process) = stat(std::process::id()) else { return };
    let page_bytes = rustix::param::page_size() as u64;
    let mut gauge = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    gauge("process_cpu_seconds_total", "counter", "User and system CPU time, in seconds.", process.cpu_seconds);
    gauge(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size, in bytes.",
        (process.resident_pages * page_bytes) as f64,
    );
    gauge("process_virtual_memory_bytes", "gauge", "Virtual memory size, in bytes.", process.virtual_bytes as f64);
    gauge("process_threads", "gauge", "Threads in the process.", process.threads as f64);
    if let Some(boot) = boot_time_seconds() {
        let start = boot as f64 + process.start_ticks as f64 / TICKS_PER_SECOND;
        gauge("process_start_time_seconds", "gauge", "Start time since the Unix epoch, in seconds.", start);
    }
    if let Some(open) = open_descriptors() {
        gauge("process_open_fds", "gauge", "Open file descriptors.", open as f64);
    }
    if let Some(max) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
        gauge("process_max_fds", "gauge", "The open-file limit (RLIMIT_NOFILE).", max as f64);
    }
    let mut by_name: Vec<(String, f64)> = Vec::new();
    for thread in threads(std::process::id()) {
        match by_name.iter_mut().find(|(name, _)| *name == thread.name) {
            Some((_, seconds)) => *seconds += thread.cpu_seconds,
            None => by_name.push((thread.name, thread.cpu_seconds)),
        }
    }
    by_name.sort_by(|a, b| a.0.cmp(&b.0));
    let name = format!("{prefix}_thread_cpu_seconds_total");
    let _ = writeln!(
        out,
        "# HELP {name} CPU time of the process's threads by name (summed over threads of one name), in seconds.\n\
         # TYPE {name} counter"
    );
    for (thread, seconds) in by_name {
        let _ = writeln!(out, "{name}{{thread=\"{}\"}} {seconds}", label_value(&thread));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_is_read_from_the_last_parenthesis() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 7 0 123456 \
                    104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let stat = parse_stat(line).expect("parsed");
        assert_eq!(stat.name, "a (b) c");
        assert_eq!(stat.parent, 1);
        assert_eq!(stat.cpu_seconds, 3.25);
        assert_eq!(stat.threads, 7);
        assert_eq!(stat.start_ticks, 123_456);
        assert_eq!(stat.virtual_bytes, 104_857_600);
        assert_eq!(stat.resident_pages, 2560);
    }

    #[test]
    fn a_truncated_or_garbled_stat_line_is_none() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("1 (x) S 1 2 3"), None);
        assert_eq!(parse_stat("1 x S 1"), None);
        assert_eq!(parse_stat("1 (x) S notanumber 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 1 1 1"), None);
    }

    #[test]
    fn this_process_and_its_named_threads_are_rendered_where_proc_exists() {
        if stat(std::process::id()).is_none() {
            return;
        }
        let worker = std::thread::Builder::new()
            .name("diode-probe".into())
            .spawn(|| {
                let mut x = 1u64;
                for i in 0..5_000_000u64 {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i);
                }
                std::hint::black_box(x);
                let mut out = String::new();
                render_metrics(&mut out, "diode_test");
                out
            })
            .expect("spawn");
        let out = worker.join().expect("join");
        for name in
            ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_threads"]
        {
            assert!(out.contains(&format!("# TYPE {name} ")), "{name} missing:\n{out}");
        }
        let line = out.lines().find(|l| l.starts_with("diode_test_thread_cpu_seconds_total{thread=\"diode-probe\"}"));
        assert!(line.is_some(), "the named thread is missing:\n{out}");
        let resident: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse().ok())
            .expect("resident memory");
        assert!(resident > 0.0);
    }
}

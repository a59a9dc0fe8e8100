//! Sinks: the replica's data flowing on, after apply, into engines IT already runs: PostgreSQL
//! (`postgres`), Parquet files for data lakes (`parquet`) and NATS JetStream streams (`nats`).
//! This module is the shared driver.
//!
//! Each sink runs on a thread of its own and follows the replica's apply log
//! ([`Replica::read_applied`]) from its cursor: every applied segment, in apply order, with the
//! points it wrote that still win last-write-wins. A sink exports a batch and answers with the
//! apply number through which its target now durably holds everything (its *durable cursor*);
//! the driver stores that in the replica (`meta 'K'`), where `status` and `/metrics` read it. A
//! sink whose target keeps its own cursor transactionally (PostgreSQL) is resumed from the
//! target's, so a crash between the target's commit and the replica's copy repeats nothing; one
//! whose target drops what it already holds (NATS, by message id) resumes from the replica's copy.
//!
//! Never in apply's way: the driver takes the replica's read lock only to read one bounded batch
//! (`batch_points`, `batch_segments`) and to store the cursor, and never while it talks to the
//! target; a sink that is down or slow only falls behind (its lag grows) and catches up later.
//! The next batch is read while the sink exports the previous one, so a sink holds at most two.
//! Failures are counted, logged and retried with a doubling wait; they never stop the receiver.

pub mod config;
pub mod export_cli;
pub mod nats;
pub mod parquet;
pub mod postgres;
pub mod stats;

pub use stats::SinkStats;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use diode_replica::{AppliedSegment, Replica, ReplicaError, SeriesInfo, SinkCursor};
use serde_json::{Value, json};

use crate::locks;
use crate::state::Shared;
use crate::time::{format_rfc3339, now_ns};
use config::{SinkLimits, SinksConfig};

/// How long an idle sink waits before it looks for new applies again.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Why a sink step failed. The message names the sink's target and what to check.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The target (a server, a folder) refused or failed.
    #[error("{0}")]
    Target(String),
    /// Reading the replica failed.
    #[error("reading the replica: {0}")]
    Replica(#[from] ReplicaError),
}

/// One batch handed to a sink: applied segments in apply order, and the catalog entries of every
/// series they name.
pub struct Batch {
    /// The applied segments, by ascending apply number, each with the points that still win.
    pub segments: Vec<AppliedSegment>,
    /// Name, tags and type of every series the segments carry, by series id.
    pub series: HashMap<u32, SeriesInfo>,
}

impl Batch {
    /// Points in the batch, over all its segments.
    pub fn point_count(&self) -> usize {
        self.segments.iter().map(AppliedSegment::point_count).sum()
    }

    /// The apply number of the last segment (the batch is never empty).
    pub fn last_apply_number(&self) -> u64 {
        self.segments.last().map_or(0, |segment| segment.apply_number)
    }
}

/// What a sink does; the driver calls it from the sink's own thread.
pub trait Sink: Send {
    /// `postgres`, `parquet`, `nats`.
    fn kind(&self) -> &'static str;
    /// Connects and prepares the target, and says where to resume: the apply number through which
    /// the target holds everything. `stored` is the replica's copy of the cursor (0: none).
    fn start(&mut self, stored: u64, shared: &Shared) -> Result<u64, SinkError>;
    /// Exports `batch`; returns the new durable cursor.
    fn export(&mut self, batch: &Batch, shared: &Shared) -> Result<u64, SinkError>;
    /// Called when there is nothing new to read; returns the durable cursor.
    fn idle(&mut self, shared: &Shared) -> Result<u64, SinkError>;
}

/// Starts one thread per configured sink. Configuration errors were refused at load; everything
/// else (an unreachable server, a refused password, an unwritable folder) is retried by the
/// sink's thread, logged and counted, and never stops the receiver.
pub fn start(config: &SinksConfig, shared: &Arc<Shared>) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mut sinks: Vec<(Box<dyn Sink>, String, SinkLimits)> = Vec::new();
    for sink in &config.postgres {
        sinks.push((Box::new(postgres::PostgresSink::new(sink.clone())), sink.name.clone(), sink.limits()));
    }
    for sink in &config.parquet {
        sinks.push((Box::new(parquet::ParquetSink::new(sink.clone())), sink.name.clone(), sink.limits()));
    }
    for sink in &config.nats {
        sinks.push((Box::new(nats::NatsSink::new(sink.clone())), sink.name.clone(), sink.limits()));
    }
    let mut threads = Vec::new();
    for (sink, name, limits) in sinks {
        threads.push(spawn(sink, &name, limits, shared)?);
    }
    Ok(threads)
}

/// Starts one sink on its own thread; it runs until `shared.stop` is set.
pub fn spawn(
    sink: Box<dyn Sink>,
    name: &str,
    limits: SinkLimits,
    shared: &Arc<Shared>,
) -> std::io::Result<JoinHandle<()>> {
    let stats = Arc::new(SinkStats::new(name, sink.kind()));
    {
        let mut sinks = locks::lock(&shared.counters.sinks);
        sinks.retain(|running| running.name != name);
        sinks.push(Arc::clone(&stats));
    }
    let shared = Arc::clone(shared);
    std::thread::Builder::new().name(format!("sink-{name}")).spawn(move || drive(sink, &stats, limits, &shared))
}

fn stopping(shared: &Shared) -> bool {
    shared.stop.load(Ordering::Relaxed)
}

/// Runs a sink until the receiver stops: start, follow, and after a failure wait and start again.
fn drive(mut sink: Box<dyn Sink>, stats: &SinkStats, limits: SinkLimits, shared: &Shared) {
    let (first, longest) =
        (Duration::from_millis(limits.retry_first_ms), Duration::from_millis(limits.retry_longest_ms));
    let mut retry = first;
    while !stopping(shared) {
        let Err(error) = follow(&mut *sink, stats, limits, shared, &mut retry, first) else { return };
        stats.up.store(false, Ordering::Relaxed);
        stats.errors.fetch_add(1, Ordering::Relaxed);
        let message = error.to_string();
        tracing::error!(
            sink = %stats.name,
            kind = stats.kind,
            retry_in_ms = retry.as_millis() as u64,
            "sink {} ({}) failed: {message}; it retries by itself, apply goes on",
            stats.name,
            stats.kind
        );
        *locks::lock(&stats.last_error) = Some(message);
        wait(shared, retry);
        retry = (retry * 2).min(longest);
    }
}

/// Waits `duration`, or less if the receiver stops.
fn wait(shared: &Shared, duration: Duration) {
    let deadline = std::time::Instant::now() + duration;
    while !stopping(shared) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(IDLE_POLL));
    }
}

/// Starts the sink and follows the apply log until the receiver stops (`Ok`) or a step fails.
fn follow(
    sink: &mut dyn Sink,
    stats: &SinkStats,
    limits: SinkLimits,
    shared: &Shared,
    retry: &mut Duration,
    first_retry: Duration,
) -> Result<(), SinkError> {
    let stored = locks::read(&shared.replica).sink_cursor(&stats.name)?.map_or(0, |cursor| cursor.apply_number);
    let mut position = sink.start(stored, shared)?;
    let last = locks::read(&shared.replica).last_apply_number();
    if position > last {
        return Err(SinkError::Target(format!(
            "the target holds segments through apply number {position} but this replica applied only {last}: is \
             it fed by another replica? give this sink another name or target"
        )));
    }
    record_cursor(stats, shared, position)?;
    stats.up.store(true, Ordering::Relaxed);
    let mut next = read_batch(shared, position, limits)?;
    while !stopping(shared) {
        let batch = next;
        let durable = if batch.segments.is_empty() {
            let durable = sink.idle(shared)?;
            wait(shared, IDLE_POLL);
            next = read_batch(shared, position, limits)?;
            durable
        } else {
            position = batch.last_apply_number();
            // The next batch is read while this one is exported, so the replica's reads and the
            // target's work overlap: at most two batches are held at once.
            let (exported, read) = std::thread::scope(|scope| {
                let reader = std::thread::Builder::new()
                    .name(format!("sink-{}-read", stats.name))
                    .spawn_scoped(scope, || read_batch(shared, position, limits));
                let exported = sink.export(&batch, shared);
                let read = match reader {
                    Ok(reader) => reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                    // No thread to spare: read after the export instead.
                    Err(_) => read_batch(shared, position, limits),
                };
                (exported, read)
            });
            let durable = exported?;
            next = read?;
            stats.points_exported.fetch_add(batch.point_count() as u64, Ordering::Relaxed);
            stats.segments_exported.fetch_add(batch.segments.len() as u64, Ordering::Relaxed);
            *retry = first_retry;
            durable
        };
        if durable != stats.cursor.load(Ordering::Relaxed) {
            record_cursor(stats, shared, durable)?;
        }
    }
    Ok(())
}

/// One batch after `position`, read under the replica's read lock, with its series' catalog entries.
fn read_batch(shared: &Shared, position: u64, limits: SinkLimits) -> Result<Batch, SinkError> {
    let replica = locks::read(&shared.replica);
    let segments = replica.read_applied(position, limits.batch_segments, limits.batch_points)?;
    let mut series = HashMap::new();
    for id in segments.iter().flat_map(|segment| segment.series.iter().map(|series| series.series_id)) {
        if let std::collections::hash_map::Entry::Vacant(entry) = series.entry(id)
            && let Some(info) = replica.series_info(id)
        {
            entry.insert(info);
        }
    }
    Ok(Batch { segments, series })
}

fn record_cursor(stats: &SinkStats, shared: &Shared, apply_number: u64) -> Result<(), SinkError> {
    let cursor = SinkCursor { apply_number, updated_at_ns: now_ns() };
    locks::read(&shared.replica).set_sink_cursor(&stats.name, cursor)?;
    stats.cursor.store(apply_number, Ordering::Relaxed);
    Ok(())
}

/// Every sink known to the replica (stored cursors) or running (`live`), by name: cursor, lag in
/// segments, and for running sinks their counters and last error.
pub fn status_json(replica: &Replica, live: Option<&[Arc<SinkStats>]>) -> Value {
    let last = replica.last_apply_number();
    let stored = replica.sink_cursors().unwrap_or_default();
    let mut sinks: std::collections::BTreeMap<String, Value> = stored
        .into_iter()
        .map(|(name, cursor)| {
            let value = json!({
                "name": name,
                "cursor": cursor.apply_number,
                "lag_segments": last.saturating_sub(cursor.apply_number),
                "cursor_updated_at": format_rfc3339(cursor.updated_at_ns),
            });
            (name, value)
        })
        .collect();
    for stats in live.unwrap_or_default() {
        let cursor = stats.cursor.load(Ordering::Relaxed);
        let entry = sinks.entry(stats.name.clone()).or_insert_with(|| json!({ "name": stats.name }));
        entry["kind"] = json!(stats.kind);
        entry["cursor"] = json!(cursor);
        entry["lag_segments"] = json!(last.saturating_sub(cursor));
        entry["up"] = json!(stats.up.load(Ordering::Relaxed));
        entry["points_exported"] = json!(stats.points_exported.load(Ordering::Relaxed));
        entry["segments_exported"] = json!(stats.segments_exported.load(Ordering::Relaxed));
        entry["errors"] = json!(stats.errors.load(Ordering::Relaxed));
        entry["last_error"] = json!(*locks::lock(&stats.last_error));
    }
    json!({ "last_apply_number": last, "sinks": sinks.into_values().collect::<Vec<_>>() })
}

/// The human form, for `diode-receiver status`.
pub fn status_text(replica: &Replica) -> String {
    use std::fmt::Write;
    let last = replica.last_apply_number();
    let mut out = String::new();
    for (name, cursor) in replica.sink_cursors().unwrap_or_default() {
        let _ = writeln!(
            out,
            "sink {name}: exported through apply {} of {last} ({} behind), cursor moved {}",
            cursor.apply_number,
            last.saturating_sub(cursor.apply_number),
            format_rfc3339(cursor.updated_at_ns)
        );
    }
    out
}

/// Prometheus gauges and counters of the running sinks, labelled by sink and kind.
pub fn metrics(live: &[Arc<SinkStats>], last_apply_number: u64) -> String {
    use std::fmt::Write;
    type Reading = fn(&SinkStats, u64) -> u64;
    let families: [(&str, &str, &str, Reading); 6] = [
        ("cursor", "gauge", "Apply number through which the sink's target holds every segment.", |s, _| {
            s.cursor.load(Ordering::Relaxed)
        }),
        ("lag_segments", "gauge", "Applied segments not yet in the sink's target.", |s, last| {
            last.saturating_sub(s.cursor.load(Ordering::Relaxed))
        }),
        ("up", "gauge", "1 while the sink follows the replica, 0 while it waits to retry.", |s, _| {
            u64::from(s.up.load(Ordering::Relaxed))
        }),
        ("points_exported_total", "counter", "Points exported by the sink since the receiver started.", |s, _| {
            s.points_exported.load(Ordering::Relaxed)
        }),
        ("segments_exported_total", "counter", "Segments exported by the sink since the receiver started.", |s, _| {
            s.segments_exported.load(Ordering::Relaxed)
        }),
        ("errors_total", "counter", "Failed sink steps (each retried).", |s, _| s.errors.load(Ordering::Relaxed)),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP diode_receiver_sink_{name} {help}\n# TYPE diode_receiver_sink_{name} {kind}");
        for stats in live {
            let _ = writeln!(
                out,
                "diode_receiver_sink_{name}{{sink=\"{}\",kind=\"{}\"}} {}",
                stats.name,
                stats.kind,
                value(stats, last_apply_number)
            );
        }
    }
    out
}

//! Plant sources the sender connects out to: MQTT brokers (`mqtt`, with the payload decoders
//! `sparkplug` and `json_payload`) and OPC UA servers (`opcua`).
//!
//! Each is a client on the OT network: it opens connections towards plant servers and never
//! listens. Records reach the spool the way the line protocol listeners' do, through group commit
//! (`commit`), and a source tells its server "done" (an MQTT PUBACK) only once they are durable.
//! This module holds what they share: per-source counters for `/metrics`, the submit loop that
//! waits out a full spool, and rate-limited warnings so a misbehaving publisher cannot flood logs.

pub mod addresses;
pub mod json_payload;
pub mod mqtt;
pub mod opcua;
pub mod sparkplug;

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diode_common::record::Record;

use crate::commit::Committer;
use crate::pipeline::SubmitError;

/// How long a source waits before offering records again to a full spool.
const SPOOL_FULL_RETRY: Duration = Duration::from_millis(200);
/// Warnings of one kind one source logs at most per interval; the rest are counted and summed
/// up in the next warning.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// What one source did, for `/metrics` (`diode_sender_source_*{kind,source}`).
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Messages (MQTT publishes, OPC UA notifications) received.
    pub messages: AtomicU64,
    /// Records made durable in the spool.
    pub records: AtomicU64,
    /// Payloads that could not be decoded at all, or records refused (bad name, NaN, …).
    pub malformed: AtomicU64,
    /// Values of a type diode does not store (Sparkplug DataSet, OPC UA arrays, …), skipped.
    pub unsupported: AtomicU64,
    /// Sparkplug sequence gaps, unknown aliases and data before a birth.
    pub sequence_gaps: AtomicU64,
    /// Sparkplug rebirth requests published (NCMD `Node Control/Rebirth`).
    pub rebirth_requests: AtomicU64,
    /// Sparkplug NDEATH/DDEATH handled (metrics marked stale).
    pub deaths: AtomicU64,
    /// Connections established (the first one included).
    pub connects: AtomicU64,
    /// Connections lost or refused.
    pub disconnects: AtomicU64,
    /// OPC UA: outages after which data may be missing (each logged with its time span).
    pub data_gaps: AtomicU64,
    /// OPC UA: records recovered from the server's history after an outage.
    pub backfilled_records: AtomicU64,
}

/// One registered source: its kind (`mqtt`, `opcua`), its name, its counters.
pub struct SourceEntry {
    /// `mqtt` or `opcua`: the `kind` label.
    pub kind: &'static str,
    /// The source's display name: the `source` label.
    pub name: String,
    /// Its counters, updated by the source's task.
    pub counters: Arc<SourceCounters>,
}

/// Every source's counters, rendered by `metrics`.
#[derive(Default)]
pub struct SourceRegistry {
    entries: Mutex<Vec<SourceEntry>>,
}

impl SourceRegistry {
    /// Adds a source to `/metrics` and gives it its counters.
    pub fn register(&self, kind: &'static str, name: &str) -> Arc<SourceCounters> {
        let counters = Arc::new(SourceCounters::default());
        let entry = SourceEntry { kind, name: name.to_owned(), counters: Arc::clone(&counters) };
        self.entries.lock().expect("source registry lock").push(entry);
        counters
    }

    /// The Prometheus text of every source's counters (nothing when there is no source).
    pub fn render(&self, out: &mut String) {
        let entries = self.entries.lock().expect("source registry lock");
        if entries.is_empty() {
            return;
        }
        type Get = fn(&SourceCounters) -> &AtomicU64;
        let families: [(&str, &str, Get); 11] = [
            ("messages", "Messages received (MQTT publishes, OPC UA notifications).", |c| &c.messages),
            ("records", "Records from this source made durable in the spool.", |c| &c.records),
            ("malformed", "Payloads that could not be decoded, or records refused.", |c| &c.malformed),
            ("unsupported", "Values of a type diode does not store, skipped.", |c| &c.unsupported),
            ("sequence_gaps", "Sparkplug sequence gaps, unknown aliases, data before birth.", |c| &c.sequence_gaps),
            ("rebirth_requests", "Sparkplug rebirth requests published.", |c| &c.rebirth_requests),
            ("deaths", "Sparkplug node and device deaths (metrics marked stale).", |c| &c.deaths),
            ("connects", "Connections established.", |c| &c.connects),
            ("disconnects", "Connections lost or refused.", |c| &c.disconnects),
            ("data_gaps", "Outages after which data may be missing.", |c| &c.data_gaps),
            ("backfilled_records", "Records recovered from server history after an outage.", |c| &c.backfilled_records),
        ];
        for (family, help, get) in families {
            let name = format!("diode_sender_source_{family}_total");
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for entry in entries.iter() {
                let value = get(&entry.counters).load(Ordering::Relaxed);
                let source = diode_host::exposition::label_value(&entry.name);
                let _ = writeln!(out, "{name}{{kind=\"{}\",source=\"{source}\"}} {value}", entry.kind);
            }
        }
    }
}

/// How long a source waits before offering records again to a spool that could not be written.
const SPOOL_ERROR_RETRY: Duration = Duration::from_secs(1);

/// Makes `records` durable through group commit, and returns only then: a source may
/// acknowledge them to its server afterwards. A full spool is waited out (the source stops
/// reading, so its server buffers: backpressure), and so is a spool that cannot be written (logged);
/// a record the pipeline refuses is dropped and counted as malformed, and the rest go on.
pub async fn submit(committer: &Committer, counters: &SourceCounters, warnings: &Warnings, mut records: Vec<Record>) {
    while !records.is_empty() {
        let count = records.len() as u64;
        match committer.submit(records).await {
            Ok(()) => {
                counters.records.fetch_add(count, Ordering::Relaxed);
                return;
            }
            Err((SubmitError::SpoolFull { used_bytes, limit_bytes }, refused)) => {
                warnings.warn("spool_full", || {
                    format!("the spool is full ({used_bytes} of {limit_bytes} bytes): waiting for the link")
                });
                records = refused;
                tokio::time::sleep(SPOOL_FULL_RETRY).await;
            }
            Err((SubmitError::Invalid { index, source }, mut refused)) => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                if index < refused.len() {
                    let record = refused.remove(index);
                    warnings.warn("invalid_record", || format!("dropped a record of {}: {source}", record.series));
                }
                records = refused;
            }
            Err((error, refused)) => {
                warnings.warn("spool_error", || format!("the spool cannot be written: {error}; retrying"));
                if refused.is_empty() {
                    // The committer has stopped: the sender is shutting down.
                    return;
                }
                records = refused;
                tokio::time::sleep(SPOOL_ERROR_RETRY).await;
            }
        }
    }
}

/// Rate-limited warnings, per kind: the first of a kind is logged at once, later ones at most
/// once per [`WARNING_INTERVAL`] with the number suppressed in between.
pub struct Warnings {
    source: String,
    last: Mutex<Vec<(&'static str, Instant, u64)>>,
}

impl Warnings {
    /// Warnings of the source named `source`, which every message names.
    pub fn new(source: &str) -> Self {
        Self { source: source.to_owned(), last: Mutex::new(Vec::new()) }
    }

    /// Logs `message()` unless a warning of `kind` was logged within the interval; the closure
    /// runs only when the warning is logged.
    pub fn warn(&self, kind: &'static str, message: impl FnOnce() -> String) {
        let now = Instant::now();
        let mut last = self.last.lock().expect("warnings lock");
        let suppressed = match last.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, at, suppressed)) if now.duration_since(*at) < WARNING_INTERVAL => {
                *suppressed += 1;
                return;
            }
            Some((_, at, suppressed)) => {
                *at = now;
                std::mem::take(suppressed)
            }
            None => {
                last.push((kind, now, 0));
                0
            }
        };
        drop(last);
        let message = message();
        if suppressed > 0 {
            tracing::warn!(source = %self.source, suppressed, "{message} ({suppressed} more like it not logged)");
        } else {
            tracing::warn!(source = %self.source, "{message}");
        }
    }
}

/// Waits `current`, then doubles it up to `max`: reconnect back-off.
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `min`; a `max` below `min` is taken as `min`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max: max.max(min), current: min }
    }

    /// The delay to wait now; the next one is twice as long (up to the maximum).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = (self.current * 2).min(self.max);
        delay
    }

    /// After a connection that worked: start from the minimum again.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<u128> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn every_source_counter_is_rendered_with_its_labels() {
        let registry = SourceRegistry::default();
        let counters = registry.register("mqtt", "broker \"a\"");
        counters.malformed.store(3, Ordering::Relaxed);
        let mut text = String::new();
        registry.render(&mut text);
        assert!(
            text.contains("diode_sender_source_malformed_total{kind=\"mqtt\",source=\"broker \\\"a\\\"\"} 3"),
            "{text}"
        );
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(samples, types, "one sample per family for one source");
    }

    #[test]
    fn a_burst_of_warnings_is_logged_once() {
        let warnings = Warnings::new("s");
        let mut logged = 0;
        for _ in 0..100 {
            warnings.warn("kind", || {
                logged += 1;
                String::from("x")
            });
        }
        assert_eq!(logged, 1);
    }
}

//! Counters of what the receiver saw, did and refused, for metrics, `status` and logs.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use diode_common::reassembly::ReassemblyStats;

use crate::locks;

/// Every counter of a running receiver, shown on `/metrics` (`diode_receiver_*`) and in status.
/// The receive thread keeps the datagram, reassembly and beacon ones, the apply thread the rest.
#[derive(Debug, Default)]
pub struct ReceiverCounters {
    /// Datagrams received, whatever became of them.
    pub datagrams_received: AtomicU64,
    /// UDP payload bytes received.
    pub bytes_received: AtomicU64,
    /// Segments rebuilt from symbols.
    pub segments_completed: AtomicU64,
    /// Of those, segments that needed repair symbols.
    pub segments_recovered_by_fec: AtomicU64,
    /// Segments applied to the replica.
    pub segments_applied: AtomicU64,
    /// Segments received again after their apply (carousel, resend); they change nothing.
    pub segments_already_applied: AtomicU64,
    /// Segments dropped whole because the apply queue was full; the carousel or a resend brings
    /// them back.
    pub segments_shed: AtomicU64,
    /// Incomplete segments given up after `reassembly.segment_timeout_ms`.
    pub segments_abandoned: AtomicU64,
    /// Incomplete segments dropped to stay within the reassembly bounds.
    pub segments_evicted: AtomicU64,
    /// Points written to the replica.
    pub points_applied: AtomicU64,
    /// Closed hours of one series merged into one replica entry.
    pub buckets_merged: AtomicU64,
    /// Chunks those merges joined.
    pub chunks_merged: AtomicU64,
    /// Beacons whose signature checked out.
    pub beacons_accepted: AtomicU64,
    /// Beacons whose signed head is not the stored segment at that position (a forked chain).
    pub beacon_head_mismatches: AtomicU64,
    /// When the last verified beacon arrived, in ns since the Unix epoch (0: none yet).
    pub last_beacon_received_ns: AtomicI64,
    /// When the last segment was applied, in ns since the Unix epoch (0: none yet).
    pub last_apply_ns: AtomicI64,
    /// Head sequence announced by the latest beacon, and the highest applied, for the lag gauge.
    pub announced_head: AtomicU64,
    /// See `announced_head`.
    pub applied_head: AtomicU64,
    /// Segments missing across every stream, as the replica's gap report counts them.
    pub gap_segments: AtomicU64,
    /// Hours of one series waiting to be merged (chunks written since their last merge).
    pub buckets_waiting_to_merge: AtomicU64,
    /// Beacons dropped unverified because a newer one of their sender was already verified.
    pub beacons_replayed: AtomicU64,
    /// Writes to the replica that failed (full disk, I/O error); apply retries them.
    pub replica_write_errors: AtomicU64,
    /// 1 while apply is stopped by a failing replica write, 0 otherwise.
    pub replica_write_blocked: AtomicU64,
    /// Bytes of the segments waiting to be applied and the one being applied: added where a
    /// segment enters the apply queue (from the link or an upstream), taken off once applied.
    pub apply_queue_bytes: AtomicU64,
    /// The running sinks' figures (each sink's thread updates its own).
    pub sinks: Mutex<Vec<std::sync::Arc<crate::sinks::stats::SinkStats>>>,
    /// The reassembler's own counters, copied by the receive thread.
    pub reassembly: Mutex<ReassemblyStats>,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl ReceiverCounters {
    /// Counts one datagram or segment refused for `reason` (`diode_receiver_rejected_total`).
    pub fn reject(&self, reason: &'static str) {
        *locks::lock(&self.rejected).entry(reason).or_default() += 1;
    }

    /// The refusals so far, by reason.
    pub fn rejected(&self) -> BTreeMap<&'static str, u64> {
        locks::lock(&self.rejected).clone()
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 16] = [
            ("diode_receiver_datagrams_received_total", "Datagrams received.", &self.datagrams_received),
            ("diode_receiver_bytes_received_total", "UDP payload bytes received.", &self.bytes_received),
            ("diode_receiver_segments_completed_total", "Segments rebuilt from symbols.", &self.segments_completed),
            (
                "diode_receiver_segments_recovered_by_fec_total",
                "Segments that needed repair symbols.",
                &self.segments_recovered_by_fec,
            ),
            ("diode_receiver_segments_applied_total", "Segments applied to the replica.", &self.segments_applied),
            (
                "diode_receiver_segments_already_applied_total",
                "Segments received again after apply (carousel, resend).",
                &self.segments_already_applied,
            ),
            ("diode_receiver_buckets_merged_total", "Closed hours of series merged.", &self.buckets_merged),
            ("diode_receiver_chunks_merged_total", "Chunks joined by those merges.", &self.chunks_merged),
            (
                "diode_receiver_segments_shed_total",
                "Segments dropped whole because the apply queue was full (in segments or in bytes).",
                &self.segments_shed,
            ),
            (
                "diode_receiver_segments_abandoned_total",
                "Incomplete segments given up after the timeout.",
                &self.segments_abandoned,
            ),
            (
                "diode_receiver_segments_evicted_total",
                "Incomplete segments dropped to bound memory.",
                &self.segments_evicted,
            ),
            ("diode_receiver_points_applied_total", "Points written to the replica.", &self.points_applied),
            ("diode_receiver_beacons_accepted_total", "Verified beacons.", &self.beacons_accepted),
            (
                "diode_receiver_beacon_head_mismatches_total",
                "Verified beacons whose signed head hash differs from the stored segment at that sequence \
                 (a forked chain).",
                &self.beacon_head_mismatches,
            ),
            (
                "diode_receiver_beacons_replayed_total",
                "Beacons dropped before verification: not newer than one already verified (replays).",
                &self.beacons_replayed,
            ),
            (
                "diode_receiver_replica_write_errors_total",
                "Replica writes that failed (full disk, I/O error); apply retries each until it succeeds.",
                &self.replica_write_errors,
            ),
        ];
        for (name, help, value) in counters {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "# HELP diode_receiver_rejected_total Datagrams or segments refused, by reason.");
        let _ = writeln!(out, "# TYPE diode_receiver_rejected_total counter");
        for (reason, count) in self.rejected() {
            let _ = writeln!(out, "diode_receiver_rejected_total{{reason=\"{reason}\"}} {count}");
        }
        self.render_gauges(&mut out);
        self.render_instants(&mut out);
        render_reassembly(&mut out, &locks::lock(&self.reassembly));
        out
    }

    /// The gauges: write blocked, lag, hours waiting to be merged, apply queue bytes, gaps.
    fn render_gauges(&self, out: &mut String) {
        let announced = self.announced_head.load(Ordering::Relaxed);
        let applied = self.applied_head.load(Ordering::Relaxed);
        let gauges: [(&str, &str, i64); 5] = [
            (
                "diode_receiver_replica_write_blocked",
                "1 while apply waits for a failing replica write to succeed (segments queue, then are shed).",
                self.replica_write_blocked.load(Ordering::Relaxed) as i64,
            ),
            (
                "diode_receiver_lag_segments",
                "Announced head minus highest applied sequence.",
                announced.saturating_sub(applied) as i64,
            ),
            (
                "diode_receiver_buckets_waiting_to_merge",
                "Hours of one series with chunks written since they were last merged.",
                self.buckets_waiting_to_merge.load(Ordering::Relaxed) as i64,
            ),
            (
                "diode_receiver_apply_queue_bytes",
                "Bytes of the segments waiting to be applied and the one being applied.",
                self.apply_queue_bytes.load(Ordering::Relaxed) as i64,
            ),
            (
                "diode_receiver_gap_segments",
                "Missing sequences known to the replica.",
                self.gap_segments.load(Ordering::Relaxed) as i64,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
    }

    /// Instants as Prometheus names them: seconds since the Unix epoch (0: not yet).
    fn render_instants(&self, out: &mut String) {
        let instants = [
            (
                "diode_receiver_last_beacon_received_timestamp_seconds",
                "When the latest verified beacon arrived.",
                self.last_beacon_received_ns.load(Ordering::Relaxed),
            ),
            (
                "diode_receiver_last_apply_timestamp_seconds",
                "When a segment was last applied.",
                self.last_apply_ns.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, ns) in instants {
            let seconds = ns as f64 / 1e9;
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {seconds}");
        }
    }
}

/// The reassembler's counters and gauges as `diode_receiver_reassembly_*` metrics. Segments
/// completed, recovered by FEC, abandoned and evicted are not repeated here: the receive loop
/// counts each of its events once, as `diode_receiver_segments_*_total`.
fn render_reassembly(out: &mut String, stats: &ReassemblyStats) {
    let counters: [(&str, &str, u64); 11] = [
        ("symbols_accepted", "New symbols stored.", stats.symbols_accepted),
        ("duplicate_symbols", "Symbols whose index had already arrived.", stats.duplicate_symbols),
        (
            "symbols_for_completed_segments",
            "Symbols of recently completed segments (unneeded repairs, duplicates, resends).",
            stats.symbols_for_completed_segments,
        ),
        (
            "symbols_for_applied_segments",
            "Symbols dropped before taking memory: their segment is already applied (replays).",
            stats.symbols_for_applied_segments,
        ),
        (
            "older_epoch_symbols",
            "Symbols of an epoch older than their sender's newest verified one (resends, late tails; accepted).",
            stats.older_epoch_symbols,
        ),
        (
            "inconsistent_parameters",
            "Symbols whose parameters disagree with their segment.",
            stats.inconsistent_parameters,
        ),
        ("oversized_segment_symbols", "Symbols of segments too long for the limits.", stats.oversized_segment_symbols),
        ("surplus_symbols", "Symbols after their segment had enough.", stats.surplus_symbols),
        ("segments_failed_decoding", "Segments that could not be decoded.", stats.segments_failed_decoding),
        ("senders_forgotten", "Senders forgotten to stay within the sender limit.", stats.senders_forgotten),
        ("events_dropped", "Reassembly events lost because too many waited.", stats.events_dropped),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP diode_receiver_reassembly_{name}_total {help}\n# TYPE diode_receiver_reassembly_{name}_total \
             counter\ndiode_receiver_reassembly_{name}_total {value}"
        );
    }
    let gauges: [(&str, &str, usize); 2] = [
        ("buffered_bytes", "Bytes held by incomplete segments, bookkeeping included.", stats.buffered_bytes),
        ("segments_in_flight", "Incomplete segments held.", stats.segments_in_flight),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP diode_receiver_reassembly_{name} {help}\n# TYPE diode_receiver_reassembly_{name} gauge\n\
             diode_receiver_reassembly_{name} {value}"
        );
    }
}

/// Logs a rejection at most once a second per reason, with how many were suppressed, so a flood
/// of forged packets cannot flood the log too.
#[derive(Debug, Default)]
pub struct RateLimitedLog {
    last: Mutex<BTreeMap<&'static str, (Instant, u64)>>,
}

impl RateLimitedLog {
    /// Logs `detail()` for `reason` unless one was logged in the last second; `detail` is only
    /// called when logged.
    pub fn warn(&self, reason: &'static str, detail: impl FnOnce() -> String) {
        let mut last = locks::lock(&self.last);
        let now = Instant::now();
        match last.get_mut(reason) {
            Some((at, suppressed)) if now.duration_since(*at).as_secs() < 1 => *suppressed += 1,
            Some((at, suppressed)) => {
                tracing::warn!(reason, suppressed = *suppressed, "{}", detail());
                *at = now;
                *suppressed = 0;
            }
            None => {
                tracing::warn!(reason, "{}", detail());
                last.insert(reason, (now, 0));
            }
        }
    }
}

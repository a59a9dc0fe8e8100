//! Prometheus-format metrics for diode-sender, served on `metrics.listen` at `/metrics`.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::commit::CommitCounters;
use crate::link::LinkCounters;
use crate::pipeline::Progress;
use crate::sources::SourceRegistry;

/// Everything `/metrics` renders: shared counters, read at each scrape.
pub struct SenderMetrics {
    /// `sender_id`, a label of every series.
    pub sender_id: u64,
    /// The current epoch, a label of every series.
    pub epoch: u64,
    /// The durable path's progress (`diode_sender_records_*`, head and retention).
    pub progress: Arc<Progress>,
    /// The link thread's counters (datagrams, bytes, beacons, carousel).
    pub link: Arc<LinkCounters>,
    /// Group commit counters of the ingest listeners.
    pub ingest: Arc<CommitCounters>,
    /// The MQTT and OPC UA sources' counters (`diode_sender_source_*`).
    pub sources: Arc<SourceRegistry>,
}

impl SenderMetrics {
    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let p = &self.progress;
        let l = &self.link;
        let gauges: [(&str, &str, u64); 6] = [
            ("diode_sender_epoch", "Current epoch.", self.epoch),
            (
                "diode_sender_head_sequence",
                "Sequence of the latest sealed segment.",
                p.head_sequence.load(Ordering::Relaxed),
            ),
            (
                "diode_sender_sent_through_sequence",
                "Latest segment whose first transmission finished.",
                p.sent_through.load(Ordering::Relaxed),
            ),
            (
                "diode_sender_spooled_records",
                "Records accepted and waiting to be sealed.",
                p.spooled_records.load(Ordering::Relaxed),
            ),
            (
                "diode_sender_oldest_retained_sequence",
                "Oldest segment still kept for resend.",
                p.oldest_retained_sequence.load(Ordering::Relaxed),
            ),
            ("diode_sender_id", "This sender's id.", self.sender_id),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        let _ = writeln!(
            out,
            "# HELP diode_sender_build_info This build's version and commit (the receiver shows the same from beacons).\n\
             # TYPE diode_sender_build_info gauge\ndiode_sender_build_info{{version=\"{}\"}} 1",
            diode_host::exposition::label_value(crate::VERSION)
        );
        let counters: [(&str, &str, u64); 11] = [
            (
                "diode_sender_records_accepted_total",
                "Records accepted into the spool.",
                p.records_accepted.load(Ordering::Relaxed),
            ),
            (
                "diode_sender_records_sealed_total",
                "Records sealed into segments.",
                p.records_sealed.load(Ordering::Relaxed),
            ),
            (
                "diode_sender_segments_sent_total",
                "Segments whose first transmission finished.",
                l.segments_sent.load(Ordering::Relaxed),
            ),
            (
                "diode_sender_datagrams_sent_total",
                "Datagrams sent, all kinds.",
                l.datagrams_sent.load(Ordering::Relaxed),
            ),
            (
                "diode_sender_wire_bytes_sent_total",
                "Bytes on the wire, IP and UDP headers included.",
                l.wire_bytes_sent.load(Ordering::Relaxed),
            ),
            (
                "diode_sender_carousel_datagrams_total",
                "Datagrams sent by the carousel.",
                l.carousel_datagrams.load(Ordering::Relaxed),
            ),
            (
                "diode_sender_repeat_datagrams_total",
                "Repair symbols sent a second time.",
                l.repeat_datagrams.load(Ordering::Relaxed),
            ),
            ("diode_sender_beacons_sent_total", "Signed beacons sent.", l.beacons_sent.load(Ordering::Relaxed)),
            (
                "diode_sender_ingest_writes_total",
                "Writes from the ingest listeners made durable (HTTP bodies, TCP and UDP batches).",
                self.ingest.writes.load(Ordering::Relaxed),
            ),
            (
                "diode_sender_ingest_commits_total",
                "Spool commits those writes took (several writes share one under group commit).",
                self.ingest.groups.load(Ordering::Relaxed),
            ),
            (
                "diode_sender_send_errors_total",
                "Datagrams the kernel refused to send.",
                l.send_errors.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        self.sources.render(&mut out);
        diode_host::process::render_metrics(&mut out, "diode_sender");
        out
    }
}

/// Serves `/metrics` on `listener` until the runtime stops, with at most `max_connections`
/// connections and the default timeouts of [`diode_host::http_server`].
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<SenderMetrics>, max_connections: usize) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = Arc::clone(&metrics);
            async move { ([("content-type", "text/plain; version=0.0.4")], metrics.render()) }
        }),
    );
    let limits = diode_host::http_server::HttpLimits { max_connections, ..Default::default() };
    diode_host::http_server::serve(listener, app, limits, "metrics.max_connections").await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_figure_is_rendered_once_with_its_type() {
        let metrics = SenderMetrics {
            sender_id: 3,
            epoch: 2,
            progress: Arc::default(),
            link: Arc::default(),
            ingest: Arc::new(CommitCounters::default()),
            sources: Arc::default(),
        };
        metrics.ingest.writes.store(12, Ordering::Relaxed);
        metrics.ingest.groups.store(5, Ordering::Relaxed);
        let text = metrics.render();
        for line in
            ["diode_sender_ingest_writes_total 12", "diode_sender_ingest_commits_total 5", "diode_sender_epoch 2"]
        {
            assert_eq!(text.lines().filter(|l| *l == line).count(), 1, "{line} in\n{text}");
        }
        // One sample per metric, but the CPU by thread, which has one per thread name.
        let by_thread = "diode_sender_thread_cpu_seconds_total";
        let samples = text.lines().filter(|l| !l.starts_with('#') && !l.starts_with(by_thread)).count();
        let types = text.lines().filter(|l| l.starts_with("# TYPE ") && !l.contains(by_thread)).count();
        assert_eq!(samples, types, "one sample per metric");
    }
}

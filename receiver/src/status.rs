//! What `diode-receiver status` and `gaps` print, and what `/api/v1/status` and `/api/v1/gaps`
//! return: streams, heads, lag, gaps with the command that fills them, counters.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use diode_replica::{Gap, Replica};
use serde_json::{Value, json};

use crate::counters::ReceiverCounters;
use crate::time::{format_rfc3339, now_ns};

/// The command an operator runs on the OT side to fill `gap`.
pub fn resend_command(gap: &Gap) -> String {
    format!(
        "diode-sender resend --config /etc/diode/sender.toml --epoch {} --from {} --to {}",
        gap.epoch, gap.first_sequence, gap.last_sequence
    )
}

/// `/api/v1/gaps` and `diode-receiver gaps --json`: every missing range with the command that resends it.
pub fn gaps_json(replica: &Replica) -> Value {
    let gaps: Vec<Value> = replica
        .gaps()
        .iter()
        .map(|gap| {
            json!({
                "sender_id": gap.sender_id,
                "epoch": gap.epoch,
                "first_sequence": gap.first_sequence,
                "last_sequence": gap.last_sequence,
                "segments": gap.segment_count(),
                "resend_command": resend_command(gap),
            })
        })
        .collect();
    json!({ "gaps": gaps })
}

/// `/api/v1/status` and `diode-receiver status --json`: each stream's progress and latest beacon, the replica's
/// counters, and (from a running receiver) its live counters.
pub fn status_json(replica: &Replica, counters: Option<&ReceiverCounters>) -> Value {
    let now = now_ns();
    let streams: Vec<Value> = replica
        .streams()
        .iter()
        .map(|stream| {
            let beacon = stream.last_beacon.as_ref().map(|b| {
                json!({
                    "received_at": format_rfc3339(b.received_at_ns),
                    "age_seconds": (now - b.received_at_ns) as f64 / 1e9,
                    "epoch": b.epoch,
                    "head_sequence": b.head_sequence,
                    "oldest_retained_sequence": b.oldest_retained_sequence,
                    "records_sealed": b.records_sealed,
                    "spooled_records": b.spooled_records,
                    "sender_software": b.software,
                })
            });
            json!({
                "sender_id": stream.sender_id,
                "epoch": stream.epoch,
                "contiguous_through": stream.contiguous_through,
                "highest_applied": stream.highest_applied,
                "highest_known": stream.highest_known,
                "lag_segments": stream.highest_known - stream.contiguous_through,
                "missing_segments": stream.missing_count,
                "first_seen_at": format_rfc3339(stream.first_seen_at_ns),
                "announced_by_beacon": stream.announced_by_beacon,
                "last_beacon": beacon,
            })
        })
        .collect();
    let mut status = json!({
        "receiver_software": crate::VERSION,
        "replica": replica.path().display().to_string(),
        "series": replica.series_count(),
        "points": replica.total_points(),
        "streams": streams,
        "gaps": gaps_json(replica)["gaps"],
    });
    status["sinks"] = crate::sinks::status_json(replica, None)["sinks"].take();
    if let Some(counters) = counters {
        let rejected: serde_json::Map<String, Value> =
            counters.rejected().into_iter().map(|(reason, count)| (reason.to_owned(), json!(count))).collect();
        let sinks = crate::locks::lock(&counters.sinks).clone();
        status["sinks"] = crate::sinks::status_json(replica, Some(&sinks))["sinks"].take();
        status["counters"] = json!({
            "datagrams_received": counters.datagrams_received.load(Ordering::Relaxed),
            "segments_applied": counters.segments_applied.load(Ordering::Relaxed),
            "segments_recovered_by_fec": counters.segments_recovered_by_fec.load(Ordering::Relaxed),
            "segments_already_applied": counters.segments_already_applied.load(Ordering::Relaxed),
            "segments_shed": counters.segments_shed.load(Ordering::Relaxed),
            "segments_abandoned": counters.segments_abandoned.load(Ordering::Relaxed),
            "points_applied": counters.points_applied.load(Ordering::Relaxed),
            "rejected": rejected,
        });
    }
    status
}

/// The human form of `status`.
pub fn status_text(replica: &Replica) -> String {
    let now = now_ns();
    let mut out = String::new();
    let _ = writeln!(out, "receiver  {}", crate::VERSION);
    let _ = writeln!(out, "replica   {}", replica.path().display());
    let _ = writeln!(out, "series    {}", replica.series_count());
    let _ = writeln!(out, "points    {}", replica.total_points());
    let streams = replica.streams();
    if streams.is_empty() {
        let _ = writeln!(out, "streams   none yet (no segment or beacon received)");
    }
    for stream in &streams {
        let _ = writeln!(
            out,
            "sender {} epoch {}: applied through {} (highest {}, known head {}), {} missing",
            stream.sender_id,
            stream.epoch,
            stream.contiguous_through,
            stream.highest_applied,
            stream.highest_known,
            stream.missing_count
        );
        if let Some(beacon) = &stream.last_beacon {
            let _ = writeln!(
                out,
                "  last beacon {} ({:.1} s ago): head {} of epoch {}, {} records waiting in the sender's spool",
                format_rfc3339(beacon.received_at_ns),
                (now - beacon.received_at_ns) as f64 / 1e9,
                beacon.head_sequence,
                beacon.epoch,
                beacon.spooled_records
            );
            let _ = writeln!(out, "  {}", software_line(&beacon.software));
        }
    }
    out.push_str(&crate::sinks::status_text(replica));
    out.push_str(&gaps_text(replica));
    out
}

/// What `status` says of a sender's software beside this receiver's.
fn software_line(sender: &str) -> String {
    if sender.is_empty() {
        "sender software not announced (a sender older than its beacons' software field)".to_owned()
    } else if sender == crate::VERSION {
        format!("sender software {sender}, the same as this receiver's")
    } else {
        format!("sender software {sender}; this receiver is {}: a mismatched pair", crate::VERSION)
    }
}

/// `diode-receiver gaps`: the missing ranges for a terminal, each with its resend command.
pub fn gaps_text(replica: &Replica) -> String {
    let gaps = replica.gaps();
    let mut out = String::new();
    if gaps.is_empty() {
        out.push_str("no gaps\n");
        return out;
    }
    let total: u64 = gaps.iter().map(Gap::segment_count).sum();
    let _ = writeln!(out, "{total} missing segments in {} ranges; on the OT side run:", gaps.len());
    for gap in &gaps {
        let _ = writeln!(out, "  {}", resend_command(gap));
    }
    out
}

/// Per-stream gauges, labelled by sender and epoch: the highest sequence applied, the highest
/// known (applied or announced by a beacon), the lag between them and the missing sequences. The
/// unlabelled lag gauge follows the latest beacon only; these keep every epoch apart, so a resend
/// of an old epoch shows its own progress.
pub fn stream_metrics(streams: &[diode_replica::StreamStatus]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    type Reading = fn(&diode_replica::StreamStatus) -> u64;
    let gauges: [(&str, &str, Reading); 4] = [
        ("applied_head", "Highest sequence applied, per sender and epoch.", |s| s.highest_applied),
        ("known_head", "Highest sequence applied or announced, per sender and epoch.", |s| s.highest_known),
        ("lag_segments", "Known head minus applied head, per sender and epoch.", |s| {
            s.highest_known.saturating_sub(s.highest_applied)
        }),
        ("missing_segments", "Sequences known but not applied, per sender and epoch.", |s| s.missing_count),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP diode_receiver_stream_{name} {help}\n# TYPE diode_receiver_stream_{name} gauge");
        for stream in streams {
            let _ = writeln!(
                out,
                "diode_receiver_stream_{name}{{sender=\"{}\",epoch=\"{}\"}} {}",
                stream.sender_id,
                stream.epoch,
                value(stream)
            );
        }
    }
    out
}

/// `diode_receiver_build_info` (this build) and `diode_receiver_sender_build_info` (each sender's
/// software, from its latest beacon), so a mismatched pair shows on a dashboard.
pub fn software_metrics(streams: &[diode_replica::StreamStatus]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP diode_receiver_build_info This build's version and commit.\n\
         # TYPE diode_receiver_build_info gauge\ndiode_receiver_build_info{{version=\"{}\"}} 1",
        diode_host::exposition::label_value(crate::VERSION)
    );
    let _ = writeln!(
        out,
        "# HELP diode_receiver_sender_build_info Each sender's software, as its latest beacon names it \
         (empty: not announced).\n# TYPE diode_receiver_sender_build_info gauge"
    );
    let mut senders = std::collections::BTreeMap::new();
    for stream in streams {
        if let Some(beacon) = &stream.last_beacon {
            senders.insert(stream.sender_id, beacon.software.as_str());
        }
    }
    for (sender, software) in senders {
        let mismatch = u8::from(software != crate::VERSION);
        let _ = writeln!(
            out,
            "diode_receiver_sender_build_info{{sender=\"{sender}\",version=\"{}\",differs=\"{mismatch}\"}} 1",
            diode_host::exposition::label_value(software)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(epoch: u64, highest_applied: u64, highest_known: u64, missing_count: u64) -> diode_replica::StreamStatus {
        diode_replica::StreamStatus {
            sender_id: 1,
            epoch,
            contiguous_through: 0,
            highest_applied,
            highest_known,
            missing: Vec::new(),
            missing_count,
            first_seen_at_ns: 0,
            announced_by_beacon: true,
            seen_in_segment: true,
            last_beacon: None,
        }
    }

    #[test]
    fn each_senders_software_is_shown_beside_this_receivers_and_a_mismatch_is_named() {
        let beacon =
            |software: &str| diode_replica::BeaconSummary { software: software.to_owned(), ..Default::default() };
        let mut same = stream(1, 5, 5, 0);
        same.last_beacon = Some(beacon(crate::VERSION));
        let mut older = stream(1, 5, 5, 0);
        older.sender_id = 2;
        older.last_beacon = Some(beacon("0.0.9 (\"odd\")"));
        let text = software_metrics(&[same, older, stream(2, 1, 1, 0)]);
        assert!(text.contains(&format!("diode_receiver_build_info{{version=\"{}\"}} 1", crate::VERSION)), "{text}");
        assert!(
            text.contains(&format!(
                "diode_receiver_sender_build_info{{sender=\"1\",version=\"{}\",differs=\"0\"}} 1",
                crate::VERSION
            )),
            "{text}"
        );
        assert!(
            text.contains(
                "diode_receiver_sender_build_info{sender=\"2\",version=\"0.0.9 (\\\"odd\\\")\",differs=\"1\"} 1"
            ),
            "{text}"
        );
        assert_eq!(text.matches("diode_receiver_sender_build_info{").count(), 2, "one line per sender: {text}");
        assert!(software_line("0.0.9 (x)").contains("mismatched pair"));
        assert!(software_line(crate::VERSION).contains("the same as this receiver's"));
        assert!(software_line("").contains("not announced"));
    }

    #[test]
    fn every_epoch_has_its_own_head_and_lag() {
        let text = stream_metrics(&[stream(1, 40, 50, 10), stream(2, 7, 7, 0)]);
        for line in [
            "diode_receiver_stream_applied_head{sender=\"1\",epoch=\"1\"} 40",
            "diode_receiver_stream_lag_segments{sender=\"1\",epoch=\"1\"} 10",
            "diode_receiver_stream_missing_segments{sender=\"1\",epoch=\"1\"} 10",
            "diode_receiver_stream_applied_head{sender=\"1\",epoch=\"2\"} 7",
            "diode_receiver_stream_lag_segments{sender=\"1\",epoch=\"2\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
    }
}

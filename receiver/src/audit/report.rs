//! What `audit verify` found: totals, epochs, gaps and findings, as a human summary and as JSON.
//!
//! A *finding* is a failure: something in the replica that the signed segments do not back. Gaps
//! that the receiver's tracker records as never received are not findings (the sender can resend
//! them) but are listed, because the hash chain cannot be checked across them.

use std::fmt::Write;
use std::path::PathBuf;

use diode_common::keys::KeyId;
use serde_json::{Value as Json, json};

use super::findings::{Finding, Findings};
use crate::time::format_rfc3339;

/// Version of the JSON report's layout; bumped when a field changes meaning or disappears.
pub const REPORT_VERSION: u32 = 2;

/// A trusted key and its validity window, as the audit used it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKeySummary {
    /// The key's id.
    pub key_id: KeyId,
    /// Start of its validity, in ns since the Unix epoch; `None`: none.
    pub valid_from_ns: Option<i64>,
    /// End of its validity (exclusive), in ns since the Unix epoch; `None`: none.
    pub valid_until_ns: Option<i64>,
}

/// How many verified segments one key signed, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    /// The key's id.
    pub key_id: KeyId,
    /// Verified segments it signed.
    pub segments: u64,
    /// Earliest sealing time among them, in ns since the Unix epoch (sender's clock).
    pub first_sealed_at_ns: i64,
    /// Latest sealing time among them.
    pub last_sealed_at_ns: i64,
}

/// One `(sender, epoch)` stream: where it begins and what the audit saw of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochReport {
    /// The stream's sender.
    pub sender_id: u64,
    /// The stream's epoch.
    pub epoch: u64,
    /// Lowest and highest stored sequence (within the selected range); `None`: nothing stored.
    pub first_sequence: Option<u64>,
    /// See `first_sequence`.
    pub last_sequence: Option<u64>,
    /// Audit entries of the stream (within the selected range).
    pub stored_segments: u64,
    /// The receiver's tracker: highest sequence applied or announced.
    pub highest_known: u64,
    /// When the receiver first heard of the epoch; `None` if the tracker lacks the stream.
    pub first_seen_at_ns: Option<i64>,
    /// Sealing time of the first stored segment.
    pub first_sealed_at_ns: Option<i64>,
    /// The receiver's tracker records that a beacon announced this epoch (its own, or the next
    /// epoch's naming where this one ended).
    pub announced_by_beacon: bool,
    /// Sequence 1 is stored and links to the genesis hash: the epoch's beginning is verified.
    pub begins_at_genesis: bool,
    /// The beacon of this epoch the replica kept (the first received), as the audit verified it.
    pub announcement: Option<Announcement>,
    /// Why the epoch began, from that beacon once verified.
    pub reason: Option<&'static str>,
    /// The last sequence of this epoch, from a signed beacon of the next epoch, and whether the
    /// stored segment there has the hash the beacon names (`None`: not stored).
    pub ended_at_sequence: Option<u64>,
    /// See `ended_at_sequence`.
    pub end_hash_verified: Option<bool>,
}

/// The kept beacon of one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// When the receiver got it (receiver clock).
    pub received_at_ns: i64,
    /// What it says, if it verifies under a trusted key valid when it was sent; otherwise why not.
    pub verified: Result<SignedAnnouncement, String>,
}

/// What a verified epoch beacon says about its epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAnnouncement {
    /// The key that signed it.
    pub key_id: KeyId,
    /// When the sender made it, in ns since the Unix epoch (sender's clock).
    pub sent_at_ns: i64,
    /// When the epoch began, by the sender's clock.
    pub epoch_started_at_ns: i64,
}

/// Why the chain cannot be checked across some sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapKind {
    /// Never applied, according to the receiver's tracker (resend them from the OT side).
    NeverReceived,
    /// Applied according to the tracker, but the audit entries are gone (a finding).
    RemovedAfterApply,
}

/// Missing sequences of one stream, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapReport {
    /// The stream's sender.
    pub sender_id: u64,
    /// The stream's epoch.
    pub epoch: u64,
    /// First sequence of the gap.
    pub first_sequence: u64,
    /// Last sequence of the gap (inclusive).
    pub last_sequence: u64,
    /// Never received, or removed after apply.
    pub kind: GapKind,
}

/// Totals of the point comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PointTotals {
    /// Signed points after last-write-wins, in the checked span.
    pub expected: u64,
    /// Points read back from the replica.
    pub scanned: u64,
    /// Points identical in the replica and the signed segments.
    pub matched: u64,
    /// Points whose value or quality differs (each a finding).
    pub changed: u64,
    /// Signed points missing from the replica (each a finding).
    pub deleted: u64,
    /// Replica points no verified segment contains (each a finding).
    pub added: u64,
    /// Series × windows that could not be read.
    pub unreadable: u64,
    /// Time windows the comparison was cut into (bounded memory), and segment decodes it took.
    pub windows: u64,
    /// Segment payloads decoded for the comparison.
    pub segment_decodes: u64,
    /// Chunks of catalogued series in the span (the inventory), chunks checked against their
    /// segments, and chunks exactly as their segment wrote them.
    pub chunks_stored: u64,
    /// See `chunks_stored`.
    pub chunks_checked: u64,
    /// See `chunks_stored`.
    pub chunks_matched: u64,
}

impl PointTotals {
    /// Adds `other`'s totals (of another window or series) to these.
    pub fn add(&mut self, other: &PointTotals) {
        self.expected += other.expected;
        self.scanned += other.scanned;
        self.matched += other.matched;
        self.changed += other.changed;
        self.deleted += other.deleted;
        self.added += other.added;
        self.unreadable += other.unreadable;
        self.windows += other.windows;
        self.segment_decodes += other.segment_decodes;
        self.chunks_stored += other.chunks_stored;
        self.chunks_checked += other.chunks_checked;
        self.chunks_matched += other.chunks_matched;
    }
}

/// Everything `audit verify` found.
#[derive(Debug, Clone)]
pub struct AuditReport {
    /// The replica directory audited.
    pub replica: PathBuf,
    /// The `--from-seq`/`--to-seq` range selected; `None`: every sequence.
    pub sequences: Option<(u64, u64)>,
    /// The keys the audit trusted.
    pub trusted_keys: Vec<TrustedKeySummary>,
    /// Audit entries read.
    pub segments_stored: u64,
    /// Within the selected sequence range.
    pub segments_selected: u64,
    /// Selected segments that verify.
    pub segments_verified: u64,
    /// Records carried by verified selected segments.
    pub records_signed: u64,
    /// Chain links checked between stored neighbours.
    pub links_checked: u64,
    /// Which keys signed the verified segments.
    pub keys_used: Vec<KeyUsage>,
    /// Every stream, in order.
    pub epochs: Vec<EpochReport>,
    /// Sequences the chain cannot be checked across.
    pub gaps: Vec<GapReport>,
    /// The data-time span whose points were compared; `None`: nothing to compare.
    pub point_span: Option<(i64, i64)>,
    /// The point comparison's totals.
    pub points: PointTotals,
    /// What the signed segments do not back.
    pub findings: Findings,
    /// Seconds spent walking the audit log, and in all (the rest compares points).
    pub walk_seconds: f64,
    /// See `walk_seconds`.
    pub elapsed_seconds: f64,
}

impl AuditReport {
    /// No finding at all: every point is backed by a verified segment and vice versa.
    pub fn is_clean(&self) -> bool {
        self.findings.total() == 0
    }

    /// The report as JSON (layout [`REPORT_VERSION`]), for `audit verify --json`.
    pub fn to_json(&self) -> Json {
        let time = |ns: Option<i64>| ns.map(format_rfc3339);
        json!({
            "format": "diode-audit-report",
            "version": REPORT_VERSION,
            "clean": self.is_clean(),
            "replica": self.replica.display().to_string(),
            "sequence_range": self.sequences.map(|(from, to)| json!({ "from": from, "to": to })),
            "elapsed_seconds": self.elapsed_seconds,
            "walk_seconds": self.walk_seconds,
            "trusted_keys": self.trusted_keys.iter().map(|key| json!({
                "key_id": key.key_id.to_string(),
                "valid_from": time(key.valid_from_ns),
                "valid_until": time(key.valid_until_ns),
            })).collect::<Vec<_>>(),
            "segments": {
                "stored": self.segments_stored,
                "selected": self.segments_selected,
                "verified": self.segments_verified,
                "records_signed": self.records_signed,
            },
            "chain": {
                "links_checked": self.links_checked,
                "links_broken": self.findings.count("chain_broken"),
            },
            "keys_used": self.keys_used.iter().map(|usage| json!({
                "key_id": usage.key_id.to_string(),
                "segments": usage.segments,
                "first_sealed_at": format_rfc3339(usage.first_sealed_at_ns),
                "last_sealed_at": format_rfc3339(usage.last_sealed_at_ns),
            })).collect::<Vec<_>>(),
            "epochs": self.epochs.iter().map(epoch_json).collect::<Vec<_>>(),
            "gaps": self.gaps.iter().map(gap_json).collect::<Vec<_>>(),
            "points": {
                "span": self.point_span.map(|(from, to)| json!({ "from_ns": from, "to_ns": to })),
                "expected": self.points.expected,
                "scanned": self.points.scanned,
                "matched": self.points.matched,
                "changed": self.points.changed,
                "deleted": self.points.deleted,
                "added": self.points.added,
                "unreadable": self.points.unreadable,
                "windows": self.points.windows,
                "segment_decodes": self.points.segment_decodes,
            },
            "chunks": {
                "stored": self.points.chunks_stored,
                "checked": self.points.chunks_checked,
                "matched": self.points.chunks_matched,
            },
            "finding_counts": self.findings.counts,
            "findings": self.findings.listed.iter().map(Finding::to_json).collect::<Vec<_>>(),
            "findings_not_listed": self.findings.not_listed,
        })
    }

    /// The human summary.
    pub fn summary_text(&self) -> String {
        let mut out = String::new();
        self.write_scope(&mut out);
        self.write_segments(&mut out);
        self.write_epochs(&mut out);
        self.write_gaps(&mut out);
        self.write_points(&mut out);
        self.write_verdict(&mut out);
        out
    }

    /// The replica, the sequences checked and the trusted keys.
    fn write_scope(&self, out: &mut String) {
        let _ = writeln!(out, "audit of the replica {}", self.replica.display());
        if let Some((from, to)) = self.sequences {
            let _ = writeln!(out, "  sequences {from}..={to} of every stream");
        }
        for key in &self.trusted_keys {
            let window = |ns: Option<i64>, open: &str| ns.map_or(open.to_owned(), format_rfc3339);
            let _ = writeln!(
                out,
                "  trusted key {} valid from {} until {}",
                key.key_id,
                window(key.valid_from_ns, "the beginning"),
                window(key.valid_until_ns, "no end")
            );
        }
    }

    /// Segments and chain links checked, and the keys that signed them.
    fn write_segments(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "segments: {} stored, {} checked, {} verified ({} records signed); {} chain links checked",
            self.segments_stored,
            self.segments_selected,
            self.segments_verified,
            self.records_signed,
            self.links_checked
        );
        for usage in &self.keys_used {
            let _ = writeln!(
                out,
                "  key {} signed {} segments sealed {} .. {}",
                usage.key_id,
                usage.segments,
                format_rfc3339(usage.first_sealed_at_ns),
                format_rfc3339(usage.last_sealed_at_ns)
            );
        }
    }

    /// Each epoch: what is stored of it, how it began and where it ended.
    fn write_epochs(&self, out: &mut String) {
        let _ = writeln!(out, "epochs:");
        for epoch in &self.epochs {
            let sequences = match (epoch.first_sequence, epoch.last_sequence) {
                (Some(first), Some(last)) => format!("sequences {first}..={last} ({} stored)", epoch.stored_segments),
                _ => "no stored segments".to_owned(),
            };
            let _ = writeln!(
                out,
                "  sender {} epoch {}: {sequences}, head known {}; first seen {}; first sealed {}; {}",
                epoch.sender_id,
                epoch.epoch,
                epoch.highest_known,
                epoch.first_seen_at_ns.map_or("never (no tracker entry)".to_owned(), format_rfc3339),
                epoch.first_sealed_at_ns.map_or("-".to_owned(), format_rfc3339),
                if epoch.begins_at_genesis {
                    "begins at sequence 1 (genesis link verified)"
                } else {
                    "beginning not stored"
                },
            );
            let _ = writeln!(out, "    {}", announced(epoch));
            if let Some(last) = epoch.ended_at_sequence {
                let verified = match epoch.end_hash_verified {
                    Some(true) => "its hash matches the stored segment",
                    Some(false) => "its hash does NOT match the stored segment",
                    None => "that segment is not stored",
                };
                let _ = writeln!(out, "    ended at sequence {last} per the next epoch's signed beacon; {verified}");
            }
        }
    }

    fn write_gaps(&self, out: &mut String) {
        for gap in &self.gaps {
            let what = match gap.kind {
                GapKind::NeverReceived => "never received (resend from the OT side)",
                GapKind::RemovedAfterApply => "REMOVED after apply",
            };
            let _ = writeln!(
                out,
                "  gap: sender {} epoch {} sequences {}..={} {what}; chain unchecked between {} and {}",
                gap.sender_id,
                gap.epoch,
                gap.first_sequence,
                gap.last_sequence,
                gap.first_sequence.saturating_sub(1),
                gap.last_sequence.saturating_add(1)
            );
        }
    }

    /// The point and chunk comparison's totals.
    fn write_points(&self, out: &mut String) {
        let Some(span) = self.point_span else {
            let _ = writeln!(out, "points: nothing to compare");
            return;
        };
        let scope = match span {
            (i64::MIN, i64::MAX) => "all times".to_owned(),
            (from, to) => format!("{} .. {}", format_rfc3339(from), format_rfc3339(to)),
        };
        let p = &self.points;
        let _ = writeln!(
            out,
            "points ({scope}): {} signed, {} in the replica, {} match; {} changed, {} deleted, {} added, {} \
             unreadable ({} windows, {} segment decodes)",
            p.expected, p.scanned, p.matched, p.changed, p.deleted, p.added, p.unreadable, p.windows, p.segment_decodes
        );
        let _ = writeln!(
            out,
            "chunks: {} stored for catalogued series, {} checked against their segments, {} exactly as signed",
            p.chunks_stored, p.chunks_checked, p.chunks_matched
        );
    }

    /// CLEAN, or FAILED with the findings listed.
    fn write_verdict(&self, out: &mut String) {
        if self.is_clean() {
            let _ = writeln!(out, "CLEAN: every point in the replica is backed by a verified, signed segment");
            return;
        }
        let counts: Vec<String> = self.findings.counts.iter().map(|(kind, count)| format!("{count} {kind}")).collect();
        let _ = writeln!(out, "FAILED: {} findings ({})", self.findings.total(), counts.join(", "));
        for finding in &self.findings.listed {
            let _ = writeln!(out, "  {}", finding.describe());
        }
        if self.findings.not_listed > 0 {
            let _ = writeln!(out, "  ... and {} more (not listed)", self.findings.not_listed);
        }
    }
}

/// One epoch of the JSON report.
fn epoch_json(epoch: &EpochReport) -> Json {
    let time = |ns: Option<i64>| ns.map(format_rfc3339);
    json!({
        "sender_id": epoch.sender_id,
        "epoch": epoch.epoch,
        "first_sequence": epoch.first_sequence,
        "last_sequence": epoch.last_sequence,
        "stored_segments": epoch.stored_segments,
        "highest_known": epoch.highest_known,
        "first_seen_at": time(epoch.first_seen_at_ns),
        "first_sealed_at": time(epoch.first_sealed_at_ns),
        "announced_by_beacon": epoch.announced_by_beacon,
        "begins_at_genesis": epoch.begins_at_genesis,
        "announcement": epoch.announcement.as_ref().map(|announcement| match &announcement.verified {
            Ok(signed) => json!({
                "received_at": format_rfc3339(announcement.received_at_ns),
                "verified": true,
                "key_id": signed.key_id.to_string(),
                "sent_at": format_rfc3339(signed.sent_at_ns),
                "epoch_started_at": format_rfc3339(signed.epoch_started_at_ns),
            }),
            Err(why) => json!({
                "received_at": format_rfc3339(announcement.received_at_ns),
                "verified": false,
                "why": why,
            }),
        }),
        "reason": epoch.reason,
        "ended_at_sequence": epoch.ended_at_sequence,
        "end_hash_verified": epoch.end_hash_verified,
    })
}

/// One gap of the JSON report.
fn gap_json(gap: &GapReport) -> Json {
    json!({
        "sender_id": gap.sender_id,
        "epoch": gap.epoch,
        "first_sequence": gap.first_sequence,
        "last_sequence": gap.last_sequence,
        "kind": match gap.kind { GapKind::NeverReceived => "never_received", GapKind::RemovedAfterApply => "removed_after_apply" },
        "chain_unchecked_between": [gap.first_sequence.saturating_sub(1), gap.last_sequence.saturating_add(1)],
    })
}

/// Whether and how a signed beacon announced an epoch, for humans.
fn announced(epoch: &EpochReport) -> String {
    match (&epoch.announcement, epoch.reason) {
        (Some(Announcement { verified: Ok(signed), .. }), Some(reason)) => format!(
            "announced by a signed beacon: began because of {reason} at {} (key {}, sent {})",
            format_rfc3339(signed.epoch_started_at_ns),
            signed.key_id,
            format_rfc3339(signed.sent_at_ns)
        ),
        (Some(Announcement { verified: Err(why), .. }), _) => format!("its kept beacon does NOT verify: {why}"),
        _ if epoch.announced_by_beacon => {
            "announced by a beacon (no beacon of this epoch kept: the reason it began is unknown)".to_owned()
        }
        _ => "NOT announced by a beacon".to_owned(),
    }
}

//! What `audit verify` found: totals, epochs, gaps and findings, as a human summary and as JSON.
//!
//! A *finding* is a failure: something in the replica that the signed segments do not back. Gaps
//! that the receiver's tracker records as never received are not findings (the sender can resend
//! them) but are listed, because the hash chain cannot be checked across them.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

use diode_common::keys::{KeyId, encode_hex};
use diode_common::record::{Quality, Value};
use diode_replica::{PointKey, SegmentKey};
use serde_json::{Value as Json, json};

use super::{describe_value, value_json};
use crate::time::format_rfc3339;

/// Version of the JSON report's layout; bumped when a field changes meaning or disappears.
pub const REPORT_VERSION: u32 = 2;

/// One thing the signed segments do not back.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// A stored segment fails a check: `check` is the short label of `OpenError::reason_label`.
    SegmentInvalid { segment: SegmentKey, check: &'static str, message: String },
    /// An audit entry is stored under another position than its header names.
    SegmentMisplaced { stored_at: SegmentKey, header_says: SegmentKey },
    /// An audit entry cannot be read as one (its key is not a position, or its value is not an
    /// audit entry): `entry` is its position when the key is one.
    AuditEntryUnreadable { entry: Option<SegmentKey>, key_hex: String, reason: String },
    /// Segment `segment` does not link to the stored segment before it (or to the genesis hash).
    ChainBroken { segment: SegmentKey, expected_previous_hash: String, found_previous_hash: String },
    /// The receiver's tracker says these sequences were applied, but their audit entries are gone.
    SegmentsRemoved { sender_id: u64, epoch: u64, first_sequence: u64, last_sequence: u64 },
    /// Audit entries the receiver's tracker never recorded as applied (inserted afterwards?).
    SegmentsUnrecorded { sender_id: u64, epoch: u64, first_sequence: u64, last_sequence: u64 },
    /// The replica's point differs from the last-write-wins record of the signed segments.
    PointChanged {
        series: String,
        timestamp_ns: i64,
        expected: (Value, Quality),
        found: (Value, Quality),
        segment: SegmentKey,
    },
    /// A signed point is missing from the replica.
    PointDeleted { series: String, timestamp_ns: i64, expected: (Value, Quality), segment: SegmentKey },
    /// The replica holds a point that no verified segment contains.
    PointAdded { series: String, series_id: u32, timestamp_ns: i64, found: (Value, Quality) },
    /// The beacon the replica kept for an epoch does not verify (altered, or not a beacon of that
    /// sender and epoch), though its key is trusted.
    BeaconInvalid { sender_id: u64, epoch: u64, message: String },
    /// The sender's signed beacon says its previous epoch ended with a segment whose hash differs
    /// from the stored, verified segment at that position: two signed segments claim one place.
    EpochEndMismatch { segment: SegmentKey, beacon_hash: String, stored_hash: String },
    /// A signed beacon (the one kept of an epoch, or the sender's latest) names as its head a
    /// segment whose hash differs from the stored, verified segment at that position.
    BeaconHeadMismatch { segment: SegmentKey, beacon_hash: String, stored_hash: String },
    /// Points of a series could not be read back (a damaged chunk); the range was not checked.
    PointsUnreadable { series: String, series_id: u32, from_ns: i64, to_ns: i64, message: String },
    /// A stored chunk differs from what its segment signed for that series and bucket where the
    /// visible points do not show it (a superseded value): the first such timestamp, with what the
    /// segment signed there and what the chunk holds (`None`: no row at that time).
    ChunkChanged {
        series: String,
        chunk: PointKey,
        timestamp_ns: i64,
        expected: Option<(Value, Quality)>,
        found: Option<(Value, Quality)>,
        rows_differing: u64,
    },
    /// A chunk is stored under a segment that wrote no such chunk (not stored, not verified, or
    /// without records of that series in that bucket), and some of its points hide behind others.
    ChunkUnsigned { series: String, chunk: PointKey, rows: u64, first_timestamp_ns: i64 },
    /// A chunk a verified segment wrote is gone, and some of its points were hidden behind later
    /// writes (the visible ones are named as deleted points).
    ChunkDeleted { series: String, chunk: PointKey, rows: u64, first_timestamp_ns: i64, expected: (Value, Quality) },
    /// A chunk under a series id the catalog does not hold: no query shows it, no segment backs it.
    ChunkUncatalogued { chunk: PointKey, rows: Option<u64>, first_timestamp_ns: Option<i64> },
    /// An entry of the points column family whose key is not a points key.
    ChunkKeyMalformed { key_hex: String, value_bytes: u64 },
    /// Fewer (or more) chunks of catalogued series were checked than the inventory counted.
    ChunksUnaccounted { stored: u64, checked: u64 },
}

impl Finding {
    /// Stable label, used as `kind` in JSON and for the counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SegmentInvalid { .. } => "segment_invalid",
            Self::SegmentMisplaced { .. } => "segment_misplaced",
            Self::AuditEntryUnreadable { .. } => "audit_entry_unreadable",
            Self::ChainBroken { .. } => "chain_broken",
            Self::SegmentsRemoved { .. } => "segments_removed",
            Self::SegmentsUnrecorded { .. } => "segments_unrecorded",
            Self::PointChanged { .. } => "point_changed",
            Self::PointDeleted { .. } => "point_deleted",
            Self::PointAdded { .. } => "point_added",
            Self::BeaconInvalid { .. } => "beacon_invalid",
            Self::EpochEndMismatch { .. } => "epoch_end_mismatch",
            Self::BeaconHeadMismatch { .. } => "beacon_head_mismatch",
            Self::PointsUnreadable { .. } => "points_unreadable",
            Self::ChunkChanged { .. } => "chunk_changed",
            Self::ChunkUnsigned { .. } => "chunk_unsigned",
            Self::ChunkDeleted { .. } => "chunk_deleted",
            Self::ChunkUncatalogued { .. } => "chunk_uncatalogued",
            Self::ChunkKeyMalformed { .. } => "chunk_key_malformed",
            Self::ChunksUnaccounted { .. } => "chunks_unaccounted",
        }
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        let at = |timestamp_ns: i64| format!("{} ({timestamp_ns} ns)", format_rfc3339(timestamp_ns));
        match self {
            Self::SegmentInvalid { segment, message, .. } => format!("{}: {message}", segment_name(*segment)),
            Self::SegmentMisplaced { stored_at, header_says } => format!(
                "the audit entry stored as {} holds the signed header of {}",
                segment_name(*stored_at),
                segment_name(*header_says)
            ),
            Self::AuditEntryUnreadable { entry, key_hex, reason } => match entry {
                Some(entry) => format!("the audit entry of {} cannot be read: {reason}", segment_name(*entry)),
                None => format!("the audit entry with key {key_hex} cannot be read: {reason}"),
            },
            Self::ChainBroken { segment, expected_previous_hash, found_previous_hash } => format!(
                "{} does not link to sequence {}: it names previous hash {found_previous_hash}, the stored \
                 predecessor hashes to {expected_previous_hash}",
                segment_name(*segment),
                segment.sequence.saturating_sub(1)
            ),
            Self::SegmentsRemoved { sender_id, epoch, first_sequence, last_sequence } => format!(
                "sender {sender_id} epoch {epoch} sequences {first_sequence}..={last_sequence}: applied according to \
                 the receiver's tracker, but their audit entries are gone"
            ),
            Self::SegmentsUnrecorded { sender_id, epoch, first_sequence, last_sequence } => format!(
                "sender {sender_id} epoch {epoch} sequences {first_sequence}..={last_sequence}: audit entries that \
                 the receiver's tracker never recorded as applied"
            ),
            Self::PointChanged { series, timestamp_ns, expected, found, segment } => format!(
                "point CHANGED: {series} at {}: replica holds {}, {} signed {}",
                at(*timestamp_ns),
                describe_value(&found.0, found.1),
                segment_name(*segment),
                describe_value(&expected.0, expected.1)
            ),
            Self::PointDeleted { series, timestamp_ns, expected, segment } => format!(
                "point DELETED: {series} at {}: {} signed {}, the replica holds nothing",
                at(*timestamp_ns),
                segment_name(*segment),
                describe_value(&expected.0, expected.1)
            ),
            Self::PointAdded { series, timestamp_ns, found, .. } => format!(
                "point ADDED: {series} at {}: the replica holds {}, which no verified segment contains",
                at(*timestamp_ns),
                describe_value(&found.0, found.1)
            ),
            Self::BeaconInvalid { sender_id, epoch, message } => {
                format!("the beacon kept for sender {sender_id} epoch {epoch} does not verify: {message}")
            }
            Self::EpochEndMismatch { segment, beacon_hash, stored_hash } => format!(
                "the sender's signed beacon says its epoch {} ended with sequence {} hashing to {beacon_hash}; the \
                 stored segment there hashes to {stored_hash} (a forked chain)",
                segment.epoch, segment.sequence
            ),
            Self::BeaconHeadMismatch { segment, beacon_hash, stored_hash } => format!(
                "a signed beacon of sender {} epoch {} says its head, sequence {}, hashes to {beacon_hash}; the \
                 stored segment there hashes to {stored_hash} (a forked chain)",
                segment.sender_id, segment.epoch, segment.sequence
            ),
            Self::PointsUnreadable { series, from_ns, to_ns, message, .. } => format!(
                "points of {series} between {} and {} cannot be read: {message}",
                format_rfc3339(*from_ns),
                format_rfc3339(*to_ns)
            ),
            Self::ChunkChanged { series, chunk, timestamp_ns, expected, found, rows_differing } => {
                let shown = |point: &Option<(Value, Quality)>| {
                    point.as_ref().map_or("nothing".to_owned(), |(value, quality)| describe_value(value, *quality))
                };
                format!(
                    "chunk CHANGED: {series}, {}: at {} it holds {}, the segment signed {} ({rows_differing} rows \
                     differ, hidden behind later writes)",
                    chunk_name(chunk),
                    at(*timestamp_ns),
                    shown(found),
                    shown(expected)
                )
            }
            Self::ChunkUnsigned { series, chunk, rows, first_timestamp_ns } => format!(
                "chunk UNSIGNED: {series}, {}: {rows} points from {}, but no verified segment wrote that chunk",
                chunk_name(chunk),
                at(*first_timestamp_ns)
            ),
            Self::ChunkDeleted { series, chunk, rows, first_timestamp_ns, expected } => format!(
                "chunk DELETED: {series}, {}: the segment signed {rows} points there (at {}: {}), the replica \
                 holds no such chunk",
                chunk_name(chunk),
                at(*first_timestamp_ns),
                describe_value(&expected.0, expected.1)
            ),
            Self::ChunkUncatalogued { chunk, rows, first_timestamp_ns } => format!(
                "chunk of an UNCATALOGUED series id {}, {}: {} points from {}; the catalog holds no such series, so \
                 no query shows them and no segment backs them",
                chunk.series_id,
                chunk_name(chunk),
                rows.map_or("undecodable".to_owned(), |rows| rows.to_string()),
                first_timestamp_ns.map_or("-".to_owned(), at)
            ),
            Self::ChunkKeyMalformed { key_hex, value_bytes } => format!(
                "the points column family holds a {value_bytes}-byte value under the key {key_hex}, which is not a \
                 points key (36 bytes)"
            ),
            Self::ChunksUnaccounted { stored, checked } => format!(
                "the audit checked {checked} chunks of catalogued series but the replica holds {stored}: it changed \
                 while the audit ran, or chunks escaped the check; run the audit again"
            ),
        }
    }

    pub fn to_json(&self) -> Json {
        let mut object = match self {
            Self::SegmentInvalid { segment, check, message } => {
                json!({ "segment": segment_json(*segment), "check": check, "message": message })
            }
            Self::SegmentMisplaced { stored_at, header_says } => {
                json!({ "stored_at": segment_json(*stored_at), "header_says": segment_json(*header_says) })
            }
            Self::AuditEntryUnreadable { entry, key_hex, reason } => {
                json!({ "segment": entry.map(segment_json), "key": key_hex, "reason": reason })
            }
            Self::ChainBroken { segment, expected_previous_hash, found_previous_hash } => json!({
                "segment": segment_json(*segment),
                "expected_previous_hash": expected_previous_hash,
                "found_previous_hash": found_previous_hash,
            }),
            Self::SegmentsRemoved { sender_id, epoch, first_sequence, last_sequence }
            | Self::SegmentsUnrecorded { sender_id, epoch, first_sequence, last_sequence } => json!({
                "sender_id": sender_id, "epoch": epoch,
                "first_sequence": first_sequence, "last_sequence": last_sequence,
            }),
            Self::PointChanged { series, timestamp_ns, expected, found, segment } => json!({
                "series": series,
                "timestamp_ns": timestamp_ns,
                "time": format_rfc3339(*timestamp_ns),
                "expected": point_json(expected),
                "found": point_json(found),
                "segment": segment_json(*segment),
            }),
            Self::PointDeleted { series, timestamp_ns, expected, segment } => json!({
                "series": series,
                "timestamp_ns": timestamp_ns,
                "time": format_rfc3339(*timestamp_ns),
                "expected": point_json(expected),
                "segment": segment_json(*segment),
            }),
            Self::PointAdded { series, series_id, timestamp_ns, found } => json!({
                "series": series,
                "series_id": series_id,
                "timestamp_ns": timestamp_ns,
                "time": format_rfc3339(*timestamp_ns),
                "found": point_json(found),
            }),
            Self::BeaconInvalid { sender_id, epoch, message } => {
                json!({ "sender_id": sender_id, "epoch": epoch, "message": message })
            }
            Self::EpochEndMismatch { segment, beacon_hash, stored_hash }
            | Self::BeaconHeadMismatch { segment, beacon_hash, stored_hash } => json!({
                "segment": segment_json(*segment), "beacon_hash": beacon_hash, "stored_hash": stored_hash,
            }),
            Self::PointsUnreadable { series, series_id, from_ns, to_ns, message } => json!({
                "series": series, "series_id": series_id,
                "from_ns": from_ns, "to_ns": to_ns, "message": message,
            }),
            Self::ChunkChanged { series, chunk, timestamp_ns, expected, found, rows_differing } => json!({
                "series": series,
                "chunk": chunk_json(chunk),
                "timestamp_ns": timestamp_ns,
                "time": format_rfc3339(*timestamp_ns),
                "expected": expected.as_ref().map(point_json),
                "found": found.as_ref().map(point_json),
                "rows_differing": rows_differing,
            }),
            Self::ChunkUnsigned { series, chunk, rows, first_timestamp_ns } => json!({
                "series": series, "chunk": chunk_json(chunk), "rows": rows,
                "first_timestamp_ns": first_timestamp_ns, "first_time": format_rfc3339(*first_timestamp_ns),
            }),
            Self::ChunkDeleted { series, chunk, rows, first_timestamp_ns, expected } => json!({
                "series": series, "chunk": chunk_json(chunk), "rows": rows,
                "first_timestamp_ns": first_timestamp_ns, "first_time": format_rfc3339(*first_timestamp_ns),
                "expected": point_json(expected),
            }),
            Self::ChunkUncatalogued { chunk, rows, first_timestamp_ns } => json!({
                "chunk": chunk_json(chunk), "rows": rows, "first_timestamp_ns": first_timestamp_ns,
            }),
            Self::ChunkKeyMalformed { key_hex, value_bytes } => json!({ "key": key_hex, "value_bytes": value_bytes }),
            Self::ChunksUnaccounted { stored, checked } => json!({ "stored": stored, "checked": checked }),
        };
        object["kind"] = json!(self.kind());
        object
    }
}

pub(crate) fn segment_name(key: SegmentKey) -> String {
    format!("segment {} of sender {} epoch {}", key.sequence, key.sender_id, key.epoch)
}

/// A chunk by its series id, bucket and writing segment, for humans.
fn chunk_name(chunk: &PointKey) -> String {
    format!(
        "the chunk of the hour from {} stored as written by {}",
        format_rfc3339(chunk.bucket_start_ns),
        segment_name(SegmentKey { sender_id: chunk.sender_id, epoch: chunk.epoch, sequence: chunk.sequence })
    )
}

fn chunk_json(chunk: &PointKey) -> Json {
    json!({
        "series_id": chunk.series_id,
        "bucket_start_ns": chunk.bucket_start_ns,
        "bucket_start": format_rfc3339(chunk.bucket_start_ns),
        "segment": { "sender_id": chunk.sender_id, "epoch": chunk.epoch, "sequence": chunk.sequence },
    })
}

fn segment_json(key: SegmentKey) -> Json {
    json!({ "sender_id": key.sender_id, "epoch": key.epoch, "sequence": key.sequence })
}

fn point_json((value, quality): &(Value, Quality)) -> Json {
    json!({ "value": value_json(value), "kind": value.kind().name(), "quality": quality.0, "quality_text": quality.to_string() })
}

/// Findings as they are collected: every one counted, the first `limit` kept.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    pub listed: Vec<Finding>,
    pub counts: BTreeMap<&'static str, u64>,
    pub not_listed: u64,
    pub limit: usize,
}

impl Findings {
    pub fn new(limit: usize) -> Findings {
        Findings { limit, ..Findings::default() }
    }

    pub fn push(&mut self, finding: Finding) {
        *self.counts.entry(finding.kind()).or_insert(0) += 1;
        if self.listed.len() < self.limit {
            self.listed.push(finding);
        } else {
            self.not_listed += 1;
        }
    }

    /// Adds `other`'s findings (kept in order up to the limit).
    pub fn merge(&mut self, other: Findings) {
        for (kind, count) in other.counts {
            *self.counts.entry(kind).or_insert(0) += count;
        }
        let room = self.limit.saturating_sub(self.listed.len());
        let listed = other.listed.len();
        self.not_listed += other.not_listed + listed.saturating_sub(room) as u64;
        self.listed.extend(other.listed.into_iter().take(room));
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn count(&self, kind: &str) -> u64 {
        self.counts.get(kind).copied().unwrap_or(0)
    }
}

/// A trusted key and its validity window, as the audit used it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKeySummary {
    pub key_id: KeyId,
    pub valid_from_ns: Option<i64>,
    pub valid_until_ns: Option<i64>,
}

/// How many verified segments one key signed, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    pub key_id: KeyId,
    pub segments: u64,
    pub first_sealed_at_ns: i64,
    pub last_sealed_at_ns: i64,
}

/// One `(sender, epoch)` stream: where it begins and what the audit saw of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochReport {
    pub sender_id: u64,
    pub epoch: u64,
    /// Lowest and highest stored sequence (within the selected range); `None`: nothing stored.
    pub first_sequence: Option<u64>,
    pub last_sequence: Option<u64>,
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
    pub key_id: KeyId,
    pub sent_at_ns: i64,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapReport {
    pub sender_id: u64,
    pub epoch: u64,
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub kind: GapKind,
}

/// Totals of the point comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PointTotals {
    /// Signed points after last-write-wins, in the checked span.
    pub expected: u64,
    /// Points read back from the replica.
    pub scanned: u64,
    pub matched: u64,
    pub changed: u64,
    pub deleted: u64,
    pub added: u64,
    /// Series × windows that could not be read.
    pub unreadable: u64,
    /// Time windows the comparison was cut into (bounded memory), and segment decodes it took.
    pub windows: u64,
    pub segment_decodes: u64,
    /// Chunks of catalogued series in the span (the inventory), chunks checked against their
    /// segments, and chunks exactly as their segment wrote them.
    pub chunks_stored: u64,
    pub chunks_checked: u64,
    pub chunks_matched: u64,
}

impl PointTotals {
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
    pub replica: PathBuf,
    pub sequences: Option<(u64, u64)>,
    pub trusted_keys: Vec<TrustedKeySummary>,
    /// Audit entries read.
    pub segments_stored: u64,
    /// Within the selected sequence range.
    pub segments_selected: u64,
    /// Selected segments that verify.
    pub segments_verified: u64,
    /// Records carried by verified selected segments.
    pub records_signed: u64,
    pub links_checked: u64,
    pub keys_used: Vec<KeyUsage>,
    pub epochs: Vec<EpochReport>,
    pub gaps: Vec<GapReport>,
    /// The data-time span whose points were compared; `None`: nothing to compare.
    pub point_span: Option<(i64, i64)>,
    pub points: PointTotals,
    pub findings: Findings,
    /// Seconds spent walking the audit log, and in all (the rest compares points).
    pub walk_seconds: f64,
    pub elapsed_seconds: f64,
}

impl AuditReport {
    /// No finding at all: every point is backed by a verified segment and vice versa.
    pub fn is_clean(&self) -> bool {
        self.findings.total() == 0
    }

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
            "epochs": self.epochs.iter().map(|epoch| json!({
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
            })).collect::<Vec<_>>(),
            "gaps": self.gaps.iter().map(|gap| json!({
                "sender_id": gap.sender_id,
                "epoch": gap.epoch,
                "first_sequence": gap.first_sequence,
                "last_sequence": gap.last_sequence,
                "kind": match gap.kind { GapKind::NeverReceived => "never_received", GapKind::RemovedAfterApply => "removed_after_apply" },
                "chain_unchecked_between": [gap.first_sequence.saturating_sub(1), gap.last_sequence.saturating_add(1)],
            })).collect::<Vec<_>>(),
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
        match self.point_span {
            Some(span) => {
                let scope = match span {
                    (i64::MIN, i64::MAX) => "all times".to_owned(),
                    (from, to) => format!("{} .. {}", format_rfc3339(from), format_rfc3339(to)),
                };
                let p = &self.points;
                let _ = writeln!(
                    out,
                    "points ({scope}): {} signed, {} in the replica, {} match; {} changed, {} deleted, {} added, {} \
                     unreadable ({} windows, {} segment decodes)",
                    p.expected,
                    p.scanned,
                    p.matched,
                    p.changed,
                    p.deleted,
                    p.added,
                    p.unreadable,
                    p.windows,
                    p.segment_decodes
                );
            }
            None => {
                let _ = writeln!(out, "points: nothing to compare");
            }
        }
        if self.point_span.is_some() {
            let p = &self.points;
            let _ = writeln!(
                out,
                "chunks: {} stored for catalogued series, {} checked against their segments, {} exactly as signed",
                p.chunks_stored, p.chunks_checked, p.chunks_matched
            );
        }
        if self.is_clean() {
            let _ = writeln!(out, "CLEAN: every point in the replica is backed by a verified, signed segment");
        } else {
            let counts: Vec<String> =
                self.findings.counts.iter().map(|(kind, count)| format!("{count} {kind}")).collect();
            let _ = writeln!(out, "FAILED: {} findings ({})", self.findings.total(), counts.join(", "));
            for finding in &self.findings.listed {
                let _ = writeln!(out, "  {}", finding.describe());
            }
            if self.findings.not_listed > 0 {
                let _ = writeln!(out, "  ... and {} more (not listed)", self.findings.not_listed);
            }
        }
        out
    }
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

/// Hex of a hash, for findings.
pub(crate) fn hash_hex(hash: &[u8; 32]) -> String {
    encode_hex(hash)
}

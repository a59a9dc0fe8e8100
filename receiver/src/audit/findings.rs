//! Findings: each thing in the replica that the signed segments do not back, with its stable
//! label, its line for humans and its JSON; and [`Findings`], which counts them all and keeps the
//! first few.

use std::collections::BTreeMap;

use diode_common::keys::encode_hex;
use diode_common::record::{Quality, Value};
use diode_replica::{PointKey, SegmentKey};
use serde_json::{Value as Json, json};

use crate::time::format_rfc3339;

/// `value (kind, quality)` for humans.
pub use diode_common::proof::describe_point as describe_value;

/// One thing the signed segments do not back.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// A stored segment fails a check: `check` is the short label of `OpenError::reason_label`.
    SegmentInvalid {
        /// The segment's position: sender, epoch and sequence.
        segment: SegmentKey,
        /// The failed check's short label (`OpenError::reason_label`).
        check: &'static str,
        /// The full reason, for the report.
        message: String,
    },
    /// An audit entry is stored under another position than its header names.
    SegmentMisplaced {
        /// The position the entry is stored under.
        stored_at: SegmentKey,
        /// The position its signed header names.
        header_says: SegmentKey,
    },
    /// An audit entry cannot be read as one (its key is not a position, or its value is not an
    /// audit entry): `entry` is its position when the key is one.
    AuditEntryUnreadable {
        /// Its position, when the key decodes as one.
        entry: Option<SegmentKey>,
        /// The raw key, in hex.
        key_hex: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// Segment `segment` does not link to the stored segment before it (or to the genesis hash).
    ChainBroken {
        /// The segment's position: sender, epoch and sequence.
        segment: SegmentKey,
        /// The stored predecessor's hash, in hex.
        expected_previous_hash: String,
        /// The previous hash the segment names, in hex.
        found_previous_hash: String,
    },
    /// The receiver's tracker says these sequences were applied, but their audit entries are gone.
    SegmentsRemoved {
        /// The sender of the stream.
        sender_id: u64,
        /// The stream's epoch.
        epoch: u64,
        /// The first sequence of the range.
        first_sequence: u64,
        /// The last sequence of the range (inclusive).
        last_sequence: u64,
    },
    /// Audit entries the receiver's tracker never recorded as applied (inserted afterwards?).
    SegmentsUnrecorded {
        /// The sender of the stream.
        sender_id: u64,
        /// The stream's epoch.
        epoch: u64,
        /// The first sequence of the range.
        first_sequence: u64,
        /// The last sequence of the range (inclusive).
        last_sequence: u64,
    },
    /// The replica's point differs from the last-write-wins record of the signed segments.
    PointChanged {
        /// The series (name and tags).
        series: String,
        /// The point's data time, in ns since the Unix epoch.
        timestamp_ns: i64,
        /// The value and quality the signed segments give.
        expected: (Value, Quality),
        /// The value and quality the replica holds.
        found: (Value, Quality),
        /// The segment that signed the expected value (the last write at that time).
        segment: SegmentKey,
    },
    /// A signed point is missing from the replica.
    PointDeleted {
        /// The series (name and tags).
        series: String,
        /// The point's data time, in ns since the Unix epoch.
        timestamp_ns: i64,
        /// The value and quality the signed segments give.
        expected: (Value, Quality),
        /// The segment that signed it (the last write at that time).
        segment: SegmentKey,
    },
    /// The replica holds a point that no verified segment contains.
    PointAdded {
        /// The series (name and tags).
        series: String,
        /// The replica's id of the series.
        series_id: u32,
        /// The point's data time, in ns since the Unix epoch.
        timestamp_ns: i64,
        /// The value and quality the replica holds.
        found: (Value, Quality),
    },
    /// The beacon the replica kept for an epoch does not verify (altered, or not a beacon of that
    /// sender and epoch), though its key is trusted.
    BeaconInvalid {
        /// The sender of the stream.
        sender_id: u64,
        /// The stream's epoch.
        epoch: u64,
        /// Why it does not verify.
        message: String,
    },
    /// The sender's signed beacon says its previous epoch ended with a segment whose hash differs
    /// from the stored, verified segment at that position: two signed segments claim one place.
    EpochEndMismatch {
        /// The segment's position: sender, epoch and sequence.
        segment: SegmentKey,
        /// The hash the signed beacon names, in hex.
        beacon_hash: String,
        /// The hash of the stored, verified segment there, in hex.
        stored_hash: String,
    },
    /// A signed beacon (the one kept of an epoch, or the sender's latest) names as its head a
    /// segment whose hash differs from the stored, verified segment at that position.
    BeaconHeadMismatch {
        /// The segment's position: sender, epoch and sequence.
        segment: SegmentKey,
        /// The hash the signed beacon names, in hex.
        beacon_hash: String,
        /// The hash of the stored, verified segment there, in hex.
        stored_hash: String,
    },
    /// Points of a series could not be read back (a damaged chunk); the range was not checked.
    PointsUnreadable {
        /// The series (name and tags).
        series: String,
        /// The replica's id of the series.
        series_id: u32,
        /// Start of the range not checked, in ns since the Unix epoch.
        from_ns: i64,
        /// End of the range not checked (inclusive), in ns since the Unix epoch.
        to_ns: i64,
        /// The full reason, for the report.
        message: String,
    },
    /// A stored chunk differs from what its segment signed for that series and bucket where the
    /// visible points do not show it (a superseded value): the first such timestamp, with what the
    /// segment signed there and what the chunk holds (`None`: no row at that time).
    ChunkChanged {
        /// The series (name and tags).
        series: String,
        /// The chunk's key: series id, bucket and the segment that wrote it.
        chunk: PointKey,
        /// The first differing data time, in ns since the Unix epoch.
        timestamp_ns: i64,
        /// What the segment signed at that time; `None`: no row.
        expected: Option<(Value, Quality)>,
        /// What the chunk holds at that time; `None`: no row.
        found: Option<(Value, Quality)>,
        /// Rows of the chunk that differ from what the segment signed.
        rows_differing: u64,
    },
    /// A chunk is stored under a segment that wrote no such chunk (not stored, not verified, or
    /// without records of that series in that bucket), and some of its points hide behind others.
    ChunkUnsigned {
        /// The series (name and tags).
        series: String,
        /// The chunk's key: series id, bucket and the segment that wrote it.
        chunk: PointKey,
        /// Rows the chunk holds.
        rows: u64,
        /// Data time of its first row, in ns since the Unix epoch.
        first_timestamp_ns: i64,
    },
    /// A chunk a verified segment wrote is gone, and some of its points were hidden behind later
    /// writes (the visible ones are named as deleted points).
    ChunkDeleted {
        /// The series (name and tags).
        series: String,
        /// The chunk's key: series id, bucket and the segment that wrote it.
        chunk: PointKey,
        /// Rows the chunk holds.
        rows: u64,
        /// Data time of its first row, in ns since the Unix epoch.
        first_timestamp_ns: i64,
        /// The value and quality the segment signed at its first row.
        expected: (Value, Quality),
    },
    /// A chunk under a series id the catalog does not hold: no query shows it, no segment backs it.
    ChunkUncatalogued {
        /// The chunk's key: series id, bucket and the segment that wrote it.
        chunk: PointKey,
        /// Rows it holds; `None` when the chunk does not decode.
        rows: Option<u64>,
        /// Data time of its first row; `None` when it does not decode.
        first_timestamp_ns: Option<i64>,
    },
    /// An entry of the points column family whose key is not a points key.
    ChunkKeyMalformed {
        /// The raw key, in hex.
        key_hex: String,
        /// Size of the entry's value, in bytes.
        value_bytes: u64,
    },
    /// Fewer (or more) chunks of catalogued series were checked than the inventory counted.
    ChunksUnaccounted {
        /// Chunks the inventory counted.
        stored: u64,
        /// Chunks the point check went through.
        checked: u64,
    },
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
        let at = time_and_ns;
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
                describe_chunk_changed(series, chunk, *timestamp_ns, (expected, found), *rows_differing)
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
            Self::ChunkUncatalogued { chunk, rows, first_timestamp_ns } => {
                describe_chunk_uncatalogued(chunk, *rows, *first_timestamp_ns)
            }
            Self::ChunkKeyMalformed { key_hex, value_bytes } => format!(
                "the points column family holds a {value_bytes}-byte value under the key {key_hex}, which is not a \
                 points key (36 bytes) nor a merged bucket that can be read (12 bytes)"
            ),
            Self::ChunksUnaccounted { stored, checked } => format!(
                "the audit checked {checked} chunks of catalogued series but the replica holds {stored}: it changed \
                 while the audit ran, or chunks escaped the check; run the audit again"
            ),
        }
    }

    /// The finding as a JSON object, with `kind` and its fields (values with kind and quality).
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

/// A time for humans: RFC 3339 and nanoseconds.
fn time_and_ns(timestamp_ns: i64) -> String {
    format!("{} ({timestamp_ns} ns)", format_rfc3339(timestamp_ns))
}

/// A point as a chunk holds it or a segment signed it, if there is one at that time.
type MaybePoint = Option<(Value, Quality)>;

/// The line of a [`Finding::ChunkChanged`].
fn describe_chunk_changed(
    series: &str,
    chunk: &PointKey,
    timestamp_ns: i64,
    (expected, found): (&MaybePoint, &MaybePoint),
    rows_differing: u64,
) -> String {
    let shown = |point: &Option<(Value, Quality)>| {
        point.as_ref().map_or("nothing".to_owned(), |(value, quality)| describe_value(value, *quality))
    };
    format!(
        "chunk CHANGED: {series}, {}: at {} it holds {}, the segment signed {} ({rows_differing} rows differ, \
         hidden behind later writes)",
        chunk_name(chunk),
        time_and_ns(timestamp_ns),
        shown(found),
        shown(expected)
    )
}

/// The line of a [`Finding::ChunkUncatalogued`].
fn describe_chunk_uncatalogued(chunk: &PointKey, rows: Option<u64>, first_timestamp_ns: Option<i64>) -> String {
    format!(
        "chunk of an UNCATALOGUED series id {}, {}: {} points from {}; the catalog holds no such series, so no \
         query shows them and no segment backs them",
        chunk.series_id,
        chunk_name(chunk),
        rows.map_or("undecodable".to_owned(), |rows| rows.to_string()),
        first_timestamp_ns.map_or("-".to_owned(), time_and_ns)
    )
}

/// A segment by its position, for humans.
pub fn segment_name(key: SegmentKey) -> String {
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
    /// The first `limit` findings, in the order found.
    pub listed: Vec<Finding>,
    /// Every finding counted by [`Finding::kind`], listed or not.
    pub counts: BTreeMap<&'static str, u64>,
    /// Findings counted but not kept.
    pub not_listed: u64,
    /// How many are kept (the audit options' `max_findings_listed`).
    pub limit: usize,
}

impl Findings {
    /// No findings yet; at most `limit` will be kept.
    pub fn new(limit: usize) -> Findings {
        Findings { limit, ..Findings::default() }
    }

    /// Counts a finding, and keeps it while fewer than `limit` are.
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

    /// Findings of every kind; 0 means the replica is backed by its signed segments.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Findings of one kind.
    pub fn count(&self, kind: &str) -> u64 {
        self.counts.get(kind).copied().unwrap_or(0)
    }
}

/// JSON form of a value: numbers, booleans and strings as themselves; non-finite floats (which
/// sources refuse, but the codec carries) as their text.
pub fn value_json(value: &Value) -> serde_json::Value {
    match value {
        Value::F64(v) if v.is_finite() => serde_json::json!(v),
        Value::F64(v) => serde_json::json!(v.to_string()),
        Value::I64(v) => serde_json::json!(v),
        Value::Bool(v) => serde_json::json!(v),
        Value::String(v) => serde_json::json!(v),
    }
}

/// Hex of a hash, for findings.
pub fn hash_hex(hash: &[u8; 32]) -> String {
    encode_hex(hash)
}

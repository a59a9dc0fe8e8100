//! Proof files: the signed segments behind some points of one series, with the chain links
//! between them, in one self-contained binary file that anyone can check offline with the
//! sender's public keys (`docs/proof-format.md`).
//!
//! The byte codec ([`Proof::to_bytes`], [`Proof::from_bytes`]) and the offline check
//! ([`check_proof`]) live here, free of IO, so that a checker needs nothing but this crate and
//! the public keys; the receiver adds the export from its replica. The format is binary and strict
//! so that *every* byte matters: each byte is either covered by a segment's signature or payload
//! hash, authenticated by the hash chain, or checked against what those establish (the series,
//! the points, the key ids, counts and lengths, reserved zeros). [`check_proof`] therefore refuses
//! a file in which any single byte was changed.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;

use crate::codec::SeriesColumns;
use crate::keys::{KeyId, TrustedKeys};
use crate::record::{MAX_STRING_VALUE_BYTES, Quality, SeriesKey, Value, ValueKind};
use crate::seal::{self, GENESIS_HASH, HEADER_LENGTH, OpenError, SegmentHeader};

/// The four bytes every proof file starts with.
pub const PROOF_MAGIC: [u8; 4] = *b"DPRF";
/// The only proof format version this build writes and reads.
pub const PROOF_VERSION: u8 = 1;
/// Largest proof file read.
pub const MAX_PROOF_BYTES: usize = 1 << 30;
/// Most points one proof may list; narrow the time range beyond that.
pub const MAX_PROOF_POINTS: usize = 1_000_000;

/// Where a segment sits in its sender's chains: `(sender id, epoch, sequence)`, ordered that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentPosition {
    /// The sending appliance.
    pub sender_id: u64,
    /// The sender's epoch: one hash chain.
    pub epoch: u64,
    /// The segment's place in that chain, from 1.
    pub sequence: u64,
}

impl SegmentPosition {
    /// The position a segment header names.
    pub fn of(header: &SegmentHeader) -> SegmentPosition {
        SegmentPosition { sender_id: header.sender_id, epoch: header.epoch, sequence: header.sequence }
    }
}

impl fmt::Display for SegmentPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "segment {} of sender {} epoch {}", self.sequence, self.sender_id, self.epoch)
    }
}

/// Last-write-wins rank of a record: its segment's (epoch, sequence, sender id), then its position
/// among the series' records in that segment's payload (from 1). The highest rank wins a
/// timestamp; the replica resolves duplicates the same way.
pub type WriteRank = (u64, u64, u64, usize);

/// The [`WriteRank`] of the `row_in_segment`-th record of a series in the segment at `segment`.
pub fn write_rank(segment: SegmentPosition, row_in_segment: usize) -> WriteRank {
    (segment.epoch, segment.sequence, segment.sender_id, row_in_segment)
}

/// `value (kind, quality)` for humans.
pub fn describe_point(value: &Value, quality: Quality) -> String {
    let shown = match value {
        Value::String(text) => format!("{text:?}"),
        other => other.to_string(),
    };
    format!("{shown} ({}, {quality})", value.kind().name())
}

/// A point the proof claims, with the index (in the proof) of the segment that wrote it last.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvenPoint {
    /// The point's time, in ns since the Unix epoch.
    pub timestamp_ns: i64,
    /// Index (from 0) into [`Proof::segments`] of the segment whose record wins this timestamp.
    pub segment_index: u32,
    /// The value, bit for bit as that segment holds it.
    pub value: Value,
    /// The quality, as that segment holds it.
    pub quality: Quality,
}

/// The content of a proof file, unchecked.
#[derive(Debug, Clone, PartialEq)]
pub struct Proof {
    /// The series whose points are proven (name and tags, as the segments carry them).
    pub series: SeriesKey,
    /// The key ids of the segments, ascending, each once.
    pub key_ids: Vec<KeyId>,
    /// Sealed segments (header ‖ signature ‖ payload), ascending by (sender, epoch, sequence).
    pub segments: Vec<Vec<u8>>,
    /// Headers of the segments between the proof's segments of each stream, ascending.
    pub headers: Vec<[u8; HEADER_LENGTH]>,
    /// Ascending by timestamp, one per timestamp.
    pub points: Vec<ProvenPoint>,
}

/// Why a proof is refused. Every message names the part of the file that failed.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The file does not parse: too large, truncated, a wrong magic or version, non-zero
    /// reserved bytes, a count the rest cannot hold, an invalid series, invalid UTF-8 or a
    /// boolean, or trailing bytes.
    #[error("the proof file is malformed at byte {offset}: {what}")]
    Malformed {
        /// Offset in the file of the field at fault.
        offset: usize,
        /// What is wrong with it.
        what: String,
    },
    /// A proof segment does not open or decode: its key, validity window, signature, payload
    /// hash or payload fails.
    #[error("proof segment {index} ({name}) does not verify: {source}")]
    Segment {
        /// The segment's index in the proof, from 0.
        index: usize,
        /// Its position, as its header claims it, or `unparseable`.
        name: String,
        /// The check that failed.
        source: OpenError,
    },
    /// The chain headers do not link the proof's segments: a header out of order or outside its
    /// stream's segments, or a link that does not match.
    #[error("the proof's hash chain is broken: {reason}")]
    Chain {
        /// Which header or link fails.
        reason: String,
    },
    /// The listed points are not exactly the last writes of the series in the proof's segments
    /// over the points' span, or a segment holds no record of the series in that span.
    #[error("the proof's points are not what its signed segments hold: {reason}")]
    Points {
        /// The first difference found.
        reason: String,
    },
    /// The parts of the file disagree: no segment, segments out of order, or key ids that are
    /// not exactly the segments'.
    #[error("the proof is inconsistent: {reason}")]
    Inconsistent {
        /// What disagrees.
        reason: String,
    },
}

// ---------------------------------------------------------------------------------------------
// encoding

fn put_u32(out: &mut Vec<u8>, value: usize) {
    out.extend_from_slice(&u32::try_from(value).expect("proof counts and lengths fit in u32").to_be_bytes());
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_u32(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

impl Proof {
    /// The proof file (layout in `docs/proof-format.md`), as [`Proof::from_bytes`] reads it back.
    ///
    /// # Panics
    /// If a count or a length does not fit in a `u32`, which the file format cannot express.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&PROOF_MAGIC);
        out.extend_from_slice(&[PROOF_VERSION, 0, 0, 0]);
        put_text(&mut out, &self.series.name);
        put_u32(&mut out, self.series.tags.len());
        for (key, value) in self.series.tags.iter() {
            put_text(&mut out, key);
            put_text(&mut out, value);
        }
        put_u32(&mut out, self.key_ids.len());
        for key_id in &self.key_ids {
            out.extend_from_slice(&key_id.0);
        }
        put_u32(&mut out, self.segments.len());
        for segment in &self.segments {
            put_u32(&mut out, segment.len());
            out.extend_from_slice(segment);
        }
        put_u32(&mut out, self.headers.len());
        for header in &self.headers {
            out.extend_from_slice(header);
        }
        put_u32(&mut out, self.points.len());
        for point in &self.points {
            out.extend_from_slice(&point.timestamp_ns.to_be_bytes());
            out.extend_from_slice(&point.segment_index.to_be_bytes());
            out.extend_from_slice(&point.quality.0.to_be_bytes());
            out.push(point.value.kind() as u8);
            match &point.value {
                Value::F64(v) => out.extend_from_slice(&v.to_bits().to_be_bytes()),
                Value::I64(v) => out.extend_from_slice(&v.to_be_bytes()),
                Value::Bool(v) => out.push(u8::from(*v)),
                Value::String(v) => put_text(&mut out, v),
            }
        }
        out
    }

    /// Parses a proof file. Total: any input gives a proof or an error naming the byte.
    pub fn from_bytes(bytes: &[u8]) -> Result<Proof, ProofError> {
        if bytes.len() > MAX_PROOF_BYTES {
            return Err(ProofError::Malformed {
                offset: 0,
                what: format!("{} bytes is larger than the limit", bytes.len()),
            });
        }
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(4, "magic")? != PROOF_MAGIC {
            return Err(reader.error(0, "not a diode proof (the magic is not \"DPRF\")"));
        }
        let version = reader.u8("version")?;
        if version != PROOF_VERSION {
            return Err(reader.error(4, &format!("format version {version} is not supported (this build reads 1)")));
        }
        if reader.take(3, "reserved bytes")? != [0, 0, 0] {
            return Err(reader.error(5, "reserved bytes are not zero"));
        }
        let name = reader.text("series name")?;
        let tag_count = reader.count(8, "series tag count")?;
        let mut tags = Vec::with_capacity(tag_count);
        for _ in 0..tag_count {
            tags.push((reader.text("tag key")?, reader.text("tag value")?));
        }
        let series = SeriesKey { name: name.into(), tags: tags.into() };
        series.validate().map_err(|error| reader.error(8, &format!("the series is invalid: {error}")))?;

        let key_count = reader.count(8, "key id count")?;
        let mut key_ids = Vec::with_capacity(key_count);
        for _ in 0..key_count {
            key_ids.push(KeyId(reader.take(8, "key id")?.try_into().expect("8 bytes")));
        }
        let segment_count = reader.count(4, "segment count")?;
        let mut segments = Vec::with_capacity(segment_count);
        for _ in 0..segment_count {
            let length = reader.u32("segment length")? as usize;
            segments.push(reader.take(length, "segment")?.to_vec());
        }
        let header_count = reader.count(HEADER_LENGTH, "header count")?;
        let mut headers = Vec::with_capacity(header_count);
        for _ in 0..header_count {
            let header: [u8; HEADER_LENGTH] = reader.take(HEADER_LENGTH, "header")?.try_into().expect("136 bytes");
            headers.push(header);
        }
        let point_count = reader.count(18, "point count")?;
        let mut points = Vec::with_capacity(point_count);
        for _ in 0..point_count {
            let timestamp_ns = reader.i64("point timestamp")?;
            let segment_index = reader.u32("point segment index")?;
            let quality = Quality(reader.u32("point quality")?);
            let kind_at = reader.at;
            let value = match ValueKind::from_u8(reader.u8("point value kind")?) {
                Some(ValueKind::F64) => Value::F64(f64::from_bits(reader.i64("float value")? as u64)),
                Some(ValueKind::I64) => Value::I64(reader.i64("integer value")?),
                Some(ValueKind::Bool) => match reader.u8("boolean value")? {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    _ => return Err(reader.error(kind_at + 1, "a boolean value is neither 0 nor 1")),
                },
                Some(ValueKind::String) => {
                    let text = reader.text("string value")?;
                    if text.len() > MAX_STRING_VALUE_BYTES {
                        return Err(reader.error(kind_at + 1, "a string value is longer than the limit"));
                    }
                    Value::String(text)
                }
                None => return Err(reader.error(kind_at, "unknown value kind")),
            };
            points.push(ProvenPoint { timestamp_ns, segment_index, value, quality });
        }
        if reader.at != bytes.len() {
            return Err(reader.error(reader.at, &format!("{} bytes follow the last point", bytes.len() - reader.at)));
        }
        Ok(Proof { series, key_ids, segments, headers, points })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, offset: usize, what: &str) -> ProofError {
        ProofError::Malformed { offset, what: what.to_owned() }
    }

    fn take(&mut self, length: usize, what: &str) -> Result<&'a [u8], ProofError> {
        let end = self.at.checked_add(length).filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.error(self.at, &format!("{what} needs {length} bytes; the file is truncated")));
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ProofError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, ProofError> {
        Ok(u32::from_be_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }

    fn i64(&mut self, what: &str) -> Result<i64, ProofError> {
        Ok(i64::from_be_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }

    /// A u32 count of items of at least `minimum_bytes` each, refused if the rest cannot hold them.
    fn count(&mut self, minimum_bytes: usize, what: &str) -> Result<usize, ProofError> {
        let at = self.at;
        let count = self.u32(what)? as usize;
        if count.saturating_mul(minimum_bytes) > self.bytes.len() - self.at {
            return Err(self.error(at, &format!("{what} {count} is more than the rest of the file can hold")));
        }
        Ok(count)
    }

    fn text(&mut self, what: &str) -> Result<String, ProofError> {
        let length = self.u32(what)? as usize;
        let at = self.at;
        let bytes = self.take(length, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.error(at, &format!("{what} is not UTF-8")))
    }
}

// ---------------------------------------------------------------------------------------------
// checking

/// A proof segment that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedSegment {
    /// Where the segment sits in its sender's chains.
    pub position: SegmentPosition,
    /// The key that signed it: one of the keys given, valid at `sealed_at_ns`.
    pub key_id: KeyId,
    /// When it was sealed, in ns since the Unix epoch by the sender's clock.
    pub sealed_at_ns: i64,
    /// Records it holds, of every series.
    pub record_count: u32,
}

/// Consecutive sequences of one stream whose hash chain the proof verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainRun {
    /// The stream's sender.
    pub sender_id: u64,
    /// The stream's epoch.
    pub epoch: u64,
    /// The first sequence of the run.
    pub first_sequence: u64,
    /// The last sequence of the run, inclusive: each segment after the first links to the one
    /// before it.
    pub last_sequence: u64,
}

/// What a proof establishes once checked.
#[derive(Debug, Clone)]
pub struct CheckedProof {
    /// The series the points belong to.
    pub series: SeriesKey,
    /// The points, each shown to be the last write of its timestamp in the signed segments.
    pub points: Vec<ProvenPoint>,
    /// The segments behind the points, in proof order, each verified.
    pub segments: Vec<CheckedSegment>,
    /// The runs of consecutive sequences whose links were verified, by sender and epoch, then
    /// ascending.
    pub chain_runs: Vec<ChainRun>,
}

/// Checks a proof file with only the given public keys: every segment's signature and payload,
/// the chain links, and that the listed points are exactly the last-write-wins records of the
/// series in the proof's segments over the span of the points.
pub fn check_proof(bytes: &[u8], keys: &TrustedKeys) -> Result<CheckedProof, ProofError> {
    let proof = Proof::from_bytes(bytes)?;
    let inconsistent = |reason: String| ProofError::Inconsistent { reason };
    if proof.points.is_empty() {
        return Err(ProofError::Points { reason: "the proof lists no points".to_owned() });
    }
    if proof.segments.is_empty() {
        return Err(inconsistent("the proof holds no segment".to_owned()));
    }

    // Segments: each verifies alone, in strictly ascending position.
    let mut segments = Vec::with_capacity(proof.segments.len());
    let mut decoded: Vec<Vec<SeriesColumns>> = Vec::with_capacity(proof.segments.len());
    let mut headers: Vec<SegmentHeader> = Vec::with_capacity(proof.segments.len());
    for (index, sealed) in proof.segments.iter().enumerate() {
        let name = match SegmentHeader::from_bytes(sealed) {
            Ok(header) => SegmentPosition::of(&header).to_string(),
            Err(_) => "unparseable".to_owned(),
        };
        let fail = |source: OpenError| ProofError::Segment { index, name: name.clone(), source };
        let segment = seal::open(sealed, keys).map_err(fail)?;
        let series = seal::decode_verified(&segment).map_err(fail)?;
        let header = segment.header;
        if let Some(previous) = headers.last()
            && SegmentPosition::of(previous) >= SegmentPosition::of(&header)
        {
            return Err(inconsistent(format!("segment {index} is not after segment {}", index - 1)));
        }
        segments.push(CheckedSegment {
            position: SegmentPosition::of(&header),
            key_id: header.key_id,
            sealed_at_ns: header.sealed_at_ns,
            record_count: header.record_count,
        });
        decoded.push(series);
        headers.push(header);
    }
    let mut used_key_ids: Vec<KeyId> = segments.iter().map(|segment| segment.key_id).collect();
    used_key_ids.sort_unstable();
    used_key_ids.dedup();
    if used_key_ids != proof.key_ids {
        return Err(inconsistent(format!(
            "the listed key ids {:?} are not the segments' key ids {used_key_ids:?}",
            proof.key_ids
        )));
    }

    let chain_runs = check_chain(&headers, &proof.headers)?;
    check_points(&proof, &segments, &decoded)?;
    Ok(CheckedProof { series: proof.series, points: proof.points, segments, chain_runs })
}

/// Checks every link between the proof's segments and headers and returns the verified runs.
fn check_chain(segments: &[SegmentHeader], headers: &[[u8; HEADER_LENGTH]]) -> Result<Vec<ChainRun>, ProofError> {
    let chain = |reason: String| ProofError::Chain { reason };
    // (sender, epoch) → sequence → (header, is a full segment)
    let mut streams: BTreeMap<(u64, u64), BTreeMap<u64, (SegmentHeader, bool)>> = BTreeMap::new();
    for header in segments {
        streams.entry((header.sender_id, header.epoch)).or_default().insert(header.sequence, (header.clone(), true));
    }
    let mut previous: Option<SegmentPosition> = None;
    for (index, bytes) in headers.iter().enumerate() {
        let header = SegmentHeader::from_bytes(bytes)
            .map_err(|error| chain(format!("chain header {index} cannot be parsed: {error}")))?;
        let key = SegmentPosition::of(&header);
        if previous.is_some_and(|previous| previous >= key) {
            return Err(chain(format!("chain header {index} is not after chain header {}", index - 1)));
        }
        previous = Some(key);
        let stream = streams
            .get_mut(&(header.sender_id, header.epoch))
            .ok_or_else(|| chain(format!("chain header {index} belongs to a stream without proof segments")))?;
        let (first, last) = (*stream.keys().next().expect("non-empty"), *stream.keys().next_back().expect("non-empty"));
        let full: Vec<u64> = stream.iter().filter(|(_, (_, full))| *full).map(|(s, _)| *s).collect();
        let (first_full, last_full) = (full[0], full[full.len() - 1]);
        if key.sequence <= first_full || key.sequence >= last_full || stream.contains_key(&key.sequence) {
            return Err(chain(format!(
                "chain header {index} ({}) is not strictly between the proof's segments {first}..={last} of its stream, \
                 or repeats a position",
                key
            )));
        }
        stream.insert(header.sequence, (header, false));
    }
    let mut runs = Vec::new();
    for ((sender_id, epoch), stream) in &streams {
        let mut run: Option<ChainRun> = None;
        for (&sequence, (header, full)) in stream {
            let name = SegmentPosition { sender_id: *sender_id, epoch: *epoch, sequence };
            if sequence == 1 && header.previous_hash != GENESIS_HASH {
                return Err(chain(format!("{name} is the first of its epoch but does not link to the genesis hash")));
            }
            match stream.get(&(sequence.wrapping_add(1))).filter(|_| sequence < u64::MAX) {
                Some((next, _)) if next.previous_hash != header.hash() => {
                    return Err(chain(format!("the segment after {name} does not link to it")));
                }
                None if !full => {
                    return Err(chain(format!("the chain header of {name} is not followed by its successor")));
                }
                _ => {}
            }
            run = match run {
                Some(mut open) if open.last_sequence + 1 == sequence => {
                    open.last_sequence = sequence;
                    Some(open)
                }
                other => {
                    runs.extend(other);
                    Some(ChainRun {
                        sender_id: *sender_id,
                        epoch: *epoch,
                        first_sequence: sequence,
                        last_sequence: sequence,
                    })
                }
            };
        }
        runs.extend(run);
    }
    Ok(runs)
}

/// The record that wins a timestamp, and where it is in the proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Winner {
    rank: WriteRank,
    segment: usize,
    /// Index of the series entry in the segment's decoded payload, and row in it.
    entry: usize,
    row: usize,
}

/// Per timestamp of `series` within `span`, the record that wins last-write-wins among the
/// decoded proof segments (at `positions`). Refuses a segment holding no record of the series in
/// the span: a proof carries only the segments it needs.
fn last_writes(
    series: &SeriesKey,
    positions: &[SegmentPosition],
    decoded: &[Vec<SeriesColumns>],
    span: &RangeInclusive<i64>,
) -> Result<BTreeMap<i64, Winner>, ProofError> {
    let mut winners: BTreeMap<i64, Winner> = BTreeMap::new();
    for (index, (position, columns_of_segment)) in positions.iter().zip(decoded).enumerate() {
        let mut row_in_segment = 0usize;
        let mut holds_any = false;
        for (entry, columns) in columns_of_segment.iter().enumerate().filter(|(_, columns)| columns.key == *series) {
            for (row, timestamp_ns) in columns.timestamps_ns.iter().enumerate() {
                row_in_segment += 1;
                if !span.contains(timestamp_ns) {
                    continue;
                }
                holds_any = true;
                let candidate = Winner { rank: write_rank(*position, row_in_segment), segment: index, entry, row };
                winners.entry(*timestamp_ns).and_modify(|kept| *kept = (*kept).max(candidate)).or_insert(candidate);
            }
        }
        if !holds_any {
            return Err(ProofError::Points {
                reason: format!("proof segment {index} holds no record of {series} in the proof's span"),
            });
        }
    }
    Ok(winners)
}

/// The listed points must be exactly the last-write-wins records of the series in the proof's
/// segments over the points' span, each naming the segment that wrote it last.
fn check_points(proof: &Proof, segments: &[CheckedSegment], decoded: &[Vec<SeriesColumns>]) -> Result<(), ProofError> {
    let fail = |reason: String| ProofError::Points { reason };
    for pair in proof.points.windows(2) {
        if pair[0].timestamp_ns >= pair[1].timestamp_ns {
            return Err(fail(format!("points are not strictly ascending by time at {}", pair[1].timestamp_ns)));
        }
    }
    let span = proof.points[0].timestamp_ns..=proof.points[proof.points.len() - 1].timestamp_ns;
    let positions: Vec<SegmentPosition> = segments.iter().map(|segment| segment.position).collect();
    let winners = last_writes(&proof.series, &positions, decoded, &span)?;
    if winners.len() != proof.points.len() {
        return Err(fail(format!(
            "the segments hold {} timestamps of {} in the proof's span, the proof lists {}",
            winners.len(),
            proof.series,
            proof.points.len()
        )));
    }
    for (point, (timestamp_ns, winner)) in proof.points.iter().zip(&winners) {
        let (index, columns) = (winner.segment, &decoded[winner.segment][winner.entry]);
        let (value, quality) = (columns.value(winner.row), columns.qualities[winner.row]);
        if point.timestamp_ns != *timestamp_ns {
            return Err(fail(format!(
                "the proof lists time {} where the segments hold {timestamp_ns}",
                point.timestamp_ns
            )));
        }
        if point.segment_index as usize != index || !point.value.bit_eq(&value) || point.quality != quality {
            return Err(fail(format!(
                "at {timestamp_ns} the proof claims {} from proof segment {}; the last write is {} in proof segment {index}",
                describe_point(&point.value, point.quality),
                point.segment_index,
                describe_point(&value, quality)
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// assembling

impl Proof {
    /// Assembles the proof of `series` over `span` from sealed segments and chain headers: the
    /// key ids are the segments', and the points are the last write of each timestamp of the series
    /// in the span, as [`check_proof`] will recompute them. `segments` must be ascending by
    /// position and each hold a record of the series in the span; `headers` are the stored headers
    /// between consecutive segments of each stream. Signatures are not checked here: pass only
    /// segments that verified, and check the result with [`check_proof`] when in doubt.
    pub fn assemble(
        series: SeriesKey,
        segments: Vec<Vec<u8>>,
        headers: Vec<[u8; HEADER_LENGTH]>,
        span: RangeInclusive<i64>,
    ) -> Result<Proof, ProofError> {
        let mut positions = Vec::with_capacity(segments.len());
        let mut decoded = Vec::with_capacity(segments.len());
        let mut key_ids = Vec::with_capacity(segments.len());
        for (index, sealed) in segments.iter().enumerate() {
            let opened = seal::parse(sealed).and_then(|segment| Ok((seal::decode_verified(&segment)?, segment)));
            let (columns, segment) = opened.map_err(|source| ProofError::Segment {
                index,
                name: SegmentHeader::from_bytes(sealed)
                    .map_or("unparseable".to_owned(), |header| SegmentPosition::of(&header).to_string()),
                source,
            })?;
            positions.push(SegmentPosition::of(&segment.header));
            key_ids.push(segment.header.key_id);
            decoded.push(columns);
        }
        key_ids.sort_unstable();
        key_ids.dedup();
        let winners = last_writes(&series, &positions, &decoded, &span)?;
        if winners.len() > MAX_PROOF_POINTS {
            return Err(ProofError::Points {
                reason: format!(
                    "{series} has {} points in the span, more than the {MAX_PROOF_POINTS} one proof may list; prove a \
                     narrower range",
                    winners.len()
                ),
            });
        }
        let points = winners
            .into_iter()
            .map(|(timestamp_ns, winner)| {
                let columns = &decoded[winner.segment][winner.entry];
                ProvenPoint {
                    timestamp_ns,
                    segment_index: u32::try_from(winner.segment).expect("a proof holds fewer than 2^32 segments"),
                    value: columns.value(winner.row),
                    quality: columns.qualities[winner.row],
                }
            })
            .collect();
        Ok(Proof { series, key_ids, segments, headers, points })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::group_records;
    use crate::keys::SenderKey;
    use crate::record::Record;
    use crate::seal::ChainPosition;
    use proptest::prelude::*;

    const T0: i64 = 1_704_067_200_000_000_000;

    fn record(series: &str, timestamp_ns: i64, value: f64) -> Record {
        Record { series: SeriesKey::new(series), timestamp_ns, value: Value::F64(value), quality: Quality::GOOD }
    }

    /// Three chained segments: `plant/a` in 1 and 3 (3 corrects the value at `T0 + 1`), only
    /// `plant/b` in 2, so a proof of `plant/a` needs the chain header of 2.
    fn chain(key: &SenderKey) -> Vec<SealedSegmentBytes> {
        let batches = [
            vec![record("plant/a", T0, 1.0), record("plant/a", T0 + 1, 2.0), record("plant/b", T0, 5.0)],
            vec![record("plant/b", T0 + 2, 6.0)],
            vec![record("plant/a", T0 + 1, 2.5), record("plant/a", T0 + 3, 4.0)],
        ];
        let mut previous_hash = GENESIS_HASH;
        batches
            .iter()
            .enumerate()
            .map(|(index, records)| {
                let position = ChainPosition { sender_id: 7, epoch: 1, sequence: index as u64 + 1, previous_hash };
                let segment = seal::seal(position, &group_records(records), 3, T0 + index as i64, key);
                previous_hash = segment.hash();
                SealedSegmentBytes { header: segment.header.to_bytes(), sealed: segment.to_bytes() }
            })
            .collect()
    }

    struct SealedSegmentBytes {
        header: [u8; HEADER_LENGTH],
        sealed: Vec<u8>,
    }

    fn valid_proof(key: &SenderKey) -> Proof {
        let chain = chain(key);
        let segments = vec![chain[0].sealed.clone(), chain[2].sealed.clone()];
        Proof::assemble(SeriesKey::new("plant/a"), segments, vec![chain[1].header], T0..=T0 + 3).unwrap()
    }

    #[test]
    fn an_assembled_proof_checks_and_lists_the_last_write_of_each_timestamp() {
        let key = SenderKey::from_seed([7; 32]);
        let proof = valid_proof(&key);
        let checked = check_proof(&proof.to_bytes(), &TrustedKeys::single(key.public_key())).unwrap();
        let points: Vec<(i64, u32, Value)> =
            checked.points.iter().map(|p| (p.timestamp_ns, p.segment_index, p.value.clone())).collect();
        assert_eq!(points, vec![(T0, 0, Value::F64(1.0)), (T0 + 1, 1, Value::F64(2.5)), (T0 + 3, 1, Value::F64(4.0))]);
        assert_eq!(checked.chain_runs, vec![ChainRun { sender_id: 7, epoch: 1, first_sequence: 1, last_sequence: 3 }]);
    }

    #[test]
    fn a_proof_claiming_the_superseded_value_is_refused() {
        let key = SenderKey::from_seed([7; 32]);
        let mut proof = valid_proof(&key);
        proof.points[1] = ProvenPoint { segment_index: 0, value: Value::F64(2.0), ..proof.points[1].clone() };
        let refused = check_proof(&proof.to_bytes(), &TrustedKeys::single(key.public_key())).unwrap_err();
        assert!(matches!(refused, ProofError::Points { .. }), "{refused}");
    }

    #[test]
    fn a_proof_without_the_chain_header_between_its_segments_shows_two_runs() {
        let key = SenderKey::from_seed([7; 32]);
        let chain = chain(&key);
        let segments = vec![chain[0].sealed.clone(), chain[2].sealed.clone()];
        let proof = Proof::assemble(SeriesKey::new("plant/a"), segments, Vec::new(), T0..=T0 + 3).unwrap();
        let checked = check_proof(&proof.to_bytes(), &TrustedKeys::single(key.public_key())).unwrap();
        assert_eq!(checked.chain_runs.len(), 2, "continuity is not claimed across the missing header");
    }

    #[test]
    fn assembling_refuses_a_segment_without_the_series() {
        let key = SenderKey::from_seed([7; 32]);
        let chain = chain(&key);
        let segments = vec![chain[0].sealed.clone(), chain[1].sealed.clone()];
        assert!(Proof::assemble(SeriesKey::new("plant/a"), segments, Vec::new(), T0..=T0 + 3).is_err());
    }

    fn sample() -> Proof {
        Proof {
            series: SeriesKey::with_tags("plant/a", vec![("line".into(), "2".into())]),
            key_ids: vec![KeyId([1; 8])],
            segments: vec![vec![7; 40]],
            headers: vec![[9; HEADER_LENGTH]],
            points: vec![
                ProvenPoint { timestamp_ns: -5, segment_index: 0, value: Value::F64(-0.0), quality: Quality::BAD },
                ProvenPoint { timestamp_ns: 1, segment_index: 0, value: Value::I64(-3), quality: Quality::GOOD },
                ProvenPoint { timestamp_ns: 2, segment_index: 0, value: Value::Bool(true), quality: Quality(7) },
                ProvenPoint {
                    timestamp_ns: 3,
                    segment_index: 0,
                    value: Value::String("é".into()),
                    quality: Quality(0),
                },
            ],
        }
    }

    #[test]
    fn proofs_round_trip_through_bytes_and_every_truncation_is_refused() {
        let proof = sample();
        let bytes = proof.to_bytes();
        let decoded = Proof::from_bytes(&bytes).unwrap();
        assert_eq!(decoded.to_bytes(), bytes);
        assert_eq!(decoded.series, proof.series);
        for length in 0..bytes.len() {
            assert!(Proof::from_bytes(&bytes[..length]).is_err(), "length {length}");
        }
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Proof::from_bytes(&bytes);
        }

        #[test]
        fn decoding_a_mutated_proof_never_panics(at in 0usize..1000, value in any::<u8>()) {
            let mut bytes = sample().to_bytes();
            let at = at % bytes.len();
            bytes[at] = value;
            let _ = Proof::from_bytes(&bytes);
        }
    }
}

//! Byte layouts of every key and value the replica stores, as pure functions.
//!
//! Keys are big-endian so that RocksDB's bytewise order is numeric order; timestamps in keys have
//! their sign bit flipped so negative times sort first. Values carry a leading version byte where
//! their layout could change. The full table is in the [crate documentation](crate).
//! Every decoder here is total: stored bytes are checked and a damaged entry is reported, never a
//! panic.

use diode_common::codec::{put_varint, unzigzag, varint_prefix, zigzag};
use diode_common::record::{SeriesKey, ValueKind};
use diode_common::seal::{HEADER_LENGTH, SIGNATURE_LENGTH, SealedSegment, SegmentHash};

/// Version of the replica layout this build reads and writes. A replica written under another
/// version is refused at open rather than misread.
pub const LAYOUT_VERSION: u32 = 3;

/// Width of a points bucket in data time: one hour. A segment's points of one series are split
/// into one chunk per bucket they fall in, so a range query reads whole buckets.
pub const BUCKET_NS: i64 = 3_600 * 1_000_000_000;

pub(crate) const CF_POINTS: &str = "points";
pub(crate) const CF_SERIES: &str = "series";
pub(crate) const CF_SEGMENTS: &str = "segments";
pub(crate) const CF_META: &str = "meta";
/// Every column family the replica uses (RocksDB's `default` is left empty).
pub(crate) const COLUMN_FAMILIES: [&str; 4] = [CF_POINTS, CF_SERIES, CF_SEGMENTS, CF_META];

/// Start of the bucket holding `timestamp_ns`. Monotonic; never overflows (the partial bucket at
/// the very bottom of the `i64` range starts at `i64::MIN`).
pub fn bucket_start(timestamp_ns: i64) -> i64 {
    timestamp_ns.saturating_sub(timestamp_ns.rem_euclid(BUCKET_NS))
}

/// `i64` → `u64` preserving order (flip the sign bit), for big-endian keys.
pub(crate) fn order_preserving(value: i64) -> u64 {
    (value as u64) ^ (1 << 63)
}

/// Inverse of [`order_preserving`].
pub(crate) fn from_order_preserving(value: u64) -> i64 {
    (value ^ (1 << 63)) as i64
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn i64_at(bytes: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

// ---------------------------------------------------------------------------------------------
// points

/// Bytes of a points key.
pub(crate) const POINT_KEY_LENGTH: usize = 36;
/// Bytes of the `series id ‖ bucket` prefix shared by every chunk of one bucket.
pub(crate) const POINT_BUCKET_PREFIX_LENGTH: usize = 12;

/// Key of one chunk: `series id u32 ‖ bucket start (sign-flipped i64) ‖ epoch u64 ‖ sequence u64
/// ‖ sender id u64`, all big-endian. Within a bucket, chunks sort by (epoch, sequence, sender id):
/// the order in which last-write-wins resolves duplicate timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PointKey {
    /// The replica's own id of the series (see [`SeriesInfo`](crate::SeriesInfo)), not the
    /// segment-local one.
    pub series_id: u32,
    /// Start of the chunk's bucket, in ns since the Unix epoch; a multiple of [`BUCKET_NS`].
    pub bucket_start_ns: i64,
    /// Epoch of the segment the chunk came from.
    pub epoch: u64,
    /// Sequence of that segment in its epoch.
    pub sequence: u64,
    /// Sender that signed that segment.
    pub sender_id: u64,
}

impl PointKey {
    /// The key's 36 stored bytes.
    pub fn to_bytes(self) -> [u8; POINT_KEY_LENGTH] {
        let mut key = [0u8; POINT_KEY_LENGTH];
        key[..POINT_BUCKET_PREFIX_LENGTH].copy_from_slice(&bucket_prefix(self.series_id, self.bucket_start_ns));
        key[12..20].copy_from_slice(&self.epoch.to_be_bytes());
        key[20..28].copy_from_slice(&self.sequence.to_be_bytes());
        key[28..36].copy_from_slice(&self.sender_id.to_be_bytes());
        key
    }

    /// Reads a stored key; `None` when it is not 36 bytes.
    pub fn from_bytes(key: &[u8]) -> Option<PointKey> {
        if key.len() != POINT_KEY_LENGTH {
            return None;
        }
        Some(PointKey {
            series_id: u32_at(key, 0)?,
            bucket_start_ns: from_order_preserving(u64_at(key, 4)?),
            epoch: u64_at(key, 12)?,
            sequence: u64_at(key, 20)?,
            sender_id: u64_at(key, 28)?,
        })
    }
}

/// `series id ‖ bucket start`: where a scan of that bucket seeks.
pub(crate) fn bucket_prefix(series_id: u32, bucket_start_ns: i64) -> [u8; POINT_BUCKET_PREFIX_LENGTH] {
    let mut prefix = [0u8; POINT_BUCKET_PREFIX_LENGTH];
    prefix[..4].copy_from_slice(&series_id.to_be_bytes());
    prefix[4..].copy_from_slice(&order_preserving(bucket_start_ns).to_be_bytes());
    prefix
}

/// The smallest key above every chunk of `series_id` in buckets up to `last_bucket_start_ns`:
/// the exclusive upper bound of a scan. `None` when no such key exists (nothing bounds the scan).
pub(crate) fn scan_upper_bound(series_id: u32, last_bucket_start_ns: i64) -> Option<Vec<u8>> {
    match order_preserving(last_bucket_start_ns).checked_add(1) {
        Some(next) => {
            let mut bound = series_id.to_be_bytes().to_vec();
            bound.extend_from_slice(&next.to_be_bytes());
            Some(bound)
        }
        None => series_id.checked_add(1).map(|next| next.to_be_bytes().to_vec()),
    }
}

// ---------------------------------------------------------------------------------------------
// merged buckets

/// A points key of exactly the bucket prefix (`series id ‖ bucket start`, 12 bytes) holds a
/// merged bucket: the chunks of that series and bucket that were stored when the hour closed,
/// joined into one entry. It sorts before every 36-byte chunk key of its bucket.
pub(crate) fn is_merged_key(key: &[u8]) -> bool {
    key.len() == POINT_BUCKET_PREFIX_LENGTH
}

/// `(series id, bucket start)` of a merged bucket's key.
pub(crate) fn parse_merged_key(key: &[u8]) -> Option<(u32, i64)> {
    if !is_merged_key(key) {
        return None;
    }
    Some((u32_at(key, 0)?, from_order_preserving(u64_at(key, 4)?)))
}

/// Version byte of a merged bucket's value.
const MERGED_BUCKET_VERSION: u8 = 1;

/// One chunk inside a merged bucket: the segment it came from (its key's last three fields) and
/// how many of the merged rows are its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct MergedPart {
    pub(crate) epoch: u64,
    pub(crate) sequence: u64,
    pub(crate) sender_id: u64,
    pub(crate) rows: u32,
}

impl MergedPart {
    /// The key this part had as a chunk of its own.
    pub(crate) fn key(&self, series_id: u32, bucket_start_ns: i64) -> PointKey {
        PointKey { series_id, bucket_start_ns, epoch: self.epoch, sequence: self.sequence, sender_id: self.sender_id }
    }
}

/// The codec's varint at `at` in `bytes`, moving `at` past it.
fn take_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let (value, length) = varint_prefix(bytes.get(*at..)?)?;
    *at += length;
    Some(value)
}

/// Merged bucket value: `version u8 (1) ‖ part count varint ‖ row count varint ‖ table length
/// varint ‖ table ‖ the merged rows as codec::encode_columns`, the table being `epochs ‖
/// sequences ‖ senders ‖ rows`, a varint per part each. The parts are in key order (epoch,
/// sequence, sender id), strictly ascending, and each of the first three columns holds the
/// difference from the part before (wrapping; the first from 0), so a live hour of one part per
/// consecutive segment is a run of equal bytes that RocksDB's compression all but removes. The
/// rows are every part's rows, in part order and within a part in input order: exactly the
/// records the parts held as chunks of their own. The header's counts and table length let a scan
/// that needs the rows alone skip the table. Appends the header and table; the caller appends the
/// rows.
pub(crate) fn encode_merged_table(parts: &[MergedPart], out: &mut Vec<u8>) {
    let mut table = Vec::with_capacity(parts.len() * 4);
    for field in [|p: &MergedPart| p.epoch, |p: &MergedPart| p.sequence, |p: &MergedPart| p.sender_id] {
        let mut previous = 0u64;
        for part in parts {
            put_varint(&mut table, field(part).wrapping_sub(previous));
            previous = field(part);
        }
    }
    for part in parts {
        put_varint(&mut table, u64::from(part.rows));
    }
    out.push(MERGED_BUCKET_VERSION);
    put_varint(out, parts.len() as u64);
    put_varint(out, parts.iter().map(|part| u64::from(part.rows)).sum());
    put_varint(out, table.len() as u64);
    out.extend_from_slice(&table);
}

/// A merged bucket's value split without reading its table: (part count, row count, header and
/// table, rows).
type MergedSplit<'a> = (usize, u64, &'a [u8], &'a [u8]);

/// Splits a merged bucket's value into its [`MergedSplit`] parts.
pub(crate) fn split_merged(value: &[u8]) -> Result<MergedSplit<'_>, &'static str> {
    if value.first() != Some(&MERGED_BUCKET_VERSION) {
        return Err("merged bucket version is not 1");
    }
    let mut at = 1;
    let truncated = "merged bucket header is truncated";
    let count = take_varint(value, &mut at).ok_or(truncated)?;
    let rows = take_varint(value, &mut at).ok_or(truncated)?;
    let table_length = take_varint(value, &mut at).ok_or(truncated)?;
    // Each part takes at least four bytes of table.
    if count == 0 || count.saturating_mul(4) > table_length {
        return Err("merged bucket names no part, or more parts than its table can hold");
    }
    let end =
        usize::try_from(table_length).ok().and_then(|length| at.checked_add(length)).filter(|&end| end <= value.len());
    let end = end.ok_or("merged bucket table runs past the value")?;
    Ok((count as usize, rows, &value[..end], &value[end..]))
}

/// Reads a merged bucket's table: its parts and the bytes of the merged rows. Refuses a table
/// whose parts are not strictly ascending, hold no rows, or disagree with the header, so a reader
/// never interleaves them wrongly with the chunks stored after the merge.
pub(crate) fn decode_merged_table(value: &[u8]) -> Result<(Vec<MergedPart>, &[u8]), &'static str> {
    let (count, rows, head, columns) = split_merged(value)?;
    // The header again (version and three varints), read by `split_merged`.
    let mut at = 1;
    for _ in 0..3 {
        take_varint(head, &mut at).ok_or("merged bucket header is truncated")?;
    }
    let mut parts = vec![MergedPart { epoch: 0, sequence: 0, sender_id: 0, rows: 0 }; count];
    let truncated = "merged bucket table is truncated";
    for field in 0..3 {
        let mut previous = 0u64;
        for part in parts.iter_mut() {
            let value = previous.wrapping_add(take_varint(head, &mut at).ok_or(truncated)?);
            match field {
                0 => part.epoch = value,
                1 => part.sequence = value,
                _ => part.sender_id = value,
            }
            previous = value;
        }
    }
    for part in parts.iter_mut() {
        let rows = take_varint(head, &mut at).ok_or(truncated)?;
        part.rows = u32::try_from(rows).map_err(|_| "merged bucket part holds more rows than a chunk can")?;
        if part.rows == 0 {
            return Err("merged bucket part holds no rows");
        }
    }
    if at != head.len() {
        return Err("merged bucket table is longer than its parts");
    }
    if parts.iter().map(|part| u64::from(part.rows)).sum::<u64>() != rows {
        return Err("merged bucket parts do not add up to its row count");
    }
    let key = |part: &MergedPart| (part.epoch, part.sequence, part.sender_id);
    if parts.windows(2).any(|pair| key(&pair[0]) >= key(&pair[1])) {
        return Err("merged bucket parts are not in key order");
    }
    Ok((parts, columns))
}

/// Meta key prefix of a bucket waiting to be merged once its hour closes: `'M' ‖ series id u32 ‖
/// bucket start (sign-flipped i64)`, empty value. Written in the batch of the apply that first
/// writes a chunk into the bucket (and again by an apply that writes into a merged one); deleted
/// in the batch that merges it.
pub(crate) const META_PENDING_MERGE: u8 = b'M';

pub(crate) fn pending_merge_key(series_id: u32, bucket_start_ns: i64) -> [u8; 13] {
    let mut key = [0u8; 13];
    key[0] = META_PENDING_MERGE;
    key[1..].copy_from_slice(&bucket_prefix(series_id, bucket_start_ns));
    key
}

pub(crate) fn parse_pending_merge_key(key: &[u8]) -> Option<(u32, i64)> {
    if key.first() != Some(&META_PENDING_MERGE) {
        return None;
    }
    parse_merged_key(&key[1..])
}

// ---------------------------------------------------------------------------------------------
// segments

/// Bytes of a segments key.
pub(crate) const SEGMENT_KEY_LENGTH: usize = 24;

/// Where a segment sits: `sender id u64 ‖ epoch u64 ‖ sequence u64`, big-endian, so the audit log
/// of one stream is one contiguous, ordered range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentKey {
    /// The sender that signed the segment.
    pub sender_id: u64,
    /// The sender's epoch the segment belongs to.
    pub epoch: u64,
    /// The segment's sequence in its epoch, from 1.
    pub sequence: u64,
}

impl SegmentKey {
    /// The lowest key: a scan from here covers the whole audit log.
    pub const FIRST: SegmentKey = SegmentKey { sender_id: 0, epoch: 0, sequence: 0 };

    /// The key's 24 stored bytes.
    pub fn to_bytes(self) -> [u8; SEGMENT_KEY_LENGTH] {
        let mut key = [0u8; SEGMENT_KEY_LENGTH];
        key[0..8].copy_from_slice(&self.sender_id.to_be_bytes());
        key[8..16].copy_from_slice(&self.epoch.to_be_bytes());
        key[16..24].copy_from_slice(&self.sequence.to_be_bytes());
        key
    }

    /// Reads a stored key; `None` when it is not 24 bytes.
    pub fn from_bytes(key: &[u8]) -> Option<SegmentKey> {
        if key.len() != SEGMENT_KEY_LENGTH {
            return None;
        }
        Some(SegmentKey { sender_id: u64_at(key, 0)?, epoch: u64_at(key, 8)?, sequence: u64_at(key, 16)? })
    }
}

/// Version byte of an audit entry.
pub(crate) const AUDIT_ENTRY_VERSION: u8 = 1;
/// Bytes before the sealed segment in an audit entry.
pub(crate) const AUDIT_ENTRY_PREFIX_LENGTH: usize = 9;

/// Audit entry: `version u8 (1) ‖ applied at, ns i64 BE ‖ the sealed segment exactly as received
/// (header ‖ signature ‖ payload, SealedSegment::to_bytes)`.
pub(crate) fn encode_audit_entry(applied_at_ns: i64, segment: &SealedSegment) -> Vec<u8> {
    let mut entry =
        Vec::with_capacity(AUDIT_ENTRY_PREFIX_LENGTH + HEADER_LENGTH + SIGNATURE_LENGTH + segment.payload.len());
    entry.push(AUDIT_ENTRY_VERSION);
    entry.extend_from_slice(&applied_at_ns.to_be_bytes());
    entry.extend_from_slice(&segment.header.to_bytes());
    entry.extend_from_slice(&segment.signature);
    entry.extend_from_slice(&segment.payload);
    entry
}

/// Splits an audit entry into (applied at, sealed bytes).
pub(crate) fn decode_audit_entry(entry: &[u8]) -> Result<(i64, &[u8]), &'static str> {
    if entry.first() != Some(&AUDIT_ENTRY_VERSION) {
        return Err("audit entry version is not 1");
    }
    let applied_at_ns = i64_at(entry, 1).ok_or("audit entry is shorter than its prefix")?;
    let sealed = &entry[AUDIT_ENTRY_PREFIX_LENGTH..];
    if sealed.len() < HEADER_LENGTH + SIGNATURE_LENGTH {
        return Err("audit entry holds fewer bytes than a segment header and signature");
    }
    Ok((applied_at_ns, sealed))
}

// ---------------------------------------------------------------------------------------------
// series

/// Series CF key prefix: canonical series key → id.
pub(crate) const SERIES_BY_KEY: u8 = b'K';
/// Series CF key prefix: id → canonical series key (never rewritten).
pub(crate) const SERIES_IDENTITY: u8 = b'I';
/// Series CF key prefix: id → statistics (rewritten by every segment that touches the series).
pub(crate) const SERIES_STATISTICS: u8 = b'S';

/// `prefix ‖ id u32 BE`.
pub(crate) fn series_id_key(prefix: u8, series_id: u32) -> [u8; 5] {
    let mut key = [prefix, 0, 0, 0, 0];
    key[1..].copy_from_slice(&series_id.to_be_bytes());
    key
}

/// Canonical encoding of a series key: `name length u32 ‖ name ‖ tag count u32 ‖ (key length u32
/// ‖ key ‖ value length u32 ‖ value) * tag count`, lengths big-endian, strings UTF-8. Tags are kept
/// in the key's (sorted) order, so equal keys encode equally.
pub(crate) fn encode_series_key(key: &SeriesKey, out: &mut Vec<u8>) {
    let put = |out: &mut Vec<u8>, text: &str| {
        out.extend_from_slice(&(text.len() as u32).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    };
    put(out, &key.name);
    out.extend_from_slice(&(key.tags.len() as u32).to_be_bytes());
    for (tag, value) in key.tags.iter() {
        put(out, tag);
        put(out, value);
    }
}

/// Inverse of [`encode_series_key`]; the whole input must be consumed.
pub(crate) fn decode_series_key(bytes: &[u8]) -> Result<SeriesKey, &'static str> {
    let mut at = 0usize;
    let text = |at: &mut usize| -> Result<String, &'static str> {
        let length = u32_at(bytes, *at).ok_or("series key truncated in a length")? as usize;
        let start = *at + 4;
        let slice = bytes.get(start..start.saturating_add(length)).ok_or("series key truncated in a string")?;
        *at = start + length;
        String::from_utf8(slice.to_vec()).map_err(|_| "series key holds invalid UTF-8")
    };
    let name = text(&mut at)?;
    let tag_count = u32_at(bytes, at).ok_or("series key truncated in the tag count")? as usize;
    at += 4;
    // Each tag takes at least 8 bytes: refuse absurd counts before allocating for them.
    if tag_count > bytes.len().saturating_sub(at) / 8 {
        return Err("series key declares more tags than it holds");
    }
    let mut tags = Vec::with_capacity(tag_count);
    for _ in 0..tag_count {
        let tag = text(&mut at)?;
        let value = text(&mut at)?;
        tags.push((tag, value));
    }
    if at != bytes.len() {
        return Err("series key has trailing bytes");
    }
    Ok(SeriesKey { name: name.into(), tags: tags.into() })
}

/// Bytes of a statistics value.
pub(crate) const SERIES_STATISTICS_LENGTH: usize = 26;

/// Running statistics of one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeriesStatistics {
    /// Kind of the first value written.
    pub kind: ValueKind,
    /// Bit `k` set when a value of kind `k` (`ValueKind as u8`) was written.
    pub kinds_seen: u8,
    pub first_timestamp_ns: i64,
    pub last_timestamp_ns: i64,
    /// Points written; duplicates written by several segments count each time.
    pub point_count: u64,
}

impl SeriesStatistics {
    /// `kind u8 ‖ kinds seen u8 ‖ first timestamp i64 ‖ last timestamp i64 ‖ point count u64`, BE.
    pub(crate) fn to_bytes(self) -> [u8; SERIES_STATISTICS_LENGTH] {
        let mut bytes = [0u8; SERIES_STATISTICS_LENGTH];
        bytes[0] = self.kind as u8;
        bytes[1] = self.kinds_seen;
        bytes[2..10].copy_from_slice(&self.first_timestamp_ns.to_be_bytes());
        bytes[10..18].copy_from_slice(&self.last_timestamp_ns.to_be_bytes());
        bytes[18..26].copy_from_slice(&self.point_count.to_be_bytes());
        bytes
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<SeriesStatistics, &'static str> {
        if bytes.len() != SERIES_STATISTICS_LENGTH {
            return Err("series statistics are not 26 bytes");
        }
        SeriesStatistics::checked(
            bytes[0],
            bytes[1],
            i64_at(bytes, 2).ok_or("truncated")?,
            i64_at(bytes, 10).ok_or("truncated")?,
            u64_at(bytes, 18).ok_or("truncated")?,
        )
    }

    /// Statistics from their fields as stored, refused unless they could have been written.
    fn checked(
        kind: u8,
        kinds_seen: u8,
        first_timestamp_ns: i64,
        last_timestamp_ns: i64,
        point_count: u64,
    ) -> Result<SeriesStatistics, &'static str> {
        let kind_of = ValueKind::from_u8(kind).ok_or("series statistics name an unknown value kind")?;
        if kinds_seen & !0x0F != 0 || kinds_seen & (1 << kind) == 0 {
            return Err("series statistics have an impossible set of value kinds");
        }
        if first_timestamp_ns > last_timestamp_ns {
            return Err("series statistics have the first timestamp after the last");
        }
        Ok(SeriesStatistics { kind: kind_of, kinds_seen, first_timestamp_ns, last_timestamp_ns, point_count })
    }
}

// ---------------------------------------------------------------------------------------------
// meta

/// Meta key of the layout version (`u32 BE`).
pub(crate) const META_LAYOUT_VERSION: &[u8] = b"V";
/// Meta key of the counters.
pub(crate) const META_COUNTERS: &[u8] = b"C";
/// Meta key prefix of a stream entry: `'S' ‖ sender id ‖ epoch`.
pub(crate) const META_STREAM: u8 = b'S';
/// Meta key prefix of a sender's latest beacon: `'B' ‖ sender id`.
pub(crate) const META_BEACON: u8 = b'B';

/// Meta key prefix of the beacon that first announced an epoch: `'E' ‖ sender id ‖ epoch`.
pub(crate) const META_EPOCH_BEACON: u8 = b'E';

/// Meta key prefix of a statistics delta: `'D' ‖ delta number u64 BE`.
pub(crate) const META_STATISTICS_DELTA: u8 = b'D';

/// Meta key prefix of the apply log: `'A' ‖ apply number u64 BE`. The apply number of a segment
/// is the replica's `segments applied` counter once it is applied (1, 2, 3, …), so the log lists
/// every applied segment in the order it was applied, with no holes.
pub(crate) const META_APPLY_LOG: u8 = b'A';

/// Meta key prefix of a sink's cursor: `'K' ‖ sink name (UTF-8)`.
pub(crate) const META_SINK_CURSOR: u8 = b'K';

pub(crate) fn apply_log_key(apply_number: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = META_APPLY_LOG;
    key[1..9].copy_from_slice(&apply_number.to_be_bytes());
    key
}

const APPLY_LOG_ENTRY_VERSION: u8 = 1;
/// Bytes of an apply log entry.
pub(crate) const APPLY_LOG_ENTRY_LENGTH: usize = 1 + SEGMENT_KEY_LENGTH;

/// Apply log entry: `version u8 (1) ‖ segment key (sender id ‖ epoch ‖ sequence)`.
pub(crate) fn encode_apply_log_entry(segment: SegmentKey) -> [u8; APPLY_LOG_ENTRY_LENGTH] {
    let mut entry = [0u8; APPLY_LOG_ENTRY_LENGTH];
    entry[0] = APPLY_LOG_ENTRY_VERSION;
    entry[1..].copy_from_slice(&segment.to_bytes());
    entry
}

/// Inverse of [`encode_apply_log_entry`].
pub(crate) fn decode_apply_log_entry(entry: &[u8]) -> Result<SegmentKey, &'static str> {
    if entry.first() != Some(&APPLY_LOG_ENTRY_VERSION) {
        return Err("apply log entry has an unknown version or is empty");
    }
    if entry.len() != APPLY_LOG_ENTRY_LENGTH {
        return Err("apply log entry is not 25 bytes");
    }
    SegmentKey::from_bytes(&entry[1..]).ok_or("apply log entry holds no segment key")
}

/// Longest sink name, in bytes.
pub const MAX_SINK_NAME_BYTES: usize = 64;

pub(crate) fn sink_cursor_key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + name.len());
    key.push(META_SINK_CURSOR);
    key.extend_from_slice(name.as_bytes());
    key
}

pub(crate) fn parse_sink_cursor_key(key: &[u8]) -> Option<&str> {
    match key.split_first() {
        Some((&META_SINK_CURSOR, name)) if !name.is_empty() && name.len() <= MAX_SINK_NAME_BYTES => {
            std::str::from_utf8(name).ok()
        }
        _ => None,
    }
}

const SINK_CURSOR_VERSION: u8 = 1;
const SINK_CURSOR_LENGTH: usize = 17;

/// Sink cursor entry: `version u8 (1) ‖ apply number u64 BE (every segment up to it is exported)
/// ‖ updated at, ns i64 BE`.
pub(crate) fn encode_sink_cursor(apply_number: u64, updated_at_ns: i64) -> [u8; SINK_CURSOR_LENGTH] {
    let mut entry = [0u8; SINK_CURSOR_LENGTH];
    entry[0] = SINK_CURSOR_VERSION;
    entry[1..9].copy_from_slice(&apply_number.to_be_bytes());
    entry[9..17].copy_from_slice(&updated_at_ns.to_be_bytes());
    entry
}

/// Inverse of [`encode_sink_cursor`]: (apply number, updated at).
pub(crate) fn decode_sink_cursor(entry: &[u8]) -> Result<(u64, i64), &'static str> {
    if entry.first() != Some(&SINK_CURSOR_VERSION) || entry.len() != SINK_CURSOR_LENGTH {
        return Err("sink cursor has an unknown version or is not 17 bytes");
    }
    Ok((u64_at(entry, 1).ok_or("truncated")?, i64_at(entry, 9).ok_or("truncated")?))
}

pub(crate) fn statistics_delta_key(delta_number: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = META_STATISTICS_DELTA;
    key[1..9].copy_from_slice(&delta_number.to_be_bytes());
    key
}

pub(crate) fn parse_statistics_delta_key(key: &[u8]) -> Option<u64> {
    if key.len() != 9 || key[0] != META_STATISTICS_DELTA {
        return None;
    }
    u64_at(key, 1)
}

/// Version 1 deltas: fixed-width entries, still read.
const STATISTICS_DELTA_VERSION_FIXED: u8 = 1;
const STATISTICS_DELTA_FIXED_ENTRY_LENGTH: usize = 4 + SERIES_STATISTICS_LENGTH;
const STATISTICS_DELTA_VERSION: u8 = 2;

/// Statistics delta, the new statistics of every series one segment touched: `version u8 (2) ‖
/// entry*`, an entry being `series id step ‖ kind u8 ‖ kinds seen u8 ‖ first timestamp ‖ last
/// timestamp ‖ point count varint`, where the id step and the timestamps are zigzag varints of
/// their (wrapping) difference from the previous entry's (from 0 before the first). A segment's
/// series come in ascending ids with last timestamps within its span, so an entry takes about a
/// dozen bytes where version 1 (`version u8 (1) ‖ (series id u32 BE ‖ statistics, 26 bytes)*`,
/// still read) took 30: a live plant writes one each second for every series it has.
pub(crate) fn encode_statistics_delta(statistics: &[(u32, SeriesStatistics)]) -> Vec<u8> {
    let mut delta = Vec::with_capacity(1 + 16 * statistics.len());
    delta.push(STATISTICS_DELTA_VERSION);
    let (mut id, mut first, mut last) = (0i64, 0i64, 0i64);
    for &(series_id, entry) in statistics {
        put_varint(&mut delta, zigzag(i64::from(series_id).wrapping_sub(id)));
        delta.push(entry.kind as u8);
        delta.push(entry.kinds_seen);
        put_varint(&mut delta, zigzag(entry.first_timestamp_ns.wrapping_sub(first)));
        put_varint(&mut delta, zigzag(entry.last_timestamp_ns.wrapping_sub(last)));
        put_varint(&mut delta, entry.point_count);
        (id, first, last) = (i64::from(series_id), entry.first_timestamp_ns, entry.last_timestamp_ns);
    }
    delta
}

/// Inverse of [`encode_statistics_delta`], for both versions.
pub(crate) fn decode_statistics_delta(delta: &[u8]) -> Result<Vec<(u32, SeriesStatistics)>, &'static str> {
    match delta.first() {
        Some(&STATISTICS_DELTA_VERSION_FIXED) => {
            let entries = &delta[1..];
            if !entries.len().is_multiple_of(STATISTICS_DELTA_FIXED_ENTRY_LENGTH) {
                return Err("statistics delta is not a whole number of entries");
            }
            entries
                .chunks_exact(STATISTICS_DELTA_FIXED_ENTRY_LENGTH)
                .map(|entry| Ok((u32_at(entry, 0).ok_or("truncated")?, SeriesStatistics::from_bytes(&entry[4..])?)))
                .collect()
        }
        Some(&STATISTICS_DELTA_VERSION) => {
            let mut entries = Vec::new();
            let (mut at, mut id, mut first, mut last) = (1usize, 0i64, 0i64, 0i64);
            const TRUNCATED: &str = "statistics delta ends inside an entry";
            while at < delta.len() {
                id = id.wrapping_add(unzigzag(take_varint(delta, &mut at).ok_or(TRUNCATED)?));
                let series_id = u32::try_from(id).map_err(|_| "statistics delta names a series id out of range")?;
                let kinds = delta.get(at..at + 2).ok_or(TRUNCATED)?;
                at += 2;
                first = first.wrapping_add(unzigzag(take_varint(delta, &mut at).ok_or(TRUNCATED)?));
                last = last.wrapping_add(unzigzag(take_varint(delta, &mut at).ok_or(TRUNCATED)?));
                let point_count = take_varint(delta, &mut at).ok_or(TRUNCATED)?;
                entries.push((series_id, SeriesStatistics::checked(kinds[0], kinds[1], first, last, point_count)?));
            }
            Ok(entries)
        }
        _ => Err("statistics delta has an unknown version or is empty"),
    }
}

pub(crate) fn stream_key(sender_id: u64, epoch: u64) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[0] = META_STREAM;
    key[1..9].copy_from_slice(&sender_id.to_be_bytes());
    key[9..17].copy_from_slice(&epoch.to_be_bytes());
    key
}

pub(crate) fn parse_stream_key(key: &[u8]) -> Option<(u64, u64)> {
    if key.len() != 17 || key[0] != META_STREAM {
        return None;
    }
    Some((u64_at(key, 1)?, u64_at(key, 9)?))
}

pub(crate) fn beacon_key(sender_id: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = META_BEACON;
    key[1..9].copy_from_slice(&sender_id.to_be_bytes());
    key
}

pub(crate) fn parse_beacon_key(key: &[u8]) -> Option<u64> {
    if key.len() != 9 || key[0] != META_BEACON {
        return None;
    }
    u64_at(key, 1)
}

pub(crate) fn epoch_beacon_key(sender_id: u64, epoch: u64) -> [u8; 17] {
    let mut key = stream_key(sender_id, epoch);
    key[0] = META_EPOCH_BEACON;
    key
}

const EPOCH_BEACON_ENTRY_VERSION: u8 = 1;
const EPOCH_BEACON_ENTRY_PREFIX_LENGTH: usize = 9;

/// Epoch beacon entry: `version u8 (1) ‖ received at, ns i64 BE ‖ the raw signed beacon`, kept
/// once per epoch (the first beacon received of it) so that an audit can show, with the sender's
/// signature, why every epoch began and where the one before it ended.
pub(crate) fn encode_epoch_beacon_entry(received_at_ns: i64, raw: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(EPOCH_BEACON_ENTRY_PREFIX_LENGTH + raw.len());
    entry.push(EPOCH_BEACON_ENTRY_VERSION);
    entry.extend_from_slice(&received_at_ns.to_be_bytes());
    entry.extend_from_slice(raw);
    entry
}

/// Inverse of [`encode_epoch_beacon_entry`]: (received at, raw signed beacon).
pub(crate) fn decode_epoch_beacon_entry(entry: &[u8]) -> Result<(i64, &[u8]), &'static str> {
    if entry.first() != Some(&EPOCH_BEACON_ENTRY_VERSION) {
        return Err("epoch beacon entry has an unknown version or is empty");
    }
    let received_at_ns = i64_at(entry, 1).ok_or("epoch beacon entry is shorter than its prefix")?;
    Ok((received_at_ns, &entry[EPOCH_BEACON_ENTRY_PREFIX_LENGTH..]))
}

/// Stream entry flag: a beacon announced this epoch.
pub(crate) const STREAM_ANNOUNCED_BY_BEACON: u8 = 1;
/// Stream entry flag: a segment of this epoch was applied.
pub(crate) const STREAM_SEEN_IN_SEGMENT: u8 = 2;
const STREAM_ENTRY_VERSION: u8 = 1;

/// Stream entry: `version u8 (1) ‖ first seen at, ns i64 BE ‖ flags u8 ‖ SequenceTracker bytes`.
pub(crate) fn encode_stream_entry(first_seen_at_ns: i64, flags: u8, tracker: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(10 + tracker.len());
    entry.push(STREAM_ENTRY_VERSION);
    entry.extend_from_slice(&first_seen_at_ns.to_be_bytes());
    entry.push(flags);
    entry.extend_from_slice(tracker);
    entry
}

/// Splits a stream entry into (first seen at, flags, tracker bytes).
pub(crate) fn decode_stream_entry(entry: &[u8]) -> Result<(i64, u8, &[u8]), &'static str> {
    if entry.first() != Some(&STREAM_ENTRY_VERSION) || entry.len() < 10 {
        return Err("stream entry has an unknown version or is truncated");
    }
    Ok((i64_at(entry, 1).ok_or("truncated")?, entry[9], &entry[10..]))
}

/// What the replica keeps of a sender's latest beacon besides its raw signed bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BeaconSummary {
    /// When the receiver recorded the beacon, in ns since the Unix epoch by the receiver's clock.
    pub received_at_ns: i64,
    /// When the sender made the beacon, in ns since the Unix epoch by the sender's clock.
    pub sent_at_ns: i64,
    /// The sender's epoch when it sent the beacon.
    pub epoch: u64,
    /// The head it announced: the last sequence whose first transmission the sender had
    /// completed in that epoch (0: none yet).
    pub head_sequence: u64,
    /// That head segment's hash; zeros while `head_sequence` is 0.
    pub head_hash: SegmentHash,
    /// Sequences below this can no longer be resent by the sender.
    pub oldest_retained_sequence: u64,
    /// Records the sender had sealed since its process started: a progress figure for status.
    pub records_sealed: u64,
    /// Records the sender had accepted and not yet sealed: its backlog.
    pub spooled_records: u64,
    /// The epoch before the beacon's (0: none).
    pub previous_epoch: u64,
    /// The last sequence sealed in that previous epoch (0: none, or the sender lost its log).
    pub previous_epoch_last_sequence: u64,
    /// The sender's software as the beacon names it (empty for format 1 beacons); read from the
    /// kept raw bytes, not stored apart.
    pub software: String,
}

impl BeaconSummary {
    /// Where the kept beacon stands in its sender's stream (see [`diode_common::beacon::BeaconOrder`]).
    pub fn order(&self) -> diode_common::beacon::BeaconOrder {
        diode_common::beacon::BeaconOrder {
            epoch: self.epoch,
            head_sequence: self.head_sequence,
            sent_at_ns: self.sent_at_ns,
        }
    }
}

const BEACON_ENTRY_VERSION: u8 = 1;
const BEACON_ENTRY_FIXED_LENGTH: usize = 1 + 8 * 9 + 32 + 4;

/// Beacon entry: `version u8 (1) ‖ received at i64 ‖ sent at i64 ‖ epoch u64 ‖ head sequence u64
/// ‖ head hash [32] ‖ oldest retained u64 ‖ records sealed u64 ‖ spooled records u64 ‖ previous
/// epoch u64 ‖ previous epoch's last sequence u64 ‖ raw length u32 ‖ raw signed beacon bytes`, BE.
pub(crate) fn encode_beacon_entry(summary: &BeaconSummary, raw: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(BEACON_ENTRY_FIXED_LENGTH + raw.len());
    entry.push(BEACON_ENTRY_VERSION);
    entry.extend_from_slice(&summary.received_at_ns.to_be_bytes());
    entry.extend_from_slice(&summary.sent_at_ns.to_be_bytes());
    entry.extend_from_slice(&summary.epoch.to_be_bytes());
    entry.extend_from_slice(&summary.head_sequence.to_be_bytes());
    entry.extend_from_slice(&summary.head_hash);
    for value in [
        summary.oldest_retained_sequence,
        summary.records_sealed,
        summary.spooled_records,
        summary.previous_epoch,
        summary.previous_epoch_last_sequence,
    ] {
        entry.extend_from_slice(&value.to_be_bytes());
    }
    entry.extend_from_slice(&(raw.len() as u32).to_be_bytes());
    entry.extend_from_slice(raw);
    entry
}

/// Inverse of [`encode_beacon_entry`]: (summary, raw bytes).
pub(crate) fn decode_beacon_entry(entry: &[u8]) -> Result<(BeaconSummary, &[u8]), &'static str> {
    if entry.first() != Some(&BEACON_ENTRY_VERSION) || entry.len() < BEACON_ENTRY_FIXED_LENGTH {
        return Err("beacon entry has an unknown version or is truncated");
    }
    let truncated = "beacon entry is truncated";
    let summary = BeaconSummary {
        received_at_ns: i64_at(entry, 1).ok_or(truncated)?,
        sent_at_ns: i64_at(entry, 9).ok_or(truncated)?,
        epoch: u64_at(entry, 17).ok_or(truncated)?,
        head_sequence: u64_at(entry, 25).ok_or(truncated)?,
        head_hash: entry[33..65].try_into().map_err(|_| truncated)?,
        oldest_retained_sequence: u64_at(entry, 65).ok_or(truncated)?,
        records_sealed: u64_at(entry, 73).ok_or(truncated)?,
        spooled_records: u64_at(entry, 81).ok_or(truncated)?,
        previous_epoch: u64_at(entry, 89).ok_or(truncated)?,
        previous_epoch_last_sequence: u64_at(entry, 97).ok_or(truncated)?,
        software: String::new(),
    };
    let raw_length = u32_at(entry, 105).ok_or(truncated)? as usize;
    let raw = &entry[BEACON_ENTRY_FIXED_LENGTH..];
    if raw.len() != raw_length {
        return Err("beacon entry's raw length does not match its bytes");
    }
    let software = diode_common::beacon::peek_software(raw).ok_or("beacon entry's raw bytes are no beacon")?;
    Ok((BeaconSummary { software, ..summary }, raw))
}

/// Replica-wide counters, persisted with every apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Segments applied since the replica was created (replays of applied ones are not counted).
    pub segments_applied: u64,
    /// Records those segments wrote.
    pub points_applied: u64,
    /// Verified beacons recorded, including older ones that only taught heads.
    pub beacons_recorded: u64,
}

impl Counters {
    /// `segments applied u64 ‖ points applied u64 ‖ beacons recorded u64`, BE.
    pub fn to_bytes(self) -> [u8; 24] {
        let mut bytes = [0u8; 24];
        bytes[0..8].copy_from_slice(&self.segments_applied.to_be_bytes());
        bytes[8..16].copy_from_slice(&self.points_applied.to_be_bytes());
        bytes[16..24].copy_from_slice(&self.beacons_recorded.to_be_bytes());
        bytes
    }

    /// Reads the stored counters; an error names what is wrong with the bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Counters, &'static str> {
        if bytes.len() != 24 {
            return Err("counters are not 24 bytes");
        }
        Ok(Counters {
            segments_applied: u64_at(bytes, 0).ok_or("truncated")?,
            points_applied: u64_at(bytes, 8).ok_or("truncated")?,
            beacons_recorded: u64_at(bytes, 16).ok_or("truncated")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_aligned_hours_and_negative_times_sort_first() {
        assert_eq!(bucket_start(0), 0);
        assert_eq!(bucket_start(BUCKET_NS - 1), 0);
        assert_eq!(bucket_start(-1), -BUCKET_NS);
        assert_eq!(bucket_start(i64::MIN), i64::MIN);
        assert!(bucket_prefix(1, -BUCKET_NS) < bucket_prefix(1, 0));
        assert!(bucket_prefix(1, i64::MAX) < bucket_prefix(2, i64::MIN));
        assert_eq!(from_order_preserving(order_preserving(-5)), -5);
    }

    #[test]
    fn point_keys_sort_by_series_bucket_epoch_sequence_then_sender() {
        let key = PointKey { series_id: 3, bucket_start_ns: -BUCKET_NS, epoch: 2, sequence: 9, sender_id: 1 };
        assert_eq!(PointKey::from_bytes(&key.to_bytes()), Some(key));
        let later = PointKey { sequence: 10, sender_id: 0, ..key };
        assert!(key.to_bytes() < later.to_bytes());
        let upper = scan_upper_bound(3, -BUCKET_NS).unwrap();
        assert!(key.to_bytes().as_slice() < upper.as_slice());
        assert!(bucket_prefix(3, 0).as_slice() >= upper.as_slice());
    }

    #[test]
    fn series_keys_round_trip_and_truncations_are_refused() {
        let key = SeriesKey::with_tags("plant1/boiler3/temp", vec![("unit".into(), "degC".into())]);
        let mut bytes = Vec::new();
        encode_series_key(&key, &mut bytes);
        assert_eq!(decode_series_key(&bytes), Ok(key));
        for length in 0..bytes.len() {
            assert!(decode_series_key(&bytes[..length]).is_err(), "length {length}");
        }
    }

    #[test]
    fn statistics_deltas_round_trip_and_damage_is_refused() {
        let statistics = SeriesStatistics {
            kind: ValueKind::I64,
            kinds_seen: 0b10,
            first_timestamp_ns: -4,
            last_timestamp_ns: 9,
            point_count: 3,
        };
        let extreme = SeriesStatistics {
            kind: ValueKind::String,
            kinds_seen: 0b1111,
            first_timestamp_ns: i64::MIN,
            last_timestamp_ns: i64::MAX,
            point_count: u64::MAX,
        };
        let entries = vec![(7, statistics), (9, statistics), (u32::MAX, extreme), (0, statistics)];
        let delta = encode_statistics_delta(&entries);
        assert_eq!(decode_statistics_delta(&delta), Ok(entries.clone()));
        // Cut anywhere: refused, or (cut between entries) the entries before the cut.
        for length in 0..delta.len() {
            if let Ok(decoded) = decode_statistics_delta(&delta[..length]) {
                assert!(length >= 1 && decoded[..] == entries[..decoded.len()], "length {length}");
                assert!(decoded.len() < entries.len());
            }
        }
        // An impossible entry (first after last) is refused, as in a checkpoint.
        let mut backwards = encode_statistics_delta(&[(3, statistics)]);
        let at = backwards.len() - 2;
        backwards[at] = zigzag(-20) as u8;
        assert!(decode_statistics_delta(&backwards).is_err());
        // Version 1, as earlier builds wrote it, is still read.
        let mut fixed = vec![STATISTICS_DELTA_VERSION_FIXED];
        for (id, entry) in &entries[..2] {
            fixed.extend_from_slice(&id.to_be_bytes());
            fixed.extend_from_slice(&entry.to_bytes());
        }
        assert_eq!(decode_statistics_delta(&fixed), Ok(entries[..2].to_vec()));
        assert!(decode_statistics_delta(&fixed[..fixed.len() - 1]).is_err());
        assert!(decode_statistics_delta(&[3]).is_err());
        assert_eq!(parse_statistics_delta_key(&statistics_delta_key(42)), Some(42));
    }

    #[test]
    fn beacon_entries_round_trip() {
        let summary = BeaconSummary {
            received_at_ns: 1,
            sent_at_ns: 2,
            epoch: 3,
            head_sequence: 4,
            head_hash: [5; 32],
            oldest_retained_sequence: 6,
            records_sealed: 7,
            spooled_records: 8,
            previous_epoch: 9,
            previous_epoch_last_sequence: 10,
            software: "0.1.0 (abc)".to_owned(),
        };
        let key = diode_common::keys::SenderKey::from_seed([1; 32]);
        let raw = diode_common::beacon::Beacon {
            epoch_reason: diode_common::beacon::EpochReason::Continuing,
            sender_id: 1,
            key_id: key.key_id(),
            epoch: 3,
            head_sequence: 4,
            head_hash: [5; 32],
            sent_at_ns: 2,
            epoch_started_at_ns: 0,
            oldest_retained_sequence: 6,
            records_sealed: 7,
            datagrams_sent: 0,
            previous_epoch: 9,
            previous_epoch_last_sequence: 10,
            previous_epoch_last_hash: [0; 32],
            spooled_records: 8,
            beacon_counter: 1,
            link_rate_kbit_s: 1,
            software: "0.1.0 (abc)".to_owned(),
        }
        .sign(&key);
        let entry = encode_beacon_entry(&summary, &raw);
        assert_eq!(decode_beacon_entry(&entry), Ok((summary, &raw[..])));
        assert!(decode_beacon_entry(&entry[..entry.len() - 1]).is_err());
        assert!(decode_beacon_entry(&encode_beacon_entry(&BeaconSummary::default(), b"raw")).is_err(), "not a beacon");
    }

    #[test]
    fn epoch_beacon_entries_round_trip_and_damage_is_refused() {
        let entry = encode_epoch_beacon_entry(-3, b"signed");
        assert_eq!(decode_epoch_beacon_entry(&entry), Ok((-3, &b"signed"[..])));
        for length in 0..EPOCH_BEACON_ENTRY_PREFIX_LENGTH {
            assert!(decode_epoch_beacon_entry(&entry[..length]).is_err(), "length {length}");
        }
        assert_eq!(parse_stream_key(&epoch_beacon_key(1, 2)), None, "another prefix than stream entries");
    }

    #[test]
    fn apply_log_entries_and_sink_cursors_round_trip_and_refuse_damage() {
        let segment = SegmentKey { sender_id: 7, epoch: 8, sequence: 9 };
        assert_eq!(decode_apply_log_entry(&encode_apply_log_entry(segment)), Ok(segment));
        assert_eq!(apply_log_key(42)[1..], 42u64.to_be_bytes());
        let entry = encode_apply_log_entry(segment);
        for length in 0..entry.len() {
            assert!(decode_apply_log_entry(&entry[..length]).is_err(), "length {length}");
        }
        assert_eq!(decode_sink_cursor(&encode_sink_cursor(5, -6)), Ok((5, -6)));
        assert!(decode_sink_cursor(&encode_sink_cursor(5, 6)[..16]).is_err());
        assert_eq!(parse_sink_cursor_key(&sink_cursor_key("warehouse")), Some("warehouse"));
        assert_eq!(parse_sink_cursor_key(&[META_SINK_CURSOR]), None, "a name is never empty");
        assert!(
            apply_log_key(u64::MAX).as_slice() < [META_BEACON].as_slice(),
            "the apply log sorts before the beacons"
        );
    }
}

//! The chunk comparison of `audit verify`: every chunk stored in the points column family must be
//! exactly what a verified segment wrote for that series and bucket, and every chunk a verified
//! segment wrote must be there.
//!
//! The point comparison (`points.rs`) checks what queries return: one value per timestamp after
//! last-write-wins. That hides whatever a later write supersedes, and it reads only catalogued
//! series. So the audit also reads the chunks raw:
//!
//! - [`inventory`] walks the whole column family once, in key order. A key that is not a points key
//!   and a chunk under a series id the catalog does not hold are findings on their own; the chunks
//!   of catalogued series are counted.
//! - [`check_series`] runs beside the point comparison, per series and window, on the segments
//!   that window decoded: each stored chunk's rows are compared, in order, with the rows its
//!   segment (named by the chunk key) holds for the series in that bucket, and expected chunks that
//!   are absent are found. The chunks checked must add up to the inventory's count.
//!   [`SeriesChunks`] does the same on the one read of the chunks that also gives the point
//!   comparison its merged points; [`check_series`] (on a read of its own) is what runs when a
//!   chunk cannot be read or decoded, to name it.
//!
//! A difference the point comparison already named (a changed, deleted or added visible point at
//! that timestamp) is not named again; a chunk finding names what only the chunks show: a
//! superseded value altered, a chunk whose points all lie behind later writes, a chunk under a
//! segment that never wrote it.

use std::cmp::Ordering;
use std::ops::Range;

use diode_common::codec::{SeriesColumns, decode_columns};
use diode_common::keys::encode_hex;
use diode_common::record::{Quality, SeriesKey, Value};
use diode_replica::{
    BUCKET_NS, ChunkScan, ChunkValue, PointKey, PointsEntry, RawChunk, Replica, ReplicaError, SegmentKey, SeriesInfo,
    bucket_start,
};

use super::findings::{Finding, Findings, segment_name};
use super::report::PointTotals;
use super::signed::{SignedPart, qualities_equal, rows_in_window, values_equal, values_equal_rows};

/// Whether the bucket starting at `bucket_start_ns` overlaps `span`.
fn bucket_overlaps(bucket_start_ns: i64, span: (i64, i64)) -> bool {
    bucket_start_ns <= span.1 && bucket_start_ns.saturating_add(BUCKET_NS - 1) >= span.0
}

fn segment_of(key: &PointKey) -> SegmentKey {
    SegmentKey { sender_id: key.sender_id, epoch: key.epoch, sequence: key.sequence }
}

/// Walks every chunk whose bucket overlaps `span`: malformed keys and chunks of series ids at or
/// above `catalogued` (the catalog holds ids `0..catalogued`) become findings; returns how many
/// chunks of catalogued series there are, for [`check_series`] to account for.
pub(super) fn inventory(
    replica: &Replica,
    span: (i64, i64),
    catalogued: u32,
    findings: &mut Findings,
) -> Result<u64, ReplicaError> {
    let mut catalogued_chunks = 0u64;
    replica.for_each_point_chunk(|entry| {
        let (key, value) = match entry {
            PointsEntry::Chunk(key, value) => (key, value),
            PointsEntry::Malformed(key_bytes, value) => {
                findings.push(Finding::ChunkKeyMalformed {
                    key_hex: encode_hex(key_bytes),
                    value_bytes: value.len() as u64,
                });
                return;
            }
            PointsEntry::Merged { key, series_id, bucket_start_ns, chunks, value } => {
                if !bucket_overlaps(bucket_start_ns, span) {
                    return;
                }
                if series_id < catalogued {
                    // A table that cannot be read is the series check's finding (points_unreadable).
                    catalogued_chunks += chunks.map_or(0, |keys| keys.len() as u64);
                    return;
                }
                match Replica::merged_bucket_chunks(series_id, bucket_start_ns, value) {
                    Ok(chunks) => {
                        for (chunk, columns) in chunks {
                            findings.push(Finding::ChunkUncatalogued {
                                chunk,
                                rows: Some(columns.len() as u64),
                                first_timestamp_ns: columns.timestamps_ns.first().copied(),
                            });
                        }
                    }
                    Err(_) => findings
                        .push(Finding::ChunkKeyMalformed { key_hex: encode_hex(key), value_bytes: value.len() as u64 }),
                }
                return;
            }
        };
        if !bucket_overlaps(key.bucket_start_ns, span) {
            return;
        }
        if key.series_id < catalogued {
            catalogued_chunks += 1;
            return;
        }
        let decoded = decode_columns(value, SeriesKey::new("")).ok();
        findings.push(Finding::ChunkUncatalogued {
            chunk: key,
            rows: decoded.as_ref().map(|columns| columns.len() as u64),
            first_timestamp_ns: decoded.and_then(|columns| columns.timestamps_ns.first().copied()),
        });
    })?;
    Ok(catalogued_chunks)
}

/// Rows `start..end` of part `part`: a run of one expected chunk.
type Run = (u32, u32, u32);

/// Chunk key order within one series: bucket, then epoch, sequence, sender id.
type ChunkOrder = (i64, u64, u64, u64);

fn order_of(bucket_start_ns: i64, segment: SegmentKey) -> ChunkOrder {
    (bucket_start_ns, segment.epoch, segment.sequence, segment.sender_id)
}

/// The chunks signed parts must have produced in a window ([`expected_chunks`]), each taken at most
/// once as a stored chunk claims it; what is left was never stored.
#[derive(Debug, PartialEq)]
struct ExpectedChunks {
    /// Every chunk's runs, sorted by chunk and then by (part, first row): a chunk's runs in write
    /// order, as apply wrote them. One flat vector rather than a map of vectors: a series has a
    /// chunk per segment per window, and building a map of them was a twentieth of the audit.
    runs: Vec<(ChunkOrder, Run)>,
    /// Per entry of `runs`, whether its chunk was taken.
    taken: Vec<bool>,
}

impl ExpectedChunks {
    /// The runs of chunk `order`, unless there are none or they were taken already.
    fn take(&mut self, order: ChunkOrder) -> Option<Vec<Run>> {
        let start = self.runs.partition_point(|(chunk, _)| *chunk < order);
        let end = start + self.runs[start..].partition_point(|(chunk, _)| *chunk == order);
        if start == end || self.taken[start] {
            return None;
        }
        self.taken[start..end].fill(true);
        Some(self.runs[start..end].iter().map(|&(_, run)| run).collect())
    }

    /// The chunks not taken, in order, each with its runs.
    fn into_left(self) -> Vec<(ChunkOrder, Vec<Run>)> {
        let mut left: Vec<(ChunkOrder, Vec<Run>)> = Vec::new();
        for ((chunk, run), taken) in self.runs.into_iter().zip(self.taken) {
            match left.last_mut() {
                _ if taken => {}
                Some((last, runs)) if *last == chunk => runs.push(run),
                _ => left.push((chunk, vec![run])),
            }
        }
        left
    }
}

/// The chunks the signed `parts` (in write order) must have produced in `window`, each as runs of
/// rows in input order: what apply wrote, restricted to the window.
fn expected_chunks(parts: &[SignedPart<'_>], window: (i64, i64)) -> ExpectedChunks {
    let mut runs: Vec<(ChunkOrder, Run)> = Vec::with_capacity(parts.len());
    for (part_index, part) in parts.iter().enumerate() {
        let mut close = |(bucket_start_ns, start, end): (i64, u32, u32)| {
            runs.push((order_of(bucket_start_ns, part.segment), (part_index as u32, start, end)));
        };
        if part.ascending {
            // The rows in the window are one range, cut at each bucket's end by binary search.
            let timestamps_ns = &part.columns.timestamps_ns;
            let Range { start: mut row, end } = rows_in_window(timestamps_ns, window);
            while row < end {
                let start_ns = bucket_start(timestamps_ns[row]);
                // The last bucket (whose end is past `i64::MAX`) holds every row left, as does
                // any bucket that holds the last row.
                let next = match start_ns.checked_add(BUCKET_NS) {
                    Some(end_ns) if timestamps_ns[end - 1] >= end_ns => {
                        row + timestamps_ns[row..end].partition_point(|&t| t < end_ns)
                    }
                    _ => end,
                };
                close((start_ns, row as u32, next as u32));
                row = next;
            }
            continue;
        }
        // (bucket start, first row, row after the last) of the run being gathered.
        let mut run: Option<(i64, u32, u32)> = None;
        // The bucket of the previous row, [start, end): rows of one bucket follow each other, so
        // most rows need no division to find theirs.
        let mut bucket = (i64::MAX, i64::MIN);
        for (row, &timestamp_ns) in part.columns.timestamps_ns.iter().enumerate() {
            if !(window.0..=window.1).contains(&timestamp_ns) {
                continue;
            }
            if !(bucket.0 <= timestamp_ns && timestamp_ns < bucket.1) {
                let start_ns = bucket_start(timestamp_ns);
                bucket = (start_ns, start_ns.saturating_add(BUCKET_NS));
            }
            let row = row as u32;
            match &mut run {
                Some((open, _, end)) if *open == bucket.0 && *end == row => *end = row + 1,
                _ => {
                    if let Some(closed) = run.take() {
                        close(closed);
                    }
                    run = Some((bucket.0, row, row + 1));
                }
            }
        }
        if let Some(closed) = run {
            close(closed);
        }
    }
    // Runs were added part by part, each part's in row order, so sorting by (chunk, part, first
    // row) keeps each chunk's runs in write order; parts come in write order and mostly lie in one
    // bucket, so this is usually sorted already.
    runs.sort_unstable();
    let taken = vec![false; runs.len()];
    ExpectedChunks { runs, taken }
}

/// Whether row `i` of `a` and row `j` of `b` hold the same time, value (bit for bit) and quality.
fn same_row(a: &SeriesColumns, i: usize, b: &SeriesColumns, j: usize) -> bool {
    a.timestamps_ns[i] == b.timestamps_ns[j]
        && a.qualities[i] == b.qualities[j]
        && values_equal(&a.values, i, &b.values, j)
}

/// A row as a comparable value, for the (rare) detailed diff of a chunk that differs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum RowValue {
    F64(u64),
    I64(i64),
    Bool(bool),
    String(String),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    timestamp_ns: i64,
    value: RowValue,
    quality: u32,
}

impl Row {
    fn of(columns: &SeriesColumns, row: usize) -> Row {
        let value = match columns.value(row) {
            Value::F64(v) => RowValue::F64(v.to_bits()),
            Value::I64(v) => RowValue::I64(v),
            Value::Bool(v) => RowValue::Bool(v),
            Value::String(v) => RowValue::String(v),
        };
        Row { timestamp_ns: columns.timestamps_ns[row], value, quality: columns.qualities[row].0 }
    }

    fn point(&self) -> (Value, Quality) {
        let value = match &self.value {
            RowValue::F64(bits) => Value::F64(f64::from_bits(*bits)),
            RowValue::I64(v) => Value::I64(*v),
            RowValue::Bool(v) => Value::Bool(*v),
            RowValue::String(v) => Value::String(v.clone()),
        };
        (value, Quality(self.quality))
    }
}

/// Rows only `signed` holds and rows only `stored` holds (as multisets); when both hold the same
/// rows in another order (which changes which duplicate wins), the rows at the positions that
/// differ.
fn differing_rows(signed: &[Row], stored: &[Row]) -> (Vec<Row>, Vec<Row>) {
    let (mut a, mut b) = (signed.to_vec(), stored.to_vec());
    a.sort_unstable();
    b.sort_unstable();
    let (mut only_signed, mut only_stored) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let order = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => Ordering::Less,
            (None, _) => Ordering::Greater,
        };
        match order {
            Ordering::Equal => (i, j) = (i + 1, j + 1),
            Ordering::Less => {
                only_signed.push(a[i].clone());
                i += 1;
            }
            Ordering::Greater => {
                only_stored.push(b[j].clone());
                j += 1;
            }
        }
    }
    if only_signed.is_empty() && only_stored.is_empty() {
        for (x, y) in signed.iter().zip(stored) {
            if x != y {
                only_signed.push(x.clone());
                only_stored.push(y.clone());
            }
        }
    }
    (only_signed, only_stored)
}

/// What [`check_series`] compares a stored chunk against.
struct Expectation<'a, 'p> {
    parts: &'a [SignedPart<'p>],
    runs: Option<Vec<Run>>,
}

impl Expectation<'_, '_> {
    fn rows(&self) -> impl Iterator<Item = (&SeriesColumns, usize)> + '_ {
        self.runs.iter().flatten().flat_map(move |&(part, start, end)| {
            let columns = self.parts[part as usize].columns;
            (start as usize..end as usize).map(move |row| (columns, row))
        })
    }

    /// Whether the stored chunk's rows in `window` are exactly the expected rows, in order.
    fn matches(&self, stored: &SeriesColumns, window: (i64, i64)) -> bool {
        // The earliest and latest time in one pass without an early exit (it vectorises).
        let (earliest, latest) = stored
            .timestamps_ns
            .iter()
            .fold((i64::MAX, i64::MIN), |(earliest, latest), &time| (earliest.min(time), latest.max(time)));
        if window.0 <= earliest && latest <= window.1 {
            return self.matches_whole(stored);
        }
        let mut signed = self.rows();
        for (row, timestamp_ns) in stored.timestamps_ns.iter().enumerate() {
            if !(window.0..=window.1).contains(timestamp_ns) {
                continue;
            }
            match signed.next() {
                Some((columns, signed_row)) if same_row(columns, signed_row, stored, row) => {}
                _ => return false,
            }
        }
        signed.next().is_none()
    }

    /// [`matches`](Self::matches) for a chunk whose rows all lie in the window: the expected runs,
    /// one after the other, are the stored columns, compared a run of columns at a time.
    fn matches_whole(&self, stored: &SeriesColumns) -> bool {
        let mut position = 0;
        for &(part, start, end) in self.runs.iter().flatten() {
            let columns = self.parts[part as usize].columns;
            let (signed, here) = (start as usize..end as usize, position..position + (end - start) as usize);
            if here.end > stored.len()
                || columns.timestamps_ns[signed.clone()] != stored.timestamps_ns[here.clone()]
                || !qualities_equal(&columns.qualities[signed.clone()], &stored.qualities[here.clone()])
                || !values_equal_rows(&columns.values, signed, &stored.values, here.clone())
            {
                return false;
            }
            position = here.end;
        }
        position == stored.len()
    }
}

/// Checks every stored chunk of `info` in `window` against the chunks the signed `parts` (in write
/// order) produced there. `flagged` holds the timestamps the point comparison already named,
/// ascending. Counts chunks in `totals`; a storage error becomes a `points_unreadable` finding.
pub(super) fn check_series(
    replica: &Replica,
    info: &SeriesInfo,
    parts: &[SignedPart<'_>],
    window: (i64, i64),
    flagged: &[i64],
    totals: &mut PointTotals,
    findings: &mut Findings,
) {
    let mut check = SeriesCheck { info, series: info.key.to_string(), window, flagged, totals, findings };
    let mut expected = expected_chunks(parts, window);
    for chunk in replica.series_chunks(info.id, window.0, window.1) {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                check.unreadable(window, error.to_string());
                return;
            }
        };
        // A malformed key is the inventory's finding.
        let Ok(key) = chunk.key else { continue };
        check.totals.chunks_checked += 1;
        // Expected or not, a chunk that does not decode is named once, as unreadable.
        let runs = expected.take(order_of(key.bucket_start_ns, segment_of(&key)));
        let Some(stored) = check.decode(key, chunk.value) else { continue };
        check.stored_chunk(key, &stored, Expectation { parts, runs });
    }
    for (order, runs) in expected.into_left() {
        check.absent_chunk(order, Expectation { parts, runs: Some(runs) });
    }
}

/// The rows of `columns` whose time lies in `window`, in order.
fn rows_in(columns: &SeriesColumns, window: (i64, i64)) -> Vec<Row> {
    (0..columns.len())
        .filter(|&row| (window.0..=window.1).contains(&columns.timestamps_ns[row]))
        .map(|row| Row::of(columns, row))
        .collect()
}

/// Why [`SeriesChunks`] stopped before the end: the chunks are not all readable as stored chunks,
/// and the comparisons must read them on their own to name what is wrong.
#[derive(Debug)]
pub(super) struct Unusable(String);

impl std::fmt::Display for Unusable {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// The stored chunks of one series in one window, read and decoded once for both comparisons.
///
/// As an iterator it yields, bucket by bucket, the points the replica's own scan shows for that
/// bucket (the bucket's chunks merged last-write-wins by [`Replica::merge_chunks_blocks`], the
/// scan's merge, as one or more blocks in time order), for the point comparison; on the way each chunk
/// is compared with the chunk its segment wrote, as [`check_series`] does, and [`finish`] then
/// names what differs, once the point comparison has said which timestamps it already named.
/// Memory: one bucket's chunks, as the scan.
///
/// Anything that is not a well-formed, decodable chunk (a RocksDB error, a key that is not a
/// points key, a value that does not decode) ends the iteration with an [`Unusable`] error: the
/// caller then discards what this pass found and runs the scan and [`check_series`] instead,
/// which name it.
///
/// [`finish`]: SeriesChunks::finish
pub(super) struct SeriesChunks<'r, 'a, 'p> {
    chunks: std::iter::Peekable<ChunkScan<'r>>,
    info: &'a SeriesInfo,
    parts: &'a [SignedPart<'p>],
    window: (i64, i64),
    expected: ExpectedChunks,
    checked: u64,
    matched: u64,
    /// Stored chunks that differ from what their segment wrote: key, rows in the window, the
    /// runs their segment wrote (`None`: none).
    differing: Vec<(PointKey, Vec<Row>, Option<Vec<Run>>)>,
    unusable: bool,
    /// The blocks of the bucket last read still to yield, last first.
    blocks: Vec<SeriesColumns>,
}

impl<'r, 'a, 'p> SeriesChunks<'r, 'a, 'p> {
    pub(super) fn new(
        replica: &'r Replica,
        info: &'a SeriesInfo,
        parts: &'a [SignedPart<'p>],
        window: (i64, i64),
    ) -> SeriesChunks<'r, 'a, 'p> {
        SeriesChunks {
            chunks: replica.series_chunks(info.id, window.0, window.1).peekable(),
            info,
            parts,
            window,
            expected: expected_chunks(parts, window),
            checked: 0,
            matched: 0,
            differing: Vec::new(),
            unusable: false,
            blocks: Vec::new(),
        }
    }

    fn unusable(&mut self, reason: String) -> Option<Result<SeriesColumns, Unusable>> {
        self.unusable = true;
        Some(Err(Unusable(reason)))
    }

    /// Compares one decoded stored chunk with what its segment wrote.
    fn check(&mut self, key: PointKey, stored: &SeriesColumns) {
        self.checked += 1;
        let runs = self.expected.take(order_of(key.bucket_start_ns, segment_of(&key)));
        let expectation = Expectation { parts: self.parts, runs };
        if expectation.matches(stored, self.window) {
            self.matched += u64::from(expectation.runs.is_some());
        } else {
            self.differing.push((key, rows_in(stored, self.window), expectation.runs));
        }
    }

    /// Counts the chunks checked and names the stored chunks that differ and the expected ones
    /// that are absent, leaving out the timestamps in `flagged` (ascending): those the point
    /// comparison named. Call once the iteration has ended without an error.
    pub(super) fn finish(self, flagged: &[i64], totals: &mut PointTotals, findings: &mut Findings) {
        totals.chunks_checked += self.checked;
        totals.chunks_matched += self.matched;
        let window = self.window;
        let mut check =
            SeriesCheck { info: self.info, series: self.info.key.to_string(), window, flagged, totals, findings };
        for (key, stored_rows, runs) in self.differing {
            check.differing_chunk(key, stored_rows, Expectation { parts: self.parts, runs });
        }
        for (order, runs) in self.expected.into_left() {
            check.absent_chunk(order, Expectation { parts: self.parts, runs: Some(runs) });
        }
    }
}

impl Iterator for SeriesChunks<'_, '_, '_> {
    type Item = Result<SeriesColumns, Unusable>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.unusable {
            return None;
        }
        if let Some(block) = self.blocks.pop() {
            return Some(Ok(block));
        }
        loop {
            let mut bucket: Option<i64> = None;
            let mut decoded = Vec::new();
            loop {
                let next_in_bucket = match self.chunks.peek() {
                    None => false,
                    Some(Ok(RawChunk { key: Ok(key), .. })) => bucket.is_none_or(|start| start == key.bucket_start_ns),
                    Some(_) => true,
                };
                if !next_in_bucket {
                    break;
                }
                let (key, value) = match self.chunks.next() {
                    Some(Ok(RawChunk { key: Ok(key), value })) => (key, value),
                    Some(Ok(RawChunk { key: Err(_), .. })) => {
                        return self.unusable("a key that is not a points key".into());
                    }
                    Some(Err(error)) => return self.unusable(error.to_string()),
                    None => break,
                };
                let stored = match value.into_columns(self.info.key.clone()) {
                    Ok(stored) => stored,
                    Err(error) => return self.unusable(error.to_string()),
                };
                self.check(key, &stored);
                bucket = Some(key.bucket_start_ns);
                decoded.push(stored);
            }
            if decoded.is_empty() {
                return None;
            }
            self.blocks = Replica::merge_chunks_blocks(decoded, self.window.0, self.window.1);
            self.blocks.reverse();
            if let Some(block) = self.blocks.pop() {
                return Some(Ok(block));
            }
        }
    }
}

/// Counts and names what [`check_series`] finds for one series in one window.
struct SeriesCheck<'a> {
    info: &'a SeriesInfo,
    series: String,
    window: (i64, i64),
    flagged: &'a [i64],
    totals: &'a mut PointTotals,
    findings: &'a mut Findings,
}

impl SeriesCheck<'_> {
    /// The rows at timestamps the point comparison did not name: what only the chunks show.
    fn hidden(&self, rows: &[Row]) -> Vec<Row> {
        rows.iter().filter(|row| self.flagged.binary_search(&row.timestamp_ns).is_err()).cloned().collect()
    }

    fn unreadable(&mut self, (from_ns, to_ns): (i64, i64), message: String) {
        self.totals.unreadable += 1;
        self.findings.push(Finding::PointsUnreadable {
            series: self.series.clone(),
            series_id: self.info.id,
            from_ns,
            to_ns,
            message,
        });
    }

    /// The stored chunk's columns, or `None` (and a finding) when it cannot be decoded.
    fn decode(&mut self, key: PointKey, value: ChunkValue) -> Option<SeriesColumns> {
        match value.into_columns(self.info.key.clone()) {
            Ok(stored) => Some(stored),
            Err(error) => {
                let bucket = (key.bucket_start_ns, key.bucket_start_ns.saturating_add(BUCKET_NS - 1));
                let message =
                    format!("the chunk written by {} cannot be decoded: {error}", segment_name(segment_of(&key)));
                self.unreadable(bucket, message);
                None
            }
        }
    }

    /// Compares one stored chunk with the chunk its segment wrote (if it wrote one).
    fn stored_chunk(&mut self, key: PointKey, stored: &SeriesColumns, expectation: Expectation<'_, '_>) {
        if expectation.matches(stored, self.window) {
            self.totals.chunks_matched += u64::from(expectation.runs.is_some());
            return;
        }
        self.differing_chunk(key, rows_in(stored, self.window), expectation);
    }

    /// Names a stored chunk (its rows in the window: `stored_rows`) that differs from the chunk its
    /// segment wrote, or that no segment wrote, where the point comparison did not already.
    fn differing_chunk(&mut self, key: PointKey, stored_rows: Vec<Row>, expectation: Expectation<'_, '_>) {
        if expectation.runs.is_none() {
            if let Some(first) = self.hidden(&stored_rows).first() {
                self.findings.push(Finding::ChunkUnsigned {
                    series: self.series.clone(),
                    chunk: key,
                    rows: stored_rows.len() as u64,
                    first_timestamp_ns: first.timestamp_ns,
                });
            }
            return;
        }
        let signed_rows: Vec<Row> = expectation.rows().map(|(columns, row)| Row::of(columns, row)).collect();
        let (only_signed, only_stored) = differing_rows(&signed_rows, &stored_rows);
        let (only_signed, only_stored) = (self.hidden(&only_signed), self.hidden(&only_stored));
        let first = match (only_signed.first(), only_stored.first()) {
            (Some(a), Some(b)) => a.timestamp_ns.min(b.timestamp_ns),
            (Some(a), None) => a.timestamp_ns,
            (None, Some(b)) => b.timestamp_ns,
            (None, None) => return,
        };
        let at = |rows: &[Row]| rows.iter().find(|row| row.timestamp_ns == first).map(Row::point);
        self.findings.push(Finding::ChunkChanged {
            series: self.series.clone(),
            chunk: key,
            timestamp_ns: first,
            expected: at(&only_signed),
            found: at(&only_stored),
            rows_differing: only_signed.len().max(only_stored.len()) as u64,
        });
    }

    /// A chunk a signed segment wrote that is not stored.
    fn absent_chunk(&mut self, order: ChunkOrder, expectation: Expectation<'_, '_>) {
        let (bucket_start_ns, epoch, sequence, sender_id) = order;
        let signed_rows: Vec<Row> = expectation.rows().map(|(columns, row)| Row::of(columns, row)).collect();
        if let Some(first) = self.hidden(&signed_rows).first() {
            self.findings.push(Finding::ChunkDeleted {
                series: self.series.clone(),
                chunk: PointKey { series_id: self.info.id, bucket_start_ns, epoch, sequence, sender_id },
                rows: signed_rows.len() as u64,
                first_timestamp_ns: first.timestamp_ns,
                expected: first.point(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diode_common::rng::SeededRng;

    fn row(timestamp_ns: i64, value: f64) -> Row {
        Row { timestamp_ns, value: RowValue::F64(value.to_bits()), quality: 0 }
    }

    #[test]
    fn a_changed_row_shows_on_both_sides_and_a_removed_row_on_one() {
        let signed = [row(1, 1.0), row(2, 2.0), row(3, 3.0)];
        let (only_signed, only_stored) = differing_rows(&signed, &[row(1, 1.0), row(2, 9.0), row(3, 3.0)]);
        assert_eq!((only_signed, only_stored), (vec![row(2, 2.0)], vec![row(2, 9.0)]));
        let (only_signed, only_stored) = differing_rows(&signed, &[row(1, 1.0), row(3, 3.0)]);
        assert_eq!((only_signed, only_stored), (vec![row(2, 2.0)], vec![]));
    }

    #[test]
    fn reordered_duplicates_show_where_the_order_differs() {
        let signed = [row(1, 1.0), row(1, 2.0)];
        let (only_signed, only_stored) = differing_rows(&signed, &[row(1, 2.0), row(1, 1.0)]);
        assert_eq!(only_signed.len(), 2);
        assert_eq!(only_stored.len(), 2);
    }

    #[test]
    fn ascending_parts_cut_into_the_same_chunks_by_binary_search_as_row_by_row() {
        let mut rng = SeededRng::new(0xc4_0c5);
        let segment = SegmentKey { sender_id: 1, epoch: 1, sequence: 1 };
        for case in 0..2_000 {
            // Near zero, a bucket is 7 steps; near the end of time the last bucket has no end.
            let (origin, step) = if rng.chance(0.2) { (i64::MAX - 200, 1) } else { (-3 * BUCKET_NS, BUCKET_NS / 7) };
            let mut parts = Vec::new();
            for _ in 0..1 + rng.below(4) {
                let mut columns = SeriesColumns::new(SeriesKey::new("s"));
                let mut position = rng.below(40) as i64;
                for _ in 0..rng.below(60) {
                    position += 1 + rng.below(4) as i64;
                    let timestamp_ns = origin.saturating_add(position.min(200) * step);
                    if columns.timestamps_ns.last().is_some_and(|&last| last >= timestamp_ns) {
                        break;
                    }
                    columns.push(timestamp_ns, Value::F64(0.0), Quality(0));
                }
                parts.push(columns);
            }
            let window = if rng.chance(0.3) {
                (i64::MIN, i64::MAX)
            } else {
                let from = origin.saturating_add(rng.below(100) as i64 * step);
                (from, from.saturating_add(rng.below(150) as i64 * step))
            };
            let marked = |ascending: bool| -> Vec<SignedPart<'_>> {
                parts.iter().map(|columns| SignedPart { columns, segment, ascending }).collect()
            };
            assert_eq!(expected_chunks(&marked(true), window), expected_chunks(&marked(false), window), "case {case}");
        }
    }

    #[test]
    fn each_expected_chunk_is_taken_once_with_its_runs_in_write_order_and_the_rest_are_left() {
        let columns = SeriesColumns::new(SeriesKey::new("s"));
        let at = |bucket: i64, sequence: u64, rows: &[i64]| {
            let mut columns = columns.clone();
            for &row in rows {
                columns.push(bucket * BUCKET_NS + row, Value::F64(0.0), Quality(0));
            }
            (columns, SegmentKey { sender_id: 1, epoch: 1, sequence })
        };
        // Segment 2 writes to bucket 0 (part 0), bucket 1 (part 1) and bucket 0 again (part 3);
        // segment 1, listed between them, to bucket 0 (part 2).
        let written = [at(0, 2, &[5, 6]), at(1, 2, &[1]), at(0, 1, &[2]), at(0, 2, &[8])];
        let parts: Vec<SignedPart<'_>> = written
            .iter()
            .map(|(columns, segment)| SignedPart { columns, segment: *segment, ascending: true })
            .collect();
        let mut expected = expected_chunks(&parts, (i64::MIN, i64::MAX));
        let order = |bucket: i64, sequence: u64| (bucket * BUCKET_NS, 1, sequence, 1);
        assert_eq!(expected.take(order(0, 2)), Some(vec![(0, 0, 2), (3, 0, 1)]));
        assert_eq!(expected.take(order(0, 2)), None, "taken once");
        assert_eq!(expected.take(order(5, 2)), None, "never written");
        assert_eq!(expected.into_left(), vec![(order(0, 1), vec![(2, 0, 1)]), (order(1, 2), vec![(1, 0, 1)])]);
    }

    #[test]
    fn buckets_overlap_a_span_when_any_of_their_hour_does() {
        assert!(bucket_overlaps(0, (BUCKET_NS - 1, BUCKET_NS + 5)));
        assert!(!bucket_overlaps(0, (BUCKET_NS, BUCKET_NS + 5)));
        assert!(bucket_overlaps(i64::MIN, (i64::MIN, i64::MAX)));
        assert!(bucket_overlaps(bucket_start(i64::MAX), (i64::MAX, i64::MAX)));
    }
}

//! The point comparison of `audit verify`: every point the replica returns must be the
//! last-write-wins record of the verified segments, and every such record must be in the replica.
//!
//! Bounded memory for any replica size: data time is cut into windows aligned to the replica's
//! one-hour buckets, each starting about half of `memory_budget_points` signed records (estimated
//! from the signed headers' record counts and time ranges; half, because segments straddling in
//! from the window before count too). For each window, the segments whose signed time range
//! overlaps it are decoded (once each; one still needed by the next window stays cached while the
//! cache fits the budget), their records are indexed by series, and the points of every
//! catalogued series over the window (each bucket's stored chunks merged by the replica's own
//! scan merge) are merged, in time order and a column at a time, against its expected records
//! sorted by (time, write order). A window holding more than the budget (a very busy hour) is
//! processed in several passes, each keeping the series of one residue class of the series id, at
//! the price of decoding its segments once per pass. Segments are decoded and series compared on
//! `threads` workers, each taking the next few as it is done; the results are put back in order,
//! so the report does not depend on the scheduling. The replica's reads are thread-safe.
//!
//! Windows tile the whole compared span (all of `i64` for a full audit), so a point added at any
//! time in any catalogued series is found, whatever the catalog's statistics claim. In the same
//! pass, per series and window, `chunks.rs` compares the stored chunks themselves with what their
//! segments wrote (which finds superseded values and copies that the merged points hide); both
//! comparisons take the chunks from one read (`chunks::SeriesChunks`), each decoded once. Beside
//! the windows, on a thread of its own, an inventory of the whole points column family finds the
//! chunks outside the catalog.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use diode_common::codec::SeriesColumns;
use diode_common::record::SeriesKey;
use diode_common::seal;
use diode_replica::{Replica, ReplicaError, SegmentKey, SeriesInfo, bucket_start};

use super::chunks;
use super::findings::{Finding, Findings};
use super::options::{VerifyOptions, progress_bar};
use super::parallel;
use super::report::PointTotals;
use super::signed::{
    SignedPart as Part, SignedSegment, common_values, leading_equal, qualities_equal, rows_in_window, values_equal,
    write_order,
};

/// One decoded segment, holding the series of one pass.
struct Decoded {
    rank: u32,
    key: SegmentKey,
    parts: Vec<DecodedPart>,
}

/// One series entry of a decoded segment.
struct DecodedPart {
    /// Its catalog id (`None`: the replica does not catalogue it).
    series_id: Option<u32>,
    columns: SeriesColumns,
    /// Whether its timestamps are strictly ascending (checked once, used by every window).
    ascending: bool,
}

impl Decoded {
    /// `part` (one of this segment's) as the comparisons take it.
    fn part<'a>(&self, part: &'a DecodedPart) -> Part<'a> {
        Part { columns: &part.columns, segment: self.key, ascending: part.ascending }
    }
}

/// Which pass of a window a series belongs to.
#[derive(Debug, Clone, Copy)]
struct Pass {
    index: u32,
    count: u32,
}

impl Pass {
    fn holds(self, series_id: Option<u32>) -> bool {
        series_id.map_or(0, |id| id % self.count) == self.index
    }
}

/// Start of the one-hour bucket holding `timestamp_ns` (saturating at `i64::MIN`).
/// Windows `(from, to inclusive)` tiling `span`, cut on bucket boundaries so that each starts at
/// most about `budget_points` signed records. `segments` is sorted by earliest timestamp.
fn plan_windows(segments: &[SignedSegment], span: (i64, i64), budget_points: u64) -> Vec<(i64, i64)> {
    let mut windows = Vec::new();
    let mut start = span.0;
    let mut accumulated = 0u64;
    // The first window reaches from the span's start through the first segment's bucket.
    let first_bucket = segments.first().map(|segment| bucket_start(segment.min_timestamp_ns.max(span.0)));
    for segment in segments {
        let cut = bucket_start(segment.min_timestamp_ns.max(span.0));
        let records = u64::from(segment.record_count);
        if accumulated > 0 && accumulated + records > budget_points && cut > start && Some(cut) > first_bucket {
            windows.push((start, cut - 1));
            start = cut;
            accumulated = 0;
        }
        accumulated += records;
    }
    windows.push((start, span.1));
    windows
}

/// Compares the replica's points in `span` with the verified `segments`.
pub(super) fn compare(
    replica: &Replica,
    mut segments: Vec<SignedSegment>,
    span: (i64, i64),
    options: &VerifyOptions,
) -> Result<(PointTotals, Findings), ReplicaError> {
    segments.sort_by_key(|segment| (segment.min_timestamp_ns, segment.key));
    let mut by_order: Vec<usize> = (0..segments.len()).collect();
    by_order.sort_by_key(|&index| write_order(segments[index].key));
    let mut ranks = vec![0u32; segments.len()];
    for (rank, &index) in by_order.iter().enumerate() {
        ranks[index] = rank as u32;
    }
    let budget = options.memory_budget_points.max(1);
    let windows = plan_windows(&segments, span, (budget / 2).max(1));
    let total_records: u64 = segments.iter().map(|segment| u64::from(segment.record_count)).sum();
    let bar = progress_bar(options.progress, total_records, "checking points");
    let catalog = replica.series_list();
    let catalogued = u32::try_from(catalog.len()).expect("the catalog holds at most MAX_SERIES series");
    let mut comparison = Comparison {
        replica,
        segments,
        ranks,
        catalog,
        budget,
        threads: options.threads.max(1),
        max_findings_listed: options.max_findings_listed,
        cache: HashMap::new(),
        failed: HashSet::new(),
        totals: PointTotals::default(),
        findings: Findings::new(options.max_findings_listed),
    };
    // The inventory of the points column family (every chunk read once, one after the other) runs
    // beside the windows on a thread of its own, unless there is one thread; its findings come
    // first.
    let inventory = || {
        let mut findings = Findings::new(options.max_findings_listed);
        chunks::inventory(replica, span, catalogued, &mut findings).map(|stored| (stored, findings))
    };
    let (inventory, compared) = if comparison.threads == 1 {
        let inventory = inventory()?;
        (Ok(inventory), comparison.all_windows(&windows, &bar))
    } else {
        std::thread::scope(|scope| {
            let inventory = scope.spawn(inventory);
            let compared = comparison.all_windows(&windows, &bar);
            (inventory.join().expect("the inventory panicked"), compared)
        })
    };
    let (chunks_stored, mut findings) = inventory?;
    compared?;
    comparison.totals.chunks_stored = chunks_stored;
    findings.merge(std::mem::take(&mut comparison.findings));
    comparison.findings = findings;
    bar.finish_and_clear();
    let totals = comparison.totals;
    if totals.chunks_checked != totals.chunks_stored {
        comparison
            .findings
            .push(Finding::ChunksUnaccounted { stored: totals.chunks_stored, checked: totals.chunks_checked });
    }
    Ok((totals, comparison.findings))
}

/// The state of one point comparison.
struct Comparison<'a> {
    replica: &'a Replica,
    /// Sorted by earliest timestamp.
    segments: Vec<SignedSegment>,
    /// Last-write-wins rank of each segment.
    ranks: Vec<u32>,
    catalog: Vec<SeriesInfo>,
    budget: u64,
    threads: usize,
    max_findings_listed: usize,
    /// Decoded segments still needed by the next window.
    cache: HashMap<usize, Arc<Decoded>>,
    /// Segments that failed to decode, reported once and then left out.
    failed: HashSet<usize>,
    totals: PointTotals,
    findings: Findings,
}

impl Comparison<'_> {
    /// Compares every window in turn, holding the segments that overlap the current one.
    fn all_windows(&mut self, windows: &[(i64, i64)], bar: &indicatif::ProgressBar) -> Result<(), ReplicaError> {
        // Segments overlapping the current window, by index into `segments`.
        let mut active: Vec<usize> = Vec::new();
        let mut next = 0;
        for &(from_ns, to_ns) in windows {
            let segments = &self.segments;
            while next < segments.len() && segments[next].min_timestamp_ns <= to_ns {
                bar.inc(u64::from(segments[next].record_count));
                active.push(next);
                next += 1;
            }
            active.retain(|&index| segments[index].max_timestamp_ns >= from_ns && !self.failed.contains(&index));
            self.window(&active, (from_ns, to_ns))?;
        }
        Ok(())
    }

    /// Compares one window, in as many passes as the budget needs.
    fn window(&mut self, active: &[usize], (from_ns, to_ns): (i64, i64)) -> Result<(), ReplicaError> {
        self.totals.windows += 1;
        let segments = &self.segments;
        let evicted: Vec<Arc<Decoded>> = self
            .cache
            .extract_if(|index, _| segments[*index].max_timestamp_ns < from_ns)
            .map(|(_, gone)| gone)
            .collect();
        parallel::drop_all(evicted, self.threads);
        let estimate: u64 = active.iter().map(|&index| u64::from(self.segments[index].record_count)).sum();
        let count = estimate.div_ceil(self.budget).clamp(1, u64::from(u32::MAX)) as u32;
        for index in 0..count {
            let pass = Pass { index, count };
            let decoded = self.decode_pass(active, pass, to_ns)?;
            let (totals, findings) = compare_window(
                self.replica,
                &self.catalog,
                &decoded,
                (from_ns, to_ns),
                pass,
                self.threads,
                self.max_findings_listed,
            );
            self.totals.add(&totals);
            self.findings.merge(findings);
            parallel::drop_all(decoded, self.threads);
        }
        Ok(())
    }

    /// The `active` segments decoded for `pass`: from the cache when there is one pass, else
    /// decoded now; kept in the cache when the next window (after `to_ns`) needs them too.
    fn decode_pass(&mut self, active: &[usize], pass: Pass, to_ns: i64) -> Result<Vec<Arc<Decoded>>, ReplicaError> {
        let mut decoded = Vec::with_capacity(active.len());
        let mut to_decode = Vec::new();
        for &segment in active {
            match self.cache.get(&segment) {
                Some(hit) if pass.count == 1 => decoded.push(Arc::clone(hit)),
                _ => to_decode.push(segment),
            }
        }
        self.totals.segment_decodes += to_decode.len() as u64;
        let mut cached_records: u64 =
            self.cache.keys().map(|&index| u64::from(self.segments[index].record_count)).sum();
        let results = decode_all(self.replica, &self.segments, &self.ranks, &to_decode, pass, self.threads)?;
        for (segment, result) in results {
            match result {
                Ok(fresh) => {
                    let fresh = Arc::new(fresh);
                    let records = u64::from(self.segments[segment].record_count);
                    let still_needed = self.segments[segment].max_timestamp_ns > to_ns;
                    if pass.count == 1 && still_needed && cached_records + records <= self.budget {
                        cached_records += records;
                        self.cache.insert(segment, Arc::clone(&fresh));
                    }
                    decoded.push(fresh);
                }
                Err(finding) => {
                    if self.failed.insert(segment) {
                        self.findings.push(finding);
                    }
                }
            }
        }
        Ok(decoded)
    }
}

type DecodeResult = (usize, Result<Decoded, Finding>);

/// Decodes `which` segments on `threads` workers, keeping the series of `pass`.
fn decode_all(
    replica: &Replica,
    segments: &[SignedSegment],
    ranks: &[u32],
    which: &[usize],
    pass: Pass,
    threads: usize,
) -> Result<Vec<DecodeResult>, ReplicaError> {
    let decode_some = |chunk: &[usize]| -> Result<Vec<DecodeResult>, ReplicaError> {
        chunk.iter().map(|&index| Ok((index, decode(replica, &segments[index], ranks[index], pass)?))).collect()
    };
    let mut all = Vec::with_capacity(which.len());
    for decoded in parallel::in_batches(which, 1, threads, decode_some) {
        all.extend(decoded?);
    }
    Ok(all)
}

/// Reads and decodes one segment the walk verified, checking that it is still the same segment.
fn decode(
    replica: &Replica,
    signed: &SignedSegment,
    rank: u32,
    pass: Pass,
) -> Result<Result<Decoded, Finding>, ReplicaError> {
    let invalid =
        |check: &'static str, message: String| Finding::SegmentInvalid { segment: signed.key, check, message };
    let Some(stored) = replica.stored_segment(signed.key)? else {
        return Ok(Err(invalid("vanished", "the audit entry disappeared while the audit ran".to_owned())));
    };
    let segment = match seal::parse(&stored.sealed) {
        Ok(segment) if segment.signed_hash() == signed.signed_hash => segment,
        Ok(_) => return Ok(Err(invalid("changed", "the audit entry changed while the audit ran".to_owned()))),
        Err(error) => return Ok(Err(invalid(error.reason_label(), error.to_string()))),
    };
    // The same header and signature as the walk verified (their BLAKE3 hash is equal), so the
    // signature's verdict is the walk's: it is not computed again (it was most of the audit's
    // time when segments are small). The payload is read again, so its hash is checked again:
    // that is what ties these records to the signed header.
    if let Err(error) = seal::verify_payload(&segment) {
        return Ok(Err(invalid(error.reason_label(), error.to_string())));
    }
    let series = match seal::decode_verified(&segment) {
        Ok(series) => series,
        Err(error) => return Ok(Err(invalid(error.reason_label(), error.to_string()))),
    };
    let parts = series
        .into_iter()
        .filter(|columns| !columns.is_empty())
        .map(|columns| (replica.series_id(&columns.key), columns))
        .filter(|(series_id, _)| pass.holds(*series_id))
        .map(|(series_id, columns)| DecodedPart { series_id, ascending: columns.strictly_ascending(), columns })
        .collect();
    Ok(Ok(Decoded { rank, key: signed.key, parts }))
}

/// Series a compare thread takes at a time.
const SERIES_PER_BATCH: usize = 8;

/// Compares every series of `pass` over one window.
fn compare_window(
    replica: &Replica,
    catalog: &[SeriesInfo],
    decoded: &[Arc<Decoded>],
    window: (i64, i64),
    pass: Pass,
    threads: usize,
    max_findings_listed: usize,
) -> (PointTotals, Findings) {
    // (series id, rank, slot, part), sorted: each series' parts in write order.
    let mut index: Vec<(u32, u32, u32, u32)> = Vec::new();
    let mut uncatalogued: BTreeMap<&SeriesKey, Vec<(u32, Part<'_>)>> = BTreeMap::new();
    for (slot, segment) in decoded.iter().enumerate() {
        for (index_in_segment, part) in segment.parts.iter().enumerate() {
            match part.series_id {
                Some(id) => index.push((id, segment.rank, slot as u32, index_in_segment as u32)),
                None => uncatalogued.entry(&part.columns.key).or_default().push((segment.rank, segment.part(part))),
            }
        }
    }
    index.sort_unstable();
    let part_of = |&(_, _, slot, part): &(u32, u32, u32, u32)| {
        let segment = &decoded[slot as usize];
        segment.part(&segment.parts[part as usize])
    };

    let series: Vec<&SeriesInfo> = catalog.iter().filter(|info| pass.holds(Some(info.id))).collect();
    let work = |chunk: &[&SeriesInfo]| {
        let mut totals = PointTotals::default();
        let mut findings = Findings::new(max_findings_listed);
        let mut parts = Vec::new();
        let mut flagged = Vec::new();
        for info in chunk {
            let start = index.partition_point(|entry| entry.0 < info.id);
            let end = index.partition_point(|entry| entry.0 <= info.id);
            parts.clear();
            parts.extend(index[start..end].iter().map(part_of));
            let series = info.key.to_string();
            // The chunks read once for both comparisons; what they find is kept only if every
            // chunk could be read and decoded (else both run on their own reads and name why).
            flagged.clear();
            let mut read_once = chunks::SeriesChunks::new(replica, info, &parts, window);
            let mut series_totals = PointTotals::default();
            let mut series_findings = Findings::new(max_findings_listed);
            let compared =
                Compared { totals: &mut series_totals, findings: &mut series_findings, flagged: &mut flagged };
            if compare_series(&series, Some((info.id, &mut read_once)), &parts, window, compared) {
                flagged.sort_unstable();
                read_once.finish(&flagged, &mut series_totals, &mut series_findings);
                totals.add(&series_totals);
                findings.merge(series_findings);
                continue;
            }
            flagged.clear();
            let scan = replica.scan_columns(info.id, window.0, window.1);
            let compared = Compared { totals: &mut totals, findings: &mut findings, flagged: &mut flagged };
            // Every chunk is checked even when the points could not all be read: the check names
            // each chunk that does not decode, and accounts for the rest.
            compare_series(&series, Some((info.id, scan)), &parts, window, compared);
            flagged.sort_unstable();
            chunks::check_series(replica, info, &parts, window, &flagged, &mut totals, &mut findings);
        }
        (totals, findings)
    };
    let mut totals = PointTotals::default();
    let mut findings = Findings::new(max_findings_listed);
    for (batch_totals, batch_findings) in parallel::in_batches(&series, SERIES_PER_BATCH, threads, work) {
        totals.add(&batch_totals);
        findings.merge(batch_findings);
    }
    let mut flagged = Vec::new();
    for (key, mut parts) in uncatalogued {
        parts.sort_by_key(|(rank, _)| *rank);
        let parts: Vec<Part<'_>> = parts.into_iter().map(|(_, part)| part).collect();
        let compared = Compared { totals: &mut totals, findings: &mut findings, flagged: &mut flagged };
        let no_scan: Option<(u32, std::iter::Empty<Result<SeriesColumns, ReplicaError>>)> = None;
        compare_series(&key.to_string(), no_scan, &parts, window, compared);
    }
    (totals, findings)
}

/// Where [`compare_series`] counts and reports, and the timestamps it names.
struct Compared<'a> {
    totals: &'a mut PointTotals,
    findings: &'a mut Findings,
    /// Timestamps of the points named changed, deleted or added.
    flagged: &'a mut Vec<i64>,
}

/// A signed record: its timestamp, and its part and row in the parts compared.
type Record = (i64, u32, u32);

/// Merges the replica's points of one series in `window` (blocks of columns as the replica's scan
/// gives them: ascending, one point per timestamp) with the records of `parts` (in write order)
/// resolved last-write-wins. `scan` is `None` for a series the replica does not catalogue: all its
/// records are then missing. Returns `false` when the points could not be read (a
/// `points_unreadable` finding).
///
/// Where the replica's rows and the winning records agree, whole stretches are compared a column
/// at a time ([`Winners::common_rows`]); each row where they differ is then judged on its own.
fn compare_series(
    series: &str,
    scan: Option<(u32, impl Iterator<Item = Result<SeriesColumns, impl std::fmt::Display>>)>,
    parts: &[Part<'_>],
    window: (i64, i64),
    compared: Compared<'_>,
) -> bool {
    let mut winners = Winners::new(parts, window);
    let mut tally = Tally { series, parts, compared };
    if let Some((series_id, blocks)) = scan {
        for block in blocks {
            let block = match block {
                Ok(block) => block,
                Err(error) => {
                    tally.unreadable(series_id, window, &error);
                    return false;
                }
            };
            tally.compared.totals.scanned += block.len() as u64;
            let mut row = 0;
            while row < block.len() {
                let common = winners.common_rows(&block, row);
                if common > 0 {
                    tally.matched(common);
                    winners.skip(common);
                    row += common;
                    continue;
                }
                let timestamp_ns = block.timestamps_ns[row];
                while let Some(winner) = winners.peek() {
                    if winner.0 >= timestamp_ns {
                        break;
                    }
                    winners.skip(1);
                    tally.deleted(winner);
                }
                match winners.peek() {
                    Some(winner) if winner.0 == timestamp_ns => {
                        winners.skip(1);
                        tally.matched_or_changed(winner, &block, row);
                    }
                    _ => tally.added(series_id, &block, row),
                }
                row += 1;
            }
        }
    }
    while let Some(winner) = winners.peek() {
        winners.skip(1);
        tally.deleted(winner);
    }
    true
}

/// The records of `parts` that win in a window, ascending by time: runs of consecutive rows of one
/// part (`(part, first row, row after the last)`), read one record at a time or compared a stretch
/// at a time.
struct Winners<'a, 'p> {
    parts: &'a [Part<'p>],
    runs: Vec<(u32, u32, u32)>,
    /// The current run, and the next row in it.
    run: usize,
    row: u32,
}

impl<'a, 'p> Winners<'a, 'p> {
    fn new(parts: &'a [Part<'p>], window: (i64, i64)) -> Winners<'a, 'p> {
        let runs = ascending_runs(parts, window).unwrap_or_else(|| {
            let expected = expected_records(parts, window);
            let mut runs: Vec<(u32, u32, u32)> = Vec::new();
            for (_, part, row) in last_writes(&expected) {
                match runs.last_mut() {
                    Some((last_part, _, end)) if *last_part == part && *end == row => *end += 1,
                    _ => runs.push((part, row, row + 1)),
                }
            }
            runs
        });
        let row = runs.first().map_or(0, |run| run.1);
        Winners { parts, runs, run: 0, row }
    }

    /// The next winning record.
    fn peek(&self) -> Option<Record> {
        let &(part, _, _) = self.runs.get(self.run)?;
        Some((self.parts[part as usize].columns.timestamps_ns[self.row as usize], part, self.row))
    }

    /// Moves past `count` records, all of the current run.
    fn skip(&mut self, count: usize) {
        self.row += count as u32;
        if self.runs.get(self.run).is_some_and(|run| self.row >= run.2) {
            self.run += 1;
            self.row = self.runs.get(self.run).map_or(0, |run| run.1);
        }
    }

    /// How many rows of `block` from `row` on are, time, quality and value, the next records of
    /// the current run. Stops at the first that differs, so a stretch costs its length once.
    fn common_rows(&self, block: &SeriesColumns, row: usize) -> usize {
        let Some(&(part, _, end)) = self.runs.get(self.run) else { return 0 };
        let signed = self.parts[part as usize].columns;
        let (from, count) = (self.row as usize, (end - self.row) as usize);
        let count = count.min(block.len() - row);
        // Whole stretches are compared first (most agree entirely), row by row only when not.
        let (times, stored_times) = (&signed.timestamps_ns[from..from + count], &block.timestamps_ns[row..row + count]);
        let count = leading_equal(times, stored_times, times == stored_times);
        let (qualities, stored_qualities) = (&signed.qualities[from..from + count], &block.qualities[row..row + count]);
        let count = leading_equal(qualities, stored_qualities, qualities_equal(qualities, stored_qualities));
        common_values(&signed.values, from, &block.values, row, count)
    }
}

/// The winners when every part's timestamps are strictly ascending and each part's rows in the
/// window all come after the previous part's: then nothing is superseded, and each part's rows
/// in the window are one run. `None` otherwise.
fn ascending_runs(parts: &[Part<'_>], window: (i64, i64)) -> Option<Vec<(u32, u32, u32)>> {
    let mut runs = Vec::with_capacity(parts.len());
    let mut last_ns: Option<i64> = None;
    for (index, part) in parts.iter().enumerate() {
        if !part.ascending {
            return None;
        }
        let timestamps_ns = &part.columns.timestamps_ns;
        let rows = rows_in_window(timestamps_ns, window);
        if rows.is_empty() {
            continue;
        }
        if last_ns.is_some_and(|last| last >= timestamps_ns[rows.start]) {
            return None;
        }
        last_ns = Some(timestamps_ns[rows.end - 1]);
        runs.push((index as u32, rows.start as u32, rows.end as u32));
    }
    Some(runs)
}

/// Every record of `parts` in `window`, sorted by (time, part, row): within a run of equal times
/// the last entry is the last write.
fn expected_records(parts: &[Part<'_>], window: (i64, i64)) -> Vec<Record> {
    let mut expected: Vec<Record> = Vec::new();
    let mut in_order = true;
    for (part_index, part) in parts.iter().enumerate() {
        for (row, &timestamp_ns) in part.columns.timestamps_ns.iter().enumerate() {
            if (window.0..=window.1).contains(&timestamp_ns) {
                in_order &= expected.last().is_none_or(|last| last.0 < timestamp_ns);
                expected.push((timestamp_ns, part_index as u32, row as u32));
            }
        }
    }
    if !in_order {
        expected.sort_unstable();
    }
    expected
}

/// The last entry of each run of equal times in sorted `expected`: the record that wins.
fn last_writes(expected: &[Record]) -> impl Iterator<Item = Record> + '_ {
    expected
        .iter()
        .enumerate()
        .filter(|(position, entry)| expected.get(position + 1).is_none_or(|next| next.0 != entry.0))
        .map(|(_, entry)| *entry)
}

/// Counts and names what [`compare_series`] finds for one series.
struct Tally<'a, 'p> {
    series: &'a str,
    parts: &'a [Part<'p>],
    compared: Compared<'a>,
}

impl<'a, 'p> Tally<'a, 'p> {
    /// A record's timestamp, part and row.
    fn signed(&self, (timestamp_ns, part, row): Record) -> (i64, &'a Part<'p>, usize) {
        (timestamp_ns, &self.parts[part as usize], row as usize)
    }

    fn unreadable(&mut self, series_id: u32, window: (i64, i64), error: &dyn std::fmt::Display) {
        self.compared.totals.unreadable += 1;
        self.compared.findings.push(Finding::PointsUnreadable {
            series: self.series.to_owned(),
            series_id,
            from_ns: window.0,
            to_ns: window.1,
            message: error.to_string(),
        });
    }

    /// `count` winning records, each the replica's point at its time.
    fn matched(&mut self, count: usize) {
        self.compared.totals.expected += count as u64;
        self.compared.totals.matched += count as u64;
    }

    /// A winning record with no point in the replica.
    fn deleted(&mut self, winner: Record) {
        let (timestamp_ns, part, row) = self.signed(winner);
        let finding = Finding::PointDeleted {
            series: self.series.to_owned(),
            timestamp_ns,
            expected: (part.columns.value(row), part.columns.qualities[row]),
            segment: part.segment,
        };
        let Compared { totals, findings, flagged } = &mut self.compared;
        totals.expected += 1;
        totals.deleted += 1;
        flagged.push(timestamp_ns);
        findings.push(finding);
    }

    /// The replica's point at a winning record's time (row `row` of `block`): the same value and
    /// quality, or changed.
    fn matched_or_changed(&mut self, winner: Record, block: &SeriesColumns, row: usize) {
        let (timestamp_ns, part, signed_row) = self.signed(winner);
        let columns = part.columns;
        if columns.qualities[signed_row] == block.qualities[row]
            && values_equal(&columns.values, signed_row, &block.values, row)
        {
            self.compared.totals.expected += 1;
            self.compared.totals.matched += 1;
            return;
        }
        let finding = Finding::PointChanged {
            series: self.series.to_owned(),
            timestamp_ns,
            expected: (columns.value(signed_row), columns.qualities[signed_row]),
            found: (block.value(row), block.qualities[row]),
            segment: part.segment,
        };
        let Compared { totals, findings, flagged } = &mut self.compared;
        totals.expected += 1;
        totals.changed += 1;
        flagged.push(timestamp_ns);
        findings.push(finding);
    }

    /// A point of the replica (row `row` of `block`) that no verified segment holds.
    fn added(&mut self, series_id: u32, block: &SeriesColumns, row: usize) {
        let Compared { totals, findings, flagged } = &mut self.compared;
        let timestamp_ns = block.timestamps_ns[row];
        totals.added += 1;
        flagged.push(timestamp_ns);
        findings.push(Finding::PointAdded {
            series: self.series.to_owned(),
            series_id,
            timestamp_ns,
            found: (block.value(row), block.qualities[row]),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diode_common::record::{Quality, Value};
    use diode_common::rng::SeededRng;
    use diode_replica::BUCKET_NS;

    fn segment(min_timestamp_ns: i64, max_timestamp_ns: i64, record_count: u32) -> SignedSegment {
        SignedSegment {
            key: SegmentKey { sender_id: 1, epoch: 1, sequence: 1 },
            signed_hash: [0; 32],
            min_timestamp_ns,
            max_timestamp_ns,
            record_count,
            selected: true,
        }
    }

    #[test]
    fn windows_tile_the_span_on_bucket_boundaries_within_the_budget() {
        let segments: Vec<SignedSegment> =
            (0..10).map(|hour| segment(hour * BUCKET_NS + 5, hour * BUCKET_NS + 10, 600)).collect();
        let windows = plan_windows(&segments, (i64::MIN, i64::MAX), 1_000);
        assert_eq!(windows.first().map(|w| w.0), Some(i64::MIN));
        assert_eq!(windows.last().map(|w| w.1), Some(i64::MAX));
        for pair in windows.windows(2) {
            assert_eq!(pair[0].1 + 1, pair[1].0, "windows are contiguous");
            assert_eq!(pair[1].0.rem_euclid(BUCKET_NS), 0, "cuts are on bucket boundaries");
        }
        assert_eq!(windows.len(), 10);
    }

    /// Parts of one series in write order, of every shape: ascending after the previous part,
    /// ascending but overlapping it, or in any order with repeated times.
    fn random_parts(rng: &mut SeededRng) -> Vec<SeriesColumns> {
        let mut parts = Vec::new();
        let mut next_ns = rng.below(20) as i64;
        for _ in 0..1 + rng.below(5) {
            let mut columns = SeriesColumns::new(SeriesKey::new("s"));
            let shape = rng.below(3);
            let mut timestamp_ns = if shape == 0 { next_ns } else { rng.below(60) as i64 };
            for _ in 0..rng.below(40) {
                timestamp_ns = match shape {
                    2 => rng.below(100) as i64,
                    _ => timestamp_ns + 1 + rng.below(3) as i64,
                };
                columns.push(timestamp_ns, Value::F64(rng.below(4) as f64), Quality(rng.below(2) as u32));
            }
            next_ns = next_ns.max(timestamp_ns + 1);
            parts.push(columns);
        }
        parts
    }

    /// The comparison's totals and named timestamps for `parts` against the replica's `points`
    /// (cut into blocks of `block_rows`).
    fn run(
        parts: &[Part<'_>],
        points: &BTreeMap<i64, (u64, u32)>,
        block_rows: usize,
        window: (i64, i64),
    ) -> (PointTotals, Vec<i64>) {
        let rows: Vec<(&i64, &(u64, u32))> = points.iter().collect();
        let blocks: Vec<Result<SeriesColumns, String>> = rows
            .chunks(block_rows)
            .map(|rows| {
                let mut block = SeriesColumns::new(SeriesKey::new("s"));
                for &(&timestamp_ns, &(bits, quality)) in rows {
                    block.push(timestamp_ns, Value::F64(f64::from_bits(bits)), Quality(quality));
                }
                Ok(block)
            })
            .collect();
        let (mut totals, mut findings, mut flagged) = (PointTotals::default(), Findings::new(10), Vec::new());
        let compared = Compared { totals: &mut totals, findings: &mut findings, flagged: &mut flagged };
        assert!(compare_series("s", Some((0, blocks.into_iter())), parts, window, compared));
        flagged.sort_unstable();
        (totals, flagged)
    }

    #[test]
    fn the_comparison_agrees_with_last_write_wins_point_by_point_on_any_parts_and_tampering() {
        let mut rng = SeededRng::new(0x5eed_a0d1);
        let key = SegmentKey { sender_id: 1, epoch: 1, sequence: 1 };
        for case in 0..2_000 {
            let columns = random_parts(&mut rng);
            let window =
                if rng.chance(0.3) { (i64::MIN, i64::MAX) } else { (rng.below(40) as i64, 30 + rng.below(100) as i64) };
            // The signed points: the last write of each time in the window.
            let mut signed: BTreeMap<i64, (u64, u32)> = BTreeMap::new();
            for part in &columns {
                for row in 0..part.len() {
                    let timestamp_ns = part.timestamps_ns[row];
                    if (window.0..=window.1).contains(&timestamp_ns) {
                        let Value::F64(value) = part.value(row) else { unreachable!() };
                        signed.insert(timestamp_ns, (value.to_bits(), part.qualities[row].0));
                    }
                }
            }
            // The replica's: those, some changed, some deleted, some added.
            let mut points = signed.clone();
            let mut named: Vec<i64> = Vec::new();
            let mut expected_totals = PointTotals { expected: signed.len() as u64, ..PointTotals::default() };
            for (&timestamp_ns, point) in &signed {
                match rng.below(10) {
                    0 => {
                        points.insert(timestamp_ns, (point.0, point.1 ^ 1));
                        expected_totals.changed += 1;
                        named.push(timestamp_ns);
                    }
                    1 => {
                        points.insert(timestamp_ns, (point.0 ^ 1, point.1));
                        expected_totals.changed += 1;
                        named.push(timestamp_ns);
                    }
                    2 => {
                        points.remove(&timestamp_ns);
                        expected_totals.deleted += 1;
                        named.push(timestamp_ns);
                    }
                    _ => expected_totals.matched += 1,
                }
            }
            for _ in 0..rng.below(4) {
                let timestamp_ns = window.0.max(0) + rng.below(120) as i64;
                if !signed.contains_key(&timestamp_ns) && points.insert(timestamp_ns, (7, 0)).is_none() {
                    expected_totals.added += 1;
                    named.push(timestamp_ns);
                }
            }
            expected_totals.scanned = points.len() as u64;
            named.sort_unstable();
            let block_rows = 1 + rng.below(50) as usize;
            for ascending in [true, false] {
                let parts: Vec<Part<'_>> = columns
                    .iter()
                    .map(|columns| Part { columns, segment: key, ascending: ascending && columns.strictly_ascending() })
                    .collect();
                let (totals, flagged) = run(&parts, &points, block_rows, window);
                assert_eq!(totals, expected_totals, "case {case}, ascending parts marked: {ascending}");
                assert_eq!(flagged, named, "case {case}, ascending parts marked: {ascending}");
            }
        }
    }

    #[test]
    fn a_busy_bucket_stays_one_window() {
        let segments: Vec<SignedSegment> = (0..10).map(|i| segment(i, i + 1, 600)).collect();
        assert_eq!(plan_windows(&segments, (i64::MIN, i64::MAX), 1_000), vec![(i64::MIN, i64::MAX)]);
    }
}

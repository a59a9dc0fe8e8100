//! Applying a verified segment exactly once, atomically, after checking it against the stored
//! hash chain.
//!
//! [`Replica::apply`] refuses a segment already applied under another hash and one that does not
//! link with its stored neighbours, then *stages* it: one `WriteBatch` with its points (one chunk
//! per series and one-hour bucket), the catalog entries of new series, the audit entry, the
//! stream's tracker, the counters and the statistics (a delta, or every
//! `STATISTICS_DELTAS_PER_CHECKPOINT`th apply a checkpoint). Before the batch is written, the ids
//! staged for new series are checked to be the ones *commit* will give them (the catalog's next
//! ids); once it is written, *commit* makes the same changes visible in memory. Nothing in memory
//! changes before the batch is durable, so a failed write leaves the replica exactly as it was.

use std::collections::BTreeMap;

use diode_common::codec::{ChunkEncoder, DecodedPayload, Effort, SeriesColumns};
use diode_common::keys::encode_hex;
use diode_common::record::SeriesKey;
use diode_common::seal::{GENESIS_HASH, SealedSegment, SegmentHash, SegmentHeader};
use rocksdb::WriteBatch;

use crate::chunks;
use crate::error::{ChainLink, ReplicaError, describe_segment};
use crate::layout::{
    self, CF_META, CF_POINTS, CF_SEGMENTS, CF_SERIES, Counters, META_COUNTERS, PointKey, SERIES_BY_KEY,
    SERIES_IDENTITY, SERIES_STATISTICS, STREAM_SEEN_IN_SEGMENT, SegmentKey, SeriesStatistics,
};
use crate::open::Replica;
use crate::state::{CatalogEntry, StatisticsJournal, StreamState, key_address};

/// Most series one replica catalogues. The catalog is held in memory (about 150 bytes a series
/// plus names), so the bound keeps it under a few GiB; plants have far fewer tags.
pub const MAX_SERIES: u32 = 10_000_000;

/// Statistics deltas written before the touched series' statistics are rewritten in place (a
/// checkpoint). Each apply then writes one delta instead of one entry per series it touches, which
/// halves the memtable inserts of an apply; a reopen folds at most this many deltas.
const STATISTICS_DELTAS_PER_CHECKPOINT: usize = 64;

/// What [`Replica::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The segment was written: `points` records, of which `new_series` series were new.
    Applied {
        /// Records written (the segment's record count).
        points: u64,
        /// Series the segment added to the catalog.
        new_series: u32,
    },
    /// The segment was applied before; nothing was written.
    AlreadyApplied,
}

impl Replica {
    /// Applies a verified segment (signature, payload hash and decoding already checked by the
    /// caller; `series` is its decoded payload) exactly once, atomically. Checks the hash chain
    /// against the stored neighbours first and refuses a mismatch without writing anything.
    pub fn apply(
        &mut self,
        segment: &SealedSegment,
        series: &[SeriesColumns],
        applied_at_ns: i64,
    ) -> Result<ApplyOutcome, ReplicaError> {
        self.apply_with_chunks(segment, series, None, applied_at_ns)
    }

    /// [`Replica::apply`] of a payload decoded with its chunks
    /// ([`diode_common::codec::decode_payload_with_chunks`]): a series whose segment writes one
    /// chunk (one entry in the payload, one bucket) stores the payload's own bytes for it rather
    /// than encoding its columns again. What is stored reads back the same either way.
    pub fn apply_decoded(
        &mut self,
        segment: &SealedSegment,
        decoded: &DecodedPayload,
        applied_at_ns: i64,
    ) -> Result<ApplyOutcome, ReplicaError> {
        self.apply_with_chunks(segment, &decoded.series, Some(decoded), applied_at_ns)
    }

    fn apply_with_chunks(
        &mut self,
        segment: &SealedSegment,
        series: &[SeriesColumns],
        decoded: Option<&DecodedPayload>,
        applied_at_ns: i64,
    ) -> Result<ApplyOutcome, ReplicaError> {
        let sync = self.require_writable()?;
        let header = &segment.header;
        let position = SegmentKey { sender_id: header.sender_id, epoch: header.epoch, sequence: header.sequence };
        let inconsistent = |reason: String| ReplicaError::InconsistentSegment {
            sender_id: position.sender_id,
            epoch: position.epoch,
            sequence: position.sequence,
            reason,
        };
        if position.sequence == 0 {
            return Err(inconsistent("sequence 0 is not valid; sequences start at 1".to_owned()));
        }
        let record_count: u64 = series.iter().map(|columns| columns.len() as u64).sum();
        if record_count != u64::from(header.record_count) {
            return Err(inconsistent(format!(
                "the header declares {} records but {record_count} were given",
                header.record_count
            )));
        }
        let hash = segment.hash();
        let stream = (position.sender_id, position.epoch);
        if self.state.streams.get(&stream).is_some_and(|s| s.tracker.is_applied(position.sequence)) {
            let stored = self.stored_header(position)?.ok_or_else(|| {
                ReplicaError::corrupt(
                    &self.path,
                    &describe_segment(position),
                    "is missing though its stream lists it as applied",
                )
            })?;
            if stored.hash() == hash {
                return Ok(ApplyOutcome::AlreadyApplied);
            }
            return Err(self.chain_mismatch(position, position.sequence, ChainLink::SamePosition, stored.hash(), hash));
        }
        self.check_chain(position, header, &hash)?;

        let (batch, staged) = self.stage(segment, series, decoded, applied_at_ns)?;
        self.check_staged_ids(&staged)?;
        self.write(batch, sync, "applying a segment")?;
        let outcome = ApplyOutcome::Applied { points: record_count, new_series: staged.new_series.len() as u32 };
        self.commit(staged);
        Ok(outcome)
    }

    /// The header of the stored segment at `key`, if any.
    fn stored_header(&self, key: SegmentKey) -> Result<Option<SegmentHeader>, ReplicaError> {
        let stored = self
            .db
            .get_pinned_cf(self.cf(CF_SEGMENTS), key.to_bytes())
            .map_err(|source| ReplicaError::storage(&self.path, "reading the audit log", source))?;
        let Some(entry) = stored else { return Ok(None) };
        let (_, sealed) = layout::decode_audit_entry(&entry)
            .map_err(|reason| ReplicaError::corrupt(&self.path, &describe_segment(key), reason))?;
        SegmentHeader::from_bytes(sealed)
            .map(Some)
            .map_err(|error| ReplicaError::corrupt(&self.path, &describe_segment(key), error))
    }

    fn chain_mismatch(
        &self,
        position: SegmentKey,
        neighbour_sequence: u64,
        link: ChainLink,
        expected: SegmentHash,
        found: SegmentHash,
    ) -> ReplicaError {
        ReplicaError::ChainMismatch {
            sender_id: position.sender_id,
            epoch: position.epoch,
            sequence: position.sequence,
            neighbour_sequence,
            link,
            expected_hash: encode_hex(&expected),
            found_hash: encode_hex(&found),
        }
    }

    fn check_chain(
        &self,
        position: SegmentKey,
        header: &SegmentHeader,
        hash: &SegmentHash,
    ) -> Result<(), ReplicaError> {
        let sequence = position.sequence;
        if sequence == 1 {
            if header.previous_hash != GENESIS_HASH {
                return Err(self.chain_mismatch(position, 0, ChainLink::Genesis, GENESIS_HASH, header.previous_hash));
            }
        } else if let Some(previous) = self.stored_neighbour(position, sequence - 1)? {
            let previous_hash = previous.hash();
            if previous_hash != header.previous_hash {
                return Err(self.chain_mismatch(
                    position,
                    sequence - 1,
                    ChainLink::Previous,
                    previous_hash,
                    header.previous_hash,
                ));
            }
        }
        if let Some(next_sequence) = sequence.checked_add(1)
            && let Some(next) = self.stored_neighbour(position, next_sequence)?
            && next.previous_hash != *hash
        {
            return Err(self.chain_mismatch(position, next_sequence, ChainLink::Next, next.previous_hash, *hash));
        }
        Ok(())
    }

    /// The stored header at `sequence` of `position`'s stream, read only if the tracker says it is
    /// applied (so the usual absent neighbour costs no read).
    fn stored_neighbour(&self, position: SegmentKey, sequence: u64) -> Result<Option<SegmentHeader>, ReplicaError> {
        let applied = self
            .state
            .streams
            .get(&(position.sender_id, position.epoch))
            .is_some_and(|stream| stream.tracker.is_applied(sequence));
        if !applied {
            return Ok(None);
        }
        let key = SegmentKey { sequence, ..position };
        let header = self.stored_header(key)?;
        if header.is_none() {
            return Err(ReplicaError::corrupt(
                &self.path,
                &describe_segment(key),
                "is missing though its stream lists it as applied",
            ));
        }
        Ok(header)
    }

    /// Builds the write batch of a segment and the in-memory changes to make once it is written.
    fn stage(
        &self,
        segment: &SealedSegment,
        series: &[SeriesColumns],
        decoded: Option<&DecodedPayload>,
        applied_at_ns: i64,
    ) -> Result<(WriteBatch, Staged), ReplicaError> {
        let header = &segment.header;
        let position = SegmentKey { sender_id: header.sender_id, epoch: header.epoch, sequence: header.sequence };
        let audit_entry = layout::encode_audit_entry(applied_at_ns, segment);
        let mut batch = WriteBatch::with_capacity_bytes(audit_entry.len() * 3 + 1024 * 1024);
        let mut staged = Staged { applied_at_ns, ..Staged::default() };
        let by_id = self.stage_series_ids(&mut batch, &mut staged, series)?;
        self.stage_chunks(&mut batch, &mut staged, series, decoded, &by_id, position);
        batch.put_cf(self.cf(CF_SEGMENTS), position.to_bytes(), &audit_entry);
        self.stage_stream(&mut batch, &mut staged, position, applied_at_ns)?;

        let mut counters = self.state.counters;
        counters.segments_applied += 1;
        counters.points_applied += u64::from(header.record_count);
        batch.put_cf(self.cf(CF_META), META_COUNTERS, counters.to_bytes());
        // The apply log: this segment's apply number is the new segments-applied count.
        batch.put_cf(
            self.cf(CF_META),
            layout::apply_log_key(counters.segments_applied),
            layout::encode_apply_log_entry(position),
        );
        staged.counters = counters;
        staged.checkpoint = self.stage_statistics(&mut batch, &staged.statistics, counters.segments_applied);
        Ok((batch, staged))
    }

    /// Resolves the series id of every non-empty entry of `series`, assigning ids to new series in
    /// order of appearance (and writing their catalog entries). Returns `(series id, entry index)`
    /// sorted: ascending series ids, payload order within one id.
    fn stage_series_ids(
        &self,
        batch: &mut WriteBatch,
        staged: &mut Staged,
        series: &[SeriesColumns],
    ) -> Result<Vec<(u32, usize)>, ReplicaError> {
        let series_cf = self.cf(CF_SERIES);
        let catalog = &self.state.catalog;
        let mut canonical_key = Vec::with_capacity(256);
        let mut new_ids: foldhash::HashMap<&SeriesKey, u32> = foldhash::HashMap::default();
        let mut by_id: Vec<(u32, usize)> = Vec::with_capacity(series.len());
        // The decoder gives a series the same key (the same allocation) in consecutive segments,
        // so the last segment's ids by key address find most ids with a hash of one word; an id is
        // taken only if the catalog's entry under it is this key (by pointer, or else by content,
        // so an address reused by another key since is never trusted).
        let mut ids_by_address = foldhash::HashMap::with_capacity_and_hasher(series.len(), Default::default());
        for (index, columns) in series.iter().enumerate().filter(|(_, columns)| !columns.is_empty()) {
            let key = &columns.key;
            let address = key_address(key);
            let hinted = self
                .state
                .last_ids
                .get(&address)
                .copied()
                .filter(|&id| catalog.entries.get(id as usize).is_some_and(|entry| entry.key == *key));
            let id = match hinted.or_else(|| catalog.ids.get(key).or_else(|| new_ids.get(key)).copied()) {
                Some(id) => id,
                None => {
                    let id = u32::try_from(catalog.entries.len() + staged.new_series.len())
                        .ok()
                        .filter(|id| *id < MAX_SERIES)
                        .ok_or_else(|| ReplicaError::TooManySeries { path: self.path.clone(), limit: MAX_SERIES })?;
                    canonical_key.clear();
                    layout::encode_series_key(key, &mut canonical_key);
                    batch.put_cf(series_cf, layout::series_id_key(SERIES_IDENTITY, id), &canonical_key);
                    let mut by_key = Vec::with_capacity(1 + canonical_key.len());
                    by_key.push(SERIES_BY_KEY);
                    by_key.extend_from_slice(&canonical_key);
                    batch.put_cf(series_cf, by_key, id.to_be_bytes());
                    staged.new_series.push((id, key.clone()));
                    new_ids.insert(key, id);
                    id
                }
            };
            by_id.push((id, index));
            ids_by_address.insert(address, id);
        }
        staged.ids_by_address = ids_by_address;
        // Ascending series ids (payload order within one id): the batch then inserts keys in
        // ascending order, which RocksDB's memtable skip list does far faster than scattered keys.
        // A payload may list one series several times; its entries become one group.
        by_id.sort_unstable();
        Ok(by_id)
    }

    /// Writes one chunk per series and one-hour bucket, and stages each series' new statistics.
    /// A series of one payload entry in one bucket stores that entry's chunk from `decoded` when
    /// there is one; any other is encoded from its columns.
    fn stage_chunks(
        &self,
        batch: &mut WriteBatch,
        staged: &mut Staged,
        series: &[SeriesColumns],
        decoded: Option<&DecodedPayload>,
        by_id: &[(u32, usize)],
        position: SegmentKey,
    ) {
        let (points_cf, meta_cf) = (self.cf(CF_POINTS), self.cf(CF_META));
        let mut chunk = Vec::with_capacity(64 * 1024);
        // The fast effort: a chunk of a closed hour is encoded again, looking hardest, when the
        // hour is merged.
        let mut encoder = ChunkEncoder::with_effort(Effort::Fast);
        let mut parts: Vec<&SeriesColumns> = Vec::new();
        for group in by_id.chunk_by(|a, b| a.0 == b.0) {
            let id = group[0].0;
            parts.clear();
            parts.extend(group.iter().map(|&(_, index)| &series[index]));
            let previous = self.state.catalog.entries.get(id as usize).map(|entry| entry.statistics);
            let statistics = chunks::fold_statistics(previous, &parts).expect("groups hold only non-empty columns");
            staged.statistics.push((id, statistics));
            let put = |batch: &mut WriteBatch, staged: &mut Staged, bucket_start_ns: i64, value: &[u8]| {
                let key = PointKey {
                    series_id: id,
                    bucket_start_ns,
                    epoch: position.epoch,
                    sequence: position.sequence,
                    sender_id: position.sender_id,
                };
                batch.put_cf(points_cf, key.to_bytes(), value);
                // Marked once, by the apply that first writes into the bucket since it was merged.
                if !self.state.pending.buckets.contains_key(&(bucket_start_ns, id)) {
                    batch.put_cf(meta_cf, layout::pending_merge_key(id, bucket_start_ns), []);
                }
                staged.touched.push((bucket_start_ns, id));
            };
            if let (Some(decoded), [(_, index)]) = (decoded, group)
                && let Some(bytes) = decoded.chunk(*index)
                && let Some(bucket_start_ns) = chunks::single_bucket(&series[*index])
            {
                put(batch, staged, bucket_start_ns, bytes);
                continue;
            }
            chunks::for_each_bucket(&parts, |bucket_start_ns, columns| {
                chunk.clear();
                encoder.encode(columns, &mut chunk);
                put(batch, staged, bucket_start_ns, &chunk);
            });
        }
    }

    /// Records the segment in its stream's tracker.
    fn stage_stream(
        &self,
        batch: &mut WriteBatch,
        staged: &mut Staged,
        position: SegmentKey,
        applied_at_ns: i64,
    ) -> Result<(), ReplicaError> {
        let stream_key = (position.sender_id, position.epoch);
        let mut stream =
            self.state.streams.get(&stream_key).cloned().unwrap_or_else(|| StreamState::new(applied_at_ns));
        stream.flags |= STREAM_SEEN_IN_SEGMENT;
        stream.tracker.on_applied(position.sequence).map_err(|source| ReplicaError::Tracker {
            sender_id: position.sender_id,
            epoch: position.epoch,
            sequence: position.sequence,
            source,
        })?;
        batch.put_cf(self.cf(CF_META), layout::stream_key(stream_key.0, stream_key.1), stream.to_bytes());
        staged.stream = Some((stream_key, stream));
        Ok(())
    }

    /// Writes the new statistics of the series a segment touched: usually one delta entry; every
    /// [`STATISTICS_DELTAS_PER_CHECKPOINT`] applies a checkpoint instead, which rewrites the `'S'`
    /// entry of every series changed since the last one and deletes the deltas. Returns whether
    /// this is a checkpoint.
    fn stage_statistics(
        &self,
        batch: &mut WriteBatch,
        statistics: &[(u32, SeriesStatistics)],
        delta_number: u64,
    ) -> bool {
        if self.state.journal.pending_deltas.len() + 1 < STATISTICS_DELTAS_PER_CHECKPOINT {
            batch.put_cf(
                self.cf(CF_META),
                layout::statistics_delta_key(delta_number),
                layout::encode_statistics_delta(statistics),
            );
            return false;
        }
        self.stage_checkpoint(batch, statistics);
        true
    }

    /// Stages a checkpoint: the `'S'` entry of every series changed since the last one (with
    /// `statistics`, not yet committed, taking precedence), and the deletion of the deltas.
    fn stage_checkpoint(&self, batch: &mut WriteBatch, statistics: &[(u32, SeriesStatistics)]) {
        let (series_cf, meta) = (self.cf(CF_SERIES), self.cf(CF_META));
        let journal = &self.state.journal;
        let mut rewritten: BTreeMap<u32, SeriesStatistics> =
            journal.dirty_ids.iter().map(|&id| (id, self.state.catalog.entries[id as usize].statistics)).collect();
        rewritten.extend(statistics.iter().copied());
        for (id, entry) in rewritten {
            batch.put_cf(series_cf, layout::series_id_key(SERIES_STATISTICS, id), entry.to_bytes());
        }
        for &number in &journal.pending_deltas {
            batch.delete_cf(meta, layout::statistics_delta_key(number));
        }
    }

    /// Writes a statistics checkpoint now, outside an apply: the `'S'` entry of every series
    /// changed since the last one, and the deletion of the deltas. Nothing to do without deltas.
    pub(crate) fn checkpoint_statistics(&mut self, sync: bool) -> Result<(), ReplicaError> {
        if self.state.journal.pending_deltas.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        self.stage_checkpoint(&mut batch, &[]);
        self.write(batch, sync, "writing a statistics checkpoint")?;
        self.state.journal = StatisticsJournal::default();
        Ok(())
    }

    /// Checks, before anything is written, that the ids `stage` gave new series are the ones
    /// [`commit`](Self::commit) will give them: the catalog's next ids, in order, for keys it does
    /// not hold yet. Both read the same catalog, so only a bug between them can fail this; the
    /// check costs a comparison and a look-up per new series (usually none).
    fn check_staged_ids(&self, staged: &Staged) -> Result<(), ReplicaError> {
        let catalog = &self.state.catalog;
        for (offset, (staged_id, key)) in staged.new_series.iter().enumerate() {
            let next_id = catalog.entries.len() + offset;
            if *staged_id as usize != next_id || catalog.ids.contains_key(key) {
                return Err(ReplicaError::CatalogOutOfStep {
                    path: self.path.clone(),
                    series: key.to_string(),
                    staged_id: *staged_id,
                    next_id: next_id as u64,
                });
            }
        }
        Ok(())
    }

    /// Makes a written batch's changes visible in memory.
    fn commit(&mut self, staged: Staged) {
        let catalog = &mut self.state.catalog;
        for (staged_id, key) in staged.new_series {
            let id = catalog.entries.len() as u32;
            // Checked before the batch was written (`check_staged_ids`).
            debug_assert_eq!(id, staged_id, "commit gives {key} another id than stage did");
            catalog.ids.insert(key.clone(), id);
            // Statistics follow below; every new series has some.
            catalog.entries.push(CatalogEntry::without_statistics(key));
        }
        let journal = &mut self.state.journal;
        for &(id, statistics) in &staged.statistics {
            catalog.entries[id as usize].statistics = statistics;
        }
        if staged.checkpoint {
            *journal = StatisticsJournal::default();
        } else {
            for &(id, _) in &staged.statistics {
                journal.mark_dirty(id);
            }
            journal.pending_deltas.push(staged.counters.segments_applied);
        }
        if let Some((key, stream)) = staged.stream {
            self.state.streams.insert(key, stream);
        }
        self.state.last_ids = staged.ids_by_address;
        let pending = &mut self.state.pending;
        for bucket in staged.touched {
            pending.buckets.insert(bucket, staged.applied_at_ns);
        }
        for &(_, statistics) in &staged.statistics {
            pending.newest_ns = pending.newest_ns.max(statistics.last_timestamp_ns);
        }
        self.state.counters = staged.counters;
    }
}

/// In-memory changes of a staged segment, made visible once its batch is written.
#[derive(Default)]
struct Staged {
    /// New series with the ids assigned to them, in id order after the catalog's last id.
    new_series: Vec<(u32, SeriesKey)>,
    statistics: Vec<(u32, SeriesStatistics)>,
    /// The statistics were written as a checkpoint rather than a delta.
    checkpoint: bool,
    stream: Option<((u64, u64), StreamState)>,
    counters: Counters,
    /// Every (bucket start, series id) a chunk was written into.
    touched: Vec<(i64, u32)>,
    /// When the segment was applied (the caller's clock).
    applied_at_ns: i64,
    /// The id of each key of the payload, by its address (see `State::last_ids`).
    ids_by_address: foldhash::HashMap<usize, u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_ids_other_than_the_catalogs_next_are_refused_before_anything_is_written() {
        let directory = tempfile::tempdir().unwrap();
        let replica = Replica::open(directory.path()).unwrap();
        let staged = |new_series: Vec<(u32, SeriesKey)>| Staged { new_series, ..Staged::default() };
        let (a, b) = (SeriesKey::new("a"), SeriesKey::new("b"));
        assert!(replica.check_staged_ids(&staged(vec![(0, a.clone()), (1, b.clone())])).is_ok());
        let error = replica.check_staged_ids(&staged(vec![(0, a), (2, b)])).unwrap_err();
        assert!(matches!(error, ReplicaError::CatalogOutOfStep { staged_id: 2, next_id: 1, .. }), "{error}");
    }

    /// Apply finds most ids by the address of the last segment's keys; whichever series come and
    /// go (in one or several runs, empty or not, keys shared or not), every key keeps the id it got
    /// first and no two share one.
    #[test]
    fn each_key_keeps_its_id_whichever_series_come_and_go_between_segments() {
        use diode_common::record::{Quality, Value};
        use diode_common::rng::SeededRng;
        use std::collections::HashMap;

        let directory = tempfile::tempdir().unwrap();
        let mut replica = Replica::open(directory.path()).unwrap();
        let keys: Vec<SeriesKey> = (0..40).map(|n| SeriesKey::new(format!("plant/s{n:02}"))).collect();
        let mut rng = SeededRng::new(17);
        let mut ids: HashMap<SeriesKey, u32> = HashMap::new();
        for round in 0..60 {
            // One to three runs, each sorted by key, as a segment merged from spool frames lists them.
            let runs = 1 + rng.below(3) as usize;
            let mut series: Vec<SeriesColumns> = Vec::new();
            for key in (0..runs).flat_map(|_| &keys) {
                if rng.chance(0.7) {
                    // A fresh allocation half the time: the last segment's addresses are then
                    // freed and reused by other keys, which the hint must never trust.
                    let key = if rng.chance(0.5) { SeriesKey::new(key.name.to_string()) } else { key.clone() };
                    let mut columns = SeriesColumns::new(key);
                    if !rng.chance(0.1) {
                        columns.push(round, Value::F64(1.0), Quality::GOOD);
                    }
                    series.push(columns);
                }
            }
            let (mut batch, mut staged) = (WriteBatch::default(), Staged::default());
            let by_id = replica.stage_series_ids(&mut batch, &mut staged, &series).unwrap();
            assert_eq!(by_id.len(), series.iter().filter(|columns| !columns.is_empty()).count());
            for &(id, index) in &by_id {
                let first = *ids.entry(series[index].key.clone()).or_insert(id);
                assert_eq!(id, first, "round {round}: {} changed its id", series[index].key);
            }
            replica.check_staged_ids(&staged).unwrap();
            replica.commit(staged);
        }
        let mut distinct: Vec<u32> = ids.values().copied().collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ids.len(), "two keys share an id");
        assert_eq!(ids.len(), keys.len());
    }
}

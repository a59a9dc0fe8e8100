//! What the replica keeps in memory, rebuilt from RocksDB at open: the series catalog with each
//! series' statistics, the statistics journal (which series live only in deltas), every stream's
//! sequence tracker, the senders' latest beacons and the counters. Every change to it follows a
//! written batch; nothing here touches RocksDB.

use std::collections::BTreeMap;

use diode_common::gaps::SequenceTracker;
use diode_common::record::{SeriesKey, ValueKind};

use crate::layout::{self, BeaconSummary, Counters, SeriesStatistics};

/// One series in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesInfo {
    /// The replica's own id of the series, assigned in order of first write and never reused.
    pub id: u32,
    /// The series' name and tags, as the sender's segments define them.
    pub key: SeriesKey,
    /// Kind of the first value written.
    pub kind: ValueKind,
    /// Values of more than one kind were written.
    pub mixed_kinds: bool,
    /// Earliest data time written, in ns since the Unix epoch.
    pub first_timestamp_ns: i64,
    /// Latest data time written, in ns since the Unix epoch.
    pub last_timestamp_ns: i64,
    /// Points written. An estimate of the points a scan returns: a timestamp written by several
    /// segments (a resent or corrected value) counts each time.
    pub point_count: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct StreamState {
    pub(crate) tracker: SequenceTracker,
    pub(crate) first_seen_at_ns: i64,
    pub(crate) flags: u8,
}

impl StreamState {
    pub(crate) fn new(first_seen_at_ns: i64) -> StreamState {
        StreamState { tracker: SequenceTracker::new(), first_seen_at_ns, flags: 0 }
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        layout::encode_stream_entry(self.first_seen_at_ns, self.flags, &self.tracker.to_bytes())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CatalogEntry {
    pub(crate) key: SeriesKey,
    pub(crate) statistics: SeriesStatistics,
}

impl CatalogEntry {
    /// A new series, with placeholder statistics (no kinds seen) until its own are set.
    pub(crate) fn without_statistics(key: SeriesKey) -> CatalogEntry {
        let statistics = SeriesStatistics {
            kind: ValueKind::F64,
            kinds_seen: 0,
            first_timestamp_ns: 0,
            last_timestamp_ns: 0,
            point_count: 0,
        };
        CatalogEntry { key, statistics }
    }
}

/// The series catalog, in memory: ids are indexes into `entries`.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    /// Each series' id, by key (a fast hasher: every apply looks up each series it carries).
    pub(crate) ids: foldhash::HashMap<SeriesKey, u32>,
    pub(crate) entries: Vec<CatalogEntry>,
}

impl Catalog {
    pub(crate) fn info(&self, id: u32) -> Option<SeriesInfo> {
        let entry = self.entries.get(id as usize)?;
        let s = entry.statistics;
        Some(SeriesInfo {
            id,
            key: entry.key.clone(),
            kind: s.kind,
            mixed_kinds: s.kinds_seen != 1 << (s.kind as u8),
            first_timestamp_ns: s.first_timestamp_ns,
            last_timestamp_ns: s.last_timestamp_ns,
            point_count: s.point_count,
        })
    }
}

/// Which series statistics live only in deltas, not yet in their `'S'` entries.
#[derive(Debug, Default, Clone)]
pub(crate) struct StatisticsJournal {
    /// Delta numbers of the `'D'` entries written since the last checkpoint, ascending.
    pub(crate) pending_deltas: Vec<u64>,
    /// `dirty[id]`: the series' statistics changed since the last checkpoint.
    pub(crate) dirty: Vec<bool>,
    /// The ids set in `dirty`.
    pub(crate) dirty_ids: Vec<u32>,
}

impl StatisticsJournal {
    pub(crate) fn mark_dirty(&mut self, id: u32) {
        let index = id as usize;
        if self.dirty.len() <= index {
            self.dirty.resize(index + 1, false);
        }
        if !self.dirty[index] {
            self.dirty[index] = true;
            self.dirty_ids.push(id);
        }
    }
}

/// Everything the replica keeps in memory; rebuilt from RocksDB at open.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) catalog: Catalog,
    pub(crate) journal: StatisticsJournal,
    pub(crate) streams: BTreeMap<(u64, u64), StreamState>,
    pub(crate) beacons: BTreeMap<u64, BeaconSummary>,
    pub(crate) counters: Counters,
    /// Buckets waiting to be merged once their hour closes.
    pub(crate) pending: PendingMerges,
    /// The series id of each key of the last applied segment's payload, by the address of its
    /// name ([`key_address`]): the decoder gives a series the same key in consecutive segments,
    /// so apply looks there first, and takes an id only if the catalog's entry under it is the
    /// same key.
    pub(crate) last_ids: foldhash::HashMap<usize, u32>,
}

/// Where `key`'s name is allocated: equal for two clones of one key, and a hint only (an address
/// is reused once its key is freed).
pub(crate) fn key_address(key: &SeriesKey) -> usize {
    std::sync::Arc::as_ptr(&key.name).cast::<u8>().addr()
}

/// Buckets waiting to be merged, in memory: by (bucket start, series id), when the last apply that
/// wrote into each was applied (`i64::MIN` for a bucket marked before the replica was opened).
#[derive(Debug, Clone)]
pub(crate) struct PendingMerges {
    pub(crate) buckets: BTreeMap<(i64, u32), i64>,
    /// The newest data time any series holds.
    pub(crate) newest_ns: i64,
    /// A bucket was merged since the replica last settled (wrote the statistics checkpoint that
    /// folds the deltas): it settles once no closed bucket is left waiting.
    pub(crate) merged_since_settled: bool,
}

impl Default for PendingMerges {
    fn default() -> Self {
        PendingMerges { buckets: BTreeMap::new(), newest_ns: i64::MIN, merged_since_settled: false }
    }
}

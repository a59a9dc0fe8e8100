//! The RocksDB replica: where verified segments are applied exactly once, atomically, and kept for
//! queries and audits.
//!
//! [`Replica::apply`] writes one RocksDB `WriteBatch` per segment holding the segment's points,
//! the catalog changes, the audit entry (the sealed bytes as received), the stream's sequence
//! tracker and the counters. Either all of it is durable or none of it: a kill -9 at any moment
//! leaves the replica as it was after some whole number of segments, and a replayed segment finds
//! itself in the tracker and writes nothing. The write-ahead log is always on; RocksDB writes it to
//! the OS before `apply` returns, so a crashed (killed) receiver loses nothing that `apply`
//! acknowledged. Power loss is covered only with [`ReplicaOptions::sync_writes`].
//!
//! # Layout, version 1 ([`LAYOUT_VERSION`])
//!
//! All integers in keys are big-endian, so RocksDB's byte order is numeric order; `i64`
//! timestamps in keys have their sign bit flipped so that negative times sort first.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `points` | series id u32 ‖ bucket start i64* ‖ epoch u64 ‖ sequence u64 ‖ sender id u64 (36 bytes) | `codec::encode_columns` of the series' records of that segment in that one-hour bucket, in input order |
//! | `series` | `'K'` ‖ canonical series key | series id u32 |
//! | `series` | `'I'` ‖ series id u32 | canonical series key (written once) |
//! | `series` | `'S'` ‖ series id u32 | statistics as of the last checkpoint: first kind u8 ‖ kinds seen u8 ‖ first ts i64 ‖ last ts i64 ‖ point count u64 |
//! | `segments` | sender id u64 ‖ epoch u64 ‖ sequence u64 (24 bytes) | version u8 (1) ‖ applied at i64 ‖ sealed segment (header ‖ signature ‖ payload) |
//! | `meta` | `'V'` | layout version u32 |
//! | `meta` | `'C'` | segments applied u64 ‖ points applied u64 ‖ beacons recorded u64 |
//! | `meta` | `'S'` ‖ sender id u64 ‖ epoch u64 | version u8 (1) ‖ first seen at i64 ‖ flags u8 (1 announced by a beacon, 2 seen in a segment) ‖ `SequenceTracker::to_bytes` |
//! | `meta` | `'B'` ‖ sender id u64 | the sender's latest beacon: summary fields ‖ raw signed bytes (see `layout::encode_beacon_entry`) |
//! | `meta` | `'E'` ‖ sender id u64 ‖ epoch u64 | the first beacon received of that epoch: version u8 (1) ‖ received at i64 ‖ raw signed bytes (kept for audits) |
//! | `meta` | `'D'` ‖ delta number u64 | statistics delta of one apply: version u8 (1) ‖ (series id u32 ‖ statistics)* |
//!
//! \* sign bit flipped. The canonical series key is `name length u32 ‖ name ‖ tag count u32 ‖
//! (key length u32 ‖ key ‖ value length u32 ‖ value)*`.
//!
//! Points: a segment's records of one series are split by one-hour bucket of data time
//! ([`BUCKET_NS`]) into one chunk per bucket. A range query is one seek to `series ‖ first bucket`
//! and a forward scan bounded by the last bucket. Within a bucket, chunks sort by (epoch,
//! sequence, sender id), which is the last-write-wins order for duplicate timestamps: the chunk
//! from the highest (epoch, sequence) wins, ties between senders go to the higher sender id, and
//! within one segment the later record in input order wins. Series ids are assigned by the replica
//! in order of first appearance, from 0, and never change.
//!
//! Series statistics: rewriting a `'S'` entry for every series a segment touches would double the
//! memtable inserts of an apply (one per chunk is the floor), so each apply writes one `'D'` delta
//! with the new statistics of the series it touched, and every
//! 64th apply (`STATISTICS_DELTAS_PER_CHECKPOINT`) instead rewrites the `'S'` entries of every series
//! changed since the last checkpoint and deletes the deltas, in the same batch. Opening reads the
//! `'S'` entries and folds the remaining deltas over them in order.
//!
//! # RocksDB tuning
//!
//! Ingest-oriented: 64 MiB memtables for `points` and `segments`, two background jobs (this is a
//! 2-core appliance), level compaction with dynamic level sizes, no compression in L0 and L1 (fast
//! flushes; chunks are already Gorilla-encoded) and zstd below. `points` has **no bloom filter**:
//! it is read only by range scans, which bloom filters do not help. `series`, `segments` and
//! `meta` have bloom filters because they are read by key (chain checks and audit look-ups of
//! single segments). `segments` is not compressed: payloads are zstd already. Memory: up to three
//! 64 MiB memtables each for `points` and `segments`, plus a 128 MiB block cache.
#![forbid(unsafe_code)]

mod chunks;
mod layout;
mod raw;
mod scan;

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use diode_common::beacon::Beacon;
use diode_common::codec::{SeriesColumns, encode_columns};
use diode_common::gaps::{GapsError, SequenceTracker};
use diode_common::keys::encode_hex;
use diode_common::record::{SeriesKey, ValueKind};
use diode_common::seal::{GENESIS_HASH, SealedSegment, SegmentHash, SegmentHeader};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, DBRawIterator, Options,
    ReadOptions, WriteBatch, WriteOptions,
};

pub use chunks::Point;
pub use layout::{BUCKET_NS, BeaconSummary, Counters, LAYOUT_VERSION, PointKey, SegmentKey, bucket_start};
pub use raw::{ChunkScan, RawChunk};
pub use scan::{ColumnScan, PointScan, Points, SegmentScan, StoredSegment};

use layout::{
    CF_META, CF_POINTS, CF_SEGMENTS, CF_SERIES, COLUMN_FAMILIES, META_BEACON, META_COUNTERS, META_LAYOUT_VERSION,
    META_STATISTICS_DELTA, META_STREAM, SERIES_BY_KEY, SERIES_IDENTITY, SERIES_STATISTICS, STREAM_ANNOUNCED_BY_BEACON,
    STREAM_SEEN_IN_SEGMENT, SeriesStatistics,
};

/// Most series one replica catalogues. The catalog is held in memory (about 150 bytes a series
/// plus names), so the bound keeps it under a few GiB; plants have far fewer tags.
pub const MAX_SERIES: u32 = 10_000_000;

/// Statistics deltas written before the touched series' statistics are rewritten in place (a
/// checkpoint). Each apply then writes one delta instead of one entry per series it touches, which
/// halves the memtable inserts of an apply; a reopen folds at most this many deltas.
const STATISTICS_DELTAS_PER_CHECKPOINT: usize = 64;

/// Memtable size of the `points` and `segments` column families.
const LARGE_WRITE_BUFFER_BYTES: usize = 64 * 1024 * 1024;
/// Memtable size of the small `series` and `meta` column families.
const SMALL_WRITE_BUFFER_BYTES: usize = 8 * 1024 * 1024;
/// Block cache shared by all column families.
const BLOCK_CACHE_BYTES: usize = 128 * 1024 * 1024;

/// How a replica is opened for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplicaOptions {
    /// fsync the write-ahead log on every apply and beacon. Off by default: without it a killed
    /// receiver loses nothing (the log is in the OS already), but a power cut can lose the last
    /// few segments; they are then simply missing and shown as gaps, and the carousel or a resend
    /// fills them.
    pub sync_writes: bool,
}

/// What [`Replica::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The segment was written: `points` records, of which `new_series` series were new.
    Applied { points: u64, new_series: u32 },
    /// The segment was applied before; nothing was written.
    AlreadyApplied,
}

/// Which stored neighbour a segment failed to link with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainLink {
    /// Sequence 1 must carry the all-zero previous hash.
    Genesis,
    /// The stored segment `sequence - 1` does not hash to this segment's previous hash.
    Previous,
    /// The stored segment `sequence + 1` names another previous hash than this segment's hash.
    Next,
    /// A different segment is already applied at this position.
    SamePosition,
}

impl std::fmt::Display for ChainLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Genesis => "sequence 1 must link to the all-zero genesis hash",
            Self::Previous => "the stored previous segment hashes to something else than this segment's previous hash",
            Self::Next => "the stored next segment links to another hash than this segment's",
            Self::SamePosition => "a different segment is already applied at this position",
        })
    }
}

/// Why the replica refused or failed. Messages name the replica, the segment or the entry, and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("there is no replica at {path}; the receiver creates it when it first starts (check the replica path)")]
    NotFound { path: PathBuf },
    #[error("cannot open the replica at {path}: {source}{hint}")]
    Open { path: PathBuf, source: rocksdb::Error, hint: &'static str },
    #[error(
        "{path} holds a RocksDB database that is not a diode replica ({reason}); point the receiver at an \
         empty directory or at an existing replica"
    )]
    NotAReplica { path: PathBuf, reason: String },
    #[error(
        "replica at {path} was written by layout version {found}; this build reads version {expected}: run a \
         diode-receiver release that reads version {found}, or rebuild the replica into a new directory by \
         resending the segments"
    )]
    LayoutVersion { path: PathBuf, found: u32, expected: u32 },
    #[error("RocksDB failed while {action} in the replica at {path}: {source}")]
    Storage { path: PathBuf, action: &'static str, source: rocksdb::Error },
    #[error(
        "the replica at {path} is damaged: {what} {reason}; restore it from a backup, or rebuild it into a new \
         directory by resending the segments"
    )]
    Corrupt { path: PathBuf, what: String, reason: String },
    #[error(
        "the replica at {path} is damaged: {entry} {reason}; the audit cannot verify that segment: restore the \
         replica from a backup, or resend that segment into a new replica",
        entry = describe_audit_entry(*key, key_bytes)
    )]
    AuditEntryDamaged { path: PathBuf, key: Option<SegmentKey>, key_bytes: Vec<u8>, reason: String },
    #[error(
        "segment {sequence} of sender {sender_id} epoch {epoch} does not fit the stored chain at sequence \
         {neighbour_sequence}: {link} (expected hash {expected_hash}, found {found_hash}); nothing was written. \
         The sender's chain forked (state lost without starting a new epoch?) or segments were forged with a \
         trusted key: compare `diode-receiver audit` with the sender before resending"
    )]
    ChainMismatch {
        sender_id: u64,
        epoch: u64,
        sequence: u64,
        neighbour_sequence: u64,
        link: ChainLink,
        expected_hash: String,
        found_hash: String,
    },
    #[error("segment {sequence} of sender {sender_id} epoch {epoch} is inconsistent: {reason}; nothing was written")]
    InconsistentSegment { sender_id: u64, epoch: u64, sequence: u64, reason: String },
    #[error("cannot record segment {sequence} of sender {sender_id} epoch {epoch}: {source}; nothing was written")]
    Tracker { sender_id: u64, epoch: u64, sequence: u64, source: GapsError },
    #[error(
        "the replica at {path} already catalogues {limit} series, its limit; a sender is producing series \
         names without bound (a timestamp or counter in a tag?): fix the source"
    )]
    TooManySeries { path: PathBuf, limit: u32 },
    #[error("the replica at {path} is open read-only; only the running receiver applies segments and beacons")]
    ReadOnly { path: PathBuf },
    #[error("cannot create the replica directory {path}: {source}; check the replica path and its permissions")]
    CreateDirectory { path: PathBuf, source: std::io::Error },
    #[error("cannot create the scratch directory {path} a read-only replica needs: {source}")]
    ScratchDirectory { path: PathBuf, source: std::io::Error },
}

impl ReplicaError {
    fn storage(path: &Path, action: &'static str, source: rocksdb::Error) -> ReplicaError {
        ReplicaError::Storage { path: path.to_owned(), action, source }
    }

    fn corrupt(path: &Path, what: &str, reason: impl std::fmt::Display) -> ReplicaError {
        ReplicaError::Corrupt { path: path.to_owned(), what: what.to_owned(), reason: reason.to_string() }
    }
}

fn describe_segment(key: SegmentKey) -> String {
    format!("the audit entry of sender {} epoch {} sequence {}", key.sender_id, key.epoch, key.sequence)
}

/// An audit entry by its position, or by its raw key when that is not a position.
fn describe_audit_entry(key: Option<SegmentKey>, key_bytes: &[u8]) -> String {
    match key {
        Some(key) => describe_segment(key),
        None => format!("the audit entry with the {}-byte key {}", key_bytes.len(), encode_hex(key_bytes)),
    }
}

/// One series in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesInfo {
    pub id: u32,
    pub key: SeriesKey,
    /// Kind of the first value written.
    pub kind: ValueKind,
    /// Values of more than one kind were written.
    pub mixed_kinds: bool,
    pub first_timestamp_ns: i64,
    pub last_timestamp_ns: i64,
    /// Points written. An estimate of the points a scan returns: a timestamp written by several
    /// segments (a resent or corrected value) counts each time.
    pub point_count: u64,
}

/// One missing range of one stream: what an operator asks the sender to resend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Gap {
    pub sender_id: u64,
    pub epoch: u64,
    pub first_sequence: u64,
    pub last_sequence: u64,
}

impl Gap {
    /// Number of missing segments (saturating).
    pub fn segment_count(&self) -> u64 {
        (self.last_sequence - self.first_sequence).saturating_add(1)
    }
}

/// What a beacon's signed head says of the stored chain: see [`Replica::record_beacon`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadCheck {
    /// The head segment is not stored (not received yet, or no head).
    NotStored,
    /// The stored segment is the one the beacon signed.
    Matches,
    /// Two signed segments claim one place: the sender's chain forked (state lost without a new
    /// epoch) or a trusted key signed segments it should not have.
    Differs { segment: SegmentKey, signed_hash: SegmentHash, stored_hash: SegmentHash },
}

/// State of one `(sender id, epoch)` stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStatus {
    pub sender_id: u64,
    pub epoch: u64,
    /// Every sequence up to this one is applied.
    pub contiguous_through: u64,
    pub highest_applied: u64,
    /// Highest sequence applied or announced by a beacon.
    pub highest_known: u64,
    /// Sequences in `1..=highest_known` not applied, ascending.
    pub missing: Vec<RangeInclusive<u64>>,
    pub missing_count: u64,
    /// When the receiver first heard of this epoch (segment applied or beacon received).
    pub first_seen_at_ns: i64,
    pub announced_by_beacon: bool,
    pub seen_in_segment: bool,
    /// The sender's latest beacon, whatever epoch it reports.
    pub last_beacon: Option<BeaconSummary>,
}

#[derive(Debug, Clone)]
struct StreamState {
    tracker: SequenceTracker,
    first_seen_at_ns: i64,
    flags: u8,
}

impl StreamState {
    fn new(first_seen_at_ns: i64) -> StreamState {
        StreamState { tracker: SequenceTracker::new(), first_seen_at_ns, flags: 0 }
    }

    fn to_bytes(&self) -> Vec<u8> {
        layout::encode_stream_entry(self.first_seen_at_ns, self.flags, &self.tracker.to_bytes())
    }
}

#[derive(Debug, Clone)]
struct CatalogEntry {
    key: SeriesKey,
    statistics: SeriesStatistics,
}

/// The series catalog, in memory: ids are indexes into `entries`.
#[derive(Debug, Default)]
struct Catalog {
    ids: HashMap<SeriesKey, u32>,
    entries: Vec<CatalogEntry>,
}

impl Catalog {
    fn info(&self, id: u32) -> Option<SeriesInfo> {
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
struct StatisticsJournal {
    /// Delta numbers of the `'D'` entries written since the last checkpoint, ascending.
    pending_deltas: Vec<u64>,
    /// `dirty[id]`: the series' statistics changed since the last checkpoint.
    dirty: Vec<bool>,
    /// The ids set in `dirty`.
    dirty_ids: Vec<u32>,
}

impl StatisticsJournal {
    fn mark_dirty(&mut self, id: u32) {
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
struct State {
    catalog: Catalog,
    journal: StatisticsJournal,
    streams: BTreeMap<(u64, u64), StreamState>,
    beacons: BTreeMap<u64, BeaconSummary>,
    counters: Counters,
}

enum Access {
    ReadWrite {
        sync_writes: bool,
    },
    /// A RocksDB secondary instance, which needs a scratch directory of its own.
    ReadOnly {
        _scratch: ScratchDirectory,
    },
}

/// A directory removed when dropped.
struct ScratchDirectory {
    path: PathBuf,
}

impl Drop for ScratchDirectory {
    fn drop(&mut self) {
        // Best effort: a leftover directory in the temp dir is harmless.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The replica. One writer per directory (RocksDB locks it); any number of
/// [`open_read_only`](Replica::open_read_only) readers beside it.
pub struct Replica {
    // Declared before `access` so the database closes before its scratch directory is removed.
    db: DB,
    access: Access,
    path: PathBuf,
    state: State,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("path", &self.path)
            .field("read_only", &matches!(self.access, Access::ReadOnly { .. }))
            .field("series", &self.state.catalog.entries.len())
            .field("streams", &self.state.streams.len())
            .finish()
    }
}

fn database_options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_max_background_jobs(2);
    options.set_bytes_per_sync(1024 * 1024);
    options.set_max_total_wal_size(512 * 1024 * 1024);
    options.set_keep_log_file_num(5);
    // Secondary (read-only) instances require every file to be opened up front.
    options.set_max_open_files(-1);
    options
}

fn column_family_options(name: &str, cache: &Cache) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    let mut options = Options::default();
    options.set_level_compaction_dynamic_level_bytes(true);
    let zstd_below_level_1 = [
        DBCompressionType::None,
        DBCompressionType::None,
        DBCompressionType::Zstd,
        DBCompressionType::Zstd,
        DBCompressionType::Zstd,
        DBCompressionType::Zstd,
        DBCompressionType::Zstd,
    ];
    match name {
        CF_POINTS => {
            table.set_block_size(32 * 1024);
            options.set_write_buffer_size(LARGE_WRITE_BUFFER_BYTES);
            options.set_max_write_buffer_number(3);
            options.set_target_file_size_base(64 * 1024 * 1024);
            options.set_compression_per_level(&zstd_below_level_1);
        }
        CF_SEGMENTS => {
            table.set_block_size(64 * 1024);
            table.set_bloom_filter(10.0, false);
            options.set_write_buffer_size(LARGE_WRITE_BUFFER_BYTES);
            options.set_max_write_buffer_number(3);
            options.set_target_file_size_base(64 * 1024 * 1024);
            options.set_compression_type(DBCompressionType::None);
        }
        _ => {
            table.set_bloom_filter(10.0, false);
            options.set_write_buffer_size(SMALL_WRITE_BUFFER_BYTES);
            options.set_compression_per_level(&zstd_below_level_1);
        }
    }
    options.set_block_based_table_factory(&table);
    options
}

fn column_family_descriptors() -> Vec<ColumnFamilyDescriptor> {
    let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
    COLUMN_FAMILIES.iter().map(|name| ColumnFamilyDescriptor::new(*name, column_family_options(name, &cache))).collect()
}

fn open_error(path: &Path, source: rocksdb::Error) -> ReplicaError {
    let text = source.to_string();
    let hint = if text.contains("lock") {
        " (is another diode-receiver running on this replica? open it read-only for queries)"
    } else {
        ""
    };
    ReplicaError::Open { path: path.to_owned(), source, hint }
}

/// Refuses a RocksDB database that lacks the replica's column families before opening it (opening
/// would otherwise add them to someone else's database).
fn check_column_families(path: &Path) -> Result<(), ReplicaError> {
    let present = DB::list_cf(&Options::default(), path).map_err(|source| open_error(path, source))?;
    let missing: Vec<&str> =
        COLUMN_FAMILIES.iter().copied().filter(|name| !present.iter().any(|p| p == name)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ReplicaError::NotAReplica {
            path: path.to_owned(),
            reason: format!("it has the column families {present:?} but not {missing:?}"),
        })
    }
}

fn database_exists(path: &Path) -> bool {
    path.join("CURRENT").is_file()
}

impl Replica {
    /// Opens the replica at `path` for writing, creating it if missing. Refuses a directory holding
    /// another RocksDB database or a replica of another layout version.
    pub fn open(path: &Path) -> Result<Replica, ReplicaError> {
        Replica::open_with(path, ReplicaOptions::default())
    }

    /// [`open`](Self::open) with options.
    pub fn open_with(path: &Path, options: ReplicaOptions) -> Result<Replica, ReplicaError> {
        let existed = database_exists(path);
        if existed {
            check_column_families(path)?;
        } else {
            std::fs::create_dir_all(path)
                .map_err(|source| ReplicaError::CreateDirectory { path: path.to_owned(), source })?;
        }
        let db = DB::open_cf_descriptors(&database_options(), path, column_family_descriptors())
            .map_err(|source| open_error(path, source))?;
        let mut replica = Replica {
            db,
            access: Access::ReadWrite { sync_writes: options.sync_writes },
            path: path.to_owned(),
            state: State::default(),
        };
        match replica.stored_layout_version()? {
            Some(_) => {}
            None if !replica.is_empty()? => {
                return Err(ReplicaError::NotAReplica {
                    path: path.to_owned(),
                    reason: "it has the replica's column families but no layout version".to_owned(),
                });
            }
            None => {
                let meta = replica.cf(CF_META);
                let mut write_options = WriteOptions::default();
                write_options.set_sync(true);
                replica
                    .db
                    .put_cf_opt(meta, META_LAYOUT_VERSION, LAYOUT_VERSION.to_be_bytes(), &write_options)
                    .map_err(|source| ReplicaError::storage(path, "writing the layout version", source))?;
            }
        }
        replica.check_layout_version()?;
        replica.state = replica.load_state()?;
        Ok(replica)
    }

    /// Opens the replica at `path` for reading while the receiver may be writing it (a RocksDB
    /// secondary instance). It sees everything applied before it opened, including what is only in
    /// the write-ahead log; call [`catch_up`](Self::catch_up) to see later applies.
    pub fn open_read_only(path: &Path) -> Result<Replica, ReplicaError> {
        if !database_exists(path) {
            return Err(ReplicaError::NotFound { path: path.to_owned() });
        }
        check_column_families(path)?;
        let scratch = create_scratch_directory()?;
        let mut options = database_options();
        options.create_if_missing(false);
        options.create_missing_column_families(false);
        let db =
            DB::open_cf_descriptors_as_secondary(&options, path, scratch.path.as_path(), column_family_descriptors())
                .map_err(|source| open_error(path, source))?;
        let mut replica = Replica {
            db,
            access: Access::ReadOnly { _scratch: scratch },
            path: path.to_owned(),
            state: State::default(),
        };
        replica.check_layout_version()?;
        replica.state = replica.load_state()?;
        Ok(replica)
    }

    /// For a read-only replica: catches up with what the writer applied since, and reloads the
    /// catalog and streams. Does nothing on a writable replica.
    pub fn catch_up(&mut self) -> Result<(), ReplicaError> {
        if matches!(self.access, Access::ReadWrite { .. }) {
            return Ok(());
        }
        self.db
            .try_catch_up_with_primary()
            .map_err(|source| ReplicaError::storage(&self.path, "catching up with the writer", source))?;
        self.state = self.load_state()?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_read_only(&self) -> bool {
        matches!(self.access, Access::ReadOnly { .. })
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.db.cf_handle(name).expect("the replica opens every column family it uses")
    }

    fn stored_layout_version(&self) -> Result<Option<u32>, ReplicaError> {
        let stored = self
            .db
            .get_pinned_cf(self.cf(CF_META), META_LAYOUT_VERSION)
            .map_err(|source| ReplicaError::storage(&self.path, "reading the layout version", source))?;
        match stored {
            None => Ok(None),
            Some(bytes) => {
                let bytes: [u8; 4] = bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| ReplicaError::corrupt(&self.path, "the layout version", "is not 4 bytes"))?;
                Ok(Some(u32::from_be_bytes(bytes)))
            }
        }
    }

    fn check_layout_version(&self) -> Result<(), ReplicaError> {
        match self.stored_layout_version()? {
            Some(LAYOUT_VERSION) => Ok(()),
            Some(found) => {
                Err(ReplicaError::LayoutVersion { path: self.path.clone(), found, expected: LAYOUT_VERSION })
            }
            None => Err(ReplicaError::NotAReplica {
                path: self.path.clone(),
                reason: "it has no layout version (still being created?)".to_owned(),
            }),
        }
    }

    fn is_empty(&self) -> Result<bool, ReplicaError> {
        for name in COLUMN_FAMILIES {
            let mut raw = self.db.raw_iterator_cf(self.cf(name));
            raw.seek_to_first();
            if raw.valid() {
                return Ok(false);
            }
            raw.status().map_err(|source| ReplicaError::storage(&self.path, "checking for contents", source))?;
        }
        Ok(true)
    }

    /// Reads the catalog, streams, beacons and counters.
    fn load_state(&self) -> Result<State, ReplicaError> {
        let mut state = State { catalog: self.load_catalog()?, ..State::default() };
        let mut raw = self.db.raw_iterator_cf(self.cf(CF_META));
        raw.seek_to_first();
        while let (Some(key), Some(value)) = (raw.key(), raw.value()) {
            if key == META_COUNTERS {
                state.counters = Counters::from_bytes(value)
                    .map_err(|reason| ReplicaError::corrupt(&self.path, "the counters", reason))?;
            } else if key.first() == Some(&META_STREAM) {
                let stream = layout::parse_stream_key(key)
                    .ok_or_else(|| ReplicaError::corrupt(&self.path, "a stream key", "is not 17 bytes"))?;
                let what = format!("the stream entry of sender {} epoch {}", stream.0, stream.1);
                let (first_seen_at_ns, flags, tracker) = layout::decode_stream_entry(value)
                    .map_err(|reason| ReplicaError::corrupt(&self.path, &what, reason))?;
                let tracker = SequenceTracker::from_bytes(tracker)
                    .map_err(|error| ReplicaError::corrupt(&self.path, &what, error))?;
                state.streams.insert(stream, StreamState { tracker, first_seen_at_ns, flags });
            } else if key.first() == Some(&META_STATISTICS_DELTA) {
                // Deltas come in ascending order, so later statistics override earlier ones.
                let number = layout::parse_statistics_delta_key(key)
                    .ok_or_else(|| ReplicaError::corrupt(&self.path, "a statistics delta key", "is not 9 bytes"))?;
                let what = format!("statistics delta {number}");
                let delta = layout::decode_statistics_delta(value)
                    .map_err(|reason| ReplicaError::corrupt(&self.path, &what, reason))?;
                for (id, statistics) in delta {
                    let entry =
                        state.catalog.entries.get_mut(id as usize).ok_or_else(|| {
                            ReplicaError::corrupt(&self.path, &what, "names a series not in the catalog")
                        })?;
                    entry.statistics = statistics;
                    state.journal.mark_dirty(id);
                }
                state.journal.pending_deltas.push(number);
            } else if key.first() == Some(&META_BEACON) {
                let sender_id = layout::parse_beacon_key(key)
                    .ok_or_else(|| ReplicaError::corrupt(&self.path, "a beacon key", "is not 9 bytes"))?;
                let (summary, _) = layout::decode_beacon_entry(value).map_err(|reason| {
                    ReplicaError::corrupt(&self.path, &format!("the beacon of sender {sender_id}"), reason)
                })?;
                state.beacons.insert(sender_id, summary);
            }
            raw.next();
        }
        raw.status().map_err(|source| ReplicaError::storage(&self.path, "reading the metadata", source))?;
        if let Some(id) = state.catalog.entries.iter().position(|entry| entry.statistics.kinds_seen == 0) {
            return Err(ReplicaError::corrupt(&self.path, &format!("series {id}"), "has no statistics"));
        }
        Ok(state)
    }

    fn load_catalog(&self) -> Result<Catalog, ReplicaError> {
        let mut catalog = Catalog::default();
        let mut raw = self.db.raw_iterator_cf(self.cf(CF_SERIES));
        // Identities and statistics are both keyed by id, so their two ranges list ids in order.
        raw.seek([SERIES_IDENTITY]);
        while let (Some(key), Some(value)) = (raw.key(), raw.value()) {
            if key.first() != Some(&SERIES_IDENTITY) {
                break;
            }
            let id =
                series_id_of(key).ok_or_else(|| ReplicaError::corrupt(&self.path, "a series key", "is not 5 bytes"))?;
            if id as usize != catalog.entries.len() {
                return Err(ReplicaError::corrupt(
                    &self.path,
                    &format!("the series catalog at id {id}"),
                    format!("skips from id {}", catalog.entries.len()),
                ));
            }
            let key = layout::decode_series_key(value)
                .map_err(|reason| ReplicaError::corrupt(&self.path, &format!("series {id}"), reason))?;
            catalog.ids.insert(key.clone(), id);
            // Placeholder statistics (no kinds seen), replaced from `'S'` or a delta.
            let statistics = SeriesStatistics {
                kind: ValueKind::F64,
                kinds_seen: 0,
                first_timestamp_ns: 0,
                last_timestamp_ns: 0,
                point_count: 0,
            };
            catalog.entries.push(CatalogEntry { key, statistics });
            raw.next();
        }
        raw.seek([SERIES_STATISTICS]);
        while let (Some(key), Some(value)) = (raw.key(), raw.value()) {
            if key.first() != Some(&SERIES_STATISTICS) {
                break;
            }
            let id =
                series_id_of(key).ok_or_else(|| ReplicaError::corrupt(&self.path, "a series key", "is not 5 bytes"))?;
            let what = format!("the statistics of series {id}");
            let statistics = SeriesStatistics::from_bytes(value)
                .map_err(|reason| ReplicaError::corrupt(&self.path, &what, reason))?;
            let entry = catalog
                .entries
                .get_mut(id as usize)
                .ok_or_else(|| ReplicaError::corrupt(&self.path, &what, "belong to no catalogued series"))?;
            entry.statistics = statistics;
            raw.next();
        }
        raw.status().map_err(|source| ReplicaError::storage(&self.path, "reading the series catalog", source))?;
        // Statistics of series created since the last checkpoint are in the deltas: the caller
        // folds those in and then checks that every series has statistics.
        Ok(catalog)
    }

    fn require_writable(&self) -> Result<bool, ReplicaError> {
        match self.access {
            Access::ReadWrite { sync_writes } => Ok(sync_writes),
            Access::ReadOnly { .. } => Err(ReplicaError::ReadOnly { path: self.path.clone() }),
        }
    }

    fn write(&self, batch: WriteBatch, sync: bool, action: &'static str) -> Result<(), ReplicaError> {
        let mut write_options = WriteOptions::default();
        write_options.set_sync(sync);
        self.db.write_opt(batch, &write_options).map_err(|source| ReplicaError::storage(&self.path, action, source))
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

    /// Applies a verified segment (signature, payload hash and decoding already checked by the
    /// caller; `series` is its decoded payload) exactly once, atomically. Checks the hash chain
    /// against the stored neighbours first and refuses a mismatch without writing anything.
    pub fn apply(
        &mut self,
        segment: &SealedSegment,
        series: &[SeriesColumns],
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

        let (batch, staged) = self.stage(segment, series, applied_at_ns)?;
        self.write(batch, sync, "applying a segment")?;
        let outcome = ApplyOutcome::Applied { points: record_count, new_series: staged.new_series.len() as u32 };
        self.commit(staged);
        Ok(outcome)
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
        applied_at_ns: i64,
    ) -> Result<(WriteBatch, Staged), ReplicaError> {
        let header = &segment.header;
        let position = SegmentKey { sender_id: header.sender_id, epoch: header.epoch, sequence: header.sequence };
        let audit_entry = layout::encode_audit_entry(applied_at_ns, segment);
        let mut batch = WriteBatch::with_capacity_bytes(audit_entry.len() * 3 + 1024 * 1024);
        let (points_cf, series_cf) = (self.cf(CF_POINTS), self.cf(CF_SERIES));

        // Resolve every entry's series id, assigning ids to new series in order of appearance.
        let catalog = &self.state.catalog;
        let mut staged = Staged::default();
        let mut canonical_key = Vec::with_capacity(256);
        let mut new_ids: HashMap<&SeriesKey, u32> = HashMap::new();
        let mut by_id: Vec<(u32, usize)> = Vec::with_capacity(series.len());
        for (index, columns) in series.iter().enumerate().filter(|(_, columns)| !columns.is_empty()) {
            let key = &columns.key;
            let id = match catalog.ids.get(key).or_else(|| new_ids.get(key)) {
                Some(&id) => id,
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
                    staged.new_series.push(key.clone());
                    new_ids.insert(key, id);
                    id
                }
            };
            by_id.push((id, index));
        }
        // Ascending series ids (payload order within one id): the batch then inserts keys in
        // ascending order, which RocksDB's memtable skip list does far faster than scattered keys.
        // A payload may list one series several times; its entries become one group.
        by_id.sort_unstable();

        let mut chunk = Vec::with_capacity(64 * 1024);
        let mut parts: Vec<&SeriesColumns> = Vec::new();
        for group in by_id.chunk_by(|a, b| a.0 == b.0) {
            let id = group[0].0;
            parts.clear();
            parts.extend(group.iter().map(|&(_, index)| &series[index]));
            let previous = catalog.entries.get(id as usize).map(|entry| entry.statistics);
            let statistics = chunks::fold_statistics(previous, &parts).expect("groups hold only non-empty columns");
            staged.statistics.push((id, statistics));
            chunks::for_each_bucket(&parts, |bucket_start_ns, columns| {
                chunk.clear();
                encode_columns(columns, &mut chunk);
                let key = PointKey {
                    series_id: id,
                    bucket_start_ns,
                    epoch: position.epoch,
                    sequence: position.sequence,
                    sender_id: position.sender_id,
                };
                batch.put_cf(points_cf, key.to_bytes(), &chunk);
            });
        }

        batch.put_cf(self.cf(CF_SEGMENTS), position.to_bytes(), &audit_entry);

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
        let meta = self.cf(CF_META);
        batch.put_cf(meta, layout::stream_key(stream_key.0, stream_key.1), stream.to_bytes());
        staged.stream = Some((stream_key, stream));

        let mut counters = self.state.counters;
        counters.segments_applied += 1;
        counters.points_applied += u64::from(header.record_count);
        batch.put_cf(meta, META_COUNTERS, counters.to_bytes());
        staged.counters = counters;
        staged.checkpoint = self.stage_statistics(&mut batch, &staged.statistics, counters.segments_applied);
        Ok((batch, staged))
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
        let (series_cf, meta) = (self.cf(CF_SERIES), self.cf(CF_META));
        let journal = &self.state.journal;
        if journal.pending_deltas.len() + 1 < STATISTICS_DELTAS_PER_CHECKPOINT {
            batch.put_cf(meta, layout::statistics_delta_key(delta_number), layout::encode_statistics_delta(statistics));
            return false;
        }
        let mut rewritten: BTreeMap<u32, SeriesStatistics> =
            journal.dirty_ids.iter().map(|&id| (id, self.state.catalog.entries[id as usize].statistics)).collect();
        rewritten.extend(statistics.iter().copied());
        for (id, entry) in rewritten {
            batch.put_cf(series_cf, layout::series_id_key(SERIES_STATISTICS, id), entry.to_bytes());
        }
        for &number in &journal.pending_deltas {
            batch.delete_cf(meta, layout::statistics_delta_key(number));
        }
        true
    }

    /// Makes a written batch's changes visible in memory.
    fn commit(&mut self, staged: Staged) {
        let catalog = &mut self.state.catalog;
        for key in staged.new_series {
            let id = catalog.entries.len() as u32;
            catalog.ids.insert(key.clone(), id);
            // Statistics follow below; every new series has some.
            let statistics = SeriesStatistics {
                kind: ValueKind::F64,
                kinds_seen: 0,
                first_timestamp_ns: 0,
                last_timestamp_ns: 0,
                point_count: 0,
            };
            catalog.entries.push(CatalogEntry { key, statistics });
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
        self.state.counters = staged.counters;
    }

    /// Records a verified beacon: its head (and its previous epoch's last sequence) become known,
    /// so sequences never received show as gaps; the sender's latest beacon is kept with its raw
    /// signed bytes, and so is the first beacon received of each epoch (for audits). A beacon older
    /// than the one kept (reordered on the link) still teaches heads. Says whether the segment the
    /// beacon names as its head is stored, and if so whether it is the one the beacon signed.
    pub fn record_beacon(
        &mut self,
        beacon: &Beacon,
        raw: &[u8],
        received_at_ns: i64,
    ) -> Result<HeadCheck, ReplicaError> {
        let sync = self.require_writable()?;
        let meta = self.cf(CF_META);
        let mut batch = WriteBatch::default();
        let mut streams = vec![((beacon.sender_id, beacon.epoch), beacon.head_sequence)];
        if beacon.previous_epoch != 0
            && beacon.previous_epoch != beacon.epoch
            && beacon.previous_epoch_last_sequence > 0
        {
            streams.push(((beacon.sender_id, beacon.previous_epoch), beacon.previous_epoch_last_sequence));
        }
        let mut updated = Vec::with_capacity(streams.len());
        for (key, head_sequence) in streams {
            let mut stream = self.state.streams.get(&key).cloned().unwrap_or_else(|| StreamState::new(received_at_ns));
            stream.flags |= STREAM_ANNOUNCED_BY_BEACON;
            stream.tracker.on_head_announced(head_sequence);
            batch.put_cf(meta, layout::stream_key(key.0, key.1), stream.to_bytes());
            updated.push((key, stream));
        }
        let summary = BeaconSummary {
            received_at_ns,
            sent_at_ns: beacon.sent_at_ns,
            epoch: beacon.epoch,
            head_sequence: beacon.head_sequence,
            head_hash: beacon.head_hash,
            oldest_retained_sequence: beacon.oldest_retained_sequence,
            records_sealed: beacon.records_sealed,
            spooled_records: beacon.spooled_records,
            previous_epoch: beacon.previous_epoch,
            previous_epoch_last_sequence: beacon.previous_epoch_last_sequence,
        };
        // The first beacon of each epoch is kept for audits: why it began, where the last ended.
        let epoch_beacon_key = layout::epoch_beacon_key(beacon.sender_id, beacon.epoch);
        let epoch_beacon_kept = self
            .db
            .get_pinned_cf(meta, epoch_beacon_key)
            .map_err(|source| ReplicaError::storage(&self.path, "reading an epoch beacon", source))?
            .is_some();
        if !epoch_beacon_kept {
            batch.put_cf(meta, epoch_beacon_key, layout::encode_epoch_beacon_entry(received_at_ns, raw));
        }
        let is_latest = self
            .state
            .beacons
            .get(&beacon.sender_id)
            .is_none_or(|kept| (beacon.epoch, beacon.sent_at_ns) >= (kept.epoch, kept.sent_at_ns));
        if is_latest {
            batch.put_cf(meta, layout::beacon_key(beacon.sender_id), layout::encode_beacon_entry(&summary, raw));
        }
        let mut counters = self.state.counters;
        counters.beacons_recorded += 1;
        batch.put_cf(meta, META_COUNTERS, counters.to_bytes());
        self.write(batch, sync, "recording a beacon")?;
        self.state.streams.extend(updated);
        if is_latest {
            self.state.beacons.insert(beacon.sender_id, summary);
        }
        self.state.counters = counters;
        self.check_head(beacon)
    }

    /// Compares a beacon's signed head with the stored segment at that position.
    fn check_head(&self, beacon: &Beacon) -> Result<HeadCheck, ReplicaError> {
        if beacon.head_sequence == 0 {
            return Ok(HeadCheck::NotStored);
        }
        let head = SegmentKey { sender_id: beacon.sender_id, epoch: beacon.epoch, sequence: beacon.head_sequence };
        let Some(stored) = self.stored_segment(head)? else { return Ok(HeadCheck::NotStored) };
        let stored_hash = diode_common::seal::parse(&stored.sealed)
            .map_err(|error| ReplicaError::corrupt(&self.path, &describe_segment(head), error))?
            .hash();
        Ok(if stored_hash == beacon.head_hash {
            HeadCheck::Matches
        } else {
            HeadCheck::Differs { segment: head, signed_hash: beacon.head_hash, stored_hash }
        })
    }

    /// Every stream, by sender id then epoch.
    pub fn streams(&self) -> Vec<StreamStatus> {
        self.state
            .streams
            .iter()
            .map(|(&(sender_id, epoch), stream)| {
                let tracker = &stream.tracker;
                let missing = tracker.missing_ranges();
                StreamStatus {
                    sender_id,
                    epoch,
                    contiguous_through: tracker.contiguous_through(),
                    highest_applied: tracker.highest_applied(),
                    highest_known: tracker.highest_known(),
                    missing_count: missing.iter().fold(0u64, |total, range| {
                        total.saturating_add((range.end() - range.start()).saturating_add(1))
                    }),
                    missing,
                    first_seen_at_ns: stream.first_seen_at_ns,
                    announced_by_beacon: stream.flags & STREAM_ANNOUNCED_BY_BEACON != 0,
                    seen_in_segment: stream.flags & STREAM_SEEN_IN_SEGMENT != 0,
                    last_beacon: self.state.beacons.get(&sender_id).cloned(),
                }
            })
            .collect()
    }

    /// Every missing range of every stream, by sender, epoch and sequence.
    pub fn gaps(&self) -> Vec<Gap> {
        self.state
            .streams
            .iter()
            .flat_map(|(&(sender_id, epoch), stream)| {
                stream.tracker.missing_ranges().into_iter().map(move |range| Gap {
                    sender_id,
                    epoch,
                    first_sequence: *range.start(),
                    last_sequence: *range.end(),
                })
            })
            .collect()
    }

    /// Whether the segment at `key` is applied (from memory; no read).
    pub fn is_applied(&self, key: SegmentKey) -> bool {
        self.state.streams.get(&(key.sender_id, key.epoch)).is_some_and(|s| s.tracker.is_applied(key.sequence))
    }

    /// The latest beacon kept for `sender_id`: its summary and raw signed bytes.
    pub fn last_beacon(&self, sender_id: u64) -> Result<Option<(BeaconSummary, Vec<u8>)>, ReplicaError> {
        let stored = self
            .db
            .get_pinned_cf(self.cf(CF_META), layout::beacon_key(sender_id))
            .map_err(|source| ReplicaError::storage(&self.path, "reading a beacon", source))?;
        let Some(entry) = stored else { return Ok(None) };
        let (summary, raw) = layout::decode_beacon_entry(&entry).map_err(|reason| {
            ReplicaError::corrupt(&self.path, &format!("the beacon of sender {sender_id}"), reason)
        })?;
        Ok(Some((summary, raw.to_vec())))
    }

    /// The first beacon received of `epoch` of `sender_id` (the one that announced it), with when
    /// it was received; its raw signed bytes are for the caller to verify.
    pub fn epoch_beacon(&self, sender_id: u64, epoch: u64) -> Result<Option<(i64, Vec<u8>)>, ReplicaError> {
        let key = layout::epoch_beacon_key(sender_id, epoch);
        let stored = self
            .db
            .get_pinned_cf(self.cf(CF_META), key)
            .map_err(|source| ReplicaError::storage(&self.path, "reading an epoch beacon", source))?;
        let Some(entry) = stored else { return Ok(None) };
        let (received_at_ns, raw) = layout::decode_epoch_beacon_entry(&entry).map_err(|reason| {
            ReplicaError::corrupt(&self.path, &format!("the kept beacon of sender {sender_id} epoch {epoch}"), reason)
        })?;
        Ok(Some((received_at_ns, raw.to_vec())))
    }

    /// The catalog, by id.
    pub fn series_list(&self) -> Vec<SeriesInfo> {
        (0..self.state.catalog.entries.len() as u32).filter_map(|id| self.state.catalog.info(id)).collect()
    }

    pub fn series_info(&self, series_id: u32) -> Option<SeriesInfo> {
        self.state.catalog.info(series_id)
    }

    pub fn series_id(&self, key: &SeriesKey) -> Option<u32> {
        self.state.catalog.ids.get(key).copied()
    }

    pub fn series_count(&self) -> u32 {
        self.state.catalog.entries.len() as u32
    }

    /// The points of `series_id` with `from_ns <= timestamp <= to_ns_inclusive`, ascending by time,
    /// one per timestamp: duplicates resolve last-write-wins, "last" being the highest (epoch,
    /// sequence) (ties between senders: the higher sender id) and within one segment the later
    /// record. Streams one bucket at a time. An unknown series or an empty range yields nothing.
    pub fn scan(&self, series_id: u32, from_ns: i64, to_ns_inclusive: i64) -> PointScan<'_> {
        Points::new(self.scan_columns(series_id, from_ns, to_ns_inclusive))
    }

    /// The same points as [`scan`](Self::scan), as columns: one non-empty block per one-hour
    /// bucket, ascending.
    pub fn scan_columns(&self, series_id: u32, from_ns: i64, to_ns_inclusive: i64) -> ColumnScan<'_> {
        let key = match self.state.catalog.entries.get(series_id as usize) {
            Some(entry) if from_ns <= to_ns_inclusive => entry.key.clone(),
            _ => return ColumnScan::new(None, &self.path, SeriesKey::new(""), series_id, from_ns, to_ns_inclusive),
        };
        let raw = self.points_iterator(series_id, from_ns, to_ns_inclusive);
        ColumnScan::new(Some(raw), &self.path, key, series_id, from_ns, to_ns_inclusive)
    }

    /// A raw iterator over the points keys of `series_id` in the buckets that overlap
    /// `from_ns..=to_ns_inclusive`: positioned at the first, bounded after the last.
    fn points_iterator(&self, series_id: u32, from_ns: i64, to_ns_inclusive: i64) -> DBRawIterator<'_> {
        let mut read_options = ReadOptions::default();
        if let Some(bound) = layout::scan_upper_bound(series_id, layout::bucket_start(to_ns_inclusive)) {
            read_options.set_iterate_upper_bound(bound);
        }
        let mut raw = self.db.raw_iterator_cf_opt(self.cf(CF_POINTS), read_options);
        raw.seek(layout::bucket_prefix(series_id, layout::bucket_start(from_ns)));
        raw
    }

    /// The sealed bytes (header ‖ signature ‖ payload) of a stored segment.
    pub fn segment_bytes(&self, sender_id: u64, epoch: u64, sequence: u64) -> Result<Option<Vec<u8>>, ReplicaError> {
        Ok(self.stored_segment(SegmentKey { sender_id, epoch, sequence })?.map(|stored| stored.sealed))
    }

    /// A stored segment with its audit metadata.
    pub fn stored_segment(&self, key: SegmentKey) -> Result<Option<StoredSegment>, ReplicaError> {
        let stored = self
            .db
            .get_pinned_cf(self.cf(CF_SEGMENTS), key.to_bytes())
            .map_err(|source| ReplicaError::storage(&self.path, "reading the audit log", source))?;
        let Some(entry) = stored else { return Ok(None) };
        let (applied_at_ns, sealed) = layout::decode_audit_entry(&entry)
            .map_err(|reason| ReplicaError::corrupt(&self.path, &describe_segment(key), reason))?;
        Ok(Some(StoredSegment { key, applied_at_ns, sealed: sealed.to_vec() }))
    }

    /// Stored segments from `from` on, in key order (sender id, epoch, sequence): the auditor's
    /// walk. Use [`SegmentKey::FIRST`] for the whole log.
    pub fn segments(&self, from: SegmentKey) -> SegmentScan<'_> {
        let mut raw = self.db.raw_iterator_cf(self.cf(CF_SEGMENTS));
        raw.seek(from.to_bytes());
        SegmentScan::new(raw, &self.path)
    }

    /// Stored segments of one stream, ascending by sequence.
    pub fn segments_of_stream(&self, sender_id: u64, epoch: u64) -> SegmentScan<'_> {
        let mut read_options = ReadOptions::default();
        let next_stream = match epoch.checked_add(1) {
            Some(next_epoch) => Some(SegmentKey { sender_id, epoch: next_epoch, sequence: 0 }),
            None => {
                sender_id.checked_add(1).map(|next_sender| SegmentKey { sender_id: next_sender, epoch: 0, sequence: 0 })
            }
        };
        if let Some(bound) = next_stream {
            read_options.set_iterate_upper_bound(bound.to_bytes().to_vec());
        }
        let mut raw = self.db.raw_iterator_cf_opt(self.cf(CF_SEGMENTS), read_options);
        raw.seek(SegmentKey { sender_id, epoch, sequence: 0 }.to_bytes());
        SegmentScan::new(raw, &self.path)
    }

    /// Sum of the catalog's point counts (an estimate: see [`SeriesInfo::point_count`]).
    pub fn total_points(&self) -> u64 {
        self.state.catalog.entries.iter().map(|entry| entry.statistics.point_count).sum()
    }

    pub fn counters(&self) -> Counters {
        self.state.counters
    }

    /// Syncs the write-ahead log and flushes memtables to table files. Not needed for durability
    /// against a killed process; useful before a backup or a clean shutdown. Does nothing read-only.
    pub fn flush(&self) -> Result<(), ReplicaError> {
        if self.is_read_only() {
            return Ok(());
        }
        self.db
            .flush_wal(true)
            .map_err(|source| ReplicaError::storage(&self.path, "syncing the write-ahead log", source))?;
        let families: Vec<&ColumnFamily> = COLUMN_FAMILIES.iter().map(|name| self.cf(name)).collect();
        self.db
            .flush_cfs_opt(&families, &rocksdb::FlushOptions::default())
            .map_err(|source| ReplicaError::storage(&self.path, "flushing memtables", source))
    }
}

/// In-memory changes of a staged segment, made visible once its batch is written.
#[derive(Default)]
struct Staged {
    /// Keys of new series, in id order after the catalog's last id.
    new_series: Vec<SeriesKey>,
    statistics: Vec<(u32, SeriesStatistics)>,
    /// The statistics were written as a checkpoint rather than a delta.
    checkpoint: bool,
    stream: Option<((u64, u64), StreamState)>,
    counters: Counters,
}

fn series_id_of(key: &[u8]) -> Option<u32> {
    (key.len() == 5).then(|| u32::from_be_bytes([key[1], key[2], key[3], key[4]]))
}

/// A fresh directory under the system temp dir for a secondary instance's own files.
fn create_scratch_directory() -> Result<ScratchDirectory, ReplicaError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let name = format!("diode-replica-reader-{}-{}-{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let path = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&path).map_err(|source| ReplicaError::ScratchDirectory { path: path.clone(), source })?;
    Ok(ScratchDirectory { path })
}

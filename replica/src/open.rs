//! Opening the replica, and how RocksDB is tuned for it; the replica's access mode, its writes
//! and its flush.
//!
//! A writable replica is created when missing and refused when the directory holds another
//! RocksDB database or a replica of another layout version. Any number of read-only replicas (RocksDB
//! secondary instances, each with a scratch directory of its own) may read beside the writer.
//! Opening reads the whole in-memory state (`state`) back from the column families.
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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use diode_common::gaps::SequenceTracker;
use rocksdb::{
    BlockBasedOptions, BottommostLevelCompaction, Cache, ColumnFamily, ColumnFamilyDescriptor, CompactOptions, DB,
    DBCompressionType, Options, WriteBatch, WriteOptions,
};

use crate::error::ReplicaError;
use crate::layout::{
    self, CF_META, CF_POINTS, CF_SEGMENTS, CF_SERIES, COLUMN_FAMILIES, Counters, LAYOUT_VERSION, META_BEACON,
    META_COUNTERS, META_LAYOUT_VERSION, META_STATISTICS_DELTA, META_STREAM, SERIES_IDENTITY, SERIES_STATISTICS,
    SeriesStatistics,
};
use crate::state::{Catalog, CatalogEntry, State, StreamState};

/// Memtable size of the `points` and `segments` column families.
const LARGE_WRITE_BUFFER_BYTES: usize = 64 * 1024 * 1024;
/// Memtable size of the small `series` and `meta` column families.
const SMALL_WRITE_BUFFER_BYTES: usize = 8 * 1024 * 1024;
/// Block cache shared by all column families.
const BLOCK_CACHE_BYTES: usize = 128 * 1024 * 1024;
/// Table files a writable replica keeps open at once (RocksDB's `max_open_files`); beyond it
/// RocksDB closes the least recently used and reopens on demand. With 64 MiB table files this keeps
/// about 32 GiB of points open, and it leaves the receiver's descriptors to its HTTP connections
/// (`diode_host::fd_limit` counts it among the descriptors kept for everything else). Read-only
/// replicas (RocksDB secondary instances) must open every file, so they keep RocksDB's unbounded
/// setting; they are short-lived CLI processes.
const MAX_OPEN_FILES: i32 = 512;

/// How a replica is opened for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplicaOptions {
    /// fsync the write-ahead log on every apply and beacon. Off by default: without it a killed
    /// receiver loses nothing (the log is in the OS already), but a power cut can lose the last
    /// few segments; they are then simply missing and shown as gaps, and the carousel or a resend
    /// fills them.
    pub sync_writes: bool,
}

pub(crate) enum Access {
    ReadWrite {
        sync_writes: bool,
    },
    /// A RocksDB secondary instance, which needs a scratch directory of its own.
    ReadOnly {
        _scratch: ScratchDirectory,
    },
}

/// A directory removed when dropped.
pub(crate) struct ScratchDirectory {
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
    pub(crate) db: DB,
    pub(crate) access: Access,
    pub(crate) path: PathBuf,
    pub(crate) state: State,
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
    options.set_max_open_files(MAX_OPEN_FILES);
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
    if name == CF_POINTS {
        // Apply writes each series' chunk just after the one the previous segment wrote for that
        // series: a hint per series id (the key's first four bytes) starts each memtable insert
        // there instead of searching the whole skip list, which was a third of the apply thread.
        // The C API has no setter for it, so it is set by name.
        options = options
            .get_options_from_string("memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.4")
            .expect("RocksDB knows the memtable insert hint option");
    }
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
            Some(1) => replica.upgrade_from_layout_1()?,
            Some(2) => replica.upgrade_from_layout_2()?,
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
        replica.complete_apply_log()?;
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
        // Secondary (read-only) instances require every file to be opened up front.
        options.set_max_open_files(-1);
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

    /// The options this replica was opened for writing with (read-only: the defaults).
    pub fn options(&self) -> ReplicaOptions {
        match self.access {
            Access::ReadWrite { sync_writes } => ReplicaOptions { sync_writes },
            Access::ReadOnly { .. } => ReplicaOptions::default(),
        }
    }

    /// The replica directory, as given at open (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is a read-only instance (a query or an audit beside the running receiver),
    /// which refuses every write with [`ReplicaError::ReadOnly`](crate::ReplicaError::ReadOnly).
    pub fn is_read_only(&self) -> bool {
        matches!(self.access, Access::ReadOnly { .. })
    }

    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
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
            // Version 1 has no merged buckets and versions 1 and 2 no stride columns: this build
            // reads them as they are, and upgrades them at their first writable open.
            Some(LAYOUT_VERSION | 1 | 2) => Ok(()),
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
            if key.first() == Some(&layout::META_APPLY_LOG) {
                // One entry per applied segment, none of it held in memory: skip the whole log.
                raw.seek([layout::META_APPLY_LOG + 1]);
                continue;
            }
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
            } else if let Some((series_id, bucket_start_ns)) = layout::parse_pending_merge_key(key) {
                // Quiet since before the open: merged as soon as its hour has closed.
                state.pending.buckets.insert((bucket_start_ns, series_id), i64::MIN);
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
        state.pending.newest_ns =
            state.catalog.entries.iter().map(|entry| entry.statistics.last_timestamp_ns).max().unwrap_or(i64::MIN);
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
            catalog.entries.push(CatalogEntry::without_statistics(key));
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

    /// Layout 1 to 2: marks every bucket holding more than one chunk to be merged, then stores
    /// the new version. One walk of the points keys; marks written before a crash are written
    /// again by the next open.
    fn upgrade_from_layout_1(&self) -> Result<(), ReplicaError> {
        let (points, meta) = (self.cf(CF_POINTS), self.cf(CF_META));
        let mut raw = self.db.raw_iterator_cf(points);
        raw.seek_to_first();
        let (mut batch, mut previous, mut marked) = (WriteBatch::default(), None::<(u32, i64)>, None::<(u32, i64)>);
        while let Some(key) = raw.key() {
            if let Some(point) = layout::PointKey::from_bytes(key) {
                let bucket = (point.series_id, point.bucket_start_ns);
                if previous == Some(bucket) && marked != Some(bucket) {
                    batch.put_cf(meta, layout::pending_merge_key(bucket.0, bucket.1), []);
                    marked = Some(bucket);
                }
                previous = Some(bucket);
            }
            if batch.len() >= 10_000 {
                self.write(std::mem::take(&mut batch), true, "marking buckets to merge")?;
            }
            raw.next();
        }
        raw.status().map_err(|source| ReplicaError::storage(&self.path, "reading points keys", source))?;
        batch.put_cf(meta, META_LAYOUT_VERSION, LAYOUT_VERSION.to_be_bytes());
        self.write(batch, true, "upgrading the layout")
    }

    /// Layout 2 to 3: version 3 chunks may hold stride integer columns (payload version 2), which
    /// an earlier build cannot decode; nothing stored changes, only the version, so that such a
    /// build refuses the replica instead of failing on its chunks.
    fn upgrade_from_layout_2(&self) -> Result<(), ReplicaError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), META_LAYOUT_VERSION, LAYOUT_VERSION.to_be_bytes());
        self.write(batch, true, "upgrading the layout")
    }

    pub(crate) fn require_writable(&self) -> Result<bool, ReplicaError> {
        match self.access {
            Access::ReadWrite { sync_writes } => Ok(sync_writes),
            Access::ReadOnly { .. } => Err(ReplicaError::ReadOnly { path: self.path.clone() }),
        }
    }

    pub(crate) fn write(&self, batch: WriteBatch, sync: bool, action: &'static str) -> Result<(), ReplicaError> {
        let mut write_options = WriteOptions::default();
        write_options.set_sync(sync);
        self.db.write_opt(batch, &write_options).map_err(|source| ReplicaError::storage(&self.path, action, source))
    }

    /// Flushes, then compacts every column family down to its last level (where tables are
    /// zstd-compressed), waiting until done: what the replica takes on disk once RocksDB's own
    /// background compaction has caught up. It rewrites every table file, so it costs a full
    /// read and write of the replica; measurements use it, an appliance need not.
    pub fn compact(&self) -> Result<(), ReplicaError> {
        self.flush()?;
        if self.is_read_only() {
            return Ok(());
        }
        let mut options = CompactOptions::default();
        options.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        options.set_change_level(true);
        for name in COLUMN_FAMILIES {
            self.db.compact_range_cf_opt(self.cf(name), None::<&[u8]>, None::<&[u8]>, &options);
        }
        Ok(())
    }

    /// Bytes of table files per column family (`points`, `series`, `segments`, `meta`), as
    /// RocksDB counts them (`rocksdb.total-sst-files-size`); memtables and the write-ahead log are
    /// not included (see [`flush`](Self::flush)).
    pub fn table_bytes(&self) -> Result<Vec<(&'static str, u64)>, ReplicaError> {
        COLUMN_FAMILIES
            .iter()
            .map(|&name| {
                let bytes = self
                    .db
                    .property_int_value_cf(self.cf(name), "rocksdb.total-sst-files-size")
                    .map_err(|source| ReplicaError::storage(&self.path, "reading table file sizes", source))?;
                Ok((name, bytes.unwrap_or(0)))
            })
            .collect()
    }

    /// Closes the database and opens it again with `options`, as a restart would: what RocksDB
    /// keeps in memory after a failed write (a background error it does not clear by itself) is
    /// gone, and the write-ahead log replays what was written. RocksDB refuses to open a
    /// directory this process already holds, so the writable instance is closed first, and until
    /// the new one is open this replica is a read-only instance of the same directory. If opening
    /// it writable again fails, it stays read-only (reads go on, writes are refused with
    /// [`ReplicaError::ReadOnly`]) and the error is returned; a later call tries again. Fails
    /// without changing anything if not even the read-only instance opens.
    pub fn reopen(&mut self, options: ReplicaOptions) -> Result<(), ReplicaError> {
        let stand_in = Replica::open_read_only(&self.path)?;
        drop(std::mem::replace(self, stand_in));
        *self = Replica::open_with(&self.path, options)?;
        Ok(())
    }

    /// What a clean shutdown does: writes the statistics checkpoint if deltas wait for one (so
    /// the next open reads each series' statistics from one entry, and a build that predates the
    /// deltas' current version still opens the replica), then [`flush`](Self::flush)es. A replica
    /// stopped without it loses nothing: the next open folds the deltas. Does nothing read-only.
    pub fn close(&mut self) -> Result<(), ReplicaError> {
        if self.is_read_only() {
            return Ok(());
        }
        self.checkpoint_statistics(true)?;
        self.flush()
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

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
//! # Layout, version 3 ([`LAYOUT_VERSION`])
//!
//! All integers in keys are big-endian, so RocksDB's byte order is numeric order; `i64`
//! timestamps in keys have their sign bit flipped so that negative times sort first.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `points` | series id u32 ‖ bucket start i64* ‖ epoch u64 ‖ sequence u64 ‖ sender id u64 (36 bytes) | `codec::encode_columns` (the fast effort) of the series' records of that segment in that one-hour bucket, in input order |
//! | `points` | series id u32 ‖ bucket start i64* (12 bytes: a merged bucket) | version u8 (1) ‖ part count ‖ the parts' epochs, sequences and sender ids (each a varint difference from the part before) ‖ their row counts ‖ `codec::encode_columns` of every part's rows in part order (see `merge`) |
//! | `series` | `'K'` ‖ canonical series key | series id u32 |
//! | `series` | `'I'` ‖ series id u32 | canonical series key (written once) |
//! | `series` | `'S'` ‖ series id u32 | statistics as of the last checkpoint: first kind u8 ‖ kinds seen u8 ‖ first ts i64 ‖ last ts i64 ‖ point count u64 |
//! | `segments` | sender id u64 ‖ epoch u64 ‖ sequence u64 (24 bytes) | version u8 (1) ‖ applied at i64 ‖ sealed segment (header ‖ signature ‖ payload) |
//! | `meta` | `'V'` | layout version u32 |
//! | `meta` | `'C'` | segments applied u64 ‖ points applied u64 ‖ beacons recorded u64 |
//! | `meta` | `'S'` ‖ sender id u64 ‖ epoch u64 | version u8 (1) ‖ first seen at i64 ‖ flags u8 (1 announced by a beacon, 2 seen in a segment) ‖ `SequenceTracker::to_bytes` |
//! | `meta` | `'B'` ‖ sender id u64 | the sender's latest beacon: summary fields ‖ raw signed bytes (see `layout::encode_beacon_entry`) |
//! | `meta` | `'E'` ‖ sender id u64 ‖ epoch u64 | the first beacon received of that epoch: version u8 (1) ‖ received at i64 ‖ raw signed bytes (kept for audits) |
//! | `meta` | `'D'` ‖ delta number u64 | statistics delta of one apply: version u8 (2) ‖ (series id step ‖ kind u8 ‖ kinds seen u8 ‖ first ts ‖ last ts ‖ point count)*, varints, the id and timestamps as differences from the previous entry's (version 1, fixed-width entries, still read) |
//! | `meta` | `'A'` ‖ apply number u64 | the apply log: version u8 (1) ‖ segment key (sender id u64 ‖ epoch u64 ‖ sequence u64) |
//! | `meta` | `'K'` ‖ sink name (UTF-8, 1–64 bytes) | a sink's cursor: version u8 (1) ‖ apply number u64 (exported up to it) ‖ updated at i64 |
//! | `meta` | `'M'` ‖ series id u32 ‖ bucket start i64* | empty: the bucket has chunks written since it was last merged, and is merged once its hour closes |
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
//! Merged buckets: once an hour has closed, [`Replica::merge_closed_buckets`] rewrites a
//! bucket's chunks as one entry under the bucket prefix, which sorts before the bucket's chunk
//! keys. It keeps every part's rows and names each part's segment, so readers split it back into
//! the very chunks apply wrote, interleaved by key with chunks applied after the merge: queries,
//! sinks and the audit read exactly what they read before. Version 1 had no merged buckets; this
//! build reads it, and at its first writable open marks every bucket of several chunks and stores
//! version 3. Version 3 chunks may hold stride integer columns (payload version 2), which builds
//! of version 2 cannot decode; this build reads version 2 as it is and stores version 3 at its
//! first writable open, so an earlier build refuses the replica rather than failing on a chunk.
//!
//! Series statistics: rewriting a `'S'` entry for every series a segment touches would double the
//! memtable inserts of an apply (one per chunk is the floor), so each apply writes one `'D'` delta
//! with the new statistics of the series it touched, and every
//! 64th apply (`STATISTICS_DELTAS_PER_CHECKPOINT`) instead rewrites the `'S'` entries of every series
//! changed since the last checkpoint and deletes the deltas, in the same batch. Once the merge of a
//! closing hour has left no closed bucket waiting, it writes a checkpoint too (its own batch, once
//! per closing, not per merge turn), so a settled replica keeps no deltas; [`Replica::close`] (the
//! receiver's orderly stop) writes one too. Opening
//! reads the `'S'` entries and folds the remaining deltas over them in order.
//!
//! Apply log: each apply also writes `'A'` ‖ its apply number (the new segments-applied count,
//! so 1, 2, 3, … without holes) naming the segment, in the same batch. Sinks follow it from their
//! cursor (`'K'` entries): late segments that fill gaps and resent or corrected values come in the
//! order they were applied, and [`Replica::read_applied`] hands each segment's points that still
//! win last-write-wins. The log is 34 bytes a segment and is kept (a new sink backfills from 1);
//! opening skips it, and a replica written before the log existed gains it at its first writable
//! open (its segments numbered in key order).
//!
//! # Modules
//!
//! `open` opens the replica and holds its RocksDB tuning; `apply` applies a segment
//! and checks the chain; `applies` reads the apply log and keeps sink cursors; `beacons` records beacons and checks heads; `reads` answers from memory and
//! scans RocksDB (`scan` merges points, `raw` lists chunks as stored); `state` is what is kept in
//! memory; `layout` is every key and value as bytes; `chunks` splits records into chunks and merges
//! them back; `bucket` reads one bucket's entries (chunks and a merged entry) as chunks; `merge`
//! merges closed hours; `error` says what went wrong.
#![forbid(unsafe_code)]

mod applies;
mod apply;
mod beacons;
mod bucket;
mod chunks;
mod error;
mod layout;
mod merge;
mod open;
mod raw;
mod reads;
mod scan;
mod state;

pub use applies::{AppliedSegment, AppliedSeries, SinkCursor};
pub use apply::{ApplyOutcome, MAX_SERIES};
pub use beacons::HeadCheck;
pub use chunks::Point;
pub use error::{ChainLink, ReplicaError};
pub use layout::{
    BUCKET_NS, BeaconSummary, Counters, LAYOUT_VERSION, MAX_SINK_NAME_BYTES, PointKey, SegmentKey, bucket_start,
};
pub use merge::{CLOSE_AFTER_NS, MergeReport, encode_merged_bucket};
pub use open::{Replica, ReplicaOptions};
pub use raw::{ChunkScan, ChunkValue, PointsEntry, RawChunk};
pub use reads::{Gap, StreamStatus};
pub use scan::{ColumnScan, PointScan, Points, SegmentScan, StoredSegment};
pub use state::SeriesInfo;

//! Why the replica refused a segment or failed: [`ReplicaError`], whose messages name the replica,
//! the segment or the entry, and what to do.

use std::path::{Path, PathBuf};

use diode_common::gaps::GapsError;
use diode_common::keys::encode_hex;

use crate::layout::SegmentKey;

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
    /// A read-only open (query, audit) found no replica: the path is wrong or the receiver has
    /// never run there.
    #[error("there is no replica at {path}; the receiver creates it when it first starts (check the replica path)")]
    NotFound {
        /// The replica directory that was asked for.
        path: PathBuf,
    },
    /// RocksDB refused to open the directory (locked by another process, permissions, damage).
    #[error("cannot open the replica at {path}: {source}{hint}")]
    Open {
        /// The replica directory.
        path: PathBuf,
        /// What RocksDB said.
        source: rocksdb::Error,
        /// A parenthesised guess at the cause (another receiver holding the lock), or empty.
        hint: &'static str,
    },
    #[error(
        "{path} holds a RocksDB database that is not a diode replica ({reason}); point the receiver at an \
         empty directory or at an existing replica"
    )]
    /// The directory holds a RocksDB database without diode's layout marker or column families:
    /// the path points at some other database.
    NotAReplica {
        /// The directory that was opened.
        path: PathBuf,
        /// What is missing or different.
        reason: String,
    },
    #[error(
        "replica at {path} was written by layout version {found}; this build reads versions 1 to {expected}: run a \
         diode-receiver release that reads version {found}, or rebuild the replica into a new directory by \
         resending the segments"
    )]
    /// The replica was written by a release with another on-disk layout; nothing is read or
    /// written, and the replica is left as it is.
    LayoutVersion {
        /// The replica directory.
        path: PathBuf,
        /// The layout version stored in the replica.
        found: u32,
        /// The layout version this build writes ([`LAYOUT_VERSION`](crate::LAYOUT_VERSION)); it reads
        /// every version from 1 to it.
        expected: u32,
    },
    #[error("RocksDB failed while {action} in the replica at {path}: {source}")]
    /// A RocksDB read or write failed (disk full, I/O error). A failed write leaves nothing
    /// behind, and the receiver's apply retries it until it succeeds.
    Storage {
        /// The replica directory.
        path: PathBuf,
        /// What the replica was doing, for the message ("reading the audit log").
        action: &'static str,
        /// What RocksDB said.
        source: rocksdb::Error,
    },
    #[error(
        "the replica at {path} is damaged: {what} {reason}; restore it from a backup, or rebuild it into a new \
         directory by resending the segments"
    )]
    /// A stored entry does not decode: the replica was damaged on disk or edited by hand.
    Corrupt {
        /// The replica directory.
        path: PathBuf,
        /// Which entry ("the layout version", "the counters", a stream's gap tracker).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    #[error(
        "the replica at {path} is damaged: {entry} {reason}; the audit cannot verify that segment: restore the \
         replica from a backup, or resend that segment into a new replica",
        entry = describe_audit_entry(*key, key_bytes)
    )]
    /// An audit log entry (a segment's sealed bytes) is damaged, so the audit cannot prove that
    /// segment; the other entries are still checked.
    AuditEntryDamaged {
        /// The replica directory.
        path: PathBuf,
        /// The segment's position, when the key decodes as one.
        key: Option<SegmentKey>,
        /// The raw key, named in hex when it is not a position.
        key_bytes: Vec<u8>,
        /// What is wrong with the entry.
        reason: String,
    },
    #[error(
        "segment {sequence} of sender {sender_id} epoch {epoch} does not fit the stored chain at sequence \
         {neighbour_sequence}: {link} (expected hash {expected_hash}, found {found_hash}); nothing was written. \
         The sender's chain forked (state lost without starting a new epoch?) or segments were forged with a \
         trusted key: compare `diode-receiver audit` with the sender before resending"
    )]
    /// A verified segment does not link with a stored neighbour of its stream: the sender's
    /// chain forked or a trusted key signed a forgery. The segment is refused; the replica is
    /// unchanged.
    ChainMismatch {
        /// The sender that signed the segment.
        sender_id: u64,
        /// The sender's epoch (a new one starts whenever its state is reset).
        epoch: u64,
        /// The refused segment's sequence number in its epoch.
        sequence: u64,
        /// The sequence of the stored segment it fails to link with.
        neighbour_sequence: u64,
        /// Which link failed.
        link: ChainLink,
        /// The hash the link requires, in hex.
        expected_hash: String,
        /// The hash actually found, in hex.
        found_hash: String,
    },
    #[error("segment {sequence} of sender {sender_id} epoch {epoch} is inconsistent: {reason}; nothing was written")]
    /// A segment whose signature checks out contradicts itself or the replica (sequence 0, a record
    /// count other than its header's); it is refused and nothing is written.
    InconsistentSegment {
        /// The sender that signed the segment.
        sender_id: u64,
        /// The sender's epoch.
        epoch: u64,
        /// The segment's sequence number in its epoch.
        sequence: u64,
        /// What contradicts what.
        reason: String,
    },
    #[error("cannot record segment {sequence} of sender {sender_id} epoch {epoch}: {source}; nothing was written")]
    /// The stream's gap tracker cannot take the segment (it would exceed the tracker's bounds);
    /// the segment is refused and nothing is written.
    Tracker {
        /// The sender that signed the segment.
        sender_id: u64,
        /// The sender's epoch.
        epoch: u64,
        /// The segment's sequence number in its epoch.
        sequence: u64,
        /// Why the tracker refused it.
        source: GapsError,
    },
    #[error(
        "the replica at {path} already catalogues {limit} series, its limit; a sender is producing series \
         names without bound (a timestamp or counter in a tag?): fix the source"
    )]
    /// Applying the segment would catalogue more series than [`MAX_SERIES`](crate::MAX_SERIES);
    /// the segment is refused so one runaway source cannot grow the catalog without bound.
    TooManySeries {
        /// The replica directory.
        path: PathBuf,
        /// The number of series the replica holds at most.
        limit: u32,
    },
    #[error(
        "the replica at {path} would give the new series {series} the id {staged_id}, but its catalog's next id \
         is {next_id}; nothing was written. The in-memory catalog is out of step with the stored one (a bug): \
         restart the receiver, which reads the catalog back from the replica"
    )]
    /// The in-memory catalog would hand out an id the stored catalog does not expect (a bug);
    /// the segment is refused and a restart reloads the catalog.
    CatalogOutOfStep {
        /// The replica directory.
        path: PathBuf,
        /// The new series' key (name and tags).
        series: String,
        /// The id the in-memory catalog chose.
        staged_id: u32,
        /// The next id the stored catalog records.
        next_id: u64,
    },
    /// A write was asked of a replica opened read-only (by a query or an audit).
    #[error("the replica at {path} is open read-only; only the running receiver applies segments and beacons")]
    ReadOnly {
        /// The replica directory.
        path: PathBuf,
    },
    /// The receiver could not create the replica directory on first start.
    #[error("cannot create the replica directory {path}: {source}; check the replica path and its permissions")]
    CreateDirectory {
        /// The replica directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A read-only open could not create the scratch directory RocksDB's secondary instance
    /// keeps its own log and manifest in.
    #[error("cannot create the scratch directory {path} a read-only replica needs: {source}")]
    ScratchDirectory {
        /// The scratch directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

impl ReplicaError {
    pub(crate) fn storage(path: &Path, action: &'static str, source: rocksdb::Error) -> ReplicaError {
        ReplicaError::Storage { path: path.to_owned(), action, source }
    }

    pub(crate) fn corrupt(path: &Path, what: &str, reason: impl std::fmt::Display) -> ReplicaError {
        ReplicaError::Corrupt { path: path.to_owned(), what: what.to_owned(), reason: reason.to_string() }
    }
}

/// The audit entry at `key`, for messages.
pub(crate) fn describe_segment(key: SegmentKey) -> String {
    format!("the audit entry of sender {} epoch {} sequence {}", key.sender_id, key.epoch, key.sequence)
}

/// An audit entry by its position, or by its raw key when that is not a position.
fn describe_audit_entry(key: Option<SegmentKey>, key_bytes: &[u8]) -> String {
    match key {
        Some(key) => describe_segment(key),
        None => format!("the audit entry with the {}-byte key {}", key_bytes.len(), encode_hex(key_bytes)),
    }
}

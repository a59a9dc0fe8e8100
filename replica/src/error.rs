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
    #[error(
        "the replica at {path} would give the new series {series} the id {staged_id}, but its catalog's next id \
         is {next_id}; nothing was written. The in-memory catalog is out of step with the stored one (a bug): \
         restart the receiver, which reads the catalog back from the replica"
    )]
    CatalogOutOfStep { path: PathBuf, series: String, staged_id: u32, next_id: u64 },
    #[error("the replica at {path} is open read-only; only the running receiver applies segments and beacons")]
    ReadOnly { path: PathBuf },
    #[error("cannot create the replica directory {path}: {source}; check the replica path and its permissions")]
    CreateDirectory { path: PathBuf, source: std::io::Error },
    #[error("cannot create the scratch directory {path} a read-only replica needs: {source}")]
    ScratchDirectory { path: PathBuf, source: std::io::Error },
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

//! The sender's durable path: records are accepted into the spool, sealed into signed segments,
//! and kept in the segment log until the link has carried them and the retention window is over.
//!
//! Invariants:
//! - a record is acknowledged to its source only once its spool frame is written (and synced,
//!   under `fsync = "always"`);
//! - a segment is handed to the link only after it is synced in the segment log, so a restart can
//!   never seal a different segment under a sequence that was already sent;
//! - each segment log entry names the last spool frame it covers, so a restart re-seals exactly the
//!   spool frames after it: nothing twice, nothing lost.
//!
//! Where sealing runs: with a sealing thread attached ([`Pipeline::attach_sealer`], the default
//! `segments.sealer_thread`), a submit only makes its spool frame durable and wakes that thread,
//! which takes the oldest frames ([`Pipeline::take_seal_job`]), has them encoded without the
//! pipeline's lock ([`SealJob::encode`]: merging, columnar encoding, zstd, BLAKE3) by its
//! [`Encoders`], and puts each result in the chain in the order the jobs were taken
//! ([`Pipeline::finish_seals`]: sequence, signature, segment log; the ones encoded by then in one
//! write and one sync), so the chain stays one line while several segments are encoded at once
//! (`segments.encoder_threads`). Without a sealing
//! thread, a submit seals on its own thread.
//!
//! Failures of the disk (full, or failing):
//! - a submit whose spool write fails accepts nothing: the write is undone (see `framed_log`) and
//!   the records are handed back, so the source's retry makes no duplicate; a full disk is
//!   [`PipelineError::DiskFull`], which sources answer as "retry later";
//! - sealing is not part of accepting: once the spool frame is durable the records are accepted,
//!   even if sealing them then fails (the segment log's disk full or failing). They stay pending
//!   and in the spool, and sealing is tried again at the next tick (at most every
//!   [`SEAL_RETRY_NS`]) and after a restart. A failed seal changes nothing: the next try seals the
//!   same records under the same sequence.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use diode_common::beacon::EpochReason;
use diode_common::codec::{self, Effort, SeriesColumns};
use diode_common::keys::SenderKey;
use diode_common::record::{Record, RecordError, SeriesKey};
use diode_common::seal::{self, ChainPosition, GENESIS_HASH, SegmentHash};

use crate::config::FsyncPolicy;
use crate::framed_log::{self, Disk, FrameLocation, FramedLog, LogError, RealDisk};

const SPOOL_FILE_BYTES: u64 = 64 * 1024 * 1024;
const SEGMENT_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// zstd level for spool frames: they are short-lived, so speed matters more than size (and they are
/// encoded with [`Effort::Fast`]: about a tenth more bytes for two thirds of the encoding time).
const SPOOL_ZSTD_LEVEL: i32 = 1;
/// After a failed seal, the next try waits this long (sealing costs CPU; the disk needs an operator).
pub const SEAL_RETRY_NS: i64 = 1_000_000_000;

/// Settings of the durable path, from the config file.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// `sender_id`: written into every segment header.
    pub sender_id: u64,
    /// `data_dir`: holds the spool, the segment logs and the epoch file.
    pub data_dir: PathBuf,
    /// `segments.max_records`: a segment is sealed once this many records wait.
    pub max_records: usize,
    /// `segments.max_age_ms`, in ns: a segment is sealed once its oldest record waited this long.
    pub max_age_ns: i64,
    /// `segments.zstd_level`: compression of segment payloads.
    pub zstd_level: i32,
    /// `spool.max_mib`, in bytes: above it submits are refused with [`SubmitError::SpoolFull`].
    pub spool_max_bytes: u64,
    /// `spool.fsync`: whether a spool write is synced before it is acknowledged.
    pub fsync: FsyncPolicy,
    /// `segments.max_unsent_mib`, in bytes: sealing pauses while this much is sealed but unsent.
    pub max_unsent_bytes: u64,
    /// `segments.retention_mib`, in bytes: older segment log files are deleted beyond it.
    pub retention_bytes: u64,
}

/// A segment ready for the link.
#[derive(Debug, Clone)]
pub struct SealedEntry {
    /// The epoch it was sealed in.
    pub epoch: u64,
    /// Its sequence in that epoch, from 1.
    pub sequence: u64,
    /// The sealed segment (header ‖ signature ‖ payload), shared with the link's carousel.
    pub bytes: Arc<Vec<u8>>,
    /// Records it carries.
    pub record_count: u32,
}

/// The identity and history of the current epoch, persisted in `data_dir/epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochState {
    /// The epoch number; a new epoch is always higher than every earlier one.
    pub epoch: u64,
    /// When it began, in ns since the Unix epoch by the sender's clock.
    pub started_at_ns: i64,
    /// Why it began, as the first beacon of each run states under the signature.
    pub reason: EpochReason,
    /// The epoch before it (0: none).
    pub previous_epoch: u64,
    /// The last sequence sealed in that epoch (0: none, or its segment log was lost).
    pub previous_last_sequence: u64,
    /// That segment's hash (zeros with sequence 0).
    pub previous_last_hash: SegmentHash,
}

/// Where sealed segments of the current epoch are, shared with the link thread and `resend`.
#[derive(Debug, Default)]
pub struct SegmentIndex {
    /// Every retained segment by sequence; the sealer adds, retention removes.
    pub entries: BTreeMap<u64, IndexEntry>,
}

/// One retained segment in the segment log.
#[derive(Debug, Clone, Copy)]
pub struct IndexEntry {
    /// Where its frame is in the segment log files.
    pub location: FrameLocation,
    /// The sealed segment's size, in bytes (carousel and unsent budgets count it).
    pub size_bytes: u64,
    /// When it was sealed, in ns since the Unix epoch (the carousel's window is by this age).
    pub sealed_at_ns: i64,
}

/// Shared view of the pipeline's progress, read by the link thread and metrics.
#[derive(Debug, Default)]
pub struct Progress {
    /// Latest sequence sealed in the current epoch (0: none); set by the sealer.
    pub head_sequence: AtomicU64,
    /// Records sealed since the process started; set by the sealer, carried in beacons.
    pub records_sealed: AtomicU64,
    /// Records accepted into the spool since the process started.
    pub records_accepted: AtomicU64,
    /// Records accepted and not yet sealed: the backlog, carried in beacons.
    pub spooled_records: AtomicU64,
    /// Highest sequence whose first transmission finished (set by the link thread).
    pub sent_through: AtomicU64,
    /// Oldest sequence still in the segment log (set by retention): below it, no resend.
    pub oldest_retained_sequence: AtomicU64,
}

/// Why the durable path failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PipelineError {
    /// Another process holds `data_dir`'s lock; nothing was opened.
    #[error(
        "another diode-sender (run or import) is using {}; stop it first, or send the data through its HTTP ingest",
        .data_dir.display()
    )]
    Locked {
        /// The data directory in use.
        data_dir: PathBuf,
    },
    /// The disk under `path` has no room (ENOSPC, EDQUOT, EFBIG). Nothing was written; the same
    /// write succeeds once space is freed.
    #[error("the disk holding {} is full ({cause}); free space on it and writes resume", .path.display())]
    DiskFull {
        /// The log directory being written.
        path: PathBuf,
        /// The operating system's error.
        cause: Arc<io::Error>,
    },
    /// A failed write to the log in `path` could not be undone; that log refuses writes until the
    /// sender restarts (which cuts the failed write off, as after a crash).
    #[error(
        "{} refuses writes until diode-sender restarts: a failed write ({cause}) could not be undone ({undo})",
        .path.display()
    )]
    Stuck {
        /// The log directory.
        path: PathBuf,
        /// Why the write failed.
        cause: Arc<io::Error>,
        /// Why undoing it failed.
        undo: Arc<io::Error>,
    },
    /// A file operation on the data directory failed (other than a full disk).
    #[error("cannot {action} {}: {cause}", .path.display())]
    Io {
        /// What was being done ("create", "lock", "write").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        cause: Arc<io::Error>,
    },
    /// The epoch file does not decode: the sender will not guess its epoch or chain, so it stops
    /// until the file is restored.
    #[error("epoch file {} is damaged: {reason}", .path.display())]
    DamagedEpochFile {
        /// The epoch file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Spool frames are intact on disk but written by a build with another record format; the
    /// sender stops rather than drop them.
    #[error(
        "{frames} spool frames in {} pass their checksum but do not decode; this build cannot read them",
        .dir.display()
    )]
    UndecodableSpool {
        /// How many frames do not decode.
        frames: u64,
        /// The spool directory.
        dir: PathBuf,
    },
    /// The link thread has ended, so sealed segments can no longer be handed on; the sender is
    /// shutting down or the link failed (see its log).
    #[error("the link thread has stopped")]
    LinkStopped,
}

impl PipelineError {
    fn io(action: &'static str, path: &Path, cause: io::Error) -> PipelineError {
        PipelineError::Io { action, path: path.to_owned(), cause: Arc::new(cause) }
    }

    /// A failed append to the log in `path`.
    fn log(action: &'static str, path: &Path, error: LogError) -> PipelineError {
        let path = path.to_owned();
        match error {
            LogError::Failed(cause) if framed_log::is_disk_full(&cause) => PipelineError::DiskFull { path, cause },
            LogError::Failed(cause) => PipelineError::Io { action, path, cause },
            LogError::Stuck { cause, undo } => PipelineError::Stuck { path, cause, undo },
        }
    }
}

/// Why a batch of records was not accepted; in every case none of the batch was.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// A record is invalid (name, tag or string too long, …); the whole batch is refused.
    #[error("record {index} refused: {source}")]
    Invalid {
        /// The record's position in the batch, from 0.
        index: usize,
        /// What is wrong with it.
        source: RecordError,
    },
    /// The spool has reached `spool.max_mib` (the link is behind): sources answer "retry later".
    #[error("the spool is full ({used_bytes} of {limit_bytes} bytes); retry later")]
    SpoolFull {
        /// Bytes the spool holds.
        used_bytes: u64,
        /// Its limit, in bytes.
        limit_bytes: u64,
    },
    /// The spool could not be written; nothing was accepted.
    #[error(transparent)]
    Storage(#[from] PipelineError),
    /// The group-commit thread has ended (the sender is shutting down); nothing was accepted.
    #[error("the spool committer has stopped")]
    Stopped,
}

impl SubmitError {
    /// The spool, or the disk under it, is full: nothing was stored, and a source may submit the
    /// same records again later (once the link has caught up, or space has been freed).
    pub fn is_full(&self) -> bool {
        matches!(self, SubmitError::SpoolFull { .. } | SubmitError::Storage(PipelineError::DiskFull { .. }))
    }
}

/// One accepted spool frame waiting to be sealed.
struct PendingFrame {
    /// The frame's id in the spool.
    id: u64,
    /// Its records, grouped by series (as [`codec::group_records`] groups them); shared with a
    /// seal in progress on the sealing thread.
    series: Arc<Vec<SeriesColumns>>,
    /// How many records it holds.
    records: usize,
    /// [`codec::decoded_bytes_bound`] of its records: a seal takes frames while their bounds sum
    /// to at most [`codec::MAX_PAYLOAD_BOUND_BYTES`], so that no segment outgrows what a
    /// receiver decodes (or the segment format holds) whatever the records carry.
    bound: usize,
    /// When it was accepted (or recovered from the spool at open): its records' wait for a seal
    /// starts here.
    accepted_ns: i64,
    /// The frame as the spool holds it: a payload of `series` ([`codec::encode_payload_with`] at
    /// the fast effort and zstd level 1), which a segment of this frame alone takes as it is.
    spooled: Arc<Vec<u8>>,
}

impl PendingFrame {
    /// `bound` is `series`' [`codec::decoded_bytes_bound`].
    fn new(id: u64, series: Vec<SeriesColumns>, bound: usize, spooled: Vec<u8>, accepted_ns: i64) -> PendingFrame {
        let records = series.iter().map(SeriesColumns::len).sum();
        PendingFrame { id, series: Arc::new(series), records, bound, accepted_ns, spooled: Arc::new(spooled) }
    }
}

/// Records grouped by series into spool frames and encoded: the costly part of a submit, which
/// needs no lock, so writers prepare their own in parallel and the committing thread only appends
/// and syncs ([`Pipeline::submit_prepared`]).
#[derive(Debug, Default)]
pub struct PreparedFrames {
    frames: Vec<Vec<SeriesColumns>>,
    /// Each frame's [`codec::decoded_bytes_bound`], found while the frames were cut to it.
    bounds: Vec<usize>,
    /// Each frame encoded for the spool.
    contents: Vec<Vec<u8>>,
    records: usize,
}

impl PreparedFrames {
    /// `records` in frames of at most `max_records` (a segment never splits a frame), grouped once:
    /// the spool frame and, later, the seal use the same groups, and each series' key is checked
    /// once per frame, not once per record. Refuses the whole batch, naming the first invalid
    /// record.
    pub fn prepare(records: &[Record], max_records: usize) -> Result<PreparedFrames, SubmitError> {
        let frames: Vec<Vec<SeriesColumns>> = records.chunks(max_records.max(1)).map(codec::group_records).collect();
        if frames.iter().flatten().any(|columns| columns.validate().is_err())
            && let Some((index, source)) =
                records.iter().enumerate().find_map(|(i, r)| r.validate().err().map(|e| (i, e)))
        {
            return Err(SubmitError::Invalid { index, source });
        }
        Ok(PreparedFrames::encode(frames, records.len()))
    }

    /// [`prepare`](Self::prepare) of frames a source grouped as it parsed them (a
    /// [`codec::Grouper`] made with the same `max_records`). Refuses an invalid record, numbered in
    /// the frames' grouped order.
    pub fn from_groups(frames: Vec<Vec<SeriesColumns>>) -> Result<PreparedFrames, SubmitError> {
        if frames.iter().flatten().any(|columns| columns.validate().is_err())
            && let Some((index, source)) = frames
                .iter()
                .flatten()
                .flat_map(SeriesColumns::records)
                .enumerate()
                .find_map(|(i, r)| r.validate().err().map(|e| (i, e)))
        {
            return Err(SubmitError::Invalid { index, source });
        }
        let records = frames.iter().flatten().map(SeriesColumns::len).sum();
        Ok(PreparedFrames::encode(frames, records))
    }

    /// Each frame encoded for the spool, once cut to [`codec::MAX_PAYLOAD_BOUND_BYTES`] (only
    /// large string values ever need it; a segment never splits a frame, so a frame must fit in
    /// one).
    fn encode(frames: Vec<Vec<SeriesColumns>>, records: usize) -> PreparedFrames {
        let (frames, bounds): (Vec<Vec<SeriesColumns>>, Vec<usize>) =
            frames.into_iter().flat_map(codec::split_to_bound).unzip();
        let contents =
            frames.iter().map(|series| codec::encode_payload_with(series, SPOOL_ZSTD_LEVEL, Effort::Fast)).collect();
        PreparedFrames { frames, bounds, contents, records }
    }

    /// Records in the frames.
    pub fn records(&self) -> usize {
        self.records
    }

    /// The records again (grouped by series, each series' in their order), for a write that
    /// was refused and is to be retried or handed back.
    pub fn into_records(self) -> Vec<Record> {
        let mut records = Vec::with_capacity(self.records);
        for series in self.frames.iter().flatten() {
            records.extend(series.records());
        }
        records
    }
}

/// The oldest pending frames handed to seal jobs that are not finished yet (encoding, or
/// encoded and waiting for their turn in the chain). Every job holds at least one frame, so no
/// job is out when `frames` is 0.
#[derive(Debug, Default, Clone, Copy)]
struct TakenFrames {
    /// Pending frames, from the oldest, that those jobs hold.
    frames: usize,
    /// Records in those frames.
    records: usize,
}

/// The durable path itself: spool, sealer and segment log of one data directory, owned by one
/// process at a time.
pub struct Pipeline {
    /// Held for the pipeline's life: one process at a time owns a data_dir.
    _lock: fs::File,
    settings: PipelineSettings,
    key: SenderKey,
    epoch: EpochState,
    spool: FramedLog,
    segments: FramedLog,
    index: Arc<RwLock<SegmentIndex>>,
    progress: Arc<Progress>,
    position: ChainPosition,
    /// Every accepted spool frame not yet sealed, oldest first, grouped by series as it was
    /// written: segments end on frame boundaries so that the spool cursor a segment records is
    /// exact, and a seal merges its frames' groups instead of grouping every record again.
    pending: VecDeque<PendingFrame>,
    /// Records in `pending`.
    pending_records: usize,
    /// Id of the last spool frame whose records are all in `pending` or sealed.
    last_frame_id: u64,
    /// Id of the last spool frame covered by a sealed segment.
    sealed_frame_id: u64,
    output: std::sync::mpsc::SyncSender<SealedEntry>,
    /// Whether writing the spool is failing (reported once per run of failures).
    spool_failing: bool,
    /// When sealing has been failing: not to be tried again before this time.
    seal_retry_at_ns: Option<i64>,
    /// [`SealJob`]s out (being encoded for the sealing thread): their frames stay pending until
    /// [`Pipeline::finish_seal`], and no other seal may take them.
    taken: TakenFrames,
    /// Counts releases of the jobs out ([`Pipeline::seal_failed`]): a job taken before one is
    /// never finished.
    job_generation: u64,
    /// Set by [`Pipeline::attach_sealer`]: submits wake the sealing thread instead of sealing on
    /// the submitting thread.
    wake_sealer: Option<std::sync::mpsc::SyncSender<()>>,
}

/// The frames of one segment to be, taken by [`Pipeline::take_seal_job`]: encode them
/// ([`SealJob::encode`], the costly part, without the pipeline's lock), then hand the result to
/// [`Pipeline::finish_seal`].
pub struct SealJob {
    generation: u64,
    frames: Vec<Arc<Vec<SeriesColumns>>>,
    /// Records in `frames`.
    records: usize,
    /// Id of the last spool frame of the job: the segment's spool cursor.
    cursor: u64,
    zstd_level: i32,
    /// The job's one frame as spooled, when the segment takes it as its payload instead of
    /// encoding it again (see [`Pipeline::seal_job`]).
    spooled: Option<Arc<Vec<u8>>>,
}

impl SealJob {
    /// Merges the frames' series and encodes the payload: everything of a seal but its place in
    /// the chain and the signature.
    pub fn encode(self) -> EncodedSeal {
        let encoded = if let (Some(spooled), [frame]) = (&self.spooled, self.frames.as_slice()) {
            seal::encoded_for_seal(frame, spooled.to_vec())
        } else if let [frame] = self.frames.as_slice() {
            seal::encode_for_seal(frame, self.zstd_level)
        } else {
            let merged = codec::merge_groups(self.frames.iter().map(|frame| frame.as_slice()));
            seal::encode_for_seal(&merged, self.zstd_level)
        };
        let frames = self.frames.len();
        EncodedSeal { generation: self.generation, encoded, frames, records: self.records, cursor: self.cursor }
    }
}

/// Adds `series`' keys to `seen`; returns the bytes of their bound that keys already there (from
/// an earlier frame or earlier in this one) need not add again ([`codec::key_bound_bytes`] of
/// each): merged by key, they share one table entry and one block. One hash per key.
fn take_repeated_keys<'a>(series: &'a [SeriesColumns], seen: &mut foldhash::HashSet<&'a SeriesKey>) -> usize {
    series.iter().filter(|columns| !seen.insert(&columns.key)).map(|columns| codec::key_bound_bytes(&columns.key)).sum()
}

/// An encoded [`SealJob`], ready for [`Pipeline::finish_seal`].
pub struct EncodedSeal {
    generation: u64,
    encoded: seal::EncodedPayload,
    /// Pending frames it covers, from the oldest.
    frames: usize,
    records: usize,
    cursor: u64,
}

impl Pipeline {
    /// Opens or recovers the spool and the segment log, re-reading every unsealed spool frame.
    pub fn open(
        settings: PipelineSettings,
        key: SenderKey,
        now_ns: i64,
        output: std::sync::mpsc::SyncSender<SealedEntry>,
    ) -> Result<Pipeline, PipelineError> {
        Self::open_on(Arc::new(RealDisk), settings, key, now_ns, output)
    }

    /// [`Pipeline::open`], with the spool and the segment log writing through `disk`.
    pub(crate) fn open_on(
        disk: Arc<dyn Disk>,
        settings: PipelineSettings,
        key: SenderKey,
        now_ns: i64,
        output: std::sync::mpsc::SyncSender<SealedEntry>,
    ) -> Result<Pipeline, PipelineError> {
        fs::create_dir_all(&settings.data_dir)
            .map_err(|e| PipelineError::io("create data_dir", &settings.data_dir, e))?;
        let lock = lock_data_dir(&settings.data_dir)?;
        let epoch = load_or_start_epoch(&*disk, &settings.data_dir, now_ns)?;
        let segment_dir = segment_dir(&settings.data_dir, epoch.epoch);
        let mut index = SegmentIndex::default();
        let mut last_segment: Option<(u64, SegmentHash, u64)> = None;
        let segments = FramedLog::open_on(Arc::clone(&disk), &segment_dir, SEGMENT_FILE_BYTES, |frame| {
            if let Some((cursor, sealed)) = split_segment_entry(&frame.content)
                && let Ok(segment) = seal::parse(sealed)
            {
                last_segment = Some((segment.header.sequence, segment.hash(), cursor));
                let entry = IndexEntry {
                    location: frame.location,
                    size_bytes: sealed.len() as u64,
                    sealed_at_ns: segment.header.sealed_at_ns,
                };
                index.entries.insert(segment.header.sequence, entry);
            }
        })
        .map_err(|e| PipelineError::io("open the segment log in", &segment_dir, e))?;
        let (next_sequence, previous_hash, sealed_frame_id) = match last_segment {
            Some((sequence, hash, cursor)) => (sequence + 1, hash, cursor),
            None => (1, GENESIS_HASH, 0),
        };
        let mut pending = VecDeque::new();
        let spool_dir = settings.data_dir.join("spool");
        let mut damaged_frames = 0u64;
        let spool = FramedLog::open_on(disk, &spool_dir, SPOOL_FILE_BYTES, |frame| {
            if frame.id > sealed_frame_id {
                match codec::decode_payload(&frame.content) {
                    Ok(series) => {
                        let bound = codec::decoded_bytes_bound(&series);
                        pending.push_back(PendingFrame::new(frame.id, series, bound, frame.content, now_ns));
                    }
                    Err(_) => damaged_frames += 1,
                }
            }
        })
        .map_err(|e| PipelineError::io("open the spool in", &spool_dir, e))?;
        if damaged_frames > 0 {
            return Err(PipelineError::UndecodableSpool { frames: damaged_frames, dir: spool_dir });
        }
        let last_frame_id = spool.last_id().unwrap_or(0).max(sealed_frame_id);
        let pending_records: usize = pending.iter().map(|frame| frame.records).sum();
        let progress = Arc::new(Progress::default());
        progress.head_sequence.store(next_sequence - 1, Ordering::Relaxed);
        progress.spooled_records.store(pending_records as u64, Ordering::Relaxed);
        progress
            .oldest_retained_sequence
            .store(index.entries.keys().next().copied().unwrap_or(next_sequence), Ordering::Relaxed);
        if !pending.is_empty() {
            tracing::info!(records = pending_records, "recovered accepted records from the spool; sealing them first");
        }
        let position =
            ChainPosition { sender_id: settings.sender_id, epoch: epoch.epoch, sequence: next_sequence, previous_hash };
        Ok(Pipeline {
            _lock: lock,
            settings,
            key,
            epoch,
            spool,
            segments,
            index: Arc::new(RwLock::new(index)),
            progress,
            position,
            pending,
            pending_records,
            last_frame_id,
            sealed_frame_id,
            output,
            spool_failing: false,
            seal_retry_at_ns: None,
            taken: TakenFrames::default(),
            job_generation: 0,
            wake_sealer: None,
        })
    }

    /// The current epoch, as loaded or started at open.
    pub fn epoch(&self) -> &EpochState {
        &self.epoch
    }

    /// The index of retained segments, shared with the link thread and `resend`.
    pub fn index(&self) -> Arc<RwLock<SegmentIndex>> {
        Arc::clone(&self.index)
    }

    /// The progress counters, shared with the link thread and metrics.
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    /// The current epoch's segment log directory.
    pub fn segment_dir(&self) -> PathBuf {
        segment_dir(&self.settings.data_dir, self.epoch.epoch)
    }

    /// The hash of the latest sealed segment (zeros before the first).
    pub fn head_hash(&self) -> SegmentHash {
        self.position.previous_hash
    }

    /// Makes `records` durable in the spool; on `Ok` they will reach the link even across a crash
    /// and `records` is left empty. On `Err` nothing was accepted and `records` is untouched.
    ///
    /// Accepted records are sealed once a segment's worth is pending (or by age, in [`tick`]); a
    /// seal that fails then does not make the submit fail: the records are durable, and sealing is
    /// tried again later (see the module's "Failures of the disk").
    ///
    /// [`tick`]: Pipeline::tick
    pub fn submit(&mut self, records: &mut Vec<Record>, now_ns: i64) -> Result<(), SubmitError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut prepared = vec![PreparedFrames::prepare(records, self.settings.max_records)?];
        self.submit_prepared(&mut prepared, now_ns)?;
        records.clear();
        Ok(())
    }

    /// Records per spool frame and per segment (`segments.max_records`): what
    /// [`PreparedFrames::prepare`] is given for this pipeline.
    pub fn max_records(&self) -> usize {
        self.settings.max_records
    }

    /// [`submit`](Self::submit) of writes already grouped and encoded (by [`PreparedFrames::prepare`]
    /// with [`max_records`](Self::max_records)), so that the costly part ran outside the lock:
    /// every write's frames are appended and synced together, all accepted or none. On `Ok`,
    /// `writes` is left empty; on `Err`, untouched.
    pub fn submit_prepared(&mut self, writes: &mut Vec<PreparedFrames>, now_ns: i64) -> Result<(), SubmitError> {
        let count: usize = writes.iter().map(PreparedFrames::records).sum();
        if count == 0 {
            writes.clear();
            return Ok(());
        }
        let used_bytes = self.spool.size_bytes();
        if used_bytes >= self.settings.spool_max_bytes {
            return Err(SubmitError::SpoolFull { used_bytes, limit_bytes: self.settings.spool_max_bytes });
        }
        let contents: Vec<&[u8]> = writes.iter().flat_map(|write| write.contents.iter().map(Vec::as_slice)).collect();
        let first_id = self.last_frame_id + 1;
        let sync = self.settings.fsync == FsyncPolicy::Always;
        if let Err(error) = self.spool.append_all(first_id, &contents, sync) {
            let error = PipelineError::log("write to the spool in", &self.spool_dir(), error);
            if !self.spool_failing {
                tracing::error!("{error}; sources are refused until it can be written");
                self.spool_failing = true;
            }
            return Err(error.into());
        }
        if self.spool_failing {
            tracing::info!("the spool can be written again");
            self.spool_failing = false;
        }
        self.last_frame_id += contents.len() as u64;
        let frames = writes.drain(..).flat_map(|write| write.frames.into_iter().zip(write.bounds).zip(write.contents));
        self.pending.extend(
            (first_id..)
                .zip(frames)
                .map(|(id, ((series, bound), spooled))| PendingFrame::new(id, series, bound, spooled, now_ns)),
        );
        self.pending_records += count;
        self.progress.records_accepted.fetch_add(count as u64, Ordering::Relaxed);
        self.progress.spooled_records.store(self.pending_records as u64, Ordering::Relaxed);
        if let Some(wake) = &self.wake_sealer {
            if self.pending_records - self.taken.records >= self.settings.max_records {
                // Full: the sealing thread is already woken, and finds every due segment.
                let _ = wake.try_send(());
            }
            return Ok(());
        }
        while self.pending_records >= self.settings.max_records {
            match self.try_seal(now_ns) {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    // Accepted all the same: the records are durable in the spool.
                    tracing::error!("{error}");
                    break;
                }
            }
        }
        Ok(())
    }

    /// Seals by age; call often (every few milliseconds). A failed seal is reported and tried again
    /// later; the only error is a stopped link thread.
    pub fn tick(&mut self, now_ns: i64) -> Result<(), PipelineError> {
        if self.aged(now_ns) {
            self.try_seal(now_ns)?;
        }
        Ok(())
    }

    /// Seals everything pending now (used at shutdown and by tests); a failed seal is returned.
    pub fn flush(&mut self, now_ns: i64) -> Result<(), PipelineError> {
        while !self.pending.is_empty() {
            if !self.seal_pending(now_ns)? {
                break;
            }
        }
        Ok(())
    }

    fn spool_dir(&self) -> PathBuf {
        self.settings.data_dir.join("spool")
    }

    /// [`Pipeline::seal_pending`], unless a failed seal is waiting for its retry time. A failed seal
    /// is reported (once per run of failures) and answered `Ok(false)`: nothing was sealed, and
    /// everything stays pending. Only a stopped link thread is an error.
    fn try_seal(&mut self, now_ns: i64) -> Result<bool, PipelineError> {
        if self.waiting_for_retry(now_ns) {
            return Ok(false);
        }
        match self.seal_pending(now_ns) {
            Ok(sealed) => Ok(sealed),
            Err(PipelineError::LinkStopped) => Err(PipelineError::LinkStopped),
            Err(error) => {
                self.seal_failed(&error, now_ns);
                Ok(false)
            }
        }
    }

    /// The oldest pending record that no seal job holds has waited `max_age`.
    fn aged(&self, now_ns: i64) -> bool {
        self.pending
            .get(self.taken.frames)
            .is_some_and(|frame| now_ns.saturating_sub(frame.accepted_ns) >= self.settings.max_age_ns)
    }

    /// A failed seal is waiting for its retry time.
    fn waiting_for_retry(&self, now_ns: i64) -> bool {
        self.seal_retry_at_ns.is_some_and(|at| now_ns < at)
    }

    fn unsent_bytes(&self) -> u64 {
        let sent_through = self.progress.sent_through.load(Ordering::Relaxed);
        let index = self.index.read().expect("segment index lock");
        index.entries.range(sent_through + 1..).map(|(_, entry)| entry.size_bytes).sum()
    }

    /// Hands sealing to a thread of its own: from now on a submit only wakes the returned receiver
    /// (once a segment's worth is pending), and that thread seals with [`seal_due`]. Sources then
    /// go on while a segment is encoded.
    pub fn attach_sealer(&mut self) -> std::sync::mpsc::Receiver<()> {
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        self.wake_sealer = Some(wake);
        woken
    }

    /// The oldest pending frames that no job holds yet and that make a segment, if one is due (a
    /// segment's worth of them, or the oldest of them `max_age` old), no failed seal is waiting
    /// for its retry time and the link's backlog has room. The frames stay pending until
    /// [`finish_seal`](Self::finish_seal); jobs must be finished in the order they were taken.
    pub fn take_seal_job(&mut self, now_ns: i64) -> Option<SealJob> {
        let untaken = self.pending_records - self.taken.records;
        let due = untaken >= self.settings.max_records || self.aged(now_ns);
        if self.pending.len() == self.taken.frames
            || !due
            || self.waiting_for_retry(now_ns)
            || self.unsent_bytes() >= self.settings.max_unsent_bytes
        {
            return None;
        }
        Some(self.seal_job())
    }

    /// Takes whole frames only, from the oldest that no job holds, as many as fit in max_records
    /// and in [`codec::MAX_PAYLOAD_BOUND_BYTES`] (a frame never holds more than either).
    ///
    /// A job of one frame holding at least half of max_records (a source sending fast, in large
    /// batches) takes the frame as spooled for its payload: the fast effort at zstd level 1 is
    /// about 7 % more bytes than encoding it again at `zstd_level` with the smallest effort
    /// (0.94 against 1.01 bytes per record for 250,000 records of 5,000 series), and saves that
    /// whole second encoding, a third of the sender's CPU at that rate. Smaller segments (a live
    /// plant's, merged from many small frames) are encoded again, where bytes count and CPU
    /// does not.
    fn seal_job(&mut self) -> SealJob {
        let before = self.taken.frames.checked_sub(1).map(|last| self.pending[last].id);
        let mut job = SealJob {
            generation: self.job_generation,
            frames: Vec::new(),
            records: 0,
            cursor: before.unwrap_or(self.sealed_frame_id),
            zstd_level: self.settings.zstd_level,
            spooled: None,
        };
        let mut bound = 0;
        // The keys of the frames taken, once the plain sum of their bounds would pass the limit:
        // the frames are merged by key (`SealJob::encode`), so a key repeated in a later frame
        // adds no table entry and no block. Many small frames over many series (HTTP writers'
        // bodies of a few thousand lines) would otherwise end a segment long before max_records.
        let mut keys: Option<foldhash::HashSet<&SeriesKey>> = None;
        let taken = self.taken.frames;
        for (index, frame) in self.pending.iter().enumerate().skip(taken) {
            if job.records > 0 && job.records + frame.records > self.settings.max_records {
                break;
            }
            let mut frame_bound = frame.bound;
            if job.records > 0 && (keys.is_some() || bound + frame_bound > codec::MAX_PAYLOAD_BOUND_BYTES) {
                let seen = keys.get_or_insert_with(|| {
                    let mut seen = foldhash::HashSet::default();
                    bound = 0;
                    for earlier in self.pending.range(taken..index) {
                        bound += earlier.bound - take_repeated_keys(&earlier.series, &mut seen);
                    }
                    seen
                });
                // A frame that does not fit ends the job, and the keys it added go with `seen`.
                frame_bound -= take_repeated_keys(&frame.series, seen);
                if bound + frame_bound > codec::MAX_PAYLOAD_BOUND_BYTES {
                    break;
                }
            }
            bound += frame_bound;
            job.records += frame.records;
            job.frames.push(Arc::clone(&frame.series));
            job.cursor = frame.id;
        }
        // A frame spooled before frames were bounded could hold more than a segment may; it is
        // encoded again instead.
        if job.frames.len() == 1 && job.records * 2 >= self.settings.max_records {
            let spooled = &self.pending[self.taken.frames].spooled;
            if spooled.len() <= seal::MAX_PAYLOAD_LENGTH {
                job.spooled = Some(Arc::clone(spooled));
            }
        }
        self.taken.frames += job.frames.len();
        self.taken.records += job.records;
        job
    }

    /// Puts the oldest encoded job in the chain: signs it under the next sequence, writes it to
    /// the segment log (synced) and drops its frames from the pending queue and the spool. Returns
    /// the entry for the link, which the caller sends. On error nothing changed: the same frames
    /// are still pending, to be sealed under the same sequence; report it with
    /// [`seal_failed`](Self::seal_failed), which also releases every other job out.
    ///
    /// # Panics
    /// If `job` is not the oldest job out, or was released by [`seal_failed`](Self::seal_failed):
    /// a bug in the caller ([`seal_due`] finishes jobs in order and drops released ones).
    pub fn finish_seal(&mut self, job: EncodedSeal, now_ns: i64) -> Result<SealedEntry, PipelineError> {
        let mut entries = self.finish_seals(vec![job], now_ns)?;
        Ok(entries.pop().expect("one entry per job"))
    }

    /// [`finish_seal`](Self::finish_seal) for the oldest jobs out, in order, written to the
    /// segment log in one write and made durable by one sync: all of them or, on error, none.
    pub fn finish_seals(&mut self, jobs: Vec<EncodedSeal>, now_ns: i64) -> Result<Vec<SealedEntry>, PipelineError> {
        assert!(
            jobs.iter().all(|job| job.generation == self.job_generation)
                && jobs.iter().map(|job| job.frames).sum::<usize>() <= self.taken.frames,
            "a seal job released by a failed seal is never finished"
        );
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let first = self.position.sequence;
        let mut position = self.position;
        let mut covered_frames = 0;
        let mut sealed = Vec::with_capacity(jobs.len());
        let mut log_entries = Vec::with_capacity(jobs.len());
        for job in jobs {
            covered_frames += job.frames;
            debug_assert_eq!(
                self.pending.get(covered_frames - 1).map(|frame| frame.id),
                Some(job.cursor),
                "seal jobs are finished in the order they were taken"
            );
            let segment = seal::seal_encoded(position, job.encoded, now_ns, &self.key);
            let bytes = segment.to_bytes();
            let mut entry = Vec::with_capacity(8 + bytes.len());
            entry.extend_from_slice(&job.cursor.to_le_bytes());
            entry.extend_from_slice(&bytes);
            log_entries.push(entry);
            position.previous_hash = segment.hash();
            position.sequence += 1;
            sealed.push((job.frames, job.records, job.cursor, segment.header.record_count, bytes));
        }
        let locations = self
            .segments
            .append_all(first, &log_entries, true)
            .map_err(|e| PipelineError::log("write a segment to", &self.segment_dir(), e))?;
        // Durable: from here on the segments are sealed, whatever else fails.
        self.position = position;
        let mut entries = Vec::with_capacity(sealed.len());
        let mut index = self.index.write().expect("segment index lock");
        for ((sequence, (frames, records, cursor, record_count, bytes)), location) in
            (first..).zip(sealed).zip(locations)
        {
            self.pending.drain(..frames);
            self.pending_records -= records;
            self.taken.frames -= frames;
            self.taken.records -= records;
            index
                .entries
                .insert(sequence, IndexEntry { location, size_bytes: bytes.len() as u64, sealed_at_ns: now_ns });
            self.sealed_frame_id = cursor;
            self.progress.head_sequence.store(sequence, Ordering::Relaxed);
            self.progress.records_sealed.fetch_add(records as u64, Ordering::Relaxed);
            entries.push(SealedEntry { epoch: self.epoch.epoch, sequence, bytes: Arc::new(bytes), record_count });
        }
        drop(index);
        self.progress.spooled_records.store(self.pending_records as u64, Ordering::Relaxed);
        if self.seal_retry_at_ns.take().is_some() {
            tracing::info!("sealing works again");
        }
        // Freeing disk: a failure leaves files that the next seal tries to remove again.
        if let Err(error) = self.spool.drop_before(self.sealed_frame_id + 1) {
            tracing::warn!("cannot remove sealed spool files from {}: {error}", self.spool_dir().display());
        }
        if let Err(error) = self.enforce_retention() {
            tracing::warn!("cannot remove old segment log files from {}: {error}", self.segment_dir().display());
        }
        Ok(entries)
    }

    /// Reports a failed seal (once per run of failures) and holds sealing back for
    /// [`SEAL_RETRY_NS`]: sealing costs CPU, and a failing disk needs an operator. Every job out
    /// is released: its frames are taken again, from the oldest, when sealing is retried, and
    /// the jobs themselves must be dropped, never finished.
    pub fn seal_failed(&mut self, error: &PipelineError, now_ns: i64) {
        self.release_seal_jobs();
        if self.seal_retry_at_ns.is_none() {
            tracing::error!("cannot seal: {error}; the accepted records stay in the spool and sealing is retried");
        }
        self.seal_retry_at_ns = Some(now_ns.saturating_add(SEAL_RETRY_NS));
    }

    /// Every job out is dropped: its frames are taken again, from the oldest.
    fn release_seal_jobs(&mut self) {
        self.taken = TakenFrames::default();
        self.job_generation += 1;
    }

    /// Seals up to `max_records` pending records on this thread. Returns false when the link's
    /// backlog is full or a seal is out on the sealing thread, in which case the records stay
    /// pending (and durable in the spool). On error nothing changed: the same records are still
    /// pending, to be sealed under the same sequence.
    fn seal_pending(&mut self, now_ns: i64) -> Result<bool, PipelineError> {
        if self.pending.is_empty() {
            return Ok(true);
        }
        if self.taken.frames > 0 || self.unsent_bytes() >= self.settings.max_unsent_bytes {
            return Ok(false);
        }
        let job = self.seal_job().encode();
        let entry = self.finish_seal(job, now_ns).inspect_err(|_| self.release_seal_jobs())?;
        // The link thread may be slow; blocking here is the backpressure that fills the spool.
        if self.output.send(entry).is_err() {
            return Err(PipelineError::LinkStopped);
        }
        Ok(true)
    }

    /// Drops the oldest segment log files beyond the retention budget, never unsent segments.
    fn enforce_retention(&mut self) -> io::Result<()> {
        let sent_through = self.progress.sent_through.load(Ordering::Relaxed);
        let mut excess = self.segments.size_bytes().saturating_sub(self.settings.retention_bytes);
        let files = self.segments.files().to_vec();
        let mut keep_from = None;
        for window in files.windows(2) {
            let (_, size) = window[0];
            let next_first = window[1].0;
            if excess == 0 || next_first > sent_through + 1 {
                break;
            }
            excess = excess.saturating_sub(size);
            keep_from = Some(next_first);
        }
        if let Some(keep_from) = keep_from {
            self.segments.drop_before(keep_from)?;
            let mut index = self.index.write().expect("segment index lock");
            index.entries = index.entries.split_off(&keep_from);
            self.progress.oldest_retained_sequence.store(keep_from, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// What the sealing thread does when woken: seals every due segment. Each job is taken from
/// `pipeline` under its lock ([`Pipeline::take_seal_job`]), encoded without it by `encoders`
/// (up to [`Encoders::jobs_out`] at once), then, in the order taken, signed and written
/// ([`Pipeline::finish_seal`]) and sent to the link without the lock, so a slow link blocks only
/// this thread (the backpressure that fills the spool). Stops at the first failed seal, reported
/// with [`Pipeline::seal_failed`] (the other jobs out are dropped) and retried after
/// [`SEAL_RETRY_NS`]. Only a stopped link thread is an error. `now_ns` gives the time each step
/// is taken at.
pub fn seal_due(
    pipeline: &Mutex<Pipeline>,
    encoders: &Encoders,
    now_ns: impl Fn() -> i64,
) -> Result<(), PipelineError> {
    let output = pipeline.lock().expect("pipeline lock").output.clone();
    let mut out: VecDeque<Encoding> = VecDeque::new();
    loop {
        if out.len() < encoders.jobs_out() {
            let mut locked = pipeline.lock().expect("pipeline lock");
            while out.len() < encoders.jobs_out() {
                let Some(job) = locked.take_seal_job(now_ns()) else { break };
                drop(locked);
                out.push_back(encoders.encode(job));
                locked = pipeline.lock().expect("pipeline lock");
            }
        }
        let Some(oldest) = out.pop_front() else { return Ok(()) };
        // The oldest job, and every one behind it already encoded: one write and one sync for
        // them all.
        let mut ready = vec![oldest.wait()];
        while let Some(encoded) = out.front().and_then(Encoding::ready) {
            out.pop_front();
            ready.push(encoded);
        }
        let sealed = {
            let mut locked = pipeline.lock().expect("pipeline lock");
            let now = now_ns();
            locked.finish_seals(ready, now).map_err(|error| locked.seal_failed(&error, now))
        };
        let Ok(entries) = sealed else {
            // Released: their frames are taken again when the seal is retried.
            out.into_iter().for_each(|encoding| drop(encoding.wait()));
            return Ok(());
        };
        for entry in entries {
            if output.send(entry).is_err() {
                return Err(PipelineError::LinkStopped);
            }
        }
    }
}

/// Where seal jobs are encoded: on the sealing thread itself ([`Encoders::inline`]), or on a
/// pool of threads of their own ([`Encoders::spawn`]), so that while the sealing thread signs,
/// writes and syncs one segment the next ones are being encoded, on as many cores as there are
/// threads. Encoding is the costly part of a seal (merging, columns, zstd, BLAKE3) and needs no
/// order; only its place in the chain does, and that stays on the sealing thread.
pub struct Encoders {
    jobs: Option<std::sync::mpsc::Sender<(SealJob, std::sync::mpsc::SyncSender<EncodedSeal>)>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// A job being encoded by [`Encoders`] (or already encoded).
struct Encoding(std::sync::mpsc::Receiver<EncodedSeal>);

impl Encoding {
    /// The encoded job.
    ///
    /// # Panics
    /// If encoding it panicked (a bug), as encoding it on this thread would have.
    fn wait(self) -> EncodedSeal {
        self.0.recv().expect("an encoding thread panicked")
    }

    /// The encoded job, if it is ready now (then this encoding is spent).
    fn ready(&self) -> Option<EncodedSeal> {
        self.0.try_recv().ok()
    }
}

impl Encoders {
    /// Jobs encoded on the thread that seals, one at a time.
    pub fn inline() -> Encoders {
        Encoders { jobs: None, threads: Vec::new() }
    }

    /// `threads` encoding threads (none: [`Encoders::inline`]).
    pub fn spawn(threads: usize) -> io::Result<Encoders> {
        if threads == 0 {
            return Ok(Encoders::inline());
        }
        let (jobs, queue) = std::sync::mpsc::channel::<(SealJob, std::sync::mpsc::SyncSender<EncodedSeal>)>();
        let queue = Arc::new(Mutex::new(queue));
        let threads = (0..threads)
            .map(|index| {
                let queue = Arc::clone(&queue);
                std::thread::Builder::new().name(format!("encoder-{index}")).spawn(move || {
                    loop {
                        let Ok((job, result)) = queue.lock().expect("encoder queue lock").recv() else { return };
                        let _ = result.send(job.encode());
                    }
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Encoders { jobs: Some(jobs), threads })
    }

    /// Jobs the sealing thread keeps out: one being finished while every thread encodes another.
    pub fn jobs_out(&self) -> usize {
        self.threads.len() + 1
    }

    fn encode(&self, job: SealJob) -> Encoding {
        let (result, encoding) = std::sync::mpsc::sync_channel(1);
        let job = match &self.jobs {
            Some(jobs) => match jobs.send((job, result)) {
                Ok(()) => return Encoding(encoding),
                // Every encoding thread is gone: encode here.
                Err(std::sync::mpsc::SendError((job, result))) => (job, result),
            },
            None => (job, result),
        };
        let (job, result) = job;
        let _ = result.send(job.encode());
        Encoding(encoding)
    }
}

impl Drop for Encoders {
    fn drop(&mut self) {
        self.jobs.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn lock_data_dir(data_dir: &Path) -> Result<fs::File, PipelineError> {
    let path = data_dir.join("lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| PipelineError::io("create", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(PipelineError::Locked { data_dir: data_dir.to_owned() }),
        Err(fs::TryLockError::Error(e)) => Err(PipelineError::io("lock", &path, e)),
    }
}

/// `cursor u64 LE ‖ sealed segment`.
pub fn split_segment_entry(content: &[u8]) -> Option<(u64, &[u8])> {
    let cursor = u64::from_le_bytes(content.get(..8)?.try_into().ok()?);
    Some((cursor, &content[8..]))
}

/// The segment log directory of `epoch`: `data_dir/segments/epoch-<20 digits>`.
pub fn segment_dir(data_dir: &Path, epoch: u64) -> PathBuf {
    data_dir.join("segments").join(format!("epoch-{epoch:020}"))
}

fn epoch_file(data_dir: &Path) -> PathBuf {
    data_dir.join("epoch")
}

/// Reads the current epoch, or starts a new one: on first start, or when the segment log of the
/// recorded epoch has gone (the chain cannot continue without its head).
fn load_or_start_epoch(disk: &dyn Disk, data_dir: &Path, now_ns: i64) -> Result<EpochState, PipelineError> {
    let path = epoch_file(data_dir);
    let previous = match fs::read_to_string(&path) {
        Ok(text) => Some(parse_epoch(&text).map_err(|reason| PipelineError::DamagedEpochFile { path, reason })?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(PipelineError::io("read", &path, e)),
    };
    if let Some(state) = &previous {
        if segment_dir(data_dir, state.epoch).is_dir() {
            return Ok(state.clone());
        }
        tracing::warn!(epoch = state.epoch, "the segment log of the current epoch is missing; starting a new epoch");
    }
    let had_segments = data_dir.join("segments").is_dir();
    let reason = if previous.is_some() || had_segments { EpochReason::SpoolLost } else { EpochReason::FirstStart };
    start_epoch_on(disk, data_dir, now_ns, reason, previous.as_ref())
}

/// `diode-sender new-epoch`: ends the current chain and starts another, by an operator's decision.
pub fn start_epoch_after_current(data_dir: &Path, now_ns: i64) -> Result<EpochState, PipelineError> {
    let _lock = lock_data_dir(data_dir)?;
    let path = epoch_file(data_dir);
    let text = fs::read_to_string(&path).map_err(|e| PipelineError::io("read", &path, e))?;
    let current = parse_epoch(&text).map_err(|reason| PipelineError::DamagedEpochFile { path, reason })?;
    start_epoch(data_dir, now_ns, EpochReason::Operator, Some(&current))
}

/// Starts a new epoch.
pub fn start_epoch(
    data_dir: &Path,
    now_ns: i64,
    reason: EpochReason,
    previous: Option<&EpochState>,
) -> Result<EpochState, PipelineError> {
    start_epoch_on(&RealDisk, data_dir, now_ns, reason, previous)
}

fn start_epoch_on(
    disk: &dyn Disk,
    data_dir: &Path,
    now_ns: i64,
    reason: EpochReason,
    previous: Option<&EpochState>,
) -> Result<EpochState, PipelineError> {
    // Epoch numbers follow the clock (in seconds) so that a sender whose disk was replaced still
    // starts an epoch greater than any it used before.
    let clock_epoch = (now_ns / 1_000_000_000).max(1) as u64;
    let epoch = previous.map_or(clock_epoch, |p| clock_epoch.max(p.epoch + 1));
    let (previous_last_sequence, previous_last_hash) =
        previous.map(|p| last_sealed(&segment_dir(data_dir, p.epoch))).unwrap_or((0, GENESIS_HASH));
    let state = EpochState {
        epoch,
        started_at_ns: now_ns,
        reason,
        previous_epoch: previous.map_or(0, |p| p.epoch),
        previous_last_sequence,
        previous_last_hash,
    };
    // Synced: a power cut that took the directory back would make the next start take the epoch's
    // segment log for lost and begin another epoch.
    let epoch_dir = segment_dir(data_dir, epoch);
    framed_log::create_dirs_synced(disk, &epoch_dir).map_err(|e| PipelineError::io("create", &epoch_dir, e))?;
    let path = epoch_file(data_dir);
    let temporary = path.with_extension("new");
    fs::write(&temporary, format_epoch(&state))
        .and_then(|()| fs::File::open(&temporary)?.sync_all())
        .map_err(|e| PipelineError::io("write", &temporary, e))?;
    fs::rename(&temporary, &path).map_err(|e| PipelineError::io("write", &path, e))?;
    disk.sync_dir(data_dir).map_err(|e| PipelineError::io("sync", data_dir, e))?;
    tracing::info!(epoch, reason = reason.label(), "started a new epoch");
    Ok(state)
}

fn last_sealed(dir: &Path) -> (u64, SegmentHash) {
    let mut last = (0, GENESIS_HASH);
    if dir.is_dir() {
        let _ = FramedLog::open(dir, SEGMENT_FILE_BYTES, |frame| {
            if let Some(segment) = split_segment_entry(&frame.content).and_then(|(_, s)| seal::parse(s).ok()) {
                last = (segment.header.sequence, segment.hash());
            }
        });
    }
    last
}

fn format_epoch(state: &EpochState) -> String {
    format!(
        "epoch = {}\nstarted_at_ns = {}\nreason = {}\nprevious_epoch = {}\nprevious_last_sequence = {}\nprevious_last_hash = {}\n",
        state.epoch,
        state.started_at_ns,
        state.reason as u8,
        state.previous_epoch,
        state.previous_last_sequence,
        diode_common::keys::encode_hex(&state.previous_last_hash),
    )
}

/// The epoch file's state, or what is wrong with it.
fn parse_epoch(text: &str) -> Result<EpochState, String> {
    let field = |name: &str| -> Result<&str, String> {
        text.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim_start().strip_prefix('=')))
            .map(str::trim)
            .ok_or_else(|| format!("missing {name}"))
    };
    let number = |name: &str| -> Result<u64, String> { field(name)?.parse().map_err(|e| format!("{name}: {e}")) };
    let reason = match field("reason")?.parse::<u8>().map_err(|e| format!("reason: {e}"))? {
        1 => EpochReason::FirstStart,
        2 => EpochReason::SpoolLost,
        3 => EpochReason::Operator,
        _ => EpochReason::Continuing,
    };
    let hash = diode_common::keys::decode_hex(field("previous_last_hash")?)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or("previous_last_hash is not 64 hexadecimal digits")?;
    Ok(EpochState {
        epoch: number("epoch")?,
        started_at_ns: field("started_at_ns")?.parse().map_err(|e| format!("started_at_ns: {e}"))?,
        reason,
        previous_epoch: number("previous_epoch")?,
        previous_last_sequence: number("previous_last_sequence")?,
        previous_last_hash: hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framed_log::faults::FaultyDisk;
    use diode_common::keys::TrustedKeys;
    use diode_common::record::{Quality, SeriesKey, Value};
    use std::sync::mpsc::{Receiver, sync_channel};

    fn settings(dir: &Path) -> PipelineSettings {
        PipelineSettings {
            sender_id: 9,
            data_dir: dir.to_owned(),
            max_records: 100,
            max_age_ns: 1_000,
            zstd_level: 3,
            spool_max_bytes: 1 << 20,
            fsync: FsyncPolicy::Always,
            max_unsent_bytes: 1 << 30,
            retention_bytes: 1 << 30,
        }
    }

    fn records(from: i64, count: i64) -> Vec<Record> {
        (from..from + count)
            .map(|i| Record {
                series: SeriesKey::new(format!("plant/s{}", i % 7)),
                timestamp_ns: 1_700_000_000_000_000_000 + i,
                value: Value::I64(i),
                quality: Quality::GOOD,
            })
            .collect()
    }

    fn open(dir: &Path) -> (Pipeline, Receiver<SealedEntry>) {
        let (tx, rx) = sync_channel(1_000);
        let pipeline =
            Pipeline::open(settings(dir), SenderKey::from_seed([1; 32]), 1_700_000_000_000_000_000, tx).unwrap();
        (pipeline, rx)
    }

    /// [`open`] with segments of up to 100,000 records and a spool of 1 GiB.
    fn open_large(dir: &Path) -> (Pipeline, Receiver<SealedEntry>) {
        let (tx, rx) = sync_channel(1_000);
        let settings = PipelineSettings { max_records: 100_000, spool_max_bytes: 1 << 30, ..settings(dir) };
        let pipeline = Pipeline::open(settings, SenderKey::from_seed([1; 32]), 1_700_000_000_000_000_000, tx).unwrap();
        (pipeline, rx)
    }

    fn open_on(disk: &FaultyDisk, dir: &Path) -> (Pipeline, Receiver<SealedEntry>) {
        let (tx, rx) = sync_channel(1_000);
        let disk = Arc::new(disk.clone());
        let pipeline =
            Pipeline::open_on(disk, settings(dir), SenderKey::from_seed([1; 32]), 1_700_000_000_000_000_000, tx)
                .unwrap();
        (pipeline, rx)
    }

    fn sealed_values(rx: &Receiver<SealedEntry>) -> Vec<(u64, Vec<i64>)> {
        let trusted = TrustedKeys::single(SenderKey::from_seed([1; 32]).public_key());
        rx.try_iter()
            .map(|entry| {
                let (segment, series) = seal::open_records(&entry.bytes, &trusted).unwrap();
                let mut values: Vec<i64> = series
                    .iter()
                    .flat_map(|s| {
                        s.records().map(|r| match r.value {
                            Value::I64(v) => v,
                            _ => unreachable!(),
                        })
                    })
                    .collect();
                values.sort();
                (segment.header.sequence, values)
            })
            .collect()
    }

    #[test]
    fn segments_end_on_spool_frame_boundaries_and_chain() {
        let dir = tempfile::tempdir().unwrap();
        let (mut pipeline, rx) = open(dir.path());
        for batch in 0..5 {
            pipeline.submit(&mut records(batch * 60, 60), 0).unwrap();
        }
        pipeline.flush(0).unwrap();
        let sealed = sealed_values(&rx);
        assert_eq!(sealed.iter().map(|(_, v)| v.len()).collect::<Vec<_>>(), vec![60, 60, 60, 60, 60]);
        assert_eq!(sealed.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_restart_reseals_exactly_the_unsealed_spool_and_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let head_hash;
        {
            let (mut pipeline, rx) = open(dir.path());
            pipeline.submit(&mut records(0, 100), 0).unwrap(); // sealed at once: max_records
            pipeline.submit(&mut records(100, 30), 0).unwrap(); // accepted, not sealed: then a crash
            assert_eq!(sealed_values(&rx).len(), 1);
            head_hash = pipeline.head_hash();
        }
        let (mut pipeline, rx) = open(dir.path());
        assert_eq!(pipeline.head_hash(), head_hash);
        pipeline.flush(0).unwrap();
        let sealed = sealed_values(&rx);
        assert_eq!(sealed, vec![(2, (100..130).collect())]);
        let trusted = TrustedKeys::single(SenderKey::from_seed([1; 32]).public_key());
        let index = pipeline.index();
        let location = index.read().unwrap().entries[&2].location;
        let content = crate::framed_log::read_at(&pipeline.segment_dir(), location).unwrap();
        let (_, bytes) = split_segment_entry(&content).unwrap();
        assert_eq!(seal::open(bytes, &trusted).unwrap().header.previous_hash, head_hash);
    }

    /// A crash right after the next spool file and the next segment log file were created, before
    /// anything was written to them, leaves both empty; neither may block the restarted sender.
    #[test]
    fn empty_log_files_left_by_a_crash_block_neither_the_spool_nor_the_segment_log() {
        let dir = tempfile::tempdir().unwrap();
        let segment_dir = {
            let (mut pipeline, rx) = open(dir.path());
            pipeline.submit(&mut records(0, 100), 0).unwrap(); // spool frame 1, sealed as segment 1
            pipeline.submit(&mut records(100, 30), 0).unwrap(); // spool frame 2, pending
            assert_eq!(sealed_values(&rx).len(), 1);
            pipeline.segment_dir()
        };
        fs::File::create(crate::framed_log::file_path(&dir.path().join("spool"), 3)).unwrap();
        fs::File::create(crate::framed_log::file_path(&segment_dir, 2)).unwrap();
        let (mut pipeline, rx) = open(dir.path());
        pipeline.submit(&mut records(130, 10), 0).unwrap();
        pipeline.flush(0).unwrap();
        assert_eq!(sealed_values(&rx), vec![(2, (100..140).collect())]);
        drop(pipeline);
        let (mut pipeline, rx) = open(dir.path());
        pipeline.flush(0).unwrap();
        assert!(sealed_values(&rx).is_empty(), "everything was sealed before the restart");
        assert_eq!(pipeline.progress().head_sequence.load(Ordering::Relaxed), 2);
    }

    /// A submit of several spool frames (more records than a segment holds) runs out of space in
    /// its second frame: none of it may stay behind, neither on disk nor in what waits for sealing,
    /// so that the client's retry is spooled and sealed exactly once.
    #[test]
    fn a_submit_of_several_frames_that_runs_out_of_space_part_way_accepts_none_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FaultyDisk::new();
        let (mut pipeline, rx) = open_on(&disk, dir.path());
        pipeline.submit(&mut records(0, 100), 0).unwrap(); // one frame of 100 records, sealed
        let frame_bytes = pipeline.spool.size_bytes();
        disk.limit_space(frame_bytes + frame_bytes / 2); // the next submit's first frame and a half
        let mut batch = records(100, 250); // three frames: 100, 100 and 50 records
        let error = pipeline.submit(&mut batch, 0).unwrap_err().to_string();
        assert!(error.contains("No space left on device"), "{error}");
        assert_eq!(batch.len(), 250, "refused records are handed back untouched");
        assert_eq!(pipeline.progress().records_accepted.load(Ordering::Relaxed), 100);
        disk.free_space();
        pipeline.submit(&mut batch, 0).unwrap();
        pipeline.flush(0).unwrap();
        let expected = vec![
            (1, (0..100).collect()),
            (2, (100..200).collect()),
            (3, (200..300).collect()),
            (4, (300..350).collect()),
        ];
        assert_eq!(sealed_values(&rx), expected);
        drop(pipeline);
        let (mut pipeline, rx) = open(dir.path());
        pipeline.flush(0).unwrap();
        assert!(sealed_values(&rx).is_empty(), "nothing left in the spool to seal again");
        assert_eq!(pipeline.progress().head_sequence.load(Ordering::Relaxed), 4);
    }

    /// A power cut after a new epoch's segment directory was made must not lose the directory:
    /// the restart would take it for a lost segment log and start another epoch.
    #[test]
    fn creating_an_epochs_segment_directory_syncs_each_parent_it_adds_an_entry_to() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FaultyDisk::new();
        let state =
            start_epoch_on(&disk, dir.path(), 1_700_000_000_000_000_000, EpochReason::FirstStart, None).unwrap();
        let operations = disk.operations();
        let created: Vec<&PathBuf> =
            operations.iter().filter(|(what, _)| *what == "create_dir").map(|(_, path)| path).collect();
        assert_eq!(created, vec![&dir.path().join("segments"), &segment_dir(dir.path(), state.epoch)]);
        for (position, (what, path)) in operations.iter().enumerate() {
            if *what == "create_dir" {
                let parent = path.parent().unwrap().to_owned();
                assert!(
                    operations[position + 1..].contains(&("sync_dir", parent.clone())),
                    "{} was created but {} not synced: {operations:?}",
                    path.display(),
                    parent.display()
                );
            }
        }
    }

    /// Sealing fails (the segment log's disk is full) after the records are durable in the spool:
    /// they are accepted (the source must not send them again), and sealed once space is back.
    #[test]
    fn a_seal_that_fails_leaves_the_records_accepted_and_a_later_tick_seals_them() {
        let dir = tempfile::tempdir().unwrap();
        let segment_disk = FaultyDisk::new().only_under(&dir.path().join("segments"));
        let (mut pipeline, rx) = open_on(&segment_disk, dir.path());
        segment_disk.limit_space(20); // not even one segment fits
        pipeline.submit(&mut records(0, 150), 0).expect("durable in the spool, so accepted");
        pipeline.submit(&mut records(150, 50), 0).expect("durable in the spool, so accepted");
        pipeline.tick(SEAL_RETRY_NS).expect("a failed seal is retried at a later tick");
        assert!(sealed_values(&rx).is_empty());
        assert_eq!(pipeline.progress().records_accepted.load(Ordering::Relaxed), 200);
        segment_disk.free_space();
        pipeline.tick(2 * SEAL_RETRY_NS - 1).unwrap(); // not yet: a failed seal waits SEAL_RETRY_NS
        assert!(sealed_values(&rx).is_empty());
        pipeline.tick(2 * SEAL_RETRY_NS).unwrap();
        assert_eq!(sealed_values(&rx), vec![(1, (0..100).collect())]);
        pipeline.flush(2 * SEAL_RETRY_NS).unwrap();
        assert_eq!(sealed_values(&rx), vec![(2, (100..200).collect())]);
        drop(pipeline);
        let (mut pipeline, rx) = open(dir.path());
        pipeline.flush(0).unwrap();
        assert!(sealed_values(&rx).is_empty(), "nothing left in the spool to seal again");
        assert_eq!(pipeline.progress().head_sequence.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_full_spool_refuses_new_records_and_keeps_the_accepted_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = sync_channel(1_000);
        let mut tight = settings(dir.path());
        tight.spool_max_bytes = 1;
        tight.max_unsent_bytes = 1; // the link never drains in this test, so nothing seals twice
        let mut pipeline = Pipeline::open(tight, SenderKey::from_seed([1; 32]), 0, tx).unwrap();
        pipeline.submit(&mut records(0, 10), 0).unwrap();
        let mut refused = records(10, 10);
        let error = pipeline.submit(&mut refused, 0).unwrap_err();
        assert!(matches!(error, SubmitError::SpoolFull { .. }), "{error}");
        assert_eq!(refused.len(), 10, "refused records are handed back untouched");
        pipeline.flush(0).unwrap();
        assert_eq!(sealed_values(&rx), vec![(1, (0..10).collect())]);
    }

    #[test]
    fn a_second_process_cannot_open_the_same_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let (_pipeline, _rx) = open(dir.path());
        let (tx, _rx2) = sync_channel(1);
        let error =
            Pipeline::open(settings(dir.path()), SenderKey::from_seed([1; 32]), 0, tx).err().unwrap().to_string();
        assert!(error.contains("another diode-sender"), "{error}");
    }

    #[test]
    fn invalid_records_are_refused_with_their_position() {
        let dir = tempfile::tempdir().unwrap();
        let (mut pipeline, _rx) = open(dir.path());
        let mut batch = records(0, 3);
        batch[2].value = Value::F64(f64::NAN);
        let error = pipeline.submit(&mut batch, 0).unwrap_err().to_string();
        assert!(error.contains("record 2"), "{error}");
    }

    #[test]
    fn a_lost_segment_log_starts_a_new_epoch_that_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let first_epoch = {
            let (mut pipeline, _rx) = open(dir.path());
            pipeline.submit(&mut records(0, 100), 0).unwrap();
            assert_eq!(pipeline.epoch().reason, EpochReason::FirstStart);
            pipeline.epoch().epoch
        };
        fs::remove_dir_all(dir.path().join("segments")).unwrap();
        let (pipeline, _rx) = open(dir.path());
        assert_eq!(pipeline.epoch().reason, EpochReason::SpoolLost);
        assert!(pipeline.epoch().epoch > first_epoch);
        assert_eq!(pipeline.epoch().previous_epoch, first_epoch);
    }

    /// Seals every due job as the sealing thread does, at `now_ns`.
    fn seal_on_the_sealing_thread(pipeline: &Mutex<Pipeline>, now_ns: i64) {
        seal_due(pipeline, &Encoders::inline(), || now_ns).unwrap();
    }

    #[test]
    fn a_segment_encoded_on_the_sealing_thread_is_the_one_sealing_inline_makes() {
        let (inline_dir, threaded_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut inline, inline_rx) = open(inline_dir.path());
        let (mut threaded, threaded_rx) = open(threaded_dir.path());
        let woken = threaded.attach_sealer();
        for (from, count) in [(0, 40), (40, 40), (80, 70), (150, 100), (250, 3)] {
            inline.submit(&mut records(from, count), 0).unwrap();
            threaded.submit(&mut records(from, count), 0).unwrap();
        }
        assert!(threaded_rx.try_recv().is_err(), "a submit with a sealing thread seals nothing itself");
        assert!(woken.try_recv().is_ok(), "and wakes the sealing thread once a segment's worth is pending");
        let threaded = Mutex::new(threaded);
        seal_on_the_sealing_thread(&threaded, 0);
        inline.flush(1_000).unwrap();
        seal_on_the_sealing_thread(&threaded, 1_000); // the last 3 records, by age
        let inline: Vec<Vec<u8>> = inline_rx.try_iter().map(|entry| entry.bytes.to_vec()).collect();
        let threaded: Vec<Vec<u8>> = threaded_rx.try_iter().map(|entry| entry.bytes.to_vec()).collect();
        assert_eq!(inline.len(), 4, "frames of 40+40, 70, 100 and 3 records make four segments");
        assert_eq!(threaded, inline, "the same bytes, signatures and chain");
    }

    #[test]
    fn frames_out_on_the_sealing_thread_are_neither_taken_again_nor_flushed_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let (mut pipeline, rx) = open(dir.path());
        let _woken = pipeline.attach_sealer();
        pipeline.submit(&mut records(0, 100), 0).unwrap();
        pipeline.submit(&mut records(100, 100), 0).unwrap();
        let first = pipeline.take_seal_job(0).expect("a segment's worth is pending");
        let second = pipeline.take_seal_job(0).expect("and another, after the first job's frames");
        assert!(pipeline.take_seal_job(0).is_none(), "every frame is out");
        pipeline.flush(0).unwrap();
        assert!(rx.try_recv().is_err(), "a flush does not seal frames a job holds");
        pipeline.submit(&mut records(200, 50), 0).unwrap();
        let (first, second) = (first.encode(), second.encode());
        for job in [first, second] {
            let entry = pipeline.finish_seal(job, 0).unwrap();
            pipeline.output.send(entry).unwrap();
        }
        let pipeline = Mutex::new(pipeline);
        seal_on_the_sealing_thread(&pipeline, 0);
        assert_eq!(sealed_values(&rx), vec![(1, (0..100).collect()), (2, (100..200).collect())]);
        assert!(pipeline.lock().unwrap().take_seal_job(999).is_none(), "50 records are not due before max_age");
        seal_on_the_sealing_thread(&pipeline, 1_000);
        assert_eq!(sealed_values(&rx), vec![(3, (200..250).collect())]);
    }

    #[test]
    fn segments_encoded_on_several_threads_are_the_ones_sealing_inline_makes() {
        let (inline_dir, threaded_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut inline, inline_rx) = open(inline_dir.path());
        let (mut threaded, threaded_rx) = open(threaded_dir.path());
        let _woken = threaded.attach_sealer();
        for from in (0..2_000).step_by(50) {
            inline.submit(&mut records(from, 50), 0).unwrap();
            threaded.submit(&mut records(from, 50), 0).unwrap();
        }
        inline.flush(0).unwrap();
        let threaded = Mutex::new(threaded);
        let encoders = Encoders::spawn(3).unwrap();
        seal_due(&threaded, &encoders, || 0).unwrap();
        let inline: Vec<Vec<u8>> = inline_rx.try_iter().map(|entry| entry.bytes.to_vec()).collect();
        let threaded: Vec<Vec<u8>> = threaded_rx.try_iter().map(|entry| entry.bytes.to_vec()).collect();
        assert_eq!(inline.len(), 20);
        assert_eq!(threaded, inline, "the same bytes, signatures and chain, in order");
    }

    /// A pipeline with a sealing thread attached whose segment log is on a disk the test can
    /// fill, holding `segments` frames of 100 records (a segment's worth each), none sealed.
    fn segments_pending_on_a_faulty_disk(dir: &Path, segments: i64) -> (Pipeline, Receiver<SealedEntry>, FaultyDisk) {
        let segment_disk = FaultyDisk::new().only_under(&dir.join("segments"));
        let (mut pipeline, rx) = open_on(&segment_disk, dir);
        drop(pipeline.attach_sealer());
        for from in (0..segments * 100).step_by(100) {
            pipeline.submit(&mut records(from, 100), 0).unwrap();
        }
        (pipeline, rx, segment_disk)
    }

    /// What `segments` frames of 100 records seal into: sequence n holds values (n-1)*100 onwards.
    fn hundreds(segments: i64) -> Vec<(u64, Vec<i64>)> {
        (0..segments).map(|index| (index as u64 + 1, (index * 100..index * 100 + 100).collect())).collect()
    }

    #[test]
    fn a_failed_seal_releases_the_jobs_out_behind_it_and_the_retry_seals_every_record_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (pipeline, rx, segment_disk) = segments_pending_on_a_faulty_disk(dir.path(), 6);
        segment_disk.limit_space(20);
        let pipeline = Mutex::new(pipeline);
        let encoders = Encoders::spawn(2).unwrap();
        seal_due(&pipeline, &encoders, || 0).unwrap();
        assert!(sealed_values(&rx).is_empty(), "the first seal failed, and the jobs behind it were dropped");
        segment_disk.free_space();
        seal_due(&pipeline, &encoders, || SEAL_RETRY_NS).unwrap();
        assert_eq!(sealed_values(&rx), hundreds(6));
    }

    #[test]
    fn encoded_jobs_finished_together_are_written_and_synced_all_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let (mut pipeline, rx, segment_disk) = segments_pending_on_a_faulty_disk(dir.path(), 3);
        let jobs = |pipeline: &mut Pipeline, now_ns: i64| -> Vec<EncodedSeal> {
            std::iter::from_fn(|| pipeline.take_seal_job(now_ns)).map(SealJob::encode).collect()
        };
        let encoded = jobs(&mut pipeline, 0);
        assert_eq!(encoded.len(), 3);
        // Room for the first segment, not for all three.
        segment_disk.limit_space(600);
        let error = pipeline.finish_seals(encoded, 0).expect_err("the three segments do not fit");
        pipeline.seal_failed(&error, 0);
        assert_eq!(pipeline.progress().head_sequence.load(Ordering::Relaxed), 0, "none of them is sealed");
        segment_disk.free_space();
        assert!(jobs(&mut pipeline, 0).is_empty(), "a failed seal holds sealing back");
        let retried = jobs(&mut pipeline, SEAL_RETRY_NS);
        for entry in pipeline.finish_seals(retried, SEAL_RETRY_NS).unwrap() {
            pipeline.output.send(entry).unwrap();
        }
        assert_eq!(sealed_values(&rx), hundreds(3));
    }

    #[test]
    fn a_seal_that_fails_on_the_sealing_thread_is_retried_under_the_same_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let segment_disk = FaultyDisk::new().only_under(&dir.path().join("segments"));
        let (mut pipeline, rx) = open_on(&segment_disk, dir.path());
        let _woken = pipeline.attach_sealer();
        segment_disk.limit_space(20);
        pipeline.submit(&mut records(0, 100), 0).expect("durable in the spool, so accepted");
        let pipeline = Mutex::new(pipeline);
        seal_on_the_sealing_thread(&pipeline, 0);
        assert!(sealed_values(&rx).is_empty());
        segment_disk.free_space();
        assert!(
            pipeline.lock().unwrap().take_seal_job(SEAL_RETRY_NS - 1).is_none(),
            "a failed seal waits SEAL_RETRY_NS"
        );
        seal_on_the_sealing_thread(&pipeline, SEAL_RETRY_NS);
        assert_eq!(sealed_values(&rx), vec![(1, (0..100).collect())]);
    }

    /// Records of large string values (64 KiB each, the most a value may hold, and none alike)
    /// are sealed into segments the receiver accepts, however many records a segment may hold:
    /// a segment is cut by its bytes as well as by its records.
    #[test]
    fn segments_of_large_strings_stay_within_what_a_receiver_decodes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut pipeline, rx) = open_large(dir.path());
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut text = |length: usize| -> String {
            (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from(b'!' + (state % 94) as u8)
                })
                .collect()
        };
        let batches = 24;
        let per_batch = 50;
        for batch in 0..batches {
            let mut records: Vec<Record> = (0..per_batch)
                .map(|i| Record {
                    series: SeriesKey::new(format!("plant/log{}", i % 5)),
                    timestamp_ns: 1_700_000_000_000_000_000 + (batch * per_batch + i) as i64,
                    value: Value::String(text(diode_common::record::MAX_STRING_VALUE_BYTES)),
                    quality: Quality::GOOD,
                })
                .collect();
            pipeline.submit(&mut records, 0).unwrap();
        }
        pipeline.flush(0).unwrap();
        let trusted = TrustedKeys::single(SenderKey::from_seed([1; 32]).public_key());
        let mut records = 0;
        let mut segments = 0;
        for entry in rx.try_iter() {
            let (_, series) = seal::open_records(&entry.bytes, &trusted).unwrap();
            records += series.iter().map(SeriesColumns::len).sum::<usize>();
            segments += 1;
        }
        assert_eq!(records, batches * per_batch);
        assert!(segments > 1, "{segments} segment(s) for {} MiB of strings", records / 16);
    }

    /// Many small frames over the same many series (an HTTP writer's bodies) fill a segment to
    /// max_records: a key repeated in a later frame is counted once in the segment's bound, as the
    /// merged payload holds it once. Counted per frame, these segments stopped at 40,000 records.
    #[test]
    fn frames_repeating_many_series_fill_a_segment_to_max_records() {
        let dir = tempfile::tempdir().unwrap();
        let (mut pipeline, rx) = open_large(dir.path());
        let keys: Vec<SeriesKey> = (0..2_000)
            .map(|i| {
                SeriesKey::with_tags(
                    format!("site/area{}/{}/sensor{i:04}", i % 10, "x".repeat(160)),
                    vec![("unit".into(), "degC".into()), ("loop".into(), "TIC-100".into())],
                )
            })
            .collect();
        for frame in 0..60i64 {
            let mut records: Vec<Record> = keys
                .iter()
                .map(|key| Record {
                    series: key.clone(),
                    timestamp_ns: 1_700_000_000_000_000_000 + frame * 1_000_000_000,
                    value: Value::F64(frame as f64 / 10.0),
                    quality: Quality::GOOD,
                })
                .collect();
            pipeline.submit(&mut records, 0).unwrap();
        }
        pipeline.flush(0).unwrap();
        let trusted = TrustedKeys::single(SenderKey::from_seed([1; 32]).public_key());
        let mut sizes = Vec::new();
        for entry in rx.try_iter() {
            let (_, series) = seal::open_records(&entry.bytes, &trusted).unwrap();
            assert!(codec::decoded_bytes_bound(&series) <= codec::MAX_PAYLOAD_BOUND_BYTES);
            sizes.push(series.iter().map(SeriesColumns::len).sum::<usize>());
        }
        assert_eq!(sizes, vec![100_000, 20_000]);
    }

    /// A segment of one frame holding at least half of max_records is the frame as spooled (no
    /// second encoding); a segment merged from smaller frames is encoded again at the segment's
    /// zstd level with the smallest effort. Both open to the same records.
    #[test]
    fn a_segment_of_one_large_frame_is_the_frame_as_spooled() {
        let dir = tempfile::tempdir().unwrap();
        let (mut pipeline, rx) = open(dir.path());
        let large = records(0, 60);
        pipeline.submit(&mut large.clone(), 0).unwrap();
        pipeline.flush(0).unwrap();
        let small: Vec<Vec<Record>> = (0..3).map(|batch| records(100 + batch * 30, 30)).collect();
        for batch in &small {
            pipeline.submit(&mut batch.clone(), 0).unwrap();
        }
        pipeline.flush(0).unwrap();
        let trusted = TrustedKeys::single(SenderKey::from_seed([1; 32]).public_key());
        let payloads: Vec<Vec<u8>> =
            rx.try_iter().map(|entry| seal::open(&entry.bytes, &trusted).unwrap().payload).collect();
        assert_eq!(payloads.len(), 2);
        let spooled = codec::encode_payload_with(&codec::group_records(&large), SPOOL_ZSTD_LEVEL, Effort::Fast);
        assert_eq!(payloads[0], spooled);
        let frames: Vec<Vec<SeriesColumns>> = small.iter().map(|batch| codec::group_records(batch)).collect();
        let merged = codec::merge_groups(frames.iter().map(Vec::as_slice));
        assert_eq!(payloads[1], codec::encode_payload(&merged, 3));
        assert_eq!(sealed_values_of(&payloads[1]), (100..190).collect::<Vec<i64>>());
    }

    fn sealed_values_of(payload: &[u8]) -> Vec<i64> {
        let mut values: Vec<i64> = codec::decode_payload(payload)
            .unwrap()
            .iter()
            .flat_map(|s| s.records().map(|r| if let Value::I64(v) = r.value { v } else { unreachable!() }))
            .collect();
        values.sort();
        values
    }
}

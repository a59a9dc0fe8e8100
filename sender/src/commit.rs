//! Group commit for the ingest listeners: writes that arrive together share one spool append and
//! one fdatasync, and each is still answered only once its own records are durable.
//!
//! Under `spool.fsync = "always"` an acknowledgement waits for an fdatasync (about 4 ms on the
//! reference disk). Without grouping, collectors writing at once queue on the pipeline lock and
//! pay one sync each, in turn. Here each writer first groups and encodes its own records into
//! spool frames ([`PreparedFrames`], on a blocking thread when the write is large), so concurrent
//! writers do that on every core; then one thread owns the committing: it takes the first waiting
//! write, locks the pipeline, adds every write that queued meanwhile (bounded), and hands their
//! frames to [`Pipeline::submit_prepared`] as one batch, whose single sync makes all of them
//! durable before any is answered. A lone writer sees no difference. When the committing thread
//! also grouped and encoded every write, it bounded many writers on a fast disk; preparing on the
//! writers' threads raised four and eight concurrent 5,000-line writers from 2.0-3.1 to 3.0-3.7 M
//! points/s on two cores (`sender/benches/ingest.rs`, README Figures).
//!
//! A group is answered with its submit's outcome: accepted once durable in the spool (even when
//! sealing the records then fails: they are sealed later), or refused whole when the spool could
//! not be written, each write getting its own records back untouched.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use diode_common::codec::Grouper;
use diode_common::record::Record;
use tokio::sync::{mpsc, oneshot};

use crate::clock::now_ns;
use crate::pipeline::{Pipeline, PreparedFrames, SubmitError};

/// Writes waiting for the committer; a full queue makes writers wait (backpressure).
const MAX_QUEUED_WRITES: usize = 256;
/// Records one group may gather before it is committed (the first write is always taken whole).
pub const MAX_GROUP_RECORDS: usize = 500_000;
/// Writes of at least this many records are prepared on a blocking thread, not on the async
/// worker that called [`Committer::submit`] (about 0.1 µs per record).
const PREPARE_OFF_WORKER_RECORDS: usize = 1_000;

/// What a write is answered: done, or the error and its records back, untouched, for a retry.
pub type CommitResult = Result<(), (SubmitError, Vec<Record>)>;

struct Write {
    prepared: PreparedFrames,
    /// Answered with the write's frames when it is refused, for its records to be handed back.
    reply: oneshot::Sender<Result<(), (SubmitError, PreparedFrames)>>,
}

/// How much grouping happened, for tests and figures.
#[derive(Debug, Default)]
pub struct CommitCounters {
    /// Writes (batches from sources) committed.
    pub writes: AtomicU64,
    /// Spool appends they were grouped into: `writes / groups` is the grouping achieved.
    pub groups: AtomicU64,
}

/// The handle writers use; cheap to clone. The committing thread ends when every handle is gone.
#[derive(Clone)]
pub struct Committer {
    queue: mpsc::Sender<Write>,
    counters: Arc<CommitCounters>,
    /// The pipeline's records per frame.
    max_records: usize,
}

impl Committer {
    /// Starts the committing thread for `pipeline`.
    pub fn start(pipeline: Arc<Mutex<Pipeline>>) -> io::Result<Committer> {
        Self::start_with_group_limit(pipeline, MAX_GROUP_RECORDS)
    }

    /// Groups stop gathering at `max_group_records`; 0 commits every write on its own (one sync
    /// each, as without group commit: what the ingest bench compares against).
    pub fn start_with_group_limit(pipeline: Arc<Mutex<Pipeline>>, max_group_records: usize) -> io::Result<Committer> {
        let (queue, waiting) = mpsc::channel(MAX_QUEUED_WRITES);
        let counters = Arc::new(CommitCounters::default());
        let thread_counters = Arc::clone(&counters);
        let max_records = pipeline.lock().expect("pipeline lock").max_records();
        std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || run(&pipeline, waiting, max_group_records, &thread_counters))?;
        Ok(Committer { queue, counters, max_records })
    }

    /// Makes `records` durable in the spool, together with whatever else is being written.
    /// `Ok` means durable; on `Err` nothing of them was accepted and they come back (untouched
    /// when a record is invalid; grouped by series when the spool refused them, which is all a
    /// retry needs). A write of many records is grouped, encoded and dropped on a blocking
    /// thread, not on the async worker nor on the committing thread.
    pub async fn submit(&self, records: Vec<Record>) -> CommitResult {
        let max_records = self.max_records;
        let large = records.len() >= PREPARE_OFF_WORKER_RECORDS;
        let prepare = move || match PreparedFrames::prepare(&records, max_records) {
            Ok(prepared) => Ok(prepared),
            Err(error) => Err((error, records)),
        };
        let prepared = if large {
            match tokio::task::spawn_blocking(prepare).await {
                Ok(prepared) => prepared,
                // The task panicked (a bug) and took the records with it: refused, nothing stored.
                Err(_) => return Err((SubmitError::Stopped, Vec::new())),
            }
        } else {
            prepare()
        };
        self.submit_prepared(prepared?).await
    }

    /// Groups and encodes `records` for [`submit_prepared`](Self::submit_prepared) on the calling
    /// thread; refuses an invalid record.
    pub fn prepare(&self, records: &[Record]) -> Result<PreparedFrames, SubmitError> {
        PreparedFrames::prepare(records, self.max_records)
    }

    /// An empty grouper making this pipeline's spool frames, for a source that groups its records
    /// as it parses them ([`prepare_grouped`](Self::prepare_grouped)).
    pub fn grouper(&self) -> Grouper {
        Grouper::new(self.max_records)
    }

    /// [`prepare`](Self::prepare) of what a source pushed into [`grouper`](Self::grouper)'s
    /// grouper; refuses an invalid record.
    pub fn prepare_grouped(&self, grouper: Grouper) -> Result<PreparedFrames, SubmitError> {
        PreparedFrames::from_groups(grouper.finish())
    }

    /// [`submit`](Self::submit) of a write already prepared by [`prepare`](Self::prepare); on
    /// `Err` its records come back, grouped by series.
    pub async fn submit_prepared(&self, prepared: PreparedFrames) -> CommitResult {
        let (reply, answer) = oneshot::channel();
        if let Err(refused) = self.queue.send(Write { prepared, reply }).await {
            return Err((SubmitError::Stopped, refused.0.prepared.into_records()));
        }
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err((error, refused))) => Err((error, refused.into_records())),
            Err(_) => Err((SubmitError::Stopped, Vec::new())),
        }
    }

    /// The committer's counters, shared with metrics.
    pub fn counters(&self) -> &Arc<CommitCounters> {
        &self.counters
    }

    /// Writes waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

fn run(
    pipeline: &Mutex<Pipeline>,
    mut waiting: mpsc::Receiver<Write>,
    max_group_records: usize,
    counters: &CommitCounters,
) {
    while let Some(first) = waiting.blocking_recv() {
        let mut pipeline = pipeline.lock().expect("pipeline lock");
        // Writes that queued while the lock (or the previous group's sync) was busy join this group.
        let mut records = first.prepared.records();
        let mut group = vec![first];
        while records < max_group_records {
            match waiting.try_recv() {
                Ok(write) => {
                    records += write.prepared.records();
                    group.push(write);
                }
                Err(_) => break,
            }
        }
        counters.writes.fetch_add(group.len() as u64, Ordering::Relaxed);
        counters.groups.fetch_add(1, Ordering::Relaxed);
        commit(&mut pipeline, group);
    }
}

/// One `submit_prepared` for the whole group; every write is answered with the group's outcome,
/// a refused one with its own frames back. (Every write was checked when it was prepared, so a
/// group is never refused for one write's record.)
fn commit(pipeline: &mut Pipeline, group: Vec<Write>) {
    let (mut writes, replies): (Vec<PreparedFrames>, Vec<_>) =
        group.into_iter().map(|write| (write.prepared, write.reply)).unzip();
    match pipeline.submit_prepared(&mut writes, now_ns()) {
        Ok(()) => {
            for reply in replies {
                let _ = reply.send(Ok(()));
            }
        }
        Err(error) => {
            for (write, reply) in writes.into_iter().zip(replies) {
                let _ = reply.send(Err((error.clone(), write)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FsyncPolicy;
    use crate::framed_log::faults::FaultyDisk;
    use crate::framed_log::{Disk, RealDisk};
    use crate::pipeline::{PipelineSettings, SealedEntry};
    use diode_common::keys::SenderKey;
    use diode_common::record::{Quality, SeriesKey, Value};
    use std::path::Path;
    use std::sync::mpsc::Receiver;
    use std::time::{Duration, Instant};

    struct Fixture {
        _dir: tempfile::TempDir,
        pipeline: Arc<Mutex<Pipeline>>,
        committer: Committer,
        sealed: Receiver<SealedEntry>,
    }

    fn fixture(spool_max_bytes: u64) -> Fixture {
        fixture_on(spool_max_bytes, 10_000, |_| Arc::new(RealDisk))
    }

    /// A fixture whose spool and segment log write through the disk `disk` makes for its data_dir.
    fn fixture_on(spool_max_bytes: u64, max_records: usize, disk: impl FnOnce(&Path) -> Arc<dyn Disk>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let disk = disk(dir.path());
        let settings = PipelineSettings {
            sender_id: 1,
            data_dir: dir.path().to_owned(),
            max_records,
            max_age_ns: 1_000_000_000,
            zstd_level: 3,
            spool_max_bytes,
            fsync: FsyncPolicy::Always,
            max_unsent_bytes: 1 << 30,
            retention_bytes: 1 << 30,
        };
        let (tx, sealed) = std::sync::mpsc::sync_channel(1_000);
        let pipeline = Pipeline::open_on(disk, settings, SenderKey::from_seed([4; 32]), 0, tx).unwrap();
        let pipeline = Arc::new(Mutex::new(pipeline));
        let committer = Committer::start(Arc::clone(&pipeline)).unwrap();
        Fixture { _dir: dir, pipeline, committer, sealed }
    }

    /// `count` records of write `write`, each at its own timestamp.
    fn records(write: i64, count: i64) -> Vec<Record> {
        (0..count)
            .map(|i| Record {
                series: SeriesKey::new(format!("plant/w{write}")),
                timestamp_ns: 1_767_225_600_000_000_000 + i,
                value: Value::I64(i),
                quality: Quality::GOOD,
            })
            .collect()
    }

    /// Submits every write while the pipeline is busy (its lock held), so they queue up as they
    /// would behind a sync, then lets the committer go and collects the answers.
    async fn submit_while_busy(fixture: &Fixture, writes: Vec<Vec<Record>>) -> Vec<CommitResult> {
        let busy = fixture.pipeline.lock().unwrap();
        // A write with an invalid record is refused when it is prepared and never queues.
        let count = writes.iter().filter(|records| records.iter().all(|record| record.validate().is_ok())).count();
        let tasks: Vec<_> = writes
            .into_iter()
            .map(|records| {
                let committer = fixture.committer.clone();
                tokio::spawn(async move { committer.submit(records).await })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        // The committer holds the first write while it waits for the lock; the rest queue. The
        // writers run on the runtime's workers, so this thread may block while it holds the lock.
        while fixture.committer.queued() < count - 1 {
            assert!(Instant::now() < deadline, "the writes did not queue");
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(busy);
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        answers
    }

    fn accepted(fixture: &Fixture) -> u64 {
        let pipeline = fixture.pipeline.lock().unwrap();
        pipeline.progress().records_accepted.load(Ordering::Relaxed)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_that_queue_while_the_spool_is_busy_share_one_commit() {
        let fixture = fixture(1 << 30);
        let writes: Vec<Vec<Record>> = (0..8).map(|write| records(write, 100 + write)).collect();
        let answers = submit_while_busy(&fixture, writes).await;
        assert!(answers.iter().all(Result::is_ok));
        let counters = fixture.committer.counters();
        assert_eq!(counters.writes.load(Ordering::Relaxed), 8);
        // One group, or two if the last write reached the queue just after the committer looked.
        assert!(counters.groups.load(Ordering::Relaxed) <= 2, "{counters:?}");
        assert_eq!(accepted(&fixture), (0..8).map(|write| 100 + write).sum::<i64>() as u64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_grouping_every_write_is_its_own_commit() {
        let mut fixture = fixture(1 << 30);
        fixture.committer = Committer::start_with_group_limit(Arc::clone(&fixture.pipeline), 0).unwrap();
        let writes: Vec<Vec<Record>> = (0..4).map(|write| records(write, 10)).collect();
        let answers = submit_while_busy(&fixture, writes).await;
        assert!(answers.iter().all(Result::is_ok));
        assert_eq!(fixture.committer.counters().groups.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn a_lone_write_is_committed_at_once() {
        let fixture = fixture(1 << 30);
        fixture.committer.submit(records(0, 10)).await.unwrap();
        assert_eq!(accepted(&fixture), 10);
        assert_eq!(fixture.committer.counters().groups.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_spool_refuses_every_write_of_the_group_with_its_own_records() {
        let fixture = fixture(1);
        fixture.committer.submit(records(0, 5)).await.unwrap(); // fills the one-byte spool
        // Each write interleaves two series.
        let writes: Vec<Vec<Record>> = (1..4)
            .map(|write| {
                let (mut a, b) = (records(write, 10 * write), records(write + 10, 10 * write));
                a.extend(b);
                a.sort_by_key(|record| record.timestamp_ns);
                a
            })
            .collect();
        let answers = submit_while_busy(&fixture, writes.clone()).await;
        let by_series = |mut records: Vec<Record>| {
            records.sort_by(|a, b| (&a.series, a.timestamp_ns).cmp(&(&b.series, b.timestamp_ns)));
            records
        };
        for (answer, sent) in answers.into_iter().zip(writes) {
            let (error, returned) = answer.unwrap_err();
            assert!(matches!(error, SubmitError::SpoolFull { .. }), "{error}");
            // Grouped by series (as they were prepared), every one of them, to their own writer.
            assert_eq!(by_series(returned), by_series(sent), "refused records come back to their own writer");
        }
        assert_eq!(accepted(&fixture), 5);
    }

    /// The group's records are durable in the spool, then sealing them fails (the segment log's
    /// disk is full). Every write is answered accepted (a retry would duplicate it), the committer
    /// keeps serving, and the records are sealed, each once, when space is back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_seal_that_fails_inside_a_group_commit_answers_the_durable_writes_accepted_and_serves_on() {
        let disk = FaultyDisk::new();
        disk.limit_space(0);
        let fixture = fixture_on(1 << 30, 50, |data_dir| Arc::new(disk.only_under(&data_dir.join("segments"))));
        let writes: Vec<Vec<Record>> = (0..4).map(|write| records(write, 30)).collect();
        let answers = submit_while_busy(&fixture, writes).await;
        for (write, answer) in answers.into_iter().enumerate() {
            let answer = answer.map_err(|(error, _)| error.to_string());
            assert!(answer.is_ok(), "write {write} is durable but was answered {answer:?}");
        }
        assert!(!fixture.pipeline.is_poisoned());
        fixture
            .committer
            .submit(records(4, 30))
            .await
            .map_err(|(e, _)| e.to_string())
            .expect("the committer serves on");
        assert_eq!(accepted(&fixture), 150);
        disk.free_space();
        fixture.pipeline.lock().unwrap().flush(now_ns()).unwrap();
        let trusted = diode_common::keys::TrustedKeys::single(SenderKey::from_seed([4; 32]).public_key());
        let mut sealed: Vec<(std::sync::Arc<str>, i64)> = fixture
            .sealed
            .try_iter()
            .flat_map(|entry| {
                let (_, series) = diode_common::seal::open_records(&entry.bytes, &trusted).unwrap();
                series.iter().flat_map(|s| s.records()).map(|r| (r.series.name, r.timestamp_ns)).collect::<Vec<_>>()
            })
            .collect();
        sealed.sort();
        let mut expected: Vec<(std::sync::Arc<str>, i64)> =
            (0..5).flat_map(|write| records(write, 30)).map(|r| (r.series.name, r.timestamp_ns)).collect();
        expected.sort();
        assert_eq!(sealed, expected, "every record sealed once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invalid_write_is_refused_alone_and_the_rest_of_its_group_is_committed() {
        // Refused when it is prepared, untouched, before it could join a group.
        let fixture = fixture(1 << 30);
        let mut writes: Vec<Vec<Record>> = (0..4).map(|write| records(write, 20)).collect();
        writes[2][7].value = Value::F64(f64::NAN);
        let answers = submit_while_busy(&fixture, writes).await;
        for (write, answer) in answers.into_iter().enumerate() {
            match (write, answer) {
                (2, Err((SubmitError::Invalid { index: 7, .. }, returned))) => assert_eq!(returned.len(), 20),
                (2, other) => panic!("the invalid write was answered {:?}", other.map_err(|(e, _)| e.to_string())),
                (_, answer) => assert!(answer.is_ok(), "write {write} was refused"),
            }
        }
        assert_eq!(accepted(&fixture), 60);
    }
}

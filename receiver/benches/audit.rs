//! `audit verify` throughput on a replica of millions of points from the plant simulator, with an
//! extrapolation to the target of 100 million points verified in under two minutes.
//!
//! Run with `cargo bench --workspace --bench audit`. Settings (environment):
//! `DIODE_AUDIT_BENCH_POINTS` (default 5,000,000), `DIODE_AUDIT_BENCH_RATE_HZ` (mean samples per
//! second per series, default 1.0 as the simulator's default plant; 10.0 makes every hour hold
//! 36 million points, which the audit processes in several passes), `DIODE_AUDIT_BENCH_THREADS`
//! (default: every core), `DIODE_AUDIT_BENCH_BUDGET_POINTS` (the audit's memory budget, default
//! as `audit verify`), `DIODE_AUDIT_BENCH_REPLICA` (a directory: the replica is built there and
//! kept, and a replica already there is audited as it is, so that two builds of the audit can be
//! compared on one replica; its points and rate are then whatever it was built with),
//! `DIODE_AUDIT_BENCH_LAYOUT` (`harness`, the default: 50,000-point segments; `live`: a segment
//! every simulated second, as a plant running live seals them, so about one point per series per
//! segment, with every closed hour merged as the receiver merges them, then compacted). Prints
//! plain figures; building the replica is not timed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use diode_common::codec::group_records;
use diode_common::keys::{SenderKey, TrustedKeys};
use diode_common::plant::{PlantConfig, PlantSimulator};
use diode_common::record::{Record, SeriesKey};
use diode_common::seal::{self, ChainPosition, GENESIS_HASH, SegmentHash};
use diode_receiver::audit::verify::{VerifyOptions, verify_replica};
use diode_replica::{Replica, SegmentKey};

#[path = "../../benches/support/measure.rs"]
mod measure;

/// This process's CPU seconds, all threads (Linux `/proc`).
fn cpu_seconds() -> f64 {
    measure::process_cpu_seconds().expect("the process's CPU clock (/proc/self/stat)")
}

/// The allocator the appliance's binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const POINTS_PER_SEGMENT: usize = 50_000;
const SERIES: usize = 1_000;
const TARGET_POINTS: f64 = 100_000_000.0;

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|text| text.parse().ok()).unwrap_or(default)
}

/// How the bench's replica is written.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// [`POINTS_PER_SEGMENT`]-point segments, as the harness's plant running flat out seals them.
    Harness,
    /// A segment every simulated second (about one point per series), every closed hour merged.
    Live,
}

/// The bench's replica as it is written: one chain of segments, each sealed, decoded and applied
/// as the receiver applies it.
struct Writer<'k> {
    replica: Replica,
    key: &'k SenderKey,
    segments: u64,
    previous_hash: SegmentHash,
}

impl Writer<'_> {
    /// Seals `records` as the chain's next segment at `clock_ns` and applies it.
    fn append(&mut self, records: &[Record], clock_ns: i64) {
        self.segments += 1;
        let position =
            ChainPosition { sender_id: 1, epoch: 1, sequence: self.segments, previous_hash: self.previous_hash };
        let segment = seal::seal(position, &group_records(records), 3, clock_ns, self.key);
        self.previous_hash = segment.hash();
        let series = seal::decode_verified(&segment).expect("decode");
        self.replica.apply(&segment, &series, clock_ns).expect("apply");
    }
}

/// Builds a replica of about `points` points from a simulated plant, in one chain; returns the
/// segments and points written and the seconds it took.
fn build(path: &std::path::Path, points: usize, rate_hz: f64, layout: Layout, key: &SenderKey) -> (u64, u64, f64) {
    let config = PlantConfig { series_count: SERIES, base_rate_hz: rate_hz, ..PlantConfig::default() };
    let mut clock_ns = config.start_ns;
    let mut plant = PlantSimulator::new(config);
    let replica = Replica::open(path).expect("open replica");
    let mut writer = Writer { replica, key, segments: 0, previous_hash: GENESIS_HASH };
    let started = Instant::now();
    let mut records: Vec<Record> = Vec::new();
    let mut written = 0u64;
    match layout {
        Layout::Harness => {
            for _ in 0..points.div_ceil(POINTS_PER_SEGMENT) {
                while records.len() < POINTS_PER_SEGMENT {
                    clock_ns += 10_000_000_000;
                    plant.generate_until(clock_ns, &mut records);
                }
                let segment: Vec<Record> = records.drain(..POINTS_PER_SEGMENT).collect();
                writer.append(&segment, clock_ns);
                written += POINTS_PER_SEGMENT as u64;
            }
            writer.replica.flush().expect("flush");
        }
        // A segment of whatever the plant sampled in each simulated second, then every closed
        // hour merged (the receiver merges each an hour after it closes) and the replica
        // compacted.
        Layout::Live => {
            while written < points as u64 {
                clock_ns += 1_000_000_000;
                records.clear();
                plant.generate_until(clock_ns, &mut records);
                if !records.is_empty() {
                    writer.append(&records, clock_ns);
                    written += records.len() as u64;
                }
            }
            let replica = &mut writer.replica;
            // Every hour closed: merged as the receiver does once no segment has written into it
            // lately.
            let later_ns = clock_ns + 3_600_000_000_000;
            while replica.merge_closed_buckets(1_000_000, later_ns, 0).expect("merge").buckets_merged > 0 {}
            // What RocksDB's own compactions reach on a receiver that has run for a while: the
            // chunks the merges replaced gone from the files, not only marked deleted.
            replica.compact().expect("compact");
            replica.close().expect("close");
        }
    }
    (writer.segments, written, started.elapsed().as_secs_f64())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful: run small then.
    let quick = !std::env::args().any(|argument| argument == "--bench");
    let points: usize = if quick { 200_000 } else { setting("DIODE_AUDIT_BENCH_POINTS", 5_000_000) };
    let rate_hz: f64 = setting("DIODE_AUDIT_BENCH_RATE_HZ", 1.0);
    let defaults = VerifyOptions::default();
    let threads: usize = setting("DIODE_AUDIT_BENCH_THREADS", defaults.threads);
    let memory_budget_points: u64 = setting("DIODE_AUDIT_BENCH_BUDGET_POINTS", defaults.memory_budget_points);
    let layout = match std::env::var("DIODE_AUDIT_BENCH_LAYOUT").as_deref() {
        Err(_) | Ok("harness") => Layout::Harness,
        Ok("live") => Layout::Live,
        Ok(other) => panic!("DIODE_AUDIT_BENCH_LAYOUT is harness or live, not {other:?}"),
    };

    let temporary = tempfile::tempdir().expect("temp dir");
    let kept = std::env::var_os("DIODE_AUDIT_BENCH_REPLICA").map(std::path::PathBuf::from);
    let directory = kept.as_deref().unwrap_or(temporary.path());
    let key = SenderKey::from_seed([7u8; 32]);
    let (segments, points, build_seconds) = if directory.join("CURRENT").exists() {
        let replica = Replica::open_read_only(directory).expect("open the kept replica");
        println!("reusing the replica in {}", directory.display());
        let counters = replica.counters();
        (counters.segments_applied, counters.points_applied, 0.0)
    } else {
        build(directory, points, rate_hz, layout, &key)
    };
    let size_bytes: u64 = std::fs::read_dir(directory)
        .expect("replica dir")
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|metadata| metadata.len())
        .sum();
    println!(
        "replica: {points} points in {segments} segments of {:.0} on average, {SERIES} series at {rate_hz} Hz \
         mean, {:.0} MiB on disk, built in {build_seconds:.1} s (not timed below)",
        points as f64 / segments as f64,
        size_bytes as f64 / (1024.0 * 1024.0)
    );

    let replica = Replica::open_read_only(directory).expect("open read-only");
    let options = VerifyOptions { threads, memory_budget_points, ..defaults };
    let cpu_before = cpu_seconds();
    let report = verify_replica(&replica, &TrustedKeys::single(key.public_key()), &options).expect("verify");
    let audit_cpu = cpu_seconds() - cpu_before;
    assert!(report.is_clean(), "{}", report.summary_text());
    assert_eq!(report.points.matched, points);
    let seconds = report.elapsed_seconds;
    let points_per_second = points as f64 / seconds;
    println!(
        "audit verify ({threads} threads, budget {} points): {seconds:.2} s ({audit_cpu:.2} s of CPU) = {:.0} segments/s, \
         {points_per_second:.0} points/s (walk of the audit log {:.2} s; point comparison {:.2} s in {} windows, {} segment decodes)",
        options.memory_budget_points,
        segments as f64 / seconds,
        report.walk_seconds,
        seconds - report.walk_seconds,
        report.points.windows,
        report.points.segment_decodes
    );
    println!(
        "extrapolated: 100 million points in {:.0} s (target: under 120 s) on this machine",
        TARGET_POINTS / points_per_second
    );
    decoding_alone(&replica, &TrustedKeys::single(key.public_key()), threads, points, (seconds, audit_cpu));
}

/// What the audit cannot do without: every segment read, verified and decoded, and every stored
/// chunk read and decoded, on the same threads, with nothing compared. Its rate is the ceiling of
/// any audit that checks every point against its signed segment and every chunk stored.
fn decoding_alone(replica: &Replica, trusted: &TrustedKeys, threads: usize, points: u64, audit: (f64, f64)) {
    let segment_keys: Vec<_> = replica
        .segments(SegmentKey { sender_id: 0, epoch: 0, sequence: 0 })
        .map(|stored| stored.expect("read").key)
        .collect();
    let (started, cpu_before) = (Instant::now(), cpu_seconds());
    let segment_rows = on_threads(&segment_keys, threads, |key| {
        let stored = replica.stored_segment(*key).expect("read").expect("stored");
        let segment = seal::parse(&stored.sealed).expect("parse");
        seal::verify(&segment, trusted).expect("verify");
        seal::decode_verified(&segment).expect("decode").iter().map(|columns| columns.len() as u64).sum()
    });
    let segments_seconds = started.elapsed().as_secs_f64();
    let series: Vec<u32> = replica.series_list().iter().map(|info| info.id).collect();
    let started = Instant::now();
    let chunk_rows = on_threads(&series, threads, |&series_id| {
        replica
            .series_chunks(series_id, i64::MIN, i64::MAX)
            .map(|chunk| chunk.expect("read").value.into_columns(SeriesKey::new("")).expect("decode").len() as u64)
            .sum()
    });
    let chunks_seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    assert_eq!((segment_rows, chunk_rows), (points, points));
    let both = segments_seconds + chunks_seconds;
    println!(
        "decoding alone ({threads} threads): segments read, verified and decoded {segments_seconds:.2} s, chunks read \
         and decoded {chunks_seconds:.2} s ({cpu:.2} s of CPU in all): {:.0} points/s, the ceiling of an audit \
         that compares nothing; the audit above took {:.1} times as long and {:.1} times the CPU",
        points as f64 / both,
        audit.0 / both,
        audit.1 / cpu
    );
}

/// The sum of `work` over `items` on `threads` threads, each taking the next item as it is done.
fn on_threads<T: Sync>(items: &[T], threads: usize, work: impl Fn(&T) -> u64 + Sync) -> u64 {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut sum = 0;
                    while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
                        sum += work(item);
                    }
                    sum
                })
            })
            .collect();
        workers.into_iter().map(|worker| worker.join().expect("a worker panicked")).sum()
    })
}

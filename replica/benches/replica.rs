//! Replica throughput: applying 50,000-point segments from the plant simulator (1,000 series), and
//! scanning one series back.
//!
//! Run with `cargo bench --workspace --bench replica`. Besides criterion's figures it prints a
//! plain summary (points/s applied, with and without decoding the payload; points/s scanned) so
//! the README's numbers can be re-measured by anyone.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use diode_common::codec::{SeriesColumns, group_records};
use diode_common::keys::SenderKey;
use diode_common::plant::{PlantConfig, PlantSimulator};
use diode_common::record::Record;
use diode_common::seal::{self, ChainPosition, GENESIS_HASH, SealedSegment};

#[path = "../../benches/support/measure.rs"]
mod measure;

use diode_replica::{ApplyOutcome, Replica};
use measure::process_cpu_seconds;

/// The allocator the receiver's binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const POINTS_PER_SEGMENT: usize = 50_000;
/// Series of the plant in the criterion benchmarks.
const SERIES: usize = 1_000;

/// Seals consecutive 50,000-point segments of one simulated plant.
struct SegmentSource {
    plant: PlantSimulator,
    key: SenderKey,
    pending: Vec<Record>,
    next_sequence: u64,
    previous_hash: [u8; 32],
    clock_ns: i64,
}

impl SegmentSource {
    fn new(series_count: usize) -> SegmentSource {
        let config = PlantConfig { series_count, ..PlantConfig::default() };
        let clock_ns = config.start_ns;
        SegmentSource {
            plant: PlantSimulator::new(config),
            key: SenderKey::from_seed([7u8; 32]),
            pending: Vec::new(),
            next_sequence: 1,
            previous_hash: GENESIS_HASH,
            clock_ns,
        }
    }

    fn next_segment(&mut self) -> (SealedSegment, Vec<SeriesColumns>) {
        while self.pending.len() < POINTS_PER_SEGMENT {
            self.clock_ns += 10_000_000_000;
            self.plant.generate_until(self.clock_ns, &mut self.pending);
        }
        let records: Vec<Record> = self.pending.drain(..POINTS_PER_SEGMENT).collect();
        let series = group_records(&records);
        let position =
            ChainPosition { sender_id: 1, epoch: 1, sequence: self.next_sequence, previous_hash: self.previous_hash };
        let segment = seal::seal(position, &series, 3, self.clock_ns, &self.key);
        self.next_sequence += 1;
        self.previous_hash = segment.hash();
        (segment, series)
    }
}

fn apply(replica: &mut Replica, segment: &SealedSegment, series: &[SeriesColumns]) {
    let outcome = replica.apply(segment, series, segment.header.sealed_at_ns).expect("apply");
    assert!(matches!(outcome, ApplyOutcome::Applied { .. }));
}

/// Scans all of one series, decoding every point; returns how many.
fn scan_everything(replica: &Replica, series_id: u32) -> usize {
    replica.scan(series_id, i64::MIN, i64::MAX).fold(0, |count, point| {
        black_box(point.expect("scan"));
        count + 1
    })
}

/// Wall and CPU seconds of `work`.
fn timed(work: impl FnOnce()) -> (f64, Option<f64>) {
    let (started, cpu_before) = (Instant::now(), process_cpu_seconds());
    work();
    let cpu = process_cpu_seconds().zip(cpu_before).map(|(after, before)| after - before);
    (started.elapsed().as_secs_f64(), cpu)
}

fn rate(points: f64, (wall, cpu): (f64, Option<f64>)) -> String {
    let per_cpu = cpu.filter(|c| *c > 0.0).map_or("n/a".to_owned(), |c| format!("{:.0}", points / c));
    format!("{:.0} points/s wall, {per_cpu} points per CPU-second", points / wall)
}

/// Plain figures, printed once: apply (pre-decoded), decode + apply, and scans of the busiest series.
fn print_figures(series_count: usize) {
    const APPLIED: usize = 60;
    const DECODED_AND_APPLIED: usize = 60;
    const SCANS: usize = 20;
    let directory = tempfile::tempdir().expect("temp dir");
    let mut replica = Replica::open(directory.path()).expect("open replica");
    let mut source = SegmentSource::new(series_count);
    let segments: Vec<(SealedSegment, Vec<SeriesColumns>)> =
        (0..APPLIED + DECODED_AND_APPLIED).map(|_| source.next_segment()).collect();
    let (first, rest) = segments.split_at(APPLIED);

    let apply_time = timed(|| {
        for (segment, series) in first {
            apply(&mut replica, segment, series);
        }
    });
    // Alternately, ten segments at a time: decoded and every chunk encoded from the columns, or
    // decoded with the payload's own chunks, which apply stores as they are.
    let (mut decode_apply_time, mut with_chunks_time) = ((0.0, Some(0.0)), (0.0, Some(0.0)));
    let add = |total: &mut (f64, Option<f64>), (wall, cpu): (f64, Option<f64>)| {
        total.0 += wall;
        total.1 = total.1.zip(cpu).map(|(a, b)| a + b);
    };
    for (round, segments) in rest.chunks(10).enumerate() {
        if round % 2 == 0 {
            add(
                &mut decode_apply_time,
                timed(|| {
                    for (segment, _) in segments {
                        let series = seal::decode_verified(segment).expect("decode");
                        apply(&mut replica, segment, &series);
                    }
                }),
            );
        } else {
            add(
                &mut with_chunks_time,
                timed(|| {
                    for (segment, _) in segments {
                        let decoded = seal::decode_verified_with_chunks(segment).expect("decode");
                        let outcome = replica.apply_decoded(segment, &decoded, segment.header.sealed_at_ns);
                        assert!(matches!(outcome.expect("apply"), ApplyOutcome::Applied { .. }));
                    }
                }),
            );
        }
    }
    let flush_time = timed(|| replica.flush().expect("flush"));

    let busiest = replica.series_list().into_iter().max_by_key(|info| info.point_count).expect("series");
    let mut scanned = 0;
    let scan_time = timed(|| {
        for _ in 0..SCANS {
            scanned = scan_everything(&replica, busiest.id);
        }
    });

    println!(
        "replica figures, {series_count} series, 50k-point segments (shared 2-core machine):\n  \
         apply: {} ({:.1} ms wall per segment)\n  decode+apply: {}\n  \
         decode with the payload's chunks+apply: {}\n  flush: {:.2} s\n  \
         scan of {} ({scanned} points): {}",
        rate((APPLIED * POINTS_PER_SEGMENT) as f64, apply_time),
        apply_time.0 * 1_000.0 / APPLIED as f64,
        rate((DECODED_AND_APPLIED / 2 * POINTS_PER_SEGMENT) as f64, decode_apply_time),
        rate((DECODED_AND_APPLIED / 2 * POINTS_PER_SEGMENT) as f64, with_chunks_time),
        flush_time.0,
        busiest.key,
        rate((SCANS * scanned) as f64, scan_time),
    );
}

fn bench_apply(c: &mut Criterion) {
    print_figures(1_000);
    print_figures(10_000);
    let directory = tempfile::tempdir().expect("temp dir");
    let mut replica = Replica::open(directory.path()).expect("open replica");
    let mut source = SegmentSource::new(SERIES);
    let mut group = c.benchmark_group("replica");
    group.sample_size(10).measurement_time(Duration::from_secs(10)).warm_up_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(POINTS_PER_SEGMENT as u64));
    group.bench_function("apply_50k_point_segment_1k_series", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut measured = Duration::ZERO;
            for _ in 0..iterations {
                // Only the apply is timed: simulating and sealing are the sender's work.
                let (segment, series) = source.next_segment();
                let started = Instant::now();
                apply(&mut replica, &segment, &series);
                measured += started.elapsed();
            }
            measured
        })
    });

    // The apply benchmark filled the replica, unless a filter skipped it.
    while replica.counters().segments_applied < 40 {
        let (segment, series) = source.next_segment();
        apply(&mut replica, &segment, &series);
    }
    let busiest = replica.series_list().into_iter().max_by_key(|info| info.point_count).expect("series");
    let scanned = replica.scan(busiest.id, i64::MIN, i64::MAX).count() as u64;
    group.throughput(Throughput::Elements(scanned));
    group.bench_function("scan_busiest_series", |bencher| {
        bencher.iter(|| {
            let count = scan_everything(&replica, busiest.id);
            assert_eq!(count as u64, scanned);
        })
    });
    group.finish();
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);

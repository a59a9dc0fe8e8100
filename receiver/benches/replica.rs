//! Replica throughput: applying 50,000-point segments from the plant simulator (1,000 series), and
//! scanning one series back.
//!
//! Run with `cargo bench -p diode-receiver --bench replica`. Besides criterion's figures it prints
//! a plain summary (points/s applied, with and without decoding the payload; points/s scanned) so
//! the README's numbers can be re-measured by anyone.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use diode_common::codec::{SeriesColumns, group_records};
use diode_common::keys::SenderKey;
use diode_common::plant::{PlantConfig, PlantSimulator};
use diode_common::record::Record;
use diode_common::seal::{self, ChainPosition, GENESIS_HASH, SealedSegment};
use diode_receiver::replica::{ApplyOutcome, Replica};

const POINTS_PER_SEGMENT: usize = 50_000;
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
    fn new() -> SegmentSource {
        let config = PlantConfig { series_count: SERIES, ..PlantConfig::default() };
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
        let position = ChainPosition {
            sender_id: 1,
            epoch: 1,
            sequence: self.next_sequence,
            previous_hash: self.previous_hash,
        };
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

/// Plain figures, printed once: apply (pre-decoded), decode + apply, and a scan of the busiest series.
fn print_figures() {
    let directory = tempfile::tempdir().expect("temp dir");
    let mut replica = Replica::open(directory.path()).expect("open replica");
    let mut source = SegmentSource::new();
    let segments: Vec<(SealedSegment, Vec<SeriesColumns>)> = (0..60).map(|_| source.next_segment()).collect();
    let (first, rest) = segments.split_at(30);

    let started = Instant::now();
    for (segment, series) in first {
        apply(&mut replica, segment, series);
    }
    let apply_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for (segment, _) in rest {
        let series = seal::decode_verified(segment).expect("decode");
        apply(&mut replica, segment, &series);
    }
    let decode_apply_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    replica.flush().expect("flush");
    let flush_seconds = started.elapsed().as_secs_f64();

    let busiest = replica.series_list().into_iter().max_by_key(|info| info.point_count).expect("series");
    let started = Instant::now();
    let scanned = replica.scan(busiest.id, i64::MIN, i64::MAX).map(|point| point.expect("scan")).count();
    let scan_seconds = started.elapsed().as_secs_f64();

    let points = (30 * POINTS_PER_SEGMENT) as f64;
    println!(
        "replica figures (shared 2-core machine): apply {:.0} points/s ({:.1} ms per 50k-point segment); \
         decode+apply {:.0} points/s; flush {:.2} s; scan of {} ({} points, {} chunks' worth) {:.0} points/s",
        points / apply_seconds,
        apply_seconds * 1_000.0 / 30.0,
        points / decode_apply_seconds,
        flush_seconds,
        busiest.key,
        scanned,
        busiest.point_count,
        scanned as f64 / scan_seconds,
    );
}

fn bench_apply(c: &mut Criterion) {
    print_figures();
    let directory = tempfile::tempdir().expect("temp dir");
    let mut replica = Replica::open(directory.path()).expect("open replica");
    let mut source = SegmentSource::new();
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

    let busiest = replica.series_list().into_iter().max_by_key(|info| info.point_count).expect("series");
    let scanned = replica.scan(busiest.id, i64::MIN, i64::MAX).count() as u64;
    group.throughput(Throughput::Elements(scanned));
    group.bench_function("scan_busiest_series", |bencher| {
        bencher.iter(|| {
            let count = replica.scan(busiest.id, i64::MIN, i64::MAX).map(|point| black_box(point.expect("scan"))).count();
            assert_eq!(count as u64, scanned);
        })
    });
    group.finish();
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);

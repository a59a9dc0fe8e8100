//! Segment payload codec: encode and decode throughput on plant-like data, and the bytes per
//! record it costs for several segment durations (printed before the timings); and the fast
//! effort at zstd level 1 that the sender's spool frames use; and what each zstd level
//! (`segments.zstd_level`) gives in bytes and costs in encoding time on 1 s segments.
//!
//! `cargo bench -p diode-common --bench codec`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use diode_common::codec::{Effort, SeriesColumns, decode_payload, encode_payload, encode_payload_with, group_records};
use diode_common::plant::{PlantConfig, PlantSimulator};
use diode_common::record::Record;

const ZSTD_LEVEL: i32 = 3;
const NANOS_PER_MILLISECOND: i64 = 1_000_000;

/// `duration_ms` of a plant's records, from its start.
fn plant_records(series_count: usize, base_rate_hz: f64, duration_ms: i64) -> Vec<Record> {
    let config = PlantConfig { seed: 11, series_count, base_rate_hz, ..PlantConfig::default() };
    let until_ns = config.start_ns + duration_ms * NANOS_PER_MILLISECOND;
    let mut simulator = PlantSimulator::new(config);
    let mut records = Vec::new();
    simulator.generate_until(until_ns, &mut records);
    records
}

/// `seconds` of the plant (seed 7) cut into segments of `segment_ms`, each grouped by series.
fn plant_segments(series_count: usize, base_rate_hz: f64, seconds: i64, segment_ms: i64) -> Vec<Vec<SeriesColumns>> {
    let config = PlantConfig { seed: 7, series_count, base_rate_hz, ..PlantConfig::default() };
    let start_ns = config.start_ns;
    let mut simulator = PlantSimulator::new(config);
    let mut records = Vec::new();
    (1..=seconds * 1_000 / segment_ms)
        .map(|segment| {
            records.clear();
            simulator.generate_until(start_ns + segment * segment_ms * NANOS_PER_MILLISECOND, &mut records);
            group_records(&records)
        })
        .collect()
}

/// Encodes `seconds` of the plant cut into segments of `segment_ms`; returns (records, bytes).
fn bytes_per_record(series_count: usize, base_rate_hz: f64, seconds: i64, segment_ms: i64) -> (usize, usize) {
    let segments = plant_segments(series_count, base_rate_hz, seconds, segment_ms);
    let record_count = segments.iter().flatten().map(SeriesColumns::len).sum();
    let byte_count = segments.iter().map(|segment| encode_payload(segment, ZSTD_LEVEL).len()).sum();
    (record_count, byte_count)
}

fn print_bytes_per_record() {
    eprintln!("bytes per record of encode_payload (zstd level {ZSTD_LEVEL}), plant simulator, 1,000 series, 60 s:");
    for base_rate_hz in [1.0, 10.0] {
        for segment_ms in [50, 1_000, 10_000] {
            let (records, bytes) = bytes_per_record(1_000, base_rate_hz, 60, segment_ms);
            eprintln!(
                "  mean {base_rate_hz:>4} Hz/series, {segment_ms:>6} ms segments: {records:>7} records, {bytes:>8} bytes, {:.3} bytes/record",
                bytes as f64 / records as f64
            );
        }
    }
}

/// Bytes per record and encoding time per record of 1 s segments at each zstd level: the trade
/// `segments.zstd_level` makes between wire bytes and the sender's encoding threads.
fn print_zstd_levels() {
    for base_rate_hz in [10.0, 1.0] {
        let segments = plant_segments(1_000, base_rate_hz, 20, 1_000);
        let record_count: usize = segments.iter().flatten().map(SeriesColumns::len).sum();
        eprintln!(
            "zstd levels, 1 s segments, 1,000 series at a mean {base_rate_hz} Hz, {record_count} records (best of 3):"
        );
        for level in [1, 3, 6, 9, 12, 15, 19] {
            let mut best = f64::INFINITY;
            let mut bytes = 0;
            for _ in 0..3 {
                let started = Instant::now();
                bytes = segments.iter().map(|segment| encode_payload(black_box(segment), level).len()).sum::<usize>();
                best = best.min(started.elapsed().as_secs_f64());
            }
            eprintln!(
                "  level {level:>2}: {:.3} bytes/record, {:.3} µs/record to encode",
                bytes as f64 / record_count as f64,
                best * 1e6 / record_count as f64
            );
        }
    }
}

struct Case {
    name: &'static str,
    series: Vec<SeriesColumns>,
    records: usize,
}

/// Grouping a 50,000-record segment's records by series (what the sender does to each spool frame),
/// over and over on one thread, as the sender's accepting thread does.
fn grouping(c: &mut Criterion) {
    let records = plant_records(2_000, 25.0, 1_000);
    let mut group = c.benchmark_group("group");
    group.sample_size(10).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("group_records_50k", |b| b.iter(|| group_records(black_box(&records))));
    group.finish();
}

fn cases() -> Vec<Case> {
    // 2,000 series with about 25 samples each: a busy 1 s segment.
    let segment = group_records(&plant_records(2_000, 25.0, 1_000));
    // 2,000 series at 10 Hz for 65 s: a payload of about 1 MiB.
    let large = group_records(&plant_records(2_000, 10.0, 65_000));
    [("50k_records", segment), ("1MiB_payload", large)]
        .into_iter()
        .map(|(name, series)| {
            let records = series.iter().map(SeriesColumns::len).sum();
            Case { name, series, records }
        })
        .collect()
}

fn codec(c: &mut Criterion) {
    print_bytes_per_record();
    print_zstd_levels();
    let mut group = c.benchmark_group("payload");
    group.sample_size(10).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    for case in cases() {
        let payload = encode_payload(&case.series, ZSTD_LEVEL);
        eprintln!(
            "{}: {} records in {} series, payload {} bytes ({:.3} bytes/record)",
            case.name,
            case.records,
            case.series.len(),
            payload.len(),
            payload.len() as f64 / case.records as f64
        );
        group.throughput(Throughput::Elements(case.records as u64));
        group.bench_with_input(BenchmarkId::new("encode", case.name), &case.series, |b, series| {
            b.iter(|| encode_payload(black_box(series), ZSTD_LEVEL))
        });
        let spool_frame = encode_payload_with(&case.series, 1, Effort::Fast);
        eprintln!(
            "{}: as a spool frame (fast effort, zstd level 1) {} bytes ({:.3} bytes/record)",
            case.name,
            spool_frame.len(),
            spool_frame.len() as f64 / case.records as f64
        );
        group.bench_with_input(
            BenchmarkId::new("encode_spool_frame_smallest", case.name),
            &case.series,
            |b, series| b.iter(|| encode_payload_with(black_box(series), 1, Effort::Smallest)),
        );
        group.bench_with_input(BenchmarkId::new("encode_spool_frame_fast", case.name), &case.series, |b, series| {
            b.iter(|| encode_payload_with(black_box(series), 1, Effort::Fast))
        });
        group.bench_with_input(BenchmarkId::new("decode", case.name), &payload, |b, payload| {
            b.iter(|| decode_payload(black_box(payload)).expect("the payload decodes"))
        });
    }
    group.finish();
}

criterion_group!(benches, codec, grouping);
criterion_main!(benches);

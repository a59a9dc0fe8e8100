//! The Prometheus API's evaluation over a real replica, read through the same batched read lock
//! as the HTTP routes, answer written as Prometheus JSON:
//! - `avg_over_time(x[1m])` for one series over a year of 1 Hz data (31,536,000 points) at a
//!   1-minute step (525,600 steps: beyond the 11,000 steps one HTTP query may ask for, so this
//!   measures the evaluator itself);
//! - a range query over a day at a 1-minute step (1,441 steps) of 1,000 series recorded every
//!   10 s (8,640,000 points): the plain selector, as a Grafana panel asks, and `avg_over_time`.
//!
//! Run with `cargo bench --workspace --bench prometheus`. Building the year's replica takes
//! a minute or two; `DIODE_PROMETHEUS_BENCH_DAYS=30` measures a shorter series. Before criterion's
//! wall-clock figures, each case prints its best of three runs in wall and on-CPU seconds (on a
//! shared machine the second says more).

use std::path::Path;
use std::sync::RwLock;

use criterion::{Criterion, criterion_group, criterion_main};
use diode_common::codec::SeriesColumns;
use diode_common::keys::SenderKey;
use diode_common::record::{Quality, SeriesKey, Value};
use diode_common::seal::{self, ChainPosition, GENESIS_HASH, SegmentHash};
use diode_receiver::prometheus::eval::Steps;
use diode_receiver::prometheus::http::{QueryPlanView, answer};
use diode_receiver::prometheus::parse::parse;
use diode_receiver::prometheus::replica::{ReplicaSamples, catalog_entries};
use diode_receiver::query::source::LockedReplica;
use diode_replica::Replica;

#[path = "../../benches/support/measure.rs"]
mod measure;

/// The allocator the appliance's binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 2025-01-01T00:00:00Z.
const START_NS: i64 = 1_735_689_600_000_000_000;
const SECOND_NS: i64 = 1_000_000_000;
const MINUTE_NS: i64 = 60 * SECOND_NS;

/// Applies `hours` one-hour segments, each holding what `hour_columns` makes for that hour.
fn build(path: &Path, hours: i64, hour_columns: impl Fn(i64) -> Vec<SeriesColumns>) -> Replica {
    let key = SenderKey::from_seed([9u8; 32]);
    let mut replica = Replica::open(path).expect("open replica");
    let mut previous_hash: SegmentHash = GENESIS_HASH;
    for hour in 0..hours {
        let series = hour_columns(hour);
        let position = ChainPosition { sender_id: 1, epoch: 1, sequence: hour as u64 + 1, previous_hash };
        let sealed_at_ns = START_NS + (hour + 1) * 3_600 * SECOND_NS;
        let segment = seal::seal(position, &series, 3, sealed_at_ns, &key);
        previous_hash = segment.hash();
        replica.apply(&segment, &series, sealed_at_ns).expect("apply");
    }
    replica.flush().expect("flush");
    replica
}

/// A steam temperature at 0.01 °C resolution: a daily swing plus a little noise.
fn temperature(second: i64, series: i64) -> f64 {
    let noise = ((second.wrapping_mul(6_364_136_223_846_793_005) ^ series) >> 33).rem_euclid(21) as f64 - 10.0;
    let daily = (second as f64 * std::f64::consts::TAU / 86_400.0).sin();
    ((520.0 + 15.0 * daily + series as f64) * 100.0 + noise).round() / 100.0
}

/// The JSON answer's length (so nothing is optimised away).
fn run(replica: &RwLock<Replica>, query: &str, steps: Steps) -> usize {
    let expr = parse(query).expect("query parses");
    let entries = catalog_entries(&replica.read().unwrap().series_list());
    let locked = LockedReplica(replica);
    let source = ReplicaSamples { source: &locked, include_bad: false };
    let plan = QueryPlanView { expr: &expr, steps, instant: false, lookback_ns: 5 * MINUTE_NS, include_bad: false };
    answer(&plan, &entries, &source).expect("query answers").len()
}

/// Prints the best of three runs of `query`, wall and on-CPU.
fn print_cpu(label: &str, replica: &RwLock<Replica>, query: &str, steps: Steps) {
    let (timing, bytes) = measure::best_of(measure::thread_cpu_seconds, || (), |()| run(replica, query, steps));
    let cpu = timing.cpu.map_or("unknown".to_owned(), |cpu| format!("{cpu:.3} s"));
    println!("{label}: best of {}: {:.3} s wall, {cpu} on-CPU, {bytes} bytes of JSON", measure::RUNS, timing.wall);
}

fn a_year_of_one_series(c: &mut Criterion) {
    let days: i64 = std::env::var("DIODE_PROMETHEUS_BENCH_DAYS").ok().and_then(|d| d.parse().ok()).unwrap_or(365);
    let directory = tempfile::tempdir().expect("temporary directory");
    let replica = build(directory.path(), days * 24, |hour| {
        let mut columns = SeriesColumns::new(SeriesKey::new("plant1/boiler3/steam_temp"));
        for offset in 0..3_600 {
            let second = hour * 3_600 + offset;
            columns.push(START_NS + second * SECOND_NS, Value::F64(temperature(second, 0)), Quality::GOOD);
        }
        vec![columns]
    });
    let replica = RwLock::new(replica);
    let steps = Steps { start_ns: START_NS + MINUTE_NS, step_ns: MINUTE_NS, count: (days * 1_440) as usize };
    let label = format!("avg_over_time(x[1m]), {days} days of 1 Hz, 1m step");
    let query = "avg_over_time(plant1:boiler3:steam_temp[1m])";
    print_cpu(&label, &replica, query, steps);
    let mut group = c.benchmark_group("prometheus");
    group.sample_size(10);
    group.bench_function(label, |b| b.iter(|| run(&replica, query, steps)));
    group.finish();
}

fn a_day_of_a_thousand_series(c: &mut Criterion) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let replica = build(directory.path(), 24, |hour| {
        (0..1_000i64)
            .map(|series| {
                let mut columns = SeriesColumns::new(SeriesKey::with_tags(
                    format!("plant1/unit{series:04}/steam_temp"),
                    vec![("unit".into(), "C".into())],
                ));
                for offset in (0..3_600).step_by(10) {
                    let second = hour * 3_600 + offset;
                    let value = Value::F64(temperature(second, series));
                    columns.push(START_NS + second * SECOND_NS, value, Quality::GOOD);
                }
                columns
            })
            .collect()
    });
    let replica = RwLock::new(replica);
    let steps = Steps { start_ns: START_NS, step_ns: MINUTE_NS, count: 1_441 };
    let cases = [
        ("query_range of 1,000 series, a day at 1m step", r#"{__name__=~"plant1:unit.*:steam_temp"}"#),
        (
            "avg_over_time(x[1m]) of 1,000 series, a day at 1m step",
            r#"avg_over_time({__name__=~"plant1:unit.*:steam_temp"}[1m])"#,
        ),
    ];
    for (label, query) in cases {
        print_cpu(label, &replica, query, steps);
    }
    let mut group = c.benchmark_group("prometheus");
    group.sample_size(10);
    for (label, query) in cases {
        group.bench_function(label, |b| b.iter(|| run(&replica, query, steps)));
    }
    group.finish();
}

criterion_group!(benches, a_year_of_one_series, a_day_of_a_thousand_series);
criterion_main!(benches);

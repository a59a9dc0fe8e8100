//! Line protocol parsing speed, in points (field values) per second on one core.
//!
//! The target is 1,000,000 points/s per core for typical Telegraf and historian-export lines. Three
//! bodies: plant-style lines over 50 series (a historian export: series repeat, the cache hits),
//! Telegraf `cpu` lines, and plant-style lines where every line is a new series (the cache misses).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use diode_sender::line_protocol::{ParseOptions, parse_lines};

const LINES: usize = 5_000;
const START_NS: i64 = 1_700_000_000_123_000_000;

/// `boiler,plant=p1,unit=b3 steam_temp=512.3,pressure=41.07,running=true 1700000000123000000`,
/// with `distinct_units` units per plant over 5 plants, values and timestamps varying per line.
fn plant_body(distinct_units: usize) -> String {
    let mut body = String::new();
    for i in 0..LINES {
        let plant = i % 5 + 1;
        let unit = (i / 5) % distinct_units + 1;
        let steam_temp = 500.0 + (i % 997) as f64 * 0.0137;
        let pressure = 40.0 + (i % 89) as f64 * 0.031;
        let running = if i % 7 == 0 { "false" } else { "true" };
        let timestamp_ns = START_NS + i as i64 * 1_000_000;
        body.push_str(&format!(
            "boiler,plant=p{plant},unit=b{unit} steam_temp={steam_temp:.1},pressure={pressure:.2},running={running} {timestamp_ns}\n"
        ));
    }
    body
}

/// `cpu,host=server01,region=us-west usage_idle=97.5,usage_user=1.2 1700000000000000000` over 20 hosts.
fn telegraf_body() -> String {
    let mut body = String::new();
    for i in 0..LINES {
        let host = i % 20 + 1;
        let idle = 90.0 + (i % 100) as f64 * 0.09;
        let user = (i % 50) as f64 * 0.1;
        let timestamp_ns = START_NS + (i / 20) as i64 * 10_000_000_000;
        body.push_str(&format!(
            "cpu,host=server{host:02},region=us-west usage_idle={idle:.1},usage_user={user:.1} {timestamp_ns}\n"
        ));
    }
    body
}

fn bench_body(c: &mut Criterion, name: &str, body: &str) {
    let options = ParseOptions::new(START_NS);
    let mut records = Vec::new();
    let points = parse_lines(body, &options, &mut records).expect("the bench body is valid");
    let mut group = c.benchmark_group("line_protocol");
    group.throughput(Throughput::Elements(points as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            records.clear();
            parse_lines(black_box(body), &options, &mut records).expect("valid")
        })
    });
    group.finish();
}

fn line_protocol(c: &mut Criterion) {
    bench_body(c, "plant_5000_lines_3_fields_50_series", &plant_body(10));
    bench_body(c, "telegraf_cpu_5000_lines_2_fields", &telegraf_body());
    bench_body(c, "plant_5000_lines_3_fields_all_new_series", &plant_body(LINES));
}

criterion_group!(benches, line_protocol);
criterion_main!(benches);

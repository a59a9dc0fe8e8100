//! Query throughput over one year of a 1 Hz series (31,536,000 points, applied as 8,760 one-hour
//! segments): the raw scan (points decoded per second, directly and through the HTTP path's
//! batched read lock), the 1-minute mean and time-weighted average over the whole year, and raw
//! rows formatted as CSV; then the 1-minute mean over many series at once (32 series of a week
//! at 1 Hz, one-hour segments of all 32), which a query computes on every core; then the live
//! layout (a point per segment, as a plant sealing every second writes it), as written and once
//! its closed hours are merged.
//!
//! Run with `cargo bench --workspace --bench query`. Building the replicas takes a minute
//! or two; `DIODE_QUERY_BENCH_DAYS=30` measures a shorter series. Prints plain figures (best of
//! three runs) so the README's numbers can be re-measured by anyone;
//! `DIODE_QUERY_BENCH_PROFILE=scan:N` (or `mean:N`) builds the year, runs the column scan (or the
//! 1-minute mean) N times and stops, for a profiler. Scans run on one thread and
//! are timed on its CPU clock; queries compute on every core (`taskset -c 0` shows them on one)
//! and are timed on the process's CPU clock, all threads.

use std::convert::Infallible;
use std::io;
use std::path::Path;
use std::sync::RwLock;
use std::time::Instant;

use diode_common::codec::{SeriesColumns, decode_columns, encode_columns};
use diode_common::keys::{SenderKey, TrustedKeys};
use diode_common::record::{Quality, SeriesKey, Value};
use diode_common::seal::{self, ChainPosition, GENESIS_HASH};
use diode_receiver::audit::verify::{VerifyOptions, verify_replica};
use diode_receiver::query::core::aggregate::{Aggregate, Basis, TwaMode, WindowSettings, Windows};
use diode_receiver::query::core::select::select_series;
use diode_receiver::query::engine::run_query;
use diode_receiver::query::output::{Format, RowWriter, TimeFormat};
use diode_receiver::query::request::{QueryRequest, QueryText, Syntax};
use diode_receiver::query::source::LockedReplica;

#[path = "../../benches/support/measure.rs"]
mod measure;

use diode_replica::{Point, Replica, SeriesInfo};
use measure::Timing;

/// The allocator the appliance's binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 2025-01-01T00:00:00Z.
const START_NS: i64 = 1_735_689_600_000_000_000;
const SECOND_NS: i64 = 1_000_000_000;
const POINTS_PER_SEGMENT: i64 = 3_600;
const SERIES: &str = "plant1/boiler3/steam_temp";

/// A steam temperature: a daily swing plus a little noise, at 0.01 °C resolution.
fn value_at(second: i64, noise: &mut u64) -> f64 {
    *noise = noise.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    let jitter = ((*noise >> 33) % 21) as f64 - 10.0;
    let daily = (second as f64 * std::f64::consts::TAU / 86_400.0).sin();
    ((520.0 + 15.0 * daily) * 100.0 + jitter).round() / 100.0
}

/// Builds `names.len()` series of `hours` of 1 Hz data, one segment per hour holding all of them.
fn build(path: &Path, hours: i64, names: &[String]) -> f64 {
    let key = SenderKey::from_seed([9u8; 32]);
    let mut replica = Replica::open(path).expect("open replica");
    let mut previous_hash = GENESIS_HASH;
    let mut noise = 1u64;
    let started = Instant::now();
    for hour in 0..hours {
        let mut series = Vec::with_capacity(names.len());
        for name in names {
            let mut columns = SeriesColumns::new(SeriesKey::new(name.as_str()));
            for offset in 0..POINTS_PER_SEGMENT {
                let second = hour * POINTS_PER_SEGMENT + offset;
                let value = Value::F64(value_at(second, &mut noise));
                columns.push(START_NS + second * SECOND_NS, value, Quality::GOOD);
            }
            series.push(columns);
        }
        let position = ChainPosition { sender_id: 1, epoch: 1, sequence: hour as u64 + 1, previous_hash };
        let sealed_at_ns = START_NS + (hour + 1) * POINTS_PER_SEGMENT * SECOND_NS;
        let segment = seal::seal(position, &series, 3, sealed_at_ns, &key);
        previous_hash = segment.hash();
        replica.apply(&segment, &series, sealed_at_ns).expect("apply");
    }
    replica.flush().expect("flush");
    started.elapsed().as_secs_f64()
}

/// Best of [`measure::RUNS`] runs of `run`, timed on this thread's CPU clock.
fn best_of<T>(mut run: impl FnMut() -> T) -> (Timing, T) {
    measure::best_of(measure::thread_cpu_seconds, || (), |()| run())
}

/// Best of [`measure::RUNS`] runs of `run`, timed on the process's CPU clock (every thread).
fn best_of_all_threads<T>(mut run: impl FnMut() -> T) -> (Timing, T) {
    measure::best_of(measure::process_cpu_seconds, || (), |()| run())
}

/// Best of [`measure::RUNS`] runs of `request` as CSV to a sink, on the process's CPU clock; and
/// the rows it gave.
fn timed_query(replica: &Replica, series: &[SeriesInfo], request: &QueryRequest) -> (Timing, u64) {
    best_of_all_threads(|| {
        let mut out =
            RowWriter::new(io::sink(), Format::Csv, TimeFormat::Ns, request.columns(), "rows", false).expect("writer");
        run_query(replica, series, request, None, None, &mut out).expect("query").rows
    })
}

/// Points of a scan, each checked (a figure that skipped errors would flatter the scan).
fn count_points<E: std::fmt::Debug>(scan: impl Iterator<Item = Result<Point, E>>) -> usize {
    scan.fold(0, |count, point| {
        point.expect("scan");
        count + 1
    })
}

fn request(from_ns: i64, to_ns: i64, every: Option<&str>, agg: Option<&str>) -> QueryRequest {
    request_for(SERIES, from_ns, to_ns, every, agg)
}

fn request_for(series: &str, from_ns: i64, to_ns: i64, every: Option<&str>, agg: Option<&str>) -> QueryRequest {
    let text = QueryText {
        series: series.to_owned(),
        from: Some(from_ns.to_string()),
        to: Some(to_ns.to_string()),
        every: every.map(str::to_owned),
        agg: agg.map(str::to_owned),
        ..QueryText::default()
    };
    QueryRequest::parse(&text, Syntax::Cli, to_ns).expect("valid query")
}

fn main() {
    let days: i64 = std::env::var("DIODE_QUERY_BENCH_DAYS").ok().and_then(|d| d.parse().ok()).unwrap_or(365);
    let hours = days * 24;
    let points = hours * POINTS_PER_SEGMENT;
    let directory = tempfile::tempdir().expect("temp dir");
    let build_seconds = build(directory.path(), hours, &[SERIES.to_owned()]);
    println!(
        "query bench: {days} days of a 1 Hz series = {points} points in {hours} segments; built in {build_seconds:.1} s"
    );

    let replica = Replica::open_read_only(directory.path()).expect("open read-only");
    let info = replica.series_list().into_iter().next().expect("one series");
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let (from_ns, to_ns) = (START_NS, START_NS + points * SECOND_NS - 1);

    let scan = || replica.scan_columns(info.id, from_ns, to_ns).map(|block| block.expect("scan").len()).sum::<usize>();
    if let Ok(profile) = std::env::var("DIODE_QUERY_BENCH_PROFILE") {
        profile_one_part(&profile, &replica, points, &scan);
        return;
    }
    let (timing, scanned) = best_of(scan);
    assert_eq!(scanned as i64, points);
    println!(
        "scan as columns (Replica::scan_columns: decode + last-write-wins merge): {}",
        timing.describe(scanned as f64, "points")
    );

    let (timing, scanned) = best_of(|| count_points(replica.scan(info.id, from_ns, to_ns)));
    assert_eq!(scanned as i64, points);
    println!("scan as points (Replica::scan): {}", timing.describe(scanned as f64, "points"));

    let lock = RwLock::new(replica);
    let locked = LockedReplica(&lock);
    let (timing, scanned) = best_of(|| {
        use diode_receiver::query::source::PointSource;
        count_points(locked.scan(info.id, from_ns, to_ns))
    });
    println!(
        "scan under the HTTP path's read lock (batches of whole buckets): {}",
        timing.describe(scanned as f64, "points")
    );
    let replica = lock.into_inner().expect("lock");
    let series = select_series(&replica.series_list(), SERIES).expect("series");

    for agg in ["mean", "twa", "min,max,mean,count,stddev"] {
        let request = request(from_ns, to_ns, Some("1m"), Some(agg));
        let (timing, rows) = timed_query(&replica, &series, &request);
        println!(
            "1-minute {agg} over {days} days ({rows} windows, CSV to a sink, {threads} threads): {}",
            timing.describe(points as f64, "points")
        );
    }

    // The engine alone, over blocks already in memory (one week), to separate its cost from the scan's.
    let week_to_ns = from_ns + 7 * 86_400 * SECOND_NS - 1;
    let week: Vec<SeriesColumns> =
        replica.scan_columns(info.id, from_ns, week_to_ns).map(|b| b.expect("scan")).collect();
    let week_points: usize = week.iter().map(SeriesColumns::len).sum();
    let settings = WindowSettings {
        every_ns: 60 * SECOND_NS,
        aggregates: vec![Aggregate::Mean],
        twa_mode: TwaMode::Step,
        basis: Basis::Event,
        good_only: false,
    };
    let (timing, _) = best_of(|| {
        let blocks = week.iter().cloned().map(Ok::<_, Infallible>);
        Windows::new(settings.clone(), from_ns, week_to_ns, None, blocks).count()
    });
    println!(
        "1-minute mean, the engine alone over one week in memory (blocks copied in): {}",
        timing.describe(week_points as f64, "points")
    );

    // The floor under any scan of this layout: decoding the columnar chunks alone (one hour each).
    let hour = &week[0];
    assert_eq!(hour.len() as i64, POINTS_PER_SEGMENT);
    let mut chunk = Vec::new();
    encode_columns(hour, &mut chunk);
    let (timing, decoded) = best_of(|| {
        (0..hours).map(|_| decode_columns(&chunk, SeriesKey::new(SERIES)).expect("decode").len()).sum::<usize>()
    });
    println!(
        "decoding the chunks alone ({} bytes per hour, {:.2} bytes per point): {}",
        chunk.len(),
        chunk.len() as f64 / POINTS_PER_SEGMENT as f64,
        timing.describe(decoded as f64, "points")
    );

    for (format, time_format, name) in
        [(Format::Csv, TimeFormat::Rfc3339, "CSV, RFC 3339"), (Format::Jsonl, TimeFormat::Ns, "JSON lines, ns")]
    {
        let request = request(from_ns, week_to_ns, None, None);
        let (timing, rows) = best_of_all_threads(|| {
            let mut out =
                RowWriter::new(io::sink(), format, time_format, request.columns(), "rows", false).expect("writer");
            run_query(&replica, &series, &request, None, None, &mut out).expect("query").rows
        });
        println!("raw rows of one week as {name}: {}", timing.describe(rows as f64, "rows"));
    }
    drop(replica);

    many_series(threads);
    live_layout(threads);
}

/// One part of the bench alone, repeated (`DIODE_QUERY_BENCH_PROFILE=scan:N` or `mean:N`), for a
/// profiler (`perf record`) to see it without the rest.
fn profile_one_part(profile: &str, replica: &Replica, points: i64, scan: &dyn Fn() -> usize) {
    let (part, repeats) = profile.split_once(':').unwrap_or((profile, "10"));
    let repeats: u32 = repeats.parse().expect("DIODE_QUERY_BENCH_PROFILE=scan:N or mean:N");
    let (from_ns, to_ns) = (START_NS, START_NS + points * SECOND_NS - 1);
    let started = Instant::now();
    for _ in 0..repeats {
        match part {
            "scan" => assert_eq!(scan() as i64, points),
            "mean" => {
                let series = select_series(&replica.series_list(), SERIES).expect("series");
                let request = request(from_ns, to_ns, Some("1m"), Some("mean"));
                let mut out = RowWriter::new(io::sink(), Format::Csv, TimeFormat::Ns, request.columns(), "rows", false)
                    .expect("writer");
                run_query(replica, &series, &request, None, None, &mut out).expect("query");
            }
            other => panic!("DIODE_QUERY_BENCH_PROFILE: {other} is neither scan nor mean"),
        }
    }
    println!("{part} x {repeats}: {:.2} s", started.elapsed().as_secs_f64());
}

/// A series written the way a live plant writes it: one point per segment, a segment a second,
/// so the replica holds a chunk per point until each closed hour is merged. The same scan and
/// mean, as written and once every hour is merged (`DIODE_QUERY_BENCH_LIVE_HOURS`, default 48).
fn live_layout(threads: usize) {
    let hours: i64 = std::env::var("DIODE_QUERY_BENCH_LIVE_HOURS").ok().and_then(|h| h.parse().ok()).unwrap_or(48);
    let points = hours * POINTS_PER_SEGMENT;
    let directory = tempfile::tempdir().expect("temp dir");
    let key = SenderKey::from_seed([9u8; 32]);
    let started = Instant::now();
    {
        let mut replica = Replica::open(directory.path()).expect("open replica");
        let (mut previous_hash, mut noise) = (GENESIS_HASH, 1u64);
        for second in 0..points {
            let mut columns = SeriesColumns::new(SeriesKey::new(SERIES));
            columns.push(START_NS + second * SECOND_NS, Value::F64(value_at(second, &mut noise)), Quality::GOOD);
            let series = [columns];
            let position = ChainPosition { sender_id: 1, epoch: 1, sequence: second as u64 + 1, previous_hash };
            let segment = seal::seal(position, &series, 3, START_NS + (second + 1) * SECOND_NS, &key);
            previous_hash = segment.hash();
            replica.apply(&segment, &series, START_NS).expect("apply");
        }
        replica.compact().expect("compact");
    }
    println!(
        "live layout: {hours} hours of a 1 Hz series applied a point per segment ({points} segments) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (from_ns, to_ns) = (START_NS, START_NS + points * SECOND_NS - 1);
    for state in ["as written, compacted", "every hour merged, compacted"] {
        if state.starts_with("every hour merged") {
            let mut replica = Replica::open(directory.path()).expect("open replica");
            let started = Instant::now();
            let report = replica.merge_all_buckets().expect("merge");
            println!(
                "  merging {} hours ({} chunks): {:.2} s",
                report.buckets_merged,
                report.chunks_merged,
                started.elapsed().as_secs_f64()
            );
            replica.compact().expect("compact");
        }
        let replica = Replica::open_read_only(directory.path()).expect("open read-only");
        let info = replica.series_list().into_iter().next().expect("one series");
        let points_bytes =
            replica.table_bytes().expect("sizes").iter().find(|(name, _)| *name == "points").map_or(0, |f| f.1);
        let (timing, scanned) = best_of(|| {
            replica.scan_columns(info.id, from_ns, to_ns).map(|block| block.expect("scan").len()).sum::<usize>()
        });
        assert_eq!(scanned as i64, points);
        println!(
            "  {state}: points {:.2} bytes per point; scan as columns: {}",
            points_bytes as f64 / points as f64,
            timing.describe(scanned as f64, "points")
        );
        let series = select_series(&replica.series_list(), SERIES).expect("series");
        let request = request(from_ns, to_ns, Some("1m"), Some("mean"));
        let (timing, rows) = timed_query(&replica, &series, &request);
        println!(
            "  {state}: 1-minute mean ({rows} windows, {threads} threads): {}",
            timing.describe(points as f64, "points")
        );
        // The audit of every segment, link, point and chunk (one run: it takes seconds here).
        let trusted = TrustedKeys::single(key.public_key());
        let options = VerifyOptions { threads, ..VerifyOptions::default() };
        let cpu_now = || measure::process_cpu_seconds().unwrap_or(0.0);
        let (wall, cpu) = (Instant::now(), cpu_now());
        let report = verify_replica(&replica, &trusted, &options).expect("verify");
        let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_now() - cpu);
        assert!(report.is_clean(), "{}", report.summary_text());
        println!(
            "  {state}: audit verify, clean: {:.2} s wall, {:.2} s CPU ({:.2} M points per CPU-second)",
            wall,
            cpu,
            points as f64 / cpu / 1e6
        );
    }
}

/// The 1-minute mean over many series of a week at once: wall time against CPU time of all threads.
fn many_series(threads: usize) {
    const MANY: usize = 32;
    const DAYS: i64 = 7;
    let hours = DAYS * 24;
    let names: Vec<String> = (0..MANY).map(|index| format!("plant1/unit{index:02}/steam_temp")).collect();
    let directory = tempfile::tempdir().expect("temp dir");
    let build_seconds = build(directory.path(), hours, &names);
    let points = MANY as i64 * hours * POINTS_PER_SEGMENT;
    println!("many series: {MANY} series of {DAYS} days at 1 Hz = {points} points; built in {build_seconds:.1} s");
    let replica = Replica::open_read_only(directory.path()).expect("open read-only");
    let selector = "plant1/unit*/steam_temp";
    let series = select_series(&replica.series_list(), selector).expect("series");
    assert_eq!(series.len(), MANY);
    let (from_ns, to_ns) = (START_NS, START_NS + hours * POINTS_PER_SEGMENT * SECOND_NS - 1);
    for agg in ["mean", "twa"] {
        let request = request_for(selector, from_ns, to_ns, Some("1m"), Some(agg));
        let (timing, rows) = timed_query(&replica, &series, &request);
        println!(
            "1-minute {agg} over {MANY} series of {DAYS} days ({rows} windows, CSV to a sink, {threads} threads): {}",
            timing.describe(points as f64, "points")
        );
    }
}

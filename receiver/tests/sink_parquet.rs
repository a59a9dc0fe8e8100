//! Parquet export and the continuous Parquet sink, read back by DuckDB (PyPI `duckdb`, pinned in
//! the project's venv by `scripts/prepare`) with Hive partitioning: counts, sums per series and a
//! seeded sample of rows equal the replica's; every row lies in its `date=…/hour=…` partition; a
//! re-export after late data replaces the hour's file, leaving no duplicate and no temporary file.
//! Skips (and says why) where DuckDB is missing.

mod sinks_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use diode_common::record::Value;
use diode_receiver::sinks::config::{ParquetSinkConfig, SinkLimits};
use diode_receiver::sinks::parquet::{self, ParquetSink, SeriesFilter};
use diode_replica::{BUCKET_NS, Replica};
use serde_json::Value as Json;
use sinks_common::*;

const GUARD: Duration = Duration::from_secs(120);

fn python() -> Option<PathBuf> {
    let python = std::env::var_os("DIODE_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/diode/venv/bin/python")
    });
    let ok = Command::new(&python).args(["-c", "import duckdb"]).output().is_ok_and(|output| output.status.success());
    if !ok {
        eprintln!("skipping: no Python with duckdb at {} (run scripts/prepare)", python.display());
    }
    ok.then_some(python)
}

/// DuckDB's view of the folder: totals, per-series figures, partitions and 300 sampled rows.
const DUCKDB_SCRIPT: &str = r#"
import duckdb, json, sys
folder = sys.argv[1]
con = duckdb.connect()
con.sql(f"CREATE VIEW p AS SELECT * FROM read_parquet('{folder}/*/*/*.parquet', hive_partitioning = true)")
one = lambda q: con.sql(q).fetchall()
print(json.dumps({
    "count": one("SELECT count(*) FROM p")[0][0],
    "distinct": one("SELECT count(*) FROM (SELECT DISTINCT series, tags, time FROM p)")[0][0],
    "series": one("SELECT series, tags, count(*), sum(value_f64), sum(value_i64), count(value_bool), "
                  "count(value_text) FROM p GROUP BY ALL ORDER BY ALL"),
    "partitions": one("SELECT date::VARCHAR, hour::BIGINT, min(epoch_ns(time)), max(epoch_ns(time)) "
                      "FROM p GROUP BY ALL ORDER BY ALL"),
    "sample": one("SELECT series, tags, epoch_ns(time), value_f64, value_i64, value_bool, value_text, quality "
                  "FROM p USING SAMPLE reservoir(300 ROWS) REPEATABLE (42)"),
}, default=str))
"#;

fn duckdb(python: &Path, folder: &Path) -> Json {
    let output = Command::new(python).args(["-c", DUCKDB_SCRIPT]).arg(folder).output().unwrap();
    assert!(output.status.success(), "duckdb: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn tags_json(replica: &Replica, id: u32) -> String {
    let info = replica.series_info(id).unwrap();
    let tags: serde_json::Map<String, Json> =
        info.key.tags.iter().map(|(key, value)| (key.clone(), Json::from(value.as_str()))).collect();
    Json::Object(tags).to_string()
}

/// Checks DuckDB's reading of `folder` against every point of the replica.
fn check_folder_equals_replica(python: &Path, folder: &Path, replica: &Replica) {
    let seen = duckdb(python, folder);
    let points = replica_points(replica);
    assert_eq!(seen["count"].as_u64().unwrap(), points.len() as u64, "row count");
    assert_eq!(seen["distinct"], seen["count"], "no (series, tags, time) twice");
    let by_name: BTreeMap<(String, String), u32> = replica
        .series_list()
        .into_iter()
        .map(|info| ((info.key.name.to_string(), tags_json(replica, info.id)), info.id))
        .collect();
    for row in seen["series"].as_array().unwrap() {
        let id = by_name[&(row[0].as_str().unwrap().to_owned(), row[1].as_str().unwrap().to_owned())];
        let mine: Vec<&Value> = points.range((id, i64::MIN)..=(id, i64::MAX)).map(|(_, (value, _))| value).collect();
        assert_eq!(row[2].as_u64().unwrap(), mine.len() as u64, "count of series {id}");
        let f64_sum: f64 = mine.iter().filter_map(|v| if let Value::F64(v) = v { Some(*v) } else { None }).sum();
        let i64_sum: i64 = mine.iter().filter_map(|v| if let Value::I64(v) = v { Some(*v) } else { None }).sum();
        if let Some(sum) = row[3].as_f64() {
            assert!((sum - f64_sum).abs() <= 1e-9 * f64_sum.abs().max(1.0), "float sum of series {id}");
        }
        if let Some(sum) = row[4].as_str().and_then(|s| s.parse::<i64>().ok()).or(row[4].as_i64()) {
            assert_eq!(sum, i64_sum, "integer sum of series {id}");
        }
        let bools = mine.iter().filter(|v| matches!(v, Value::Bool(_))).count();
        assert_eq!(row[5].as_u64().unwrap(), bools as u64);
    }
    for partition in seen["partitions"].as_array().unwrap() {
        let (date, hour) = (partition[0].as_str().unwrap(), partition[1].as_i64().unwrap());
        let (first, last) = (partition[2].as_i64().unwrap(), partition[3].as_i64().unwrap());
        let start = diode_replica::bucket_start(first);
        assert_eq!(diode_replica::bucket_start(last), start, "partition {date}/{hour} holds one hour");
        let path = parquet::hour_path(Path::new(""), start);
        assert_eq!(path, Path::new(&format!("date={date}/hour={hour:02}/part-0.parquet")), "rows in their partition");
    }
    let sample = seen["sample"].as_array().unwrap();
    assert_eq!(sample.len(), 300.min(points.len()));
    for row in sample {
        let id = by_name[&(row[0].as_str().unwrap().to_owned(), row[1].as_str().unwrap().to_owned())];
        let (value, quality) = &points[&(id, row[2].as_i64().unwrap())];
        let expected = match value {
            Value::F64(v) => row[3] == *v,
            Value::I64(v) => row[4] == *v,
            Value::Bool(v) => row[5] == *v,
            Value::String(v) => row[6] == v.as_str(),
        };
        assert!(expected, "sampled row {row} differs from the replica's {value:?}");
        assert_eq!(row[7].as_u64().unwrap(), u64::from(*quality));
    }
}

fn files_under(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![folder.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { stack.push(path) } else { files.push(path) }
        }
    }
    files.sort();
    files
}

#[test]
fn duckdb_reads_the_exported_hours_equal_to_the_replica_and_a_re_export_replaces_an_hour() {
    let Some(python) = python() else { return };
    let directory = tempfile::tempdir().unwrap();
    let shared = shared(Replica::open(directory.path()).unwrap());
    let segments = plant_segments_at_rate(31, 60, 400, 0.05);
    apply(&shared, &segments[..50]);
    let out = tempfile::tempdir().unwrap();
    let all = SeriesFilter::default();
    {
        let replica = shared.replica.read().unwrap();
        let summary = parquet::export(&replica, &all, i64::MIN, i64::MAX, out.path(), |_, _, _| {}).unwrap();
        assert!(summary.hours >= 3, "the plant spans several hours: {summary:?}");
        check_folder_equals_replica(&python, out.path(), &replica);
    }
    // Late segments (gap fills, corrections) arrive; the hours they touch are exported again.
    let before = files_under(out.path());
    apply(&shared, &segments[50..]);
    let replica = shared.replica.read().unwrap();
    parquet::export(&replica, &all, i64::MIN, i64::MAX, out.path(), |_, _, _| {}).unwrap();
    check_folder_equals_replica(&python, out.path(), &replica);
    let after = files_under(out.path());
    assert!(after.iter().all(|path| path.ends_with("part-0.parquet")), "no temporary file is left: {after:?}");
    assert!(before.iter().all(|path| after.contains(path)));
}

#[test]
fn an_export_of_some_series_and_hours_holds_exactly_those() {
    let Some(python) = python() else { return };
    let directory = tempfile::tempdir().unwrap();
    let shared = shared(Replica::open(directory.path()).unwrap());
    apply(&shared, &plant_segments_at_rate(32, 30, 400, 0.05));
    let replica = shared.replica.read().unwrap();
    let name = replica.series_list()[0].key.name.to_string();
    let out = tempfile::tempdir().unwrap();
    let filter = SeriesFilter { patterns: vec![name.clone()] };
    let summary = parquet::export(&replica, &filter, T0, T0 + 30 * 60 * SECOND, out.path(), |_, _, _| {}).unwrap();
    assert_eq!(summary.hours, 1, "30 minutes inside one hour export that whole hour");
    let seen = duckdb(&python, out.path());
    let expected: usize = replica
        .series_list()
        .iter()
        .filter(|info| *info.key.name == *name)
        .map(|info| replica.scan(info.id, T0, T0 + BUCKET_NS - 1).count())
        .sum();
    assert_eq!(seen["count"].as_u64().unwrap(), expected as u64);
    assert!(seen["series"].as_array().unwrap().iter().all(|row| row[0] == name.as_str()));
}

#[test]
fn the_continuous_sink_writes_every_closed_hour_and_rewrites_hours_that_late_data_touches() {
    let Some(python) = python() else { return };
    let directory = tempfile::tempdir().unwrap();
    let shared = shared(Replica::open(directory.path()).unwrap());
    let segments = plant_segments_at_rate(33, 60, 400, 0.05);
    apply(&shared, &segments[..40]);
    let out = tempfile::tempdir().unwrap();
    let text = format!("name = \"lake\"\ndirectory = {:?}\nclose_after_s = 0\n", out.path().display().to_string());
    let config: ParquetSinkConfig = toml::from_str(&text).unwrap();
    let limits = SinkLimits { batch_points: 2_000, ..SinkLimits::default() };
    let thread = diode_receiver::sinks::spawn(Box::new(ParquetSink::new(config)), "lake", limits, &shared).unwrap();
    let last = || shared.replica.read().unwrap().last_apply_number();
    wait_until("every closed hour is written", GUARD, || sink_cursor(&shared, "lake") == last());
    check_folder_equals_replica(&python, out.path(), &shared.replica.read().unwrap());
    apply(&shared, &segments[40..]);
    wait_until("the late hours are rewritten", GUARD, || sink_cursor(&shared, "lake") == last());
    shared.stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    let replica = shared.replica.read().unwrap();
    check_folder_equals_replica(&python, out.path(), &replica);
    assert_eq!(replica.sink_cursor("lake").unwrap().unwrap().apply_number, 60);
    // What /api/v1/status, `status` and /metrics show of it.
    let status = diode_receiver::status::status_json(&replica, Some(&shared.counters));
    let sink = &status["sinks"][0];
    assert_eq!((sink["name"].as_str(), sink["kind"].as_str()), (Some("lake"), Some("parquet")));
    assert_eq!((sink["cursor"].as_u64(), sink["lag_segments"].as_u64()), (Some(60), Some(0)));
    assert_eq!(sink["errors"].as_u64(), Some(0));
    assert!(diode_receiver::status::status_text(&replica).contains("sink lake: exported through apply 60 of 60"));
    let metrics = diode_receiver::sinks::metrics(&shared.counters.sinks.lock().unwrap(), 60);
    for line in [
        "diode_receiver_sink_cursor{sink=\"lake\",kind=\"parquet\"} 60",
        "diode_receiver_sink_lag_segments{sink=\"lake\",kind=\"parquet\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing from\n{metrics}");
    }
}

/// Export speed on one core: `cargo test --release --workspace --test sink_parquet --
/// --ignored --nocapture`. Three exports of the same replica, each with its wall time and the
/// CPU time of the exporting thread (what gives points/s per core on a shared machine).
#[test]
#[ignore = "a measurement, not a check"]
fn measure_export_points_per_second() {
    let directory = tempfile::tempdir().unwrap();
    let shared = shared(Replica::open(directory.path()).unwrap());
    apply(&shared, &plant_segments_at_rate(34, 400, 10_000, 20.0));
    let replica = shared.replica.read().unwrap();
    let start = Instant::now();
    let scanned: usize = replica
        .series_list()
        .iter()
        .flat_map(|info| replica.scan_columns(info.id, i64::MIN, i64::MAX))
        .map(|block| block.unwrap().len())
        .sum();
    println!("replica scan alone: {:.0} points/s", scanned as f64 / start.elapsed().as_secs_f64());
    for run in 1..=3 {
        let out = tempfile::tempdir().unwrap();
        let (start, cpu) = (Instant::now(), thread_cpu_seconds());
        let summary =
            parquet::export(&replica, &SeriesFilter::default(), i64::MIN, i64::MAX, out.path(), |_, _, _| {}).unwrap();
        let (elapsed, cpu) = (start.elapsed().as_secs_f64(), thread_cpu_seconds() - cpu);
        let bytes: u64 = files_under(out.path()).iter().map(|path| path.metadata().unwrap().len()).sum();
        let points = summary.points as f64;
        println!(
            "parquet export {run}: {} points in {} hours, {elapsed:.2} s = {:.0} points/s; {cpu:.2} CPU s = {:.0} \
             points per CPU second; {:.2} bytes per point; load average {}",
            summary.points,
            summary.hours,
            points / elapsed,
            points / cpu,
            bytes as f64 / points,
            load_average()
        );
    }
}

#[test]
fn the_export_command_writes_the_folder_duckdb_reads_from_a_replica_it_only_reads() {
    let Some(python) = python() else { return };
    let directory = tempfile::tempdir().unwrap();
    let replica_dir = directory.path().join("replica");
    {
        let shared = shared(Replica::open(&replica_dir).unwrap());
        apply(&shared, &plant_segments_at_rate(35, 20, 400, 0.05));
    }
    let config = directory.path().join("receiver.toml");
    std::fs::write(
        &config,
        "replica_dir = \"replica\"\n[link]\nlisten = \"127.0.0.1:7400\"\n[keys]\nlink_key = \"link.key\"\n\
         [[keys.trusted]]\npublic_key = \"signing.pub\"\n",
    )
    .unwrap();
    let out = directory.path().join("lake");
    let output = Command::new(env!("CARGO_BIN_EXE_diode-receiver"))
        .args(["export", "parquet", "--config"])
        .arg(&config)
        .args(["--from", "2023-12-31T23:00:00Z", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.starts_with("wrote ") && printed.contains("hour files"), "{printed}");
    let replica = Replica::open_read_only(&replica_dir).unwrap();
    check_folder_equals_replica(&python, &out, &replica);
    let error = Command::new(env!("CARGO_BIN_EXE_diode-receiver"))
        .args(["export", "parquet", "--config"])
        .arg(&config)
        .args(["--from", "yesterday-ish", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!error.status.success());
    assert!(String::from_utf8_lossy(&error.stderr).contains("--from"), "the bad option is named");
}

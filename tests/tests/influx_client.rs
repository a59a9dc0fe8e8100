//! A client library diode did not write feeds diode-sender: the official InfluxDB Python client
//! (`influxdb-client`, installed by `scripts/prepare`) writes 100,000 points through the HTTP
//! endpoint (`tests/python/influx_write.py`: token, gzip, batches of 5,000 points, precisions ns
//! to s, Point objects of every field type, raw lines with unsigned integers, InfluxDB 1.x's
//! `/write`, quality tags and fields, escapes everywhere), and the replica then holds exactly
//! those points: each in the series the documented mapping names, at its timestamp, with its
//! value, its value type and its quality, and nothing else.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use diode_common::record::{Quality, SeriesKey, Value, ValueKind};
use diode_replica::Replica;
use diode_tests::lab::{Lab, LabOptions};

const POINTS: u64 = 100_000;
const TOKEN: &str = "plant-collector-token";
const QUALITY_TAG: &str = "quality";
const QUALITY_FIELD: &str = "quality";
/// Mismatches listed in a failure message; the rest are counted.
const MAX_LISTED_MISMATCHES: usize = 20;

/// The venv's Python from `scripts/prepare` (`DIODE_PYTHON`, or its default place), checked to
/// import the client. Missing is a failure, never a skip: this test is the proof that real
/// collectors work.
fn python_with_influxdb_client() -> PathBuf {
    let python = std::env::var_os("DIODE_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache/diode/venv/bin/python")
    });
    let check = Command::new(&python).args(["-c", "import influxdb_client"]).output();
    match check {
        Ok(output) if output.status.success() => python,
        Ok(output) => panic!(
            "{} cannot import influxdb_client ({}); run `source scripts/prepare`, which installs it in a venv and sets DIODE_PYTHON",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => panic!(
            "no Python at {} ({error}); run `source scripts/prepare`, which creates the venv with influxdb-client and sets DIODE_PYTHON",
            python.display()
        ),
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/influx_write.py")
}

/// One point the script wrote and was answered 204 for.
struct Expected {
    series: SeriesKey,
    timestamp_ns: i64,
    value: Value,
    /// What the type was on the wire: `unsigned` arrives as an integer.
    written_type: String,
    quality: Quality,
    path: String,
    precision: String,
}

/// The documented mapping (README, `sender/src/line_protocol.rs`): field `f` of measurement `m`
/// is series `m/f`; its tags are the line's tags, sorted, without the quality tag.
fn series_of(measurement: &str, field: &str, tags: &serde_json::Map<String, serde_json::Value>) -> SeriesKey {
    let tags = tags
        .iter()
        .filter(|(key, _)| key.as_str() != QUALITY_TAG)
        .map(|(key, value)| (key.clone(), value.as_str().expect("tag values are strings").to_owned()))
        .collect();
    SeriesKey::with_tags(format!("{measurement}/{field}"), tags)
}

/// Float as InfluxDB float, integer and unsigned (≤ i64::MAX) as diode's signed integer,
/// boolean, string.
fn value_of(kind: &str, value: &serde_json::Value) -> Value {
    match kind {
        "float" => Value::F64(value.as_str().expect("floats are repr text").parse().expect("a float")),
        "integer" => Value::I64(value.as_i64().expect("an integer")),
        "unsigned" => Value::I64(i64::try_from(value.as_u64().expect("an unsigned integer")).expect("≤ i64::MAX")),
        "boolean" => Value::Bool(value.as_bool().expect("a boolean")),
        "string" => Value::String(value.as_str().expect("a string").to_owned()),
        other => panic!("unknown type {other:?} in the expectation file"),
    }
}

fn read_expectations(path: &std::path::Path) -> Vec<Expected> {
    let text = std::fs::read_to_string(path).expect("the script wrote its expectation file");
    text.lines()
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
            let text = |name: &str| entry[name].as_str().unwrap_or_else(|| panic!("{name} in {line}")).to_owned();
            let tags = entry["tags"].as_object().expect("tags");
            Expected {
                series: series_of(&text("measurement"), &text("field"), tags),
                timestamp_ns: entry["time_ns"].as_i64().expect("time_ns"),
                value: value_of(&text("type"), &entry["value"]),
                written_type: text("type"),
                quality: Quality(u32::try_from(entry["quality"].as_u64().expect("quality")).expect("a u32 code")),
                path: text("path"),
                precision: text("precision"),
            }
        })
        .collect()
}

#[test]
fn points_written_by_the_official_influxdb_python_client_reach_the_replica_exactly() {
    let python = python_with_influxdb_client();
    let dir = tempfile::tempdir().unwrap();
    let options = LabOptions {
        simulator: false,
        ingest_token: Some(TOKEN.into()),
        quality_tag: Some(QUALITY_TAG.into()),
        quality_field: Some(QUALITY_FIELD.into()),
        ..LabOptions::default()
    };
    let mut lab = Lab::new(dir.path(), options).unwrap();
    lab.start_receiver().unwrap();
    lab.start_sender_until_stopped().unwrap();

    let expectations = dir.path().join("expected.jsonl");
    let started = Instant::now();
    let output = Command::new(&python)
        .arg(script())
        .args(["--url", &format!("http://{}", lab.sender_ingest), "--token", TOKEN])
        .args(["--points", &POINTS.to_string(), "--seed", "7"])
        .args(["--quality-tag", QUALITY_TAG, "--quality-field", QUALITY_FIELD])
        .arg("--out")
        .arg(&expectations)
        .output()
        .expect("the Python script runs");
    assert!(
        output.status.success(),
        "the client script failed:\n{}\n{}\nsender log: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        dir.path().join("sender.log").display()
    );
    println!("{} (test: {:.1} s)", String::from_utf8_lossy(&output.stdout).trim(), started.elapsed().as_secs_f64());

    let expected = read_expectations(&expectations);
    assert_eq!(expected.len() as u64, POINTS, "the script reports every point it was answered 204 for");
    assert_covers_what_collectors_send(&expected);

    assert!(lab.stop_sender().unwrap().success());
    assert!(
        lab.wait_for_points(POINTS, Duration::from_secs(60)),
        "the replica did not reach {POINTS} points; see {}",
        dir.path().display()
    );
    lab.stop_receiver().unwrap();

    let replica = Replica::open_read_only(&lab.replica_dir()).unwrap();
    let mismatches = compare(&replica, &expected);
    assert!(
        mismatches.is_empty(),
        "the replica differs from what the client wrote ({} findings):\n{}",
        mismatches.len(),
        mismatches.iter().take(MAX_LISTED_MISMATCHES).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// The script must keep exercising everything it claims to, or this test would prove less.
fn assert_covers_what_collectors_send(expected: &[Expected]) {
    let seen = |get: fn(&Expected) -> String| expected.iter().map(get).collect::<BTreeSet<_>>();
    let types = seen(|e| e.written_type.clone());
    assert_eq!(types, ["boolean", "float", "integer", "string", "unsigned"].map(String::from).into());
    let paths = seen(|e| e.path.clone());
    assert_eq!(paths, ["v1", "v2-point", "v2-raw"].map(String::from).into());
    let precisions = seen(|e| e.precision.clone());
    assert_eq!(precisions, ["ms", "ns", "s", "us"].map(String::from).into());
    let qualities: BTreeSet<u32> = expected.iter().map(|e| e.quality.0).collect();
    assert!(qualities.len() >= 6, "qualities seen: {qualities:?}");
    assert!(expected.iter().any(|e| matches!(e.value, Value::I64(i64::MAX)) && e.written_type == "unsigned"));
    assert!(expected.iter().any(|e| matches!(e.value, Value::F64(v) if v == 0.0 && v.is_sign_negative())));
    assert!(expected.iter().any(|e| e.series.tags.iter().any(|(_, v)| v.contains(',') || v.contains('='))));
}

/// Every expected point in its series with the same value (bit for bit, so the type too) and
/// quality; each series of the expected value type; no point and no series beyond them.
fn compare(replica: &Replica, expected: &[Expected]) -> Vec<String> {
    let mut by_series: HashMap<&SeriesKey, BTreeMap<i64, &Expected>> = HashMap::new();
    for point in expected {
        let previous = by_series.entry(&point.series).or_default().insert(point.timestamp_ns, point);
        assert!(previous.is_none(), "the script wrote {} at {} twice", point.series, point.timestamp_ns);
    }
    let mut findings = Vec::new();
    for (series, points) in &by_series {
        let Some(id) = replica.series_id(series) else {
            findings.push(format!("series {series} is missing ({} points)", points.len()));
            continue;
        };
        let info = replica.series_info(id).expect("catalogued");
        let kind: ValueKind = points.values().next().expect("a point").value.kind();
        if info.kind != kind || info.mixed_kinds {
            findings.push(format!(
                "series {series} is catalogued as {:?} (mixed: {}); expected {kind:?}",
                info.kind, info.mixed_kinds
            ));
        }
        let mut found = BTreeSet::new();
        for point in replica.scan(id, i64::MIN, i64::MAX) {
            let point = point.expect("scan");
            found.insert(point.timestamp_ns);
            match points.get(&point.timestamp_ns) {
                None => findings.push(format!("{series} at {}: a point nobody wrote", point.timestamp_ns)),
                Some(want) if !want.value.bit_eq(&point.value) || want.quality != point.quality => {
                    findings.push(format!(
                        "{series} at {}: replica has {:?} ({}), the client wrote {:?} ({}) as {} via {}",
                        point.timestamp_ns,
                        point.value,
                        point.quality,
                        want.value,
                        want.quality,
                        want.written_type,
                        want.path
                    ))
                }
                Some(_) => {}
            }
        }
        for (timestamp_ns, want) in points.iter().filter(|(timestamp_ns, _)| !found.contains(*timestamp_ns)) {
            findings.push(format!(
                "{series} at {timestamp_ns}: missing; the client wrote {:?} as {} via {} at precision {}",
                want.value, want.written_type, want.path, want.precision
            ));
        }
    }
    for info in replica.series_list() {
        if !by_series.contains_key(&info.key) {
            findings.push(format!("series {} ({} points) was never written", info.key, info.point_count));
        }
    }
    findings
}

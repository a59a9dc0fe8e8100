//! Historian read semantics over a real replica (one signed segment applied with
//! `Replica::apply`), through the CLI's query functions and the HTTP route: the aggregates that
//! weigh by time and quality, the time basis, booleans and strings, raw reads with bounding
//! values, values at given times and plot reads, their limits and their pages. Expected values
//! are worked by hand from the records below.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use diode_common::codec::{SeriesColumns, group_records};
use diode_common::keys::SenderKey;
use diode_common::record::{Quality, Record, SeriesKey, Value};
use diode_common::seal::{self, ChainPosition, GENESIS_HASH};
use diode_receiver::query::cli::{Written, write_query_with};
use diode_receiver::query::core::aggregate::Basis;
use diode_receiver::query::core::bounds::Boundary;
use diode_receiver::query::core::interpolate::AtMode;
use diode_receiver::query::output::{Format, TimeFormat};
use diode_receiver::query::request::{QueryRequest, QueryText, Syntax};
use diode_receiver::state::{AppState, Shared};
use diode_replica::Replica;

/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200_000_000_000;
const SECOND: i64 = 1_000_000_000;
const NOW: i64 = T0 + 24 * 3_600 * SECOND;

const TEMP: &str = "plant1/reactor/temp";
const VALVE: &str = "plant1/reactor/valve_open";
const MODE: &str = "plant1/reactor/mode";
const DENSE: &str = "plant1/pump/vibration";

fn at(seconds: i64) -> i64 {
    T0 + seconds * SECOND
}

fn record(series: &str, seconds: i64, value: Value, quality: Quality) -> Record {
    Record { series: SeriesKey::new(series), timestamp_ns: at(seconds), value, quality }
}

/// The replica every test reads, offsets in seconds from T0:
/// - TEMP: 10 at 0, 40 at 20, 10 at 30, 0 (bad) at 60, 30 at 90, 50 at 120;
/// - VALVE: false at 0, true at 15, false at 50, true at 75;
/// - MODE: "heat" at 5, "hold" at 65;
/// - DENSE: `s mod 10` every second from 0 to 599, except 100 (bad) at 305.
fn build(path: &std::path::Path) {
    let mut records = Vec::new();
    for (seconds, value, quality) in [
        (0, 10.0, Quality::GOOD),
        (20, 40.0, Quality::GOOD),
        (30, 10.0, Quality::GOOD),
        (60, 0.0, Quality::BAD),
        (90, 30.0, Quality::GOOD),
        (120, 50.0, Quality::GOOD),
    ] {
        records.push(record(TEMP, seconds, Value::F64(value), quality));
    }
    for (seconds, state) in [(0, false), (15, true), (50, false), (75, true)] {
        records.push(record(VALVE, seconds, Value::Bool(state), Quality::GOOD));
    }
    records.push(record(MODE, 5, Value::String("heat".into()), Quality::GOOD));
    records.push(record(MODE, 65, Value::String("hold".into()), Quality::GOOD));
    for seconds in 0..600 {
        let (value, quality) =
            if seconds == 305 { (100.0, Quality::BAD) } else { ((seconds % 10) as f64, Quality::GOOD) };
        records.push(record(DENSE, seconds, Value::F64(value), quality));
    }
    let mut replica = Replica::open(path).unwrap();
    let position = ChainPosition { sender_id: 1, epoch: 1, sequence: 1, previous_hash: GENESIS_HASH };
    let sealed = seal::seal(position, &group_records(&records), 3, T0, &SenderKey::from_seed([3u8; 32]));
    let columns: Vec<SeriesColumns> = seal::decode_verified(&sealed).expect("decodes");
    replica.apply(&sealed, &columns, T0).expect("apply");
}

fn fixture() -> (tempfile::TempDir, Replica) {
    let directory = tempfile::tempdir().unwrap();
    build(directory.path());
    let replica = Replica::open_read_only(directory.path()).unwrap();
    (directory, replica)
}

/// A raw read of `series` over `[from_ns, to_ns]`.
fn text(series: &str, from_ns: i64, to_ns: i64) -> QueryText {
    let [from, to] = [from_ns, to_ns].map(|ns| Some(ns.to_string()));
    QueryText { series: series.to_owned(), from, to, ..QueryText::default() }
}

fn windows(series: &str, aggregates: &str, seconds: (i64, i64)) -> QueryText {
    QueryText { every: Some("1m".into()), agg: Some(aggregates.into()), ..text(series, at(seconds.0), at(seconds.1)) }
}

/// The query's CSV lines (header first) and what it said beside them.
fn query(replica: &Replica, text: &QueryText) -> (Vec<String>, Written) {
    let request = QueryRequest::parse(text, Syntax::Cli, NOW).expect("valid query");
    let mut out = Vec::new();
    let written = write_query_with(replica, &request, (Format::Csv, TimeFormat::Ns), None, &mut out).expect("query");
    (String::from_utf8(out).unwrap().lines().map(str::to_owned).collect(), written)
}

/// Rows as (series, time offset in s from T0, the other fields).
fn rows(replica: &Replica, text: &QueryText) -> Vec<(String, i64, Vec<String>)> {
    let (lines, _) = query(replica, text);
    lines[1..]
        .iter()
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let offset = (fields[1].parse::<i64>().unwrap() - T0) / SECOND;
            (fields[0].to_owned(), offset, fields[2..].iter().map(|field| (*field).to_owned()).collect())
        })
        .collect()
}

/// The numbers of each row (empty fields as `None`), by window offset.
fn numbers(replica: &Replica, text: &QueryText) -> Vec<(i64, Vec<Option<f64>>)> {
    rows(replica, text)
        .into_iter()
        .map(|(_, offset, fields)| (offset, fields.iter().map(|field| field.parse().ok()).collect()))
        .collect()
}

fn assert_close(actual: &[Option<f64>], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?}");
    for (actual, expected) in actual.iter().zip(expected) {
        let actual = actual.unwrap_or(f64::NAN);
        assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
    }
}

#[test]
fn range_delta_stddevs_and_quality_durations_match_hand_worked_values() {
    let (_directory, replica) = fixture();
    // Minute 0 holds 10, 40, 10 (at 0, 20, 30 s): count 3, range 30, delta 10 − 10 = 0; mean 20,
    // squared deviations 100 + 400 + 100 = 600: sample stddev √300, population √200. All the
    // minute is governed by good points: 100 % and 60 s good.
    // Minute 1 holds bad 0 at 60 s (governs [60, 90)) and 30 at 90 s (governs [90, 120), the
    // next point being at 120 s): count 2, range 30, delta 30; mean 15, squared deviations 450:
    // sample √450, population √225 = 15; 30 s good and 30 s bad, 50 % each.
    // Minute 2 holds 50 at 120 s, the series' last point, which governs to the minute's end.
    let query = windows(
        TEMP,
        "count,range,delta,stddev,stddev_population,percent_good,percent_bad,duration_good,duration_bad",
        (0, 179),
    );
    let rows = numbers(&replica, &query);
    assert_eq!(rows.iter().map(|row| row.0).collect::<Vec<_>>(), vec![0, 60, 120]);
    assert_close(&rows[0].1, &[3.0, 30.0, 0.0, 300f64.sqrt(), 200f64.sqrt(), 100.0, 0.0, 60.0, 0.0]);
    assert_close(&rows[1].1, &[2.0, 30.0, 30.0, 450f64.sqrt(), 15.0, 50.0, 50.0, 30.0, 30.0]);
    assert_eq!(rows[2].1[3], None, "no sample stddev of one number");
    assert_close(&rows[2].1[5..], &[100.0, 0.0, 60.0, 0.0]);
}

#[test]
fn the_time_basis_weighs_each_value_by_how_long_it_held() {
    let (_directory, replica) = fixture();
    // Minute 0: 10 holds [0, 20), 40 holds [20, 30), 10 holds [30, 60): weights 50 s for 10 and
    // 10 s for 40. Mean 900 / 60 = 15; Σw·(x − 15)² = 50·25 + 10·625 = 7500; population
    // variance 7500 / 60 = 125; sample: Σw² = 400 + 100 + 900 = 1400, divisor 60 − 1400/60 =
    // 110/3, variance 22500 / 110. The event basis (the default) gives 20, √300 and √200.
    let mut query = windows(TEMP, "mean,stddev,stddev_population", (0, 59));
    assert_close(&numbers(&replica, &query)[0].1, &[20.0, 300f64.sqrt(), 200f64.sqrt()]);
    query.basis = Some(Basis::Time);
    assert_close(&numbers(&replica, &query)[0].1, &[15.0, (22_500.0f64 / 110.0).sqrt(), 125f64.sqrt()]);
    // Good only, minute 1: the bad 0 governs [60, 90), left out; 30 holds [90, 120): mean 30.
    let query = QueryText { good_only: true, ..windows(TEMP, "mean", (60, 60)) };
    let query = QueryText { basis: Some(Basis::Time), ..query };
    assert_close(&numbers(&replica, &query)[0].1, &[30.0]);
}

#[test]
fn time_in_state_counts_seconds_true_and_false_and_count_takes_booleans_and_strings() {
    let (_directory, replica) = fixture();
    // Minute 0: false [0, 15), true [15, 50), false [50, 60): true 35 s, false 25 s; 3 points.
    // Minute 1: false carried [60, 75), true from 75 s to the minute's end (the last point):
    // true 45 s, false 15 s; 1 point.
    let (lines, _) = query(&replica, &windows(VALVE, "time_in_state,count", (0, 119)));
    assert_eq!(lines[0], "series,window_start,time_true,time_false,count");
    assert_eq!(
        numbers(&replica, &windows(VALVE, "time_in_state,count", (0, 119))),
        vec![(0, vec![Some(35.0), Some(25.0), Some(3.0)]), (60, vec![Some(45.0), Some(15.0), Some(1.0)])]
    );
    // Strings count and have a first; one per minute.
    let rows = rows(&replica, &windows(MODE, "count,first", (0, 119)));
    assert_eq!(
        rows.iter().map(|row| (row.1, row.2.clone())).collect::<Vec<_>>(),
        vec![(0, vec!["1".to_owned(), "heat".to_owned()]), (60, vec!["1".to_owned(), "hold".to_owned()])]
    );
}

#[test]
fn time_in_state_over_a_glob_leaves_out_series_without_booleans_and_says_so() {
    let (_directory, replica) = fixture();
    let (lines, written) = query(&replica, &windows("plant1/reactor/*", "time_in_state", (0, 59)));
    assert_eq!(lines[1..], [format!("{VALVE},{T0},35,25")]);
    let note = written.note.expect("a note");
    assert!(
        note.contains("left out 2 series holding values other than booleans, which have no time_in_state"),
        "{note}"
    );
    assert!(note.contains(MODE) && note.contains(TEMP), "{note}");
    // Over strings only, refused with the series named.
    let request = QueryRequest::parse(&windows(MODE, "time_in_state", (0, 59)), Syntax::Cli, NOW).unwrap();
    let error = write_query_with(&replica, &request, (Format::Csv, TimeFormat::Ns), None, Vec::new()).unwrap_err();
    let expected = "plant1/reactor/mode holds values other than booleans, which have no time_in_state";
    assert!(error.to_string().contains(expected), "{error}");
}

#[test]
fn boundary_outside_adds_the_points_around_the_range() {
    let (_directory, replica) = fixture();
    // [10 s, 80 s] holds 40 at 20, 10 at 30 and bad 0 at 60; outside adds 10 at 0 and 30 at 90.
    let query = QueryText { boundary: Some(Boundary::Outside), ..text(TEMP, at(10), at(80)) };
    let rows = rows(&replica, &query);
    assert_eq!(rows.iter().map(|row| row.1).collect::<Vec<_>>(), vec![0, 20, 30, 60, 90]);
    assert_eq!(rows[3].2, ["0", "bad"]);
    // Good only: the bounds are good points too, and the bad point is not read.
    let good = QueryText { good_only: true, ..query.clone() };
    assert_eq!(rows_offsets(&replica, &good), vec![0, 20, 30, 90]);
    // A point exactly on an end is that end's bound: [20 s, 30 s] adds nothing.
    let exact = QueryText { boundary: Some(Boundary::Outside), ..text(TEMP, at(20), at(30)) };
    assert_eq!(rows_offsets(&replica, &exact), vec![20, 30]);
    // Inside, the default, is the range alone.
    assert_eq!(rows_offsets(&replica, &text(TEMP, at(10), at(80))), vec![20, 30, 60]);
}

fn rows_offsets(replica: &Replica, text: &QueryText) -> Vec<i64> {
    rows(replica, text).iter().map(|row| row.1).collect()
}

#[test]
fn boundary_interpolated_adds_end_values_and_a_bad_neighbour_makes_them_bad() {
    let (_directory, replica) = fixture();
    // [10 s, 75 s]: at 10 s, 10 → 40 over 0..20 s gives 25 (good); at 75 s, bad 0 at 60 s → 30
    // at 90 s gives 15, bad (the worse neighbour).
    let query = QueryText { boundary: Some(Boundary::Interpolated), ..text(TEMP, at(10), at(75)) };
    let rows = rows(&replica, &query);
    let expected: Vec<(i64, [&str; 2])> =
        vec![(10, ["25", "good"]), (20, ["40", "good"]), (30, ["10", "good"]), (60, ["0", "bad"]), (75, ["15", "bad"])];
    assert_eq!(rows.iter().map(|row| (row.1, [row.2[0].as_str(), row.2[1].as_str()])).collect::<Vec<_>>(), expected);
    // Good only: the bad point is skipped; 75 s lies on 10 at 30 s → 30 at 90 s: 10 + 20·45/60 = 25.
    let good = QueryText { good_only: true, ..query };
    assert_values(&replica, &good, &[(10, Some(25.0)), (20, Some(40.0)), (30, Some(10.0)), (75, Some(25.0))]);
    // At 100 s, 30 → 50 over 90..120 s gives 30 + 20/3; past the last point (120 s) the end has
    // no value: listed empty.
    let past = QueryText { boundary: Some(Boundary::Interpolated), ..text(TEMP, at(100), at(150)) };
    assert_values(&replica, &past, &[(100, Some(30.0 + 20.0 / 3.0)), (120, Some(50.0)), (150, None)]);
}

/// Each row's time offset and value (`None` when empty), checked against `expected` to 1e-9.
fn assert_values(replica: &Replica, text: &QueryText, expected: &[(i64, Option<f64>)]) {
    let actual: Vec<(i64, Option<f64>)> =
        rows(replica, text).into_iter().map(|row| (row.1, row.2[0].parse().ok())).collect();
    assert_eq!(actual.len(), expected.len(), "{actual:?}");
    for ((offset, value), (expected_offset, expected_value)) in actual.iter().zip(expected) {
        assert_eq!(offset, expected_offset, "{actual:?}");
        match (value, expected_value) {
            (Some(value), Some(expected)) => assert!((value - expected).abs() < 1e-9, "{actual:?}"),
            (value, expected) => assert_eq!(value, expected, "{actual:?}"),
        }
    }
}

#[test]
fn values_at_given_times_are_interpolated_or_the_previous_point() {
    let (_directory, replica) = fixture();
    // Asked out of order and with a repeat: answered sorted, once. At −10 s nothing yet; at
    // 10 s, 10 → 40 gives 25; at 30 s the point itself, 10; at 100 s, 30 → 50 over 90..120 s
    // gives 30 + 20/3; at 200 s, past the last point, nothing (interpolated) or 50 still
    // (previous).
    let times = [200, 10, -10, 30, 100, 10].map(|seconds: i64| at(seconds).to_string()).join(",");
    let query = QueryText { series: TEMP.into(), at: Some(times), ..QueryText::default() };
    let interpolated = [(-10, None), (10, Some(25.0)), (30, Some(10.0)), (100, Some(30.0 + 20.0 / 3.0)), (200, None)];
    assert_values(&replica, &query, &interpolated);
    let previous = QueryText { at_mode: Some(AtMode::Previous), ..query.clone() };
    let held = [(-10, None), (10, Some(10.0)), (30, Some(10.0)), (100, Some(30.0)), (200, Some(50.0))];
    assert_values(&replica, &previous, &held);
    // Booleans and strings take the earlier point's value between points; --from keeps only the
    // later times (30, 100 and 200 s).
    let glob = QueryText { series: "plant1/reactor/*".into(), from: Some(at(30).to_string()), ..query };
    let got: Vec<(String, i64, String)> =
        rows(&replica, &glob).into_iter().map(|row| (row.0, row.1, row.2[0].clone())).collect();
    assert!(got.contains(&(MODE.to_owned(), 30, "heat".to_owned())), "{got:?}");
    assert!(got.contains(&(VALVE.to_owned(), 30, "true".to_owned())), "{got:?}");
    assert_eq!(got.len(), 9, "{got:?}");
    assert!(got.iter().all(|row| row.1 >= 30), "{got:?}");
}

#[test]
fn plot_keeps_at_most_five_points_per_interval_in_time_order() {
    let (_directory, replica) = fixture();
    // TEMP over [0, 120 s) in 2 intervals of 60 s. [0, 60): 10 at 0 (first, and min by the
    // earliest tie), 40 at 20 (max), 10 at 30 (last). [60, 120): bad 0 at 60 (first, min, bad),
    // 30 at 90 (last, max).
    let query = QueryText { plot: Some("2".into()), ..text(TEMP, at(0), at(120) - 1) };
    assert_eq!(rows_offsets(&replica, &query), vec![0, 20, 30, 60, 90]);
    // DENSE, 600 points, in 10 intervals of 60 s: each keeps its first (s mod 10 = 0, also the
    // min), its first 9 (max) and its last (9): 3 points, 30 in all; the interval from 300 s
    // keeps 300, the bad 100 at 305 (max and bad) and 359.
    let query = QueryText { plot: Some("10".into()), ..text(DENSE, at(0), at(600) - 1) };
    let offsets = rows_offsets(&replica, &query);
    assert_eq!(offsets.len(), 30);
    assert_eq!(offsets[..6], [0, 9, 59, 60, 69, 119]);
    assert_eq!(offsets[15..18], [300, 305, 359]);
}

#[test]
fn at_times_and_plot_intervals_are_bounded_and_bad_input_names_the_parameter() {
    let too_many = (0..10_001).map(|i| (T0 + i).to_string()).collect::<Vec<_>>().join(",");
    let cases: Vec<(QueryText, &str)> = vec![
        (
            QueryText { series: TEMP.into(), at: Some(too_many), ..QueryText::default() },
            "--at lists 10001 times; the limit is 10000",
        ),
        (
            QueryText { series: TEMP.into(), at: Some("now,,-1h".into()), ..QueryText::default() },
            "--at \"now,,-1h\" has an empty time",
        ),
        (
            QueryText { plot: Some("0".into()), ..text(TEMP, 0, NOW) },
            "--plot \"0\" is not a number of intervals from 1 to 10000",
        ),
        (QueryText { plot: Some("10001".into()), ..text(TEMP, 0, NOW) }, "--plot \"10001\""),
        (
            QueryText { plot: Some("10".into()), every: Some("1m".into()), ..text(TEMP, 0, NOW) },
            "--every and --plot cannot be combined",
        ),
        (
            QueryText { boundary: Some(Boundary::Outside), every: Some("1m".into()), ..text(TEMP, 0, NOW) },
            "--boundary applies only to raw reads, not with --every",
        ),
        (QueryText { at_mode: Some(AtMode::Previous), ..text(TEMP, 0, NOW) }, "--at-mode applies only with --at"),
        (
            QueryText { basis: Some(Basis::Time), ..windows(TEMP, "max", (0, 60)) },
            "--basis applies only with --agg mean, stddev or stddev_population",
        ),
        (
            QueryText { good_only: true, ..windows(TEMP, "percent_bad", (0, 60)) },
            "--agg percent_bad measures quality, which --good-only would leave out",
        ),
    ];
    for (text, expected) in cases {
        let error = QueryRequest::parse(&text, Syntax::Cli, NOW).unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// An HTTP/1.0 GET, so the body comes unchunked and ends with the connection: (status, body).
fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("end of headers");
    (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_owned())
}

fn serve() -> (tempfile::TempDir, SocketAddr, tokio::runtime::Runtime) {
    let directory = tempfile::tempdir().unwrap();
    build(directory.path());
    let shared = Arc::new(Shared::new(Replica::open(directory.path()).unwrap()));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = diode_receiver::http::routes().with_state(AppState { shared, token: None });
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (directory, address, runtime)
}

/// Every row of `path`'s answer, following `next` page by page; and how many pages it took.
fn all_pages(address: SocketAddr, path: &str) -> (Vec<serde_json::Value>, usize) {
    let (mut rows, mut pages, mut path) = (Vec::new(), 0, path.to_owned());
    loop {
        let (status, body) = get(address, &path);
        assert_eq!(status, 200, "{path}: {body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        rows.extend(page["rows"].as_array().unwrap().iter().cloned());
        pages += 1;
        match page["next"].as_str() {
            Some(next) => path = next.to_owned(),
            None => return (rows, pages),
        }
    }
}

#[test]
fn http_takes_the_same_parameters_and_refuses_bad_ones_by_name() {
    let (_directory, address, _runtime) = serve();
    let base = format!("/api/v1/query?series={TEMP}&time_format=ns");
    let (status, body) = get(address, &format!("{base}&from={T0}&to={}&every=1m&agg=mean&basis=time", at(59)));
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["rows"][0]["mean"], 15.0);
    let (status, body) = get(address, &format!("{base}&at={},{}&at_mode=previous", at(100), at(200)));
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let values: Vec<f64> = json["rows"].as_array().unwrap().iter().map(|row| row["value"].as_f64().unwrap()).collect();
    assert_eq!(values, vec![30.0, 50.0]);
    for (parameters, message) in [
        ("&boundary=sideways", "boundary \\\"sideways\\\" is not a boundary; use inside, outside or interpolated"),
        ("&at_mode=nearest&at=now", "at_mode \\\"nearest\\\" is not an at mode"),
        ("&plot=many", "plot \\\"many\\\" is not a number of intervals"),
        ("&every=1m&agg=mean&basis=weighted", "basis \\\"weighted\\\" is not a basis"),
        ("&at=yesterday", "{\"error\":\"at "),
        ("&every=1m&agg=percent_good&good_only=true", "agg percent_good measures quality, which good_only"),
        ("&resume_from=0", "resume_from applies only with resume_series"),
    ] {
        let (status, body) = get(address, &format!("{base}{parameters}"));
        assert_eq!(status, 400, "{parameters}: {body}");
        assert!(body.contains("\"error\"") && body.contains(message), "{parameters}: {body}");
    }
}

#[test]
fn http_pages_of_bounded_plot_and_at_reads_return_every_row_once() {
    let (_directory, address, _runtime) = serve();
    let range = format!("from={}&to={}&time_format=ns", at(10), at(75));
    for query in [
        format!("series=plant1/reactor/*&boundary=outside&{range}"),
        format!("series=plant1/reactor/temp&boundary=interpolated&{range}"),
        format!("series=plant1/reactor/*&boundary=interpolated&{range}"),
        format!("series=plant1/*&plot=10&from={T0}&to={}&time_format=ns", at(599)),
        format!("series=plant1/reactor/*&at={},{},{}&time_format=ns", at(10), at(30), at(100)),
    ] {
        let (whole, pages) = all_pages(address, &format!("/api/v1/query?{query}&limit=1000"));
        assert_eq!(pages, 1, "{query}");
        for limit in [1, 2, 7] {
            let (paged, pages) = all_pages(address, &format!("/api/v1/query?{query}&limit={limit}"));
            assert_eq!(paged, whole, "{query} in pages of {limit}");
            assert_eq!(pages, whole.len().div_ceil(limit).max(1), "{query} in pages of {limit}");
        }
    }
}

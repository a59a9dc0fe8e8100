//! Queries over a real replica: segments sealed and signed with `seal::seal`, applied with
//! `Replica::apply`, then read back through the CLI's query functions and the HTTP routes (served
//! on 127.0.0.1 while another thread keeps applying segments). Expected values are worked by hand
//! from the records below.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use diode_common::codec::{SeriesColumns, group_records};
use diode_common::keys::SenderKey;
use diode_common::record::{Quality, Record, SeriesKey, Value};
use diode_common::seal::{self, ChainPosition, GENESIS_HASH, SegmentHash};
use diode_receiver::query::cli::{write_query, write_series};
use diode_receiver::query::core::aggregate::TwaMode;
use diode_receiver::query::core::interpolate::Method;
use diode_receiver::query::output::{Format, TimeFormat};
use diode_receiver::query::request::{QueryRequest, QueryText, Syntax};
use diode_receiver::query::source::{LockedReplica, PointSource};
use diode_receiver::state::{AppState, Shared};
use diode_replica::Replica;

/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200_000_000_000;
const SECOND: i64 = 1_000_000_000;
const HOUR: i64 = 3_600 * SECOND;
const NOW: i64 = T0 + 24 * HOUR;

const TEMP: &str = "plant1/boiler3/steam_temp";
const TAGGED: &str = "plant1/boiler4/steam_temp{unit=C}";
const FLOW: &str = "plant1/boiler3/steam_flow";
const VALVE: &str = "valve/state";
const PUMP: &str = "plant2/pump1/flow";

/// Seals consecutive segments of one (sender, epoch) chain.
struct Chain {
    key: SenderKey,
    next_sequence: u64,
    previous_hash: SegmentHash,
}

impl Chain {
    fn new() -> Chain {
        Chain { key: SenderKey::from_seed([5u8; 32]), next_sequence: 1, previous_hash: GENESIS_HASH }
    }

    fn apply(&mut self, replica: &mut Replica, records: &[Record]) {
        let position =
            ChainPosition { sender_id: 1, epoch: 1, sequence: self.next_sequence, previous_hash: self.previous_hash };
        let segment = seal::seal(position, &group_records(records), 3, T0, &self.key);
        let series: Vec<SeriesColumns> = seal::decode_verified(&segment).expect("decodes");
        replica.apply(&segment, &series, T0).expect("apply");
        self.next_sequence += 1;
        self.previous_hash = segment.hash();
    }
}

fn record(series: &str, timestamp_ns: i64, value: Value, quality: Quality) -> Record {
    let key = match series.split_once('{') {
        Some((name, tags)) => {
            let tags = tags.trim_end_matches('}').split(',').map(|tag| {
                let (k, v) = tag.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            });
            SeriesKey::with_tags(name, tags.collect())
        }
        None => SeriesKey::new(series),
    };
    Record { series: key, timestamp_ns, value, quality }
}

fn good(series: &str, timestamp_ns: i64, value: f64) -> Record {
    record(series, timestamp_ns, Value::F64(value), Quality::GOOD)
}

/// The replica every test reads:
/// - TEMP: 0, 1, …, 59 every 10 s from T0 (ten minutes);
/// - TAGGED: 10 at T0, 20 at T0 + 5 h (one point each side of a five-hour gap);
/// - FLOW: 1 (good) at T0, 100 (bad) at T0 + 10 s, 3 (good) at T0 + 20 s, 3 (good) at T0 + 30 s;
/// - VALVE: "open" at T0 + 1 s, "closed" at T0 + 2 s;
/// - PUMP: 1 at T0, rewritten to 2 by a later segment (last write wins).
fn build(path: &std::path::Path) -> Chain {
    let mut replica = Replica::open(path).unwrap();
    let mut chain = Chain::new();
    let mut first: Vec<Record> = (0..60).map(|i| good(TEMP, T0 + i * 10 * SECOND, i as f64)).collect();
    first.push(good(TAGGED, T0, 10.0));
    first.push(good(FLOW, T0, 1.0));
    first.push(record(FLOW, T0 + 10 * SECOND, Value::F64(100.0), Quality::BAD));
    first.push(good(FLOW, T0 + 20 * SECOND, 3.0));
    first.push(good(FLOW, T0 + 30 * SECOND, 3.0));
    first.push(record(VALVE, T0 + SECOND, Value::String("open".into()), Quality::GOOD));
    first.push(record(VALVE, T0 + 2 * SECOND, Value::String("closed".into()), Quality::GOOD));
    first.push(good(PUMP, T0, 1.0));
    chain.apply(&mut replica, &first);
    chain.apply(&mut replica, &[good(TAGGED, T0 + 5 * HOUR, 20.0), good(PUMP, T0, 2.0)]);
    chain
}

fn text(series: &str, from_ns: i64, to_ns: i64) -> QueryText {
    QueryText {
        series: series.to_owned(),
        from: Some(from_ns.to_string()),
        to: Some(to_ns.to_string()),
        ..QueryText::default()
    }
}

fn run(replica: &Replica, text: &QueryText, format: Format) -> String {
    let request = QueryRequest::parse(text, Syntax::Cli, NOW).expect("valid query");
    let mut out = Vec::new();
    write_query(replica, &request, format, TimeFormat::Ns, &mut out).expect("query");
    String::from_utf8(out).unwrap()
}

/// CSV rows without the header, split into fields (no field here needs quoting).
fn csv_rows(replica: &Replica, text: &QueryText) -> Vec<Vec<String>> {
    run(replica, text, Format::Csv).lines().skip(1).map(|line| line.split(',').map(str::to_owned).collect()).collect()
}

fn fixture() -> (tempfile::TempDir, Replica) {
    let directory = tempfile::tempdir().unwrap();
    build(directory.path());
    let replica = Replica::open_read_only(directory.path()).unwrap();
    (directory, replica)
}

#[test]
fn series_listing_shows_each_series_with_type_times_and_count() {
    let (_directory, replica) = fixture();
    let mut out = Vec::new();
    let listed = write_series(&replica, Some("plant1/*"), Format::Csv, TimeFormat::Rfc3339, &mut out).unwrap();
    assert_eq!(listed, 3);
    let csv = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "series,name,tags,type,mixed_kinds,first,last,points_estimate");
    assert_eq!(
        lines[1],
        "plant1/boiler3/steam_flow,plant1/boiler3/steam_flow,,float,false,2024-01-01T00:00:00Z,2024-01-01T00:00:30Z,4"
    );
    assert_eq!(
        lines[3],
        "plant1/boiler4/steam_temp{unit=C},plant1/boiler4/steam_temp,unit=C,float,false,2024-01-01T00:00:00Z,2024-01-01T05:00:00Z,2"
    );
    let mut out = Vec::new();
    write_series(&replica, None, Format::Json, TimeFormat::Ns, &mut out).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let valve = json["series"].as_array().unwrap().iter().find(|s| s["series"] == VALVE).unwrap();
    assert_eq!(valve["type"], "string");
    assert_eq!(valve["tags"], serde_json::json!({}));
    assert_eq!(valve["first"], T0 + SECOND);
}

#[test]
fn raw_queries_return_the_points_of_an_inclusive_range() {
    let (_directory, replica) = fixture();
    let rows = csv_rows(&replica, &text(TEMP, T0 + 20 * SECOND, T0 + 40 * SECOND));
    let expected: Vec<Vec<String>> = [(20, "2"), (30, "3"), (40, "4")]
        .iter()
        .map(|(s, v)| vec![TEMP.to_owned(), (T0 + s * SECOND).to_string(), (*v).to_owned(), "good".to_owned()])
        .collect();
    assert_eq!(rows, expected);
}

#[test]
fn a_corrected_value_replaces_the_old_one_in_queries() {
    let (_directory, replica) = fixture();
    let rows = csv_rows(&replica, &text(PUMP, T0, T0 + HOUR));
    assert_eq!(rows, vec![vec![PUMP.to_owned(), T0.to_string(), "2".to_owned(), "good".to_owned()]]);
}

#[test]
fn good_only_skips_bad_points_in_raw_queries() {
    let (_directory, replica) = fixture();
    assert_eq!(csv_rows(&replica, &text(FLOW, T0, T0 + HOUR)).len(), 4);
    let rows = csv_rows(&replica, &QueryText { good_only: true, ..text(FLOW, T0, T0 + HOUR) });
    assert_eq!(rows.iter().map(|r| r[2].as_str()).collect::<Vec<_>>(), vec!["1", "3", "3"]);
}

#[test]
fn minute_aggregates_match_hand_worked_values() {
    let (_directory, replica) = fixture();
    // Window m holds the values 6m .. 6m+5: count 6, min 6m, max 6m+5, sum 36m+15, mean 6m+2.5,
    // sample stddev sqrt(3.5). The range 00:00:30 .. 00:01:00 covers windows 0 and 1, whole.
    let query = QueryText {
        every: Some("1m".into()),
        agg: Some("count,min,max,sum,mean,stddev,first,last".into()),
        ..text(TEMP, T0 + 30 * SECOND, T0 + 60 * SECOND)
    };
    let rows = csv_rows(&replica, &query);
    assert_eq!(rows.len(), 2);
    for (m, row) in rows.iter().enumerate() {
        let m = m as f64;
        assert_eq!(row[1], (T0 + m as i64 * 60 * SECOND).to_string());
        let numbers: Vec<f64> = row[2..].iter().map(|x| x.parse().unwrap()).collect();
        let expected =
            [6.0, 6.0 * m, 6.0 * m + 5.0, 36.0 * m + 15.0, 6.0 * m + 2.5, 3.5f64.sqrt(), 6.0 * m, 6.0 * m + 5.0];
        for (actual, expected) in numbers.iter().zip(expected) {
            assert!((actual - expected).abs() < 1e-9, "window {m}: {numbers:?}");
        }
    }
}

#[test]
fn empty_windows_are_reported_with_count_zero_when_asked() {
    let (_directory, replica) = fixture();
    // TEMP ends at 00:09:50; the 10-minute windows 00:00 and 00:10. By default the empty one is
    // left out; --empty-windows reports it.
    let query = QueryText {
        every: Some("10m".into()),
        agg: Some("count,mean".into()),
        ..text(TEMP, T0, T0 + 10 * 60 * SECOND)
    };
    assert_eq!(csv_rows(&replica, &query).len(), 1);
    let query = QueryText { empty_windows: true, ..query };
    let rows = csv_rows(&replica, &query);
    assert_eq!(rows[0][2..], ["60".to_owned(), "29.5".to_owned()]);
    assert_eq!(rows[1][2..], ["0".to_owned(), String::new()]);
    let json: serde_json::Value = serde_json::from_str(&run(&replica, &query, Format::Json)).unwrap();
    assert_eq!(json["rows"][1]["count"], 0);
    assert_eq!(json["rows"][1]["mean"], serde_json::Value::Null);
}

#[test]
fn twa_carries_the_value_in_across_a_five_hour_gap() {
    let (_directory, replica) = fixture();
    // Window 03:00..04:00 of TAGGED holds no point; 10 at 00:00 is the carry-in, 20 at 05:00 next.
    let query = QueryText {
        every: Some("1h".into()),
        agg: Some("twa,count".into()),
        ..text(TAGGED, T0 + 3 * HOUR, T0 + 3 * HOUR)
    };
    assert_eq!(
        csv_rows(&replica, &query),
        vec![vec![TAGGED.to_owned(), (T0 + 3 * HOUR).to_string(), "10".to_owned(), "0".to_owned()]]
    );
    // Linear: the line 10→20 over 0..5 h is 16 at 03:00 and 18 at 04:00; the mean is 17.
    let linear = QueryText { twa_mode: Some(TwaMode::Linear), ..query };
    assert_eq!(csv_rows(&replica, &linear)[0][2], "17");
}

#[test]
fn twa_with_good_only_leaves_out_the_bad_stretch() {
    let (_directory, replica) = fixture();
    // FLOW in 00:00..00:01: 1 over [0,10), bad 100 over [10,20), 3 over [20,60) (the last point
    // holds to the window end). All: (10 + 1000 + 120) / 60. Good only: (10 + 120) / 50 = 2.6.
    let query = QueryText { every: Some("1m".into()), agg: Some("twa".into()), ..text(FLOW, T0, T0) };
    let all: f64 = csv_rows(&replica, &query)[0][2].parse().unwrap();
    assert!((all - 1130.0 / 60.0).abs() < 1e-9, "{all}");
    let good_only: f64 = csv_rows(&replica, &QueryText { good_only: true, ..query })[0][2].parse().unwrap();
    assert!((good_only - 2.6).abs() < 1e-9, "{good_only}");
}

#[test]
fn interpolation_is_linear_between_points_and_absent_past_the_last() {
    let (_directory, replica) = fixture();
    // TEMP is i at 10·i s: at 15 s linear gives 1.5, previous 1; at 600 s (past 590 s) nothing.
    let query = QueryText { interpolate: Some("5s".into()), ..text(TEMP, T0 + 15 * SECOND, T0 + 20 * SECOND) };
    let values: Vec<String> = csv_rows(&replica, &query).into_iter().map(|row| row[2].clone()).collect();
    assert_eq!(values, vec!["1.5", "2"]);
    let previous = QueryText { method: Some(Method::Previous), ..query };
    assert_eq!(csv_rows(&replica, &previous)[0][2], "1");
    let past = QueryText { interpolate: Some("10s".into()), ..text(TEMP, T0 + 590 * SECOND, T0 + 600 * SECOND) };
    let rows = csv_rows(&replica, &past);
    assert_eq!((rows[0][2].as_str(), rows[1][2].as_str(), rows[1][3].as_str()), ("59", "", ""));
    // The carry-in comes from before the range, across the five-hour gap of TAGGED.
    let tagged = QueryText { interpolate: Some("1h".into()), ..text(TAGGED, T0 + 4 * HOUR, T0 + 4 * HOUR) };
    assert_eq!(csv_rows(&replica, &tagged)[0][2], "18");
}

#[test]
fn latest_gives_the_last_point_optionally_before_to_and_good() {
    let (_directory, replica) = fixture();
    let latest = |to: Option<i64>, good_only: bool| {
        let query = QueryText {
            series: "plant1/boiler3/*".into(),
            latest: true,
            to: to.map(|t| t.to_string()),
            good_only,
            ..QueryText::default()
        };
        csv_rows(&replica, &query).into_iter().map(|row| (row[0].clone(), row[2].clone())).collect::<Vec<_>>()
    };
    assert_eq!(latest(None, false), vec![(FLOW.to_owned(), "3".to_owned()), (TEMP.to_owned(), "59".to_owned())]);
    assert_eq!(
        latest(Some(T0 + 15 * SECOND), false),
        vec![(FLOW.to_owned(), "100".to_owned()), (TEMP.to_owned(), "1".to_owned())]
    );
    assert_eq!(
        latest(Some(T0 + 15 * SECOND), true),
        vec![(FLOW.to_owned(), "1".to_owned()), (TEMP.to_owned(), "1".to_owned())]
    );
}

#[test]
fn unknown_series_are_refused_with_suggestions() {
    let (_directory, replica) = fixture();
    let request = QueryRequest::parse(&text("plant1/boiler3/steam_tmp", T0, NOW), Syntax::Cli, NOW).unwrap();
    let error = write_query(&replica, &request, Format::Csv, TimeFormat::Ns, Vec::new()).unwrap_err().to_string();
    assert!(
        error.starts_with("no series named \"plant1/boiler3/steam_tmp\"; did you mean: plant1/boiler3/steam_temp, "),
        "{error}"
    );
    let request =
        QueryRequest::parse(&QueryText { every: Some("1m".into()), ..text(VALVE, T0, NOW) }, Syntax::Cli, NOW).unwrap();
    let error = write_query(&replica, &request, Format::Csv, TimeFormat::Ns, Vec::new()).unwrap_err().to_string();
    assert!(error.contains("holds strings"), "{error}");
}

#[test]
fn batched_scans_under_the_lock_return_exactly_the_direct_scan() {
    // A sparse start, a two-year gap, then 10 Hz for two hours (72,000 points: more than one
    // batch holds, arriving while batches are wide), then sparse again.
    let directory = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(directory.path()).unwrap();
    let mut chain = Chain::new();
    let series = "plant1/vibration";
    chain.apply(&mut replica, &[good(series, T0, 1.0), good(series, T0 + 90 * SECOND, 2.0)]);
    let dense_start = T0 + 2 * 365 * 24 * HOUR + 1_234 * SECOND;
    for block in 0..8i64 {
        let records: Vec<Record> =
            (0..9_000i64).map(|i| good(series, dense_start + (block * 9_000 + i) * SECOND / 10, i as f64)).collect();
        chain.apply(&mut replica, &records);
    }
    chain.apply(&mut replica, &[good(series, dense_start + 30 * 24 * HOUR, 3.0)]);
    let id = replica.series_list()[0].id;
    let direct: Vec<_> = replica.scan(id, i64::MIN, i64::MAX).map(Result::unwrap).collect();
    assert_eq!(direct.len(), 2 + 72_000 + 1);
    let lock = RwLock::new(replica);
    let locked = LockedReplica(&lock);
    for (from, to) in [(i64::MIN, i64::MAX), (T0 + SECOND, dense_start + HOUR), (dense_start + 5, dense_start + 5)] {
        let batched: Vec<_> = locked.scan(id, from, to).map(Result::unwrap).collect();
        let expected: Vec<_> = direct.iter().filter(|p| (from..=to).contains(&p.timestamp_ns)).cloned().collect();
        assert_eq!(batched, expected, "{from}..={to}");
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

struct Response {
    status: u16,
    content_type: String,
    body: String,
}

/// A minimal HTTP/1.1 GET over a plain socket (chunked bodies decoded).
fn get(address: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut body = raw[split + 4..].to_vec();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|line| {
                line.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    if header("transfer-encoding").eq_ignore_ascii_case("chunked") {
        let mut decoded = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16).unwrap();
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = decoded;
    }
    Response { status, content_type: header("content-type"), body: String::from_utf8(body).unwrap() }
}

/// Serves the query routes of `shared` on 127.0.0.1:0 from a background runtime.
fn serve(shared: Arc<Shared>, token: Option<&str>) -> (SocketAddr, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let state = AppState { shared, token: token.map(Arc::from) };
    let app = diode_receiver::http::routes().with_state(state);
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, runtime)
}

fn shared(replica: Replica) -> Arc<Shared> {
    Arc::new(Shared::new(replica))
}

#[test]
fn http_pages_through_a_query_with_next_and_returns_every_row_once() {
    let directory = tempfile::tempdir().unwrap();
    build(directory.path());
    let (address, _runtime) = serve(shared(Replica::open(directory.path()).unwrap()), None);
    let mut path = format!("/api/v1/query?series=plant1/*&from={T0}&to={NOW}&limit=7&time_format=ns");
    let mut rows: Vec<(String, i64)> = Vec::new();
    let mut pages = 0;
    loop {
        let response = get(address, &path, &[]);
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.content_type, "application/json");
        let page: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        let page_rows = page["rows"].as_array().unwrap();
        assert!(page_rows.len() <= 7);
        rows.extend(page_rows.iter().map(|r| (r["series"].as_str().unwrap().to_owned(), r["time"].as_i64().unwrap())));
        pages += 1;
        match page["next"].as_str() {
            Some(next) => path = next.to_owned(),
            None => break,
        }
    }
    // 4 FLOW + 60 TEMP + 2 TAGGED points = 66 rows in 10 pages, in series then time order, once.
    assert_eq!(rows.len(), 66);
    assert_eq!(pages, 10);
    let mut sorted = rows.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, rows);
}

#[test]
fn http_errors_are_json_with_the_right_status() {
    let directory = tempfile::tempdir().unwrap();
    build(directory.path());
    let (address, _runtime) = serve(shared(Replica::open(directory.path()).unwrap()), Some("s3cret"));
    let bearer = [("Authorization", "Bearer s3cret")];
    let cases = [
        ("/api/v1/query?series=plant1/boiler3/steam_temp", &[][..], 401, "bearer token"),
        ("/api/v1/query?series=plant1/boiler3/steam_tmp", &bearer[..], 404, "did you mean: plant1/boiler3/steam_temp"),
        ("/api/v1/query?series=a&from=now&to=-1h", &bearer[..], 400, "is after to"),
        ("/api/v1/query?series=a&every=0s", &bearer[..], 400, "every \\\"0s\\\" is zero"),
        ("/api/v1/query?series=a&form=-1h", &bearer[..], 400, "unknown parameter"),
        ("/api/v1/query?from=-1h", &bearer[..], 400, "series is required"),
        ("/api/v1/query?series=a&limit=5000000", &bearer[..], 400, "limit"),
    ];
    for (path, headers, status, message) in cases {
        let response = get(address, path, headers);
        assert_eq!(response.status, status, "{path}: {}", response.body);
        assert!(response.content_type.starts_with("application/json"), "{path}");
        let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        assert!(body["error"].is_string(), "{path}");
        assert!(response.body.contains(message), "{path}: {}", response.body);
    }
}

#[test]
fn http_serves_csv_when_asked_and_lists_series() {
    let directory = tempfile::tempdir().unwrap();
    build(directory.path());
    let (address, _runtime) = serve(shared(Replica::open(directory.path()).unwrap()), None);
    let path =
        format!("/api/v1/query?series=plant1/boiler3/steam_temp&from={T0}&to={}&time_format=ns", T0 + 10 * SECOND);
    let response = get(address, &path, &[("Accept", "text/csv")]);
    assert_eq!(response.status, 200);
    assert!(response.content_type.starts_with("text/csv"));
    assert_eq!(
        response.body,
        format!("series,time,value,quality\n{TEMP},{T0},0,good\n{TEMP},{},1,good\n", T0 + 10 * SECOND)
    );
    let path = format!(
        "/api/v1/query?series={TEMP}&from={T0}&to={}&every=1m&agg=mean,twa&format=csv&time_format=ns",
        T0 + 60 * SECOND
    );
    let response = get(address, &path, &[]);
    let lines: Vec<&str> = response.body.lines().collect();
    assert_eq!(lines[0], "series,window_start,mean,twa");
    assert_eq!(lines[1], format!("{TEMP},{T0},2.5,2.5"));
    let response = get(address, "/api/v1/series?match=valve*", &[]);
    let json: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(json["series"].as_array().unwrap().len(), 1);
    assert_eq!(json["series"][0]["type"], "string");
}

#[test]
fn http_queries_while_segments_are_applied_see_only_growing_answers() {
    let directory = tempfile::tempdir().unwrap();
    let mut chain = build(directory.path());
    let shared = shared(Replica::open(directory.path()).unwrap());
    let (address, _runtime) = serve(Arc::clone(&shared), None);
    let done = Arc::new(AtomicBool::new(false));
    let ingest = {
        let (shared, done) = (Arc::clone(&shared), Arc::clone(&done));
        std::thread::spawn(move || {
            // 200 segments of 600 points of a new 1 Hz series, a minute of data per segment… and
            // the existing TEMP continued, so queries of both grow.
            for segment in 0..200i64 {
                let start = T0 + HOUR + segment * 600 * SECOND;
                let records: Vec<Record> = (0..600)
                    .flat_map(|i| {
                        [good("plant1/live/level", start + i * SECOND, i as f64), good(TEMP, start + i * SECOND, 1.0)]
                    })
                    .collect();
                let mut replica = shared.replica.write().unwrap();
                chain.apply(&mut replica, &records);
            }
            done.store(true, Ordering::Relaxed);
        })
    };
    let to = T0 + 48 * HOUR;
    let path = format!("/api/v1/query?series=plant1/*&from={T0}&to={to}&limit=1000000&format=json");
    let aggregate_path = format!("/api/v1/query?series={TEMP}&from={T0}&to={to}&every=1h&agg=count,twa&limit=1000000");
    let (mut last_rows, mut last_count, mut queries) = (0usize, 0u64, 0);
    while !done.load(Ordering::Relaxed) || queries < 3 {
        let response = get(address, &path, &[]);
        assert_eq!(response.status, 200, "{}", response.body);
        let page: serde_json::Value = serde_json::from_str(&response.body).expect("every answer is valid JSON");
        assert!(page.get("error").is_none(), "{}", page["error"]);
        assert!(page["next"].is_null());
        let rows = page["rows"].as_array().unwrap().len();
        assert!(rows >= last_rows, "rows went from {last_rows} to {rows}");
        last_rows = rows;

        let response = get(address, &aggregate_path, &[]);
        let page: serde_json::Value = serde_json::from_str(&response.body).expect("every answer is valid JSON");
        let count: u64 = page["rows"].as_array().unwrap().iter().map(|row| row["count"].as_u64().unwrap()).sum();
        assert!(count >= last_count, "counts went from {last_count} to {count}");
        last_count = count;
        queries += 1;
    }
    ingest.join().unwrap();
    // Everything applied is finally visible: 66 original rows + 2 × 120,000.
    let response = get(address, &path, &[]);
    let page: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(page["rows"].as_array().unwrap().len(), 66 + 240_000);
    assert!(queries >= 3);
}

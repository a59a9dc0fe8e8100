//! The Prometheus-compatible API (`/prometheus`) against real clients, over a replica built from
//! known data and served by the receiver's own HTTP server on 127.0.0.1: `promtool` (Debian's
//! `prometheus` package, installed by `scripts/prepare`) runs instant, range, series and labels
//! queries whose answers are compared with values worked out from the data; and the requests
//! Grafana's Prometheus data source sends when it is added and a panel drawn are replayed.
//!
//! The tests share the process-wide query slots, so they run one at a time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use diode_common::codec::{SeriesColumns, group_records};
use diode_common::keys::SenderKey;
use diode_common::record::{Quality, Record, SeriesKey, Value};
use diode_common::seal::{self, ChainPosition, GENESIS_HASH};
use diode_receiver::config::HttpConfig;
use diode_receiver::state::Shared;
use diode_replica::Replica;
use serde_json::{Value as Json, json};

/// 2024-01-01T00:00:00Z, in seconds.
const T0_S: i64 = 1_704_067_200;
const SECOND_NS: i64 = 1_000_000_000;
/// A deadline guard, not a measurement.
const GUARD: Duration = Duration::from_secs(60);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn record(series: SeriesKey, second: i64, value: Value, quality: Quality) -> Record {
    Record { series, timestamp_ns: (T0_S + second) * SECOND_NS, value, quality }
}

fn tagged(name: &str) -> SeriesKey {
    SeriesKey::with_tags(name, vec![("unit".into(), "C".into())])
}

/// One hour from T0, one point every 10 s (i = 0..360 at T0 + 10·i s):
/// - `plant1/boiler3/steam_temp{unit=C}` = i, `plant1/boiler4/steam_temp{unit=C}` = 2·i;
/// - `plant1/pump1/running` = (i even), a boolean;
/// - `plant1/pump1/energy_kwh` = 5·i, a counter reset to 0 at i = 180 (then 5·(i − 180));
/// - `plant1/boiler3/pressure` = 5.0, except a bad-quality 9999.0 at i = 180;
/// - `plant1/valve/state`, strings.
fn records() -> Vec<Record> {
    let mut records = Vec::new();
    for i in 0..360i64 {
        let second = 10 * i;
        let good = Quality::GOOD;
        records.push(record(tagged("plant1/boiler3/steam_temp"), second, Value::F64(i as f64), good));
        records.push(record(tagged("plant1/boiler4/steam_temp"), second, Value::F64(2.0 * i as f64), good));
        records.push(record(SeriesKey::new("plant1/pump1/running"), second, Value::Bool(i % 2 == 0), good));
        let energy = if i < 180 { 5 * i } else { 5 * (i - 180) };
        records.push(record(SeriesKey::new("plant1/pump1/energy_kwh"), second, Value::I64(energy), good));
        let (pressure, quality) = if i == 180 { (9999.0, Quality::BAD) } else { (5.0, good) };
        records.push(record(SeriesKey::new("plant1/boiler3/pressure"), second, Value::F64(pressure), quality));
        let state = if i % 2 == 0 { "open" } else { "closed" };
        records.push(record(SeriesKey::new("plant1/valve/state"), second, Value::String(state.into()), good));
    }
    records
}

fn replica(path: &std::path::Path) -> Replica {
    let mut replica = Replica::open(path).unwrap();
    let key = SenderKey::from_seed([7u8; 32]);
    let position = ChainPosition { sender_id: 1, epoch: 1, sequence: 1, previous_hash: GENESIS_HASH };
    let segment = seal::seal(position, &group_records(&records()), 3, T0_S * SECOND_NS, &key);
    let series: Vec<SeriesColumns> = seal::decode_verified(&segment).expect("decodes");
    replica.apply(&segment, &series, T0_S * SECOND_NS).expect("apply");
    replica
}

/// Serves `replica` with the receiver's routes and `config`'s limits, as `diode-receiver run`
/// does, on 127.0.0.1.
fn serve(replica: Replica, config: HttpConfig) -> (SocketAddr, tokio::runtime::Runtime) {
    let shared = Arc::new(Shared::new(replica));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    let app = diode_receiver::http::app(shared, &config);
    let limits = diode_receiver::http::limits(&config);
    runtime.spawn(diode_host::http_server::serve(listener, app, limits, "http.max_connections"));
    (address, runtime)
}

// ---------------------------------------------------------------------------------------------
// promtool

/// `promtool query -o json <args>`'s parsed output, or `None` (and why, printed) when promtool
/// is not installed.
fn promtool(args: &[&str]) -> Option<Result<Json, String>> {
    let output = match Command::new("promtool").arg("query").arg("-o").arg("json").args(args).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipping: promtool is not installed (scripts/prepare installs Debian's prometheus package)");
            return None;
        }
        Err(error) => panic!("cannot run promtool: {error}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Some(Err(format!("{stdout}{stderr}")));
    }
    Some(Ok(serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("promtool printed {stdout:?}: {e}"))))
}

fn number(text: &Json) -> f64 {
    text.as_str().expect("values are strings").parse().unwrap()
}

/// An instant vector's (diode_name, value) pairs, sorted.
fn by_name(vector: &Json) -> Vec<(String, f64)> {
    let mut pairs: Vec<(String, f64)> = vector
        .as_array()
        .expect("a vector")
        .iter()
        .map(|sample| (sample["metric"]["diode_name"].as_str().unwrap_or("").to_owned(), number(&sample["value"][1])))
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0)
}

#[test]
fn promtool_instant_queries_match_values_worked_out_from_the_data() {
    let _one = one_at_a_time();
    let directory = tempfile::tempdir().unwrap();
    let (address, _runtime) = serve(replica(directory.path()), HttpConfig::default());
    let server = format!("http://{address}/prometheus");
    let at = |second: i64| format!("--time={}", T0_S + second);
    let instant = |expr: &str, second: i64| promtool(&["instant", &at(second), &server, expr]);
    let Some(answer) = instant("plant1:boiler3:steam_temp", 600) else { return };
    // At T0 + 600 s, i = 60.
    let answer = answer.unwrap();
    assert_eq!(by_name(&answer), vec![("plant1/boiler3/steam_temp".to_owned(), 60.0)]);
    assert_eq!(
        answer[0]["metric"],
        json!({"__name__": "plant1:boiler3:steam_temp", "diode_name": "plant1/boiler3/steam_temp", "unit": "C"})
    );
    assert_eq!(answer[0]["value"][0], json!(T0_S + 600));
    // (540, 600] holds i = 55..=60: mean 57.5.
    let answer = instant("avg_over_time(plant1:boiler3:steam_temp[1m])", 600).unwrap().unwrap();
    assert_eq!(by_name(&answer), vec![("plant1/boiler3/steam_temp".to_owned(), 57.5)]);
    // 60 + 120, grouped by unit (which both share); the metric name goes.
    let answer = instant(r#"sum by (unit) ({__name__=~"plant1:boiler.:steam_temp"})"#, 600).unwrap().unwrap();
    assert_eq!(answer[0]["metric"], json!({"unit": "C"}));
    assert_eq!(number(&answer[0]["value"][1]), 180.0);
    // Comparison filters keep the series and its value; arithmetic between matched vectors.
    let answer = instant(r#"plant1:boiler4:steam_temp / ignoring(diode_name) plant1:boiler3:steam_temp"#, 600);
    assert_eq!(number(&answer.unwrap().unwrap()[0]["value"][1]), 2.0);
    let answer = instant(r#"{__name__=~".*steam_temp"} > 100"#, 600).unwrap().unwrap();
    assert_eq!(by_name(&answer), vec![("plant1/boiler4/steam_temp".to_owned(), 120.0)]);
    // The counter over (900, 1200]: i = 91..=120, 455 to 600: 145 over 290 s sampled, the first
    // sample 10 s from the window's start (under 1.1 intervals): extrapolated to 300 s.
    let answer = instant("increase(plant1:pump1:energy_kwh[5m])", 1200).unwrap().unwrap();
    assert!(close(by_name(&answer)[0].1, 145.0 * 300.0 / 290.0), "{answer}");
    let answer = instant("rate(plant1:pump1:energy_kwh[5m])", 1200).unwrap().unwrap();
    assert!(close(by_name(&answer)[0].1, 145.0 / 290.0), "{answer}");
    // Across the reset at i = 180, (1650, 1950] holds 830..=895 then 0..=75: 65 + 75 = 140.
    let answer = instant("increase(plant1:pump1:energy_kwh[5m])", 1950).unwrap().unwrap();
    assert!(close(by_name(&answer)[0].1, 140.0 * 300.0 / 290.0), "{answer}");
    // Booleans are 0/1: i = 55..=60 hold three even i.
    let answer = instant("avg_over_time(plant1:pump1:running[1m])", 600).unwrap().unwrap();
    assert_eq!(by_name(&answer)[0].1, 0.5);
    // The bad-quality 9999 is left out; strings are no samples.
    let answer = instant("max_over_time(plant1:boiler3:pressure[1h])", 3600).unwrap().unwrap();
    assert_eq!(by_name(&answer)[0].1, 5.0);
    assert_eq!(instant("plant1:valve:state", 600).unwrap().unwrap(), json!([]));
    // 1 + 1, Grafana's health check, is a scalar.
    let answer = instant("1 + 1", 0).unwrap().unwrap();
    assert_eq!(answer, json!([T0_S, "2"]));
}

#[test]
fn promtool_range_series_and_labels_queries_match_the_data() {
    let _one = one_at_a_time();
    let directory = tempfile::tempdir().unwrap();
    let (address, _runtime) = serve(replica(directory.path()), HttpConfig::default());
    let server = format!("http://{address}/prometheus");
    let (start, end) = (format!("--start={T0_S}"), format!("--end={}", T0_S + 300));
    let Some(answer) = promtool(&["range", &start, &end, "--step=1m", &server, "plant1:boiler3:steam_temp"]) else {
        return;
    };
    let answer = answer.unwrap();
    let values: Vec<(i64, f64)> = answer[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| (pair[0].as_i64().unwrap() - T0_S, number(&pair[1])))
        .collect();
    // Steps at 0, 60, …, 300 s: i = 0, 6, …, 30.
    assert_eq!(values, vec![(0, 0.0), (60, 6.0), (120, 12.0), (180, 18.0), (240, 24.0), (300, 30.0)]);
    // max over 1-minute windows, stepping by 5 minutes, with the steps farther apart than the
    // window: (240, 300] holds i = 25..=30 of boiler 4, so 60; (540, 600], 120.
    let answer = promtool(&[
        "range",
        &format!("--start={}", T0_S + 300),
        &format!("--end={}", T0_S + 600),
        "--step=5m",
        &server,
        "max_over_time(plant1:boiler4:steam_temp[1m])",
    ]);
    let answer = answer.unwrap().unwrap();
    assert_eq!(answer[0]["values"], json!([[T0_S + 300, "60"], [T0_S + 600, "120"]]));

    // promtool's default range is about a year around now: the data's hour is given instead.
    let end = format!("--end={}", T0_S + 3600);
    let series = promtool(&["series", r#"--match={__name__=~"plant1:boiler.*"}"#, &start, &end, &server]);
    let series = series.unwrap().unwrap();
    let mut names: Vec<&str> = series.as_array().unwrap().iter().map(|s| s["diode_name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, vec!["plant1/boiler3/pressure", "plant1/boiler3/steam_temp", "plant1/boiler4/steam_temp"]);
    let units = promtool(&["labels", &start, &end, &server, "unit"]).unwrap().unwrap();
    assert_eq!(units, json!(["C"]));
    let metrics = promtool(&["labels", &start, &end, &server, "__name__"]).unwrap().unwrap();
    // Nothing was recorded a year after the data.
    let later = [format!("--start={}", T0_S + 400 * 86_400), format!("--end={}", T0_S + 401 * 86_400)];
    assert_eq!(promtool(&["labels", &later[0], &later[1], &server, "unit"]).unwrap().unwrap(), json!([]));
    assert_eq!(
        metrics,
        json!([
            "plant1:boiler3:pressure",
            "plant1:boiler3:steam_temp",
            "plant1:boiler4:steam_temp",
            "plant1:pump1:energy_kwh",
            "plant1:pump1:running",
            "plant1:valve:state"
        ])
    );
    // What the subset leaves out is refused by name.
    let refused = promtool(&["instant", &server, "topk(1, plant1:boiler3:steam_temp)"]).unwrap().unwrap_err();
    assert!(refused.contains("not supported") && refused.contains("topk"), "{refused}");
}

// ---------------------------------------------------------------------------------------------
// Grafana's requests, replayed

struct Response {
    status: u16,
    body: Json,
}

/// One HTTP/1.1 request over a plain socket; the body parsed as JSON (chunked bodies decoded).
fn request(address: SocketAddr, method: &str, path: &str, form: Option<&str>, token: Option<&str>) -> Response {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(GUARD)).unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nUser-Agent: Grafana/10.4.0\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = form.unwrap_or("");
    if form.is_some() {
        head.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    write!(stream, "{head}\r\n{body}").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
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
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let text = String::from_utf8(body).unwrap();
    Response { status, body: serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {text:?}: {e}")) }
}

fn success(response: Response) -> Json {
    assert_eq!((response.status, &response.body["status"]), (200, &json!("success")), "{}", response.body);
    response.body["data"].clone()
}

#[test]
fn grafanas_data_source_and_panel_requests_are_answered() {
    let _one = one_at_a_time();
    let directory = tempfile::tempdir().unwrap();
    let config = HttpConfig { bearer_token: Some("s3cret".into()), ..HttpConfig::default() };
    let (address, _runtime) = serve(replica(directory.path()), config);
    let token = Some("s3cret");
    let get = |path: &str| request(address, "GET", &format!("/prometheus{path}"), None, token);
    let post = |path: &str, form: &str| request(address, "POST", &format!("/prometheus{path}"), Some(form), token);
    let range = format!("start={T0_S}&end={}", T0_S + 3600);

    // "Save & test": the build information, then 1+1 posted as a form.
    let info = success(get("/api/v1/status/buildinfo"));
    assert!(info["version"].as_str().unwrap().starts_with("2."), "{info}");
    let health = success(post("/api/v1/query", &format!("query=1%2B1&time={}", T0_S)));
    assert_eq!(health, json!({"resultType": "scalar", "result": [T0_S, "2"]}));
    // Without the token, nothing.
    let refused = request(address, "GET", "/prometheus/api/v1/status/buildinfo", None, None);
    assert_eq!(refused.status, 401);

    // The query editor's metric browser: label names, metric names, metadata, series.
    let labels = success(get(&format!("/api/v1/labels?{range}")));
    assert_eq!(labels, json!(["__name__", "diode_name", "unit"]));
    let labels = success(post("/api/v1/labels", &format!("{range}&match%5B%5D=plant1%3Apump1%3Arunning")));
    assert_eq!(labels, json!(["__name__", "diode_name"]));
    let metrics = success(get(&format!("/api/v1/label/__name__/values?{range}")));
    assert_eq!(metrics.as_array().unwrap().len(), 6);
    let metadata = success(get("/api/v1/metadata"));
    assert_eq!(metadata["plant1:boiler3:steam_temp"][0]["type"], json!("unknown"));
    assert_eq!(metadata["plant1:boiler3:steam_temp"][0]["help"], json!("diode series plant1/boiler3/steam_temp"));
    let series = success(get(&format!("/api/v1/series?match%5B%5D=plant1%3Aboiler3%3Asteam_temp&{range}")));
    assert_eq!(
        series,
        json!([{"__name__": "plant1:boiler3:steam_temp", "diode_name": "plant1/boiler3/steam_temp", "unit": "C"}])
    );
    let values = success(get(&format!("/api/v1/label/unit/values?match%5B%5D=%7Bunit%3D%22C%22%7D&{range}")));
    assert_eq!(values, json!(["C"]));
    // A series listing outside the data's time is empty.
    let before =
        success(get(&format!("/api/v1/series?match%5B%5D=plant1%3Aboiler3%3Asteam_temp&start=0&end={}", T0_S - 1)));
    assert_eq!(before, json!([]));

    // The panel: a range query posted as a form with Grafana's step, and its exemplars.
    let form = format!(
        "query=avg_over_time(plant1%3Aboiler3%3Asteam_temp%5B1m%5D)&start={}&end={}&step=60",
        T0_S + 60,
        T0_S + 240
    );
    let data = success(post("/api/v1/query_range", &form));
    // (0, 60] holds i = 1..=6: 3.5; then 9.5, 15.5, 21.5.
    assert_eq!(data["resultType"], json!("matrix"));
    assert_eq!(
        data["result"][0]["values"],
        json!([[T0_S + 60, "3.5"], [T0_S + 120, "9.5"], [T0_S + 180, "15.5"], [T0_S + 240, "21.5"]])
    );
    assert_eq!(data["result"][0]["metric"], json!({"diode_name": "plant1/boiler3/steam_temp", "unit": "C"}));
    assert_eq!(success(post("/api/v1/query_exemplars", &form)), json!([]));

    // Bad-quality points come back when asked for.
    let max = |extra: &str| {
        let form = format!("query=max_over_time(plant1%3Aboiler3%3Apressure%5B1h%5D)&time={}{extra}", T0_S + 3600);
        success(post("/api/v1/query", &form))["result"][0]["value"][1].clone()
    };
    assert_eq!((max(""), max("&include_bad=true")), (json!("5"), json!("9999")));
}

#[test]
fn errors_take_prometheus_shapes_and_statuses() {
    let _one = one_at_a_time();
    let directory = tempfile::tempdir().unwrap();
    let (address, _runtime) = serve(replica(directory.path()), HttpConfig::default());
    let get = |path: &str| request(address, "GET", &format!("/prometheus{path}"), None, None);
    let malformed = get("/api/v1/query?query=sum((");
    assert_eq!((malformed.status, &malformed.body["errorType"]), (400, &json!("bad_data")));
    assert!(malformed.body["error"].as_str().unwrap().contains("parse error"), "{}", malformed.body);
    let unsupported = get("/api/v1/query?query=plant1%3Aa%20and%20plant1%3Ab");
    assert_eq!((unsupported.status, &unsupported.body["errorType"]), (422, &json!("execution")));
    assert!(unsupported.body["error"].as_str().unwrap().contains("the operator and"), "{}", unsupported.body);
    let resolution = get(&format!("/api/v1/query_range?query=up&start=0&end={}&step=1", 86_400));
    assert_eq!(resolution.status, 400);
    let no_match = get("/api/v1/series");
    assert_eq!((no_match.status, &no_match.body["error"]), (400, &json!("no match[] parameter provided")));
    // A query past http.query_timeout_ms is a timeout, never a partial answer.
    drop(_runtime);
    let directory = tempfile::tempdir().unwrap();
    let config = HttpConfig { query_timeout_ms: 0, ..HttpConfig::default() };
    let (address, _runtime) = serve(replica(directory.path()), config);
    let late = request(
        address,
        "GET",
        &format!("/prometheus/api/v1/query?query=plant1%3Aboiler3%3Asteam_temp&time={}", T0_S + 600),
        None,
        None,
    );
    assert_eq!((late.status, &late.body["errorType"]), (503, &json!("timeout")), "{}", late.body);
    assert!(late.body["error"].as_str().unwrap().contains("http.query_timeout_ms"), "{}", late.body);
}

#[test]
fn the_shipped_plant_overview_dashboard_queries_are_answered() {
    let _one = one_at_a_time();
    let directory = tempfile::tempdir().unwrap();
    let (address, _runtime) = serve(replica(directory.path()), HttpConfig::default());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/grafana/dashboards/plant-overview.json");
    let dashboard: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/grafana/provisioning/datasources/diode.yaml");
    let source = std::fs::read_to_string(source).unwrap();
    assert!(source.contains("type: prometheus") && source.contains(":9465/prometheus"), "{source}");
    let mut answered = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(panel["datasource"]["uid"], json!("diode"));
        for target in panel["targets"].as_array().unwrap() {
            // Grafana's variables as it fills them for a 1-hour panel.
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "5m")
                .replace("$__interval", "1m")
                .replace("$plant", "plant1");
            let encoded: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
            let form = format!("query={encoded}&start={T0_S}&end={}&step=60", T0_S + 3600);
            let response = request(address, "POST", "/prometheus/api/v1/query_range", Some(&form), None);
            let data = success(response);
            assert!(!data["result"].as_array().unwrap().is_empty(), "{expr} found nothing");
            answered += 1;
        }
    }
    assert_eq!(answered, 10);
}

/// A client that asks for a large answer and never reads it, with a small receive buffer so the
/// server's writes stop soon.
fn stuck_reader(address: SocketAddr, path: &str) -> socket2::Socket {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&address.into()).unwrap();
    (&socket).write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes()).unwrap();
    socket
}

#[test]
fn prometheus_queries_share_the_query_slots_of_api_v1_query() {
    let _one = one_at_a_time();
    let directory = tempfile::tempdir().unwrap();
    let mut replica = replica(directory.path());
    // 300,000 more points: far more JSON than the socket buffers hold.
    let key = SenderKey::from_seed([7u8; 32]);
    let mut previous_hash = seal::seal(
        ChainPosition { sender_id: 1, epoch: 1, sequence: 1, previous_hash: GENESIS_HASH },
        &group_records(&records()),
        3,
        T0_S * SECOND_NS,
        &key,
    )
    .hash();
    for segment in 0..100i64 {
        let big: Vec<Record> = (0..3_000i64)
            .map(|i| {
                let second_tenths = segment * 3_000 + i;
                Record {
                    series: SeriesKey::new("plant1/big"),
                    timestamp_ns: T0_S * SECOND_NS + second_tenths * SECOND_NS / 10,
                    value: Value::F64(i as f64 + 0.25),
                    quality: Quality::GOOD,
                }
            })
            .collect();
        let position = ChainPosition { sender_id: 1, epoch: 1, sequence: segment as u64 + 2, previous_hash };
        let sealed = seal::seal(position, &group_records(&big), 3, T0_S * SECOND_NS, &key);
        let series: Vec<SeriesColumns> = seal::decode_verified(&sealed).expect("decodes");
        replica.apply(&sealed, &series, T0_S * SECOND_NS).expect("apply");
        previous_hash = sealed.hash();
    }
    let config = HttpConfig { write_timeout_ms: 2_000, query_timeout_ms: 600_000, ..HttpConfig::default() };
    let (address, _runtime) = serve(replica, config);
    let big = format!("/api/v1/query?series=plant1/big&from={T0_S}&to={}&limit=1000000", T0_S + 86_400);
    let mut stuck: Vec<socket2::Socket> = (0..4).map(|_| stuck_reader(address, &big)).collect();
    for socket in &mut stuck {
        socket.set_read_timeout(Some(GUARD)).unwrap();
        let mut status = [0u8; 12];
        socket.read_exact(&mut status).unwrap();
        assert_eq!(&status, b"HTTP/1.1 200");
    }
    let prometheus = format!("/prometheus/api/v1/query?query=plant1%3Aboiler3%3Asteam_temp&time={}", T0_S + 600);
    // While the four hold every slot, a Prometheus query is answered 503 unavailable…
    let deadline = std::time::Instant::now() + GUARD;
    let busy = loop {
        let response = request(address, "GET", &prometheus, None, None);
        if response.status == 503 {
            break response;
        }
        assert!(std::time::Instant::now() < deadline, "the four large queries never held every slot");
    };
    assert_eq!(busy.body["errorType"], json!("unavailable"), "{}", busy.body);
    // …and answered once the write timeout has ended them.
    let deadline = std::time::Instant::now() + GUARD;
    loop {
        let response = request(address, "GET", &prometheus, None, None);
        if response.status == 200 {
            assert_eq!(response.body["data"]["result"][0]["value"][1], json!("60"));
            break;
        }
        assert_eq!(response.body["errorType"], json!("unavailable"), "{}", response.body);
        assert!(std::time::Instant::now() < deadline, "clients that stopped reading kept every query slot");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stuck);
}

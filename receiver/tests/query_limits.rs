//! What a query may cost, over a real replica: aggregates leave out empty windows and stay within
//! each series' data, the CLI stops at a row limit, numeric aggregates skip string series with a
//! note, and over HTTP a query stops at its timeout, clients that stop reading do not keep the
//! query slots, the series listing streams, and an absurdly long unknown name gets no costly
//! suggestions. Served by the receiver's own HTTP server on 127.0.0.1.
//!
//! The HTTP tests share the process-wide query slots, so they run one at a time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use diode_common::codec::{SeriesColumns, group_records};
use diode_common::keys::SenderKey;
use diode_common::record::{Quality, Record, SeriesKey, Value};
use diode_common::seal::{self, ChainPosition, GENESIS_HASH, SegmentHash};
use diode_receiver::config::HttpConfig;
use diode_receiver::query::cli::{limit_reached, write_query_with};
use diode_receiver::query::http::DEFAULT_LIMIT;
use diode_receiver::query::output::{Format, TimeFormat};
use diode_receiver::query::request::{QueryRequest, QueryText, Syntax};
use diode_receiver::state::Shared;
use diode_replica::Replica;

/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200_000_000_000;
const SECOND: i64 = 1_000_000_000;
const HOUR: i64 = 3_600 * SECOND;
const DAY: i64 = 24 * HOUR;
/// A deadline guard, not a measurement.
const GUARD: Duration = Duration::from_secs(30);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Seals and applies consecutive segments of one chain.
struct Chain {
    key: SenderKey,
    next_sequence: u64,
    previous_hash: SegmentHash,
}

impl Chain {
    fn new() -> Chain {
        Chain { key: SenderKey::from_seed([7u8; 32]), next_sequence: 1, previous_hash: GENESIS_HASH }
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

fn point(series: &str, timestamp_ns: i64, value: Value) -> Record {
    Record { series: SeriesKey::new(series), timestamp_ns, value, quality: Quality::GOOD }
}

/// Five numeric series `plant/unitN/temp` with 90 s of 1 Hz data from T0, and one string series
/// `plant/valve/state` in the same 90 s.
fn small_replica(path: &std::path::Path) -> Replica {
    let mut replica = Replica::open(path).unwrap();
    let mut records: Vec<Record> = (0..5)
        .flat_map(|unit| {
            (0..90).map(move |s| point(&format!("plant/unit{unit}/temp"), T0 + s * SECOND, Value::F64(s as f64)))
        })
        .collect();
    records.push(point("plant/valve/state", T0 + SECOND, Value::String("open".into())));
    records.push(point("plant/valve/state", T0 + 60 * SECOND, Value::String("closed".into())));
    Chain::new().apply(&mut replica, &records);
    replica
}

fn request(text: QueryText) -> QueryRequest {
    QueryRequest::parse(&text, Syntax::Cli, T0 + DAY).expect("valid query")
}

fn text(series: &str, from_ns: i64, to_ns: i64) -> QueryText {
    QueryText {
        series: series.to_owned(),
        from: Some(from_ns.to_string()),
        to: Some(to_ns.to_string()),
        ..QueryText::default()
    }
}

/// CSV rows (header left out) and what the query said beside them.
fn csv(replica: &Replica, text: QueryText, limit: Option<u64>) -> (Vec<String>, diode_receiver::query::cli::Written) {
    let mut out = Vec::new();
    let written = write_query_with(replica, &request(text), (Format::Csv, TimeFormat::Ns), limit, &mut out).unwrap();
    let rows = String::from_utf8(out).unwrap().lines().skip(1).map(str::to_owned).collect();
    (rows, written)
}

#[test]
fn aggregates_leave_out_empty_windows_and_stay_within_each_series_data() {
    let directory = tempfile::tempdir().unwrap();
    let replica = small_replica(directory.path());
    // Ten days before the data to a day after, in hours, as `--from 0 --to now` asks on a larger
    // scale: each series' 90 s of data is one window.
    let query = QueryText {
        every: Some("1h".into()),
        agg: Some("count".into()),
        ..text("plant/unit*", T0 - 10 * DAY, T0 + DAY)
    };
    let (rows, _) = csv(&replica, query.clone(), None);
    let expected: Vec<String> = (0..5).map(|unit| format!("plant/unit{unit}/temp,{T0},90")).collect();
    assert_eq!(rows, expected);
    // Asked for, every window of the range is reported, as before.
    let (rows, _) = csv(&replica, QueryText { empty_windows: true, ..query }, None);
    assert_eq!(rows.len(), 5 * 265);
    assert_eq!(rows.iter().filter(|row| !row.ends_with(",0")).count(), 5);
}

#[test]
fn the_cli_stops_at_its_row_limit_and_says_where_the_next_row_starts() {
    let directory = tempfile::tempdir().unwrap();
    let replica = small_replica(directory.path());
    let (rows, written) = csv(&replica, text("plant/unit*", T0, T0 + DAY), Some(100));
    assert_eq!((rows.len(), written.rows), (100, 100));
    let next = written.next.expect("cut at the limit");
    assert_eq!((next.series.as_str(), next.from_ns), ("plant/unit1/temp", T0 + 10 * SECOND));
    let message = limit_reached(100, &next);
    assert!(
        message.contains("--limit 100") && message.contains("plant/unit1/temp at 2024-01-01T00:00:10Z"),
        "{message}"
    );
    // The default is HTTP's.
    #[derive(clap::Parser)]
    struct Command {
        #[command(flatten)]
        args: diode_receiver::query::cli::QueryArgs,
    }
    let command = <Command as clap::Parser>::try_parse_from(["query", "--config", "r.toml", "--series", "a"]).unwrap();
    assert_eq!(command.args.limit, DEFAULT_LIMIT);
    assert!(
        <Command as clap::Parser>::try_parse_from(["query", "--config", "r", "--series", "a", "--limit", "0"]).is_err()
    );
}

#[test]
fn numeric_aggregates_over_string_and_numeric_series_leave_out_the_strings_and_say_so() {
    let directory = tempfile::tempdir().unwrap();
    let replica = small_replica(directory.path());
    let query = QueryText { every: Some("1h".into()), agg: Some("mean".into()), ..text("plant/*", T0, T0 + HOUR) };
    let (rows, written) = csv(&replica, query, None);
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert!(rows.iter().all(|row| row.ends_with(",44.5")), "{rows:?}");
    assert_eq!(
        written.note.as_deref(),
        Some(
            "left out 1 series holding strings, which have no mean: plant/valve/state; use count, first or last for them"
        )
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP

struct Response {
    status: u16,
    head: String,
    body: String,
}

/// A minimal HTTP/1.1 GET over a plain socket (chunked bodies decoded).
fn get(address: SocketAddr, path: &str) -> Response {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(GUARD)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut body = raw[split + 4..].to_vec();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
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
    Response { status, head, body: String::from_utf8(body).unwrap() }
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

#[test]
fn an_http_query_past_its_timeout_ends_with_an_error_naming_the_setting() {
    let _one = one_at_a_time();
    let directory = tempfile::tempdir().unwrap();
    let config = HttpConfig { query_timeout_ms: 0, ..HttpConfig::default() };
    let (address, _runtime) = serve(small_replica(directory.path()), config);
    let response = get(address, &format!("/api/v1/query?series=plant/*&from={T0}&to={}", T0 + HOUR));
    assert_eq!(response.status, 200);
    let page: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(page["rows"], serde_json::json!([]), "no row computed past the deadline is sent");
    let error = page["error"].as_str().expect("an error");
    assert!(error.contains("http.query_timeout_ms (0 ms)"), "{error}");
}

#[test]
fn an_http_aggregate_over_strings_and_numbers_names_what_it_left_out() {
    let _one = one_at_a_time();
    let directory = tempfile::tempdir().unwrap();
    let (address, _runtime) = serve(small_replica(directory.path()), HttpConfig::default());
    let path = format!("/api/v1/query?series=plant/*&from={T0}&to={}&every=1h&agg=mean&format=csv", T0 + HOUR);
    let response = get(address, &path);
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body.lines().count(), 1 + 5 + 1, "{}", response.body);
    assert!(response.body.ends_with("# note: left out 1 series holding strings, which have no mean: plant/valve/state; use count, first or last for them\n"), "{}", response.body);
}

#[test]
fn the_http_series_listing_is_streamed() {
    let _one = one_at_a_time();
    let directory = tempfile::tempdir().unwrap();
    let (address, _runtime) = serve(small_replica(directory.path()), HttpConfig::default());
    let response = get(address, "/api/v1/series?match=plant/*");
    assert_eq!(response.status, 200);
    assert!(response.head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{}", response.head);
    let listing: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(listing["series"].as_array().unwrap().len(), 6);
}

#[test]
fn an_absurdly_long_unknown_name_is_answered_404_without_suggestions() {
    let _one = one_at_a_time();
    let directory = tempfile::tempdir().unwrap();
    let (address, _runtime) = serve(small_replica(directory.path()), HttpConfig::default());
    let name = format!("plant/unit1/tmp{}", "y".repeat(19_000));
    let response = get(address, &format!("/api/v1/query?series={name}"));
    assert_eq!(response.status, 404, "{}", response.body);
    assert!(!response.body.contains("did you mean"), "{}", response.body);
    assert!(response.body.len() < 1_000, "the answer repeats the whole name: {} bytes", response.body.len());
    // A short typo still gets them.
    let response = get(address, "/api/v1/query?series=plant/unit1/tmp");
    assert!(response.body.contains("did you mean: plant/unit1/temp"), "{}", response.body);
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
fn four_clients_that_stop_reading_do_not_keep_the_query_slots() {
    let _one = one_at_a_time();
    let directory = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(directory.path()).unwrap();
    let mut chain = Chain::new();
    // 300,000 points: about 25 MB of JSON, far more than the socket buffers hold.
    for segment in 0..100i64 {
        let records: Vec<Record> = (0..3_000i64)
            .map(|i| point("plant/big", T0 + (segment * 3_000 + i) * SECOND / 10, Value::F64(i as f64 + 0.25)))
            .collect();
        chain.apply(&mut replica, &records);
    }
    let config = HttpConfig { write_timeout_ms: 2_000, query_timeout_ms: 600_000, ..HttpConfig::default() };
    let (address, _runtime) = serve(replica, config);
    let big = format!("/api/v1/query?series=plant/big&from={T0}&to={}&limit=1000000", T0 + DAY);
    let mut stuck: Vec<socket2::Socket> = (0..4).map(|_| stuck_reader(address, &big)).collect();
    // Each large query has its slot once its answer has begun.
    for socket in &mut stuck {
        socket.set_read_timeout(Some(GUARD)).unwrap();
        let mut status = [0u8; 12];
        socket.read_exact(&mut status).unwrap();
        assert_eq!(&status, b"HTTP/1.1 200");
    }
    let small = format!("/api/v1/query?series=plant/big&from={T0}&to={}", T0 + SECOND);
    // The four hold every slot…
    let deadline = Instant::now() + GUARD;
    while get(address, &small).status != 503 {
        assert!(Instant::now() < deadline, "the four large queries never held every slot");
    }
    // …until the write timeout ends them, although their clients are still connected.
    let deadline = Instant::now() + GUARD;
    loop {
        let response = get(address, &small);
        if response.status == 200 {
            break;
        }
        assert_eq!(response.status, 503, "{}", response.body);
        assert!(Instant::now() < deadline, "clients that stopped reading kept every query slot");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stuck);
}

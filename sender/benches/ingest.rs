//! Ingest throughput through the real code paths, against the target of 1,000,000
//! points/s of line protocol per core, and where the time goes:
//!
//! - parsing alone (`line_protocol::parse_lines`), for comparison, and parsing with preparing the
//!   spool frames, through records and straight into a grouper (`parse_lines_grouped`, what the
//!   HTTP handler does), the two alternated in one run; and a TCP or UDP batch the same two ways
//!   (line by line, as those listeners did, and whole with bad lines skipped);
//! - the spool alone (`Pipeline::submit` of parsed records: encode, append, fdatasync, and the
//!   sealing of every 250,000 records (the default `segments.max_records`) into a signed segment), under `fsync = "always"` and `"never"`;
//! - HTTP: the sender's InfluxDB endpoint (`ingest::router`) served as `diode-sender run` serves it
//!   (one async worker, submits on the blocking pool, `run`'s sealing thread), over a real spool in a
//!   temporary folder, with 5,000-line bodies posted over keep-alive connections by 1 to 8
//!   concurrent clients, plain and gzip;
//! - CSV import (`import::import`) of a generated file of millions of rows, and its dry run
//!   (parsing and checking only);
//! - sealing alone by encoding threads (`segments.encoder_threads`): 2,000,000 plant records,
//!   already durable in the spool, sealed into 40 segments by `run`'s sealing loop with 0, 1 and 2
//!   encoding threads; then, from each seal's encoding and chain-and-write times measured one by
//!   one, the rate the same loop reaches with 1 to 8 encoding threads on as many free cores.
//!
//! Run with `cargo bench -p diode-sender --bench ingest [-- parse|spool|http|csv|seal]`. Prints plain
//! figures, best of three runs, with on-CPU time beside wall time so they can be read apart from
//! how busy the machine was.
//! `DIODE_INGEST_BENCH_CSV_ROWS` changes the CSV size (default 3,000,000);
//! `DIODE_INGEST_BENCH_DIR` puts the spools on another disk (default: the system's temp folder);
//! `DIODE_INGEST_BENCH_HTTP_LINES=1000` runs only the HTTP cases of that body size;
//! `DIODE_INGEST_BENCH_HTTP_SERIES=5000` posts bodies of one field a line over that many series.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use diode_common::codec::Grouper;
use diode_common::keys::SenderKey;
use diode_common::record::Record;
use diode_sender::commit::{self, Committer};
use diode_sender::config::FsyncPolicy;
use diode_sender::import::{self, TimestampUnit};
use diode_sender::ingest::{self, IngestState};
use diode_sender::line_protocol::{ParseOptions, parse_lines, parse_lines_grouped, parse_lines_grouped_skipping};
use diode_sender::pipeline::{Encoders, Pipeline, PipelineSettings, PreparedFrames, SealedEntry, seal_due};
use diode_sender::run::{self, Sealing};

#[path = "../../benches/support/measure.rs"]
mod measure;

use measure::{best_of, process_cpu_seconds, thread_cpu_seconds};

/// The allocator the appliance's binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LINES_PER_BODY: usize = 5_000;
/// Distinct bodies posted in turn (different timestamps and values).
const BODIES: usize = 8;
/// Lines per timed run (128 bodies of 5,000 lines: 1,920,000 points), shared among the clients.
const LINES_PER_RUN: usize = 640_000;
const START_NS: i64 = 1_767_225_600_000_000_000;
const TOKEN: &str = "bench-token";

/// `boiler,plant=p1,unit=b3 steam_temp=512.3,pressure=41.07,running=true <ns>`: 3 points a line,
/// 50 tag sets, as in `sender/benches/line_protocol.rs`.
fn plant_body(body: usize, lines: usize) -> String {
    let mut text = String::with_capacity(lines * 90);
    for line in 0..lines {
        let i = body * lines + line;
        let plant = i % 5 + 1;
        let unit = (i / 5) % 10 + 1;
        let steam_temp = 500.0 + (i % 997) as f64 * 0.0137;
        let pressure = 40.0 + (i % 89) as f64 * 0.031;
        let running = if i.is_multiple_of(7) { "false" } else { "true" };
        let timestamp_ns = START_NS + i as i64 * 1_000_000;
        text.push_str(&format!(
            "boiler,plant=p{plant},unit=b{unit} steam_temp={steam_temp:.1},pressure={pressure:.2},running={running} {timestamp_ns}\n"
        ));
    }
    text
}

/// `lines` lines of one field each over `series` series, in turn: line `i` of the run is a
/// sample of series `i % series`, the series sampled once a second each.
fn wide_body(body: usize, lines: usize, series: usize) -> String {
    let mut text = String::with_capacity(lines * 80);
    for line in 0..lines {
        let i = body * lines + line;
        let id = i % series;
        let timestamp_ns = START_NS + (i / series) as i64 * 1_000_000_000 + id as i64 * 1_000;
        let value = 20.0 + (id % 300) as f64 * 0.25 + (i % 17) as f64 * 0.01;
        text.push_str(&format!("process,area=a{:02},tag=TI-{id:05} value={value:.2} {timestamp_ns}\n", id / 100));
    }
    text
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).expect("gzip to memory");
    encoder.finish().expect("gzip to memory")
}

/// A pipeline in a fresh folder, as `diode-sender run` builds it, with a stand-in for the link
/// thread that takes every sealed segment and marks it sent at once.
struct Spool {
    _dir: tempfile::TempDir,
    pipeline: Arc<Mutex<Pipeline>>,
    link: Option<thread::JoinHandle<()>>,
    /// Segments the stand-in link took, and their bytes.
    taken: Arc<[AtomicU64; 2]>,
}

fn bench_dir() -> PathBuf {
    std::env::var_os("DIODE_INGEST_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir)
}

impl Spool {
    /// A spool sealing segments of the sender's default `segments.max_records`.
    fn new(fsync: FsyncPolicy) -> Spool {
        Spool::with_max_records(fsync, segment_records())
    }

    fn with_max_records(fsync: FsyncPolicy, max_records: usize) -> Spool {
        let dir = tempfile::tempdir_in(bench_dir()).expect("temp dir");
        let settings = PipelineSettings {
            sender_id: 1,
            data_dir: dir.path().to_owned(),
            max_records,
            max_age_ns: 1_000_000_000,
            zstd_level: 3,
            spool_max_bytes: 1 << 30,
            fsync,
            max_unsent_bytes: 256 << 20,
            retention_bytes: 1 << 30,
        };
        let (segments, sealed) = sync_channel(64);
        let pipeline = Pipeline::open(settings, SenderKey::from_seed([5; 32]), now_ns(), segments).expect("pipeline");
        let progress = pipeline.progress();
        let taken = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let link = {
            let taken = Arc::clone(&taken);
            thread::spawn(move || drain(sealed, &progress, &taken))
        };
        Spool { _dir: dir, pipeline: Arc::new(Mutex::new(pipeline)), link: Some(link), taken }
    }

    /// Seals what is pending and waits for the stand-in link to take it.
    fn finish(mut self) -> u64 {
        let mut pipeline = self.pipeline.lock().expect("pipeline lock");
        pipeline.flush(now_ns()).expect("flush");
        let sealed = pipeline.progress().records_sealed.load(Ordering::Relaxed);
        drop(pipeline);
        drop(self.pipeline);
        self.link.take().expect("link thread").join().expect("link thread");
        sealed
    }
}

fn drain(sealed: Receiver<SealedEntry>, progress: &diode_sender::pipeline::Progress, taken: &[AtomicU64; 2]) {
    for entry in sealed {
        taken[0].fetch_add(1, Ordering::Relaxed);
        taken[1].fetch_add(entry.bytes.len() as u64, Ordering::Relaxed);
        progress.sent_through.store(entry.sequence, Ordering::Relaxed);
    }
}

fn now_ns() -> i64 {
    diode_sender::clock::now_ns()
}

/// A keep-alive HTTP/1.1 client that posts prepared bodies and reads each status.
struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Client {
    fn connect(address: SocketAddr) -> Client {
        let stream = TcpStream::connect(address).expect("connect to the ingest listener");
        stream.set_nodelay(true).expect("nodelay");
        Client { stream, buffer: Vec::with_capacity(4096) }
    }

    fn post(&mut self, body: &[u8], gzip: bool) -> u16 {
        let encoding = if gzip { "Content-Encoding: gzip\r\n" } else { "" };
        let head = format!(
            "POST /api/v2/write?org=plant&bucket=historian&precision=ns HTTP/1.1\r\nHost: bench\r\n\
             Authorization: Token {TOKEN}\r\nContent-Type: text/plain; charset=utf-8\r\n{encoding}\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        self.stream.write_all(head.as_bytes()).expect("send head");
        self.stream.write_all(body).expect("send body");
        self.read_response()
    }

    fn read_response(&mut self) -> u16 {
        let head_end = loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            self.fill();
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status line");
        let body_bytes: usize = head
            .lines()
            .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while self.buffer.len() < head_end + body_bytes {
            self.fill();
        }
        if status != 204 {
            panic!("{head}{}", String::from_utf8_lossy(&self.buffer[head_end..head_end + body_bytes]));
        }
        self.buffer.drain(..head_end + body_bytes);
        status
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let read = self.stream.read(&mut chunk).expect("read the response");
        assert!(read > 0, "the server closed the connection");
        self.buffer.extend_from_slice(&chunk[..read]);
    }
}

/// The HTTP endpoint on loopback, on a runtime shaped like `diode-sender run`'s.
struct Server {
    address: SocketAddr,
    runtime: tokio::runtime::Runtime,
    spool: Spool,
    stop_sealer: Arc<AtomicBool>,
    sealer: thread::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    fn start(fsync: FsyncPolicy, grouped: bool, sealer_thread: bool) -> Server {
        let sealing = if sealer_thread {
            Sealing::Thread { encoder_threads: diode_sender::config::SegmentConfig::default().encoder_threads }
        } else {
            Sealing::OnSubmit
        };
        let spool = Spool::new(fsync);
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let state = IngestState {
            committer: Committer::start_with_group_limit(
                Arc::clone(&spool.pipeline),
                if grouped { commit::MAX_GROUP_RECORDS } else { 0 },
            )
            .expect("committer"),
            token: Some(Arc::from(TOKEN)),
            max_body_bytes: 32 * 1024 * 1024,
            quality_field: None,
            quality_tag: None,
        };
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let address = listener.local_addr().expect("address");
        runtime.spawn(async move { axum::serve(listener, ingest::router(state)).await });
        let stop_sealer = Arc::new(AtomicBool::new(false));
        let sealer =
            run::spawn_sealer(Arc::clone(&spool.pipeline), Arc::clone(&stop_sealer), sealing).expect("sealing thread");
        Server { address, runtime, spool, stop_sealer, sealer }
    }

    /// Points sealed, segments and their bytes.
    fn stop(self) -> (u64, u64, u64) {
        self.stop_sealer.store(true, Ordering::Relaxed);
        self.sealer.join().expect("sealing thread").expect("sealing");
        self.runtime.shutdown_timeout(Duration::from_secs(5));
        let taken = Arc::clone(&self.spool.taken);
        let points = self.spool.finish();
        (points, taken[0].load(Ordering::Relaxed), taken[1].load(Ordering::Relaxed))
    }
}

/// Posts `requests` bodies from `clients` concurrent connections.
/// Posts the bodies from `clients` keep-alive connections; returns the CPU seconds the clients'
/// threads used (they run in this process, so a process CPU figure counts them too).
fn post_all(address: SocketAddr, bodies: &[Vec<u8>], requests: usize, clients: usize, gzip: bool) -> f64 {
    let mut connections: Vec<Client> = (0..clients).map(|_| Client::connect(address)).collect();
    thread::scope(|scope| {
        let threads: Vec<_> = connections
            .iter_mut()
            .enumerate()
            .map(|(index, client)| {
                scope.spawn(move || {
                    let started = thread_cpu_seconds().unwrap_or(0.0);
                    for request in (index..requests).step_by(clients) {
                        client.post(&bodies[request % bodies.len()], gzip);
                    }
                    thread_cpu_seconds().unwrap_or(0.0) - started
                })
            })
            .collect();
        threads.into_iter().map(|thread| thread.join().expect("client thread")).sum()
    })
}

fn bench_parse(texts: &[String], points_per_body: usize) {
    let options = ParseOptions::new(START_NS);
    let mut records = Vec::new();
    let requests = LINES_PER_RUN / LINES_PER_BODY;
    let (timing, points) = best_of(
        thread_cpu_seconds,
        || (),
        |()| {
            let mut points = 0;
            for request in 0..requests {
                records.clear();
                points += parse_lines(&texts[request % texts.len()], &options, &mut records).expect("valid");
            }
            points
        },
    );
    assert_eq!(points, requests * points_per_body);
    println!("parse only, one thread: {}", timing.describe(points as f64, "points"));
    bench_parse_and_prepare(texts, points_per_body);
}

/// What a write costs before the committing thread: parsing and preparing the spool frames
/// (grouping by series, encoding), through records as before and straight into a grouper, the two
/// alternated in one run so that their ratio does not depend on how busy the machine was; for an
/// HTTP body (parsed whole) and for a TCP or UDP batch (line by line before, so that a bad line
/// cost only itself; now whole, skipping bad lines).
fn bench_parse_and_prepare(texts: &[String], points_per_body: usize) {
    let options = ParseOptions::new(START_NS);
    let time = |label: &str, round: u32, prepare: &dyn Fn(&str) -> usize| {
        let requests = LINES_PER_RUN / LINES_PER_BODY;
        let (timing, points) = best_of(
            thread_cpu_seconds,
            || (),
            |()| (0..requests).map(|request| prepare(&texts[request % texts.len()])).sum::<usize>(),
        );
        assert_eq!(points, requests * points_per_body);
        println!("{label}, one thread, round {round}: {}", timing.describe(points as f64, "points"));
    };
    let via_records =
        |records: &[Record]| PreparedFrames::prepare(records, segment_records()).expect("valid").records();
    let grouped = |grouper: Grouper| PreparedFrames::from_groups(grouper.finish()).expect("valid").records();
    for round in 1..=2 {
        time("parse and prepare frames via records", round, &|text| {
            let mut records = Vec::new();
            parse_lines(text, &options, &mut records).expect("valid");
            via_records(&records)
        });
        time("parse and prepare frames grouped while parsing", round, &|text| {
            let mut grouper = Grouper::new(segment_records());
            parse_lines_grouped(text, &options, &mut grouper).expect("valid");
            grouped(grouper)
        });
    }
    for round in 1..=2 {
        time("a TCP batch parsed line by line, then prepared", round, &|text| {
            let mut records = Vec::new();
            for line in text.lines() {
                parse_lines(line, &options, &mut records).expect("valid");
            }
            via_records(&records)
        });
        time("a TCP batch parsed whole into frames, skipping bad lines", round, &|text| {
            let mut grouper = Grouper::new(segment_records());
            parse_lines_grouped_skipping(text, &options, &mut grouper, |e| panic!("{e}"));
            grouped(grouper)
        });
    }
}

fn bench_spool(parsed: &[Vec<Record>], points_per_body: usize) {
    let requests = LINES_PER_RUN / LINES_PER_BODY;
    for fsync in [FsyncPolicy::Always, FsyncPolicy::Never] {
        let (timing, sealed) = best_of(
            process_cpu_seconds,
            || {
                let batches: Vec<Vec<Record>> = (0..requests).map(|i| parsed[i % parsed.len()].clone()).collect();
                (Spool::new(fsync), batches)
            },
            |(spool, batches)| {
                for mut batch in batches {
                    spool.pipeline.lock().expect("pipeline lock").submit(&mut batch, now_ns()).expect("submit");
                }
                spool.finish()
            },
        );
        assert_eq!(sealed as usize, requests * points_per_body);
        println!(
            "spool only ({requests} submits of {points_per_body} parsed points, sealing, fsync = {fsync:?}): {}",
            timing.describe(sealed as f64, "points")
        );
    }
}

/// One HTTP measurement: body size, concurrent clients, gzip, fsync policy, and whether
/// concurrent writes share a sync (group commit, as `diode-sender run` does) or each pay their own.
struct HttpCase {
    lines: usize,
    clients: usize,
    gzip: bool,
    fsync: FsyncPolicy,
    grouped: bool,
    /// Seal on a thread of its own (`segments.sealer_thread`, the default) or on the committing one.
    sealer_thread: bool,
}

fn bench_http() {
    let case =
        |lines, clients, gzip, fsync| HttpCase { lines, clients, gzip, fsync, grouped: true, sealer_thread: true };
    let inline = |lines, clients| HttpCase { sealer_thread: false, ..case(lines, clients, false, FsyncPolicy::Always) };
    let ungrouped = |lines, clients| HttpCase { grouped: false, ..case(lines, clients, false, FsyncPolicy::Always) };
    let cases = [
        case(LINES_PER_BODY, 1, false, FsyncPolicy::Always),
        case(LINES_PER_BODY, 2, false, FsyncPolicy::Always),
        case(LINES_PER_BODY, 4, false, FsyncPolicy::Always),
        inline(LINES_PER_BODY, 4),
        ungrouped(LINES_PER_BODY, 4),
        case(LINES_PER_BODY, 8, false, FsyncPolicy::Always),
        case(LINES_PER_BODY, 1, true, FsyncPolicy::Always),
        case(LINES_PER_BODY, 4, true, FsyncPolicy::Always),
        case(LINES_PER_BODY, 1, false, FsyncPolicy::Never),
        case(LINES_PER_BODY, 4, false, FsyncPolicy::Never),
        // Telegraf's default batch (metric_batch_size = 1000): the fdatasync weighs more.
        case(1_000, 1, false, FsyncPolicy::Always),
        case(1_000, 8, false, FsyncPolicy::Always),
        ungrouped(1_000, 8),
        case(1_000, 8, false, FsyncPolicy::Never),
    ];
    // `DIODE_INGEST_BENCH_HTTP_LINES=1000` runs only the cases of that body size (for a profile).
    let only_lines: Option<usize> = std::env::var("DIODE_INGEST_BENCH_HTTP_LINES").ok().and_then(|l| l.parse().ok());
    // `DIODE_INGEST_BENCH_HTTP_SERIES=5000`: bodies of one field a line over that many series
    // (a writer of thousands of tags, each body a sample of each), instead of the 150 of the plant.
    let wide_series: Option<usize> =
        std::env::var("DIODE_INGEST_BENCH_HTTP_SERIES").ok().and_then(|s| s.parse().ok()).filter(|&s| s > 0);
    for HttpCase { lines, clients, gzip, fsync, grouped, sealer_thread } in cases {
        if only_lines.is_some_and(|only| only != lines) {
            continue;
        }
        let texts: Vec<String> = (0..BODIES)
            .map(|body| match wide_series {
                Some(series) => wide_body(body, lines, series),
                None => plant_body(body, lines),
            })
            .collect();
        let fields = if wide_series.is_some() { 1 } else { 3 };
        let bodies: Vec<Vec<u8>> =
            texts.iter().map(|text| if gzip { self::gzip(text) } else { text.clone().into_bytes() }).collect();
        let requests = LINES_PER_RUN / lines;
        let (timing, ((sealed, segments, segment_bytes), clients_cpu)) = best_of(
            process_cpu_seconds,
            || Server::start(fsync, grouped, sealer_thread),
            |server| {
                let clients_cpu = post_all(server.address, &bodies, requests, clients, gzip);
                (server.stop(), clients_cpu)
            },
        );
        assert_eq!(sealed as usize, requests * lines * fields);
        // The sender's own CPU: the process's less what the clients' threads used (last run).
        let sender_cpu = timing.cpu.map(|cpu| cpu - clients_cpu).filter(|&cpu| cpu > 0.0);
        println!(
            "HTTP, {lines}-line bodies{}, {clients} client{}, {}, fsync = {fsync:?}{}: {} ({:.0} requests/s); without the clients' {clients_cpu:.2} s: {}; {segments} segments of {:.0} points, {:.2} bytes per point",
            wide_series.map_or(String::new(), |series| format!(" over {series} series")),
            if clients == 1 { "" } else { "s" },
            if gzip { "gzip" } else { "plain" },
            match (grouped, sealer_thread) {
                (true, true) => "",
                (true, false) => ", sealing on the committing thread",
                (false, _) => ", one sync per write (no group commit)",
            },
            timing.describe(sealed as f64, "points"),
            requests as f64 / timing.wall,
            sender_cpu
                .map_or("?".to_owned(), |cpu| format!("{:.2} M points per CPU-second", sealed as f64 / cpu / 1e6)),
            sealed as f64 / segments.max(1) as f64,
            segment_bytes as f64 / sealed.max(1) as f64
        );
    }
}

/// `series,timestamp,value,quality` rows: 1,000 series, one row per series per second, floats,
/// integers and booleans, now and then a bad quality.
fn write_csv(path: &Path, rows: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create the CSV file"));
    writeln!(out, "series,timestamp,value,quality").expect("write");
    for row in 0..rows {
        let series = row % 1_000;
        let timestamp_ns = START_NS + (row / 1_000) as i64 * 1_000_000_000;
        let quality = if row % 97 == 0 { "bad" } else { "" };
        match series % 10 {
            0 => writeln!(out, "plant1/unit{series}/running,{timestamp_ns},{},{quality}", row % 3 != 0),
            1 => writeln!(out, "plant1/unit{series}/count,{timestamp_ns},{}i,{quality}", row / 1_000),
            _ => writeln!(
                out,
                "plant1/unit{series}/temp,{timestamp_ns},{:.2},{quality}",
                20.0 + (row % 5_000) as f64 * 0.01
            ),
        }
        .expect("write");
    }
    out.flush().expect("write");
}

fn bench_csv(rows: usize) {
    let dir = tempfile::tempdir_in(bench_dir()).expect("temp dir");
    let path = dir.path().join("history.csv");
    write_csv(&path, rows);
    let megabytes = std::fs::metadata(&path).expect("CSV size").len() as f64 / 1e6;
    println!("CSV: {rows} rows, {megabytes:.0} MB");
    let files = [path];
    let (timing, summary) = best_of(
        thread_cpu_seconds,
        || (),
        |()| import::import(&files, TimestampUnit::Auto, None, false).expect("dry run"),
    );
    assert_eq!((summary.records as usize, summary.bad_rows), (rows, 0));
    println!("CSV dry run (read, parse, check), one thread: {}", timing.describe(rows as f64, "rows"));
    for fsync in [FsyncPolicy::Always, FsyncPolicy::Never] {
        let (timing, sealed) = best_of(
            process_cpu_seconds,
            || Spool::new(fsync),
            |spool| {
                let mut pipeline = spool.pipeline.lock().expect("pipeline lock");
                let summary = import::import(&files, TimestampUnit::Auto, Some(&mut pipeline), false).expect("import");
                assert_eq!(summary.records as usize, rows);
                drop(pipeline);
                spool.finish()
            },
        );
        assert_eq!(sealed as usize, rows);
        println!("CSV import into the spool, fsync = {fsync:?}: {}", timing.describe(rows as f64, "rows"));
    }
}

/// `segments.max_records` of the spools of the parse, spool, HTTP and CSV sections: the sender's
/// default.
fn segment_records() -> usize {
    diode_sender::config::SegmentConfig::default().max_records
}

/// `segments.max_records` of the sealing section's spool: small enough for 40 segments, so that
/// the rate projected for 1 to 8 encoding threads has seals enough to share out.
const SEAL_SEGMENT_RECORDS: usize = 50_000;

/// Records of the sealing section: 40 segments' worth of a 5,000-series plant.
const SEAL_RECORDS: usize = 40 * SEAL_SEGMENT_RECORDS;

/// A spool holding `records` durably, unsealed, with a sealing thread attached (so submits seal
/// nothing themselves), submitted in segment-sized writes.
fn spool_with(records: &[Record]) -> Spool {
    let spool = Spool::with_max_records(FsyncPolicy::Always, SEAL_SEGMENT_RECORDS);
    let mut pipeline = spool.pipeline.lock().expect("pipeline lock");
    drop(pipeline.attach_sealer());
    for part in records.chunks(SEAL_SEGMENT_RECORDS) {
        pipeline.submit(&mut part.to_vec(), now_ns()).expect("submit");
    }
    drop(pipeline);
    spool
}

fn bench_seal() {
    let config =
        diode_common::plant::PlantConfig { seed: 9, series_count: 5_000, base_rate_hz: 10.0, start_ns: START_NS };
    let mut plant = diode_common::plant::PlantSimulator::new(config);
    let mut records = Vec::with_capacity(SEAL_RECORDS + 10_000);
    let mut until = START_NS;
    while records.len() < SEAL_RECORDS {
        until += 100_000_000;
        plant.generate_until(until, &mut records);
    }
    records.truncate(SEAL_RECORDS);
    // Every job is due: all are full but the last, which is aged by this clock.
    let later = || now_ns() + 2_000_000_000;
    for threads in [0, 1, 2] {
        let (timing, sealed) = best_of(
            process_cpu_seconds,
            || (spool_with(&records), Encoders::spawn(threads).expect("encoding threads")),
            |(spool, encoders)| {
                seal_due(&spool.pipeline, &encoders, later).expect("sealing");
                drop(encoders);
                spool.finish()
            },
        );
        assert_eq!(sealed as usize, SEAL_RECORDS);
        println!(
            "sealing, {threads} encoding threads (0: on the sealing thread): {}",
            timing.describe(sealed as f64, "records")
        );
    }

    // The same seals one by one: each job's encoding (which threads share) and its place in the
    // chain, signature and synced write (which stay on the sealing thread, in order).
    let spool = spool_with(&records);
    let (mut encoding, mut chaining) = (0.0, 0.0);
    loop {
        let Some(job) = spool.pipeline.lock().expect("pipeline lock").take_seal_job(later()) else { break };
        let started = std::time::Instant::now();
        let encoded = job.encode();
        encoding += started.elapsed().as_secs_f64();
        let started = std::time::Instant::now();
        let entry = spool.pipeline.lock().expect("pipeline lock").finish_seal(encoded, now_ns()).expect("seal");
        chaining += started.elapsed().as_secs_f64();
        spool.pipeline.lock().expect("pipeline lock").progress().sent_through.store(entry.sequence, Ordering::Relaxed);
    }
    assert_eq!(spool.finish() as usize, SEAL_RECORDS);
    // The same seals encoded first, then put in the chain together: one write, one sync.
    let spool = spool_with(&records);
    let jobs: Vec<_> = {
        let mut pipeline = spool.pipeline.lock().expect("pipeline lock");
        std::iter::from_fn(|| pipeline.take_seal_job(later())).collect()
    };
    let encoded: Vec<_> = jobs.into_iter().map(|job| job.encode()).collect();
    let started = std::time::Instant::now();
    let entries = spool.pipeline.lock().expect("pipeline lock").finish_seals(encoded, now_ns()).expect("seal");
    let chaining_together = started.elapsed().as_secs_f64();
    let last = entries.last().expect("segments").sequence;
    spool.pipeline.lock().expect("pipeline lock").progress().sent_through.store(last, Ordering::Relaxed);
    assert_eq!(spool.finish() as usize, SEAL_RECORDS);
    let per_record = |seconds: f64| seconds * 1e6 / SEAL_RECORDS as f64;
    println!(
        "sealing, one by one: encoding {:.2} µs per record; chain, signature and synced write {:.3} µs per record \
         one segment at a time, {:.3} µs when all {} segments share one write and sync",
        per_record(encoding),
        per_record(chaining),
        per_record(chaining_together),
        entries.len()
    );
    // With n encoding threads on n free cores beside the sealing thread, a segment leaves every
    // max(encoding / n, chain): the sealing thread's part is the serial one. Segments that are
    // encoded by the time the sealing thread comes to them share one write and sync, so the
    // chain's cost per segment lies between the two figures above.
    for threads in [1usize, 2, 4, 8] {
        let rate = |chain: f64| 1e-6 * SEAL_RECORDS as f64 / (encoding / threads as f64).max(chain);
        println!(
            "  modelled with {threads} encoding threads on free cores: {:.2} M records/s (one sync per segment) \
             to {:.2} M records/s (shared syncs)",
            rate(chaining),
            rate(chaining_together)
        );
    }
}

fn main() {
    let texts: Vec<String> = (0..BODIES).map(|body| plant_body(body, LINES_PER_BODY)).collect();
    let options = ParseOptions::new(START_NS);
    let parsed: Vec<Vec<Record>> = texts
        .iter()
        .map(|text| {
            let mut records = Vec::new();
            parse_lines(text, &options, &mut records).expect("valid");
            records
        })
        .collect();
    let points_per_body = parsed[0].len();
    println!(
        "ingest bench: bodies of {LINES_PER_BODY} lines, {points_per_body} points, {} KB ({} KB gzip); {LINES_PER_RUN} lines per run; spools in {}; load average {}",
        texts[0].len() / 1000,
        gzip(&texts[0]).len() / 1000,
        bench_dir().display(),
        load_average()
    );
    // `cargo bench --bench ingest -- http` runs only the sections whose name contains `http`.
    let filter = std::env::args().skip(1).find(|arg| !arg.starts_with('-')).unwrap_or_default();
    let wanted = |section: &str| section.contains(filter.as_str());
    if wanted("parse") {
        bench_parse(&texts, points_per_body);
    }
    if wanted("spool") {
        bench_spool(&parsed, points_per_body);
    }
    if wanted("http") {
        bench_http();
    }
    if wanted("seal") {
        bench_seal();
    }
    if wanted("csv") {
        let rows = std::env::var("DIODE_INGEST_BENCH_CSV_ROWS").ok().and_then(|r| r.parse().ok()).unwrap_or(3_000_000);
        bench_csv(rows);
    }
    println!("load average at the end: {}", load_average());
}

/// The 1, 5 and 15-minute load averages, to judge how busy the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

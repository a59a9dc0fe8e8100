//! Slow and hostile clients against the real appliances on loopback: thousands of idle
//! connections and a slowloris client (one header byte every 300 ms) never keep the sender from
//! taking a write or either appliance from answering `/metrics`, and the TCP line protocol listener
//! survives running out of file descriptors.
//!
//! The appliances start with a soft open-file limit of 1,024 (systemd's default for services), so
//! 2,000 idle connections are more than a process could hold; the test process raises its own
//! limit to open them. Every wait is a deadline guard, not a measurement. These need the release
//! binaries (`cargo build --release --bins`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diode_tests::lab::{Lab, LabOptions, find_bin_dir};
use diode_tests::ports::free_address as free_port;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Idle connections opened against each HTTP listener.
const IDLE_CONNECTIONS: usize = 2_000;
/// The soft open-file limit the appliances start with.
const APPLIANCE_SOFT_LIMIT: u64 = 1_024;
/// How long a request may take while the listener is flooded: a deadline guard.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// The tests here change the process's open-file limit around spawning; one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Raises this process's soft open-file limit to hold `descriptors` (up to the hard limit) and
/// returns how many connections it can open beside what it already uses.
fn allow_descriptors(descriptors: u64) -> usize {
    let limit = getrlimit(Resource::Nofile);
    let maximum = limit.maximum.unwrap_or(u64::MAX);
    let wanted = descriptors.min(maximum);
    if limit.current.is_some_and(|current| current < wanted) {
        setrlimit(Resource::Nofile, Rlimit { current: Some(wanted), maximum: limit.maximum }).unwrap();
    }
    usize::try_from(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX).saturating_sub(256)).unwrap_or(usize::MAX)
}

/// Runs `spawn` with this process's soft open-file limit lowered to `soft`, so the processes it
/// starts inherit that limit (their hard limit stays this process's).
fn with_soft_limit<T>(soft: u64, spawn: impl FnOnce() -> T) -> T {
    let before = getrlimit(Resource::Nofile);
    setrlimit(Resource::Nofile, Rlimit { current: Some(soft), maximum: before.maximum }).unwrap();
    let result = spawn();
    setrlimit(Resource::Nofile, before).unwrap();
    result
}

/// Up to `count` connections to `address` that never send a byte; stops at the first connection
/// the listener does not take (its backlog full: the listener has stopped accepting).
fn idle_connections(address: SocketAddr, count: usize) -> Vec<TcpStream> {
    let allowed = allow_descriptors(count as u64 * 3);
    assert!(allowed >= count, "this process may open only {allowed} more descriptors, not {count}");
    (0..count).map_while(|_| TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()).collect()
}

/// A client that sends a request head one byte every 300 ms, for ever; it notes when the server
/// closes its connection.
struct Slowloris {
    stop: Arc<AtomicBool>,
    closed_by_server: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Slowloris {
    fn start(address: SocketAddr) -> Slowloris {
        let stop = Arc::new(AtomicBool::new(false));
        let closed_by_server = Arc::new(AtomicBool::new(false));
        let mut stream = TcpStream::connect(address).unwrap();
        let thread = {
            let (stop, closed_by_server) = (Arc::clone(&stop), Arc::clone(&closed_by_server));
            std::thread::spawn(move || {
                let head = b"GET /metrics HTTP/1.1\r\nHost: slow\r\nX-Slow: ";
                for byte in head.iter().chain(std::iter::repeat(&b'x')) {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if stream.write_all(&[*byte]).is_err() {
                        closed_by_server.store(true, Ordering::Relaxed);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        };
        Slowloris { stop, closed_by_server, thread: Some(thread) }
    }

    fn was_closed_by_server(&self) -> bool {
        self.closed_by_server.load(Ordering::Relaxed)
    }
}

impl Drop for Slowloris {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends `request` on a new connection and returns the response's status line; every step must
/// finish within [`ANSWER_WITHIN`] of the start.
fn answer_within(address: SocketAddr, request: &str) -> Result<String, String> {
    let deadline = Instant::now() + ANSWER_WITHIN;
    let remaining = || deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
    let mut stream = TcpStream::connect_timeout(&address, ANSWER_WITHIN).map_err(|e| format!("connect: {e}"))?;
    stream.set_write_timeout(remaining()).map_err(|e| e.to_string())?;
    stream.write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    while !response.windows(2).any(|w| w == b"\r\n") {
        let Some(left) = remaining() else {
            return Err(format!("no answer within {ANSWER_WITHIN:?}"));
        };
        stream.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        match stream.read(&mut buffer) {
            Ok(0) => return Err("closed without an answer".to_owned()),
            Ok(read) => response.extend_from_slice(&buffer[..read]),
            Err(e) => return Err(format!("no answer within {ANSWER_WITHIN:?}: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&response);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

fn get_metrics(address: SocketAddr) -> Result<String, String> {
    answer_within(address, &format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"))
}

fn write_line(address: SocketAddr) -> Result<String, String> {
    let body = "hostile,src=test v=1 1767225600000000000\n";
    answer_within(
        address,
        &format!(
            "POST /api/v2/write?bucket=b HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Waits for the slowloris connection to be closed by the server (its header timeout, 10 s by
/// default, or its place taken by a newer connection).
fn wait_until_closed(slowloris: &Slowloris) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !slowloris.was_closed_by_server() {
        assert!(Instant::now() < deadline, "the slowloris connection is still open after a minute");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Adds `text` to the `[ingest]` section of the lab's sender config.
fn add_ingest_settings(lab: &Lab, text: &str) {
    let config = std::fs::read_to_string(lab.sender_config()).unwrap();
    std::fs::write(lab.sender_config(), config.replacen("[ingest]\n", &format!("[ingest]\n{text}\n"), 1)).unwrap();
}

#[test]
fn idle_connections_and_a_slowloris_client_never_keep_the_receiver_from_answering_metrics() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::new(dir.path(), LabOptions { simulator: false, ..LabOptions::default() }).unwrap();
    with_soft_limit(APPLIANCE_SOFT_LIMIT, || lab.start_receiver()).unwrap();
    let address = lab.receiver_http;
    let slowloris = Slowloris::start(address);
    let idle = idle_connections(address, IDLE_CONNECTIONS);
    let status = get_metrics(address).expect("/metrics answers beside 2,000 idle connections");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    wait_until_closed(&slowloris);
    drop(idle);
}

#[test]
fn idle_connections_and_a_slowloris_client_never_keep_the_sender_from_taking_a_write_or_answering_metrics() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::new(dir.path(), LabOptions { simulator: false, ..LabOptions::default() }).unwrap();
    let metrics = lab.add_sender_metrics().unwrap();
    with_soft_limit(APPLIANCE_SOFT_LIMIT, || lab.start_sender_until_stopped()).unwrap();
    let ingest = lab.sender_ingest;

    // The ingest listener flooded: writes and metrics still answer.
    let slowloris = Slowloris::start(ingest);
    let idle_ingest = idle_connections(ingest, IDLE_CONNECTIONS);
    let status = write_line(ingest).expect("a write answers beside 2,000 idle connections");
    assert!(status.starts_with("HTTP/1.1 204"), "{status}");
    let status = get_metrics(metrics).expect("/metrics answers");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    // And the metrics listener flooded too.
    let slow_metrics = Slowloris::start(metrics);
    let idle_metrics = idle_connections(metrics, IDLE_CONNECTIONS);
    let status = get_metrics(metrics).expect("/metrics answers beside 2,000 idle connections");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let status = write_line(ingest).expect("a write still answers");
    assert!(status.starts_with("HTTP/1.1 204"), "{status}");
    wait_until_closed(&slowloris);
    wait_until_closed(&slow_metrics);
    drop((idle_ingest, idle_metrics));
}

/// A sender run with both its open-file limits lowered to `limit` (`ulimit -n`), so the test can
/// exhaust them; killed when dropped.
struct LimitedSender(Child);

impl LimitedSender {
    fn start(lab: &Lab, limit: u64) -> LimitedSender {
        let log = std::fs::File::create(lab.dir.join("sender.log")).unwrap();
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
            .arg(find_bin_dir().unwrap().join("diode-sender"))
            .args(["run", "--config"])
            .arg(lab.sender_config())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        LimitedSender(child)
    }
}

impl Drop for LimitedSender {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the sender's log mentions `text`.
fn wait_for_log(lab: &Lab, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = std::fs::read_to_string(lab.dir.join("sender.log")).unwrap_or_default();
        if log.contains(text) {
            return;
        }
        assert!(Instant::now() < deadline, "the sender never logged {text:?}:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_tcp_line_protocol_listener_survives_running_out_of_file_descriptors() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::new(dir.path(), LabOptions { simulator: false, ..LabOptions::default() }).unwrap();
    let tcp = free_port();
    add_ingest_settings(&lab, &format!("tcp_listen = \"{tcp}\""));
    lab.start_receiver().unwrap();
    let _sender = LimitedSender::start(&lab, 128);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(tcp).is_err() {
        assert!(Instant::now() < deadline, "the sender's TCP listener did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // More connections than the sender has descriptors: accepting fails with EMFILE.
    let held: Vec<TcpStream> = (0..200).filter_map(|_| TcpStream::connect(tcp).ok()).collect();
    wait_for_log(&lab, "Too many open files");
    drop(held);
    // The listener is still there: a new connection's line reaches the replica.
    let mut stream = TcpStream::connect(tcp).expect("the TCP listener still accepts connections");
    stream.write_all(b"survivor,src=tcp v=42 1767225600000000000\n").unwrap();
    drop(stream);
    assert!(
        lab.wait_for_points(1, Duration::from_secs(60)),
        "the line written after the descriptors ran out never arrived"
    );
}

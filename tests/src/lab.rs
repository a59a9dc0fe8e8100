//! A lab on loopback: keys, configs, a receiver and a sender run as real processes, with the
//! lossy relay between them, and a check of the replica against the records the simulator made.
//! Used by the end-to-end tests, the demo and the harness.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use diode_common::plant::{PlantConfig, PlantSimulator};
use diode_common::record::{Record, SeriesKey};
use diode_replica::Replica;

use crate::ports::free_address;
use crate::relay::{LossModel, Relay};

/// Everything a lab run can vary.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub series: usize,
    pub rate_hz: f64,
    pub max_records: u64,
    /// Real-time simulator (demo) or as fast as the sender accepts (harness).
    pub realtime: bool,
    pub seed: u64,
    pub start_ns: i64,
    pub loss: LossModel,
    pub link_rate_mbit_s: f64,
    pub repair_overhead: f64,
    pub min_repair_symbols: u16,
    pub interleave_segments: usize,
    pub repeat_repair_after_ms: u64,
    pub segment_max_records: usize,
    pub segment_max_age_ms: u64,
    pub carousel: bool,
    pub carousel_rate_fraction: f64,
    /// Run the plant simulator (off: records come only through the ingest listener).
    pub simulator: bool,
    /// How long the sender keeps beacons and the carousel going after its last record is sent.
    pub linger_ms: u64,
    /// `ingest.token`: HTTP writes must carry it (unset: no token needed).
    pub ingest_token: Option<String>,
    /// `ingest.quality_tag`: the tag that carries a line's quality.
    pub quality_tag: Option<String>,
    /// `ingest.quality_field`: the field that carries a line's quality.
    pub quality_field: Option<String>,
    /// `segments.sealer_thread`: seal on a thread of its own (the default) or on the submitting one.
    pub sealer_thread: bool,
    /// `segments.encoder_threads` (unset: the sender's default, one per core).
    pub encoder_threads: Option<usize>,
    /// The receiver's `replica.merge_quiet_s`; `None` keeps its default.
    pub merge_quiet_s: Option<u32>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            series: 1_000,
            rate_hz: 1.0,
            max_records: 100_000,
            realtime: false,
            seed: 1,
            start_ns: 1_767_225_600_000_000_000, // 2026-01-01T00:00:00Z
            loss: LossModel::default(),
            link_rate_mbit_s: 400.0,
            repair_overhead: 0.2,
            min_repair_symbols: 2,
            interleave_segments: 8,
            repeat_repair_after_ms: 0,
            segment_max_records: 250_000,
            segment_max_age_ms: 1_000,
            carousel: true,
            carousel_rate_fraction: 0.1,
            simulator: true,
            linger_ms: 3_000,
            ingest_token: None,
            quality_tag: None,
            quality_field: None,
            sealer_thread: true,
            encoder_threads: None,
            merge_quiet_s: None,
        }
    }
}

pub struct Lab {
    pub dir: PathBuf,
    pub options: LabOptions,
    bin_dir: PathBuf,
    pub receiver_udp: SocketAddr,
    pub receiver_http: SocketAddr,
    /// The sender's InfluxDB-compatible HTTP ingest listener.
    pub sender_ingest: SocketAddr,
    pub relay: Relay,
    receiver: Option<Child>,
    sender: Option<Child>,
}

/// Where `diode-sender` and `diode-receiver` are: `DIODE_BIN_DIR`, or the cargo target folder
/// this program runs from.
pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DIODE_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(3) {
        if dir.join("diode-sender").is_file() && dir.join("diode-receiver").is_file() {
            return Ok(dir.to_owned());
        }
    }
    bail!(
        "cannot find the diode-sender and diode-receiver binaries near {}; build them (cargo build --release) or set DIODE_BIN_DIR",
        exe.display()
    )
}

impl Lab {
    /// Generates keys and configs in `dir` and starts the relay.
    pub fn new(dir: &Path, options: LabOptions) -> anyhow::Result<Lab> {
        let bin_dir = find_bin_dir()?;
        std::fs::create_dir_all(dir)?;
        let keys = dir.join("keys");
        if !keys.join("signing.key").exists() {
            let output = Command::new(bin_dir.join("diode-sender")).args(["keygen", "--dir"]).arg(&keys).output()?;
            anyhow::ensure!(output.status.success(), "keygen failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let receiver_udp = free_address();
        let receiver_http = free_address();
        let sender_ingest = free_address();
        let relay = Relay::start(receiver_udp, options.loss.clone())?;
        let lab = Lab {
            dir: dir.to_owned(),
            options,
            bin_dir,
            receiver_udp,
            receiver_http,
            sender_ingest,
            relay,
            receiver: None,
            sender: None,
        };
        lab.write_configs()?;
        Ok(lab)
    }

    pub fn sender_config(&self) -> PathBuf {
        self.dir.join("sender.toml")
    }

    pub fn receiver_config(&self) -> PathBuf {
        self.dir.join("receiver.toml")
    }

    pub fn replica_dir(&self) -> PathBuf {
        self.dir.join("replica")
    }

    fn write_configs(&self) -> anyhow::Result<()> {
        let o = &self.options;
        let sender = format!(
            r#"sender_id = 1
data_dir = "sender-state"

[keys]
signing_key = "keys/signing.key"
link_key = "keys/link.key"

[link]
destination = "{destination}"
rate_mbit_s = {rate}
repair_overhead = {overhead}
min_repair_symbols = {min_repair}
interleave_segments = {interleave}
repeat_repair_after_ms = {repeat}
beacon_interval_ms = 500

[segments]
max_records = {max_records}
max_age_ms = {max_age}
sealer_thread = {sealer_thread}
{encoder_threads}

[spool]
fsync = "always"

[carousel]
enabled = {carousel}
window_segments = 100000
rate_fraction = {carousel_fraction}

[ingest]
http_listen = "{ingest}"
{ingest_extra}
[simulator]
enabled = {simulator}
series = {series}
rate_hz = {rate_hz}
seed = {seed}
max_records = {records}
realtime = {realtime}
start_ns = {start_ns}
"#,
            destination = self.relay.listen,
            rate = o.link_rate_mbit_s,
            overhead = o.repair_overhead,
            min_repair = o.min_repair_symbols,
            interleave = o.interleave_segments,
            repeat = o.repeat_repair_after_ms,
            max_records = o.segment_max_records,
            max_age = o.segment_max_age_ms,
            sealer_thread = o.sealer_thread,
            encoder_threads =
                o.encoder_threads.map(|threads| format!("encoder_threads = {threads}")).unwrap_or_default(),
            carousel = o.carousel,
            carousel_fraction = o.carousel_rate_fraction,
            ingest = self.sender_ingest,
            ingest_extra = ingest_settings(o),
            simulator = o.simulator,
            series = o.series,
            rate_hz = o.rate_hz,
            seed = o.seed,
            records = o.max_records,
            realtime = o.realtime,
            start_ns = o.start_ns,
        );
        std::fs::write(self.sender_config(), sender)?;
        let receiver = format!(
            r#"replica_dir = "replica"

[link]
listen = "{udp}"

[keys]
link_key = "keys/link.key"

[[keys.trusted]]
public_key = "keys/signing.pub"

[http]
listen = "{http}"
{replica}"#,
            udp = self.receiver_udp,
            http = self.receiver_http,
            replica =
                o.merge_quiet_s.map(|quiet| format!("\n[replica]\nmerge_quiet_s = {quiet}\n")).unwrap_or_default(),
        );
        std::fs::write(self.receiver_config(), receiver)?;
        Ok(())
    }

    fn spawn(&self, program: &str, args: &[&str], log_name: &str) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(log_name))?;
        Command::new(self.bin_dir.join(program))
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {program}"))
    }

    /// Starts the receiver and waits until its HTTP listener answers.
    pub fn start_receiver(&mut self) -> anyhow::Result<()> {
        let config = self.receiver_config();
        let child =
            self.spawn("diode-receiver", &["run", "--config", config.to_str().expect("utf-8 path")], "receiver.log")?;
        self.receiver = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.metrics().is_err() {
            if Instant::now() > deadline {
                bail!("the receiver did not start in 30 s; its log ends:\n{}", self.log_tail("receiver.log"));
            }
            if let Some(status) = self.receiver.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("the receiver exited ({status}); its log ends:\n{}", self.log_tail("receiver.log"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Starts the sender; it exits after its records are sent and its linger time.
    pub fn start_sender(&mut self) -> anyhow::Result<()> {
        let config = self.sender_config();
        let linger = self.options.linger_ms.to_string();
        let args =
            ["run", "--config", config.to_str().expect("utf-8 path"), "--exit-when-done", "--linger-ms", &linger];
        self.sender = Some(self.spawn("diode-sender", &args, "sender.log")?);
        Ok(())
    }

    /// Starts the sender to run until stopped (for ingest: it has no end of its own).
    pub fn start_sender_until_stopped(&mut self) -> anyhow::Result<()> {
        let config = self.sender_config();
        self.sender = Some(self.spawn(
            "diode-sender",
            &["run", "--config", config.to_str().expect("utf-8 path")],
            "sender.log",
        )?);
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(self.sender_ingest, "/health").is_err() {
            if Instant::now() > deadline {
                bail!(
                    "the sender's ingest listener did not start in 30 s; its log ends:\n{}",
                    self.log_tail("sender.log")
                );
            }
            if let Some(status) = self.sender.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("the sender exited ({status}); its log ends:\n{}", self.log_tail("sender.log"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGTERM: the sender seals and sends what is pending, then exits.
    pub fn stop_sender(&mut self) -> anyhow::Result<ExitStatus> {
        let child = self.sender.as_ref().context("no sender running")?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        self.wait_sender(Duration::from_secs(60))
    }

    /// The last lines of one of the lab's logs (`sender.log`, `receiver.log`), for an error: the
    /// lab's directory is usually a temporary one, gone by the time anyone reads the error.
    pub fn log_tail(&self, name: &str) -> String {
        const LINES: usize = 40;
        match std::fs::read_to_string(self.dir.join(name)) {
            Ok(log) => {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(LINES)..].join("\n")
            }
            Err(error) => format!("({name} cannot be read: {error})"),
        }
    }

    pub fn sender_pid(&self) -> Option<u32> {
        self.sender.as_ref().map(Child::id)
    }

    pub fn receiver_pid(&self) -> Option<u32> {
        self.receiver.as_ref().map(Child::id)
    }

    /// What the built-in simulator said its record generation cost (its `simulator finished` log
    /// line), in CPU seconds; `None` before it finished.
    pub fn simulator_generating_cpu_seconds(&self) -> Option<f64> {
        let log = std::fs::read_to_string(self.dir.join("sender.log")).ok()?;
        let line = log.lines().rev().find(|line| line.contains("simulator finished"))?;
        // Without the terminal colours the log may carry (`\x1b[…m`).
        let mut plain = String::with_capacity(line.len());
        let mut in_escape = false;
        for c in line.chars() {
            match (in_escape, c) {
                (false, '\x1b') => in_escape = true,
                (false, c) => plain.push(c),
                (true, 'm') => in_escape = false,
                (true, _) => {}
            }
        }
        let value = plain.split_once("generating_cpu_ms=")?.1.split(|c: char| !c.is_ascii_digit()).next()?;
        Some(value.parse::<f64>().ok()? / 1e3)
    }

    pub fn sender_running(&mut self) -> bool {
        self.sender.as_mut().is_some_and(|child| child.try_wait().ok().flatten().is_none())
    }

    pub fn wait_sender(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let child = self.sender.as_mut().context("no sender running")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.sender = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the sender did not finish in {timeout:?}; its log ends:\n{}", self.log_tail("sender.log"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill_receiver(&mut self) {
        if let Some(mut child) = self.receiver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn kill_sender(&mut self) {
        if let Some(mut child) = self.sender.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for an orderly exit.
    pub fn stop_receiver(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.receiver.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    bail!("the receiver did not stop on SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Adds a `/metrics` listener to the sender's config (before the sender starts) and returns
    /// its address, for [`metric_at`].
    pub fn add_sender_metrics(&self) -> anyhow::Result<SocketAddr> {
        let address = free_address();
        let mut config = std::fs::read_to_string(self.sender_config())?;
        config.push_str(&format!("\n[metrics]\nlisten = \"{address}\"\n"));
        std::fs::write(self.sender_config(), config)?;
        Ok(address)
    }

    /// The receiver's metrics, by name (labels included in the name).
    pub fn metrics(&self) -> anyhow::Result<HashMap<String, f64>> {
        metrics_at(self.receiver_http)
    }

    pub fn metric(&self, name: &str) -> f64 {
        self.metrics().ok().and_then(|m| m.get(name).copied()).unwrap_or(0.0)
    }

    /// Waits until the replica holds `points` points or `timeout` passes.
    pub fn wait_for_points(&self, points: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.metric("diode_receiver_replica_points") as u64 >= points {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The records the sender's simulator produced, made again from the same settings.
    pub fn expected_records(&self) -> Vec<Record> {
        expected_records(&self.options)
    }

    /// Compares the replica with the simulator's records.
    pub fn verify_replica(&self) -> anyhow::Result<Verification> {
        let replica = Replica::open_read_only(&self.replica_dir())?;
        verify(&replica, &self.expected_records())
    }
}

/// The optional `[ingest]` settings, one TOML line each.
fn ingest_settings(options: &LabOptions) -> String {
    let settings = [
        ("token", &options.ingest_token),
        ("quality_tag", &options.quality_tag),
        ("quality_field", &options.quality_field),
    ];
    settings
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|value| format!("{name} = {}\n", toml_string(value))))
        .collect()
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.kill_sender();
        self.kill_receiver();
    }
}

/// The simulator's records for `options`, stepped exactly as diode-sender steps it.
pub fn expected_records(options: &LabOptions) -> Vec<Record> {
    let mut plant = PlantSimulator::new(PlantConfig {
        seed: options.seed,
        series_count: options.series,
        base_rate_hz: options.rate_hz,
        start_ns: options.start_ns,
    });
    let mut records = Vec::new();
    let mut until_ns = options.start_ns;
    while (records.len() as u64) < options.max_records {
        until_ns += 10_000_000;
        plant.generate_until(until_ns, &mut records);
    }
    records.truncate(options.max_records as usize);
    records
}

/// How the replica compares with the source.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verification {
    pub expected_points: u64,
    pub found_points: u64,
    pub missing: u64,
    pub extra: u64,
    pub different: u64,
}

impl Verification {
    pub fn is_exact(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.different == 0 && self.expected_points == self.found_points
    }
}

/// Every expected point present with the same value and quality, and nothing else. Duplicate
/// timestamps in the source resolve last-write-wins, as in the replica.
pub fn verify(replica: &Replica, expected: &[Record]) -> anyhow::Result<Verification> {
    let mut by_series: HashMap<&SeriesKey, std::collections::BTreeMap<i64, &Record>> = HashMap::new();
    for record in expected {
        by_series.entry(&record.series).or_default().insert(record.timestamp_ns, record);
    }
    let mut result = Verification::default();
    for (series, points) in &by_series {
        result.expected_points += points.len() as u64;
        let Some(id) = replica.series_id(series) else {
            result.missing += points.len() as u64;
            continue;
        };
        let mut seen = 0u64;
        for point in replica.scan(id, i64::MIN, i64::MAX) {
            let point = point?;
            result.found_points += 1;
            match points.get(&point.timestamp_ns) {
                Some(record) if record.value.bit_eq(&point.value) && record.quality == point.quality => seen += 1,
                Some(_) => {
                    seen += 1;
                    result.different += 1;
                }
                None => result.extra += 1,
            }
        }
        result.missing += points.len() as u64 - seen;
    }
    let catalogued: u64 = replica
        .series_list()
        .iter()
        .filter(|info| !by_series.contains_key(&info.key))
        .map(|info| info.point_count)
        .sum();
    result.extra += catalogued;
    result.found_points += catalogued;
    Ok(result)
}

/// A plain HTTP/1.0 GET on loopback, for metrics and status.
pub fn http_get(address: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("malformed HTTP response")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"), "GET {path}: {head}");
    Ok(body.to_owned())
}

/// A plain HTTP/1.1 POST on loopback; returns the status code.
pub fn http_post(address: SocketAddr, path: &str, body: &str) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).context("malformed HTTP response")?;
    Ok(status.parse()?)
}

/// CPU seconds (user + system) of a process's threads, by thread id, as read from /proc. A thread
/// that has ended is no longer listed there, so [`ThreadCpu`] keeps what each was last seen at.
#[derive(Debug, Default, Clone)]
pub struct ThreadCpu {
    /// Thread id → (name, CPU seconds when last read).
    threads: HashMap<u32, (String, f64)>,
}

impl ThreadCpu {
    /// Reads the threads of `pid` now, keeping those that have ended since the last read.
    pub fn read(&mut self, pid: u32) {
        for thread in diode_host::process::threads(pid) {
            self.threads.insert(thread.tid, (thread.name, thread.cpu_seconds));
        }
    }

    /// Seconds by thread name without its number (`encoder-0` and `encoder-1` are `encoder`),
    /// less what `before` had seen of the same threads, largest first.
    pub fn by_name(&self, before: &ThreadCpu) -> Vec<(String, f64)> {
        let mut by_name: HashMap<String, f64> = HashMap::new();
        for (tid, (name, seconds)) in &self.threads {
            let earlier = before.threads.get(tid).map_or(0.0, |(_, seconds)| *seconds);
            let name = name.trim_end_matches(|c: char| c.is_ascii_digit()).trim_end_matches('-');
            *by_name.entry(name.to_owned()).or_default() += seconds - earlier;
        }
        let mut threads: Vec<(String, f64)> = by_name.into_iter().collect();
        threads.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        threads
    }
}

/// CPU seconds (user + system) a process has used so far, from /proc; `None` once it has gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    Some(diode_host::process::stat(pid)?.cpu_seconds)
}

/// The metrics an appliance serves at `address`'s `/metrics`, by name (labels included in the
/// name).
pub fn metrics_at(address: SocketAddr) -> anyhow::Result<HashMap<String, f64>> {
    let body = http_get(address, "/metrics")?;
    Ok(body
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect())
}

/// One metric served at `address`'s `/metrics` (labels included in the name); NaN if it cannot
/// be read.
pub fn metric_at(address: SocketAddr, name: &str) -> f64 {
    metrics_at(address).ok().and_then(|metrics| metrics.get(name).copied()).unwrap_or(f64::NAN)
}

/// A sender source's counter `diode_sender_source_<family>_total` for the source of `kind` named
/// `source`, served at `address`'s `/metrics`; 0 until it is served.
pub fn source_counter(address: SocketAddr, kind: &str, source: &str, family: &str) -> u64 {
    let value =
        metric_at(address, &format!("diode_sender_source_{family}_total{{kind=\"{kind}\",source=\"{source}\"}}"));
    if value.is_nan() { 0 } else { value as u64 }
}

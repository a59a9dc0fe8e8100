//! diode-sender as an MQTT client of a real broker: Debian's `mosquitto`, started by the test on a
//! free loopback port, and a plant publisher built on `paho-mqtt` (`tests/python/mqtt_publish.py`:
//! two Sparkplug B edge nodes with devices, births, data by alias with sequence numbers wrapping
//! past 255, historical, null and quality-flagged metrics, a device death; JSON sensors as
//! objects, arrays and object values; every message QoS 1). The replica must then hold exactly
//! the points the documented mapping gives, even when the sender is killed with SIGKILL in the
//! middle of the stream (nothing acknowledged to the broker is lost: it redelivers the rest), and
//! malformed payloads are counted and never stall the source. Without mosquitto or the venv the
//! tests fail and say to run `source scripts/prepare`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diode_common::record::{Quality, SeriesKey, Value};
use diode_replica::Replica;
use diode_tests::lab::{self, Lab, LabOptions};
use diode_tests::ports::free_port;

const SOURCE: &str = "plant-broker";
/// The probe the publisher sends until the sender is subscribed; not part of the comparison.
const PROBE_SERIES: &str = "json/probe/ready";
const MAX_LISTED_MISMATCHES: usize = 20;

/// The venv's Python from `scripts/prepare`, checked to import paho-mqtt and protobuf.
fn python() -> PathBuf {
    let python = std::env::var_os("DIODE_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache/diode/venv/bin/python")
    });
    let check = Command::new(&python).args(["-c", "import paho.mqtt.client, google.protobuf"]).output();
    match check {
        Ok(output) if output.status.success() => python,
        Ok(output) => panic!(
            "{} cannot import paho-mqtt and protobuf ({}); run `source scripts/prepare`, which installs them in a venv and sets DIODE_PYTHON",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => panic!("no Python at {} ({error}); run `source scripts/prepare`", python.display()),
    }
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python").join(name)
}

/// A mosquitto broker of the test's own, on loopback; killed when dropped.
struct Broker {
    child: Child,
    port: u16,
    /// With TLS: the folder of `tests/python/make_certs.py`'s certificates.
    certificates: Option<PathBuf>,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        Self::start_with(dir, None)
    }

    /// A broker that speaks only TLS and requires a client certificate signed by the test CA.
    fn start_tls(dir: &Path) -> Broker {
        let certificates = dir.join("certificates");
        let output = Command::new(python())
            .arg(script("make_certs.py"))
            .arg("--dir")
            .arg(&certificates)
            .output()
            .expect("the certificate script runs");
        assert!(output.status.success(), "make_certs.py failed: {}", String::from_utf8_lossy(&output.stderr));
        Self::start_with(dir, Some(certificates))
    }

    fn start_with(dir: &Path, certificates: Option<PathBuf>) -> Broker {
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.is_file())
            .unwrap_or_else(|| panic!("mosquitto is not installed; run `source scripts/prepare`, which installs it"));
        let port = free_port();
        let config = dir.join("mosquitto.conf");
        // `user root`: run as whoever starts it (as root, mosquitto would otherwise switch to the
        // mosquitto user, who cannot read the test's private folder).
        let mut text = format!(
            "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             max_queued_messages 1000000\nmax_inflight_messages 1000\n\
             log_dest file {}\nlog_type error\nlog_type warning\nlog_type notice\n",
            dir.join("mosquitto.log").display()
        );
        if let Some(certificates) = &certificates {
            let file = |name: &str| certificates.join(name).display().to_string();
            text.push_str(&format!(
                "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
                file("ca.pem"),
                file("server.pem"),
                file("server.key")
            ));
        }
        std::fs::write(&config, text).unwrap();
        let child = Command::new(binary).arg("-c").arg(&config).stdin(Stdio::null()).spawn().expect("mosquitto starts");
        let broker = Broker { child, port, certificates };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {port}; see {}", dir.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A lab whose sender has no simulator and one MQTT source with a Sparkplug B and a JSON
/// subscription, and a metrics listener.
fn lab(dir: &Path, broker: &Broker) -> (Lab, SocketAddr) {
    let lab = Lab::new(dir, LabOptions { simulator: false, ..LabOptions::default() }).unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let connection = match &broker.certificates {
        None => format!("url = \"mqtt://127.0.0.1:{}\"", broker.port),
        Some(certificates) => format!(
            "url = \"mqtts://localhost:{}\"\nca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
            broker.port,
            certificates.join("ca.pem").display(),
            certificates.join("client.pem").display(),
            certificates.join("client.key").display()
        ),
    };
    let sources = format!(
        r#"
[metrics]
listen = "{metrics}"

[[sources.mqtt]]
name = "{SOURCE}"
{connection}
client_id = "diode-sender-under-test"
clean_session = false
reconnect_min_ms = 100
reconnect_max_ms = 1000

[[sources.mqtt.subscriptions]]
topic = "spBv1.0/#"
qos = 1
format = "sparkplug_b"

[[sources.mqtt.subscriptions]]
topic = "plant/#"
qos = 1
format = "json"
series = "json/{{2}}/{{3}}"
"#
    );
    let mut config = std::fs::read_to_string(lab.sender_config()).unwrap();
    config.push_str(&sources);
    std::fs::write(lab.sender_config(), config).unwrap();
    (lab, metrics)
}

/// The sender's counter `diode_sender_source_<family>_total` for the MQTT source (0 if unread).
fn source_counter(metrics: SocketAddr, family: &str) -> u64 {
    lab::source_counter(metrics, "mqtt", SOURCE, family)
}

fn spawn_publisher(dir: &Path, broker: &Broker, metrics: SocketAddr, extra: &[&str]) -> (Child, PathBuf) {
    let out = dir.join("expected.jsonl");
    let child = Command::new(python())
        .arg(script("mqtt_publish.py"))
        .args(["--port", &broker.port.to_string(), "--seed", "11"])
        .args(["--ready-metrics", &format!("http://{metrics}/metrics")])
        .args(extra)
        .args(broker.certificates.iter().flat_map(|certificates| {
            ["ca.pem", "client.pem", "client.key"]
                .into_iter()
                .zip(["--tls-ca", "--tls-cert", "--tls-key"])
                .flat_map(|(file, option)| [option.to_owned(), certificates.join(file).display().to_string()])
        }))
        .arg("--out")
        .arg(&out)
        .stdout(std::fs::File::create(dir.join("publisher.out")).unwrap())
        .stderr(std::fs::File::create(dir.join("publisher.err")).unwrap())
        .spawn()
        .expect("the publisher starts");
    (child, out)
}

fn wait_for_publisher(mut child: Child, dir: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let stdout = std::fs::read_to_string(dir.join("publisher.out")).unwrap_or_default();
            let stderr = std::fs::read_to_string(dir.join("publisher.err")).unwrap_or_default();
            assert!(status.success(), "the publisher failed:\n{stdout}\n{stderr}");
            return stdout;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the publisher did not finish; see {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One point the publisher expects in the replica.
struct Expected {
    value: Value,
    quality: Quality,
}

fn read_expected(path: &Path) -> BTreeMap<String, BTreeMap<i64, Expected>> {
    let mut expected: BTreeMap<String, BTreeMap<i64, Expected>> = BTreeMap::new();
    for line in std::fs::read_to_string(path).expect("the publisher wrote its expectations").lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        let value = match entry["type"].as_str().unwrap() {
            "float" => Value::F64(entry["value"].as_str().unwrap().parse().unwrap()),
            "integer" => Value::I64(entry["value"].as_i64().unwrap()),
            "boolean" => Value::Bool(entry["value"].as_bool().unwrap()),
            "string" => Value::String(entry["value"].as_str().unwrap().to_owned()),
            other => panic!("unknown type {other}"),
        };
        let quality = Quality(u32::try_from(entry["quality"].as_u64().unwrap()).unwrap());
        let series = entry["series"].as_str().unwrap().to_owned();
        let previous = expected
            .entry(series.clone())
            .or_default()
            .insert(entry["time_ns"].as_i64().unwrap(), Expected { value, quality });
        assert!(previous.is_none(), "the publisher wrote {series} at one time twice");
    }
    expected
}

fn point_count(expected: &BTreeMap<String, BTreeMap<i64, Expected>>) -> u64 {
    expected.values().map(|points| points.len() as u64).sum()
}

/// Every expected point with its value (bit for bit) and quality; nothing else but the probe.
fn compare(replica: &Replica, expected: &BTreeMap<String, BTreeMap<i64, Expected>>) -> Vec<String> {
    let mut findings = Vec::new();
    for (series, points) in expected {
        let Some(id) = replica.series_id(&SeriesKey::new(series.clone())) else {
            findings.push(format!("series {series} is missing ({} points)", points.len()));
            continue;
        };
        let mut found = BTreeSet::new();
        for point in replica.scan(id, i64::MIN, i64::MAX) {
            let point = point.unwrap();
            found.insert(point.timestamp_ns);
            match points.get(&point.timestamp_ns) {
                None => findings.push(format!("{series} at {}: a point nobody published", point.timestamp_ns)),
                Some(want) if !want.value.bit_eq(&point.value) || want.quality != point.quality => {
                    findings.push(format!(
                        "{series} at {}: replica has {:?} ({}), published {:?} ({})",
                        point.timestamp_ns, point.value, point.quality, want.value, want.quality
                    ))
                }
                Some(_) => {}
            }
        }
        for timestamp_ns in points.keys().filter(|t| !found.contains(*t)) {
            findings.push(format!("{series} at {timestamp_ns}: missing"));
        }
    }
    for info in replica.series_list() {
        if !expected.contains_key(&*info.key.name) && &*info.key.name != PROBE_SERIES {
            findings.push(format!("series {} ({} points) was never published", info.key, info.point_count));
        }
    }
    findings
}

fn assert_replica_matches(lab: &mut Lab, dir: &Path, expected: &BTreeMap<String, BTreeMap<i64, Expected>>) {
    let points = point_count(expected);
    assert!(
        lab.wait_for_points(points + 1, Duration::from_secs(180)),
        "the replica did not reach {} points (the publisher's and the probe's); see {}",
        points + 1,
        dir.display()
    );
    assert!(lab.stop_sender().unwrap().success());
    lab.stop_receiver().unwrap();
    let replica = Replica::open_read_only(&lab.replica_dir()).unwrap();
    let findings = compare(&replica, expected);
    assert!(
        findings.is_empty(),
        "the replica differs from what was published ({} findings):\n{}",
        findings.len(),
        findings.iter().take(MAX_LISTED_MISMATCHES).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn every_qos1_point_reaches_the_replica_across_a_sender_sigkill_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let (mut lab, metrics) = lab(dir.path(), &broker);
    lab.start_receiver().unwrap();
    lab.start_sender_until_stopped().unwrap();
    let (mut publisher, expectations) = spawn_publisher(dir.path(), &broker, metrics, &[]);

    // Kill the sender once it has spooled some of the stream; the broker keeps the rest.
    let deadline = Instant::now() + Duration::from_secs(120);
    while source_counter(metrics, "records") < 3_000 {
        assert!(Instant::now() < deadline, "the sender spooled nothing from the broker; see {}", dir.path().display());
        assert!(publisher.try_wait().unwrap().is_none_or(|status| status.success()), "the publisher failed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let publisher_running = publisher.try_wait().unwrap().is_none();
    lab.kill_sender();
    lab.start_sender_until_stopped().unwrap();

    let summary = wait_for_publisher(publisher, dir.path());
    println!(
        "{} (killed while the publisher was {})",
        summary.trim(),
        if publisher_running { "publishing" } else { "done" }
    );
    let expected = read_expected(&expectations);
    assert!(point_count(&expected) > 20_000, "the publisher must exercise a real stream");
    let sparkplug: HashMap<bool, usize> = expected.keys().fold(HashMap::new(), |mut counts, series| {
        *counts.entry(series.starts_with("plant/")).or_default() += 1;
        counts
    });
    assert!(sparkplug[&true] >= 20 && sparkplug[&false] >= 20, "both formats are published: {sparkplug:?}");
    assert_replica_matches(&mut lab, dir.path(), &expected);
}

#[test]
fn malformed_payloads_are_counted_and_never_stall_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let (mut lab, metrics) = lab(dir.path(), &broker);
    lab.start_receiver().unwrap();
    lab.start_sender_until_stopped().unwrap();
    let rounds = 50;
    let (publisher, expectations) = spawn_publisher(
        dir.path(),
        &broker,
        metrics,
        &["--data-messages", "400", "--json-messages", "600", "--malformed", &rounds.to_string()],
    );
    let summary = wait_for_publisher(publisher, dir.path());
    println!("{}", summary.trim());
    let expected = read_expected(&expectations);
    // Every point after the last malformed payload arrives: the source never stalled.
    let points = point_count(&expected);
    assert!(lab.wait_for_points(points + 1, Duration::from_secs(120)), "the replica did not reach {points} points");
    assert_eq!(source_counter(metrics, "malformed"), 3 * rounds, "each malformed payload is counted once");
    assert_eq!(source_counter(metrics, "sequence_gaps"), 0);
    assert_eq!(source_counter(metrics, "deaths"), 1);
    assert_replica_matches(&mut lab, dir.path(), &expected);
}

#[test]
fn mqtts_with_a_client_certificate_delivers_every_point() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_tls(dir.path());
    let (mut lab, metrics) = lab(dir.path(), &broker);
    lab.start_receiver().unwrap();
    lab.start_sender_until_stopped().unwrap();
    let (publisher, expectations) = spawn_publisher(
        dir.path(),
        &broker,
        metrics,
        &["--data-messages", "200", "--json-messages", "200", "--malformed", "0"],
    );
    println!("{}", wait_for_publisher(publisher, dir.path()).trim());
    let expected = read_expected(&expectations);
    assert_replica_matches(&mut lab, dir.path(), &expected);
}

/// A measurement for the README's figures, not a check (run it alone: `cargo test --release -p
/// diode-tests --test mqtt_source -- --ignored --nocapture`): messages are queued in mosquitto for
/// the sender's persistent session while it is stopped, then the sender starts and takes them all
/// as fast as it can (decode, spool with fsync, acknowledge); the rate, the sender's and the
/// broker's CPU are printed. No receiver runs, so the sender has the machine to itself.
#[test]
#[ignore = "a measurement for the README's figures"]
fn sustained_rates_through_mosquitto() {
    for (format, option, messages) in [("Sparkplug B", "--bulk-sparkplug", 20_000u64), ("JSON", "--bulk-json", 200_000)]
    {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start(dir.path());
        let (mut lab, metrics) = lab(dir.path(), &broker);
        // The first start creates the persistent session and its subscriptions.
        lab.start_sender_until_stopped().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while source_counter(metrics, "connects") < 1 {
            assert!(Instant::now() < deadline, "the sender did not connect");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(500)); // the SUBACK; a measurement, not a test
        assert!(lab.stop_sender().unwrap().success());
        let output = Command::new(python())
            .arg(script("mqtt_publish.py"))
            .args(["--port", &broker.port.to_string(), option, &messages.to_string()])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let points: u64 = stdout.trim().trim_start_matches("bulk ").parse().unwrap();
        let broker_cpu_before = diode_tests::lab::cpu_seconds(broker.child.id()).unwrap_or(0.0);
        let started = Instant::now();
        lab.start_sender_until_stopped().unwrap();
        let pid = lab.sender_pid().unwrap();
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut sender_cpu = 0.0;
        while source_counter(metrics, "records") < points {
            assert!(Instant::now() < deadline, "the sender did not take every queued message");
            sender_cpu = diode_tests::lab::cpu_seconds(pid).unwrap_or(sender_cpu);
            std::thread::sleep(Duration::from_millis(5));
        }
        let wall = started.elapsed().as_secs_f64();
        let sender_cpu = diode_tests::lab::cpu_seconds(pid).unwrap_or(sender_cpu);
        let broker_cpu = diode_tests::lab::cpu_seconds(broker.child.id()).unwrap_or(0.0) - broker_cpu_before;
        println!(
            "MQTT {format}: {points} points in {} QoS 1 messages, {wall:.2} s from sender start: {:.0} points/s; \
             sender {sender_cpu:.2} s CPU ({:.0} points per CPU-second), mosquitto {broker_cpu:.2} s CPU",
            if format == "JSON" { messages } else { messages + 10 },
            points as f64 / wall,
            points as f64 / sender_cpu
        );
        lab.kill_sender();
    }
}

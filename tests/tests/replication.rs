//! Further replicas over QUIC, on loopback with real processes: a sender feeds a receiver over
//! the diode link (through the lossy relay), that receiver serves downstream receivers over QUIC
//! (mutual TLS), and each downstream verifies every segment again before storing it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use diode_replica::{Replica, SegmentKey};
use diode_tests::lab::{Lab, LabOptions};
use diode_tests::replicas::{
    Downstream, LossyUdpRelay, compare_replicas, free_udp_address, make_certificates, metrics, receiver_command,
    serve_section, wait_until,
};

const WAIT: Duration = Duration::from_secs(120);

/// A lab whose receiver serves downstreams on the returned address, with certificates for the
/// upstream and for `downstreams` in `dir/tls`.
fn serving_lab(dir: &Path, options: LabOptions, downstreams: &[&str]) -> (Lab, SocketAddr) {
    serving_lab_with(dir, options, downstreams, "")
}

/// As [`serving_lab`], with more `[serve]` settings (TOML lines).
fn serving_lab_with(dir: &Path, options: LabOptions, downstreams: &[&str], serve_settings: &str) -> (Lab, SocketAddr) {
    let lab = Lab::new(dir, options).unwrap();
    let tls = dir.join("tls");
    let mut names = vec![diode_tests::replicas::UPSTREAM_NAME];
    names.extend_from_slice(downstreams);
    make_certificates(&tls, &names).unwrap();
    let listen = free_udp_address().unwrap();
    let mut config = std::fs::read_to_string(lab.receiver_config()).unwrap();
    config.push_str(&serve_section(listen, &tls));
    config.push_str(serve_settings);
    std::fs::write(lab.receiver_config(), config).unwrap();
    (lab, listen)
}

fn downstream(dir: &Path, name: &str, upstream: SocketAddr) -> Downstream {
    Downstream::new(&dir.join(name), name, upstream, &dir.join("tls"), &dir.join("keys/signing.pub"), None).unwrap()
}

/// The sum of every metric whose name (labels included) starts with `prefix`.
fn metric_sum(metrics: &HashMap<String, f64>, prefix: &str) -> f64 {
    metrics.iter().filter(|(name, _)| name.starts_with(prefix)).map(|(_, value)| value).sum()
}

fn points(downstream: &Downstream) -> u64 {
    downstream.metric("diode_receiver_replica_points") as u64
}

fn realtime_options(seed: u64) -> LabOptions {
    LabOptions {
        series: 500,
        rate_hz: 20.0, // 10,000 points/s in real time: ten seconds of plant data, from now on
        realtime: true,
        start_ns: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64,
        max_records: 100_000,
        seed,
        linger_ms: 1_000,
        ..LabOptions::default()
    }
}

#[test]
fn three_downstreams_one_behind_a_lossy_path_that_is_cut_for_a_while_end_exactly_equal_to_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    // Ten segments a second, a feed of only four and 64 KiB of buffer per connection: a stalled
    // downstream must fall behind the feed and catch up from the audit log.
    let options = LabOptions { segment_max_age_ms: 100, ..realtime_options(11) };
    let settings = "feed_segments = 4\nsend_window_kib = 64\n";
    let (mut lab, serve) = serving_lab_with(dir.path(), options, &["site-a", "site-b", "site-c"], settings);
    lab.start_receiver().unwrap();
    // site-c reaches the upstream through a relay that drops 5 % of the datagrams both ways.
    let relay = LossyUdpRelay::start(serve, 0.05, 7).unwrap();
    let mut a = downstream(dir.path(), "site-a", serve);
    let mut b = downstream(dir.path(), "site-b", serve);
    let mut c = downstream(dir.path(), "site-c", relay.listen);
    a.start().unwrap();
    c.start().unwrap();
    lab.start_sender().unwrap();
    // site-b joins mid-stream: it catches up from the audit log, then follows live.
    assert!(lab.wait_for_points(30_000, WAIT), "the upstream did not apply 30,000 points");
    b.start().unwrap();
    assert!(wait_until(WAIT, || metric_sum(
        &lab.metrics().unwrap_or_default(),
        "diode_receiver_replication_downstreams"
    ) == 3.0));
    let upstream_metrics = lab.metrics().unwrap();
    for name in ["site-a", "site-b", "site-c"] {
        assert!(
            upstream_metrics
                .keys()
                .any(|key| key.starts_with("diode_receiver_replication_bytes_sent") && key.contains(name)),
            "the upstream's metrics show no connection of {name}"
        );
    }
    // site-c's path is cut for a while: its connection stalls (QUIC keeps it open) while the
    // stream goes on to the others.
    relay.set_loss(1.0);
    let at_cut = lab.metric("diode_receiver_replica_points") as u64;
    assert!(lab.wait_for_points(at_cut + 30_000, WAIT), "the upstream stalled while site-c was cut off");
    assert!(wait_until(WAIT, || points(&a) >= at_cut + 30_000), "site-a stalled while site-c was cut off");
    relay.set_loss(0.05);
    lab.wait_sender(WAIT).unwrap();
    assert!(lab.wait_for_points(100_000, WAIT), "the upstream did not apply every point");
    for downstream in [&a, &b, &c] {
        assert!(
            wait_until(WAIT, || points(downstream) >= 100_000),
            "{} has {} points of 100,000",
            downstream.name,
            points(downstream)
        );
    }
    // Every segment counted into an apply queue (from the link or an upstream) is counted out.
    assert!(wait_until(WAIT, || lab.metric("diode_receiver_apply_queue_bytes") == 0.0));
    for downstream in [&a, &b, &c] {
        assert!(
            wait_until(WAIT, || downstream.metric("diode_receiver_apply_queue_bytes") == 0.0),
            "{}: apply queue bytes {}",
            downstream.name,
            downstream.metric("diode_receiver_apply_queue_bytes")
        );
    }
    let dropped = relay.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped > 0, "the relay dropped nothing");
    eprintln!("the lossy relay dropped {dropped} QUIC datagrams");
    let status = diode_tests::lab::http_get(lab.receiver_http, "/api/v1/replication").unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let site_c = status["downstreams"].as_array().unwrap().iter().find(|d| d["name"] == "site-c").cloned();
    eprintln!("site-c as the upstream sees it: {site_c:?}");
    let catch_ups = site_c.map_or(0, |d| d["catch_ups"].as_u64().unwrap_or(0));
    let reconnects = metric_sum(&c.metrics().unwrap(), "diode_receiver_upstream_connects");
    assert!(
        catch_ups >= 1 || reconnects >= 2.0,
        "site-c never fell behind the feed (catch-ups {catch_ups}, connections {reconnects})"
    );
    for downstream in [&mut a, &mut b, &mut c] {
        downstream.stop().unwrap();
    }
    lab.stop_receiver().unwrap();
    assert!(lab.verify_replica().unwrap().is_exact(), "the upstream is not exact");
    for downstream in [&a, &b, &c] {
        let difference = compare_replicas(&lab.replica_dir(), &downstream.replica_dir()).unwrap();
        assert!(difference.is_equal(), "{}: {difference:?}", downstream.name);
        assert_eq!(difference.points_left, 100_000);
    }
    // The audit of a downstream replica works as on the first one: every signature, chain, point.
    receiver_command(&["audit", "verify", "--config", a.config().to_str().unwrap()]).unwrap();
}

#[test]
fn a_downstream_killed_and_restarted_mid_stream_ends_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (mut lab, serve) = serving_lab(dir.path(), realtime_options(12), &["site-a"]);
    lab.start_receiver().unwrap();
    let mut a = downstream(dir.path(), "site-a", serve);
    a.start().unwrap();
    lab.start_sender().unwrap();
    assert!(wait_until(WAIT, || points(&a) >= 20_000), "site-a did not reach 20,000 points");
    a.kill();
    let at_kill = Replica::open_read_only(&a.replica_dir()).unwrap().total_points();
    assert!(at_kill < 100_000, "site-a already had every point when it was killed");
    let upstream_at_kill = lab.metric("diode_receiver_replica_points") as u64;
    assert!(lab.wait_for_points(upstream_at_kill + 20_000, WAIT), "the upstream stalled while site-a was down");
    a.start().unwrap();
    lab.wait_sender(WAIT).unwrap();
    assert!(lab.wait_for_points(100_000, WAIT));
    assert!(wait_until(WAIT, || points(&a) >= 100_000), "site-a has {} points of 100,000", points(&a));
    a.stop().unwrap();
    lab.stop_receiver().unwrap();
    let difference = compare_replicas(&lab.replica_dir(), &a.replica_dir()).unwrap();
    assert!(difference.is_equal(), "{difference:?}");
    assert_eq!(difference.points_left, 100_000);
}

#[test]
fn a_segment_tampered_with_in_the_upstreams_store_is_refused_downstream_and_shows_as_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let options = LabOptions {
        series: 200,
        max_records: 20_000,
        segment_max_records: 2_000,
        seed: 13,
        linger_ms: 500,
        ..LabOptions::default()
    };
    let (mut lab, serve) = serving_lab(dir.path(), options, &["site-a"]);
    lab.start_receiver().unwrap();
    lab.start_sender().unwrap();
    lab.wait_sender(WAIT).unwrap();
    assert!(lab.wait_for_points(20_000, WAIT));
    lab.stop_receiver().unwrap();
    let tampered = tamper_with_a_signature(&lab.replica_dir(), 3);
    lab.start_receiver().unwrap();
    let mut a = downstream(dir.path(), "site-a", serve);
    a.start().unwrap();
    let upstream_segments = lab.metric("diode_receiver_replica_points");
    assert!(upstream_segments >= 20_000.0);
    assert!(
        wait_until(WAIT, || a.metric("diode_receiver_rejected_total{reason=\"bad_signature\"}") >= 1.0),
        "site-a did not refuse the tampered segment"
    );
    let total = Replica::open_read_only(&lab.replica_dir()).unwrap().counters().segments_applied;
    assert!(wait_until(WAIT, || {
        Replica::open_read_only(&a.replica_dir()).is_ok_and(|r| r.counters().segments_applied == total - 1)
    }));
    a.stop().unwrap();
    lab.stop_receiver().unwrap();
    let replica = Replica::open_read_only(&a.replica_dir()).unwrap();
    assert!(!replica.is_applied(tampered), "the tampered segment was stored");
    assert!(
        replica.gaps().iter().any(|gap| gap.first_sequence <= 3 && 3 <= gap.last_sequence),
        "the refused segment does not show as a gap: {:?}",
        replica.gaps()
    );
    drop(replica);
    let difference = compare_replicas(&lab.replica_dir(), &a.replica_dir()).unwrap();
    assert_eq!((difference.segments_only_left, difference.segments_different), (1, 0), "{difference:?}");
}

/// Flips a byte of the signature of segment `sequence` (of the only sender and epoch) in the
/// replica's audit log, as someone with write access to the upstream's disk could.
fn tamper_with_a_signature(replica_dir: &Path, sequence: u64) -> SegmentKey {
    let key = {
        let replica = Replica::open_read_only(replica_dir).unwrap();
        let stream = replica.streams().into_iter().next().unwrap();
        SegmentKey { sender_id: stream.sender_id, epoch: stream.epoch, sequence }
    };
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), replica_dir).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), replica_dir, names).unwrap();
    let segments = db.cf_handle("segments").unwrap();
    let mut value = db.get_cf(segments, key.to_bytes()).unwrap().unwrap();
    // Audit entry: version u8 ‖ applied at i64 ‖ sealed; the signature is sealed bytes 136..200.
    value[1 + 8 + 150] ^= 0x01;
    db.put_cf(segments, key.to_bytes(), value).unwrap();
    db.flush().unwrap();
    key
}

#[test]
fn a_downstream_whose_certificate_another_authority_signed_is_refused_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let options = LabOptions { simulator: false, ..LabOptions::default() };
    let (mut lab, serve) = serving_lab(dir.path(), options, &["site-a"]);
    lab.start_receiver().unwrap();
    // A certificate from an authority of its own, for a client that trusts the upstream's.
    let stranger_tls = dir.path().join("stranger-tls");
    make_certificates(&stranger_tls, &["stranger"]).unwrap();
    std::fs::copy(dir.path().join("tls/ca/ca.crt"), stranger_tls.join("ca/ca.crt")).unwrap();
    std::fs::copy(dir.path().join("tls/upstream.crt"), stranger_tls.join("upstream.crt")).unwrap();
    let mut stranger = Downstream::new(
        &dir.path().join("stranger"),
        "stranger",
        serve,
        &stranger_tls,
        &dir.path().join("keys/signing.pub"),
        None,
    )
    .unwrap();
    stranger.start().unwrap();
    assert!(
        wait_until(WAIT, || metric_sum(
            &stranger.metrics().unwrap_or_default(),
            "diode_receiver_upstream_connect_failures"
        ) >= 2.0),
        "the stranger's attempts did not fail"
    );
    let stranger_metrics = stranger.metrics().unwrap();
    assert_eq!(metric_sum(&stranger_metrics, "diode_receiver_upstream_connects"), 0.0);
    assert_eq!(metric_sum(&lab.metrics().unwrap(), "diode_receiver_replication_downstreams"), 0.0);
    let log = std::fs::read_to_string(dir.path().join("receiver.log")).unwrap();
    assert!(log.contains("handshake failed"), "the upstream did not log the refused handshake:\n{log}");
    // The same upstream takes a downstream with an accepted certificate.
    let mut a = downstream(dir.path(), "site-a", serve);
    a.start().unwrap();
    assert!(
        wait_until(WAIT, || metric_sum(&a.metrics().unwrap_or_default(), "diode_receiver_upstream_connected") == 1.0)
    );
    assert_eq!(metric_sum(&metrics(lab.receiver_http).unwrap(), "diode_receiver_replication_downstreams"), 1.0);
    stranger.stop().unwrap();
    a.stop().unwrap();
}

#[test]
fn a_tree_of_receivers_survives_an_upstream_restart_mid_stream_and_ends_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (mut lab, serve) = serving_lab(dir.path(), realtime_options(14), &["site-a", "site-a2"]);
    lab.start_receiver().unwrap();
    // site-a follows the upstream and serves site-a2 in turn.
    let a_serves = free_udp_address().unwrap();
    let tls = dir.path().join("tls");
    let signing_pub = dir.path().join("keys/signing.pub");
    let mut a =
        Downstream::new(&dir.path().join("site-a"), "site-a", serve, &tls, &signing_pub, Some(a_serves)).unwrap();
    let mut a2 = downstream(dir.path(), "site-a2", a_serves);
    a.start().unwrap();
    a2.start().unwrap();
    lab.start_sender().unwrap();
    assert!(wait_until(WAIT, || points(&a2) >= 20_000), "site-a2 did not reach 20,000 points");
    // The upstream restarts mid-stream; the downstreams reconnect and resume.
    lab.stop_receiver().unwrap();
    lab.start_receiver().unwrap();
    lab.wait_sender(WAIT).unwrap();
    assert!(lab.wait_for_points(100_000, WAIT), "the upstream did not get every point back");
    for downstream in [&a, &a2] {
        assert!(
            wait_until(WAIT, || points(downstream) >= 100_000),
            "{} has {} points",
            downstream.name,
            points(downstream)
        );
    }
    assert!(metric_sum(&a.metrics().unwrap(), "diode_receiver_upstream_connects") >= 2.0, "site-a never reconnected");
    // `status` shows both of site-a's sides, asked from the running receiver.
    let status = receiver_command(&["status", "--config", a.config().to_str().unwrap()]).unwrap();
    assert!(status.contains("serving   1 downstream(s) connected"), "{status}");
    assert!(status.contains("site-a2 (127.0.0.1:") && status.contains("points; lag"), "{status}");
    assert!(status.contains(&format!("upstream  {serve} connected: received")), "{status}");
    a2.stop().unwrap();
    a.stop().unwrap();
    lab.stop_receiver().unwrap();
    assert!(lab.verify_replica().unwrap().is_exact());
    for downstream in [&a, &a2] {
        let difference = compare_replicas(&lab.replica_dir(), &downstream.replica_dir()).unwrap();
        assert!(difference.is_equal(), "{}: {difference:?}", downstream.name);
    }
}

/// Figures for the README: replication throughput from a filled upstream to one downstream, then
/// to three at once (each starting empty, so the whole audit log is sent), and the upstream's CPU
/// time per downstream. `cargo test --release -p diode-tests --test replication -- --ignored
/// --nocapture`.
#[test]
#[ignore = "measurement; prints figures"]
fn replication_throughput_to_one_and_to_three_downstreams() {
    let dir = tempfile::tempdir().unwrap();
    let total: u64 = 10_000_000;
    let options = LabOptions {
        series: 5_000,
        rate_hz: 10.0,
        max_records: total,
        segment_max_records: 50_000,
        seed: 15,
        linger_ms: 500,
        ..LabOptions::default()
    };
    let names = ["one", "three-a", "three-b", "three-c"];
    let (mut lab, serve) = serving_lab(dir.path(), options, &names);
    lab.start_receiver().unwrap();
    lab.start_sender().unwrap();
    lab.wait_sender(Duration::from_secs(600)).unwrap();
    assert!(lab.wait_for_points(total, Duration::from_secs(600)));
    let upstream_pid = lab.receiver_pid().unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load before: {}", load.trim());
    for group in [&names[..1], &names[1..]] {
        let mut downstreams: Vec<Downstream> = group.iter().map(|name| downstream(dir.path(), name, serve)).collect();
        let cpu_before = diode_tests::lab::cpu_seconds(upstream_pid).unwrap();
        let started = std::time::Instant::now();
        for downstream in &mut downstreams {
            downstream.start().unwrap();
        }
        for downstream in &downstreams {
            assert!(wait_until(Duration::from_secs(600), || points(downstream) >= total));
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu = diode_tests::lab::cpu_seconds(upstream_pid).unwrap() - cpu_before;
        // Each downstream's own CPU (verify and apply): what bounds the rate on a shared machine.
        let downstream_cpu: Vec<f64> =
            downstreams.iter().map(|d| d.pid().and_then(diode_tests::lab::cpu_seconds).unwrap_or(f64::NAN)).collect();
        let bytes: f64 = downstreams
            .iter()
            .map(|d| metric_sum(&d.metrics().unwrap(), "diode_receiver_upstream_bytes_received"))
            .sum();
        let count = downstreams.len() as f64;
        eprintln!(
            "{} downstream(s): {total} points each in {seconds:.2} s (start and connect included): \
             {:.2} M points/s per downstream, {:.1} MB/s in all; upstream CPU {cpu:.2} s, {:.2} s per downstream",
            downstreams.len(),
            total as f64 / seconds / 1e6,
            bytes / seconds / 1e6,
            cpu / count,
        );
        for (downstream, cpu) in downstreams.iter().zip(&downstream_cpu) {
            eprintln!(
                "  {}: CPU {cpu:.2} s, {:.2} µs per point, {:.2} M points per CPU-second",
                downstream.name,
                cpu * 1e6 / total as f64,
                total as f64 / cpu / 1e6
            );
        }
        for downstream in &mut downstreams {
            downstream.stop().unwrap();
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load after: {}", load.trim());
}

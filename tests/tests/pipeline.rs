//! End-to-end: the two appliances as real processes on loopback, through a lossy relay.
//!
//! These need the release binaries (`cargo build --release --bins`), which `scripts/test` builds.

use std::time::Duration;

use diode_common::keys::SenderKey;
use diode_common::packet::{self, LinkKey, SymbolPacket};
use diode_common::plant::{PlantConfig, PlantSimulator};
use diode_common::seal::{self, ChainPosition, GENESIS_HASH};
use diode_common::{codec, fec};
use diode_tests::lab::{Lab, LabOptions};
use diode_tests::relay::LossModel;
use diode_tests::replicas::receiver_command;

fn lossy(seed: u64, loss: f64) -> LossModel {
    LossModel { seed, loss, reorder: 0.02, duplicate: 0.01, burst_every: 0, burst_length: 0 }
}

#[test]
fn a_million_points_cross_a_lossy_link_exactly_and_a_resend_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = LabOptions { series: 2_000, max_records: 1_000_000, loss: lossy(7, 0.05), ..LabOptions::default() };
    let mut lab = Lab::new(dir.path(), options).unwrap();
    lab.start_receiver().unwrap();
    lab.start_sender().unwrap();
    assert!(lab.wait_sender(Duration::from_secs(300)).unwrap().success(), "the sender failed");
    assert!(lab.wait_for_points(1_000_000, Duration::from_secs(60)), "the replica did not reach 1,000,000 points");
    let dropped = lab.relay.counters.dropped.load(std::sync::atomic::Ordering::Relaxed);
    let received = lab.relay.counters.received.load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped * 100 > received * 3, "the relay should have dropped about 5 %: {dropped} of {received}");
    assert!(lab.metric("diode_receiver_segments_recovered_by_fec_total") > 0.0);
    // Every beacon's signed head is the segment the replica stored at that position.
    assert!(lab.metric("diode_receiver_beacons_accepted_total") > 0.0);
    assert_eq!(lab.metric("diode_receiver_beacon_head_mismatches_total"), 0.0);
    // The sender's software, as its `-V` prints it, reaches the receiver's metrics in its beacons,
    // compared with the receiver's own.
    let software = |binary: &str| {
        let output = std::process::Command::new(diode_tests::lab::find_bin_dir().unwrap().join(binary))
            .arg("-V")
            .output()
            .unwrap();
        let version = String::from_utf8(output.stdout).unwrap();
        version.trim().strip_prefix(&format!("{binary} ")).unwrap().to_owned()
    };
    let (sender, receiver) = (software("diode-sender"), software("diode-receiver"));
    let differs = u8::from(sender != receiver);
    let info = format!("diode_receiver_sender_build_info{{sender=\"1\",version=\"{sender}\",differs=\"{differs}\"}}");
    let metrics = lab.metrics().unwrap();
    assert_eq!(
        metrics.get(&info),
        Some(&1.0),
        "{info} missing: {:?}",
        metrics.keys().filter(|k| k.contains("build")).collect::<Vec<_>>()
    );
    assert_eq!(metrics.get(&format!("diode_receiver_build_info{{version=\"{receiver}\"}}")), Some(&1.0));
    let segments = lab.metric("diode_receiver_segments_applied_total") as u64;

    // Send every segment again to a restarted receiver (whose reassembler has forgotten them):
    // the replica's applied set drops their symbols before they take memory, and the replica does
    // not change.
    lab.stop_receiver().unwrap();
    let stopped = diode_replica::Replica::open_read_only(&lab.replica_dir()).unwrap();
    assert_eq!(stopped.statistics_deltas_pending(), 0, "an orderly stop writes the statistics checkpoint");
    drop(stopped);
    let points_before = lab.verify_replica().unwrap();
    lab.start_receiver().unwrap();
    let output = std::process::Command::new(diode_tests::lab::find_bin_dir().unwrap().join("diode-sender"))
        .args([
            "resend",
            "--config",
            lab.sender_config().to_str().unwrap(),
            "--from",
            "1",
            "--to",
            &segments.to_string(),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let dropped = |lab: &Lab| lab.metric("diode_receiver_reassembly_symbols_for_applied_segments_total");
    while dropped(&lab) < segments as f64 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = lab.metrics().unwrap();
    let dropped = metrics.get("diode_receiver_reassembly_symbols_for_applied_segments_total").copied().unwrap_or(0.0);
    assert!(dropped >= segments as f64, "{dropped} symbols of {segments} applied segments came back; {metrics:?}");
    assert_eq!(lab.metric("diode_receiver_segments_applied_total"), 0.0, "a resent segment was applied twice");
    lab.stop_receiver().unwrap();
    let verification = lab.verify_replica().unwrap();
    assert!(verification.is_exact(), "{verification:?}");
    assert_eq!(verification.found_points, 1_000_000);
    assert_eq!(verification, points_before);
}

#[test]
fn a_receiver_killed_mid_stream_ends_complete_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let options = LabOptions {
        max_records: 300_000,
        realtime: true,
        rate_hz: 100.0, // 1,000 series at 100 Hz: three seconds of plant data in real time
        linger_ms: 6_000,
        loss: lossy(11, 0.02),
        ..LabOptions::default()
    };
    let mut lab = Lab::new(dir.path(), options).unwrap();
    lab.start_receiver().unwrap();
    lab.start_sender().unwrap();
    assert!(lab.wait_for_points(50_000, Duration::from_secs(60)));
    lab.kill_receiver();
    std::thread::sleep(Duration::from_millis(500));
    lab.start_receiver().unwrap();
    assert!(lab.wait_sender(Duration::from_secs(120)).unwrap().success());
    lab.stop_receiver().unwrap();
    let verification = lab.verify_replica().unwrap();
    assert!(verification.is_exact(), "{verification:?}");
}

#[test]
fn the_receiver_merges_closed_hours_and_the_replica_stays_exact_and_audits_clean() {
    let dir = tempfile::tempdir().unwrap();
    const HOUR_NS: i64 = 3_600_000_000_000;
    // 200 series at 0.1 Hz from three hours ago, sent flat out: hours 0 and 1 close at once.
    let options = LabOptions {
        series: 200,
        rate_hz: 0.1,
        max_records: 200 * 1_080,
        start_ns: diode_receiver::time::now_ns() - 3 * HOUR_NS,
        segment_max_records: 2_000,
        merge_quiet_s: Some(0),
        ..LabOptions::default()
    };
    let mut lab = Lab::new(dir.path(), options).unwrap();
    lab.start_receiver().unwrap();
    lab.start_sender().unwrap();
    assert!(lab.wait_sender(Duration::from_secs(120)).unwrap().success());
    assert!(lab.wait_for_points(200 * 1_080, Duration::from_secs(60)));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while lab.metric("diode_receiver_buckets_merged_total") < 400.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(lab.metric("diode_receiver_buckets_merged_total") >= 400.0, "both closed hours of every series");
    assert!(lab.metric("diode_receiver_chunks_merged_total") >= 400.0 * 2.0, "several chunks each");
    assert!(lab.metric("diode_receiver_buckets_waiting_to_merge") >= 200.0, "the open hour of every series waits");
    lab.stop_receiver().unwrap();
    let verification = lab.verify_replica().unwrap();
    assert!(verification.is_exact(), "{verification:?}");
    let config = lab.receiver_config();
    let audit = receiver_command(&["audit", "verify", "--config", config.to_str().unwrap()]).unwrap();
    assert!(audit.contains("CLEAN"), "{audit}");
}

#[test]
fn forged_and_tampered_datagrams_never_reach_the_replica() {
    let dir = tempfile::tempdir().unwrap();
    let options = LabOptions { max_records: 20_000, ..LabOptions::default() };
    let mut lab = Lab::new(dir.path(), options).unwrap();
    lab.start_receiver().unwrap();
    let link_key = std::fs::read(dir.path().join("keys/link.key")).unwrap();
    let link_key = LinkKey::from_bytes(diode_common::keys::parse_key_bytes(&link_key, "link.key").unwrap());
    let attacker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();

    // A segment signed by a key the receiver does not trust, carried with the right link key.
    let forger = SenderKey::from_seed([66; 32]);
    let mut records = Vec::new();
    PlantSimulator::new(PlantConfig { seed: 5, series_count: 10, base_rate_hz: 1.0, start_ns: 0 })
        .generate_until(5_000_000_000, &mut records);
    let position = ChainPosition { sender_id: 1, epoch: 1, sequence: 1, previous_hash: GENESIS_HASH };
    let forged = seal::seal(position, &codec::group_records(&records), 3, 1, &forger).to_bytes();
    let params = fec::FecParams::for_segment(forged.len(), 1024, 0.2, 2).unwrap();
    let symbols = fec::encode(&forged, &params).unwrap();
    let mut datagram = Vec::new();
    for (index, symbol) in symbols.iter().enumerate() {
        let packet = SymbolPacket { sender_id: 1, epoch: 1, sequence: 1, symbol_index: index as u16, params, symbol };
        packet::encode_symbol(&packet, &link_key, &mut datagram).unwrap();
        attacker.send_to(&datagram, lab.receiver_udp).unwrap();
        // The same datagram with one bit flipped, and under a wrong link key.
        let mut tampered = datagram.clone();
        tampered[60] ^= 1;
        attacker.send_to(&tampered, lab.receiver_udp).unwrap();
        packet::encode_symbol(&packet, &LinkKey::from_bytes([9; 32]), &mut datagram).unwrap();
        attacker.send_to(&datagram, lab.receiver_udp).unwrap();
    }
    attacker.send_to(b"not a diode datagram at all", lab.receiver_udp).unwrap();

    // The segment can be rebuilt (and refused) before the last datagrams are read: FEC needs
    // only some of its symbols, and the tampered copies of the rest come after them. So wait for
    // every count asserted below, not only the first.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while (lab.metric("diode_receiver_rejected_total{reason=\"unknown_key\"}") < 1.0
        || lab.metric("diode_receiver_rejected_total{reason=\"bad_mac\"}") < 2.0 * symbols.len() as f64)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lab.metric("diode_receiver_rejected_total{reason=\"unknown_key\"}"), 1.0);
    assert!(lab.metric("diode_receiver_rejected_total{reason=\"bad_mac\"}") >= 2.0 * symbols.len() as f64);
    assert!(
        lab.metric("diode_receiver_rejected_total{reason=\"malformed_datagram\"}")
            + lab.metric("diode_receiver_rejected_total{reason=\"bad_mac\"}")
            > 0.0
    );
    assert_eq!(lab.metric("diode_receiver_points_applied_total"), 0.0);

    // The genuine sender still gets through, and only its records are in the replica.
    lab.start_sender().unwrap();
    assert!(lab.wait_sender(Duration::from_secs(120)).unwrap().success());
    assert!(lab.wait_for_points(20_000, Duration::from_secs(30)));
    lab.stop_receiver().unwrap();
    let verification = lab.verify_replica().unwrap();
    assert!(verification.is_exact(), "{verification:?}");
}

#[test]
fn an_address_already_taken_stops_either_appliance_at_start_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::new(dir.path(), LabOptions { series: 10, max_records: 1_000, ..LabOptions::default() }).unwrap();
    // Another process holds the receiver's HTTP address: the receiver exits, and says so.
    let taken = std::net::TcpListener::bind(lab.receiver_http).unwrap();
    let error = lab.start_receiver().unwrap_err().to_string();
    assert!(error.contains("the receiver exited"), "{error}");
    assert!(error.contains(&format!("cannot listen for HTTP on {}; change http.listen", lab.receiver_http)), "{error}");
    drop(taken);
    lab.start_receiver().unwrap();

    // Likewise the sender's ingest address: it exits before spooling or sending anything.
    let taken = std::net::TcpListener::bind(lab.sender_ingest).unwrap();
    let error = lab.start_sender_until_stopped().unwrap_err().to_string();
    assert!(error.contains("the sender exited"), "{error}");
    let expected =
        format!("cannot listen for line protocol over HTTP on {}; change ingest.http_listen", lab.sender_ingest);
    assert!(error.contains(&expected), "{error}");
    assert!(!error.contains("diode-sender starting"), "the sender started before binding its listeners: {error}");
    drop(taken);
    lab.start_sender().unwrap();
    assert!(lab.wait_sender(Duration::from_secs(120)).unwrap().success(), "the sender failed");
    assert!(lab.wait_for_points(1_000, Duration::from_secs(60)), "the replica did not reach 1,000 points");

    // The receiver's metrics include the standard process figures and its threads' CPU, in a
    // form Prometheus's own checker accepts.
    let metrics = lab.metrics().unwrap();
    assert!(metrics["process_cpu_seconds_total"] > 0.0, "{metrics:?}");
    assert!(metrics["process_resident_memory_bytes"] > 0.0, "{metrics:?}");
    assert!(metrics.contains_key("diode_receiver_thread_cpu_seconds_total{thread=\"apply\"}"), "{metrics:?}");
    let text = diode_tests::lab::http_get(lab.receiver_http, "/metrics").unwrap();
    match promtool_check_metrics(&text) {
        Some(Err(problems)) => panic!("promtool check metrics: {problems}\n{text}"),
        Some(Ok(())) => {}
        None => eprintln!("skipped the promtool check: promtool is not installed (scripts/prepare installs it)"),
    }
    lab.stop_receiver().unwrap();
}

/// `promtool check metrics` on `text`: `None` when promtool is not installed.
fn promtool_check_metrics(text: &str) -> Option<Result<(), String>> {
    use std::io::Write;
    let mut child = match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => panic!("cannot run promtool: {error}"),
    };
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let output = child.wait_with_output().expect("promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    Some(if output.status.success() && said.trim().is_empty() { Ok(()) } else { Err(said) })
}

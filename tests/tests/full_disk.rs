//! Real full disks, on small tmpfs mounts.
//!
//! Under the sender: its data directory (spool and segment log) filled through the HTTP ingest.
//! While the disk is full, writes are answered 503 with `Retry-After` and a message that says so,
//! and the process stays up; once space is freed, writes are accepted again; and after a restart
//! every point that was answered 204 reaches the replica.
//!
//! Under the receiver: the replica's directory filled while segments arrive. Apply stops with a
//! clear log and metric, the receiver keeps receiving (shedding what its bounded queue cannot
//! hold) and answering, resumes by itself once space is freed, and a resend of the gaps it reports
//! leaves the replica exact.
//!
//! Needs root (to mount a tmpfs); without it, each test says why and passes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use diode_common::record::{SeriesKey, Value};
use diode_replica::Replica;
use diode_tests::lab::{Lab, LabOptions, http_get, metric_at};
use diode_tests::replicas::wait_until;

/// The tmpfs under the sender's data directory.
const DISK_BYTES: u64 = 4 * 1024 * 1024;
/// Room left beside the ballast: a few dozen writes, spooled and sealed.
const ROOM_BYTES: u64 = 512 * 1024;
const LINES_PER_WRITE: u64 = 1_000;
const SERIES: u64 = 10;

fn run(command: &[&str]) -> Result<String, String> {
    let output = Command::new(command[0]).args(&command[1..]).output().map_err(|e| format!("{}: {e}", command[0]))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("{}: {}", command.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// A tmpfs of `bytes` mounted on `path`; unmounted on drop, whatever happened.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, bytes: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let size = format!("size={bytes},mode=0700");
        run(&["mount", "-t", "tmpfs", "-o", &size, "diode-full-disk", path.to_str().expect("utf-8 path")])?;
        Ok(Tmpfs { path: path.to_owned() })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path = self.path.to_str().expect("utf-8 path");
        if run(&["umount", path]).is_err() {
            let _ = run(&["umount", "--lazy", path]);
        }
    }
}

fn prerequisites_missing() -> Option<String> {
    if run(&["id", "-u"]).map(|uid| uid.trim() != "0").unwrap_or(true) {
        return Some("not root, so no tmpfs can be mounted".into());
    }
    for tool in ["mount", "umount"] {
        if run(&["sh", "-c", &format!("command -v {tool}")]).is_err() {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// Fills the file system under `path` with a file, then gives `room` bytes of it back.
fn fill_leaving(path: &Path, room: u64) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0xA5u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    assert!(written > room, "the disk took only {written} bytes of ballast");
    file.set_len(written - room).unwrap();
    file.sync_all().unwrap();
}

/// Point `n`'s value: seeded noise, which compresses about as badly as a real sensor's, so each
/// write takes several pages of the disk.
fn value(n: u64) -> f64 {
    let mut x = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64 * 1_000.0
}

/// Write `write`: 1,000 lines over 10 series, timestamps unique across writes.
fn body(write: u64) -> String {
    (0..LINES_PER_WRITE)
        .map(|line| {
            let n = write * LINES_PER_WRITE + line;
            let timestamp_ns = 1_767_225_600_000_000_000 + n as i64 * 1_000_000;
            format!("tank,unit=t{} level={} {timestamp_ns}\n", n % SERIES, value(n))
        })
        .collect()
}

/// A plain HTTP/1.1 POST; the status and the whole response (headers and body).
fn post(address: SocketAddr, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "POST /api/v2/write?bucket=historian&precision=ns HTTP/1.1\r\nHost: {address}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("an HTTP status");
    (status, response)
}

#[test]
fn a_full_disk_under_the_sender_is_answered_503_and_every_acknowledged_point_arrives_after_a_restart() {
    if let Some(reason) = prerequisites_missing() {
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Declared before the lab, so dropped after it: the sender is gone before the unmount.
    let disk = match Tmpfs::mount(&dir.path().join("sender-state"), DISK_BYTES) {
        Ok(disk) => disk,
        Err(reason) => {
            eprintln!("skipped: cannot mount a tmpfs ({reason})");
            return;
        }
    };
    let options = LabOptions { simulator: false, ..LabOptions::default() };
    let mut lab = Lab::new(dir.path(), options).unwrap();
    lab.start_receiver().unwrap();
    lab.start_sender_until_stopped().unwrap();
    let ballast = disk.path.join("ballast");
    fill_leaving(&ballast, ROOM_BYTES);

    // Write until the disk is full.
    let mut acknowledged = Vec::new();
    let mut write = 0;
    let refusal = loop {
        assert!(write < 1_000, "the disk never filled");
        match post(lab.sender_ingest, &body(write)) {
            (204, _) => {
                acknowledged.push(write);
                write += 1;
            }
            (503, response) => break response,
            (status, response) => panic!("write {write} was answered {status}:\n{response}"),
        }
    };
    assert!(!acknowledged.is_empty(), "the disk was full before the first write");
    eprintln!("the disk was full after {} writes; the sender answered:\n{refusal}", acknowledged.len());
    let lowercase = refusal.to_lowercase();
    assert!(lowercase.contains("retry-after: "), "{refusal}");
    assert!(lowercase.contains("full") && lowercase.contains("no space left on device"), "{refusal}");

    // Still full: refused again, and the sender stays up and answers.
    for _ in 0..3 {
        let (status, response) = post(lab.sender_ingest, &body(write));
        assert_eq!(status, 503, "{response}");
    }
    assert!(lab.sender_running(), "the sender exited on a full disk");
    http_get(lab.sender_ingest, "/health").expect("the sender answers while its disk is full");
    // The operator is told once, not once per refused write.
    let log = std::fs::read_to_string(lab.dir.join("sender.log")).unwrap();
    assert_eq!(log.matches("sources are refused until it can be written").count(), 1, "{log}");

    // Space is freed: the refused write, retried, is accepted, and so are the next ones.
    std::fs::remove_file(&ballast).unwrap();
    for _ in 0..5 {
        let (status, response) = post(lab.sender_ingest, &body(write));
        assert_eq!(status, 204, "{response}");
        acknowledged.push(write);
        write += 1;
    }

    // A restart (SIGKILL: nothing flushed), then an orderly stop that sends everything.
    lab.kill_sender();
    lab.start_sender_until_stopped().unwrap();
    let stopped = lab.stop_sender().unwrap();
    assert!(stopped.success(), "the sender's orderly stop ended {stopped}:\n{}", lab.log_tail("sender.log"));
    let expected_points = acknowledged.len() as u64 * LINES_PER_WRITE;
    assert!(
        lab.wait_for_points(expected_points, Duration::from_secs(60)),
        "not every acknowledged point arrived: the replica holds {} of {expected_points}\n\
         sender.log ends:\n{}\nreceiver.log ends:\n{}",
        lab.metric("diode_receiver_replica_points"),
        lab.log_tail("sender.log"),
        lab.log_tail("receiver.log")
    );
    lab.stop_receiver().unwrap();

    let replica = Replica::open_read_only(&lab.replica_dir()).unwrap();
    let mut found: BTreeMap<i64, Value> = BTreeMap::new();
    for unit in 0..SERIES {
        let key = SeriesKey::with_tags("tank/level", vec![("unit".into(), format!("t{unit}"))]);
        let id = replica.series_id(&key).expect("every series arrived");
        for point in replica.scan(id, i64::MIN, i64::MAX) {
            let point = point.unwrap();
            found.insert(point.timestamp_ns, point.value);
        }
    }
    for write in &acknowledged {
        for line in 0..LINES_PER_WRITE {
            let n = write * LINES_PER_WRITE + line;
            let timestamp_ns = 1_767_225_600_000_000_000 + n as i64 * 1_000_000;
            assert_eq!(found.get(&timestamp_ns), Some(&Value::F64(value(n))), "acknowledged point {n} is missing");
        }
    }
    assert_eq!(found.len() as u64, expected_points, "no point that was never acknowledged");
}

/// The tmpfs under the receiver's replica, and the room left beside the ballast there.
const REPLICA_DISK_BYTES: u64 = 256 * 1024 * 1024;
const REPLICA_ROOM_BYTES: u64 = 1024 * 1024;

#[test]
fn a_full_disk_under_the_receiver_stops_apply_not_the_receiver_and_a_resend_of_its_gaps_makes_the_replica_exact() {
    if let Some(reason) = prerequisites_missing() {
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Declared before the lab, so dropped after it: the receiver is gone before the unmount.
    let disk = match Tmpfs::mount(&dir.path().join("replica"), REPLICA_DISK_BYTES) {
        Ok(disk) => disk,
        Err(reason) => {
            eprintln!("skipped: cannot mount a tmpfs ({reason})");
            return;
        }
    };
    // 1,000 segments of 1,000 records: four times what the apply queue holds.
    let options = LabOptions {
        series: 1_000,
        max_records: 1_000_000,
        segment_max_records: 1_000,
        carousel: false,
        ..LabOptions::default()
    };
    let mut lab = Lab::new(dir.path(), options).unwrap();
    // The ballast goes in before the receiver opens the replica: RocksDB may reserve space for
    // its write-ahead log ahead of writing it (`fallocate`, which tmpfs honours), and a
    // reservation made before the ballast held nearly all of this test's writes, so whether the
    // disk filled at all depended on how the segments happened to be cut (it failed two runs in
    // six with the ballast added after the receiver started).
    let ballast = disk.path.join("ballast");
    fill_leaving(&ballast, REPLICA_ROOM_BYTES);
    let sender_metrics = lab.add_sender_metrics().unwrap();
    lab.start_receiver().unwrap();
    lab.start_sender_until_stopped().unwrap();

    assert!(
        wait_until(Duration::from_secs(120), || lab.metric("diode_receiver_replica_write_blocked") == 1.0),
        "apply never reported the full disk: {:?}",
        lab.metrics()
    );
    // Blocked, the receiver goes on receiving: completed segments wait in the bounded queue, then
    // are shed and counted; it answers its metrics and status meanwhile.
    assert!(
        wait_until(Duration::from_secs(120), || lab.metric("diode_receiver_segments_shed_total") > 0.0),
        "no segment was shed while apply was stopped: {:?}",
        lab.metrics()
    );
    http_get(lab.receiver_http, "/api/v1/status").expect("the receiver answers while its disk is full");
    assert!(lab.metric("diode_receiver_replica_write_errors_total") >= 1.0);
    let log = std::fs::read_to_string(lab.dir.join("receiver.log")).unwrap();
    assert!(log.contains("apply is stopped") && log.contains("free space or fix the disk under the replica"), "{log}");

    // Space is freed: apply resumes by itself, and the beacons that follow tell the receiver the
    // sender's head, so every shed segment shows as a gap.
    std::fs::remove_file(&ballast).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || lab.metric("diode_receiver_replica_write_blocked") == 0.0),
        "apply did not resume once space was freed"
    );
    // The sender has sealed and sent every record (apply may resume before it has), and beacons
    // since then have told the receiver its final head, so every shed segment, the last ones too,
    // shows as a gap.
    assert!(
        wait_until(Duration::from_secs(60), || {
            metric_at(sender_metrics, "diode_sender_records_sealed_total") == 1_000_000.0
                && metric_at(sender_metrics, "diode_sender_sent_through_sequence")
                    == metric_at(sender_metrics, "diode_sender_head_sequence")
        }),
        "the sender did not seal and send every record"
    );
    let beacons = lab.metric("diode_receiver_beacons_accepted_total");
    assert!(
        wait_until(Duration::from_secs(60), || lab.metric("diode_receiver_beacons_accepted_total") > beacons + 1.0),
        "no beacon recorded after apply resumed"
    );
    assert!(lab.stop_sender().unwrap().success());
    let gaps = |lab: &Lab| -> Vec<serde_json::Value> {
        let body: serde_json::Value =
            serde_json::from_str(&http_get(lab.receiver_http, "/api/v1/gaps").unwrap()).unwrap();
        body["gaps"].as_array().unwrap().clone()
    };
    assert!(!gaps(&lab).is_empty(), "segments were shed, so the replica must report gaps");

    // The operator runs the resends `gaps` prints, again if a resend outran apply and was shed in
    // turn (each round's segments are a subset of the last's gaps, so this ends).
    for round in 1.. {
        let missing = gaps(&lab);
        if missing.is_empty() {
            break;
        }
        assert!(round <= 5, "gaps left after {} rounds of resends: {missing:?}", round - 1);
        for gap in &missing {
            let output = Command::new(diode_tests::lab::find_bin_dir().unwrap().join("diode-sender"))
                .args(["resend", "--config", lab.sender_config().to_str().unwrap()])
                .args(["--epoch", &gap["epoch"].to_string()])
                .args(["--from", &gap["first_sequence"].to_string(), "--to", &gap["last_sequence"].to_string()])
                .output()
                .unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        }
        lab.wait_for_points(1_000_000, Duration::from_secs(30));
    }
    assert!(lab.wait_for_points(1_000_000, Duration::from_secs(30)), "the resends did not fill the replica");
    lab.stop_receiver().unwrap();
    let verification = lab.verify_replica().unwrap();
    assert!(verification.is_exact(), "{verification:?}");
    // Apply reopened the replica after each failed write (closing it first: RocksDB refuses a
    // second open of a directory its process holds, which once made every reopen fail).
    let log = std::fs::read_to_string(lab.dir.join("receiver.log")).unwrap();
    assert!(!log.contains("lock hold by current process"), "{log}");
}

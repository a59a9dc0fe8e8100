//! End-to-end: a resend of an older epoch fills its gaps after the sender has moved on to a new
//! epoch, the very command `diode-receiver gaps` prints for old-epoch gaps.
//!
//! Needs the release binaries (`cargo build --release --bins`), which `scripts/test` builds.

use std::process::Command;
use std::time::{Duration, Instant};

use diode_replica::Replica;
use diode_tests::lab::{Lab, LabOptions, find_bin_dir};

fn sender(args: &[&str]) -> String {
    let output = Command::new(find_bin_dir().unwrap().join("diode-sender")).args(args).output().unwrap();
    assert!(output.status.success(), "diode-sender {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_resend_of_an_older_epoch_fills_its_gaps_after_a_new_epoch_began() {
    let dir = tempfile::tempdir().unwrap();
    let options = LabOptions { max_records: 20_000, carousel: false, linger_ms: 0, ..LabOptions::default() };
    let mut lab = Lab::new(dir.path(), options).unwrap();
    let config = lab.sender_config();
    let config = config.to_str().unwrap();

    // Epoch 1 is sealed and sent while no receiver listens: every segment of it is lost.
    lab.start_sender().unwrap();
    assert!(lab.wait_sender(Duration::from_secs(120)).unwrap().success(), "the sender failed");

    // The operator starts epoch 2; the sender runs without the simulator, so only its beacons
    // (which name epoch 1's last sequence) reach the receiver: epoch 1 shows as a gap.
    let started = sender(&["new-epoch", "--config", config]);
    assert!(started.contains("started epoch"), "{started}");
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, text.replace("[simulator]\nenabled = true", "[simulator]\nenabled = false")).unwrap();
    lab.start_receiver().unwrap();
    lab.start_sender_until_stopped().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lab.metric("diode_receiver_beacons_accepted_total") < 2.0 {
        assert!(Instant::now() < deadline, "no beacon of epoch 2 arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    let gaps = Replica::open_read_only(&lab.replica_dir()).unwrap().gaps();
    let old = gaps.iter().find(|gap| gap.first_sequence == 1).expect("epoch 1 shows as a gap");
    assert_eq!(lab.metric("diode_receiver_points_applied_total"), 0.0);

    // The resend `gaps` asks for, while the sender runs in epoch 2 and beacons it every second.
    let (epoch, from, to) = (old.epoch.to_string(), old.first_sequence.to_string(), old.last_sequence.to_string());
    sender(&["resend", "--config", config, "--epoch", &epoch, "--from", &from, "--to", &to]);
    assert!(lab.wait_for_points(20_000, Duration::from_secs(60)), "the resent epoch did not reach the replica");
    lab.stop_sender().unwrap();
    lab.stop_receiver().unwrap();
    let verification = lab.verify_replica().unwrap();
    assert!(verification.is_exact(), "{verification:?}");
    let gaps = Replica::open_read_only(&lab.replica_dir()).unwrap().gaps();
    assert!(gaps.is_empty(), "gaps remain: {gaps:?}");
}

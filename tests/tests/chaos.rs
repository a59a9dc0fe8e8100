//! Chaos: both appliances are killed with SIGKILL and restarted at seeded random moments during
//! a 1,000,000-point run. The replica must end equal to the source: nothing lost, nothing twice,
//! no gap left once the carousel has gone round.

use std::time::{Duration, Instant};

use diode_common::rng::SeededRng;
use diode_tests::lab::{Lab, LabOptions};
use diode_tests::relay::LossModel;

#[test]
fn killing_either_side_at_random_moments_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = LabOptions {
        series: 2_000,
        rate_hz: 100.0, // 200,000 points/s in real time: five seconds of plant data
        realtime: true,
        max_records: 1_000_000,
        linger_ms: 8_000,
        loss: LossModel { seed: 5, loss: 0.01, reorder: 0.01, duplicate: 0.01, ..LossModel::default() },
        ..LabOptions::default()
    };
    let mut lab = Lab::new(dir.path(), options).unwrap();
    lab.start_receiver().unwrap();
    lab.start_sender().unwrap();
    let mut rng = SeededRng::new(2026);
    let started = Instant::now();
    let mut kills = Vec::new();
    for round in 0..4 {
        // Somewhere in the next 0.3 to 1.5 seconds.
        std::thread::sleep(Duration::from_millis(300 + rng.below(1_200)));
        if rng.chance(0.5) {
            lab.kill_receiver();
            std::thread::sleep(Duration::from_millis(rng.below(800)));
            lab.start_receiver().unwrap();
            kills.push(format!("round {round}: receiver at {:?}", started.elapsed()));
        } else if lab.sender_running() {
            lab.kill_sender();
            std::thread::sleep(Duration::from_millis(rng.below(800)));
            lab.start_sender().unwrap();
            kills.push(format!("round {round}: sender at {:?}", started.elapsed()));
        }
    }
    assert!(lab.wait_sender(Duration::from_secs(300)).unwrap().success(), "sender failed after {kills:?}");
    lab.wait_for_points(1_000_000, Duration::from_secs(30));
    lab.stop_receiver().unwrap();
    let verification = lab.verify_replica().unwrap();
    assert!(verification.is_exact(), "{verification:?} after {kills:?}; logs in {}", dir.path().display());
    let replica = diode_replica::Replica::open_read_only(&lab.replica_dir()).unwrap();
    assert!(replica.gaps().is_empty(), "gaps left: {:?} after {kills:?}", replica.gaps());
    eprintln!("replica exact after {} kills: {kills:?}", kills.len());
}

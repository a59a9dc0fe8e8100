//! Replays on the link. Anyone on the link segment can capture datagrams and send them again; the
//! link key does not stop that, since the captured datagrams carry valid MACs. Replayed symbols of
//! applied segments must be dropped before they take reassembly memory, replayed beacons before
//! their signature is checked, and neither may delay, shed or change what the live sender sends.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diode_tests::lab::{Lab, LabOptions};

/// Live points: 1,000 series at 10 Hz in real time, 20 s of plant.
const POINTS: u64 = 200_000;

#[test]
fn captured_datagrams_replayed_at_ten_times_the_live_rate_change_nothing_and_delay_no_live_segment() {
    let dir = tempfile::tempdir().unwrap();
    let options = LabOptions {
        series: 1_000,
        rate_hz: 10.0,
        realtime: true,
        max_records: POINTS,
        segment_max_records: 2_000,
        // Without the carousel, every live segment must complete from its first transmission.
        carousel: false,
        ..LabOptions::default()
    };
    let mut lab = Lab::new(dir.path(), options).unwrap();
    lab.start_receiver().unwrap();
    lab.relay.start_capture(1_000_000);
    let capture_started = Instant::now();
    lab.start_sender().unwrap();

    // Capture the first quarter of the run: symbols of segments applied by then, and beacons.
    assert!(lab.wait_for_points(POINTS / 4, Duration::from_secs(60)), "the first quarter never arrived");
    let captured = lab.relay.take_capture();
    let live_rate = captured.len() as f64 / capture_started.elapsed().as_secs_f64();
    assert!(captured.len() > 20, "only {} datagrams captured", captured.len());
    let segments_before_replay = lab.metric("diode_receiver_segments_applied_total");

    // Replay them, over and over, at ten times the live datagram rate, straight at the receiver,
    // until the live sender has sent everything.
    let stop = Arc::new(AtomicBool::new(false));
    let replayer = {
        let (stop, target) = (Arc::clone(&stop), lab.receiver_udp);
        std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let per_tick = ((live_rate * 10.0) / 100.0).ceil() as usize;
            let mut replayed = 0u64;
            let mut next = captured.iter().cycle();
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                for datagram in next.by_ref().take(per_tick) {
                    if socket.send_to(datagram, target).is_ok() {
                        replayed += 1;
                    }
                }
                // Pacing a load generator at 100 ticks a second, not waiting for an event.
                std::thread::sleep(Duration::from_millis(10));
            }
            (replayed, start.elapsed())
        })
    };
    assert!(lab.wait_sender(Duration::from_secs(120)).unwrap().success(), "the sender failed");
    stop.store(true, Ordering::Relaxed);
    let (replayed, replay_time) = replayer.join().unwrap();
    let replay_rate = replayed as f64 / replay_time.as_secs_f64();
    eprintln!("live {live_rate:.0} datagrams/s; replayed {replayed} at {replay_rate:.0} datagrams/s");
    assert!(replay_rate >= 5.0 * live_rate, "the replay ran at {replay_rate:.0}/s against {live_rate:.0}/s live");

    assert!(lab.wait_for_points(POINTS, Duration::from_secs(60)), "not every live point arrived");
    let metrics = lab.metrics().unwrap();
    let metric = |name: &str| metrics.get(name).copied().unwrap_or(0.0);
    // Replayed symbols of complete segments are dropped on arrival, by the reassembler's memory of
    // what it completed in this run or by the replica's applied set, and none is buffered.
    let dropped = metric("diode_receiver_reassembly_symbols_for_completed_segments_total")
        + metric("diode_receiver_reassembly_symbols_for_applied_segments_total");
    assert!(dropped > 0.0, "replayed symbols of applied segments were not dropped as such: {metrics:?}");
    assert_eq!(metric("diode_receiver_reassembly_buffered_bytes"), 0.0, "{metrics:?}");
    assert!(metric("diode_receiver_beacons_replayed_total") > 0.0, "no replayed beacon was dropped: {metrics:?}");
    assert_eq!(metric("diode_receiver_segments_shed_total"), 0.0, "a live segment was shed: {metrics:?}");
    assert_eq!(metric("diode_receiver_segments_abandoned_total"), 0.0, "a live segment was abandoned: {metrics:?}");
    assert_eq!(metric("diode_receiver_beacon_head_mismatches_total"), 0.0);
    assert!(metric("diode_receiver_segments_applied_total") > segments_before_replay);
    // Nothing replayed was applied twice: every segment counted once, and the replica is exact.
    lab.stop_receiver().unwrap();
    let verification = lab.verify_replica().unwrap();
    assert!(verification.is_exact(), "{verification:?}");
    assert_eq!(verification.found_points, POINTS);
}

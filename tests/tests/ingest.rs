//! "204 means durable": collectors write line protocol to diode-sender's HTTP endpoint while the
//! sender is killed with SIGKILL and restarted; every point that was answered 204 reaches the
//! replica, with its value. Once with one collector, once with several at a time, whose writes the
//! sender commits in groups that share one spool sync.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diode_common::record::{SeriesKey, Value};
use diode_replica::Replica;
use diode_tests::lab::{Lab, LabOptions, http_post};

const LINES_PER_WRITE: u64 = 1_000;
const WRITES: u64 = 300;

/// One write: 1,000 lines of 10 series, timestamps unique per write.
fn body(write: u64) -> String {
    (0..LINES_PER_WRITE)
        .map(|line| {
            let n = write * LINES_PER_WRITE + line;
            format!("boiler,unit=b{} steam_temp={}.5 {}\n", n % 10, n, 1_767_225_600_000_000_000 + n as i64 * 1_000_000)
        })
        .collect()
}

#[test]
fn every_point_acknowledged_before_a_sigkill_reaches_the_replica() {
    let dir = tempfile::tempdir().unwrap();
    let options = LabOptions { simulator: false, ..LabOptions::default() };
    let mut lab = Lab::new(dir.path(), options).unwrap();
    lab.start_receiver().unwrap();
    lab.start_sender_until_stopped().unwrap();
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut write = 0;
    while write < WRITES {
        if write == WRITES / 2 && refused == 0 {
            // Mid-stream: kill the sender with no chance to flush, then start it again.
            lab.kill_sender();
            refused += 1;
            lab.start_sender_until_stopped().unwrap();
        }
        match http_post(lab.sender_ingest, "/api/v2/write?org=plant&bucket=historian&precision=ns", &body(write)) {
            Ok(204) => {
                acknowledged.push(write);
                write += 1;
            }
            // Not acknowledged: a collector retries the same write, as Telegraf does.
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    assert!(lab.stop_sender().unwrap().success());
    let expected_points = acknowledged.len() as u64 * LINES_PER_WRITE;
    assert!(lab.wait_for_points(expected_points, Duration::from_secs(60)), "not every acknowledged point arrived");
    lab.stop_receiver().unwrap();

    let replica = Replica::open_read_only(&lab.replica_dir()).unwrap();
    let mut found: BTreeMap<i64, Value> = BTreeMap::new();
    for unit in 0..10 {
        let key = SeriesKey::with_tags("boiler/steam_temp", vec![("unit".into(), format!("b{unit}"))]);
        let id = replica.series_id(&key).expect("every series arrived");
        for point in replica.scan(id, i64::MIN, i64::MAX) {
            let point = point.unwrap();
            found.insert(point.timestamp_ns, point.value);
        }
    }
    for write in acknowledged {
        for line in 0..LINES_PER_WRITE {
            let n = write * LINES_PER_WRITE + line;
            let timestamp_ns = 1_767_225_600_000_000_000 + n as i64 * 1_000_000;
            assert_eq!(
                found.get(&timestamp_ns),
                Some(&Value::F64(n as f64 + 0.5)),
                "acknowledged point {n} is missing"
            );
        }
    }
    assert_eq!(found.len() as u64, expected_points, "no point that was never written");
}

const COLLECTORS: u64 = 6;
const WRITES_PER_COLLECTOR: u64 = 120;
const LINES_PER_SMALL_WRITE: u64 = 200;

/// Write `write` of collector `collector`: 200 lines over 4 series of its own, unique timestamps.
fn small_body(collector: u64, write: u64) -> String {
    (0..LINES_PER_SMALL_WRITE)
        .map(|line| {
            let n = (collector * WRITES_PER_COLLECTOR + write) * LINES_PER_SMALL_WRITE + line;
            format!(
                "pump,collector=c{collector},stage=s{} flow={n}.25 {}\n",
                n % 4,
                1_767_225_600_000_000_000 + n as i64
            )
        })
        .collect()
}

#[test]
fn every_point_acknowledged_to_concurrent_collectors_survives_sigkills_of_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let options = LabOptions { simulator: false, ..LabOptions::default() };
    let mut lab = Lab::new(dir.path(), options).unwrap();
    lab.start_receiver().unwrap();
    lab.start_sender_until_stopped().unwrap();
    let address = lab.sender_ingest;
    let acknowledged_writes = AtomicU64::new(0);
    let total_writes = COLLECTORS * WRITES_PER_COLLECTOR;
    std::thread::scope(|scope| {
        for collector in 0..COLLECTORS {
            let acknowledged_writes = &acknowledged_writes;
            scope.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(120);
                for write in 0..WRITES_PER_COLLECTOR {
                    let body = small_body(collector, write);
                    // Not acknowledged: retry the same write, as Telegraf does, until it is.
                    while !matches!(http_post(address, "/api/v2/write?bucket=historian", &body), Ok(204)) {
                        assert!(Instant::now() < deadline, "collector {collector} could not write");
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    acknowledged_writes.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Two SIGKILLs while every collector is writing.
        for fraction in [4, 2] {
            while acknowledged_writes.load(Ordering::Relaxed) < total_writes / fraction {
                std::thread::sleep(Duration::from_millis(5));
            }
            lab.kill_sender();
            lab.start_sender_until_stopped().unwrap();
        }
    });
    assert!(lab.stop_sender().unwrap().success());
    let expected_points = total_writes * LINES_PER_SMALL_WRITE;
    assert!(lab.wait_for_points(expected_points, Duration::from_secs(60)), "not every acknowledged point arrived");
    lab.stop_receiver().unwrap();

    let replica = Replica::open_read_only(&lab.replica_dir()).unwrap();
    let mut found: BTreeMap<i64, Value> = BTreeMap::new();
    for collector in 0..COLLECTORS {
        for stage in 0..4 {
            let tags = vec![("collector".into(), format!("c{collector}")), ("stage".into(), format!("s{stage}"))];
            let id = replica.series_id(&SeriesKey::with_tags("pump/flow", tags)).expect("every series arrived");
            for point in replica.scan(id, i64::MIN, i64::MAX) {
                let point = point.unwrap();
                found.insert(point.timestamp_ns, point.value);
            }
        }
    }
    for n in 0..expected_points {
        assert_eq!(
            found.get(&(1_767_225_600_000_000_000 + n as i64)),
            Some(&Value::F64(n as f64 + 0.25)),
            "acknowledged point {n} is missing"
        );
    }
    assert_eq!(found.len() as u64, expected_points, "no point that was never written");
    assert_eq!(replica.series_count(), COLLECTORS as u32 * 4, "no series that was never written");
}

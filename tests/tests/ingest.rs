//! "204 means durable": a collector writes line protocol to diode-sender's HTTP endpoint while the
//! sender is killed with SIGKILL and restarted; every point that was answered 204 reaches the
//! replica, with its value.

use std::collections::BTreeMap;
use std::time::Duration;

use diode_common::record::{SeriesKey, Value};
use diode_receiver::replica::Replica;
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

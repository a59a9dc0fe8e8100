//! What the sink tests share: a replica fed with seeded plant segments (shuffled, with corrections
//! of earlier values), the receiver's shared state around it, and a poll with a deadline.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diode_common::codec::{SeriesColumns, group_records};
use diode_common::keys::SenderKey;
use diode_common::plant::{PlantConfig, PlantSimulator};
use diode_common::record::{Quality, Record, Value};
use diode_common::rng::SeededRng;
use diode_common::seal::{self, ChainPosition, GENESIS_HASH, SealedSegment};
use diode_receiver::state::Shared;
use diode_replica::Replica;

/// 2024-01-01T00:00:00Z.
pub const T0: i64 = 1_704_067_200_000_000_000;
pub const SECOND: i64 = 1_000_000_000;

/// `count` segments of a seeded plant (40 series, about `points_per_segment` records each, from
/// 45 s before `T0` so hours are crossed), a third of them carrying a corrected value of an
/// earlier timestamp; returned shuffled (a late segment fills a gap), with a few applied twice.
pub fn plant_segments(seed: u64, count: usize, points_per_segment: usize) -> Vec<(SealedSegment, Vec<SeriesColumns>)> {
    plant_segments_at_rate(seed, count, points_per_segment, 4.0)
}

/// [`plant_segments`] with the plant's mean sampling rate per series.
pub fn plant_segments_at_rate(
    seed: u64,
    count: usize,
    points_per_segment: usize,
    base_rate_hz: f64,
) -> Vec<(SealedSegment, Vec<SeriesColumns>)> {
    let start_ns = T0 - 45 * SECOND;
    let mut plant = PlantSimulator::new(PlantConfig { seed, series_count: 40, base_rate_hz, start_ns });
    let key = SenderKey::from_seed([5u8; 32]);
    let mut rng = SeededRng::new(seed);
    let mut previous_hash = GENESIS_HASH;
    let mut pending: Vec<Record> = Vec::new();
    let mut earlier: Vec<Record> = Vec::new();
    let mut clock_ns = start_ns;
    let mut segments = Vec::new();
    for sequence in 1..=count as u64 {
        while pending.len() < points_per_segment {
            clock_ns += SECOND;
            plant.generate_until(clock_ns, &mut pending);
        }
        let mut records: Vec<Record> = pending.drain(..points_per_segment).collect();
        if rng.chance(0.33) && !earlier.is_empty() {
            let old = earlier[rng.below(earlier.len() as u64) as usize].clone();
            let value = match old.value {
                Value::F64(value) => Value::F64(value + 1.0),
                Value::I64(value) => Value::I64(value + 1),
                Value::Bool(value) => Value::Bool(!value),
                Value::String(value) => Value::String(format!("{value} (corrected)")),
            };
            records.push(Record { value, quality: Quality(0x4000_0000), ..old });
        }
        earlier.extend(records.iter().step_by(17).cloned());
        let position = ChainPosition { sender_id: 3, epoch: 1, sequence, previous_hash };
        let segment = seal::seal(position, &group_records(&records), 3, T0, &key);
        previous_hash = segment.hash();
        let series = seal::decode_verified(&segment).expect("a sealed segment decodes");
        segments.push((segment, series));
    }
    rng.shuffle(&mut segments);
    segments
}

pub fn shared(replica: Replica) -> Arc<Shared> {
    Arc::new(Shared::new(replica))
}

/// Applies `segments` through the shared lock (as the apply thread does), each replayed once.
pub fn apply(shared: &Shared, segments: &[(SealedSegment, Vec<SeriesColumns>)]) {
    for (segment, series) in segments {
        let mut replica = shared.replica.write().unwrap();
        replica.apply(segment, series, T0).expect("apply");
        replica.apply(segment, series, T0).expect("a replay changes nothing");
    }
}

/// Polls `condition` until it holds; panics with `what` after `deadline`.
pub fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every point of the replica: (series id, time ns) → (value, quality).
pub fn replica_points(replica: &Replica) -> BTreeMap<(u32, i64), (Value, u32)> {
    let mut points = BTreeMap::new();
    for info in replica.series_list() {
        for point in replica.scan(info.id, i64::MIN, i64::MAX) {
            let point = point.expect("scan");
            points.insert((info.id, point.timestamp_ns), (point.value, point.quality.0));
        }
    }
    points
}

/// The cursor the sink named `name` reports.
pub fn sink_cursor(shared: &Shared, name: &str) -> u64 {
    let sinks = shared.counters.sinks.lock().unwrap();
    sinks
        .iter()
        .find(|stats| stats.name == name)
        .map_or(0, |stats| stats.cursor.load(std::sync::atomic::Ordering::Relaxed))
}

/// The replica the measurements export: 400 seeded plant segments of 5,000 points applied (with
/// its folder, kept while it lives), and the points applied. Prints how fast the replica alone
/// reads them back.
pub fn measured_replica(seed: u64) -> (tempfile::TempDir, Arc<Shared>, u64) {
    let directory = tempfile::tempdir().unwrap();
    let shared = shared(Replica::open(directory.path()).unwrap());
    apply(&shared, &plant_segments(seed, 400, 5_000));
    let points = shared.replica.read().unwrap().counters().points_applied;
    print_replica_reads_alone(&shared);
    (directory, shared, points)
}

/// Prints how fast the whole apply log is read from the replica, in the sinks' batches: what
/// bounds any sink's figure.
fn print_replica_reads_alone(shared: &Shared) {
    let start = Instant::now();
    let (mut cursor, mut read) = (0, 0usize);
    loop {
        let batch = shared.replica.read().unwrap().read_applied(cursor, 1_024, 200_000).unwrap();
        let Some(last) = batch.last() else { break };
        cursor = last.apply_number;
        read += batch.iter().map(|segment| segment.point_count()).sum::<usize>();
    }
    println!("replica reads alone: {read} points at {:.0} points/s", read as f64 / start.elapsed().as_secs_f64());
}

/// Loopback ports for the servers the sink tests start (shared with the end-to-end tests'
/// crate, which this one cannot depend on).
#[path = "../../../tests/src/ports.rs"]
mod ports;
#[allow(unused_imports)] // Not every sink test starts a server.
pub use ports::free_port;

/// Stops the receiver's threads (here: the sink's) and waits for the sink's thread.
pub fn stop(shared: &Shared, thread: std::thread::JoinHandle<()>) {
    shared.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    thread.join().unwrap();
}

/// The latest failure the sink named `name` reports.
pub fn sink_last_error(shared: &Shared, name: &str) -> Option<String> {
    let sinks = shared.counters.sinks.lock().unwrap();
    sinks.iter().find(|stats| stats.name == name).and_then(|stats| stats.last_error.lock().unwrap().clone())
}

pub fn sink_errors(shared: &Shared, name: &str) -> u64 {
    let sinks = shared.counters.sinks.lock().unwrap();
    sinks
        .iter()
        .find(|stats| stats.name == name)
        .map_or(0, |stats| stats.errors.load(std::sync::atomic::Ordering::Relaxed))
}

/// CPU seconds (user and system) the process `pid` and, with `children`, the processes whose
/// parent it is have used so far, from `/proc/<pid>/stat`. A process gone before the call counts
/// for nothing.
pub fn cpu_seconds(pid: u32, children: bool) -> f64 {
    use diode_host::process::stat;
    let mut total = stat(pid).map_or(0.0, |stat| stat.cpu_seconds);
    if children {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let child = entry.file_name().to_str().and_then(|name| name.parse().ok()).and_then(stat);
            if let Some(child) = child.filter(|child| child.parent == pid) {
                total += child.cpu_seconds;
            }
        }
    }
    total
}

/// CPU seconds the calling thread has used so far.
pub fn thread_cpu_seconds() -> f64 {
    diode_host::clock::thread_cpu_ns().expect("the thread's CPU clock") as f64 / 1e9
}

/// The machine's load average over the last minute, as `uptime` shows it.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().next().unwrap_or("?").to_owned()
}

//! The replica's promises, each as one test: exactly-once apply, order independence, gaps,
//! last-write-wins, chain checks, persistence across reopen, and readers beside the writer.
//!
//! Segments are real: sealed and signed with `seal::seal`, decoded with `seal::decode_verified`,
//! from the plant simulator or hand-made records. Everything is seeded and deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use diode_common::beacon::{Beacon, EpochReason};
use diode_common::codec::{SeriesColumns, group_records};
use diode_common::plant::{PlantConfig, PlantSimulator};
use diode_common::record::{Quality, Record, SeriesKey, Value};
use diode_common::rng::SeededRng;
use diode_common::seal::{GENESIS_HASH, SealedSegment, SegmentHash};
mod support;
use support::{Chain, SECOND, T0, key};

use diode_replica::{
    ApplyOutcome, BUCKET_NS, ChainLink, Gap, HeadCheck, Point, Replica, ReplicaError, SegmentKey, StreamStatus,
};

const SENDER: u64 = 7;

/// `count` consecutive segments of `points` records each from a small simulated plant.
fn plant_segments(count: usize, points: usize) -> Vec<(SealedSegment, Vec<SeriesColumns>)> {
    // Starting 45 s before an hour boundary, so some segments straddle two buckets.
    let start_ns = T0 - 45 * SECOND;
    let mut plant = PlantSimulator::new(PlantConfig { seed: 11, series_count: 40, base_rate_hz: 2.0, start_ns });
    let mut chain = Chain::new(SENDER, 1);
    let mut pending = Vec::new();
    let mut clock_ns = start_ns;
    (0..count)
        .map(|_| {
            while pending.len() < points {
                clock_ns += SECOND;
                plant.generate_until(clock_ns, &mut pending);
            }
            let records: Vec<Record> = pending.drain(..points).collect();
            chain.seal(&records)
        })
        .collect()
}

fn record(series: &str, timestamp_ns: i64, value: f64) -> Record {
    Record { series: SeriesKey::new(series), timestamp_ns, value: Value::F64(value), quality: Quality::GOOD }
}

fn apply_at(replica: &mut Replica, (segment, series): &(SealedSegment, Vec<SeriesColumns>)) -> ApplyOutcome {
    replica.apply(segment, series, T0 + 1_000 * SECOND).expect("apply")
}

fn scan_all(replica: &Replica, series_id: u32) -> Vec<Point> {
    replica.scan(series_id, i64::MIN, i64::MAX).collect::<Result<_, _>>().expect("scan")
}

/// Every series' points, by key (ids depend on arrival order).
fn all_points(replica: &Replica) -> BTreeMap<String, Vec<Point>> {
    replica.series_list().into_iter().map(|info| (info.key.to_string(), scan_all(replica, info.id))).collect()
}

fn values(points: &[Point]) -> Vec<(i64, f64)> {
    points.iter().map(|p| (p.timestamp_ns, p.value.as_f64().unwrap())).collect()
}

/// Every key and value of every column family, read with plain RocksDB after the replica closed.
fn database_contents(path: &Path) -> BTreeMap<(String, Vec<u8>), Vec<u8>> {
    let names = ["points", "series", "segments", "meta"];
    let db = rocksdb::DB::open_cf_for_read_only(&rocksdb::Options::default(), path, names, false).expect("open");
    let mut contents = BTreeMap::new();
    for name in names {
        let family = db.cf_handle(name).unwrap();
        for item in db.iterator_cf(family, rocksdb::IteratorMode::Start) {
            let (key, value) = item.expect("read");
            contents.insert((name.to_owned(), key.to_vec()), value.to_vec());
        }
    }
    contents
}

fn beacon(epoch: u64, head_sequence: u64, sent_at_ns: i64) -> (Beacon, Vec<u8>) {
    let key = key();
    let beacon = Beacon {
        epoch_reason: EpochReason::Continuing,
        sender_id: SENDER,
        key_id: key.key_id(),
        epoch,
        head_sequence,
        head_hash: [1u8; 32],
        sent_at_ns,
        epoch_started_at_ns: T0,
        oldest_retained_sequence: 1,
        records_sealed: 0,
        datagrams_sent: 0,
        previous_epoch: epoch - 1,
        previous_epoch_last_sequence: if epoch > 1 { 5 } else { 0 },
        previous_epoch_last_hash: [0u8; 32],
        spooled_records: 0,
        beacon_counter: 1,
        link_rate_kbit_s: 1_000,
        software: "0.1.0 (test)".to_owned(),
    };
    let raw = beacon.sign(&key);
    (beacon, raw)
}

fn gap(epoch: u64, first_sequence: u64, last_sequence: u64) -> Gap {
    Gap { sender_id: SENDER, epoch, first_sequence, last_sequence }
}

/// The receiver reopens its replica after a failed write, in the process that holds it: RocksDB
/// refuses a second open of a directory its process holds, so `reopen` closes first. What was
/// applied before reads the same after, applying goes on, and an applied segment stays applied.
#[test]
fn a_replica_reopened_in_the_process_that_holds_it_reads_the_same_and_applies_on() {
    let segments = plant_segments(3, 400);
    let directory = tempfile::tempdir().unwrap();
    let options = diode_replica::ReplicaOptions { sync_writes: true };
    let mut replica = Replica::open_with(directory.path(), options).unwrap();
    apply_at(&mut replica, &segments[0]);
    let (points, counters) = (all_points(&replica), replica.counters());
    assert!(
        Replica::open_with(directory.path(), options).is_err(),
        "a second open of a directory this process holds is refused"
    );
    replica.reopen(options).unwrap();
    assert!(!replica.is_read_only());
    assert!(replica.options().sync_writes);
    assert_eq!((all_points(&replica), replica.counters()), (points, counters));
    assert_eq!(apply_at(&mut replica, &segments[0]), ApplyOutcome::AlreadyApplied);
    for segment in &segments[1..] {
        assert!(matches!(apply_at(&mut replica, segment), ApplyOutcome::Applied { points: 400, .. }));
    }
    replica.reopen(options).unwrap();
    assert_eq!(replica.counters().points_applied, 1_200);
}

/// A reopen whose writable open fails (here: another instance holds the directory) leaves the
/// replica read-only: reads go on, a write is refused with the error an operator sees, and the
/// reopen error says why; once the directory is free, the next reopen makes it writable again.
#[test]
fn a_failed_reopen_leaves_the_replica_read_only_until_a_later_one_succeeds() {
    let segments = plant_segments(2, 400);
    let directory = tempfile::tempdir().unwrap();
    let options = diode_replica::ReplicaOptions::default();
    let mut holder = Replica::open(directory.path()).unwrap();
    apply_at(&mut holder, &segments[0]);
    let points = all_points(&holder);
    let mut replica = Replica::open_read_only(directory.path()).unwrap();
    let error = replica.reopen(options).unwrap_err();
    assert!(error.to_string().contains("lock"), "{error}");
    assert!(replica.is_read_only());
    assert_eq!(all_points(&replica), points);
    let refused = replica.apply(&segments[1].0, &segments[1].1, T0).unwrap_err();
    assert!(matches!(refused, diode_replica::ReplicaError::ReadOnly { .. }), "{refused}");
    drop(holder);
    replica.reopen(options).unwrap();
    assert!(!replica.is_read_only());
    assert!(matches!(apply_at(&mut replica, &segments[1]), ApplyOutcome::Applied { points: 400, .. }));
}

#[test]
fn applying_a_segment_twice_changes_nothing() {
    let segments = plant_segments(3, 400);
    let once = tempfile::tempdir().unwrap();
    {
        let mut replica = Replica::open(once.path()).unwrap();
        for segment in &segments {
            assert!(matches!(apply_at(&mut replica, segment), ApplyOutcome::Applied { points: 400, .. }));
        }
    }
    let expected = database_contents(once.path());

    // Replays within one session, and again after a reopen.
    let twice = tempfile::tempdir().unwrap();
    {
        let mut replica = Replica::open(twice.path()).unwrap();
        for segment in &segments {
            apply_at(&mut replica, segment);
            let points_before = all_points(&replica);
            let (series_before, counters_before) = (replica.series_list(), replica.counters());
            assert_eq!(apply_at(&mut replica, segment), ApplyOutcome::AlreadyApplied);
            assert_eq!(all_points(&replica), points_before);
            assert_eq!((replica.series_list(), replica.counters()), (series_before, counters_before));
        }
    }
    {
        let mut replica = Replica::open(twice.path()).unwrap();
        for segment in &segments {
            assert_eq!(apply_at(&mut replica, segment), ApplyOutcome::AlreadyApplied);
        }
    }
    assert_eq!(database_contents(twice.path()), expected);
}

#[test]
fn segments_applied_in_any_order_give_the_same_scans_and_gaps_close_when_filled() {
    let segments = plant_segments(24, 300);
    let in_order = tempfile::tempdir().unwrap();
    let mut ordered = Replica::open(in_order.path()).unwrap();
    for segment in &segments {
        apply_at(&mut ordered, segment);
    }
    assert!(ordered.gaps().is_empty());

    let shuffled_dir = tempfile::tempdir().unwrap();
    let mut shuffled = Replica::open(shuffled_dir.path()).unwrap();
    let mut order: Vec<usize> = (0..segments.len()).collect();
    SeededRng::new(42).shuffle(&mut order);
    let mut applied = BTreeSet::new();
    for index in order {
        apply_at(&mut shuffled, &segments[index]);
        applied.insert(index as u64 + 1);
        // Missing: every sequence below the highest applied that is not applied.
        let highest = *applied.last().unwrap();
        let missing: Vec<u64> = (1..=highest).filter(|s| !applied.contains(s)).collect();
        let reported: Vec<u64> = shuffled.gaps().iter().flat_map(|g| g.first_sequence..=g.last_sequence).collect();
        assert_eq!(reported, missing);
    }
    assert!(shuffled.gaps().is_empty());
    assert_eq!(all_points(&shuffled), all_points(&ordered));
    assert_eq!(shuffled.total_points(), ordered.total_points());
    assert_eq!(shuffled.total_points(), 24 * 300);
}

#[test]
fn beacon_heads_make_never_received_segments_gaps() {
    let directory = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(directory.path()).unwrap();
    let mut chain = Chain::new(SENDER, 1);
    let first = chain.seal(&[record("a", T0, 1.0)]);
    apply_at(&mut replica, &first);
    let (announcement, raw) = beacon(1, 4, T0 + 10 * SECOND);
    replica.record_beacon(&announcement, &raw, T0 + 11 * SECOND).unwrap();
    assert_eq!(replica.gaps(), vec![gap(1, 2, 4)]);

    // A new epoch's beacon names the previous epoch's last sequence (5): it becomes known too.
    let (next_epoch, raw) = beacon(2, 2, T0 + 20 * SECOND);
    replica.record_beacon(&next_epoch, &raw, T0 + 21 * SECOND).unwrap();
    assert_eq!(replica.gaps(), vec![gap(1, 2, 5), gap(2, 1, 2)]);

    let streams: Vec<StreamStatus> = replica.streams();
    assert_eq!(streams.len(), 2);
    assert!(streams[0].seen_in_segment && streams[0].announced_by_beacon);
    assert!(!streams[1].seen_in_segment && streams[1].announced_by_beacon);
    assert_eq!(streams[1].last_beacon.as_ref().unwrap().head_sequence, 2);
    let (_, kept_raw) = replica.last_beacon(SENDER).unwrap().unwrap();
    assert_eq!(kept_raw, raw, "the signed beacon bytes are kept for audit");

    // A reordered older beacon still teaches heads but does not replace the latest.
    let (old, old_raw) = beacon(1, 6, T0 + 15 * SECOND);
    replica.record_beacon(&old, &old_raw, T0 + 22 * SECOND).unwrap();
    assert_eq!(replica.gaps(), vec![gap(1, 2, 6), gap(2, 1, 2)]);
    assert_eq!(replica.last_beacon(SENDER).unwrap().unwrap().0.epoch, 2);

    for sequence in 2..=6 {
        let next = chain.seal(&[record("a", T0 + sequence * SECOND, 1.0)]);
        apply_at(&mut replica, &next);
    }
    assert_eq!(replica.gaps(), vec![gap(2, 1, 2)]);
}

#[test]
fn a_beacon_whose_signed_head_is_not_the_stored_segment_is_told_apart() {
    let directory = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(directory.path()).unwrap();
    let segments = plant_segments(3, 50);
    for segment in &segments {
        apply_at(&mut replica, segment);
    }
    let signed = |head_sequence: u64, head_hash: SegmentHash| {
        let (mut beacon, _) = beacon(1, head_sequence, T0 + 10 * SECOND);
        beacon.head_hash = head_hash;
        let raw = beacon.sign(&key());
        (beacon, raw)
    };
    let (truthful, raw) = signed(3, segments[2].0.hash());
    assert_eq!(replica.record_beacon(&truthful, &raw, T0).unwrap(), HeadCheck::Matches);
    let (ahead, raw) = signed(4, [7; 32]);
    assert_eq!(replica.record_beacon(&ahead, &raw, T0).unwrap(), HeadCheck::NotStored);
    // Another segment 2, signed and announced: the sender's chain forked.
    let (forked, raw) = signed(2, [9; 32]);
    assert_eq!(
        replica.record_beacon(&forked, &raw, T0).unwrap(),
        HeadCheck::Differs {
            segment: SegmentKey { sender_id: SENDER, epoch: 1, sequence: 2 },
            signed_hash: [9; 32],
            stored_hash: segments[1].0.hash(),
        }
    );
}

#[test]
fn the_highest_epoch_and_sequence_wins_a_duplicate_timestamp_whatever_the_arrival_order() {
    let mut chain = Chain::new(SENDER, 1);
    let first = chain.seal(&[record("a", T0, 1.0), record("a", T0 + SECOND, 1.0)]);
    let second = chain.seal(&[record("a", T0, 2.0)]);
    let mut later_epoch = Chain::new(SENDER, 2);
    let third = later_epoch.seal(&[record("a", T0 + SECOND, 3.0)]);
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let directory = tempfile::tempdir().unwrap();
        let mut replica = Replica::open(directory.path()).unwrap();
        for index in order {
            apply_at(&mut replica, [&first, &second, &third][index]);
        }
        let id = replica.series_id(&SeriesKey::new("a")).unwrap();
        assert_eq!(values(&scan_all(&replica, id)), vec![(T0, 2.0), (T0 + SECOND, 3.0)], "order {order:?}");
        assert_eq!(replica.series_info(id).unwrap().point_count, 4, "point counts are an estimate");
    }
}

#[test]
fn within_a_segment_the_later_record_wins_and_out_of_order_records_come_out_sorted() {
    let directory = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(directory.path()).unwrap();
    let mut chain = Chain::new(SENDER, 1);
    let records = [
        record("a", T0 + 3 * SECOND, 3.0),
        record("a", T0 + SECOND, 1.0),
        record("a", T0 + 2 * SECOND, 2.0),
        record("a", T0 + SECOND, 1.5),
        record("a", T0 - BUCKET_NS, -1.0),
    ];
    apply_at(&mut replica, &chain.seal(&records));
    let id = replica.series_id(&SeriesKey::new("a")).unwrap();
    assert_eq!(
        values(&scan_all(&replica, id)),
        vec![(T0 - BUCKET_NS, -1.0), (T0 + SECOND, 1.5), (T0 + 2 * SECOND, 2.0), (T0 + 3 * SECOND, 3.0)]
    );
    // Range bounds are inclusive at both ends and cut inside buckets.
    let inner: Vec<Point> = replica.scan(id, T0 + SECOND, T0 + 2 * SECOND).collect::<Result<_, _>>().unwrap();
    assert_eq!(values(&inner), vec![(T0 + SECOND, 1.5), (T0 + 2 * SECOND, 2.0)]);
    assert_eq!(replica.scan(id, T0 + 2 * SECOND, T0 + SECOND).count(), 0);
    assert_eq!(replica.scan(id + 1, i64::MIN, i64::MAX).count(), 0, "an unknown series has no points");
}

#[test]
fn series_that_move_between_positions_from_one_segment_to_the_next_keep_their_ids() {
    let directory = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(directory.path()).unwrap();
    let mut chain = Chain::new(SENDER, 1);
    // Each segment lists other series, so a series' position in the payload moves; its value
    // names the series and the segment.
    let segments: [&[(&str, f64)]; 5] = [
        &[("b", 1.0), ("d", 1.0)],
        &[("a", 2.0), ("b", 2.0), ("c", 2.0), ("d", 2.0)],
        &[("b", 3.0), ("d", 3.0)],
        &[("d", 4.0), ("a", 4.0)],
        &[("c", 5.0), ("e", 5.0), ("b", 5.0)],
    ];
    let mut expected: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for (index, series) in segments.iter().enumerate() {
        let timestamp_ns = T0 + index as i64 * SECOND;
        let records: Vec<Record> = series.iter().map(|&(name, value)| record(name, timestamp_ns, value)).collect();
        apply_at(&mut replica, &chain.seal(&records));
        for &(name, value) in series.iter() {
            expected.entry(name.to_owned()).or_default().push((timestamp_ns, value));
        }
    }
    let found: BTreeMap<String, Vec<(i64, f64)>> =
        all_points(&replica).into_iter().map(|(key, points)| (key, values(&points))).collect();
    assert_eq!(found, expected);
    for info in replica.series_list() {
        assert_eq!(replica.series_id(&info.key), Some(info.id));
    }
}

#[test]
fn a_series_listed_twice_in_one_payload_keeps_both_parts() {
    let directory = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(directory.path()).unwrap();
    let chain = Chain::new(SENDER, 1);
    let part = |timestamp_ns: i64, value: Value| {
        let mut columns = SeriesColumns::new(SeriesKey::new("a"));
        columns.push(timestamp_ns, value, Quality::BAD);
        columns
    };
    let series = [part(T0 + SECOND, Value::F64(1.0)), part(T0, Value::I64(7))];
    let segment = chain.seal_at(1, GENESIS_HASH, &series);
    assert_eq!(apply_at(&mut replica, &segment), ApplyOutcome::Applied { points: 2, new_series: 1 });
    let points = scan_all(&replica, 0);
    assert_eq!(points[0], Point { timestamp_ns: T0, value: Value::I64(7), quality: Quality::BAD });
    assert_eq!(points[1].value, Value::F64(1.0));
    assert!(replica.series_info(0).unwrap().mixed_kinds);
}

#[test]
fn a_segment_that_breaks_the_chain_is_refused_and_nothing_is_written() {
    let directory = tempfile::tempdir().unwrap();
    let mut chain = Chain::new(SENDER, 1);
    let segments: Vec<_> = (0..5).map(|i| chain.seal(&[record("a", T0 + i * SECOND, i as f64)])).collect();
    let forged_series = group_records(&[record("a", T0, 99.0), record("b", T0, 99.0)]);
    {
        let mut replica = Replica::open(directory.path()).unwrap();
        apply_at(&mut replica, &segments[0]);
        apply_at(&mut replica, &segments[1]);
        apply_at(&mut replica, &segments[4]);
    }
    let before = database_contents(directory.path());
    let mut replica = Replica::open(directory.path()).unwrap();
    let attempts = [
        // Sequence 3 linked to something else than sequence 2.
        (chain.seal_at(3, [9u8; 32], &forged_series), ChainLink::Previous),
        // Sequence 4 whose hash is not what the stored sequence 5 names.
        (chain.seal_at(4, [9u8; 32], &forged_series), ChainLink::Next),
        // A different segment at an applied position.
        (chain.seal_at(2, segments[0].0.hash(), &forged_series), ChainLink::SamePosition),
    ];
    for ((segment, series), expected) in attempts {
        match replica.apply(&segment, &series, T0) {
            Err(ReplicaError::ChainMismatch { link, .. }) => assert_eq!(link, expected),
            other => panic!("expected a {expected:?} chain mismatch, got {other:?}"),
        }
    }
    let other_epoch = Chain::new(SENDER, 2);
    let (segment, series) = other_epoch.seal_at(1, [1u8; 32], &group_records(&[record("a", T0, 1.0)]));
    let error = replica.apply(&segment, &series, T0).unwrap_err();
    assert!(matches!(error, ReplicaError::ChainMismatch { link: ChainLink::Genesis, .. }));
    assert!(error.to_string().contains("nothing was written"), "{error}");
    assert_eq!(replica.series_id(&SeriesKey::new("b")), None);
    drop(replica);
    assert_eq!(database_contents(directory.path()), before);

    // The true segments still fit.
    let mut replica = Replica::open(directory.path()).unwrap();
    apply_at(&mut replica, &segments[2]);
    apply_at(&mut replica, &segments[3]);
    assert!(replica.gaps().is_empty());
}

#[test]
fn reopening_keeps_the_catalog_ids_trackers_beacons_and_points() {
    let directory = tempfile::tempdir().unwrap();
    let segments = plant_segments(6, 200);
    let (announcement, raw) = beacon(1, 9, T0);
    let (series, streams, gaps, counters, points) = {
        let mut replica = Replica::open(directory.path()).unwrap();
        for index in [0, 1, 3] {
            apply_at(&mut replica, &segments[index]);
        }
        replica.record_beacon(&announcement, &raw, T0).unwrap();
        (replica.series_list(), replica.streams(), replica.gaps(), replica.counters(), all_points(&replica))
    };
    let mut replica = Replica::open(directory.path()).unwrap();
    assert_eq!(replica.series_list(), series);
    assert_eq!(replica.streams(), streams);
    assert_eq!(replica.gaps(), gaps);
    assert_eq!(gaps, vec![gap(1, 3, 3), gap(1, 5, 9)]);
    assert_eq!(replica.counters(), counters);
    assert_eq!(counters.segments_applied, 3);
    assert_eq!(all_points(&replica), points);

    // New series continue the numbering; known ones keep their ids.
    let mut chain = Chain::new(SENDER, 3);
    let known = Record { series: series[0].key.clone(), ..record("", T0, 1.0) };
    apply_at(&mut replica, &chain.seal(&[record("brand/new", T0, 1.0), known]));
    assert_eq!(replica.series_id(&SeriesKey::new("brand/new")), Some(series.len() as u32));
    assert_eq!(replica.series_id(&series[0].key), Some(0));
    assert_eq!(apply_at(&mut replica, &segments[3]), ApplyOutcome::AlreadyApplied);
}

#[test]
fn series_statistics_survive_reopening_before_and_after_checkpoints() {
    let directory = tempfile::tempdir().unwrap();
    let mut chain = Chain::new(SENDER, 1);
    let mut replica = Replica::open(directory.path()).unwrap();
    // 150 applies cross two statistics checkpoints; every segment touches a recurring series and
    // creates a new one, whose statistics exist only in deltas until the next checkpoint.
    for sequence in 1..=150i64 {
        let records = [
            record(&format!("recurring/{}", sequence % 5), T0 + sequence * SECOND, 1.0),
            record(&format!("new/{sequence}"), T0 - sequence * SECOND, 2.0),
        ];
        apply_at(&mut replica, &chain.seal(&records));
        if sequence % 23 == 0 || sequence == 64 || sequence == 65 || sequence == 150 {
            let (series, total) = (replica.series_list(), replica.total_points());
            drop(replica);
            replica = Replica::open(directory.path()).unwrap();
            assert_eq!(replica.series_list(), series, "after {sequence} applies");
            assert_eq!(replica.total_points(), total);
            assert_eq!(Replica::open_read_only(directory.path()).unwrap().series_list(), series);
        }
    }
    let recurring = replica.series_info(replica.series_id(&SeriesKey::new("recurring/0")).unwrap()).unwrap();
    assert_eq!(recurring.point_count, 30);
    assert_eq!((recurring.first_timestamp_ns, recurring.last_timestamp_ns), (T0 + 5 * SECOND, T0 + 150 * SECOND));
    assert_eq!(replica.total_points(), 300);
}

/// Set in the environment of the helper process the kill test starts.
const KILL_TEST_DIRECTORY: &str = "DIODE_REPLICA_KILL_TEST_DIRECTORY";

#[test]
fn a_killed_writer_loses_nothing_that_apply_acknowledged() {
    let directory = tempfile::tempdir().unwrap();
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_process_that_applies_and_waits_to_be_killed", "--nocapture", "--test-threads=1"])
        .env(KILL_TEST_DIRECTORY, directory.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut output = std::io::BufReader::new(helper.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("applied all") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut output, &mut line).unwrap() > 0, "the helper exited early");
    }
    helper.kill().unwrap(); // SIGKILL: no destructor, no flush.
    helper.wait().unwrap();

    let replica = Replica::open(directory.path()).unwrap();
    assert_eq!(replica.counters().segments_applied, 5);
    assert!(replica.gaps().is_empty());
    let fresh_directory = tempfile::tempdir().unwrap();
    let mut fresh = Replica::open(fresh_directory.path()).unwrap();
    for segment in &plant_segments(5, 200) {
        apply_at(&mut fresh, segment);
    }
    assert_eq!(all_points(&replica), all_points(&fresh));
    assert_eq!(replica.series_list(), fresh.series_list());
}

/// Not a test on its own: the process `a_killed_writer_loses_nothing_that_apply_acknowledged`
/// starts and kills. Does nothing unless that test set its directory.
#[test]
fn helper_process_that_applies_and_waits_to_be_killed() {
    let Some(directory) = std::env::var_os(KILL_TEST_DIRECTORY) else { return };
    let mut replica = Replica::open(Path::new(&directory)).unwrap();
    for segment in &plant_segments(5, 200) {
        apply_at(&mut replica, segment);
    }
    println!("applied all");
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn a_second_writer_is_refused_with_a_hint() {
    let directory = tempfile::tempdir().unwrap();
    let _writer = Replica::open(directory.path()).unwrap();
    let message = Replica::open(directory.path()).unwrap_err().to_string();
    assert!(message.contains("another diode-receiver"), "{message}");
}

#[test]
fn a_reader_beside_the_writer_sees_what_was_applied() {
    let directory = tempfile::tempdir().unwrap();
    let segments = plant_segments(4, 250);
    let mut writer = Replica::open(directory.path()).unwrap();
    apply_at(&mut writer, &segments[0]);

    // Only in the write-ahead log and memtable so far.
    let mut reader = Replica::open_read_only(directory.path()).unwrap();
    assert!(reader.is_read_only());
    assert_eq!(reader.series_list(), writer.series_list());
    assert_eq!(all_points(&reader), all_points(&writer));
    assert_eq!(reader.segment_bytes(SENDER, 1, 1).unwrap(), Some(segments[0].0.to_bytes()));

    apply_at(&mut writer, &segments[1]);
    writer.flush().unwrap();
    apply_at(&mut writer, &segments[2]);
    reader.catch_up().unwrap();
    assert_eq!(reader.counters().segments_applied, 3);
    assert_eq!(all_points(&reader), all_points(&writer));
    assert_eq!(reader.streams(), writer.streams());

    let refused = reader.apply(&segments[3].0, &segments[3].1, T0);
    assert!(matches!(refused, Err(ReplicaError::ReadOnly { .. })));
}

#[test]
fn the_audit_log_keeps_every_sealed_segment_in_order() {
    let directory = tempfile::tempdir().unwrap();
    let segments = plant_segments(5, 100);
    let mut replica = Replica::open(directory.path()).unwrap();
    for index in [4, 0, 2, 1, 3] {
        apply_at(&mut replica, &segments[index]);
    }
    let stored: Vec<_> = replica.segments(SegmentKey::FIRST).collect::<Result<_, _>>().unwrap();
    assert_eq!(stored.iter().map(|s| s.key.sequence).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    for (stored, (segment, _)) in stored.iter().zip(&segments) {
        assert_eq!(stored.sealed, segment.to_bytes());
        assert_eq!(stored.applied_at_ns, T0 + 1_000 * SECOND);
    }
    assert_eq!(replica.segments_of_stream(SENDER, 1).count(), 5);
    assert_eq!(replica.segments_of_stream(SENDER, 2).count(), 0);
    assert_eq!(replica.segment_bytes(SENDER, 1, 6).unwrap(), None);
}

#[test]
fn a_replica_of_layout_2_is_read_as_it_is_and_marked_3_at_its_first_writable_open() {
    let directory = tempfile::tempdir().unwrap();
    {
        let mut replica = Replica::open(directory.path()).unwrap();
        for segment in &plant_segments(3, 50) {
            apply_at(&mut replica, segment);
        }
    }
    let names = ["points", "series", "segments", "meta"];
    let stored_version = |path: &Path| {
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), path, names).unwrap();
        let version = db.get_cf(db.cf_handle("meta").unwrap(), b"V").unwrap().unwrap();
        u32::from_be_bytes(version.as_slice().try_into().unwrap())
    };
    {
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), directory.path(), names).unwrap();
        db.put_cf(db.cf_handle("meta").unwrap(), b"V", 2u32.to_be_bytes()).unwrap();
    }
    let before = all_points(&Replica::open_read_only(directory.path()).unwrap());
    assert_eq!(before.values().map(Vec::len).sum::<usize>(), 150);
    assert_eq!(stored_version(directory.path()), 2, "a read-only open changes nothing");
    assert_eq!(all_points(&Replica::open(directory.path()).unwrap()), before);
    assert_eq!(stored_version(directory.path()), 3);
}

#[test]
fn a_replica_of_another_layout_version_is_refused_with_both_versions_named() {
    let directory = tempfile::tempdir().unwrap();
    drop(Replica::open(directory.path()).unwrap());
    {
        let names = ["points", "series", "segments", "meta"];
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), directory.path(), names).unwrap();
        db.put_cf(db.cf_handle("meta").unwrap(), b"V", 4u32.to_be_bytes()).unwrap();
    }
    let message = Replica::open(directory.path()).unwrap_err().to_string();
    assert!(message.contains("written by layout version 4; this build reads versions 1 to 3"), "{message}");
    assert!(message.contains(&directory.path().display().to_string()), "{message}");
    assert!(Replica::open_read_only(directory.path()).is_err());
}

#[test]
fn another_rocksdb_database_is_not_taken_over() {
    let directory = tempfile::tempdir().unwrap();
    {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        let db = rocksdb::DB::open(&options, directory.path()).unwrap();
        db.put(b"someone", b"else").unwrap();
    }
    let error = Replica::open(directory.path()).unwrap_err();
    assert!(matches!(error, ReplicaError::NotAReplica { .. }), "{error}");
    let missing = Replica::open_read_only(&directory.path().join("nothing-here")).unwrap_err();
    assert!(matches!(missing, ReplicaError::NotFound { .. }), "{missing}");
}

#[test]
fn compacting_keeps_every_point_and_table_sizes_count_what_is_on_disk() {
    let directory = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(directory.path()).unwrap();
    for segment in plant_segments(30, 200) {
        apply_at(&mut replica, &segment);
    }
    let before = all_points(&replica);
    replica.flush().unwrap();
    let written: BTreeMap<&str, u64> = replica.table_bytes().unwrap().into_iter().collect();
    assert_eq!(written.keys().copied().collect::<Vec<_>>(), ["meta", "points", "segments", "series"]);
    assert!(written["points"] > 0 && written["segments"] > 0, "{written:?}");
    replica.compact().unwrap();
    let compacted: BTreeMap<&str, u64> = replica.table_bytes().unwrap().into_iter().collect();
    assert!(compacted["points"] > 0 && compacted["points"] <= written["points"], "{written:?} then {compacted:?}");
    assert_eq!(all_points(&replica), before);
    drop(replica);
    assert_eq!(all_points(&Replica::open(directory.path()).unwrap()), before, "and after a reopen");
}

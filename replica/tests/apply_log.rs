//! The apply log and sink cursors: what a sink reads follows applies in order, and upserting it
//! point by point ends equal to the replica, whatever the arrival order, with late gap-fills and
//! corrected values arriving as updates.

use std::collections::BTreeMap;

use diode_common::codec::SeriesColumns;
use diode_common::plant::{PlantConfig, PlantSimulator};
use diode_common::record::{Quality, Record, SeriesKey, Value};
use diode_common::rng::SeededRng;
use diode_common::seal::SealedSegment;
use diode_replica::{Replica, SegmentKey, SinkCursor};

mod support;
use support::{Chain, T0};

const SECOND: i64 = 1_000_000_000;

fn record(series: &str, timestamp_ns: i64, value: f64) -> Record {
    Record { series: SeriesKey::new(series), timestamp_ns, value: Value::F64(value), quality: Quality::GOOD }
}

fn apply(replica: &mut Replica, (segment, series): &(SealedSegment, Vec<SeriesColumns>)) {
    replica.apply(segment, series, T0).expect("apply");
}

type Table = BTreeMap<(String, i64), (Value, Quality)>;

/// What a sink that upserts everything it reads holds: (series, time) → (value, quality).
fn follow(replica: &Replica, cursor: &mut u64, table: &mut Table) {
    loop {
        let batch = replica.read_applied(*cursor, 3, 1_000).expect("read applied");
        if batch.is_empty() {
            return;
        }
        for segment in batch {
            assert_eq!(segment.apply_number, *cursor + 1, "apply numbers follow one another");
            *cursor = segment.apply_number;
            for series in segment.series {
                let name = replica.series_info(series.series_id).unwrap().key.to_string();
                let columns = &series.columns;
                assert!(columns.timestamps_ns.windows(2).all(|w| w[0] < w[1]), "ascending, one per timestamp");
                for (row, &timestamp_ns) in columns.timestamps_ns.iter().enumerate() {
                    table.insert((name.clone(), timestamp_ns), (columns.value(row), columns.qualities[row]));
                }
            }
        }
    }
}

fn replica_table(replica: &Replica) -> Table {
    let mut table = Table::new();
    for info in replica.series_list() {
        for point in replica.scan(info.id, i64::MIN, i64::MAX) {
            let point = point.expect("scan");
            table.insert((info.key.to_string(), point.timestamp_ns), (point.value, point.quality));
        }
    }
    table
}

#[test]
fn a_sink_following_the_apply_log_ends_equal_to_the_replica_whatever_the_arrival_order() {
    let start_ns = T0 - 45 * SECOND;
    let mut plant = PlantSimulator::new(PlantConfig { seed: 5, series_count: 30, base_rate_hz: 2.0, start_ns });
    let mut chain = Chain::new(9, 1);
    let mut clock_ns = start_ns;
    let mut segments = Vec::new();
    let mut pending = Vec::new();
    let mut rng = SeededRng::new(17);
    for _ in 0..40 {
        clock_ns += 5 * SECOND;
        plant.generate_until(clock_ns, &mut pending);
        // Now and then a correction of an earlier timestamp, which a later segment must win.
        if rng.chance(0.3)
            && let Some(old) =
                segments.iter().flat_map(|(_, series): &(SealedSegment, Vec<SeriesColumns>)| series.first()).next()
        {
            pending.push(Record { value: Value::F64(-1.0), ..old.records().next().unwrap() });
        }
        segments.push(chain.seal(&std::mem::take(&mut pending)));
    }
    let mut order: Vec<usize> = (0..segments.len()).collect();
    rng.shuffle(&mut order);
    let directory = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(directory.path()).unwrap();
    let (mut cursor, mut table) = (0u64, Table::new());
    for (step, index) in order.into_iter().enumerate() {
        apply(&mut replica, &segments[index]);
        apply(&mut replica, &segments[index]); // a replay is not logged twice
        if step % 7 == 0 {
            follow(&replica, &mut cursor, &mut table);
        }
    }
    follow(&replica, &mut cursor, &mut table);
    assert_eq!(cursor, 40);
    assert_eq!(replica.last_apply_number(), 40);
    assert_eq!(table, replica_table(&replica));
}

#[test]
fn a_late_lower_segment_never_overwrites_and_a_later_correction_arrives_as_an_update() {
    let mut chain = Chain::new(1, 1);
    let first = chain.seal(&[record("a", T0, 1.0), record("a", T0 + SECOND, 1.0)]);
    let second = chain.seal(&[record("a", T0, 2.0)]);
    let directory = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(directory.path()).unwrap();
    apply(&mut replica, &second);
    apply(&mut replica, &first);
    let applied = replica.read_applied(0, 10, 10_000).unwrap();
    assert_eq!(applied.len(), 2);
    assert_eq!(applied[0].segment, SegmentKey { sender_id: 1, epoch: 1, sequence: 2 });
    assert_eq!(applied[0].series[0].columns.timestamps_ns, vec![T0]);
    assert_eq!(applied[1].segment.sequence, 1);
    assert_eq!(applied[1].series[0].columns.timestamps_ns, vec![T0 + SECOND], "T0 is won by sequence 2");

    let mut correction_epoch = Chain::new(1, 2);
    apply(&mut replica, &correction_epoch.seal(&[record("a", T0 + SECOND, 3.0)]));
    let correction = replica.read_applied(2, 10, 10_000).unwrap();
    assert_eq!(correction.len(), 1);
    assert_eq!(correction[0].series[0].columns.value(0), Value::F64(3.0));
    let limited = replica.read_applied(0, 10, 1).unwrap();
    assert_eq!(limited.len(), 1, "the points limit stops after the first segment");
}

#[test]
fn sink_cursors_are_durable_and_readers_see_them() {
    let directory = tempfile::tempdir().unwrap();
    {
        let replica = Replica::open(directory.path()).unwrap();
        assert_eq!(replica.sink_cursor("warehouse").unwrap(), None);
        replica.set_sink_cursor("warehouse", SinkCursor { apply_number: 12, updated_at_ns: 34 }).unwrap();
        replica.set_sink_cursor("lake", SinkCursor { apply_number: 5, updated_at_ns: 6 }).unwrap();
        assert!(replica.set_sink_cursor("", SinkCursor { apply_number: 1, updated_at_ns: 1 }).is_err());
    }
    let replica = Replica::open(directory.path()).unwrap();
    let reader = Replica::open_read_only(directory.path()).unwrap();
    let expected = vec![
        ("lake".to_owned(), SinkCursor { apply_number: 5, updated_at_ns: 6 }),
        ("warehouse".to_owned(), SinkCursor { apply_number: 12, updated_at_ns: 34 }),
    ];
    assert_eq!(replica.sink_cursors().unwrap(), expected);
    assert_eq!(reader.sink_cursors().unwrap(), expected);
    assert!(reader.set_sink_cursor("lake", SinkCursor { apply_number: 6, updated_at_ns: 7 }).is_err());
}

#[test]
fn a_replica_written_before_the_apply_log_gains_it_at_its_first_writable_open() {
    let directory = tempfile::tempdir().unwrap();
    let mut chain = Chain::new(1, 1);
    {
        let mut replica = Replica::open(directory.path()).unwrap();
        for second in 0..5 {
            apply(&mut replica, &chain.seal(&[record("a", T0 + second * SECOND, second as f64)]));
        }
    }
    {
        // Remove the apply log, as a replica of an earlier release would be.
        let names = ["points", "series", "segments", "meta"];
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), directory.path(), names).unwrap();
        let meta = db.cf_handle("meta").unwrap();
        db.delete_range_cf(meta, [b'A'], [b'B']).unwrap();
    }
    let replica = Replica::open(directory.path()).unwrap();
    let (mut cursor, mut table) = (0u64, Table::new());
    follow(&replica, &mut cursor, &mut table);
    assert_eq!(cursor, 5);
    assert_eq!(table, replica_table(&replica));
}

//! Merged closed hours: a replica whose buckets are merged, at any moment and in any arrival
//! order of the segments, reads exactly as one never merged (points, every chunk as stored, what
//! sinks read); closed hours merge by themselves, a restart forgets none waiting, and a replica of
//! layout 1 is upgraded with every bucket it holds marked.

use std::path::Path;

use diode_common::codec::{SeriesColumns, group_records};
use diode_common::record::{Quality, Record, SeriesKey, Value};
use diode_common::rng::SeededRng;
use diode_replica::{BUCKET_NS, CLOSE_AFTER_NS, PointKey, Replica};

mod support;
use support::{Chain, SECOND, Segment, T0};

fn record(series: &str, timestamp_ns: i64, value: Value) -> Record {
    Record { series: SeriesKey::new(series), timestamp_ns, value, quality: Quality::GOOD }
}

fn apply(replica: &mut Replica, segment: &Segment) {
    apply_at(replica, segment, T0);
}

/// Applies `segment` as if the receiver's clock said `applied_at_ns`.
fn apply_at(replica: &mut Replica, (segment, series): &Segment, applied_at_ns: i64) {
    replica.apply(segment, series, applied_at_ns).expect("apply");
}

/// How long the tests let a closed hour go unwritten before it is merged.
const QUIET_NS: i64 = 60 * SECOND;

/// Everything a reader sees, as comparable text: each series' points, every chunk with its key
/// and rows, and what a sink reads from the first apply on.
fn view(replica: &Replica) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut points = Vec::new();
    for info in replica.series_list() {
        for point in replica.scan(info.id, i64::MIN, i64::MAX) {
            points.push(format!("{} {:?}", info.key, point.expect("scan")));
        }
    }
    let chunks = replica
        .point_chunks(0)
        .map(|chunk| {
            let chunk = chunk.expect("chunk");
            let columns = chunk.value.into_columns(SeriesKey::new("")).expect("decodes");
            format!("{:?} {:?}", chunk.key, columns)
        })
        .collect();
    let applied = replica
        .read_applied(0, 100_000, usize::MAX)
        .expect("read applied")
        .iter()
        .map(|segment| format!("{segment:?}"))
        .collect();
    (points, chunks, applied)
}

/// Asserts two views are equal, naming the first difference.
fn assert_same(
    merged: &(Vec<String>, Vec<String>, Vec<String>),
    plain: &(Vec<String>, Vec<String>, Vec<String>),
    context: &str,
) {
    for (what, a, b) in
        [("points", &merged.0, &plain.0), ("chunks", &merged.1, &plain.1), ("sink reads", &merged.2, &plain.2)]
    {
        if let Some(index) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
            panic!(
                "{context}: {what} differ at {index} (of {} merged, {} plain):\nmerged {:?}\nplain  {:?}",
                a.len(),
                b.len(),
                a.get(index),
                b.get(index)
            );
        }
    }
}

/// Points entries by key length: (chunks stored on their own, merged buckets).
fn entries(replica: &Replica) -> (usize, usize) {
    let (mut stored, mut merged) = (0, 0);
    replica
        .for_each_point_chunk(|entry| match entry {
            diode_replica::PointsEntry::Chunk(..) => stored += 1,
            diode_replica::PointsEntry::Merged { .. } => merged += 1,
            diode_replica::PointsEntry::Malformed(..) => panic!("a malformed key"),
        })
        .expect("walk");
    (stored, merged)
}

/// Segments of three series over about three hours: a few points each, some timestamps written
/// again (corrections), some points in an hour already past, kinds that change.
fn plant_segments(rng: &mut SeededRng, count: usize) -> Vec<Segment> {
    let mut chain = Chain::new(1, 1);
    let mut segments = Vec::new();
    for index in 0..count {
        let now = T0 + index as i64 * 4 * 60 * SECOND;
        let mut records = Vec::new();
        for (series, name) in ["a", "b", "c"].iter().enumerate() {
            for point in 0..rng.below(4) {
                let timestamp_ns = match rng.below(6) {
                    0 => T0 + rng.below(index as u64 + 1) as i64 * 4 * 60 * SECOND, // again, or earlier
                    1 => now - BUCKET_NS,                                           // an hour back
                    _ => now + point as i64 * SECOND,
                };
                let value = if series == 2 && rng.below(5) == 0 {
                    Value::I64(rng.below(100) as i64)
                } else {
                    Value::F64(rng.below(1_000) as f64 / 8.0)
                };
                records.push(record(name, timestamp_ns, value));
            }
        }
        records.push(record("a", now, Value::F64(index as f64)));
        segments.push(chain.seal(&records));
    }
    segments
}

#[test]
fn merging_at_any_moment_changes_nothing_a_reader_sees_whatever_the_arrival_order() {
    for seed in 1..=6u64 {
        let mut rng = SeededRng::new(seed);
        let segments = plant_segments(&mut rng, 48);
        // Arrival: mostly in order, a fifth held back to the end (gaps filled late, into merged hours).
        let (mut order, mut late): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
        for index in 0..segments.len() {
            if rng.below(5) == 0 { late.push(index) } else { order.push(index) }
        }
        order.extend(late.iter().rev());
        let (plain_dir, merged_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut plain = Replica::open(plain_dir.path()).unwrap();
        let mut merged = Replica::open(merged_dir.path()).unwrap();
        let mut buckets_merged = 0;
        for (step, &index) in order.iter().enumerate() {
            apply(&mut plain, &segments[index]);
            apply(&mut merged, &segments[index]);
            match rng.below(4) {
                0 => buckets_merged += merged.merge_all_buckets().unwrap().buckets_merged,
                1 => {
                    let budget = rng.below(40) as usize;
                    buckets_merged += merged.merge_closed_buckets(budget, T0, 0).unwrap().buckets_merged;
                }
                _ => {}
            }
            if step % 8 == 7 {
                assert_same(&view(&merged), &view(&plain), &format!("seed {seed}, after {} applies", step + 1));
            }
        }
        buckets_merged += merged.merge_all_buckets().unwrap().buckets_merged;
        assert!(buckets_merged > 0, "seed {seed}: nothing was merged");
        assert_eq!(merged.buckets_waiting_to_merge(), 0);
        assert_same(&view(&merged), &view(&plain), &format!("seed {seed}, all merged"));
        let ((plain_stored, plain_merged), (stored, merged_entries)) = (entries(&plain), entries(&merged));
        assert_eq!(plain_merged, 0);
        assert!(stored + merged_entries < plain_stored, "seed {seed}: {stored} + {merged_entries} of {plain_stored}");
    }
}

/// Two series, one point each per segment, a segment a minute: a live plant, sped up.
fn live_segments(minutes: i64) -> Vec<Segment> {
    let mut chain = Chain::new(1, 1);
    (0..minutes)
        .map(|minute| {
            let at = T0 + minute * 60 * SECOND;
            chain.seal(&[record("a", at, Value::F64(minute as f64)), record("b", at, Value::I64(minute))])
        })
        .collect()
}

#[test]
fn closed_hours_merge_by_themselves_within_a_budget_and_a_restart_forgets_none_waiting() {
    const { assert!(CLOSE_AFTER_NS == 10 * 60 * SECOND, "the test's timing assumes it") };
    let directory = tempfile::tempdir().unwrap();
    // Minutes 0 to 188: hour 1 has closed (the newest data is 10 minutes past its end), hour 2 not.
    let segments = live_segments(3 * 60 + 9);
    let mut replica = Replica::open(directory.path()).unwrap();
    // Each segment applied when its minute ends, by the receiver's clock.
    let applied_at = |minute: usize| T0 + (minute as i64 + 1) * 60 * SECOND;
    for (minute, segment) in segments.iter().enumerate() {
        apply_at(&mut replica, segment, applied_at(minute));
    }
    let now = applied_at(segments.len() - 1);
    let before = view(&replica);
    assert_eq!(replica.buckets_waiting_to_merge(), 8, "two series, four hours");
    let first = replica.merge_closed_buckets(1, now, QUIET_NS).unwrap();
    assert_eq!((first.buckets_merged, first.chunks_merged, first.rows), (1, 60, 60));
    let rest = replica.merge_closed_buckets(usize::MAX, now, QUIET_NS).unwrap();
    assert_eq!(rest.buckets_merged, 3);
    assert_eq!(replica.merge_closed_buckets(usize::MAX, now, 0).unwrap().buckets_merged, 0, "hours 2, 3 are open");
    assert_eq!(entries(&replica), (2 * 60 + 2 * 9, 4));
    assert_eq!(view(&replica), before);
    drop(replica);
    let mut replica = Replica::open(directory.path()).unwrap();
    assert_eq!(replica.buckets_waiting_to_merge(), 4, "the open hours are still marked");
    assert_eq!(view(&replica), before);
    // Minutes 189 to 250: hours 2 and 3 close; hour 3 was written 11 minutes before the last apply.
    let more = live_segments(4 * 60 + 11);
    for (minute, segment) in more.iter().enumerate().skip(segments.len()) {
        apply_at(&mut replica, segment, applied_at(minute));
    }
    let now = applied_at(more.len() - 1);
    let half_an_hour = 30 * 60 * SECOND;
    assert_eq!(replica.merge_closed_buckets(usize::MAX, now, half_an_hour).unwrap().buckets_merged, 2, "hour 2");
    assert_eq!(replica.merge_closed_buckets(usize::MAX, now, QUIET_NS).unwrap().buckets_merged, 2, "hour 3");
    assert_eq!(entries(&replica), (2 * 11, 8), "hour 4 is open");
}

/// Statistics deltas (one per apply until a checkpoint) left standing hold as many bytes per point
/// as a live plant's merged points: merging folds them, and what a reopen reads is unchanged.
#[test]
fn merging_folds_the_statistics_deltas_and_a_reopen_reads_the_same_statistics() {
    let directory = tempfile::tempdir().unwrap();
    let segments = live_segments(70);
    let mut replica = Replica::open(directory.path()).unwrap();
    for segment in &segments[..69] {
        apply(&mut replica, segment);
    }
    assert_eq!(replica.statistics_deltas_pending(), 69 - 64, "one checkpoint at the 64th apply");
    let series = replica.series_list();
    assert!(replica.merge_all_buckets().unwrap().buckets_merged > 0);
    assert_eq!(replica.statistics_deltas_pending(), 0);
    assert_eq!(replica.series_list(), series);
    drop(replica);
    let db = raw_db(directory.path());
    let meta = db.cf_handle("meta").unwrap();
    let deltas =
        db.iterator_cf(meta, rocksdb::IteratorMode::Start).filter(|entry| entry.as_ref().unwrap().0[0] == b'D').count();
    assert_eq!(deltas, 0, "the merge deleted every delta");
    drop(db);
    let mut replica = Replica::open(directory.path()).unwrap();
    assert_eq!(replica.series_list(), series);
    apply(&mut replica, &segments[69]);
    assert_eq!(replica.statistics_deltas_pending(), 1);
    let series = replica.series_list();
    drop(replica);
    assert_eq!(Replica::open(directory.path()).unwrap().series_list(), series);
}

/// A clean shutdown (`close`) writes the checkpoint the pending deltas wait for: a stopped
/// replica holds no delta (so a build that reads only older delta versions still opens it) and a
/// reopen reads the same statistics. A replica dropped without it keeps its deltas, folded at open.
#[test]
fn closing_cleanly_folds_the_statistics_deltas_and_dropping_keeps_them_for_the_next_open() {
    let count_deltas = |path: &Path| {
        let db = raw_db(path);
        let meta = db.cf_handle("meta").unwrap();
        db.iterator_cf(meta, rocksdb::IteratorMode::Start).filter(|entry| entry.as_ref().unwrap().0[0] == b'D').count()
    };
    let segments = live_segments(10);
    let (closed, dropped) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut series = Vec::new();
    for directory in [&closed, &dropped] {
        let mut replica = Replica::open(directory.path()).unwrap();
        for segment in &segments {
            apply(&mut replica, segment);
        }
        assert_eq!(replica.statistics_deltas_pending(), 10, "no checkpoint before the 64th apply");
        series = replica.series_list();
        if directory.path() == closed.path() {
            replica.close().unwrap();
            assert_eq!(replica.statistics_deltas_pending(), 0);
        }
    }
    assert_eq!(count_deltas(closed.path()), 0, "close wrote the checkpoint and deleted the deltas");
    assert_eq!(count_deltas(dropped.path()), 10, "dropped: the deltas wait for the next open");
    for directory in [&closed, &dropped] {
        let replica = Replica::open(directory.path()).unwrap();
        assert_eq!(replica.series_list(), series);
    }
    let mut read_only = Replica::open_read_only(closed.path()).unwrap();
    read_only.close().unwrap();
}

/// A live hour of many series closes in many merge turns (a row budget each, beside apply): the
/// checkpoint that folds the deltas is written once, when the turn that leaves no closed bucket
/// waiting ends, not after every turn (each would rewrite the statistics of every series applied
/// since the one before).
#[test]
fn a_closing_hour_merged_over_several_turns_writes_its_checkpoint_once_at_the_end() {
    let directory = tempfile::tempdir().unwrap();
    // Minutes 0 to 70: hour 1's two buckets have closed, hour 2's have not.
    let segments = live_segments(71);
    let mut replica = Replica::open(directory.path()).unwrap();
    let applied_at = |minute: usize| T0 + (minute as i64 + 1) * 60 * SECOND;
    for (minute, segment) in segments.iter().enumerate() {
        apply_at(&mut replica, segment, applied_at(minute));
    }
    let now = applied_at(segments.len() - 1);
    assert_eq!(replica.statistics_deltas_pending(), 71 - 64, "one checkpoint at the 64th apply");
    let first = replica.merge_closed_buckets(1, now, QUIET_NS).unwrap();
    assert_eq!(first.buckets_merged, 1);
    assert_eq!(replica.statistics_deltas_pending(), 7, "a closed bucket is still waiting: no checkpoint yet");
    let second = replica.merge_closed_buckets(1, now, QUIET_NS).unwrap();
    assert_eq!(second.buckets_merged, 1);
    assert_eq!(replica.statistics_deltas_pending(), 0, "the last closed bucket merged: settled");
    let series = replica.series_list();
    // Applies go on; turns that merge nothing write no checkpoint.
    let more = live_segments(73);
    for (minute, segment) in more.iter().enumerate().skip(segments.len()) {
        apply_at(&mut replica, segment, applied_at(minute));
        assert_eq!(replica.merge_closed_buckets(1, applied_at(minute), QUIET_NS).unwrap().buckets_merged, 0);
    }
    assert_eq!(replica.statistics_deltas_pending(), 2);
    let expected = replica.series_list();
    assert_ne!(expected, series);
    drop(replica);
    assert_eq!(Replica::open(directory.path()).unwrap().series_list(), expected);
}

#[test]
fn a_segment_applied_into_a_merged_hour_is_read_in_its_place_and_marks_the_hour_again() {
    let directory = tempfile::tempdir().unwrap();
    let mut chain = Chain::new(1, 1);
    let at = |second: i64| T0 + second * SECOND;
    let first = chain.seal(&[record("a", at(1), Value::F64(1.0)), record("a", at(2), Value::F64(2.0))]);
    let gap = chain.seal(&[record("a", at(2), Value::F64(20.0)), record("a", at(3), Value::F64(30.0))]);
    let third = chain.seal(&[record("a", at(3), Value::F64(300.0)), record("a", at(4), Value::F64(4.0))]);
    let mut replica = Replica::open(directory.path()).unwrap();
    apply(&mut replica, &first);
    apply(&mut replica, &third);
    assert_eq!(replica.merge_all_buckets().unwrap().buckets_merged, 1);
    apply(&mut replica, &gap);
    assert_eq!(replica.buckets_waiting_to_merge(), 1);
    let values: Vec<f64> =
        replica.scan(0, i64::MIN, i64::MAX).map(|point| point.unwrap().value.as_f64().unwrap()).collect();
    assert_eq!(values, vec![1.0, 20.0, 300.0, 4.0], "the gap's segment wins over 1, loses to 3");
    let sequences: Vec<u64> = replica
        .point_chunks(0)
        .map(|chunk| match chunk.unwrap().key {
            Ok(key) => key.sequence,
            Err(_) => 0,
        })
        .collect();
    assert_eq!(sequences, vec![1, 2, 3]);
    assert_eq!(replica.merge_all_buckets().unwrap().chunks_merged, 3);
    assert_eq!(entries(&replica), (0, 1));
    let values_after: Vec<f64> =
        replica.scan(0, i64::MIN, i64::MAX).map(|point| point.unwrap().value.as_f64().unwrap()).collect();
    assert_eq!(values_after, values);
}

/// Applying a payload decoded with its chunks stores the payload's own column bytes for a series
/// of one entry in one bucket, and what is stored reads back exactly as when every chunk is
/// encoded from the decoded columns: points, every chunk, what sinks read, merged or not.
#[test]
fn a_payload_applied_with_its_own_chunks_reads_as_one_applied_from_its_columns() {
    let mut rng = SeededRng::new(21);
    let chain = Chain::new(1, 1);
    let (mut sequence, mut previous_hash) = (1, diode_common::seal::GENESIS_HASH);
    let names = ["a", "b", "c", "d"];
    // Jittered nanosecond timestamps, every kind, some segments across an hour's end, a series
    // twice in one payload.
    let segments: Vec<Segment> = (0..40i64)
        .map(|index| {
            let at = T0 + BUCKET_NS - 20 * SECOND + index * SECOND;
            let mut records = Vec::new();
            for (place, name) in names.iter().enumerate() {
                for point in 0..1 + (index + place as i64) % 3 {
                    let timestamp_ns = at + point * 300_000_000 + rng.below(1_000_000) as i64;
                    let value = match place {
                        0 => Value::F64((rng.below(10_000) as f64) / 100.0),
                        1 => Value::I64(index * 10 + point),
                        2 => Value::Bool(point % 2 == 0),
                        _ => Value::String(format!("state {}", index % 4)),
                    };
                    records.push(record(name, timestamp_ns, value));
                }
            }
            let mut series = group_records(&records);
            if index % 7 == 0 {
                // The key twice in one payload: encoded from its columns, as one group.
                series.extend(group_records(&[record("a", at + 900_000_000, Value::F64(-1.5))]));
            }
            let segment = chain.seal_at(sequence, previous_hash, &series);
            (sequence, previous_hash) = (sequence + 1, segment.0.hash());
            segment
        })
        .collect();
    let (with_columns, with_chunks) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut from_columns = Replica::open(with_columns.path()).unwrap();
    let mut from_chunks = Replica::open(with_chunks.path()).unwrap();
    let mut payload_chunks = std::collections::HashSet::new();
    for (segment, series) in &segments {
        from_columns.apply(segment, series, T0).unwrap();
        let decoded = diode_common::seal::decode_verified_with_chunks(segment).unwrap();
        payload_chunks.extend((0..decoded.series.len()).filter_map(|block| decoded.chunk(block).map(<[u8]>::to_vec)));
        from_chunks.apply_decoded(segment, &decoded, T0).unwrap();
    }
    assert_same(&view(&from_chunks), &view(&from_columns), "as applied");
    assert_eq!(from_chunks.series_list(), from_columns.series_list());
    from_chunks.merge_all_buckets().unwrap();
    from_columns.merge_all_buckets().unwrap();
    assert_same(&view(&from_chunks), &view(&from_columns), "merged");
    drop((from_chunks, from_columns));
    // Before merging, the payload's own bytes were stored: look at a replica that never merged.
    let directory = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(directory.path()).unwrap();
    for (segment, _) in &segments {
        replica.apply_decoded(segment, &diode_common::seal::decode_verified_with_chunks(segment).unwrap(), T0).unwrap();
    }
    drop(replica);
    let db = raw_db(directory.path());
    let points = db.cf_handle("points").unwrap();
    let stored = db.iterator_cf(points, rocksdb::IteratorMode::Start).map(|entry| entry.unwrap().1.to_vec());
    let (mut from_payload, mut total) = (0, 0);
    for value in stored {
        total += 1;
        from_payload += usize::from(payload_chunks.contains(&value));
    }
    assert!(from_payload * 2 > total, "{from_payload} of {total} chunks are the payload's bytes");
}

fn raw_db(path: &Path) -> rocksdb::DB {
    rocksdb::DB::open_cf(&rocksdb::Options::default(), path, ["points", "series", "segments", "meta"]).unwrap()
}

#[test]
fn a_replica_of_layout_1_is_upgraded_with_every_bucket_of_several_chunks_marked() {
    let directory = tempfile::tempdir().unwrap();
    let segments = live_segments(130);
    {
        let mut replica = Replica::open(directory.path()).unwrap();
        for segment in &segments {
            apply(&mut replica, segment);
        }
    }
    {
        // What a replica written by the build before merged hours holds: version 1, no marks.
        let db = raw_db(directory.path());
        let meta = db.cf_handle("meta").unwrap();
        let marks: Vec<Box<[u8]>> = db
            .iterator_cf(meta, rocksdb::IteratorMode::Start)
            .map(|entry| entry.unwrap().0)
            .filter(|key| key.first() == Some(&b'M'))
            .collect();
        assert_eq!(marks.len(), 6);
        for key in marks {
            db.delete_cf(meta, key).unwrap();
        }
        db.put_cf(meta, b"V", 1u32.to_be_bytes()).unwrap();
    }
    let before = view(&Replica::open_read_only(directory.path()).unwrap());
    let mut replica = Replica::open(directory.path()).unwrap();
    assert_eq!(replica.buckets_waiting_to_merge(), 6, "two series, hours 0, 1 and 2 (ten minutes)");
    let quiet = replica.merge_closed_buckets(usize::MAX, T0, QUIET_NS).unwrap();
    assert_eq!(quiet.buckets_merged, 2, "hour 0 is closed, and quiet since before the open");
    assert_eq!(view(&replica), before);
    drop(replica);
    let db = raw_db(directory.path());
    let version = db.get_cf(db.cf_handle("meta").unwrap(), b"V").unwrap().unwrap();
    assert_eq!(version, diode_replica::LAYOUT_VERSION.to_be_bytes());
}

#[test]
fn a_merged_bucket_that_does_not_read_is_refused_by_scans_and_left_alone_by_merges() {
    let directory = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(directory.path()).unwrap();
    for segment in &live_segments(5) {
        apply(&mut replica, segment);
    }
    let chunks: Vec<(PointKey, SeriesColumns)> = replica
        .series_chunks(0, i64::MIN, i64::MAX)
        .map(|chunk| {
            let chunk = chunk.unwrap();
            (chunk.key.unwrap(), chunk.value.into_columns(SeriesKey::new("")).unwrap())
        })
        .collect();
    let value = diode_replica::encode_merged_bucket(&chunks);
    assert_eq!(Replica::merged_bucket_chunks(0, chunks[0].0.bucket_start_ns, &value).unwrap(), chunks);
    drop(replica);
    {
        let db = raw_db(directory.path());
        let points = db.cf_handle("points").unwrap();
        let prefix = chunks[0].0.to_bytes()[..12].to_vec();
        db.put_cf(points, &prefix, &value[..value.len() - 3]).unwrap();
    }
    let mut replica = Replica::open(directory.path()).unwrap();
    let error = replica.scan(0, i64::MIN, i64::MAX).find_map(Result::err).expect("the scan refuses it");
    assert!(error.to_string().contains("the merged bucket"), "{error}");
    let report = replica.merge_all_buckets().unwrap();
    assert_eq!((report.buckets_unreadable, report.buckets_merged), (1, 1), "series b still merges");
    assert!(report.unreadable.unwrap().contains("the merged bucket"));
}

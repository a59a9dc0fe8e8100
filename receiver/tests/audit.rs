//! The audit's promises, each as one test: a clean replica verifies clean; every kind of
//! tampering with the RocksDB files (a point changed, deleted or inserted, an audit entry removed,
//! a stored signature altered) is named; key rotation and revocation are honoured; a proof checks
//! with the public key alone and fails after any single byte of it is changed.
//!
//! Replicas are real (segments sealed with `seal::seal`, applied with `Replica::apply`); tampering
//! goes straight to the RocksDB files with the layout of `receiver/src/replica/layout.rs`.

use std::path::Path;

use diode_common::beacon::{Beacon, EpochReason};
use diode_common::codec::{SeriesColumns, decode_columns, encode_columns, group_records};
use diode_common::keys::{KeyId, SenderKey, TrustedKey, TrustedKeys, encode_hex};
use diode_common::record::{Quality, Record, SeriesKey, Value};
use diode_common::seal::{self, ChainPosition, GENESIS_HASH, OpenError, SealedSegment, SegmentHash};
use diode_receiver::audit::cli::{AuditCommand, CheckProofArgs, ProofArgs, VerifyArgs};
use diode_receiver::audit::findings::Finding;
use diode_receiver::audit::proof::{check_proof, describe, export_proof};
use diode_receiver::audit::report::{AuditReport, GapKind};
use diode_receiver::audit::verify::{VerifyOptions, verify_replica};
use diode_replica::{BUCKET_NS, Replica, SegmentKey, encode_merged_bucket};

const T0: i64 = 1_704_067_200_000_000_000;
const SECOND: i64 = 1_000_000_000;
const SENDER: u64 = 7;
const EPOCH: u64 = 1;
const SERIES: [&str; 3] = ["plant/a", "plant/b", "plant/c"];
/// Records per series per segment.
const ROWS: i64 = 20;
const SEGMENTS: u64 = 5;

fn key_a() -> SenderKey {
    SenderKey::from_seed([3u8; 32])
}

fn key_b() -> SenderKey {
    SenderKey::from_seed([4u8; 32])
}

/// Seals consecutive segments of one (sender, epoch) chain; the key may change between segments.
struct Chain {
    epoch: u64,
    next_sequence: u64,
    previous_hash: SegmentHash,
}

impl Chain {
    fn new() -> Chain {
        Chain::in_epoch(EPOCH)
    }

    fn in_epoch(epoch: u64) -> Chain {
        Chain { epoch, next_sequence: 1, previous_hash: GENESIS_HASH }
    }

    fn seal(&mut self, records: &[Record], key: &SenderKey) -> (SealedSegment, Vec<SeriesColumns>) {
        let position = ChainPosition {
            sender_id: SENDER,
            epoch: self.epoch,
            sequence: self.next_sequence,
            previous_hash: self.previous_hash,
        };
        let sealed_at_ns = T0 + self.next_sequence as i64 * 100 * SECOND;
        let segment = seal::seal(position, &group_records(records), 3, sealed_at_ns, key);
        self.next_sequence += 1;
        self.previous_hash = segment.hash();
        let series = seal::decode_verified(&segment).expect("a sealed segment decodes");
        (segment, series)
    }
}

fn record(series: &str, timestamp_ns: i64, value: f64) -> Record {
    Record { series: SeriesKey::new(series), timestamp_ns, value: Value::F64(value), quality: Quality::GOOD }
}

/// Segment `sequence` (1-based): `ROWS` records of each series, one a second, values unique.
fn records_of(sequence: u64) -> Vec<Record> {
    let first = (sequence as i64 - 1) * ROWS;
    (first..first + ROWS)
        .flat_map(|row| {
            SERIES
                .iter()
                .enumerate()
                .map(move |(index, name)| record(name, T0 + row * SECOND, row as f64 + index as f64 * 1_000.0 + 0.25))
        })
        .collect()
}

/// Timestamp of row `row` of segment `sequence`.
fn time_of(sequence: u64, row: i64) -> i64 {
    T0 + ((sequence as i64 - 1) * ROWS + row) * SECOND
}

fn trust(keys: &[&SenderKey]) -> TrustedKeys {
    TrustedKeys::new(keys.iter().map(|key| TrustedKey::new(key.public_key())).collect())
}

/// A replica of `SEGMENTS` segments signed by key A, and a beacon announcing the epoch.
fn build_replica(path: &Path) {
    let mut replica = Replica::open(path).unwrap();
    let mut chain = Chain::new();
    for sequence in 1..=SEGMENTS {
        let (segment, series) = chain.seal(&records_of(sequence), &key_a());
        replica.apply(&segment, &series, T0 + 1_000 * SECOND).unwrap();
    }
    announce_head(&mut replica, SEGMENTS, T0 + 1_001 * SECOND);
}

/// Records the sender's signed beacon of epoch 1 with head `head_sequence`.
fn announce_head(replica: &mut Replica, head_sequence: u64, received_at_ns: i64) {
    announce(replica, EPOCH, head_sequence, EpochReason::FirstStart, (0, 0, GENESIS_HASH), received_at_ns);
}

/// Records a signed beacon of `epoch` as a sender sends it: its head hash is that of the segment
/// at `head_sequence` when the replica holds it.
fn announce(
    replica: &mut Replica,
    epoch: u64,
    head_sequence: u64,
    epoch_reason: EpochReason,
    previous_end: (u64, u64, SegmentHash),
    received_at_ns: i64,
) {
    let head = SegmentKey { sender_id: SENDER, epoch, sequence: head_sequence };
    let stored = replica.stored_segment(head).unwrap();
    let head_hash = stored.map_or([1u8; 32], |stored| seal::parse(&stored.sealed).unwrap().hash());
    let (beacon, raw) = epoch_beacon(epoch, (head_sequence, head_hash), epoch_reason, previous_end);
    replica.record_beacon(&beacon, &raw, received_at_ns).unwrap();
}

/// A signed beacon of `epoch` with its head, naming the previous epoch, its last sequence and that
/// one's hash.
fn epoch_beacon(
    epoch: u64,
    (head_sequence, head_hash): (u64, SegmentHash),
    epoch_reason: EpochReason,
    (previous_epoch, previous_epoch_last_sequence, previous_epoch_last_hash): (u64, u64, SegmentHash),
) -> (Beacon, Vec<u8>) {
    let key = key_a();
    let beacon = Beacon {
        epoch_reason,
        sender_id: SENDER,
        key_id: key.key_id(),
        epoch,
        head_sequence,
        head_hash,
        sent_at_ns: T0 + 1_000 * SECOND,
        epoch_started_at_ns: T0,
        oldest_retained_sequence: 1,
        records_sealed: 0,
        datagrams_sent: 0,
        previous_epoch,
        previous_epoch_last_sequence,
        previous_epoch_last_hash,
        spooled_records: 0,
        beacon_counter: 1,
        link_rate_kbit_s: 1_000,
        software: "0.1.0 (test)".to_owned(),
    };
    let raw = beacon.sign(&key);
    (beacon, raw)
}

fn audit(path: &Path, trusted: &TrustedKeys) -> AuditReport {
    let replica = Replica::open_read_only(path).unwrap();
    let options = VerifyOptions { threads: 2, ..VerifyOptions::default() };
    verify_replica(&replica, trusted, &options).unwrap()
}

fn series_id(path: &Path, name: &str) -> u32 {
    Replica::open_read_only(path).unwrap().series_id(&SeriesKey::new(name)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Raw access to the replica's RocksDB files, as an attacker with file access would have.

fn raw_db(path: &Path) -> rocksdb::DB {
    rocksdb::DB::open_cf(&rocksdb::Options::default(), path, ["points", "series", "segments", "meta"]).unwrap()
}

/// `series id ‖ bucket start (sign bit flipped) ‖ epoch ‖ sequence ‖ sender id`, big-endian.
fn point_key(series_id: u32, timestamp_ns: i64, sequence: u64) -> Vec<u8> {
    let bucket = timestamp_ns - timestamp_ns.rem_euclid(BUCKET_NS);
    let mut key = series_id.to_be_bytes().to_vec();
    key.extend_from_slice(&((bucket as u64) ^ (1 << 63)).to_be_bytes());
    key.extend_from_slice(&EPOCH.to_be_bytes());
    key.extend_from_slice(&sequence.to_be_bytes());
    key.extend_from_slice(&SENDER.to_be_bytes());
    key
}

fn segment_key(sequence: u64) -> Vec<u8> {
    [SENDER.to_be_bytes(), EPOCH.to_be_bytes(), sequence.to_be_bytes()].concat()
}

/// Rewrites the chunk of `name` written by segment `sequence` (all test data lies in one bucket).
fn rewrite_chunk(path: &Path, name: &str, sequence: u64, change: impl FnOnce(&SeriesColumns) -> SeriesColumns) {
    let id = series_id(path, name);
    let db = raw_db(path);
    let points = db.cf_handle("points").unwrap();
    let key = point_key(id, time_of(sequence, 0), sequence);
    if let Some(stored) = db.get_cf(points, &key).unwrap() {
        let columns = decode_columns(&stored, SeriesKey::new(name)).unwrap();
        let mut bytes = Vec::new();
        encode_columns(&change(&columns), &mut bytes);
        db.put_cf(points, &key, bytes).unwrap();
        return;
    }
    // Merged: the chunk is a part of its bucket's entry, under the bucket prefix.
    let prefix = &key[..12];
    let stored = db.get_cf(points, prefix).unwrap().expect("the chunk exists, on its own or merged");
    let bucket_start_ns = time_of(sequence, 0) - time_of(sequence, 0).rem_euclid(BUCKET_NS);
    let mut chunks = Replica::merged_bucket_chunks(id, bucket_start_ns, &stored).unwrap();
    let part = chunks.iter_mut().find(|(key, _)| key.sequence == sequence).expect("the part exists");
    part.1 = change(&part.1);
    db.put_cf(points, prefix, encode_merged_bucket(&chunks)).unwrap();
}

/// Merges every hour of the replica at `path` into one entry per series, as the receiver does
/// once an hour has closed.
fn merge_hours(path: &Path) {
    let mut replica = Replica::open(path).unwrap();
    let report = replica.merge_all_buckets().unwrap();
    assert_eq!(report.buckets_merged, SERIES.len() as u64, "all test data lies in one hour");
}

/// The columns without row `skip`, and with `replace` applied to the rest.
fn copy_rows(columns: &SeriesColumns, skip: Option<usize>, replace: impl Fn(usize, f64) -> f64) -> SeriesColumns {
    let mut copy = SeriesColumns::new(columns.key.clone());
    for row in 0..columns.len() {
        if Some(row) == skip {
            continue;
        }
        let value = replace(row, columns.value(row).as_f64().unwrap());
        copy.push(columns.timestamps_ns[row], Value::F64(value), columns.qualities[row]);
    }
    copy
}

fn kinds(report: &AuditReport) -> Vec<&'static str> {
    report.findings.counts.iter().filter(|(_, count)| **count > 0).map(|(kind, _)| *kind).collect()
}

// ---------------------------------------------------------------------------------------------
// verify

#[test]
fn a_clean_replica_verifies_clean_with_its_epoch_announced() {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert!(report.is_clean(), "{}", report.summary_text());
    assert_eq!((report.segments_stored, report.segments_verified), (SEGMENTS, SEGMENTS));
    assert_eq!(report.links_checked, SEGMENTS, "genesis link and every link between neighbours");
    let signed = SEGMENTS * ROWS as u64 * SERIES.len() as u64;
    assert_eq!((report.points.expected, report.points.scanned, report.points.matched), (signed, signed, signed));
    assert_eq!(report.epochs.len(), 1);
    let epoch = &report.epochs[0];
    assert_eq!((epoch.first_sequence, epoch.last_sequence), (Some(1), Some(SEGMENTS)));
    assert!(epoch.announced_by_beacon && epoch.begins_at_genesis);
    assert_eq!(epoch.first_seen_at_ns, Some(T0 + 1_000 * SECOND));
    assert!(report.gaps.is_empty());
    assert!(report.summary_text().contains("CLEAN"));
    assert_eq!(report.to_json()["clean"], serde_json::json!(true));
}

#[test]
fn a_tiny_memory_budget_gives_the_same_verdict_in_more_windows_and_passes() {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    let replica = Replica::open_read_only(directory.path()).unwrap();
    let options = VerifyOptions { threads: 3, memory_budget_points: 7, ..VerifyOptions::default() };
    let report = verify_replica(&replica, &trust(&[&key_a()]), &options).unwrap();
    assert!(report.is_clean(), "{}", report.summary_text());
    assert_eq!(report.points.matched, SEGMENTS * ROWS as u64 * SERIES.len() as u64);
    assert!(report.points.segment_decodes > SEGMENTS, "the busy window was split into passes");
}

#[test]
fn a_changed_point_value_is_named_by_series_and_timestamp() {
    check_a_changed_point_value_is_named_by_series_and_timestamp(false);
}

#[test]
fn a_changed_point_value_is_named_by_series_and_timestamp_in_a_merged_hour() {
    check_a_changed_point_value_is_named_by_series_and_timestamp(true);
}

fn check_a_changed_point_value_is_named_by_series_and_timestamp(merged: bool) {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    if merged {
        merge_hours(directory.path());
    }
    rewrite_chunk(directory.path(), "plant/a", 3, |columns| {
        copy_rows(columns, None, |row, value| if row == 5 { value + 1.0 } else { value })
    });
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert_eq!(kinds(&report), vec!["point_changed"], "{}", report.summary_text());
    assert_eq!(report.points.changed, 1);
    let Finding::PointChanged { series, timestamp_ns, expected, found, segment } = &report.findings.listed[0] else {
        panic!("{:?}", report.findings.listed)
    };
    assert_eq!((series.as_str(), *timestamp_ns, segment.sequence), ("plant/a", time_of(3, 5), 3));
    assert_eq!(expected.0, Value::F64((2 * ROWS + 5) as f64 + 0.25));
    assert_eq!(found.0, Value::F64((2 * ROWS + 5) as f64 + 1.25));
    assert!(report.summary_text().contains("point CHANGED: plant/a"));
}

#[test]
fn a_changed_point_quality_is_named_too() {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    rewrite_chunk(directory.path(), "plant/b", 1, |columns| {
        let mut copy = columns.clone();
        copy.qualities[0] = Quality::BAD;
        copy
    });
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert_eq!(kinds(&report), vec!["point_changed"]);
    assert!(matches!(&report.findings.listed[0],
        Finding::PointChanged { series, timestamp_ns, found, .. } if series == "plant/b" && *timestamp_ns == T0 && found.1 == Quality::BAD));
}

#[test]
fn a_deleted_point_is_named_by_series_and_timestamp() {
    check_a_deleted_point_is_named_by_series_and_timestamp(false);
}

#[test]
fn a_deleted_point_is_named_by_series_and_timestamp_in_a_merged_hour() {
    check_a_deleted_point_is_named_by_series_and_timestamp(true);
}

fn check_a_deleted_point_is_named_by_series_and_timestamp(merged: bool) {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    if merged {
        merge_hours(directory.path());
    }
    rewrite_chunk(directory.path(), "plant/b", 2, |columns| copy_rows(columns, Some(7), |_, value| value));
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert_eq!(kinds(&report), vec!["point_deleted"], "{}", report.summary_text());
    assert!(matches!(&report.findings.listed[0],
        Finding::PointDeleted { series, timestamp_ns, segment, .. }
            if series == "plant/b" && *timestamp_ns == time_of(2, 7) && segment.sequence == 2));
}

#[test]
fn a_point_inserted_under_a_segment_that_does_not_exist_is_named_as_added() {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    let id = series_id(directory.path(), "plant/c");
    let forged_at = T0 + 7 * BUCKET_NS + 123;
    let mut forged = SeriesColumns::new(SeriesKey::new("plant/c"));
    forged.push(forged_at, Value::F64(42.0), Quality::GOOD);
    let mut bytes = Vec::new();
    encode_columns(&forged, &mut bytes);
    {
        let db = raw_db(directory.path());
        db.put_cf(db.cf_handle("points").unwrap(), point_key(id, forged_at, 999), bytes).unwrap();
    }
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert_eq!(kinds(&report), vec!["point_added"], "{}", report.summary_text());
    assert!(matches!(&report.findings.listed[0],
        Finding::PointAdded { series, timestamp_ns, found, .. }
            if series == "plant/c" && *timestamp_ns == forged_at && found.0 == Value::F64(42.0)));
}

#[test]
fn a_point_slipped_into_a_signed_chunk_is_named_as_added() {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    let slipped_at = time_of(4, 3) + 500_000_000;
    rewrite_chunk(directory.path(), "plant/a", 4, |columns| {
        let mut copy = columns.clone();
        copy.push(slipped_at, Value::F64(-1.0), Quality::GOOD);
        copy
    });
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert_eq!(kinds(&report), vec!["point_added"]);
    assert!(
        matches!(&report.findings.listed[0], Finding::PointAdded { timestamp_ns, .. } if *timestamp_ns == slipped_at)
    );
}

/// `build_replica`, then segment 6 re-sends `plant/a`'s records of segment 2 with corrected values
/// (+0.5): segment 2's chunk of `plant/a` is superseded, row for row, and no query shows it.
fn build_replica_with_correction(path: &Path) {
    let mut replica = Replica::open(path).unwrap();
    let mut chain = Chain::new();
    for sequence in 1..=SEGMENTS {
        let (segment, series) = chain.seal(&records_of(sequence), &key_a());
        replica.apply(&segment, &series, T0 + 1_000 * SECOND).unwrap();
    }
    let corrections: Vec<Record> =
        (0..ROWS).map(|row| record("plant/a", time_of(2, row), (ROWS + row) as f64 + 0.75)).collect();
    let (segment, series) = chain.seal(&corrections, &key_a());
    replica.apply(&segment, &series, T0 + 1_000 * SECOND).unwrap();
    announce_head(&mut replica, SEGMENTS + 1, T0 + 1_001 * SECOND);
}

/// The value a query returns for `name` at `timestamp_ns`.
fn visible_value(path: &Path, name: &str, timestamp_ns: i64) -> Value {
    let replica = Replica::open_read_only(path).unwrap();
    let id = replica.series_id(&SeriesKey::new(name)).unwrap();
    let points: Vec<_> = replica.scan(id, timestamp_ns, timestamp_ns).collect::<Result<_, _>>().unwrap();
    points[0].value.clone()
}

#[test]
fn a_replica_with_superseded_chunks_verifies_clean_and_accounts_for_every_chunk() {
    check_a_replica_with_superseded_chunks_verifies_clean_and_accounts_for_every_chunk(false);
}

#[test]
fn a_replica_with_superseded_chunks_verifies_clean_and_accounts_for_every_chunk_once_its_hour_is_merged() {
    check_a_replica_with_superseded_chunks_verifies_clean_and_accounts_for_every_chunk(true);
}

fn check_a_replica_with_superseded_chunks_verifies_clean_and_accounts_for_every_chunk(merged: bool) {
    let directory = tempfile::tempdir().unwrap();
    build_replica_with_correction(directory.path());
    if merged {
        merge_hours(directory.path());
    }
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert!(report.is_clean(), "{}", report.summary_text());
    let chunks = SEGMENTS * SERIES.len() as u64 + 1;
    assert_eq!(
        (report.points.chunks_stored, report.points.chunks_checked, report.points.chunks_matched),
        (chunks, chunks, chunks)
    );
    assert_eq!(report.points.scanned, SEGMENTS * ROWS as u64 * SERIES.len() as u64, "corrections replace, not add");
}

#[test]
fn a_tampered_superseded_value_is_named_though_no_query_shows_it() {
    check_a_tampered_superseded_value_is_named_though_no_query_shows_it(false);
}

#[test]
fn a_tampered_superseded_value_is_named_though_no_query_shows_it_in_a_merged_hour() {
    check_a_tampered_superseded_value_is_named_though_no_query_shows_it(true);
}

fn check_a_tampered_superseded_value_is_named_though_no_query_shows_it(merged: bool) {
    let directory = tempfile::tempdir().unwrap();
    build_replica_with_correction(directory.path());
    if merged {
        merge_hours(directory.path());
    }
    let visible = visible_value(directory.path(), "plant/a", time_of(2, 5));
    rewrite_chunk(directory.path(), "plant/a", 2, |columns| {
        copy_rows(columns, None, |row, value| if row == 5 { -7.0 } else { value })
    });
    assert_eq!(visible_value(directory.path(), "plant/a", time_of(2, 5)), visible, "the later write hides it");
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert_eq!(kinds(&report), vec!["chunk_changed"], "{}", report.summary_text());
    let Finding::ChunkChanged { series, chunk, timestamp_ns, expected, found, rows_differing } =
        &report.findings.listed[0]
    else {
        panic!("{:?}", report.findings.listed)
    };
    assert_eq!((series.as_str(), chunk.sequence, *timestamp_ns, *rows_differing), ("plant/a", 2, time_of(2, 5), 1));
    assert_eq!(expected.as_ref().map(|point| point.0.clone()), Some(Value::F64((ROWS + 5) as f64 + 0.25)));
    assert_eq!(found.as_ref().map(|point| point.0.clone()), Some(Value::F64(-7.0)));
    assert!(report.summary_text().contains("chunk CHANGED: plant/a"));
}

#[test]
fn a_deleted_superseded_chunk_is_named() {
    let directory = tempfile::tempdir().unwrap();
    build_replica_with_correction(directory.path());
    let id = series_id(directory.path(), "plant/a");
    {
        let db = raw_db(directory.path());
        db.delete_cf(db.cf_handle("points").unwrap(), point_key(id, time_of(2, 0), 2)).unwrap();
    }
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert_eq!(kinds(&report), vec!["chunk_deleted"], "{}", report.summary_text());
    assert!(matches!(&report.findings.listed[0],
        Finding::ChunkDeleted { series, chunk, rows, .. } if series == "plant/a" && chunk.sequence == 2 && *rows == ROWS as u64));
}

#[test]
fn a_copy_of_a_signed_chunk_under_a_segment_that_never_wrote_it_is_named() {
    let directory = tempfile::tempdir().unwrap();
    build_replica_with_correction(directory.path());
    let id = series_id(directory.path(), "plant/b");
    {
        // Segment 4's chunk of plant/b, copied under segment 999: queries return the same values.
        let db = raw_db(directory.path());
        let points = db.cf_handle("points").unwrap();
        let chunk = db.get_cf(points, point_key(id, time_of(4, 0), 4)).unwrap().unwrap();
        db.put_cf(points, point_key(id, time_of(4, 0), 999), chunk).unwrap();
    }
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert_eq!(kinds(&report), vec!["chunk_unsigned"], "{}", report.summary_text());
    assert!(matches!(&report.findings.listed[0],
        Finding::ChunkUnsigned { series, chunk, rows, first_timestamp_ns }
            if series == "plant/b" && chunk.sequence == 999 && *rows == ROWS as u64 && *first_timestamp_ns == time_of(4, 0)));
}

#[test]
fn a_chunk_under_a_series_id_the_catalog_does_not_hold_is_named() {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    let forged_at = T0 + 3 * SECOND;
    let mut forged = SeriesColumns::new(SeriesKey::new("plant/x"));
    forged.push(forged_at, Value::F64(42.0), Quality::GOOD);
    let mut bytes = Vec::new();
    encode_columns(&forged, &mut bytes);
    {
        let db = raw_db(directory.path());
        db.put_cf(db.cf_handle("points").unwrap(), point_key(77, forged_at, 2), bytes).unwrap();
    }
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert_eq!(kinds(&report), vec!["chunk_uncatalogued"], "{}", report.summary_text());
    assert!(matches!(&report.findings.listed[0],
        Finding::ChunkUncatalogued { chunk, rows: Some(1), first_timestamp_ns: Some(at) }
            if chunk.series_id == 77 && chunk.sequence == 2 && *at == forged_at));
    assert!(report.summary_text().contains("UNCATALOGUED series id 77"));
}

#[test]
fn an_entry_under_a_key_that_is_not_a_points_key_is_named() {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    {
        // Three bytes: sorts between the key ranges of two series, where no scan looks.
        let db = raw_db(directory.path());
        db.put_cf(db.cf_handle("points").unwrap(), [0u8, 0, 1], b"forged").unwrap();
    }
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert_eq!(kinds(&report), vec!["chunk_key_malformed"], "{}", report.summary_text());
    assert!(matches!(&report.findings.listed[0],
        Finding::ChunkKeyMalformed { key_hex, value_bytes: 6 } if key_hex == "000001"));
}

#[test]
fn a_longer_key_inside_a_series_bucket_is_named_and_refused_by_queries() {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    let id = series_id(directory.path(), SERIES[1]);
    {
        // A real chunk copied under its own key plus one byte: it sorts inside the bucket.
        let db = raw_db(directory.path());
        let points = db.cf_handle("points").unwrap();
        let key = point_key(id, time_of(2, 0), 2);
        let value = db.get_cf(points, &key).unwrap().expect("the chunk of segment 2");
        let longer = [key.as_slice(), &[0]].concat();
        db.put_cf(points, longer, value).unwrap();
    }
    let report = audit(directory.path(), &trust(&[&key_a()]));
    // Named by its key; and since queries refuse the bucket, that series' points cannot be read.
    let kinds = kinds(&report);
    assert!(kinds.contains(&"chunk_key_malformed") && kinds.contains(&"points_unreadable"), "{kinds:?}");
    assert!(!report.is_clean());
    let replica = Replica::open_read_only(directory.path()).unwrap();
    let error = replica.scan(id, i64::MIN, i64::MAX).find_map(Result::err).expect("the scan refuses the entry");
    assert!(error.to_string().contains("37-byte key"), "{error}");
}

#[test]
fn a_removed_audit_entry_is_named_by_sequence_and_its_points_become_unsigned() {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    {
        let db = raw_db(directory.path());
        db.delete_cf(db.cf_handle("segments").unwrap(), segment_key(3)).unwrap();
    }
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert_eq!(kinds(&report), vec!["point_added", "segments_removed"], "{}", report.summary_text());
    assert!(report.findings.listed.contains(&Finding::SegmentsRemoved {
        sender_id: SENDER,
        epoch: EPOCH,
        first_sequence: 3,
        last_sequence: 3
    }));
    assert_eq!(report.points.added, ROWS as u64 * SERIES.len() as u64, "segment 3's points are backed by nothing");
    assert_eq!(report.gaps.len(), 1);
    assert_eq!(
        (report.gaps[0].first_sequence, report.gaps[0].last_sequence, report.gaps[0].kind),
        (3, 3, GapKind::RemovedAfterApply)
    );
    assert_eq!(report.links_checked, SEGMENTS - 2, "the links 2→3 and 3→4 cannot be checked");
}

#[test]
fn an_altered_stored_signature_is_named_by_sequence() {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    {
        let db = raw_db(directory.path());
        let segments = db.cf_handle("segments").unwrap();
        let mut entry = db.get_cf(segments, segment_key(2)).unwrap().unwrap();
        // version (1) ‖ applied at (8) ‖ header (136) ‖ signature (64) ‖ payload
        entry[9 + 136 + 10] ^= 0x01;
        db.put_cf(segments, segment_key(2), entry).unwrap();
    }
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert!(report.findings.listed.contains(&Finding::SegmentInvalid {
        segment: SegmentKey { sender_id: SENDER, epoch: EPOCH, sequence: 2 },
        check: "bad_signature",
        message: OpenError::BadSignature { key_id: key_a().key_id() }.to_string(),
    }));
    assert_eq!(kinds(&report), vec!["point_added", "segment_invalid"], "{}", report.summary_text());
    assert_eq!(report.points.added, ROWS as u64 * SERIES.len() as u64);
    assert_eq!(report.segments_verified, SEGMENTS - 1);
}

#[test]
fn a_damaged_audit_entry_is_named_and_the_segments_after_it_are_verified() {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    {
        let db = raw_db(directory.path());
        let segments = db.cf_handle("segments").unwrap();
        let mut entry = db.get_cf(segments, segment_key(2)).unwrap().unwrap();
        entry[0] = 9; // an unknown audit entry version
        db.put_cf(segments, segment_key(2), entry).unwrap();
    }
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert_eq!(kinds(&report), vec!["audit_entry_unreadable", "point_added"], "{}", report.summary_text());
    let position = SegmentKey { sender_id: SENDER, epoch: EPOCH, sequence: 2 };
    assert!(matches!(&report.findings.listed[0],
        Finding::AuditEntryUnreadable { entry: Some(entry), reason, .. } if *entry == position && reason.contains("version")));
    assert_eq!((report.segments_stored, report.segments_verified), (SEGMENTS, SEGMENTS - 1), "3, 4 and 5 verified");
    assert_eq!(report.links_checked, SEGMENTS - 2, "the links 1→2 and 2→3 cannot be checked");
    assert_eq!(report.points.added, ROWS as u64 * SERIES.len() as u64, "segment 2's points are backed by nothing");
    assert!(report.gaps.is_empty(), "a damaged entry is not reported again as removed");
    assert!(report.summary_text().contains("the audit entry of segment 2 of sender 7 epoch 1 cannot be read"));
}

#[test]
fn an_audit_entry_under_a_malformed_key_is_named_by_its_key_and_the_walk_goes_on() {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    let mut key = segment_key(2);
    key.push(0); // 25 bytes: sorts between sequences 2 and 3
    {
        let db = raw_db(directory.path());
        db.put_cf(db.cf_handle("segments").unwrap(), &key, b"forged").unwrap();
    }
    let replica = Replica::open_read_only(directory.path()).unwrap();
    let scanned: Vec<bool> = replica.segments(SegmentKey::FIRST).map(|item| item.is_ok()).collect();
    assert_eq!(scanned, vec![true, true, false, true, true, true], "the scan yields the damaged entry and goes on");
    drop(replica);
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert_eq!(kinds(&report), vec!["audit_entry_unreadable"], "{}", report.summary_text());
    assert!(matches!(&report.findings.listed[0],
        Finding::AuditEntryUnreadable { entry: None, key_hex, .. } if *key_hex == encode_hex(&key)));
    assert_eq!(report.segments_verified, SEGMENTS);
    assert_eq!(report.links_checked, SEGMENTS, "the chain is intact around the foreign key");
}

#[test]
fn never_received_segments_are_gaps_not_findings() {
    let directory = tempfile::tempdir().unwrap();
    {
        let mut replica = Replica::open(directory.path()).unwrap();
        let mut chain = Chain::new();
        for sequence in 1..=SEGMENTS {
            let (segment, series) = chain.seal(&records_of(sequence), &key_a());
            if sequence != 2 {
                replica.apply(&segment, &series, T0).unwrap();
            }
        }
        announce_head(&mut replica, SEGMENTS + 1, T0);
    }
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert!(report.is_clean(), "{}", report.summary_text());
    let gaps: Vec<(u64, u64, GapKind)> =
        report.gaps.iter().map(|g| (g.first_sequence, g.last_sequence, g.kind)).collect();
    assert_eq!(gaps, vec![(2, 2, GapKind::NeverReceived), (SEGMENTS + 1, SEGMENTS + 1, GapKind::NeverReceived)]);
}

#[test]
fn a_sequence_range_checks_only_those_segments_and_their_time_span() {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    rewrite_chunk(directory.path(), "plant/a", 1, |columns| copy_rows(columns, None, |_, value| value + 1.0));
    let replica = Replica::open_read_only(directory.path()).unwrap();
    let options = VerifyOptions { sequences: Some(3..=4), ..VerifyOptions::default() };
    let report = verify_replica(&replica, &trust(&[&key_a()]), &options).unwrap();
    assert!(report.is_clean(), "segment 1's points lie outside the span: {}", report.summary_text());
    assert_eq!((report.segments_selected, report.links_checked), (2, 2), "links 2→3 and 3→4");
    assert_eq!(report.point_span, Some((time_of(3, 0), time_of(4, ROWS - 1))));
    let options = VerifyOptions { sequences: Some(1..=1), ..VerifyOptions::default() };
    assert_eq!(verify_replica(&replica, &trust(&[&key_a()]), &options).unwrap().points.changed, ROWS as u64);
}

/// Epoch 1 (three segments), then epoch 2 (two segments) announced by a beacon naming epoch 1's
/// end as sequence 3 with `claimed_end_hash`.
fn two_epochs(path: &Path, claimed_end_hash: Option<SegmentHash>) {
    let mut replica = Replica::open(path).unwrap();
    let mut first = Chain::in_epoch(1);
    let mut end_hash = GENESIS_HASH;
    for sequence in 1..=3 {
        let (segment, series) = first.seal(&records_of(sequence), &key_a());
        end_hash = segment.hash();
        replica.apply(&segment, &series, T0).unwrap();
    }
    let mut second = Chain::in_epoch(2);
    for sequence in 4..=5 {
        let (segment, series) = second.seal(&records_of(sequence), &key_a());
        replica.apply(&segment, &series, T0 + 10 * SECOND).unwrap();
    }
    let end = (1, 3, claimed_end_hash.unwrap_or(end_hash));
    announce(&mut replica, 2, 2, EpochReason::Operator, end, T0 + 20 * SECOND);
}

#[test]
fn each_epoch_is_listed_with_where_it_begins_why_and_where_the_one_before_ended() {
    let directory = tempfile::tempdir().unwrap();
    two_epochs(directory.path(), None);
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert!(report.is_clean(), "{}", report.summary_text());
    let epochs: Vec<_> = report
        .epochs
        .iter()
        .map(|e| (e.epoch, e.first_sequence, e.last_sequence, e.begins_at_genesis, e.announced_by_beacon, e.reason))
        .collect();
    assert_eq!(
        epochs,
        vec![(1, Some(1), Some(3), true, true, None), (2, Some(1), Some(2), true, true, Some("operator"))]
    );
    assert_eq!((report.epochs[0].ended_at_sequence, report.epochs[0].end_hash_verified), (Some(3), Some(true)));
    assert_eq!(report.epochs[1].first_seen_at_ns, Some(T0 + 10 * SECOND));
}

#[test]
fn a_beacon_naming_another_end_of_the_previous_epoch_is_a_forked_chain() {
    let directory = tempfile::tempdir().unwrap();
    two_epochs(directory.path(), Some([5u8; 32]));
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert_eq!(kinds(&report), vec!["epoch_end_mismatch"], "{}", report.summary_text());
    assert_eq!(report.epochs[0].end_hash_verified, Some(false));
}

#[test]
fn a_signed_beacon_naming_another_head_segment_is_a_forked_chain() {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    {
        // The sender's latest beacon signs a segment 4 that is not the one stored.
        let mut replica = Replica::open(directory.path()).unwrap();
        let (beacon, raw) = epoch_beacon(EPOCH, (4, [6u8; 32]), EpochReason::FirstStart, (0, 0, GENESIS_HASH));
        replica.record_beacon(&beacon, &raw, T0 + 1_002 * SECOND).unwrap();
    }
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert_eq!(kinds(&report), vec!["beacon_head_mismatch"], "{}", report.summary_text());
    assert!(matches!(&report.findings.listed[0],
        Finding::BeaconHeadMismatch { segment, beacon_hash, .. }
            if segment.sequence == 4 && *beacon_hash == encode_hex(&[6u8; 32])));
}

/// Three epochs of sender 7, each announced by its own beacons while it was current: epoch 1
/// (first start, sequences 1..=3), epoch 2 (spool lost, 1..=2), epoch 3 (operator, 1..=2).
fn three_announced_epochs(path: &Path) {
    let mut replica = Replica::open(path).unwrap();
    let reasons = [EpochReason::FirstStart, EpochReason::SpoolLost, EpochReason::Operator];
    let lengths = [3u64, 2, 2];
    let mut previous_end = (0, 0, GENESIS_HASH);
    let mut sequence_of_records = 1;
    for (index, (reason, length)) in reasons.into_iter().zip(lengths).enumerate() {
        let epoch = index as u64 + 1;
        let received_at_ns = T0 + epoch as i64 * 10_000 * SECOND;
        announce(&mut replica, epoch, 0, reason, previous_end, received_at_ns);
        let mut chain = Chain::in_epoch(epoch);
        let mut end_hash = GENESIS_HASH;
        for _ in 0..length {
            let (segment, series) = chain.seal(&records_of(sequence_of_records), &key_a());
            sequence_of_records += 1;
            end_hash = segment.hash();
            replica.apply(&segment, &series, received_at_ns).unwrap();
        }
        // A later beacon of the same epoch: the replica keeps the first one for the audit.
        announce(&mut replica, epoch, length, reason, previous_end, received_at_ns + SECOND);
        previous_end = (epoch, length, end_hash);
    }
}

#[test]
fn every_epoch_shows_its_first_sequence_and_the_signed_beacon_that_announced_it_with_its_reason() {
    let directory = tempfile::tempdir().unwrap();
    three_announced_epochs(directory.path());
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert!(report.is_clean(), "{}", report.summary_text());
    let epochs: Vec<_> = report
        .epochs
        .iter()
        .map(|e| (e.epoch, e.first_sequence, e.reason, e.ended_at_sequence, e.end_hash_verified))
        .collect();
    assert_eq!(
        epochs,
        vec![
            (1, Some(1), Some("first start"), Some(3), Some(true)),
            (2, Some(1), Some("spool lost"), Some(2), Some(true)),
            (3, Some(1), Some("operator"), None, None),
        ]
    );
    for epoch in &report.epochs {
        let announcement = epoch.announcement.as_ref().expect("each epoch's beacon is kept");
        assert_eq!(announcement.received_at_ns, T0 + epoch.epoch as i64 * 10_000 * SECOND, "the first one");
        assert_eq!(announcement.verified.as_ref().map(|signed| signed.key_id), Ok(key_a().key_id()));
    }
    let summary = report.summary_text();
    assert!(summary.contains("announced by a signed beacon: began because of spool lost"), "{summary}");
    let json = report.to_json();
    assert_eq!(json["epochs"][1]["reason"], serde_json::json!("spool lost"));
    assert_eq!(json["epochs"][1]["announcement"]["verified"], serde_json::json!(true));
}

/// The key of sender 7's kept beacon of `epoch`: `'E' ‖ sender ‖ epoch`.
fn epoch_beacon_key(epoch: u64) -> Vec<u8> {
    [&[b'E'][..], &SENDER.to_be_bytes(), &epoch.to_be_bytes()].concat()
}

#[test]
fn an_altered_kept_beacon_is_named_and_tells_no_reason() {
    let directory = tempfile::tempdir().unwrap();
    three_announced_epochs(directory.path());
    {
        let db = raw_db(directory.path());
        let meta = db.cf_handle("meta").unwrap();
        let mut entry = db.get_cf(meta, epoch_beacon_key(2)).unwrap().unwrap();
        // version (1) ‖ received at (8) ‖ beacon: the reason byte (offset 5), spool lost → operator
        entry[9 + 5] = EpochReason::Operator as u8;
        db.put_cf(meta, epoch_beacon_key(2), entry).unwrap();
    }
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert_eq!(kinds(&report), vec!["beacon_invalid"], "{}", report.summary_text());
    assert!(matches!(&report.findings.listed[0], Finding::BeaconInvalid { epoch: 2, .. }));
    assert_eq!(report.epochs[1].reason, None);
    assert!(report.epochs[1].announcement.as_ref().unwrap().verified.is_err());
    assert_eq!(report.epochs[0].ended_at_sequence, None, "an unverified beacon proves no end either");
}

#[test]
fn a_kept_beacon_under_a_key_revoked_since_is_shown_unverified_but_is_not_a_finding() {
    let directory = tempfile::tempdir().unwrap();
    three_announced_epochs(directory.path());
    // Key A valid for the segments (sealed up to T0 + 300 s) but not for the beacons (sent later).
    let mut revoked = TrustedKey::new(key_a().public_key());
    revoked.valid_until_ns = Some(T0 + 900 * SECOND);
    let report = audit(directory.path(), &TrustedKeys::new(vec![revoked]));
    assert!(report.is_clean(), "{}", report.summary_text());
    assert!(report.epochs.iter().all(|epoch| epoch.reason.is_none()));
    assert!(report.summary_text().contains("its kept beacon does NOT verify"));
}

// ---------------------------------------------------------------------------------------------
// key rotation and revocation

/// Segments 1..=3 signed by key A, 4..=6 by key B, in one chain.
fn rotated_segments() -> Vec<(SealedSegment, Vec<SeriesColumns>)> {
    let mut chain = Chain::new();
    (1..=6)
        .map(|sequence| {
            let key = if sequence <= 3 { key_a() } else { key_b() };
            chain.seal(&records_of(sequence), &key)
        })
        .collect()
}

/// A retired at the rotation (sealed-at of segment 4 minus a bit), B valid from then on.
fn rotation_trust(a_valid_until_ns: i64) -> TrustedKeys {
    let mut a = TrustedKey::new(key_a().public_key());
    a.valid_until_ns = Some(a_valid_until_ns);
    let mut b = TrustedKey::new(key_b().public_key());
    b.valid_from_ns = Some(T0 + 350 * SECOND);
    TrustedKeys::new(vec![a, b])
}

#[test]
fn segments_under_key_a_then_key_b_are_accepted_and_verify_clean() {
    let trusted = rotation_trust(T0 + 350 * SECOND);
    let directory = tempfile::tempdir().unwrap();
    {
        let mut replica = Replica::open(directory.path()).unwrap();
        for (segment, _) in rotated_segments() {
            let (opened, series) = seal::open_records(&segment.to_bytes(), &trusted).expect("both keys are trusted");
            replica.apply(&opened, &series, T0).unwrap();
        }
    }
    let report = audit(directory.path(), &trusted);
    assert!(report.is_clean(), "{}", report.summary_text());
    let usage: Vec<(KeyId, u64)> = report.keys_used.iter().map(|usage| (usage.key_id, usage.segments)).collect();
    let mut expected = vec![(key_a().key_id(), 3), (key_b().key_id(), 3)];
    expected.sort();
    assert_eq!(usage, expected);
    assert_eq!(report.links_checked, 6, "the chain continues across the key change");
}

#[test]
fn a_revoked_key_has_its_later_segments_refused_and_flagged() {
    // Key A revoked at segment 3's sealing time minus one second.
    let revoked = rotation_trust(T0 + 299 * SECOND);
    let segments = rotated_segments();
    let refused = seal::open(&segments[2].0.to_bytes(), &revoked).unwrap_err();
    assert!(matches!(refused, OpenError::KeyNotValidAt { .. }), "{refused}");
    assert!(seal::open(&segments[1].0.to_bytes(), &revoked).is_ok(), "earlier segments stay valid");

    // A replica that applied segment 3 before the revocation was configured is flagged.
    let directory = tempfile::tempdir().unwrap();
    {
        let mut replica = Replica::open(directory.path()).unwrap();
        for (segment, series) in &segments {
            replica.apply(segment, series, T0).unwrap();
        }
    }
    let report = audit(directory.path(), &revoked);
    assert_eq!(kinds(&report), vec!["point_added", "segment_invalid"], "{}", report.summary_text());
    assert!(matches!(&report.findings.listed[0],
        Finding::SegmentInvalid { segment, check: "key_not_valid", .. } if segment.sequence == 3));
    assert_eq!(report.points.added, ROWS as u64 * SERIES.len() as u64);
}

// ---------------------------------------------------------------------------------------------
// proofs

/// A replica where `plant/d` appears only in segments 1 and 5 (5 corrects one of 1's values), so
/// a proof of it needs the chain headers of 2, 3 and 4.
fn build_proof_replica(path: &Path) {
    let mut replica = Replica::open(path).unwrap();
    let mut chain = Chain::new();
    for sequence in 1..=SEGMENTS {
        let mut records = records_of(sequence);
        if sequence == 1 {
            records.extend((0..4).map(|i| record("plant/d", T0 + i * SECOND, 10.0 + i as f64)));
        }
        if sequence == SEGMENTS {
            records.push(record("plant/d", T0 + 2 * SECOND, 99.5));
            records.push(record("plant/d", T0 + 9 * SECOND, 19.0));
        }
        let (segment, series) = chain.seal(&records, &key_a());
        replica.apply(&segment, &series, T0).unwrap();
    }
}

fn exported(path: &Path, name: &str, from_ns: i64, to_ns: i64) -> Vec<u8> {
    let replica = Replica::open_read_only(path).unwrap();
    let info = replica.series_info(replica.series_id(&SeriesKey::new(name)).unwrap()).unwrap();
    export_proof(&replica, &trust(&[&key_a()]), &info, from_ns, to_ns).unwrap().to_bytes()
}

#[test]
fn a_proof_checks_with_the_public_key_alone_and_shows_the_last_write() {
    let directory = tempfile::tempdir().unwrap();
    build_proof_replica(directory.path());
    let bytes = exported(directory.path(), "plant/d", T0, T0 + 10 * SECOND);
    drop(directory);
    let checked = check_proof(&bytes, &TrustedKeys::single(key_a().public_key())).expect("the proof verifies");
    let points: Vec<(i64, Value)> = checked.points.iter().map(|p| (p.timestamp_ns, p.value.clone())).collect();
    assert_eq!(
        points,
        vec![
            (T0, Value::F64(10.0)),
            (T0 + SECOND, Value::F64(11.0)),
            (T0 + 2 * SECOND, Value::F64(99.5)),
            (T0 + 3 * SECOND, Value::F64(13.0)),
            (T0 + 9 * SECOND, Value::F64(19.0)),
        ]
    );
    let sequences: Vec<u64> = checked.segments.iter().map(|s| s.position.sequence).collect();
    assert_eq!(sequences, vec![1, SEGMENTS]);
    assert_eq!(checked.chain_runs.len(), 1);
    assert_eq!((checked.chain_runs[0].first_sequence, checked.chain_runs[0].last_sequence), (1, SEGMENTS));
    assert!(describe(&checked).contains("proof VERIFIED: 5 points of plant/d"));

    let stranger = SenderKey::from_seed([9u8; 32]);
    assert!(check_proof(&bytes, &TrustedKeys::single(stranger.public_key())).is_err());
}

#[test]
fn a_proof_fails_after_any_single_byte_is_changed() {
    let directory = tempfile::tempdir().unwrap();
    build_proof_replica(directory.path());
    let bytes = exported(directory.path(), "plant/d", T0, T0 + 10 * SECOND);
    let keys = TrustedKeys::single(key_a().public_key());
    check_proof(&bytes, &keys).expect("the untouched proof verifies");
    assert!(bytes.len() > 1_000, "the proof holds two segments and three chain headers");
    let mut accepted = Vec::new();
    for position in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut changed = bytes.clone();
            changed[position] ^= mask;
            if check_proof(&changed, &keys).is_ok() {
                accepted.push((position, mask));
            }
        }
    }
    // Every other value, at every 32nd position.
    for position in (0..bytes.len()).step_by(32) {
        for value in 0..=255u8 {
            let mut changed = bytes.clone();
            if changed[position] != value {
                changed[position] = value;
                if check_proof(&changed, &keys).is_ok() {
                    accepted.push((position, value));
                }
            }
        }
    }
    assert!(accepted.is_empty(), "{} changed files were accepted: {accepted:?}", accepted.len());
    // Truncations and an extra byte are refused too.
    for length in 0..bytes.len() {
        assert!(check_proof(&bytes[..length], &keys).is_err(), "truncated to {length}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(check_proof(&longer, &keys).is_err());
}

#[test]
fn a_proof_of_one_instant_holds_just_that_point() {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    let bytes = exported(directory.path(), "plant/b", time_of(4, 2), time_of(4, 2));
    let checked = check_proof(&bytes, &TrustedKeys::single(key_a().public_key())).unwrap();
    assert_eq!(checked.points.len(), 1);
    assert_eq!(checked.points[0].value, Value::F64((3 * ROWS + 2) as f64 + 1_000.25));
    assert_eq!(checked.segments.len(), 1);
}

#[test]
fn a_proof_is_refused_for_points_the_signed_segments_do_not_back() {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    rewrite_chunk(directory.path(), "plant/a", 2, |columns| copy_rows(columns, None, |_, value| value * 2.0));
    let replica = Replica::open_read_only(directory.path()).unwrap();
    let info = replica.series_info(replica.series_id(&SeriesKey::new("plant/a")).unwrap()).unwrap();
    let error = export_proof(&replica, &trust(&[&key_a()]), &info, time_of(2, 0), time_of(2, 3)).unwrap_err();
    assert!(error.to_string().contains("audit verify"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// the commands

/// A receiver config beside the replica, trusting key A.
fn write_config(directory: &Path, replica: &Path) -> std::path::PathBuf {
    std::fs::write(directory.join("signing.pub"), encode_hex(key_a().public_key().as_bytes()) + "\n").unwrap();
    let config = format!(
        "replica_dir = {:?}\n[link]\nlisten = \"127.0.0.1:7400\"\n[keys]\nlink_key = \"link.key\"\n\
         [[keys.trusted]]\npublic_key = \"signing.pub\"\n",
        replica.display().to_string()
    );
    let path = directory.join("receiver.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn the_commands_verify_export_and_check_and_fail_on_tampering() {
    let directory = tempfile::tempdir().unwrap();
    let replica = directory.path().join("replica");
    build_replica(&replica);
    let config = write_config(directory.path(), &replica);
    let report = directory.path().join("report.json");
    let verify = |json: &Path| {
        diode_receiver::audit::cli::run(AuditCommand::Verify(VerifyArgs {
            config: config.clone(),
            from_seq: None,
            to_seq: None,
            json: Some(json.to_owned()),
            memory_budget_points: 1_000_000,
        }))
    };
    verify(&report).expect("a clean replica passes");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["clean"], serde_json::json!(true));
    assert_eq!(json["epochs"][0]["announced_by_beacon"], serde_json::json!(true));

    let proof = directory.path().join("plant-a.proof");
    diode_receiver::audit::cli::run(AuditCommand::Proof(ProofArgs {
        config: config.clone(),
        series: "plant/a".to_owned(),
        at: None,
        from: Some(T0.to_string()),
        to: Some((T0 + 30 * SECOND).to_string()),
        out: proof.clone(),
    }))
    .expect("proof exported");
    let check = |pubkey: &Path| {
        diode_receiver::audit::cli::run(AuditCommand::CheckProof(CheckProofArgs {
            file: proof.clone(),
            pubkey: vec![pubkey.to_owned()],
        }))
    };
    check(&directory.path().join("signing.pub")).expect("the proof checks");
    let other = directory.path().join("other.pub");
    std::fs::write(&other, encode_hex(key_b().public_key().as_bytes())).unwrap();
    assert!(check(&other).is_err(), "another key does not check it");

    rewrite_chunk(&replica, "plant/c", 5, |columns| copy_rows(columns, Some(0), |_, value| value));
    let error = verify(&report).unwrap_err().to_string();
    assert!(error.contains("1 point_deleted"), "{error}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["findings"][0]["kind"], serde_json::json!("point_deleted"));
    assert_eq!(json["findings"][0]["series"], serde_json::json!("plant/c"));
    assert_eq!(json["findings"][0]["timestamp_ns"], serde_json::json!(time_of(5, 0)));
}

#[test]
fn a_merged_hour_that_does_not_decode_is_named_by_series_and_the_rest_is_verified() {
    let directory = tempfile::tempdir().unwrap();
    build_replica(directory.path());
    merge_hours(directory.path());
    let id = series_id(directory.path(), "plant/b");
    {
        let db = raw_db(directory.path());
        let points = db.cf_handle("points").unwrap();
        let prefix = point_key(id, T0, 1)[..12].to_vec();
        let stored = db.get_cf(points, &prefix).unwrap().unwrap();
        db.put_cf(points, &prefix, &stored[..stored.len() - 5]).unwrap();
    }
    let report = audit(directory.path(), &trust(&[&key_a()]));
    assert_eq!(
        kinds(&report),
        vec!["points_unreadable"],
        "each chunk named, all accounted for: {}",
        report.summary_text()
    );
    assert_eq!(report.points.chunks_checked, SEGMENTS * SERIES.len() as u64);
    assert!(
        report.findings.listed.iter().all(|finding| finding.describe().contains("plant/b")),
        "{}",
        report.summary_text()
    );
    assert_eq!(report.points.matched, 2 * SEGMENTS * ROWS as u64, "plant/a and plant/c are verified");
}

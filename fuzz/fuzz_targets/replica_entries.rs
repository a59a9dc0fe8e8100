//! The replica's stored keys and values (`replica/src/layout.rs`: merged buckets, series keys, the
//! audit, apply and statistics logs, sink cursors, streams and beacons) on arbitrary bytes. The
//! audit reads a replica it does not trust, so every decoder must refuse damage, never panic, and
//! whatever decodes must encode to bytes that decode to the same thing. The layout module is
//! compiled in from the replica's source, so this crate stays free of RocksDB.
#![no_main]

#[path = "../../replica/src/layout.rs"]
#[allow(dead_code, unreachable_pub, unused_imports)]
mod layout;

use diode_common::codec::decode_columns;
use diode_common::record::SeriesKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    merged_bucket(bytes);
    if let Ok(key) = layout::decode_series_key(bytes) {
        let mut again = Vec::new();
        layout::encode_series_key(&key, &mut again);
        assert_eq!(layout::decode_series_key(&again), Ok(key));
    }
    if let Ok(segment) = layout::decode_apply_log_entry(bytes) {
        assert_eq!(layout::decode_apply_log_entry(&layout::encode_apply_log_entry(segment)), Ok(segment));
    }
    if let Ok((apply_number, updated_at_ns)) = layout::decode_sink_cursor(bytes) {
        let again = layout::encode_sink_cursor(apply_number, updated_at_ns);
        assert_eq!(layout::decode_sink_cursor(&again), Ok((apply_number, updated_at_ns)));
    }
    if let Ok(statistics) = layout::decode_statistics_delta(bytes) {
        let again = layout::encode_statistics_delta(&statistics);
        assert_eq!(layout::decode_statistics_delta(&again), Ok(statistics));
    }
    if let Ok((received_at_ns, raw)) = layout::decode_epoch_beacon_entry(bytes) {
        let again = layout::encode_epoch_beacon_entry(received_at_ns, raw);
        assert_eq!(layout::decode_epoch_beacon_entry(&again), Ok((received_at_ns, raw)));
    }
    if let Ok((first_seen_at_ns, flags, tracker)) = layout::decode_stream_entry(bytes) {
        let again = layout::encode_stream_entry(first_seen_at_ns, flags, tracker);
        assert_eq!(layout::decode_stream_entry(&again), Ok((first_seen_at_ns, flags, tracker)));
    }
    if let Ok((summary, raw)) = layout::decode_beacon_entry(bytes) {
        let again = layout::encode_beacon_entry(&summary, raw);
        assert_eq!(layout::decode_beacon_entry(&again), Ok((summary, raw)));
    }
    let _ = layout::decode_audit_entry(bytes);
    if let Some(key) = layout::PointKey::from_bytes(bytes) {
        assert_eq!(&key.to_bytes()[..], bytes);
    }
    let _ = layout::parse_merged_key(bytes);
    let _ = layout::parse_pending_merge_key(bytes);
    let _ = layout::parse_sink_cursor_key(bytes);
    let _ = layout::parse_statistics_delta_key(bytes);
    let _ = layout::parse_stream_key(bytes);
    let _ = layout::parse_beacon_key(bytes);
});

/// A merged bucket: its table, read alone and with the rows, and the rows as the codec reads them.
fn merged_bucket(bytes: &[u8]) {
    let split = layout::split_merged(bytes);
    let Ok((parts, rows)) = layout::decode_merged_table(bytes) else { return };
    let (count, row_count, _, split_rows) = split.expect("a table that decodes also splits");
    assert_eq!(count, parts.len());
    assert_eq!(row_count, parts.iter().map(|part| u64::from(part.rows)).sum::<u64>());
    assert_eq!(split_rows, rows);
    let mut again = Vec::new();
    layout::encode_merged_table(&parts, &mut again);
    again.extend_from_slice(rows);
    let (parts_again, rows_again) = layout::decode_merged_table(&again).expect("an encoded table decodes");
    assert_eq!((parts_again, rows_again), (parts, rows));
    let _ = decode_columns(rows, SeriesKey::new("fuzz"));
}

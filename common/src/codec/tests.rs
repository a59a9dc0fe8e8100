//! Specifications of the payload codec: round-trips, exactness, totality and size.

use proptest::prelude::*;

use super::*;
use crate::plant::{PlantConfig, PlantSimulator};
use crate::record::{Quality, Record, SeriesKey, Value};

const ZSTD_LEVEL: i32 = 3;
const MS: i64 = 1_000_000;
const T0: i64 = 1_700_000_000_000 * MS;

fn record(series: &SeriesKey, timestamp_ns: i64, value: Value) -> Record {
    Record { series: series.clone(), timestamp_ns, value, quality: Quality::GOOD }
}

fn round_trip(records: &[Record]) -> Vec<SeriesColumns> {
    let grouped = group_records(records);
    let payload = encode_payload(&grouped, ZSTD_LEVEL);
    let decoded = decode_payload(&payload).expect("a payload the encoder wrote decodes");
    assert_same_columns(&decoded, &grouped);
    decoded
}

fn assert_same_columns(actual: &[SeriesColumns], expected: &[SeriesColumns]) {
    assert_eq!(actual.len(), expected.len(), "number of series");
    for (a, e) in actual.iter().zip(expected) {
        assert!(a.bit_eq(e), "decoded\n{a:?}\nexpected\n{e:?}");
    }
}

/// The decoded body of a payload, re-wrapped uncompressed so tests can reach the inner parser.
fn decoded_body(payload: &[u8]) -> Vec<u8> {
    zstd::bulk::decompress(&payload[PAYLOAD_HEADER_BYTES..], MAX_PAYLOAD_DECODED_BYTES).unwrap()
}

fn uncompressed_payload(body: &[u8]) -> Vec<u8> {
    let mut payload = PAYLOAD_MAGIC.to_vec();
    payload.push(PAYLOAD_VERSION);
    payload.push(COMPRESSION_NONE);
    payload.extend_from_slice(&(body.len() as u32).to_le_bytes());
    payload.extend_from_slice(body);
    payload
}

/// A small payload touching every encoding: all value kinds, mixed, bad qualities, tags.
fn varied_records() -> Vec<Record> {
    let temp = SeriesKey::with_tags("plant1/boiler3/steam_temp", vec![("unit".into(), "degC".into())]);
    let counter = SeriesKey::new("plant1/boiler3/fuel_total");
    let pump = SeriesKey::new("plant1/pump2/running");
    let state = SeriesKey::new("plant1/pump2/state");
    let odd = SeriesKey::new("plant1/pump2/odd");
    let noisy = SeriesKey::new("plant1/lab/raw");
    let mut records = Vec::new();
    for i in 0..40i64 {
        let t = T0 + i * 100 * MS + (i % 3) * MS;
        records.push(record(&temp, t, Value::F64((4_800 + (i * 7) % 11) as f64 / 10.0)));
        records.push(record(&counter, t, Value::I64(1_000_000 + 37 * i)));
        records.push(record(&pump, t, Value::Bool(i > 25)));
        records.push(record(&state, t, Value::String(if i < 30 { "RUNNING" } else { "STOPPING" }.into())));
        records.push(record(&noisy, t, Value::F64((i as f64).sin() * 1e3)));
        let value = match i % 4 {
            0 => Value::F64(-0.0),
            1 => Value::I64(-i),
            2 => Value::Bool(true),
            _ => Value::String("x".repeat(i as usize)),
        };
        records.push(Record { quality: Quality(i as u32 * 0x0101_0101), ..record(&odd, t - 5 * i * MS, value) });
    }
    records[7].quality = Quality::BAD;
    records
}

#[test]
fn an_empty_payload_round_trips() {
    let payload = encode_payload(&[], ZSTD_LEVEL);
    assert!(decode_payload(&payload).unwrap().is_empty());
}

#[test]
fn every_value_kind_and_mixed_series_round_trip() {
    let decoded = round_trip(&varied_records());
    assert_eq!(decoded.len(), 6);
    assert!(matches!(decoded[0].values, Values::F64(_)));
    assert!(matches!(decoded[1].values, Values::I64(_)));
    assert!(matches!(decoded[2].values, Values::Bool(_)));
    assert!(matches!(decoded[3].values, Values::String(_)));
    assert!(matches!(decoded[5].values, Values::Mixed(_)));
}

#[test]
fn late_and_duplicate_timestamps_round_trip_in_input_order() {
    let key = SeriesKey::new("plant1/area1/tank1/level");
    let timestamps = [T0 + 5 * MS, T0 + 5 * MS, T0, T0 + 9 * MS, T0 - 3_600_000 * MS, T0 + 9 * MS, T0 + 1];
    let records: Vec<Record> =
        timestamps.iter().enumerate().map(|(i, &t)| record(&key, t, Value::F64(i as f64 / 100.0))).collect();
    let decoded = round_trip(&records);
    assert_eq!(decoded[0].timestamps_ns, timestamps);
}

#[test]
fn series_are_grouped_in_order_of_first_appearance() {
    let a = SeriesKey::new("z/first");
    let b = SeriesKey::new("a/second");
    let records = vec![record(&a, 3, Value::I64(1)), record(&b, 1, Value::I64(2)), record(&a, 2, Value::I64(3))];
    let grouped = group_records(&records);
    assert_eq!(grouped.iter().map(|c| &*c.key.name).collect::<Vec<_>>(), ["z/first", "a/second"]);
    assert_eq!(grouped[0].timestamps_ns, [3, 2]);
    assert_eq!(grouped[0].records().collect::<Vec<_>>(), vec![records[0].clone(), records[2].clone()]);
    assert_eq!(grouped[0].min_max_timestamp(), Some((2, 3)));
    round_trip(&records);
}

#[test]
fn series_of_one_name_with_different_tags_are_different_series() {
    let a = SeriesKey::with_tags("m", vec![("unit".into(), "C".into())]);
    let b = SeriesKey::with_tags("m", vec![("unit".into(), "F".into())]);
    let decoded = round_trip(&[record(&a, 1, Value::F64(1.5)), record(&b, 1, Value::F64(34.7))]);
    assert_eq!(decoded.len(), 2);
}

#[test]
fn the_same_series_twice_in_one_payload_comes_back_twice() {
    let key = SeriesKey::new("plant1/x");
    let chunk = group_records(&[record(&key, 1, Value::I64(1))]).remove(0);
    let series =
        vec![chunk.clone(), group_records(&[record(&SeriesKey::new("a"), 1, Value::Bool(false))]).remove(0), chunk];
    let decoded = decode_payload(&encode_payload(&series, ZSTD_LEVEL)).unwrap();
    assert_same_columns(&decoded, &series);
}

#[test]
fn special_floats_round_trip_bit_exactly() {
    let key = SeriesKey::new("f");
    let specials = [
        0.0,
        -0.0,
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7FF0_0000_0000_0001), // signalling NaN with a payload
        f64::from_bits(0xFFF8_DEAD_BEEF_0001),
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE,
        f64::from_bits(1), // smallest subnormal
        f64::MAX,
        f64::MIN,
        0.1,
        1e300,
    ];
    let records: Vec<Record> = specials.iter().map(|&v| record(&key, 0, Value::F64(v))).collect();
    round_trip(&records);
    for &v in &specials {
        round_trip(&[record(&key, 0, Value::F64(v)), record(&key, 1, Value::F64(v))]);
    }
}

#[test]
fn negative_zero_is_not_decimal_coded() {
    assert_eq!(columns::decimal_digits_for_tests(&[1.5, -0.0]), None);
    assert_eq!(columns::decimal_digits_for_tests(&[1.5, 0.0]), Some(1));
    assert_eq!(columns::decimal_digits_for_tests(&[21.37, 1e-9, -4.0]), Some(9));
    assert_eq!(columns::decimal_digits_for_tests(&[0.1 + 0.2]), None);
    assert_eq!(columns::decimal_digits_for_tests(&[f64::NAN]), None);
    assert_eq!(columns::decimal_digits_for_tests(&[f64::INFINITY]), None);
}

#[test]
fn quantized_readings_take_about_a_byte_each_before_zstd() {
    let key = SeriesKey::new("t");
    let records: Vec<Record> = (0..1_000)
        .map(|i| record(&key, T0 + i * 1_000 * MS, Value::F64((2_137 + (i * 7919) % 13 - 6) as f64 / 100.0)))
        .collect();
    let mut out = Vec::new();
    encode_columns(&group_records(&records)[0], &mut out);
    assert!(out.len() < 2 * 1_000 + 64, "{} bytes", out.len());
}

#[test]
fn regular_timestamps_and_constant_steps_cost_their_head_alone() {
    // An hour of a 1 Hz scan with no jitter, a constant reading and a counter that steps by 3:
    // every integer column is a stride, so the chunk is a few dozen bytes, not a byte per value.
    let (steady, counter) = (SeriesKey::new("steady"), SeriesKey::new("counter"));
    let mut records = Vec::new();
    for i in 0..3_600 {
        records.push(record(&steady, T0 + i * 1_000 * MS, Value::F64(21.5)));
        records.push(record(&counter, T0 + i * 1_000 * MS, Value::I64(1_000 + 3 * i)));
    }
    for columns in group_records(&records) {
        let mut bytes = Vec::new();
        encode_columns(&columns, &mut bytes);
        assert!(bytes.len() < 64, "{}: {} bytes", columns.key, bytes.len());
        assert!(decode_columns(&bytes, columns.key.clone()).unwrap().bit_eq(&columns));
    }
    round_trip(&records);
    // A stride that wraps past i64::MAX, and one of a single step.
    let key = SeriesKey::new("w");
    let wrapping: Vec<Record> = (0..5).map(|i| record(&key, i, Value::I64(i64::MAX - 2 + i))).collect();
    round_trip(&wrapping);
    round_trip(&[record(&key, i64::MIN, Value::I64(i64::MIN)), record(&key, i64::MAX, Value::I64(i64::MAX))]);
}

#[test]
fn a_positive_stride_that_does_not_wrap_is_known_ascending() {
    let key = SeriesKey::new("t");
    let ordered = |timestamps: &[i64]| {
        let records: Vec<Record> = timestamps.iter().map(|&t| record(&key, t, Value::Bool(true))).collect();
        let mut bytes = Vec::new();
        encode_columns(&group_records(&records)[0], &mut bytes);
        let (columns, ascending) = decode_columns_ordered(&bytes, key.clone()).unwrap();
        assert_eq!(columns.timestamps_ns, timestamps);
        assert!(decode_columns(&bytes, key.clone()).unwrap().bit_eq(&columns));
        ascending
    };
    let second = 1_000 * MS;
    assert!(ordered(&(0..3_600).map(|i| T0 + i * second).collect::<Vec<_>>()));
    assert!(ordered(&[T0]));
    assert!(ordered(&[i64::MAX - 2, i64::MAX - 1, i64::MAX]));
    assert!(!ordered(&[T0, T0 + second, T0 + 3 * second]), "not a stride: not looked at");
    assert!(!ordered(&[T0 + 2 * second, T0 + second, T0]), "descending");
    assert!(!ordered(&[T0, T0, T0]), "equal");
    assert!(!ordered(&[i64::MAX - 1, i64::MAX, i64::MIN]), "wraps");
}

#[test]
fn payloads_of_the_first_version_are_still_read() {
    // Version 1 is version 2 without the stride mode: a payload an earlier build wrote decodes.
    let mut records = varied_records();
    for record in &mut records {
        record.timestamp_ns += record.timestamp_ns % 7;
    }
    let grouped = group_records(&records);
    let mut payload = encode_payload(&grouped, ZSTD_LEVEL);
    payload[4] = 1;
    assert_same_columns(&decode_payload(&payload).unwrap(), &grouped);
    for version in [0, PAYLOAD_VERSION + 1] {
        payload[4] = version;
        let error = decode_payload(&payload).unwrap_err().to_string();
        assert!(error.contains("reads versions 1 to 2"), "{error}");
    }
}

#[test]
fn extreme_timestamps_round_trip() {
    let key = SeriesKey::new("t");
    let timestamps = [i64::MIN, i64::MAX, 0, -1, i64::MIN + 1, 1, i64::MAX, i64::MIN];
    let records: Vec<Record> = timestamps.iter().map(|&t| record(&key, t, Value::Bool(true))).collect();
    round_trip(&records);
    round_trip(&[record(&key, i64::MIN, Value::Bool(true))]);
    round_trip(&[record(&key, i64::MAX, Value::Bool(true)), record(&SeriesKey::new("u"), i64::MIN, Value::I64(0))]);
}

#[test]
fn extreme_integers_round_trip() {
    let key = SeriesKey::new("i");
    let values = [i64::MIN, i64::MAX, 0, i64::MIN, -1, i64::MAX, i64::MAX, 1];
    let records: Vec<Record> = values.iter().map(|&v| record(&key, 0, Value::I64(v))).collect();
    round_trip(&records);
}

#[test]
fn every_quality_code_round_trips() {
    let key = SeriesKey::new("q");
    let codes = [0, u32::MAX, 0x4000_0000, 0x8000_0000, 0x808C_0000, 0xC000_0000, 1, 0x0000_FFFF];
    let records: Vec<Record> = codes
        .iter()
        .flat_map(|&code| [code, code])
        .map(|code| Record { quality: Quality(code), ..record(&key, 0, Value::I64(1)) })
        .collect();
    round_trip(&records);
}

#[test]
fn strings_keep_unicode_empty_and_long_values() {
    let key = SeriesKey::new("s");
    let values = ["", "RUNNING", "Störung: Überdruck ⚠", "", &"x".repeat(70_000), "RUNNING"];
    let records: Vec<Record> = values.iter().map(|v| record(&key, 0, Value::String((*v).into()))).collect();
    round_trip(&records);
}

#[test]
fn contexts_kept_per_thread_compress_and_decompress_as_fresh_ones_do() {
    let mut plant = PlantSimulator::new(PlantConfig { seed: 3, series_count: 300, base_rate_hz: 2.0, start_ns: 0 });
    let mut records = Vec::new();
    for (step, level) in [(1, 1), (2, 3), (30, 3), (3, 1), (40, 19), (4, 3)] {
        records.clear();
        plant.generate_until(step * 1_000_000_000, &mut records);
        let decoded = encode_decoded_payload(&group_records(&records), Effort::Smallest);
        let fresh = zstd::bulk::compress(&decoded, level).unwrap();
        assert_eq!(zstd_compress(&decoded, level).unwrap(), fresh, "level {level}, {} bytes", decoded.len());
        assert_eq!(zstd_decompress(&fresh, decoded.len()).unwrap(), decoded);
        assert!(zstd_decompress(&fresh, decoded.len() - 1).is_err(), "never more than the capacity");
    }
}

#[test]
fn columns_round_trip_alone_as_the_replica_stores_them() {
    for columns in group_records(&varied_records()) {
        let mut bytes = Vec::new();
        encode_columns(&columns, &mut bytes);
        let decoded = decode_columns(&bytes, columns.key.clone()).unwrap();
        assert!(decoded.bit_eq(&columns));
    }
}

#[test]
fn empty_columns_of_every_kind_round_trip() {
    let key = SeriesKey::new("e");
    let kinds =
        [Values::F64(vec![]), Values::I64(vec![]), Values::Bool(vec![]), Values::String(vec![]), Values::Mixed(vec![])];
    let series: Vec<SeriesColumns> = kinds
        .into_iter()
        .map(|values| SeriesColumns { key: key.clone(), timestamps_ns: vec![], values, qualities: vec![] })
        .collect();
    assert_same_columns(&decode_payload(&encode_payload(&series, ZSTD_LEVEL)).unwrap(), &series);
}

#[test]
fn a_mixed_column_of_one_kind_stays_mixed() {
    let columns = SeriesColumns {
        key: SeriesKey::new("m"),
        timestamps_ns: vec![1, 2],
        values: Values::Mixed(vec![Value::F64(1.0), Value::F64(2.0)]),
        qualities: vec![Quality::GOOD; 2],
    };
    let decoded = decode_payload(&encode_payload(std::slice::from_ref(&columns), ZSTD_LEVEL)).unwrap();
    assert!(decoded[0].bit_eq(&columns));
}

#[test]
#[should_panic(expected = "equal lengths")]
fn columns_of_different_lengths_are_a_caller_bug() {
    let columns = SeriesColumns {
        key: SeriesKey::new("m"),
        timestamps_ns: vec![1, 2],
        values: Values::I64(vec![1]),
        qualities: vec![Quality::GOOD; 2],
    };
    encode_payload(&[columns], ZSTD_LEVEL);
}

#[test]
fn every_truncation_of_a_payload_is_an_error() {
    let payload = encode_payload(&group_records(&varied_records()), ZSTD_LEVEL);
    for length in 0..payload.len() {
        assert!(decode_payload(&payload[..length]).is_err(), "truncated to {length} bytes");
    }
    let body = decoded_body(&payload);
    assert!(decode_payload(&uncompressed_payload(&body)).is_ok());
    for length in 0..body.len() {
        assert!(decode_payload(&uncompressed_payload(&body[..length])).is_err(), "body truncated to {length} bytes");
    }
}

#[test]
fn every_truncation_of_a_column_chunk_is_an_error() {
    for columns in group_records(&varied_records()) {
        let mut bytes = Vec::new();
        encode_columns(&columns, &mut bytes);
        for length in 0..bytes.len() {
            assert!(decode_columns(&bytes[..length], columns.key.clone()).is_err());
        }
    }
}

#[test]
fn flipped_bits_never_panic() {
    let payload = encode_payload(&group_records(&varied_records()), ZSTD_LEVEL);
    let body = decoded_body(&payload);
    for (bytes, wrap) in [(payload.clone(), false), (body, true)] {
        for bit in 0..bytes.len() * 8 {
            let mut corrupted = bytes.clone();
            corrupted[bit / 8] ^= 1 << (bit % 8);
            let input = if wrap { uncompressed_payload(&corrupted) } else { corrupted };
            if let Ok(decoded) = decode_payload(&input) {
                // Whatever decodes must re-encode to the same columns.
                let again = decode_payload(&encode_payload(&decoded, ZSTD_LEVEL)).unwrap();
                assert_same_columns(&again, &decoded);
            }
        }
    }
}

#[test]
fn header_errors_say_what_is_wrong() {
    let payload = encode_payload(&group_records(&varied_records()), ZSTD_LEVEL);
    let message = |bytes: &[u8]| decode_payload(bytes).unwrap_err().to_string();

    assert!(message(&payload[..4]).contains("shorter than its 10-byte header"));
    let mut wrong = payload.clone();
    wrong[0] = b'X';
    assert!(message(&wrong).contains("not a diode segment payload"));
    let mut wrong = payload.clone();
    wrong[4] = 9;
    assert!(message(&wrong).contains("version 9 is not supported"));
    let mut wrong = payload.clone();
    wrong[5] = 7;
    assert!(message(&wrong).contains("compression code 7"));
    let mut wrong = payload.clone();
    wrong[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(message(&wrong).contains("the limit is 67108864"));
}

#[test]
fn errors_inside_a_block_name_the_block_and_series() {
    let records = vec![record(&SeriesKey::new("plant1/a"), T0, Value::I64(5))];
    let mut body = decoded_body(&encode_payload(&group_records(&records), ZSTD_LEVEL));
    // The last field streams, each a length and its bytes: value kinds [integer], encodings
    // [delta, delta], timestamp heads [offset 0], timestamps [], value heads [zigzag 5 = 10],
    // six empty streams, qualities [good, the rest].
    let tail = [1, 1, 2, 0, 0, 1, 0, 0, 1, 10, 0, 0, 0, 0, 0, 0, 2, 0, 0];
    assert!(body.ends_with(&tail), "{body:?}");
    let kind_position = body.len() - tail.len() + 1;
    body[kind_position] = 9;
    let message = decode_payload(&uncompressed_payload(&body)).unwrap_err().to_string();
    assert!(message.starts_with("column block 0 (series plant1/a): "), "{message}");
    assert!(message.contains("unknown encoding tag 9"), "{message}");
}

#[test]
fn invalid_series_names_are_refused() {
    let records = vec![record(&SeriesKey::new("bad\u{7}name"), 0, Value::I64(5))];
    let payload = encode_payload(&group_records(&records), ZSTD_LEVEL);
    let message = decode_payload(&payload).unwrap_err().to_string();
    assert!(message.contains("series 0 of the payload's series table is invalid"), "{message}");
}

#[test]
fn a_string_repeated_past_the_limit_is_refused_not_materialised() {
    let long = "x".repeat(64 * 1024);
    let count = MAX_DECODED_TEXT_BYTES / long.len() + 1;
    let columns = SeriesColumns {
        key: SeriesKey::new("alarm"),
        timestamps_ns: vec![0; count],
        values: Values::String(vec![long; count]),
        qualities: vec![Quality::GOOD; count],
    };
    assert!(matches!(check_payload_limits(std::slice::from_ref(&columns)), Err(CodecError::TooManyTextBytes)));
    let payload = encode_payload(&[columns], ZSTD_LEVEL);
    assert!(payload.len() < 10_000, "{} bytes", payload.len());
    let error = decode_payload(&payload).unwrap_err();
    assert!(error.to_string().contains("string values, series names and tags add up to more than"), "{error}");
}

#[test]
fn more_records_than_the_limit_are_refused() {
    let count = MAX_RECORDS_PER_PAYLOAD / 2 + 1;
    let columns = SeriesColumns {
        key: SeriesKey::new("b"),
        timestamps_ns: vec![0; count],
        values: Values::Bool(vec![true; count]),
        qualities: vec![Quality::GOOD; count],
    };
    let series = vec![columns.clone(), columns];
    assert!(matches!(check_payload_limits(&series), Err(CodecError::TooManyRecords)));
    let error = decode_payload(&encode_payload(&series, ZSTD_LEVEL)).unwrap_err();
    assert!(error.to_string().contains("more than 4000000 records"), "{error}");
}

/// A decoded payload body built by hand: one series named `name`, `blocks` empty float blocks of
/// it, and the first `block_count_claimed` in place of the real block count when given.
fn handmade_body(name: &str, blocks: usize, block_count_claimed: Option<u64>) -> Vec<u8> {
    let mut body = Vec::new();
    wire::put_varint(&mut body, 1); // series count
    wire::put_bytes(&mut body, &[0]); // name prefixes: shares nothing
    let mut entries = Vec::new();
    wire::put_bytes(&mut entries, name.as_bytes());
    entries.push(0); // no tags
    wire::put_bytes(&mut body, &entries);
    body.push(0); // base timestamp
    wire::put_varint(&mut body, block_count_claimed.unwrap_or(blocks as u64));
    // Id steps: block 0 is series 0, every later block series 0 again (step -1, zigzag 1).
    let mut steps = vec![1u8; blocks];
    if let Some(first) = steps.first_mut() {
        *first = 0;
    }
    wire::put_bytes(&mut body, &steps);
    for field in 0..15 {
        match field {
            0 | 3 => wire::put_bytes(&mut body, &vec![0u8; blocks]), // counts 0, kind float
            _ => body.push(0),
        }
    }
    body
}

#[test]
fn a_handmade_payload_of_empty_blocks_decodes() {
    let decoded = decode_payload(&uncompressed_payload(&handmade_body("plant1/x", 3, None))).unwrap();
    assert_eq!(decoded.len(), 3);
    assert!(decoded.iter().all(|columns| columns.is_empty() && &*columns.key.name == "plant1/x"));
}

#[test]
fn more_blocks_than_the_limit_are_refused_before_allocating() {
    let body = handmade_body("plant1/x", 3, Some(MAX_SERIES_PER_PAYLOAD as u64 + 1));
    let error = decode_payload(&uncompressed_payload(&body)).unwrap_err();
    assert!(matches!(error, CodecError::TooManySeries { .. }), "{error}");
}

#[test]
fn a_long_name_cloned_into_many_empty_blocks_is_refused() {
    let name = "n".repeat(crate::record::MAX_SERIES_NAME_BYTES);
    let blocks = MAX_DECODED_TEXT_BYTES / name.len() + 1;
    let payload = encode_payload_of_body(&handmade_body(&name, blocks, None));
    assert!(payload.len() < 100_000, "{} bytes", payload.len());
    let error = decode_payload(&payload).unwrap_err();
    assert!(matches!(error, CodecError::TooManyTextBytes), "{error}");
}

/// `body` wrapped as a zstd payload, as a hostile sender could.
fn encode_payload_of_body(body: &[u8]) -> Vec<u8> {
    let mut payload = PAYLOAD_MAGIC.to_vec();
    payload.push(PAYLOAD_VERSION);
    payload.push(COMPRESSION_ZSTD);
    payload.extend_from_slice(&(body.len() as u32).to_le_bytes());
    payload.extend_from_slice(&zstd::bulk::compress(body, 3).unwrap());
    payload
}

/// `seconds` of the plant's records cut into segments of `segment_ms`; returns (records, bytes).
fn plant_payload_bytes(series_count: usize, base_rate_hz: f64, seconds: i64, segment_ms: i64) -> (usize, usize) {
    let config = PlantConfig { seed: 7, series_count, base_rate_hz, ..PlantConfig::default() };
    let start_ns = config.start_ns;
    let mut simulator = PlantSimulator::new(config);
    let (mut records_total, mut bytes_total) = (0, 0);
    let mut records = Vec::new();
    for segment in 1..=seconds * 1_000 / segment_ms {
        records.clear();
        simulator.generate_until(start_ns + segment * segment_ms * MS, &mut records);
        let grouped = group_records(&records);
        let payload = encode_payload(&grouped, ZSTD_LEVEL);
        records_total += records.len();
        bytes_total += payload.len();
    }
    (records_total, bytes_total)
}

/// Asserts every chunk a payload gives decodes as its block, and returns how many blocks had one.
fn check_chunks(payload: &[u8]) -> usize {
    let decoded = decode_payload_with_chunks(payload).expect("decodes");
    assert_same_columns(&decoded.series, &decode_payload(payload).unwrap());
    let mut with_chunks = 0;
    for (block, columns) in decoded.series.iter().enumerate() {
        let Some(chunk) = decoded.chunk(block) else {
            continue;
        };
        with_chunks += 1;
        let (from_chunk, known_ascending) =
            decode_columns_ordered(chunk, columns.key.clone()).expect("a chunk decodes");
        assert!(from_chunk.bit_eq(columns), "block {block}: chunk\n{from_chunk:?}\nblock\n{columns:?}");
        let mut encoded = Vec::new();
        encode_columns(columns, &mut encoded);
        let (_, known_when_encoded) = decode_columns_ordered(&encoded, columns.key.clone()).unwrap();
        assert!(known_ascending || !known_when_encoded, "block {block}: a stride stays a stride");
    }
    assert_eq!(decoded.chunk(decoded.series.len()), None);
    with_chunks
}

#[test]
fn chunks_taken_from_a_payload_decode_as_its_blocks() {
    // Every kind, mixed, odd qualities, a series listed twice, timestamps in ms off a ms base.
    let mut records = varied_records();
    records.push(record(&SeriesKey::new("plant1/boiler3/fuel_total"), T0, Value::I64(5)));
    let grouped = group_records(&records);
    let mut twice = grouped.clone();
    twice.push(grouped[0].clone());
    twice.push(SeriesColumns::new(SeriesKey::new("plant1/empty")));
    for effort in [Effort::Smallest, Effort::Fast] {
        let payload = encode_payload_with(&twice, ZSTD_LEVEL, effort);
        assert_eq!(check_chunks(&payload), twice.len() - 1, "every block but the empty one");
    }
    // A base of 3 ns and series on ticks that do not divide it: those of heads alone (one record,
    // a stride) take a tick dividing both; one with a body has its timestamps encoded again; all
    // decode as before.
    let (stride, jittered) = (SeriesKey::new("stride"), SeriesKey::new("jittered"));
    let grouped = group_records(&[
        record(&SeriesKey::new("base"), 3, Value::F64(1.0)),
        record(&stride, 13, Value::F64(1.0)),
        record(&stride, 23, Value::F64(2.0)),
        record(&stride, 33, Value::F64(2.0)),
        record(&SeriesKey::new("one"), 1_000_000_003, Value::I64(1)),
        record(&jittered, 13, Value::I64(1)),
        record(&jittered, 23, Value::I64(1)),
        record(&jittered, 43, Value::I64(1)),
        record(&jittered, 53, Value::I64(1)),
        record(&jittered, 83, Value::I64(1)),
    ]);
    let payload = encode_payload(&grouped, ZSTD_LEVEL);
    let decoded = decode_payload_with_chunks(&payload).unwrap();
    assert!(decoded.chunk(1).is_some(), "a stride on a 10 ns tick, 3 ns base");
    assert!(decoded.chunk(3).is_some(), "a body on a 10 ns tick, 3 ns base");
    assert_eq!(check_chunks(&payload), 4);
    // Timestamps at the ends of the range, where every tick sum wraps.
    let extreme = SeriesKey::new("extreme");
    let grouped =
        group_records(&[record(&extreme, i64::MAX, Value::I64(1)), record(&extreme, i64::MIN, Value::I64(2))]);
    check_chunks(&encode_payload(&grouped, ZSTD_LEVEL));
}

#[test]
fn a_live_plants_blocks_all_give_their_chunks_from_the_payload() {
    // One point per series per segment, and ten: every block gets its chunk.
    for (base_rate_hz, segment_ms) in [(1.0, 1_000), (10.0, 1_000)] {
        let config = PlantConfig { seed: 9, series_count: 300, base_rate_hz, ..PlantConfig::default() };
        let start_ns = config.start_ns;
        let mut simulator = PlantSimulator::new(config);
        let mut records = Vec::new();
        for segment in 1..=5 {
            records.clear();
            simulator.generate_until(start_ns + segment * segment_ms * MS, &mut records);
            let grouped = group_records(&records);
            let payload = encode_payload(&grouped, ZSTD_LEVEL);
            assert_eq!(check_chunks(&payload), grouped.iter().filter(|columns| !columns.is_empty()).count());
        }
    }
}

#[test]
fn fast_effort_round_trips_every_kind_and_costs_little_more_on_plant_data() {
    let grouped = group_records(&varied_records());
    let payload = encode_payload_with(&grouped, ZSTD_LEVEL, Effort::Fast);
    assert_same_columns(&decode_payload(&payload).expect("a fast payload decodes"), &grouped);

    let config =
        PlantConfig { seed: 7, series_count: 1_000, base_rate_hz: PLANT_TEST_RATE_HZ, ..PlantConfig::default() };
    let start_ns = config.start_ns;
    let mut simulator = PlantSimulator::new(config);
    let mut records = Vec::new();
    simulator.generate_until(start_ns + 5_000 * MS, &mut records);
    let grouped = group_records(&records);
    let smallest = encode_payload_with(&grouped, 1, Effort::Smallest);
    let fast = encode_payload_with(&grouped, 1, Effort::Fast);
    assert_same_columns(&decode_payload(&fast).expect("a fast payload decodes"), &grouped);
    let ratio = fast.len() as f64 / smallest.len() as f64;
    eprintln!(
        "zstd level 1, {} records: smallest {} bytes, fast {} bytes ({ratio:.2} times)",
        records.len(),
        smallest.len(),
        fast.len()
    );
    assert!((1.0..1.6).contains(&ratio), "fast is {ratio:.2} times the smallest form");
}

#[test]
fn plant_data_costs_at_most_two_bytes_per_record() {
    let (records, bytes) = plant_payload_bytes(1_000, PLANT_TEST_RATE_HZ, 60, 1_000);
    let per_record = bytes as f64 / records as f64;
    assert!(per_record <= 2.0, "{per_record:.3} bytes per record ({bytes} bytes for {records} records)");
}

/// The mean sample rate per series of the bytes-per-record specification (see its figures in the
/// module documentation).
const PLANT_TEST_RATE_HZ: f64 = 10.0;

/// Prints bytes per record for several rates and segment lengths:
/// `cargo test -p diode-common --release --lib codec::tests::print_bytes_per_record -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a specification"]
fn print_bytes_per_record() {
    for base_rate_hz in [1.0, 10.0] {
        for segment_ms in [50, 250, 1_000, 5_000, 10_000] {
            let (records, bytes) = plant_payload_bytes(1_000, base_rate_hz, 60, segment_ms);
            eprintln!(
                "1000 series, mean {base_rate_hz} Hz, {segment_ms} ms segments: {records} records, {bytes} bytes, {:.3} bytes/record",
                bytes as f64 / records as f64
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

fn arbitrary_key() -> impl Strategy<Value = SeriesKey> {
    let name = prop_oneof!["[a-z0-9_/]{1,24}", "\\PC{1,12}", Just("plant1/area2/boiler3/steam_temp".to_owned())];
    let tags = prop::collection::btree_map("[a-z]{1,6}", "\\PC{1,8}", 0..3);
    (name, tags).prop_map(|(name, tags)| SeriesKey::with_tags(name, tags.into_iter().collect()))
}

fn arbitrary_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        (any::<i32>(), 0..10i32).prop_map(|(i, d)| f64::from(i) / 10f64.powi(d)),
        prop::sample::select(vec![0.0, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e-310]),
    ]
}

fn arbitrary_value_of_kind(kind: u8) -> BoxedStrategy<Value> {
    match kind {
        0 => arbitrary_f64().prop_map(Value::F64).boxed(),
        1 => prop_oneof![any::<i64>(), -1_000i64..1_000].prop_map(Value::I64).boxed(),
        2 => any::<bool>().prop_map(Value::Bool).boxed(),
        _ => prop_oneof![prop::sample::select(vec!["RUNNING", "STOPPED", ""]).prop_map(str::to_owned), "\\PC{0,16}"]
            .prop_map(Value::String)
            .boxed(),
    }
}

fn arbitrary_value() -> impl Strategy<Value = Value> {
    (0..4u8).prop_flat_map(arbitrary_value_of_kind)
}

fn arbitrary_timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![any::<i64>(), (0..10_000i64).prop_map(|ms| T0 + ms * MS), (0..10_000i64).prop_map(|ns| T0 + ns)]
}

fn arbitrary_quality() -> impl Strategy<Value = Quality> {
    prop_oneof![3 => Just(Quality::GOOD), 1 => any::<u32>().prop_map(Quality)]
}

/// Records over a few series; with `typed`, each series keeps one value kind.
fn arbitrary_records(typed: bool) -> impl Strategy<Value = Vec<Record>> {
    prop::collection::btree_set(arbitrary_key(), 1..6).prop_flat_map(move |keys| {
        let keys: Vec<SeriesKey> = keys.into_iter().collect();
        let count = keys.len();
        let one = (0..count, arbitrary_timestamp(), arbitrary_quality(), arbitrary_value());
        prop::collection::vec(one, 0..120).prop_flat_map(move |items| {
            let keys = keys.clone();
            let strategies: Vec<BoxedStrategy<Record>> = items
                .into_iter()
                .map(|(index, timestamp_ns, quality, value)| {
                    let series = keys[index].clone();
                    if typed {
                        arbitrary_value_of_kind((index % 4) as u8)
                            .prop_map(move |value| Record { series: series.clone(), timestamp_ns, value, quality })
                            .boxed()
                    } else {
                        Just(Record { series, timestamp_ns, value, quality }).boxed()
                    }
                })
                .collect();
            strategies
        })
    })
}

proptest! {
    #[test]
    fn arbitrary_records_round_trip_bit_exactly(records in arbitrary_records(false)) {
        let grouped = group_records(&records);
        let decoded = decode_payload(&encode_payload(&grouped, ZSTD_LEVEL)).unwrap();
        prop_assert_eq!(decoded.len(), grouped.len());
        for (a, e) in decoded.iter().zip(&grouped) {
            prop_assert!(a.bit_eq(e), "decoded {:?}\nexpected {:?}", a, e);
        }
        let flattened: Vec<Record> = decoded.iter().flat_map(SeriesColumns::records).collect();
        prop_assert_eq!(flattened.len(), records.len());
    }

    #[test]
    fn arbitrary_typed_series_round_trip_bit_exactly(records in arbitrary_records(true)) {
        let grouped = group_records(&records);
        let decoded = decode_payload(&encode_payload(&grouped, ZSTD_LEVEL)).unwrap();
        prop_assert_eq!(decoded.len(), grouped.len());
        for (a, e) in decoded.iter().zip(&grouped) {
            prop_assert!(a.bit_eq(e), "decoded {:?}\nexpected {:?}", a, e);
            prop_assert!(!matches!(a.values, Values::Mixed(_)));
            let mut chunk = Vec::new();
            encode_columns(e, &mut chunk);
            prop_assert!(decode_columns(&chunk, e.key.clone()).unwrap().bit_eq(e));
        }
    }

    #[test]
    fn chunks_of_arbitrary_payloads_decode_as_their_blocks(records in arbitrary_records(false)) {
        let grouped = group_records(&records);
        for effort in [Effort::Smallest, Effort::Fast] {
            check_chunks(&encode_payload_with(&grouped, ZSTD_LEVEL, effort));
        }
    }

    #[test]
    fn a_reused_chunk_encoder_gives_the_bytes_of_a_fresh_one(records in arbitrary_records(false)) {
        let mut encoder = ChunkEncoder::default();
        // Twice over, so every series follows one of another kind and length.
        for columns in group_records(&records).iter().chain(group_records(&records).iter().rev()) {
            let (mut fresh, mut reused) = (Vec::new(), vec![7u8]);
            encode_columns(columns, &mut fresh);
            encoder.encode(columns, &mut reused);
            prop_assert_eq!(&reused[..1], &[7u8][..], "encode appends to what the buffer holds");
            prop_assert_eq!(&reused[1..], &fresh[..]);
        }
    }

    #[test]
    fn merged_groups_of_consecutive_runs_equal_the_groups_of_all_records(
        records in arbitrary_records(false),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(records.len() + 1)).collect();
        cuts.push(0);
        cuts.push(records.len());
        cuts.sort_unstable();
        let runs: Vec<Vec<SeriesColumns>> = cuts.windows(2).map(|w| group_records(&records[w[0]..w[1]])).collect();
        let merged = merge_groups(runs.iter().map(Vec::as_slice));
        let expected = group_records(&records);
        prop_assert_eq!(merged.len(), expected.len());
        for (a, e) in merged.iter().zip(&expected) {
            prop_assert!(a.bit_eq(e), "merged {:?}\nexpected {:?}", a, e);
        }
        let decoded: Vec<Vec<SeriesColumns>> =
            runs.iter().map(|run| decode_payload(&encode_payload(run, ZSTD_LEVEL)).unwrap()).collect();
        let merged_decoded = merge_groups(decoded.iter().map(Vec::as_slice));
        prop_assert_eq!(encode_payload(&merged_decoded, ZSTD_LEVEL), encode_payload(&expected, ZSTD_LEVEL));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_payload(&bytes);
        let _ = decode_payload(&uncompressed_payload(&bytes));
        let _ = decode_columns(&bytes, SeriesKey::new("x"));
    }
}

/// The grouper gives what grouping each frame's records at once gives, whether keys share their
/// text (a parser's cached key), repeat it in another allocation, or are freed and rebuilt
/// between pushes (a parser's uncached key, whose address the next key may reuse).
#[test]
fn the_grouper_groups_as_group_records_does_frame_by_frame() {
    let mut rng = crate::rng::SeededRng::new(17);
    let shared: Vec<SeriesKey> = (0..40).map(|i| SeriesKey::new(format!("plant/s{i}"))).collect();
    for max_records in [1, 7, 100, 10_000] {
        let mut records = Vec::new();
        let mut grouper = Grouper::new(max_records);
        let mut slots = [GroupSlot::default(); 40];
        for i in 0..3_000 {
            let pick = rng.below(40) as usize;
            let value = match rng.below(4) {
                0 => Value::I64(i),
                1 => Value::Bool(i % 2 == 0),
                2 => Value::String(format!("v{}", i % 5)),
                _ => Value::F64(rng.next_f64()),
            };
            let timestamp_ns = T0 + i * MS;
            if rng.chance(0.3) {
                // A slot that is right, stale, or another series' (as a parser's cache keeps them).
                let slot = &mut slots[if rng.chance(0.8) { pick } else { rng.below(40) as usize }];
                grouper.push_at(slot, &shared[pick], timestamp_ns, value.clone(), Quality::GOOD);
                records.push(record(&shared[pick], timestamp_ns, value));
            } else if rng.chance(0.5) {
                grouper.push(&shared[pick], timestamp_ns, value.clone(), Quality::GOOD);
                records.push(record(&shared[pick], timestamp_ns, value));
            } else {
                // Built afresh and dropped at once: its address is free for the next one.
                let rebuilt = SeriesKey::new(format!("plant/s{pick}"));
                grouper.push(&rebuilt, timestamp_ns, value.clone(), Quality::GOOD);
                records.push(record(&rebuilt, timestamp_ns, value));
            }
        }
        assert_eq!(grouper.records(), records.len());
        let expected: Vec<Vec<SeriesColumns>> = records.chunks(max_records).map(group_records).collect();
        let frames = grouper.finish();
        assert_eq!(frames.len(), expected.len(), "frames of {max_records}");
        // Each group's columns are allocated once, at their final size.
        for columns in frames.iter().flatten() {
            assert_eq!(columns.timestamps_ns.capacity(), columns.len(), "{}", columns.key.name);
            assert_eq!(columns.qualities.capacity(), columns.len(), "{}", columns.key.name);
        }
        for (frame, expected) in frames.iter().zip(&expected) {
            assert_same_columns(frame, expected);
        }
    }
    assert!(Grouper::new(5).finish().is_empty());
}

/// A slot filled by one grouper means nothing to another, even for the same frame and index.
#[test]
fn a_grouper_ignores_another_groupers_slot() {
    let (a, b) = (SeriesKey::new("a"), SeriesKey::new("b"));
    let mut slot = GroupSlot::default();
    let mut first = Grouper::new(10);
    first.push_at(&mut slot, &a, T0, Value::F64(1.0), Quality::GOOD);
    let mut second = Grouper::new(10);
    second.push(&b, T0, Value::F64(2.0), Quality::GOOD);
    second.push_at(&mut slot, &a, T0 + MS, Value::F64(3.0), Quality::GOOD);
    let frames = second.finish();
    assert_eq!(frames[0].iter().map(|group| group.key.name.to_string()).collect::<Vec<_>>(), ["b", "a"]);
}

#[test]
fn less_is_the_signed_comparison_at_every_extreme() {
    let edges = [i64::MIN, i64::MIN + 1, -2, -1, 0, 1, 2, i64::MAX - 1, i64::MAX, 1 << 62, -(1 << 62)];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut values = edges.to_vec();
    for _ in 0..200 {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        values.push(state as i64);
    }
    for &a in &values {
        for &b in &values {
            assert_eq!(less(a, b), u64::from(a < b), "{a} < {b}");
        }
    }
}

/// Strictly ascending: every timestamp above the one before, at the extremes of time too.
#[test]
fn strictly_ascending_columns_are_told_from_any_other() {
    let columns = |timestamps: &[i64]| {
        let mut columns = SeriesColumns::new(SeriesKey::new("a"));
        timestamps.iter().for_each(|&t| columns.push(t, Value::F64(0.0), Quality::GOOD));
        columns
    };
    for ascending in [&[][..], &[5], &[i64::MIN, -1, 0, i64::MAX], &[1, 2, 3]] {
        assert!(columns(ascending).strictly_ascending(), "{ascending:?}");
    }
    for not in [&[1, 1][..], &[2, 1], &[i64::MAX, i64::MIN], &[1, 3, 2, 4]] {
        assert!(!columns(not).strictly_ascending(), "{not:?}");
    }
}

/// Consecutive payloads of one thread share the keys of the series they both name (the decoder
/// keeps the last table), and a table that differs (a series added, one gone, another tag, a
/// longer name sharing a prefix) still decodes to exactly its own keys.
#[test]
fn consecutive_payloads_share_equal_keys_and_keep_their_own() {
    let tagged = |name: &str, unit: &str| SeriesKey::with_tags(name, vec![("unit".into(), unit.into())]);
    let first_keys = [SeriesKey::new("a/pump"), tagged("b/temp", "C"), tagged("b/temp", "F"), SeriesKey::new("c/flow")];
    let second_keys = [
        SeriesKey::new("a/pump"),
        SeriesKey::new("a/pump2"),
        tagged("b/temp", "F"),
        tagged("b/temp", "K"),
        SeriesKey::new("c/flow"),
    ];
    let records = |keys: &[SeriesKey]| -> Vec<Record> {
        keys.iter().enumerate().map(|(index, key)| record(key, T0 + index as i64, Value::F64(index as f64))).collect()
    };
    let first = round_trip(&records(&first_keys));
    let second = round_trip(&records(&second_keys));
    let decoded_keys: Vec<SeriesKey> = second.iter().map(|columns| columns.key.clone()).collect();
    let mut expected = second_keys.to_vec();
    expected.sort();
    assert_eq!(decoded_keys, expected);
    let key_of = |decoded: &[SeriesColumns], key: &SeriesKey| {
        decoded.iter().find(|columns| columns.key == *key).expect("decoded").key.clone()
    };
    for shared in [SeriesKey::new("a/pump"), tagged("b/temp", "F"), SeriesKey::new("c/flow")] {
        let (before, after) = (key_of(&first, &shared), key_of(&second, &shared));
        assert!(std::sync::Arc::ptr_eq(&before.name, &after.name), "{shared} shares its name");
        assert!(std::sync::Arc::ptr_eq(&before.tags, &after.tags), "{shared} shares its tags");
    }
    let (before, after) = (key_of(&first, &tagged("b/temp", "C")), key_of(&second, &tagged("b/temp", "K")));
    assert!(!std::sync::Arc::ptr_eq(&before.tags, &after.tags));
}

/// A seeded xorshift, for columns no encoding mode can shrink.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn text(&mut self, length: usize) -> String {
        (0..length).map(|_| char::from(b'!' + (self.next() % 94) as u8)).collect()
    }
}

/// The bound a sealer cuts segments by is above what the encoder writes for the worst columns:
/// random timestamps, values, qualities and kinds, every record a run of its own, long keys with
/// the most tags, and keys that repeat across blocks.
#[test]
fn the_decoded_bound_holds_for_the_worst_columns() {
    let mut noise = Noise(0x2545_f491_4f6c_dd1d);
    let key = |noise: &mut Noise, tags: usize| {
        SeriesKey::with_tags(
            noise.text(crate::record::MAX_SERIES_NAME_BYTES),
            (0..tags).map(|_| (noise.text(40), noise.text(40))).collect(),
        )
    };
    for kind in 0..6 {
        let mut series = Vec::new();
        for block in 0..40 {
            let key = if block % 3 == 2 {
                series.iter().map(|c: &SeriesColumns| c.key.clone()).next().unwrap()
            } else {
                key(&mut noise, block % (MAX_TAGS_PER_SERIES + 1))
            };
            let mut columns = SeriesColumns::new(key);
            for row in 0..(1 + block * 37) {
                let bits = noise.next();
                let value = match (kind, row % 4) {
                    (0, _) => Value::I64(bits as i64),
                    (1, _) => Value::F64(f64::from_bits(bits)),
                    (2, _) => Value::Bool(bits & 1 == 1),
                    (3, _) => Value::String(noise.text((bits % 20) as usize)),
                    (_, 0) => Value::I64(bits as i64),
                    (_, 1) => Value::String(noise.text((bits % 5) as usize)),
                    (_, 2) => Value::F64(f64::from_bits(bits)),
                    (_, _) => Value::Bool(bits & 1 == 1),
                };
                columns.push(noise.next() as i64, value, Quality(noise.next() as u32));
            }
            series.push(columns);
        }
        let bound = decoded_bytes_bound(&series);
        assert!(check_payload_limits(&series).is_ok());
        for effort in [Effort::Fast, Effort::Smallest] {
            let payload = encode_payload_with(&series, ZSTD_LEVEL, effort);
            let decoded = u32::from_le_bytes(payload[6..10].try_into().unwrap()) as usize;
            assert!(decoded <= bound, "kind {kind}: {decoded} decoded bytes above the bound {bound}");
            assert_same_columns(&decode_payload(&payload).unwrap(), &series);
        }
        // Two frames merged by key, as a seal merges them: the bound less each repeat's key part.
        let (first, second) = series.split_at(series.len() / 2);
        let merged = merge_groups([first, second]);
        let mut seen = std::collections::HashSet::new();
        let repeats: usize =
            series.iter().filter(|c| !seen.insert(c.key.clone())).map(|c| key_bound_bytes(&c.key)).sum();
        assert!(repeats > 0);
        let merged_bound = decoded_bytes_bound(&merged);
        assert_eq!(merged_bound, bound - repeats);
        for effort in [Effort::Fast, Effort::Smallest] {
            let payload = encode_payload_with(&merged, ZSTD_LEVEL, effort);
            let decoded = u32::from_le_bytes(payload[6..10].try_into().unwrap()) as usize;
            assert!(decoded <= merged_bound, "kind {kind}, merged: {decoded} decoded bytes above {merged_bound}");
        }
    }
}

/// A frame of large strings is cut into frames within the bound, each series' records kept in
/// their order, and each cut frame seals into a payload the segment format holds.
#[test]
fn a_frame_beyond_the_bound_is_cut_in_order() {
    let mut noise = Noise(7);
    let long = |noise: &mut Noise| noise.text(crate::record::MAX_STRING_VALUE_BYTES);
    let mut frame = Vec::new();
    // A series alone beyond the bound, then small ones, then another large one.
    for (name, count) in [("big", 300), ("small1", 3), ("small2", 1), ("big2", 250)] {
        let mut columns = SeriesColumns::new(SeriesKey::new(name));
        for row in 0..count {
            columns.push(T0 + row, Value::String(long(&mut noise)), Quality::GOOD);
        }
        frame.push(columns);
    }
    let original = frame.clone();
    assert!(decoded_bytes_bound(&frame) > MAX_PAYLOAD_BOUND_BYTES);
    let frames = split_to_bound(frame);
    assert!(frames.len() >= 3, "{} frames", frames.len());
    let mut joined: Vec<SeriesColumns> = original.iter().map(|c| SeriesColumns::new(c.key.clone())).collect();
    for (frame, bound) in &frames {
        assert_eq!(*bound, decoded_bytes_bound(frame));
        assert!(*bound <= MAX_PAYLOAD_BOUND_BYTES);
        let payload = encode_payload(frame, ZSTD_LEVEL);
        assert!(payload.len() <= crate::seal::MAX_PAYLOAD_LENGTH, "{} bytes", payload.len());
        assert_same_columns(&decode_payload(&payload).unwrap(), frame);
        for columns in frame {
            let at = joined.iter().position(|c| c.key == columns.key).unwrap();
            joined[at].append(columns);
        }
    }
    assert_same_columns(&joined, &original);
    // A frame within the bound is left whole.
    let small = original[1..3].to_vec();
    assert_eq!(split_to_bound(small.clone()).len(), 1);
}

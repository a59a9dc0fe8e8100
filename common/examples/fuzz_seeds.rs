//! Writes the fuzz targets' seed corpora: valid inputs from which mutations reach the deep checks
//! (a random byte string almost never carries a valid signature or a consistent tracker).
//!
//! `cargo run --release -p diode-common --example fuzz_seeds -- fuzz/seeds` writes
//! `decode_payload/`, `open_proof/`, `open_segment/` and `sequence_tracker/` under the given
//! directory. Everything is signed with the key the fuzz targets trust
//! (`SenderKey::from_seed([7; 32])`) and is deterministic, so the committed seeds are reproducible
//! byte for byte (and change when the payload format does). Each proof is checked before it is
//! written.

use std::path::{Path, PathBuf};

use diode_common::codec::group_records;
use diode_common::gaps::SequenceTracker;
use diode_common::keys::{SenderKey, TrustedKeys};
use diode_common::proof::{Proof, check_proof};
use diode_common::record::{Quality, Record, SeriesKey, Value};
use diode_common::seal::{self, ChainPosition, GENESIS_HASH, SealedSegment};

const T0: i64 = 1_704_067_200_000_000_000;
const SECOND: i64 = 1_000_000_000;

fn record(series: &SeriesKey, timestamp_ns: i64, value: Value, quality: Quality) -> Record {
    Record { series: series.clone(), timestamp_ns, value, quality }
}

/// One chain of `batches`, sender 7, epoch 1, from sequence 1.
fn seal_chain(batches: &[Vec<Record>], key: &SenderKey) -> Vec<SealedSegment> {
    let mut previous_hash = GENESIS_HASH;
    batches
        .iter()
        .enumerate()
        .map(|(index, records)| {
            let position = ChainPosition { sender_id: 7, epoch: 1, sequence: index as u64 + 1, previous_hash };
            let segment = seal::seal(position, &group_records(records), 3, T0 + index as i64 * SECOND, key);
            previous_hash = segment.hash();
            segment
        })
        .collect()
}

/// Segments with every value kind, tags, a bad quality, a duplicate timestamp and a series that
/// appears only in the middle segment.
fn sample_chain(key: &SenderKey) -> Vec<SealedSegment> {
    let flow = SeriesKey::with_tags("plant/flow", vec![("line".into(), "2".into())]);
    let (state, count, label) =
        (SeriesKey::new("plant/state"), SeriesKey::new("plant/count"), SeriesKey::new("plant/label"));
    let batches = vec![
        vec![
            record(&flow, T0, Value::F64(1.5), Quality::GOOD),
            record(&flow, T0 + SECOND, Value::F64(-0.0), Quality::BAD),
            record(&state, T0, Value::Bool(true), Quality::GOOD),
            record(&count, T0, Value::I64(-3), Quality::GOOD),
        ],
        vec![record(&label, T0 + 2 * SECOND, Value::String("open é".into()), Quality(0x4000_0000))],
        vec![
            record(&flow, T0 + SECOND, Value::F64(2.25), Quality::GOOD),
            record(&flow, T0 + 3 * SECOND, Value::F64(3.0), Quality::GOOD),
            record(&state, T0 + 3 * SECOND, Value::I64(7), Quality::GOOD),
        ],
    ];
    seal_chain(&batches, key)
}

fn write(directory: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(directory).unwrap_or_else(|error| panic!("cannot create {}: {error}", directory.display()));
    let path = directory.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
    println!("wrote {} ({} bytes)", path.display(), bytes.len());
}

fn proofs(directory: &Path, key: &SenderKey, chain: &[SealedSegment]) {
    let trusted = TrustedKeys::single(key.public_key());
    let flow = SeriesKey::with_tags("plant/flow", vec![("line".into(), "2".into())]);
    let cases = [
        // One point from one segment.
        ("one-point.proof", SeriesKey::new("plant/count"), vec![0], vec![], (T0, T0)),
        // A corrected value, with the chain header of the segment in between.
        ("correction-with-chain-header.proof", flow.clone(), vec![0, 2], vec![1], (T0, T0 + 3 * SECOND)),
        // The same without the header: two chain runs.
        ("two-chain-runs.proof", flow, vec![0, 2], vec![], (T0, T0 + 3 * SECOND)),
        // A string value, and a series whose kind changes.
        ("string-value.proof", SeriesKey::new("plant/label"), vec![1], vec![], (T0, T0 + 3 * SECOND)),
        ("mixed-kinds.proof", SeriesKey::new("plant/state"), vec![0, 2], vec![1], (T0, T0 + 3 * SECOND)),
    ];
    for (name, series, segments, headers, (from_ns, to_ns)) in cases {
        let segments = segments.iter().map(|&index: &usize| chain[index].to_bytes()).collect();
        let headers = headers.iter().map(|&index: &usize| chain[index].header.to_bytes()).collect();
        let proof = Proof::assemble(series, segments, headers, from_ns..=to_ns).expect("the seed proof assembles");
        let bytes = proof.to_bytes();
        check_proof(&bytes, &trusted).unwrap_or_else(|error| panic!("seed {name} does not check: {error}"));
        write(directory, name, &bytes);
    }
}

fn trackers(directory: &Path) {
    let mut tracker = SequenceTracker::new();
    write(directory, "empty.tracker", &tracker.to_bytes());
    for sequence in 1..=5 {
        tracker.on_applied(sequence).expect("a fresh sequence");
    }
    write(directory, "contiguous.tracker", &tracker.to_bytes());
    for sequence in [8, 9, 12, 20] {
        tracker.on_applied(sequence).expect("a fresh sequence");
    }
    tracker.on_head_announced(25);
    write(directory, "gaps-and-announced-head.tracker", &tracker.to_bytes());
}

fn main() {
    let root: PathBuf = std::env::args_os().nth(1).map_or_else(|| PathBuf::from("fuzz/seeds"), PathBuf::from);
    let key = SenderKey::from_seed([7; 32]);
    let chain = sample_chain(&key);
    for (index, segment) in chain.iter().enumerate() {
        write(&root.join("open_segment"), &format!("segment-{}.seg", index + 1), &segment.to_bytes());
        write(&root.join("decode_payload"), &format!("payload-{}.bin", index + 1), &segment.payload);
    }
    proofs(&root.join("open_proof"), &key, &chain);
    trackers(&root.join("sequence_tracker"));
}

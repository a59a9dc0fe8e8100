//! Proof export from the replica, and the human form of a checked proof.
//!
//! The proof file's codec and its offline check live in `diode_common::proof`, so that a checker
//! needs only the public keys; they are re-exported here. This module finds, in the replica, the
//! verified segments and chain headers behind some points of one series and assembles them into a
//! proof, refusing when the replica's points are not what those segments say.

use diode_common::keys::TrustedKeys;
pub use diode_common::proof::{
    ChainRun, CheckedProof, CheckedSegment, MAX_PROOF_BYTES, MAX_PROOF_POINTS, Proof, ProofError, ProvenPoint,
    check_proof,
};
use diode_common::record::SeriesKey;
use diode_common::seal::{self, HEADER_LENGTH, SegmentHeader};
use diode_replica::{Point, Replica, ReplicaError, SegmentKey, SeriesInfo};

use super::findings::{describe_value, segment_name};
use crate::query::core::select::{Selector, matching_series};
use crate::time::format_rfc3339;

/// The verified points of a checked proof and where they come from, for humans.
pub fn describe(checked: &CheckedProof) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let (first, last) = (checked.points[0].timestamp_ns, checked.points[checked.points.len() - 1].timestamp_ns);
    let _ = writeln!(
        out,
        "proof VERIFIED: {} points of {} from {} to {}, signed in {} segments",
        checked.points.len(),
        checked.series,
        format_rfc3339(first),
        format_rfc3339(last),
        checked.segments.len()
    );
    for segment in &checked.segments {
        let _ = writeln!(
            out,
            "  {} signed by key {} sealed at {} ({} records)",
            segment.position,
            segment.key_id,
            format_rfc3339(segment.sealed_at_ns),
            segment.record_count
        );
    }
    for run in &checked.chain_runs {
        let _ = writeln!(
            out,
            "  hash chain verified: sender {} epoch {} sequences {}..={}",
            run.sender_id, run.epoch, run.first_sequence, run.last_sequence
        );
    }
    for point in &checked.points {
        let segment = checked.segments[point.segment_index as usize].position;
        let _ = writeln!(
            out,
            "  {} ({} ns)  {}  from {segment}",
            format_rfc3339(point.timestamp_ns),
            point.timestamp_ns,
            describe_value(&point.value, point.quality),
        );
    }
    out
}

/// Why a proof could not be exported: the series is not the one named, or the replica's points
/// are not what its verified segments hold.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// No series by that name, and none close to it.
    #[error("the replica holds no series {name:?}; list them with `diode-receiver series --config FILE`")]
    UnknownSeries {
        /// The series as asked for.
        name: String,
    },
    /// No series by that name, but some with similar names, which the message lists.
    #[error("the replica holds no series {name:?}; did you mean one of {similar:?}?")]
    UnknownSeriesLike {
        /// The series as asked for.
        name: String,
        /// Close names that exist.
        similar: Vec<String>,
    },
    /// Several series print as the same name: the replica is not healthy.
    #[error("{count} series are shown as {name:?}; this cannot happen in a healthy replica")]
    AmbiguousSeries {
        /// The series as asked for.
        name: String,
        /// How many print so.
        count: usize,
    },
    /// `--from` is after `--to`.
    #[error("the time range is empty: --from is after --to")]
    EmptyRange,
    /// The range holds more than [`MAX_PROOF_POINTS`]: a proof must stay small enough to check.
    #[error("{series} holds more than {max} points in that range; prove a narrower range", max = MAX_PROOF_POINTS)]
    TooManyPoints {
        /// The series.
        series: SeriesKey,
    },
    /// Nothing to prove in the range.
    #[error("{series} has no point between {from} and {to} in the replica")]
    NoPoints {
        /// The series.
        series: SeriesKey,
        /// Start of the range, as RFC 3339.
        from: String,
        /// End of the range, as RFC 3339.
        to: String,
    },
    /// The replica's points differ from what the verified segments hold: no proof is written for
    /// data the segments do not back.
    #[error(
        "the replica's points of {series} in that range are not the ones its verified segments hold{}; run \
         `diode-receiver audit verify` to see what differs",
        refused_suffix(.refused)
    )]
    NotAsSigned {
        /// The series.
        series: SeriesKey,
        /// Segments of the range that failed verification, each with why.
        refused: Vec<String>,
    },
    /// Reading the replica failed.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
}

/// ` (segments refused: a; b)`, or nothing when none was refused.
fn refused_suffix(refused: &[String]) -> String {
    if refused.is_empty() { String::new() } else { format!(" (segments refused: {})", refused.join("; ")) }
}

/// The catalogued series whose display form (`name` or `name{key=value,...}`) is `name`.
pub fn find_series(replica: &Replica, name: &str) -> Result<SeriesInfo, ExportError> {
    let catalog = replica.series_list();
    let matching = matching_series(&catalog, Selector::DisplayForm(name));
    match matching.len() {
        1 => Ok(matching[0].clone()),
        0 => {
            let similar: Vec<String> = catalog
                .iter()
                .map(|info| info.key.to_string())
                .filter(|shown| shown.starts_with(name) || shown.contains(name))
                .take(5)
                .collect();
            if similar.is_empty() {
                Err(ExportError::UnknownSeries { name: name.to_owned() })
            } else {
                Err(ExportError::UnknownSeriesLike { name: name.to_owned(), similar })
            }
        }
        count => Err(ExportError::AmbiguousSeries { name: name.to_owned(), count }),
    }
}

fn position(header: &SegmentHeader) -> SegmentKey {
    SegmentKey { sender_id: header.sender_id, epoch: header.epoch, sequence: header.sequence }
}

/// Builds the proof of `series`' points in `from_ns..=to_ns` from the replica. Refuses when the
/// replica's points differ from what its verified segments say (run `audit verify`).
pub fn export_proof(
    replica: &Replica,
    trusted: &TrustedKeys,
    series: &SeriesInfo,
    from_ns: i64,
    to_ns: i64,
) -> Result<Proof, ExportError> {
    if from_ns > to_ns {
        return Err(ExportError::EmptyRange);
    }
    let claimed = claimed_points(replica, series, from_ns, to_ns)?;
    let (sealed, refused) = segments_holding(replica, trusted, series, from_ns, to_ns)?;
    let headers = chain_headers(replica, &sealed)?;
    let segments = sealed.into_iter().map(|(_, bytes, _)| bytes).collect();
    // A proof that cannot be assembled holds no points, so it is refused as not matching.
    match Proof::assemble(series.key.clone(), segments, headers, from_ns..=to_ns) {
        Ok(proof) if proves(&proof, &claimed) => Ok(proof),
        _ => Err(ExportError::NotAsSigned { series: series.key.clone(), refused }),
    }
}

/// The replica's points of `series` in the range: what the proof must prove.
fn claimed_points(replica: &Replica, series: &SeriesInfo, from_ns: i64, to_ns: i64) -> Result<Vec<Point>, ExportError> {
    let mut claimed = Vec::new();
    for point in replica.scan(series.id, from_ns, to_ns) {
        claimed.push(point?);
        if claimed.len() > MAX_PROOF_POINTS {
            return Err(ExportError::TooManyPoints { series: series.key.clone() });
        }
    }
    if claimed.is_empty() {
        return Err(ExportError::NoPoints {
            series: series.key.clone(),
            from: format_rfc3339(from_ns),
            to: format_rfc3339(to_ns),
        });
    }
    Ok(claimed)
}

/// A stored segment as the proof takes it: its position, its sealed bytes and its header.
type SealedAt = (SegmentKey, Vec<u8>, SegmentHeader);

/// Every verified segment holding a record of `series` in the range, ascending by position, and
/// why the others whose header overlaps the range were refused.
fn segments_holding(
    replica: &Replica,
    trusted: &TrustedKeys,
    series: &SeriesInfo,
    from_ns: i64,
    to_ns: i64,
) -> Result<(Vec<SealedAt>, Vec<String>), ReplicaError> {
    let mut sealed: Vec<SealedAt> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    for stored in replica.segments(SegmentKey::FIRST) {
        let stored = match stored {
            Ok(stored) => stored,
            Err(error @ ReplicaError::Storage { .. }) => return Err(error),
            Err(damaged) => {
                refused.push(damaged.to_string());
                continue;
            }
        };
        let Ok(header) = SegmentHeader::from_bytes(&stored.sealed) else { continue };
        if header.max_timestamp_ns < from_ns || header.min_timestamp_ns > to_ns {
            continue;
        }
        let (segment, decoded) = match seal::open_records(&stored.sealed, trusted) {
            Ok(opened) if position(&opened.0.header) == stored.key => opened,
            Ok(_) => {
                refused.push(format!("{}: stored at another position than its header names", segment_name(stored.key)));
                continue;
            }
            Err(error) => {
                refused.push(format!("{}: {error}", segment_name(stored.key)));
                continue;
            }
        };
        let holds_any = decoded
            .iter()
            .filter(|columns| columns.key == series.key)
            .any(|columns| columns.timestamps_ns.iter().any(|timestamp_ns| (from_ns..=to_ns).contains(timestamp_ns)));
        if holds_any {
            sealed.push((stored.key, stored.sealed, segment.header));
        }
    }
    Ok((sealed, refused))
}

/// Whether `proof` proves exactly the `claimed` points, bit for bit.
fn proves(proof: &Proof, claimed: &[Point]) -> bool {
    claimed.len() == proof.points.len()
        && claimed.iter().zip(&proof.points).all(|(point, proven)| {
            point.timestamp_ns == proven.timestamp_ns
                && point.value.bit_eq(&proven.value)
                && point.quality == proven.quality
        })
}

/// The stored headers between consecutive proof segments of each stream, walking back from the
/// later one while each header links to the one after it (a gap or a mismatch ends the walk).
fn chain_headers(replica: &Replica, segments: &[SealedAt]) -> Result<Vec<[u8; HEADER_LENGTH]>, ReplicaError> {
    let mut headers = Vec::new();
    for pair in segments.windows(2) {
        let ((earlier, _, _), (later, _, later_header)) = (&pair[0], &pair[1]);
        if (earlier.sender_id, earlier.epoch) != (later.sender_id, later.epoch) {
            continue;
        }
        let mut walked = Vec::new();
        let mut expected_hash = later_header.previous_hash;
        let mut sequence = later.sequence - 1;
        while sequence > earlier.sequence {
            let key = SegmentKey { sequence, ..*later };
            let stored = match replica.stored_segment(key) {
                Ok(Some(stored)) => stored,
                Err(error @ ReplicaError::Storage { .. }) => return Err(error),
                // Not stored, or damaged: the chain cannot be followed past it.
                Ok(None) | Err(_) => break,
            };
            let Ok(header) = SegmentHeader::from_bytes(&stored.sealed) else { break };
            if header.hash() != expected_hash || position(&header) != key {
                break;
            }
            expected_hash = header.previous_hash;
            walked.push(header.to_bytes());
            sequence -= 1;
        }
        walked.reverse();
        headers.extend(walked);
    }
    Ok(headers)
}

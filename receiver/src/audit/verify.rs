//! `audit verify`: the walk of the audit log, then the comparisons (the tracker, the signed
//! beacons, every point and chunk), assembled into an [`AuditReport`].

use std::time::Instant;

use diode_common::keys::TrustedKeys;
use diode_replica::{Replica, ReplicaError};

use super::epochs::epoch_boundaries;
use super::findings::{Finding, Findings};
pub use super::options::VerifyOptions;
use super::points;
use super::report::{AuditReport, GapKind, GapReport, PointTotals, TrustedKeySummary};
use super::streams::{Unrecorded, compare_with_tracker};
use super::walk::walk_audit_log;

/// Re-verifies the replica against its signed segments. Errors only when the replica cannot be
/// read at all; everything wrong inside it is a [`Finding`] in the report.
pub fn verify_replica(
    replica: &Replica,
    trusted: &TrustedKeys,
    options: &VerifyOptions,
) -> Result<AuditReport, ReplicaError> {
    let started = Instant::now();
    let selected = options.sequences.clone().unwrap_or(0..=u64::MAX);
    let mut walk = walk_audit_log(replica, trusted, selected.clone(), options)?;

    let (mut epochs, gaps, unrecorded) = compare_with_tracker(replica, &walk, &selected);
    for finding in epoch_boundaries(replica, trusted, &mut epochs)? {
        walk.findings.push(finding);
    }
    report_stream_findings(&mut walk.findings, &gaps, unrecorded);

    // The data-time span to compare: everything, or what the selected segments cover.
    let point_span = if options.sequences.is_none() { Some((i64::MIN, i64::MAX)) } else { walk.selected_span() };
    walk.report_unselected_failures(point_span);
    let walk_seconds = started.elapsed().as_secs_f64();

    let mut findings = std::mem::take(&mut walk.findings);
    let points = match point_span {
        Some(span) => {
            let used = walk.take_signed_within(span);
            let (totals, point_findings) = points::compare(replica, used, span, options)?;
            findings.merge(point_findings);
            totals
        }
        None => PointTotals::default(),
    };

    Ok(AuditReport {
        replica: replica.path().to_owned(),
        sequences: options.sequences.as_ref().map(|range| (*range.start(), *range.end())),
        trusted_keys: trusted_key_summaries(trusted),
        segments_stored: walk.segments_stored,
        segments_selected: walk.segments_selected,
        segments_verified: walk.segments_verified,
        records_signed: walk.records_signed,
        links_checked: walk.links_checked,
        keys_used: walk.key_usage.into_values().collect(),
        epochs,
        gaps,
        point_span,
        points,
        findings,
        walk_seconds,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Names the stored segments the tracker says were removed after apply, and those it never
/// recorded as applied.
fn report_stream_findings(findings: &mut Findings, gaps: &[GapReport], unrecorded: Unrecorded) {
    for gap in gaps.iter().filter(|gap| gap.kind == GapKind::RemovedAfterApply) {
        findings.push(Finding::SegmentsRemoved {
            sender_id: gap.sender_id,
            epoch: gap.epoch,
            first_sequence: gap.first_sequence,
            last_sequence: gap.last_sequence,
        });
    }
    for (sender_id, epoch, run) in unrecorded {
        findings.push(Finding::SegmentsUnrecorded {
            sender_id,
            epoch,
            first_sequence: *run.start(),
            last_sequence: *run.end(),
        });
    }
}

fn trusted_key_summaries(trusted: &TrustedKeys) -> Vec<TrustedKeySummary> {
    trusted
        .iter()
        .map(|key| TrustedKeySummary {
            key_id: key.key_id,
            valid_from_ns: key.valid_from_ns,
            valid_until_ns: key.valid_until_ns,
        })
        .collect()
}

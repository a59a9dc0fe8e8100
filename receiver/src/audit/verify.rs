//! `audit verify`: one walk over the audit log, then a point-by-point comparison of the replica
//! with what the verified segments say it must hold.
//!
//! The walk (this file) checks every stored segment on its own (framing, position, trusted key
//! valid at its sealing time, signature, payload hash), the hash chain between consecutive stored
//! segments of each `(sender, epoch)`, and the stored sequences against the receiver's tracker: a
//! sequence the tracker calls applied whose audit entry is gone was removed after apply; one it
//! never applied was never received. The point comparison is in `points.rs`.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::Instant;

use diode_common::beacon::{Beacon, BeaconError};
use diode_common::keys::{KeyId, TrustedKeys, encode_hex};
use diode_common::seal::{self, GENESIS_HASH, SegmentHash, SegmentHeader};
use diode_replica::{Replica, ReplicaError, SegmentKey, StoredSegment};

use super::points::{self, SignedSegment};
use super::report::{
    Announcement, AuditReport, EpochReport, Finding, Findings, GapKind, GapReport, KeyUsage, SignedAnnouncement,
    TrustedKeySummary, hash_hex,
};
use super::{clip_ranges, subtract_ranges};

/// How `audit verify` runs.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Only segments with a sequence in this range (in every stream) are checked; the points are
    /// compared over the data-time span those segments cover. `None`: everything.
    pub sequences: Option<RangeInclusive<u64>>,
    /// Most decoded points held in memory at once (about 30 bytes each); larger time windows are
    /// split by series, which costs extra decodes.
    pub memory_budget_points: u64,
    /// Worker threads for decoding and comparing.
    pub threads: usize,
    /// Findings listed in the report; all are counted.
    pub max_findings_listed: usize,
    /// Show progress bars on stderr.
    pub progress: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            sequences: None,
            memory_budget_points: 8_000_000,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8),
            max_findings_listed: 10_000,
            progress: false,
        }
    }
}

/// What the walk keeps of one `(sender, epoch)`.
#[derive(Debug, Default)]
struct StreamWalk {
    /// Stored sequences as ascending runs (selected or not: the tracker comparison needs all).
    stored: Vec<RangeInclusive<u64>>,
    /// The previous stored segment's sequence and header hash, if it parsed.
    previous: Option<(u64, Option<SegmentHash>)>,
    selected_first: Option<u64>,
    selected_last: Option<u64>,
    selected_count: u64,
    first_sealed_at_ns: Option<i64>,
    begins_at_genesis: bool,
}

impl StreamWalk {
    fn add_stored(&mut self, sequence: u64) {
        match self.stored.last_mut() {
            Some(run) if run.end().checked_add(1) == Some(sequence) => *run = *run.start()..=sequence,
            _ => self.stored.push(sequence..=sequence),
        }
    }
}

/// A stored segment outside the selected sequences that failed: reported only if it overlaps the
/// data-time span being compared (its points would otherwise show up as unexplained).
struct UnselectedFailure {
    time_range: Option<(i64, i64)>,
    finding: Finding,
}

struct Walk<'a> {
    trusted: &'a TrustedKeys,
    selected: RangeInclusive<u64>,
    streams: BTreeMap<(u64, u64), StreamWalk>,
    signed: Vec<SignedSegment>,
    key_usage: BTreeMap<KeyId, KeyUsage>,
    unselected_failures: Vec<UnselectedFailure>,
    findings: Findings,
    segments_stored: u64,
    segments_selected: u64,
    segments_verified: u64,
    records_signed: u64,
    links_checked: u64,
}

impl Walk<'_> {
    fn report(&mut self, selected: bool, time_range: Option<(i64, i64)>, finding: Finding) {
        if selected {
            self.findings.push(finding);
        } else {
            self.unselected_failures.push(UnselectedFailure { time_range, finding });
        }
    }

    /// Checks the link from the stored predecessor (or the genesis hash) to `header`; a missing
    /// predecessor is a gap, reported with the tracker comparison.
    fn check_link(&mut self, key: SegmentKey, header: &SegmentHeader, previous: Option<(u64, Option<SegmentHash>)>) {
        let expected = match previous {
            _ if key.sequence == 1 => GENESIS_HASH,
            Some((sequence, Some(previous_hash))) if sequence.checked_add(1) == Some(key.sequence) => previous_hash,
            _ => return,
        };
        self.links_checked += 1;
        if expected != header.previous_hash {
            self.findings.push(Finding::ChainBroken {
                segment: key,
                expected_previous_hash: hash_hex(&expected),
                found_previous_hash: hash_hex(&header.previous_hash),
            });
        } else if key.sequence == 1
            && let Some(stream) = self.streams.get_mut(&(key.sender_id, key.epoch))
        {
            stream.begins_at_genesis = true;
        }
    }

    /// Names an audit entry that cannot be read as one. One with a readable position counts as
    /// stored (it is not reported again as removed) and cuts the chain there: the links to and from
    /// it cannot be checked.
    fn visit_damaged(&mut self, key: Option<SegmentKey>, key_bytes: &[u8], reason: String) {
        self.segments_stored += 1;
        let finding = Finding::AuditEntryUnreadable { entry: key, key_hex: encode_hex(key_bytes), reason };
        let Some(key) = key else {
            self.findings.push(finding);
            return;
        };
        let selected = self.selected.contains(&key.sequence);
        self.segments_selected += u64::from(selected);
        let stream = self.streams.entry((key.sender_id, key.epoch)).or_default();
        stream.add_stored(key.sequence);
        stream.previous = Some((key.sequence, None));
        if selected {
            stream.selected_first.get_or_insert(key.sequence);
            stream.selected_last = Some(key.sequence);
            stream.selected_count += 1;
        }
        // Its time range is unknown, so outside the selected sequences it is not reported.
        self.report(selected, None, finding);
    }

    /// Checks one stored segment on its own and against the stored segment before it.
    fn visit(&mut self, stored: &StoredSegment) {
        let key = stored.key;
        self.segments_stored += 1;
        let selected = self.selected.contains(&key.sequence);
        self.segments_selected += u64::from(selected);
        let stream = self.streams.entry((key.sender_id, key.epoch)).or_default();
        stream.add_stored(key.sequence);
        let previous = stream.previous.take();

        let segment = match seal::parse(&stored.sealed) {
            Ok(segment) => segment,
            Err(error) => {
                stream.previous = Some((key.sequence, None));
                let finding =
                    Finding::SegmentInvalid { segment: key, check: error.reason_label(), message: error.to_string() };
                self.report(selected, None, finding);
                return;
            }
        };
        let header = &segment.header;
        let hash = header.hash();
        stream.previous = Some((key.sequence, Some(hash)));
        let time_range = Some((header.min_timestamp_ns, header.max_timestamp_ns));

        if selected {
            if stream.selected_first.is_none() {
                stream.selected_first = Some(key.sequence);
                stream.first_sealed_at_ns = Some(header.sealed_at_ns);
            }
            stream.selected_last = Some(key.sequence);
            stream.selected_count += 1;
            self.check_link(key, header, previous);
        }

        let named = SegmentKey { sender_id: header.sender_id, epoch: header.epoch, sequence: header.sequence };
        if named != key {
            self.report(selected, time_range, Finding::SegmentMisplaced { stored_at: key, header_says: named });
            return;
        }
        if let Err(error) = seal::verify(&segment, self.trusted) {
            let finding =
                Finding::SegmentInvalid { segment: key, check: error.reason_label(), message: error.to_string() };
            self.report(selected, time_range, finding);
            return;
        }
        if selected {
            self.segments_verified += 1;
            self.records_signed += u64::from(header.record_count);
            let usage = self.key_usage.entry(header.key_id).or_insert(KeyUsage {
                key_id: header.key_id,
                segments: 0,
                first_sealed_at_ns: header.sealed_at_ns,
                last_sealed_at_ns: header.sealed_at_ns,
            });
            usage.segments += 1;
            usage.first_sealed_at_ns = usage.first_sealed_at_ns.min(header.sealed_at_ns);
            usage.last_sealed_at_ns = usage.last_sealed_at_ns.max(header.sealed_at_ns);
        }
        self.signed.push(SignedSegment {
            key,
            header_hash: hash,
            min_timestamp_ns: header.min_timestamp_ns,
            max_timestamp_ns: header.max_timestamp_ns,
            record_count: header.record_count,
            selected,
        });
    }
}

/// Re-verifies the replica against its signed segments. Errors only when the replica cannot be
/// read at all; everything wrong inside it is a [`Finding`] in the report.
pub fn verify_replica(
    replica: &Replica,
    trusted: &TrustedKeys,
    options: &VerifyOptions,
) -> Result<AuditReport, ReplicaError> {
    let started = Instant::now();
    let selected = options.sequences.clone().unwrap_or(0..=u64::MAX);
    let mut walk = Walk {
        trusted,
        selected: selected.clone(),
        streams: BTreeMap::new(),
        signed: Vec::new(),
        key_usage: BTreeMap::new(),
        unselected_failures: Vec::new(),
        findings: Findings::new(options.max_findings_listed),
        segments_stored: 0,
        segments_selected: 0,
        segments_verified: 0,
        records_signed: 0,
        links_checked: 0,
    };

    let bar = progress_bar(options.progress, replica.counters().segments_applied, "verifying segments");
    // A damaged entry is named and the walk goes on with the next one (the scan skips it).
    for item in replica.segments(SegmentKey::FIRST) {
        match item {
            Ok(stored) => walk.visit(&stored),
            Err(ReplicaError::AuditEntryDamaged { key, key_bytes, reason, .. }) => {
                walk.visit_damaged(key, &key_bytes, reason);
            }
            Err(error) => return Err(error),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    let (mut epochs, gaps, unrecorded) = compare_with_tracker(replica, &walk, &selected);
    for finding in epoch_boundaries(replica, trusted, &mut epochs)? {
        walk.findings.push(finding);
    }
    for gap in gaps.iter().filter(|gap| gap.kind == GapKind::RemovedAfterApply) {
        walk.findings.push(Finding::SegmentsRemoved {
            sender_id: gap.sender_id,
            epoch: gap.epoch,
            first_sequence: gap.first_sequence,
            last_sequence: gap.last_sequence,
        });
    }
    for (sender_id, epoch, run) in unrecorded {
        walk.findings.push(Finding::SegmentsUnrecorded {
            sender_id,
            epoch,
            first_sequence: *run.start(),
            last_sequence: *run.end(),
        });
    }

    // The data-time span to compare: everything, or what the selected segments cover.
    let point_span = if options.sequences.is_none() {
        Some((i64::MIN, i64::MAX))
    } else {
        walk.signed
            .iter()
            .filter(|segment| segment.selected)
            .map(|segment| (segment.min_timestamp_ns, segment.max_timestamp_ns))
            .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
    };
    let overlaps = |range: Option<(i64, i64)>| match (point_span, range) {
        (Some((from, to)), Some((min, max))) => min <= to && max >= from,
        _ => false,
    };
    for failure in std::mem::take(&mut walk.unselected_failures) {
        if overlaps(failure.time_range) {
            walk.findings.push(failure.finding);
        }
    }

    let walk_seconds = started.elapsed().as_secs_f64();
    let mut findings = walk.findings;
    let points = match point_span {
        Some(span) => {
            let used: Vec<SignedSegment> = walk
                .signed
                .into_iter()
                .filter(|s| s.max_timestamp_ns >= span.0 && s.min_timestamp_ns <= span.1)
                .collect();
            let (totals, point_findings) = points::compare(replica, trusted, used, span, options)?;
            findings.merge(point_findings);
            totals
        }
        None => Default::default(),
    };

    Ok(AuditReport {
        replica: replica.path().to_owned(),
        sequences: options.sequences.as_ref().map(|range| (*range.start(), *range.end())),
        trusted_keys: trusted
            .iter()
            .map(|key| TrustedKeySummary {
                key_id: key.key_id,
                valid_from_ns: key.valid_from_ns,
                valid_until_ns: key.valid_until_ns,
            })
            .collect(),
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

/// Stored sequences the receiver's tracker never recorded as applied, per stream.
type Unrecorded = Vec<(u64, u64, RangeInclusive<u64>)>;

/// Epoch summaries, gaps and unrecorded entries: the tracker's view of each stream against the
/// stored sequences.
fn compare_with_tracker(
    replica: &Replica,
    walk: &Walk<'_>,
    selected: &RangeInclusive<u64>,
) -> (Vec<EpochReport>, Vec<GapReport>, Unrecorded) {
    let trackers: BTreeMap<(u64, u64), _> =
        replica.streams().into_iter().map(|status| ((status.sender_id, status.epoch), status)).collect();
    let mut keys: Vec<(u64, u64)> = trackers.keys().chain(walk.streams.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    let empty = StreamWalk::default();
    let mut epochs = Vec::with_capacity(keys.len());
    let mut gaps = Vec::new();
    let mut unrecorded = Vec::new();
    for (sender_id, epoch) in keys {
        let stream = walk.streams.get(&(sender_id, epoch)).unwrap_or(&empty);
        let tracker = trackers.get(&(sender_id, epoch));
        epochs.push(EpochReport {
            sender_id,
            epoch,
            first_sequence: stream.selected_first,
            last_sequence: stream.selected_last,
            stored_segments: stream.selected_count,
            highest_known: tracker.map_or(0, |t| t.highest_known),
            first_seen_at_ns: tracker.map(|t| t.first_seen_at_ns),
            first_sealed_at_ns: stream.first_sealed_at_ns,
            announced_by_beacon: tracker.is_some_and(|t| t.announced_by_beacon),
            begins_at_genesis: stream.begins_at_genesis,
            announcement: None,
            reason: None,
            ended_at_sequence: None,
            end_hash_verified: None,
        });
        // Known = 1..=highest known; applied = known minus the tracker's missing ranges.
        let known: Vec<RangeInclusive<u64>> = match tracker {
            Some(tracker) if tracker.highest_known > 0 => vec![1..=tracker.highest_known],
            _ => Vec::new(),
        };
        let never_applied = tracker.map_or(Vec::new(), |tracker| tracker.missing.clone());
        let applied = subtract_ranges(&known, &never_applied);
        let stored = clip_ranges(&stream.stored, selected);
        let mut add_gaps = |ranges: Vec<RangeInclusive<u64>>, kind: GapKind| {
            gaps.extend(ranges.into_iter().map(|range| GapReport {
                sender_id,
                epoch,
                first_sequence: *range.start(),
                last_sequence: *range.end(),
                kind,
            }));
        };
        add_gaps(clip_ranges(&subtract_ranges(&never_applied, &stored), selected), GapKind::NeverReceived);
        add_gaps(clip_ranges(&subtract_ranges(&applied, &stream.stored), selected), GapKind::RemovedAfterApply);
        unrecorded.extend(subtract_ranges(&stored, &applied).into_iter().map(|run| (sender_id, epoch, run)));
    }
    gaps.sort_by_key(|gap| (gap.sender_id, gap.epoch, gap.first_sequence));
    (epochs, gaps, unrecorded)
}

/// What the senders' signed beacons say about where epochs begin and end. For each epoch, the
/// beacon the replica kept of it (the first received; for a replica written before those were kept,
/// the sender's latest beacon when it is of that epoch) is verified: it gives the reason the epoch
/// began, and the last sequence and hash of the epoch before, which are checked against the stored
/// segment at that position.
fn epoch_boundaries(
    replica: &Replica,
    trusted: &TrustedKeys,
    epochs: &mut [EpochReport],
) -> Result<Vec<Finding>, ReplicaError> {
    let mut findings = Vec::new();
    for index in 0..epochs.len() {
        let (sender_id, epoch) = (epochs[index].sender_id, epochs[index].epoch);
        let invalid = |message: String| Finding::BeaconInvalid { sender_id, epoch, message };
        let kept = match replica.epoch_beacon(sender_id, epoch) {
            Ok(Some(kept)) => Some(kept),
            Ok(None) => replica
                .last_beacon(sender_id)?
                .filter(|(summary, _)| summary.epoch == epoch)
                .map(|(summary, raw)| (summary.received_at_ns, raw)),
            Err(error @ ReplicaError::Storage { .. }) => return Err(error),
            Err(damaged) => {
                findings.push(invalid(damaged.to_string()));
                None
            }
        };
        let Some((received_at_ns, raw)) = kept else { continue };
        let beacon = match Beacon::open(&raw, trusted) {
            Ok(beacon) if (beacon.sender_id, beacon.epoch) == (sender_id, epoch) => beacon,
            Ok(beacon) => {
                let why = format!("it is a beacon of sender {} epoch {}", beacon.sender_id, beacon.epoch);
                findings.push(invalid(why.clone()));
                epochs[index].announcement = Some(Announcement { received_at_ns, verified: Err(why) });
                continue;
            }
            Err(error) => {
                // A key no longer trusted (rotated out, revoked) says nothing; a trusted key whose
                // signature fails means the kept bytes were altered.
                if !matches!(error, BeaconError::UnknownKey { .. } | BeaconError::KeyNotValidAt { .. }) {
                    findings.push(invalid(error.to_string()));
                }
                epochs[index].announcement = Some(Announcement { received_at_ns, verified: Err(error.to_string()) });
                continue;
            }
        };
        epochs[index].reason = Some(beacon.epoch_reason.label());
        epochs[index].announcement = Some(Announcement {
            received_at_ns,
            verified: Ok(SignedAnnouncement {
                key_id: beacon.key_id,
                sent_at_ns: beacon.sent_at_ns,
                epoch_started_at_ns: beacon.epoch_started_at_ns,
            }),
        });
        findings.extend(head_mismatch(replica, &beacon)?);
        if beacon.previous_epoch == 0 || beacon.previous_epoch_last_sequence == 0 {
            continue;
        }
        let last =
            SegmentKey { sender_id, epoch: beacon.previous_epoch, sequence: beacon.previous_epoch_last_sequence };
        let stored_hash = stored_hash(replica, last)?;
        let verified = stored_hash.map(|hash| hash == beacon.previous_epoch_last_hash);
        if let (Some(false), Some(hash)) = (verified, stored_hash) {
            findings.push(Finding::EpochEndMismatch {
                segment: last,
                beacon_hash: hash_hex(&beacon.previous_epoch_last_hash),
                stored_hash: hash_hex(&hash),
            });
        }
        if let Some(previous) =
            epochs.iter_mut().find(|report| (report.sender_id, report.epoch) == (sender_id, last.epoch))
        {
            previous.ended_at_sequence = Some(last.sequence);
            previous.end_hash_verified = verified;
        }
    }
    // The sender's latest beacon names the newest head of all.
    let mut senders: Vec<u64> = epochs.iter().map(|report| report.sender_id).collect();
    senders.sort_unstable();
    senders.dedup();
    for sender_id in senders {
        let Some((_, raw)) = replica.last_beacon(sender_id).ok().flatten() else { continue };
        let Ok(beacon) = Beacon::open(&raw, trusted) else { continue };
        if let Some(finding) = head_mismatch(replica, &beacon)?
            && !findings.contains(&finding)
        {
            findings.push(finding);
        }
    }
    Ok(findings)
}

/// The hash of the stored segment at `key`, if it is stored and readable.
fn stored_hash(replica: &Replica, key: SegmentKey) -> Result<Option<SegmentHash>, ReplicaError> {
    match replica.stored_segment(key) {
        Ok(stored) => Ok(stored.and_then(|stored| seal::parse(&stored.sealed).ok()).map(|segment| segment.hash())),
        Err(error @ ReplicaError::Storage { .. }) => Err(error),
        Err(_) => Ok(None),
    }
}

/// A finding when `beacon`'s signed head is not the stored segment at that position.
fn head_mismatch(replica: &Replica, beacon: &Beacon) -> Result<Option<Finding>, ReplicaError> {
    if beacon.head_sequence == 0 {
        return Ok(None);
    }
    let head = SegmentKey { sender_id: beacon.sender_id, epoch: beacon.epoch, sequence: beacon.head_sequence };
    Ok(stored_hash(replica, head)?.filter(|stored| *stored != beacon.head_hash).map(|stored| {
        Finding::BeaconHeadMismatch {
            segment: head,
            beacon_hash: hash_hex(&beacon.head_hash),
            stored_hash: hash_hex(&stored),
        }
    }))
}

/// A progress bar on stderr, or a hidden one.
pub(crate) fn progress_bar(visible: bool, length: u64, what: &str) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(length);
    let template = format!("{{spinner}} {what} [{{bar:40}}] {{human_pos}}/{{human_len}} {{per_sec}} eta {{eta}}");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

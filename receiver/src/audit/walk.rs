//! The walk of `audit verify` over the audit log: every stored segment checked on its own
//! (framing, position, trusted key valid at its sealing time, signature, payload hash) and against
//! the stored segment before it in its `(sender, epoch)` (the hash chain). What it keeps (the
//! stored sequences of each stream, the segments that verified, the keys used, the findings) is
//! what the comparisons start from.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use diode_common::keys::{KeyId, TrustedKeys, encode_hex};
use diode_common::seal::{self, GENESIS_HASH, OpenError, SegmentHash, SegmentHeader};
use diode_replica::{Replica, ReplicaError, SegmentKey, StoredSegment};

use super::findings::{Finding, Findings, hash_hex};
use super::options::{VerifyOptions, progress_bar};
use super::parallel;
use super::report::KeyUsage;
use super::signed::SignedSegment;

/// What the walk keeps of one `(sender, epoch)`.
#[derive(Debug, Default)]
pub(super) struct StreamWalk {
    /// Stored sequences as ascending runs (selected or not: the tracker comparison needs all).
    pub stored: Vec<RangeInclusive<u64>>,
    /// The previous stored segment's sequence and header hash, if it parsed.
    previous: Option<(u64, Option<SegmentHash>)>,
    pub selected_first: Option<u64>,
    pub selected_last: Option<u64>,
    pub selected_count: u64,
    pub first_sealed_at_ns: Option<i64>,
    pub begins_at_genesis: bool,
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

/// What the walk saw: the streams, the segments that verified, the keys used, the counts and the
/// findings so far.
pub(super) struct Walk {
    selected: RangeInclusive<u64>,
    pub streams: BTreeMap<(u64, u64), StreamWalk>,
    pub signed: Vec<SignedSegment>,
    pub key_usage: BTreeMap<KeyId, KeyUsage>,
    unselected_failures: Vec<UnselectedFailure>,
    pub findings: Findings,
    pub segments_stored: u64,
    pub segments_selected: u64,
    pub segments_verified: u64,
    pub records_signed: u64,
    pub links_checked: u64,
}

/// Walks the whole audit log in key order, checking every stored segment with the sequences in
/// `selected` (in every stream) fully and the others only for what the point comparison needs.
/// A damaged entry is named and the walk goes on with the next one. Errors only when the log
/// cannot be read.
pub(super) fn walk_audit_log(
    replica: &Replica,
    trusted: &TrustedKeys,
    selected: RangeInclusive<u64>,
    options: &VerifyOptions,
) -> Result<Walk, ReplicaError> {
    let mut walk = Walk {
        selected,
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
    let threads = options.threads.max(1);
    let mut entries = replica.segments(SegmentKey::FIRST);
    let mut batch: Vec<Result<StoredSegment, ReplicaError>> = Vec::new();
    loop {
        // A batch of entries in key order, read here, checked on their own on every thread, then
        // visited in order (the chain and the bookkeeping are sequential).
        batch.clear();
        let mut batch_bytes = 0;
        while batch.len() < BATCH_SEGMENTS && batch_bytes < BATCH_BYTES {
            let Some(item) = entries.next() else { break };
            batch_bytes += item.as_ref().map_or(0, |stored| stored.sealed.len());
            batch.push(item);
        }
        if batch.is_empty() {
            break;
        }
        let checks = check_all(&batch, trusted, threads);
        // A damaged entry is named and the walk goes on with the next one (the scan skips it).
        for (item, checked) in batch.drain(..).zip(checks) {
            match (item, checked) {
                (Ok(stored), Some(checked)) => walk.visit(&stored, checked),
                (Err(ReplicaError::AuditEntryDamaged { key, key_bytes, reason, .. }), _) => {
                    walk.visit_damaged(key, &key_bytes, reason);
                }
                (Err(error), _) => return Err(error),
                (Ok(_), None) => unreachable!("every stored segment is checked"),
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(walk)
}

/// Most stored segments, and about the most sealed bytes, the walk holds at once.
const BATCH_SEGMENTS: usize = 256;
const BATCH_BYTES: usize = 32 << 20;

/// One stored segment checked on its own: its header, header hash and signed hash, and whether
/// its signature, key and payload hash verify; or why it does not parse.
type Checked = Result<(SegmentHeader, Hashes, Result<(), OpenError>), OpenError>;

/// A segment's header hash (what the next segment links to) and signed hash (its header and
/// signature, for the comparison).
#[derive(Clone, Copy)]
struct Hashes {
    header: SegmentHash,
    signed: SegmentHash,
}

fn check(stored: &StoredSegment, trusted: &TrustedKeys) -> Checked {
    let segment = seal::parse(&stored.sealed)?;
    let verified = seal::verify(&segment, trusted);
    let hashes = Hashes { header: segment.header.hash(), signed: segment.signed_hash() };
    Ok((segment.header, hashes, verified))
}

/// [`check`] of every stored segment of `batch`, on `threads` threads, in batch order.
fn check_all(
    batch: &[Result<StoredSegment, ReplicaError>],
    trusted: &TrustedKeys,
    threads: usize,
) -> Vec<Option<Checked>> {
    let check_some = |items: &[Result<StoredSegment, ReplicaError>]| -> Vec<Option<Checked>> {
        items.iter().map(|item| item.as_ref().ok().map(|stored| check(stored, trusted))).collect()
    };
    parallel::in_batches(batch, 4, threads, check_some).into_iter().flatten().collect()
}

impl Walk {
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

    /// Takes in one stored segment, `checked` on its own ([`check`]), and checks it against the
    /// stored segment before it.
    fn visit(&mut self, stored: &StoredSegment, checked: Checked) {
        let key = stored.key;
        self.segments_stored += 1;
        let selected = self.selected.contains(&key.sequence);
        self.segments_selected += u64::from(selected);
        let stream = self.streams.entry((key.sender_id, key.epoch)).or_default();
        stream.add_stored(key.sequence);
        let previous = stream.previous.take();

        let (header, hashes, verified) = match checked {
            Ok(checked) => checked,
            Err(error) => {
                stream.previous = Some((key.sequence, None));
                let finding =
                    Finding::SegmentInvalid { segment: key, check: error.reason_label(), message: error.to_string() };
                self.report(selected, None, finding);
                return;
            }
        };
        let header = &header;
        stream.previous = Some((key.sequence, Some(hashes.header)));
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
        if let Err(error) = verified {
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
            signed_hash: hashes.signed,
            min_timestamp_ns: header.min_timestamp_ns,
            max_timestamp_ns: header.max_timestamp_ns,
            record_count: header.record_count,
            selected,
        });
    }

    /// The data-time span the selected segments that verified cover, if any.
    pub(super) fn selected_span(&self) -> Option<(i64, i64)> {
        self.signed
            .iter()
            .filter(|segment| segment.selected)
            .map(|segment| (segment.min_timestamp_ns, segment.max_timestamp_ns))
            .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
    }

    /// Reports the failed segments outside the selected sequences whose time range overlaps
    /// `point_span`, the span whose points are compared.
    pub(super) fn report_unselected_failures(&mut self, point_span: Option<(i64, i64)>) {
        let overlaps = |range: Option<(i64, i64)>| match (point_span, range) {
            (Some((from, to)), Some((min, max))) => min <= to && max >= from,
            _ => false,
        };
        for failure in std::mem::take(&mut self.unselected_failures) {
            if overlaps(failure.time_range) {
                self.findings.push(failure.finding);
            }
        }
    }

    /// Takes the segments that verified and hold data time in `span`: the ones to decode.
    pub(super) fn take_signed_within(&mut self, span: (i64, i64)) -> Vec<SignedSegment> {
        std::mem::take(&mut self.signed)
            .into_iter()
            .filter(|s| s.max_timestamp_ns >= span.0 && s.min_timestamp_ns <= span.1)
            .collect()
    }
}

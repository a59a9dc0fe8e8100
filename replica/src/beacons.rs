//! Beacons: what a verified beacon teaches the replica (heads, so that sequences never received
//! show as gaps), the beacons it keeps (each sender's latest; the first of every epoch, for
//! audits), and whether a beacon's signed head is the segment stored there.

use diode_common::beacon::Beacon;
use diode_common::seal::SegmentHash;
use rocksdb::WriteBatch;

use crate::error::{ReplicaError, describe_segment};
use crate::layout::{self, BeaconSummary, CF_META, META_COUNTERS, STREAM_ANNOUNCED_BY_BEACON, SegmentKey};
use crate::open::Replica;
use crate::state::StreamState;

/// What a beacon's signed head says of the stored chain: see [`Replica::record_beacon`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadCheck {
    /// The head segment is not stored (not received yet, or no head).
    NotStored,
    /// The stored segment is the one the beacon signed.
    Matches,
    /// Two signed segments claim one place: the sender's chain forked (state lost without a new
    /// epoch) or a trusted key signed segments it should not have.
    Differs {
        /// The head's position.
        segment: SegmentKey,
        /// The head hash the beacon signed.
        signed_hash: SegmentHash,
        /// The hash of the segment stored at that position.
        stored_hash: SegmentHash,
    },
}

impl Replica {
    /// Records a verified beacon: its head (and its previous epoch's last sequence) become known,
    /// so sequences never received show as gaps; the sender's latest beacon is kept with its raw
    /// signed bytes, and so is the first beacon received of each epoch (for audits). A beacon older
    /// than the one kept (reordered on the link) still teaches heads. Says whether the segment the
    /// beacon names as its head is stored, and if so whether it is the one the beacon signed.
    pub fn record_beacon(
        &mut self,
        beacon: &Beacon,
        raw: &[u8],
        received_at_ns: i64,
    ) -> Result<HeadCheck, ReplicaError> {
        let sync = self.require_writable()?;
        let meta = self.cf(CF_META);
        let mut batch = WriteBatch::default();
        let mut streams = vec![((beacon.sender_id, beacon.epoch), beacon.head_sequence)];
        if beacon.previous_epoch != 0
            && beacon.previous_epoch != beacon.epoch
            && beacon.previous_epoch_last_sequence > 0
        {
            streams.push(((beacon.sender_id, beacon.previous_epoch), beacon.previous_epoch_last_sequence));
        }
        let mut updated = Vec::with_capacity(streams.len());
        for (key, head_sequence) in streams {
            let mut stream = self.state.streams.get(&key).cloned().unwrap_or_else(|| StreamState::new(received_at_ns));
            stream.flags |= STREAM_ANNOUNCED_BY_BEACON;
            stream.tracker.on_head_announced(head_sequence);
            batch.put_cf(meta, layout::stream_key(key.0, key.1), stream.to_bytes());
            updated.push((key, stream));
        }
        let summary = BeaconSummary {
            received_at_ns,
            sent_at_ns: beacon.sent_at_ns,
            epoch: beacon.epoch,
            head_sequence: beacon.head_sequence,
            head_hash: beacon.head_hash,
            oldest_retained_sequence: beacon.oldest_retained_sequence,
            records_sealed: beacon.records_sealed,
            spooled_records: beacon.spooled_records,
            previous_epoch: beacon.previous_epoch,
            previous_epoch_last_sequence: beacon.previous_epoch_last_sequence,
            software: beacon.software.clone(),
        };
        // The first beacon of each epoch is kept for audits: why it began, where the last ended.
        let epoch_beacon_key = layout::epoch_beacon_key(beacon.sender_id, beacon.epoch);
        let epoch_beacon_kept = self
            .db
            .get_pinned_cf(meta, epoch_beacon_key)
            .map_err(|source| ReplicaError::storage(&self.path, "reading an epoch beacon", source))?
            .is_some();
        if !epoch_beacon_kept {
            batch.put_cf(meta, epoch_beacon_key, layout::encode_epoch_beacon_entry(received_at_ns, raw));
        }
        // By epoch and sending time, not by head: a later beacon naming a lower head in the same
        // epoch (a sender that lost state without starting a new epoch) is kept, so the audit
        // sees the fork it signed.
        let is_latest = self
            .state
            .beacons
            .get(&beacon.sender_id)
            .is_none_or(|kept| (beacon.epoch, beacon.sent_at_ns) >= (kept.epoch, kept.sent_at_ns));
        if is_latest {
            batch.put_cf(meta, layout::beacon_key(beacon.sender_id), layout::encode_beacon_entry(&summary, raw));
        }
        let mut counters = self.state.counters;
        counters.beacons_recorded += 1;
        batch.put_cf(meta, META_COUNTERS, counters.to_bytes());
        self.write(batch, sync, "recording a beacon")?;
        self.state.streams.extend(updated);
        if is_latest {
            self.state.beacons.insert(beacon.sender_id, summary);
        }
        self.state.counters = counters;
        self.check_head(beacon)
    }

    /// Compares a beacon's signed head with the stored segment at that position.
    fn check_head(&self, beacon: &Beacon) -> Result<HeadCheck, ReplicaError> {
        if beacon.head_sequence == 0 {
            return Ok(HeadCheck::NotStored);
        }
        let head = SegmentKey { sender_id: beacon.sender_id, epoch: beacon.epoch, sequence: beacon.head_sequence };
        let Some(stored) = self.stored_segment(head)? else { return Ok(HeadCheck::NotStored) };
        let stored_hash = diode_common::seal::parse(&stored.sealed)
            .map_err(|error| ReplicaError::corrupt(&self.path, &describe_segment(head), error))?
            .hash();
        Ok(if stored_hash == beacon.head_hash {
            HeadCheck::Matches
        } else {
            HeadCheck::Differs { segment: head, signed_hash: beacon.head_hash, stored_hash }
        })
    }

    /// The latest beacon kept for `sender_id`: its summary and raw signed bytes.
    pub fn last_beacon(&self, sender_id: u64) -> Result<Option<(BeaconSummary, Vec<u8>)>, ReplicaError> {
        let stored = self
            .db
            .get_pinned_cf(self.cf(CF_META), layout::beacon_key(sender_id))
            .map_err(|source| ReplicaError::storage(&self.path, "reading a beacon", source))?;
        let Some(entry) = stored else { return Ok(None) };
        let (summary, raw) = layout::decode_beacon_entry(&entry).map_err(|reason| {
            ReplicaError::corrupt(&self.path, &format!("the beacon of sender {sender_id}"), reason)
        })?;
        Ok(Some((summary, raw.to_vec())))
    }

    /// The first beacon received of `epoch` of `sender_id` (the one that announced it), with when
    /// it was received; its raw signed bytes are for the caller to verify.
    pub fn epoch_beacon(&self, sender_id: u64, epoch: u64) -> Result<Option<(i64, Vec<u8>)>, ReplicaError> {
        let key = layout::epoch_beacon_key(sender_id, epoch);
        let stored = self
            .db
            .get_pinned_cf(self.cf(CF_META), key)
            .map_err(|source| ReplicaError::storage(&self.path, "reading an epoch beacon", source))?;
        let Some(entry) = stored else { return Ok(None) };
        let (received_at_ns, raw) = layout::decode_epoch_beacon_entry(&entry).map_err(|reason| {
            ReplicaError::corrupt(&self.path, &format!("the kept beacon of sender {sender_id} epoch {epoch}"), reason)
        })?;
        Ok(Some((received_at_ns, raw.to_vec())))
    }
}

//! What the replica's integration tests share: a chain of sealed, signed segments.

use diode_common::codec::{SeriesColumns, group_records};
use diode_common::keys::SenderKey;
use diode_common::record::Record;
use diode_common::seal::{self, ChainPosition, GENESIS_HASH, SealedSegment, SegmentHash};

/// 2024-01-01T00:00:00Z: the chain's seal times are this plus a second per sequence.
pub(crate) const T0: i64 = 1_704_067_200_000_000_000;
pub(crate) const SECOND: i64 = 1_000_000_000;

/// The key every chain seals with.
pub(crate) fn key() -> SenderKey {
    SenderKey::from_seed([3u8; 32])
}

/// A segment and its decoded payload, as `Replica::apply` takes them.
pub(crate) type Segment = (SealedSegment, Vec<SeriesColumns>);

/// Seals consecutive segments of one (sender, epoch) chain under one key.
pub(crate) struct Chain {
    key: SenderKey,
    sender_id: u64,
    epoch: u64,
    next_sequence: u64,
    previous_hash: SegmentHash,
}

impl Chain {
    pub(crate) fn new(sender_id: u64, epoch: u64) -> Chain {
        Chain { key: key(), sender_id, epoch, next_sequence: 1, previous_hash: GENESIS_HASH }
    }

    /// The next segment of the chain, holding `records`.
    pub(crate) fn seal(&mut self, records: &[Record]) -> Segment {
        let segment = self.seal_at(self.next_sequence, self.previous_hash, &group_records(records));
        self.next_sequence += 1;
        self.previous_hash = segment.0.hash();
        segment
    }

    /// Seals `series` at any position, linked to any previous hash (for forks and forgeries),
    /// at `T0` plus a second per sequence.
    pub(crate) fn seal_at(&self, sequence: u64, previous_hash: SegmentHash, series: &[SeriesColumns]) -> Segment {
        let position = ChainPosition { sender_id: self.sender_id, epoch: self.epoch, sequence, previous_hash };
        let segment = seal::seal(position, series, 3, T0 + sequence as i64 * SECOND, &self.key);
        let decoded = seal::decode_verified(&segment).expect("a sealed segment decodes");
        (segment, decoded)
    }
}

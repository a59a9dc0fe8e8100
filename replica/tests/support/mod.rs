//! What the replica's integration tests share: a chain of sealed, signed segments.

use diode_common::codec::{SeriesColumns, group_records};
use diode_common::keys::SenderKey;
use diode_common::record::Record;
use diode_common::seal::{self, ChainPosition, GENESIS_HASH, SealedSegment, SegmentHash};

/// 2024-01-01T00:00:00Z: every segment's seal time.
pub(crate) const T0: i64 = 1_704_067_200_000_000_000;

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
        Chain { key: SenderKey::from_seed([3u8; 32]), sender_id, epoch, next_sequence: 1, previous_hash: GENESIS_HASH }
    }

    /// The next segment of the chain, holding `records`.
    pub(crate) fn seal(&mut self, records: &[Record]) -> Segment {
        let position = ChainPosition {
            sender_id: self.sender_id,
            epoch: self.epoch,
            sequence: self.next_sequence,
            previous_hash: self.previous_hash,
        };
        let segment = seal::seal(position, &group_records(records), 3, T0, &self.key);
        self.next_sequence += 1;
        self.previous_hash = segment.hash();
        let decoded = seal::decode_verified(&segment).expect("a sealed segment decodes");
        (segment, decoded)
    }
}

//! The signed beacon: the sender's heartbeat, sent about once a second.
//!
//! Without a back channel the receiver cannot ask "are you there?". The beacon tells it the
//! sender's head (latest sequence and hash) so it can see gaps and lag while the link is idle, tell
//! a quiet plant from a cut cable, and learn where each epoch began and why.
//!
//! Layout (big-endian), signed with ed25519 over bytes 0..180, then the 64-byte signature:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | magic `DBCN` |
//! | 4 | 1 | format version (1) |
//! | 5 | 1 | epoch start reason (0 continuing, 1 first start, 2 spool lost, 3 operator) |
//! | 6 | 2 | flags (0) |
//! | 8 | 8 | sender id |
//! | 16 | 8 | key id |
//! | 24 | 8 | epoch |
//! | 32 | 8 | head sequence (0: nothing sealed yet in this epoch) |
//! | 40 | 32 | head segment hash (zeros when head sequence is 0) |
//! | 72 | 8 | sent at, ns since the Unix epoch |
//! | 80 | 8 | epoch started at, ns |
//! | 88 | 8 | oldest sequence still retained for resend |
//! | 96 | 8 | records sealed in this epoch |
//! | 104 | 8 | datagrams sent since start |
//! | 112 | 8 | previous epoch (0: none) |
//! | 120 | 8 | previous epoch's last sequence |
//! | 128 | 32 | previous epoch's last segment hash |
//! | 160 | 8 | records waiting in the spool |
//! | 168 | 8 | beacon counter (monotonic within a process run) |
//! | 176 | 4 | link rate, kbit/s |
//! | 180 | 64 | ed25519 signature |

use crate::keys::{KeyId, SenderKey, TrustedKeys};
use crate::seal::SegmentHash;

pub const BEACON_MAGIC: [u8; 4] = *b"DBCN";
pub const BEACON_FORMAT_VERSION: u8 = 1;
const SIGNED_LENGTH: usize = 180;
pub const BEACON_LENGTH: usize = SIGNED_LENGTH + 64;

/// Where a beacon stands in its sender's stream, for keeping only the newest: compared as
/// (epoch, head sequence, sent at). Within an epoch the head never goes back, and while the link
/// is idle the sending time moves on; the beacon counter restarts with the process, so it is not
/// used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BeaconOrder {
    pub epoch: u64,
    pub head_sequence: u64,
    pub sent_at_ns: i64,
}

/// The sender id and [`BeaconOrder`] a beacon claims, read **without verifying** it: only for
/// dropping a beacon that is not newer than one already verified (a replay) before paying for
/// its signature check. Nothing read here may be trusted or stored. `None` if the bytes cannot be
/// a beacon.
pub fn peek_order(bytes: &[u8]) -> Option<(u64, BeaconOrder)> {
    if bytes.len() != BEACON_LENGTH || bytes[0..4] != BEACON_MAGIC || bytes[4] != BEACON_FORMAT_VERSION {
        return None;
    }
    let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let order = BeaconOrder { epoch: u64_at(24), head_sequence: u64_at(32), sent_at_ns: u64_at(72) as i64 };
    Some((u64_at(8), order))
}

/// Why the epoch a beacon reports began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EpochReason {
    Continuing = 0,
    FirstStart = 1,
    SpoolLost = 2,
    Operator = 3,
}

impl EpochReason {
    fn from_u8(byte: u8) -> Option<EpochReason> {
        match byte {
            0 => Some(Self::Continuing),
            1 => Some(Self::FirstStart),
            2 => Some(Self::SpoolLost),
            3 => Some(Self::Operator),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Continuing => "continuing",
            Self::FirstStart => "first start",
            Self::SpoolLost => "spool lost",
            Self::Operator => "operator",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beacon {
    pub epoch_reason: EpochReason,
    pub sender_id: u64,
    pub key_id: KeyId,
    pub epoch: u64,
    pub head_sequence: u64,
    pub head_hash: SegmentHash,
    pub sent_at_ns: i64,
    pub epoch_started_at_ns: i64,
    pub oldest_retained_sequence: u64,
    pub records_sealed: u64,
    pub datagrams_sent: u64,
    pub previous_epoch: u64,
    pub previous_epoch_last_sequence: u64,
    pub previous_epoch_last_hash: SegmentHash,
    pub spooled_records: u64,
    pub beacon_counter: u64,
    pub link_rate_kbit_s: u32,
}

impl Beacon {
    /// Where this beacon stands in its sender's stream.
    pub fn order(&self) -> BeaconOrder {
        BeaconOrder { epoch: self.epoch, head_sequence: self.head_sequence, sent_at_ns: self.sent_at_ns }
    }

    fn signed_bytes(&self) -> [u8; SIGNED_LENGTH] {
        let mut b = [0u8; SIGNED_LENGTH];
        b[0..4].copy_from_slice(&BEACON_MAGIC);
        b[4] = BEACON_FORMAT_VERSION;
        b[5] = self.epoch_reason as u8;
        b[8..16].copy_from_slice(&self.sender_id.to_be_bytes());
        b[16..24].copy_from_slice(&self.key_id.0);
        b[24..32].copy_from_slice(&self.epoch.to_be_bytes());
        b[32..40].copy_from_slice(&self.head_sequence.to_be_bytes());
        b[40..72].copy_from_slice(&self.head_hash);
        b[72..80].copy_from_slice(&self.sent_at_ns.to_be_bytes());
        b[80..88].copy_from_slice(&self.epoch_started_at_ns.to_be_bytes());
        b[88..96].copy_from_slice(&self.oldest_retained_sequence.to_be_bytes());
        b[96..104].copy_from_slice(&self.records_sealed.to_be_bytes());
        b[104..112].copy_from_slice(&self.datagrams_sent.to_be_bytes());
        b[112..120].copy_from_slice(&self.previous_epoch.to_be_bytes());
        b[120..128].copy_from_slice(&self.previous_epoch_last_sequence.to_be_bytes());
        b[128..160].copy_from_slice(&self.previous_epoch_last_hash);
        b[160..168].copy_from_slice(&self.spooled_records.to_be_bytes());
        b[168..176].copy_from_slice(&self.beacon_counter.to_be_bytes());
        b[176..180].copy_from_slice(&self.link_rate_kbit_s.to_be_bytes());
        b
    }

    /// Signs and serialises; `key` must be the key named by `key_id`.
    pub fn sign(&self, key: &SenderKey) -> Vec<u8> {
        assert_eq!(self.key_id, key.key_id(), "a beacon names the key that signs it");
        let signed = self.signed_bytes();
        let mut bytes = Vec::with_capacity(BEACON_LENGTH);
        bytes.extend_from_slice(&signed);
        bytes.extend_from_slice(&key.sign(&signed));
        bytes
    }

    /// Parses and verifies a beacon; total over any input.
    pub fn open(bytes: &[u8], trusted: &TrustedKeys) -> Result<Beacon, BeaconError> {
        if bytes.len() != BEACON_LENGTH {
            return Err(BeaconError::WrongLength { length_bytes: bytes.len() });
        }
        if bytes[0..4] != BEACON_MAGIC || bytes[4] != BEACON_FORMAT_VERSION || bytes[6..8] != [0, 0] {
            return Err(BeaconError::Unsupported);
        }
        let key_id = KeyId(bytes[16..24].try_into().expect("8 bytes"));
        let key = trusted.get(key_id).ok_or(BeaconError::UnknownKey { key_id })?;
        let signature = ed25519_dalek::Signature::from_bytes(bytes[SIGNED_LENGTH..].try_into().expect("64 bytes"));
        key.public_key
            .verify_strict(&bytes[..SIGNED_LENGTH], &signature)
            .map_err(|_| BeaconError::BadSignature { key_id })?;
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let i64_at = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let hash_at = |at: usize| -> [u8; 32] { bytes[at..at + 32].try_into().expect("32 bytes") };
        let beacon = Beacon {
            epoch_reason: EpochReason::from_u8(bytes[5]).ok_or(BeaconError::Unsupported)?,
            sender_id: u64_at(8),
            key_id,
            epoch: u64_at(24),
            head_sequence: u64_at(32),
            head_hash: hash_at(40),
            sent_at_ns: i64_at(72),
            epoch_started_at_ns: i64_at(80),
            oldest_retained_sequence: u64_at(88),
            records_sealed: u64_at(96),
            datagrams_sent: u64_at(104),
            previous_epoch: u64_at(112),
            previous_epoch_last_sequence: u64_at(120),
            previous_epoch_last_hash: hash_at(128),
            spooled_records: u64_at(160),
            beacon_counter: u64_at(168),
            link_rate_kbit_s: u32::from_be_bytes(bytes[176..180].try_into().expect("4 bytes")),
        };
        if !key.is_valid_at(beacon.sent_at_ns) {
            return Err(BeaconError::KeyNotValidAt { key_id });
        }
        Ok(beacon)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeaconError {
    #[error("beacon is {length_bytes} bytes; expected {BEACON_LENGTH}")]
    WrongLength { length_bytes: usize },
    #[error("beacon magic, version, flags or epoch reason not supported by this build")]
    Unsupported,
    #[error("beacon is signed by key {key_id}, which is not trusted")]
    UnknownKey { key_id: KeyId },
    #[error("beacon signature by key {key_id} does not verify")]
    BadSignature { key_id: KeyId },
    #[error("key {key_id} is not valid at the beacon's sending time")]
    KeyNotValidAt { key_id: KeyId },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beacon(key: &SenderKey) -> Beacon {
        Beacon {
            epoch_reason: EpochReason::SpoolLost,
            sender_id: 1,
            key_id: key.key_id(),
            epoch: 2,
            head_sequence: 41,
            head_hash: [4u8; 32],
            sent_at_ns: 1_700_000_000_000_000_000,
            epoch_started_at_ns: 1_699_000_000_000_000_000,
            oldest_retained_sequence: 1,
            records_sealed: 1_000,
            datagrams_sent: 5_000,
            previous_epoch: 1,
            previous_epoch_last_sequence: 99,
            previous_epoch_last_hash: [9u8; 32],
            spooled_records: 12,
            beacon_counter: 3,
            link_rate_kbit_s: 100_000,
        }
    }

    #[test]
    fn a_signed_beacon_opens_to_the_same_fields() {
        let key = SenderKey::from_seed([1u8; 32]);
        let bytes = beacon(&key).sign(&key);
        assert_eq!(bytes.len(), BEACON_LENGTH);
        assert_eq!(Beacon::open(&bytes, &TrustedKeys::single(key.public_key())), Ok(beacon(&key)));
    }

    #[test]
    fn peeking_reads_what_opening_verifies_and_orders_replays_first() {
        let key = SenderKey::from_seed([1u8; 32]);
        let older = beacon(&key);
        let newer = Beacon { sent_at_ns: older.sent_at_ns + 1, ..beacon(&key) };
        let next_epoch = Beacon { epoch: 3, head_sequence: 0, sent_at_ns: older.sent_at_ns - 5, ..beacon(&key) };
        assert_eq!(peek_order(&older.sign(&key)), Some((1, older.order())));
        assert!(older.order() < newer.order());
        assert!(newer.order() < next_epoch.order(), "a new epoch is newer whatever its head and clock");
        assert_eq!(peek_order(&older.sign(&key)[1..]), None);
        assert_eq!(peek_order(b"not a beacon"), None);
    }

    #[test]
    fn any_flipped_bit_in_a_beacon_is_refused() {
        let key = SenderKey::from_seed([1u8; 32]);
        let trusted = TrustedKeys::single(key.public_key());
        let bytes = beacon(&key).sign(&key);
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut altered = bytes.clone();
                altered[at] ^= 1 << bit;
                assert!(Beacon::open(&altered, &trusted).is_err(), "byte {at} bit {bit}");
            }
        }
    }
}

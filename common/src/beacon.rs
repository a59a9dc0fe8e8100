//! The signed beacon: the sender's heartbeat, sent about once a second.
//!
//! Without a back channel the receiver cannot ask "are you there?". The beacon tells it the
//! sender's head (latest sequence and hash) so it can see gaps and lag while the link is idle, tell
//! a quiet plant from a cut cable, and learn where each epoch began and why.
//!
//! Layout (big-endian), signed with ed25519 over bytes 0..212, then the 64-byte signature:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | magic `DBCN` |
//! | 4 | 1 | format version (2; 1 has no software field) |
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
//! | 180 | 32 | the sender's software: version and commit, printable ASCII, zero-padded |
//! | 212 | 64 | ed25519 signature |
//!
//! Format 1 (what senders before the software field write) is the same up to byte 180, where its
//! signature begins (244 bytes in all). Receivers read both, so an IT appliance is upgraded before
//! its OT one: a receiver that only knows format 1 refuses format 2 beacons (counting them as
//! unsupported) while it goes on applying segments.

use crate::keys::{KeyId, SenderKey, TrustedKeys};
use crate::seal::SegmentHash;

/// The four bytes every beacon starts with.
pub const BEACON_MAGIC: [u8; 4] = *b"DBCN";
/// The beacon format this build writes; it also reads format 1, which has no software field.
pub const BEACON_FORMAT_VERSION: u8 = 2;
const SIGNED_LENGTH_V1: usize = 180;
const SIGNED_LENGTH: usize = SIGNED_LENGTH_V1 + SOFTWARE_LENGTH;
/// Bytes of the software field: [`Beacon::software`] is at most this long.
pub const SOFTWARE_LENGTH: usize = 32;
/// Bytes of every beacon this build writes: the 212 signed bytes, then the 64-byte ed25519
/// signature.
pub const BEACON_LENGTH: usize = SIGNED_LENGTH + 64;
/// Bytes of a format 1 beacon: 180 signed bytes and the signature.
pub const BEACON_LENGTH_V1: usize = SIGNED_LENGTH_V1 + 64;

/// The signed length of a beacon of `bytes.len()` bytes with format byte `version`, if it is one
/// this build reads.
fn signed_length(bytes: &[u8]) -> Option<usize> {
    match (bytes.get(4), bytes.len()) {
        (Some(1), BEACON_LENGTH_V1) => Some(SIGNED_LENGTH_V1),
        (Some(2), BEACON_LENGTH) => Some(SIGNED_LENGTH),
        _ => None,
    }
}

/// Where a beacon stands in its sender's stream, for keeping only the newest: compared as
/// (epoch, head sequence, sent at). Within an epoch the head never goes back, and while the link
/// is idle the sending time moves on; the beacon counter restarts with the process, so it is not
/// used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BeaconOrder {
    /// The beacon's epoch: a beacon of a later epoch is newer, whatever its head.
    pub epoch: u64,
    /// The head sequence it announces, which never goes back within an epoch.
    pub head_sequence: u64,
    /// When it was sent, in ns since the Unix epoch by the sender's clock: orders beacons that
    /// announce the same head.
    pub sent_at_ns: i64,
}

/// The sender id and [`BeaconOrder`] a beacon claims, read **without verifying** it: only for
/// dropping a beacon that is not newer than one already verified (a replay) before paying for
/// its signature check. Nothing read here may be trusted or stored. `None` if the bytes cannot be
/// a beacon.
pub fn peek_order(bytes: &[u8]) -> Option<(u64, BeaconOrder)> {
    if signed_length(bytes).is_none() || bytes[0..4] != BEACON_MAGIC {
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
    /// In every beacon but the first of each run of the sender's process, which states the
    /// epoch's real reason.
    Continuing = 0,
    /// The sender found no earlier epoch and no segment log: its first start.
    FirstStart = 1,
    /// The sender had run before (its epoch file or a segment log remains), but its last epoch's
    /// segment log or epoch file was gone (a replaced or wiped disk), so that chain could not go
    /// on.
    SpoolLost = 2,
    /// An operator ended the chain and started a new one (`diode-sender new-epoch`).
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

    /// A short lower-case name, for logs, status pages and audit reports.
    pub fn label(self) -> &'static str {
        match self {
            Self::Continuing => "continuing",
            Self::FirstStart => "first start",
            Self::SpoolLost => "spool lost",
            Self::Operator => "operator",
        }
    }
}

/// One beacon's fields: what [`Beacon::sign`] writes and [`Beacon::open`] returns once the
/// signature verifies. Byte layout in the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beacon {
    /// Why the current epoch began ([`EpochReason::Continuing`] in all but the first beacon of a
    /// process run). The receiver keeps the first signed beacon of each epoch, so an auditor can
    /// see the reason under the sender's signature.
    pub epoch_reason: EpochReason,
    /// The sending appliance, as in its segments' headers.
    pub sender_id: u64,
    /// The key that signs the beacon: it must be trusted by the receiver and valid at
    /// `sent_at_ns`.
    pub key_id: KeyId,
    /// The sender's current epoch.
    pub epoch: u64,
    /// The last segment of the epoch fully sent (not merely sealed, so an idle link shows no
    /// transient gaps); 0 before the first. Every sequence up to it exists, so the receiver counts
    /// those it lacks as missing.
    pub head_sequence: u64,
    /// The head segment's hash ([`crate::seal::SegmentHeader::hash`]); zeros while
    /// `head_sequence` is 0.
    pub head_hash: SegmentHash,
    /// When the beacon was made, in ns since the Unix epoch by the sender's clock. The key's
    /// validity window is checked at this instant.
    pub sent_at_ns: i64,
    /// When the epoch began, in ns since the Unix epoch by the sender's clock.
    pub epoch_started_at_ns: i64,
    /// The oldest sequence still in the sender's segment log: missing segments below it can no
    /// longer be resent.
    pub oldest_retained_sequence: u64,
    /// Records sealed into segments since the sender's process started: a progress figure for
    /// status pages, checked against nothing.
    pub records_sealed: u64,
    /// Datagrams (symbols and beacons) sent since the sender's process started, to compare with
    /// what arrived.
    pub datagrams_sent: u64,
    /// The epoch before this one (0: none). With the two fields below it says where the old
    /// chain ended.
    pub previous_epoch: u64,
    /// The last sequence sealed in the previous epoch (0: none, or its segment log was lost).
    pub previous_epoch_last_sequence: u64,
    /// That segment's hash (zeros with sequence 0).
    pub previous_epoch_last_hash: SegmentHash,
    /// Records accepted from the sources and not yet sealed: the sender's backlog.
    pub spooled_records: u64,
    /// Counts the beacons of one process run, from 1. It restarts with the process, so it orders
    /// nothing across restarts (see [`BeaconOrder`]).
    pub beacon_counter: u64,
    /// The link rate the sender paces to, in kbit/s (saturating at `u32::MAX`).
    pub link_rate_kbit_s: u32,
    /// The sender's software, as its `--version` prints it (version and commit), so a mismatched
    /// pair shows on the receiver: printable ASCII, at most [`SOFTWARE_LENGTH`] bytes (longer is
    /// cut when signing). Empty in format 1 beacons.
    pub software: String,
}

/// `text` cut to [`SOFTWARE_LENGTH`] bytes of printable ASCII (anything else becomes `?`).
fn software_field(text: &str) -> [u8; SOFTWARE_LENGTH] {
    let mut field = [0u8; SOFTWARE_LENGTH];
    for (slot, byte) in field.iter_mut().zip(text.bytes()) {
        *slot = if byte.is_ascii_graphic() || byte == b' ' { byte } else { b'?' };
    }
    field
}

/// The software field's text: printable ASCII up to the zero padding. `None` if anything else is
/// in it.
fn software_text(field: &[u8]) -> Option<String> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let (text, padding) = field.split_at(end);
    let printable = text.iter().all(|&b| b.is_ascii_graphic() || b == b' ');
    (printable && padding.iter().all(|&b| b == 0)).then(|| String::from_utf8_lossy(text).into_owned())
}

/// The sender software a stored beacon names, read **without verifying** it: for status pages
/// showing beacons that were verified when they arrived. Empty for format 1 beacons; `None` if
/// the bytes are no beacon this build reads.
pub fn peek_software(bytes: &[u8]) -> Option<String> {
    match signed_length(bytes)? {
        SIGNED_LENGTH => software_text(&bytes[SIGNED_LENGTH_V1..SIGNED_LENGTH]),
        _ => Some(String::new()),
    }
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
        b[180..212].copy_from_slice(&software_field(&self.software));
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

    /// Parses and verifies a beacon of format 1 or 2; total over any input.
    pub fn open(bytes: &[u8], trusted: &TrustedKeys) -> Result<Beacon, BeaconError> {
        if bytes.len() != BEACON_LENGTH && bytes.len() != BEACON_LENGTH_V1 {
            return Err(BeaconError::WrongLength { length_bytes: bytes.len() });
        }
        let signed_length = signed_length(bytes).ok_or(BeaconError::Unsupported)?;
        if bytes[0..4] != BEACON_MAGIC || bytes[6..8] != [0, 0] {
            return Err(BeaconError::Unsupported);
        }
        let key_id = KeyId(bytes[16..24].try_into().expect("8 bytes"));
        let key = trusted.get(key_id).ok_or(BeaconError::UnknownKey { key_id })?;
        let signature = ed25519_dalek::Signature::from_bytes(bytes[signed_length..].try_into().expect("64 bytes"));
        key.public_key
            .verify_strict(&bytes[..signed_length], &signature)
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
            software: match signed_length {
                SIGNED_LENGTH => {
                    software_text(&bytes[SIGNED_LENGTH_V1..SIGNED_LENGTH]).ok_or(BeaconError::Unsupported)?
                }
                _ => String::new(),
            },
        };
        if !key.is_valid_at(beacon.sent_at_ns) {
            return Err(BeaconError::KeyNotValidAt { key_id });
        }
        Ok(beacon)
    }
}

/// Why [`Beacon::open`] refused a beacon. Each is a reason to drop the beacon and count it;
/// nothing in a refused beacon may be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeaconError {
    /// The body is neither [`BEACON_LENGTH`] nor [`BEACON_LENGTH_V1`] bytes.
    #[error("beacon is {length_bytes} bytes; expected {BEACON_LENGTH} (or {BEACON_LENGTH_V1} in format 1)")]
    WrongLength {
        /// Bytes received.
        length_bytes: usize,
    },
    /// The magic, format version, flags or epoch reason is not one this build knows.
    #[error("beacon magic, version, flags or epoch reason not supported by this build")]
    Unsupported,
    /// The beacon names a key that is not among the trusted keys.
    #[error("beacon is signed by key {key_id}, which is not trusted")]
    UnknownKey {
        /// The key id the beacon names.
        key_id: KeyId,
    },
    /// The signature does not verify with the named key: the beacon was altered or forged.
    #[error("beacon signature by key {key_id} does not verify")]
    BadSignature {
        /// The key id the beacon names.
        key_id: KeyId,
    },
    /// The key is trusted, but not at the beacon's `sent_at_ns` (not yet valid, retired or
    /// revoked).
    #[error("key {key_id} is not valid at the beacon's sending time")]
    KeyNotValidAt {
        /// The key id the beacon names.
        key_id: KeyId,
    },
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
            software: "0.1.0 (0123456789ab)".to_owned(),
        }
    }

    /// A format 1 beacon, as senders before the software field sign it.
    fn sign_format_1(beacon: &Beacon, key: &SenderKey) -> Vec<u8> {
        let mut signed = beacon.signed_bytes()[..SIGNED_LENGTH_V1].to_vec();
        signed[4] = 1;
        let signature = key.sign(&signed);
        signed.extend_from_slice(&signature);
        signed
    }

    #[test]
    fn a_format_1_beacon_still_opens_with_no_software_and_peeks_alike() {
        let key = SenderKey::from_seed([1u8; 32]);
        let bytes = sign_format_1(&beacon(&key), &key);
        assert_eq!(bytes.len(), BEACON_LENGTH_V1);
        let opened = Beacon::open(&bytes, &TrustedKeys::single(key.public_key())).unwrap();
        assert_eq!(opened, Beacon { software: String::new(), ..beacon(&key) });
        assert_eq!(peek_order(&bytes), Some((1, beacon(&key).order())));
        assert_eq!(peek_software(&bytes), Some(String::new()));
        // A format 1 beacon's bytes claiming format 2 (or the reverse) are refused, not misread.
        let mut claimed = bytes.clone();
        claimed[4] = 2;
        assert_eq!(Beacon::open(&claimed, &TrustedKeys::single(key.public_key())), Err(BeaconError::Unsupported));
        assert_eq!(peek_order(&claimed), None);
    }

    #[test]
    fn the_software_field_is_cut_to_its_length_made_printable_and_read_back() {
        let key = SenderKey::from_seed([1u8; 32]);
        let trusted = TrustedKeys::single(key.public_key());
        let long = Beacon { software: format!("1.2.3 ({})\n", "f".repeat(40)), ..beacon(&key) };
        let opened = Beacon::open(&long.sign(&key), &trusted).unwrap();
        assert_eq!(opened.software, format!("1.2.3 ({}", "f".repeat(SOFTWARE_LENGTH - 7)));
        let odd = Beacon { software: "0.1\u{e9}\t".to_owned(), ..beacon(&key) };
        assert_eq!(Beacon::open(&odd.sign(&key), &trusted).unwrap().software, "0.1???");
        assert_eq!(peek_software(&beacon(&key).sign(&key)).as_deref(), Some("0.1.0 (0123456789ab)"));
        assert_eq!(peek_software(b"not a beacon"), None);
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

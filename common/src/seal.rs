//! Sealed segments: the unit that is signed on the OT side, carried across the diode, verified and
//! applied on the IT side, and kept forever in the replica's audit log.
//!
//! A sealed segment is `header (136 bytes) ‖ signature (64 bytes) ‖ payload`. The signature is an
//! ed25519 signature over exactly the 136 header bytes, whose layout is fixed below and documented
//! for auditors in `docs/segment-format.md`. The header commits to the payload by its blake3 hash
//! and to the previous segment by the blake3 hash of that segment's header (the hash chain).
//!
//! | offset | size | field | encoding |
//! |---:|---:|---|---|
//! | 0 | 4 | magic `DSEG` | ASCII |
//! | 4 | 1 | format version (1) | u8 |
//! | 5 | 1 | payload codec (1 = diode columnar v1 + zstd) | u8 |
//! | 6 | 2 | flags (0) | u16 BE |
//! | 8 | 8 | sender id | u64 BE |
//! | 16 | 8 | key id | 8 bytes |
//! | 24 | 8 | epoch | u64 BE |
//! | 32 | 8 | sequence (first of an epoch is 1) | u64 BE |
//! | 40 | 32 | previous segment hash (zeros for sequence 1) | bytes |
//! | 72 | 32 | payload hash, blake3 | bytes |
//! | 104 | 4 | payload length in bytes | u32 BE |
//! | 108 | 4 | record count | u32 BE |
//! | 112 | 8 | earliest record timestamp, ns | i64 BE |
//! | 120 | 8 | latest record timestamp, ns | i64 BE |
//! | 128 | 8 | sealed at, ns since the Unix epoch (sender clock) | i64 BE |

use crate::codec::{self, CodecError, SeriesColumns};
use crate::keys::{KeyId, SenderKey, TrustedKeys};

/// The four bytes every sealed segment starts with.
pub const SEGMENT_MAGIC: [u8; 4] = *b"DSEG";
/// The only segment format version this build writes and reads.
pub const SEGMENT_FORMAT_VERSION: u8 = 1;
/// Payload codec 1: `codec::encode_payload` (columnar, then zstd).
pub const PAYLOAD_CODEC_COLUMNAR_ZSTD: u8 = 1;
/// Bytes of the signed header (layout in the module documentation).
pub const HEADER_LENGTH: usize = 136;
/// Bytes of the ed25519 signature that follows the header.
pub const SIGNATURE_LENGTH: usize = 64;
/// Largest payload a segment may carry. Senders are configured far below it (default 1 MiB).
pub const MAX_PAYLOAD_LENGTH: usize = 16 * 1024 * 1024 - HEADER_LENGTH - SIGNATURE_LENGTH;

/// blake3 hash of a segment's 136 header bytes: the link of the hash chain.
pub type SegmentHash = [u8; 32];
/// The `previous_hash` of the first segment of an epoch.
pub const GENESIS_HASH: SegmentHash = [0u8; 32];

/// The signed header of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The sending appliance.
    pub sender_id: u64,
    /// The key that signed the header: it must be trusted and valid at `sealed_at_ns`.
    pub key_id: KeyId,
    /// The sender's epoch; each epoch is a hash chain of its own.
    pub epoch: u64,
    /// The segment's place in its epoch's chain: 1 for the first, then one more each time.
    pub sequence: u64,
    /// [`SegmentHeader::hash`] of the segment before it in the epoch; [`GENESIS_HASH`] for
    /// sequence 1.
    pub previous_hash: SegmentHash,
    /// blake3 of the payload: the signature covers the payload through it.
    pub payload_hash: [u8; 32],
    /// Bytes of the payload that follows the signature.
    pub payload_length: u32,
    /// Records in the payload, at least 1 ([`decode_verified`] checks it against the payload).
    pub record_count: u32,
    /// Earliest record timestamp, in ns since the Unix epoch: no record lies before it.
    pub min_timestamp_ns: i64,
    /// Latest record timestamp, in ns since the Unix epoch: no record lies after it.
    pub max_timestamp_ns: i64,
    /// When the segment was sealed, in ns since the Unix epoch by the sender's clock. The key's
    /// validity window is checked at this instant.
    pub sealed_at_ns: i64,
}

impl SegmentHeader {
    /// The exact bytes that are signed and hashed.
    pub fn to_bytes(&self) -> [u8; HEADER_LENGTH] {
        let mut bytes = [0u8; HEADER_LENGTH];
        bytes[0..4].copy_from_slice(&SEGMENT_MAGIC);
        bytes[4] = SEGMENT_FORMAT_VERSION;
        bytes[5] = PAYLOAD_CODEC_COLUMNAR_ZSTD;
        bytes[6..8].copy_from_slice(&0u16.to_be_bytes());
        bytes[8..16].copy_from_slice(&self.sender_id.to_be_bytes());
        bytes[16..24].copy_from_slice(&self.key_id.0);
        bytes[24..32].copy_from_slice(&self.epoch.to_be_bytes());
        bytes[32..40].copy_from_slice(&self.sequence.to_be_bytes());
        bytes[40..72].copy_from_slice(&self.previous_hash);
        bytes[72..104].copy_from_slice(&self.payload_hash);
        bytes[104..108].copy_from_slice(&self.payload_length.to_be_bytes());
        bytes[108..112].copy_from_slice(&self.record_count.to_be_bytes());
        bytes[112..120].copy_from_slice(&self.min_timestamp_ns.to_be_bytes());
        bytes[120..128].copy_from_slice(&self.max_timestamp_ns.to_be_bytes());
        bytes[128..136].copy_from_slice(&self.sealed_at_ns.to_be_bytes());
        bytes
    }

    /// Parses the 136 header bytes; checks magic, version, codec and flags only.
    pub fn from_bytes(bytes: &[u8]) -> Result<SegmentHeader, OpenError> {
        let bytes: &[u8; HEADER_LENGTH] = bytes
            .get(..HEADER_LENGTH)
            .and_then(|b| b.try_into().ok())
            .ok_or(OpenError::Truncated { length_bytes: bytes.len() })?;
        if bytes[0..4] != SEGMENT_MAGIC {
            return Err(OpenError::BadMagic);
        }
        if bytes[4] != SEGMENT_FORMAT_VERSION {
            return Err(OpenError::UnsupportedVersion { version: bytes[4] });
        }
        if bytes[5] != PAYLOAD_CODEC_COLUMNAR_ZSTD || bytes[6..8] != [0, 0] {
            return Err(OpenError::UnsupportedCodec {
                codec: bytes[5],
                flags: u16::from_be_bytes([bytes[6], bytes[7]]),
            });
        }
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let i64_at = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let hash_at = |at: usize| -> [u8; 32] { bytes[at..at + 32].try_into().expect("32 bytes") };
        Ok(SegmentHeader {
            sender_id: u64_at(8),
            key_id: KeyId(bytes[16..24].try_into().expect("8 bytes")),
            epoch: u64_at(24),
            sequence: u64_at(32),
            previous_hash: hash_at(40),
            payload_hash: hash_at(72),
            payload_length: u32_at(104),
            record_count: u32_at(108),
            min_timestamp_ns: i64_at(112),
            max_timestamp_ns: i64_at(120),
            sealed_at_ns: i64_at(128),
        })
    }

    /// This segment's link in the hash chain.
    pub fn hash(&self) -> SegmentHash {
        *blake3::hash(&self.to_bytes()).as_bytes()
    }
}

/// Where a new segment sits: what the sealer knows before it sees the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainPosition {
    /// The sealing appliance.
    pub sender_id: u64,
    /// The current epoch.
    pub epoch: u64,
    /// The sequence the new segment takes: 1 for an epoch's first, else one more than the last
    /// sealed.
    pub sequence: u64,
    /// The last sealed segment's hash, or [`GENESIS_HASH`] for sequence 1.
    pub previous_hash: SegmentHash,
}

/// A sealed segment, as carried over the link and stored in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSegment {
    /// The signed header.
    pub header: SegmentHeader,
    /// ed25519 signature of the header's 136 bytes by the key `header.key_id` names.
    pub signature: [u8; SIGNATURE_LENGTH],
    /// The encoded records ([`codec::encode_payload`]), `header.payload_length` bytes.
    pub payload: Vec<u8>,
}

impl SealedSegment {
    /// The form carried over the link and kept in the audit log: header ‖ signature ‖ payload,
    /// as [`parse`] and [`open`] read it back.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_LENGTH + SIGNATURE_LENGTH + self.payload.len());
        bytes.extend_from_slice(&self.header.to_bytes());
        bytes.extend_from_slice(&self.signature);
        bytes.extend_from_slice(&self.payload);
        bytes
    }

    /// This segment's link in the hash chain ([`SegmentHeader::hash`]).
    pub fn hash(&self) -> SegmentHash {
        self.header.hash()
    }

    /// BLAKE3 of the header and the signature: everything [`verify_signature`]'s answer depends
    /// on besides the trusted keys. Two segments with the same `signed_hash` get the same answer.
    pub fn signed_hash(&self) -> SegmentHash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.header.to_bytes());
        hasher.update(&self.signature);
        *hasher.finalize().as_bytes()
    }
}

/// Encodes `series`, hashes and signs: the OT side's only way to make a segment.
///
/// The same as [`encode_for_seal`] then [`seal_encoded`]; a sender that encodes on another thread
/// than the one that keeps the chain calls those two itself.
///
/// Panics if `series` holds no records or more than `u32::MAX` of them: the sealer never seals an
/// empty segment and bounds segments far below that.
pub fn seal(
    position: ChainPosition,
    series: &[SeriesColumns],
    zstd_level: i32,
    sealed_at_ns: i64,
    key: &SenderKey,
) -> SealedSegment {
    seal_encoded(position, encode_for_seal(series, zstd_level), sealed_at_ns, key)
}

/// A segment's payload, encoded and hashed, waiting for its place in the chain: everything of a
/// seal that does not depend on the previous segment, so it can be done away from the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPayload {
    /// The encoded records ([`codec::encode_payload`]).
    pub payload: Vec<u8>,
    /// BLAKE3 of `payload`.
    pub payload_hash: [u8; 32],
    /// Records in the payload.
    pub record_count: u32,
    /// Smallest and largest record timestamp, in ns since the Unix epoch.
    pub min_timestamp_ns: i64,
    /// See `min_timestamp_ns`.
    pub max_timestamp_ns: i64,
}

/// Encodes and hashes the payload of a segment holding `series` (the costly part of a seal).
///
/// Panics if `series` holds no records or more than `u32::MAX` of them, or if the payload exceeds
/// the format's limit: the sealer bounds segments far below both.
pub fn encode_for_seal(series: &[SeriesColumns], zstd_level: i32) -> EncodedPayload {
    encoded_for_seal(series, codec::encode_payload(series, zstd_level))
}

/// [`encode_for_seal`] of a payload already encoded: `payload` must be what
/// [`codec::encode_payload_with`] made of `series` (at any level and effort), such as the spool
/// frame that holds them, so that a segment of one whole frame is not encoded twice.
///
/// Panics as [`encode_for_seal`] does.
pub fn encoded_for_seal(series: &[SeriesColumns], payload: Vec<u8>) -> EncodedPayload {
    let record_count: usize = series.iter().map(SeriesColumns::len).sum();
    assert!(record_count > 0, "a segment must hold at least one record");
    let record_count = u32::try_from(record_count).expect("segment record count bounded by the sealer");
    let (min_timestamp_ns, max_timestamp_ns) = series
        .iter()
        .filter_map(SeriesColumns::min_max_timestamp)
        .fold((i64::MAX, i64::MIN), |(lo, hi), (a, b)| (lo.min(a), hi.max(b)));
    assert!(payload.len() <= MAX_PAYLOAD_LENGTH, "payload of {} bytes exceeds the format limit", payload.len());
    let payload_hash = *blake3::hash(&payload).as_bytes();
    EncodedPayload { payload, payload_hash, record_count, min_timestamp_ns, max_timestamp_ns }
}

/// Puts an encoded payload at `position` in its chain and signs the header: the cheap, ordered
/// part of a seal (one ed25519 signature).
pub fn seal_encoded(
    position: ChainPosition,
    encoded: EncodedPayload,
    sealed_at_ns: i64,
    key: &SenderKey,
) -> SealedSegment {
    let EncodedPayload { payload, payload_hash, record_count, min_timestamp_ns, max_timestamp_ns } = encoded;
    let header = SegmentHeader {
        sender_id: position.sender_id,
        key_id: key.key_id(),
        epoch: position.epoch,
        sequence: position.sequence,
        previous_hash: position.previous_hash,
        payload_hash,
        payload_length: payload.len() as u32,
        record_count,
        min_timestamp_ns,
        max_timestamp_ns,
        sealed_at_ns,
    };
    let signature = key.sign(&header.to_bytes());
    SealedSegment { header, signature, payload }
}

/// Splits bytes into header, signature and payload without verifying anything but the framing.
/// Use [`open`] for anything that will be trusted.
pub fn parse(bytes: &[u8]) -> Result<SealedSegment, OpenError> {
    let header = SegmentHeader::from_bytes(bytes)?;
    let body = &bytes[HEADER_LENGTH..];
    let signature: [u8; SIGNATURE_LENGTH] = body
        .get(..SIGNATURE_LENGTH)
        .and_then(|s| s.try_into().ok())
        .ok_or(OpenError::Truncated { length_bytes: bytes.len() })?;
    let payload = &body[SIGNATURE_LENGTH..];
    if payload.len() != header.payload_length as usize {
        return Err(OpenError::PayloadLengthMismatch {
            declared_bytes: header.payload_length,
            actual_bytes: payload.len(),
        });
    }
    Ok(SealedSegment { header, signature, payload: payload.to_vec() })
}

/// Verifies a parsed segment: trusted key id, validity window, signature, payload hash.
/// Nothing is decoded; see [`open_records`].
pub fn verify(segment: &SealedSegment, trusted: &TrustedKeys) -> Result<(), OpenError> {
    verify_signature(segment, trusted)?;
    verify_payload(segment)
}

/// The part of [`verify`] that depends only on the header and the signature: the key is trusted
/// and valid when the segment was sealed, and the signature is the key's over the header. The
/// same header and signature always get the same answer.
pub fn verify_signature(segment: &SealedSegment, trusted: &TrustedKeys) -> Result<(), OpenError> {
    let header = &segment.header;
    let key = trusted.get(header.key_id).ok_or(OpenError::UnknownKey { key_id: header.key_id })?;
    if !key.is_valid_at(header.sealed_at_ns) {
        return Err(OpenError::KeyNotValidAt { key_id: header.key_id, sealed_at_ns: header.sealed_at_ns });
    }
    let signature = ed25519_dalek::Signature::from_bytes(&segment.signature);
    key.public_key
        .verify_strict(&header.to_bytes(), &signature)
        .map_err(|_| OpenError::BadSignature { key_id: header.key_id })
}

/// The rest of [`verify`]: the payload is the one the header's hash names, and the header is
/// consistent. With [`verify_signature`] of the same header and signature, a complete check.
pub fn verify_payload(segment: &SealedSegment) -> Result<(), OpenError> {
    let header = &segment.header;
    if *blake3::hash(&segment.payload).as_bytes() != header.payload_hash {
        return Err(OpenError::PayloadHashMismatch);
    }
    if header.record_count == 0 || header.min_timestamp_ns > header.max_timestamp_ns {
        return Err(OpenError::InconsistentHeader { reason: "no records or inverted time range" });
    }
    Ok(())
}

/// Parses and verifies `bytes`: the segment is returned only if every check passes.
pub fn open(bytes: &[u8], trusted: &TrustedKeys) -> Result<SealedSegment, OpenError> {
    let segment = parse(bytes)?;
    verify(&segment, trusted)?;
    Ok(segment)
}

/// Decodes a verified segment's records and checks them against what the header claims.
pub fn decode_verified(segment: &SealedSegment) -> Result<Vec<SeriesColumns>, OpenError> {
    let series = codec::decode_payload(&segment.payload)?;
    check_decoded(segment, &series)?;
    Ok(series)
}

/// [`decode_verified`], with each block's chunk ([`codec::decode_payload_with_chunks`]), for a
/// replica to store.
pub fn decode_verified_with_chunks(segment: &SealedSegment) -> Result<codec::DecodedPayload, OpenError> {
    let decoded = codec::decode_payload_with_chunks(&segment.payload)?;
    check_decoded(segment, &decoded.series)?;
    Ok(decoded)
}

/// The header's record count and time range against the decoded payload.
fn check_decoded(segment: &SealedSegment, series: &[SeriesColumns]) -> Result<(), OpenError> {
    let header = &segment.header;
    let count: usize = series.iter().map(SeriesColumns::len).sum();
    if count != header.record_count as usize {
        return Err(OpenError::InconsistentHeader { reason: "record count differs from the payload" });
    }
    let within = series
        .iter()
        .filter_map(SeriesColumns::min_max_timestamp)
        .all(|(lo, hi)| lo >= header.min_timestamp_ns && hi <= header.max_timestamp_ns);
    if !within {
        return Err(OpenError::InconsistentHeader { reason: "a record lies outside the header's time range" });
    }
    Ok(())
}

/// [`open`] then [`decode_verified`].
pub fn open_records(bytes: &[u8], trusted: &TrustedKeys) -> Result<(SealedSegment, Vec<SeriesColumns>), OpenError> {
    let segment = open(bytes, trusted)?;
    let series = decode_verified(&segment)?;
    Ok((segment, series))
}

/// [`open`] then [`decode_verified_with_chunks`].
pub fn open_with_chunks(
    bytes: &[u8],
    trusted: &TrustedKeys,
) -> Result<(SealedSegment, codec::DecodedPayload), OpenError> {
    let segment = open(bytes, trusted)?;
    let decoded = decode_verified_with_chunks(&segment)?;
    Ok((segment, decoded))
}

/// Why a segment was refused. Each variant names the check that failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Shorter than a header and a signature.
    #[error("segment is truncated ({length_bytes} bytes)")]
    Truncated {
        /// Bytes given.
        length_bytes: usize,
    },
    /// Does not start with [`SEGMENT_MAGIC`].
    #[error("not a diode segment (bad magic)")]
    BadMagic,
    /// A format version other than [`SEGMENT_FORMAT_VERSION`].
    #[error("segment format version {version} is not supported by this build (supports {SEGMENT_FORMAT_VERSION})")]
    UnsupportedVersion {
        /// The version found.
        version: u8,
    },
    /// A payload codec other than [`PAYLOAD_CODEC_COLUMNAR_ZSTD`], or flags other than 0.
    #[error("segment payload codec {codec} with flags {flags:#06x} is not supported by this build")]
    UnsupportedCodec {
        /// The payload codec byte found.
        codec: u8,
        /// The flags found.
        flags: u16,
    },
    /// The bytes after the signature are not as many as the header's `payload_length`.
    #[error("segment declares a {declared_bytes}-byte payload but carries {actual_bytes} bytes")]
    PayloadLengthMismatch {
        /// The header's `payload_length`.
        declared_bytes: u32,
        /// Bytes after the signature.
        actual_bytes: usize,
    },
    /// Signed by a key that is not among the trusted keys.
    #[error("segment is signed by key {key_id}, which is not trusted; add its signing.pub to the trusted keys")]
    UnknownKey {
        /// The key id in the header.
        key_id: KeyId,
    },
    /// The key is trusted, but not at the segment's sealing time (not yet valid, retired or
    /// revoked).
    #[error("key {key_id} is not valid at the segment's sealing time {sealed_at_ns} ns (retired or revoked)")]
    KeyNotValidAt {
        /// The key id in the header.
        key_id: KeyId,
        /// The header's sealing time, in ns since the Unix epoch.
        sealed_at_ns: i64,
    },
    /// The signature does not verify over the header: the header was altered or forged.
    #[error("signature by key {key_id} does not verify: the header was altered or forged")]
    BadSignature {
        /// The key id in the header.
        key_id: KeyId,
    },
    /// The payload's blake3 is not the signed `payload_hash`: the payload was altered.
    #[error("payload does not match the signed blake3 hash: the payload was altered")]
    PayloadHashMismatch,
    /// The signed header contradicts itself or its payload: no records, an inverted time range,
    /// or a record count or time range the decoded payload does not match.
    #[error("segment header is inconsistent with its payload: {reason}")]
    InconsistentHeader {
        /// The claim that failed.
        reason: &'static str,
    },
    /// The payload verified but does not decode: a sender fault, or a payload format this build
    /// cannot read.
    #[error("segment payload cannot be decoded: {0}")]
    Payload(#[from] CodecError),
}

impl OpenError {
    /// A short stable label for metrics (`reason="bad_signature"`).
    pub fn reason_label(&self) -> &'static str {
        match self {
            Self::Truncated { .. } | Self::PayloadLengthMismatch { .. } => "malformed",
            Self::BadMagic | Self::UnsupportedVersion { .. } | Self::UnsupportedCodec { .. } => "unsupported",
            Self::UnknownKey { .. } => "unknown_key",
            Self::KeyNotValidAt { .. } => "key_not_valid",
            Self::BadSignature { .. } => "bad_signature",
            Self::PayloadHashMismatch => "payload_hash",
            Self::InconsistentHeader { .. } | Self::Payload(_) => "bad_payload",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::group_records;
    use crate::keys::TrustedKey;
    use crate::record::{Quality, Record, SeriesKey, Value};
    use proptest::prelude::*;

    fn sample_series() -> Vec<SeriesColumns> {
        let records: Vec<Record> = (0..100)
            .map(|i| Record {
                series: SeriesKey::new(format!("plant1/unit{}/temp", i % 3)),
                timestamp_ns: 1_700_000_000_000_000_000 + i * 1_000_000,
                value: Value::F64(20.0 + i as f64 * 0.25),
                quality: Quality::GOOD,
            })
            .collect();
        group_records(&records)
    }

    fn position() -> ChainPosition {
        ChainPosition { sender_id: 7, epoch: 1, sequence: 1, previous_hash: GENESIS_HASH }
    }

    fn sealed() -> (SenderKey, Vec<u8>) {
        let key = SenderKey::from_seed([5u8; 32]);
        let segment = seal(position(), &sample_series(), 3, 1_700_000_001_000_000_000, &key);
        (key, segment.to_bytes())
    }

    #[test]
    fn a_sealed_segment_opens_with_its_records() {
        let (key, bytes) = sealed();
        let (segment, series) = open_records(&bytes, &TrustedKeys::single(key.public_key())).unwrap();
        assert_eq!(segment.header.record_count, 100);
        assert_eq!(segment.header.min_timestamp_ns, 1_700_000_000_000_000_000);
        assert_eq!(series.len(), 3);
    }

    #[test]
    fn the_header_layout_is_fixed_at_136_bytes_with_the_documented_offsets() {
        let (_, bytes) = sealed();
        assert_eq!(&bytes[0..4], b"DSEG");
        assert_eq!(bytes[4], 1);
        assert_eq!(u64::from_be_bytes(bytes[8..16].try_into().unwrap()), 7);
        assert_eq!(u64::from_be_bytes(bytes[32..40].try_into().unwrap()), 1);
        assert_eq!(u32::from_be_bytes(bytes[108..112].try_into().unwrap()), 100);
        let header = SegmentHeader::from_bytes(&bytes).unwrap();
        assert_eq!(header.to_bytes().as_slice(), &bytes[..HEADER_LENGTH]);
    }

    #[test]
    fn the_signature_verifies_with_a_plain_ed25519_check_over_the_header_bytes() {
        let (key, bytes) = sealed();
        let signature = ed25519_dalek::Signature::from_bytes(&bytes[136..200].try_into().unwrap());
        assert!(key.public_key().verify_strict(&bytes[..136], &signature).is_ok());
    }

    #[test]
    fn a_segment_signed_by_an_untrusted_key_is_refused() {
        let (_, bytes) = sealed();
        let other = SenderKey::from_seed([6u8; 32]);
        assert!(matches!(open(&bytes, &TrustedKeys::single(other.public_key())), Err(OpenError::UnknownKey { .. })));
    }

    #[test]
    fn a_forged_signature_under_a_trusted_key_id_is_refused() {
        let (key, mut bytes) = sealed();
        bytes[150] ^= 1;
        assert!(matches!(open(&bytes, &TrustedKeys::single(key.public_key())), Err(OpenError::BadSignature { .. })));
    }

    #[test]
    fn an_altered_payload_is_refused_by_its_hash() {
        let (key, mut bytes) = sealed();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x80;
        assert!(matches!(open(&bytes, &TrustedKeys::single(key.public_key())), Err(OpenError::PayloadHashMismatch)));
    }

    #[test]
    fn a_key_outside_its_validity_window_is_refused() {
        let (key, bytes) = sealed();
        let mut trusted = TrustedKey::new(key.public_key());
        trusted.valid_until_ns = Some(1_700_000_000_000_000_000);
        let result = open(&bytes, &TrustedKeys::new(vec![trusted]));
        assert!(matches!(result, Err(OpenError::KeyNotValidAt { .. })));
    }

    #[test]
    fn every_truncation_is_refused_without_panic() {
        let (key, bytes) = sealed();
        let trusted = TrustedKeys::single(key.public_key());
        for length in 0..bytes.len() {
            assert!(open_records(&bytes[..length], &trusted).is_err(), "length {length}");
        }
    }

    #[test]
    fn chained_segments_link_by_header_hash() {
        let key = SenderKey::from_seed([5u8; 32]);
        let first = seal(position(), &sample_series(), 3, 1, &key);
        let next = ChainPosition { sequence: 2, previous_hash: first.hash(), ..position() };
        let second = seal(next, &sample_series(), 3, 2, &key);
        assert_eq!(second.header.previous_hash, *blake3::hash(&first.to_bytes()[..136]).as_bytes());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_single_flipped_bit_is_refused(bit in 0usize..8, position_fraction in 0.0f64..1.0) {
            let (key, mut bytes) = sealed();
            let trusted = TrustedKeys::single(key.public_key());
            let at = ((bytes.len() as f64) * position_fraction) as usize % bytes.len();
            bytes[at] ^= 1 << bit;
            prop_assert!(open_records(&bytes, &trusted).is_err());
        }
    }
}

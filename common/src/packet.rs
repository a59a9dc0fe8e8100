//! The datagram format: what one UDP payload on the diode link looks like, byte for byte.
//!
//! Every datagram is a fixed 42-byte header, a body, and a 16-byte MAC. The receiver checks the
//! MAC before it trusts a single field, so a forged or corrupted datagram is dropped here and never
//! reaches the FEC decoder or the reassembler. [`decode_datagram`] is total: any input gives a
//! [`Datagram`] or a [`PacketError`], never a panic (fuzzed by `fuzz/fuzz_targets/decode_datagram.rs`).
//!
//! # Layout (version 1)
//!
//! All integers are big-endian (network order). Offsets are in bytes from the start of the UDP
//! payload.
//!
//! | offset | size | field            | meaning                                                           |
//! |-------:|-----:|------------------|-------------------------------------------------------------------|
//! | 0      | 4    | `magic`          | ASCII `DIOD` (`44 49 4F 44`)                                      |
//! | 4      | 1    | `version`        | `1`                                                               |
//! | 5      | 1    | `kind`           | `1` = Symbol, `2` = Beacon                                        |
//! | 6      | 8    | `sender_id`      | u64, the sending appliance                                        |
//! | 14     | 8    | `epoch`          | u64, the sender's epoch                                           |
//! | 22     | 8    | `sequence`       | u64, segment sequence number (Beacon: the sender's head sequence) |
//! | 30     | 2    | `symbol_index`   | u16, `0..original_count` originals, then repairs (Beacon: 0)      |
//! | 32     | 4    | `segment_length` | u32, segment bytes before padding, 1..=16 MiB (Beacon: 0)         |
//! | 36     | 2    | `symbol_size`    | u16, even, bytes per symbol (Beacon: 0)                           |
//! | 38     | 2    | `original_count` | u16, `ceil(segment_length / symbol_size)` ≤ 32768 (Beacon: 0)     |
//! | 40     | 2    | `repair_count`   | u16, ≤ 32768 (Beacon: 0)                                          |
//! | 42     | n    | body             | Symbol: exactly `symbol_size` bytes; Beacon: the signed beacon    |
//! | 42 + n | 16   | `mac`            | first 16 bytes of BLAKE3-keyed(K_mac, bytes 0 .. 42 + n)          |
//!
//! `K_mac = BLAKE3-derive_key(context = "diode 2025 datagram MAC v1", key material = link key)`:
//! the 32-byte link key is never used directly, so it can key other things later without the
//! two uses ever colliding. The MAC covers the header and the body. 16 bytes (128 bits) leaves a
//! forger a 2^-128 chance per attempt.
//!
//! # Order of checks in [`decode_datagram`]
//!
//! Length, magic and version are compared first: they are constants, so comparing them trusts
//! nothing, and they tell an operator "not our traffic" or "the other side runs another version"
//! (whose MAC rule may differ) instead of a bare "bad MAC". Then the MAC is compared in constant
//! time; only after it matches are `kind`, the FEC parameters and the body length interpreted.

use zeroize::Zeroize;

use crate::fec::{FecError, FecParams};

/// The four bytes every datagram starts with.
pub const MAGIC: [u8; 4] = *b"DIOD";
/// The only datagram format version this code reads and writes.
pub const VERSION: u8 = 1;
/// Bytes of the fixed header.
pub const HEADER_LENGTH: usize = 42;
/// Bytes of the truncated MAC at the end of every datagram.
pub const MAC_LENGTH: usize = 16;
/// Header plus MAC: what a datagram costs beyond its body.
pub const DATAGRAM_OVERHEAD: usize = HEADER_LENGTH + MAC_LENGTH;
/// IPv6 (40) plus UDP (8) headers: we size for IPv6 so the same setting works on both.
pub const IP_UDP_HEADER_LENGTH: usize = 48;
/// IPv4 (20) plus UDP (8) headers.
pub const IPV4_UDP_HEADER_LENGTH: usize = 28;

/// Bytes the IP and UDP headers add to every datagram on the wire, for an IPv4 or IPv6 link.
pub const fn ip_udp_overhead(ipv4: bool) -> usize {
    if ipv4 { IPV4_UDP_HEADER_LENGTH } else { IP_UDP_HEADER_LENGTH }
}
/// Largest UDP payload without IPv6 jumbograms (65,535 − 8). Longer datagrams are rejected.
pub const MAX_DATAGRAM_LENGTH: usize = 65_527;
/// Smallest symbol [`max_symbol_size`] will choose: at 512 bytes a 16 MiB segment is exactly the
/// 32,768 original symbols a block can hold.
pub const MIN_SYMBOL_SIZE: u16 = 512;
/// Largest symbol a datagram can carry (even).
pub const MAX_SYMBOL_SIZE: u16 = ((MAX_DATAGRAM_LENGTH - DATAGRAM_OVERHEAD) & !1) as u16;
/// Ethernet's MTU.
pub const DEFAULT_LINK_MTU: usize = 1500;

const MAC_KEY_CONTEXT: &str = "diode 2025 datagram MAC v1";
const FINGERPRINT_CONTEXT: &str = "diode 2025 link key fingerprint v1";

/// Byte offsets of the header fields (the table in the module documentation).
mod offset {
    pub(crate) const MAGIC: usize = 0;
    pub(crate) const VERSION: usize = 4;
    pub(crate) const KIND: usize = 5;
    pub(crate) const SENDER_ID: usize = 6;
    pub(crate) const EPOCH: usize = 14;
    pub(crate) const SEQUENCE: usize = 22;
    pub(crate) const SYMBOL_INDEX: usize = 30;
    pub(crate) const SEGMENT_LENGTH: usize = 32;
    pub(crate) const SYMBOL_SIZE: usize = 36;
    pub(crate) const ORIGINAL_COUNT: usize = 38;
    pub(crate) const REPAIR_COUNT: usize = 40;
    pub(crate) const BODY: usize = 42;
}
const _: () = assert!(offset::BODY == HEADER_LENGTH);

/// Errors of the datagram codec. Every one is a reason to drop the datagram and count it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than a header and a MAC, so not a datagram of any kind.
    #[error("datagram is {length} bytes; the smallest valid one is {minimum}")]
    TooShort {
        /// Bytes received.
        length: usize,
        /// [`HEADER_LENGTH`] + [`MAC_LENGTH`].
        minimum: usize,
    },
    /// Longer than [`MAX_DATAGRAM_LENGTH`], which no diode sender writes.
    #[error("datagram is {length} bytes; the largest valid one is {maximum}")]
    TooLong {
        /// Bytes received.
        length: usize,
        /// [`MAX_DATAGRAM_LENGTH`].
        maximum: usize,
    },
    /// Does not start with [`MAGIC`]: other traffic reached the diode's port.
    #[error("datagram starts with {found:02x?}, not the diode magic \"DIOD\": not diode traffic")]
    BadMagic {
        /// The first four bytes received.
        found: [u8; 4],
    },
    /// The format version is not [`VERSION`]: the two appliances run releases that speak
    /// different formats, and the MAC rule may differ too, so nothing further is read.
    #[error(
        "datagram format version {found}; this build reads version {supported}: upgrade the \
         older side"
    )]
    UnsupportedVersion {
        /// The version byte received.
        found: u8,
        /// [`VERSION`].
        supported: u8,
    },
    /// The MAC does not match: the datagram was forged or corrupted in transit, or the two
    /// appliances hold different link keys (compare their [`LinkKey::fingerprint`]s).
    #[error("datagram MAC does not match: forged, corrupted, or the link keys differ")]
    BadMac,
    /// An authenticated datagram whose `kind` is neither Symbol (1) nor Beacon (2).
    #[error("unknown datagram kind {found}")]
    UnknownKind {
        /// The `kind` byte received.
        found: u8,
    },
    /// A symbol datagram's FEC parameters fail [`FecParams::validate`] (on decoding), or a symbol
    /// to encode carries such parameters.
    #[error("symbol datagram carries inconsistent FEC parameters: {source}")]
    InconsistentParameters {
        /// The relation between the parameters that does not hold.
        source: FecError,
    },
    /// A symbol's index is not below its block's `original_count + repair_count`.
    #[error("symbol index {index} is outside the block's {total} symbols")]
    SymbolIndexOutOfRange {
        /// The symbol index in the header.
        index: u16,
        /// Symbols in the block, originals and repairs.
        total: u32,
    },
    /// A symbol's body is not exactly `symbol_size` bytes.
    #[error("symbol body is {found} bytes; the parameters say {expected}")]
    WrongSymbolLength {
        /// The parameters' `symbol_size`.
        expected: u16,
        /// Bytes of the body.
        found: usize,
    },
    /// A beacon datagram whose symbol index or FEC fields are not all zero, as the layout
    /// requires.
    #[error("beacon datagram has non-zero symbol index or FEC fields")]
    BeaconWithSymbolFields,
    /// A body to encode would make the datagram longer than [`MAX_DATAGRAM_LENGTH`].
    #[error("body of {length} bytes does not fit in a datagram (at most {maximum})")]
    BodyTooLong {
        /// Bytes of the body.
        length: usize,
        /// [`MAX_DATAGRAM_LENGTH`] − [`DATAGRAM_OVERHEAD`].
        maximum: usize,
    },
    /// [`max_symbol_size`]: the link MTU leaves less than [`MIN_SYMBOL_SIZE`] bytes for a symbol
    /// once the IPv6, UDP and datagram headers and the MAC are counted.
    #[error(
        "link MTU {link_mtu} leaves room for a {available}-byte symbol; at least {minimum} is \
         needed: raise the MTU"
    )]
    MtuTooSmall {
        /// The configured link MTU, in bytes.
        link_mtu: usize,
        /// Bytes the MTU leaves for the symbol.
        available: usize,
        /// [`MIN_SYMBOL_SIZE`].
        minimum: u16,
    },
}

/// Largest even symbol size whose datagram, with IPv6 and UDP headers, fits in `link_mtu`.
/// 1394 bytes for the default 1500.
pub fn max_symbol_size(link_mtu: usize) -> Result<u16, PacketError> {
    let available = link_mtu.saturating_sub(IP_UDP_HEADER_LENGTH + DATAGRAM_OVERHEAD);
    let symbol_size = available.min(usize::from(MAX_SYMBOL_SIZE)) & !1;
    if symbol_size < usize::from(MIN_SYMBOL_SIZE) {
        return Err(PacketError::MtuTooSmall { link_mtu, available, minimum: MIN_SYMBOL_SIZE });
    }
    Ok(symbol_size as u16)
}

/// The 32-byte secret both appliances hold to authenticate datagrams. Wiped from memory when
/// dropped.
#[derive(Clone)]
pub struct LinkKey {
    key: [u8; 32],
    /// Derived once: `derive_key(MAC_KEY_CONTEXT, key)`.
    mac_key: [u8; 32],
}

impl Drop for LinkKey {
    fn drop(&mut self) {
        self.key.zeroize();
        self.mac_key.zeroize();
    }
}

impl LinkKey {
    /// The link key whose 32 bytes are `key` (what `link.key` holds); derives the MAC key from it
    /// once, here, rather than per datagram.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        let mac_key = blake3::derive_key(MAC_KEY_CONTEXT, &key);
        Self { key, mac_key }
    }

    /// The 32 secret bytes, for writing `link.key`. Never log or display them: show
    /// [`LinkKey::fingerprint`] instead.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// A short, non-secret name for the key (16 hex digits), so that an operator can check that
    /// both appliances hold the same key without showing it.
    pub fn fingerprint(&self) -> String {
        let digest = blake3::derive_key(FINGERPRINT_CONTEXT, &self.key);
        digest[..8].iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// The MAC of a datagram whose header and body are `authenticated` (everything but the MAC).
    /// The encoders append it; public for tests and fuzzing that build datagrams by hand.
    pub fn datagram_mac(&self, authenticated: &[u8]) -> [u8; MAC_LENGTH] {
        let hash = blake3::Hasher::new_keyed(&self.mac_key).update(authenticated).finalize();
        let mut mac = [0; MAC_LENGTH];
        mac.copy_from_slice(&hash.as_bytes()[..MAC_LENGTH]);
        mac
    }
}

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("LinkKey").field("fingerprint", &self.fingerprint()).finish_non_exhaustive()
    }
}

/// The identity of one segment on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId {
    /// The sending appliance, as configured on it; one receiver may hear several.
    pub sender_id: u64,
    /// The sender's epoch: one hash chain, numbered by the clock (its start in seconds, always
    /// above the epoch before).
    pub epoch: u64,
    /// The segment's place in its epoch's hash chain, from 1.
    pub sequence: u64,
}

/// The value of the `kind` byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketKind {
    /// One FEC symbol of a segment ([`SymbolPacket`]).
    Symbol = 1,
    /// A signed beacon ([`BeaconPacket`]).
    Beacon = 2,
}

/// One FEC symbol of one segment, borrowed from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolPacket<'a> {
    /// The sender of the segment (see [`SegmentId`]).
    pub sender_id: u64,
    /// The segment's epoch.
    pub epoch: u64,
    /// The segment's sequence in its epoch.
    pub sequence: u64,
    /// `0..original_count` for the originals, then the repairs; below `params.total_count()`.
    pub symbol_index: u16,
    /// How the segment is coded; every symbol of one copy of a segment carries the same.
    pub params: FecParams,
    /// The symbol: exactly `params.symbol_size` bytes.
    pub symbol: &'a [u8],
}

impl SymbolPacket<'_> {
    /// The segment this symbol belongs to.
    pub fn segment_id(&self) -> SegmentId {
        SegmentId { sender_id: self.sender_id, epoch: self.epoch, sequence: self.sequence }
    }
}

/// A beacon: an opaque, separately signed body (see `beacon.rs`), borrowed from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeaconPacket<'a> {
    /// The sender, as the datagram header says. The header is only covered by the link MAC: use
    /// the fields of the signed body once it verifies.
    pub sender_id: u64,
    /// The sender's epoch, from the header.
    pub epoch: u64,
    /// The header's sequence field; the sender writes its head sequence there.
    pub sequence: u64,
    /// The signed beacon, for [`crate::beacon::Beacon::open`].
    pub body: &'a [u8],
}

/// A datagram whose MAC checked out and whose fields are consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// A symbol of a segment, for the reassembler.
    Symbol(SymbolPacket<'a>),
    /// A beacon, whose body must still pass its signature check.
    Beacon(BeaconPacket<'a>),
}

/// The header fields, as written and read.
struct Header {
    kind: u8,
    sender_id: u64,
    epoch: u64,
    sequence: u64,
    symbol_index: u16,
    params: FecParams,
}

const NO_PARAMS: FecParams = FecParams { segment_length: 0, symbol_size: 0, original_count: 0, repair_count: 0 };

fn write_datagram(header: &Header, body: &[u8], key: &LinkKey, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(HEADER_LENGTH + body.len() + MAC_LENGTH);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(header.kind);
    out.extend_from_slice(&header.sender_id.to_be_bytes());
    out.extend_from_slice(&header.epoch.to_be_bytes());
    out.extend_from_slice(&header.sequence.to_be_bytes());
    out.extend_from_slice(&header.symbol_index.to_be_bytes());
    out.extend_from_slice(&header.params.segment_length.to_be_bytes());
    out.extend_from_slice(&header.params.symbol_size.to_be_bytes());
    out.extend_from_slice(&header.params.original_count.to_be_bytes());
    out.extend_from_slice(&header.params.repair_count.to_be_bytes());
    debug_assert_eq!(out.len(), HEADER_LENGTH);
    out.extend_from_slice(body);
    let mac = key.datagram_mac(out);
    out.extend_from_slice(&mac);
    debug_assert!(out.len() <= MAX_DATAGRAM_LENGTH);
}

/// Writes one symbol datagram into `out` (its previous content is replaced).
///
/// Checks what the receiver will check, so a datagram that leaves is one it will accept.
pub fn encode_symbol(packet: &SymbolPacket<'_>, key: &LinkKey, out: &mut Vec<u8>) -> Result<(), PacketError> {
    check_symbol_fields(packet.symbol_index, &packet.params, packet.symbol.len())?;
    let header = Header {
        kind: PacketKind::Symbol as u8,
        sender_id: packet.sender_id,
        epoch: packet.epoch,
        sequence: packet.sequence,
        symbol_index: packet.symbol_index,
        params: packet.params,
    };
    write_datagram(&header, packet.symbol, key, out);
    Ok(())
}

/// Writes one beacon datagram into `out` (its previous content is replaced).
pub fn encode_beacon(
    sender_id: u64,
    epoch: u64,
    sequence: u64,
    body: &[u8],
    key: &LinkKey,
    out: &mut Vec<u8>,
) -> Result<(), PacketError> {
    let maximum = MAX_DATAGRAM_LENGTH - DATAGRAM_OVERHEAD;
    if body.len() > maximum {
        return Err(PacketError::BodyTooLong { length: body.len(), maximum });
    }
    let header =
        Header { kind: PacketKind::Beacon as u8, sender_id, epoch, sequence, symbol_index: 0, params: NO_PARAMS };
    write_datagram(&header, body, key, out);
    Ok(())
}

fn check_symbol_fields(symbol_index: u16, params: &FecParams, body_length: usize) -> Result<(), PacketError> {
    params.validate().map_err(|source| PacketError::InconsistentParameters { source })?;
    let total = params.total_count();
    if u32::from(symbol_index) >= total {
        return Err(PacketError::SymbolIndexOutOfRange { index: symbol_index, total });
    }
    if body_length != usize::from(params.symbol_size) {
        return Err(PacketError::WrongSymbolLength { expected: params.symbol_size, found: body_length });
    }
    if body_length > MAX_DATAGRAM_LENGTH - DATAGRAM_OVERHEAD {
        return Err(PacketError::BodyTooLong { length: body_length, maximum: MAX_DATAGRAM_LENGTH - DATAGRAM_OVERHEAD });
    }
    Ok(())
}

/// Compares two MACs in time independent of where they differ.
fn macs_equal(a: &[u8; MAC_LENGTH], b: &[u8]) -> bool {
    if b.len() != MAC_LENGTH {
        return false;
    }
    let difference = a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

fn be_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut field = [0; 4];
    field.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(field)
}

fn be_u64(bytes: &[u8], at: usize) -> u64 {
    let mut field = [0; 8];
    field.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(field)
}

/// Authenticates and parses one datagram. Total: any bytes give a value or an error.
pub fn decode_datagram<'a>(bytes: &'a [u8], key: &LinkKey) -> Result<Datagram<'a>, PacketError> {
    let minimum = HEADER_LENGTH + MAC_LENGTH;
    if bytes.len() < minimum {
        return Err(PacketError::TooShort { length: bytes.len(), minimum });
    }
    if bytes.len() > MAX_DATAGRAM_LENGTH {
        return Err(PacketError::TooLong { length: bytes.len(), maximum: MAX_DATAGRAM_LENGTH });
    }
    let mut magic = [0; 4];
    magic.copy_from_slice(&bytes[offset::MAGIC..offset::MAGIC + 4]);
    if magic != MAGIC {
        return Err(PacketError::BadMagic { found: magic });
    }
    if bytes[offset::VERSION] != VERSION {
        return Err(PacketError::UnsupportedVersion { found: bytes[offset::VERSION], supported: VERSION });
    }
    let (authenticated, mac) = bytes.split_at(bytes.len() - MAC_LENGTH);
    if !macs_equal(&key.datagram_mac(authenticated), mac) {
        return Err(PacketError::BadMac);
    }

    // From here on the bytes were written by a holder of the link key.
    let header = Header {
        kind: authenticated[offset::KIND],
        sender_id: be_u64(authenticated, offset::SENDER_ID),
        epoch: be_u64(authenticated, offset::EPOCH),
        sequence: be_u64(authenticated, offset::SEQUENCE),
        symbol_index: be_u16(authenticated, offset::SYMBOL_INDEX),
        params: FecParams {
            segment_length: be_u32(authenticated, offset::SEGMENT_LENGTH),
            symbol_size: be_u16(authenticated, offset::SYMBOL_SIZE),
            original_count: be_u16(authenticated, offset::ORIGINAL_COUNT),
            repair_count: be_u16(authenticated, offset::REPAIR_COUNT),
        },
    };
    let body = &authenticated[offset::BODY..];
    match header.kind {
        kind if kind == PacketKind::Symbol as u8 => {
            check_symbol_fields(header.symbol_index, &header.params, body.len())?;
            Ok(Datagram::Symbol(SymbolPacket {
                sender_id: header.sender_id,
                epoch: header.epoch,
                sequence: header.sequence,
                symbol_index: header.symbol_index,
                params: header.params,
                symbol: body,
            }))
        }
        kind if kind == PacketKind::Beacon as u8 => {
            if header.symbol_index != 0 || header.params != NO_PARAMS {
                return Err(PacketError::BeaconWithSymbolFields);
            }
            Ok(Datagram::Beacon(BeaconPacket {
                sender_id: header.sender_id,
                epoch: header.epoch,
                sequence: header.sequence,
                body,
            }))
        }
        found => Err(PacketError::UnknownKind { found }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fec;
    use proptest::prelude::*;

    fn key() -> LinkKey {
        LinkKey::from_bytes([7; 32])
    }

    fn sample_params() -> FecParams {
        FecParams::for_segment(3000, 1000, 0.5, 0).unwrap()
    }

    fn sample_symbol_datagram() -> Vec<u8> {
        let symbol = vec![0xAB; 1000];
        let packet = SymbolPacket {
            sender_id: 0x0102_0304_0506_0708,
            epoch: 9,
            sequence: 0x1122_3344_5566_7788,
            symbol_index: 4,
            params: sample_params(),
            symbol: &symbol,
        };
        let mut out = Vec::new();
        encode_symbol(&packet, &key(), &mut out).unwrap();
        out
    }

    /// Writes a datagram with arbitrary header fields and a valid MAC.
    fn forge_with_key(fields: [u8; HEADER_LENGTH], body: &[u8], key: &LinkKey) -> Vec<u8> {
        let mut out = fields.to_vec();
        out.extend_from_slice(body);
        let mac = key.datagram_mac(&out);
        out.extend_from_slice(&mac);
        out
    }

    #[test]
    fn the_default_mtu_gives_1394_byte_symbols() {
        assert_eq!(max_symbol_size(DEFAULT_LINK_MTU), Ok(1394));
        assert_eq!(max_symbol_size(9000), Ok(8894));
        assert_eq!(max_symbol_size(1_000_000), Ok(MAX_SYMBOL_SIZE));
        assert_eq!(max_symbol_size(1501), Ok(1394));
        assert!(matches!(max_symbol_size(600), Err(PacketError::MtuTooSmall { .. })));
        assert!(max_symbol_size(0).is_err());
    }

    #[test]
    fn the_header_sits_at_the_documented_offsets() {
        let bytes = sample_symbol_datagram();
        assert_eq!(bytes.len(), 42 + 1000 + 16);
        assert_eq!(&bytes[0..4], b"DIOD");
        assert_eq!(bytes[4], 1);
        assert_eq!(bytes[5], 1);
        assert_eq!(&bytes[6..14], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&bytes[14..22], &9_u64.to_be_bytes());
        assert_eq!(&bytes[22..30], &0x1122_3344_5566_7788_u64.to_be_bytes());
        assert_eq!(&bytes[30..32], &[0, 4]);
        assert_eq!(&bytes[32..36], &3000_u32.to_be_bytes());
        assert_eq!(&bytes[36..38], &1000_u16.to_be_bytes());
        assert_eq!(&bytes[38..40], &[0, 3]);
        assert_eq!(&bytes[40..42], &[0, 2]);
        assert!(bytes[42..1042].iter().all(|&byte| byte == 0xAB));
    }

    #[test]
    fn the_mac_is_truncated_keyed_blake3_under_a_derived_key() {
        let bytes = sample_symbol_datagram();
        let mac_key = blake3::derive_key("diode 2025 datagram MAC v1", &[7; 32]);
        let expected = blake3::keyed_hash(&mac_key, &bytes[..bytes.len() - 16]);
        assert_eq!(&bytes[bytes.len() - 16..], &expected.as_bytes()[..16]);
    }

    #[test]
    fn a_symbol_round_trips() {
        let bytes = sample_symbol_datagram();
        let Ok(Datagram::Symbol(packet)) = decode_datagram(&bytes, &key()) else {
            panic!("expected a symbol");
        };
        assert_eq!(packet.sender_id, 0x0102_0304_0506_0708);
        assert_eq!(packet.epoch, 9);
        assert_eq!(packet.sequence, 0x1122_3344_5566_7788);
        assert_eq!(packet.symbol_index, 4);
        assert_eq!(packet.params, sample_params());
        assert_eq!(packet.symbol, &[0xAB; 1000][..]);
    }

    #[test]
    fn a_beacon_round_trips_with_zero_fec_fields() {
        let mut out = Vec::new();
        encode_beacon(1, 2, 3, b"signed beacon", &key(), &mut out).unwrap();
        assert!(out[30..42].iter().all(|&byte| byte == 0));
        assert_eq!(
            decode_datagram(&out, &key()),
            Ok(Datagram::Beacon(BeaconPacket { sender_id: 1, epoch: 2, sequence: 3, body: b"signed beacon" }))
        );
    }

    #[test]
    fn a_datagram_under_another_key_is_a_bad_mac() {
        let bytes = sample_symbol_datagram();
        let other = LinkKey::from_bytes([8; 32]);
        assert_eq!(decode_datagram(&bytes, &other), Err(PacketError::BadMac));
    }

    #[test]
    fn short_long_foreign_and_future_datagrams_are_named_as_such() {
        let bytes = sample_symbol_datagram();
        assert!(matches!(decode_datagram(&bytes[..57], &key()), Err(PacketError::TooShort { length: 57, .. })));
        let huge = vec![0; MAX_DATAGRAM_LENGTH + 1];
        assert!(matches!(decode_datagram(&huge, &key()), Err(PacketError::TooLong { .. })));
        let mut foreign = bytes.clone();
        foreign[0] = b'X';
        assert!(matches!(decode_datagram(&foreign, &key()), Err(PacketError::BadMagic { .. })));
        let mut future = bytes.clone();
        future[4] = 2;
        assert_eq!(decode_datagram(&future, &key()), Err(PacketError::UnsupportedVersion { found: 2, supported: 1 }));
    }

    #[test]
    fn authenticated_but_inconsistent_fields_are_rejected() {
        let good = sample_symbol_datagram();
        let mut fields = [0; HEADER_LENGTH];
        fields.copy_from_slice(&good[..HEADER_LENGTH]);
        let body = &good[HEADER_LENGTH..good.len() - MAC_LENGTH];

        let mut unknown = fields;
        unknown[5] = 9;
        assert_eq!(
            decode_datagram(&forge_with_key(unknown, body, &key()), &key()),
            Err(PacketError::UnknownKind { found: 9 })
        );

        let mut wrong_count = fields;
        wrong_count[38..40].copy_from_slice(&4_u16.to_be_bytes());
        assert!(matches!(
            decode_datagram(&forge_with_key(wrong_count, body, &key()), &key()),
            Err(PacketError::InconsistentParameters { source: FecError::OriginalCountMismatch { .. } })
        ));

        let mut index_too_big = fields;
        index_too_big[30..32].copy_from_slice(&5_u16.to_be_bytes());
        assert!(matches!(
            decode_datagram(&forge_with_key(index_too_big, body, &key()), &key()),
            Err(PacketError::SymbolIndexOutOfRange { index: 5, total: 5 })
        ));

        assert!(matches!(
            decode_datagram(&forge_with_key(fields, &body[..998], &key()), &key()),
            Err(PacketError::WrongSymbolLength { expected: 1000, found: 998 })
        ));

        let mut beacon_with_params = fields;
        beacon_with_params[5] = PacketKind::Beacon as u8;
        assert_eq!(
            decode_datagram(&forge_with_key(beacon_with_params, body, &key()), &key()),
            Err(PacketError::BeaconWithSymbolFields)
        );
    }

    #[test]
    fn encoding_refuses_what_decoding_would_refuse() {
        let params = sample_params();
        let symbol = vec![0; 1000];
        let mut out = Vec::new();
        let bad_index = SymbolPacket { sender_id: 1, epoch: 1, sequence: 1, symbol_index: 5, params, symbol: &symbol };
        assert!(encode_symbol(&bad_index, &key(), &mut out).is_err());
        let short = SymbolPacket { symbol_index: 0, symbol: &symbol[..10], ..bad_index };
        assert!(encode_symbol(&short, &key(), &mut out).is_err());
        let too_big = vec![0; MAX_DATAGRAM_LENGTH];
        assert!(matches!(encode_beacon(1, 1, 1, &too_big, &key(), &mut out), Err(PacketError::BodyTooLong { .. })));
    }

    #[test]
    fn the_largest_symbol_fits_the_largest_datagram() {
        let segment = vec![5; usize::from(MAX_SYMBOL_SIZE)];
        let params = FecParams::for_segment(segment.len(), MAX_SYMBOL_SIZE, 0.0, 1).unwrap();
        let symbols = fec::encode(&segment, &params).unwrap();
        let mut out = Vec::new();
        let packet = SymbolPacket { sender_id: 1, epoch: 1, sequence: 1, symbol_index: 1, params, symbol: &symbols[1] };
        encode_symbol(&packet, &key(), &mut out).unwrap();
        assert!(out.len() <= MAX_DATAGRAM_LENGTH);
        assert!(decode_datagram(&out, &key()).is_ok());
    }

    #[test]
    fn debug_output_shows_a_fingerprint_not_the_key() {
        let key = LinkKey::from_bytes([0x5A; 32]);
        let printed = format!("{key:?}");
        assert!(printed.contains(&key.fingerprint()));
        assert!(!printed.to_lowercase().contains("5a5a"));
        assert!(!printed.contains("90, 90"));
    }

    proptest! {
        #[test]
        fn a_single_flipped_bit_is_always_rejected(
            bit in 0_usize..(42 + 1000 + 16) * 8,
        ) {
            let mut bytes = sample_symbol_datagram();
            bytes[bit / 8] ^= 1 << (bit % 8);
            let result = decode_datagram(&bytes, &key());
            prop_assert!(
                matches!(
                    result,
                    Err(PacketError::BadMac
                        | PacketError::BadMagic { .. }
                        | PacketError::UnsupportedVersion { .. })
                ),
                "bit {} gave {:?}", bit, result
            );
        }

        #[test]
        fn a_flipped_bit_in_a_beacon_is_always_rejected(
            body in proptest::collection::vec(any::<u8>(), 0..300),
            seed_bit in any::<usize>(),
        ) {
            let mut bytes = Vec::new();
            encode_beacon(3, 4, 5, &body, &key(), &mut bytes).unwrap();
            let bit = seed_bit % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_datagram(&bytes, &key()).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = decode_datagram(&bytes, &key());
        }

        #[test]
        fn arbitrary_authenticated_headers_never_panic(
            fields in proptest::collection::vec(any::<u8>(), HEADER_LENGTH),
            body in proptest::collection::vec(any::<u8>(), 0..600),
            kind in 0_u8..4,
        ) {
            let mut header = [0; HEADER_LENGTH];
            header.copy_from_slice(&fields);
            header[0..4].copy_from_slice(&MAGIC);
            header[4] = VERSION;
            header[5] = kind;
            let bytes = forge_with_key(header, &body, &key());
            if let Ok(Datagram::Symbol(packet)) = decode_datagram(&bytes, &key()) {
                prop_assert!(packet.params.validate().is_ok());
                prop_assert_eq!(packet.symbol.len(), usize::from(packet.params.symbol_size));
            }
        }
    }
}

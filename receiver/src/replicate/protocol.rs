//! The replication protocol between receivers (IT side only): what a downstream and its upstream
//! say to each other over one QUIC bidirectional stream, as bytes. No IO here: frames in, messages
//! out, and the reverse; every decoder is total (an error for any input, never a panic) and has a
//! fuzz target (`fuzz/fuzz_targets/replication_message.rs`).
//!
//! # Exchange
//!
//! The downstream opens a connection (mutual TLS, ALPN [`ALPN`]) and one bidirectional stream:
//!
//! ```text
//! downstream                                   upstream
//!   Hello { version, name, positions } ──────►
//!                                      ◄────── Welcome { version }
//!                                      ◄────── Segment(sealed bytes)   (catch-up, then live)
//!   Progress { applied, refused, … }   ──────►                          (about once a second)
//! ```
//!
//! `positions` says, per (sender id, epoch), which sequences the downstream holds, as ascending
//! ranges. The upstream sends every stored segment the downstream lacks (catch-up, read from its
//! audit log), then every segment it applies from then on, in the order it applies them: new ones,
//! and late ones that fill gaps. A segment is its sealed bytes exactly as stored (header ‖
//! signature ‖ payload), so the downstream verifies the OT signature itself and trusts the
//! upstream for nothing. `Progress` carries the downstream's own counts, for the upstream's status.
//!
//! # Framing
//!
//! Each message is a frame: length u32 big-endian ‖ the message in postcard (variant index as a
//! varint, integers as varints, byte strings and lists as a varint length and their items). A
//! frame longer than the reader's limit ([`MAX_UPSTREAM_FRAME_BYTES`] for what a downstream sends,
//! [`MAX_DOWNSTREAM_FRAME_BYTES`] for what an upstream sends) ends the connection.

use serde::{Deserialize, Serialize};

/// The version both sides must speak; a `Hello` or `Welcome` of another version ends the
/// connection with an error naming both.
pub const PROTOCOL_VERSION: u16 = 1;
/// The TLS application protocol name (ALPN) of this protocol.
pub const ALPN: &[u8] = b"diode-replica/1";
/// Largest frame a downstream may send (a `Hello` with [`MAX_POSITION_RANGES`] ranges fits).
pub const MAX_UPSTREAM_FRAME_BYTES: usize = 2 * 1024 * 1024;
/// Largest frame an upstream may send: the largest segment a receiver accepts (16 MiB, the bound
/// of `reassembly.max_segment_kib`) and the message around it.
pub const MAX_DOWNSTREAM_FRAME_BYTES: usize = 16 * 1024 * 1024 + 1024;
/// Most streams a `Hello` describes. A downstream with more sends fewer (it then claims less than
/// it holds, and the upstream sends some segments again, which the downstream finds already
/// applied).
pub const MAX_POSITION_STREAMS: usize = 16_384;
/// Most ranges in all of a `Hello`'s positions together; a downstream with more sends fewer, as
/// for [`MAX_POSITION_STREAMS`].
pub const MAX_POSITION_RANGES: usize = 65_536;
/// Longest downstream name, and the characters it may use (it becomes a metrics label).
pub const MAX_NAME_BYTES: usize = 64;
/// Length prefix of a frame.
pub const FRAME_HEADER_BYTES: usize = 4;

/// What a downstream sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToUpstream {
    /// First message: who it is and what it holds.
    Hello(Hello),
    /// What it has applied so far (about once a second).
    Progress(Progress),
}

/// What an upstream sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToDownstream {
    /// Answer to `Hello`: the version the upstream speaks.
    Welcome {
        /// [`PROTOCOL_VERSION`] of the upstream; the downstream ends the connection on any other.
        version: u16,
    },
    /// One sealed segment, exactly as stored in the upstream's audit log.
    Segment(SealedBytes),
}

/// The downstream's greeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the downstream; the upstream ends the connection on any other.
    pub version: u16,
    /// The downstream's name for status and metrics (`[A-Za-z0-9._-]`, at most [`MAX_NAME_BYTES`]).
    pub name: String,
    /// What it holds, per stream.
    pub positions: Vec<StreamPosition>,
}

/// The sequences a downstream holds of one (sender id, epoch) stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The sender's id, as in the segment headers of the stream.
    pub sender_id: u64,
    /// The sender's epoch; each epoch numbers its segments from 1.
    pub epoch: u64,
    /// Ascending, disjoint, non-adjacent ranges of held sequences (each `1 <= first <= last`).
    pub held: Vec<SequenceRange>,
}

/// Sequences `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceRange {
    /// The first sequence held; at least 1.
    pub first: u64,
    /// The last sequence held; at least `first`.
    pub last: u64,
}

/// The downstream's counts, as its replica and counters have them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Segments in its replica.
    pub segments_applied: u64,
    /// Points in its replica.
    pub points_applied: u64,
    /// Segments it refused since it started (signature, hash, chain).
    pub segments_refused: u64,
}

/// Sealed segment bytes, encoded as one postcard byte string (not a list of numbers).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBytes(pub Vec<u8>);

impl std::fmt::Debug for SealedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedBytes({} bytes)", self.0.len())
    }
}

impl Serialize for SealedBytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for SealedBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> serde::de::Visitor<'de> for BytesVisitor {
            type Value = SealedBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<SealedBytes, E> {
                Ok(SealedBytes(bytes.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<SealedBytes, E> {
                Ok(SealedBytes(bytes))
            }
        }
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

/// Why bytes are not a valid message; the message says which rule was broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A frame header announces more bytes than the reader accepts: the peer is not a diode
    /// receiver of this version, or is faulty. The connection ends.
    #[error("a frame of {length} bytes is over the limit of {limit} bytes")]
    FrameTooLong {
        /// The body length the header announced, in bytes.
        length: usize,
        /// The reader's limit, [`MAX_UPSTREAM_FRAME_BYTES`] or [`MAX_DOWNSTREAM_FRAME_BYTES`].
        limit: usize,
    },
    /// The frame's body does not decode as a message of this protocol.
    #[error("the frame is not a valid message: {0}")]
    Malformed(String),
    /// The body decodes as a message with bytes left over, which a correct peer never sends.
    #[error("the frame holds {extra} bytes after its message")]
    TrailingBytes {
        /// Bytes after the message's end.
        extra: usize,
    },
    /// The two receivers run different protocol versions: upgrade the older one so both speak
    /// the same.
    #[error("the peer speaks protocol version {found}; this receiver speaks version {expected}")]
    Version {
        /// The version the peer sent.
        found: u16,
        /// [`PROTOCOL_VERSION`], this receiver's.
        expected: u16,
    },
    /// The downstream's name breaks the rules of [`MAX_NAME_BYTES`]; fix `name` in the
    /// downstream's `[upstream]` section.
    #[error("the downstream name {name:?} is not 1 to {MAX_NAME_BYTES} characters of A-Z a-z 0-9 . _ -")]
    Name {
        /// The name as sent.
        name: String,
    },
    /// A `Hello` lists more streams or ranges than [`MAX_POSITION_STREAMS`] or
    /// [`MAX_POSITION_RANGES`] allow.
    #[error("the hello describes {found} streams or ranges; at most {limit} are allowed")]
    TooManyPositions {
        /// How many streams or ranges it lists.
        found: usize,
        /// The limit broken.
        limit: usize,
    },
    /// A stream's ranges are not ascending, disjoint and non-adjacent, or one starts at 0 or
    /// ends before it starts.
    #[error("the position of sender {sender_id} epoch {epoch} is not ascending, disjoint ranges of sequences from 1")]
    Ranges {
        /// The stream's sender id.
        sender_id: u64,
        /// The stream's epoch.
        epoch: u64,
    },
    /// A `Segment` message carries no bytes, so no segment.
    #[error("a segment message holds no bytes")]
    EmptySegment,
}

/// The frame of `message`: length ‖ postcard.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let frame = postcard::to_extend(message, vec![0u8; FRAME_HEADER_BYTES]).expect("encoding into a Vec cannot fail");
    finish_frame(frame)
}

fn finish_frame(mut frame: Vec<u8>) -> Vec<u8> {
    let length = u32::try_from(frame.len() - FRAME_HEADER_BYTES).expect("messages are far below 4 GiB");
    frame[..FRAME_HEADER_BYTES].copy_from_slice(&length.to_be_bytes());
    frame
}

/// The frame of a `Segment` message, built without copying through the enum.
pub fn encode_segment(sealed: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + 12 + sealed.len());
    frame.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    frame.push(1); // variant index of `ToDownstream::Segment`
    let mut length = sealed.len() as u64;
    loop {
        let byte = (length & 0x7f) as u8;
        length >>= 7;
        if length == 0 {
            frame.push(byte);
            break;
        }
        frame.push(byte | 0x80);
    }
    frame.extend_from_slice(sealed);
    finish_frame(frame)
}

/// The body length a frame header announces, refused above `limit`.
pub fn frame_length(header: [u8; FRAME_HEADER_BYTES], limit: usize) -> Result<usize, ProtocolError> {
    let length = u32::from_be_bytes(header) as usize;
    if length > limit {
        return Err(ProtocolError::FrameTooLong { length, limit });
    }
    Ok(length)
}

fn decode_exact<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ProtocolError> {
    let (message, rest) =
        postcard::take_from_bytes(body).map_err(|error| ProtocolError::Malformed(error.to_string()))?;
    if !rest.is_empty() {
        return Err(ProtocolError::TrailingBytes { extra: rest.len() });
    }
    Ok(message)
}

/// Decodes and checks the body of a frame a downstream sent.
pub fn decode_to_upstream(body: &[u8]) -> Result<ToUpstream, ProtocolError> {
    if body.len() > MAX_UPSTREAM_FRAME_BYTES {
        return Err(ProtocolError::FrameTooLong { length: body.len(), limit: MAX_UPSTREAM_FRAME_BYTES });
    }
    let message: ToUpstream = decode_exact(body)?;
    if let ToUpstream::Hello(hello) = &message {
        check_hello(hello)?;
    }
    Ok(message)
}

/// Decodes and checks the body of a frame an upstream sent.
pub fn decode_to_downstream(body: &[u8]) -> Result<ToDownstream, ProtocolError> {
    if body.len() > MAX_DOWNSTREAM_FRAME_BYTES {
        return Err(ProtocolError::FrameTooLong { length: body.len(), limit: MAX_DOWNSTREAM_FRAME_BYTES });
    }
    let message: ToDownstream = decode_exact(body)?;
    match &message {
        ToDownstream::Welcome { version } if *version != PROTOCOL_VERSION => {
            Err(ProtocolError::Version { found: *version, expected: PROTOCOL_VERSION })
        }
        ToDownstream::Segment(bytes) if bytes.0.is_empty() => Err(ProtocolError::EmptySegment),
        _ => Ok(message),
    }
}

/// Whether `name` may be a downstream's name.
pub fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_BYTES).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_hello(hello: &Hello) -> Result<(), ProtocolError> {
    if hello.version != PROTOCOL_VERSION {
        return Err(ProtocolError::Version { found: hello.version, expected: PROTOCOL_VERSION });
    }
    if !is_valid_name(&hello.name) {
        return Err(ProtocolError::Name { name: hello.name.chars().take(MAX_NAME_BYTES).collect() });
    }
    if hello.positions.len() > MAX_POSITION_STREAMS {
        return Err(ProtocolError::TooManyPositions { found: hello.positions.len(), limit: MAX_POSITION_STREAMS });
    }
    let ranges: usize = hello.positions.iter().map(|position| position.held.len()).sum();
    if ranges > MAX_POSITION_RANGES {
        return Err(ProtocolError::TooManyPositions { found: ranges, limit: MAX_POSITION_RANGES });
    }
    for position in &hello.positions {
        let mut next_free = 1u64; // lowest sequence the next range may start at
        for range in &position.held {
            if range.first < next_free || range.last < range.first {
                return Err(ProtocolError::Ranges { sender_id: position.sender_id, epoch: position.epoch });
            }
            // Non-adjacent: the next range starts at least two above this one's end.
            next_free = range.last.saturating_add(2);
            if range.last == u64::MAX {
                next_free = u64::MAX;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn hello(positions: Vec<StreamPosition>) -> ToUpstream {
        ToUpstream::Hello(Hello { version: PROTOCOL_VERSION, name: "enterprise-1".into(), positions })
    }

    fn body(frame: &[u8]) -> &[u8] {
        let length = frame_length(frame[..4].try_into().unwrap(), usize::MAX).unwrap();
        assert_eq!(length, frame.len() - 4);
        &frame[4..]
    }

    #[test]
    fn a_segment_frame_built_directly_decodes_like_the_enum() {
        for size in [1usize, 127, 128, 300, 70_000] {
            let sealed: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let frame = encode_segment(&sealed);
            assert_eq!(frame, encode(&ToDownstream::Segment(SealedBytes(sealed.clone()))));
            assert_eq!(decode_to_downstream(body(&frame)).unwrap(), ToDownstream::Segment(SealedBytes(sealed)));
        }
    }

    #[test]
    fn overlapping_or_unordered_ranges_are_refused_naming_the_stream() {
        let bad = [vec![(0, 3)], vec![(5, 3)], vec![(1, 3), (4, 6)], vec![(5, 6), (1, 2)]];
        for ranges in bad {
            let held = ranges.iter().map(|&(first, last)| SequenceRange { first, last }).collect();
            let frame = encode(&hello(vec![StreamPosition { sender_id: 7, epoch: 9, held }]));
            let error = decode_to_upstream(body(&frame)).unwrap_err();
            assert_eq!(error, ProtocolError::Ranges { sender_id: 7, epoch: 9 }, "{ranges:?}");
        }
    }

    #[test]
    fn another_version_and_a_bad_name_are_refused() {
        let frame = encode(&ToUpstream::Hello(Hello { version: 2, name: "a".into(), positions: vec![] }));
        assert_eq!(decode_to_upstream(body(&frame)).unwrap_err(), ProtocolError::Version { found: 2, expected: 1 });
        let frame = encode(&ToUpstream::Hello(Hello { version: 1, name: "a b\n".into(), positions: vec![] }));
        assert!(matches!(decode_to_upstream(body(&frame)).unwrap_err(), ProtocolError::Name { .. }));
        let frame = encode(&ToDownstream::Welcome { version: 9 });
        assert!(matches!(decode_to_downstream(body(&frame)).unwrap_err(), ProtocolError::Version { .. }));
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_from_its_header() {
        let header = ((MAX_UPSTREAM_FRAME_BYTES + 1) as u32).to_be_bytes();
        assert!(matches!(frame_length(header, MAX_UPSTREAM_FRAME_BYTES), Err(ProtocolError::FrameTooLong { .. })));
    }

    #[test]
    fn trailing_bytes_and_truncated_messages_are_refused() {
        let mut frame =
            encode(&ToUpstream::Progress(Progress { segments_applied: 5, points_applied: 6, segments_refused: 0 }));
        frame.push(0);
        assert_eq!(decode_to_upstream(&frame[4..]).unwrap_err(), ProtocolError::TrailingBytes { extra: 1 });
        let frame = encode_segment(&[1, 2, 3]);
        assert!(matches!(decode_to_downstream(&frame[4..frame.len() - 1]), Err(ProtocolError::Malformed(_))));
    }

    fn position() -> impl Strategy<Value = StreamPosition> {
        (any::<u64>(), any::<u64>(), proptest::collection::vec((1u64..1_000, 0u64..1_000), 0..8)).prop_map(
            |(sender_id, epoch, steps)| {
                let mut next = 1u64;
                let held = steps
                    .into_iter()
                    .map(|(skip, length)| {
                        let first = next + skip - 1;
                        let last = first + length;
                        next = last + 2;
                        SequenceRange { first, last }
                    })
                    .collect();
                StreamPosition { sender_id, epoch, held }
            },
        )
    }

    proptest! {
        #[test]
        fn every_valid_message_round_trips(
            positions in proptest::collection::vec(position(), 0..6),
            counts in any::<(u64, u64, u64)>(),
            sealed in proptest::collection::vec(any::<u8>(), 1..300),
        ) {
            let up = [
                hello(positions),
                ToUpstream::Progress(Progress { segments_applied: counts.0, points_applied: counts.1, segments_refused: counts.2 }),
            ];
            for message in up {
                let frame = encode(&message);
                prop_assert_eq!(decode_to_upstream(body(&frame)).unwrap(), message);
            }
            let down = [ToDownstream::Welcome { version: PROTOCOL_VERSION }, ToDownstream::Segment(SealedBytes(sealed))];
            for message in down {
                let frame = encode(&message);
                prop_assert_eq!(decode_to_downstream(body(&frame)).unwrap(), message);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_to_upstream(&bytes);
            let _ = decode_to_downstream(&bytes);
        }
    }
}

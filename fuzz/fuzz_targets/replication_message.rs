//! The replication protocol's decoders (`receiver/src/replicate/protocol.rs`: what a downstream
//! and an upstream receiver send each other over QUIC) on arbitrary bytes: never panic; whatever
//! decodes encodes to a frame that decodes to the same message. The protocol module is compiled
//! in from the receiver's source, so this crate stays free of RocksDB and QUIC.
#![no_main]

#[path = "../../receiver/src/replicate/protocol.rs"]
#[allow(dead_code, unreachable_pub)]
mod protocol;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(message) = protocol::decode_to_upstream(bytes) {
        let frame = protocol::encode(&message);
        assert_eq!(protocol::decode_to_upstream(&frame[protocol::FRAME_HEADER_BYTES..]), Ok(message));
    }
    if let Ok(message) = protocol::decode_to_downstream(bytes) {
        let frame = protocol::encode(&message);
        assert_eq!(protocol::decode_to_downstream(&frame[protocol::FRAME_HEADER_BYTES..]), Ok(message));
    }
    if bytes.len() >= protocol::FRAME_HEADER_BYTES {
        let header: [u8; protocol::FRAME_HEADER_BYTES] = bytes[..protocol::FRAME_HEADER_BYTES].try_into().unwrap();
        let _ = protocol::frame_length(header, protocol::MAX_UPSTREAM_FRAME_BYTES);
    }
});

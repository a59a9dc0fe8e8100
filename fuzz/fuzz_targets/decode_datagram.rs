//! Fuzzes `decode_datagram`: it must never panic, and whatever it accepts must be consistent
//! and re-encode to exactly the same bytes.
//!
//! The first input byte picks a mode:
//! - even: the rest is the datagram as received (almost always stops at the MAC, as it should);
//! - odd: the rest is a header and body, given the right magic and version and a *valid* MAC
//!   under the fuzzing key, so that the fuzzer explores the parser behind the MAC. With bit 1
//!   also set, `original_count` is made consistent with `segment_length` and `symbol_size`, so
//!   that symbol datagrams get past parameter validation too.
#![no_main]

use diode_common::packet::{
    Datagram, HEADER_LENGTH, LinkKey, MAGIC, VERSION, decode_datagram, encode_beacon, encode_symbol,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = LinkKey::from_bytes([0x42; 32]);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        check(rest, &key);
        return;
    }
    let mut datagram = rest.to_vec();
    if datagram.len() >= 5 {
        datagram[..4].copy_from_slice(&MAGIC);
        datagram[4] = VERSION;
    }
    if mode & 2 != 0 && datagram.len() >= HEADER_LENGTH {
        let segment_length = u32::from_be_bytes(datagram[32..36].try_into().unwrap());
        let symbol_size = u16::from_be_bytes(datagram[36..38].try_into().unwrap());
        if symbol_size != 0 {
            let original_count = u64::from(segment_length).div_ceil(u64::from(symbol_size));
            datagram[38..40].copy_from_slice(&(original_count as u16).to_be_bytes());
        }
    }
    let mac = key.datagram_mac(&datagram);
    datagram.extend_from_slice(&mac);
    check(&datagram, &key);
});

fn check(bytes: &[u8], key: &LinkKey) {
    let Ok(datagram) = decode_datagram(bytes, key) else {
        return;
    };
    let mut again = Vec::new();
    match datagram {
        Datagram::Symbol(packet) => {
            assert!(packet.params.validate().is_ok());
            assert!(u32::from(packet.symbol_index) < packet.params.total_count());
            assert_eq!(packet.symbol.len(), usize::from(packet.params.symbol_size));
            encode_symbol(&packet, key, &mut again).expect("an accepted symbol re-encodes");
        }
        Datagram::Beacon(packet) => {
            encode_beacon(packet.sender_id, packet.epoch, packet.sequence, packet.body, key, &mut again)
                .expect("an accepted beacon re-encodes");
        }
    }
    assert_eq!(again, bytes, "decode then encode must give the same bytes");
}

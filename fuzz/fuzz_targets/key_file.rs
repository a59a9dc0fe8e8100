//! Key files and key ids as an operator hands them over (`signing.pub`, the receiver's trusted
//! keys, `link.key`, a key id on the command line): 64 hexadecimal digits with white space
//! around them, or 32 raw bytes. Never a panic; whatever reads as a key is that key as diode
//! writes it, and a key id reads back from its own text.
#![no_main]

use diode_common::keys::{KeyId, encode_hex, parse_key_bytes, parse_public_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(key) = parse_key_bytes(bytes, "fuzz.key") {
        let written = encode_hex(&key);
        assert_eq!(parse_key_bytes(written.as_bytes(), "fuzz.key"), Ok(key));
        assert_eq!(parse_key_bytes(format!(" {written}\n").as_bytes(), "fuzz.key"), Ok(key));
        if bytes.len() != 32 {
            let text = std::str::from_utf8(bytes).expect("a key read from text is text");
            assert!(text.trim().eq_ignore_ascii_case(&written), "{text:?} read as {written}");
        }
    } else {
        assert!(parse_public_key(bytes, "fuzz.key").is_err());
    }
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Ok(id) = KeyId::from_hex(text)
    {
        assert_eq!(KeyId::from_hex(&id.to_string()), Ok(id));
    }
});

//! Keys: the sender's ed25519 signing key, the receivers' set of trusted public keys, and how
//! key files are read.
//!
//! A key is named by its [`KeyId`], derived from the public key itself, so an auditor can recompute
//! it and a receiver can trust several keys at once while the sender rotates.

use std::fmt;

use ed25519_dalek::{SigningKey, VerifyingKey};

/// Context string for deriving key ids (blake3 `derive_key` mode).
const KEY_ID_CONTEXT: &str = "diode 2026 key id v1";

/// The first 8 bytes of `blake3::derive_key("diode 2026 key id v1", public_key)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The id of `public_key`: what the sender writes into every segment and beacon it signs, and
    /// what a receiver or an auditor recomputes from the public keys they trust.
    pub fn of(public_key: &VerifyingKey) -> KeyId {
        let derived = blake3::derive_key(KEY_ID_CONTEXT, public_key.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&derived[..8]);
        KeyId(id)
    }

    /// Parses the 16-hex-digit form shown by `Display`.
    pub fn from_hex(text: &str) -> Result<KeyId, KeyError> {
        let bytes = decode_hex(text.trim()).ok_or_else(|| KeyError::BadKeyId { text: text.to_owned() })?;
        let id: [u8; 8] = bytes.try_into().map_err(|_| KeyError::BadKeyId { text: text.to_owned() })?;
        Ok(KeyId(id))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_hex(&self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// The sender's signing identity.
#[derive(Clone)]
pub struct SenderKey {
    signing_key: SigningKey,
    key_id: KeyId,
}

impl SenderKey {
    /// From the 32-byte ed25519 seed (what `signing.key` holds).
    pub fn from_seed(seed: [u8; 32]) -> SenderKey {
        let signing_key = SigningKey::from_bytes(&seed);
        let key_id = KeyId::of(&signing_key.verifying_key());
        SenderKey { signing_key, key_id }
    }

    /// The id of this key's public half, named in the header of everything it signs.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The public half, for `signing.pub`: receivers and auditors verify with it.
    pub fn public_key(&self) -> VerifyingKey {
        self.signing_key.verifying_key()
    }

    /// The 64-byte ed25519 signature of `message`. Deterministic: the same message always gives
    /// the same signature.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.signing_key.sign(message).to_bytes()
    }

    /// The seed, for writing `signing.key`.
    pub fn seed(&self) -> [u8; 32] {
        self.signing_key.to_bytes()
    }
}

impl fmt::Debug for SenderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SenderKey({}, secret withheld)", self.key_id)
    }
}

/// One public key a receiver trusts, with the window of sealing times in which it is valid.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// The ed25519 key that verifies signatures.
    pub public_key: VerifyingKey,
    /// `KeyId::of(&public_key)`, which [`TrustedKey::new`] sets: segments and beacons are matched
    /// to this key by it.
    pub key_id: KeyId,
    /// Segments sealed before this instant (ns) are refused; `None`: no lower bound.
    pub valid_from_ns: Option<i64>,
    /// Segments sealed at or after this instant (ns) are refused: the key was retired or revoked.
    pub valid_until_ns: Option<i64>,
}

impl TrustedKey {
    /// Trusts `public_key` at every sealing time; set `valid_from_ns` and `valid_until_ns` to
    /// bound it when keys are rotated or revoked.
    pub fn new(public_key: VerifyingKey) -> TrustedKey {
        TrustedKey { key_id: KeyId::of(&public_key), public_key, valid_from_ns: None, valid_until_ns: None }
    }

    /// Whether the key may sign at `sealed_at_ns` (a segment's sealing time or a beacon's sending
    /// time, ns since the Unix epoch): at or after `valid_from_ns` and before `valid_until_ns`.
    pub fn is_valid_at(&self, sealed_at_ns: i64) -> bool {
        self.valid_from_ns.is_none_or(|from| sealed_at_ns >= from)
            && self.valid_until_ns.is_none_or(|until| sealed_at_ns < until)
    }
}

/// The set of keys a receiver or an auditor accepts.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<TrustedKey>,
}

impl TrustedKeys {
    /// Trusts exactly `keys`. With none, nothing verifies; if two share a key id, the first is
    /// used.
    pub fn new(keys: Vec<TrustedKey>) -> TrustedKeys {
        TrustedKeys { keys }
    }

    /// Trusts one key at every time: one sender, no rotation yet.
    pub fn single(public_key: VerifyingKey) -> TrustedKeys {
        TrustedKeys::new(vec![TrustedKey::new(public_key)])
    }

    /// The trusted key with this id, or `None`: then whatever names the id is refused as signed by
    /// an unknown key.
    pub fn get(&self, key_id: KeyId) -> Option<&TrustedKey> {
        self.keys.iter().find(|key| key.key_id == key_id)
    }

    /// The keys, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &TrustedKey> {
        self.keys.iter()
    }

    /// True if no key is trusted, so nothing can verify.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Reads a 32-byte key from a key file's contents: 64 hexadecimal digits (what diode writes,
/// surrounding white space allowed) or exactly 32 raw bytes. `what` names the file in errors.
pub fn parse_key_bytes(contents: &[u8], what: &str) -> Result<[u8; 32], KeyError> {
    if let Ok(raw) = <[u8; 32]>::try_from(contents) {
        // 32 raw bytes that happen to be printable hex digits cannot be a 64-digit hex key, so the
        // two forms never overlap.
        return Ok(raw);
    }
    let text = std::str::from_utf8(contents)
        .map_err(|_| KeyError::BadKeyFile { what: what.to_owned(), length_bytes: contents.len() })?;
    // The decoded copy is a secret too: wiped when it goes.
    let bytes = zeroize::Zeroizing::new(
        decode_hex(text.trim())
            .ok_or_else(|| KeyError::BadKeyFile { what: what.to_owned(), length_bytes: contents.len() })?,
    );
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| KeyError::BadKeyFile { what: what.to_owned(), length_bytes: contents.len() })
}

/// Reads an ed25519 public key (`signing.pub`).
pub fn parse_public_key(contents: &[u8], what: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = parse_key_bytes(contents, what)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::NotAPublicKey { what: what.to_owned() })
}

/// Compares secrets (tokens, keys) in time that depends only on their lengths, so a caller cannot
/// learn a secret byte by byte from response times.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lower-case hexadecimal, two digits per byte: how key files, key ids and hashes are written.
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0F)]));
    }
    text
}

/// The bytes that hexadecimal digits (either case) stand for; `None` for an odd number of
/// digits or any other character, white space included (trim first).
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    text.as_bytes().chunks_exact(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

/// Why a key file or a key id could not be read. The messages name the file or the text at
/// fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A key file holds neither 64 hexadecimal digits (white space around them allowed) nor
    /// exactly 32 raw bytes.
    #[error(
        "{what} is {length_bytes} bytes and is neither 64 hexadecimal digits nor 32 raw bytes; \
         regenerate it with `diode-sender keygen`"
    )]
    BadKeyFile {
        /// The file, as the caller named it (usually its path).
        what: String,
        /// The file's length in bytes.
        length_bytes: usize,
    },
    /// A public key file has the right form, but its 32 bytes are not a valid ed25519 public key.
    #[error("{what} does not hold a valid ed25519 public key; copy signing.pub from the sender again")]
    NotAPublicKey {
        /// The file, as the caller named it (usually its path).
        what: String,
    },
    /// A key id given as text (configuration, command line) is not 16 hexadecimal digits.
    #[error("key id {text:?} is not 16 hexadecimal digits")]
    BadKeyId {
        /// The text as given.
        text: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_read_as_hex_or_raw_bytes() {
        let key = [7u8; 32];
        assert_eq!(parse_key_bytes(&key, "link.key"), Ok(key));
        let hex = format!("{}\n", encode_hex(&key));
        assert_eq!(parse_key_bytes(hex.as_bytes(), "link.key"), Ok(key));
    }

    #[test]
    fn a_short_key_file_says_how_long_it_is_and_what_to_do() {
        let message = parse_key_bytes(&[1u8; 12], "/etc/diode/link.key").unwrap_err().to_string();
        assert!(message.contains("/etc/diode/link.key is 12 bytes"), "{message}");
        assert!(message.contains("diode-sender keygen"), "{message}");
    }

    #[test]
    fn key_ids_are_stable_and_round_trip_through_hex() {
        let key = SenderKey::from_seed([1u8; 32]);
        let id = key.key_id();
        assert_eq!(KeyId::of(&key.public_key()), id);
        assert_eq!(KeyId::from_hex(&id.to_string()), Ok(id));
        assert_ne!(SenderKey::from_seed([2u8; 32]).key_id(), id);
    }

    #[test]
    fn validity_windows_are_half_open() {
        let mut trusted = TrustedKey::new(SenderKey::from_seed([3u8; 32]).public_key());
        trusted.valid_from_ns = Some(100);
        trusted.valid_until_ns = Some(200);
        assert!(!trusted.is_valid_at(99));
        assert!(trusted.is_valid_at(100));
        assert!(trusted.is_valid_at(199));
        assert!(!trusted.is_valid_at(200));
    }

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret!"));
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let key = SenderKey::from_seed([9u8; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains(&encode_hex(&[9u8; 32])));
    }
}

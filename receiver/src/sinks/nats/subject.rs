//! Subjects and message ids of the NATS sink: a series' name and tags as one subject token,
//! reversible and collision-free, and the `Nats-Msg-Id` of every message.
//!
//! A token is the series name escaped, then, if it has tags, `~` and its tags escaped as
//! `key=value` joined by `,`. Escaping keeps the bytes `A-Z a-z 0-9 _ - /` and writes every other
//! byte of the UTF-8 text as `%` and two upper-case hex digits (`.` → `%2E`, space → `%20`,
//! `%` → `%25`, `é` → `%C3%A9`). An escaped text never holds `~`, `=` or `,`, so the token splits
//! back unambiguously: [`parse_series_token`] is the inverse of [`series_token`], and two series
//! never share a token. A token holds none of the characters NATS gives a meaning (`.`, `*`, `>`,
//! whitespace) and never starts with `$`.
//!
//! A token longer than [`MAX_SERIES_TOKEN_BYTES`] (only possible with very long names or many long
//! tags) is replaced by `~` and the first 16 bytes of the SHA-256 of the long token, in lower-case
//! hex: still one token per series, but not reversible (the message body names the series).
//! Since an escaped name is never empty and never starts with `~`, the two forms never meet.

use diode_common::record::SeriesKey;
use sha2::{Digest, Sha256};

/// Longest token a series gets in full; a longer one is replaced by its digest.
pub const MAX_SERIES_TOKEN_BYTES: usize = 512;

/// Whether `byte` stands for itself in a token.
fn is_kept(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'/')
}

/// Appends `text` escaped: kept bytes as they are, every other byte as `%XX`.
fn escape_into(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in text.as_bytes() {
        if is_kept(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
}

/// Reverses [`escape_into`]; `None` when `text` is not what it writes (a byte that should have
/// been escaped, an escaped byte that should not have been, a bad `%XX`, or bytes that are not
/// UTF-8).
fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' {
            let hex = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
            if hex.bytes().any(|digit| digit.is_ascii_lowercase()) {
                return None;
            }
            let escaped = u8::from_str_radix(hex, 16).ok()?;
            if is_kept(escaped) {
                // `escape_into` never escapes these: one text, one token.
                return None;
            }
            out.push(escaped);
            index += 3;
        } else if is_kept(byte) {
            out.push(byte);
            index += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// The full, reversible token of a series, whatever its length.
pub fn full_series_token(key: &SeriesKey) -> String {
    let mut token = String::with_capacity(key.name.len() + 16);
    escape_into(&key.name, &mut token);
    for (index, (tag, value)) in key.tags.iter().enumerate() {
        token.push(if index == 0 { '~' } else { ',' });
        escape_into(tag, &mut token);
        token.push('=');
        escape_into(value, &mut token);
    }
    token
}

/// The first 16 bytes of the SHA-256 of `text`, in lower-case hex (32 characters).
pub fn digest(text: &str) -> String {
    use std::fmt::Write;
    let hash = Sha256::digest(text.as_bytes());
    hash[..16].iter().fold(String::with_capacity(32), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// The subject token of a series: [`full_series_token`], or `~` and its [`digest`] when that is
/// longer than [`MAX_SERIES_TOKEN_BYTES`].
pub fn series_token(key: &SeriesKey) -> String {
    let token = full_series_token(key);
    if token.len() <= MAX_SERIES_TOKEN_BYTES { token } else { format!("~{}", digest(&token)) }
}

/// The series a full token names; `None` for a digest token, text that is not a token, or a
/// series no source could have sent (one [`SeriesKey::validate`] refuses: an over-long name,
/// tags out of order or repeated, …). What it gives back has exactly `token` as its full token.
pub fn parse_series_token(token: &str) -> Option<SeriesKey> {
    let (name, tags) = match token.split_once('~') {
        Some((name, tags)) => (name, Some(tags)),
        None => (token, None),
    };
    let name = unescape(name).filter(|name| !name.is_empty())?;
    let mut pairs = Vec::new();
    for pair in tags.map(|tags| tags.split(',')).into_iter().flatten() {
        let (tag, value) = pair.split_once('=')?;
        pairs.push((unescape(tag)?, unescape(value)?));
    }
    let key = SeriesKey { name: name.into(), tags: pairs.into() };
    key.validate().ok().map(|()| key)
}

/// The subject of a series' points: `<prefix>.points.<sender id>.<series token>`.
pub fn points_subject(prefix: &str, sender_id: u64, token: &str) -> String {
    format!("{prefix}.points.{sender_id}.{token}")
}

/// The subject of sealed segments: `<prefix>.segments.<sender id>`.
pub fn segments_subject(prefix: &str, sender_id: u64) -> String {
    format!("{prefix}.segments.{sender_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(name: &str, tags: &[(&str, &str)]) -> SeriesKey {
        SeriesKey::with_tags(name, tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn plain_names_read_as_they_are_and_the_rest_is_escaped() {
        assert_eq!(series_token(&key("plant1/boiler3/steam_temp", &[])), "plant1/boiler3/steam_temp");
        assert_eq!(
            series_token(&key("cpu.load 1m", &[("host", "a.b"), ("dc", "x>y")])),
            "cpu%2Eload%201m~dc=x%3Ey,host=a%2Eb"
        );
        assert_eq!(series_token(&key("~a=b,c%*$é", &[])), "%7Ea%3Db%2Cc%25%2A%24%C3%A9");
        assert_eq!(
            points_subject("diode", 3, &series_token(&key("a.b", &[]))),
            "diode.points.3.a%2Eb",
            "one token per series"
        );
    }

    #[test]
    fn a_name_that_looks_like_tags_and_a_series_with_tags_get_different_tokens() {
        let with_tags = series_token(&key("a", &[("b", "c")]));
        let lookalike = series_token(&key("a{b=c}", &[]));
        let tilde = series_token(&key("a~b=c", &[]));
        assert_ne!(with_tags, lookalike);
        assert_ne!(with_tags, tilde);
        assert_eq!(parse_series_token(&with_tags), Some(key("a", &[("b", "c")])));
        assert_eq!(parse_series_token(&tilde), Some(key("a~b=c", &[])));
    }

    #[test]
    fn a_long_series_gets_its_digest_and_texts_that_are_not_tokens_are_refused() {
        let long = key(&"x".repeat(400), &[("tag", &".".repeat(100))]);
        let token = series_token(&long);
        assert_eq!(token, format!("~{}", digest(&full_series_token(&long))));
        assert_eq!(token.len(), 33);
        assert_eq!(parse_series_token(&token), None);
        let unsorted = format!("{}~b=1,a=2", "s");
        for bad in ["", "%", "%2", "%2e", "a.b", "a b", "a~b", "a~b=c,", "%FF", "~", "%41", "a~b=1,b=2", &unsorted] {
            assert_eq!(parse_series_token(bad), None, "{bad:?}");
        }
    }

    /// Valid series as sources make them: any non-control characters, tags sorted and unique.
    fn any_series() -> impl Strategy<Value = SeriesKey> {
        let text = "[^\\p{Cc}]{1,12}";
        (text, proptest::collection::btree_map(text, text, 0..4))
            .prop_map(|(name, tags)| SeriesKey { name: name.into(), tags: tags.into_iter().collect() })
    }

    proptest! {
        #[test]
        fn tokens_read_back_to_their_series_and_hold_nothing_nats_reads(series in any_series()) {
            let full = full_series_token(&series);
            prop_assert_eq!(parse_series_token(&full), Some(series.clone()));
            let token = series_token(&series);
            if full.len() <= MAX_SERIES_TOKEN_BYTES {
                prop_assert_eq!(&token, &full);
            } else {
                prop_assert_eq!(&token, &format!("~{}", digest(&full)));
            }
            prop_assert!(!token.is_empty() && !token.starts_with('$'));
            prop_assert!(token.bytes().all(|byte| byte.is_ascii_graphic() && !b".*>".contains(&byte)), "{}", token);
        }

        #[test]
        fn text_that_reads_as_a_series_is_exactly_that_series_token(text in "([a-c/~=,%]|%[0-9A-Fa-f]{2}){0,16}") {
            if let Some(series) = parse_series_token(&text) {
                prop_assert!(series.validate().is_ok());
                prop_assert_eq!(full_series_token(&series), text);
            }
        }

        #[test]
        fn different_series_never_share_a_token(first in any_series(), second in any_series()) {
            prop_assert_eq!(first == second, full_series_token(&first) == full_series_token(&second));
            let (mut renamed, mut retagged) = (first.clone(), first.clone());
            renamed.name = format!("{}.", first.name).into();
            let mut tags = first.tags.to_vec();
            tags.push(("\u{10FFFF}".to_owned(), String::new() + "="));
            retagged.tags = tags.into();
            prop_assert_ne!(full_series_token(&renamed), full_series_token(&first));
            prop_assert_ne!(full_series_token(&retagged), full_series_token(&first));
        }
    }
}

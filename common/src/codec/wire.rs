//! Byte-level building blocks of the codec: LEB128 varints, zigzag, a bounds-checked reader and a
//! bit writer/reader for the Gorilla XOR stream.
//!
//! Every read names what it was reading so a decode error can say what is wrong and where.

use super::CodecError;

/// Most bytes a LEB128 varint of a `u64` takes.
pub(super) const MAX_VARINT_BYTES: usize = 10;

/// Maps signed to unsigned so that small magnitudes of either sign give small varints.
#[inline]
pub fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline]
pub fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Appends `value` as an unsigned LEB128 varint (7 bits a byte, least significant group first,
/// high bit set on every byte but the last). Other formats of diode (the replica's merged
/// buckets) use the same varints.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The varint at the start of `bytes` and its length, if `bytes` holds a whole, valid one (at most
/// ten bytes, the tenth carrying only the 64th bit).
#[inline]
pub fn varint_prefix(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (index, &byte) in bytes.iter().take(MAX_VARINT_BYTES).enumerate() {
        let group = u64::from(byte & 0x7F);
        // The tenth byte may only carry the 64th bit.
        if index == MAX_VARINT_BYTES - 1 && group > 1 {
            return None;
        }
        value |= group << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

#[inline]
pub(super) fn put_signed_varint(out: &mut Vec<u8>, value: i64) {
    put_varint(out, zigzag(value));
}

/// Bytes [`put_varint`] writes for `value`.
#[inline]
pub(super) fn varint_len(value: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 still takes one byte.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends a length-prefixed byte string.
pub(super) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A cursor over untrusted bytes: every read checks what remains and fails with a
/// [`CodecError`] naming the field and its offset, never panics.
#[derive(Debug, Clone)]
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    pub(super) const fn empty() -> Self {
        Self { bytes: &[], position: 0 }
    }

    pub(super) fn position(&self) -> usize {
        self.position
    }

    /// The bytes read since the reader stood at `start` (a [`position`](Self::position) taken
    /// earlier).
    pub(super) fn since(&self, start: usize) -> &'a [u8] {
        &self.bytes[start.min(self.position)..self.position]
    }

    pub(super) fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    pub(super) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next byte, without reading it.
    pub(super) fn peek_u8(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn truncated(&self, what: &'static str, needed_bytes: u64) -> CodecError {
        CodecError::Truncated { what, offset: self.position, needed_bytes, remaining_bytes: self.remaining() }
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        let byte = *self.bytes.get(self.position).ok_or_else(|| self.truncated(what, 1))?;
        self.position += 1;
        Ok(byte)
    }

    pub(super) fn varint(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let start = self.position;
        let mut value: u64 = 0;
        for index in 0..MAX_VARINT_BYTES {
            let Some(&byte) = self.bytes.get(self.position) else {
                let error = self.truncated(what, 1);
                self.position = start;
                return Err(error);
            };
            self.position += 1;
            let group = u64::from(byte & 0x7F);
            // The tenth byte may only carry the 64th bit.
            if index == MAX_VARINT_BYTES - 1 && group > 1 {
                return Err(CodecError::VarintOverflow { what, offset: start });
            }
            value |= group << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CodecError::VarintOverflow { what, offset: start })
    }

    pub(super) fn signed_varint(&mut self, what: &'static str) -> Result<i64, CodecError> {
        self.varint(what).map(unzigzag)
    }

    /// A varint that must be at most `max`; `expected` says what the limit means.
    pub(super) fn varint_at_most(
        &mut self,
        what: &'static str,
        max: u64,
        expected: &'static str,
    ) -> Result<u64, CodecError> {
        let offset = self.position;
        let value = self.varint(what)?;
        if value > max {
            return Err(CodecError::OutOfRange { what, offset, value, expected });
        }
        Ok(value)
    }

    /// A count of items that each take at least one byte of what follows, so it can be checked
    /// against the remaining input before anything is allocated for it.
    pub(super) fn count_of_byte_items(&mut self, what: &'static str, max: u64) -> Result<usize, CodecError> {
        let offset = self.position;
        let count = self.varint(what)?;
        if count > max {
            return Err(CodecError::OutOfRange { what, offset, value: count, expected: "within the codec's limits" });
        }
        if count > self.remaining() as u64 {
            return Err(self.truncated(what, count));
        }
        // count <= remaining <= usize::MAX
        Ok(count as usize)
    }

    pub(super) fn bytes(&mut self, what: &'static str, length: u64) -> Result<&'a [u8], CodecError> {
        if length > self.remaining() as u64 {
            return Err(self.truncated(what, length));
        }
        let length = length as usize;
        let slice = &self.bytes[self.position..self.position + length];
        self.position += length;
        Ok(slice)
    }

    pub(super) fn length_prefixed(&mut self, what: &'static str) -> Result<&'a [u8], CodecError> {
        let length = self.varint(what)?;
        self.bytes(what, length)
    }

    pub(super) fn utf8(&mut self, what: &'static str) -> Result<&'a str, CodecError> {
        let offset = self.position;
        let bytes = self.length_prefixed(what)?;
        std::str::from_utf8(bytes).map_err(|_| CodecError::InvalidUtf8 { what, offset })
    }

    pub(super) fn expect_end(&self, what: &'static str) -> Result<(), CodecError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes { what, offset: self.position, remaining_bytes: self.remaining() })
        }
    }
}

/// Writes bits most significant first into bytes; the last byte is padded with zeros.
#[derive(Debug, Default)]
pub(super) struct BitWriter {
    bytes: Vec<u8>,
    /// Bits already used in the last byte of `bytes`, 0..8 (0: start a new byte).
    used_bits_in_last: u32,
}

impl BitWriter {
    pub(super) fn with_capacity(capacity_bytes: usize) -> Self {
        Self { bytes: Vec::with_capacity(capacity_bytes), used_bits_in_last: 0 }
    }

    /// Writes the low `count` bits of `value`, most significant first. `count` <= 64.
    pub(super) fn write(&mut self, value: u64, count: u32) {
        debug_assert!(count <= 64);
        let mut left = count;
        while left > 0 {
            if self.used_bits_in_last == 0 {
                self.bytes.push(0);
            }
            let free = 8 - self.used_bits_in_last;
            let take = free.min(left);
            let shift = left - take;
            let chunk = ((value >> shift) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= chunk << (free - take);
            }
            self.used_bits_in_last = (self.used_bits_in_last + take) % 8;
            left -= take;
        }
    }

    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads what [`BitWriter`] wrote; running past the end is an error, not a panic.
#[derive(Debug)]
pub(super) struct BitReader<'a> {
    bytes: &'a [u8],
    bit_position: usize,
}

impl<'a> BitReader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, bit_position: 0 }
    }

    /// Reads `count` <= 64 bits, most significant first.
    pub(super) fn read(&mut self, count: u32, what: &'static str) -> Result<u64, CodecError> {
        debug_assert!(count <= 64);
        let available_bits = self.bytes.len() * 8 - self.bit_position;
        if count as usize > available_bits {
            return Err(CodecError::Truncated {
                what,
                offset: self.bit_position / 8,
                needed_bytes: u64::from(count).div_ceil(8),
                remaining_bytes: available_bits / 8,
            });
        }
        let value = self.peek().checked_shr(64u32.saturating_sub(count)).unwrap_or(0);
        self.bit_position += count as usize;
        Ok(value)
    }

    /// The 64 bits from the current position on (zeros past the end), from one unaligned load
    /// rather than a loop over bytes.
    #[inline]
    fn peek(&self) -> u64 {
        let byte = self.bit_position / 8;
        let mut window = [0u8; 9];
        match self.bytes.get(byte..byte + 9) {
            Some(bytes) => window.copy_from_slice(bytes),
            None => {
                let tail = self.bytes.get(byte..).unwrap_or_default();
                window[..tail.len()].copy_from_slice(tail);
            }
        }
        let [b0, b1, b2, b3, b4, b5, b6, b7, b8] = window;
        let wide = u128::from(u64::from_be_bytes([b0, b1, b2, b3, b4, b5, b6, b7])) << 8 | u128::from(b8);
        (wide >> (8 - self.bit_position % 8)) as u64
    }

    /// Bits left to read.
    pub(super) fn available_bits(&self) -> usize {
        self.bytes.len() * 8 - self.bit_position
    }

    /// The next 64 bits without reading them (zeros past the end).
    pub(super) fn peek_64(&self) -> u64 {
        self.peek()
    }

    /// Moves past `count` bits the caller has checked are there ([`available_bits`](Self::available_bits)).
    pub(super) fn skip(&mut self, count: u32) {
        debug_assert!(count as usize <= self.available_bits());
        self.bit_position = (self.bit_position + count as usize).min(self.bytes.len() * 8);
    }

    /// The byte the next bit comes from, for error messages.
    pub(super) fn byte_position(&self) -> usize {
        self.bit_position / 8
    }

    pub(super) fn read_bit(&mut self, what: &'static str) -> Result<bool, CodecError> {
        Ok(self.read(1, what)? == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_size_boundary() {
        let mut values = vec![0, 1, 127, 128, 16_383, 16_384, u64::MAX, u64::MAX - 1];
        values.extend((0..64).map(|bit| 1u64 << bit));
        for value in values {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "{value}");
            let mut reader = Reader::new(&out);
            assert_eq!(reader.varint("test").unwrap(), value);
            assert!(reader.is_empty());
        }
    }

    #[test]
    fn zigzag_keeps_small_magnitudes_small() {
        for value in [0, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(value)), value);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }

    #[test]
    fn over_long_varints_are_refused() {
        let bytes = [0xFF; 11];
        assert!(matches!(Reader::new(&bytes).varint("x"), Err(CodecError::VarintOverflow { .. })));
        let mut bytes = vec![0xFF; 9];
        bytes.push(0x02);
        assert!(matches!(Reader::new(&bytes).varint("x"), Err(CodecError::VarintOverflow { .. })));
    }

    /// Where a refused varint leaves the reader and what its error says: an overflow is reported
    /// at its first byte, past its ten; a truncation at the end of the bytes, the reader back at
    /// the varint's first byte.
    #[test]
    fn a_refused_varint_names_where_it_failed() {
        let bytes = [0x05, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
        let mut reader = Reader::new(&bytes);
        assert!(matches!(reader.varint("x"), Ok(5)));
        assert!(matches!(reader.varint("x"), Err(CodecError::VarintOverflow { what: "x", offset: 1 })));
        assert_eq!(reader.position(), 11);
        let mut reader = Reader::new(&[0x01, 0x80, 0x80]);
        assert!(matches!(reader.varint("x"), Ok(1)));
        assert!(matches!(
            reader.varint("x"),
            Err(CodecError::Truncated { what: "x", offset: 3, needed_bytes: 1, remaining_bytes: 0 })
        ));
        assert_eq!(reader.position(), 1);
    }

    #[test]
    fn bits_round_trip_across_byte_boundaries() {
        let mut writer = BitWriter::default();
        let items = [(1u64, 1u32), (0b101, 3), (u64::MAX, 64), (0x1234, 13), (0, 7), (1, 64)];
        for (value, count) in items {
            writer.write(value, count);
        }
        let bytes = writer.into_bytes();
        let mut reader = BitReader::new(&bytes);
        for (value, count) in items {
            let mask = if count == 64 { u64::MAX } else { (1u64 << count) - 1 };
            assert_eq!(reader.read(count, "test").unwrap(), value & mask);
        }
        assert!(reader.read(8, "test").is_err());
    }
}

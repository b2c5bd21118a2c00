//! The variable-length integers of RecordBatch v2 records (protobuf-style base-128, zigzag for
//! signed values): `varint` for 32-bit fields (at most 5 bytes), `varlong` for 64-bit ones (at
//! most 10 bytes).
//!
//! Thread safety: functions over byte slices; nothing shared.

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The buffer ended inside the varint.
    Truncated,
    /// More continuation bytes than the type allows.
    TooLong,
    /// A 32-bit varint whose value does not fit 32 bits.
    OutOfRange,
}

/// Most bytes of a 32-bit varint.
const VARINT_MAX_BYTES: u32 = 5;
/// Most bytes of a 64-bit varint.
const VARLONG_MAX_BYTES: u32 = 10;

/// Writes `v` as an unsigned varint.
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes `v` as a zigzag varint (32 bits).
pub fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_uvarint(out, ((v << 1) ^ (v >> 31)) as u32 as u64);
}

/// Writes `v` as a zigzag varlong (64 bits).
pub fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads an unsigned varint of at most `max_bytes` bytes from `buf` at `*pos`, advancing
/// `*pos` past the bytes read.
pub fn read_uvarint(buf: &[u8], pos: &mut usize, max_bytes: u32) -> Result<u64, VarintError> {
    let mut value = 0u64;
    let mut shift = 0u32;
    loop {
        let byte = *buf.get(*pos).ok_or(VarintError::Truncated)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift >= 7 * max_bytes {
            return Err(VarintError::TooLong);
        }
    }
}

/// Reads a zigzag varint (32 bits) from `buf` at `*pos`, advancing `*pos`.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, VarintError> {
    let raw = read_uvarint(buf, pos, VARINT_MAX_BYTES)?;
    if raw > u64::from(u32::MAX) {
        return Err(VarintError::OutOfRange);
    }
    let raw = raw as u32;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zigzag varlong (64 bits) from `buf` at `*pos`, advancing `*pos`.
pub fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, VarintError> {
    let raw = read_uvarint(buf, pos, VARLONG_MAX_BYTES)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_kafka() {
        let mut out = Vec::new();
        put_varint(&mut out, -1);
        put_varint(&mut out, 300);
        put_varlong(&mut out, i64::MIN);
        assert_eq!(&out[..3], &[0x01, 0xd8, 0x04]);
        let mut pos = 0;
        assert_eq!(read_varint(&out, &mut pos), Ok(-1));
        assert_eq!(read_varint(&out, &mut pos), Ok(300));
        assert_eq!(read_varlong(&out, &mut pos), Ok(i64::MIN));
        assert_eq!(pos, out.len());
    }

    #[test]
    fn refuses_truncated_long_and_out_of_range() {
        assert_eq!(read_varlong(&[0x80], &mut 0), Err(VarintError::Truncated));
        assert_eq!(read_varlong(&[0xff; 11], &mut 0), Err(VarintError::TooLong));
        assert_eq!(read_varint(&[0xff; 6], &mut 0), Err(VarintError::TooLong));
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x7f], &mut 0),
            Err(VarintError::OutOfRange)
        );
        // Ten bytes is the most a varlong takes.
        let mut out = Vec::new();
        put_varlong(&mut out, i64::MAX);
        assert_eq!(out.len(), 10);
    }

    proptest! {
        #[test]
        fn round_trips(a in any::<i32>(), b in any::<i64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, a);
            put_varlong(&mut out, b);
            let mut pos = 0;
            prop_assert_eq!(read_varint(&out, &mut pos), Ok(a));
            prop_assert_eq!(read_varlong(&out, &mut pos), Ok(b));
            prop_assert_eq!(pos, out.len());
        }
    }
}

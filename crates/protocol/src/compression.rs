//! Record batch compression, from `strom-codec`, with errors as protocol errors.

pub use strom_codec::{Codec, CodecError};

use crate::ProtocolError;

impl From<CodecError> for ProtocolError {
    fn from(e: CodecError) -> Self {
        ProtocolError::Compression(e.0)
    }
}

/// Compresses `data` with `codec`.
pub fn compress(codec: Codec, data: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    Ok(strom_codec::compress(codec, data)?)
}

/// Decompresses `data` written with `codec`, refusing output beyond `max_bytes`.
pub fn decompress(codec: Codec, data: &[u8], max_bytes: usize) -> Result<Vec<u8>, ProtocolError> {
    Ok(strom_codec::decompress(codec, data, max_bytes)?)
}

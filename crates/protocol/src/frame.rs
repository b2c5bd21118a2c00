//! Length-prefixed frames: a big-endian i32 size followed by that many bytes.

use bytes::{Buf, Bytes, BytesMut};

use crate::ProtocolError;

/// Splits a byte stream into frames, refusing any frame larger than `max_frame_bytes`
/// (`socket.request.max.bytes` on the broker) before buffering it.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame_bytes: usize,
}

impl FrameDecoder {
    pub fn new(max_frame_bytes: usize) -> Self {
        Self { max_frame_bytes }
    }

    /// How many bytes the frame at the front of `buf` needs in total (size prefix included),
    /// once its prefix is there; checks the limit.
    pub fn needed(&self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if size < 0 {
            return Err(ProtocolError::NegativeFrameSize(size));
        }
        let size = size as usize;
        if size > self.max_frame_bytes {
            return Err(ProtocolError::FrameTooLarge {
                size,
                max: self.max_frame_bytes,
            });
        }
        Ok(Some(size + 4))
    }

    /// Takes one complete frame (without its size prefix) off the front of `buf`, if there is one.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, ProtocolError> {
        match self.needed(buf)? {
            Some(total) if buf.len() >= total => {
                buf.advance(4);
                Ok(Some(buf.split_to(total - 4).freeze()))
            }
            _ => Ok(None),
        }
    }
}

/// Prefixes `body` with its size.
pub fn write_frame(out: &mut BytesMut, body: &[u8]) {
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_and_waits_for_more() {
        let d = FrameDecoder::new(100);
        let mut buf = BytesMut::new();
        write_frame(&mut buf, b"hello");
        write_frame(&mut buf, b"world!");
        buf.truncate(buf.len() - 2);
        assert_eq!(
            d.decode(&mut buf).unwrap().unwrap(),
            Bytes::from_static(b"hello")
        );
        assert!(d.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"d!");
        assert_eq!(
            d.decode(&mut buf).unwrap().unwrap(),
            Bytes::from_static(b"world!")
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_oversized_and_negative_frames() {
        let d = FrameDecoder::new(10);
        let mut buf = BytesMut::from(&11i32.to_be_bytes()[..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(ProtocolError::FrameTooLarge { size: 11, max: 10 })
        ));
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(ProtocolError::NegativeFrameSize(-1))
        ));
    }
}

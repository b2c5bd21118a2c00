//! `FrameDecoder::decode` on a byte stream that arrives in pieces.
//!
//! Input: size limit (u16) | piece size (u8) | the stream. Every frame taken must be within the
//! limit and be exactly the bytes after its size prefix; a refusal or "need more" must leave the
//! buffer untouched.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use strom_fuzz::take_be;
use strom_protocol::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let max_frame_bytes = take_be(&mut data, 2) as usize;
    let piece = (take_be(&mut data, 1) as usize).max(1);
    let stream = data;
    let decoder = FrameDecoder::new(max_frame_bytes);
    let mut buf = BytesMut::new();
    let mut taken = 0usize;
    for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            let needed = decoder.needed(&buf);
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max_frame_bytes, "frame over the limit");
                    assert_eq!(before - buf.len(), frame.len() + 4);
                    assert_eq!(needed.ok().flatten(), Some(frame.len() + 4));
                    assert_eq!(&stream[taken + 4..taken + 4 + frame.len()], &frame[..]);
                    taken += frame.len() + 4;
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before);
                    break;
                }
                Err(_) => {
                    assert!(needed.is_err());
                    assert_eq!(buf.len(), before);
                    return;
                }
            }
        }
    }
});

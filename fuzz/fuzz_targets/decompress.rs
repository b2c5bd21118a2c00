//! `compression::decompress` for every codec with a small output limit, and a round trip
//! through `compress`.
//!
//! Input: codec (byte % 5) | output limit (u16) | compressed bytes. The same bytes are also
//! compressed and must decompress back to themselves, and fail one byte under their size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strom_fuzz::take_be;
use strom_protocol::compression::{Codec, compress, decompress};

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let codec = Codec::from_id((take_be(&mut data, 1) % 5) as u8).unwrap();
    let max_bytes = take_be(&mut data, 2) as usize;
    if let Ok(out) = decompress(codec, data, max_bytes) {
        assert!(out.len() <= max_bytes, "{codec:?}: {} bytes over limit {max_bytes}", out.len());
    }

    let packed = compress(codec, data).expect("compress");
    let unpacked = decompress(codec, &packed, data.len()).expect("decompress what we compressed");
    assert_eq!(unpacked, data, "{codec:?} round trip");
    if !data.is_empty() {
        assert!(decompress(codec, &packed, data.len() - 1).is_err(), "{codec:?} limit ignored");
    }
});

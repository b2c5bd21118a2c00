//! `decode_batches` (record batches as a client reads them from a fetch response, with
//! decompression) and `batches_end_offset`.
//!
//! Input: mode byte (see `strom_fuzz::split_mode`: even = batch CRCs recomputed first) | bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strom_fuzz::{fix_batch_crcs, split_mode};
use strom_protocol::records::{batches_end_offset, decode_batches};

fuzz_target!(|data: &[u8]| {
    let Some((fix, rest)) = split_mode(data) else { return };
    let mut buf = rest.to_vec();
    if fix {
        fix_batch_crcs(&mut buf);
    }
    let _ = batches_end_offset(&buf);
    if let Ok(records) = decode_batches(Bytes::from(buf.clone())) {
        for r in &records {
            let fits = |b: &Option<Bytes>| b.as_ref().is_none_or(|b| b.len() <= buf.len());
            assert!(fits(&r.key) && fits(&r.value));
        }
    }
});

//! `validate_batches` (a producer's bytes on produce) and `BatchHeader::parse`.
//!
//! Input: mode byte (even = batch CRCs recomputed first) | max.message.bytes (u16, x16) | bytes.
//! Accepted bytes must split exactly into the returned batches, each within the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strom_fuzz::{fix_batch_crcs, split_mode, take_be};
use strom_storage::batch::{BatchHeader, validate_batches};

fuzz_target!(|data: &[u8]| {
    let Some((fix, mut rest)) = split_mode(data) else { return };
    let max_message_bytes = (take_be(&mut rest, 2) as u32) * 16;
    let mut buf = rest.to_vec();
    if fix {
        fix_batch_crcs(&mut buf);
    }

    if let Ok(h) = BatchHeader::parse(&buf) {
        let _ = (h.total_size(), h.compression(), h.is_control(), h.is_transactional());
        let _ = h.is_log_append_time();
    }

    if let Ok(headers) = validate_batches(&buf, max_message_bytes) {
        assert!(!headers.is_empty());
        let mut pos = 0usize;
        for h in &headers {
            let total = h.total_size();
            assert!(total <= max_message_bytes as usize);
            assert!(h.records_count > 0 && h.last_offset_delta == h.records_count - 1);
            assert_eq!(BatchHeader::parse(&buf[pos..]).unwrap(), *h);
            pos += total;
        }
        assert_eq!(pos, buf.len(), "validated batches do not cover the input");
    }
});

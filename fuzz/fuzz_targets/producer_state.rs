//! Producer state recovery: a log holding idempotent and transactional batches is reopened
//! next to an arbitrary producer snapshot and aborted-transaction index.
//!
//! Input: mode byte (even = snapshot CRC recomputed first) | snapshot length (u16) | snapshot
//! bytes | aborted index bytes (the rest).
//!
//! Opening must succeed or fail without panicking; an opened log must take appends (accepted
//! or refused with an error) and reopen.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strom_fuzz::{split_mode, take_be, take_bytes, temp_dir};
use strom_storage::batch::crc32c;
use strom_storage::testutil::{ProducerFields, build_producer_batch};
use strom_storage::{ControlType, Log, LogConfig};

const NOW_MS: i64 = 1_700_000_000_000;

fn batch(pid: i64, seq: i32, transactional: bool) -> Vec<u8> {
    let producer = ProducerFields {
        producer_id: pid,
        producer_epoch: 0,
        base_sequence: seq,
    };
    build_producer_batch(0, NOW_MS, &[(None, Some(b"v")), (None, Some(b"w"))], producer, transactional)
}

fuzz_target!(|data: &[u8]| {
    let Some((fix, mut rest)) = split_mode(data) else { return };
    let snapshot_len = take_be(&mut rest, 2) as usize;
    let mut snapshot = take_bytes(&mut rest, snapshot_len).to_vec();
    let aborted = rest;
    if fix && snapshot.len() >= 6 {
        let crc = crc32c(&snapshot[6..]);
        snapshot[2..6].copy_from_slice(&crc.to_be_bytes());
    }

    let dir = temp_dir();
    let config = LogConfig::default();
    let leo = {
        let mut log = Log::open(dir.path(), config.clone(), NOW_MS).unwrap();
        log.append(&mut batch(1, 0, false), 0, NOW_MS).unwrap();
        log.append(&mut batch(2, 0, true), 0, NOW_MS).unwrap();
        log.append_control(2, 0, 0, ControlType::Abort, 0, NOW_MS).unwrap();
        log.append(&mut batch(3, 0, true), 0, NOW_MS).unwrap();
        log.log_end_offset()
    };
    std::fs::write(dir.path().join(format!("{leo:020}.snapshot")), &snapshot).unwrap();
    std::fs::write(dir.path().join("aborted-txns.index"), aborted).unwrap();

    let Ok(mut log) = Log::open(dir.path(), config.clone(), NOW_MS) else { return };
    assert_eq!(log.log_end_offset(), leo);
    let _ = log.aborted_transactions(0, i64::MAX);
    let _ = log.first_unstable_offset();
    let _ = log.append(&mut batch(1, 2, false), 0, NOW_MS);
    let _ = log.append_control(3, 0, 0, ControlType::Commit, 0, NOW_MS);
    let end = log.log_end_offset();
    drop(log);
    let log = Log::open(dir.path(), config, NOW_MS).expect("reopen");
    assert_eq!(log.log_end_offset(), end);
});

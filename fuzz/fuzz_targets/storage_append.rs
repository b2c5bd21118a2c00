//! A produce payload appended to a `strom_storage::Log` in a temporary directory, twice, then
//! read back and recovered.
//!
//! Input: mode byte (bit 0 clear = batch CRCs recomputed first; bit 1 = LogAppendTime;
//! bit 2 = tiny segments, so appends roll) | the records bytes of a produce request.
//!
//! Append must succeed or return an error, never panic, and an error must leave the log as it
//! was; the second append of an idempotent producer's batch is a duplicate that writes nothing. What was appended must read back byte for byte (with the offsets and epoch the log
//! patched in), a read at any offset must return the batch holding it, and reopening the
//! directory (recovery) must keep every appended batch.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strom_fuzz::{fix_batch_crcs, temp_dir};
use strom_storage::{BatchHeader, Log, LogConfig};

const NOW_MS: i64 = 1_700_000_000_000;
const LEADER_EPOCH: i32 = 7;

fn read_all(log: &Log) -> Vec<u8> {
    let info = log
        .read(log.log_start_offset(), u32::MAX, i64::MAX, true)
        .expect("read the whole log");
    info.read_to_vec().expect("read slices")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, payload)) = data.split_first() else { return };
    let mut payload = payload.to_vec();
    if mode & 1 == 0 {
        fix_batch_crcs(&mut payload);
    }
    let config = LogConfig {
        log_append_time: mode & 2 != 0,
        segment_bytes: if mode & 4 != 0 { 256 } else { LogConfig::default().segment_bytes },
        index_interval_bytes: 64,
        ..LogConfig::default()
    };

    let dir = temp_dir();
    let mut log = Log::open(dir.path(), config.clone(), NOW_MS).expect("open an empty log");
    let mut appended = Vec::new();
    for round in 0..2 {
        let leo = log.log_end_offset();
        let mut buf = payload.clone();
        match log.append(&mut buf, LEADER_EPOCH, NOW_MS + round) {
            Ok(info) if info.duplicate => {
                // The same idempotent batch again: answered with where it already is.
                assert_eq!(log.log_end_offset(), leo, "a duplicate moved the log end");
                assert!(info.base_offset <= info.last_offset && info.last_offset < leo);
            }
            Ok(info) => {
                assert_eq!(info.base_offset, leo);
                assert!(info.last_offset >= info.base_offset);
                assert_eq!(log.log_end_offset(), info.last_offset + 1);
                appended.extend_from_slice(&buf);
            }
            Err(_) => {
                assert_eq!(log.log_end_offset(), leo, "failed append moved the log end");
                break;
            }
        }
    }
    let leo = log.log_end_offset();
    assert_eq!(read_all(&log), appended, "log does not read back what was appended");

    if leo > 0 {
        for offset in [0, leo / 2, leo - 1] {
            let info = log.read(offset, 1, i64::MAX, true).expect("read one batch");
            let bytes = info.read_to_vec().expect("read slices");
            let header = BatchHeader::parse(&bytes).expect("a whole batch");
            assert!(header.base_offset <= offset && offset <= header.last_offset());
            assert_eq!(bytes.len(), header.total_size());
            assert_eq!(header.partition_leader_epoch, LEADER_EPOCH);
        }
    }

    drop(log);
    let log = Log::open(dir.path(), config, NOW_MS).expect("reopen the log");
    assert_eq!(log.log_end_offset(), leo, "recovery changed the log end offset");
    assert_eq!(read_all(&log), appended, "recovery changed the log contents");
});

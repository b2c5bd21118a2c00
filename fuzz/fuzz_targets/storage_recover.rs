//! Log recovery: segment files with arbitrary contents, opened with `Log::open`.
//!
//! Input: mode byte (even = batch CRCs recomputed first) | first segment's .log length (u16) |
//! .index length (u8) | .timeindex length (u8) | base offset of a second, active segment (u8;
//! 0 = none) | first .log | .index | .timeindex | second .log (the rest).
//!
//! Opening must succeed or fail without panicking. After it succeeds the log must read back
//! whole, reopen to the same state, and take a valid append at its end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strom_fuzz::{fix_batch_crcs, split_mode, take_be, take_bytes, temp_dir};
use strom_storage::testutil::make_batch;
use strom_storage::{Log, LogConfig};

const NOW_MS: i64 = 1_700_000_000_000;

fn read_all(log: &Log) -> Vec<u8> {
    let info = log
        .read(log.log_start_offset(), u32::MAX, i64::MAX, true)
        .expect("read the whole log");
    info.read_to_vec().expect("read slices")
}

fuzz_target!(|data: &[u8]| {
    let Some((fix, mut rest)) = split_mode(data) else { return };
    let log_len = take_be(&mut rest, 2) as usize;
    let index_len = take_be(&mut rest, 1) as usize;
    let time_len = take_be(&mut rest, 1) as usize;
    let second_base = take_be(&mut rest, 1);
    let mut first_log = take_bytes(&mut rest, log_len).to_vec();
    let index = take_bytes(&mut rest, index_len);
    let time_index = take_bytes(&mut rest, time_len);
    let mut second_log = rest.to_vec();
    if fix {
        fix_batch_crcs(&mut first_log);
        fix_batch_crcs(&mut second_log);
    }

    let dir = temp_dir();
    let name = |base: u64, suffix: &str| dir.path().join(format!("{base:020}.{suffix}"));
    std::fs::write(name(0, "log"), &first_log).unwrap();
    std::fs::write(name(0, "index"), index).unwrap();
    std::fs::write(name(0, "timeindex"), time_index).unwrap();
    if second_base > 0 {
        std::fs::write(name(second_base, "log"), &second_log).unwrap();
    }

    let config = LogConfig {
        index_interval_bytes: 64,
        ..LogConfig::default()
    };
    let Ok(log) = Log::open(dir.path(), config.clone(), NOW_MS) else { return };
    let leo = log.log_end_offset();
    assert!(log.log_start_offset() <= leo);
    let contents = read_all(&log);

    drop(log);
    let mut log = Log::open(dir.path(), config.clone(), NOW_MS).expect("reopen a recovered log");
    assert_eq!(log.log_end_offset(), leo, "second recovery changed the log end offset");
    assert_eq!(read_all(&log), contents, "second recovery changed the log contents");

    let mut batch = make_batch(3, 10, NOW_MS);
    let info = log.append(&mut batch, 0, NOW_MS).expect("append to a recovered log");
    assert_eq!(info.base_offset, leo);
    assert_eq!(log.log_end_offset(), leo + 3);
    drop(log);
    let log = Log::open(dir.path(), config, NOW_MS).expect("reopen after append");
    assert_eq!(log.log_end_offset(), leo + 3);
});

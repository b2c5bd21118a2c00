use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::*;
use crate::batch::validate_batches;
use crate::segment::{INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, segment_path};
use crate::testutil::make_batch;

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

/// Appends one batch and returns the info and the bytes as stored.
fn append(log: &mut Log, records: usize, payload: usize, ts: i64) -> (AppendInfo, Vec<u8>) {
    let mut b = make_batch(records, payload, ts);
    let info = log.append(&mut b, 3, 1_000).unwrap();
    (info, b)
}

fn read_all(log: &Log, offset: i64) -> Vec<u8> {
    log.read(offset, u32::MAX, i64::MAX, true)
        .unwrap()
        .read_to_vec()
        .unwrap()
}

fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
    if bytes.is_empty() {
        return Vec::new();
    }
    validate_batches(bytes, u32::MAX).unwrap()
}

/// A log of `n` batches of 1..=3 records with 40-byte payloads; returns the stored bytes.
fn filled(dir: &Path, config: LogConfig, n: usize) -> (Log, Vec<Vec<u8>>) {
    let mut log = Log::open(dir, config, 0).unwrap();
    let mut batches = Vec::new();
    for i in 0..n {
        let (_, b) = append(&mut log, 1 + i % 3, 40, 10_000 + i as i64 * 10);
        batches.push(b);
    }
    (log, batches)
}

#[test]
fn append_assigns_dense_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let (a, b1) = append(&mut log, 3, 10, 100);
    assert_eq!((a.base_offset, a.last_offset, a.record_count), (0, 2, 3));
    assert_eq!(a.log_append_time_ms, -1);
    assert_eq!(a.max_timestamp, 102);
    let (a, b2) = append(&mut log, 1, 10, 200);
    assert_eq!((a.base_offset, a.last_offset), (3, 3));
    assert_eq!(log.log_end_offset(), 4);
    let h = headers(&b2)[0];
    assert_eq!(h.base_offset, 3);
    assert_eq!(h.partition_leader_epoch, 3);
    assert_eq!(read_all(&log, 0), [b1, b2].concat());
    assert!(dir.path().join("00000000000000000000.log").exists());
}

#[test]
fn append_several_batches_in_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    let mut buf = [make_batch(2, 5, 1), make_batch(4, 5, 2)].concat();
    let info = log.append(&mut buf, 0, 0).unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.record_count),
        (0, 5, 6)
    );
    let hs = headers(&buf);
    assert_eq!(hs[1].base_offset, 2);
    assert_eq!(read_all(&log, 0), buf);
}

#[test]
fn append_rejects_invalid_input_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    let mut bad = make_batch(2, 5, 1);
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(matches!(
        log.append(&mut bad, 0, 0),
        Err(StorageError::CorruptRecord(_))
    ));
    let mut big = make_batch(1, 2000, 1);
    assert!(matches!(
        Log::open(
            dir.path(),
            LogConfig {
                max_message_bytes: 1000,
                ..small_config()
            },
            0
        )
        .unwrap()
        .append(&mut big, 0, 0),
        Err(StorageError::MessageTooLarge { .. })
    ));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn log_append_time_is_stamped() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        log_append_time: true,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    let mut b = make_batch(2, 5, 1);
    let info = log.append(&mut b, 0, 777).unwrap();
    assert_eq!(info.log_append_time_ms, 777);
    assert_eq!(info.max_timestamp, 777);
    let h = headers(&read_all(&log, 0))[0];
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, 777);
}

#[test]
fn reads_across_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let (log, batches) = filled(dir.path(), small_config(), 60);
    assert!(log.segment_count() > 5, "{}", log.segment_count());
    assert_eq!(read_all(&log, 0), batches.concat());
    // Every offset: the first batch returned contains it, the rest follow densely.
    let mut offset = 0;
    for (i, b) in batches.iter().enumerate() {
        let h = headers(b)[0];
        for o in h.base_offset..=h.last_offset() {
            assert_eq!(read_all(&log, o), batches[i..].concat(), "offset {o}");
        }
        offset = h.last_offset() + 1;
    }
    assert_eq!(offset, log.log_end_offset());
    assert!(
        log.read(offset, 100, i64::MAX, true)
            .unwrap()
            .slices
            .is_empty()
    );
}

#[test]
fn mid_batch_fetch_returns_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    let (_, b1) = append(&mut log, 5, 10, 0);
    let (_, b2) = append(&mut log, 5, 10, 0);
    let got = log.read(7, u32::MAX, i64::MAX, false).unwrap();
    assert_eq!(got.read_to_vec().unwrap(), b2);
    assert_eq!(read_all(&log, 2), [b1, b2].concat());
}

#[test]
fn max_bytes_and_min_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    let (_, b1) = append(&mut log, 1, 100, 0);
    let (_, b2) = append(&mut log, 1, 100, 0);
    let one = b1.len() as u32;
    let r = log.read(0, one, i64::MAX, false).unwrap();
    assert_eq!(r.read_to_vec().unwrap(), b1);
    assert_eq!(r.total_bytes, u64::from(one));
    let r = log.read(0, 2 * one - 1, i64::MAX, false).unwrap();
    assert_eq!(r.read_to_vec().unwrap(), b1);
    let r = log.read(0, 2 * one, i64::MAX, false).unwrap();
    assert_eq!(r.read_to_vec().unwrap(), [b1.clone(), b2].concat());
    // Too small for one batch.
    assert!(log.read(0, 10, i64::MAX, false).unwrap().slices.is_empty());
    let r = log.read(0, 10, i64::MAX, true).unwrap();
    assert_eq!(r.read_to_vec().unwrap(), b1);
}

#[test]
fn max_offset_bounds_the_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    let (_, b1) = append(&mut log, 2, 10, 0); // 0..=1
    append(&mut log, 2, 10, 0); // 2..=3
    assert_eq!(
        log.read(0, u32::MAX, 2, true)
            .unwrap()
            .read_to_vec()
            .unwrap(),
        b1
    );
    // A batch straddling the bound is held back.
    assert_eq!(
        log.read(0, u32::MAX, 3, true)
            .unwrap()
            .read_to_vec()
            .unwrap(),
        b1
    );
    assert!(log.read(2, u32::MAX, 2, true).unwrap().slices.is_empty());
    assert!(log.read(0, u32::MAX, 1, true).unwrap().slices.is_empty());
}

#[test]
fn out_of_range_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    append(&mut log, 2, 10, 0);
    assert!(matches!(
        log.read(3, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange {
            offset: 3,
            log_start: 0,
            log_end: 2
        })
    ));
    assert!(matches!(
        log.read(-1, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let r = log.read(2, 100, i64::MAX, true).unwrap();
    assert!(r.slices.is_empty());
    assert_eq!((r.log_start_offset, r.log_end_offset), (0, 2));
}

#[test]
fn offset_for_timestamp_and_max_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    assert_eq!(log.max_timestamp().unwrap(), None);
    append(&mut log, 1, 10, 1000); // offset 0 @1000
    append(&mut log, 3, 10, 2000); // offsets 1..=3 @2000..2002
    append(&mut log, 1, 10, 1500); // offset 4 @1500 (out of order)
    for i in 0..40 {
        append(&mut log, 2, 30, 3000 + i * 10); // rolls several segments
    }
    assert!(log.segment_count() > 2);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 1000)));
    assert_eq!(log.offset_for_timestamp(1000).unwrap(), Some((0, 1000)));
    assert_eq!(log.offset_for_timestamp(1001).unwrap(), Some((1, 2000)));
    assert_eq!(log.offset_for_timestamp(2001).unwrap(), Some((2, 2001)));
    assert_eq!(log.offset_for_timestamp(2003).unwrap(), Some((5, 3000)));
    assert_eq!(log.offset_for_timestamp(3201).unwrap(), Some((46, 3201)));
    assert_eq!(log.offset_for_timestamp(3391).unwrap(), Some((84, 3391)));
    assert_eq!(log.offset_for_timestamp(3392).unwrap(), None);
    assert_eq!(log.max_timestamp().unwrap(), Some((84, 3391)));
    // Same answers after reopening (indexes from disk).
    drop(log);
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.offset_for_timestamp(3201).unwrap(), Some((46, 3201)));
    assert_eq!(log.offset_for_timestamp(2001).unwrap(), Some((2, 2001)));
    assert_eq!(log.max_timestamp().unwrap(), Some((84, 3391)));
    // Only records at or after the log start offset count.
    log.delete_records(3).unwrap();
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((3, 2002)));
}

#[test]
fn offset_for_timestamp_with_log_append_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        log_append_time: true,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    let mut b = make_batch(3, 5, 1);
    log.append(&mut b, 0, 500).unwrap();
    let mut b = make_batch(3, 5, 1);
    log.append(&mut b, 0, 600).unwrap();
    assert_eq!(log.offset_for_timestamp(550).unwrap(), Some((3, 600)));
    assert_eq!(log.max_timestamp().unwrap(), Some((5, 600)));
}

#[test]
fn delete_records_moves_start_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, batches) = filled(dir.path(), small_config(), 60);
    let segments = log.segment_count();
    let leo = log.log_end_offset();
    assert!(matches!(
        log.delete_records(leo + 1),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let h = headers(&batches[30])[0];
    let target = h.base_offset + 1.min(h.last_offset_delta as i64);
    assert_eq!(log.delete_records(target).unwrap(), target);
    assert!(log.segment_count() < segments);
    assert_eq!(log.delete_records(1).unwrap(), target, "never moves down");
    assert!(matches!(
        log.read(target - 1, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(&log, target), batches[30..].concat());
    drop(log);
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.log_start_offset(), target);
    assert_eq!(read_all(&log, target), batches[30..].concat());
    // Up to the log end offset.
    let mut log = log;
    assert_eq!(log.delete_records(leo).unwrap(), leo);
    assert_eq!(log.segment_count(), 1);
    assert!(
        log.read(leo, 100, i64::MAX, true)
            .unwrap()
            .slices
            .is_empty()
    );
}

#[test]
fn retention_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 1000,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    for i in 0..30 {
        append(&mut log, 2, 40, 10_000 + i);
    }
    for i in 0..30 {
        append(&mut log, 2, 40, 20_000 + i);
    }
    let segments = log.segment_count();
    assert_eq!(log.enforce_retention(10_500).unwrap(), 0);
    // Everything of the first wave is older than 1 s at 15_000; segments holding only it go.
    let deleted = log.enforce_retention(15_000).unwrap();
    assert!(deleted > 0 && log.segment_count() == segments - deleted);
    let start = log.log_start_offset();
    assert!(start > 0 && start <= 60);
    let r = log.read(start, u32::MAX, i64::MAX, true).unwrap();
    assert!(headers(&r.read_to_vec().unwrap())[0].base_offset == start);
    // Everything expired: the active segment is rolled and deleted too.
    let leo = log.log_end_offset();
    assert!(log.enforce_retention(100_000).unwrap() > 0);
    assert_eq!(log.segment_count(), 1);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (leo, leo));
    assert_eq!(log.size_bytes(), 0);
    drop(log);
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (leo, leo));
    let (info, _) = append(&mut log, 1, 1, 0);
    assert_eq!(info.base_offset, leo);
}

#[test]
fn retention_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, batches) = filled(dir.path(), small_config(), 60);
    let total = log.size_bytes();
    log.update_config(LogConfig {
        retention_bytes: 2048,
        ..small_config()
    });
    let deleted = log.enforce_retention(0).unwrap();
    assert!(deleted > 0);
    assert!(log.size_bytes() < total);
    assert!(log.size_bytes() >= 2048);
    // Deleting the next oldest would drop below the limit.
    assert!(log.size_bytes() - log.local.segments().first().size < 2048);
    let start = log.log_start_offset();
    let idx = batches
        .iter()
        .position(|b| headers(b)[0].base_offset == start)
        .unwrap();
    assert_eq!(read_all(&log, start), batches[idx..].concat());
    log.update_config(LogConfig {
        retention_bytes: 0,
        ..small_config()
    });
    log.enforce_retention(0).unwrap();
    assert_eq!(log.segment_count(), 1, "never the active segment");
}

#[test]
fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, batches) = filled(dir.path(), small_config(), 60);
    log.flush().unwrap();
    let (leo, count) = (log.log_end_offset(), log.segment_count());
    let index_files: Vec<(PathBuf, Vec<u8>)> = index_file_contents(dir.path());
    drop(log);
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!((log.log_end_offset(), log.segment_count()), (leo, count));
    assert_eq!(read_all(&log, 0), batches.concat());
    assert_eq!(index_file_contents(dir.path()), index_files);
    let (info, _) = append(&mut log, 2, 10, 0);
    assert_eq!(info.base_offset, leo);
}

fn index_file_contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == INDEX_SUFFIX || e == TIME_INDEX_SUFFIX)
        })
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

fn last_segment_path(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == LOG_SUFFIX))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

/// Damages the end of the active segment with `damage`, reopens, and checks that exactly the
/// batches before the damaged one survive and appends continue densely.
fn recover_after(damage: impl FnOnce(&Path, u64), survivors_lost: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, batches) = filled(dir.path(), small_config(), 25);
    log.flush().unwrap();
    let last_len = batches.last().unwrap().len() as u64;
    drop(log);
    damage(&last_segment_path(dir.path()), last_len);
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    let kept = &batches[..batches.len() - survivors_lost];
    assert_eq!(read_all(&log, 0), kept.concat());
    let expected_leo = headers(kept.last().unwrap())[0].last_offset() + 1;
    assert_eq!(log.log_end_offset(), expected_leo);
    let (info, b) = append(&mut log, 2, 10, 0);
    assert_eq!(info.base_offset, expected_leo);
    assert_eq!(read_all(&log, 0), [kept.concat(), b].concat());
    drop(log);
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), expected_leo + 2);
}

#[test]
fn recovery_truncates_garbage_tail() {
    recover_after(
        |path, _| {
            let mut f = fs::OpenOptions::new().append(true).open(path).unwrap();
            f.write_all(&[0xab; 100]).unwrap();
        },
        0,
    );
}

#[test]
fn recovery_truncates_half_a_batch() {
    recover_after(
        |path, last_len| {
            let f = fs::OpenOptions::new().write(true).open(path).unwrap();
            let len = f.metadata().unwrap().len();
            f.set_len(len - last_len / 2).unwrap();
        },
        1,
    );
    // A torn header too.
    recover_after(
        |path, last_len| {
            let f = fs::OpenOptions::new().write(true).open(path).unwrap();
            let len = f.metadata().unwrap().len();
            f.set_len(len - last_len + 20).unwrap();
        },
        1,
    );
}

#[test]
fn recovery_truncates_a_corrupt_last_batch() {
    recover_after(
        |path, last_len| {
            let f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .unwrap();
            let len = f.metadata().unwrap().len();
            let at = len - last_len / 2;
            let mut byte = [0u8];
            f.read_exact_at(&mut byte, at).unwrap();
            f.write_all_at(&[byte[0] ^ 0x40], at).unwrap();
        },
        1,
    );
}

#[test]
fn recovery_rebuilds_deleted_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, batches) = filled(dir.path(), small_config(), 60);
    log.flush().unwrap();
    let before = index_file_contents(dir.path());
    drop(log);
    // Remove the indexes of every segment, and garble one time index.
    for (path, _) in &before {
        fs::remove_file(path).unwrap();
    }
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(index_file_contents(dir.path()), before);
    assert_eq!(read_all(&log, 0), batches.concat());
    drop(log);
    let (path, _) = &before[1];
    fs::write(path, [1u8, 2, 3]).unwrap();
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(index_file_contents(dir.path()), before);
    assert_eq!(
        log.offset_for_timestamp(10_100).unwrap().map(|x| x.1),
        Some(10_100)
    );
}

#[test]
fn recovery_removes_stray_files() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = filled(dir.path(), small_config(), 5);
    drop(log);
    for name in [
        "00000000000000000000.log.deleted",
        "x.tmp",
        "00000000000000000000.index.swap",
        "00000000000000000099.index",
    ] {
        fs::write(dir.path().join(name), b"junk").unwrap();
    }
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), 9);
    for name in [
        "00000000000000000000.log.deleted",
        "x.tmp",
        "00000000000000000000.index.swap",
        "00000000000000000099.index",
    ] {
        assert!(!dir.path().join(name).exists(), "{name}");
    }
}

#[test]
fn truncate_to_drops_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, batches) = filled(dir.path(), small_config(), 60);
    let segments = log.segment_count();
    let h = headers(&batches[20])[0];
    assert!(h.last_offset_delta > 0);
    log.truncate_to(h.base_offset + 1).unwrap();
    assert_eq!(log.log_end_offset(), h.base_offset);
    assert!(log.segment_count() < segments);
    assert_eq!(read_all(&log, 0), batches[..20].concat());
    let (info, _) = append(&mut log, 1, 1, 0);
    assert_eq!(info.base_offset, h.base_offset);
    drop(log);
    let log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), h.base_offset + 1);
    // Below the log start offset: start over.
    let mut log = log;
    log.delete_records(10).unwrap();
    log.truncate_to(5).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (5, 5));
    assert_eq!(log.segment_count(), 1);
    let (info, _) = append(&mut log, 1, 1, 0);
    assert_eq!(info.base_offset, 5);
}

#[test]
fn segment_ms_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 100,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    let mut b = make_batch(1, 1, 0);
    log.append(&mut b, 0, 1_000).unwrap();
    let mut b = make_batch(1, 1, 0);
    log.append(&mut b, 0, 1_100).unwrap();
    assert_eq!(log.segment_count(), 1);
    let mut b = make_batch(1, 1, 0);
    log.append(&mut b, 0, 1_101).unwrap();
    assert_eq!(log.segment_count(), 2);
    log.roll(2_000).unwrap();
    assert_eq!(log.segment_count(), 3);
    log.roll(2_000).unwrap();
    assert_eq!(
        log.segment_count(),
        3,
        "an empty active segment is not rolled"
    );
}

#[test]
fn flush_settings_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("t-0");
    let config = LogConfig {
        flush_interval_messages: 2,
        flush_interval_ms: 10,
        ..small_config()
    };
    let mut log = Log::open(&part, config, 0).unwrap();
    append(&mut log, 3, 1, 0);
    assert_eq!(log.local.unflushed_messages(), 0);
    append(&mut log, 1, 1, 0);
    assert_eq!(log.local.unflushed_messages(), 1);
    log.maybe_flush(1_005).unwrap();
    assert_eq!(log.local.unflushed_messages(), 1);
    log.maybe_flush(1_010).unwrap();
    assert_eq!(log.local.unflushed_messages(), 0);
    assert_eq!(log.dir(), part.as_path());
    assert_eq!(log.config().flush_interval_messages, 2);
    log.delete().unwrap();
    assert!(!part.exists());
}

#[test]
fn slices_survive_segment_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, batches) = filled(dir.path(), small_config(), 30);
    let r = log.read(0, u32::MAX, i64::MAX, true).unwrap();
    let leo = log.log_end_offset();
    log.delete_records(leo).unwrap();
    assert_eq!(r.read_to_vec().unwrap(), batches.concat());
}

#[test]
fn recovery_of_a_corrupt_middle_segment_keeps_offsets_dense() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, batches) = filled(dir.path(), small_config(), 60);
    log.flush().unwrap();
    let second_base = log.local.segments().all()[1].base_offset;
    let third_base = log.local.segments().all()[2].base_offset;
    drop(log);
    // Lose the indexes of the second segment (forcing a full scan) and flip a byte in its
    // last batch.
    fs::remove_file(segment_path(dir.path(), second_base, INDEX_SUFFIX)).unwrap();
    let path = segment_path(dir.path(), second_base, LOG_SUFFIX);
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let len = f.metadata().unwrap().len();
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, len - 5).unwrap();
    f.write_all_at(&[byte[0] ^ 1], len - 5).unwrap();
    drop(f);
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.segment_count(), 2);
    let kept: Vec<Vec<u8>> = batches
        .iter()
        .filter(|b| headers(b)[0].last_offset() < third_base)
        .cloned()
        .collect();
    let kept = &kept[..kept.len() - 1];
    assert_eq!(read_all(&log, 0), kept.concat());
    let leo = log.log_end_offset();
    assert_eq!(leo, headers(kept.last().unwrap())[0].last_offset() + 1);
    assert!(!segment_path(dir.path(), third_base, LOG_SUFFIX).exists());
    let (info, _) = append(&mut log, 1, 1, 0);
    assert_eq!(info.base_offset, leo);
}

#[test]
fn log_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
    assert_send_sync::<ReadInfo>();
}

#[test]
fn timestamp_at_finds_the_batch_of_an_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(log.timestamp_at(0).unwrap(), None);
    append(&mut log, 1, 10, 1000); // offset 0 @1000
    append(&mut log, 3, 10, 2000); // offsets 1..=3 @2000..2002
    append(&mut log, 1, 10, 1500); // offset 4 @1500
    for i in 0..40 {
        append(&mut log, 2, 30, 3000 + i * 10); // offsets 5.., rolls several segments
    }
    assert!(log.segment_count() > 2);
    assert_eq!(log.timestamp_at(0).unwrap(), Some(1000));
    // Inside a batch: the batch's first timestamp.
    assert_eq!(log.timestamp_at(3).unwrap(), Some(2000));
    assert_eq!(log.timestamp_at(4).unwrap(), Some(1500));
    assert_eq!(log.timestamp_at(5).unwrap(), Some(3000));
    assert_eq!(log.timestamp_at(84).unwrap(), Some(3390));
    assert_eq!(
        log.timestamp_at(85).unwrap(),
        None,
        "the log end offset holds nothing"
    );
    log.delete_records(3).unwrap();
    assert_eq!(
        log.timestamp_at(2).unwrap(),
        None,
        "below the log start offset"
    );
    assert_eq!(log.timestamp_at(3).unwrap(), Some(2000));
}

#[test]
fn append_shared_stores_what_append_stores_and_leaves_the_input_alone() {
    for log_append_time in [false, true] {
        let config = LogConfig {
            log_append_time,
            ..LogConfig::default()
        };
        let dir_a = tempfile::tempdir().unwrap();
        let dir_b = tempfile::tempdir().unwrap();
        let mut a = Log::open(dir_a.path(), config.clone(), 0).unwrap();
        let mut b = Log::open(dir_b.path(), config, 0).unwrap();
        // 700 batches in one append: more buffers than one pwritev takes.
        let mut many = Vec::new();
        for i in 0..700 {
            many.extend(make_batch(1 + i % 4, 30, 5_000 + i as i64));
        }
        for input in [make_batch(3, 100, 1_000), many] {
            let original = input.clone();
            let info_b = b.append_shared(&input, 7, 9_000).unwrap();
            assert_eq!(input, original, "append_shared must not touch its input");
            let mut patched = input.clone();
            let info_a = a.append(&mut patched, 7, 9_000).unwrap();
            assert_eq!(info_a, info_b);
        }
        let stored = read_all(&b, 0);
        assert_eq!(stored, read_all(&a, 0));
        let hs = headers(&stored);
        assert!(hs.iter().all(|h| h.partition_leader_epoch == 7));
        assert_eq!(hs.iter().all(|h| h.max_timestamp == 9_000), log_append_time);
        drop(b);
        let reopened = Log::open(dir_b.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(read_all(&reopened, 0), stored);
    }
}

#[test]
fn a_deferred_flush_is_reported_when_flush_messages_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_interval_messages: 5,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    let due: Vec<bool> = (0..4)
        .map(|_| {
            log.append_shared_deferred_flush(&make_batch(2, 10, 1), 0, 1)
                .unwrap()
                .1
        })
        .collect();
    assert_eq!(due, [false, false, true, false]);
    log.active_file().sync_data().unwrap();
}

#[test]
fn reads_of_large_batches_find_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    let mut all = Vec::new();
    for i in 0..20 {
        // Batches from 2 KiB to ~190 KiB: some below the read-ahead, most above it.
        let (_, b) = append(&mut log, 1 + i % 3, 2_000 + 3_000 * i * i / 4, 100);
        all.extend(b);
    }
    assert_eq!(read_all(&log, 0), all);
    let r = log.read(5, u32::MAX, i64::MAX, true).unwrap();
    assert_eq!(r.next_offset, Some(log.log_end_offset()));
    let bytes = r.read_to_vec().unwrap();
    assert!(headers(&bytes)[0].last_offset() >= 5);
}

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::batch::{
    BASE_SEQUENCE_OFFSET, BatchHeader, PRODUCER_EPOCH_OFFSET, PRODUCER_ID_OFFSET,
    check_batch_frame, crc32c,
};
use crate::cleaner::*;
use crate::testutil::{KeyValue, build_batch, build_compressed_batch};

/// (offset, key, value) of a record as read back.
type Rec = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

pub(super) fn compact_config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 64,
        retention_ms: -1,
        compact: true,
        cleanup_delete: false,
        delete_retention_ms: 1000,
        min_cleanable_dirty_ratio: 0.0,
        ..LogConfig::default()
    }
}

/// The batches (header, bytes) readable from the log start.
fn batches(log: &Log) -> Vec<(BatchHeader, Vec<u8>)> {
    let bytes = log
        .read(log.log_start_offset(), u32::MAX, i64::MAX, true)
        .unwrap()
        .read_to_vec()
        .unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let header = check_batch_frame(&bytes[pos..]).unwrap();
        out.push((header, bytes[pos..pos + header.total_size()].to_vec()));
        pos += header.total_size();
    }
    out
}

/// Every record readable from the log start.
pub(super) fn records(log: &Log) -> Vec<Rec> {
    let mut out = Vec::new();
    for (header, bytes) in batches(log) {
        let body = record::records_body(&bytes, &header).unwrap();
        for r in record::parse_records(&body, &header).unwrap() {
            out.push((
                header.base_offset + r.offset_delta,
                r.key.map(<[u8]>::to_vec),
                r.value.map(<[u8]>::to_vec),
            ));
        }
    }
    out
}

/// Appends one batch of (key, value) string records; returns the base offset.
fn put(log: &mut Log, now: i64, recs: &[(&str, Option<&str>)]) -> i64 {
    let kvs: Vec<KeyValue<'_>> = recs
        .iter()
        .map(|(k, v)| (Some(k.as_bytes()), v.map(str::as_bytes)))
        .collect();
    let mut b = build_batch(now, &kvs);
    log.append(&mut b, 0, now).unwrap().base_offset
}

/// The latest record per key, in offset order.
fn latest(history: &[Rec]) -> Vec<Rec> {
    let mut by_key: BTreeMap<Option<Vec<u8>>, Rec> = BTreeMap::new();
    for r in history {
        by_key.insert(r.1.clone(), r.clone());
    }
    let mut out: Vec<Rec> = by_key.into_values().collect();
    out.sort_by_key(|r| r.0);
    out
}

/// 10 keys updated 30 times, one record per batch, then the active segment rolled.
fn churned(dir: &Path) -> (Log, Vec<Rec>) {
    let mut log = Log::open(dir, compact_config(), 0).unwrap();
    let mut history = Vec::new();
    for round in 0..30 {
        for key in 0..10 {
            let (k, v) = (format!("k{key}"), format!("v{round}"));
            let offset = put(&mut log, 100 + round, &[(&k, Some(&v))]);
            history.push((offset, Some(k.into_bytes()), Some(v.into_bytes())));
        }
    }
    log.roll(200).unwrap();
    (log, history)
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
        .collect()
}

#[test]
fn keeps_the_latest_record_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, history) = churned(dir.path());
    let before = log.size_bytes();
    assert!(log.segment_count() > 10);
    assert_eq!(log.dirty_ratio(), 1.0);
    assert_eq!(log.cleaning_priority(1000), Some(1.0));
    let stats = log.clean(1000, &CleanerConfig::default()).unwrap();
    assert!(!stats.aborted);
    assert_eq!(stats.records_read, 300);
    assert_eq!(stats.records_retained, 10);
    assert_eq!(stats.cleaned_up_to, log.log_end_offset());
    assert_eq!(log.first_dirty_offset(), log.log_end_offset());
    assert_eq!(log.last_clean_ms(), 1000);
    assert_eq!(log.dirty_ratio(), 0.0);
    assert_eq!(log.cleaning_priority(1000), None);
    assert!(log.size_bytes() < before / 10);
    assert_eq!(records(&log), latest(&history));
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.log_end_offset(), 300);
    assert!(leftovers(dir.path()).is_empty());
    // Reads from inside a gap find the next surviving record.
    let first_kept = records(&log)[0].0;
    let r = log.read(first_kept - 5, u32::MAX, i64::MAX, true).unwrap();
    assert!(r.total_bytes > 0);

    // Recovery accepts the gaps and finds the same log.
    drop(log);
    let mut log = Log::open(dir.path(), compact_config(), 2000).unwrap();
    assert_eq!(records(&log), latest(&history));
    assert_eq!(log.log_end_offset(), 300);
    assert_eq!(log.first_dirty_offset(), 300);
    let offset = put(&mut log, 2000, &[("k1", Some("new"))]);
    assert_eq!(offset, 300);
    // A second pass over the already clean part changes nothing.
    log.roll(2001).unwrap();
    log.clean(2002, &CleanerConfig::default()).unwrap();
    let mut expected = latest(&history);
    expected.retain(|r| r.1.as_deref() != Some(b"k1"));
    expected.push((300, Some(b"k1".to_vec()), Some(b"new".to_vec())));
    assert_eq!(records(&log), expected);
}

#[test]
fn only_compacted_logs_are_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        compact: false,
        ..compact_config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    for i in 0..50 {
        put(&mut log, i, &[("k", Some("v"))]);
    }
    log.roll(100).unwrap();
    assert_eq!(log.cleaning_priority(100), None);
    assert!(log.prepare_clean(100).is_none());
    log.clean(100, &CleanerConfig::default()).unwrap();
    assert_eq!(records(&log).len(), 50);
}

#[test]
fn refuses_records_without_keys_when_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config(), 0).unwrap();
    for codec in 0..=4u8 {
        let mut b =
            build_compressed_batch(codec, 1, &[(Some(b"k"), Some(b"v")), (None, Some(b"v"))]);
        assert!(
            matches!(
                log.append(&mut b, 0, 1),
                Err(StorageError::InvalidRecord(_))
            ),
            "codec {codec}"
        );
        let mut b = build_compressed_batch(codec, 1, &[(Some(b"k"), None)]);
        log.append(&mut b, 0, 1).unwrap();
    }
    assert_eq!(log.log_end_offset(), 5);
    log.update_config(LogConfig {
        compact: false,
        ..compact_config()
    });
    let mut b = build_batch(1, &[(None, Some(b"v"))]);
    log.append(&mut b, 0, 1).unwrap();
}

/// Sets producer id, epoch and base sequence of a batch and fixes its CRC.
fn with_producer(mut b: Vec<u8>, id: i64, epoch: i16, seq: i32) -> Vec<u8> {
    b[PRODUCER_ID_OFFSET..PRODUCER_ID_OFFSET + 8].copy_from_slice(&id.to_be_bytes());
    b[PRODUCER_EPOCH_OFFSET..PRODUCER_EPOCH_OFFSET + 2].copy_from_slice(&epoch.to_be_bytes());
    b[BASE_SEQUENCE_OFFSET..BASE_SEQUENCE_OFFSET + 4].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c(&b[crate::batch::ATTRIBUTES_OFFSET..]);
    b[crate::batch::CRC_OFFSET..crate::batch::CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn compressed_batches_keep_their_codec_and_header() {
    for codec in 0..=4u8 {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), compact_config(), 0).unwrap();
        let mut history = Vec::new();
        let mut originals = Vec::new();
        for round in 0..6i64 {
            // Keys round, round+1, ..., round+4: each batch loses its first record to the next.
            let keys: Vec<String> = (round..round + 5).map(|k| format!("key-{k}")).collect();
            let values: Vec<String> = (0..5).map(|i| format!("value-{round}-{i}")).collect();
            let kvs: Vec<KeyValue<'_>> = keys
                .iter()
                .zip(&values)
                .map(|(k, v)| (Some(k.as_bytes()), Some(v.as_bytes())))
                .collect();
            let mut b = with_producer(
                build_compressed_batch(codec, 1000 * round, &kvs),
                42,
                3,
                round as i32 * 5,
            );
            let base = log.append(&mut b, 7, 1000 * round).unwrap().base_offset;
            originals.push(BatchHeader::parse(&b).unwrap());
            for (i, (k, v)) in keys.iter().zip(&values).enumerate() {
                history.push((
                    base + i as i64,
                    Some(k.clone().into_bytes()),
                    Some(v.clone().into_bytes()),
                ));
            }
        }
        log.roll(10_000).unwrap();
        log.clean(10_000, &CleanerConfig::default()).unwrap();
        assert_eq!(records(&log), latest(&history), "codec {codec}");
        for (header, _) in batches(&log) {
            let original = originals
                .iter()
                .find(|o| o.base_offset == header.base_offset)
                .expect("batch keeps its base offset");
            assert_eq!(header.compression(), codec);
            assert_eq!(header.last_offset_delta, original.last_offset_delta);
            assert_eq!(header.base_timestamp, original.base_timestamp);
            assert_eq!(
                (
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence
                ),
                (42, 3, original.base_sequence)
            );
            assert_eq!(header.partition_leader_epoch, 7);
            assert!(header.records_count >= 1);
            if header.records_count < original.records_count {
                assert!(header.max_timestamp <= original.max_timestamp);
            } else {
                assert_eq!(header.crc, original.crc, "a whole batch is copied");
            }
        }
    }
}

#[test]
fn tombstones_are_removed_after_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config(), 0).unwrap();
    put(&mut log, 1, &[("a", Some("1")), ("b", Some("1"))]);
    put(&mut log, 2, &[("a", None)]);
    put(&mut log, 3, &[("c", None)]);
    log.roll(10).unwrap();
    log.clean(1000, &CleanerConfig::default()).unwrap();
    let tombstones = |log: &Log| {
        records(log)
            .into_iter()
            .filter(|r| r.2.is_none())
            .map(|r| r.1.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(tombstones(&log), vec![b"a".to_vec(), b"c".to_vec()]);
    // Not due before cleaned-at + delete.retention.ms; a pass then keeps them.
    assert_eq!(log.cleaning_priority(1999), None);
    assert!(log.prepare_clean(1999).is_none());
    // Survives a restart: the horizon is in the checkpoint.
    drop(log);
    let mut log = Log::open(dir.path(), compact_config(), 1500).unwrap();
    assert_eq!(log.cleaning_priority(2000), Some(1.0));
    let stats = log.clean(2000, &CleanerConfig::default()).unwrap();
    assert_eq!(stats.tombstones_removed, 2);
    assert!(tombstones(&log).is_empty());
    assert_eq!(
        records(&log),
        vec![(1, Some(b"b".to_vec()), Some(b"1".to_vec()))]
    );
    assert_eq!(log.cleaning_priority(100_000), None);
    // A tombstone appended later gets its own horizon.
    put(&mut log, 3000, &[("b", None)]);
    log.roll(3000).unwrap();
    log.clean(3000, &CleanerConfig::default()).unwrap();
    assert_eq!(tombstones(&log), vec![b"b".to_vec()]);
    log.clean(3999, &CleanerConfig::default()).unwrap();
    assert_eq!(tombstones(&log), vec![b"b".to_vec()]);
    log.clean(4000, &CleanerConfig::default()).unwrap();
    assert!(records(&log).is_empty());
    assert_eq!(log.log_end_offset(), 5);
}

#[test]
fn min_compaction_lag_protects_young_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_compaction_lag_ms: 1000,
        ..compact_config()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    let mut old = Vec::new();
    for i in 0..40 {
        let o = put(&mut log, 100, &[("k", Some("old"))]);
        old.push((o, Some(b"k".to_vec()), Some(b"old".to_vec())));
        let _ = i;
    }
    log.roll(100).unwrap();
    let young_start = log.log_end_offset();
    let mut young = Vec::new();
    for _ in 0..40 {
        let o = put(&mut log, 5000, &[("k", Some("young"))]);
        young.push((o, Some(b"k".to_vec()), Some(b"young".to_vec())));
    }
    log.roll(5000).unwrap();
    log.clean(5500, &CleanerConfig::default()).unwrap();
    // The young segments are untouched; the old ones lost everything to them... except that
    // the map only covers what is cleanable, so the last old record survives.
    let got = records(&log);
    assert_eq!(log.first_dirty_offset(), young_start);
    assert_eq!(&got[1..], &young[..]);
    assert_eq!(got[0], old[39]);
    log.clean(6000, &CleanerConfig::default()).unwrap();
    assert_eq!(records(&log), vec![young[39].clone()]);
}

#[test]
fn retention_applies_only_with_the_delete_policy() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 10,
        ..compact_config()
    };
    let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
    for i in 0..30 {
        put(&mut log, 0, &[(&format!("k{i}"), Some("v"))]);
    }
    assert_eq!(log.enforce_retention(1000).unwrap(), 0);
    assert_eq!(records(&log).len(), 30);
    log.update_config(LogConfig {
        cleanup_delete: true,
        ..config
    });
    assert!(log.enforce_retention(1000).unwrap() > 0);
    assert!(records(&log).is_empty());
}

#[test]
fn switching_a_live_log_to_compact() {
    let dir = tempfile::tempdir().unwrap();
    let delete = LogConfig {
        compact: false,
        cleanup_delete: true,
        ..compact_config()
    };
    let mut log = Log::open(dir.path(), delete.clone(), 0).unwrap();
    for i in 0..20 {
        let mut b = build_batch(i, &[(None, Some(b"keyless")), (Some(b"k"), Some(b"v"))]);
        log.append(&mut b, 0, i).unwrap();
    }
    log.roll(100).unwrap();
    log.update_config(LogConfig {
        cleanup_delete: true,
        ..compact_config()
    });
    log.clean(100, &CleanerConfig::default()).unwrap();
    // Keyless records are dropped by the cleaner, as Kafka does.
    assert_eq!(
        records(&log),
        vec![(39, Some(b"k".to_vec()), Some(b"v".to_vec()))]
    );
    // And back: nothing is cleaned any more.
    log.update_config(delete);
    let mut b = build_batch(200, &[(None, Some(b"keyless"))]);
    log.append(&mut b, 0, 200).unwrap();
    assert!(log.prepare_clean(300).is_none());
}

#[test]
fn readers_keep_their_data_across_a_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = churned(dir.path());
    let before = log.read(0, u32::MAX, i64::MAX, true).unwrap();
    let bytes = before.read_to_vec().unwrap();
    log.clean(1000, &CleanerConfig::default()).unwrap();
    assert_eq!(before.read_to_vec().unwrap(), bytes);
}

#[test]
fn a_pass_prepared_before_a_change_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, history) = churned(dir.path());
    let mut task = log.prepare_clean(1000).unwrap();
    task.run(&CleanerConfig::default()).unwrap();
    log.update_config(LogConfig {
        cleanup_delete: true,
        retention_ms: 0,
        ..compact_config()
    });
    log.delete_records(10).unwrap();
    log.delete_records(100).unwrap();
    let stats = log.commit_clean(task).unwrap();
    assert!(stats.aborted);
    assert!(leftovers(dir.path()).is_empty());
    let got = records(&log);
    let expected: Vec<Rec> = history
        .iter()
        .filter(|r| r.0 >= got[0].0)
        .cloned()
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn truncation_makes_the_truncated_part_dirty_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = churned(dir.path());
    log.clean(1000, &CleanerConfig::default()).unwrap();
    assert_eq!(log.first_dirty_offset(), 300);
    log.truncate_to(295).unwrap();
    assert!(log.first_dirty_offset() <= log.log_end_offset());
    let end = log.log_end_offset();
    put(&mut log, 1100, &[("k0", Some("again"))]);
    log.roll(1100).unwrap();
    log.clean(1200, &CleanerConfig::default()).unwrap();
    let got = records(&log);
    let k0: Vec<&Rec> = got
        .iter()
        .filter(|r| r.1.as_deref() == Some(b"k0"))
        .collect();
    assert_eq!(k0.len(), 1);
    assert_eq!(k0[0].0, end);
    assert_eq!(k0[0].2.as_deref(), Some(&b"again"[..]));
    drop(log);
    let log = Log::open(dir.path(), compact_config(), 0).unwrap();
    assert_eq!(records(&log), got);
}

#[test]
fn a_small_dedupe_buffer_cleans_in_several_passes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), compact_config(), 0).unwrap();
    let mut history = Vec::new();
    for round in 0..4 {
        for key in 0..100 {
            let k = format!("key{key}");
            let v = format!("{round}");
            let o = put(&mut log, round, &[(&k, Some(&v))]);
            history.push((o, Some(k.into_bytes()), Some(v.into_bytes())));
        }
    }
    log.roll(100).unwrap();
    // 64 buckets: 56 keys per pass.
    let small = CleanerConfig {
        dedupe_buffer_bytes: 64 * MAP_ENTRY_BYTES,
        io_max_bytes_per_second: None,
    };
    let mut passes = 0;
    while log.first_dirty_offset() < log.log_end_offset() {
        let stats = log.clean(1000, &small).unwrap();
        assert!(stats.map_entries <= 56);
        assert!(stats.cleaned_up_to > stats.first_dirty_offset);
        passes += 1;
        assert!(passes < 100);
        // Every key keeps its latest record in any case.
        let got = records(&log);
        for r in latest(&history) {
            assert!(got.contains(&r));
        }
    }
    assert!(passes > 1);
    assert_eq!(records(&log), latest(&history));
    // A map that cannot hold one segment's keys is an error, not a silent no-op.
    let tiny = CleanerConfig {
        dedupe_buffer_bytes: 1,
        io_max_bytes_per_second: None,
    };
    for key in 0..100 {
        put(&mut log, 5, &[(&format!("key{key}"), Some("x"))]);
    }
    log.update_config(LogConfig {
        segment_bytes: 100_000,
        ..compact_config()
    });
    log.roll(5).unwrap();
    assert!(log.clean(1000, &tiny).is_err());
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn io_throttle_limits_the_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = churned(dir.path());
    let bytes = log.size_bytes();
    let throttled = CleanerConfig {
        dedupe_buffer_bytes: 1 << 20,
        io_max_bytes_per_second: Some(bytes * 4),
    };
    let started = Instant::now();
    log.clean(1000, &throttled).unwrap();
    // Read twice (map, rewrite) plus writes: at least half a second at 4x the log size/s.
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

/// A crash at each step of the swap leaves, after recovery, the old or the new segments,
/// complete, and a log that keeps working.
#[test]
fn recovery_completes_or_rolls_back_an_interrupted_swap() {
    let points = [
        CrashPoint::BeforeSwap,
        CrashPoint::AfterSwap,
        CrashPoint::AfterFirstDelete,
        CrashPoint::AfterDeletes,
        CrashPoint::AfterIndexRename,
    ];
    for point in points {
        for merge in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (mut log, history) = churned(dir.path());
            if merge {
                // Larger segments: the closed segments are cleaned in groups of several.
                log.update_config(LogConfig {
                    segment_bytes: 2_000,
                    ..compact_config()
                });
            }
            let old = records(&log);
            let mut task = log.prepare_clean(1000).unwrap();
            task.run(&CleanerConfig::default()).unwrap();
            if merge {
                assert!(task.groups.iter().any(|g| g.segments.len() > 1));
            }
            task.crash_at(point);
            log.commit_clean(task).unwrap();
            drop(log);

            let mut log = Log::open(dir.path(), compact_config(), 2000).unwrap();
            let got = records(&log);
            assert!(leftovers(dir.path()).is_empty(), "{point:?}");
            if point == CrashPoint::BeforeSwap {
                assert_eq!(got, old, "{point:?} merge {merge}");
            } else {
                // The first group is new; later groups (not reached) are old: either way the
                // latest record of every key is there and offsets increase.
                for r in latest(&history) {
                    assert!(got.contains(&r), "{point:?} merge {merge}: lost {r:?}");
                }
                assert!(got.len() < old.len(), "{point:?} merge {merge}");
            }
            assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
            for r in &got {
                assert!(history.contains(r), "{point:?}: invented {r:?}");
            }
            assert_eq!(log.log_end_offset(), 300);
            // The log keeps working: clean again to the end, append, reopen.
            log.clean(3000, &CleanerConfig::default()).unwrap();
            assert_eq!(records(&log), latest(&history), "{point:?} merge {merge}");
            put(&mut log, 3000, &[("z", Some("z"))]);
            drop(log);
            let log = Log::open(dir.path(), compact_config(), 4000).unwrap();
            assert_eq!(records(&log).len(), 11);
        }
    }
}

#[test]
fn checkpoint_round_trips_and_tolerates_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let state = CleanerState {
        first_dirty: 500,
        last_clean_ms: 77,
        ranges: vec![
            CleanedRange {
                end: 100,
                cleaned_at_ms: 5,
                tombstones: 2,
            },
            CleanedRange {
                end: 500,
                cleaned_at_ms: 77,
                tombstones: 0,
            },
        ],
    };
    state.store(dir.path()).unwrap();
    assert_eq!(CleanerState::load(dir.path()).unwrap(), state);
    assert_eq!(state.cleaned_at(50), Some(5));
    assert_eq!(state.cleaned_at(100), Some(77));
    assert_eq!(state.cleaned_at(500), None);
    assert!(state.tombstones_due(1005, 1000));
    assert!(!state.tombstones_due(1004, 1000));
    fs::write(dir.path().join(CLEANER_CHECKPOINT), "nonsense").unwrap();
    assert_eq!(CleanerState::load(dir.path()).unwrap(), CleanerState::new());
    let mut clamped = state.clone();
    assert!(clamped.clamp(300));
    assert_eq!(clamped.first_dirty, 300);
    assert_eq!(clamped.ranges.last().unwrap().end, 300);
    assert!(!clamped.clamp(400));
    assert_eq!(
        parse_swap_name("00000000000000000005-00000000000000000009.log.swap"),
        Some((5, 9))
    );
    assert_eq!(parse_swap_name("00000000000000000000.index.swap"), None);
}

/// Cleaning throughput, for the record:
/// `cargo test --release -p strom-storage cleaning_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn cleaning_throughput() {
    for codec in [0u8, 3] {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 16 << 20,
            index_interval_bytes: 4096,
            ..compact_config()
        };
        let mut log = Log::open(dir.path(), config, 0).unwrap();
        let value = [b'x'; 100];
        let keys: Vec<String> = (0..10_000).map(|k| format!("key-{k:05}")).collect();
        for batch in 0..5_000usize {
            let kvs: Vec<KeyValue<'_>> = (0..100)
                .map(|i| {
                    let k = &keys[(batch * 100 + i) * 7919 % keys.len()];
                    (Some(k.as_bytes()), Some(&value[..]))
                })
                .collect();
            let mut b = build_compressed_batch(codec, batch as i64, &kvs);
            log.append(&mut b, 0, 0).unwrap();
        }
        log.roll(0).unwrap();
        let size = log.size_bytes();
        let started = Instant::now();
        let stats = log.clean(1000, &CleanerConfig::default()).unwrap();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "codec {codec}: cleaned {} records ({:.1} MB) in {secs:.2} s: {:.0} MB/s, {:.0} records/s; kept {}",
            stats.records_read,
            size as f64 / 1e6,
            size as f64 / 1e6 / secs,
            stats.records_read as f64 / secs,
            stats.records_retained
        );
        assert_eq!(stats.records_retained, 10_000);
    }
}

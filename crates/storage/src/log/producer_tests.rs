//! Idempotent and transactional producers against the log: deduplication, sequence and epoch
//! checks, transaction markers, the last stable offset, and persistence of it all.

use super::*;
use crate::cleaner::CleanerConfig;
use crate::testutil::{ProducerFields, build_producer_batch};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 128,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

fn batch(pid: i64, epoch: i16, seq: i32, n: usize, transactional: bool) -> Vec<u8> {
    let value = [7u8; 30];
    let records: Vec<_> = (0..n).map(|_| (None, Some(&value[..]))).collect();
    let producer = ProducerFields {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
    };
    build_producer_batch(0, 5_000, &records, producer, transactional)
}

fn produce(
    log: &mut Log,
    pid: i64,
    epoch: i16,
    seq: i32,
    n: usize,
) -> Result<AppendInfo, StorageError> {
    log.append(&mut batch(pid, epoch, seq, n, false), 0, 1_000)
}

fn produce_txn(log: &mut Log, pid: i64, epoch: i16, seq: i32, n: usize) -> AppendInfo {
    log.append(&mut batch(pid, epoch, seq, n, true), 0, 1_000)
        .unwrap()
}

#[test]
fn retried_batches_get_their_original_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    let first = produce(&mut log, 1, 0, 0, 3).unwrap();
    let second = produce(&mut log, 1, 0, 3, 2).unwrap();
    assert_eq!((first.base_offset, second.base_offset), (0, 3));
    // Retries of either of the last batches are answered, not written.
    let retry = produce(&mut log, 1, 0, 0, 3).unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset), (0, 2));
    let retry = produce(&mut log, 1, 0, 3, 2).unwrap();
    assert_eq!(
        (retry.base_offset, retry.last_offset, retry.duplicate),
        (3, 4, true)
    );
    assert_eq!(log.log_end_offset(), 5);
    // Another producer has its own sequence.
    assert_eq!(produce(&mut log, 2, 0, 0, 1).unwrap().base_offset, 5);
}

#[test]
fn sequence_gaps_and_old_epochs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    produce(&mut log, 1, 0, 0, 3).unwrap();
    assert!(matches!(
        produce(&mut log, 1, 0, 5, 1),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    // A new epoch starts at sequence 0.
    assert!(matches!(
        produce(&mut log, 1, 1, 3, 1),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    produce(&mut log, 1, 1, 0, 1).unwrap();
    assert!(matches!(
        produce(&mut log, 1, 0, 3, 1),
        Err(StorageError::InvalidProducerEpoch(_))
    ));
    assert_eq!(log.log_end_offset(), 4);
    // A producer the partition does not know may start anywhere (its state expired).
    produce(&mut log, 9, 0, 40, 2).unwrap();
    assert_eq!(log.expire_producers(1_000_000, 1000), 2);
    produce(&mut log, 1, 1, 77, 1).unwrap();
}

#[test]
fn sequences_wrap_around() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    produce(&mut log, 1, 0, i32::MAX - 1, 2).unwrap();
    produce(&mut log, 1, 0, 0, 2).unwrap();
    assert_eq!(log.log_end_offset(), 4);
}

#[test]
fn dedup_survives_reopen_with_and_without_a_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        // Enough to roll several segments (snapshots at each roll) and leave a tail.
        for i in 0..40 {
            produce(&mut log, 1, 0, i * 2, 2).unwrap();
        }
        assert!(log.segment_count() > 2);
    }
    // Killed: state comes from the newest roll snapshot plus the replayed tail.
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    let dup = produce(&mut log, 1, 0, 78, 2).unwrap();
    assert_eq!((dup.base_offset, dup.duplicate), (78, true));
    assert!(matches!(
        produce(&mut log, 1, 0, 81, 1),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    produce(&mut log, 1, 0, 80, 1).unwrap();
    log.snapshot_producer_state().unwrap();
    drop(log);
    // Clean shutdown: the snapshot at the log end offset is all there is to read.
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    assert!(produce(&mut log, 1, 0, 80, 1).unwrap().duplicate);
    // With every snapshot gone the whole log is replayed.
    drop(log);
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "snapshot") {
            fs::remove_file(path).unwrap();
        }
    }
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    assert!(produce(&mut log, 1, 0, 80, 1).unwrap().duplicate);
    assert_eq!(log.producer_state().get(1).unwrap().last_seq(), Some(80));
}

#[test]
fn transactions_bound_the_stable_offset_and_aborts_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    produce(&mut log, 5, 0, 0, 2).unwrap(); // offsets 0-1, not transactional
    let t1 = produce_txn(&mut log, 1, 0, 0, 2); // 2-3
    let t2 = produce_txn(&mut log, 2, 0, 0, 1); // 4
    assert_eq!((t1.base_offset, t2.base_offset), (2, 4));
    assert_eq!(log.first_unstable_offset(), Some(2));
    // A non-transactional write inside an open transaction is refused.
    assert!(matches!(
        produce(&mut log, 1, 0, 2, 1),
        Err(StorageError::InvalidTxnState(_))
    ));
    let commit = log
        .append_control(1, 0, 0, ControlType::Commit, 0, 2_000)
        .unwrap();
    assert_eq!(commit.base_offset, 5);
    assert_eq!(log.first_unstable_offset(), Some(4));
    produce_txn(&mut log, 1, 0, 2, 1); // 6: producer 1's next transaction
    let abort = log
        .append_control(2, 0, 0, ControlType::Abort, 0, 2_000)
        .unwrap();
    assert_eq!(abort.base_offset, 7);
    assert_eq!(log.first_unstable_offset(), Some(6));
    let aborted = log.aborted_transactions(0, 100);
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (
            aborted[0].producer_id,
            aborted[0].first_offset,
            aborted[0].last_offset
        ),
        (2, 4, 7)
    );
    assert!(log.aborted_transactions(8, 100).is_empty());
    // The marker batch reads back as a control batch with its type.
    let bytes = log
        .read(7, u32::MAX, i64::MAX, true)
        .unwrap()
        .read_to_vec()
        .unwrap();
    let header = BatchHeader::parse(&bytes).unwrap();
    assert!(header.is_control() && header.is_transactional());
    assert_eq!(batch::control_record(&bytes), Some((0, 0)));
    // An older coordinator or producer epoch cannot write markers.
    log.append_control(1, 0, 3, ControlType::Commit, 0, 2_000)
        .unwrap();
    assert!(matches!(
        log.append_control(1, 0, 2, ControlType::Commit, 0, 2_000),
        Err(StorageError::CoordinatorFenced(_))
    ));
    // A fencing abort with a bumped epoch; the old epoch is then refused.
    produce_txn(&mut log, 2, 0, 1, 1);
    log.append_control(2, 1, 0, ControlType::Abort, 0, 2_000)
        .unwrap();
    assert!(matches!(
        log.append(&mut batch(2, 0, 2, 1, true), 0, 1_000),
        Err(StorageError::InvalidProducerEpoch(_))
    ));
    assert_eq!(log.aborted_transactions(0, 100).len(), 2);
    let end = log.log_end_offset();
    drop(log);

    // Everything comes back after a reopen without a shutdown snapshot.
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.aborted_transactions(0, 100).len(), 2);
    assert_eq!(log.first_unstable_offset(), None);
    // Even when the aborted index was lost, the replay re-derives it.
    fs::remove_file(dir.path().join(producer::ABORTED_INDEX_FILE)).unwrap();
    drop(log);
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(log.aborted_transactions(0, 100).len(), 2);

    // Truncation below a marker reopens its transaction and forgets the abort.
    log.truncate_to(7).unwrap();
    assert_eq!(log.first_unstable_offset(), Some(4));
    assert!(log.aborted_transactions(0, 100).is_empty());
    drop(log);
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(log.first_unstable_offset(), Some(4));
    assert!(log.aborted_transactions(0, 100).is_empty());
}

#[test]
fn producers_cannot_send_control_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    let mut b = batch::build_control_batch(1, 0, 0, 1, 5);
    assert!(matches!(
        log.append(&mut b, 0, 1_000),
        Err(StorageError::InvalidRecord(_))
    ));
}

fn keyed(pid: i64, seq: i32, key: &[u8], value: &[u8], transactional: bool) -> Vec<u8> {
    let producer = ProducerFields {
        producer_id: pid,
        producer_epoch: 0,
        base_sequence: seq,
    };
    build_producer_batch(
        0,
        5_000,
        &[(Some(key), Some(value))],
        producer,
        transactional,
    )
}

#[test]
fn compaction_drops_aborted_records_and_waits_for_open_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 150,
        retention_ms: -1,
        compact: true,
        cleanup_delete: false,
        min_cleanable_dirty_ratio: 0.0,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config, 0).unwrap();
    log.append(&mut keyed(1, 0, b"k", b"committed", false), 0, 1_000)
        .unwrap(); // 0
    log.append(&mut keyed(2, 0, b"k", b"aborted", true), 0, 1_000)
        .unwrap(); // 1
    log.append_control(2, 0, 0, ControlType::Abort, 0, 1_000)
        .unwrap(); // 2
    log.append(&mut keyed(3, 0, b"j", b"open", true), 0, 1_000)
        .unwrap(); // 3
    for i in 0..6 {
        log.append(&mut keyed(1, 1 + i, b"x", b"filler", false), 0, 1_000)
            .unwrap();
    }
    assert!(log.segment_count() > 3);
    log.clean(10_000, &CleanerConfig::default()).unwrap();
    let values = |log: &Log| -> Vec<(i64, Vec<u8>)> {
        let bytes = log
            .read(0, u32::MAX, i64::MAX, true)
            .unwrap()
            .read_to_vec()
            .unwrap();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let h = BatchHeader::parse(&bytes[pos..]).unwrap();
            let end = pos + h.total_size();
            if !h.is_control() {
                let body = record::records_body(&bytes[pos..end], &h).unwrap();
                for r in record::parse_records(&body, &h).unwrap() {
                    out.push((h.base_offset + r.offset_delta, r.value.unwrap().to_vec()));
                }
            }
            pos = end;
        }
        out
    };
    let after = values(&log);
    // The aborted write neither survived nor displaced the committed value of its key.
    assert!(after.contains(&(0, b"committed".to_vec())), "{after:?}");
    assert!(!after.iter().any(|(_, v)| v == b"aborted"), "{after:?}");
    // Nothing at or after the open transaction was cleaned.
    assert!(after.contains(&(3, b"open".to_vec())));
    assert_eq!(after.iter().filter(|(_, v)| v == b"filler").count(), 6);
    assert!(log.first_dirty_offset() <= 3);
}

/// The sequence invariant asserted in `ProducerState::check_batch` cannot be reached from
/// here: every way a client can break it is refused first. A gap, a repeat that is not the
/// last batches' retry, and a new epoch not starting at 0 are all `OutOfOrderSequence`, and
/// the partition's state is unchanged afterwards.
#[test]
fn sequence_breaks_are_errors_and_leave_the_state_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    produce(&mut log, 7, 0, 0, 3).unwrap();
    let before = log.producer_state().producers();
    for (epoch, seq) in [(0, 4), (0, 1), (1, 5)] {
        assert!(
            matches!(
                produce(&mut log, 7, epoch, seq, 1),
                Err(StorageError::OutOfOrderSequence(_))
            ),
            "epoch {epoch} seq {seq}"
        );
    }
    assert_eq!(log.producer_state().producers(), before);
    assert_eq!(log.log_end_offset(), 3);
    produce(&mut log, 7, 0, 3, 1).unwrap();
}

//! A follower's copy of a leader's log: batches appended as the leader wrote them, the leader
//! epoch cache, producer state carried over for a failover, and truncation of a diverged tail
//! found with the epoch cache.

use super::*;
use crate::testutil::{ProducerFields, build_producer_batch};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 500,
        index_interval_bytes: 64,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

fn batch(pid: i64, seq: i32, n: usize, transactional: bool) -> Vec<u8> {
    let value = [3u8; 20];
    let records: Vec<_> = (0..n).map(|_| (None, Some(&value[..]))).collect();
    let producer = ProducerFields {
        producer_id: pid,
        producer_epoch: 0,
        base_sequence: seq,
    };
    build_producer_batch(0, 7_000, &records, producer, transactional)
}

fn all_bytes(log: &Log) -> Vec<u8> {
    log.read(log.log_start_offset(), u32::MAX, i64::MAX, true)
        .unwrap()
        .read_to_vec()
        .unwrap()
}

/// Copies the leader's batches from the follower's end, `chunk` bytes at a time.
fn replicate(leader: &Log, follower: &mut Log, chunk: u32) {
    while follower.log_end_offset() < leader.log_end_offset() {
        let mut bytes = leader
            .read(follower.log_end_offset(), chunk, i64::MAX, true)
            .unwrap()
            .read_to_vec()
            .unwrap();
        follower.append_replicated(&mut bytes, 1_000).unwrap();
    }
}

#[test]
fn follower_copies_batches_epochs_and_producer_state() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = Log::open(ld.path(), config(), 0).unwrap();
    let mut follower = Log::open(fd.path(), config(), 0).unwrap();
    for i in 0..3 {
        leader
            .append(&mut batch(1, i * 2, 2, false), 0, 1_000)
            .unwrap();
    }
    leader.append(&mut batch(2, 0, 3, true), 1, 1_000).unwrap();
    leader
        .append_control(2, 0, 0, ControlType::Abort, 1, 1_000)
        .unwrap();
    leader.append(&mut batch(1, 6, 4, false), 1, 1_000).unwrap();
    leader.append(&mut batch(3, 0, 1, true), 1, 1_000).unwrap();
    replicate(&leader, &mut follower, 150);

    assert_eq!(all_bytes(&follower), all_bytes(&leader));
    assert_eq!(follower.epochs(), leader.epochs());
    assert_eq!(follower.epochs().entries(), &[(0, 0), (1, 6)]);
    assert_eq!(
        follower.aborted_transactions(0, i64::MAX),
        leader.aborted_transactions(0, i64::MAX)
    );
    assert_eq!(follower.first_unstable_offset(), Some(14));
    assert_eq!(
        follower.producer_state().producers(),
        leader.producer_state().producers()
    );
    // Batches below the follower's end are refused.
    let mut again = leader
        .read(0, u32::MAX, i64::MAX, true)
        .unwrap()
        .read_to_vec()
        .unwrap();
    assert!(follower.append_replicated(&mut again, 1_000).is_err());

    // Failover: the follower leads at epoch 2 and still recognizes a retried batch.
    let dup = follower
        .append(&mut batch(1, 6, 4, false), 2, 1_000)
        .unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.base_offset, 10);
    follower
        .append(&mut batch(1, 10, 1, false), 2, 1_000)
        .unwrap();
    assert_eq!(follower.end_offset_for_epoch(1), Some((1, 15)));

    // The old leader wrote one more batch at epoch 1 that never reached the follower; to
    // rejoin it truncates to where epoch 1 ends on the new leader.
    leader
        .append(&mut batch(1, 10, 2, false), 1, 1_000)
        .unwrap();
    let (epoch, end) = follower
        .end_offset_for_epoch(leader.epochs().latest_epoch().unwrap())
        .unwrap();
    let (_, own_end) = leader.end_offset_for_epoch(epoch).unwrap();
    leader.truncate_to(end.min(own_end)).unwrap();
    assert_eq!(leader.epochs().entries(), &[(0, 0), (1, 6)]);
    replicate(&follower, &mut leader, 1000);
    assert_eq!(all_bytes(&leader), all_bytes(&follower));
    assert_eq!(leader.epochs().entries(), &[(0, 0), (1, 6), (2, 15)]);

    // Both survive a reopen (epochs from the checkpoint, or from the log when it is lost).
    drop(leader);
    std::fs::remove_file(ld.path().join(crate::epoch::LEADER_EPOCH_CHECKPOINT)).unwrap();
    let leader = Log::open(ld.path(), config(), 0).unwrap();
    drop(follower);
    let follower = Log::open(fd.path(), config(), 0).unwrap();
    assert_eq!(leader.epochs(), follower.epochs());
    assert_eq!(leader.epochs().entries(), &[(0, 0), (1, 6), (2, 15)]);
}

#[test]
fn follower_continues_after_a_compaction_gap() {
    let fd = tempfile::tempdir().unwrap();
    let mut follower = Log::open(fd.path(), config(), 0).unwrap();
    // Leader batches at offsets 0-1 and 5-6 (2-4 were compacted away).
    let mut first = batch(-1, -1, 2, false);
    batch::patch_base_offset(&mut first, 0);
    batch::patch_leader_epoch(&mut first, 0);
    let mut second = batch(-1, -1, 2, false);
    batch::patch_base_offset(&mut second, 5);
    batch::patch_leader_epoch(&mut second, 0);
    follower.append_replicated(&mut first, 1_000).unwrap();
    follower.append_replicated(&mut second, 1_000).unwrap();
    assert_eq!(follower.log_end_offset(), 7);
    let bytes = follower
        .read(3, u32::MAX, i64::MAX, true)
        .unwrap()
        .read_to_vec()
        .unwrap();
    assert_eq!(BatchHeader::parse(&bytes).unwrap().base_offset, 5);
    drop(follower);
    let follower = Log::open(fd.path(), config(), 0).unwrap();
    assert_eq!(follower.log_end_offset(), 7);
}

#[test]
fn an_epoch_checkpoint_that_lost_its_unsynced_entries_is_completed_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(crate::epoch::LEADER_EPOCH_CHECKPOINT);
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    // Enough batches at epoch 0 to roll segments: each roll makes the checkpoint durable
    // before it writes a producer snapshot.
    for i in 0..8 {
        log.append(&mut batch(1, i * 2, 2, false), 0, 1_000)
            .unwrap();
    }
    assert!(log.segment_count() > 1, "the log rolled");
    let durable = std::fs::read(&path).unwrap();
    // Epoch 1 begins: the checkpoint is rewritten without fsync.
    let epoch_start = log.log_end_offset();
    log.append(&mut batch(1, 16, 2, false), 1, 1_000).unwrap();
    assert_eq!(log.epochs().entries(), &[(0, 0), (1, epoch_start)]);
    drop(log);

    // A crash took the unsynced write back: the file holds the durable version.
    std::fs::write(&path, &durable).unwrap();
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(log.epochs().entries(), &[(0, 0), (1, epoch_start)]);
    drop(log);

    // Or left nothing readable.
    std::fs::write(&path, b"").unwrap();
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(log.epochs().entries(), &[(0, 0), (1, epoch_start)]);
}

/// A leader's batch whose offsets would run past `i64::MAX` is input, not a bug: refused with
/// `InvalidRecord` before the local log's offset asserts could see a wrapped-around offset.
#[test]
fn a_replicated_batch_overflowing_the_offsets_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    let mut b = batch(-1, -1, 3, false);
    crate::batch::patch_base_offset(&mut b, i64::MAX - 1);
    assert!(matches!(
        log.append_replicated(&mut b, 0),
        Err(StorageError::InvalidRecord(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
}

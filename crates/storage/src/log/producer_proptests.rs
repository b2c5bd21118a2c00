//! Model-based property test of idempotent producers: random sends, retries of earlier
//! batches, sequence gaps, epoch bumps, rolls, truncations and reopens (with and without a
//! shutdown snapshot) must give the answers a simple model of Kafka's rules gives.

use std::collections::HashMap;

use super::*;
use crate::testutil::{ProducerFields, build_producer_batch};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Producer `pid % 3` sends its next batch of `n` records.
    Send {
        pid: u8,
        n: u8,
    },
    /// Producer `pid % 3` resends its `back`-th last batch.
    Retry {
        pid: u8,
        back: u8,
    },
    /// Producer `pid % 3` skips `gap` sequence numbers.
    Gap {
        pid: u8,
        gap: u8,
    },
    /// Producer `pid % 3` moves to a new epoch (sequence starts again at 0).
    Bump {
        pid: u8,
    },
    Roll,
    /// Truncate to the base offset of the `back`-th last batch.
    Truncate {
        back: u8,
    },
    Reopen {
        snapshot: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (any::<u8>(), 1u8..5).prop_map(|(pid, n)| Op::Send { pid, n }),
        4 => (any::<u8>(), 0u8..8).prop_map(|(pid, back)| Op::Retry { pid, back }),
        1 => (any::<u8>(), 1u8..4).prop_map(|(pid, gap)| Op::Gap { pid, gap }),
        1 => any::<u8>().prop_map(|pid| Op::Bump { pid }),
        1 => Just(Op::Roll),
        1 => (0u8..4).prop_map(|back| Op::Truncate { back }),
        1 => any::<bool>().prop_map(|snapshot| Op::Reopen { snapshot }),
    ]
}

/// One batch in the model log.
#[derive(Clone, Debug)]
struct Sent {
    pid: i64,
    epoch: i16,
    first_seq: i32,
    count: i32,
    base_offset: i64,
}

#[derive(Default)]
struct Model {
    log: Vec<Sent>,
    /// Next sequence and epoch each producer will use.
    next: HashMap<i64, (i16, i32)>,
}

impl Model {
    fn log_end(&self) -> i64 {
        self.log
            .last()
            .map_or(0, |b| b.base_offset + i64::from(b.count))
    }

    /// The producer's batches in the log for its current epoch, newest first.
    fn recent(&self, pid: i64) -> Vec<&Sent> {
        let epoch = self
            .log
            .iter()
            .rev()
            .find(|b| b.pid == pid)
            .map(|b| b.epoch);
        self.log
            .iter()
            .rev()
            .filter(|b| b.pid == pid && Some(b.epoch) == epoch)
            .collect()
    }
}

fn batch(pid: i64, epoch: i16, seq: i32, n: i32) -> Vec<u8> {
    let value = [1u8; 8];
    let records: Vec<_> = (0..n).map(|_| (None, Some(&value[..]))).collect();
    let producer = ProducerFields {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
    };
    build_producer_batch(0, 1_000, &records, producer, false)
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 64,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Send { pid, n } => {
                let pid = i64::from(pid % 3);
                let (epoch, seq) = *model.next.get(&pid).unwrap_or(&(0, 0));
                let n = i32::from(n);
                let got = log.append(&mut batch(pid, epoch, seq, n), 0, 1_000);
                // A fresh epoch must start at 0; otherwise the next sequence is always right.
                let known_epoch = model.recent(pid).first().map(|b| b.epoch);
                if known_epoch.is_some_and(|e| e != epoch) && seq != 0 {
                    prop_assert!(
                        matches!(got, Err(StorageError::OutOfOrderSequence(_))),
                        "{got:?}"
                    );
                    continue;
                }
                let info = got.unwrap();
                prop_assert!(!info.duplicate);
                prop_assert_eq!(info.base_offset, model.log_end());
                model.log.push(Sent {
                    pid,
                    epoch,
                    first_seq: seq,
                    count: n,
                    base_offset: info.base_offset,
                });
                model.next.insert(pid, (epoch, seq + n));
            }
            Op::Retry { pid, back } => {
                let pid = i64::from(pid % 3);
                let recent = model.recent(pid);
                let Some(b) = recent.get(usize::from(back)).map(|b| (*b).clone()) else {
                    continue;
                };
                let got = log.append(&mut batch(pid, b.epoch, b.first_seq, b.count), 0, 1_000);
                if usize::from(back) < producer::MAX_CACHED_BATCHES {
                    let info = got.unwrap();
                    prop_assert!(info.duplicate);
                    prop_assert_eq!(info.base_offset, b.base_offset);
                } else {
                    prop_assert!(
                        matches!(got, Err(StorageError::OutOfOrderSequence(_))),
                        "{got:?}"
                    );
                }
            }
            Op::Gap { pid, gap } => {
                let pid = i64::from(pid % 3);
                let Some(&(epoch, seq)) = model.next.get(&pid) else {
                    continue;
                };
                if model.recent(pid).is_empty() {
                    continue;
                }
                let got = log.append(&mut batch(pid, epoch, seq + i32::from(gap), 1), 0, 1_000);
                prop_assert!(
                    matches!(got, Err(StorageError::OutOfOrderSequence(_))),
                    "{got:?}"
                );
            }
            Op::Bump { pid } => {
                let pid = i64::from(pid % 3);
                let (epoch, _) = *model.next.get(&pid).unwrap_or(&(0, 0));
                model.next.insert(pid, (epoch + 1, 0));
            }
            Op::Roll => log.roll(1_000).unwrap(),
            Op::Truncate { back } => {
                let Some(at) = model.log.len().checked_sub(usize::from(back) + 1) else {
                    continue;
                };
                let offset = model.log[at].base_offset;
                log.truncate_to(offset).unwrap();
                model.log.truncate(at);
                // Producers continue after what the log still holds (as after a leader change).
                model.next.clear();
                for b in &model.log {
                    model.next.insert(b.pid, (b.epoch, b.first_seq + b.count));
                }
            }
            Op::Reopen { snapshot } => {
                if snapshot {
                    log.snapshot_producer_state().unwrap();
                }
                drop(log);
                log = Log::open(dir.path(), config(), 0).unwrap();
            }
        }
        prop_assert_eq!(log.log_end_offset(), model.log_end());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn idempotent_producers_match_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}

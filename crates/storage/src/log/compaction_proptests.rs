//! Model-based property test of compaction: random keyed appends (with tombstones, several
//! codecs), cleaning passes with small or large key maps, rolls, reopens and clock jumps, on
//! tiny segments. After every step the log must read back as the model allows.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::compaction_tests::{compact_config, records};
use super::*;
use crate::cleaner::*;
use crate::testutil::{KeyValue, build_compressed_batch};

const KEYS: u8 = 24;
const DELETE_RETENTION_MS: i64 = 100;

#[derive(Clone, Debug)]
enum Op {
    /// One batch: (key, tombstone) records, with a codec.
    Append(Vec<(u8, bool)>, u8),
    Clean {
        small_map: bool,
    },
    Roll,
    Reopen,
    Wait(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (prop::collection::vec((0..KEYS, prop::bool::weighted(0.15)), 1..5), 0u8..=4)
            .prop_map(|(recs, codec)| Op::Append(recs, codec)),
        3 => any::<bool>().prop_map(|small_map| Op::Clean { small_map }),
        1 => Just(Op::Roll),
        1 => Just(Op::Reopen),
        2 => (0u16..150).prop_map(Op::Wait),
    ]
}

type Rec = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

#[derive(Default)]
struct Model {
    /// Every record appended, by offset.
    history: BTreeMap<i64, Rec>,
    /// When each offset was first below the cleaner's first dirty offset after a pass.
    cleaned_at: BTreeMap<i64, i64>,
    /// Offsets below this are clean.
    first_dirty: i64,
}

impl Model {
    fn on_clean(&mut self, stats: &CleanStats, now: i64) {
        for &offset in self.history.keys() {
            if offset < stats.cleaned_up_to {
                self.cleaned_at.entry(offset).or_insert(now);
            }
        }
        self.first_dirty = stats.cleaned_up_to;
    }

    /// Checks what the log reads back.
    fn check(&self, got: &[Rec], now: i64) -> Result<(), TestCaseError> {
        prop_assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "offsets increase");
        for r in got {
            prop_assert_eq!(
                Some(r),
                self.history.get(&r.0),
                "read a record never appended"
            );
        }
        // Everything not yet clean (the active segment, the dirty part) is untouched.
        let dirty: Vec<&Rec> = self
            .history
            .values()
            .filter(|r| r.0 >= self.first_dirty)
            .collect();
        let got_dirty: Vec<&Rec> = got.iter().filter(|r| r.0 >= self.first_dirty).collect();
        prop_assert_eq!(&got_dirty, &dirty);
        // In the clean part, each key has at most its latest record below the first dirty
        // offset; it is missing only if it is a tombstone past its delete horizon.
        let mut latest_clean: BTreeMap<&Option<Vec<u8>>, &Rec> = BTreeMap::new();
        for r in self.history.values().filter(|r| r.0 < self.first_dirty) {
            latest_clean.insert(&r.1, r);
        }
        let got_clean: Vec<&Rec> = got.iter().filter(|r| r.0 < self.first_dirty).collect();
        for r in &got_clean {
            prop_assert_eq!(
                latest_clean.get(&r.1).copied(),
                Some(*r),
                "clean part keeps only the latest record of a key"
            );
        }
        for r in latest_clean.values() {
            // A record may also go when a later one of its key sits in the dirty part (a pass
            // whose key map filled up maps part of a segment it does not rewrite).
            let superseded = dirty.iter().any(|d| d.1 == r.1);
            if !got_clean.contains(r) && !superseded {
                prop_assert!(r.2.is_none(), "lost the latest value of a key: {:?}", r);
                let at = self.cleaned_at.get(&r.0).copied();
                prop_assert!(
                    at.is_some_and(|at| at + DELETE_RETENTION_MS <= now),
                    "tombstone at {} removed before its horizon",
                    r.0
                );
            }
        }
        Ok(())
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 300,
        delete_retention_ms: DELETE_RETENTION_MS,
        ..compact_config()
    }
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn clean(log: &mut Log, model: &mut Model, now: i64, small_map: bool) -> Result<(), TestCaseError> {
    let cleaner = CleanerConfig {
        // 64 buckets (56 keys): enough for a segment of this test, not for every key.
        dedupe_buffer_bytes: if small_map {
            64 * MAP_ENTRY_BYTES
        } else {
            1 << 20
        },
        io_max_bytes_per_second: None,
    };
    let stats = log.clean(now, &cleaner).map_err(fail)?;
    prop_assert!(!stats.aborted);
    prop_assert!(stats.cleaned_up_to >= model.first_dirty);
    prop_assert_eq!(log.first_dirty_offset(), stats.cleaned_up_to);
    model.on_clean(&stats, now);
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(fail)?;
    let mut log = Log::open(dir.path(), config(), 0).map_err(fail)?;
    let mut model = Model::default();
    let mut now = 1_000i64;
    let mut serial = 0u32;
    for op in ops {
        now += 1;
        match op {
            Op::Append(recs, codec) => {
                let owned: Vec<(Vec<u8>, Option<Vec<u8>>)> = recs
                    .iter()
                    .map(|&(k, tombstone)| {
                        serial += 1;
                        let value = (!tombstone).then(|| format!("v{serial}").into_bytes());
                        (format!("key{k}").into_bytes(), value)
                    })
                    .collect();
                let kvs: Vec<KeyValue<'_>> = owned
                    .iter()
                    .map(|(k, v)| (Some(&k[..]), v.as_deref()))
                    .collect();
                let mut batch = build_compressed_batch(codec, now, &kvs);
                let info = log.append(&mut batch, 0, now).map_err(fail)?;
                for (i, (k, v)) in owned.into_iter().enumerate() {
                    let offset = info.base_offset + i as i64;
                    model.history.insert(offset, (offset, Some(k), v));
                }
            }
            Op::Clean { small_map } => clean(&mut log, &mut model, now, small_map)?,
            Op::Roll => log.roll(now).map_err(fail)?,
            Op::Reopen => {
                drop(log);
                log = Log::open(dir.path(), config(), now).map_err(fail)?;
            }
            Op::Wait(ms) => now += i64::from(ms),
        }
        model.check(&records(&log), now)?;
    }
    // Finally: everything cleaned, then past the delete horizon every tombstone is gone and
    // every live key reads as its latest value.
    log.roll(now).map_err(fail)?;
    while log.first_dirty_offset() < log.log_end_offset() {
        clean(&mut log, &mut model, now, false)?;
    }
    model.check(&records(&log), now)?;
    now += DELETE_RETENTION_MS;
    clean(&mut log, &mut model, now, false)?;
    let got = records(&log);
    model.check(&got, now)?;
    let mut latest: BTreeMap<&Option<Vec<u8>>, &Rec> = BTreeMap::new();
    for r in model.history.values() {
        latest.insert(&r.1, r);
    }
    let mut expected: Vec<Rec> = latest
        .into_values()
        .filter(|r| r.2.is_some())
        .cloned()
        .collect();
    expected.sort_by_key(|r| r.0);
    prop_assert_eq!(got, expected);
    drop(log);
    let log = Log::open(dir.path(), config(), now).map_err(fail)?;
    model.check(&records(&log), now)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn compaction_agrees_with_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}

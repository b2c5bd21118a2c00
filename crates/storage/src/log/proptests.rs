//! Model-based property tests: random operation sequences against the log and against a plain
//! in-memory list of batches must agree after every step.

use super::*;
use crate::batch::validate_batches;
use crate::testutil::make_batch;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// One append call with these (record count, payload length) batches.
    Append(Vec<(usize, usize)>),
    Read {
        at: u16,
        max_bytes: u16,
        bound: u16,
        min_one: bool,
    },
    Truncate(u16),
    Roll,
    DeleteRecords(u16),
    Reopen,
    /// The process dies: nothing is closed (an active segment written with direct I/O keeps
    /// its padding), then the log is opened again.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((1usize..6, 0usize..120), 1..4).prop_map(Op::Append),
        4 => (any::<u16>(), 0u16..1500, any::<u16>(), any::<bool>()).prop_map(
            |(at, max_bytes, bound, min_one)| Op::Read { at, max_bytes, bound, min_one }
        ),
        1 => any::<u16>().prop_map(Op::Truncate),
        1 => Just(Op::Roll),
        1 => any::<u16>().prop_map(Op::DeleteRecords),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

#[derive(Default)]
struct Model {
    /// (base offset, last offset, stored bytes), in order.
    batches: Vec<(i64, i64, Vec<u8>)>,
    log_start: i64,
    log_end: i64,
}

impl Model {
    /// An offset from `at`, covering one below the log start to one past the log end.
    fn pick(&self, at: u16) -> i64 {
        let span = self.log_end - self.log_start + 3;
        self.log_start - 1 + i64::from(at) % span
    }

    fn read(&self, offset: i64, max_bytes: u32, max_offset: i64, min_one: bool) -> Option<Vec<u8>> {
        if offset < self.log_start || offset > self.log_end {
            return None;
        }
        let mut out = Vec::new();
        for (_, last, bytes) in self.batches.iter().filter(|b| b.1 >= offset) {
            if *last >= max_offset {
                break;
            }
            if out.len() + bytes.len() > max_bytes as usize {
                if out.is_empty() && min_one {
                    out.extend_from_slice(bytes);
                }
                break;
            }
            out.extend_from_slice(bytes);
        }
        Some(out)
    }

    fn truncate(&mut self, offset: i64) {
        if offset >= self.log_end {
            return;
        }
        if offset < self.log_start {
            let start = offset.max(0);
            self.batches.clear();
            self.log_start = start;
            self.log_end = start;
            return;
        }
        if let Some(i) = self.batches.iter().position(|b| b.1 >= offset) {
            self.log_end = self.batches[i].0;
            self.batches.truncate(i);
        }
        self.log_start = self.log_start.min(self.log_end);
    }
}

/// Small segments with buffered appends; with direct appends, segments of a few blocks so that
/// reads cross from the file into the last block held in memory.
fn config(direct: bool) -> LogConfig {
    LogConfig {
        segment_bytes: if direct { 9000 } else { 512 },
        index_interval_bytes: 64,
        retention_ms: -1,
        direct_writes: direct,
        ..LogConfig::default()
    }
}

fn check(log: &Log, model: &Model, probe: u16) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_end_offset(), model.log_end);
    prop_assert_eq!(log.log_start_offset(), model.log_start);
    for offset in [model.log_start, model.pick(probe), model.log_end] {
        let expected = model.read(offset, u32::MAX, i64::MAX, true);
        let got = log.read(offset, u32::MAX, i64::MAX, true);
        match expected {
            None => prop_assert!(
                matches!(got, Err(StorageError::OffsetOutOfRange { .. })),
                "offset {offset}"
            ),
            Some(bytes) => {
                let got = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got.total_bytes, bytes.len() as u64);
                prop_assert_eq!(
                    got.read_to_vec()
                        .map_err(|e| TestCaseError::fail(e.to_string()))?,
                    bytes
                );
            }
        }
    }
    Ok(())
}

fn run(ops: Vec<Op>, direct: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut log =
        Log::open(dir.path(), config(direct), 0).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut model = Model::default();
    let mut now = 0i64;
    for (step, op) in ops.into_iter().enumerate() {
        now += 10;
        match op {
            Op::Append(specs) => {
                let mut buf: Vec<u8> = specs
                    .iter()
                    .flat_map(|&(n, len)| make_batch(n, len, now))
                    .collect();
                let info = log
                    .append(&mut buf, 1, now)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(info.base_offset, model.log_end);
                let mut pos = 0;
                for h in validate_batches(&buf, u32::MAX)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                {
                    prop_assert_eq!(h.base_offset, model.log_end);
                    let bytes = buf[pos..pos + h.total_size()].to_vec();
                    pos += h.total_size();
                    model.batches.push((h.base_offset, h.last_offset(), bytes));
                    model.log_end = h.last_offset() + 1;
                }
                prop_assert_eq!(info.last_offset, model.log_end - 1);
            }
            Op::Read {
                at,
                max_bytes,
                bound,
                min_one,
            } => {
                let offset = model.pick(at);
                let max_offset =
                    model.log_start + i64::from(bound) % (model.log_end - model.log_start + 2);
                let expected = model.read(offset, u32::from(max_bytes), max_offset, min_one);
                let got = log.read(offset, u32::from(max_bytes), max_offset, min_one);
                match expected {
                    None => prop_assert!(
                        matches!(got, Err(StorageError::OffsetOutOfRange { .. })),
                        "read {}",
                        offset
                    ),
                    Some(bytes) => {
                        let got = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(
                            got.read_to_vec()
                                .map_err(|e| TestCaseError::fail(e.to_string()))?,
                            bytes,
                            "step {} read {} max_bytes {} max_offset {}",
                            step,
                            offset,
                            max_bytes,
                            max_offset
                        );
                    }
                }
            }
            Op::Truncate(at) => {
                let offset = model.pick(at);
                log.truncate_to(offset)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                model.truncate(offset);
            }
            Op::Roll => log
                .roll(now)
                .map_err(|e| TestCaseError::fail(e.to_string()))?,
            Op::DeleteRecords(at) => {
                let offset = model.pick(at);
                let got = log.delete_records(offset);
                if offset < 0 || offset > model.log_end {
                    prop_assert!(
                        matches!(got, Err(StorageError::OffsetOutOfRange { .. })),
                        "delete {}",
                        offset
                    );
                } else {
                    model.log_start = model.log_start.max(offset);
                    prop_assert_eq!(
                        got.map_err(|e| TestCaseError::fail(e.to_string()))?,
                        model.log_start
                    );
                }
            }
            Op::Reopen => {
                drop(log);
                log = Log::open(dir.path(), config(direct), now)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Op::Crash => {
                std::mem::forget(log);
                log = Log::open(dir.path(), config(direct), now)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
        check(&log, &model, (step as u16).wrapping_mul(7919))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn log_agrees_with_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops, false)?;
    }

    #[test]
    fn log_with_direct_writes_agrees_with_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops, true)?;
    }
}

//! The partition log of strom.
//!
//! A partition is a directory of segments. Each segment is a `.log` file holding RecordBatch v2
//! bytes exactly as the producer sent them (with base offset, leader epoch and, where configured,
//! LogAppendTime patched in place), a sparse `.index` (relative offset -> file position) and a
//! sparse `.timeindex` (max timestamp so far -> relative offset). Files are named by their base
//! offset, zero-padded to 20 digits. This crate knows nothing of the network or Kafka APIs: it
//! only knows the RecordBatch layout, which `strom-codec` defines.
//!
//! Layers, each using only those below it:
//! - `segment_set`: the ordered segments of one partition (over `segment`, `index`,
//!   `direct`);
//! - `local_log`: offsets, appends, reads, retention, truncation, recovery;
//! - [`log`]: [`Log`], the entry point: producer state ([`producer`]) and leader epochs
//!   ([`epoch`]) on top, and compaction through the [`cleaner`]'s narrow interface (the
//!   cleaner never imports `log`).
//!
//! No type here locks internally; the broker holds each partition's `Log` in a `Mutex`.

pub mod batch;
pub mod cleaner;
mod codec;
mod config;
mod direct;
pub mod epoch;
mod error;
mod index;
mod local_log;
pub mod log;
pub mod producer;
mod record;
mod segment;
mod segment_set;
mod slice;
pub mod testutil;

pub use batch::{BATCH_HEADER_SIZE, BatchHeader};
pub use cleaner::{CleanStats, CleanTask, CleanerConfig};
pub use epoch::EpochCache;
pub use error::StorageError;
pub use log::{AppendInfo, FileSlice, Log, LogConfig, LogSlice, ReadInfo};
pub use producer::{AbortedTxn, ControlType, ProducerEntry, ProducerState};

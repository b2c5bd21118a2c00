//! The one error type of the storage crate. Handlers map it to Kafka error codes.

/// Everything that can go wrong in the partition log.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A disk operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes that do not form a valid batch (bad CRC, bad length, truncated): CORRUPT_MESSAGE.
    #[error("corrupt record: {0}")]
    CorruptRecord(String),
    /// A well-formed batch whose contents break the rules (counts, codec): INVALID_RECORD.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A batch larger than max.message.bytes: MESSAGE_TOO_LARGE.
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: u32 },
    /// A batch with a magic other than 2: UNSUPPORTED_FOR_MESSAGE_FORMAT.
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// An offset outside [log start, log end]: OFFSET_OUT_OF_RANGE.
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    /// A producer's batch whose sequence does not follow its last one: OUT_OF_ORDER_SEQUENCE_NUMBER.
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    /// A producer writing with an epoch older than the partition has seen: INVALID_PRODUCER_EPOCH.
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    /// A write that breaks the producer's transaction state: INVALID_TXN_STATE.
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    /// A marker from an older transaction coordinator: TRANSACTION_COORDINATOR_FENCED.
    #[error("transaction coordinator fenced: {0}")]
    CoordinatorFenced(String),
}

//! The Kafka wire protocol as strom speaks it.
//!
//! This crate is sans-IO: it turns bytes into requests and responses into bytes, and knows
//! nothing of sockets. Message types come from the `kafka-protocol` crate (generated from the
//! Kafka JSON message specs); every other strom crate reaches them only through this one, so the
//! choice of generator stays a local decision.
//!
//! - [`frame`]: length-prefixed frames with a size limit.
//! - [`request`] / [`response`]: headers and bodies on the broker side and the client side.
//! - [`compression`]: the record batch codecs (gzip, snappy, lz4, zstd).
//! - [`records`]: building and reading record batches with those codecs (clients and tools).

pub mod alloc;
pub mod compression;
pub mod error_code;
pub mod fetch_frame;
pub mod frame;
pub mod records;
pub mod request;
pub mod response;

pub use kafka_protocol::messages;
pub use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
pub use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes, VersionRange};

pub use fetch_frame::frame_fetch_response;
pub use frame::FrameDecoder;
pub use request::{DecodedRequest, decode_request, encode_request};
pub use response::{decode_response, encode_response};

/// Errors of the codec. A connection that produces one of these is closed.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { size: usize, max: usize },
    #[error("negative frame size {0}")]
    NegativeFrameSize(i32),
    #[error("frame too short for a request header ({0} bytes)")]
    ShortFrame(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("cannot decode {api:?} v{version}: {reason}")]
    Decode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode {api:?} v{version}: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("compression: {0}")]
    Compression(String),
    #[error("record batch: {0}")]
    Records(String),
}

/// Makes a protocol string from a Rust string.
pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

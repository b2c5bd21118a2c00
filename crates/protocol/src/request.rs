//! Request headers and bodies.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::ProtocolError;

/// A request as the broker sees it after decoding a frame.
#[derive(Debug)]
pub struct DecodedRequest {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// What can be read of a frame before its body: enough to answer or to log a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Reads api key, version and correlation id, which sit at fixed places in every header version.
pub fn peek_header(frame: &[u8]) -> Result<HeaderPrefix, ProtocolError> {
    if frame.len() < 8 {
        return Err(ProtocolError::ShortFrame(frame.len()));
    }
    Ok(HeaderPrefix {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// Decodes the header of a request frame and leaves `frame` at the start of the body.
pub fn decode_header(frame: &mut Bytes) -> Result<(ApiKey, RequestHeader), ProtocolError> {
    let prefix = peek_header(frame)?;
    let api_key = ApiKey::try_from(prefix.api_key)
        .map_err(|_| ProtocolError::UnknownApiKey(prefix.api_key))?;
    let header_version = api_key.request_header_version(prefix.api_version);
    let header =
        RequestHeader::decode(frame, header_version).map_err(|e| ProtocolError::Decode {
            api: api_key,
            version: prefix.api_version,
            reason: format!("request header: {e}"),
        })?;
    Ok((api_key, header))
}

/// Decodes a whole request frame (without its size prefix). The version must already be known
/// to be one the generated codec understands.
pub fn decode_request(mut frame: Bytes) -> Result<DecodedRequest, ProtocolError> {
    let (api_key, header) = decode_header(&mut frame)?;
    let version = header.request_api_version;
    let body = decode_body(api_key, version, &mut frame)?;
    Ok(DecodedRequest {
        api_key,
        api_version: version,
        header,
        body,
    })
}

/// Decodes a request body of a known api key and version.
pub fn decode_body(
    api_key: ApiKey,
    version: i16,
    body: &mut Bytes,
) -> Result<RequestKind, ProtocolError> {
    let valid = api_key.valid_versions();
    if version < valid.min || version > valid.max {
        return Err(ProtocolError::Decode {
            api: api_key,
            version,
            reason: "version outside the codec's range".into(),
        });
    }
    let decoded =
        RequestKind::decode(api_key, body, version).map_err(|e| ProtocolError::Decode {
            api: api_key,
            version,
            reason: e.to_string(),
        })?;
    // Bytes after the body are ignored, as Kafka does: some clients leave padding there
    // (librdkafka's Metadata v9+ request for all topics carries three extra bytes).
    Ok(decoded)
}

/// Encodes a request (client side) into a frame with its size prefix.
pub fn encode_request(
    header: &RequestHeader,
    body: &RequestKind,
) -> Result<BytesMut, ProtocolError> {
    let api_key = ApiKey::try_from(header.request_api_key)
        .map_err(|_| ProtocolError::UnknownApiKey(header.request_api_key))?;
    let version = header.request_api_version;
    let enc_err = |e: anyhow::Error| ProtocolError::Encode {
        api: api_key,
        version,
        reason: e.to_string(),
    };
    let mut buf = BytesMut::with_capacity(256);
    buf.extend_from_slice(&[0, 0, 0, 0]);
    header
        .encode(&mut buf, api_key.request_header_version(version))
        .map_err(enc_err)?;
    body.encode(&mut buf, version).map_err(enc_err)?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf)
}

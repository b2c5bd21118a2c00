//! Response headers and bodies.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::ProtocolError;

/// Encodes a response into a frame with its size prefix. The header version follows the
/// request's api key and version (ApiVersions always answers with header v0).
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<BytesMut, ProtocolError> {
    let enc_err = |e: anyhow::Error| ProtocolError::Encode {
        api: api_key,
        version,
        reason: e.to_string(),
    };
    let mut buf = BytesMut::with_capacity(128);
    buf.extend_from_slice(&[0, 0, 0, 0]);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(enc_err)?;
    body.encode(&mut buf, version).map_err(enc_err)?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf)
}

/// Decodes a response frame (client side, without its size prefix) for a request of the given
/// api key and version; returns the correlation id and the body.
pub fn decode_response(
    api_key: ApiKey,
    version: i16,
    mut frame: Bytes,
) -> Result<(i32, ResponseKind), ProtocolError> {
    let dec_err = |e: anyhow::Error| ProtocolError::Decode {
        api: api_key,
        version,
        reason: e.to_string(),
    };
    let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
        .map_err(dec_err)?;
    let body = ResponseKind::decode(api_key, &mut frame, version).map_err(dec_err)?;
    Ok((header.correlation_id, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{decode_request, encode_request};
    use kafka_protocol::messages::{
        ApiVersionsRequest, ApiVersionsResponse, RequestHeader, RequestKind,
    };

    #[test]
    fn request_and_response_round_trip() {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::ApiVersions as i16)
            .with_request_api_version(3)
            .with_correlation_id(7)
            .with_client_id(Some(crate::str_bytes("t")));
        let body = RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(crate::str_bytes("x"))
                .with_client_software_version(crate::str_bytes("1")),
        );
        let mut frame = encode_request(&header, &body).unwrap();
        let frame = frame.split_off(4).freeze();
        let req = decode_request(frame).unwrap();
        assert_eq!(req.api_key, ApiKey::ApiVersions);
        assert_eq!(req.header.correlation_id, 7);

        let resp = ResponseKind::ApiVersions(ApiVersionsResponse::default().with_error_code(35));
        let mut out = encode_response(ApiKey::ApiVersions, 3, 7, &resp).unwrap();
        let out = out.split_off(4).freeze();
        let (cid, body) = decode_response(ApiKey::ApiVersions, 3, out).unwrap();
        assert_eq!(cid, 7);
        match body {
            ResponseKind::ApiVersions(r) => assert_eq!(r.error_code, 35),
            other => panic!("unexpected {other:?}"),
        }
    }
}

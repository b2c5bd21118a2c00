//! A scripted fake peer for the client's unit tests: reads request frames and answers
//! ApiVersions. It tests the client's connection code only, never broker behaviour.

use strom_protocol::messages::api_versions_response::ApiVersion;
use strom_protocol::messages::{ApiVersionsResponse, ResponseKind};
use strom_protocol::{ApiKey, encode_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one request frame and returns (api key, version, correlation id).
pub async fn read_request(s: &mut TcpStream) -> (ApiKey, i16, i32) {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut frame).await.unwrap();
    let req = strom_protocol::decode_request(frame.into()).unwrap();
    (req.api_key, req.api_version, req.header.correlation_id)
}

/// Reads the client's ApiVersions request and answers that only Metadata v0..=`metadata_max`
/// is served; returns the request's version.
pub async fn answer_api_versions(s: &mut TcpStream, metadata_max: i16) -> i16 {
    let (api, version, cid) = read_request(s).await;
    assert_eq!(api, ApiKey::ApiVersions);
    let mut metadata = ApiVersion::default();
    metadata.api_key = ApiKey::Metadata as i16;
    metadata.min_version = 0;
    metadata.max_version = metadata_max;
    let body =
        ResponseKind::ApiVersions(ApiVersionsResponse::default().with_api_keys(vec![metadata]));
    let out = encode_response(ApiKey::ApiVersions, version, cid, &body).unwrap();
    s.write_all(&out).await.unwrap();
    version
}

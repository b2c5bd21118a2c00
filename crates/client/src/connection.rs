//! One TCP connection to one broker: framing, correlation ids, timeouts and the API versions
//! negotiated with ApiVersions when the connection opens.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use strom_protocol::messages::{
    ApiVersionsRequest, RequestHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use strom_protocol::{
    ApiKey, FrameDecoder, ProtocolError, RequestKind, ResponseKind, decode_response,
    encode_request, error_code, str_bytes,
};

use crate::auth::{ClientSecurity, ClientStream, SaslLogin, ScramClient};
use crate::error::ClientError;

/// Settings shared by every connection of a client.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Sent in every request header; brokers log it and quotas may key on it.
    pub client_id: String,
    pub connect_timeout: Duration,
    /// How long a request may take, not counting the wait a fetch asks the broker for.
    pub request_timeout: Duration,
    /// The largest response frame accepted.
    pub max_response_bytes: usize,
    /// TLS and SASL settings (none: plaintext).
    pub security: ClientSecurity,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            client_id: "strom-cli".to_string(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_response_bytes: 256 * 1024 * 1024,
            security: ClientSecurity::default(),
        }
    }
}

/// The version range a broker advertised for one API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerApiRange {
    pub min: i16,
    pub max: i16,
}

/// A connection to one broker. Requests go one at a time (`&mut self`), so responses arrive in
/// order; the correlation id of each response is still checked.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    stream: ClientStream,
    read_buf: BytesMut,
    frames: FrameDecoder,
    config: ConnectionConfig,
    next_correlation_id: i32,
    versions: HashMap<i16, BrokerApiRange>,
    /// Set when a request failed half way (i/o error, timeout, undecodable frame): the stream
    /// may be out of step and must not be used again.
    broken: bool,
}

/// The pieces of an open, idle connection.
pub(crate) struct ConnectionParts {
    pub addr: String,
    pub stream: ClientStream,
    pub read_buf: BytesMut,
    pub config: ConnectionConfig,
    pub next_correlation_id: i32,
    pub versions: HashMap<i16, BrokerApiRange>,
}

/// Picks the version to use for an API: the lower of the client's wish and the broker's maximum,
/// provided the broker and the codec both accept it.
pub fn pick_version(
    api: ApiKey,
    client_max: i16,
    broker: Option<BrokerApiRange>,
) -> Result<i16, ClientError> {
    let codec = api.valid_versions();
    let client_max = client_max.min(codec.max);
    let unsupported = |b: Option<BrokerApiRange>| ClientError::UnsupportedVersion {
        api: format!("{api:?}"),
        broker_min: b.map_or(-1, |b| b.min),
        broker_max: b.map_or(-1, |b| b.max),
        client_min: codec.min,
        client_max,
    };
    let Some(range) = broker else {
        return Err(unsupported(None));
    };
    let version = client_max.min(range.max);
    if version < range.min || version < codec.min {
        return Err(unsupported(Some(range)));
    }
    Ok(version)
}

impl Connection {
    /// Opens a connection to `addr` (`host:port`) and negotiates API versions.
    pub async fn connect(addr: &str, config: ConnectionConfig) -> Result<Connection, ClientError> {
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout {
                what: format!("connecting to {addr}"),
                timeout_ms: config.connect_timeout.as_millis() as u64,
            })?
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        stream.set_nodelay(true)?;
        let stream = config.security.wrap(stream, addr).await?;
        let login = config.security.sasl.clone();
        let mut conn = Connection {
            addr: addr.to_string(),
            stream,
            read_buf: BytesMut::with_capacity(64 * 1024),
            frames: FrameDecoder::new(config.max_response_bytes),
            config,
            next_correlation_id: 0,
            versions: HashMap::new(),
            broken: false,
        };
        conn.negotiate_versions().await?;
        if let Some(login) = login {
            conn.sasl_login(&login).await?;
        }
        Ok(conn)
    }

    /// SaslHandshake, then the mechanism's SaslAuthenticate round trips.
    async fn sasl_login(&mut self, login: &SaslLogin) -> Result<(), ClientError> {
        let version = self.version(ApiKey::SaslHandshake, 1)?;
        let response = self
            .send(
                ApiKey::SaslHandshake,
                version,
                RequestKind::SaslHandshake(
                    SaslHandshakeRequest::default()
                        .with_mechanism(str_bytes(login.mechanism.clone())),
                ),
            )
            .await?;
        let ResponseKind::SaslHandshake(r) = response else {
            return Err(ClientError::UnexpectedResponse("SaslHandshake".into()));
        };
        crate::error::check(
            r.error_code,
            &format!("SASL mechanism {}", login.mechanism),
            None,
        )?;
        let auth_version = self.version(ApiKey::SaslAuthenticate, 2)?;
        let round = async |conn: &mut Connection, bytes: Vec<u8>| -> Result<Vec<u8>, ClientError> {
            let response = conn
                .send(
                    ApiKey::SaslAuthenticate,
                    auth_version,
                    RequestKind::SaslAuthenticate(
                        SaslAuthenticateRequest::default().with_auth_bytes(bytes.into()),
                    ),
                )
                .await?;
            let ResponseKind::SaslAuthenticate(r) = response else {
                return Err(ClientError::UnexpectedResponse("SaslAuthenticate".into()));
            };
            crate::error::check(
                r.error_code,
                &format!("SASL login of {}", login.username),
                r.error_message.as_deref(),
            )?;
            Ok(r.auth_bytes.to_vec())
        };
        if login.mechanism == "OAUTHBEARER" {
            let msg = format!("n,,\x01auth=Bearer {}\x01\x01", login.password);
            let challenge = round(self, msg.into_bytes()).await?;
            if !challenge.is_empty() {
                // The broker refused the token (RFC 7628 error challenge): acknowledge it; its
                // answer is the failure.
                round(self, vec![1]).await?;
                return Err(ClientError::InvalidArgument(format!(
                    "OAUTHBEARER token refused: {}",
                    String::from_utf8_lossy(&challenge)
                )));
            }
            return Ok(());
        }
        if login.mechanism == "PLAIN" {
            let msg = format!("\0{}\0{}", login.username, login.password);
            round(self, msg.into_bytes()).await?;
            return Ok(());
        }
        let mut scram = ScramClient::new(&login.mechanism, &login.username, &login.password);
        let server_first = round(self, scram.first_message()).await?;
        let client_final = scram.final_message(&server_first)?;
        let server_final = round(self, client_final).await?;
        scram.verify_server(&server_final)
    }

    /// ApiVersions v3, falling back to v0 when the broker refuses v3 (it then answers in v0
    /// with its ranges, as Kafka does).
    async fn negotiate_versions(&mut self) -> Result<(), ClientError> {
        let mut last_error = None;
        for version in [3i16, 0] {
            let body = RequestKind::ApiVersions(
                ApiVersionsRequest::default()
                    .with_client_software_name(str_bytes("strom"))
                    .with_client_software_version(str_bytes(env!("CARGO_PKG_VERSION"))),
            );
            let response = match self.send(ApiKey::ApiVersions, version, body).await {
                Ok(r) => r,
                Err(ClientError::Protocol(e)) if version == 3 && !self.broken => {
                    last_error = Some(ClientError::Protocol(e));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let ResponseKind::ApiVersions(r) = response else {
                return Err(ClientError::UnexpectedResponse(
                    "ApiVersions answered with another response type".into(),
                ));
            };
            if r.error_code == error_code::UNSUPPORTED_VERSION && version == 3 {
                last_error = Some(ClientError::kafka(r.error_code, "ApiVersions v3", None));
                continue;
            }
            crate::error::check(r.error_code, "ApiVersions", None)?;
            self.versions = r
                .api_keys
                .iter()
                .map(|k| {
                    (
                        k.api_key,
                        BrokerApiRange {
                            min: k.min_version,
                            max: k.max_version,
                        },
                    )
                })
                .collect();
            tracing::debug!(addr = %self.addr, apis = self.versions.len(), "negotiated api versions");
            return Ok(());
        }
        Err(last_error.unwrap_or_else(|| {
            ClientError::UnexpectedResponse("ApiVersions negotiation failed".into())
        }))
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// True once a failed request may have left the stream out of step.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The range the broker advertised for an API, if it advertised it.
    pub fn broker_range(&self, api: ApiKey) -> Option<BrokerApiRange> {
        self.versions.get(&(api as i16)).copied()
    }

    /// The version to use for `api` given the highest the caller wants.
    pub fn version(&self, api: ApiKey, client_max: i16) -> Result<i16, ClientError> {
        pick_version(api, client_max, self.broker_range(api))
    }

    /// Takes the connection apart for [`crate::PipelinedConnection`].
    pub(crate) fn into_parts(self) -> ConnectionParts {
        ConnectionParts {
            addr: self.addr,
            stream: self.stream,
            read_buf: self.read_buf,
            config: self.config,
            next_correlation_id: self.next_correlation_id,
            versions: self.versions,
        }
    }

    /// Sends a request and waits for its response, bounded by the request timeout.
    pub async fn send(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Result<ResponseKind, ClientError> {
        let timeout = self.config.request_timeout;
        self.send_with_timeout(api_key, version, body, timeout)
            .await
    }

    /// Sends a request and waits for its response, bounded by `timeout`.
    pub async fn send_with_timeout(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: RequestKind,
        timeout: Duration,
    ) -> Result<ResponseKind, ClientError> {
        if self.broken {
            return Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                format!(
                    "connection to {} was closed after an earlier error",
                    self.addr
                ),
            )));
        }
        let result =
            tokio::time::timeout(timeout, self.round_trip(api_key, version, &body, true)).await;
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                what: format!("{api_key:?} request to {}", self.addr),
                timeout_ms: timeout.as_millis() as u64,
            }),
        };
        match result {
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err(ClientError::UnexpectedResponse("no response".into())),
            Err(e) => {
                // A body that fails to encode never left; one that fails to decode was read
                // whole. Anything else may leave the stream out of step.
                let in_step = matches!(
                    e,
                    ClientError::Protocol(
                        ProtocolError::Decode { .. } | ProtocolError::Encode { .. }
                    )
                );
                self.broken |= !in_step;
                Err(e)
            }
        }
    }

    /// Sends a request the broker does not answer (Produce with acks=0).
    pub async fn send_without_response(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Result<(), ClientError> {
        let timeout = self.config.request_timeout;
        let result =
            tokio::time::timeout(timeout, self.round_trip(api_key, version, &body, false)).await;
        match result {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                self.broken = true;
                Err(e)
            }
            Err(_) => {
                self.broken = true;
                Err(ClientError::Timeout {
                    what: format!("{api_key:?} request to {}", self.addr),
                    timeout_ms: timeout.as_millis() as u64,
                })
            }
        }
    }

    async fn round_trip(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &RequestKind,
        expect_response: bool,
    ) -> Result<Option<ResponseKind>, ClientError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1) & i32::MAX;
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(str_bytes(self.config.client_id.clone())));
        let frame = encode_request(&header, body)?;
        self.stream.write_all(&frame).await?;
        if !expect_response {
            return Ok(None);
        }
        let frame = loop {
            if let Some(frame) = self.frames.decode(&mut self.read_buf)? {
                break frame;
            }
            if let Some(total) = self.frames.needed(&self.read_buf)? {
                self.read_buf
                    .reserve(total.saturating_sub(self.read_buf.len()));
            }
            let n = self.stream.read_buf(&mut self.read_buf).await?;
            if n == 0 {
                return Err(ClientError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} closed the connection", self.addr),
                )));
            }
        };
        let (response_correlation_id, response) = decode_response(api_key, version, frame)?;
        if response_correlation_id != correlation_id {
            return Err(ClientError::UnexpectedResponse(format!(
                "{api_key:?} response from {} has correlation id {response_correlation_id}, {correlation_id} expected",
                self.addr
            )));
        }
        Ok(Some(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_peer::{answer_api_versions, read_request};
    use strom_protocol::encode_response;
    use strom_protocol::messages::MetadataRequest;
    use tokio::net::TcpListener;

    /// A peer that answers ApiVersions, then answers the next request with a wrong
    /// correlation id: the connection must report it and refuse further use.
    #[tokio::test]
    async fn negotiates_versions_and_checks_correlation_ids() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let peer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            assert_eq!(answer_api_versions(&mut s, 9).await, 3);

            let (api, version, cid) = read_request(&mut s).await;
            assert_eq!((api, version), (ApiKey::Metadata, 9));
            let body = ResponseKind::Metadata(Default::default());
            let out = encode_response(ApiKey::Metadata, 9, cid + 5, &body).unwrap();
            s.write_all(&out).await.unwrap();
        });

        let mut conn = Connection::connect(&addr, ConnectionConfig::default())
            .await
            .unwrap();
        assert_eq!(
            conn.broker_range(ApiKey::Metadata),
            Some(BrokerApiRange { min: 0, max: 9 })
        );
        let version = conn.version(ApiKey::Metadata, 12).unwrap();
        assert_eq!(version, 9);
        assert!(conn.version(ApiKey::Produce, 9).is_err(), "not advertised");
        let err = conn
            .send(
                ApiKey::Metadata,
                version,
                RequestKind::Metadata(MetadataRequest::default()),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("correlation id"), "{err}");
        assert!(conn.is_broken());
        peer.await.unwrap();
    }

    #[tokio::test]
    async fn a_silent_broker_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let _peer = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let config = ConnectionConfig {
            request_timeout: Duration::from_millis(100),
            ..ConnectionConfig::default()
        };
        let err = Connection::connect(&addr, config).await.unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    }

    #[test]
    fn picks_the_lower_of_client_and_broker_max() {
        let r = |min, max| Some(BrokerApiRange { min, max });
        assert_eq!(pick_version(ApiKey::Metadata, 12, r(0, 13)).unwrap(), 12);
        assert_eq!(pick_version(ApiKey::Metadata, 12, r(0, 9)).unwrap(), 9);
        assert_eq!(pick_version(ApiKey::Fetch, 12, r(4, 17)).unwrap(), 12);
        // The broker's floor is above what the client speaks.
        assert!(pick_version(ApiKey::Metadata, 12, r(13, 13)).is_err());
        // The broker's max is below the codec's floor (Produce starts at v3 in the codec).
        assert!(pick_version(ApiKey::Produce, 9, r(0, 2)).is_err());
        // Not advertised at all.
        let err = pick_version(ApiKey::DeleteRecords, 2, None).unwrap_err();
        assert!(err.to_string().contains("DeleteRecords"), "{err}");
    }
}

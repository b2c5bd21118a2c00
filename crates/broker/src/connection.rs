//! One client connection: frames in, requests handled one at a time in arrival order (as
//! Kafka does), responses out in the same order through a writer task, so that encoding and
//! writing overlap with handling the next request.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use strom_protocol::messages::{ApiVersionsResponse, RequestKind, ResponseKind};
use strom_protocol::request::{decode_body, decode_header, peek_header};
use strom_protocol::{ApiKey, FrameDecoder, encode_response, error_code};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::broker::Broker;
use crate::handlers::api_versions;
use crate::registry::{self, RequestContext};
use crate::security::Session;

/// Responses waiting to be written; bounds the memory a slow reader can pin.
const RESPONSE_QUEUE: usize = 16;

/// Serves one connection (plain TCP or TLS) until the peer closes it, a frame is bad, an
/// authentication fails or the broker shuts down.
pub async fn serve<S>(
    broker: Arc<Broker>,
    stream: S,
    session: Arc<Session>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let peer = session.peer;
    let max_frame = broker.config.get_i64("socket.request.max.bytes").max(1) as usize;
    // Until a SASL client has authenticated, only small frames are read.
    const MAX_UNAUTHENTICATED_FRAME: usize = 512 * 1024;
    let decoder = FrameDecoder::new(max_frame);
    let pre_auth_decoder = FrameDecoder::new(max_frame.min(MAX_UNAUTHENTICATED_FRAME));
    let idle_timeout = std::time::Duration::from_millis(
        broker.config.get_i64("connections.max.idle.ms").max(1) as u64,
    );
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<BytesMut>(RESPONSE_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(buf) = rx.recv().await {
            if let Err(e) = wr.write_all(&buf).await {
                tracing::debug!(%peer, error = %e, "write failed; closing connection");
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'conn: loop {
        loop {
            let decoder = if session.authenticated() {
                &decoder
            } else {
                &pre_auth_decoder
            };
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "closing connection: bad frame");
                    break 'conn;
                }
            };
            let (outcome, throttle) = match handle_frame(&broker, &session, frame).await {
                Ok((out, throttle)) => (Ok(out), throttle),
                Err(e) => (Err(e), std::time::Duration::ZERO),
            };
            match outcome {
                Ok(Some(out)) => {
                    if session.auth_failed() {
                        // Answer after a delay, then close: a client guessing passwords is
                        // slowed down, and every failure looks the same.
                        let delay_ms = broker
                            .config
                            .get_i64("connection.failed.authentication.delay.ms")
                            .max(0) as u64;
                        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
                        let _ = tx.send(out).await;
                        tracing::info!(%peer, listener = %session.listener.name, "authentication failed; closing connection");
                        break 'conn;
                    }
                    if tx.send(out).await.is_err() {
                        break 'conn;
                    }
                }
                Ok(None) => {}
                Err(reason) => {
                    tracing::warn!(%peer, %reason, "closing connection");
                    break 'conn;
                }
            }
            if !throttle.is_zero() {
                // Over its quota: the response says how long, and nothing more is read for
                // that long.
                tokio::select! {
                    _ = tokio::time::sleep(throttle) => {}
                    _ = shutdown.changed() => break 'conn,
                }
            }
        }
        if let Ok(Some(total)) = decoder.needed(&buf) {
            buf.reserve(total.saturating_sub(buf.len()));
        } else if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            n = rd.read_buf(&mut buf) => match n {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "read failed");
                    break;
                }
            },
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep(idle_timeout) => {
                tracing::debug!(%peer, "closing idle connection (connections.max.idle.ms)");
                break;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Handles one frame; `Ok(None)` means the request wants no response (Produce with acks=0).
async fn handle_frame(
    broker: &Arc<Broker>,
    session: &Arc<Session>,
    frame: bytes::Bytes,
) -> Result<(Option<BytesMut>, std::time::Duration), String> {
    let frame_len = frame.len();
    let mut throttle = std::time::Duration::ZERO;
    let out = handle_request(broker, session, frame, frame_len, &mut throttle).await?;
    Ok((out, throttle))
}

async fn handle_request(
    broker: &Arc<Broker>,
    session: &Arc<Session>,
    mut frame: bytes::Bytes,
    frame_len: usize,
    throttle: &mut std::time::Duration,
) -> Result<Option<BytesMut>, String> {
    let peer: SocketAddr = session.peer;
    let prefix = peek_header(&frame).map_err(|e| e.to_string())?;
    if session.expired()
        && ![
            ApiKey::SaslHandshake as i16,
            ApiKey::SaslAuthenticate as i16,
        ]
        .contains(&prefix.api_key)
    {
        return Err(format!(
            "SASL session expired (connections.max.reauth.ms) on listener {}",
            session.listener.name
        ));
    }
    if !session.authenticated()
        && ![
            ApiKey::ApiVersions as i16,
            ApiKey::SaslHandshake as i16,
            ApiKey::SaslAuthenticate as i16,
        ]
        .contains(&prefix.api_key)
    {
        return Err(format!(
            "API key {} before SASL authentication on listener {}",
            prefix.api_key, session.listener.name
        ));
    }
    let Some(spec) = registry::spec(prefix.api_key) else {
        return Err(format!(
            "unsupported API key {} (correlation id {})",
            prefix.api_key, prefix.correlation_id
        ));
    };
    if !registry::servable(spec, prefix.api_version) {
        if spec.key == ApiKey::ApiVersions {
            // A client newer than strom: answer in v0 with the versions strom has, so the client
            // can retry with one of them.
            let body = ResponseKind::ApiVersions(
                ApiVersionsResponse::default()
                    .with_error_code(error_code::UNSUPPORTED_VERSION)
                    .with_api_keys(api_versions::api_list()),
            );
            return encode_response(ApiKey::ApiVersions, 0, prefix.correlation_id, &body)
                .map(Some)
                .map_err(|e| e.to_string());
        }
        return Err(format!(
            "{:?} v{} is not supported (strom serves v{}-v{})",
            spec.key,
            prefix.api_version,
            spec.min.max(spec.key.valid_versions().min),
            spec.max
        ));
    }
    let whole = frame.clone();
    let undecodable = |e: strom_protocol::ProtocolError| {
        tracing::debug!(%peer, frame = %hex_prefix(&whole), "undecodable request");
        e.to_string()
    };
    let (api_key, header) = decode_header(&mut frame).map_err(undecodable)?;
    let version = header.request_api_version;
    let body = decode_body(api_key, version, &mut frame).map_err(undecodable)?;
    let no_response = matches!(&body, RequestKind::Produce(p) if p.acks == 0);
    let correlation_id = header.correlation_id;
    let ctx = RequestContext {
        header,
        api_version: version,
        peer,
        session: session.clone(),
    };
    let mut response = match crate::security::gate::gate(broker, &ctx, &body) {
        Some(denied) => denied,
        None => registry::dispatch(broker, &ctx, body)
            .await
            .ok_or_else(|| format!("no handler for {api_key:?}"))?,
    };
    *throttle = apply_quotas(broker, &ctx, frame_len, &mut response);
    if no_response {
        return Ok(None);
    }
    encode_response(api_key, version, correlation_id, &response)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Records produced and fetched bytes against the client's quotas; sets `throttle_time_ms`
/// and returns how long the connection waits.
fn apply_quotas(
    broker: &Broker,
    ctx: &RequestContext,
    request_bytes: usize,
    response: &mut ResponseKind,
) -> std::time::Duration {
    use crate::quota::{CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE};
    let image = broker.image();
    if image.client_quotas.is_empty() {
        return std::time::Duration::ZERO;
    }
    let client_id = ctx
        .header
        .client_id
        .as_ref()
        .map(|c| c.as_str())
        .unwrap_or("");
    let principal = ctx.session.principal();
    let now = crate::now_ms();
    let throttle = match response {
        ResponseKind::Produce(_) => broker.quotas.record(
            &image,
            PRODUCER_BYTE_RATE,
            &principal,
            client_id,
            request_bytes,
            now,
        ),
        ResponseKind::Fetch(r) => {
            let bytes: usize = r
                .responses
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.records.as_ref().map_or(0, |b| b.len()))
                .sum();
            broker.quotas.record(
                &image,
                CONSUMER_BYTE_RATE,
                &principal,
                client_id,
                bytes,
                now,
            )
        }
        _ => std::time::Duration::ZERO,
    };
    let ms = throttle.as_millis().min(i32::MAX as u128) as i32;
    match response {
        ResponseKind::Produce(r) if ctx.api_version >= 1 => r.throttle_time_ms = ms,
        ResponseKind::Fetch(r) => r.throttle_time_ms = ms,
        _ => {}
    }
    throttle
}

/// The first bytes of a frame in hex, for logs about frames that do not decode.
fn hex_prefix(frame: &[u8]) -> String {
    frame.iter().take(256).map(|b| format!("{b:02x}")).collect()
}

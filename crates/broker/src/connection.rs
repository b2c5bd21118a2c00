//! One client connection: frames in, requests handled one at a time in arrival order (as
//! Kafka does), responses out in the same order through a writer task, so that encoding and
//! writing overlap with handling the next request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use strom_protocol::messages::{ApiVersionsResponse, RequestKind, ResponseKind};
use strom_protocol::request::{decode_body, decode_header, peek_header};
use strom_protocol::{ApiKey, FrameDecoder, encode_response, error_code};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::broker::Broker;
use crate::handlers::api_versions;
use crate::metrics::{RemoteTime, RequestTiming};
use crate::registry::{self, RequestContext};

/// Responses waiting to be written; bounds the memory a slow reader can pin.
const RESPONSE_QUEUE: usize = 16;

pub async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let max_frame = broker.config.get_i64("socket.request.max.bytes").max(1) as usize;
    let decoder = FrameDecoder::new(max_frame);
    let _open = broker
        .metrics
        .connection_opened(crate::broker::listener_name(broker.config.get("listeners")));
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<(BytesMut, Option<RequestTiming>)>(RESPONSE_QUEUE);
    let metrics = broker.metrics.clone();
    let writer = tokio::spawn(async move {
        while let Some((buf, timing)) = rx.recv().await {
            let dequeued = Instant::now();
            if let Err(e) = wr.write_all(&buf).await {
                tracing::debug!(%peer, error = %e, "write failed; closing connection");
                break;
            }
            if let Some(t) = timing {
                metrics.request_done(&t, dequeued, Instant::now());
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // When the bytes now in `buf` arrived (at the latest), for the queue time of requests.
    let mut received = Instant::now();
    'conn: loop {
        loop {
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "closing connection: bad frame");
                    break 'conn;
                }
            };
            match handle_frame(&broker, peer, frame, received).await {
                Ok((Some(out), timing)) => {
                    if tx.send((out, timing)).await.is_err() {
                        break 'conn;
                    }
                }
                Ok((None, timing)) => {
                    if let Some(t) = timing {
                        broker.metrics.request_done(&t, t.completed, t.completed);
                    }
                }
                Err(reason) => {
                    tracing::warn!(%peer, %reason, "closing connection");
                    break 'conn;
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
                Ok(_) => received = Instant::now(),
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "read failed");
                    break;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// What handling a frame produced: the encoded response, if the request wants one (Produce
/// with acks=0 does not), and the request's timing for the metrics.
type Handled = (Option<BytesMut>, Option<RequestTiming>);

/// Handles one frame that arrived at `received`.
async fn handle_frame(
    broker: &Arc<Broker>,
    peer: SocketAddr,
    mut frame: bytes::Bytes,
    received: Instant,
) -> Result<Handled, String> {
    let started = Instant::now();
    let prefix = peek_header(&frame).map_err(|e| e.to_string())?;
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
                .map(|out| (Some(out), None))
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
        remote: RemoteTime::default(),
    };
    broker.metrics.request_received(prefix.api_key);
    let response = registry::dispatch(broker, &ctx, body)
        .await
        .ok_or_else(|| format!("no handler for {api_key:?}"))?;
    broker.metrics.response_errors(prefix.api_key, &response);
    let out = if no_response {
        None
    } else {
        Some(
            encode_response(api_key, version, correlation_id, &response)
                .map_err(|e| e.to_string())?,
        )
    };
    let timing = RequestTiming {
        api_key: prefix.api_key,
        received,
        started,
        completed: Instant::now(),
        remote: ctx.remote.get(),
    };
    Ok((out, Some(timing)))
}

/// The first bytes of a frame in hex, for logs about frames that do not decode.
fn hex_prefix(frame: &[u8]) -> String {
    frame.iter().take(256).map(|b| format!("{b:02x}")).collect()
}

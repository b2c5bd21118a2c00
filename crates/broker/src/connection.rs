//! One client connection: frames in, requests handled one at a time in arrival order (as
//! Kafka does), responses out in the same order through a writer task, so that encoding and
//! writing overlap with handling the next request.
//!
//! A Produce that waits for an fsync (flush.messages) hands the writer a pending response and
//! lets the next request be read and appended meanwhile, so that one fsync covers the appends
//! of several requests; responses still go out in request order.
//!
//! Fetch responses are written as encoded pieces around each partition's records, and the
//! records go from the segment files to the socket with sendfile (see [`crate::send`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use strom_protocol::messages::{ApiVersionsResponse, RequestKind, ResponseKind};
use strom_protocol::request::{decode_body, decode_header, peek_header};
use strom_protocol::{ApiKey, FrameDecoder, encode_response, error_code, frame_fetch_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::broker::Broker;
use crate::handlers::{api_versions, fetch, produce};
use crate::metrics::{RemoteTime, RequestTiming};
use crate::registry::{self, RequestContext};
use crate::send::{Outgoing, write_outgoing};

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
    let (tx, mut rx) = mpsc::channel::<(Outgoing, Option<RequestTiming>)>(RESPONSE_QUEUE);
    let metrics = broker.metrics.clone();
    let writer = tokio::spawn(async move {
        while let Some((out, timing)) = rx.recv().await {
            let dequeued = Instant::now();
            if let Err(e) = write_outgoing(&mut wr, out).await {
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

/// What handling a frame produced: the response to write, if the request wants one (Produce
/// with acks=0 does not), and the request's timing for the metrics.
type Handled = (Option<Outgoing>, Option<RequestTiming>);

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
                .map(|b| (Some(Outgoing::Frame(b)), None))
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
    let timing = |ctx: &RequestContext| {
        Some(RequestTiming {
            api_key: prefix.api_key,
            received,
            started,
            completed: Instant::now(),
            remote: ctx.remote.get(),
        })
    };
    let body = match body {
        RequestKind::Produce(req) => {
            let appended = produce::handle_appends(broker, &ctx, req).await;
            if appended.needs_flush() {
                // The response waits for an fsync; the next request need not. The fsync runs
                // now, and the writer sends the response in its turn once it is there.
                let b = broker.clone();
                let finished = tokio::spawn(async move {
                    let response = ResponseKind::Produce(appended.finish().await);
                    b.metrics.response_errors(prefix.api_key, &response);
                    encode_response(api_key, version, correlation_id, &response)
                });
                return Ok((
                    (!no_response).then_some(Outgoing::Later(finished)),
                    timing(&ctx),
                ));
            }
            let response = ResponseKind::Produce(appended.finish().await);
            broker.metrics.response_errors(prefix.api_key, &response);
            if no_response {
                return Ok((None, timing(&ctx)));
            }
            let out = encode_response(api_key, version, correlation_id, &response)
                .map_err(|e| e.to_string())?;
            return Ok((Some(Outgoing::Frame(out)), timing(&ctx)));
        }
        RequestKind::Fetch(req) => {
            let parts = fetch::handle_parts(broker, &ctx, req).await;
            broker
                .metrics
                .response_errors(prefix.api_key, &ResponseKind::Fetch(parts.response.clone()));
            let lens: Vec<u32> = parts.records.iter().map(|r| r.len).collect();
            let out = match frame_fetch_response(version, correlation_id, &parts.response, &lens) {
                Ok(pieces) => Outgoing::Fetch {
                    pieces,
                    records: parts.records,
                },
                Err(e) => {
                    // Not expected; the encoder covers what the framer does not.
                    tracing::debug!(%peer, error = %e, "fetch response not framed; copying");
                    Outgoing::Frame(
                        encode_response(
                            api_key,
                            version,
                            correlation_id,
                            &ResponseKind::Fetch(parts.into_response()),
                        )
                        .map_err(|e| e.to_string())?,
                    )
                }
            };
            return Ok((Some(out), timing(&ctx)));
        }
        other => other,
    };
    let response = registry::dispatch(broker, &ctx, body)
        .await
        .ok_or_else(|| format!("no handler for {api_key:?}"))?;
    broker.metrics.response_errors(prefix.api_key, &response);
    let out = if no_response {
        None
    } else {
        Some(Outgoing::Frame(
            encode_response(api_key, version, correlation_id, &response)
                .map_err(|e| e.to_string())?,
        ))
    };
    Ok((out, timing(&ctx)))
}

/// The first bytes of a frame in hex, for logs about frames that do not decode.
fn hex_prefix(frame: &[u8]) -> String {
    frame.iter().take(256).map(|b| format!("{b:02x}")).collect()
}

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
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::broker::Broker;
use crate::handlers::{Quota, api_versions, fetch, produce};
use crate::metrics::{RemoteTime, RequestTiming};
use crate::registry;
use crate::request::RequestContext;
use crate::security::Session;
use crate::send::{Outgoing, ResponseStream, write_outgoing};

/// Responses waiting to be written; bounds the memory a slow reader can pin.
const RESPONSE_QUEUE: usize = 16;

/// A client stream, split into the half requests are read from and the half responses are
/// written to. A plain TCP connection keeps the socket for sendfile; TLS copies.
pub trait ClientStream: Send + 'static {
    type Read: AsyncRead + Unpin + Send + 'static;
    type Write: ResponseStream + 'static;
    fn split(self) -> (Self::Read, Self::Write);
}

impl ClientStream for TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn split(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

impl ClientStream for tokio_rustls::server::TlsStream<TcpStream> {
    type Read = tokio::io::ReadHalf<Self>;
    type Write = tokio::io::WriteHalf<Self>;
    fn split(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

/// Serves one connection (plain TCP or TLS) until the peer closes it, a frame is bad, an
/// authentication fails, it stays idle past `connections.max.idle.ms` or the broker shuts
/// down.
pub async fn serve<S: ClientStream>(
    broker: Arc<Broker>,
    stream: S,
    session: Arc<Session>,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = session.peer;
    let max_frame = broker.config.settings().socket_request_max_bytes.max(1) as usize;
    // Until a SASL client has authenticated, only small frames are read.
    const MAX_UNAUTHENTICATED_FRAME: usize = 512 * 1024;
    let decoder = FrameDecoder::new(max_frame);
    let pre_auth_decoder = FrameDecoder::new(max_frame.min(MAX_UNAUTHENTICATED_FRAME));
    let idle_timeout = std::time::Duration::from_millis(
        broker.config.settings().connections_max_idle_ms.max(1) as u64,
    );
    let _open = broker.metrics.connection_opened(&session.listener.name);
    let (mut rd, mut wr) = stream.split();
    let (tx, mut rx) = mpsc::channel::<(Outgoing, Option<RequestTiming>)>(RESPONSE_QUEUE);
    let metrics = broker.metrics.clone();
    let fetch_memory = broker.fetch_memory.clone();
    let writer = tokio::spawn(async move {
        while let Some((out, timing)) = rx.recv().await {
            let dequeued = Instant::now();
            if let Err(e) = write_outgoing(&mut wr, out, &fetch_memory).await {
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
            let mut throttle = std::time::Duration::ZERO;
            match handle_frame(&broker, &session, frame, received, &mut throttle).await {
                Ok((Some(out), timing)) => {
                    if session.auth_failed() {
                        broker.metrics.authentication_failed(&session.listener.name);
                        // Answer after a delay, then close: a client guessing passwords is
                        // slowed down, and every failure looks the same.
                        let delay_ms = broker
                            .config
                            .settings()
                            .connection_failed_authentication_delay_ms
                            .max(0) as u64;
                        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
                        let _ = tx.send((out, timing)).await;
                        tracing::info!(%peer, listener = %session.listener.name, "authentication failed; closing connection");
                        break 'conn;
                    }
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
                Ok(_) => received = Instant::now(),
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

/// What handling a frame produced: the response to write, if the request wants one (Produce
/// with acks=0 does not), and the request's timing for the metrics.
type Handled = (Option<Outgoing>, Option<RequestTiming>);

/// Handles one frame that arrived at `received`; sets `throttle` when the client went over a
/// quota.
async fn handle_frame(
    broker: &Arc<Broker>,
    session: &Arc<Session>,
    mut frame: bytes::Bytes,
    received: Instant,
    throttle: &mut std::time::Duration,
) -> Result<Handled, String> {
    let started = Instant::now();
    let frame_len = frame.len();
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
        session: session.clone(),
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
    let admin = if broker.audit_admin {
        registry::admin_request(&body)
    } else {
        None
    };
    // Authorization of the request as a whole or coordinator routing may answer in the
    // handler's place; a refusal and an answer go the rest of the way alike. Produce and Fetch
    // finish on their own paths.
    let mut response = match registry::refuse(broker, &ctx, &body) {
        Some(refusal) => refusal,
        None => match body {
            RequestKind::Produce(req) => {
                let appended = produce::handle_appends(broker, &ctx, req).await;
                let quota_bytes = frame_len;
                if appended.needs_flush() {
                    // The response waits for an fsync; the next request need not. The fsync runs
                    // now, and the writer sends the response in its turn once it is there.
                    let b = broker.clone();
                    // Quotas are charged now (the fsync is not handling time), so that the
                    // connection waits out a throttle like any other; the response gets the field
                    // once it is there.
                    let handling = (!no_response).then(|| handling_time(&ctx, started));
                    let mut charged = ResponseKind::Produce(Default::default());
                    *throttle =
                        apply_quotas(broker, &ctx, quota_bytes, 0, handling, &mut charged).throttle;
                    let throttle_ms = match &charged {
                        ResponseKind::Produce(r) => r.throttle_time_ms,
                        _ => 0,
                    };
                    let finished = tokio::spawn(async move {
                        let mut response = ResponseKind::Produce(appended.finish().await);
                        b.metrics.response_errors(prefix.api_key, |f| {
                            crate::registry::error_codes(&response, f)
                        });
                        registry::set_throttle_time(&mut response, throttle_ms);
                        encode_response(api_key, version, correlation_id, &response)
                    });
                    return Ok((
                        (!no_response).then_some(Outgoing::Later(finished)),
                        timing(&ctx),
                    ));
                }
                let mut response = ResponseKind::Produce(appended.finish().await);
                broker.metrics.response_errors(prefix.api_key, |f| {
                    crate::registry::error_codes(&response, f)
                });
                // acks=0: the byte rate counts; request time is not charged (as Kafka does).
                let handling = (!no_response).then(|| handling_time(&ctx, started));
                *throttle =
                    apply_quotas(broker, &ctx, quota_bytes, 0, handling, &mut response).throttle;
                if no_response {
                    return Ok((None, timing(&ctx)));
                }
                let out = encode_response(api_key, version, correlation_id, &response)
                    .map_err(|e| e.to_string())?;
                return Ok((Some(Outgoing::Frame(out)), timing(&ctx)));
            }
            RequestKind::Fetch(mut req) => {
                if let Some(limit) = fetch_max_bytes_for_quota(broker, &ctx)
                    && (req.max_bytes <= 0 || req.max_bytes > limit)
                {
                    req.max_bytes = limit;
                }
                let mut parts = fetch::handle_parts(broker, &ctx, req).await;
                let fetched: usize = parts.records.iter().map(|r| r.len as usize).sum();
                let mut response = ResponseKind::Fetch(parts.response);
                broker.metrics.response_errors(prefix.api_key, |f| {
                    crate::registry::error_codes(&response, f)
                });
                let quota = apply_quotas(
                    broker,
                    &ctx,
                    frame_len,
                    fetched,
                    Some(handling_time(&ctx, started)),
                    &mut response,
                );
                *throttle = quota.throttle;
                let ResponseKind::Fetch(r) = response else {
                    unreachable!("a fetch response stays one");
                };
                parts.response = r;
                if quota.send_records {
                    parts.count_bytes_out();
                } else {
                    parts.records.clear();
                }
                let lens: Vec<u32> = parts.records.iter().map(|r| r.len).collect();
                let out = match frame_fetch_response(
                    version,
                    correlation_id,
                    &parts.response,
                    &lens,
                ) {
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
            other => registry::dispatch(broker, &ctx, other)
                .await
                .ok_or_else(|| format!("no handler for {api_key:?}"))?,
        },
    };
    broker.metrics.response_errors(prefix.api_key, |f| {
        crate::registry::error_codes(&response, f)
    });
    if let Some(admin) = admin {
        let principal = ctx.session.principal();
        let who = crate::security::audit::Requester {
            principal: &principal,
            host: ctx.peer.ip(),
            api_key: ctx.header.request_api_key,
        };
        crate::security::audit::log_admin(&who, admin, crate::registry::audit_results(&response));
    }
    *throttle = apply_quotas(
        broker,
        &ctx,
        frame_len,
        0,
        Some(handling_time(&ctx, started)),
        &mut response,
    )
    .throttle;
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

/// Records the request against the client's quotas (produced or fetched bytes, and the time
/// its handling took against `request_percentage`); sets `throttle_time_ms` to the longest wait
/// and returns it: the connection reads nothing more for that long. `fetched_bytes` are the
/// records of a Fetch response (written separately from the response body). A Fetch that is
/// throttled answers without records, as its bytes would take the client further over.
fn apply_quotas(
    broker: &Broker,
    ctx: &RequestContext,
    request_bytes: usize,
    fetched_bytes: usize,
    handling: Option<std::time::Duration>,
    response: &mut ResponseKind,
) -> QuotaOutcome {
    use crate::quota::{PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE};
    let mut outcome = QuotaOutcome {
        throttle: std::time::Duration::ZERO,
        send_records: true,
    };
    let image = broker.image();
    if image.client_quotas.is_empty() {
        return outcome;
    }
    let client_id = ctx.client_id();
    let principal = ctx.session.principal();
    let now = crate::now_ms();
    let quota = registry::quota(response);
    let exempt = handling.is_none() || quota == Quota::Exempt;
    let request_throttle = if exempt
        || broker
            .quotas
            .quota(&image, REQUEST_PERCENTAGE, &principal, client_id)
            .is_none()
    {
        std::time::Duration::ZERO
    } else {
        broker.quotas.record_request_time(
            &image,
            &principal,
            client_id,
            handling.unwrap_or_default(),
            now,
        )
    };
    if !request_throttle.is_zero() {
        broker.metrics.throttled("request", request_throttle);
    }
    let byte_throttle = match (quota, &mut *response) {
        (Quota::ProducedBytes, _) => {
            let t = broker.quotas.record(
                &image,
                PRODUCER_BYTE_RATE,
                &principal,
                client_id,
                request_bytes,
                now,
            );
            if !t.is_zero() {
                broker.metrics.throttled("produce", t);
            }
            t
        }
        (Quota::FetchedBytes, ResponseKind::Fetch(r)) => {
            let inline: usize = r
                .responses
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.records.as_ref().map_or(0, |b| b.len()))
                .sum();
            let decision = broker.quotas.record_fetch(
                &image,
                &principal,
                client_id,
                inline + fetched_bytes,
                request_throttle,
                now,
            );
            if !decision.send_records {
                r.responses.clear();
                outcome.send_records = false;
            }
            let t = decision.throttle.saturating_sub(request_throttle);
            if !t.is_zero() {
                broker.metrics.throttled("fetch", decision.throttle);
            }
            decision.throttle
        }
        (Quota::ControllerMutation, _) => {
            let t = broker
                .quotas
                .mutation_throttle(&image, &principal, client_id, now);
            if !t.is_zero() {
                broker.metrics.throttled("controller_mutation", t);
            }
            t
        }
        _ => std::time::Duration::ZERO,
    };
    outcome.throttle = request_throttle.max(byte_throttle);
    let ms = outcome.throttle.as_millis().min(i32::MAX as u128) as i32;
    registry::set_throttle_time(response, ms);
    outcome
}

/// Time a request spent being handled: from the start of handling to now, less what the
/// handler spent waiting on other work (a long-poll fetch, a rebalance), which holds no thread.
fn handling_time(ctx: &RequestContext, started: Instant) -> std::time::Duration {
    started.elapsed().saturating_sub(ctx.remote.get())
}

/// What the quotas decided about a response.
struct QuotaOutcome {
    /// How long the connection reads nothing more.
    throttle: std::time::Duration,
    /// False for a throttled Fetch: its records stay unsent.
    send_records: bool,
}

/// The largest Fetch response a client with a `consumer_byte_rate` quota is asked to take:
/// one second of its quota (the shortest window rates are measured over), so that a response
/// within it does not put an idle client over its quota.
fn fetch_max_bytes_for_quota(broker: &Broker, ctx: &RequestContext) -> Option<i32> {
    let image = broker.image();
    if image.client_quotas.is_empty() {
        return None;
    }
    let client_id = ctx
        .header
        .client_id
        .as_ref()
        .map(|c| c.as_str())
        .unwrap_or("");
    broker
        .quotas
        .quota(
            &image,
            crate::quota::CONSUMER_BYTE_RATE,
            &ctx.session.principal(),
            client_id,
        )
        .map(|q| q.clamp(1.0, i32::MAX as f64) as i32)
}

/// The first bytes of a frame in hex, for logs about frames that do not decode.
fn hex_prefix(frame: &[u8]) -> String {
    frame.iter().take(256).map(|b| format!("{b:02x}")).collect()
}

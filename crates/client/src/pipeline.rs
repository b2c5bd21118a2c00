//! A pipelined connection: several requests in flight on one broker connection.
//!
//! [`Connection`](crate::Connection) sends one request and waits for its answer. For throughput
//! (the bench tool, later a real producer) a client keeps several requests in flight, as Kafka's
//! `max.in.flight.requests.per.connection` does. [`PipelinedConnection`] splits the socket: a
//! writer task sends frames in the order they were queued, a reader task matches each response
//! to its request by correlation id and decodes it. [`PipelinedConnection::send`] returns once
//! the request is queued, with a future for the response.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::io::{ReadHalf, WriteHalf};

use crate::auth::ClientStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use strom_protocol::messages::{MetadataRequest, RequestHeader};
use strom_protocol::{
    ApiKey, FrameDecoder, RequestKind, ResponseKind, decode_response, encode_request, str_bytes,
};

use crate::connection::{BrokerApiRange, Connection, ConnectionConfig, pick_version};
use crate::error::ClientError;

/// Frames queued for the writer task before `send` waits.
const WRITE_QUEUE: usize = 64;

type Reply = Result<ResponseKind, ClientError>;

/// A request sent and not yet answered.
struct Waiter {
    api_key: ApiKey,
    version: i16,
    reply: oneshot::Sender<Reply>,
    /// Released when the response arrives (or the connection fails).
    _permit: Option<OwnedSemaphorePermit>,
}

#[derive(Default)]
struct Pending {
    waiting: HashMap<i32, Waiter>,
    /// Why the connection stopped, once it has.
    closed: Option<String>,
}

impl Pending {
    /// Marks the connection closed and fails every waiting request.
    fn close(&mut self, reason: String) {
        if self.closed.is_none() {
            self.closed = Some(reason.clone());
        }
        for (_, w) in self.waiting.drain() {
            let _ = w.reply.send(Err(closed_error(&reason)));
        }
    }
}

fn closed_error(reason: &str) -> ClientError {
    ClientError::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        reason.to_string(),
    ))
}

/// One broker connection with up to `max_in_flight` requests outstanding. Responses are
/// matched by correlation id. Cheap to share behind an `Arc`; `send` takes `&self`.
pub struct PipelinedConnection {
    addr: String,
    config: ConnectionConfig,
    versions: HashMap<i16, BrokerApiRange>,
    next_correlation_id: AtomicI32,
    frames: mpsc::Sender<BytesMut>,
    pending: Arc<Mutex<Pending>>,
    in_flight: Arc<Semaphore>,
    tasks: [JoinHandle<()>; 2],
}

impl std::fmt::Debug for PipelinedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelinedConnection")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for PipelinedConnection {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl PipelinedConnection {
    /// Opens a connection to `addr`, negotiates API versions, and allows `max_in_flight`
    /// requests awaiting a response at once (at least 1).
    pub async fn connect(
        addr: &str,
        config: ConnectionConfig,
        max_in_flight: usize,
    ) -> Result<PipelinedConnection, ClientError> {
        let conn = Connection::connect(addr, config).await?;
        Ok(PipelinedConnection::from_connection(conn, max_in_flight))
    }

    /// Turns an open (negotiated, idle) connection into a pipelined one. Must be called inside
    /// a tokio runtime: it spawns the reader and writer tasks.
    pub fn from_connection(conn: Connection, max_in_flight: usize) -> PipelinedConnection {
        let parts = conn.into_parts();
        let (rd, wr) = tokio::io::split(parts.stream);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let frames = FrameDecoder::new(parts.config.max_response_bytes);
        let reader = tokio::spawn(read_loop(
            rd,
            parts.read_buf,
            frames,
            Arc::clone(&pending),
            parts.addr.clone(),
        ));
        let writer = tokio::spawn(write_loop(wr, rx, Arc::clone(&pending), parts.addr.clone()));
        PipelinedConnection {
            addr: parts.addr,
            config: parts.config,
            versions: parts.versions,
            next_correlation_id: AtomicI32::new(parts.next_correlation_id),
            frames: tx,
            pending,
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            tasks: [reader, writer],
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// True once the connection failed; every later request fails at once.
    pub fn is_closed(&self) -> bool {
        self.pending
            .lock()
            .map(|p| p.closed.is_some())
            .unwrap_or(true)
    }

    /// The version to use for `api` given the highest the caller wants.
    pub fn version(&self, api: ApiKey, client_max: i16) -> Result<i16, ClientError> {
        pick_version(api, client_max, self.versions.get(&(api as i16)).copied())
    }

    fn encode(
        &self,
        api_key: ApiKey,
        version: i16,
        body: &RequestKind,
    ) -> Result<(i32, BytesMut), ClientError> {
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(str_bytes(self.config.client_id.clone())));
        Ok((correlation_id, encode_request(&header, body)?))
    }

    /// Queues a request and returns a future for its response. Waits first while
    /// `max_in_flight` requests are outstanding, and while the write queue is full. The
    /// response future fails after the request timeout, or when the connection fails.
    pub async fn send(
        &self,
        api_key: ApiKey,
        version: i16,
        body: &RequestKind,
    ) -> Result<impl Future<Output = Reply> + Send + 'static + use<>, ClientError> {
        let permit = Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .map_err(|_| closed_error("connection closed"))?;
        let (correlation_id, frame) = self.encode(api_key, version, body)?;
        let (reply, response) = oneshot::channel();
        {
            let mut pending = self
                .pending
                .lock()
                .map_err(|_| closed_error("connection state poisoned"))?;
            if let Some(reason) = &pending.closed {
                return Err(closed_error(reason));
            }
            pending.waiting.insert(
                correlation_id,
                Waiter {
                    api_key,
                    version,
                    reply,
                    _permit: Some(permit),
                },
            );
        }
        if self.frames.send(frame).await.is_err() {
            if let Ok(mut p) = self.pending.lock() {
                p.waiting.remove(&correlation_id);
            }
            return Err(closed_error(&format!("connection to {} closed", self.addr)));
        }
        let timeout = self.config.request_timeout;
        let what = format!("{api_key:?} request to {}", self.addr);
        let pending = Arc::clone(&self.pending);
        Ok(async move {
            match tokio::time::timeout(timeout, response).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(_)) => Err(closed_error("connection closed")),
                Err(_) => {
                    // The stream is out of step now: fail everything else on it too.
                    if let Ok(mut p) = pending.lock() {
                        p.close(format!("{what} timed out"));
                    }
                    Err(ClientError::Timeout {
                        what,
                        timeout_ms: timeout.as_millis() as u64,
                    })
                }
            }
        })
    }

    /// Sends a request and waits for its response.
    pub async fn request(
        &self,
        api_key: ApiKey,
        version: i16,
        body: &RequestKind,
    ) -> Result<ResponseKind, ClientError> {
        self.send(api_key, version, body).await?.await
    }

    /// Waits until the broker has handled every request queued before this call: sends a
    /// Metadata request for no topics and waits for its answer (a broker answers a connection's
    /// requests in order). Use it after requests that get no response (acks=0).
    pub async fn sync(&self) -> Result<(), ClientError> {
        let version = self.version(ApiKey::Metadata, crate::versions::METADATA)?;
        let mut req = MetadataRequest::default();
        req.topics = Some(Vec::new());
        self.request(ApiKey::Metadata, version, &RequestKind::Metadata(req))
            .await
            .map(|_| ())
    }

    /// Queues a request the broker does not answer (Produce with acks=0).
    pub async fn send_without_response(
        &self,
        api_key: ApiKey,
        version: i16,
        body: &RequestKind,
    ) -> Result<(), ClientError> {
        if let Some(reason) = self.pending.lock().ok().and_then(|p| p.closed.clone()) {
            return Err(closed_error(&reason));
        }
        let (_, frame) = self.encode(api_key, version, body)?;
        self.frames
            .send(frame)
            .await
            .map_err(|_| closed_error(&format!("connection to {} closed", self.addr)))
    }
}

async fn write_loop(
    mut wr: WriteHalf<ClientStream>,
    mut rx: mpsc::Receiver<BytesMut>,
    pending: Arc<Mutex<Pending>>,
    addr: String,
) {
    while let Some(frame) = rx.recv().await {
        if let Err(e) = wr.write_all(&frame).await {
            if let Ok(mut p) = pending.lock() {
                p.close(format!("writing to {addr}: {e}"));
            }
            return;
        }
    }
    let _ = wr.shutdown().await;
}

async fn read_loop(
    mut rd: ReadHalf<ClientStream>,
    mut buf: BytesMut,
    frames: FrameDecoder,
    pending: Arc<Mutex<Pending>>,
    addr: String,
) {
    let fail = |reason: String| {
        if let Ok(mut p) = pending.lock() {
            p.close(reason);
        }
    };
    loop {
        loop {
            let frame = match frames.decode(&mut buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return fail(format!("bad frame from {addr}: {e}")),
            };
            if frame.len() < 4 {
                return fail(format!("response frame from {addr} shorter than a header"));
            }
            let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
            let waiter = pending
                .lock()
                .ok()
                .and_then(|mut p| p.waiting.remove(&correlation_id));
            let Some(waiter) = waiter else {
                return fail(format!(
                    "response from {addr} with unknown correlation id {correlation_id}"
                ));
            };
            let reply = decode_response(waiter.api_key, waiter.version, frame)
                .map(|(_, body)| body)
                .map_err(ClientError::from);
            let _ = waiter.reply.send(reply);
        }
        match frames.needed(&buf) {
            Ok(Some(total)) => buf.reserve(total.saturating_sub(buf.len())),
            _ if buf.capacity() - buf.len() < 16 * 1024 => buf.reserve(256 * 1024),
            _ => {}
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => return fail(format!("{addr} closed the connection")),
            Ok(_) => {}
            Err(e) => return fail(format!("reading from {addr}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_peer::{answer_api_versions, read_request};
    use std::time::Duration;
    use strom_protocol::encode_response;
    use strom_protocol::messages::MetadataResponse;
    use tokio::net::TcpListener;

    /// Three requests go out before any answer comes back; the peer answers them in reverse
    /// order and each future still gets its own response.
    #[tokio::test]
    async fn several_requests_in_flight_are_matched_by_correlation_id() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let peer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            answer_api_versions(&mut s, 12).await;
            let mut cids = Vec::new();
            for _ in 0..3 {
                cids.push(read_request(&mut s).await.2);
            }
            for cid in cids.into_iter().rev() {
                let body =
                    ResponseKind::Metadata(MetadataResponse::default().with_throttle_time_ms(cid));
                let out = encode_response(ApiKey::Metadata, 12, cid, &body).unwrap();
                s.write_all(&out).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        let conn = PipelinedConnection::connect(&addr, ConnectionConfig::default(), 3)
            .await
            .unwrap();
        let version = conn.version(ApiKey::Metadata, 12).unwrap();
        let req = RequestKind::Metadata(MetadataRequest::default());
        let mut futures = Vec::new();
        for _ in 0..3 {
            futures.push(conn.send(ApiKey::Metadata, version, &req).await.unwrap());
        }
        let mut seen = Vec::new();
        for f in futures {
            let ResponseKind::Metadata(r) = f.await.unwrap() else {
                panic!("not metadata");
            };
            seen.push(r.throttle_time_ms);
        }
        // Correlation ids 1, 2, 3 (0 was ApiVersions), each answered to its own future.
        assert_eq!(seen, vec![1, 2, 3]);
        peer.await.unwrap();
        assert!(!conn.is_closed());
    }

    #[tokio::test]
    async fn a_closed_connection_fails_waiting_requests() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let peer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            answer_api_versions(&mut s, 12).await;
            read_request(&mut s).await;
            drop(s);
        });
        let conn = PipelinedConnection::connect(&addr, ConnectionConfig::default(), 2)
            .await
            .unwrap();
        let req = RequestKind::Metadata(MetadataRequest::default());
        let f = conn.send(ApiKey::Metadata, 12, &req).await.unwrap();
        assert!(f.await.is_err());
        peer.await.unwrap();
        assert!(conn.is_closed());
        assert!(conn.send(ApiKey::Metadata, 12, &req).await.is_err());
    }
}

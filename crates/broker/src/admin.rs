//! The admin listener (`admin.listener`): a small HTTP/1.1 server for operators and monitoring.
//!
//! - `GET /metrics`: every metric in the text exposition format (OpenMetrics 1.0, which
//!   Prometheus scrapes);
//! - `GET /health/live`: 200 while the process runs;
//! - `GET /health/ready`: 200 once the logs are recovered and the Kafka listener is bound, 503
//!   before (and while shutting down);
//! - `GET /v1/status`: version, uptime, broker id, listeners, partition counts (JSON);
//! - `GET /v1/partitions[?topic=NAME]`: per-partition offsets, size, segments and, for compacted
//!   topics, the dirty ratio and the log cleaner's last run (JSON);
//! - `GET /v1/log-level`, `PUT /v1/log-level` (body: a filter such as
//!   `info,strom_broker::group=debug`): read or change the log levels at run time.
//!
//! One request per connection (`Connection: close`), a bounded request size and a read timeout:
//! this is an operator's port, not a web server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::broker::Broker;
use crate::metrics::Metrics;

/// Largest request head plus body accepted.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Reading and changing the log filter at run time; the binary implements it over its tracing
/// subscriber's reload handle.
pub trait LogControl: Send + Sync {
    fn current(&self) -> String;
    fn set(&self, filter: &str) -> Result<(), String>;
}

/// What the admin listener serves from; exists before the broker does.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    ready: AtomicBool,
    broker: OnceLock<(Arc<Broker>, SocketAddr)>,
    log_control: Option<Arc<dyn LogControl>>,
}

impl AdminState {
    pub fn new(metrics: Arc<Metrics>, log_control: Option<Arc<dyn LogControl>>) -> Arc<Self> {
        Arc::new(AdminState {
            metrics,
            ready: AtomicBool::new(false),
            broker: OnceLock::new(),
            log_control,
        })
    }

    /// The broker recovered its logs and listens on `addr`: ready.
    pub fn set_ready(&self, broker: Arc<Broker>, addr: SocketAddr) {
        let _ = self.broker.set((broker, addr));
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Shutting down: no longer ready.
    pub fn set_not_ready(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// Parses `admin.listener`: `host:port` (an `http://` prefix is allowed); empty means off.
pub fn parse_admin_listener(value: &str) -> Result<Option<(String, u16)>, String> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let v = v.strip_prefix("http://").unwrap_or(v);
    let (host, port) = v
        .rsplit_once(':')
        .ok_or_else(|| format!("admin.listener {value:?} is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("admin.listener {value:?} has no valid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(Some((
        if host.is_empty() { "0.0.0.0" } else { host }.to_string(),
        port,
    )))
}

/// Serves the admin endpoints on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let state = state.clone();
                    tokio::spawn(async move { handle(stream, &state).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    body: Vec<u8>,
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }

    fn json(status: u16, value: serde_json::Value) -> Response {
        let mut body = serde_json::to_vec_pretty(&value).unwrap_or_default();
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body,
        }
    }
}

async fn handle(mut stream: TcpStream, state: &AdminState) {
    let response = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
        Ok(Ok(req)) => route(&req, state),
        Ok(Err(status)) => Response::text(status, "bad request\n"),
        Err(_) => return,
    };
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&response.body).await;
    let _ = stream.shutdown().await;
}

/// Reads one request; `Err(status)` for a malformed or oversized one.
async fn read_request(stream: &mut TcpStream) -> Result<Request, u16> {
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() >= MAX_REQUEST_BYTES {
            return Err(413);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
        if n == 0 {
            return Err(400);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| 400u16)?
        .to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let (Some(method), Some(target), Some(_version)) = (first.next(), first.next(), first.next())
    else {
        return Err(400);
    };
    let mut content_length = 0usize;
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().map_err(|_| 400u16)?;
        }
    }
    let body_start = head_end + 4;
    if body_start + content_length > MAX_REQUEST_BYTES {
        return Err(413);
    }
    while buf.len() < body_start + content_length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
        if n == 0 {
            return Err(400);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        body: buf[body_start..body_start + content_length].to_vec(),
    })
}

fn route(req: &Request, state: &AdminState) -> Response {
    let get = req.method == "GET" || req.method == "HEAD";
    match (req.path.as_str(), get) {
        ("/metrics", true) => Response {
            status: 200,
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body: state.metrics.encode().into_bytes(),
        },
        ("/health/live", true) => Response::text(200, "live\n"),
        ("/health/ready", true) => {
            if state.is_ready() {
                Response::text(200, "ready\n")
            } else if state.broker.get().is_some() {
                Response::text(503, "not ready: shutting down\n")
            } else {
                Response::text(503, "not ready: recovering logs\n")
            }
        }
        ("/v1/status", true) => Response::json(200, status(state)),
        ("/v1/partitions", true) => match state.broker.get() {
            Some((broker, _)) => {
                Response::json(200, partitions(broker, query_param(&req.query, "topic")))
            }
            None => Response::text(503, "not ready: recovering logs\n"),
        },
        ("/v1/log-level", _) => log_level(req, state),
        ("/v1/fault/network", false) => network_fault(req, state),
        (
            "/metrics" | "/health/live" | "/health/ready" | "/v1/status" | "/v1/partitions",
            false,
        ) => Response::text(405, "method not allowed\n"),
        _ => Response::text(404, "not found\n"),
    }
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn status(state: &AdminState) -> serde_json::Value {
    let uptime = state.metrics.started().elapsed();
    let mut out = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_ms": uptime.as_millis() as u64,
        "ready": state.is_ready(),
    });
    if let Some((broker, addr)) = state.broker.get() {
        let image = broker.image();
        let (mut hosted, mut led, mut under) = (0, 0, 0);
        for topic in image.topics.values() {
            for p in &topic.partitions {
                if p.replicas.contains(&broker.node_id) {
                    hosted += 1;
                }
                if p.leader == broker.node_id {
                    led += 1;
                    if p.isr.len() < p.replicas.len() {
                        under += 1;
                    }
                }
            }
        }
        let name = crate::startup::listener_name(broker.config.get("listeners"));
        out["broker_id"] = json!(broker.node_id);
        out["cluster_id"] = json!(broker.cluster_id);
        out["listeners"] = json!([{
            "name": name,
            "address": addr.to_string(),
            "advertised": format!("{}:{}", broker.advertised.0, if broker.advertised.1 == 0 { addr.port() } else { broker.advertised.1 }),
        }]);
        out["partitions"] = json!(hosted);
        out["partitions_led"] = json!(led);
        out["under_replicated_partitions"] = json!(under);
        out["groups"] = json!(broker.groups.list().len());
    }
    out
}

fn partitions(broker: &Broker, topic: Option<&str>) -> serde_json::Value {
    let mut parts = broker.replicas.all();
    parts.retain(|p| topic.is_none_or(|t| p.topic == t));
    parts.sort_by(|a, b| (&a.topic, a.index).cmp(&(&b.topic, b.index)));
    let rows: Vec<serde_json::Value> = parts
        .iter()
        .map(|p| {
            p.with_log(|l| {
                let c = l.config();
                let policy = match (c.compact, c.cleanup_delete) {
                    (true, true) => "compact,delete",
                    (true, false) => "compact",
                    _ => "delete",
                };
                let mut row = json!({
                    "topic": p.topic,
                    "partition": p.index,
                    "log_start_offset": l.log_start_offset(),
                    "log_end_offset": l.log_end_offset(),
                    "size_bytes": l.size_bytes(),
                    "segments": l.segment_count(),
                    "cleanup_policy": policy,
                });
                if c.compact {
                    row["dirty_ratio"] = json!(l.dirty_ratio());
                    row["first_dirty_offset"] = json!(l.first_dirty_offset());
                    row["last_clean_ms"] = json!(l.last_clean_ms());
                }
                row
            })
        })
        .collect();
    json!({ "partitions": rows })
}

/// `PUT /v1/fault/network` with `isolate` or `heal` (only with `fault.injection.enable`).
fn network_fault(req: &Request, state: &AdminState) -> Response {
    let Some((broker, _)) = state.broker.get() else {
        return Response::text(503, "not ready\n");
    };
    if !broker.config.settings().fault_injection_enable {
        return Response::text(403, "fault injection is off (fault.injection.enable)\n");
    }
    let on = match std::str::from_utf8(&req.body).map(str::trim) {
        Ok("isolate") => true,
        Ok("heal") => false,
        _ => return Response::text(400, "body must be isolate or heal\n"),
    };
    broker.isolated.store(on, Ordering::Release);
    tracing::warn!(
        isolated = on,
        "fault injection: network to the other brokers {}",
        if on { "cut" } else { "healed" }
    );
    Response::json(200, json!({ "isolated": on }))
}

fn log_level(req: &Request, state: &AdminState) -> Response {
    let Some(control) = &state.log_control else {
        return Response::text(404, "log levels cannot be changed in this process\n");
    };
    match req.method.as_str() {
        "GET" => Response::json(200, json!({ "filter": control.current() })),
        "PUT" | "POST" => {
            let Ok(filter) = std::str::from_utf8(&req.body) else {
                return Response::text(400, "the filter must be UTF-8\n");
            };
            match control.set(filter.trim()) {
                Ok(()) => {
                    tracing::info!(filter = %filter.trim(), "log filter changed");
                    Response::json(200, json!({ "filter": control.current() }))
                }
                Err(e) => Response::text(400, format!("invalid filter: {e}\n")),
            }
        }
        _ => Response::text(405, "method not allowed\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, state: &AdminState) -> Response {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        route(
            &Request {
                method: "GET".into(),
                path: path.into(),
                query: query.into(),
                body: Vec::new(),
            },
            state,
        )
    }

    #[test]
    fn admin_listener_values() {
        assert_eq!(parse_admin_listener("").unwrap(), None);
        assert_eq!(parse_admin_listener("  ").unwrap(), None);
        assert_eq!(
            parse_admin_listener("127.0.0.1:9644").unwrap(),
            Some(("127.0.0.1".into(), 9644))
        );
        assert_eq!(
            parse_admin_listener("http://:9000").unwrap(),
            Some(("0.0.0.0".into(), 9000))
        );
        assert!(parse_admin_listener("nonsense").is_err());
        assert!(parse_admin_listener("host:99999").is_err());
    }

    #[test]
    fn not_ready_until_the_broker_is_there() {
        let state = AdminState::new(Arc::new(Metrics::new()), None);
        assert_eq!(get("/health/live", &state).status, 200);
        let ready = get("/health/ready", &state);
        assert_eq!(ready.status, 503);
        assert!(String::from_utf8_lossy(&ready.body).contains("recovering"));
        assert_eq!(get("/v1/partitions", &state).status, 503);
        let status = get("/v1/status", &state);
        assert_eq!(status.status, 200);
        assert!(String::from_utf8_lossy(&status.body).contains("\"ready\": false"));
        let metrics = get("/metrics", &state);
        assert_eq!(metrics.status, 200);
        assert!(String::from_utf8_lossy(&metrics.body).contains("strom_uptime_seconds"));
        assert_eq!(get("/nothing", &state).status, 404);
        assert_eq!(get("/v1/log-level", &state).status, 404);
    }

    #[tokio::test]
    async fn serves_http_over_tcp() {
        let state = AdminState::new(Arc::new(Metrics::new()), None);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, state, rx));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nlive\n"), "{out}");
        // A head that never ends is cut at the size limit.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(&vec![b'a'; MAX_REQUEST_BYTES + 10]).await;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        assert!(out.starts_with("HTTP/1.1 413"), "{out}");
        tx.send(true).unwrap();
        server.await.unwrap();
    }
}

//! The quorum's transport between processes: each request is a frame (u32 big-endian length,
//! then JSON) on a TCP connection to the member's controller address, answered by one frame.
//! Connections are kept per peer and reopened after an error; every call is bounded by a
//! timeout so a dead peer never stalls the Raft core.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use openraft::Raft;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use super::{
    ControllerRequest, ControllerResponse, MemberId, QuorumConfig, QuorumMetadataLog, Rpc,
    Transport,
};
use crate::MetadataError;

/// Largest frame accepted (a snapshot chunk is the biggest message).
const MAX_FRAME: u32 = 64 * 1024 * 1024;
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize)]
enum Request {
    AppendEntries(AppendEntriesRequest<QuorumConfig>),
    Vote(VoteRequest<MemberId>),
    InstallSnapshot(InstallSnapshotRequest<QuorumConfig>),
    Controller(ControllerRequest),
}

#[derive(Serialize, Deserialize)]
enum Response {
    AppendEntries(Result<AppendEntriesResponse<MemberId>, RaftError<MemberId>>),
    Vote(Result<VoteResponse<MemberId>, RaftError<MemberId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<MemberId>, RaftError<MemberId, InstallSnapshotError>>,
    ),
    Controller(ControllerResponse),
}

async fn write_frame(s: &mut TcpStream, value: &impl Serialize) -> std::io::Result<()> {
    let body = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::other("quorum frame too large"))?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    s.write_all(&out).await
}

async fn read_frame<T: for<'de> Deserialize<'de>>(s: &mut TcpStream) -> std::io::Result<T> {
    let len = s.read_u32().await?;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "quorum frame of {len} bytes exceeds {MAX_FRAME}"
        )));
    }
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(std::io::Error::other)
}

/// Decodes the body of a request frame as a member serving the quorum does; `Err` for bytes
/// that are not a request. (For fuzzing and tests.)
pub fn check_request_body(body: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<Request>(body)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Calls peers at their controller addresses.
pub struct TcpTransport {
    peers: HashMap<MemberId, SocketAddr>,
    /// Per peer: a connection for Raft's RPCs, one for controller requests (appends and
    /// heartbeats) and one for an observer's fetches of the log, so that none waits behind
    /// another (a fetch waits at the peer for new records; a forwarded append may take a
    /// while; Raft's and the brokers' heartbeats must not wait behind either).
    connections: HashMap<MemberId, [Arc<Mutex<Option<TcpStream>>>; 3]>,
    /// While set, every call fails as if the network were cut (fault injection).
    isolated: Arc<AtomicBool>,
}

impl TcpTransport {
    pub fn new(peers: HashMap<MemberId, SocketAddr>) -> TcpTransport {
        let connections = peers
            .keys()
            .map(|id| {
                (
                    *id,
                    [
                        Arc::new(Mutex::new(None)),
                        Arc::new(Mutex::new(None)),
                        Arc::new(Mutex::new(None)),
                    ],
                )
            })
            .collect();
        TcpTransport {
            peers,
            connections,
            isolated: Arc::default(),
        }
    }

    /// Fails every call while `isolated` is set: a member cut off from its peers (tests of
    /// network partitions drive it).
    pub fn with_isolation(mut self, isolated: Arc<AtomicBool>) -> TcpTransport {
        self.isolated = isolated;
        self
    }

    async fn call(&self, to: MemberId, req: Request) -> std::io::Result<Response> {
        let (Some(addr), Some(slots)) = (self.peers.get(&to), self.connections.get(&to)) else {
            return Err(std::io::Error::other(format!("unknown quorum member {to}")));
        };
        let slot = match &req {
            Request::Controller(ControllerRequest::Records { .. }) => &slots[2],
            Request::Controller(_) => &slots[1],
            _ => &slots[0],
        };
        let mut conn = slot.lock().await;
        if self.isolated.load(Ordering::Acquire) {
            *conn = None;
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                format!("quorum member {to} unreachable: network isolated"),
            ));
        }
        let attempt = async {
            if conn.is_none() {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                *conn = Some(s);
            }
            let s = conn.as_mut().expect("connected");
            write_frame(s, &req).await?;
            read_frame::<Response>(s).await
        };
        let result = match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("quorum member {to} did not answer in time"),
            )),
        };
        if result.is_err() {
            *conn = None;
        }
        result
    }
}

fn unreachable<E: std::error::Error>(
    e: &std::io::Error,
) -> RPCError<MemberId, openraft::BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(e))
}

fn mismatch<E: std::error::Error>() -> RPCError<MemberId, openraft::BasicNode, E> {
    let e = std::io::Error::other("quorum peer answered another request type");
    RPCError::Network(NetworkError::new(&e))
}

fn remote<E: std::error::Error + Clone>(
    to: MemberId,
    e: RaftError<MemberId, E>,
) -> RPCError<MemberId, openraft::BasicNode, RaftError<MemberId, E>> {
    RPCError::RemoteError(openraft::error::RemoteError::new(to, e))
}

impl Transport for TcpTransport {
    async fn controller_call(
        &self,
        _from: MemberId,
        to: MemberId,
        req: ControllerRequest,
    ) -> Result<ControllerResponse, MetadataError> {
        match self.call(to, Request::Controller(req)).await {
            Ok(Response::Controller(r)) => Ok(r),
            Ok(_) => Err(MetadataError::Quorum(format!(
                "member {to} answered another request type"
            ))),
            Err(e) => Err(MetadataError::Quorum(format!("member {to}: {e}"))),
        }
    }

    async fn append_entries(
        &self,
        _from: MemberId,
        to: MemberId,
        rpc: AppendEntriesRequest<QuorumConfig>,
    ) -> Rpc<AppendEntriesResponse<MemberId>> {
        match self.call(to, Request::AppendEntries(rpc)).await {
            Ok(Response::AppendEntries(r)) => r.map_err(|e| remote(to, e)),
            Ok(_) => Err(mismatch()),
            Err(e) => Err(unreachable(&e)),
        }
    }

    async fn vote(
        &self,
        _from: MemberId,
        to: MemberId,
        rpc: VoteRequest<MemberId>,
    ) -> Rpc<VoteResponse<MemberId>> {
        match self.call(to, Request::Vote(rpc)).await {
            Ok(Response::Vote(r)) => r.map_err(|e| remote(to, e)),
            Ok(_) => Err(mismatch()),
            Err(e) => Err(unreachable(&e)),
        }
    }

    async fn install_snapshot(
        &self,
        _from: MemberId,
        to: MemberId,
        rpc: InstallSnapshotRequest<QuorumConfig>,
    ) -> Rpc<InstallSnapshotResponse<MemberId>, RaftError<MemberId, InstallSnapshotError>> {
        match self.call(to, Request::InstallSnapshot(rpc)).await {
            Ok(Response::InstallSnapshot(r)) => r.map_err(|e| remote(to, e)),
            Ok(_) => Err(mismatch()),
            Err(e) => Err(unreachable(&e)),
        }
    }
}

/// Serves quorum requests from peers on `listener` until the task is dropped (Raft only:
/// requests for the active controller are refused).
pub async fn serve(listener: TcpListener, raft: Raft<QuorumConfig>) {
    serve_inner(listener, raft, None, Arc::default()).await
}

/// Serves Raft and active-controller requests for `member` on `listener` until the task is
/// dropped; while `isolated` is set, requests are dropped unanswered with their connection.
pub async fn serve_member(
    listener: TcpListener,
    member: Arc<QuorumMetadataLog>,
    isolated: Arc<AtomicBool>,
) {
    let Some(raft) = member.raft().cloned() else {
        tracing::warn!("an observer does not serve the quorum");
        return;
    };
    serve_inner(listener, raft, Some(member), isolated).await
}

async fn serve_inner(
    listener: TcpListener,
    raft: Raft<QuorumConfig>,
    member: Option<Arc<QuorumMetadataLog>>,
    isolated: Arc<AtomicBool>,
) {
    loop {
        let Ok((mut stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let raft = raft.clone();
        let member = member.clone();
        let isolated = isolated.clone();
        tokio::spawn(async move {
            loop {
                let req: Request = match read_frame(&mut stream).await {
                    Ok(r) => r,
                    Err(e) => {
                        if e.kind() != std::io::ErrorKind::UnexpectedEof {
                            tracing::debug!(%peer, error = %e, "quorum connection closed");
                        }
                        return;
                    }
                };
                if isolated.load(Ordering::Acquire) {
                    return;
                }
                let resp = match req {
                    Request::AppendEntries(r) => {
                        Response::AppendEntries(raft.append_entries(r).await)
                    }
                    Request::Vote(r) => Response::Vote(raft.vote(r).await),
                    Request::InstallSnapshot(r) => {
                        Response::InstallSnapshot(raft.install_snapshot(r).await)
                    }
                    Request::Controller(r) => Response::Controller(match &member {
                        Some(m) => m.handle_controller_request(r).await,
                        None => ControllerResponse::Failed(
                            "this member does not serve controller requests".into(),
                        ),
                    }),
                };
                if write_frame(&mut stream, &resp).await.is_err() {
                    return;
                }
            }
        });
    }
}

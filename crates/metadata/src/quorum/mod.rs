//! The metadata log replicated by a Raft quorum of controllers (openraft), as KRaft replicates
//! Kafka's: every metadata change is one Raft entry holding a batch of records, applied in log
//! order to the image once a majority has it. [`QuorumMetadataLog`] implements the same
//! [`MetadataLog`](crate::MetadataLog) trait as the single-node local log.
//!
//! Transports plug in through [`Transport`]; [`LocalRouter`] connects members in one process
//! (tests, simulations) and can cut links between them; [`tcp::TcpTransport`] connects
//! processes.

mod store;
pub mod tcp;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io::Cursor;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Config, Raft};
use serde::{Deserialize, Serialize};

pub use store::{LogStore, StateMachine};

use crate::{MetadataError, MetadataImage, MetadataLog, MetadataRecord};

/// A batch of records appended atomically: one Raft entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetadataBatch(pub Vec<MetadataRecord>);

impl std::fmt::Display for MetadataBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} metadata records", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// The Raft types of the metadata quorum.
    pub QuorumConfig: D = MetadataBatch, R = ()
);

/// A member of the quorum.
pub type MemberId = u64;
type Rpc<T, E = RaftError<MemberId>> = Result<T, RPCError<MemberId, BasicNode, E>>;

/// What a broker asks of the active controller (the quorum leader) through another member.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// Append these records (checked against the leader's image first).
    Append(Vec<MetadataRecord>),
    /// The broker is alive.
    Heartbeat { broker_id: i32 },
    /// An observer asks for the records after the first `after` (waiting a moment for new
    /// ones when it has them all).
    Records { after: u64 },
}

/// The active controller's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControllerResponse {
    /// Appended and applied; the leader's image had applied `offset` records then.
    Appended {
        offset: u64,
    },
    HeartbeatTaken,
    /// Records of the log starting at offset `start`, and the leader as this member knows it.
    Records {
        start: u64,
        records: Vec<MetadataRecord>,
        leader: Option<MemberId>,
    },
    /// Not the leader (the leader's id when known).
    NotLeader(Option<MemberId>),
    /// The records no longer fit the metadata.
    Conflict(String),
    Failed(String),
}

impl ControllerResponse {
    fn from_error(e: MetadataError) -> ControllerResponse {
        match e {
            MetadataError::NotLeader(l) => ControllerResponse::NotLeader(l),
            MetadataError::Conflict(m) => ControllerResponse::Conflict(m),
            other => ControllerResponse::Failed(other.to_string()),
        }
    }
}

type ForwardFn = Arc<
    dyn Fn(
            MemberId,
            ControllerRequest,
        )
            -> Pin<Box<dyn Future<Output = Result<ControllerResponse, MetadataError>> + Send>>
        + Send
        + Sync,
>;

/// How a member reaches another: Raft's three RPCs, and requests for the active controller.
pub trait Transport: Send + Sync + 'static {
    /// Sends a request meant for the active controller to member `to`. Transports within one
    /// process need not support it.
    fn controller_call(
        &self,
        _from: MemberId,
        to: MemberId,
        _req: ControllerRequest,
    ) -> impl std::future::Future<Output = Result<ControllerResponse, MetadataError>> + Send {
        async move {
            Err(MetadataError::Quorum(format!(
                "this transport cannot reach member {to} for controller requests"
            )))
        }
    }

    fn append_entries(
        &self,
        from: MemberId,
        to: MemberId,
        rpc: AppendEntriesRequest<QuorumConfig>,
    ) -> impl std::future::Future<Output = Rpc<AppendEntriesResponse<MemberId>>> + Send;
    fn vote(
        &self,
        from: MemberId,
        to: MemberId,
        rpc: VoteRequest<MemberId>,
    ) -> impl std::future::Future<Output = Rpc<VoteResponse<MemberId>>> + Send;
    fn install_snapshot(
        &self,
        from: MemberId,
        to: MemberId,
        rpc: InstallSnapshotRequest<QuorumConfig>,
    ) -> impl std::future::Future<
        Output = Rpc<InstallSnapshotResponse<MemberId>, RaftError<MemberId, InstallSnapshotError>>,
    > + Send;
}

/// Members of one process, with links that can be cut (a network partition).
#[derive(Default)]
pub struct LocalRouter {
    members: Mutex<HashMap<MemberId, Raft<QuorumConfig>>>,
    cut: Mutex<BTreeSet<(MemberId, MemberId)>>,
}

fn unreachable<E: std::error::Error>(
    from: MemberId,
    to: MemberId,
) -> RPCError<MemberId, BasicNode, E> {
    let e = std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        format!("member {to} unreachable from {from}"),
    );
    RPCError::Unreachable(Unreachable::new(&e))
}

impl LocalRouter {
    pub fn add(&self, id: MemberId, raft: Raft<QuorumConfig>) {
        self.members.lock().unwrap().insert(id, raft);
    }

    pub fn remove(&self, id: MemberId) {
        self.members.lock().unwrap().remove(&id);
    }

    /// Cuts (or heals) both directions between `a` and every member in `others`.
    pub fn isolate(&self, a: MemberId, others: &[MemberId], cut: bool) {
        let mut links = self.cut.lock().unwrap();
        for &b in others {
            for link in [(a, b), (b, a)] {
                if cut {
                    links.insert(link);
                } else {
                    links.remove(&link);
                }
            }
        }
    }

    fn target(&self, from: MemberId, to: MemberId) -> Option<Raft<QuorumConfig>> {
        if self.cut.lock().unwrap().contains(&(from, to)) {
            return None;
        }
        self.members.lock().unwrap().get(&to).cloned()
    }
}

impl Transport for LocalRouter {
    async fn append_entries(
        &self,
        from: MemberId,
        to: MemberId,
        rpc: AppendEntriesRequest<QuorumConfig>,
    ) -> Rpc<AppendEntriesResponse<MemberId>> {
        let raft = self.target(from, to).ok_or_else(|| unreachable(from, to))?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    async fn vote(
        &self,
        from: MemberId,
        to: MemberId,
        rpc: VoteRequest<MemberId>,
    ) -> Rpc<VoteResponse<MemberId>> {
        let raft = self.target(from, to).ok_or_else(|| unreachable(from, to))?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    async fn install_snapshot(
        &self,
        from: MemberId,
        to: MemberId,
        rpc: InstallSnapshotRequest<QuorumConfig>,
    ) -> Rpc<InstallSnapshotResponse<MemberId>, RaftError<MemberId, InstallSnapshotError>> {
        let raft = self.target(from, to).ok_or_else(|| unreachable(from, to))?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

/// openraft's network factory over a [`Transport`].
struct Network<T: Transport> {
    from: MemberId,
    transport: Arc<T>,
}

struct Connection<T: Transport> {
    from: MemberId,
    to: MemberId,
    transport: Arc<T>,
}

impl<T: Transport> RaftNetworkFactory<QuorumConfig> for Network<T> {
    type Network = Connection<T>;

    async fn new_client(&mut self, target: MemberId, _node: &BasicNode) -> Self::Network {
        Connection {
            from: self.from,
            to: target,
            transport: self.transport.clone(),
        }
    }
}

impl<T: Transport> RaftNetwork<QuorumConfig> for Connection<T> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<QuorumConfig>,
        _option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<MemberId>> {
        self.transport.append_entries(self.from, self.to, rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<QuorumConfig>,
        _option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<MemberId>, RaftError<MemberId, InstallSnapshotError>> {
        self.transport
            .install_snapshot(self.from, self.to, rpc)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<MemberId>,
        _option: RPCOption,
    ) -> Rpc<VoteResponse<MemberId>> {
        self.transport.vote(self.from, self.to, rpc).await
    }
}

/// Settings of a quorum member (`controller.quorum.*` in the broker config).
#[derive(Clone, Debug)]
pub struct QuorumSettings {
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// Entries after which a snapshot is taken and the log before it purged.
    pub snapshot_every: u64,
}

impl Default for QuorumSettings {
    fn default() -> Self {
        QuorumSettings {
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            heartbeat_interval_ms: 200,
            snapshot_every: 10_000,
        }
    }
}

/// The quorum as one member sees it.
#[derive(Clone, Debug)]
pub struct QuorumStatus {
    pub leader: Option<MemberId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub committed: Option<u64>,
    pub voters: Vec<MemberId>,
    /// On the leader: each member's last replicated log index.
    pub replication: BTreeMap<MemberId, Option<u64>>,
}

/// One member of the metadata quorum, serving the [`MetadataLog`] trait.
pub struct QuorumMetadataLog {
    pub id: MemberId,
    /// The Raft member; `None` on an observer (a broker that is not a voter), which copies
    /// the log from the voters instead.
    raft: Option<Raft<QuorumConfig>>,
    /// The voters (for an observer: whom to ask).
    voters: Vec<MemberId>,
    /// The leader as an observer last heard of it.
    leader_hint: Mutex<Option<MemberId>>,
    /// Which voter an observer asks next when it knows no leader.
    ask_turn: std::sync::atomic::AtomicUsize,
    /// An observer's last fetch brought nothing: the next one asks the next voter.
    rotate: std::sync::atomic::AtomicBool,
    state: StateMachine,
    runtime: tokio::runtime::Handle,
    /// Appends on the leader one at a time, so each is checked against the image before it.
    write_lock: tokio::sync::Mutex<()>,
    /// Last heartbeat of each broker, as received while this member leads.
    heartbeats: Mutex<HashMap<i32, Instant>>,
    forward: ForwardFn,
}

impl QuorumMetadataLog {
    /// Starts member `id` with its log in `dir`, reaching the others through `transport`.
    pub async fn start<T: Transport>(
        id: MemberId,
        dir: &Path,
        settings: &QuorumSettings,
        transport: Arc<T>,
    ) -> Result<QuorumMetadataLog, MetadataError> {
        let config = Config {
            cluster_name: "strom-metadata".into(),
            election_timeout_min: settings.election_timeout_min_ms,
            election_timeout_max: settings.election_timeout_max_ms,
            heartbeat_interval: settings.heartbeat_interval_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(settings.snapshot_every),
            max_in_snapshot_log_to_keep: 100,
            ..Config::default()
        }
        .validate()
        .map_err(|e| MetadataError::Quorum(e.to_string()))?;
        let log = LogStore::open(dir)?;
        let state = StateMachine::open(dir)?;
        let forwarder = transport.clone();
        let forward: ForwardFn = Arc::new(move |to, req| {
            let t = forwarder.clone();
            Box::pin(async move { t.controller_call(id, to, req).await })
        });
        let network = Network {
            from: id,
            transport,
        };
        let raft = Raft::new(id, Arc::new(config), network, log, state.clone())
            .await
            .map_err(|e| MetadataError::Quorum(e.to_string()))?;
        Ok(QuorumMetadataLog {
            id,
            raft: Some(raft),
            voters: Vec::new(),
            leader_hint: Mutex::new(None),
            ask_turn: Default::default(),
            rotate: Default::default(),
            state,
            runtime: tokio::runtime::Handle::current(),
            write_lock: tokio::sync::Mutex::new(()),
            heartbeats: Mutex::new(HashMap::new()),
            forward,
        })
    }

    /// Starts an observer: not a voter, it copies the committed log from the voters (asking
    /// them with [`ControllerRequest::Records`]) and forwards appends and heartbeats to the
    /// leader. Its copy lives in memory and is fetched again after a restart.
    pub async fn start_observer<T: Transport>(
        id: MemberId,
        dir: &Path,
        voters: Vec<MemberId>,
        transport: Arc<T>,
    ) -> Result<Arc<QuorumMetadataLog>, MetadataError> {
        let state = StateMachine::in_memory(dir)?;
        let forwarder = transport.clone();
        let forward: ForwardFn = Arc::new(move |to, req| {
            let t = forwarder.clone();
            Box::pin(async move { t.controller_call(id, to, req).await })
        });
        let member = Arc::new(QuorumMetadataLog {
            id,
            raft: None,
            voters,
            leader_hint: Mutex::new(None),
            ask_turn: Default::default(),
            rotate: Default::default(),
            state,
            runtime: tokio::runtime::Handle::current(),
            write_lock: tokio::sync::Mutex::new(()),
            heartbeats: Mutex::new(HashMap::new()),
            forward,
        });
        let weak = Arc::downgrade(&member);
        tokio::spawn(async move {
            let mut turn = 0usize;
            loop {
                let Some(m) = weak.upgrade() else { return };
                if !m.observe_once(&mut turn).await {
                    drop(m);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        Ok(member)
    }

    /// One fetch of new records from the leader (or the next voter); false when none answered.
    async fn observe_once(&self, turn: &mut usize) -> bool {
        let next_voter = self.voters[*turn % self.voters.len().max(1)];
        let target = if self.rotate.load(std::sync::atomic::Ordering::Relaxed) {
            next_voter
        } else {
            self.leader_hint
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or(next_voter)
        };
        let after = self.state.image().offset;
        match (self.forward)(target, ControllerRequest::Records { after }).await {
            Ok(ControllerResponse::Records {
                start,
                records,
                leader,
            }) => {
                // Nothing new: the next fetch goes to another voter, so that a voter cut off
                // from the quorum (answering from a stale copy) cannot hold the observer back.
                let idle = records.is_empty();
                if idle {
                    *turn += 1;
                }
                *self.leader_hint.lock().unwrap_or_else(|e| e.into_inner()) = leader;
                self.rotate
                    .store(idle, std::sync::atomic::Ordering::Relaxed);
                self.state.apply_fetched(start, records);
                true
            }
            _ => {
                *self.leader_hint.lock().unwrap_or_else(|e| e.into_inner()) = None;
                *turn += 1;
                false
            }
        }
    }

    /// Whether this member is an observer rather than a voter.
    pub fn is_observer(&self) -> bool {
        self.raft.is_none()
    }

    /// The Raft member (voters only).
    pub fn raft(&self) -> Option<&Raft<QuorumConfig>> {
        self.raft.as_ref()
    }

    /// Forms a new quorum of `voters` (once, on one member of a fresh cluster).
    pub async fn initialize(&self, voters: &[MemberId]) -> Result<(), MetadataError> {
        let members: BTreeMap<MemberId, BasicNode> = voters
            .iter()
            .map(|id| (*id, BasicNode::new(format!("member-{id}"))))
            .collect();
        let Some(raft) = &self.raft else {
            return Ok(());
        };
        raft.initialize(members)
            .await
            .map_err(|e| MetadataError::Quorum(e.to_string()))
    }

    /// The current leader, if one is known.
    pub async fn leader(&self) -> Option<MemberId> {
        self.leader_id()
    }

    /// Appends records through Raft on the leader, checked against its image first
    /// ([`MetadataImage::validate`]); NotLeader (with the leader's id) elsewhere.
    pub async fn append_on_leader(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Arc<MetadataImage>, MetadataError> {
        let Some(raft) = &self.raft else {
            return Err(MetadataError::NotLeader(self.leader_id()));
        };
        let _turn = self.write_lock.lock().await;
        // Everything committed before this member became leader is applied first, so the
        // check sees the whole log.
        raft.ensure_linearizable()
            .await
            .map_err(|e| match e.forward_to_leader() {
                Some(f) => MetadataError::NotLeader(f.leader_id),
                None => MetadataError::Quorum(e.to_string()),
            })?;
        self.state
            .image()
            .validate(&records)
            .map_err(MetadataError::Conflict)?;
        raft.client_write(MetadataBatch(records))
            .await
            .map_err(|e| match e.forward_to_leader() {
                Some(f) => MetadataError::NotLeader(f.leader_id),
                None => MetadataError::Quorum(e.to_string()),
            })?;
        Ok(self.state.image())
    }

    /// Appends records: on the leader directly, from any other member by forwarding them to
    /// the leader and waiting until this member has applied them. While no leader is known
    /// (an election), it retries for up to 15 s.
    pub async fn append_async(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Arc<MetadataImage>, MetadataError> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let leader = match self.append_on_leader(records.clone()).await {
                Err(MetadataError::NotLeader(leader)) => leader,
                other => return other,
            };
            let leader = leader.or_else(|| {
                // An observer without a known leader asks the voters in turn.
                let turn = self
                    .ask_turn
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.raft
                    .is_none()
                    .then(|| self.voters.get(turn % self.voters.len().max(1)).copied())
                    .flatten()
            });
            if let Some(l) = leader.filter(|l| *l != self.id) {
                match (self.forward)(l, ControllerRequest::Append(records.clone())).await {
                    Ok(ControllerResponse::Appended { offset }) => {
                        return Ok(self.wait_for(offset, Duration::from_secs(15)).await);
                    }
                    Ok(ControllerResponse::Conflict(m)) => return Err(MetadataError::Conflict(m)),
                    Ok(ControllerResponse::Failed(m)) => return Err(MetadataError::Quorum(m)),
                    Ok(_) | Err(_) => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(MetadataError::NotLeader(None));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Answers a request meant for the active controller (from another member's transport).
    pub async fn handle_controller_request(&self, req: ControllerRequest) -> ControllerResponse {
        match req {
            ControllerRequest::Append(records) => match self.append_on_leader(records).await {
                Ok(image) => ControllerResponse::Appended {
                    offset: image.offset,
                },
                Err(e) => ControllerResponse::from_error(e),
            },
            ControllerRequest::Records { after } => {
                if self.state.image().offset <= after {
                    let _ = self.wait_newer(after, Duration::from_secs(1)).await;
                }
                match self.state.records_after(after) {
                    Some(records) => ControllerResponse::Records {
                        start: after,
                        records,
                        leader: self.leader_id(),
                    },
                    None => ControllerResponse::Failed(format!(
                        "this member has fewer than {after} records"
                    )),
                }
            }
            ControllerRequest::Heartbeat { broker_id } => {
                if self.is_leader() {
                    self.note_heartbeat(broker_id);
                    ControllerResponse::HeartbeatTaken
                } else {
                    ControllerResponse::NotLeader(self.leader_id())
                }
            }
        }
    }

    fn note_heartbeat(&self, broker_id: i32) {
        self.heartbeats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(broker_id, Instant::now());
    }

    /// Tells the active controller that broker `broker_id` is alive (directly when this
    /// member leads).
    pub async fn heartbeat(&self, broker_id: i32) -> Result<(), MetadataError> {
        if self.is_leader() {
            self.note_heartbeat(broker_id);
            return Ok(());
        }
        let leader = self.leader_id().ok_or(MetadataError::NotLeader(None))?;
        match (self.forward)(leader, ControllerRequest::Heartbeat { broker_id }).await? {
            ControllerResponse::HeartbeatTaken => Ok(()),
            ControllerResponse::NotLeader(l) => Err(MetadataError::NotLeader(l)),
            other => Err(MetadataError::Quorum(format!("{other:?}"))),
        }
    }

    /// When each broker last heartbeated to this member (meaningful while it leads).
    pub fn last_heartbeats(&self) -> HashMap<i32, Instant> {
        self.heartbeats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether this member is the quorum leader (the active controller).
    pub fn is_leader(&self) -> bool {
        self.raft
            .as_ref()
            .is_some_and(|r| r.metrics().borrow().current_leader == Some(self.id))
    }

    /// The quorum leader as this member knows it.
    pub fn leader_id(&self) -> Option<MemberId> {
        match &self.raft {
            Some(r) => r.metrics().borrow().current_leader,
            None => *self.leader_hint.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// The quorum's state as this member sees it, for DescribeQuorum and the CLI.
    pub fn status(&self) -> QuorumStatus {
        let Some(raft) = &self.raft else {
            return QuorumStatus {
                leader: self.leader_id(),
                term: 0,
                last_log_index: None,
                committed: None,
                voters: self.voters.clone(),
                replication: BTreeMap::new(),
            };
        };
        let m = raft.metrics().borrow().clone();
        let voters: Vec<MemberId> = m.membership_config.membership().voter_ids().collect();
        let replication = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, log)| (*id, log.map(|l| l.index)))
                    .collect::<BTreeMap<_, _>>()
            })
            .unwrap_or_default();
        QuorumStatus {
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            committed: m.last_applied.map(|l| l.index),
            voters,
            replication,
        }
    }

    /// Waits until the image has applied at least `offset` records, up to `timeout`.
    pub async fn wait_for(&self, offset: u64, timeout: Duration) -> Arc<MetadataImage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let applied = self.state.applied();
            let notified = applied.notified();
            let image = self.state.image();
            if image.offset >= offset || tokio::time::Instant::now() >= deadline {
                return image;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// Waits (up to `timeout`) for an image newer than `offset` records.
    pub async fn wait_newer(&self, offset: u64, timeout: Duration) -> Arc<MetadataImage> {
        self.wait_for(offset + 1, timeout).await
    }

    pub async fn shutdown(&self) {
        if let Some(raft) = &self.raft {
            let _ = raft.shutdown().await;
        }
    }
}

impl MetadataLog for QuorumMetadataLog {
    fn append(&self, records: Vec<MetadataRecord>) -> Result<Arc<MetadataImage>, MetadataError> {
        // The broker calls this from its runtime's worker threads.
        tokio::task::block_in_place(|| self.runtime.block_on(self.append_async(records)))
    }

    fn image(&self) -> Arc<MetadataImage> {
        self.state.image()
    }
}

#[cfg(test)]
mod tests;

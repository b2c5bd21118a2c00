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
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// How a member reaches another: Raft's three RPCs.
pub trait Transport: Send + Sync + 'static {
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

/// One member of the metadata quorum, serving the [`MetadataLog`] trait.
pub struct QuorumMetadataLog {
    pub id: MemberId,
    pub raft: Raft<QuorumConfig>,
    state: StateMachine,
    runtime: tokio::runtime::Handle,
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
        let network = Network {
            from: id,
            transport,
        };
        let raft = Raft::new(id, Arc::new(config), network, log, state.clone())
            .await
            .map_err(|e| MetadataError::Quorum(e.to_string()))?;
        Ok(QuorumMetadataLog {
            id,
            raft,
            state,
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Forms a new quorum of `voters` (once, on one member of a fresh cluster).
    pub async fn initialize(&self, voters: &[MemberId]) -> Result<(), MetadataError> {
        let members: BTreeMap<MemberId, BasicNode> = voters
            .iter()
            .map(|id| (*id, BasicNode::new(format!("member-{id}"))))
            .collect();
        self.raft
            .initialize(members)
            .await
            .map_err(|e| MetadataError::Quorum(e.to_string()))
    }

    /// The current leader, if one is known.
    pub async fn leader(&self) -> Option<MemberId> {
        self.raft.current_leader().await
    }

    /// Appends records through Raft; only the leader accepts them (NOT_CONTROLLER otherwise,
    /// with the leader's id).
    pub async fn append_async(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Arc<MetadataImage>, MetadataError> {
        self.raft
            .client_write(MetadataBatch(records))
            .await
            .map_err(|e| match e.forward_to_leader() {
                Some(f) => MetadataError::NotLeader(f.leader_id),
                None => MetadataError::Quorum(e.to_string()),
            })?;
        Ok(self.state.image())
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

    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
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

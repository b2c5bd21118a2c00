//! The broker in a cluster: the metadata quorum member it runs (`controller.quorum.voters`),
//! following the metadata log, heartbeats, and the active controller's decisions.
//!
//! Every broker of a combined cluster is a voter of the metadata quorum. The quorum leader is
//! the active controller: it fences brokers whose heartbeats stop (`broker.session.timeout.ms`)
//! and elects new leaders for their partitions from the in-sync replicas (outside them only
//! with `unclean.leader.election.enable`). Every broker applies each new image to its
//! partitions (leader or follower, ISR, leader epoch) as the image arrives.
//!
//! The decisions are pure functions of the image ([`fence_records`], [`elect_offline`]), so
//! they are tested without a cluster; a change of a partition carries the next partition epoch
//! and the quorum leader refuses it if the partition changed meanwhile.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use strom_metadata::quorum::{QuorumMetadataLog, QuorumSettings, tcp};
use tokio::sync::watch;

use crate::broker::{Broker, BrokerError};
use crate::config::BrokerConfig;

mod decisions;
mod heartbeat;
mod isr;

pub use decisions::{
    cancel_record, complete_reassignments, elect_offline, elect_record, fence_records, isr_record,
    preferred_elections, reassign_record,
};
pub use heartbeat::{controlled_shutdown, controller};

/// Starts this node's member of the metadata quorum and serves it on its voter address.
/// Called from a blocking thread of the runtime (broker start-up).
pub fn start_quorum(
    config: &BrokerConfig,
    voters: &[(i32, String)],
    dir: &Path,
    isolated: Arc<std::sync::atomic::AtomicBool>,
) -> Result<Arc<QuorumMetadataLog>, BrokerError> {
    let me = config.node_id();
    let (_, controller) = roles(config);
    let voter = voters.iter().any(|(id, _)| *id == me);
    if controller && !voter {
        return Err(BrokerError::Config(format!(
            "node.id {me} has the controller role but is not one of controller.quorum.voters"
        )));
    }
    if !controller && voter {
        return Err(BrokerError::Config(format!(
            "node.id {me} is one of controller.quorum.voters but process.roles has no controller"
        )));
    }
    let mut peers: HashMap<u64, SocketAddr> = HashMap::new();
    for (id, addr) in voters {
        let resolved = addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| BrokerError::Config(format!("cannot resolve quorum voter {addr}")))?;
        peers.insert(*id as u64, resolved);
    }
    let ids: Vec<u64> = voters.iter().map(|(id, _)| *id as u64).collect();
    if !voter {
        // A broker only: it follows the voters' log as an observer.
        let dir = dir.to_path_buf();
        return tokio::runtime::Handle::current().block_on(async move {
            let transport = Arc::new(tcp::TcpTransport::new(peers).with_isolation(isolated));
            let member =
                QuorumMetadataLog::start_observer(me as u64, &dir, ids.clone(), transport).await?;
            tracing::info!(node_id = me, voters = ?ids, "following the metadata quorum as an observer");
            Ok(member)
        });
    }
    let my_addr = voters
        .iter()
        .find(|(id, _)| *id == me)
        .map(|(_, a)| a.clone())
        .unwrap_or_default();
    let dir = dir.to_path_buf();
    tokio::runtime::Handle::current().block_on(async move {
        let listener = tokio::net::TcpListener::bind(&my_addr)
            .await
            .map_err(|e| {
                BrokerError::Config(format!("cannot listen on quorum address {my_addr}: {e}"))
            })?;
        let transport =
            Arc::new(tcp::TcpTransport::new(peers).with_isolation(isolated.clone()));
        let member = Arc::new(
            QuorumMetadataLog::start(me as u64, &dir, &QuorumSettings::default(), transport)
                .await?,
        );
        tokio::spawn(tcp::serve_member(listener, member.clone(), isolated));
        // Every voter offers the same initial membership; a member that already has a log
        // refuses, which is fine.
        if let Err(e) = member.initialize(&ids).await {
            tracing::debug!(error = %e, "metadata quorum already formed");
        }
        tracing::info!(node_id = me, quorum = %my_addr, voters = ?ids, "metadata quorum member started");
        Ok(member)
    })
}

/// The roles of this process (`process.roles`): (broker, controller).
pub fn roles(config: &BrokerConfig) -> (bool, bool) {
    let roles: Vec<String> = config
        .get("process.roles")
        .split(',')
        .map(|r| r.trim().to_ascii_lowercase())
        .collect();
    (
        roles.iter().any(|r| r == "broker"),
        roles.iter().any(|r| r == "controller"),
    )
}

/// A controller-only node (`process.roles=controller`): a voter of the metadata quorum that
/// serves no clients; while it leads the quorum it is the active controller. Runs until
/// `shutdown` turns true.
pub async fn run_controller(
    config: BrokerConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), BrokerError> {
    let voters = config.quorum_voters().map_err(BrokerError::Config)?;
    if voters.is_empty() {
        return Err(BrokerError::Config(
            "process.roles=controller needs controller.quorum.voters".into(),
        ));
    }
    let data_dir = config.log_dir();
    let lock = crate::broker::lock_data_dir(&data_dir)?;
    let metadata_dir = data_dir.join("__cluster_metadata-0");
    let config = Arc::new(config);
    let q = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            start_quorum(&config, &voters, &metadata_dir, Arc::default())
        })
        .await
        .map_err(|e| BrokerError::Config(format!("quorum start-up panicked: {e}")))??
    };
    tracing::info!(node_id = config.node_id(), "strom controller running");
    controller(config, q.clone(), shutdown).await;
    q.shutdown().await;
    drop(lock);
    tracing::info!("strom controller stopped");
    Ok(())
}

/// A cluster id all members agree on without talking: derived from the voters.
pub fn cluster_id_for(voters: &[(i32, String)]) -> String {
    let text: Vec<String> = voters.iter().map(|(id, a)| format!("{id}@{a}")).collect();
    let text = text.join(",");
    let mut bytes = [0u8; 16];
    // Two FNV-1a hashes with different offsets fill 16 bytes.
    for (half, seed) in [
        (0usize, 0xcbf2_9ce4_8422_2325u64),
        (8, 0x6c62_272e_07bb_0142),
    ] {
        let mut h = seed;
        for b in text.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        bytes[half..half + 8].copy_from_slice(&h.to_be_bytes());
    }
    crate::broker::base64_url(&bytes)
}

/// Runs the cluster's background work of this broker until shutdown: following the metadata
/// log, heartbeats, the active controller's checks, ISR shrinking and the replica fetchers.
pub fn start(
    broker: &Arc<Broker>,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    if let Some(proposals) = broker.replicas.take_isr_proposals() {
        tasks.push(tokio::spawn(isr::isr_manager(
            broker.clone(),
            proposals,
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(crate::replica_fetcher::run(
        broker.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(crate::coordinators::send_remote_markers(
        broker.clone(),
        shutdown.clone(),
    )));
    if let Some(q) = &broker.quorum {
        tasks.push(tokio::spawn(follow_metadata(
            broker.clone(),
            q.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(heartbeat::heartbeats(
            broker.clone(),
            q.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(controller(
            Arc::new(broker.config.clone()),
            q.clone(),
            shutdown,
        )));
    }
    tasks
}

/// Applies each new metadata image to the hosted partitions.
async fn follow_metadata(
    broker: Arc<Broker>,
    q: Arc<QuorumMetadataLog>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last = 0u64;
    loop {
        let image = tokio::select! {
            i = q.wait_newer(last, Duration::from_secs(1)) => i,
            _ = shutdown.changed() => return,
        };
        if image.offset == last {
            continue;
        }
        last = image.offset;
        if let Err(e) = broker
            .replicas
            .reconcile(&image, &broker.config, crate::now_ms())
        {
            tracing::warn!(error = %e, "cannot apply metadata to the partitions");
        }
        broker.on_metadata(&image);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_agree_across_members_and_differ_between_clusters() {
        let a = vec![(1, "h:1".to_string()), (2, "h:2".to_string())];
        let b = vec![(1, "h:1".to_string()), (2, "h:3".to_string())];
        assert_eq!(cluster_id_for(&a), cluster_id_for(&a.clone()));
        assert_ne!(cluster_id_for(&a), cluster_id_for(&b));
        assert_eq!(cluster_id_for(&a).len(), 22);
    }
}

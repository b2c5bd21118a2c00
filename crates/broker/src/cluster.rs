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

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strom_metadata::quorum::{QuorumMetadataLog, QuorumSettings, tcp};
use strom_metadata::{MetadataImage, MetadataLog, MetadataRecord, TopicInfo};
use tokio::sync::watch;

use crate::broker::{Broker, BrokerError};
use crate::config::BrokerConfig;
use crate::replica_manager::Partition;
use crate::replication::IsrChange;

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

fn unclean_allowed(config: &BrokerConfig, topic: &TopicInfo) -> bool {
    config
        .topic_value(&topic.configs, "unclean.leader.election.enable")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn is_live(image: &MetadataImage, broker: i32) -> bool {
    image.brokers.get(&broker).is_some_and(|b| !b.fenced)
}

/// The record that moves partition `p` to a new state: the next partition epoch, and the next
/// leader epoch when the leader changes.
fn next_record(
    topic_id: strom_metadata::Uuid,
    p: &strom_metadata::PartitionInfo,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    leader: i32,
    adding: Vec<i32>,
    removing: Vec<i32>,
) -> MetadataRecord {
    // Every partition change the controller decides passes here: a leader is only ever elected
    // from the in-sync replicas (so the ISR is never empty while a leader is elected from it).
    // Every caller picks the leader among `isr`; a violation is a controller bug that would let
    // a replica missing acknowledged records lead, so it stops the process.
    assert!(
        leader < 0 || (isr.contains(&leader) && replicas.contains(&leader)),
        "controller invariant: partition {} would be led by {leader}, outside its ISR {isr:?} or replicas {replicas:?}",
        p.partition
    );
    MetadataRecord::Partition {
        topic_id,
        partition: p.partition,
        replicas,
        isr,
        leader,
        leader_epoch: if leader != p.leader {
            p.leader_epoch + 1
        } else {
            p.leader_epoch
        },
        partition_epoch: p.partition_epoch + 1,
        adding,
        removing,
    }
}

/// A partition record for a changed leader or ISR, replicas unchanged.
fn changed(
    topic: &TopicInfo,
    p: &strom_metadata::PartitionInfo,
    leader: i32,
    isr: Vec<i32>,
) -> MetadataRecord {
    next_record(
        topic.topic_id,
        p,
        p.replicas.clone(),
        isr,
        leader,
        p.adding.clone(),
        p.removing.clone(),
    )
}

/// Picks a leader among `p`'s live in-sync replicas (in replica order), or among any live
/// replica when an unclean election is allowed; returns (leader, ISR).
fn elect(
    image: &MetadataImage,
    p: &strom_metadata::PartitionInfo,
    isr: &[i32],
    unclean: bool,
    excluded: i32,
) -> Option<(i32, Vec<i32>)> {
    let usable = |r: i32| r != excluded && is_live(image, r);
    if let Some(l) = p
        .replicas
        .iter()
        .copied()
        .find(|r| isr.contains(r) && usable(*r))
    {
        return Some((l, isr.to_vec()));
    }
    if unclean {
        return p
            .replicas
            .iter()
            .copied()
            .find(|r| usable(*r))
            .map(|l| (l, vec![l]));
    }
    None
}

/// Fences `broker_id`: it leaves every ISR it is in (unless it is the last member), and each
/// partition it led gets a new leader from the rest of the ISR, or none.
pub fn fence_records(
    image: &MetadataImage,
    broker_id: i32,
    unclean: impl Fn(&TopicInfo) -> bool,
) -> Vec<MetadataRecord> {
    let mut out = vec![MetadataRecord::FenceBroker { broker_id }];
    for topic in image.topics.values() {
        for p in &topic.partitions {
            if !p.replicas.contains(&broker_id) {
                continue;
            }
            let rest: Vec<i32> = p.isr.iter().copied().filter(|r| *r != broker_id).collect();
            if p.leader == broker_id {
                match elect(image, p, &rest, unclean(topic), broker_id) {
                    Some((leader, isr)) => out.push(changed(topic, p, leader, isr)),
                    // No one else may lead: the partition is offline, and the ISR keeps who
                    // may lead when it returns.
                    None => out.push(changed(topic, p, -1, p.isr.clone())),
                }
            } else if p.isr.contains(&broker_id) && !rest.is_empty() {
                out.push(changed(topic, p, p.leader, rest));
            }
        }
    }
    out
}

/// Elects leaders for partitions that have none (or whose leader is fenced) where a live
/// replica may lead.
pub fn elect_offline(
    image: &MetadataImage,
    unclean: impl Fn(&TopicInfo) -> bool,
) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for topic in image.topics.values() {
        for p in &topic.partitions {
            if p.leader >= 0 && is_live(image, p.leader) {
                continue;
            }
            if let Some((leader, isr)) = elect(image, p, &p.isr, unclean(topic), -1) {
                out.push(changed(topic, p, leader, isr));
            }
        }
    }
    out
}

/// The record that starts moving `p` to `target` replicas (AlterPartitionReassignments): the
/// replica set becomes target + the replicas leaving, the new ones catch up as followers, and
/// [`complete_reassignments`] finishes once they are all in the ISR. A reassignment already
/// in progress is replaced, starting from the replicas it began with.
pub fn reassign_record(
    image: &MetadataImage,
    topic: &TopicInfo,
    p: &strom_metadata::PartitionInfo,
    target: &[i32],
) -> Result<MetadataRecord, (i16, String)> {
    use strom_protocol::error_code as ec;
    let mut seen = BTreeSet::new();
    if target.is_empty() || !target.iter().all(|r| seen.insert(*r)) {
        return Err((
            ec::INVALID_REPLICA_ASSIGNMENT,
            format!("replicas {target:?} must be distinct and not empty"),
        ));
    }
    if let Some(r) = target.iter().find(|r| !image.brokers.contains_key(r)) {
        return Err((
            ec::INVALID_REPLICA_ASSIGNMENT,
            format!("broker {r} is not registered"),
        ));
    }
    let original = original_replicas(p);
    let adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|r| !original.contains(r))
        .collect();
    let removing: Vec<i32> = original
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    let mut replicas = target.to_vec();
    replicas.extend(removing.iter().copied());
    // Replicas of an abandoned earlier target leave the ISR.
    let isr: Vec<i32> = p
        .isr
        .iter()
        .copied()
        .filter(|r| replicas.contains(r))
        .collect();
    Ok(finish_if_ready(
        image, topic, p, replicas, isr, adding, removing,
    ))
}

/// The replicas `p` had before the reassignment in progress (its replicas without those being
/// added).
fn original_replicas(p: &strom_metadata::PartitionInfo) -> Vec<i32> {
    p.replicas
        .iter()
        .copied()
        .filter(|r| !p.adding.contains(r))
        .collect()
}

/// Cancels the reassignment of `p`: back to the replicas it started with.
pub fn cancel_record(
    image: &MetadataImage,
    topic: &TopicInfo,
    p: &strom_metadata::PartitionInfo,
) -> Result<MetadataRecord, (i16, String)> {
    if p.adding.is_empty() && p.removing.is_empty() {
        return Err((
            strom_protocol::error_code::NO_REASSIGNMENT_IN_PROGRESS,
            format!(
                "no reassignment of {}-{} is in progress",
                topic.name, p.partition
            ),
        ));
    }
    let original = original_replicas(p);
    let isr: Vec<i32> = p
        .isr
        .iter()
        .copied()
        .filter(|r| original.contains(r))
        .collect();
    Ok(finish_if_ready(
        image,
        topic,
        p,
        original,
        isr,
        Vec::new(),
        Vec::new(),
    ))
}

/// A partition record with these replicas: when nothing is being added any more, the
/// replicas being removed go, and the leader moves into the remaining ISR if it was leaving.
fn finish_if_ready(
    image: &MetadataImage,
    topic: &TopicInfo,
    p: &strom_metadata::PartitionInfo,
    mut replicas: Vec<i32>,
    mut isr: Vec<i32>,
    adding: Vec<i32>,
    mut removing: Vec<i32>,
) -> MetadataRecord {
    let adding_in_sync = adding.iter().all(|r| isr.contains(r));
    if adding_in_sync {
        replicas.retain(|r| !removing.contains(r));
        let kept: Vec<i32> = isr
            .iter()
            .copied()
            .filter(|r| replicas.contains(r))
            .collect();
        if !kept.is_empty() {
            isr = kept;
        }
        removing.clear();
    }
    let mut leader = p.leader;
    if !replicas.contains(&leader) || !isr.contains(&leader) || !is_live(image, leader) {
        leader = replicas
            .iter()
            .copied()
            .find(|r| isr.contains(r) && is_live(image, *r))
            .unwrap_or(-1);
    }
    let adding = if adding_in_sync { Vec::new() } else { adding };
    next_record(topic.topic_id, p, replicas, isr, leader, adding, removing)
}

/// Finishes the reassignments whose new replicas have all joined the ISR.
pub fn complete_reassignments(image: &MetadataImage) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for topic in image.topics.values() {
        for p in &topic.partitions {
            if (p.adding.is_empty() && p.removing.is_empty())
                || !p.adding.iter().all(|r| p.isr.contains(r))
            {
                continue;
            }
            out.push(finish_if_ready(
                image,
                topic,
                p,
                p.replicas.clone(),
                p.isr.clone(),
                p.adding.clone(),
                p.removing.clone(),
            ));
        }
    }
    out
}

/// A leader election asked for by ElectLeaders: preferred (the first replica, if it is live
/// and in sync) or unclean (any live replica, only for a partition without a leader).
pub fn elect_record(
    image: &MetadataImage,
    topic: &TopicInfo,
    p: &strom_metadata::PartitionInfo,
    unclean: bool,
) -> Result<MetadataRecord, (i16, String)> {
    use strom_protocol::error_code as ec;
    let name = format!("{}-{}", topic.name, p.partition);
    if unclean {
        if p.leader >= 0 && is_live(image, p.leader) {
            return Err((ec::ELECTION_NOT_NEEDED, format!("{name} has a leader")));
        }
        return match elect(image, p, &p.isr, true, -1) {
            Some((leader, isr)) => Ok(changed(topic, p, leader, isr)),
            None => Err((
                ec::ELIGIBLE_LEADERS_NOT_AVAILABLE,
                format!("no replica of {name} is alive"),
            )),
        };
    }
    let preferred = p.target_replicas().first().copied().unwrap_or(-1);
    if p.leader == preferred {
        return Err((
            ec::ELECTION_NOT_NEEDED,
            format!("{name} is led by its preferred replica"),
        ));
    }
    if !p.isr.contains(&preferred) || !is_live(image, preferred) {
        return Err((
            ec::PREFERRED_LEADER_NOT_AVAILABLE,
            format!("preferred replica {preferred} of {name} is not alive and in sync"),
        ));
    }
    Ok(changed(topic, p, preferred, p.isr.clone()))
}

/// Preferred leader elections for every partition whose preferred replica can lead and does
/// not (`auto.leader.rebalance.enable`).
pub fn preferred_elections(image: &MetadataImage) -> Vec<MetadataRecord> {
    image
        .topics
        .values()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter_map(move |p| elect_record(image, t, p, false).ok())
        })
        .collect()
}

/// Runs the cluster's background work of this broker until shutdown: following the metadata
/// log, heartbeats, the active controller's checks, ISR shrinking and the replica fetchers.
pub fn start(
    broker: &Arc<Broker>,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    if let Some(proposals) = broker.replicas.take_isr_proposals() {
        tasks.push(tokio::spawn(isr_manager(
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
        tasks.push(tokio::spawn(heartbeats(
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

/// Tells the active controller this broker is alive; registers again if it was fenced.
async fn heartbeats(
    broker: Arc<Broker>,
    q: Arc<QuorumMetadataLog>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every =
        Duration::from_millis(broker.config.settings().broker_heartbeat_interval_ms.max(1) as u64);
    let session =
        Duration::from_millis(broker.config.settings().broker_session_timeout_ms.max(1) as u64);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Since when heartbeats fail, and whether that has been reported.
    let mut failing: Option<(Instant, bool)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        match q.heartbeat(broker.node_id).await {
            Ok(()) => {
                if let Some((since, true)) = failing.take() {
                    tracing::info!(
                        failed_for_ms = since.elapsed().as_millis() as u64,
                        "heartbeats reach the controller again"
                    );
                }
                let fenced = broker
                    .image()
                    .brokers
                    .get(&broker.node_id)
                    .is_none_or(|b| b.fenced);
                if fenced && !broker.is_shutting_down() {
                    tracing::info!(
                        node_id = broker.node_id,
                        "fenced by the controller; registering again"
                    );
                    if let Err(e) = broker.register().await {
                        tracing::warn!(error = %e, "cannot register with the controller");
                    }
                }
            }
            Err(e) => {
                let (since, reported) = failing.get_or_insert((Instant::now(), false));
                if !*reported && since.elapsed() >= session {
                    *reported = true;
                    tracing::warn!(
                        error = %e,
                        failed_for_ms = since.elapsed().as_millis() as u64,
                        "heartbeats do not reach the controller; it fences this broker after broker.session.timeout.ms"
                    );
                } else {
                    tracing::debug!(error = %e, "heartbeat not delivered");
                }
            }
        }
    }
}

/// The active controller's periodic work (only while this member leads the quorum): fence
/// brokers that stopped heartbeating and elect leaders where there are none.
pub async fn controller(
    config: Arc<BrokerConfig>,
    q: Arc<QuorumMetadataLog>,
    mut shutdown: watch::Receiver<bool>,
) {
    let session = Duration::from_millis(config.settings().broker_session_timeout_ms.max(1) as u64);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading_since: Option<Instant> = None;
    let rebalance_every = config.settings().auto_leader_rebalance_enable.then(|| {
        Duration::from_secs(
            config
                .settings()
                .leader_imbalance_check_interval_seconds
                .max(1) as u64,
        )
    });
    let mut last_rebalance = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if !q.is_leader() {
            leading_since = None;
            continue;
        }
        let now = Instant::now();
        // A new active controller gives every broker a full session to show up.
        let since = *leading_since.get_or_insert(now);
        let image = q.image();
        let beats = q.last_heartbeats();
        let unclean = |t: &TopicInfo| unclean_allowed(&config, t);
        let expired = image.live_brokers().find(|b| {
            let last = beats.get(&b.broker_id).map_or(since, |t| (*t).max(since));
            now.duration_since(last) > session
        });
        let mut records = match expired {
            Some(b) => {
                tracing::warn!(
                    broker = b.broker_id,
                    "broker missed its heartbeats; fencing it"
                );
                fence_records(&image, b.broker_id, unclean)
            }
            None => elect_offline(&image, unclean),
        };
        if records.is_empty() {
            records = complete_reassignments(&image);
            if !records.is_empty() {
                tracing::info!(partitions = records.len(), "reassignment complete");
            }
        }
        if records.is_empty()
            && rebalance_every.is_some_and(|every| last_rebalance.elapsed() >= every)
        {
            last_rebalance = Instant::now();
            records = preferred_elections(&image);
            if !records.is_empty() {
                tracing::info!(
                    partitions = records.len(),
                    "moving leadership back to preferred replicas"
                );
            }
        }
        if records.is_empty() {
            continue;
        }
        let elections = records
            .iter()
            .filter(|r| matches!(r, MetadataRecord::Partition { .. }))
            .count();
        match q.append_async(records).await {
            Ok(_) => tracing::info!(
                partitions = elections,
                "controller changed partition leadership"
            ),
            Err(e) => tracing::debug!(error = %e, "controller change not applied; trying again"),
        }
    }
}

/// The one task that proposes ISR changes of the partitions this broker leads: followers that
/// caught up (the fetch path reports them through [`ReplicaManager::propose_isr`]) and, every
/// half `replica.lag.time.max.ms`, followers that stopped keeping up. Changes found together
/// go to the controller in one metadata commit, as Kafka's AlterPartition batches them.
///
/// [`ReplicaManager::propose_isr`]: crate::replica_manager::ReplicaManager::propose_isr
async fn isr_manager(
    broker: Arc<Broker>,
    mut proposals: tokio::sync::mpsc::Receiver<crate::replica_manager::IsrProposal>,
    mut shutdown: watch::Receiver<bool>,
) {
    let lag_ms = broker.config.settings().replica_lag_time_max_ms.max(1);
    let mut tick =
        tokio::time::interval(Duration::from_millis((lag_ms as u64 / 2).clamp(50, 5000)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut changes = Vec::new();
        tokio::select! {
            _ = tick.tick() => {
                let now = crate::now_ms();
                for p in broker.replicas.all() {
                    if !p.is_replicated() {
                        continue;
                    }
                    if let Some(change) = p.maybe_shrink_isr(now, lag_ms) {
                        tracing::info!(topic = %p.topic, partition = p.index, isr = ?change.new_isr, "follower fell behind; shrinking the ISR");
                        changes.push((p, change));
                    }
                }
            }
            Some(proposed) = proposals.recv() => changes.push(proposed),
            _ = shutdown.changed() => return,
        }
        while let Ok(proposed) = proposals.try_recv() {
            changes.push(proposed);
        }
        if !changes.is_empty() {
            alter_isr(&broker, changes).await;
        }
    }
}

/// Asks the controller for ISR changes of partitions this broker leads (as AlterPartition
/// does): a partition record with the next partition epoch for each, all in one commit. A
/// change based on a partition state that moved meanwhile is dropped, and a refused commit
/// drops them all; either way the partition may propose again.
async fn alter_isr(broker: &Broker, changes: Vec<(Arc<Partition>, IsrChange)>) {
    let image = broker.image();
    let mut records = Vec::with_capacity(changes.len());
    let mut proposed = Vec::with_capacity(changes.len());
    for (p, change) in changes {
        match isr_record(&image, broker.node_id, &p, &change) {
            Some(record) => {
                records.push(record);
                proposed.push((p, change));
            }
            None => p.isr_change_failed(),
        }
    }
    if records.is_empty() {
        return;
    }
    match broker.commit_metadata_async(records).await {
        Ok(_) => {
            for (p, change) in &proposed {
                tracing::info!(topic = %p.topic, partition = p.index, isr = ?change.new_isr, "ISR changed");
            }
        }
        Err(e) => {
            tracing::debug!(changes = proposed.len(), error = %e, "ISR changes refused");
            for (p, _) in proposed {
                p.isr_change_failed();
            }
        }
    }
}

/// The partition record of an ISR change, or None when the partition's state in `image` is no
/// longer the one the change was based on (another leader epoch or partition epoch).
pub fn isr_record(
    image: &MetadataImage,
    node_id: i32,
    p: &Partition,
    change: &IsrChange,
) -> Option<MetadataRecord> {
    let info = image.partition(&p.topic_id, p.index).filter(|i| {
        i.leader == node_id
            && i.leader_epoch == change.leader_epoch
            && i.partition_epoch == change.partition_epoch
    })?;
    let isr: Vec<i32> = info
        .replicas
        .iter()
        .copied()
        .filter(|r| change.new_isr.contains(r))
        .collect();
    Some(next_record(
        p.topic_id,
        info,
        info.replicas.clone(),
        isr,
        node_id,
        info.adding.clone(),
        info.removing.clone(),
    ))
}

/// Moves leadership away from this broker before it stops (controlled shutdown): it fences
/// itself, so the controller elects other leaders from the ISRs now rather than after the
/// session timeout.
///
/// It tries for at most `broker.session.timeout.ms`: by then a live controller fences this
/// broker anyway, and without a quorum (the last nodes of a cluster stopping) nothing can be
/// committed at all, so waiting longer would only delay the stop.
pub async fn controlled_shutdown(broker: &Arc<Broker>) {
    if broker.quorum.is_none() || !broker.config.settings().controlled_shutdown_enable {
        return;
    }
    let session =
        Duration::from_millis(broker.config.settings().broker_session_timeout_ms.max(1) as u64);
    let moved = tokio::time::timeout(session, async {
        for _ in 0..5 {
            let image = broker.image();
            if image.brokers.get(&broker.node_id).is_none_or(|b| b.fenced) {
                return true;
            }
            let records = fence_records(&image, broker.node_id, |t| {
                unclean_allowed(&broker.config, t)
            });
            match broker.commit_metadata_async(records).await {
                Ok(_) => return true,
                Err(e) => {
                    tracing::info!(error = %e, "controlled shutdown not done yet; trying again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        false
    })
    .await;
    match moved {
        Ok(true) => tracing::info!("controlled shutdown: leadership moved to other replicas"),
        _ => tracing::warn!("controlled shutdown could not reach the controller; stopping anyway"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_metadata::Uuid;

    fn image(fenced: &[i32], partitions: &[(i32, &[i32], &[i32])]) -> MetadataImage {
        let mut img = MetadataImage::default();
        for b in 1..=3 {
            img.apply(&MetadataRecord::RegisterBroker {
                broker_id: b,
                host: "h".into(),
                port: 1,
                rack: None,
            });
        }
        for b in fenced {
            img.apply(&MetadataRecord::FenceBroker { broker_id: *b });
        }
        let id = Uuid::from_u128(1);
        img.apply(&MetadataRecord::Topic {
            name: "t".into(),
            topic_id: id,
        });
        for (i, (leader, replicas, isr)) in partitions.iter().enumerate() {
            img.apply(&MetadataRecord::Partition {
                topic_id: id,
                partition: i as i32,
                replicas: replicas.to_vec(),
                isr: isr.to_vec(),
                leader: *leader,
                leader_epoch: 4,
                partition_epoch: 7,
                adding: vec![],
                removing: vec![],
            });
        }
        img
    }

    fn partition(r: &MetadataRecord) -> (i32, Vec<i32>, i32, i32) {
        match r {
            MetadataRecord::Partition {
                leader,
                isr,
                leader_epoch,
                partition_epoch,
                ..
            } => (*leader, isr.clone(), *leader_epoch, *partition_epoch),
            other => panic!("not a partition record: {other:?}"),
        }
    }

    #[test]
    #[should_panic(expected = "outside its ISR")]
    fn a_leader_outside_the_isr_is_refused() {
        let p = strom_metadata::PartitionInfo {
            partition: 0,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2],
            leader: 1,
            leader_epoch: 4,
            partition_epoch: 7,
            adding: vec![],
            removing: vec![],
        };
        next_record(
            strom_metadata::Uuid::nil(),
            &p,
            p.replicas.clone(),
            vec![1, 2],
            3,
            vec![],
            vec![],
        );
    }

    #[test]
    fn fencing_a_leader_elects_from_the_isr_and_shrinks_other_isrs() {
        let img = image(
            &[],
            &[
                (1, &[1, 2, 3], &[1, 2, 3]),
                (2, &[2, 1, 3], &[2, 1]),
                (2, &[2, 3], &[2, 3]),
                (1, &[1, 3], &[1]),
            ],
        );
        let records = fence_records(&img, 1, |_| false);
        assert_eq!(records[0], MetadataRecord::FenceBroker { broker_id: 1 });
        // p0: 2 takes over, with the next epochs.
        assert_eq!(partition(&records[1]), (2, vec![2, 3], 5, 8));
        // p1: 1 leaves the ISR, the leader stays.
        assert_eq!(partition(&records[2]), (2, vec![2], 4, 8));
        // p3: 1 was the only in-sync replica: no leader, ISR kept.
        assert_eq!(partition(&records[3]), (-1, vec![1], 5, 8));
        assert_eq!(records.len(), 4);
        // Unclean election takes the out-of-sync replica.
        let records = fence_records(&img, 1, |_| true);
        assert_eq!(partition(&records[3]), (3, vec![3], 5, 8));
        // Every record applies after the image.
        img.validate(&fence_records(&img, 1, |_| false)).unwrap();
    }

    #[test]
    fn offline_partitions_get_a_leader_when_an_isr_member_returns() {
        let img = image(
            &[3],
            &[(-1, &[1, 3], &[1]), (-1, &[3], &[3]), (2, &[2], &[2])],
        );
        let records = elect_offline(&img, |_| false);
        assert_eq!(records.len(), 1);
        assert_eq!(partition(&records[0]), (1, vec![1], 5, 8));
    }

    #[test]
    fn a_reassignment_adds_first_and_removes_once_the_new_replicas_are_in_sync() {
        let mut img = image(&[], &[(1, &[1, 2, 3], &[1, 2, 3])]);
        img.apply(&MetadataRecord::RegisterBroker {
            broker_id: 4,
            host: "h".into(),
            port: 1,
            rack: None,
        });
        let topic = img.topic("t").unwrap().clone();
        let p = topic.partitions[0].clone();
        let start = reassign_record(&img, &topic, &p, &[2, 3, 4]).unwrap();
        img.validate(std::slice::from_ref(&start)).unwrap();
        img.apply(&start);
        let p = &img.topic("t").unwrap().partitions[0];
        assert_eq!(
            (
                p.replicas.clone(),
                p.adding.clone(),
                p.removing.clone(),
                p.leader
            ),
            (vec![2, 3, 4, 1], vec![4], vec![1], 1)
        );
        // Not done until 4 is in sync.
        assert!(complete_reassignments(&img).is_empty());
        let mut joined = p.clone();
        joined.isr = vec![1, 2, 3, 4];
        joined.partition_epoch += 1;
        img.apply(&MetadataRecord::Partition {
            topic_id: topic.topic_id,
            partition: 0,
            replicas: joined.replicas.clone(),
            isr: joined.isr.clone(),
            leader: 1,
            leader_epoch: joined.leader_epoch,
            partition_epoch: joined.partition_epoch,
            adding: joined.adding.clone(),
            removing: joined.removing.clone(),
        });
        let done = complete_reassignments(&img);
        assert_eq!(done.len(), 1);
        img.apply(&done[0]);
        let p = &img.topic("t").unwrap().partitions[0];
        assert_eq!(p.replicas, vec![2, 3, 4]);
        assert_eq!(p.isr, vec![2, 3, 4]);
        // The leader was leaving: the first in-sync target replica takes over.
        assert_eq!((p.leader, p.leader_epoch), (2, 5));
        assert!(p.adding.is_empty() && p.removing.is_empty());
        // Errors: unknown broker, duplicates; cancelling with nothing in progress.
        assert!(reassign_record(&img, &topic, p, &[2, 9]).is_err());
        assert!(reassign_record(&img, &topic, p, &[2, 2]).is_err());
        assert!(cancel_record(&img, &topic, p).is_err());
    }

    #[test]
    fn preferred_election_needs_the_first_replica_alive_and_in_sync() {
        let img = image(
            &[3],
            &[
                (2, &[1, 2], &[1, 2]),
                (2, &[3, 2], &[3, 2]),
                (1, &[1], &[1]),
            ],
        );
        let records = preferred_elections(&img);
        assert_eq!(records.len(), 1);
        assert_eq!(partition(&records[0]), (1, vec![1, 2], 5, 8));
    }

    #[test]
    fn cluster_ids_agree_across_members_and_differ_between_clusters() {
        let a = vec![(1, "h:1".to_string()), (2, "h:2".to_string())];
        let b = vec![(1, "h:1".to_string()), (2, "h:3".to_string())];
        assert_eq!(cluster_id_for(&a), cluster_id_for(&a.clone()));
        assert_ne!(cluster_id_for(&a), cluster_id_for(&b));
        assert_eq!(cluster_id_for(&a).len(), 22);
    }
}

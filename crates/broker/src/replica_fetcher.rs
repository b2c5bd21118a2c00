//! Followers copy their leaders' logs with the Fetch API, as any Kafka broker does: one fetcher
//! task per leader broker, fetching every partition this broker follows there in one request
//! (replica id set, so the leader counts the fetch offset as this replica's position and
//! answers from its whole log, not only below the high watermark).
//!
//! Before it fetches a partition under a new leader epoch, the fetcher asks the leader where
//! its own latest epoch ends (OffsetForLeaderEpoch) and truncates what the leader does not
//! have: a leader that lost its leadership drops its unacknowledged tail this way.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use strom_client::{ClientError, Connection, ConnectionConfig};
use strom_protocol::error_code as ec;
use strom_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use strom_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use strom_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, OffsetForLeaderEpochRequest, RequestKind, ResponseKind,
    TopicName,
};
use strom_protocol::str_bytes;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::replica_manager::{FollowedPartitions, Partition};

const FETCH_VERSION: i16 = 12;
const EPOCH_VERSION: i16 = 4;

/// A running fetcher: the partitions it copies, and its task.
type Fetcher = (
    watch::Sender<Vec<Arc<Partition>>>,
    tokio::task::JoinHandle<()>,
);

/// Starts and stops one fetcher per leader as the followed partitions change.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut followed = broker.replicas.followed.subscribe();
    let mut fetchers: HashMap<i32, Fetcher> = HashMap::new();
    loop {
        let current: FollowedPartitions = followed.borrow_and_update().clone();
        fetchers.retain(|leader, (_, task)| {
            let keep = current.contains_key(leader) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for (leader, parts) in current {
            match fetchers.get(&leader) {
                Some((tx, _)) => {
                    tx.send_replace(parts);
                }
                None => {
                    let (tx, rx) = watch::channel(parts);
                    let task = tokio::spawn(fetch_from(broker.clone(), leader, rx));
                    fetchers.insert(leader, (tx, task));
                }
            }
        }
        tokio::select! {
            changed = followed.changed() => if changed.is_err() { break },
            _ = shutdown.changed() => break,
        }
    }
    for (_, (_, task)) in fetchers {
        task.abort();
    }
}

type Key = (String, i32);

/// Copies the partitions in `parts` from broker `leader` until the task is aborted.
async fn fetch_from(
    broker: Arc<Broker>,
    leader: i32,
    mut parts: watch::Receiver<Vec<Arc<Partition>>>,
) {
    let backoff = Duration::from_millis(
        broker
            .config
            .settings()
            .replica_fetch_backoff_ms
            .clamp(10, 60_000) as u64,
    );
    let settings = broker.config.settings();
    let max_wait = settings.replica_fetch_wait_max_ms.min(60_000);
    let partition_max = settings.replica_fetch_max_bytes.max(1);
    let response_max = settings.replica_fetch_response_max_bytes.max(1);
    let config = ConnectionConfig {
        client_id: format!("strom-replica-fetcher-{}", broker.node_id),
        request_timeout: Duration::from_secs(30),
        ..ConnectionConfig::default()
    };
    let mut conn: Option<Connection> = None;
    // The leader epoch under which each partition was last checked for divergence.
    let mut checked: HashMap<Key, i32> = HashMap::new();
    loop {
        if broker.is_isolated() {
            // Fault injection: no traffic to the other brokers.
            conn = None;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let set: Vec<Arc<Partition>> = parts.borrow_and_update().clone();
        if set.is_empty() {
            if parts.changed().await.is_err() {
                return;
            }
            continue;
        }
        if conn.as_ref().is_none_or(|c| c.is_broken()) {
            let Some(b) = broker.image().brokers.get(&leader).cloned() else {
                tokio::time::sleep(backoff).await;
                continue;
            };
            let addr = format!("{}:{}", b.host, b.port);
            match Connection::connect(&addr, config.clone()).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::debug!(leader, %addr, error = %e, "cannot reach the leader");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        // Partitions under a leader epoch not yet checked: truncate what diverges first.
        let unchecked: Vec<Arc<Partition>> = set
            .iter()
            .filter(|p| checked.get(&(p.topic.clone(), p.index)) != Some(&p.leader_epoch()))
            .cloned()
            .collect();
        if !unchecked.is_empty() {
            match truncate_divergent(&broker, c, &unchecked).await {
                Ok(done) => {
                    for (key, epoch) in done {
                        checked.insert(key, epoch);
                    }
                }
                Err(e) => {
                    tracing::debug!(leader, error = %e, "OffsetForLeaderEpoch failed");
                    conn = None;
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
        }
        let ready: Vec<Arc<Partition>> = set
            .iter()
            .filter(|p| checked.get(&(p.topic.clone(), p.index)) == Some(&p.leader_epoch()))
            .cloned()
            .collect();
        if ready.is_empty() {
            tokio::time::sleep(backoff.min(Duration::from_millis(200))).await;
            continue;
        }
        let request = fetch_request(
            broker.node_id,
            &ready,
            max_wait,
            partition_max,
            response_max,
        );
        let timeout = Duration::from_secs(30) + Duration::from_millis(max_wait as u64);
        let fetched = tokio::select! {
            r = c.send_with_timeout(ApiKey::Fetch, FETCH_VERSION, RequestKind::Fetch(request), timeout) => r,
            // The followed set changed (a new leader epoch, a partition added or gone).
            _ = parts.changed() => continue,
        };
        let response = match fetched {
            Ok(ResponseKind::Fetch(r)) => r,
            Ok(_) => {
                conn = None;
                continue;
            }
            Err(e) => {
                tracing::debug!(leader, error = %e, "replica fetch failed");
                conn = None;
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let by_key: BTreeMap<Key, &Arc<Partition>> = ready
            .iter()
            .map(|p| ((p.topic.clone(), p.index), p))
            .collect();
        let mut fenced = false;
        for t in &response.responses {
            for pd in &t.partitions {
                let key = (t.topic.to_string(), pd.partition_index);
                let Some(p) = by_key.get(&key) else { continue };
                match pd.error_code {
                    ec::NONE => {
                        if let Some(records) = pd.records.as_ref().filter(|r| !r.is_empty()) {
                            let mut buf = records.to_vec();
                            match p.append_replicated(&mut buf, crate::now_ms()) {
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "cannot append fetched batches; checking divergence again");
                                    checked.remove(&key);
                                }
                            }
                        }
                        p.set_follower_high_watermark(pd.high_watermark);
                    }
                    ec::OFFSET_OUT_OF_RANGE => {
                        tracing::info!(topic = %p.topic, partition = p.index, "fetch offset out of range at the leader; checking divergence again");
                        checked.remove(&key);
                    }
                    code => {
                        // NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH...:
                        // the leader and this broker disagree on the metadata for a moment.
                        tracing::debug!(topic = %p.topic, partition = p.index, code, "replica fetch refused");
                        fenced = true;
                    }
                }
            }
        }
        if fenced {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn fetch_request(
    me: i32,
    parts: &[Arc<Partition>],
    max_wait: i32,
    partition_max: i32,
    response_max: i32,
) -> FetchRequest {
    let mut topics: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
    for p in parts {
        let (leo, start) = p.with_log(|l| (l.log_end_offset(), l.log_start_offset()));
        let mut fp = FetchPartition::default();
        fp.partition = p.index;
        fp.current_leader_epoch = p.leader_epoch();
        fp.fetch_offset = leo;
        fp.last_fetched_epoch = -1;
        fp.log_start_offset = start;
        fp.partition_max_bytes = partition_max;
        topics.entry(p.topic.clone()).or_default().push(fp);
    }
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(me);
    req.max_wait_ms = max_wait;
    req.min_bytes = 1;
    req.max_bytes = response_max;
    req.isolation_level = 0;
    req.session_id = 0;
    req.session_epoch = -1;
    req.topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            let mut t = FetchTopic::default();
            t.topic = TopicName(str_bytes(name));
            t.partitions = partitions;
            t
        })
        .collect();
    req
}

/// Asks the leader where each partition's latest local epoch ends and truncates the log there
/// when it goes further. Returns the partitions checked, with the leader epoch they were
/// checked under.
async fn truncate_divergent(
    broker: &Broker,
    conn: &mut Connection,
    parts: &[Arc<Partition>],
) -> Result<Vec<(Key, i32)>, ClientError> {
    let mut done = Vec::new();
    let mut asked: BTreeMap<String, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
    let mut by_key: HashMap<Key, (&Arc<Partition>, i32)> = HashMap::new();
    for p in parts {
        let epoch = p.leader_epoch();
        let latest = p.with_log(|l| l.epochs().latest_epoch());
        let Some(latest) = latest else {
            // An empty log has nothing to diverge.
            done.push(((p.topic.clone(), p.index), epoch));
            continue;
        };
        let mut op = OffsetForLeaderPartition::default();
        op.partition = p.index;
        op.current_leader_epoch = epoch;
        op.leader_epoch = latest;
        asked.entry(p.topic.clone()).or_default().push(op);
        by_key.insert((p.topic.clone(), p.index), (p, epoch));
    }
    if asked.is_empty() {
        return Ok(done);
    }
    let mut req = OffsetForLeaderEpochRequest::default();
    req.replica_id = BrokerId(broker.node_id);
    req.topics = asked
        .into_iter()
        .map(|(name, partitions)| {
            let mut t = OffsetForLeaderTopic::default();
            t.topic = TopicName(str_bytes(name));
            t.partitions = partitions;
            t
        })
        .collect();
    let response = match conn
        .send(
            ApiKey::OffsetForLeaderEpoch,
            EPOCH_VERSION,
            RequestKind::OffsetForLeaderEpoch(req),
        )
        .await?
    {
        ResponseKind::OffsetForLeaderEpoch(r) => r,
        _ => return Ok(done),
    };
    for t in &response.topics {
        for r in &t.partitions {
            let key = (t.topic.to_string(), r.partition);
            let Some((p, epoch)) = by_key.get(&key) else {
                continue;
            };
            if r.error_code != ec::NONE {
                tracing::debug!(topic = %p.topic, partition = p.index, code = r.error_code, "leader cannot answer OffsetForLeaderEpoch yet");
                continue;
            }
            let truncated = p.with_log(|l| {
                let leo = l.log_end_offset();
                let point = crate::replication::divergence_point(
                    |e| l.end_offset_for_epoch(e),
                    l.epochs().latest_epoch(),
                    leo,
                    |_| (r.leader_epoch >= 0).then_some((r.leader_epoch, r.end_offset)),
                );
                if point < leo {
                    l.truncate_to(point).map(|_| Some((leo, point)))
                } else {
                    Ok(None)
                }
            });
            match truncated {
                Ok(Some((from, to))) => {
                    tracing::info!(topic = %p.topic, partition = p.index, from, to, "truncated the log where it diverged from the leader");
                    done.push((key, *epoch));
                }
                Ok(None) => done.push((key, *epoch)),
                Err(e) => {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "cannot truncate the log");
                }
            }
        }
    }
    Ok(done)
}

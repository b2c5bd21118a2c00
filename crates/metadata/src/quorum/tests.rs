//! Three quorum members in one process: records reach every member's image in order, the
//! quorum elects a new leader when the leader is cut off, the cut-off leader cannot commit,
//! and a member rejoining after a restart from its directory catches up.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::MetadataRecord;

fn settings() -> QuorumSettings {
    QuorumSettings {
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        heartbeat_interval_ms: 50,
        snapshot_every: 20,
    }
}

fn broker(id: i32) -> MetadataRecord {
    MetadataRecord::RegisterBroker {
        broker_id: id,
        host: "127.0.0.1".into(),
        port: 9000 + id as u16,
        rack: None,
    }
}

async fn wait_leader(members: &[&QuorumMetadataLog], exclude: Option<MemberId>) -> MemberId {
    for _ in 0..200 {
        for m in members {
            if let Some(l) = m.leader().await
                && Some(l) != exclude
                && members.iter().any(|x| x.id == l)
            {
                return l;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader elected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_replicates_elects_and_catches_up() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let router = Arc::new(LocalRouter::default());
    let mut members = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let id = i as MemberId + 1;
        let m = QuorumMetadataLog::start(id, d.path(), &settings(), router.clone())
            .await
            .unwrap();
        router.add(id, m.raft().cloned().unwrap());
        members.push(m);
    }
    members[0].initialize(&[1, 2, 3]).await.unwrap();
    let refs: Vec<&QuorumMetadataLog> = members.iter().collect();
    let leader = wait_leader(&refs, None).await;
    let lm = &members[leader as usize - 1];
    // Enough batches to cross the snapshot threshold.
    for b in 0..30 {
        lm.append_async(vec![broker(b)]).await.unwrap();
    }
    for m in &members {
        let image = m.wait_for(30, Duration::from_secs(10)).await;
        assert_eq!(image.brokers.len(), 30, "member {}", m.id);
    }
    // A follower does not append itself: it names the leader (append_async then forwards,
    // which this in-process transport does not do).
    let follower = members.iter().find(|m| m.id != leader).unwrap();
    match follower.append_on_leader(vec![broker(99)]).await {
        Err(MetadataError::NotLeader(Some(l))) => assert_eq!(l, leader),
        other => panic!("follower append: {other:?}"),
    }

    // Cut the leader off: the majority elects another; the old leader cannot commit.
    let others: Vec<MemberId> = (1..=3).filter(|i| *i != leader).collect();
    router.isolate(leader, &others, true);
    let rest: Vec<&QuorumMetadataLog> = members.iter().filter(|m| m.id != leader).collect();
    let new_leader = wait_leader(&rest, Some(leader)).await;
    assert_ne!(new_leader, leader);
    let stranded = tokio::time::timeout(
        Duration::from_millis(1500),
        lm.append_async(vec![broker(500)]),
    )
    .await;
    assert!(
        !matches!(stranded, Ok(Ok(_))),
        "an isolated leader must not commit"
    );
    let nm = &members[new_leader as usize - 1];
    for b in 30..40 {
        nm.append_async(vec![broker(b)]).await.unwrap();
    }
    // Heal: the old leader drops its uncommitted entry and catches up.
    router.isolate(leader, &others, false);
    let image = lm.wait_for(40, Duration::from_secs(10)).await;
    assert_eq!(image.brokers.len(), 40);
    assert!(!image.brokers.contains_key(&500));

    // Restart one member from its directory: it comes back with everything.
    let restart_id = others[0];
    let idx = restart_id as usize - 1;
    members[idx].shutdown().await;
    router.remove(restart_id);
    let m = QuorumMetadataLog::start(restart_id, dirs[idx].path(), &settings(), router.clone())
        .await
        .unwrap();
    router.add(restart_id, m.raft().cloned().unwrap());
    let image = m.wait_for(40, Duration::from_secs(10)).await;
    assert_eq!(image.brokers.len(), 40);
    for x in &members {
        x.shutdown().await;
    }
    m.shutdown().await;
}

/// openraft's own conformance suite for log stores and state machines.
struct Builder;

impl openraft::testing::StoreBuilder<QuorumConfig, LogStore, StateMachine, tempfile::TempDir>
    for Builder
{
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), openraft::StorageError<MemberId>> {
        let dir = tempfile::tempdir().unwrap();
        let log = LogStore::open(dir.path()).unwrap();
        let sm = StateMachine::open(dir.path()).unwrap();
        Ok((dir, log, sm))
    }
}

#[test]
fn storage_passes_openraft_suite() {
    openraft::testing::Suite::test_all(Builder).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_over_tcp() {
    let listeners: Vec<tokio::net::TcpListener> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        v
    };
    let peers: std::collections::HashMap<MemberId, std::net::SocketAddr> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (i as MemberId + 1, l.local_addr().unwrap()))
        .collect();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut members = Vec::new();
    let mut servers = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = i as MemberId + 1;
        let transport = Arc::new(tcp::TcpTransport::new(peers.clone()));
        let m = Arc::new(
            QuorumMetadataLog::start(id, dirs[i].path(), &settings(), transport)
                .await
                .unwrap(),
        );
        servers.push(tokio::spawn(tcp::serve_member(
            listener,
            m.clone(),
            Arc::default(),
        )));
        members.push(m);
    }
    members[0].initialize(&[1, 2, 3]).await.unwrap();
    let refs: Vec<&QuorumMetadataLog> = members.iter().map(|m| m.as_ref()).collect();
    let leader = wait_leader(&refs, None).await;
    let lm = &members[leader as usize - 1];
    for b in 0..24 {
        lm.append_async(vec![broker(b)]).await.unwrap();
    }
    // A follower's append travels to the leader; the follower sees it when the call returns.
    let follower = members.iter().find(|m| m.id != leader).unwrap();
    let image = follower.append_async(vec![broker(24)]).await.unwrap();
    assert!(image.brokers.contains_key(&24));
    for m in &members {
        assert_eq!(
            m.wait_for(25, Duration::from_secs(10)).await.brokers.len(),
            25
        );
    }
    // The leader checks forwarded records against its image: a topic is created once.
    let topic = MetadataRecord::Topic {
        name: "t".into(),
        topic_id: crate::Uuid::from_u128(1),
    };
    follower.append_async(vec![topic.clone()]).await.unwrap();
    match follower.append_async(vec![topic]).await {
        Err(MetadataError::Conflict(m)) => assert!(m.contains("already exists"), "{m}"),
        other => panic!("second creation: {other:?}"),
    }
    // Heartbeats from a follower's broker reach the leader.
    follower.heartbeat(7).await.unwrap();
    assert!(lm.last_heartbeats().contains_key(&7));
    // An observer (not a voter) copies the log from the voters and appends through the leader.
    let observer_dir = tempfile::tempdir().unwrap();
    let observer = QuorumMetadataLog::start_observer(
        9,
        observer_dir.path(),
        vec![1, 2, 3],
        Arc::new(tcp::TcpTransport::new(peers.clone())),
    )
    .await
    .unwrap();
    assert!(observer.is_observer());
    assert_eq!(
        observer
            .wait_for(26, Duration::from_secs(10))
            .await
            .brokers
            .len(),
        25
    );
    let image = observer.append_async(vec![broker(300)]).await.unwrap();
    assert!(image.brokers.contains_key(&300));
    observer.heartbeat(9).await.unwrap();
    assert!(lm.last_heartbeats().contains_key(&9));
    assert_eq!(observer.leader_id(), Some(leader));
    // The leader's process goes away: the other two carry on.
    lm.shutdown().await;
    servers[leader as usize - 1].abort();
    let rest: Vec<&QuorumMetadataLog> = members
        .iter()
        .filter(|m| m.id != leader)
        .map(|m| m.as_ref())
        .collect();
    let new_leader = wait_leader(&rest, Some(leader)).await;
    let nm = &members[new_leader as usize - 1];
    nm.append_async(vec![broker(100)]).await.unwrap();
    for m in &rest {
        assert_eq!(
            m.wait_for(28, Duration::from_secs(10)).await.brokers.len(),
            27
        );
    }
    // The observer follows the new leader.
    assert_eq!(
        observer
            .wait_for(28, Duration::from_secs(10))
            .await
            .brokers
            .len(),
        27
    );
    for m in &members {
        m.shutdown().await;
    }
    for s in servers {
        s.abort();
    }
}

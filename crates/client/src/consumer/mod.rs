//! The consumer: reads records from partitions it is assigned by hand or by a consumer group,
//! and commits how far it got.
//!
//! A [`Consumer`] is built from Kafka's consumer properties ([`ConsumerConfig`] lists them).
//! Partitions come either from [`Consumer::assign`] or, with a `group.id`, from
//! [`Consumer::subscribe`] / [`Consumer::subscribe_pattern`], under the classic group protocol
//! (the group leader assigns with range, roundrobin or cooperative-sticky) or the consumer
//! protocol (`group.protocol=consumer`: the coordinator assigns). [`Consumer::poll`] returns
//! the next records; fetches run on background tasks, one in flight per partition leader, so
//! that the next records are on their way while the application works. A partition's next
//! response is fetched while less than `max.poll.records` of its records are buffered, so at
//! most that many records and one response are buffered per partition.
//!
//! ```no_run
//! use std::time::Duration;
//! use strom_client::Properties;
//! use strom_client::consumer::Consumer;
//!
//! # async fn run() -> Result<(), strom_client::ClientError> {
//! let props = Properties::default()
//!     .set("bootstrap.servers", "127.0.0.1:9092")
//!     .set("group.id", "billing")
//!     .set("auto.offset.reset", "earliest");
//! let mut consumer = Consumer::new(props)?;
//! consumer.subscribe(&["orders"])?;
//! for _ in 0..10 {
//!     for record in consumer.poll(Duration::from_secs(1)).await? {
//!         println!("{}-{}@{}: {:?}", record.topic, record.partition, record.offset, record.value);
//!     }
//! }
//! consumer.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! With `enable.auto.commit` (the default when a `group.id` is set) positions are committed
//! every `auto.commit.interval.ms` from within `poll`, before partitions are given up in a
//! rebalance, and on [`Consumer::close`].

pub mod assignors;
pub mod config;
mod fetcher;
mod group;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use regex::Regex;
use tokio::sync::{Mutex, Notify, mpsc};
use tokio::task::JoinHandle;

use strom_protocol::error_code;
use strom_protocol::records::ConsumedRecord;

use crate::client::{Client, offset_spec};
use crate::config::Properties;
use crate::connection::ConnectionConfig;
use crate::error::ClientError;

pub use assignors::{Assignment, MemberSubscription};
pub use config::{AssignorKind, ConsumerConfig, GroupProtocol, IsolationLevel, OffsetReset};

use fetcher::{Connections, FetchOutcome, FetchSettings, FetchTarget};
use group::{Coordinator, MemberIdentityInfo, MemberSettings, MemberState, SharedMember, lock};

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.to_string(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A record as the consumer returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    /// True when the broker stamped the time (LogAppendTime), false for CreateTime.
    pub timestamp_type_log_append: bool,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

impl Record {
    fn from_consumed(tp: &TopicPartition, r: ConsumedRecord) -> Record {
        Record {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            timestamp_type_log_append: r.timestamp_type_log_append,
            key: r.key,
            value: r.value,
            headers: r.headers,
        }
    }
}

/// Told when the group gives this consumer partitions and takes them away. The callbacks run
/// inside [`Consumer::poll`] (and [`Consumer::close`]), on the application's task.
pub trait RebalanceListener: Send {
    /// Partitions newly assigned; reading starts at their committed offsets.
    fn on_assigned(&mut self, _partitions: &[TopicPartition]) {}
    /// Partitions given up in a rebalance. Under automatic commits their positions were
    /// committed just before this is called; either way, no other member gets them before this
    /// returns.
    fn on_revoked(&mut self, _partitions: &[TopicPartition]) {}
    /// Partitions lost without a chance to commit: the membership ended (session expired,
    /// fenced); another member may own them already. Defaults to `on_revoked`.
    fn on_lost(&mut self, partitions: &[TopicPartition]) {
        self.on_revoked(partitions)
    }
}

/// What the consumer knows of one assigned partition.
#[derive(Debug, Default)]
struct PartitionState {
    /// The offset of the next record to return; None until looked up.
    position: Option<i64>,
    /// Skip the committed offset: apply `auto.offset.reset` (out of range).
    reset: bool,
    paused: bool,
    /// Fetched records not returned yet, and where fetching continues after them.
    buffer: VecDeque<ConsumedRecord>,
    buffer_next: Option<i64>,
    in_flight: bool,
    /// The high watermark the latest fetch reported.
    high_watermark: Option<i64>,
}

impl PartitionState {
    /// Where the next fetch of this partition starts: after the buffered response, else at
    /// the position.
    fn fetch_from(&self) -> Option<i64> {
        if self.buffer_next.is_some() {
            self.buffer_next
        } else {
            self.position
        }
    }
}

enum Subscription {
    None,
    Manual,
    Topics(BTreeSet<String>),
    Pattern(Regex),
}

/// Which protocol a group membership runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Membership {
    Classic,
    Consumer,
}

struct GroupState {
    settings: MemberSettings,
    /// The coordinator connection of the application's task (joins, commits, offsets).
    coord: Arc<Mutex<Coordinator>>,
    shared: SharedMember,
    membership: Option<Membership>,
    heartbeat: Option<JoinHandle<()>>,
    wake: Arc<Notify>,
    /// The topics the current membership subscribes to.
    joined_topics: Vec<String>,
    /// Their partition counts when the membership joined (classic: a change rebalances).
    joined_counts: BTreeMap<String, i32>,
    /// The assignor the group chose in the latest classic generation.
    protocol: Option<AssignorKind>,
}

/// A Kafka consumer. See the [module documentation](self).
pub struct Consumer {
    config: ConsumerConfig,
    client: Client,
    conn_config: ConnectionConfig,
    subscription: Subscription,
    assigned: BTreeMap<TopicPartition, PartitionState>,
    /// Leader broker id and leader epoch by partition.
    leaders: HashMap<TopicPartition, (i32, i32)>,
    brokers: HashMap<i32, String>,
    topic_names: HashMap<[u8; 16], String>,
    metadata_stale: bool,
    metadata_at: Option<Instant>,
    /// Topics the pattern matched at the latest metadata refresh.
    pattern_topics: BTreeSet<String>,
    /// Partition counts of the topics in the latest metadata.
    topic_counts: BTreeMap<String, i32>,
    connections: Connections,
    /// Fetches in flight by broker, with their partitions.
    in_flight: HashMap<i32, Vec<TopicPartition>>,
    results_tx: mpsc::Sender<FetchOutcome>,
    results_rx: mpsc::Receiver<FetchOutcome>,
    /// No fetch before this (backoff after a failed fetch).
    fetch_backoff_until: Option<Instant>,
    group: Option<GroupState>,
    listener: Option<Box<dyn RebalanceListener>>,
    next_auto_commit: Instant,
    /// An error from a fetch, returned by the next poll.
    pending_error: Option<ClientError>,
    closed: bool,
}

fn no_group(what: &str) -> ClientError {
    ClientError::InvalidArgument(format!("{what} needs a group.id"))
}

impl Consumer {
    /// A consumer configured by Kafka's consumer properties. Nothing is connected until the
    /// first call that needs the cluster.
    pub fn new(props: Properties) -> Result<Consumer, ClientError> {
        Consumer::with_config(ConsumerConfig::from_properties(props)?)
    }

    pub fn with_config(config: ConsumerConfig) -> Result<Consumer, ClientError> {
        let conn_config = config.common.connection();
        let client = Client::with_config(&config.common.bootstrap(), conn_config.clone())?;
        let (results_tx, results_rx) = mpsc::channel(64);
        let group = config.group_id.as_ref().map(|g| {
            let settings = MemberSettings {
                group: g.clone(),
                instance_id: config.group_instance_id.clone(),
                session_timeout: config.session_timeout,
                rebalance_timeout: config.max_poll_interval,
                heartbeat_interval: config.heartbeat_interval,
                request_timeout: config.common.request_timeout,
                retry_backoff: config.common.retry_backoff,
                remote_assignor: config.remote_assignor.clone(),
            };
            GroupState {
                coord: Arc::new(Mutex::new(Coordinator::new(
                    g,
                    config.common.bootstrap_servers.clone(),
                    conn_config.clone(),
                ))),
                shared: Arc::new(std::sync::Mutex::new(MemberState::new(
                    config.heartbeat_interval,
                ))),
                settings,
                membership: None,
                heartbeat: None,
                wake: Arc::new(Notify::new()),
                joined_topics: Vec::new(),
                joined_counts: BTreeMap::new(),
                protocol: None,
            }
        });
        Ok(Consumer {
            next_auto_commit: Instant::now() + config.auto_commit_interval,
            config,
            client,
            conn_config,
            subscription: Subscription::None,
            assigned: BTreeMap::new(),
            leaders: HashMap::new(),
            brokers: HashMap::new(),
            topic_names: HashMap::new(),
            metadata_stale: true,
            metadata_at: None,
            pattern_topics: BTreeSet::new(),
            topic_counts: BTreeMap::new(),
            connections: Connections::default(),
            in_flight: HashMap::new(),
            results_tx,
            results_rx,
            fetch_backoff_until: None,
            group,
            listener: None,
            pending_error: None,
            closed: false,
        })
    }

    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// Sets the listener told about assignments and revocations.
    pub fn set_rebalance_listener(&mut self, listener: Box<dyn RebalanceListener>) {
        self.listener = Some(listener);
    }

    fn check_open(&self) -> Result<(), ClientError> {
        if self.closed {
            return Err(ClientError::InvalidArgument(
                "the consumer is closed".into(),
            ));
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // assignment

    /// Reads exactly these partitions (no group membership). Replaces any earlier assignment;
    /// partitions kept keep their positions.
    pub fn assign(&mut self, partitions: &[TopicPartition]) -> Result<(), ClientError> {
        self.check_open()?;
        if matches!(
            self.subscription,
            Subscription::Topics(_) | Subscription::Pattern(_)
        ) {
            return Err(ClientError::InvalidArgument(
                "assign() cannot be mixed with subscribe() on one consumer; unsubscribe first"
                    .into(),
            ));
        }
        let wanted: BTreeSet<TopicPartition> = partitions.iter().cloned().collect();
        self.assigned.retain(|tp, _| wanted.contains(tp));
        for tp in wanted {
            self.assigned.entry(tp).or_default();
        }
        self.subscription = if partitions.is_empty() {
            Subscription::None
        } else {
            Subscription::Manual
        };
        self.metadata_stale = true;
        Ok(())
    }

    /// The partitions currently assigned (by hand or by the group).
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.assigned.keys().cloned().collect()
    }

    /// Joins the group reading these topics. The assignment arrives in a later `poll`.
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<(), ClientError> {
        self.check_open()?;
        if self.group.is_none() {
            return Err(no_group("subscribe()"));
        }
        if matches!(self.subscription, Subscription::Manual) {
            return Err(ClientError::InvalidArgument(
                "subscribe() cannot be mixed with assign() on one consumer; unsubscribe first"
                    .into(),
            ));
        }
        if topics.iter().any(|t| t.trim().is_empty()) {
            return Err(ClientError::InvalidArgument(
                "topic names to subscribe to must not be empty".into(),
            ));
        }
        self.subscription = Subscription::Topics(topics.iter().map(|t| t.to_string()).collect());
        Ok(())
    }

    /// Joins the group reading every topic whose whole name matches `pattern`; topics created
    /// later are picked up at the next metadata refresh (`metadata.max.age.ms`).
    pub fn subscribe_pattern(&mut self, pattern: &str) -> Result<(), ClientError> {
        self.check_open()?;
        if self.group.is_none() {
            return Err(no_group("subscribe_pattern()"));
        }
        if matches!(self.subscription, Subscription::Manual) {
            return Err(ClientError::InvalidArgument(
                "subscribe_pattern() cannot be mixed with assign(); unsubscribe first".into(),
            ));
        }
        let re = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
            ClientError::InvalidArgument(format!("invalid topic pattern {pattern:?}: {e}"))
        })?;
        self.subscription = Subscription::Pattern(re);
        self.metadata_stale = true;
        self.metadata_at = None;
        Ok(())
    }

    /// Leaves the group (giving partitions up) or drops the manual assignment.
    pub async fn unsubscribe(&mut self) -> Result<(), ClientError> {
        self.leave_group().await?;
        self.assigned.clear();
        self.subscription = Subscription::None;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // positions

    fn state_mut(&mut self, tp: &TopicPartition) -> Result<&mut PartitionState, ClientError> {
        self.assigned.get_mut(tp).ok_or_else(|| {
            ClientError::InvalidArgument(format!("partition {tp} is not assigned to this consumer"))
        })
    }

    /// The next poll returns records of `tp` from `offset` on.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), ClientError> {
        if offset < 0 {
            return Err(ClientError::InvalidArgument(format!(
                "cannot seek {tp} to negative offset {offset}"
            )));
        }
        let s = self.state_mut(tp)?;
        s.position = Some(offset);
        s.reset = false;
        s.buffer.clear();
        s.buffer_next = None;
        Ok(())
    }

    /// The offset for `spec` (earliest or latest) of `tp`, from its leader at the consumer's
    /// isolation level: under read_committed the end is the last stable offset. Follows
    /// leader changes.
    async fn list_offset(&mut self, tp: &TopicPartition, spec: i64) -> Result<i64, ClientError> {
        let mut tries = 0;
        loop {
            tries += 1;
            if self.metadata_stale || !self.leaders.contains_key(tp) {
                self.refresh_metadata().await?;
            }
            let Some(&(broker, epoch)) = self.leaders.get(tp) else {
                return Err(ClientError::kafka(
                    error_code::LEADER_NOT_AVAILABLE,
                    &format!("partition {tp}"),
                    None,
                ));
            };
            let Some(addr) = self.brokers.get(&broker).cloned() else {
                return Err(ClientError::UnexpectedResponse(format!(
                    "leader {broker} of {tp} is not among the brokers in metadata"
                )));
            };
            let conn = self.connections.slot(broker, &addr);
            let target = FetchTarget {
                tp: tp.clone(),
                offset: 0,
                leader_epoch: epoch,
            };
            let result = fetcher::list_offset(
                &addr,
                &conn,
                self.conn_config.clone(),
                &target,
                spec,
                self.config.isolation_level.wire(),
            )
            .await;
            match result {
                Err(e)
                    if tries < 3
                        && (e.kafka_code().is_some_and(fetcher::needs_metadata)
                            || matches!(e, ClientError::Connect { .. } | ClientError::Io(_))) =>
                {
                    self.metadata_stale = true;
                    tokio::time::sleep(self.config.common.retry_backoff).await;
                }
                other => return other,
            }
        }
    }

    /// Moves to the first offset of each partition.
    pub async fn seek_to_beginning(&mut self, tps: &[TopicPartition]) -> Result<(), ClientError> {
        self.seek_to(tps, offset_spec::EARLIEST).await
    }

    /// Moves to the end of each partition (the next record written).
    pub async fn seek_to_end(&mut self, tps: &[TopicPartition]) -> Result<(), ClientError> {
        self.seek_to(tps, offset_spec::LATEST).await
    }

    async fn seek_to(&mut self, tps: &[TopicPartition], spec: i64) -> Result<(), ClientError> {
        for tp in tps {
            self.state_mut(tp)?;
            let offset = self.list_offset(tp, spec).await?;
            self.seek(tp, offset)?;
        }
        Ok(())
    }

    /// The offset of the next record `poll` returns for `tp`, looking it up (committed offset,
    /// else `auto.offset.reset`) when not known yet.
    pub async fn position(&mut self, tp: &TopicPartition) -> Result<i64, ClientError> {
        self.state_mut(tp)?;
        self.resolve_positions().await?;
        self.state_mut(tp)?
            .position
            .ok_or_else(|| ClientError::InvalidArgument(format!("no position for {tp}")))
    }

    /// The high watermark of `tp` as the latest fetch reported it.
    pub fn high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.assigned.get(tp).and_then(|s| s.high_watermark)
    }

    /// Stops returning and fetching records of these partitions until resumed.
    pub fn pause(&mut self, tps: &[TopicPartition]) -> Result<(), ClientError> {
        for tp in tps {
            self.state_mut(tp)?.paused = true;
        }
        Ok(())
    }

    pub fn resume(&mut self, tps: &[TopicPartition]) -> Result<(), ClientError> {
        for tp in tps {
            self.state_mut(tp)?.paused = false;
        }
        Ok(())
    }

    pub fn paused(&self) -> Vec<TopicPartition> {
        self.assigned
            .iter()
            .filter(|(_, s)| s.paused)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Finds positions for partitions that have none: the group's committed offset, else
    /// `auto.offset.reset`.
    async fn resolve_positions(&mut self) -> Result<(), ClientError> {
        let missing: Vec<TopicPartition> = self
            .assigned
            .iter()
            .filter(|(_, s)| s.position.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let from_commit: Vec<TopicPartition> = missing
            .iter()
            .filter(|tp| self.assigned.get(*tp).is_some_and(|s| !s.reset))
            .cloned()
            .collect();
        let mut committed = BTreeMap::new();
        if let Some(g) = &self.group
            && !from_commit.is_empty()
        {
            let timeout = self.config.common.request_timeout;
            let stable = self.config.isolation_level == IsolationLevel::ReadCommitted;
            committed = retry_coordinator(self.config.common.retry_backoff, || {
                let coord = g.coord.clone();
                let from_commit = from_commit.clone();
                async move {
                    coord
                        .lock()
                        .await
                        .fetch_committed(&from_commit, stable, timeout)
                        .await
                }
            })
            .await?;
        }
        for tp in missing {
            let offset = match committed.get(&tp) {
                Some(&o) => o,
                None => {
                    let spec = match self.config.auto_offset_reset {
                        OffsetReset::Earliest => offset_spec::EARLIEST,
                        OffsetReset::Latest => offset_spec::LATEST,
                        OffsetReset::None => {
                            return Err(ClientError::InvalidArgument(format!(
                                "partition {tp} has no committed offset or its offset is out of range, and auto.offset.reset is none"
                            )));
                        }
                    };
                    self.list_offset(&tp, spec).await?
                }
            };
            if let Some(s) = self.assigned.get_mut(&tp) {
                s.position = Some(offset);
                s.reset = false;
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // polling

    /// The next records, waiting up to `timeout` for some. Also runs the group's rebalances
    /// (calling the rebalance listener) and automatic commits.
    ///
    /// A classic group join runs to its end inside the poll that starts it, which can take
    /// longer than `timeout`: the coordinator answers once every member has joined (at most
    /// `max.poll.interval.ms`). Members of one group should therefore poll on separate tasks.
    /// Dropping a poll future part way is safe for fetching but may leave a join unfinished;
    /// the next poll starts it again.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<Record>, ClientError> {
        self.check_open()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.pending_error.take() {
                return Err(e);
            }
            let group = self.group_poll().await;
            self.transient(group, deadline).await?;
            self.maybe_auto_commit().await;
            let positions = self.resolve_positions().await;
            self.transient(positions, deadline).await?;
            let out = self.drain();
            if !out.is_empty() {
                // Keep the next fetches going while the application works on these.
                self.send_fetches().await;
                return Ok(out);
            }
            self.send_fetches().await;
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            // Wake at least every 100 ms to look after the group.
            let wait = (deadline - now).min(Duration::from_millis(100));
            if self.in_flight.is_empty() {
                tokio::time::sleep(wait).await;
                continue;
            }
            if let Ok(Some(outcome)) = tokio::time::timeout(wait, self.results_rx.recv()).await {
                self.handle_outcome(outcome);
                while let Ok(more) = self.results_rx.try_recv() {
                    self.handle_outcome(more);
                }
            }
        }
    }

    /// Passes on errors that retrying will not mend; waits a little after the others (the
    /// leader or coordinator moved, a broker is unreachable) so that the poll loop tries again.
    async fn transient(
        &mut self,
        result: Result<(), ClientError>,
        deadline: Instant,
    ) -> Result<(), ClientError> {
        let Err(e) = result else {
            return Ok(());
        };
        let transient = matches!(
            e,
            ClientError::Connect { .. } | ClientError::Io(_) | ClientError::Timeout { .. }
        ) || e.kafka_code().is_some_and(|c| {
            fetcher::needs_metadata(c)
                || group::is_coordinator_error(c)
                || c == error_code::REBALANCE_IN_PROGRESS
                || c == error_code::REQUEST_TIMED_OUT
        });
        if !transient {
            return Err(e);
        }
        tracing::debug!(error = %e, "retrying after a transient error");
        self.metadata_stale = true;
        let pause = self
            .config
            .common
            .retry_backoff
            .max(Duration::from_millis(10))
            .min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
        Ok(())
    }

    /// The records as a stream: each `next()` polls as needed.
    pub fn stream(&mut self) -> RecordStream<'_> {
        RecordStream {
            consumer: self,
            ready: VecDeque::new(),
        }
    }

    /// Buffered records of unpaused partitions, up to `max.poll.records`, advancing positions.
    fn drain(&mut self) -> Vec<Record> {
        let max = self.config.max_poll_records;
        let mut out = Vec::new();
        for (tp, s) in self.assigned.iter_mut() {
            if s.paused {
                continue;
            }
            while out.len() < max {
                let Some(r) = s.buffer.pop_front() else {
                    break;
                };
                if s.position.is_some_and(|p| r.offset < p) {
                    continue;
                }
                s.position = Some(r.offset + 1);
                out.push(Record::from_consumed(tp, r));
            }
            if s.buffer.is_empty()
                && let Some(next) = s.buffer_next.take()
            {
                s.position = Some(s.position.map_or(next, |p| p.max(next)));
            }
            if out.len() >= max {
                break;
            }
        }
        out
    }

    async fn refresh_metadata(&mut self) -> Result<(), ClientError> {
        let mut topics: BTreeSet<String> =
            self.assigned.keys().map(|tp| tp.topic.clone()).collect();
        let all = matches!(self.subscription, Subscription::Pattern(_))
            || self
                .group
                .as_ref()
                .is_some_and(|g| g.membership == Some(Membership::Consumer));
        if let Subscription::Topics(t) = &self.subscription {
            topics.extend(t.iter().cloned());
        }
        let md = self
            .client
            .metadata(if all {
                None
            } else {
                Some(topics.into_iter().collect())
            })
            .await?;
        self.brokers = md.brokers.iter().map(|b| (b.id, b.address())).collect();
        self.leaders.clear();
        for t in &md.topics {
            if t.error_code != error_code::NONE {
                continue;
            }
            if !t.id.is_zero() {
                self.topic_names.insert(t.id.0, t.name.clone());
            }
            self.topic_counts
                .insert(t.name.clone(), t.partitions.len() as i32);
            for p in &t.partitions {
                if p.leader >= 0 {
                    self.leaders.insert(
                        TopicPartition::new(&t.name, p.index),
                        (p.leader, p.leader_epoch),
                    );
                }
            }
        }
        if let Subscription::Pattern(re) = &self.subscription {
            self.pattern_topics = md
                .topics
                .iter()
                .filter(|t| !t.is_internal && re.is_match(&t.name))
                .map(|t| t.name.clone())
                .collect();
        }
        self.metadata_stale = false;
        self.metadata_at = Some(Instant::now());
        Ok(())
    }

    /// Whether to refresh metadata: when known stale (at most every `retry.backoff.ms`, so
    /// that a partition without a leader does not make every poll ask), and at least every
    /// `metadata.max.age.ms`.
    fn metadata_due(&self) -> bool {
        let Some(at) = self.metadata_at else {
            return true;
        };
        let age = at.elapsed();
        (self.metadata_stale && age >= self.config.common.retry_backoff)
            || age >= self.config.common.metadata_max_age
    }

    /// Starts a fetch to every leader that has fetchable partitions and no fetch in flight.
    async fn send_fetches(&mut self) {
        if self.fetch_backoff_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        if self.metadata_due()
            && let Err(e) = self.refresh_metadata().await
        {
            tracing::debug!(error = %e, "metadata refresh failed");
            self.fetch_backoff_until = Some(Instant::now() + self.config.common.retry_backoff);
            return;
        }
        let mut by_broker: BTreeMap<i32, Vec<FetchTarget>> = BTreeMap::new();
        let mut leaderless = false;
        let max_poll_records = self.config.max_poll_records;
        for (tp, s) in &self.assigned {
            let Some(position) = s.position else {
                continue;
            };
            if s.paused || s.in_flight {
                continue;
            }
            // With a response buffered, the next one is fetched ahead of the application
            // while less than a poll's worth of records is left.
            let offset = match s.fetch_from() {
                Some(next) if s.buffer_next.is_some() => {
                    if s.buffer.len() >= max_poll_records {
                        continue;
                    }
                    next
                }
                _ => position,
            };
            let Some(&(broker, epoch)) = self.leaders.get(tp) else {
                leaderless = true;
                continue;
            };
            if self.in_flight.contains_key(&broker) {
                continue;
            }
            by_broker.entry(broker).or_default().push(FetchTarget {
                tp: tp.clone(),
                offset,
                leader_epoch: epoch,
            });
        }
        if leaderless {
            self.metadata_stale = true;
        }
        let settings = FetchSettings {
            min_bytes: self.config.fetch_min_bytes,
            max_bytes: self.config.fetch_max_bytes,
            max_wait: self.config.fetch_max_wait,
            partition_max_bytes: self.config.max_partition_fetch_bytes,
            isolation_level: self.config.isolation_level.wire(),
        };
        for (broker, targets) in by_broker {
            let Some(addr) = self.brokers.get(&broker).cloned() else {
                self.metadata_stale = true;
                continue;
            };
            for t in &targets {
                if let Some(s) = self.assigned.get_mut(&t.tp) {
                    s.in_flight = true;
                }
            }
            self.in_flight
                .insert(broker, targets.iter().map(|t| t.tp.clone()).collect());
            let conn = self.connections.slot(broker, &addr);
            fetcher::spawn_fetch(
                broker,
                addr,
                conn,
                self.conn_config.clone(),
                settings,
                targets,
                self.results_tx.clone(),
            );
        }
    }

    fn handle_outcome(&mut self, outcome: FetchOutcome) {
        if let Some(tps) = self.in_flight.remove(&outcome.broker) {
            for tp in tps {
                if let Some(s) = self.assigned.get_mut(&tp) {
                    s.in_flight = false;
                }
            }
        }
        let partitions = match outcome.result {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(broker = outcome.broker, error = %e, "fetch failed");
                if matches!(e, ClientError::Protocol(_)) {
                    self.pending_error = Some(e);
                }
                self.metadata_stale = true;
                self.fetch_backoff_until = Some(Instant::now() + self.config.common.retry_backoff);
                return;
            }
        };
        for f in partitions {
            let Some(s) = self.assigned.get_mut(&f.tp) else {
                continue;
            };
            // A seek or reset since the fetch was sent makes its answer stale.
            if s.fetch_from() != Some(f.fetch_offset) {
                continue;
            }
            if let Some(e) = f.decode_error {
                self.pending_error = Some(ClientError::UnexpectedResponse(format!(
                    "records of partition {} at offset {}: {e}",
                    f.tp, f.fetch_offset
                )));
                continue;
            }
            match f.error_code {
                error_code::NONE => {
                    s.high_watermark = Some(f.high_watermark);
                    s.buffer.extend(f.records);
                    s.buffer_next = Some(f.next_offset);
                }
                error_code::OFFSET_OUT_OF_RANGE => {
                    if self.config.auto_offset_reset == OffsetReset::None {
                        self.pending_error = Some(ClientError::kafka(
                            f.error_code,
                            &format!("partition {}", f.tp),
                            Some("and auto.offset.reset is none"),
                        ));
                    } else {
                        tracing::info!(partition = %f.tp, offset = f.fetch_offset,
                            "offset out of range; applying auto.offset.reset");
                        s.position = None;
                        s.reset = true;
                        s.buffer.clear();
                        s.buffer_next = None;
                    }
                }
                code if fetcher::needs_metadata(code) => {
                    self.metadata_stale = true;
                    self.fetch_backoff_until =
                        Some(Instant::now() + self.config.common.retry_backoff);
                }
                code => {
                    self.pending_error = Some(ClientError::kafka(
                        code,
                        &format!("fetching partition {}", f.tp),
                        None,
                    ));
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // offsets

    /// The positions of all assigned partitions: what a commit stores.
    fn consumed_offsets(&self) -> BTreeMap<TopicPartition, i64> {
        self.assigned
            .iter()
            .filter_map(|(tp, s)| s.position.map(|p| (tp.clone(), p)))
            .collect()
    }

    fn member_identity(&self) -> MemberIdentityInfo {
        match &self.group {
            Some(g) if g.membership.is_some() => {
                let s = lock(&g.shared);
                MemberIdentityInfo {
                    member_id: s.member_id.clone(),
                    generation: s.generation,
                    instance_id: g.settings.instance_id.clone(),
                }
            }
            _ => MemberIdentityInfo {
                member_id: String::new(),
                generation: -1,
                instance_id: None,
            },
        }
    }

    /// The group membership as a transaction's offset commit names it (Kafka's
    /// `groupMetadata()`): group, generation (or member epoch) and member id, so that the
    /// coordinator refuses offsets sent by a member the group has moved past. `None` without a
    /// `group.id`.
    pub fn group_metadata(&self) -> Option<crate::producer::GroupMetadata> {
        let group = self.config.group_id.as_deref()?;
        let me = self.member_identity();
        Some(crate::producer::GroupMetadata {
            group_id: group.to_string(),
            generation_id: me.generation,
            member_id: me.member_id,
            group_instance_id: me.instance_id,
        })
    }

    /// Commits the positions of all assigned partitions and waits for the coordinator.
    pub async fn commit_sync(&mut self) -> Result<(), ClientError> {
        let offsets = self.consumed_offsets();
        self.commit_offsets_sync(&offsets).await
    }

    /// Commits the given offsets (the next offset to read, per partition) and waits.
    pub async fn commit_offsets_sync(
        &mut self,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), ClientError> {
        let g = self.group.as_ref().ok_or_else(|| no_group("committing"))?;
        let coord = g.coord.clone();
        let wake = g.wake.clone();
        let timeout = self.config.common.request_timeout;
        let mut tries = 0;
        loop {
            tries += 1;
            let member = self.member_identity();
            let result = retry_coordinator(self.config.common.retry_backoff, || {
                let coord = coord.clone();
                let member = member.clone();
                async move { coord.lock().await.commit(&member, offsets, timeout).await }
            })
            .await;
            match result {
                // The member epoch moved on in a heartbeat answered meanwhile: commit again
                // with the new one.
                Err(e)
                    if tries < 5 && e.kafka_code() == Some(113 /* STALE_MEMBER_EPOCH */) =>
                {
                    wake.notify_one();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// Commits the positions of all assigned partitions in the background; the handle tells
    /// how it went.
    pub fn commit_async(&mut self) -> Result<JoinHandle<Result<(), ClientError>>, ClientError> {
        let g = self.group.as_ref().ok_or_else(|| no_group("committing"))?;
        let coord = g.coord.clone();
        let member = self.member_identity();
        let offsets = self.consumed_offsets();
        let timeout = self.config.common.request_timeout;
        Ok(tokio::spawn(async move {
            coord.lock().await.commit(&member, &offsets, timeout).await
        }))
    }

    /// The group's committed offsets of these partitions (absent: no commit).
    pub async fn committed(
        &mut self,
        tps: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        let g = self.group.as_ref().ok_or_else(|| no_group("committed()"))?;
        let coord = g.coord.clone();
        let timeout = self.config.common.request_timeout;
        let stable = self.config.isolation_level == IsolationLevel::ReadCommitted;
        retry_coordinator(self.config.common.retry_backoff, || {
            let coord = coord.clone();
            async move {
                coord
                    .lock()
                    .await
                    .fetch_committed(tps, stable, timeout)
                    .await
            }
        })
        .await
    }

    async fn maybe_auto_commit(&mut self) {
        if !self.config.enable_auto_commit || Instant::now() < self.next_auto_commit {
            return;
        }
        self.next_auto_commit = Instant::now() + self.config.auto_commit_interval;
        if self.assigned.is_empty() {
            return;
        }
        if let Ok(handle) = self.commit_async() {
            tokio::spawn(async move {
                if let Ok(Err(e)) = handle.await {
                    tracing::debug!(error = %e, "automatic commit failed");
                }
            });
        }
    }

    /// Commits the positions of `tps` before they are given up (automatic commits only).
    async fn commit_before_revoking(&mut self, tps: &[TopicPartition]) {
        if !self.config.enable_auto_commit || tps.is_empty() {
            return;
        }
        let offsets: BTreeMap<TopicPartition, i64> = tps
            .iter()
            .filter_map(|tp| {
                self.assigned
                    .get(tp)
                    .and_then(|s| s.position)
                    .map(|p| (tp.clone(), p))
            })
            .collect();
        if let Err(e) = self.commit_offsets_sync(&offsets).await {
            tracing::warn!(error = %e, "committing before giving partitions up failed");
        }
    }

    // -----------------------------------------------------------------------------------------
    // groups

    fn subscribed_topics(&self) -> Option<Vec<String>> {
        match &self.subscription {
            Subscription::Topics(t) => Some(t.iter().cloned().collect()),
            Subscription::Pattern(_) => Some(self.pattern_topics.iter().cloned().collect()),
            _ => None,
        }
    }

    /// Partition counts of `topics` from the latest metadata (topics not in it are left out).
    fn counts_of(&self, topics: &[String]) -> BTreeMap<String, i32> {
        topics
            .iter()
            .filter_map(|t| self.topic_counts.get(t).map(|&n| (t.clone(), n)))
            .collect()
    }

    fn revoke(&mut self, tps: &[TopicPartition], lost: bool) {
        if tps.is_empty() {
            return;
        }
        if let Some(l) = self.listener.as_mut() {
            if lost {
                l.on_lost(tps);
            } else {
                l.on_revoked(tps);
            }
        }
        for tp in tps {
            self.assigned.remove(tp);
        }
    }

    fn add_assigned(&mut self, tps: &[TopicPartition]) {
        for tp in tps {
            self.assigned.entry(tp.clone()).or_default();
        }
        if !tps.is_empty() {
            self.metadata_stale = true;
        }
        if let Some(l) = self.listener.as_mut() {
            l.on_assigned(tps);
        }
    }

    /// Looks after the group membership: joins, rebalances and reconciliation.
    async fn group_poll(&mut self) -> Result<(), ClientError> {
        let Some(g) = &self.group else {
            return Ok(());
        };
        {
            let mut s = lock(&g.shared);
            s.last_poll = Instant::now();
            if let Some(f) = &s.fatal {
                return Err(ClientError::InvalidArgument(f.clone()));
            }
        }
        if !matches!(
            self.subscription,
            Subscription::Topics(_) | Subscription::Pattern(_)
        ) {
            return Ok(());
        }
        // Fresh metadata first: the pattern's topics and the partition counts a classic
        // membership was formed with come from it.
        if self.metadata_due() {
            self.refresh_metadata().await?;
        }
        let Some(topics) = self.subscribed_topics() else {
            return Ok(());
        };
        let membership = match self.group.as_ref().and_then(|g| g.membership) {
            Some(m) => m,
            None => self.choose_protocol().await?,
        };
        match membership {
            Membership::Classic => self.classic_poll(topics).await,
            Membership::Consumer => self.consumer_poll(topics).await,
        }
    }

    async fn choose_protocol(&mut self) -> Result<Membership, ClientError> {
        let Some(g) = self.group.as_mut() else {
            return Err(no_group("subscribe()"));
        };
        let m = if self.config.group_protocol == GroupProtocol::Consumer {
            let offers = g.coord.lock().await.offers_consumer_protocol().await?;
            if offers {
                Membership::Consumer
            } else {
                tracing::info!(group = %g.settings.group,
                    "the coordinator does not offer the consumer group protocol (ConsumerGroupHeartbeat); using the classic protocol");
                Membership::Classic
            }
        } else {
            Membership::Classic
        };
        g.membership = Some(m);
        Ok(m)
    }

    async fn classic_poll(&mut self, topics: Vec<String>) -> Result<(), ClientError> {
        let Some(g) = self.group.as_ref() else {
            return Ok(());
        };
        let (rejoin, lost) = {
            let s = lock(&g.shared);
            (s.rejoin, s.lost)
        };
        let counts = self.counts_of(&topics);
        let changed = g.joined_topics != topics || g.joined_counts != counts;
        if lost {
            let all = self.assignment();
            self.revoke(&all, true);
            if let Some(g) = self.group.as_ref() {
                lock(&g.shared).lost = false;
            }
        }
        if !(rejoin || changed) {
            return Ok(());
        }
        if topics.is_empty() && self.assigned.is_empty() && !changed {
            return Ok(());
        }
        let cooperative = self
            .group
            .as_ref()
            .and_then(|g| g.protocol)
            .unwrap_or(self.config.assignors[0])
            .is_cooperative();
        if !cooperative {
            // Eager: everything is given up before joining.
            let all = self.assignment();
            self.commit_before_revoking(&all).await;
            self.revoke(&all, false);
        }
        self.classic_join(topics).await
    }

    async fn classic_join(&mut self, topics: Vec<String>) -> Result<(), ClientError> {
        let counts = self.counts_of(&topics);
        let Some(g) = self.group.as_mut() else {
            return Ok(());
        };
        let owned = self.assigned.keys().cloned().collect::<Vec<_>>();
        let (mut member_id, generation) = {
            let mut s = lock(&g.shared);
            s.joining = true;
            (s.member_id.clone(), s.generation)
        };
        let mut protocols = Vec::new();
        for a in &self.config.assignors {
            let owned_here: &[TopicPartition] = if a.is_cooperative() { &owned } else { &[] };
            protocols.push((
                a.protocol_name(),
                group::encode_subscription(&topics, owned_here, generation)?,
            ));
        }
        let settings = g.settings.clone();
        let coord = g.coord.clone();
        let shared = g.shared.clone();
        let result: Result<(i32, AssignorKind, Vec<TopicPartition>), ClientError> = async {
            let mut c = coord.lock().await;
            let join = group::join_group(&mut c, &settings, &mut member_id, &protocols).await;
            lock(&shared).member_id = member_id.clone();
            let join = join?;
            let protocol_name = join
                .protocol_name
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let kind = AssignorKind::from_protocol_name(&protocol_name).ok_or_else(|| {
                ClientError::UnexpectedResponse(format!(
                    "the group chose assignor {protocol_name:?}, which this consumer does not offer"
                ))
            })?;
            let mut assignments = Vec::new();
            if join.leader == join.member_id {
                let members: Vec<MemberSubscription> = join
                    .members
                    .iter()
                    .map(|m| {
                        group::decode_subscription(
                            m.member_id.as_str(),
                            m.group_instance_id.as_deref(),
                            &m.metadata,
                        )
                    })
                    .collect::<Result<_, _>>()?;
                let all_topics: BTreeSet<String> = members
                    .iter()
                    .flat_map(|m| m.topics.iter().cloned())
                    .collect();
                let md = self
                    .client
                    .metadata(Some(all_topics.into_iter().collect()))
                    .await?;
                let counts: BTreeMap<String, i32> = md
                    .topics
                    .iter()
                    .filter(|t| t.error_code == error_code::NONE)
                    .map(|t| (t.name.clone(), t.partitions.len() as i32))
                    .collect();
                let plan = assignors::assign(kind, &members, &counts);
                for (m, tps) in plan {
                    assignments.push((m, group::encode_assignment(&tps)?));
                }
            }
            let assigned = group::sync_group(
                &mut c,
                &settings,
                &member_id,
                join.generation_id,
                &protocol_name,
                assignments,
            )
            .await?;
            Ok((join.generation_id, kind, assigned))
        }
        .await;
        let (generation, kind, assigned) = match result {
            Ok(r) => r,
            Err(e) => {
                {
                    let mut s = lock(&shared);
                    s.joining = false;
                    s.rejoin = true;
                    if matches!(
                        e.kafka_code(),
                        Some(error_code::ILLEGAL_GENERATION | error_code::UNKNOWN_MEMBER_ID)
                    ) {
                        s.lost = true;
                    }
                }
                let retriable = e.kafka_code().is_some_and(|c| {
                    matches!(
                        c,
                        error_code::REBALANCE_IN_PROGRESS
                            | error_code::ILLEGAL_GENERATION
                            | error_code::UNKNOWN_MEMBER_ID
                    ) || group::is_coordinator_error(c)
                }) || matches!(
                    e,
                    ClientError::Connect { .. }
                        | ClientError::Io(_)
                        | ClientError::Timeout { .. }
                        // Some coordinators answer a failed SyncGroup with a null assignment,
                        // which does not decode: join again.
                        | ClientError::Protocol(_)
                );
                if e.kafka_code() == Some(error_code::FENCED_INSTANCE_ID) {
                    lock(&shared).fatal = Some(e.to_string());
                }
                if retriable {
                    tracing::debug!(error = %e, "group join failed; retrying");
                    tokio::time::sleep(self.config.common.retry_backoff).await;
                    return Ok(());
                }
                return Err(e);
            }
        };
        // Apply: give up what is no longer ours (cooperative), take what is new.
        let new: BTreeSet<TopicPartition> = assigned.into_iter().collect();
        let revoked: Vec<TopicPartition> = self
            .assigned
            .keys()
            .filter(|tp| !new.contains(*tp))
            .cloned()
            .collect();
        let added: Vec<TopicPartition> = new
            .iter()
            .filter(|tp| !self.assigned.contains_key(*tp))
            .cloned()
            .collect();
        if !revoked.is_empty() {
            self.commit_before_revoking(&revoked).await;
            self.revoke(&revoked, false);
        }
        self.add_assigned(&added);
        let Some(g) = self.group.as_mut() else {
            return Ok(());
        };
        g.protocol = Some(kind);
        g.joined_counts = counts;
        g.joined_topics = topics;
        {
            let mut s = lock(&g.shared);
            s.generation = generation;
            s.joining = false;
            // Revoked partitions go to their new owner in a follow-up rebalance.
            s.rejoin = kind.is_cooperative() && !revoked.is_empty();
            s.lost = false;
        }
        if g.heartbeat.is_none() {
            let coord = Coordinator::new(
                &g.settings.group,
                self.config.common.bootstrap_servers.clone(),
                self.conn_config.clone(),
            );
            g.heartbeat = Some(tokio::spawn(group::classic_heartbeats(
                coord,
                g.settings.clone(),
                g.shared.clone(),
            )));
        }
        Ok(())
    }

    async fn consumer_poll(&mut self, topics: Vec<String>) -> Result<(), ClientError> {
        let Some(g) = self.group.as_mut() else {
            return Ok(());
        };
        let (lost, target) = {
            let mut s = lock(&g.shared);
            if s.member_id.is_empty() {
                s.member_id = group::new_member_id();
            }
            s.topics = topics.clone();
            let lost = std::mem::take(&mut s.lost);
            (lost, s.target.clone())
        };
        if g.heartbeat.is_none() {
            let coord = Coordinator::new(
                &g.settings.group,
                self.config.common.bootstrap_servers.clone(),
                self.conn_config.clone(),
            );
            lock(&g.shared).generation = 0;
            g.heartbeat = Some(tokio::spawn(group::consumer_heartbeats(
                coord,
                g.settings.clone(),
                g.shared.clone(),
                g.wake.clone(),
            )));
        }
        if g.joined_topics != topics {
            g.joined_topics = topics;
            g.wake.notify_one();
        }
        if lost {
            let all = self.assignment();
            self.revoke(&all, true);
        }
        let Some(target) = target else {
            return Ok(());
        };
        let mut resolved = group::resolve_assignment(&target, &self.topic_names);
        if resolved.is_none() {
            self.refresh_metadata().await?;
            resolved = group::resolve_assignment(&target, &self.topic_names);
        }
        let Some(new) = resolved else {
            // Topics not in metadata yet: try again at the next poll.
            return Ok(());
        };
        // Reconcile: revoke first (committing), then take the new partitions, then tell the
        // coordinator what we own.
        let revoked: Vec<TopicPartition> = self
            .assigned
            .keys()
            .filter(|tp| !new.contains(*tp))
            .cloned()
            .collect();
        let added: Vec<TopicPartition> = new
            .iter()
            .filter(|tp| !self.assigned.contains_key(*tp))
            .cloned()
            .collect();
        if !revoked.is_empty() {
            self.commit_before_revoking(&revoked).await;
            self.revoke(&revoked, false);
        }
        if !added.is_empty() {
            self.add_assigned(&added);
        }
        if let Some(g) = self.group.as_ref() {
            let mut s = lock(&g.shared);
            // Only acknowledge if no newer target arrived meanwhile (it is reconciled next).
            if s.target.as_ref() == Some(&target) {
                s.target = None;
            }
            let changed = s.owned != target;
            s.owned = target;
            drop(s);
            // Tell the coordinator at once what we own now; a repeated assignment needs no
            // extra heartbeat.
            if changed {
                g.wake.notify_one();
            }
        }
        Ok(())
    }

    async fn leave_group(&mut self) -> Result<(), ClientError> {
        let Some(g) = self.group.as_ref() else {
            return Ok(());
        };
        let Some(membership) = g.membership else {
            return Ok(());
        };
        let all = self.assignment();
        self.commit_before_revoking(&all).await;
        self.revoke(&all, false);
        let Some(g) = self.group.as_mut() else {
            return Ok(());
        };
        let member_id = {
            let mut s = lock(&g.shared);
            s.stop = true;
            s.owned.clear();
            s.member_id.clone()
        };
        g.wake.notify_one();
        if let Some(h) = g.heartbeat.take() {
            match membership {
                // The consumer protocol's task sends the leave heartbeat as it stops.
                Membership::Consumer => {
                    let _ = tokio::time::timeout(self.config.common.request_timeout, h).await;
                }
                Membership::Classic => h.abort(),
            }
        }
        if membership == Membership::Classic {
            let mut c = g.coord.lock().await;
            if let Err(e) = group::leave_group(&mut c, &g.settings, &member_id).await {
                tracing::debug!(error = %e, "leaving the group failed");
            }
        }
        g.membership = None;
        g.joined_topics.clear();
        g.shared = Arc::new(std::sync::Mutex::new(MemberState::new(
            self.config.heartbeat_interval,
        )));
        Ok(())
    }

    /// Gives partitions up (committing them under automatic commits), leaves the group and
    /// stops background work. Further calls fail.
    pub async fn close(&mut self) -> Result<(), ClientError> {
        if self.closed {
            return Ok(());
        }
        let result = self.leave_group().await;
        self.closed = true;
        self.assigned.clear();
        result
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(g) = &mut self.group {
            lock(&g.shared).stop = true;
            if let Some(h) = g.heartbeat.take() {
                h.abort();
            }
        }
    }
}

/// Retries a coordinator call a few times while the coordinator moves or loads.
async fn retry_coordinator<T, F, Fut>(backoff: Duration, mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match call().await {
            Err(e)
                if tries < 10
                    && (e.kafka_code().is_some_and(|c| {
                        group::is_coordinator_error(c) || c == 88 /* UNSTABLE_OFFSET_COMMIT */
                    }) || matches!(e, ClientError::Connect { .. } | ClientError::Io(_))) =>
            {
                tokio::time::sleep(backoff.max(Duration::from_millis(50))).await;
            }
            other => return other,
        }
    }
}

/// Records one at a time, polling the consumer as needed. See [`Consumer::stream`].
pub struct RecordStream<'a> {
    consumer: &'a mut Consumer,
    ready: VecDeque<Record>,
}

impl RecordStream<'_> {
    /// The next record; waits until one arrives. An error ends nothing: the next call polls
    /// again.
    pub async fn next(&mut self) -> Result<Record, ClientError> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Ok(r);
            }
            let batch = self.consumer.poll(Duration::from_millis(500)).await?;
            self.ready.extend(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fetcher::PartitionFetch;

    fn consumer(extra: &[(&str, &str)]) -> Consumer {
        let mut p = Properties::default().set("bootstrap.servers", "127.0.0.1:1");
        for (k, v) in extra {
            p = p.set(k, v);
        }
        Consumer::new(p).unwrap()
    }

    fn record(offset: i64) -> ConsumedRecord {
        ConsumedRecord {
            offset,
            timestamp_ms: 0,
            timestamp_type_log_append: false,
            key: None,
            value: Some(Bytes::from(offset.to_string())),
            headers: Vec::new(),
        }
    }

    fn fetched(tp: &TopicPartition, from: i64, offsets: &[i64], next: i64) -> FetchOutcome {
        FetchOutcome {
            broker: 1,
            result: Ok(vec![PartitionFetch {
                tp: tp.clone(),
                fetch_offset: from,
                error_code: error_code::NONE,
                high_watermark: next,
                records: offsets.iter().map(|&o| record(o)).collect(),
                next_offset: next,
                decode_error: None,
            }]),
        }
    }

    #[tokio::test]
    async fn polls_return_buffered_records_up_to_max_poll_records() {
        let mut c = consumer(&[("max.poll.records", "2")]);
        let tp = TopicPartition::new("t", 0);
        c.assign(std::slice::from_ref(&tp)).unwrap();
        c.seek(&tp, 5).unwrap();
        c.handle_outcome(fetched(&tp, 5, &[5, 6, 7], 10));
        let first: Vec<i64> = c.drain().iter().map(|r| r.offset).collect();
        assert_eq!(first, vec![5, 6]);
        assert_eq!(c.assigned[&tp].position, Some(7));
        let second: Vec<i64> = c.drain().iter().map(|r| r.offset).collect();
        assert_eq!(second, vec![7]);
        // Past the control records that ended the fetched batches.
        assert_eq!(c.assigned[&tp].position, Some(10));
        assert_eq!(c.high_watermark(&tp), Some(10));
    }

    #[tokio::test]
    async fn stale_fetches_are_dropped_after_a_seek() {
        let mut c = consumer(&[]);
        let tp = TopicPartition::new("t", 0);
        c.assign(std::slice::from_ref(&tp)).unwrap();
        c.seek(&tp, 100).unwrap();
        c.handle_outcome(fetched(&tp, 5, &[5, 6], 7));
        assert!(c.drain().is_empty());
        assert_eq!(c.assigned[&tp].position, Some(100));
    }

    #[tokio::test]
    async fn paused_partitions_keep_their_records() {
        let mut c = consumer(&[]);
        let (a, b) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        c.assign(&[a.clone(), b.clone()]).unwrap();
        c.seek(&a, 0).unwrap();
        c.seek(&b, 0).unwrap();
        c.handle_outcome(fetched(&a, 0, &[0, 1], 2));
        c.pause(std::slice::from_ref(&a)).unwrap();
        assert!(c.drain().is_empty());
        c.resume(std::slice::from_ref(&a)).unwrap();
        assert_eq!(c.drain().len(), 2);
        assert!(c.pause(&[TopicPartition::new("other", 0)]).is_err());
    }

    #[tokio::test]
    async fn out_of_range_resets_or_fails() {
        let tp = TopicPartition::new("t", 0);
        let out_of_range = |c: &mut Consumer| {
            c.handle_outcome(FetchOutcome {
                broker: 1,
                result: Ok(vec![PartitionFetch {
                    tp: tp.clone(),
                    fetch_offset: 50,
                    error_code: error_code::OFFSET_OUT_OF_RANGE,
                    high_watermark: 10,
                    records: Vec::new(),
                    next_offset: 50,
                    decode_error: None,
                }]),
            })
        };
        let mut c = consumer(&[("auto.offset.reset", "earliest")]);
        c.assign(std::slice::from_ref(&tp)).unwrap();
        c.seek(&tp, 50).unwrap();
        out_of_range(&mut c);
        assert_eq!(c.assigned[&tp].position, None);
        assert!(c.assigned[&tp].reset);
        assert!(c.pending_error.is_none());

        let mut c = consumer(&[("auto.offset.reset", "none")]);
        c.assign(std::slice::from_ref(&tp)).unwrap();
        c.seek(&tp, 50).unwrap();
        out_of_range(&mut c);
        let e = c.pending_error.take().unwrap().to_string();
        assert!(e.contains("OFFSET_OUT_OF_RANGE"), "{e}");
    }

    #[tokio::test]
    async fn leader_errors_refresh_metadata_instead_of_failing() {
        let mut c = consumer(&[]);
        let tp = TopicPartition::new("t", 0);
        c.assign(std::slice::from_ref(&tp)).unwrap();
        c.seek(&tp, 0).unwrap();
        c.metadata_stale = false;
        for code in [
            error_code::NOT_LEADER_OR_FOLLOWER,
            74, /* FENCED_LEADER_EPOCH */
        ] {
            c.handle_outcome(FetchOutcome {
                broker: 1,
                result: Ok(vec![PartitionFetch {
                    tp: tp.clone(),
                    fetch_offset: 0,
                    error_code: code,
                    high_watermark: -1,
                    records: Vec::new(),
                    next_offset: 0,
                    decode_error: None,
                }]),
            });
            assert!(c.metadata_stale);
            assert!(c.pending_error.is_none());
            assert_eq!(c.assigned[&tp].position, Some(0));
            c.metadata_stale = false;
        }
    }

    /// A scripted fake coordinator for the group code's unit tests: answers ApiVersions with
    /// `apis` (versions 0-4), FindCoordinator with itself, and hands every other request to
    /// `answer`. Returns its address.
    async fn fake_coordinator(
        apis: Vec<strom_protocol::ApiKey>,
        answer: impl Fn(&strom_protocol::RequestKind) -> strom_protocol::ResponseKind
        + Send
        + Sync
        + 'static,
    ) -> String {
        use strom_protocol::messages::api_versions_response::ApiVersion;
        use strom_protocol::messages::find_coordinator_response::Coordinator as Found;
        use strom_protocol::messages::{ApiVersionsResponse, FindCoordinatorResponse};
        use strom_protocol::{ApiKey, ResponseKind, encode_response};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let apis = apis.clone();
                let answer = answer.clone();
                tokio::spawn(async move {
                    loop {
                        let mut len = [0u8; 4];
                        if s.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
                        if s.read_exact(&mut frame).await.is_err() {
                            return;
                        }
                        let req = strom_protocol::decode_request(frame.into()).unwrap();
                        let body = match req.api_key {
                            ApiKey::ApiVersions => {
                                let keys = apis
                                    .iter()
                                    .map(|k| {
                                        let mut v = ApiVersion::default();
                                        v.api_key = *k as i16;
                                        v.max_version = 4;
                                        v
                                    })
                                    .collect();
                                ResponseKind::ApiVersions(
                                    ApiVersionsResponse::default().with_api_keys(keys),
                                )
                            }
                            ApiKey::FindCoordinator => {
                                let mut f = Found::default();
                                f.node_id = 1.into();
                                f.host = "127.0.0.1".into();
                                f.port = port as i32;
                                let mut r = FindCoordinatorResponse::default();
                                r.coordinators = vec![f];
                                ResponseKind::FindCoordinator(r)
                            }
                            _ => answer(&req.body),
                        };
                        let out = encode_response(
                            req.api_key,
                            req.api_version,
                            req.header.correlation_id,
                            &body,
                        )
                        .unwrap();
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        format!("127.0.0.1:{port}")
    }

    /// A coordinator whose ApiVersions lacks ConsumerGroupHeartbeat: the consumer protocol
    /// falls back to the classic one.
    #[tokio::test]
    async fn consumer_protocol_falls_back_to_classic_without_broker_support() {
        use strom_protocol::ApiKey;
        let addr = fake_coordinator(vec![ApiKey::FindCoordinator, ApiKey::JoinGroup], |r| {
            panic!("unexpected {r:?}")
        })
        .await;
        let mut c = consumer(&[
            ("bootstrap.servers", addr.as_str()),
            ("group.id", "g"),
            ("group.protocol", "consumer"),
        ]);
        let m = tokio::time::timeout(Duration::from_secs(10), c.choose_protocol())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m, Membership::Classic);
    }

    /// The classic heartbeat task turns the coordinator's answers into a rejoin, a lost
    /// membership (with a fresh member id after UNKNOWN_MEMBER_ID) or a fatal fence.
    #[tokio::test]
    async fn classic_heartbeat_errors_lead_to_rejoin_or_loss() {
        use strom_protocol::messages::HeartbeatResponse;
        use strom_protocol::{ApiKey, RequestKind, ResponseKind};
        for (code, rejoin, lost, member_kept, fatal) in [
            (error_code::REBALANCE_IN_PROGRESS, true, false, true, false),
            (error_code::ILLEGAL_GENERATION, true, true, true, false),
            (error_code::UNKNOWN_MEMBER_ID, true, true, false, false),
            (error_code::FENCED_INSTANCE_ID, false, true, true, true),
        ] {
            let addr = fake_coordinator(
                vec![ApiKey::FindCoordinator, ApiKey::Heartbeat],
                move |r| match r {
                    RequestKind::Heartbeat(_) => {
                        ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code))
                    }
                    other => panic!("unexpected {other:?}"),
                },
            )
            .await;
            let settings = MemberSettings {
                group: "g".into(),
                instance_id: None,
                session_timeout: Duration::from_secs(10),
                rebalance_timeout: Duration::from_secs(60),
                heartbeat_interval: Duration::from_millis(20),
                request_timeout: Duration::from_secs(5),
                retry_backoff: Duration::from_millis(10),
                remote_assignor: None,
            };
            let shared: SharedMember = Arc::new(std::sync::Mutex::new(MemberState::new(
                settings.heartbeat_interval,
            )));
            {
                let mut s = lock(&shared);
                s.member_id = "m-1".into();
                s.generation = 3;
                s.rejoin = false;
            }
            let coord = Coordinator::new("g", vec![addr], ConnectionConfig::default());
            let task = tokio::spawn(group::classic_heartbeats(coord, settings, shared.clone()));
            let deadline = Instant::now() + Duration::from_secs(10);
            while lock(&shared).generation == 3 && !lock(&shared).rejoin {
                assert!(Instant::now() < deadline, "no reaction to {code}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            task.abort();
            let s = lock(&shared);
            assert_eq!(s.rejoin, rejoin, "rejoin after {code}");
            assert_eq!(s.lost, lost, "lost after {code}");
            assert_eq!(s.member_id == "m-1", member_kept, "member id after {code}");
            assert_eq!(s.fatal.is_some(), fatal, "fatal after {code}");
        }
    }

    /// The consumer protocol's heartbeat task: an assignment becomes the target to reconcile
    /// and the epoch moves on; a fence loses everything and rejoins at epoch 0.
    #[tokio::test]
    async fn consumer_heartbeats_track_assignment_and_fencing() {
        use strom_protocol::messages::ConsumerGroupHeartbeatResponse;
        use strom_protocol::messages::consumer_group_heartbeat_response::{
            Assignment as Assigned, TopicPartitions as AssignedPartitions,
        };
        use strom_protocol::{ApiKey, RequestKind, ResponseKind};
        let epochs: Arc<std::sync::Mutex<Vec<i32>>> = Arc::default();
        let seen = epochs.clone();
        let addr = fake_coordinator(
            vec![ApiKey::FindCoordinator, ApiKey::ConsumerGroupHeartbeat],
            move |r| {
                let RequestKind::ConsumerGroupHeartbeat(req) = r else {
                    panic!("unexpected {r:?}");
                };
                let n = {
                    let mut e = seen.lock().unwrap();
                    e.push(req.member_epoch);
                    e.len() - 1
                };
                let mut resp = ConsumerGroupHeartbeatResponse::default();
                resp.heartbeat_interval_ms = 20;
                if n == 0 {
                    let mut tp = AssignedPartitions::default();
                    tp.partitions = vec![0, 1];
                    let mut a = Assigned::default();
                    a.topic_partitions = vec![tp];
                    resp.member_epoch = 5;
                    resp.assignment = Some(a);
                } else {
                    resp.error_code = error_code::FENCED_MEMBER_EPOCH;
                }
                ResponseKind::ConsumerGroupHeartbeat(resp)
            },
        )
        .await;
        let settings = MemberSettings {
            group: "g".into(),
            instance_id: None,
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_millis(20),
            request_timeout: Duration::from_secs(5),
            retry_backoff: Duration::from_millis(10),
            remote_assignor: None,
        };
        let shared: SharedMember = Arc::new(std::sync::Mutex::new(MemberState::new(
            settings.heartbeat_interval,
        )));
        {
            let mut s = lock(&shared);
            s.member_id = group::new_member_id();
            s.generation = 0;
            s.topics = vec!["t".into()];
        }
        let wake = Arc::new(Notify::new());
        let coord = Coordinator::new("g", vec![addr], ConnectionConfig::default());
        let task = tokio::spawn(group::consumer_heartbeats(
            coord,
            settings,
            shared.clone(),
            wake,
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        // The first answer assigns at epoch 5; the next heartbeat is fenced.
        while !lock(&shared).lost {
            assert!(Instant::now() < deadline, "no fence");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        task.abort();
        let s = lock(&shared);
        assert_eq!(s.generation, 0);
        assert!(s.owned.is_empty() && s.target.is_none());
        let epochs = epochs.lock().unwrap().clone();
        assert_eq!(
            epochs[..2],
            [0, 5],
            "joined at 0, then heartbeat at the new epoch"
        );
    }

    #[tokio::test]
    async fn group_calls_need_a_group_and_assign_excludes_subscribe() {
        let mut c = consumer(&[]);
        assert!(c.subscribe(&["t"]).is_err());
        assert!(c.commit_sync().await.is_err());
        let mut c = consumer(&[("group.id", "g")]);
        c.subscribe(&["t"]).unwrap();
        assert!(c.assign(&[TopicPartition::new("t", 0)]).is_err());
        assert!(c.subscribe_pattern("(").is_err());
    }
}

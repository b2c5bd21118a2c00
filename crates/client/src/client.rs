//! The connection layer of the admin client and strom's tools: metadata, produce, fetch and list
//! offsets, routed to partition leaders.
//!
//! Partition requests go to the partition's leader as the latest metadata names it; connections
//! are cached per broker address, and a leader change seen in an error code refreshes the
//! metadata and retries. [`crate::admin::Admin`] sends its requests through a `Client`'s
//! connections; the admin calls themselves (topics, configs, groups, ...) live there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Mutex;

use strom_protocol::compression::Codec;
use strom_protocol::messages::{MetadataResponse, TopicName};
use strom_protocol::messages::{
    fetch_request::{FetchPartition, FetchRequest, FetchTopic},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic},
    metadata_request::{MetadataRequest, MetadataRequestTopic},
    produce_request::{PartitionProduceData, ProduceRequest, TopicProduceData},
};
use strom_protocol::records::{self, ConsumedRecord, ProducerRecord};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, error_code, str_bytes};

use crate::connection::{Connection, ConnectionConfig};
use crate::error::{ClientError, check};

/// The highest version of each API this client speaks.
pub mod versions {
    pub const METADATA: i16 = 12;
    pub const PRODUCE: i16 = 9;
    pub const FETCH: i16 = 12;
    pub const LIST_OFFSETS: i16 = 7;
    pub const CREATE_TOPICS: i16 = 7;
    pub const DELETE_TOPICS: i16 = 6;
    pub const CREATE_PARTITIONS: i16 = 3;
    pub const DESCRIBE_CONFIGS: i16 = 4;
    pub const INCREMENTAL_ALTER_CONFIGS: i16 = 1;
    pub const DELETE_RECORDS: i16 = 2;
}

/// ListOffsets timestamps with a special meaning.
pub mod offset_spec {
    pub const EARLIEST: i64 = -2;
    pub const LATEST: i64 = -1;
    pub const MAX_TIMESTAMP: i64 = -3;
}

/// Kafka's config source ids (DescribeConfigs v1+).
pub mod config_source {
    pub const UNKNOWN: i8 = 0;
    pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    pub const DYNAMIC_BROKER_CONFIG: i8 = 2;
    pub const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
    pub const STATIC_BROKER_CONFIG: i8 = 4;
    pub const DEFAULT_CONFIG: i8 = 5;
    pub const DYNAMIC_BROKER_LOGGER_CONFIG: i8 = 6;

    /// Kafka's name for a source id.
    pub fn name(source: i8) -> &'static str {
        match source {
            DYNAMIC_TOPIC_CONFIG => "DYNAMIC_TOPIC_CONFIG",
            DYNAMIC_BROKER_CONFIG => "DYNAMIC_BROKER_CONFIG",
            DYNAMIC_DEFAULT_BROKER_CONFIG => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            STATIC_BROKER_CONFIG => "STATIC_BROKER_CONFIG",
            DEFAULT_CONFIG => "DEFAULT_CONFIG",
            DYNAMIC_BROKER_LOGGER_CONFIG => "DYNAMIC_BROKER_LOGGER_CONFIG",
            _ => "UNKNOWN",
        }
    }
}

/// Attempts for a partition request when the leader moved.
const LEADER_ATTEMPTS: usize = 3;
const LEADER_RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// A topic id (Kafka's 128-bit UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TopicId(pub [u8; 16]);

impl TopicId {
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl std::fmt::Display for TopicId {
    /// URL-safe base64 without padding, as Kafka's tools print topic ids.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::with_capacity(22);
        for chunk in self.0.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
            }
        }
        f.write_str(&out)
    }
}

/// A broker as metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerMetadata {
    /// `host:port`, with brackets around IPv6 hosts.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub index: i32,
    /// -1 when there is no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline_replicas: Vec<i32>,
    pub error_code: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    pub id: TopicId,
    pub error_code: i16,
    pub is_internal: bool,
    /// Sorted by partition index.
    pub partitions: Vec<PartitionMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerMetadata>,
    /// Sorted by name.
    pub topics: Vec<TopicMetadata>,
}

impl ClusterMetadata {
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.iter().find(|t| t.name == name)
    }
}

/// One config entry of a topic, as DescribeConfigs returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    /// None for sensitive values and for configs without a value.
    pub value: Option<String>,
    pub read_only: bool,
    /// One of [`config_source`].
    pub source: i8,
    pub is_default: bool,
    pub sensitive: bool,
}

/// What a fetch of one partition returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecords {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Records at or after the requested offset (a fetch may return the start of a batch that
    /// begins earlier; those records are dropped).
    pub records: Vec<ConsumedRecord>,
    /// Where the next fetch should start: after the last complete batch returned, which may be
    /// past the last record when batches held only control records.
    pub next_offset: i64,
}

pub(crate) type SharedConnection = Arc<Mutex<Connection>>;

#[derive(Default)]
struct State {
    /// Open connections by `host:port`.
    connections: HashMap<String, SharedConnection>,
    /// Broker addresses by id, from the latest metadata.
    brokers: HashMap<i32, String>,
    /// Partition leaders by (topic, partition), from the latest metadata.
    leaders: HashMap<(String, i32), i32>,
}

/// A Kafka client for strom's tools. Cheap to share behind an `Arc`; calls may run concurrently.
pub struct Client {
    bootstrap: Vec<String>,
    config: ConnectionConfig,
    state: Mutex<State>,
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(str_bytes(name))
}

pub(crate) fn topic_subject(name: &str) -> String {
    format!("topic {name:?}")
}

pub(crate) fn partition_subject(topic: &str, partition: i32) -> String {
    format!("partition {partition} of topic {topic:?}")
}

pub(crate) fn unexpected(api: &str, other: &ResponseKind) -> ClientError {
    let kind = format!("{other:?}");
    let kind = kind.split('(').next().unwrap_or("?").to_string();
    ClientError::UnexpectedResponse(format!("{api} request answered with a {kind} response"))
}

pub(crate) fn missing(what: String) -> ClientError {
    ClientError::UnexpectedResponse(format!("the response has no entry for {what}"))
}

/// Error codes after which a partition request is retried against a fresh leader.
pub(crate) fn is_leader_change(code: i16) -> bool {
    matches!(
        code,
        error_code::NOT_LEADER_OR_FOLLOWER | error_code::LEADER_NOT_AVAILABLE | 74 /* FENCED_LEADER_EPOCH */ | 75 /* UNKNOWN_LEADER_EPOCH */
    )
}

macro_rules! expect_response {
    ($resp:expr, $kind:ident) => {
        match $resp {
            ResponseKind::$kind(r) => r,
            other => return Err(unexpected(stringify!($kind), &other)),
        }
    };
}

impl Client {
    /// A client for the comma-separated `host:port` list in `bootstrap`. Nothing is connected
    /// until the first call.
    pub fn new(bootstrap: &str) -> Result<Client, ClientError> {
        Client::with_config(bootstrap, ConnectionConfig::default())
    }

    pub fn with_config(bootstrap: &str, config: ConnectionConfig) -> Result<Client, ClientError> {
        let bootstrap: Vec<String> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if bootstrap.is_empty() {
            return Err(ClientError::InvalidArgument(
                "the bootstrap server list is empty".into(),
            ));
        }
        for addr in &bootstrap {
            if !addr.contains(':') {
                return Err(ClientError::InvalidArgument(format!(
                    "bootstrap server {addr:?} is not of the form host:port"
                )));
            }
        }
        Ok(Client {
            bootstrap,
            config,
            state: Mutex::new(State::default()),
        })
    }

    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    // -----------------------------------------------------------------------------------------
    // connections

    /// The open connection to `addr`, or a new one.
    pub(crate) async fn connection_to(&self, addr: &str) -> Result<SharedConnection, ClientError> {
        let mut state = self.state.lock().await;
        if let Some(c) = state.connections.get(addr) {
            return Ok(c.clone());
        }
        let conn = Arc::new(Mutex::new(
            Connection::connect(addr, self.config.clone()).await?,
        ));
        state.connections.insert(addr.to_string(), conn.clone());
        Ok(conn)
    }

    /// A connection to any broker, with its address: an open one if there is one, else the
    /// first bootstrap server that accepts.
    pub(crate) async fn any_connection(&self) -> Result<(String, SharedConnection), ClientError> {
        {
            let state = self.state.lock().await;
            if let Some((addr, c)) = state.connections.iter().next() {
                return Ok((addr.clone(), c.clone()));
            }
        }
        let mut last_error = None;
        for addr in &self.bootstrap {
            match self.connection_to(addr).await {
                Ok(c) => return Ok((addr.clone(), c)),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "bootstrap server unreachable");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error
            .unwrap_or_else(|| ClientError::InvalidArgument("no bootstrap server".into())))
    }

    /// The bootstrap servers, in the order given.
    pub fn bootstrap_servers(&self) -> &[String] {
        &self.bootstrap
    }

    async fn forget_if_broken(&self, conn: &SharedConnection) {
        if !conn.lock().await.is_broken() {
            return;
        }
        let mut state = self.state.lock().await;
        state.connections.retain(|_, c| !Arc::ptr_eq(c, conn));
    }

    /// Sends one request on `conn` at the version negotiated for `api` (capped at `client_max`);
    /// `body` builds the request for that version.
    async fn request(
        &self,
        conn: &SharedConnection,
        api: ApiKey,
        client_max: i16,
        timeout: Option<Duration>,
        body: impl FnOnce(i16) -> RequestKind,
    ) -> Result<(i16, ResponseKind), ClientError> {
        self.try_request(conn, api, client_max, timeout, |v| Ok(body(v)))
            .await
    }

    async fn request_any(
        &self,
        api: ApiKey,
        client_max: i16,
        body: impl FnOnce(i16) -> RequestKind,
    ) -> Result<(i16, ResponseKind), ClientError> {
        let (_, conn) = self.any_connection().await?;
        self.request(&conn, api, client_max, None, body).await
    }

    /// [`Client::request`] with a body that may refuse the negotiated version.
    pub(crate) async fn try_request(
        &self,
        conn: &SharedConnection,
        api: ApiKey,
        client_max: i16,
        timeout: Option<Duration>,
        body: impl FnOnce(i16) -> Result<RequestKind, ClientError>,
    ) -> Result<(i16, ResponseKind), ClientError> {
        let result = async {
            let mut c = conn.lock().await;
            let version = c.version(api, client_max)?;
            let timeout = timeout.unwrap_or(self.config.request_timeout);
            c.send_with_timeout(api, version, body(version)?, timeout)
                .await
                .map(|r| (version, r))
        }
        .await;
        if result.is_err() {
            self.forget_if_broken(conn).await;
        }
        result
    }

    /// The address of broker `id`, from the latest metadata (fetched when the broker is not
    /// known yet).
    pub(crate) async fn broker_address(&self, id: i32) -> Result<String, ClientError> {
        if let Some(addr) = self.state.lock().await.brokers.get(&id) {
            return Ok(addr.clone());
        }
        let md = self.metadata(Some(Vec::new())).await?;
        md.brokers
            .iter()
            .find(|b| b.id == id)
            .map(BrokerMetadata::address)
            .ok_or_else(|| {
                ClientError::kafka(
                    8, // BROKER_NOT_AVAILABLE
                    &format!("broker {id}"),
                    Some("not among the brokers in metadata"),
                )
            })
    }

    /// The connection to the leader of a partition, from cached metadata or fresh metadata.
    async fn leader_connection(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<SharedConnection, ClientError> {
        let addr = self.leader_address(topic, partition).await?;
        self.connection_to(&addr).await
    }

    /// The address of the leader of a partition, from cached metadata or fresh metadata.
    pub(crate) async fn leader_address(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<String, ClientError> {
        let key = (topic.to_string(), partition);
        let cached = {
            let state = self.state.lock().await;
            state
                .leaders
                .get(&key)
                .and_then(|id| state.brokers.get(id))
                .cloned()
        };
        let addr = match cached {
            Some(addr) => addr,
            None => {
                let md = self.metadata(Some(vec![topic.to_string()])).await?;
                let t = md.topic(topic).ok_or_else(|| {
                    ClientError::kafka(
                        error_code::UNKNOWN_TOPIC_OR_PARTITION,
                        &topic_subject(topic),
                        None,
                    )
                })?;
                check(t.error_code, &topic_subject(topic), None)?;
                let p = t
                    .partitions
                    .iter()
                    .find(|p| p.index == partition)
                    .ok_or_else(|| {
                        ClientError::kafka(
                            error_code::UNKNOWN_TOPIC_OR_PARTITION,
                            &partition_subject(topic, partition),
                            None,
                        )
                    })?;
                if p.leader < 0 {
                    return Err(ClientError::kafka(
                        error_code::LEADER_NOT_AVAILABLE,
                        &partition_subject(topic, partition),
                        None,
                    ));
                }
                md.brokers
                    .iter()
                    .find(|b| b.id == p.leader)
                    .map(BrokerMetadata::address)
                    .ok_or_else(|| {
                        ClientError::UnexpectedResponse(format!(
                            "leader {} of {} is not among the brokers in metadata",
                            p.leader,
                            partition_subject(topic, partition)
                        ))
                    })?
            }
        };
        Ok(addr)
    }

    /// Forgets the leaders of a deleted topic.
    pub(crate) async fn forget_topic(&self, name: &str) {
        self.state
            .lock()
            .await
            .leaders
            .retain(|(topic, _), _| topic != name);
    }

    pub(crate) async fn forget_leader(&self, topic: &str, partition: i32) {
        let mut state = self.state.lock().await;
        state.leaders.remove(&(topic.to_string(), partition));
    }

    /// Runs `attempt` against the partition leader, retrying with fresh metadata when the
    /// leader moved.
    async fn with_leader<T, F, Fut>(
        &self,
        topic: &str,
        partition: i32,
        mut attempt: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(SharedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            let conn = match self.leader_connection(topic, partition).await {
                Ok(conn) => conn,
                Err(e @ (ClientError::Connect { .. } | ClientError::Timeout { .. }))
                    if tries < LEADER_ATTEMPTS =>
                {
                    // The leader we knew of is unreachable: ask for fresh metadata.
                    tracing::debug!(topic, partition, error = %e, "leader unreachable; refreshing metadata");
                    self.forget_leader(topic, partition).await;
                    tokio::time::sleep(LEADER_RETRY_BACKOFF).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match attempt(conn).await {
                Err(e)
                    if tries < LEADER_ATTEMPTS && e.kafka_code().is_some_and(is_leader_change) =>
                {
                    tracing::debug!(topic, partition, error = %e, "leader moved; refreshing metadata");
                    self.forget_leader(topic, partition).await;
                    tokio::time::sleep(LEADER_RETRY_BACKOFF).await;
                }
                other => return other,
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // metadata and admin

    /// Cluster metadata for the named topics, or for all topics with `None`. Never creates
    /// topics. Refreshes the client's leader cache.
    pub async fn metadata(
        &self,
        topics: Option<Vec<String>>,
    ) -> Result<ClusterMetadata, ClientError> {
        let (_, response) = self
            .request_any(ApiKey::Metadata, versions::METADATA, |_| {
                let mut req = MetadataRequest::default();
                req.topics = topics.map(|names| {
                    names
                        .iter()
                        .map(|n| {
                            let mut t = MetadataRequestTopic::default();
                            t.name = Some(topic_name(n));
                            t
                        })
                        .collect()
                });
                req.allow_auto_topic_creation = false;
                RequestKind::Metadata(req)
            })
            .await?;
        let response = expect_response!(response, Metadata);
        let metadata = convert_metadata(&response);
        self.remember(&metadata).await;
        Ok(metadata)
    }

    async fn remember(&self, md: &ClusterMetadata) {
        let mut state = self.state.lock().await;
        for b in &md.brokers {
            state.brokers.insert(b.id, b.address());
        }
        for t in &md.topics {
            if t.error_code != error_code::NONE {
                continue;
            }
            for p in &t.partitions {
                let key = (t.name.clone(), p.index);
                if p.leader >= 0 {
                    state.leaders.insert(key, p.leader);
                } else {
                    state.leaders.remove(&key);
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // partitions

    /// Writes `records` as one batch to a partition; returns the offset of the first record,
    /// or -1 with `acks` 0 (the broker does not answer).
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        records: &[ProducerRecord],
        codec: Codec,
        acks: i16,
    ) -> Result<i64, ClientError> {
        if !matches!(acks, -1..=1) {
            return Err(ClientError::InvalidArgument(format!(
                "acks must be -1 (all), 0 or 1, not {acks}"
            )));
        }
        let batch = records::encode_batch(records, codec)?;
        let timeout_ms = self.config.request_timeout.as_millis() as i32;
        let build = |batch: Bytes| {
            let mut p = PartitionProduceData::default();
            p.index = partition;
            p.records = Some(batch);
            let mut t = TopicProduceData::default();
            t.name = topic_name(topic);
            t.partition_data = vec![p];
            let mut req = ProduceRequest::default();
            req.transactional_id = None;
            req.acks = acks;
            req.timeout_ms = timeout_ms;
            req.topic_data = vec![t];
            RequestKind::Produce(req)
        };
        self.with_leader(topic, partition, |conn| {
            let batch = batch.clone();
            async move {
                if acks == 0 {
                    let result = {
                        let mut c = conn.lock().await;
                        let version = c.version(ApiKey::Produce, versions::PRODUCE)?;
                        c.send_without_response(ApiKey::Produce, version, build(batch))
                            .await
                    };
                    if result.is_err() {
                        self.forget_if_broken(&conn).await;
                    }
                    return result.map(|()| -1);
                }
                let (_, response) = self
                    .request(&conn, ApiKey::Produce, versions::PRODUCE, None, |_| {
                        build(batch)
                    })
                    .await?;
                let response = expect_response!(response, Produce);
                let p = response
                    .responses
                    .iter()
                    .filter(|t| t.name.as_str() == topic)
                    .flat_map(|t| t.partition_responses.iter())
                    .find(|p| p.index == partition)
                    .ok_or_else(|| missing(partition_subject(topic, partition)))?;
                if p.error_code != error_code::NONE {
                    let mut detail: Vec<String> =
                        p.error_message.iter().map(|m| m.to_string()).collect();
                    for e in &p.record_errors {
                        detail.push(format!(
                            "record {}: {}",
                            e.batch_index,
                            e.batch_index_error_message.as_deref().unwrap_or("rejected")
                        ));
                    }
                    let detail = detail.join("; ");
                    return Err(ClientError::kafka(
                        p.error_code,
                        &partition_subject(topic, partition),
                        Some(&detail),
                    ));
                }
                Ok(p.base_offset)
            }
        })
        .await
    }

    /// Reads from a partition starting at `offset`, waiting up to `max_wait_ms` for data.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
        max_wait_ms: i32,
    ) -> Result<FetchedRecords, ClientError> {
        let timeout =
            self.config.request_timeout + Duration::from_millis(max_wait_ms.max(0) as u64);
        self.with_leader(topic, partition, |conn| async move {
            let (_, response) = self
                .request(&conn, ApiKey::Fetch, versions::FETCH, Some(timeout), |_| {
                    let mut p = FetchPartition::default();
                    p.partition = partition;
                    p.fetch_offset = offset;
                    p.partition_max_bytes = max_bytes;
                    let mut t = FetchTopic::default();
                    t.topic = topic_name(topic);
                    t.partitions = vec![p];
                    let mut req = FetchRequest::default();
                    req.max_wait_ms = max_wait_ms;
                    req.min_bytes = 1;
                    req.max_bytes = max_bytes;
                    req.isolation_level = 0;
                    req.session_id = 0;
                    req.session_epoch = -1;
                    req.topics = vec![t];
                    RequestKind::Fetch(req)
                })
                .await?;
            let response = expect_response!(response, Fetch);
            check(
                response.error_code,
                &partition_subject(topic, partition),
                None,
            )?;
            let p = response
                .responses
                .iter()
                .filter(|t| t.topic.as_str() == topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == partition)
                .ok_or_else(|| missing(partition_subject(topic, partition)))?;
            check(p.error_code, &partition_subject(topic, partition), None)?;
            let data = p.records.clone().unwrap_or_default();
            let batches_end = records::batches_end_offset(&data);
            let mut records = records::decode_batches(data)?;
            records.retain(|r| r.offset >= offset);
            let next_offset = records
                .last()
                .map(|r| r.offset + 1)
                .into_iter()
                .chain(batches_end)
                .fold(offset, i64::max);
            Ok(FetchedRecords {
                high_watermark: p.high_watermark,
                log_start_offset: p.log_start_offset,
                records,
                next_offset,
            })
        })
        .await
    }

    /// The offset for a timestamp: [`offset_spec::EARLIEST`], [`offset_spec::LATEST`],
    /// [`offset_spec::MAX_TIMESTAMP`] or a time in ms (the first offset whose timestamp is at
    /// or after it; -1 when there is none). Returns (offset, timestamp).
    pub async fn list_offsets(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<(i64, i64), ClientError> {
        self.with_leader(topic, partition, |conn| async move {
            let (version, response) = self
                .request(
                    &conn,
                    ApiKey::ListOffsets,
                    versions::LIST_OFFSETS,
                    None,
                    |_| {
                        let mut p = ListOffsetsPartition::default();
                        p.partition_index = partition;
                        p.timestamp = timestamp;
                        let mut t = ListOffsetsTopic::default();
                        t.name = topic_name(topic);
                        t.partitions = vec![p];
                        let mut req = ListOffsetsRequest::default();
                        req.replica_id = (-1).into();
                        req.isolation_level = 0;
                        req.topics = vec![t];
                        RequestKind::ListOffsets(req)
                    },
                )
                .await?;
            if timestamp == offset_spec::MAX_TIMESTAMP && version < 7 {
                return Err(ClientError::InvalidArgument(
                    "the broker does not support looking up the max timestamp (ListOffsets v7)"
                        .into(),
                ));
            }
            let response = expect_response!(response, ListOffsets);
            let p = response
                .topics
                .iter()
                .filter(|t| t.name.as_str() == topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == partition)
                .ok_or_else(|| missing(partition_subject(topic, partition)))?;
            if p.error_code != error_code::NONE {
                return Err(ClientError::partition(p.error_code, topic, partition, None));
            }
            Ok((p.offset, p.timestamp))
        })
        .await
    }
}

fn convert_metadata(r: &MetadataResponse) -> ClusterMetadata {
    let mut brokers: Vec<BrokerMetadata> = r
        .brokers
        .iter()
        .map(|b| BrokerMetadata {
            id: b.node_id.0,
            host: b.host.to_string(),
            port: b.port,
            rack: b.rack.as_ref().map(|r| r.to_string()),
        })
        .collect();
    brokers.sort_by_key(|b| b.id);
    let mut topics: Vec<TopicMetadata> = r
        .topics
        .iter()
        .map(|t| {
            let mut partitions: Vec<PartitionMetadata> = t
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    index: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    offline_replicas: p.offline_replicas.iter().map(|b| b.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.index);
            TopicMetadata {
                name: t.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                id: TopicId(*t.topic_id.as_bytes()),
                error_code: t.error_code,
                is_internal: t.is_internal,
                partitions,
            }
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    ClusterMetadata {
        cluster_id: r.cluster_id.as_ref().map(|c| c.to_string()),
        controller_id: r.controller_id.0,
        brokers,
        topics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };

    #[test]
    fn topic_ids_print_like_kafka() {
        assert_eq!(TopicId([0; 16]).to_string(), "AAAAAAAAAAAAAAAAAAAAAA");
        let mut id = [0u8; 16];
        id[0] = 0xfb;
        id[15] = 0xff;
        // 0xfb = 111110 11 -> '-' then 'w' (110000): URL-safe alphabet, no padding.
        let s = TopicId(id).to_string();
        assert_eq!(s.len(), 22);
        assert!(s.starts_with("-w"), "{s}");
        assert!(s.ends_with("_w"), "{s}");
    }

    #[test]
    fn bootstrap_lists_are_checked() {
        assert!(Client::new("127.0.0.1:9092, other:9093").is_ok());
        assert!(Client::new("").is_err());
        assert!(Client::new("localhost").is_err());
    }

    #[test]
    fn broker_addresses_bracket_ipv6() {
        let b = |host: &str| BrokerMetadata {
            id: 1,
            host: host.into(),
            port: 9092,
            rack: None,
        };
        assert_eq!(b("localhost").address(), "localhost:9092");
        assert_eq!(b("::1").address(), "[::1]:9092");
    }

    #[test]
    fn metadata_converts_and_sorts() {
        let mut r = MetadataResponse::default();
        let mut broker = MetadataResponseBroker::default();
        broker.node_id = 1.into();
        broker.host = str_bytes("localhost");
        broker.port = 9092;
        r.brokers = vec![broker];
        let mut topic = MetadataResponseTopic::default();
        topic.name = Some(topic_name("orders"));
        let mut p1 = MetadataResponsePartition::default();
        p1.partition_index = 1;
        p1.leader_id = 1.into();
        p1.replica_nodes = vec![1.into()];
        p1.isr_nodes = vec![1.into()];
        let mut p0 = p1.clone();
        p0.partition_index = 0;
        topic.partitions = vec![p1, p0];
        r.topics = vec![topic];
        let md = convert_metadata(&r);
        assert_eq!(md.brokers[0].address(), "localhost:9092");
        let t = md.topic("orders").unwrap();
        assert_eq!(
            t.partitions.iter().map(|p| p.index).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(t.partitions[0].isr, vec![1]);
    }

    #[test]
    fn leader_changes_are_retried_other_errors_are_not() {
        assert!(is_leader_change(error_code::NOT_LEADER_OR_FOLLOWER));
        assert!(is_leader_change(error_code::LEADER_NOT_AVAILABLE));
        assert!(!is_leader_change(error_code::UNKNOWN_TOPIC_OR_PARTITION));
        assert!(!is_leader_change(error_code::OFFSET_OUT_OF_RANGE));
    }
}

//! The admin client: topics, configs, consumer groups and their offsets, partitions, ACLs,
//! SCRAM users, quotas, reassignments, leader elections, log directories, transactions and the
//! cluster itself, as Kafka's `Admin` API offers them. The `strom` CLI is built on it.
//!
//! An [`Admin`] is configured with Kafka's property names, like the producer and the consumer:
//!
//! | property | default | meaning |
//! |---|---|---|
//! | `bootstrap.servers` | (required) | `host:port` list to learn the cluster from |
//! | `client.id` | `strom-admin` | sent with every request |
//! | `request.timeout.ms` | 30000 | how long one request may take |
//! | `default.api.timeout.ms` | 60000 | how long one call may take, retries included |
//! | `retries` | 2147483647 | retries of a call (within `default.api.timeout.ms`) |
//! | `retry.backoff.ms`, `retry.backoff.max.ms` | 100, 1000 | pause between retries, doubling |
//! | `security.protocol`, `ssl.*`, `sasl.*` | plaintext | TLS and SASL, as for every client |
//!
//! An unknown property, or a value of the wrong type, is refused by [`Admin::new`] with a
//! [`ClientError::Config`] naming it.
//!
//! Each request goes where Kafka's admin client sends it: topic, config, ACL, quota, SCRAM and
//! replica requests to the controller named by Metadata; group requests to the group's
//! coordinator (FindCoordinator); ListOffsets, DeleteRecords and DescribeProducers to the
//! partition leader; DescribeLogDirs to the broker asked about. A call is retried, after fresh
//! metadata or a fresh coordinator lookup, when the answer is NOT_CONTROLLER, NOT_COORDINATOR,
//! COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS, a leader change
//! (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH)
//! or a lost connection, until `default.api.timeout.ms` has passed; the last error is returned
//! then. When no bootstrap server can be reached at all, a call fails at once.
//!
//! Errors are [`ClientError`]s: [`ClientError::is_retriable`], [`ClientError::error_name`]
//! (the Kafka name, e.g. `TOPIC_ALREADY_EXISTS`) and [`ClientError::resource_name`] (the
//! resource refused, e.g. `topic "orders"`) or [`ClientError::topic_partition`].
//!
//! ```no_run
//! use strom_client::Properties;
//! use strom_client::admin::{Admin, AlterConfigOp, ConfigResource, NewTopic};
//!
//! # async fn run() -> Result<(), strom_client::ClientError> {
//! let admin = Admin::new(Properties::default().set("bootstrap.servers", "127.0.0.1:9092"))?;
//! admin
//!     .create_topic(NewTopic::new("orders", 3, 1).config("retention.ms", "86400000"))
//!     .await?;
//! let topics = admin.describe_topics(&["orders"]).await?;
//! println!("orders has {} partitions", topics[0].partitions.len());
//! admin
//!     .incremental_alter_configs(
//!         &ConfigResource::topic("orders"),
//!         &[AlterConfigOp::set("retention.ms", "3600000")],
//!     )
//!     .await?;
//! for group in admin.list_groups(&[]).await? {
//!     println!("group {} ({})", group.group_id, group.state);
//! }
//! admin.delete_topic("orders").await?;
//! # Ok(())
//! # }
//! ```

pub mod cluster;
pub mod configs;
pub mod groups;
pub mod offsets;
pub mod replicas;
pub mod security;
pub mod topics;
pub mod transactions;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use strom_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use strom_protocol::{ApiKey, RequestKind, ResponseKind, error_code, str_bytes};

use crate::client::{Client, ClusterMetadata};
use crate::config::{CommonConfig, Properties, config_error};
use crate::error::{ClientError, check_resource};

pub use cluster::{ClusterDescription, FinalizedFeature, LogDirDescription, QuorumDescription};
pub use configs::{AlterConfigOp, ConfigResource};
pub use groups::{CommittedOffsets, GroupDescription, GroupListing, GroupMember};
pub use offsets::OffsetSpec;
pub use topics::NewTopic;

/// Kafka properties an admin client accepts and ignores (they have no meaning here).
const IGNORED: &[&str] = &[
    "client.dns.lookup",
    "connections.max.idle.ms",
    "receive.buffer.bytes",
    "send.buffer.bytes",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
    "metadata.recovery.strategy",
    "metric.reporters",
    "metrics.num.samples",
    "metrics.recording.level",
    "metrics.sample.window.ms",
    "auto.include.jmx.reporter",
    "security.providers",
];

/// FindCoordinator key types.
pub(crate) const KEY_TYPE_GROUP: i8 = 0;
pub(crate) const KEY_TYPE_TRANSACTION: i8 = 1;

/// The error code at the top of an admin response, for those that have one.
fn top_level_code(r: &ResponseKind) -> Option<i16> {
    Some(match r {
        ResponseKind::DescribeCluster(r) => r.error_code,
        ResponseKind::DescribeAcls(r) => r.error_code,
        ResponseKind::AlterPartitionReassignments(r) => r.error_code,
        ResponseKind::ListPartitionReassignments(r) => r.error_code,
        ResponseKind::ElectLeaders(r) => r.error_code,
        ResponseKind::DescribeUserScramCredentials(r) => r.error_code,
        ResponseKind::DescribeClientQuotas(r) => r.error_code,
        ResponseKind::ListGroups(r) => r.error_code,
        ResponseKind::ListTransactions(r) => r.error_code,
        ResponseKind::DescribeLogDirs(r) => r.error_code,
        ResponseKind::DescribeQuorum(r) => r.error_code,
        ResponseKind::CreateAcls(r) => r.results.iter().map(|x| x.error_code).find(|c| *c != 0)?,
        ResponseKind::DeleteAcls(r) => r
            .filter_results
            .iter()
            .map(|x| x.error_code)
            .find(|c| *c != 0)?,
        ResponseKind::AlterClientQuotas(r) => {
            r.entries.iter().map(|x| x.error_code).find(|c| *c != 0)?
        }
        ResponseKind::AlterUserScramCredentials(r) => {
            r.results.iter().map(|x| x.error_code).find(|c| *c != 0)?
        }
        _ => return None,
    })
}

/// The settings of an admin client.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Bootstrap servers, client id, request timeout, backoff and security.
    pub common: CommonConfig,
    /// `default.api.timeout.ms` (default 60000): how long a call may take, retries included.
    pub default_api_timeout: Duration,
    /// `retries` (default 2147483647): how often a call is retried within
    /// `default.api.timeout.ms`.
    pub retries: u32,
}

impl AdminConfig {
    /// Reads the admin properties; unknown ones and wrong types are refused.
    pub fn from_properties(mut p: Properties) -> Result<AdminConfig, ClientError> {
        let common = CommonConfig::read(&mut p, "strom-admin")?;
        let api_timeout_set = p.contains("default.api.timeout.ms");
        let mut default_api_timeout = p.millis("default.api.timeout.ms", 60_000, 1)?;
        let retries = p.i64_in("retries", i32::MAX.into(), 0, i32::MAX.into())? as u32;
        p.accept_ignored(IGNORED);
        p.finish()?;
        if default_api_timeout < common.request_timeout {
            if api_timeout_set {
                return Err(config_error(
                    "default.api.timeout.ms",
                    &default_api_timeout.as_millis().to_string(),
                    format!(
                        "must be at least request.timeout.ms ({} ms)",
                        common.request_timeout.as_millis()
                    ),
                ));
            }
            default_api_timeout = common.request_timeout;
        }
        Ok(AdminConfig {
            common,
            default_api_timeout,
            retries,
        })
    }
}

/// Where a request goes.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// Any broker (the first bootstrap server that answers, or an open connection).
    Any,
    /// The controller as Metadata names it.
    Controller,
    /// The coordinator of a consumer group.
    Group(String),
    /// The coordinator of a transactional id.
    Transaction(String),
    /// The leader of a partition.
    Leader(String, i32),
    /// One broker by id.
    Broker(i32),
    /// One broker by address.
    Address(String),
}

/// The retry state of one call.
pub(crate) struct Retry {
    deadline: Instant,
    tries: u32,
    backoff: Duration,
}

/// Codes after which an admin call is tried again, once the route was looked up afresh.
pub(crate) fn is_admin_retriable(code: i16) -> bool {
    matches!(
        code,
        error_code::NOT_LEADER_OR_FOLLOWER
            | error_code::LEADER_NOT_AVAILABLE
            | error_code::NOT_COORDINATOR
            | error_code::COORDINATOR_NOT_AVAILABLE
            | error_code::COORDINATOR_LOAD_IN_PROGRESS
            | 8 // BROKER_NOT_AVAILABLE
            | 13 // NETWORK_EXCEPTION
            | 41 // NOT_CONTROLLER
            | 74 // FENCED_LEADER_EPOCH
            | 75 // UNKNOWN_LEADER_EPOCH
            | 89 // THROTTLING_QUOTA_EXCEEDED
    )
}

/// Kafka's admin client for strom (and any Kafka-compatible cluster). Calls may run
/// concurrently; share it behind an `Arc`.
pub struct Admin {
    client: Client,
    config: AdminConfig,
    /// Coordinator address by (key type, key).
    coordinators: Mutex<HashMap<(i8, String), String>>,
    /// The controller's address, from Metadata.
    controller: Mutex<Option<String>>,
    /// Whether some broker ever answered: until then a refused connection is not retried.
    reached: AtomicBool,
}

impl Admin {
    /// An admin client configured by Kafka's property names (see the [module
    /// docs](self)). Nothing is connected until the first call.
    pub fn new(properties: Properties) -> Result<Admin, ClientError> {
        Admin::with_config(AdminConfig::from_properties(properties)?)
    }

    /// An admin client from settings read already.
    pub fn with_config(config: AdminConfig) -> Result<Admin, ClientError> {
        let client = Client::with_config(&config.common.bootstrap(), config.common.connection())?;
        Ok(Admin {
            client,
            config,
            coordinators: Mutex::new(HashMap::new()),
            controller: Mutex::new(None),
            reached: AtomicBool::new(false),
        })
    }

    /// The admin side of another client (the transactional producer's coordinator calls).
    pub(crate) fn for_common(common: &CommonConfig) -> Result<Admin, ClientError> {
        Admin::with_config(AdminConfig {
            common: common.clone(),
            default_api_timeout: Duration::from_secs(60).max(common.request_timeout),
            retries: 0,
        })
    }

    /// The settings this client runs with.
    pub fn config(&self) -> &AdminConfig {
        &self.config
    }

    /// The connection layer underneath: metadata, produce, fetch (for tools that also move
    /// records, such as the CLI's console producer and consumer).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bootstrap servers, in the order given.
    pub fn bootstrap_servers(&self) -> Vec<String> {
        self.client.bootstrap_servers().to_vec()
    }

    /// Cluster metadata (brokers, controller, topics and their partitions) of the named topics,
    /// or of all topics with `None`. Never creates topics.
    pub async fn metadata(
        &self,
        topics: Option<Vec<String>>,
    ) -> Result<ClusterMetadata, ClientError> {
        self.retrying(Route::Any, |_| {
            let topics = topics.clone();
            async move { self.client.metadata(topics).await }
        })
        .await
    }

    // -----------------------------------------------------------------------------------------
    // routing and retries

    pub(crate) fn retry_state(&self) -> Retry {
        Retry {
            deadline: Instant::now() + self.config.default_api_timeout,
            tries: 0,
            backoff: self.config.common.retry_backoff,
        }
    }

    /// After `e`: whether to try again. If so, forgets what `route` resolved to and waits the
    /// backoff first.
    pub(crate) async fn pause(&self, r: &mut Retry, route: &Route, e: &ClientError) -> bool {
        let retriable = match e {
            ClientError::Connect { .. } | ClientError::Io(_) | ClientError::Timeout { .. } => {
                self.reached.load(Ordering::Relaxed)
            }
            other => other.kafka_code().is_some_and(is_admin_retriable),
        };
        if !retriable || r.tries >= self.config.retries || Instant::now() + r.backoff >= r.deadline
        {
            return false;
        }
        tracing::debug!(?route, error = %e, try_ = r.tries, "admin call failed; retrying");
        self.forget(route).await;
        tokio::time::sleep(r.backoff).await;
        r.tries += 1;
        r.backoff = (r.backoff * 2).min(
            self.config
                .common
                .retry_backoff_max
                .max(self.config.common.retry_backoff),
        );
        true
    }

    async fn forget(&self, route: &Route) {
        match route {
            Route::Controller => *self.controller.lock().await = None,
            Route::Group(g) => {
                self.coordinators
                    .lock()
                    .await
                    .remove(&(KEY_TYPE_GROUP, g.clone()));
            }
            Route::Transaction(t) => {
                self.coordinators
                    .lock()
                    .await
                    .remove(&(KEY_TYPE_TRANSACTION, t.clone()));
            }
            Route::Leader(t, p) => self.client.forget_leader(t, *p).await,
            Route::Any | Route::Broker(_) | Route::Address(_) => {}
        }
    }

    /// The address `route` leads to now.
    pub(crate) async fn address(&self, route: &Route) -> Result<String, ClientError> {
        match route {
            Route::Any => Ok(self.client.any_connection().await?.0),
            Route::Controller => self.controller_address().await,
            Route::Group(g) => self.coordinator(KEY_TYPE_GROUP, g).await,
            Route::Transaction(t) => self.coordinator(KEY_TYPE_TRANSACTION, t).await,
            Route::Leader(t, p) => self.client.leader_address(t, *p).await,
            Route::Broker(id) => self.client.broker_address(*id).await,
            Route::Address(a) => Ok(a.clone()),
        }
    }

    async fn controller_address(&self) -> Result<String, ClientError> {
        if let Some(addr) = self.controller.lock().await.clone() {
            return Ok(addr);
        }
        let md = self.client.metadata(Some(Vec::new())).await?;
        let addr = match md.brokers.iter().find(|b| b.id == md.controller_id) {
            Some(b) => b.address(),
            // No controller known (an election): any broker forwards.
            None => return Ok(self.client.any_connection().await?.0),
        };
        *self.controller.lock().await = Some(addr.clone());
        Ok(addr)
    }

    /// Runs `attempt` against the broker `route` leads to, looking the route up again and
    /// retrying on the errors listed in the module docs, within `default.api.timeout.ms`.
    pub(crate) async fn retrying<T, F, Fut>(
        &self,
        route: Route,
        mut attempt: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut r = self.retry_state();
        loop {
            let result = match self.address(&route).await {
                Ok(addr) => attempt(addr).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(v) => {
                    self.reached.store(true, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) => {
                    if e.kafka_code().is_some() {
                        // A broker answered.
                        self.reached.store(true, Ordering::Relaxed);
                    }
                    if !self.pause(&mut r, &route, &e).await {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Sends one request to `addr` at the version negotiated for `api` (capped at
    /// `client_max`); `body` builds the request for that version or refuses it.
    pub(crate) async fn request(
        &self,
        addr: &str,
        api: ApiKey,
        client_max: i16,
        body: impl FnOnce(i16) -> Result<RequestKind, ClientError>,
    ) -> Result<(i16, ResponseKind), ClientError> {
        let conn = self.client.connection_to(addr).await?;
        let result = self
            .client
            .try_request(&conn, api, client_max, None, body)
            .await;
        if result.is_ok() {
            self.reached.store(true, Ordering::Relaxed);
        }
        result
    }

    /// One request along `route`, retried as [`Admin::retrying`] does; `check` turns the
    /// response into the result (and an error code into an error, which may be retried).
    pub(crate) async fn call<T>(
        &self,
        route: Route,
        api: ApiKey,
        client_max: i16,
        body: impl Fn(i16) -> Result<RequestKind, ClientError>,
        check: impl Fn(i16, ResponseKind, &str) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        self.retrying(route, |addr| {
            let (body, check) = (&body, &check);
            async move {
                let (version, response) = self.request(&addr, api, client_max, body).await?;
                check(version, response, &addr)
            }
        })
        .await
    }

    /// One request along `route`, retried on lost connections and on a retriable error code
    /// at the top of the response (NOT_CONTROLLER and the like); the response is returned
    /// as it came otherwise.
    pub(crate) async fn send(
        &self,
        route: Route,
        api: ApiKey,
        client_max: i16,
        body: impl Fn(i16) -> Result<RequestKind, ClientError>,
    ) -> Result<(i16, ResponseKind), ClientError> {
        self.call(
            route,
            api,
            client_max,
            body,
            |version, response, addr| match top_level_code(&response) {
                Some(code) if is_admin_retriable(code) => Err(ClientError::resource(
                    code,
                    &format!("the {api:?} request to {addr}"),
                    None,
                )),
                _ => Ok((version, response)),
            },
        )
        .await
    }

    // -----------------------------------------------------------------------------------------
    // coordinators

    /// The coordinator of `key` (a group with key type 0, a transactional id with 1) as
    /// `host:port`, cached until it moves.
    async fn coordinator(&self, key_type: i8, key: &str) -> Result<String, ClientError> {
        if let Some(addr) = self
            .coordinators
            .lock()
            .await
            .get(&(key_type, key.to_string()))
        {
            return Ok(addr.clone());
        }
        let subject = if key_type == KEY_TYPE_GROUP {
            format!("the coordinator of group {key:?}")
        } else {
            format!("the coordinator of transactional id {key:?}")
        };
        let addr = self.client.any_connection().await?.0;
        let (version, response) = self
            .request(&addr, ApiKey::FindCoordinator, 6, |v| {
                let mut req = FindCoordinatorRequest::default();
                req.key_type = key_type;
                if v >= 4 {
                    req.coordinator_keys = vec![str_bytes(key)];
                } else {
                    req.key = str_bytes(key);
                }
                Ok(RequestKind::FindCoordinator(req))
            })
            .await?;
        let ResponseKind::FindCoordinator(r) = response else {
            return Err(groups::unexpected("FindCoordinator"));
        };
        let addr = if version >= 4 {
            let c = r
                .coordinators
                .iter()
                .find(|c| c.key.as_str() == key)
                .ok_or_else(|| {
                    ClientError::UnexpectedResponse(format!(
                        "FindCoordinator has no answer for {subject}"
                    ))
                })?;
            check_resource(c.error_code, &subject, c.error_message.as_deref())?;
            groups::host_port(c.host.as_str(), c.port)
        } else {
            check_resource(r.error_code, &subject, r.error_message.as_deref())?;
            groups::host_port(r.host.as_str(), r.port)
        };
        self.coordinators
            .lock()
            .await
            .insert((key_type, key.to_string()), addr.clone());
        Ok(addr)
    }

    /// The coordinator of a consumer group, as `host:port` (FindCoordinator).
    pub async fn find_coordinator(&self, group: &str) -> Result<String, ClientError> {
        self.retrying(Route::Any, |_| self.coordinator(KEY_TYPE_GROUP, group))
            .await
    }

    /// The coordinator of a transactional id, as `host:port` (FindCoordinator).
    pub async fn find_transaction_coordinator(&self, id: &str) -> Result<String, ClientError> {
        self.retrying(Route::Any, |_| self.coordinator(KEY_TYPE_TRANSACTION, id))
            .await
    }

    /// Forgets the coordinator of a group (after NOT_COORDINATOR), so that the next call finds
    /// it again.
    pub(crate) async fn forget_coordinator(&self, key_type: i8, key: &str) {
        self.coordinators
            .lock()
            .await
            .remove(&(key_type, key.to_string()));
    }

    /// The addresses of every broker (for the calls asked of each: ListGroups,
    /// ListTransactions); the bootstrap servers when Metadata lists none.
    pub(crate) async fn all_brokers(&self) -> Result<Vec<String>, ClientError> {
        let md = self.metadata(Some(Vec::new())).await?;
        let addrs: Vec<String> = md.brokers.iter().map(|b| b.address()).collect();
        Ok(if addrs.is_empty() {
            self.bootstrap_servers()
        } else {
            addrs
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Properties {
        pairs.iter().copied().collect()
    }

    #[test]
    fn properties_are_read_checked_and_defaulted() {
        let c = AdminConfig::from_properties(props(&[("bootstrap.servers", "h:1")])).unwrap();
        assert_eq!(c.default_api_timeout, Duration::from_secs(60));
        assert_eq!(c.retries, i32::MAX as u32);
        assert_eq!(c.common.client_id, "strom-admin");
        let c = AdminConfig::from_properties(props(&[
            ("bootstrap.servers", "h:1"),
            ("request.timeout.ms", "90000"),
            ("retries", "3"),
        ]))
        .unwrap();
        // An unset default.api.timeout.ms grows to the request timeout.
        assert_eq!(c.default_api_timeout, Duration::from_secs(90));
        assert_eq!(c.retries, 3);
        for (k, v, needle) in [
            ("default.api.timeout.ms", "abc", "whole number"),
            ("retries", "-1", "from 0"),
            ("request.timout.ms", "5", "did you mean request.timeout.ms"),
            ("acks", "all", "unknown property"),
        ] {
            let e = AdminConfig::from_properties(props(&[("bootstrap.servers", "h:1"), (k, v)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(k) && e.contains(needle), "{k}: {e}");
        }
        let e = AdminConfig::from_properties(props(&[
            ("bootstrap.servers", "h:1"),
            ("default.api.timeout.ms", "1000"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("default.api.timeout.ms") && e.contains("request.timeout.ms"),
            "{e}"
        );
    }

    #[test]
    fn coordinator_controller_and_leader_errors_are_retried_others_are_not() {
        for code in [6, 5, 14, 15, 16, 41, 74] {
            assert!(is_admin_retriable(code), "{code}");
        }
        for code in [3, 36, 40, 69, 68, 7] {
            assert!(!is_admin_retriable(code), "{code}");
        }
    }
}

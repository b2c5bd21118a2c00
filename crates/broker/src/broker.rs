//! The broker process: state shared by every connection, start-up and shutdown.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use strom_metadata::quorum::QuorumMetadataLog;
use strom_metadata::{MetadataError, MetadataImage, MetadataLog, MetadataRecord};
use strom_storage::StorageError;

use crate::config::BrokerConfig;
use crate::replica_manager::ReplicaManager;
use crate::request::RequestContext;
use crate::security::ListenerSpec;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("metadata: {0}")]
    Metadata(#[from] MetadataError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("data directory {0} is in use by another strom process")]
    Locked(String),
}

/// State shared by all connections of one broker.
pub struct Broker {
    pub config: BrokerConfig,
    pub node_id: i32,
    pub cluster_id: String,
    pub metadata: Arc<dyn MetadataLog>,
    /// This node's member of the metadata quorum (a cluster); `None` on a single node with a
    /// local metadata log.
    pub quorum: Option<Arc<QuorumMetadataLog>>,
    /// Fault injection (`fault.injection.enable`): while set, this broker is cut off from the
    /// other brokers (quorum traffic, replica fetches both ways).
    pub isolated: Arc<std::sync::atomic::AtomicBool>,
    /// Set when a shutdown begins: the broker no longer registers again.
    pub(crate) shutting_down: std::sync::atomic::AtomicBool,
    pub replicas: Arc<ReplicaManager>,
    /// Consumer groups and committed offsets.
    pub groups: Arc<crate::group::GroupCoordinator>,
    /// Producer ids, transactional ids and transactions.
    pub txns: Arc<crate::txn::TransactionCoordinator>,
    /// Serializes changes to the metadata (topic creation, deletion, config changes).
    pub controller: tokio::sync::Mutex<()>,
    /// The host and port of the first listener as configured (the port may still be 0 before
    /// `serve`); [`Broker::endpoint`] gives the advertised address of each listener.
    pub advertised: (String, u16),
    /// The configured listeners, in `listeners` order.
    pub listeners: Vec<Arc<ListenerSpec>>,
    /// TLS settings of SSL and SASL_SSL listeners (built at start so a bad key fails early).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `ssl.principal.mapping.rules`.
    pub principal_mapper: crate::security::principal::PrincipalMapper,
    /// Listener name -> the host and port clients are told to use for it (set by `serve`).
    pub(crate) endpoints: RwLock<BTreeMap<String, (String, u16)>>,
    /// SASL mechanisms and PLAIN users.
    pub sasl: crate::security::sasl::SaslConfig,
    /// ACL checks (all allowed unless `authorizer.class.name` is set).
    pub authorizer: crate::security::acl::Authorizer,
    /// `strom.audit.admin.operations.enable`: every admin operation is logged on
    /// `strom::audit` (see [`crate::security::audit`]).
    pub audit_admin: bool,
    /// `max.connections` and `max.connections.per.ip`.
    pub connection_limits: Arc<crate::security::limits::ConnectionLimits>,
    /// Measured client byte rates against their quotas.
    pub quotas: crate::quota::QuotaManager,
    /// Counters and histograms of this broker, and the scrape-time gauges.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// `fetch.memory.budget.bytes`: record copies of fetch responses on TLS connections.
    pub fetch_memory: Arc<crate::send::FetchMemory>,
    pub(crate) _lock: std::fs::File,
}

impl Broker {
    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }

    /// Appends metadata records and brings the hosted partitions in line with the new image.
    pub fn commit_metadata(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Arc<MetadataImage>, BrokerError> {
        let image = self.metadata.append(records)?;
        self.replicas
            .reconcile(&image, &self.config, crate::now_ms())?;
        self.on_metadata(&image);
        Ok(image)
    }

    /// [`Broker::commit_metadata`] without blocking a runtime thread: in a cluster the records
    /// may travel to the quorum leader.
    pub async fn commit_metadata_async(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Arc<MetadataImage>, BrokerError> {
        let image = match &self.quorum {
            Some(q) => q.append_async(records).await?,
            None => self.metadata.append(records)?,
        };
        self.replicas
            .reconcile(&image, &self.config, crate::now_ms())?;
        self.on_metadata(&image);
        Ok(image)
    }

    /// Called with every new metadata image after the partitions took it.
    /// The group coordinator follows the leadership of `__consumer_offsets` partitions.
    pub fn on_metadata(&self, _image: &MetadataImage) {
        self.groups.follow_leadership(self);
    }

    /// The active controller: the metadata quorum's leader (this broker on a single node;
    /// -1 during an election).
    pub fn controller_id(&self) -> i32 {
        match &self.quorum {
            Some(q) => q.leader_id().map_or(-1, |l| l as i32),
            None => self.node_id,
        }
    }

    /// Whether fault injection has cut this broker off from the others.
    pub fn is_isolated(&self) -> bool {
        self.isolated.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether a shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The record that registers this broker at its advertised address (first listener).
    pub(crate) fn registration(&self) -> MetadataRecord {
        let first = self
            .listeners
            .first()
            .map(|l| l.name.clone())
            .unwrap_or_default();
        let (host, port) = self.endpoint(&first);
        let rack = self.config.get("broker.rack").trim();
        MetadataRecord::RegisterBroker {
            broker_id: self.node_id,
            host,
            port,
            rack: (!rack.is_empty()).then(|| rack.to_string()),
        }
    }

    /// Registers this broker (again), which also lifts a fence.
    pub async fn register(&self) -> Result<Arc<MetadataImage>, BrokerError> {
        self.commit_metadata_async(vec![self.registration()]).await
    }

    /// Whether the connection's principal may do `operation` on a resource; a denial is
    /// logged (target `strom::audit`).
    pub fn authorize(
        &self,
        ctx: &RequestContext,
        operation: crate::security::acl::Operation,
        resource_type: crate::security::acl::ResourceType,
        name: &str,
    ) -> bool {
        if !self.authorizer.enabled {
            return true;
        }
        let principal = ctx.session.principal();
        let host = ctx.peer.ip().to_string();
        let image = self.image();
        let ok = self.authorizer.authorize(
            &image.acls,
            &principal,
            &host,
            operation,
            resource_type,
            name,
        );
        if !ok {
            tracing::info!(target: "strom::audit", %principal, %host, ?operation, ?resource_type, resource = %name, api = ?ctx.header.request_api_key, "authorization denied");
        }
        ok
    }

    /// [`Broker::authorize`] without the denial log line, for listings that leave out what
    /// the principal may not see.
    pub fn authorize_quietly(
        &self,
        ctx: &RequestContext,
        operation: crate::security::acl::Operation,
        resource_type: crate::security::acl::ResourceType,
        name: &str,
    ) -> bool {
        if !self.authorizer.enabled {
            return true;
        }
        let image = self.image();
        self.authorizer.authorize(
            &image.acls,
            &ctx.session.principal(),
            &ctx.peer.ip().to_string(),
            operation,
            resource_type,
            name,
        )
    }

    /// The authorized-operations bit set of a resource for the request's principal: each
    /// operation that applies to the resource type and that the principal may perform (all of
    /// them without an authorizer). Nothing is logged: the principal did not ask to act.
    pub fn authorized_operations(
        &self,
        ctx: &RequestContext,
        resource_type: crate::security::acl::ResourceType,
        name: &str,
    ) -> i32 {
        crate::security::acl::operations_bits(
            resource_type
                .supported_operations()
                .iter()
                .copied()
                .filter(|op| self.authorize_quietly(ctx, *op, resource_type, name)),
        )
    }

    /// [`Broker::authorize`] on the cluster resource.
    pub fn authorize_cluster(
        &self,
        ctx: &RequestContext,
        operation: crate::security::acl::Operation,
    ) -> bool {
        self.authorize(
            ctx,
            operation,
            crate::security::acl::ResourceType::Cluster,
            crate::security::acl::CLUSTER_NAME,
        )
    }

    /// [`Broker::authorize`] on a topic.
    pub fn authorize_topic(
        &self,
        ctx: &RequestContext,
        operation: crate::security::acl::Operation,
        topic: &str,
    ) -> bool {
        self.authorize(
            ctx,
            operation,
            crate::security::acl::ResourceType::Topic,
            topic,
        )
    }

    /// Whether the principal may create the topic: CREATE on the cluster or on the topic.
    pub fn authorize_create(&self, ctx: &RequestContext, topic: &str) -> bool {
        use crate::security::acl::{Operation, ResourceType};
        if !self.authorizer.enabled {
            return true;
        }
        let image = self.image();
        let principal = ctx.session.principal();
        let host = ctx.peer.ip().to_string();
        let quiet = |rt, name: &str| {
            self.authorizer
                .authorize(&image.acls, &principal, &host, Operation::Create, rt, name)
        };
        quiet(ResourceType::Cluster, crate::security::acl::CLUSTER_NAME)
            || self.authorize(ctx, Operation::Create, ResourceType::Topic, topic)
    }

    /// The host and port clients should use for the listener named `listener`.
    pub fn endpoint(&self, listener: &str) -> (String, u16) {
        let endpoints = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        endpoints
            .get(listener)
            .cloned()
            .unwrap_or_else(|| self.advertised.clone())
    }

    /// The `controller_mutation_rate` quota of a request's client; `strict` for the request
    /// versions that can answer THROTTLING_QUOTA_EXCEEDED.
    pub fn mutation_quota(
        &self,
        ctx: &RequestContext,
        strict: bool,
    ) -> crate::quota::MutationQuota<'_> {
        self.quotas.mutations(
            &self.image(),
            &ctx.session.principal(),
            ctx.client_id(),
            strict,
        )
    }

    /// Flushes every log to disk (clean shutdown).
    pub fn flush_all(&self) {
        for p in self.replicas.all() {
            if let Err(e) = p.with_log(|l| l.flush().and_then(|_| l.snapshot_producer_state())) {
                tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "flush failed");
            }
        }
    }
}

/// Creates the data directory and takes its lock file, so that two processes never share it.
pub(crate) fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, BrokerError> {
    std::fs::create_dir_all(data_dir)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join(".lock"))?;
    if lock.try_lock().is_err() {
        return Err(BrokerError::Locked(data_dir.display().to_string()));
    }
    Ok(lock)
}

/// URL-safe base64 without padding, as Kafka writes cluster ids (22 characters).
pub(crate) fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

//! The broker process: state shared by every connection, start-up and shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use strom_metadata::{LocalMetadataLog, MetadataError, MetadataImage, MetadataLog, MetadataRecord};
use strom_storage::StorageError;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::replica_manager::ReplicaManager;
use crate::security::{ListenerSpec, Session, listener};

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
    pub metadata: Box<dyn MetadataLog>,
    pub replicas: ReplicaManager,
    /// Consumer groups and committed offsets.
    pub groups: crate::group::GroupCoordinator,
    /// Producer ids, transactional ids and transactions.
    pub txns: crate::txn::TransactionCoordinator,
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
    endpoints: RwLock<BTreeMap<String, (String, u16)>>,
    /// SASL mechanisms and PLAIN users.
    pub sasl: crate::security::sasl::SaslConfig,
    /// ACL checks (all allowed unless `authorizer.class.name` is set).
    pub authorizer: crate::security::acl::Authorizer,
    /// `max.connections` and `max.connections.per.ip`.
    pub connection_limits: Arc<crate::security::limits::ConnectionLimits>,
    /// Measured client byte rates against their quotas.
    pub quotas: crate::quota::QuotaManager,
    /// Counters and histograms of this broker, and the scrape-time gauges.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// `fetch.memory.budget.bytes`: record copies of fetch responses on TLS connections.
    pub fetch_memory: Arc<crate::send::FetchMemory>,
    _lock: std::fs::File,
}

/// A bound listener socket, ready for [`Broker::serve`].
pub struct BoundListener {
    pub spec: Arc<ListenerSpec>,
    pub socket: TcpListener,
    pub addr: SocketAddr,
}

/// The name of the first listener in `listeners` (`PLAINTEXT` when none is given).
pub fn listener_name(listeners: &str) -> &str {
    let first = listeners.split(',').next().unwrap_or("").trim();
    match first.split_once("://") {
        Some((name, _)) if !name.is_empty() => name,
        _ => "PLAINTEXT",
    }
}

/// A `PLAINTEXT://host:port` listener address.
pub fn parse_listener(s: &str) -> Result<(String, u16), BrokerError> {
    let first = s.split(',').next().unwrap_or("").trim();
    let addr = first.split_once("://").map(|(_, a)| a).unwrap_or(first);
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| BrokerError::Config(format!("listener {s:?} is not NAME://host:port")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| BrokerError::Config(format!("listener {s:?} has no valid port")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((
        if host.is_empty() {
            "0.0.0.0".into()
        } else {
            host.to_string()
        },
        port,
    ))
}

impl Broker {
    /// Opens the data directory: takes its lock, replays the metadata log and recovers every
    /// partition log.
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>, BrokerError> {
        Self::open_with(config, Arc::new(crate::metrics::Metrics::new()))
    }

    /// [`Broker::open`] recording into `metrics`, which may already be served (the admin
    /// listener starts before log recovery so that it can report not-ready meanwhile).
    pub fn open_with(
        config: BrokerConfig,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Arc<Broker>, BrokerError> {
        let data_dir = config.log_dir();
        std::fs::create_dir_all(&data_dir)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join(".lock"))?;
        if lock.try_lock().is_err() {
            return Err(BrokerError::Locked(data_dir.display().to_string()));
        }
        let cluster_id = load_cluster_id(&data_dir, config.node_id())?;
        let metadata = LocalMetadataLog::open(&data_dir.join("__cluster_metadata-0"))?;
        let node_id = config.node_id();
        let listeners: Vec<Arc<ListenerSpec>> = listener::parse_listeners(
            config.get("listeners"),
            config.get("listener.security.protocol.map"),
        )
        .map_err(BrokerError::Config)?
        .into_iter()
        .map(Arc::new)
        .collect();
        let advertised_map = listener::parse_advertised(config.get("advertised.listeners"))
            .map_err(BrokerError::Config)?;
        let first = &listeners[0];
        let advertised = advertised_map
            .get(&first.name)
            .cloned()
            .unwrap_or_else(|| (connectable_host(&first.host), first.port));
        let sasl =
            crate::security::sasl::SaslConfig::from_broker(&config).map_err(BrokerError::Config)?;
        let authorizer = crate::security::acl::Authorizer::from_config(&config);
        let principal_mapper = crate::security::principal::PrincipalMapper::parse(
            config.get("ssl.principal.mapping.rules"),
        )
        .map_err(BrokerError::Config)?;
        let connection_limits = Arc::new(
            crate::security::limits::ConnectionLimits::from_config(&config)
                .map_err(BrokerError::Config)?,
        );
        let tls = if listeners.iter().any(|l| l.protocol.uses_tls()) {
            Some(crate::security::tls::server_config(&config).map_err(BrokerError::Config)?)
        } else {
            None
        };
        let replicas = ReplicaManager::new(node_id, &data_dir, metrics.clone());
        metrics.declare_listener(listener_name(config.get("listeners")));
        let started = std::time::Instant::now();
        replicas.reconcile(&metadata.image(), &config, crate::now_ms())?;
        replicas.remove_strays();
        tracing::info!(
            partitions = replicas.all().len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "logs recovered"
        );
        let groups =
            crate::group::GroupCoordinator::new(crate::group::GroupConfig::from_broker(&config));
        let txns =
            crate::txn::TransactionCoordinator::new(crate::txn::TxnConfig::from_broker(&config));
        let fetch_memory = Arc::new(crate::send::FetchMemory::new(
            config.get_i64("fetch.memory.budget.bytes").max(1) as usize,
        ));
        let broker = Arc::new(Broker {
            fetch_memory,
            config,
            node_id,
            cluster_id,
            metadata: Box::new(metadata),
            replicas,
            groups,
            txns,
            controller: tokio::sync::Mutex::new(()),
            advertised,
            metrics,
            listeners,
            tls,
            principal_mapper,
            endpoints: RwLock::new(BTreeMap::new()),
            sasl,
            authorizer,
            connection_limits,
            quotas: Default::default(),
            _lock: lock,
        });
        // Transactions first: markers of decided transactions reach __consumer_offsets before the
        // groups read it.
        broker.txns.load(&broker);
        broker.groups.load(&broker);
        broker.metrics.attach(&broker);
        Ok(broker)
    }

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
        Ok(image)
    }

    /// Binds every listener of `listeners`. A port may be 0 (tests): the bound address is
    /// returned, and the advertised port follows it.
    pub async fn bind(self: &Arc<Self>) -> Result<Vec<BoundListener>, BrokerError> {
        let mut out = Vec::new();
        for spec in &self.listeners {
            let socket = TcpListener::bind((spec.host.as_str(), spec.port))
                .await
                .map_err(|e| {
                    BrokerError::Config(format!(
                        "cannot listen on {} ({}:{}): {e}",
                        spec.name, spec.host, spec.port
                    ))
                })?;
            let addr = socket.local_addr()?;
            out.push(BoundListener {
                spec: spec.clone(),
                socket,
                addr,
            });
        }
        Ok(out)
    }

    /// Whether the connection's principal may do `operation` on a resource; a denial is
    /// logged (target `strom::audit`).
    pub fn authorize(
        &self,
        ctx: &crate::registry::RequestContext,
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
        ctx: &crate::registry::RequestContext,
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

    /// [`Broker::authorize`] on the cluster resource.
    pub fn authorize_cluster(
        &self,
        ctx: &crate::registry::RequestContext,
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
        ctx: &crate::registry::RequestContext,
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
    pub fn authorize_create(&self, ctx: &crate::registry::RequestContext, topic: &str) -> bool {
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

    /// Registers this broker at the address clients should use, then serves every listener
    /// until `shutdown` turns true.
    pub async fn serve(
        self: Arc<Self>,
        listeners: Vec<BoundListener>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), BrokerError> {
        let advertised_map = listener::parse_advertised(self.config.get("advertised.listeners"))
            .map_err(BrokerError::Config)?;
        {
            let mut endpoints = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
            for l in &listeners {
                let ep = advertised_map
                    .get(&l.spec.name)
                    .cloned()
                    .unwrap_or_else(|| (connectable_host(&l.spec.host), l.addr.port()));
                endpoints.insert(l.spec.name.clone(), ep);
            }
        }
        let Some(first) = listeners.first() else {
            return Err(BrokerError::Config("no listener to serve".into()));
        };
        let (host, port) = self.endpoint(&first.spec.name);
        let image = self.image();
        let registered = image.brokers.get(&self.node_id);
        if registered.is_none_or(|b| b.host != host || b.port != port) {
            self.commit_metadata(vec![MetadataRecord::RegisterBroker {
                broker_id: self.node_id,
                host: host.clone(),
                port,
                rack: None,
            }])?;
        }
        for l in &listeners {
            let (host, port) = self.endpoint(&l.spec.name);
            tracing::info!(listener = %l.spec.name, protocol = ?l.spec.protocol, addr = %l.addr, advertised = %format!("{host}:{port}"), "listening");
        }
        tracing::info!(node_id = self.node_id, cluster_id = %self.cluster_id, "strom broker listening");
        let housekeeping = tokio::spawn(housekeeping(self.clone(), shutdown.clone()));
        crate::log_cleaner::start(self.clone(), shutdown.clone());
        let group_ticker = tokio::spawn(crate::group::ticker(self.clone(), shutdown.clone()));
        let txn_ticker = tokio::spawn(crate::txn::ticker(self.clone(), shutdown.clone()));
        let mut accepting = Vec::new();
        for l in listeners {
            accepting.push(tokio::spawn(accept_loop(self.clone(), l, shutdown.clone())));
        }
        for a in accepting {
            let _ = a.await;
        }
        housekeeping.abort();
        group_ticker.abort();
        txn_ticker.abort();
        self.flush_all();
        tracing::info!("strom broker stopped");
        Ok(())
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

/// A host clients can connect to: the wildcard addresses become loopback.
fn connectable_host(host: &str) -> String {
    if host == "0.0.0.0" || host == "::" {
        "127.0.0.1".to_string()
    } else {
        host.to_string()
    }
}

/// Accepts connections of one listener until shutdown; TLS listeners finish the handshake
/// (bounded in time) before the connection serves requests.
async fn accept_loop(broker: Arc<Broker>, l: BoundListener, mut shutdown: watch::Receiver<bool>) {
    let acceptor = match (&broker.tls, l.spec.protocol.uses_tls()) {
        (Some(cfg), true) => Some(tokio_rustls::TlsAcceptor::from(cfg.clone())),
        _ => None,
    };
    loop {
        // A full broker stops accepting: new clients wait in the listen queue.
        let permit = tokio::select! {
            p = broker.connection_limits.reserve() => p,
            _ = shutdown.changed() => return,
        };
        tokio::select! {
            accepted = l.socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(slot) = broker.connection_limits.admit(peer.ip(), permit) else {
                        tracing::info!(%peer, listener = %l.spec.name, "closing connection: max.connections.per.ip reached");
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let broker = broker.clone();
                    let sd = shutdown.clone();
                    let spec = l.spec.clone();
                    match &acceptor {
                        None => {
                            tokio::spawn(async move {
                                let _slot = slot;
                                let session = Arc::new(Session::new(spec, peer, None));
                                crate::connection::serve(broker, stream, session, sd).await
                            });
                        }
                        Some(acceptor) => {
                            let acceptor = acceptor.clone();
                            tokio::spawn(async move {
                                let _slot = slot;
                                let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
                                let tls = match handshake {
                                    Ok(Ok(tls)) => tls,
                                    Ok(Err(e)) => {
                                        tracing::info!(%peer, listener = %spec.name, error = %e, "TLS handshake failed");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::info!(%peer, listener = %spec.name, "TLS handshake timed out");
                                        return;
                                    }
                                };
                                let principal = tls
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .map(|c| crate::security::tls::principal(Some(c), &broker.principal_mapper));
                                let session = Arc::new(Session::new(spec, peer, principal));
                                crate::connection::serve(broker, tls, session, sd).await
                            });
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Retention and time-based flushing, on their configured intervals.
async fn housekeeping(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let retention_every = Duration::from_millis(
        broker
            .config
            .get_i64("log.retention.check.interval.ms")
            .max(1) as u64,
    );
    let mut retention = tokio::time::interval(retention_every);
    let mut flush = tokio::time::interval(Duration::from_millis(1000));
    let producer_expiration_ms = broker.config.get_i64("producer.id.expiration.ms");
    let mut producers = tokio::time::interval(Duration::from_millis(
        broker
            .config
            .get_i64("producer.id.expiration.check.interval.ms")
            .max(1) as u64,
    ));
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = retention.tick() => {
                let now = crate::now_ms();
                for p in broker.replicas.all() {
                    match p.with_log(|l| l.enforce_retention(now)) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(topic = %p.topic, partition = p.index, segments = n, "retention deleted segments"),
                        Err(e) => tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "retention failed"),
                    }
                }
            }
            _ = producers.tick() => {
                let now = crate::now_ms();
                for p in broker.replicas.all() {
                    let n = p.with_log(|l| l.expire_producers(now, producer_expiration_ms));
                    if n > 0 {
                        tracing::debug!(topic = %p.topic, partition = p.index, producers = n, "forgot idle producers");
                    }
                }
            }
            _ = flush.tick() => {
                let now = crate::now_ms();
                for p in broker.replicas.all() {
                    if let Err(e) = p.with_log(|l| l.maybe_flush(now)) {
                        tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "flush failed");
                    }
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Reads the cluster id from `meta.properties`, creating the file on first start.
fn load_cluster_id(dir: &std::path::Path, node_id: i32) -> Result<String, BrokerError> {
    let path = dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path) {
        for line in text.lines() {
            if let Some(id) = line.strip_prefix("cluster.id=") {
                return Ok(id.trim().to_string());
            }
        }
    }
    let id = base64_url(strom_metadata::Uuid::new_v4().as_bytes());
    let tmp = dir.join("meta.properties.tmp");
    std::fs::write(
        &tmp,
        format!("version=1\ncluster.id={id}\nnode.id={node_id}\n"),
    )?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

/// URL-safe base64 without padding, as Kafka writes cluster ids (22 characters).
fn base64_url(bytes: &[u8]) -> String {
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

//! Start-up, wiring and shutdown of a broker: open the data directory and build the services,
//! bind the listeners, join the cluster, start the background tasks, accept connections, and
//! stop in order. [`Broker`] itself (broker.rs) is the state those services share.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use strom_metadata::{LocalMetadataLog, MetadataError, MetadataImage, MetadataLog};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::{Broker, BrokerError, base64_url, lock_data_dir};
use crate::config::BrokerConfig;
use crate::replica_manager::ReplicaManager;
use crate::security::{ListenerSpec, Session, listener};

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
        let lock = lock_data_dir(&data_dir)?;
        let voters = config.quorum_voters().map_err(BrokerError::Config)?;
        if !crate::cluster::roles(&config).0 {
            return Err(BrokerError::Config(
                "process.roles has no broker role: run the node as a controller".into(),
            ));
        }
        let metadata_dir = data_dir.join("__cluster_metadata-0");
        let isolated: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let (metadata, quorum): (Arc<dyn MetadataLog>, _) = if voters.is_empty() {
            (Arc::new(LocalMetadataLog::open(&metadata_dir)?), None)
        } else {
            let q =
                crate::cluster::start_quorum(&config, &voters, &metadata_dir, isolated.clone())?;
            (q.clone(), Some(q))
        };
        let cluster_id = if voters.is_empty() {
            load_cluster_id(&data_dir, config.node_id())?
        } else {
            crate::cluster::cluster_id_for(&voters)
        };
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
        let audit_admin = config.settings().strom_audit_admin_operations_enable;
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
        let replicas = Arc::new(ReplicaManager::new(node_id, &data_dir, metrics.clone()));
        metrics.declare_listener(listener_name(config.get("listeners")));
        let started = std::time::Instant::now();
        replicas.reconcile(&metadata.image(), &config, crate::now_ms())?;
        replicas.remove_strays();
        tracing::info!(
            partitions = replicas.all().len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "logs recovered"
        );
        let groups = Arc::new(crate::group::GroupCoordinator::new(
            crate::coordinators::group_config(&config),
        ));
        let txns = Arc::new(crate::txn::TransactionCoordinator::new(
            crate::coordinators::txn_config(&config),
            groups.clone(),
        ));
        let fetch_memory = Arc::new(crate::send::FetchMemory::new(
            config.settings().fetch_memory_budget_bytes.max(1) as usize,
        ));
        let broker = Arc::new(Broker {
            fetch_memory,
            config,
            node_id,
            cluster_id,
            metadata,
            quorum,
            isolated,
            shutting_down: std::sync::atomic::AtomicBool::new(false),
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
            audit_admin,
            connection_limits,
            quotas: Default::default(),
            _lock: lock,
        });
        // Transactions first: markers of decided transactions reach __consumer_offsets before the
        // groups read it.
        broker.txns.load(&*broker);
        broker.groups.load(&*broker);
        let source: Arc<dyn crate::metrics::ScrapeSource> = broker.clone();
        broker.metrics.attach(Arc::downgrade(&source));
        Ok(broker)
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

    /// Registers this process as a new incarnation of the broker: what an earlier incarnation
    /// led moves to other in-sync replicas and it leaves every ISR (it may have lost what it
    /// had not flushed), then it registers. It rejoins the ISRs as a follower once it has
    /// caught up; the controller gives it back partitions nobody else can lead.
    async fn register_incarnation(&self) -> Result<Arc<MetadataImage>, BrokerError> {
        let mut attempts = 0;
        loop {
            let image = self.image();
            let mut records = crate::cluster::fence_records(&image, self.node_id, |_| false);
            if !image.brokers.contains_key(&self.node_id) {
                records.clear();
            }
            records.push(self.registration());
            match self.commit_metadata_async(records).await {
                Err(BrokerError::Metadata(MetadataError::Conflict(m))) if attempts < 50 => {
                    // This member's image is behind the leader's: wait for it and retry.
                    attempts += 1;
                    tracing::debug!(reason = %m, "registration raced a metadata change; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
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
        let mut cluster_tasks = Vec::new();
        if let Some(q) = &self.quorum {
            // A heartbeat first, so that the controller does not fence the broker it is
            // about to register; the registration waits until this member has the metadata
            // up to it, so the partitions take their current roles before clients come.
            // A stop asked for meanwhile ends the wait: nothing is served yet.
            let join = async {
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while let Err(e) = q.heartbeat(self.node_id).await {
                    if std::time::Instant::now() >= deadline {
                        return Err(BrokerError::Metadata(e));
                    }
                    tracing::info!(error = %e, "waiting for the metadata quorum");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                self.register_incarnation().await
            };
            let mut stop = shutdown.clone();
            let image = tokio::select! {
                joined = join => joined?,
                _ = stop.wait_for(|stopping| *stopping) => {
                    tracing::info!("stopped before joining the cluster");
                    self.flush_all();
                    return Ok(());
                }
            };
            tracing::info!(node_id = self.node_id, brokers = image.brokers.len(), leader = ?q.leader_id(), "registered with the controller");
            cluster_tasks = crate::cluster::start(&self, shutdown.clone());
        } else {
            let image = self.image();
            let registered = image.brokers.get(&self.node_id);
            let rack = self.config.get("broker.rack").trim();
            let rack = (!rack.is_empty()).then(|| rack.to_string());
            if registered.is_none_or(|b| b.host != host || b.port != port || b.rack != rack) {
                self.commit_metadata(vec![self.registration()])?;
            }
        }
        for l in &listeners {
            let (host, port) = self.endpoint(&l.spec.name);
            tracing::info!(listener = %l.spec.name, protocol = ?l.spec.protocol, addr = %l.addr, advertised = %format!("{host}:{port}"), "listening");
        }
        tracing::info!(node_id = self.node_id, cluster_id = %self.cluster_id, "strom broker listening");
        let housekeeping = tokio::spawn(housekeeping(self.clone(), shutdown.clone()));
        crate::log_cleaner::start(
            self.replicas.clone(),
            self.metrics.cleaner.clone(),
            &self.config,
            shutdown.clone(),
        );
        let group_ticker = tokio::spawn(crate::group::ticker(
            self.groups.clone(),
            self.clone(),
            shutdown.clone(),
        ));
        let txn_ticker = tokio::spawn(crate::txn::ticker(
            self.txns.clone(),
            self.clone(),
            shutdown.clone(),
        ));
        let mut accepting = Vec::new();
        for l in listeners {
            accepting.push(tokio::spawn(accept_loop(self.clone(), l, shutdown.clone())));
        }
        for a in accepting {
            let _ = a.await;
        }
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::Release);
        crate::cluster::controlled_shutdown(&self).await;
        for t in cluster_tasks {
            t.abort();
        }
        housekeeping.abort();
        group_ticker.abort();
        txn_ticker.abort();
        self.flush_all();
        tracing::info!("strom broker stopped");
        Ok(())
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
                                        // A TLS error (refused certificate, not TLS at all), not a
                                        // peer that closed before saying anything (a port probe).
                                        if e.kind() == std::io::ErrorKind::InvalidData {
                                            broker.metrics.authentication_failed(&spec.name);
                                        }
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
            .settings()
            .log_retention_check_interval_ms
            .max(1) as u64,
    );
    let mut retention = tokio::time::interval(retention_every);
    let mut flush = tokio::time::interval(Duration::from_millis(1000));
    let producer_expiration_ms = i64::from(broker.config.settings().producer_id_expiration_ms);
    let mut producers = tokio::time::interval(Duration::from_millis(
        broker
            .config
            .settings()
            .producer_id_expiration_check_interval_ms
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

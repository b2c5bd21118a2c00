//! The broker process: state shared by every connection, start-up and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strom_metadata::{LocalMetadataLog, MetadataError, MetadataImage, MetadataLog, MetadataRecord};
use strom_storage::StorageError;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::replica_manager::ReplicaManager;

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
    /// The host and port given to clients in Metadata.
    pub advertised: (String, u16),
    /// Counters and histograms of this broker, and the scrape-time gauges.
    pub metrics: Arc<crate::metrics::Metrics>,
    _lock: std::fs::File,
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
        let (listen_host, listen_port) = parse_listener(config.get("listeners"))?;
        let advertised_conf = config.get("advertised.listeners");
        let advertised = if advertised_conf.trim().is_empty() {
            let host = if listen_host == "0.0.0.0" || listen_host == "::" {
                "127.0.0.1".to_string()
            } else {
                listen_host
            };
            (host, listen_port)
        } else {
            parse_listener(advertised_conf)?
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
        let broker = Arc::new(Broker {
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

    /// Binds the listener given by `listeners`. The port may be 0 (tests): the bound address
    /// is returned, and the advertised port follows it.
    pub async fn bind(self: &Arc<Self>) -> Result<(TcpListener, SocketAddr), BrokerError> {
        let (host, port) = parse_listener(self.config.get("listeners"))?;
        let listener = TcpListener::bind((host.as_str(), port)).await?;
        let addr = listener.local_addr()?;
        Ok((listener, addr))
    }

    /// Registers this broker at the address clients should use, then serves until `shutdown`
    /// turns true.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), BrokerError> {
        let addr = listener.local_addr()?;
        let (host, port) = if self.config.get("advertised.listeners").trim().is_empty() {
            (self.advertised.0.clone(), addr.port())
        } else {
            self.advertised.clone()
        };
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
        tracing::info!(%addr, advertised = %format!("{host}:{port}"), node_id = self.node_id, cluster_id = %self.cluster_id, "strom broker listening");
        let housekeeping = tokio::spawn(housekeeping(self.clone(), shutdown.clone()));
        crate::log_cleaner::start(self.clone(), shutdown.clone());
        let group_ticker = tokio::spawn(crate::group::ticker(self.clone(), shutdown.clone()));
        let txn_ticker = tokio::spawn(crate::txn::ticker(self.clone(), shutdown.clone()));
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let broker = self.clone();
                        let sd = shutdown.clone();
                        tokio::spawn(async move { crate::connection::serve(broker, stream, peer, sd).await });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = shutdown.changed() => break,
            }
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

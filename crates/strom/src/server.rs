//! `strom server`: configuration from file, environment and flags, then the broker until
//! Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use strom_broker::admin::{AdminState, LogControl};
use strom_broker::metrics::Metrics;
use strom_broker::{Broker, BrokerConfig};

/// Run a strom broker.
///
/// With no options it listens on 127.0.0.1:9092 and keeps its data in ./data. Every Kafka broker
/// property strom supports can be set in a TOML file (`--config`), as an environment variable
/// (`STROM_LOG_RETENTION_MS=60000`) or with `--set log.retention.ms=60000`; later sources win.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// TOML file of broker properties, e.g. `"num.partitions" = 3`.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Set a broker property (repeatable): --set num.partitions=3
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Shortcut for --set log.dirs=DIR
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// Shortcut for --set listeners=PLAINTEXT://HOST:PORT
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
}

pub fn load_config(args: &ServerArgs) -> anyhow::Result<BrokerConfig> {
    let mut config = BrokerConfig::default();
    if let Some(path) = &args.config {
        config.apply_file(path)?;
    }
    config.apply_env()?;
    if let Some(dir) = &args.data_dir {
        config.set("log.dirs", dir)?;
    }
    if let Some(addr) = &args.listen {
        config.set("listeners", &format!("PLAINTEXT://{addr}"))?;
    }
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv:?}: expected NAME=VALUE"))?;
        config.set(k.trim(), v)?;
    }
    Ok(config)
}

pub fn run(args: ServerArgs, log_control: Arc<dyn LogControl>) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let admin_addr = strom_broker::admin::parse_admin_listener(config.get("admin.listener"))
        .map_err(anyhow::Error::msg)?;
    let registry_addr = strom_registry::parse_listener(config.get("schema.registry.listener"))
        .map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strom")
        .build()?;
    if strom_broker::cluster::roles(&config) == (false, true) {
        // A controller only: the metadata quorum, no clients, no admin listener.
        return runtime.block_on(async move {
            let (tx, rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("shutting down");
                let _ = tx.send(true);
            });
            strom_broker::cluster::run_controller(config, rx)
                .await
                .context("controller failed")
        });
    }
    runtime.block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let admin = AdminState::new(metrics.clone(), Some(log_control));
        let (tx, rx) = tokio::sync::watch::channel(false);
        // SIGTERM and Ctrl-C are caught from the start: a signal that comes while the logs are
        // recovered or the listeners bound stops the broker cleanly instead of killing it.
        let shutting_down = admin.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            shutting_down.set_not_ready();
            let _ = tx.send(true);
        });
        // The admin listener comes first, so that /health/ready can say "not yet" while the
        // logs are recovered.
        if let Some((host, port)) = admin_addr {
            let listener = tokio::net::TcpListener::bind((host.as_str(), port))
                .await
                .with_context(|| format!("cannot listen on admin.listener {host}:{port}"))?;
            tracing::info!(addr = %listener.local_addr()?, "admin listener");
            tokio::spawn(strom_broker::admin::serve(
                listener,
                admin.clone(),
                rx.clone(),
            ));
        }
        let broker = tokio::task::spawn_blocking(move || Broker::open_with(config, metrics))
            .await
            .context("log recovery panicked")?
            .context("cannot start the broker")?;
        let listeners = broker.bind().await.context("cannot listen")?;
        if let Some((host, port)) = registry_addr {
            start_registry(&host, port, &listeners, rx.clone()).await?;
        }
        if let Some(first) = listeners.first().filter(|_| !*rx.borrow()) {
            admin.set_ready(broker.clone(), first.addr);
        }
        for l in &listeners {
            tracing::info!(listener = %l.spec.name, addr = %l.addr, "ready");
        }
        broker.serve(listeners, rx).await?;
        Ok(())
    })
}

/// Serves the Schema Registry on `host:port`, talking to this broker through its own
/// PLAINTEXT listener like any other client would.
async fn start_registry(
    host: &str,
    port: u16,
    listeners: &[strom_broker::BoundListener],
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use strom_broker::security::listener::SecurityProtocol;
    let Some(kafka) = listeners
        .iter()
        .find(|l| l.spec.protocol == SecurityProtocol::Plaintext)
    else {
        tracing::warn!(
            "schema registry not started: it needs a PLAINTEXT listener to reach the broker (TLS and SASL for it come later)"
        );
        return Ok(());
    };
    let mut addr = kafka.addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let client = strom_client::Client::new(&addr.to_string())
        .map_err(|e| anyhow::anyhow!("schema registry: {e}"))?;
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| format!("cannot listen on schema.registry.listener {host}:{port}"))?;
    tracing::info!(addr = %listener.local_addr()?, "schema registry listener");
    tokio::spawn(async move {
        if let Err(e) = strom_registry::serve(listener, std::sync::Arc::new(client), shutdown).await
        {
            tracing::error!(error = %e, "schema registry stopped");
        }
    });
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

//! Logs through tracing: human-readable lines by default, one JSON object per line with
//! `--log-format json`, both on stderr. The filter (`--log` / `STROM_LOG`, e.g.
//! `info,strom_broker::group=debug`) sits in a reload layer, so the admin listener can change
//! per-module levels while the broker runs (`PUT /v1/log-level`).

use std::sync::{Arc, Mutex};

use strom_broker::admin::LogControl;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

use crate::LogFormat;

/// The reload handle of the installed filter and the text it was built from.
struct Control {
    handle: reload::Handle<EnvFilter, Registry>,
    current: Mutex<String>,
}

impl LogControl for Control {
    fn current(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, filter: &str) -> Result<(), String> {
        let parsed = EnvFilter::try_new(with_quiet_raft(filter)).map_err(|e| e.to_string())?;
        self.handle.reload(parsed).map_err(|e| e.to_string())?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = filter.to_string();
        Ok(())
    }
}

/// The Raft library reports every unreachable peer as an error, which is routine while a
/// quorum member restarts: its lines appear only when the filter names `openraft`. strom logs
/// what matters of the quorum (leader changes, fencing) itself.
fn with_quiet_raft(filter: &str) -> String {
    if filter.contains("openraft") {
        filter.to_string()
    } else {
        format!("{filter},openraft=off")
    }
}

/// Installs the global subscriber; an invalid filter falls back to `info`.
pub fn init(filter: &str, format: LogFormat) -> Arc<dyn LogControl> {
    let (parsed, text) = match EnvFilter::try_new(with_quiet_raft(filter)) {
        Ok(f) => (f, filter.to_string()),
        Err(_) => (EnvFilter::new("info"), "info".to_string()),
    };
    let (layer, handle) = reload::Layer::new(parsed);
    let registry = tracing_subscriber::registry().with(layer);
    match format {
        LogFormat::Human => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .init(),
    }
    Arc::new(Control {
        handle,
        current: Mutex::new(text),
    })
}

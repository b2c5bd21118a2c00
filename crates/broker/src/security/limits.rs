//! Connection limits: `max.connections` over all listeners (a full broker stops accepting until
//! a connection closes) and `max.connections.per.ip` with per-address overrides (a connection
//! beyond the limit is closed at once).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::BrokerConfig;

pub struct ConnectionLimits {
    total: Arc<Semaphore>,
    per_ip_default: usize,
    per_ip_overrides: HashMap<IpAddr, usize>,
    open_per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place in the limits; released when dropped.
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl ConnectionLimits {
    pub fn from_config(config: &BrokerConfig) -> Result<ConnectionLimits, String> {
        let mut per_ip_overrides = HashMap::new();
        for item in config
            .get("max.connections.per.ip.overrides")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (ip, n) = item.rsplit_once(':').ok_or_else(|| {
                format!("max.connections.per.ip.overrides entry {item:?} is not ip:count")
            })?;
            let ip: IpAddr = ip
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| format!("max.connections.per.ip.overrides: bad address {ip:?}"))?;
            let n: usize = n
                .parse()
                .map_err(|_| format!("max.connections.per.ip.overrides: bad count {n:?}"))?;
            per_ip_overrides.insert(ip, n);
        }
        let total = (config.settings().max_connections.max(0) as usize).min(Semaphore::MAX_PERMITS);
        Ok(ConnectionLimits {
            total: Arc::new(Semaphore::new(total)),
            per_ip_default: config.settings().max_connections_per_ip.max(0) as usize,
            per_ip_overrides,
            open_per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Waits for a free place under `max.connections` (call before accepting).
    pub async fn reserve(&self) -> OwnedSemaphorePermit {
        self.total
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed")
    }

    /// Admits an accepted connection from `ip`, or None when the address is at its limit.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        permit: OwnedSemaphorePermit,
    ) -> Option<ConnectionSlot> {
        let limit = self
            .per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.per_ip_default);
        let mut open = self.open_per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            limits: self.clone(),
            ip,
            _permit: permit,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .limits
            .open_per_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn per_ip_limits_and_overrides() {
        let mut c = BrokerConfig::default();
        c.set("max.connections.per.ip", "1").unwrap();
        c.set("max.connections.per.ip.overrides", "10.0.0.2:2")
            .unwrap();
        c.set("max.connections", "10").unwrap();
        let l = Arc::new(ConnectionLimits::from_config(&c).unwrap());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = l.admit(a, l.reserve().await).unwrap();
        assert!(l.admit(a, l.reserve().await).is_none());
        let _b1 = l.admit(b, l.reserve().await).unwrap();
        let _b2 = l.admit(b, l.reserve().await).unwrap();
        assert!(l.admit(b, l.reserve().await).is_none());
        drop(first);
        assert!(l.admit(a, l.reserve().await).is_some());
        c.set("max.connections.per.ip.overrides", "nope").unwrap();
        assert!(ConnectionLimits::from_config(&c).is_err());
    }
}

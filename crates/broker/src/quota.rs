//! Client quotas: byte rates for produce and fetch per user, client id or both (with
//! defaults), as metadata records. A client over its rate gets `throttle_time_ms` in its
//! response and its connection reads nothing more for that long.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use strom_metadata::MetadataImage;

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
pub const ENTITY_USER: &str = "user";
pub const ENTITY_CLIENT_ID: &str = "client-id";

/// Samples of one second; the rate is measured over this many (as Kafka's defaults).
const SAMPLES: usize = 11;

/// An entity: (type, name or None for the default), sorted by type.
pub type Entity = strom_metadata::QuotaEntity;

/// The quota that applies to a user and client id, with the entity it is set on, in Kafka's
/// order of precedence (most specific first).
pub fn lookup(
    quotas: &BTreeMap<Entity, BTreeMap<String, f64>>,
    key: &str,
    user: &str,
    client_id: &str,
) -> Option<(Entity, f64)> {
    let u = |n: Option<&str>| (ENTITY_USER.to_string(), n.map(str::to_string));
    let c = |n: Option<&str>| (ENTITY_CLIENT_ID.to_string(), n.map(str::to_string));
    let candidates: [Entity; 8] = [
        vec![c(Some(client_id)), u(Some(user))],
        vec![c(None), u(Some(user))],
        vec![u(Some(user))],
        vec![c(Some(client_id)), u(None)],
        vec![c(None), u(None)],
        vec![u(None)],
        vec![c(Some(client_id))],
        vec![c(None)],
    ];
    candidates
        .into_iter()
        .find_map(|e| quotas.get(&e).and_then(|q| q.get(key)).map(|v| (e, *v)))
}

#[derive(Default)]
struct Rate {
    /// (second, bytes) for the last SAMPLES seconds.
    samples: VecDeque<(i64, f64)>,
}

impl Rate {
    /// Adds `bytes` at `now_ms`; returns the rate in bytes per second over the window.
    fn record(&mut self, bytes: f64, now_ms: i64) -> f64 {
        let second = now_ms.div_euclid(1000);
        match self.samples.back_mut() {
            Some((s, b)) if *s == second => *b += bytes,
            _ => self.samples.push_back((second, bytes)),
        }
        while self
            .samples
            .front()
            .is_some_and(|(s, _)| *s <= second - SAMPLES as i64)
        {
            self.samples.pop_front();
        }
        let first = self.samples.front().map(|(s, _)| *s).unwrap_or(second);
        // The window runs from the start of the oldest sample to now, at least one second.
        let window_ms = ((now_ms - first * 1000).max(1000)) as f64;
        let total: f64 = self.samples.iter().map(|(_, b)| b).sum();
        total * 1000.0 / window_ms
    }

    fn window_ms(&self, now_ms: i64) -> f64 {
        let first = self.samples.front().map(|(s, _)| *s).unwrap_or(0);
        ((now_ms - first * 1000).max(1000)) as f64
    }
}

/// Rates measured per quota entity and quota key.
#[derive(Default)]
pub struct QuotaManager {
    rates: Mutex<HashMap<(String, Entity), Rate>>,
}

impl QuotaManager {
    /// Records `bytes` for the client and returns how long it must wait (zero within quota).
    pub fn record(
        &self,
        image: &MetadataImage,
        key: &str,
        principal: &str,
        client_id: &str,
        bytes: usize,
        now_ms: i64,
    ) -> Duration {
        let user = principal.strip_prefix("User:").unwrap_or(principal);
        let Some((entity, quota)) = lookup(&image.client_quotas, key, user, client_id) else {
            return Duration::ZERO;
        };
        if quota <= 0.0 || !quota.is_finite() {
            return Duration::ZERO;
        }
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        let rate = rates.entry((key.to_string(), entity)).or_default();
        let observed = rate.record(bytes as f64, now_ms);
        if observed <= quota {
            return Duration::ZERO;
        }
        // Long enough for the rate over the window to come back to the quota.
        let window = rate.window_ms(now_ms);
        let ms = ((observed - quota) / quota * window).min((SAMPLES * 1000) as f64);
        Duration::from_millis(ms.max(0.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_of_quota_entities() {
        let mut q: BTreeMap<Entity, BTreeMap<String, f64>> = BTreeMap::new();
        let set = |q: &mut BTreeMap<Entity, BTreeMap<String, f64>>, e: Entity, v: f64| {
            q.entry(e).or_default().insert(PRODUCER_BYTE_RATE.into(), v);
        };
        let u = |n: Option<&str>| (ENTITY_USER.to_string(), n.map(str::to_string));
        let c = |n: Option<&str>| (ENTITY_CLIENT_ID.to_string(), n.map(str::to_string));
        set(&mut q, vec![c(None)], 1.0);
        assert_eq!(lookup(&q, PRODUCER_BYTE_RATE, "a", "x").unwrap().1, 1.0);
        set(&mut q, vec![u(None)], 2.0);
        assert_eq!(lookup(&q, PRODUCER_BYTE_RATE, "a", "x").unwrap().1, 2.0);
        set(&mut q, vec![u(Some("a"))], 3.0);
        assert_eq!(lookup(&q, PRODUCER_BYTE_RATE, "a", "x").unwrap().1, 3.0);
        assert_eq!(lookup(&q, PRODUCER_BYTE_RATE, "b", "x").unwrap().1, 2.0);
        set(&mut q, vec![c(Some("x")), u(Some("a"))], 4.0);
        assert_eq!(lookup(&q, PRODUCER_BYTE_RATE, "a", "x").unwrap().1, 4.0);
        assert_eq!(lookup(&q, PRODUCER_BYTE_RATE, "a", "y").unwrap().1, 3.0);
        assert!(lookup(&q, CONSUMER_BYTE_RATE, "a", "x").is_none());
    }

    #[test]
    fn throttles_above_the_rate_only() {
        let mut image = MetadataImage::default();
        image.client_quotas.insert(
            vec![(ENTITY_USER.into(), Some("a".into()))],
            [(PRODUCER_BYTE_RATE.to_string(), 1000.0)].into(),
        );
        let m = QuotaManager::default();
        let t0 = 1_000_000;
        assert!(
            m.record(&image, PRODUCER_BYTE_RATE, "User:a", "c", 500, t0)
                .is_zero()
        );
        let t = m.record(&image, PRODUCER_BYTE_RATE, "User:a", "c", 2500, t0 + 100);
        // 3000 bytes in the first second against 1000/s: wait about two seconds.
        assert!(
            t >= Duration::from_millis(1900) && t <= Duration::from_millis(2100),
            "{t:?}"
        );
        assert!(
            m.record(&image, PRODUCER_BYTE_RATE, "User:b", "c", 1 << 30, t0)
                .is_zero()
        );
    }
}

//! Client quotas: byte rates for produce and fetch, the share of request handling time
//! (`request_percentage`) and the rate of partition creations and deletions
//! (`controller_mutation_rate`) per user, client id or both (with defaults), as metadata
//! records. A client over its rate gets `throttle_time_ms` in its response and its connection
//! reads nothing more for that long.

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

    /// Takes back `amount` recorded at `now_ms` (a response that was not sent after all).
    fn unrecord(&mut self, amount: f64, now_ms: i64) {
        let second = now_ms.div_euclid(1000);
        if let Some((s, b)) = self.samples.back_mut()
            && *s == second
        {
            *b = (*b - amount).max(0.0);
        }
    }

    /// Whether anything was recorded in the window ending at `now_ms`.
    fn active(&self, now_ms: i64) -> bool {
        let second = now_ms.div_euclid(1000);
        self.samples
            .iter()
            .any(|(s, b)| *s > second - SAMPLES as i64 && *b > 0.0)
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
    /// `controller_mutation_rate`: a token bucket per entity.
    mutations: Mutex<HashMap<Entity, Bucket>>,
}

/// Partition mutations a client may still make: refilled at the quota per second up to
/// SAMPLES seconds' worth (the burst), spent by each created or deleted partition; below
/// zero, the client waits until it is back at zero.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

impl Bucket {
    fn refill(&mut self, quota: f64, now_ms: i64) {
        let burst = quota * SAMPLES as f64;
        let elapsed_s = (now_ms - self.at_ms).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + quota * elapsed_s).min(burst);
        self.at_ms = now_ms;
    }
}

/// The `controller_mutation_rate` of one request (CreateTopics, CreatePartitions,
/// DeleteTopics) for its client. In strict mode (the request versions that know
/// THROTTLING_QUOTA_EXCEEDED) a topic is refused while the client is over its quota; older
/// versions are served and only throttled.
pub struct MutationQuota<'a> {
    manager: &'a QuotaManager,
    quota: Option<(Entity, f64)>,
    strict: bool,
}

impl MutationQuota<'_> {
    /// Whether the next topic must be refused (THROTTLING_QUOTA_EXCEEDED).
    pub fn exceeded(&self) -> bool {
        let Some((entity, quota)) = &self.quota else {
            return false;
        };
        if !self.strict {
            return false;
        }
        let now = crate::now_ms();
        let mut buckets = self
            .manager
            .mutations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        buckets.get_mut(entity).is_some_and(|b| {
            b.refill(*quota, now);
            b.tokens < 0.0
        })
    }

    /// Spends `partitions` mutations.
    pub fn record(&self, partitions: usize) {
        let Some((entity, quota)) = &self.quota else {
            return;
        };
        let now = crate::now_ms();
        let mut buckets = self
            .manager
            .mutations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(entity.clone()).or_insert(Bucket {
            tokens: quota * SAMPLES as f64,
            at_ms: now,
        });
        b.refill(*quota, now);
        b.tokens -= partitions as f64;
    }
}

impl QuotaManager {
    /// The mutation quota of a request from `principal` / `client_id`.
    pub fn mutations<'a>(
        &'a self,
        image: &MetadataImage,
        principal: &str,
        client_id: &str,
        strict: bool,
    ) -> MutationQuota<'a> {
        let user = principal.strip_prefix("User:").unwrap_or(principal);
        let quota = lookup(
            &image.client_quotas,
            CONTROLLER_MUTATION_RATE,
            user,
            client_id,
        )
        .filter(|(_, q)| *q > 0.0 && q.is_finite());
        MutationQuota {
            manager: self,
            quota,
            strict,
        }
    }

    /// How long the client waits for its mutation bucket to be back at zero.
    pub fn mutation_throttle(
        &self,
        image: &MetadataImage,
        principal: &str,
        client_id: &str,
        now_ms: i64,
    ) -> Duration {
        let q = self.mutations(image, principal, client_id, false);
        let Some((entity, quota)) = q.quota else {
            return Duration::ZERO;
        };
        let mut buckets = self.mutations.lock().unwrap_or_else(|e| e.into_inner());
        match buckets.get_mut(&entity) {
            Some(b) => {
                b.refill(quota, now_ms);
                Duration::from_secs_f64((-b.tokens / quota).clamp(0.0, 3600.0))
            }
            None => Duration::ZERO,
        }
    }
}

/// Time in request handling as a percentage of one thread: `request_percentage` measures
/// percent-seconds per second.
pub fn handling_percent(handling: Duration) -> f64 {
    handling.as_secs_f64() * 100.0
}

/// What recording a Fetch response against `consumer_byte_rate` decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FetchDecision {
    /// How long the client waits (zero within quota).
    pub throttle: Duration,
    /// Whether the records go out. A client over its quota gets an empty response and its
    /// bytes are not counted; a client that fetched nothing in the whole window gets its data
    /// (and the wait), so that one response larger than the quota cannot block it for ever.
    pub send_records: bool,
}

impl QuotaManager {
    /// The quota that applies to a client, if any (a finite positive value).
    pub fn quota(
        &self,
        image: &MetadataImage,
        key: &str,
        principal: &str,
        client_id: &str,
    ) -> Option<f64> {
        let user = principal.strip_prefix("User:").unwrap_or(principal);
        lookup(&image.client_quotas, key, user, client_id)
            .map(|(_, q)| q)
            .filter(|q| *q > 0.0 && q.is_finite())
    }

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
        self.record_amount(image, key, principal, client_id, bytes as f64, now_ms)
            .0
    }

    /// Records `amount` (bytes, or percent-seconds for `request_percentage`) and returns the
    /// wait, with the entity and amount to take it back with.
    fn record_amount(
        &self,
        image: &MetadataImage,
        key: &str,
        principal: &str,
        client_id: &str,
        amount: f64,
        now_ms: i64,
    ) -> (Duration, Option<(Entity, bool)>) {
        let user = principal.strip_prefix("User:").unwrap_or(principal);
        let Some((entity, quota)) = lookup(&image.client_quotas, key, user, client_id) else {
            return (Duration::ZERO, None);
        };
        if quota <= 0.0 || !quota.is_finite() {
            return (Duration::ZERO, None);
        }
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        let rate = rates.entry((key.to_string(), entity.clone())).or_default();
        let was_active = rate.active(now_ms);
        let observed = rate.record(amount, now_ms);
        if observed <= quota {
            return (Duration::ZERO, Some((entity, was_active)));
        }
        // Long enough for the rate over the window to come back to the quota.
        let window = rate.window_ms(now_ms);
        let ms = ((observed - quota) / quota * window).min((SAMPLES * 1000) as f64);
        (
            Duration::from_millis(ms.max(0.0) as u64),
            Some((entity, was_active)),
        )
    }

    /// Records the time a request took to handle against `request_percentage`; returns the wait.
    pub fn record_request_time(
        &self,
        image: &MetadataImage,
        principal: &str,
        client_id: &str,
        handling: Duration,
        now_ms: i64,
    ) -> Duration {
        self.record_amount(
            image,
            REQUEST_PERCENTAGE,
            principal,
            client_id,
            handling_percent(handling),
            now_ms,
        )
        .0
    }

    /// Records the record bytes of a Fetch response against `consumer_byte_rate` and decides
    /// whether they are sent. `other_throttle` is a wait the request already has for another
    /// quota (request_percentage): a throttled fetch answers empty whatever the reason.
    pub fn record_fetch(
        &self,
        image: &MetadataImage,
        principal: &str,
        client_id: &str,
        bytes: usize,
        other_throttle: Duration,
        now_ms: i64,
    ) -> FetchDecision {
        let (throttle, recorded) = self.record_amount(
            image,
            CONSUMER_BYTE_RATE,
            principal,
            client_id,
            bytes as f64,
            now_ms,
        );
        let wait = throttle.max(other_throttle);
        if wait.is_zero() || bytes == 0 {
            return FetchDecision {
                throttle: wait,
                send_records: true,
            };
        }
        let was_active = recorded.as_ref().is_none_or(|(_, a)| *a);
        if !was_active && other_throttle.is_zero() {
            return FetchDecision {
                throttle: wait,
                send_records: true,
            };
        }
        if let Some((entity, _)) = recorded {
            let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(rate) = rates.get_mut(&(CONSUMER_BYTE_RATE.to_string(), entity)) {
                rate.unrecord(bytes as f64, now_ms);
            }
        }
        FetchDecision {
            throttle: wait,
            send_records: false,
        }
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

    #[test]
    fn request_time_is_a_percentage_of_one_thread() {
        let mut image = MetadataImage::default();
        image.client_quotas.insert(
            vec![(ENTITY_CLIENT_ID.into(), Some("busy".into()))],
            [(REQUEST_PERCENTAGE.to_string(), 10.0)].into(),
        );
        let m = QuotaManager::default();
        let t0 = 5_000_000;
        // 50 ms of handling in one second: 5% of a thread, within 10%.
        let ms = Duration::from_millis;
        assert!(
            m.record_request_time(&image, "User:a", "busy", ms(50), t0)
                .is_zero()
        );
        // 300 ms in all: 30% against 10%, a wait of (30 - 10) / 10 x 1 s.
        let t = m.record_request_time(&image, "User:a", "busy", ms(250), t0 + 10);
        assert!(t >= ms(1900) && t <= ms(2100), "{t:?}");
        assert!(
            m.record_request_time(&image, "User:a", "idle", ms(900), t0)
                .is_zero()
        );
    }

    #[test]
    fn controller_mutations_spend_a_bucket() {
        let mut image = MetadataImage::default();
        image.client_quotas.insert(
            vec![(ENTITY_CLIENT_ID.into(), Some("admin".into()))],
            [(CONTROLLER_MUTATION_RATE.to_string(), 2.0)].into(),
        );
        let m = QuotaManager::default();
        let strict = m.mutations(&image, "User:a", "admin", true);
        // A burst of 11 seconds' worth: 22 partitions.
        assert!(!strict.exceeded());
        strict.record(20);
        assert!(!strict.exceeded());
        strict.record(10);
        assert!(strict.exceeded());
        let t = m.mutation_throttle(&image, "User:a", "admin", crate::now_ms());
        // 8 partitions over at 2 per second: about 4 s (less what refilled meanwhile).
        assert!(
            t > Duration::from_millis(3500) && t <= Duration::from_secs(4),
            "{t:?}"
        );
        // Old request versions are never refused, only throttled.
        assert!(!m.mutations(&image, "User:a", "admin", false).exceeded());
        // Other clients have no quota.
        let other = m.mutations(&image, "User:a", "other", true);
        other.record(1000);
        assert!(!other.exceeded());
        assert!(m.mutation_throttle(&image, "User:a", "other", 0).is_zero());
    }

    #[test]
    fn a_fetch_over_quota_sends_nothing_and_is_not_counted() {
        let mut image = MetadataImage::default();
        image.client_quotas.insert(
            vec![(ENTITY_CLIENT_ID.into(), Some("r".into()))],
            [(CONSUMER_BYTE_RATE.to_string(), 1000.0)].into(),
        );
        let m = QuotaManager::default();
        let t0 = 7_000_000;
        let fetch = |bytes, now| m.record_fetch(&image, "User:a", "r", bytes, Duration::ZERO, now);
        // Within quota.
        assert_eq!(
            fetch(600, t0),
            FetchDecision {
                throttle: Duration::ZERO,
                send_records: true
            }
        );
        // Over it: nothing sent, and the 900 bytes are not counted...
        let d = fetch(900, t0 + 10);
        assert!(!d.send_records && !d.throttle.is_zero(), "{d:?}");
        // ... so 400 more still fit.
        assert!(fetch(400, t0 + 20).throttle.is_zero());
        // A client idle for the whole window gets one large response (and the wait).
        let d = fetch(50_000, t0 + 60_000);
        assert!(d.send_records && !d.throttle.is_zero(), "{d:?}");
        // Throttled by another quota: empty as well.
        let d = m.record_fetch(
            &image,
            "User:a",
            "r",
            10,
            Duration::from_millis(5),
            t0 + 60_500,
        );
        assert!(!d.send_records, "{d:?}");
        // No quota: always sent.
        let d = m.record_fetch(&image, "User:a", "other", 1 << 30, Duration::ZERO, t0);
        assert!(d.send_records && d.throttle.is_zero());
    }
}

//! Delayed operations keyed by partition: the waiting room of fetches that want more data and of
//! writes that want their records replicated.
//!
//! Each partition owns a [`Watchers`] list. An operation that must wait (a fetch below
//! `min_bytes`, an acks=all produce, a coordinator's replicated write) creates a [`Waiter`],
//! registers it with the partitions it depends on, checks its condition, and sleeps until one of
//! those partitions changes or its deadline passes. The partition wakes its own watchers, and
//! only them, when its log grows, its high watermark moves or its leadership changes: an append
//! to one partition costs nothing to the operations waiting on the others.
//!
//! No wake-up is lost: a waiter is registered before its first check, and a wake-up that arrives
//! between a check and the sleep is kept as a permit (`Notify::notify_one`), so the sleep
//! returns at once. A waiter unregisters itself when dropped.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

/// The operations waiting on one partition.
#[derive(Default)]
pub struct Watchers {
    waiting: Mutex<Vec<Arc<Notify>>>,
}

impl Watchers {
    /// Wakes every operation waiting on this partition (each looks at its condition again).
    pub fn wake(&self) {
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        for w in waiting.iter() {
            w.notify_one();
        }
    }

    /// How many operations wait here now.
    pub fn len(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no operation waits here.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn add(&self, waiter: &Arc<Notify>) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(waiter.clone());
    }

    fn remove(&self, waiter: &Arc<Notify>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = waiting.iter().position(|w| Arc::ptr_eq(w, waiter)) {
            waiting.swap_remove(i);
        }
    }
}

/// One waiting operation, registered with the partitions it depends on until dropped.
pub struct Waiter {
    notify: Arc<Notify>,
    watching: Vec<Arc<Watchers>>,
}

impl Default for Waiter {
    fn default() -> Self {
        Self::new()
    }
}

impl Waiter {
    /// A waiter that watches nothing yet.
    pub fn new() -> Waiter {
        Waiter {
            notify: Arc::new(Notify::new()),
            watching: Vec::new(),
        }
    }

    /// Registers with a partition's watchers: its changes wake this waiter from now on.
    pub fn watch(&mut self, watchers: &Arc<Watchers>) {
        if self.watching.iter().any(|w| Arc::ptr_eq(w, watchers)) {
            return;
        }
        watchers.add(&self.notify);
        self.watching.push(watchers.clone());
    }

    /// Sleeps until a watched partition changes (true) or `deadline` passes (false). A change
    /// since the last call returns at once.
    pub async fn wait_until(&self, deadline: Instant) -> bool {
        tokio::time::timeout_at(deadline, self.notify.notified())
            .await
            .is_ok()
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        for w in &self.watching {
            w.remove(&self.notify);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_change_wakes_only_the_waiters_of_its_partition() {
        let a = Arc::new(Watchers::default());
        let b = Arc::new(Watchers::default());
        let mut on_a = Waiter::new();
        on_a.watch(&a);
        let mut on_b = Waiter::new();
        on_b.watch(&b);
        a.wake();
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(on_a.wait_until(soon).await, "the waiter on a is woken");
        assert!(!on_b.wait_until(soon).await, "the waiter on b sleeps on");
    }

    #[tokio::test]
    async fn a_wake_before_the_sleep_is_not_lost() {
        let a = Arc::new(Watchers::default());
        let mut w = Waiter::new();
        w.watch(&a);
        // The change lands between the waiter's check and its sleep.
        a.wake();
        let far = Instant::now() + Duration::from_secs(30);
        assert!(w.wait_until(far).await);
    }

    #[tokio::test]
    async fn a_waiter_leaves_every_list_when_dropped() {
        let a = Arc::new(Watchers::default());
        let b = Arc::new(Watchers::default());
        let mut w = Waiter::new();
        w.watch(&a);
        w.watch(&b);
        w.watch(&a);
        assert_eq!((a.len(), b.len()), (1, 1));
        drop(w);
        assert!(a.is_empty() && b.is_empty());
    }

    #[tokio::test]
    async fn one_waiter_wakes_for_any_of_its_partitions() {
        let parts: Vec<Arc<Watchers>> = (0..4).map(|_| Arc::default()).collect();
        let mut w = Waiter::new();
        for p in &parts {
            w.watch(p);
        }
        let p3 = parts[3].clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            p3.wake();
        });
        assert!(w.wait_until(Instant::now() + Duration::from_secs(30)).await);
    }
}

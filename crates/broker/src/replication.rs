//! The rules of partition replication, as pure state machines the replica manager drives:
//! what a leader knows of its followers (their log end offsets, when each last caught up), how
//! the in-sync replica set shrinks and grows, where the high watermark is, whether an acks=all
//! write may be taken, and how a follower finds the end of its log that agrees with the leader.
//!
//! Nothing here does I/O or keeps time: callers pass `now_ms` and log end offsets, and get back
//! the ISR change to propose to the controller (AlterPartition). The simulation tests in
//! `replication/sim.rs` drive these rules through crashes, lost and reordered messages and
//! leader elections, and check that no acknowledged write is lost.

use std::collections::{BTreeMap, BTreeSet};

/// A broker id.
pub type ReplicaId = i32;

/// A change of the in-sync replica set the leader asks the controller for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    /// The partition epoch the change is based on: the controller refuses a stale one.
    pub partition_epoch: i32,
    pub new_isr: BTreeSet<ReplicaId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Follower {
    /// The follower's log end offset as of its last fetch (-1 before its first).
    log_end_offset: i64,
    /// The last time its fetch reached the leader's log end offset.
    caught_up_ms: i64,
}

/// A partition leader's view of replication.
#[derive(Clone, Debug)]
pub struct LeaderState {
    pub leader: ReplicaId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// Start offset of this leader epoch: a follower joins the ISR only once it has caught up
    /// past it (it holds everything the previous leaders acknowledged).
    pub epoch_start_offset: i64,
    pub isr: BTreeSet<ReplicaId>,
    high_watermark: i64,
    followers: BTreeMap<ReplicaId, Follower>,
    /// An ISR change sent to the controller and not answered yet: no other is sent meanwhile.
    pending: Option<IsrChange>,
}

/// A partition's leadership as the controller decided it.
#[derive(Clone, Debug)]
pub struct Election<'a> {
    pub leader: ReplicaId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: &'a [ReplicaId],
    pub isr: BTreeSet<ReplicaId>,
}

/// Why an acks=all write is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendRefusal {
    /// NOT_ENOUGH_REPLICAS: the ISR is smaller than min.insync.replicas.
    NotEnoughReplicas { isr: usize, min_isr: usize },
}

impl LeaderState {
    /// A replica becomes leader as the controller's `election` says. Its high watermark starts
    /// at `high_watermark` (what it knew as a follower); it moves only forward from there.
    pub fn new(
        election: Election<'_>,
        log_end_offset: i64,
        high_watermark: i64,
        now_ms: i64,
    ) -> LeaderState {
        let Election {
            leader,
            leader_epoch,
            partition_epoch,
            replicas,
            isr,
        } = election;
        let followers = replicas
            .iter()
            .filter(|&&r| r != leader)
            .map(|&r| {
                (
                    r,
                    Follower {
                        log_end_offset: -1,
                        // Members of the ISR get a full lag window to show up.
                        caught_up_ms: now_ms,
                    },
                )
            })
            .collect();
        LeaderState {
            leader,
            leader_epoch,
            partition_epoch,
            epoch_start_offset: log_end_offset,
            isr,
            high_watermark: high_watermark.min(log_end_offset),
            followers,
            pending: None,
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The replica set changed under the same leadership (a reassignment adds or removes
    /// replicas): new followers start unknown, removed ones are forgotten.
    pub fn update_replicas(&mut self, replicas: &[ReplicaId], now_ms: i64) {
        self.followers.retain(|r, _| replicas.contains(r));
        for r in replicas {
            if *r != self.leader {
                self.followers.entry(*r).or_insert(Follower {
                    log_end_offset: -1,
                    caught_up_ms: now_ms,
                });
            }
        }
    }

    /// Whether an acks=all write may be appended now (min.insync.replicas).
    pub fn check_acks_all(&self, min_isr: usize) -> Result<(), AppendRefusal> {
        if self.isr.len() < min_isr {
            return Err(AppendRefusal::NotEnoughReplicas {
                isr: self.isr.len(),
                min_isr,
            });
        }
        Ok(())
    }

    /// The high watermark is the smallest log end offset in the ISR (the leader's own
    /// included); it never moves back.
    fn advance_high_watermark(&mut self, leader_log_end: i64) -> bool {
        let mut hw = leader_log_end;
        for r in &self.isr {
            if *r == self.leader {
                continue;
            }
            let leo = self.followers.get(r).map_or(-1, |f| f.log_end_offset);
            hw = hw.min(leo);
        }
        if hw > self.high_watermark {
            self.high_watermark = hw;
            true
        } else {
            false
        }
    }

    /// The leader appended; with an ISR of one, that alone moves the high watermark.
    pub fn on_leader_append(&mut self, leader_log_end: i64) -> bool {
        self.advance_high_watermark(leader_log_end)
    }

    /// A follower fetched from `fetch_offset` (so its log ends there). Updates its position,
    /// the high watermark, and may propose adding it to the ISR. Returns (high watermark moved,
    /// ISR change to propose).
    pub fn on_follower_fetch(
        &mut self,
        follower: ReplicaId,
        fetch_offset: i64,
        leader_log_end: i64,
        now_ms: i64,
    ) -> (bool, Option<IsrChange>) {
        let Some(f) = self.followers.get_mut(&follower) else {
            return (false, None);
        };
        f.log_end_offset = fetch_offset.min(leader_log_end);
        if fetch_offset >= leader_log_end {
            f.caught_up_ms = now_ms;
        }
        let moved = self.advance_high_watermark(leader_log_end);
        let caught_up =
            fetch_offset >= self.high_watermark && fetch_offset >= self.epoch_start_offset;
        let change = if !self.isr.contains(&follower) && caught_up && self.pending.is_none() {
            let mut new_isr = self.isr.clone();
            new_isr.insert(follower);
            Some(self.propose(new_isr))
        } else {
            None
        };
        (moved, change)
    }

    /// Followers in the ISR that have not caught up for `lag_ms` (replica.lag.time.max.ms)
    /// leave it. Returns the change to propose, if any.
    pub fn maybe_shrink_isr(&mut self, now_ms: i64, lag_ms: i64) -> Option<IsrChange> {
        if self.pending.is_some() {
            return None;
        }
        let lagging: Vec<ReplicaId> = self
            .isr
            .iter()
            .copied()
            .filter(|r| *r != self.leader)
            .filter(|r| {
                self.followers
                    .get(r)
                    .is_none_or(|f| now_ms.saturating_sub(f.caught_up_ms) > lag_ms)
            })
            .collect();
        if lagging.is_empty() {
            return None;
        }
        let mut new_isr = self.isr.clone();
        for r in lagging {
            new_isr.remove(&r);
        }
        Some(self.propose(new_isr))
    }

    fn propose(&mut self, new_isr: BTreeSet<ReplicaId>) -> IsrChange {
        let change = IsrChange {
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            new_isr,
        };
        self.pending = Some(change.clone());
        change
    }

    /// The controller's answer to the pending change: `Some(partition_epoch)` when it was
    /// committed. A shrink takes effect only now (so the high watermark never counts on fewer
    /// replicas than the controller knows); an expansion too.
    pub fn on_isr_committed(
        &mut self,
        committed: Option<(BTreeSet<ReplicaId>, i32)>,
        leader_log_end: i64,
    ) -> bool {
        self.pending = None;
        if let Some((isr, partition_epoch)) = committed {
            self.isr = isr;
            self.partition_epoch = partition_epoch;
        }
        self.advance_high_watermark(leader_log_end)
    }
}

/// Where a follower must truncate to before it fetches from a new leader: the end of the
/// follower's last epoch as the leader knows it, and never past the follower's own end of that
/// epoch. `leader_end_for_epoch` is the leader's answer to OffsetForLeaderEpoch for the
/// follower's latest epoch: (the largest epoch <= it on the leader, where that epoch ends).
pub fn divergence_point(
    follower_end_for_epoch: impl Fn(i32) -> Option<(i32, i64)>,
    follower_latest_epoch: Option<i32>,
    follower_log_end: i64,
    leader_end_for_epoch: impl Fn(i32) -> Option<(i32, i64)>,
) -> i64 {
    let Some(epoch) = follower_latest_epoch else {
        return follower_log_end;
    };
    match leader_end_for_epoch(epoch) {
        // The leader never had anything this old or newer in common: keep nothing past where
        // the leader's knowledge starts.
        None => 0.min(follower_log_end),
        Some((leader_epoch, leader_end)) => {
            let own_end = follower_end_for_epoch(leader_epoch).map_or(0, |(_, end)| end);
            leader_end.min(own_end).min(follower_log_end)
        }
    }
}

#[cfg(test)]
mod sim;

#[cfg(test)]
mod tests {
    use super::*;

    fn isr(ids: &[ReplicaId]) -> BTreeSet<ReplicaId> {
        ids.iter().copied().collect()
    }

    fn leader(epoch: i32, partition_epoch: i32) -> LeaderState {
        let election = Election {
            leader: 1,
            leader_epoch: epoch,
            partition_epoch,
            replicas: &[1, 2, 3],
            isr: isr(&[1, 2, 3]),
        };
        LeaderState::new(election, 0, 0, 0)
    }

    #[test]
    fn high_watermark_follows_the_slowest_in_sync_replica() {
        let mut l = leader(0, 0);
        assert!(!l.on_leader_append(10));
        assert_eq!(l.high_watermark(), 0);
        l.on_follower_fetch(2, 10, 10, 5);
        assert_eq!(l.high_watermark(), 0);
        let (moved, change) = l.on_follower_fetch(3, 7, 10, 5);
        assert!(moved && change.is_none());
        assert_eq!(l.high_watermark(), 7);
        // A fetch from further back (a follower restarted) cannot move it back.
        l.on_follower_fetch(3, 2, 10, 6);
        assert_eq!(l.high_watermark(), 7);
    }

    #[test]
    fn lagging_followers_leave_and_caught_up_ones_return() {
        let mut l = leader(3, 5);
        l.on_leader_append(10);
        l.on_follower_fetch(2, 10, 10, 100);
        assert_eq!(l.check_acks_all(2), Ok(()));
        assert_eq!(l.maybe_shrink_isr(20_000, 30_000), None);
        l.on_follower_fetch(2, 10, 10, 39_000);
        let change = l.maybe_shrink_isr(40_000, 30_000).unwrap();
        assert_eq!(change.new_isr, isr(&[1, 2]));
        assert_eq!((change.leader_epoch, change.partition_epoch), (3, 5));
        // Until the controller answers, the old ISR holds the high watermark back.
        assert_eq!(l.high_watermark(), 0);
        assert!(l.on_isr_committed(Some((isr(&[1, 2]), 6)), 10));
        assert_eq!(l.high_watermark(), 10);
        assert_eq!(
            l.check_acks_all(3),
            Err(AppendRefusal::NotEnoughReplicas { isr: 2, min_isr: 3 })
        );
        // Replica 3 comes back: it rejoins once it reaches the high watermark.
        let (_, change) = l.on_follower_fetch(3, 4, 10, 41_000);
        assert!(change.is_none());
        let (_, change) = l.on_follower_fetch(3, 10, 10, 41_100);
        assert_eq!(change.unwrap().new_isr, isr(&[1, 2, 3]));
        l.on_isr_committed(Some((isr(&[1, 2, 3]), 7)), 10);
        assert_eq!(l.partition_epoch, 7);
    }

    #[test]
    fn divergence_is_found_from_the_epochs() {
        // Follower: epochs 0 at 0, 1 at 10, log end 15. Leader: epoch 0 at 0, 2 at 12.
        let follower = |e: i32| match e {
            0 => Some((0, 10)),
            1.. => Some((1, 15)),
            _ => None,
        };
        let leader = |e: i32| match e {
            0 | 1 => Some((0, 12)),
            2.. => Some((2, 30)),
            _ => None,
        };
        // The follower's epoch 1 is unknown to the leader: cut back to the end of epoch 0 on
        // the follower (10), which is before the leader's end of it (12).
        assert_eq!(divergence_point(follower, Some(1), 15, leader), 10);
        assert_eq!(divergence_point(follower, None, 0, leader), 0);
    }
}

//! A seeded simulation of one partition replicated on three brokers, driven through the rules
//! of [`super`]: produce with acks=all and min.insync.replicas=2, follower fetches, ISR changes
//! through the controller, crashes and restarts, lost and reordered fetch messages, leader
//! elections from the ISR only. The controller is the real one: a metadata image changed only
//! by records that pass its checks (`MetadataImage::validate`), with the active controller's
//! decisions of `cluster.rs` (fencing a crashed broker, electing leaders for offline
//! partitions) and the ISR changes leaders ask for as `cluster::isr_record` writes them. After every step it checks that each leader epoch has one
//! leader, that a leader's high watermark never moves back, and that every acknowledged write
//! is in the current leader's log at its offset; at the end, with the network healed, that all
//! replicas hold the same log.

use std::collections::{BTreeSet, HashMap};

use strom_metadata::{MetadataImage, MetadataRecord, PartitionInfo, Uuid};

use super::*;
use crate::cluster;

const REPLICAS: [ReplicaId; 3] = [1, 2, 3];
const MIN_ISR: usize = 2;
const LAG_MS: i64 = 200;

/// xorshift64*: deterministic, dependency-free randomness for a seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One record: (leader epoch it was written in, value).
type Entry = (i32, u64);

#[derive(Default)]
struct Replica {
    up: bool,
    log: Vec<Entry>,
    /// The leader epoch this replica follows or leads.
    epoch: i32,
    leader: Option<LeaderState>,
    high_watermark: i64,
}

impl Replica {
    fn leo(&self) -> i64 {
        self.log.len() as i64
    }
    /// (largest epoch <= `epoch`, where it ends) from the log itself.
    fn end_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let found = self.log.iter().map(|e| e.0).filter(|e| *e <= epoch).max()?;
        let end = self
            .log
            .iter()
            .position(|e| e.0 > found)
            .unwrap_or(self.log.len());
        Some((found, end as i64))
    }
    fn latest_epoch(&self) -> Option<i32> {
        self.log.last().map(|e| e.0)
    }
}

/// The controller's metadata (a reliable quorum here): three brokers and one partition.
struct Controller {
    image: MetadataImage,
    /// Set when a change moved the leadership (a new leader epoch).
    leader: Option<ReplicaId>,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: BTreeSet<ReplicaId>,
}

const TOPIC: Uuid = Uuid::from_u128(7);

impl Controller {
    fn new() -> Controller {
        let mut image = MetadataImage::default();
        for b in REPLICAS {
            image.apply(&MetadataRecord::RegisterBroker {
                broker_id: b,
                host: "sim".into(),
                port: 1,
                rack: None,
            });
        }
        image.apply(&MetadataRecord::Topic {
            name: "t".into(),
            topic_id: TOPIC,
        });
        image.apply(&MetadataRecord::Partition {
            topic_id: TOPIC,
            partition: 0,
            replicas: REPLICAS.to_vec(),
            isr: REPLICAS.to_vec(),
            leader: REPLICAS[0],
            leader_epoch: 0,
            partition_epoch: 0,
            adding: vec![],
            removing: vec![],
        });
        let mut c = Controller {
            image,
            leader: None,
            leader_epoch: 0,
            partition_epoch: 0,
            isr: BTreeSet::new(),
        };
        c.refresh();
        c
    }

    fn partition(&self) -> &PartitionInfo {
        &self.image.topic("t").expect("topic").partitions[0]
    }

    fn refresh(&mut self) {
        let p = self.partition().clone();
        self.leader = (p.leader >= 0).then_some(p.leader);
        self.leader_epoch = p.leader_epoch;
        self.partition_epoch = p.partition_epoch;
        self.isr = p.isr.iter().copied().collect();
    }

    /// Applies records the way the metadata log does: all of them if they pass the checks.
    fn commit(&mut self, records: &[MetadataRecord]) -> bool {
        if self.image.validate(records).is_err() {
            return false;
        }
        for r in records {
            self.image.apply(r);
        }
        self.refresh();
        true
    }
}

enum Msg {
    Fetch {
        from: ReplicaId,
        to: ReplicaId,
        epoch: i32,
        offset: i64,
    },
    Records {
        to: ReplicaId,
        epoch: i32,
        offset: i64,
        records: Vec<Entry>,
        high_watermark: i64,
    },
}

struct Sim {
    rng: Rng,
    now: i64,
    replicas: HashMap<ReplicaId, Replica>,
    ctl: Controller,
    net: Vec<Msg>,
    /// Acknowledged writes: offset -> entry.
    acked: HashMap<i64, Entry>,
    /// Writes waiting for the high watermark: (leader epoch, offset, entry).
    waiting: Vec<(i32, i64, Entry)>,
    leaders_by_epoch: HashMap<i32, ReplicaId>,
    next_value: u64,
    lossy: bool,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut replicas = HashMap::new();
        for r in REPLICAS {
            replicas.insert(
                r,
                Replica {
                    up: true,
                    ..Replica::default()
                },
            );
        }
        let mut sim = Sim {
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            now: 0,
            replicas,
            ctl: Controller::new(),
            net: Vec::new(),
            acked: HashMap::new(),
            waiting: Vec::new(),
            leaders_by_epoch: HashMap::new(),
            next_value: 1,
            lossy: true,
        };
        sim.leadership_changed();
        sim
    }

    /// The controller's image moved the leadership: one leader per epoch, and every live
    /// replica takes its new role.
    fn leadership_changed(&mut self) {
        let Some(leader) = self.ctl.leader else {
            return;
        };
        let epoch = self.ctl.leader_epoch;
        let previous = *self.leaders_by_epoch.entry(epoch).or_insert(leader);
        assert_eq!(previous, leader, "two leaders for epoch {epoch}");
        let replicas: Vec<ReplicaId> = REPLICAS.to_vec();
        for r in REPLICAS {
            self.become_follower_or_leader(r, &replicas);
        }
    }

    /// A change of the controller's image reaches the leader: the ISR and partition epoch of
    /// the same leadership, or a new leadership.
    fn after_change(&mut self, epoch_before: i32) {
        if self.ctl.leader_epoch != epoch_before {
            self.leadership_changed();
            return;
        }
        let (isr, partition_epoch) = (self.ctl.isr.clone(), self.ctl.partition_epoch);
        if let Some(l) = self.ctl.leader {
            let rep = self.replicas.get_mut(&l).unwrap();
            let leo = rep.leo();
            if let Some(s) = rep.leader.as_mut()
                && s.partition_epoch < partition_epoch
            {
                s.on_isr_committed(Some((isr, partition_epoch)), leo);
            }
        }
    }

    fn become_follower_or_leader(&mut self, r: ReplicaId, replicas: &[ReplicaId]) {
        let (epoch, leader, isr, partition_epoch, now) = (
            self.ctl.leader_epoch,
            self.ctl.leader,
            self.ctl.isr.clone(),
            self.ctl.partition_epoch,
            self.now,
        );
        let Some(leader) = leader else { return };
        if !self.replicas[&r].up || self.replicas[&r].epoch == epoch {
            return;
        }
        if r == leader {
            let rep = self.replicas.get_mut(&r).unwrap();
            rep.epoch = epoch;
            let election = Election {
                leader: r,
                leader_epoch: epoch,
                partition_epoch,
                replicas,
                isr,
            };
            rep.leader = Some(LeaderState::new(
                election,
                rep.leo(),
                rep.high_watermark,
                now,
            ));
            return;
        }
        // A follower truncates to where its log agrees with the new leader's, then fetches.
        let cut = {
            let f = &self.replicas[&r];
            let l = &self.replicas[&leader];
            if !l.up {
                return;
            }
            divergence_point(
                |e| f.end_for_epoch(e),
                f.latest_epoch(),
                f.leo(),
                |e| l.end_for_epoch(e),
            )
        };
        let rep = self.replicas.get_mut(&r).unwrap();
        rep.log.truncate(cut as usize);
        rep.high_watermark = rep.high_watermark.min(cut);
        rep.epoch = epoch;
        rep.leader = None;
    }

    /// The leader asks for an ISR change, written as `cluster::isr_record` does: a partition
    /// record with the next partition epoch, refused if the partition changed meanwhile.
    fn propose(&mut self, change: IsrChange) {
        let leader = self.ctl.leader.expect("a leader proposes");
        let p = self.ctl.partition().clone();
        let record = MetadataRecord::Partition {
            topic_id: TOPIC,
            partition: 0,
            replicas: p.replicas.clone(),
            isr: p
                .replicas
                .iter()
                .copied()
                .filter(|r| change.new_isr.contains(r))
                .collect(),
            leader,
            leader_epoch: change.leader_epoch,
            partition_epoch: change.partition_epoch + 1,
            adding: vec![],
            removing: vec![],
        };
        let current = p.leader == leader
            && p.leader_epoch == change.leader_epoch
            && p.partition_epoch == change.partition_epoch;
        let accepted = current && self.ctl.commit(&[record]);
        let answer = accepted.then(|| (self.ctl.isr.clone(), self.ctl.partition_epoch));
        let rep = self.replicas.get_mut(&leader).unwrap();
        let leo = rep.leo();
        if let Some(l) = rep.leader.as_mut()
            && l.leader_epoch == change.leader_epoch
        {
            l.on_isr_committed(answer, leo);
        }
    }

    fn leader_hw(&self) -> Option<(i32, i64)> {
        let l = self.ctl.leader?;
        let rep = &self.replicas[&l];
        rep.leader
            .as_ref()
            .map(|s| (s.leader_epoch, s.high_watermark()))
    }

    fn step(&mut self) {
        self.now += 10;
        let before = self.leader_hw();
        match self.rng.below(100) {
            0..=24 => self.produce(),
            25..=69 => self.deliver_or_fetch(),
            70..=72 if self.lossy => self.crash(),
            73..=77 => self.restart(),
            78..=84 => self.shrink(),
            _ => self.deliver_or_fetch(),
        }
        self.settle_acks();
        self.check(before);
    }

    fn produce(&mut self) {
        let Some(l) = self.ctl.leader else { return };
        let value = self.next_value;
        self.next_value += 1;
        let rep = self.replicas.get_mut(&l).unwrap();
        if !rep.up {
            return;
        }
        let Some(state) = rep.leader.as_mut() else {
            return;
        };
        if state.check_acks_all(MIN_ISR).is_err() {
            return;
        }
        let epoch = state.leader_epoch;
        rep.log.push((epoch, value));
        let leo = rep.log.len() as i64;
        let offset = leo - 1;
        rep.leader.as_mut().unwrap().on_leader_append(leo);
        self.waiting.push((epoch, offset, (epoch, value)));
    }

    /// A follower sends a fetch, or a message in flight is delivered (any of them: reordering),
    /// or dropped.
    fn deliver_or_fetch(&mut self) {
        if self.net.is_empty() || self.rng.chance(40) {
            let r = REPLICAS[self.rng.below(3)];
            let rep = &self.replicas[&r];
            if let Some(l) = self.ctl.leader
                && l != r
                && rep.up
                && rep.epoch == self.ctl.leader_epoch
            {
                self.net.push(Msg::Fetch {
                    from: r,
                    to: l,
                    epoch: rep.epoch,
                    offset: rep.leo(),
                });
            }
            return;
        }
        let msg = self.net.swap_remove(self.rng.below(self.net.len()));
        if self.lossy && self.rng.chance(10) {
            return;
        }
        match msg {
            Msg::Fetch {
                from,
                to,
                epoch,
                offset,
            } => {
                let now = self.now;
                let rep = self.replicas.get_mut(&to).unwrap();
                if !rep.up {
                    return;
                }
                let leo = rep.leo();
                let Some(state) = rep.leader.as_mut() else {
                    return;
                };
                if state.leader_epoch != epoch || offset > leo {
                    return;
                }
                let (_, change) = state.on_follower_fetch(from, offset, leo, now);
                let hw = state.high_watermark();
                let records = rep.log[offset as usize..].iter().take(5).copied().collect();
                self.net.push(Msg::Records {
                    to: from,
                    epoch,
                    offset,
                    records,
                    high_watermark: hw,
                });
                if let Some(c) = change {
                    self.propose(c);
                }
            }
            Msg::Records {
                to,
                epoch,
                offset,
                records,
                high_watermark,
            } => {
                let rep = self.replicas.get_mut(&to).unwrap();
                if !rep.up || rep.epoch != epoch || rep.leader.is_some() || offset != rep.leo() {
                    return;
                }
                rep.log.extend(records);
                rep.high_watermark = rep.high_watermark.max(high_watermark.min(rep.leo()));
            }
        }
    }

    fn crash(&mut self) {
        let r = REPLICAS[self.rng.below(3)];
        let rep = self.replicas.get_mut(&r).unwrap();
        if !rep.up {
            return;
        }
        rep.up = false;
        rep.leader = None;
        rep.epoch = -1;
        // The active controller fences it: out of the ISR (unless it is the last member), and
        // a new leader from the ISR if it led.
        let before = self.ctl.leader_epoch;
        let records = cluster::fence_records(&self.ctl.image, r, |_| false);
        assert!(self.ctl.commit(&records), "fencing refused by the image");
        self.after_change(before);
    }

    /// A replica comes back: it registers (lifting its fence) and the controller gives a
    /// leader to the partition if it had none.
    fn start_again(&mut self, r: ReplicaId) {
        self.replicas.get_mut(&r).unwrap().up = true;
        let before = self.ctl.leader_epoch;
        let register = MetadataRecord::RegisterBroker {
            broker_id: r,
            host: "sim".into(),
            port: 1,
            rack: None,
        };
        assert!(self.ctl.commit(&[register]));
        let elections = cluster::elect_offline(&self.ctl.image, |_| false);
        assert!(self.ctl.commit(&elections), "election refused by the image");
        if self.ctl.leader_epoch != before {
            self.leadership_changed();
        } else {
            let replicas = REPLICAS.to_vec();
            self.become_follower_or_leader(r, &replicas);
        }
    }

    fn restart(&mut self) {
        let r = REPLICAS[self.rng.below(3)];
        if self.replicas[&r].up {
            return;
        }
        self.start_again(r);
    }

    fn shrink(&mut self) {
        let Some(l) = self.ctl.leader else { return };
        let now = self.now;
        let rep = self.replicas.get_mut(&l).unwrap();
        let Some(state) = rep.leader.as_mut() else {
            return;
        };
        if let Some(change) = state.maybe_shrink_isr(now, LAG_MS) {
            self.propose(change);
        }
    }

    /// Writes below the leader's high watermark in the epoch they were written are acknowledged.
    fn settle_acks(&mut self) {
        let Some((epoch, hw)) = self.leader_hw() else {
            return;
        };
        let mut still = Vec::new();
        for (e, offset, entry) in self.waiting.drain(..) {
            if e == epoch && offset < hw {
                assert!(
                    self.acked.insert(offset, entry).is_none(),
                    "offset {offset} acknowledged twice"
                );
            } else if e == epoch {
                still.push((e, offset, entry));
            }
            // A write of an earlier epoch that was not acknowledged then never is.
        }
        self.waiting = still;
    }

    fn check(&self, before: Option<(i32, i64)>) {
        if let (Some((e0, hw0)), Some((e1, hw1))) = (before, self.leader_hw())
            && e0 == e1
        {
            assert!(
                hw1 >= hw0,
                "high watermark moved back in epoch {e1}: {hw0} -> {hw1}"
            );
        }
        let leaders: Vec<i32> = self
            .replicas
            .values()
            .filter_map(|r| r.leader.as_ref().map(|l| l.leader_epoch))
            .collect();
        let distinct: BTreeSet<i32> = leaders.iter().copied().collect();
        assert_eq!(leaders.len(), distinct.len(), "two leaders in one epoch");
        if let Some(l) = self.ctl.leader
            && self.replicas[&l].up
            && self.replicas[&l].leader.is_some()
        {
            let log = &self.replicas[&l].log;
            for (offset, entry) in &self.acked {
                assert_eq!(
                    log.get(*offset as usize),
                    Some(entry),
                    "acknowledged write at {offset} lost by leader {l}"
                );
            }
        }
    }

    /// Heals everything and lets replication finish.
    fn heal(&mut self) {
        self.lossy = false;
        for r in REPLICAS {
            if !self.replicas[&r].up {
                self.start_again(r);
            }
        }
        for _ in 0..4000 {
            self.now += 10;
            let before = self.leader_hw();
            self.deliver_or_fetch();
            self.settle_acks();
            self.check(before);
        }
    }
}

#[test]
fn no_acknowledged_write_is_lost_under_crashes_loss_and_reordering() {
    let mut total_acked = 0;
    let mut elections = 0;
    for seed in 0..150u64 {
        let mut sim = Sim::new(seed);
        for _ in 0..2500 {
            sim.step();
        }
        sim.heal();
        total_acked += sim.acked.len();
        elections += sim.leaders_by_epoch.len();
        let leader = sim.ctl.leader.expect("a leader after healing");
        let reference = sim.replicas[&leader].log.clone();
        for r in REPLICAS {
            assert_eq!(
                sim.replicas[&r].log, reference,
                "seed {seed}: replica {r} differs from leader {leader} after healing"
            );
        }
        for (offset, entry) in &sim.acked {
            assert_eq!(reference.get(*offset as usize), Some(entry), "seed {seed}");
        }
    }
    // The runs did something: writes were acknowledged and leaders changed.
    assert!(
        total_acked > 10_000,
        "only {total_acked} acknowledged writes"
    );
    assert!(elections > 150 * 3, "only {elections} elections");
}

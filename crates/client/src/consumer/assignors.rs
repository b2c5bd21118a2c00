//! The classic protocol's client-side assignors: range, roundrobin and cooperative-sticky.
//!
//! They are pure functions of the members' subscriptions (and, for cooperative-sticky, of what
//! each member owns) and the partition counts of the subscribed topics. The group leader runs
//! the one the group agreed on and sends every member its share in SyncGroup.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::TopicPartition;
use super::config::AssignorKind;

/// What one member sent in JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    pub member_id: String,
    /// `group.instance.id` of a static member: members are ordered by it when present, so a
    /// static member that comes back under a new member id gets the same partitions.
    pub instance_id: Option<String>,
    pub topics: Vec<String>,
    /// What the member owns now (cooperative protocol; empty under eager assignors).
    pub owned: Vec<TopicPartition>,
    /// The generation in which it owned them (-1 when unknown).
    pub generation: i32,
}

impl MemberSubscription {
    /// The order assignors deal partitions in: instance id, else member id.
    pub fn order_key(&self) -> (&str, &str) {
        (
            self.instance_id.as_deref().unwrap_or(&self.member_id),
            &self.member_id,
        )
    }
}

/// Member id -> its partitions, sorted.
pub type Assignment = BTreeMap<String, Vec<TopicPartition>>;

/// Runs an assignor. `partitions` gives the partition count of every topic known to exist;
/// subscribed topics that are missing get no assignment. Under cooperative-sticky, partitions
/// that move from one member to another are withheld for this round (see [`cooperative_round`]).
pub fn assign(
    kind: AssignorKind,
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, i32>,
) -> Assignment {
    match kind {
        AssignorKind::Range => range(members, partitions),
        AssignorKind::RoundRobin => round_robin(members, partitions),
        AssignorKind::CooperativeSticky => {
            let target = sticky(members, partitions);
            cooperative_round(members, &target)
        }
    }
}

fn empty_assignment(members: &[MemberSubscription]) -> Assignment {
    members
        .iter()
        .map(|m| (m.member_id.clone(), Vec::new()))
        .collect()
}

/// Range: per topic, the subscribed members in instance id (else member id) order each take a contiguous range;
/// the first `count % members` take one extra.
pub fn range(members: &[MemberSubscription], partitions: &BTreeMap<String, i32>) -> Assignment {
    let mut out = empty_assignment(members);
    let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
    sorted.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    let mut by_topic: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for m in &sorted {
        for t in &m.topics {
            let list = by_topic.entry(t.as_str()).or_default();
            if !list.contains(&m.member_id.as_str()) {
                list.push(m.member_id.as_str());
            }
        }
    }
    for (topic, subscribers) in by_topic {
        let Some(&count) = partitions.get(topic) else {
            continue;
        };
        let n = subscribers.len() as i32;
        let per = count / n;
        let extra = count % n;
        let mut next = 0;
        for (i, member) in subscribers.iter().enumerate() {
            let take = per + i32::from((i as i32) < extra);
            if let Some(list) = out.get_mut(*member) {
                list.extend((next..next + take).map(|p| TopicPartition::new(topic, p)));
            }
            next += take;
        }
    }
    sort_lists(out)
}

/// Roundrobin: every partition in (topic, partition) order goes to the next member in
/// instance id (else member id) order that subscribes to its topic.
pub fn round_robin(
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, i32>,
) -> Assignment {
    let mut out = empty_assignment(members);
    let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
    sorted.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    if sorted.is_empty() {
        return out;
    }
    let subscribed: Vec<BTreeSet<&str>> = sorted
        .iter()
        .map(|m| m.topics.iter().map(String::as_str).collect())
        .collect();
    let mut cursor = 0usize;
    for (topic, &count) in partitions {
        if !subscribed.iter().any(|s| s.contains(topic.as_str())) {
            continue;
        }
        for p in 0..count {
            // Bounded: some member subscribes to this topic.
            for _ in 0..sorted.len() {
                let i = cursor % sorted.len();
                cursor += 1;
                if subscribed[i].contains(topic.as_str()) {
                    if let Some(list) = out.get_mut(&sorted[i].member_id) {
                        list.push(TopicPartition::new(topic, p));
                    }
                    break;
                }
            }
        }
    }
    sort_lists(out)
}

/// The balanced, sticky target assignment: every existing subscribed partition goes to exactly
/// one subscribed member; partitions stay with their current owner unless that unbalances the
/// group (a member holding two or more partitions more than another member that could take one).
pub fn sticky(members: &[MemberSubscription], partitions: &BTreeMap<String, i32>) -> Assignment {
    let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
    sorted.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    let subscribed: HashMap<&str, BTreeSet<&str>> = sorted
        .iter()
        .map(|m| {
            (
                m.member_id.as_str(),
                m.topics.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let exists = |tp: &TopicPartition| {
        partitions
            .get(&tp.topic)
            .is_some_and(|&n| tp.partition >= 0 && tp.partition < n)
    };
    // Previous owners: the claim of the highest generation wins a partition claimed twice.
    let mut owner: BTreeMap<TopicPartition, (&str, i32)> = BTreeMap::new();
    for m in &sorted {
        for tp in &m.owned {
            if !exists(tp) || !subscribed[m.member_id.as_str()].contains(tp.topic.as_str()) {
                continue;
            }
            match owner.get(tp) {
                Some((_, g)) if *g >= m.generation => {}
                _ => {
                    owner.insert(tp.clone(), (m.member_id.as_str(), m.generation));
                }
            }
        }
    }
    let mut out: BTreeMap<&str, BTreeSet<TopicPartition>> = sorted
        .iter()
        .map(|m| (m.member_id.as_str(), BTreeSet::new()))
        .collect();
    for (tp, (m, _)) in &owner {
        if let Some(set) = out.get_mut(m) {
            set.insert(tp.clone());
        }
    }
    // Unowned partitions go to the least loaded member that subscribes to their topic.
    for (topic, &count) in partitions {
        for p in 0..count {
            let tp = TopicPartition::new(topic, p);
            if owner.contains_key(&tp) {
                continue;
            }
            let target = out
                .iter()
                .filter(|(m, _)| subscribed[*m].contains(topic.as_str()))
                .min_by_key(|(m, set)| (set.len(), **m))
                .map(|(m, _)| *m);
            if let Some(m) = target
                && let Some(set) = out.get_mut(m)
            {
                set.insert(tp);
            }
        }
    }
    // Move partitions from the most to the least loaded eligible member while that narrows a
    // gap of two or more. Every move lowers the sum of squared loads, so this ends; the bound
    // is a safeguard.
    let total: usize = out.values().map(BTreeSet::len).sum();
    for _ in 0..=(total * total + 1) {
        let mut best: Option<(&str, &str, TopicPartition)> = None;
        let mut best_gap = 1usize;
        for (from, from_set) in &out {
            for (to, to_set) in &out {
                if from_set.len() <= to_set.len() + 1 {
                    continue;
                }
                let gap = from_set.len() - to_set.len();
                if gap <= best_gap {
                    continue;
                }
                // Move the highest partition the receiver can take (keeps low ones stable).
                if let Some(tp) = from_set
                    .iter()
                    .rev()
                    .find(|tp| subscribed[*to].contains(tp.topic.as_str()))
                {
                    best_gap = gap;
                    best = Some((from, to, tp.clone()));
                }
            }
        }
        let Some((from, to, tp)) = best else {
            break;
        };
        if let Some(s) = out.get_mut(from) {
            s.remove(&tp);
        }
        if let Some(s) = out.get_mut(to) {
            s.insert(tp);
        }
    }
    out.into_iter()
        .map(|(m, set)| (m.to_string(), set.into_iter().collect()))
        .collect()
}

/// One round of incremental cooperative rebalancing toward `target`: a partition that another
/// member owns now is withheld from its new owner until the current owner has given it up (the
/// owner sees it missing, revokes it and rejoins; the next round hands it over).
pub fn cooperative_round(members: &[MemberSubscription], target: &Assignment) -> Assignment {
    let mut owned_by: HashMap<&TopicPartition, &str> = HashMap::new();
    for m in members {
        for tp in &m.owned {
            owned_by.insert(tp, m.member_id.as_str());
        }
    }
    target
        .iter()
        .map(|(member, tps)| {
            let keep = tps
                .iter()
                .filter(|tp| owned_by.get(tp).is_none_or(|o| *o == member.as_str()))
                .cloned()
                .collect();
            (member.clone(), keep)
        })
        .collect()
}

fn sort_lists(mut a: Assignment) -> Assignment {
    for list in a.values_mut() {
        list.sort();
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(id: &str, topics: &[&str], owned: &[(&str, i32)]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_string(),
            instance_id: None,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: owned
                .iter()
                .map(|(t, p)| TopicPartition::new(t, *p))
                .collect(),
            generation: 1,
        }
    }

    fn tps(list: &[(&str, i32)]) -> Vec<TopicPartition> {
        list.iter()
            .map(|(t, p)| TopicPartition::new(t, *p))
            .collect()
    }

    fn counts(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn range_gives_contiguous_ranges_extra_to_the_first() {
        let members = [member("a", &["t"], &[]), member("b", &["t"], &[])];
        let a = range(&members, &counts(&[("t", 5)]));
        assert_eq!(a["a"], tps(&[("t", 0), ("t", 1), ("t", 2)]));
        assert_eq!(a["b"], tps(&[("t", 3), ("t", 4)]));
    }

    #[test]
    fn static_members_are_ordered_by_instance_id() {
        // A static member back under a new member id ("zzz-new") keeps its place ("i0").
        let mut a = member("zzz-new", &["t"], &[]);
        a.instance_id = Some("i0".into());
        let mut b = member("aaa", &["t"], &[]);
        b.instance_id = Some("i1".into());
        let r = range(&[a, b], &counts(&[("t", 4)]));
        assert_eq!(r["zzz-new"], tps(&[("t", 0), ("t", 1)]));
        assert_eq!(r["aaa"], tps(&[("t", 2), ("t", 3)]));
    }

    #[test]
    fn roundrobin_deals_in_turn_and_skips_unsubscribed_members() {
        let members = [member("a", &["t", "u"], &[]), member("b", &["t"], &[])];
        let a = round_robin(&members, &counts(&[("t", 3), ("u", 2)]));
        assert_eq!(a["a"], tps(&[("t", 0), ("t", 2), ("u", 0), ("u", 1)]));
        assert_eq!(a["b"], tps(&[("t", 1)]));
    }

    #[test]
    fn cooperative_sticky_keeps_owners_and_withholds_moves() {
        // a owned everything; b joins: b's share is withheld until a gives it up.
        let all = [("t", 0), ("t", 1), ("t", 2), ("t", 3)];
        let members = [member("a", &["t"], &all), member("b", &["t"], &[])];
        let target = sticky(&members, &counts(&[("t", 4)]));
        assert_eq!(target["a"].len(), 2);
        assert_eq!(target["b"].len(), 2);
        let round = cooperative_round(&members, &target);
        assert_eq!(round["a"], target["a"]);
        assert!(round["b"].is_empty());
        // Next round: a revoked what it lost; b now gets it.
        let members = [
            member(
                "a",
                &["t"],
                &target["a"]
                    .iter()
                    .map(|tp| (tp.topic.as_str(), tp.partition))
                    .collect::<Vec<_>>(),
            ),
            member("b", &["t"], &[]),
        ];
        let round2 = assign(
            AssignorKind::CooperativeSticky,
            &members,
            &counts(&[("t", 4)]),
        );
        assert_eq!(round2["a"], target["a"]);
        assert_eq!(round2["b"], target["b"]);
    }

    fn scenario() -> impl Strategy<Value = (Vec<MemberSubscription>, BTreeMap<String, i32>)> {
        let topics = prop::collection::btree_map("[a-d]", 1i32..7, 1..4);
        (topics, 1usize..6).prop_flat_map(|(topics, n)| {
            let names: Vec<String> = topics.keys().cloned().collect();
            let all: Vec<TopicPartition> = topics
                .iter()
                .flat_map(|(t, &c)| (0..c).map(move |p| TopicPartition::new(t, p)))
                .collect();
            let member = (
                prop::sample::subsequence(names.clone(), 1..=names.len()),
                prop::collection::vec(prop::sample::select(all.clone()), 0..6),
            );
            (Just(topics), prop::collection::vec(member, n)).prop_map(|(topics, ms)| {
                let members = ms
                    .into_iter()
                    .enumerate()
                    .map(|(i, (subs, owned))| MemberSubscription {
                        member_id: format!("m{i}"),
                        instance_id: None,
                        topics: subs,
                        owned,
                        generation: 1,
                    })
                    .collect();
                (members, topics)
            })
        })
    }

    /// Every partition of a subscribed topic goes to exactly one member that subscribes to it.
    fn check_exactly_once(
        members: &[MemberSubscription],
        topics: &BTreeMap<String, i32>,
        a: &Assignment,
    ) {
        let mut seen = BTreeSet::new();
        for (m, list) in a {
            let sub = &members.iter().find(|x| &x.member_id == m).unwrap().topics;
            for tp in list {
                assert!(
                    sub.contains(&tp.topic),
                    "{m} got {tp:?} without subscribing"
                );
                assert!(seen.insert(tp.clone()), "{tp:?} assigned twice");
            }
        }
        for (t, &n) in topics {
            if members.iter().any(|m| m.topics.contains(t)) {
                for p in 0..n {
                    assert!(
                        seen.contains(&TopicPartition::new(t, p)),
                        "{t}-{p} unassigned"
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn every_partition_is_assigned_exactly_once((members, topics) in scenario()) {
            check_exactly_once(&members, &topics, &range(&members, &topics));
            check_exactly_once(&members, &topics, &round_robin(&members, &topics));
            check_exactly_once(&members, &topics, &sticky(&members, &topics));
        }

        #[test]
        fn cooperative_sticky_is_balanced_and_sticky((members, topics) in scenario()) {
            // Same subscriptions for everybody: loads differ by at most one, and a member that
            // owned partitions keeps as many of them as its balanced share allows.
            let subs: Vec<String> = topics.keys().cloned().collect();
            let mut members = members;
            let mut claimed = BTreeSet::new();
            for m in &mut members {
                m.topics = subs.clone();
                m.owned.retain(|tp| claimed.insert(tp.clone()));
            }
            let target = sticky(&members, &topics);
            check_exactly_once(&members, &topics, &target);
            let loads: Vec<usize> = target.values().map(Vec::len).collect();
            let (lo, hi) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "unbalanced: {loads:?}");
            let total: usize = topics.values().map(|&n| n as usize).sum();
            let max_share = total.div_ceil(members.len());
            for m in &members {
                let kept = target[&m.member_id].iter().filter(|tp| m.owned.contains(tp)).count();
                prop_assert!(kept >= m.owned.len().min(max_share.saturating_sub(1)),
                    "{} kept {kept} of {:?}", m.member_id, m.owned);
            }
            // The cooperative round never hands out a partition that another member owns.
            let round = cooperative_round(&members, &target);
            for (m, list) in &round {
                for tp in list {
                    let other = members.iter().any(|x| &x.member_id != m && x.owned.contains(tp));
                    prop_assert!(!other, "{tp:?} given to {m} while owned by another member");
                }
            }
        }
    }
}

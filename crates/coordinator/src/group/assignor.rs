//! Server-side partition assignors of the consumer group protocol (KIP-848): `uniform` and
//! `range`. An assignor maps every member to a set of partitions of the topics it subscribes
//! to; it is pure and deterministic, and it sees the previous target assignment so that it can
//! keep partitions where they are.

use std::collections::{BTreeMap, BTreeSet};

/// Partitions by topic name.
pub type Partitions = BTreeMap<String, BTreeSet<i32>>;

/// What an assignor needs to know of a member.
#[derive(Debug, Clone)]
pub struct AssignorMember {
    pub member_id: String,
    pub subscribed: BTreeSet<String>,
}

/// The assignors strom knows, by the names clients and `group.consumer.assignors` use.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// The short name of an assignor given by its short name or by the class name Kafka uses.
pub fn normalize(name: &str) -> Option<&'static str> {
    let short = name.rsplit('.').next().unwrap_or(name).to_ascii_lowercase();
    match short.as_str() {
        "uniform" | "uniformassignor" => Some("uniform"),
        "range" | "rangeassignor" => Some("range"),
        _ => None,
    }
}

/// Runs the named assignor. `topics` gives the partition count of every existing topic that
/// some member subscribes to; `previous` is the current target assignment by member.
pub fn assign(
    assignor: &str,
    members: &[AssignorMember],
    topics: &BTreeMap<String, i32>,
    previous: &BTreeMap<String, Partitions>,
) -> BTreeMap<String, Partitions> {
    match assignor {
        "range" => range(members, topics),
        _ => uniform(members, topics, previous),
    }
}

fn count(p: &Partitions) -> usize {
    p.values().map(|s| s.len()).sum()
}

/// Spreads partitions so that member partition counts differ by at most one among members
/// able to take them, keeping every partition that may stay with its previous owner.
pub fn uniform(
    members: &[AssignorMember],
    topics: &BTreeMap<String, i32>,
    previous: &BTreeMap<String, Partitions>,
) -> BTreeMap<String, Partitions> {
    let mut out: BTreeMap<String, Partitions> = members
        .iter()
        .map(|m| (m.member_id.clone(), Partitions::new()))
        .collect();
    if members.is_empty() {
        return out;
    }
    let subscribed: BTreeMap<&str, &BTreeSet<String>> = members
        .iter()
        .map(|m| (m.member_id.as_str(), &m.subscribed))
        .collect();
    // Keep what still fits: the partition exists, the member still subscribes, nobody kept it.
    let mut taken: BTreeSet<(String, i32)> = BTreeSet::new();
    for (member, parts) in previous {
        let Some(subs) = subscribed.get(member.as_str()) else {
            continue;
        };
        for (topic, ps) in parts {
            let Some(&n) = topics.get(topic) else {
                continue;
            };
            if !subs.contains(topic) {
                continue;
            }
            for &p in ps {
                if p < n && taken.insert((topic.clone(), p)) {
                    out.get_mut(member)
                        .expect("member listed")
                        .entry(topic.clone())
                        .or_default()
                        .insert(p);
                }
            }
        }
    }
    let mut counts: BTreeMap<String, usize> =
        out.iter().map(|(id, p)| (id.clone(), count(p))).collect();
    // Give every free partition to the least loaded member that subscribes to its topic.
    for (topic, &n) in topics {
        let eligible: Vec<&str> = members
            .iter()
            .filter(|m| m.subscribed.contains(topic))
            .map(|m| m.member_id.as_str())
            .collect();
        for p in 0..n {
            if taken.contains(&(topic.clone(), p)) {
                continue;
            }
            let target = eligible.iter().min_by_key(|id| (counts[**id], **id));
            if let Some(id) = target {
                out.get_mut(*id)
                    .expect("member listed")
                    .entry(topic.clone())
                    .or_default()
                    .insert(p);
                *counts.get_mut(*id).expect("member listed") += 1;
                taken.insert((topic.clone(), p));
            }
        }
    }
    // Move partitions from the most loaded members to eligible members with at least two
    // fewer, until no such move exists. Each move lowers the sum of squared counts, so this
    // ends; the bound is a guard.
    let limit = taken.len() * members.len() + 1;
    for _ in 0..limit {
        let mut moved = false;
        let mut by_load: Vec<(usize, String)> =
            counts.iter().map(|(id, c)| (*c, id.clone())).collect();
        by_load.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        'outer: for (load, from) in &by_load {
            let candidates: Vec<(String, i32)> = out[from]
                .iter()
                .rev()
                .flat_map(|(t, ps)| ps.iter().rev().map(move |p| (t.clone(), *p)))
                .collect();
            for (topic, p) in candidates {
                let to = members
                    .iter()
                    .filter(|m| m.member_id != *from && m.subscribed.contains(&topic))
                    .map(|m| (counts[&m.member_id], m.member_id.clone()))
                    .filter(|(c, _)| c + 2 <= *load)
                    .min();
                if let Some((_, to)) = to {
                    let src = out.get_mut(from).expect("member listed");
                    if let Some(set) = src.get_mut(&topic) {
                        set.remove(&p);
                        if set.is_empty() {
                            src.remove(&topic);
                        }
                    }
                    out.get_mut(&to)
                        .expect("member listed")
                        .entry(topic)
                        .or_default()
                        .insert(p);
                    *counts.get_mut(from).expect("member listed") -= 1;
                    *counts.get_mut(&to).expect("member listed") += 1;
                    moved = true;
                    break 'outer;
                }
            }
        }
        if !moved {
            break;
        }
    }
    out
}

/// Per topic, contiguous ranges of partitions to the subscribed members in member id order;
/// the first `partitions % members` members get one more.
pub fn range(
    members: &[AssignorMember],
    topics: &BTreeMap<String, i32>,
) -> BTreeMap<String, Partitions> {
    let mut out: BTreeMap<String, Partitions> = members
        .iter()
        .map(|m| (m.member_id.clone(), Partitions::new()))
        .collect();
    for (topic, &n) in topics {
        let mut subs: Vec<&str> = members
            .iter()
            .filter(|m| m.subscribed.contains(topic))
            .map(|m| m.member_id.as_str())
            .collect();
        if subs.is_empty() || n <= 0 {
            continue;
        }
        subs.sort_unstable();
        let per = n as usize / subs.len();
        let extra = n as usize % subs.len();
        let mut next = 0i32;
        for (i, m) in subs.iter().enumerate() {
            let take = per + usize::from(i < extra);
            if take == 0 {
                continue;
            }
            let set: BTreeSet<i32> = (next..next + take as i32).collect();
            next += take as i32;
            out.get_mut(*m)
                .expect("member listed")
                .insert(topic.clone(), set);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str]) -> AssignorMember {
        AssignorMember {
            member_id: id.into(),
            subscribed: topics.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn all(a: &BTreeMap<String, Partitions>) -> Vec<(String, i32)> {
        let mut v: Vec<(String, i32)> = a
            .values()
            .flat_map(|p| {
                p.iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |x| (t.clone(), *x)))
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn uniform_balances_and_covers_every_partition_once() {
        let members = vec![
            member("a", &["t"]),
            member("b", &["t"]),
            member("c", &["t"]),
        ];
        let topics: BTreeMap<String, i32> = [("t".to_string(), 7)].into();
        let a = uniform(&members, &topics, &BTreeMap::new());
        let counts: Vec<usize> = a.values().map(count).collect();
        assert_eq!(counts.iter().sum::<usize>(), 7);
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
        assert_eq!(
            all(&a),
            (0..7).map(|p| ("t".to_string(), p)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn uniform_is_sticky_when_a_member_joins_or_leaves() {
        let topics: BTreeMap<String, i32> = [("t".to_string(), 6)].into();
        let two = vec![member("a", &["t"]), member("b", &["t"])];
        let first = uniform(&two, &topics, &BTreeMap::new());
        let three = vec![
            member("a", &["t"]),
            member("b", &["t"]),
            member("c", &["t"]),
        ];
        let second = uniform(&three, &topics, &first);
        // Every member has two; a and b kept two of their three each.
        for m in ["a", "b", "c"] {
            assert_eq!(count(&second[m]), 2, "{second:?}");
        }
        for m in ["a", "b"] {
            assert!(second[m]["t"].is_subset(&first[m]["t"]));
        }
        // c leaves: a and b keep theirs and share c's.
        let third = uniform(&two, &topics, &second);
        for m in ["a", "b"] {
            assert_eq!(count(&third[m]), 3);
            assert!(second[m]["t"].is_subset(&third[m]["t"]));
        }
    }

    #[test]
    fn uniform_respects_heterogeneous_subscriptions() {
        let members = vec![member("a", &["x"]), member("b", &["x", "y"])];
        let topics: BTreeMap<String, i32> = [("x".to_string(), 2), ("y".to_string(), 4)].into();
        let a = uniform(&members, &topics, &BTreeMap::new());
        assert!(!a["a"].contains_key("y"));
        assert_eq!(all(&a).len(), 6);
        assert_eq!(count(&a["a"]), 2, "a takes all of x, b all of y: {a:?}");
    }

    #[test]
    fn uniform_drops_partitions_of_vanished_topics_and_unsubscribed_members() {
        let members = vec![member("a", &["t"])];
        let topics: BTreeMap<String, i32> = [("t".to_string(), 2)].into();
        let previous: BTreeMap<String, Partitions> = [
            (
                "a".to_string(),
                [
                    ("t".to_string(), [0, 1, 5].into()),
                    ("gone".to_string(), [0].into()),
                ]
                .into(),
            ),
            ("old".to_string(), [("t".to_string(), [1].into())].into()),
        ]
        .into();
        let a = uniform(&members, &topics, &previous);
        assert_eq!(a.len(), 1);
        assert_eq!(all(&a), vec![("t".into(), 0), ("t".into(), 1)]);
    }

    #[test]
    fn uniform_scales_to_large_groups() {
        let members: Vec<AssignorMember> = (0..200)
            .map(|i| member(&format!("m{i:03}"), &["a", "b"]))
            .collect();
        let topics: BTreeMap<String, i32> =
            [("a".to_string(), 1000), ("b".to_string(), 999)].into();
        let start = std::time::Instant::now();
        let first = uniform(&members[..150], &topics, &BTreeMap::new());
        let second = uniform(&members, &topics, &first);
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        let counts: Vec<usize> = second.values().map(count).collect();
        assert_eq!(counts.iter().sum::<usize>(), 1999);
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
        // Sticky: the first 150 members only lost partitions, never gained any.
        for (id, parts) in &first {
            let kept = &second[id];
            assert!(
                kept.iter()
                    .all(|(t, ps)| parts.get(t).is_some_and(|q| ps.is_subset(q))),
                "{id} gained partitions"
            );
        }
    }

    #[test]
    fn range_gives_contiguous_ranges_in_member_order() {
        let members = vec![
            member("m2", &["t", "u"]),
            member("m1", &["t", "u"]),
            member("m3", &["t"]),
        ];
        let topics: BTreeMap<String, i32> = [("t".to_string(), 7), ("u".to_string(), 3)].into();
        let a = range(&members, &topics);
        assert_eq!(a["m1"]["t"], [0, 1, 2].into());
        assert_eq!(a["m2"]["t"], [3, 4].into());
        assert_eq!(a["m3"]["t"], [5, 6].into());
        assert_eq!(a["m1"]["u"], [0, 1].into());
        assert_eq!(a["m2"]["u"], [2].into());
        assert!(!a["m3"].contains_key("u"));
        assert_eq!(
            normalize("org.apache.kafka.coordinator.group.assignor.RangeAssignor"),
            Some("range")
        );
        assert_eq!(normalize("uniform"), Some("uniform"));
        assert_eq!(normalize("sticky"), None);
    }
}

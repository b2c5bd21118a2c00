//! The active controller's decisions: pure functions of the metadata image that return the
//! records of a change (elections, fencing, reassignments, ISR changes). A change of a
//! partition carries the next partition epoch, and the quorum leader refuses it if the
//! partition changed meanwhile; `next_record` is the one constructor of partition changes
//! and asserts that a leader is only ever elected from the ISR.

use std::collections::BTreeSet;

use strom_metadata::{MetadataImage, MetadataRecord, TopicInfo};

use crate::config::BrokerConfig;
use crate::replica_manager::Partition;
use crate::replication::IsrChange;

pub(super) fn unclean_allowed(config: &BrokerConfig, topic: &TopicInfo) -> bool {
    config
        .topic_value(&topic.configs, "unclean.leader.election.enable")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn is_live(image: &MetadataImage, broker: i32) -> bool {
    image.brokers.get(&broker).is_some_and(|b| !b.fenced)
}

/// The record that moves partition `p` to a new state: the next partition epoch, and the next
/// leader epoch when the leader changes.
fn next_record(
    topic_id: strom_metadata::Uuid,
    p: &strom_metadata::PartitionInfo,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    leader: i32,
    adding: Vec<i32>,
    removing: Vec<i32>,
) -> MetadataRecord {
    // Every partition change the controller decides passes here: a leader is only ever elected
    // from the in-sync replicas (so the ISR is never empty while a leader is elected from it).
    // Every caller picks the leader among `isr`; a violation is a controller bug that would let
    // a replica missing acknowledged records lead, so it stops the process.
    assert!(
        leader < 0 || (isr.contains(&leader) && replicas.contains(&leader)),
        "controller invariant: partition {} would be led by {leader}, outside its ISR {isr:?} or replicas {replicas:?}",
        p.partition
    );
    MetadataRecord::Partition {
        topic_id,
        partition: p.partition,
        replicas,
        isr,
        leader,
        leader_epoch: if leader != p.leader {
            p.leader_epoch + 1
        } else {
            p.leader_epoch
        },
        partition_epoch: p.partition_epoch + 1,
        adding,
        removing,
    }
}

/// A partition record for a changed leader or ISR, replicas unchanged.
fn changed(
    topic: &TopicInfo,
    p: &strom_metadata::PartitionInfo,
    leader: i32,
    isr: Vec<i32>,
) -> MetadataRecord {
    next_record(
        topic.topic_id,
        p,
        p.replicas.clone(),
        isr,
        leader,
        p.adding.clone(),
        p.removing.clone(),
    )
}

/// Picks a leader among `p`'s live in-sync replicas (in replica order), or among any live
/// replica when an unclean election is allowed; returns (leader, ISR).
fn elect(
    image: &MetadataImage,
    p: &strom_metadata::PartitionInfo,
    isr: &[i32],
    unclean: bool,
    excluded: i32,
) -> Option<(i32, Vec<i32>)> {
    let usable = |r: i32| r != excluded && is_live(image, r);
    if let Some(l) = p
        .replicas
        .iter()
        .copied()
        .find(|r| isr.contains(r) && usable(*r))
    {
        return Some((l, isr.to_vec()));
    }
    if unclean {
        return p
            .replicas
            .iter()
            .copied()
            .find(|r| usable(*r))
            .map(|l| (l, vec![l]));
    }
    None
}

/// Fences `broker_id`: it leaves every ISR it is in (unless it is the last member), and each
/// partition it led gets a new leader from the rest of the ISR, or none.
pub fn fence_records(
    image: &MetadataImage,
    broker_id: i32,
    unclean: impl Fn(&TopicInfo) -> bool,
) -> Vec<MetadataRecord> {
    let mut out = vec![MetadataRecord::FenceBroker { broker_id }];
    for topic in image.topics.values() {
        for p in &topic.partitions {
            if !p.replicas.contains(&broker_id) {
                continue;
            }
            let rest: Vec<i32> = p.isr.iter().copied().filter(|r| *r != broker_id).collect();
            if p.leader == broker_id {
                match elect(image, p, &rest, unclean(topic), broker_id) {
                    Some((leader, isr)) => out.push(changed(topic, p, leader, isr)),
                    // No one else may lead: the partition is offline, and the ISR keeps who
                    // may lead when it returns.
                    None => out.push(changed(topic, p, -1, p.isr.clone())),
                }
            } else if p.isr.contains(&broker_id) && !rest.is_empty() {
                out.push(changed(topic, p, p.leader, rest));
            }
        }
    }
    out
}

/// Elects leaders for partitions that have none (or whose leader is fenced) where a live
/// replica may lead.
pub fn elect_offline(
    image: &MetadataImage,
    unclean: impl Fn(&TopicInfo) -> bool,
) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for topic in image.topics.values() {
        for p in &topic.partitions {
            if p.leader >= 0 && is_live(image, p.leader) {
                continue;
            }
            if let Some((leader, isr)) = elect(image, p, &p.isr, unclean(topic), -1) {
                out.push(changed(topic, p, leader, isr));
            }
        }
    }
    out
}

/// The record that starts moving `p` to `target` replicas (AlterPartitionReassignments): the
/// replica set becomes target + the replicas leaving, the new ones catch up as followers, and
/// [`complete_reassignments`] finishes once they are all in the ISR. A reassignment already
/// in progress is replaced, starting from the replicas it began with.
pub fn reassign_record(
    image: &MetadataImage,
    topic: &TopicInfo,
    p: &strom_metadata::PartitionInfo,
    target: &[i32],
) -> Result<MetadataRecord, (i16, String)> {
    use strom_protocol::error_code as ec;
    let mut seen = BTreeSet::new();
    if target.is_empty() || !target.iter().all(|r| seen.insert(*r)) {
        return Err((
            ec::INVALID_REPLICA_ASSIGNMENT,
            format!("replicas {target:?} must be distinct and not empty"),
        ));
    }
    if let Some(r) = target.iter().find(|r| !image.brokers.contains_key(r)) {
        return Err((
            ec::INVALID_REPLICA_ASSIGNMENT,
            format!("broker {r} is not registered"),
        ));
    }
    let original = original_replicas(p);
    let adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|r| !original.contains(r))
        .collect();
    let removing: Vec<i32> = original
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    let mut replicas = target.to_vec();
    replicas.extend(removing.iter().copied());
    // Replicas of an abandoned earlier target leave the ISR.
    let isr: Vec<i32> = p
        .isr
        .iter()
        .copied()
        .filter(|r| replicas.contains(r))
        .collect();
    Ok(finish_if_ready(
        image, topic, p, replicas, isr, adding, removing,
    ))
}

/// The replicas `p` had before the reassignment in progress (its replicas without those being
/// added).
fn original_replicas(p: &strom_metadata::PartitionInfo) -> Vec<i32> {
    p.replicas
        .iter()
        .copied()
        .filter(|r| !p.adding.contains(r))
        .collect()
}

/// Cancels the reassignment of `p`: back to the replicas it started with.
pub fn cancel_record(
    image: &MetadataImage,
    topic: &TopicInfo,
    p: &strom_metadata::PartitionInfo,
) -> Result<MetadataRecord, (i16, String)> {
    if p.adding.is_empty() && p.removing.is_empty() {
        return Err((
            strom_protocol::error_code::NO_REASSIGNMENT_IN_PROGRESS,
            format!(
                "no reassignment of {}-{} is in progress",
                topic.name, p.partition
            ),
        ));
    }
    let original = original_replicas(p);
    let isr: Vec<i32> = p
        .isr
        .iter()
        .copied()
        .filter(|r| original.contains(r))
        .collect();
    Ok(finish_if_ready(
        image,
        topic,
        p,
        original,
        isr,
        Vec::new(),
        Vec::new(),
    ))
}

/// A partition record with these replicas: when nothing is being added any more, the
/// replicas being removed go, and the leader moves into the remaining ISR if it was leaving.
fn finish_if_ready(
    image: &MetadataImage,
    topic: &TopicInfo,
    p: &strom_metadata::PartitionInfo,
    mut replicas: Vec<i32>,
    mut isr: Vec<i32>,
    adding: Vec<i32>,
    mut removing: Vec<i32>,
) -> MetadataRecord {
    let adding_in_sync = adding.iter().all(|r| isr.contains(r));
    if adding_in_sync {
        replicas.retain(|r| !removing.contains(r));
        let kept: Vec<i32> = isr
            .iter()
            .copied()
            .filter(|r| replicas.contains(r))
            .collect();
        if !kept.is_empty() {
            isr = kept;
        }
        removing.clear();
    }
    let mut leader = p.leader;
    if !replicas.contains(&leader) || !isr.contains(&leader) || !is_live(image, leader) {
        leader = replicas
            .iter()
            .copied()
            .find(|r| isr.contains(r) && is_live(image, *r))
            .unwrap_or(-1);
    }
    let adding = if adding_in_sync { Vec::new() } else { adding };
    next_record(topic.topic_id, p, replicas, isr, leader, adding, removing)
}

/// Finishes the reassignments whose new replicas have all joined the ISR.
pub fn complete_reassignments(image: &MetadataImage) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for topic in image.topics.values() {
        for p in &topic.partitions {
            if (p.adding.is_empty() && p.removing.is_empty())
                || !p.adding.iter().all(|r| p.isr.contains(r))
            {
                continue;
            }
            out.push(finish_if_ready(
                image,
                topic,
                p,
                p.replicas.clone(),
                p.isr.clone(),
                p.adding.clone(),
                p.removing.clone(),
            ));
        }
    }
    out
}

/// A leader election asked for by ElectLeaders: preferred (the first replica, if it is live
/// and in sync) or unclean (any live replica, only for a partition without a leader).
pub fn elect_record(
    image: &MetadataImage,
    topic: &TopicInfo,
    p: &strom_metadata::PartitionInfo,
    unclean: bool,
) -> Result<MetadataRecord, (i16, String)> {
    use strom_protocol::error_code as ec;
    let name = format!("{}-{}", topic.name, p.partition);
    if unclean {
        if p.leader >= 0 && is_live(image, p.leader) {
            return Err((ec::ELECTION_NOT_NEEDED, format!("{name} has a leader")));
        }
        return match elect(image, p, &p.isr, true, -1) {
            Some((leader, isr)) => Ok(changed(topic, p, leader, isr)),
            None => Err((
                ec::ELIGIBLE_LEADERS_NOT_AVAILABLE,
                format!("no replica of {name} is alive"),
            )),
        };
    }
    let preferred = p.target_replicas().first().copied().unwrap_or(-1);
    if p.leader == preferred {
        return Err((
            ec::ELECTION_NOT_NEEDED,
            format!("{name} is led by its preferred replica"),
        ));
    }
    if !p.isr.contains(&preferred) || !is_live(image, preferred) {
        return Err((
            ec::PREFERRED_LEADER_NOT_AVAILABLE,
            format!("preferred replica {preferred} of {name} is not alive and in sync"),
        ));
    }
    Ok(changed(topic, p, preferred, p.isr.clone()))
}

/// Preferred leader elections for every partition whose preferred replica can lead and does
/// not (`auto.leader.rebalance.enable`).
pub fn preferred_elections(image: &MetadataImage) -> Vec<MetadataRecord> {
    image
        .topics
        .values()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter_map(move |p| elect_record(image, t, p, false).ok())
        })
        .collect()
}

/// The partition record of an ISR change, or None when the partition's state in `image` is no
/// longer the one the change was based on (another leader epoch or partition epoch).
pub fn isr_record(
    image: &MetadataImage,
    node_id: i32,
    p: &Partition,
    change: &IsrChange,
) -> Option<MetadataRecord> {
    let info = image.partition(&p.topic_id, p.index).filter(|i| {
        i.leader == node_id
            && i.leader_epoch == change.leader_epoch
            && i.partition_epoch == change.partition_epoch
    })?;
    let isr: Vec<i32> = info
        .replicas
        .iter()
        .copied()
        .filter(|r| change.new_isr.contains(r))
        .collect();
    Some(next_record(
        p.topic_id,
        info,
        info.replicas.clone(),
        isr,
        node_id,
        info.adding.clone(),
        info.removing.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_metadata::Uuid;

    fn image(fenced: &[i32], partitions: &[(i32, &[i32], &[i32])]) -> MetadataImage {
        let mut img = MetadataImage::default();
        for b in 1..=3 {
            img.apply(&MetadataRecord::RegisterBroker {
                broker_id: b,
                host: "h".into(),
                port: 1,
                rack: None,
            });
        }
        for b in fenced {
            img.apply(&MetadataRecord::FenceBroker { broker_id: *b });
        }
        let id = Uuid::from_u128(1);
        img.apply(&MetadataRecord::Topic {
            name: "t".into(),
            topic_id: id,
        });
        for (i, (leader, replicas, isr)) in partitions.iter().enumerate() {
            img.apply(&MetadataRecord::Partition {
                topic_id: id,
                partition: i as i32,
                replicas: replicas.to_vec(),
                isr: isr.to_vec(),
                leader: *leader,
                leader_epoch: 4,
                partition_epoch: 7,
                adding: vec![],
                removing: vec![],
            });
        }
        img
    }

    fn partition(r: &MetadataRecord) -> (i32, Vec<i32>, i32, i32) {
        match r {
            MetadataRecord::Partition {
                leader,
                isr,
                leader_epoch,
                partition_epoch,
                ..
            } => (*leader, isr.clone(), *leader_epoch, *partition_epoch),
            other => panic!("not a partition record: {other:?}"),
        }
    }

    #[test]
    #[should_panic(expected = "outside its ISR")]
    fn a_leader_outside_the_isr_is_refused() {
        let p = strom_metadata::PartitionInfo {
            partition: 0,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2],
            leader: 1,
            leader_epoch: 4,
            partition_epoch: 7,
            adding: vec![],
            removing: vec![],
        };
        next_record(
            strom_metadata::Uuid::nil(),
            &p,
            p.replicas.clone(),
            vec![1, 2],
            3,
            vec![],
            vec![],
        );
    }

    #[test]
    fn fencing_a_leader_elects_from_the_isr_and_shrinks_other_isrs() {
        let img = image(
            &[],
            &[
                (1, &[1, 2, 3], &[1, 2, 3]),
                (2, &[2, 1, 3], &[2, 1]),
                (2, &[2, 3], &[2, 3]),
                (1, &[1, 3], &[1]),
            ],
        );
        let records = fence_records(&img, 1, |_| false);
        assert_eq!(records[0], MetadataRecord::FenceBroker { broker_id: 1 });
        // p0: 2 takes over, with the next epochs.
        assert_eq!(partition(&records[1]), (2, vec![2, 3], 5, 8));
        // p1: 1 leaves the ISR, the leader stays.
        assert_eq!(partition(&records[2]), (2, vec![2], 4, 8));
        // p3: 1 was the only in-sync replica: no leader, ISR kept.
        assert_eq!(partition(&records[3]), (-1, vec![1], 5, 8));
        assert_eq!(records.len(), 4);
        // Unclean election takes the out-of-sync replica.
        let records = fence_records(&img, 1, |_| true);
        assert_eq!(partition(&records[3]), (3, vec![3], 5, 8));
        // Every record applies after the image.
        img.validate(&fence_records(&img, 1, |_| false)).unwrap();
    }

    #[test]
    fn offline_partitions_get_a_leader_when_an_isr_member_returns() {
        let img = image(
            &[3],
            &[(-1, &[1, 3], &[1]), (-1, &[3], &[3]), (2, &[2], &[2])],
        );
        let records = elect_offline(&img, |_| false);
        assert_eq!(records.len(), 1);
        assert_eq!(partition(&records[0]), (1, vec![1], 5, 8));
    }

    #[test]
    fn a_reassignment_adds_first_and_removes_once_the_new_replicas_are_in_sync() {
        let mut img = image(&[], &[(1, &[1, 2, 3], &[1, 2, 3])]);
        img.apply(&MetadataRecord::RegisterBroker {
            broker_id: 4,
            host: "h".into(),
            port: 1,
            rack: None,
        });
        let topic = img.topic("t").unwrap().clone();
        let p = topic.partitions[0].clone();
        let start = reassign_record(&img, &topic, &p, &[2, 3, 4]).unwrap();
        img.validate(std::slice::from_ref(&start)).unwrap();
        img.apply(&start);
        let p = &img.topic("t").unwrap().partitions[0];
        assert_eq!(
            (
                p.replicas.clone(),
                p.adding.clone(),
                p.removing.clone(),
                p.leader
            ),
            (vec![2, 3, 4, 1], vec![4], vec![1], 1)
        );
        // Not done until 4 is in sync.
        assert!(complete_reassignments(&img).is_empty());
        let mut joined = p.clone();
        joined.isr = vec![1, 2, 3, 4];
        joined.partition_epoch += 1;
        img.apply(&MetadataRecord::Partition {
            topic_id: topic.topic_id,
            partition: 0,
            replicas: joined.replicas.clone(),
            isr: joined.isr.clone(),
            leader: 1,
            leader_epoch: joined.leader_epoch,
            partition_epoch: joined.partition_epoch,
            adding: joined.adding.clone(),
            removing: joined.removing.clone(),
        });
        let done = complete_reassignments(&img);
        assert_eq!(done.len(), 1);
        img.apply(&done[0]);
        let p = &img.topic("t").unwrap().partitions[0];
        assert_eq!(p.replicas, vec![2, 3, 4]);
        assert_eq!(p.isr, vec![2, 3, 4]);
        // The leader was leaving: the first in-sync target replica takes over.
        assert_eq!((p.leader, p.leader_epoch), (2, 5));
        assert!(p.adding.is_empty() && p.removing.is_empty());
        // Errors: unknown broker, duplicates; cancelling with nothing in progress.
        assert!(reassign_record(&img, &topic, p, &[2, 9]).is_err());
        assert!(reassign_record(&img, &topic, p, &[2, 2]).is_err());
        assert!(cancel_record(&img, &topic, p).is_err());
    }

    #[test]
    fn preferred_election_needs_the_first_replica_alive_and_in_sync() {
        let img = image(
            &[3],
            &[
                (2, &[1, 2], &[1, 2]),
                (2, &[3, 2], &[3, 2]),
                (1, &[1], &[1]),
            ],
        );
        let records = preferred_elections(&img);
        assert_eq!(records.len(), 1);
        assert_eq!(partition(&records[0]), (1, vec![1, 2], 5, 8));
    }
}

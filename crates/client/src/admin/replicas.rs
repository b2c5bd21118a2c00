//! Replica placement admin: partition reassignments (AlterPartitionReassignments,
//! ListPartitionReassignments) and leader elections (ElectLeaders).

use strom_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use strom_protocol::messages::elect_leaders_request::TopicPartitions;
use strom_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ElectLeadersRequest,
    ListPartitionReassignmentsRequest, TopicName,
};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, str_bytes};

use super::groups::unexpected;
use super::{Admin, Route};
use crate::error::{ClientError, check_resource as check};

/// A partition whose replicas are moving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

/// Per-partition outcome of an admin request.
pub type PartitionOutcome = (String, i32, Result<(), ClientError>);

fn outcome(topic: &str, partition: i32, code: i16, message: Option<&str>) -> PartitionOutcome {
    let subject = format!("partition {partition} of topic {topic:?}");
    (topic.to_string(), partition, check(code, &subject, message))
}

impl Admin {
    /// Moves each (topic, partition) to its replicas, or cancels its move (`None`).
    pub async fn alter_partition_reassignments(
        &self,
        moves: &[(String, i32, Option<Vec<i32>>)],
    ) -> Result<Vec<PartitionOutcome>, ClientError> {
        let (_, response) = self
            .send(
                Route::Controller,
                ApiKey::AlterPartitionReassignments,
                0,
                |_| {
                    let mut topics: Vec<ReassignableTopic> = Vec::new();
                    for (topic, partition, replicas) in moves {
                        let p = ReassignablePartition::default()
                            .with_partition_index(*partition)
                            .with_replicas(
                                replicas
                                    .as_ref()
                                    .map(|r| r.iter().map(|b| BrokerId(*b)).collect()),
                            );
                        match topics.iter_mut().find(|t| t.name.as_str() == topic) {
                            Some(t) => t.partitions.push(p),
                            None => topics.push(
                                ReassignableTopic::default()
                                    .with_name(TopicName(str_bytes(topic.clone())))
                                    .with_partitions(vec![p]),
                            ),
                        }
                    }
                    let mut req = AlterPartitionReassignmentsRequest::default();
                    req.timeout_ms = 60_000;
                    req.topics = topics;
                    Ok(RequestKind::AlterPartitionReassignments(req))
                },
            )
            .await?;
        let ResponseKind::AlterPartitionReassignments(r) = response else {
            return Err(unexpected("AlterPartitionReassignments"));
        };
        check(r.error_code, "the reassignment", r.error_message.as_deref())?;
        Ok(r.responses
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    outcome(
                        t.name.as_str(),
                        p.partition_index,
                        p.error_code,
                        p.error_message.as_deref(),
                    )
                })
            })
            .collect())
    }

    /// The reassignments in progress.
    pub async fn list_partition_reassignments(&self) -> Result<Vec<Reassignment>, ClientError> {
        let (_, response) = self
            .send(
                Route::Controller,
                ApiKey::ListPartitionReassignments,
                0,
                |_| {
                    let mut req = ListPartitionReassignmentsRequest::default();
                    req.timeout_ms = 30_000;
                    req.topics = None;
                    Ok(RequestKind::ListPartitionReassignments(req))
                },
            )
            .await?;
        let ResponseKind::ListPartitionReassignments(r) = response else {
            return Err(unexpected("ListPartitionReassignments"));
        };
        check(r.error_code, "reassignments", r.error_message.as_deref())?;
        let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
        Ok(r.topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| Reassignment {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    replicas: ids(&p.replicas),
                    adding: ids(&p.adding_replicas),
                    removing: ids(&p.removing_replicas),
                })
            })
            .collect())
    }

    /// Elects leaders: preferred (the first replica) or unclean, of the partitions named or of
    /// every partition (`None`: only the partitions whose leader changed are reported).
    pub async fn elect_leaders(
        &self,
        unclean: bool,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<PartitionOutcome>, ClientError> {
        let (_, response) = self
            .send(Route::Controller, ApiKey::ElectLeaders, 2, |version| {
                if unclean && version < 1 {
                    return Err(ClientError::InvalidArgument(
                        "the broker does not support unclean elections".into(),
                    ));
                }
                let mut req = ElectLeadersRequest::default();
                req.election_type = i8::from(unclean);
                req.timeout_ms = 60_000;
                req.topic_partitions = partitions.map(|ps| {
                    let mut out: Vec<TopicPartitions> = Vec::new();
                    for (topic, p) in ps {
                        match out.iter_mut().find(|t| t.topic.as_str() == topic) {
                            Some(t) => t.partitions.push(*p),
                            None => out.push(
                                TopicPartitions::default()
                                    .with_topic(TopicName(str_bytes(topic.clone())))
                                    .with_partitions(vec![*p]),
                            ),
                        }
                    }
                    out
                });
                Ok(RequestKind::ElectLeaders(req))
            })
            .await?;
        let ResponseKind::ElectLeaders(r) = response else {
            return Err(unexpected("ElectLeaders"));
        };
        check(r.error_code, "the election", None)?;
        Ok(r.replica_election_results
            .iter()
            .flat_map(|t| {
                t.partition_result.iter().map(|p| {
                    outcome(
                        t.topic.as_str(),
                        p.partition_id,
                        p.error_code,
                        p.error_message.as_deref(),
                    )
                })
            })
            .collect())
    }
}

//! Cluster description: the calls behind `strom cluster describe|quorum` (DescribeCluster and
//! DescribeQuorum), as Kafka's AdminClient makes them.

use strom_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use strom_protocol::messages::{DescribeClusterRequest, DescribeQuorumRequest, TopicName};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, str_bytes};

use crate::client::BrokerMetadata;
use crate::error::{ClientError, check};
use crate::groups::{GroupAdmin, host_port, unexpected};

/// The highest version of each cluster API this client speaks.
pub mod cluster_versions {
    pub const DESCRIBE_CLUSTER: i16 = 2;
    pub const DESCRIBE_QUORUM: i16 = 2;
}

/// The topic of the metadata log, the one partition DescribeQuorum describes.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// DescribeCluster endpoint type of brokers.
const ENDPOINT_TYPE_BROKERS: i8 = 1;

/// What DescribeCluster reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: String,
    /// The active controller, -1 when unknown (an election).
    pub controller_id: i32,
    /// Sorted by id.
    pub brokers: Vec<BrokerMetadata>,
    /// Ids of the fenced brokers among them (asked for with DescribeCluster v2).
    pub fenced: Vec<i32>,
}

/// One member of the metadata quorum as DescribeQuorum reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumReplica {
    pub id: i32,
    /// -1 when the answering member does not know it.
    pub log_end_offset: i64,
    /// Milliseconds since the epoch, -1 when unknown (v1+).
    pub last_fetch_timestamp: i64,
    /// Milliseconds since the epoch, -1 when unknown (v1+).
    pub last_caught_up_timestamp: i64,
}

/// What DescribeQuorum reports of the metadata partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    /// -1 when no leader is known.
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    /// Sorted by id.
    pub voters: Vec<QuorumReplica>,
    pub observers: Vec<QuorumReplica>,
    /// The broker (`host:port`) that answered.
    pub answered_by: String,
}

impl QuorumDescription {
    /// The leader's log end offset, when the answer has it.
    pub fn leader_log_end_offset(&self) -> Option<i64> {
        self.voters
            .iter()
            .find(|v| v.id == self.leader_id && v.log_end_offset >= 0)
            .map(|v| v.log_end_offset)
    }

    /// How many records `replica` is behind the leader, when both ends are known.
    pub fn lag(&self, replica: &QuorumReplica) -> Option<i64> {
        let leader = self.leader_log_end_offset()?;
        (replica.log_end_offset >= 0).then(|| (leader - replica.log_end_offset).max(0))
    }
}

fn describe_quorum_request() -> DescribeQuorumRequest {
    DescribeQuorumRequest::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(TopicName(str_bytes(METADATA_TOPIC.to_string())))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
    ])
}

fn replicas(
    list: &[strom_protocol::messages::describe_quorum_response::ReplicaState],
) -> Vec<QuorumReplica> {
    let mut out: Vec<QuorumReplica> = list
        .iter()
        .map(|r| QuorumReplica {
            id: r.replica_id.0,
            log_end_offset: r.log_end_offset,
            last_fetch_timestamp: r.last_fetch_timestamp,
            last_caught_up_timestamp: r.last_caught_up_timestamp,
        })
        .collect();
    out.sort_by_key(|r| r.id);
    out
}

impl GroupAdmin {
    /// Cluster id, active controller and live brokers (DescribeCluster), from the first
    /// bootstrap server that answers.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, ClientError> {
        self.describe_cluster_with(false).await
    }

    /// [`GroupAdmin::describe_cluster`], with fenced brokers too when `include_fenced` (and
    /// the broker speaks DescribeCluster v2).
    pub async fn describe_cluster_with(
        &self,
        include_fenced: bool,
    ) -> Result<ClusterDescription, ClientError> {
        let (_, response) = self
            .request_any(
                ApiKey::DescribeCluster,
                cluster_versions::DESCRIBE_CLUSTER,
                |v| {
                    let mut req = DescribeClusterRequest::default();
                    if v >= 1 {
                        req.endpoint_type = ENDPOINT_TYPE_BROKERS;
                    }
                    if v >= 2 {
                        req.include_fenced_brokers = include_fenced;
                    }
                    Ok(RequestKind::DescribeCluster(req))
                },
            )
            .await?;
        let ResponseKind::DescribeCluster(r) = response else {
            return Err(unexpected("DescribeCluster"));
        };
        check(r.error_code, "DescribeCluster", r.error_message.as_deref())?;
        let mut brokers: Vec<BrokerMetadata> = Vec::new();
        let mut fenced = Vec::new();
        for b in &r.brokers {
            brokers.push(BrokerMetadata {
                id: b.broker_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|s| s.to_string()),
            });
            if b.is_fenced {
                fenced.push(b.broker_id.0);
            }
        }
        brokers.sort_by_key(|b| b.id);
        fenced.sort();
        Ok(ClusterDescription {
            cluster_id: r.cluster_id.to_string(),
            controller_id: r.controller_id.0,
            brokers,
            fenced,
        })
    }

    /// The metadata quorum (DescribeQuorum). Asked of the active controller's broker, which
    /// knows every voter's progress; when that broker cannot be reached (or the controller is
    /// unknown), of the first bootstrap server that answers, which may know only its own.
    pub async fn describe_quorum(&self) -> Result<QuorumDescription, ClientError> {
        if let Ok(cluster) = self.describe_cluster().await
            && let Some(b) = cluster
                .brokers
                .iter()
                .find(|b| b.id == cluster.controller_id)
        {
            match self.describe_quorum_at(&host_port(&b.host, b.port)).await {
                Ok(q) => return Ok(q),
                Err(e) => {
                    tracing::debug!(controller = b.id, error = %e, "controller unreachable; asking a bootstrap server")
                }
            }
        }
        let mut last_error = None;
        for addr in self.bootstrap_servers() {
            match self.describe_quorum_at(&addr).await {
                Err(e @ (ClientError::Connect { .. } | ClientError::Io(_))) => {
                    tracing::debug!(%addr, error = %e, "bootstrap server unreachable");
                    last_error = Some(e);
                }
                other => return other,
            }
        }
        Err(last_error
            .unwrap_or_else(|| ClientError::InvalidArgument("no bootstrap server".into())))
    }

    /// DescribeQuorum as the broker at `addr` sees the quorum.
    pub async fn describe_quorum_at(&self, addr: &str) -> Result<QuorumDescription, ClientError> {
        let (_, response) = self
            .request(
                addr,
                ApiKey::DescribeQuorum,
                cluster_versions::DESCRIBE_QUORUM,
                |_| Ok(RequestKind::DescribeQuorum(describe_quorum_request())),
            )
            .await?;
        let ResponseKind::DescribeQuorum(r) = response else {
            return Err(unexpected("DescribeQuorum"));
        };
        check(r.error_code, "DescribeQuorum", r.error_message.as_deref())?;
        let partition = r
            .topics
            .iter()
            .find(|t| t.topic_name.0.as_str() == METADATA_TOPIC)
            .and_then(|t| t.partitions.iter().find(|p| p.partition_index == 0))
            .ok_or_else(|| {
                ClientError::UnexpectedResponse(format!(
                    "the DescribeQuorum response has no entry for {METADATA_TOPIC}-0"
                ))
            })?;
        check(
            partition.error_code,
            &format!("{METADATA_TOPIC}-0"),
            partition.error_message.as_deref(),
        )?;
        Ok(QuorumDescription {
            leader_id: partition.leader_id.0,
            leader_epoch: partition.leader_epoch,
            high_watermark: partition.high_watermark,
            voters: replicas(&partition.current_voters),
            observers: replicas(&partition.observers),
            answered_by: addr.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(id: i32, leo: i64) -> QuorumReplica {
        QuorumReplica {
            id,
            log_end_offset: leo,
            last_fetch_timestamp: -1,
            last_caught_up_timestamp: -1,
        }
    }

    #[test]
    fn lag_is_behind_the_leaders_log_end_and_unknown_without_both_ends() {
        let q = QuorumDescription {
            leader_id: 2,
            leader_epoch: 3,
            high_watermark: 10,
            voters: vec![replica(1, 7), replica(2, 10), replica(3, -1)],
            observers: vec![],
            answered_by: "h:1".into(),
        };
        assert_eq!(q.leader_log_end_offset(), Some(10));
        assert_eq!(q.lag(&q.voters[0]), Some(3));
        assert_eq!(q.lag(&q.voters[1]), Some(0));
        assert_eq!(q.lag(&q.voters[2]), None);
        let leaderless = QuorumDescription {
            leader_id: -1,
            ..q.clone()
        };
        assert_eq!(leaderless.lag(&q.voters[0]), None);
    }
}

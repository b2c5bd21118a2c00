//! The cluster: its brokers and controller (DescribeCluster), its metadata quorum
//! (DescribeQuorum), each broker's log directories (DescribeLogDirs) and the features it
//! supports and the cluster finalized (ApiVersions).

use strom_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use strom_protocol::messages::{DescribeClusterRequest, DescribeQuorumRequest, TopicName};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, str_bytes};

use super::groups::{host_port, unexpected};
use super::{Admin, Route};
use crate::client::BrokerMetadata;
use crate::error::{ClientError, check_resource as check};

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

impl Admin {
    /// Cluster id, active controller and live brokers (DescribeCluster), from the first
    /// bootstrap server that answers.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, ClientError> {
        self.describe_cluster_with(false).await
    }

    /// [`Admin::describe_cluster`], with fenced brokers too when `include_fenced` (and
    /// the broker speaks DescribeCluster v2).
    pub async fn describe_cluster_with(
        &self,
        include_fenced: bool,
    ) -> Result<ClusterDescription, ClientError> {
        let (_, response) = self
            .send(
                Route::Any,
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

/// One log directory of a broker, as DescribeLogDirs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirDescription {
    pub path: String,
    /// NONE, or e.g. KAFKA_STORAGE_ERROR for an offline directory.
    pub error: Option<&'static str>,
    /// Bytes of the volume and bytes free (-1 when the broker does not say).
    pub total_bytes: i64,
    pub usable_bytes: i64,
    /// (topic, partition, size in bytes, offset lag), sorted.
    pub replicas: Vec<(String, i32, i64, i64)>,
}

/// A feature as ApiVersions reports it: what the broker supports and, when the cluster
/// finalized it, the level in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalizedFeature {
    pub name: String,
    pub supported_min: i16,
    pub supported_max: i16,
    /// The finalized level; None when the cluster has not finalized the feature.
    pub finalized: Option<i16>,
}

impl Admin {
    /// The log directories of broker `broker_id` and the replicas in each.
    pub async fn describe_log_dirs(
        &self,
        broker_id: i32,
    ) -> Result<Vec<LogDirDescription>, ClientError> {
        use strom_protocol::messages::DescribeLogDirsRequest;
        let (_, response) = self
            .send(Route::Broker(broker_id), ApiKey::DescribeLogDirs, 4, |_| {
                Ok(RequestKind::DescribeLogDirs(
                    DescribeLogDirsRequest::default().with_topics(None),
                ))
            })
            .await?;
        let ResponseKind::DescribeLogDirs(r) = response else {
            return Err(unexpected("DescribeLogDirs"));
        };
        check(r.error_code, &format!("broker {broker_id}"), None)?;
        let mut dirs: Vec<LogDirDescription> = r
            .results
            .iter()
            .map(|d| {
                let mut replicas: Vec<(String, i32, i64, i64)> = d
                    .topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(|p| {
                            (
                                t.name.to_string(),
                                p.partition_index,
                                p.partition_size,
                                p.offset_lag,
                            )
                        })
                    })
                    .collect();
                replicas.sort();
                LogDirDescription {
                    path: d.log_dir.to_string(),
                    error: (d.error_code != 0).then(|| crate::error::error_name(d.error_code)),
                    total_bytes: d.total_bytes,
                    usable_bytes: d.usable_bytes,
                    replicas,
                }
            })
            .collect();
        dirs.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(dirs)
    }

    /// The features a broker supports and the levels the cluster finalized (ApiVersions v3),
    /// sorted by name.
    pub async fn describe_features(&self) -> Result<Vec<FinalizedFeature>, ClientError> {
        use strom_protocol::messages::ApiVersionsRequest;
        let (version, response) = self
            .send(Route::Any, ApiKey::ApiVersions, 3, |_| {
                let mut req = ApiVersionsRequest::default();
                req.client_software_name = str_bytes("strom-client");
                req.client_software_version = str_bytes(env!("CARGO_PKG_VERSION"));
                Ok(RequestKind::ApiVersions(req))
            })
            .await?;
        let ResponseKind::ApiVersions(r) = response else {
            return Err(unexpected("ApiVersions"));
        };
        check(r.error_code, "ApiVersions", None)?;
        if version < 3 {
            return Ok(Vec::new());
        }
        let mut out: Vec<FinalizedFeature> = r
            .supported_features
            .iter()
            .map(|f| FinalizedFeature {
                name: f.name.to_string(),
                supported_min: f.min_version,
                supported_max: f.max_version,
                finalized: r
                    .finalized_features
                    .iter()
                    .find(|x| x.name == f.name)
                    .map(|x| x.max_version_level),
            })
            .collect();
        for f in &r.finalized_features {
            if !out.iter().any(|o| o.name == f.name.as_str()) {
                out.push(FinalizedFeature {
                    name: f.name.to_string(),
                    supported_min: -1,
                    supported_max: -1,
                    finalized: Some(f.max_version_level),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
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

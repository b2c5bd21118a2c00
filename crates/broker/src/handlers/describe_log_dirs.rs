use std::collections::BTreeMap;
use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use strom_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use strom_protocol::str_bytes;

use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    // DESCRIBE on the cluster; v3+ is answered with the error before dispatch, older versions
    // (without an error field) get no log dirs.
    if !broker.authorize_cluster(ctx, crate::security::acl::Operation::Describe) {
        return DescribeLogDirsResponse::default();
    }
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.topic.as_str().to_string(), t.partitions))
            .collect()
    });
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for p in broker.replicas.all() {
        let included = match &wanted {
            None => true,
            Some(w) => w
                .iter()
                .any(|(t, ps)| *t == p.topic && ps.contains(&p.index)),
        };
        if included {
            let size = p.with_log(|l| l.size_bytes()) as i64;
            by_topic.entry(p.topic.clone()).or_default().push(
                DescribeLogDirsPartition::default()
                    .with_partition_index(p.index)
                    .with_partition_size(size),
            );
        }
    }
    let dir = broker.config.log_dir();
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partitions(partitions)
        })
        .collect();
    DescribeLogDirsResponse::default().with_results(vec![
        DescribeLogDirsResult::default()
            .with_log_dir(str_bytes(dir.display().to_string()))
            .with_topics(topics)
            .with_total_bytes(-1)
            .with_usable_bytes(-1),
    ])
}

/// The DescribeLogDirs API: its versions, handler and the rest of its story (see [`Api`]).
pub struct DescribeLogDirs;

impl Api for DescribeLogDirs {
    const KEY: ApiKey = ApiKey::DescribeLogDirs;
    const VERSIONS: (i16, i16) = (1, 4);
    type Request = DescribeLogDirsRequest;
    type Response = DescribeLogDirsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_response(_req: &Self::Request, _version: i16, code: i16) -> Option<Self::Response> {
        Some(Self::Response::default().with_error_code(code))
    }

    /// v3+ answer CLUSTER_AUTHORIZATION_FAILED as a whole; older versions answer with no
    /// directories (see the handler).
    fn authorize(
        broker: &Broker,
        ctx: &RequestContext,
        req: &Self::Request,
    ) -> Option<Self::Response> {
        (ctx.api_version >= 3 && !broker.authorize_cluster(ctx, Operation::Describe))
            .then(|| Self::error_response(req, ctx.api_version, ec::CLUSTER_AUTHORIZATION_FAILED))
            .flatten()
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        count(r.error_code);
        r.results.iter().for_each(|x| count(x.error_code));
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}

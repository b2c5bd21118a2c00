//! The API registry: the one list of implemented APIs, one line per API naming its
//! [`Api`] type (whose file declares its key, versions and handler). It dispatches requests
//! and it is what ApiVersions answers with, so the two can never disagree.

use std::sync::Arc;

use strom_protocol::{ApiKey, RequestKind, ResponseKind};

use crate::broker::Broker;
use crate::handlers::{self, Api};
use crate::request::RequestContext;

/// An implemented API and the versions strom advertises for it.
#[derive(Debug, Clone, Copy)]
pub struct ApiSpec {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

macro_rules! registry {
    ($( $module:ident :: $api:ident; )*) => {
        /// Every implemented API with its advertised version range.
        pub const APIS: &[ApiSpec] = &[
            $( ApiSpec {
                key: <handlers::$module::$api as Api>::KEY,
                min: <handlers::$module::$api as Api>::VERSIONS.0,
                max: <handlers::$module::$api as Api>::VERSIONS.1,
            }, )*
        ];

        /// The answer to a request refused before its handler (authorization of the request as
        /// a whole, then coordinator routing), or None to run the handler.
        pub fn refuse(broker: &Broker, ctx: &RequestContext, body: &RequestKind) -> Option<ResponseKind> {
            match body {
                $( RequestKind::$api(req) => {
                    refused::<handlers::$module::$api>(broker, ctx, req).map(ResponseKind::$api)
                } )*
                _ => None,
            }
        }

        /// Calls `count` with every error code of a response (see [`Api::error_codes`]).
        pub fn error_codes(response: &ResponseKind, count: &mut dyn FnMut(i16)) {
            match response {
                $( ResponseKind::$api(r) => <handlers::$module::$api as Api>::error_codes(r, count), )*
                _ => {}
            }
        }

        /// The audit lines of an admin request (see [`Api::audit`]); None for any other request.
        pub fn admin_request(body: &RequestKind) -> Option<crate::security::audit::AdminRequest> {
            match body {
                $( RequestKind::$api(r) => <handlers::$module::$api as Api>::audit(r)
                    .map(crate::security::audit::AdminRequest::new), )*
                _ => None,
            }
        }

        /// The result codes of an admin response (see [`Api::audit_results`]).
        pub fn audit_results(response: &ResponseKind) -> (Vec<i16>, i16) {
            match response {
                $( ResponseKind::$api(r) => <handlers::$module::$api as Api>::audit_results(r), )*
                _ => (Vec::new(), 0),
            }
        }

        /// Sets the throttle time of a response (see [`Api::set_throttle_time`]).
        pub fn set_throttle_time(response: &mut ResponseKind, ms: i32) {
            match response {
                $( ResponseKind::$api(r) => <handlers::$module::$api as Api>::set_throttle_time(r, ms), )*
                _ => {}
            }
        }

        /// The client quotas a response's request counts against (see [`Api::QUOTA`]).
        pub fn quota(response: &ResponseKind) -> handlers::Quota {
            match response {
                $( ResponseKind::$api(_) => <handlers::$module::$api as Api>::QUOTA, )*
                _ => handlers::Quota::RequestTime,
            }
        }

        /// Runs the handler of a decoded request.
        pub async fn dispatch(broker: &Arc<Broker>, ctx: &RequestContext, body: RequestKind) -> Option<ResponseKind> {
            match body {
                $( RequestKind::$api(req) => Some(ResponseKind::$api(
                    <handlers::$module::$api as Api>::handle(broker, ctx, req).await,
                )), )*
                _ => None,
            }
        }
    };
}

fn refused<A: Api>(broker: &Broker, ctx: &RequestContext, req: &A::Request) -> Option<A::Response> {
    if broker.authorizer.enabled
        && let Some(refusal) = A::authorize(broker, ctx, req)
    {
        return Some(refusal);
    }
    A::route(broker, ctx, req)
}

registry! {
    produce::Produce;
    fetch::Fetch;
    list_offsets::ListOffsets;
    metadata::Metadata;
    api_versions::ApiVersions;
    create_topics::CreateTopics;
    delete_topics::DeleteTopics;
    delete_records::DeleteRecords;
    describe_configs::DescribeConfigs;
    alter_configs::AlterConfigs;
    describe_log_dirs::DescribeLogDirs;
    create_partitions::CreatePartitions;
    incremental_alter_configs::IncrementalAlterConfigs;
    describe_cluster::DescribeCluster;
    elect_leaders::ElectLeaders;
    alter_partition_reassignments::AlterPartitionReassignments;
    list_partition_reassignments::ListPartitionReassignments;
    describe_quorum::DescribeQuorum;
    find_coordinator::FindCoordinator;
    join_group::JoinGroup;
    sync_group::SyncGroup;
    heartbeat::Heartbeat;
    leave_group::LeaveGroup;
    offset_commit::OffsetCommit;
    offset_fetch::OffsetFetch;
    describe_groups::DescribeGroups;
    list_groups::ListGroups;
    delete_groups::DeleteGroups;
    offset_delete::OffsetDelete;
    offset_for_leader_epoch::OffsetForLeaderEpoch;
    init_producer_id::InitProducerId;
    add_partitions_to_txn::AddPartitionsToTxn;
    add_offsets_to_txn::AddOffsetsToTxn;
    end_txn::EndTxn;
    write_txn_markers::WriteTxnMarkers;
    txn_offset_commit::TxnOffsetCommit;
    describe_producers::DescribeProducers;
    describe_transactions::DescribeTransactions;
    list_transactions::ListTransactions;
    consumer_group_heartbeat::ConsumerGroupHeartbeat;
    consumer_group_describe::ConsumerGroupDescribe;
    describe_acls::DescribeAcls;
    create_acls::CreateAcls;
    delete_acls::DeleteAcls;
    sasl_handshake::SaslHandshake;
    sasl_authenticate::SaslAuthenticate;
    describe_client_quotas::DescribeClientQuotas;
    alter_client_quotas::AlterClientQuotas;
    describe_user_scram_credentials::DescribeUserScramCredentials;
    alter_user_scram_credentials::AlterUserScramCredentials;
}

/// The advertised range of an API, if strom implements it.
pub fn spec(api_key: i16) -> Option<&'static ApiSpec> {
    APIS.iter().find(|s| s.key as i16 == api_key)
}

/// Whether strom can decode this version: inside the advertised range and inside what the
/// codec understands (Produce v0-v2 are advertised for old clients' version probing but, as in
/// Kafka 4, not served).
pub fn servable(spec: &ApiSpec, version: i16) -> bool {
    let codec = spec.key.valid_versions();
    version >= spec.min.max(codec.min) && version <= spec.max.min(codec.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_ranges_fit_the_codec() {
        for s in APIS {
            let codec = s.key.valid_versions();
            assert!(
                s.max <= codec.max,
                "{:?} advertises v{} beyond the codec",
                s.key,
                s.max
            );
            assert!(s.min <= s.max);
            if s.key != ApiKey::Produce {
                assert!(
                    s.min >= codec.min,
                    "{:?} advertises v{} below the codec",
                    s.key,
                    s.min
                );
            }
        }
    }
}

/// The API table of docs/compatibility.md: every API key of the protocol, with the versions
/// strom serves or "not yet".
pub fn markdown_table() -> String {
    let mut s = String::from("| key | API | strom | Kafka 4.1 codec range |\n|---|---|---|---|\n");
    for key in 0i16..=200 {
        let Ok(api) = ApiKey::try_from(key) else {
            continue;
        };
        let codec = api.valid_versions();
        let ours = match spec(key) {
            Some(s) if s.key == ApiKey::Produce => format!(
                "v{}-v{} (v{}-v{} advertised, as Kafka 4 does, and refused)",
                codec.min.max(s.min),
                s.max,
                s.min,
                codec.min - 1
            ),
            Some(s) => format!("v{}-v{}", s.min, s.max),
            None => "not yet".to_string(),
        };
        s.push_str(&format!(
            "| {key} | {api:?} | {ours} | v{}-v{} |\n",
            codec.min, codec.max
        ));
    }
    s
}

#[cfg(test)]
mod doc_tests {
    /// docs/compatibility.md must list exactly what the registry serves; run with
    /// STROM_UPDATE_DOCS=1 to rewrite its generated part.
    #[test]
    fn compatibility_doc_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/compatibility.md");
        let doc = std::fs::read_to_string(path).expect("docs/compatibility.md");
        let (begin, end) = ("<!-- generated: apis -->\n", "<!-- end generated -->");
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc.find(end).expect("end marker");
        let table = super::markdown_table();
        if std::env::var("STROM_UPDATE_DOCS").is_ok() {
            std::fs::write(path, format!("{}{}{}", &doc[..start], table, &doc[stop..])).unwrap();
            return;
        }
        assert_eq!(
            &doc[start..stop],
            table,
            "docs/compatibility.md is stale: run STROM_UPDATE_DOCS=1 cargo test -p strom-broker"
        );
    }
}

impl crate::metrics::Metrics {
    /// Metrics for the APIs this broker implements.
    pub fn new() -> Self {
        let keys: Vec<ApiKey> = APIS.iter().map(|s| s.key).collect();
        Self::for_apis(&keys)
    }
}

impl Default for crate::metrics::Metrics {
    fn default() -> Self {
        Self::new()
    }
}

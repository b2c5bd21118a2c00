//! The API registry: the one list of implemented APIs and their versions. It dispatches
//! requests and it is what ApiVersions answers with, so the two can never disagree.

use std::net::SocketAddr;
use std::sync::Arc;

use strom_protocol::messages::RequestHeader;
use strom_protocol::{ApiKey, RequestKind, ResponseKind};

use crate::broker::Broker;
use crate::handlers;

/// An implemented API and the versions strom advertises for it.
#[derive(Debug, Clone, Copy)]
pub struct ApiSpec {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

/// What a handler knows of the request besides its body.
pub struct RequestContext {
    pub header: RequestHeader,
    pub api_version: i16,
    pub peer: SocketAddr,
    /// Time the handler spent waiting on other work, for the request latency metrics.
    pub remote: crate::metrics::RemoteTime,
    /// The connection's listener and authenticated principal.
    pub session: Arc<crate::security::Session>,
}

impl RequestContext {
    /// The client id of the request header ("" when there is none).
    pub fn client_id(&self) -> &str {
        self.header
            .client_id
            .as_ref()
            .map(|c| c.as_str())
            .unwrap_or("")
    }

    /// The `controller_mutation_rate` quota of this request's client; `strict` for the request
    /// versions that can answer THROTTLING_QUOTA_EXCEEDED.
    pub fn mutation_quota<'a>(
        &self,
        broker: &'a Broker,
        strict: bool,
    ) -> crate::quota::MutationQuota<'a> {
        broker.quotas.mutations(
            &broker.image(),
            &self.session.principal(),
            self.client_id(),
            strict,
        )
    }
}

macro_rules! registry {
    ($( $variant:ident $min:literal ..= $max:literal => $handler:path; )*) => {
        /// Every implemented API with its advertised version range.
        pub const APIS: &[ApiSpec] = &[
            $( ApiSpec { key: ApiKey::$variant, min: $min, max: $max }, )*
        ];

        /// Runs the handler of a decoded request.
        pub async fn dispatch(broker: &Arc<Broker>, ctx: &RequestContext, body: RequestKind) -> Option<ResponseKind> {
            match body {
                $( RequestKind::$variant(req) => Some(ResponseKind::$variant($handler(broker, ctx, req).await)), )*
                _ => None,
            }
        }
    };
}

registry! {
    Produce 0..=12 => handlers::produce::handle;
    Fetch 4..=16 => handlers::fetch::handle;
    ListOffsets 1..=9 => handlers::list_offsets::handle;
    Metadata 0..=12 => handlers::metadata::handle;
    ApiVersions 0..=4 => handlers::api_versions::handle;
    CreateTopics 2..=7 => handlers::create_topics::handle;
    DeleteTopics 1..=6 => handlers::delete_topics::handle;
    DeleteRecords 0..=2 => handlers::delete_records::handle;
    DescribeConfigs 1..=4 => handlers::describe_configs::handle;
    AlterConfigs 0..=2 => handlers::alter_configs::handle;
    DescribeLogDirs 1..=4 => handlers::describe_log_dirs::handle;
    CreatePartitions 0..=3 => handlers::create_partitions::handle;
    IncrementalAlterConfigs 0..=1 => handlers::incremental_alter_configs::handle;
    DescribeCluster 0..=2 => handlers::describe_cluster::handle;
    ElectLeaders 0..=2 => handlers::elect_leaders::handle;
    AlterPartitionReassignments 0..=1 => handlers::alter_partition_reassignments::handle;
    ListPartitionReassignments 0..=0 => handlers::list_partition_reassignments::handle;
    DescribeQuorum 0..=2 => handlers::describe_quorum::handle;
    FindCoordinator 0..=6 => handlers::find_coordinator::handle;
    JoinGroup 0..=9 => handlers::join_group::handle;
    SyncGroup 0..=5 => handlers::sync_group::handle;
    Heartbeat 0..=4 => handlers::heartbeat::handle;
    LeaveGroup 0..=5 => handlers::leave_group::handle;
    OffsetCommit 2..=9 => handlers::offset_commit::handle;
    OffsetFetch 1..=9 => handlers::offset_fetch::handle;
    DescribeGroups 0..=5 => handlers::describe_groups::handle;
    ListGroups 0..=5 => handlers::list_groups::handle;
    DeleteGroups 0..=2 => handlers::delete_groups::handle;
    OffsetDelete 0..=0 => handlers::offset_delete::handle;
    OffsetForLeaderEpoch 2..=4 => handlers::offset_for_leader_epoch::handle;
    InitProducerId 0..=5 => handlers::init_producer_id::handle;
    AddPartitionsToTxn 0..=5 => handlers::add_partitions_to_txn::handle;
    AddOffsetsToTxn 0..=4 => handlers::add_offsets_to_txn::handle;
    EndTxn 0..=5 => handlers::end_txn::handle;
    WriteTxnMarkers 1..=1 => handlers::write_txn_markers::handle;
    TxnOffsetCommit 0..=5 => handlers::txn_offset_commit::handle;
    DescribeProducers 0..=0 => handlers::describe_producers::handle;
    DescribeTransactions 0..=0 => handlers::describe_transactions::handle;
    ListTransactions 0..=2 => handlers::list_transactions::handle;
    ConsumerGroupHeartbeat 0..=1 => handlers::consumer_group_heartbeat::handle;
    ConsumerGroupDescribe 0..=1 => handlers::consumer_group_describe::handle;
    DescribeAcls 1..=3 => handlers::describe_acls::handle;
    CreateAcls 1..=3 => handlers::create_acls::handle;
    DeleteAcls 1..=3 => handlers::delete_acls::handle;
    SaslHandshake 1..=1 => handlers::sasl_handshake::handle;
    SaslAuthenticate 0..=2 => handlers::sasl_authenticate::handle;
    DescribeClientQuotas 0..=1 => handlers::describe_client_quotas::handle;
    AlterClientQuotas 0..=1 => handlers::alter_client_quotas::handle;
    DescribeUserScramCredentials 0..=0 => handlers::describe_user_scram_credentials::handle;
    AlterUserScramCredentials 0..=0 => handlers::alter_user_scram_credentials::handle;
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

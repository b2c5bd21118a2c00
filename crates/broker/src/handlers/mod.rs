//! One module per API, each with one type implementing [`Api`]: the API's key and versions,
//! its handler, and how it answers a request refused before its handler runs. The types are
//! listed, one line each, in [`crate::registry`].

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_client_quotas;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod write_txn_markers;

use std::sync::Arc;

use strom_protocol::{ApiKey, StrBytes, error_code as ec, str_bytes};
use strom_storage::StorageError;

use crate::broker::Broker;
use crate::request::RequestContext;

/// The client quotas an API's requests count against. All but `Exempt` count the time their
/// handling takes against `request_percentage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// Inter-broker and authentication requests: no quota at all.
    Exempt,
    /// `request_percentage` only.
    RequestTime,
    /// And the request's bytes against `producer_byte_rate`.
    ProducedBytes,
    /// And the response's records against `consumer_byte_rate`.
    FetchedBytes,
    /// And `controller_mutation_rate`.
    ControllerMutation,
}

/// `Api::authorize` of an API whose request names one group: the principal needs READ on it,
/// else the request is refused with GROUP_AUTHORIZATION_FAILED.
pub fn authorize_group<A: Api>(
    broker: &Broker,
    ctx: &RequestContext,
    req: &A::Request,
    group_id: &str,
) -> Option<A::Response> {
    use crate::security::acl::{Operation, ResourceType};
    let allowed = broker.authorize(ctx, Operation::Read, ResourceType::Group, group_id);
    (!allowed)
        .then(|| A::error_response(req, ctx.api_version, ec::GROUP_AUTHORIZATION_FAILED))
        .flatten()
}

/// `Api::route` of an API whose request names one group: NOT_COORDINATOR unless this broker
/// coordinates it.
pub fn route_group<A: Api>(
    broker: &Broker,
    ctx: &RequestContext,
    req: &A::Request,
    group_id: &str,
) -> Option<A::Response> {
    (!broker.groups.owns(broker, group_id))
        .then(|| A::error_response(req, ctx.api_version, ec::NOT_COORDINATOR))
        .flatten()
}

/// One API of the protocol, as strom serves it.
pub trait Api {
    /// The API key.
    const KEY: ApiKey;
    /// The versions strom advertises, lowest and highest.
    const VERSIONS: (i16, i16);
    /// The client quotas its requests count against.
    const QUOTA: Quota = Quota::RequestTime;
    type Request: Send + 'static;
    type Response;

    /// Answers a request.
    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send;

    /// The answer to `req` refused as a whole with `code` before its handler runs (every entry
    /// of the response carrying the code where the response has entries); None for an API
    /// strom never refuses that way.
    fn error_response(_req: &Self::Request, _version: i16, _code: i16) -> Option<Self::Response> {
        None
    }

    /// Authorization decided by the request as a whole (its group, its transactional id, the
    /// cluster), checked before the handler when the authorizer is on: the refusal, or None to
    /// go on. Checks per topic or per entry stay in the handler.
    fn authorize(
        _broker: &Broker,
        _ctx: &RequestContext,
        _req: &Self::Request,
    ) -> Option<Self::Response> {
        None
    }

    /// Coordinator routing. In a cluster, the coordinator of a group is the leader of the
    /// group's `__consumer_offsets` partition, and that of a transactional id the leader of its
    /// `__transaction_state` partition. A request about a group or transactional id this broker
    /// does not coordinate is answered NOT_COORDINATOR here, before its handler, and the client
    /// looks the coordinator up again with FindCoordinator.
    fn route(
        _broker: &Broker,
        _ctx: &RequestContext,
        _req: &Self::Request,
    ) -> Option<Self::Response> {
        None
    }

    /// Calls `count` with every error code of a response, the way Kafka's ErrorsPerSec counts
    /// them: one per top-level code and one per entry (topic, partition, group, resource),
    /// `NONE` included. Nothing for an API whose errors are not counted.
    fn error_codes(_response: &Self::Response, _count: &mut dyn FnMut(i16)) {}

    /// For an admin operation, the resources the request names, each with what is asked of it
    /// (config names, never values or credentials), in the order the response answers them:
    /// the lines of the audit log. None for an API that is not an admin operation.
    fn audit(_req: &Self::Request) -> Option<Vec<(String, String)>> {
        None
    }

    /// The result code of each resource [`Api::audit`] names, in the same order, and a code
    /// for the whole request where the response has one (0 where it has none).
    fn audit_results(_response: &Self::Response) -> (Vec<i16>, i16) {
        (Vec::new(), 0)
    }

    /// Puts the throttle time the quotas decided into the response (its `throttle_time_ms`;
    /// encoding leaves it out of the versions without it). Nothing for a response without one.
    fn set_throttle_time(_response: &mut Self::Response, _ms: i32) {}
}

/// The Kafka error code a client sees for a storage failure.
pub fn storage_error_code(e: &StorageError) -> i16 {
    match e {
        StorageError::CorruptRecord(_) => ec::CORRUPT_MESSAGE,
        StorageError::InvalidRecord(_) => ec::INVALID_RECORD,
        StorageError::MessageTooLarge { .. } => ec::MESSAGE_TOO_LARGE,
        StorageError::UnsupportedMagic(_) => ec::UNSUPPORTED_FOR_MESSAGE_FORMAT,
        StorageError::OffsetOutOfRange { .. } => ec::OFFSET_OUT_OF_RANGE,
        StorageError::OutOfOrderSequence(_) => ec::OUT_OF_ORDER_SEQUENCE_NUMBER,
        StorageError::InvalidProducerEpoch(_) => ec::INVALID_PRODUCER_EPOCH,
        StorageError::InvalidTxnState(_) => ec::INVALID_TXN_STATE,
        StorageError::CoordinatorFenced(_) => ec::TRANSACTION_COORDINATOR_FENCED,
        _ => ec::KAFKA_STORAGE_ERROR,
    }
}

/// An optional message for a response's error_message field.
pub fn message(code: i16, text: String) -> Option<StrBytes> {
    (code != ec::NONE).then(|| str_bytes(text))
}

/// `value` when the response version has the field, else the field's default. The generated
/// encoder refuses a non-default value in a field that the chosen version does not have.
pub fn since<T: Default>(version: i16, first_version: i16, value: T) -> T {
    if version >= first_version {
        value
    } else {
        T::default()
    }
}

/// Resource types of the config APIs.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

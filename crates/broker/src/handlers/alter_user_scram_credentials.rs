use std::collections::BTreeMap;
use std::sync::Arc;

use strom_metadata::MetadataRecord;
use strom_protocol::ApiKey;
use strom_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use strom_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::Operation;
use crate::security::audit;
use crate::security::scram::{MAX_ITERATIONS, MIN_ITERATIONS, ScramMechanism};

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let result = |user: &str, code: i16, message: Option<String>| {
        AlterUserScramCredentialsResult::default()
            .with_user(str_bytes(user.to_string()))
            .with_error_code(code)
            .with_error_message(message.map(str_bytes))
    };
    let mut users: Vec<String> = req
        .deletions
        .iter()
        .map(|d| d.name.to_string())
        .chain(req.upsertions.iter().map(|u| u.name.to_string()))
        .collect();
    users.sort();
    users.dedup();
    if !broker.authorize_cluster(ctx, Operation::Alter) {
        return AlterUserScramCredentialsResponse::default().with_results(
            users
                .iter()
                .map(|u| result(u, ec::CLUSTER_AUTHORIZATION_FAILED, None))
                .collect(),
        );
    }
    // A user with two changes of the same mechanism in one request is refused whole.
    let mut per_user_mech: BTreeMap<(String, i8), usize> = BTreeMap::new();
    for (name, mech) in req
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), d.mechanism))
        .chain(
            req.upsertions
                .iter()
                .map(|u| (u.name.to_string(), u.mechanism)),
        )
    {
        *per_user_mech.entry((name, mech)).or_default() += 1;
    }
    let _guard = broker.controller.lock().await;
    let image = broker.image();
    let mut errors: BTreeMap<String, (i16, String)> = BTreeMap::new();
    let mut records: BTreeMap<String, Vec<MetadataRecord>> = BTreeMap::new();
    for ((name, mech), n) in &per_user_mech {
        if *n > 1 {
            errors.entry(name.clone()).or_insert((
                ec::DUPLICATE_RESOURCE,
                format!("user {name} has more than one change for one mechanism"),
            ));
        }
        if ScramMechanism::from_code(*mech).is_none() {
            errors.entry(name.clone()).or_insert((
                ec::UNSUPPORTED_SASL_MECHANISM,
                format!("unknown SCRAM mechanism {mech}"),
            ));
        }
        if name.is_empty() {
            errors.entry(name.clone()).or_insert((
                ec::UNACCEPTABLE_CREDENTIAL,
                "user name must not be empty".into(),
            ));
        }
    }
    for d in &req.deletions {
        let name = d.name.to_string();
        if !image
            .scram_credentials
            .contains_key(&(name.clone(), d.mechanism))
        {
            errors.entry(name.clone()).or_insert((
                ec::RESOURCE_NOT_FOUND,
                format!(
                    "user {name} has no credential for mechanism {}",
                    d.mechanism
                ),
            ));
        }
        records
            .entry(name.clone())
            .or_default()
            .push(MetadataRecord::RemoveScramCredential {
                user: name,
                mechanism: d.mechanism,
            });
    }
    for u in &req.upsertions {
        let name = u.name.to_string();
        let Some(mech) = ScramMechanism::from_code(u.mechanism) else {
            continue;
        };
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&u.iterations) {
            errors.entry(name.clone()).or_insert((
                ec::UNACCEPTABLE_CREDENTIAL,
                format!(
                    "iterations must be within {MIN_ITERATIONS}..={MAX_ITERATIONS}, got {}",
                    u.iterations
                ),
            ));
            continue;
        }
        if u.salt.is_empty() || u.salted_password.is_empty() {
            errors.entry(name.clone()).or_insert((
                ec::UNACCEPTABLE_CREDENTIAL,
                "salt and salted password must not be empty".into(),
            ));
            continue;
        }
        let (stored_key, server_key) = mech.keys(&u.salted_password);
        records
            .entry(name.clone())
            .or_default()
            .push(MetadataRecord::ScramCredential {
                user: name,
                mechanism: u.mechanism,
                salt: u.salt.to_vec(),
                stored_key,
                server_key,
                iterations: u.iterations,
            });
    }
    let mut results = Vec::new();
    for user in &users {
        if let Some((code, message)) = errors.get(user) {
            results.push(result(user, *code, Some(message.clone())));
            continue;
        }
        let recs = records.remove(user).unwrap_or_default();
        match broker.commit_metadata(recs) {
            Ok(_) => {
                tracing::info!(principal = %ctx.session.principal(), %user, "SCRAM credentials changed");
                results.push(result(user, ec::NONE, None));
            }
            Err(e) => results.push(result(user, ec::UNKNOWN_SERVER_ERROR, Some(e.to_string()))),
        }
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

/// The AlterUserScramCredentials API: its versions, handler and the rest of its story (see [`Api`]).
pub struct AlterUserScramCredentials;

impl Api for AlterUserScramCredentials {
    const KEY: ApiKey = ApiKey::AlterUserScramCredentials;
    const VERSIONS: (i16, i16) = (0, 0);
    type Request = AlterUserScramCredentialsRequest;
    type Response = AlterUserScramCredentialsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn audit(r: &Self::Request) -> Option<Vec<(String, String)>> {
        let mut items: Vec<(String, String)> = Vec::new();
        for d in &r.deletions {
            items.push((
                format!("user:{}", d.name.as_str()),
                format!("delete {} credential", audit::scram_mechanism(d.mechanism)),
            ));
        }
        for u in &r.upsertions {
            items.push((
                format!("user:{}", u.name.as_str()),
                format!(
                    "set {} credential iterations={}",
                    audit::scram_mechanism(u.mechanism),
                    u.iterations
                ),
            ));
        }
        Some(items)
    }

    fn audit_results(r: &Self::Response) -> (Vec<i16>, i16) {
        (r.results.iter().map(|c| c.error_code).collect(), 0)
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}

use std::collections::BTreeMap;
use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use strom_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !broker.authorize_cluster(ctx, Operation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ec::CLUSTER_AUTHORIZATION_FAILED);
    }
    let image = broker.image();
    let mut by_user: BTreeMap<&str, Vec<CredentialInfo>> = BTreeMap::new();
    for ((user, mechanism), c) in &image.scram_credentials {
        by_user.entry(user.as_str()).or_default().push(
            CredentialInfo::default()
                .with_mechanism(*mechanism)
                .with_iterations(c.iterations),
        );
    }
    let results = match req.users {
        None => by_user
            .into_iter()
            .map(|(user, infos)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(str_bytes(user.to_string()))
                    .with_credential_infos(infos)
            })
            .collect(),
        Some(users) => {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for u in &users {
                *counts.entry(u.name.as_str()).or_default() += 1;
            }
            let mut out = Vec::new();
            for u in &users {
                let name = u.name.as_str();
                if counts.get(name) == Some(&0) {
                    continue; // a duplicate already answered
                }
                let result = DescribeUserScramCredentialsResult::default()
                    .with_user(str_bytes(name.to_string()));
                out.push(if counts[name] > 1 {
                    counts.insert(name, 0);
                    result
                        .with_error_code(ec::DUPLICATE_RESOURCE)
                        .with_error_message(Some(str_bytes(format!(
                            "user {name} is named more than once"
                        ))))
                } else {
                    match by_user.get(name) {
                        Some(infos) => result.with_credential_infos(infos.clone()),
                        None => result
                            .with_error_code(ec::RESOURCE_NOT_FOUND)
                            .with_error_message(Some(str_bytes(format!(
                                "user {name} has no SCRAM credentials"
                            )))),
                    }
                });
            }
            out
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// The DescribeUserScramCredentials API: its versions, handler and the rest of its story (see [`Api`]).
pub struct DescribeUserScramCredentials;

impl Api for DescribeUserScramCredentials {
    const KEY: ApiKey = ApiKey::DescribeUserScramCredentials;
    const VERSIONS: (i16, i16) = (0, 0);
    type Request = DescribeUserScramCredentialsRequest;
    type Response = DescribeUserScramCredentialsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}

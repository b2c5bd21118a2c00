//! Security administration: SCRAM credentials and ACLs (for `strom users` and `strom acls`).

use strom_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use strom_protocol::messages::create_acls_request::AclCreation;
use strom_protocol::messages::delete_acls_request::DeleteAclsFilter;
use strom_protocol::messages::describe_user_scram_credentials_request::UserName;
use strom_protocol::messages::{
    AlterUserScramCredentialsRequest, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest,
    DescribeUserScramCredentialsRequest,
};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, str_bytes};

use super::groups::unexpected;
use super::{Admin, Route};
use crate::error::{ClientError, check_resource as check};

/// One ACL, with Kafka's numeric codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission_type: i8,
}

/// An ACL filter: `None` matches anything; codes 1 (ANY) match any value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilterSpec {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission_type: i8,
}

/// A new SCRAM credential: the client salts the password; the broker never sees it.
#[derive(Debug, Clone)]
pub struct ScramUpsert {
    pub user: String,
    pub mechanism: i8,
    pub iterations: i32,
    pub salt: Vec<u8>,
    pub salted_password: Vec<u8>,
}

impl Admin {
    /// Sets and deletes SCRAM credentials ((user, mechanism) pairs); one result per user.
    pub async fn alter_scram_credentials(
        &self,
        upserts: &[ScramUpsert],
        deletions: &[(String, i8)],
    ) -> Result<Vec<(String, Result<(), ClientError>)>, ClientError> {
        let (_, response) = self
            .send(
                Route::Controller,
                ApiKey::AlterUserScramCredentials,
                0,
                |_| {
                    let mut req = AlterUserScramCredentialsRequest::default();
                    req.upsertions = upserts
                        .iter()
                        .map(|u| {
                            ScramCredentialUpsertion::default()
                                .with_name(str_bytes(u.user.clone()))
                                .with_mechanism(u.mechanism)
                                .with_iterations(u.iterations)
                                .with_salt(u.salt.clone().into())
                                .with_salted_password(u.salted_password.clone().into())
                        })
                        .collect();
                    req.deletions = deletions
                        .iter()
                        .map(|(user, m)| {
                            ScramCredentialDeletion::default()
                                .with_name(str_bytes(user.clone()))
                                .with_mechanism(*m)
                        })
                        .collect();
                    Ok(RequestKind::AlterUserScramCredentials(req))
                },
            )
            .await?;
        let ResponseKind::AlterUserScramCredentials(r) = response else {
            return Err(unexpected("AlterUserScramCredentials"));
        };
        Ok(r.results
            .into_iter()
            .map(|res| {
                let user = res.user.to_string();
                let subject = format!("user {user:?}");
                let outcome = check(res.error_code, &subject, res.error_message.as_deref());
                (user, outcome)
            })
            .collect())
    }

    /// SCRAM credentials as (user, [(mechanism, iterations)]); `users` None means all.
    pub async fn describe_scram_credentials(
        &self,
        users: Option<&[String]>,
    ) -> Result<Vec<(String, Result<Vec<(i8, i32)>, ClientError>)>, ClientError> {
        let (_, response) = self
            .send(
                Route::Controller,
                ApiKey::DescribeUserScramCredentials,
                0,
                |_| {
                    let mut req = DescribeUserScramCredentialsRequest::default();
                    req.users = users.map(|u| {
                        u.iter()
                            .map(|n| UserName::default().with_name(str_bytes(n.clone())))
                            .collect()
                    });
                    Ok(RequestKind::DescribeUserScramCredentials(req))
                },
            )
            .await?;
        let ResponseKind::DescribeUserScramCredentials(r) = response else {
            return Err(unexpected("DescribeUserScramCredentials"));
        };
        check(
            r.error_code,
            "DescribeUserScramCredentials",
            r.error_message.as_deref(),
        )?;
        Ok(r.results
            .into_iter()
            .map(|res| {
                let user = res.user.to_string();
                let outcome = check(
                    res.error_code,
                    &format!("user {user:?}"),
                    res.error_message.as_deref(),
                )
                .map(|_| {
                    res.credential_infos
                        .iter()
                        .map(|c| (c.mechanism, c.iterations))
                        .collect()
                });
                (user, outcome)
            })
            .collect())
    }

    /// Creates ACLs; one result per ACL.
    pub async fn create_acls(
        &self,
        acls: &[Acl],
    ) -> Result<Vec<Result<(), ClientError>>, ClientError> {
        let (_, response) = self
            .send(Route::Controller, ApiKey::CreateAcls, 3, |_| {
                let mut req = CreateAclsRequest::default();
                req.creations = acls
                    .iter()
                    .map(|a| {
                        AclCreation::default()
                            .with_resource_type(a.resource_type)
                            .with_resource_name(str_bytes(a.resource_name.clone()))
                            .with_resource_pattern_type(a.pattern_type)
                            .with_principal(str_bytes(a.principal.clone()))
                            .with_host(str_bytes(a.host.clone()))
                            .with_operation(a.operation)
                            .with_permission_type(a.permission_type)
                    })
                    .collect();
                Ok(RequestKind::CreateAcls(req))
            })
            .await?;
        let ResponseKind::CreateAcls(r) = response else {
            return Err(unexpected("CreateAcls"));
        };
        Ok(r.results
            .into_iter()
            .map(|res| check(res.error_code, "ACL", res.error_message.as_deref()))
            .collect())
    }

    /// ACLs matching a filter.
    pub async fn describe_acls(&self, f: &AclFilterSpec) -> Result<Vec<Acl>, ClientError> {
        let (_, response) = self
            .send(Route::Controller, ApiKey::DescribeAcls, 3, |_| {
                Ok(RequestKind::DescribeAcls(
                    DescribeAclsRequest::default()
                        .with_resource_type_filter(f.resource_type)
                        .with_resource_name_filter(f.resource_name.clone().map(str_bytes))
                        .with_pattern_type_filter(f.pattern_type)
                        .with_principal_filter(f.principal.clone().map(str_bytes))
                        .with_host_filter(f.host.clone().map(str_bytes))
                        .with_operation(f.operation)
                        .with_permission_type(f.permission_type),
                ))
            })
            .await?;
        let ResponseKind::DescribeAcls(r) = response else {
            return Err(unexpected("DescribeAcls"));
        };
        check(r.error_code, "DescribeAcls", r.error_message.as_deref())?;
        let mut out = Vec::new();
        for res in r.resources {
            for a in res.acls {
                out.push(Acl {
                    resource_type: res.resource_type,
                    resource_name: res.resource_name.to_string(),
                    pattern_type: res.pattern_type,
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: a.operation,
                    permission_type: a.permission_type,
                });
            }
        }
        Ok(out)
    }

    /// Deletes the ACLs matching a filter and returns them.
    pub async fn delete_acls(&self, f: &AclFilterSpec) -> Result<Vec<Acl>, ClientError> {
        let (_, response) = self
            .send(Route::Controller, ApiKey::DeleteAcls, 3, |_| {
                let mut req = DeleteAclsRequest::default();
                req.filters = vec![
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(f.resource_type)
                        .with_resource_name_filter(f.resource_name.clone().map(str_bytes))
                        .with_pattern_type_filter(f.pattern_type)
                        .with_principal_filter(f.principal.clone().map(str_bytes))
                        .with_host_filter(f.host.clone().map(str_bytes))
                        .with_operation(f.operation)
                        .with_permission_type(f.permission_type),
                ];
                Ok(RequestKind::DeleteAcls(req))
            })
            .await?;
        let ResponseKind::DeleteAcls(r) = response else {
            return Err(unexpected("DeleteAcls"));
        };
        let mut out = Vec::new();
        for res in r.filter_results {
            check(res.error_code, "DeleteAcls", res.error_message.as_deref())?;
            for a in res.matching_acls {
                out.push(Acl {
                    resource_type: a.resource_type,
                    resource_name: a.resource_name.to_string(),
                    pattern_type: a.pattern_type,
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: a.operation,
                    permission_type: a.permission_type,
                });
            }
        }
        Ok(out)
    }
}

/// A client quota entity: (type, name or None for the default).
pub type QuotaEntity = Vec<(String, Option<String>)>;

impl Admin {
    /// Sets (`Some`) or removes (`None`) quota values of one entity.
    pub async fn alter_client_quotas(
        &self,
        entity: &QuotaEntity,
        ops: &[(String, Option<f64>)],
    ) -> Result<(), ClientError> {
        use strom_protocol::messages::AlterClientQuotasRequest;
        use strom_protocol::messages::alter_client_quotas_request::{
            EntityData, EntryData, OpData,
        };
        let (_, response) = self
            .send(Route::Controller, ApiKey::AlterClientQuotas, 1, |_| {
                let entry = EntryData::default()
                    .with_entity(
                        entity
                            .iter()
                            .map(|(t, n)| {
                                EntityData::default()
                                    .with_entity_type(str_bytes(t.clone()))
                                    .with_entity_name(n.clone().map(str_bytes))
                            })
                            .collect(),
                    )
                    .with_ops(
                        ops.iter()
                            .map(|(k, v)| {
                                OpData::default()
                                    .with_key(str_bytes(k.clone()))
                                    .with_value(v.unwrap_or(0.0))
                                    .with_remove(v.is_none())
                            })
                            .collect(),
                    );
                Ok(RequestKind::AlterClientQuotas(
                    AlterClientQuotasRequest::default().with_entries(vec![entry]),
                ))
            })
            .await?;
        let ResponseKind::AlterClientQuotas(r) = response else {
            return Err(unexpected("AlterClientQuotas"));
        };
        for e in r.entries {
            check(e.error_code, "quota entity", e.error_message.as_deref())?;
        }
        Ok(())
    }

    /// Quotas of the entities matching `filter` ((type, Some(name)) exact, (type, None) the
    /// default); an empty filter lists all.
    pub async fn describe_client_quotas(
        &self,
        filter: &QuotaEntity,
    ) -> Result<Vec<(QuotaEntity, Vec<(String, f64)>)>, ClientError> {
        use strom_protocol::messages::DescribeClientQuotasRequest;
        use strom_protocol::messages::describe_client_quotas_request::ComponentData;
        let (_, response) = self
            .send(Route::Controller, ApiKey::DescribeClientQuotas, 1, |_| {
                Ok(RequestKind::DescribeClientQuotas(
                    DescribeClientQuotasRequest::default().with_components(
                        filter
                            .iter()
                            .map(|(t, n)| {
                                ComponentData::default()
                                    .with_entity_type(str_bytes(t.clone()))
                                    .with_match_type(if n.is_some() { 0 } else { 1 })
                                    .with_match(n.clone().map(str_bytes))
                            })
                            .collect(),
                    ),
                ))
            })
            .await?;
        let ResponseKind::DescribeClientQuotas(r) = response else {
            return Err(unexpected("DescribeClientQuotas"));
        };
        check(
            r.error_code,
            "DescribeClientQuotas",
            r.error_message.as_deref(),
        )?;
        Ok(r.entries
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                (
                    e.entity
                        .iter()
                        .map(|d| {
                            (
                                d.entity_type.to_string(),
                                d.entity_name.as_ref().map(|n| n.to_string()),
                            )
                        })
                        .collect(),
                    e.values
                        .iter()
                        .map(|v| (v.key.to_string(), v.value))
                        .collect(),
                )
            })
            .collect())
    }
}

//! Topics: create (partitions, replication factor, configs, or explicit replica assignments),
//! delete, list, describe, and add partitions. Sent to the controller.

use std::collections::BTreeMap;

use strom_protocol::messages::{
    BrokerId,
    create_partitions_request::{
        CreatePartitionsAssignment, CreatePartitionsRequest, CreatePartitionsTopic,
    },
    create_topics_request::{
        CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
    },
    delete_topics_request::{DeleteTopicState, DeleteTopicsRequest},
};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, error_code, str_bytes};

use super::{Admin, Route};
use crate::client::{
    Client, SharedConnection, TopicId, TopicMetadata, missing, topic_name, topic_subject,
    unexpected, versions,
};
use crate::error::{ClientError, check_resource};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker's `num.partitions` (or the number of assignments when there are some).
    pub num_partitions: i32,
    /// -1: the broker's `default.replication.factor`.
    pub replication_factor: i16,
    /// Explicit replicas by partition (the first is the preferred leader); when set, the
    /// partition count and replication factor come from them.
    pub assignments: BTreeMap<i32, Vec<i32>>,
    /// Topic config overrides.
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic of `num_partitions` partitions with `replication_factor` replicas each (-1 for
    /// the broker defaults).
    pub fn new(name: &str, num_partitions: i32, replication_factor: i16) -> NewTopic {
        NewTopic {
            name: name.to_string(),
            num_partitions,
            replication_factor,
            assignments: BTreeMap::new(),
            configs: Vec::new(),
        }
    }

    /// A topic with its replicas placed by hand: `replicas[i]` are the brokers of partition i.
    pub fn with_assignments(name: &str, replicas: Vec<Vec<i32>>) -> NewTopic {
        NewTopic {
            assignments: replicas
                .into_iter()
                .enumerate()
                .map(|(i, r)| (i as i32, r))
                .collect(),
            ..NewTopic::new(name, -1, -1)
        }
    }

    /// Adds a config override.
    pub fn config(mut self, key: &str, value: &str) -> NewTopic {
        self.configs.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds config overrides.
    pub fn configs(mut self, configs: Vec<(String, String)>) -> NewTopic {
        self.configs.extend(configs);
        self
    }
}

/// One CreateTopics request on `conn`: the one implementation of topic creation, for
/// [`Admin::create_topics`] and [`Client::create_topic`]. One result per topic, in order.
pub(crate) async fn create_topics_at(
    client: &Client,
    conn: &SharedConnection,
    topics: &[NewTopic],
) -> Result<Vec<(String, Result<TopicId, ClientError>)>, ClientError> {
    let timeout_ms = client.config().request_timeout.as_millis() as i32;
    let (_, response) = client
        .try_request(
            conn,
            ApiKey::CreateTopics,
            versions::CREATE_TOPICS,
            None,
            |_| {
                let mut req = CreateTopicsRequest::default();
                req.topics = topics
                    .iter()
                    .map(|t| {
                        let mut topic = CreatableTopic::default();
                        topic.name = topic_name(&t.name);
                        if t.assignments.is_empty() {
                            topic.num_partitions = t.num_partitions;
                            topic.replication_factor = t.replication_factor;
                        } else {
                            topic.num_partitions = -1;
                            topic.replication_factor = -1;
                            topic.assignments = t
                                .assignments
                                .iter()
                                .map(|(p, replicas)| {
                                    let mut a = CreatableReplicaAssignment::default();
                                    a.partition_index = *p;
                                    a.broker_ids = replicas.iter().map(|b| BrokerId(*b)).collect();
                                    a
                                })
                                .collect();
                        }
                        topic.configs = t
                            .configs
                            .iter()
                            .map(|(k, v)| {
                                let mut c = CreatableTopicConfig::default();
                                c.name = str_bytes(k.as_str());
                                c.value = Some(str_bytes(v.as_str()));
                                c
                            })
                            .collect();
                        topic
                    })
                    .collect();
                req.timeout_ms = timeout_ms;
                Ok(RequestKind::CreateTopics(req))
            },
        )
        .await?;
    let ResponseKind::CreateTopics(response) = response else {
        return Err(unexpected("CreateTopics", &response));
    };
    topics
        .iter()
        .map(|t| {
            let result = response
                .topics
                .iter()
                .find(|r| r.name.as_str() == t.name)
                .ok_or_else(|| missing(topic_subject(&t.name)))?;
            let outcome = check_resource(
                result.error_code,
                &topic_subject(&t.name),
                result.error_message.as_deref(),
            )
            .map(|()| TopicId(*result.topic_id.as_bytes()));
            Ok((t.name.clone(), outcome))
        })
        .collect()
}

impl Admin {
    /// Creates topics; one result per topic, in order (a topic that exists fails with
    /// TOPIC_ALREADY_EXISTS, the others are created).
    pub async fn create_topics(
        &self,
        topics: &[NewTopic],
    ) -> Result<Vec<(String, Result<TopicId, ClientError>)>, ClientError> {
        let mut done: BTreeMap<String, Result<TopicId, ClientError>> = BTreeMap::new();
        let mut pending: Vec<NewTopic> = topics.to_vec();
        let mut retry = self.retry_state();
        while !pending.is_empty() {
            let attempt = async {
                let addr = self.address(&Route::Controller).await?;
                let conn = self.client.connection_to(&addr).await?;
                create_topics_at(&self.client, &conn, &pending).await
            }
            .await;
            match attempt {
                Err(e) => {
                    if !self.pause(&mut retry, &Route::Controller, &e).await {
                        return Err(e);
                    }
                }
                Ok(results) => {
                    let mut again = Vec::new();
                    let mut retriable = None;
                    for ((name, outcome), topic) in results.into_iter().zip(pending.drain(..)) {
                        match outcome {
                            Err(e) if super::is_admin_retriable(e.kafka_code().unwrap_or(0)) => {
                                retriable = Some(e);
                                again.push(topic);
                            }
                            other => {
                                done.insert(name, other);
                            }
                        }
                    }
                    if let Some(e) = retriable {
                        if !self.pause(&mut retry, &Route::Controller, &e).await {
                            for t in again {
                                done.insert(
                                    t.name.clone(),
                                    Err(ClientError::resource(
                                        e.kafka_code().unwrap_or(-1),
                                        &topic_subject(&t.name),
                                        None,
                                    )),
                                );
                            }
                            break;
                        }
                        pending = again;
                    }
                }
            }
        }
        Ok(topics
            .iter()
            .map(|t| {
                let outcome = done
                    .remove(&t.name)
                    .unwrap_or_else(|| Err(missing(topic_subject(&t.name))));
                (t.name.clone(), outcome)
            })
            .collect())
    }

    /// Creates one topic; returns its id (zero when the broker does not report ids).
    pub async fn create_topic(&self, topic: NewTopic) -> Result<TopicId, ClientError> {
        let name = topic.name.clone();
        self.create_topics(std::slice::from_ref(&topic))
            .await?
            .pop()
            .ok_or_else(|| missing(topic_subject(&name)))?
            .1
    }

    /// Deletes topics and their records; one result per topic, in order.
    pub async fn delete_topics(
        &self,
        names: &[&str],
    ) -> Result<Vec<(String, Result<(), ClientError>)>, ClientError> {
        let timeout_ms = self.config.common.request_timeout.as_millis() as i32;
        let results = self
            .call(
                Route::Controller,
                ApiKey::DeleteTopics,
                versions::DELETE_TOPICS,
                |version| {
                    let mut req = DeleteTopicsRequest::default();
                    if version >= 6 {
                        req.topics = names
                            .iter()
                            .map(|n| {
                                let mut t = DeleteTopicState::default();
                                t.name = Some(topic_name(n));
                                t
                            })
                            .collect();
                    } else {
                        req.topic_names = names.iter().map(|n| topic_name(n)).collect();
                    }
                    req.timeout_ms = timeout_ms;
                    Ok(RequestKind::DeleteTopics(req))
                },
                |_, response, _| {
                    let ResponseKind::DeleteTopics(response) = response else {
                        return Err(unexpected("DeleteTopics", &response));
                    };
                    let mut out = Vec::new();
                    for name in names {
                        let result = response
                            .responses
                            .iter()
                            .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == *name))
                            .ok_or_else(|| missing(topic_subject(name)))?;
                        // A controller move is retried for the whole request.
                        if super::is_admin_retriable(result.error_code) {
                            check_resource(result.error_code, &topic_subject(name), None)?;
                        }
                        out.push((
                            name.to_string(),
                            check_resource(
                                result.error_code,
                                &topic_subject(name),
                                result.error_message.as_deref(),
                            ),
                        ));
                    }
                    Ok(out)
                },
            )
            .await?;
        for (name, outcome) in &results {
            if outcome.is_ok() {
                self.client.forget_topic(name).await;
            }
        }
        Ok(results)
    }

    /// Deletes one topic and its records.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        self.delete_topics(&[name])
            .await?
            .pop()
            .ok_or_else(|| missing(topic_subject(name)))?
            .1
    }

    /// Every topic of the cluster with its partitions, sorted by name (internal topics
    /// included; [`TopicMetadata::is_internal`] tells them apart).
    pub async fn list_topics(&self) -> Result<Vec<TopicMetadata>, ClientError> {
        Ok(self.metadata(None).await?.topics)
    }

    /// The named topics with their id, partitions, leaders, replicas and ISR, in the order
    /// asked. A topic that does not exist fails the call with UNKNOWN_TOPIC_OR_PARTITION.
    pub async fn describe_topics(&self, names: &[&str]) -> Result<Vec<TopicMetadata>, ClientError> {
        let wanted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        self.retrying(Route::Any, |_| {
            let wanted = wanted.clone();
            async move {
                let md = self.client.metadata(Some(wanted.clone())).await?;
                wanted
                    .iter()
                    .map(|name| {
                        let t = md.topic(name).ok_or_else(|| {
                            ClientError::resource(
                                error_code::UNKNOWN_TOPIC_OR_PARTITION,
                                &topic_subject(name),
                                None,
                            )
                        })?;
                        check_resource(t.error_code, &topic_subject(name), None)?;
                        Ok(t.clone())
                    })
                    .collect()
            }
        })
        .await
    }

    /// Grows a topic to `new_total` partitions; `assignments` optionally places the replicas
    /// of each new partition (one list of brokers per new partition).
    pub async fn create_partitions(
        &self,
        name: &str,
        new_total: i32,
        assignments: Option<&[Vec<i32>]>,
    ) -> Result<(), ClientError> {
        let timeout_ms = self.config.common.request_timeout.as_millis() as i32;
        self.call(
            Route::Controller,
            ApiKey::CreatePartitions,
            versions::CREATE_PARTITIONS,
            |_| {
                let mut t = CreatePartitionsTopic::default();
                t.name = topic_name(name);
                t.count = new_total;
                t.assignments = assignments.map(|a| {
                    a.iter()
                        .map(|replicas| {
                            let mut x = CreatePartitionsAssignment::default();
                            x.broker_ids = replicas.iter().map(|b| BrokerId(*b)).collect();
                            x
                        })
                        .collect()
                });
                let mut req = CreatePartitionsRequest::default();
                req.topics = vec![t];
                req.timeout_ms = timeout_ms;
                Ok(RequestKind::CreatePartitions(req))
            },
            |_, response, _| {
                let ResponseKind::CreatePartitions(response) = response else {
                    return Err(unexpected("CreatePartitions", &response));
                };
                let result = response
                    .results
                    .iter()
                    .find(|t| t.name.as_str() == name)
                    .ok_or_else(|| missing(topic_subject(name)))?;
                check_resource(
                    result.error_code,
                    &topic_subject(name),
                    result.error_message.as_deref(),
                )
            },
        )
        .await
    }
}

impl Client {
    /// Creates a topic; `replication_factor` -1 takes the broker default. The admin call is
    /// [`crate::admin::Admin::create_topics`]; this shorthand, without retries, is for tools
    /// that hold a `Client` only (the bench).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: Vec<(String, String)>,
    ) -> Result<TopicId, ClientError> {
        let topic = NewTopic::new(name, partitions, replication_factor).configs(configs);
        let conn = self.any_connection().await?.1;
        create_topics_at(self, &conn, std::slice::from_ref(&topic))
            .await?
            .pop()
            .ok_or_else(|| missing(topic_subject(name)))?
            .1
    }
}

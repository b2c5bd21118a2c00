//! Changes to topics as metadata records: create, delete, add partitions, change configs.
//! Callers hold the broker's controller lock so that checks and the append are atomic.

use std::collections::BTreeMap;

use strom_metadata::{ConfigResource, MetadataImage, MetadataRecord, Uuid};
use strom_protocol::error_code as ec;

use crate::broker::Broker;
use crate::config;

/// A failure a client sees: a Kafka error code and a message.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: i16,
    pub message: String,
}

impl ApiError {
    pub fn new(code: i16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<crate::BrokerError> for ApiError {
    fn from(e: crate::BrokerError) -> Self {
        use strom_metadata::MetadataError;
        match &e {
            // Another broker's change came first (the name is taken, the partitions changed).
            crate::BrokerError::Metadata(MetadataError::Conflict(m))
                if m.contains("already exists") =>
            {
                ApiError::new(ec::TOPIC_ALREADY_EXISTS, m.clone())
            }
            crate::BrokerError::Metadata(MetadataError::Conflict(m)) => {
                ApiError::new(ec::NOT_CONTROLLER, m.clone())
            }
            crate::BrokerError::Metadata(MetadataError::NotLeader(_)) => {
                ApiError::new(ec::NOT_CONTROLLER, e.to_string())
            }
            _ => {
                tracing::error!(error = %e, "metadata change failed");
                ApiError::new(ec::KAFKA_STORAGE_ERROR, e.to_string())
            }
        }
    }
}

/// Kafka's rule: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::new(
            ec::INVALID_TOPIC_EXCEPTION,
            format!("topic name {name:?} {why}"),
        ))
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name == "." || name == ".." {
        return bad("cannot be \".\" or \"..\"");
    }
    if name.len() > 249 {
        return bad("is longer than 249 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return bad("may contain only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// Checks topic config overrides: known names, valid values.
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (name, value) in configs {
        let (def, _) = config::topic_def(name).ok_or_else(|| {
            ApiError::new(ec::INVALID_CONFIG, format!("unknown topic config {name:?}"))
        })?;
        config::validate(def, value).map_err(|m| ApiError::new(ec::INVALID_CONFIG, m))?;
    }
    Ok(())
}

/// Live brokers in placement order: alternating between racks (`broker.rack`) so that
/// consecutive brokers, and so the replicas of a partition, sit on different racks when
/// there are several; by id within a rack.
fn placement_order(image: &MetadataImage) -> Vec<i32> {
    let mut by_rack: BTreeMap<Option<String>, Vec<i32>> = BTreeMap::new();
    for b in image.live_brokers() {
        by_rack.entry(b.rack.clone()).or_default().push(b.broker_id);
    }
    let mut racks: Vec<std::collections::VecDeque<i32>> =
        by_rack.into_values().map(Into::into).collect();
    let mut out = Vec::new();
    while racks.iter().any(|r| !r.is_empty()) {
        for r in racks.iter_mut() {
            if let Some(b) = r.pop_front() {
                out.push(b);
            }
        }
    }
    out
}

/// Picks replicas for new partitions, spreading leaders across brokers and replicas across
/// racks.
fn place(
    image: &MetadataImage,
    first_partition: i32,
    count: i32,
    replication_factor: i32,
) -> Result<Vec<Vec<i32>>, ApiError> {
    let brokers = placement_order(image);
    if replication_factor < 1 || replication_factor as usize > brokers.len().max(1) {
        return Err(ApiError::new(
            ec::INVALID_REPLICATION_FACTOR,
            format!(
                "replication factor {replication_factor} is larger than the {} available broker(s)",
                brokers.len()
            ),
        ));
    }
    Ok((first_partition..first_partition + count)
        .map(|p| {
            (0..replication_factor)
                .map(|r| brokers[(p + r) as usize % brokers.len()])
                .collect()
        })
        .collect())
}

/// Creates a topic; returns its id. `partitions`/`replication_factor` of -1 mean the defaults.
pub fn create_topic(
    broker: &Broker,
    name: &str,
    partitions: i32,
    replication_factor: i32,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(Uuid, i32, i32), ApiError> {
    validate_topic_name(name)?;
    let image = broker.image();
    if image.topic(name).is_some() {
        return Err(ApiError::new(
            ec::TOPIC_ALREADY_EXISTS,
            format!("topic {name:?} already exists"),
        ));
    }
    let partitions = if partitions == -1 {
        broker.config.settings().num_partitions
    } else {
        partitions
    };
    if partitions < 1 {
        return Err(ApiError::new(
            ec::INVALID_PARTITIONS,
            format!("number of partitions must be at least 1, got {partitions}"),
        ));
    }
    let replication_factor = if replication_factor == -1 {
        broker.config.settings().default_replication_factor
    } else {
        replication_factor
    };
    validate_topic_configs(&configs)?;
    let assignment = place(&image, 0, partitions, replication_factor)?;
    let topic_id = Uuid::new_v4();
    if validate_only {
        return Ok((topic_id, partitions, replication_factor));
    }
    let mut records = vec![MetadataRecord::Topic {
        name: name.to_string(),
        topic_id,
    }];
    records.extend(configs.into_iter().map(|(k, v)| MetadataRecord::Config {
        resource: ConfigResource::Topic(name.to_string()),
        name: k,
        value: Some(v),
    }));
    records.extend(partition_records(topic_id, 0, assignment));
    broker.commit_metadata(records)?;
    tracing::info!(
        topic = name,
        partitions,
        replication_factor,
        "created topic"
    );
    Ok((topic_id, partitions, replication_factor))
}

fn partition_records(
    topic_id: Uuid,
    first: i32,
    assignment: Vec<Vec<i32>>,
) -> impl Iterator<Item = MetadataRecord> {
    assignment
        .into_iter()
        .enumerate()
        .map(move |(i, replicas)| MetadataRecord::Partition {
            topic_id,
            partition: first + i as i32,
            leader: replicas[0],
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: vec![],
            removing: vec![],
        })
}

/// Deletes a topic by name or id.
pub fn delete_topic(
    broker: &Broker,
    name: Option<&str>,
    id: Option<Uuid>,
) -> Result<(String, Uuid), ApiError> {
    let image = broker.image();
    let topic = match (name, id) {
        (Some(n), _) => image.topic(n),
        (None, Some(id)) => image.topic_by_id(&id),
        (None, None) => None,
    };
    let Some(topic) = topic else {
        return Err(match (name, id) {
            (Some(n), _) => ApiError::new(
                ec::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic {n:?} does not exist"),
            ),
            _ => ApiError::new(ec::UNKNOWN_TOPIC_ID, "no topic with that id"),
        });
    };
    let result = (topic.name.clone(), topic.topic_id);
    broker.commit_metadata(vec![MetadataRecord::RemoveTopic {
        topic_id: topic.topic_id,
    }])?;
    tracing::info!(topic = %result.0, "deleted topic");
    Ok(result)
}

/// Grows a topic to `count` partitions.
pub fn create_partitions(
    broker: &Broker,
    name: &str,
    count: i32,
    validate_only: bool,
) -> Result<(), ApiError> {
    let image = broker.image();
    let topic = image.topic(name).ok_or_else(|| {
        ApiError::new(
            ec::UNKNOWN_TOPIC_OR_PARTITION,
            format!("topic {name:?} does not exist"),
        )
    })?;
    let current = topic.partitions.len() as i32;
    if count <= current {
        return Err(ApiError::new(
            ec::INVALID_PARTITIONS,
            format!(
                "topic {name:?} has {current} partitions; the new count {count} must be larger"
            ),
        ));
    }
    let rf = topic
        .partitions
        .first()
        .map(|p| p.replicas.len() as i32)
        .unwrap_or(1);
    let assignment = place(&image, current, count - current, rf)?;
    if !validate_only {
        broker.commit_metadata(partition_records(topic.topic_id, current, assignment).collect())?;
        tracing::info!(topic = name, from = current, to = count, "added partitions");
    }
    Ok(())
}

/// Sets (`Some`) or removes (`None`) topic config overrides after validating all of them.
pub fn alter_topic_configs(
    broker: &Broker,
    name: &str,
    changes: Vec<(String, Option<String>)>,
    validate_only: bool,
) -> Result<(), ApiError> {
    let image = broker.image();
    if image.topic(name).is_none() {
        return Err(ApiError::new(
            ec::UNKNOWN_TOPIC_OR_PARTITION,
            format!("topic {name:?} does not exist"),
        ));
    }
    for (k, v) in &changes {
        let (def, _) = config::topic_def(k).ok_or_else(|| {
            ApiError::new(ec::INVALID_CONFIG, format!("unknown topic config {k:?}"))
        })?;
        if let Some(v) = v {
            config::validate(def, v).map_err(|m| ApiError::new(ec::INVALID_CONFIG, m))?;
        }
    }
    if !validate_only && !changes.is_empty() {
        broker.commit_metadata(
            changes
                .into_iter()
                .map(|(k, v)| MetadataRecord::Config {
                    resource: ConfigResource::Topic(name.to_string()),
                    name: k,
                    value: v,
                })
                .collect(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_spread_across_racks() {
        let mut img = MetadataImage::default();
        for (id, rack) in [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")] {
            img.apply(&MetadataRecord::RegisterBroker {
                broker_id: id,
                host: "h".into(),
                port: 1,
                rack: Some(rack.into()),
            });
        }
        let racks = |b: i32| (b + 1) / 2;
        for replicas in place(&img, 0, 12, 3).unwrap() {
            let mut seen: Vec<i32> = replicas.iter().map(|b| racks(*b)).collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), 3, "{replicas:?} shares a rack");
        }
        // Leaders spread over every broker.
        let leaders: std::collections::BTreeSet<i32> =
            place(&img, 0, 6, 3).unwrap().iter().map(|r| r[0]).collect();
        assert_eq!(leaders.len(), 6);
        // Fenced brokers get nothing.
        img.apply(&MetadataRecord::FenceBroker { broker_id: 6 });
        assert!(
            place(&img, 0, 12, 3)
                .unwrap()
                .iter()
                .all(|r| !r.contains(&6))
        );
    }
}

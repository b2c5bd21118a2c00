use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use crate::record::{AclBinding, ConfigResource, MetadataRecord};

/// A broker as registered.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerInfo {
    pub broker_id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// Fenced: registered but not heartbeating; it gets no leadership and no new replicas.
    pub fenced: bool,
}

/// A partition's placement and leadership.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionInfo {
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// Replicas a reassignment is adding (catching up) and removing (until it completes).
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

impl PartitionInfo {
    /// The replica set a reassignment in progress moves to (the replicas otherwise).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
            .collect()
    }
}

/// A topic with its partitions (index = partition id) and its config overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicInfo {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: Vec<PartitionInfo>,
    pub configs: BTreeMap<String, String>,
}

/// What the cluster is after some prefix of the metadata log. Immutable: a change makes a new
/// image that shares unchanged topics with the old one.
#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    /// Number of records applied to reach this image.
    pub offset: u64,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, Arc<TopicInfo>>,
    pub topic_names: HashMap<Uuid, String>,
    pub broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    /// The first producer id not yet handed out in a block.
    pub next_producer_id: i64,
    /// SCRAM credentials by (user, mechanism).
    pub scram_credentials: BTreeMap<(String, i8), ScramCredentialInfo>,
    /// Every access control entry.
    pub acls: std::collections::BTreeSet<AclBinding>,
    /// Client quotas: entity -> (key -> value), e.g. [("user", Some("alice"))] ->
    /// producer_byte_rate -> 1048576.
    pub client_quotas: BTreeMap<QuotaEntity, BTreeMap<String, f64>>,
}

/// A client quota entity: (entity type, name or None for the default) pairs sorted by type.
pub type QuotaEntity = Vec<(String, Option<String>)>;

/// The stored form of a SCRAM password (RFC 5802): never the password itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentialInfo {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

/// What changed from one image to a later one of the same log. It is computed by comparing
/// the two (unchanged topics are the same `Arc` in both), so a subscriber that skipped images
/// (a watch channel keeps only the newest) still sees every change, and the cost is one
/// pointer comparison per topic plus the work on what changed.
#[derive(Debug, Clone, Default)]
pub struct MetadataDelta {
    /// Topics that are new or changed (placement, leadership, ISR, configs), as in the newer
    /// image.
    pub changed_topics: Vec<Arc<TopicInfo>>,
    /// Topics of the older image that the newer one no longer has under the same id: (name,
    /// id in the older image).
    pub removed_topics: Vec<(String, Uuid)>,
    /// Registrations or fencing changed.
    pub brokers_changed: bool,
    /// Dynamic broker configs changed.
    pub broker_configs_changed: bool,
    /// ACLs changed.
    pub acls_changed: bool,
    /// Client quotas changed.
    pub quotas_changed: bool,
    /// SCRAM credentials changed.
    pub scram_changed: bool,
}

impl MetadataDelta {
    /// The changes from `old` to `new`.
    pub fn between(old: &MetadataImage, new: &MetadataImage) -> MetadataDelta {
        let changed_topics = new
            .topics
            .iter()
            .filter(|(name, t)| old.topics.get(*name).is_none_or(|o| !Arc::ptr_eq(o, t)))
            .map(|(_, t)| t.clone())
            .collect();
        let removed_topics = old
            .topics
            .iter()
            .filter(|(name, t)| {
                new.topics
                    .get(*name)
                    .is_none_or(|n| n.topic_id != t.topic_id)
            })
            .map(|(name, t)| (name.clone(), t.topic_id))
            .collect();
        MetadataDelta {
            changed_topics,
            removed_topics,
            brokers_changed: old.brokers != new.brokers,
            broker_configs_changed: old.broker_configs != new.broker_configs,
            acls_changed: old.acls != new.acls,
            quotas_changed: old.client_quotas != new.client_quotas,
            scram_changed: old.scram_credentials != new.scram_credentials,
        }
    }

    /// Everything in `image`, as changes from an empty image.
    pub fn all(image: &MetadataImage) -> MetadataDelta {
        MetadataDelta::between(&MetadataImage::default(), image)
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changed_topics.is_empty()
            && self.removed_topics.is_empty()
            && !self.brokers_changed
            && !self.broker_configs_changed
            && !self.acls_changed
            && !self.quotas_changed
            && !self.scram_changed
    }
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicInfo>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicInfo>> {
        self.topic_names.get(id).and_then(|n| self.topics.get(n))
    }

    /// Brokers that are registered and not fenced, by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// A partition by topic id and index.
    pub fn partition(&self, topic_id: &Uuid, partition: i32) -> Option<&PartitionInfo> {
        self.topic_by_id(topic_id)
            .and_then(|t| t.partitions.get(usize::try_from(partition).ok()?))
    }

    /// Checks that `records` may be appended after this image: the checks that make
    /// concurrent writers safe (the metadata leader runs them under its write lock). A topic
    /// name is created once; a partition is added at the end; a change of a partition must
    /// come from its current partition epoch (it carries the next one), so two changes based
    /// on the same state cannot both land; producer id blocks follow each other.
    pub fn validate(&self, records: &[MetadataRecord]) -> Result<(), String> {
        let mut image = self.clone();
        for r in records {
            match r {
                MetadataRecord::Topic { name, .. } if image.topics.contains_key(name) => {
                    return Err(format!("topic {name:?} already exists"));
                }
                MetadataRecord::Partition {
                    topic_id,
                    partition,
                    partition_epoch,
                    ..
                } => {
                    let Some(topic) = image.topic_by_id(topic_id) else {
                        return Err(format!("no topic with id {topic_id}"));
                    };
                    let len = topic.partitions.len();
                    match topic.partitions.get(*partition as usize) {
                        Some(current) if current.partition_epoch + 1 != *partition_epoch => {
                            return Err(format!(
                                "partition {}-{partition} changed meanwhile (epoch {} is not the successor of {})",
                                topic.name, partition_epoch, current.partition_epoch
                            ));
                        }
                        None if *partition as usize != len => {
                            return Err(format!(
                                "partition {}-{partition} does not follow the last one ({len} exist)",
                                topic.name
                            ));
                        }
                        _ => {}
                    }
                }
                MetadataRecord::ProducerIds {
                    first_producer_id, ..
                } if *first_producer_id < image.next_producer_id => {
                    return Err(format!(
                        "producer id block at {first_producer_id} overlaps one handed out"
                    ));
                }
                _ => {}
            }
            image.apply(r);
        }
        Ok(())
    }

    /// Applies one record in place (used while building the next image).
    pub fn apply(&mut self, record: &MetadataRecord) {
        self.offset += 1;
        match record {
            MetadataRecord::RegisterBroker {
                broker_id,
                host,
                port,
                rack,
            } => {
                self.brokers.insert(
                    *broker_id,
                    BrokerInfo {
                        broker_id: *broker_id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        fenced: false,
                    },
                );
            }
            MetadataRecord::FenceBroker { broker_id } => {
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    b.fenced = true;
                }
            }
            MetadataRecord::Topic { name, topic_id } => {
                self.topic_names.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    Arc::new(TopicInfo {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: Vec::new(),
                        configs: BTreeMap::new(),
                    }),
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
                adding,
                removing,
            } => {
                let Some(name) = self.topic_names.get(topic_id) else {
                    return;
                };
                let Some(topic) = self.topics.get_mut(name) else {
                    return;
                };
                let topic = Arc::make_mut(topic);
                let info = PartitionInfo {
                    partition: *partition,
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                    adding: adding.clone(),
                    removing: removing.clone(),
                };
                let idx = *partition as usize;
                if idx < topic.partitions.len() {
                    topic.partitions[idx] = info;
                } else if idx == topic.partitions.len() {
                    topic.partitions.push(info);
                }
            }
            MetadataRecord::Config {
                resource,
                name,
                value,
            } => {
                let configs = match resource {
                    ConfigResource::Topic(topic) => match self.topics.get_mut(topic) {
                        Some(t) => &mut Arc::make_mut(t).configs,
                        None => return,
                    },
                    ConfigResource::Broker(id) => self.broker_configs.entry(*id).or_default(),
                };
                match value {
                    Some(v) => configs.insert(name.clone(), v.clone()),
                    None => configs.remove(name),
                };
            }
            MetadataRecord::ProducerIds {
                first_producer_id,
                size,
                ..
            } => {
                self.next_producer_id = self
                    .next_producer_id
                    .max(first_producer_id.saturating_add(*size));
            }
            MetadataRecord::ScramCredential {
                user,
                mechanism,
                salt,
                stored_key,
                server_key,
                iterations,
            } => {
                self.scram_credentials.insert(
                    (user.clone(), *mechanism),
                    ScramCredentialInfo {
                        salt: salt.clone(),
                        stored_key: stored_key.clone(),
                        server_key: server_key.clone(),
                        iterations: *iterations,
                    },
                );
            }
            MetadataRecord::RemoveScramCredential { user, mechanism } => {
                self.scram_credentials.remove(&(user.clone(), *mechanism));
            }
            MetadataRecord::Acl(binding) => {
                self.acls.insert(binding.clone());
            }
            MetadataRecord::RemoveAcl(binding) => {
                self.acls.remove(binding);
            }
            MetadataRecord::ClientQuota { entity, key, value } => match value {
                Some(v) => {
                    self.client_quotas
                        .entry(entity.clone())
                        .or_default()
                        .insert(key.clone(), *v);
                }
                None => {
                    if let Some(q) = self.client_quotas.get_mut(entity) {
                        q.remove(key);
                        if q.is_empty() {
                            self.client_quotas.remove(entity);
                        }
                    }
                }
            },
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(name) = self.topic_names.remove(topic_id) {
                    self.topics.remove(&name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_names_what_changed_and_nothing_else() {
        let id = |n: u8| Uuid::from_bytes([n; 16]);
        let topic = |name: &str, n: u8| {
            vec![
                MetadataRecord::Topic {
                    name: name.into(),
                    topic_id: id(n),
                },
                MetadataRecord::Partition {
                    topic_id: id(n),
                    partition: 0,
                    replicas: vec![1],
                    isr: vec![1],
                    leader: 1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    adding: vec![],
                    removing: vec![],
                },
            ]
        };
        let mut old = MetadataImage::default();
        for r in topic("a", 1)
            .iter()
            .chain(&topic("b", 2))
            .chain(&topic("c", 3))
        {
            old.apply(r);
        }
        let all = MetadataDelta::all(&old);
        assert_eq!(all.changed_topics.len(), 3);
        assert!(MetadataDelta::between(&old, &old).is_empty());

        let mut new = old.clone();
        // b: a new leader epoch; c: deleted and recreated under another id; d: new.
        new.apply(&MetadataRecord::Partition {
            topic_id: id(2),
            partition: 0,
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 1,
            partition_epoch: 1,
            adding: vec![],
            removing: vec![],
        });
        new.apply(&MetadataRecord::RemoveTopic { topic_id: id(3) });
        for r in topic("c", 4).iter().chain(&topic("d", 5)) {
            new.apply(r);
        }
        let delta = MetadataDelta::between(&old, &new);
        let mut changed: Vec<&str> = delta
            .changed_topics
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        changed.sort();
        assert_eq!(changed, ["b", "c", "d"]);
        assert_eq!(delta.removed_topics, vec![("c".to_string(), id(3))]);
        assert!(!delta.brokers_changed && !delta.acls_changed);
    }

    #[test]
    fn topics_partitions_configs_and_removal() {
        let id = Uuid::from_u128(7);
        let mut img = MetadataImage::default();
        img.apply(&MetadataRecord::Topic {
            name: "t".into(),
            topic_id: id,
        });
        for p in 0..3 {
            img.apply(&MetadataRecord::Partition {
                topic_id: id,
                partition: p,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
                adding: vec![],
                removing: vec![],
            });
        }
        img.apply(&MetadataRecord::Config {
            resource: ConfigResource::Topic("t".into()),
            name: "retention.ms".into(),
            value: Some("10".into()),
        });
        let t = img.topic("t").unwrap();
        assert_eq!(t.partitions.len(), 3);
        assert_eq!(t.configs["retention.ms"], "10");
        assert_eq!(img.topic_by_id(&id).unwrap().name, "t");
        img.apply(&MetadataRecord::RemoveTopic { topic_id: id });
        assert!(img.topic("t").is_none());
        assert_eq!(img.offset, 6);
    }

    #[test]
    fn security_records_apply_and_survive_json() {
        let acl = AclBinding {
            resource_type: 2,
            resource_name: "orders-".into(),
            pattern_type: 4,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: 4,
            permission_type: 3,
        };
        let entity = vec![("user".to_string(), Some("alice".to_string()))];
        let records = vec![
            MetadataRecord::ScramCredential {
                user: "alice".into(),
                mechanism: 1,
                salt: vec![1, 2],
                stored_key: vec![3],
                server_key: vec![4],
                iterations: 4096,
            },
            MetadataRecord::Acl(acl.clone()),
            MetadataRecord::ClientQuota {
                entity: entity.clone(),
                key: "producer_byte_rate".into(),
                value: Some(1024.0),
            },
        ];
        let json = serde_json::to_string(&records).unwrap();
        let back: Vec<MetadataRecord> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, records);
        let mut img = MetadataImage::default();
        for r in &back {
            img.apply(r);
        }
        assert_eq!(
            img.scram_credentials[&("alice".to_string(), 1)].iterations,
            4096
        );
        assert!(img.acls.contains(&acl));
        assert_eq!(img.client_quotas[&entity]["producer_byte_rate"], 1024.0);
        img.apply(&MetadataRecord::RemoveScramCredential {
            user: "alice".into(),
            mechanism: 1,
        });
        img.apply(&MetadataRecord::RemoveAcl(acl));
        img.apply(&MetadataRecord::ClientQuota {
            entity,
            key: "producer_byte_rate".into(),
            value: None,
        });
        assert!(img.scram_credentials.is_empty() && img.acls.is_empty());
        assert!(img.client_quotas.is_empty());
    }
}

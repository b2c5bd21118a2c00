//! The registry's state, rebuilt from the log by every instance, and the layout of the log's
//! records.
//!
//! # Record layout (keys and values are JSON)
//!
//! | key | value |
//! |---|---|
//! | `{"keytype":"SCHEMA","subject":S,"version":V,"magic":1,"nonce":N}` | `{"subject":S,"version":V,"id":I,"schemaType":T,"schema":TEXT,"references":[...],"offset":O}` |
//! | `{"keytype":"DELETE_VERSION","subject":S,"version":V,"magic":1,"nonce":N}` | `{"deleted":true}` |
//! | `{"keytype":"CONFIG","subject":S or null,"magic":0}` | `{"compatibilityLevel":L,"normalize":B}` |
//! | `{"keytype":"MODE","subject":S or null,"magic":0}` | `{"mode":M}` |
//! | `{"keytype":"MAX_ID","magic":0}` | `{"id":I}` |
//!
//! A null value is a tombstone: a hard delete (of a version and its soft-delete marker), or
//! the removal of a config or mode.
//!
//! # Why ids are unique across instances
//!
//! A schema record carries `offset`: the end of the log when its writer decided on its id
//! and version. Every instance accepts a schema record only if it sits at exactly that
//! offset, i.e. nothing was appended between the writer's read of the whole log and its
//! write. Two writers that decide concurrently both aim at the same offset; only one record
//! can land there, and the other is ignored by everyone (its writer sees the offset it got,
//! and retries after reading the winner). The rule depends only on a record's own offset,
//! which compaction never changes, so every instance, now or after a restart, accepts the
//! same records. Keys carry a per-attempt nonce, so a refused record never shares a key with
//! an accepted one and compaction cannot replace the winner by the loser. The strom-client
//! producer sends each batch once (it retries only requests the broker refused), so a
//! record is never duplicated at a later offset.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compat::Level;
use crate::format::SchemaType;
use crate::log::LogRecord;

/// A reference from one schema to another registered one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reference {
    pub name: String,
    pub subject: String,
    pub version: i32,
}

/// The registry's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Mode {
    Readwrite,
    Readonly,
    Import,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim().to_ascii_uppercase().as_str() {
            "READWRITE" => Some(Mode::Readwrite),
            "READONLY" => Some(Mode::Readonly),
            "IMPORT" => Some(Mode::Import),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Readwrite => "READWRITE",
            Mode::Readonly => "READONLY",
            Mode::Import => "IMPORT",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaKey {
    pub keytype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    pub magic: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaValue {
    pub subject: String,
    pub version: i32,
    pub id: i32,
    #[serde(rename = "schemaType", default)]
    pub schema_type: SchemaType,
    pub schema: String,
    #[serde(default)]
    pub references: Vec<Reference>,
    /// The log end offset its writer read before deciding; see the module docs.
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigValue {
    #[serde(
        rename = "compatibilityLevel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub compatibility_level: Option<Level>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<bool>,
}

/// One version of a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub subject: String,
    pub version: i32,
    pub id: i32,
    pub deleted: bool,
    /// The key of its schema record and of its soft-delete marker (for tombstones).
    pub key: Vec<u8>,
    pub delete_key: Option<Vec<u8>>,
}

/// A schema by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchema {
    pub id: i32,
    pub schema_type: SchemaType,
    pub schema: String,
    pub references: Vec<Reference>,
}

/// What every instance derives from the log.
#[derive(Debug, Default, Clone)]
pub struct State {
    /// Versions by subject, in version order.
    pub subjects: BTreeMap<String, BTreeMap<i32, Version>>,
    pub schemas: HashMap<i32, StoredSchema>,
    pub configs: HashMap<Option<String>, ConfigValue>,
    pub modes: HashMap<Option<String>, Mode>,
    /// The highest id ever handed out, hard-deleted ones included.
    pub max_id: i32,
    /// The offset after the last applied record.
    pub applied: i64,
    /// Schema-record keys and nonces of soft-delete markers, for applying updates.
    by_key: HashMap<Vec<u8>, (String, i32)>,
    delete_markers: HashMap<Vec<u8>, (String, i32)>,
}

/// Content identity of a schema: equal for schemas that share an id.
pub fn content_key(ty: SchemaType, canonical: &str, refs: &[Reference]) -> String {
    let refs = serde_json::to_string(refs).unwrap_or_default();
    format!("{ty}\u{0}{canonical}\u{0}{refs}")
}

impl State {
    /// Applies one record; records at offsets already applied are skipped.
    pub fn apply(&mut self, record: &LogRecord) {
        if record.offset < self.applied {
            return;
        }
        self.applied = record.offset + 1;
        let Ok(key) = serde_json::from_slice::<SchemaKey>(&record.key) else {
            tracing::warn!(
                offset = record.offset,
                "schema registry: a record with an unreadable key was skipped"
            );
            return;
        };
        let raw_key = record.key.to_vec();
        match key.keytype.as_str() {
            "SCHEMA" => match &record.value {
                None => self.remove_version(&raw_key),
                Some(v) => match serde_json::from_slice::<SchemaValue>(v) {
                    Ok(v) => self.add_version(raw_key, v, record.offset),
                    Err(e) => {
                        tracing::warn!(offset = record.offset, error = %e, "schema registry: an unreadable schema record was skipped")
                    }
                },
            },
            "DELETE_VERSION" => {
                let (Some(subject), Some(version)) = (key.subject, key.version) else {
                    return;
                };
                match &record.value {
                    Some(_) => {
                        if let Some(v) = self
                            .subjects
                            .get_mut(&subject)
                            .and_then(|vs| vs.get_mut(&version))
                        {
                            v.deleted = true;
                            v.delete_key = Some(raw_key.clone());
                            self.delete_markers.insert(raw_key, (subject, version));
                        }
                    }
                    None => {
                        self.delete_markers.remove(&raw_key);
                    }
                }
            }
            "CONFIG" => match record
                .value
                .as_ref()
                .and_then(|v| serde_json::from_slice::<ConfigValue>(v).ok())
            {
                Some(c) => {
                    self.configs.insert(key.subject, c);
                }
                None => {
                    self.configs.remove(&key.subject);
                }
            },
            "MODE" => match record
                .value
                .as_ref()
                .and_then(|v| serde_json::from_slice::<Value>(v).ok())
                .and_then(|v| v.get("mode").and_then(Value::as_str).and_then(Mode::parse))
            {
                Some(m) => {
                    self.modes.insert(key.subject, m);
                }
                None => {
                    self.modes.remove(&key.subject);
                }
            },
            "MAX_ID" => {
                if let Some(id) = record
                    .value
                    .as_ref()
                    .and_then(|v| serde_json::from_slice::<Value>(v).ok())
                    .and_then(|v| v.get("id").and_then(Value::as_i64))
                {
                    self.max_id = self.max_id.max(id as i32);
                }
            }
            _ => {}
        }
    }

    fn add_version(&mut self, key: Vec<u8>, v: SchemaValue, offset: i64) {
        if v.offset != offset {
            // Its writer lost the race for this offset: see the module docs.
            return;
        }
        if let Some(existing) = self.schemas.get(&v.id)
            && (existing.schema_type, &existing.schema, &existing.references)
                != (v.schema_type, &v.schema, &v.references)
        {
            // An id already bound to other content (a writer refuses this in IMPORT
            // mode; ignored here too).
            return;
        }
        let versions = self.subjects.entry(v.subject.clone()).or_default();
        if versions.contains_key(&v.version) {
            return;
        }
        versions.insert(
            v.version,
            Version {
                subject: v.subject.clone(),
                version: v.version,
                id: v.id,
                deleted: false,
                key: key.clone(),
                delete_key: None,
            },
        );
        self.by_key.insert(key, (v.subject.clone(), v.version));
        self.max_id = self.max_id.max(v.id);
        self.schemas.entry(v.id).or_insert(StoredSchema {
            id: v.id,
            schema_type: v.schema_type,
            schema: v.schema,
            references: v.references,
        });
    }

    fn remove_version(&mut self, key: &[u8]) {
        let Some((subject, version)) = self.by_key.remove(key) else {
            return;
        };
        let mut id = None;
        if let Some(vs) = self.subjects.get_mut(&subject) {
            if let Some(v) = vs.remove(&version) {
                id = Some(v.id);
                if let Some(dk) = v.delete_key {
                    self.delete_markers.remove(&dk);
                }
            }
            if vs.is_empty() {
                self.subjects.remove(&subject);
            }
        }
        // The schema stays while any version still uses its id.
        if let Some(id) = id {
            let used = self
                .subjects
                .values()
                .any(|vs| vs.values().any(|v| v.id == id));
            if !used {
                self.schemas.remove(&id);
            }
        }
    }

    /// The versions of a subject; soft-deleted ones only with `deleted`.
    pub fn versions(&self, subject: &str, deleted: bool) -> Vec<&Version> {
        self.subjects
            .get(subject)
            .map(|vs| vs.values().filter(|v| deleted || !v.deleted).collect())
            .unwrap_or_default()
    }

    pub fn subject_names(&self, deleted: bool) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(_, vs)| deleted || vs.values().any(|v| !v.deleted))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// The compatibility level for a subject: its own, else the global one, else BACKWARD.
    pub fn level(&self, subject: Option<&str>) -> Level {
        subject
            .and_then(|s| self.configs.get(&Some(s.to_string())))
            .and_then(|c| c.compatibility_level)
            .or_else(|| self.configs.get(&None).and_then(|c| c.compatibility_level))
            .unwrap_or_default()
    }

    pub fn normalize(&self, subject: Option<&str>) -> bool {
        subject
            .and_then(|s| self.configs.get(&Some(s.to_string())))
            .and_then(|c| c.normalize)
            .or_else(|| self.configs.get(&None).and_then(|c| c.normalize))
            .unwrap_or(false)
    }

    pub fn mode(&self, subject: Option<&str>) -> Mode {
        subject
            .and_then(|s| self.modes.get(&Some(s.to_string())))
            .copied()
            .or_else(|| self.modes.get(&None).copied())
            .unwrap_or(Mode::Readwrite)
    }

    /// (subject, version) pairs whose schema references `subject` at `version`.
    pub fn referenced_by(&self, subject: &str, version: i32) -> Vec<i32> {
        let mut ids: Vec<i32> = self
            .subjects
            .values()
            .flat_map(|vs| vs.values())
            .filter(|v| !v.deleted)
            .filter_map(|v| self.schemas.get(&v.id))
            .filter(|s| {
                s.references
                    .iter()
                    .any(|r| r.subject == subject && r.version == version)
            })
            .map(|s| s.id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

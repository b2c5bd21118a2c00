//! The registry: the state read from the log, and every operation of the REST API on it.
//! Reads are answered from this instance's copy; writes go through [`Registry::write`],
//! which orders them in the log (see [`crate::state`] for why ids stay unique).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::compat::{self, Level};
use crate::error::{ApiError, code};
use crate::format::{self, Dependency, Parsed, SchemaType};
use crate::log::Log;
use crate::state::{
    ConfigValue, Mode, Reference, SchemaKey, SchemaValue, State, StoredSchema, content_key,
};

/// Attempts of one write when other instances keep winning the race for the log's end. Each
/// lost race means that another write succeeded, so a write fails only if this many others
/// got in first while it was trying.
const WRITE_ATTEMPTS: u32 = 200;
/// How long a request waits for this instance to read the log up to a write.
const SYNC_TIMEOUT: Duration = Duration::from_secs(15);

/// A version as the API names it: a number, or the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Number(i32),
}

impl VersionSpec {
    pub fn parse(s: &str) -> Result<VersionSpec, ApiError> {
        if s == "latest" || s == "-1" {
            return Ok(VersionSpec::Latest);
        }
        match s.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(VersionSpec::Number(n)),
            _ => Err(ApiError::invalid_version(s)),
        }
    }
}

/// A schema to register, test or look up.
#[derive(Debug, Clone, Default)]
pub struct SchemaInput {
    pub schema: String,
    pub schema_type: SchemaType,
    pub references: Vec<Reference>,
    /// IMPORT mode only.
    pub id: Option<i32>,
    pub version: Option<i32>,
}

/// A registered version with its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub subject: String,
    pub version: i32,
    pub id: i32,
    pub schema_type: SchemaType,
    pub schema: String,
    pub references: Vec<Reference>,
    pub deleted: bool,
}

/// A parsed schema with its identity.
struct Compiled {
    parsed: Parsed,
    content: String,
}

pub struct Registry {
    log: Arc<dyn Log>,
    state: RwLock<State>,
    applied: watch::Sender<i64>,
    writes: tokio::sync::Mutex<()>,
    nonce_prefix: String,
    nonce: AtomicU64,
    /// Parsed schemas by id (schemas never change under an id).
    parsed: Mutex<HashMap<i32, Arc<Compiled>>>,
    /// Set once the log has been read up to its end as it was at start-up.
    caught_up: std::sync::atomic::AtomicBool,
    me: std::sync::Weak<Registry>,
    /// With [`Registry::start_lazily`]: the shutdown signal, until the reader starts.
    lazy_reader: Mutex<Option<watch::Receiver<bool>>>,
}

/// A random number from std's per-process hash keys, the clock and the process id.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

fn random_prefix() -> String {
    format!("{:016x}", random_u64())
}

impl Registry {
    /// A registry over `log`; call [`Registry::run_reader`] (or [`Registry::start`]) to keep
    /// it reading.
    pub fn new(log: Arc<dyn Log>) -> Arc<Registry> {
        Registry::build(log, None)
    }

    fn build(log: Arc<dyn Log>, lazy: Option<watch::Receiver<bool>>) -> Arc<Registry> {
        let (applied, _) = watch::channel(0);
        Arc::new_cyclic(|me| Registry {
            log,
            state: RwLock::new(State::default()),
            applied,
            writes: tokio::sync::Mutex::new(()),
            nonce_prefix: random_prefix(),
            nonce: AtomicU64::new(0),
            parsed: Mutex::new(HashMap::new()),
            caught_up: std::sync::atomic::AtomicBool::new(false),
            me: me.clone(),
            lazy_reader: Mutex::new(lazy),
        })
    }

    /// A registry whose reader runs on the current tokio runtime until `shutdown` is set.
    pub fn start(log: Arc<dyn Log>, shutdown: watch::Receiver<bool>) -> Arc<Registry> {
        let registry = Registry::new(log);
        tokio::spawn(registry.clone().run_reader(shutdown));
        registry
    }

    /// A registry whose reader starts with the first request that needs the state, so that a
    /// registry nobody uses holds no connection to the broker (and counts against no
    /// connection limit); it runs until `shutdown` is set.
    pub fn start_lazily(log: Arc<dyn Log>, shutdown: watch::Receiver<bool>) -> Arc<Registry> {
        Registry::build(log, Some(shutdown))
    }

    /// Starts the reader of a lazily started registry, once.
    fn ensure_reader(&self) {
        let pending = self.lazy_reader.lock().expect("reader lock").take();
        if let (Some(shutdown), Some(me)) = (pending, self.me.upgrade()) {
            tokio::spawn(me.run_reader(shutdown));
        }
    }

    /// Reads the log into the state until `shutdown` is set.
    pub async fn run_reader(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut next = 0i64;
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let read = tokio::select! {
                r = self.log.read(next, Duration::from_millis(500)) => r,
                _ = shutdown.changed() => return,
            };
            match read {
                Ok((records, after)) => {
                    failures = 0;
                    {
                        let mut state = self.state.write().expect("state lock");
                        for r in &records {
                            state.apply(r);
                        }
                        state.applied = state.applied.max(after);
                    }
                    next = after;
                    self.applied.send_replace(after);
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(20) {
                        tracing::warn!(error = %e, "schema registry: cannot read the _schemas topic; retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    /// Waits until this instance has read the log up to `offset`.
    async fn wait_applied(&self, offset: i64) -> Result<(), ApiError> {
        let mut rx = self.applied.subscribe();
        let wait = rx.wait_for(|applied| *applied >= offset);
        match tokio::time::timeout(SYNC_TIMEOUT, wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::timeout(
                "Timed out waiting for the registry to read the _schemas topic",
            )),
        }
    }

    /// Waits until this instance has read everything written so far.
    pub async fn sync(&self) -> Result<(), ApiError> {
        self.ensure_reader();
        let end =
            self.log.end_offset().await.map_err(|e| {
                ApiError::store(format!("Error while reading the _schemas topic: {e}"))
            })?;
        self.wait_applied(end).await
    }

    /// Waits, on the first call only, until this instance has read the log written before it
    /// started; later reads answer from the local copy at once.
    pub async fn ready(&self) -> Result<(), ApiError> {
        if self.caught_up.load(Ordering::Acquire) {
            return Ok(());
        }
        self.sync().await?;
        self.caught_up.store(true, Ordering::Release);
        Ok(())
    }

    /// Runs `f` on the current state.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.read().expect("state lock"))
    }

    fn next_nonce(&self) -> String {
        format!(
            "{}-{}",
            self.nonce_prefix,
            self.nonce.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Decides on the current state and appends what `decide` returns, aiming at the log's
    /// end; retried when another writer got there first. `decide` gets the state and the
    /// offset its records must land at.
    async fn write<T: Clone>(
        &self,
        mut decide: impl FnMut(
            &Registry,
            &State,
            i64,
        ) -> Result<(T, Vec<(Bytes, Option<Bytes>)>), ApiError>,
    ) -> Result<T, ApiError> {
        self.ensure_reader();
        let _one_at_a_time = self.writes.lock().await;
        let mut lost = 0u32;
        for _ in 0..WRITE_ATTEMPTS {
            let end = self.log.end_offset().await.map_err(|e| {
                ApiError::store(format!("Error while reading the _schemas topic: {e}"))
            })?;
            self.wait_applied(end).await?;
            let (result, records) = {
                let state = self.state.read().expect("state lock");
                decide(self, &state, end)?
            };
            if records.is_empty() {
                return Ok(result);
            }
            let n = records.len() as i64;
            let base = self.log.append(records).await.map_err(|e| {
                ApiError::store(format!("Error while writing to the _schemas topic: {e}"))
            })?;
            self.wait_applied(base + n).await?;
            if base == end {
                return Ok(result);
            }
            // Another instance wrote first: our records are ignored by everyone; decide again,
            // after a short random pause so that two writers do not stay in step.
            tracing::debug!(
                aimed = end,
                got = base,
                "schema registry: lost a write race; retrying"
            );
            lost += 1;
            let pause = random_u64() % (u64::from(lost.min(20)) * 500 + 1);
            tokio::time::sleep(Duration::from_micros(pause)).await;
        }
        Err(ApiError::store(
            "Could not write to the _schemas topic: other writers kept writing first",
        ))
    }

    // -----------------------------------------------------------------------------------------
    // schemas

    fn compiled(&self, state: &State, id: i32) -> Result<Arc<Compiled>, ApiError> {
        if let Some(c) = self.parsed.lock().expect("cache lock").get(&id) {
            return Ok(c.clone());
        }
        let stored = state
            .schemas
            .get(&id)
            .ok_or_else(ApiError::schema_not_found)?;
        let deps = dependencies(state, &stored.references)?;
        let parsed = format::parse(stored.schema_type, &stored.schema, &deps)
            .map_err(|e| ApiError::store(format!("Stored schema {id} does not parse: {e}")))?;
        let content = content_key(stored.schema_type, parsed.canonical(), &stored.references);
        let c = Arc::new(Compiled { parsed, content });
        self.parsed
            .lock()
            .expect("cache lock")
            .insert(id, c.clone());
        Ok(c)
    }

    fn compile_input(
        &self,
        state: &State,
        input: &SchemaInput,
    ) -> Result<(Parsed, String), ApiError> {
        let deps = dependencies(state, &input.references)?;
        let parsed = format::parse(input.schema_type, &input.schema, &deps)
            .map_err(ApiError::invalid_schema)?;
        let content = content_key(input.schema_type, parsed.canonical(), &input.references);
        Ok((parsed, content))
    }

    /// A schema's text in the API's `format`: `serialized` turns Protobuf into a base64
    /// `FileDescriptorProto`; anything else is the text as stored.
    pub fn formatted(
        &self,
        schema_type: SchemaType,
        text: &str,
        references: &[Reference],
        fmt: Option<&str>,
    ) -> Result<String, ApiError> {
        if schema_type != SchemaType::Protobuf || fmt != Some("serialized") {
            return Ok(text.to_string());
        }
        let deps = self.read(|s| dependencies(s, references))?;
        format::protobuf::serialized(text, &deps)
            .map_err(|e| ApiError::store(format!("Stored schema does not parse: {e}")))
    }

    pub fn schema(&self, id: i32) -> Result<StoredSchema, ApiError> {
        self.read(|s| s.schemas.get(&id).cloned())
            .ok_or_else(ApiError::schema_not_found)
    }

    /// Registers `input` under `subject`; returns (id, version).
    pub async fn register(
        &self,
        subject: &str,
        input: SchemaInput,
        normalize: bool,
    ) -> Result<(i32, i32), ApiError> {
        self.write(|reg, state, end| {
            let mode = state.mode(Some(subject));
            if mode == Mode::Readonly {
                return Err(ApiError::not_permitted(format!(
                    "Subject {subject} is in read-only mode"
                )));
            }
            if (input.id.is_some() || input.version.is_some()) && mode != Mode::Import {
                return Err(ApiError::not_permitted(
                    "A schema id or version can be given only in IMPORT mode",
                ));
            }
            let (parsed, content) = reg.compile_input(state, &input)?;
            let normalize = normalize || state.normalize(Some(subject));
            let text = if normalize {
                parsed.normalized(&input.schema)
            } else {
                input.schema.clone()
            };
            let live = state.versions(subject, false);
            // Already registered under this subject: the same id and version.
            for v in &live {
                if reg.compiled(state, v.id)?.content == content && input.id.is_none_or(|i| i == v.id) {
                    return Ok(((v.id, v.version), Vec::new()));
                }
            }
            if mode != Mode::Import {
                let mut previous = Vec::new();
                let compiled: Vec<(i32, Arc<Compiled>)> = live
                    .iter()
                    .map(|v| reg.compiled(state, v.id).map(|c| (v.version, c)))
                    .collect::<Result<_, _>>()?;
                for (version, c) in &compiled {
                    previous.push((*version, &c.parsed));
                }
                let problems = compat::check(state.level(Some(subject)), &parsed, &previous);
                if !problems.is_empty() {
                    return Err(ApiError::new(
                        409,
                        code::INCOMPATIBLE,
                        format!(
                            "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]",
                            problems.join("; ")
                        ),
                    ));
                }
            }
            let id = match input.id {
                Some(id) => {
                    if state.schemas.contains_key(&id) && reg.compiled(state, id)?.content != content {
                        return Err(ApiError::not_permitted(format!(
                            "Overwrite new schema with id {id} is not permitted: the id is taken by another schema"
                        )));
                    }
                    id
                }
                None => match state
                    .schemas
                    .keys()
                    .copied()
                    .filter(|id| reg.compiled(state, *id).is_ok_and(|c| c.content == content))
                    .min()
                {
                    Some(id) => id,
                    None => state.max_id + 1,
                },
            };
            let max_version = state
                .subjects
                .get(subject)
                .and_then(|vs| vs.keys().next_back().copied())
                .unwrap_or(0);
            let version = match input.version {
                Some(v) if state.subjects.get(subject).is_some_and(|vs| vs.contains_key(&v)) => {
                    return Err(ApiError::not_permitted(format!(
                        "Version {v} of subject {subject} already exists"
                    )));
                }
                Some(v) => v,
                None => max_version + 1,
            };
            let key = SchemaKey {
                keytype: "SCHEMA".into(),
                subject: Some(subject.to_string()),
                version: Some(version),
                magic: 1,
                nonce: Some(reg.next_nonce()),
            };
            let value = SchemaValue {
                subject: subject.to_string(),
                version,
                id,
                schema_type: input.schema_type,
                schema: text,
                references: input.references.clone(),
                offset: end,
            };
            Ok(((id, version), vec![(json_bytes(&key), Some(json_bytes(&value)))]))
        })
        .await
    }

    /// The version of `subject` that holds `input`.
    pub fn lookup(
        &self,
        subject: &str,
        input: &SchemaInput,
        deleted: bool,
    ) -> Result<VersionInfo, ApiError> {
        let state = self.state.read().expect("state lock");
        let versions = state.versions(subject, deleted);
        if versions.is_empty() {
            return Err(ApiError::subject_not_found(subject));
        }
        let (_, content) = self.compile_input(&state, input)?;
        for v in versions.iter().rev() {
            if self.compiled(&state, v.id)?.content == content {
                return version_info(&state, v.subject.as_str(), v.version);
            }
        }
        Err(ApiError::schema_not_found())
    }

    /// Why `input` may not be registered under `subject`, against one version or, with
    /// `None`, against the versions its level names.
    pub fn test_compatibility(
        &self,
        subject: &str,
        version: Option<VersionSpec>,
        input: &SchemaInput,
    ) -> Result<Vec<String>, ApiError> {
        let state = self.state.read().expect("state lock");
        let (parsed, _) = self.compile_input(&state, input)?;
        let live = state.versions(subject, false);
        let level = state.level(Some(subject));
        let chosen: Vec<i32> = match version {
            None => live.iter().map(|v| v.version).collect(),
            Some(spec) => {
                if live.is_empty() && spec == VersionSpec::Latest {
                    return Ok(Vec::new());
                }
                if live.is_empty() && !state.subjects.contains_key(subject) {
                    return Err(ApiError::subject_not_found(subject));
                }
                let v = resolve_version(&state, subject, spec, false)?;
                vec![v.version]
            }
        };
        let compiled: Vec<(i32, Arc<Compiled>)> = chosen
            .iter()
            .map(|version| {
                let id = state.subjects[subject][version].id;
                self.compiled(&state, id).map(|c| (*version, c))
            })
            .collect::<Result<_, _>>()?;
        let previous: Vec<(i32, &Parsed)> = compiled.iter().map(|(v, c)| (*v, &c.parsed)).collect();
        // One chosen version: check against it whatever the level's transitivity.
        let level = if version.is_some() {
            match level {
                Level::BackwardTransitive => Level::Backward,
                Level::ForwardTransitive => Level::Forward,
                Level::FullTransitive => Level::Full,
                other => other,
            }
        } else {
            level
        };
        Ok(compat::check(level, &parsed, &previous))
    }

    pub fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
        deleted: bool,
    ) -> Result<VersionInfo, ApiError> {
        let state = self.state.read().expect("state lock");
        let v = resolve_version(&state, subject, spec, deleted)?;
        version_info(&state, subject, v.version)
    }

    /// Soft or hard deletes one version; returns its number.
    pub async fn delete_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<i32, ApiError> {
        self.write(|reg, state, _| {
            if state.mode(Some(subject)) == Mode::Readonly {
                return Err(ApiError::not_permitted(format!("Subject {subject} is in read-only mode")));
            }
            // A soft-deleted version is found too, to say that it was deleted already.
            let v = resolve_version(state, subject, spec, permanent || spec != VersionSpec::Latest)?;
            if !state.referenced_by(subject, v.version).is_empty() {
                return Err(ApiError::new(
                    422,
                    code::REFERENCE_EXISTS,
                    format!("One or more references exist to the schema {{subject={subject},version={}}}", v.version),
                ));
            }
            let records = if permanent {
                if !v.deleted {
                    return Err(ApiError::new(
                        404,
                        code::VERSION_NOT_SOFT_DELETED,
                        format!("Subject '{subject}' Version {} was not deleted first before being permanently deleted", v.version),
                    ));
                }
                reg.hard_delete_records(state, &[v.version], subject)
            } else {
                if v.deleted {
                    return Err(ApiError::new(
                        404,
                        code::VERSION_SOFT_DELETED,
                        format!("Subject '{subject}' Version {} was soft deleted. Set permanent=true to delete permanently", v.version),
                    ));
                }
                vec![reg.soft_delete_record(subject, v.version)]
            };
            Ok((v.version, records))
        })
        .await
    }

    /// Soft or hard deletes a subject; returns the versions deleted.
    pub async fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<i32>, ApiError> {
        self.write(|reg, state, _| {
            if state.mode(Some(subject)) == Mode::Readonly {
                return Err(ApiError::not_permitted(format!("Subject {subject} is in read-only mode")));
            }
            let all = state.versions(subject, true);
            if all.is_empty() {
                return Err(ApiError::subject_not_found(subject));
            }
            let live: Vec<i32> = all.iter().filter(|v| !v.deleted).map(|v| v.version).collect();
            for v in &all {
                if !state.referenced_by(subject, v.version).is_empty() {
                    return Err(ApiError::new(
                        422,
                        code::REFERENCE_EXISTS,
                        format!("One or more references exist to the schema {{subject={subject},version={}}}", v.version),
                    ));
                }
            }
            if permanent {
                if !live.is_empty() {
                    return Err(ApiError::new(
                        404,
                        code::SUBJECT_NOT_SOFT_DELETED,
                        format!("Subject '{subject}' was not deleted first before being permanently deleted"),
                    ));
                }
                let versions: Vec<i32> = all.iter().map(|v| v.version).collect();
                let mut records = reg.hard_delete_records(state, &versions, subject);
                // The subject's own config and mode go with it.
                let cfg = config_key(Some(subject));
                if state.configs.contains_key(&Some(subject.to_string())) {
                    records.push((cfg, None));
                }
                if state.modes.contains_key(&Some(subject.to_string())) {
                    records.push((mode_key(Some(subject)), None));
                }
                Ok((versions, records))
            } else {
                if live.is_empty() {
                    return Err(ApiError::new(
                        404,
                        code::SUBJECT_SOFT_DELETED,
                        format!("Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"),
                    ));
                }
                let records = live.iter().map(|v| reg.soft_delete_record(subject, *v)).collect();
                Ok((live, records))
            }
        })
        .await
    }

    fn soft_delete_record(&self, subject: &str, version: i32) -> (Bytes, Option<Bytes>) {
        let key = SchemaKey {
            keytype: "DELETE_VERSION".into(),
            subject: Some(subject.to_string()),
            version: Some(version),
            magic: 1,
            nonce: Some(self.next_nonce()),
        };
        (
            json_bytes(&key),
            Some(Bytes::from_static(b"{\"deleted\":true}")),
        )
    }

    fn hard_delete_records(
        &self,
        state: &State,
        versions: &[i32],
        subject: &str,
    ) -> Vec<(Bytes, Option<Bytes>)> {
        // Ids are never handed out twice: the highest one survives its schema's removal.
        let mut records = vec![(
            Bytes::from_static(b"{\"keytype\":\"MAX_ID\",\"magic\":0}"),
            Some(Bytes::from(format!("{{\"id\":{}}}", state.max_id))),
        )];
        for version in versions {
            if let Some(v) = state.subjects.get(subject).and_then(|vs| vs.get(version)) {
                if let Some(dk) = &v.delete_key {
                    records.push((Bytes::from(dk.clone()), None));
                }
                records.push((Bytes::from(v.key.clone()), None));
            }
        }
        records
    }

    // -----------------------------------------------------------------------------------------
    // config and mode

    pub async fn set_config(
        &self,
        subject: Option<&str>,
        config: ConfigValue,
    ) -> Result<ConfigValue, ApiError> {
        self.write(|_, state, _| {
            let mut merged = state
                .configs
                .get(&subject.map(str::to_string))
                .cloned()
                .unwrap_or(ConfigValue {
                    compatibility_level: None,
                    normalize: None,
                });
            if config.compatibility_level.is_some() {
                merged.compatibility_level = config.compatibility_level;
            }
            if config.normalize.is_some() {
                merged.normalize = config.normalize;
            }
            Ok((
                config.clone(),
                vec![(config_key(subject), Some(json_bytes(&merged)))],
            ))
        })
        .await
    }

    /// Removes a config; returns the one removed.
    pub async fn delete_config(&self, subject: Option<&str>) -> Result<ConfigValue, ApiError> {
        self.write(|_, state, _| {
            let current = state.configs.get(&subject.map(str::to_string)).cloned();
            match (current, subject) {
                (Some(c), _) => Ok((c, vec![(config_key(subject), None)])),
                (None, Some(s)) => {
                    if state.subjects.contains_key(s) {
                        Err(subject_config_missing(s))
                    } else {
                        Err(ApiError::subject_not_found(s))
                    }
                }
                (None, None) => Ok((
                    ConfigValue {
                        compatibility_level: Some(Level::default()),
                        normalize: None,
                    },
                    Vec::new(),
                )),
            }
        })
        .await
    }

    pub async fn set_mode(
        &self,
        subject: Option<&str>,
        mode: Mode,
        force: bool,
    ) -> Result<Mode, ApiError> {
        self.write(|_, state, _| {
            if mode == Mode::Import && !force {
                let has_schemas = match subject {
                    Some(s) => !state.versions(s, true).is_empty(),
                    None => !state.subjects.is_empty(),
                };
                if has_schemas {
                    return Err(ApiError::not_permitted(
                        "Cannot import since found existing subjects (use force=true to override)",
                    ));
                }
            }
            let value = serde_json::json!({ "mode": mode.name() });
            Ok((mode, vec![(mode_key(subject), Some(json_bytes(&value)))]))
        })
        .await
    }

    pub async fn delete_mode(&self, subject: &str) -> Result<Mode, ApiError> {
        self.write(
            |_, state, _| match state.modes.get(&Some(subject.to_string())) {
                Some(m) => Ok((*m, vec![(mode_key(Some(subject)), None)])),
                None => Err(ApiError::new(
                    404,
                    code::SUBJECT_LEVEL_MODE_NOT_CONFIGURED,
                    format!("Subject '{subject}' does not have subject-level mode configured"),
                )),
            },
        )
        .await
    }
}

pub fn subject_config_missing(subject: &str) -> ApiError {
    ApiError::new(
        404,
        code::SUBJECT_LEVEL_COMPATIBILITY_NOT_CONFIGURED,
        format!("Subject '{subject}' does not have subject-level compatibility configured"),
    )
}

fn config_key(subject: Option<&str>) -> Bytes {
    json_bytes(&serde_json::json!({"keytype": "CONFIG", "subject": subject, "magic": 0}))
}

fn mode_key(subject: Option<&str>) -> Bytes {
    json_bytes(&serde_json::json!({"keytype": "MODE", "subject": subject, "magic": 0}))
}

fn json_bytes<T: serde::Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).expect("JSON"))
}

/// Every schema reachable through `refs`, by reference name.
pub fn dependencies(state: &State, refs: &[Reference]) -> Result<Vec<Dependency>, ApiError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<Reference> = refs.to_vec();
    while let Some(r) = stack.pop() {
        if !seen.insert((r.name.clone(), r.subject.clone(), r.version)) {
            continue;
        }
        let spec = if r.version == -1 {
            VersionSpec::Latest
        } else {
            VersionSpec::Number(r.version)
        };
        let v = resolve_version(state, &r.subject, spec, false).map_err(|_| {
            ApiError::invalid_schema(format!(
                "Invalid schema: reference {:?} names subject {:?} version {}, which is not registered",
                r.name, r.subject, r.version
            ))
        })?;
        let s = &state.schemas[&v.id];
        out.push(Dependency {
            name: r.name.clone(),
            text: s.schema.clone(),
        });
        stack.extend(s.references.iter().cloned());
    }
    Ok(out)
}

fn resolve_version<'s>(
    state: &'s State,
    subject: &str,
    spec: VersionSpec,
    deleted: bool,
) -> Result<&'s crate::state::Version, ApiError> {
    let Some(all) = state.subjects.get(subject) else {
        return Err(ApiError::subject_not_found(subject));
    };
    if !deleted && all.values().all(|v| v.deleted) {
        return Err(ApiError::subject_not_found(subject));
    }
    let found = match spec {
        VersionSpec::Latest => all.values().rev().find(|v| deleted || !v.deleted),
        VersionSpec::Number(n) => all.get(&n).filter(|v| deleted || !v.deleted),
    };
    found.ok_or_else(|| {
        let label = match spec {
            VersionSpec::Latest => "latest".to_string(),
            VersionSpec::Number(n) => n.to_string(),
        };
        ApiError::version_not_found(subject, &label)
    })
}

fn version_info(state: &State, subject: &str, version: i32) -> Result<VersionInfo, ApiError> {
    let v = state
        .subjects
        .get(subject)
        .and_then(|vs| vs.get(&version))
        .ok_or_else(|| ApiError::version_not_found(subject, &version.to_string()))?;
    let s = state
        .schemas
        .get(&v.id)
        .ok_or_else(ApiError::schema_not_found)?;
    Ok(VersionInfo {
        subject: subject.to_string(),
        version,
        id: v.id,
        schema_type: s.schema_type,
        schema: s.schema.clone(),
        references: s.references.clone(),
        deleted: v.deleted,
    })
}

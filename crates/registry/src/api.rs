//! The REST API, in Confluent Schema Registry's shapes: paths, JSON bodies, the
//! `application/vnd.schemaregistry.v1+json` content type and `{"error_code", "message"}`
//! errors.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::compat::Level;
use crate::error::{ApiError, code};
use crate::format::SchemaType;
use crate::registry::{Registry, SchemaInput, VersionInfo, VersionSpec, subject_config_missing};
use crate::state::{ConfigValue, Mode, Reference};

pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

type Shared = State<Arc<Registry>>;
type Params = Query<HashMap<String, String>>;
type Result<T> = std::result::Result<T, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error_code": self.code, "message": self.message});
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        with_type(status, body.to_string())
    }
}

fn with_type(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

fn ok(v: Value) -> Response {
    with_type(StatusCode::OK, v.to_string())
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Checks a user name and password (HTTP basic authentication). The broker's SASL users are
/// meant to plug in here.
pub type Authenticator = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Every route of the registry, open to all.
pub fn router(registry: Arc<Registry>) -> Router {
    router_with(registry, None)
}

/// Every route of the registry; with `auth`, each request must carry HTTP basic credentials
/// that it accepts (401 with error code 401 otherwise).
pub fn router_with(registry: Arc<Registry>, auth: Option<Authenticator>) -> Router {
    let app = routes(registry);
    match auth {
        None => app,
        Some(auth) => app.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let auth = auth.clone();
                async move {
                    let credentials = req
                        .headers()
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(basic_credentials);
                    match credentials {
                        Some((user, password)) if auth(&user, &password) => next.run(req).await,
                        _ => {
                            let mut r = ApiError::new(401, 401, "Unauthorized").into_response();
                            r.headers_mut().insert(
                                header::WWW_AUTHENTICATE,
                                HeaderValue::from_static("Basic realm=\"strom\""),
                            );
                            r
                        }
                    }
                }
            },
        )),
    }
}

/// `Basic base64(user:password)` to (user, password).
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let encoded = value.strip_prefix("Basic ")?.trim();
    let decoded = crate::format::protobuf::decode_base64(encoded)?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn routes(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route("/schemas/types", get(schema_types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(schema_text_by_id))
        .route("/schemas/ids/{id}/versions", get(schema_versions))
        .route("/schemas/ids/{id}/subjects", get(schema_subjects))
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_all),
        )
        .route(
            "/config",
            get(get_global_config)
                .put(put_global_config)
                .delete(delete_global_config),
        )
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route("/mode", get(get_global_mode).put(put_global_mode))
        .route(
            "/mode/{subject}",
            get(get_subject_mode)
                .put(put_subject_mode)
                .delete(delete_subject_mode),
        )
        .fallback(not_found)
        .with_state(registry)
}

async fn not_found() -> ApiError {
    ApiError::new(404, code::NOT_FOUND, "HTTP 404 Not Found")
}

async fn root() -> Response {
    ok(json!({}))
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T> {
    if body.is_empty() {
        return Err(ApiError::new(400, 400, "The request has no body"));
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::unprocessable(format!("Unrecognizable request body: {e}"))
        } else {
            ApiError::new(400, 400, format!("The request body is not JSON: {e}"))
        }
    })
}

#[derive(Deserialize)]
struct SchemaBody {
    schema: Option<String>,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
    id: Option<i32>,
    version: Option<i32>,
}

fn schema_input(body: &Bytes) -> Result<SchemaInput> {
    let b: SchemaBody = parse_json(body)?;
    let schema_type = match b.schema_type.as_deref() {
        None => SchemaType::Avro,
        Some(t) => SchemaType::parse(t)
            .ok_or_else(|| ApiError::invalid_schema(format!("Invalid schema type {t}")))?,
    };
    let schema = b
        .schema
        .ok_or_else(|| ApiError::invalid_schema("Empty schema"))?;
    Ok(SchemaInput {
        schema,
        schema_type,
        references: b.references,
        id: b.id.filter(|i| *i > 0),
        version: b.version.filter(|v| *v > 0),
    })
}

fn schema_json(
    schema_type: SchemaType,
    schema: &str,
    refs: &[Reference],
) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    if schema_type != SchemaType::Avro {
        m.insert("schemaType".into(), json!(schema_type.name()));
    }
    if !refs.is_empty() {
        m.insert("references".into(), json!(refs));
    }
    m.insert("schema".into(), json!(schema));
    m
}

fn version_json(v: &VersionInfo) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("subject".into(), json!(v.subject));
    m.insert("version".into(), json!(v.version));
    m.insert("id".into(), json!(v.id));
    m.extend(schema_json(v.schema_type, &v.schema, &v.references));
    if v.deleted {
        m.insert("deleted".into(), json!(true));
    }
    Value::Object(m)
}

fn subject_id(s: &str) -> String {
    s.to_string()
}

/// Reads answer from this instance's copy once it has read the log written before it
/// started.
async fn synced(reg: &Registry) -> Result<()> {
    reg.ready().await
}

/// A schema by id; an id this instance has not seen yet may have just been registered
/// through another instance, so it reads the log to its end once before answering 40403.
async fn schema_synced(reg: &Registry, id: i32) -> Result<crate::state::StoredSchema> {
    synced(reg).await?;
    match reg.schema(id) {
        Ok(s) => Ok(s),
        Err(e) if e.code == code::SCHEMA_NOT_FOUND => {
            reg.sync().await?;
            reg.schema(id)
        }
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// subjects

async fn list_subjects(State(reg): Shared, Query(q): Params) -> Result<Response> {
    synced(&reg).await?;
    let prefix = q.get("subjectPrefix").cloned().unwrap_or_default();
    let names = reg.read(|s| s.subject_names(flag(&q, "deleted")));
    let names: Vec<String> = names
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    Ok(ok(json!(names)))
}

async fn list_versions(
    State(reg): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    synced(&reg).await?;
    let versions: Vec<i32> = reg.read(|s| {
        s.versions(&subject, flag(&q, "deleted"))
            .iter()
            .map(|v| v.version)
            .collect()
    });
    if versions.is_empty() {
        return Err(ApiError::subject_not_found(&subject));
    }
    Ok(ok(json!(versions)))
}

async fn register(
    State(reg): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> Result<Response> {
    let input = schema_input(&body)?;
    let (id, version) = reg
        .register(&subject_id(&subject), input.clone(), flag(&q, "normalize"))
        .await?;
    let mut m = serde_json::Map::new();
    m.insert("id".into(), json!(id));
    m.insert("version".into(), json!(version));
    m.insert("subject".into(), json!(subject));
    let stored = reg.schema(id)?;
    m.extend(schema_json(
        stored.schema_type,
        &stored.schema,
        &stored.references,
    ));
    Ok(ok(Value::Object(m)))
}

async fn lookup(
    State(reg): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> Result<Response> {
    let input = schema_input(&body)?;
    synced(&reg).await?;
    let v = reg.lookup(&subject, &input, flag(&q, "deleted"))?;
    Ok(ok(version_json(&v)))
}

async fn delete_subject(
    State(reg): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    let versions = reg.delete_subject(&subject, flag(&q, "permanent")).await?;
    Ok(ok(json!(versions)))
}

async fn get_version(
    State(reg): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response> {
    let spec = VersionSpec::parse(&version)?;
    synced(&reg).await?;
    let mut v = reg.version(&subject, spec, flag(&q, "deleted"))?;
    v.schema = reg.formatted(
        v.schema_type,
        &v.schema,
        &v.references,
        q.get("format").map(String::as_str),
    )?;
    Ok(ok(version_json(&v)))
}

async fn get_version_schema(
    State(reg): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response> {
    let spec = VersionSpec::parse(&version)?;
    synced(&reg).await?;
    let v = reg.version(&subject, spec, flag(&q, "deleted"))?;
    Ok(with_type(StatusCode::OK, v.schema))
}

async fn referenced_by(
    State(reg): Shared,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response> {
    let spec = VersionSpec::parse(&version)?;
    synced(&reg).await?;
    let v = reg.version(&subject, spec, false)?;
    let ids = reg.read(|s| s.referenced_by(&subject, v.version));
    Ok(ok(json!(ids)))
}

async fn delete_version(
    State(reg): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response> {
    let spec = VersionSpec::parse(&version)?;
    let v = reg
        .delete_version(&subject, spec, flag(&q, "permanent"))
        .await?;
    Ok(ok(json!(v)))
}

// ---------------------------------------------------------------------------------------------
// schemas by id

fn parse_id(id: &str) -> Result<i32> {
    id.parse::<i32>().map_err(|_| ApiError::schema_not_found())
}

async fn schema_types() -> Response {
    ok(json!(
        SchemaType::ALL.iter().map(|t| t.name()).collect::<Vec<_>>()
    ))
}

async fn schema_by_id(
    State(reg): Shared,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    let id = parse_id(&id)?;
    let s = schema_synced(&reg, id).await?;
    if let Some(subject) = q.get("subject") {
        let registered = reg.read(|st| st.versions(subject, true).iter().any(|v| v.id == id));
        if !registered {
            return Err(ApiError::schema_not_found());
        }
    }
    let text = reg.formatted(
        s.schema_type,
        &s.schema,
        &s.references,
        q.get("format").map(String::as_str),
    )?;
    Ok(ok(Value::Object(schema_json(
        s.schema_type,
        &text,
        &s.references,
    ))))
}

async fn schema_text_by_id(State(reg): Shared, Path(id): Path<String>) -> Result<Response> {
    let id = parse_id(&id)?;
    let s = schema_synced(&reg, id).await?;
    Ok(with_type(StatusCode::OK, s.schema))
}

fn uses_of(reg: &Registry, id: i32, deleted: bool) -> Result<Vec<(String, i32)>> {
    reg.schema(id)?;
    Ok(reg.read(|s| {
        s.subjects
            .values()
            .flat_map(|vs| vs.values())
            .filter(|v| v.id == id && (deleted || !v.deleted))
            .map(|v| (v.subject.clone(), v.version))
            .collect()
    }))
}

async fn schema_versions(
    State(reg): Shared,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    let id = parse_id(&id)?;
    synced(&reg).await?;
    let uses = uses_of(&reg, id, flag(&q, "deleted"))?;
    let v: Vec<Value> = uses
        .into_iter()
        .map(|(subject, version)| json!({"subject": subject, "version": version}))
        .collect();
    Ok(ok(json!(v)))
}

async fn schema_subjects(
    State(reg): Shared,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    let id = parse_id(&id)?;
    synced(&reg).await?;
    let mut subjects: Vec<String> = uses_of(&reg, id, flag(&q, "deleted"))?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    subjects.dedup();
    Ok(ok(json!(subjects)))
}

// ---------------------------------------------------------------------------------------------
// compatibility

fn compat_answer(problems: Vec<String>, verbose: bool) -> Response {
    let mut m = serde_json::Map::new();
    m.insert("is_compatible".into(), json!(problems.is_empty()));
    if verbose {
        m.insert("messages".into(), json!(problems));
    }
    ok(Value::Object(m))
}

async fn check_version(
    State(reg): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
    body: Bytes,
) -> Result<Response> {
    let spec = VersionSpec::parse(&version)?;
    let input = schema_input(&body)?;
    synced(&reg).await?;
    let problems = reg.test_compatibility(&subject, Some(spec), &input)?;
    Ok(compat_answer(problems, flag(&q, "verbose")))
}

async fn check_all(
    State(reg): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> Result<Response> {
    let input = schema_input(&body)?;
    synced(&reg).await?;
    let problems = reg.test_compatibility(&subject, None, &input)?;
    Ok(compat_answer(problems, flag(&q, "verbose")))
}

// ---------------------------------------------------------------------------------------------
// config

#[derive(Deserialize)]
struct ConfigBody {
    compatibility: Option<String>,
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: Option<String>,
    normalize: Option<bool>,
}

fn config_json(c: &ConfigValue) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(
        "compatibilityLevel".into(),
        json!(c.compatibility_level.unwrap_or_default().name()),
    );
    if let Some(n) = c.normalize {
        m.insert("normalize".into(), json!(n));
    }
    Value::Object(m)
}

fn config_input(body: &Bytes) -> Result<ConfigValue> {
    let b: ConfigBody = parse_json(body)?;
    let level = match b.compatibility.or(b.compatibility_level) {
        None => None,
        Some(l) => Some(Level::parse(&l).ok_or_else(|| {
            ApiError::new(
                422,
                code::INVALID_COMPATIBILITY_LEVEL,
                format!("Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive; got {l:?}"),
            )
        })?),
    };
    Ok(ConfigValue {
        compatibility_level: level,
        normalize: b.normalize,
    })
}

fn put_config_answer(c: &ConfigValue) -> Value {
    let mut m = serde_json::Map::new();
    if let Some(l) = c.compatibility_level {
        m.insert("compatibility".into(), json!(l.name()));
    }
    if let Some(n) = c.normalize {
        m.insert("normalize".into(), json!(n));
    }
    Value::Object(m)
}

async fn get_global_config(State(reg): Shared) -> Result<Response> {
    synced(&reg).await?;
    let c = reg
        .read(|s| s.configs.get(&None).cloned())
        .unwrap_or(ConfigValue {
            compatibility_level: Some(Level::default()),
            normalize: None,
        });
    Ok(ok(config_json(&c)))
}

async fn put_global_config(State(reg): Shared, body: Bytes) -> Result<Response> {
    let c = config_input(&body)?;
    let c = reg.set_config(None, c).await?;
    Ok(ok(put_config_answer(&c)))
}

async fn delete_global_config(State(reg): Shared) -> Result<Response> {
    let c = reg.delete_config(None).await?;
    Ok(ok(config_json(&c)))
}

async fn get_subject_config(
    State(reg): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    synced(&reg).await?;
    let own = reg.read(|s| s.configs.get(&Some(subject.clone())).cloned());
    match own {
        Some(c) => Ok(ok(config_json(&c))),
        None if flag(&q, "defaultToGlobal") => {
            let level = reg.read(|s| s.level(None));
            let normalize = reg.read(|s| s.configs.get(&None).and_then(|c| c.normalize));
            Ok(ok(config_json(&ConfigValue {
                compatibility_level: Some(level),
                normalize,
            })))
        }
        None => Err(subject_config_missing(&subject)),
    }
}

async fn put_subject_config(
    State(reg): Shared,
    Path(subject): Path<String>,
    body: Bytes,
) -> Result<Response> {
    let c = config_input(&body)?;
    let c = reg.set_config(Some(&subject), c).await?;
    Ok(ok(put_config_answer(&c)))
}

async fn delete_subject_config(
    State(reg): Shared,
    Path(subject): Path<String>,
) -> Result<Response> {
    let c = reg.delete_config(Some(&subject)).await?;
    Ok(ok(config_json(&c)))
}

// ---------------------------------------------------------------------------------------------
// mode

#[derive(Deserialize)]
struct ModeBody {
    mode: String,
}

fn mode_input(body: &Bytes) -> Result<Mode> {
    let b: ModeBody = parse_json(body)?;
    Mode::parse(&b.mode).ok_or_else(|| {
        ApiError::new(
            422,
            code::INVALID_MODE,
            format!(
                "Invalid mode. Valid values are READWRITE, READONLY and IMPORT; got {:?}",
                b.mode
            ),
        )
    })
}

async fn get_global_mode(State(reg): Shared) -> Result<Response> {
    synced(&reg).await?;
    let m = reg.read(|s| s.mode(None));
    Ok(ok(json!({"mode": m.name()})))
}

async fn put_global_mode(State(reg): Shared, Query(q): Params, body: Bytes) -> Result<Response> {
    let m = mode_input(&body)?;
    let m = reg.set_mode(None, m, flag(&q, "force")).await?;
    Ok(ok(json!({"mode": m.name()})))
}

async fn get_subject_mode(
    State(reg): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    synced(&reg).await?;
    let own = reg.read(|s| s.modes.get(&Some(subject.clone())).copied());
    match own {
        Some(m) => Ok(ok(json!({"mode": m.name()}))),
        None if flag(&q, "defaultToGlobal") => {
            let m = reg.read(|s| s.mode(None));
            Ok(ok(json!({"mode": m.name()})))
        }
        None => Err(ApiError::new(
            404,
            code::SUBJECT_LEVEL_MODE_NOT_CONFIGURED,
            format!("Subject '{subject}' does not have subject-level mode configured"),
        )),
    }
}

async fn put_subject_mode(
    State(reg): Shared,
    Path(subject): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> Result<Response> {
    let m = mode_input(&body)?;
    let m = reg.set_mode(Some(&subject), m, flag(&q, "force")).await?;
    Ok(ok(json!({"mode": m.name()})))
}

async fn delete_subject_mode(State(reg): Shared, Path(subject): Path<String>) -> Result<Response> {
    let m = reg.delete_mode(&subject).await?;
    Ok(ok(json!({"mode": m.name()})))
}

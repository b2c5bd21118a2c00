//! The registry over an in-memory log: the REST layer through its router (no sockets), and
//! several instances sharing one log.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

use strom_registry::log::{Log, MemoryLog};
use strom_registry::registry::SchemaInput;
use strom_registry::{Registry, SchemaType, api};

fn avro_record(fields: &[(&str, &str)]) -> String {
    let fields: Vec<Value> = fields
        .iter()
        .map(|(n, t)| json!({"name": n, "type": t}))
        .collect();
    json!({"type": "record", "name": "R", "fields": fields}).to_string()
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(match body {
            Some(b) => Body::from(b.to_string()),
            None => Body::empty(),
        })
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

fn instance(log: Arc<dyn Log>) -> (Arc<Registry>, watch::Sender<bool>) {
    let (tx, rx) = watch::channel(false);
    (Registry::start(log, rx), tx)
}

#[test]
fn the_router_builds() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (reg, _stop) = instance(MemoryLog::new());
        let _ = api::router(reg);
    });
}

#[tokio::test]
async fn register_read_evolve_and_refuse() {
    let (reg, _stop) = instance(MemoryLog::new());
    let app = api::router(reg);
    let v1 = avro_record(&[("a", "string")]);
    let (s, body) = call(
        &app,
        "POST",
        "/subjects/t-value/versions",
        Some(json!({"schema": v1})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["id"], 1);
    // The same schema again, formatted differently: the same id, no new version.
    let v1_pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(&v1).unwrap()).unwrap();
    let (_, again) = call(
        &app,
        "POST",
        "/subjects/t-value/versions",
        Some(json!({"schema": v1_pretty})),
    )
    .await;
    assert_eq!(again["id"], 1);
    assert_eq!(again["version"], 1);
    // The same schema under another subject shares the id.
    let (_, other) = call(
        &app,
        "POST",
        "/subjects/u-value/versions",
        Some(json!({"schema": v1})),
    )
    .await;
    assert_eq!(other["id"], 1);
    // An incompatible change (a field without default) is refused under BACKWARD.
    let bad = avro_record(&[("a", "string"), ("b", "int")]);
    let (s, e) = call(
        &app,
        "POST",
        "/subjects/t-value/versions",
        Some(json!({"schema": bad})),
    )
    .await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(e["error_code"], 409);
    // A compatible one gets id 2, version 2.
    let good = json!({"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int","default":0}]}).to_string();
    let (s, ok) = call(
        &app,
        "POST",
        "/subjects/t-value/versions",
        Some(json!({"schema": good})),
    )
    .await;
    assert_eq!(s, 200, "{ok}");
    assert_eq!(
        (ok["id"].as_i64(), ok["version"].as_i64()),
        (Some(2), Some(2))
    );
    let (_, versions) = call(&app, "GET", "/subjects/t-value/versions", None).await;
    assert_eq!(versions, json!([1, 2]));
    let (_, latest) = call(&app, "GET", "/subjects/t-value/versions/latest", None).await;
    assert_eq!(latest["version"], 2);
    let (_, subjects) = call(&app, "GET", "/schemas/ids/1/subjects", None).await;
    assert_eq!(subjects, json!(["t-value", "u-value"]));
    // Errors in the registry's format.
    let (s, e) = call(&app, "GET", "/subjects/nope/versions", None).await;
    assert_eq!((s.as_u16(), e["error_code"].as_i64()), (404, Some(40401)));
    let (s, e) = call(&app, "GET", "/subjects/t-value/versions/9", None).await;
    assert_eq!((s.as_u16(), e["error_code"].as_i64()), (404, Some(40402)));
    let (s, e) = call(&app, "GET", "/schemas/ids/99", None).await;
    assert_eq!((s.as_u16(), e["error_code"].as_i64()), (404, Some(40403)));
    let (s, e) = call(
        &app,
        "POST",
        "/subjects/t-value/versions",
        Some(json!({"schema": "{not json"})),
    )
    .await;
    assert_eq!((s.as_u16(), e["error_code"].as_i64()), (422, Some(42201)));
    let (s, e) = call(&app, "GET", "/subjects/t-value/versions/zero", None).await;
    assert_eq!((s.as_u16(), e["error_code"].as_i64()), (422, Some(42202)));
}

/// A log whose appends take a moment, so that two writers decide on the same end offset.
struct SlowLog(Arc<MemoryLog>);

impl Log for SlowLog {
    fn append(
        &self,
        records: Vec<(bytes::Bytes, Option<bytes::Bytes>)>,
    ) -> strom_registry::log::BoxFuture<'_, Result<i64, String>> {
        Box::pin(async move {
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            self.0.append(records).await
        })
    }
    fn end_offset(&self) -> strom_registry::log::BoxFuture<'_, Result<i64, String>> {
        self.0.end_offset()
    }
    fn read(
        &self,
        from: i64,
        wait: std::time::Duration,
    ) -> strom_registry::log::BoxFuture<
        '_,
        Result<(Vec<strom_registry::log::LogRecord>, i64), String>,
    > {
        self.0.read(from, wait)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_a_log_never_hand_out_an_id_twice() {
    let log = MemoryLog::new();
    let (a, _sa) = instance(Arc::new(SlowLog(log.clone())));
    let (b, _sb) = instance(Arc::new(SlowLog(log.clone())));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let reg = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let schema = avro_record(&[(&format!("f{i}"), "string")]);
            let input = SchemaInput {
                schema: schema.clone(),
                schema_type: SchemaType::Avro,
                ..Default::default()
            };
            let (id, _) = reg.register(&format!("s{i}"), input, false).await.unwrap();
            (id, schema)
        }));
    }
    let mut seen = std::collections::HashMap::new();
    for t in tasks {
        let (id, schema) = t.await.unwrap();
        assert!(
            seen.insert(id, schema).is_none(),
            "id {id} handed out twice"
        );
    }
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    // Some writes lost the race for the log's end and were decided again.
    let records = log.end_offset().await.unwrap();
    assert!(records > 40, "{records} records: no write raced another");
    // Both instances, and a new one reading the compacted log, agree on every id.
    log.compact().await;
    let (c, _sc) = instance(log.clone());
    c.sync().await.unwrap();
    for (id, schema) in &seen {
        for reg in [&a, &b, &c] {
            assert_eq!(&reg.schema(*id).unwrap().schema, schema);
        }
    }
}

#[tokio::test]
async fn ids_are_not_reused_after_hard_deletes_and_compaction() {
    let log = MemoryLog::new();
    let (a, _sa) = instance(log.clone());
    let input = |f: &str| SchemaInput {
        schema: avro_record(&[(f, "string")]),
        schema_type: SchemaType::Avro,
        ..Default::default()
    };
    let (id1, _) = a.register("s", input("a"), false).await.unwrap();
    let (id2, _) = a.register("t", input("b"), false).await.unwrap();
    assert_eq!((id1, id2), (1, 2));
    for subject in ["s", "t"] {
        assert_eq!(a.delete_subject(subject, false).await.unwrap(), vec![1]);
        assert_eq!(a.delete_subject(subject, true).await.unwrap(), vec![1]);
    }
    assert!(a.schema(id2).is_err());
    log.compact().await;
    // A new instance reads only what compaction kept: the highest id survives in MAX_ID.
    let (b, _sb) = instance(log.clone());
    let (id3, version) = b.register("s", input("c"), false).await.unwrap();
    assert_eq!((id3, version), (3, 1));
}

#[tokio::test]
async fn basic_authentication_when_configured() {
    let (reg, _stop) = instance(MemoryLog::new());
    let auth: api::Authenticator = Arc::new(|u: &str, p: &str| u == "alice" && p == "secret");
    let app = api::router_with(reg, Some(auth));
    let get = |authz: Option<&str>| {
        let mut b = Request::builder().uri("/subjects");
        if let Some(a) = authz {
            b = b.header("authorization", a);
        }
        app.clone().oneshot(b.body(Body::empty()).unwrap())
    };
    assert_eq!(get(None).await.unwrap().status(), 401);
    // "alice:wrong" and "alice:secret" in base64.
    assert_eq!(
        get(Some("Basic YWxpY2U6d3Jvbmc=")).await.unwrap().status(),
        401
    );
    assert_eq!(
        get(Some("Basic YWxpY2U6c2VjcmV0")).await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn avro_and_json_schema_references() {
    let (reg, _stop) = instance(MemoryLog::new());
    let app = api::router(reg);
    // Avro: a named type defined in another subject, used by its full name.
    let address = json!({"type": "record", "name": "Address", "namespace": "demo", "fields": [{"name": "city", "type": "string"}]});
    let (s, a) = call(
        &app,
        "POST",
        "/subjects/address/versions",
        Some(json!({"schema": address.to_string()})),
    )
    .await;
    assert_eq!(s, 200, "{a}");
    let user = json!({"type": "record", "name": "User", "namespace": "demo", "fields": [{"name": "home", "type": "demo.Address"}]});
    let refs = json!([{"name": "demo.Address", "subject": "address", "version": 1}]);
    let (s, u) = call(
        &app,
        "POST",
        "/subjects/user/versions",
        Some(json!({"schema": user.to_string(), "references": refs})),
    )
    .await;
    assert_eq!(s, 200, "{u}");
    // Without the reference the name is unknown: an invalid schema.
    let (s, e) = call(
        &app,
        "POST",
        "/subjects/user2/versions",
        Some(json!({"schema": user.to_string()})),
    )
    .await;
    assert_eq!(
        (s.as_u16(), e["error_code"].as_i64()),
        (422, Some(42201)),
        "{e}"
    );
    // Evolving the referring schema is checked with the reference resolved: changing the
    // field to another type is refused.
    let user2 = json!({"type": "record", "name": "User", "namespace": "demo", "fields": [{"name": "home", "type": "string"}]});
    let (s, e) = call(
        &app,
        "POST",
        "/subjects/user/versions",
        Some(json!({"schema": user2.to_string()})),
    )
    .await;
    assert_eq!(s, 409, "{e}");
    let (_, by) = call(
        &app,
        "GET",
        "/subjects/address/versions/1/referencedby",
        None,
    )
    .await;
    assert_eq!(by, json!([u["id"]]));

    // JSON Schema: "$ref" to another registered document by its reference name.
    let money = json!({"type": "object", "properties": {"cents": {"type": "integer"}}, "required": ["cents"]});
    let (s, _) = call(
        &app,
        "POST",
        "/subjects/money/versions",
        Some(json!({"schemaType": "JSON", "schema": money.to_string()})),
    )
    .await;
    assert_eq!(s, 200);
    let order = json!({"type": "object", "properties": {"total": {"$ref": "money.json"}}});
    let refs = json!([{"name": "money.json", "subject": "money", "version": 1}]);
    let (s, o) = call(
        &app,
        "POST",
        "/subjects/order/versions",
        Some(json!({"schemaType": "JSON", "schema": order.to_string(), "references": refs})),
    )
    .await;
    assert_eq!(s, 200, "{o}");
    // Narrowing the referenced type through a local change is refused under BACKWARD.
    let order2 = json!({"type": "object", "properties": {"total": {"type": "string"}}});
    let (s, e) = call(
        &app,
        "POST",
        "/compatibility/subjects/order/versions/latest?verbose=true",
        Some(json!({"schemaType": "JSON", "schema": order2.to_string()})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(e["is_compatible"], false, "{e}");
}

#[tokio::test]
async fn a_lazily_started_registry_reads_the_log_from_its_first_request() {
    let log = MemoryLog::new();
    let (a, _sa) = instance(log.clone());
    let input = SchemaInput {
        schema: avro_record(&[("a", "string")]),
        schema_type: SchemaType::Avro,
        ..Default::default()
    };
    let (id, _) = a.register("s", input, false).await.unwrap();
    let (_tx, rx) = watch::channel(false);
    let lazy = Registry::start_lazily(log.clone(), rx);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    // Nothing read before a request needs the state.
    assert!(lazy.schema(id).is_err());
    lazy.ready().await.unwrap();
    assert_eq!(
        lazy.schema(id).unwrap().schema,
        avro_record(&[("a", "string")])
    );
}

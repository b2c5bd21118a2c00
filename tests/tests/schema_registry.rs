//! The Schema Registry served by `strom server` (schema.registry.listener): the REST contract
//! (status codes, JSON shapes, error codes), persistence across SIGKILL, and `strom schemas`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strom_e2e::{Strom, strom_bin};

const CT: &str = "application/vnd.schemaregistry.v1+json";

/// One request: (status, content type, JSON body or the text as a JSON string).
fn http(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, String, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("registry listener");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {CT}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let v = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()));
    (status, ctype, v)
}

/// Waits until the registry answers (it starts after the broker's listeners), 30 s at most.
fn wait_registry(s: &Strom) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect(("127.0.0.1", s.registry_port)).is_ok() {
            let (status, _, _) = http(s.registry_port, "GET", "/subjects", None);
            if status == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the registry did not answer within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ok(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, ctype, v) = http(port, method, path, body);
    assert_eq!(status, 200, "{method} {path}: {v}");
    assert_eq!(ctype, CT, "{method} {path}");
    v
}

/// Asserts an error answer: HTTP status and Confluent error code, with a message.
fn err(port: u16, method: &str, path: &str, body: Option<Value>, status: u16, code: i64) {
    let (got, ctype, v) = http(port, method, path, body);
    assert_eq!(
        (got, v["error_code"].as_i64()),
        (status, Some(code)),
        "{method} {path}: {v}"
    );
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert_eq!(ctype, CT);
}

fn avro(fields: Value) -> Value {
    json!({"schema": json!({"type": "record", "name": "User", "namespace": "demo", "fields": fields}).to_string()})
}

#[test]
fn rest_contract() {
    let s = Strom::start(&[]);
    wait_registry(&s);
    let p = s.registry_port;

    assert_eq!(ok(p, "GET", "/", None), json!({}));
    assert_eq!(
        ok(p, "GET", "/schemas/types", None),
        json!(["JSON", "PROTOBUF", "AVRO"])
    );
    assert_eq!(ok(p, "GET", "/subjects", None), json!([]));
    err(p, "GET", "/no/such/route", None, 404, 404);

    // Register, and register again: the same id and version.
    let v1 = avro(json!([{"name": "name", "type": "string"}]));
    let r = ok(
        p,
        "POST",
        "/subjects/users-value/versions",
        Some(v1.clone()),
    );
    assert_eq!(
        (r["id"].as_i64(), r["version"].as_i64()),
        (Some(1), Some(1))
    );
    let again = ok(
        p,
        "POST",
        "/subjects/users-value/versions",
        Some(v1.clone()),
    );
    assert_eq!(again["id"], 1);
    // The same schema under another subject shares its id.
    assert_eq!(
        ok(
            p,
            "POST",
            "/subjects/other-value/versions",
            Some(v1.clone())
        )["id"],
        1
    );
    assert_eq!(
        ok(p, "GET", "/subjects", None),
        json!(["other-value", "users-value"])
    );
    assert_eq!(
        ok(p, "GET", "/subjects?subjectPrefix=users", None),
        json!(["users-value"])
    );
    assert_eq!(
        ok(p, "GET", "/subjects/users-value/versions", None),
        json!([1])
    );
    for v in ["1", "latest", "-1"] {
        let got = ok(
            p,
            "GET",
            &format!("/subjects/users-value/versions/{v}"),
            None,
        );
        assert_eq!(got["subject"], "users-value");
        assert_eq!(
            (got["id"].as_i64(), got["version"].as_i64()),
            (Some(1), Some(1))
        );
        assert_eq!(got["schema"], v1["schema"]);
        assert!(got.get("schemaType").is_none(), "AVRO is implied: {got}");
    }
    let raw = ok(p, "GET", "/subjects/users-value/versions/1/schema", None);
    assert_eq!(raw["type"], "record", "the schema itself: {raw}");
    assert_eq!(
        ok(
            p,
            "GET",
            "/subjects/users-value/versions/1/referencedby",
            None
        ),
        json!([])
    );
    err(p, "GET", "/subjects/nope/versions", None, 404, 40401);
    err(p, "GET", "/subjects/nope/versions/1", None, 404, 40401);
    err(
        p,
        "GET",
        "/subjects/users-value/versions/7",
        None,
        404,
        40402,
    );
    err(
        p,
        "GET",
        "/subjects/users-value/versions/abc",
        None,
        422,
        42202,
    );
    err(
        p,
        "GET",
        "/subjects/users-value/versions/0",
        None,
        422,
        42202,
    );

    // Look a schema up under a subject.
    let found = ok(p, "POST", "/subjects/users-value", Some(v1.clone()));
    assert_eq!(
        (
            found["subject"].as_str(),
            found["id"].as_i64(),
            found["version"].as_i64()
        ),
        (Some("users-value"), Some(1), Some(1))
    );
    let unknown = avro(json!([{"name": "x", "type": "int"}]));
    err(
        p,
        "POST",
        "/subjects/users-value",
        Some(unknown.clone()),
        404,
        40403,
    );
    err(p, "POST", "/subjects/nope", Some(v1.clone()), 404, 40401);

    // Schemas by id.
    assert_eq!(
        ok(p, "GET", "/schemas/ids/1", None),
        json!({"schema": v1["schema"]})
    );
    assert_eq!(
        ok(p, "GET", "/schemas/ids/1?subject=users-value", None)["schema"],
        v1["schema"]
    );
    err(p, "GET", "/schemas/ids/1?subject=nope", None, 404, 40403);
    err(p, "GET", "/schemas/ids/999", None, 404, 40403);
    assert_eq!(
        ok(p, "GET", "/schemas/ids/1/versions", None),
        json!([{"subject": "other-value", "version": 1}, {"subject": "users-value", "version": 1}])
    );
    assert_eq!(
        ok(p, "GET", "/schemas/ids/1/subjects", None),
        json!(["other-value", "users-value"])
    );
    assert_eq!(
        ok(p, "GET", "/schemas/ids/1/schema", None)["type"],
        "record"
    );

    // Invalid schemas.
    err(
        p,
        "POST",
        "/subjects/users-value/versions",
        Some(json!({"schema": "{\"type\": \"nonsense\"}"})),
        422,
        42201,
    );
    err(
        p,
        "POST",
        "/subjects/users-value/versions",
        Some(json!({"schema": "{}", "schemaType": "XML"})),
        422,
        42201,
    );
    err(
        p,
        "POST",
        "/subjects/j/versions",
        Some(json!({"schema": "{\"type\": 5}", "schemaType": "JSON"})),
        422,
        42201,
    );
    err(
        p,
        "POST",
        "/subjects/pb/versions",
        Some(json!({"schema": "message {", "schemaType": "PROTOBUF"})),
        422,
        42201,
    );

    // Compatibility (BACKWARD by default): a field without default is refused.
    let bad = avro(json!([{"name": "name", "type": "string"}, {"name": "age", "type": "int"}]));
    let good = avro(
        json!([{"name": "name", "type": "string"}, {"name": "age", "type": "int", "default": 0}]),
    );
    let c = ok(
        p,
        "POST",
        "/compatibility/subjects/users-value/versions/latest",
        Some(bad.clone()),
    );
    assert_eq!(c, json!({"is_compatible": false}));
    let c = ok(
        p,
        "POST",
        "/compatibility/subjects/users-value/versions/latest?verbose=true",
        Some(bad.clone()),
    );
    assert_eq!(c["is_compatible"], false);
    assert!(!c["messages"].as_array().unwrap().is_empty(), "{c}");
    assert_eq!(
        ok(
            p,
            "POST",
            "/compatibility/subjects/users-value/versions",
            Some(good.clone())
        )["is_compatible"],
        true
    );
    err(
        p,
        "POST",
        "/compatibility/subjects/users-value/versions/9",
        Some(good.clone()),
        404,
        40402,
    );
    err(
        p,
        "POST",
        "/subjects/users-value/versions",
        Some(bad.clone()),
        409,
        409,
    );
    let r2 = ok(
        p,
        "POST",
        "/subjects/users-value/versions",
        Some(good.clone()),
    );
    assert_eq!(
        (r2["id"].as_i64(), r2["version"].as_i64()),
        (Some(2), Some(2))
    );

    // Config.
    assert_eq!(
        ok(p, "GET", "/config", None),
        json!({"compatibilityLevel": "BACKWARD"})
    );
    assert_eq!(
        ok(p, "PUT", "/config", Some(json!({"compatibility": "FULL"}))),
        json!({"compatibility": "FULL"})
    );
    assert_eq!(ok(p, "GET", "/config", None)["compatibilityLevel"], "FULL");
    err(p, "GET", "/config/users-value", None, 404, 40408);
    assert_eq!(
        ok(p, "GET", "/config/users-value?defaultToGlobal=true", None)["compatibilityLevel"],
        "FULL"
    );
    let put = ok(
        p,
        "PUT",
        "/config/users-value",
        Some(json!({"compatibility": "NONE", "normalize": true})),
    );
    assert_eq!(put, json!({"compatibility": "NONE", "normalize": true}));
    assert_eq!(
        ok(p, "GET", "/config/users-value", None),
        json!({"compatibilityLevel": "NONE", "normalize": true})
    );
    err(
        p,
        "PUT",
        "/config/users-value",
        Some(json!({"compatibility": "SIDEWAYS"})),
        422,
        42203,
    );
    assert_eq!(
        ok(p, "DELETE", "/config/users-value", None)["compatibilityLevel"],
        "NONE"
    );
    err(p, "GET", "/config/users-value", None, 404, 40408);
    err(p, "DELETE", "/config/users-value", None, 404, 40408);
    assert_eq!(
        ok(p, "DELETE", "/config", None)["compatibilityLevel"],
        "FULL"
    );
    assert_eq!(
        ok(p, "GET", "/config", None)["compatibilityLevel"],
        "BACKWARD"
    );

    // Modes.
    assert_eq!(ok(p, "GET", "/mode", None), json!({"mode": "READWRITE"}));
    assert_eq!(
        ok(
            p,
            "PUT",
            "/mode/users-value",
            Some(json!({"mode": "READONLY"}))
        ),
        json!({"mode": "READONLY"})
    );
    assert_eq!(
        ok(p, "GET", "/mode/users-value", None),
        json!({"mode": "READONLY"})
    );
    let v3 = avro(
        json!([{"name": "name", "type": "string"}, {"name": "x", "type": ["null", "int"], "default": null}]),
    );
    err(
        p,
        "POST",
        "/subjects/users-value/versions",
        Some(v3.clone()),
        422,
        42205,
    );
    assert_eq!(
        ok(p, "DELETE", "/mode/users-value", None),
        json!({"mode": "READONLY"})
    );
    err(p, "GET", "/mode/users-value", None, 404, 40409);
    assert_eq!(
        ok(p, "GET", "/mode/users-value?defaultToGlobal=true", None),
        json!({"mode": "READWRITE"})
    );
    err(
        p,
        "PUT",
        "/mode",
        Some(json!({"mode": "SIDEWAYS"})),
        422,
        42204,
    );
    err(
        p,
        "PUT",
        "/mode",
        Some(json!({"mode": "IMPORT"})),
        422,
        42205,
    );
    err(
        p,
        "PUT",
        "/config",
        Some(json!(["not", "an", "object"])),
        422,
        422,
    );

    // Other types and references.
    let js = ok(
        p,
        "POST",
        "/subjects/orders-value/versions",
        Some(
            json!({"schemaType": "JSON", "schema": "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"}}}"}),
        ),
    );
    assert_eq!(js["schemaType"], "JSON");
    assert_eq!(ok(p, "GET", "/schemas/ids/3", None)["schemaType"], "JSON");
    let common = "syntax = \"proto3\";\npackage common;\nmessage Money { int64 cents = 1; string currency = 2; }\n";
    let c_id = ok(
        p,
        "POST",
        "/subjects/money.proto/versions",
        Some(json!({"schemaType": "PROTOBUF", "schema": common})),
    )["id"]
        .clone();
    let order = "syntax = \"proto3\";\npackage shop;\nimport \"money.proto\";\nmessage Order { string id = 1; common.Money total = 2; }\n";
    let refs = json!([{"name": "money.proto", "subject": "money.proto", "version": 1}]);
    let o = ok(
        p,
        "POST",
        "/subjects/shop-value/versions",
        Some(json!({"schemaType": "PROTOBUF", "schema": order, "references": refs})),
    );
    assert_eq!(o["references"], refs);
    let o_id = o["id"].clone();
    assert_eq!(
        ok(
            p,
            "GET",
            "/subjects/money.proto/versions/1/referencedby",
            None
        ),
        json!([o_id])
    );
    assert_eq!(
        ok(p, "GET", &format!("/schemas/ids/{o_id}"), None)["references"],
        refs
    );
    assert_ne!(c_id, o_id);
    // A reference to nothing is an invalid schema; a referenced version cannot be deleted.
    let dangling = json!([{"name": "money.proto", "subject": "money.proto", "version": 9}]);
    err(
        p,
        "POST",
        "/subjects/shop2-value/versions",
        Some(json!({"schemaType": "PROTOBUF", "schema": order, "references": dangling})),
        422,
        42201,
    );
    err(
        p,
        "DELETE",
        "/subjects/money.proto/versions/1",
        None,
        422,
        42206,
    );
    // Protobuf in serialized form (a base64 FileDescriptorProto).
    let ser = ok(
        p,
        "GET",
        &format!("/schemas/ids/{o_id}?format=serialized"),
        None,
    );
    assert!(
        ser["schema"]
            .as_str()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)),
        "{ser}"
    );

    // normalize=true stores the canonical form.
    let spaced = json!({"schema": "{ \"type\" :  \"record\", \"name\": \"N\",\n \"fields\": [ {\"name\": \"a\", \"type\": \"long\"} ] }"});
    let n = ok(
        p,
        "POST",
        "/subjects/norm-value/versions?normalize=true",
        Some(spaced),
    );
    let stored = ok(p, "GET", &format!("/schemas/ids/{}", n["id"]), None);
    assert!(
        !stored["schema"].as_str().unwrap().contains(' '),
        "normalized: {stored}"
    );

    // Deletes: soft, then permanent; at the version and at the subject level.
    err(
        p,
        "DELETE",
        "/subjects/other-value/versions/1?permanent=true",
        None,
        404,
        40407,
    );
    assert_eq!(
        ok(p, "DELETE", "/subjects/other-value/versions/1", None),
        json!(1)
    );
    err(
        p,
        "DELETE",
        "/subjects/other-value/versions/1",
        None,
        404,
        40406,
    );
    err(p, "GET", "/subjects/other-value/versions", None, 404, 40401);
    assert_eq!(
        ok(
            p,
            "GET",
            "/subjects/other-value/versions?deleted=true",
            None
        ),
        json!([1])
    );
    assert_eq!(
        ok(
            p,
            "GET",
            "/subjects/other-value/versions/1?deleted=true",
            None
        )["id"],
        1
    );
    assert!(
        ok(p, "GET", "/subjects?deleted=true", None)
            .as_array()
            .unwrap()
            .contains(&json!("other-value"))
    );
    assert!(
        !ok(p, "GET", "/subjects", None)
            .as_array()
            .unwrap()
            .contains(&json!("other-value"))
    );
    assert_eq!(
        ok(
            p,
            "DELETE",
            "/subjects/other-value/versions/1?permanent=true",
            None
        ),
        json!(1)
    );
    err(
        p,
        "GET",
        "/subjects/other-value/versions?deleted=true",
        None,
        404,
        40401,
    );
    // The id lives on while another subject uses it.
    assert_eq!(ok(p, "GET", "/schemas/ids/1", None)["schema"], v1["schema"]);

    err(
        p,
        "DELETE",
        "/subjects/users-value?permanent=true",
        None,
        404,
        40405,
    );
    assert_eq!(
        ok(p, "DELETE", "/subjects/users-value", None),
        json!([1, 2])
    );
    err(p, "DELETE", "/subjects/users-value", None, 404, 40404);
    assert_eq!(
        ok(p, "DELETE", "/subjects/users-value?permanent=true", None),
        json!([1, 2])
    );
    err(
        p,
        "GET",
        "/subjects/users-value/versions?deleted=true",
        None,
        404,
        40401,
    );
    err(p, "DELETE", "/subjects/users-value", None, 404, 40401);
    err(p, "GET", "/schemas/ids/2", None, 404, 40403);
    // Ids are not handed out again after a hard delete.
    let fresh = ok(
        p,
        "POST",
        "/subjects/users-value/versions",
        Some(avro(json!([{"name": "z", "type": "long"}]))),
    );
    let max_before = [
        c_id.as_i64().unwrap(),
        o_id.as_i64().unwrap(),
        n["id"].as_i64().unwrap(),
    ]
    .into_iter()
    .max()
    .unwrap();
    assert!(fresh["id"].as_i64().unwrap() > max_before, "{fresh}");
    assert_eq!(fresh["version"], 1);
}

#[test]
fn every_id_resolves_to_the_same_schema_after_sigkill() {
    let mut s = Strom::start(&[]);
    wait_registry(&s);
    let p = s.registry_port;
    let mut registered = Vec::new();
    for i in 0..12 {
        let (subject, body) = match i % 3 {
            0 => (
                format!("a{i}-value"),
                json!({"schema": json!({"type": "record", "name": format!("R{i}"), "fields": [{"name": "f", "type": "int"}]}).to_string()}),
            ),
            1 => (
                format!("j{i}-value"),
                json!({"schemaType": "JSON", "schema": json!({"type": "object", "title": format!("T{i}")}).to_string()}),
            ),
            _ => (
                format!("p{i}-value"),
                json!({"schemaType": "PROTOBUF", "schema": format!("syntax = \"proto3\";\nmessage M{i} {{ int32 a = 1; }}\n")}),
            ),
        };
        let r = ok(
            p,
            "POST",
            &format!("/subjects/{subject}/versions"),
            Some(body),
        );
        let id = r["id"].as_i64().unwrap();
        registered.push((
            id,
            subject,
            ok(p, "GET", &format!("/schemas/ids/{id}"), None),
        ));
    }
    ok(p, "DELETE", "/subjects/a0-value", None);
    ok(
        p,
        "PUT",
        "/config/j1-value",
        Some(json!({"compatibility": "FULL"})),
    );
    let subjects = ok(p, "GET", "/subjects?deleted=true", None);

    s.kill9();
    s.restart();
    wait_registry(&s);
    let p = s.registry_port;
    for (id, subject, schema) in &registered {
        assert_eq!(
            &ok(p, "GET", &format!("/schemas/ids/{id}"), None),
            schema,
            "id {id}"
        );
        let v = ok(
            p,
            "GET",
            &format!("/subjects/{subject}/versions/1?deleted=true"),
            None,
        );
        assert_eq!(v["id"].as_i64(), Some(*id));
    }
    assert_eq!(ok(p, "GET", "/subjects?deleted=true", None), subjects);
    err(p, "GET", "/subjects/a0-value/versions", None, 404, 40401);
    assert_eq!(
        ok(p, "GET", "/config/j1-value", None)["compatibilityLevel"],
        "FULL"
    );
    let max = registered.iter().map(|r| r.0).max().unwrap();
    let next = ok(
        p,
        "POST",
        "/subjects/new-value/versions",
        Some(json!({"schema": "\"string\""})),
    );
    assert_eq!(next["id"].as_i64(), Some(max + 1));
}

fn schemas_cli(s: &Strom, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(strom_bin())
        .arg("schemas")
        .args(args)
        .env(
            "STROM_SCHEMA_REGISTRY",
            format!("http://127.0.0.1:{}", s.registry_port),
        )
        .env("STROM_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn strom_schemas_commands() {
    let s = Strom::start(&[]);
    wait_registry(&s);
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("user.avsc");
    std::fs::write(
        &v1,
        r#"{"type":"record","name":"U","fields":[{"name":"a","type":"string"}]}"#,
    )
    .unwrap();
    let v2 = dir.path().join("user2.avsc");
    std::fs::write(&v2, r#"{"type":"record","name":"U","fields":[{"name":"a","type":"string"},{"name":"b","type":"int"}]}"#).unwrap();
    let proto = dir.path().join("m.proto");
    std::fs::write(&proto, "syntax = \"proto3\";\nmessage M { int32 a = 1; }\n").unwrap();

    let (good, out, e) = schemas_cli(&s, &["register", "u-value", v1.to_str().unwrap()]);
    assert!(good, "{e}");
    assert!(out.contains("id 1 version 1"), "{out}");
    let (good, out, e) = schemas_cli(&s, &["register", "m-value", proto.to_str().unwrap()]);
    assert!(good, "{e}");
    assert!(out.contains("id 2"), "{out}");
    assert_eq!(
        ok(s.registry_port, "GET", "/schemas/ids/2", None)["schemaType"],
        "PROTOBUF"
    );
    let (_, out, _) = schemas_cli(&s, &["subjects"]);
    assert_eq!(out, "m-value\nu-value\n");
    let (_, out, _) = schemas_cli(&s, &["versions", "u-value"]);
    assert_eq!(out, "1\n");
    let (good, out, _) = schemas_cli(&s, &["show", "u-value"]);
    assert!(
        good && out.contains("version 1 id 1 type AVRO") && out.contains("\"name\":\"U\""),
        "{out}"
    );
    // v2 adds a field without default: incompatible under BACKWARD, exit status 1.
    let (good, out, _) = schemas_cli(&s, &["check", "u-value", v2.to_str().unwrap()]);
    assert!(!good && out.starts_with("incompatible"), "{out}");
    let (good, out, e) = schemas_cli(&s, &["register", "u-value", v2.to_str().unwrap()]);
    assert!(!good && e.contains("409"), "{out} {e}");
    let (good, out, e) = schemas_cli(&s, &["set-level", "forward", "--subject", "u-value"]);
    assert!(good && out.contains("FORWARD"), "{out} {e}");
    let (good, out, _) = schemas_cli(&s, &["check", "u-value", v2.to_str().unwrap()]);
    assert!(good && out.trim() == "compatible", "{out}");
    let (good, out, e) = schemas_cli(&s, &["register", "u-value", v2.to_str().unwrap()]);
    assert!(good && out.contains("version 2"), "{out} {e}");
    let (good, out, e) = schemas_cli(&s, &["delete", "u-value", "--schema-version", "1"]);
    assert!(good && out.contains("version 1"), "{out} {e}");
    let (_, out, _) = schemas_cli(&s, &["versions", "u-value"]);
    assert_eq!(out, "2\n");
    let (good, _, e) = schemas_cli(&s, &["delete", "u-value", "--permanent"]);
    assert!(!good && e.contains("40405"), "{e}");
    let (good, out, e) = schemas_cli(&s, &["delete", "u-value"]);
    assert!(good && out.contains("[2]"), "{out} {e}");
    let (_, out, _) = schemas_cli(&s, &["subjects"]);
    assert_eq!(out, "m-value\n");
}

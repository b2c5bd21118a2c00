//! Avro schemas: parsed by apache-avro, references inlined, compatibility by Avro's schema
//! resolution rules (the writer's schema against the reader's).

use std::collections::{HashMap, HashSet};

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use serde_json::Value;

use super::Dependency;

#[derive(Debug, Clone)]
pub struct AvroSchema {
    /// Self-contained: every referenced named type is defined inline at its first use.
    pub schema: Schema,
    /// The parsed schema written back as compact JSON: keeps defaults, docs, aliases and
    /// logical types (which compatibility depends on) and drops formatting.
    pub canonical: String,
    /// Avro's Parsing Canonical Form, and its 64-bit Rabin fingerprint (the Avro spec's
    /// schema fingerprint), for tools that identify schemas by fingerprint.
    pub parsing_canonical_form: String,
    pub fingerprint: u64,
}

pub fn parse(text: &str, deps: &[Dependency]) -> Result<AvroSchema, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("Invalid Avro schema: not JSON: {e}"))?;
    let mut dep_values = HashMap::new();
    for d in deps {
        let v: Value = serde_json::from_str(&d.text)
            .map_err(|e| format!("Invalid Avro schema: reference {} is not JSON: {e}", d.name))?;
        dep_values.insert(d.name.clone(), v);
    }
    let value = if dep_values.is_empty() {
        value
    } else {
        let mut defined = HashSet::new();
        inline(value, &dep_values, &mut defined, "")
    };
    check_names(&value)?;
    // apache-avro panics on some malformed input (an unwrap on names it did not validate):
    // names are checked above, and a panic that still happens is an invalid schema, not a
    // dead request.
    let parsed = std::panic::catch_unwind(|| {
        let schema = Schema::parse(&value).map_err(|e| format!("Invalid Avro schema: {e}"))?;
        let canonical = serde_json::to_string(&schema)
            .map_err(|e| format!("Invalid Avro schema: cannot write it back: {e}"))?;
        let parsing_canonical_form = schema.canonical_form();
        Ok::<_, String>((schema, canonical, parsing_canonical_form))
    })
    .map_err(|_| "Invalid Avro schema: it could not be parsed".to_string())?;
    let (schema, canonical, parsing_canonical_form) = parsed?;
    let fp = schema.fingerprint::<apache_avro::rabin::Rabin>();
    let mut bytes = [0u8; 8];
    for (i, b) in fp.bytes.iter().take(8).enumerate() {
        bytes[i] = *b;
    }
    Ok(AvroSchema {
        schema,
        canonical,
        parsing_canonical_form,
        fingerprint: u64::from_le_bytes(bytes),
    })
}

/// Whether `s` is an Avro name: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `s` is a full name: names separated by dots.
fn is_full_name(s: &str) -> bool {
    s.split('.').all(is_name)
}

/// Checks the names, namespaces and aliases of every named type (records, enums, fixed).
fn check_names(value: &Value) -> Result<(), String> {
    match value {
        Value::Array(items) => items.iter().try_for_each(check_names),
        Value::Object(map) => {
            let named = matches!(
                map.get("type").and_then(Value::as_str),
                Some("record" | "error" | "enum" | "fixed")
            );
            if named {
                let bad = |what: &str, v: &Value| {
                    format!("Invalid Avro schema: {what} {v} is not a valid Avro name")
                };
                match map.get("name") {
                    Some(Value::String(n)) if is_full_name(n) => {}
                    Some(other) => return Err(bad("name", other)),
                    None => return Err("Invalid Avro schema: a named type has no name".into()),
                }
                match map.get("namespace") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(n)) if n.is_empty() || is_full_name(n) => {}
                    Some(other) => return Err(bad("namespace", other)),
                }
                match map.get("aliases") {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(aliases)) => {
                        for a in aliases {
                            if !a.as_str().is_some_and(is_full_name) {
                                return Err(bad("alias", a));
                            }
                        }
                    }
                    Some(other) => return Err(bad("aliases", other)),
                }
            }
            map.values().try_for_each(check_names)
        }
        _ => Ok(()),
    }
}

/// Replaces the first use of each referenced name by its definition (Avro allows a named type
/// to be defined once and used by name afterwards).
fn inline(
    value: Value,
    deps: &HashMap<String, Value>,
    defined: &mut HashSet<String>,
    namespace: &str,
) -> Value {
    match value {
        Value::String(name) => {
            let full = if name.contains('.') || namespace.is_empty() {
                name.clone()
            } else {
                format!("{namespace}.{name}")
            };
            for candidate in [&full, &name] {
                if let Some(def) = deps.get(candidate.as_str()) {
                    if defined.insert(candidate.clone()) {
                        return inline(def.clone(), deps, defined, "");
                    }
                    return Value::String(candidate.clone());
                }
            }
            Value::String(name)
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| inline(v, deps, defined, namespace))
                .collect(),
        ),
        Value::Object(mut map) => {
            // A named type sets the namespace for the names inside it.
            let mut ns = namespace.to_string();
            if let Some(Value::String(name)) = map.get("name")
                && matches!(
                    map.get("type").and_then(Value::as_str),
                    Some("record" | "error" | "enum" | "fixed")
                )
            {
                if let Some((n, _)) = name.rsplit_once('.') {
                    ns = n.to_string();
                } else if let Some(Value::String(n)) = map.get("namespace") {
                    ns = n.clone();
                }
                let full = if name.contains('.') || ns.is_empty() {
                    name.clone()
                } else {
                    format!("{ns}.{name}")
                };
                defined.insert(full);
            }
            for key in ["type", "items", "values", "fields"] {
                if let Some(v) = map.remove(key) {
                    map.insert(key.to_string(), inline(v, deps, defined, &ns));
                }
            }
            Value::Object(map)
        }
        other => other,
    }
}

/// Why a reader with `reader` cannot read data written with `writer` (empty: it can).
pub fn can_read(writer: &AvroSchema, reader: &AvroSchema) -> Vec<String> {
    let checked = std::panic::catch_unwind(|| {
        SchemaCompatibility::can_read(&writer.schema, &reader.schema).map_err(|e| e.to_string())
    });
    match checked {
        Ok(Ok(())) => Vec::new(),
        Ok(Err(e)) => vec![e],
        Err(_) => vec!["the schemas could not be compared".to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_names_are_invalid_schemas_not_panics() {
        for text in [
            r#"{"type":"enum","name":",E","symbols":["A","B"],"default":"A"}"#,
            r#"{"type":"record","name":"R","namespace":"a..b","fields":[]}"#,
            r#"{"type":"fixed","name":"F","size":4,"aliases":["1x"]}"#,
            r#"{"type":"record","name":5,"fields":[]}"#,
        ] {
            assert!(parse(text, &[]).is_err(), "{text}");
        }
        assert!(parse(r#"{"type":"record","name":"a.b.R","fields":[]}"#, &[]).is_ok());
    }
}

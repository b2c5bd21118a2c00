//! JSON Schema (drafts 4, 6, 7, 2019-09 and 2020-12): validated by the jsonschema crate
//! against its draft's meta-schema, with references served offline from the registry.
//!
//! Compatibility is inclusion: a reader schema R can read what a writer schema W wrote when
//! every document W accepts is accepted by R. The check is conservative: a construct it cannot
//! prove included counts as a change that breaks compatibility. Open content models
//! (`additionalProperties` absent or true) and closed ones (`false`) fall out of this rule:
//! adding a property to an open model is not backward compatible (old data may have held
//! anything under that name), adding one to a closed model is.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::Dependency;

#[derive(Debug, Clone)]
pub struct JsonSchema {
    pub value: Value,
    /// Referenced documents by reference name.
    pub deps: Arc<HashMap<String, Value>>,
    /// The document written back with sorted keys and no whitespace.
    pub canonical: String,
}

struct Offline(HashMap<String, Value>);

impl jsonschema::Retrieve for Offline {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let s = uri.as_str();
        for (name, v) in &self.0 {
            if s == name || s.ends_with(&format!("/{name}")) || s.ends_with(name.as_str()) {
                return Ok(v.clone());
            }
        }
        Err(format!("reference {s} is not among the schema's references").into())
    }
}

/// Sorts object keys recursively (the canonical form must not depend on key order).
pub fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let b: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(b.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

pub fn parse(text: &str, deps: &[Dependency]) -> Result<JsonSchema, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("Invalid JSON schema: not JSON: {e}"))?;
    if !value.is_object() && !value.is_boolean() {
        return Err("Invalid JSON schema: a schema is an object or a boolean".into());
    }
    let mut dep_values = HashMap::new();
    for d in deps {
        let v: Value = serde_json::from_str(&d.text)
            .map_err(|e| format!("Invalid JSON schema: reference {} is not JSON: {e}", d.name))?;
        dep_values.insert(d.name.clone(), v);
    }
    jsonschema::options()
        .with_retriever(Offline(dep_values.clone()))
        .build(&value)
        .map_err(|e| format!("Invalid JSON schema: {e}"))?;
    let canonical = serde_json::to_string(&sorted(&value)).expect("a Value serializes");
    Ok(JsonSchema {
        value,
        deps: Arc::new(dep_values),
        canonical,
    })
}

/// Why documents written with `writer` may fail `reader` (empty: all pass).
pub fn can_read(writer: &JsonSchema, reader: &JsonSchema) -> Vec<String> {
    let budget = std::cell::Cell::new(STEP_BUDGET);
    let mut cx = Cx {
        budget: &budget,
        w_root: &writer.value,
        r_root: &reader.value,
        w_deps: &writer.deps,
        r_deps: &reader.deps,
        problems: Vec::new(),
        depth: 0,
    };
    cx.includes(&writer.value, &reader.value, "#");
    cx.problems
}

/// Subschema comparisons one check may make: combinators nest multiplicatively, so a small
/// document can ask for very many. Past the budget the check answers "incompatible".
const STEP_BUDGET: usize = 200_000;

struct Cx<'a> {
    budget: &'a std::cell::Cell<usize>,
    w_root: &'a Value,
    r_root: &'a Value,
    w_deps: &'a HashMap<String, Value>,
    r_deps: &'a HashMap<String, Value>,
    problems: Vec<String>,
    depth: usize,
}

const TRUE: Value = Value::Bool(true);

/// Keywords that do not constrain documents.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "readOnly",
    "writeOnly",
    "deprecated",
    "definitions",
    "$defs",
    "$anchor",
    "$dynamicAnchor",
    "$vocabulary",
    "contentEncoding",
    "contentMediaType",
    "connect.index",
    "connect.type",
    "connect.parameters",
    "javaType",
];

/// Keywords this checker reasons about; any other constraining keyword must be equal on
/// both sides.
const HANDLED: &[&str] = &[
    "$ref",
    "type",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "items",
    "prefixItems",
    "additionalItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "properties",
    "patternProperties",
    "additionalProperties",
    "required",
    "minProperties",
    "maxProperties",
    "dependencies",
    "dependentRequired",
];

fn types_of(s: &Map<String, Value>) -> Option<Vec<String>> {
    match s.get("type") {
        Some(Value::String(t)) => Some(vec![t.clone()]),
        Some(Value::Array(a)) => Some(
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    }
}

fn type_allows(types: &Option<Vec<String>>, t: &str) -> bool {
    match types {
        None => true,
        Some(ts) => ts
            .iter()
            .any(|x| x == t || (x == "number" && t == "integer")),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn num(s: &Map<String, Value>, k: &str) -> Option<f64> {
    s.get(k).and_then(Value::as_f64)
}

/// The values a schema allows when it lists them (`enum` or `const`).
fn listed(s: &Map<String, Value>) -> Option<Vec<Value>> {
    if let Some(c) = s.get("const") {
        return Some(vec![c.clone()]);
    }
    s.get("enum").and_then(Value::as_array).cloned()
}

impl<'a> Cx<'a> {
    fn fail(&mut self, path: &str, what: impl Into<String>) {
        self.problems.push(format!("{path}: {}", what.into()));
    }

    fn resolve<'b>(&self, s: &'b Value, writer: bool) -> &'b Value
    where
        'a: 'b,
    {
        let mut cur = s;
        for _ in 0..32 {
            let Some(r) = cur.get("$ref").and_then(Value::as_str) else {
                return cur;
            };
            let (root, deps) = if writer {
                (self.w_root, self.w_deps)
            } else {
                (self.r_root, self.r_deps)
            };
            let (doc, frag) = match r.split_once('#') {
                Some((d, f)) => (d, f),
                None => (r, ""),
            };
            let base: &'b Value = if doc.is_empty() {
                root
            } else {
                match deps
                    .iter()
                    .find(|(n, _)| doc == n.as_str() || doc.ends_with(&format!("/{n}")))
                {
                    Some((_, v)) => v,
                    None => return cur,
                }
            };
            let target = if frag.is_empty() {
                Some(base)
            } else {
                base.pointer(frag)
            };
            match target {
                Some(t) => cur = t,
                None => return cur,
            }
        }
        cur
    }

    /// Records why documents valid under `w` may be invalid under `r`.
    fn includes<'b>(&mut self, w: &'b Value, r: &'b Value, path: &str)
    where
        'a: 'b,
    {
        let left = self.budget.get();
        if left == 0 {
            self.fail(path, "the schemas are too complex to compare");
            return;
        }
        self.budget.set(left - 1);
        self.depth += 1;
        if self.depth > 64 {
            // Recursive schemas: assume the deeper levels repeat what was checked.
            self.depth -= 1;
            return;
        }
        let w = self.resolve(w, true);
        let r = self.resolve(r, false);
        self.includes_resolved(w, r, path);
        self.depth -= 1;
    }

    fn includes_resolved<'b>(&mut self, w: &'b Value, r: &'b Value, path: &str)
    where
        'a: 'b,
    {
        if w == &Value::Bool(false) {
            return;
        }
        let r = match r {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                return self.fail(path, "the new schema rejects everything here");
            }
            Value::Object(m) => m,
            _ => return,
        };
        let empty = Map::new();
        let w = match w {
            Value::Object(m) => m,
            _ => &empty,
        };
        if r.keys().all(|k| ANNOTATIONS.contains(&k.as_str())) {
            return;
        }
        // Combinators on the writer side: every branch must be included.
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = w.get(key).and_then(Value::as_array) {
                // A document the writer accepts matches one of its branches (the siblings of
                // the combinator only narrow it), so checking each branch alone is sound.
                let rv = Value::Object(r.clone());
                for (i, b) in branches.iter().enumerate() {
                    self.includes(b, &rv, &format!("{path}/{key}/{i}"));
                }
                return;
            }
        }
        // Reader combinators.
        let wv = Value::Object(w.clone());
        if let Some(branches) = r.get("allOf").and_then(Value::as_array) {
            for (i, b) in branches.iter().enumerate() {
                self.includes(&wv, b, &format!("{path}/allOf/{i}"));
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = r.get(key).and_then(Value::as_array) {
                let found_for = |cx: &Cx<'a>, wv: &Value| {
                    branches.iter().any(|b| {
                        let mut probe = cx.child();
                        probe.includes(wv, b, path);
                        probe.problems.is_empty()
                    })
                };
                // A writer with several types is the union of one schema per type: each may
                // find its own branch.
                let found = found_for(self, &wv)
                    || types_of(w).is_some_and(|ts| {
                        ts.len() > 1
                            && ts.iter().all(|t| {
                                let mut one = w.clone();
                                one.insert("type".into(), Value::String(t.clone()));
                                found_for(self, &Value::Object(one))
                            })
                    });
                if !found {
                    self.fail(
                        path,
                        format!("no branch of the new {key} accepts what the old schema allowed"),
                    );
                }
            }
        }
        if let Some(n) = r.get("not")
            && w.get("not") != Some(n)
        {
            self.fail(path, "the new schema adds or changes a \"not\"");
        }
        // Other keywords must be equal.
        for (k, v) in r {
            if ANNOTATIONS.contains(&k.as_str()) || HANDLED.contains(&k.as_str()) {
                continue;
            }
            if w.get(k) != Some(v) {
                self.fail(path, format!("keyword {k:?} was added or changed"));
            }
        }
        // The writer's allOf narrows it: if one part alone is included, all is well.
        if let Some(parts) = w.get("allOf").and_then(Value::as_array) {
            let rv = Value::Object(r.clone());
            let mut rest = w.clone();
            rest.remove("allOf");
            let restv = Value::Object(rest);
            let mut probe = self.child();
            probe.includes(&restv, &rv, path);
            if probe.problems.is_empty() {
                return;
            }
            for p in parts {
                let mut probe = self.child();
                probe.includes(p, &rv, path);
                if probe.problems.is_empty() {
                    return;
                }
            }
        }

        // Listed values.
        let w_types = types_of(w);
        let r_types = types_of(r);
        if let Some(values) = listed(w) {
            let r_listed = listed(r);
            for v in &values {
                if !type_allows(&r_types, json_type(v)) {
                    self.fail(
                        path,
                        format!("the value {v} is no longer of an allowed type"),
                    );
                }
                if let Some(rl) = &r_listed
                    && !rl.contains(v)
                {
                    self.fail(path, format!("the value {v} is no longer allowed"));
                }
            }
            // Values are checked against the reader's other constraints only roughly: the
            // remaining keyword checks below still run on the writer's keywords.
        } else if let Some(rl) = listed(r) {
            let _ = rl;
            self.fail(
                path,
                "the new schema restricts the allowed values (enum or const)",
            );
        }

        // Types.
        match (&w_types, &r_types) {
            (_, None) => {}
            (None, Some(_)) if listed(w).is_some() => {}
            (None, Some(rt)) => {
                self.fail(path, format!("the new schema restricts the type to {rt:?}"));
            }
            (Some(wt), Some(_)) => {
                for t in wt {
                    if !type_allows(&r_types, t) {
                        self.fail(path, format!("type {t:?} is no longer allowed"));
                    }
                }
            }
        }
        let w_may = |t: &str| type_allows(&w_types, t) && listed(w).is_none();

        if w_may("number") || w_may("integer") {
            self.numeric(w, r, path);
        }
        if w_may("string") {
            self.bound(w, r, "minLength", true, path);
            self.bound(w, r, "maxLength", false, path);
            for k in ["pattern", "format"] {
                if let Some(rv) = r.get(k)
                    && w.get(k) != Some(rv)
                {
                    self.fail(path, format!("{k} was added or changed"));
                }
            }
        }
        if w_may("array") {
            self.array(w, r, path);
        }
        if w_may("object") {
            self.object(w, r, path);
        }
    }

    fn child(&self) -> Cx<'a> {
        Cx {
            budget: self.budget,
            w_root: self.w_root,
            r_root: self.r_root,
            w_deps: self.w_deps,
            r_deps: self.r_deps,
            problems: Vec::new(),
            depth: self.depth,
        }
    }

    /// `lower`: the reader's bound must be at most the writer's (a minimum); else at least.
    fn bound(
        &mut self,
        w: &Map<String, Value>,
        r: &Map<String, Value>,
        k: &str,
        lower: bool,
        path: &str,
    ) {
        if let Some(rb) = num(r, k) {
            let ok = match num(w, k) {
                Some(wb) => {
                    if lower {
                        rb <= wb
                    } else {
                        rb >= wb
                    }
                }
                None => false,
            };
            if !ok {
                self.fail(path, format!("{k} was added or made stricter"));
            }
        }
    }

    fn numeric(&mut self, w: &Map<String, Value>, r: &Map<String, Value>, path: &str) {
        // The effective lower and upper bounds, with exclusiveness (draft 4 writes the
        // exclusive flags as booleans beside minimum/maximum; later drafts as numbers).
        fn lower(s: &Map<String, Value>) -> Option<(f64, bool)> {
            let m = num(s, "minimum");
            let ex = s.get("exclusiveMinimum");
            match (m, ex) {
                (Some(m), Some(Value::Bool(true))) => Some((m, true)),
                (m, Some(Value::Number(e))) => {
                    let e = e.as_f64()?;
                    match m {
                        Some(m) if m > e => Some((m, false)),
                        _ => Some((e, true)),
                    }
                }
                (Some(m), _) => Some((m, false)),
                (None, _) => None,
            }
        }
        fn upper(s: &Map<String, Value>) -> Option<(f64, bool)> {
            let m = num(s, "maximum");
            let ex = s.get("exclusiveMaximum");
            match (m, ex) {
                (Some(m), Some(Value::Bool(true))) => Some((m, true)),
                (m, Some(Value::Number(e))) => {
                    let e = e.as_f64()?;
                    match m {
                        Some(m) if m < e => Some((m, false)),
                        _ => Some((e, true)),
                    }
                }
                (Some(m), _) => Some((m, false)),
                (None, _) => None,
            }
        }
        if let Some((rl, rex)) = lower(r) {
            let ok = lower(w).is_some_and(|(wl, wex)| wl > rl || (wl == rl && (wex || !rex)));
            if !ok {
                self.fail(path, "the minimum was added or raised");
            }
        }
        if let Some((ru, rex)) = upper(r) {
            let ok = upper(w).is_some_and(|(wu, wex)| wu < ru || (wu == ru && (wex || !rex)));
            if !ok {
                self.fail(path, "the maximum was added or lowered");
            }
        }
        if let Some(rm) = num(r, "multipleOf") {
            let ok = num(w, "multipleOf").is_some_and(|wm| {
                let q = wm / rm;
                (q - q.round()).abs() < 1e-9
            });
            if !ok {
                self.fail(path, "multipleOf was added or changed");
            }
        }
    }

    fn array<'b>(&mut self, w: &'b Map<String, Value>, r: &'b Map<String, Value>, path: &str)
    where
        'a: 'b,
    {
        self.bound(w, r, "minItems", true, path);
        self.bound(w, r, "maxItems", false, path);
        if r.get("uniqueItems") == Some(&Value::Bool(true))
            && w.get("uniqueItems") != Some(&Value::Bool(true))
        {
            self.fail(path, "uniqueItems was added");
        }
        // Positional schemas: prefixItems (2020-12) or an items array (earlier drafts), then
        // the schema for the rest: items (2020-12) or additionalItems.
        fn split(s: &Map<String, Value>) -> (Vec<&Value>, &Value) {
            if let Some(Value::Array(p)) = s.get("prefixItems") {
                return (p.iter().collect(), s.get("items").unwrap_or(&TRUE));
            }
            match s.get("items") {
                Some(Value::Array(p)) => (
                    p.iter().collect(),
                    s.get("additionalItems").unwrap_or(&TRUE),
                ),
                Some(other) => (Vec::new(), other),
                None => (Vec::new(), &TRUE),
            }
        }
        let (wp, wrest) = split(w);
        let (rp, rrest) = split(r);
        let n = wp.len().max(rp.len());
        for i in 0..n {
            let ws = wp.get(i).copied().unwrap_or(wrest);
            let rs = rp.get(i).copied().unwrap_or(rrest);
            self.includes(ws, rs, &format!("{path}/items/{i}"));
        }
        self.includes(wrest, rrest, &format!("{path}/items"));
    }

    fn object<'b>(&mut self, w: &'b Map<String, Value>, r: &'b Map<String, Value>, path: &str)
    where
        'a: 'b,
    {
        self.bound(w, r, "minProperties", true, path);
        self.bound(w, r, "maxProperties", false, path);
        let strs = |s: &Map<String, Value>, k: &str| -> Vec<String> {
            s.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let w_required = strs(w, "required");
        for req in strs(r, "required") {
            if !w_required.contains(&req) {
                self.fail(path, format!("property {req:?} became required"));
            }
        }
        for k in ["dependencies", "dependentRequired"] {
            if let Some(rv) = r.get(k)
                && w.get(k) != Some(rv)
            {
                self.fail(path, format!("{k} was added or changed"));
            }
        }
        let props = |s: &'b Map<String, Value>| -> &'b Map<String, Value> {
            match s.get("properties") {
                Some(Value::Object(m)) => m,
                _ => empty_static(),
            }
        };
        let pattern_props = |s: &'b Map<String, Value>| -> Vec<(&'b String, &'b Value)> {
            match s.get("patternProperties") {
                Some(Value::Object(m)) => m.iter().collect(),
                _ => Vec::new(),
            }
        };
        let additional = |s: &'b Map<String, Value>| -> &'b Value {
            s.get("additionalProperties").unwrap_or(&TRUE)
        };
        // The schema a side applies to a property name it does not list.
        let for_name = |s: &'b Map<String, Value>, name: &str| -> Vec<&'b Value> {
            let matched: Vec<&'b Value> = pattern_props(s)
                .into_iter()
                .filter(|(p, _)| regex_lite_match(p, name))
                .map(|(_, v)| v)
                .collect();
            if matched.is_empty() {
                vec![additional(s)]
            } else {
                matched
            }
        };
        let (wprops, rprops) = (props(w), props(r));
        for (name, rs) in rprops {
            match wprops.get(name) {
                Some(ws) => self.includes(ws, rs, &format!("{path}/properties/{name}")),
                None => {
                    for ws in for_name(w, name) {
                        if ws != &Value::Bool(false) {
                            let mut probe = self.child();
                            probe.includes(ws, rs, path);
                            if !probe.problems.is_empty() {
                                self.fail(
                                    path,
                                    format!(
                                        "property {name:?} was added, and the old schema's open content model allowed any value under that name"
                                    ),
                                );
                            }
                        }
                    }
                }
            }
        }
        for (name, ws) in wprops {
            if rprops.contains_key(name) {
                continue;
            }
            for rs in for_name(r, name) {
                let mut probe = self.child();
                probe.includes(ws, rs, path);
                if !probe.problems.is_empty() {
                    self.fail(
                        path,
                        format!("property {name:?} was removed, and the new schema does not accept its old values"),
                    );
                }
            }
        }
        // Names neither side lists: the writer's pattern and additional schemas against the
        // reader's.
        let wadd = additional(w);
        for (p, ws) in pattern_props(w) {
            let rs = pattern_props(r)
                .into_iter()
                .find(|(rp, _)| *rp == p)
                .map(|(_, v)| v)
                .unwrap_or(additional(r));
            self.includes(ws, rs, &format!("{path}/patternProperties/{p}"));
        }
        if wadd != &Value::Bool(false) {
            self.includes(wadd, additional(r), &format!("{path}/additionalProperties"));
            for (p, rs) in pattern_props(r) {
                if !pattern_props(w).iter().any(|(wp, _)| *wp == p) {
                    self.includes(wadd, rs, &format!("{path}/patternProperties/{p}"));
                }
            }
        }
    }
}

fn empty_static() -> &'static Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Map::new)
}

/// Whether `name` matches the ECMA 262 pattern `pattern`, for the common forms used in
/// `patternProperties` (anchors, literals, `.`, `.*`, character classes are taken as
/// "may match"): a conservative answer is "matches", which checks the name against more
/// schemas.
fn regex_lite_match(pattern: &str, name: &str) -> bool {
    let literal = |s: &str| !s.chars().any(|c| "\\.*+?()[]{}|^$".contains(c));
    let p = pattern;
    match (p.strip_prefix('^'), p.strip_suffix('$')) {
        _ if literal(p) => name.contains(p),
        (Some(rest), _) if literal(rest) => name.starts_with(rest),
        (Some(rest), _) if rest.strip_suffix('$').is_some_and(literal) => {
            name == rest.trim_end_matches('$')
        }
        (None, Some(rest)) if literal(rest) => name.ends_with(rest),
        _ => true,
    }
}

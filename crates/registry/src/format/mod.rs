//! Schema formats: parsing, canonical forms and compatibility checks. Pure: no I/O.
//!
//! Every format answers the same question for compatibility: can a reader using schema R
//! read every datum written with schema W ([`can_read`])? The compatibility levels are
//! built from it in [`crate::compat`].

pub mod avro;
pub mod json;
pub mod protobuf;

use std::fmt;

use serde::{Deserialize, Serialize};

/// The three schema types the registry stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    #[default]
    Avro,
    Protobuf,
    Json,
}

impl SchemaType {
    pub const ALL: [SchemaType; 3] = [SchemaType::Json, SchemaType::Protobuf, SchemaType::Avro];

    pub fn name(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Protobuf => "PROTOBUF",
            SchemaType::Json => "JSON",
        }
    }

    /// Parses a `schemaType` value (case-insensitive, as the REST API accepts it).
    pub fn parse(s: &str) -> Option<SchemaType> {
        match s.to_ascii_uppercase().as_str() {
            "AVRO" => Some(SchemaType::Avro),
            "PROTOBUF" => Some(SchemaType::Protobuf),
            "JSON" => Some(SchemaType::Json),
            _ => None,
        }
    }
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A referenced schema, already looked up: the name the referring schema uses for it (an Avro
/// full name, a Protobuf import path, a JSON Schema `$ref` URI) and its text. The list given to
/// [`parse`] holds every schema reachable through references, not only the direct ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    pub text: String,
}

/// A parsed, valid schema.
#[derive(Debug, Clone)]
pub enum Parsed {
    Avro(avro::AvroSchema),
    Protobuf(protobuf::ProtoSchema),
    Json(json::JsonSchema),
}

impl Parsed {
    pub fn schema_type(&self) -> SchemaType {
        match self {
            Parsed::Avro(_) => SchemaType::Avro,
            Parsed::Protobuf(_) => SchemaType::Protobuf,
            Parsed::Json(_) => SchemaType::Json,
        }
    }

    /// A form that is equal for schemas that mean the same (whitespace, key order and, for
    /// Protobuf, comments and formatting do not matter). Two registrations whose canonical
    /// forms and references are equal share one schema id.
    pub fn canonical(&self) -> &str {
        match self {
            Parsed::Avro(s) => &s.canonical,
            Parsed::Protobuf(s) => &s.canonical,
            Parsed::Json(s) => &s.canonical,
        }
    }

    /// The text stored for `normalize=true`: the canonical JSON for Avro and JSON Schema; the
    /// text as given for Protobuf (its canonical form is a binary descriptor).
    pub fn normalized(&self, original: &str) -> String {
        match self {
            Parsed::Avro(s) => s.canonical.clone(),
            Parsed::Json(s) => s.canonical.clone(),
            Parsed::Protobuf(_) => original.to_string(),
        }
    }
}

/// Parses `text` as a schema of type `ty`, resolving references through `deps`. The error is
/// a message for the 42201 "invalid schema" answer.
pub fn parse(ty: SchemaType, text: &str, deps: &[Dependency]) -> Result<Parsed, String> {
    match ty {
        SchemaType::Avro => avro::parse(text, deps).map(Parsed::Avro),
        SchemaType::Protobuf => protobuf::parse(text, deps).map(Parsed::Protobuf),
        SchemaType::Json => json::parse(text, deps).map(Parsed::Json),
    }
}

/// Why a reader using `reader` cannot read data written with `writer`: empty when it can.
/// Schemas of different types are never compatible.
pub fn can_read(writer: &Parsed, reader: &Parsed) -> Vec<String> {
    match (writer, reader) {
        (Parsed::Avro(w), Parsed::Avro(r)) => avro::can_read(w, r),
        (Parsed::Protobuf(w), Parsed::Protobuf(r)) => protobuf::can_read(w, r),
        (Parsed::Json(w), Parsed::Json(r)) => json::can_read(w, r),
        (w, r) => vec![format!(
            "the schema type changed from {} to {}",
            w.schema_type(),
            r.schema_type()
        )],
    }
}

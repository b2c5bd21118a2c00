//! `strom schemas`: the Schema Registry's REST API from the command line.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub const LONG_ABOUT: &str = "Register, list, show, check and delete schemas in a Schema Registry \
(strom's, served by `strom server` on schema.registry.listener, 127.0.0.1:8081 by default, or any \
registry with the same REST API).\n\nExamples:\n  strom schemas register orders-value orders.avsc\n  \
strom schemas subjects\n  strom schemas versions orders-value\n  strom schemas show orders-value latest\n  \
strom schemas check orders-value orders-v2.avsc\n  strom schemas set-level FULL --subject orders-value\n  \
strom schemas delete orders-value --schema-version 1";

#[derive(clap::Args, Debug)]
pub struct SchemasArgs {
    /// The registry's URL
    #[arg(
        long,
        global = true,
        env = "STROM_SCHEMA_REGISTRY",
        default_value = "http://127.0.0.1:8081"
    )]
    registry: String,
    #[command(subcommand)]
    command: SchemasCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum SchemasCommand {
    /// Register the schema in FILE under SUBJECT; prints its id and version
    Register {
        subject: String,
        file: String,
        #[command(flatten)]
        schema: SchemaOpts,
        /// Store the normalized form
        #[arg(long)]
        normalize: bool,
    },
    /// List subjects
    Subjects {
        /// Include soft-deleted subjects
        #[arg(long)]
        deleted: bool,
    },
    /// List a subject's versions
    Versions {
        subject: String,
        #[arg(long)]
        deleted: bool,
    },
    /// Show one version of a subject (default: the latest)
    Show {
        subject: String,
        /// A version number, or latest
        #[arg(value_name = "VERSION", default_value = "latest")]
        which: String,
    },
    /// Check whether the schema in FILE may be registered under SUBJECT; exits with 1 if not
    Check {
        subject: String,
        file: String,
        #[command(flatten)]
        schema: SchemaOpts,
        /// Check against this version only (default: the versions the level names)
        #[arg(long = "schema-version", value_name = "VERSION")]
        which: Option<String>,
    },
    /// Set the compatibility level, globally or for one subject
    SetLevel {
        /// NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL or FULL_TRANSITIVE
        level: String,
        #[arg(long)]
        subject: Option<String>,
    },
    /// Delete a subject, or one version of it (soft; --permanent after a soft delete)
    Delete {
        subject: String,
        /// Delete this version only
        #[arg(long = "schema-version", value_name = "VERSION")]
        which: Option<String>,
        #[arg(long)]
        permanent: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct SchemaOpts {
    /// avro, protobuf or json (default: from the file's extension, .avsc, .proto or .json)
    #[arg(long = "type")]
    schema_type: Option<String>,
    /// A reference, NAME=SUBJECT:VERSION (repeatable)
    #[arg(long = "reference", value_name = "NAME=SUBJECT:VERSION")]
    references: Vec<String>,
}

fn schema_body(file: &str, opts: &SchemaOpts) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?;
    let ty = match &opts.schema_type {
        Some(t) => t.to_ascii_uppercase(),
        None => match file.rsplit('.').next() {
            Some("proto") => "PROTOBUF".into(),
            Some("json") => "JSON".into(),
            _ => "AVRO".into(),
        },
    };
    let mut refs = Vec::new();
    for r in &opts.references {
        let (name, rest) = r
            .split_once('=')
            .with_context(|| format!("--reference {r:?}: expected NAME=SUBJECT:VERSION"))?;
        let (subject, version) = rest
            .rsplit_once(':')
            .with_context(|| format!("--reference {r:?}: expected NAME=SUBJECT:VERSION"))?;
        let version: i32 = if version == "latest" {
            -1
        } else {
            version.parse()?
        };
        refs.push(json!({"name": name, "subject": subject, "version": version}));
    }
    let mut body = json!({"schema": text, "schemaType": ty});
    if !refs.is_empty() {
        body["references"] = json!(refs);
    }
    Ok(body)
}

/// Percent-encodes a path segment.
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP/1.1 request; returns the status and the JSON body.
fn request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let hostport = base
        .trim_end_matches('/')
        .strip_prefix("http://")
        .with_context(|| format!("registry URL {base:?}: only http:// URLs are supported"))?;
    let mut s = TcpStream::connect(hostport)
        .with_context(|| format!("cannot connect to the schema registry at {base}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nAccept: application/vnd.schemaregistry.v1+json\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("the registry's answer is not HTTP")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the registry's answer has no status")?;
    let value = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()));
    Ok((status, value))
}

fn call(base: &str, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    let (status, v) = request(base, method, path, body)?;
    if status >= 300 {
        let code = v.get("error_code").cloned().unwrap_or(json!(status));
        let msg = v.get("message").and_then(Value::as_str).unwrap_or("");
        bail!("the registry answered {status} (error {code}): {msg}");
    }
    Ok(v)
}

fn print_list(v: &Value) {
    for item in v.as_array().into_iter().flatten() {
        match item {
            Value::String(s) => println!("{s}"),
            other => println!("{other}"),
        }
    }
}

pub async fn run(args: SchemasArgs) -> anyhow::Result<()> {
    let r = args.registry.as_str();
    match args.command {
        SchemasCommand::Register {
            subject,
            file,
            schema,
            normalize,
        } => {
            let body = schema_body(&file, &schema)?;
            let v = call(
                r,
                "POST",
                &format!("/subjects/{}/versions?normalize={normalize}", seg(&subject)),
                Some(&body),
            )?;
            println!(
                "registered {subject}: id {} version {}",
                v["id"], v["version"]
            );
        }
        SchemasCommand::Subjects { deleted } => {
            print_list(&call(
                r,
                "GET",
                &format!("/subjects?deleted={deleted}"),
                None,
            )?);
        }
        SchemasCommand::Versions { subject, deleted } => {
            let path = format!("/subjects/{}/versions?deleted={deleted}", seg(&subject));
            print_list(&call(r, "GET", &path, None)?);
        }
        SchemasCommand::Show { subject, which } => {
            let path = format!("/subjects/{}/versions/{}", seg(&subject), seg(&which));
            let v = call(r, "GET", &path, None)?;
            let ty = v
                .get("schemaType")
                .and_then(Value::as_str)
                .unwrap_or("AVRO");
            println!(
                "subject {} version {} id {} type {ty}",
                v["subject"].as_str().unwrap_or(""),
                v["version"],
                v["id"]
            );
            if let Some(refs) = v.get("references").and_then(Value::as_array) {
                for rf in refs {
                    println!(
                        "reference {} = {}:{}",
                        rf["name"].as_str().unwrap_or(""),
                        rf["subject"].as_str().unwrap_or(""),
                        rf["version"]
                    );
                }
            }
            println!("{}", v["schema"].as_str().unwrap_or(""));
        }
        SchemasCommand::Check {
            subject,
            file,
            schema,
            which,
        } => {
            let body = schema_body(&file, &schema)?;
            let path = match which {
                Some(v) => format!(
                    "/compatibility/subjects/{}/versions/{}?verbose=true",
                    seg(&subject),
                    seg(&v)
                ),
                None => format!(
                    "/compatibility/subjects/{}/versions?verbose=true",
                    seg(&subject)
                ),
            };
            let v = call(r, "POST", &path, Some(&body))?;
            if v["is_compatible"].as_bool() == Some(true) {
                println!("compatible");
            } else {
                println!("incompatible");
                print_list(&v["messages"]);
                std::process::exit(1);
            }
        }
        SchemasCommand::SetLevel { level, subject } => {
            let path = match &subject {
                Some(s) => format!("/config/{}", seg(s)),
                None => "/config".to_string(),
            };
            let v = call(
                r,
                "PUT",
                &path,
                Some(&json!({"compatibility": level.to_ascii_uppercase()})),
            )?;
            println!(
                "compatibility level of {}: {}",
                subject.as_deref().unwrap_or("the registry"),
                v["compatibility"].as_str().unwrap_or("")
            );
        }
        SchemasCommand::Delete {
            subject,
            which,
            permanent,
        } => {
            let path = match &which {
                Some(v) => format!(
                    "/subjects/{}/versions/{}?permanent={permanent}",
                    seg(&subject),
                    seg(v)
                ),
                None => format!("/subjects/{}?permanent={permanent}", seg(&subject)),
            };
            let v = call(r, "DELETE", &path, None)?;
            let how = if permanent {
                "permanently deleted"
            } else {
                "deleted"
            };
            match v {
                Value::Array(_) => {
                    println!("{how} {subject} versions {v}");
                }
                other => println!("{how} {subject} version {other}"),
            }
        }
    }
    Ok(())
}

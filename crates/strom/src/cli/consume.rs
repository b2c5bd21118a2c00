//! `strom consume`: read one partition from a starting point and print each record.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use strom_client::ConsumedRecord;
use strom_client::admin::OffsetSpec;
use strom_protocol::error_code;

use super::common::{ConnectArgs, Output, friendly, lossy};

pub const LONG_ABOUT: &str = "Read records from a topic partition and print them, one per line.

By default consume starts at the end of the partition and waits for new records; stop it with
Ctrl-C, or give --max-messages / --timeout-ms. A summary goes to standard error.

Format placeholders: {key} {value} {offset} {partition} {timestamp} {headers} (k=v,k=v), and
the escapes \\t and \\n. Null keys and values print as `null`.

Examples:
  strom consume --topic demo --from-beginning
  strom consume --topic events --from-beginning --format '{offset}\\t{key}\\t{value}'
  strom consume --topic demo --offset 42 --max-messages 10 --output json
  strom consume --topic demo --from-timestamp 1700000000000 --timeout-ms 5000";

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    /// Topic to read from
    #[arg(long, short = 't')]
    pub topic: String,
    /// Partition to read from
    #[arg(long, short = 'p', default_value_t = 0)]
    pub partition: i32,
    /// Start at the oldest record still in the partition
    #[arg(long, group = "start")]
    pub from_beginning: bool,
    /// Start at this offset
    #[arg(long, group = "start", value_name = "OFFSET")]
    pub offset: Option<i64>,
    /// Start at the first record with a timestamp at or after this time (ms since the epoch)
    #[arg(long, group = "start", value_name = "MS")]
    pub from_timestamp: Option<i64>,
    /// Stop after printing this many records
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
    /// Stop when no record arrives for this long (default: wait forever)
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// How to print each record, e.g. '{offset}: {key}={value}'
    #[arg(long, value_name = "TEMPLATE", default_value = "{value}")]
    pub format: String,
    /// Print records with --format (table/text) or as one JSON object per line (json)
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Most bytes to fetch per request
    #[arg(long, default_value_t = 4 * 1024 * 1024, hide = true)]
    pub fetch_max_bytes: i32,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// A piece of a parsed --format template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Key,
    Value,
    Offset,
    Partition,
    Timestamp,
    Headers,
    Topic,
}

fn parse_template(template: &str) -> anyhow::Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('t') => text.push('\t'),
                Some('n') => text.push('\n'),
                Some('\\') => text.push('\\'),
                Some(other) => {
                    text.push('\\');
                    text.push(other);
                }
                None => text.push('\\'),
            },
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                if !closed {
                    bail!("--format: unclosed '{{' in {template:?}");
                }
                let piece = match name.as_str() {
                    "key" => Piece::Key,
                    "value" => Piece::Value,
                    "offset" => Piece::Offset,
                    "partition" => Piece::Partition,
                    "timestamp" => Piece::Timestamp,
                    "headers" => Piece::Headers,
                    "topic" => Piece::Topic,
                    other => bail!(
                        "--format: unknown placeholder {{{other}}}; use {{key}}, {{value}}, {{offset}}, {{partition}}, {{timestamp}}, {{headers}} or {{topic}}"
                    ),
                };
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(piece);
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn or_null(b: &Option<bytes::Bytes>) -> String {
    b.as_deref().map_or_else(|| "null".to_string(), lossy)
}

fn render(pieces: &[Piece], topic: &str, partition: i32, r: &ConsumedRecord) -> String {
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Key => out.push_str(&or_null(&r.key)),
            Piece::Value => out.push_str(&or_null(&r.value)),
            Piece::Offset => out.push_str(&r.offset.to_string()),
            Piece::Partition => out.push_str(&partition.to_string()),
            Piece::Timestamp => out.push_str(&r.timestamp_ms.to_string()),
            Piece::Topic => out.push_str(topic),
            Piece::Headers => {
                let h: Vec<String> = r
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{k}={}", or_null(v)))
                    .collect();
                out.push_str(&h.join(","));
            }
        }
    }
    out
}

fn to_json(topic: &str, partition: i32, r: &ConsumedRecord) -> serde_json::Value {
    let headers: Vec<_> = r
        .headers
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v.as_deref().map(lossy)}))
        .collect();
    json!({
        "topic": topic,
        "partition": partition,
        "offset": r.offset,
        "timestamp": r.timestamp_ms,
        "timestamp_type": if r.timestamp_type_log_append { "LogAppendTime" } else { "CreateTime" },
        "key": r.key.as_deref().map(lossy),
        "value": r.value.as_deref().map(lossy),
        "headers": headers,
    })
}

pub async fn run(a: ConsumeArgs) -> anyhow::Result<()> {
    if a.max_messages == Some(0) {
        return Ok(());
    }
    let pieces = parse_template(&a.format)?;
    let admin = a.connect.admin()?;
    let client = admin.client();
    let (topic, partition) = (a.topic.as_str(), a.partition);

    let mut offset = if a.from_beginning {
        admin
            .list_offset(topic, partition, OffsetSpec::Earliest)
            .await
            .map_err(friendly)?
            .0
    } else if let Some(o) = a.offset {
        if o < 0 {
            bail!("--offset must be 0 or more (use --from-beginning for the oldest record)");
        }
        o
    } else if let Some(ts) = a.from_timestamp {
        let (o, _) = admin
            .list_offset(topic, partition, OffsetSpec::Timestamp(ts))
            .await
            .map_err(friendly)?;
        if o >= 0 {
            o
        } else {
            // No record at or after that time: start at the end.
            admin
                .list_offset(topic, partition, OffsetSpec::Latest)
                .await
                .map_err(friendly)?
                .0
        }
    } else {
        admin
            .list_offset(topic, partition, OffsetSpec::Latest)
            .await
            .map_err(friendly)?
            .0
    };

    let idle_limit = a.timeout_ms.map(Duration::from_millis);
    let mut printed = 0u64;
    let mut last_data = Instant::now();
    let stdout = std::io::stdout();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());

    'outer: loop {
        let mut max_wait = Duration::from_millis(500);
        if let Some(limit) = idle_limit {
            let left = limit.saturating_sub(last_data.elapsed());
            if left.is_zero() {
                break;
            }
            max_wait = max_wait.min(left);
        }
        let fetched = tokio::select! {
            r = client.fetch(topic, partition, offset, a.fetch_max_bytes, max_wait.as_millis() as i32) => r,
            _ = &mut ctrl_c => break,
        };
        let fetched = match fetched {
            Ok(f) => f,
            Err(e) if e.kafka_code() == Some(error_code::OFFSET_OUT_OF_RANGE) => {
                let start = admin
                    .list_offset(topic, partition, OffsetSpec::Earliest)
                    .await;
                let end = admin
                    .list_offset(topic, partition, OffsetSpec::Latest)
                    .await;
                match (start, end) {
                    (Ok((start, _)), Ok((end, _))) => bail!(
                        "offset {offset} is out of range for {topic}-{partition}: its records run from offset {start} to {end} (exclusive) (OFFSET_OUT_OF_RANGE)"
                    ),
                    _ => return Err(friendly(e)),
                }
            }
            Err(e) => return Err(friendly(e)),
        };
        if !fetched.records.is_empty() {
            last_data = Instant::now();
        }
        let mut out = stdout.lock();
        for r in &fetched.records {
            let line = match a.output {
                Output::Json => to_json(topic, partition, r).to_string(),
                Output::Table => render(&pieces, topic, partition, r),
            };
            if let Err(e) = writeln!(out, "{line}") {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(e).context("writing to standard output");
            }
            printed += 1;
            if a.max_messages.is_some_and(|m| printed >= m) {
                let _ = out.flush();
                break 'outer;
            }
        }
        match out.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            r => r.context("writing to standard output")?,
        }
        offset = fetched.next_offset;
    }
    eprintln!(
        "Processed {printed} record{}.",
        if printed == 1 { "" } else { "s" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record() -> ConsumedRecord {
        ConsumedRecord {
            offset: 42,
            timestamp_ms: 1_700_000_000_000,
            timestamp_type_log_append: false,
            key: None,
            value: Some(Bytes::from_static(b"hello")),
            headers: vec![
                ("a".into(), Some(Bytes::from_static(b"1"))),
                ("b".into(), None),
            ],
        }
    }

    #[test]
    fn templates_render_every_placeholder() {
        let p =
            parse_template("{topic}/{partition}@{offset} {timestamp}\\t{key}={value} [{headers}]")
                .unwrap();
        assert_eq!(
            render(&p, "t", 3, &record()),
            "t/3@42 1700000000000\tnull=hello [a=1,b=null]"
        );
        assert_eq!(
            render(&parse_template("{value}").unwrap(), "t", 0, &record()),
            "hello"
        );
    }

    #[test]
    fn templates_reject_unknown_and_unclosed_placeholders() {
        assert!(parse_template("{nope}").is_err());
        assert!(parse_template("{value").is_err());
    }

    #[test]
    fn json_keeps_nulls_and_headers() {
        let v = to_json("t", 0, &record());
        assert_eq!(v["key"], serde_json::Value::Null);
        assert_eq!(v["value"], "hello");
        assert_eq!(v["headers"][1]["value"], serde_json::Value::Null);
        assert_eq!(v["timestamp_type"], "CreateTime");
    }
}

//! `strom produce`: one record per line of standard input.

use std::io::BufRead;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use strom_client::admin::OffsetSpec;
use strom_client::{Codec, ProducerRecord};
use tokio::sync::mpsc;

use super::common::{ConnectArgs, friendly, parse_key_value};

pub const LONG_ABOUT: &str = "Write records from standard input to a topic, one record per line.

Lines are sent as they arrive: typed lines go out one by one, piped input is sent in batches of
up to --batch-size records. A summary goes to standard error.

Examples:
  echo hello | strom produce --topic demo
  seq 1 100000 | strom produce --topic demo --compression zstd
  printf 'user-1:signed up\\nuser-2:logged in\\n' | strom produce --topic events --key-separator :
  strom produce --topic demo --header source=cli --acks 1 < records.txt";

/// Compression codec for the batches.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<Compression> for Codec {
    fn from(c: Compression) -> Codec {
        match c {
            Compression::None => Codec::None,
            Compression::Gzip => Codec::Gzip,
            Compression::Snappy => Codec::Snappy,
            Compression::Lz4 => Codec::Lz4,
            Compression::Zstd => Codec::Zstd,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    /// Topic to write to
    #[arg(long, short = 't')]
    pub topic: String,
    /// Partition to write to
    #[arg(long, short = 'p', default_value_t = 0)]
    pub partition: i32,
    /// Split each line into key and value at the first occurrence of this separator
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// A header added to every record, as key=value (repeatable)
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub headers: Vec<(String, String)>,
    /// Compression codec for the batches
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// Acknowledgements to wait for: -1 (all in-sync replicas), 1 (leader only) or 0 (none)
    #[arg(long, default_value = "-1", allow_hyphen_values = true, value_parser = parse_acks)]
    pub acks: i16,
    /// Most records sent in one request
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Most bytes of records in one request, before compression (keep it below the topic's
    /// max.message.bytes; a single larger record is still sent on its own)
    #[arg(long, value_name = "BYTES", default_value_t = 1_000_000)]
    pub batch_bytes: usize,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err(format!("acks must be -1 (or all), 0 or 1, not {s:?}")),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Turns one input line (without its line ending) into a record.
fn line_to_record(
    line: &[u8],
    line_number: u64,
    separator: Option<&[u8]>,
    headers: &[(String, Option<Bytes>)],
    timestamp_ms: i64,
) -> anyhow::Result<ProducerRecord> {
    let (key, value) = match separator {
        None => (None, line),
        Some(sep) => match find(line, sep) {
            Some(at) => (Some(&line[..at]), &line[at + sep.len()..]),
            None => bail!(
                "line {line_number} has no key separator {:?}",
                String::from_utf8_lossy(sep)
            ),
        },
    };
    Ok(ProducerRecord {
        key: key.map(Bytes::copy_from_slice),
        value: Some(Bytes::copy_from_slice(value)),
        headers: headers.to_vec(),
        timestamp_ms,
    })
}

fn count(n: u64) -> String {
    if n == 1 {
        "1 record".to_string()
    } else {
        format!("{n} records")
    }
}

/// Roughly the bytes a record takes in a batch.
fn record_size(r: &ProducerRecord) -> usize {
    let field = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
    let headers: usize = r.headers.iter().map(|(k, v)| k.len() + field(v) + 4).sum();
    field(&r.key) + field(&r.value) + headers + 24
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn strip_line_ending(mut line: Vec<u8>) -> Vec<u8> {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    line
}

/// Reads standard input on its own thread and hands lines over; a read error ends the stream
/// with that error.
fn spawn_stdin_reader(tx: mpsc::Sender<std::io::Result<Vec<u8>>>) {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if tx.blocking_send(Ok(strip_line_ending(line))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
}

pub async fn run(a: ProduceArgs) -> anyhow::Result<()> {
    if a.key_separator.as_deref() == Some("") {
        bail!("--key-separator must not be empty");
    }
    let admin = a.connect.admin()?;
    let client = admin.client();
    // Fail early, before reading input, when the topic or partition does not exist.
    admin
        .list_offset(&a.topic, a.partition, OffsetSpec::Latest)
        .await
        .map_err(friendly)?;

    let codec: Codec = a.compression.into();
    let headers: Vec<(String, Option<Bytes>)> = a
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Some(Bytes::copy_from_slice(v.as_bytes()))))
        .collect();
    let separator = a.key_separator.as_deref().map(str::as_bytes);
    let batch_size = a.batch_size as usize;

    let (tx, mut rx) = mpsc::channel(batch_size * 4);
    spawn_stdin_reader(tx);

    let mut line_number = 0u64;
    let mut written = 0u64;
    let mut first_offset: Option<i64> = None;
    let mut last_offset: Option<i64> = None;
    let mut batch = Vec::with_capacity(batch_size);
    let mut pending: Option<ProducerRecord> = None;
    let mut input_open = true;
    while input_open || pending.is_some() {
        // Take what is already there, up to a batch, without waiting for more.
        let mut batch_bytes = 0usize;
        if let Some(r) = pending.take() {
            batch_bytes += record_size(&r);
            batch.push(r);
        }
        while batch.len() < batch_size && batch_bytes < a.batch_bytes {
            let line = if batch.is_empty() {
                match rx.recv().await {
                    Some(line) => line,
                    None => {
                        input_open = false;
                        break;
                    }
                }
            } else {
                match rx.try_recv() {
                    Ok(line) => line,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        input_open = false;
                        break;
                    }
                }
            };
            let line = line.context("reading standard input")?;
            line_number += 1;
            let record = line_to_record(&line, line_number, separator, &headers, now_ms())?;
            let size = record_size(&record);
            if !batch.is_empty() && batch_bytes + size > a.batch_bytes {
                pending = Some(record);
                break;
            }
            batch_bytes += size;
            batch.push(record);
        }
        if batch.is_empty() {
            continue;
        }
        let base = client
            .produce(&a.topic, a.partition, &batch, codec, a.acks)
            .await
            .map_err(friendly)
            .with_context(|| {
                let first_line =
                    line_number + 1 - batch.len() as u64 - u64::from(pending.is_some());
                format!("writing the records of lines {first_line} and on")
            })?;
        written += batch.len() as u64;
        if base >= 0 {
            first_offset.get_or_insert(base);
            last_offset = Some(base + batch.len() as i64 - 1);
        }
        batch.clear();
    }

    match (first_offset, last_offset) {
        (Some(first), Some(last)) => eprintln!(
            "Wrote {} to {}-{} (offsets {first} to {last}).",
            count(written),
            a.topic,
            a.partition
        ),
        _ if written > 0 && a.acks == 0 => eprintln!(
            "Sent {} to {}-{} (acks=0: offsets unknown).",
            count(written),
            a.topic,
            a.partition
        ),
        _ => eprintln!("Wrote {} to {}-{}.", count(written), a.topic, a.partition),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_into_key_and_value_at_the_first_separator() {
        let r = line_to_record(b"k1::v::1", 1, Some(b"::"), &[], 5).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v::1"[..]));
        assert_eq!(r.timestamp_ms, 5);
        let r = line_to_record(b"no key here", 1, None, &[], 5).unwrap();
        assert_eq!(r.key, None);
        assert_eq!(r.value.as_deref(), Some(&b"no key here"[..]));
        let err = line_to_record(b"nokey", 7, Some(b":"), &[], 5).unwrap_err();
        assert!(err.to_string().contains("line 7"), "{err}");
    }

    #[test]
    fn line_endings_are_stripped() {
        assert_eq!(strip_line_ending(b"a\r\n".to_vec()), b"a");
        assert_eq!(strip_line_ending(b"a\n".to_vec()), b"a");
        assert_eq!(strip_line_ending(b"a".to_vec()), b"a");
        assert_eq!(strip_line_ending(b"a\r".to_vec()), b"a\r");
    }

    #[test]
    fn acks_accept_all() {
        assert_eq!(parse_acks("all").unwrap(), -1);
        assert_eq!(parse_acks("-1").unwrap(), -1);
        assert_eq!(parse_acks("1").unwrap(), 1);
        assert!(parse_acks("2").is_err());
    }
}

//! `strom bench e2e`: produce at a fixed rate with the send time in each value, consume the
//! same partitions concurrently from their end, and measure produce-to-consume latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use strom_client::offset_spec;

use super::consume::{self, FetchOptions, FetchPlan};
use super::produce::{self, Limit, Payload, ProducerOptions, ProducerPlan};
use super::report::{Progress, Side, Stats, print_summary};
use super::{BenchCommon, leaders, parse_secs};

#[derive(clap::Args, Debug)]
pub struct E2eArgs {
    #[command(flatten)]
    pub producer: ProducerOptions,
    /// Records per second over all producers
    #[arg(long, value_name = "RECORDS_PER_SEC")]
    pub rate: f64,
    /// How long to produce
    #[arg(long, value_name = "S", value_parser = parse_secs)]
    pub duration_secs: Duration,
    /// How long to wait after the last record was produced for it to be consumed
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub drain_timeout_ms: u64,
    #[command(flatten)]
    pub fetch: FetchOptions,
    #[command(flatten)]
    pub common: BenchCommon,
}

pub async fn run(args: E2eArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.producer.record_size >= 8,
        "--record-size must be at least 8 bytes (the send time)"
    );
    let client = args.common.connect.client()?;
    let origin = Instant::now();
    let mut options = args.producer.clone();
    // Latency is what this mode measures: without a linger, the records accumulated so far
    // go out whenever the paced producer waits for its next record's turn, instead of
    // collecting for 5 ms (--linger-ms sets it as in `produce`).
    options.linger_ms.get_or_insert(0);
    let plan = ProducerPlan {
        options,
        limit: Limit::Duration(args.duration_secs),
        rate: Some(args.rate),
        payload: Payload::Stamped {
            size: args.producer.record_size,
            origin,
        },
    };
    let prepared = produce::prepare(&args.common.connect, &client, &plan).await?;
    let topic = &args.producer.topic;
    let layout = leaders(&client, topic).await?;
    let start = consume::offsets(&client, topic, layout.len(), offset_spec::LATEST).await?;
    let fetchers = consume::connect(&args.common.connect, &layout, &args.fetch).await?;

    let produced = Arc::new(Stats::new());
    let consumed = Arc::new(Stats::new());
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Progress::start(
        args.common.output,
        None,
        vec![
            ("produced", produced.clone()),
            ("consumed", consumed.clone()),
        ],
    );
    let fetch_plan = FetchPlan {
        topic: topic.clone(),
        start,
        end: None,
        records: None,
        deadline: None,
        stamped_origin: Some(origin),
    };
    let consumer = tokio::spawn(consume::run_fetchers(
        fetchers,
        fetch_plan,
        consumed.clone(),
        stop.clone(),
    ));
    let produce_result = produce::run_producers(prepared, plan.clone(), produced.clone()).await;
    // Wait for the consumer to catch up with everything acknowledged.
    let drain_deadline = Instant::now() + Duration::from_millis(args.drain_timeout_ms);
    while consumed.records() < produced.records() && Instant::now() < drain_deadline {
        if consumer.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let consume_result = consumer.await;
    progress.finish();
    let produce_elapsed = produce_result?;
    let consume_elapsed = consume_result??;

    let produce_side = Side::from_stats(
        "produce",
        &produced,
        produce_elapsed,
        "keys and values",
        if args.producer.acks == 0 {
            "produce (no acks)"
        } else {
            "produce ack"
        },
    );
    let consume_side = Side::from_stats(
        "consume",
        &consumed,
        consume_elapsed,
        "keys and values",
        "produce to consume",
    );
    let (p, c) = (produce_side.records, consume_side.records);
    let errors = produce_side.errors + consume_side.errors;
    let mut settings = produce::settings_json(&plan);
    settings["max_wait_ms"] = json!(args.fetch.max_wait_ms);
    print_summary(
        args.common.output,
        "e2e",
        topic,
        settings,
        &[produce_side, consume_side],
    )?;
    anyhow::ensure!(errors == 0, "{errors} errors");
    anyhow::ensure!(
        c >= p,
        "only {c} of {p} produced records were consumed within {} ms",
        args.drain_timeout_ms
    );
    Ok(())
}

//! Administers a cluster with strom's admin client: creates a topic, describes it, changes one
//! of its configs, lists the consumer groups with their lag, and deletes the topic again.
//!
//! ```text
//! cargo run -p strom-client --example admin -- [BOOTSTRAP] [TOPIC]
//! ```
//!
//! BOOTSTRAP defaults to `$STROM_BOOTSTRAP`, else `127.0.0.1:9092`; TOPIC to `admin-example`.
//! With `KEEP=1` in the environment the topic is left in place.

use strom_client::Properties;
use strom_client::admin::{Admin, AlterConfigOp, ConfigResource, NewTopic, OffsetSpec};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args
        .next()
        .or_else(|| std::env::var("STROM_BOOTSTRAP").ok())
        .unwrap_or_else(|| "127.0.0.1:9092".to_string());
    let topic = args.next().unwrap_or_else(|| "admin-example".to_string());
    let admin = Admin::new(
        Properties::default()
            .set("bootstrap.servers", &bootstrap)
            .set("default.api.timeout.ms", 30_000),
    )?;

    // Create: three partitions, one replica each, a day of retention.
    let id = admin
        .create_topic(NewTopic::new(&topic, 3, 1).config("retention.ms", "86400000"))
        .await?;
    println!("created {topic} (id {id})");

    // Describe: partitions with their leaders, then the overrides.
    let described = admin.describe_topics(&[topic.as_str()]).await?;
    for p in &described[0].partitions {
        println!(
            "  partition {} leader {} replicas {:?}",
            p.index, p.leader, p.replicas
        );
    }

    // Alter a config, and read it back.
    let resource = ConfigResource::topic(&topic);
    admin
        .incremental_alter_configs(&resource, &[AlterConfigOp::set("retention.ms", "3600000")])
        .await?;
    let retention = admin
        .describe_configs(&resource)
        .await?
        .into_iter()
        .find(|c| c.name == "retention.ms")
        .and_then(|c| c.value)
        .unwrap_or_default();
    println!("retention.ms of {topic} is now {retention}");

    // Groups and their lag: committed offsets against the log end of each partition.
    for group in admin.list_groups(&[]).await? {
        let committed = admin.fetch_offsets(&group.group_id, None).await?;
        let mut lag = 0;
        for ((t, p), offset) in &committed {
            let (end, _) = admin.list_offset(t, *p, OffsetSpec::Latest).await?;
            lag += (end - offset).max(0);
        }
        println!(
            "group {} ({}) has {} committed partitions, lag {lag}",
            group.group_id,
            if group.state.is_empty() {
                "state unknown"
            } else {
                &group.state
            },
            committed.len()
        );
    }

    if std::env::var("KEEP").is_ok_and(|v| v == "1") {
        println!("kept {topic}");
    } else {
        admin.delete_topic(&topic).await?;
        println!("deleted {topic}");
    }
    Ok(())
}

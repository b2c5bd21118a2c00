//! `strom quotas set|describe`: client quotas (byte rates per user and/or client id), like
//! Kafka's `kafka-configs.sh --entity-type users|clients`.

use serde_json::json;

use super::common::{ConnectArgs, Output, friendly, print_json, table};

pub const LONG_ABOUT: &str = "\
Set and show client quotas. A quota applies to a user, a client id or both (the most specific
one set wins, as in Kafka); --user-default / --client-id-default name the defaults. Keys:
producer_byte_rate, consumer_byte_rate (bytes per second), request_percentage,
controller_mutation_rate. Clients over their rate are throttled.

Examples:
  strom quotas set --user alice --add producer_byte_rate=1048576
  strom quotas set --client-id-default --add consumer_byte_rate=10485760
  strom quotas set --user alice --delete producer_byte_rate
  strom quotas describe
  strom quotas describe --user alice";

#[derive(clap::Subcommand, Debug)]
pub enum QuotasCommand {
    /// Set (--add) or remove (--delete) quota values of one entity
    Set(SetArgs),
    /// Show quotas, of all entities or of the one named
    Describe(DescribeArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct EntityArgs {
    /// A user name (without User:)
    #[arg(long, conflicts_with = "user_default")]
    pub user: Option<String>,
    /// The default of all users
    #[arg(long)]
    pub user_default: bool,
    /// A client id
    #[arg(long, conflicts_with = "client_id_default")]
    pub client_id: Option<String>,
    /// The default of all client ids
    #[arg(long)]
    pub client_id_default: bool,
}

#[derive(clap::Args, Debug)]
pub struct SetArgs {
    #[command(flatten)]
    pub entity: EntityArgs,
    /// key=value to set (repeatable)
    #[arg(long, value_parser = super::common::parse_key_value)]
    pub add: Vec<(String, String)>,
    /// key to remove (repeatable)
    #[arg(long)]
    pub delete: Vec<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    #[command(flatten)]
    pub entity: EntityArgs,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

impl EntityArgs {
    fn entity(&self) -> Vec<(String, Option<String>)> {
        let mut e = Vec::new();
        if self.client_id.is_some() || self.client_id_default {
            e.push(("client-id".to_string(), self.client_id.clone()));
        }
        if self.user.is_some() || self.user_default {
            e.push(("user".to_string(), self.user.clone()));
        }
        e
    }
}

fn entity_text(e: &[(String, Option<String>)]) -> String {
    e.iter()
        .map(|(t, n)| format!("{t}={}", n.as_deref().unwrap_or("<default>")))
        .collect::<Vec<_>>()
        .join(",")
}

pub async fn run(cmd: QuotasCommand) -> anyhow::Result<()> {
    match cmd {
        QuotasCommand::Set(a) => {
            let entity = a.entity.entity();
            if entity.is_empty() {
                anyhow::bail!(
                    "name an entity: --user, --user-default, --client-id or --client-id-default"
                );
            }
            let mut ops = Vec::new();
            for (k, v) in &a.add {
                let v: f64 = v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{k}: {v:?} is not a number"))?;
                ops.push((k.clone(), Some(v)));
            }
            ops.extend(a.delete.iter().map(|k| (k.clone(), None)));
            if ops.is_empty() {
                anyhow::bail!("give --add key=value or --delete key");
            }
            let admin = a.connect.admin()?;
            admin
                .alter_client_quotas(&entity, &ops)
                .await
                .map_err(friendly)?;
            println!("updated quotas of {}", entity_text(&entity));
        }
        QuotasCommand::Describe(a) => {
            let admin = a.connect.admin()?;
            let entries = admin
                .describe_client_quotas(&a.entity.entity())
                .await
                .map_err(friendly)?;
            match a.output {
                Output::Json => print_json(&json!(
                    entries
                        .iter()
                        .map(|(e, values)| json!({
                            "entity": entity_text(e),
                            "quotas": values.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                        }))
                        .collect::<Vec<_>>()
                ))?,
                Output::Table => {
                    let mut t = table(vec!["ENTITY", "QUOTA", "VALUE"]);
                    for (e, values) in &entries {
                        for (k, v) in values {
                            t.add_row(vec![entity_text(e), k.clone(), v.to_string()]);
                        }
                    }
                    println!("{t}");
                }
            }
        }
    }
    Ok(())
}

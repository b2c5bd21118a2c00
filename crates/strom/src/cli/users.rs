//! `strom users scram set|describe|delete`: SCRAM credentials, like Kafka's
//! `kafka-configs.sh --entity-type users --alter --add-config SCRAM-SHA-256=[...]`.

use serde_json::json;
use strom_broker::security::scram::{MIN_ITERATIONS, ScramMechanism, new_salt};
use strom_client::{Admin, ScramUpsert};

use super::common::{ConnectArgs, Output, friendly, print_json, table};

pub const LONG_ABOUT: &str = "\
Manage the SCRAM-SHA-256 / SCRAM-SHA-512 credentials that SASL clients log in with. The password
is salted and hashed here; the broker stores only the salted keys.

Examples:
  strom users scram set alice --password s3cret
  strom users scram set alice --password s3cret --mechanism SCRAM-SHA-512 --iterations 8192
  strom users scram describe
  strom users scram delete alice --mechanism SCRAM-SHA-256";

#[derive(clap::Subcommand, Debug)]
pub enum UsersCommand {
    /// SCRAM credentials
    #[command(subcommand, long_about = LONG_ABOUT)]
    Scram(ScramCommand),
}

#[derive(clap::Subcommand, Debug)]
pub enum ScramCommand {
    /// Create or replace a user's credential for one mechanism
    Set(SetArgs),
    /// Show users with their mechanisms and iteration counts
    Describe(DescribeArgs),
    /// Delete a user's credential for one mechanism
    Delete(DeleteArgs),
}

#[derive(clap::Args, Debug)]
pub struct SetArgs {
    /// The user name
    pub user: String,
    /// The password (or set STROM_SCRAM_PASSWORD)
    #[arg(long, env = "STROM_SCRAM_PASSWORD", hide_env_values = true)]
    pub password: String,
    /// SCRAM-SHA-256 or SCRAM-SHA-512
    #[arg(long, default_value = "SCRAM-SHA-256")]
    pub mechanism: String,
    /// PBKDF2 iterations (4096-16384)
    #[arg(long, default_value_t = MIN_ITERATIONS)]
    pub iterations: i32,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// Only these users (all when none is given)
    pub users: Vec<String>,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// The user name
    pub user: String,
    /// SCRAM-SHA-256 or SCRAM-SHA-512
    #[arg(long, default_value = "SCRAM-SHA-256")]
    pub mechanism: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

fn mechanism(name: &str) -> anyhow::Result<ScramMechanism> {
    ScramMechanism::from_name(&name.to_ascii_uppercase()).ok_or_else(|| {
        anyhow::anyhow!("unknown mechanism {name:?}: use SCRAM-SHA-256 or SCRAM-SHA-512")
    })
}

fn admin(connect: &ConnectArgs) -> anyhow::Result<Admin> {
    connect.admin()
}

pub async fn run(cmd: UsersCommand) -> anyhow::Result<()> {
    let UsersCommand::Scram(cmd) = cmd;
    match cmd {
        ScramCommand::Set(a) => {
            let mech = mechanism(&a.mechanism)?;
            let salt = new_salt();
            let salted =
                mech.salted_password(a.password.as_bytes(), &salt, a.iterations.max(1) as u32);
            let results = admin(&a.connect)?
                .alter_scram_credentials(
                    &[ScramUpsert {
                        user: a.user.clone(),
                        mechanism: mech.code(),
                        iterations: a.iterations,
                        salt,
                        salted_password: salted,
                    }],
                    &[],
                )
                .await
                .map_err(friendly)?;
            for (user, r) in results {
                r.map_err(friendly)?;
                println!("set {} credential of user {user}", mech.name());
            }
        }
        ScramCommand::Delete(a) => {
            let mech = mechanism(&a.mechanism)?;
            let results = admin(&a.connect)?
                .alter_scram_credentials(&[], &[(a.user.clone(), mech.code())])
                .await
                .map_err(friendly)?;
            for (user, r) in results {
                r.map_err(friendly)?;
                println!("deleted {} credential of user {user}", mech.name());
            }
        }
        ScramCommand::Describe(a) => {
            let users = (!a.users.is_empty()).then_some(a.users.as_slice());
            let results = admin(&a.connect)?
                .describe_scram_credentials(users)
                .await
                .map_err(friendly)?;
            let name = |m: i8| {
                ScramMechanism::from_code(m)
                    .map(|m| m.name().to_string())
                    .unwrap_or_else(|| format!("mechanism {m}"))
            };
            let mut rows = Vec::new();
            for (user, r) in results {
                for (m, iterations) in r.map_err(friendly)? {
                    rows.push((user.clone(), name(m), iterations));
                }
            }
            match a.output {
                Output::Json => print_json(&json!(
                    rows.iter()
                        .map(|(u, m, i)| json!({"user": u, "mechanism": m, "iterations": i}))
                        .collect::<Vec<_>>()
                ))?,
                Output::Table => {
                    let mut t = table(vec!["USER", "MECHANISM", "ITERATIONS"]);
                    for (u, m, i) in rows {
                        t.add_row(vec![u, m, i.to_string()]);
                    }
                    println!("{t}");
                }
            }
        }
    }
    Ok(())
}

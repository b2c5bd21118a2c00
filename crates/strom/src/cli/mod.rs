//! The client-side subcommands of `strom`: topic administration, a console producer and a
//! console consumer, groups, transactions, security, quotas and the cluster. They talk to any
//! Kafka-compatible broker through `strom-client`.

mod acls;
mod bench;
mod cluster;
mod common;
mod consume;
mod groups;
mod partitions;
mod produce;
mod quotas;
mod schemas;
mod topics;
mod transactions;
mod users;

#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Create, list, describe, alter and delete topics
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Write records from standard input to a topic
    #[command(long_about = produce::LONG_ABOUT)]
    Produce(produce::ProduceArgs),
    /// Read records from a topic and print them
    #[command(long_about = consume::LONG_ABOUT)]
    Consume(consume::ConsumeArgs),
    /// Measure a broker: produce, consume and end-to-end throughput and latency
    #[command(subcommand, long_about = bench::LONG_ABOUT)]
    Bench(bench::BenchCommand),
    /// List, describe and manage consumer groups: offsets, lag, resets
    #[command(subcommand, long_about = groups::LONG_ABOUT)]
    Groups(groups::GroupsCommand),
    /// List and describe transactional ids and their transactions
    #[command(subcommand, long_about = transactions::LONG_ABOUT)]
    Transactions(transactions::TransactionsCommand),
    /// Show the idempotent and transactional producers of a partition
    #[command(subcommand, long_about = transactions::PRODUCERS_LONG_ABOUT)]
    Producers(transactions::ProducersCommand),
    /// Add, list and remove ACLs
    #[command(subcommand, long_about = acls::LONG_ABOUT)]
    Acls(acls::AclsCommand),
    /// Set and show client quotas (byte rates per user / client id)
    #[command(subcommand, long_about = quotas::LONG_ABOUT)]
    Quotas(quotas::QuotasCommand),
    /// Manage SCRAM user credentials
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Move partition replicas between brokers (reassignments)
    #[command(subcommand)]
    Partitions(partitions::PartitionsCommand),
    /// Elect partition leaders (preferred or unclean)
    #[command(subcommand)]
    Leaders(partitions::LeadersCommand),
    /// Show the cluster: brokers, controller and the metadata quorum
    #[command(subcommand, long_about = cluster::LONG_ABOUT)]
    Cluster(cluster::ClusterCommand),
    /// Register, list, check and delete schemas in the Schema Registry
    #[command(long_about = schemas::LONG_ABOUT)]
    Schemas(schemas::SchemasArgs),
}

/// Runs one client subcommand to completion.
pub async fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Topics(cmd) => topics::run(cmd).await,
        ClientCommand::Produce(args) => produce::run(args).await,
        ClientCommand::Consume(args) => consume::run(args).await,
        ClientCommand::Bench(cmd) => bench::run(cmd).await,
        ClientCommand::Groups(cmd) => groups::run(cmd).await,
        ClientCommand::Transactions(cmd) => transactions::run(cmd).await,
        ClientCommand::Producers(cmd) => transactions::run_producers(cmd).await,
        ClientCommand::Acls(cmd) => acls::run(cmd).await,
        ClientCommand::Users(cmd) => users::run(cmd).await,
        ClientCommand::Quotas(cmd) => quotas::run(cmd).await,
        ClientCommand::Partitions(cmd) => partitions::run(cmd).await,
        ClientCommand::Leaders(cmd) => partitions::run_leaders(cmd).await,
        ClientCommand::Cluster(cmd) => cluster::run(cmd).await,
        ClientCommand::Schemas(args) => schemas::run(args).await,
    }
}

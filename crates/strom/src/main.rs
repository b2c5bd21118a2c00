//! The `strom` binary: `strom server` runs a broker; the other subcommands are tools that talk
//! to any Kafka-compatible cluster.

mod cli;
mod logging;
mod server;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Keeps a frame that claims billions of array elements from aborting the process: see
/// `strom_protocol::alloc`.
#[global_allocator]
static ALLOCATOR: strom_protocol::alloc::LargeAllocGuard = strom_protocol::alloc::LargeAllocGuard;

/// strom: an event streaming platform that speaks the Apache Kafka protocol.
///
/// Start a broker with `strom server`, then point any Kafka client at 127.0.0.1:9092, or use
/// the tools below: `strom topics create demo --partitions 3`, `strom produce --topic demo`,
/// `strom consume --topic demo --from-beginning`.
#[derive(Parser, Debug)]
#[command(name = "strom", version, propagate_version = true)]
struct Cli {
    /// Log filter, e.g. `info`, `debug`, `strom_broker=debug,info`.
    #[arg(long, global = true, env = "STROM_LOG", default_value = "info")]
    log: String,
    /// Log line format: `human` (default) or `json` (one object per line).
    #[arg(
        long,
        global = true,
        env = "STROM_LOG_FORMAT",
        value_enum,
        default_value = "human"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a broker (single node, no configuration needed)
    Server(server::ServerArgs),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

fn main() -> std::process::ExitCode {
    let command = Cli::command().mut_subcommand("server", |c| {
        c.after_long_help(strom_broker::config::properties_help())
    });
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let log_control = logging::init(&cli.log, cli.log_format);
    let result = match cli.command {
        Command::Server(args) => server::run(args, log_control),
        Command::Client(cmd) => {
            exit_quietly_when_stdout_closes();
            client_runtime(cmd)
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn client_runtime(cmd: cli::ClientCommand) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(cli::run(cmd)))
}

/// `strom consume --topic t | head`: once whoever reads standard output has gone, a tool stops
/// quietly with the status a shell reports for SIGPIPE (128 + 13), as other command-line tools
/// do, instead of reporting a panic. (The broker keeps SIGPIPE ignored: its sockets report a
/// closed peer as an error.)
fn exit_quietly_when_stdout_closes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own checks of every subcommand (unique argument names and the like), which
    /// otherwise run only when a subcommand is used.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}

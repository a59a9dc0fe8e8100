//! The `diode-receiver` command: run, status, gaps.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use diode_receiver::config::ReceiverConfig;
use diode_receiver::replica::Replica;
use diode_receiver::{audit, query, run, status};

/// `-V`: the version and the commit it was built from (`build.rs`).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("DIODE_GIT_COMMIT"), ")");
/// `--version`: the version, the commit and the enabled cargo features.
const LONG_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), "\ncommit: ", env!("DIODE_GIT_COMMIT"), "\nfeatures: ", env!("DIODE_FEATURES"));

/// diode's IT appliance: rebuilds, verifies and applies what diode-sender sends into a replica.
#[derive(Parser)]
#[command(version = VERSION, long_version = LONG_VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive, verify and apply segments until stopped.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Head sequence, lag, gaps, counts and the last beacon, read from the replica.
    Status {
        #[arg(long)]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Missing segment ranges, with the command that fills each on the OT side.
    Gaps {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List series with type, first and last time and point count.
    Series(query::cli::SeriesArgs),
    /// Raw values, aggregates, interpolated values or the latest values of series.
    Query(query::cli::QueryArgs),
    /// Verify the replica against its signed segments; export and check proofs.
    #[command(subcommand)]
    Audit(audit::cli::AuditCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("diode-receiver: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn open_read_only(config: &std::path::Path) -> anyhow::Result<Replica> {
    let config = ReceiverConfig::load(config)?;
    Replica::open_read_only(&config.replica_dir)
        .with_context(|| format!("cannot read the replica in {}", config.replica_dir.display()))
}

fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config } => {
            let config = ReceiverConfig::load(&config)?;
            diode_receiver::logging::init(config.log.json);
            run::run(config)
        }
        Command::Status { config, json } => {
            let replica = open_read_only(&config)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status::status_json(&replica, None))?);
            } else {
                print!("{}", status::status_text(&replica));
            }
            Ok(())
        }
        Command::Series(args) => query::cli::series(args),
        Command::Query(args) => query::cli::query(args),
        Command::Audit(command) => audit::cli::run(command),
        Command::Gaps { config, json } => {
            let replica = open_read_only(&config)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status::gaps_json(&replica))?);
            } else {
                print!("{}", status::gaps_text(&replica));
            }
            Ok(())
        }
    }
}

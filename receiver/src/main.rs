//! The `diode-receiver` command: run, status, gaps.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use diode_receiver::config::ReceiverConfig;
use diode_receiver::{audit, query, run, status};
use diode_replica::Replica;

/// `-V`: the version and the commit it was built from (`build.rs`).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("DIODE_GIT_COMMIT"), ")");
/// `--version`: the version, the commit and the enabled cargo features.
const LONG_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), "\ncommit: ", env!("DIODE_GIT_COMMIT"), "\nfeatures: ", env!("DIODE_FEATURES"));

/// diode's IT appliance: rebuilds, verifies and applies what diode-sender sends into a replica.
#[derive(Parser)]
#[command(name = "diode-receiver", version = VERSION, long_version = LONG_VERSION, about)]
struct Cli {
    #[command(subcommand)]
    invocation: Invocation,
}

// The documented command line: `Cli` without the packaging helper. Completions and man pages
// describe this one, so they do not offer `generate`.
/// diode's IT appliance: rebuilds, verifies and applies what diode-sender sends into a replica.
#[derive(Parser)]
#[command(name = "diode-receiver", version = VERSION, long_version = LONG_VERSION, about)]
struct Documented {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Invocation {
    #[command(flatten)]
    Command(Command),
    /// Write shell completions (bash, zsh, fish) or man pages into a directory, for packaging.
    #[command(hide = true)]
    Generate {
        what: Generated,
        #[arg(long)]
        out: PathBuf,
    },
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
    /// Export the replica for data lakes (Parquet files in Hive partitions).
    #[command(subcommand)]
    Export(diode_receiver::sinks::export_cli::ExportCommand),
}

#[derive(Clone, Copy, ValueEnum)]
enum Generated {
    /// `BIN.bash`, `_BIN` (zsh) and `BIN.fish`.
    Completions,
    /// `BIN.1` and one page per subcommand (`BIN-run.1`, ...).
    Man,
}

fn main() -> ExitCode {
    let result = match Cli::parse().invocation {
        Invocation::Command(command) => execute(command),
        Invocation::Generate { what, out } => generate(what, &out),
    };
    match result {
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
        Command::Export(command) => diode_receiver::sinks::export_cli::run(command),
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

fn generate(what: Generated, out: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let write_error = || format!("cannot write into {}", out.display());
    match what {
        Generated::Completions => {
            for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
                let path = clap_complete::generate_to(shell, &mut Documented::command(), "diode-receiver", out)
                    .with_context(write_error)?;
                println!("{}", path.display());
            }
        }
        Generated::Man => {
            let mut command = Documented::command().disable_help_subcommand(true);
            command.build();
            for page in man_pages(command, out).with_context(write_error)? {
                println!("{}", page.display());
            }
        }
    }
    Ok(())
}

/// One page for the command and one for each visible subcommand, named as `clap_mangen` names
/// them (`diode-receiver-audit-verify.1`).
fn man_pages(command: clap::Command, out: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for subcommand in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.extend(man_pages(subcommand.clone(), out)?);
    }
    written.push(clap_mangen::Man::new(command).generate_to(out)?);
    Ok(written)
}

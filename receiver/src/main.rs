//! The `diode-receiver` command: run, status, gaps.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use diode_receiver::config::ReceiverConfig;
use diode_receiver::{audit, query, run, status};
use diode_replica::Replica;

/// The process's allocator: records, decoded columns and chunks are many small, short-lived
/// allocations, which mimalloc serves faster than glibc's malloc (README, "Figures").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `--version`: the version, the commit and the enabled cargo features.
const LONG_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), "\ncommit: ", env!("DIODE_GIT_COMMIT"), "\nfeatures: ", env!("DIODE_FEATURES"));

/// diode's IT appliance: rebuilds, verifies and applies what diode-sender sends into a replica.
#[derive(Parser)]
#[command(name = "diode-receiver", version = diode_receiver::VERSION, long_version = LONG_VERSION, about)]
struct Cli {
    #[command(subcommand)]
    invocation: Invocation,
}

// The documented command line: `Cli` without the packaging helper. Completions and man pages
// describe this one, so they do not offer `generate`.
/// diode's IT appliance: rebuilds, verifies and applies what diode-sender sends into a replica.
#[derive(Parser)]
#[command(name = "diode-receiver", version = diode_receiver::VERSION, long_version = LONG_VERSION, about)]
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
    Query(Box<query::cli::QueryArgs>),
    /// Verify the replica against its signed segments; export and check proofs.
    #[command(subcommand)]
    Audit(audit::cli::AuditCommand),
    /// Export the replica for data lakes (Parquet files in Hive partitions).
    #[command(subcommand)]
    Export(diode_receiver::sinks::export_cli::ExportCommand),
    /// Write the certificates for replication between receivers over QUIC (mutual TLS).
    #[command(subcommand)]
    TlsKeygen(TlsKeygen),
}

#[derive(Subcommand)]
enum TlsKeygen {
    /// A private certificate authority: DIR/ca.crt (give it to every receiver) and DIR/ca.key (0600;
    /// keep it offline, it signs the receivers' certificates).
    Ca {
        #[arg(long)]
        dir: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// A receiver's certificate signed by the authority: DIR/NAME.crt and DIR/NAME.key (0600).
    Cert {
        /// The authority's directory (ca.crt and ca.key).
        #[arg(long)]
        ca_dir: PathBuf,
        /// The receiver's name: a DNS name or IP address that downstreams dial (`upstream.server_name`).
        #[arg(long)]
        name: String,
        /// Further names or addresses for the certificate.
        #[arg(long = "also")]
        more_names: Vec<String>,
        #[arg(long)]
        dir: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
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
            // Replication connections live in the running receiver: asked over its HTTP listener.
            let replication = diode_receiver::replicate::status::fetch(&ReceiverConfig::load(&config)?);
            if json {
                let mut report = status::status_json(&replica, None);
                if let (Some(object), Some(replication)) = (report.as_object_mut(), replication) {
                    let value = replication.unwrap_or_else(|why| serde_json::json!({ "error": why }));
                    object.insert("replication".to_owned(), value);
                }
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", status::status_text(&replica));
                if let Some(replication) = replication {
                    print!("{}", diode_receiver::replicate::status::text(&replication));
                }
            }
            Ok(())
        }
        Command::Series(args) => query::cli::series(args),
        Command::Query(args) => query::cli::query(*args),
        Command::Audit(command) => audit::cli::run(command),
        Command::TlsKeygen(command) => {
            let written = match command {
                TlsKeygen::Ca { dir, force } => diode_receiver::replicate::tls::generate_authority(&dir, force)?,
                TlsKeygen::Cert { ca_dir, name, more_names, dir, force } => {
                    diode_receiver::replicate::tls::generate_certificate(&ca_dir, &name, &more_names, &dir, force)?
                }
            };
            for path in written {
                println!("{}", path.display());
            }
            Ok(())
        }
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
    use anyhow::Context;
    let written = match what {
        Generated::Completions => {
            diode_host::generated::write_completions(&mut Documented::command(), "diode-receiver", out)
        }
        Generated::Man => diode_host::generated::write_man_pages(Documented::command(), out),
    }
    .with_context(|| format!("cannot write into {}", out.display()))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

//! The `diode-sender` command: keygen, run, resend, new-epoch.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use diode_sender::config::{LogFormat, SenderConfig};
use diode_sender::{import, keyfiles, logging, pipeline, resend, run};

/// The process's allocator: records, decoded columns and chunks are many small, short-lived
/// allocations, which mimalloc serves faster than glibc's malloc (README, "Figures").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `--version`: the version, the commit and the enabled cargo features.
const LONG_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), "\ncommit: ", env!("DIODE_GIT_COMMIT"), "\nfeatures: ", env!("DIODE_FEATURES"));

/// diode's OT appliance: seals plant historian records and sends them one way to diode-receiver.
#[derive(Parser)]
#[command(name = "diode-sender", version = diode_sender::VERSION, long_version = LONG_VERSION, about)]
struct Cli {
    #[command(subcommand)]
    invocation: Invocation,
}

// The documented command line: `Cli` without the packaging helper. Completions and man pages
// describe this one, so they do not offer `generate`.
/// diode's OT appliance: seals plant historian records and sends them one way to diode-receiver.
#[derive(Parser)]
#[command(name = "diode-sender", version = diode_sender::VERSION, long_version = LONG_VERSION, about)]
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
    /// Write a new signing key pair (signing.key 0600, signing.pub) and link key (link.key 0600).
    Keygen {
        /// Directory to write the keys into.
        #[arg(long)]
        dir: PathBuf,
        /// Replace existing keys (receivers must then trust the new signing.pub and link.key).
        #[arg(long)]
        force: bool,
        /// Write only a new signing key pair, not a link key: for a key rotation.
        #[arg(long)]
        signing_only: bool,
    },
    /// Run the sender: sources, spool, sealing, and the one-way link.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Exit once the simulator's `max_records` are produced and sent.
        #[arg(long)]
        exit_when_done: bool,
        /// With --exit-when-done: keep beacons and the carousel going this long first.
        #[arg(long, default_value_t = 0)]
        linger_ms: u64,
    },
    /// Send retained segments again, for gaps the receiver reports.
    Resend {
        #[arg(long)]
        config: PathBuf,
        /// First sequence to send.
        #[arg(long)]
        from: u64,
        /// Last sequence to send (inclusive).
        #[arg(long)]
        to: u64,
        /// Epoch of the segments (default: the current epoch).
        #[arg(long)]
        epoch: Option<u64>,
        /// Rate in Mbit/s (default: link.rate_mbit_s). Mind that a running sender shares the link.
        #[arg(long)]
        rate_mbit_s: Option<f64>,
    },
    /// Backfill from CSV files (header: series,timestamp,value[,quality][,type][,tags]) into the
    /// spool; the next `run` sends them. Needs the sender stopped (it owns the spool).
    Import {
        #[arg(long)]
        config: PathBuf,
        /// Check every row and import nothing.
        #[arg(long)]
        dry_run: bool,
        /// Unit of epoch-number timestamps: auto (by magnitude), s, ms, us or ns.
        #[arg(long, default_value = "auto")]
        precision: import::TimestampUnit,
        /// CSV files, read in order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Start a new epoch deliberately (a new hash chain, announced by the next beacons).
    NewEpoch {
        #[arg(long)]
        config: PathBuf,
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
            eprintln!("diode-sender: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<SenderConfig> {
    let config = SenderConfig::load(path)?;
    logging::init(config.log.format == LogFormat::Json);
    Ok(config)
}

fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Keygen { dir, force, signing_only } => {
            let generated = keyfiles::generate(&dir, force, signing_only)?;
            println!("key id {}", generated.key_id);
            for file in generated.files {
                println!("wrote {}", file.display());
            }
            if signing_only {
                println!("add signing.pub to the receivers' [[keys.trusted]] before the sender uses signing.key");
            } else {
                println!("copy signing.pub and link.key to the receiver; keep signing.key on this appliance only");
            }
            Ok(())
        }
        Command::Run { config, exit_when_done, linger_ms } => {
            let config = load(&config)?;
            run::run(config, run::RunOptions { exit_when_done, linger_ms })
        }
        Command::Resend { config, from, to, epoch, rate_mbit_s } => {
            let config = load(&config)?;
            let request = resend::ResendRequest {
                epoch,
                from_sequence: from,
                to_sequence: to,
                rate_mbit_s,
                show_progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let summary = resend::resend(&config, &request)?;
            println!("resent {} segments in {} datagrams", summary.segments_sent, summary.datagrams_sent);
            if !summary.missing.is_empty() {
                println!(
                    "{} segments in the range are no longer retained and cannot be resent: {:?}",
                    summary.missing.len(),
                    summary.missing
                );
            }
            Ok(())
        }
        Command::Import { config, dry_run, precision, files } => {
            let config = load(&config)?;
            import::check_files(&files)?;
            let show_progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let summary = if dry_run {
                import::import(&files, precision, None, show_progress)?
            } else {
                let key = keyfiles::load_signing_key(&config.keys.signing_key)?;
                let (tx, rx) = std::sync::mpsc::sync_channel(64);
                // Sealed segments wait in the segment log; the next `run` sends them.
                std::thread::spawn(move || rx.into_iter().for_each(drop));
                let mut pipeline =
                    pipeline::Pipeline::open(run::pipeline_settings(&config), key, diode_sender::clock::now_ns(), tx)?;
                import::import(&files, precision, Some(&mut pipeline), show_progress)?
            };
            let verb = if dry_run { "checked" } else { "imported" };
            println!("{} rows read, {} records {verb}, {} bad rows", summary.rows, summary.records, summary.bad_rows);
            for line in &summary.listed_bad_rows {
                println!("  {line}");
            }
            if summary.bad_rows > summary.listed_bad_rows.len() as u64 {
                println!("  ... and {} more", summary.bad_rows - summary.listed_bad_rows.len() as u64);
            }
            anyhow::ensure!(
                summary.bad_rows == 0,
                "{} rows were not imported; fix them and import those rows again",
                summary.bad_rows
            );
            Ok(())
        }
        Command::NewEpoch { config } => {
            let config = load(&config)?;
            let previous = std::fs::read_to_string(config.data_dir.join("epoch")).ok();
            anyhow::ensure!(
                previous.is_some(),
                "no epoch yet in {}; `run` starts the first",
                config.data_dir.display()
            );
            let state = pipeline::start_epoch_after_current(&config.data_dir, diode_sender::clock::now_ns())?;
            println!(
                "started epoch {} (previous {}, last sequence {})",
                state.epoch, state.previous_epoch, state.previous_last_sequence
            );
            Ok(())
        }
    }
}

fn generate(what: Generated, out: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let written = match what {
        Generated::Completions => {
            diode_host::generated::write_completions(&mut Documented::command(), "diode-sender", out)
        }
        Generated::Man => diode_host::generated::write_man_pages(Documented::command(), out),
    }
    .with_context(|| format!("cannot write into {}", out.display()))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

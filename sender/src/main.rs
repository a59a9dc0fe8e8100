//! The `diode-sender` command: keygen, run, resend, new-epoch.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use diode_sender::config::{LogFormat, SenderConfig};
use diode_sender::{keyfiles, logging, pipeline, resend, run};

/// diode's OT appliance: seals plant historian records and sends them one way to diode-receiver.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Start a new epoch deliberately (a new hash chain, announced by the next beacons).
    NewEpoch {
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("diode-sender: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &PathBuf) -> anyhow::Result<SenderConfig> {
    let config = SenderConfig::load(path)?;
    logging::init(config.log.format == LogFormat::Json);
    Ok(config)
}

fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Keygen { dir, force } => {
            let generated = keyfiles::generate(&dir, force)?;
            println!("key id {}", generated.key_id);
            for file in generated.files {
                println!("wrote {}", file.display());
            }
            println!("copy signing.pub and link.key to the receiver; keep signing.key on this appliance only");
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
        Command::NewEpoch { config } => {
            let config = load(&config)?;
            let previous = std::fs::read_to_string(config.data_dir.join("epoch")).ok();
            anyhow::ensure!(previous.is_some(), "no epoch yet in {}; `run` starts the first", config.data_dir.display());
            let state = pipeline::start_epoch_after_current(&config.data_dir, diode_sender::clock::now_ns())?;
            println!("started epoch {} (previous {}, last sequence {})", state.epoch, state.previous_epoch, state.previous_last_sequence);
            Ok(())
        }
    }
}

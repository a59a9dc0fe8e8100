//! `diode-receiver export parquet`: writes a range of hours of a read-only replica as Hive
//! partitions of Parquet files, with a progress bar on a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use diode_replica::Replica;

use super::parquet::{self, SeriesFilter};
use crate::config::ReceiverConfig;
use crate::time::{now_ns, parse_time};

/// What `export` writes.
#[derive(Debug, clap::Subcommand)]
pub enum ExportCommand {
    /// Hours of data time as Parquet files: `OUT/date=YYYY-MM-DD/hour=HH/part-0.parquet`, zstd,
    /// whole hours, each replaced atomically when exported again.
    Parquet(ParquetArgs),
}

/// `diode-receiver export parquet`: what to export and where.
#[derive(Debug, clap::Args)]
pub struct ParquetArgs {
    /// The receiver's config file (the replica is found through it).
    #[arg(long)]
    pub config: PathBuf,
    /// Series names to export (globs with * and ?); repeat for more. Default: every series.
    #[arg(long = "series", value_name = "GLOB")]
    pub series: Vec<String>,
    /// Start (RFC 3339, `-7d`, `now-1h` or an epoch number); rounded down to its hour. Default:
    /// the earliest point.
    #[arg(long)]
    pub from: Option<String>,
    /// End, inclusive; its whole hour is written. Default: the latest point.
    #[arg(long)]
    pub to: Option<String>,
    /// Folder of the partitions (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `diode-receiver export …`: reads the replica (read-only, beside a running receiver) and
/// writes each whole hour of the selected series, printing where the files went.
pub fn run(command: ExportCommand) -> anyhow::Result<()> {
    let ExportCommand::Parquet(args) = command;
    let config = ReceiverConfig::load(&args.config)?;
    let replica = Replica::open_read_only(&config.replica_dir)
        .with_context(|| format!("cannot read the replica in {}", config.replica_dir.display()))?;
    let now = now_ns();
    let from_ns = args.from.as_deref().map(|text| parse_time(text, now)).transpose().context("--from")?;
    let to_ns = args.to.as_deref().map(|text| parse_time(text, now)).transpose().context("--to")?;
    let (from_ns, to_ns) = (from_ns.unwrap_or(i64::MIN), to_ns.unwrap_or(i64::MAX));
    anyhow::ensure!(from_ns <= to_ns, "--from is after --to");
    let filter = SeriesFilter { patterns: args.series.clone() };
    let visible = !args.quiet && std::io::stderr().is_terminal();
    let bar = if visible { indicatif::ProgressBar::new(0) } else { indicatif::ProgressBar::hidden() };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} export [{bar:40}] {human_pos}/{human_len} hours, {msg}, eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let summary = parquet::export(&replica, &filter, from_ns, to_ns, &args.out, |done, total, points| {
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(format!("{points} points"));
    })?;
    bar.finish_and_clear();
    println!("wrote {} points in {} hour files under {}", summary.points, summary.hours, args.out.display());
    Ok(())
}

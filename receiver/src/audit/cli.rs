//! `diode-receiver audit verify | proof | check-proof`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use diode_common::keys::{TrustedKey, TrustedKeys, parse_public_key};
use diode_replica::Replica;

use super::proof::{MAX_PROOF_BYTES, check_proof, describe, export_proof, find_series};
use super::verify::{VerifyOptions, verify_replica};
use crate::config::ReceiverConfig;
use crate::time::{format_rfc3339, now_ns, parse_time};

/// `diode-receiver audit`: its subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Re-verify every stored segment, the hash chains, and every point of the replica against
    /// the signed segments. Exits non-zero on any finding.
    Verify(VerifyArgs),
    /// Export a self-contained proof of some points of one series (see docs/proof-format.md).
    Proof(ProofArgs),
    /// Check a proof file offline, with the sender's public keys only.
    CheckProof(CheckProofArgs),
}

/// `audit verify`'s arguments.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The receiver's config file (its replica is opened read-only, beside a running receiver).
    #[arg(long)]
    pub config: PathBuf,
    /// Check only segments from this sequence on (in every stream).
    #[arg(long)]
    pub from_seq: Option<u64>,
    /// Check only segments up to this sequence (in every stream).
    #[arg(long)]
    pub to_seq: Option<u64>,
    /// Also write the report as JSON to FILE, or to standard output with `-` (the summary then
    /// goes to standard error).
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<PathBuf>,
    /// Most decoded points held in memory at once (about 30 bytes each).
    #[arg(long, default_value_t = 8_000_000)]
    pub memory_budget_points: u64,
}

/// `audit proof`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ProofArgs {
    /// The receiver's config file (its replica is opened read-only, beside a running receiver).
    #[arg(long)]
    pub config: PathBuf,
    /// The series as `diode-receiver series` shows it: `name` or `name{key=value,...}`.
    #[arg(long)]
    pub series: String,
    /// Prove the point at this time (RFC 3339 or an epoch number).
    #[arg(long, conflicts_with_all = ["from", "to"], required_unless_present_all = ["from", "to"])]
    pub at: Option<String>,
    /// Prove every point from this time...
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// ...up to and including this time.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Where to write the proof file.
    #[arg(long)]
    pub out: PathBuf,
}

/// `audit check-proof`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CheckProofArgs {
    /// The proof file.
    pub file: PathBuf,
    /// A sender public key (`signing.pub`); repeat for every key the proof may use.
    #[arg(long, required = true)]
    pub pubkey: Vec<PathBuf>,
}

/// Runs an audit subcommand; `audit verify` fails when there is any finding.
pub fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify(args) => verify(args),
        AuditCommand::Proof(args) => proof(args),
        AuditCommand::CheckProof(args) => check(args),
    }
}

fn open(config: &Path) -> anyhow::Result<(Replica, TrustedKeys)> {
    let config = ReceiverConfig::load(config)?;
    let trusted = config.trusted_keys()?;
    let replica = Replica::open_read_only(&config.replica_dir)
        .with_context(|| format!("cannot read the replica in {}", config.replica_dir.display()))?;
    Ok((replica, trusted))
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let (replica, trusted) = open(&args.config)?;
    let sequences = match (args.from_seq, args.to_seq) {
        (None, None) => None,
        (from, to) => {
            let (from, to) = (from.unwrap_or(1), to.unwrap_or(u64::MAX));
            anyhow::ensure!(from <= to, "--from-seq {from} is after --to-seq {to}");
            Some(from..=to)
        }
    };
    let options = VerifyOptions {
        sequences,
        memory_budget_points: args.memory_budget_points.max(1),
        progress: std::io::stderr().is_terminal(),
        ..VerifyOptions::default()
    };
    let report = verify_replica(&replica, &trusted, &options)?;
    let summary = report.summary_text();
    match args.json.as_deref() {
        Some(path) if path == Path::new("-") => {
            eprint!("{summary}");
            let mut stdout = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut stdout, &report.to_json())?;
            writeln!(stdout)?;
        }
        Some(path) => {
            let text = serde_json::to_string_pretty(&report.to_json())?;
            std::fs::write(path, text + "\n")
                .with_context(|| format!("cannot write the report to {}", path.display()))?;
            print!("{summary}");
        }
        None => print!("{summary}"),
    }
    if report.is_clean() {
        Ok(())
    } else {
        let counts: Vec<String> =
            report.findings.counts.iter().map(|(kind, count)| format!("{count} {kind}")).collect();
        anyhow::bail!("the audit found {} problems ({})", report.findings.total(), counts.join(", "))
    }
}

fn proof(args: ProofArgs) -> anyhow::Result<()> {
    let (replica, trusted) = open(&args.config)?;
    let series = find_series(&replica, &args.series)?;
    let now = now_ns();
    let (from_ns, to_ns) = match (&args.at, &args.from, &args.to) {
        (Some(at), _, _) => {
            let at = parse_time(at, now)?;
            (at, at)
        }
        (None, Some(from), Some(to)) => (parse_time(from, now)?, parse_time(to, now)?),
        _ => anyhow::bail!("give --at TIME, or --from TIME and --to TIME"),
    };
    let proof = export_proof(&replica, &trusted, &series, from_ns, to_ns)?;
    let bytes = proof.to_bytes();
    // Written beside the target and renamed, so a reader never sees half a proof.
    let partial = args.out.with_extension("partial");
    std::fs::write(&partial, &bytes).with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, &args.out).with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "wrote {} ({} bytes): {} points of {} from {} to {}, {} segments, {} chain headers, keys {}",
        args.out.display(),
        bytes.len(),
        proof.points.len(),
        proof.series,
        format_rfc3339(proof.points[0].timestamp_ns),
        format_rfc3339(proof.points[proof.points.len() - 1].timestamp_ns),
        proof.segments.len(),
        proof.headers.len(),
        proof.key_ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    );
    println!("check it anywhere with: diode-receiver audit check-proof {} --pubkey signing.pub", args.out.display());
    Ok(())
}

fn check(args: CheckProofArgs) -> anyhow::Result<()> {
    let mut keys = Vec::with_capacity(args.pubkey.len());
    for path in &args.pubkey {
        let contents = std::fs::read(path).with_context(|| format!("cannot read the public key {}", path.display()))?;
        keys.push(TrustedKey::new(parse_public_key(&contents, &path.display().to_string())?));
    }
    let length =
        std::fs::metadata(&args.file).with_context(|| format!("cannot read the proof {}", args.file.display()))?.len();
    anyhow::ensure!(
        length <= MAX_PROOF_BYTES as u64,
        "{} is {length} bytes, larger than any proof",
        args.file.display()
    );
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read the proof {}", args.file.display()))?;
    let checked = check_proof(&bytes, &TrustedKeys::new(keys))
        .with_context(|| format!("the proof {} does NOT verify", args.file.display()))?;
    print!("{}", describe(&checked));
    Ok(())
}

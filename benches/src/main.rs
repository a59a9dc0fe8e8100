//! `diode-lab`: the demo a new user runs first, and the end-to-end harness that measures what the
//! README claims (points/s, bytes on the wire per point, CPU of each side, what loss costs).
//!
//! Everything runs on loopback: a receiver, a sender with its plant simulator, and a seeded lossy
//! relay between them.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use diode_common::packet;
use diode_receiver::time::format_rfc3339;
use diode_replica::Replica;
use diode_tests::lab::{Lab, LabOptions, ThreadCpu, cpu_seconds};
use diode_tests::relay::LossModel;

#[derive(Parser)]
#[command(about = "diode's demo and end-to-end harness, on loopback")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run both appliances with the simulator and a lossy link, show progress, then a summary.
    Demo {
        /// Where keys, configs, logs and the replica go (default: a fresh temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 0.03)]
        loss: f64,
    },
    /// Sustained throughput: the simulator runs flat out; prints points/s, wire bytes and CPU.
    Throughput(ThroughputArgs),
    /// A plant running live: the simulator in real time, segments sealed by age (1 s, the
    /// default `segments.max_age_ms`), so each segment holds about one point per series; prints
    /// bytes per point in the sender's segment log, on the wire and in the replica (as written,
    /// compacted, and with every hour merged), and a count over each.
    Live {
        #[arg(long, default_value_t = 5_000)]
        series: usize,
        #[arg(long, default_value_t = 1.0)]
        rate_hz: f64,
        #[arg(long, default_value_t = 90)]
        seconds: u64,
        /// Fraction of datagrams the relay drops.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// The sender's `segments.max_age_ms`: how long a point may wait to be sealed, so the
        /// latency bought for fewer bytes per point.
        #[arg(long, default_value_t = 1_000)]
        segment_age_ms: u64,
    },
    /// What FEC alone recovers (no carousel, no resend) for loss rates, bursts and overheads.
    LossTable {
        #[arg(long, default_value_t = 1_000_000)]
        points: u64,
    },
}

#[derive(clap::Args, Clone, Copy)]
struct ThroughputArgs {
    #[arg(long, default_value_t = 2_000_000)]
    points: u64,
    #[arg(long, default_value_t = 2_000)]
    series: usize,
    /// Fraction of datagrams the relay drops.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    #[arg(long, default_value_t = 0.2)]
    overhead: f64,
    #[arg(long, default_value_t = 800.0)]
    rate_mbit_s: f64,
    /// Seal on a thread of its own (`segments.sealer_thread`); false seals on the simulator's.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sealer_thread: bool,
    /// Threads encoding segments for the sealing thread (`segments.encoder_threads`; unset:
    /// the sender's default, one per core).
    #[arg(long)]
    encoder_threads: Option<usize>,
    /// Records per segment at most (`segments.max_records`; the default is the sender's).
    #[arg(long, default_value_t = 250_000)]
    segment_max_records: usize,
    /// Then print the replica's bytes per point as written, compacted, and with every hour
    /// merged (as the receiver does once each closes), with a count over each.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    replica_size: bool,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Demo { dir, seconds, loss } => demo(dir, seconds, loss),
        Command::Throughput(args) => throughput(&args),
        Command::Live { series, rate_hz, seconds, loss, segment_age_ms } => {
            live(series, rate_hz, seconds, loss, segment_age_ms)
        }
        Command::LossTable { points } => loss_table(points),
    }
}

fn lab_dir(dir: Option<PathBuf>) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        Some(dir) => {
            if dir.exists() {
                std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
            }
            Ok((dir, None))
        }
        None => {
            let temp = tempfile::Builder::new().prefix("diode-demo-").tempdir()?;
            Ok((temp.path().to_owned(), Some(temp)))
        }
    }
}

fn demo(dir: Option<PathBuf>, seconds: u64, loss: f64) -> anyhow::Result<()> {
    let keep = dir.is_some();
    let (dir, _temp) = lab_dir(dir)?;
    let series = 1_000;
    let rate_hz = 10.0;
    let options = LabOptions {
        series,
        rate_hz,
        max_records: (series as f64 * rate_hz) as u64 * seconds,
        realtime: true,
        start_ns: diode_receiver::time::now_ns(),
        loss: LossModel { seed: 42, loss, reorder: 0.01, duplicate: 0.005, ..LossModel::default() },
        link_rate_mbit_s: 50.0,
        linger_ms: 2_000,
        ..LabOptions::default()
    };
    let expected = options.max_records;
    println!("diode demo: {series} simulated plant series at {rate_hz} Hz for {seconds} s ({expected} points),");
    println!(
        "sent one way over UDP through a relay that drops {:.0} % of datagrams, reorders and duplicates some.",
        loss * 100.0
    );
    println!("lab folder: {}\n", dir.display());
    let mut lab = Lab::new(&dir, options)?;
    lab.start_receiver()?;
    lab.start_sender()?;
    let started = Instant::now();
    while lab.sender_running() {
        print_progress(&lab, expected, started);
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = lab.wait_sender(Duration::from_secs(5))?;
    if !status.success() {
        let log = std::fs::read_to_string(dir.join("sender.log")).unwrap_or_default();
        anyhow::bail!("diode-sender failed ({status}):\n{log}");
    }
    lab.wait_for_points(expected, Duration::from_secs(10));
    print_progress(&lab, expected, started);
    println!("\n");
    let metrics = lab.metrics()?;
    let metric = |name: &str| metrics.get(name).copied().unwrap_or(0.0) as u64;
    lab.stop_receiver()?;
    let verification = lab.verify_replica()?;
    let relay = &lab.relay.counters;
    println!("summary");
    println!("  points sent                 {expected}");
    println!("  points in the replica       {}", verification.found_points);
    println!(
        "  missing / extra / altered   {} / {} / {}",
        verification.missing, verification.extra, verification.different
    );
    println!(
        "  datagrams dropped by relay  {} of {}",
        relay.dropped.load(Ordering::Relaxed),
        relay.received.load(Ordering::Relaxed)
    );
    println!("  segments applied            {}", metric("diode_receiver_segments_applied_total"));
    println!("  segments recovered by FEC   {}", metric("diode_receiver_segments_recovered_by_fec_total"));
    println!("  segments lost               {}", lost_segments(&lab)?);
    print_sample(&lab)?;
    anyhow::ensure!(verification.is_exact(), "the replica differs from what was sent: {verification:?}");
    if keep {
        println!(
            "\nthe replica equals the source. Try: diode-receiver status --config {}",
            lab.receiver_config().display()
        );
    } else {
        println!(
            "\nthe replica equals the source. Run with --dir DIR to keep the lab (keys, configs, logs, replica) and explore it."
        );
    }
    Ok(())
}

fn lost_segments(lab: &Lab) -> anyhow::Result<u64> {
    let replica = Replica::open_read_only(&lab.replica_dir())?;
    Ok(replica.gaps().iter().map(|gap| gap.segment_count()).sum())
}

fn print_progress(lab: &Lab, expected: u64, started: Instant) {
    let points = lab.metric("diode_receiver_replica_points") as u64;
    let recovered = lab.metric("diode_receiver_segments_recovered_by_fec_total") as u64;
    let dropped = lab.relay.counters.dropped.load(Ordering::Relaxed);
    let width = 30;
    let filled = ((points as f64 / expected.max(1) as f64) * width as f64).min(width as f64) as usize;
    print!(
        "\r  [{}{}] {points:>9} / {expected} points in the replica | {dropped:>6} datagrams dropped | {recovered:>4} segments rebuilt by FEC | {:>4.0} s",
        "#".repeat(filled),
        " ".repeat(width - filled),
        started.elapsed().as_secs_f64()
    );
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

fn print_sample(lab: &Lab) -> anyhow::Result<()> {
    let replica = Replica::open_read_only(&lab.replica_dir())?;
    let series = replica.series_list();
    println!("\nsample of the replica ({} series):", series.len());
    let sample: Vec<_> = series.iter().step_by((series.len() / 6).max(1)).take(6).collect();
    let name_width = sample.iter().map(|info| info.key.to_string().chars().count()).max().unwrap_or(0);
    for info in sample {
        let latest = replica.scan(info.id, info.last_timestamp_ns, info.last_timestamp_ns).next().transpose()?;
        if let Some(point) = latest {
            println!(
                "  {:<name_width$} {:>7} points, latest {} = {} ({})",
                info.key.to_string(),
                info.point_count,
                format_rfc3339(point.timestamp_ns),
                point.value,
                point.quality
            );
        }
    }
    Ok(())
}

struct Measurement {
    seconds: f64,
    points: u64,
    wire_bytes: u64,
    sender_cpu: f64,
    receiver_cpu: f64,
    /// CPU seconds by thread name, as last read before each process ended.
    sender_threads: Vec<(String, f64)>,
    receiver_threads: Vec<(String, f64)>,
    /// What generating the simulator's records cost the sender.
    generating_cpu: Option<f64>,
    exact: bool,
    /// The lab and its folder, kept when asked for, to look at the replica after the run.
    kept: Option<(Lab, tempfile::TempDir)>,
}

fn measure(options: LabOptions, keep: bool) -> anyhow::Result<Measurement> {
    let dir = tempfile::Builder::new().prefix("diode-bench-").tempdir()?;
    let points = options.max_records;
    let mut lab = Lab::new(dir.path(), options)?;
    lab.start_receiver()?;
    let receiver_pid = lab.receiver_pid().context("receiver pid")?;
    let receiver_cpu_start = cpu_seconds(receiver_pid).unwrap_or(0.0);
    let mut receiver_threads_start = ThreadCpu::default();
    receiver_threads_start.read(receiver_pid);
    let started = Instant::now();
    lab.start_sender()?;
    let sender_pid = lab.sender_pid().context("sender pid")?;
    let mut sender_cpu = 0.0;
    let mut sender_threads = ThreadCpu::default();
    let deadline = started + Duration::from_secs(600);
    // The sender's CPU is read every 10 ms (from /proc, at the harness's cost), so its last
    // reading is at most 10 ms before it ends; the receiver's /metrics is scraped every 100 ms
    // until nine tenths of the points are in, then every 10 ms, so the end is timed to 10 ms
    // without the scrapes being a cost of the run: a scrape every 10 ms throughout (each reads
    // the process's /proc entries) was 6 % of the receiver's CPU.
    let (mut applied, mut scraped, mut sender_ended) = (0, None::<Instant>, None::<Instant>);
    loop {
        let near = applied * 10 >= points * 9 || sender_ended.is_some();
        if near || scraped.is_none_or(|at| at.elapsed() >= Duration::from_millis(100)) {
            applied = lab.metric("diode_receiver_replica_points") as u64;
            scraped = Some(Instant::now());
        }
        let gave_up = sender_ended.is_some_and(|at| at.elapsed() >= Duration::from_secs(20));
        if applied >= points || Instant::now() >= deadline || gave_up {
            break;
        }
        if sender_ended.is_none() {
            sender_cpu = cpu_seconds(sender_pid).unwrap_or(sender_cpu);
            sender_threads.read(sender_pid);
        }
        std::thread::sleep(Duration::from_millis(10));
        if sender_ended.is_none() && !lab.sender_running() {
            sender_ended = Some(Instant::now());
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let receiver_cpu = cpu_seconds(receiver_pid).unwrap_or(0.0) - receiver_cpu_start;
    // What each thread used during the run (threads started since count from zero).
    let mut receiver_threads = receiver_threads_start.clone();
    receiver_threads.read(receiver_pid);
    let receiver_threads = receiver_threads.by_name(&receiver_threads_start);
    let wire_bytes = wire_bytes(&lab);
    let _ = lab.wait_sender(Duration::from_secs(60));
    let generating_cpu = lab.simulator_generating_cpu_seconds();
    lab.stop_receiver()?;
    let verification = lab.verify_replica()?;
    Ok(Measurement {
        seconds,
        points: verification.found_points,
        wire_bytes,
        sender_cpu,
        receiver_cpu,
        sender_threads: sender_threads.by_name(&ThreadCpu::default()),
        receiver_threads,
        generating_cpu,
        exact: verification.is_exact(),
        kept: keep.then_some((lab, dir)),
    })
}

fn throughput(args: &ThroughputArgs) -> anyhow::Result<()> {
    let ThroughputArgs {
        points,
        series,
        loss,
        overhead,
        rate_mbit_s,
        sealer_thread,
        encoder_threads,
        segment_max_records,
        replica_size,
    } = *args;
    let options = LabOptions {
        series,
        max_records: points,
        realtime: false,
        loss: LossModel { seed: 3, loss, ..LossModel::default() },
        repair_overhead: overhead,
        link_rate_mbit_s: rate_mbit_s,
        // The carousel would add its background re-sends to the wire bytes; FEC alone carries this.
        carousel: false,
        linger_ms: 500,
        sealer_thread,
        encoder_threads,
        segment_max_records,
        ..LabOptions::default()
    };
    let m = measure(options, replica_size)?;
    println!(
        "throughput on loopback, both appliances on this machine ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("  points                      {} (replica exact: {})", m.points, m.exact);
    println!("  relay loss                  {:.1} %", loss * 100.0);
    println!("  elapsed                     {:.2} s (first record sealed to last point applied)", m.seconds);
    println!("  sustained                   {:.0} points/s", m.points as f64 / m.seconds);
    println!(
        "  wire bytes per point        {:.3} (IP/UDP headers and {:.0} % FEC included)",
        m.wire_bytes as f64 / m.points as f64,
        overhead * 100.0
    );
    println!(
        "  sender CPU                  {:.2} s ({:.0} % of one core)",
        m.sender_cpu,
        100.0 * m.sender_cpu / m.seconds
    );
    println!("  by thread                   {}", describe_threads(&m.sender_threads));
    if let Some(generating) = m.generating_cpu {
        let pipeline = m.sender_cpu - generating;
        println!(
            "  generating the records      {generating:.2} s (the simulator's own cost; a real source parses instead)"
        );
        println!(
            "  sender CPU without them     {pipeline:.2} s: {:.3} µs per point, {:.2} M points per CPU-second",
            pipeline * 1e6 / m.points as f64,
            m.points as f64 / pipeline / 1e6
        );
    }
    println!(
        "  receiver CPU                {:.2} s ({:.0} % of one core): {:.3} µs per point, {:.2} M points per CPU-second",
        m.receiver_cpu,
        100.0 * m.receiver_cpu / m.seconds,
        m.receiver_cpu * 1e6 / m.points as f64,
        m.points as f64 / m.receiver_cpu / 1e6
    );
    println!("  by thread                   {}", describe_threads(&m.receiver_threads));
    anyhow::ensure!(m.exact, "the replica is not exact");
    if let Some((lab, _dir)) = &m.kept {
        replica_bytes(lab, m.points)?;
    }
    Ok(())
}

/// `apply 4.10 s, receive 0.31 s, …`: threads under 0.01 s left out.
fn describe_threads(threads: &[(String, f64)]) -> String {
    let shown: Vec<String> = threads
        .iter()
        .filter(|(_, seconds)| *seconds >= 0.01)
        .map(|(name, seconds)| format!("{name} {seconds:.2} s"))
        .collect();
    if shown.is_empty() { "(not read)".to_owned() } else { shown.join(", ") }
}

fn live(series: usize, rate_hz: f64, seconds: u64, loss: f64, segment_age_ms: u64) -> anyhow::Result<()> {
    let points = (series as f64 * rate_hz) as u64 * seconds;
    let options = LabOptions {
        series,
        rate_hz,
        max_records: points,
        realtime: true,
        start_ns: diode_receiver::time::now_ns(),
        loss: LossModel { seed: 3, loss, ..LossModel::default() },
        // The carousel would add its background re-sends to the wire bytes; FEC alone carries this.
        carousel: false,
        linger_ms: 500,
        segment_max_age_ms: segment_age_ms,
        ..LabOptions::default()
    };
    let dir = tempfile::Builder::new().prefix("diode-live-").tempdir()?;
    let mut lab = Lab::new(dir.path(), options)?;
    lab.start_receiver()?;
    let receiver_pid = lab.receiver_pid().context("receiver pid")?;
    lab.start_sender()?;
    let sender_pid = lab.sender_pid().context("sender pid")?;
    println!(
        "live plant: {series} series at {rate_hz} Hz for {seconds} s ({points} points), segments sealed every {} s",
        segment_age_ms as f64 / 1_000.0
    );
    let mut sender_cpu = 0.0;
    while lab.sender_running() {
        sender_cpu = cpu_seconds(sender_pid).unwrap_or(sender_cpu);
        std::thread::sleep(Duration::from_millis(200));
    }
    lab.wait_sender(Duration::from_secs(10))?;
    lab.wait_for_points(points, Duration::from_secs(60));
    let receiver_cpu = cpu_seconds(receiver_pid).unwrap_or(0.0);
    let segments = lab.metric("diode_receiver_segments_applied_total");
    let wire_bytes = wire_bytes(&lab);
    let segment_log_bytes = folder_bytes(&dir.path().join("sender-state").join("segments"))?;
    lab.stop_receiver()?;
    let verification = lab.verify_replica()?;
    let per_point = |bytes: u64| bytes as f64 / points as f64;
    println!("  segments applied            {segments:.0} ({:.1} points each)", points as f64 / segments.max(1.0));
    println!("  segment log (sender)        {:.2} bytes per point", per_point(segment_log_bytes));
    println!(
        "  wire                        {:.2} bytes per point (IP/UDP headers and 20 % FEC included)",
        per_point(wire_bytes)
    );
    println!("  sender CPU                  {:.2} s, {:.2} µs per point", sender_cpu, sender_cpu * 1e6 / points as f64);
    println!(
        "  receiver CPU                {:.2} s, {:.2} µs per point",
        receiver_cpu,
        receiver_cpu * 1e6 / points as f64
    );
    replica_bytes(&lab, points)?;
    anyhow::ensure!(verification.is_exact(), "the replica is not exact: {verification:?}");
    println!("  replica exact               true (as written and once merged)");
    Ok(())
}

/// Prints the replica's bytes per point as written (memtables flushed), compacted to its last
/// level, and with every hour merged and compacted (what the receiver does once each hour closes;
/// a run this short closes none), with a count over each; then checks the replica is still exact.
fn replica_bytes(lab: &Lab, points: u64) -> anyhow::Result<()> {
    let per_point = |bytes: u64| bytes as f64 / points as f64;
    let mut replica = Replica::open(&lab.replica_dir())?;
    let states = ["as written (memtables flushed)", "compacted to the last level", "every hour merged, compacted"];
    for state in states {
        if state.starts_with("compacted") {
            replica.compact()?;
        }
        if state.starts_with("every hour merged") {
            // A 90-second run closes no hour: merge them all, as the receiver does once each closes.
            let started = Instant::now();
            let report = replica.merge_all_buckets()?;
            println!(
                "  merging {} buckets ({} chunks, {} rows): {:.2} s, {:.2} µs per row",
                report.buckets_merged,
                report.chunks_merged,
                report.rows,
                started.elapsed().as_secs_f64(),
                started.elapsed().as_secs_f64() * 1e6 / report.rows.max(1) as f64
            );
            replica.compact()?;
        }
        let tables = replica.table_bytes()?;
        let of = |family: &str| tables.iter().find(|(name, _)| *name == family).map_or(0, |(_, bytes)| *bytes);
        let total: u64 = tables.iter().map(|(_, bytes)| bytes).sum();
        let started = Instant::now();
        let counted = count_points(&replica)?;
        let count_seconds = started.elapsed().as_secs_f64();
        println!("  replica, {state}:");
        println!(
            "    {:.2} bytes per point in all: points {:.2}, audit log {:.2}, series {:.2}, meta {:.2}",
            per_point(total),
            per_point(of("points")),
            per_point(of("segments")),
            per_point(of("series")),
            per_point(of("meta"))
        );
        println!("    a count of all {counted} points: {:.2} M points/s", counted as f64 / count_seconds / 1e6);
    }
    drop(replica);
    let merged = lab.verify_replica()?;
    anyhow::ensure!(merged.is_exact(), "the replica is not exact once merged: {merged:?}");
    Ok(())
}

/// Bytes the relay carried, as the link would: datagrams with their IPv4 and UDP headers.
fn wire_bytes(lab: &Lab) -> u64 {
    let relay = &lab.relay.counters;
    relay.bytes_received.load(Ordering::Relaxed)
        + packet::IPV4_UDP_HEADER_LENGTH as u64 * relay.received.load(Ordering::Relaxed)
}

/// Every point of every series, counted through the column scans queries use.
fn count_points(replica: &Replica) -> anyhow::Result<u64> {
    let mut count = 0;
    for info in replica.series_list() {
        for block in replica.scan_columns(info.id, i64::MIN, i64::MAX) {
            count += block?.len() as u64;
        }
    }
    Ok(count)
}

/// Bytes of the files under `folder`, recursively.
fn folder_bytes(folder: &std::path::Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(folder).with_context(|| format!("cannot list {}", folder.display()))? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() { folder_bytes(&entry.path())? } else { metadata.len() };
    }
    Ok(total)
}

fn loss_table(points: u64) -> anyhow::Result<()> {
    println!("| loss | burst (datagrams) | repair overhead | interleave | points recovered by FEC alone |");
    println!("|---:|---:|---:|---:|---:|");
    let cases: [(f64, u64, f64, usize); 8] = [
        (0.01, 0, 0.10, 8),
        (0.02, 0, 0.10, 8),
        (0.05, 0, 0.20, 8),
        (0.10, 0, 0.20, 8),
        (0.10, 0, 0.35, 8),
        (0.20, 0, 0.35, 8),
        (0.00, 50, 0.20, 1),
        (0.00, 50, 0.20, 16),
    ];
    for (loss, burst, overhead, interleave) in cases {
        let options = LabOptions {
            series: 1_000,
            max_records: points,
            realtime: false,
            loss: LossModel {
                seed: 9,
                loss,
                burst_every: if burst > 0 { 1_000 } else { 0 },
                burst_length: burst,
                ..LossModel::default()
            },
            repair_overhead: overhead,
            interleave_segments: interleave,
            segment_max_records: 10_000,
            carousel: false,
            linger_ms: 0,
            link_rate_mbit_s: 200.0,
            ..LabOptions::default()
        };
        let m = measure(options, false)?;
        let burst_text = if burst > 0 { format!("{burst} in every 1,000") } else { "none".into() };
        println!(
            "| {:.0} % | {burst_text} | {:.0} % | {interleave} | {:.2} % |",
            loss * 100.0,
            overhead * 100.0,
            100.0 * m.points as f64 / points as f64
        );
    }
    Ok(())
}

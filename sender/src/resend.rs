//! `diode-sender resend`: sends a range of retained segments again, at a chosen rate, for an
//! operator who read the receiver's gap report. Runs beside a running sender: it only reads the
//! segment log and sends from its own socket.

use std::sync::Arc;

use anyhow::{Context, bail};
use diode_common::packet;
use diode_common::seal;

use crate::clock::now_ns;
use crate::config::SenderConfig;
use crate::framed_log;
use crate::keyfiles;
use crate::link::{LinkSettings, ip_udp_overhead, open_socket};
use crate::pipeline::{segment_dir, split_segment_entry};
use crate::run::{coding_settings, rate_bytes_per_s};
use crate::schedule::{EncodedSegment, TokenBucket};

/// What `diode-sender resend` was asked to send again.
pub struct ResendRequest {
    /// `--epoch`: the epoch whose segments are sent; `None`: the current one.
    pub epoch: Option<u64>,
    /// `--from`: the first sequence, from 1.
    pub from_sequence: u64,
    /// `--to`: the last sequence, inclusive.
    pub to_sequence: u64,
    /// `--rate-mbit-s`: the pace; `None`: `link.rate_mbit_s`.
    pub rate_mbit_s: Option<f64>,
    /// Draw a progress bar on the terminal.
    pub show_progress: bool,
}

/// What a resend did, printed for the operator.
pub struct ResendSummary {
    /// Segments sent again.
    pub segments_sent: u64,
    /// Datagrams those took.
    pub datagrams_sent: u64,
    /// Sequences of the range no longer (or never) in the segment log: they cannot be resent.
    pub missing: Vec<u64>,
}

/// Sends the requested range of sealed segments again from the segment log, with FEC as
/// configured, paced at the request's rate (a running sender shares the link: mind the sum).
pub fn resend(config: &SenderConfig, request: &ResendRequest) -> anyhow::Result<ResendSummary> {
    if request.from_sequence == 0 || request.from_sequence > request.to_sequence {
        bail!(
            "--from {} --to {} is not a range of sequences (they start at 1)",
            request.from_sequence,
            request.to_sequence
        );
    }
    let link_key = keyfiles::load_link_key(&config.keys.link_key)?;
    let epoch = match request.epoch {
        Some(epoch) => epoch,
        None => current_epoch(config)?,
    };
    let dir = segment_dir(&config.data_dir, epoch);
    if !dir.is_dir() {
        bail!("no segment log for epoch {epoch} in {}; check --epoch and data_dir", dir.display());
    }
    let mut wanted = std::collections::BTreeMap::new();
    framed_log::scan(&dir, |frame| {
        if (request.from_sequence..=request.to_sequence).contains(&frame.id) {
            wanted.insert(frame.id, frame.location);
        }
    })
    .with_context(|| format!("cannot read the segment log in {}", dir.display()))?;
    let missing: Vec<u64> = (request.from_sequence..=request.to_sequence).filter(|s| !wanted.contains_key(s)).collect();
    if wanted.is_empty() {
        bail!(
            "none of segments {}..={} of epoch {epoch} is retained any more (retention window passed); \
             the gap cannot be filled from this sender",
            request.from_sequence,
            request.to_sequence
        );
    }
    let rate = request.rate_mbit_s.map_or(rate_bytes_per_s(config), |r| r * 1e6 / 8.0);
    let coding = coding_settings(config)?;
    let settings = LinkSettings {
        destination: config.link.destination,
        bind: config.link.bind,
        send_buffer_bytes: config.link.send_buffer_bytes,
        rate_bytes_per_s: rate,
        coding: coding.clone(),
        carousel_window_segments: 1,
        carousel_window_bytes: 0,
        carousel_window_ns: 0,
        carousel_rate_bytes_per_s: None,
        beacon_interval_ns: 0,
        data_dir: config.data_dir.clone(),
    };
    let socket = open_socket(&settings)?;
    let overhead = ip_udp_overhead(&settings.destination);
    let mut bucket = TokenBucket::new(rate, (rate * 0.002).max(8.0 * 1500.0), now_ns());
    let bar = progress_bar(request.show_progress, wanted.len() as u64);
    let mut datagram = Vec::with_capacity(65_536);
    let mut summary = ResendSummary { segments_sent: 0, datagrams_sent: 0, missing };
    for (sequence, location) in wanted {
        let content = framed_log::read_at(&dir, location)?;
        let Some((_, sealed)) = split_segment_entry(&content) else { continue };
        seal::parse(sealed).with_context(|| format!("segment {sequence} in the log is damaged"))?;
        let segment = Arc::new(EncodedSegment::encode(&coding, epoch, sequence, sealed)?);
        for index in 0..segment.symbols.len() as u16 {
            packet::encode_symbol(&segment.packet(coding.sender_id, index), &link_key, &mut datagram)?;
            let cost = datagram.len() + overhead;
            let wait = bucket.wait_ns(cost, now_ns());
            if wait > 0 {
                std::thread::sleep(std::time::Duration::from_nanos(wait as u64));
            }
            bucket.spend(cost, now_ns());
            socket.send_to(&datagram, settings.destination).context("sending a datagram failed")?;
            summary.datagrams_sent += 1;
        }
        summary.segments_sent += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(summary)
}

fn current_epoch(config: &SenderConfig) -> anyhow::Result<u64> {
    let path = config.data_dir.join("epoch");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}; is data_dir right?", path.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix("epoch = "))
        .and_then(|value| value.trim().parse().ok())
        .with_context(|| format!("{} does not name an epoch", path.display()))
}

fn progress_bar(visible: bool, length: u64) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(length);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} resending [{bar:40}] {pos}/{len} segments {per_sec} eta {eta}",
        )
        .expect("valid template"),
    );
    bar
}

//! Receivers replicating from one another over QUIC, on loopback: certificates made with
//! `diode-receiver tls-keygen`, downstream receivers run as real processes, a seeded lossy relay
//! for QUIC's datagrams (both ways), and an exact comparison of two replicas.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use diode_common::rng::SeededRng;
use diode_replica::{Replica, SegmentKey};

use crate::lab::find_bin_dir;

/// The name in the upstream's certificate that downstreams check.
pub const UPSTREAM_NAME: &str = "upstream";

/// Runs `diode-receiver` with `args` and fails with its standard error if it fails.
pub fn receiver_command(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(find_bin_dir()?.join("diode-receiver")).args(args).output()?;
    if !output.status.success() {
        bail!("diode-receiver {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A private authority in `dir/ca` and a certificate for each name in `dir`.
pub fn make_certificates(dir: &Path, names: &[&str]) -> anyhow::Result<()> {
    let ca = dir.join("ca");
    receiver_command(&["tls-keygen", "ca", "--dir", ca.to_str().expect("utf-8")])?;
    for name in names {
        receiver_command(&[
            "tls-keygen",
            "cert",
            "--ca-dir",
            ca.to_str().expect("utf-8"),
            "--name",
            name,
            "--also",
            "127.0.0.1",
            "--dir",
            dir.to_str().expect("utf-8"),
        ])?;
    }
    Ok(())
}

/// The `[serve]` section for a receiver whose certificates `make_certificates` wrote in `tls`.
pub fn serve_section(listen: SocketAddr, tls: &Path) -> String {
    format!(
        "\n[serve]\nlisten = \"{listen}\"\ncertificate = \"{crt}\"\nprivate_key = \"{key}\"\nca_certificate = \"{ca}\"\n",
        crt = tls.join(format!("{UPSTREAM_NAME}.crt")).display(),
        key = tls.join(format!("{UPSTREAM_NAME}.key")).display(),
        ca = tls.join("ca/ca.crt").display(),
    )
}

/// A free UDP port on loopback (see [`crate::ports`]).
pub fn free_udp_address() -> anyhow::Result<SocketAddr> {
    Ok(crate::ports::free_address())
}

/// A receiver fed by an upstream receiver over QUIC, run as a process.
pub struct Downstream {
    pub dir: PathBuf,
    pub name: String,
    pub http: SocketAddr,
    child: Option<Child>,
}

impl Downstream {
    /// Writes the config of a downstream named `name` in `dir`: it follows `upstream` with the
    /// certificate `tls/NAME.crt` and trusts the sender's `signing_pub`; with `serve`, it serves
    /// further downstreams on that address.
    pub fn new(
        dir: &Path,
        name: &str,
        upstream: SocketAddr,
        tls: &Path,
        signing_pub: &Path,
        serve: Option<SocketAddr>,
    ) -> anyhow::Result<Downstream> {
        std::fs::create_dir_all(dir)?;
        let http = crate::ports::free_address();
        let mut config = format!(
            "replica_dir = \"replica\"\n\n[upstream]\naddress = \"{upstream}\"\nserver_name = \"{UPSTREAM_NAME}\"\n\
             name = \"{name}\"\ncertificate = \"{crt}\"\nprivate_key = \"{key}\"\nca_certificate = \"{ca}\"\n\n\
             [keys]\n[[keys.trusted]]\npublic_key = \"{public}\"\n\n[http]\nlisten = \"{http}\"\n",
            crt = tls.join(format!("{name}.crt")).display(),
            key = tls.join(format!("{name}.key")).display(),
            ca = tls.join("ca/ca.crt").display(),
            public = signing_pub.display(),
        );
        if let Some(listen) = serve {
            // A downstream that serves presents its own certificate under the upstream's name.
            config.push_str(&serve_section(listen, tls));
        }
        std::fs::write(dir.join("receiver.toml"), config)?;
        Ok(Downstream { dir: dir.to_owned(), name: name.to_owned(), http, child: None })
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("receiver.toml")
    }

    pub fn replica_dir(&self) -> PathBuf {
        self.dir.join("replica")
    }

    /// Starts it and waits until its HTTP listener answers.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("receiver.log"))?;
        let child = Command::new(find_bin_dir()?.join("diode-receiver"))
            .args(["run", "--config", self.config().to_str().expect("utf-8 path")])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start a downstream receiver")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.metrics().is_err() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("downstream {} exited ({status}); see {}/receiver.log", self.name, self.dir.display());
            }
            anyhow::ensure!(Instant::now() < deadline, "downstream {} did not start", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for an orderly exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    bail!("downstream {} did not stop on SIGTERM", self.name);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn metrics(&self) -> anyhow::Result<HashMap<String, f64>> {
        metrics(self.http)
    }

    /// A metric by its full name (labels included), 0 if absent.
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics().ok().and_then(|m| m.get(name).copied()).unwrap_or(0.0)
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A receiver's metrics by name (labels included in the name).
pub use crate::lab::metrics_at as metrics;

/// Polls `condition` every 50 ms until it holds or `timeout` passes; says whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How two replicas differ: segments (key and sealed bytes) and points (by series name).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReplicaDifference {
    pub segments_left: u64,
    pub segments_right: u64,
    pub segments_only_left: u64,
    pub segments_only_right: u64,
    pub segments_different: u64,
    pub series_left: u64,
    pub series_right: u64,
    pub series_with_different_points: u64,
    pub points_left: u64,
}

impl ReplicaDifference {
    pub fn is_equal(&self) -> bool {
        self.segments_only_left == 0
            && self.segments_only_right == 0
            && self.segments_different == 0
            && self.series_left == self.series_right
            && self.series_with_different_points == 0
    }
}

/// Compares two replicas: every stored segment byte for byte (header, signature, payload) and
/// every series' points (time, value, quality), series matched by name and tags.
pub fn compare_replicas(left: &Path, right: &Path) -> anyhow::Result<ReplicaDifference> {
    let left = Replica::open_read_only(left)?;
    let right = Replica::open_read_only(right)?;
    let segments = |replica: &Replica| -> anyhow::Result<HashMap<SegmentKey, Vec<u8>>> {
        replica
            .segments(SegmentKey::FIRST)
            .map(|stored| stored.map(|s| (s.key, s.sealed)).map_err(Into::into))
            .collect()
    };
    let (left_segments, right_segments) = (segments(&left)?, segments(&right)?);
    let mut difference = ReplicaDifference {
        segments_left: left_segments.len() as u64,
        segments_right: right_segments.len() as u64,
        series_left: u64::from(left.series_count()),
        series_right: u64::from(right.series_count()),
        ..ReplicaDifference::default()
    };
    for (key, sealed) in &left_segments {
        match right_segments.get(key) {
            None => difference.segments_only_left += 1,
            Some(other) if other != sealed => difference.segments_different += 1,
            Some(_) => {}
        }
    }
    difference.segments_only_right =
        right_segments.keys().filter(|key| !left_segments.contains_key(key)).count() as u64;
    for info in left.series_list() {
        let points = |replica: &Replica| -> anyhow::Result<Vec<_>> {
            let Some(id) = replica.series_id(&info.key) else { return Ok(Vec::new()) };
            replica.scan(id, i64::MIN, i64::MAX).map(|point| point.map_err(Into::into)).collect()
        };
        let left_points = points(&left)?;
        difference.points_left += left_points.len() as u64;
        if left_points != points(&right)? {
            difference.series_with_different_points += 1;
        }
    }
    Ok(difference)
}

/// A seeded lossy relay for one QUIC client on loopback: datagrams from the client go to the
/// server and the server's answers back to the client, each dropped with probability `loss`.
pub struct LossyUdpRelay {
    pub listen: SocketAddr,
    /// The drop probability in millionths (1,000,000: an outage).
    loss_ppm: Arc<AtomicU64>,
    pub dropped: Arc<AtomicU64>,
    pub forwarded: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LossyUdpRelay {
    pub fn start(server: SocketAddr, loss: f64, seed: u64) -> anyhow::Result<LossyUdpRelay> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(20)))?;
        let listen = socket.local_addr()?;
        let (dropped, forwarded, stop) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let loss_ppm = Arc::new(AtomicU64::new((loss * 1e6) as u64));
        let thread = {
            let (dropped, forwarded, stop) = (Arc::clone(&dropped), Arc::clone(&forwarded), Arc::clone(&stop));
            let loss_ppm = Arc::clone(&loss_ppm);
            std::thread::spawn(move || {
                let mut rng = SeededRng::new(seed);
                let mut client: Option<SocketAddr> = None;
                let mut buffer = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((length, from)) = socket.recv_from(&mut buffer) else { continue };
                    let to = if from == server {
                        match client {
                            Some(client) => client,
                            None => continue,
                        }
                    } else {
                        client = Some(from);
                        server
                    };
                    if rng.chance(loss_ppm.load(Ordering::Relaxed) as f64 / 1e6) {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    } else if socket.send_to(&buffer[..length], to).is_ok() {
                        forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        Ok(LossyUdpRelay { listen, loss_ppm, dropped, forwarded, stop, thread: Some(thread) })
    }

    /// Changes the drop probability (1.0: nothing passes, an outage).
    pub fn set_loss(&self, loss: f64) {
        self.loss_ppm.store((loss * 1e6) as u64, Ordering::Relaxed);
    }
}

impl Drop for LossyUdpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

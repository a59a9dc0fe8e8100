//! Real kernels in the loop: the sender and the receiver in two network namespaces joined by a
//! veth pair (198.18.0.1 and 198.18.0.2, a benchmarking range that never leaves the namespaces),
//! with nftables blocking the reverse direction entirely, dropping 2 % then 10 % of datagrams at
//! random (`numgen random`), and a 5-second outage. The replica must end equal to the source, and
//! the counter on the receiver side's reverse-direction rule must read zero packets.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables); without them it says why and passes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diode_replica::Replica;
use diode_tests::lab::{LabOptions, expected_records, find_bin_dir, verify};

const SENDER_ADDRESS: &str = "198.18.0.1";
const RECEIVER_ADDRESS: &str = "198.18.0.2";
const PORT: u16 = 7400;

fn run(command: &[&str]) -> Result<String, String> {
    let output = Command::new(command[0]).args(&command[1..]).output().map_err(|e| format!("{}: {e}", command[0]))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!("{}: {}", command.join(" "), String::from_utf8_lossy(&output.stderr)))
    }
}

fn nft(namespace: &str, script: &str) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", namespace, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), script.as_bytes()).map_err(|e| e.to_string())?;
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if output.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&output.stderr).into_owned()) }
}

/// The two namespaces; removed on drop, whatever happened.
struct Namespaces {
    sender: String,
    receiver: String,
}

impl Namespaces {
    fn create() -> Result<Namespaces, String> {
        let id = std::process::id() % 100_000;
        let namespaces = Namespaces { sender: format!("diode-tx-{id}"), receiver: format!("diode-rx-{id}") };
        let (tx_link, rx_link) = (format!("dtx{id}"), format!("drx{id}"));
        run(&["ip", "netns", "add", &namespaces.sender])?;
        run(&["ip", "netns", "add", &namespaces.receiver])?;
        run(&["ip", "link", "add", &tx_link, "type", "veth", "peer", "name", &rx_link])?;
        run(&["ip", "link", "set", &tx_link, "netns", &namespaces.sender])?;
        run(&["ip", "link", "set", &rx_link, "netns", &namespaces.receiver])?;
        for (namespace, link, address) in
            [(&namespaces.sender, &tx_link, SENDER_ADDRESS), (&namespaces.receiver, &rx_link, RECEIVER_ADDRESS)]
        {
            let cidr = format!("{address}/30");
            run(&["ip", "-n", namespace, "addr", "add", &cidr, "dev", link])?;
            run(&["ip", "-n", namespace, "link", "set", link, "up"])?;
            run(&["ip", "-n", namespace, "link", "set", "lo", "up"])?;
        }
        Ok(namespaces)
    }

    /// Sender side: drop `per_thousand` of the datagrams toward the receiver, at random, and
    /// everything that would arrive from the receiver. Replaces the previous rules.
    fn sender_rules(&self, per_thousand: u32) -> Result<(), String> {
        let loss = if per_thousand >= 1000 {
            format!("ip daddr {RECEIVER_ADDRESS} counter drop")
        } else {
            format!("ip daddr {RECEIVER_ADDRESS} udp dport {PORT} numgen random mod 1000 < {per_thousand} counter drop")
        };
        nft(
            &self.sender,
            &format!(
                "table inet diode\ndelete table inet diode\ntable inet diode {{\n\
                 chain output {{ type filter hook output priority 0; policy accept; {loss}; }}\n\
                 chain input {{ type filter hook input priority 0; policy accept; ip saddr {RECEIVER_ADDRESS} counter drop; }}\n}}\n"
            ),
        )
    }

    /// Receiver side: the reverse direction is blocked and counted.
    fn receiver_rules(&self) -> Result<(), String> {
        nft(
            &self.receiver,
            &format!(
                "table inet diode {{\n chain output {{ type filter hook output priority 0; policy accept; \
                 ip daddr {SENDER_ADDRESS} counter drop; }}\n}}\n"
            ),
        )
    }

    fn reverse_packets(&self) -> u64 {
        first_counter(&self.receiver, "output")
    }

    /// Datagrams the sender side's loss rule has dropped since it was last replaced.
    fn dropped_datagrams(&self) -> u64 {
        first_counter(&self.sender, "output")
    }
}

fn first_counter(namespace: &str, chain: &str) -> u64 {
    let listing = run(&["ip", "netns", "exec", namespace, "nft", "list", "chain", "inet", "diode", chain])
        .expect("an nftables chain");
    let after = listing.split("counter packets ").nth(1).expect("a counter in the chain");
    after.split_whitespace().next().and_then(|n| n.parse().ok()).expect("a packet count")
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.sender]);
        let _ = run(&["ip", "netns", "del", &self.receiver]);
    }
}

fn prerequisites_missing() -> Option<String> {
    if run(&["id", "-u"]).map(|uid| uid.trim() != "0").unwrap_or(true) {
        return Some("not root".into());
    }
    for tool in ["ip", "nft"] {
        if run(&["sh", "-c", &format!("command -v {tool}")]).is_err() {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

fn spawn_in(namespace: &str, program: &Path, args: &[&str], log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new("ip")
        .args(["netns", "exec", namespace])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn in a namespace")
}

fn write_configs(dir: &Path, options: &LabOptions) {
    let sender = format!(
        "sender_id = 1\ndata_dir = \"sender-state\"\n[keys]\nsigning_key = \"keys/signing.key\"\nlink_key = \"keys/link.key\"\n\
         [link]\ndestination = \"{RECEIVER_ADDRESS}:{PORT}\"\nrate_mbit_s = 200.0\nrepair_overhead = 0.25\nbeacon_interval_ms = 500\n\
         [segments]\nmax_age_ms = 100\n[carousel]\nenabled = true\nwindow_segments = 100000\nrate_fraction = 0.2\n\
         [simulator]\nenabled = true\nseries = {series}\nrate_hz = {rate}\nseed = {seed}\nmax_records = {records}\nrealtime = true\nstart_ns = {start}\n",
        series = options.series,
        rate = options.rate_hz,
        seed = options.seed,
        records = options.max_records,
        start = options.start_ns,
    );
    std::fs::write(dir.join("sender.toml"), sender).expect("sender config");
    let receiver = format!(
        "replica_dir = \"replica\"\n[link]\nlisten = \"{RECEIVER_ADDRESS}:{PORT}\"\n[keys]\nlink_key = \"keys/link.key\"\n\
         [[keys.trusted]]\npublic_key = \"keys/signing.pub\"\n"
    );
    std::fs::write(dir.join("receiver.toml"), receiver).expect("receiver config");
}

fn points_in_replica(dir: &Path) -> u64 {
    Replica::open_read_only(&dir.join("replica")).map(|replica| replica.total_points()).unwrap_or(0)
}

#[test]
fn the_replica_converges_through_kernel_loss_and_an_outage_with_the_reverse_path_blocked() {
    if let Some(reason) = prerequisites_missing() {
        eprintln!("skipping the network-namespace test: {reason} (it needs root, iproute2 and nftables)");
        return;
    }
    let bin = find_bin_dir().expect("release binaries");
    let dir = tempfile::tempdir().unwrap();
    let namespaces = Namespaces::create().expect("network namespaces");
    namespaces.receiver_rules().expect("receiver rules");
    namespaces.sender_rules(20).expect("sender rules");
    let output =
        Command::new(bin.join("diode-sender")).args(["keygen", "--dir"]).arg(dir.path().join("keys")).output().unwrap();
    assert!(output.status.success());
    // 500 series at 20 Hz for 20 s of plant time, produced in real time.
    let start_ns = diode_receiver::time::now_ns();
    let options =
        LabOptions { series: 500, rate_hz: 20.0, max_records: 200_000, seed: 21, start_ns, ..LabOptions::default() };
    write_configs(dir.path(), &options);

    let config = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let mut receiver = spawn_in(
        &namespaces.receiver,
        &bin.join("diode-receiver"),
        &["run", "--config", &config("receiver.toml")],
        &dir.path().join("receiver.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !run(&["ip", "netns", "exec", &namespaces.receiver, "ss", "-Huln", "sport", "=", ":7400"])
        .is_ok_and(|s| !s.trim().is_empty())
    {
        assert!(Instant::now() < deadline, "the receiver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut sender = spawn_in(
        &namespaces.sender,
        &bin.join("diode-sender"),
        &["run", "--config", &config("sender.toml"), "--exit-when-done", "--linger-ms", "10000"],
        &dir.path().join("sender.log"),
    );
    let mut dropped = Vec::new();
    for (per_thousand, what) in [(100, "10 % loss"), (1000, "outage"), (0, "link restored")] {
        std::thread::sleep(Duration::from_secs(5));
        dropped.push(namespaces.dropped_datagrams());
        namespaces.sender_rules(per_thousand).expect(what);
    }
    eprintln!(
        "datagrams dropped by nftables: {} at 2 %, {} at 10 %, {} in the 5 s outage",
        dropped[0], dropped[1], dropped[2]
    );
    assert!(dropped.iter().all(|count| *count > 0), "nftables dropped nothing in some phase: {dropped:?}");

    let finished = sender.wait().unwrap();
    assert!(finished.success(), "sender failed; see {}", dir.path().join("sender.log").display());
    let deadline = Instant::now() + Duration::from_secs(30);
    while points_in_replica(dir.path()) < options.max_records && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("kill").args(["-TERM", &receiver.id().to_string()]).status();
    receiver.wait().unwrap();

    assert_eq!(namespaces.reverse_packets(), 0, "a packet left the receiver's namespace toward the sender");
    let replica = Replica::open_read_only(&dir.path().join("replica")).unwrap();
    let verification = verify(&replica, &expected_records(&options)).unwrap();
    assert!(verification.is_exact(), "{verification:?}; logs in {}", dir.path().display());
    assert!(replica.gaps().is_empty(), "gaps left: {:?}", replica.gaps());
}

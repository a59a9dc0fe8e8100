//! Real kernels in the loop: the sender and the receiver in two network namespaces joined by a
//! veth pair (198.18.0.1 and 198.18.0.2, a benchmarking range that never leaves the namespaces).
//!
//! - Convergence: nftables blocks the reverse direction entirely, drops 2 % then 10 % of datagrams
//!   at random (`numgen random`), then everything for 5 seconds. The replica must end equal to the
//!   source, and the counter on the receiver side's reverse-direction rule must read zero packets.
//! - Link silence: the shipped rule files (`config/diode-receiver.nft`, `config/diode-sender.nft`)
//!   loaded with the test's interface names, and a counter on the sender's interface ingress (ahead
//!   of the sender's own drop rule) must read zero frames of any kind across everything that makes
//!   a kernel talk: datagrams to a stopped receiver (ICMP port unreachable, shown to arrive before
//!   the rules are loaded), a datagram to another port, an ARP request, IPv6 switched on
//!   (neighbour and router solicitations, MLD reports), and a receiver restart mid-stream.
//!
//! Needs root, `ip` (iproute2), `nft` (nftables), `sysctl` and `bash`; without them it says why and
//! passes.

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
    /// The veth ends: in the sender's namespace and in the receiver's.
    sender_link: String,
    receiver_link: String,
}

/// How the link is set up.
#[derive(Clone, Copy, PartialEq)]
enum Link {
    /// As the kernel comes: IPv6 on, neighbours found with ARP.
    Default,
    /// Nothing the kernel says unprompted: IPv6 off on both ends, and permanent neighbour entries
    /// both ways (a diode link has no ARP), so every frame on the wire has a cause the test made.
    Quiet,
}

const SENDER_MAC: &str = "02:00:c6:12:00:01";
const RECEIVER_MAC: &str = "02:00:c6:12:00:02";

impl Namespaces {
    /// `tag` keeps the names of tests running at the same time apart.
    fn create(tag: &str, link: Link) -> Result<Namespaces, String> {
        let id = std::process::id() % 100_000;
        let namespaces = Namespaces {
            sender: format!("diode-{tag}tx-{id}"),
            receiver: format!("diode-{tag}rx-{id}"),
            sender_link: format!("d{tag}tx{id}"),
            receiver_link: format!("d{tag}rx{id}"),
        };
        let (tx_link, rx_link) = (&namespaces.sender_link, &namespaces.receiver_link);
        run(&["ip", "netns", "add", &namespaces.sender])?;
        run(&["ip", "netns", "add", &namespaces.receiver])?;
        run(&[
            "ip",
            "link",
            "add",
            tx_link,
            "address",
            SENDER_MAC,
            "type",
            "veth",
            "peer",
            "name",
            rx_link,
            "address",
            RECEIVER_MAC,
        ])?;
        run(&["ip", "link", "set", tx_link, "netns", &namespaces.sender])?;
        run(&["ip", "link", "set", rx_link, "netns", &namespaces.receiver])?;
        for (namespace, link_name, address, peer, peer_mac) in [
            (&namespaces.sender, tx_link, SENDER_ADDRESS, RECEIVER_ADDRESS, RECEIVER_MAC),
            (&namespaces.receiver, rx_link, RECEIVER_ADDRESS, SENDER_ADDRESS, SENDER_MAC),
        ] {
            if link == Link::Quiet {
                set_ipv6(namespace, link_name, false)?;
            }
            let cidr = format!("{address}/30");
            run(&["ip", "-n", namespace, "addr", "add", &cidr, "dev", link_name])?;
            if link == Link::Quiet {
                let lladdr = ["ip", "-n", namespace, "neigh", "replace", peer, "lladdr", peer_mac];
                run(&[&lladdr[..], &["dev", link_name, "nud", "permanent"]].concat())?;
            }
            run(&["ip", "-n", namespace, "link", "set", link_name, "up"])?;
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
    counters(namespace, "inet diode", chain)[0]
}

/// The packet counts of a chain's counters, in rule order.
fn counters(namespace: &str, table: &str, chain: &str) -> Vec<u64> {
    let mut command = vec!["ip", "netns", "exec", namespace, "nft", "list", "chain"];
    command.extend(table.split(' '));
    command.push(chain);
    let listing = run(&command).expect("an nftables chain");
    let counts: Vec<u64> = listing
        .split("counter packets ")
        .skip(1)
        .map(|after| after.split_whitespace().next().and_then(|n| n.parse().ok()).expect("a packet count"))
        .collect();
    assert!(!counts.is_empty(), "no counter in {table} {chain}");
    counts
}

fn set_ipv6(namespace: &str, link: &str, enabled: bool) -> Result<(), String> {
    let setting = format!("net.ipv6.conf.{link}.disable_ipv6={}", u8::from(!enabled));
    run(&["ip", "netns", "exec", namespace, "sysctl", "-q", "-w", &setting]).map(drop)
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
    for tool in ["ip", "nft", "sysctl", "bash"] {
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

/// Polls (every 50 ms, up to `seconds`) until `condition` holds; panics with `what` otherwise.
fn wait_for(seconds: u64, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !condition() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_until_listening(namespace: &str) {
    let port = format!(":{PORT}");
    wait_for(20, "the receiver did not start", || {
        run(&["ip", "netns", "exec", namespace, "ss", "-Huln", "sport", "=", &port]).is_ok_and(|s| !s.trim().is_empty())
    });
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
    let namespaces = Namespaces::create("", Link::Default).expect("network namespaces");
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
    wait_until_listening(&namespaces.receiver);
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

/// A shipped rule file from `config/`, its `define` lines set for this test's link.
fn shipped_rules(file: &str, defines: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut set = 0;
    let mut rules = String::new();
    for line in text.lines() {
        match defines.iter().find(|(name, _)| line.starts_with(&format!("define {name} "))) {
            Some((name, value)) => {
                rules.push_str(&format!("define {name} = {value}\n"));
                set += 1;
            }
            None => rules.push_str(&format!("{line}\n")),
        }
    }
    assert_eq!(set, defines.len(), "{file} must have one `define` line for each of {defines:?}");
    rules
}

impl Namespaces {
    /// Counters ahead of everything else on both ends of the link (priority -300; the shipped
    /// rules use `filter`, 0): sender ingress (all frames, ICMP), receiver ingress (ARP) and
    /// receiver egress (all frames, ICMP, IPv6). Reloading starts them from zero.
    fn watch(&self) -> Result<(), String> {
        let hook = |hook: &str, device: &str| {
            format!("type filter hook {hook} device \"{device}\" priority -300; policy accept;")
        };
        let replace = "table netdev diode_watch\ndelete table netdev diode_watch\n";
        nft(
            &self.sender,
            &format!(
                "{replace}table netdev diode_watch {{\n chain ingress {{ {}\n  counter\n  meta l4proto icmp counter\n }}\n}}\n",
                hook("ingress", &self.sender_link)
            ),
        )?;
        nft(
            &self.receiver,
            &format!(
                "{replace}table netdev diode_watch {{\n chain ingress {{ {}\n  ether type arp counter\n }}\n \
                 chain egress {{ {}\n  counter\n  meta l4proto icmp counter\n  meta protocol ip6 counter\n }}\n}}\n",
                hook("ingress", &self.receiver_link),
                hook("egress", &self.receiver_link)
            ),
        )
    }

    /// Frames arriving on the sender's interface: all, ICMP.
    fn arrived_at_sender(&self) -> (u64, u64) {
        let counts = counters(&self.sender, "netdev diode_watch", "ingress");
        (counts[0], counts[1])
    }

    /// Frames the receiver's kernel tried to send on the link: all, ICMP, IPv6.
    fn receiver_kernel_sent(&self) -> (u64, u64, u64) {
        let counts = counters(&self.receiver, "netdev diode_watch", "egress");
        (counts[0], counts[1], counts[2])
    }

    fn arp_arrived_at_receiver(&self) -> u64 {
        counters(&self.receiver, "netdev diode_watch", "ingress")[0]
    }

    /// The shipped files, loaded with this test's interface names and port.
    fn load_shipped_rules(&self) -> Result<(), String> {
        let quoted = |link: &str| format!("\"{link}\"");
        let receiver = shipped_rules(
            "diode-receiver.nft",
            &[("LINK_IF", quoted(&self.receiver_link)), ("LISTEN_PORT", PORT.to_string())],
        );
        nft(&self.receiver, &receiver)?;
        nft(&self.sender, &shipped_rules("diode-sender.nft", &[("LINK_IF", quoted(&self.sender_link))]))
    }

    /// The shipped receiver table's counters: datagrams accepted, frames dropped on arrival,
    /// frames dropped on the way out.
    fn receiver_table(&self) -> (u64, u64, u64) {
        let ingress = counters(&self.receiver, "netdev diode_receiver", "ingress");
        let egress = counters(&self.receiver, "netdev diode_receiver", "egress");
        (ingress[0], ingress[1], egress[0])
    }

    /// One UDP datagram from the sender's namespace to the receiver's address.
    fn probe(&self, port: u16) {
        let script = format!("echo probe > /dev/udp/{RECEIVER_ADDRESS}/{port}");
        run(&["ip", "netns", "exec", &self.sender, "bash", "-c", &script]).expect("a probe datagram");
    }
}

#[test]
fn the_receivers_kernel_sends_nothing_toward_the_sender_with_the_shipped_rules() {
    if let Some(reason) = prerequisites_missing() {
        eprintln!("skipping the link-silence test: {reason} (it needs root, iproute2, nftables, sysctl and bash)");
        return;
    }
    let bin = find_bin_dir().expect("release binaries");
    let dir = tempfile::tempdir().unwrap();
    let namespaces = Namespaces::create("q", Link::Quiet).expect("network namespaces");
    namespaces.watch().expect("watch counters");

    // Without the receiver's rules, a datagram to a port nobody listens on is answered.
    namespaces.probe(PORT);
    wait_for(10, "no ICMP came back without the rules", || namespaces.arrived_at_sender().1 >= 1);
    let before = namespaces.arrived_at_sender();
    assert_eq!(before.0, before.1, "on the quiet link only the ICMP answers should arrive");

    // From here on, with the shipped rules, nothing may arrive on the sender's interface.
    namespaces.load_shipped_rules().expect("the shipped nftables rules load");
    namespaces.watch().expect("watch counters, from zero");
    // A datagram to another port: dropped on arrival (without the rules: ICMP port unreachable).
    namespaces.probe(PORT + 1);
    wait_for(10, "the datagram to another port did not arrive", || namespaces.receiver_table().1 >= 1);
    // The sender asks for the receiver's address with ARP: the request arrives, no reply leaves.
    run(&["ip", "-n", &namespaces.sender, "neigh", "del", RECEIVER_ADDRESS, "dev", &namespaces.sender_link]).unwrap();
    namespaces.probe(PORT + 1);
    wait_for(10, "no ARP request reached the receiver", || namespaces.arp_arrived_at_receiver() >= 1);
    let permanent = ["neigh", "replace", RECEIVER_ADDRESS, "lladdr", RECEIVER_MAC, "nud", "permanent"];
    run(&[&["ip", "-n", &namespaces.sender][..], &permanent, &["dev", &namespaces.sender_link]].concat()).unwrap();
    // IPv6 on the receiver's link: duplicate address detection, MLD reports, router solicitations.
    set_ipv6(&namespaces.receiver, &namespaces.receiver_link, true).unwrap();
    wait_for(10, "the receiver's kernel sent no IPv6", || namespaces.receiver_kernel_sent().2 >= 1);

    // A real run across a receiver restart; while it is stopped, the sender's datagrams keep coming.
    let output =
        Command::new(bin.join("diode-sender")).args(["keygen", "--dir"]).arg(dir.path().join("keys")).output().unwrap();
    assert!(output.status.success());
    // 100 series at 20 Hz for 10 s of plant time, produced in real time.
    let start_ns = diode_receiver::time::now_ns();
    let options =
        LabOptions { series: 100, rate_hz: 20.0, max_records: 20_000, seed: 33, start_ns, ..LabOptions::default() };
    write_configs(dir.path(), &options);
    let config = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let start_receiver = |log: &str| {
        let receiver = spawn_in(
            &namespaces.receiver,
            &bin.join("diode-receiver"),
            &["run", "--config", &config("receiver.toml")],
            &dir.path().join(log),
        );
        wait_until_listening(&namespaces.receiver);
        receiver
    };
    let stop = |mut receiver: Child| {
        let _ = Command::new("kill").args(["-TERM", &receiver.id().to_string()]).status();
        receiver.wait().unwrap();
    };
    let receiver = start_receiver("receiver.log");
    let mut sender = spawn_in(
        &namespaces.sender,
        &bin.join("diode-sender"),
        &["run", "--config", &config("sender.toml"), "--exit-when-done", "--linger-ms", "5000"],
        &dir.path().join("sender.log"),
    );
    wait_for(30, "nothing reached the replica", || points_in_replica(dir.path()) > 0);
    stop(receiver);
    let (accepted_at_stop, _, _) = namespaces.receiver_table();
    let (_, icmp_at_stop, _) = namespaces.receiver_kernel_sent();
    wait_for(20, "too few datagrams reached the stopped receiver", || {
        namespaces.receiver_table().0 >= accepted_at_stop + 20
    });
    wait_for(20, "the kernel never tried to answer the stopped receiver's datagrams", || {
        namespaces.receiver_kernel_sent().1 > icmp_at_stop
    });
    let receiver = start_receiver("receiver-restarted.log");
    let finished = sender.wait().unwrap();
    assert!(finished.success(), "sender failed; see {}", dir.path().join("sender.log").display());
    let deadline = Instant::now() + Duration::from_secs(30);
    while points_in_replica(dir.path()) < options.max_records && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop(receiver);

    let (arrived, _) = namespaces.arrived_at_sender();
    let (tried, tried_icmp, tried_ipv6) = namespaces.receiver_kernel_sent();
    let (accepted, dropped_arriving, dropped_leaving) = namespaces.receiver_table();
    eprintln!(
        "without the rules: {} ICMP frames arrived at the sender for one datagram; with them: {arrived} frames \
         arrived, while the receiver's kernel tried to send {tried} ({tried_icmp} ICMP, {tried_ipv6} IPv6) and the \
         egress chain dropped {dropped_leaving}; {accepted} datagrams accepted, {dropped_arriving} other frames \
         dropped on arrival",
        before.1
    );
    assert_eq!(arrived, 0, "frames arrived on the sender's interface with the shipped rules loaded");
    assert_eq!(dropped_leaving, tried, "the shipped egress chain must drop every frame the kernel tried to send");
    assert_eq!(counters(&namespaces.sender, "netdev diode_sender", "ingress")[0], 0);
    let replica = Replica::open_read_only(&dir.path().join("replica")).unwrap();
    let verification = verify(&replica, &expected_records(&options)).unwrap();
    assert!(verification.is_exact(), "{verification:?}; logs in {}", dir.path().display());
    assert!(replica.gaps().is_empty(), "gaps left: {:?}", replica.gaps());
}

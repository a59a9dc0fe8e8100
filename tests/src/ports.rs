//! Loopback ports for the servers the tests start as child processes.
//!
//! A port the kernel picks for `bind(127.0.0.1:0)` comes from its ephemeral range, the range it
//! also takes the local port of every outgoing connection from. Between the moment a test frees
//! such a port and the moment its child binds it, any client connection on the machine may take
//! it, and so may the test's own polling of the not-yet-listening port (a loopback connection to
//! a port in that range can be given that same port as its source, and connects to itself). The
//! child's bind then fails. The ports here come from outside the ephemeral range (below it, or
//! above it where the machine's operator moved it down), where the kernel never picks a port by
//! itself, and are checked free for both TCP and UDP when handed out; the
//! only remaining race is with another test process's choice, which starts elsewhere in the
//! range (it depends on the process id) and is told apart by the child's "cannot listen" error.
//!
//! Also compiled into `receiver/tests/sinks_common` (`#[path]`), which cannot depend on this crate.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out: above the ports services are commonly configured on.
const LOWEST: u32 = 20_000;
/// Where the kernel's ephemeral range starts when `/proc` does not say (Linux's default).
const DEFAULT_EPHEMERAL_LOW: u32 = 32_768;
/// Where the kernel's ephemeral range ends when `/proc` does not say (Linux's default).
const DEFAULT_EPHEMERAL_HIGH: u32 = 60_999;
/// The step between successive candidates: a prime larger than any span of ports, so the walk
/// visits every port of the span once before it repeats one.
const STRIDE: u64 = 104_729;

/// Candidates handed out by this process so far; with the process id, where the next one is.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The kernel's ephemeral range (`net.ipv4.ip_local_port_range`), first and last port.
fn ephemeral_range() -> (u32, u32) {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut ports = text.split_whitespace().map(|port| port.parse().ok());
    match (ports.next().flatten(), ports.next().flatten()) {
        (Some(low), Some(high)) => (low, high),
        _ => (DEFAULT_EPHEMERAL_LOW, DEFAULT_EPHEMERAL_HIGH),
    }
}

/// A loopback port free for both TCP and UDP now, outside the kernel's ephemeral range, never
/// handed out before by this process.
pub fn free_port() -> u16 {
    // Below the ephemeral range; above it when the machine's operator moved the range down.
    let (low, high) = match ephemeral_range() {
        (ephemeral_low, _) if ephemeral_low > LOWEST + 1_000 => (LOWEST, ephemeral_low),
        (_, ephemeral_high) if ephemeral_high + 1_000 < 65_535 => (ephemeral_high + 1, 65_536),
        // No room outside it: anywhere above the common service ports.
        _ => (LOWEST, 65_536),
    };
    let span = u64::from(high - low);
    // Successive processes start far apart, and each walks its own sequence.
    let start = u64::from(std::process::id()) * 7_919 % span;
    for _ in 0..span {
        let n = u64::from(NEXT.fetch_add(1, Ordering::Relaxed));
        let port = (u64::from(low) + (start + n * STRIDE) % span) as u16;
        let free = TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}");
}

/// [`free_port`] as a loopback address.
pub fn free_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

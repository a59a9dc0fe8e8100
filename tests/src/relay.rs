//! A lossy UDP relay on loopback: sits between diode-sender and diode-receiver and drops,
//! delays (reorders) and duplicates datagrams on purpose, with a seed, so FEC, the carousel and
//! gap handling can be seen working and measured. It forwards in one direction only.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use diode_common::rng::SeededRng;

/// What the relay does to the datagrams it carries.
#[derive(Debug, Clone, Default)]
pub struct LossModel {
    pub seed: u64,
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram is held back and sent after the next few (reordering).
    pub reorder: f64,
    /// Probability that a datagram is sent twice.
    pub duplicate: f64,
    /// Every `burst_every` datagrams, drop `burst_length` in a row (0: no bursts).
    pub burst_every: u64,
    pub burst_length: u64,
}

#[derive(Debug, Default)]
pub struct RelayCounters {
    pub received: AtomicU64,
    pub forwarded: AtomicU64,
    /// UDP payload bytes received from the sender.
    pub bytes_received: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub reordered: AtomicU64,
}

pub struct Relay {
    pub listen: SocketAddr,
    pub counters: Arc<RelayCounters>,
    /// While set, every datagram is dropped (an outage).
    pub outage: Arc<AtomicBool>,
    /// While `Some`, a copy of every datagram received (up to its capacity), as an attacker on
    /// the link segment would capture them for a replay.
    pub capture: Arc<Mutex<Option<Capture>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    model: Arc<Mutex<LossModel>>,
}

/// Datagrams copied off the link, in arrival order.
#[derive(Debug, Default)]
pub struct Capture {
    pub datagrams: Vec<Vec<u8>>,
    pub capacity: usize,
}

impl Relay {
    /// Starts relaying from a free loopback port to `forward_to`.
    pub fn start(forward_to: SocketAddr, model: LossModel) -> std::io::Result<Relay> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        // A large buffer, so a relay thread descheduled for a moment on a busy machine does not
        // add kernel drops to the loss it was asked for.
        socket.set_recv_buffer_size(16 * 1024 * 1024)?;
        socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
        let socket: UdpSocket = socket.into();
        socket.set_read_timeout(Some(Duration::from_millis(20)))?;
        let listen = socket.local_addr()?;
        let counters = Arc::new(RelayCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let outage = Arc::new(AtomicBool::new(false));
        let model = Arc::new(Mutex::new(model));
        let capture = Arc::new(Mutex::new(None));
        let thread = {
            let (counters, stop, outage, model, capture) = (
                Arc::clone(&counters),
                Arc::clone(&stop),
                Arc::clone(&outage),
                Arc::clone(&model),
                Arc::clone(&capture),
            );
            thread::spawn(move || {
                let link = Link { forward_to, model: &model, counters: &counters, stop: &stop, outage: &outage };
                relay_loop(socket, &link, &capture)
            })
        };
        Ok(Relay { listen, counters, outage, capture, stop, thread: Some(thread), model })
    }

    /// Starts copying every datagram received, up to `capacity` of them.
    pub fn start_capture(&self, capacity: usize) {
        *self.capture.lock().expect("capture lock") = Some(Capture { datagrams: Vec::new(), capacity });
    }

    /// Stops copying and returns what was copied.
    pub fn take_capture(&self) -> Vec<Vec<u8>> {
        self.capture.lock().expect("capture lock").take().map(|capture| capture.datagrams).unwrap_or_default()
    }

    /// Changes the loss model while running (the seed continues).
    pub fn set_loss(&self, loss: f64) {
        self.model.lock().expect("model lock").loss = loss;
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where the relay forwards to and what steers it.
struct Link<'a> {
    forward_to: SocketAddr,
    model: &'a Mutex<LossModel>,
    counters: &'a RelayCounters,
    stop: &'a AtomicBool,
    outage: &'a AtomicBool,
}

fn relay_loop(socket: UdpSocket, link: &Link<'_>, capture: &Mutex<Option<Capture>>) {
    let Link { forward_to, model, counters, stop, outage } = *link;
    let out = UdpSocket::bind("127.0.0.1:0").expect("a loopback socket for the relay");
    let seed = model.lock().expect("model lock").seed;
    let mut rng = SeededRng::new(seed);
    let mut buffer = vec![0u8; 65_536];
    let mut held: Vec<(Vec<u8>, u32)> = Vec::new();
    let mut index = 0u64;
    let mut last_activity = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let length = match socket.recv(&mut buffer) {
            Ok(length) => length,
            Err(_) => {
                // Idle: release anything held back so nothing is delayed forever.
                if last_activity.elapsed() > Duration::from_millis(20) {
                    for (datagram, _) in held.drain(..) {
                        send(&out, &datagram, forward_to, counters);
                    }
                }
                continue;
            }
        };
        last_activity = Instant::now();
        counters.received.fetch_add(1, Ordering::Relaxed);
        counters.bytes_received.fetch_add(length as u64, Ordering::Relaxed);
        if let Some(capture) = capture.lock().expect("capture lock").as_mut()
            && capture.datagrams.len() < capture.capacity
        {
            capture.datagrams.push(buffer[..length].to_vec());
        }
        index += 1;
        let model = model.lock().expect("model lock").clone();
        let in_burst = model.burst_every > 0 && index % model.burst_every < model.burst_length;
        if outage.load(Ordering::Relaxed) || in_burst || rng.chance(model.loss) {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
        } else if rng.chance(model.reorder) {
            counters.reordered.fetch_add(1, Ordering::Relaxed);
            held.push((buffer[..length].to_vec(), 1 + rng.below(8) as u32));
        } else {
            send(&out, &buffer[..length], forward_to, counters);
            if rng.chance(model.duplicate) {
                counters.duplicated.fetch_add(1, Ordering::Relaxed);
                send(&out, &buffer[..length], forward_to, counters);
            }
        }
        // Held datagrams go out after a few others have passed them.
        let mut still_held = Vec::with_capacity(held.len());
        for (datagram, remaining) in held.drain(..) {
            if remaining <= 1 {
                send(&out, &datagram, forward_to, counters);
            } else {
                still_held.push((datagram, remaining - 1));
            }
        }
        held = still_held;
    }
}

fn send(out: &UdpSocket, datagram: &[u8], to: SocketAddr, counters: &RelayCounters) {
    if out.send_to(datagram, to).is_ok() {
        counters.forwarded.fetch_add(1, Ordering::Relaxed);
    }
}

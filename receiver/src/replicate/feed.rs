//! What the apply thread, the replication tasks and the HTTP routes share about replication: the
//! feed of applied segments and each connection's figures. A leaf of the receiver's modules (it
//! imports neither the shared state nor the threads), so the state can hold it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::locks;

/// A segment the apply thread has just stored, as the upstream's connections push it.
#[derive(Debug, Clone)]
pub struct AppliedSegment {
    /// The sender's id, from the segment's header.
    pub sender_id: u64,
    /// The sender's epoch, from the segment's header.
    pub epoch: u64,
    /// The segment's sequence within its (sender id, epoch) stream, from 1.
    pub sequence: u64,
    /// The sealed bytes, exactly as stored in the audit log.
    pub sealed: Arc<[u8]>,
}

/// Replication state of a running receiver, shared by the apply thread, the replication tasks and
/// the HTTP routes. Empty (and free) on a receiver that neither serves nor has an upstream.
#[derive(Default)]
pub struct Replication {
    /// Set when the receiver serves downstreams: every applied segment is published here. Sending
    /// never blocks; a connection that falls more than the channel's capacity behind catches up
    /// from the audit log instead.
    feed: OnceLock<broadcast::Sender<AppliedSegment>>,
    /// The downstreams connected now (upstream side), by connection number.
    pub downstreams: Mutex<BTreeMap<u64, Arc<DownstreamConnection>>>,
    /// The link to this receiver's upstream (downstream side), if it has one.
    pub upstream: OnceLock<Arc<UpstreamLink>>,
}

impl Replication {
    /// Starts the feed with room for `capacity` segments and returns its sender.
    pub fn start_feed(&self, capacity: usize) -> broadcast::Sender<AppliedSegment> {
        self.feed.get_or_init(|| broadcast::channel(capacity).0).clone()
    }

    /// Publishes a segment just applied, if the receiver serves; never blocks. `make` runs only
    /// when someone may listen.
    pub fn publish(&self, make: impl FnOnce() -> AppliedSegment) {
        if let Some(feed) = self.feed.get()
            && feed.receiver_count() > 0
        {
            // An error means every receiver left in the meantime: nothing to do.
            let _ = feed.send(make());
        }
    }

    /// Prometheus lines for every connection (both sides).
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        let downstreams: Vec<_> = locks::lock(&self.downstreams).values().cloned().collect();
        if self.feed.get().is_some() {
            out.push_str(
                "# HELP diode_receiver_replication_downstreams Downstream receivers connected now.\n\
                 # TYPE diode_receiver_replication_downstreams gauge\n",
            );
            let _ = writeln!(out, "diode_receiver_replication_downstreams {}", downstreams.len());
            let gauges: [(&str, &str, ConnectionGauge); 5] = [
                ("segments_sent", "Segments sent to the downstream on this connection.", |c| {
                    c.segments_sent.load(Ordering::Relaxed)
                }),
                ("bytes_sent", "Segment bytes sent to the downstream on this connection.", |c| {
                    c.bytes_sent.load(Ordering::Relaxed)
                }),
                ("downstream_segments", "Segments in the downstream's replica, as it last reported.", |c| {
                    c.downstream_segments.load(Ordering::Relaxed)
                }),
                ("downstream_refused", "Segments the downstream refused (signature, hash, chain).", |c| {
                    c.downstream_refused.load(Ordering::Relaxed)
                }),
                ("lag_segments", "Segments of this replica the downstream does not report holding.", |c| {
                    c.lag_segments.load(Ordering::Relaxed)
                }),
            ];
            for (name, help, value) in gauges {
                let _ = writeln!(
                    out,
                    "# HELP diode_receiver_replication_{name} {help}\n# TYPE diode_receiver_replication_{name} gauge"
                );
                for connection in &downstreams {
                    let _ = writeln!(
                        out,
                        "diode_receiver_replication_{name}{{peer=\"{}\",name=\"{}\"}} {}",
                        connection.peer,
                        connection.name,
                        value(connection)
                    );
                }
            }
        }
        if let Some(link) = self.upstream.get() {
            let values = [
                ("connected", "1 while connected to the upstream.", u64::from(link.connected.load(Ordering::Relaxed))),
                (
                    "segments_received",
                    "Segments received from the upstream.",
                    link.segments_received.load(Ordering::Relaxed),
                ),
                (
                    "bytes_received",
                    "Segment bytes received from the upstream.",
                    link.bytes_received.load(Ordering::Relaxed),
                ),
                (
                    "connects",
                    "Connections to the upstream made (the first one and every reconnect).",
                    link.connects.load(Ordering::Relaxed),
                ),
                (
                    "connect_failures",
                    "Connection attempts or connections to the upstream that failed.",
                    link.failures.load(Ordering::Relaxed),
                ),
            ];
            for (name, help, value) in values {
                let _ = writeln!(
                    out,
                    "# HELP diode_receiver_upstream_{name} {help}\n# TYPE diode_receiver_upstream_{name} gauge\n\
                     diode_receiver_upstream_{name}{{upstream=\"{}\"}} {value}",
                    link.address
                );
            }
        }
        out
    }

    /// The connections of both sides, for `/api/v1/replication` and `/api/v1/status`.
    pub fn status_json(&self) -> Value {
        let downstreams: Vec<Value> =
            locks::lock(&self.downstreams).values().map(|connection| connection.to_json()).collect();
        let upstream = self.upstream.get().map(|link| link.to_json());
        json!({ "serving": self.feed.get().is_some(), "downstreams": downstreams, "upstream": upstream })
    }
}

/// How one per-connection gauge is read.
type ConnectionGauge = fn(&DownstreamConnection) -> u64;

/// One downstream connected to this receiver.
#[derive(Debug)]
pub struct DownstreamConnection {
    /// The downstream's address and port, as QUIC sees it.
    pub peer: SocketAddr,
    /// The name the downstream gave in its hello.
    pub name: String,
    /// When the downstream's hello was accepted, ns since the Unix epoch.
    pub connected_at_ns: i64,
    /// Segments sent on this connection, catch-up and live.
    pub segments_sent: AtomicU64,
    /// Sealed segment bytes sent on this connection, without framing.
    pub bytes_sent: AtomicU64,
    /// Times the connection fell behind the live feed and caught up from the audit log.
    pub catch_ups: AtomicU64,
    /// Segments in the downstream's replica, from its last `Progress`.
    pub downstream_segments: AtomicU64,
    /// Points in the downstream's replica, from its last `Progress`.
    pub downstream_points: AtomicU64,
    /// Segments the downstream refused since it started (signature, hash, chain), from its last
    /// `Progress`; a rising count means it does not trust what this receiver sends.
    pub downstream_refused: AtomicU64,
    /// This replica's segments minus the downstream's, when it last reported (saturating).
    pub lag_segments: AtomicU64,
    /// When the last `Progress` arrived, ns since the Unix epoch; 0 before the first.
    pub last_progress_ns: AtomicI64,
}

impl DownstreamConnection {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "peer": self.peer.to_string(),
            "name": self.name,
            "connected_at_ns": self.connected_at_ns,
            "segments_sent": self.segments_sent.load(Ordering::Relaxed),
            "bytes_sent": self.bytes_sent.load(Ordering::Relaxed),
            "catch_ups": self.catch_ups.load(Ordering::Relaxed),
            "position": {
                "segments": self.downstream_segments.load(Ordering::Relaxed),
                "points": self.downstream_points.load(Ordering::Relaxed),
                "refused": self.downstream_refused.load(Ordering::Relaxed),
                "reported_at_ns": self.last_progress_ns.load(Ordering::Relaxed),
            },
            "lag_segments": self.lag_segments.load(Ordering::Relaxed),
        })
    }
}

/// This receiver's link to its upstream.
#[derive(Debug)]
pub struct UpstreamLink {
    /// The upstream's address, `[upstream] address`.
    pub address: SocketAddr,
    /// Whether a connection is up and welcomed now.
    pub connected: AtomicBool,
    /// Segments received from the upstream since start, over every connection.
    pub segments_received: AtomicU64,
    /// Sealed segment bytes received from the upstream since start, without framing.
    pub bytes_received: AtomicU64,
    /// Connections made: the first one and every reconnect.
    pub connects: AtomicU64,
    /// Connection attempts that failed and connections that ended in an error.
    pub failures: AtomicU64,
    /// Why the last attempt or connection failed, for status; cleared once a connection is
    /// welcomed.
    pub last_error: Mutex<Option<String>>,
}

impl UpstreamLink {
    /// A link to `address`, not yet connected, every count 0.
    pub fn new(address: SocketAddr) -> UpstreamLink {
        UpstreamLink {
            address,
            connected: AtomicBool::new(false),
            segments_received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "address": self.address.to_string(),
            "connected": self.connected.load(Ordering::Relaxed),
            "segments_received": self.segments_received.load(Ordering::Relaxed),
            "bytes_received": self.bytes_received.load(Ordering::Relaxed),
            "connects": self.connects.load(Ordering::Relaxed),
            "failures": self.failures.load(Ordering::Relaxed),
            "last_error": *locks::lock(&self.last_error),
        })
    }
}

//! What the running receiver's threads and HTTP routes share: the counters, the rate-limited log,
//! the replica behind its lock and the stop flag ([`Shared`]); and what every HTTP route gets
//! ([`AppState`]), with the bearer-token check of the API routes ([`authorised`]).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use diode_common::beacon::Beacon;
use diode_replica::Replica;

use crate::counters::{RateLimitedLog, ReceiverCounters};

/// The state of a running receiver, shared by the receive and apply threads and the HTTP routes.
pub struct Shared {
    /// Every counter the metrics show; the receive and apply threads add to them.
    pub counters: ReceiverCounters,
    /// Rate-limited logging of refused input, per reason.
    pub log: RateLimitedLog,
    /// The replica: the apply thread writes, routes read.
    pub replica: RwLock<Replica>,
    /// Set to stop the threads (on a signal, or when one of them fails).
    pub stop: AtomicBool,
    /// Verified beacons waiting for the apply thread: the newest per sender only, so beacons never
    /// take a place in the segment queue and a flood of them costs one slot per sender.
    pub beacons: Mutex<BTreeMap<u64, VerifiedBeacon>>,
    /// Replication over QUIC: the feed of applied segments and each connection's status.
    pub replication: crate::replicate::feed::Replication,
    /// `replica.merge_quiet_s`: how long a closed hour must go unwritten before it is merged.
    pub merge_quiet_s: u32,
    /// `reassembly.apply_queue_mib` in bytes: a completed segment that would take the queue
    /// beyond it is shed (a segment alone is always taken).
    pub apply_queue_limit_bytes: u64,
}

impl Shared {
    /// A receiver's state before anything has run: zero counters, nothing waiting, no replication
    /// connection, serving `replica`.
    pub fn new(replica: Replica) -> Shared {
        Shared {
            counters: ReceiverCounters::default(),
            log: RateLimitedLog::default(),
            replica: RwLock::new(replica),
            stop: AtomicBool::new(false),
            beacons: Mutex::new(BTreeMap::new()),
            replication: crate::replicate::feed::Replication::default(),
            merge_quiet_s: crate::config::ReplicaSettings::default().merge_quiet_s,
            apply_queue_limit_bytes: (crate::config::ReassemblyConfig::default().apply_queue_mib as u64) << 20,
        }
    }
}

/// Work for the apply thread. Beacons do not come this way: they wait in [`Shared::beacons`].
pub enum Work {
    /// A reassembled segment whose datagrams' MACs checked out; signature and chain are checked
    /// by the apply thread.
    Segment {
        /// The sealed segment: header ‖ signature ‖ payload.
        bytes: Vec<u8>,
        /// Some of its original symbols were rebuilt from repair symbols (counted).
        recovered_by_fec: bool,
    },
}

impl Work {
    /// Bytes this work holds, as the apply queue's byte bound counts them.
    pub fn bytes(&self) -> u64 {
        match self {
            Work::Segment { bytes, .. } => bytes.len() as u64,
        }
    }
}

/// A beacon whose signature checked out, with the signed bytes kept for audits.
pub struct VerifiedBeacon {
    /// What it says.
    pub beacon: Beacon,
    /// Its signed bytes.
    pub raw: Vec<u8>,
}

/// What every route gets: the running receiver's shared state and the optional bearer token.
#[derive(Clone)]
pub struct AppState {
    /// The running receiver.
    pub shared: Arc<Shared>,
    /// `http.bearer_token`: when set, API routes require it.
    pub token: Option<Arc<str>>,
}

/// `Ok` when no token is configured or the request carries it; otherwise the 401 to return.
#[allow(clippy::result_large_err)] // the error is the response itself, returned at once
pub fn authorised(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = &state.token else { return Ok(()) };
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if diode_common::keys::constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err((StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({"error": "missing or wrong bearer token"})))
            .into_response()),
    }
}

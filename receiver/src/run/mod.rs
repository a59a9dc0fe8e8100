//! `diode-receiver run`: the receive thread rebuilds segments from datagrams, the apply thread
//! verifies and applies them, each sink's thread follows the replica (`crate::sinks`), and the
//! HTTP listener serves metrics, status and queries. This module
//! only starts them and stops them: the receive side is [`receive`], the apply side [`apply`].
//!
//! The receive thread never blocks on the apply thread: when the apply queue is full it sheds the
//! newly completed segment whole (counted; the carousel or a resend brings it back), so a slow
//! disk can never make the kernel drop datagrams of segments already half received.
//! Nothing on the link path ever sends a packet. A receiver with `[upstream]` instead of `[link]`
//! has no receive thread: [`crate::replicate`] feeds the same apply queue from another receiver
//! over QUIC (IT side only), and `[serve]` starts serving downstreams.

pub mod apply;
pub mod receive;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use diode_replica::{Replica, ReplicaOptions};

use crate::config::{ReceiverConfig, ReplicaSync};
use crate::locks;
use crate::state::Shared;

/// `diode-receiver run`: opens the replica, starts the receive and apply threads and the HTTP
/// listener, and runs until stopped by a signal or until a thread fails.
pub fn run(config: ReceiverConfig) -> anyhow::Result<()> {
    let trusted = config.trusted_keys()?;
    let options = ReplicaOptions { sync_writes: config.replica.sync == ReplicaSync::Always };
    let replica = Replica::open_with(&config.replica_dir, options)
        .with_context(|| format!("cannot open the replica in {}", config.replica_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    // Before any thread starts: an address that cannot be bound stops the receiver here, saying
    // which setting to change, instead of leaving it running without its API and metrics.
    let http_listener = match config.http.listen {
        Some(listen) => Some(runtime.block_on(crate::http::bind(listen))?),
        None => None,
    };
    let shared = Arc::new(Shared {
        merge_quiet_s: config.replica.merge_quiet_s,
        apply_queue_limit_bytes: (config.reassembly.apply_queue_mib as u64) << 20,
        ..Shared::new(replica)
    });
    let (queue_tx, queue_rx) = std::sync::mpsc::sync_channel(config.reassembly.apply_queue_segments);
    // Fed by the diode link (the receive thread) or by an upstream receiver (a task below).
    let (receive, upstream_queue) = if config.link.is_some() {
        let link_key = receive::load_link_key(&config)?;
        // Before the socket opens: the first segment that needs repair then costs no pause.
        diode_common::fec::warm_up();
        let socket = receive::open_socket(&config)?;
        let listen = socket.local_addr().map(|address| address.to_string()).unwrap_or_default();
        tracing::info!(%listen, replica = %config.replica_dir.display(), "diode-receiver starting");
        let shared = Arc::clone(&shared);
        let trusted = trusted.clone();
        let limits = receive::reassembly_limits(&config);
        let thread = thread::Builder::new()
            .name("receive".into())
            .spawn(move || receive::receive_loop(socket, link_key, trusted, limits, queue_tx, shared))?;
        (Some(thread), None)
    } else {
        tracing::info!(replica = %config.replica_dir.display(), "diode-receiver starting, fed by an upstream receiver");
        (None, Some(queue_tx))
    };
    let apply = {
        let shared = Arc::clone(&shared);
        thread::Builder::new().name("apply".into()).spawn(move || apply::apply_loop(queue_rx, trusted, shared))?
    };
    let sinks = crate::sinks::start(&config.sinks, &shared)?;
    let http = config.http.clone();
    runtime.block_on(async {
        // Before the listener: a SIGTERM sent as soon as it answers stops the receiver in order.
        let shutdown = diode_host::signals::shutdown_signal("stopping the receive and apply threads");
        crate::replicate::start(&config, &shared, upstream_queue)?;
        if let Some(listener) = http_listener {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move { crate::http::serve(listener, shared, &http).await });
        }
        let stopped_by_thread = async {
            let receive_finished = || receive.as_ref().is_some_and(|thread| thread.is_finished());
            while !shared.stop.load(Ordering::Relaxed) && !apply.is_finished() && !receive_finished() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            _ = shutdown => {}
            _ = stopped_by_thread => {}
        }
        anyhow::Ok(())
    })?;
    shared.stop.store(true, Ordering::Relaxed);
    // Ends the replication tasks, so a downstream's feed closes and the apply thread sees its end.
    runtime.shutdown_timeout(Duration::from_secs(5));
    let receive_result = match receive {
        Some(thread) => thread.join().map_err(|_| anyhow::anyhow!("the receive thread panicked"))?,
        None => Ok(()),
    };
    apply.join().map_err(|_| anyhow::anyhow!("the apply thread panicked"))?;
    for sink in sinks {
        // A sink's failures are its own: logged and retried there, never a stopped receiver.
        if sink.join().is_err() {
            tracing::error!("a sink thread panicked");
        }
    }
    locks::write(&shared.replica).close().context("cannot close the replica")?;
    receive_result?;
    tracing::info!(
        points = shared.counters.points_applied.load(Ordering::Relaxed),
        segments = shared.counters.segments_applied.load(Ordering::Relaxed),
        "diode-receiver stopped"
    );
    Ok(())
}

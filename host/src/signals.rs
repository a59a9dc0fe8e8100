//! The signals that ask an appliance to stop: SIGINT (Ctrl-C) and SIGTERM (systemd).

/// Resolves on the first SIGINT or SIGTERM, and logs `what_happens_next` (what the appliance does
/// before it exits) at info level.
pub async fn shutdown_signal(what_happens_next: &str) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            // Without a SIGTERM handler only Ctrl-C can stop us; that is still a way out.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown requested; {what_happens_next}");
}

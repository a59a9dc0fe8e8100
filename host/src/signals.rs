//! The signals that ask an appliance to stop: SIGINT (Ctrl-C) and SIGTERM (systemd).

/// Resolves on the first SIGINT or SIGTERM, and logs `what_happens_next` (what the appliance does
/// before it exits) at info level. The handlers are installed when this is called, not when the
/// future is first polled: call it before anything that lets the outside world see the appliance
/// as up (a listener that answers health checks), so a signal sent as soon as it answers stops it
/// in order instead of killing it with the default action. Call it within a Tokio runtime.
pub fn shutdown_signal(what_happens_next: &str) -> impl std::future::Future<Output = ()> + '_ {
    use tokio::signal::unix::{SignalKind, signal};
    // Without a handler for one of them only the other can stop us; that is still a way out.
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    async move {
        tokio::select! {
            _ = received(interrupt.as_mut()) => {}
            _ = received(terminate.as_mut()) => {}
        }
        tracing::info!("shutdown requested; {what_happens_next}");
    }
}

/// Resolves when `stream` delivers its signal; never without a stream.
async fn received(stream: Option<&mut tokio::signal::unix::Signal>) {
    match stream {
        Some(stream) => {
            stream.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

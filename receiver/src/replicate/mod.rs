//! Replication between receivers over QUIC, on the IT side only: a receiver that serves
//! (`[serve]`) sends the sealed segments it has verified and applied to downstream receivers; a
//! receiver with `[upstream]` instead of `[link]` takes its segments from one and verifies each
//! again, exactly as it would from the diode link, before the same apply path stores it.
//!
//! `protocol` is the wire format (no IO); `tls` the certificates and mutual TLS; `upstream` the
//! serving side (one task per downstream, never slowing apply); `downstream` the receiving side
//! (connect, resume from its own position, reconnect with back-off). [`Replication`] is what they
//! share with the apply thread and the HTTP routes: the feed of applied segments and the status of
//! every connection. Nothing here ever talks towards OT: the diode link stays UDP and one way.

pub mod downstream;
pub mod feed;
pub mod protocol;
pub mod status;
pub mod tls;
pub mod upstream;

pub use feed::{AppliedSegment, DownstreamConnection, Replication, UpstreamLink};

use std::sync::Arc;
use std::sync::mpsc::SyncSender;

use crate::config::ReceiverConfig;
use crate::state::{Shared, Work};

/// Starts what the config asks for (inside the runtime): serving downstreams (`[serve]`) and
/// following an upstream (`[upstream]`, which feeds `queue`, the apply thread's). Certificates
/// and addresses are checked here, so a mistake stops the receiver at start with its cause.
pub fn start(config: &ReceiverConfig, shared: &Arc<Shared>, queue: Option<SyncSender<Work>>) -> Result<(), StartError> {
    if let Some(serve) = &config.serve {
        let settings = upstream::ServeSettings {
            listen: serve.listen,
            tls: tls::TlsFiles {
                certificate: serve.certificate.clone(),
                private_key: serve.private_key.clone(),
                ca_certificate: serve.ca_certificate.clone(),
            },
            max_downstreams: serve.max_downstreams,
            feed_segments: serve.feed_segments,
            send_window_bytes: serve.send_window_kib * 1024,
        };
        let endpoint = upstream::bind(&settings)?;
        // Started now, so segments applied before the first downstream connects are not waited for.
        shared.replication.start_feed(settings.feed_segments);
        tokio::spawn(upstream::serve(endpoint, settings, Arc::clone(shared)));
    }
    if let (Some(upstream), Some(queue)) = (&config.upstream, queue) {
        let settings = downstream::UpstreamSettings {
            address: upstream.address,
            server_name: upstream.server_name.clone(),
            name: upstream.name.clone(),
            tls: tls::TlsFiles {
                certificate: upstream.certificate.clone(),
                private_key: upstream.private_key.clone(),
                ca_certificate: upstream.ca_certificate.clone(),
            },
        };
        let endpoint = downstream::endpoint(&settings)?;
        tokio::spawn(downstream::follow(endpoint, settings, Arc::clone(shared), queue));
    }
    Ok(())
}

/// Why replication could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The `[serve]` section cannot be put to work: a certificate or key, or the listen
    /// address; the cause names which.
    #[error("[serve]: {0}")]
    Serve(#[from] upstream::ServeError),
    /// The `[upstream]` section cannot be put to work: a certificate or key, or the local
    /// endpoint; the cause names which.
    #[error("[upstream]: {0}")]
    Follow(#[from] downstream::FollowError),
}

/// Why reading a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer ended the stream part way through a frame: it stopped or lost the connection
    /// mid-message. The side that reads reconnects or drops the connection.
    #[error("the stream ended inside a frame")]
    Truncated,
    /// QUIC could not read: the connection was closed, reset or timed out.
    #[error("cannot read from the peer: {0}")]
    Read(#[from] quinn::ReadError),
    /// A frame over the reader's limit (see [`protocol::frame_length`]), or a body that is not
    /// a valid message.
    #[error(transparent)]
    Protocol(#[from] protocol::ProtocolError),
}

/// Reads one frame's body (at most `limit` bytes); `None` when the peer ended the stream cleanly
/// between frames.
pub async fn read_frame(receive: &mut quinn::RecvStream, limit: usize) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; protocol::FRAME_HEADER_BYTES];
    let mut filled = 0;
    while filled < header.len() {
        match receive.read(&mut header[filled..]).await? {
            Some(read) => filled += read,
            None if filled == 0 => return Ok(None),
            None => return Err(FrameError::Truncated),
        }
    }
    let length = protocol::frame_length(header, limit)?;
    let mut body = vec![0u8; length];
    receive.read_exact(&mut body).await.map_err(|error| match error {
        quinn::ReadExactError::FinishedEarly(_) => FrameError::Truncated,
        quinn::ReadExactError::ReadError(error) => FrameError::Read(error),
    })?;
    Ok(Some(body))
}

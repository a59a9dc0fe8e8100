//! The NATS JetStream sink: every applied segment's points, as JSON messages on subjects per
//! sender and series, into a JetStream stream (created if missing), each message acknowledged by
//! the stream before the sink's cursor moves past its segment.
//!
//! Subjects ([`subject`]): `<prefix>.points.<sender id>.<series token>`, the token being the
//! series' name and tags escaped reversibly into one subject token, so a consumer subscribes to
//! one plant (`diode.points.3.>`), one series (`diode.points.3.plant1/boiler3/steam_temp`) or one
//! series across plants (`diode.points.*.plant1/boiler3/steam_temp`). With `segments = true`, each
//! applied segment's sealed, signed bytes also go to `<prefix>.segments.<sender id>` (split into
//! chunks of at most `max_message_bytes`, headers `Diode-Apply-Number`, `Diode-Epoch`,
//! `Diode-Sequence`, `Diode-Chunk` = `<index>/<count>` from 0), so a consumer can check the
//! sender's signature itself (`docs/segment-format.md`).
//!
//! Bodies ([`body`]): one JSON object per series per applied segment (more when it would exceed
//! `max_message_bytes`), naming the apply number, the segment (sender, epoch, sequence), the
//! series (name, tags, kind) and its points as `[time ns, value, quality]`.
//!
//! Exactly once: every message carries a `Nats-Msg-Id` made of the sink's name, the segment and a
//! digest of the series ([`body::message_id`]), and `Nats-Expected-Stream`. The sink publishes a
//! batch, waits for every acknowledgement, and only then answers with the batch's last apply
//! number as its durable cursor. After a failure (a server killed, a leader election, a timeout)
//! it starts again from the cursor and republishes; what the stream already stored is dropped by
//! the server as a duplicate (within the stream's duplicate window), so no message is stored
//! twice.
//!
//! Corrections: a resent or corrected value reaches the stream as a later message for the same
//! series and time, with a higher apply number. A consumer keeps, per series and time, the value
//! of the message with the highest `apply_number` (which is also the later one in the stream,
//! unless a republish after a failure reordered a batch): that equals the replica.

pub mod body;
pub mod subject;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::{ConnectErrorKind, ConnectOptions, Event};
use bytes::Bytes;
use diode_replica::AppliedSegment;

use super::config::{MIN_NATS_MESSAGE_BYTES, NatsSinkConfig};
use super::{Batch, Sink, SinkError};
use crate::locks;
use crate::state::Shared;

/// Most bytes of message bodies published and not yet acknowledged, whatever `max_in_flight` says.
const MAX_IN_FLIGHT_BYTES: usize = 64 * 1024 * 1024;
/// Room left in the servers' `max_payload` for the headers (message id, expected stream, the
/// segment headers).
const HEADER_ROOM_BYTES: usize = 4 * 1024;

/// A series' subject token and the digest its message ids carry, kept by series id.
struct SeriesNames {
    token: String,
    digest: String,
}

/// A NATS JetStream sink: its settings, its own runtime and its connection.
pub struct NatsSink {
    config: NatsSinkConfig,
    runtime: Option<tokio::runtime::Runtime>,
    jetstream: Option<async_nats::jetstream::Context>,
    /// The latest error the server sent outside any reply (a permissions violation), which makes
    /// a missing acknowledgement explainable.
    server_error: Arc<Mutex<Option<String>>>,
    /// Tokens of the series seen so far (at most the replica's series).
    names: HashMap<u32, SeriesNames>,
    cursor: u64,
}

/// `error` and the chain of its causes, after what was being done.
fn describe(action: &str, error: &dyn std::error::Error) -> SinkError {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    SinkError::Target(format!("NATS, {action}: {text}"))
}

/// `error` with `hint` (what to check) appended.
fn with_hint(error: SinkError, hint: &str) -> SinkError {
    match error {
        SinkError::Target(text) => SinkError::Target(format!("{text}{hint}")),
        other => other,
    }
}

/// The TLS error behind `error`, if the connection failed in TLS: rustls's own, or the one inside
/// an I/O error (async-nats reports a failed handshake as an I/O error).
fn tls_cause<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(cause) = next {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner = cause.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref);
        if let Some(tls) = inner.and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            return Some(tls);
        }
        next = cause.source();
    }
    None
}

/// What to check after a failed connection: the credentials, the TLS files or the network.
fn connect_hint(error: &async_nats::ConnectError, config: &NatsSinkConfig) -> String {
    if let Some(tls) = tls_cause(error) {
        return format!("; TLS: {}", tls_hint(tls, config));
    }
    match error.kind() {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            "; check user and password_file (or token_file) against the servers' authorization".to_owned()
        }
        ConnectErrorKind::Tls => {
            "; TLS: check that tls_ca_certificate, tls_client_certificate and tls_client_key are readable PEM files"
                .to_owned()
        }
        _ => "; are the servers running and reachable from this host?".to_owned(),
    }
}

/// Which side refused which certificate in a failed TLS handshake, and what to change.
fn tls_hint(error: &rustls::Error, config: &NatsSinkConfig) -> String {
    use rustls::{AlertDescription as Alert, CertificateError as Refused};
    let shown = |path: &Option<PathBuf>| path.as_ref().map_or_else(String::new, |path| format!(" {}", path.display()));
    let (ca, client) = (shown(&config.tls_ca_certificate), shown(&config.tls_client_certificate));
    match error {
        rustls::Error::InvalidCertificate(Refused::UnknownIssuer | Refused::BadSignature) => format!(
            "the server's certificate is not signed by the authority in tls_ca_certificate{ca}: give the authority \
             that signed the servers' cert_file"
        ),
        rustls::Error::InvalidCertificate(Refused::NotValidForName | Refused::NotValidForNameContext { .. }) => {
            "the server's certificate does not name the host in servers: dial a name or address the certificate \
             holds, or add that one to it"
                .to_owned()
        }
        rustls::Error::InvalidCertificate(
            Refused::Expired
            | Refused::ExpiredContext { .. }
            | Refused::NotValidYet
            | Refused::NotValidYetContext { .. },
        ) => "the server's certificate is not valid now: renew it, or check the clocks".to_owned(),
        rustls::Error::InvalidCertificate(_) => {
            format!("the server's certificate was refused: check it against tls_ca_certificate{ca}")
        }
        rustls::Error::AlertReceived(
            Alert::CertificateRequired | Alert::BadCertificate | Alert::UnknownCA | Alert::CertificateUnknown,
        ) if config.tls_client_certificate.is_none() => "the server requires a client certificate: set \
             tls_client_certificate and tls_client_key (signed by the authority in the servers' ca_file)"
            .to_owned(),
        rustls::Error::AlertReceived(
            Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::CertificateExpired
            | Alert::UnsupportedCertificate,
        ) => format!(
            "the server refused this receiver's client certificate{client}: it must be signed by the authority in \
             the servers' ca_file, and valid now"
        ),
        _ => format!(
            "check tls_ca_certificate{ca}, tls_client_certificate{client} and tls_client_key against the servers' \
             tls settings"
        ),
    }
}

/// Whether the stream subject `filter` captures every subject under `prefix`.
fn captures_prefix(filter: &str, prefix: &str) -> bool {
    let mut wanted = prefix.split('.');
    for token in filter.split('.') {
        if token == ">" {
            return true;
        }
        match wanted.next() {
            Some(literal) if token == "*" || token == literal => {}
            _ => return false,
        }
    }
    false
}

/// The first line of a secret file.
fn first_line(sink: &str, setting: &str, path: &std::path::Path) -> Result<String, SinkError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        SinkError::Target(format!("sinks.nats {sink}: cannot read {setting} {}: {error}", path.display()))
    })?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

impl NatsSink {
    /// A sink publishing as `config` says; it connects (and creates its stream) when started.
    pub fn new(config: NatsSinkConfig) -> NatsSink {
        NatsSink {
            config,
            runtime: None,
            jetstream: None,
            server_error: Arc::new(Mutex::new(None)),
            names: HashMap::new(),
            cursor: 0,
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms)
    }

    fn runtime(&mut self) -> Result<&tokio::runtime::Runtime, SinkError> {
        if self.runtime.is_none() {
            // One worker, so the connection keeps answering the server's pings while the sink
            // waits for new applies.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(format!("sink-{}-nats", self.config.name))
                .enable_all()
                .build()
                .map_err(|error| SinkError::Target(format!("cannot start the NATS sink's runtime: {error}")))?;
            self.runtime = Some(runtime);
        }
        Ok(self.runtime.as_ref().expect("set above"))
    }

    fn connect_options(&self) -> Result<ConnectOptions, SinkError> {
        let config = &self.config;
        let (sink, server_error) = (config.name.clone(), Arc::clone(&self.server_error));
        let mut options = ConnectOptions::new()
            .name(format!("diode-receiver sink {}", config.name))
            .connection_timeout(self.timeout())
            .request_timeout(Some(self.timeout()))
            .event_callback(move |event| {
                let (sink, server_error) = (sink.clone(), Arc::clone(&server_error));
                async move {
                    match event {
                        Event::ServerError(error) => {
                            tracing::warn!(sink = %sink, "NATS server error: {error}");
                            *locks::lock(&server_error) = Some(error.to_string());
                        }
                        Event::Connected => tracing::info!(sink = %sink, "NATS sink connected"),
                        other => tracing::warn!(sink = %sink, "NATS connection: {other}"),
                    }
                }
            });
        if let (Some(user), Some(path)) = (&config.user, &config.password_file) {
            options = options.user_and_password(user.clone(), first_line(&config.name, "password_file", path)?);
        }
        if let Some(path) = &config.token_file {
            options = options.token(first_line(&config.name, "token_file", path)?);
        }
        if let Some(ca) = &config.tls_ca_certificate {
            options = options.require_tls(true).add_root_certificates(ca.clone());
        }
        if let (Some(certificate), Some(key)) = (&config.tls_client_certificate, &config.tls_client_key) {
            options = options.add_client_certificate(certificate.clone(), key.clone());
        }
        Ok(options)
    }

    /// The stream as the sink creates it when it is missing.
    fn stream_config(&self) -> stream::Config {
        let config = &self.config;
        stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.>", config.subject_prefix)],
            num_replicas: config.replicas,
            duplicate_window: Duration::from_secs(config.duplicate_window_s),
            max_age: Duration::from_secs(config.max_age_s),
            max_bytes: if config.max_bytes == 0 { -1 } else { i64::try_from(config.max_bytes).unwrap_or(i64::MAX) },
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            ..stream::Config::default()
        }
    }

    /// The token and digest of every series `batch` names that the sink has not seen yet.
    fn learn_series(&mut self, batch: &Batch) {
        for (&id, info) in &batch.series {
            self.names.entry(id).or_insert_with(|| {
                let full = subject::full_series_token(&info.key);
                SeriesNames { token: subject::series_token(&info.key), digest: subject::digest(&full) }
            });
        }
    }

    /// The messages of one applied segment's points.
    fn point_messages(&self, segment: &AppliedSegment, batch: &Batch) -> Result<Vec<Outgoing>, SinkError> {
        let key = segment.segment;
        let mut messages = Vec::new();
        for series in &segment.series {
            let (Some(info), Some(names)) = (batch.series.get(&series.series_id), self.names.get(&series.series_id))
            else {
                return Err(SinkError::Target(format!(
                    "the replica's catalog lacks series id {} of apply number {}",
                    series.series_id, segment.apply_number
                )));
            };
            let head = body::Head {
                apply_number: segment.apply_number,
                sender_id: key.sender_id,
                epoch: key.epoch,
                sequence: key.sequence,
                name: &info.key.name,
                tags: &info.key.tags,
            };
            let subject = subject::points_subject(&self.config.subject_prefix, key.sender_id, &names.token);
            let parts = body::encode(&head, &series.columns, self.config.max_message_bytes);
            let split = parts.len() > 1;
            for part in parts {
                let id = body::message_id(&self.config.name, &head, &names.digest, split.then_some(&part));
                messages.push(Outgoing::new(subject.clone(), id, Bytes::from(part.body), &self.config.stream));
            }
        }
        Ok(messages)
    }

    /// The messages of one applied segment's sealed bytes, read from the replica's audit log.
    fn segment_messages(&self, segment: &AppliedSegment, shared: &Shared) -> Result<Vec<Outgoing>, SinkError> {
        let key = segment.segment;
        let sealed =
            locks::read(&shared.replica).segment_bytes(key.sender_id, key.epoch, key.sequence)?.ok_or_else(|| {
                SinkError::Target(format!(
                    "the replica's audit log lacks sender {} epoch {} sequence {} (apply number {})",
                    key.sender_id, key.epoch, key.sequence, segment.apply_number
                ))
            })?;
        let sealed = Bytes::from(sealed);
        let chunk = self.config.max_message_bytes;
        let count = sealed.len().div_ceil(chunk).max(1);
        let subject = subject::segments_subject(&self.config.subject_prefix, key.sender_id);
        Ok((0..count)
            .map(|index| {
                let id = format!(
                    "{}:{}:{}:{}:segment:{index}:{count}",
                    self.config.name, key.sender_id, key.epoch, key.sequence
                );
                let bytes = sealed.slice(index * chunk..((index + 1) * chunk).min(sealed.len()));
                let mut message = Outgoing::new(subject.clone(), id, bytes, &self.config.stream);
                message.publish = message
                    .publish
                    .header("Diode-Apply-Number", segment.apply_number.to_string().as_str())
                    .header("Diode-Epoch", key.epoch.to_string().as_str())
                    .header("Diode-Sequence", key.sequence.to_string().as_str())
                    .header("Diode-Chunk", format!("{index}/{count}").as_str());
                message
            })
            .collect())
    }
}

/// One message to publish.
struct Outgoing {
    subject: String,
    publish: PublishMessage,
    bytes: usize,
}

impl Outgoing {
    fn new(subject: String, id: String, body: Bytes, stream: &str) -> Outgoing {
        let bytes = body.len();
        Outgoing {
            subject,
            publish: PublishMessage::build().payload(body).message_id(id).expected_stream(stream),
            bytes,
        }
    }
}

/// Published messages whose acknowledgements are awaited, oldest first, bounded in count and bytes.
struct InFlight<'a> {
    jetstream: &'a async_nats::jetstream::Context,
    server_error: &'a Mutex<Option<String>>,
    pending: VecDeque<(PublishAckFuture, String, usize)>,
    bytes: usize,
    max: usize,
    /// Messages the stream already held (republished after a failure) and dropped.
    duplicates: u64,
}

impl InFlight<'_> {
    async fn publish(&mut self, message: Outgoing) -> Result<(), SinkError> {
        while !self.pending.is_empty() && (self.pending.len() >= self.max || self.bytes >= MAX_IN_FLIGHT_BYTES) {
            self.settle_oldest().await?;
        }
        let Outgoing { subject, publish, bytes } = message;
        let ack = self
            .jetstream
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|error| self.failed(&format!("publishing to {subject}"), &error))?;
        self.pending.push_back((ack, subject, bytes));
        self.bytes += bytes;
        Ok(())
    }

    async fn settle_oldest(&mut self) -> Result<(), SinkError> {
        let Some((ack, subject, bytes)) = self.pending.pop_front() else { return Ok(()) };
        self.bytes -= bytes;
        let ack =
            ack.await.map_err(|error| self.failed(&format!("waiting for the stream to store {subject}"), &error))?;
        self.duplicates += u64::from(ack.duplicate);
        Ok(())
    }

    async fn settle_all(&mut self) -> Result<(), SinkError> {
        while !self.pending.is_empty() {
            self.settle_oldest().await?;
        }
        Ok(())
    }

    /// The error of a failed publish, with the server's latest complaint (a permissions violation
    /// shows only there) or else what to check.
    fn failed(&self, action: &str, error: &PublishError) -> SinkError {
        let described = describe(action, error);
        if let Some(server) = locks::lock(self.server_error).take() {
            return with_hint(described, &format!(" (the server said: {server})"));
        }
        let hint = match error.kind() {
            PublishErrorKind::StreamNotFound => {
                "; no stream captures the subject: was the stream deleted? the sink creates it again when it restarts"
            }
            PublishErrorKind::TimedOut => {
                "; no acknowledgement within timeout_ms: is a majority of the stream's servers up, and may this user \
                 publish to the subject?"
            }
            _ => "",
        };
        with_hint(described, hint)
    }
}

impl Sink for NatsSink {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn start(&mut self, stored: u64, _shared: &Shared) -> Result<u64, SinkError> {
        self.jetstream = None;
        *locks::lock(&self.server_error) = None;
        let options = self.connect_options()?;
        let (timeout, stream_config) = (self.timeout(), self.stream_config());
        let (servers, prefix, max_message) =
            (self.config.servers.clone(), self.config.subject_prefix.clone(), self.config.max_message_bytes);
        let max_in_flight = self.config.max_in_flight;
        let config = self.config.clone();
        let runtime = self.runtime()?;
        let jetstream = runtime.block_on(async {
            let client = options.connect(servers.clone()).await.map_err(|error| {
                let hint = connect_hint(&error, &config);
                with_hint(describe(&format!("connecting to {}", servers.join(", ")), &error), &hint)
            })?;
            let max_payload = client.server_info().max_payload;
            if max_payload < max_message + HEADER_ROOM_BYTES {
                return Err(SinkError::Target(format!(
                    "NATS: the server takes messages of at most {max_payload} bytes (max_payload), too few for \
                     max_message_bytes = {max_message} and headers; raise max_payload on the servers or lower \
                     max_message_bytes (at least {MIN_NATS_MESSAGE_BYTES})"
                )));
            }
            let jetstream = async_nats::jetstream::ContextBuilder::new()
                .timeout(timeout)
                .ack_timeout(timeout)
                .max_ack_inflight(max_in_flight)
                .build(client);
            let name = stream_config.name.clone();
            let stream = jetstream
                .get_or_create_stream(stream_config)
                .await
                .map_err(|error| describe(&format!("finding or creating stream {name}"), &error))?;
            let info = stream.cached_info();
            if !info.config.subjects.iter().any(|filter| captures_prefix(filter, &prefix)) {
                return Err(SinkError::Target(format!(
                    "NATS: stream {name} captures {:?}, not {prefix}.>: add that subject to the stream, or give this \
                     sink another stream or subject_prefix",
                    info.config.subjects
                )));
            }
            tracing::info!(
                stream = %name,
                replicas = info.config.num_replicas,
                duplicate_window_s = info.config.duplicate_window.as_secs(),
                messages = info.state.messages,
                "NATS sink's stream ready"
            );
            Ok(jetstream)
        })?;
        tracing::info!(sink = %self.config.name, cursor = stored, "NATS sink connected");
        self.jetstream = Some(jetstream);
        self.cursor = stored;
        Ok(stored)
    }

    fn export(&mut self, batch: &Batch, shared: &Shared) -> Result<u64, SinkError> {
        self.learn_series(batch);
        let this = &*self;
        let jetstream = this.jetstream.as_ref().ok_or_else(|| SinkError::Target("NATS: not connected".to_owned()))?;
        let runtime = this.runtime.as_ref().expect("a connected sink has its runtime");
        let duplicates = runtime.block_on(async {
            let mut in_flight = InFlight {
                jetstream,
                server_error: &this.server_error,
                pending: VecDeque::new(),
                bytes: 0,
                max: this.config.max_in_flight,
                duplicates: 0,
            };
            for segment in &batch.segments {
                let mut messages = this.point_messages(segment, batch)?;
                if this.config.segments {
                    messages.extend(this.segment_messages(segment, shared)?);
                }
                for message in messages {
                    in_flight.publish(message).await?;
                }
            }
            in_flight.settle_all().await?;
            Ok::<_, SinkError>(in_flight.duplicates)
        })?;
        if duplicates > 0 {
            tracing::info!(
                sink = %self.config.name,
                duplicates,
                "NATS: the stream already held {duplicates} republished messages and dropped them"
            );
        }
        self.cursor = batch.last_apply_number();
        Ok(self.cursor)
    }

    fn idle(&mut self, _shared: &Shared) -> Result<u64, SinkError> {
        Ok(self.cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> NatsSinkConfig {
        toml::from_str(&format!("name = \"bus\"\nservers = [\"nats://127.0.0.1:4222\"]\n{extra}")).unwrap()
    }

    /// A handshake failure as async-nats reports it: an I/O error around rustls's.
    fn failed_handshake(tls: rustls::Error) -> async_nats::ConnectError {
        async_nats::ConnectError::with_source(ConnectErrorKind::Io, std::io::Error::other(tls))
    }

    #[test]
    fn a_failed_tls_handshake_says_which_side_refused_which_certificate() {
        let trusting = config("tls_ca_certificate = \"/etc/diode/nats-ca.crt\"\n");
        let presenting = config(
            "tls_ca_certificate = \"/etc/diode/nats-ca.crt\"\ntls_client_certificate = \"/etc/diode/r.crt\"\n\
             tls_client_key = \"/etc/diode/r.key\"\n",
        );
        let untrusted = failed_handshake(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer));
        let hint = connect_hint(&untrusted, &trusting);
        assert!(
            hint.starts_with("; TLS: the server's certificate is not signed") && hint.contains("nats-ca.crt"),
            "{hint}"
        );
        let required = failed_handshake(rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired));
        assert!(connect_hint(&required, &trusting).contains("requires a client certificate"));
        let refused = failed_handshake(rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA));
        let hint = connect_hint(&refused, &presenting);
        assert!(hint.contains("refused this receiver's client certificate /etc/diode/r.crt"), "{hint}");
        let unreachable = async_nats::ConnectError::with_source(
            ConnectErrorKind::Io,
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        );
        assert!(connect_hint(&unreachable, &trusting).contains("reachable"));
    }

    #[test]
    fn a_stream_subject_captures_the_prefix_only_when_it_matches_everything_under_it() {
        assert!(captures_prefix("diode.>", "diode"));
        assert!(captures_prefix(">", "diode"));
        assert!(captures_prefix("*.>", "diode"));
        assert!(captures_prefix("site.*.>", "site.a"));
        assert!(!captures_prefix("diode.points.>", "diode"));
        assert!(!captures_prefix("diode.*", "diode"));
        assert!(!captures_prefix("diode", "diode"));
        assert!(!captures_prefix("other.>", "diode"));
    }
}

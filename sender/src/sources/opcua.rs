//! The OPC UA source: a client (async-opcua) that subscribes to plant variables on an OPC UA
//! server in the OT network and spools every value the server reports.
//!
//! Per connection: find the variables (NodeIds listed, and folders browsed with a filter), create
//! one subscription with a monitored item per variable (sampling interval, queue size, deadband),
//! then spool the notifications in batches through group commit. When the connection is lost it
//! is counted and logged as a possible data gap; the source reconnects with back-off, browses and
//! subscribes again, and, where the server keeps history, reads what it missed (HistoryRead raw,
//! from each variable's last value seen to the moment the new subscription exists) so the
//! replica has no hole.
//!
//! Mapping (also in `config/sender.toml` and the README):
//! - Time: the value's SourceTimestamp, else its ServerTimestamp, else the sender's clock.
//! - Quality: the value's StatusCode, kept whole (diode's quality is an OPC UA StatusCode):
//!   Good, Uncertain and Bad keep their severity and sub-code; no status means Good. A value
//!   with a status but no value (usual with Bad) is stored with the variable's last value.
//! - Series: `<series_prefix><name>` with the tag `server=<source name>`, where the name is the
//!   node's `series` setting or its DisplayName for listed nodes, and the browse path (BrowseNames
//!   from the browsed folder down, the folder's own included, joined by `/`) for browsed ones.
//! - Values: Boolean; SByte to Int64, Byte to UInt32 and UInt64 up to 2^63 − 1 as integers;
//!   Float and Double as floats (NaN and infinities skipped, counted malformed); String and
//!   LocalizedText as strings; DateTime as integer ns since the Unix epoch. Arrays, structures
//!   and other types are skipped and counted as unsupported.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use diode_common::record::{Quality, Record, SeriesKey, Value};
use futures_util::StreamExt;
use opcua::client::{ClientBuilder, DataChangeCallback, HistoryReadAction, IdentityToken, Password, Session};
use opcua::types::{
    AttributeId, BrowseDescription, BrowseDirection, BrowseResultMask, DataChangeFilter, DataChangeTrigger, DataValue,
    DateTime, ExtensionObject, HistoryData, HistoryReadValueId, MessageSecurityMode, MonitoredItemCreateRequest,
    MonitoringMode, MonitoringParameters, NodeClass, NodeId, ReadRawModifiedDetails, ReadValueId, ReferenceTypeId,
    TimestampsToReturn, UserTokenPolicy, Variant,
};
use tokio::sync::mpsc;

use super::{Backoff, SourceCounters, Warnings};
use crate::clock::now_ns;
use crate::commit::Committer;
use crate::config::{DeadbandType, OpcuaSourceConfig, SecurityMode, SecurityPolicy};

/// Notifications waiting to be spooled at most; beyond, they are dropped and counted as a gap.
const MAX_QUEUED_NOTIFICATIONS: usize = 1_000_000;
/// Notifications one batch (one spool commit) takes at most.
const MAX_BATCH_NOTIFICATIONS: usize = 100_000;
/// Values asked for per variable in one HistoryRead (continuation points fetch the rest).
const HISTORY_VALUES_PER_READ: u32 = 10_000;
/// Variables per Read, Browse and HistoryRead request.
const NODES_PER_REQUEST: usize = 500;
/// Unix epoch in OPC UA ticks (100 ns since 1601-01-01).
const UNIX_EPOCH_TICKS: i64 = 116_444_736_000_000_000;

pub use super::addresses::parse_node_id;

/// ns since the Unix epoch for an OPC UA DateTime (`None` for a null one).
pub fn unix_ns(time: &DateTime) -> Option<i64> {
    if time.is_null() {
        return None;
    }
    time.ticks().checked_sub(UNIX_EPOCH_TICKS)?.checked_mul(100)
}

/// An OPC UA DateTime for ns since the Unix epoch.
pub fn opcua_time(unix_ns: i64) -> DateTime {
    DateTime::from(unix_ns.div_euclid(100) + UNIX_EPOCH_TICKS)
}

/// Whether `path` matches `glob` (`*`: any run of characters, `?`: one character).
pub fn glob_matches(glob: &str, path: &str) -> bool {
    let glob: Vec<char> = glob.chars().collect();
    let path: Vec<char> = path.chars().collect();
    let (mut g, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while p < path.len() {
        if g < glob.len() && (glob[g] == '?' || glob[g] == path[p]) {
            g += 1;
            p += 1;
        } else if g < glob.len() && glob[g] == '*' {
            star = Some((g, p));
            g += 1;
        } else if let Some((star_g, star_p)) = star {
            g = star_g + 1;
            p = star_p + 1;
            star = Some((star_g, star_p + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&c| c == '*')
}

/// Why a value was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// A type diode does not store (arrays, structures, …) or no value ever seen.
    Unsupported,
    /// A value diode refuses (NaN, an unsigned integer above 2^63 − 1, a string too long, …).
    Malformed,
}

/// A variant as a diode value.
pub fn value_of(variant: &Variant) -> Result<Value, Skipped> {
    let value = match variant {
        Variant::Boolean(v) => Value::Bool(*v),
        Variant::SByte(v) => Value::I64(i64::from(*v)),
        Variant::Byte(v) => Value::I64(i64::from(*v)),
        Variant::Int16(v) => Value::I64(i64::from(*v)),
        Variant::UInt16(v) => Value::I64(i64::from(*v)),
        Variant::Int32(v) => Value::I64(i64::from(*v)),
        Variant::UInt32(v) => Value::I64(i64::from(*v)),
        Variant::Int64(v) => Value::I64(*v),
        Variant::UInt64(v) => Value::I64(i64::try_from(*v).map_err(|_| Skipped::Malformed)?),
        Variant::Float(v) => Value::F64(f64::from(*v)),
        Variant::Double(v) => Value::F64(*v),
        Variant::String(v) => Value::String(v.value().clone().unwrap_or_default()),
        Variant::LocalizedText(v) => Value::String(v.text.value().clone().unwrap_or_default()),
        Variant::DateTime(v) => Value::I64(unix_ns(v).ok_or(Skipped::Malformed)?),
        _ => return Err(Skipped::Unsupported),
    };
    match value {
        Value::F64(v) if !v.is_finite() => Err(Skipped::Malformed),
        value => Ok(value),
    }
}

/// A reported value's time: its SourceTimestamp, else its ServerTimestamp, else `now_ns`.
pub fn time_of(data: &DataValue, now_ns: i64) -> i64 {
    data.source_timestamp
        .as_ref()
        .and_then(unix_ns)
        .or_else(|| data.server_timestamp.as_ref().and_then(unix_ns))
        .unwrap_or(now_ns)
}

/// Whether a reported value carries no value (a Bad status: servers set the value to null).
fn has_no_value(data: &DataValue) -> bool {
    matches!(data.value, None | Some(Variant::Empty))
}

/// The record for one reported value of `series`, given the variable's last value.
pub fn record_of(series: &SeriesKey, data: &DataValue, last: Option<&Value>, now_ns: i64) -> Result<Record, Skipped> {
    let value = match &data.value {
        Some(Variant::Empty) | None => last.cloned().ok_or(Skipped::Unsupported)?,
        Some(variant) => value_of(variant)?,
    };
    let timestamp_ns = time_of(data, now_ns);
    let quality = Quality(data.status.map(|status| status.bits()).unwrap_or(0));
    let record = Record { series: series.clone(), timestamp_ns, value, quality };
    record.validate().map_err(|_| Skipped::Malformed)?;
    Ok(record)
}

/// One variable monitored.
#[derive(Debug, Clone)]
struct Variable {
    node_id: NodeId,
    series: SeriesKey,
}

/// What the source remembers across connections.
#[derive(Default)]
struct Memory {
    /// Per variable (NodeId as text): the source time and value of the last value stored.
    last: HashMap<String, (i64, Value)>,
    /// When the previous connection was lost, if one was.
    lost_at_ns: Option<i64>,
    /// When the previous connection's subscription started (the backfill start of variables
    /// that had no value yet).
    subscribed_at_ns: Option<i64>,
}

/// Everything one OPC UA source needs to run.
pub struct OpcuaSource {
    /// Its `[[sources.opcua]]` settings.
    pub config: OpcuaSourceConfig,
    /// Where this source keeps its PKI folder (own certificate, trusted server certificates).
    pub state_dir: PathBuf,
    /// The spool, through group commit.
    pub committer: Committer,
    /// Its counters on `/metrics`.
    pub counters: Arc<SourceCounters>,
}

impl OpcuaSource {
    /// Runs until the process ends, reconnecting with back-off.
    pub async fn run(self) -> anyhow::Result<()> {
        let name = self.config.display_name();
        let warnings = Warnings::new(&name);
        let mut backoff = Backoff::new(
            Duration::from_millis(self.config.reconnect_min_ms),
            Duration::from_millis(self.config.reconnect_max_ms),
        );
        let mut memory = Memory::default();
        tracing::info!(source = %name, endpoint = %self.config.endpoint, "OPC UA source starting");
        self.prepare_pki().context("cannot prepare the OPC UA certificate folder")?;
        loop {
            let result = self.connection(&name, &warnings, &mut memory, &mut backoff).await;
            let lost_at_ns = now_ns();
            self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
            if memory.subscribed_at_ns.is_some() && memory.lost_at_ns.is_none() {
                memory.lost_at_ns = Some(lost_at_ns);
                self.counters.data_gaps.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(source = %name, "connection to the OPC UA server lost: values from now until it is back may be missing (read from history on reconnect where the server has it)");
            }
            let delay = backoff.next_delay();
            match result {
                Ok(()) => {
                    warnings.warn("connection", || format!("the OPC UA session ended; reconnecting in {delay:?}"))
                }
                Err(error) => warnings
                    .warn("connection", || format!("OPC UA connection failed: {error:#}; reconnecting in {delay:?}")),
            }
            tokio::time::sleep(delay).await;
        }
    }

    fn pki_dir(&self) -> PathBuf {
        self.state_dir.join("pki")
    }

    /// Puts exactly the trusted server certificates (the pinned one and the trusted folder's)
    /// into the client's PKI `trusted` folder, named as the certificate store looks them up.
    fn prepare_pki(&self) -> anyhow::Result<()> {
        let trusted = self.pki_dir().join("trusted");
        if trusted.exists() {
            std::fs::remove_dir_all(&trusted)?;
        }
        std::fs::create_dir_all(&trusted)?;
        std::fs::create_dir_all(self.pki_dir().join("rejected"))?;
        let mut files = Vec::new();
        if let Some(file) = &self.config.server_certificate_file {
            files.push(file.clone());
        }
        if let Some(dir) = &self.config.trusted_server_certificates_dir {
            let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
            for entry in entries {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("der")) {
                    files.push(path);
                }
            }
        }
        for file in files {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let certificate = opcua::crypto::X509::from_der(&bytes)
                .map_err(|e| anyhow::anyhow!("{} is not a DER certificate: {e}", file.display()))?;
            let name = opcua::crypto::CertificateStore::cert_file_name(&certificate);
            std::fs::write(trusted.join(name), &bytes)?;
        }
        Ok(())
    }

    fn client(&self) -> anyhow::Result<opcua::client::Client> {
        let mut builder = ClientBuilder::new()
            .application_name("diode-sender")
            .application_uri("urn:diode-sender")
            .product_uri("urn:diode-sender")
            .pki_dir(self.pki_dir())
            // Without a configured certificate the client makes itself one, once, in its PKI
            // folder: an application instance needs one, even when security is None.
            .create_sample_keypair(self.config.certificate_file.is_none())
            .endpoint("plant", opcua::client::ClientEndpoint::new(self.config.endpoint.clone()))
            .default_endpoint("plant")
            .trust_server_certs(false)
            .verify_server_certs(self.config.security_policy != SecurityPolicy::None)
            .session_retry_limit(0)
            .session_timeout(60_000)
            .request_timeout(Duration::from_secs(10));
        if let (Some(certificate), Some(key)) = (&self.config.certificate_file, &self.config.private_key_file) {
            builder = builder.certificate_path(certificate.clone()).private_key_path(key.clone());
        }
        builder.client().map_err(|errors| anyhow::anyhow!("invalid OPC UA client settings: {}", errors.join("; ")))
    }

    /// One connection: connect, find the variables, subscribe, back-fill, spool until lost.
    async fn connection(
        &self,
        name: &str,
        warnings: &Warnings,
        memory: &mut Memory,
        backoff: &mut Backoff,
    ) -> anyhow::Result<()> {
        let mut client = self.client()?;
        let (policy, mode) = match (self.config.security_policy, self.config.security_mode) {
            (SecurityPolicy::None, _) => ("None", MessageSecurityMode::None),
            (SecurityPolicy::Basic256Sha256, SecurityMode::Sign) => ("Basic256Sha256", MessageSecurityMode::Sign),
            (SecurityPolicy::Basic256Sha256, _) => ("Basic256Sha256", MessageSecurityMode::SignAndEncrypt),
        };
        let policy_uri = opcua::crypto::SecurityPolicy::from_str(policy)
            .map_err(|_| anyhow::anyhow!("unknown security policy {policy}"))?
            .to_uri();
        let identity = match (&self.config.username, &self.config.password) {
            (Some(user), password) => {
                IdentityToken::UserName(user.clone(), Password::new(password.clone().unwrap_or_default()))
            }
            (None, _) => IdentityToken::Anonymous,
        };
        let endpoint: opcua::types::EndpointDescription =
            (self.config.endpoint.as_str(), policy_uri, mode, UserTokenPolicy::anonymous()).into();
        let (session, event_loop) = client
            .connect_to_matching_endpoint(endpoint, identity)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach {}: {e}", self.config.endpoint))?;
        // The session's event loop runs beside us; when it ends, the connection is gone.
        let (lost_tx, mut lost) = tokio::sync::oneshot::channel::<String>();
        let events = tokio::spawn(async move {
            let stream = event_loop.enter();
            tokio::pin!(stream);
            let why = loop {
                match stream.next().await {
                    Some(Ok(opcua::client::SessionPollResult::ConnectionLost(code))) => {
                        break format!("connection lost: {code}");
                    }
                    Some(Ok(opcua::client::SessionPollResult::ReconnectFailed(code))) => {
                        break format!("connection refused: {code}");
                    }
                    Some(Ok(_)) => {}
                    Some(Err(code)) => break format!("session ended: {code}"),
                    None => break "session closed".to_owned(),
                }
            };
            let _ = lost_tx.send(why);
        });
        let result = async {
            tokio::select! {
                connected = session.wait_for_connection() => anyhow::ensure!(connected, "the session did not connect"),
                why = &mut lost => bail!("{}", why.unwrap_or_else(|_| "session ended".to_owned())),
            }
            self.counters.connects.fetch_add(1, Ordering::Relaxed);
            backoff.reset();
            tracing::info!(source = %name, endpoint = %self.config.endpoint, "connected to the OPC UA server");
            self.subscribed(name, warnings, memory, &session, &mut lost).await
        }
        .await;
        events.abort();
        let _ = tokio::time::timeout(Duration::from_secs(2), session.disconnect()).await;
        result
    }

    /// Finds the variables, subscribes, back-fills and spools notifications until `lost` fires.
    async fn subscribed(
        &self,
        name: &str,
        warnings: &Warnings,
        memory: &mut Memory,
        session: &Arc<Session>,
        lost: &mut tokio::sync::oneshot::Receiver<String>,
    ) -> anyhow::Result<()> {
        let variables = self.variables(session, warnings).await?;
        anyhow::ensure!(!variables.is_empty(), "no variable matches the configured nodes and browse filters");
        let index: Arc<HashMap<NodeId, usize>> =
            Arc::new(variables.iter().enumerate().map(|(i, v)| (v.node_id.clone(), i)).collect());
        let (notify, mut notifications) = mpsc::channel::<(usize, DataValue)>(MAX_QUEUED_NOTIFICATIONS);
        let counters = Arc::clone(&self.counters);
        let callback_index = Arc::clone(&index);
        let callback = DataChangeCallback::new(move |value, item| {
            let Some(&variable) = callback_index.get(&item.item_to_monitor().node_id) else { return };
            counters.messages.fetch_add(1, Ordering::Relaxed);
            if notify.try_send((variable, value)).is_err() {
                counters.data_gaps.fetch_add(1, Ordering::Relaxed);
            }
        });
        let publishing = Duration::from_millis(self.config.publishing_interval_ms);
        let subscription = session
            .create_subscription(publishing, 60, 10, 0, 0, true, callback)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the subscription: {e}"))?;
        let requests: Vec<MonitoredItemCreateRequest> =
            variables.iter().enumerate().map(|(i, v)| self.monitored_item(i, &v.node_id)).collect();
        for chunk in requests.chunks(NODES_PER_REQUEST) {
            let created = session
                .create_monitored_items(subscription, TimestampsToReturn::Both, chunk.to_vec())
                .await
                .map_err(|e| anyhow::anyhow!("cannot create monitored items: {e}"))?;
            for (request, result) in chunk.iter().zip(created) {
                if !result.result.status_code.is_good() {
                    warnings.warn("monitored_item", || {
                        format!(
                            "{} cannot be monitored: {}",
                            request.item_to_monitor.node_id, result.result.status_code
                        )
                    });
                }
            }
        }
        let subscribed_at_ns = now_ns();
        tracing::info!(source = %name, variables = variables.len(), "subscribed");
        // Back-fill what the outage cost, from history, up to now: the subscription covers the rest.
        let snapshot = memory.last.clone();
        let previous_subscription = memory.subscribed_at_ns.replace(subscribed_at_ns);
        if let Some(lost_at_ns) = memory.lost_at_ns.take() {
            let seconds = (subscribed_at_ns - lost_at_ns) as f64 / 1e9;
            if self.config.history_backfill {
                let from_default = previous_subscription.unwrap_or(lost_at_ns);
                let backfilled =
                    self.backfill(session, &variables, &snapshot, from_default, subscribed_at_ns, warnings).await;
                let records = backfilled.len() as u64;
                let keys: HashMap<&SeriesKey, String> =
                    variables.iter().map(|v| (&v.series, v.node_id.to_string())).collect();
                for record in &backfilled {
                    if let Some(key) = keys.get(&record.series) {
                        remember(memory, key, record);
                    }
                }
                super::submit(&self.committer, &self.counters, warnings, backfilled).await;
                self.counters.backfilled_records.fetch_add(records, Ordering::Relaxed);
                tracing::info!(source = %name, outage_s = seconds, records, "reconnected; read the outage from the server's history");
            } else {
                tracing::warn!(source = %name, outage_s = seconds, "reconnected; values changed during the outage are missing (history_backfill = false)");
            }
        }
        // Spool notifications until the connection is lost.
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                received = notifications.recv_many(&mut batch, MAX_BATCH_NOTIFICATIONS) => {
                    if received == 0 {
                        bail!("the subscription stopped");
                    }
                    let records = self.records(&variables, &mut batch, memory, warnings);
                    super::submit(&self.committer, &self.counters, warnings, records).await;
                }
                why = &mut *lost => bail!("{}", why.unwrap_or_else(|_| "session ended".to_owned())),
            }
        }
    }

    fn monitored_item(&self, handle: usize, node_id: &NodeId) -> MonitoredItemCreateRequest {
        let filter = match self.config.deadband_type {
            DeadbandType::None => ExtensionObject::from_message(DataChangeFilter {
                // Status, value or timestamp: a value re-written unchanged at a new time is a new point.
                trigger: DataChangeTrigger::StatusValueTimestamp,
                deadband_type: 0,
                deadband_value: 0.0,
            }),
            deadband => ExtensionObject::from_message(DataChangeFilter {
                trigger: DataChangeTrigger::StatusValue,
                deadband_type: if deadband == DeadbandType::Absolute { 1 } else { 2 },
                deadband_value: self.config.deadband_value,
            }),
        };
        MonitoredItemCreateRequest {
            item_to_monitor: ReadValueId::from(node_id.clone()),
            monitoring_mode: MonitoringMode::Reporting,
            requested_parameters: MonitoringParameters {
                client_handle: handle as u32,
                sampling_interval: self.config.sampling_interval_ms as f64,
                filter,
                queue_size: self.config.queue_size,
                discard_oldest: true,
            },
        }
    }

    /// Records for a batch of notifications (the batch is emptied); skipped values are counted.
    fn records(
        &self,
        variables: &[Variable],
        batch: &mut Vec<(usize, DataValue)>,
        memory: &mut Memory,
        warnings: &Warnings,
    ) -> Vec<Record> {
        let now = now_ns();
        let mut records = Vec::with_capacity(batch.len());
        for (variable, data) in batch.drain(..) {
            let Some(variable) = variables.get(variable) else { continue };
            let key = variable.node_id.to_string();
            let last = memory.last.get(&key);
            // A status without a value at or before the last value stored is one the history
            // back-fill already stored (with the value that preceded it): not stored again with a
            // later one.
            if has_no_value(&data) && last.is_some_and(|(time_ns, _)| time_of(&data, now) <= *time_ns) {
                continue;
            }
            match record_of(&variable.series, &data, last.map(|(_, value)| value), now) {
                Ok(record) => {
                    if last.is_none_or(|(time_ns, _)| record.timestamp_ns >= *time_ns) {
                        memory.last.insert(key, (record.timestamp_ns, record.value.clone()));
                    }
                    records.push(record);
                }
                Err(skipped) => {
                    let counter = if skipped == Skipped::Unsupported {
                        &self.counters.unsupported
                    } else {
                        &self.counters.malformed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    warnings.warn("skipped_value", || {
                        let mut shown = format!("{:?} ({:?})", data.value, data.status);
                        shown.truncate(120);
                        format!("{}: value {shown} not stored ({skipped:?})", variable.node_id)
                    });
                }
            }
        }
        records
    }

    /// The variables to monitor: the listed nodes (named by `series` or their DisplayName) and
    /// every variable under the browsed folders whose path matches the filter.
    async fn variables(&self, session: &Session, warnings: &Warnings) -> anyhow::Result<Vec<Variable>> {
        let server = self.config.display_name();
        let series = |name: &str| {
            SeriesKey::with_tags(
                format!("{}{name}", self.config.series_prefix),
                vec![("server".to_owned(), server.clone())],
            )
        };
        let mut variables = Vec::new();
        let listed: Vec<NodeId> = self
            .config
            .nodes
            .iter()
            .map(|n| parse_node_id(&n.node_id).map_err(anyhow::Error::msg))
            .collect::<Result<_, _>>()?;
        let unnamed: Vec<&NodeId> =
            listed.iter().zip(&self.config.nodes).filter(|(_, n)| n.series.is_none()).map(|(id, _)| id).collect();
        let mut display_names = HashMap::new();
        for chunk in unnamed.chunks(NODES_PER_REQUEST) {
            let reads: Vec<ReadValueId> = chunk
                .iter()
                .map(|id| ReadValueId {
                    node_id: (*id).clone(),
                    attribute_id: AttributeId::DisplayName as u32,
                    ..Default::default()
                })
                .collect();
            let values = session
                .read(&reads, TimestampsToReturn::Neither, 0.0)
                .await
                .map_err(|e| anyhow::anyhow!("cannot read display names: {e}"))?;
            for (id, value) in chunk.iter().zip(values) {
                if let Some(Variant::LocalizedText(text)) = value.value {
                    display_names.insert((*id).clone(), text.text.value().clone().unwrap_or_default());
                }
            }
        }
        for (id, node) in listed.iter().zip(&self.config.nodes) {
            let name = node.series.clone().or_else(|| display_names.get(id).cloned()).filter(|n| !n.is_empty());
            match name {
                Some(name) => variables.push(Variable { node_id: id.clone(), series: series(&name) }),
                None => warnings.warn("node", || format!("{id} has no display name (does it exist?); set its series")),
            }
        }
        for browse in &self.config.browse {
            let root = parse_node_id(&browse.root).map_err(anyhow::Error::msg)?;
            let root_name = self.browse_name(session, &root).await?;
            let found = self.browse(session, &root, browse.max_depth).await?;
            for (node_id, path) in found {
                if glob_matches(&browse.filter, &path) {
                    variables.push(Variable { node_id, series: series(&format!("{root_name}/{path}")) });
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        variables.retain(|v| seen.insert(v.node_id.clone()));
        if variables.len() > self.config.max_monitored_items {
            warnings.warn("too_many", || {
                format!(
                    "{} variables found; monitoring the first {} (max_monitored_items)",
                    variables.len(),
                    self.config.max_monitored_items
                )
            });
            variables.truncate(self.config.max_monitored_items);
        }
        Ok(variables)
    }

    async fn browse_name(&self, session: &Session, node: &NodeId) -> anyhow::Result<String> {
        let read =
            ReadValueId { node_id: node.clone(), attribute_id: AttributeId::BrowseName as u32, ..Default::default() };
        let values = session
            .read(&[read], TimestampsToReturn::Neither, 0.0)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read {node}: {e}"))?;
        match values.into_iter().next().and_then(|v| v.value) {
            Some(Variant::QualifiedName(name)) => Ok(name.name.value().clone().unwrap_or_default()),
            _ => bail!("browse root {node} has no browse name (does it exist?)"),
        }
    }

    /// Every variable below `root` (through hierarchical references other than HasProperty), with
    /// its path of BrowseNames below the root, breadth first, at most `max_depth` levels down.
    async fn browse(
        &self,
        session: &Session,
        root: &NodeId,
        max_depth: usize,
    ) -> anyhow::Result<Vec<(NodeId, String)>> {
        let mut found = Vec::new();
        let mut level: Vec<(NodeId, String)> = vec![(root.clone(), String::new())];
        let mut visited = std::collections::HashSet::from([root.clone()]);
        for _ in 0..max_depth {
            let mut next = Vec::new();
            for chunk in level.chunks(NODES_PER_REQUEST) {
                let descriptions: Vec<BrowseDescription> = chunk
                    .iter()
                    .map(|(node, _)| BrowseDescription {
                        node_id: node.clone(),
                        browse_direction: BrowseDirection::Forward,
                        reference_type_id: ReferenceTypeId::HierarchicalReferences.into(),
                        include_subtypes: true,
                        node_class_mask: NodeClass::Object as u32 | NodeClass::Variable as u32,
                        result_mask: BrowseResultMask::All as u32,
                    })
                    .collect();
                let mut results =
                    session.browse(&descriptions, 0, None).await.map_err(|e| anyhow::anyhow!("cannot browse: {e}"))?;
                // Follow continuation points until every result is whole.
                loop {
                    let mut pending = Vec::new();
                    for ((_, path), result) in chunk.iter().zip(&results) {
                        for reference in result.references.iter().flatten() {
                            if reference.reference_type_id == ReferenceTypeId::HasProperty {
                                continue;
                            }
                            let node_id = reference.node_id.node_id.clone();
                            if !visited.insert(node_id.clone())
                                || found.len() + next.len() > self.config.max_monitored_items * 4
                            {
                                continue;
                            }
                            let name = reference.browse_name.name.value().clone().unwrap_or_default();
                            let child = if path.is_empty() { name } else { format!("{path}/{name}") };
                            if reference.node_class == NodeClass::Variable {
                                found.push((node_id.clone(), child.clone()));
                            }
                            next.push((node_id, child));
                        }
                        if !result.continuation_point.is_null() {
                            pending.push(result.continuation_point.clone());
                        }
                    }
                    if pending.is_empty() {
                        break;
                    }
                    results = session
                        .browse_next(false, &pending)
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot browse: {e}"))?;
                    // Continuation results no longer line up with `chunk`; give them the parent
                    // path of the first node (servers continue rarely, and only on huge folders).
                    if results.len() != chunk.len() {
                        break;
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        Ok(found)
    }

    /// Values the server's history holds for each variable since its last stored value (or
    /// `from_default_ns`), up to `until_ns`. A server without history is logged once.
    async fn backfill(
        &self,
        session: &Session,
        variables: &[Variable],
        last: &HashMap<String, (i64, Value)>,
        from_default_ns: i64,
        until_ns: i64,
        warnings: &Warnings,
    ) -> Vec<Record> {
        let earliest_ns = until_ns - (self.config.history_backfill_max_s as i64).saturating_mul(1_000_000_000);
        let now = now_ns();
        let mut records = Vec::new();
        for variable in variables {
            let key = variable.node_id.to_string();
            let (from_ns, mut last_value) = match last.get(&key) {
                // One tick (100 ns) past the last value seen: it is not read again.
                Some((time_ns, value)) => (time_ns + 100, Some(value.clone())),
                None => (from_default_ns, None),
            };
            let details = ReadRawModifiedDetails {
                is_read_modified: false,
                start_time: opcua_time(from_ns.max(earliest_ns)),
                end_time: opcua_time(until_ns),
                num_values_per_node: HISTORY_VALUES_PER_READ,
                return_bounds: false,
            };
            let mut continuation = opcua::types::ByteString::null();
            loop {
                let read = HistoryReadValueId {
                    node_id: variable.node_id.clone(),
                    index_range: Default::default(),
                    data_encoding: Default::default(),
                    continuation_point: continuation.clone(),
                };
                let action = HistoryReadAction::ReadRawModifiedDetails(details.clone());
                let results = match session.history_read(action, TimestampsToReturn::Both, false, &[read]).await {
                    Ok(results) => results,
                    Err(error) => {
                        warnings.warn("history", || format!("HistoryRead of {} failed: {error}", variable.node_id));
                        break;
                    }
                };
                let Some(result) = results.into_iter().next() else { break };
                if !result.status_code.is_good() {
                    warnings.warn("history", || {
                        format!("the server offers no history for {}: {}", variable.node_id, result.status_code)
                    });
                    break;
                }
                if let Some(data) = result.history_data.inner_as::<HistoryData>() {
                    for value in data.data_values.iter().flatten() {
                        match record_of(&variable.series, value, last_value.as_ref(), now) {
                            Ok(record) => {
                                last_value = Some(record.value.clone());
                                records.push(record);
                            }
                            Err(Skipped::Unsupported) => {
                                self.counters.unsupported.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(Skipped::Malformed) => {
                                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                if result.continuation_point.is_null() {
                    break;
                }
                continuation = result.continuation_point;
            }
        }
        records
    }
}

/// Notes a back-filled record as its variable's (`key`) last value when it is the newest seen.
fn remember(memory: &mut Memory, key: &str, record: &Record) {
    let newer = memory.last.get(key).is_none_or(|(time_ns, _)| record.timestamp_ns >= *time_ns);
    if newer {
        memory.last.insert(key.to_owned(), (record.timestamp_ns, record.value.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opcua::types::StatusCode;

    #[test]
    fn opcua_times_convert_to_unix_nanoseconds_and_back() {
        let unix_ns = 1_767_225_600_123_456_700;
        assert_eq!(super::unix_ns(&opcua_time(unix_ns)), Some(unix_ns));
        assert_eq!(super::unix_ns(&DateTime::null()), None);
    }

    #[test]
    fn globs_match_browse_paths() {
        assert!(glob_matches("*", "Line1/Temp"));
        assert!(glob_matches("Line1/*/Temp*", "Line1/Boiler/Temperature"));
        assert!(glob_matches("Line?/Temp", "Line2/Temp"));
        assert!(!glob_matches("Line1/*", "Line2/Temp"));
        assert!(!glob_matches("Temp", "Temp2"));
    }

    #[test]
    fn a_value_keeps_its_source_time_and_its_whole_status_code() {
        let series = SeriesKey::new("line/temp");
        let data = DataValue {
            value: Some(Variant::Double(20.5)),
            status: Some(StatusCode::from(0x4095_0000)),
            source_timestamp: Some(opcua_time(1_000)),
            server_timestamp: Some(opcua_time(2_000)),
            ..DataValue::default()
        };
        let record = record_of(&series, &data, None, 9).unwrap();
        assert_eq!(
            (record.timestamp_ns, record.value, record.quality),
            (1_000, Value::F64(20.5), Quality(0x4095_0000))
        );
    }

    #[test]
    fn a_status_without_a_value_repeats_the_last_value_and_server_time_stands_in() {
        let series = SeriesKey::new("line/temp");
        let data = DataValue {
            value: None,
            status: Some(StatusCode::from(0x8000_0000)),
            server_timestamp: Some(opcua_time(2_000)),
            ..DataValue::default()
        };
        let record = record_of(&series, &data, Some(&Value::I64(4)), 9).unwrap();
        assert_eq!((record.timestamp_ns, record.value, record.quality), (2_000, Value::I64(4), Quality::BAD));
        assert_eq!(record_of(&series, &data, None, 9), Err(Skipped::Unsupported));
    }

    #[test]
    fn variants_map_to_diode_values() {
        assert_eq!(value_of(&Variant::UInt32(7)), Ok(Value::I64(7)));
        assert_eq!(value_of(&Variant::Boolean(true)), Ok(Value::Bool(true)));
        assert_eq!(value_of(&Variant::from("run")), Ok(Value::String("run".into())));
        assert_eq!(value_of(&Variant::UInt64(u64::MAX)), Err(Skipped::Malformed));
        assert_eq!(value_of(&Variant::Double(f64::NAN)), Err(Skipped::Malformed));
        assert_eq!(value_of(&Variant::from(vec![1i32, 2])), Err(Skipped::Unsupported));
    }

    #[test]
    fn node_ids_parse_or_say_how_to_write_them() {
        assert!(parse_node_id("ns=2;s=Line1.Temp").is_ok());
        assert!(parse_node_id("i=2258").is_ok());
        assert!(parse_node_id("Line1.Temp").unwrap_err().contains("ns=2;s=Name"));
    }
}

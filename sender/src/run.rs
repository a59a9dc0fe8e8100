//! `diode-sender run`: wires the sources, the durable pipeline, the link thread and the metrics
//! endpoint together, and shuts them down in order so nothing accepted is left behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::Context;
use diode_common::packet;
use diode_common::plant::{PlantConfig, PlantSimulator};
use diode_host::clock::thread_cpu_ns;

use crate::clock::now_ns;
use crate::commit::Committer;
use crate::config::SenderConfig;
use crate::ingest::IngestState;
use crate::keyfiles;
use crate::link::{self, LinkContext, LinkCounters, LinkSettings};
use crate::metrics::{self, SenderMetrics};
use crate::pipeline::{Encoders, Pipeline, PipelineSettings, seal_due};
use crate::schedule::CodingSettings;
use crate::sources::SourceRegistry;
use crate::sources::mqtt::MqttSource;
use crate::sources::opcua::OpcuaSource;

/// How `run` ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Exit once the simulator has produced `simulator.max_records` and all of it is sent.
    pub exit_when_done: bool,
    /// With `exit_when_done`: keep beacons and the carousel going this long before exiting.
    pub linger_ms: u64,
}

const MIB: u64 = 1024 * 1024;
/// How often the sealer checks segment age.
const TICK: Duration = Duration::from_millis(5);
/// How often the simulator produces a batch.
const SIMULATOR_STEP_NS: i64 = 10_000_000;

/// The durable path's settings from the config, in bytes and nanoseconds.
pub fn pipeline_settings(config: &SenderConfig) -> PipelineSettings {
    PipelineSettings {
        sender_id: config.sender_id,
        data_dir: config.data_dir.clone(),
        max_records: config.segments.max_records,
        max_age_ns: config.segments.max_age_ms as i64 * 1_000_000,
        zstd_level: config.segments.zstd_level,
        spool_max_bytes: config.spool.max_mib * MIB,
        fsync: config.spool.fsync,
        max_unsent_bytes: config.segments.max_unsent_mib * MIB,
        retention_bytes: config.segments.retention_mib * MIB,
    }
}

/// How segments become symbols, from `[link]`; an MTU too small for a symbol is an error.
pub fn coding_settings(config: &SenderConfig) -> anyhow::Result<CodingSettings> {
    let symbol_size = packet::max_symbol_size(config.link.mtu)
        .with_context(|| format!("link.mtu = {} leaves no room for a symbol", config.link.mtu))?;
    Ok(CodingSettings {
        sender_id: config.sender_id,
        symbol_size,
        repair_overhead: config.link.repair_overhead,
        min_repair: config.link.min_repair_symbols,
        design_loss_rate: config.link.design_loss_rate,
        interleave_segments: config.link.interleave_segments,
        repeat_repair_after_ns: (config.link.repeat_repair_after_ms > 0)
            .then_some(config.link.repeat_repair_after_ms as i64 * 1_000_000),
    })
}

/// `link.rate_mbit_s` in bytes per second.
pub fn rate_bytes_per_s(config: &SenderConfig) -> f64 {
    config.link.rate_mbit_s * 1e6 / 8.0
}

/// The link thread's settings from `[link]` and `[carousel]`, in bytes and nanoseconds.
fn link_settings(config: &SenderConfig) -> anyhow::Result<LinkSettings> {
    Ok(LinkSettings {
        destination: config.link.destination,
        bind: config.link.bind,
        send_buffer_bytes: config.link.send_buffer_bytes,
        rate_bytes_per_s: rate_bytes_per_s(config),
        coding: coding_settings(config)?,
        carousel_window_segments: config.carousel.window_segments.max(1),
        carousel_window_bytes: config.carousel.window_mib * MIB,
        carousel_window_ns: (config.carousel.window_seconds as i64).saturating_mul(1_000_000_000),
        carousel_rate_bytes_per_s: config
            .carousel
            .enabled
            .then_some(rate_bytes_per_s(config) * config.carousel.rate_fraction),
        beacon_interval_ns: config.link.beacon_interval_ms as i64 * 1_000_000,
        data_dir: config.data_dir.clone(),
    })
}

/// `diode-sender run`: opens the pipeline, starts the link thread, the sources, the listeners and
/// metrics, and runs until stopped (or, with `exit_when_done`, until the simulator is done); then
/// seals what is pending and lets the link drain before returning.
pub fn run(config: SenderConfig, options: RunOptions) -> anyhow::Result<()> {
    let key = keyfiles::load_signing_key(&config.keys.signing_key)?;
    let link_key = keyfiles::load_link_key(&config.keys.link_key)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Before anything starts: an address that cannot be bound stops the sender here, saying
    // which setting to change, instead of leaving it running without that listener.
    let listeners = runtime.block_on(Listeners::bind(&config))?;
    let (segment_tx, segment_rx) = std::sync::mpsc::sync_channel(64);
    let pipeline = Pipeline::open(pipeline_settings(&config), key.clone(), now_ns(), segment_tx)?;
    let epoch = pipeline.epoch().clone();
    tracing::info!(
        sender_id = config.sender_id, epoch = epoch.epoch, key_id = %key.key_id(),
        destination = %config.link.destination, rate_mbit_s = config.link.rate_mbit_s,
        "diode-sender starting"
    );
    let progress = pipeline.progress();
    let counters = Arc::new(LinkCounters::default());
    let stop_link = Arc::new(AtomicBool::new(false));
    let link_context = LinkContext {
        settings: link_settings(&config)?,
        key: Arc::new(key),
        link_key,
        epoch: epoch.clone(),
        segment_dir: pipeline.segment_dir(),
        index: pipeline.index(),
        progress: Arc::clone(&progress),
        counters: Arc::clone(&counters),
        stop: Arc::clone(&stop_link),
    };
    link::open_socket(&link_context.settings)?;
    let link_thread = thread::Builder::new()
        .name("link".into())
        .spawn(move || link::run(link_context, segment_rx))
        .context("cannot start the link thread")?;

    let pipeline = Arc::new(Mutex::new(pipeline));
    let stop_sources = Arc::new(AtomicBool::new(false));
    let source_done = Arc::new(AtomicBool::new(false));
    let sealing = if config.segments.sealer_thread {
        Sealing::Thread { encoder_threads: config.segments.encoder_threads }
    } else {
        Sealing::OnSubmit
    };
    let ticker = spawn_sealer(Arc::clone(&pipeline), Arc::clone(&stop_sources), sealing)?;
    let simulator = if config.simulator.enabled {
        Some(spawn_simulator(&config, Arc::clone(&pipeline), Arc::clone(&stop_sources), Arc::clone(&source_done))?)
    } else {
        source_done.store(true, Ordering::Relaxed);
        None
    };

    let committer = Committer::start(Arc::clone(&pipeline)).context("cannot start the spool committer thread")?;
    let metrics = Arc::new(SenderMetrics {
        sender_id: config.sender_id,
        epoch: epoch.epoch,
        progress: Arc::clone(&progress),
        link: Arc::clone(&counters),
        ingest: Arc::clone(committer.counters()),
        sources: Arc::new(SourceRegistry::default()),
    });
    runtime.block_on(async {
        if let Some(listener) = listeners.metrics {
            let (metrics, max_connections) = (Arc::clone(&metrics), config.metrics.max_connections);
            tokio::spawn(metrics::serve(listener, metrics, max_connections));
        }
        // Before the listeners: a SIGTERM sent as soon as /health answers stops the sender in order.
        let shutdown = shutdown_signal();
        start_sources(&config, &committer, &metrics.sources);
        start_ingest(&config, committer, listeners.ingest);
        wait_for_end(options, &source_done, shutdown).await;
    });

    // Orderly shutdown: stop sources, seal what is pending, let the link drain, then exit.
    stop_sources.store(true, Ordering::Relaxed);
    if let Some(simulator) = simulator {
        simulator.join().map_err(|_| anyhow::anyhow!("the simulator thread panicked"))??;
    }
    ticker.join().map_err(|_| anyhow::anyhow!("the sealing thread panicked"))??;
    pipeline.lock().expect("pipeline lock").flush(now_ns())?;
    if options.exit_when_done && options.linger_ms > 0 {
        tracing::info!(linger_ms = options.linger_ms, "all records sealed; lingering for the carousel");
        wait_until_sent(&progress);
        runtime.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(options.linger_ms)) => {}
                _ = shutdown_signal() => {}
            }
        });
    }
    stop_link.store(true, Ordering::Relaxed);
    drop(pipeline);
    link_thread.join().map_err(|_| anyhow::anyhow!("the link thread panicked"))??;
    tracing::info!(
        records = progress.records_sealed.load(Ordering::Relaxed),
        segments = counters.segments_sent.load(Ordering::Relaxed),
        datagrams = counters.datagrams_sent.load(Ordering::Relaxed),
        "diode-sender stopped"
    );
    Ok(())
}

/// The sockets the configuration asks the sender to listen on, bound by [`Listeners::bind`].
struct Listeners {
    metrics: Option<tokio::net::TcpListener>,
    ingest: IngestListeners,
}

/// `[ingest]`'s listeners.
struct IngestListeners {
    http: Option<tokio::net::TcpListener>,
    tcp: Option<tokio::net::TcpListener>,
    udp: Option<tokio::net::UdpSocket>,
}

impl Listeners {
    /// Binds every address `[metrics]` and `[ingest]` name; the first that cannot be bound is the
    /// error, naming its setting.
    async fn bind(config: &SenderConfig) -> anyhow::Result<Listeners> {
        use diode_host::http_server::bind;
        use tokio::net::UdpSocket;
        let ingest = &config.ingest;
        Ok(Listeners {
            metrics: bind_if_set(config.metrics.listen, bind, "metrics", "metrics.listen").await?,
            ingest: IngestListeners {
                http: bind_if_set(ingest.http_listen, bind, "line protocol over HTTP", "ingest.http_listen").await?,
                tcp: bind_if_set(ingest.tcp_listen, bind, "line protocol over TCP", "ingest.tcp_listen").await?,
                udp: bind_if_set(ingest.udp_listen, UdpSocket::bind, "line protocol over UDP", "ingest.udp_listen")
                    .await?,
            },
        })
    }
}

/// `listen` bound by `bind`, when the configuration sets it; the error says what the socket was
/// for and which setting to change.
async fn bind_if_set<T, F>(
    listen: Option<std::net::SocketAddr>,
    bind: impl FnOnce(std::net::SocketAddr) -> F,
    what: &str,
    setting: &str,
) -> anyhow::Result<Option<T>>
where
    F: std::future::Future<Output = std::io::Result<T>>,
{
    let Some(listen) = listen else { return Ok(None) };
    let bound =
        bind(listen).await.with_context(|| format!("cannot listen for {what} on {listen}; change {setting}"))?;
    Ok(Some(bound))
}

/// Serves the ingest listeners (`[ingest]`) through `committer`.
fn start_ingest(config: &SenderConfig, committer: Committer, listeners: IngestListeners) {
    let ingest = &config.ingest;
    let state = IngestState {
        committer,
        token: ingest.token.as_deref().map(Arc::from),
        max_body_bytes: ingest.max_body_bytes,
        quality_field: ingest.quality_field.clone(),
        quality_tag: ingest.quality_tag.clone(),
    };
    let limits = crate::ingest::IngestLimits::from_config(ingest);
    if let Some(listener) = listeners.http {
        let state = state.clone();
        tokio::spawn(async move { crate::ingest::serve_http(listener, state, &limits).await });
    }
    if let Some(listener) = listeners.tcp {
        let state = state.clone();
        tokio::spawn(async move { crate::ingest::serve_tcp(listener, state, &limits).await });
    }
    if let Some(socket) = listeners.udp {
        tokio::spawn(crate::ingest::serve_udp(socket, state));
    }
}

/// The MQTT and OPC UA clients: each connects out to its plant server and spools through the
/// same group commit as the listeners. Each keeps its state under `<data_dir>/sources/`.
fn start_sources(config: &SenderConfig, committer: &Committer, registry: &SourceRegistry) {
    let state_dir =
        |kind: &str, name: &str| config.data_dir.join("sources").join(format!("{kind}-{}", file_name(name)));
    for mqtt in &config.sources.mqtt {
        let name = mqtt.display_name();
        let source = MqttSource {
            config: mqtt.clone(),
            state_dir: state_dir("mqtt", &name),
            committer: committer.clone(),
            counters: registry.register("mqtt", &name),
        };
        tokio::spawn(async move { report(source.run().await.with_context(|| format!("MQTT source {name} stopped"))) });
    }
    for opcua in &config.sources.opcua {
        let name = opcua.display_name();
        let source = OpcuaSource {
            config: opcua.clone(),
            state_dir: state_dir("opcua", &name),
            committer: committer.clone(),
            counters: registry.register("opcua", &name),
        };
        tokio::spawn(
            async move { report(source.run().await.with_context(|| format!("OPC UA source {name} stopped"))) },
        );
    }
}

/// A source name as a file name: letters, digits, `.`, `-` and `_` kept, anything else `_`.
fn file_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect()
}

fn report(result: anyhow::Result<()>) {
    if let Err(error) = result {
        tracing::error!("{error:#}");
    }
}

fn wait_until_sent(progress: &crate::pipeline::Progress) {
    while progress.sent_through.load(Ordering::Relaxed) < progress.head_sequence.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(20));
    }
}

async fn wait_for_end(options: RunOptions, source_done: &AtomicBool, shutdown: impl std::future::Future<Output = ()>) {
    if !options.exit_when_done {
        shutdown.await;
        return;
    }
    let poll = async {
        while !source_done.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        _ = poll => {}
        _ = shutdown => {}
    }
}

/// SIGINT or SIGTERM (the same handling as the receiver's, from `diode-host`), listened for from
/// this call on.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    diode_host::signals::shutdown_signal("sealing and sending what is pending")
}

/// Where segments are sealed (`segments.sealer_thread`, `segments.encoder_threads`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// On a thread of its own, which has segments encoded by `encoder_threads` threads (0: by
    /// itself) and puts them in the chain in order.
    Thread {
        /// Encoding threads.
        encoder_threads: usize,
    },
    /// On the thread that submits a segment's worth of records; a thread only seals by age.
    OnSubmit,
}

/// Starts the sealing thread, as `run` does (also used by the ingest bench). With
/// [`Sealing::Thread`] it seals every due segment as soon as a submit wakes it (or its age comes),
/// encoding without the pipeline's lock so sources go on meanwhile; with [`Sealing::OnSubmit`] it
/// only seals by age every 5 ms, and submits seal on their own thread. It ends once `stop` is set;
/// seal what is left with [`Pipeline::flush`] after joining it.
pub fn spawn_sealer(
    pipeline: Arc<Mutex<Pipeline>>,
    stop: Arc<AtomicBool>,
    sealing: Sealing,
) -> anyhow::Result<thread::JoinHandle<anyhow::Result<()>>> {
    let own_thread = match sealing {
        Sealing::Thread { encoder_threads } => Some((
            pipeline.lock().expect("pipeline lock").attach_sealer(),
            Encoders::spawn(encoder_threads).context("cannot start the encoding threads")?,
        )),
        Sealing::OnSubmit => None,
    };
    thread::Builder::new()
        .name("sealer".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Some((woken, encoders)) = &own_thread else {
                    pipeline.lock().expect("pipeline lock").tick(now_ns())?;
                    thread::sleep(TICK);
                    continue;
                };
                let _ = woken.recv_timeout(TICK);
                seal_due(&pipeline, encoders, now_ns)?;
            }
            Ok(())
        })
        .context("cannot start the sealing thread")
}

/// The built-in plant: produces records in real time (timestamps are the wall clock), as a
/// real source would, and submits them like any other source.
fn spawn_simulator(
    config: &SenderConfig,
    pipeline: Arc<Mutex<Pipeline>>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
) -> anyhow::Result<thread::JoinHandle<anyhow::Result<()>>> {
    let settings = config.simulator.clone();
    let segment_records = config.segments.max_records;
    let start_ns = settings.start_ns.unwrap_or_else(now_ns);
    thread::Builder::new()
        .name("simulator".into())
        .spawn(move || {
            let mut plant = PlantSimulator::new(PlantConfig {
                seed: settings.seed,
                series_count: settings.series,
                base_rate_hz: settings.rate_hz,
                start_ns,
            });
            // In real time a step is 10 ms of plant time; flat out, a step is sized to about a
            // segment's worth of records (`segments.max_records`), so each spool write (and its
            // fsync) carries a large batch and each spool frame is sealed whole.
            let step_ns = if settings.realtime {
                SIMULATOR_STEP_NS
            } else {
                ((segment_records as f64 / plant.records_per_second().max(1.0)) * 1e9).max(SIMULATOR_STEP_NS as f64)
                    as i64
            };
            let mut produced = 0u64;
            let mut batch = Vec::new();
            let mut until_ns = start_ns;
            let mut full_since: Option<i64> = None;
            // What generating the records cost this thread (the rest of its time is submitting
            // them, as any source does): the harness tells the plant's cost from the sender's.
            let mut generating_cpu_ns = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if settings.max_records > 0 && produced >= settings.max_records {
                    break;
                }
                if batch.is_empty() {
                    until_ns += step_ns;
                    let wait_ns = until_ns - now_ns();
                    if settings.realtime && wait_ns > 0 {
                        thread::sleep(Duration::from_nanos(wait_ns as u64));
                    }
                    let cpu_before_ns = thread_cpu_ns();
                    plant.generate_until(until_ns, &mut batch);
                    if let (Some(before), Some(after)) = (cpu_before_ns, thread_cpu_ns()) {
                        generating_cpu_ns += after.saturating_sub(before);
                    }
                    if settings.max_records > 0 {
                        batch.truncate((settings.max_records - produced) as usize);
                    }
                }
                let count = batch.len() as u64;
                let result = pipeline.lock().expect("pipeline lock").submit(&mut batch, now_ns());
                match result {
                    Ok(()) => {
                        produced += count;
                        full_since = None;
                    }
                    Err(error) if error.is_full() => {
                        // A real plant source would buffer or drop; the simulator waits, like a
                        // collector retrying after 503, and regenerates nothing.
                        if full_since.is_none() {
                            tracing::warn!("the simulator is waiting: {error}");
                        }
                        full_since.get_or_insert(now_ns());
                        thread::sleep(Duration::from_millis(50));
                    }
                    Err(error) => return Err(error).context("the simulator could not submit records"),
                }
            }
            tracing::info!(records = produced, generating_cpu_ms = generating_cpu_ns / 1_000_000, "simulator finished");
            done.store(true, Ordering::Relaxed);
            Ok(())
        })
        .context("cannot start the simulator thread")
}

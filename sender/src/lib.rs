//! diode-sender: the OT appliance. Accepts historian records, keeps them durably, seals them into
//! signed segments and sends them one way over UDP with forward error correction.
//!
//! Map: `config` (TOML), `keyfiles` (keygen and key loading), `framed_log` (the checksummed
//! append-only storage), `pipeline` (spool → sealer → segment log), `line_protocol` (the InfluxDB
//! line protocol parser), `ingest` (line protocol listeners) and `commit` (their group commit into
//! the spool), `sources` (MQTT and OPC UA clients towards plant servers), `import` (CSV),
//! `schedule` (FEC, interleaving, carousel and pacing, pure), `link` (the sending thread), `run`
//! (wiring), `resend`, `metrics`.
#![forbid(unsafe_code)]

/// This build of diode-sender: its version and the git commit it was built from, as `--version`
/// prints it and as its beacons carry it to the receiver.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("DIODE_GIT_COMMIT"), ")");

pub mod clock;
pub mod commit;
pub mod config;
pub mod framed_log;
pub mod import;
pub mod ingest;
pub mod keyfiles;
pub mod line_protocol;
pub mod link;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod resend;
pub mod run;
pub mod schedule;
pub mod sources;

//! Why a receiver configuration was refused ([`ConfigError`]): apart from `config`, so the
//! sections checked in their own modules (the sinks) name the same error without importing the
//! configuration that includes them.

use std::path::PathBuf;

use diode_common::keys::KeyError;

use crate::time::TimeError;

/// Why a config file was refused, or a file it names could not be read. Messages name the file
/// or the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file is missing or unreadable.
    #[error("cannot read config file {path}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown or misspelt key, or a value of the wrong type;
    /// the source names the line.
    #[error("config file {path} is not valid")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// What the TOML reader said, with the line.
        source: toml::de::Error,
    },
    /// The file parses but a setting is out of its range; the source names it.
    #[error("config file {path} is not valid")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The setting that failed its check.
        source: Box<ConfigError>,
    },
    /// A setting out of its range or missing: the message names it and its range.
    #[error("{0}")]
    Setting(&'static str),
    /// A trusted key's `valid_from` or `valid_until` is not an RFC 3339 time.
    #[error("{key}: validity {text:?} is not an RFC 3339 time such as 2026-01-01T00:00:00Z")]
    Validity {
        /// The trusted key's `public_key` file, naming the entry.
        key: PathBuf,
        /// The text given.
        text: String,
        /// Why it does not parse.
        source: TimeError,
    },
    /// A trusted key's `public_key` file is missing or unreadable.
    #[error("cannot read trusted key {path}")]
    ReadTrustedKey {
        /// The public key file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A trusted key's file does not hold a public key as `diode-sender keygen` writes it.
    #[error(transparent)]
    TrustedKey(#[from] KeyError),
    /// A validity time that passed the check at load could not be read back (not expected).
    #[error(transparent)]
    Time(#[from] TimeError),
    /// A sink setting out of its range: the message names the sink and the setting.
    #[error("{0}")]
    Sink(String),
}

//! Mutual TLS for replication: `diode-receiver tls-keygen` writes a private certificate authority
//! and the certificates it signs; an upstream accepts only clients whose certificate that
//! authority signed, and a downstream accepts only an upstream whose certificate it signed for the
//! name it dials. rustls with the `ring` provider, TLS 1.3 only (QUIC requires it).
//!
//! Files (PEM): `ca.crt` and `ca.key` from `tls-keygen ca`; `NAME.crt` and `NAME.key` from
//! `tls-keygen cert`. Private keys are written 0600 under a temporary name, synced, then renamed
//! into place, so a crash never leaves half a key; a private key that group or others may read is
//! refused at start with the `chmod` to run.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::protocol::ALPN;

/// The certificate authority's certificate in its directory: given to every receiver as
/// `ca_certificate`.
pub const CA_CERTIFICATE_FILE: &str = "ca.crt";
/// The certificate authority's private key in its directory (mode 0600): only `tls-keygen cert`
/// reads it; no receiver needs it.
pub const CA_PRIVATE_KEY_FILE: &str = "ca.key";
/// The authority's subject; fixed, so a certificate signed later names the same issuer.
const CA_COMMON_NAME: &str = "diode replication CA";
/// Years a new certificate (authority or receiver) is valid for.
const VALIDITY_YEARS: i32 = 10;
/// QUIC: a ping when idle this long keeps NAT and firewall state alive; silence for
/// [`IDLE_TIMEOUT`] ends the connection (and a downstream reconnects).
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// QUIC: a connection silent this long ends (see [`KEEP_ALIVE`]).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// QUIC flow control: what one stream and one connection may receive in flight, large enough for
/// the largest segment. What a sender buffers is bounded by its send window (for an upstream,
/// `serve.send_window_kib`; for a downstream, which sends only small reports, this default).
const STREAM_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
/// QUIC flow control: what one connection may receive in flight, over all its streams.
const CONNECTION_WINDOW_BYTES: u32 = 32 * 1024 * 1024;

/// Why certificates could not be written or loaded; each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file is missing or unreadable: make it with `tls-keygen`, or fix
    /// the path in the config.
    #[error("cannot read {path}: {source}; {remedy}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
        /// What to run to make the file.
        remedy: &'static str,
    },
    /// The file reads but holds no PEM certificate or private key: a wrong path (a key given
    /// as the certificate, or the reverse) or a damaged file.
    #[error("{path} holds no {what} in PEM form; {remedy}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What it should hold: `certificate` or `private key`.
        what: &'static str,
        /// What to run to make the file.
        remedy: &'static str,
    },
    /// A private key's permissions let group or others read it; it is refused until it is
    /// `chmod 600`.
    #[error("private key {path} has mode {mode:o}; private keys must be private: run `chmod 600 {path}`")]
    ReadableByOthers {
        /// The private key file.
        path: PathBuf,
        /// Its permission bits, such as 644 in octal.
        mode: u32,
    },
    /// `tls-keygen` would overwrite a certificate or key; `--force` replaces it.
    #[error("{path} already exists; pass --force to replace it")]
    Exists {
        /// The file that exists.
        path: PathBuf,
    },
    /// `tls-keygen` could not create its folder or write a file (permissions, a full disk).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// `tls-keygen` could not generate a key or sign a certificate.
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The certificate and private key load but TLS refuses them together, most often because
    /// the key is not the certificate's: give the `NAME.key` made with that `NAME.crt`.
    #[error("the certificate and key {certificate} / {private_key} cannot be used for TLS: {source}")]
    Rustls {
        /// The certificate file.
        certificate: PathBuf,
        /// The private key file.
        private_key: PathBuf,
        /// What TLS said.
        source: rustls::Error,
    },
    /// The authority's certificate or key cannot be used: not a valid CA certificate, a
    /// `ca.key` that is not `ca.crt`'s, or a TLS setup QUIC cannot run on.
    #[error("the certificate authority {path} cannot be used: {reason}")]
    Authority {
        /// The authority's certificate or key file (or the receiver's certificate, when QUIC
        /// refuses the TLS setup).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A name given to `tls-keygen cert` is neither a DNS name of `[A-Za-z0-9._-]` nor an IP
    /// address.
    #[error("{0:?} is not a usable name: use letters, digits, '.', '_' and '-' (a DNS name or an IP address)")]
    Name(String),
}

/// The three files of one side of a replication connection (`[serve]` or `[upstream]`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// This receiver's certificate (`NAME.crt`).
    pub certificate: PathBuf,
    /// Its private key (`NAME.key`, mode 0600).
    pub private_key: PathBuf,
    /// The authority that signed the peers' certificates (`ca.crt`).
    pub ca_certificate: PathBuf,
}

const KEYGEN_REMEDY: &str = "make it with `diode-receiver tls-keygen` (see the README, \"Further replicas over QUIC\")";

/// `tls-keygen ca`: a new private certificate authority in `dir`. Returns the files written.
pub fn generate_authority(dir: &Path, force: bool) -> Result<Vec<PathBuf>, TlsError> {
    let certificate = dir.join(CA_CERTIFICATE_FILE);
    let private_key = dir.join(CA_PRIVATE_KEY_FILE);
    refuse_existing(&[&certificate, &private_key], force)?;
    let key = KeyPair::generate()?;
    let issued = authority_params().self_signed(&key)?;
    create_dir(dir)?;
    write_atomically(&certificate, issued.pem().as_bytes(), 0o644)?;
    write_atomically(&private_key, key.serialize_pem().as_bytes(), 0o600)?;
    Ok(vec![certificate, private_key])
}

/// `tls-keygen cert`: a certificate for `name` (and `more_names`) signed by the authority in
/// `ca_dir`, written as `dir/NAME.crt` and `dir/NAME.key`. It serves both ways: an upstream
/// presents it to downstreams (which dial one of its names) and a downstream to its upstream.
pub fn generate_certificate(
    ca_dir: &Path,
    name: &str,
    more_names: &[String],
    dir: &Path,
    force: bool,
) -> Result<Vec<PathBuf>, TlsError> {
    for candidate in std::iter::once(name).chain(more_names.iter().map(String::as_str)) {
        if !super::protocol::is_valid_name(candidate) && candidate.parse::<std::net::IpAddr>().is_err() {
            return Err(TlsError::Name(candidate.to_owned()));
        }
    }
    let certificate = dir.join(format!("{name}.crt"));
    let private_key = dir.join(format!("{name}.key"));
    refuse_existing(&[&certificate, &private_key], force)?;
    let ca_key_path = ca_dir.join(CA_PRIVATE_KEY_FILE);
    let ca_key_pem = read_private(&ca_key_path)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)
        .map_err(|error| TlsError::Authority { path: ca_key_path.clone(), reason: error.to_string() })?;
    check_authority_matches(&ca_dir.join(CA_CERTIFICATE_FILE), &ca_key)?;
    let issuer = Issuer::new(authority_params(), ca_key);

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = std::iter::once(name)
        .chain(more_names.iter().map(String::as_str))
        .map(|candidate| match candidate.parse::<std::net::IpAddr>() {
            Ok(address) => Ok(SanType::IpAddress(address)),
            Err(_) => Ok(SanType::DnsName(candidate.try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params);
    let key = KeyPair::generate()?;
    let issued = params.signed_by(&key, &issuer)?;
    create_dir(dir)?;
    write_atomically(&certificate, issued.pem().as_bytes(), 0o644)?;
    write_atomically(&private_key, key.serialize_pem().as_bytes(), 0o600)?;
    Ok(vec![certificate, private_key])
}

/// The authority's parameters: the same every time, so certificates signed in later runs name the
/// issuer exactly as the authority's certificate names itself.
fn authority_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params);
    params
}

fn set_validity(params: &mut CertificateParams) {
    // The current year, near enough (the validity starts on January 1st of the year before).
    const SECONDS_PER_YEAR: i64 = 31_556_952;
    let year = 1970 + (crate::time::now_ns() / 1_000_000_000 / SECONDS_PER_YEAR) as i32;
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + VALIDITY_YEARS, 1, 1);
}

/// Refuses a `ca.key` that does not belong to the `ca.crt` beside it (certificates signed with it
/// would be refused by every peer).
fn check_authority_matches(certificate_path: &Path, key: &KeyPair) -> Result<(), TlsError> {
    let certificates = read_certificates(certificate_path)?;
    let stored = certificates.first().expect("read_certificates returns at least one");
    // The certificate's subject public key holds the key's public point verbatim.
    let public_key = key.public_key_raw();
    if !stored.as_ref().windows(public_key.len()).any(|window| window == public_key) {
        return Err(TlsError::Authority {
            path: certificate_path.to_owned(),
            reason: format!("it does not hold the public key of {CA_PRIVATE_KEY_FILE} beside it"),
        });
    }
    Ok(())
}

fn refuse_existing(paths: &[&PathBuf], force: bool) -> Result<(), TlsError> {
    match paths.iter().find(|path| path.exists()) {
        Some(path) if !force => Err(TlsError::Exists { path: (*path).clone() }),
        _ => Ok(()),
    }
}

fn create_dir(dir: &Path) -> Result<(), TlsError> {
    fs::create_dir_all(dir).map_err(|source| TlsError::Write { path: dir.to_owned(), source })
}

/// Writes `contents` to a temporary name with `mode`, syncs it, renames it to `path` and syncs the
/// directory: the file is either whole or absent.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let error = |source| TlsError::Write { path: path.to_owned(), source };
    let mut staged_name = path.file_name().expect("a file name").to_os_string();
    staged_name.push(".new");
    let staged = path.with_file_name(staged_name);
    let _ = fs::remove_file(&staged);
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&staged).map_err(error)?;
    // The mode given to open is masked by the umask; set it so 0600 is 0600 and 0644 is 0644.
    file.set_permissions(fs::Permissions::from_mode(mode)).map_err(error)?;
    file.write_all(contents).map_err(error)?;
    file.sync_all().map_err(error)?;
    fs::rename(&staged, path).map_err(error)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir).and_then(|directory| directory.sync_all()).map_err(error)
}

fn read_private(path: &Path) -> Result<String, TlsError> {
    let read_error = |source| TlsError::Read { path: path.to_owned(), source, remedy: KEYGEN_REMEDY };
    let mode = fs::metadata(path).map_err(read_error)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError::ReadableByOthers { path: path.to_owned(), mode });
    }
    fs::read_to_string(path).map_err(read_error)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes =
        fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source, remedy: KEYGEN_REMEDY })?;
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(&bytes).filter_map(Result::ok).collect();
    if certificates.is_empty() {
        return Err(TlsError::Pem { path: path.to_owned(), what: "certificate", remedy: KEYGEN_REMEDY });
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read_private(path)?;
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|_| TlsError::Pem {
        path: path.to_owned(),
        what: "private key",
        remedy: KEYGEN_REMEDY,
    })
}

fn roots(path: &Path) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in read_certificates(path)? {
        roots
            .add(certificate)
            .map_err(|error| TlsError::Authority { path: path.to_owned(), reason: error.to_string() })?;
    }
    Ok(Arc::new(roots))
}

/// rustls on *ring*, as everywhere in diode (no aws-lc-rs and its C build on the appliances).
/// rustls 0.23.48 marks this provider deprecated because *ring* has no post-quantum key exchange:
/// replication's QUIC handshakes use classical ECDHE (X25519, P-256, P-384), authenticated by the
/// pair's own certificate authority.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn rustls_error(files: &TlsFiles) -> impl Fn(rustls::Error) -> TlsError + '_ {
    |source| TlsError::Rustls { certificate: files.certificate.clone(), private_key: files.private_key.clone(), source }
}

/// QUIC transport settings both sides use.
fn transport(send_window_bytes: u64) -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("30 s is a valid idle timeout")))
        .stream_receive_window(STREAM_WINDOW_BYTES.into())
        .receive_window(CONNECTION_WINDOW_BYTES.into())
        .send_window(send_window_bytes)
        .max_concurrent_uni_streams(0u8.into())
        .max_concurrent_bidi_streams(1u8.into());
    Arc::new(transport)
}

/// The upstream's QUIC server configuration: presents `files.certificate`, and requires every
/// client to present a certificate signed by `files.ca_certificate`. Each connection buffers at
/// most `send_window_bytes` not yet acknowledged by its downstream.
pub fn server_config(files: &TlsFiles, send_window_bytes: u64) -> Result<quinn::ServerConfig, TlsError> {
    let chain = read_certificates(&files.certificate)?;
    let key = read_key(&files.private_key)?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(&files.ca_certificate)?, provider())
            .build()
            .map_err(|error| TlsError::Authority { path: files.ca_certificate.clone(), reason: error.to_string() })?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(rustls_error(files))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(rustls_error(files))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|error| TlsError::Authority { path: files.certificate.clone(), reason: error.to_string() })?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport(send_window_bytes));
    Ok(config)
}

/// The downstream's QUIC client configuration: presents `files.certificate`, and accepts only an
/// upstream certificate signed by `files.ca_certificate` for the name it dials.
pub fn client_config(files: &TlsFiles) -> Result<quinn::ClientConfig, TlsError> {
    let chain = read_certificates(&files.certificate)?;
    let key = read_key(&files.private_key)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(rustls_error(files))?
        .with_root_certificates(roots(&files.ca_certificate)?)
        .with_client_auth_cert(chain, key)
        .map_err(rustls_error(files))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|error| TlsError::Authority { path: files.certificate.clone(), reason: error.to_string() })?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport(u64::from(CONNECTION_WINDOW_BYTES)));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_keys_are_written_0600_and_certificates_0644_and_nothing_is_replaced_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        generate_authority(&ca, false).unwrap();
        let files = generate_certificate(&ca, "dmz-replica", &["127.0.0.1".into()], dir.path(), false).unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ca.join(CA_PRIVATE_KEY_FILE)), 0o600);
        assert_eq!(mode(&ca.join(CA_CERTIFICATE_FILE)), 0o644);
        assert_eq!((mode(&files[0]), mode(&files[1])), (0o644, 0o600));
        assert!(matches!(generate_authority(&ca, false), Err(TlsError::Exists { .. })));
        assert!(matches!(
            generate_certificate(&ca, "dmz-replica", &[], dir.path(), false),
            Err(TlsError::Exists { .. })
        ));
        assert!(
            fs::read_dir(dir.path()).unwrap().all(|entry| !entry.unwrap().path().to_string_lossy().ends_with(".new"))
        );
    }

    #[test]
    fn a_signed_certificate_loads_on_both_sides_and_a_readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        generate_authority(&ca, false).unwrap();
        generate_certificate(&ca, "node", &[], dir.path(), false).unwrap();
        let files = TlsFiles {
            certificate: dir.path().join("node.crt"),
            private_key: dir.path().join("node.key"),
            ca_certificate: ca.join(CA_CERTIFICATE_FILE),
        };
        server_config(&files, 1 << 20).unwrap();
        client_config(&files).unwrap();
        fs::set_permissions(&files.private_key, fs::Permissions::from_mode(0o640)).unwrap();
        let error = client_config(&files).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }

    #[test]
    fn a_key_of_another_authority_is_refused_when_signing() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("a"), dir.path().join("b"));
        generate_authority(&first, false).unwrap();
        generate_authority(&second, false).unwrap();
        fs::copy(second.join(CA_PRIVATE_KEY_FILE), first.join(CA_PRIVATE_KEY_FILE)).unwrap();
        let error = generate_certificate(&first, "node", &[], dir.path(), false).unwrap_err().to_string();
        assert!(error.contains("public key"), "{error}");
    }

    /// Certificates for `name` from a new authority in `dir/authority`.
    fn files(dir: &Path, authority: &str, name: &str) -> TlsFiles {
        let ca = dir.join(authority);
        if !ca.join(CA_CERTIFICATE_FILE).exists() {
            generate_authority(&ca, false).unwrap();
        }
        generate_certificate(&ca, name, &[], &ca, false).unwrap();
        TlsFiles {
            certificate: ca.join(format!("{name}.crt")),
            private_key: ca.join(format!("{name}.key")),
            ca_certificate: ca.join(CA_CERTIFICATE_FILE),
        }
    }

    /// Connects a client with `client` files to a server with `server` files over QUIC on
    /// loopback; returns (the server's handshake result, the client's).
    fn handshake(server: &TlsFiles, client: &TlsFiles) -> (Result<(), String>, Result<(), String>) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let listen: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
            let server_endpoint = quinn::Endpoint::server(server_config(server, 1 << 20).unwrap(), listen).unwrap();
            let address = server_endpoint.local_addr().unwrap();
            let mut client_endpoint = quinn::Endpoint::client(listen).unwrap();
            client_endpoint.set_default_client_config(client_config(client).unwrap());
            let accepting = async {
                let incoming = server_endpoint.accept().await.unwrap();
                incoming.await.map(|_| ()).map_err(|error| error.to_string())
            };
            let connecting = async {
                let connection = client_endpoint.connect(address, "upstream").unwrap().await;
                let connection = connection.map_err(|error| error.to_string())?;
                // With TLS 1.3 the client finishes first; a refused certificate then closes it.
                let (mut send, _) = connection.open_bi().await.map_err(|error| error.to_string())?;
                send.write_all(b"x").await.map_err(|error| error.to_string())?;
                connection.closed().await;
                Ok::<(), String>(())
            };
            let (server_result, client_result) = tokio::join!(
                tokio::time::timeout(Duration::from_secs(10), accepting),
                tokio::time::timeout(Duration::from_secs(10), connecting)
            );
            (server_result.unwrap_or(Err("no handshake within 10 s".to_owned())), client_result.unwrap_or(Ok(())))
        })
    }

    #[test]
    fn quic_handshakes_succeed_with_the_authority_and_fail_with_a_certificate_from_another() {
        let dir = tempfile::tempdir().unwrap();
        let server = files(dir.path(), "ours", "upstream");
        let member = files(dir.path(), "ours", "site-a");
        let stranger =
            TlsFiles { ca_certificate: server.ca_certificate.clone(), ..files(dir.path(), "theirs", "site-x") };
        let impostor =
            TlsFiles { ca_certificate: server.ca_certificate.clone(), ..files(dir.path(), "theirs", "upstream") };
        assert_eq!(handshake(&server, &member).0, Ok(()));
        // The upstream refuses a client certificate its authority did not sign.
        let (server_result, _) = handshake(&server, &stranger);
        assert!(server_result.is_err(), "the upstream accepted a stranger");
        // A downstream refuses an upstream whose certificate its authority did not sign.
        let (_, client_result) = handshake(&impostor, &member);
        let error = client_result.unwrap_err();
        assert!(error.contains("certificate") || error.contains("Certificate"), "{error}");
    }

    #[test]
    fn names_that_are_neither_dns_names_nor_addresses_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error = generate_certificate(dir.path(), "../etc/passwd", &[], dir.path(), false).unwrap_err();
        assert!(matches!(error, TlsError::Name(_)));
    }
}

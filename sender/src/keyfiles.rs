//! Key files on disk: `keygen` writes them, `run` and `resend` read them.
//!
//! `signing.key` (the ed25519 seed) and `link.key` (the 32-byte MAC key both appliances share) are
//! written with mode 0600; `signing.pub` is public and goes to the receiver and to auditors.
//!
//! `keygen` writes every file under a temporary name, syncs it, then renames it into place and
//! syncs the directory, so no file is ever half written; `signing.key` is renamed last, and loading
//! it checks that a `signing.pub` beside it belongs to it, so a crash between the renames shows as a
//! clear error instead of a public key that does not match.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use diode_common::keys::{SenderKey, encode_hex, parse_public_key};
use diode_common::packet::LinkKey;
use diode_host::keyfile::read_secret_key;
use zeroize::Zeroizing;

/// The ed25519 secret key that signs segments and beacons; stays on the sender, mode 0600.
pub const SIGNING_KEY_FILE: &str = "signing.key";
/// Its public half, to copy to the receiver's trusted keys.
pub const PUBLIC_KEY_FILE: &str = "signing.pub";
/// The link key shared with the receiver (copied to it), mode 0600.
pub const LINK_KEY_FILE: &str = "link.key";
/// Suffix of a key file being written; renamed away once complete.
const STAGING_SUFFIX: &str = ".new";
/// How to get key files when they are missing.
const KEYGEN_REMEDY: &str = "create keys with `diode-sender keygen --dir DIR`";

/// What `keygen` wrote.
pub struct GeneratedKeys {
    /// The new signing key's id, as the receiver's trusted keys and audits name it.
    pub key_id: String,
    /// The files written.
    pub files: Vec<PathBuf>,
}

/// Writes a fresh signing key pair and link key into `dir`. Refuses to replace existing files
/// unless `force`, because a replaced link key silently cuts the link and a replaced signing key
/// needs the receivers' trust updated.
///
/// With `signing_only`, only a new signing key pair is written and the link key is left alone: the
/// first step of a key rotation (docs/key-rotation.md).
pub fn generate(dir: &Path, force: bool, signing_only: bool) -> anyhow::Result<GeneratedKeys> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create key directory {}", dir.display()))?;
    // Renamed in this order: the secret signing key last (see the module documentation).
    let mut paths = vec![dir.join(PUBLIC_KEY_FILE)];
    if !signing_only {
        paths.push(dir.join(LINK_KEY_FILE));
    }
    paths.push(dir.join(SIGNING_KEY_FILE));
    if !force && let Some(existing) = paths.iter().find(|p| p.exists()) {
        bail!("{} already exists; pass --force to replace the keys in {}", existing.display(), dir.display());
    }
    let key = SenderKey::from_seed(*random_bytes()?);
    let seed = Zeroizing::new(key.seed());
    let mut contents: Vec<(&PathBuf, Zeroizing<String>, u32)> =
        vec![(&paths[0], Zeroizing::new(encode_hex(key.public_key().as_bytes())), 0o644)];
    if !signing_only {
        contents.push((&paths[1], Zeroizing::new(encode_hex(&*random_bytes()?)), 0o600));
    }
    contents.push((paths.last().expect("three paths"), Zeroizing::new(encode_hex(&*seed)), 0o600));
    for (path, text, mode) in &contents {
        write_staged(path, text, *mode)?;
    }
    for (path, _, _) in &contents {
        fs::rename(staged(path), path).with_context(|| format!("cannot move the new {} into place", path.display()))?;
    }
    fs::File::open(dir)
        .and_then(|directory| directory.sync_all())
        .with_context(|| format!("cannot sync key directory {}", dir.display()))?;
    Ok(GeneratedKeys { key_id: key.key_id().to_string(), files: paths })
}

fn random_bytes() -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).map_err(|e| anyhow::anyhow!("the operating system's random source failed: {e}"))?;
    Ok(bytes)
}

fn staged(path: &Path) -> PathBuf {
    let mut name = path.file_name().expect("a key file name").to_os_string();
    name.push(STAGING_SUFFIX);
    path.with_file_name(name)
}

/// Writes `text` and a newline to the staging name of `path`, with `mode`, and syncs it.
fn write_staged(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let staged = staged(path);
    let _ = fs::remove_file(&staged);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&staged)
        .with_context(|| format!("cannot create {}", staged.display()))?;
    // The mode given to open is masked by the umask; set it explicitly so 0600 really is 0600.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set permissions of {}", staged.display()))?;
    writeln!(file, "{text}").with_context(|| format!("cannot write {}", staged.display()))?;
    file.sync_all().with_context(|| format!("cannot sync {}", staged.display()))?;
    Ok(())
}

/// Reads `signing.key`; refuses a file that others can read, and a `signing.pub` beside it that
/// is not its public key (a `keygen` interrupted between its renames).
pub fn load_signing_key(path: &Path) -> anyhow::Result<SenderKey> {
    let key = SenderKey::from_seed(*read_secret_key(path, KEYGEN_REMEDY)?);
    let public_path = path.with_file_name(PUBLIC_KEY_FILE);
    if let Ok(contents) = fs::read(&public_path) {
        let public = parse_public_key(&contents, &public_path.display().to_string())?;
        if public != key.public_key() {
            bail!(
                "{} is not the public key of {} (was `keygen` interrupted?); run `diode-sender keygen --force \
                 --dir {}` and give the receivers the new signing.pub",
                public_path.display(),
                path.display(),
                path.parent().unwrap_or(Path::new(".")).display()
            );
        }
    }
    Ok(key)
}

/// Reads `link.key`; refuses a file that others can read.
pub fn load_link_key(path: &Path) -> anyhow::Result<LinkKey> {
    Ok(LinkKey::from_bytes(*read_secret_key(path, KEYGEN_REMEDY)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_private_files_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let generated = generate(dir.path(), false, false).unwrap();
        assert_eq!(generated.key_id.len(), 16);
        for name in [SIGNING_KEY_FILE, LINK_KEY_FILE] {
            let mode = fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        let key = load_signing_key(&dir.path().join(SIGNING_KEY_FILE)).unwrap();
        assert_eq!(key.key_id().to_string(), generated.key_id);
        load_link_key(&dir.path().join(LINK_KEY_FILE)).unwrap();
    }

    #[test]
    fn keygen_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate(dir.path(), false, false).unwrap();
        let error = generate(dir.path(), false, false).err().unwrap().to_string();
        assert!(error.contains("--force"), "{error}");
        let second = generate(dir.path(), true, false).unwrap();
        assert_ne!(first.key_id, second.key_id);
    }

    #[test]
    fn a_signing_only_keygen_keeps_the_link_key() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), false, false).unwrap();
        let link_key = fs::read(dir.path().join(LINK_KEY_FILE)).unwrap();
        let rotated = generate(&dir.path().join("next"), false, true).unwrap();
        assert_eq!(rotated.files.len(), 2);
        assert!(!dir.path().join("next").join(LINK_KEY_FILE).exists());
        assert!(generate(&dir.path().join("next"), false, true).is_err(), "refuses to overwrite");
        assert_eq!(fs::read(dir.path().join(LINK_KEY_FILE)).unwrap(), link_key);
    }

    #[test]
    fn keygen_force_leaves_a_matching_pair_and_no_staging_files() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), false, false).unwrap();
        let second = generate(dir.path(), true, false).unwrap();
        let key = load_signing_key(&dir.path().join(SIGNING_KEY_FILE)).unwrap();
        assert_eq!(key.key_id().to_string(), second.key_id);
        let names: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
        assert!(names.iter().all(|name| !name.ends_with(STAGING_SUFFIX)), "{names:?}");
    }

    #[test]
    fn a_public_key_that_does_not_match_the_signing_key_is_named() {
        // What a crash between keygen's renames would leave: the new signing.pub, the old key.
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), false, false).unwrap();
        let other = tempfile::tempdir().unwrap();
        generate(other.path(), false, false).unwrap();
        fs::copy(other.path().join(PUBLIC_KEY_FILE), dir.path().join(PUBLIC_KEY_FILE)).unwrap();
        let error = load_signing_key(&dir.path().join(SIGNING_KEY_FILE)).err().unwrap().to_string();
        assert!(error.contains("is not the public key") && error.contains("keygen --force"), "{error}");
    }

    #[test]
    fn a_world_readable_signing_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), false, false).unwrap();
        let path = dir.path().join(SIGNING_KEY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = load_signing_key(&path).err().unwrap().to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }
}

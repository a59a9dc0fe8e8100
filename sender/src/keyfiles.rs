//! Key files on disk: `keygen` writes them, `run` and `resend` read them.
//!
//! `signing.key` (the ed25519 seed) and `link.key` (the 32-byte MAC key both appliances share) are
//! written with mode 0600; `signing.pub` is public and goes to the receiver and to auditors.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use diode_common::keys::{SenderKey, encode_hex, parse_key_bytes};
use diode_common::packet::LinkKey;

pub const SIGNING_KEY_FILE: &str = "signing.key";
pub const PUBLIC_KEY_FILE: &str = "signing.pub";
pub const LINK_KEY_FILE: &str = "link.key";

/// What `keygen` wrote.
pub struct GeneratedKeys {
    pub key_id: String,
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
    let mut paths = vec![dir.join(SIGNING_KEY_FILE), dir.join(PUBLIC_KEY_FILE)];
    if !signing_only {
        paths.push(dir.join(LINK_KEY_FILE));
    }
    if !force && let Some(existing) = paths.iter().find(|p| p.exists()) {
        bail!("{} already exists; pass --force to replace the keys in {}", existing.display(), dir.display());
    }
    let key = SenderKey::from_seed(random_bytes()?);
    write_key_file(&paths[0], &key.seed(), 0o600)?;
    write_key_file(&paths[1], key.public_key().as_bytes(), 0o644)?;
    if !signing_only {
        write_key_file(&paths[2], &random_bytes()?, 0o600)?;
    }
    Ok(GeneratedKeys { key_id: key.key_id().to_string(), files: paths })
}

fn random_bytes() -> anyhow::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the operating system's random source failed: {e}"))?;
    Ok(bytes)
}

fn write_key_file(path: &Path, key: &[u8], mode: u32) -> anyhow::Result<()> {
    let _ = fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // The mode given to open is masked by the umask; set it explicitly so 0600 really is 0600.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set permissions of {}", path.display()))?;
    writeln!(file, "{}", encode_hex(key)).with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all().with_context(|| format!("cannot sync {}", path.display()))?;
    Ok(())
}

fn read_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    let contents = fs::read(path).with_context(|| {
        format!("cannot read key file {}; create keys with `diode-sender keygen --dir DIR`", path.display())
    })?;
    Ok(parse_key_bytes(&contents, &path.display().to_string())?)
}

/// Reads `signing.key`; refuses a file that others can read.
pub fn load_signing_key(path: &Path) -> anyhow::Result<SenderKey> {
    refuse_readable_by_others(path)?;
    Ok(SenderKey::from_seed(read_key(path)?))
}

pub fn load_link_key(path: &Path) -> anyhow::Result<LinkKey> {
    refuse_readable_by_others(path)?;
    Ok(LinkKey::from_bytes(read_key(path)?))
}

fn refuse_readable_by_others(path: &Path) -> anyhow::Result<()> {
    let metadata = fs::metadata(path).with_context(|| {
        format!("cannot read key file {}; create keys with `diode-sender keygen --dir DIR`", path.display())
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "key file {} has mode {mode:o}; secret keys must be private: run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    Ok(())
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
    fn a_world_readable_signing_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), false, false).unwrap();
        let path = dir.path().join(SIGNING_KEY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = load_signing_key(&path).err().unwrap().to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }
}

//! Secret key files (`signing.key`, `link.key`): refused when others may read them, and every
//! copy of the secret made while reading (file text, decoded bytes) is wiped.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use diode_common::keys::{KeyError, parse_key_bytes};
use zeroize::Zeroizing;

/// Why a secret key file cannot be used; each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file is missing or unreadable.
    #[error("cannot read key file {path}: {source}; {remedy}")]
    Unreadable {
        /// The key file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
        /// How to get the file (which command writes it, or where to copy it from).
        remedy: String,
    },
    /// Group or others have some permission on the file.
    #[error("key file {path} has mode {mode:o}; secret keys must be private: run `chmod 600 {path}`")]
    ReadableByOthers {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The contents are not a 32-byte key.
    #[error(transparent)]
    Malformed(#[from] KeyError),
}

/// Reads the 32-byte secret in `path` (64 hex digits or 32 raw bytes), refusing a file that group
/// or others can access. `remedy` tells the operator how to get the file if it is missing.
/// The returned key is wiped when dropped, as is the file text read on the way.
pub fn read_secret_key(path: &Path, remedy: &str) -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
    let unreadable = |source| KeyFileError::Unreadable { path: path.to_owned(), source, remedy: remedy.to_owned() };
    let metadata = fs::metadata(path).map_err(unreadable)?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::ReadableByOthers { path: path.to_owned(), mode });
    }
    let contents = Zeroizing::new(fs::read(path).map_err(unreadable)?);
    Ok(Zeroizing::new(parse_key_bytes(&contents, &path.display().to_string())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, contents: &[u8], mode: u32) -> PathBuf {
        let path = dir.join("link.key");
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_private_hex_key_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), format!("{}\n", "ab".repeat(32)).as_bytes(), 0o600);
        assert_eq!(*read_secret_key(&path, "copy it").unwrap(), [0xab; 32]);
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_with_the_chmod_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &[7; 32], 0o640);
        let error = read_secret_key(&path, "copy it").unwrap_err().to_string();
        assert!(error.contains("chmod 600") && error.contains("640"), "{error}");
    }

    #[test]
    fn a_missing_key_file_says_how_to_get_one() {
        let dir = tempfile::tempdir().unwrap();
        let error = read_secret_key(&dir.path().join("link.key"), "copy link.key from the sender").unwrap_err();
        assert!(error.to_string().contains("copy link.key from the sender"), "{error}");
    }

    #[test]
    fn a_short_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), b"abcd\n", 0o600);
        assert!(matches!(read_secret_key(&path, "copy it"), Err(KeyFileError::Malformed(_))));
    }
}

//! The collector's X25519 key pair: generation, the on-disk text format, and reading it back.
//! The sensor only ever holds the public key; the secret key lives on the collector.
//!
//! Both files are one line of 64 lowercase hex digits (the 32-byte RFC 9180 `SerializePrivateKey`
//! / `SerializePublicKey` encodings of DHKEM(X25519, HKDF-SHA256)), followed by a newline.
//! Surrounding whitespace is ignored on reading; anything else is an error.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, Serializable};
use thiserror::Error;

/// The KEM of the batch format: DHKEM(X25519, HKDF-SHA256).
pub(crate) type BatchKem = X25519HkdfSha256;

/// File name of the secret key written by [`write_keypair`].
pub const SECRET_KEY_FILE: &str = "collector.key";
/// File name of the public key written by [`write_keypair`].
pub const PUBLIC_KEY_FILE: &str = "collector.pub";

/// Why a key could not be read or written. Each message is one line naming the path.
#[derive(Debug, Error)]
pub enum KeyError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file does not hold one line of 64 hex digits.
    #[error("{path}: not a key file ({reason}); expected one line of 64 hex digits")]
    Malformed {
        /// The file concerned.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// [`write_keypair`] found a key already there; it never overwrites one.
    #[error("{path}: already exists; refusing to overwrite a key (move it away first)")]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
}

/// The collector's secret key. Its `Debug` output never shows the key bytes.
#[derive(Clone)]
pub struct SecretKey {
    pub(crate) inner: <BatchKem as Kem>::PrivateKey,
}

/// The collector's public key, which sensors seal batches to.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub(crate) inner: <BatchKem as Kem>::PublicKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Deliberately only the public half: a secret must never reach a log line.
        write!(f, "SecretKey(public {})", self.public_key().to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

/// Generates a fresh key pair from the operating system's random source.
pub fn generate() -> (SecretKey, PublicKey) {
    let (sk, pk) = BatchKem::gen_keypair();
    (SecretKey { inner: sk }, PublicKey { inner: pk })
}

impl SecretKey {
    /// Reads a secret key file (64 hex digits).
    pub fn read(path: &Path) -> Result<SecretKey, KeyError> {
        let bytes = read_hex_file(path)?;
        SecretKey::from_bytes(&bytes).ok_or_else(|| KeyError::Malformed {
            path: path.to_owned(),
            reason: "not a valid X25519 secret key".into(),
        })
    }

    /// Builds a key from its 32-byte encoding; `None` if the length is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Option<SecretKey> {
        <BatchKem as Kem>::PrivateKey::from_bytes(bytes)
            .ok()
            .map(|inner| SecretKey { inner })
    }

    /// The 32-byte encoding (clamped, as RFC 9180 deserialisation requires).
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.inner.to_bytes());
        out
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            inner: BatchKem::sk_to_pk(&self.inner),
        }
    }
}

impl PublicKey {
    /// Reads a public key file (64 hex digits).
    pub fn read(path: &Path) -> Result<PublicKey, KeyError> {
        let bytes = read_hex_file(path)?;
        PublicKey::from_bytes(&bytes).ok_or_else(|| KeyError::Malformed {
            path: path.to_owned(),
            reason: "not a valid X25519 public key".into(),
        })
    }

    /// Builds a key from its 32-byte encoding; `None` if the length is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Option<PublicKey> {
        <BatchKem as Kem>::PublicKey::from_bytes(bytes)
            .ok()
            .map(|inner| PublicKey { inner })
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.inner.to_bytes());
        out
    }

    /// The key as 64 lowercase hex digits, as in `collector.pub`.
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.to_bytes())
    }
}

/// Generates a key pair and writes `collector.key` (mode 0600) and `collector.pub` (0644) into
/// `dir`, creating `dir` (0700) if needed. Refuses to overwrite an existing `collector.key` or
/// `collector.pub`. Returns (secret key path, public key path).
pub fn write_keypair(dir: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir).map_err(|source| KeyError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let key_path = dir.join(SECRET_KEY_FILE);
    let pub_path = dir.join(PUBLIC_KEY_FILE);
    // Check both before writing either, so a refusal leaves nothing half-written.
    for p in [&key_path, &pub_path] {
        if fs::symlink_metadata(p).is_ok() {
            return Err(KeyError::Exists { path: p.clone() });
        }
    }
    let (sk, pk) = generate();
    write_new(&key_path, &crate::hex::encode(&sk.to_bytes()), 0o600)?;
    write_new(&pub_path, &pk.to_hex(), 0o644)?;
    Ok((key_path, pub_path))
}

/// Creates `path` exclusively (never following or replacing an existing file) with `mode`,
/// writes one line and syncs it.
fn write_new(path: &Path, hex: &str, mode: u32) -> Result<(), KeyError> {
    let io_err = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = opts.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            KeyError::Exists {
                path: path.to_owned(),
            }
        } else {
            io_err(e)
        }
    })?;
    file.write_all(format!("{hex}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err)
}

/// Reads a key file: one line of 64 hex digits, surrounding whitespace allowed.
fn read_hex_file(path: &Path) -> Result<[u8; 32], KeyError> {
    // Key files are tiny; a large file is not a key and must not be read whole.
    let meta = fs::metadata(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    if meta.len() > 1024 {
        return Err(KeyError::Malformed {
            path: path.to_owned(),
            reason: format!("{} bytes long", meta.len()),
        });
    }
    let text = fs::read(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    let malformed = |reason: &str| KeyError::Malformed {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let text = std::str::from_utf8(&text).map_err(|_| malformed("not UTF-8 text"))?;
    let text = text.trim();
    if text.len() != 64 {
        return Err(malformed(&format!("{} characters", text.len())));
    }
    let mut out = [0u8; 32];
    crate::hex::decode_into(text, &mut out).ok_or_else(|| malformed("not hex"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("keys");
        let (k, p) = write_keypair(&sub).unwrap();
        assert_eq!(k, sub.join("collector.key"));
        assert_eq!(p, sub.join("collector.pub"));
        let sk = SecretKey::read(&k).unwrap();
        let pk = PublicKey::read(&p).unwrap();
        assert_eq!(sk.public_key(), pk);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&k).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(text, format!("{}\n", pk.to_hex()));
    }

    #[test]
    fn refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (k, _) = write_keypair(dir.path()).unwrap();
        let before = fs::read(&k).unwrap();
        let err = write_keypair(dir.path()).unwrap_err();
        assert!(matches!(err, KeyError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("collector.key"), "{err}");
        assert_eq!(fs::read(&k).unwrap(), before);
    }

    #[test]
    fn debug_hides_secret() {
        let (sk, pk) = generate();
        let hex = crate::hex::encode(&sk.to_bytes());
        let dbg = format!("{sk:?}");
        assert!(!dbg.contains(&hex), "{dbg}");
        assert!(dbg.contains(&pk.to_hex()), "{dbg}");
    }

    #[test]
    fn malformed_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.pub");
        for content in ["", "zz", &"g".repeat(64), &"ab".repeat(33)] {
            fs::write(&p, content).unwrap();
            let err = PublicKey::read(&p).unwrap_err();
            assert!(matches!(err, KeyError::Malformed { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains("bad.pub") && !msg.contains('\n'), "{msg}");
        }
        let missing = dir.path().join("missing.key");
        let err = SecretKey::read(&missing).unwrap_err();
        assert!(matches!(err, KeyError::Io { .. }));
        assert!(err.to_string().contains("missing.key"));
    }
}

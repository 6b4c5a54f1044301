//! Key files: names, safe creation, loading, and recognising the
//! published development keys.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use update_manifest::{KeyId, PublicKey, SigningKey};

use crate::Error;

/// Marker that development key files and certificates carry.
pub const DEV_MARKER: &str = "NOT FOR PRODUCTION";

/// The development keys published in the Yocto layer (private keys, so
/// their ids can be computed; they are public anyway).
const PUBLISHED_DEV_KEYS: &[&str] = &[
    include_str!("../../../yocto-layer/meta-hearth/files/dev-keys/hearth-dev-root.key.pem"),
    include_str!("../../../yocto-layer/meta-hearth/files/dev-keys/hearth-dev-signing.key.pem"),
];

/// True if `id` is one of the layer's published development keys.
pub fn is_published_dev_key(id: &KeyId) -> bool {
    PUBLISHED_DEV_KEYS.iter().any(|pem| {
        SigningKey::from_pkcs8_pem(pem)
            .map(|k| &k.key_id() == id)
            .unwrap_or(false)
    })
}

/// The files of one key: `PREFIX.key.pem`, `PREFIX.pub.pem`,
/// `PREFIX.cert.pem`.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    prefix: PathBuf,
}

impl KeyFiles {
    /// From a prefix; a full file name of the set is accepted too.
    pub fn new(arg: impl Into<PathBuf>) -> KeyFiles {
        let arg: PathBuf = arg.into();
        let s = arg.to_string_lossy();
        for suffix in [".key.pem", ".pub.pem", ".cert.pem"] {
            if let Some(prefix) = s.strip_suffix(suffix) {
                return KeyFiles {
                    prefix: PathBuf::from(prefix),
                };
            }
        }
        KeyFiles { prefix: arg }
    }
    fn with(&self, suffix: &str) -> PathBuf {
        let mut s = self.prefix.clone().into_os_string();
        s.push(suffix);
        PathBuf::from(s)
    }
    /// The private key.
    pub fn key(&self) -> PathBuf {
        self.with(".key.pem")
    }
    /// The public key.
    pub fn public(&self) -> PathBuf {
        self.with(".pub.pem")
    }
    /// The X.509 certificate.
    pub fn cert(&self) -> PathBuf {
        self.with(".cert.pem")
    }
    /// A name for messages.
    pub fn display(&self) -> String {
        self.prefix.display().to_string()
    }

    /// Loads the private key.
    pub fn load_private(&self) -> Result<SigningKey, Error> {
        let path = self.key();
        let text = fs::read_to_string(&path).map_err(Error::io(&path))?;
        SigningKey::from_pkcs8_pem(&text).map_err(|source| Error::Key { path, source })
    }

    /// Loads the public key: from `.pub.pem`, else from `.cert.pem`, else
    /// from the private key.
    pub fn load_public(&self) -> Result<PublicKey, Error> {
        let path = self.public();
        if path.exists() {
            let text = fs::read_to_string(&path).map_err(Error::io(&path))?;
            return update_manifest::public_key_from_pem(&text)
                .map_err(|source| Error::Key { path, source });
        }
        let cert = self.cert();
        if cert.exists() && !self.key().exists() {
            let text = fs::read_to_string(&cert).map_err(Error::io(&cert))?;
            return update_manifest::TrustedRoot::from_cert_pem(&text)
                .map(|r| *r.public_key())
                .map_err(|source| Error::Key { path: cert, source });
        }
        Ok(*self.load_private()?.public_key())
    }

    /// True if the key is a published development key or one of its
    /// files says NOT FOR PRODUCTION.
    pub fn is_dev(&self, id: &KeyId) -> bool {
        is_published_dev_key(id)
            || [self.key(), self.public(), self.cert()].iter().any(|p| {
                fs::read_to_string(p)
                    .map(|t| t.contains(DEV_MARKER))
                    .unwrap_or(false)
            })
            || self.cert_subject_is_dev()
    }

    fn cert_subject_is_dev(&self) -> bool {
        let cert = self.cert();
        cert.exists()
            && crate::openssl::cert_subject(&cert)
                .map(|s| s.contains(DEV_MARKER) || s.contains("DEVELOPMENT"))
                .unwrap_or(false)
    }

    /// Fails unless `dev` is set when the key is a development key.
    pub fn refuse_dev(&self, id: &KeyId, dev: bool) -> Result<(), Error> {
        if !dev && self.is_dev(id) {
            return Err(Error::DevKey(self.display()));
        }
        Ok(())
    }
}

/// Creates `path` with `mode`; fails if it exists (never overwrites).
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Exists(path.to_owned())
            } else {
                Error::Io {
                    path: path.to_owned(),
                    source: e,
                }
            }
        })?;
    f.write_all(bytes).map_err(Error::io(path))?;
    f.sync_all().map_err(Error::io(path))
}

/// Writes `path` atomically (temporary file, then rename), replacing it.
pub fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = tmp_name(path);
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, bytes, 0o644)?;
    fs::rename(&tmp, path).map_err(Error::io(path))
}

/// `dir/.name.tmp` beside `path`.
pub fn tmp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_layers_development_keys_load_and_are_recognised() {
        for pem in PUBLISHED_DEV_KEYS {
            let key = SigningKey::from_pkcs8_pem(pem).unwrap();
            assert!(is_published_dev_key(&key.key_id()));
        }
        let (fresh, _) = SigningKey::generate().unwrap();
        assert!(!is_published_dev_key(&fresh.key_id()));
    }
}

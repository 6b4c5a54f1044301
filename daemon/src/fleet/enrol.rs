//! The CSR side of enrolment: a device that ships without a certificate
//! makes its own key on first boot and writes a certificate signing
//! request for the vendor's enrolment service. The private key never leaves
//! the device.
//!
//! Carrying the CSR to the enrolment service and the certificate back is
//! not built: a vendor's provisioning step (or a person) copies them. Until
//! the certificate is there, the fleet link waits and the rest of the
//! device works as usual.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::persist;

#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error("cannot read the device key {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}. Check that its directory is writable by hearthd.")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the device key or CSR: {0}")]
    Generate(#[from] rcgen::Error),
}

/// What [`ensure`] did, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Made {
    pub key: bool,
    pub csr: bool,
}

/// Makes the key if it does not exist yet, and a CSR for it with
/// `CN=<device_id>` if the CSR does not exist. An existing key is reused,
/// so a lost CSR can be made again for the same identity.
pub fn ensure(key_file: &Path, csr_file: &Path, device_id: &str) -> Result<Made, EnrolError> {
    let mut made = Made {
        key: false,
        csr: false,
    };
    let key = match std::fs::read_to_string(key_file) {
        Ok(pem) => rcgen::KeyPair::from_pem(&pem)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // P-256 with ring, the default of rcgen.
            let key = rcgen::KeyPair::generate()?;
            write_new(key_file, key.serialize_pem().as_bytes(), 0o600)?;
            made.key = true;
            key
        }
        Err(source) => {
            return Err(EnrolError::ReadKey {
                path: key_file.to_owned(),
                source,
            });
        }
    };
    if made.key || !csr_file.exists() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, device_id);
        let csr = params.serialize_request(&key)?.pem()?;
        write_new(csr_file, csr.as_bytes(), 0o644)?;
        made.csr = true;
    }
    Ok(made)
}

/// Writes through [`persist::write_atomically`], so a power cut leaves
/// either no file or a whole one; makes the directory first.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), EnrolError> {
    let fail = |source| EnrolError::Write {
        path: path.to_owned(),
        source,
    };
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(fail(std::io::Error::other("not a file path")));
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(fail)?;
    persist::write_atomically(dir, name, bytes, mode).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_boot_makes_a_private_key_and_a_csr_and_keeps_the_key_after() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("fleet/device.key");
        let csr = dir.path().join("fleet/device.csr");
        let made = ensure(&key, &csr, "hrh1-0007").expect("made");
        assert_eq!(
            made,
            Made {
                key: true,
                csr: true
            }
        );
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let first_key = std::fs::read_to_string(&key).expect("key");
        assert!(first_key.contains("PRIVATE KEY"));
        assert!(
            std::fs::read_to_string(&csr)
                .expect("csr")
                .starts_with("-----BEGIN CERTIFICATE REQUEST-----")
        );

        assert_eq!(
            ensure(&key, &csr, "hrh1-0007").expect("again"),
            Made {
                key: false,
                csr: false
            }
        );
        std::fs::remove_file(&csr).expect("remove csr");
        assert_eq!(
            ensure(&key, &csr, "hrh1-0007").expect("csr again"),
            Made {
                key: false,
                csr: true
            }
        );
        assert_eq!(std::fs::read_to_string(&key).expect("key"), first_key);
    }

    #[test]
    fn a_damaged_key_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("device.key");
        std::fs::write(&key, "not a key").expect("write");
        assert!(ensure(&key, &dir.path().join("device.csr"), "d").is_err());
        assert_eq!(std::fs::read_to_string(&key).expect("key"), "not a key");
    }
}

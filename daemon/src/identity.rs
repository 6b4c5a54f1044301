//! The device's own TLS identity: a key pair and self-signed certificate made
//! on first boot from the OS random source, unique to this device.
//!
//! There is no CA an owner's browser could check a LAN device against, so the
//! owner checks the certificate's SHA-256 fingerprint instead: it is printed
//! on the console, which only someone with the device in hand can read.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::persist::{Store, StoreError};

const CERT_FILE: &str = "tls-cert.pem";
const KEY_FILE: &str = "tls-key.pem";

#[derive(Debug)]
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot generate the device certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot set up TLS with the device certificate: {0}")]
    Tls(#[from] rustls::Error),
}

/// A certificate's SHA-256 fingerprint, shown as `AB:CD:…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of(der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl Identity {
    /// Loads the identity, or makes a new one when there is none or it
    /// cannot be read. A new certificate is safe to make at any time: the
    /// owner sees its fingerprint on the console.
    pub fn load_or_create(store: &Store, common_name: &str) -> Result<Identity, IdentityError> {
        match Identity::load(store) {
            Ok(Some(identity)) => return Ok(identity),
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(%reason, "the stored TLS identity is unusable; making a new one")
            }
        }
        let (identity, cert_pem, key_pem) = Identity::generate(common_name)?;
        // The key first: a certificate without its key is useless, a key
        // without its certificate is simply replaced at the next start.
        store.write_file(KEY_FILE, key_pem.as_bytes())?;
        store.write_file(CERT_FILE, cert_pem.as_bytes())?;
        tracing::info!(fingerprint = %identity.fingerprint(), "made a new TLS identity");
        Ok(identity)
    }

    fn load(store: &Store) -> Result<Option<Identity>, String> {
        let (Some(cert), Some(key)) = (
            store.read_file(CERT_FILE).map_err(|e| e.to_string())?,
            store.read_file(KEY_FILE).map_err(|e| e.to_string())?,
        ) else {
            return Ok(None);
        };
        let cert =
            CertificateDer::from_pem_slice(&cert).map_err(|e| format!("certificate file: {e}"))?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(&key).map_err(|e| format!("key file: {e}"))?;
        let identity = Identity { cert, key };
        // Prove the two belong together before serving with them.
        identity.server_config().map_err(|e| e.to_string())?;
        Ok(Some(identity))
    }

    /// A new identity, with its certificate and key as PEM.
    fn generate(common_name: &str) -> Result<(Identity, String, String), rcgen::Error> {
        let key = rcgen::KeyPair::generate()?;
        let mut params =
            rcgen::CertificateParams::new(vec!["hearth.local".to_owned(), "localhost".to_owned()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2125, 1, 1);
        let cert = params.self_signed(&key)?;
        let identity = Identity {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        };
        Ok((identity, cert.pem(), key.serialize_pem()))
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.cert)
    }

    /// TLS 1.2 and 1.3 only, ring's cipher suites, HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Our order (AES-GCM and ChaCha20, strongest first) wins over the
        // client's, as TLS scanners expect of a server.
        config.ignore_client_order = true;
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_is_made_once_and_then_reused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let first = Identity::load_or_create(&store, "test")
            .expect("create")
            .fingerprint();
        let again = Identity::load_or_create(&store, "test")
            .expect("load")
            .fingerprint();
        assert_eq!(first, again);
    }

    #[test]
    fn two_devices_get_different_certificates() {
        let (a, b) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        );
        let a = Identity::load_or_create(&Store::open(a.path()).expect("a"), "test").expect("a");
        let b = Identity::load_or_create(&Store::open(b.path()).expect("b"), "test").expect("b");
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn the_key_file_is_private_and_a_damaged_one_is_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let first = Identity::load_or_create(&store, "test")
            .expect("create")
            .fingerprint();
        let key = store.dir().join(KEY_FILE);
        assert_eq!(
            std::fs::metadata(&key).expect("stat").permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&key, b"garbage").expect("damage");
        let second = Identity::load_or_create(&store, "test")
            .expect("replace")
            .fingerprint();
        assert_ne!(first, second);
    }

    #[test]
    fn the_fingerprint_is_colon_separated_upper_case_hex() {
        let text = Fingerprint::of(b"x").to_string();
        assert_eq!(text.len(), 95);
        assert!(
            text.chars()
                .all(|c| c == ':' || c.is_ascii_digit() || ('A'..='F').contains(&c))
        );
    }
}

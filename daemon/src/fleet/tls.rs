//! The TLS client configuration for the broker, built here rather than by
//! rumqttc: ring as the only crypto provider, TLS 1.2 and 1.3 only, the
//! vendor's broker CA as the only trust anchor (no system roots, so no
//! other CA can vouch for a fake broker), and the device's own certificate
//! for mutual TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot read the {what} {path}: {source}. Check the [fleet] paths in the configuration."
    )]
    Read {
        what: &'static str,
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the {what} {path} holds no PEM certificate")]
    Empty { what: &'static str, path: PathBuf },
    #[error("the broker CA certificate {path} is not usable as a trust anchor: {source}")]
    Anchor {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error(
        "the device certificate {cert} and key {key} do not make a client identity: {source}. Check that the key belongs to the certificate."
    )]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The rustls configuration rumqttc connects with.
pub fn client_config(
    ca_file: &Path,
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates("broker CA certificate", ca_file)? {
        roots.add(ca).map_err(|source| TlsError::Anchor {
            path: ca_file.to_owned(),
            source,
        })?;
    }
    let chain = certificates("device certificate", cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|source| TlsError::Read {
        what: "device private key",
        path: key_file.to_owned(),
        source,
    })?;
    let identity = |source| TlsError::Identity {
        cert: cert_file.to_owned(),
        key: key_file.to_owned(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(identity)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(identity)?;
    Ok(Arc::new(config))
}

//! Keys: the device's trusted root (public only) and signing keys (vendor
//! side), all ECDSA P-256 with SHA-256 through `ring`.
//!
//! Why P-256 and not Ed25519: SWUpdate verifies the `.swu` with a CMS
//! signature through OpenSSL, and OpenSSL 3.0 (Debian bookworm, which
//! SWUpdate 2022.12 links) cannot make or check Ed25519 CMS signatures
//! (`openssl cms -sign` fails with "no default digest"; with `-md sha512`
//! "invalid digest"). With P-256 one key per role signs both the manifest
//! and the CMS signature, so a vendor guards, rotates and revokes one root
//! and one signing key instead of two of each; P-256 is also what HSMs,
//! TPM 2.0 and secure elements offer.

use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};

use crate::Rejection;
use crate::types::{FieldError, KeyId, PublicKey, Signature};

/// A key or key file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not PEM.
    #[error("not a PEM file ({0}); expected -----BEGIN {1}-----")]
    Pem(String, &'static str),
    /// A PEM block of another kind.
    #[error("the PEM block is \"{found}\", expected \"{expected}\"")]
    Label {
        /// The label wanted.
        expected: &'static str,
        /// The label found.
        found: String,
    },
    /// Not a P-256 private key.
    #[error(
        "not an ECDSA P-256 private key in PKCS#8 ({0}); make one with `hearth-release keygen`"
    )]
    Pkcs8(String),
    /// Not a P-256 public key.
    #[error(transparent)]
    Public(#[from] FieldError),
    /// ring could not sign (random number generator failure).
    #[error("signing failed: the system random number generator is unavailable")]
    Sign,
    /// The document to sign is not valid.
    #[error(transparent)]
    Document(#[from] Rejection),
}

/// The Hearth development keys (their private halves are published in the
/// repository), one `<key id>  <name>` a line: the same list the Yocto
/// layer's sanity check refuses a product build with.
const DEVELOPMENT_KEYS: &str =
    include_str!("../../../yocto-layer/meta-hearth/files/dev-keys/fingerprints");

/// Whether `id` is one of the Hearth development keys, which anyone can
/// sign with.
pub fn is_development_key(id: &KeyId) -> bool {
    let id = id.to_string();
    DEVELOPMENT_KEYS
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_whitespace().next())
        .any(|listed| listed == id)
}

/// The one key a device trusts: the public half of the offline root,
/// shipped in the read-only root file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedRoot {
    key: PublicKey,
}

impl TrustedRoot {
    /// Trusts this public key.
    pub fn new(key: PublicKey) -> TrustedRoot {
        TrustedRoot { key }
    }
    /// Reads a `-----BEGIN PUBLIC KEY-----` PEM (P-256 SubjectPublicKeyInfo,
    /// as written by `hearth-release keygen` or `openssl pkey -pubout`).
    pub fn from_pem(text: &str) -> Result<TrustedRoot, KeyError> {
        Ok(TrustedRoot::new(public_key_from_pem(text)?))
    }
    /// Reads the root's X.509 certificate (`-----BEGIN CERTIFICATE-----`),
    /// the same file SWUpdate trusts with `-k`, so a device ships one trust
    /// anchor for both layers and they cannot drift apart.
    pub fn from_cert_pem(text: &str) -> Result<TrustedRoot, KeyError> {
        let der = pem_block(text, "CERTIFICATE")?;
        let spki = cert_spki(&der).ok_or_else(|| {
            KeyError::Public(crate::types::FieldError {
                what: "certificate",
                value: String::new(),
                why: "not a DER X.509 certificate",
            })
        })?;
        Ok(TrustedRoot::new(PublicKey::from_spki_der(spki)?))
    }
    /// The root's public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }
    /// The root's key id.
    pub fn key_id(&self) -> KeyId {
        self.key.key_id()
    }
}

fn pem_block(text: &str, label: &'static str) -> Result<Vec<u8>, KeyError> {
    let p = pem::parse(text).map_err(|e| KeyError::Pem(e.to_string(), label))?;
    if p.tag() != label {
        return Err(KeyError::Label {
            expected: label,
            found: p.tag().to_owned(),
        });
    }
    Ok(p.contents().to_vec())
}

/// Reads a `PUBLIC KEY` PEM holding a P-256 key.
pub fn public_key_from_pem(text: &str) -> Result<PublicKey, KeyError> {
    Ok(PublicKey::from_spki_der(&pem_block(text, "PUBLIC KEY")?)?)
}

/// Writes a `PUBLIC KEY` PEM.
pub fn public_key_to_pem(key: &PublicKey) -> String {
    pem::encode(&pem::Pem::new("PUBLIC KEY", key.spki_der()))
}

/// Checks an ECDSA P-256 / SHA-256 signature.
pub(crate) fn signature_is_valid(key: &PublicKey, message: &[u8], sig: &Signature) -> bool {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.point())
        .verify(message, sig.as_bytes())
        .is_ok()
}

/// A private signing key (root or release-signing), vendor side only.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    public: PublicKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "SigningKey(id {})", self.key_id())
    }
}

impl SigningKey {
    /// Makes a new key; returns it and its PKCS#8 encoding to store.
    pub fn generate() -> Result<(SigningKey, Vec<u8>), KeyError> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| KeyError::Sign)?;
        let der = doc.as_ref().to_vec();
        Ok((SigningKey::from_pkcs8_der(&der)?, der))
    }

    /// Reads PKCS#8 DER (as made by [`SigningKey::generate`] or
    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey, KeyError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| KeyError::Pkcs8(e.to_string()))?;
        let public = PublicKey::from_point(pair.public_key().as_ref())?;
        Ok(SigningKey { pair, public, rng })
    }

    /// Reads a `-----BEGIN PRIVATE KEY-----` PEM.
    pub fn from_pkcs8_pem(text: &str) -> Result<SigningKey, KeyError> {
        SigningKey::from_pkcs8_der(&pem_block(text, "PRIVATE KEY")?)
    }

    /// Writes PKCS#8 DER as a `PRIVATE KEY` PEM.
    pub fn pkcs8_to_pem(der: &[u8]) -> String {
        pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec()))
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Its key id.
    pub fn key_id(&self) -> KeyId {
        self.public.key_id()
    }

    /// Signs `message` (ECDSA P-256, SHA-256, fixed-size `r || s`).
    pub fn sign(&self, message: &[u8]) -> Result<Signature, KeyError> {
        let sig = self
            .pair
            .sign(&self.rng, message)
            .map_err(|_| KeyError::Sign)?;
        let bytes: [u8; 64] = sig.as_ref().try_into().map_err(|_| KeyError::Sign)?;
        Ok(Signature::from_bytes(bytes))
    }
}

/// One DER element and what follows it.
struct Der<'a> {
    tag: u8,
    /// Tag, length and contents.
    whole: &'a [u8],
    contents: &'a [u8],
    rest: &'a [u8],
}

fn der_next(input: &[u8]) -> Option<Der<'_>> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some(Der {
        tag,
        whole: &input[..header + len],
        contents: &rest[..len],
        rest: &rest[len..],
    })
}

/// The SubjectPublicKeyInfo of a DER certificate: Certificate ::=
/// SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serial,
/// signature, issuer, validity, subject, subjectPublicKeyInfo, ... }, ... }
fn cert_spki(der: &[u8]) -> Option<&[u8]> {
    let cert = der_next(der).filter(|e| e.tag == 0x30)?;
    let tbs = der_next(cert.contents).filter(|e| e.tag == 0x30)?;
    let mut fields = tbs.contents;
    let first = der_next(fields)?;
    if first.tag == 0xa0 {
        fields = first.rest; // explicit version
    }
    // serial, signature algorithm, issuer, validity, subject
    for _ in 0..5 {
        fields = der_next(fields)?.rest;
    }
    der_next(fields).filter(|e| e.tag == 0x30).map(|e| e.whole)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DEV_ROOT_CERT: &str =
        include_str!("../../../yocto-layer/meta-hearth/files/dev-keys/hearth-dev-root.cert.pem");
    const DEV_SIGNING_CERT: &str =
        include_str!("../../../yocto-layer/meta-hearth/files/dev-keys/hearth-dev-signing.cert.pem");

    #[test]
    fn the_development_keys_are_known_by_fingerprint_and_a_new_key_is_not() {
        for cert in [DEV_ROOT_CERT, DEV_SIGNING_CERT] {
            let root = TrustedRoot::from_cert_pem(cert).unwrap();
            assert!(is_development_key(&root.key_id()), "{}", root.key_id());
        }
        let (fresh, _) = SigningKey::generate().unwrap();
        assert!(!is_development_key(&fresh.key_id()));
    }

    #[test]
    fn the_certificate_walker_never_panics_on_truncated_or_altered_der() {
        let der = pem::parse(DEV_ROOT_CERT).unwrap().contents().to_vec();
        assert!(cert_spki(&der).is_some());
        for n in 0..der.len() {
            let _ = cert_spki(&der[..n]);
        }
        for i in 0..der.len() {
            for x in [0x01, 0x80, 0xff] {
                let mut d = der.clone();
                d[i] ^= x;
                if let Some(spki) = cert_spki(&d) {
                    let _ = PublicKey::from_spki_der(spki);
                }
            }
        }
    }
}

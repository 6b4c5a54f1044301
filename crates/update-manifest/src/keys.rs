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

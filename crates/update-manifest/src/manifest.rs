//! The documents: the release manifest and the root-signed key ring, their
//! canonical JSON encoding, and parsing.
//!
//! **Canonical encoding.** A signed document is the compact JSON that
//! `serde_json` writes for these structs: fields in declaration order, no
//! whitespace, strings with the minimal escapes, integers only. A file is
//! accepted only if re-encoding what was parsed gives back the *same
//! bytes*; so whitespace, reordered or duplicate keys, `\u0041`-style
//! escapes, unknown fields and trailing data are all refused, and the
//! signed bytes are the bytes that were checked.

use serde::{Deserialize, Serialize};

use crate::Rejection;
use crate::index::ChunkIndex;
use crate::keys::{KeyError, SigningKey};
use crate::types::{
    ArtifactUrl, HardwareRevision, KeyId, Label, Model, PublicKey, Sha256, Signature, Timestamp,
    Version,
};

/// The manifest format this crate reads and writes. Format 2 added the
/// signed chunk index ([`ArtifactIndex`]); format 1 manifests are refused
/// with a sentence saying so.
pub const MANIFEST_FORMAT: u32 = 2;
/// The key-ring format this crate reads and writes.
pub const KEYRING_FORMAT: u32 = 1;

/// Largest signed manifest accepted (before parsing; endless-data attack).
/// A real one is about 2 KiB.
pub const MAX_MANIFEST_LEN: usize = 64 * 1024;

/// Most hardware revisions one release may name.
pub const MAX_HARDWARE_REVISIONS: usize = 16;
/// Most mirror URLs for one artifact.
pub const MAX_ARTIFACT_URLS: usize = 4;
/// Most signing keys one key ring may certify.
pub const MAX_KEYRING_KEYS: usize = 8;
/// Longest rollout spread: 90 days.
pub const MAX_SPREAD_HOURS: u32 = 90 * 24;

/// Domain separation: what a signature is *for* is part of what is signed,
/// so a root signature over a key ring can never pass as a manifest
/// signature or the other way round.
pub(crate) const MANIFEST_CONTEXT: &[u8] = b"hearth-release-manifest-v1\0";
pub(crate) const KEYRING_CONTEXT: &[u8] = b"hearth-keyring-v1\0";

/// How urgent a release is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    /// Fixes a vulnerability: install as soon as policy allows.
    Security,
    /// Features and ordinary fixes: follows the rollout waves.
    Feature,
}

/// Staged rollout: devices start in waves spread over `spread_hours` from
/// `start`; each device's place comes from a per-device seed (0..1024,
/// after Bottlerocket's update waves).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// When the first devices may start.
    pub start: Timestamp,
    /// Over how many hours the fleet is spread (0 = all at `start`).
    pub spread_hours: u32,
}

impl Rollout {
    /// The earliest time a device with this `seed` (taken modulo 1024) may
    /// start installing.
    pub fn start_for(&self, seed: u16) -> Timestamp {
        let offset = i64::from(self.spread_hours) * 3600 * i64::from(seed % 1024) / 1024;
        self.start.plus_seconds(offset)
    }
}

/// The update artifact (a signed SWUpdate `.swu`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Where to fetch it; mirrors, tried in order (1 to 4).
    pub urls: Vec<ArtifactUrl>,
    /// Exact length in bytes; the download is cut off beyond it.
    pub size: u64,
    /// SHA-256 of the whole `.swu`.
    pub sha256: Sha256,
    /// The chunk index the device checks each chunk against before it
    /// goes on to SWUpdate.
    pub index: ArtifactIndex,
}

/// The artifact's chunk index ([`crate::ChunkIndex`]) as the manifest pins
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactIndex {
    /// Where to fetch it; mirrors, tried in order (1 to 4).
    pub urls: Vec<ArtifactUrl>,
    /// Bytes per chunk: a power of two from 64 KiB to 1 MiB.
    pub chunk_len: u32,
    /// Exact length of the index file (it follows from the artifact's size
    /// and `chunk_len`).
    pub size: u64,
    /// SHA-256 of the index file.
    pub sha256: Sha256,
}

/// The release's software bill of materials, published beside the
/// artifact for vendors, assessors and owners. Devices do not fetch it;
/// signing its hash ties the published SBOM to this exact release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sbom {
    /// Where it is published; mirrors, as for the artifact (1 to 4).
    pub urls: Vec<ArtifactUrl>,
    /// Exact length in bytes.
    pub size: u64,
    /// SHA-256 of the file.
    pub sha256: Sha256,
}

/// A delta release ([`crate::delta`]): the delta index the device checks
/// before anything else, and the pack it fetches the missing segments from
/// with `Range`. The full artifact stays the release for a device that
/// cannot reuse anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delta {
    /// Where the delta index is; mirrors, tried in order (1 to 4).
    pub urls: Vec<ArtifactUrl>,
    /// Exact length of the delta index file.
    pub size: u64,
    /// SHA-256 of the delta index file.
    pub sha256: Sha256,
    /// Where the pack is; mirrors (1 to 4). Each segment's length and
    /// SHA-256 are in the index.
    pub pack_urls: Vec<ArtifactUrl>,
}

/// One release, as signed by an online release-signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: u32,
    /// Product name (for people; the device matches on `model`).
    pub product: Label,
    /// The model designation the release is built for.
    pub model: Model,
    /// Hardware revisions it may be installed on (1 to 16).
    pub hardware_revisions: Vec<HardwareRevision>,
    /// The release version; must be above the installed one.
    pub version: Version,
    /// The anti-rollback counter; must be at or above the device's floor.
    /// It only changes when a release fixes a vulnerability, so a device
    /// can still go back to a release with the same security version.
    pub security_version: u32,
    /// Devices below this version must first install an intermediate
    /// release (e.g. for a data migration).
    pub min_installed_version: Version,
    /// Security or feature release.
    pub urgency: Urgency,
    /// Human-readable release notes.
    pub release_notes: ArtifactUrl,
    /// The `.swu` to install.
    pub artifact: Artifact,
    /// Staged rollout parameters.
    pub rollout: Rollout,
    /// When the manifest was signed.
    pub issued: Timestamp,
    /// After this the manifest is refused (freeze attack): re-sign it to
    /// keep offering the release.
    pub expires: Timestamp,
    /// The id of the release-signing key that signs it.
    pub key_id: KeyId,
    /// The release's SBOM, when the vendor published one. Optional within
    /// format 2: manifests without it read as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<Sbom>,
    /// The delta release, when the vendor built one. Optional within
    /// format 2: manifests without it read as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
}

/// A signing key certified by the root, with its validity period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertifiedKey {
    /// SHA-256 of the key's SubjectPublicKeyInfo; must match `public_key`.
    pub key_id: KeyId,
    /// The ECDSA P-256 public key.
    pub public_key: PublicKey,
    /// A name for people ("release signer 2027").
    pub name: Label,
    /// First second the key may sign.
    pub not_before: Timestamp,
    /// First second it may no longer sign.
    pub not_after: Timestamp,
}

/// The set of release-signing keys the root currently vouches for.
///
/// Rotation and revocation: the root signs a new key ring with a higher
/// `version` that adds the new key and leaves out the revoked one; a
/// device that has seen version N refuses any key ring below N
/// ([`crate::DeviceFacts::keyring_floor`]), and every key ring expires, so
/// a revoked key stops working everywhere by the key ring's expiry at the
/// latest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keyring {
    /// Always [`KEYRING_FORMAT`].
    pub format: u32,
    /// Monotonic; raised on every change.
    pub version: u64,
    /// When the root signed it.
    pub issued: Timestamp,
    /// After this, releases are refused until the root signs a fresh key ring.
    pub expires: Timestamp,
    /// The certified release-signing keys (1 to 8).
    pub keys: Vec<CertifiedKey>,
}

/// A key ring with the root's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedKeyring {
    /// The signed content.
    pub keyring: Keyring,
    /// Id of the root key that signed it.
    pub root_key_id: KeyId,
    /// ECDSA P-256 / SHA-256 over the key-ring context and the canonical
    /// encoding of `keyring`.
    pub signature: Signature,
}

/// The file a device fetches: the manifest, its signature and the key ring
/// that certifies the signing key, so the device needs only the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedManifest {
    /// The signed content.
    pub manifest: Manifest,
    /// ECDSA P-256 / SHA-256 by `manifest.key_id` over the manifest
    /// context and the canonical encoding of `manifest`.
    pub signature: Signature,
    /// The root-signed key ring that certifies `manifest.key_id`.
    pub keyring: SignedKeyring,
}

fn canonical<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail (no maps with non-string
    // keys, no floats); an empty vector would fail every signature check.
    serde_json::to_vec(value).unwrap_or_default()
}

pub(crate) fn signed_message(context: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + body.len());
    m.extend_from_slice(context);
    m.extend_from_slice(body);
    m
}

/// Another format's fields differ, so its strict parse would fail with a
/// puzzling "missing field"; this looks at the format number first and
/// says what is wrong instead.
fn refuse_other_manifest_formats(bytes: &[u8]) -> Result<(), Rejection> {
    #[derive(Deserialize)]
    struct Peek {
        manifest: PeekFormat,
    }
    #[derive(Deserialize)]
    struct PeekFormat {
        format: u32,
    }
    if bytes.len() > MAX_MANIFEST_LEN {
        return Ok(()); // the strict parse refuses it as too large
    }
    match serde_json::from_slice::<Peek>(bytes) {
        Ok(peek) if peek.manifest.format != MANIFEST_FORMAT => Err(Rejection::UnsupportedFormat {
            what: "manifest",
            format: peek.manifest.format,
            supported: MANIFEST_FORMAT,
        }),
        _ => Ok(()),
    }
}

/// Parses a document and insists on the canonical encoding.
fn parse_canonical<T: Serialize + for<'de> Deserialize<'de>>(
    bytes: &[u8],
    max: usize,
) -> Result<T, Rejection> {
    if bytes.len() > max {
        return Err(Rejection::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    // serde's derived struct visitor refuses a repeated field name
    // ("duplicate field"); unknown fields are refused by deny_unknown_fields.
    let value: T = serde_json::from_slice(bytes).map_err(|e| Rejection::Malformed {
        reason: e.to_string(),
    })?;
    if canonical(&value) != bytes {
        return Err(Rejection::NonCanonical);
    }
    Ok(value)
}

fn check_count(what: &str, n: usize, max: usize) -> Result<(), Rejection> {
    if n == 0 || n > max {
        return Err(Rejection::Malformed {
            reason: format!("{what}: {n} entries, expected 1 to {max}"),
        });
    }
    Ok(())
}

impl Manifest {
    /// The canonical encoding (what is signed, after the context).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        canonical(self)
    }

    /// Limits that the types alone do not express.
    pub(crate) fn check_shape(&self) -> Result<(), Rejection> {
        if self.format != MANIFEST_FORMAT {
            return Err(Rejection::UnsupportedFormat {
                what: "manifest",
                format: self.format,
                supported: MANIFEST_FORMAT,
            });
        }
        check_count(
            "hardware_revisions",
            self.hardware_revisions.len(),
            MAX_HARDWARE_REVISIONS,
        )?;
        check_count("artifact.urls", self.artifact.urls.len(), MAX_ARTIFACT_URLS)?;
        let index = &self.artifact.index;
        check_count("artifact.index.urls", index.urls.len(), MAX_ARTIFACT_URLS)?;
        if let Some(sbom) = &self.sbom {
            check_count("sbom.urls", sbom.urls.len(), MAX_ARTIFACT_URLS)?;
        }
        if let Some(delta) = &self.delta {
            check_count("delta.urls", delta.urls.len(), MAX_ARTIFACT_URLS)?;
            check_count("delta.pack_urls", delta.pack_urls.len(), MAX_ARTIFACT_URLS)?;
            if delta.size > crate::delta::MAX_INDEX_LEN as u64 {
                return Err(Rejection::Malformed {
                    reason: format!(
                        "delta.size is {}, more than a delta index may be",
                        delta.size
                    ),
                });
            }
        }
        if !ChunkIndex::chunk_len_is_valid(index.chunk_len) {
            return Err(Rejection::Malformed {
                reason: format!(
                    "artifact.index.chunk_len is {}, not a power of two from 64 KiB to 1 MiB",
                    index.chunk_len
                ),
            });
        }
        let expected = ChunkIndex::encoded_len(self.artifact.size, index.chunk_len);
        if index.size != expected {
            return Err(Rejection::Malformed {
                reason: format!(
                    "artifact.index.size is {}, but an index of {} bytes in chunks of {} is {expected} bytes",
                    index.size, self.artifact.size, index.chunk_len
                ),
            });
        }
        if self.rollout.spread_hours > MAX_SPREAD_HOURS {
            return Err(Rejection::Malformed {
                reason: format!(
                    "rollout.spread_hours is {}, at most {MAX_SPREAD_HOURS}",
                    self.rollout.spread_hours
                ),
            });
        }
        Ok(())
    }

    /// Signs the manifest with `key` and attaches the key ring that
    /// certifies it. Fails if `key_id` does not name `key`.
    pub fn sign(
        self,
        key: &SigningKey,
        keyring: SignedKeyring,
    ) -> Result<SignedManifest, KeyError> {
        if self.key_id != key.key_id() {
            return Err(KeyError::Document(Rejection::Malformed {
                reason: format!(
                    "manifest.key_id {} is not the id of the signing key {}",
                    self.key_id,
                    key.key_id()
                ),
            }));
        }
        self.check_shape()?;
        let signature = key.sign(&signed_message(MANIFEST_CONTEXT, &self.canonical_bytes()))?;
        Ok(SignedManifest {
            manifest: self,
            signature,
            keyring,
        })
    }
}

impl Keyring {
    /// The canonical encoding (what is signed, after the context).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        canonical(self)
    }

    pub(crate) fn check_shape(&self) -> Result<(), Rejection> {
        if self.format != KEYRING_FORMAT {
            return Err(Rejection::UnsupportedFormat {
                what: "key ring",
                format: self.format,
                supported: KEYRING_FORMAT,
            });
        }
        check_count("keyring.keys", self.keys.len(), MAX_KEYRING_KEYS)?;
        for k in &self.keys {
            if k.public_key.key_id() != k.key_id {
                return Err(Rejection::Malformed {
                    reason: format!("key ring entry {} does not match its public key", k.key_id),
                });
            }
        }
        Ok(())
    }

    /// The entry for `id`, if the key ring certifies it.
    pub fn key(&self, id: &KeyId) -> Option<&CertifiedKey> {
        self.keys.iter().find(|k| &k.key_id == id)
    }

    /// Signs the key ring with the root key.
    pub fn sign(self, root: &SigningKey) -> Result<SignedKeyring, KeyError> {
        self.check_shape()?;
        let signature = root.sign(&signed_message(KEYRING_CONTEXT, &self.canonical_bytes()))?;
        Ok(SignedKeyring {
            keyring: self,
            root_key_id: root.key_id(),
            signature,
        })
    }
}

impl SignedKeyring {
    /// Parses a key-ring file (canonical encoding only). This does not
    /// check the signature: see [`SignedKeyring::verify`].
    pub fn from_json(bytes: &[u8]) -> Result<SignedKeyring, Rejection> {
        let k: SignedKeyring = parse_canonical(bytes, MAX_MANIFEST_LEN)?;
        k.keyring.check_shape()?;
        Ok(k)
    }
    /// The canonical encoding, as written to a file.
    pub fn to_json(&self) -> Vec<u8> {
        canonical(self)
    }
}

impl SignedManifest {
    /// Parses a signed manifest (canonical encoding only, at most
    /// [`MAX_MANIFEST_LEN`] bytes). This checks the form, not the
    /// signatures: use [`crate::verify`] on the device.
    pub fn from_json(bytes: &[u8]) -> Result<SignedManifest, Rejection> {
        refuse_other_manifest_formats(bytes)?;
        let m: SignedManifest = parse_canonical(bytes, MAX_MANIFEST_LEN)?;
        m.keyring.keyring.check_shape()?;
        m.manifest.check_shape()?;
        Ok(m)
    }
    /// The canonical encoding, as published.
    pub fn to_json(&self) -> Vec<u8> {
        canonical(self)
    }
    /// An indented rendering for people; devices refuse it (not canonical).
    pub fn to_pretty_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

//! The device-side check of a release, before any byte of the artifact
//! is fetched.

use crate::keys::{TrustedRoot, signature_is_valid};
use crate::manifest::{
    KEYRING_CONTEXT, MANIFEST_CONTEXT, Manifest, SignedKeyring, SignedManifest, signed_message,
};
use crate::types::{HardwareRevision, KeyId, Model, Sha256, Timestamp, Version};

/// What the device knows about itself, from its read-only image and its
/// persisted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    /// Its model designation (`/etc/hwrevision`, first word).
    pub model: Model,
    /// Its hardware revision (`/etc/hwrevision`, second word).
    pub hardware_revision: HardwareRevision,
    /// The version running now.
    pub installed_version: Version,
    /// The persisted anti-rollback floor (only ever rises).
    pub security_floor: u32,
    /// The highest key-ring version seen so far (only ever rises).
    pub keyring_floor: u64,
    /// The largest artifact the device will fetch (the size of its slot,
    /// or less).
    pub max_artifact_size: u64,
}

impl DeviceFacts {
    /// Model and hardware revision from the text of `/etc/hwrevision`
    /// (`"<model> <revision>"`, the file SWUpdate's hardware check reads),
    /// so both checks use the same facts.
    pub fn parse_hwrevision(text: &str) -> Result<(Model, HardwareRevision), crate::FieldError> {
        let mut words = text.split_whitespace();
        let model = words.next().unwrap_or("").parse()?;
        let revision = words.next().unwrap_or("").parse()?;
        if words.next().is_some() {
            return Err(crate::FieldError {
                what: "/etc/hwrevision",
                value: text.chars().take(80).collect(),
                why: "must be exactly \"<model> <revision>\"",
            });
        }
        Ok((model, revision))
    }
}

/// Why a release was refused. Each message says what was wrong and, where
/// someone can act on it, what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The document is larger than allowed (endless data).
    #[error("the document is {len} bytes, more than the {max} allowed; refusing to parse it")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON, a field is invalid, a field is missing, repeated or unknown.
    #[error("the document is malformed: {reason}")]
    Malformed {
        /// serde's or our description.
        reason: String,
    },
    /// Valid JSON, but not the canonical encoding that was signed.
    #[error(
        "the document is not in canonical form (whitespace, key order, escapes or trailing data differ from what is signed); publish the file exactly as hearth-release wrote it"
    )]
    NonCanonical,
    /// A format this code does not know.
    #[error("the {what} is format {format}, this device reads only format {supported}; {}",
        if format < supported {
            "the vendor must re-sign the release with a current hearth-release"
        } else {
            "this device needs a newer hearthd first: update it in steps"
        }
    )]
    UnsupportedFormat {
        /// "manifest" or "key ring".
        what: &'static str,
        /// The format number found.
        format: u32,
        /// The format this device reads.
        supported: u32,
    },
    /// The key ring was signed by another root.
    #[error(
        "the key ring is signed by root key {found}, but this device trusts only root key {trusted}"
    )]
    WrongRoot {
        /// The trusted root's id.
        trusted: KeyId,
        /// The id named in the key ring.
        found: KeyId,
    },
    /// A signature does not verify.
    #[error(
        "the {what} signature is not valid: the document was altered or signed with another key"
    )]
    BadSignature {
        /// "key ring" or "manifest".
        what: &'static str,
    },
    /// The key ring has expired (freeze attack, or the root has not
    /// re-signed it in time).
    #[error(
        "the key ring expired at {expires} (now {now}); the vendor must sign a fresh key ring with the root key"
    )]
    KeyringExpired {
        /// Its expiry.
        expires: Timestamp,
        /// The device's time.
        now: Timestamp,
    },
    /// An older key ring than the device has already seen (it may still
    /// list a revoked key).
    #[error(
        "the key ring is version {version}, older than version {floor} this device has already seen (a revoked key may be in it)"
    )]
    KeyringRollback {
        /// Its version.
        version: u64,
        /// The device's floor.
        floor: u64,
    },
    /// The manifest's signing key is not in the key ring: never certified,
    /// or revoked by a newer key ring.
    #[error(
        "the manifest is signed by key {key_id}, which the root does not certify (unknown or revoked)"
    )]
    UnknownKey {
        /// The key id named by the manifest.
        key_id: KeyId,
    },
    /// The signing key is outside its validity period.
    #[error(
        "signing key {key_id} is valid from {not_before} until {not_after}, not at {now}; sign with a currently certified key"
    )]
    KeyNotValid {
        /// The key.
        key_id: KeyId,
        /// Start of validity.
        not_before: Timestamp,
        /// End of validity.
        not_after: Timestamp,
        /// The device's time.
        now: Timestamp,
    },
    /// The manifest has expired (freeze attack).
    #[error(
        "the manifest expired at {expires} (now {now}); the vendor must re-sign it to keep offering this release"
    )]
    Expired {
        /// Its expiry.
        expires: Timestamp,
        /// The device's time.
        now: Timestamp,
    },
    /// Built for another model (mix-and-match).
    #[error("the release is for model {release}, this device is model {device}")]
    WrongModel {
        /// The device's model.
        device: Model,
        /// The release's model.
        release: Model,
    },
    /// Not for this hardware revision (mix-and-match).
    #[error(
        "the release supports hardware revisions {accepted:?}, this device is revision {device}"
    )]
    WrongHardware {
        /// The device's revision.
        device: HardwareRevision,
        /// The revisions the release names.
        accepted: Vec<String>,
    },
    /// Not newer than what runs (rollback or replay).
    #[error("release {offered} is not newer than the installed {installed}")]
    NotNewer {
        /// The release's version.
        offered: Version,
        /// The device's version.
        installed: Version,
    },
    /// The device must first install an intermediate release.
    #[error(
        "release needs at least version {minimum} installed, this device runs {installed}; install an intermediate release first"
    )]
    InstalledTooOld {
        /// The release's minimum.
        minimum: Version,
        /// The device's version.
        installed: Version,
    },
    /// Below the anti-rollback floor.
    #[error(
        "release has security version {offered}, below this device's floor {floor} (it would reinstall a fixed vulnerability)"
    )]
    SecurityRollback {
        /// The release's security version.
        offered: u32,
        /// The device's floor.
        floor: u32,
    },
    /// The artifact is larger than the device accepts (endless data).
    #[error("the artifact is {size} bytes, more than the {max} this device accepts")]
    ArtifactTooLarge {
        /// Declared size.
        size: u64,
        /// The device's cap.
        max: u64,
    },
}

impl SignedKeyring {
    /// Checks the key ring against the root: root id, signature, expiry
    /// and the device's key-ring floor.
    pub fn verify(&self, root: &TrustedRoot, now: Timestamp, floor: u64) -> Result<(), Rejection> {
        if self.root_key_id != root.key_id() {
            return Err(Rejection::WrongRoot {
                trusted: root.key_id(),
                found: self.root_key_id,
            });
        }
        let msg = signed_message(KEYRING_CONTEXT, &self.keyring.canonical_bytes());
        if !signature_is_valid(root.public_key(), &msg, &self.signature) {
            return Err(Rejection::BadSignature { what: "key ring" });
        }
        self.keyring.check_shape()?;
        if now >= self.keyring.expires {
            return Err(Rejection::KeyringExpired {
                expires: self.keyring.expires,
                now,
            });
        }
        if self.keyring.version < floor {
            return Err(Rejection::KeyringRollback {
                version: self.keyring.version,
                floor,
            });
        }
        Ok(())
    }
}

/// A release that passed every check of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRelease {
    manifest: Manifest,
    keyring_version: u64,
}

impl VerifiedRelease {
    /// The checked manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// The release version (persist it once the new slot is confirmed).
    pub fn version(&self) -> crate::Version {
        self.manifest.version
    }
    /// The security version (raise the floor to it once confirmed).
    pub fn security_version(&self) -> u32 {
        self.manifest.security_version
    }
    /// The key-ring version (raise the key-ring floor to it; this is what
    /// makes a revocation stick on this device).
    pub fn keyring_version(&self) -> u64 {
        self.keyring_version
    }
    /// The signing key that signed the manifest.
    pub fn signed_by(&self) -> KeyId {
        self.manifest.key_id
    }
    /// The artifact's expected SHA-256.
    pub fn artifact_sha256(&self) -> Sha256 {
        self.manifest.artifact.sha256
    }
    /// The chunk index in `bytes` (as fetched from the manifest's index
    /// URLs), once it proved to be the one this manifest signs.
    pub fn chunk_index(&self, bytes: &[u8]) -> Result<crate::ChunkIndex, crate::ArtifactError> {
        crate::ChunkIndex::from_signed(bytes, &self.manifest.artifact)
    }
}

/// Checks a signed manifest the way a device must before it fetches the
/// artifact, in this order (after TUF's client workflow):
///
/// 1. size cap, canonical encoding, field syntax;
/// 2. the key ring: signed by the trusted root, not expired, version at or
///    above `device.keyring_floor`;
/// 3. the manifest's key is in the key ring and valid at `now`, and its
///    signature verifies;
/// 4. the manifest has not expired;
/// 5. model and hardware revision match;
/// 6. the version is above the installed one and the installed one is at
///    least `min_installed_version`; the security version is at or above
///    the floor;
/// 7. the artifact fits under `device.max_artifact_size`.
///
/// `now` must come from a clock the device trusts (see
/// docs/update-security.md, "Trusted time").
pub fn verify(
    manifest_bytes: &[u8],
    root: &TrustedRoot,
    device: &DeviceFacts,
    now: Timestamp,
) -> Result<VerifiedRelease, Rejection> {
    let signed = SignedManifest::from_json(manifest_bytes)?;
    signed.keyring.verify(root, now, device.keyring_floor)?;
    let keyring = &signed.keyring.keyring;
    let m = &signed.manifest;

    let key = keyring
        .key(&m.key_id)
        .ok_or(Rejection::UnknownKey { key_id: m.key_id })?;
    if now < key.not_before || now >= key.not_after {
        return Err(Rejection::KeyNotValid {
            key_id: key.key_id,
            not_before: key.not_before,
            not_after: key.not_after,
            now,
        });
    }
    let msg = signed_message(MANIFEST_CONTEXT, &m.canonical_bytes());
    if !signature_is_valid(&key.public_key, &msg, &signed.signature) {
        return Err(Rejection::BadSignature { what: "manifest" });
    }
    if now >= m.expires {
        return Err(Rejection::Expired {
            expires: m.expires,
            now,
        });
    }
    if m.model != device.model {
        return Err(Rejection::WrongModel {
            device: device.model.clone(),
            release: m.model.clone(),
        });
    }
    if !m.hardware_revisions.contains(&device.hardware_revision) {
        return Err(Rejection::WrongHardware {
            device: device.hardware_revision.clone(),
            accepted: m.hardware_revisions.iter().map(|r| r.to_string()).collect(),
        });
    }
    if m.version <= device.installed_version {
        return Err(Rejection::NotNewer {
            offered: m.version,
            installed: device.installed_version,
        });
    }
    if device.installed_version < m.min_installed_version {
        return Err(Rejection::InstalledTooOld {
            minimum: m.min_installed_version,
            installed: device.installed_version,
        });
    }
    if m.security_version < device.security_floor {
        return Err(Rejection::SecurityRollback {
            offered: m.security_version,
            floor: device.security_floor,
        });
    }
    if m.artifact.size > device.max_artifact_size {
        return Err(Rejection::ArtifactTooLarge {
            size: m.artifact.size,
            max: device.max_artifact_size,
        });
    }
    Ok(VerifiedRelease {
        keyring_version: keyring.version,
        manifest: signed.manifest,
    })
}

//! Hearth's signed release format: the manifest a device checks before it
//! fetches an update, and the key hierarchy behind it.
//!
//! * An **offline root key** signs a [`Keyring`]: the online
//!   release-signing keys it vouches for, each with validity dates. The
//!   key ring has a version and an expiry.
//! * A **release-signing key** signs a [`Manifest`]: model, hardware
//!   revisions, version, security version, artifact URL/size/SHA-256 and
//!   the length and SHA-256 of its chunk index ([`ChunkIndex`]), rollout,
//!   expiry.
//! * The published file is a [`SignedManifest`] (manifest + signature +
//!   key ring) in one canonical JSON encoding, so a device needs only the
//!   root's public key ([`TrustedRoot`]), shipped in its read-only image.
//!
//! Signatures are ECDSA P-256 with SHA-256 through `ring` (the crypto
//! provider rustls uses here); [`keys`] says why not Ed25519.
//!
//! # On the device
//!
//! ```no_run
//! use update_manifest::{verify, DeviceFacts, Timestamp, TrustedRoot};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The root certificate SWUpdate trusts (-k) is the manifest root too.
//! let root = TrustedRoot::from_cert_pem(&std::fs::read_to_string("/usr/share/hearth/swupdate-trust.pem")?)?;
//! // The same facts SWUpdate's hardware check reads.
//! let (model, hardware_revision) =
//!     DeviceFacts::parse_hwrevision(&std::fs::read_to_string("/etc/hwrevision")?)?;
//! let facts = DeviceFacts {
//!     model,
//!     hardware_revision,
//!     installed_version: "1.4.1".parse()?,
//!     security_floor: 3,
//!     keyring_floor: 2,
//!     max_artifact_size: 512 << 20,
//! };
//! # let manifest_bytes: Vec<u8> = Vec::new();
//! // Refused releases carry a sentence saying why (Rejection's Display).
//! let release = verify(&manifest_bytes, &root, &facts, Timestamp::now())?;
//! // Fetch the chunk index from the manifest's index URLs (at most
//! // release.manifest().artifact.index.size bytes) and check it.
//! # let index_bytes: Vec<u8> = Vec::new();
//! let index = release.chunk_index(&index_bytes)?;
//! // Stream the one download into SWUpdate: each chunk is handed on only
//! // once it matched the index, the last one only once the whole
//! // artifact's size and SHA-256 matched the manifest's too.
//! # let download = std::io::empty();
//! let checked = index.verified(download);
//! # drop(checked);
//! // After the new slot is confirmed: persist release.version(),
//! // raise the floors to release.security_version() and
//! // release.keyring_version().
//! # Ok(())
//! # }
//! ```
//!
//! # Current limitations
//!
//! * One root key, no threshold of several root keys; replacing the root
//!   needs a new image.
//! * Revocation reaches a device when it sees a newer key ring (with any
//!   release) or when the old key ring expires; there is no separate
//!   revocation feed.
//! * `now` is the caller's: a device without a trusted clock can be
//!   frozen at an old time (docs/update-security.md, "Trusted time").

pub mod artifact;
pub mod delta;
pub mod index;
pub mod keys;
pub mod manifest;
pub mod types;
mod verify;

pub use artifact::{ArtifactChecker, ArtifactError};
pub use delta::{DeltaIndex, DeltaReader};
pub use index::{ChunkIndex, DEFAULT_CHUNK_LEN, VerifiedChunks};
pub use keys::{
    KeyError, SigningKey, TrustedRoot, is_development_key, public_key_from_pem, public_key_to_pem,
};
pub use manifest::{
    Artifact, ArtifactIndex, CertifiedKey, Delta, KEYRING_FORMAT, Keyring, MANIFEST_FORMAT,
    MAX_MANIFEST_LEN, Manifest, Rollout, Sbom, SignedKeyring, SignedManifest, Urgency,
};
pub use types::{
    ArtifactUrl, FieldError, HardwareRevision, KeyId, Label, Model, PublicKey, Sha256, Signature,
    Timestamp, Version,
};
pub use verify::{DeviceFacts, Rejection, VerifiedRelease, verify};

//! Shared test material: the committed test keys (NOT FOR PRODUCTION) and
//! a well-formed release for a fixed device at a fixed time, so fixtures
//! do not rot as the calendar moves.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use update_manifest::{
    Artifact, ArtifactIndex, CertifiedKey, DeviceFacts, KEYRING_FORMAT, Keyring, MANIFEST_FORMAT,
    Manifest, Rollout, SignedKeyring, SigningKey, Timestamp, TrustedRoot, Urgency,
};

pub fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The device's clock in every fixture test.
pub fn now() -> Timestamp {
    ts("2027-06-01T00:00:00Z")
}

/// Loads `tests/data/keys/NAME.key.pem`, making it on first use.
pub fn key(name: &str) -> SigningKey {
    let path = data().join(format!("keys/{name}.key.pem"));
    if !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let (_, der) = SigningKey::generate().unwrap();
        std::fs::write(&path, SigningKey::pkcs8_to_pem(&der)).unwrap();
    }
    SigningKey::from_pkcs8_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn root() -> SigningKey {
    key("test-root")
}

pub fn trusted_root() -> TrustedRoot {
    TrustedRoot::new(*root().public_key())
}

pub fn facts() -> DeviceFacts {
    DeviceFacts {
        model: "HRH-1".parse().unwrap(),
        hardware_revision: "A".parse().unwrap(),
        installed_version: "1.0.0".parse().unwrap(),
        security_floor: 2,
        keyring_floor: 1,
        max_artifact_size: 64 << 20,
    }
}

pub fn certified(key: &SigningKey, name: &str, from: &str, until: &str) -> CertifiedKey {
    CertifiedKey {
        key_id: key.key_id(),
        public_key: *key.public_key(),
        name: name.parse().unwrap(),
        not_before: ts(from),
        not_after: ts(until),
    }
}

pub fn keyring(version: u64, keys: Vec<CertifiedKey>) -> Keyring {
    Keyring {
        format: KEYRING_FORMAT,
        version,
        issued: ts("2027-01-01T00:00:00Z"),
        expires: ts("2028-01-01T00:00:00Z"),
        keys,
    }
}

/// Key ring version 1 certifying `signer-2027` for 2027.
pub fn keyring_v1() -> SignedKeyring {
    keyring(
        1,
        vec![certified(
            &key("signer-2027"),
            "release signer 2027",
            "2027-01-01T00:00:00Z",
            "2028-01-01T00:00:00Z",
        )],
    )
    .sign(&root())
    .unwrap()
}

/// A release the device of [`facts`] accepts at [`now`], signed by `key_id`.
pub fn manifest(signer: &SigningKey) -> Manifest {
    Manifest {
        format: MANIFEST_FORMAT,
        product: "Hearth Reference Hub".parse().unwrap(),
        model: "HRH-1".parse().unwrap(),
        hardware_revisions: vec!["A".parse().unwrap(), "B".parse().unwrap()],
        version: "1.1.0".parse().unwrap(),
        security_version: 2,
        min_installed_version: "0.9.0".parse().unwrap(),
        urgency: Urgency::Security,
        release_notes: "https://updates.example.com/hrh-1/1.1.0/notes.html"
            .parse()
            .unwrap(),
        artifact: Artifact {
            urls: vec![
                "https://updates.example.com/hrh-1/1.1.0/hearth-1.1.0.swu"
                    .parse()
                    .unwrap(),
            ],
            size: 123_456,
            sha256: update_manifest::Sha256::digest(b"the artifact"),
            index: ArtifactIndex {
                urls: vec![
                    "https://updates.example.com/hrh-1/1.1.0/hearth-1.1.0.swu.index"
                        .parse()
                        .unwrap(),
                ],
                chunk_len: update_manifest::DEFAULT_CHUNK_LEN,
                size: update_manifest::ChunkIndex::encoded_len(
                    123_456,
                    update_manifest::DEFAULT_CHUNK_LEN,
                ),
                sha256: update_manifest::Sha256::digest(b"the index"),
            },
        },
        rollout: Rollout {
            start: ts("2027-05-30T00:00:00Z"),
            spread_hours: 48,
        },
        issued: ts("2027-05-30T00:00:00Z"),
        expires: ts("2027-06-30T00:00:00Z"),
        key_id: signer.key_id(),
        sbom: None,
        delta: None,
    }
}

/// The canonical bytes of `m` signed by `signer` with `keyring`.
pub fn sign(m: Manifest, signer: &SigningKey, keyring: SignedKeyring) -> Vec<u8> {
    m.sign(signer, keyring).unwrap().to_json()
}

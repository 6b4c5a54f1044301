//! Feeds arbitrary bytes to the manifest and key-ring parsers and to
//! verify(). They must never panic; whatever parses must be canonical
//! (re-encoding gives the same bytes).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use update_manifest::{DeviceFacts, SignedKeyring, SignedManifest, SigningKey, TrustedRoot, verify};

fn root() -> &'static TrustedRoot {
    static ROOT: OnceLock<TrustedRoot> = OnceLock::new();
    ROOT.get_or_init(|| {
        let key = SigningKey::from_pkcs8_pem(include_str!("../../tests/data/keys/test-root.key.pem"))
            .expect("test root key");
        TrustedRoot::new(*key.public_key())
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = SignedManifest::from_json(data) {
        assert_eq!(m.to_json(), data, "accepted a non-canonical manifest");
    }
    if let Ok(k) = SignedKeyring::from_json(data) {
        assert_eq!(k.to_json(), data, "accepted a non-canonical key ring");
    }
    let facts = DeviceFacts {
        model: "HRH-1".parse().expect("model"),
        hardware_revision: "A".parse().expect("revision"),
        installed_version: "1.0.0".parse().expect("version"),
        security_floor: 2,
        keyring_floor: 1,
        max_artifact_size: 64 << 20,
    };
    let now = "2027-06-01T00:00:00Z".parse().expect("time");
    if let Ok(release) = verify(data, root(), &facts, now) {
        // Only an untouched, correctly signed fixture can get here.
        assert!(release.version() > facts.installed_version);
    }
});

//! Key rotation and revocation through key-ring versions.

use update_manifest::{Rejection, SignedKeyring, verify};

use crate::common::*;

#[test]
fn release_signed_by_a_newly_certified_key_verifies_and_raises_the_keyring_floor() {
    let new = key("signer-2028");
    let kr = keyring(
        2,
        vec![
            certified(
                &key("signer-2027"),
                "old",
                "2027-01-01T00:00:00Z",
                "2028-01-01T00:00:00Z",
            ),
            certified(&new, "new", "2027-05-01T00:00:00Z", "2028-06-01T00:00:00Z"),
        ],
    )
    .sign(&root())
    .unwrap();
    let bytes = sign(manifest(&new), &new, kr);
    let release = verify(&bytes, &trusted_root(), &facts(), now()).unwrap();
    assert_eq!(release.signed_by(), new.key_id());
    assert_eq!(release.keyring_version(), 2);
}

#[test]
fn release_signed_by_a_revoked_key_is_refused_with_any_keyring() {
    let old = key("signer-2027");
    let new = key("signer-2028");
    let v3 = keyring(
        3,
        vec![certified(
            &new,
            "new",
            "2027-05-01T00:00:00Z",
            "2028-06-01T00:00:00Z",
        )],
    )
    .sign(&root())
    .unwrap();
    let with_new_ring = sign(manifest(&old), &old, v3);
    assert!(matches!(
        verify(&with_new_ring, &trusted_root(), &facts(), now()),
        Err(Rejection::UnknownKey { .. })
    ));
    // With the old ring (v1) on a device that has seen v3.
    let with_old_ring = sign(manifest(&old), &old, keyring_v1());
    let mut device = facts();
    device.keyring_floor = 3;
    assert_eq!(
        verify(&with_old_ring, &trusted_root(), &device, now()).unwrap_err(),
        Rejection::KeyringRollback {
            version: 1,
            floor: 3
        }
    );
}

#[test]
fn committed_rotation_chain_is_signed_by_the_test_root_with_rising_versions() {
    let mut last = 0;
    for v in 1..=3 {
        let bytes =
            std::fs::read(data().join(format!("rotated-key-chain/keyring-v{v}.json"))).unwrap();
        let kr = SignedKeyring::from_json(&bytes).unwrap();
        kr.verify(&trusted_root(), now(), 0).unwrap();
        assert!(kr.keyring.version > last);
        last = kr.keyring.version;
    }
}

#[test]
fn keyring_signed_by_the_root_cannot_pass_as_a_manifest_signature() {
    // Domain separation: sign the manifest's bytes with the key-ring
    // context by hand and attach it: refused.
    let root = root();
    let kr = keyring(
        1,
        vec![certified(
            &root,
            "root as signer",
            "2027-01-01T00:00:00Z",
            "2028-01-01T00:00:00Z",
        )],
    )
    .sign(&root)
    .unwrap();
    let m = manifest(&root);
    let mut msg = b"hearth-keyring-v1\0".to_vec();
    msg.extend_from_slice(&m.canonical_bytes());
    let mut signed = m.sign(&root, kr).unwrap();
    signed.signature = root.sign(&msg).unwrap();
    assert_eq!(
        verify(&signed.to_json(), &trusted_root(), &facts(), now()).unwrap_err(),
        Rejection::BadSignature { what: "manifest" }
    );
}

//! Every file in `tests/data` names what is wrong with it; each must be
//! refused for exactly that reason (and `good-manifest.json` accepted).
//!
//! Regenerate after a format change (ECDSA signatures are randomised, so
//! the files change every time):
//! `cargo test -p update-manifest --test it -- --ignored regenerate_fixtures`

use std::fs;

use update_manifest::{Rejection, SignedManifest, verify};

use crate::common::*;

/// (file, expected outcome as a matcher)
type Outcome = Result<update_manifest::VerifiedRelease, Rejection>;
type Expectation = (&'static str, fn(&Outcome) -> bool);

fn expectations() -> Vec<Expectation> {
    vec![
        ("good-manifest.json", |r| r.is_ok()),
        ("expired-manifest.json", |r| {
            matches!(r, Err(Rejection::Expired { .. }))
        }),
        ("wrong-model.json", |r| {
            matches!(r, Err(Rejection::WrongModel { .. }))
        }),
        ("wrong-hardware-revision.json", |r| {
            matches!(r, Err(Rejection::WrongHardware { .. }))
        }),
        ("older-version.json", |r| {
            matches!(r, Err(Rejection::NotNewer { .. }))
        }),
        ("same-version-replay.json", |r| {
            matches!(r, Err(Rejection::NotNewer { .. }))
        }),
        ("installed-too-old.json", |r| {
            matches!(r, Err(Rejection::InstalledTooOld { .. }))
        }),
        ("lower-security-version.json", |r| {
            matches!(r, Err(Rejection::SecurityRollback { .. }))
        }),
        ("oversized-artifact.json", |r| {
            matches!(r, Err(Rejection::ArtifactTooLarge { .. }))
        }),
        ("unknown-key-id.json", |r| {
            matches!(r, Err(Rejection::UnknownKey { .. }))
        }),
        ("wrong-root.json", |r| {
            matches!(r, Err(Rejection::WrongRoot { .. }))
        }),
        ("tampered-manifest.json", |r| {
            matches!(r, Err(Rejection::BadSignature { what: "manifest" }))
        }),
        ("tampered-keyring.json", |r| {
            matches!(r, Err(Rejection::BadSignature { what: "key ring" }))
        }),
        ("expired-keyring.json", |r| {
            matches!(r, Err(Rejection::KeyringExpired { .. }))
        }),
        ("signing-key-not-yet-valid.json", |r| {
            matches!(r, Err(Rejection::KeyNotValid { .. }))
        }),
        ("signing-key-expired.json", |r| {
            matches!(r, Err(Rejection::KeyNotValid { .. }))
        }),
        ("non-canonical-pretty.json", |r| {
            matches!(r, Err(Rejection::NonCanonical))
        }),
        ("non-canonical-trailing-newline.json", |r| {
            matches!(r, Err(Rejection::NonCanonical))
        }),
        ("non-canonical-unicode-escape.json", |r| {
            matches!(r, Err(Rejection::NonCanonical))
        }),
        ("non-canonical-key-order.json", |r| {
            matches!(r, Err(Rejection::NonCanonical))
        }),
        (
            "duplicate-key.json",
            |r| matches!(r, Err(Rejection::Malformed { reason }) if reason.contains("duplicate field")),
        ),
        (
            "unknown-field.json",
            |r| matches!(r, Err(Rejection::Malformed { reason }) if reason.contains("unknown field")),
        ),
        (
            "http-artifact-url.json",
            |r| matches!(r, Err(Rejection::Malformed { reason }) if reason.contains("https://")),
        ),
        ("huge-field.json", |r| {
            matches!(r, Err(Rejection::TooLarge { .. }))
        }),
        ("future-format.json", |r| {
            matches!(r, Err(Rejection::UnsupportedFormat { format: 3, .. }))
        }),
        ("format-1-without-index.json", |r| {
            matches!(
                r,
                Err(Rejection::UnsupportedFormat {
                    what: "manifest",
                    format: 1,
                    supported: 2
                })
            )
        }),
        (
            "index-size-not-the-artifacts.json",
            |r| matches!(r, Err(Rejection::Malformed { reason }) if reason.contains("artifact.index.size")),
        ),
        (
            "index-chunk-len-too-large.json",
            |r| matches!(r, Err(Rejection::Malformed { reason }) if reason.contains("chunk_len")),
        ),
        ("rotated-key-chain/release-by-new-key.json", |r| r.is_ok()),
        ("rotated-key-chain/release-by-revoked-key.json", |r| {
            matches!(r, Err(Rejection::UnknownKey { .. }))
        }),
        (
            "rotated-key-chain/release-by-old-key-with-old-keyring.json",
            |r| {
                matches!(
                    r,
                    Err(Rejection::KeyringRollback {
                        version: 2,
                        floor: 3
                    })
                )
            },
        ),
    ]
}

#[test]
fn every_fixture_is_judged_for_the_reason_in_its_name() {
    for (name, ok) in expectations() {
        let bytes = fs::read(data().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}; run the regenerate_fixtures test"));
        let mut device = facts();
        if name.starts_with("rotated-key-chain/") {
            // This device has seen key ring v3, which revoked signer-2027.
            device.keyring_floor = 3;
        }
        let result = verify(&bytes, &trusted_root(), &device, now());
        assert!(ok(&result), "{name}: unexpected {result:?}");
        if let Err(e) = &result {
            println!("{name}: {e}");
        }
    }
}

#[test]
fn every_fixture_file_is_listed() {
    let listed: Vec<&str> = expectations().iter().map(|(n, _)| *n).collect();
    for dir in ["", "rotated-key-chain/"] {
        for entry in fs::read_dir(data().join(dir)).unwrap() {
            let name = format!("{dir}{}", entry.unwrap().file_name().to_string_lossy());
            if name.ends_with(".json") && !name.contains("keyring-v") {
                assert!(listed.contains(&name.as_str()), "{name} has no expectation");
            }
        }
    }
}

fn write(name: &str, bytes: &[u8]) {
    let path = data().join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// Replaces the first `from` with `to` (the text must occur).
fn edit(json: &[u8], from: &str, to: &str) -> Vec<u8> {
    let s = String::from_utf8(json.to_vec()).unwrap();
    assert!(s.contains(from), "{from} not in {s}");
    s.replacen(from, to, 1).into_bytes()
}

#[test]
#[ignore = "writes tests/data; run by hand after a format change"]
fn regenerate_fixtures() {
    let root = root();
    let signer = key("signer-2027");
    let kr = keyring_v1();
    let good = sign(manifest(&signer), &signer, kr.clone());
    write("good-manifest.json", &good);

    let variant = |f: &dyn Fn(&mut update_manifest::Manifest)| {
        let mut m = manifest(&signer);
        f(&mut m);
        sign(m, &signer, kr.clone())
    };
    write(
        "expired-manifest.json",
        &variant(&|m| m.expires = ts("2027-05-31T00:00:00Z")),
    );
    write(
        "wrong-model.json",
        &variant(&|m| m.model = "HRH-2".parse().unwrap()),
    );
    write(
        "wrong-hardware-revision.json",
        &variant(&|m| m.hardware_revisions = vec!["C".parse().unwrap()]),
    );
    write(
        "older-version.json",
        &variant(&|m| m.version = "0.9.0".parse().unwrap()),
    );
    write(
        "same-version-replay.json",
        &variant(&|m| m.version = "1.0.0".parse().unwrap()),
    );
    write(
        "installed-too-old.json",
        &variant(&|m| m.min_installed_version = "1.0.1".parse().unwrap()),
    );
    write(
        "lower-security-version.json",
        &variant(&|m| m.security_version = 1),
    );
    write(
        "oversized-artifact.json",
        &variant(&|m| {
            m.artifact.size = 1 << 40;
            m.artifact.index.size =
                update_manifest::ChunkIndex::encoded_len(1 << 40, m.artifact.index.chunk_len);
        }),
    );
    write(
        "future-format.json",
        &edit(
            &good,
            "{\"manifest\":{\"format\":2",
            "{\"manifest\":{\"format\":3",
        ),
    );
    // What a format-1 tool wrote: no chunk index.
    let index_field = format!(
        ",\"index\":{}",
        serde_json::to_string(&manifest(&signer).artifact.index).unwrap()
    );
    write(
        "format-1-without-index.json",
        &edit(
            &edit(&good, &index_field, ""),
            "{\"manifest\":{\"format\":2",
            "{\"manifest\":{\"format\":1",
        ),
    );
    // The index's pinned length or chunk length altered (the manifest is
    // refused for its shape before its signature is looked at).
    write(
        "index-size-not-the-artifacts.json",
        &edit(
            &good,
            "\"chunk_len\":262144,\"size\":56",
            "\"chunk_len\":262144,\"size\":1056",
        ),
    );
    write(
        "index-chunk-len-too-large.json",
        &edit(&good, "\"chunk_len\":262144", "\"chunk_len\":16777216"),
    );

    // Signed by a key the root never certified.
    let stranger = key("uncertified-signer");
    write(
        "unknown-key-id.json",
        &sign(manifest(&stranger), &stranger, kr.clone()),
    );
    // A complete chain under another root.
    let rogue_root = key("rogue-root");
    let rogue_kr = keyring(
        1,
        vec![certified(
            &stranger,
            "rogue",
            "2027-01-01T00:00:00Z",
            "2028-01-01T00:00:00Z",
        )],
    )
    .sign(&rogue_root)
    .unwrap();
    write(
        "wrong-root.json",
        &sign(manifest(&stranger), &stranger, rogue_kr),
    );
    // Altered after signing (still canonical).
    write(
        "tampered-manifest.json",
        &edit(&good, "\"version\":\"1.1.0\"", "\"version\":\"1.9.0\""),
    );
    write(
        "tampered-keyring.json",
        &edit(
            &good,
            "\"not_after\":\"2028-01-01T00:00:00Z\"",
            "\"not_after\":\"2099-01-01T00:00:00Z\"",
        ),
    );
    let mut old_kr = keyring(1, kr.keyring.keys.clone());
    old_kr.expires = ts("2027-05-01T00:00:00Z");
    write(
        "expired-keyring.json",
        &sign(manifest(&signer), &signer, old_kr.sign(&root).unwrap()),
    );
    let early = keyring(
        1,
        vec![certified(
            &signer,
            "early",
            "2027-07-01T00:00:00Z",
            "2028-01-01T00:00:00Z",
        )],
    );
    write(
        "signing-key-not-yet-valid.json",
        &sign(manifest(&signer), &signer, early.sign(&root).unwrap()),
    );
    let late = keyring(
        1,
        vec![certified(
            &signer,
            "late",
            "2027-01-01T00:00:00Z",
            "2027-05-01T00:00:00Z",
        )],
    );
    write(
        "signing-key-expired.json",
        &sign(manifest(&signer), &signer, late.sign(&root).unwrap()),
    );

    // Encodings of the good manifest that are not the canonical one.
    let parsed = SignedManifest::from_json(&good).unwrap();
    write(
        "non-canonical-pretty.json",
        parsed.to_pretty_json().as_bytes(),
    );
    write(
        "non-canonical-trailing-newline.json",
        &[good.clone(), b"\n".to_vec()].concat(),
    );
    write(
        "non-canonical-unicode-escape.json",
        &edit(&good, "Hearth Reference Hub", "Hearth \\u0052eference Hub"),
    );
    write(
        "non-canonical-key-order.json",
        &edit(
            &good,
            "\"format\":2,\"product\":\"Hearth Reference Hub\"",
            "\"product\":\"Hearth Reference Hub\",\"format\":2",
        ),
    );
    write(
        "duplicate-key.json",
        &edit(
            &good,
            "\"version\":\"1.1.0\"",
            "\"version\":\"1.1.0\",\"version\":\"9.9.9\"",
        ),
    );
    write(
        "unknown-field.json",
        &edit(&good, "\"format\":2,", "\"format\":2,\"debug\":true,"),
    );
    write(
        "http-artifact-url.json",
        &edit(
            &good,
            "https://updates.example.com/hrh-1/1.1.0/hearth",
            "http://updates.example.com/hrh-1/1.1.0/hearth",
        ),
    );
    write(
        "huge-field.json",
        &edit(&good, "Hearth Reference Hub", &"H".repeat(70_000)),
    );

    // Rotation: v1 = signer-2027; v2 = signer-2027 + signer-2028 (overlap);
    // v3 = signer-2028 only (2027 revoked).
    let new = key("signer-2028");
    let old_entry = certified(
        &signer,
        "release signer 2027",
        "2027-01-01T00:00:00Z",
        "2028-01-01T00:00:00Z",
    );
    let new_entry = certified(
        &new,
        "release signer 2028",
        "2027-05-01T00:00:00Z",
        "2028-06-01T00:00:00Z",
    );
    let v1 = kr.clone();
    let v2 = keyring(2, vec![old_entry.clone(), new_entry.clone()])
        .sign(&root)
        .unwrap();
    let v3 = keyring(3, vec![new_entry]).sign(&root).unwrap();
    write("rotated-key-chain/keyring-v1.json", &v1.to_json());
    write("rotated-key-chain/keyring-v2.json", &v2.to_json());
    write("rotated-key-chain/keyring-v3.json", &v3.to_json());
    write(
        "rotated-key-chain/release-by-new-key.json",
        &sign(manifest(&new), &new, v3.clone()),
    );
    // The thief of signer-2027 attaches the newest key ring: not listed.
    write(
        "rotated-key-chain/release-by-revoked-key.json",
        &sign(manifest(&signer), &signer, v3),
    );
    // ... or the older key ring that still lists it: older than the floor.
    write(
        "rotated-key-chain/release-by-old-key-with-old-keyring.json",
        &sign(manifest(&signer), &signer, v2),
    );
}

//! The tool's command line without SWUpdate: key file safety, refusal of
//! development keys, publish layout rules, and the committed development
//! key ring.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use update_manifest::{SignedKeyring, Timestamp, TrustedRoot};

fn tool(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth-release"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(dir: &Path, args: &[&str]) {
    let (ok, err) = tool(dir, args);
    assert!(ok, "{args:?}: {err}");
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn dev_keys() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../yocto-layer/meta-hearth/files/dev-keys")
}

/// Root and signing keys, a key ring, and a `.swu` of `version` at `out`.
fn keys_and_build(p: &Path, version: &str, out: &str) {
    ok(p, &["keygen", "--role", "root", "--out", "root"]);
    ok(p, &["keygen", "--role", "signing", "--out", "signer"]);
    ok(
        p,
        &[
            "certify",
            "--root",
            "root",
            "--key",
            "signer",
            "--keyring",
            "keyring.json",
        ],
    );
    fs::write(p.join("rootfs"), vec![7u8; 10_000]).unwrap();
    ok(
        p,
        &[
            "build",
            "--rootfs",
            "rootfs",
            "--version",
            version,
            "--model",
            "HRH-1",
            "--hw-revision",
            "A",
            "--signer",
            "signer",
            "--out",
            out,
        ],
    );
}

#[test]
fn keygen_writes_private_keys_0600_and_never_overwrites() {
    let d = tmp();
    ok(d.path(), &["keygen", "--role", "root", "--out", "root"]);
    let mode = |f: &str| fs::metadata(d.path().join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("root.key.pem"), 0o600);
    assert_eq!(mode("root.pub.pem"), 0o644);
    let before = fs::read(d.path().join("root.key.pem")).unwrap();
    let (ok_, err) = tool(d.path(), &["keygen", "--role", "root", "--out", "root"]);
    assert!(!ok_ && err.contains("refusing to overwrite"), "{err}");
    assert_eq!(fs::read(d.path().join("root.key.pem")).unwrap(), before);

    // A taken certificate name stops keygen before any key is written.
    fs::write(d.path().join("other.cert.pem"), "x").unwrap();
    let (ok_, err) = tool(d.path(), &["keygen", "--role", "root", "--out", "other"]);
    assert!(!ok_ && err.contains("other.cert.pem"), "{err}");
    assert!(!d.path().join("other.key.pem").exists());
}

#[test]
fn development_keys_are_refused_without_dev() {
    let d = tmp();
    for f in [
        "hearth-dev-root.key.pem",
        "hearth-dev-root.cert.pem",
        "hearth-dev-signing.key.pem",
        "hearth-dev-signing.cert.pem",
    ] {
        fs::copy(dev_keys().join(f), d.path().join(f)).unwrap();
    }
    let args = [
        "certify",
        "--root",
        "hearth-dev-root",
        "--key",
        "hearth-dev-signing",
        "--no-cert",
        "--keyring",
        "k.json",
    ];
    let (ok_, err) = tool(d.path(), &args);
    assert!(!ok_ && err.contains("DEVELOPMENT key"), "{err}");
    assert!(err.contains("--dev"), "the message says what to do: {err}");
    let mut with_dev = args.to_vec();
    with_dev.push("--dev");
    ok(d.path(), &with_dev);

    // Keys made with keygen --dev are marked and refused the same way.
    ok(
        d.path(),
        &["keygen", "--role", "signing", "--out", "mine", "--dev"],
    );
    assert!(
        fs::read_to_string(d.path().join("mine.key.pem"))
            .unwrap()
            .contains("NOT FOR PRODUCTION")
    );
    fs::write(d.path().join("rootfs"), [0u8; 4096]).unwrap();
    let (ok_, err) = tool(
        d.path(),
        &[
            "build",
            "--rootfs",
            "rootfs",
            "--version",
            "1.0.0",
            "--model",
            "HRH-1",
            "--hw-revision",
            "A",
            "--signer",
            "mine",
            "--out",
            "x.swu",
        ],
    );
    assert!(!ok_ && err.contains("DEVELOPMENT key"), "{err}");
}

#[test]
fn the_committed_development_key_ring_is_signed_by_the_development_root() {
    let root = TrustedRoot::from_pem(
        &fs::read_to_string(dev_keys().join("hearth-dev-root.pub.pem")).unwrap(),
    )
    .unwrap();
    let kr =
        SignedKeyring::from_json(&fs::read(dev_keys().join("hearth-dev-keyring.json")).unwrap())
            .unwrap();
    kr.verify(&root, Timestamp::now(), 0)
        .unwrap_or_else(|e| panic!("{e}: run make-dev-manifest-keys.sh again"));
    let signing = update_manifest::public_key_from_pem(
        &fs::read_to_string(dev_keys().join("hearth-dev-signing.pub.pem")).unwrap(),
    )
    .unwrap();
    assert!(kr.keyring.key(&signing.key_id()).is_some());
}

#[test]
fn publish_refuses_paths_outside_the_tree_and_changes_to_a_published_version() {
    let d = tmp();
    let p = d.path();
    keys_and_build(p, "1.0.0", "a.swu");
    let manifest = |base: &str, out: &str| {
        ok(
            p,
            &[
                "manifest",
                "--artifact",
                "a.swu",
                "--key",
                "signer",
                "--keyring",
                "keyring.json",
                "--root",
                "root",
                "--base-url",
                base,
                "--security-version",
                "1",
                "--release-notes",
                "https://example.com/n",
                "--out",
                out,
            ],
        )
    };
    manifest("https://updates.example.com/../../etc", "evil.json");
    let (ok_, err) = tool(
        p,
        &[
            "publish",
            "--manifest",
            "evil.json",
            "--artifact",
            "a.swu",
            "--out",
            "www",
        ],
    );
    assert!(
        !ok_ && err.contains("must be BASE/MODEL/VERSION/FILE"),
        "{err}"
    );

    manifest("https://updates.example.com/hearth", "m.json");
    ok(
        p,
        &[
            "publish",
            "--manifest",
            "m.json",
            "--artifact",
            "a.swu",
            "--out",
            "www",
        ],
    );
    // The chunk index beside the artifact, the one the manifest pins.
    let published = p.join("www/hearth/HRH-1/1.0.0/a.swu");
    let index = fs::read(p.join("www/hearth/HRH-1/1.0.0/a.swu.index")).unwrap();
    let signed =
        update_manifest::SignedManifest::from_json(&fs::read(p.join("m.json")).unwrap()).unwrap();
    let pinned = &signed.manifest.artifact.index;
    assert_eq!(pinned.urls[0].path(), "/hearth/HRH-1/1.0.0/a.swu.index");
    assert_eq!(
        (index.len() as u64, update_manifest::Sha256::digest(&index)),
        (pinned.size, pinned.sha256)
    );
    assert_eq!(
        update_manifest::ChunkIndex::from_signed(&index, &signed.manifest.artifact)
            .unwrap()
            .artifact_len(),
        fs::metadata(&published).unwrap().len()
    );
    // Same bytes again: fine (idempotent).
    ok(
        p,
        &[
            "publish",
            "--manifest",
            "m.json",
            "--artifact",
            "a.swu",
            "--out",
            "www",
        ],
    );
    // Another artifact that claims the same version and path: refused.
    fs::write(p.join("rootfs2"), vec![8u8; 10_000]).unwrap();
    fs::create_dir(p.join("b")).unwrap();
    ok(
        p,
        &[
            "build",
            "--rootfs",
            "rootfs2",
            "--version",
            "1.0.0",
            "--model",
            "HRH-1",
            "--hw-revision",
            "A",
            "--signer",
            "signer",
            "--out",
            "b/a.swu",
        ],
    );
    ok(
        p,
        &[
            "manifest",
            "--artifact",
            "b/a.swu",
            "--key",
            "signer",
            "--keyring",
            "keyring.json",
            "--root",
            "root",
            "--base-url",
            "https://updates.example.com/hearth",
            "--security-version",
            "1",
            "--release-notes",
            "https://example.com/n",
            "--out",
            "m2.json",
        ],
    );
    let (ok_, err) = tool(
        p,
        &[
            "publish",
            "--manifest",
            "m2.json",
            "--artifact",
            "b/a.swu",
            "--out",
            "www",
        ],
    );
    assert!(!ok_ && err.contains("immutable"), "{err}");
    // And an artifact that is not the manifest's: refused.
    let (ok_, err) = tool(
        p,
        &[
            "publish",
            "--manifest",
            "m.json",
            "--artifact",
            "b/a.swu",
            "--out",
            "www2",
        ],
    );
    // (Size or digest differs, depending on the CMS signature length.)
    assert!(!ok_ && err.contains("refused: the artifact"), "{err}");
}

#[test]
fn unknown_commands_and_missing_options_exit_2_with_a_hint() {
    let d = tmp();
    let out = Command::new(env!("CARGO_BIN_EXE_hearth-release"))
        .arg("frobnicate")
        .current_dir(d.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_hearth-release"))
        .args(["keygen", "--out", "x"])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--role is required"));
}

#[test]
fn the_root_certificate_and_the_root_public_key_name_the_same_trust_anchor() {
    let read = |f: &str| fs::read_to_string(dev_keys().join(f)).unwrap();
    let from_cert = TrustedRoot::from_cert_pem(&read("hearth-dev-root.cert.pem")).unwrap();
    let from_pub = TrustedRoot::from_pem(&read("hearth-dev-root.pub.pem")).unwrap();
    assert_eq!(from_cert, from_pub);
    // A fresh keygen root too (its cert made by openssl from our key).
    let d = tmp();
    ok(d.path(), &["keygen", "--role", "root", "--out", "r"]);
    let cert =
        TrustedRoot::from_cert_pem(&fs::read_to_string(d.path().join("r.cert.pem")).unwrap())
            .unwrap();
    let public =
        TrustedRoot::from_pem(&fs::read_to_string(d.path().join("r.pub.pem")).unwrap()).unwrap();
    assert_eq!(cert, public);
    // Garbage is refused with a reason, not a panic.
    assert!(
        TrustedRoot::from_cert_pem(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        )
        .is_err()
    );
}

#[test]
fn certify_raises_the_keyring_version_revokes_and_renews() {
    let d = tmp();
    let p = d.path();
    ok(p, &["keygen", "--role", "root", "--out", "root"]);
    ok(p, &["keygen", "--role", "signing", "--out", "a"]);
    ok(p, &["keygen", "--role", "signing", "--out", "b"]);
    ok(
        p,
        &[
            "certify",
            "--root",
            "root",
            "--key",
            "a",
            "--keyring",
            "k.json",
        ],
    );
    ok(
        p,
        &[
            "certify",
            "--root",
            "root",
            "--key",
            "b",
            "--keyring",
            "k.json",
            "--days",
            "30",
        ],
    );
    let read = || SignedKeyring::from_json(&fs::read(p.join("k.json")).unwrap()).unwrap();
    let kr = read();
    assert_eq!(kr.keyring.version, 2);
    assert_eq!(kr.keyring.keys.len(), 2);
    // The key ring carries the dates of b's 30-day certificate.
    let b_id =
        update_manifest::public_key_from_pem(&fs::read_to_string(p.join("b.pub.pem")).unwrap())
            .unwrap()
            .key_id();
    let b = kr.keyring.key(&b_id).unwrap();
    assert_eq!(b.not_after.unix() - b.not_before.unix(), 30 * 86_400);

    let a_id =
        update_manifest::public_key_from_pem(&fs::read_to_string(p.join("a.pub.pem")).unwrap())
            .unwrap()
            .key_id()
            .to_string();
    ok(
        p,
        &[
            "certify",
            "--root",
            "root",
            "--keyring",
            "k.json",
            "--revoke",
            &a_id,
        ],
    );
    let kr = read();
    assert_eq!(kr.keyring.version, 3);
    assert_eq!(kr.keyring.keys.len(), 1);
    assert_ne!(kr.keyring.keys[0].key_id.to_string(), a_id);
    // Revoking what is not there is an error, not a silent no-op.
    let (ok_, err) = tool(
        p,
        &[
            "certify",
            "--root",
            "root",
            "--keyring",
            "k.json",
            "--revoke",
            &a_id,
        ],
    );
    assert!(!ok_ && err.contains("no such key"), "{err}");
    // Renewal: same keys, next version, fresh expiry.
    ok(
        p,
        &[
            "certify",
            "--root",
            "root",
            "--keyring",
            "k.json",
            "--keyring-days",
            "90",
        ],
    );
    let renewed = read();
    assert_eq!(renewed.keyring.version, 4);
    assert_eq!(renewed.keyring.keys, kr.keyring.keys);
    let root = TrustedRoot::from_pem(&fs::read_to_string(p.join("root.pub.pem")).unwrap()).unwrap();
    renewed.verify(&root, Timestamp::now(), 4).unwrap();
    // Another root cannot extend this key ring.
    ok(p, &["keygen", "--role", "root", "--out", "other"]);
    let (ok_, err) = tool(
        p,
        &[
            "certify",
            "--root",
            "other",
            "--keyring",
            "k.json",
            "--key",
            "a",
        ],
    );
    assert!(!ok_ && err.contains("trusts only root key"), "{err}");
}

/// The README's release commands with the SBOM step: the manifest names
/// and hashes it, `publish` lays it beside the artifact and refuses
/// another file, `verify` checks it, an independent SPDX validator
/// (`pyspdxtools`, from spdx-tools) accepts it, and `audit` finds an
/// advisory for a crate hearthd uses.
#[test]
fn a_release_carries_its_sbom_named_and_hashed_in_the_manifest() {
    let d = tmp();
    let p = d.path();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    keys_and_build(p, "1.4.2", "hearth-1.4.2.swu");
    // A Debian package list as the development image writes it.
    fs::write(
        p.join("packages"),
        "adduser 3.134 all\nlibstdc++6 12.2.0-14+deb12u1 amd64\nsystemd 252.39-1~deb12u1 amd64\n",
    )
    .unwrap();
    let lock = repo.join("Cargo.lock");
    ok(
        p,
        &[
            "sbom",
            "--product",
            "Hearth HRH-1",
            "--version",
            "1.4.2",
            "--cargo-lock",
            lock.to_str().unwrap(),
            "--crate",
            "hearthd",
            "--debian-packages",
            "packages",
            "--debian-release",
            "bookworm",
            "--out",
            "hearth-1.4.2.spdx.json",
        ],
    );
    ok(
        p,
        &[
            "manifest",
            "--artifact",
            "hearth-1.4.2.swu",
            "--key",
            "signer",
            "--keyring",
            "keyring.json",
            "--root",
            "root",
            "--base-url",
            "https://updates.example.com/hearth",
            "--security-version",
            "1",
            "--release-notes",
            "https://example.com/n",
            "--sbom",
            "hearth-1.4.2.spdx.json",
            "--out",
            "manifest.json",
        ],
    );
    let signed: serde_json::Value =
        serde_json::from_slice(&fs::read(p.join("manifest.json")).unwrap()).unwrap();
    let sbom_ref = &signed["manifest"]["sbom"];
    let sbom_bytes = fs::read(p.join("hearth-1.4.2.spdx.json")).unwrap();
    assert_eq!(
        sbom_ref["urls"][0],
        "https://updates.example.com/hearth/HRH-1/1.4.2/hearth-1.4.2.spdx.json"
    );
    assert_eq!(sbom_ref["size"], sbom_bytes.len() as u64);
    assert_eq!(
        sbom_ref["sha256"],
        update_manifest::Sha256::digest(&sbom_bytes).to_string()
    );

    // publish: beside the artifact; the SBOM is required; another file is refused.
    let publish = |sbom: Option<&str>, out: &str| {
        let mut args = vec![
            "publish",
            "--manifest",
            "manifest.json",
            "--artifact",
            "hearth-1.4.2.swu",
        ];
        if let Some(s) = sbom {
            args.extend(["--sbom", s]);
        }
        args.extend(["--out", out]);
        tool(p, &args)
    };
    let (ok_, err) = publish(None, "www");
    assert!(!ok_ && err.contains("give it with --sbom"), "{err}");
    fs::write(p.join("other.spdx.json"), b"{}").unwrap();
    let (ok_, err) = publish(Some("other.spdx.json"), "www");
    assert!(!ok_ && err.contains("is not the SBOM"), "{err}");
    let (ok_, err) = publish(Some("hearth-1.4.2.spdx.json"), "www");
    assert!(ok_, "{err}");
    let published = p.join("www/hearth/HRH-1/1.4.2");
    assert_eq!(
        fs::read(published.join("hearth-1.4.2.spdx.json")).unwrap(),
        sbom_bytes
    );
    assert!(published.join("hearth-1.4.2.swu").exists());

    // verify: the same file passes, another does not.
    let verify = |sbom: &str| {
        tool(
            p,
            &[
                "verify",
                "--root",
                "root",
                "--manifest",
                "manifest.json",
                "--model",
                "HRH-1",
                "--hw-revision",
                "A",
                "--installed-version",
                "1.4.1",
                "--sbom",
                sbom,
            ],
        )
    };
    let (ok_, err) = verify("hearth-1.4.2.spdx.json");
    assert!(
        ok_ && err.contains("the SBOM is the one the manifest names"),
        "{err}"
    );
    let (ok_, err) = verify("other.spdx.json");
    assert!(
        !ok_ && err.contains("is not the SBOM the manifest names"),
        "{err}"
    );

    // An independent validator accepts it (tests/run installs spdx-tools).
    let validator = Command::new("pyspdxtools")
        .args(["-i", "hearth-1.4.2.spdx.json"])
        .current_dir(p)
        .output()
        .expect("pyspdxtools (pip install spdx-tools; tests/run installs it) must be on PATH");
    assert!(
        validator.status.success(),
        "pyspdxtools refused the SBOM: {}",
        String::from_utf8_lossy(&validator.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&sbom_bytes).unwrap();
    let purls: Vec<&str> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["externalRefs"][0]["referenceLocator"].as_str())
        .collect();
    assert!(
        purls.contains(
            &"pkg:deb/debian/libstdc%2B%2B6@12.2.0-14%2Bdeb12u1?arch=amd64&distro=bookworm"
        )
    );
    let ring = purls
        .iter()
        .find(|p| p.starts_with("pkg:cargo/ring@"))
        .unwrap();

    // audit: a database with one advisory against the ring hearthd uses.
    let ring_version = ring.trim_start_matches("pkg:cargo/ring@");
    let db = p.join("advisory-db/crates/ring");
    fs::create_dir_all(&db).unwrap();
    fs::write(
        db.join("RUSTSEC-2099-0001.md"),
        format!(
            "```toml\n[advisory]\nid = \"RUSTSEC-2099-0001\"\npackage = \"ring\"\ndate = \"2099-01-01\"\n\
             url = \"https://example.com/advisory\"\n\n[versions]\npatched = [\">= 99.0.0\"]\n```\n\n\
             # A test advisory against ring {ring_version}\n\nNot real.\n"
        ),
    )
    .unwrap();
    let audit = |extra: &[&str]| {
        let mut args = vec![
            "audit",
            "--sbom",
            "hearth-1.4.2.spdx.json",
            "--db",
            "advisory-db",
        ];
        args.extend_from_slice(extra);
        tool(p, &args)
    };
    let (ok_, err) = audit(&[]);
    assert!(!ok_, "the advisory must fail the audit: {err}");
    assert!(
        err.contains(&format!(
            "RUSTSEC-2099-0001 ring {ring_version}: VULNERABILITY"
        )),
        "{err}"
    );
    let (ok_, err) = audit(&["--ignore", "RUSTSEC-2099-0001"]);
    assert!(ok_ && err.contains("vulnerability (ignored)"), "{err}");
}

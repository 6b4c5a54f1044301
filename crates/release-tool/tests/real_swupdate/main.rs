//! The release tool end to end with the real Debian `swupdate` 2022.12:
//! `keygen → certify → build → manifest → verify`, then an install into a
//! file-backed slot through `swupdate-rs`, and every tampering case refused
//! with the slots untouched.
//!
//! Needs `swupdate`, `openssl`, `zstd` and `unshare` (root, or unprivileged
//! user namespaces); see the `swupdate-testkit` crate.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use hearth_release::testing::{MODEL, REV, Tool, Vendor, image, tamper_sw_description};
use swupdate_rs::InstallRequest;
use swupdate_testkit::Daemon;
use update_manifest::{ChunkIndex, DeviceFacts, Rejection, SignedKeyring, Timestamp, TrustedRoot};

/// The vendor's side, made with the built tool: a directory with a root,
/// a certified signing key and a key ring.
fn vendor() -> Vendor {
    Vendor::new(
        Tool::Binary(env!("CARGO_BIN_EXE_hearth-release").into()),
        env!("CARGO_TARGET_TMPDIR"),
    )
}

fn facts() -> DeviceFacts {
    DeviceFacts {
        model: MODEL.parse().unwrap(),
        hardware_revision: REV.parse().unwrap(),
        installed_version: "1.0.0".parse().unwrap(),
        security_floor: 2,
        keyring_floor: 1,
        max_artifact_size: 64 << 20,
    }
}

/// What a device does: verify the manifest with the shared code, then
/// stream the artifact into SWUpdate through the chunk check. The index is
/// made from the artifact at hand, as `hearth-release verify` makes it, so
/// an altered artifact shows as an index that is not the signed one (the
/// device's path with the published index and a bad chunk is
/// `daemon/tests/update.rs`).
fn device_install(
    d: &Daemon,
    root: &TrustedRoot,
    manifest: &Path,
    swu: &Path,
    facts: &DeviceFacts,
    now: Timestamp,
) -> Result<u64, String> {
    let release = update_manifest::verify(&fs::read(manifest).unwrap(), root, facts, now)
        .map_err(|e| format!("manifest: {e}"))?;
    let chunk_len = release.manifest().artifact.index.chunk_len;
    let index = ChunkIndex::of(fs::File::open(swu).unwrap(), chunk_len).unwrap();
    let index = release
        .chunk_index(&index.to_bytes())
        .map_err(|e| format!("artifact: {e}"))?;
    let report = d
        .client
        .install(
            &InstallRequest::default(),
            index.verified(fs::File::open(swu).unwrap()),
        )
        .map_err(|e| format!("swupdate: {e}"))?;
    Ok(report.bytes_written)
}

/// Both the tool's `verify` and the device refuse; nothing is written.
#[allow(clippy::too_many_arguments)]
fn assert_refused(
    case: &str,
    v: &Vendor,
    d: &Daemon,
    manifest: &Path,
    swu: &Path,
    device: &DeviceFacts,
    now: Timestamp,
    expect: &str,
) {
    let (ok, stderr) = v.verify(manifest, swu, device, now);
    assert!(!ok, "{case}: hearth-release verify accepted it");
    assert!(
        stderr.contains(expect),
        "{case}: verify said {stderr:?}, expected {expect:?}"
    );
    let err = device_install(d, &v.trusted_root(), manifest, swu, device, now).unwrap_err();
    assert!(
        err.contains(expect),
        "{case}: device said {err:?}, expected {expect:?}"
    );
    println!("{case}: refused: {}", stderr.trim());
    d.assert_untouched(case);
}

#[test]
fn keygen_certify_build_verify_then_install_writes_the_image_into_slot_b() {
    let v = vendor();
    let d = v.swupdate();
    let img = image(1);
    let swu = v.build(&d, "good", "1.1.0", &["signer"], &img);
    let manifest = v.manifest(&swu, "signer", &[]);
    let (ok, stderr) = v.verify(&manifest, &swu, &facts(), Timestamp::now());
    assert!(ok, "{stderr}");
    assert!(stderr.contains("CMS signature verifies"), "{stderr}");

    let written = device_install(
        &d,
        &v.trusted_root(),
        &manifest,
        &swu,
        &facts(),
        Timestamp::now(),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(written, fs::metadata(&swu).unwrap().len());
    assert_eq!(
        fs::read(&d.slot_b).unwrap(),
        img,
        "slot B must hold the image"
    );
    assert!(
        fs::read(&d.slot_a)
            .unwrap()
            .iter()
            .all(|&b| b == swupdate_testkit::SLOT_FILL)
    );
    // The template's bootenv armed one trial boot of slot B.
    assert_eq!(d.grubenv_var("hearth_slot").as_deref(), Some("B"));
    assert_eq!(d.grubenv_var("ustate").as_deref(), Some("1"));
    assert_eq!(d.grubenv_var("bootcount").as_deref(), Some("0"));

    // publish lays it out for a static server; the served bytes verify.
    let www = v.publish(&manifest, &swu);
    let served = www.join("hearth/HRH-1/1.1.0/good.swu");
    assert_eq!(fs::read(&served).unwrap(), fs::read(&swu).unwrap());
    assert_eq!(
        fs::read(www.join("hearth/HRH-1/latest.json")).unwrap(),
        fs::read(&manifest).unwrap()
    );
}

#[test]
fn every_tampering_case_is_refused_and_the_slots_stay_untouched() {
    let v = vendor();
    let d = v.swupdate();
    let now = Timestamp::now();
    let img = image(2);
    let swu = v.build(&d, "good", "1.1.0", &["signer"], &img);
    let manifest = v.manifest(&swu, "signer", &[]);
    let good = fs::read(&swu).unwrap();

    // A flipped byte in the image.
    let flipped = v.path("flipped.swu");
    let mut bytes = good.clone();
    let at = bytes.len() - 1000;
    bytes[at] ^= 0x01;
    fs::write(&flipped, &bytes).unwrap();
    assert_refused(
        "flipped image byte",
        &v,
        &d,
        &manifest,
        &flipped,
        &facts(),
        now,
        "sha256",
    );

    // A tampered sw-description (cpio checksum fixed, signature not).
    let tampered = v.path("tampered.swu");
    fs::write(&tampered, tamper_sw_description(&good)).unwrap();
    assert_refused(
        "tampered sw-description",
        &v,
        &d,
        &manifest,
        &tampered,
        &facts(),
        now,
        "sha256",
    );
    // Streamed straight into SWUpdate, past the manifest: the CMS check
    // refuses it before anything is written.
    let e = d
        .client
        .install(
            &InstallRequest::default(),
            &fs::read(&tampered).unwrap()[..],
        )
        .unwrap_err();
    println!("tampered sw-description, straight to swupdate: {e}");
    d.assert_untouched("tampered sw-description straight to swupdate");

    // A wrong signer: a complete chain under another root.
    let rogue_vendor = vendor();
    let rogue_swu = rogue_vendor.build(&d, "rogue", "1.1.0", &["signer"], &image(3));
    let rogue_manifest = rogue_vendor.manifest(&rogue_swu, "signer", &[]);
    assert_refused(
        "wrong signer",
        &v,
        &d,
        &rogue_manifest,
        &rogue_swu,
        &facts(),
        now,
        "trusts only root key",
    );
    let e = d
        .client
        .install(
            &InstallRequest::default(),
            &fs::read(&rogue_swu).unwrap()[..],
        )
        .unwrap_err();
    println!("wrong signer, straight to swupdate: {e}");
    d.assert_untouched("wrong signer straight to swupdate");

    // An expired manifest: signed for one day, checked two days later.
    let short = v.manifest(&swu, "signer", &["--expires-days", "1"]);
    assert_refused(
        "expired manifest",
        &v,
        &d,
        &short,
        &swu,
        &facts(),
        now.plus_seconds(2 * 86_400),
        "expired",
    );

    // An older version.
    let old_swu = v.build(&d, "old", "0.9.0", &["signer"], &image(4));
    let old_manifest = v.manifest(&old_swu, "signer", &[]);
    assert_refused(
        "older version",
        &v,
        &d,
        &old_manifest,
        &old_swu,
        &facts(),
        now,
        "not newer",
    );

    // A lower security version.
    let low = v.manifest(&swu, "signer", &["--security-version", "1"]);
    assert_refused(
        "lower security version",
        &v,
        &d,
        &low,
        &swu,
        &facts(),
        now,
        "below this device's floor",
    );

    // The wrong model.
    let mut other = facts();
    other.model = "HRH-2".parse().unwrap();
    assert_refused(
        "wrong model",
        &v,
        &d,
        &manifest,
        &swu,
        &other,
        now,
        "this device is model HRH-2",
    );

    // An oversized artifact.
    let mut small = facts();
    small.max_artifact_size = 100_000;
    assert_refused(
        "oversized artifact",
        &v,
        &d,
        &manifest,
        &swu,
        &small,
        now,
        "more than the 100000",
    );

    // A revoked key: rotate it out, then try the old key both ways.
    v.rotate("signer", "signer2", None);
    let mut seen_v2 = facts();
    seen_v2.keyring_floor = 2;
    // (a) a release signed before the rotation, carrying key ring v1.
    assert_refused(
        "revoked key, old key ring",
        &v,
        &d,
        &manifest,
        &swu,
        &seen_v2,
        now,
        "older than version 2",
    );
    // (b) the thief attaches the new key ring: the key is not in it.
    let forged = v.path("forged.manifest.json");
    let json = v.forge_with_stolen_key(&fs::read(&manifest).unwrap(), "signer", now);
    fs::write(&forged, json).unwrap();
    assert_refused(
        "revoked key, new key ring",
        &v,
        &d,
        &forged,
        &swu,
        &seen_v2,
        now,
        "does not certify",
    );
    // The tool itself will not sign with it any more.
    let (ok, stderr) = v.try_manifest(&swu, "signer", &[], &v.path("x.json"));
    assert!(!ok && stderr.contains("does not certify key"), "{stderr}");
    assert!(matches!(
        update_manifest::verify(
            &fs::read(&forged).unwrap(),
            &v.trusted_root(),
            &seen_v2,
            now
        ),
        Err(Rejection::UnknownKey { .. })
    ));
}

#[test]
fn after_rotation_a_release_signed_with_the_new_key_installs() {
    let v = vendor();
    let d = v.swupdate();
    v.rotate("signer", "signer2", Some("7"));
    let kr = SignedKeyring::from_json(&fs::read(v.path("keyring.json")).unwrap()).unwrap();
    assert_eq!(kr.keyring.version, 2);
    assert_eq!(
        kr.keyring.keys.len(),
        2,
        "the old key stays for the overlap"
    );

    // During the overlap, the .swu carries both CMS signatures.
    let img = image(5);
    let swu = v.build(&d, "new", "1.2.0", &["signer2", "signer"], &img);
    let manifest = v.manifest(&swu, "signer2", &[]);
    let mut device = facts();
    device.keyring_floor = 2;
    let (ok, stderr) = v.verify(&manifest, &swu, &device, Timestamp::now());
    assert!(ok, "{stderr}");
    let release = update_manifest::verify(
        &fs::read(&manifest).unwrap(),
        &v.trusted_root(),
        &device,
        Timestamp::now(),
    )
    .unwrap();
    assert_eq!(release.keyring_version(), 2);
    device_install(
        &d,
        &v.trusted_root(),
        &manifest,
        &swu,
        &device,
        Timestamp::now(),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(fs::read(&d.slot_b).unwrap(), img);
}

#[test]
fn a_corrupted_image_streamed_past_the_manifest_check_is_refused_by_swupdate_but_reaches_the_inactive_slot()
 {
    // Documents why the device must check the artifact before streaming
    // (or accept a clobbered inactive slot): with installed-directly,
    // SWUpdate writes while it hashes. The boot environment is not armed.
    let v = vendor();
    let d = v.swupdate();
    let swu = v.build(&d, "good", "1.1.0", &["signer"], &image(6));
    let mut bytes = fs::read(&swu).unwrap();
    let at = bytes.len() - 1000;
    bytes[at] ^= 0x01;
    let e = d
        .client
        .install(&InstallRequest::default(), &bytes[..])
        .unwrap_err();
    println!("flipped image byte, straight to swupdate: {e}");
    d.assert_not_armed("flipped image byte");
    assert!(
        !d.slot_b_untouched(),
        "SWUpdate 2022.12 no longer writes before the hash check: update docs/update-security.md"
    );
}

#[test]
fn a_swu_signed_by_signers_under_two_roots_passes_swupdate_trusting_either() {
    // Multi-signer CMS: the Debian build skips unknown signers
    // (CONFIG_CMS_SKIP_UNKNOWN_SIGNERS), so a .swu can serve devices that
    // trust the old root and devices that trust the new one.
    let (a, b) = (vendor(), vendor());
    let rootfs = a.path("rootfs");
    fs::write(&rootfs, image(7)).unwrap();
    let b_signer = b.path("signer");
    a.run(&[
        "build",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "--version",
        "1.0.0",
        "--model",
        MODEL,
        "--hw-revision",
        REV,
        "--signer",
        "signer",
        "--signer",
        b_signer.to_str().unwrap(),
        "--out",
        "two.swu",
    ]);
    let check = |trust: &Path| {
        Command::new("swupdate")
            .args(["-c", "-i"])
            .arg(a.path("two.swu"))
            .arg("-k")
            .arg(trust)
            .args(["-e", "stable,copy2", "-H", &format!("{MODEL}:{REV}")])
            .output()
            .unwrap()
    };
    for trust in [a.root_cert(), b.root_cert()] {
        let out = check(&trust);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // A third root trusts neither signer.
    let c = vendor();
    assert!(!check(&c.root_cert()).status.success());
}

/// A delta release, end to end: `build --delta`, `manifest --delta` and
/// `publish`, then what a device does: the delta index checked against the
/// verified manifest, the running slot A scanned, and the delta `.swu`
/// rebuilt from slot A's blocks and the pack's segments streamed into the
/// real SWUpdate, which checks its signature and writes slot B.
#[test]
fn a_delta_release_rebuilt_from_the_running_slot_and_the_pack_installs_into_slot_b() {
    use std::os::unix::fs::FileExt;
    use update_manifest::{DeltaIndex, DeltaReader};
    const BLOCK: usize = 4096;

    let v = vendor();
    let d = v.swupdate();
    // Slot A runs the previous release; the new one has a new file in
    // front (three blocks) and one changed block further on.
    let old = image(1);
    fs::OpenOptions::new()
        .write(true)
        .open(&d.slot_a)
        .unwrap()
        .write_all_at(&old, 0)
        .unwrap();
    let mut new = image(7)[..3 * BLOCK].to_vec();
    new.extend_from_slice(&old[..old.len() - 3 * BLOCK]);
    new[150 * BLOCK + 10] ^= 0xff;
    let swu = v.build_with(&d, "delta", "1.1.0", &["signer"], &new, &["--delta"]);
    let manifest = v.manifest(&swu, "signer", &["--delta"]);
    let www = v.publish(&manifest, &swu);
    let served = www.join("hearth/HRH-1/1.1.0");

    let release = update_manifest::verify(
        &fs::read(&manifest).unwrap(),
        &v.trusted_root(),
        &facts(),
        Timestamp::now(),
    )
    .unwrap();
    let delta = release
        .manifest()
        .delta
        .as_ref()
        .expect("the manifest names a delta");
    let index =
        DeltaIndex::from_signed(&fs::read(served.join("delta.swu.delta")).unwrap(), delta).unwrap();
    let located = index
        .locate(&mut fs::File::open(&d.slot_a).unwrap())
        .unwrap();
    let pack = fs::read(served.join("delta.swu.pack")).unwrap();
    let pack_len = pack.len() as u64;
    let serve = move |offset: u64, len: u64| -> std::io::Result<Box<dyn Read + Send>> {
        let part = pack[offset as usize..(offset + len) as usize].to_vec();
        Ok(Box::new(std::io::Cursor::new(part)))
    };
    let mut reader = DeltaReader::new(&index, located, fs::File::open(&d.slot_a).unwrap(), serve);
    let report = d
        .client
        .install(&InstallRequest::default(), &mut reader)
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    let counts = reader.counts();
    println!(
        "delta: {counts:?} of a {pack_len}-byte pack; SWUpdate read {} bytes",
        report.bytes_written
    );
    assert_eq!(report.bytes_written, index.swu_len());
    assert_eq!(
        &fs::read(&d.slot_b).unwrap()[..new.len()],
        &new[..],
        "slot B must hold the new image"
    );
    assert_eq!(d.grubenv_var("hearth_slot").as_deref(), Some("B"));
    // Two segments fetched (the new blocks; the changed one), the rest reused.
    assert_eq!(counts.fetched_segments, 2, "{counts:?}");
    assert!(counts.fetched_bytes * 10 < pack_len, "{counts:?}");
}

//! hearthd's device-side install (`hearthd::update`) end to end: releases
//! made with `hearth_release` (the vendor tool, used as a library) in a
//! temporary directory, installed through `update::install` into the
//! file-backed slot B of the REAL Debian `swupdate` 2022.12 (run by
//! `swupdate-testkit` in a private mount namespace).
//!
//! Every refusal is checked for what it must leave behind: the boot
//! environment not armed and SWUpdate's `ustate` not "installed"; for the
//! manifest-level refusals also slot B byte for byte untouched and not one
//! byte read from the artifact (a reader that panics).
//!
//! Needs `swupdate`, `openssl`, `zstd` and `unshare` (root, or unprivileged
//! user namespaces).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hearth_release::testing::{IMAGE_SIZE, MODEL, REV, Tool, Vendor, image, tamper_sw_description};
use hearthd::persist::Store;
use hearthd::update::{self, Installed, Selection, Slot, UpdateError, UpdateRecord, UpdateRecords};
use swupdate_testkit::Daemon;
use update_manifest::{DeviceFacts, Rejection, SignedKeyring, Timestamp};

/// The vendor: keys, key ring and releases made with hearth_release, used
/// as a library (only its own tests have the binary).
fn vendor() -> Vendor {
    Vendor::new(Tool::Library, env!("CARGO_TARGET_TMPDIR"))
}

/// `v.manifest(...)` as hearthd receives it: the signed JSON.
fn manifest_json(v: &Vendor, swu: &Path, key: &str, extra: &[&str]) -> Vec<u8> {
    fs::read(v.manifest(swu, key, extra)).unwrap()
}

/// A device as hearthd sees itself: installed 1.0.0, floors 2 and 1.
fn facts() -> DeviceFacts {
    UpdateRecord {
        installed_version: "1.0.0".parse().unwrap(),
        security_floor: 2,
        keyring_floor: 1,
    }
    .device_facts(MODEL.parse().unwrap(), REV.parse().unwrap(), 64 << 20)
}

/// The running slot as hearthd finds it: a kernel command line naming A
/// (injected through a file instead of /proc/cmdline).
fn selection(d: &Daemon) -> Selection {
    let cmdline = d.root().join("cmdline");
    fs::write(
        &cmdline,
        "root=PARTLABEL=hearth-a ro hearth.slot=A panic=10\n",
    )
    .unwrap();
    Selection::inactive(Slot::running(&cmdline).unwrap())
}

fn install(
    d: &Daemon,
    v: &Vendor,
    manifest: &[u8],
    artifact: impl Read,
    facts: &DeviceFacts,
    now: Timestamp,
) -> Result<Installed, UpdateError> {
    update::install(
        manifest,
        artifact,
        &v.trusted_root(),
        facts,
        now,
        &d.client,
        &selection(d),
    )
}

/// An artifact that must never be read (manifest-level refusals).
struct MustNotRead;

impl Read for MustNotRead {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        panic!("hearthd read the artifact although the manifest was refused");
    }
}

/// A file reader that counts what it hands out.
struct Counted<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn counted(bytes: Vec<u8>) -> (Counted<std::io::Cursor<Vec<u8>>>, Arc<AtomicU64>) {
    let n = Arc::new(AtomicU64::new(0));
    (
        Counted {
            inner: std::io::Cursor::new(bytes),
            n: n.clone(),
        },
        n,
    )
}

/// The boot environment switches nothing and `ustate` does not say
/// "installed" (absent, or reset to 0 by hearthd).
fn assert_not_armed(d: &Daemon, case: &str) {
    d.assert_not_armed(case);
    let ustate = d.grubenv_var("ustate");
    assert!(
        matches!(ustate.as_deref(), None | Some("0")),
        "{case}: ustate left at {ustate:?}"
    );
}

/// A manifest-level refusal: the expected rejection, no artifact byte
/// read, nothing written, nothing armed.
fn assert_refused_before_download(
    case: &str,
    d: &Daemon,
    v: &Vendor,
    manifest: &[u8],
    facts: &DeviceFacts,
    now: Timestamp,
    expect: impl Fn(&Rejection) -> bool,
) {
    let err = install(d, v, manifest, MustNotRead, facts, now).unwrap_err();
    println!("{case}: {err}");
    match &err {
        UpdateError::Rejected(r) => assert!(expect(r), "{case}: wrong reason: {r:?}"),
        other => panic!("{case}: expected a manifest rejection, got {other:?}"),
    }
    assert!(err.nothing_written());
    assert!(
        err.to_string()
            .starts_with("update refused before download: ")
    );
    d.assert_untouched(case);
    assert_not_armed(d, case);
}

#[test]
fn keygen_certify_build_manifest_then_hearthd_installs_into_slot_b_and_confirms() {
    let v = vendor();
    let d = v.swupdate();
    let img = image(1);
    let swu = v.build(&d, "good", "1.1.0", &["signer"], &img);
    let manifest = manifest_json(&v, &swu, "signer", &["--security-version", "3"]);
    let (reader, read) = counted(fs::read(&swu).unwrap());

    let done = install(&d, &v, &manifest, reader, &facts(), Timestamp::now())
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));

    let swu_len = fs::metadata(&swu).unwrap().len();
    assert_eq!(read.load(Ordering::Relaxed), swu_len);
    assert_eq!(done.bytes_streamed, swu_len);
    assert_eq!(done.version.to_string(), "1.1.0");
    assert_eq!((done.security_version, done.keyring_version), (3, 1));
    assert_eq!(done.target, Slot::B);
    assert_eq!(d.slot(&d.slot_b), img, "slot B must hold the image");
    assert!(
        d.slot_is_untouched(&d.slot_a),
        "the running slot A was written"
    );
    // The template's bootenv armed one trial boot of slot B.
    assert_eq!(d.grubenv_var("hearth_slot").as_deref(), Some("B"));
    assert_eq!(d.grubenv_var("ustate").as_deref(), Some("1"));
    assert_eq!(d.grubenv_var("bootcount").as_deref(), Some("0"));

    // Nothing is persisted at install time; after the new slot is
    // confirmed the record moves up, and the same release is then refused.
    let state = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut store = Store::open(state.path()).unwrap();
    store.commit().unwrap();
    let records = UpdateRecords::open(Arc::new(store), "1.0.0".parse().unwrap()).unwrap();
    let before = records.get();
    assert_eq!(before, UpdateRecord::factory("1.0.0".parse().unwrap()));
    let after = records.confirm(&done).unwrap();
    assert_eq!(after.installed_version.to_string(), "1.1.0");
    assert_eq!((after.security_floor, after.keyring_floor), (3, 1));
    let facts_now = after.device_facts(MODEL.parse().unwrap(), REV.parse().unwrap(), 64 << 20);
    let again = install(&d, &v, &manifest, MustNotRead, &facts_now, Timestamp::now()).unwrap_err();
    assert!(
        matches!(again, UpdateError::Rejected(Rejection::NotNewer { .. })),
        "{again:?}"
    );
}

#[test]
fn every_manifest_level_refusal_reads_nothing_writes_nothing_and_arms_nothing() {
    let v = vendor();
    let d = v.swupdate();
    let now = Timestamp::now();
    let swu = v.build(&d, "good", "1.1.0", &["signer"], &image(2));
    let manifest = manifest_json(&v, &swu, "signer", &[]);

    // A wrong signer: a complete chain under another root.
    let rogue = vendor();
    let rogue_swu = rogue.build(&d, "rogue", "1.1.0", &["signer"], &image(3));
    let rogue_manifest = manifest_json(&rogue, &rogue_swu, "signer", &[]);
    assert_refused_before_download(
        "wrong signer",
        &d,
        &v,
        &rogue_manifest,
        &facts(),
        now,
        |r| matches!(r, Rejection::WrongRoot { .. }),
    );

    // An expired manifest: signed for one day, checked two days later.
    let short = manifest_json(&v, &swu, "signer", &["--expires-days", "1"]);
    assert_refused_before_download(
        "expired manifest",
        &d,
        &v,
        &short,
        &facts(),
        now.plus_seconds(2 * 86_400),
        |r| matches!(r, Rejection::Expired { .. }),
    );

    // An older version.
    let old_swu = v.build(&d, "old", "0.9.0", &["signer"], &image(4));
    let old = manifest_json(&v, &old_swu, "signer", &[]);
    assert_refused_before_download("older version", &d, &v, &old, &facts(), now, |r| {
        matches!(r, Rejection::NotNewer { .. })
    });

    // A lower security version (the device's floor is 2).
    let low = manifest_json(&v, &swu, "signer", &["--security-version", "1"]);
    assert_refused_before_download("lower security version", &d, &v, &low, &facts(), now, |r| {
        matches!(
            r,
            Rejection::SecurityRollback {
                offered: 1,
                floor: 2
            }
        )
    });

    // The wrong model.
    let mut other = facts();
    other.model = "HRH-2".parse().unwrap();
    assert_refused_before_download("wrong model", &d, &v, &manifest, &other, now, |r| {
        matches!(r, Rejection::WrongModel { .. })
    });

    // An oversized artifact.
    let mut small = facts();
    small.max_artifact_size = 100_000;
    assert_refused_before_download("oversized artifact", &d, &v, &manifest, &small, now, |r| {
        matches!(r, Rejection::ArtifactTooLarge { max: 100_000, .. })
    });

    // A revoked key: rotated out with no overlap.
    v.rotate("signer", "signer2", None);
    let mut seen_v2 = facts();
    seen_v2.keyring_floor = 2;
    // (a) a release signed before the rotation, carrying key ring v1.
    assert_refused_before_download(
        "revoked key, old key ring",
        &d,
        &v,
        &manifest,
        &seen_v2,
        now,
        |r| {
            matches!(
                r,
                Rejection::KeyringRollback {
                    version: 1,
                    floor: 2
                }
            )
        },
    );
    // (b) a thief signs with the stolen key and attaches key ring v2.
    let forged = v.forge_with_stolen_key(&manifest, "signer", now);
    for (case, device) in [
        ("revoked key, new key ring", &seen_v2),
        ("revoked key, device at v1", &facts()),
    ] {
        assert_refused_before_download(case, &d, &v, &forged, device, now, |r| {
            matches!(r, Rejection::UnknownKey { .. })
        });
    }
}

#[test]
fn a_tampered_sw_description_is_refused_by_swupdate_before_anything_is_written() {
    let v = vendor();
    let d = v.swupdate();
    let swu = v.build(&d, "good", "1.1.0", &["signer"], &image(5));
    let manifest = manifest_json(&v, &swu, "signer", &[]);
    let tampered = tamper_sw_description(&fs::read(&swu).unwrap());
    let (reader, _) = counted(tampered);
    let err = install(&d, &v, &manifest, reader, &facts(), Timestamp::now()).unwrap_err();
    println!("tampered sw-description: {err}");
    assert!(
        matches!(
            err,
            UpdateError::Swupdate { .. } | UpdateError::Artifact { .. }
        ),
        "{err:?}"
    );
    d.assert_untouched("tampered sw-description");
    assert_not_armed(&d, "tampered sw-description");
    assert_eq!(
        d.grubenv_var("ustate").as_deref(),
        Some("0"),
        "ustate reset"
    );
}

#[test]
fn a_genuine_release_served_with_another_releases_manifest_is_refused_before_writing() {
    // Mix-and-match: a correctly signed 1.2.0 .swu behind the 1.1.0
    // manifest. hearthd pins SWUpdate to the manifest's version, so
    // SWUpdate refuses at sw-description, before the image.
    let v = vendor();
    let d = v.swupdate();
    let swu = v.build(&d, "good", "1.1.0", &["signer"], &image(6));
    let manifest = manifest_json(&v, &swu, "signer", &[]);
    let other = v.build(&d, "other", "1.2.0", &["signer"], &image(7));
    let (reader, _) = counted(fs::read(&other).unwrap());
    let err = install(&d, &v, &manifest, reader, &facts(), Timestamp::now()).unwrap_err();
    println!("1.2.0 artifact behind the 1.1.0 manifest: {err}");
    assert!(matches!(err, UpdateError::Swupdate { .. }), "{err:?}");
    d.assert_untouched("another release's artifact");
    assert_not_armed(&d, "another release's artifact");
}

#[test]
fn a_flipped_byte_in_the_image_is_refused_and_nothing_is_armed() {
    let v = vendor();
    let d = v.swupdate();
    let swu = v.build(&d, "good", "1.1.0", &["signer"], &image(8));
    let manifest = manifest_json(&v, &swu, "signer", &[]);
    let mut bytes = fs::read(&swu).unwrap();
    let at = bytes.len() - 1000; // inside the compressed image
    bytes[at] ^= 0x01;
    let (reader, _) = counted(bytes.clone());
    let err = install(&d, &v, &manifest, reader, &facts(), Timestamp::now()).unwrap_err();
    println!("flipped image byte: {err}");
    assert!(
        matches!(
            err,
            UpdateError::Swupdate { .. } | UpdateError::Artifact { .. }
        ),
        "{err:?}"
    );
    assert!(!err.nothing_written());
    // Known limitation (installed-directly): the inactive slot B may hold
    // part of the image, but the boot environment is not armed and
    // SWUpdate's ustate is reset, so the device keeps booting slot A.
    assert_not_armed(&d, "flipped image byte");
    assert_eq!(
        d.grubenv_var("ustate").as_deref(),
        Some("0"),
        "ustate reset"
    );
    assert!(
        d.slot_is_untouched(&d.slot_a),
        "the running slot A was written"
    );
    assert_ne!(d.slot(&d.slot_b), image(8), "slot B holds the full image");
    let written = d
        .slot(&d.slot_b)
        .iter()
        .filter(|&&b| b != swupdate_testkit::SLOT_FILL)
        .count();
    println!("flipped image byte: {written} of {IMAGE_SIZE} bytes of inactive slot B overwritten");

    // What SWUpdate leaves without hearthd's reset: the same bytes straight
    // into SWUpdate (no manifest check, no reset).
    let e = d
        .client
        .install(&swupdate_rs::InstallRequest::default(), &bytes[..])
        .unwrap_err();
    let ustate = d.grubenv_var("ustate");
    println!("straight to swupdate: {e}; ustate then {ustate:?}");
    assert_ne!(
        ustate.as_deref(),
        Some("0"),
        "SWUpdate now resets ustate itself"
    );
    d.assert_not_armed("flipped image byte straight to swupdate");
}

#[test]
fn after_rotation_the_new_key_installs_and_the_revoked_key_does_not() {
    let v = vendor();
    let d = v.swupdate();
    let old_swu = v.build(&d, "old-key", "1.1.0", &["signer"], &image(9));
    let old_key_manifest = manifest_json(&v, &old_swu, "signer", &[]);

    // Revoke `signer`: key ring v2 lists only `signer2`.
    v.rotate("signer", "signer2", None);
    let kr = SignedKeyring::from_json(&fs::read(v.path("keyring.json")).unwrap()).unwrap();
    assert_eq!((kr.keyring.version, kr.keyring.keys.len()), (2, 1));
    // After the rotation: the new key is valid from the moment it was certified.
    let now = Timestamp::now();

    let img = image(10);
    let swu = v.build(&d, "new-key", "1.2.0", &["signer2"], &img);
    let manifest = manifest_json(&v, &swu, "signer2", &[]);
    let (reader, _) = counted(fs::read(&swu).unwrap());
    let done = install(&d, &v, &manifest, reader, &facts(), now)
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(done.keyring_version, 2);
    assert_eq!(d.slot(&d.slot_b), img);
    assert_eq!(d.grubenv_var("hearth_slot").as_deref(), Some("B"));

    // Once the device confirmed that release its key-ring floor is 2, and
    // the old key's release (carrying key ring v1) is refused unread.
    let mut confirmed = facts();
    confirmed.keyring_floor = done.keyring_version;
    let err = install(&d, &v, &old_key_manifest, MustNotRead, &confirmed, now).unwrap_err();
    println!("revoked key after rotation: {err}");
    assert!(
        matches!(
            err,
            UpdateError::Rejected(Rejection::KeyringRollback { .. })
        ),
        "{err:?}"
    );
}

#[test]
fn swupdate_refusing_the_selection_is_reported_and_nothing_is_read() {
    // A daemon that accepts no IPC selection (-q missing): hearthd's request
    // for stable,copy2 is NACKed before any artifact byte is read.
    let v = vendor();
    let d = v
        .swupdate_builder()
        .selection_args(["-e", "stable,copy2"])
        .start();
    let swu = v.build(&d, "good", "1.1.0", &["signer"], &image(11));
    let manifest = manifest_json(&v, &swu, "signer", &[]);
    let err = install(&d, &v, &manifest, MustNotRead, &facts(), Timestamp::now()).unwrap_err();
    println!("selection not accepted: {err}");
    assert!(matches!(err, UpdateError::Start { .. }), "{err:?}");
    assert!(err.nothing_written());
    assert!(err.to_string().contains("-q stable,copy2"), "{err}");
    d.assert_untouched("selection not accepted");
}

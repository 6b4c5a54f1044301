//! hearthd's device-side install (`hearthd::update`) end to end: releases
//! made with `hearth_release` (the vendor tool, used as a library) in a
//! temporary directory, installed through `update::install` into the
//! file-backed slot B of the REAL Debian `swupdate` 2022.12 (run by
//! `swupdate-testkit` in a private mount namespace).
//!
//! Every refusal is checked for what it must leave behind: the boot
//! environment not armed and SWUpdate's `ustate` not "installed"; slot B
//! byte for byte untouched when the fault is in the manifest, the chunk
//! index or the artifact's first chunk; for the manifest-level and index
//! refusals also not one byte read from the artifact (a reader that
//! panics). A fault in a later chunk leaves slot B holding a prefix of the
//! signed image and nothing else.
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
use hearthd::update::{
    self, Installed, Part, Selection, Slot, UpdateError, UpdateRecord, UpdateRecords,
};
use swupdate_testkit::Daemon;
use update_manifest::{
    ArtifactError, ChunkIndex, DEFAULT_CHUNK_LEN, DeviceFacts, Rejection, SignedKeyring, Timestamp,
};

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
        time_floor: 0,
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

/// The chunk index `hearth-release publish` serves beside `swu`.
fn index_of(swu: &Path) -> Vec<u8> {
    ChunkIndex::of(fs::File::open(swu).unwrap(), DEFAULT_CHUNK_LEN)
        .unwrap()
        .to_bytes()
}

/// What an update server serves: `index`, then `artifact` (once).
fn serving(
    index: Vec<u8>,
    artifact: impl Read + Send + 'static,
) -> impl FnMut(Part) -> std::io::Result<Box<dyn Read + Send>> {
    let mut artifact = Some(Box::new(artifact) as Box<dyn Read + Send>);
    move |part| match part {
        Part::Index => Ok(Box::new(std::io::Cursor::new(index.clone())) as Box<dyn Read + Send>),
        Part::Artifact => Ok(artifact.take().expect("one artifact download")),
        Part::DeltaIndex | Part::Pack { .. } => panic!("a release without a delta"),
    }
}

/// Serves `index` (read once) and an artifact that must never be read.
fn serving_once(
    index: impl Read + Send + 'static,
) -> impl FnMut(Part) -> std::io::Result<Box<dyn Read + Send>> {
    let mut index = Some(Box::new(index) as Box<dyn Read + Send>);
    move |part| match part {
        Part::Index => Ok(index.take().expect("one index download")),
        Part::Artifact => Ok(Box::new(MustNotRead) as Box<dyn Read + Send>),
        Part::DeltaIndex | Part::Pack { .. } => panic!("a release without a delta"),
    }
}

/// Installs `artifact` with the genuine index of `swu`.
fn install(
    d: &Daemon,
    v: &Vendor,
    manifest: &[u8],
    swu: &Path,
    artifact: impl Read + Send + 'static,
    facts: &DeviceFacts,
    now: Timestamp,
) -> Result<Installed, UpdateError> {
    install_reads(d, v, manifest, serving(index_of(swu), artifact), facts, now)
}

/// Installs with `open` serving each of hearthd's downloads.
fn install_reads<R: Read + Send + 'static>(
    d: &Daemon,
    v: &Vendor,
    manifest: &[u8],
    open: impl FnMut(Part) -> std::io::Result<R>,
    facts: &DeviceFacts,
    now: Timestamp,
) -> Result<Installed, UpdateError> {
    let device = update::Device {
        root: &v.trusted_root(),
        facts,
        running_slot: None,
    };
    update::install(manifest, open, &device, now, &d.client, &selection(d))
}

/// An artifact that must never be read (manifest-level refusals).
#[derive(Clone)]
struct MustNotRead;

impl Read for MustNotRead {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        panic!("hearthd read the artifact although the manifest was refused");
    }
}

/// A reader that counts what it hands out.
#[derive(Clone)]
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
    let err = install_reads(d, v, manifest, |_| Ok(MustNotRead), facts, now).unwrap_err();
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

    let done = install(&d, &v, &manifest, &swu, reader, &facts(), Timestamp::now())
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));

    let swu_len = fs::metadata(&swu).unwrap().len();
    assert_eq!(read.load(Ordering::Relaxed), swu_len, "downloaded once");
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
    let again = install_reads(
        &d,
        &v,
        &manifest,
        |_| Ok(MustNotRead),
        &facts_now,
        Timestamp::now(),
    )
    .unwrap_err();
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
fn a_tampered_sw_description_is_refused_before_swupdate_hears_of_it() {
    let v = vendor();
    let d = v.swupdate();
    let swu = v.build(&d, "good", "1.1.0", &["signer"], &image(5));
    let manifest = manifest_json(&v, &swu, "signer", &[]);
    let (reader, _) = counted(tamper_sw_description(&fs::read(&swu).unwrap()));
    let err = install(&d, &v, &manifest, &swu, reader, &facts(), Timestamp::now()).unwrap_err();
    println!("tampered sw-description: {err}");
    assert!(matches!(err, UpdateError::Artifact { .. }), "{err:?}");
    assert!(err.nothing_written());
    d.assert_untouched("tampered sw-description");
    assert_not_armed(&d, "tampered sw-description");
}

#[test]
fn a_genuine_release_served_with_another_releases_manifest_is_refused_before_writing() {
    // Mix-and-match: a correctly signed 1.2.0 .swu behind the 1.1.0
    // manifest. Its first chunk is not the one the index signs, so hearthd
    // refuses it before SWUpdate hears of it; SWUpdate, pinned to the
    // manifest's version, would too.
    let v = vendor();
    let d = v.swupdate();
    let swu = v.build(&d, "good", "1.1.0", &["signer"], &image(6));
    let manifest = manifest_json(&v, &swu, "signer", &[]);
    let other = v.build(&d, "other", "1.2.0", &["signer"], &image(7));
    let (reader, _) = counted(fs::read(&other).unwrap());
    let err = install(&d, &v, &manifest, &swu, reader, &facts(), Timestamp::now()).unwrap_err();
    println!("1.2.0 artifact behind the 1.1.0 manifest: {err}");
    assert!(matches!(err, UpdateError::Artifact { .. }), "{err:?}");
    assert!(err.nothing_written());
    d.assert_untouched("another release's artifact");
    assert_not_armed(&d, "another release's artifact");
}

/// Bytes of inactive slot B that no longer hold the testkit's fill.
fn overwritten(d: &Daemon) -> usize {
    d.slot(&d.slot_b)
        .iter()
        .filter(|&&b| b != swupdate_testkit::SLOT_FILL)
        .count()
}

/// Slot B holds only bytes of `img` (or the testkit's fill), and slot A
/// was not written.
fn assert_only_the_signed_image_in_slot_b(d: &Daemon, img: &[u8], case: &str) {
    assert!(
        d.slot_is_untouched(&d.slot_a),
        "{case}: the running slot A was written"
    );
    let foreign = d
        .slot(&d.slot_b)
        .iter()
        .zip(img)
        .filter(|&(&b, &i)| b != i && b != swupdate_testkit::SLOT_FILL)
        .count();
    assert_eq!(
        foreign, 0,
        "{case}: slot B holds bytes that are not the signed image"
    );
    println!(
        "{case}: {} of {IMAGE_SIZE} bytes of slot B hold the signed image",
        overwritten(d)
    );
}

#[test]
fn a_flipped_byte_is_refused_at_its_chunk_and_never_reaches_swupdate() {
    let v = vendor();
    let img = image(8);
    let d = v.swupdate();
    let swu = v.build(&d, "good", "1.1.0", &["signer"], &img);
    let manifest = manifest_json(&v, &swu, "signer", &[]);
    let good = fs::read(&swu).unwrap();
    let chunk = DEFAULT_CHUNK_LEN as usize;
    assert!(
        good.len() > 2 * chunk,
        "the test needs an artifact of several chunks"
    );

    // In the first chunk (sw-description and the start of the image):
    // refused before SWUpdate hears of the install.
    let mut first = good.clone();
    first[chunk - 100] ^= 0x01;
    let err = install(
        &d,
        &v,
        &manifest,
        &swu,
        std::io::Cursor::new(first),
        &facts(),
        Timestamp::now(),
    )
    .unwrap_err();
    println!("flipped byte in the first chunk: {err}");
    assert!(
        matches!(
            err,
            UpdateError::Artifact {
                source: ArtifactError::ChunkMismatch { offset: 0 },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.nothing_written());
    d.assert_untouched("flipped byte in the first chunk");
    assert_not_armed(&d, "flipped byte in the first chunk");

    // Mid-stream (a server that changes bytes on the way): the chunks
    // before it are installed, the changed one never reaches SWUpdate.
    let mut late = good.clone();
    let at = good.len() / 2 + 100; // inside the compressed image
    late[at] ^= 0x01;
    let err = install(
        &d,
        &v,
        &manifest,
        &swu,
        std::io::Cursor::new(late.clone()),
        &facts(),
        Timestamp::now(),
    )
    .unwrap_err();
    println!("flipped byte mid-stream: {err}");
    assert!(matches!(err, UpdateError::Interrupted { .. }), "{err:?}");
    let offset = (at / chunk * chunk) as u64;
    assert!(
        err.to_string()
            .contains(&format!("from offset {offset} do not match")),
        "{err}"
    );
    assert!(!err.nothing_written());
    assert_not_armed(&d, "flipped byte mid-stream");
    assert_eq!(
        d.grubenv_var("ustate").as_deref(),
        Some("0"),
        "ustate reset"
    );
    assert_only_the_signed_image_in_slot_b(&d, &img, "flipped byte mid-stream");

    // The artifact's last byte (the cpio trailer's padding, which no
    // image hash covers): the last chunk's entry is the whole artifact's
    // SHA-256, so that chunk never reaches SWUpdate either.
    let mut tail = good.clone();
    let last = good.len() - 1;
    tail[last] ^= 0x01;
    let err = install(
        &d,
        &v,
        &manifest,
        &swu,
        std::io::Cursor::new(tail),
        &facts(),
        Timestamp::now(),
    )
    .unwrap_err();
    println!("flipped last byte: {err}");
    let offset = (last / chunk * chunk) as u64;
    assert!(
        err.to_string()
            .contains(&format!("from offset {offset} do not match")),
        "{err}"
    );
    assert_not_armed(&d, "flipped last byte");
    assert_eq!(
        d.grubenv_var("ustate").as_deref(),
        Some("0"),
        "ustate reset"
    );

    // Why hearthd checks each chunk before it streams: the same bytes
    // straight into SWUpdate (installed-directly) overwrite slot B with
    // them before the image's SHA-256 fails, and leave `ustate` for
    // someone to reset.
    // (A release built for this daemon: sw-description names its slots.)
    let d = v.swupdate();
    let mut straight = fs::read(v.build(&d, "straight", "1.1.0", &["signer"], &img)).unwrap();
    straight[at] ^= 0x01;
    let into_b = selection(&d);
    let request = swupdate_rs::InstallRequest {
        software_set: into_b.software_set,
        running_mode: into_b.running_mode,
        ..swupdate_rs::InstallRequest::default()
    };
    let e = d.client.install(&request, &straight[..]).unwrap_err();
    let ustate = d.grubenv_var("ustate");
    let written = overwritten(&d);
    println!(
        "straight to swupdate: {e}; {written} of {IMAGE_SIZE} bytes of slot B overwritten, ustate then {ustate:?}"
    );
    assert!(written > 0, "SWUpdate now checks before it writes");
    d.assert_not_armed("flipped image byte straight to swupdate");
}

#[test]
fn a_bad_chunk_index_is_refused_before_the_artifact_is_downloaded() {
    let v = vendor();
    let d = v.swupdate();
    let swu = v.build(&d, "good", "1.1.0", &["signer"], &image(13));
    let manifest = manifest_json(&v, &swu, "signer", &[]);
    let index = index_of(&swu);
    let other = v.build(&d, "other", "1.2.0", &["signer"], &image(14));
    let mut flipped = index.clone();
    flipped[100] ^= 0x01;
    let mut longer = index.clone();
    longer.extend_from_slice(&[0u8; 32]);
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("a flipped digest", flipped, "its sha256 is"),
        (
            "a truncated index",
            index[..index.len() - 32].to_vec(),
            "bytes, the manifest says",
        ),
        ("a longer index", longer, "bytes, the manifest says"),
        (
            "another release's index",
            index_of(&other),
            "the manifest says",
        ),
    ];
    let refused = |case: &str, err: UpdateError, says: &str| {
        println!("{case}: {err}");
        assert!(
            matches!(
                err,
                UpdateError::Artifact {
                    source: ArtifactError::BadIndex { .. },
                    ..
                }
            ),
            "{case}: {err:?}"
        );
        assert!(err.to_string().contains(says), "{case}: {err}");
        assert!(err.nothing_written());
        d.assert_untouched(case);
        assert_not_armed(&d, case);
    };
    for (case, served, says) in cases {
        let err = install_reads(
            &d,
            &v,
            &manifest,
            serving(served, MustNotRead),
            &facts(),
            Timestamp::now(),
        )
        .unwrap_err();
        refused(case, err, says);
    }
    // An endless index: read no further than one byte past the pinned
    // length, then refused for its length.
    let read = Arc::new(AtomicU64::new(0));
    let endless = Counted {
        inner: std::io::repeat(0),
        n: read.clone(),
    };
    let err = install_reads(
        &d,
        &v,
        &manifest,
        serving_once(endless),
        &facts(),
        Timestamp::now(),
    )
    .unwrap_err();
    refused("an endless index", err, "bytes, the manifest says");
    assert_eq!(read.load(Ordering::Relaxed), index.len() as u64 + 1);
}

/// A reader that fails after `left` bytes, like a download that breaks off.
struct BreaksOff<R> {
    inner: R,
    left: usize,
}

impl<R: Read> Read for BreaksOff<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset",
            ));
        }
        let n = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..n])?;
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn a_download_that_breaks_off_for_good_is_reported_and_nothing_is_armed() {
    // (hearthd's download side resumes a dropped connection with Range;
    // this is the reader once it has given up.)
    let v = vendor();
    let d = v.swupdate();
    let img = image(12);
    let swu = v.build(&d, "good", "1.1.0", &["signer"], &img);
    let manifest = manifest_json(&v, &swu, "signer", &[]);
    let good = fs::read(&swu).unwrap();
    let broken = BreaksOff {
        inner: std::io::Cursor::new(good.clone()),
        left: good.len() / 2,
    };
    let err = install(&d, &v, &manifest, &swu, broken, &facts(), Timestamp::now()).unwrap_err();
    println!("download broke off: {err}");
    assert!(matches!(err, UpdateError::Interrupted { .. }), "{err:?}");
    assert!(err.to_string().contains("connection reset"), "{err}");
    assert_not_armed(&d, "download broke off");
    assert_only_the_signed_image_in_slot_b(&d, &img, "download broke off");
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
    let done = install(&d, &v, &manifest, &swu, reader, &facts(), now)
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(done.keyring_version, 2);
    assert_eq!(d.slot(&d.slot_b), img);
    assert_eq!(d.grubenv_var("hearth_slot").as_deref(), Some("B"));

    // Once the device confirmed that release its key-ring floor is 2, and
    // the old key's release (carrying key ring v1) is refused unread.
    let mut confirmed = facts();
    confirmed.keyring_floor = done.keyring_version;
    let err = install_reads(
        &d,
        &v,
        &old_key_manifest,
        |_| Ok(MustNotRead),
        &confirmed,
        now,
    )
    .unwrap_err();
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
fn swupdate_refusing_the_selection_is_reported_and_nothing_is_written() {
    // A daemon that accepts no IPC selection (-q missing): hearthd's request
    // for stable,copy2 is NACKed after the check, before anything is sent.
    let v = vendor();
    let d = v
        .swupdate_builder()
        .selection_args(["-e", "stable,copy2"])
        .start();
    let swu = v.build(&d, "good", "1.1.0", &["signer"], &image(11));
    let manifest = manifest_json(&v, &swu, "signer", &[]);
    let (reader, _) = counted(fs::read(&swu).unwrap());
    let err = install(&d, &v, &manifest, &swu, reader, &facts(), Timestamp::now()).unwrap_err();
    println!("selection not accepted: {err}");
    assert!(matches!(err, UpdateError::Start { .. }), "{err:?}");
    assert!(err.nothing_written());
    assert!(err.to_string().contains("-q stable,copy2"), "{err}");
    d.assert_untouched("selection not accepted");
}

/// A `hearth-update-gate` in front of `d`, holding SWUpdate to `running`,
/// and a client of it: the way hearthd reaches SWUpdate on the device.
fn gate(d: &Daemon, running: &str) -> (swupdate_rs::Client, tempfile::TempDir) {
    use std::os::unix::net::UnixListener;
    let dir = tempfile::tempdir_in(d.root()).unwrap();
    let control = UnixListener::bind(dir.path().join("sockinstctrl")).unwrap();
    let progress = UnixListener::bind(dir.path().join("swupdateprog")).unwrap();
    let upstream = d.client.config().clone();
    let gate = update_gate::Gate::new(update_gate::GateConfig {
        control_socket: upstream.control_socket.clone(),
        progress_socket: upstream.progress_socket.clone(),
        running: update_gate::RunningVersion::new(running).unwrap(),
        io_timeout: std::time::Duration::from_secs(10),
    });
    std::thread::spawn(move || gate.serve(control, Some(progress)));
    let client = swupdate_rs::Client::new(swupdate_rs::ClientConfig {
        control_socket: dir.path().join("sockinstctrl"),
        progress_socket: dir.path().join("swupdateprog"),
        ..upstream
    });
    (client, dir)
}

/// The attack of a compromised hearthd (issue 14, item 4;
/// docs/threat-model.md): it skips its own floors and asks SWUpdate for an
/// older release. Straight to SWUpdate this works even with `-N` (the
/// `SET_VERSIONS_RANGE` hearthd sends replaces it; shown in
/// `crates/update-gate/tests/real_swupdate.rs`); on the device hearthd
/// reaches SWUpdate only through `hearth-update-gate`, which holds the
/// minimum at the running version.
#[test]
fn swupdate_itself_refuses_a_release_older_than_the_running_one() {
    // A release of 1.1.0 through the gate of a device running `running`
    // (SWUpdate's -N and the gate's floor); the compromised hearthd's facts
    // say 1.0.0 whatever the device runs.
    let install_1_1_0 = |running: &str| {
        let v = vendor();
        let d = v.swupdate_builder().args(["-N", running]).start();
        let (client, _gate) = gate(&d, running);
        let swu = v.build(&d, running, "1.1.0", &["signer"], &image(12));
        let manifest = manifest_json(&v, &swu, "signer", &[]);
        let (reader, _) = counted(fs::read(&swu).unwrap());
        let device = update::Device {
            root: &v.trusted_root(),
            facts: &facts(),
            running_slot: None,
        };
        let result = update::install(
            &manifest,
            serving(index_of(&swu), reader),
            &device,
            Timestamp::now(),
            &client,
            &selection(&d),
        );
        (result, d)
    };
    let (result, d) = install_1_1_0("2.0.0");
    let err = result.unwrap_err();
    println!("older than the running version: {err}");
    assert!(matches!(err, UpdateError::Swupdate { .. }), "{err:?}");
    assert_not_armed(&d, "older than the running version");
    assert!(
        err.to_string().contains("No downgrading allowed"),
        "SWUpdate says why: {err}"
    );
    // Control: the same release on a device running 1.0.0.
    let (result, _d) = install_1_1_0("1.0.0");
    result.expect("installs above the floor");
}

/// A delta release of `new` (built with `--delta`) for a device whose
/// slot A holds `old`: the manifest, the delta index and the pack.
fn delta_release(v: &Vendor, d: &Daemon, old: &[u8], new: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    use std::os::unix::fs::FileExt;
    fs::OpenOptions::new()
        .write(true)
        .open(&d.slot_a)
        .unwrap()
        .write_all_at(old, 0)
        .unwrap();
    let swu = v.build_with(d, "delta", "1.1.0", &["signer"], new, &["--delta"]);
    let manifest = manifest_json(v, &swu, "signer", &["--delta"]);
    let (index, pack) = update_manifest::delta::files_beside(&swu);
    (manifest, fs::read(index).unwrap(), fs::read(pack).unwrap())
}

/// What the update server of a delta release serves: its index and parts
/// of its pack (each request logged). The whole artifact must not be asked
/// for.
fn serving_delta(
    index: Vec<u8>,
    pack: Vec<u8>,
    log: Arc<std::sync::Mutex<Vec<(u64, u64)>>>,
) -> impl FnMut(Part) -> std::io::Result<Box<dyn Read + Send>> {
    move |part| match part {
        Part::DeltaIndex => {
            Ok(Box::new(std::io::Cursor::new(index.clone())) as Box<dyn Read + Send>)
        }
        Part::Pack { offset, len } => {
            log.lock().unwrap().push((offset, len));
            let end = usize::try_from(offset + len).unwrap().min(pack.len());
            Ok(Box::new(std::io::Cursor::new(
                pack[offset as usize..end].to_vec(),
            )))
        }
        Part::Index | Part::Artifact => panic!("a delta install downloaded the whole release"),
    }
}

fn install_delta(
    d: &Daemon,
    v: &Vendor,
    manifest: &[u8],
    open: impl FnMut(Part) -> std::io::Result<Box<dyn Read + Send>>,
    running_slot: &Path,
) -> Result<Installed, UpdateError> {
    let device = update::Device {
        root: &v.trusted_root(),
        facts: &facts(),
        running_slot: Some(running_slot),
    };
    update::install(
        manifest,
        open,
        &device,
        Timestamp::now(),
        &d.client,
        &selection(d),
    )
}

/// The new image: three new blocks in front of the old one's (shifted),
/// one of them changed further on.
fn changed(old: &[u8]) -> Vec<u8> {
    let mut new = image(33)[..3 * 4096].to_vec();
    new.extend_from_slice(&old[..old.len() - 3 * 4096]);
    new[100 * 4096 + 1] ^= 0xff;
    new
}

#[test]
fn a_delta_release_is_rebuilt_from_the_running_slot_and_the_segments_it_lacks() {
    let v = vendor();
    let d = v.swupdate();
    let old = image(32);
    let new = changed(&old);
    let (manifest, index, pack) = delta_release(&v, &d, &old, &new);
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let pack_len = pack.len() as u64;
    let installed = install_delta(
        &d,
        &v,
        &manifest,
        serving_delta(index, pack, log.clone()),
        &d.slot_a,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(installed.target, Slot::B);
    assert_eq!(&fs::read(&d.slot_b).unwrap()[..new.len()], &new[..]);
    assert_eq!(d.grubenv_var("hearth_slot").as_deref(), Some("B"));
    let fetched: u64 = log.lock().unwrap().iter().map(|(_, len)| len).sum();
    println!(
        "delta: fetched {fetched} of {pack_len} pack bytes in {:?}",
        log.lock().unwrap()
    );
    assert!(
        fetched > 0 && fetched * 10 < pack_len,
        "fetched {fetched} of {pack_len}"
    );
}

#[test]
fn a_tampered_delta_index_or_segment_is_refused_and_nothing_is_armed() {
    let v = vendor();
    let d = v.swupdate();
    let old = image(34);
    let new = changed(&old);
    let (manifest, index, pack) = delta_release(&v, &d, &old, &new);

    // The index on the server altered: refused before anything is read.
    let mut bad_index = index.clone();
    let last = bad_index.len() - 1;
    bad_index[last] ^= 1;
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let err = install_delta(
        &d,
        &v,
        &manifest,
        serving_delta(bad_index, pack.clone(), log.clone()),
        &d.slot_a,
    )
    .unwrap_err();
    println!("tampered delta index: {err}");
    assert!(
        matches!(
            &err,
            UpdateError::Artifact {
                source: ArtifactError::BadDelta { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.nothing_written());
    assert!(log.lock().unwrap().is_empty(), "the pack was fetched");
    assert_not_armed(&d, "tampered delta index");

    // A byte of every segment of the pack altered (the first fetched one
    // comes after blocks already streamed): the install stops at it.
    let tampered: Vec<u8> = pack.iter().map(|b| b ^ 0x01).collect();
    let err = install_delta(
        &d,
        &v,
        &manifest,
        serving_delta(index.clone(), tampered, log),
        &d.slot_a,
    )
    .unwrap_err();
    println!("tampered pack: {err}");
    assert!(err.to_string().contains("do not match"), "{err}");
    assert_not_armed(&d, "tampered pack");

    // A server that answers a Range request with other bytes of the pack.
    let mut shifted = serving_delta(index, pack.clone(), Default::default());
    let other = move |part| match part {
        Part::Pack { offset, len } => shifted(Part::Pack {
            offset: offset + 1,
            len,
        }),
        part => shifted(part),
    };
    let err = install_delta(&d, &v, &manifest, other, &d.slot_a).unwrap_err();
    println!("Range answered with other bytes: {err}");
    assert!(err.to_string().contains("do not match"), "{err}");
    assert_not_armed(&d, "Range answered with other bytes");
}

#[test]
fn a_running_slot_that_cannot_be_read_means_the_whole_release_is_downloaded() {
    let v = vendor();
    let d = v.swupdate();
    let old = image(35);
    let new = changed(&old);
    let (manifest, index, _) = delta_release(&v, &d, &old, &new);
    let swu = v.path("delta.swu");
    let full = serving(index_of(&swu), fs::File::open(&swu).unwrap());
    let mut asked = Vec::new();
    let mut full = full;
    let open = |part: Part| {
        asked.push(part);
        match part {
            Part::DeltaIndex => {
                Ok(Box::new(std::io::Cursor::new(index.clone())) as Box<dyn Read + Send>)
            }
            part => full(part),
        }
    };
    install_delta(&d, &v, &manifest, open, &d.root().join("no-such-slot"))
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(&fs::read(&d.slot_b).unwrap()[..new.len()], &new[..]);
    assert_eq!(asked, [Part::DeltaIndex, Part::Index, Part::Artifact]);
}

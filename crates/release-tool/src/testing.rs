//! Test support, behind the `testing` feature (enabled only by the
//! dev-dependencies of this crate and of hearthd, never in the tool): a
//! [`Vendor`] that makes real releases with this tool in a temporary
//! directory, for slots of the real `swupdate` run by `swupdate-testkit`,
//! plus the images, the forged `.swu` and the forged manifest the
//! end-to-end tests share.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use swupdate_testkit::{Daemon, DaemonBuilder};
use update_manifest::{
    DeviceFacts, SignedKeyring, SignedManifest, SigningKey, Timestamp, TrustedRoot,
};

/// The board the test releases are built for (`swupdate -H MODEL:REV`).
pub const MODEL: &str = "HRH-1";
/// The hardware revision the test releases are built for.
pub const REV: &str = "A";
/// Size of each test slot and of each test image, in bytes.
pub const IMAGE_SIZE: usize = 1024 * 1024;

/// [`swupdate_testkit::image`] of [`IMAGE_SIZE`] bytes.
pub fn image(seed: u32) -> Vec<u8> {
    swupdate_testkit::image(seed, IMAGE_SIZE)
}

/// Rewrites `version = "1.1.0"` in the archive's sw-description to
/// "1.9.0" and fixes the cpio checksum, leaving the signature as it was.
pub fn tamper_sw_description(swu: &[u8]) -> Vec<u8> {
    let mut out = swu.to_vec();
    let size = usize::from_str_radix(std::str::from_utf8(&out[54..62]).unwrap(), 16).unwrap();
    let data = 128..128 + size; // 110-byte header + "sw-description\0" + padding
    let text = String::from_utf8(out[data.clone()].to_vec()).unwrap();
    let forged = text.replacen("version = \"1.1.0\"", "version = \"1.9.0\"", 1);
    assert_ne!(text, forged);
    out[data.clone()].copy_from_slice(forged.as_bytes());
    let sum = out[data]
        .iter()
        .fold(0u32, |a, &b| a.wrapping_add(u32::from(b)));
    out[102..110].copy_from_slice(format!("{sum:08x}").as_bytes());
    out
}

/// How a [`Vendor`] runs hearth-release.
#[derive(Debug, Clone)]
pub enum Tool {
    /// In this process through [`crate::run`]: what another crate's tests
    /// can do (only this crate's tests have the binary).
    Library,
    /// The built binary, run in the vendor's directory (this crate's
    /// integration tests: `env!("CARGO_BIN_EXE_hearth-release")`), so its
    /// exit status and messages are what a vendor sees.
    Binary(PathBuf),
}

/// The vendor's side: a temporary directory with a root key, a certified
/// signing key `signer` and `keyring.json`, made with the tool. Key
/// prefixes and file names given to its methods are relative to that
/// directory.
#[derive(Debug)]
pub struct Vendor {
    dir: tempfile::TempDir,
    tmp: PathBuf,
    tool: Tool,
}

impl Vendor {
    /// `keygen` a root and a signing key and `certify` the signing key, in
    /// a new directory under `tmp` (tests pass `env!("CARGO_TARGET_TMPDIR")`).
    pub fn new(tool: Tool, tmp: impl Into<PathBuf>) -> Vendor {
        let tmp = tmp.into();
        let dir = tempfile::Builder::new()
            .prefix("hearth-release-vendor-")
            .tempdir_in(&tmp)
            .unwrap();
        let v = Vendor { dir, tmp, tool };
        v.run(&["keygen", "--role", "root", "--out", &v.p("root")]);
        v.run(&["keygen", "--role", "signing", "--out", &v.p("signer")]);
        v.run(&[
            "certify",
            "--root",
            &v.p("root"),
            "--key",
            &v.p("signer"),
            "--keyring",
            &v.p("keyring.json"),
        ]);
        v
    }

    /// A file in the vendor's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// [`path`](Self::path) as an argument for the tool.
    pub fn p(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }

    /// Runs hearth-release; returns (success, what it said on stderr). The
    /// library only reports the error, in the words the binary prints.
    pub fn try_run(&self, args: &[&str]) -> (bool, String) {
        match &self.tool {
            Tool::Library => match crate::run(lexopt::Parser::from_args(args.iter().copied())) {
                Ok(()) => (true, String::new()),
                Err(e) => (false, format!("hearth-release: {e}")),
            },
            Tool::Binary(exe) => {
                let out = Command::new(exe)
                    .args(args)
                    .current_dir(self.dir.path())
                    .output()
                    .unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                (out.status.success(), stderr)
            }
        }
    }

    /// Runs hearth-release and panics with its message if it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let (ok, stderr) = self.try_run(args);
        assert!(ok, "hearth-release {args:?} failed:\n{stderr}");
        stderr
    }

    /// `publish` of `manifest` and its `artifact` into `www/`, which it
    /// returns: the static server's document root.
    pub fn publish(&self, manifest: &Path, artifact: &Path) -> PathBuf {
        let www = self.path("www");
        self.run(&[
            "publish",
            "--manifest",
            manifest.to_str().expect("UTF-8 path"),
            "--artifact",
            artifact.to_str().expect("UTF-8 path"),
            "--out",
            www.to_str().expect("UTF-8 path"),
        ]);
        www
    }

    /// The root certificate SWUpdate trusts (`swupdate -k`).
    pub fn root_cert(&self) -> PathBuf {
        self.path("root.cert.pem")
    }

    /// The trust anchor as hearthd reads it: from the certificate SWUpdate
    /// trusts (the same key as `root.pub.pem`; tests/cli.rs checks that).
    pub fn trusted_root(&self) -> TrustedRoot {
        TrustedRoot::from_cert_pem(&fs::read_to_string(self.root_cert()).unwrap()).unwrap()
    }

    /// A `swupdate-testkit` daemon as `MODEL:REV` with [`IMAGE_SIZE`]
    /// slots, trusting this vendor's root, not started yet.
    pub fn swupdate_builder(&self) -> DaemonBuilder {
        Daemon::builder(self.root_cert())
            .hardware(MODEL, REV)
            .slot_size(IMAGE_SIZE)
            .temp_dir(&self.tmp)
            .prefix("hearth-release-swupdate-")
    }

    /// [`swupdate_builder`](Self::swupdate_builder), started.
    pub fn swupdate(&self) -> Daemon {
        self.swupdate_builder().start()
    }

    /// `build`: `name.swu` of `image` from the layer's template for the
    /// slots of `d`, signed by `signers` (each a CMS signature).
    pub fn build(
        &self,
        d: &Daemon,
        name: &str,
        version: &str,
        signers: &[&str],
        image: &[u8],
    ) -> PathBuf {
        self.build_with(d, name, version, signers, image, &[])
    }

    /// [`build`](Self::build) with `extra` options (`--delta`).
    pub fn build_with(
        &self,
        d: &Daemon,
        name: &str,
        version: &str,
        signers: &[&str],
        image: &[u8],
        extra: &[&str],
    ) -> PathBuf {
        let rootfs = self.p(&format!("{name}.ext4"));
        fs::write(&rootfs, image).unwrap();
        let out = self.p(&format!("{name}.swu"));
        let (a, b) = (
            d.slot_a.to_str().unwrap().to_owned(),
            d.slot_b.to_str().unwrap().to_owned(),
        );
        let mut args = vec![
            "build",
            "--rootfs",
            &rootfs,
            "--version",
            version,
            "--model",
            MODEL,
            "--hw-revision",
            REV,
            "--slot-a",
            &a,
            "--slot-b",
            &b,
            "--rootfs-name",
            "hearth-image.rootfs.ext4.zst",
            "--out",
            &out,
        ];
        let signer_paths: Vec<String> = signers.iter().map(|s| self.p(s)).collect();
        for s in &signer_paths {
            args.extend(["--signer", s.as_str()]);
        }
        args.extend(extra);
        self.run(&args);
        PathBuf::from(out)
    }

    /// `manifest`: signs a manifest for `swu` with `key` (security version
    /// 2), `extra` options appended; returns its path.
    pub fn manifest(&self, swu: &Path, key: &str, extra: &[&str]) -> PathBuf {
        // A fresh name each time: earlier manifests stay valid test inputs.
        static N: AtomicUsize = AtomicUsize::new(0);
        let stem = swu.file_stem().unwrap().to_string_lossy();
        let n = N.fetch_add(1, Ordering::Relaxed);
        let out = self.path(&format!("{stem}.{n}.manifest.json"));
        let (ok, stderr) = self.try_manifest(swu, key, extra, &out);
        assert!(ok, "hearth-release manifest for {swu:?} failed:\n{stderr}");
        out
    }

    /// [`manifest`](Self::manifest) into `out`, which may fail; returns
    /// (success, what the tool said).
    pub fn try_manifest(
        &self,
        swu: &Path,
        key: &str,
        extra: &[&str],
        out: &Path,
    ) -> (bool, String) {
        let (swu, key, keyring, root, out) = (
            swu.to_str().unwrap().to_owned(),
            self.p(key),
            self.p("keyring.json"),
            self.p("root"),
            out.to_str().unwrap().to_owned(),
        );
        let mut args = vec![
            "manifest",
            "--artifact",
            &swu,
            "--key",
            &key,
            "--keyring",
            &keyring,
            "--root",
            &root,
            "--base-url",
            "https://updates.example.com/hearth",
            "--security-version",
            "2",
            "--release-notes",
            "https://example.com/notes",
            "--out",
            &out,
        ];
        args.extend_from_slice(extra);
        self.try_run(&args)
    }

    /// What a thief with the private key `key` can make once it is revoked
    /// (the tool refuses to): the release of `manifest` (JSON), issued
    /// `now`, signed with `key` and carrying the vendor's current key ring,
    /// which no longer lists it. Returns the forged JSON.
    pub fn forge_with_stolen_key(&self, manifest: &[u8], key: &str, now: Timestamp) -> Vec<u8> {
        let keyring =
            SignedKeyring::from_json(&fs::read(self.path("keyring.json")).unwrap()).unwrap();
        let stolen = SigningKey::from_pkcs8_pem(
            &fs::read_to_string(self.path(&format!("{key}.key.pem"))).unwrap(),
        )
        .unwrap();
        let mut m = SignedManifest::from_json(manifest).unwrap().manifest;
        m.issued = now;
        m.sign(&stolen, keyring).unwrap().to_json()
    }

    /// `rotate`: certifies `new` in key ring N+1 and drops `old` (unless
    /// `overlap_days` keeps it for that long).
    pub fn rotate(&self, old: &str, new: &str, overlap_days: Option<&str>) {
        let (root, keyring, old, new) = (
            self.p("root"),
            self.p("keyring.json"),
            self.p(old),
            self.p(new),
        );
        let mut args = vec![
            "rotate",
            "--root",
            &root,
            "--keyring",
            &keyring,
            "--old",
            &old,
            "--new",
            &new,
        ];
        if let Some(days) = overlap_days {
            args.extend(["--overlap-days", days]);
        }
        self.run(&args);
    }

    /// `verify` as the device of `facts` at `now`; returns (accepted,
    /// what the tool said).
    pub fn verify(
        &self,
        manifest: &Path,
        swu: &Path,
        facts: &DeviceFacts,
        now: Timestamp,
    ) -> (bool, String) {
        let (root, manifest, swu) = (
            self.p("root"),
            manifest.to_str().unwrap().to_owned(),
            swu.to_str().unwrap().to_owned(),
        );
        let (floor, kfloor, max, inst, now) = (
            facts.security_floor.to_string(),
            facts.keyring_floor.to_string(),
            facts.max_artifact_size.to_string(),
            facts.installed_version.to_string(),
            now.to_string(),
        );
        self.try_run(&[
            "verify",
            "--root",
            &root,
            "--manifest",
            &manifest,
            "--artifact",
            &swu,
            "--model",
            facts.model.as_str(),
            "--hw-revision",
            facts.hardware_revision.as_str(),
            "--installed-version",
            &inst,
            "--security-floor",
            &floor,
            "--keyring-floor",
            &kfloor,
            "--max-artifact-size",
            &max,
            "--now",
            &now,
        ])
    }
}

//! The vendor's side of an update, for the QEMU tests: new versions of the
//! development image's root file system, made into signed releases with the
//! real `hearth-release` and the layer's development keys, and published
//! into a web root for [`crate::update_server::UpdateServer`].
//!
//! A "new version" is the image's own `rootfs.ext4` with its os-release
//! `IMAGE_VERSION` changed (debugfs, no mounting); a broken release also
//! carries a vendor health hook that fails, so its hearthd refuses to
//! commit it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::broker::GUEST_HOST;

/// The model and hardware revision of the reference vendor file.
pub const MODEL: &str = "HRH-1";
pub const REVISION: &str = "A";
/// The port at which the guest reaches the update server (a guestfwd rule).
pub const GUEST_HTTPS_PORT: u16 = 8443;

const DEV_KEYS: &str = "yocto-layer/meta-hearth/files/dev-keys";

/// The folder of release keys the lab signs with: the Hearth development
/// keys, which the development image trusts, or `HEARTH_RELEASE_KEYS` (the
/// same file names), such as the weakened image's own root.
pub fn release_keys() -> PathBuf {
    std::env::var_os("HEARTH_RELEASE_KEYS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join(DEV_KEYS))
}

/// The declared release root: the certificate the vendor's IXIT names (the
/// development root; a vendor's lab sets `HEARTH_DECLARED_ROOT`).
pub fn declared_root_cert() -> PathBuf {
    std::env::var_os("HEARTH_DECLARED_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            crate::repo_root()
                .join(DEV_KEYS)
                .join("hearth-dev-root.cert.pem")
        })
}

/// hearth-trial-watch's deadline in a [`Kind::NeverCommits`] release.
pub const TRIAL_WATCH_TEST_SECS: u32 = 45;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A working release.
    Good,
    /// Its vendor health hook fails: the device must roll back.
    FailsHealthCheck,
    /// hearthd never starts on it (masked), so nothing commits its trial:
    /// hearth-trial-watch must reboot it, after [`TRIAL_WATCH_TEST_SECS`]
    /// instead of the shipped 600 s, and say so on the console.
    NeverCommits,
}

#[derive(Debug, Clone)]
pub struct Release {
    pub version: String,
    pub manifest: PathBuf,
    pub swu: PathBuf,
    pub security_version: u32,
    /// `urgency = "security"`.
    pub security: bool,
}

impl Release {
    pub fn manifest_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.manifest).expect("manifest")
    }
}

#[derive(Debug)]
pub struct Vendor {
    dir: tempfile::TempDir,
    tool: PathBuf,
    /// The root file system releases are made from: the image's, unless
    /// [`Vendor::from_rootfs`] names another (the aarch64 image's).
    base: Option<PathBuf>,
    /// The update server's document root.
    pub web_root: PathBuf,
    /// Releases come with a delta release (`build --delta`), which a device
    /// installs by reusing its running slot's blocks.
    pub deltas: bool,
}

/// The delta index and the pack `hearth-release build --delta` writes
/// beside `swu` (and `publish` beside the published artifact).
pub use update_manifest::delta::files_beside as delta_files;

impl Default for Vendor {
    fn default() -> Self {
        Vendor::new()
    }
}

impl Vendor {
    pub fn new() -> Vendor {
        let dir = tempfile::Builder::new()
            .prefix("hearth-vendor-")
            .tempdir()
            .expect("temporary directory");
        let web_root = dir.path().join("www");
        std::fs::create_dir_all(&web_root).expect("web root");
        Vendor {
            dir,
            tool: release_tool(),
            base: None,
            web_root,
            deltas: false,
        }
    }

    /// A vendor whose releases are made from `rootfs` (a slot image).
    pub fn from_rootfs(rootfs: PathBuf) -> Vendor {
        Vendor {
            base: Some(rootfs),
            ..Vendor::new()
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The image's root file system with `IMAGE_VERSION=version`.
    pub fn rootfs(&self, version: &str, kind: Kind) -> PathBuf {
        let base = self.base.clone().unwrap_or_else(|| {
            crate::image()
                .parent()
                .expect("image directory")
                .join("rootfs.ext4")
        });
        self.rootfs_from(&base, version, kind)
    }

    /// `base` (a slot image) with `IMAGE_VERSION=version`.
    fn rootfs_from(&self, base: &Path, version: &str, kind: Kind) -> PathBuf {
        let out = self.path(&format!("rootfs-{version}.ext4"));
        // Sparse, as the image holds it: std::fs::copy would write the
        // slot's free space out in full (512 MiB per release being built).
        let status = Command::new("cp")
            .arg("--sparse=always")
            .arg(base)
            .arg(&out)
            .status()
            .expect("run cp");
        assert!(
            status.success(),
            "copying {} failed (qemu/build-image makes it)",
            base.display()
        );
        let fs = crate::offline::Ext4::file(&out);
        let os_release = String::from_utf8(fs.read("/usr/lib/os-release").expect("os-release"))
            .expect("os-release is text");
        assert!(os_release.contains("IMAGE_VERSION="), "{os_release}");
        let changed: String = os_release
            .lines()
            .map(|line| {
                if line.starts_with("IMAGE_VERSION=") {
                    format!("IMAGE_VERSION={version}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        replace_file(
            &out,
            "/usr/lib/os-release",
            changed.as_bytes(),
            &self.path("os-release"),
        );
        if kind == Kind::FailsHealthCheck {
            let old = fs
                .read("/etc/hearth/hearth.toml")
                .map(|b| String::from_utf8(b).expect("text"))
                .unwrap_or_default();
            assert!(
                old.contains("[update]"),
                "the dev image's override has an [update] table: {old}"
            );
            let broken = old.replace(
                "[update]\n",
                "[update]\n# A deliberately broken release (system test): its health check fails.\nhealth_hook = \"/bin/false\"\n",
            );
            replace_file(
                &out,
                "/etc/hearth/hearth.toml",
                broken.as_bytes(),
                &self.path("hearth.toml"),
            );
        }
        if kind == Kind::NeverCommits {
            never_commits(&out, &self.path("trial-watch.conf"));
        }
        out
    }

    /// A signed release of the image as `version`, published into the web
    /// root (`security` picks the urgency).
    pub fn release(
        &self,
        version: &str,
        kind: Kind,
        security_version: u32,
        security: bool,
    ) -> Release {
        self.release_for(MODEL, version, kind, security_version, security)
    }

    /// [`release`](Self::release) for another model (a mix-and-match test).
    pub fn release_for(
        &self,
        model: &str,
        version: &str,
        kind: Kind,
        security_version: u32,
        security: bool,
    ) -> Release {
        self.release_with(model, version, kind, (security_version, security), &[])
    }

    /// A release rolled out in waves: from `start` (`YYYY-MM-DDTHH:MM:SSZ`)
    /// over `spread_hours`.
    pub fn release_in_waves(
        &self,
        version: &str,
        security: bool,
        start: &str,
        spread_hours: u32,
    ) -> Release {
        let spread = spread_hours.to_string();
        let extra = ["--rollout-start", start, "--spread-hours", spread.as_str()];
        self.release_with(MODEL, version, Kind::Good, (1, security), &extra)
    }

    /// A release of another build of the image, `base` (a slot image), as
    /// `version`: a vendor's next build, with other packages.
    pub fn release_from(&self, base: &Path, version: &str) -> Release {
        let rootfs = self.rootfs_from(base, version, Kind::Good);
        self.release_of(rootfs, MODEL, version, (1, false), &[])
    }

    fn release_with(
        &self,
        model: &str,
        version: &str,
        kind: Kind,
        versions: (u32, bool),
        extra: &[&str],
    ) -> Release {
        let rootfs = self.rootfs(version, kind);
        self.release_of(rootfs, model, version, versions, extra)
    }

    fn release_of(
        &self,
        rootfs: PathBuf,
        model: &str,
        version: &str,
        (security_version, security): (u32, bool),
        extra: &[&str],
    ) -> Release {
        let swu = self.swu_of(&rootfs, model, version);
        let _ = std::fs::remove_file(&rootfs);
        let manifest = self.path(&format!("hearth-{version}.manifest.json"));
        let notes = format!("https://example.com/hearth/releases/{version}");
        let keys = release_keys();
        // Every published release carries its SBOM, as the README's
        // commands make it, so the devices read manifests that name one.
        let sbom = self.sbom(model, version);
        let mut extra = extra.to_vec();
        extra.extend(["--sbom", sbom.to_str().expect("path")]);
        let extra = &extra[..];
        self.sign_manifest_with(
            &swu,
            &manifest,
            (security_version, security),
            (
                &keys.join("hearth-dev-signing"),
                &keys.join("hearth-dev-keyring.json"),
            ),
            &notes,
            extra,
        );
        self.run(&[
            "publish",
            "--manifest",
            manifest.to_str().expect("path"),
            "--artifact",
            swu.to_str().expect("path"),
            "--sbom",
            sbom.to_str().expect("path"),
            "--out",
            self.web_root.to_str().expect("path"),
        ]);
        Release {
            version: version.to_owned(),
            manifest,
            swu,
            security_version,
            security,
        }
    }

    /// The SBOM of `version` (`hearth-release sbom`): hearthd's crates and
    /// the development image's Debian packages.
    fn sbom(&self, model: &str, version: &str) -> PathBuf {
        let repo = crate::repo_root();
        let out = self.path(&format!("hearth-{version}.spdx.json"));
        let product = format!("Hearth {model}");
        let lock = repo.join("Cargo.lock");
        // The package list build-image wrote beside the base root file system.
        let packages = self.base.as_ref().map_or_else(
            || repo.join("qemu/out/hearth-dev.packages"),
            |base| base.with_file_name("hearth-dev.packages"),
        );
        self.run(&[
            "sbom",
            "--product",
            &product,
            "--version",
            version,
            "--cargo-lock",
            lock.to_str().expect("path"),
            "--crate",
            "hearthd",
            "--debian-packages",
            packages.to_str().expect("path"),
            "--debian-release",
            "bookworm",
            "--out",
            out.to_str().expect("path"),
        ]);
        out
    }

    /// A `.swu` of any root file system as `version` of `model`, signed with
    /// the development key (no manifest, not published). The audit image's
    /// downgrade attempt carries a small one.
    pub fn swu_of(&self, rootfs: &Path, model: &str, version: &str) -> PathBuf {
        let swu = self.path(&format!("hearth-{version}.swu"));
        let signer = release_keys().join("hearth-dev-signing");
        let (rootfs, signer, out) = (
            rootfs.display().to_string(),
            signer.display().to_string(),
            swu.display().to_string(),
        );
        let mut args = vec![
            "build",
            "--rootfs",
            &rootfs,
            "--version",
            version,
            "--model",
            model,
            "--hw-revision",
            REVISION,
            "--signer",
            &signer,
            "--zstd-level",
            "3",
            "--out",
            &out,
            "--dev",
        ];
        if self.deltas {
            args.push("--delta");
        }
        self.run(&args);
        swu
    }

    /// A second signed manifest for `release`'s artifact (same version,
    /// other release notes): an offer whose bytes the device has not seen.
    /// Not published; announce it over MQTT.
    pub fn manifest_again(&self, release: &Release, notes: &str) -> Release {
        // Named by the notes, so that each re-signing keeps its own file.
        let tag: String = notes
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let manifest = self.path(&format!(
            "hearth-{}-again-{tag}.manifest.json",
            release.version
        ));
        self.sign_manifest(
            &release.swu,
            &manifest,
            release.security_version,
            release.security,
            notes,
        );
        Release {
            manifest,
            ..release.clone()
        }
    }

    /// A new signing key (`hearth-release keygen --role signing`); returns
    /// its file prefix.
    pub fn signing_key(&self, name: &str) -> PathBuf {
        let prefix = self.path(name);
        self.run(&[
            "keygen",
            "--role",
            "signing",
            "--out",
            prefix.to_str().expect("path"),
            "--name",
            &format!("{name} (system test, NOT FOR PRODUCTION)"),
            "--dev",
        ]);
        prefix
    }

    /// The development key ring's next version, signed by the development
    /// root: it certifies `key` and revokes the development signing key
    /// (`hearth-release certify --revoke`). Returns the key ring file.
    pub fn next_keyring_revoking_the_dev_key(&self, key: &Path) -> PathBuf {
        let keys = release_keys();
        let keyring = self.path("keyring-next.json");
        std::fs::copy(keys.join("hearth-dev-keyring.json"), &keyring).expect("copy key ring");
        let revoked = Vendor::dev_signing_key_id();
        self.run(&[
            "certify",
            "--root",
            keys.join("hearth-dev-root").to_str().expect("path"),
            "--keyring",
            keyring.to_str().expect("path"),
            "--key",
            key.to_str().expect("path"),
            "--revoke",
            &revoked,
            "--dev",
        ]);
        keyring
    }

    /// The id of the development signing key (the only key of the
    /// development key ring).
    pub fn dev_signing_key_id() -> String {
        let keyring = release_keys().join("hearth-dev-keyring.json");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&keyring).expect("key ring")).expect("JSON");
        json["keyring"]["keys"][0]["key_id"]
            .as_str()
            .expect("a key id")
            .to_owned()
    }

    /// Another signed manifest for `release`'s artifact, signed by `key`
    /// under `keyring`, with more `hearth-release manifest` options
    /// (`extra`, e.g. `--rollout-start`). Not published; announce it.
    pub fn manifest_signed_with(
        &self,
        release: &Release,
        key: &Path,
        keyring: &Path,
        notes: &str,
        extra: &[&str],
    ) -> Release {
        let manifest = self.path(&format!(
            "hearth-{}-{}.manifest.json",
            release.version,
            notes.len()
        ));
        self.sign_manifest_with(
            &release.swu,
            &manifest,
            (release.security_version, release.security),
            (key, keyring),
            notes,
            extra,
        );
        Release {
            manifest,
            ..release.clone()
        }
    }

    fn sign_manifest(
        &self,
        swu: &Path,
        manifest: &Path,
        security_version: u32,
        security: bool,
        notes: &str,
    ) {
        let keys = release_keys();
        self.sign_manifest_with(
            swu,
            manifest,
            (security_version, security),
            (
                &keys.join("hearth-dev-signing"),
                &keys.join("hearth-dev-keyring.json"),
            ),
            notes,
            &[],
        );
    }

    fn sign_manifest_with(
        &self,
        swu: &Path,
        manifest: &Path,
        versions: (u32, bool),
        (signer, keyring): (&Path, &Path),
        notes: &str,
        extra: &[&str],
    ) {
        let root = release_keys().join("hearth-dev-root");
        let keys = (signer, keyring, root.as_path());
        self.sign_manifest_under(swu, manifest, versions, keys, notes, extra);
    }

    /// An impostor's manifest for `release`'s artifact: validly signed, by
    /// a key that a key ring of **another root** certifies (the impostor's
    /// own keys, made here). Not published; announce it.
    pub fn manifest_from_another_root(&self, release: &Release) -> Release {
        let root = self.path("impostor-root");
        self.run(&[
            "keygen",
            "--role",
            "root",
            "--out",
            root.to_str().expect("path"),
            "--name",
            "impostor root",
            "--dev",
        ]);
        // (The certificate's CN, with the tool's suffix, must stay within 64 characters.)
        let key = self.signing_key("impostor");
        let keyring = self.path("impostor-keyring.json");
        self.run(&[
            "certify",
            "--root",
            root.to_str().expect("path"),
            "--keyring",
            keyring.to_str().expect("path"),
            "--key",
            key.to_str().expect("path"),
            "--dev",
        ]);
        let manifest = self.path(&format!(
            "hearth-{}-impostor.manifest.json",
            release.version
        ));
        self.sign_manifest_under(
            &release.swu,
            &manifest,
            (release.security_version, release.security),
            (&key, &keyring, &root),
            "https://example.com/impostor",
            &[],
        );
        Release {
            manifest,
            ..release.clone()
        }
    }

    fn sign_manifest_under(
        &self,
        swu: &Path,
        manifest: &Path,
        (security_version, security): (u32, bool),
        (signer, keyring, root): (&Path, &Path, &Path),
        notes: &str,
        extra: &[&str],
    ) {
        let security_version = security_version.to_string();
        let root = root.display().to_string();
        let keyring = keyring.display().to_string();
        let base = format!("https://{GUEST_HOST}:{GUEST_HTTPS_PORT}");
        let mut args = vec![
            "manifest",
            "--artifact",
            swu.to_str().expect("path"),
            "--key",
            signer.to_str().expect("path"),
            "--root",
            &root,
            "--keyring",
            &keyring,
            "--base-url",
            &base,
            "--security-version",
            &security_version,
            "--release-notes",
            notes,
            "--out",
            manifest.to_str().expect("path"),
            "--dev",
        ];
        if security {
            args.extend(["--urgency", "security"]);
        }
        // A delta release built beside the artifact is signed in with it.
        if delta_files(swu).0.exists() {
            args.push("--delta");
        }
        args.extend_from_slice(extra);
        self.run(&args);
    }

    /// `hearth-release verify` of `release`'s manifest for a device of
    /// the model running `installed` with key-ring floor `keyring_floor`,
    /// at the host's time: what a device without that floor would accept.
    pub fn verify(
        &self,
        release: &Release,
        installed: &str,
        keyring_floor: u64,
    ) -> Result<(), String> {
        let root = release_keys().join("hearth-dev-root");
        let out = Command::new(&self.tool)
            .args(["verify", "--root"])
            .arg(root)
            .arg("--manifest")
            .arg(&release.manifest)
            .args(["--model", MODEL, "--hw-revision", REVISION])
            .args(["--installed-version", installed])
            .args(["--keyring-floor", &keyring_floor.to_string(), "--dev"])
            .output()
            .expect("run hearth-release verify");
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The model's `latest.json` URL as the guest sees it.
    pub fn manifest_url() -> String {
        format!("https://{GUEST_HOST}:{GUEST_HTTPS_PORT}/{MODEL}/latest.json")
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.tool)
            .args(args)
            .output()
            .expect("run hearth-release");
        assert!(
            out.status.success(),
            "hearth-release {} failed:\n{}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// Masks hearthd in the root file system `fs` and gives hearth-trial-watch
/// a drop-in with a short deadline (its own command line, whatever the boot
/// loader) that also writes to the console.
fn never_commits(fs: &Path, scratch: &Path) {
    let unit = "/usr/lib/systemd/system/hearth-trial-watch.service";
    let text = crate::offline::Ext4::file(fs)
        .read(unit)
        .map(|b| String::from_utf8(b).expect("text"))
        .unwrap_or_else(|| panic!("{unit} in the image"));
    let exec = text
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("hearth-trial-watch's ExecStart");
    let (command, _) = exec.rsplit_once(' ').expect("ExecStart=… SECONDS");
    let dropin = format!(
        "# A release that never commits (system test): a short deadline, on the console.\n\
         [Service]\nExecStart=\n{command} {TRIAL_WATCH_TEST_SECS}\nStandardOutput=journal+console\n"
    );
    let dir = "/etc/systemd/system/hearth-trial-watch.service.d";
    let root = crate::offline::Ext4::file(fs);
    root.debugfs_write(&format!("mkdir {dir}"));
    replace_file(
        fs,
        &format!("{dir}/test-deadline.conf"),
        dropin.as_bytes(),
        scratch,
    );
    root.debugfs_write("symlink /etc/systemd/system/hearthd.service /dev/null");
    assert!(
        root.exists("/etc/systemd/system/hearthd.service"),
        "hearthd is not masked"
    );
}

/// Replaces `path` inside the ext4 file `fs` with `content` (debugfs -w;
/// the new file is root's, mode 0644, like the one it replaces).
fn replace_file(fs: &Path, path: &str, content: &[u8], scratch: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(scratch, content).expect("scratch file");
    std::fs::set_permissions(scratch, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let root = crate::offline::Ext4::file(fs);
    root.debugfs_write(&format!("rm {path}"));
    root.debugfs_write(&format!("write {} {path}", scratch.display()));
    let back = root.read(path).expect("the replaced file");
    assert_eq!(back, content, "debugfs did not write {path}");
}

/// `cargo` without the running test's CARGO_PKG_*, CARGO_MANIFEST_* and
/// OUT_DIR: ring's build script tracks them, so with them cargo would
/// rebuild ring and everything above it in the release build that
/// qemu/build-image made from a shell.
fn cargo_as_from_a_shell() -> Command {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let the_tests = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&name.as_ref());
        if the_tests {
            cargo.env_remove(name.as_ref());
        }
    }
    cargo
}

/// `hearth-release` from this workspace, built if needed, or the one
/// `HEARTH_RELEASE_TOOL` names (a prebuilt binary of the same source).
pub fn release_tool() -> PathBuf {
    if let Some(tool) = std::env::var_os("HEARTH_RELEASE_TOOL") {
        return PathBuf::from(tool);
    }
    let status = cargo_as_from_a_shell()
        .args([
            "build",
            "--release",
            "--locked",
            "-q",
            "-p",
            "hearth-release",
        ])
        .current_dir(crate::repo_root())
        .status()
        .expect("run cargo build -p hearth-release");
    assert!(status.success(), "building hearth-release failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target"));
    target.join("release/hearth-release")
}

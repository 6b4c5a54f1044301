//! Test material for the real Debian `swupdate` (2022.12): the isolated
//! daemon itself comes from the shared `swupdate-testkit` crate (private
//! mount namespace, file-backed slots, GRUB environment file); this file
//! adds what only these tests use: a throw-away CMS certificate, a
//! hand-built `.swu` and deterministic test images.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Board and revision the daemon runs as (`-H`), matched by the
/// `hardware-compatibility` of the test `.swu`.
pub const BOARD: &str = "hearth-dev";
pub const REVISION: &str = "1.0";
/// Size of each slot file and of the test image.
pub const SLOT_SIZE: usize = 256 * 1024;
/// Byte the slots are filled with before a test, to see any write.
pub use swupdate_testkit::SLOT_FILL;

/// A throw-away CMS signing identity.
pub struct Signer {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Signer {
    /// A self-signed P-256 certificate with the key usages swupdate's
    /// default `--cert-purpose emailProtection` requires.
    pub fn generate(dir: &Path, name: &str) -> Signer {
        let cert = dir.join(format!("{name}.cert.pem"));
        let key = dir.join(format!("{name}.key.pem"));
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .arg("ec_paramgen_curve:P-256")
            .args(["-nodes", "-days", "1", "-subj"])
            .arg(format!("/CN={name}"))
            .args(["-addext", "keyUsage=digitalSignature"])
            .args(["-addext", "extendedKeyUsage=emailProtection"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        Signer { cert, key }
    }
}

/// Runs a command and panics with its output if it fails.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What goes into a test `.swu`.
pub struct SwuSpec<'a> {
    pub version: &'a str,
    pub image: &'a [u8],
    /// `installed-directly = true` (stream into the slot while hashing).
    pub installed_directly: bool,
    pub signer: &'a Signer,
    /// Change `version` in `sw-description` after signing it (the cpio is
    /// built afterwards, so its checksums are right and only the CMS
    /// signature can catch it).
    pub tamper_after_signing: bool,
}

/// One isolated swupdate daemon (the shared `swupdate-testkit` one) that
/// trusts a throw-away CMS certificate made for it.
pub struct Daemon {
    inner: swupdate_testkit::Daemon,
    pub trusted: Signer,
    // Kept for its Drop: the certificate's directory.
    _pki: tempfile::TempDir,
}

impl std::ops::Deref for Daemon {
    type Target = swupdate_testkit::Daemon;
    fn deref(&self) -> &swupdate_testkit::Daemon {
        &self.inner
    }
}

impl Daemon {
    /// Starts `swupdate -v -B grub -k <test cert> -H hearth-dev:1.0
    /// -e stable,copy2 -q stable,copy1 -q stable,copy2` and waits until both
    /// sockets accept connections.
    pub fn start() -> Daemon {
        Daemon::start_with_args::<&str>(&[])
    }

    /// [`start`](Self::start) with more arguments for swupdate, e.g.
    /// `["-N", "2.0.0"]`.
    pub fn start_with_args<S: Into<std::ffi::OsString> + Clone>(args: &[S]) -> Daemon {
        let pki = tempfile::Builder::new()
            .prefix("swupdate-rs-pki-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let trusted = Signer::generate(pki.path(), "hearth-test-signer");
        let inner = swupdate_testkit::Daemon::builder(&trusted.cert)
            .hardware(BOARD, REVISION)
            .slot_size(SLOT_SIZE)
            .temp_dir(env!("CARGO_TARGET_TMPDIR"))
            .prefix("swupdate-rs-")
            .args(args.iter().cloned())
            .start();
        Daemon {
            inner,
            trusted,
            _pki: pki,
        }
    }

    /// Builds a signed `.swu`: cpio `crc` format with `sw-description`
    /// first, `sw-description.sig` second, then the image; a sha256 for the
    /// image; copy1 writes slot A, copy2 slot B, each with bootenv entries.
    pub fn build_swu(&self, spec: &SwuSpec<'_>) -> Vec<u8> {
        let work = tempfile::tempdir_in(self.root()).unwrap();
        let w = work.path();
        fs::write(w.join("rootfs.img"), spec.image).unwrap();
        let sha = sha256_hex(spec.image);
        let direct = if spec.installed_directly {
            "installed-directly = true; "
        } else {
            ""
        };
        let copy = |slot: &Path, part: u32| {
            format!(
                r#"{{ images: ( {{ filename = "rootfs.img"; device = "{}"; type = "raw"; {direct}sha256 = "{sha}"; }} );
             bootenv: ( {{ name = "rootpart"; value = "{part}"; }}, {{ name = "upgrade_available"; value = "1"; }} ); }}"#,
                slot.display()
            )
        };
        let desc = format!(
            "software = {{\n  version = \"{}\";\n  hardware-compatibility: [ \"{REVISION}\" ];\n  stable = {{\n    copy1: {};\n    copy2: {};\n  }};\n}}\n",
            spec.version,
            copy(&self.slot_a, 2),
            copy(&self.slot_b, 3),
        );
        fs::write(w.join("sw-description"), desc).unwrap();
        run(Command::new("openssl")
            .args(["cms", "-sign", "-in"])
            .arg(w.join("sw-description"))
            .arg("-out")
            .arg(w.join("sw-description.sig"))
            .arg("-signer")
            .arg(&spec.signer.cert)
            .arg("-inkey")
            .arg(&spec.signer.key)
            .args(["-outform", "DER", "-nosmimecap", "-binary"]));
        if spec.tamper_after_signing {
            let signed = fs::read_to_string(w.join("sw-description")).unwrap();
            let forged = signed.replace(
                &format!("version = \"{}\"", spec.version),
                "version = \"99.0.0\"",
            );
            assert_ne!(signed, forged);
            fs::write(w.join("sw-description"), forged).unwrap();
        }
        let mut cpio = Command::new("cpio")
            .args(["-o", "-H", "crc", "--quiet"])
            .current_dir(w)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        cpio.stdin
            .take()
            .unwrap()
            .write_all(b"sw-description\nsw-description.sig\nrootfs.img\n")
            .unwrap();
        let out = cpio.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "cpio failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// A deterministic pseudo-random image (no RNG dependency): every byte
/// differs from the slot fill often enough to catch partial writes.
pub fn test_image(seed: u32) -> Vec<u8> {
    swupdate_testkit::image(seed, SLOT_SIZE)
}

/// Position of the first copy of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

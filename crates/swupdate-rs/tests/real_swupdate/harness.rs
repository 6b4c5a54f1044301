//! Runs the real Debian `swupdate` (2022.12) in isolation for the tests.
//!
//! That build has its socket paths and the GRUB environment path compiled
//! in (`strings /usr/bin/swupdate`: `/tmp/sockinstctrl`, `/tmp/swupdateprog`,
//! `/boot/grub/grubenv`), and `$TMPDIR` does not move them. So each daemon
//! runs in its own mount namespace (`unshare --mount`) where a private
//! directory is bind-mounted over `/tmp` and another over `/boot`. The host's
//! `/tmp` and `/boot` are never written; the sockets appear in the private
//! directory, where the test connects to them from outside the namespace.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use swupdate_rs::{Client, ClientConfig};

/// Board and revision the daemon runs as (`-H`), matched by the
/// `hardware-compatibility` of the test `.swu`.
pub const BOARD: &str = "hearth-dev";
pub const REVISION: &str = "1.0";
/// Size of each slot file and of the test image.
pub const SLOT_SIZE: usize = 256 * 1024;
/// Byte the slots are filled with before a test, to see any write.
pub const SLOT_FILL: u8 = 0x5a;

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

/// One isolated swupdate daemon with file-backed slots and a GRUB env file.
pub struct Daemon {
    child: Child,
    pub root: tempfile::TempDir,
    pub client: Client,
    pub slot_a: PathBuf,
    pub slot_b: PathBuf,
    pub grubenv: PathBuf,
    pub trusted: Signer,
    log: PathBuf,
}

impl Daemon {
    /// Starts `swupdate -v -B grub -k <test cert> -H hearth-dev:1.0
    /// -e stable,copy2 -q stable,copy1 -q stable,copy2` and waits until both
    /// sockets accept connections.
    pub fn start() -> Daemon {
        let root = tempfile::Builder::new()
            .prefix("swupdate-rs-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let dir = root.path();
        let (tmp, boot, slots, pki) = (
            dir.join("tmp"),
            dir.join("boot"),
            dir.join("slots"),
            dir.join("pki"),
        );
        for d in [&tmp, &boot.join("grub"), &slots, &pki] {
            fs::create_dir_all(d).unwrap();
        }
        let slot_a = slots.join("a.img");
        let slot_b = slots.join("b.img");
        fs::write(&slot_a, vec![SLOT_FILL; SLOT_SIZE]).unwrap();
        fs::write(&slot_b, vec![SLOT_FILL; SLOT_SIZE]).unwrap();
        // An empty GRUB environment block: fixed 1024 bytes, '#'-padded.
        let grubenv = boot.join("grub/grubenv");
        let mut env = b"# GRUB Environment Block\n".to_vec();
        env.resize(1024, b'#');
        fs::write(&grubenv, env).unwrap();
        // 2022.12 insists on a `globals` section when -f is given; an own
        // file keeps a host /etc/swupdate.cfg out of the test.
        let cfg = dir.join("swupdate.cfg");
        fs::write(&cfg, "globals: {\n  verbose = true;\n};\n").unwrap();
        let trusted = Signer::generate(&pki, "hearth-test-signer");
        let log = dir.join("swupdate.log");
        let log_file = fs::File::create(&log).unwrap();

        let mut cmd = Command::new("unshare");
        if !is_root() {
            // Unprivileged: a user namespace grants the mount rights.
            cmd.args(["--user", "--map-root-user"]);
        }
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount --bind "$1" /tmp && mount --bind "$2" /boot && shift 2 && exec swupdate "$@""#)
            .arg("sh")
            .arg(&tmp)
            .arg(&boot)
            .args(["-v", "-f"])
            .arg(&cfg)
            .arg("-k")
            .arg(&trusted.cert)
            .args(["-B", "grub", "-H"])
            .arg(format!("{BOARD}:{REVISION}"))
            .args(["-e", "stable,copy2", "-q", "stable,copy1", "-q", "stable,copy2"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            // Own process group, so Drop can kill swupdate's children too.
            .process_group(0);
        let child = cmd.spawn().expect("cannot start unshare/swupdate");

        let config = ClientConfig {
            io_timeout: Duration::from_secs(10),
            install_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(50),
            ..ClientConfig::in_dir(&tmp)
        };
        let mut daemon = Daemon {
            child,
            client: Client::new(config),
            slot_a,
            slot_b,
            grubenv,
            trusted,
            log,
            root,
        };
        daemon.wait_ready();
        daemon
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let cfg = self.client.config().clone();
        loop {
            let ctrl = std::os::unix::net::UnixStream::connect(&cfg.control_socket).is_ok();
            let prog = std::os::unix::net::UnixStream::connect(&cfg.progress_socket).is_ok();
            if ctrl && prog {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("swupdate exited early ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "swupdate's sockets did not appear:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// swupdate's output so far (for assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `key=value` lines of the GRUB environment file.
    pub fn grubenv_vars(&self) -> Vec<(String, String)> {
        let env = fs::read(&self.grubenv).unwrap();
        assert_eq!(env.len(), 1024, "grubenv must stay 1024 bytes");
        String::from_utf8_lossy(&env)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    pub fn grubenv_var(&self, key: &str) -> Option<String> {
        self.grubenv_vars()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Builds a signed `.swu`: cpio `crc` format with `sw-description`
    /// first, `sw-description.sig` second, then the image; a sha256 for the
    /// image; copy1 writes slot A, copy2 slot B, each with bootenv entries.
    pub fn build_swu(&self, spec: &SwuSpec<'_>) -> Vec<u8> {
        let work = tempfile::tempdir_in(self.root.path()).unwrap();
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

    /// Slot contents.
    pub fn slot(&self, path: &Path) -> Vec<u8> {
        fs::read(path).unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Kill the whole group (swupdate forks helper processes), even when
        // the test panicked; the mount namespace goes away with them.
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        if std::thread::panicking() {
            println!("---- swupdate log ----\n{}", self.log());
        }
    }
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// A deterministic pseudo-random image (no RNG dependency): every byte
/// differs from the slot fill often enough to catch partial writes.
pub fn test_image(seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..SLOT_SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Position of the first copy of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

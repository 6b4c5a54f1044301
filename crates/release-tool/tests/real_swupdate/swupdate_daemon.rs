//! Runs the real Debian `swupdate` (2022.12) in isolation.
//!
//! The same approach as `crates/swupdate-rs/tests/real_swupdate/harness.rs`
//! (private mount namespace with its own /tmp and /boot, file-backed
//! slots, a GRUB environment file), but with the trust certificate and
//! the board/revision chosen by the caller, which that harness fixes.
//! Both should move into one shared test-support crate (see the report of
//! issue 5); until then this is a trimmed adaptation, not a second design.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use swupdate_rs::{Client, ClientConfig};

/// Bytes the slots are filled with before a test, to see any write.
pub const SLOT_FILL: u8 = 0x5a;

/// One isolated swupdate daemon running as `board:revision` on slot A
/// (`-e stable,copy2`: it writes slot B).
pub struct Daemon {
    child: Child,
    // Kept for its Drop: the private directory lives as long as the daemon.
    _root: tempfile::TempDir,
    pub client: Client,
    pub slot_a: PathBuf,
    pub slot_b: PathBuf,
    grubenv: PathBuf,
    log: PathBuf,
}

impl Daemon {
    pub fn start(trust_cert: &Path, board: &str, revision: &str, slot_size: usize) -> Daemon {
        let root = tempfile::Builder::new()
            .prefix("hearth-release-swupdate-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let dir = root.path();
        let (tmp, boot, slots) = (dir.join("tmp"), dir.join("boot"), dir.join("slots"));
        for d in [&tmp, &boot.join("grub"), &slots] {
            fs::create_dir_all(d).unwrap();
        }
        let slot_a = slots.join("a.img");
        let slot_b = slots.join("b.img");
        fs::write(&slot_a, vec![SLOT_FILL; slot_size]).unwrap();
        fs::write(&slot_b, vec![SLOT_FILL; slot_size]).unwrap();
        let grubenv = boot.join("grub/grubenv");
        let mut env = b"# GRUB Environment Block\n".to_vec();
        env.resize(1024, b'#');
        fs::write(&grubenv, env).unwrap();
        let cfg = dir.join("swupdate.cfg");
        fs::write(&cfg, "globals: {\n  verbose = true;\n};\n").unwrap();
        let log = dir.join("swupdate.log");
        let log_file = fs::File::create(&log).unwrap();

        let mut cmd = Command::new("unshare");
        if !is_root() {
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
            .arg(trust_cert)
            .args(["-B", "grub", "-H"])
            .arg(format!("{board}:{revision}"))
            .args(["-e", "stable,copy2", "-q", "stable,copy1", "-q", "stable,copy2"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .process_group(0);
        let child = cmd.spawn().expect("cannot start unshare/swupdate");
        let config = ClientConfig {
            io_timeout: Duration::from_secs(10),
            install_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(50),
            ..ClientConfig::in_dir(&tmp)
        };
        let mut d = Daemon {
            child,
            _root: root,
            client: Client::new(config),
            slot_a,
            slot_b,
            grubenv,
            log,
        };
        d.wait_ready();
        d
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
                "swupdate did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn grubenv_var(&self, key: &str) -> Option<String> {
        let env = fs::read(&self.grubenv).unwrap();
        String::from_utf8_lossy(&env)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_owned())
    }

    pub fn slot_b_untouched(&self) -> bool {
        fs::read(&self.slot_b)
            .unwrap()
            .iter()
            .all(|&b| b == SLOT_FILL)
    }

    /// Nothing written to either slot and the boot environment not armed.
    pub fn assert_untouched(&self, case: &str) {
        assert!(self.slot_b_untouched(), "{case}: slot B was written");
        assert!(
            fs::read(&self.slot_a)
                .unwrap()
                .iter()
                .all(|&b| b == SLOT_FILL),
            "{case}: slot A was written"
        );
        assert_eq!(
            self.grubenv_var("hearth_slot"),
            None,
            "{case}: boot env was armed"
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- swupdate log ----\n{}", self.log());
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

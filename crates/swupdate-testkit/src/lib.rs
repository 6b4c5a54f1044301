//! Test support (dev-dependency only): runs the real Debian `swupdate`
//! (2022.12) in isolation, with file-backed A/B slots and a GRUB
//! environment file, and hands out a [`swupdate_rs::Client`] for it.
//!
//! The Debian build puts its sockets (`sockinstctrl`, `swupdateprog`) in
//! `$TMPDIR`, so each daemon gets a private `$TMPDIR`. Its GRUB environment
//! path, `/boot/grub/grubenv`, is compiled in, so each daemon runs in its own
//! mount namespace (`unshare --mount`, with `--user --map-root-user` when not
//! root) where a private directory is bind-mounted over `/boot`. The host's
//! `/boot` is never written; the sockets appear in the private directory,
//! where the test connects to them from outside the namespace. `/tmp` is not
//! touched, so the test's own files may live anywhere, a clone under `/tmp`
//! included.
//!
//! ```no_run
//! # fn main() {
//! let d = swupdate_testkit::Daemon::builder("root.cert.pem")
//!     .hardware("HRH-1", "A")
//!     .slot_size(256 * 1024)
//!     .start();
//! // ... d.client.install(...) ...
//! d.assert_untouched("a refused release");
//! # }
//! ```
//!
//! Needs `swupdate`, `unshare` (util-linux) and `mount` on the host.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::ffi::OsString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use swupdate_rs::{Client, ClientConfig};

/// Byte the slots are filled with before a test, to see any write.
pub const SLOT_FILL: u8 = 0x5a;

/// A deterministic pseudo-random image of `size` bytes (no RNG
/// dependency): incompressible, and unlike [`SLOT_FILL`] often enough to
/// show a partial write.
pub fn image(seed: u32, size: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// The layer's GRUB environment of a new device.
const GRUBENV_DEFAULTS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../yocto-layer/meta-hearth-bsp/recipes-bsp/hearth-grub/files/grubenv.defaults"
));

/// The selection arguments every daemon gets unless replaced with
/// [`DaemonBuilder::selection_args`]: it runs "on slot A" (`-e
/// stable,copy2` writes slot B) and accepts both copies over IPC.
pub const DEFAULT_SELECTION_ARGS: [&str; 6] = [
    "-e",
    "stable,copy2",
    "-q",
    "stable,copy1",
    "-q",
    "stable,copy2",
];

/// How to start a [`Daemon`].
#[derive(Debug, Clone)]
pub struct DaemonBuilder {
    trust_cert: PathBuf,
    board: String,
    revision: String,
    slot_size: usize,
    selection_args: Vec<OsString>,
    extra_args: Vec<OsString>,
    temp_dir: PathBuf,
    prefix: String,
    install_timeout: Duration,
}

impl DaemonBuilder {
    /// `-H board:revision` (default `hearth-dev:1.0`).
    pub fn hardware(mut self, board: &str, revision: &str) -> Self {
        self.board = board.to_owned();
        self.revision = revision.to_owned();
        self
    }

    /// Size of each slot file in bytes (default 256 KiB).
    pub fn slot_size(mut self, bytes: usize) -> Self {
        self.slot_size = bytes;
        self
    }

    /// Replaces [`DEFAULT_SELECTION_ARGS`].
    pub fn selection_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.selection_args = args.into_iter().map(Into::into).collect();
        self
    }

    /// More `swupdate` arguments, after the standard ones.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Where the private directory is made (default: the system temp dir;
    /// tests pass `env!("CARGO_TARGET_TMPDIR")`).
    pub fn temp_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.temp_dir = dir.into();
        self
    }

    /// Name prefix of the private directory.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// How long the client waits for an installation's result (default 60 s).
    pub fn install_timeout(mut self, timeout: Duration) -> Self {
        self.install_timeout = timeout;
        self
    }

    /// Starts `swupdate -v -f <own cfg> -k <trust cert> -B grub -H
    /// board:revision <selection args> <extra args>` and waits until both
    /// sockets accept connections.
    pub fn start(self) -> Daemon {
        let setup = self.prepare();
        let log_file = fs::File::create(&setup.log).unwrap();
        let mut cmd = self.command(&setup, &[]);
        cmd.stdout(log_file.try_clone().unwrap()).stderr(log_file);
        let child = cmd.spawn().expect("cannot start unshare/swupdate");
        let config = ClientConfig {
            io_timeout: Duration::from_secs(10),
            install_timeout: self.install_timeout,
            poll_interval: Duration::from_millis(50),
            ..ClientConfig::in_dir(&setup.tmp)
        };
        let mut daemon = Daemon {
            child,
            root: setup.root,
            client: Client::new(config),
            slot_a: setup.slot_a,
            slot_b: setup.slot_b,
            grubenv: setup.grubenv,
            log: setup.log,
        };
        daemon.wait_ready();
        daemon
    }

    /// The same set-up as [`start`](Self::start) without a daemon, for
    /// running `swupdate ... -i <swu>` once ([`OneShot::install`]), e.g. to
    /// compare against an installation through the daemon.
    pub fn one_shot(self) -> OneShot {
        let setup = self.prepare();
        OneShot {
            builder: self,
            setup,
        }
    }

    /// The private directory: slots filled with [`SLOT_FILL`], an empty
    /// 1024-byte GRUB environment block, an own swupdate.cfg.
    fn prepare(&self) -> Setup {
        fs::create_dir_all(&self.temp_dir).unwrap();
        let root = tempfile::Builder::new()
            .prefix(&self.prefix)
            .tempdir_in(&self.temp_dir)
            .unwrap();
        let dir = root.path();
        let (tmp, boot, slots) = (dir.join("tmp"), dir.join("boot"), dir.join("slots"));
        for d in [&tmp, &boot.join("grub"), &slots] {
            fs::create_dir_all(d).unwrap();
        }
        let slot_a = slots.join("a.img");
        let slot_b = slots.join("b.img");
        fs::write(&slot_a, vec![SLOT_FILL; self.slot_size]).unwrap();
        fs::write(&slot_b, vec![SLOT_FILL; self.slot_size]).unwrap();
        // The environment block of a new device: the layer's defaults in
        // GRUB's fixed 1024 bytes, '#'-padded, one header line (as the
        // image build writes it).
        let grubenv = boot.join("grub/grubenv");
        let mut env = b"# GRUB Environment Block\n".to_vec();
        for line in GRUBENV_DEFAULTS.lines() {
            if !line.starts_with('#') && !line.trim().is_empty() {
                env.extend_from_slice(line.as_bytes());
                env.push(b'\n');
            }
        }
        env.resize(1024, b'#');
        fs::write(&grubenv, env).unwrap();
        // 2022.12 insists on a `globals` section when -f is given; an own
        // file keeps a host /etc/swupdate.cfg out of the test.
        let cfg = dir.join("swupdate.cfg");
        fs::write(&cfg, "globals: {\n  verbose = true;\n};\n").unwrap();
        Setup {
            log: dir.join("swupdate.log"),
            root,
            tmp,
            boot,
            cfg,
            slot_a,
            slot_b,
            grubenv,
        }
    }

    fn command(&self, setup: &Setup, more: &[OsString]) -> Command {
        self.command_trusting(setup, None, more)
    }

    /// [`command`](Self::command); with `ca_bundle`, that file is also
    /// bound over the system CA bundle, which SWUpdate's downloader (libcurl)
    /// trusts.
    fn command_trusting(
        &self,
        setup: &Setup,
        ca_bundle: Option<&Path>,
        more: &[OsString],
    ) -> Command {
        let mut cmd = Command::new("unshare");
        if !is_root() {
            // Unprivileged: a user namespace grants the mount rights.
            cmd.args(["--user", "--map-root-user"]);
        }
        // Debian's swupdate puts its sockets and scratch files in $TMPDIR,
        // so only /boot (the grubenv path compiled into it) needs a private
        // mount. /tmp stays as it is: the test's files may live under it.
        cmd.env("TMPDIR", &setup.tmp)
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount --bind "$1" /boot && shift && if [ "$1" != - ]; then mount --bind "$1" /etc/ssl/certs/ca-certificates.crt; fi && shift && exec swupdate "$@""#)
            .arg("sh")
            .arg(&setup.boot)
            .arg(ca_bundle.map_or_else(|| OsString::from("-"), OsString::from))
            .args(["-v", "-f"])
            .arg(&setup.cfg)
            .arg("-k")
            .arg(&self.trust_cert)
            .args(["-B", "grub", "-H"])
            .arg(format!("{}:{}", self.board, self.revision))
            .args(&self.selection_args)
            .args(&self.extra_args)
            .args(more)
            .stdin(Stdio::null())
            // Own process group, so Drop can kill swupdate's children too.
            .process_group(0);
        cmd
    }
}

#[derive(Debug)]
struct Setup {
    root: tempfile::TempDir,
    tmp: PathBuf,
    boot: PathBuf,
    cfg: PathBuf,
    slot_a: PathBuf,
    slot_b: PathBuf,
    grubenv: PathBuf,
    log: PathBuf,
}

/// What swupdate logs once the installation has succeeded.
const SUCCEEDED: &str = "SWUPDATE successful";

/// How long a one-shot swupdate took, from its start (its start-up
/// included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// To its exit.
    pub exited: Duration,
    /// To the log line that says the installation succeeded (within a few
    /// milliseconds). The exit can come a second later: swupdate's main
    /// thread and `-d`'s downloader wait for the result with `sleep(1)`
    /// ("Main thread sleep again !"), so `exited` measures that poll too.
    pub installed: Duration,
}

/// A prepared set-up for `swupdate -i` ([`DaemonBuilder::one_shot`]); its
/// directory (and slots) lives as long as this value.
#[derive(Debug)]
pub struct OneShot {
    builder: DaemonBuilder,
    setup: Setup,
}

impl OneShot {
    /// The file slot A is backed by.
    pub fn slot_a(&self) -> &Path {
        &self.setup.slot_a
    }

    /// The file slot B is backed by.
    pub fn slot_b(&self) -> &Path {
        &self.setup.slot_b
    }

    /// The private directory.
    pub fn root(&self) -> &Path {
        self.setup.root.path()
    }

    /// swupdate's output of the last [`install`](Self::install).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.setup.log).unwrap_or_default()
    }

    /// Runs `swupdate <standard args> -i <swu>` and waits for it to exit.
    /// Returns its [`Timing`] (start-up included), or its log if it failed.
    pub fn install(&self, swu: &Path) -> Result<Timing, String> {
        let cmd = self
            .builder
            .command(&self.setup, &[OsString::from("-i"), swu.into()]);
        self.run(cmd)
    }

    /// Runs `swupdate <standard args> -d "-u <url>"`: SWUpdate's own
    /// downloader (libcurl) fetches and installs, trusting only
    /// `ca_bundle`. Returns its [`Timing`], or its log if it failed.
    pub fn download(&self, url: &str, ca_bundle: &Path) -> Result<Timing, String> {
        let cmd = self.builder.command_trusting(
            &self.setup,
            Some(ca_bundle),
            &[OsString::from("-d"), OsString::from(format!("-u {url}"))],
        );
        self.run(cmd)
    }

    fn run(&self, mut cmd: Command) -> Result<Timing, String> {
        let log_file = fs::File::create(&self.setup.log).unwrap();
        cmd.stdout(log_file.try_clone().unwrap()).stderr(log_file);
        let started = Instant::now();
        let mut child = cmd.spawn().expect("cannot start unshare/swupdate");
        let mut installed = None;
        let status = loop {
            if let Some(status) = child.try_wait().expect("cannot wait for swupdate") {
                break status;
            }
            if installed.is_none() && self.log().contains(SUCCEEDED) {
                installed = Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let exited = started.elapsed();
        if status.success() {
            Ok(Timing {
                exited,
                // Logged between the last look and the exit: the exit's
                // time is the closest bound left.
                installed: installed.unwrap_or(exited),
            })
        } else {
            let log = fs::read_to_string(&self.setup.log).unwrap_or_default();
            Err(format!("{log}\n(swupdate ended: {status})"))
        }
    }
}

/// One isolated swupdate daemon with file-backed slots and a GRUB
/// environment file. Dropping it kills swupdate (and its helpers) and
/// removes the private directory.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    root: tempfile::TempDir,
    /// A client for this daemon's sockets.
    pub client: Client,
    /// The file slot A is backed by (`copy1` writes it).
    pub slot_a: PathBuf,
    /// The file slot B is backed by (`copy2` writes it).
    pub slot_b: PathBuf,
    /// The GRUB environment block (`/boot/grub/grubenv` inside).
    pub grubenv: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// A builder for a daemon trusting `trust_cert` (`-k`).
    pub fn builder(trust_cert: impl Into<PathBuf>) -> DaemonBuilder {
        DaemonBuilder {
            trust_cert: trust_cert.into(),
            board: "hearth-dev".into(),
            revision: "1.0".into(),
            slot_size: 256 * 1024,
            selection_args: DEFAULT_SELECTION_ARGS.iter().map(Into::into).collect(),
            extra_args: Vec::new(),
            temp_dir: std::env::temp_dir(),
            prefix: "swupdate-testkit-".into(),
            install_timeout: Duration::from_secs(60),
        }
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

    /// The private directory (scratch space that lives as long as the daemon).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// swupdate's process id (the `unshare` wrapper execs into it via `sh`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// swupdate's output so far (for assertion messages).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `key=value` lines of the GRUB environment file.
    pub fn grubenv_vars(&self) -> Vec<(String, String)> {
        let env = fs::read(&self.grubenv).unwrap();
        assert_eq!(env.len(), 1024, "grubenv must stay 1024 bytes");
        let vars: Vec<(String, String)> = String::from_utf8_lossy(&env)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        // GRUB reads the last of two equal names, SWUpdate the first: a
        // duplicate means the two disagree about the slot to boot.
        for (i, (name, _)) in vars.iter().enumerate() {
            assert!(
                !vars[..i].iter().any(|(n, _)| n == name),
                "grubenv holds {name} twice: {vars:?}"
            );
        }
        vars
    }

    /// One variable of the GRUB environment file.
    pub fn grubenv_var(&self, key: &str) -> Option<String> {
        self.grubenv_vars()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Slot contents.
    pub fn slot(&self, path: &Path) -> Vec<u8> {
        fs::read(path).unwrap()
    }

    /// True while every byte of `path` is still [`SLOT_FILL`].
    pub fn slot_is_untouched(&self, path: &Path) -> bool {
        self.slot(path).iter().all(|&b| b == SLOT_FILL)
    }

    /// True while slot B holds nothing but [`SLOT_FILL`].
    pub fn slot_b_untouched(&self) -> bool {
        self.slot_is_untouched(&self.slot_b)
    }

    /// The boot environment does not switch slots: `hearth_slot` still A
    /// (the Hearth template), no `rootpart` (the swupdate-rs test
    /// template), no `ustate=1` (a slot on trial).
    pub fn assert_not_armed(&self, case: &str) {
        assert_eq!(
            self.grubenv_var("hearth_slot").as_deref(),
            Some("A"),
            "{case}: boot env was armed"
        );
        assert_eq!(
            self.grubenv_var("rootpart"),
            None,
            "{case}: boot env was armed"
        );
        assert_ne!(
            self.grubenv_var("ustate").as_deref(),
            Some("1"),
            "{case}: boot env was armed"
        );
    }

    /// Nothing written to either slot and the boot environment not armed.
    pub fn assert_untouched(&self, case: &str) {
        assert!(self.slot_b_untouched(), "{case}: slot B was written");
        assert!(
            self.slot_is_untouched(&self.slot_a),
            "{case}: slot A was written"
        );
        self.assert_not_armed(case);
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

/// Whether this process runs as root (then no user namespace is needed).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

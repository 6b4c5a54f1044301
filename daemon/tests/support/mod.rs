//! Starting hearthd in host mode and talking HTTPS to it.
#![allow(dead_code)] // each test binary uses a different part of it

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const DEFAULTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../yocto-layer/meta-hearth/recipes-core/hearthd/files/hearth.toml"
);
pub const VENDOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../yocto-layer/meta-hearth/recipes-core/hearth-vendor/files/vendor.toml"
);

pub struct Ready {
    pub addr: SocketAddr,
    pub fingerprint: String,
    /// The setup code, when this start was a first boot.
    pub setup_code: Option<String>,
}

/// A hearthd process with its own data directory; killed on drop.
pub struct Daemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
    lines: Option<mpsc::Receiver<String>>,
    stderr: Arc<Mutex<String>>,
    exit: Option<Option<i32>>,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::with_override("")
    }

    /// Starts with the shipped defaults, a host-mode layer, then `extra`.
    pub fn with_override(extra: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let host = format!(
            "data_dir = \"{}\"\nvendor_file = \"{VENDOR}\"\n[web]\nlisten = [\"127.0.0.1:0\"]\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("host.toml"), host).expect("host layer");
        std::fs::write(dir.path().join("override.toml"), extra).expect("override layer");
        let mut daemon = Daemon {
            dir,
            child: None,
            lines: None,
            stderr: Arc::default(),
            exit: None,
        };
        daemon.spawn();
        daemon
    }

    /// `hearthd <subcommand>` with this daemon's configuration layers.
    pub fn command(&self, subcommand: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hearthd"));
        command
            .arg(subcommand)
            .args(["--config", DEFAULTS])
            .arg("--config")
            .arg(self.dir.path().join("host.toml"))
            .arg("--config")
            .arg(self.dir.path().join("override.toml"));
        command
    }

    fn spawn(&mut self) {
        let mut child = self
            .command("run")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hearthd");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let sink = self.stderr.clone();
        *sink.lock().expect("lock") = String::new();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut all = sink.lock().expect("lock");
                all.push_str(&line);
                all.push('\n');
            }
        });
        self.child = Some(child);
        self.lines = Some(rx);
        self.exit = None;
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// The log once it holds `needle`, or as it is after 10 s: a line is
    /// read from the daemon's stderr after the request that caused it has
    /// been answered.
    pub fn stderr_with(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.stderr();
            if log.contains(needle) || std::time::Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the ready line on the console and parses it.
    pub fn ready(&self) -> Ready {
        let lines = self.lines.as_ref().expect("running");
        let mut setup_code = None;
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| {
                    panic!("hearthd never became ready; stderr:\n{}", self.stderr())
                });
            if let Some(code) = line.strip_prefix("hearthd: SETUP CODE ") {
                setup_code = Some(code.trim().to_owned());
            }
            if let Some(rest) = line.strip_prefix(hearthd::READY_PREFIX) {
                let (addr, fingerprint) = rest
                    .trim()
                    .split_once(", certificate SHA-256 fingerprint ")
                    .expect("ready line");
                return Ready {
                    addr: addr.parse().expect("address"),
                    fingerprint: fingerprint.to_owned(),
                    setup_code,
                };
            }
        }
    }

    pub fn stop(&mut self, signal: Signal) {
        if let Some(child) = &self.child {
            let _ = kill(Pid::from_raw(child.id() as i32), signal);
        }
        self.wait_exit(Duration::from_secs(20));
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        if let Some(code) = self.exit {
            return code;
        }
        let child = self.child.as_mut().expect("started");
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.exit = Some(status.code());
                // Let the reader threads drain what the process wrote.
                std::thread::sleep(Duration::from_millis(50));
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "hearthd did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn exit_code(&mut self) -> Option<i32> {
        self.wait_exit(Duration::from_secs(20))
    }

    pub fn restart(&mut self) {
        self.stop(Signal::SIGKILL);
        self.spawn();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub use system_tests::https::Response;

/// One HTTPS GET that accepts the device's self-signed certificate and
/// reports its fingerprint, so the test compares it with the console's.
pub fn https_get(addr: SocketAddr, path: &str) -> Response {
    https(addr, "GET", path, &[], None)
}

/// One HTTPS request with extra headers and an optional JSON body.
pub fn https(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    system_tests::https::request(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Claims the device with `code` and `password`, waiting out the throttle
/// (earlier wrong attempts in the same test may have engaged it).
pub fn claim(addr: SocketAddr, code: &str, password: &str) -> Response {
    let body = serde_json::json!({ "setup_code": code, "password": password, "password_confirm": password })
        .to_string();
    loop {
        let response = https(addr, "POST", "/api/setup", &[], Some(&body));
        if response.status != 429 {
            return response;
        }
        let wait = response.retry_after().expect("Retry-After on 429");
        std::thread::sleep(Duration::from_secs(wait));
    }
}

/// The hearthd process of `daemon`: the one started with its host layer.
pub fn pid_of(daemon: &Daemon) -> u32 {
    let host_layer = daemon.data_dir().with_file_name("host.toml");
    let host_layer = host_layer.to_str().expect("UTF-8 temp path");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                cmdline
                    .split(|&b| b == 0)
                    .any(|arg| arg == host_layer.as_bytes())
            })
        })
        .expect("the hearthd process")
}

//! One aarch64 QEMU board behind U-Boot (`qemu/uboot-arm64 boot`,
//! `qemu/board-arm64 boot`): its serial console read from a log file, its
//! HMP monitor for a reset or a pulled plug. Shared by the U-Boot and GPIO
//! system tests.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How long one boot may take to reach a line (the kernel's root wait, or
/// with the development image hearthd's HTTPS; TCG, a loaded machine).
pub const BOOT: Duration = Duration::from_secs(180);

/// One running aarch64 QEMU (`qemu/uboot-arm64 boot`, `qemu/board-arm64
/// boot`), in its own process group, killed on drop; a failing test leaves
/// its serial log in tests/artifacts/.
#[derive(Debug)]
pub struct Board {
    label: String,
    child: Option<Child>,
    /// This machine's guest slot while the board is on.
    slot: Option<crate::guests::Slot>,
    log: PathBuf,
    stderr: PathBuf,
    monitor: PathBuf,
    started: Instant,
    /// Serial log bytes already consumed by `wait_for`.
    seen: usize,
}

impl Board {
    /// Runs `command` (a boot script writing its console to `log` and
    /// listening for HMP on `monitor`).
    pub fn launch(
        mut command: Command,
        label: &str,
        log: PathBuf,
        stderr: PathBuf,
        monitor: PathBuf,
    ) -> Board {
        let slot = crate::guests::take(label);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).expect("stderr file"))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{label}: start {command:?}: {e}"));
        eprintln!(
            "[{label}] QEMU started (pid {}), serial log {}",
            child.id(),
            log.display()
        );
        Board {
            label: label.to_owned(),
            child: Some(child),
            slot: Some(slot),
            log,
            stderr,
            monitor,
            started: Instant::now(),
            seen: 0,
        }
    }

    pub fn serial(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The serial console from the last occurrence of `marker` on.
    pub fn serial_since(&self, marker: &str) -> String {
        let serial = self.serial();
        serial
            .rfind(marker)
            .map(|at| serial[at..].to_owned())
            .unwrap_or_default()
    }

    /// Waits for a serial line containing `needle` (after what earlier waits
    /// consumed) and returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + BOOT;
        loop {
            let serial = self.serial();
            if let Some(line) = crate::next_line_with(&serial, &mut self.seen, needle) {
                eprintln!(
                    "[{}] {:5.1} s: {}",
                    self.label,
                    self.started.elapsed().as_secs_f64(),
                    line.trim_start()
                );
                return line;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "{}: QEMU ended ({status}) before the console showed {needle:?}.\n{}",
                    self.label,
                    self.diagnostics()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: the console did not show {needle:?} within {} s.\n{}",
                self.label,
                BOOT.as_secs(),
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A hardware reset of the running board (HMP `system_reset`): what the
    /// watchdog does to a trial boot that never commits.
    pub fn reset(&mut self) {
        self.monitor_command("system_reset");
        eprintln!("[{}] reset", self.label);
    }

    /// Pulls the plug (HMP `quit`) and waits for QEMU to exit.
    pub fn power_off(&mut self) {
        self.monitor_command("quit");
        let deadline = Instant::now() + Duration::from_secs(30);
        let child = self.child.as_mut().expect("board is running");
        while child.try_wait().ok().flatten().is_none() {
            assert!(
                Instant::now() < deadline,
                "{}: QEMU did not quit",
                self.label
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
        eprintln!("[{}] powered off", self.label);
    }

    pub fn monitor_command(&self, command: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let sock = loop {
            match UnixStream::connect(&self.monitor) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    panic!(
                        "{}: QEMU monitor {}: {e}",
                        self.label,
                        self.monitor.display()
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("monitor timeout");
        let mut sock = sock;
        read_until_prompt(&mut sock, &self.label);
        sock.write_all(format!("{command}\n").as_bytes())
            .expect("write to the QEMU monitor");
        if command == "quit" {
            // QEMU closes the monitor as it exits; hanging up first could
            // drop the command unread.
            let mut rest = Vec::new();
            let _ = sock.read_to_end(&mut rest);
        } else {
            read_until_prompt(&mut sock, &self.label);
        }
    }

    /// Kills QEMU and its wrapper (the whole process group) and reaps them.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
        self.slot = None;
    }

    pub fn diagnostics(&self) -> String {
        crate::boot_diagnostics("the boot script", &self.stderr, &self.serial())
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let dir = crate::artifacts_dir();
            let name = format!("{}.log", self.label.replace(['/', ' '], "-"));
            if fs::create_dir_all(&dir).is_ok() && fs::copy(&self.log, dir.join(&name)).is_ok() {
                eprintln!("[{}] serial log kept in tests/artifacts/{name}", self.label);
            }
        }
    }
}

fn read_until_prompt(sock: &mut UnixStream, label: &str) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !seen.ends_with(b"(qemu) ") {
        let n = sock
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("{label}: QEMU monitor: {e}"));
        assert!(n > 0, "{label}: QEMU monitor closed");
        seen.extend_from_slice(&buf[..n]);
    }
}

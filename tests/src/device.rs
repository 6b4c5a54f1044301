//! One running device: QEMU started through `qemu/boot`, in its own process
//! group, killed on drop.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::disk::Disk;
use crate::guests::{self, Slot};
use crate::https;

/// The line hearthd prints on the console once HTTPS is up.
pub const READY_MARKER: &str = "hearthd: HTTPS ready on ";
const FINGERPRINT_LABEL: &str = "certificate SHA-256 fingerprint ";

#[derive(Debug)]
pub struct Device {
    label: String,
    child: Option<Child>,
    /// This machine's guest slot while the device is on (see [`guests`]).
    slot: Option<Slot>,
    port: u16,
    log: PathBuf,
    boot_stderr: PathBuf,
    qmp: PathBuf,
    state: PathBuf,
    started: Instant,
    /// Serial log bytes already consumed by `wait_for`.
    seen: usize,
    /// How QEMU was started (`qemu/boot` and its arguments), to power-cycle.
    launch: Vec<std::ffi::OsString>,
    /// The console of QEMU runs before a power cycle (this run's log file
    /// continues it).
    earlier: String,
    power_cycles: u32,
    /// Console length at the last look, and since when it has stayed so.
    console_len: usize,
    console_still_since: Instant,
}

/// What a device showed when it became ready.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The fingerprint hearthd printed on the serial console.
    pub console_fingerprint: String,
    /// From QEMU start to the console line.
    pub console_after: Duration,
    /// From QEMU start to the first 200 answer of /healthz.
    pub https_after: Duration,
    /// The /healthz answer (its `fingerprint` is the certificate presented).
    pub health: HealthAnswer,
}

#[derive(Debug, Clone)]
pub struct HealthAnswer {
    pub status: u16,
    pub body: String,
    pub fingerprint: String,
}

impl Device {
    /// Boots `disk`; `label` names this boot's serial log (`serial-<label>.log`).
    pub fn boot(disk: &Disk, label: &str) -> Device {
        Device::boot_with(disk, label, &[])
    }

    /// [`Device::boot_with`], the guest's RTC starting at `rtc_base`
    /// (`qemu/boot --rtc-base`, e.g. `2025-12-06T12:00:00`).
    pub fn boot_with_rtc(disk: &Disk, label: &str, extra: &[&str], rtc_base: &str) -> Device {
        let mut extra = extra.to_vec();
        extra.extend(["--rtc-base", rtc_base]);
        Device::boot_with(disk, label, &extra)
    }

    /// Boots with extra `qemu/boot` arguments.
    pub fn boot_with(disk: &Disk, label: &str, extra: &[&str]) -> Device {
        let port = crate::free_port();
        let log = disk.dir().join(format!("serial-{label}.log"));
        let boot_stderr = disk.dir().join(format!("boot-{label}.stderr"));
        let mut launch: Vec<std::ffi::OsString> = vec![
            "--no-build".into(),
            "--image".into(),
            disk.image().into(),
            "--state-dir".into(),
            disk.dir().into(),
            "--port".into(),
            port.to_string().into(),
            "--log".into(),
            log.clone().into(),
            "--exit-with-parent".into(),
        ];
        launch.extend(extra.iter().map(Into::into));
        let slot = guests::take(&format!("{}/{label}", disk.name()));
        let child = spawn(&launch, &boot_stderr);
        eprintln!(
            "[{}] {label}: QEMU started (pid {}), HTTPS on 127.0.0.1:{port}, serial log {}",
            disk.name(),
            child.id(),
            log.display()
        );
        Device {
            label: format!("{}/{label}", disk.name()),
            child: Some(child),
            slot: Some(slot),
            port,
            log,
            boot_stderr,
            qmp: disk.dir().join("qmp.sock"),
            state: disk.dir().to_path_buf(),
            started: Instant::now(),
            seen: 0,
            launch,
            earlier: String::new(),
            power_cycles: 0,
            console_len: 0,
            console_still_since: Instant::now(),
        }
    }

    /// Kills QEMU and starts it again on the same disk, port and console
    /// (what a board's hardware watchdog or its owner does to a hung device).
    /// The device keeps its guest slot: nothing else starts in between.
    fn power_cycle(&mut self) {
        self.earlier = self.serial();
        self.reap();
        self.power_cycles += 1;
        self.child = Some(spawn(&self.launch, &self.boot_stderr));
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// The serial console so far (across power cycles).
    pub fn serial(&self) -> String {
        let now = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        format!("{}{now}", self.earlier)
    }

    /// Waits for a serial line containing `needle` (after what earlier waits
    /// consumed) and returns it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let serial = self.tend();
            if let Some(line) = crate::next_line_with(&serial, &mut self.seen, needle) {
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
            if Instant::now() > deadline {
                panic!(
                    "{}: the console did not show {needle:?} within {} s.\n{}",
                    self.label,
                    timeout.as_secs(),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Looks after QEMU while a test waits for the device: returns the
    /// console so far. QEMU 7.2 under TCG sometimes never comes back from
    /// the guest's reset: the console stops at "reboot: machine restart"
    /// (no firmware output follows), or in the firmware or GRUB right
    /// after it, and a QMP system_reset does not help either (seen in CI).
    /// After 90 s of that this power-cycles QEMU, as a board's watchdog or
    /// its owner would, and says so; a boot path that hangs every time
    /// (a broken ESP, say) fails the test at the fourth hang. Every wait
    /// that spans a reboot must call this (every [`Device::wait_for`] does).
    pub fn tend(&mut self) -> String {
        let serial = self.serial();
        if serial.len() != self.console_len {
            self.console_len = serial.len();
            self.console_still_since = Instant::now();
        } else if let Some(at) = stalled_on_the_way_up(&serial)
            && self.console_still_since.elapsed() > Duration::from_secs(90)
        {
            eprintln!(
                "{}: the console stood still at {at:?} for 90 s; power-cycling QEMU (QEMU bug, see README)",
                self.label
            );
            assert!(
                self.power_cycles < 3,
                "{}: QEMU hung after a reboot for the 4th time",
                self.label
            );
            self.power_cycle();
            self.console_still_since = Instant::now();
        }
        serial
    }

    /// Waits for hearthd's ready line, then for `/healthz` to answer over the
    /// forwarded port.
    pub fn wait_ready(&mut self) -> Ready {
        let console_fingerprint = self.wait_console_ready();
        let console_after = self.started.elapsed();
        let health = self.wait_healthy();
        let https_after = self.started.elapsed();
        eprintln!(
            "{}: ready: console after {:.1} s, HTTPS after {:.1} s, fingerprint {console_fingerprint}",
            self.label,
            console_after.as_secs_f64(),
            https_after.as_secs_f64()
        );
        Ready {
            console_fingerprint,
            console_after,
            https_after,
            health: HealthAnswer {
                status: health.status,
                body: health.body,
                fingerprint: health.fingerprint,
            },
        }
    }

    /// Waits for hearthd's next ready line on the console; returns the
    /// fingerprint it shows.
    pub fn wait_console_ready(&mut self) -> String {
        let line = self.wait_for(READY_MARKER, crate::boot_timeout());
        crate::console_fingerprint(&line, FINGERPRINT_LABEL).unwrap_or_else(|| {
            panic!(
                "{}: the ready line has no fingerprint in hearthd's format: {line:?}",
                self.label
            )
        })
    }

    /// Waits (up to a minute) for `/healthz` to answer 200 over the forward.
    pub fn wait_healthy(&mut self) -> https::Response {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match https::get(self.port, "/healthz") {
                Ok(r) if r.status == 200 => return r,
                Ok(r) if Instant::now() > deadline => {
                    panic!(
                        "{}: /healthz answered {} {:?}",
                        self.label, r.status, r.body
                    )
                }
                Err(e) if Instant::now() > deadline => {
                    panic!(
                        "{}: /healthz did not answer over HTTPS: {e}\n{}",
                        self.label,
                        self.diagnostics()
                    )
                }
                _ => std::thread::sleep(Duration::from_secs(1)),
            }
        }
    }

    /// Presses the ACPI power button (QMP `system_powerdown`) and waits until
    /// the guest has shut down and QEMU has exited.
    pub fn powerdown(&mut self) {
        self.qmp("system_powerdown");
        let deadline = Instant::now() + Duration::from_secs(180);
        let child = self.child.as_mut().expect("device is running");
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    assert!(
                        status.success(),
                        "{}: QEMU exited with {status} after power-down",
                        self.label
                    );
                    self.slot = None;
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(500))
                }
                _ => panic!(
                    "{}: the device did not power down within 180 s of the power button.\n{}",
                    self.label,
                    self.diagnostics()
                ),
            }
        }
        self.reap();
        eprintln!("{}: powered down cleanly", self.label);
    }

    /// Sends one QMP command (no arguments) and waits for its answer.
    pub fn qmp(&self, command: &str) {
        let sock = UnixStream::connect(&self.qmp)
            .unwrap_or_else(|e| panic!("{}: QMP socket {}: {e}", self.label, self.qmp.display()));
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("QMP timeout");
        let mut reader = BufReader::new(sock.try_clone().expect("QMP socket"));
        let mut writer = sock;
        let mut line = String::new();
        reader.read_line(&mut line).expect("QMP greeting");
        for cmd in ["qmp_capabilities", command] {
            writeln!(writer, "{{\"execute\":\"{cmd}\"}}").expect("QMP write");
            loop {
                line.clear();
                reader.read_line(&mut line).expect("QMP answer");
                assert!(!line.is_empty(), "{}: QMP closed during {cmd}", self.label);
                assert!(
                    !line.contains("\"error\""),
                    "{}: QMP {cmd} failed: {line}",
                    self.label
                );
                if line.contains("\"return\"") {
                    break;
                }
            }
        }
    }

    /// Presses the device's reset control (`qemu/boot --factory-reset`:
    /// hot-plugs the host-only HEARTH-RESET drive).
    pub fn press_reset(&self) {
        let out = Command::new(crate::repo_root().join("qemu/boot"))
            .arg("--factory-reset")
            .arg("--state-dir")
            .arg(&self.state)
            .output()
            .expect("run qemu/boot --factory-reset");
        assert!(
            out.status.success(),
            "{}: pressing the reset control failed: {}",
            self.label,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Kills QEMU at once (a power cut) and gives its guest slot back.
    pub fn kill(&mut self) {
        self.reap();
        self.slot = None;
    }

    fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
            // qemu/boot's helper processes share the group; end them too.
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// qemu/boot's stderr and the last console lines, for a failure message.
    pub fn diagnostics(&self) -> String {
        crate::boot_diagnostics("qemu/boot", &self.boot_stderr, &self.serial())
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where a reboot can stand still for good under QEMU 7.2's TCG: the
/// console's last line, without colour codes, when it is one of these
/// (each is followed within seconds by more output on a boot that works).
fn stalled_on_the_way_up(serial: &str) -> Option<&'static str> {
    const STEPS: [&str; 3] = [
        "reboot: machine restart",
        "BdsDxe: starting Boot",
        "Welcome to GRUB!",
    ];
    let last = serial
        .lines()
        .map(strip_ansi_escapes::strip_str)
        .rfind(|line| !line.trim().is_empty())?;
    STEPS.into_iter().find(|step| last.contains(step))
}

/// Starts `qemu/boot ARGS`, in its own process group so that QEMU and
/// qemu/boot's helpers die together.
fn spawn(args: &[std::ffi::OsString], stderr_file: &std::path::Path) -> Child {
    let stderr = File::options()
        .create(true)
        .append(true)
        .open(stderr_file)
        .expect("boot stderr file");
    Command::new(crate::repo_root().join("qemu/boot"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .expect("start qemu/boot")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_that_stops_in_the_reset_path_is_recognised() {
        let grub = "BdsDxe: starting Boot0001 \"UEFI Misc Device\"\r\n\u{1b}[0m\u{1b}[30m\u{1b}[47mWelcome to GRUB!\n\r\n\r\u{1b}[0m\u{1b}[37m\u{1b}[40m";
        assert_eq!(stalled_on_the_way_up(grub), Some("Welcome to GRUB!"));
        assert_eq!(
            stalled_on_the_way_up("[ 111.0] reboot: machine restart\n"),
            Some("reboot: machine restart")
        );
        let booting = format!("{grub}Hearth: booting slot A from (hd0,gpt2)\n");
        assert_eq!(stalled_on_the_way_up(&booting), None);
        assert_eq!(
            stalled_on_the_way_up("hearthd: HTTPS ready on 0.0.0.0:443\n"),
            None
        );
    }
}

//! The QEMU system-test harness: boots the Hearth development image and
//! talks to it the way an owner does (serial console, HTTPS), or inspects its
//! disk offline. The product image has no SSH and no login, so nothing here
//! logs in.
//!
//! - [`Disk`]: a device's own disk, a qcow2 overlay on the base image in a
//!   temporary directory; it outlives reboots and is removed on drop.
//! - [`Device`]: one running QEMU (through `qemu/boot`, so tests boot exactly
//!   what the README's command boots). QEMU runs in its own process group and
//!   is killed on drop, also when a test panics; the serial log is then kept
//!   in `tests/artifacts/`.
//! - [`guests`]: at most one QEMU guest per core on this machine, across
//!   every test binary that runs at the same time.
//! - [`https`]: a TLS client that accepts the device's self-signed
//!   certificate but records its SHA-256 fingerprint, so tests compare it with
//!   the one the device printed on its console.
//! - [`offline`]: partitions, `debugfs` and `mtools` on images and overlays.
//! - [`lab`]: the update lab (broker, update server, releases, a provisioned
//!   device) for the update tests and the conformance suite's 5.3 cases.
//!
//! Environment: `HEARTH_IMAGE` (default `qemu/out/hearth-dev.img`),
//! `HEARTH_ACCEL` (default `tcg`), `HEARTH_BOOT_TIMEOUT` (seconds, default 600).

pub mod board;
pub mod broker;
pub mod compliance;
mod device;
mod disk;
pub mod guests;
pub mod https;
pub mod hydra;
pub mod lab;
pub mod offline;
pub mod releases;
pub mod update_server;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use device::{Device, Ready};
pub use disk::{Disk, RawDisk};

/// The repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The first whole console line containing `needle` after the first
/// `seen` bytes of `serial`; `seen` moves past it, so the next wait starts
/// there.
pub(crate) fn next_line_with(serial: &str, seen: &mut usize, needle: &str) -> Option<String> {
    let rest = serial.get(*seen..)?;
    let at = rest.find(needle)?;
    let end = rest[at..].find('\n')?;
    let line_start = rest[..at].rfind('\n').map_or(0, |i| i + 1);
    *seen += at + end;
    Some(rest[line_start..at + end].trim_end().to_owned())
}

/// What a failed wait shows: the boot script's error output and the last
/// 40 console lines.
pub(crate) fn boot_diagnostics(script: &str, stderr: &Path, serial: &str) -> String {
    let tail: Vec<&str> = serial.lines().rev().take(40).collect();
    let said = std::fs::read_to_string(stderr).unwrap_or_default();
    format!(
        "{script} said:\n{said}\nlast serial lines:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

/// The image under test. Panics with what to do when it does not exist.
pub fn image() -> PathBuf {
    let path = match std::env::var_os("HEARTH_IMAGE") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join("qemu/out/hearth-dev.img"),
    };
    assert!(
        path.is_file(),
        "There is no image at {}: run qemu/build-image first (tests/run does), or point HEARTH_IMAGE at one.",
        path.display()
    );
    path.canonicalize().expect("image path")
}

/// How long a boot may take before the test gives up.
pub fn boot_timeout() -> Duration {
    let secs = std::env::var("HEARTH_BOOT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    Duration::from_secs(secs)
}

/// A loopback port for a server or a QEMU forward to bind soon, different
/// from every other one this process has handed out.
///
/// Asking the kernel for port 0 and closing the socket is not enough: the
/// next ask can return the same port (a conformance boot once forwarded two
/// guest ports from one host port, and QEMU refused to start), and until the
/// server binds it an outgoing connection can take it as its ephemeral port.
/// So the ports come from below the kernel's ephemeral range, from a start
/// that differs between processes, each checked free by binding it.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let low = ephemeral_low.saturating_sub(12_000).max(1024);
    let span = ephemeral_low.saturating_sub(low).max(1);
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let port = (low + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{}", low + span);
}

/// The host's UTC time `relative` to now (GNU `date -d`, e.g. "+30 days",
/// "1 year ago") in a `date` `format` (e.g. `%Y-%m-%dT%H:%M:%SZ`).
pub fn utc_date(relative: &str, format: &str) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", relative, &format!("+{format}")])
        .output()
        .expect("run date");
    assert!(out.status.success(), "date -d {relative:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Where failing tests leave their serial logs.
pub fn artifacts_dir() -> PathBuf {
    repo_root().join("tests/artifacts")
}

/// The fingerprint format hearthd prints: 32 upper-case hex bytes with colons.
pub fn is_fingerprint(s: &str) -> bool {
    s.len() == 95
        && s.split(':').all(|b| {
            b.len() == 2
                && b.chars()
                    .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
        })
}

/// The setup code hearthd last printed on a console (`ABCD-EFGH-JK` in form), if
/// any. Only the code's own characters are taken: under load the kernel's
/// console messages can land on the same line, right after it.
pub fn console_setup_code(console: &str) -> Option<String> {
    console
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("hearthd: SETUP CODE ")?;
            let code: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '-')
                .collect();
            (!code.is_empty()).then_some(code)
        })
        .next_back()
}

/// The fingerprint that follows `label` on a console line: the first 95
/// characters (the format's length), since a kernel message may follow it
/// on the same line.
pub fn console_fingerprint(line: &str, label: &str) -> Option<String> {
    let (_, rest) = line.split_once(label)?;
    let fingerprint = rest.get(..95)?;
    is_fingerprint(fingerprint).then(|| fingerprint.to_owned())
}

/// SHA-256 of a DER certificate, formatted like hearthd's console line.
pub fn fingerprint_of(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_waits_take_whole_lines_in_order() {
        let serial = "boot\n[  1.0] foo bar\nfoo baz\nfoo half";
        let mut seen = 0;
        assert_eq!(
            next_line_with(serial, &mut seen, "foo").as_deref(),
            Some("[  1.0] foo bar")
        );
        assert_eq!(
            next_line_with(serial, &mut seen, "foo").as_deref(),
            Some("foo baz")
        );
        // A line still being written is not taken yet.
        assert_eq!(next_line_with(serial, &mut seen, "foo"), None);
    }

    #[test]
    fn console_values_survive_a_kernel_message_on_the_same_line() {
        let f = fingerprint_of(b"x");
        let line = format!(
            "hearthd: HTTPS ready on 0.0.0.0:443, certificate SHA-256 fingerprint {f}[   64.285516] kvm: Nested Virtualization enabled"
        );
        assert_eq!(
            console_fingerprint(&line, "certificate SHA-256 fingerprint "),
            Some(f.clone())
        );
        assert_eq!(
            console_fingerprint(&line[..line.len() - 60], "certificate SHA-256 fingerprint "),
            None,
            "a cut-off fingerprint is no fingerprint"
        );
        let console =
            "x\n[ 5.1] hearthd[300]: hearthd: SETUP CODE ABCD-EFGH-JK[   6.0] kvm: hello\n";
        assert_eq!(console_setup_code(console).as_deref(), Some("ABCD-EFGH-JK"));
        assert_eq!(console_setup_code("hearthd: not set up yet"), None);
    }

    #[test]
    fn fingerprints_look_like_the_console_line() {
        let f = fingerprint_of(b"x");
        assert!(is_fingerprint(&f), "{f}");
        assert!(!is_fingerprint(&f.to_lowercase()));
        assert!(!is_fingerprint(&f[3..]));
    }
}

//! The device under test: a fresh QEMU boot of the image, or a device given
//! by address (`HEARTH_DUT=HOST:PORT`, e.g. an already-running QEMU or a Pi).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use system_tests::https::{Response, request};
use system_tests::{Device, Disk};

/// Guest ports probed through extra QEMU forwards: the services an attacker
/// looks for first on an IoT device. Only 443 is documented as open.
pub const PROBED_PORTS: &[u16] = &[21, 22, 23, 80, 1883, 5000, 8080, 8443, 8883];
pub const HTTPS_PORT: u16 = 443;

pub struct Dut {
    pub addr: SocketAddr,
    /// What the report calls the target.
    pub description: String,
    /// The QEMU device (None for `HEARTH_DUT`); dropping it stops QEMU.
    device: Option<Device>,
    _disk: Option<Disk>,
    console_file: Option<PathBuf>,
    /// (address to scan, guest port behind it) for the port probe.
    pub probes: Vec<(SocketAddr, u16)>,
    /// Set when the DUT was already claimed and the engineer gave its password.
    pub known_password: Option<String>,
}

impl Dut {
    /// `HEARTH_DUT` if set, else a fresh boot of the image.
    pub fn open() -> Dut {
        match std::env::var("HEARTH_DUT") {
            Ok(addr) if !addr.trim().is_empty() => Dut::given(addr.trim()),
            _ => Dut::boot(),
        }
    }

    fn boot() -> Dut {
        let disk = Disk::fresh("conformance");
        let mut probes = Vec::new();
        let mut forwards = String::new();
        for &guest in PROBED_PORTS {
            let host = system_tests::free_port();
            forwards.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
            probes.push((SocketAddr::from(([127, 0, 0, 1], host)), guest));
        }
        let mut device = Device::boot_with(&disk, "conformance", &["--net-extra", &forwards]);
        device.wait_ready();
        let addr = SocketAddr::from(([127, 0, 0, 1], device.port()));
        probes.insert(0, (addr, HTTPS_PORT));
        Dut {
            addr,
            description: format!(
                "a fresh QEMU boot of {} (TCG unless HEARTH_ACCEL says otherwise), HTTPS forwarded to {addr}",
                system_tests::image().display()
            ),
            device: Some(device),
            _disk: Some(disk),
            console_file: None,
            probes,
            known_password: None,
        }
    }

    fn given(text: &str) -> Dut {
        let addr: SocketAddr = text.parse().unwrap_or_else(|e| {
            panic!("HEARTH_DUT={text:?} is not HOST:PORT with a numeric address ({e}); e.g. 127.0.0.1:8443 or 192.0.2.10:443")
        });
        // On loopback the other ports are the host's own services, not the
        // device's, so only the given port is scanned.
        let mut probes = vec![(addr, HTTPS_PORT)];
        if !addr.ip().is_loopback() {
            probes.extend(
                PROBED_PORTS
                    .iter()
                    .map(|&p| (SocketAddr::new(addr.ip(), p), p)),
            );
        }
        Dut {
            addr,
            description: format!("the device at {addr} (HEARTH_DUT)"),
            device: None,
            _disk: None,
            console_file: std::env::var_os("HEARTH_DUT_CONSOLE").map(PathBuf::from),
            probes,
            known_password: std::env::var("HEARTH_DUT_PASSWORD").ok(),
        }
    }

    pub fn booted(&self) -> bool {
        self.device.is_some()
    }

    pub fn ip(&self) -> IpAddr {
        self.addr.ip()
    }

    /// The serial console so far, when the suite can see it.
    pub fn console(&self) -> Option<String> {
        if let Some(device) = &self.device {
            return Some(device.serial());
        }
        let file = self.console_file.as_ref()?;
        std::fs::read(file)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Result<Response, String> {
        request(self.addr, method, path, headers, body)
    }
}

/// One request and its answer as evidence lines (the body cut short).
pub fn exchange(method: &str, path: &str, answer: &Result<Response, String>) -> String {
    match answer {
        Ok(r) => {
            let mut picked: Vec<&str> = r
                .raw_headers
                .lines()
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    l.starts_with("http/")
                        || l.starts_with("location:")
                        || l.starts_with("retry-after:")
                        || l.starts_with("www-authenticate:")
                        || l.starts_with("content-type:")
                })
                .collect();
            if picked.is_empty() {
                picked.push("(no headers)");
            }
            format!(
                "> {method} {path}\n< {}\n< {}",
                picked.join("\n< "),
                crate::report::excerpt(&redact_csrf(r.body.trim()), 300)
            )
        }
        Err(e) => format!("> {method} {path}\n< error: {e}"),
    }
}

/// A CSRF token is half of a live session: keep it out of the report.
fn redact_csrf(body: &str) -> String {
    match body.split_once("\"csrf_token\":\"") {
        Some((head, rest)) => {
            let tail = rest.split_once('"').map_or("", |(_, t)| t);
            format!("{head}\"csrf_token\":\"<redacted>\"{tail}")
        }
        None => body.to_owned(),
    }
}

#[test]
fn csrf_tokens_are_redacted() {
    assert_eq!(
        redact_csrf(r#"{"csrf_token":"abc123"}"#),
        r#"{"csrf_token":"<redacted>"}"#
    );
    assert_eq!(redact_csrf(r#"{"changed":true}"#), r#"{"changed":true}"#);
}

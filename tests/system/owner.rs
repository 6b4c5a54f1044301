//! What an owner meets on a fresh device (issues 3 and 4), through the
//! forwarded HTTPS port and the serial console: the setup code and the
//! vendor's facts on the console, security.txt before any login, the claim,
//! and a password, certificate and data that survive a reboot.

use std::net::{Ipv4Addr, SocketAddr};

use system_tests::https::{Response, request};
use system_tests::offline::Ext4;
use system_tests::{Device, Disk};

const SLOT_A: usize = 2;
const PASSWORD: &str = "correct horse battery staple";

fn addr(device: &Device) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, device.port()))
}

/// One HTTPS request to the device's forwarded port; panics on a transport
/// error (the other system tests use it too).
pub fn call(
    device: &Device,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    request(addr(device), method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// The setup code hearthd printed on this boot's console, if any.
pub fn setup_code(serial: &str) -> Option<String> {
    system_tests::console_setup_code(serial)
}

/// A device's first two boots, as its owner meets them: the setup code and
/// the vendor's facts on the first boot's console, the claim, then a reboot
/// that keeps the claim, the password and the TLS identity on /data while
/// the root file system stays untouched.
#[test]
fn first_boot_shows_the_setup_code_and_vendor_facts_and_claim_identity_and_data_survive_a_reboot() {
    let disk = Disk::fresh("owner");
    let mut device = Device::boot(&disk, "boot1");
    let first = device.wait_ready();
    let serial = device.serial();
    let code = setup_code(&serial).expect("a factory-new device shows a setup code on its console");
    for banner in [
        "(model HRH-1, hardware A)",
        "report vulnerabilities to mailto:security@example.com",
        "security updates until 2031-12-31",
    ] {
        assert!(
            serial.contains(banner),
            "the console banner lacks {banner:?}"
        );
    }

    let security_txt = call(&device, "GET", "/.well-known/security.txt", &[], None);
    assert_eq!(security_txt.status, 200);
    assert!(
        security_txt
            .body
            .contains("Contact: mailto:security@example.com"),
        "{}",
        security_txt.body
    );
    assert_eq!(
        call(&device, "GET", "/api/dashboard", &[], None).status,
        403,
        "nothing works before the claim"
    );

    let body = serde_json::json!({ "setup_code": code, "password": PASSWORD, "password_confirm": PASSWORD }).to_string();
    let claimed = call(&device, "POST", "/api/setup", &[], Some(&body));
    assert_eq!(claimed.status, 201, "{}", claimed.body);
    device.powerdown();

    // Offline: the device wrote its TLS identity to the data partition, and
    // nothing outside the boot and data partitions.
    let after_first = crate::boot::certificates_on_data(&disk, "1");
    assert!(
        after_first.contains(&first.console_fingerprint),
        "the certificate {} is not in /data/hearth after a clean power-down (found {after_first:?})",
        first.console_fingerprint
    );
    crate::boot::assert_only_boot_and_data_written(&disk);

    let mut device = Device::boot(&disk, "boot2");
    let second = device.wait_ready();
    assert_eq!(
        second.console_fingerprint, first.console_fingerprint,
        "the device made a new certificate after a reboot"
    );
    assert_eq!(second.health.fingerprint, first.console_fingerprint);
    assert_eq!(
        setup_code(&device.serial()),
        None,
        "a claimed device shows no setup code"
    );
    assert_eq!(
        call(&device, "GET", "/api/state", &[], None).json()["status"],
        "claimed"
    );
    let login = |password: &str| {
        let body = serde_json::json!({ "password": password }).to_string();
        call(&device, "POST", "/api/login", &[], Some(&body))
    };
    assert_eq!(login("not the owner's password at all").status, 401);
    let ok = login(PASSWORD);
    assert_eq!(
        ok.status, 200,
        "the password survives a reboot: {}",
        ok.body
    );
    device.powerdown();
    assert_eq!(
        crate::boot::certificates_on_data(&disk, "2"),
        after_first,
        "the TLS identity on /data changed across the reboot"
    );
    crate::boot::assert_only_boot_and_data_written(&disk);

    // os-release in the slot carries the vendor file's facts.
    let os_release = Ext4::file(&disk.read_partition(SLOT_A))
        .read("/usr/lib/os-release")
        .expect("/usr/lib/os-release in slot A");
    let os_release = String::from_utf8_lossy(&os_release);
    for field in [
        "VENDOR_NAME=\"Example Hearth Devices Ltd\"",
        "SUPPORT_END=2031-12-31",
        "BUG_REPORT_URL=\"https://example.com/security/policy\"",
        "HEARTH_MODEL=\"HRH-1\"",
    ] {
        assert!(
            os_release.contains(field),
            "os-release lacks {field}:\n{os_release}"
        );
    }
}

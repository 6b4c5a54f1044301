//! The emulated reset button: `qemu/boot --factory-reset` hot-plugs the
//! host-only HEARTH-RESET drive, and the device forgets its owner and its TLS
//! identity, and shows a new setup code (issue 3's physical factory reset,
//! driven from the host).

use std::time::{Duration, Instant};

use system_tests::{Device, Disk};

#[test]
fn the_reset_control_makes_the_device_factory_new_with_a_new_certificate() {
    let disk = Disk::fresh("reset");
    let mut device = Device::boot(&disk, "boot1");
    let before = device.wait_ready().console_fingerprint;
    let first_code =
        crate::owner::setup_code(&device.serial()).expect("a setup code at first boot");
    let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, device.port()));
    let body = serde_json::json!({
        "setup_code": first_code,
        "password": "correct horse battery staple",
        "password_confirm": "correct horse battery staple",
    })
    .to_string();
    let claimed =
        system_tests::https::request(addr, "POST", "/api/setup", &[], Some(&body)).expect("claim");
    assert_eq!(claimed.status, 201, "{}", claimed.body);

    device.press_reset();
    // The reset stops hearthd, erases its state and starts it again, which
    // prints a new ready line with a new certificate.
    let after = device.wait_console_ready();
    assert_ne!(
        after, before,
        "the device kept its certificate after the reset"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = device.wait_healthy();
        if health.fingerprint == after {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "HTTPS still presents {} after the reset, not the console's {after}",
            health.fingerprint
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let state = system_tests::https::request(addr, "GET", "/api/state", &[], None).expect("state");
    assert_eq!(
        state.json()["status"],
        "unclaimed",
        "the owner's password is gone"
    );
    let new_code =
        crate::owner::setup_code(&device.serial()).expect("a new setup code on the console");
    assert_ne!(new_code, first_code, "the reset makes a new setup code");
    device.powerdown();
}

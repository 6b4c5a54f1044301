//! The emulated reset button: `qemu/boot --factory-reset` hot-plugs the
//! host-only HEARTH-RESET drive, and the device forgets its owner and its TLS
//! identity (issue 3's physical factory reset, driven from the host).

use std::time::{Duration, Instant};

use system_tests::{Device, Disk};

#[test]
fn the_reset_control_makes_the_device_factory_new_with_a_new_certificate() {
    let disk = Disk::fresh("reset");
    let mut device = Device::boot(&disk, "boot1");
    let before = device.wait_ready().console_fingerprint;

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
    device.powerdown();
}

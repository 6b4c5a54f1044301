//! Booting, HTTPS through the forward, unique certificates; the offline
//! checks of what a device wrote (the owner test uses them across a reboot).

use std::collections::BTreeSet;

use system_tests::offline::{self, Ext4};
use system_tests::{Device, Disk};

const ESP: usize = 1;
const SLOT_A: usize = 2;
const DATA: usize = 4;

/// Two factory-new devices, each booted once: each answers HTTPS with the
/// certificate its console shows, and no two share a certificate or a
/// setup code. (One test, so the two first boots serve both claims.)
#[test]
fn factory_new_devices_answer_https_with_their_own_certificate_and_setup_code() {
    let mut seen = BTreeSet::new();
    let mut codes = BTreeSet::new();
    for name in ["unique-1", "unique-2"] {
        let disk = Disk::fresh(name);
        let mut device = Device::boot(&disk, "boot1");
        let ready = device.wait_ready();
        assert_eq!(ready.health.status, 200);
        let health: serde_json::Value = serde_json::from_str(&ready.health.body)
            .unwrap_or_else(|e| panic!("/healthz is not JSON ({e}): {:?}", ready.health.body));
        assert!(health.is_object(), "/healthz: {health}");
        assert_eq!(
            ready.health.fingerprint, ready.console_fingerprint,
            "the certificate served over HTTPS is not the one the console shows"
        );
        assert!(
            seen.insert(ready.console_fingerprint.clone()),
            "two fresh devices share the certificate {}",
            ready.console_fingerprint
        );

        let serial = device.serial();
        let code = crate::owner::setup_code(&serial).expect("a setup code on the console");
        assert!(codes.insert(code), "two fresh devices share a setup code");
        assert!(
            serial.contains("Hearth: booting slot A"),
            "GRUB did not boot slot A"
        );
        assert!(
            serial.contains("hearth.slot=A"),
            "the kernel was not told its slot"
        );
        // Every unit started: a failed one (swupdate, a mount, tmpfiles on
        // the read-only root) shows as FAILED on the console.
        let failed: Vec<&str> = serial.lines().filter(|l| l.contains("FAILED")).collect();
        assert!(
            failed.is_empty(),
            "units failed during boot:\n{}",
            failed.join("\n")
        );
        // No console login of any kind: no getty prompt.
        assert!(
            !serial.contains(" login:"),
            "the console offers a login prompt"
        );
        device.powerdown();
    }
}

/// The certificates in the device's TLS identity on its data partition (read
/// offline, after a power-down); `step` names the copy's folder.
pub(crate) fn certificates_on_data(disk: &Disk, step: &str) -> Vec<String> {
    let data = disk.read_partition(DATA);
    let copy = Ext4::file(&data).copy_out("/hearth", &disk.dir().join(format!("data-{step}")));
    let mut found = Vec::new();
    for file in walk(&copy) {
        let bytes = std::fs::read(&file).expect("copied file");
        found.extend(
            offline::pem_certificates(&bytes)
                .iter()
                .map(|der| system_tests::fingerprint_of(der)),
        );
    }
    found
}

/// The root filesystem is mounted read-only: slot A is byte-for-byte the
/// base image's, and only the boot partition and /data were written.
pub(crate) fn assert_only_boot_and_data_written(disk: &Disk) {
    let slot_a = disk.partition(SLOT_A);
    let esp = disk.partition(ESP);
    let data = disk.partition(DATA);
    for (start, end) in disk.written_ranges() {
        assert!(
            end <= slot_a.offset || start >= slot_a.offset + slot_a.size,
            "the device wrote to slot A (bytes {start}..{end}); the root must be read-only"
        );
        let in_esp = start >= esp.offset && end <= esp.offset + esp.size;
        let in_data = start >= data.offset && end <= data.offset + data.size;
        assert!(
            in_esp || in_data,
            "the device wrote outside the boot and data partitions: {start}..{end}"
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

//! GRUB's boot counter: a slot on trial that cannot boot falls back.

use system_tests::offline::{self, Ext4};
use system_tests::{Device, Disk};

const ESP: usize = 1;
const DATA: usize = 4;

#[test]
fn grub_falls_back_to_slot_a_when_the_armed_slot_b_cannot_boot() {
    let disk = Disk::fresh("fallback");
    // Arm slot B (empty on a new disk) for one trial boot, as an update would.
    let esp = disk.read_partition(ESP);
    let env = disk.dir().join("grubenv");
    offline::fat_read(&esp, "::/grub/grubenv", &env);
    offline::grubenv_set(&env, &["hearth_slot=B", "ustate=1", "bootcount=0"]);
    offline::fat_write(&esp, &env, "::/grub/grubenv");
    disk.write_partition(ESP, &esp);

    let mut device = Device::boot(&disk, "boot1");
    let timeout = system_tests::boot_timeout();
    device.wait_for("Hearth: trial boot 1 of 1 of slot B", timeout);
    device.wait_for("Hearth: slot B could not be loaded; rebooting", timeout);
    device.wait_for(
        "Hearth: slot B failed 1 trial boot(s); falling back",
        timeout,
    );
    device.wait_for("Hearth: booting slot A", timeout);
    let ready = device.wait_ready();
    assert_eq!(ready.health.fingerprint, ready.console_fingerprint);
    assert!(device.serial().contains("hearth.slot=A"));
    device.powerdown();

    // GRUB recorded the fallback where SWUpdate and hearthd read it.
    let esp = disk.read_partition(ESP);
    offline::fat_read(&esp, "::/grub/grubenv", &env);
    let vars = offline::grubenv_list(&env);
    let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("hearth_slot"), Some("A"), "{vars:?}");
    assert_eq!(get("bootcount"), Some("0"), "{vars:?}");
    // GRUB set ustate=3 (FAILED). hearthd, once up, records the fallback in
    // its state on /data and resets ustate to 0; the power button may come
    // before or after it did.
    let record = Ext4::file(&disk.read_partition(DATA))
        .read("/hearth/state/update-agent")
        .map(|r| String::from_utf8_lossy(&r).into_owned());
    match get("ustate") {
        Some("3") => {}
        Some("0") => assert!(
            record.as_deref().is_some_and(|r| r.contains("rolled-back")),
            "ustate was reset without hearthd recording the fallback: {record:?}"
        ),
        other => panic!("SWUpdate's state must say FAILED (or reported): {other:?} {vars:?}"),
    }
}

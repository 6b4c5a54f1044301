//! The built image, inspected offline: no usable password, no autologin.

use std::path::Path;

use system_tests::offline::{self, Ext4};

#[test]
fn no_account_has_a_usable_password_and_no_console_logs_in_by_itself() {
    let image = system_tests::image();
    let parts = offline::partitions(&image);
    let slot_a = parts.get(1).expect("partition 2 (slot A)");
    let root = Ext4::in_image(&image, slot_a);

    let shadow =
        String::from_utf8(root.read("/etc/shadow").expect("/etc/shadow exists")).expect("text");
    let mut accounts = 0;
    for line in shadow.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split(':');
        let (user, hash) = (
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
        );
        // "*" and "!..." can never match a password; "" would log in without one.
        assert!(
            hash.starts_with('*') || hash.starts_with('!'),
            "account {user} has a usable password field {hash:?} in /etc/shadow"
        );
        accounts += 1;
    }
    assert!(
        shadow.lines().any(|l| l.starts_with("root:")),
        "no root entry in /etc/shadow"
    );
    assert!(accounts > 1, "/etc/shadow looks empty");
    let passwd = String::from_utf8(root.read("/etc/passwd").expect("/etc/passwd")).expect("text");
    for line in passwd.lines().filter(|l| !l.trim().is_empty()) {
        assert_eq!(
            line.split(':').nth(1),
            Some("x"),
            "a password in /etc/passwd: {line}"
        );
    }

    // No getty is configured to log anyone in: no unit or drop-in anywhere in
    // systemd's search path mentions autologin, and no getty is enabled.
    let tmp = tempfile::tempdir().expect("temp dir");
    for dir in ["/etc/systemd", "/usr/lib/systemd/system"] {
        if !root.exists(dir) {
            continue;
        }
        let copy = root.copy_out(
            dir,
            &tmp.path()
                .join(dir.trim_start_matches('/').replace('/', "_")),
        );
        for file in walk(&copy) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            assert!(
                !text.contains("--autologin") && !text.contains("-a root"),
                "{} configures a console autologin",
                file.display()
            );
        }
    }
    let wants = root.debugfs("ls -l /etc/systemd/system/getty.target.wants");
    assert!(!wants.contains("getty@"), "a getty is enabled: {wants}");
    // Serial gettys come from the kernel console; grub.cfg turns them off.
    let esp = offline::partitions(&image)[0].clone();
    let grub_cfg = tmp.path().join("grub.cfg");
    offline::fat_read(
        Path::new(&format!("{}@@{}", image.display(), esp.offset)),
        "::/EFI/BOOT/grub.cfg",
        &grub_cfg,
    );
    let cfg = std::fs::read_to_string(&grub_cfg).expect("grub.cfg");
    assert!(
        cfg.contains("systemd.getty_auto=0"),
        "grub.cfg does not turn off the console gettys"
    );

    // No remote login server either.
    for server in ["/usr/sbin/sshd", "/usr/sbin/dropbear", "/usr/sbin/telnetd"] {
        assert!(!root.exists(server), "the image contains {server}");
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_symlink() {
            continue;
        } else if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

//! The Raspberry Pi's U-Boot A/B boot path in QEMU aarch64 (issue 7).
//!
//! `qemu/uboot-arm64` puts the layer's boot script (boot.cmd, filled in for
//! qemuarm64 and compiled with mkimage) on a GPT test disk whose slots hold a
//! Debian arm64 kernel, and boots it with U-Boot qemu_arm64 (built from
//! Debian's u-boot source with the layer's environment fragments), keeping
//! the environment twice in QEMU's second flash bank. The kernel has no root
//! file system it can mount, so it stops at "Waiting for root device
//! /dev/vdaN...": that line shows which slot U-Boot chose. The test then
//! plays the watchdog (QEMU `system_reset`: a trial boot that did not
//! commit) or pulls the plug (stops QEMU) to work on the environment from
//! the host with the real tools: `fw_printenv`/`fw_setenv` (libubootenv) and
//! the real `swupdate -B uboot`, committed over its IPC socket with
//! `SET_UPDATE_STATE '0'` as hearthd does on the device.
//!
//! The trial (boot.cmd): an update arms it with one environment write,
//! `hearth_slot=<new> bootcount=0 ustate=1`; while `ustate=1` each boot
//! counts, and once `bootcount` reaches `bootlimit` (1) U-Boot falls back
//! with `ustate=3`; a commit writes `ustate=0`.
//!
//! Each case takes a few TCG boots of a few seconds each; the first run also
//! builds U-Boot and fetches the kernel (about two minutes, then cached in
//! qemu/cache/uboot-arm64).
//!
//! Cases `f`, `g` and `h` boot the aarch64 development image instead, whose
//! kernel reaches the flash as /dev/mtd0 (qemu/arm64.sh, mtd_modules), with
//! the update lab: there the guest installs, arms, commits and falls back by
//! itself (hearthd, the in-guest SWUpdate, hearth-trial-watch), and the host
//! only reads the environment.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use swupdate_rs::{Client, ClientConfig, UpdateState};
use system_tests::RawDisk;
use system_tests::board::Board;
use system_tests::lab::{DEVICE_ID, Servers};
use system_tests::releases::Vendor;

/// The owner's password in the development image test.
const PASSWORD: &str = "correct horse battery staple";

/// The first disk builds U-Boot and fetches the kernel into the shared
/// cache; the others wait for it instead of doing the same work at once.
static FIRST_DISK: Mutex<()> = Mutex::new(());

#[test]
fn a_factory_new_environment_boots_slot_a_without_counting() {
    let rig = Rig::new("factory", Slots::BothBootable);
    let mut board = rig.boot("boot1");
    board.wait_for("Loading Environment from Flash...");
    board.wait_for("*** Warning - bad CRC, using default environment");
    board.wait_for("Saving Environment to Flash...");
    board.wait_for("Hearth: booting slot A (partition 2), ustate= bootcount=/1");
    board.wait_for("hearth.slot=A");
    board.wait_for("Waiting for root device /dev/vda2...");
    // The next boot finds the saved environment and writes nothing.
    board.reset();
    board.wait_for("Loading Environment from Flash... OK");
    let boot2 = board.wait_for("Hearth: booting slot A (partition 2)");
    board.wait_for("Waiting for root device /dev/vda2...");
    board.power_off();
    assert!(boot2.contains("ustate= bootcount=/1"), "{boot2}");
    let second = board.serial_since("Loading Environment from Flash... OK");
    assert!(
        !second.contains("Saving Environment"),
        "a boot without a trial must not write the environment:\n{second}"
    );
    assert!(!board.serial().contains("trial boot"));

    let env = rig.env();
    assert_eq!(get(&env, "hearth_slot"), Some("A"), "{env:?}");
    assert_eq!(get(&env, "bootlimit"), Some("1"), "{env:?}");
    assert_eq!(get(&env, "hearth_env"), Some("1"), "{env:?}");
    assert_eq!(get(&env, "ustate"), None, "{env:?}");
    assert_eq!(get(&env, "bootcount"), None, "{env:?}");
}

#[test]
fn b_armed_slot_b_boots_once_then_a_reset_without_commit_falls_back_to_a() {
    let rig = Rig::new("fallback", Slots::BothBootable);
    rig.first_boot();
    rig.arm_slot_b();

    let mut board = rig.boot("trial");
    board.wait_for("Hearth: trial boot 1 of 1 of slot B");
    board.wait_for("Hearth: booting slot B (partition 3), ustate=1 bootcount=1/1");
    board.wait_for("hearth.slot=B");
    board.wait_for("Waiting for root device /dev/vda3...");
    // The new system never commits: the watchdog resets the board.
    board.reset();
    board.wait_for("Hearth: slot B used 1 of 1 trial boot(s) without a commit; falling back");
    board.wait_for("Hearth: booting slot A (partition 2), ustate=3 bootcount=0/1");
    board.wait_for("Waiting for root device /dev/vda2...");
    // And it stays there.
    board.reset();
    board.wait_for("Hearth: booting slot A (partition 2), ustate=3 bootcount=0/1");
    board.wait_for("Waiting for root device /dev/vda2...");
    board.power_off();

    let env = rig.env();
    assert_eq!(get(&env, "hearth_slot"), Some("A"), "{env:?}");
    assert_eq!(get(&env, "bootcount"), Some("0"), "{env:?}");
    assert_eq!(
        get(&env, "ustate"),
        Some("3"),
        "SWUpdate's state must say FAILED: {env:?}"
    );
}

#[test]
fn c_armed_slot_b_committed_through_swupdate_keeps_booting_b_without_counting() {
    let rig = Rig::new("commit", Slots::BothBootable);
    rig.first_boot();
    rig.arm_slot_b();

    let mut board = rig.boot("trial");
    board.wait_for("Hearth: trial boot 1 of 1 of slot B");
    board.wait_for("Waiting for root device /dev/vda3...");
    // The new system is up; the test's kernel has no user space, so the
    // commit runs on the host against the same flash, with the board off.
    board.power_off();
    assert_eq!(get(&rig.env(), "bootcount"), Some("1"));
    rig.commit_with_swupdate();
    let env = rig.env();
    assert_eq!(get(&env, "ustate"), Some("0"), "{env:?}");

    let mut board = rig.boot("committed");
    board.wait_for("Hearth: booting slot B (partition 3), ustate=0 bootcount=1/1");
    board.wait_for("Waiting for root device /dev/vda3...");
    board.reset();
    board.wait_for("Hearth: booting slot B (partition 3), ustate=0 bootcount=1/1");
    board.wait_for("Waiting for root device /dev/vda3...");
    board.power_off();
    assert!(
        !board.serial().contains("trial boot"),
        "a committed slot must not count"
    );

    let env = rig.env();
    assert_eq!(get(&env, "hearth_slot"), Some("B"), "{env:?}");
    assert_eq!(get(&env, "ustate"), Some("0"), "{env:?}");
    assert_eq!(get(&env, "bootcount"), Some("1"), "{env:?}");
}

#[test]
fn c_armed_slot_b_without_a_kernel_resets_at_once_and_falls_back_to_a() {
    let rig = Rig::new("nokernel", Slots::SlotBEmpty);
    rig.first_boot();
    rig.arm_slot_b();

    // No help from the test: the script resets by itself.
    let mut board = rig.boot("trial");
    board.wait_for("Hearth: trial boot 1 of 1 of slot B");
    board.wait_for("Hearth: no bootable kernel in slot B");
    board.wait_for("Hearth: slot B cannot boot its trial; resetting");
    board.wait_for("Hearth: slot B used 1 of 1 trial boot(s) without a commit; falling back");
    board.wait_for("Hearth: booting slot A (partition 2), ustate=3 bootcount=0/1");
    board.wait_for("Waiting for root device /dev/vda2...");
    board.power_off();

    let env = rig.env();
    assert_eq!(get(&env, "hearth_slot"), Some("A"), "{env:?}");
    assert_eq!(get(&env, "ustate"), Some("3"), "{env:?}");
}

#[test]
fn d_a_torn_write_of_the_newer_environment_copy_boots_from_the_older_one() {
    let rig = Rig::new("redundant", Slots::BothBootable);
    rig.first_boot();
    // The update's environment write is cut short: its copy is corrupt.
    rig.arm_slot_b();
    rig.corrupt_copy_holding("ustate=1");

    let mut board = rig.boot("torn");
    board.wait_for("Loading Environment from Flash...");
    board.wait_for("Hearth: booting slot A (partition 2), ustate= bootcount=/1");
    board.wait_for("Waiting for root device /dev/vda2...");
    board.power_off();
    let serial = board.serial();
    assert!(
        !serial.contains("using default environment"),
        "U-Boot must read the older copy, not fall back to its defaults:\n{serial}"
    );
    assert!(
        !serial.contains("Saving Environment"),
        "the older copy is complete (hearth_env=1): nothing to save:\n{serial}"
    );
    let env = rig.env();
    assert_eq!(get(&env, "hearth_slot"), Some("A"), "{env:?}");
    assert_eq!(get(&env, "ustate"), None, "{env:?}");
}

/// The owner logs in and reads `/api/update`.
fn update_status(port: u16, login: &str) -> serde_json::Value {
    let logged_in = crate::board::call(port, "POST", "/api/login", &[], Some(login));
    assert_eq!(
        logged_in.status, 200,
        "the owner's password must work (and survive power cuts and slot switches): {}",
        logged_in.body
    );
    let cookie = logged_in.session_cookie().expect("a session cookie");
    let update = crate::board::call(
        port,
        "GET",
        "/api/update",
        &[("Cookie", cookie.as_str())],
        None,
    );
    assert_eq!(update.status, 200, "{}", update.body);
    update.json()
}

/// The Pi's update path, whole, from inside the aarch64 guest: the update
/// lab (broker, HTTPS server, a release built from the aarch64 image)
/// announces 9.1.0; hearthd installs it through the in-guest SWUpdate into
/// slot B, whose `bootenv` arms U-Boot's trial in the flash; the device
/// reboots itself, U-Boot gives B its trial boot, hearthd's health check
/// reaches the broker and commits. Then 9.2.0, which fails its health
/// check, goes into slot A, and U-Boot falls back to B by itself. Nothing
/// on the host writes the environment; it only reads it at the end.
#[test]
fn f_the_arm64_image_installs_a_release_itself_commits_it_and_falls_back_from_a_broken_one() {
    let (rig, servers) = lab_rig("update");
    let port = rig.port.expect("the image rig has a port");
    let long = system_tests::boot_timeout() * 2;
    let mut board = start_board(&rig, "first", Some(&servers.net_extra()));
    // The release is built while the device boots.
    let release = servers
        .vendor
        .release("9.1.0", system_tests::releases::Kind::Good, 1, false);
    let first_ready = board.wait_for("hearthd: HTTPS ready on");
    let code = claim(&board, port);
    let (seen, first) = servers.wait_status(0, long, "from the device", |s| s["state"] == "idle");
    assert_eq!(first["update"]["running_slot"], "A", "{first}");

    let started = Instant::now();
    servers.announce(&release);
    let (seen, _) = servers.wait_status(seen, long, "installing", |s| s["state"] == "installing");
    let (seen, notice) = servers.wait_status(seen, long, "rebooting (the owner's warning)", |s| {
        s["state"] == "rebooting"
    });
    assert!(notice["update"]["until"].is_string(), "{notice}");
    board.wait_for("Hearth: trial boot 1 of 1 of slot B");
    board.wait_for("root=/dev/nvme0n1p3");
    let (_, status) = servers.wait_status(seen, long, "committed 9.1.0", |s| {
        s["version"] == "9.1.0"
            && s["update"]["last_result"]["version"] == "9.1.0"
            && s["update"]["last_result"]["outcome"] == "installed"
    });
    eprintln!(
        "[uboot update] 0.1.0 -> 9.1.0 on aarch64 took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(status["update"]["running_slot"], "B", "{status}");
    // The owner's password, the certificate (both on /data) and the spent
    // setup code came through the slot switch.
    let trial_ready = board.wait_for("hearthd: HTTPS ready on");
    let fingerprint = |line: &str| system_tests::console_fingerprint(line, "fingerprint ");
    assert!(fingerprint(&first_ready).is_some(), "{first_ready}");
    assert_eq!(fingerprint(&first_ready), fingerprint(&trial_ready));
    let login = serde_json::json!({ "password": PASSWORD }).to_string();
    let update = update_status(port, &login);
    assert_eq!(update["running_slot"], "B", "{update}");
    assert_eq!(update["running_version"], "9.1.0", "{update}");
    let body = serde_json::json!({ "setup_code": code, "password": PASSWORD, "password_confirm": PASSWORD })
        .to_string();
    let again = crate::board::call(port, "POST", "/api/setup", &[], Some(&body));
    assert_eq!(again.status, 409, "the spent setup code: {}", again.body);
    assert!(
        !board
            .serial_since("Hearth: trial boot 1 of 1 of slot B")
            .contains("SETUP CODE"),
        "a claimed device must not show a setup code"
    );

    // 9.2.0 fails its health check on the device: installed into A, its
    // trial fails, hearthd restarts the board, U-Boot falls back to B by
    // itself, and 9.2.0 is refused from then on, with the reason.
    let broken = servers.vendor.release(
        "9.2.0",
        system_tests::releases::Kind::FailsHealthCheck,
        1,
        false,
    );
    servers.announce(&broken);
    board.wait_for("Hearth: trial boot 1 of 1 of slot A");
    board.wait_for("Hearth: slot A used 1 of 1 trial boot(s) without a commit; falling back");
    board.wait_for("Hearth: booting slot B (partition 3), ustate=3");
    let (_, status) = servers.wait_status(seen, long, "9.2.0 rolled back", |s| {
        s["update"]["last_result"]["outcome"] == "rolled-back"
    });
    assert_eq!(status["update"]["running_slot"], "B", "{status}");
    assert_eq!(status["version"], "9.1.0", "{status}");
    assert_eq!(
        status["update"]["refused_versions"],
        serde_json::json!(["9.2.0"]),
        "{status}"
    );
    assert!(
        status["update"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("9.2.0")),
        "{status}"
    );
    board.wait_for("hearthd: HTTPS ready on");
    let update = update_status(port, &login);
    assert_eq!(update["running_version"], "9.1.0", "{update}");
    board.power_off();
    let env = rig.env();
    assert_eq!(get(&env, "hearth_slot"), Some("B"), "{env:?}");
    assert_eq!(
        get(&env, "ustate"),
        Some("0"),
        "after the fallback hearthd sets SWUpdate's state back to OK: {env:?}"
    );
}

/// Power cuts (QEMU killed) at seeded points of aarch64 updates: as the
/// download begins, while installing, around the reboot, and during the
/// trial boot and its commit. After each the board comes back on a working
/// slot, with the owner's password; without more cuts the last update
/// finishes or is cleanly refused. `HEARTH_POWER_CUT_SEED` repeats a run,
/// `HEARTH_ARM64_POWER_CUTS` sets the number of cuts (3).
#[test]
fn g_power_cuts_during_arm64_updates_never_lose_the_device_or_the_owners_password() {
    // Three cuts: three different phases of the four.
    let (seed, phases, mut rng) = crate::update::power_cut_plan("HEARTH_ARM64_POWER_CUTS", 3);
    let cuts = phases.len();
    let (rig, servers) = lab_rig("power");
    let port = rig.port.expect("the image rig has a port");
    let long = system_tests::boot_timeout() * 2;
    let good = system_tests::releases::Kind::Good;
    let mut board = start_board(&rig, "boot0", Some(&servers.net_extra()));
    let mut minor = 1;
    let mut target = format!("9.{minor}.0");
    let release = servers.vendor.release(&target, good, 1, false);
    board.wait_for("hearthd: HTTPS ready on");
    let _ = claim(&board, port);
    let login = serde_json::json!({ "password": PASSWORD }).to_string();
    servers.announce(&release);
    let mut seen = 0;
    let mut outcomes = Vec::new();
    for (cut, phase) in (1..=cuts).zip(phases) {
        let (name, delay) = match phase {
            0 => {
                servers.wait_status(seen, long, "installing", |s| s["state"] == "installing");
                ("as the download begins", rng.below(3))
            }
            1 => {
                servers.wait_status(seen, long, "installing", |s| s["state"] == "installing");
                ("while downloading and installing", 3 + rng.below(20))
            }
            2 => {
                servers.wait_status(seen, long, "rebooting", |s| s["state"] == "rebooting");
                ("around the reboot", rng.below(25))
            }
            _ => {
                board.wait_for("Hearth: trial boot 1 of 1");
                ("during the trial boot and the commit", rng.below(40))
            }
        };
        std::thread::sleep(Duration::from_secs(delay));
        eprintln!("[uboot power] cut {cut}/{cuts}: {name}, {delay} s in (target {target})");
        board.kill();

        // Back on a working slot with the owner's password.
        seen = servers.status.count();
        board = start_board(&rig, &format!("boot{cut}"), Some(&servers.net_extra()));
        board.wait_for("hearthd: HTTPS ready on");
        let update = crate::update::once_started(|| update_status(port, &login));
        if let Some(outcome) = crate::update::cut_outcome(cut, &update, &target) {
            outcomes.push(outcome);
            minor += 1;
            target = format!("9.{minor}.0");
            servers.announce(&servers.vendor.release(&target, good, 1, false));
        }
    }
    // Without more cuts the last update finishes, or has been cleanly refused.
    let (_, last) = servers.wait_status(seen, long * 2, "settled", |s| {
        (s["version"] == target.as_str()
            && s["update"]["last_result"]["outcome"] == "installed"
            && s["update"]["last_result"]["version"] == target.as_str())
            || s["update"]["refused_versions"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x == target.as_str()))
    });
    eprintln!(
        "[uboot power] seed {seed}, updates finished or abandoned: {outcomes:?}, last: {}",
        last["update"]["last_result"]
    );
    // hearthd published the settled status, so it serves HTTPS (the ready
    // line may have been read already, when the last cut ended in a
    // fallback and no reboot followed).
    let update = update_status(port, &login);
    if update["running_version"] == target.as_str() {
        assert_eq!(update["state"], "idle", "{update}");
    } else {
        // Refused after its trial boots were cut: the device says so and
        // runs the slot it fell back to.
        assert_eq!(update["state"], "failed", "{update}");
        assert!(
            update["refused_versions"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x == target.as_str())),
            "{update}"
        );
        assert!(
            update["last_error"]
                .as_str()
                .is_some_and(|e| e.contains(&target)),
            "{update}"
        );
    }
    board.power_off();
}

/// hearth-trial-watch on aarch64: a release on which nothing commits (its
/// hearthd never starts) is installed; on its trial boot the watch reads
/// `ustate=1` from the flash and, when its deadline passes, reboots, and
/// U-Boot falls back by itself. The old slot's hearthd reports it.
#[test]
fn h_the_trial_watch_reboots_an_arm64_trial_that_nobody_commits_and_uboot_falls_back() {
    let (rig, servers) = lab_rig("watch");
    let port = rig.port.expect("the image rig has a port");
    let long = system_tests::boot_timeout() * 2;
    let mut board = start_board(&rig, "first", Some(&servers.net_extra()));
    let release = servers.vendor.release(
        "9.1.0",
        system_tests::releases::Kind::NeverCommits,
        1,
        false,
    );
    board.wait_for("hearthd: HTTPS ready on");
    let _ = claim(&board, port);
    let (seen, _) = servers.wait_status(0, long, "from the device", |s| s["state"] == "idle");
    servers.announce(&release);
    servers.wait_status(seen, long, "rebooting", |s| s["state"] == "rebooting");
    board.wait_for("Hearth: trial boot 1 of 1 of slot B");
    let secs = system_tests::releases::TRIAL_WATCH_TEST_SECS;
    board.wait_for(&format!(
        "trial-watch: this is a trial boot of a new slot; hearthd has {secs} s to commit it"
    ));
    board.wait_for(&format!(
        "trial-watch: the new slot was not committed within {secs} s; rebooting so the bootloader falls back"
    ));
    board.wait_for("Hearth: slot B used 1 of 1 trial boot(s) without a commit; falling back");
    board.wait_for("Hearth: booting slot A (partition 2), ustate=3");
    let trial = board.serial_since("Hearth: trial boot 1 of 1 of slot B");
    let trial = &trial[..trial.find("falling back").unwrap_or(trial.len())];
    assert!(
        !trial.contains("hearthd: HTTPS ready"),
        "hearthd must not have run on the release that never commits"
    );
    let (_, status) = servers.wait_status(seen, long, "9.1.0 rolled back", |s| {
        s["update"]["last_result"]["outcome"] == "rolled-back"
    });
    assert_eq!(status["update"]["running_slot"], "A", "{status}");
    assert_eq!(status["version"], "0.1.0", "{status}");
    // No health verdict came from 9.1.0, as after a power cut in its first
    // start: it is tried once more (and refused if that fails too).
    assert!(
        status["update"]["last_result"]["detail"]
            .as_str()
            .is_some_and(|e| e.contains("9.1.0 did not finish starting")),
        "{status}"
    );
    board.power_off();
}

/// A U-Boot rig with the aarch64 image, and the update lab's servers with a
/// vendor whose releases are made from that image; the device provisioned
/// with its fleet identity.
fn lab_rig(name: &str) -> (Rig, Servers) {
    let rig = Rig::new(name, Slots::DevImage);
    let servers = Servers::start(&[DEVICE_ID], None, Vendor::from_rootfs(arm64_rootfs()));
    let scratch = rig.path("factory-scratch");
    fs::create_dir_all(&scratch).expect("scratch dir");
    servers.provision(
        &RawDisk {
            image: rig.path("disk.img"),
            dir: scratch,
        },
        None,
        "",
    );
    (rig, servers)
}

/// Claims the device with the setup code on its console; returns the code.
fn claim(board: &Board, port: u16) -> String {
    let code = crate::owner::setup_code(&board.serial()).expect("a setup code on the console");
    let body = serde_json::json!({ "setup_code": code, "password": PASSWORD, "password_confirm": PASSWORD })
        .to_string();
    let claimed = crate::board::call(port, "POST", "/api/setup", &[], Some(&body));
    assert_eq!(claimed.status, 201, "{}", claimed.body);
    code
}

#[derive(Clone, Copy)]
enum Slots {
    BothBootable,
    SlotBEmpty,
    /// Both slots hold the aarch64 development image, and the board has a
    /// network port forwarded to the device's HTTPS port.
    DevImage,
}

/// One test disk and its flash bank, in a temporary directory.
struct Rig {
    name: String,
    dir: tempfile::TempDir,
    /// 127.0.0.1:port reaches the device's HTTPS port (DevImage only).
    port: Option<u16>,
}

impl Rig {
    fn new(name: &str, slots: Slots) -> Rig {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(tmp).expect("target tmp dir");
        let dir = tempfile::Builder::new()
            .prefix(&format!("uboot-{name}-"))
            .tempdir_in(tmp)
            .expect("temp dir");
        let mut cmd = Command::new(script());
        cmd.arg("disk").arg(dir.path());
        match slots {
            Slots::BothBootable => {}
            Slots::SlotBEmpty => {
                cmd.arg("--empty-slot-b");
            }
            Slots::DevImage => {
                cmd.arg("--rootfs").arg(arm64_rootfs());
            }
        }
        eprintln!("[uboot {name}] assembling the disk: {cmd:?}");
        let started = Instant::now();
        let status = {
            let _first = FIRST_DISK.lock().unwrap_or_else(|e| e.into_inner());
            cmd.status().expect("run qemu/uboot-arm64 disk")
        };
        assert!(
            status.success(),
            "qemu/uboot-arm64 disk failed ({status}): see its output above"
        );
        eprintln!(
            "[uboot {name}] disk ready after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Rig {
            name: name.to_owned(),
            dir,
            port: matches!(slots, Slots::DevImage).then(system_tests::free_port),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn boot(&self, label: &str) -> Board {
        start_board(self, label, None)
    }

    /// A first boot on the factory-new flash: U-Boot saves its environment
    /// (with hearth_env=1) once, as on a new board. Then the plug is pulled.
    fn first_boot(&self) {
        let mut board = self.boot("first");
        board.wait_for("Saving Environment to Flash...");
        board.wait_for("Hearth: booting slot A (partition 2)");
        board.wait_for("Waiting for root device /dev/vda2...");
        board.power_off();
    }

    /// `fw_printenv` over the two copies (libubootenv picks the valid, newer one).
    fn env(&self) -> BTreeMap<String, String> {
        let out = Command::new("fw_printenv")
            .arg("-c")
            .arg(self.path("fw_env.config"))
            .output()
            .expect("run fw_printenv (apt-get install libubootenv-tool)");
        assert!(
            out.status.success(),
            "fw_printenv failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        eprintln!(
            "[uboot {}] environment: hearth_slot={:?} bootcount={:?} ustate={:?}",
            self.name,
            get(&env, "hearth_slot"),
            get(&env, "bootcount"),
            get(&env, "ustate")
        );
        env
    }

    /// Arms slot B the way the update's `bootenv` does: three variables in
    /// one environment write (`fw_setenv -s`, libubootenv like SWUpdate).
    fn arm_slot_b(&self) {
        let script = self.path("arm-slot-b.txt");
        fs::write(&script, "hearth_slot=B\nbootcount=0\nustate=1\n").expect("write script");
        let status = Command::new("fw_setenv")
            .arg("-c")
            .arg(self.path("fw_env.config"))
            .arg("-s")
            .arg(&script)
            .status()
            .expect("run fw_setenv (apt-get install libubootenv-tool)");
        assert!(status.success(), "fw_setenv -s failed ({status})");
        eprintln!("[uboot {}] armed slot B for one trial boot", self.name);
    }

    /// The commit as the device makes it: the real swupdate with its U-Boot
    /// backend (`-B uboot`, libubootenv, /etc/fw_env.config), asked over its
    /// IPC socket to set the update state to OK ('0').
    fn commit_with_swupdate(&self) {
        let swupdate = Swupdate::start(self);
        swupdate
            .client
            .set_update_state(UpdateState::Ok)
            .unwrap_or_else(|e| panic!("SET_UPDATE_STATE '0': {e}\n{}", swupdate.log()));
        let state = swupdate
            .client
            .get_update_state()
            .unwrap_or_else(|e| panic!("GET_UPDATE_STATE: {e}\n{}", swupdate.log()));
        assert_eq!(state, UpdateState::Ok, "{}", swupdate.log());
        eprintln!(
            "[uboot {}] committed through swupdate's IPC (SET_UPDATE_STATE '0')",
            self.name
        );
    }

    /// Flips one byte of the environment copy that holds `needle`, so its
    /// CRC no longer matches: a write cut short by a power loss.
    fn corrupt_copy_holding(&self, needle: &str) {
        let config = fs::read_to_string(self.path("fw_env.config")).expect("fw_env.config");
        let copies: Vec<(u64, u64)> = config
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 4).then(|| (hex(f[1]), hex(f[2])))
            })
            .collect();
        assert_eq!(copies.len(), 2, "two environment copies: {config}");
        let flash_path = self.path("env.flash");
        let mut flash = fs::read(&flash_path).expect("read env.flash");
        let mut hit = None;
        for (i, (off, size)) in copies.iter().enumerate() {
            let copy = &flash[*off as usize..(*off + *size) as usize];
            if copy.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                assert!(hit.is_none(), "both copies hold {needle:?}");
                hit = Some((i, *off as usize));
            }
        }
        let (index, off) = hit.unwrap_or_else(|| panic!("no copy holds {needle:?}"));
        // Past the CRC and the flag byte: the data the CRC covers.
        flash[off + 16] ^= 0xff;
        fs::write(&flash_path, flash).expect("write env.flash");
        eprintln!(
            "[uboot {}] corrupted environment copy {} (the one holding {needle:?})",
            self.name,
            index + 1
        );
    }
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex number in fw_env.config")
}

fn get<'a>(env: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    env.get(key).map(String::as_str)
}

/// The aarch64 development image: `HEARTH_ARM64_ROOTFS`, or what
/// `qemu/build-image --arch arm64` made (tests/run builds it).
fn arm64_rootfs() -> PathBuf {
    let path = std::env::var_os("HEARTH_ARM64_ROOTFS").map_or_else(
        || system_tests::repo_root().join("qemu/out/arm64/rootfs.ext4"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "There is no aarch64 image at {}: run qemu/build-image --arch arm64 first (tests/run does), or point HEARTH_ARM64_ROOTFS at one.",
        path.display()
    );
    path
}

fn script() -> PathBuf {
    system_tests::repo_root().join("qemu/uboot-arm64")
}

/// Boots the rig's disk through U-Boot as `label`.
fn start_board(rig: &Rig, label: &str, net_extra: Option<&str>) -> Board {
    let mut command = Command::new(script());
    command
        .arg("boot")
        .arg(rig.dir.path())
        .arg("--log")
        .arg(rig.path(&format!("serial-{label}.log")))
        .arg("--exit-with-parent");
    if let Some(port) = rig.port {
        command.arg("--port").arg(port.to_string());
    }
    if let Some(rules) = net_extra {
        command.arg("--net-extra").arg(rules);
    }
    Board::launch(
        command,
        &format!("uboot {}/{label}", rig.name),
        rig.path(&format!("serial-{label}.log")),
        rig.path(&format!("boot-{label}.stderr")),
        rig.path("monitor.sock"),
    )
}

/// The real swupdate with its U-Boot backend, isolated: a private $TMPDIR
/// for its sockets, and a private mount namespace (`unshare`, with a user
/// namespace when not root) in which /etc is an overlay whose fw_env.config
/// is the rig's. The host's /etc is never written.
struct Swupdate {
    child: Child,
    client: Client,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Swupdate {
    fn start(rig: &Rig) -> Swupdate {
        let dir = tempfile::Builder::new()
            .prefix("swupdate-")
            .tempdir_in(rig.dir.path())
            .expect("temp dir");
        let (tmp, upper, work) = (
            dir.path().join("tmp"),
            dir.path().join("etc-upper"),
            dir.path().join("etc-work"),
        );
        for d in [&tmp, &upper, &work] {
            fs::create_dir_all(d).expect("swupdate dirs");
        }
        fs::copy(rig.path("fw_env.config"), upper.join("fw_env.config")).expect("fw_env.config");
        // 2022.12 wants a globals section when -f is given; our own file
        // keeps the host's /etc/swupdate.cfg out.
        let cfg = dir.path().join("swupdate.cfg");
        fs::write(&cfg, "globals: {\n  verbose = true;\n};\n").expect("swupdate.cfg");
        // Debian's swupdate is built for signed images and will not start
        // without a key; nothing is installed here.
        let key = system_tests::repo_root()
            .join("yocto-layer/meta-hearth/files/dev-keys/hearth-dev-root.cert.pem");
        let log = dir.path().join("swupdate.log");
        let out = fs::File::create(&log).expect("swupdate log");
        let mut cmd = Command::new("unshare");
        if !swupdate_testkit::is_root() {
            cmd.args(["--user", "--map-root-user"]);
        }
        cmd.env("TMPDIR", &tmp)
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount -t overlay hearth-etc -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc && shift 2 && exec swupdate "$@""#)
            .arg("sh")
            .arg(&upper)
            .arg(&work)
            .args(["-v", "-f"])
            .arg(&cfg)
            .arg("-k")
            .arg(&key)
            .args(["-B", "uboot"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .process_group(0);
        let mut child = cmd.spawn().expect("start unshare/swupdate");
        let config = ClientConfig {
            io_timeout: Duration::from_secs(10),
            ..ClientConfig::in_dir(&tmp)
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&config.control_socket).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "swupdate exited early ({status}):\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "swupdate's control socket did not appear:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Swupdate {
            child,
            client: Client::new(config),
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Swupdate {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

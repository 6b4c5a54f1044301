//! The gate between a client and the real Debian `swupdate` 2022.12.
//!
//! The attack of issue 14 item 4: a client of SWUpdate's control socket
//! (a compromised hearthd) opens the version range with
//! `SET_VERSIONS_RANGE` minimum "0.0.0" and installs an older release the
//! vendor once signed. Straight to SWUpdate it works, although SWUpdate was
//! started with `-N` at the running version; through the gate it is refused.
//!
//! Uses swupdate-rs's harness (isolated daemon, throw-away CMS key, signed
//! `.swu`); needs `swupdate`, `openssl`, `cpio` and `unshare`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[allow(dead_code)]
#[path = "../../swupdate-rs/tests/real_swupdate/harness.rs"]
mod harness;

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use harness::{Daemon, SLOT_FILL, SwuSpec, test_image};
use swupdate_rs::{
    Client, ClientConfig, Error, InstallRequest, ProgressProtocol, RecoveryStatus, UpdateState,
    VersionsRange,
};
use update_gate::{Gate, GateConfig, RunningVersion};

/// The version of the "running system" in these tests.
const RUNNING: &str = "2.0.0";

/// SWUpdate as the device starts it: `-N` at the running version.
fn swupdate() -> Daemon {
    Daemon::start_with_args(&["-N", RUNNING])
}

/// A gate in front of `d` on its own sockets, and a client of the gate.
fn gate(d: &Daemon) -> (Client, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("update-gate-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let control = UnixListener::bind(dir.path().join("sockinstctrl")).unwrap();
    let progress = UnixListener::bind(dir.path().join("swupdateprog")).unwrap();
    let upstream = d.client.config();
    let gate = Gate::new(GateConfig {
        control_socket: upstream.control_socket.clone(),
        progress_socket: upstream.progress_socket.clone(),
        running: RunningVersion::new(RUNNING).unwrap(),
        io_timeout: Duration::from_secs(10),
    });
    std::thread::spawn(move || gate.serve(control, Some(progress)));
    let client = Client::new(ClientConfig {
        control_socket: dir.path().join("sockinstctrl"),
        progress_socket: dir.path().join("swupdateprog"),
        ..upstream.clone()
    });
    (client, dir)
}

fn release(d: &Daemon, version: &str, seed: u32) -> (Vec<u8>, Vec<u8>) {
    let image = test_image(seed);
    let swu = d.build_swu(&SwuSpec {
        version,
        image: &image,
        installed_directly: false,
        signer: &d.trusted,
        tamper_after_signing: false,
    });
    (image, swu)
}

/// What a compromised hearthd does: open the range, then install.
fn downgrade(client: &Client, swu: &[u8]) -> Result<swupdate_rs::InstallReport, Error> {
    client.set_versions_range(&VersionsRange {
        minimum: "0.0.0".into(),
        maximum: String::new(),
        current: "0.0.0".into(),
    })?;
    let mut installer = client.start_install(&InstallRequest::default())?;
    for chunk in swu.chunks(4096) {
        if installer.write_all(chunk).is_err() {
            break; // SWUpdate stopped reading: finish() says why.
        }
    }
    installer.finish()
}

fn untouched(d: &Daemon) -> bool {
    d.slot(&d.slot_b).iter().all(|&b| b == SLOT_FILL) && d.grubenv_var("rootpart").is_none()
}

#[test]
fn straight_to_swupdate_a_client_lowers_the_floor_and_installs_an_older_release() {
    // This is the attack the gate exists for; it documents that SWUpdate's
    // own -N does not hold against its IPC clients.
    let d = swupdate();
    let (image, older) = release(&d, "1.0.0", 21);

    // -N alone holds: without a range the older release is refused...
    let err = d
        .client
        .install(&InstallRequest::default(), &older[..])
        .unwrap_err();
    println!("no range, -N {RUNNING}: {err}");
    assert!(untouched(&d), "{}", d.log());

    // ...but one SET_VERSIONS_RANGE from the client replaces it.
    downgrade(&d.client, &older).unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(d.slot(&d.slot_b), image, "the older release is in slot B");
    assert_eq!(d.grubenv_var("rootpart").as_deref(), Some("3"));
}

#[test]
fn through_the_gate_the_same_client_cannot_install_an_older_release() {
    let d = swupdate();
    let (client, _dir) = gate(&d);
    let (_, older) = release(&d, "1.0.0", 22);
    let err = downgrade(&client, &older).unwrap_err();
    println!("through the gate: {err}");
    assert!(matches!(err, Error::InstallFailed { .. }), "{err:?}");
    assert!(untouched(&d), "{}", d.log());

    // An empty minimum (SWUpdate 2022.12: "no downgrade check") neither.
    client
        .set_versions_range(&VersionsRange::default())
        .unwrap();
    let err = client
        .install(&InstallRequest::default(), &older[..])
        .unwrap_err();
    assert!(matches!(err, Error::InstallFailed { .. }), "{err:?}");
    assert!(untouched(&d), "{}", d.log());
}

#[test]
fn through_the_gate_hearthds_requests_work_and_a_newer_release_installs() {
    let d = swupdate();
    let (client, _dir) = gate(&d);
    let (image, newer) = release(&d, "2.1.0", 23);

    let mut progress = client
        .connect_progress(ProgressProtocol::SWUPDATE_2022_12)
        .unwrap();
    progress
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The connect returns once the gate's listener has it queued; the gate
    // connects to SWUpdate's progress socket only when its thread accepts,
    // and SWUpdate does not replay frames sent before that. On a loaded
    // machine (CI, beside QEMU guests) that thread once ran after the whole
    // install and the relayed frames never came: give it time to connect.
    std::thread::sleep(Duration::from_secs(3));
    // As hearthd asks: exactly the release's version.
    client
        .set_versions_range(&VersionsRange {
            minimum: "2.1.0".into(),
            maximum: "2.1.0".into(),
            current: RUNNING.into(),
        })
        .unwrap();
    assert_eq!(client.get_update_state().unwrap(), UpdateState::Ok);
    let report = client
        .install(&InstallRequest::default(), &newer[..])
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(report.bytes_written, newer.len() as u64);
    assert_eq!(d.slot(&d.slot_b), image);
    assert_eq!(d.grubenv_var("rootpart").as_deref(), Some("3"));

    // The progress socket is relayed: the installation's frames arrive.
    let mut seen = Vec::new();
    while !matches!(seen.last(), Some(RecoveryStatus::Success)) {
        seen.push(progress.next_message().unwrap().status);
    }
    assert!(seen.contains(&RecoveryStatus::Start), "{seen:?}");

    // The commit after the health check.
    client.set_update_state(UpdateState::Ok).unwrap();
    assert_eq!(client.get_status().unwrap().current, RecoveryStatus::Idle);
}

#[test]
fn the_gate_answers_requests_hearthd_never_makes_with_a_nack() {
    let d = swupdate();
    let (client, _dir) = gate(&d);
    for (request, result) in [
        ("POST_UPDATE", client.post_update().map(drop)),
        ("GET_HW_REVISION", client.get_hw_revision().map(drop)),
        ("NOTIFY_STREAM", client.notify_stream().map(drop)),
    ] {
        match result {
            Err(Error::Nack { message, .. }) => {
                assert!(
                    message.contains("hearth-update-gate refuses"),
                    "{request}: {message}"
                );
            }
            Err(Error::Io { .. }) | Err(Error::Protocol { .. }) if request == "NOTIFY_STREAM" => {}
            other => panic!("{request}: {other:?}"),
        }
    }
}

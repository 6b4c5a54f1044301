//! `swupdate-rs` against the real Debian `swupdate` 2022.12 binary.
//!
//! Each test starts its own daemon in a private mount namespace (see
//! `harness.rs`), with file-backed slots, a GRUB environment file and a
//! throw-away CMS certificate, all in a temporary directory under
//! `target/tmp`. Requires `/usr/bin/swupdate` (Debian package `swupdate`),
//! `openssl`, `cpio` and `unshare` (root, or unprivileged user namespaces).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod harness;

use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

use harness::{Daemon, SLOT_FILL, SLOT_SIZE, Signer, SwuSpec, find, test_image};
use swupdate_rs::{
    Error, InstallRequest, MsgType, ProgressLayout, ProgressMessage, ProgressProtocol,
    RecoveryStatus, SourceType, UpdateState, VersionsRange,
};

fn good_swu(d: &Daemon, image: &[u8]) -> Vec<u8> {
    d.build_swu(&SwuSpec {
        version: "1.0.0",
        image,
        installed_directly: false,
        signer: &d.trusted,
        tamper_after_signing: false,
    })
}

/// Installs through the `Installer` handle, in small writes as a download
/// would, and returns the result.
fn install_in_chunks(
    d: &Daemon,
    req: &InstallRequest,
    swu: &[u8],
) -> Result<swupdate_rs::InstallReport, Error> {
    let mut installer = d.client.start_install(req)?;
    for chunk in swu.chunks(4096) {
        if installer.write_all(chunk).is_err() {
            // SWUpdate stopped reading: finish() tells why.
            break;
        }
    }
    installer.finish()
}

fn assert_untouched(d: &Daemon) {
    assert!(
        d.slot(&d.slot_b).iter().all(|&b| b == SLOT_FILL),
        "slot B was written"
    );
    assert!(
        d.slot(&d.slot_a).iter().all(|&b| b == SLOT_FILL),
        "slot A was written"
    );
    assert_eq!(d.grubenv_var("rootpart"), None, "boot env was switched");
}

#[test]
fn good_swu_installs_into_slot_b_and_progress_frames_decode_with_the_2022_12_layout() {
    let d = Daemon::start();
    let image = test_image(1);
    let swu = good_swu(&d, &image);

    // Read the progress socket on a thread: swupdate blocks its installer
    // while a progress client does not read.
    let mut progress = d
        .client
        .connect_progress(ProgressProtocol::SWUPDATE_2022_12)
        .unwrap();
    assert_eq!(progress.connect_ack(), None);
    progress
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (tx, rx) = mpsc::channel::<ProgressMessage>();
    let reader = std::thread::spawn(move || {
        loop {
            let frame = progress.next_message().unwrap();
            let end = matches!(
                frame.status,
                RecoveryStatus::Success | RecoveryStatus::Failure
            );
            tx.send(frame).unwrap();
            if end {
                break;
            }
        }
    });
    // 2022.12 has no connect ack: give the progress thread time to
    // register the connection before the START frame is sent.
    std::thread::sleep(Duration::from_secs(1));

    let req = InstallRequest {
        source: SourceType::Local,
        info: "hearth-test".into(),
        ..Default::default()
    };
    let report = install_in_chunks(&d, &req, &swu).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.bytes_written, swu.len() as u64);
    assert!(
        report.log.iter().any(|l| l.contains("SWUPDATE successful")),
        "{:?}",
        report.log
    );

    assert_eq!(d.slot(&d.slot_b), image, "slot B must hold the image");
    assert!(d.slot(&d.slot_a).iter().all(|&b| b == SLOT_FILL));
    // bootenv of copy2 applied, and ustate = INSTALLED.
    assert_eq!(d.grubenv_var("rootpart").as_deref(), Some("3"));
    assert_eq!(d.grubenv_var("upgrade_available").as_deref(), Some("1"));
    assert_eq!(d.grubenv_var("ustate").as_deref(), Some("1"));
    assert_eq!(d.client.get_update_state().unwrap(), UpdateState::Installed);

    reader.join().unwrap();
    let frames: Vec<ProgressMessage> = rx.into_iter().collect();
    let statuses: Vec<RecoveryStatus> = frames.iter().map(|f| f.status).collect();
    println!("progress statuses: {statuses:?}");
    let start = &frames[0];
    assert_eq!(start.status, RecoveryStatus::Start, "{statuses:?}");
    assert_eq!(start.apiversion, 0, "2022.12 leaves `magic` zero");
    assert_eq!(start.source, SourceType::Local);
    assert_eq!(start.info, "hearth-test");
    let run = frames
        .iter()
        .find(|f| f.status == RecoveryStatus::Run && f.cur_image == "rootfs.img")
        .unwrap_or_else(|| panic!("no RUN frame for rootfs.img: {frames:#?}"));
    assert_eq!(run.hnd_name, "raw");
    assert_eq!(run.nsteps, 1);
    assert_eq!(run.cur_step, 1);
    let last = frames.last().unwrap();
    assert_eq!(last.status, RecoveryStatus::Success);
    // Sanity of the layout choice: the packed layout reads other fields.
    assert_ne!(
        ProgressLayout::V2022_12.frame_size(),
        ProgressLayout::Packed2025_12.frame_size()
    );
}

#[test]
fn install_over_ipc_selection_writes_slot_a() {
    let d = Daemon::start();
    let image = test_image(2);
    let swu = good_swu(&d, &image);
    let req = InstallRequest {
        software_set: "stable".into(),
        running_mode: "copy1".into(),
        ..Default::default()
    };
    d.client
        .install(&req, &swu[..])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.slot(&d.slot_a), image);
    assert!(d.slot(&d.slot_b).iter().all(|&b| b == SLOT_FILL));
    assert_eq!(d.grubenv_var("rootpart").as_deref(), Some("2"));
}

#[test]
fn flipped_byte_in_the_image_is_refused_and_slots_are_untouched() {
    let d = Daemon::start();
    let image = test_image(3);
    let mut swu = good_swu(&d, &image);
    let at = find(&swu, &image[..64]).unwrap() + SLOT_SIZE / 2;
    swu[at] ^= 0x01;

    let err = install_in_chunks(&d, &InstallRequest::default(), &swu).unwrap_err();
    println!("{err}");
    let Error::InstallFailed { result, errors, .. } = &err else {
        panic!("expected InstallFailed, got {err:?}");
    };
    assert_eq!(*result, RecoveryStatus::Failure);
    assert!(!errors.is_empty(), "SWUpdate's reasons must be reported");
    assert_untouched(&d);
}

#[test]
fn signature_by_an_untrusted_key_is_refused_and_slots_are_untouched() {
    let d = Daemon::start();
    let image = test_image(4);
    let rogue = Signer::generate(d.root(), "rogue");
    let swu = d.build_swu(&SwuSpec {
        version: "1.0.0",
        image: &image,
        installed_directly: false,
        signer: &rogue,
        tamper_after_signing: false,
    });
    let err = d
        .client
        .install(&InstallRequest::default(), &swu[..])
        .unwrap_err();
    println!("{err}");
    let Error::InstallFailed { errors, .. } = &err else {
        panic!("expected InstallFailed, got {err:?}");
    };
    assert!(
        errors
            .iter()
            .any(|e| e.contains("Authentication of all signatures failed")),
        "{errors:?}"
    );
    assert_untouched(&d);
}

#[test]
fn sw_description_changed_in_transit_is_refused_by_the_cpio_checksum() {
    let d = Daemon::start();
    let image = test_image(5);
    let mut swu = good_swu(&d, &image);
    // Same length, so the cpio stays well-formed; its crc checksum breaks.
    let at = find(&swu, b"version = \"1.0.0\"").unwrap();
    swu[at..at + 17].copy_from_slice(b"version = \"9.0.0\"");
    let err = d
        .client
        .install(&InstallRequest::default(), &swu[..])
        .unwrap_err();
    println!("{err}");
    let Error::InstallFailed { errors, .. } = &err else {
        panic!("expected InstallFailed, got {err:?}");
    };
    assert!(
        errors.iter().any(|e| e.contains("Checksum WRONG")),
        "{errors:?}"
    );
    assert_untouched(&d);
}

#[test]
fn sw_description_changed_after_signing_is_refused_by_the_signature() {
    let d = Daemon::start();
    let image = test_image(8);
    let swu = d.build_swu(&SwuSpec {
        version: "1.0.0",
        image: &image,
        installed_directly: false,
        signer: &d.trusted,
        tamper_after_signing: true,
    });
    let err = d
        .client
        .install(&InstallRequest::default(), &swu[..])
        .unwrap_err();
    println!("{err}");
    let Error::InstallFailed { errors, .. } = &err else {
        panic!("expected InstallFailed, got {err:?}");
    };
    assert!(
        errors
            .iter()
            .any(|e| e.contains("Signature verification failed")),
        "{errors:?}"
    );
    assert_untouched(&d);
}

#[test]
fn installed_directly_streams_into_the_slot_before_the_hash_is_checked() {
    // What `installed-directly = true` means for a corrupted image (observed
    // with 2022.12; HEAD's stream_interface.c has the same code path): the
    // raw handler writes while hashing, so the *inactive* slot is
    // overwritten before the mismatch is found. The install fails and the
    // boot slot is not switched, but swupdate leaves its transaction marker
    // set (`recovery_status=in_progress`, `ustate=7`): it marks failure only
    // for errors after extraction. The caller must reset `ustate` (shown
    // below), and the boot script must not treat a leftover `in_progress`
    // as a reason to leave the current slot.
    let d = Daemon::start();
    let image = test_image(9);
    let mut swu = d.build_swu(&SwuSpec {
        version: "1.0.0",
        image: &image,
        installed_directly: true,
        signer: &d.trusted,
        tamper_after_signing: false,
    });
    let at = find(&swu, &image[..64]).unwrap() + SLOT_SIZE / 2;
    swu[at] ^= 0x01;
    let err = install_in_chunks(&d, &InstallRequest::default(), &swu).unwrap_err();
    println!("{err}");
    let Error::InstallFailed { errors, .. } = &err else {
        panic!("expected InstallFailed, got {err:?}");
    };
    assert!(
        errors.iter().any(|e| e.contains("HASH mismatch")),
        "{errors:?}"
    );
    println!("grubenv after the failed install: {:?}", d.grubenv_vars());
    assert_eq!(d.grubenv_var("rootpart"), None, "boot slot must not switch");
    assert_eq!(d.grubenv_var("upgrade_available"), None);
    assert_eq!(
        d.grubenv_var("recovery_status").as_deref(),
        Some("in_progress")
    );
    assert_eq!(
        d.client.get_update_state().unwrap(),
        UpdateState::InProgress
    );
    let changed = d
        .slot(&d.slot_b)
        .iter()
        .filter(|&&b| b != SLOT_FILL)
        .count();
    println!("slot B bytes changed: {changed}");
    assert!(
        changed > SLOT_SIZE / 2,
        "expected the streamed write to reach slot B (if this fails, swupdate \
         now checks before writing: update the crate docs)"
    );
    assert!(d.slot(&d.slot_a).iter().all(|&b| b == SLOT_FILL));
    // The client can put ustate back.
    d.client.set_update_state(UpdateState::Failed).unwrap();
    assert_eq!(d.grubenv_var("ustate").as_deref(), Some("3"));
}

#[test]
fn a_second_install_request_is_nacked_with_swupdates_text() {
    let d = Daemon::start();
    // The first installation is accepted and waits for its stream.
    let first = d.client.start_install(&InstallRequest::default()).unwrap();
    // swupdate's installer thread marks itself busy only once it wakes up
    // (a second request before that would be ACKed too: a race inside
    // swupdate). It announces itself with a notification, and the queue was
    // emptied by the ACK, so wait for the first one.
    let mut waited = 0;
    while d.client.get_status().unwrap().desc.is_empty() {
        waited += 1;
        assert!(waited < 500, "swupdate's installer never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let err = d
        .client
        .start_install(&InstallRequest::default())
        .unwrap_err();
    match &err {
        Error::Nack {
            request, message, ..
        } => {
            assert_eq!(*request, MsgType::ReqInstall);
            assert_eq!(message, "Installation in progress");
        }
        other => panic!("expected a NACK, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("Installation in progress"), "{text}");
    assert!(text.contains("sockinstctrl"), "{text}");
    // Closing the first stream without data fails that installation.
    let verdict = first.finish().unwrap_err();
    assert!(
        matches!(verdict, Error::InstallFailed { .. }),
        "{verdict:?}"
    );
    assert_untouched(&d);
}

#[test]
fn a_selection_outside_the_accepted_list_is_nacked() {
    let d = Daemon::start();
    let req = InstallRequest {
        software_set: "stable".into(),
        running_mode: "copy3".into(),
        ..Default::default()
    };
    let err = d.client.start_install(&req).unwrap_err();
    let Error::Nack { message, .. } = &err else {
        panic!("expected a NACK, got {err:?}");
    };
    assert_eq!(message, "", "2022.12 gives no text for this NACK");
    assert!(err.to_string().contains("-q list"), "{err}");
}

#[test]
fn update_state_round_trips_through_the_grub_environment() {
    let d = Daemon::start();
    // A new device's environment (the layer's defaults) says OK.
    assert_eq!(d.client.get_update_state().unwrap(), UpdateState::Ok);
    for state in [UpdateState::Testing, UpdateState::Failed, UpdateState::Ok] {
        d.client.set_update_state(state).unwrap();
        assert_eq!(d.client.get_update_state().unwrap(), state);
        let stored = d.grubenv_var("ustate").unwrap();
        assert_eq!(stored.as_bytes(), [state.as_char()]);
    }
}

#[test]
fn a_failed_bootloader_write_is_a_nack_that_says_so() {
    let d = Daemon::start();
    // grub.c refuses an environment block that is not 1024 bytes.
    std::fs::write(&d.grubenv, b"# GRUB Environment Block\n").unwrap();
    let err = d.client.set_update_state(UpdateState::Ok).unwrap_err();
    println!("{err}");
    assert!(
        matches!(&err, Error::Nack { request: MsgType::SetUpdateState, message, .. } if message.is_empty()),
        "{err:?}"
    );
    assert!(err.to_string().contains("bootloader environment"), "{err}");
}

#[test]
fn versions_range_makes_swupdate_refuse_a_downgrade() {
    let d = Daemon::start();
    d.client
        .set_versions_range(&VersionsRange {
            minimum: "2.0.0".into(),
            ..Default::default()
        })
        .unwrap();
    let image = test_image(6);
    let swu = good_swu(&d, &image); // version 1.0.0
    let err = d
        .client
        .install(&InstallRequest::default(), &swu[..])
        .unwrap_err();
    println!("{err}");
    assert!(matches!(err, Error::InstallFailed { .. }), "{err:?}");
    assert_untouched(&d);
}

#[test]
fn hw_revision_and_status_answer() {
    let d = Daemon::start();
    let hw = d.client.get_hw_revision().unwrap();
    assert_eq!(hw.boardname, harness::BOARD);
    assert_eq!(hw.revision, harness::REVISION);
    // Each GET_STATUS pops one queued notification (swupdate's start-up log
    // is queued too) and reports *its* state in `current`; once the queue
    // is empty, `current` is the installer's own state.
    let mut status = d.client.get_status().unwrap();
    for _ in 0..200 {
        if status.desc.is_empty() {
            break;
        }
        status = d.client.get_status().unwrap();
    }
    assert_eq!(status.desc, "");
    assert_eq!(status.current, RecoveryStatus::Idle);
    assert_eq!(
        status.last_result,
        RecoveryStatus::Idle,
        "nothing installed yet"
    );
}

#[test]
fn notify_stream_follows_an_installation() {
    let d = Daemon::start();
    let mut notes = d.client.notify_stream().unwrap();
    notes
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let image = test_image(7);
    let swu = good_swu(&d, &image);
    // The installation waits for our reads only as far as the socket
    // buffer allows, so read on a thread.
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        loop {
            let n = notes.next_notification().unwrap();
            let done = n.msg.contains("SWUPDATE successful") || n.status == RecoveryStatus::Failure;
            seen.push(n);
            if done {
                return seen;
            }
        }
    });
    d.client
        .install(&InstallRequest::default(), &swu[..])
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = reader.join().unwrap();
    assert!(
        seen.iter().any(|n| n.status == RecoveryStatus::Start),
        "{seen:#?}"
    );
    assert_eq!(seen.last().unwrap().status, RecoveryStatus::Success);
    assert_eq!(d.slot(&d.slot_b), image);
}

#[test]
fn an_image_rejected_mid_stream_reports_swupdates_verdict_not_the_broken_pipe() {
    // A 16 MiB payload is far more than the socket buffers hold, so
    // swupdate closes the stream (after checking sw-description) while
    // `install` is still writing.
    let d = Daemon::start();
    let rogue = Signer::generate(d.root(), "rogue");
    let image: Vec<u8> = (0..16).flat_map(|i| test_image(100 + i)).collect();
    let swu = d.build_swu(&SwuSpec {
        version: "1.0.0",
        image: &image,
        installed_directly: false,
        signer: &rogue,
        tamper_after_signing: false,
    });
    // With the Installer handle: the write fails, finish() says why.
    let mut installer = d.client.start_install(&InstallRequest::default()).unwrap();
    let write_err = installer.write_all(&swu).unwrap_err();
    println!("write error: {write_err}");
    assert!(installer.bytes_written() < swu.len() as u64);
    let verdict = installer.finish().unwrap_err();
    assert!(
        matches!(&verdict, Error::InstallFailed { errors, .. }
            if errors.iter().any(|e| e.contains("Authentication of all signatures failed"))),
        "{verdict:?}"
    );
    // Client::install does the same internally.
    let err = d
        .client
        .install(&InstallRequest::default(), &swu[..])
        .unwrap_err();
    println!("{err}");
    let Error::InstallFailed { errors, .. } = &err else {
        panic!("expected InstallFailed, got {err:?}");
    };
    assert!(
        errors
            .iter()
            .any(|e| e.contains("Authentication of all signatures failed")),
        "{errors:?}"
    );
    assert_untouched(&d);
}

#[test]
fn a_failing_reader_aborts_the_install_and_leaves_swupdate_idle() {
    struct FailsAfter<'a>(&'a [u8]);
    impl std::io::Read for FailsAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("download interrupted"));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let d = Daemon::start();
    let image = test_image(10);
    let swu = good_swu(&d, &image);
    let err = d
        .client
        .install(
            &InstallRequest::default(),
            FailsAfter(&swu[..swu.len() / 2]),
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::ReadImage { source } if source.to_string() == "download interrupted"),
        "{err:?}"
    );
    assert_untouched(&d);
    // swupdate failed that installation and takes the next one.
    d.client
        .install(&InstallRequest::default(), &swu[..])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.slot(&d.slot_b), image);
}

#[test]
fn connecting_to_a_missing_socket_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let client = swupdate_rs::Client::new(swupdate_rs::ClientConfig::in_dir(dir.path()));
    let err = client.get_status().unwrap_err();
    assert!(matches!(err, Error::Connect { .. }));
    assert!(err.to_string().contains("sockinstctrl"), "{err}");
}

//! The smart plug's relay and the reset button on real GPIO lines (issue 3):
//! hearthd cross-built for aarch64 on QEMU's `virt` board, whose PL061 GPIO
//! controller Debian's arm64 kernel drives as /dev/gpiochip0
//! (`qemu/board-arm64` says how the lines are wired).
//!
//! The owner claims the device and switches the plug: the kernel shows the
//! relay line driven high, then low. Then the reset button is pressed (QEMU's
//! power button, line 3): hearthd erases the owner's data, starts over as a
//! first boot with a new setup code, and the relay is off again.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use system_tests::https::{Response, request};

use system_tests::board::Board;

const PASSWORD: &str = "correct horse battery staple";

fn script() -> std::path::PathBuf {
    system_tests::repo_root().join("qemu/board-arm64")
}

/// One HTTPS request; hearthd may still be starting, so connection errors
/// are retried for a while.
pub(crate) fn call(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match request(addr, method, path, headers, body) {
            Ok(response) => return response,
            Err(e) if Instant::now() > deadline => panic!("{method} {path}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// Waits until the relay line, as the kernel last showed it, is `level`
/// ("hi" or "lo").
fn wait_relay(board: &Board, level: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let serial = board.serial();
        let last = serial
            .lines()
            .rev()
            .find(|l| l.starts_with("board: relay: "));
        if last.is_some_and(|l| l.trim_end().contains(&format!("out {level}"))) {
            eprintln!("[board arm64] {}", last.unwrap_or_default().trim_end());
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the relay line is not {level}: last seen {last:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_plug_drives_its_relay_line_and_the_reset_button_makes_the_device_new() {
    let dir = tempfile::Builder::new()
        .prefix("board-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir");
    let status = Command::new(script())
        .arg("build")
        .arg(dir.path())
        .status()
        .expect("run qemu/board-arm64 build");
    assert!(
        status.success(),
        "qemu/board-arm64 build failed ({status}): see its output above"
    );

    let port = system_tests::free_port();
    let log = dir.path().join("serial.log");
    let mut command = Command::new(script());
    command
        .arg("boot")
        .arg(dir.path())
        .arg("--port")
        .arg(port.to_string())
        .arg("--log")
        .arg(&log)
        .arg("--exit-with-parent");
    let mut board = Board::launch(
        command,
        "board arm64",
        log,
        dir.path().join("boot.stderr"),
        dir.path().join("monitor.sock"),
    );

    board.wait_for("hearthd: HTTPS ready on");
    wait_relay(&board, "lo"); // a factory-new plug is off
    let first_code =
        crate::owner::setup_code(&board.serial()).expect("a setup code on the console");

    // Claimed, the owner switches the plug: the line follows.
    let body = serde_json::json!({ "setup_code": first_code, "password": PASSWORD, "password_confirm": PASSWORD })
        .to_string();
    let claimed = call(port, "POST", "/api/setup", &[], Some(&body));
    assert_eq!(claimed.status, 201, "{}", claimed.body);
    let cookie = claimed.session_cookie().expect("a session cookie");
    let csrf = claimed.json()["csrf_token"]
        .as_str()
        .expect("a CSRF token")
        .to_owned();
    let owner = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let switched = call(port, "PUT", "/api/plug", &owner, Some(r#"{"on":true}"#));
    assert_eq!(switched.status, 200, "{}", switched.body);
    wait_relay(&board, "hi");
    let switched = call(port, "PUT", "/api/plug", &owner, Some(r#"{"on":false}"#));
    assert_eq!(switched.status, 200, "{}", switched.body);
    wait_relay(&board, "lo");
    let switched = call(port, "PUT", "/api/plug", &owner, Some(r#"{"on":true}"#));
    assert_eq!(switched.status, 200, "{}", switched.body);
    wait_relay(&board, "hi");

    // The reset button: QEMU's power button pulses line 3.
    board.monitor_command("system_powerdown");
    board.wait_for("factory reset done");
    board.wait_for("hearthd: HTTPS ready on");
    let second_code =
        crate::owner::setup_code(&board.serial()).expect("a new setup code after the reset");
    assert_ne!(second_code, first_code, "the reset makes a new setup code");
    wait_relay(&board, "lo"); // after the reset the plug is off

    // The owner's password is gone: the device wants to be set up again.
    let login = call(
        port,
        "POST",
        "/api/login",
        &[],
        Some(&serde_json::json!({ "password": PASSWORD }).to_string()),
    );
    assert_ne!(
        login.status, 200,
        "the old password still works: {}",
        login.body
    );
    let old_session = call(port, "GET", "/api/dashboard", &owner, None);
    assert_ne!(
        old_session.status, 200,
        "the old session still works: {}",
        old_session.body
    );
    let body = serde_json::json!({ "setup_code": second_code, "password": PASSWORD, "password_confirm": PASSWORD })
        .to_string();
    assert_eq!(
        call(port, "POST", "/api/setup", &[], Some(&body)).status,
        201
    );
    eprintln!(
        "board arm64: serial log:\n{}",
        fs::read_to_string(dir.path().join("serial.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("board:") || l.contains("reset"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

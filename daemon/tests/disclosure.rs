//! EN 303 645 5.2-1, 5.3-13 and 5.3-16 against hearthd in host mode: the
//! vendor's disclosure policy and support period reach the public surfaces.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{Daemon, https, https_get};

/// Validates security.txt content with the PyPI `sectxt` package (the
/// validator behind internet.nl). The device's certificate is self-signed,
/// so the file is fetched over HTTPS here and its content validated locally.
fn sectxt_errors(body: &str) -> Vec<String> {
    let script = "import json,sys,sectxt\n\
                  p=sectxt.Parser(sys.stdin.buffer.read())\n\
                  json.dump([e['code'] for e in p.errors],sys.stdout)";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3 runs");
    assert!(
        out.status.success(),
        "sectxt could not run (pip install sectxt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON list")
}

#[test]
fn security_txt_is_served_over_https_as_rfc_9116_wants_and_sectxt_finds_no_error() {
    let daemon = Daemon::start();
    let addr = daemon.ready().addr;
    let response = https_get(addr, "/.well-known/security.txt");
    assert_eq!(response.status, 200);
    assert!(
        response
            .headers
            .contains("content-type: text/plain; charset=utf-8"),
        "{}",
        response.headers
    );
    for field in [
        "Contact: mailto:security@example.com",
        "Expires: ",
        "Policy: ",
        "Canonical: ",
    ] {
        assert!(
            response.body.contains(field),
            "{field} missing:\n{}",
            response.body
        );
    }
    let errors = sectxt_errors(&response.body);
    assert!(
        errors.is_empty(),
        "sectxt errors {errors:?} in:\n{}",
        response.body
    );
}

#[test]
fn the_security_page_and_state_are_public_before_and_after_the_claim() {
    let daemon = Daemon::start();
    let ready = daemon.ready();
    let page = https_get(ready.addr, "/security");
    assert_eq!(page.status, 200);
    for fact in ["security@example.com", "31 December 2031", "HRH-1"] {
        assert!(
            page.body.contains(fact),
            "{fact} missing from the security page"
        );
    }
    let body = serde_json::json!({
        "setup_code": ready.setup_code.expect("code"),
        "password": "correct horse battery staple",
        "password_confirm": "correct horse battery staple",
    })
    .to_string();
    assert_eq!(
        https(ready.addr, "POST", "/api/setup", &[], Some(&body)).status,
        201
    );
    assert_eq!(
        https_get(ready.addr, "/security").status,
        200,
        "still public after the claim"
    );
    assert_eq!(
        https_get(ready.addr, "/.well-known/security.txt").status,
        200
    );
}

#[test]
fn an_ended_support_period_is_said_plainly_on_the_dashboard_and_the_security_page() {
    let dir = tempfile::tempdir().expect("temp");
    let ended = std::fs::read_to_string(support::VENDOR)
        .expect("vendor file")
        .replace("end_date = 2031-12-31", "end_date = 2025-06-30")
        .replace("release_date = 2026-12-01", "release_date = 2023-01-01");
    let path = dir.path().join("vendor.toml");
    std::fs::write(&path, ended).expect("write");
    let daemon = Daemon::with_override(&format!("vendor_file = \"{}\"\n", path.display()));
    let ready = daemon.ready();

    let page = https_get(ready.addr, "/security");
    assert!(page.body.contains("30 June 2025"), "{}", page.body);
    assert!(
        page.body.to_lowercase().contains("ended"),
        "the page says support has ended:\n{}",
        page.body
    );

    let body = serde_json::json!({
        "setup_code": ready.setup_code.expect("code"),
        "password": "correct horse battery staple",
        "password_confirm": "correct horse battery staple",
    })
    .to_string();
    let claimed = https(ready.addr, "POST", "/api/setup", &[], Some(&body));
    let cookie = claimed.session_cookie().expect("cookie");
    let dashboard = https(
        ready.addr,
        "GET",
        "/api/dashboard",
        &[("Cookie", &cookie)],
        None,
    )
    .json();
    assert_eq!(dashboard["support"]["state"], "ended");
    assert!(
        dashboard["support"]["sentence"]
            .as_str()
            .expect("sentence")
            .contains("30 June 2025")
    );
    let info = daemon
        .command("info")
        .arg("--json")
        .output()
        .expect("hearthd info");
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("device-info JSON");
    assert_eq!(
        info["support"]["state"], "ended",
        "the MQTT device-info payload says so too"
    );
}

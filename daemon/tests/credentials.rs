//! EN 303 645 5.1 against hearthd in host mode: nothing works before the
//! claim, the claim needs the console's setup code, and a damaged
//! credential store fails closed.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::{Daemon, Response, https, https_get};

const PASSWORD: &str = "correct horse battery staple";

fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    https(addr, "POST", path, headers, Some(body))
}

fn setup_body(code: &str, password: &str) -> String {
    serde_json::json!({ "setup_code": code, "password": password, "password_confirm": password })
        .to_string()
}

/// Claims the device, waiting out the throttle if earlier tests tripped it.
fn claim(addr: SocketAddr, code: &str) -> Response {
    support::claim(addr, code, PASSWORD)
}

#[test]
fn before_the_claim_only_public_pages_answer() {
    let daemon = Daemon::start();
    let ready = daemon.ready();
    assert!(
        ready.setup_code.is_some(),
        "first boot shows a setup code on the console"
    );
    let addr = ready.addr;

    for path in ["/api/dashboard", "/api/session", "/api/settings"] {
        let response = https_get(addr, path);
        assert_eq!(response.status, 403, "{path}: {}", response.body);
        assert_eq!(response.json()["error"], "not_set_up", "{path}");
    }
    for (method, path, body) in [
        ("PUT", "/api/plug", r#"{"on":true}"#),
        (
            "POST",
            "/api/password",
            r#"{"current_password":"x","password":"y","password_confirm":"y"}"#,
        ),
        ("POST", "/api/logout", "{}"),
        ("POST", "/api/login", r#"{"password":"anything at all"}"#),
    ] {
        let response = https(addr, method, path, &[], Some(body));
        assert_eq!(response.status, 403, "{method} {path}: {}", response.body);
        assert_eq!(response.json()["error"], "not_set_up", "{method} {path}");
    }
    for page in ["/", "/settings", "/login"] {
        let response = https_get(addr, page);
        assert_eq!(response.status, 303, "{page}");
        assert!(
            response.headers.contains("location: /setup"),
            "{page}: {}",
            response.headers
        );
    }
    for public in [
        "/setup",
        "/security",
        "/.well-known/security.txt",
        "/healthz",
        "/api/state",
    ] {
        assert_eq!(https_get(addr, public).status, 200, "{public}");
    }
    assert_eq!(https_get(addr, "/api/state").json()["status"], "unclaimed");
}

#[test]
fn fifty_concurrent_wrong_codes_fail_and_the_right_code_wins_once() {
    let daemon = Daemon::start();
    let ready = daemon.ready();
    let code = ready.setup_code.clone().expect("setup code");
    let addr = ready.addr;

    // Fifty clients (one address each: a single address may hold only a
    // few connections at once).
    let wrong: Vec<_> = (0..50u8)
        .map(|i| {
            std::thread::spawn(move || {
                let guess = format!("{:0>10}", format!("ABCD{i}")).replace('0', "Z");
                let client = std::net::IpAddr::from([127, 0, 3, 1 + i]);
                system_tests::https::request_from(
                    client,
                    addr,
                    "POST",
                    "/api/setup",
                    &[],
                    Some(&setup_body(&guess, PASSWORD)),
                )
                .expect("an answer")
                .status
            })
        })
        .collect();
    for handle in wrong {
        let status = handle.join().expect("thread");
        assert!(
            matches!(status, 400 | 401 | 429),
            "a wrong code must fail, got {status}"
        );
    }
    assert_eq!(https_get(addr, "/api/state").json()["status"], "unclaimed");

    let won = claim(addr, &code);
    assert_eq!(won.status, 201, "{}", won.body);
    assert!(
        won.session_cookie().is_some(),
        "the claim logs the owner in"
    );
    let again = claim(addr, &code);
    assert_eq!(
        again.status, 409,
        "the setup code works once: {}",
        again.body
    );
    assert_eq!(https_get(addr, "/api/state").json()["status"], "claimed");
}

#[test]
fn state_changes_need_the_session_csrf_token_and_the_password_survives_a_restart() {
    let mut daemon = Daemon::start();
    let ready = daemon.ready();
    let addr = ready.addr;
    let claimed = claim(addr, &ready.setup_code.expect("code"));
    assert_eq!(claimed.status, 201, "{}", claimed.body);
    let cookie = claimed.session_cookie().expect("cookie");
    let csrf = claimed.json()["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_owned();

    let no_csrf = https(
        addr,
        "PUT",
        "/api/plug",
        &[("Cookie", &cookie)],
        Some(r#"{"on":true}"#),
    );
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
    assert_eq!(no_csrf.json()["error"], "csrf");
    let foreign = https(
        addr,
        "PUT",
        "/api/plug",
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", &csrf),
            ("Origin", "https://evil.example"),
        ],
        Some(r#"{"on":true}"#),
    );
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    let switched = https(
        addr,
        "PUT",
        "/api/plug",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        Some(r#"{"on":true}"#),
    );
    assert_eq!(switched.status, 200, "{}", switched.body);

    daemon.stop(Signal::SIGTERM);
    daemon.restart();
    let addr = daemon.ready().addr;
    assert_eq!(https_get(addr, "/api/state").json()["status"], "claimed");
    let wrong = post(
        addr,
        "/api/login",
        &[],
        r#"{"password":"not the password at all"}"#,
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let login = post(
        addr,
        "/api/login",
        &[],
        &serde_json::json!({ "password": PASSWORD }).to_string(),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    // Both attempts are logged with address and time, never the password.
    let log = daemon.stderr_with("event=login_succeeded client=127.0.0.1 at_unix=");
    assert!(
        log.contains("event=login_failed client=127.0.0.1 at_unix="),
        "{log}"
    );
    assert!(
        log.contains("event=login_succeeded client=127.0.0.1 at_unix="),
        "{log}"
    );
    assert!(
        !log.contains(PASSWORD) && !log.contains("not the password at all"),
        "a password reached the log"
    );
    let cookie = login.session_cookie().expect("cookie");
    let dashboard = https(addr, "GET", "/api/dashboard", &[("Cookie", &cookie)], None);
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    assert_eq!(
        dashboard.json()["plug"]["on"],
        true,
        "the plug state survives a restart"
    );
}

#[test]
fn a_damaged_credential_store_fails_closed_and_never_reopens_setup() {
    for damage in ["truncate", "delete"] {
        let mut daemon = Daemon::start();
        let ready = daemon.ready();
        assert_eq!(
            claim(ready.addr, &ready.setup_code.expect("code")).status,
            201
        );
        daemon.stop(Signal::SIGTERM);
        let record = daemon.data_dir().join("state/credentials");
        match damage {
            "truncate" => {
                let bytes = std::fs::read(&record).expect("record");
                std::fs::write(&record, &bytes[..bytes.len() / 2]).expect("truncate");
            }
            _ => std::fs::remove_file(&record).expect("delete"),
        }
        daemon.restart();
        let ready = daemon.ready();
        assert!(ready.setup_code.is_none(), "{damage}: no new setup code");
        let addr = ready.addr;
        let state = https_get(addr, "/api/state").json();
        assert_eq!(state["status"], "broken", "{damage}");
        assert!(
            state["broken"]
                .as_str()
                .expect("advice")
                .contains("factory-reset"),
            "{damage}"
        );
        let login = post(
            addr,
            "/api/login",
            &[],
            &serde_json::json!({ "password": PASSWORD }).to_string(),
        );
        assert_eq!(login.status, 503, "{damage}: {}", login.body);
        let setup = post(
            addr,
            "/api/setup",
            &[],
            &setup_body("ABCD-EFGH-JK", PASSWORD),
        );
        assert_ne!(setup.status, 201, "{damage}: setup must not reopen");
        assert_eq!(
            https_get(addr, "/setup").status,
            303,
            "{damage}: the setup page is closed"
        );
    }
}

#[test]
fn an_invalid_vendor_file_stops_the_daemon_with_a_sentence() {
    let dir = tempfile::tempdir().expect("temp");
    let original = std::fs::read_to_string(support::VENDOR).expect("vendor file");
    let broken = original.replace("https://", "http://");
    let path = dir.path().join("vendor.toml");
    std::fs::write(&path, broken).expect("write");
    let mut daemon = Daemon::with_override(&format!("vendor_file = \"{}\"\n", path.display()));
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)), Some(78));
    let stderr = daemon.stderr_with("vendor.toml");
    assert!(stderr.contains("vendor.toml"), "{stderr}");
    assert!(stderr.contains("https"), "{stderr}");
}

#[test]
fn a_factory_reset_brings_back_setup_with_a_new_code_and_certificate() {
    let mut daemon = Daemon::start();
    let first = daemon.ready();
    let first_code = first.setup_code.clone().expect("code");
    assert_eq!(claim(first.addr, &first_code).status, 201);

    let busy = daemon
        .command("factory-reset")
        .output()
        .expect("run factory-reset");
    assert!(
        !busy.status.success(),
        "a reset while hearthd runs is refused"
    );
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use by another hearthd"));

    daemon.stop(Signal::SIGTERM);
    let reset = daemon
        .command("factory-reset")
        .output()
        .expect("run factory-reset");
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    daemon.restart();
    let after = daemon.ready();
    let new_code = after
        .setup_code
        .clone()
        .expect("a new setup code on the console");
    assert_ne!(new_code, first_code);
    assert_ne!(
        after.fingerprint, first.fingerprint,
        "the TLS key is erased too"
    );
    assert_eq!(
        https_get(after.addr, "/api/state").json()["status"],
        "unclaimed"
    );
    assert_eq!(
        claim(after.addr, &first_code).status,
        401,
        "the old code is dead"
    );
    assert_eq!(claim(after.addr, &new_code).status, 201);
}

#[test]
fn the_production_lines_setup_code_claims_the_device_and_its_clear_copy_is_deleted() {
    let dir = tempfile::tempdir().expect("temp");
    let code_file = dir.path().join("factory-setup-code");
    std::fs::write(&code_file, "K7QM-3XPA-9D\n").expect("write the label's code");
    let daemon = Daemon::with_override(&format!(
        "[credentials]\nfactory_setup_code = \"{}\"\n",
        code_file.display()
    ));
    let ready = daemon.ready();
    assert_eq!(
        ready.setup_code.as_deref(),
        Some("K7QM-3XPA-9D"),
        "the console shows the label's code"
    );
    assert!(
        !code_file.exists(),
        "the clear copy is deleted once its hash is stored"
    );
    assert_eq!(
        claim(ready.addr, "k7qm 3xpa 9d").status,
        201,
        "case and separators do not matter"
    );
}

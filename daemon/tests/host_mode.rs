//! hearthd in host mode: the real binary, unprivileged, on loopback, with a
//! data directory of the test's own.

mod support;

use std::fs;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::{Daemon, https_get};

#[test]
fn it_serves_health_over_https_with_the_certificate_it_announces() {
    let daemon = Daemon::start();
    let ready = daemon.ready();
    let response = https_get(ready.addr, "/healthz");
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response.body.contains("\"status\":\"ok\""),
        "{}",
        response.body
    );
    assert_eq!(
        response.fingerprint, ready.fingerprint,
        "served certificate differs from the announced one"
    );
    assert!(
        response
            .headers
            .contains("content-security-policy: default-src 'none'"),
        "{}",
        response.headers
    );
}

#[test]
fn the_certificate_and_key_survive_a_restart_and_the_key_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let mut daemon = Daemon::start();
    let first = daemon.ready().fingerprint;
    daemon.stop(Signal::SIGTERM);
    assert_eq!(daemon.exit_code(), Some(0), "SIGTERM is a clean shutdown");
    let mode = fs::metadata(daemon.data_dir().join("state/tls-key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    daemon.restart();
    assert_eq!(daemon.ready().fingerprint, first);
}

#[test]
fn a_bad_config_value_stops_start_up_with_a_sentence_naming_file_and_key() {
    let mut daemon = Daemon::with_override("[web]\nlisten = [\"127.0.0.1:99999\"]\n");
    let code = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(78));
    let stderr = daemon.stderr_with("invalid socket address");
    assert!(
        stderr.contains("override.toml: key `web.listen[0]`"),
        "{stderr}"
    );
    assert!(stderr.contains("invalid socket address"), "{stderr}");
}

#[test]
fn a_corrupt_state_file_stops_start_up_and_is_kept_for_inspection() {
    let mut daemon = Daemon::start();
    daemon.ready();
    daemon.stop(Signal::SIGTERM);
    let marker = daemon.data_dir().join("state/store-format");
    fs::write(&marker, "garbage\n").expect("damage the store");
    daemon.restart();
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)), Some(1));
    let stderr = daemon.stderr_with("factory-reset");
    assert!(stderr.contains("is damaged"), "{stderr}");
    assert!(stderr.contains("factory-reset"), "{stderr}");
    assert_eq!(
        fs::read_to_string(&marker).expect("still there"),
        "garbage\n",
        "nothing is wiped"
    );
    assert!(
        daemon.data_dir().join("state/tls-key.pem").exists(),
        "nothing is wiped"
    );
}

#[test]
fn records_without_a_store_marker_are_never_taken_for_a_factory_new_device() {
    let mut daemon = Daemon::start();
    daemon.ready();
    daemon.stop(Signal::SIGTERM);
    fs::remove_file(daemon.data_dir().join("state/store-format")).expect("remove marker");
    daemon.restart();
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)), Some(1));
    assert!(
        daemon.stderr().contains("cannot be trusted as factory-new"),
        "{}",
        daemon.stderr()
    );
}

/// Kill the daemon at many points of its first start (while it writes the
/// store marker, key and certificate); every later start must succeed, and
/// once a certificate was announced it must never change.
#[test]
fn signals_during_first_boot_writes_lose_nothing() {
    for (round, signal) in [Signal::SIGTERM, Signal::SIGKILL]
        .into_iter()
        .cycle()
        .take(16)
        .enumerate()
    {
        let mut daemon = Daemon::start();
        std::thread::sleep(Duration::from_millis(round as u64 * 7));
        daemon.stop(signal);
        daemon.restart();
        let announced = daemon.ready().fingerprint;
        daemon.stop(Signal::SIGKILL);
        daemon.restart();
        assert_eq!(
            daemon.ready().fingerprint,
            announced,
            "round {round} ({signal})"
        );
    }
}

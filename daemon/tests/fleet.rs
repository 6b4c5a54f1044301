//! The MQTT fleet link against a real mosquitto: the shipped `broker/`
//! configuration and ACLs, a test PKI from `broker/dev-pki.sh`, TLS with
//! client certificates on a loopback port, and hearthd in host mode.
//!
//! Needs Debian's `mosquitto`, `mosquitto-clients` and `openssl`. The
//! "fleet service" side of each test is `mosquitto_sub`/`mosquitto_pub`
//! with its own certificate (CN `hearth-fleet-service`).

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{Daemon, Response, https, https_get};

use system_tests::broker::{BROKER_DIR, Broker, Message, SERVICE, Sub};
/// The reference vendor file's model designation.
const MODEL: &str = "HRH-1";
const PASSWORD: &str = "correct horse battery staple";

const LONG: Duration = Duration::from_secs(20);

fn status_topic(device: &str) -> String {
    format!("hearth/device/{device}/status")
}

fn cmd_topic(device: &str) -> String {
    format!("hearth/device/{device}/cmd")
}

/// The daemon's stderr without terminal colour codes.
fn plain_log(daemon: &Daemon) -> String {
    strip_ansi_escapes::strip_str(daemon.stderr())
}

/// The topic the fleet service publishes on to confirm a subscription.
const PROBE: &str = "hearth/test/probe";
/// How long a negative check listens once its subscription is confirmed.
const QUIET: Duration = Duration::from_secs(3);

// ---- owner side over HTTPS --------------------------------------------------

fn claim(addr: SocketAddr, code: &str) -> Response {
    let body = serde_json::json!({
        "setup_code": code, "password": PASSWORD, "password_confirm": PASSWORD
    })
    .to_string();
    loop {
        let response = https(addr, "POST", "/api/setup", &[], Some(&body));
        if response.status != 429 {
            return response;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn dashboard_plug(addr: SocketAddr, cookie: &str) -> bool {
    let dashboard = https(addr, "GET", "/api/dashboard", &[("Cookie", cookie)], None);
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    dashboard.json()["plug"]["on"]
        .as_bool()
        .expect("plug.on in the dashboard")
}

// ---- tests -------------------------------------------------------------------

#[test]
fn the_device_publishes_retained_info_status_and_discovery_and_its_will_says_offline() {
    let broker = Broker::start(&["dev1"], &[("dev1", MODEL)]);
    let mut daemon = Daemon::with_override(&broker.fleet_config("dev1"));
    daemon.ready();

    // Once the status is out, info and discovery (sent before it on the
    // same connection) are at the broker too.
    let watcher = Sub::start(&broker, Some(SERVICE), &[&status_topic("dev1")]);
    assert!(
        watcher.wait(LONG, online).is_some(),
        "online; hearthd:\n{}",
        plain_log(&daemon)
    );
    // A subscriber that arrives later still gets them: they are retained.
    let wait_retained = |topic: String| {
        let sub = Sub::start(&broker, Some(SERVICE), &[&topic]);
        sub.wait(LONG, |m| m.topic == topic && m.retained)
            .unwrap_or_else(|| {
                panic!(
                    "no retained message on {topic}; hearthd:\n{}\nbroker:\n{}",
                    plain_log(&daemon),
                    broker.log()
                )
            })
    };
    let info = wait_retained("hearth/device/dev1/info".into()).json();
    assert_eq!(info["schema"], 1);
    assert_eq!(info["model"], MODEL);
    assert_eq!(info["firmware_version"], hearthd::FIRMWARE_VERSION);
    assert!(info["support"]["end_date"].is_string(), "{info}");
    assert!(info["disclosure"]["contacts"][0].is_string(), "{info}");

    let status = wait_retained(status_topic("dev1")).json();
    // Host mode has no A/B slots: the update agent says so in the status.
    assert_eq!(status["state"], "unavailable", "{status}");
    assert!(
        status["update"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("hearth.slot")),
        "{status}"
    );
    assert_eq!(status["version"], hearthd::FIRMWARE_VERSION);
    assert_eq!(status["claimed"], false);
    assert_eq!(status["plug"]["on"], false);
    assert!(status["progress"].is_null() && status["last_error"].is_null());
    assert!(status["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(status["support"]["state"].is_string(), "{status}");

    let discovery = wait_retained("homeassistant/switch/dev1/config".into()).json();
    assert_eq!(discovery["command_topic"], cmd_topic("dev1"));
    assert_eq!(discovery["state_topic"], status_topic("dev1"));
    assert_eq!(discovery["device"]["model"], MODEL);

    // Killed without a word: the broker publishes the retained last will.
    let before = watcher.count();
    daemon.stop(Signal::SIGKILL);
    watcher
        .wait_after(before, LONG, |m| m.json()["state"] == "offline")
        .expect("the last will arrives when hearthd dies");
    let late = Sub::start(&broker, Some(SERVICE), &[&status_topic("dev1")]);
    let retained = late
        .wait(LONG, |m| m.retained)
        .expect("a retained status after the will");
    assert_eq!(retained.json()["state"], "offline", "the will is retained");

    // Back again, then a clean stop: the device says offline itself.
    daemon.restart();
    daemon.ready();
    let before = watcher.count();
    assert!(
        watcher.wait_after(before, LONG, online).is_some(),
        "online again after a restart"
    );
    let before = watcher.count();
    daemon.stop(Signal::SIGTERM);
    assert_eq!(daemon.exit_code(), Some(0));
    assert!(
        watcher
            .wait_after(before, LONG, |m| m.json()["state"] == "offline")
            .is_some(),
        "a clean stop publishes offline; hearthd:\n{}",
        plain_log(&daemon)
    );
    assert!(plain_log(&daemon).contains("left the fleet broker with status offline"));
}

#[test]
fn plug_commands_are_refused_before_the_claim_and_switch_the_plug_after_it() {
    let broker = Broker::start(&["dev1"], &[("dev1", MODEL)]);
    let daemon = Daemon::with_override(&broker.fleet_config("dev1"));
    let ready = daemon.ready();
    let addr = ready.addr;
    let status = Sub::start(&broker, Some(SERVICE), &[&status_topic("dev1")]);
    assert!(
        status.wait(LONG, online).is_some(),
        "online; hearthd:\n{}",
        plain_log(&daemon)
    );
    let cmd = cmd_topic("dev1");

    // Sends a command and returns the status published in reply.
    let command = |payload: &str, retain: bool| {
        let before = status.count();
        broker.publish(SERVICE, &cmd, payload, retain);
        status
            .wait_after(before, LONG, |_| true)
            .unwrap_or_else(|| {
                panic!(
                    "no status after {payload}; hearthd:\n{}",
                    plain_log(&daemon)
                )
            })
            .json()
    };

    // Unclaimed: refused with a clear answer, nothing switched.
    let reply = command(r#"{"command":"plug","on":true,"id":"c1"}"#, false);
    assert_eq!(reply["last_error"]["code"], "not_set_up", "{reply}");
    assert_eq!(reply["last_error"]["command_id"], "c1");
    assert!(
        reply["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("device not set up")),
        "{reply}"
    );
    assert_eq!(reply["plug"]["on"], false);
    assert!(plain_log(&daemon).contains("refused an MQTT command"));

    // The owner claims the device over HTTPS.
    let claimed = claim(addr, &ready.setup_code.expect("setup code"));
    assert_eq!(claimed.status, 201, "{}", claimed.body);
    let cookie = claimed.session_cookie().expect("session cookie");
    assert!(!dashboard_plug(addr, &cookie));
    let after_claim = status.wait(LONG, |m| m.json()["claimed"] == true);
    assert!(after_claim.is_some(), "the status shows the claim");

    // Claimed, but the owner has not allowed the fleet to switch the plug:
    // whoever holds the broker must not control the owner's appliance.
    let reply = command(r#"{"command":"plug","on":true,"id":"c1b"}"#, false);
    assert_eq!(reply["last_error"]["code"], "not_allowed", "{reply}");
    assert_eq!(reply["plug"]["on"], false, "{reply}");
    let csrf = claimed.json()["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_owned();
    let allowed = https(
        addr,
        "PUT",
        "/api/settings",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        Some(r#"{"automatic_updates":true,"maintenance_window":null,"fleet_plug_commands":true}"#),
    );
    assert_eq!(allowed.status, 200, "{}", allowed.body);

    // Allowed: the command goes through Plug::switch.
    let first_allowed = std::time::Instant::now();
    let reply = command(r#"{"command":"plug","on":true,"id":"c2"}"#, false);
    assert_eq!(reply["plug"]["on"], true, "{reply}");
    assert!(dashboard_plug(addr, &cookie), "the owner sees the plug on");

    // Malformed commands are refused with a reason and change nothing.
    let oversized = format!(
        r#"{{"command":"plug","on":false,"pad":"{}"}}"#,
        "x".repeat(5000)
    );
    for (payload, retain, code) in [
        ("this is not json", false, "bad_json"),
        (r#"{"command":"reboot"}"#, false, "unknown_command"),
        (r#"{"command":"plug","on":"off"}"#, false, "bad_argument"),
        (oversized.as_str(), false, "too_large"),
    ] {
        let reply = command(payload, retain);
        assert_eq!(reply["last_error"]["code"], code, "{reply}");
        assert_eq!(reply["plug"]["on"], true, "{code} changed the plug");
        assert!(dashboard_plug(addr, &cookie), "{code} changed the plug");
    }

    let reply = command(r#"{"command":"plug","on":false}"#, false);
    assert_eq!(reply["plug"]["on"], false, "{reply}");
    assert!(!dashboard_plug(addr, &cookie));

    // A burst of switching is cut off: ten at once, then one per 6 s.
    let mut carried_out = 2;
    let refused = loop {
        let reply = command(r#"{"command":"plug","on":false}"#, false);
        if reply["last_error"]["code"] == "too_frequent" {
            break reply;
        }
        carried_out += 1;
        let allowed = 10 + first_allowed.elapsed().as_secs() / 6;
        assert!(
            carried_out <= allowed,
            "{carried_out} plug commands carried out: {reply}"
        );
    };
    assert!(carried_out >= 10, "refused after {carried_out}: {refused}");

    // A switch on the web reaches the status topic too.
    let before = status.count();
    let switched = https(
        addr,
        "PUT",
        "/api/plug",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        Some(r#"{"on":true}"#),
    );
    assert_eq!(switched.status, 200, "{}", switched.body);
    assert!(
        status
            .wait_after(before, LONG, |m| m.json()["plug"]["on"] == true)
            .is_some(),
        "the status follows a switch on the web"
    );
    let log = plain_log(&daemon);
    for code in ["bad_json", "unknown_command", "too_large"] {
        assert!(log.contains(code), "{code} is logged:\n{log}");
    }

    // A retained command is not replayed when the device connects again.
    // (A retained message published while the device is subscribed is
    // delivered live, without the retain flag, and cannot be told apart in
    // MQTT 3.1.1; the danger is the replay, and that is refused.)
    let mut daemon = daemon;
    daemon.stop(Signal::SIGKILL);
    broker.publish(
        SERVICE,
        &cmd,
        r#"{"command":"plug","on":false,"id":"stale"}"#,
        true,
    );
    let before = status.count();
    daemon.restart();
    let addr = daemon.ready().addr;
    let reply = status
        .wait_after(before, LONG, |m| {
            m.json()["last_error"]["code"] == "retained"
        })
        .unwrap_or_else(|| panic!("the replay is refused; hearthd:\n{}", plain_log(&daemon)))
        .json();
    assert_eq!(reply["last_error"]["command_id"], "stale");
    assert_eq!(reply["plug"]["on"], true, "{reply}");
    broker.publish(SERVICE, &cmd, "", true);
    let login = https(
        addr,
        "POST",
        "/api/login",
        &[],
        Some(&serde_json::json!({ "password": PASSWORD }).to_string()),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(dashboard_plug(
        addr,
        &login.session_cookie().expect("cookie")
    ));
}

#[test]
fn the_device_reconnects_with_a_jittered_growing_backoff_after_a_broker_restart() {
    let mut broker = Broker::start(&["dev1"], &[("dev1", MODEL)]);
    let daemon = Daemon::with_override(&broker.fleet_config("dev1"));
    daemon.ready();
    let first = Sub::start(&broker, Some(SERVICE), &[&status_topic("dev1")]);
    assert!(first.wait(LONG, online).is_some());
    drop(first);

    broker.kill();
    std::thread::sleep(Duration::from_secs(7));
    let down_log = plain_log(&daemon);
    broker.restart();
    // persistence is off: the retained status is there again only because
    // the device reconnected and published it.
    let again = Sub::start(&broker, Some(SERVICE), &[&status_topic("dev1")]);
    assert!(
        again.wait(Duration::from_secs(30), online).is_some(),
        "the device came back; hearthd:\n{}",
        plain_log(&daemon)
    );

    // What the supervisor logged while the broker was down.
    let retries: Vec<(u32, u64)> = down_log
        .lines()
        .filter(|l| l.contains("MQTT connection failed"))
        .map(|l| {
            let field = |name: &str| -> u64 {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{name} in {l}"))
            };
            (field("attempt=") as u32, field("retry_in_ms="))
        })
        .collect();
    assert!(
        retries.len() >= 2,
        "it kept trying while the broker was down: {retries:?}\n{down_log}"
    );
    // No tight loop: growing windows (0.5 s, 1 s, 2 s, 4 s, 4 s …) allow a
    // handful of tries in 7 s, never hundreds.
    assert!(
        retries.len() <= 25,
        "{} retries: {retries:?}",
        retries.len()
    );
    for (attempt, delay) in &retries {
        let window_ms = (500u64 << (attempt - 1).min(3)).min(4000);
        assert!(
            *delay <= window_ms,
            "attempt {attempt}: {delay} ms is outside its window of {window_ms} ms"
        );
    }
    let attempts: Vec<u32> = retries.iter().map(|r| r.0).collect();
    assert!(
        attempts.windows(2).all(|w| w[1] == w[0] + 1),
        "attempts count up while the broker is down: {attempts:?}"
    );
    // Jitter: the delays are not all the same.
    let first_delays: std::collections::BTreeSet<u64> = retries.iter().map(|r| r.1).collect();
    assert!(first_delays.len() > 1, "{retries:?}");
}

#[test]
fn acls_keep_devices_apart_and_a_client_without_a_certificate_cannot_connect() {
    let broker = Broker::start(&["dev1", "dev2"], &[("dev1", MODEL), ("dev2", "OTHER-2")]);
    let dev1_cmd = cmd_topic("dev1");
    let dev2_cmd = cmd_topic("dev2");

    // dev2 subscribes to its own command topic (the probe) and to dev1's.
    let spy = broker.subscribe(
        "dev2",
        &[&dev2_cmd, &dev1_cmd, &format!("hearth/{MODEL}/release")],
        &dev2_cmd,
    );
    // dev1 legitimately reads its own commands: the control.
    let owner = broker.subscribe("dev1", &[&dev1_cmd], &dev1_cmd);
    broker.publish(SERVICE, &dev1_cmd, "secret-for-dev1", false);
    broker.publish(
        SERVICE,
        &format!("hearth/{MODEL}/release"),
        "manifest-for-HRH-1",
        true,
    );
    broker.publish(SERVICE, &dev2_cmd, "done", false);
    assert!(
        owner
            .wait(LONG, |m| m.payload == "secret-for-dev1")
            .is_some()
    );
    assert!(spy.wait(LONG, |m| m.payload == "done").is_some());
    let leaked: Vec<Message> = spy
        .all()
        .into_iter()
        .filter(|m| m.topic != dev2_cmd)
        .collect();
    assert!(
        leaked.is_empty(),
        "dev2 read what is not its own: {leaked:?}"
    );

    // dev1 reads its model's release; dev2 (another model) did not above.
    let release_reader = Sub::start(&broker, Some("dev1"), &[&format!("hearth/{MODEL}/release")]);
    assert!(
        release_reader
            .wait(LONG, |m| m.payload == "manifest-for-HRH-1")
            .is_some(),
        "a device reads its own model's release"
    );

    // dev2 publishes as if it were dev1; the fleet service never sees it.
    let service = broker.subscribe(SERVICE, &["hearth/device/+/status", PROBE], PROBE);
    broker.publish("dev2", &status_topic("dev1"), r#"{"state":"forged"}"#, true);
    broker.publish("dev2", &dev1_cmd, r#"{"command":"plug","on":true}"#, false);
    broker.publish(
        "dev2",
        &status_topic("dev2"),
        r#"{"state":"dev2-own"}"#,
        false,
    );
    assert!(
        service
            .wait(LONG, |m| m.payload.contains("dev2-own"))
            .is_some(),
        "a device writes its own status"
    );
    // The broker delivers to one subscriber in order: once the service's
    // marker, published after dev2's attempt, has reached dev1, dev2's
    // command would have too.
    broker.publish(SERVICE, &dev1_cmd, "after-dev2", false);
    assert!(owner.wait(LONG, |m| m.payload == "after-dev2").is_some());
    assert!(
        !owner.all().iter().any(|m| m.payload.contains("plug")),
        "dev2 sent a command to dev1: {:?}",
        owner.all()
    );
    assert!(
        service
            .wait(Duration::ZERO, |m| m.payload.contains("forged"))
            .is_none(),
        "dev2 wrote dev1's status: {:?}",
        service.all()
    );
    // A retained message comes with the subscription, before the probe
    // that confirms it: nothing but the probe means nothing is retained.
    let late = broker.subscribe(SERVICE, &[&status_topic("dev1"), PROBE], PROBE);
    let retained: Vec<Message> = late
        .all()
        .into_iter()
        .filter(|m| m.topic != PROBE)
        .collect();
    assert!(
        retained.is_empty(),
        "a forged retained status: {retained:?}"
    );

    // No client certificate: the TLS handshake fails, nothing is received.
    let mut anonymous = Sub::start(&broker, None, &["#"]);
    let status = anonymous
        .exit(LONG)
        .expect("mosquitto_sub without a certificate gives up");
    assert!(!status.success(), "{}", anonymous.errors());
    assert!(anonymous.all().is_empty());
    assert!(
        broker.log().contains("peer did not return a certificate"),
        "{}",
        broker.log()
    );

    // TLS below 1.2 is refused.
    let old = Command::new("openssl")
        .args(["s_client", "-tls1_1", "-connect"])
        .arg(format!("127.0.0.1:{}", broker.port))
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let text =
        String::from_utf8_lossy(&old.stderr).to_string() + &String::from_utf8_lossy(&old.stdout);
    assert!(
        text.contains("alert protocol version"),
        "the broker did not refuse TLS 1.1:\n{text}"
    );
}

#[test]
fn a_broker_with_a_certificate_from_another_ca_is_not_trusted() {
    let broker = Broker::start(&["dev1"], &[("dev1", MODEL)]);
    // A second, unrelated PKI: its CA is what the device is told to trust.
    let other = tempfile::tempdir().expect("temp dir");
    let status = Command::new(Path::new(BROKER_DIR).join("dev-pki.sh"))
        .arg(other.path())
        .status()
        .expect("dev-pki.sh");
    assert!(status.success());
    let config = broker.fleet_config("dev1").replace(
        &broker.pki("ca.crt").display().to_string(),
        &other.path().join("ca.crt").display().to_string(),
    );
    let daemon = Daemon::with_override(&config);
    let ready = daemon.ready();
    let deadline = Instant::now() + LONG;
    while !plain_log(&daemon).contains("TLS with the broker failed") {
        assert!(Instant::now() < deadline, "{}", plain_log(&daemon));
        std::thread::sleep(Duration::from_millis(100));
    }
    // Subscribed for sure (the probe came back), then a quiet period in
    // which a device that had got through would publish its status.
    let watcher = broker.subscribe(SERVICE, &["hearth/#"], PROBE);
    assert!(
        watcher.wait(QUIET, |m| m.topic != PROBE).is_none(),
        "{:?}",
        watcher.all()
    );
    assert!(!plain_log(&daemon).contains("connected to the fleet broker"));
    // The web UI is unaffected.
    assert_eq!(https_get(ready.addr, "/healthz").status, 200);
}

#[test]
fn a_device_without_a_certificate_makes_a_key_and_csr_and_connects_once_it_is_signed() {
    let broker = Broker::start(&[], &[("dev9", MODEL)]);
    let device = tempfile::tempdir().expect("temp dir");
    let fleet = device.path().join("fleet");
    let (key, csr, cert) = (
        fleet.join("device.key"),
        fleet.join("device.csr"),
        fleet.join("device.crt"),
    );
    let config = format!(
        "[fleet]\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\ncsr_file = \"{}\"\ndevice_id = \"dev9\"\n",
        broker.port,
        broker.pki("ca.crt").display(),
        cert.display(),
        key.display(),
        csr.display()
    );
    let daemon = Daemon::with_override(&config);
    daemon.ready();
    let deadline = Instant::now() + LONG;
    while !plain_log(&daemon).contains("MQTT waits for the device certificate") {
        assert!(Instant::now() < deadline, "{}", plain_log(&daemon));
        std::thread::sleep(Duration::from_millis(100));
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key)
            .expect("the device made its key")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the key is private");

    // The CSR is well-formed, self-signed by the device's key, for its id.
    let checked = Command::new("openssl")
        .args(["req", "-verify", "-noout", "-subject", "-in"])
        .arg(&csr)
        .output()
        .expect("openssl req");
    let text = String::from_utf8_lossy(&checked.stdout).to_string()
        + &String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{text}");
    assert!(
        text.contains("CN = dev9") || text.contains("CN=dev9"),
        "{text}"
    );

    // Nothing reached the broker without a certificate.
    let watcher = Sub::start(&broker, Some(SERVICE), &[&status_topic("dev9")]);
    assert!(watcher.wait(Duration::from_secs(1), |_| true).is_none());

    // The vendor's enrolment step signs it (here: the test CA) and installs
    // the certificate with a rename, so the device never reads half a file.
    let ext = device.path().join("client.ext");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .expect("ext");
    let staged = device.path().join("device.crt.new");
    let signed = Command::new("openssl")
        .args([
            "x509",
            "-req",
            "-days",
            "1",
            "-sha256",
            "-CAcreateserial",
            "-in",
        ])
        .arg(&csr)
        .arg("-CA")
        .arg(broker.pki("ca.crt"))
        .arg("-CAkey")
        .arg(broker.pki("ca.key"))
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&staged)
        .output()
        .expect("openssl x509");
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    std::fs::rename(&staged, &cert).expect("install certificate");

    let status = watcher.wait(LONG, online).unwrap_or_else(|| {
        panic!(
            "connected with the signed certificate; hearthd:\n{}",
            plain_log(&daemon)
        )
    });
    assert_eq!(status.json()["version"], hearthd::FIRMWARE_VERSION);
}

/// A status from a connected device: anything but the will's "offline"
/// (in host mode the update state is "unavailable": there are no slots).
fn online(m: &Message) -> bool {
    let state = m.json()["state"].clone();
    state.is_string() && state != "offline"
}

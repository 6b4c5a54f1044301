//! Secure by default: hearthd refuses to run updates against a Hearth
//! development root (whose private half is published) unless the image is
//! marked as a development image. Detected by the key's fingerprint, so a
//! copied development certificate is refused just the same.

mod support;

use std::time::{Duration, Instant};

use support::Daemon;

const DEV_ROOT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../yocto-layer/meta-hearth/files/dev-keys/hearth-dev-root.cert.pem"
);

fn start_with_root(root: &std::path::Path, marker: &std::path::Path) -> Daemon {
    let device = tempfile::tempdir().expect("device files").keep();
    let file = |name: &str, text: &str| {
        let path = device.join(name);
        std::fs::write(&path, text).expect("device file");
        path.display().to_string()
    };
    let config = format!(
        "[update]\nroot_file = \"{}\"\nca_file = \"{}\"\nhwrevision_file = \"{}\"\n\
         os_release_file = \"{}\"\ncmdline_file = \"{}\"\ndevelopment_keys_marker = \"{}\"\n\
         clock_has_rtc = true\n",
        root.display(),
        root.display(),
        file("hwrevision", "HRH-1 A\n"),
        file("os-release", "NAME=Hearth\nIMAGE_VERSION=1.0.0\n"),
        file("cmdline", "root=PARTLABEL=hearth-a ro hearth.slot=A\n"),
        marker.display(),
    );
    Daemon::with_override(&config)
}

/// The update status as the owner's dashboard reads it.
fn update_status(daemon: &Daemon) -> (serde_json::Value, std::net::SocketAddr) {
    let ready = daemon.ready();
    let code = ready.setup_code.expect("a first boot");
    let claimed = support::claim(ready.addr, &code, "Lantern-Orchard-Violet-1947");
    assert_eq!(claimed.status, 201, "{}", claimed.body);
    let cookie = claimed.session_cookie().expect("session");
    // The agent starts beside the web server; give it its first moment.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = support::https(
            ready.addr,
            "GET",
            "/api/update",
            &[("Cookie", &cookie)],
            None,
        )
        .json();
        if status["state"] == "unavailable" || status["running_slot"] == "A" {
            return (status, ready.addr);
        }
        assert!(
            Instant::now() < deadline,
            "the agent never started: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_copied_development_root_is_refused_in_an_unmarked_image() {
    let work = tempfile::tempdir().expect("temp dir");
    // The attack on path-based checks: the same certificate under a
    // product-looking name.
    let copied = work.path().join("acme-release-root.pem");
    std::fs::copy(DEV_ROOT, &copied).expect("copy the dev root");
    let marker = work.path().join("development-keys");

    let (status, _) = update_status(&start_with_root(&copied, &marker));
    assert_eq!(status["state"], "unavailable", "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("is a Hearth development key")),
        "{status}"
    );

    // Marked as a development image, the same root is accepted, and the
    // image says what it is wherever the device describes itself.
    let sentence = "This image trusts the Hearth development keys: never ship it.";
    std::fs::write(&marker, format!("{sentence}\n")).expect("marker");
    let daemon = start_with_root(&copied, &marker);
    let (status, addr) = update_status(&daemon);
    assert_eq!(status["running_slot"], "A", "{status}");
    assert_ne!(status["state"], "unavailable", "{status}");
    let page = support::https_get(addr, "/security");
    assert!(
        page.body.contains(sentence),
        "the security page: {}",
        page.body
    );
    let info = daemon
        .command("info")
        .arg("--json")
        .output()
        .expect("hearthd info");
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("JSON");
    assert_eq!(info["development_keys"], sentence, "{info}");
}

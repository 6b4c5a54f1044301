//! The update floors of issue 14 (items 4 and 5) on a booted device, with
//! the update lab's real parts (mosquitto with TLS, `hearth-release`, the
//! image's own hearthd and SWUpdate). The unit tests of
//! `daemon/src/update/record.rs` and `persist.rs` prove the rules; this
//! proves the device keeps them.

use std::time::Duration;

use system_tests::lab::Lab;
use system_tests::releases::Kind;

fn long() -> Duration {
    system_tests::boot_timeout()
}

/// `YYYY-MM-DDTHH:MM:SS` of an RFC 3339 time, for comparing two of them.
fn seconds(rfc3339: &str) -> &str {
    rfc3339.get(..19).unwrap_or(rfc3339)
}

/// A status in which the device has judged an offer: waiting, refused,
/// or (on a device without the floors) installing it.
fn judged(s: &serde_json::Value) -> bool {
    matches!(
        s["state"].as_str(),
        Some("available" | "failed" | "downloading" | "installing")
    )
}

/// One device, two boots and a factory reset; each step is an attack:
///
/// 1. **A revoked key, after the device only saw the next key ring.** The
///    vendor certifies a new signing key in key ring 2, which revokes the
///    development key K, and announces 9.1.0 signed under ring 2 with its
///    rollout a month away: the device verifies it and waits (installs
///    nothing). Then an attacker holding K announces 9.1.0 signed by K
///    under ring 1 (still root-signed and unexpired): refused before any
///    download, the status saying ring 1 is older than ring 2. Without the
///    floor rising at verification (`after_verifying`), ring 1 verifies and
///    the device downloads the attacker's release.
/// 2. **A factory reset to reopen the rollback.** The reset control is
///    pressed (the HEARTH-RESET drive); hearthd restarts factory-new and
///    judges the retained ring-1 manifest again: still refused, because
///    the update record (`DEVICE_RECORDS`) survives the reset.
/// 3. **The clock set back a year.** The device boots with its RTC a year
///    back (the broker's certificate is valid from two years back, so
///    the device still reports; systemd moves a clock that early up to
///    its own build date, months back, which is still below both floors)
///    and a new signed manifest is retained on the release topic: refused
///    before any check of the manifest, and the status says the clock was
///    set back, naming as the floor the
///    signed time the device verified in step 1, so the time floor also
///    survived the reset. The vendor tool signs only at the current time
///    and refuses to write an expired manifest, so the replayed manifest
///    is not expired by real time: the clock check comes before every
///    check of the manifest, so it is refused the same way.
#[test]
fn a_revoked_key_an_erased_floor_and_a_clock_set_back_do_not_reopen_old_releases() {
    let started = system_tests::utc_date("now", "%Y-%m-%dT%H:%M:%SZ");
    let year_back = system_tests::utc_date("1 year ago", "%Y-%m-%dT%H:%M:%S");
    let lab = Lab::with_server_valid_since(
        "floors",
        &system_tests::utc_date("2 years ago", "%Y%m%d%H%M%SZ"),
    );

    // The vendor: 9.1.0 under the development key ring (version 1, key K)
    // is what the attacker replays; key ring 2 certifies a new key and
    // revokes K; 9.1.0 under ring 2 rolls out in a month.
    let under_ring_1 = lab.vendor.release("9.1.0", Kind::Good, 1, false);
    let new_key = lab.vendor.signing_key("signing-2");
    let ring_2 = lab.vendor.next_keyring_revoking_the_dev_key(&new_key);
    let in_a_month = system_tests::utc_date("+30 days", "%Y-%m-%dT%H:%M:%SZ");
    let under_ring_2 = lab.vendor.manifest_signed_with(
        &under_ring_1,
        &new_key,
        &ring_2,
        "https://example.com/hearth/releases/9.1.0-ring-2",
        &["--rollout-start", &in_a_month],
    );
    let ring_2_json: serde_json::Value =
        serde_json::from_slice(&under_ring_2.manifest_bytes()).expect("manifest JSON");
    assert_eq!(ring_2_json["keyring"]["keyring"]["version"], 2);
    let revoked = system_tests::releases::Vendor::dev_signing_key_id();
    assert!(
        ring_2_json["keyring"]["keyring"]["keys"]
            .as_array()
            .is_some_and(|keys| keys.iter().all(|k| k["key_id"] != revoked.as_str())),
        "ring 2 revokes K: {}",
        ring_2_json["keyring"]
    );
    // The attacker's manifest is good but for the floor: a device that
    // has not seen ring 2 accepts it.
    lab.vendor
        .verify(&under_ring_1, "0.1.0", 1)
        .expect("ring 1's release verifies with key-ring floor 1");
    let floor_2 = lab
        .vendor
        .verify(&under_ring_1, "0.1.0", 2)
        .expect_err("key-ring floor 2 refuses ring 1");
    assert!(floor_2.contains("older than version 2"), "{floor_2}");
    let issued = ring_2_json["manifest"]["issued"]
        .as_str()
        .expect("issued")
        .to_owned();

    let mut device = lab.boot("boot1");
    device.wait_ready();
    let (seen, _) = lab.wait_status(0, long(), "from the device", |s| s["state"] == "idle");

    // 1. The device sees ring 2 and waits for the rollout.
    lab.announce(&under_ring_2);
    let (seen, status) = lab.wait_status(seen, long(), "9.1.0 under ring 2 judged", judged);
    assert_eq!(status["state"], "available", "verified, waiting: {status}");
    assert_eq!(status["update"]["release"]["version"], "9.1.0", "{status}");
    assert!(status["update"]["until"].is_string(), "{status}");
    // The attacker's release, signed by the revoked key under ring 1.
    lab.announce(&under_ring_1);
    let (seen, status) = lab.wait_status(seen, long(), "9.1.0 under ring 1 judged", judged);
    let refused_ring_1 = |status: &serde_json::Value, when: &str| {
        assert_eq!(status["state"], "failed", "{when}: refused: {status}");
        let error = status["update"]["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("key ring is version 1, older than version 2"),
            "{when}: the reason is the key-ring floor: {error}"
        );
    };
    refused_ring_1(&status, "after seeing ring 2");
    assert_eq!(lab.artifact_requests(), 0, "nothing was downloaded");

    // 2. The factory reset: hearthd goes offline, starts factory-new and
    //    judges the retained ring-1 manifest again.
    let before_reset = lab.status.count().max(seen);
    device.press_reset();
    device.wait_console_ready();
    let (seen, _) = lab.wait_status(before_reset, long(), "offline for the reset", |s| {
        s["state"] == "offline"
    });
    let (seen, status) = lab.wait_status(seen, long(), "ring 1 judged after the reset", judged);
    refused_ring_1(&status, "after the factory reset");
    assert_eq!(lab.artifact_requests(), 0, "nothing was downloaded");
    device.powerdown();

    // 3. A manifest retained for the device, which boots with its clock
    //    set back a year.
    let replay = lab.vendor.manifest_signed_with(
        &under_ring_1,
        &new_key,
        &ring_2,
        "https://example.com/hearth/releases/9.1.0-replayed",
        &[],
    );
    lab.announce(&replay);
    let seen = lab.status.count().max(seen);
    let mut device = lab.boot_with_rtc("boot2-clock-set-back", &year_back);
    device.wait_ready();
    let (_, status) = lab.wait_status(seen, long(), "judged with the clock set back", judged);
    let device_time = status["time"].as_str().unwrap_or_default().to_owned();
    assert!(
        seconds(&device_time) < seconds(&started),
        "the device's clock is set back ({device_time}, the test started at {started})"
    );
    assert_eq!(
        status["state"], "available",
        "waiting, not installing: {status}"
    );
    let waiting = status["update"]["waiting"].as_str().unwrap_or_default();
    assert!(
        waiting.contains("the clock was set back"),
        "the status says why: {waiting}"
    );
    // The floor it names is the time signed in ring 2's manifest (as the
    // device's clock saw it then), not the firmware's build: the time
    // floor was kept through the reset.
    let floor = waiting
        .split_once("earlier than ")
        .map(|(_, rest)| seconds(rest))
        .unwrap_or_default();
    assert!(
        seconds(&started) <= floor && floor <= seconds(&issued),
        "the floor {floor} is the time verified in step 1 ({issued}), after the test started ({started}): {waiting}"
    );
    assert_eq!(lab.artifact_requests(), 0, "nothing was downloaded");
    device.powerdown();
}

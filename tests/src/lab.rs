//! The update lab: the vendor's side of automatic updates and one device,
//! with the real parts. mosquitto with the shipped TLS/ACL configuration,
//! an HTTPS server for the artifacts, releases made by `hearth-release` from
//! the development image itself, and a device provisioned at the "factory"
//! with its fleet identity. The guest reaches the broker and the server only
//! through `guestfwd` rules (user networking, restrict=on).
//!
//! Used by the QEMU update tests (`tests/system/update.rs`) and the
//! conformance suite's 5.3 cases (`tests/conformance/updates.rs`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::broker::{Broker, GUEST_HOST, Message, SERVICE, Sub};
use crate::offline::Ext4;
use crate::releases::{GUEST_HTTPS_PORT, MODEL, Release, Vendor};
use crate::update_server::UpdateServer;
use crate::{Device, Disk};

/// The lab device's id (its certificate CN and its MQTT topics).
pub const DEVICE_ID: &str = "qemu-dev-1";
/// Partitions of the development image.
pub const ESP: usize = 1;
pub const SLOT_A: usize = 2;
pub const DATA: usize = 4;
/// The port at which the guest reaches the broker (a guestfwd rule).
pub const MQTT_GUEST_PORT: u16 = 8883;

/// The vendor's side of a lab: the broker, the releases, the update server,
/// and the test's subscription to the device's status.
#[derive(Debug)]
pub struct Servers {
    pub broker: Broker,
    pub vendor: Vendor,
    pub server: UpdateServer,
    /// Everything the device published on its status topic (and the probe).
    pub status: Sub,
}

/// The vendor's side and one device (the x86-64 development image); its
/// [`Servers`] are reached through it (`lab.broker`, `lab.announce(…)`).
#[derive(Debug)]
pub struct Lab {
    pub servers: Servers,
    pub disk: Disk,
}

impl std::ops::Deref for Lab {
    type Target = Servers;
    fn deref(&self) -> &Servers {
        &self.servers
    }
}

impl std::ops::DerefMut for Lab {
    fn deref_mut(&mut self) -> &mut Servers {
        &mut self.servers
    }
}

/// A disk the lab provisions at the "factory" (offline, powered off).
pub trait FactoryDisk {
    /// The raw image whose partition table and slot A the disk starts from.
    fn image(&self) -> &Path;
    /// A scratch directory of the disk's own.
    fn dir(&self) -> &Path;
    /// Partition `number` (1-based) copied out to a raw file.
    fn read_partition(&self, number: usize) -> PathBuf;
    /// A raw partition file written back.
    fn write_partition(&self, number: usize, raw: &Path);
    fn partition(&self, number: usize) -> crate::offline::Partition;
}

impl FactoryDisk for Disk {
    fn image(&self) -> &Path {
        Disk::image(self)
    }
    fn dir(&self) -> &Path {
        Disk::dir(self)
    }
    fn read_partition(&self, number: usize) -> PathBuf {
        Disk::read_partition(self, number)
    }
    fn write_partition(&self, number: usize, raw: &Path) {
        Disk::write_partition(self, number, raw)
    }
    fn partition(&self, number: usize) -> crate::offline::Partition {
        Disk::partition(self, number)
    }
}

impl Servers {
    /// The broker (with `ids` enrolled for the lab's model), a vendor whose
    /// releases are made from `vendor`'s base, and the update server.
    pub fn start(ids: &[&str], valid_since: Option<&str>, vendor: Vendor) -> Servers {
        let enrolled: Vec<(&str, &str)> = ids.iter().map(|id| (*id, MODEL)).collect();
        let broker = Broker::start_with(ids, &enrolled, valid_since);
        let server = UpdateServer::start(
            &vendor.web_root,
            &broker.pki("broker.crt"),
            &broker.pki("broker.key"),
        );
        let status = status_subscription(&broker, DEVICE_ID);
        Servers {
            broker,
            vendor,
            server,
            status,
        }
    }

    /// Writes the lab device's factory data (fleet identity, update
    /// settings) into `disk`'s /data partition.
    pub fn provision(
        &self,
        disk: &impl FactoryDisk,
        manifest_url: Option<&str>,
        update_lines: &str,
    ) {
        provision_as(disk, &self.broker, DEVICE_ID, manifest_url, update_lines);
    }
}

impl Lab {
    /// A fresh device provisioned at the "factory" with its fleet identity;
    /// `https_check` also gives it the model's manifest URL.
    pub fn new(name: &str, https_check: bool) -> Lab {
        Lab::with_update_config(name, https_check.then(Vendor::manifest_url), "")
    }

    /// [`Lab::new`] with the manifest URL for the periodic HTTPS check (if
    /// any) and more lines for the device's `[update]` table.
    pub fn with_update_config(name: &str, manifest_url: Option<String>, update_lines: &str) -> Lab {
        Lab::build(name, manifest_url, update_lines, None)
    }

    /// [`Lab::new`] (no HTTPS check) whose server certificate is valid
    /// from `valid_since` (`YYYYMMDDHHMMSSZ`): for a device booted with its
    /// clock set back ([`Lab::boot_with_rtc`]), which must still reach the
    /// broker to report what it refuses.
    pub fn with_server_valid_since(name: &str, valid_since: &str) -> Lab {
        Lab::build(name, None, "", Some(valid_since))
    }

    /// [`Lab::new`] (no HTTPS check) with a second device of the same
    /// model in the fleet, `neighbour_id`, provisioned the same way on a
    /// disk of its own: for what differs between devices (rollout waves).
    pub fn with_neighbour(name: &str, neighbour_id: &str) -> (Lab, Neighbour) {
        let lab = Lab::build_for(name, None, "", None, &[neighbour_id]);
        let disk = Disk::fresh(&format!("{name}-{neighbour_id}"));
        provision_as(&disk, &lab.broker, neighbour_id, None, "");
        let status = status_subscription(&lab.broker, neighbour_id);
        let neighbour = Neighbour {
            id: neighbour_id.to_owned(),
            disk,
            status,
        };
        (lab, neighbour)
    }

    fn build(
        name: &str,
        manifest_url: Option<String>,
        update_lines: &str,
        valid_since: Option<&str>,
    ) -> Lab {
        Lab::build_for(name, manifest_url, update_lines, valid_since, &[])
    }

    fn build_for(
        name: &str,
        manifest_url: Option<String>,
        update_lines: &str,
        valid_since: Option<&str>,
        neighbours: &[&str],
    ) -> Lab {
        let mut ids = vec![DEVICE_ID];
        ids.extend_from_slice(neighbours);
        let servers = Servers::start(&ids, valid_since, Vendor::new());
        let disk = Disk::fresh(name);
        servers.provision(&disk, manifest_url.as_deref(), update_lines);
        Lab { servers, disk }
    }

    /// Boots the device with the two guestfwd rules.
    pub fn boot(&self, label: &str) -> Device {
        Device::boot_with(&self.disk, label, &["--net-extra", &self.net_extra()])
    }

    /// Boots the neighbour, with the same two guestfwd rules.
    pub fn boot_neighbour(&self, neighbour: &Neighbour, label: &str) -> Device {
        Device::boot_with(&neighbour.disk, label, &["--net-extra", &self.net_extra()])
    }

    /// [`Lab::boot`] with the guest's RTC starting at `rtc_base` (QEMU's
    /// `-rtc base=`, e.g. `2025-12-06T12:00:00`): the device's clock set back.
    pub fn boot_with_rtc(&self, label: &str, rtc_base: &str) -> Device {
        Device::boot_with_rtc(
            &self.disk,
            label,
            &["--net-extra", &self.net_extra()],
            rtc_base,
        )
    }

    /// [`Servers::wait_status`] for a wait that spans the device's reboot: it
    /// looks after the device's QEMU meanwhile ([`Device::tend`]), and a
    /// failure shows the device's console.
    pub fn wait_status_across_reboot(
        &self,
        device: &mut Device,
        skip: usize,
        limit: Duration,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> (usize, serde_json::Value) {
        let deadline = Instant::now() + limit;
        loop {
            let look = Duration::from_secs(2);
            if let Some(message) = self
                .status
                .wait_after(skip, look, status_matching(&matches))
            {
                return found_status(&self.status, skip, what, &message);
            }
            device.tend();
            if Instant::now() >= deadline {
                let none = no_status(&self.status, what, limit);
                panic!("{none}\n{}", device.diagnostics());
            }
        }
    }
}

impl Servers {
    /// The broker comes back after an outage ([`Broker::kill`]), and the
    /// status subscription with it: [`Servers::wait_status`] counts from 0
    /// again. The test broker keeps nothing on disk, so retained messages
    /// (the release) are gone.
    pub fn restart_broker(&mut self) {
        self.broker.spawn();
        self.status = status_subscription(&self.broker, DEVICE_ID);
    }

    /// The user-mode network's rules by which the guest reaches the broker
    /// and the update server (appended to QEMU's `-netdev user,…`).
    pub fn net_extra(&self) -> String {
        format!(
            ",guestfwd=tcp:{GUEST_HOST}:{MQTT_GUEST_PORT}-cmd:socat STDIO TCP:127.0.0.1:{}\
             ,guestfwd=tcp:{GUEST_HOST}:{GUEST_HTTPS_PORT}-cmd:socat STDIO TCP:127.0.0.1:{}",
            self.broker.port, self.server.port
        )
    }

    /// Announces `release` on the model's retained release topic.
    pub fn announce(&self, release: &Release) {
        let manifest = String::from_utf8(release.manifest_bytes()).expect("manifest text");
        self.announce_bytes(&manifest);
    }

    pub fn announce_bytes(&self, manifest: &str) {
        self.broker
            .publish(SERVICE, &format!("hearth/{MODEL}/release"), manifest, true);
    }

    /// The first status after the first `skip` messages that `matches`,
    /// with the number of messages up to and including it. Panics with
    /// the last statuses when none comes within `limit`.
    pub fn wait_status(
        &self,
        skip: usize,
        limit: Duration,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> (usize, serde_json::Value) {
        self.try_wait_status(skip, limit, what, matches)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Servers::wait_status`] without the panic: the error says what came.
    pub fn try_wait_status(
        &self,
        skip: usize,
        limit: Duration,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<(usize, serde_json::Value), String> {
        try_wait_status(&self.status, skip, limit, what, matches)
    }

    /// Requests for `.swu` files that reached the update server.
    pub fn artifact_requests(&self) -> usize {
        self.server.artifact_requests()
    }

    /// Where the update server keeps `release`'s chunk index.
    pub fn published_index(&self, release: &Release) -> PathBuf {
        let mut index = self.published_swu(release).into_os_string();
        index.push(".index");
        PathBuf::from(index)
    }

    /// Where the update server keeps `release`'s delta index and pack.
    pub fn published_delta(&self, release: &Release) -> (PathBuf, PathBuf) {
        crate::releases::delta_files(&self.published_swu(release))
    }

    /// Where the update server keeps `release`'s artifact.
    pub fn published_swu(&self, release: &Release) -> PathBuf {
        let swu = self
            .server
            .root
            .join(format!("{MODEL}/{0}/hearth-{0}.swu", release.version));
        if swu.exists() {
            swu
        } else {
            find_swu(&self.server.root, &release.version)
        }
    }
}

/// The first `.swu` under `root` whose name has `version` in it.
fn find_swu(root: &Path, version: &str) -> PathBuf {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "swu")
                && path.to_string_lossy().contains(version)
            {
                return path;
            }
        }
    }
    panic!("no .swu of {version} under {}", root.display());
}

/// The first status on `status` after the first `skip` messages that
/// `matches`, with the number of messages up to and including it; or what
/// came instead.
fn try_wait_status(
    status: &Sub,
    skip: usize,
    limit: Duration,
    what: &str,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> Result<(usize, serde_json::Value), String> {
    match status.wait_after(skip, limit, status_matching(&matches)) {
        Some(message) => Ok(found_status(status, skip, what, &message)),
        None => Err(no_status(status, what, limit)),
    }
}

/// `message` (found after `skip`) and the count up to and including it.
fn found_status(
    status: &Sub,
    skip: usize,
    what: &str,
    message: &Message,
) -> (usize, serde_json::Value) {
    let index = status
        .all()
        .iter()
        .skip(skip)
        .position(|m| m.payload == message.payload)
        .map_or(skip, |i| i + skip);
    eprintln!("status {what}: {}", message.payload);
    (index + 1, message.json())
}

fn no_status(status: &Sub, what: &str, limit: Duration) -> String {
    let last: Vec<String> = status
        .all()
        .iter()
        .rev()
        .take(5)
        .map(|m| m.payload.clone())
        .collect();
    format!(
        "no status {what} within {} s; the last ones (newest first):\n{}",
        limit.as_secs(),
        last.join("\n")
    )
}

/// A second device in a [`Lab`] ([`Lab::with_neighbour`]): its own fleet
/// identity, disk and status subscription.
#[derive(Debug)]
pub struct Neighbour {
    pub id: String,
    pub disk: Disk,
    pub status: Sub,
}

impl Neighbour {
    /// [`Lab::wait_status`] for the neighbour's status.
    pub fn wait_status(
        &self,
        skip: usize,
        limit: Duration,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> (usize, serde_json::Value) {
        try_wait_status(&self.status, skip, limit, what, matches).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The test's subscription to the device's status (mosquitto_sub ends when
/// the broker goes away).
fn status_subscription(broker: &Broker, device_id: &str) -> Sub {
    broker.subscribe(
        SERVICE,
        &[
            &format!("hearth/device/{device_id}/status"),
            "hearth/test/probe",
        ],
        "hearth/test/probe",
    )
}

/// Writes the device's factory data into its /data partition (offline):
/// `/data/factory/hearth.toml` with the fleet and update settings, the
/// fleet CA, the device certificate and its key (readable by hearthd only).
/// [`provision`] as the device `device_id`.
fn provision_as(
    disk: &impl FactoryDisk,
    broker: &Broker,
    device_id: &str,
    manifest_url: Option<&str>,
    update_lines: &str,
) {
    let passwd = Ext4::in_image(disk.image(), &disk.partition(SLOT_A))
        .read("/etc/passwd")
        .expect("/etc/passwd");
    let passwd = String::from_utf8_lossy(&passwd);
    let uid = passwd
        .lines()
        .find_map(|l| l.strip_prefix("hearth:"))
        .and_then(|rest| rest.split(':').nth(1))
        .expect("the hearth user")
        .to_owned();
    let manifest_url = manifest_url
        .map(|url| format!("manifest_url = \"{url}\"\ncheck_interval_hours = 0.01\n"))
        .unwrap_or_default();
    // The trial's limit and the restart notice, unless the test sets its own.
    let health_timeout = if update_lines.contains("health_timeout_secs") {
        ""
    } else {
        "health_timeout_secs = 120\n"
    };
    let notice = if update_lines.contains("reboot_notice_secs") {
        ""
    } else {
        "reboot_notice_secs = 5\n"
    };
    let config = format!(
        "# Factory provisioning (system test)\n\
         [fleet]\nhost = \"{GUEST_HOST}\"\nport = {MQTT_GUEST_PORT}\n\
         ca_file = \"/data/factory/fleet-ca.pem\"\ncert_file = \"/data/factory/device.crt\"\n\
         key_file = \"/data/factory/device.key\"\ndevice_id = \"{device_id}\"\n\
         reconnect_initial_secs = 1.0\nreconnect_max_secs = 4.0\n\n\
         [update]\nca_file = \"/data/factory/fleet-ca.pem\"\n\
         {notice}{health_timeout}{manifest_url}{update_lines}"
    );
    let scratch = disk.dir().join("factory");
    std::fs::create_dir_all(&scratch).expect("scratch");
    std::fs::write(scratch.join("hearth.toml"), config).expect("config");
    for (from, to) in [
        ("ca.crt", "fleet-ca.pem"),
        (&format!("{device_id}.crt") as &str, "device.crt"),
        (&format!("{device_id}.key"), "device.key"),
    ] {
        std::fs::copy(broker.pki(from), scratch.join(to)).expect("copy PKI file");
    }
    let raw = disk.read_partition(DATA);
    let mut requests = vec!["mkdir /factory".to_owned()];
    for name in ["hearth.toml", "fleet-ca.pem", "device.crt", "device.key"] {
        requests.push(format!(
            "write {} /factory/{name}",
            scratch.join(name).display()
        ));
        requests.push(format!("sif /factory/{name} mode 0100644"));
    }
    requests.push("sif /factory/device.key mode 0100600".into());
    requests.push(format!("sif /factory/device.key uid {uid}"));
    let script = disk.dir().join("provision.debugfs");
    std::fs::write(&script, requests.join("\n") + "\n").expect("debugfs script");
    let out = std::process::Command::new("debugfs")
        .args(["-w", "-f"])
        .arg(&script)
        .arg(&raw)
        .output()
        .expect("run debugfs");
    assert!(
        out.status.success(),
        "provisioning failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    disk.write_partition(DATA, &raw);
}

/// A status message whose JSON `matches`.
fn status_matching(
    matches: &impl Fn(&serde_json::Value) -> bool,
) -> impl Fn(&Message) -> bool + '_ {
    move |m: &Message| {
        m.topic.ends_with("/status")
            && serde_json::from_str::<serde_json::Value>(&m.payload).is_ok_and(|v| matches(&v))
    }
}

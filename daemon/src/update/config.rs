//! The `[update]` section of the configuration: where the device's update
//! parts are and the vendor's limits. Without the section hearthd makes no
//! update attempt at all (host mode, tests of other parts).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use update_manifest::ArtifactUrl;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// The release root (X.509 certificate or public key, PEM) in the
    /// read-only image; the same certificate SWUpdate checks CMS with.
    pub root_file: PathBuf,
    /// Present only in images built to trust the Hearth development keys
    /// (`HEARTH_ALLOW_DEV_KEYS = "1"`); without it a development root is
    /// refused. Its text is shown on the console and the security page.
    #[serde(default = "default_development_keys_marker")]
    pub development_keys_marker: PathBuf,
    /// `"<model> <revision>"`, the file SWUpdate reads too.
    #[serde(default = "default_hwrevision")]
    pub hwrevision_file: PathBuf,
    /// The image's os-release; `IMAGE_VERSION` is the running firmware.
    #[serde(default = "default_os_release")]
    pub os_release_file: PathBuf,
    /// Names the running slot (`hearth.slot=`).
    #[serde(default = "default_cmdline")]
    pub cmdline_file: PathBuf,
    /// SWUpdate's control and progress sockets: on the device
    /// hearth-update-gate's, which hold SWUpdate to the running version
    /// (hearthd may not use SWUpdate's own).
    #[serde(default = "default_control_socket")]
    pub swupdate_control_socket: PathBuf,
    #[serde(default = "default_progress_socket")]
    pub swupdate_progress_socket: PathBuf,
    /// The SWUpdate release the progress socket's protocol follows:
    /// `"2022.12"` (Debian bookworm, up to 2024.05), `"2024.12"` (connect
    /// acknowledgement, up to 2025.05) or `"2025.12"` (packed frames).
    #[serde(default = "default_progress_layout")]
    pub swupdate_progress_layout: String,
    /// The CA bundle trusted for artifact and manifest downloads (PEM): the
    /// vendor's CA, or the system bundle to use the public web PKI.
    pub ca_file: PathBuf,
    /// The model's manifest over HTTPS, checked after boot and then every
    /// `check_interval_hours` (with jitter), so updates arrive even when
    /// MQTT is down (EN 303 645 5.3-5). Absent: MQTT only.
    pub manifest_url: Option<ArtifactUrl>,
    #[serde(default = "default_check_interval")]
    pub check_interval_hours: f64,
    /// Largest artifact accepted, whatever a manifest says.
    #[serde(default = "default_max_artifact")]
    pub max_artifact_bytes: u64,
    /// A security release is installed at the latest this long after the
    /// device first saw it, whatever the owner postponed (the vendor's
    /// limit on postponing, EN 303 645 5.3-3 guidance).
    #[serde(default = "default_security_limit")]
    pub security_postpone_limit_hours: f64,
    /// The longest an owner may postpone any release in one go.
    #[serde(default = "default_postpone_max")]
    pub postpone_max_days: u32,
    /// How long the owner is told before the device reboots into an update
    /// (EN 303 645 5.3-12).
    #[serde(default = "default_reboot_notice")]
    pub reboot_notice_secs: u64,
    /// The file whose creation asks the root-side `hearth-reboot.path` unit
    /// to reboot (hearthd itself has no privilege to).
    #[serde(default = "default_reboot_request")]
    pub reboot_request_file: PathBuf,
    /// After booting a new slot: how long the health check may take
    /// (MQTT or HTTPS reachable, vendor hook) before the slot is given up.
    #[serde(default = "default_health_timeout")]
    pub health_timeout_secs: u64,
    /// A vendor program run as part of the health check; exit 0 = healthy.
    pub health_hook: Option<PathBuf>,
    /// Timeouts of one HTTPS request.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    #[serde(default = "default_read_timeout")]
    pub read_timeout_secs: u64,
    /// Download attempts (the first plus resumptions with `Range`).
    #[serde(default = "default_attempts")]
    pub download_attempts: u32,
    /// `true` on hardware with a battery-backed clock. Otherwise the device
    /// waits for `/run/systemd/timesync/synchronized` before it trusts the
    /// time for manifest expiry and TLS validity.
    #[serde(default)]
    pub clock_has_rtc: bool,
    /// The file systemd-timesyncd creates once the clock is synchronised.
    #[serde(default = "default_time_sync_file")]
    pub time_sync_file: PathBuf,
    /// Install delta releases (reusing the running slot's blocks) when a
    /// manifest offers one; `false` downloads every release whole.
    #[serde(default = "default_true")]
    pub delta_updates: bool,
    /// The running slot's block device. Default: the block device the root
    /// file system is mounted from, among the nodes under /dev that hearthd
    /// may see (hearthd.service binds the two slots in, read-only).
    pub running_slot_device: Option<PathBuf>,
}

impl UpdateConfig {
    /// Where a delta install reads the running slot, or `None` for none.
    pub fn running_slot_device(&self) -> Option<PathBuf> {
        if !self.delta_updates {
            return None;
        }
        self.running_slot_device
            .clone()
            .or_else(|| super::slot::root_device(std::path::Path::new("/dev")))
    }
}

fn default_true() -> bool {
    true
}

fn default_hwrevision() -> PathBuf {
    "/etc/hwrevision".into()
}
fn default_os_release() -> PathBuf {
    "/etc/os-release".into()
}
fn default_cmdline() -> PathBuf {
    "/proc/cmdline".into()
}
fn default_control_socket() -> PathBuf {
    "/run/hearth-update-gate/sockinstctrl".into()
}
fn default_progress_socket() -> PathBuf {
    "/run/hearth-update-gate/swupdateprog".into()
}
fn default_progress_layout() -> String {
    "2022.12".into()
}
fn default_check_interval() -> f64 {
    24.0
}
fn default_max_artifact() -> u64 {
    1 << 30
}
fn default_security_limit() -> f64 {
    72.0
}
fn default_postpone_max() -> u32 {
    14
}
fn default_reboot_notice() -> u64 {
    60
}
fn default_development_keys_marker() -> PathBuf {
    PathBuf::from(crate::update::DEVELOPMENT_KEYS_MARKER)
}

fn default_reboot_request() -> PathBuf {
    "/run/hearthd/reboot-request".into()
}
fn default_health_timeout() -> u64 {
    300
}
fn default_connect_timeout() -> u64 {
    15
}
fn default_read_timeout() -> u64 {
    60
}
fn default_attempts() -> u32 {
    8
}
fn default_time_sync_file() -> PathBuf {
    "/run/systemd/timesync/synchronized".into()
}

impl UpdateConfig {
    /// Checks the values; on failure, the key (below `update.`) and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        let fail = |key: &str, message: &str| Err((key.to_owned(), message.to_owned()));
        for (key, path) in [
            ("root_file", &self.root_file),
            ("ca_file", &self.ca_file),
            ("reboot_request_file", &self.reboot_request_file),
            ("development_keys_marker", &self.development_keys_marker),
        ] {
            if !path.is_absolute() {
                return fail(key, "expected an absolute path");
            }
        }
        if self.progress_protocol().is_none() {
            return fail(
                "swupdate_progress_layout",
                "expected the SWUpdate release: \"2022.12\", \"2024.12\" or \"2025.12\"",
            );
        }
        if !(self.check_interval_hours > 0.0 && self.check_interval_hours <= 24.0) {
            return fail(
                "check_interval_hours",
                "expected more than 0 and at most 24: the device checks at least daily",
            );
        }
        if !(self.security_postpone_limit_hours >= 0.0
            && self.security_postpone_limit_hours <= 30.0 * 24.0)
        {
            return fail(
                "security_postpone_limit_hours",
                "expected 0 to 720 hours: a security fix must not wait longer than a month",
            );
        }
        if self.download_attempts == 0 {
            return fail("download_attempts", "expected at least 1");
        }
        Ok(())
    }

    pub fn check_interval(&self) -> Duration {
        Duration::from_secs_f64(self.check_interval_hours * 3600.0)
    }

    pub fn security_postpone_limit(&self) -> Duration {
        Duration::from_secs_f64(self.security_postpone_limit_hours * 3600.0)
    }

    pub fn swupdate_client(&self) -> swupdate_rs::Client {
        swupdate_rs::Client::new(swupdate_rs::ClientConfig {
            control_socket: self.swupdate_control_socket.clone(),
            progress_socket: self.swupdate_progress_socket.clone(),
            ..swupdate_rs::ClientConfig::default()
        })
    }

    pub fn progress_protocol(&self) -> Option<swupdate_rs::ProgressProtocol> {
        use swupdate_rs::ProgressProtocol as P;
        match self.swupdate_progress_layout.as_str() {
            "2022.12" => Some(P::SWUPDATE_2022_12),
            "2024.12" => Some(P::SWUPDATE_2024_12),
            "2025.12" => Some(P::SWUPDATE_2025_12),
            _ => None,
        }
    }
}

//! The JSON the device publishes: status, last will and Home Assistant
//! discovery. The device-info payload is `disclosure::DeviceInfo`.

use serde::Serialize;
use serde_json::json;

use super::topics::Topics;

/// Bumped when a status field changes meaning or disappears.
pub const STATUS_SCHEMA: u32 = 3;

/// The retained status message. `state` is the update agent's state
/// (`"starting"`, `"idle"`, `"available"`, `"downloading"`, `"installing"`, `"waiting-to-reboot"`,
/// `"rebooting"`, `"checking"`, `"failed"`, `"unavailable"`; docs/mqtt.md),
/// `"idle"` on a device without automatic updates. The last will carries
/// `"offline"`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub schema: u32,
    pub state: &'static str,
    pub version: String,
    /// Percent of the running update, `null` when none runs.
    pub progress: Option<u8>,
    /// The update agent's whole status (release, waiting, last result,
    /// refused versions); `null` without automatic updates.
    pub update: Option<crate::update::status::UpdateStatus>,
    pub last_error: Option<LastError>,
    /// RFC 3339, UTC, when this status was published.
    pub time: String,
    /// Whether the owner has claimed the device (commands need it).
    pub claimed: bool,
    pub plug: PlugStatus,
    pub support: SupportStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlugStatus {
    pub on: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SupportStatus {
    pub state: disclosure::SupportState,
    pub end_date: String,
    pub message: String,
}

/// The last refused or failed command.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub code: &'static str,
    pub message: String,
    /// The sender's `id` of the command, if it had one.
    pub command_id: Option<String>,
    pub time: String,
}

/// The last will, and what a clean shutdown publishes: just the state, since
/// nothing else is known to be true once the device is gone.
pub fn offline() -> String {
    json!({ "schema": STATUS_SCHEMA, "state": "offline" }).to_string()
}

/// The command payloads Home Assistant sends for on and off.
pub fn plug_command(on: bool) -> String {
    json!({ "command": "plug", "on": on }).to_string()
}

/// Home Assistant MQTT discovery for the plug, as a `switch` entity whose
/// state and availability come from the status topic.
pub fn discovery(topics: &Topics, device_id: &str, info: &disclosure::DeviceInfo) -> String {
    json!({
        "name": null,
        "unique_id": format!("{device_id}-plug"),
        "object_id": format!("{device_id}_plug"),
        "command_topic": topics.cmd,
        "payload_on": plug_command(true),
        "payload_off": plug_command(false),
        "state_topic": topics.status,
        "value_template":
            "{{ 'ON' if value_json.plug is defined and value_json.plug.on else 'OFF' }}",
        "availability_topic": topics.status,
        "availability_template":
            "{{ 'offline' if value_json.state == 'offline' else 'online' }}",
        "qos": 1,
        "device": {
            "identifiers": [device_id],
            "name": info.product,
            "manufacturer": info.vendor,
            "model": info.model,
            "hw_version": info.hardware_revision,
            "sw_version": info.firmware_version,
        },
    })
    .to_string()
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::topics::Segment;

    #[test]
    fn the_will_says_offline() {
        let will: serde_json::Value = serde_json::from_str(&offline()).expect("json");
        assert_eq!(will["state"], "offline");
    }

    #[test]
    fn discovery_points_home_assistant_at_the_device_topics() {
        let seg = |s: &str| Segment::try_from(s).expect("segment");
        let topics = Topics::new(&seg("hearth"), &seg("M"), &seg("d1"), Some(&seg("ha")));
        let vendor_file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../yocto-layer/meta-hearth/recipes-core/hearth-vendor/files/vendor.toml"
        );
        let vendor =
            disclosure::VendorFile::load(std::path::Path::new(vendor_file)).expect("vendor");
        let info = vendor.device_info("1.2.3", time::macros::date!(2026 - 01 - 01));
        let config: serde_json::Value =
            serde_json::from_str(&discovery(&topics, "d1", &info)).expect("json");
        assert_eq!(config["command_topic"], "hearth/device/d1/cmd");
        assert_eq!(config["state_topic"], "hearth/device/d1/status");
        assert_eq!(config["unique_id"], "d1-plug");
        assert_eq!(config["device"]["sw_version"], "1.2.3");
        let on: serde_json::Value =
            serde_json::from_str(config["payload_on"].as_str().expect("str")).expect("json");
        assert_eq!(on, json!({"command": "plug", "on": true}));
        let parsed = super::super::command::parse(
            config["payload_off"].as_str().expect("str").as_bytes(),
            false,
        )
        .expect("the device understands what discovery tells HA to send");
        assert_eq!(
            parsed.action,
            super::super::command::Action::Plug { on: false }
        );
    }

    #[test]
    fn time_is_rfc3339_utc() {
        let t = now_rfc3339();
        assert!(t.ends_with('Z') && t.len() == 20, "{t}");
    }
}

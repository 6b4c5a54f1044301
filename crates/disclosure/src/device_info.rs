//! The device-info message: the same facts as security.txt and the security
//! page, for a fleet. Published retained over MQTT by the daemon; this crate
//! only defines the payload.

use serde::{Deserialize, Serialize};
use time::Date;

use crate::support::{SupportState, SupportStatus};
use crate::vendor::VendorFile;

/// Bumped when a field changes meaning or disappears (adding one does not).
pub const SCHEMA: u32 = 1;

/// Suggested topic suffix; the daemon prefixes its own topic root.
pub const TOPIC_SUFFIX: &str = "device-info";

/// The JSON payload. Dates are `YYYY-MM-DD` strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub schema: u32,
    pub vendor: String,
    pub product: String,
    pub model: String,
    pub hardware_revision: String,
    pub firmware_version: String,
    pub support: SupportInfo,
    pub disclosure: DisclosureInfo,
    /// Set only on an image built to trust the Hearth development keys:
    /// its marker sentence ("never ship it"), so a fleet operator sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub development_keys: Option<String>,
}

/// The support period part of [`DeviceInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportInfo {
    pub end_date: String,
    pub url: String,
    pub state: SupportState,
    /// Days until the end date; negative once it has passed.
    pub days_left: i64,
    /// The plain-language sentence the dashboard shows.
    pub message: String,
}

/// The disclosure part of [`DeviceInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisclosureInfo {
    pub contacts: Vec<String>,
    pub policy_url: String,
    pub acknowledgement: String,
    pub status_updates: String,
}

impl DeviceInfo {
    /// The payload for this vendor file, firmware and day.
    pub fn new(vendor: &VendorFile, firmware_version: &str, today: Date) -> Self {
        let status = SupportStatus::on(vendor.support.end_date, today);
        let d = &vendor.disclosure;
        Self {
            schema: SCHEMA,
            vendor: vendor.vendor.name.clone(),
            product: vendor.product.name.clone(),
            model: vendor.product.model.clone(),
            hardware_revision: vendor.product.hardware_revision.clone(),
            firmware_version: firmware_version.to_owned(),
            support: SupportInfo {
                end_date: vendor.support.end_date.to_string(),
                url: vendor.support.url.clone(),
                state: status.state,
                days_left: status.days_left,
                message: status.sentence(&vendor.vendor.name),
            },
            disclosure: DisclosureInfo {
                contacts: d.contacts.clone(),
                policy_url: d.policy_url.clone(),
                acknowledgement: d.acknowledgement.clone(),
                status_updates: d.status_updates.clone(),
            },
            development_keys: None,
        }
    }

    /// Compact JSON, ready to publish.
    pub fn to_json(&self) -> String {
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

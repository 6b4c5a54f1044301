//! The owner's settings. Automatic updates are on unless the owner turns
//! them off (EN 303 645 5.3-4, 5.3-6); plug commands from the vendor's
//! fleet service are off until the owner turns them on. A damaged record
//! falls back to these defaults, which are the safe choice.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::persist::{Cached, Store};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub automatic_updates: bool,
    /// When the device may restart to finish an update (UTC hours);
    /// `None`: at once. Security updates wait at most the vendor's limit.
    pub maintenance_window: Option<crate::update::policy::Window>,
    /// Whether commands on the MQTT command topic may switch the plug.
    /// Off by default: whoever controls the broker would otherwise control
    /// the owner's appliance.
    pub fleet_plug_commands: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            automatic_updates: true,
            maintenance_window: None,
            fleet_plug_commands: false,
        }
    }
}

pub type SettingsStore = Cached<Settings>;

pub fn open(store: Arc<Store>) -> SettingsStore {
    Cached::open(store, "settings")
}

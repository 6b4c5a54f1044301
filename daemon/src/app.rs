//! What the adapters share: the HTTPS server (`web`) and the MQTT link
//! (`fleet`) sit on top and reach the device through this; the domain
//! (`access`, `update`, `plug`, `settings`) sits below and never sees it
//! (the update agent gets its own narrow [`Handles`](crate::update::agent::Handles)).

use std::sync::Arc;

use disclosure::VendorFile;

use crate::access::Access;
use crate::plug::Plug;
use crate::settings::SettingsStore;

/// What the pages, the API and the MQTT link read.
#[derive(Debug)]
pub struct AppState {
    /// The running firmware (the image's `IMAGE_VERSION`).
    pub firmware_version: String,
    pub access: Arc<Access>,
    pub vendor: VendorFile,
    pub plug: Plug,
    pub settings: Arc<SettingsStore>,
    /// The update agent; `None` without an `[update]` section.
    pub updates: Option<crate::update::Updates>,
    /// The development-image marker's sentence, when this image trusts the
    /// Hearth development keys (shown on the security page, the console
    /// and in the MQTT device info).
    pub development_keys: Option<String>,
}

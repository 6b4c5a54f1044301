//! The owner's settings. Automatic updates are on unless the owner turns
//! them off (EN 303 645 5.3-4, 5.3-6).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::persist::{Store, StoreError};

const RECORD: &str = "settings";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub automatic_updates: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            automatic_updates: true,
        }
    }
}

#[derive(Debug)]
pub struct SettingsStore {
    store: Arc<Store>,
    current: Mutex<Settings>,
}

impl SettingsStore {
    /// A damaged record is reported and replaced by the defaults, which are
    /// the safe choice (updates on), at the next change.
    pub fn open(store: Arc<Store>) -> SettingsStore {
        let current = store.read_optional(RECORD).unwrap_or_else(|error| {
            tracing::warn!(%error, "settings unreadable; using the defaults");
            None
        });
        SettingsStore {
            store,
            current: Mutex::new(current.unwrap_or_default()),
        }
    }

    pub fn get(&self) -> Settings {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, settings: Settings) -> Result<(), StoreError> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.store.write(RECORD, &settings)?;
        *current = settings;
        Ok(())
    }
}

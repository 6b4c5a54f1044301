//! The device's own function: a smart plug with one relay.
//!
//! The relay state is a record in the state store, so it survives reboots
//! and updates. On the QEMU image that record *is* the relay; driving a Pi
//! GPIO line through the GPIO character device is not built yet.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::persist::{Store, StoreError};

const RECORD: &str = "plug";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlugState {
    pub on: bool,
}

#[derive(Debug)]
pub struct Plug {
    store: Arc<Store>,
    state: Mutex<PlugState>,
}

impl Plug {
    /// A missing record is a plug that was never switched: off. A damaged
    /// one is reported and treated as off, the safe state for a socket.
    pub fn open(store: Arc<Store>) -> Plug {
        let state = store.read_optional(RECORD).unwrap_or_else(|error| {
            tracing::warn!(%error, "plug state unreadable; the socket starts off");
            None
        });
        Plug {
            store,
            state: Mutex::new(state.unwrap_or_default()),
        }
    }

    pub fn state(&self) -> PlugState {
        *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Switches the relay; the new state is stored before it is reported.
    pub fn switch(&self, on: bool) -> Result<PlugState, StoreError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = PlugState { on };
        self.store.write(RECORD, &next)?;
        *state = next;
        tracing::info!(on, "plug switched");
        Ok(next)
    }
}

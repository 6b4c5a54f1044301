//! The device's own function: a smart plug with one relay.
//!
//! The relay state is a record in the state store, so it survives reboots
//! and updates. On the QEMU image that record *is* the relay; driving a Pi
//! GPIO line through the GPIO character device is not built yet. A damaged
//! record means "off", the safe state for a socket.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::persist::{Cached, Store, StoreError};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlugState {
    pub on: bool,
}

#[derive(Debug)]
pub struct Plug(Cached<PlugState>);

impl Plug {
    pub fn open(store: Arc<Store>) -> Plug {
        Plug(Cached::open(store, "plug"))
    }

    pub fn state(&self) -> PlugState {
        self.0.get()
    }

    /// Switches the relay; the new state is stored before it is reported.
    pub fn switch(&self, on: bool) -> Result<PlugState, StoreError> {
        let next = PlugState { on };
        self.0.set(next)?;
        tracing::info!(on, "plug switched");
        Ok(next)
    }
}

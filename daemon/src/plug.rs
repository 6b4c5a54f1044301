//! The device's own function: a smart plug with one relay.
//!
//! The relay state is a record in the state store, so it survives reboots
//! and updates; at start the relay is driven to it. Where the board has a
//! relay line (`[board] relay`, a Raspberry Pi) the line follows the
//! record; on the QEMU x86 image the record alone is the relay. A damaged
//! record means "off", the safe state for a socket.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::board::{BoardError, LineSpec, Relay};
use crate::persist::{Cached, Store, StoreError};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlugState {
    pub on: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PlugError {
    #[error("the plug was not switched: {0}")]
    Relay(#[from] BoardError),
    #[error(
        "the plug cannot be switched: its relay did not start ({0}). Restart the device; if it persists, contact the vendor"
    )]
    NoRelay(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug)]
pub struct Plug {
    record: Cached<PlugState>,
    relay: Option<Result<Relay, String>>,
}

impl Plug {
    /// The plug as stored, without a relay line.
    pub fn open(store: Arc<Store>) -> Plug {
        Plug {
            record: Cached::open(store, "plug"),
            relay: None,
        }
    }

    /// Takes the relay's line and drives it to the stored state. A relay
    /// that cannot be opened is logged and makes every switch fail with the
    /// reason; the rest of the device (its updates above all) goes on.
    pub fn with_relay(self, line: &LineSpec, active_low: bool) -> Plug {
        let relay = Relay::open(line, active_low, self.state().on).map_err(|error| {
            tracing::error!(%error, "the plug's relay is not available");
            error.to_string()
        });
        Plug {
            relay: Some(relay),
            ..self
        }
    }

    pub fn state(&self) -> PlugState {
        self.record.get()
    }

    /// Switches the relay, then stores the new state. If the store fails
    /// the relay is switched back, so the record and the socket agree.
    pub fn switch(&self, on: bool) -> Result<PlugState, PlugError> {
        let next = PlugState { on };
        let relay = match &self.relay {
            None => None,
            Some(Ok(relay)) => Some(relay),
            Some(Err(why)) => return Err(PlugError::NoRelay(why.clone())),
        };
        if let Some(relay) = relay {
            relay.set(on)?;
        }
        if let Err(error) = self.record.set(next) {
            if let Some(relay) = relay
                && let Err(again) = relay.set(!on)
            {
                tracing::error!(%again, "the relay could not be switched back after a failed save");
            }
            return Err(error.into());
        }
        tracing::info!(on, "plug switched");
        Ok(next)
    }
}

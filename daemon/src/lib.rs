//! hearthd, the Hearth device daemon.
//!
//! `run` loads the configuration, opens the state store, makes or loads the
//! device's TLS identity and serves the web UI until a signal stops it. The
//! domain logic lives in its own crates (`credentials`, `disclosure`,
//! `swupdate-rs`); this crate wires them to the network and the OS.

pub mod cli;
pub mod config;
pub mod console;
pub mod identity;
pub mod logging;
pub mod persist;
pub mod service;
pub mod web;

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::config::{Config, ConfigError, Layer};
use crate::identity::{Identity, IdentityError};
use crate::persist::{Store, StoreError};

/// The firmware version this binary belongs to.
pub const FIRMWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The marker tests and the boot command look for on the console.
pub const READY_PREFIX: &str = "hearthd: HTTPS ready on";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cannot listen on {addr}: {source}. Is another program using that port?")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the daemon's runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

impl Error {
    /// Exit codes are documented in the README: 78 (`EX_CONFIG`) means a
    /// restart cannot help until someone fixes a file.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 78,
            _ => 1,
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(layers: &[Layer]) -> Result<(), Error> {
    let config = Config::load(layers)?;
    let mut store = Store::open(&config.data_dir)?;
    let identity = Identity::load_or_create(&store, "Hearth device")?;
    if store.is_new() {
        store.commit()?;
        tracing::info!(dir = %config.data_dir.display(), "set up a new state store: the device is factory-new");
    }
    let tls = identity.server_config().map_err(IdentityError::from)?;

    // One thread is plenty for a home device and keeps memory low; CPU-heavy
    // work (password hashing) goes to the blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let shutdown = service::shutdown_signal()?;
        let mut bound = Vec::new();
        for &addr in &config.web.listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Listen { addr, source })?;
            bound.push(listener);
        }
        let addrs: Vec<String> = bound
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .collect();
        let app = web::router(web::AppState {
            firmware_version: FIRMWARE_VERSION,
        });
        let servers: Vec<_> = bound
            .into_iter()
            .map(|listener| {
                tokio::spawn(web::serve(
                    listener,
                    tls.clone(),
                    app.clone(),
                    shutdown.clone(),
                ))
            })
            .collect();

        let fingerprint = identity.fingerprint();
        console::show(&format!(
            "{READY_PREFIX} {}, certificate SHA-256 fingerprint {fingerprint}",
            addrs.join(" ")
        ));
        tracing::info!(%fingerprint, addresses = %addrs.join(" "), "ready");
        service::ready("serving HTTPS");
        service::spawn_watchdog();

        for server in servers {
            let _ = server.await;
        }
        service::stopping();
        Ok(())
    })
}

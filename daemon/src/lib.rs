//! hearthd, the Hearth device daemon.
//!
//! `run` loads the configuration, opens the state store, makes or loads the
//! device's TLS identity and serves the web UI until a signal stops it. The
//! domain logic lives in its own crates (`credentials`, `disclosure`,
//! `swupdate-rs`); this crate wires them to the network and the OS.

pub mod access;
pub mod app;
pub mod board;
pub mod cli;
pub mod config;
pub mod connections;
pub mod console;
pub mod fleet;
pub mod identity;
pub mod logging;
pub mod memory;
pub mod persist;
pub mod plug;
pub mod service;
pub mod settings;
pub mod update;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use credentials::{PasswordPolicy, QrStyle};

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
    #[error(transparent)]
    Vendor(#[from] disclosure::Error),
    #[error("cannot set up the owner's credentials: {0}")]
    Credentials(String),
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
            Error::Config(_) | Error::Vendor(_) => 78,
            _ => 1,
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT. After a factory reset with the
/// reset button it starts over as a new process (a first boot).
pub fn run(layers: &[Layer]) -> Result<(), Error> {
    let config = Config::load(layers)?;
    if serve(&config)? == Ended::ResetButton {
        factory_reset(&config)?;
        return Err(Error::Runtime(restart_in_place()));
    }
    Ok(())
}

/// Why [`serve`] returned.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Signal,
    ResetButton,
}

/// Erases the owner's password, settings and the TLS key: the next start is
/// a first boot with a new setup code. hearthd must not be serving.
pub fn factory_reset(config: &Config) -> Result<(), Error> {
    Store::erase(&config.data_dir)?;
    tracing::warn!("factory reset: the owner's credentials, settings and TLS key are erased");
    console::show("hearthd: factory reset done; a new setup code follows");
    Ok(())
}

/// Replaces this process with a fresh hearthd, same arguments, same PID
/// (so systemd sees one service). Returns only if that fails.
fn restart_in_place() -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    command.args(args).exec()
}

fn serve(config: &Config) -> Result<Ended, Error> {
    let vendor = load_vendor(config)?;
    let policy = PasswordPolicy::new(config.credentials.password_min_length)
        .map_err(|e| Error::Credentials(e.to_string()))?
        .with_context_words([
            vendor.vendor.name.as_str(),
            vendor.product.name.as_str(),
            vendor.product.model.as_str(),
            "hearth",
        ]);

    let mut store = Store::open(&config.data_dir)?;
    let identity = Identity::load_or_create(&store, &vendor.product.name)?;
    let (credentials, first_boot) =
        access::Access::open(&store, config.credentials.factory_setup_code.as_deref())?;
    if store.is_new() {
        store.commit()?;
        tracing::info!(dir = %config.data_dir.display(), "set up a new state store: the device is factory-new");
        // The code is stored only as a hash now; its clear copy must go.
        if let Some(path) = &config.credentials.factory_setup_code
            && let Err(error) = std::fs::remove_file(path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(path = %path.display(), %error, "remove the production line's setup code file: it holds the code in clear");
        }
    }
    let tls = identity.server_config().map_err(IdentityError::from)?;
    let store = Arc::new(store);
    let firmware_version = match &config.update {
        Some(update) => update::running_version(&update.os_release_file),
        None => FIRMWARE_VERSION.to_owned(),
    };
    let settings = settings::open(store.clone());
    let automatic = settings.get().automatic_updates;
    let (updates, update_inbox) = match &config.update {
        Some(_) => {
            let (handle, inbox) = update::agent::channel(firmware_version.clone(), automatic);
            (Some(handle), Some(inbox))
        }
        None => (None, None),
    };
    // A damaged update record stops updates (falling back to floor 0
    // would accept old releases again), not the rest of the device.
    let records = firmware_version
        .parse()
        .map_err(|e| format!("the running version {firmware_version:?} is not usable: {e}"))
        .and_then(|running| {
            update::UpdateRecords::open(store.clone(), running)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        });
    let access = Arc::new(access::Access::new(store.clone(), credentials, policy));
    let settings = Arc::new(settings);
    let handles = update::agent::Handles {
        access: access.clone(),
        settings: settings.clone(),
        fleet_enabled: config.fleet.is_some(),
        data_dir: config.data_dir.clone(),
    };
    let state = Arc::new(app::AppState {
        firmware_version,
        access,
        plug: match &config.board.relay {
            Some(line) => {
                plug::Plug::open(store.clone()).with_relay(line, config.board.relay_active_low)
            }
            None => plug::Plug::open(store.clone()),
        },
        settings,
        vendor,
        updates,
        development_keys: development_keys(config),
    });
    banner(&state, first_boot.as_ref());
    let reset_button = reset_button(config);

    // One thread is plenty for a home device and keeps memory low; CPU-heavy
    // work (password hashing) goes to a small blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()?;
    let ended = runtime.block_on(async {
        let pressed = async {
            if let Some(held) = reset_button
                && held.await.is_ok()
            {
                return Ended::ResetButton;
            }
            std::future::pending().await
        };
        let (shutdown, ended) = service::shutdown_signal(pressed)?;
        let mut bound = Vec::new();
        for &addr in &config.web.listen {
            let listener =
                connections::listen(addr).map_err(|source| Error::Listen { addr, source })?;
            bound.push(listener);
        }
        let addrs: Vec<String> = bound
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .collect();
        let fleet = config
            .fleet
            .clone()
            .map(|f| tokio::spawn(fleet::run(f, state.clone(), shutdown.clone())));
        let agent = match (config.update.clone(), update_inbox, records) {
            (Some(update), Some(inbox), records) => {
                // The device's id places it in the rollout waves: the fleet
                // id when there is one, else its TLS identity.
                let device_id = config
                    .fleet
                    .as_ref()
                    .map(|f| f.device_id.clone())
                    .unwrap_or_else(|| identity.fingerprint().to_string());
                Some(tokio::spawn(update::agent::run(
                    update,
                    inbox,
                    handles,
                    store.clone(),
                    records,
                    device_id,
                    shutdown.clone(),
                )))
            }
            _ => None,
        };
        let app = web::router(state);
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
        if let Some(fleet) = fleet {
            let _ = fleet.await;
        }
        if let Some(agent) = agent {
            let _ = agent.await;
        }
        let ended = ended.await.unwrap_or(Ended::Signal);
        if ended == Ended::Signal {
            service::stopping();
        }
        Ok::<_, Error>(ended)
    })?;
    // Everything that held the store is gone with the runtime's tasks.
    drop(runtime);
    Ok(ended)
}

/// Starts watching the reset button, if the board has one. A button that
/// cannot be read is logged and left out: the device runs on without it.
fn reset_button(config: &Config) -> Option<tokio::sync::oneshot::Receiver<()>> {
    let line = config.board.reset_button.as_ref()?;
    match board::ResetButton::open(&config.board, line) {
        Ok(button) => {
            let (held, pressed) = tokio::sync::oneshot::channel();
            button.watch(held);
            tracing::info!(%line, hold_secs = config.board.reset_hold_secs, "watching the reset button");
            Some(pressed)
        }
        Err(error) => {
            tracing::error!(%error, "the reset button is not available; a factory reset needs the reset control's service");
            None
        }
    }
}

/// Loads and checks the vendor file. Date-dependent findings (a signed
/// security.txt past its Expires) are warnings: a device with a wrong clock
/// or old firmware must still start, and serves a generated file instead.
pub fn load_vendor(config: &Config) -> Result<disclosure::VendorFile, Error> {
    let vendor = disclosure::VendorFile::load(&config.vendor_file)?;
    vendor.validate()?;
    for problem in vendor.dated_problems(time::OffsetDateTime::now_utc().date()) {
        tracing::warn!(field = %problem.field, "{}", problem.message);
    }
    Ok(vendor)
}

/// What `hearthd info` prints: the same facts as security.txt, the
/// security page and the console banner, from the same vendor file.
pub fn info(
    vendor: &disclosure::VendorFile,
    development_keys: Option<String>,
    json: bool,
) -> String {
    let today = time::OffsetDateTime::now_utc().date();
    if json {
        let mut info = vendor.device_info(FIRMWARE_VERSION, today);
        info.development_keys = development_keys;
        return info.to_json();
    }
    let warning = development_keys.map(|marker| format!("WARNING:            {marker}"));
    let support = vendor.support_status(today);
    let d = &vendor.disclosure;
    [
        format!(
            "Product:            {} ({})",
            vendor.product.name, vendor.product.product_type
        ),
        format!("Manufacturer:       {}", vendor.vendor.name),
        format!("Model:              {}", vendor.product.model),
        format!("Hardware revision:  {}", vendor.product.hardware_revision),
        format!("Firmware version:   {FIRMWARE_VERSION}"),
        format!(
            "Security updates:   until {} ({})",
            support.end_date,
            support.headline()
        ),
        format!(
            "                    {}",
            support.sentence(&vendor.vendor.name)
        ),
        format!("Support period at:  {}", vendor.support.url),
        format!("Report a problem:   {}", d.contacts.join(", ")),
        format!("Disclosure policy:  {}", d.policy_url),
        format!("Acknowledgement:    {}", d.acknowledgement),
        format!("Status updates:     {}", d.status_updates),
    ]
    .into_iter()
    .chain(warning)
    .collect::<Vec<_>>()
    .join("\n")
}

/// The development-image marker's sentence, if this image has one.
pub fn development_keys(config: &Config) -> Option<String> {
    let marker = config
        .update
        .as_ref()
        .map(|update| update.development_keys_marker.as_path())?;
    std::fs::read_to_string(marker)
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

/// The console banner: what the device is, whom to tell about a security
/// problem, and on first boot the setup code, which only someone with the
/// device in hand can read.
fn banner(state: &app::AppState, first_boot: Option<&access::FirstBoot>) {
    let vendor = &state.vendor;
    let today = time::OffsetDateTime::now_utc().date();
    let support = vendor.support_status(today);
    console::show(&format!(
        "hearthd: {} {} (model {}, hardware {}), firmware {}",
        vendor.vendor.name,
        vendor.product.name,
        vendor.product.model,
        vendor.product.hardware_revision,
        FIRMWARE_VERSION
    ));
    console::show(&format!(
        "hearthd: security updates until {} ({}); report vulnerabilities to {}",
        support.end_date,
        support.headline(),
        vendor.disclosure.contacts.join(", ")
    ));
    if let Some(marker) = &state.development_keys {
        console::show(&format!("hearthd: WARNING: {marker}"));
    }
    if let Some(first_boot) = first_boot {
        console::show(&format!(
            "hearthd: SETUP CODE {}",
            first_boot.setup_code.grouped().as_str()
        ));
        console::show(&first_boot.setup_code.qr(None, QrStyle::Ascii));
        console::show(
            "hearthd: open the device's web page and enter this code to set your password.",
        );
    } else if state.access.status() == credentials::claim::Status::Unclaimed {
        console::show(
            "hearthd: not set up yet. The setup code was shown at first boot (and is on the label); \
             if it is lost, factory-reset the device to get a new one.",
        );
    }
}

//! The update agent: one task that hears about releases (MQTT, the periodic
//! HTTPS check, the owner), decides with [`policy`](super::policy), streams
//! the artifact into SWUpdate, schedules the reboot, and after the reboot
//! checks the new slot and commits it, or notices that the bootloader fell
//! back and refuses that version from then on.
//!
//! What survives a power cut is in the state store (`update-agent`): the
//! release being installed (written *before* the first byte goes to
//! SWUpdate, so an interrupted install is recognised at the next boot), the
//! versions that failed their trial, and the owner's postponement.
//! SWUpdate's `ustate` in the boot environment is the other half: together
//! they say which of the cases in [`classify`] the device is in.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use swupdate_rs::UpdateState;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use update_manifest::{Rejection, Timestamp, TrustedRoot, Urgency, Version};

use super::config::UpdateConfig;
use super::download::{ChannelReader, Fetcher};
use super::policy::{self, Choices, Decision, Offer};
use super::status::{LastResult, Release, State, UpdateStatus};
use super::{Installed, Part, Selection, Slot, UpdateRecords};
use crate::persist::{Cached, Store};
use crate::web::AppState;

/// What the agent is asked to do.
#[derive(Debug)]
pub enum Command {
    /// A signed manifest arrived (MQTT).
    Manifest(Vec<u8>),
    /// The owner asked to install the available release now.
    InstallNow(oneshot::Sender<Result<(), String>>),
    /// The owner postponed the available release.
    Postpone {
        days: u32,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// The owner's settings changed.
    SettingsChanged,
}

/// The handle the web UI and the MQTT link hold.
#[derive(Debug, Clone)]
pub struct Updates {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<UpdateStatus>,
    fleet_up: Arc<watch::Sender<bool>>,
}

/// The agent's ends of the channels, for [`run`].
#[derive(Debug)]
pub struct Inbox {
    commands: mpsc::Receiver<Command>,
    status: watch::Sender<UpdateStatus>,
    fleet_up: watch::Receiver<bool>,
}

/// A handle and its inbox.
pub fn channel(running_version: String, automatic: bool) -> (Updates, Inbox) {
    let (commands_tx, commands) = mpsc::channel(8);
    let (status_tx, status) = watch::channel(UpdateStatus::starting(running_version, automatic));
    let (fleet_tx, fleet_up) = watch::channel(false);
    (
        Updates {
            commands: commands_tx,
            status,
            fleet_up: Arc::new(fleet_tx),
        },
        Inbox {
            commands,
            status: status_tx,
            fleet_up,
        },
    )
}

impl Updates {
    pub fn status(&self) -> UpdateStatus {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<UpdateStatus> {
        self.status.clone()
    }

    /// A manifest from the release topic. Dropped (with a warning) if the
    /// agent is busy with several already; the retained message comes
    /// again at the next connect.
    pub fn offer(&self, manifest: Vec<u8>) {
        if self.commands.try_send(Command::Manifest(manifest)).is_err() {
            tracing::warn!("the update agent is busy; a release manifest was dropped");
        }
    }

    pub fn fleet_connected(&self, up: bool) {
        self.fleet_up.send_replace(up);
    }

    pub fn settings_changed(&self) {
        let _ = self.commands.try_send(Command::SettingsChanged);
    }

    pub async fn install_now(&self) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.ask(Command::InstallNow(reply), answer).await
    }

    pub async fn postpone(&self, days: u32) -> Result<String, String> {
        let (reply, answer) = oneshot::channel();
        self.ask(Command::Postpone { days, reply }, answer).await
    }

    async fn ask<T>(
        &self,
        command: Command,
        answer: oneshot::Receiver<Result<T, String>>,
    ) -> Result<T, String> {
        self.commands
            .send(command)
            .await
            .map_err(|_| "the update service is not running".to_owned())?;
        answer
            .await
            .map_err(|_| "the update service stopped".to_owned())?
    }
}

/// What the agent keeps in the state store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Memory {
    /// The release being installed, or installed and not yet committed.
    pub pending: Option<Installed>,
    /// Versions that failed their trial boot: never installed again.
    pub refused: Vec<Version>,
    /// The newest release seen and when (the security limit runs from it).
    pub seen: Option<(Version, Timestamp)>,
    /// The owner postponed this version until then.
    pub postponed: Option<(Version, Timestamp)>,
    pub last_result: Option<LastResult>,
    /// The version on trial whose health check failed (set before the
    /// reboot that gives it up).
    pub unhealthy: Option<Version>,
    /// Versions that fell back once without a failed health check (a power
    /// cut or a crash during the trial boot): tried once more.
    pub unexplained: Vec<Version>,
    /// The version on trial that was healthy but could not reach the vendor
    /// (set before the reboot that gives it up).
    pub offline: Option<Version>,
    /// Versions that fell back because the network was unreachable during
    /// their trial, with how many times.
    pub offline_fallbacks: Vec<(Version, u32)>,
}

/// What a fallback from a trial boot means for the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Never installed again.
    Refused,
    /// Tried once more (the fallback is unexplained: a power cut, a crash).
    TryOnceMore,
    /// Tried again once a manifest arrives, which shows that the network
    /// works; `left` more offline trials before it is refused.
    TryWhenOnline { left: u32 },
}

impl Memory {
    /// Records that `version` failed its trial boot and says whether it is
    /// tried again. A failed health check on the device itself refuses it
    /// at once. A trial that was healthy but could not reach the vendor is
    /// tried again, up to [`MAX_OFFLINE_TRIALS`] trials in all: an outage
    /// (or an attacker cutting the uplink) must not keep a release, perhaps a
    /// security fix, off the device for good, and a release that breaks
    /// networking must not reboot the device for ever. A fallback without
    /// either (the power failed, or the slot never got that far) gets one
    /// more attempt.
    pub fn fell_back(&mut self, version: Version) -> Fallback {
        let outcome = if self.unhealthy == Some(version) {
            Fallback::Refused
        } else if self.offline == Some(version) {
            let tries = match self
                .offline_fallbacks
                .iter_mut()
                .find(|(v, _)| *v == version)
            {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    keep_last(&mut self.offline_fallbacks, (version, 1));
                    1
                }
            };
            match MAX_OFFLINE_TRIALS.checked_sub(tries) {
                Some(left) if left > 0 => Fallback::TryWhenOnline { left },
                _ => Fallback::Refused,
            }
        } else if self.unexplained.contains(&version) {
            Fallback::Refused
        } else {
            keep_last(&mut self.unexplained, version);
            Fallback::TryOnceMore
        };
        self.unhealthy = None;
        self.offline = None;
        self.pending = None;
        if outcome == Fallback::Refused {
            self.unexplained.retain(|v| *v != version);
            self.offline_fallbacks.retain(|(v, _)| *v != version);
            if !self.refused.contains(&version) {
                keep_last(&mut self.refused, version);
            }
        }
        outcome
    }
}

/// Appends `item`, dropping the oldest beyond [`MAX_REFUSED`].
fn keep_last<T>(list: &mut Vec<T>, item: T) {
    list.push(item);
    if list.len() > MAX_REFUSED {
        list.remove(0);
    }
}

/// Why a slot on trial failed its health check.
enum Unhealthy {
    /// On the device itself: the release is refused.
    Local(String),
    /// Healthy, but neither the broker nor the manifest URL answered: the
    /// release is tried again once the network works.
    Offline(String),
}

const MEMORY_NAME: &str = "update-agent";
/// At most this many refused versions are remembered.
const MAX_REFUSED: usize = 32;
/// Trial boots a release gets when only the network fails them.
pub const MAX_OFFLINE_TRIALS: u32 = 3;
/// A manifest whose install failed is tried again after this long (a new
/// manifest is tried at once).
const RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How often to look at the clock while waiting for time sync.
const CLOCK_POLL: Duration = Duration::from_secs(30);
const MANIFEST_LIMIT: usize = update_manifest::manifest::MAX_MANIFEST_LEN;

/// The boot-time situation, from the pending install, SWUpdate's `ustate`
/// and the running slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootCase {
    Nothing,
    /// The running slot is a new release on trial: check, then commit.
    OnTrial(Option<Installed>),
    /// Committed in the boot environment, but the record was not updated
    /// (power lost in between): finish.
    FinishCommit(Installed),
    /// The bootloader fell back: the release failed its trial.
    RolledBack(Option<Installed>),
    /// Installed and armed; the reboot has not happened yet.
    AwaitingReboot(Installed),
    /// An install that did not finish (power cut, error): drop it.
    Abandoned(Option<Installed>),
}

pub fn classify(pending: Option<&Installed>, ustate: UpdateState, running: Slot) -> BootCase {
    let on_running = pending.filter(|p| p.target == running).cloned();
    let elsewhere = pending.filter(|p| p.target != running).cloned();
    match ustate {
        UpdateState::Installed => match elsewhere {
            Some(p) => BootCase::AwaitingReboot(p),
            None => BootCase::OnTrial(on_running),
        },
        UpdateState::Failed => BootCase::RolledBack(pending.cloned()),
        UpdateState::Ok => match (on_running, elsewhere) {
            (Some(p), _) => BootCase::FinishCommit(p),
            (None, Some(p)) => BootCase::Abandoned(Some(p)),
            (None, None) => BootCase::Nothing,
        },
        UpdateState::NotAvailable if pending.is_none() => BootCase::Nothing,
        _ => BootCase::Abandoned(pending.cloned()),
    }
}

/// Runs the agent until `shutdown` changes.
pub async fn run(
    config: UpdateConfig,
    inbox: Inbox,
    app: Arc<AppState>,
    store: Arc<Store>,
    records: Result<Arc<UpdateRecords>, String>,
    device_id: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let Inbox {
        mut commands,
        status,
        fleet_up,
    } = inbox;
    let records = match records {
        Ok(records) => records,
        Err(error) => {
            let error = format!(
                "the update record cannot be read ({error}); updates stay off until the device is factory-reset"
            );
            return unavailable(error, status, commands, shutdown).await;
        }
    };
    let mut agent = match Agent::new(config, app, store, records, &device_id, status, fleet_up) {
        Ok(agent) => agent,
        Err((status, error)) => return unavailable(error, status, commands, shutdown).await,
    };
    agent.after_boot().await;
    let interval = agent.config.check_interval();
    // The first check soon after boot, spread so a fleet does not all ask
    // in the same second after a power cut.
    let mut next_check = Instant::now() + jitter(Duration::from_secs(5), Duration::from_secs(30));
    loop {
        let wake = agent.wake_at;
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(command) = commands.recv() => agent.on_command(command).await,
            _ = tokio::time::sleep_until(next_check), if agent.config.manifest_url.is_some() => {
                agent.check_manifest_url().await;
                next_check = Instant::now() + jitter(interval.mul_f64(0.75), interval.mul_f64(0.25));
            }
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                agent.wake_at = None;
                agent.reconsider().await;
            }
        }
    }
}

/// Updates cannot run here: say why, and answer the owner's requests with
/// that reason until shutdown.
async fn unavailable(
    error: String,
    status: watch::Sender<UpdateStatus>,
    mut commands: mpsc::Receiver<Command>,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::error!(%error, "automatic updates cannot run");
    status.send_modify(|s| {
        s.state = State::Unavailable;
        s.last_error = Some(error.clone());
    });
    let refusal = format!("Updates cannot run on this device: {error}");
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            command = commands.recv() => match command {
                Some(Command::InstallNow(reply)) => {
                    let _ = reply.send(Err(refusal.clone()));
                }
                Some(Command::Postpone { reply, .. }) => {
                    let _ = reply.send(Err(refusal.clone()));
                }
                Some(Command::Manifest(_) | Command::SettingsChanged) => {}
                None => return,
            },
        }
    }
}

/// `base` plus a random part of up to `spread`.
fn jitter(base: Duration, spread: Duration) -> Duration {
    let mut byte = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte);
    base + spread.mul_f64(f64::from(u32::from_le_bytes(byte)) / f64::from(u32::MAX))
}

struct Agent {
    config: UpdateConfig,
    app: Arc<AppState>,
    memory: Cached<Memory>,
    records: Arc<UpdateRecords>,
    client: swupdate_rs::Client,
    fetcher: Fetcher,
    root: TrustedRoot,
    hwrevision: String,
    running: Slot,
    seed: u16,
    build_floor: Option<Timestamp>,
    status: watch::Sender<UpdateStatus>,
    fleet_up: watch::Receiver<bool>,
    /// The newest manifest heard of, not yet installed.
    candidate: Option<Vec<u8>>,
    /// A manifest whose install failed, and when it may be tried again.
    failed: Option<(Vec<u8>, Instant)>,
    /// When [`Agent::reconsider`] should run next.
    wake_at: Option<Instant>,
    /// The reboot is due at this time (once an install is armed).
    reboot_at: Option<Timestamp>,
    /// The restart time the owner was told ("rebooting" status): nothing
    /// that wakes the agent meanwhile restarts the device earlier.
    announced_restart: Option<Timestamp>,
    /// The restart has been requested: nothing more is installed. (A trial
    /// slot that failed its health check must reach the boot loader with
    /// SWUpdate's state untouched, or the boot loader does not fall back.)
    restarting: bool,
}

impl Agent {
    #[allow(clippy::result_large_err)]
    fn new(
        config: UpdateConfig,
        app: Arc<AppState>,
        store: Arc<Store>,
        records: Arc<UpdateRecords>,
        device_id: &str,
        status: watch::Sender<UpdateStatus>,
        fleet_up: watch::Receiver<bool>,
    ) -> Result<Agent, (watch::Sender<UpdateStatus>, String)> {
        let setup = || -> Result<_, String> {
            let running = Slot::running(&config.cmdline_file).map_err(|e| e.to_string())?;
            let root_text = std::fs::read_to_string(&config.root_file).map_err(|e| {
                format!(
                    "cannot read the release root {}: {e}",
                    config.root_file.display()
                )
            })?;
            let root = TrustedRoot::from_cert_pem(&root_text)
                .or_else(|_| TrustedRoot::from_pem(&root_text))
                .map_err(|e| {
                    format!(
                        "the release root {} is not usable: {e}",
                        config.root_file.display()
                    )
                })?;
            if update_manifest::is_development_key(&root.key_id())
                && !config.development_keys_marker.exists()
            {
                return Err(format!(
                    "the release root {} is a Hearth development key, whose private half is \
                     public, and this image is not marked as a development image ({} is \
                     missing): updates stay off. Build the image with your own keys (README, \
                     section Keys)",
                    config.root_file.display(),
                    config.development_keys_marker.display()
                ));
            }
            let hwrevision = std::fs::read_to_string(&config.hwrevision_file)
                .map_err(|e| format!("cannot read {}: {e}", config.hwrevision_file.display()))?;
            let fetcher = Fetcher::new(
                &config.ca_file,
                Duration::from_secs(config.connect_timeout_secs),
                Duration::from_secs(config.read_timeout_secs),
                config.download_attempts,
            )
            .map_err(|e| e.to_string())?;
            Ok((running, root, hwrevision, fetcher))
        };
        let (running, root, hwrevision, fetcher) = match setup() {
            Ok(parts) => parts,
            Err(error) => return Err((status, error)),
        };
        let memory: Cached<Memory> = Cached::open(store, MEMORY_NAME);
        let remembered = memory.get();
        status.send_modify(|s| {
            s.running_slot = Some(running.to_string());
            s.refused_versions = remembered.refused.iter().map(ToString::to_string).collect();
            s.last_result = remembered.last_result.clone();
        });
        Ok(Agent {
            client: config.swupdate_client(),
            build_floor: build_floor(),
            config,
            app,
            memory,
            records,
            fetcher,
            root,
            hwrevision,
            running,
            seed: policy::wave_seed(device_id),
            status,
            fleet_up,
            candidate: None,
            failed: None,
            wake_at: None,
            reboot_at: None,
            announced_restart: None,
            restarting: false,
        })
    }

    fn set_status(&self, change: impl FnOnce(&mut UpdateStatus)) {
        self.status.send_if_modified(|s| {
            let before = s.clone();
            change(s);
            *s != before
        });
    }

    fn remember(&self, change: impl FnOnce(&mut Memory)) {
        let mut memory = self.memory.get();
        change(&mut memory);
        if let Err(error) = self.memory.set(memory) {
            tracing::error!(%error, "cannot store the update agent's state");
        }
    }

    /// The time, if the device can trust its clock: synchronised (or an
    /// RTC), and never earlier than the firmware's own build.
    fn trusted_now(&self) -> Option<Timestamp> {
        self.clock().ok()
    }

    /// The trusted time, or why the clock is not trusted (for the status).
    fn clock(&self) -> Result<Timestamp, String> {
        let synced = self.config.clock_has_rtc || self.config.time_sync_file.exists();
        let seen = Timestamp::from_unix(self.records.get().time_floor).ok();
        // The earliest time the clock may say: the firmware's build, or the
        // newest signed time this device has verified.
        trusted_time(Timestamp::now(), synced, self.build_floor.max(seen))
    }

    async fn ustate(&self) -> Result<UpdateState, String> {
        let client = self.client.clone();
        // SWUpdate is socket-activated and may still be starting.
        let mut last = String::new();
        for _ in 0..10 {
            let c = client.clone();
            match tokio::task::spawn_blocking(move || c.get_update_state()).await {
                Ok(Ok(state)) => return Ok(state),
                Ok(Err(e)) => last = e.to_string(),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(last)
    }

    async fn set_ustate(&self, state: UpdateState) -> Result<(), String> {
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || client.set_update_state(state))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Works out what the last boot means, and acts on it.
    async fn after_boot(&mut self) {
        let ustate = match self.ustate().await {
            Ok(state) => state,
            Err(error) => {
                let error = format!("cannot ask SWUpdate for the update state: {error}");
                tracing::error!("{error}");
                self.set_status(|s| {
                    s.state = State::Failed;
                    s.last_error = Some(error);
                });
                return;
            }
        };
        let pending = self.memory.get().pending;
        let case = classify(pending.as_ref(), ustate, self.running);
        tracing::info!(?ustate, slot = %self.running, ?case, "update state after boot");
        match case {
            BootCase::Nothing => {}
            BootCase::OnTrial(installed) => self.check_and_commit(installed).await,
            BootCase::FinishCommit(installed) => self.confirm(&installed),
            BootCase::RolledBack(installed) => {
                let version = installed.as_ref().map(|i| i.version);
                let mut memory = self.memory.get();
                let fallback = version.map(|v| (v, memory.fell_back(v)));
                let running = self.status.borrow().running_version.clone();
                let detail = match fallback {
                    Some((v, Fallback::Refused)) => format!(
                        "version {v} did not start correctly, so the device went back to {running}; {v} will not be installed again"
                    ),
                    Some((v, Fallback::TryOnceMore)) => format!(
                        "version {v} did not finish starting (for example, the power failed during its first start), so the device went back to {running}; it will try {v} once more"
                    ),
                    Some((v, Fallback::TryWhenOnline { left })) => format!(
                        "version {v} started but could not reach the vendor's servers (the network or the servers were down), so the device went back to {running}; it will try {v} again once the network works ({left} more attempt(s))"
                    ),
                    None => "the last update did not start correctly, so the device went back to the previous software".to_owned(),
                };
                tracing::error!("{detail}");
                self.remember(|m| {
                    *m = memory.clone();
                    m.pending = None;
                    m.last_result = Some(LastResult {
                        version: version.map(|v| v.to_string()).unwrap_or_default(),
                        outcome: "rolled-back".into(),
                        time: now_text(),
                        detail: detail.clone(),
                    });
                });
                // Reported: SWUpdate's state goes back to OK.
                if let Err(error) = self.set_ustate(UpdateState::Ok).await {
                    tracing::warn!(%error, "cannot reset SWUpdate's update state");
                }
                let memory = self.memory.get();
                self.set_status(|s| {
                    s.state = State::Failed;
                    s.last_error = Some(detail);
                    s.refused_versions = memory.refused.iter().map(ToString::to_string).collect();
                    s.last_result = memory.last_result.clone();
                });
            }
            BootCase::AwaitingReboot(installed) => {
                self.set_status(|s| {
                    s.release = Some(Release {
                        version: installed.version.to_string(),
                        security: false,
                        release_notes: String::new(),
                        size: installed.bytes_streamed,
                    });
                });
                self.schedule_reboot(None);
            }
            BootCase::Abandoned(installed) => {
                if let Some(i) = &installed {
                    tracing::warn!(version = %i.version, "an install did not finish (power cut or error); it starts again when the release is offered");
                }
                self.remember(|m| m.pending = None);
                if !matches!(ustate, UpdateState::Ok | UpdateState::NotAvailable)
                    && let Err(error) = self.set_ustate(UpdateState::Ok).await
                {
                    tracing::warn!(%error, "cannot reset SWUpdate's update state");
                }
            }
        }
    }

    /// The health check of a slot on trial, then the commit; on failure a
    /// reboot, after which the bootloader falls back.
    async fn check_and_commit(&mut self, installed: Option<Installed>) {
        self.set_status(|s| s.state = State::Checking);
        let limit = Duration::from_secs(self.config.health_timeout_secs);
        let deadline = Instant::now() + limit;
        // The device itself first, so a slot that is broken here is refused
        // even while the network is down too.
        let verdict = match tokio::time::timeout_at(deadline, self.device_health()).await {
            Ok(Ok(())) => tokio::time::timeout_at(deadline, self.vendor_reachable())
                .await
                .map_err(|_| {
                    Unhealthy::Offline(format!(
                        "neither the fleet broker nor the manifest URL answered within {limit:?}"
                    ))
                }),
            Ok(Err(problem)) => Err(Unhealthy::Local(problem)),
            Err(_) => Err(Unhealthy::Local(format!(
                "the checks on the device did not finish within {limit:?}"
            ))),
        };
        if let Err(unhealthy) = verdict {
            let version = installed.as_ref().map(|i| i.version);
            let problem = match &unhealthy {
                Unhealthy::Local(problem) | Unhealthy::Offline(problem) => problem,
            };
            let error = format!(
                "the new software failed its health check ({problem}); restarting into the previous software"
            );
            tracing::error!("{error}");
            self.remember(|m| match unhealthy {
                Unhealthy::Local(_) => m.unhealthy = version,
                Unhealthy::Offline(_) => m.offline = version,
            });
            self.set_status(|s| {
                s.state = State::Rebooting;
                s.last_error = Some(error.clone());
            });
            self.request_reboot(&error);
            return;
        }
        // ustate first: if power fails between the two, the next boot
        // sees a committed slot and finishes the record (FinishCommit);
        // the other order could leave raised floors on a slot that then
        // falls back.
        if let Err(error) = self.set_ustate(UpdateState::Ok).await {
            let error = format!("cannot commit the new slot through SWUpdate: {error}");
            tracing::error!("{error}");
            self.set_status(|s| {
                s.state = State::Failed;
                s.last_error = Some(error);
            });
            return;
        }
        match installed {
            Some(installed) => self.confirm(&installed),
            None => tracing::warn!(
                "committed a slot on trial that hearthd did not install; the update record is unchanged"
            ),
        }
    }

    /// The checks on the device itself: the credentials, `/data`, the
    /// vendor's hook.
    async fn device_health(&self) -> Result<(), String> {
        // The credentials are readable (a broken store is not healthy).
        if self.app.access.status() == credentials::claim::Status::Broken {
            return Err("the owner's credentials cannot be read".into());
        }
        // /data is a mounted partition, not the read-only root.
        data_is_mounted(self.memory_dir())?;
        if let Some(hook) = &self.config.health_hook {
            let status = tokio::process::Command::new(hook)
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|e| {
                    format!(
                        "the vendor health hook {} could not run: {e}",
                        hook.display()
                    )
                })?;
            if !status.success() {
                return Err(format!(
                    "the vendor health hook {} said {status}",
                    hook.display()
                ));
            }
        }
        Ok(())
    }

    /// Returns once the vendor can reach the device: MQTT connects or the
    /// manifest URL answers over HTTPS (at once when neither is set up).
    async fn vendor_reachable(&self) {
        let mut fleet_up = self.fleet_up.clone();
        let mqtt = async {
            let _ = fleet_up.wait_for(|up| *up).await;
        };
        let https = async {
            match &self.config.manifest_url {
                Some(url) => loop {
                    match self.fetcher.fetch_small(url, MANIFEST_LIMIT).await {
                        Ok(_) => break,
                        Err(error) => {
                            tracing::info!(%error, "health check: the manifest URL is not reachable yet");
                            tokio::time::sleep(Duration::from_secs(5)).await;
                        }
                    }
                },
                None => std::future::pending().await,
            }
        };
        if self.app_has_fleet() || self.config.manifest_url.is_some() {
            tokio::select! {
                () = mqtt, if self.app_has_fleet() => {}
                () = https => {}
            }
        }
    }

    fn app_has_fleet(&self) -> bool {
        self.app.fleet_enabled
    }

    fn memory_dir(&self) -> &Path {
        self.app.data_dir.as_path()
    }

    fn confirm(&mut self, installed: &Installed) {
        match self.records.confirm(installed) {
            Ok(_) => tracing::info!(version = %installed.version, "update committed"),
            Err(error) => tracing::error!(%error, "cannot record the committed update"),
        }
        let result = LastResult {
            version: installed.version.to_string(),
            outcome: "installed".into(),
            time: now_text(),
            detail: format!("version {} is installed and running", installed.version),
        };
        self.remember(|m| {
            m.pending = None;
            m.last_result = Some(result.clone());
        });
        self.set_status(|s| {
            s.state = State::Idle;
            s.release = None;
            s.last_error = None;
            s.last_result = Some(result);
        });
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Manifest(bytes) => {
                if self.candidate.as_ref() != Some(&bytes) {
                    self.candidate = Some(bytes);
                    self.reconsider().await;
                }
            }
            Command::SettingsChanged => {
                let automatic = self.app.settings.get().automatic_updates;
                self.set_status(|s| s.automatic = automatic);
                if self.reboot_at.is_some() {
                    self.schedule_reboot(None);
                } else {
                    self.reconsider().await;
                }
            }
            Command::InstallNow(reply) => {
                let answer = match self.verified_candidate() {
                    Ok(Some((bytes, release, now))) => {
                        let _ = reply.send(Ok(()));
                        self.install(bytes, release, now).await;
                        return;
                    }
                    Ok(None) => Err("no update is available".to_owned()),
                    Err(error) => Err(error),
                };
                let _ = reply.send(answer);
            }
            Command::Postpone { days, reply } => {
                let answer = self.postpone(days);
                let _ = reply.send(answer);
                self.reconsider().await;
            }
        }
    }

    fn postpone(&mut self, days: u32) -> Result<String, String> {
        if days == 0 || days > self.config.postpone_max_days {
            return Err(format!(
                "choose between 1 and {} days",
                self.config.postpone_max_days
            ));
        }
        let Some((_, release, now)) = self.verified_candidate()? else {
            return Err("no update is available to postpone".into());
        };
        let version = release.version();
        let until = now.plus_seconds(i64::from(days) * 86_400);
        self.remember(|m| m.postponed = Some((version, until)));
        Ok(if release.manifest().urgency == Urgency::Security {
            format!(
                "Postponed. {version} is a security update: it is installed at the latest {} hours after it arrived.",
                self.config.security_postpone_limit_hours
            )
        } else {
            format!("Postponed until {until}.")
        })
    }

    /// The candidate manifest, verified against this device now; `None`
    /// when there is none or it is not newer than what runs.
    #[allow(clippy::type_complexity)]
    fn verified_candidate(
        &self,
    ) -> Result<Option<(Vec<u8>, update_manifest::VerifiedRelease, Timestamp)>, String> {
        let Some(bytes) = self.candidate.clone() else {
            return Ok(None);
        };
        let now = self.clock()?;
        let facts = self
            .records
            .get()
            .device_facts_from_hwrevision(&self.hwrevision, self.config.max_artifact_bytes)
            .map_err(|e| {
                format!(
                    "{} is not usable: {e}",
                    self.config.hwrevision_file.display()
                )
            })?;
        match update_manifest::verify(&bytes, &self.root, &facts, now) {
            Ok(release) => {
                // A newer root-signed key ring revokes what it drops at once,
                // whether or not this release is ever installed; and its
                // signed time bounds the clock from below from now on.
                let current = self.records.get();
                // Capped at the (trusted) clock: a manifest dated in the
                // future must not stop the device's updates until then.
                let next = current.after_verifying(
                    release.keyring_version(),
                    release.manifest().issued.unix().min(now.unix()),
                );
                if next != current
                    && let Err(error) = self.records.set(next)
                {
                    return Err(format!("the update record could not be saved: {error}"));
                }
                if self.memory.get().refused.contains(&release.version()) {
                    return Err(format!(
                        "version {} failed its trial boot on this device and is not installed again",
                        release.version()
                    ));
                }
                Ok(Some((bytes, release, now)))
            }
            // The release running now (the retained manifest after an
            // update): nothing to do. An older one is a refused rollback.
            Err(Rejection::NotNewer { offered, installed }) if offered == installed => Ok(None),
            Err(rejection) => Err(format!("update refused before download: {rejection}")),
        }
    }

    /// Looks at the candidate again: install, wait, or ask the owner.
    async fn reconsider(&mut self) {
        if self.restarting {
            return;
        }
        if let Some(at) = self.reboot_at {
            self.reboot_when_due(at);
            return;
        }
        if let Some((bytes, retry)) = &self.failed
            && self.candidate.as_ref() == Some(bytes)
            && Instant::now() < *retry
        {
            self.wake_at = Some(*retry);
            return;
        }
        let (bytes, release, now) = match self.verified_candidate() {
            Ok(Some(found)) => found,
            Ok(None) => {
                self.candidate = None;
                self.set_status(|s| {
                    if s.state == State::Available {
                        s.state = State::Idle;
                    }
                    s.release = None;
                    s.waiting = None;
                    s.until = None;
                });
                return;
            }
            Err(error) if self.trusted_now().is_none() => {
                self.set_status(|s| {
                    s.state = State::Available;
                    s.waiting = Some(error);
                });
                self.wake_at = Some(Instant::now() + CLOCK_POLL);
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "release not installed");
                self.candidate = None;
                self.set_status(|s| {
                    s.state = State::Failed;
                    s.last_error = Some(error);
                    s.release = None;
                    s.waiting = None;
                    s.until = None;
                });
                // The refused manifest replaced the one that was waiting.
                self.wake_at = None;
                return;
            }
        };
        let manifest = release.manifest();
        let version = release.version();
        let memory = self.memory.get();
        let first_seen = match memory.seen {
            Some((v, t)) if v == version => t,
            _ => {
                self.remember(|m| m.seen = Some((version, now)));
                now
            }
        };
        let postponed_until = memory
            .postponed
            .filter(|(v, _)| *v == version)
            .map(|(_, t)| t);
        let choices = Choices {
            automatic: self.app.settings.get().automatic_updates,
            postponed_until,
        };
        let offer = Offer {
            urgency: manifest.urgency,
            rollout: &manifest.rollout,
            first_seen,
        };
        let limit = self.config.security_postpone_limit().as_secs() as i64;
        self.set_status(|s| s.release = Some(release_info(&release)));
        match policy::decide(offer, choices, self.seed, now, limit) {
            Decision::Install => self.install(bytes, release, now).await,
            Decision::Wait { until, why } => {
                self.set_status(|s| {
                    s.state = State::Available;
                    s.waiting = Some(why.sentence().to_owned());
                    s.until = Some(until.to_string());
                });
                let secs = (until.unix() - now.unix()).max(1) as u64;
                self.wake_at = Some(Instant::now() + Duration::from_secs(secs));
            }
            Decision::AskOwner => self.set_status(|s| {
                s.state = State::Available;
                s.waiting = Some(
                    "automatic updates are off: install it from the dashboard when it suits you"
                        .to_owned(),
                );
                s.until = None;
            }),
        }
    }

    async fn check_manifest_url(&mut self) {
        let Some(url) = self.config.manifest_url.clone() else {
            return;
        };
        match self.fetcher.fetch_small(&url, MANIFEST_LIMIT).await {
            Ok(bytes) => {
                tracing::info!(%url, bytes = bytes.len(), "checked the release manifest over HTTPS");
                self.on_command(Command::Manifest(bytes)).await;
            }
            Err(error) => {
                tracing::warn!(%error, "the periodic update check failed; trying again later")
            }
        }
    }

    async fn install(
        &mut self,
        bytes: Vec<u8>,
        release: update_manifest::VerifiedRelease,
        now: Timestamp,
    ) {
        let manifest = release.manifest().clone();
        let version = release.version();
        let size = manifest.artifact.size;
        let security = manifest.urgency == Urgency::Security;
        tracing::info!(%version, size, security, "installing a release");
        self.set_status(|s| {
            s.state = State::Downloading;
            s.release = Some(release_info(&release));
            s.progress = Some(0);
            s.waiting = None;
            s.until = None;
            s.last_error = None;
        });
        let target = self.running.other();
        // Written before SWUpdate sees a byte: an install cut short by a
        // power loss is recognised (and abandoned) at the next boot.
        self.remember(|m| {
            m.pending = Some(Installed {
                version,
                security_version: release.security_version(),
                keyring_version: release.keyring_version(),
                signed_by: release.signed_by(),
                target,
                bytes_streamed: 0,
            });
        });

        // `super::install` asks for the chunk index, then the artifact;
        // `delivered` counts the artifact's bytes.
        let first_chunk = u64::from(manifest.artifact.index.chunk_len);
        let delivered = Arc::new(AtomicU64::new(0));
        let downloads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let open = {
            let runtime = tokio::runtime::Handle::current();
            let fetcher = self.fetcher.clone();
            let artifact = manifest.artifact.clone();
            let (delivered, downloads) = (delivered.clone(), downloads.clone());
            move |part: Part| -> std::io::Result<Box<dyn std::io::Read + Send>> {
                if part == Part::Index {
                    // One byte more than pinned, so that a longer index is
                    // judged (and refused) as such.
                    let limit = usize::try_from(artifact.index.size.saturating_add(1))
                        .unwrap_or(usize::MAX);
                    let bytes = runtime
                        .block_on(fetcher.fetch_at_most(&artifact.index.urls, limit))
                        .map_err(std::io::Error::other)?;
                    return Ok(Box::new(std::io::Cursor::new(bytes)));
                }
                let (sink, reader) = ChannelReader::pair();
                let (fetcher, counter) = (fetcher.clone(), delivered.clone());
                let (urls, size) = (artifact.urls.clone(), artifact.size);
                let download = runtime.spawn(async move {
                    fetcher
                        .stream(&urls, size, sink, move |n| {
                            counter.store(n, Ordering::Relaxed)
                        })
                        .await
                });
                if let Ok(mut list) = downloads.lock() {
                    list.push(download.abort_handle());
                }
                Ok(Box::new(reader))
            }
        };
        let swupdate_percent = Arc::new(AtomicU8::new(u8::MAX));
        let done = Arc::new(AtomicBool::new(false));
        let progress = self.watch_swupdate_progress(swupdate_percent.clone(), done.clone());

        let root = self.root.clone();
        let client = self.client.clone();
        let facts = self
            .records
            .get()
            .device_facts_from_hwrevision(&self.hwrevision, self.config.max_artifact_bytes);
        let selection = Selection::writing(target);
        let mut installing = tokio::task::spawn_blocking(move || {
            let facts = facts.map_err(|e| e.to_string())?;
            super::install(&bytes, open, &root, &facts, now, &client, &selection)
                .map_err(|e| e.to_string())
        });
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let result = loop {
            tokio::select! {
                result = &mut installing => break result.unwrap_or_else(|e| Err(e.to_string())),
                _ = tick.tick() => {
                    // One stream downloads and installs, from when its
                    // first chunk passed (SWUpdate is asked then): SWUpdate's
                    // figure once it reports one, until then the download's.
                    let streamed = delivered.load(Ordering::Relaxed);
                    if streamed <= first_chunk {
                        continue;
                    }
                    let from_swupdate = swupdate_percent.load(Ordering::Relaxed);
                    let shown = if from_swupdate <= 100 {
                        from_swupdate
                    } else {
                        percent(streamed, size)
                    };
                    self.set_status(|s| {
                        s.state = State::Installing;
                        s.progress = Some(shown);
                    });
                }
            }
        };
        done.store(true, Ordering::Relaxed);
        if let Ok(list) = downloads.lock() {
            list.iter().for_each(|download| download.abort());
        }
        let _ = progress.await;

        match result {
            Ok(installed) => {
                self.failed = None;
                self.candidate = None;
                self.remember(|m| m.pending = Some(installed.clone()));
                self.set_status(|s| s.progress = Some(100));
                let deadline = security.then(|| {
                    now.plus_seconds(self.config.security_postpone_limit().as_secs() as i64)
                });
                self.schedule_reboot(deadline);
            }
            Err(error) => {
                tracing::error!(%error, "the update was not installed");
                self.remember(|m| m.pending = None);
                if let Some(bytes) = self.candidate.clone() {
                    self.failed = Some((bytes, Instant::now() + RETRY_AFTER));
                    self.wake_at = Some(Instant::now() + RETRY_AFTER);
                }
                self.set_status(|s| {
                    s.state = State::Failed;
                    s.progress = None;
                    s.last_error = Some(error);
                });
            }
        }
    }

    /// Reads SWUpdate's progress socket until `done`.
    fn watch_swupdate_progress(
        &self,
        percent: Arc<AtomicU8>,
        done: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        let client = self.client.clone();
        let protocol = self.config.progress_protocol();
        tokio::task::spawn_blocking(move || {
            let Some(protocol) = protocol else { return };
            let Ok(mut stream) = client.connect_progress(protocol) else {
                return;
            };
            if stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .is_err()
            {
                return;
            }
            while !done.load(Ordering::Relaxed) {
                match stream.next_message() {
                    Ok(message) if message.nsteps > 0 => {
                        let _ =
                            percent.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |shown| {
                                Some(forward_percent(shown, &message))
                            });
                    }
                    Ok(_) => {}
                    Err(swupdate_rs::Error::Io { source, .. })
                        if matches!(
                            source.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
            }
        })
    }

    /// Picks the reboot time and tells the owner.
    fn schedule_reboot(&mut self, security_deadline: Option<Timestamp>) {
        let now = Timestamp::now();
        let window = self.app.settings.get().maintenance_window;
        let at = policy::reboot_time(window, now, security_deadline);
        self.reboot_at = Some(at);
        self.reboot_when_due(at);
    }

    /// Before the reboot the owner gets `reboot_notice_secs` of warning
    /// (EN 303 645 5.3-12): the status says when, then the reboot is asked.
    fn reboot_when_due(&mut self, at: Timestamp) {
        let now = Timestamp::now();
        let notice = self.config.reboot_notice_secs as i64;
        if now.unix() + notice < at.unix() {
            self.announced_restart = None;
            self.set_status(|s| {
                s.state = State::WaitingToReboot;
                s.until = Some(at.to_string());
            });
            let secs = (at.unix() - notice - now.unix()).max(1) as u64;
            self.wake_at = Some(Instant::now() + Duration::from_secs(secs));
            return;
        }
        let announced = match self.announced_restart {
            Some(announced) if self.status.borrow().state == State::Rebooting => announced,
            _ => {
                let when = now.plus_seconds(notice).max(at);
                self.set_status(|s| {
                    s.state = State::Rebooting;
                    s.until = Some(when.to_string());
                });
                let version = self
                    .status
                    .borrow()
                    .release
                    .as_ref()
                    .map(|r| r.version.clone())
                    .unwrap_or_default();
                tracing::info!(%version, at = %when, "the device restarts to finish the update");
                self.announced_restart = Some(when);
                when
            }
        };
        // A periodic check, the owner saving the settings or a postponement
        // wakes the agent too: the notice still runs to the time it gave.
        let due = announced.max(at);
        if now.unix() < due.unix() {
            let secs = (due.unix() - now.unix()).max(1) as u64;
            self.wake_at = Some(Instant::now() + Duration::from_secs(secs));
            return;
        }
        self.request_reboot("to finish installing an update");
    }

    fn request_reboot(&mut self, why: &str) {
        let path = &self.config.reboot_request_file;
        match std::fs::write(path, format!("{why}\n")) {
            Ok(()) => {
                self.restarting = true;
                tracing::info!(file = %path.display(), "reboot requested: {why}");
            }
            Err(error) => {
                tracing::error!(%error, file = %path.display(), "cannot request the reboot");
                self.set_status(|s| {
                    s.state = State::Failed;
                    s.last_error = Some(format!(
                        "the update is installed but the restart could not be requested ({error}); restart the device to finish it"
                    ));
                });
            }
        }
    }
}

fn release_info(release: &update_manifest::VerifiedRelease) -> Release {
    let manifest = release.manifest();
    Release {
        version: manifest.version.to_string(),
        security: manifest.urgency == Urgency::Security,
        release_notes: manifest.release_notes.to_string(),
        size: manifest.artifact.size,
    }
}

fn percent(done: u64, total: u64) -> u8 {
    if total == 0 {
        return 0;
    }
    (done.min(total) * 100 / total) as u8
}

fn now_text() -> String {
    Timestamp::now().to_string()
}

/// The mtime of the hearthd binary: a reproducible image sets it to the
/// build's `SOURCE_DATE_EPOCH`, so it is a date the clock cannot be before.
/// `now` if the clock can be trusted: synchronised (or an RTC) and not
/// earlier than `floor`; else why not, as a sentence for the status.
fn trusted_time(
    now: Timestamp,
    synced: bool,
    floor: Option<Timestamp>,
) -> Result<Timestamp, String> {
    match floor {
        Some(floor) if now < floor => Err(format!(
            "the clock says {now}, earlier than {floor}, the newest signed time this device has \
             verified (or its firmware's build): the clock was set back, so updates wait until it \
             is right"
        )),
        _ if synced => Ok(now),
        _ => Err("the device is waiting for its clock to be set".into()),
    }
}

fn build_floor() -> Option<Timestamp> {
    let exe = std::env::current_exe().ok()?;
    let modified = std::fs::metadata(exe).ok()?.modified().ok()?;
    let secs = modified
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Timestamp::from_unix(i64::try_from(secs).ok()?).ok()
}

/// `dir` must be on a file system other than `/`'s: on the device that is
/// the `/data` partition, which keeps the owner's state across updates.
fn data_is_mounted(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let data =
        std::fs::metadata(dir).map_err(|e| format!("{} cannot be read: {e}", dir.display()))?;
    let root = std::fs::metadata("/").map_err(|e| format!("/ cannot be read: {e}"))?;
    if data.dev() == root.dev() {
        return Err(format!(
            "{} is not on its own mounted partition",
            dir.display()
        ));
    }
    Ok(())
}

/// The install's percentage as the owner sees it, from SWUpdate's per-step
/// figure: it only moves forward. After the image, SWUpdate's small last
/// step (the boot environment) starts again at 0, and the bar went back.
/// `shown` is `u8::MAX` until SWUpdate has reported.
fn forward_percent(shown: u8, message: &swupdate_rs::ProgressMessage) -> u8 {
    let now = message.cur_percent.min(100) as u8;
    if shown == u8::MAX {
        now
    } else {
        shown.max(now)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_set_back_below_the_newest_signed_time_is_not_trusted() {
        let floor = Timestamp::from_unix(1_800_000_000).unwrap();
        let year_earlier = Timestamp::from_unix(1_800_000_000 - 365 * 86_400).unwrap();
        let refused = trusted_time(year_earlier, true, Some(floor)).unwrap_err();
        assert!(refused.contains("the clock was set back"), "{refused}");
        assert_eq!(trusted_time(floor, true, Some(floor)), Ok(floor));
        assert!(
            trusted_time(floor, false, Some(floor))
                .unwrap_err()
                .contains("waiting for its clock")
        );
    }

    fn installed(target: Slot) -> Installed {
        Installed {
            version: "1.1.0".parse().unwrap(),
            security_version: 1,
            keyring_version: 1,
            signed_by: update_manifest::SigningKey::generate().unwrap().0.key_id(),
            target,
            bytes_streamed: 10,
        }
    }

    #[test]
    fn boot_cases_follow_the_pending_install_and_ustate() {
        use BootCase::*;
        use Slot::{A, B};
        use UpdateState as U;
        let to_b = installed(B);
        // Installed, armed, rebooted into B: on trial.
        assert_eq!(
            classify(Some(&to_b), U::Installed, B),
            OnTrial(Some(to_b.clone()))
        );
        // Armed, still on A: the reboot has not happened.
        assert_eq!(
            classify(Some(&to_b), U::Installed, A),
            AwaitingReboot(to_b.clone())
        );
        // Committed in the environment; the record lags behind.
        assert_eq!(classify(Some(&to_b), U::Ok, B), FinishCommit(to_b.clone()));
        // GRUB fell back to A and said FAILED.
        assert_eq!(
            classify(Some(&to_b), U::Failed, A),
            RolledBack(Some(to_b.clone()))
        );
        // Power cut while streaming: SWUpdate's IN_PROGRESS, still on A.
        assert_eq!(
            classify(Some(&to_b), U::InProgress, A),
            Abandoned(Some(to_b.clone()))
        );
        // Failed install whose state was reset: still on A.
        assert_eq!(
            classify(Some(&to_b), U::Ok, A),
            Abandoned(Some(to_b.clone()))
        );
        assert_eq!(classify(None, U::Ok, A), Nothing);
        assert_eq!(classify(None, U::NotAvailable, A), Nothing);
        assert_eq!(classify(None, U::InProgress, A), Abandoned(None));
    }

    #[test]
    fn a_failed_health_check_refuses_at_once_an_unexplained_fallback_after_two() {
        let v: Version = "1.1.0".parse().unwrap();
        let mut memory = Memory {
            unhealthy: Some(v),
            ..Memory::default()
        };
        assert_eq!(
            memory.fell_back(v),
            Fallback::Refused,
            "the health check failed"
        );
        assert_eq!(memory.refused, [v]);
        assert_eq!(memory.unhealthy, None);

        let w: Version = "1.2.0".parse().unwrap();
        let mut memory = Memory::default();
        assert_eq!(memory.fell_back(w), Fallback::TryOnceMore, "a power cut");
        assert!(memory.refused.is_empty());
        assert_eq!(memory.fell_back(w), Fallback::Refused, "twice");
        assert_eq!(memory.refused, [w]);
        assert!(memory.unexplained.is_empty());
    }

    #[test]
    fn an_unreachable_network_is_retried_a_bounded_number_of_times() {
        let v: Version = "1.3.0".parse().unwrap();
        let mut memory = Memory::default();
        for left in (1..MAX_OFFLINE_TRIALS).rev() {
            memory.offline = Some(v);
            assert_eq!(memory.fell_back(v), Fallback::TryWhenOnline { left });
            assert!(memory.refused.is_empty());
            assert_eq!(memory.offline, None);
        }
        memory.offline = Some(v);
        assert_eq!(
            memory.fell_back(v),
            Fallback::Refused,
            "the last offline trial"
        );
        assert_eq!(memory.refused, [v]);
        assert!(memory.offline_fallbacks.is_empty());

        // A power cut in between does not use up an offline trial, and an
        // offline trial after it is still offline.
        let w: Version = "1.4.0".parse().unwrap();
        let mut memory = Memory::default();
        assert_eq!(memory.fell_back(w), Fallback::TryOnceMore);
        memory.offline = Some(w);
        assert_eq!(
            memory.fell_back(w),
            Fallback::TryWhenOnline {
                left: MAX_OFFLINE_TRIALS - 1
            }
        );
    }

    #[test]
    fn percent_never_exceeds_100() {
        assert_eq!(percent(50, 200), 25);
        assert_eq!(percent(500, 200), 100);
        assert_eq!(percent(1, 0), 0);
    }

    #[test]
    fn the_install_percentage_never_goes_back_when_swupdate_starts_its_next_step() {
        let step = |cur_step, cur_percent| swupdate_rs::ProgressMessage {
            nsteps: 2,
            cur_step,
            cur_percent,
            ..Default::default()
        };
        let mut shown = u8::MAX;
        let mut seen = Vec::new();
        for message in [step(1, 40), step(1, 100), step(2, 0), step(2, 100)] {
            shown = forward_percent(shown, &message);
            seen.push(shown);
        }
        assert_eq!(seen, [40, 100, 100, 100]);
    }
}

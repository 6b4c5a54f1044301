//! The update agent: one task that hears about releases (MQTT, the periodic
//! HTTPS check, the owner), verifies them, and carries out what
//! [`Lifecycle::step`] decides: it streams the artifact into SWUpdate,
//! requests the reboot, and after the reboot checks the new slot and commits
//! it. The decisions, and every rule about them, are in
//! [`lifecycle`](super::lifecycle); this is the thin driver that does the I/O.
//!
//! What survives a power cut is in the state store (`update-agent`, the
//! lifecycle's [`Memory`]): the release being installed (stored *before*
//! the first byte goes to SWUpdate, so an interrupted install is recognised
//! at the next boot), the versions that failed their trial, and the owner's
//! postponement. SWUpdate's `ustate` in the boot environment is the other
//! half: together they say which of the cases in
//! [`classify`](super::lifecycle::classify) the device is in.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use swupdate_rs::UpdateState;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use update_manifest::{DeviceFacts, Rejection, Timestamp, TrustedRoot, Urgency};

use super::config::UpdateConfig;
use super::download::{ChannelReader, Fetcher, Span};
use super::lifecycle::{
    Candidate, Effect, Event, Failure, Lifecycle, Memory, Now, Refusal, Rules, Unhealthy, Verdict,
};
use super::policy;
use super::status::{Release, State, UpdateStatus};
use super::{Installed, Part, Selection, Slot, UpdateRecords};
use crate::access::Access;
use crate::persist::{Cached, Store};
use crate::settings::SettingsStore;

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

const MEMORY_NAME: &str = "update-agent";
const MANIFEST_LIMIT: usize = update_manifest::manifest::MAX_MANIFEST_LEN;

/// What the agent reads from the rest of the device, and nothing more.
#[derive(Debug, Clone)]
pub struct Handles {
    /// The owner's credentials: a store that cannot be read fails the
    /// health check.
    pub access: Arc<Access>,
    /// Automatic updates and the maintenance window.
    pub settings: Arc<SettingsStore>,
    /// Whether the device has an MQTT link (the health check waits for it
    /// or for the manifest URL).
    pub fleet_enabled: bool,
    /// The state store's directory: the health check requires it to be a
    /// mounted partition of its own.
    pub data_dir: PathBuf,
}

/// Runs the agent until `shutdown` changes.
pub async fn run(
    config: UpdateConfig,
    inbox: Inbox,
    app: Handles,
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
    let ustate = agent.ustate().await.map_err(Failure::BootState);
    agent.handle(Event::Booted(ustate)).await;
    let interval = agent.config.check_interval();
    // The first check soon after boot, spread so a fleet does not all ask
    // in the same second after a power cut.
    let mut next_check = Instant::now() + jitter(Duration::from_secs(5), Duration::from_secs(30));
    loop {
        let wake = agent.lifecycle.wake_at();
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(command) = commands.recv() => agent.on_command(command).await,
            _ = tokio::time::sleep_until(next_check), if agent.config.manifest_url.is_some() => {
                agent.check_manifest_url().await;
                next_check = Instant::now() + jitter(interval.mul_f64(0.75), interval.mul_f64(0.25));
            }
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                let verdict = agent.verdict();
                agent.handle(Event::Woken(verdict)).await;
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

/// The owner's request waiting for [`Effect::Reply`].
enum Asker {
    InstallNow(oneshot::Sender<Result<(), String>>),
    Postpone(oneshot::Sender<Result<String, String>>),
}

/// The driver: the decisions are [`Lifecycle::step`]'s; this carries out
/// its effects and turns what they return into the next events.
struct Agent {
    config: UpdateConfig,
    app: Handles,
    lifecycle: Lifecycle,
    memory: Cached<Memory>,
    records: Arc<UpdateRecords>,
    client: swupdate_rs::Client,
    fetcher: Fetcher,
    root: TrustedRoot,
    hwrevision: String,
    build_floor: Option<Timestamp>,
    status: watch::Sender<UpdateStatus>,
    fleet_up: watch::Receiver<bool>,
    asker: Option<Asker>,
}

impl Agent {
    #[allow(clippy::result_large_err)]
    fn new(
        config: UpdateConfig,
        app: Handles,
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
        let rules = Rules {
            running,
            wave_seed: policy::wave_seed(device_id),
            reboot_notice_secs: i64::try_from(config.reboot_notice_secs).unwrap_or(i64::MAX),
            postpone_max_days: config.postpone_max_days,
            security_limit_secs: config.security_postpone_limit().as_secs() as i64,
        };
        let settings = app.settings.get();
        let lifecycle = Lifecycle::new(
            rules,
            status.borrow().clone(),
            memory.get(),
            settings.maintenance_window,
        );
        let agent = Agent {
            client: config.swupdate_client(),
            build_floor: build_floor(),
            config,
            app,
            lifecycle,
            memory,
            records,
            fetcher,
            root,
            hwrevision,
            status,
            fleet_up,
            asker: None,
        };
        agent.publish();
        Ok(agent)
    }

    /// Tells the owner and the fleet, if anything changed.
    fn publish(&self) {
        let next = self.lifecycle.status();
        self.status.send_if_modified(|s| {
            let changed = s != next;
            if changed {
                *s = next.clone();
            }
            changed
        });
    }

    fn now() -> Now {
        Now {
            instant: Instant::now(),
            wall: Timestamp::now(),
        }
    }

    /// Steps the lifecycle with `event`, carries out the effects, and steps
    /// again with what they returned, until nothing follows.
    async fn handle(&mut self, event: Event) {
        let mut events = std::collections::VecDeque::from([event]);
        while let Some(event) = events.pop_front() {
            let effects = self.lifecycle.step(event, Self::now());
            self.publish();
            for effect in effects {
                if let Some(next) = self.carry_out(effect).await {
                    events.push_back(next);
                }
            }
        }
    }

    async fn carry_out(&mut self, effect: Effect) -> Option<Event> {
        match effect {
            Effect::Remember(memory) => {
                if let Err(error) = self.memory.set(*memory) {
                    tracing::error!(%error, "cannot store the update agent's state");
                }
                None
            }
            Effect::CheckHealth => Some(Event::HealthChecked(self.health_check().await)),
            Effect::Commit => Some(Event::Committed(
                self.set_ustate(UpdateState::Ok)
                    .await
                    .map_err(Failure::Commit),
            )),
            Effect::ResetBootState => {
                if let Err(error) = self.set_ustate(UpdateState::Ok).await {
                    tracing::warn!(%error, "cannot reset SWUpdate's update state");
                }
                None
            }
            Effect::Confirm(installed) => {
                match self.records.confirm(&installed) {
                    Ok(_) => tracing::info!(version = %installed.version, "update committed"),
                    Err(error) => tracing::error!(%error, "cannot record the committed update"),
                }
                None
            }
            Effect::Install { manifest, now } => Some(Event::Installed(
                self.install(manifest, now).await.map_err(Failure::Install),
            )),
            Effect::RequestReboot(why) => Some(Event::RebootRequested(self.request_reboot(&why))),
            Effect::Reply(answer) => {
                match self.asker.take() {
                    Some(Asker::InstallNow(reply)) => {
                        let _ = reply.send(answer.map(|_| ()));
                    }
                    Some(Asker::Postpone(reply)) => {
                        let _ = reply.send(answer);
                    }
                    None => {}
                }
                None
            }
        }
    }

    async fn on_command(&mut self, command: Command) {
        let event = match command {
            Command::Manifest(bytes) => {
                if self.lifecycle.candidate() == Some(bytes.as_slice()) {
                    return;
                }
                let verdict = self.verify(&bytes);
                Event::Manifest { bytes, verdict }
            }
            Command::SettingsChanged => {
                let settings = self.app.settings.get();
                Event::SettingsChanged {
                    automatic: settings.automatic_updates,
                    window: settings.maintenance_window,
                    verdict: self.verdict(),
                }
            }
            Command::InstallNow(reply) => {
                self.asker = Some(Asker::InstallNow(reply));
                Event::InstallNow(self.verdict())
            }
            Command::Postpone { days, reply } => {
                self.asker = Some(Asker::Postpone(reply));
                Event::Postpone {
                    days,
                    verdict: self.verdict(),
                }
            }
        };
        self.handle(event).await;
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

    /// The time, or why the clock is not trusted (for the status): it must
    /// be synchronised (or an RTC), and never earlier than the firmware's
    /// own build or the newest signed time this device has verified.
    fn clock(&self) -> Result<Timestamp, String> {
        let synced = self.config.clock_has_rtc || self.config.time_sync_file.exists();
        let seen = Timestamp::from_unix(self.records.get().time_floor).ok();
        trusted_time(Timestamp::now(), synced, self.build_floor.max(seen))
    }

    /// The verdict on the lifecycle's candidate manifest, if it has one.
    fn verdict(&self) -> Option<Verdict> {
        let bytes = self.lifecycle.candidate()?.to_vec();
        Some(self.verify(&bytes))
    }

    /// Verifies `bytes` against this device now.
    fn verify(&self, bytes: &[u8]) -> Verdict {
        let now = self.clock().map_err(Refusal::Clock)?;
        let (release, _) = self.verified(bytes, now).map_err(Refusal::Release)?;
        let Some(release) = release else {
            return Ok(None);
        };
        let manifest = release.manifest();
        Ok(Some(Candidate {
            version: release.version(),
            urgency: manifest.urgency,
            rollout: manifest.rollout.clone(),
            release: release_info(&release),
            security_version: release.security_version(),
            keyring_version: release.keyring_version(),
            signed_by: release.signed_by(),
            verified_at: now,
        }))
    }

    /// The manifest verified against this device at `now`, with the facts
    /// it was checked against; `None` when it is the release running now.
    #[allow(clippy::type_complexity)]
    fn verified(
        &self,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<(Option<update_manifest::VerifiedRelease>, DeviceFacts), String> {
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
        match update_manifest::verify(bytes, &self.root, &facts, now) {
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
                Ok((Some(release), facts))
            }
            // The release running now (the retained manifest after an
            // update): nothing to do. An older one is a refused rollback.
            Err(Rejection::NotNewer { offered, installed }) if offered == installed => {
                Ok((None, facts))
            }
            Err(rejection) => Err(format!("update refused before download: {rejection}")),
        }
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

    /// The health check of a slot on trial: the device itself first, so a
    /// slot that is broken here is refused even while the network is down
    /// too; then the vendor's reach.
    async fn health_check(&self) -> Result<(), Unhealthy> {
        let limit = Duration::from_secs(self.config.health_timeout_secs);
        let deadline = Instant::now() + limit;
        match tokio::time::timeout_at(deadline, self.device_health()).await {
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
        data_is_mounted(self.app.data_dir.as_path())?;
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
        let fleet = self.app.fleet_enabled;
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
        if fleet || self.config.manifest_url.is_some() {
            tokio::select! {
                () = mqtt, if fleet => {}
                () = https => {}
            }
        }
    }

    /// Streams the release into SWUpdate and the other slot, stepping the
    /// lifecycle with the progress as it goes.
    async fn install(&mut self, bytes: Vec<u8>, now: Timestamp) -> Result<Installed, String> {
        let (release, facts) = self.verified(&bytes, now)?;
        let release = release.ok_or("the release is the one running now")?;
        let manifest = release.manifest().clone();
        let size = manifest.artifact.size;
        let target = self.lifecycle.memory().pending.as_ref().map(|p| p.target);
        let target = target.ok_or("no install is pending")?;

        // `super::install` asks for the chunk index, then the artifact (or,
        // for a delta release, its index, then parts of its pack);
        // `delivered` counts the bytes downloaded so far.
        let first_chunk = u64::from(manifest.artifact.index.chunk_len);
        let delivered = Arc::new(AtomicU64::new(0));
        let downloads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let open = {
            let runtime = tokio::runtime::Handle::current();
            let fetcher = self.fetcher.clone();
            let artifact = manifest.artifact.clone();
            let delta = manifest.delta.clone();
            let (delivered, downloads) = (delivered.clone(), downloads.clone());
            move |part: Part| -> std::io::Result<Box<dyn std::io::Read + Send>> {
                // One byte more than pinned, so that a longer file is
                // judged (and refused) as such.
                let small = |urls: &[update_manifest::ArtifactUrl], pinned: u64| {
                    let limit = usize::try_from(pinned.saturating_add(1)).unwrap_or(usize::MAX);
                    let bytes = runtime
                        .block_on(fetcher.fetch_at_most(urls, limit))
                        .map_err(std::io::Error::other)?;
                    Ok(Box::new(std::io::Cursor::new(bytes)) as Box<dyn std::io::Read + Send>)
                };
                let (urls, span) = match (part, &delta) {
                    (Part::Index, _) => return small(&artifact.index.urls, artifact.index.size),
                    (Part::DeltaIndex, Some(delta)) => return small(&delta.urls, delta.size),
                    (Part::Artifact, _) => (
                        artifact.urls.clone(),
                        Span {
                            start: 0,
                            len: artifact.size,
                            whole: true,
                        },
                    ),
                    (Part::Pack { offset, len }, Some(delta)) => (
                        delta.pack_urls.clone(),
                        Span {
                            start: offset,
                            len,
                            whole: false,
                        },
                    ),
                    (Part::DeltaIndex | Part::Pack { .. }, None) => {
                        return Err(std::io::Error::other("the manifest names no delta release"));
                    }
                };
                let (sink, reader) = ChannelReader::pair();
                let (fetcher, counter) = (fetcher.clone(), delivered.clone());
                let before = counter.load(Ordering::Relaxed);
                let download = runtime.spawn(async move {
                    fetcher
                        .stream_range(&urls, span, sink, move |n| {
                            counter.store(before + n, Ordering::Relaxed)
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
        let selection = Selection::writing(target);
        let running_slot = self.config.running_slot_device();
        let mut installing = tokio::task::spawn_blocking(move || {
            let device = super::Device {
                root: &root,
                facts: &facts,
                running_slot: running_slot.as_deref(),
            };
            super::install(&bytes, open, &device, now, &client, &selection)
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
                    // (A delta release may fetch too little to say.)
                    let streamed = delivered.load(Ordering::Relaxed);
                    let from_swupdate = swupdate_percent.load(Ordering::Relaxed);
                    let shown = if from_swupdate <= 100 {
                        from_swupdate
                    } else if streamed > first_chunk {
                        percent(streamed, size)
                    } else {
                        continue;
                    };
                    self.lifecycle.step(Event::Progress(shown), Self::now());
                    self.publish();
                }
            }
        };
        done.store(true, Ordering::Relaxed);
        if let Ok(list) = downloads.lock() {
            list.iter().for_each(|download| download.abort());
        }
        let _ = progress.await;
        result
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

    fn request_reboot(&mut self, why: &str) -> Result<(), Failure> {
        let path = &self.config.reboot_request_file;
        match std::fs::write(path, format!("{why}\n")) {
            Ok(()) => {
                tracing::info!(file = %path.display(), "reboot requested: {why}");
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, file = %path.display(), "cannot request the reboot");
                Err(Failure::RebootRequest(error.to_string()))
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

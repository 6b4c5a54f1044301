//! The update agent's decisions, without I/O: a closed set of [`Phase`]s
//! and [`Event`]s and one [`Lifecycle::step`] that turns an event into the
//! next phase, the owner's status, the agent's memory and a list of
//! [`Effect`]s. The driver in [`agent`](super::agent) carries the effects
//! out (SWUpdate, the download, the boot environment, the reboot request)
//! and feeds what they return back in as events, so every rule here is
//! tested without a device, a clock or a network.
//!
//! The phases, with the events that move between them:
//!
//! ```text
//!  Starting ──Booted──▶ Checking ──HealthChecked(ok)──▶ Committing ──Committed──▶ Ready
//!     │                    └──HealthChecked(err): RequestReboot──▶ Restarting
//!     └──Booted──▶ Ready ◀──Installed(err)── Installing ◀──(manifest, wake, owner)── Ready
//!                  Armed ◀──Installed(ok)──┘
//!                  Armed ──notice given, time due: RequestReboot──▶ Restarting
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use swupdate_rs::UpdateState;
use tokio::time::Instant;
use update_manifest::{KeyId, Rollout, Timestamp, Urgency, Version};

use super::policy::{self, Choices, Decision, Offer, Window};
use super::status::{LastResult, Release, State, UpdateStatus};
use super::{Installed, Slot};

/// At most this many refused versions are remembered.
const MAX_REFUSED: usize = 32;
/// Trial boots a release gets when only the network fails them.
pub const MAX_OFFLINE_TRIALS: u32 = 3;
/// A manifest whose install failed is tried again after this long (a new
/// manifest is tried at once).
pub const RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How often to look at the clock while waiting for time sync.
pub const CLOCK_POLL: Duration = Duration::from_secs(30);

/// What the agent keeps in the state store: it survives power cuts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// A manifest that verified on this device, as the decisions need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub version: Version,
    pub urgency: Urgency,
    pub rollout: Rollout,
    /// As the owner sees it.
    pub release: Release,
    pub security_version: u32,
    pub keyring_version: u64,
    pub signed_by: KeyId,
    /// The trusted time it was verified at.
    pub verified_at: Timestamp,
}

/// Why the candidate manifest cannot be installed now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The clock is not trusted yet: the release waits for it.
    #[error("{0}")]
    Clock(String),
    /// The manifest failed a check, or the release is not for this device.
    #[error("{0}")]
    Release(String),
}

/// What verifying the candidate manifest said: `None` when it is the
/// release running now.
pub type Verdict = Result<Option<Candidate>, Refusal>;

/// Why a slot on trial failed its health check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    /// On the device itself: the release is refused.
    #[error("{0}")]
    Local(String),
    /// Healthy, but neither the broker nor the manifest URL answered: the
    /// release is tried again once the network works.
    #[error("{0}")]
    Offline(String),
}

/// What the driver could not do; each reads as the cause of a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("cannot ask SWUpdate for the update state: {0}")]
    BootState(String),
    #[error("cannot commit the new slot through SWUpdate: {0}")]
    Commit(String),
    /// The install's own sentence (download, check, SWUpdate).
    #[error("{0}")]
    Install(String),
    #[error(
        "the update is installed but the restart could not be requested ({0}); restart the device to finish it"
    )]
    RebootRequest(String),
}

/// Something that happened, told to [`Lifecycle::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// SWUpdate's state, read once after boot.
    Booted(Result<UpdateState, Failure>),
    /// The health check of the slot on trial finished.
    HealthChecked(Result<(), Unhealthy>),
    /// SWUpdate was asked to commit the slot on trial.
    Committed(Result<(), Failure>),
    /// A manifest arrived (MQTT, the periodic HTTPS check), and what
    /// verifying it said.
    Manifest { bytes: Vec<u8>, verdict: Verdict },
    /// The wake-up asked for with [`Lifecycle::wake_at`] is due.
    Woken(Option<Verdict>),
    /// The owner's settings changed.
    SettingsChanged {
        automatic: bool,
        window: Option<Window>,
        verdict: Option<Verdict>,
    },
    /// The owner asked to install the available release now.
    InstallNow(Option<Verdict>),
    /// The owner postponed the available release.
    Postpone { days: u32, verdict: Option<Verdict> },
    /// How far the running install is (percent).
    Progress(u8),
    /// The install finished: armed for a trial boot, or not.
    Installed(Result<Installed, Failure>),
    /// The reboot request was written, or could not be.
    RebootRequested(Result<(), Failure>),
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Store this memory before what follows.
    Remember(Box<Memory>),
    /// Check the slot on trial; answers [`Event::HealthChecked`].
    CheckHealth,
    /// Ask SWUpdate to commit the slot on trial; answers [`Event::Committed`].
    Commit,
    /// Set SWUpdate's state back to OK after a fallback or an abandoned
    /// install (a failure is only logged).
    ResetBootState,
    /// Raise the update record's floors to the committed release.
    Confirm(Installed),
    /// Download and install this manifest into the other slot; answers
    /// [`Event::Progress`] and then [`Event::Installed`].
    Install { manifest: Vec<u8>, now: Timestamp },
    /// Ask for the restart; answers [`Event::RebootRequested`].
    RequestReboot(String),
    /// Answer the owner's request (install now, postpone).
    Reply(Result<String, String>),
}

/// Where the agent is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// SWUpdate's state after boot is not known yet.
    Starting,
    /// The slot on trial is being checked.
    Checking(Option<Installed>),
    /// Healthy; SWUpdate is committing it.
    Committing(Option<Installed>),
    /// Nothing in progress: a candidate may wait (the status says why).
    Ready,
    /// Downloading and installing into the other slot.
    Installing {
        security_deadline: Option<Timestamp>,
    },
    /// Installed and armed: the restart is due at `at`. `announced` is the
    /// time the owner was told ("rebooting" status); the restart never
    /// comes before it.
    Armed {
        at: Timestamp,
        announced: Option<Timestamp>,
        security_deadline: Option<Timestamp>,
    },
    /// The restart was requested: nothing more is installed. (A trial slot
    /// that failed its health check must reach the boot loader with
    /// SWUpdate's state untouched, or the boot loader does not fall back.)
    Restarting,
}

/// The times a step may look at.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// For wake-ups: not moved by the wall clock.
    pub instant: Instant,
    /// The wall clock, trusted or not (reboot times, the log).
    pub wall: Timestamp,
}

/// The vendor's and the device's fixed rules.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub running: Slot,
    pub wave_seed: u16,
    pub reboot_notice_secs: i64,
    pub postpone_max_days: u32,
    pub security_limit_secs: i64,
}

/// The agent's state: the phase, what the owner is told, what survives a
/// power cut, and the manifest under consideration.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    rules: Rules,
    phase: Phase,
    status: UpdateStatus,
    memory: Memory,
    automatic: bool,
    window: Option<Window>,
    /// The newest manifest heard of, not yet installed.
    candidate: Option<Vec<u8>>,
    /// A manifest whose install failed, and when it may be tried again.
    failed: Option<(Vec<u8>, Instant)>,
    wake_at: Option<Instant>,
}

impl Lifecycle {
    pub fn new(
        rules: Rules,
        mut status: UpdateStatus,
        memory: Memory,
        window: Option<Window>,
    ) -> Lifecycle {
        status.running_slot = Some(rules.running.to_string());
        status.refused_versions = memory.refused.iter().map(ToString::to_string).collect();
        status.last_result = memory.last_result.clone();
        Lifecycle {
            rules,
            phase: Phase::Starting,
            automatic: status.automatic,
            status,
            memory,
            window,
            candidate: None,
            failed: None,
            wake_at: None,
        }
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn status(&self) -> &UpdateStatus {
        &self.status
    }

    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// The manifest the next verdict is about.
    pub fn candidate(&self) -> Option<&[u8]> {
        self.candidate.as_deref()
    }

    /// When to send [`Event::Woken`].
    pub fn wake_at(&self) -> Option<Instant> {
        self.wake_at
    }

    /// The one transition function.
    pub fn step(&mut self, event: Event, now: Now) -> Vec<Effect> {
        let mut effects = Vec::new();
        match event {
            Event::Booted(ustate) => self.booted(ustate, now, &mut effects),
            Event::HealthChecked(verdict) => self.health_checked(verdict, &mut effects),
            Event::Committed(result) => self.committed(result, now, &mut effects),
            Event::Manifest { bytes, verdict } => {
                if self.candidate.as_ref() != Some(&bytes) {
                    self.candidate = Some(bytes);
                    self.reconsider(Some(verdict), now, &mut effects);
                }
            }
            Event::Woken(verdict) => {
                self.wake_at = None;
                self.reconsider(verdict, now, &mut effects);
            }
            Event::SettingsChanged {
                automatic,
                window,
                verdict,
            } => {
                self.automatic = automatic;
                self.window = window;
                self.status.automatic = automatic;
                match self.phase {
                    Phase::Armed {
                        security_deadline, ..
                    } => self.schedule_reboot(security_deadline, now, &mut effects),
                    _ => self.reconsider(verdict, now, &mut effects),
                }
            }
            Event::InstallNow(verdict) => self.install_now(verdict, &mut effects),
            Event::Postpone { days, verdict } => {
                let answer = self.postpone(days, verdict.clone(), &mut effects);
                effects.push(Effect::Reply(answer));
                self.reconsider(verdict, now, &mut effects);
            }
            Event::Progress(percent) => {
                if matches!(self.phase, Phase::Installing { .. }) {
                    self.status.state = State::Installing;
                    self.status.progress = Some(percent);
                }
            }
            Event::Installed(result) => self.installed(result, now, &mut effects),
            Event::RebootRequested(Ok(())) => self.phase = Phase::Restarting,
            Event::RebootRequested(Err(failure)) => {
                if matches!(self.phase, Phase::Checking(_)) {
                    self.phase = Phase::Ready;
                }
                self.status.state = State::Failed;
                self.status.last_error = Some(failure.to_string());
            }
        }
        effects
    }

    /// Works out what the last boot means, and acts on it.
    fn booted(
        &mut self,
        ustate: Result<UpdateState, Failure>,
        now: Now,
        effects: &mut Vec<Effect>,
    ) {
        self.phase = Phase::Ready;
        let ustate = match ustate {
            Ok(ustate) => ustate,
            Err(failure) => {
                tracing::error!("{failure}");
                self.status.state = State::Failed;
                self.status.last_error = Some(failure.to_string());
                return;
            }
        };
        self.status.state = State::Idle;
        let case = classify(self.memory.pending.as_ref(), ustate, self.rules.running);
        tracing::info!(?ustate, slot = %self.rules.running, ?case, "update state after boot");
        match case {
            BootCase::Nothing => {}
            BootCase::OnTrial(installed) => {
                self.status.state = State::Checking;
                self.phase = Phase::Checking(installed);
                effects.push(Effect::CheckHealth);
            }
            BootCase::FinishCommit(installed) => self.confirm(installed, now, effects),
            BootCase::RolledBack(installed) => self.rolled_back(installed, now, effects),
            BootCase::AwaitingReboot(installed) => {
                self.status.release = Some(Release {
                    version: installed.version.to_string(),
                    security: false,
                    release_notes: String::new(),
                    size: installed.bytes_streamed,
                });
                self.schedule_reboot(None, now, effects);
            }
            BootCase::Abandoned(installed) => {
                if let Some(i) = &installed {
                    tracing::warn!(version = %i.version, "an install did not finish (power cut or error); it starts again when the release is offered");
                }
                self.memory.pending = None;
                effects.push(Effect::Remember(Box::new(self.memory.clone())));
                if !matches!(ustate, UpdateState::Ok | UpdateState::NotAvailable) {
                    effects.push(Effect::ResetBootState);
                }
            }
        }
    }

    fn rolled_back(&mut self, installed: Option<Installed>, now: Now, effects: &mut Vec<Effect>) {
        let version = installed.as_ref().map(|i| i.version);
        let fallback = version.map(|v| (v, self.memory.fell_back(v)));
        let running = &self.status.running_version;
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
        self.memory.pending = None;
        self.memory.last_result = Some(LastResult {
            version: version.map(|v| v.to_string()).unwrap_or_default(),
            outcome: "rolled-back".into(),
            time: now.wall.to_string(),
            detail: detail.clone(),
        });
        effects.push(Effect::Remember(Box::new(self.memory.clone())));
        // Reported: SWUpdate's state goes back to OK.
        effects.push(Effect::ResetBootState);
        self.status.state = State::Failed;
        self.status.last_error = Some(detail);
        self.status.refused_versions = self
            .memory
            .refused
            .iter()
            .map(ToString::to_string)
            .collect();
        self.status.last_result = self.memory.last_result.clone();
    }

    fn health_checked(&mut self, verdict: Result<(), Unhealthy>, effects: &mut Vec<Effect>) {
        let Phase::Checking(installed) = &self.phase else {
            return;
        };
        let installed = installed.clone();
        match verdict {
            Ok(()) => {
                // SWUpdate's state first: if power fails between the two,
                // the next boot sees a committed slot and finishes the record
                // (FinishCommit); the other order could leave raised floors
                // on a slot that then falls back.
                self.phase = Phase::Committing(installed);
                effects.push(Effect::Commit);
            }
            Err(unhealthy) => {
                let version = installed.as_ref().map(|i| i.version);
                let error = format!(
                    "the new software failed its health check ({unhealthy}); restarting into the previous software"
                );
                tracing::error!("{error}");
                match unhealthy {
                    Unhealthy::Local(_) => self.memory.unhealthy = version,
                    Unhealthy::Offline(_) => self.memory.offline = version,
                }
                effects.push(Effect::Remember(Box::new(self.memory.clone())));
                self.status.state = State::Rebooting;
                self.status.last_error = Some(error.clone());
                effects.push(Effect::RequestReboot(error));
            }
        }
    }

    fn committed(&mut self, result: Result<(), Failure>, now: Now, effects: &mut Vec<Effect>) {
        let Phase::Committing(installed) = &self.phase else {
            return;
        };
        let installed = installed.clone();
        self.phase = Phase::Ready;
        match (result, installed) {
            (Err(failure), _) => {
                tracing::error!("{failure}");
                self.status.state = State::Failed;
                self.status.last_error = Some(failure.to_string());
            }
            (Ok(()), Some(installed)) => self.confirm(installed, now, effects),
            (Ok(()), None) => {
                tracing::warn!(
                    "committed a slot on trial that hearthd did not install; the update record is unchanged"
                );
                self.status.state = State::Idle;
            }
        }
    }

    /// The committed release: the record first, then the memory (a power
    /// cut in between finishes the commit again at the next boot).
    fn confirm(&mut self, installed: Installed, now: Now, effects: &mut Vec<Effect>) {
        let result = LastResult {
            version: installed.version.to_string(),
            outcome: "installed".into(),
            time: now.wall.to_string(),
            detail: format!("version {} is installed and running", installed.version),
        };
        effects.push(Effect::Confirm(installed));
        self.memory.pending = None;
        self.memory.last_result = Some(result.clone());
        effects.push(Effect::Remember(Box::new(self.memory.clone())));
        self.status.state = State::Idle;
        self.status.release = None;
        self.status.last_error = None;
        self.status.last_result = Some(result);
    }

    /// The verdict, with the versions refused on this device refused.
    fn judged(&self, verdict: Option<Verdict>) -> Verdict {
        match verdict.unwrap_or(Ok(None))? {
            Some(c) if self.memory.refused.contains(&c.version) => Err(Refusal::Release(format!(
                "version {} failed its trial boot on this device and is not installed again",
                c.version
            ))),
            found => Ok(found),
        }
    }

    fn install_now(&mut self, verdict: Option<Verdict>, effects: &mut Vec<Effect>) {
        if let Some(busy) = self.busy() {
            effects.push(Effect::Reply(Err(busy)));
            return;
        }
        match self.judged(verdict) {
            Ok(Some(candidate)) => {
                effects.push(Effect::Reply(Ok(String::new())));
                self.start_install(candidate, effects);
            }
            Ok(None) => effects.push(Effect::Reply(Err("no update is available".into()))),
            Err(refusal) => effects.push(Effect::Reply(Err(refusal.to_string()))),
        }
    }

    /// Why the owner cannot install or postpone now, if so.
    fn busy(&self) -> Option<String> {
        match &self.phase {
            Phase::Ready => None,
            Phase::Starting | Phase::Checking(_) | Phase::Committing(_) => Some(
                "the device is still checking the software it started with; try again in a minute"
                    .into(),
            ),
            Phase::Installing { .. } => Some("an update is being installed".into()),
            Phase::Armed { at, .. } => Some(format!(
                "an update is installed; the device restarts to finish it at {at}"
            )),
            Phase::Restarting => Some("the device is restarting to finish an update".into()),
        }
    }

    fn postpone(
        &mut self,
        days: u32,
        verdict: Option<Verdict>,
        effects: &mut Vec<Effect>,
    ) -> Result<String, String> {
        if days == 0 || days > self.rules.postpone_max_days {
            return Err(format!(
                "choose between 1 and {} days",
                self.rules.postpone_max_days
            ));
        }
        if let Some(busy) = self.busy() {
            return Err(busy);
        }
        let Some(candidate) = self.judged(verdict).map_err(|r| r.to_string())? else {
            return Err("no update is available to postpone".into());
        };
        let version = candidate.version;
        let until = candidate.verified_at.plus_seconds(i64::from(days) * 86_400);
        self.memory.postponed = Some((version, until));
        effects.push(Effect::Remember(Box::new(self.memory.clone())));
        Ok(if candidate.urgency == Urgency::Security {
            format!(
                "Postponed. {version} is a security update: it is installed at the latest {} hours after it arrived.",
                self.rules.security_limit_secs as f64 / 3600.0
            )
        } else {
            format!("Postponed until {until}.")
        })
    }

    /// Looks at the candidate again: install, wait, or ask the owner.
    fn reconsider(&mut self, verdict: Option<Verdict>, now: Now, effects: &mut Vec<Effect>) {
        match self.phase {
            Phase::Ready => {}
            Phase::Armed { .. } => return self.reboot_when_due(now, effects),
            // The candidate is kept and looked at once the phase ends.
            _ => return,
        }
        if let Some((bytes, retry)) = &self.failed
            && self.candidate.as_ref() == Some(bytes)
            && now.instant < *retry
        {
            self.wake_at = Some(*retry);
            return;
        }
        let candidate = match self.judged(verdict) {
            Ok(Some(found)) => found,
            Ok(None) => {
                self.candidate = None;
                if self.status.state == State::Available {
                    self.status.state = State::Idle;
                }
                self.status.release = None;
                self.status.waiting = None;
                self.status.until = None;
                return;
            }
            Err(Refusal::Clock(why)) => {
                self.status.state = State::Available;
                self.status.waiting = Some(why);
                self.wake_at = Some(now.instant + CLOCK_POLL);
                return;
            }
            Err(Refusal::Release(error)) => {
                tracing::warn!(%error, "release not installed");
                self.candidate = None;
                self.status.state = State::Failed;
                self.status.last_error = Some(error);
                self.status.release = None;
                self.status.waiting = None;
                self.status.until = None;
                // The refused manifest replaced the one that was waiting.
                self.wake_at = None;
                return;
            }
        };
        let version = candidate.version;
        let verified_at = candidate.verified_at;
        let first_seen = match self.memory.seen {
            Some((v, t)) if v == version => t,
            _ => {
                self.memory.seen = Some((version, verified_at));
                effects.push(Effect::Remember(Box::new(self.memory.clone())));
                verified_at
            }
        };
        let postponed_until = self
            .memory
            .postponed
            .filter(|(v, _)| *v == version)
            .map(|(_, t)| t);
        let choices = Choices {
            automatic: self.automatic,
            postponed_until,
        };
        let offer = Offer {
            urgency: candidate.urgency,
            rollout: &candidate.rollout,
            first_seen,
        };
        self.status.release = Some(candidate.release.clone());
        let limit = self.rules.security_limit_secs;
        match policy::decide(offer, choices, self.rules.wave_seed, verified_at, limit) {
            Decision::Install => self.start_install(candidate, effects),
            Decision::Wait { until, why } => {
                self.status.state = State::Available;
                self.status.waiting = Some(why.sentence().to_owned());
                self.status.until = Some(until.to_string());
                let secs = (until.unix() - verified_at.unix()).max(1) as u64;
                self.wake_at = Some(now.instant + Duration::from_secs(secs));
            }
            Decision::AskOwner => {
                self.status.state = State::Available;
                self.status.waiting = Some(
                    "automatic updates are off: install it from the dashboard when it suits you"
                        .to_owned(),
                );
                self.status.until = None;
            }
        }
    }

    fn start_install(&mut self, candidate: Candidate, effects: &mut Vec<Effect>) {
        let Some(manifest) = self.candidate.clone() else {
            return;
        };
        tracing::info!(version = %candidate.version, size = candidate.release.size, security = candidate.release.security, "installing a release");
        self.status.state = State::Downloading;
        self.status.release = Some(candidate.release.clone());
        self.status.progress = Some(0);
        self.status.waiting = None;
        self.status.until = None;
        self.status.last_error = None;
        // Stored before SWUpdate sees a byte: an install cut short by a
        // power loss is recognised (and abandoned) at the next boot.
        self.memory.pending = Some(Installed {
            version: candidate.version,
            security_version: candidate.security_version,
            keyring_version: candidate.keyring_version,
            signed_by: candidate.signed_by,
            target: self.rules.running.other(),
            bytes_streamed: 0,
        });
        effects.push(Effect::Remember(Box::new(self.memory.clone())));
        let security = candidate.urgency == Urgency::Security;
        self.phase = Phase::Installing {
            security_deadline: security.then(|| {
                candidate
                    .verified_at
                    .plus_seconds(self.rules.security_limit_secs)
            }),
        };
        effects.push(Effect::Install {
            manifest,
            now: candidate.verified_at,
        });
    }

    fn installed(
        &mut self,
        result: Result<Installed, Failure>,
        now: Now,
        effects: &mut Vec<Effect>,
    ) {
        let Phase::Installing { security_deadline } = self.phase else {
            return;
        };
        match result {
            Ok(installed) => {
                self.failed = None;
                self.candidate = None;
                self.memory.pending = Some(installed);
                effects.push(Effect::Remember(Box::new(self.memory.clone())));
                self.status.progress = Some(100);
                self.schedule_reboot(security_deadline, now, effects);
            }
            Err(failure) => {
                tracing::error!(error = %failure, "the update was not installed");
                self.phase = Phase::Ready;
                self.memory.pending = None;
                effects.push(Effect::Remember(Box::new(self.memory.clone())));
                if let Some(bytes) = self.candidate.clone() {
                    let retry = now.instant + RETRY_AFTER;
                    self.failed = Some((bytes, retry));
                    self.wake_at = Some(retry);
                }
                self.status.state = State::Failed;
                self.status.progress = None;
                self.status.last_error = Some(failure.to_string());
            }
        }
    }

    /// Picks the reboot time (the owner's window, the security deadline).
    fn schedule_reboot(
        &mut self,
        security_deadline: Option<Timestamp>,
        now: Now,
        effects: &mut Vec<Effect>,
    ) {
        let at = policy::reboot_time(self.window, now.wall, security_deadline);
        let announced = match self.phase {
            Phase::Armed { announced, .. } => announced,
            _ => None,
        };
        self.phase = Phase::Armed {
            at,
            announced,
            security_deadline,
        };
        self.reboot_when_due(now, effects);
    }

    /// Before the reboot the owner gets `reboot_notice_secs` of warning
    /// (EN 303 645 5.3-12): the status says when, then the reboot is asked.
    fn reboot_when_due(&mut self, now: Now, effects: &mut Vec<Effect>) {
        let Phase::Armed {
            at,
            announced,
            security_deadline,
        } = self.phase
        else {
            return;
        };
        let notice = self.rules.reboot_notice_secs;
        let wall = now.wall;
        if wall.unix() + notice < at.unix() {
            self.phase = Phase::Armed {
                at,
                announced: None,
                security_deadline,
            };
            self.status.state = State::WaitingToReboot;
            self.status.until = Some(at.to_string());
            let secs = (at.unix() - notice - wall.unix()).max(1) as u64;
            self.wake_at = Some(now.instant + Duration::from_secs(secs));
            return;
        }
        // Anything that wakes the agent during the notice (a periodic
        // check, the owner saving the settings) leaves the time it gave.
        let announced = match announced {
            Some(announced) if self.status.state == State::Rebooting => announced,
            _ => {
                let when = wall.plus_seconds(notice).max(at);
                self.status.state = State::Rebooting;
                self.status.until = Some(when.to_string());
                let version = self.status.release.as_ref().map(|r| r.version.clone());
                tracing::info!(version = version.unwrap_or_default(), at = %when, "the device restarts to finish the update");
                when
            }
        };
        self.phase = Phase::Armed {
            at,
            announced: Some(announced),
            security_deadline,
        };
        let due = announced.max(at);
        if wall.unix() < due.unix() {
            let secs = (due.unix() - wall.unix()).max(1) as u64;
            self.wake_at = Some(now.instant + Duration::from_secs(secs));
            return;
        }
        effects.push(Effect::RequestReboot(
            "to finish installing an update".into(),
        ));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use update_manifest::Rollout;

    fn installed(target: Slot) -> Installed {
        Installed {
            version: "1.1.0".parse().unwrap(),
            security_version: 1,
            keyring_version: 1,
            signed_by: key(),
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

    const T0: i64 = 1_800_000_000;
    const NOTICE: i64 = 60;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_unix(secs).unwrap()
    }

    fn key() -> KeyId {
        "ab".repeat(32).parse().unwrap()
    }

    fn v(text: &str) -> Version {
        text.parse().unwrap()
    }

    /// A lifecycle on slot A with a clock the test moves.
    struct Rig {
        life: Lifecycle,
        start: Instant,
        secs: i64,
    }

    impl Rig {
        fn new(memory: Memory, automatic: bool) -> Rig {
            let rules = Rules {
                running: Slot::A,
                wave_seed: 512,
                reboot_notice_secs: NOTICE,
                postpone_max_days: 7,
                security_limit_secs: 72 * 3600,
            };
            let status = UpdateStatus::starting("1.0.0".into(), automatic);
            Rig {
                life: Lifecycle::new(rules, status, memory, None),
                start: Instant::now(),
                secs: T0,
            }
        }

        /// Booted on slot A with nothing pending.
        fn ready(automatic: bool) -> Rig {
            let mut rig = Rig::new(Memory::default(), automatic);
            assert_eq!(rig.state(), State::Starting);
            assert_eq!(rig.step(Event::Booted(Ok(UpdateState::Ok))), []);
            assert_eq!(rig.life.phase(), &Phase::Ready);
            assert_eq!(rig.state(), State::Idle);
            rig
        }

        fn now(&self) -> Now {
            Now {
                instant: self.at(self.secs),
                wall: t(self.secs),
            }
        }

        fn at(&self, secs: i64) -> Instant {
            self.start + Duration::from_secs((secs - T0) as u64)
        }

        fn step(&mut self, event: Event) -> Vec<Effect> {
            let now = self.now();
            self.life.step(event, now)
        }

        fn advance(&mut self, secs: i64) {
            self.secs += secs;
        }

        /// The verdict on `version` verified now.
        fn offer(&self, version: &str, urgency: Urgency, spread_hours: u32) -> Verdict {
            Ok(Some(Candidate {
                version: v(version),
                urgency,
                rollout: Rollout {
                    start: t(T0),
                    spread_hours,
                },
                release: Release {
                    version: version.into(),
                    security: urgency == Urgency::Security,
                    release_notes: String::new(),
                    size: 1000,
                },
                security_version: 1,
                keyring_version: 1,
                signed_by: key(),
                verified_at: t(self.secs),
            }))
        }

        fn manifest(&mut self, bytes: &[u8], verdict: Verdict) -> Vec<Effect> {
            self.step(Event::Manifest {
                bytes: bytes.to_vec(),
                verdict,
            })
        }

        fn state(&self) -> State {
            self.life.status().state
        }
    }

    fn pending_to(target: Slot, version: &str) -> Installed {
        Installed {
            version: v(version),
            target,
            ..installed(target)
        }
    }

    fn remembered(effects: &[Effect]) -> Vec<&Memory> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Remember(m) => Some(m.as_ref()),
                _ => None,
            })
            .collect()
    }

    fn installs(effects: &[Effect]) -> usize {
        effects
            .iter()
            .filter(|e| matches!(e, Effect::Install { .. }))
            .count()
    }

    fn on_trial() -> Rig {
        let memory = Memory {
            pending: Some(pending_to(Slot::A, "1.1.0")),
            ..Memory::default()
        };
        let mut rig = Rig::new(memory, true);
        assert_eq!(
            rig.step(Event::Booted(Ok(UpdateState::Installed))),
            [Effect::CheckHealth]
        );
        assert_eq!(rig.state(), State::Checking);
        rig
    }

    #[test]
    fn a_healthy_slot_on_trial_is_committed_then_recorded_then_forgotten() {
        let mut rig = on_trial();
        assert_eq!(rig.step(Event::HealthChecked(Ok(()))), [Effect::Commit]);
        let effects = rig.step(Event::Committed(Ok(())));
        let installed = pending_to(Slot::A, "1.1.0");
        assert_eq!(effects[0], Effect::Confirm(installed), "the record first");
        let memory = remembered(&effects);
        assert_eq!(memory.len(), 1);
        assert_eq!(memory[0].pending, None);
        assert_eq!(memory[0].last_result.as_ref().unwrap().outcome, "installed");
        assert_eq!(rig.state(), State::Idle);
        assert_eq!(rig.life.phase(), &Phase::Ready);
    }

    #[test]
    fn an_unhealthy_slot_on_trial_is_marked_and_restarted_without_a_commit() {
        for (unhealthy, offline) in [
            (Unhealthy::Local("the hook said 1".into()), false),
            (Unhealthy::Offline("no broker".into()), true),
        ] {
            let mut rig = on_trial();
            let effects = rig.step(Event::HealthChecked(Err(unhealthy)));
            assert!(!effects.contains(&Effect::Commit), "{effects:?}");
            let memory = remembered(&effects)[0];
            let expected = Some(v("1.1.0"));
            if offline {
                assert_eq!((memory.offline, memory.unhealthy), (expected, None));
            } else {
                assert_eq!((memory.unhealthy, memory.offline), (expected, None));
            }
            assert!(matches!(effects.last(), Some(Effect::RequestReboot(_))));
            assert_eq!(rig.state(), State::Rebooting);
            assert_eq!(rig.step(Event::RebootRequested(Ok(()))), []);
            // Nothing is installed on a slot that is being given up.
            let offer = rig.offer("1.2.0", Urgency::Security, 0);
            assert_eq!(rig.manifest(b"m2", offer.clone()), []);
            assert_eq!(rig.step(Event::InstallNow(Some(offer))).len(), 1);
            assert_eq!(rig.life.phase(), &Phase::Restarting);
        }
    }

    #[test]
    fn a_commit_swupdate_refuses_is_reported_and_the_record_stays() {
        let mut rig = on_trial();
        rig.step(Event::HealthChecked(Ok(())));
        let effects = rig.step(Event::Committed(Err(Failure::Commit("no socket".into()))));
        assert_eq!(effects, []);
        assert_eq!(rig.state(), State::Failed);
        let error = rig.life.status().last_error.clone().unwrap();
        assert!(error.contains("cannot commit the new slot"), "{error}");
    }

    #[test]
    fn after_a_power_cut_the_boot_finishes_a_commit_or_drops_an_install() {
        // Committed in the boot environment, power lost before the record.
        let memory = Memory {
            pending: Some(pending_to(Slot::A, "1.1.0")),
            ..Memory::default()
        };
        let mut rig = Rig::new(memory, true);
        let effects = rig.step(Event::Booted(Ok(UpdateState::Ok)));
        assert_eq!(effects[0], Effect::Confirm(pending_to(Slot::A, "1.1.0")));
        assert_eq!(remembered(&effects)[0].pending, None);

        // Cut while streaming into B: dropped, SWUpdate's state reset.
        let memory = Memory {
            pending: Some(pending_to(Slot::B, "1.1.0")),
            ..Memory::default()
        };
        let mut rig = Rig::new(memory.clone(), true);
        let effects = rig.step(Event::Booted(Ok(UpdateState::InProgress)));
        assert_eq!(remembered(&effects)[0].pending, None);
        assert_eq!(effects.last(), Some(&Effect::ResetBootState));
        // A failed install whose state was already reset: nothing to reset.
        let mut rig = Rig::new(memory, true);
        let effects = rig.step(Event::Booted(Ok(UpdateState::Ok)));
        assert!(!effects.contains(&Effect::ResetBootState));
        assert_eq!(rig.life.phase(), &Phase::Ready);
    }

    #[test]
    fn a_fallback_is_remembered_reported_and_swupdate_reset() {
        let memory = Memory {
            pending: Some(pending_to(Slot::B, "1.1.0")),
            ..Memory::default()
        };
        let mut rig = Rig::new(memory, true);
        // Until the boot state is read, the owner is not told "idle".
        assert_eq!(rig.state(), State::Starting);
        let effects = rig.step(Event::Booted(Ok(UpdateState::Failed)));
        let memory = remembered(&effects)[0];
        assert_eq!(memory.pending, None);
        assert_eq!(memory.unexplained, [v("1.1.0")]);
        assert_eq!(memory.last_result.as_ref().unwrap().outcome, "rolled-back");
        assert_eq!(effects.last(), Some(&Effect::ResetBootState));
        assert_eq!(rig.state(), State::Failed);
        let error = rig.life.status().last_error.clone().unwrap();
        assert!(error.contains("it will try 1.1.0 once more"), "{error}");
    }

    #[test]
    fn swupdate_not_answering_at_boot_is_reported_and_releases_still_install() {
        let mut rig = Rig::new(Memory::default(), true);
        let effects = rig.step(Event::Booted(Err(Failure::BootState("refused".into()))));
        assert_eq!(effects, []);
        assert_eq!(rig.state(), State::Failed);
        let offer = rig.offer("1.1.0", Urgency::Feature, 0);
        assert_eq!(installs(&rig.manifest(b"m", offer)), 1);
    }

    #[test]
    fn an_armed_install_found_at_boot_restarts_after_the_notice() {
        let memory = Memory {
            pending: Some(pending_to(Slot::B, "1.1.0")),
            ..Memory::default()
        };
        let mut rig = Rig::new(memory, true);
        assert_eq!(rig.step(Event::Booted(Ok(UpdateState::Installed))), []);
        assert_eq!(rig.state(), State::Rebooting);
        assert_eq!(rig.life.wake_at(), Some(rig.at(T0 + NOTICE)));
        rig.advance(NOTICE);
        assert!(matches!(
            rig.step(Event::Woken(None)).as_slice(),
            [Effect::RequestReboot(_)]
        ));
    }

    #[test]
    fn a_release_is_stored_as_pending_before_its_install_starts_then_armed_and_restarted() {
        let mut rig = Rig::ready(true);
        let effects = rig.manifest(b"m", rig.offer("1.1.0", Urgency::Feature, 0));
        let install = effects
            .iter()
            .position(|e| matches!(e, Effect::Install { .. }))
            .unwrap();
        let Effect::Remember(memory) = &effects[install - 1] else {
            panic!("the pending install is not stored just before it: {effects:?}");
        };
        assert_eq!(
            memory.pending,
            Some(pending_to(Slot::B, "1.1.0")).map(|p| Installed {
                bytes_streamed: 0,
                ..p
            })
        );
        assert_eq!(rig.state(), State::Downloading);

        assert_eq!(rig.step(Event::Progress(40)), []);
        assert_eq!(
            (rig.state(), rig.life.status().progress),
            (State::Installing, Some(40))
        );
        let effects = rig.step(Event::Installed(Ok(pending_to(Slot::B, "1.1.0"))));
        assert_eq!(
            remembered(&effects)[0].pending,
            Some(pending_to(Slot::B, "1.1.0"))
        );
        assert_eq!(rig.state(), State::Rebooting);
        let announced = t(T0 + NOTICE).to_string();
        assert_eq!(rig.life.status().until.as_deref(), Some(announced.as_str()));
        assert_eq!(rig.life.candidate(), None);
    }

    #[test]
    fn the_restart_notice_runs_to_the_time_the_owner_was_told_whatever_wakes_the_agent() {
        let mut rig = Rig::ready(true);
        rig.manifest(b"m", rig.offer("1.1.0", Urgency::Feature, 0));
        rig.step(Event::Installed(Ok(pending_to(Slot::B, "1.1.0"))));
        let told = rig.life.status().until.clone();
        // The periodic check brings the same manifest back; the owner saves
        // the settings; a postponement; each earlier than the notice.
        rig.advance(10);
        let offer = rig.offer("1.1.0", Urgency::Feature, 0);
        assert_eq!(rig.manifest(b"m", offer.clone()), []);
        rig.advance(10);
        let settings = Event::SettingsChanged {
            automatic: true,
            window: None,
            verdict: Some(offer.clone()),
        };
        assert_eq!(rig.step(settings), []);
        rig.advance(10);
        let postponed = rig.step(Event::Postpone {
            days: 1,
            verdict: Some(offer.clone()),
        });
        assert!(
            matches!(postponed.as_slice(), [Effect::Reply(Err(_))]),
            "{postponed:?}"
        );
        assert_eq!(rig.step(Event::Woken(Some(offer.clone()))), []);
        assert_eq!(rig.life.status().until, told);
        assert_eq!(rig.state(), State::Rebooting);
        rig.advance(NOTICE - 30);
        assert!(matches!(
            rig.step(Event::Woken(Some(offer))).as_slice(),
            [Effect::RequestReboot(_)]
        ));
        assert_eq!(rig.step(Event::RebootRequested(Ok(()))), []);
        assert_eq!(rig.life.phase(), &Phase::Restarting);
    }

    #[test]
    fn a_maintenance_window_delays_the_restart_and_its_notice() {
        let mut rig = Rig::ready(true);
        // T0 is 08:00 UTC; the window opens at 10:00.
        let window = Some(Window {
            start_hour: 10,
            end_hour: 11,
        });
        rig.step(Event::SettingsChanged {
            automatic: true,
            window,
            verdict: None,
        });
        rig.manifest(b"m", rig.offer("1.1.0", Urgency::Feature, 0));
        rig.step(Event::Installed(Ok(pending_to(Slot::B, "1.1.0"))));
        let opens = T0 + 2 * 3600;
        assert_eq!(rig.state(), State::WaitingToReboot);
        assert_eq!(rig.life.wake_at(), Some(rig.at(opens - NOTICE)));
        rig.secs = opens - NOTICE;
        assert_eq!(rig.step(Event::Woken(None)), []);
        assert_eq!(rig.state(), State::Rebooting);
        rig.secs = opens;
        assert!(matches!(
            rig.step(Event::Woken(None)).as_slice(),
            [Effect::RequestReboot(_)]
        ));
    }

    #[test]
    fn a_release_waits_for_the_devices_wave_then_installs() {
        let mut rig = Rig::ready(true);
        // Seed 512 of 1024 over 10 hours: this device starts after 5.
        let effects = rig.manifest(b"m", rig.offer("1.1.0", Urgency::Feature, 10));
        assert_eq!(installs(&effects), 0);
        assert_eq!(rig.state(), State::Available);
        let status = rig.life.status();
        assert_eq!(
            status.waiting.as_deref(),
            Some(policy::Wait::Wave.sentence())
        );
        assert_eq!(rig.life.wake_at(), Some(rig.at(T0 + 5 * 3600)));
        rig.advance(5 * 3600);
        let offer = rig.offer("1.1.0", Urgency::Feature, 10);
        assert_eq!(installs(&rig.step(Event::Woken(Some(offer)))), 1);

        // A security release skips the waves.
        let mut rig = Rig::ready(true);
        let effects = rig.manifest(b"s", rig.offer("1.1.0", Urgency::Security, 10));
        assert_eq!(installs(&effects), 1);
    }

    #[test]
    fn with_automatic_updates_off_the_owner_installs() {
        let mut rig = Rig::ready(false);
        let offer = rig.offer("1.1.0", Urgency::Security, 0);
        assert_eq!(installs(&rig.manifest(b"m", offer.clone())), 0);
        assert_eq!(rig.state(), State::Available);
        let effects = rig.step(Event::InstallNow(Some(offer)));
        assert_eq!(
            effects[0],
            Effect::Reply(Ok(String::new())),
            "answered first"
        );
        assert_eq!(installs(&effects), 1);
        // Asked again while it installs: refused with the reason.
        let again = rig.step(Event::InstallNow(Some(rig.offer(
            "1.1.0",
            Urgency::Security,
            0,
        ))));
        assert_eq!(
            again,
            [Effect::Reply(Err("an update is being installed".into()))]
        );
    }

    #[test]
    fn an_untrusted_clock_holds_the_release_and_looks_again_soon() {
        let mut rig = Rig::ready(true);
        let clock = Refusal::Clock("the device is waiting for its clock to be set".into());
        assert_eq!(rig.manifest(b"m", Err(clock)), []);
        assert_eq!(rig.state(), State::Available);
        assert_eq!(rig.life.wake_at(), Some(rig.at(T0) + CLOCK_POLL));
        assert!(rig.life.candidate().is_some(), "kept for the next look");
        rig.advance(30);
        let offer = rig.offer("1.1.0", Urgency::Feature, 0);
        assert_eq!(installs(&rig.step(Event::Woken(Some(offer)))), 1);
    }

    #[test]
    fn a_refused_manifest_is_reported_and_dropped() {
        let mut rig = Rig::ready(true);
        let refusal = Refusal::Release("update refused before download: bad signature".into());
        assert_eq!(rig.manifest(b"m", Err(refusal)), []);
        assert_eq!(rig.state(), State::Failed);
        assert_eq!(rig.life.candidate(), None);
        assert_eq!(rig.life.wake_at(), None);
    }

    #[test]
    fn the_running_release_offered_again_clears_the_offer() {
        let mut rig = Rig::ready(false);
        rig.manifest(b"m", rig.offer("1.1.0", Urgency::Feature, 0));
        assert_eq!(rig.state(), State::Available);
        assert_eq!(rig.manifest(b"n", Ok(None)), []);
        assert_eq!(rig.state(), State::Idle);
        assert_eq!(rig.life.status().release, None);
    }

    #[test]
    fn a_version_that_failed_its_trial_is_never_installed_again() {
        let memory = Memory {
            refused: vec![v("1.1.0")],
            ..Memory::default()
        };
        let mut rig = Rig::new(memory, true);
        rig.step(Event::Booted(Ok(UpdateState::Ok)));
        let offer = rig.offer("1.1.0", Urgency::Security, 0);
        assert_eq!(installs(&rig.manifest(b"m", offer.clone())), 0);
        assert_eq!(rig.state(), State::Failed);
        let error = rig.life.status().last_error.clone().unwrap();
        assert!(error.contains("failed its trial boot"), "{error}");
        let asked = rig.step(Event::InstallNow(Some(offer)));
        assert!(
            matches!(asked.as_slice(), [Effect::Reply(Err(_))]),
            "{asked:?}"
        );
    }

    #[test]
    fn a_failed_install_is_tried_again_after_an_hour_and_a_new_manifest_at_once() {
        let mut rig = Rig::ready(true);
        rig.manifest(b"m", rig.offer("1.1.0", Urgency::Feature, 0));
        let failure = Failure::Install("chunk 3 does not match the index".into());
        let effects = rig.step(Event::Installed(Err(failure)));
        assert_eq!(remembered(&effects)[0].pending, None);
        assert_eq!(rig.state(), State::Failed);
        assert_eq!(rig.life.wake_at(), Some(rig.at(T0) + RETRY_AFTER));
        // Too early (an owner's settings change wakes it): not yet.
        rig.advance(600);
        let offer = rig.offer("1.1.0", Urgency::Feature, 0);
        let settings = Event::SettingsChanged {
            automatic: true,
            window: None,
            verdict: Some(offer.clone()),
        };
        assert_eq!(installs(&rig.step(settings)), 0);
        rig.advance(3000);
        assert_eq!(installs(&rig.step(Event::Woken(Some(offer)))), 1);

        let mut rig = Rig::ready(true);
        rig.manifest(b"m", rig.offer("1.1.0", Urgency::Feature, 0));
        rig.step(Event::Installed(Err(Failure::Install("cut".into()))));
        let effects = rig.manifest(b"m2", rig.offer("1.1.1", Urgency::Feature, 0));
        assert_eq!(installs(&effects), 1, "a new manifest is tried at once");
    }

    #[test]
    fn postponing_is_bounded_remembered_and_security_fixes_keep_their_limit() {
        let mut rig = Rig::ready(true);
        let offer = rig.offer("1.1.0", Urgency::Feature, 10);
        rig.manifest(b"m", offer.clone());
        let asked = |days| Event::Postpone {
            days,
            verdict: Some(offer.clone()),
        };
        assert_eq!(
            rig.step(asked(0)),
            [Effect::Reply(Err("choose between 1 and 7 days".into()))]
        );
        assert_eq!(rig.step(asked(8)).len(), 1);
        let effects = rig.step(asked(2));
        assert_eq!(
            remembered(&effects)[0].postponed,
            Some((v("1.1.0"), t(T0 + 2 * 86_400)))
        );
        let until = t(T0 + 2 * 86_400);
        assert!(effects.contains(&Effect::Reply(Ok(format!("Postponed until {until}.")))));
        assert_eq!(
            rig.life.status().waiting.as_deref(),
            Some("postponed by the owner")
        );

        let mut rig = Rig::ready(false);
        let offer = rig.offer("1.1.0", Urgency::Security, 0);
        rig.manifest(b"m", offer.clone());
        let effects = rig.step(Event::Postpone {
            days: 7,
            verdict: Some(offer),
        });
        let Some(Effect::Reply(Ok(text))) = effects.iter().find(|e| matches!(e, Effect::Reply(_)))
        else {
            panic!("{effects:?}");
        };
        assert!(text.contains("at the latest 72 hours"), "{text}");
    }

    #[test]
    fn a_reboot_request_that_cannot_be_written_is_reported() {
        let mut rig = on_trial();
        rig.step(Event::HealthChecked(Err(Unhealthy::Local("broken".into()))));
        let failure = Failure::RebootRequest("read-only file system".into());
        assert_eq!(rig.step(Event::RebootRequested(Err(failure))), []);
        assert_eq!(rig.state(), State::Failed);
        let error = rig.life.status().last_error.clone().unwrap();
        assert!(error.contains("restart the device"), "{error}");
        assert_eq!(rig.life.phase(), &Phase::Ready);
    }
}

//! What the owner (dashboard) and the fleet (MQTT status) are told about
//! updates (EN 303 645 5.3-11, 5.3-12). One value, published by the agent
//! through a `watch` channel whenever it changes.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Just started: the boot state the last update left (a trial, a
    /// fallback, a commit to finish) is not read yet. A few seconds at most;
    /// until then "idle" could hide a rollback from the owner.
    Starting,
    /// No release newer than the running one is known.
    Idle,
    /// A release is known and waits: for the owner (automatic updates off),
    /// a rollout wave, a postponement, or a trusted clock.
    Available,
    /// Fetching the release's chunk index and checking it against the
    /// manifest; nothing is written yet (seconds at most).
    Downloading,
    /// Downloading the artifact once, checked chunk by chunk, into SWUpdate
    /// and the other slot.
    Installing,
    /// Installed into the other slot; the reboot is scheduled.
    WaitingToReboot,
    Rebooting,
    /// The new slot runs on trial; the health check is running.
    Checking,
    /// The last attempt failed; see `last_error`.
    Failed,
    /// Updates cannot run on this device (see `last_error`).
    Unavailable,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Idle => "idle",
            State::Available => "available",
            State::Downloading => "downloading",
            State::Installing => "installing",
            State::WaitingToReboot => "waiting-to-reboot",
            State::Rebooting => "rebooting",
            State::Checking => "checking",
            State::Failed => "failed",
            State::Unavailable => "unavailable",
        }
    }
}

/// A release as shown to the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    pub version: String,
    /// True for a security fix (`urgency = "security"`).
    pub security: bool,
    pub release_notes: String,
    pub size: u64,
}

/// The outcome of the last update that reached a reboot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LastResult {
    pub version: String,
    /// `"installed"` (booted, healthy, committed) or `"rolled-back"`.
    pub outcome: String,
    pub time: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateStatus {
    pub state: State,
    pub running_version: String,
    pub running_slot: Option<String>,
    /// The release being offered, downloaded or installed.
    pub release: Option<Release>,
    /// Percent of the download and install, while one runs.
    pub progress: Option<u8>,
    /// Why an available release is not being installed yet.
    pub waiting: Option<String>,
    /// RFC 3339: when the waiting ends, or when the device reboots.
    pub until: Option<String>,
    pub last_error: Option<String>,
    pub last_result: Option<LastResult>,
    pub automatic: bool,
    /// Versions that failed their trial boot here; never retried.
    pub refused_versions: Vec<String>,
}

impl UpdateStatus {
    pub fn starting(running_version: String, automatic: bool) -> UpdateStatus {
        UpdateStatus {
            state: State::Starting,
            running_version,
            running_slot: None,
            release: None,
            progress: None,
            waiting: None,
            until: None,
            last_error: None,
            last_result: None,
            automatic,
            refused_versions: Vec::new(),
        }
    }

    /// One sentence for the dashboard.
    pub fn sentence(&self) -> String {
        let release = self.release.as_ref();
        let version = release.map_or("", |r| r.version.as_str());
        let kind = if release.is_some_and(|r| r.security) {
            "security update"
        } else {
            "update"
        };
        match self.state {
            State::Starting => {
                "Reading what the last update left behind; this takes a few seconds after a start."
                    .to_owned()
            }
            State::Idle if self.automatic => {
                "Your device is up to date. Automatic updates are on.".to_owned()
            }
            State::Idle => "No update is known. Automatic updates are off.".to_owned(),
            State::Available => match &self.waiting {
                Some(why) => format!("The {kind} {version} is available; {why}."),
                None => format!("The {kind} {version} is available."),
            },
            State::Downloading => format!("Preparing to download the {kind} {version}."),
            State::Installing => format!("Downloading and installing the {kind} {version}."),
            State::WaitingToReboot => format!(
                "The {kind} {version} is installed. The device will restart to finish it at {}.",
                self.until.as_deref().unwrap_or("the next allowed time")
            ),
            State::Rebooting => format!(
                "The device restarts at {} to finish the {kind} {version}; it is back in a few minutes.",
                self.until.as_deref().unwrap_or("once")
            ),
            State::Checking => format!("Checking the new software {version} after the restart."),
            State::Failed => format!(
                "The last update did not complete: {}",
                self.last_error.as_deref().unwrap_or("unknown error")
            ),
            State::Unavailable => format!(
                "Updates cannot run: {}",
                self.last_error.as_deref().unwrap_or("unknown error")
            ),
        }
    }
}

//! The device side of a signed install (EN 303 645 5.3-7, 5.3-9, 5.3-10).
//!
//! [`install`] is what the delivery code (issue 6) calls, from
//! `spawn_blocking`, once it holds a manifest and can open the artifact's
//! download:
//!
//! 1. The manifest is checked with `update_manifest::verify` (signature
//!    chain to the root in the read-only image, validity dates, expiry,
//!    model and hardware revision, version above the installed one,
//!    security version at or above the floor, key-ring version at or above
//!    the floor, size cap) **before a single byte of the artifact is read**
//!    and before SWUpdate is contacted. A refusal here leaves both slots and
//!    the boot environment exactly as they were.
//! 2. SWUpdate is told to accept only the manifest's version
//!    (`SET_VERSIONS_RANGE` min = max), so a genuine but *different*
//!    release served with this manifest (mix-and-match) is refused by
//!    SWUpdate when it reads `sw-description`, before it writes anything.
//! 3. The artifact streams through `CheckedReader` (exact size, SHA-256)
//!    into SWUpdate via `swupdate-rs`, into the inactive slot (the
//!    [`Selection`] from the running [`Slot`]). The last [`HELD_BACK`] bytes,
//!    which hold the cpio trailer, are sent only after the whole artifact's
//!    SHA-256 matched, so SWUpdate cannot finish (and arm the boot
//!    environment) with an artifact the manifest does not describe.
//!    SWUpdate checks the CMS signature, hardware compatibility and the
//!    image's SHA-256 again.
//! 4. After any failure once SWUpdate had accepted the request, SWUpdate's
//!    `ustate` is put back (`SET_UPDATE_STATE`), so a failed attempt does
//!    not look like an installed update to the next boot or to suricatta.
//!
//! On success [`install`] returns [`Installed`]: what to persist *after the
//! new slot is confirmed* ([`UpdateRecords::confirm`]), not now. Raising
//! the version and floors at install time would be wrong because the new
//! slot may never run: if it fails its trial boot, GRUB falls back to the
//! old slot, and a record saying "1.5.0 installed" would then make the
//! device refuse 1.5.0 (not newer) and never retry it, while a raised
//! security or key-ring floor would describe a system that is not running
//! and could lock out the vendor's recovery release for the old slot's
//! line. The record describes what runs, confirmed.
//!
//! # Known limitation (docs/update-security.md, "Streaming and the
//! inactive slot")
//!
//! The layer's `sw-description` streams the image (`installed-directly`).
//! A corrupted or substituted artifact is therefore detected at the end of
//! its image, after most of it reached the **inactive** slot. The boot
//! environment is never armed, so the device keeps booting the good slot,
//! but the inactive slot's old contents are gone. Manifest-level refusals
//! (wrong signer, expired, older, lower security version, wrong model,
//! oversized, revoked key) and a tampered `sw-description` write nothing.
//! SWUpdate 2022.12 also leaves `recovery_status=in_progress` or `failed`
//! in the environment (it cannot be reset over IPC; grub.cfg ignores it).

pub mod agent;
pub mod config;
pub mod download;
pub mod policy;
mod record;
mod slot;
pub mod status;

use std::io::{self, Read, Write};

use swupdate_rs::{InstallRequest, SourceType, UpdateState, VersionsRange};
use update_manifest::{
    ArtifactError, CheckedReader, DeviceFacts, KeyId, Rejection, Timestamp, TrustedRoot, Version,
};

pub use agent::Updates;
pub use config::UpdateConfig;
pub use record::{FloorWouldFall, RECORD_NAME, RecordError, UpdateRecord, UpdateRecords};
pub use slot::{Selection, Slot, SlotError};

/// Bytes at the end of the artifact that are sent to SWUpdate only after
/// the whole artifact matched its manifest. They contain the cpio trailer
/// (hearth-release writes it as the last 124 bytes; GNU cpio pads the
/// archive to 512-byte blocks), without which SWUpdate cannot finish.
pub const HELD_BACK: usize = 1024;

/// Size of one read from the artifact (and so of hearthd's buffer).
const CHUNK: usize = 64 * 1024;

/// A release SWUpdate has installed into the inactive slot, not yet
/// confirmed. Persist it (issue 6) to confirm it after the reboot with
/// [`UpdateRecords::confirm`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Installed {
    /// The release version (the installed version once confirmed).
    pub version: Version,
    /// Its security version (the security floor once confirmed).
    pub security_version: u32,
    /// The version of the key ring it carried (the key-ring floor once
    /// confirmed).
    pub keyring_version: u64,
    /// The signing key that signed the manifest.
    pub signed_by: KeyId,
    /// The slot written; SWUpdate's `bootenv` armed it for one trial boot.
    pub target: Slot,
    /// `.swu` bytes streamed into SWUpdate.
    pub bytes_streamed: u64,
}

/// Why a release was not installed. The text is a sentence for the log and
/// for the owner or fleet report.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The manifest failed a check; not one artifact byte was read.
    #[error("update refused before download: {0}")]
    Rejected(#[from] Rejection),
    /// The artifact is not the one the manifest signs (size or SHA-256).
    #[error(
        "update {version} refused: the downloaded artifact does not match its signed manifest ({source}); \
         the boot environment was not changed. Download it again; if it keeps failing, report it to the vendor"
    )]
    Artifact {
        /// The release.
        version: Version,
        /// What differed.
        source: ArtifactError,
    },
    /// Reading the artifact failed (download error).
    #[error(
        "update {version} stopped: reading the artifact failed ({source}); the boot environment was not changed. Try again"
    )]
    Read {
        /// The release.
        version: Version,
        /// The read error.
        source: io::Error,
    },
    /// SWUpdate could not be asked (not running, busy, selection refused).
    #[error(
        "update {version} not started: SWUpdate did not accept the request ({source}); nothing was written. \
         Check that swupdate runs and lists -q {selection}"
    )]
    Start {
        /// The release.
        version: Version,
        /// The selection asked for.
        selection: String,
        /// SWUpdate's answer.
        source: swupdate_rs::Error,
    },
    /// SWUpdate refused or failed the installation.
    #[error(
        "update {version} refused by SWUpdate ({source}); the boot environment was not changed"
    )]
    Swupdate {
        /// The release.
        version: Version,
        /// SWUpdate's verdict with its error lines.
        source: swupdate_rs::Error,
    },
    /// SWUpdate reported success for an artifact that then failed the
    /// manifest check. Only possible for an archive with data after its
    /// cpio trailer; the slot is armed and must be disarmed by hand.
    #[error(
        "update {version}: SWUpdate installed an artifact that does not match its signed manifest ({source}); \
         slot {target} is armed. Do not reboot; reset the boot environment and report this"
    )]
    InstalledMismatch {
        /// The release.
        version: Version,
        /// The slot written.
        target: Slot,
        /// What differed.
        source: ArtifactError,
    },
}

impl UpdateError {
    /// True when the release was refused before anything reached SWUpdate
    /// (so neither slot can have been written).
    pub fn nothing_written(&self) -> bool {
        matches!(self, UpdateError::Rejected(_) | UpdateError::Start { .. })
    }
}

/// Verifies `manifest_bytes`, then streams `artifact` into SWUpdate with
/// `selection` (normally [`Selection::inactive`] of the running slot).
///
/// `facts` come from the [`UpdateRecord`] and `/etc/hwrevision`
/// ([`UpdateRecord::device_facts`]); `now` from a clock the device trusts.
/// Blocking: call it from `spawn_blocking`. See the module documentation
/// for the order of checks and what is persisted when.
pub fn install(
    manifest_bytes: &[u8],
    artifact: impl Read,
    root: &TrustedRoot,
    facts: &DeviceFacts,
    now: Timestamp,
    client: &swupdate_rs::Client,
    selection: &Selection,
) -> Result<Installed, UpdateError> {
    let result = install_inner(
        manifest_bytes,
        artifact,
        root,
        facts,
        now,
        client,
        selection,
    );
    match &result {
        Ok(done) => tracing::info!(
            version = %done.version,
            slot = %done.target,
            bytes = done.bytes_streamed,
            "update installed; the new slot is armed for one trial boot"
        ),
        Err(error) => tracing::warn!(%error, "update not installed"),
    }
    result
}

fn install_inner(
    manifest_bytes: &[u8],
    artifact: impl Read,
    root: &TrustedRoot,
    facts: &DeviceFacts,
    now: Timestamp,
    client: &swupdate_rs::Client,
    selection: &Selection,
) -> Result<Installed, UpdateError> {
    // 1. Nothing is read from the artifact until the manifest passed.
    let release = update_manifest::verify(manifest_bytes, root, facts, now)?;
    let version = release.version();
    let start_err = |source| UpdateError::Start {
        version,
        selection: selection.to_string(),
        source,
    };

    // 2. SWUpdate accepts only the version the manifest signs.
    client
        .set_versions_range(&VersionsRange {
            minimum: version.to_string(),
            maximum: version.to_string(),
            current: facts.installed_version.to_string(),
        })
        .map_err(start_err)?;
    let state_before = client.get_update_state().map_err(start_err)?;
    let mut installer = client
        .start_install(&InstallRequest {
            source: SourceType::Downloader,
            info: format!("hearth {version}"),
            software_set: selection.software_set.clone(),
            running_mode: selection.running_mode.clone(),
            len: usize::try_from(release.manifest().artifact.size).unwrap_or(0),
            ..InstallRequest::default()
        })
        .map_err(start_err)?;

    // 3. Stream, holding back the tail until the digest matched.
    let mut reader = CheckedReader::new(artifact, release.artifact_checker());
    let mut buf = vec![0u8; CHUNK + HELD_BACK];
    let mut held = 0usize; // bytes at the start of buf not yet sent
    let streamed = loop {
        let n = match reader.read(&mut buf[held..]) {
            Ok(0) => {
                // The whole artifact matched the manifest: release the tail.
                break installer.write_all(&buf[..held]);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Closing without the tail makes SWUpdate fail the install.
                let verdict = installer.finish();
                reset_update_state(client, state_before);
                return Err(match (artifact_error(e), verdict) {
                    (Ok(source), Ok(_)) => UpdateError::InstalledMismatch {
                        version,
                        target: selection.target,
                        source,
                    },
                    (Ok(source), Err(_)) => UpdateError::Artifact { version, source },
                    (Err(source), _) => UpdateError::Read { version, source },
                });
            }
        };
        held += n;
        if held > HELD_BACK {
            let send = held - HELD_BACK;
            if let Err(e) = installer.write_all(&buf[..send]) {
                break Err(e);
            }
            buf.copy_within(send..held, 0);
            held = HELD_BACK;
        }
    };

    let sent = installer.bytes_written();
    let verdict = installer.finish();
    match (streamed, verdict) {
        (Ok(()), Ok(report)) => Ok(Installed {
            version,
            security_version: release.security_version(),
            keyring_version: release.keyring_version(),
            signed_by: release.signed_by(),
            target: selection.target,
            bytes_streamed: report.bytes_written,
        }),
        (Err(_), Ok(_)) => {
            // SWUpdate stopped reading and reports success: it found the
            // cpio trailer before the held-back tail, so the archive has
            // data after it. Check the rest against the manifest anyway.
            match io::copy(&mut reader, &mut io::sink()) {
                Ok(_) => Ok(Installed {
                    version,
                    security_version: release.security_version(),
                    keyring_version: release.keyring_version(),
                    signed_by: release.signed_by(),
                    target: selection.target,
                    bytes_streamed: sent,
                }),
                Err(e) => Err(match artifact_error(e) {
                    Ok(source) => UpdateError::InstalledMismatch {
                        version,
                        target: selection.target,
                        source,
                    },
                    Err(source) => UpdateError::Read { version, source },
                }),
            }
        }
        (_, Err(source)) => {
            reset_update_state(client, state_before);
            Err(UpdateError::Swupdate { version, source })
        }
    }
}

/// The `ArtifactError` inside a `CheckedReader` error, or the I/O error.
fn artifact_error(e: io::Error) -> Result<ArtifactError, io::Error> {
    let is_artifact = e
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<ArtifactError>().is_some());
    if !is_artifact {
        return Err(e);
    }
    match e
        .into_inner()
        .map(|inner| inner.downcast::<ArtifactError>())
    {
        Some(Ok(a)) => Ok(*a),
        _ => Err(io::Error::other("artifact check failed")),
    }
}

/// Puts SWUpdate's `ustate` back after a failed attempt: to what it was
/// (a pending "failed" report from a fallback stays for issue 6 to send),
/// otherwise to OK, since the running system is unchanged.
fn reset_update_state(client: &swupdate_rs::Client, before: UpdateState) {
    let state = match before {
        UpdateState::Ok | UpdateState::Failed => before,
        _ => UpdateState::Ok,
    };
    if let Err(error) = client.set_update_state(state) {
        tracing::warn!(%error, "cannot reset SWUpdate's update state after a failed install");
    }
}

/// The running firmware version: `IMAGE_VERSION` in the image's os-release
/// (the image build writes it; it is the version releases are compared
/// with), or hearthd's own version where there is none (host mode).
pub fn running_version(os_release: &std::path::Path) -> String {
    std::fs::read_to_string(os_release)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let value = line.strip_prefix("IMAGE_VERSION=")?;
                Some(value.trim().trim_matches(['"', '\'']).to_owned())
            })
        })
        .filter(|v| v.parse::<Version>().is_ok())
        .unwrap_or_else(|| crate::FIRMWARE_VERSION.to_owned())
}

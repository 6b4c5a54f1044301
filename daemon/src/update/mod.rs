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
//! 3. The artifact's chunk index is fetched (at most the length the
//!    manifest pins) and must have the SHA-256 the manifest signs
//!    ([`ChunkIndex`]: the SHA-256 of the artifact up to the end of each
//!    256 KiB chunk, the last being the whole artifact's).
//! 4. The artifact is downloaded once and streamed through
//!    [`ChunkIndex::verified`] into SWUpdate via `swupdate-rs`, into the
//!    inactive slot (the [`Selection`] from the running [`Slot`]). Each
//!    chunk is handed on only after it matched the index, so SWUpdate sees
//!    only bytes of the signed artifact; the first chunk is checked before
//!    SWUpdate is even asked, so an artifact that is wrong from its start
//!    (another release, a tampered `sw-description`) leaves both slots
//!    untouched. The last chunk's check is the whole artifact's length and
//!    SHA-256: one running SHA-256 does both.
//!    SWUpdate checks the CMS signature, hardware compatibility and the
//!    image's SHA-256 again.
//! 5. After any failure once SWUpdate had accepted the request, SWUpdate's
//!    `ustate` is put back (`SET_UPDATE_STATE`), so a failed attempt does
//!    not look like an installed update to the next boot or to suricatta.
//!
//! A **delta release** (the manifest's `delta`, and a running slot hearthd
//! can read: [`Device::running_slot`]) replaces steps 3 and 4: the delta
//! index the manifest pins is fetched and checked, the running slot is
//! scanned for the new image's blocks, and the delta `.swu` is rebuilt from
//! them and from the pack segments the slot lacks (`Range` requests), each
//! block checked against the index before it goes on, each fetched segment
//! before it is decompressed (`update_manifest::delta`). Steps 2 and 5 are
//! the same. A slot that cannot be read means the full release instead.
//!
//! Memory stays flat (one chunk, plus the index: 32 bytes per chunk; a
//! delta's index holds 32 bytes per 4 KiB block) and nothing is stored.
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
//! A download that breaks off during the stream (step 4) is resumed with
//! `Range` where it stopped (the download side does that; the chunk in
//! progress is checked once complete). A chunk that does not match, and a
//! power cut, leave the chunks checked so far in the inactive slot, never
//! armed. SWUpdate 2022.12 also leaves `recovery_status=in_progress` or
//! `failed` in the environment (it cannot be reset over IPC; grub.cfg
//! ignores it).

pub mod agent;
pub mod config;
pub mod download;
pub mod lifecycle;
pub mod policy;
mod record;
mod slot;
pub mod status;

use std::io::{self, BufRead, Read, Write};

use swupdate_rs::{InstallRequest, SourceType, UpdateState, VersionsRange};
use update_manifest::{
    ArtifactError, ChunkIndex, DeviceFacts, KeyId, Rejection, Timestamp, TrustedRoot, Version,
};

pub use agent::Updates;
pub use config::UpdateConfig;
pub use record::{FloorWouldFall, RECORD_NAME, RecordError, UpdateRecord, UpdateRecords};
pub use slot::{Selection, Slot, SlotError};

/// How much of the artifact is checked before SWUpdate is asked to install
/// (the chunk index's first chunk, whatever its length, comes with it), and
/// the buffer of a delta release's stream.
const CHUNK: usize = 64 * 1024;

/// Where an image built to trust the development keys says so (installed
/// by the layer only when `HEARTH_ALLOW_DEV_KEYS = "1"`).
pub const DEVELOPMENT_KEYS_MARKER: &str = "/etc/hearth/development-keys";

/// Which file of a release [`install`] asks `open` for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The chunk index: small, read whole and checked against the manifest.
    Index,
    /// The artifact: streamed into SWUpdate, chunk by chunk as checked.
    Artifact,
    /// The delta index (a delta release): small, read whole and checked
    /// against the manifest.
    DeltaIndex,
    /// `len` bytes of the delta release's pack from `offset` (an HTTP
    /// `Range` request): segments the running slot does not hold.
    Pack {
        /// Where in the pack.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
}

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
    /// The chunk index, or the artifact's first chunk, is not what the
    /// manifest signs.
    #[error(
        "update {version} refused: the download does not match its signed manifest ({source}); \
         nothing was written. Download it again; if it keeps failing, report it to the vendor"
    )]
    Artifact {
        /// The release.
        version: Version,
        /// What differed.
        source: ArtifactError,
    },
    /// Downloading the index or the artifact's first chunk failed.
    #[error(
        "update {version} stopped: the download failed ({source}); nothing was written. Try again"
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
    /// The download failed or a chunk did not match the index, while
    /// SWUpdate was writing the inactive slot.
    #[error(
        "update {version} stopped while installing: {source}; slot {target} holds the chunks checked so far \
         and the boot environment was not changed. Try again"
    )]
    Interrupted {
        /// The release.
        version: Version,
        /// The slot being written.
        target: Slot,
        /// The read error, or the [`ArtifactError`] inside it.
        source: io::Error,
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
}

impl UpdateError {
    /// True when the release was refused before anything reached SWUpdate
    /// (so neither slot can have been written).
    pub fn nothing_written(&self) -> bool {
        matches!(
            self,
            UpdateError::Rejected(_)
                | UpdateError::Artifact { .. }
                | UpdateError::Read { .. }
                | UpdateError::Start { .. }
        )
    }
}

/// Verifies `manifest_bytes`, checks the chunk index from
/// `open(Part::Index)` against it, then streams `open(Part::Artifact)` into
/// SWUpdate with `selection` (normally [`Selection::inactive`] of the
/// running slot), each chunk as checked.
///
/// `facts` come from the [`UpdateRecord`] and `/etc/hwrevision`
/// ([`UpdateRecord::device_facts`]); `now` from a clock the device trusts.
/// Blocking: call it from `spawn_blocking`. See the module documentation
/// for the order of checks and what is persisted when.
pub fn install<R: Read + Send + 'static>(
    manifest_bytes: &[u8],
    open: impl FnMut(Part) -> io::Result<R>,
    device: &Device<'_>,
    now: Timestamp,
    client: &swupdate_rs::Client,
    selection: &Selection,
) -> Result<Installed, UpdateError> {
    let result = install_inner(manifest_bytes, open, device, now, client, selection);
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

/// What [`install`] checks a release against and installs it over.
#[derive(Debug, Clone, Copy)]
pub struct Device<'a> {
    /// The release root in the read-only image.
    pub root: &'a TrustedRoot,
    /// Model, hardware revision, installed version and floors.
    pub facts: &'a DeviceFacts,
    /// The running slot's block device, whose blocks a delta release
    /// reuses; `None` downloads every release whole.
    pub running_slot: Option<&'a std::path::Path>,
}

fn install_inner<R: Read + Send + 'static>(
    manifest_bytes: &[u8],
    mut open: impl FnMut(Part) -> io::Result<R>,
    device: &Device<'_>,
    now: Timestamp,
    client: &swupdate_rs::Client,
    selection: &Selection,
) -> Result<Installed, UpdateError> {
    // 1. Nothing is fetched until the manifest passed.
    let release = update_manifest::verify(manifest_bytes, device.root, device.facts, now)?;
    let version = release.version();
    let refused = |e: io::Error| match ArtifactError::from_io(e) {
        Ok(source) => UpdateError::Artifact { version, source },
        Err(source) => UpdateError::Read { version, source },
    };
    let read_pinned = |part: io::Result<R>, pinned: u64| -> Result<Vec<u8>, UpdateError> {
        let mut bytes = Vec::new();
        part.and_then(|r| r.take(pinned.saturating_add(1)).read_to_end(&mut bytes))
            .map_err(refused)?;
        Ok(bytes)
    };

    // A delta release: the delta index the manifest signs, then the running
    // slot scanned for the blocks it lists.
    if let (Some(slot_path), Some(delta)) = (device.running_slot, &release.manifest().delta) {
        let index = {
            let bytes = read_pinned(open(Part::DeltaIndex), delta.size)?;
            update_manifest::DeltaIndex::from_signed(&bytes, delta)
                .map_err(|source| UpdateError::Artifact { version, source })?
        };
        match scan_slot(slot_path, &index) {
            Ok((slot, located)) => {
                tracing::info!(
                    slot = %slot_path.display(),
                    found = located.found(),
                    scanned = located.scanned(),
                    "delta update: the running slot holds these blocks of the new release"
                );
                let pack = move |offset, len| {
                    open(Part::Pack { offset, len }).map(|r| Box::new(r) as Box<dyn Read + Send>)
                };
                let mut reader = update_manifest::DeltaReader::new(&index, located, slot, pack);
                let installed = stream(
                    &release,
                    io::BufReader::with_capacity(CHUNK, &mut reader),
                    index.swu_len(),
                    device.facts,
                    client,
                    selection,
                );
                let counts = reader.counts();
                tracing::info!(
                    reused_blocks = counts.reused_blocks,
                    zero_blocks = counts.zero_blocks,
                    fetched_segments = counts.fetched_segments,
                    fetched_bytes = counts.fetched_bytes,
                    pack_bytes = index.pack_len(),
                    "delta update: what was reused and fetched"
                );
                return installed;
            }
            Err(error) => tracing::warn!(
                slot = %slot_path.display(),
                %error,
                "cannot read the running slot for a delta update; downloading the whole release instead"
            ),
        }
    }

    // 3. The chunk index the manifest signs (never more than its length).
    let index: ChunkIndex = {
        let bytes = read_pinned(open(Part::Index), release.manifest().artifact.index.size)?;
        release
            .chunk_index(&bytes)
            .map_err(|source| UpdateError::Artifact { version, source })?
    };

    // 4. The one download, checked chunk by chunk (the last check is the
    //    whole artifact's SHA-256).
    let artifact = open(Part::Artifact).map_err(refused)?;
    let reader = index.verified(artifact);
    stream(
        &release,
        reader,
        index.artifact_len(),
        device.facts,
        client,
        selection,
    )
}

/// Opens the running slot and finds the blocks of the new image it holds.
fn scan_slot(
    path: &std::path::Path,
    index: &update_manifest::DeltaIndex,
) -> io::Result<(std::fs::File, update_manifest::delta::Located)> {
    let mut slot = std::fs::File::open(path)?;
    let located = index.locate(&mut io::BufReader::with_capacity(1 << 20, &mut slot))?;
    Ok((slot, located))
}

/// Streams `reader` (`len` checked bytes of a signed `.swu`) into SWUpdate:
/// its first chunk before SWUpdate hears of the install, and SWUpdate
/// held to the manifest's version.
fn stream(
    release: &update_manifest::VerifiedRelease,
    mut reader: impl BufRead,
    len: u64,
    facts: &DeviceFacts,
    client: &swupdate_rs::Client,
    selection: &Selection,
) -> Result<Installed, UpdateError> {
    let version = release.version();
    let refused = |e: io::Error| match ArtifactError::from_io(e) {
        Ok(source) => UpdateError::Artifact { version, source },
        Err(source) => UpdateError::Read { version, source },
    };
    let mut first = Vec::with_capacity(CHUNK);
    (&mut reader)
        .take(CHUNK as u64)
        .read_to_end(&mut first)
        .map_err(refused)?;

    // 2. SWUpdate accepts only the version the manifest signs.
    let start_err = |source| UpdateError::Start {
        version,
        selection: selection.to_string(),
        source,
    };
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
            len: usize::try_from(len).unwrap_or(0),
            ..InstallRequest::default()
        })
        .map_err(start_err)?;

    // Only checked bytes reach SWUpdate.
    let streamed = installer
        .write_all(&first)
        .map_err(|_| Stopped::Writing)
        .and_then(|()| copy_into(&mut reader, &mut installer));
    let verdict = installer.finish();
    match (streamed, verdict) {
        (_, Ok(report)) => Ok(Installed {
            // Every byte SWUpdate read was checked, so whatever made it
            // stop reading, what it installed is the signed release.
            version,
            security_version: release.security_version(),
            keyring_version: release.keyring_version(),
            signed_by: release.signed_by(),
            target: selection.target,
            bytes_streamed: report.bytes_written,
        }),
        (Err(Stopped::Reading(source)), Err(_)) => {
            reset_update_state(client, state_before);
            Err(UpdateError::Interrupted {
                version,
                target: selection.target,
                source,
            })
        }
        (_, Err(source)) => {
            reset_update_state(client, state_before);
            Err(UpdateError::Swupdate { version, source })
        }
    }
}

/// Why the copy into SWUpdate ended early.
enum Stopped {
    /// The artifact's read failed or differed from the check.
    Reading(io::Error),
    /// SWUpdate stopped taking bytes (its verdict says why).
    Writing,
}

fn copy_into(from: &mut impl BufRead, to: &mut impl Write) -> Result<(), Stopped> {
    loop {
        let checked = match from.fill_buf() {
            Ok([]) => return Ok(()),
            Ok(checked) => checked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Stopped::Reading(e)),
        };
        let n = checked.len();
        to.write_all(checked).map_err(|_| Stopped::Writing)?;
        from.consume(n);
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

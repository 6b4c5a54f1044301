//! The running version and the floor it sets.
//!
//! SWUpdate 2022.12 compares versions in two ways (`core/util.c`,
//! `compare_versions`): as numbers when both are one to four dot-separated
//! decimal parts of at most 16 bits each (`version_to_number`), otherwise as
//! semantic versions. For the `MAJOR.MINOR.PATCH` versions Hearth uses the
//! two agree. The gate keeps a client's minimum only when it is in the
//! numeric form and the running version is too, so the gate and SWUpdate
//! cannot disagree on which of two versions is older; in every other case the
//! minimum becomes the running version itself, which SWUpdate compares the
//! way it compares `-N`.

use std::cmp::Ordering;
use std::fmt;
use std::path::Path;

/// The longest version SWUpdate's `char[256]` fields hold (with the NUL).
const MAX_LEN: usize = 255;

/// The version of the running system, read once from the read-only root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningVersion(String);

/// Why the running version cannot be used: the gate does not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionError(String);

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for VersionError {}

impl RunningVersion {
    /// A version as it is written in os-release: printable ASCII without
    /// spaces or quotes, at most 255 bytes.
    pub fn new(version: &str) -> Result<RunningVersion, VersionError> {
        let ok = !version.is_empty()
            && version.len() <= MAX_LEN
            && version
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\'));
        if ok {
            Ok(RunningVersion(version.to_owned()))
        } else {
            Err(VersionError(format!(
                "{version:?} is not a version SWUpdate can compare with \
                 (printable ASCII, no quotes, 1 to {MAX_LEN} bytes)"
            )))
        }
    }

    /// `IMAGE_VERSION` from an os-release file (the image build writes it;
    /// hearthd reads the same key). A missing file or key is an error: the
    /// gate fails closed rather than guess a floor.
    pub fn from_os_release(path: &Path) -> Result<RunningVersion, VersionError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| VersionError(format!("cannot read {}: {e}", path.display())))?;
        let value = text
            .lines()
            .find_map(|line| line.strip_prefix("IMAGE_VERSION="))
            .ok_or_else(|| VersionError(format!("{} has no IMAGE_VERSION", path.display())))?;
        RunningVersion::new(value.trim().trim_matches(['"', '\'']))
            .map_err(|e| VersionError(format!("IMAGE_VERSION in {}: {e}", path.display())))
    }

    /// The version text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The minimum to send to SWUpdate for a client's `minimum`: the
    /// client's when it is at least the running version, else the running
    /// version. Never lower than the running version, whatever the input.
    pub fn floor(&self, requested: &str) -> String {
        match (numeric(requested), numeric(&self.0)) {
            (Some(req), Some(run)) if req.cmp(&run) != Ordering::Less => requested.to_owned(),
            _ => self.0.clone(),
        }
    }
}

impl fmt::Display for RunningVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SWUpdate's numeric form: 1 to 4 dot-separated decimal parts, each at most
/// 65535; missing parts count as 0. `None` for anything else.
fn numeric(version: &str) -> Option<[u16; 4]> {
    let mut parts = [0u16; 4];
    for (n, part) in version.split('.').enumerate() {
        if n == 4 || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        parts[n] = part.parse().ok()?;
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_minimum_below_the_running_version_becomes_the_running_version() {
        let running = RunningVersion::new("1.2.0").unwrap();
        assert_eq!(running.floor("0.0.0"), "1.2.0");
        assert_eq!(running.floor("1.1.9"), "1.2.0");
        assert_eq!(running.floor("1.1.65535"), "1.2.0");
        assert_eq!(running.floor(""), "1.2.0");
    }

    #[test]
    fn a_minimum_at_or_above_the_running_version_is_kept() {
        let running = RunningVersion::new("1.2.0").unwrap();
        assert_eq!(running.floor("1.2.0"), "1.2.0");
        assert_eq!(running.floor("1.2"), "1.2");
        assert_eq!(running.floor("1.10.0"), "1.10.0");
        assert_eq!(running.floor("2.0.0.1"), "2.0.0.1");
    }

    #[test]
    fn anything_the_gate_cannot_order_like_swupdate_becomes_the_running_version() {
        let running = RunningVersion::new("1.2.0").unwrap();
        for odd in [
            "9.0.0-rc1",
            "v9.0.0",
            "9..0",
            "9.0.0.0.0",
            "99999.0.0",
            "9.0.0 ",
            "-1.0.0",
            "9.0.0+build",
            "\u{0660}.0.0",
        ] {
            assert_eq!(running.floor(odd), "1.2.0", "{odd:?}");
        }
        // A running version SWUpdate compares as a semantic version: the
        // floor is always the running version itself.
        let pre = RunningVersion::new("2.0.0-rc1").unwrap();
        assert_eq!(pre.floor("3.0.0"), "2.0.0-rc1");
    }

    #[test]
    fn the_running_version_comes_from_image_version_and_must_be_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("os-release");
        std::fs::write(&path, "NAME=Hearth\nIMAGE_VERSION=\"0.3.1\"\n").unwrap();
        assert_eq!(
            RunningVersion::from_os_release(&path).unwrap().as_str(),
            "0.3.1"
        );
        std::fs::write(&path, "NAME=Hearth\n").unwrap();
        let err = RunningVersion::from_os_release(&path).unwrap_err();
        assert!(err.to_string().contains("no IMAGE_VERSION"), "{err}");
        std::fs::write(&path, "IMAGE_VERSION=\n").unwrap();
        assert!(RunningVersion::from_os_release(&path).is_err());
        let err = RunningVersion::from_os_release(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}

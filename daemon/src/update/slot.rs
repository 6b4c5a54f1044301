//! Which slot runs, and the SWUpdate selection that writes the other one.
//!
//! The boot scripts put `hearth.slot=A` or `hearth.slot=B` on the kernel
//! command line (docs/boot.md); the layer's `sw-description` template has
//! one collection, `stable`, whose `copy1` writes slot A and `copy2` slot B.

use std::fmt;
use std::path::Path;

/// One of the two root file system slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Slot {
    /// Partition `hearth-a`, written by `stable,copy1`.
    A,
    /// Partition `hearth-b`, written by `stable,copy2`.
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The running slot named by `hearth.slot=` in a kernel command line.
    /// Anything else (missing, repeated with different values, another
    /// letter) is `None`: better no update than one into the running slot.
    pub fn from_cmdline(cmdline: &str) -> Option<Slot> {
        let mut found = None;
        for word in cmdline.split_whitespace() {
            if let Some(value) = word.strip_prefix("hearth.slot=") {
                let slot = match value {
                    "A" => Slot::A,
                    "B" => Slot::B,
                    _ => return None,
                };
                if found.is_some_and(|f| f != slot) {
                    return None;
                }
                found = Some(slot);
            }
        }
        found
    }

    /// The running slot, read from a kernel command line file
    /// (`/proc/cmdline` on the device; another file in tests).
    pub fn running(cmdline_file: &Path) -> Result<Slot, SlotError> {
        let text = std::fs::read_to_string(cmdline_file).map_err(|source| SlotError::Read {
            path: cmdline_file.display().to_string(),
            source,
        })?;
        Slot::from_cmdline(&text).ok_or_else(|| SlotError::Unknown {
            path: cmdline_file.display().to_string(),
        })
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

/// The block device the root file system is mounted from (the running
/// slot: its blocks are what a delta release reuses), found among the
/// device nodes under `dev`. hearthd's unit shows it only the two slots,
/// bound in read-only with read-only device access; elsewhere the first
/// node found is taken. Symbolic links are not followed.
pub fn root_device(dev: &Path) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/").ok()?.dev();
    find_block_device(dev, root, 3)
}

fn find_block_device(dir: &Path, rdev: u64, depth: u32) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_block_device() && meta.rdev() == rdev {
            return Some(path);
        }
        if meta.is_dir()
            && depth > 0
            && let Some(found) = find_block_device(&path, rdev, depth - 1)
        {
            return Some(found);
        }
    }
    None
}

/// The running slot could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// The command line could not be read.
    #[error("cannot read the kernel command line {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// No (or a contradictory) `hearth.slot=`.
    #[error(
        "the kernel command line {path} does not name the running slot (hearth.slot=A or hearth.slot=B); \
         updates are refused so the running slot is never overwritten. Check the boot loader's grub.cfg"
    )]
    Unknown {
        /// The file.
        path: String,
    },
}

/// An SWUpdate software selection (`software_set,running_mode`), sent with
/// the install request. SWUpdate accepts it only if it is listed with
/// `-q` on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The collection: `stable`.
    pub software_set: String,
    /// The copy: `copy1` (writes slot A) or `copy2` (writes slot B).
    pub running_mode: String,
    /// The slot it writes.
    pub target: Slot,
}

impl Selection {
    /// The selection that writes `target`.
    pub fn writing(target: Slot) -> Selection {
        Selection {
            software_set: "stable".into(),
            running_mode: match target {
                Slot::A => "copy1",
                Slot::B => "copy2",
            }
            .into(),
            target,
        }
    }

    /// The selection that writes the slot that is not `running`.
    pub fn inactive(running: Slot) -> Selection {
        Selection::writing(running.other())
    }
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.software_set, self.running_mode)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_running_slot_from_the_command_line() {
        let line = "BOOT_IMAGE=/boot/vmlinuz root=PARTLABEL=hearth-b ro hearth.slot=B quiet\n";
        assert_eq!(Slot::from_cmdline(line), Some(Slot::B));
        assert_eq!(Slot::from_cmdline("hearth.slot=A"), Some(Slot::A));
        for bad in [
            "",
            "root=/dev/vda2",
            "hearth.slot=C",
            "hearth.slot=",
            "hearth.slot=a",
            "hearth.slot=A hearth.slot=B",
            "xhearth.slot=A",
        ] {
            assert_eq!(Slot::from_cmdline(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_selection_writes_the_slot_not_running() {
        assert_eq!(Selection::inactive(Slot::A).to_string(), "stable,copy2");
        assert_eq!(Selection::inactive(Slot::A).target, Slot::B);
        assert_eq!(Selection::inactive(Slot::B).to_string(), "stable,copy1");
        assert_eq!(Selection::inactive(Slot::B).target, Slot::A);
    }

    #[test]
    fn an_unreadable_or_silent_command_line_is_an_error_that_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Slot::running(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        let file = dir.path().join("cmdline");
        std::fs::write(&file, "root=/dev/vda2 ro\n").unwrap();
        let silent = Slot::running(&file).unwrap_err();
        assert!(silent.to_string().contains("hearth.slot=A"), "{silent}");
        std::fs::write(&file, "root=/dev/vda2 hearth.slot=A\n").unwrap();
        assert_eq!(Slot::running(&file).unwrap(), Slot::A);
    }
}

//! The real Debian `swupdate` (2022.12) in isolation, from the shared
//! `swupdate-testkit` crate: a private mount namespace with its own /tmp
//! and /boot, file-backed slots, a GRUB environment file, with the trust
//! certificate and the board/revision chosen by the test.

use std::path::Path;

pub use swupdate_testkit::{Daemon, SLOT_FILL};

/// One isolated swupdate daemon as `board:revision`, trusting
/// `trust_cert`, on slot A (`-e stable,copy2`: it writes slot B).
pub fn start(trust_cert: &Path, board: &str, revision: &str, slot_size: usize) -> Daemon {
    Daemon::builder(trust_cert)
        .hardware(board, revision)
        .slot_size(slot_size)
        .temp_dir(env!("CARGO_TARGET_TMPDIR"))
        .prefix("hearth-release-swupdate-")
        .start()
}

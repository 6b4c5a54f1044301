//! Audit image only: what a compromised hearthd could ask of SWUpdate.
//!
//! `hearth-downgrade-attempt OLDER.swu`, run as user `hearth` inside the
//! audit image (its probe does; qemu/audit-overlay), tries the two ways a
//! daemon with code execution would go about installing an older, properly
//! signed release:
//! 1. `direct`: SWUpdate's own control socket (`/run/swupdate`), which is for
//!    the update gate alone;
//! 2. `gate`: through hearth-update-gate, first asking for every version from
//!    0.0.0 (SET_VERSIONS_RANGE), then installing OLDER.swu into the inactive
//!    slot.
//!
//! Prints one line per step, `<step>: refused: <why>` or `<step>: ACCEPTED`;
//! the conformance suite (tests/conformance/audit.rs) reads them from the
//! console. Exits 0 whatever happened: the lines are the result.

#![allow(clippy::print_stdout)]

use std::fs::File;

use swupdate_rs::{Client, ClientConfig, InstallRequest, SourceType, VersionsRange};

fn main() {
    let Some(swu) = std::env::args().nth(1) else {
        eprintln!("usage: hearth-downgrade-attempt OLDER.swu");
        std::process::exit(2);
    };

    let direct = Client::new(ClientConfig::in_dir("/run/swupdate"));
    match direct.get_status() {
        Ok(status) => println!("direct: ACCEPTED (SWUpdate answered GET_STATUS: {status:?})"),
        Err(e) => println!("direct: refused: {e}"),
    }

    let gate = Client::new(ClientConfig::in_dir("/run/hearth-update-gate"));
    let everything = VersionsRange {
        minimum: "0.0.0".into(),
        maximum: String::new(),
        current: String::new(),
    };
    match gate.set_versions_range(&everything) {
        Ok(()) => println!("range: acknowledged (minimum 0.0.0 asked for)"),
        Err(e) => println!("range: refused: {e}"),
    }
    let request = InstallRequest {
        source: SourceType::Local,
        info: "hearth-downgrade-attempt".into(),
        software_set: "stable".into(),
        running_mode: inactive_copy(),
        ..InstallRequest::default()
    };
    let result = File::open(&swu)
        .map_err(|e| format!("cannot open {swu}: {e}"))
        .and_then(|image| gate.install(&request, image).map_err(|e| e.to_string()));
    match result {
        Ok(report) => println!("gate: ACCEPTED ({} bytes written)", report.bytes_written),
        Err(e) => println!("gate: refused: {}", e.replace('\n', " ")),
    }
}

/// SWUpdate's copy for the slot that is not running (hearth.slot= on the
/// kernel command line; copy1 writes slot A, copy2 slot B).
fn inactive_copy() -> String {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if cmdline.split_whitespace().any(|w| w == "hearth.slot=B") {
        "copy1".into()
    } else {
        "copy2".into()
    }
}

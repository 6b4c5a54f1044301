//! How many QEMU guests run at once on this machine, across every test
//! binary: `tests/run` runs the host tests, the system tests and the
//! conformance suite side by side, and under TCG each guest keeps one core
//! busy. More guests than cores only make each guest slower (and the
//! suite's timed devices then fail), while fewer leave a core idle whenever
//! a test waits on a timer.
//!
//! A slot is a lock on a file in the temporary directory, held by the test
//! while its device is meant to be on: a watchdog's power cycle keeps it;
//! powering down, pulling the plug or dropping the device gives it back. A
//! test process that dies loses its locks with it (and its QEMU follows it,
//! `qemu/boot --exit-with-parent`).
//!
//! `HEARTH_GUESTS` sets the number of slots (default: the number of cores).

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One guest's place; free again when dropped (and its QEMU has ended).
#[derive(Debug)]
pub struct Slot {
    _lock: File,
}

/// Waits for a free slot; `who` names the guest in the waiting message.
pub fn take(who: &str) -> Slot {
    let slots = slot_count();
    let dir = slot_dir();
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let waiting_since = Instant::now();
    let mut said = false;
    loop {
        for index in 0..slots {
            let path = dir.join(format!("slot-{index}"));
            let file = File::options()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
            match file.try_lock() {
                Ok(()) => {
                    if said {
                        eprintln!(
                            "[{who}] guest slot {index} free after {:.0} s",
                            waiting_since.elapsed().as_secs_f64()
                        );
                    }
                    return Slot { _lock: file };
                }
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => {
                    panic!("cannot lock {}: {e}", path.display())
                }
            }
        }
        if !said {
            eprintln!(
                "[{who}] waiting for one of the {slots} guest slots (HEARTH_GUESTS) to come free"
            );
            said = true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn slot_count() -> usize {
    match std::env::var("HEARTH_GUESTS") {
        Ok(n) => n
            .trim()
            .parse()
            .ok()
            .filter(|&n: &usize| n > 0)
            .unwrap_or_else(|| panic!("HEARTH_GUESTS={n:?}: give a number of guests from 1 up")),
        Err(_) => std::thread::available_parallelism().map_or(2, usize::from),
    }
}

/// Shared by every checkout on this machine: they share its cores.
fn slot_dir() -> PathBuf {
    std::env::temp_dir().join("hearth-guest-slots")
}

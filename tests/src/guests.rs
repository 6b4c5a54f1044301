//! How many QEMU guests run at once on this machine, across every test
//! binary: `tests/run` runs the host tests, the power-cut test and the other
//! system tests side by side, and under TCG each guest keeps one core
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
//! Guests that wait queue in order: first by priority, then by arrival.
//! Without the queue, a test that powers a device down and boots the next
//! one at once would always win the slot it just gave back, and the
//! longest guest (the power-cut test) could start last and make the whole
//! run longer.
//!
//! `HEARTH_GUESTS` sets the number of slots (default: the number of cores);
//! `HEARTH_GUEST_PRIORITY` a test process's priority (`tests/run` sets it
//! per job; default [`Priority::Normal`]). With `HEARTH_GUEST_LOG` set, each
//! guest appends a line to that file when it gives its slot back: the test,
//! the guest, and how long it held the slot (`tests/run` prints the longest:
//! what to make cheaper when the run is slow).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Which waiting guest goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Priority {
    /// The longest guests: start them first, the rest fits beside them.
    Long,
    Normal,
}

impl Priority {
    fn from_env() -> Priority {
        match std::env::var("HEARTH_GUEST_PRIORITY").as_deref() {
            Ok("long") => Priority::Long,
            Ok("normal") | Err(_) => Priority::Normal,
            Ok(other) => panic!("HEARTH_GUEST_PRIORITY={other:?}: use long or normal"),
        }
    }

    fn digit(self) -> u8 {
        match self {
            Priority::Long => 0,
            Priority::Normal => 1,
        }
    }
}

/// One guest's place; free again when dropped.
#[derive(Debug)]
pub struct Slot {
    _lock: File,
    who: String,
    since: Instant,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(log) = std::env::var_os("HEARTH_GUEST_LOG") else {
            return;
        };
        // libtest names each test's thread after the test.
        let test = std::thread::current().name().unwrap_or("-").to_owned();
        let line = format!(
            "{:6.0} s  {test}  [{}]\n",
            self.since.elapsed().as_secs_f64(),
            self.who
        );
        // One short O_APPEND write: lines from parallel processes stay whole.
        let _ = open(Path::new(&log)).write_all(line.as_bytes());
    }
}

/// Waits for a slot at this process's priority (`HEARTH_GUEST_PRIORITY`);
/// `who` names the guest in the waiting message.
pub fn take(who: &str) -> Slot {
    let priority = Priority::from_env();
    let slots = slot_count();
    let dir = slot_dir();
    let queue = dir.join("queue");
    std::fs::create_dir_all(&queue)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", queue.display()));
    let ticket = Ticket::join(&queue, priority);
    let waiting_since = Instant::now();
    let mut said = false;
    loop {
        if ticket.is_first() {
            for index in 0..slots {
                let path = dir.join(format!("slot-{index}"));
                let file = open(&path);
                match file.try_lock() {
                    Ok(()) => {
                        if said {
                            eprintln!(
                                "[{who}] guest slot {index} free after {:.0} s",
                                waiting_since.elapsed().as_secs_f64()
                            );
                        }
                        return Slot {
                            _lock: file,
                            who: who.to_owned(),
                            since: Instant::now(),
                        };
                    }
                    Err(std::fs::TryLockError::WouldBlock) => {}
                    Err(std::fs::TryLockError::Error(e)) => {
                        panic!("cannot lock {}: {e}", path.display())
                    }
                }
            }
        }
        if !said {
            eprintln!(
                "[{who}] waiting for one of the {slots} guest slots (HEARTH_GUESTS) to come free"
            );
            said = true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A place in the queue: a locked file named `<priority>-<time>-<pid>-<n>`,
/// so that names sort in queue order and a dead waiter's file is unlocked.
struct Ticket {
    path: PathBuf,
    name: String,
    _lock: File,
}

impl Ticket {
    fn join(queue: &Path, priority: Priority) -> Ticket {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!(
            "{}-{nanos:024}-{}-{}",
            priority.digit(),
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        // Locked before it is renamed into the queue, so nobody can take it
        // for a dead waiter's.
        let pending = queue.join(format!(".{name}"));
        let lock = open(&pending);
        lock.lock()
            .unwrap_or_else(|e| panic!("cannot lock {}: {e}", pending.display()));
        let path = queue.join(&name);
        std::fs::rename(&pending, &path)
            .unwrap_or_else(|e| panic!("cannot queue {}: {e}", path.display()));
        Ticket {
            path,
            name,
            _lock: lock,
        }
    }

    /// No live waiter is ahead (a dead one's ticket is removed on the way).
    fn is_first(&self) -> bool {
        let Ok(entries) = std::fs::read_dir(self.path.parent().expect("queue dir")) else {
            return true;
        };
        let mut ahead: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                !name.starts_with('.') && *name < *self.name
            })
            .map(|entry| entry.path())
            .collect();
        ahead.sort();
        for path in ahead {
            let Ok(file) = File::open(&path) else {
                continue; // it took its slot meanwhile
            };
            if file.try_lock().is_ok() {
                // Nobody holds it: its waiter died.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            return false;
        }
        true
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn open(path: &Path) -> File {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_goes_by_priority_then_arrival_and_skips_the_dead() {
        let queue = tempfile::tempdir().expect("queue dir");
        let normal = Ticket::join(queue.path(), Priority::Normal);
        assert!(normal.is_first());
        let long = Ticket::join(queue.path(), Priority::Long);
        assert!(long.is_first(), "a long guest goes before a normal one");
        assert!(!normal.is_first());
        let later_long = Ticket::join(queue.path(), Priority::Long);
        assert!(!later_long.is_first(), "the same priority goes by arrival");
        drop(long);
        assert!(later_long.is_first());
        // A waiter that died leaves an unlocked ticket: it is passed over.
        std::fs::write(queue.path().join("0-000-1-0"), b"").expect("dead ticket");
        assert!(later_long.is_first());
        assert!(!queue.path().join("0-000-1-0").exists());
    }
}

//! THC hydra (Debian package `hydra`) against the device's login form for
//! at most a given time: the one attack run both by the host test
//! (`daemon/tests/brute_force.rs`, hearthd in host mode) and by the
//! conformance suite (5.1-5-2, the device itself).

use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Parallel connections hydra keeps open.
pub const TASKS: &str = "16";
/// hydra's form: path, JSON body, header, success condition (only a 200
/// login answer carries a CSRF token).
pub const FORM: &str =
    r#"/api/login:{"password"\:"^PASS^"}:H=Content-Type\: application/json:S=csrf_token"#;

/// What one run did.
#[derive(Debug)]
pub struct Run {
    /// hydra's output (`-V`: every attempt).
    pub output: String,
    /// Whether hydra ended by itself before the time limit.
    pub finished: bool,
    pub elapsed: Duration,
}

/// Runs hydra as the user `owner` with the passwords in `words` against
/// `target`'s login for at most `limit`, then interrupts it. Its restore
/// file and log go to `dir`.
pub fn run(target: SocketAddr, dir: &Path, words: &Path, limit: Duration) -> Result<Run, String> {
    let log = dir.join("hydra.log");
    let out = fs::File::create(&log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child = Command::new("hydra")
        // An interrupted run writes ./hydra.restore; keep it out of the tree.
        .current_dir(dir)
        .args(["-I", "-V", "-l", "owner", "-P"])
        .arg(words)
        .args(["-t", TASKS, "-s", &target.port().to_string()])
        .arg(target.ip().to_string())
        .args(["https-post-form", FORM])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own process group, so its worker processes can be ended too.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("hydra did not start ({e}); tests/run installs it"))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(|e| e.to_string())?);
    let finished = loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break true;
        }
        if started.elapsed() >= limit {
            // hydra is not reaped yet, so its process group is still ours.
            let _ = kill(pid, Signal::SIGINT);
            std::thread::sleep(Duration::from_secs(1));
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok(Run {
        output: fs::read_to_string(&log).unwrap_or_default(),
        finished,
        elapsed: started.elapsed(),
    })
}

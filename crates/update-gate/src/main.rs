//! `hearth-update-gate [--swupdate-dir DIR] [--os-release FILE] [--listen DIR]`
//!
//! Started by systemd with its sockets (`hearth-update-gate.socket`):
//! `sockinstctrl` (the control socket) and `swupdateprog` (progress), told
//! apart by their file names. `--listen DIR` binds them in DIR instead (for
//! trying it by hand). Exit status 78 (EX_CONFIG) when the running version
//! or the sockets are missing, so systemd does not restart it in a loop.

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::ExitCode;

use update_gate::{Gate, GateConfig, RunningVersion};

const USAGE: &str =
    "usage: hearth-update-gate [--swupdate-dir DIR] [--os-release FILE] [--listen DIR]";
const EX_CONFIG: u8 = 78;

struct Args {
    swupdate_dir: PathBuf,
    os_release: PathBuf,
    listen: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        swupdate_dir: "/run/swupdate".into(),
        os_release: "/etc/os-release".into(),
        listen: None,
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{} needs a value\n{USAGE}", flag.to_string_lossy()))
        };
        match flag.to_str() {
            Some("--swupdate-dir") => args.swupdate_dir = value()?,
            Some("--os-release") => args.os_release = value()?,
            Some("--listen") => args.listen = Some(value()?),
            _ => return Err(format!("unknown argument {flag:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// The sockets systemd passed (`LISTEN_PID`/`LISTEN_FDS`), if it passed any.
fn systemd_listeners() -> Result<Vec<UnixListener>, String> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    if !for_us {
        return Ok(Vec::new());
    }
    let count: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| (1..=16).contains(n))
        .ok_or("LISTEN_FDS is not a number from 1 to 16")?;
    Ok((3..3 + count).map(adopt).collect())
}

#[allow(unsafe_code)]
fn adopt(fd: i32) -> UnixListener {
    use std::os::fd::FromRawFd;
    // SAFETY: systemd passes its sockets as file descriptors 3 to
    // 3 + LISTEN_FDS - 1 to the process LISTEN_PID names (checked above);
    // nothing else in this process opened or owns them, and each is adopted
    // once.
    unsafe { UnixListener::from_raw_fd(fd) }
}

fn bind(dir: &std::path::Path) -> Result<Vec<UnixListener>, String> {
    ["sockinstctrl", "swupdateprog"]
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let _ = std::fs::remove_file(&path);
            UnixListener::bind(&path)
                .map_err(|e| format!("cannot listen on {}: {e}", path.display()))
        })
        .collect()
}

fn run() -> Result<std::io::Error, String> {
    let args = parse_args()?;
    let running = RunningVersion::from_os_release(&args.os_release).map_err(|e| e.to_string())?;
    let listeners = match &args.listen {
        Some(dir) => bind(dir)?,
        None => systemd_listeners()?,
    };
    let (mut control, mut progress) = (None, None);
    for listener in listeners {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let name = addr.as_pathname().and_then(|p| p.file_name());
        match name.and_then(|n| n.to_str()) {
            Some("sockinstctrl") if control.is_none() => control = Some(listener),
            Some("swupdateprog") if progress.is_none() => progress = Some(listener),
            _ => {
                return Err(format!(
                    "unexpected socket {addr:?}: expected sockinstctrl and swupdateprog"
                ));
            }
        }
    }
    let control = control.ok_or("no control socket (sockinstctrl): start me from hearth-update-gate.socket, or pass --listen DIR")?;
    let config = GateConfig::in_dir(&args.swupdate_dir, running);
    eprintln!(
        "hearth-update-gate: running version {}; forwarding to {}",
        config.running,
        config.control_socket.display()
    );
    Ok(Gate::new(config).serve(control, progress))
}

fn main() -> ExitCode {
    match run() {
        Ok(error) => {
            eprintln!("hearth-update-gate: accepting connections failed: {error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("hearth-update-gate: {error}");
            ExitCode::from(EX_CONFIG)
        }
    }
}

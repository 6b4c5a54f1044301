//! Installs a `.swu` through a running swupdate and prints the time taken.
//!
//! ```text
//! cargo run --release -p swupdate-rs --example install -- [--socket-dir DIR] [--select SET,MODE] FILE.swu
//! ```
//!
//! Without `--socket-dir`, the Debian 2022.12 paths (`/tmp/sockinstctrl`)
//! are used.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::time::Instant;

use swupdate_rs::{Client, ClientConfig, InstallRequest, SourceType};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config = ClientConfig::default();
    let mut request = InstallRequest {
        source: SourceType::Local,
        ..Default::default()
    };
    let mut file = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--socket-dir" => match args.next() {
                Some(dir) => config = ClientConfig::in_dir(dir),
                None => return usage(),
            },
            "--select" => match args.next().as_deref().and_then(|s| s.split_once(',')) {
                Some((set, mode)) => {
                    request.software_set = set.to_owned();
                    request.running_mode = mode.to_owned();
                }
                None => return usage(),
            },
            _ if file.is_none() => file = Some(arg),
            _ => return usage(),
        }
    }
    let Some(file) = file else { return usage() };
    let image = match std::fs::File::open(&file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot open {file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let client = Client::new(config);
    let started = Instant::now();
    match client.install(&request, image) {
        Ok(report) => {
            let secs = started.elapsed().as_secs_f64();
            println!(
                "installed {} bytes in {secs:.2} s ({:.1} MiB/s)",
                report.bytes_written,
                report.bytes_written as f64 / secs / (1024.0 * 1024.0)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: install [--socket-dir DIR] [--select SET,MODE] FILE.swu");
    ExitCode::from(2)
}

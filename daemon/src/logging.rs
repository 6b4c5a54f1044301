//! Logs go to journald under systemd and to stderr everywhere else.
//!
//! `HEARTH_LOG` sets the level (`error`, `warn`, `info`, `debug`, `trace`, or
//! per target such as `hearthd=debug`); the default is `info`.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

pub fn init() {
    let filter = std::env::var("HEARTH_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    // systemd sets JOURNAL_STREAM when our stderr is connected to the journal.
    let journald = std::env::var_os("JOURNAL_STREAM")
        .and_then(|_| tracing_journald::layer().ok())
        .map(|layer| layer.with_syslog_identifier("hearthd".to_owned()));
    let stderr = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
    });
    tracing_subscriber::registry()
        .with(journald)
        .with(stderr)
        .with(filter)
        .init();
}

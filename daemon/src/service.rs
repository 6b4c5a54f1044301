//! Life under systemd: readiness, the watchdog, and shutdown on a signal.
//!
//! Outside systemd every call here is a no-op, so host mode needs nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{oneshot, watch};

/// Tells systemd the daemon is ready (`Type=notify`).
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(false, states) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

/// Pings the watchdog at half its interval while the runtime is healthy.
/// A wedged event loop stops the pings, and systemd restarts us.
pub fn spawn_watchdog() {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let period = Duration::from_micros(usec) / 2;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            notify(&[NotifyState::Watchdog]);
        }
    });
}

/// A channel that turns true on SIGTERM or SIGINT, or when `also`
/// finishes; the second receiver says which (`None`: a signal).
pub fn shutdown_signal<T: Send + 'static>(
    also: impl Future<Output = T> + Send + 'static,
) -> std::io::Result<(watch::Receiver<bool>, oneshot::Receiver<T>)> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(false);
    let (why_tx, why_rx) = oneshot::channel();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
            why = also => {
                tracing::info!("shutting down to start over");
                let _ = why_tx.send(why);
            }
        }
        let _ = tx.send(true);
    });
    Ok((rx, why_rx))
}

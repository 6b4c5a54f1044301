//! What the owner reads on the device's own console (serial or HDMI).
//!
//! Only someone with the device in hand sees the console, so this is where
//! the certificate fingerprint and the setup code are shown. The systemd
//! unit connects standard output to the console only (`StandardOutput=tty`),
//! never the journal: log lines go to standard error and hold no secret.

use std::io::Write;

pub fn show(line: &str) {
    let mut out = std::io::stdout().lock();
    // The console is best effort: a closed stdout must not stop the daemon.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

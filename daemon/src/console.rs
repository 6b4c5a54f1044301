//! What the owner reads on the device's own console (serial or HDMI).
//!
//! Only someone with the device in hand sees the console, so this is where
//! the certificate fingerprint (and later the setup code) is shown. The
//! systemd unit sends standard output to journal+console.

use std::io::Write;

pub fn show(line: &str) {
    let mut out = std::io::stdout().lock();
    // The console is best effort: a closed stdout must not stop the daemon.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

//! `qemu/bench`'s measurements on a booted device; prints figures, asserts nothing.
//!
//! Boots the image named by HEARTH_IMAGE (qemu/bench builds a bench variant
//! whose probe unit prints hearthd's memory on the console; the product image
//! has no such unit) and reports the time from QEMU's start to the console's
//! ready line and to the first HTTPS answer.

use std::io::Write;
use std::time::Duration;

use system_tests::{Device, Disk};

fn main() {
    let disk = Disk::fresh("bench");
    let mut device = Device::boot(&disk, "boot1");
    let ready = device.wait_ready();
    // The bench image's probe prints one line after hearthd is ready.
    let probe = device.wait_for("hearth-bench:", Duration::from_secs(120));
    device.powerdown();

    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "QEMU start -> console ready line: {:.1} s",
        ready.console_after.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "QEMU start -> HTTPS /healthz 200: {:.1} s",
        ready.https_after.as_secs_f64()
    );
    let figures = probe
        .split_once("hearth-bench:")
        .map(|(_, f)| f.trim())
        .unwrap_or_default();
    for figure in figures.split(';') {
        let _ = writeln!(out, "{}", figure.trim());
    }
}

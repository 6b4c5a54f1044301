//! Progress bars for the long steps (compressing, hashing, packing).
//!
//! indicatif draws only when stderr is a terminal, so logs and tests stay
//! clean.

use indicatif::{ProgressBar, ProgressStyle};

/// A byte-count bar with a label.
pub fn bytes(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_owned());
    bar
}

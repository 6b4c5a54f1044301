//! Rust client for [SWUpdate](https://sbabic.github.io/swupdate/)'s IPC.
//!
//! SWUpdate listens on two local stream sockets:
//!
//! * the **control socket** (`sockinstctrl`): fixed-size `ipc_message`
//!   requests and answers, and the `.swu` stream of an installation;
//! * the **progress socket** (`swupdateprog`): fixed-size `progress_msg`
//!   frames for every step of an installation.
//!
//! The crate has two layers:
//!
//! * a pure codec without I/O: [`msg`] (control socket) and [`progress`]
//!   (progress socket), byte-exact against SWUpdate's C headers and tested
//!   per target pointer width;
//! * a small blocking [`Client`] over `std::os::unix::net::UnixStream`. It
//!   starts no threads and needs no async runtime; an async daemon calls it
//!   from `spawn_blocking`.
//!
//! # Tutorial
//!
//! Install a `.swu` that arrives in pieces (e.g. an HTTPS download), then
//! confirm the new system after its first good boot:
//!
//! ```no_run
//! use std::io::Write;
//! use swupdate_rs::{Client, ClientConfig, InstallRequest, SourceType, UpdateState};
//!
//! # fn download_chunks() -> Vec<Vec<u8>> { Vec::new() }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Debian bookworm (2022.12) paths are the default; newer SWUpdate
//! // releases use e.g. ClientConfig::in_dir("/run/swupdate").
//! let client = Client::new(ClientConfig::default());
//!
//! // SWUpdate answers NACK (an Error::Nack with its text, e.g.
//! // "Installation in progress") or ACK; on ACK the stream is ours.
//! let mut installer = client.start_install(&InstallRequest {
//!     source: SourceType::Downloader,
//!     info: "release 1.4.2".into(),
//!     // Needs `-q stable,copy2` on swupdate's command line.
//!     software_set: "stable".into(),
//!     running_mode: "copy2".into(),
//!     ..Default::default()
//! })?;
//! for chunk in download_chunks() {
//!     // The socket may stay open while a download is resumed with Range.
//!     if installer.write_all(&chunk).is_err() {
//!         break; // SWUpdate rejected the image; finish() says why.
//!     }
//! }
//! // Closes the stream and polls GET_STATUS until SWUpdate is idle again.
//! match installer.finish() {
//!     Ok(report) => println!("installed {} bytes", report.bytes_written),
//!     // e.g. "... reports the installation failed (Failure):
//!     //       ERROR : Signature verification failed; ..."
//!     Err(e) => eprintln!("{e}"),
//! }
//!
//! // After rebooting into the new slot and passing the health check:
//! client.set_update_state(UpdateState::Ok)?;
//! # Ok(())
//! # }
//! ```
//!
//! Follow an installation on the progress socket; the layout must be
//! named, because SWUpdate changed it without changing its API version:
//!
//! ```no_run
//! use swupdate_rs::{Client, ClientConfig, ProgressProtocol, RecoveryStatus};
//!
//! # fn main() -> Result<(), swupdate_rs::Error> {
//! let client = Client::new(ClientConfig::default());
//! let mut progress = client.connect_progress(ProgressProtocol::SWUPDATE_2022_12)?;
//! loop {
//!     let frame = progress.next_message()?;
//!     println!("{:?} step {}/{} {}%", frame.status, frame.cur_step, frame.nsteps, frame.cur_percent);
//!     if matches!(frame.status, RecoveryStatus::Success | RecoveryStatus::Failure) {
//!         break;
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Supported SWUpdate versions and layouts
//!
//! | SWUpdate | control socket `ipc_message` | progress frame | progress connect ack |
//! |---|---|---|---|
//! | 2022.12 (Debian bookworm), 2023.05 | 3120 B (LP64) / 3104 B (ILP32) | [`ProgressLayout::V2022_12`], 2416 B, first field 0 | no |
//! | 2023.12, 2024.05 | same | `V2022_12`, first field = API version 1.0 | no |
//! | 2024.12, 2025.05 | same | `V2022_12`, API 2.0 | yes ([`ConnectAck`], 8 B) |
//! | 2025.12, 2026.05 | same | [`ProgressLayout::Packed2025_12`], 2408 B, API 2.0 | yes |
//!
//! Pick the progress protocol with the `ProgressProtocol::SWUPDATE_*`
//! constants. Only 2022.12 is tested against a real binary (the Debian
//! package, `2022.12+dfsg-4+deb12u3`); the later layouts are implemented
//! from SWUpdate's headers and tested with hand-built byte literals.
//!
//! Control requests implemented: `REQ_INSTALL` (with the data stream),
//! `GET_STATUS`, `POST_UPDATE`, `SET_UPDATE_STATE`, `GET_UPDATE_STATE`,
//! `SET_VERSIONS_RANGE`, `NOTIFY_STREAM`, `GET_HW_REVISION`.
//!
//! # How SWUpdate behaves (as tested with 2022.12)
//!
//! * Each message must arrive in **one `write()`**; SWUpdate reads it with a
//!   single `read()` and drops the connection on a short read. The client
//!   reports a partial write as [`Error::ShortWrite`] instead of retrying.
//! * `GET_STATUS` pops one queued notification per call and then reports
//!   *that notification's* state in `current`; only with an empty queue is
//!   `current` the installer's state. Before the installer thread wakes up,
//!   `last_result` is still the previous installation's. [`Installer::finish`]
//!   copes with both: SWUpdate clears its queue when it acknowledges
//!   `REQ_INSTALL`, so anything queued afterwards belongs to this
//!   installation.
//! * A rejected image (bad signature, hash mismatch, wrong hardware, version
//!   out of range) makes SWUpdate close the stream early: writes fail with a
//!   broken pipe, and `finish()` returns [`Error::InstallFailed`] with
//!   SWUpdate's error lines ("ERROR : Signature verification failed", ...).
//! * With `installed-directly = true` in `sw-description`, the image is
//!   written to the slot *while* it is hashed: a corrupted image fails the
//!   installation but the inactive slot has already been overwritten, and
//!   SWUpdate leaves `recovery_status=in_progress` and `ustate=7` in the
//!   bootloader environment. Reset `ustate` with
//!   [`Client::set_update_state`]; `recovery_status` cannot be changed over
//!   IPC. Without `installed-directly`, the image is checked in `$TMPDIR`
//!   first and the slot stays untouched.
//!
//! # Testing
//!
//! * Unit tests (`src/msg.rs`, `src/progress.rs`) pin every offset and size
//!   with byte literals. The native layout is asserted per target pointer
//!   width (`#[cfg(target_pointer_width)]`); the LP64 and ILP32 numbers are
//!   also computed and checked on any host, against what `gcc -m64` and
//!   `gcc -m32` print for SWUpdate's headers.
//! * `tests/real_swupdate/` runs the real Debian `swupdate` 2022.12 through
//!   `swupdate-testkit`: each daemon gets a private `$TMPDIR` (where the
//!   Debian binary puts its sockets) and a private mount namespace with a
//!   temporary directory over `/boot` (its grubenv path is compiled in);
//!   slots are plain files, the CMS certificate is generated with
//!   `openssl`, the `.swu` is packed with `cpio -o -H crc`. Needs
//!   `swupdate`, `openssl`, `cpio`, `unshare` (util-linux) and `mount`.
//! * Fuzzing (nightly): `cargo install cargo-fuzz`, then in
//!   `crates/swupdate-rs/fuzz`: `cargo +nightly fuzz run decode --
//!   -max_total_time=60`.
//! * `examples/install.rs` installs a `.swu` through a running daemon and
//!   prints the throughput.
//!
//! # Current limitations
//!
//! * Blocking only, one connection per call; no async API (by design).
//! * Two clients racing `REQ_INSTALL`: SWUpdate 2022.12 marks itself busy
//!   only when its installer thread wakes, so a second request in that
//!   window is ACKed too. Have one process (hearthd) own installations.
//! * Native byte order and C layout of the *host*: the client must run on
//!   the same machine (and ABI) as SWUpdate, which is the only way these
//!   sockets are used.
//! * The progress layout is not detected; the caller names it.
//! * With 2022.12 there is no progress connect ack, so a frame sent
//!   immediately after `connect_progress` may be missed; connect well
//!   before starting an installation.
//! * `finish()` consumes SWUpdate's notification queue; another client
//!   polling `GET_STATUS` at the same time steals messages from it (the
//!   result is still read correctly, the error text may be incomplete).
//!   SWUpdate keeps only its last 100 notifications.
//! * Not implemented: `SET_AES_KEY`, `SWUPDATE_SUBPROCESS` (suricatta
//!   commands), `REQ_INSTALL_EXT`, `SET/GET_SWUPDATE_VARS` (2023.12+),
//!   `SET_DELTA_URL` (2026.05), the 2025.12 `update_type` version field.
//! * Socket paths are not discovered: 2022.12 uses its compiled-in path
//!   (Debian: `/tmp/sockinstctrl`, `/tmp/swupdateprog`; `$TMPDIR` only
//!   applies when none is compiled in); 2023.12+ prefer
//!   `$RUNTIME_DIRECTORY`; 2026.05 uses `/run/swupdate` when writable.
//!   Configure them in [`ClientConfig`].

#![forbid(unsafe_code)]

mod client;
mod error;
pub mod msg;
pub mod progress;
mod wire;

pub use client::{
    Client, ClientConfig, DEFAULT_CONTROL_SOCKET, DEFAULT_PROGRESS_SOCKET, InstallReport,
    Installer, NotifyStream, ProgressStream,
};
pub use error::{DecodeError, EncodeError, Error, SocketKind};
pub use msg::{
    HwRevision, InstallRequest, MsgType, Notification, RecoveryStatus, RunType, SourceType, Status,
    UpdateState, VersionsRange,
};
pub use progress::{ConnectAck, ProgressLayout, ProgressMessage, ProgressProtocol};

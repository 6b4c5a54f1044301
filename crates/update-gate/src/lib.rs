//! `hearth-update-gate`: the only way from hearthd to SWUpdate's IPC.
//!
//! SWUpdate 2022.12 takes its minimum version from the last
//! `SET_VERSIONS_RANGE` a client sent, which replaces the `-N` on its
//! command line. So whoever may use its control socket may install any older
//! release the vendor ever signed: hearthd's floors alone would stand between
//! a code-execution bug in hearthd and a downgrade to a vulnerable release
//! (issue 14, item 4; docs/threat-model.md).
//!
//! The gate runs as its own user in group `swupdate`, the only group that may
//! use SWUpdate's sockets; hearthd is not in it. hearthd connects to the
//! gate's sockets instead (systemd socket activation, group `hearth`). The
//! gate:
//!
//! * passes only the control requests hearthd makes ([`filter`]):
//!   `REQ_INSTALL`, `GET_STATUS`, `GET_UPDATE_STATE`, `SET_UPDATE_STATE`,
//!   `SET_VERSIONS_RANGE`, each decoded and re-encoded with `swupdate-rs`;
//!   anything else is answered with a NACK saying why;
//! * raises a `SET_VERSIONS_RANGE` minimum to at least the running version
//!   ([`RunningVersion`], `IMAGE_VERSION` from the read-only root's
//!   os-release, read once at start), never lower;
//! * after SWUpdate acknowledges `REQ_INSTALL`, copies the image stream
//!   through unchanged (SWUpdate checks its signature);
//! * relays the progress socket one way, SWUpdate to client.
//!
//! SWUpdate itself starts with `-N <running version>` (the layer's
//! `10-hearth`), so a client that sends no range cannot downgrade either.
//!
//! # Design
//!
//! Blocking `std` sockets, one thread per connection ([`MAX_CONNECTIONS`] at
//! once), no runtime; the only dependency is `swupdate-rs` for the message
//! layout. One request per control connection, as SWUpdate answers one and
//! closes.
//!
//! # Current limitations
//!
//! * The gate does not check which slot `REQ_INSTALL` selects: SWUpdate's
//!   `-q` list (only the slot not running) does.
//! * A version the gate cannot order exactly as SWUpdate does (anything but
//!   one to four dot-separated numbers) is replaced by the running version,
//!   even where it was higher.

#![deny(unsafe_code)]

mod filter;
mod gate;
mod version;

pub use filter::{Refusal, filter};
pub use gate::{Gate, GateConfig, MAX_CONNECTIONS};
pub use version::{RunningVersion, VersionError};

//! Error types: one for the pure codec, one for the socket client.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::msg::{MsgType, RecoveryStatus};

/// A value could not be put into SWUpdate's fixed-size C structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A string is longer than its `char[]` field (one byte is kept for the NUL).
    #[error("{field} is {len} bytes long, but SWUpdate's field holds at most {max} bytes")]
    FieldTooLong {
        /// The C field name, e.g. `software_set`.
        field: &'static str,
        /// Longest string that fits.
        max: usize,
        /// Length that was given.
        len: usize,
    },
    /// A string contains a NUL byte, which C would read as its end.
    #[error("{field} contains a NUL byte, which SWUpdate would read as the end of the string")]
    InteriorNul {
        /// The C field name.
        field: &'static str,
    },
}

/// Bytes received from SWUpdate are not a message this crate understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The buffer is not exactly one message long.
    #[error("expected a {expected}-byte message, got {actual} bytes")]
    WrongLength {
        /// Size of the C structure on this target.
        expected: usize,
        /// Size received.
        actual: usize,
    },
    /// The control-socket message does not start with `IPC_MAGIC`.
    #[error("bad magic 0x{0:08x} (expected 0x14052001): not an SWUpdate IPC message")]
    BadMagic(i32),
    /// The progress connect acknowledgement does not carry `"ACK\0"`.
    #[error("progress connect acknowledgement has magic {0:02x?}, expected \"ACK\\0\"")]
    BadAckMagic([u8; 4]),
    /// `GET_UPDATE_STATE` answered with a character outside `'0'..='7'`.
    #[error("update state byte 0x{0:02x} is not one of '0'..'7'")]
    BadUpdateState(u8),
    /// A request type the decoder does not know (server side only).
    #[error("unknown or unsupported message type {0}")]
    UnknownType(i32),
}

/// Which of SWUpdate's two sockets an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// The control socket (`sockinstctrl`).
    Control,
    /// The progress socket (`swupdateprog`).
    Progress,
}

impl fmt::Display for SocketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SocketKind::Control => "control",
            SocketKind::Progress => "progress",
        })
    }
}

/// Something went wrong talking to SWUpdate. Every variant names the socket
/// path; those that carry an answer from SWUpdate quote its text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket could not be opened.
    #[error(
        "cannot connect to SWUpdate's {kind} socket {path}: {source} \
         (is swupdate running, and may this user open the socket?)"
    )]
    Connect {
        /// Which socket.
        kind: SocketKind,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Reading or writing an open socket failed (including timeouts).
    #[error("{op} on SWUpdate's {kind} socket {path} failed: {source}")]
    Io {
        /// Which socket.
        kind: SocketKind,
        /// Its path.
        path: PathBuf,
        /// What we were doing, e.g. "sending GET_STATUS".
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel accepted only part of a message. SWUpdate reads each
    /// message with a single `read()` and drops the connection on a short one.
    #[error(
        "only {written} of {expected} bytes of {request:?} reached SWUpdate's control socket {path}; \
         SWUpdate needs each message in one write"
    )]
    ShortWrite {
        /// Control socket path.
        path: PathBuf,
        /// The request.
        request: MsgType,
        /// Bytes written.
        written: usize,
        /// Message size.
        expected: usize,
    },
    /// SWUpdate answered NACK.
    #[error("SWUpdate ({path}) refused {request:?}: {}", nack_text(*.request, .message))]
    Nack {
        /// Control socket path.
        path: PathBuf,
        /// The refused request.
        request: MsgType,
        /// SWUpdate's text from `data.msg`, e.g. "Installation in progress"
        /// (empty when SWUpdate gives none).
        message: String,
    },
    /// SWUpdate's answer could not be decoded or was of an unexpected type.
    #[error("SWUpdate's {kind} socket {path} sent something unexpected: {detail}")]
    Protocol {
        /// Which socket.
        kind: SocketKind,
        /// Its path.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// Reading the `.swu` from the caller's reader failed; the stream to
    /// SWUpdate was closed, so SWUpdate failed (and ended) the installation.
    #[error("reading the .swu to send to SWUpdate failed: {source}")]
    ReadImage {
        /// The reader's error.
        source: io::Error,
    },
    /// A request could not be encoded (a string too long, ...).
    #[error("cannot build the request for SWUpdate: {0}")]
    Encode(#[from] EncodeError),
    /// SWUpdate ran the installation and reported failure.
    #[error("SWUpdate ({path}) reports the installation failed ({result:?}): {}", failure_text(.errors))]
    InstallFailed {
        /// Control socket path.
        path: PathBuf,
        /// `last_result` (normally `Failure`).
        result: RecoveryStatus,
        /// SWUpdate's error notifications for this installation, oldest first
        /// (e.g. "ERROR : Signature verification failed").
        errors: Vec<String>,
        /// Every notification collected while waiting, for logs.
        log: Vec<String>,
    },
    /// The installation did not finish in time.
    #[error(
        "SWUpdate ({path}) did not finish the installation within {waited:?}; \
         it may still be running: check `GET_STATUS` or swupdate's log"
    )]
    Timeout {
        /// Control socket path.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
}

fn nack_text(request: MsgType, message: &str) -> String {
    if !message.is_empty() {
        return format!("\"{message}\"");
    }
    // SWUpdate 2022.12 sends an empty text for these; say what it means.
    match request {
        MsgType::ReqInstall => "no reason given, which SWUpdate does for a wrong API version or a \
             software_set,running_mode pair missing from its -q list"
            .to_owned(),
        MsgType::SetUpdateState => "no reason given, which means SWUpdate could not write the \
             bootloader environment: check its -B option and the environment file"
            .to_owned(),
        _ => "no reason given; see swupdate's log".to_owned(),
    }
}

fn failure_text(errors: &[String]) -> String {
    if errors.is_empty() {
        "no error message was left in its notification queue; see swupdate's log".to_owned()
    } else {
        errors.join("; ")
    }
}

impl Error {
    /// SWUpdate's own words, if this error carries an answer from it
    /// (the NACK text, or the error notifications of a failed install).
    pub fn swupdate_message(&self) -> Option<String> {
        match self {
            Error::Nack { message, .. } => Some(message.clone()),
            Error::InstallFailed { errors, .. } => Some(errors.join("; ")),
            _ => None,
        }
    }
}

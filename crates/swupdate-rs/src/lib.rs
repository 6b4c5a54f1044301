//! Rust client for SWUpdate's IPC (placeholder docs, replaced below).

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

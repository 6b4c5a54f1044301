//! The control-socket message `ipc_message` (SWUpdate `include/network_ipc.h`),
//! encoded and decoded by hand, without I/O.
//!
//! ```text
//! typedef struct { int magic; int type; msgdata data; } ipc_message;
//! ```
//!
//! The layout is the C layout of the *host*: native byte order, natural
//! alignment, and `size_t len` inside `struct swupdate_request`, which makes
//! the message 3120 bytes on LP64 (x86_64, aarch64) and 3104 bytes on ILP32
//! (armhf, i386). It is unchanged from SWUpdate 2022.12 to 2026.05.

use crate::error::{DecodeError, EncodeError};
use crate::wire::{
    align_up, get_cstr, get_i32, get_u32, get_usize, put_cstr, put_i32, put_u32, put_usize,
};

/// `IPC_MAGIC`, the first field of every control-socket message.
pub const IPC_MAGIC: i32 = 0x1405_2001;

/// `SWUPDATE_API_VERSION`, sent in `swupdate_request.apiversion`. SWUpdate
/// NACKs an install request carrying any other value.
pub const SWUPDATE_API_VERSION: u32 = 1;

/// Byte offsets of `ipc_message` and `struct swupdate_request` on this target.
///
/// They are derived from the C rules (a `size_t` is pointer-sized and
/// pointer-aligned on every Linux target SWUpdate supports) and pinned by
/// per-pointer-width tests with literal numbers.
pub mod layout {
    use super::align_up;

    /// Offsets that depend on `sizeof(size_t)` (= its alignment on Linux).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct IpcLayout {
        /// `swupdate_request.len`.
        pub req_len: usize,
        /// `swupdate_request.info`.
        pub req_info: usize,
        /// `swupdate_request.software_set`.
        pub req_software_set: usize,
        /// `swupdate_request.running_mode`.
        pub req_running_mode: usize,
        /// `swupdate_request.disable_store_swu`.
        pub req_disable_store_swu: usize,
        /// `sizeof(struct swupdate_request)`.
        pub req_size: usize,
        /// `sizeof(msgdata)`.
        pub data_size: usize,
        /// `sizeof(ipc_message)`.
        pub message_size: usize,
    }

    /// The layout for a target whose `size_t` has `size_t` bytes (8 on
    /// LP64, 4 on ILP32), following the C rules. Pure arithmetic, so the
    /// ILP32 numbers are tested on 64-bit hosts too.
    pub const fn ipc_layout(size_t: usize) -> IpcLayout {
        let req_len = align_up(12, size_t);
        let req_info = req_len + size_t;
        let req_software_set = req_info + 512;
        let req_running_mode = req_software_set + 256;
        let req_disable_store_swu = req_running_mode + 256;
        let req_size = align_up(req_disable_store_swu + 1, size_t);
        // instmsg = { req; unsigned int len; char buf[2048]; } is the largest
        // union member; the union is aligned like size_t (at least 4).
        let align = if size_t > 4 { size_t } else { 4 };
        let data_size = align_up(req_size + 4 + 2048, align);
        IpcLayout {
            req_len,
            req_info,
            req_software_set,
            req_running_mode,
            req_disable_store_swu,
            req_size,
            data_size,
            message_size: DATA + data_size,
        }
    }

    /// This target's layout.
    pub const NATIVE: IpcLayout = ipc_layout(size_of::<usize>());

    /// `ipc_message.magic`.
    pub const MAGIC: usize = 0;
    /// `ipc_message.type`.
    pub const TYPE: usize = 4;
    /// `ipc_message.data` (the `msgdata` union). Always 8: the union is at
    /// most 8-aligned.
    pub const DATA: usize = 8;

    /// `swupdate_request.apiversion` (relative to the request).
    pub const REQ_APIVERSION: usize = 0;
    /// `swupdate_request.source`.
    pub const REQ_SOURCE: usize = 4;
    /// `swupdate_request.dry_run`.
    pub const REQ_DRY_RUN: usize = 8;
    /// `swupdate_request.len` (`size_t`): 16 on LP64, 12 on ILP32.
    pub const REQ_LEN: usize = NATIVE.req_len;
    /// `swupdate_request.info[512]`.
    pub const REQ_INFO: usize = NATIVE.req_info;
    /// `swupdate_request.software_set[256]`.
    pub const REQ_SOFTWARE_SET: usize = NATIVE.req_software_set;
    /// `swupdate_request.running_mode[256]`.
    pub const REQ_RUNNING_MODE: usize = NATIVE.req_running_mode;
    /// `swupdate_request.disable_store_swu` (`bool`, one byte).
    pub const REQ_DISABLE_STORE_SWU: usize = NATIVE.req_disable_store_swu;
    /// `sizeof(struct swupdate_request)`: 1056 on LP64, 1044 on ILP32.
    pub const REQ_SIZE: usize = NATIVE.req_size;

    /// `instmsg.len` (`unsigned int`, after the request).
    pub const INSTMSG_LEN: usize = REQ_SIZE;
    /// `instmsg.buf[2048]`.
    pub const INSTMSG_BUF: usize = REQ_SIZE + 4;

    /// `sizeof(msgdata)`.
    pub const DATA_SIZE: usize = NATIVE.data_size;
    /// `sizeof(ipc_message)`: 3120 on LP64, 3104 on ILP32.
    pub const MESSAGE_SIZE: usize = NATIVE.message_size;

    /// `msg[128]`: the text of ACK/NACK answers.
    pub const MSG_TEXT_LEN: usize = 128;
    /// `status.{current,last_result,error}` and `notify.{status,error,level}`.
    pub const STATUS_DESC: usize = 12;
    /// `status.desc[2048]` / `notify.msg[2048]`.
    pub const STATUS_DESC_LEN: usize = 2048;
    /// Length of each `versions` and `revisions` string.
    pub const VERSION_LEN: usize = 256;
}

/// `sizeof(ipc_message)` on this target.
pub const IPC_MESSAGE_SIZE: usize = layout::MESSAGE_SIZE;

/// `msgtype`: the `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MsgType {
    /// 0: start an installation; the `.swu` follows on the same connection.
    ReqInstall,
    /// 1: positive answer.
    Ack,
    /// 2: negative answer, reason (if any) in `data.msg`.
    Nack,
    /// 3: poll the installer state and pop one notification.
    GetStatus,
    /// 4: run the `-p` post-update command.
    PostUpdate,
    /// 5: message for a subprocess (suricatta, ...).
    SwupdateSubprocess,
    /// 6: set the AES key.
    SetAesKey,
    /// 7: write `ustate` to the bootloader environment.
    SetUpdateState,
    /// 8: read `ustate`.
    GetUpdateState,
    /// 9: extended install request (unused by 2022.12's server).
    ReqInstallExt,
    /// 10: set the min/max/current versions (anti-downgrade).
    SetVersionsRange,
    /// 11: subscribe to notifications on this connection.
    NotifyStream,
    /// 12: read the board name and revision.
    GetHwRevision,
    /// 13: SET_SWUPDATE_VARS (2023.12+).
    SetSwupdateVars,
    /// 14: GET_SWUPDATE_VARS (2023.12+).
    GetSwupdateVars,
    /// 15: SET_DELTA_URL (2026.05+).
    SetDeltaUrl,
}

impl MsgType {
    const ALL: [MsgType; 16] = [
        MsgType::ReqInstall,
        MsgType::Ack,
        MsgType::Nack,
        MsgType::GetStatus,
        MsgType::PostUpdate,
        MsgType::SwupdateSubprocess,
        MsgType::SetAesKey,
        MsgType::SetUpdateState,
        MsgType::GetUpdateState,
        MsgType::ReqInstallExt,
        MsgType::SetVersionsRange,
        MsgType::NotifyStream,
        MsgType::GetHwRevision,
        MsgType::SetSwupdateVars,
        MsgType::GetSwupdateVars,
        MsgType::SetDeltaUrl,
    ];

    /// The C enum value.
    pub fn code(self) -> i32 {
        // Implicit discriminants follow the C enum: 0, 1, 2, ...
        self as i32
    }

    /// The type for a C enum value, if known.
    pub fn from_code(code: i32) -> Option<MsgType> {
        usize::try_from(code)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
    }
}

/// `RECOVERY_STATUS` (`include/swupdate_status.h`), used by the control and
/// the progress socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RecoveryStatus {
    /// 0: no installation running.
    #[default]
    Idle,
    /// 1: installation started.
    Start,
    /// 2: installing.
    Run,
    /// 3: installation succeeded.
    Success,
    /// 4: installation failed.
    Failure,
    /// 5: downloading.
    Download,
    /// 6: done (post-update).
    Done,
    /// 7: subprocess event.
    Subprocess,
    /// 8: progress within a step.
    Progress,
    /// A value this crate does not know.
    Unknown(u32),
}

impl RecoveryStatus {
    /// Decodes the C value.
    pub fn from_code(code: u32) -> RecoveryStatus {
        match code {
            0 => RecoveryStatus::Idle,
            1 => RecoveryStatus::Start,
            2 => RecoveryStatus::Run,
            3 => RecoveryStatus::Success,
            4 => RecoveryStatus::Failure,
            5 => RecoveryStatus::Download,
            6 => RecoveryStatus::Done,
            7 => RecoveryStatus::Subprocess,
            8 => RecoveryStatus::Progress,
            other => RecoveryStatus::Unknown(other),
        }
    }

    /// The C value.
    pub fn code(self) -> u32 {
        match self {
            RecoveryStatus::Idle => 0,
            RecoveryStatus::Start => 1,
            RecoveryStatus::Run => 2,
            RecoveryStatus::Success => 3,
            RecoveryStatus::Failure => 4,
            RecoveryStatus::Download => 5,
            RecoveryStatus::Done => 6,
            RecoveryStatus::Subprocess => 7,
            RecoveryStatus::Progress => 8,
            RecoveryStatus::Unknown(other) => other,
        }
    }
}

/// `sourcetype`: who asked for the installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SourceType {
    /// 0 (what `swupdate_prepare_req` leaves).
    #[default]
    Unknown,
    /// 1: the built-in webserver.
    Webserver,
    /// 2: suricatta (hawkBit, ...).
    Suricatta,
    /// 3: the built-in downloader.
    Downloader,
    /// 4: a local client.
    Local,
    /// 5: the delta chunks downloader.
    ChunksDownloader,
    /// A value this crate does not know.
    Other(u32),
}

impl SourceType {
    /// Decodes the C value.
    pub fn from_code(code: u32) -> SourceType {
        match code {
            0 => SourceType::Unknown,
            1 => SourceType::Webserver,
            2 => SourceType::Suricatta,
            3 => SourceType::Downloader,
            4 => SourceType::Local,
            5 => SourceType::ChunksDownloader,
            other => SourceType::Other(other),
        }
    }

    /// The C value.
    pub fn code(self) -> u32 {
        match self {
            SourceType::Unknown => 0,
            SourceType::Webserver => 1,
            SourceType::Suricatta => 2,
            SourceType::Downloader => 3,
            SourceType::Local => 4,
            SourceType::ChunksDownloader => 5,
            SourceType::Other(other) => other,
        }
    }
}

/// `enum run_type`: override swupdate's `-n` (dry run) for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RunType {
    /// 0: use the daemon's setting.
    #[default]
    Default,
    /// 1: check and "install" without writing.
    DryRun,
    /// 2: install even if the daemon runs with `-n`.
    Install,
}

impl RunType {
    /// The C value.
    pub fn code(self) -> i32 {
        match self {
            RunType::Default => 0,
            RunType::DryRun => 1,
            RunType::Install => 2,
        }
    }

    fn from_code(code: i32) -> Option<RunType> {
        match code {
            0 => Some(RunType::Default),
            1 => Some(RunType::DryRun),
            2 => Some(RunType::Install),
            _ => None,
        }
    }
}

/// `update_state_t` (`include/state.h`): the bootloader variable `ustate`,
/// stored as one ASCII digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateState {
    /// `'0'` STATE_OK: the running system is confirmed.
    Ok,
    /// `'1'` STATE_INSTALLED: a new system was installed, not yet tested.
    Installed,
    /// `'2'` STATE_TESTING: the new system is on trial.
    Testing,
    /// `'3'` STATE_FAILED: the update failed (or the bootloader fell back).
    Failed,
    /// `'4'` STATE_NOT_AVAILABLE: no `ustate` in the environment.
    NotAvailable,
    /// `'5'` STATE_ERROR.
    Error,
    /// `'6'` STATE_WAIT.
    Wait,
    /// `'7'` STATE_IN_PROGRESS.
    InProgress,
}

impl UpdateState {
    /// The ASCII digit SWUpdate stores.
    pub fn as_char(self) -> u8 {
        match self {
            UpdateState::Ok => b'0',
            UpdateState::Installed => b'1',
            UpdateState::Testing => b'2',
            UpdateState::Failed => b'3',
            UpdateState::NotAvailable => b'4',
            UpdateState::Error => b'5',
            UpdateState::Wait => b'6',
            UpdateState::InProgress => b'7',
        }
    }

    /// Decodes the ASCII digit.
    pub fn from_char(c: u8) -> Result<UpdateState, DecodeError> {
        Ok(match c {
            b'0' => UpdateState::Ok,
            b'1' => UpdateState::Installed,
            b'2' => UpdateState::Testing,
            b'3' => UpdateState::Failed,
            b'4' => UpdateState::NotAvailable,
            b'5' => UpdateState::Error,
            b'6' => UpdateState::Wait,
            b'7' => UpdateState::InProgress,
            other => return Err(DecodeError::BadUpdateState(other)),
        })
    }
}

/// `struct swupdate_request`: the options of one installation.
///
/// `Default` is what `swupdate_prepare_req()` produces: API version 1 and
/// everything else zero, i.e. the daemon's own `-e` selection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstallRequest {
    /// Who triggers the installation; echoed on the progress socket.
    pub source: SourceType,
    /// Dry-run override.
    pub dry_run: RunType,
    /// `len`: size of the `.swu` if known. Informational: 2022.12's installer
    /// does not read it (its webserver fills it with the upload size).
    pub len: usize,
    /// Free text (≤ 511 bytes), echoed in the progress socket's START frame.
    pub info: String,
    /// Software set to install, e.g. `stable` (≤ 255 bytes). Both this and
    /// `running_mode` must be set, and the pair must be in swupdate's `-q`
    /// list, or SWUpdate answers NACK. Empty means the `-e` default.
    pub software_set: String,
    /// Mode within the set, e.g. `copy2` (≤ 255 bytes).
    pub running_mode: String,
    /// Do not save the stream to swupdate's `-o` file.
    pub disable_store_swu: bool,
}

/// `versions`: the bounds for `SET_VERSIONS_RANGE`. An empty string leaves
/// that bound as it is in the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionsRange {
    /// Refuse releases older than this (`-N`).
    pub minimum: String,
    /// Refuse releases newer than this (`--max-version`).
    pub maximum: String,
    /// The running version (`-R` refuses reinstalling it).
    pub current: String,
}

/// A request a client sends on the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// `REQ_INSTALL`.
    Install(InstallRequest),
    /// `GET_STATUS`.
    GetStatus,
    /// `POST_UPDATE` (runs swupdate's `-p` command).
    PostUpdate,
    /// `SET_UPDATE_STATE`.
    SetUpdateState(UpdateState),
    /// `GET_UPDATE_STATE`.
    GetUpdateState,
    /// `SET_VERSIONS_RANGE`.
    SetVersionsRange(VersionsRange),
    /// `NOTIFY_STREAM`.
    NotifyStream,
    /// `GET_HW_REVISION`.
    GetHwRevision,
}

impl Request {
    /// The message type sent for this request.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Request::Install(_) => MsgType::ReqInstall,
            Request::GetStatus => MsgType::GetStatus,
            Request::PostUpdate => MsgType::PostUpdate,
            Request::SetUpdateState(_) => MsgType::SetUpdateState,
            Request::GetUpdateState => MsgType::GetUpdateState,
            Request::SetVersionsRange(_) => MsgType::SetVersionsRange,
            Request::NotifyStream => MsgType::NotifyStream,
            Request::GetHwRevision => MsgType::GetHwRevision,
        }
    }

    /// Builds the full `ipc_message`, zero-filled like SWUpdate's own client.
    pub fn encode(&self) -> Result<[u8; IPC_MESSAGE_SIZE], EncodeError> {
        use layout::*;
        let mut buf = [0u8; IPC_MESSAGE_SIZE];
        put_i32(&mut buf, MAGIC, IPC_MAGIC);
        put_i32(&mut buf, TYPE, self.msg_type().code());
        let data = &mut buf[DATA..];
        match self {
            Request::Install(req) => {
                put_u32(data, REQ_APIVERSION, SWUPDATE_API_VERSION);
                put_u32(data, REQ_SOURCE, req.source.code());
                put_i32(data, REQ_DRY_RUN, req.dry_run.code());
                put_usize(data, REQ_LEN, req.len);
                put_cstr(data, REQ_INFO, 512, &req.info, "info")?;
                put_cstr(
                    data,
                    REQ_SOFTWARE_SET,
                    256,
                    &req.software_set,
                    "software_set",
                )?;
                put_cstr(
                    data,
                    REQ_RUNNING_MODE,
                    256,
                    &req.running_mode,
                    "running_mode",
                )?;
                data[REQ_DISABLE_STORE_SWU] = u8::from(req.disable_store_swu);
            }
            // The server reads `*(update_state_t *)msg.data.msg`: an int
            // holding the ASCII digit, in host byte order.
            Request::SetUpdateState(state) => put_i32(data, 0, i32::from(state.as_char())),
            Request::SetVersionsRange(v) => {
                put_cstr(data, 0, VERSION_LEN, &v.minimum, "minimum_version")?;
                put_cstr(
                    data,
                    VERSION_LEN,
                    VERSION_LEN,
                    &v.maximum,
                    "maximum_version",
                )?;
                put_cstr(
                    data,
                    2 * VERSION_LEN,
                    VERSION_LEN,
                    &v.current,
                    "current_version",
                )?;
            }
            Request::GetStatus
            | Request::PostUpdate
            | Request::GetUpdateState
            | Request::NotifyStream
            | Request::GetHwRevision => {}
        }
        Ok(buf)
    }

    /// Decodes a request as SWUpdate's server would (for fakes and fuzzing).
    pub fn decode(buf: &[u8]) -> Result<Request, DecodeError> {
        use layout::*;
        let (msg_type, data) = split_header(buf)?;
        let code = msg_type;
        let Some(msg_type) = MsgType::from_code(msg_type) else {
            return Err(DecodeError::UnknownType(code));
        };
        Ok(match msg_type {
            MsgType::ReqInstall => Request::Install(InstallRequest {
                source: SourceType::from_code(get_u32(data, REQ_SOURCE)),
                dry_run: RunType::from_code(get_i32(data, REQ_DRY_RUN)).unwrap_or_default(),
                len: get_usize(data, REQ_LEN),
                info: get_cstr(data, REQ_INFO, 512),
                software_set: get_cstr(data, REQ_SOFTWARE_SET, 256),
                running_mode: get_cstr(data, REQ_RUNNING_MODE, 256),
                disable_store_swu: data[REQ_DISABLE_STORE_SWU] != 0,
            }),
            MsgType::GetStatus => Request::GetStatus,
            MsgType::PostUpdate => Request::PostUpdate,
            MsgType::SetUpdateState => {
                let value = get_i32(data, 0);
                let c = u8::try_from(value).map_err(|_| DecodeError::BadUpdateState(0xff))?;
                Request::SetUpdateState(UpdateState::from_char(c)?)
            }
            MsgType::GetUpdateState => Request::GetUpdateState,
            MsgType::SetVersionsRange => Request::SetVersionsRange(VersionsRange {
                minimum: get_cstr(data, 0, VERSION_LEN),
                maximum: get_cstr(data, VERSION_LEN, VERSION_LEN),
                current: get_cstr(data, 2 * VERSION_LEN, VERSION_LEN),
            }),
            MsgType::NotifyStream => Request::NotifyStream,
            MsgType::GetHwRevision => Request::GetHwRevision,
            _ => return Err(DecodeError::UnknownType(code)),
        })
    }
}

/// Checks length and magic; returns the raw type and the `msgdata` bytes.
fn split_header(buf: &[u8]) -> Result<(i32, &[u8]), DecodeError> {
    if buf.len() != IPC_MESSAGE_SIZE {
        return Err(DecodeError::WrongLength {
            expected: IPC_MESSAGE_SIZE,
            actual: buf.len(),
        });
    }
    let magic = get_i32(buf, layout::MAGIC);
    if magic != IPC_MAGIC {
        return Err(DecodeError::BadMagic(magic));
    }
    Ok((get_i32(buf, layout::TYPE), &buf[layout::DATA..]))
}

/// A message received on the control socket. What `data` means depends on
/// the request it answers, so the accessors below read it as one union
/// member each; the [`Client`](crate::Client) picks the right one.
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    raw_type: i32,
    data: Box<[u8]>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // 3 KiB of mostly zeros helps nobody in a log.
        f.debug_struct("Reply")
            .field("type", &self.msg_type())
            .field("text", &self.text())
            .finish_non_exhaustive()
    }
}

/// `data.status`: the answer to `GET_STATUS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The installer's state, or the state of the notification popped with
    /// this answer (SWUpdate overwrites it when it pops one).
    pub current: RecoveryStatus,
    /// Result of the last finished installation.
    pub last_result: RecoveryStatus,
    /// Error code (of the notification, if one was popped).
    pub error: i32,
    /// One queued notification, or empty when the queue is empty.
    pub desc: String,
}

/// `data.notify`: one message of a `NOTIFY_STREAM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// State the notification belongs to (`Failure` for errors).
    pub status: RecoveryStatus,
    /// Error code.
    pub error: i32,
    /// Log level: 1 error, 2 warn, 3 info, 4 trace, 5 debug.
    pub level: i32,
    /// The text.
    pub msg: String,
}

/// `data.revisions`: the answer to `GET_HW_REVISION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwRevision {
    /// Board name (`/etc/hwrevision` first word, or `-H board:rev`).
    pub boardname: String,
    /// Revision.
    pub revision: String,
}

impl Reply {
    /// Decodes exactly one `ipc_message`, checking its size and magic.
    pub fn decode(buf: &[u8]) -> Result<Reply, DecodeError> {
        let (raw_type, data) = split_header(buf)?;
        Ok(Reply {
            raw_type,
            data: data.into(),
        })
    }

    /// The message type, if known.
    pub fn msg_type(&self) -> Option<MsgType> {
        MsgType::from_code(self.raw_type)
    }

    /// The raw `type` field.
    pub fn raw_type(&self) -> i32 {
        self.raw_type
    }

    /// The raw `msgdata` union bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// `data.msg[128]` as text: SWUpdate's reason in a NACK
    /// (e.g. "Installation in progress").
    pub fn text(&self) -> String {
        get_cstr(&self.data, 0, layout::MSG_TEXT_LEN)
    }

    /// Reads `data.status` (answer to `GET_STATUS`).
    pub fn status(&self) -> Status {
        Status {
            current: RecoveryStatus::from_code(get_u32(&self.data, 0)),
            last_result: RecoveryStatus::from_code(get_u32(&self.data, 4)),
            error: get_i32(&self.data, 8),
            desc: get_cstr(&self.data, layout::STATUS_DESC, layout::STATUS_DESC_LEN),
        }
    }

    /// Reads `data.notify` (messages of a `NOTIFY_STREAM`).
    pub fn notification(&self) -> Notification {
        Notification {
            status: RecoveryStatus::from_code(get_u32(&self.data, 0)),
            error: get_i32(&self.data, 4),
            level: get_i32(&self.data, 8),
            msg: get_cstr(&self.data, layout::STATUS_DESC, layout::STATUS_DESC_LEN),
        }
    }

    /// Reads `data.msg[0]` (answer to `GET_UPDATE_STATE`).
    pub fn update_state(&self) -> Result<UpdateState, DecodeError> {
        UpdateState::from_char(self.data[0])
    }

    /// Reads `data.revisions` (answer to `GET_HW_REVISION`).
    pub fn hw_revision(&self) -> HwRevision {
        HwRevision {
            boardname: get_cstr(&self.data, 0, layout::VERSION_LEN),
            revision: get_cstr(&self.data, layout::VERSION_LEN, layout::VERSION_LEN),
        }
    }

    /// Builds a reply as SWUpdate's server would, for fakes and tests:
    /// `data` is copied to the start of the union (the rest stays zero).
    pub fn encode(msg_type: MsgType, data: &[u8]) -> [u8; IPC_MESSAGE_SIZE] {
        let mut buf = [0u8; IPC_MESSAGE_SIZE];
        put_i32(&mut buf, layout::MAGIC, IPC_MAGIC);
        put_i32(&mut buf, layout::TYPE, msg_type.code());
        let n = data.len().min(layout::DATA_SIZE);
        buf[layout::DATA..layout::DATA + n].copy_from_slice(&data[..n]);
        buf
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ne32(v: u32) -> [u8; 4] {
        v.to_ne_bytes()
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn lp64_layout_matches_the_c_structs() {
        assert_eq!(IPC_MESSAGE_SIZE, 3120);
        assert_eq!(layout::DATA_SIZE, 3112);
        assert_eq!(layout::REQ_SIZE, 1056);
        assert_eq!(layout::REQ_LEN, 16);
        assert_eq!(layout::REQ_INFO, 24);
        assert_eq!(layout::REQ_SOFTWARE_SET, 536);
        assert_eq!(layout::REQ_RUNNING_MODE, 792);
        assert_eq!(layout::REQ_DISABLE_STORE_SWU, 1048);
        assert_eq!(layout::INSTMSG_LEN, 1056);
        assert_eq!(layout::INSTMSG_BUF, 1060);
    }

    #[cfg(target_pointer_width = "32")]
    #[test]
    fn ilp32_layout_matches_the_c_structs() {
        assert_eq!(IPC_MESSAGE_SIZE, 3104);
        assert_eq!(layout::DATA_SIZE, 3096);
        assert_eq!(layout::REQ_SIZE, 1044);
        assert_eq!(layout::REQ_LEN, 12);
        assert_eq!(layout::REQ_INFO, 16);
        assert_eq!(layout::REQ_SOFTWARE_SET, 528);
        assert_eq!(layout::REQ_RUNNING_MODE, 784);
        assert_eq!(layout::REQ_DISABLE_STORE_SWU, 1040);
        assert_eq!(layout::INSTMSG_LEN, 1044);
        assert_eq!(layout::INSTMSG_BUF, 1048);
    }

    /// The numbers `gcc -m64` / `gcc -m32` print for SWUpdate's headers
    /// (2022.12 and 2026.05 agree), checked on any host.
    #[test]
    fn both_pointer_widths_match_gcc() {
        let lp64 = layout::ipc_layout(8);
        assert_eq!(
            (lp64.req_len, lp64.req_info, lp64.req_software_set),
            (16, 24, 536)
        );
        assert_eq!(
            (
                lp64.req_running_mode,
                lp64.req_disable_store_swu,
                lp64.req_size
            ),
            (792, 1048, 1056)
        );
        assert_eq!((lp64.data_size, lp64.message_size), (3112, 3120));
        let ilp32 = layout::ipc_layout(4);
        assert_eq!(
            (ilp32.req_len, ilp32.req_info, ilp32.req_software_set),
            (12, 16, 528)
        );
        assert_eq!(
            (
                ilp32.req_running_mode,
                ilp32.req_disable_store_swu,
                ilp32.req_size
            ),
            (784, 1040, 1044)
        );
        assert_eq!((ilp32.data_size, ilp32.message_size), (3096, 3104));
    }

    #[test]
    fn msg_type_codes_follow_the_c_enum() {
        assert_eq!(MsgType::ReqInstall.code(), 0);
        assert_eq!(MsgType::Nack.code(), 2);
        assert_eq!(MsgType::SetUpdateState.code(), 7);
        assert_eq!(MsgType::NotifyStream.code(), 11);
        assert_eq!(MsgType::GetHwRevision.code(), 12);
        assert_eq!(MsgType::SetDeltaUrl.code(), 15);
        for code in 0..16 {
            assert_eq!(MsgType::from_code(code).unwrap().code(), code);
        }
        assert_eq!(MsgType::from_code(16), None);
        assert_eq!(MsgType::from_code(-1), None);
    }

    #[test]
    fn get_status_is_magic_type_and_zeros() {
        let buf = Request::GetStatus.encode().unwrap();
        assert_eq!(buf.len(), IPC_MESSAGE_SIZE);
        assert_eq!(&buf[0..4], &0x1405_2001u32.to_ne_bytes());
        #[cfg(target_endian = "little")]
        assert_eq!(&buf[0..8], &[0x01, 0x20, 0x05, 0x14, 3, 0, 0, 0]);
        assert!(buf[8..].iter().all(|&b| b == 0));
    }

    #[test]
    fn install_request_lands_at_the_c_offsets() {
        let req = InstallRequest {
            source: SourceType::Local,
            dry_run: RunType::DryRun,
            len: 0x0102_0304,
            info: "hearth".into(),
            software_set: "stable".into(),
            running_mode: "copy2".into(),
            disable_store_swu: true,
        };
        let buf = Request::Install(req.clone()).encode().unwrap();
        let d = 8; // data offset
        assert_eq!(&buf[4..8], &0i32.to_ne_bytes()); // REQ_INSTALL
        assert_eq!(&buf[d..d + 4], &ne32(1)); // apiversion
        assert_eq!(&buf[d + 4..d + 8], &ne32(4)); // SOURCE_LOCAL
        assert_eq!(&buf[d + 8..d + 12], &ne32(1)); // RUN_DRYRUN
        #[cfg(target_pointer_width = "64")]
        {
            assert_eq!(&buf[d + 12..d + 16], &[0; 4]); // padding before size_t
            assert_eq!(&buf[d + 16..d + 24], &0x0102_0304u64.to_ne_bytes());
            assert_eq!(&buf[d + 24..d + 31], b"hearth\0");
            assert_eq!(&buf[d + 536..d + 543], b"stable\0");
            assert_eq!(&buf[d + 792..d + 798], b"copy2\0");
            assert_eq!(buf[d + 1048], 1);
            assert!(buf[d + 1049..].iter().all(|&b| b == 0));
        }
        #[cfg(target_pointer_width = "32")]
        {
            assert_eq!(&buf[d + 12..d + 16], &0x0102_0304u32.to_ne_bytes());
            assert_eq!(&buf[d + 16..d + 23], b"hearth\0");
            assert_eq!(&buf[d + 528..d + 535], b"stable\0");
            assert_eq!(&buf[d + 784..d + 790], b"copy2\0");
            assert_eq!(buf[d + 1040], 1);
            assert!(buf[d + 1041..].iter().all(|&b| b == 0));
        }
        assert_eq!(Request::decode(&buf).unwrap(), Request::Install(req));
    }

    #[test]
    fn default_install_request_is_what_swupdate_prepare_req_makes() {
        let buf = Request::Install(InstallRequest::default())
            .encode()
            .unwrap();
        assert_eq!(&buf[8..12], &ne32(1));
        assert!(buf[12..].iter().all(|&b| b == 0));
    }

    #[test]
    fn set_update_state_sends_the_digit_as_an_int() {
        let buf = Request::SetUpdateState(UpdateState::Testing)
            .encode()
            .unwrap();
        assert_eq!(&buf[4..8], &7i32.to_ne_bytes());
        assert_eq!(&buf[8..12], &(b'2' as i32).to_ne_bytes());
        #[cfg(target_endian = "little")]
        assert_eq!(&buf[8..12], &[0x32, 0, 0, 0]);
        assert!(buf[12..].iter().all(|&b| b == 0));
    }

    #[test]
    fn versions_range_fills_three_256_byte_strings() {
        let v = VersionsRange {
            minimum: "1.0".into(),
            maximum: "9.9".into(),
            current: "1.4.2".into(),
        };
        let buf = Request::SetVersionsRange(v.clone()).encode().unwrap();
        assert_eq!(&buf[4..8], &10i32.to_ne_bytes());
        assert_eq!(&buf[8..12], b"1.0\0");
        assert_eq!(&buf[8 + 256..8 + 260], b"9.9\0");
        assert_eq!(&buf[8 + 512..8 + 518], b"1.4.2\0");
        assert_eq!(Request::decode(&buf).unwrap(), Request::SetVersionsRange(v));
    }

    #[test]
    fn too_long_or_nul_strings_are_refused() {
        let req = InstallRequest {
            software_set: "x".repeat(256),
            ..Default::default()
        };
        assert_eq!(
            Request::Install(req).encode().unwrap_err(),
            EncodeError::FieldTooLong {
                field: "software_set",
                max: 255,
                len: 256
            }
        );
        let ok = InstallRequest {
            software_set: "x".repeat(255),
            ..Default::default()
        };
        assert!(Request::Install(ok).encode().is_ok());
        let nul = InstallRequest {
            info: "a\0b".into(),
            ..Default::default()
        };
        assert_eq!(
            Request::Install(nul).encode().unwrap_err(),
            EncodeError::InteriorNul { field: "info" }
        );
    }

    #[test]
    fn nack_text_is_read_from_data_msg() {
        let mut raw = vec![0u8; IPC_MESSAGE_SIZE];
        raw[0..4].copy_from_slice(&0x1405_2001i32.to_ne_bytes());
        raw[4..8].copy_from_slice(&2i32.to_ne_bytes());
        raw[8..32].copy_from_slice(b"Installation in progress");
        let reply = Reply::decode(&raw).unwrap();
        assert_eq!(reply.msg_type(), Some(MsgType::Nack));
        assert_eq!(reply.text(), "Installation in progress");
        assert_eq!(
            reply,
            Reply::decode(&Reply::encode(MsgType::Nack, b"Installation in progress")).unwrap()
        );
    }

    #[test]
    fn status_reply_fields() {
        let mut data = Vec::new();
        data.extend_from_slice(&ne32(2)); // current RUN
        data.extend_from_slice(&ne32(4)); // last_result FAILURE
        data.extend_from_slice(&1i32.to_ne_bytes()); // error
        data.extend_from_slice(b"ERROR : Signature verification failed\0");
        let reply = Reply::decode(&Reply::encode(MsgType::Ack, &data)).unwrap();
        assert_eq!(
            reply.status(),
            Status {
                current: RecoveryStatus::Run,
                last_result: RecoveryStatus::Failure,
                error: 1,
                desc: "ERROR : Signature verification failed".into(),
            }
        );
        let n = reply.notification();
        assert_eq!(n.status, RecoveryStatus::Run);
        assert_eq!(n.level, 1);
    }

    #[test]
    fn a_desc_filling_the_whole_field_is_read_without_nul() {
        let mut data = vec![0u8; 12];
        data.extend(std::iter::repeat_n(b'x', 2048));
        let reply = Reply::decode(&Reply::encode(MsgType::Ack, &data)).unwrap();
        assert_eq!(reply.status().desc.len(), 2048);
    }

    #[test]
    fn update_state_and_hw_revision_replies() {
        let reply = Reply::decode(&Reply::encode(MsgType::Ack, b"3")).unwrap();
        assert_eq!(reply.update_state().unwrap(), UpdateState::Failed);
        let reply = Reply::decode(&Reply::encode(MsgType::Ack, b"x")).unwrap();
        assert_eq!(
            reply.update_state().unwrap_err(),
            DecodeError::BadUpdateState(b'x')
        );
        let mut data = vec![0u8; 512];
        data[..6].copy_from_slice(b"hearth");
        data[256..259].copy_from_slice(b"1.0");
        let reply = Reply::decode(&Reply::encode(MsgType::Ack, &data)).unwrap();
        assert_eq!(
            reply.hw_revision(),
            HwRevision {
                boardname: "hearth".into(),
                revision: "1.0".into()
            }
        );
    }

    #[test]
    fn decode_rejects_wrong_size_and_magic() {
        assert_eq!(
            Reply::decode(&[0u8; 16]).unwrap_err(),
            DecodeError::WrongLength {
                expected: IPC_MESSAGE_SIZE,
                actual: 16
            }
        );
        let mut raw = Reply::encode(MsgType::Ack, &[]);
        raw[0] ^= 0xff;
        assert!(matches!(
            Reply::decode(&raw).unwrap_err(),
            DecodeError::BadMagic(_)
        ));
    }

    #[test]
    fn update_state_chars_round_trip() {
        for c in b'0'..=b'7' {
            assert_eq!(UpdateState::from_char(c).unwrap().as_char(), c);
        }
        assert!(UpdateState::from_char(b'8').is_err());
    }
}

//! A small blocking client over `UnixStream`: no threads, no async runtime.
//! Call it from a blocking context (in an async daemon, `spawn_blocking`).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, SocketKind};
use crate::msg::layout::{self, MSG_TEXT_LEN};
use crate::msg::{
    HwRevision, IPC_MESSAGE_SIZE, InstallRequest, MsgType, Notification, RecoveryStatus, Reply,
    Request, Status, UpdateState, VersionsRange,
};
use crate::progress::{CONNECT_ACK_SIZE, ConnectAck, ProgressMessage, ProgressProtocol};

/// Control socket of the Debian 2022.12 build (`CONFIG_SOCKET_CTRL_PATH`).
pub const DEFAULT_CONTROL_SOCKET: &str = "/tmp/sockinstctrl";
/// Progress socket of the Debian 2022.12 build (`CONFIG_SOCKET_PROGRESS_PATH`).
pub const DEFAULT_PROGRESS_SOCKET: &str = "/tmp/swupdateprog";

/// Where SWUpdate listens and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The control socket. 2022.12 uses its compiled-in path (Debian:
    /// `/tmp/sockinstctrl`); 2023.12+ prefer `$RUNTIME_DIRECTORY`; 2026.05
    /// uses `/run/swupdate` when writable.
    pub control_socket: PathBuf,
    /// The progress socket (Debian 2022.12: `/tmp/swupdateprog`).
    pub progress_socket: PathBuf,
    /// Read/write timeout for one request and its answer.
    pub io_timeout: Duration,
    /// Write timeout while streaming the `.swu`. SWUpdate reads the stream
    /// as fast as it can write the slot, so a long stall means it is stuck.
    /// `None` blocks forever.
    pub stream_timeout: Option<Duration>,
    /// How long [`Installer::finish`] waits for SWUpdate to report a result.
    pub install_timeout: Duration,
    /// Pause between two `GET_STATUS` polls when nothing new was reported.
    pub poll_interval: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
            progress_socket: PathBuf::from(DEFAULT_PROGRESS_SOCKET),
            io_timeout: Duration::from_secs(10),
            stream_timeout: Some(Duration::from_secs(300)),
            install_timeout: Duration::from_secs(3600),
            poll_interval: Duration::from_millis(250),
        }
    }
}

impl ClientConfig {
    /// The defaults with both sockets in `dir` (`dir/sockinstctrl`,
    /// `dir/swupdateprog`), e.g. `/run/swupdate` for newer releases.
    pub fn in_dir(dir: impl AsRef<Path>) -> ClientConfig {
        let dir = dir.as_ref();
        ClientConfig {
            control_socket: dir.join("sockinstctrl"),
            progress_socket: dir.join("swupdateprog"),
            ..ClientConfig::default()
        }
    }
}

/// A client for one SWUpdate daemon. Cheap to clone; every call opens its
/// own connection, as SWUpdate closes the control socket after each answer.
#[derive(Debug, Clone, Default)]
pub struct Client {
    config: ClientConfig,
}

/// What a successful installation reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    /// `.swu` bytes sent.
    pub bytes_written: u64,
    /// SWUpdate's notifications collected by `GET_STATUS` after the stream
    /// ended, oldest first. SWUpdate keeps only its last 100.
    pub log: Vec<String>,
}

impl Client {
    /// A client with the given configuration.
    pub fn new(config: ClientConfig) -> Client {
        Client { config }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    fn ctrl_path(&self) -> PathBuf {
        self.config.control_socket.clone()
    }

    fn io_err(&self, op: &'static str, source: io::Error) -> Error {
        Error::Io {
            kind: SocketKind::Control,
            path: self.ctrl_path(),
            op,
            source,
        }
    }

    fn connect(&self) -> Result<UnixStream, Error> {
        let stream =
            UnixStream::connect(&self.config.control_socket).map_err(|source| Error::Connect {
                kind: SocketKind::Control,
                path: self.ctrl_path(),
                source,
            })?;
        let timeout = Some(self.config.io_timeout);
        stream
            .set_read_timeout(timeout)
            .and_then(|()| stream.set_write_timeout(timeout))
            .map_err(|e| self.io_err("setting timeouts", e))?;
        Ok(stream)
    }

    /// Sends one message in a single `write()`: SWUpdate reads it with one
    /// `read()` and drops the connection if it gets fewer bytes.
    fn send(
        &self,
        stream: &mut UnixStream,
        request: &Request,
    ) -> Result<[u8; IPC_MESSAGE_SIZE], Error> {
        let buf = request.encode()?;
        let written = stream
            .write(&buf)
            .map_err(|e| self.io_err("sending a request", e))?;
        if written != buf.len() {
            return Err(Error::ShortWrite {
                path: self.ctrl_path(),
                request: request.msg_type(),
                written,
                expected: buf.len(),
            });
        }
        Ok(buf)
    }

    fn receive(&self, stream: &mut UnixStream) -> Result<Reply, Error> {
        let mut buf = vec![0u8; IPC_MESSAGE_SIZE];
        stream
            .read_exact(&mut buf)
            .map_err(|e| self.io_err("reading SWUpdate's answer", e))?;
        Reply::decode(&buf).map_err(|e| Error::Protocol {
            kind: SocketKind::Control,
            path: self.ctrl_path(),
            detail: e.to_string(),
        })
    }

    /// Turns anything but ACK into an error carrying SWUpdate's text.
    fn expect_ack(&self, sent: &[u8], request: MsgType, reply: Reply) -> Result<Reply, Error> {
        match reply.msg_type() {
            Some(MsgType::Ack) => Ok(reply),
            Some(MsgType::Nack) => {
                // SWUpdate answers in the request's own buffer and does not
                // always write a text (e.g. SET_UPDATE_STATE): then `msg`
                // still holds what we sent, which is no reason.
                let text = &reply.data()[..MSG_TEXT_LEN];
                let echoed = text == &sent[layout::DATA..layout::DATA + MSG_TEXT_LEN];
                Err(Error::Nack {
                    path: self.ctrl_path(),
                    request,
                    message: if echoed { String::new() } else { reply.text() },
                })
            }
            _ => Err(Error::Protocol {
                kind: SocketKind::Control,
                path: self.ctrl_path(),
                detail: format!(
                    "answer of type {} to {request:?}, expected ACK or NACK",
                    reply.raw_type()
                ),
            }),
        }
    }

    /// One request, one answer, on a fresh connection.
    fn call(&self, request: &Request) -> Result<Reply, Error> {
        let mut stream = self.connect()?;
        let sent = self.send(&mut stream, request)?;
        let reply = self.receive(&mut stream)?;
        self.expect_ack(&sent, request.msg_type(), reply)
    }

    /// `GET_STATUS`: the installer state plus one queued notification
    /// (which this call removes from SWUpdate's queue).
    pub fn get_status(&self) -> Result<Status, Error> {
        Ok(self.call(&Request::GetStatus)?.status())
    }

    /// `GET_UPDATE_STATE`: `ustate` from the bootloader environment
    /// ([`UpdateState::NotAvailable`] if unset).
    pub fn get_update_state(&self) -> Result<UpdateState, Error> {
        self.call(&Request::GetUpdateState)?
            .update_state()
            .map_err(|e| Error::Protocol {
                kind: SocketKind::Control,
                path: self.ctrl_path(),
                detail: e.to_string(),
            })
    }

    /// `SET_UPDATE_STATE`: writes `ustate` to the bootloader environment,
    /// e.g. [`UpdateState::Ok`] to confirm a new system after its health
    /// check. SWUpdate answers NACK if the bootloader write fails.
    pub fn set_update_state(&self, state: UpdateState) -> Result<(), Error> {
        self.call(&Request::SetUpdateState(state)).map(drop)
    }

    /// `SET_VERSIONS_RANGE`: the daemon refuses releases outside the range
    /// from now on (like `-N` and `--max-version`); empty strings leave a
    /// bound unchanged. It lasts until swupdate restarts.
    pub fn set_versions_range(&self, range: &VersionsRange) -> Result<(), Error> {
        self.call(&Request::SetVersionsRange(range.clone()))
            .map(drop)
    }

    /// `GET_HW_REVISION`: board name and revision as swupdate sees them.
    pub fn get_hw_revision(&self) -> Result<HwRevision, Error> {
        Ok(self.call(&Request::GetHwRevision)?.hw_revision())
    }

    /// `POST_UPDATE`: runs swupdate's `-p` command; returns SWUpdate's text.
    pub fn post_update(&self) -> Result<String, Error> {
        Ok(self.call(&Request::PostUpdate)?.text())
    }

    /// `REQ_INSTALL`: asks SWUpdate to start an installation and returns the
    /// open stream to write the `.swu` into. SWUpdate answers NACK when an
    /// installation is already running ("Installation in progress") or the
    /// requested selection is not allowed.
    pub fn start_install(&self, request: &InstallRequest) -> Result<Installer, Error> {
        let mut stream = self.connect()?;
        let install = Request::Install(request.clone());
        let sent = self.send(&mut stream, &install)?;
        let reply = self.receive(&mut stream)?;
        self.expect_ack(&sent, MsgType::ReqInstall, reply)?;
        stream
            .set_write_timeout(self.config.stream_timeout)
            .map_err(|e| self.io_err("setting the stream timeout", e))?;
        Ok(Installer {
            client: self.clone(),
            stream: Some(stream),
            bytes_written: 0,
        })
    }

    /// Installs the `.swu` read from `image` and waits for the result.
    ///
    /// If SWUpdate stops reading (it rejects a bad image as soon as it sees
    /// the problem and closes the socket), the error is SWUpdate's verdict,
    /// not the broken pipe.
    pub fn install(
        &self,
        request: &InstallRequest,
        mut image: impl Read,
    ) -> Result<InstallReport, Error> {
        let mut installer = self.start_install(request)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match image.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    // Closing a truncated stream makes SWUpdate fail the
                    // install; wait for that so the daemon is idle again.
                    let _ = installer.finish();
                    return Err(Error::ReadImage { source });
                }
            };
            if let Err(write_err) = installer.write_all(&buf[..n]) {
                // SWUpdate's verdict decides: it also closes its end right
                // after the cpio trailer, so a failed write of the trailing
                // block padding can still be a successful installation.
                return match installer.finish() {
                    Ok(report) => Ok(report),
                    Err(verdict @ Error::InstallFailed { .. }) => Err(verdict),
                    Err(_) => Err(self.io_err("streaming the .swu", write_err)),
                };
            }
        }
        installer.finish()
    }

    /// Waits until the installation that was acknowledged last has ended,
    /// polling `GET_STATUS` on a new connection each time, as SWUpdate's
    /// `ipc_wait_for_complete()` does.
    fn wait_for_result(&self, bytes_written: u64) -> Result<InstallReport, Error> {
        let started = Instant::now();
        let mut log = Vec::new();
        let mut errors = Vec::new();
        // SWUpdate empties its notification queue when it ACKs REQ_INSTALL,
        // so any notification (or a non-IDLE state) belongs to our install.
        // Before the installer thread wakes up the state is still IDLE with
        // the *previous* last_result, which must not be taken as ours.
        let mut seen_activity = false;
        loop {
            let status = self.get_status()?;
            let popped = !status.desc.is_empty();
            if popped {
                seen_activity = true;
                if status.current == RecoveryStatus::Failure {
                    errors.push(status.desc.clone());
                }
                log.push(status.desc);
            } else if status.current != RecoveryStatus::Idle {
                seen_activity = true;
            } else if seen_activity {
                // IDLE with an empty queue: the installer thread is done.
                return match status.last_result {
                    RecoveryStatus::Success => Ok(InstallReport { bytes_written, log }),
                    result => Err(Error::InstallFailed {
                        path: self.ctrl_path(),
                        result,
                        errors,
                        log,
                    }),
                };
            }
            if started.elapsed() >= self.config.install_timeout {
                return Err(Error::Timeout {
                    path: self.ctrl_path(),
                    waited: started.elapsed(),
                });
            }
            if !popped {
                std::thread::sleep(self.config.poll_interval);
            }
        }
    }

    /// `NOTIFY_STREAM`: subscribes to SWUpdate's notifications. The stream
    /// first replays the queued history, then follows live messages.
    pub fn notify_stream(&self) -> Result<NotifyStream, Error> {
        let mut stream = self.connect()?;
        let sent = self.send(&mut stream, &Request::NotifyStream)?;
        let reply = self.receive(&mut stream)?;
        self.expect_ack(&sent, MsgType::NotifyStream, reply)?;
        Ok(NotifyStream {
            client: self.clone(),
            stream,
        })
    }

    /// Connects to the progress socket. With `protocol.connect_ack`
    /// (2024.12+), waits for the acknowledgement, after which SWUpdate is
    /// known to send this connection every frame. 2022.12 sends none, so a
    /// frame emitted right after `connect()` returns may be missed.
    pub fn connect_progress(&self, protocol: ProgressProtocol) -> Result<ProgressStream, Error> {
        let path = self.config.progress_socket.clone();
        let io_err = |op, source| Error::Io {
            kind: SocketKind::Progress,
            path: self.config.progress_socket.clone(),
            op,
            source,
        };
        let mut stream = UnixStream::connect(&path).map_err(|source| Error::Connect {
            kind: SocketKind::Progress,
            path: path.clone(),
            source,
        })?;
        let mut ack = None;
        if protocol.connect_ack {
            stream
                .set_read_timeout(Some(self.config.io_timeout))
                .map_err(|e| io_err("setting timeouts", e))?;
            let mut buf = [0u8; CONNECT_ACK_SIZE];
            stream
                .read_exact(&mut buf)
                .map_err(|e| io_err("reading the connect acknowledgement", e))?;
            let decoded = ConnectAck::decode(&buf).map_err(|e| Error::Protocol {
                kind: SocketKind::Progress,
                path: path.clone(),
                detail: e.to_string(),
            })?;
            if decoded.major() != 2 {
                return Err(Error::Protocol {
                    kind: SocketKind::Progress,
                    path,
                    detail: format!(
                        "progress API version 0x{:08x}, this client speaks major 2",
                        decoded.apiversion
                    ),
                });
            }
            ack = Some(decoded);
        }
        stream
            .set_read_timeout(None)
            .map_err(|e| io_err("setting timeouts", e))?;
        Ok(ProgressStream {
            stream,
            path,
            protocol,
            ack,
        })
    }
}

/// An installation SWUpdate has accepted: write the `.swu` into it, then
/// call [`finish`](Installer::finish).
///
/// The socket may stay open as long as needed between writes (SWUpdate sets
/// no read timeout), so a downloader can resume an interrupted HTTPS
/// transfer with `Range` and keep writing. Dropping the `Installer` without
/// `finish` closes the stream early, and SWUpdate fails the installation.
#[derive(Debug)]
pub struct Installer {
    client: Client,
    stream: Option<UnixStream>,
    bytes_written: u64,
}

impl Installer {
    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Closes the stream (SWUpdate finds the end of the `.swu` from its cpio
    /// trailer) and waits for SWUpdate's verdict. Also call this after a
    /// write error: SWUpdate closes its end when it rejects an image, and
    /// this returns its reasons.
    pub fn finish(mut self) -> Result<InstallReport, Error> {
        drop(self.stream.take());
        self.client.wait_for_result(self.bytes_written)
    }
}

impl Write for Installer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        let n = stream.write(buf)?;
        self.bytes_written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The notifications of a `NOTIFY_STREAM` subscription.
#[derive(Debug)]
pub struct NotifyStream {
    client: Client,
    stream: UnixStream,
}

impl NotifyStream {
    /// Sets how long [`next_notification`](Self::next_notification) blocks
    /// (`None`: forever). The default is the client's `io_timeout`.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.stream
            .set_read_timeout(timeout)
            .map_err(|e| self.client.io_err("setting timeouts", e))
    }

    /// The next notification.
    pub fn next_notification(&mut self) -> Result<Notification, Error> {
        let reply = self.client.receive(&mut self.stream)?;
        match reply.msg_type() {
            Some(MsgType::NotifyStream) => Ok(reply.notification()),
            _ => Err(Error::Protocol {
                kind: SocketKind::Control,
                path: self.client.ctrl_path(),
                detail: format!(
                    "message of type {} in a notify stream, expected NOTIFY_STREAM (11)",
                    reply.raw_type()
                ),
            }),
        }
    }
}

/// A connection to the progress socket.
#[derive(Debug)]
pub struct ProgressStream {
    stream: UnixStream,
    path: PathBuf,
    protocol: ProgressProtocol,
    ack: Option<ConnectAck>,
}

impl ProgressStream {
    /// The server's acknowledgement, when the protocol has one.
    pub fn connect_ack(&self) -> Option<ConnectAck> {
        self.ack
    }

    /// Sets how long [`next_message`](Self::next_message) blocks
    /// (`None`, the default: forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.stream
            .set_read_timeout(timeout)
            .map_err(|source| Error::Io {
                kind: SocketKind::Progress,
                path: self.path.clone(),
                op: "setting timeouts",
                source,
            })
    }

    /// The next frame, decoded with the chosen layout.
    pub fn next_message(&mut self) -> Result<ProgressMessage, Error> {
        let mut buf = vec![0u8; self.protocol.layout.frame_size()];
        self.stream
            .read_exact(&mut buf)
            .map_err(|source| Error::Io {
                kind: SocketKind::Progress,
                path: self.path.clone(),
                op: "reading a progress frame",
                source,
            })?;
        ProgressMessage::decode(self.protocol.layout, &buf).map_err(|e| Error::Protocol {
            kind: SocketKind::Progress,
            path: self.path.clone(),
            detail: e.to_string(),
        })
    }
}

/// The 2024.12+/2025.12 progress handshake against a fake server (the real
/// binary on the test host is 2022.12, which has no handshake).
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::msg::SourceType;
    use crate::progress::{PROGRESS_API_V1, PROGRESS_API_V2, ProgressLayout};
    use std::os::unix::net::UnixListener;

    fn fake_progress_server(dir: &Path, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
        let listener = UnixListener::bind(dir.join("swupdateprog")).unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(&bytes).unwrap();
        })
    }

    fn frame() -> ProgressMessage {
        ProgressMessage {
            apiversion: PROGRESS_API_V2,
            status: RecoveryStatus::Start,
            nsteps: 1,
            source: SourceType::Local,
            info: "hearth".into(),
            ..Default::default()
        }
    }

    #[test]
    fn reads_the_2025_12_connect_ack_then_packed_frames() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = ConnectAck {
            apiversion: PROGRESS_API_V2,
        }
        .encode()
        .to_vec();
        bytes.extend(frame().encode(ProgressLayout::Packed2025_12).unwrap());
        let server = fake_progress_server(dir.path(), bytes);
        let client = Client::new(ClientConfig::in_dir(dir.path()));
        let mut progress = client
            .connect_progress(ProgressProtocol::SWUPDATE_2025_12)
            .unwrap();
        assert_eq!(
            progress.connect_ack(),
            Some(ConnectAck {
                apiversion: PROGRESS_API_V2
            })
        );
        assert_eq!(progress.next_message().unwrap(), frame());
        server.join().unwrap();
        // The server closed: the next read says so, naming the socket.
        let err = progress.next_message().unwrap_err();
        assert!(err.to_string().contains("swupdateprog"), "{err}");
    }

    #[test]
    fn refuses_a_progress_api_of_another_major() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = ConnectAck {
            apiversion: PROGRESS_API_V1,
        }
        .encode()
        .to_vec();
        let server = fake_progress_server(dir.path(), bytes);
        let client = Client::new(ClientConfig::in_dir(dir.path()));
        let err = client
            .connect_progress(ProgressProtocol::SWUPDATE_2024_12)
            .unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
        assert!(err.to_string().contains("0x00010000"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn refuses_a_bad_ack_magic() {
        let dir = tempfile::tempdir().unwrap();
        // A 2022.12 frame arriving where a 2024.12 ack is expected.
        let bytes = frame().encode(ProgressLayout::V2022_12).unwrap();
        let server = fake_progress_server(dir.path(), bytes);
        let client = Client::new(ClientConfig::in_dir(dir.path()));
        let err = client
            .connect_progress(ProgressProtocol::SWUPDATE_2024_12)
            .unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
        server.join().unwrap();
    }
}

//! The sockets: one thread per connection, blocking I/O, no runtime.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use swupdate_rs::MsgType;
use swupdate_rs::msg::{IPC_MESSAGE_SIZE, Reply, Request};

use crate::filter::{filter, is_ack};
use crate::version::RunningVersion;

/// Connections served at once, both sockets together. hearthd uses one or
/// two at a time (an installation's stream, a status poll, the progress).
pub const MAX_CONNECTIONS: usize = 8;

/// How the gate reaches SWUpdate and what floor it holds it to.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// SWUpdate's control socket (`sockinstctrl`).
    pub control_socket: PathBuf,
    /// SWUpdate's progress socket (`swupdateprog`).
    pub progress_socket: PathBuf,
    /// The version of the running system: the lowest minimum SWUpdate gets.
    pub running: RunningVersion,
    /// Deadline for a client's request and for SWUpdate's answer. Not
    /// applied to an installation's image stream, which may pause while a
    /// download resumes (SWUpdate sets no deadline there either).
    pub io_timeout: Duration,
}

impl GateConfig {
    /// SWUpdate's two sockets in `dir` (e.g. `/run/swupdate`).
    pub fn in_dir(dir: impl AsRef<Path>, running: RunningVersion) -> GateConfig {
        let dir = dir.as_ref();
        GateConfig {
            control_socket: dir.join("sockinstctrl"),
            progress_socket: dir.join("swupdateprog"),
            running,
            io_timeout: Duration::from_secs(30),
        }
    }
}

/// The gate: serves its own control and progress sockets and talks to
/// SWUpdate's on each client's behalf.
#[derive(Debug, Clone)]
pub struct Gate {
    config: Arc<GateConfig>,
    busy: Arc<AtomicUsize>,
}

/// Frees a connection slot when the connection's thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gate {
    /// A gate with this configuration.
    pub fn new(config: GateConfig) -> Gate {
        Gate {
            config: Arc::new(config),
            busy: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Serves the control socket on this thread and the progress socket (if
    /// any) on another; returns only when accepting fails.
    pub fn serve(&self, control: UnixListener, progress: Option<UnixListener>) -> io::Error {
        if let Some(progress) = progress {
            let gate = self.clone();
            std::thread::spawn(move || {
                let error = gate.accept_loop(&progress, Gate::relay_progress);
                log(&format!("progress socket: {error}"));
            });
        }
        self.accept_loop(&control, Gate::handle_control)
    }

    fn accept_loop(
        &self,
        listener: &UnixListener,
        handle: fn(&Gate, UnixStream) -> io::Result<()>,
    ) -> io::Error {
        loop {
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return e,
            };
            if self.busy.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                self.busy.fetch_sub(1, Ordering::SeqCst);
                log("too many connections; one refused");
                continue;
            }
            let slot = Slot(self.busy.clone());
            let gate = self.clone();
            std::thread::spawn(move || {
                let _slot = slot;
                if let Err(e) = handle(&gate, stream) {
                    log(&format!("connection ended: {e}"));
                }
            });
        }
    }

    /// One control connection: one request, checked and rewritten, one
    /// answer; after an acknowledged `REQ_INSTALL`, the image unchanged.
    fn handle_control(&self, mut client: UnixStream) -> io::Result<()> {
        let timeout = Some(self.config.io_timeout);
        client.set_read_timeout(timeout)?;
        client.set_write_timeout(timeout)?;
        let mut raw = vec![0u8; IPC_MESSAGE_SIZE];
        client.read_exact(&mut raw)?;
        let request = match filter(&raw, &self.config.running) {
            Ok(request) => request,
            Err(refusal) => {
                log(&refusal.to_string());
                return client.write_all(&Reply::encode(
                    MsgType::Nack,
                    refusal.to_string().as_bytes(),
                ));
            }
        };
        if let Request::SetVersionsRange(range) = &request {
            log(&format!(
                "version range to SWUpdate: minimum {:?}, maximum {:?}",
                range.minimum, range.maximum
            ));
        }
        let message = request
            .encode()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut swupdate = match self.connect(&self.config.control_socket) {
            Ok(s) => s,
            Err(e) => {
                let text = format!("hearth-update-gate cannot reach SWUpdate: {e}");
                log(&text);
                return client.write_all(&Reply::encode(MsgType::Nack, text.as_bytes()));
            }
        };
        // One write, as SWUpdate reads each message with a single read().
        let written = swupdate.write(&message)?;
        if written != message.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("SWUpdate took {written} of {} bytes", message.len()),
            ));
        }
        let mut reply = vec![0u8; IPC_MESSAGE_SIZE];
        swupdate.read_exact(&mut reply)?;
        client.write_all(&reply)?;
        if matches!(request, Request::Install(_)) && is_ack(&reply) {
            client.set_read_timeout(None)?;
            swupdate.set_write_timeout(None)?;
            stream_image(&mut client, &mut swupdate)?;
        }
        Ok(())
    }

    /// One progress connection: SWUpdate's frames to the client, nothing
    /// back (the progress socket takes no requests).
    fn relay_progress(&self, mut client: UnixStream) -> io::Result<()> {
        let mut swupdate = UnixStream::connect(&self.config.progress_socket)?;
        let result = io::copy(&mut swupdate, &mut client).map(drop);
        // Either side gone: so is the other.
        let _ = client.shutdown(Shutdown::Both);
        let _ = swupdate.shutdown(Shutdown::Both);
        result
    }

    fn connect(&self, path: &Path) -> io::Result<UnixStream> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(self.config.io_timeout))?;
        stream.set_write_timeout(Some(self.config.io_timeout))?;
        Ok(stream)
    }
}

/// Copies the image from the client to SWUpdate until the client closes
/// (then SWUpdate sees the end too) or SWUpdate stops reading (then the
/// client's connection is closed, so its next write fails as it would
/// against SWUpdate itself, and it asks `GET_STATUS` for the verdict).
fn stream_image(client: &mut UnixStream, swupdate: &mut UnixStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) => {
                let _ = swupdate.shutdown(Shutdown::Write);
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = swupdate.shutdown(Shutdown::Both);
                return Err(e);
            }
        };
        if let Err(e) = swupdate.write_all(&buf[..n]) {
            let _ = client.shutdown(Shutdown::Both);
            return Err(e);
        }
    }
}

/// One line to standard error, which systemd puts in the journal.
pub(crate) fn log(line: &str) {
    eprintln!("hearth-update-gate: {line}");
}

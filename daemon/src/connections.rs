//! The HTTPS server's connection slots, so that nobody on the network can
//! hold them all (slowloris, half-sent requests, idle TLS connections):
//!
//! - at most [`MAX_CONNECTIONS`] at once and [`PER_CLIENT`] per client
//!   address (IPv6: per /64);
//! - a **whole-request deadline**: from its accept, or from its previous
//!   answer, a connection has [`REQUEST_DEADLINE`] to complete the TLS
//!   handshake, the headers and the body, or it is closed;
//! - a connection counts as *busy* only while a complete request is being
//!   answered. When the slots are full, a new connection takes the slot of
//!   a connection that is still opening (half-sent or idle) from the
//!   client holding the most, oldest first, if that client holds more than
//!   the newcomer's: a flood from many addresses ends up with an equal
//!   share each, and the owner's first connection always gets in;
//! - connections are accepted on a thread of their own ([`Acceptor`]), so
//!   a flood that keeps the runtime busy with TLS handshakes never lets the
//!   kernel's accept queue fill up: a full queue drops everyone's
//!   connection attempts, the owner's too (each costs a 1 s SYN retry).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

/// Connections served at once. Bounds memory on a small device: each
/// holds TLS buffers and at most [`MAX_BODY`] of request body.
pub const MAX_CONNECTIONS: usize = 64;
/// Connections one client address may hold: a browser opens about six, and
/// behind NAT (QEMU's user networking included) several clients share one.
pub const PER_CLIENT: usize = 16;
/// Handshake, headers and body of one request, all together.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// The largest request body: every API body is a few fields of JSON.
pub const MAX_BODY: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Handshake, headers or body under way (or idle between requests)
    /// since this instant.
    Opening(Instant),
    /// A complete request is being answered.
    Busy,
}

/// One connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    client: IpAddr,
    phase: watch::Sender<Phase>,
    evicted: Notify,
    table: Arc<Connections>,
}

/// What a request carries so the body reader can mark its connection busy.
#[derive(Debug, Clone)]
pub struct SlotHandle(Arc<Slot>);

impl SlotHandle {
    /// The request is complete (headers and body read).
    pub fn busy(&self) {
        self.0.phase.send_replace(Phase::Busy);
    }

    /// The answer is written; the next request's deadline starts now.
    pub fn idle(&self) {
        self.0.phase.send_replace(Phase::Opening(Instant::now()));
    }
}

/// The open connections.
#[derive(Debug, Default)]
pub struct Connections {
    open: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    slots: HashMap<u64, std::sync::Weak<Slot>>,
}

/// Why a connection was ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It did not complete a request within [`REQUEST_DEADLINE`].
    Deadline,
    /// Its slot went to a newer connection.
    Evicted,
}

impl Connections {
    pub fn new() -> Arc<Connections> {
        Arc::default()
    }

    /// A slot for a new connection from `peer`, or `None` (close it at
    /// once) when its client already holds [`PER_CLIENT`], or every slot is
    /// taken by busy connections or by clients holding no more than it.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Arc<Slot>> {
        // Counted per address like the throttle (IPv6 per /64).
        let client = credentials::throttle::client_key(peer);
        // Declared before the guard so it drops after it: the last
        // reference to a slot removes it from the table, under the lock.
        let live: Vec<Arc<Slot>>;
        let mut table = self.lock();
        live = table.slots.values().filter_map(|s| s.upgrade()).collect();
        let mine = live.iter().filter(|s| s.client == client).count();
        if mine >= PER_CLIENT {
            return None;
        }
        if live.len() >= MAX_CONNECTIONS {
            evict_one(&mut table, &live, mine)?;
        }
        table.next_id += 1;
        let slot = Arc::new(Slot {
            id: table.next_id,
            client,
            phase: watch::Sender::new(Phase::Opening(Instant::now())),
            evicted: Notify::new(),
            table: self.clone(),
        });
        table.slots.insert(slot.id, Arc::downgrade(&slot));
        Some(slot)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Slot {
    pub fn handle(self: &Arc<Self>) -> SlotHandle {
        SlotHandle(self.clone())
    }

    /// Resolves when the connection must end: its request deadline passed
    /// while it was still opening, or its slot was taken.
    pub async fn ended(&self) -> Ended {
        let mut phase = self.phase.subscribe();
        loop {
            let current = *phase.borrow_and_update();
            let deadline = async {
                match current {
                    Phase::Opening(since) => {
                        tokio::time::sleep_until(since + REQUEST_DEADLINE).await
                    }
                    Phase::Busy => std::future::pending().await,
                }
            };
            tokio::select! {
                () = deadline => return Ended::Deadline,
                () = self.evicted.notified() => return Ended::Evicted,
                changed = phase.changed() => if changed.is_err() { return Ended::Evicted },
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.lock().slots.remove(&self.id);
    }
}

/// Ends a connection that is still opening, from the client holding the
/// most connections (oldest first), if that client holds more than the
/// newcomer's `mine`: slots drift towards an equal share instead of
/// churning. `None` when there is no such connection.
fn evict_one(table: &mut Table, live: &[Arc<Slot>], mine: usize) -> Option<()> {
    let held = |client: IpAddr| live.iter().filter(|s| s.client == client).count();
    let (victim, _) = live
        .iter()
        .filter_map(|s| match *s.phase.borrow() {
            Phase::Opening(since) => Some((s, since)),
            Phase::Busy => None,
        })
        .filter(|(s, _)| held(s.client) > mine)
        .max_by_key(|(s, since)| (held(s.client), std::cmp::Reverse(*since)))?;
    victim.evicted.notify_one();
    table.slots.remove(&victim.id);
    Some(())
}

/// How many connection attempts the kernel queues before the accept thread
/// takes them: a burst this large is absorbed without dropping a SYN (a
/// dropped SYN costs the client a 1 s retry). The kernel caps it at
/// `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`].
pub fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// An admitted connection, handed from the accept thread to the runtime.
#[derive(Debug)]
pub struct Admitted {
    pub stream: tokio::net::TcpStream,
    pub peer: SocketAddr,
    pub slot: Arc<Slot>,
}

/// The accept thread of one listener; dropping it stops the thread.
#[derive(Debug)]
pub struct Acceptor {
    stop: Arc<AtomicBool>,
}

impl Acceptor {
    /// Accepts on `listener` from a new thread, closes at once whatever
    /// [`Connections::admit`] refuses, and sends the rest to the returned
    /// receiver. Must be called inside the Tokio runtime.
    pub fn start(
        listener: tokio::net::TcpListener,
        connections: Arc<Connections>,
    ) -> std::io::Result<(Acceptor, mpsc::Receiver<Admitted>)> {
        let listener = listener.into_std()?;
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Handle::current();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(MAX_CONNECTIONS);
        let stopping = stop.clone();
        std::thread::Builder::new()
            .name("hearthd-accept".into())
            .spawn(move || accept_loop(&listener, &connections, &stopping, &tx, &runtime))?;
        Ok((Acceptor { stop }, rx))
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn accept_loop(
    listener: &std::net::TcpListener,
    connections: &Arc<Connections>,
    stop: &AtomicBool,
    admitted: &mpsc::Sender<Admitted>,
    runtime: &tokio::runtime::Handle,
) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    while !stop.load(Ordering::Relaxed) && !admitted.is_closed() {
        // Woken at least five times a second to see `stop`.
        let mut ready = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        if poll(&mut ready, PollTimeout::from(200u16)).unwrap_or(0) == 0 {
            continue;
        }
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(error) => {
                // Out of file descriptors and the like: back off, don't spin.
                tracing::warn!(%error, "accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Some(slot) = connections.admit(peer.ip()) else {
            tracing::debug!(%peer, "no free connection slot; closed");
            continue;
        };
        let stream = {
            let _runtime = runtime.enter();
            match stream
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpStream::from_std(stream))
            {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%error, "cannot hand over a connection");
                    continue;
                }
            }
        };
        if admitted
            .blocking_send(Admitted { stream, peer, slot })
            .is_err()
        {
            return;
        }
    }
}

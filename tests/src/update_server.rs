//! A static HTTPS file server on loopback, standing in for the vendor's
//! update server or CDN: serves a directory (what `hearth-release publish`
//! lays out), honours `Range: bytes=N-` and `bytes=N-M`, logs every
//! request, and can cut the next response short to test resumption, or
//! answer `Range` requests with other bytes (a hostile server). It can also present another
//! certificate (a man in the middle with a certificate from another CA) and
//! records the handshakes the client then aborts.
//!
//! Plain threads and rustls (ring); it binds 127.0.0.1 only.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// One request the server answered.
#[derive(Debug, Clone)]
pub struct Logged {
    pub path: String,
    /// The start of a `Range: bytes=N-` or `bytes=N-M` request.
    pub range_start: Option<u64>,
    /// The last byte asked for (`bytes=N-M`).
    pub range_end: Option<u64>,
    pub status: u16,
    /// Body bytes sent.
    pub sent: u64,
    /// When the response ended.
    pub at: Instant,
}

/// A TLS handshake that did not complete (the client refused the server).
#[derive(Debug, Clone)]
pub struct FailedHandshake {
    pub at: Instant,
    /// Whether the impostor's certificate was presented.
    pub impostor: bool,
    /// rustls's error on the server side (e.g. the client's alert).
    pub error: String,
}

#[derive(Debug, Default)]
struct Shared {
    log: Mutex<Vec<Logged>>,
    /// Artifact (`.swu`) requests, counted as they arrive.
    artifact_requests: AtomicUsize,
    /// Cut the next artifact (`.swu`) response after this many bytes.
    cut_next_after: AtomicU64,
    /// Answer `Range` requests from one byte further on (other bytes).
    shift_ranges: AtomicBool,
    /// Pause per 64 KiB chunk, in microseconds (to watch progress).
    pace_micros: AtomicU64,
    stopped: AtomicBool,
    /// Present this identity instead of the real one (a man in the middle).
    impostor: Mutex<Option<Arc<rustls::ServerConfig>>>,
    failed_handshakes: Mutex<Vec<FailedHandshake>>,
}

#[derive(Debug)]
pub struct UpdateServer {
    pub port: u16,
    pub root: PathBuf,
    shared: Arc<Shared>,
}

impl UpdateServer {
    /// Serves `root` with the certificate and key (PEM) given.
    pub fn start(root: &Path, cert: &Path, key: &Path) -> UpdateServer {
        let config = server_config(cert, key);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the update server");
        let port = listener.local_addr().expect("address").port();
        let shared = Arc::new(Shared {
            cut_next_after: AtomicU64::new(u64::MAX),
            ..Shared::default()
        });
        let (root_dir, state) = (root.to_path_buf(), shared.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if state.stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let impostor = state.impostor.lock().expect("lock").clone();
                let config = impostor.unwrap_or_else(|| config.clone());
                let (root, state) = (root_dir.clone(), state.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, config, &root, &state);
                });
            }
        });
        UpdateServer {
            port,
            root: root.to_path_buf(),
            shared,
        }
    }

    /// The next `.swu` response stops after `bytes` body bytes (once).
    pub fn cut_next_artifact_after(&self, bytes: u64) {
        self.shared.cut_next_after.store(bytes, Ordering::Relaxed);
    }

    /// From now on (`true`), `Range` requests are answered with the bytes
    /// one further on: the right length and status, other bytes.
    pub fn shift_ranges(&self, on: bool) {
        self.shared.shift_ranges.store(on, Ordering::Relaxed);
    }

    /// Body bytes sent for requests whose path ends with `suffix`.
    pub fn bytes_sent(&self, suffix: &str) -> u64 {
        self.log()
            .iter()
            .filter(|r| r.path.ends_with(suffix))
            .map(|r| r.sent)
            .sum()
    }

    /// Slows every response down to about `bytes_per_sec`.
    pub fn pace(&self, bytes_per_sec: u64) {
        let micros = 65_536 * 1_000_000 / bytes_per_sec.max(1);
        self.shared.pace_micros.store(micros, Ordering::Relaxed);
    }

    /// Each response, logged once it is over (sent or cut off).
    pub fn log(&self) -> Vec<Logged> {
        self.shared.log.lock().expect("lock").clone()
    }

    /// How many artifact (`.swu`) requests have arrived. Counted on arrival,
    /// not from [`log`](Self::log): a response still being written when the
    /// guest rebooted is logged only when that connection dies, which once
    /// made a count taken after the reboot look like a new fetch.
    pub fn artifact_requests(&self) -> usize {
        self.shared.artifact_requests.load(Ordering::Relaxed)
    }

    /// From now on, presents `cert`/`key` (PEM) instead of the real
    /// identity: a man in the middle.
    pub fn impersonate(&self, cert: &Path, key: &Path) {
        *self.shared.impostor.lock().expect("lock") = Some(server_config(cert, key));
    }

    /// Back to the real identity.
    pub fn stop_impersonating(&self) {
        *self.shared.impostor.lock().expect("lock") = None;
    }

    /// Handshakes the clients aborted, oldest first.
    pub fn failed_handshakes(&self) -> Vec<FailedHandshake> {
        self.shared.failed_handshakes.lock().expect("lock").clone()
    }
}

fn server_config(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    let certs = CertificateDer::pem_file_iter(cert)
        .expect("server certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("server certificate PEM");
    let key = PrivateKeyDer::from_pem_file(key).expect("server key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server identity");
    Arc::new(config)
}

impl Drop for UpdateServer {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    root: &Path,
    state: &Shared,
) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let impostor = state
        .impostor
        .lock()
        .expect("lock")
        .as_ref()
        .is_some_and(|i| Arc::ptr_eq(i, &config));
    let connection = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            state
                .failed_handshakes
                .lock()
                .expect("lock")
                .push(FailedHandshake {
                    at: Instant::now(),
                    impostor,
                    error: e.to_string(),
                });
            return Err(e);
        }
    }
    let mut reader = BufReader::new(&mut tls);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let (mut range_start, mut range_end) = (None, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("range: bytes=") {
            let (start, end) = value.trim().split_once('-').unwrap_or((value.trim(), ""));
            range_start = start.parse().ok();
            range_end = end.parse().ok();
        }
    }
    drop(reader);
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    if path.ends_with(".swu") {
        state.artifact_requests.fetch_add(1, Ordering::Relaxed);
    }
    let file = (!path.contains(".."))
        .then(|| root.join(path.trim_start_matches('/')))
        .filter(|p| p.is_file());
    let Some(file) = file else {
        tls.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        state.log.lock().expect("lock").push(Logged {
            path,
            range_start,
            range_end,
            status: 404,
            sent: 0,
            at: Instant::now(),
        });
        return Ok(());
    };
    let mut body = std::fs::File::open(&file)?;
    let len = body.metadata()?.len();
    let start = range_start.unwrap_or(0).min(len);
    let end = range_end.map_or(len, |e| (e + 1).min(len)).max(start);
    let head = match range_start {
        Some(_) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{len}\r\nConnection: close\r\n\r\n",
            end - start,
            end.saturating_sub(1)
        ),
        None => format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"),
    };
    tls.write_all(head.as_bytes())?;
    let shift = u64::from(range_start.is_some() && state.shift_ranges.load(Ordering::Relaxed));
    body.seek(SeekFrom::Start(start + shift))?;
    let cut = if path.ends_with(".swu") {
        state.cut_next_after.swap(u64::MAX, Ordering::Relaxed)
    } else {
        u64::MAX
    };
    let limit = cut.min(end - start);
    let mut sent = 0u64;
    let mut buf = vec![0u8; 65_536];
    let result = loop {
        let want = buf
            .len()
            .min(usize::try_from(limit - sent).unwrap_or(usize::MAX));
        if want == 0 {
            break Ok(());
        }
        let n = match body.read(&mut buf[..want]) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        if let Err(e) = tls.write_all(&buf[..n]) {
            break Err(e);
        }
        sent += n as u64;
        let pace = state.pace_micros.load(Ordering::Relaxed);
        if pace > 0 {
            std::thread::sleep(Duration::from_micros(pace));
        }
    };
    let _ = tls.flush();
    if sent < end - start {
        // Cut short: drop the TCP connection without a TLS close_notify.
        let _ = tls.sock.shutdown(std::net::Shutdown::Both);
    } else {
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
    state.log.lock().expect("lock").push(Logged {
        path,
        range_start,
        range_end,
        status: if range_start.is_some() { 206 } else { 200 },
        sent,
        at: Instant::now(),
    });
    result
}

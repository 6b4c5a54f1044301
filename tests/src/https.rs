//! An HTTPS client for the device's self-signed certificate.
//!
//! The device's certificate is made on the device, so no CA vouches for it.
//! The owner checks it by its fingerprint, shown on the console; this client
//! does the same: it accepts the certificate, records its SHA-256 fingerprint
//! (still checking the handshake signature against it), and the tests assert
//! that the fingerprint equals the console's.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// The header lines, lower-cased for matching; `raw_headers` keeps
    /// their case (cookie values are case-sensitive).
    pub headers: String,
    pub raw_headers: String,
    pub body: String,
    /// SHA-256 fingerprint of the certificate the server presented.
    pub fingerprint: String,
}

impl Response {
    /// `name=value` of the session cookie this answer sets, if any.
    pub fn session_cookie(&self) -> Option<String> {
        self.cookie("__Host-hearth_session")
    }

    /// `name=value` of the cookie called `name` that this answer sets.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.raw_headers
            .lines()
            .filter_map(|line| {
                line.strip_prefix("set-cookie: ")
                    .or_else(|| line.strip_prefix("Set-Cookie: "))
            })
            .find(|cookie| cookie.starts_with(&format!("{name}=")))
            .and_then(|cookie| cookie.split(';').next())
            .map(str::to_owned)
    }

    /// The `Retry-After` seconds of the answer, if it has one.
    pub fn retry_after(&self) -> Option<u64> {
        self.headers
            .lines()
            .find_map(|l| l.strip_prefix("retry-after:"))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// GET `path` from the device behind `127.0.0.1:port`.
pub fn get(port: u16, path: &str) -> Result<Response, String> {
    request(
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        "GET",
        path,
        &[],
        None,
    )
}

/// One HTTPS request with extra headers and an optional JSON body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    json_body: Option<&str>,
) -> Result<Response, String> {
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    // A guest that resets mid-request leaves QEMU's end of the connection
    // open: without a limit the read would wait for ever.
    let limit = Some(Duration::from_secs(60));
    sock.set_read_timeout(limit)
        .and_then(|()| sock.set_write_timeout(limit))
        .map_err(|e| e.to_string())?;
    exchange(sock, addr, method, path, headers, json_body)
}

/// The same request sent from `source`, another loopback address such as
/// 127.0.0.7: tests use them as different clients on the owner's network.
pub fn request_from(
    source: IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    json_body: Option<&str>,
) -> Result<Response, String> {
    let limit = Duration::from_secs(60);
    request_within(source, addr, method, path, headers, json_body, limit)
}

/// `request_from` that gives up after `limit` (connect, send and read
/// each), for tests that time the device's answers.
pub fn request_within(
    source: IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    json_body: Option<&str>,
    limit: Duration,
) -> Result<Response, String> {
    let sock = connect_from(source, addr, limit)?;
    sock.set_read_timeout(Some(limit))
        .and_then(|()| sock.set_write_timeout(Some(limit)))
        .map_err(|e| e.to_string())?;
    exchange(sock, addr, method, path, headers, json_body)
}

/// A TCP connection to `addr` whose local address is `source` (std cannot
/// bind before it connects), given up after `limit`.
pub fn connect_from(
    source: IpAddr,
    addr: SocketAddr,
    limit: Duration,
) -> Result<TcpStream, String> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrStorage, bind, connect, setsockopt, socket,
        sockopt,
    };
    let family = match source {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| format!("socket: {e}"))?;
    use std::os::fd::AsRawFd;
    bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(source, 0)),
    )
    .map_err(|e| format!("bind {source}: {e}"))?;
    // Linux bounds a blocking connect() by the send timeout.
    let timeout = nix::sys::time::TimeVal::new(
        i64::try_from(limit.as_secs()).unwrap_or(i64::MAX),
        i64::from(limit.subsec_micros()),
    );
    setsockopt(&fd, sockopt::SendTimeout, &timeout).map_err(|e| format!("timeout: {e}"))?;
    connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(|e| match e {
        nix::errno::Errno::EINPROGRESS => {
            format!("connect {source} -> {addr}: no answer within {limit:?}")
        }
        e => format!("connect {source} -> {addr}: {e}"),
    })?;
    Ok(TcpStream::from(fd))
}

/// A TLS client configuration that accepts any server certificate (and
/// checks the handshake signature): for tests that open many connections
/// to the device and do not need its fingerprint.
pub fn accepting_client_config() -> Arc<rustls::ClientConfig> {
    Arc::new(client_config(Arc::new(Recorder::default())).expect("TLS with ring"))
}

/// TLS 1.3 and 1.2 with ring, the server's certificate judged by `verifier`.
fn client_config(verifier: Arc<Recorder>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn exchange(
    sock: TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    json_body: Option<&str>,
) -> Result<Response, String> {
    let verifier = Arc::new(Recorder::default());
    let config = client_config(verifier.clone())?;
    let name = ServerName::try_from("hearth.local").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    // Callers that set their own limits keep them.
    if sock.read_timeout().ok().flatten().is_none() {
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        sock.set_write_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
    }
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    match json_body {
        Some(body) => request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )),
        None => request.push_str("\r\n"),
    }
    tls.write_all(request.as_bytes())
        .map_err(|e| format!("TLS handshake or request to {addr}: {e}"))?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // A server that closes without close_notify after a complete answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(format!("reading the answer from {addr}: {e}")),
    }
    let fingerprint = verifier
        .seen
        .lock()
        .map_err(|_| "verifier lock poisoned".to_owned())?
        .clone()
        .ok_or("the server presented no certificate")?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok(Response {
        status,
        headers: head.to_ascii_lowercase(),
        raw_headers: head.to_owned(),
        body: body.to_owned(),
        fingerprint,
    })
}

#[derive(Debug)]
struct Recorder {
    seen: Mutex<Option<String>>,
    provider: CryptoProvider,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            seen: Mutex::new(None),
            provider: rustls::crypto::ring::default_provider(),
        }
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Accepted here, judged by the test: its fingerprint must be the
        // one on the device's console.
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(crate::fingerprint_of(end_entity));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

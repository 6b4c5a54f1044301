//! HTTPS for updates: the model's manifest (small, capped) and the artifact
//! (streamed, resumed with `Range` after a dropped connection).
//!
//! The artifact never touches the disk: [`Fetcher::stream`] pushes chunks
//! into a small bounded channel that [`ChannelReader`] turns back into a
//! `Read` for the blocking install, so memory stays flat whatever the size,
//! and the SWUpdate socket stays open across reconnects. Every connection
//! has a connect and a read timeout; no more than the manifest's `size`
//! bytes are ever accepted (endless-data attacks end there).

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use update_manifest::ArtifactUrl;

/// Chunks in flight between the download and SWUpdate (each at most one
/// TLS record's worth, ~16 KiB): a few hundred KiB at most.
const CHANNEL_DEPTH: usize = 16;
/// The longest pause between two download attempts.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("cannot read the update CA bundle {path}: {reason}. Check update.ca_file")]
    Ca { path: PathBuf, reason: String },
    #[error("{url}: {reason}")]
    Failed { url: String, reason: String },
    #[error("{url}: the server sent more than the {limit} bytes expected; download abandoned")]
    TooLong { url: String, limit: u64 },
    #[error("gave up after {attempts} attempts; the last error: {last}")]
    GaveUp {
        attempts: u32,
        last: Box<DownloadError>,
    },
    #[error("the installer stopped reading the download")]
    ReceiverGone,
}

/// Downloads over rustls with the update CA bundle as the only trust.
#[derive(Clone)]
pub struct Fetcher {
    tls: TlsConnector,
    connect_timeout: Duration,
    read_timeout: Duration,
    attempts: u32,
}

impl Fetcher {
    pub fn new(
        ca_file: &Path,
        connect_timeout: Duration,
        read_timeout: Duration,
        attempts: u32,
    ) -> Result<Fetcher, DownloadError> {
        let ca_err = |reason: String| DownloadError::Ca {
            path: ca_file.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(ca_file)
            .map_err(|e| ca_err(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ca_err(e.to_string()))?;
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(ca_err("it holds no usable CA certificate".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ca_err(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Fetcher {
            tls: TlsConnector::from(Arc::new(config)),
            connect_timeout,
            read_timeout,
            attempts,
        })
    }

    /// A small document (the manifest), at most `limit` bytes.
    pub async fn fetch_small(
        &self,
        url: &ArtifactUrl,
        limit: usize,
    ) -> Result<Vec<u8>, DownloadError> {
        let out = self.read_at_most(url, limit.saturating_add(1)).await?;
        if out.len() > limit {
            return Err(DownloadError::TooLong {
                url: url.to_string(),
                limit: limit as u64,
            });
        }
        Ok(out)
    }

    /// A small file (the chunk index) from the first of `urls` that
    /// answers, retried like [`Fetcher::stream`]: at most `limit` bytes
    /// however much the server sends, and no more checks, since the caller
    /// judges what came against what it expects.
    pub async fn fetch_at_most(
        &self,
        urls: &[ArtifactUrl],
        limit: usize,
    ) -> Result<Vec<u8>, DownloadError> {
        let mut pause = Duration::from_secs(1);
        let mut last = None;
        for attempt in 0..self.attempts {
            let Some(url) = urls.get(attempt as usize % urls.len().max(1)) else {
                break;
            };
            match self.read_at_most(url, limit).await {
                Ok(bytes) => return Ok(bytes),
                Err(error) => {
                    tracing::warn!(%error, attempt = attempt + 1, "download failed; trying again");
                    last = Some(error);
                }
            }
            self.pause_after(attempt, &mut pause).await;
        }
        Err(self.gave_up(last))
    }

    /// Waits before the next attempt, twice as long each time.
    async fn pause_after(&self, attempt: u32, pause: &mut Duration) {
        if attempt + 1 < self.attempts {
            tokio::time::sleep(*pause).await;
            *pause = (*pause * 2).min(MAX_RETRY_PAUSE);
        }
    }

    fn gave_up(&self, last: Option<DownloadError>) -> DownloadError {
        DownloadError::GaveUp {
            attempts: self.attempts,
            last: Box::new(last.unwrap_or(DownloadError::Failed {
                url: String::new(),
                reason: "no URL to download from".into(),
            })),
        }
    }

    async fn read_at_most(
        &self,
        url: &ArtifactUrl,
        limit: usize,
    ) -> Result<Vec<u8>, DownloadError> {
        let mut body = self.get(url, 0, None).await?;
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk(url, &mut body).await? {
            let room = limit - out.len();
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Streams exactly `size` bytes from the first URL that works into
    /// `sink`, resuming with `Range` after errors. `progress` gets the bytes
    /// delivered so far. Errors are sent into the sink too, so the reader
    /// (and so SWUpdate) sees the download fail instead of a short file.
    pub async fn stream(
        &self,
        urls: &[ArtifactUrl],
        size: u64,
        sink: mpsc::Sender<io::Result<Bytes>>,
        progress: impl Fn(u64),
    ) -> Result<(), DownloadError> {
        self.stream_range(
            urls,
            Span {
                start: 0,
                len: size,
                whole: true,
            },
            sink,
            progress,
        )
        .await
    }

    /// [`stream`](Self::stream) of `part` of the file: `Range` requests
    /// from the start (a delta release's pack segments).
    pub async fn stream_range(
        &self,
        urls: &[ArtifactUrl],
        part: Span,
        sink: mpsc::Sender<io::Result<Bytes>>,
        progress: impl Fn(u64),
    ) -> Result<(), DownloadError> {
        let result = self.stream_inner(urls, part, &sink, &progress).await;
        if let Err(error) = &result
            && !matches!(error, DownloadError::ReceiverGone)
        {
            let _ = sink.send(Err(io::Error::other(error.to_string()))).await;
        }
        result
    }

    async fn stream_inner(
        &self,
        urls: &[ArtifactUrl],
        part: Span,
        sink: &mpsc::Sender<io::Result<Bytes>>,
        progress: &impl Fn(u64),
    ) -> Result<(), DownloadError> {
        let mut delivered = 0u64;
        let mut pause = Duration::from_secs(1);
        let mut last = None;
        for attempt in 0..self.attempts {
            // Mirrors in turn: a mirror that fails hands over to the next.
            let url = &urls[attempt as usize % urls.len().max(1)];
            match self
                .stream_from(url, part, &mut delivered, sink, progress)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e @ (DownloadError::TooLong { .. } | DownloadError::ReceiverGone)) => {
                    return Err(e);
                }
                Err(error) => {
                    tracing::warn!(%error, delivered, attempt = attempt + 1, "download interrupted; resuming");
                    last = Some(error);
                }
            }
            self.pause_after(attempt, &mut pause).await;
        }
        Err(self.gave_up(last))
    }

    async fn stream_from(
        &self,
        url: &ArtifactUrl,
        part: Span,
        delivered: &mut u64,
        sink: &mpsc::Sender<io::Result<Bytes>>,
        progress: &impl Fn(u64),
    ) -> Result<(), DownloadError> {
        let size = part.len;
        let end = (!part.whole).then(|| part.start + part.len - 1);
        let mut body = self.get(url, part.start + *delivered, end).await?;
        while let Some(chunk) = self.next_chunk(url, &mut body).await? {
            if *delivered + chunk.len() as u64 > size {
                return Err(DownloadError::TooLong {
                    url: url.to_string(),
                    limit: size,
                });
            }
            *delivered += chunk.len() as u64;
            sink.send(Ok(chunk))
                .await
                .map_err(|_| DownloadError::ReceiverGone)?;
            progress(*delivered);
        }
        if *delivered < size {
            return Err(failed(
                url,
                format!("the connection ended after {delivered} of {size} bytes"),
            ));
        }
        Ok(())
    }

    /// Sends `GET` (with `Range` from `offset` when above 0, or up to
    /// `end` inclusive when given) and returns the body once the status
    /// says it starts at `offset`.
    async fn get(
        &self,
        url: &ArtifactUrl,
        offset: u64,
        end: Option<u64>,
    ) -> Result<hyper::body::Incoming, DownloadError> {
        let target =
            Target::parse(url).ok_or_else(|| failed(url, "cannot parse the URL".into()))?;
        let connect = async {
            let tcp = TcpStream::connect((target.host.as_str(), target.port))
                .await
                .map_err(|e| failed(url, format!("cannot connect: {e}")))?;
            let name = ServerName::try_from(target.host.clone())
                .map_err(|_| failed(url, "the host is not a valid TLS server name".into()))?;
            self.tls
                .connect(name, tcp)
                .await
                .map_err(|e| failed(url, format!("TLS handshake failed: {e}")))
        };
        let tls = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| {
                failed(
                    url,
                    format!("no connection within {:?}", self.connect_timeout),
                )
            })??;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| failed(url, format!("HTTP handshake failed: {e}")))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = Request::get(target.path_and_query.as_str())
            .header(header::HOST, target.authority.as_str())
            .header(
                header::USER_AGENT,
                concat!("hearthd/", env!("CARGO_PKG_VERSION")),
            );
        let ranged = offset > 0 || end.is_some();
        if ranged {
            let end = end.map(|e| e.to_string()).unwrap_or_default();
            request = request.header(header::RANGE, format!("bytes={offset}-{end}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| failed(url, e.to_string()))?;
        let response = tokio::time::timeout(self.read_timeout, sender.send_request(request))
            .await
            .map_err(|_| failed(url, format!("no answer within {:?}", self.read_timeout)))?
            .map_err(|e| failed(url, format!("request failed: {e}")))?;
        let status = response.status();
        let resumed = status == StatusCode::PARTIAL_CONTENT
            && response
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&format!("bytes {offset}-")));
        match (ranged, status) {
            (false, StatusCode::OK) => Ok(response.into_body()),
            (true, _) if resumed => Ok(response.into_body()),
            (_, StatusCode::OK) => Err(failed(
                url,
                "the server ignored the Range request; cannot resume".into(),
            )),
            (_, status) => Err(failed(url, format!("the server answered {status}"))),
        }
    }

    async fn next_chunk(
        &self,
        url: &ArtifactUrl,
        body: &mut hyper::body::Incoming,
    ) -> Result<Option<Bytes>, DownloadError> {
        loop {
            let frame = tokio::time::timeout(self.read_timeout, body.frame())
                .await
                .map_err(|_| failed(url, format!("no data for {:?}", self.read_timeout)))?;
            match frame {
                None => return Ok(None),
                Some(Err(e)) => return Err(failed(url, format!("reading failed: {e}"))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

fn failed(url: &ArtifactUrl, reason: String) -> DownloadError {
    DownloadError::Failed {
        url: url.to_string(),
        reason,
    }
}

/// Which bytes of a file [`Fetcher::stream_range`] delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The first byte.
    pub start: u64,
    /// How many.
    pub len: u64,
    /// The whole file (`start` 0): a plain `GET`, `Range` only to resume.
    pub whole: bool,
}

/// Host, port and request target of an `https://` URL.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    authority: String,
    path_and_query: String,
}

impl Target {
    fn parse(url: &ArtifactUrl) -> Option<Target> {
        let rest = url.as_str().strip_prefix("https://")?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']')?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = match port {
            Some(p) => p.parse().ok()?,
            None => 443,
        };
        let path_and_query = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Some(Target {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            path_and_query,
        })
    }
}

/// The blocking side of [`Fetcher::stream`]: a `Read` for the install.
#[derive(Debug)]
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    /// A channel and its reader; give the sender to [`Fetcher::stream`].
    pub fn pair() -> (mpsc::Sender<io::Result<Bytes>>, ChannelReader) {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        (
            tx,
            ChannelReader {
                rx,
                current: Bytes::new(),
            },
        )
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(&url.parse().unwrap()).unwrap()
    }

    #[test]
    fn urls_split_into_host_port_and_target() {
        let t = target("https://updates.example.com/HRH-1/manifest.json");
        assert_eq!((t.host.as_str(), t.port), ("updates.example.com", 443));
        assert_eq!(t.path_and_query, "/HRH-1/manifest.json");
        let t = target("https://10.0.2.100:8443?x=1");
        assert_eq!((t.host.as_str(), t.port), ("10.0.2.100", 8443));
        assert_eq!(t.path_and_query, "/?x=1");
        let t = target("https://[::1]:9/a");
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str()),
            ("::1", 9, "[::1]:9")
        );
    }

    #[test]
    fn the_reader_returns_chunks_in_order_then_the_error() {
        let (tx, mut reader) = ChannelReader::pair();
        let sender = std::thread::spawn(move || {
            tx.blocking_send(Ok(Bytes::from_static(b"hello "))).unwrap();
            tx.blocking_send(Ok(Bytes::from_static(b"world"))).unwrap();
            tx.blocking_send(Err(io::Error::other("cut"))).unwrap();
        });
        let mut out = vec![0u8; 4];
        let mut all = Vec::new();
        let error = loop {
            match reader.read(&mut out) {
                Ok(0) => panic!("EOF before the error"),
                Ok(n) => all.extend_from_slice(&out[..n]),
                Err(e) => break e,
            }
        };
        sender.join().unwrap();
        assert_eq!(all, b"hello world");
        assert_eq!(error.to_string(), "cut");
    }
}

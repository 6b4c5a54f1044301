//! Checking the artifact against the manifest: exact size and SHA-256.
//!
//! Our `sw-description` streams the image (`installed-directly = true`),
//! so SWUpdate writes the inactive slot while it reads. To keep that slot
//! untouched by an artifact that turns out to be wrong, hearthd reads the
//! artifact twice (docs/update-security.md, "Check first, then install"):
//!
//! 1. [`Fingerprint::take`] reads it once, checks the length and SHA-256
//!    the manifest signs, and keeps one SHA-256 per [`CHUNK_LEN`] bytes;
//!    nothing goes anywhere else.
//! 2. [`Fingerprint::replay`] reads it again for SWUpdate and hands out
//!    each chunk only after it matched the first read. A server that sends
//!    other bytes the second time is stopped at the first chunk that
//!    differs, so SWUpdate only ever sees bytes of the signed artifact.
//!
//! [`CheckedReader`] is the single-pass check, for callers that do not
//! stream into a slot (the release tool's `verify`).

use std::io::{self, Read};

use crate::types::Sha256;

/// The artifact did not match the manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// More bytes arrived than the manifest declares (endless data).
    #[error(
        "the artifact is longer than the {expected} bytes the manifest declares; stopped reading"
    )]
    TooLong {
        /// The declared size.
        expected: u64,
    },
    /// The stream ended early.
    #[error("the artifact ended after {got} of the {expected} bytes the manifest declares")]
    TooShort {
        /// Bytes seen.
        got: u64,
        /// The declared size.
        expected: u64,
    },
    /// The digest differs.
    #[error(
        "the artifact's sha256 is {actual}, the manifest says {expected}: it was altered or corrupted"
    )]
    DigestMismatch {
        /// The manifest's digest.
        expected: Sha256,
        /// What arrived.
        actual: Sha256,
    },
    /// The second read differs from the first, checked one.
    #[error(
        "the artifact changed after it was checked: the bytes from offset {offset} differ from the download that matched the manifest"
    )]
    Changed {
        /// Where the first differing chunk starts.
        offset: u64,
    },
}

/// Feeds bytes through SHA-256 and counts them against the declared size.
pub struct ArtifactChecker {
    ctx: ring::digest::Context,
    expected: Sha256,
    expected_len: u64,
    seen: u64,
}

impl std::fmt::Debug for ArtifactChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactChecker")
            .field("expected", &self.expected)
            .field("expected_len", &self.expected_len)
            .field("seen", &self.seen)
            .finish()
    }
}

impl ArtifactChecker {
    /// Expects exactly `len` bytes hashing to `sha256`.
    pub fn new(sha256: Sha256, len: u64) -> ArtifactChecker {
        ArtifactChecker {
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            expected: sha256,
            expected_len: len,
            seen: 0,
        }
    }

    /// Adds a chunk; fails as soon as the total passes the declared size.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), ArtifactError> {
        let n = chunk.len() as u64;
        if self.seen.saturating_add(n) > self.expected_len {
            return Err(ArtifactError::TooLong {
                expected: self.expected_len,
            });
        }
        self.seen += n;
        self.ctx.update(chunk);
        Ok(())
    }

    /// Bytes accepted so far.
    pub fn bytes_seen(&self) -> u64 {
        self.seen
    }

    /// Checks the length and the digest.
    pub fn finish(self) -> Result<(), ArtifactError> {
        if self.seen != self.expected_len {
            return Err(ArtifactError::TooShort {
                got: self.seen,
                expected: self.expected_len,
            });
        }
        let mut actual = [0u8; 32];
        actual.copy_from_slice(self.ctx.finish().as_ref());
        let actual = Sha256::from_bytes(actual);
        if actual != self.expected {
            return Err(ArtifactError::DigestMismatch {
                expected: self.expected,
                actual,
            });
        }
        Ok(())
    }
}

/// A reader that checks what passes through it. It never returns more
/// than the declared size, and instead of the final end-of-file it returns
/// an `InvalidData` error if the length or digest is wrong, so a consumer
/// such as `swupdate_rs::Client::install` sees a failed stream, not a
/// complete one.
#[derive(Debug)]
pub struct CheckedReader<R> {
    inner: R,
    checker: Option<ArtifactChecker>,
}

impl<R: Read> CheckedReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, checker: ArtifactChecker) -> CheckedReader<R> {
        CheckedReader {
            inner,
            checker: Some(checker),
        }
    }
}

fn invalid(e: ArtifactError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<R: Read> Read for CheckedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0); // not the end of the stream
        }
        let Some(checker) = self.checker.as_mut() else {
            return Ok(0); // checked and finished
        };
        // Read at most one byte beyond the declared size, to detect excess.
        let room = checker.expected_len - checker.seen + 1;
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            let checker = self
                .checker
                .take()
                .ok_or_else(|| io::Error::other("checked twice"))?;
            checker.finish().map_err(invalid)?;
            return Ok(0);
        }
        checker.update(&buf[..n]).map_err(invalid)?;
        Ok(n)
    }
}

/// Bytes per chunk digest: the unit [`Replay`] checks before handing out.
pub const CHUNK_LEN: usize = 256 * 1024;

/// What the first, checked read of an artifact saw: one SHA-256 per
/// [`CHUNK_LEN`] bytes (32 bytes of memory per 256 KiB of artifact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    len: u64,
    chunks: Vec<Sha256>,
}

impl Fingerprint {
    /// Reads all of `artifact` through `checker`. The result exists only if
    /// the length and SHA-256 matched the manifest; otherwise the error is
    /// `InvalidData` carrying an [`ArtifactError`], or the read error.
    pub fn take(artifact: impl Read, checker: ArtifactChecker) -> io::Result<Fingerprint> {
        let len = checker.expected_len;
        let mut reader = CheckedReader::new(artifact, checker);
        let mut chunks = Vec::new();
        let mut buf = vec![0u8; CHUNK_LEN];
        loop {
            let n = read_chunk(&mut reader, &mut buf)?;
            if n == 0 {
                return Ok(Fingerprint { len, chunks });
            }
            chunks.push(Sha256::digest(&buf[..n]));
        }
    }

    /// The artifact's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty artifact.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `artifact`, read again, as a reader that yields each chunk only after
    /// it matched this fingerprint.
    pub fn replay<R: Read>(&self, artifact: R) -> Replay<'_, R> {
        Replay {
            print: self,
            inner: artifact,
            buf: vec![0u8; CHUNK_LEN],
            chunk: 0,
            start: 0,
            end: 0,
        }
    }
}

/// Fills `buf` unless the stream ends first; returns the bytes read.
fn read_chunk(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// See [`Fingerprint::replay`]. A chunk that differs, or a stream longer or
/// shorter than the first, is an `InvalidData` error carrying an
/// [`ArtifactError`], returned before any byte of that chunk.
#[derive(Debug)]
pub struct Replay<'a, R> {
    print: &'a Fingerprint,
    inner: R,
    buf: Vec<u8>,
    /// The next chunk to read.
    chunk: usize,
    /// The checked bytes of the current chunk not yet handed out.
    start: usize,
    end: usize,
}

impl<R: Read> Replay<'_, R> {
    fn next_chunk(&mut self) -> io::Result<()> {
        let offset = (self.chunk * CHUNK_LEN) as u64;
        let n = read_chunk(&mut self.inner, &mut self.buf)?;
        let expected = self.print.chunks.get(self.chunk);
        match expected {
            None if n == 0 => {}
            None => {
                return Err(invalid(ArtifactError::TooLong {
                    expected: self.print.len,
                }));
            }
            Some(_) if n == 0 => {
                return Err(invalid(ArtifactError::TooShort {
                    got: offset,
                    expected: self.print.len,
                }));
            }
            Some(digest) if *digest != Sha256::digest(&self.buf[..n]) => {
                return Err(invalid(ArtifactError::Changed { offset }));
            }
            Some(_) => self.chunk += 1,
        }
        self.start = 0;
        self.end = n;
        Ok(())
    }
}

impl<R: Read> Read for Replay<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.start == self.end {
            self.next_chunk()?;
        }
        let n = buf.len().min(self.end - self.start);
        buf[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn read_all(r: impl Read) -> io::Result<Vec<u8>> {
        let mut r = r;
        let mut v = Vec::new();
        r.read_to_end(&mut v)?;
        Ok(v)
    }

    #[test]
    fn good_stream_passes_and_is_unchanged() {
        let data = vec![7u8; 100_000];
        let c = ArtifactChecker::new(Sha256::digest(&data), data.len() as u64);
        assert_eq!(read_all(CheckedReader::new(&data[..], c)).unwrap(), data);
    }

    #[test]
    fn an_empty_read_buffer_is_not_mistaken_for_the_end() {
        let data = vec![3u8; 10];
        let c = ArtifactChecker::new(Sha256::digest(&data), 10);
        let mut r = CheckedReader::new(&data[..], c);
        assert_eq!(r.read(&mut []).unwrap(), 0);
        assert_eq!(read_all(r).unwrap(), data);
    }

    #[test]
    fn flipped_byte_fails_at_the_end() {
        let data = vec![7u8; 1000];
        let mut bad = data.clone();
        bad[500] ^= 1;
        let c = ArtifactChecker::new(Sha256::digest(&data), 1000);
        let e = read_all(CheckedReader::new(&bad[..], c)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("sha256"), "{e}");
    }

    #[test]
    fn longer_and_shorter_streams_fail() {
        let data = vec![1u8; 1000];
        let c = ArtifactChecker::new(Sha256::digest(&data[..999]), 999);
        let e = read_all(CheckedReader::new(&data[..], c)).unwrap_err();
        assert!(e.to_string().contains("longer"), "{e}");
        let c = ArtifactChecker::new(Sha256::digest(&data), 1001);
        let e = read_all(CheckedReader::new(&data[..], c)).unwrap_err();
        assert!(e.to_string().contains("ended after 1000"), "{e}");
    }

    #[test]
    fn endless_stream_is_cut_off_after_the_declared_size() {
        let c = ArtifactChecker::new(Sha256::digest(b""), 4096);
        let mut r = CheckedReader::new(io::repeat(0), c);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0usize;
        let err = loop {
            match r.read(&mut buf) {
                Ok(n) => total += n,
                Err(e) => break e,
            }
        };
        assert!(total <= 4096);
        assert!(err.to_string().contains("longer"));
    }

    fn fingerprint(data: &[u8]) -> Fingerprint {
        let c = ArtifactChecker::new(Sha256::digest(data), data.len() as u64);
        Fingerprint::take(data, c).unwrap()
    }

    fn artifact(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_replay_of_the_same_bytes_passes_unchanged() {
        for len in [0, 1, CHUNK_LEN - 1, CHUNK_LEN, 3 * CHUNK_LEN + 17] {
            let data = artifact(len);
            let print = fingerprint(&data);
            assert_eq!(print.len(), len as u64);
            assert_eq!(read_all(print.replay(&data[..])).unwrap(), data, "{len}");
        }
    }

    #[test]
    fn a_fingerprint_exists_only_for_the_signed_bytes() {
        let data = artifact(CHUNK_LEN + 5);
        let mut bad = data.clone();
        bad[CHUNK_LEN + 1] ^= 1;
        let c = ArtifactChecker::new(Sha256::digest(&data), data.len() as u64);
        let e = Fingerprint::take(&bad[..], c).unwrap_err();
        assert!(e.to_string().contains("sha256"), "{e}");
    }

    #[test]
    fn a_changed_chunk_is_refused_before_any_of_its_bytes() {
        let data = artifact(3 * CHUNK_LEN);
        let print = fingerprint(&data);
        let mut other = data.clone();
        other[CHUNK_LEN + 10] ^= 0x80;
        let mut r = print.replay(&other[..]);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let err = loop {
            match r.read(&mut buf) {
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert_eq!(out, data[..CHUNK_LEN], "only the first, matching chunk");
        assert!(
            matches!(
                err.get_ref().and_then(|e| e.downcast_ref::<ArtifactError>()),
                Some(ArtifactError::Changed { offset }) if *offset == CHUNK_LEN as u64
            ),
            "{err}"
        );
    }

    #[test]
    fn a_replay_longer_or_shorter_than_the_first_read_fails() {
        let data = artifact(CHUNK_LEN + 100);
        let print = fingerprint(&data);
        let mut longer = data.clone();
        longer.push(0);
        let e = read_all(print.replay(&longer[..])).unwrap_err();
        assert!(e.to_string().contains("changed"), "{e}");
        let e = read_all(print.replay(&data[..CHUNK_LEN])).unwrap_err();
        assert!(e.to_string().contains("ended after"), "{e}");
        let exact = fingerprint(&data[..CHUNK_LEN]);
        let e = read_all(exact.replay(&data[..])).unwrap_err();
        assert!(e.to_string().contains("longer"), "{e}");
    }
}

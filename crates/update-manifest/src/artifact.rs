//! Checking the artifact against the manifest: exact size and SHA-256.
//!
//! [`CheckedReader`] checks a whole stream against the size and SHA-256
//! the manifest signs; it can only say so at the end. The device therefore
//! also checks every chunk on the way, against the signed chunk index
//! ([`crate::index`]), so SWUpdate never sees a byte that is not part of
//! the signed release.

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
    /// A chunk of the artifact differs from the signed chunk index.
    #[error(
        "the artifact's bytes from offset {offset} do not match the signed chunk index: they were altered in transit or on the server"
    )]
    ChunkMismatch {
        /// Where the chunk that differs starts.
        offset: u64,
    },
    /// A segment of a delta release's pack differs from the signed delta
    /// index.
    #[error(
        "the delta release's pack bytes from offset {offset} do not match the signed delta index: they were altered in transit or on the server"
    )]
    SegmentMismatch {
        /// Where the segment that differs starts in the pack.
        offset: u64,
    },
    /// The chunk index is not the one the manifest signs, or not well formed.
    #[error(
        "the chunk index does not match the signed manifest ({reason}): it was altered or belongs to another release"
    )]
    BadIndex {
        /// What differs.
        reason: String,
    },
    /// The delta index is not the one the manifest signs, or not well
    /// formed, or a segment of the pack does not decompress to the blocks it
    /// lists.
    #[error(
        "the delta index does not match the signed manifest ({reason}): it was altered or belongs to another release"
    )]
    BadDelta {
        /// What differs.
        reason: String,
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

pub(crate) fn invalid(e: ArtifactError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl ArtifactError {
    /// The `ArtifactError` inside an error of a checked read
    /// ([`CheckedReader`], [`crate::VerifiedChunks`]), or the read's own
    /// error (a dropped download) as it was.
    pub fn from_io(e: io::Error) -> Result<ArtifactError, io::Error> {
        if !e.get_ref().is_some_and(|inner| inner.is::<ArtifactError>()) {
            return Err(e);
        }
        match e
            .into_inner()
            .map(|inner| inner.downcast::<ArtifactError>())
        {
            Some(Ok(artifact)) => Ok(*artifact),
            _ => Err(io::Error::other("artifact check failed")),
        }
    }
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
}

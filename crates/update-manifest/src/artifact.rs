//! Checking the artifact against the manifest: exact size and SHA-256.
//!
//! [`ArtifactChecker`] checks a whole stream against a size and SHA-256;
//! it can only say so at the end. The device checks the artifact with the
//! signed chunk index instead ([`crate::index`]), chunk by chunk and, with
//! the last, as a whole, so SWUpdate never sees a byte that is not part of
//! the signed release; the delta stream's tail and `hearth-release
//! publish` use [`ArtifactChecker`].

use std::io;

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
    /// The chunk index is in the format hearth-release wrote before the
    /// index held prefix digests.
    #[error(
        "the chunk index is in format 1 (a SHA-256 per chunk), which this device no longer reads: the vendor must re-sign the release with a current hearth-release"
    )]
    OldIndexFormat,
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
        let actual = Sha256::from_ring(self.ctx.finish());
        if actual != self.expected {
            return Err(ArtifactError::DigestMismatch {
                expected: self.expected,
                actual,
            });
        }
        Ok(())
    }
}

pub(crate) fn invalid(e: ArtifactError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl ArtifactError {
    /// The `ArtifactError` inside an error of a checked read
    /// ([`crate::VerifiedChunks`], [`crate::DeltaReader`]), or the read's
    /// own error (a dropped download) as it was.
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(data: &[u8], sha256: Sha256, len: u64) -> Result<(), ArtifactError> {
        let mut checker = ArtifactChecker::new(sha256, len);
        for part in data.chunks(333) {
            checker.update(part)?;
        }
        checker.finish()
    }

    #[test]
    fn the_declared_bytes_pass() {
        let data = vec![7u8; 100_000];
        check(&data, Sha256::digest(&data), data.len() as u64).unwrap();
    }

    #[test]
    fn a_flipped_byte_fails_at_the_end() {
        let data = vec![7u8; 1000];
        let mut bad = data.clone();
        bad[500] ^= 1;
        let e = check(&bad, Sha256::digest(&data), 1000).unwrap_err();
        assert!(matches!(e, ArtifactError::DigestMismatch { .. }), "{e}");
    }

    #[test]
    fn longer_and_shorter_streams_fail() {
        let data = vec![1u8; 1000];
        let e = check(&data, Sha256::digest(&data[..999]), 999).unwrap_err();
        assert!(e.to_string().contains("longer"), "{e}");
        let e = check(&data, Sha256::digest(&data), 1001).unwrap_err();
        assert!(e.to_string().contains("ended after 1000"), "{e}");
    }
}

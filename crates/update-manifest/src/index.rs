//! The chunk index: the SHA-256 of the artifact up to the end of each
//! fixed-size chunk, published beside it and pinned by the signed manifest
//! (its length and SHA-256, [`crate::ArtifactIndex`]). With it a device
//! downloads the artifact once and checks every chunk *before* any of its
//! bytes go on to SWUpdate ([`ChunkIndex::verified`]): nothing unverified
//! reaches the slot, and each byte is fetched once
//! (docs/update-security.md).
//!
//! The file (all integers big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `HRTHIDX2` |
//! | 4 | chunk length |
//! | 4 | zero (reserved) |
//! | 8 | artifact length |
//! | 32 × n | entry i: the SHA-256 of the artifact's first (i + 1) chunks, n = ⌈artifact length / chunk length⌉ (the last chunk may be shorter) |
//!
//! Why prefixes, not each chunk's own SHA-256 (format 1): the last entry is
//! then the whole artifact's SHA-256, the one the manifest signs, so one
//! running SHA-256 checks every chunk and the whole artifact. The device
//! hashes each byte once (at each chunk's end a copy of the running state
//! is finished, a block or two of work); a digest per chunk beside the
//! whole artifact's took a second pass, nearly a fifth of the install's
//! time on two cores (`update-bench`). A chunk passes only if the checked
//! prefix before it, extended by its bytes, has the signed digest: other
//! bytes that do so are a second preimage of SHA-256. Anyone can check an
//! entry: `head -c $(( (i + 1) * 262144 )) release.swu | sha256sum`.
//!
//! The index is a pure function of the artifact and the chunk length, so
//! `hearth-release publish` rebuilds it from the artifact instead of
//! carrying another file around.

use std::io::{self, BufRead, Read};

use ring::digest::{Context, SHA256};

use crate::artifact::{ArtifactError, invalid};
use crate::manifest::Artifact;
use crate::types::Sha256;

/// The first bytes of every index file (format 2 of the index).
pub const INDEX_MAGIC: &[u8; 8] = b"HRTHIDX2";
/// What format 1 (a SHA-256 per chunk) began with.
const FORMAT_1_MAGIC: &[u8; 8] = b"HRTHIDX1";
const HEADER_LEN: u64 = 24;
/// The chunk length `hearth-release` uses: 256 KiB. The index costs 32
/// bytes per chunk (128 bytes per MiB of artifact: 15 KiB for a 115 MiB
/// release), the device holds one chunk in memory while it checks it, and
/// a chunk is the most a server can make the device fetch in vain before a
/// change is caught.
pub const DEFAULT_CHUNK_LEN: u32 = 256 * 1024;
/// The smallest chunk length a device accepts (keeps the index small).
pub const MIN_CHUNK_LEN: u32 = 64 * 1024;
/// The largest chunk length a device accepts (keeps its buffer small).
pub const MAX_CHUNK_LEN: u32 = 1024 * 1024;

/// The checked prefix digests of one artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkIndex {
    chunk_len: u32,
    artifact_len: u64,
    /// Entry i: the SHA-256 of the first (i + 1) chunks.
    prefixes: Vec<Sha256>,
}

fn bad(reason: impl Into<String>) -> ArtifactError {
    ArtifactError::BadIndex {
        reason: reason.into(),
    }
}

impl ChunkIndex {
    /// True for a chunk length devices accept: a power of two from
    /// [`MIN_CHUNK_LEN`] to [`MAX_CHUNK_LEN`].
    pub fn chunk_len_is_valid(chunk_len: u32) -> bool {
        chunk_len.is_power_of_two() && (MIN_CHUNK_LEN..=MAX_CHUNK_LEN).contains(&chunk_len)
    }

    /// The index file's length for an artifact of `artifact_len` bytes.
    pub fn encoded_len(artifact_len: u64, chunk_len: u32) -> u64 {
        let chunks = artifact_len.div_ceil(u64::from(chunk_len.max(1)));
        HEADER_LEN.saturating_add(chunks.saturating_mul(32))
    }

    /// Reads `artifact` to its end and indexes it (the release tool's side).
    pub fn of(artifact: impl Read, chunk_len: u32) -> io::Result<ChunkIndex> {
        if !ChunkIndex::chunk_len_is_valid(chunk_len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("chunk length {chunk_len} is not a power of two from 64 KiB to 1 MiB"),
            ));
        }
        let mut artifact = artifact;
        let mut buf = vec![0u8; chunk_len as usize];
        let mut index = ChunkIndex {
            chunk_len,
            artifact_len: 0,
            prefixes: Vec::new(),
        };
        let mut running = Context::new(&SHA256);
        loop {
            let n = read_chunk(&mut artifact, &mut buf)?;
            if n == 0 {
                return Ok(index);
            }
            index.artifact_len += n as u64;
            running.update(&buf[..n]);
            index
                .prefixes
                .push(Sha256::from_ring(running.clone().finish()));
        }
    }

    /// The index file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN as usize + 32 * self.prefixes.len());
        out.extend_from_slice(INDEX_MAGIC);
        out.extend_from_slice(&self.chunk_len.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&self.artifact_len.to_be_bytes());
        for prefix in &self.prefixes {
            out.extend_from_slice(prefix.as_bytes());
        }
        out
    }

    /// Parses an index file after checking it is the one `artifact` (from
    /// a verified manifest) pins: its length and SHA-256, then that its
    /// header describes that artifact and its last entry is the artifact's
    /// SHA-256.
    pub fn from_signed(bytes: &[u8], artifact: &Artifact) -> Result<ChunkIndex, ArtifactError> {
        let pinned = &artifact.index;
        // A verified manifest has passed these already; checked again so
        // that no caller can make this panic or allocate a huge buffer.
        if !ChunkIndex::chunk_len_is_valid(pinned.chunk_len)
            || ChunkIndex::encoded_len(artifact.size, pinned.chunk_len) != pinned.size
        {
            return Err(bad(
                "the manifest's chunk length or index size is not valid",
            ));
        }
        if bytes.len() as u64 != pinned.size {
            return Err(bad(format!(
                "it is {} bytes, the manifest says {}",
                bytes.len(),
                pinned.size
            )));
        }
        let actual = Sha256::digest(bytes);
        if actual != pinned.sha256 {
            return Err(bad(format!(
                "its sha256 is {actual}, the manifest says {}",
                pinned.sha256
            )));
        }
        // Signed bytes from here on, but a vendor's tool could still have
        // written a header that contradicts the manifest.
        let Some((header, digests)) = bytes.split_at_checked(HEADER_LEN as usize) else {
            return Err(bad("it has no header"));
        };
        let word = |at: usize, len: usize| {
            header[at..at + len]
                .iter()
                .fold(0u64, |v, b| (v << 8) | u64::from(*b))
        };
        if &header[..8] == FORMAT_1_MAGIC {
            return Err(ArtifactError::OldIndexFormat);
        }
        if &header[..8] != INDEX_MAGIC || word(12, 4) != 0 {
            return Err(bad("it is not a format 2 chunk index"));
        }
        if word(8, 4) != u64::from(pinned.chunk_len) || word(16, 8) != artifact.size {
            return Err(bad(format!(
                "it describes {} bytes in chunks of {}, the manifest {} bytes in chunks of {}",
                word(16, 8),
                word(8, 4),
                artifact.size,
                pinned.chunk_len
            )));
        }
        let prefixes: Vec<Sha256> = digests
            .chunks_exact(32)
            .map(|d| {
                let mut digest = [0u8; 32];
                digest.copy_from_slice(d);
                Sha256::from_bytes(digest)
            })
            .collect();
        // The last entry is what checks the whole artifact.
        let whole = prefixes
            .last()
            .copied()
            .unwrap_or_else(|| Sha256::digest(b""));
        if whole != artifact.sha256 {
            return Err(bad(format!(
                "its last entry, the whole artifact's sha256, is {whole}, the manifest says {}",
                artifact.sha256
            )));
        }
        Ok(ChunkIndex {
            chunk_len: pinned.chunk_len,
            artifact_len: artifact.size,
            prefixes,
        })
    }

    /// The SHA-256 of the index file (what the manifest pins).
    pub fn sha256(&self) -> Sha256 {
        Sha256::digest(&self.to_bytes())
    }

    /// Bytes per chunk.
    pub fn chunk_len(&self) -> u32 {
        self.chunk_len
    }

    /// The artifact's length.
    pub fn artifact_len(&self) -> u64 {
        self.artifact_len
    }

    /// `artifact` as a reader that hands out each chunk only after it
    /// matched this index; the last one, so, only once the whole artifact
    /// matched the manifest's length and SHA-256.
    pub fn verified<R: Read>(&self, artifact: R) -> VerifiedChunks<'_, R> {
        VerifiedChunks {
            index: self,
            inner: artifact,
            running: Context::new(&SHA256),
            buf: vec![0u8; self.chunk_len as usize],
            chunk: 0,
            start: 0,
            end: 0,
        }
    }
}

/// Fills `buf` unless the stream ends first; returns the bytes read.
pub(crate) fn read_chunk(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
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

/// See [`ChunkIndex::verified`]. A chunk that differs, or a stream longer
/// or shorter than the index says, is an `InvalidData` error carrying an
/// [`ArtifactError`], returned before any byte of that chunk (and for good:
/// the running digest then holds the wrong bytes). The last chunk is
/// handed out only once the inner reader has ended. The inner reader's own
/// errors (a dropped download) pass through unchanged.
pub struct VerifiedChunks<'a, R> {
    index: &'a ChunkIndex,
    inner: R,
    /// The SHA-256 of everything read so far.
    running: Context,
    /// One chunk: filled from the download, handed out once checked.
    buf: Vec<u8>,
    /// The next chunk to read.
    chunk: usize,
    /// The checked bytes of the current chunk not yet handed out.
    start: usize,
    end: usize,
}

impl<R> std::fmt::Debug for VerifiedChunks<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedChunks")
            .field("chunk", &self.chunk)
            .field("of", &self.index.prefixes.len())
            .finish()
    }
}

impl<R: Read> VerifiedChunks<'_, R> {
    /// The length chunk `i` must have: the chunk length, less for the last.
    fn expected_len(&self, i: usize) -> usize {
        let start = i as u64 * u64::from(self.index.chunk_len);
        let left = self.index.artifact_len.saturating_sub(start);
        usize::try_from(left.min(u64::from(self.index.chunk_len))).unwrap_or(usize::MAX)
    }

    fn next_chunk(&mut self) -> io::Result<()> {
        let offset = self.chunk as u64 * u64::from(self.index.chunk_len);
        let n = read_chunk(&mut self.inner, &mut self.buf)?;
        match self.index.prefixes.get(self.chunk) {
            None if n == 0 => {}
            None => {
                return Err(invalid(ArtifactError::TooLong {
                    expected: self.index.artifact_len,
                }));
            }
            Some(_) if n == 0 => {
                return Err(invalid(ArtifactError::TooShort {
                    got: offset,
                    expected: self.index.artifact_len,
                }));
            }
            Some(_) if n < self.expected_len(self.chunk) => {
                return Err(invalid(ArtifactError::TooShort {
                    got: offset + n as u64,
                    expected: self.index.artifact_len,
                }));
            }
            Some(prefix) => {
                self.running.update(&self.buf[..n]);
                if *prefix != Sha256::from_ring(self.running.clone().finish()) {
                    return Err(invalid(ArtifactError::ChunkMismatch { offset }));
                }
                self.chunk += 1;
                if self.chunk == self.index.prefixes.len() {
                    // The end must come now (and pass the inner checks).
                    if read_chunk(&mut self.inner, &mut [0u8; 1])? != 0 {
                        return Err(invalid(ArtifactError::TooLong {
                            expected: self.index.artifact_len,
                        }));
                    }
                }
            }
        }
        self.start = 0;
        self.end = n;
        Ok(())
    }
}

impl<R: Read> Read for VerifiedChunks<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let checked = self.fill_buf()?;
        let n = buf.len().min(checked.len());
        buf[..n].copy_from_slice(&checked[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// The checked chunk in place, so a caller can hand it on without copying
/// it again.
impl<R: Read> BufRead for VerifiedChunks<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end {
            self.next_chunk()?;
        }
        Ok(&self.buf[self.start..self.end])
    }

    fn consume(&mut self, amount: usize) {
        self.start = (self.start + amount).min(self.end);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::manifest::ArtifactIndex;

    const CHUNK: usize = MIN_CHUNK_LEN as usize;

    fn read_all(r: impl Read) -> io::Result<Vec<u8>> {
        let mut r = r;
        let mut v = Vec::new();
        r.read_to_end(&mut v)?;
        Ok(v)
    }

    /// What `r` hands out before its error, and the error.
    fn until_error(r: &mut impl Read) -> (Vec<u8>, io::Error) {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, e),
            }
        }
    }

    fn artifact(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn index(data: &[u8]) -> ChunkIndex {
        ChunkIndex::of(data, MIN_CHUNK_LEN).unwrap()
    }

    /// What a manifest for `data` pins.
    fn pinned(data: &[u8]) -> Artifact {
        let index = index(data);
        let bytes = index.to_bytes();
        Artifact {
            urls: vec!["https://e.com/m/1.0.0/a.swu".parse().unwrap()],
            size: data.len() as u64,
            sha256: Sha256::digest(data),
            index: ArtifactIndex {
                urls: vec!["https://e.com/m/1.0.0/a.swu.index".parse().unwrap()],
                chunk_len: MIN_CHUNK_LEN,
                size: bytes.len() as u64,
                sha256: Sha256::digest(&bytes),
            },
        }
    }

    fn index_error(bytes: &[u8], artifact: &Artifact) -> String {
        ChunkIndex::from_signed(bytes, artifact)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_same_bytes_pass_unchanged() {
        for len in [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 17] {
            let data = artifact(len);
            let index = index(&data);
            assert_eq!(index.artifact_len(), len as u64);
            assert_eq!(
                index.to_bytes().len() as u64,
                ChunkIndex::encoded_len(len as u64, MIN_CHUNK_LEN)
            );
            assert_eq!(read_all(index.verified(&data[..])).unwrap(), data, "{len}");
        }
    }

    #[test]
    fn an_index_parses_back_only_as_the_manifest_pins_it() {
        let data = artifact(2 * CHUNK + 5);
        let artifact = pinned(&data);
        let bytes = index(&data).to_bytes();
        assert_eq!(
            ChunkIndex::from_signed(&bytes, &artifact).unwrap(),
            index(&data)
        );

        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert!(index_error(&flipped, &artifact).contains("sha256"));
        assert!(
            index_error(&bytes[..bytes.len() - 1], &artifact).contains("bytes, the manifest says")
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(index_error(&longer, &artifact).contains("bytes, the manifest says"));
        // Headers that contradict the manifest, pinned as they are (a
        // vendor tool's mistake).
        let pinned_as = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = bytes.clone();
            edit(&mut bytes);
            let mut a = artifact.clone();
            a.index.sha256 = Sha256::digest(&bytes);
            index_error(&bytes, &a)
        };
        assert!(pinned_as(&|b| b[23] ^= 1).contains("describes"));
        assert!(pinned_as(&|b| b[0] = b'X').contains("not a format 2 chunk index"));
        assert!(pinned_as(&|b| b[15] = 1).contains("not a format 2 chunk index"));
        assert!(pinned_as(&|b| b[7] = b'1').contains("format 1 (a SHA-256 per chunk)"));
        // A manifest that pins an impossible index is refused, never parsed.
        let mut huge = artifact.clone();
        huge.index.chunk_len = 1 << 30;
        assert!(index_error(&bytes, &huge).contains("not valid"));
    }

    #[test]
    fn a_changed_chunk_is_refused_before_any_of_its_bytes() {
        let data = artifact(3 * CHUNK);
        let index = index(&data);
        let mut other = data.clone();
        other[CHUNK + 10] ^= 0x80;
        let mut r = index.verified(&other[..]);
        let (out, err) = until_error(&mut r);
        assert_eq!(out, data[..CHUNK], "only the first, matching chunk");
        assert!(
            matches!(
                err.get_ref().and_then(|e| e.downcast_ref::<ArtifactError>()),
                Some(ArtifactError::ChunkMismatch { offset }) if *offset == CHUNK as u64
            ),
            "{err}"
        );
    }

    #[test]
    fn a_stream_longer_or_shorter_than_the_index_fails() {
        let data = artifact(CHUNK + 100);
        let index = index(&data);
        let mut longer = data.clone();
        longer.push(0);
        let e = read_all(index.verified(&longer[..])).unwrap_err();
        assert!(e.to_string().contains("do not match"), "{e}");
        let e = read_all(index.verified(&data[..CHUNK])).unwrap_err();
        assert!(e.to_string().contains("ended after"), "{e}");
        let exact = ChunkIndex::of(&data[..CHUNK], MIN_CHUNK_LEN).unwrap();
        let e = read_all(exact.verified(&data[..])).unwrap_err();
        assert!(e.to_string().contains("longer"), "{e}");
    }

    #[test]
    fn the_last_partial_chunk_and_what_follows_it_are_checked() {
        let data = artifact(2 * CHUNK + 100);
        let index = index(&data);
        let mut last = data.clone();
        last[2 * CHUNK + 99] ^= 1;
        let e = read_all(index.verified(&last[..])).unwrap_err();
        assert!(
            e.to_string().contains(&format!("offset {}", 2 * CHUNK)),
            "{e}"
        );

        // Exactly N chunks, then more: the last chunk is not handed out.
        let exact = artifact(2 * CHUNK);
        let index = ChunkIndex::of(&exact[..], MIN_CHUNK_LEN).unwrap();
        let mut longer = exact.clone();
        longer.push(7);
        let mut r = index.verified(&longer[..]);
        let (out, e) = until_error(&mut r);
        assert_eq!(out.len(), CHUNK, "only the chunks before the last");
        assert!(e.to_string().contains("longer"), "{e}");

        // A stream that ends inside a chunk is short, not altered.
        let e = read_all(index.verified(&exact[..CHUNK + 10])).unwrap_err();
        assert!(e.to_string().contains("ended after"), "{e}");
    }

    #[test]
    fn each_entry_is_the_digest_of_the_artifact_up_to_its_chunks_end() {
        let data = artifact(2 * CHUNK + 5);
        let bytes = index(&data).to_bytes();
        let entries: Vec<&[u8]> = bytes[HEADER_LEN as usize..].chunks(32).collect();
        let ends = [CHUNK, 2 * CHUNK, data.len()];
        assert_eq!(entries.len(), ends.len());
        for (entry, end) in entries.iter().zip(ends) {
            assert_eq!(*entry, Sha256::digest(&data[..end]).as_bytes(), "{end}");
        }
    }

    #[test]
    fn the_last_entry_must_be_the_whole_artifact_digest_the_manifest_signs() {
        // An index that agrees with the bytes, a manifest digest that does
        // not (a vendor-tool bug): refused before a byte of the artifact.
        for len in [0, 3 * CHUNK, 2 * CHUNK + 5] {
            let data = artifact(len);
            let mut artifact = pinned(&data);
            artifact.sha256 = Sha256::digest(b"other");
            let e = index_error(&index(&data).to_bytes(), &artifact);
            assert!(e.contains("the whole artifact's sha256"), "{len}: {e}");
        }
    }

    #[test]
    fn signed_chunks_in_another_order_are_refused() {
        let mut data = artifact(CHUNK);
        data.extend_from_slice(&vec![9u8; CHUNK]);
        data.extend_from_slice(&vec![9u8; CHUNK]);
        let index = index(&data);
        let mut swapped = data[CHUNK..2 * CHUNK].to_vec();
        swapped.extend_from_slice(&data[..CHUNK]);
        swapped.extend_from_slice(&data[2 * CHUNK..]);
        let (out, e) = until_error(&mut index.verified(&swapped[..]));
        assert!(out.is_empty());
        assert!(e.to_string().contains("offset 0"), "{e}");
    }

    #[test]
    fn a_dropped_download_passes_through_as_itself() {
        struct Cut(usize);
        impl Read for Cut {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("connection reset"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(1);
                self.0 -= n;
                Ok(n)
            }
        }
        let index = index(&vec![1u8; 2 * CHUNK]);
        let e = read_all(index.verified(Cut(CHUNK + 10))).unwrap_err();
        assert_eq!(e.to_string(), "connection reset");
    }

    #[test]
    fn only_sensible_chunk_lengths_are_accepted() {
        assert!(ChunkIndex::chunk_len_is_valid(DEFAULT_CHUNK_LEN));
        for bad in [
            0,
            1,
            MIN_CHUNK_LEN / 2,
            MAX_CHUNK_LEN * 2,
            MIN_CHUNK_LEN + 1,
        ] {
            assert!(!ChunkIndex::chunk_len_is_valid(bad), "{bad}");
            assert!(ChunkIndex::of(&b""[..], bad).is_err());
        }
    }
}

//! Delta updates: a release a device installs by reusing the 4 KiB blocks
//! its running slot already holds and fetching only the others
//! (docs/updates.md, "Delta updates").
//!
//! A delta release is a second `.swu` of the same root file system, the
//! *delta `.swu`*, which a device never downloads whole: it rebuilds it.
//! Its rootfs entry is the image as one zstd frame of stored (raw) blocks,
//! one per segment of [`DeltaIndex::segment_len`] bytes, so SWUpdate reads
//! it with the same `compressed = "zstd"` as the full `.swu` and the layer's
//! one `sw-description` template serves both. Its `sw-description` is signed
//! like any other and names the SHA-256 of that rootfs entry.
//!
//! Two files are published beside the full `.swu`:
//!
//! * the **delta index** (`.delta`, pinned by the signed manifest's
//!   [`crate::Delta`]: length and SHA-256), which holds the delta `.swu`'s
//!   bytes before the image (the cpio headers, `sw-description` and its CMS
//!   signature) and after it, the SHA-256 of each 4 KiB block of the image,
//!   and the length and SHA-256 of each compressed segment;
//! * the **pack** (`.pack`): each segment of the image compressed on its
//!   own with zstd, one after the other, fetched with HTTP `Range`.
//!
//! The device ([`DeltaIndex::locate`], [`DeltaReader`]) hashes its running
//! slot block by block, finds every block of the new image it already
//! holds, anywhere in the slot, and fetches the segments that hold the
//! rest. Every block goes on to SWUpdate only after it matched the index:
//! a reused block that does not match (a damaged slot) is fetched instead,
//! and a fetched segment is checked against its SHA-256 *before* it is
//! decompressed, so the decompressor only ever sees signed bytes.
//!
//! The index file is one zstd frame (the SHA-256s of the free space's zero
//! blocks repeat) of, all integers big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `HRTHDLT1` |
//! | 4 | block length (4096) |
//! | 4 | segment length (a power of two, 4 KiB to 128 KiB) |
//! | 8 | image length |
//! | 8 | delta `.swu` length |
//! | 32 | delta `.swu` SHA-256 |
//! | 4, 4 | head length, tail length |
//! | head, tail | the delta `.swu`'s bytes before and after the image entry's data |
//! | 32 × blocks | the SHA-256 of each block (the last may be shorter) |
//! | 36 × segments | each compressed segment's length (4) and SHA-256 (32) |

use std::io::{self, Read};

use crate::artifact::{ArtifactChecker, ArtifactError, invalid};
use crate::manifest::Delta;
use crate::types::Sha256;

/// The first bytes of a delta index (format 1), before compression.
pub const DELTA_MAGIC: &[u8; 8] = b"HRTHDLT1";
/// Blocks are ext4's: a file's data starts on a block boundary, so the
/// blocks of an unchanged file match wherever a new build placed it.
pub const BLOCK_LEN: u32 = 4096;
/// The segment length `hearth-release` uses. Smaller segments waste less
/// of a fetch around a changed block, larger ones compress better; 16 KiB
/// fetched about a third less than 64 KiB for a release that added three
/// packages (docs/updates.md has the figures).
pub const DEFAULT_SEGMENT_LEN: u32 = 16 * 1024;
/// zstd's largest block: a segment is one stored block of the frame.
const MAX_SEGMENT_LEN: u32 = 128 * 1024;
/// The most a delta index may hold once decompressed (enough for a 4 GiB
/// image in 16 KiB segments).
pub const MAX_INDEX_LEN: usize = 48 << 20;
/// The most the head (cpio headers, `sw-description`, its signature) and
/// the tail may hold.
const MAX_HEAD_LEN: u32 = 1 << 20;
const MAX_TAIL_LEN: u32 = 4096;
const FIXED_LEN: usize = 8 + 4 + 4 + 8 + 8 + 32 + 4 + 4;
/// zstd frame magic, then a frame header with no content size, no checksum
/// and a 128 KiB window (`Window_Descriptor` 0x38: 2^(10+7)).
const FRAME_HEADER: [u8; 6] = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38];
/// One segment's compressed length and SHA-256 in the index.
const SEGMENT_ENTRY_LEN: usize = 4 + 32;
/// A slot block that matches no block of the new image.
const NOT_FOUND: u32 = u32::MAX;

/// One compressed segment of the pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Where it starts in the pack.
    pub offset: u64,
    /// Its compressed length.
    pub len: u32,
    /// The SHA-256 of its compressed bytes.
    pub sha256: Sha256,
}

/// The parsed delta index of one release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaIndex {
    segment_len: u32,
    image_len: u64,
    swu_len: u64,
    swu_sha256: Sha256,
    head: Vec<u8>,
    tail: Vec<u8>,
    blocks: Vec<Sha256>,
    segments: Vec<Segment>,
}

fn bad(reason: impl Into<String>) -> ArtifactError {
    ArtifactError::BadDelta {
        reason: reason.into(),
    }
}

/// The bytes of the delta `.swu`'s image entry for an image of `image_len`
/// bytes in segments of `segment_len`: the frame header, then each
/// segment's 3-byte block header and its bytes.
pub fn image_entry_len(image_len: u64, segment_len: u32) -> u64 {
    let segments = image_len.div_ceil(u64::from(segment_len)).max(1);
    FRAME_HEADER.len() as u64 + 3 * segments + image_len
}

/// The zstd frame header that starts the image entry.
pub fn frame_header() -> [u8; 6] {
    FRAME_HEADER
}

/// The header of a stored zstd block of `len` bytes (at most 128 KiB).
pub fn block_header(len: u32, last: bool) -> [u8; 3] {
    let value = u32::from(last) | (len << 3); // block type 0: raw
    let b = value.to_le_bytes();
    [b[0], b[1], b[2]]
}

/// The delta `.swu`'s parts and the image's digests, as `hearth-release
/// build --delta` puts them together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaParts {
    /// Segment length.
    pub segment_len: u32,
    /// The image's length.
    pub image_len: u64,
    /// The delta `.swu`'s length and SHA-256.
    pub swu_len: u64,
    /// See `swu_len`.
    pub swu_sha256: Sha256,
    /// The delta `.swu` before the image entry's data.
    pub head: Vec<u8>,
    /// The delta `.swu` after it.
    pub tail: Vec<u8>,
    /// Each block's SHA-256.
    pub blocks: Vec<Sha256>,
    /// Each compressed segment's length and SHA-256, in pack order.
    pub segments: Vec<(u32, Sha256)>,
}

impl DeltaIndex {
    /// An index from its parts, checked as a device would check it.
    pub fn new(parts: DeltaParts) -> Result<DeltaIndex, ArtifactError> {
        let mut offset = 0u64;
        let segments = parts
            .segments
            .iter()
            .map(|&(len, sha256)| {
                let segment = Segment {
                    offset,
                    len,
                    sha256,
                };
                offset += u64::from(len);
                segment
            })
            .collect();
        let index = DeltaIndex {
            segment_len: parts.segment_len,
            image_len: parts.image_len,
            swu_len: parts.swu_len,
            swu_sha256: parts.swu_sha256,
            head: parts.head,
            tail: parts.tail,
            blocks: parts.blocks,
            segments,
        };
        index.check()?;
        Ok(index)
    }

    fn check(&self) -> Result<(), ArtifactError> {
        if !self.segment_len.is_power_of_two()
            || !(BLOCK_LEN..=MAX_SEGMENT_LEN).contains(&self.segment_len)
        {
            return Err(bad(format!(
                "its segment length {} is not a power of two from 4 KiB to 128 KiB",
                self.segment_len
            )));
        }
        if self.head.len() > MAX_HEAD_LEN as usize || self.tail.len() > MAX_TAIL_LEN as usize {
            return Err(bad("its head or tail is too long"));
        }
        let blocks = self.image_len.div_ceil(u64::from(BLOCK_LEN));
        let segments = self.image_len.div_ceil(u64::from(self.segment_len));
        if self.blocks.len() as u64 != blocks || self.segments.len() as u64 != segments {
            return Err(bad(format!(
                "it lists {} blocks and {} segments for an image of {} bytes",
                self.blocks.len(),
                self.segments.len(),
                self.image_len
            )));
        }
        let entry = image_entry_len(self.image_len, self.segment_len);
        if self.head.len() as u64 + entry + self.tail.len() as u64 != self.swu_len {
            return Err(bad("its lengths do not add up to the delta .swu's"));
        }
        // zstd's bound for a segment that does not compress, and more.
        let most = self.segment_len + self.segment_len / 128 + 1024;
        if self.segments.iter().any(|s| s.len == 0 || s.len > most) {
            return Err(bad("a segment's compressed length is out of bounds"));
        }
        Ok(())
    }

    /// The index file: the encoding above, compressed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity(
            FIXED_LEN
                + self.head.len()
                + self.tail.len()
                + 32 * self.blocks.len()
                + SEGMENT_ENTRY_LEN * self.segments.len(),
        );
        raw.extend_from_slice(DELTA_MAGIC);
        raw.extend_from_slice(&BLOCK_LEN.to_be_bytes());
        raw.extend_from_slice(&self.segment_len.to_be_bytes());
        raw.extend_from_slice(&self.image_len.to_be_bytes());
        raw.extend_from_slice(&self.swu_len.to_be_bytes());
        raw.extend_from_slice(self.swu_sha256.as_bytes());
        raw.extend_from_slice(&(self.head.len() as u32).to_be_bytes());
        raw.extend_from_slice(&(self.tail.len() as u32).to_be_bytes());
        raw.extend_from_slice(&self.head);
        raw.extend_from_slice(&self.tail);
        for block in &self.blocks {
            raw.extend_from_slice(block.as_bytes());
        }
        for segment in &self.segments {
            raw.extend_from_slice(&segment.len.to_be_bytes());
            raw.extend_from_slice(segment.sha256.as_bytes());
        }
        // A 128 KiB window: the device decompresses the index as it reads
        // it, and the window is what that costs (level 19's would be 8 MiB);
        // only the zero blocks' repeated digests compress anyway.
        // Compressing a buffer in memory fails only without memory.
        zstd::bulk::Compressor::new(19)
            .and_then(|mut c| {
                c.set_parameter(zstd::zstd_safe::CParameter::WindowLog(17))?;
                c.compress(&raw)
            })
            .unwrap_or_default()
    }

    /// Parses an index file after checking it is the one `delta` (from a
    /// verified manifest) pins: its length and SHA-256 first, so the
    /// decompressor only sees signed bytes.
    pub fn from_signed(bytes: &[u8], delta: &Delta) -> Result<DeltaIndex, ArtifactError> {
        if bytes.len() as u64 != delta.size {
            return Err(bad(format!(
                "it is {} bytes, the manifest says {}",
                bytes.len(),
                delta.size
            )));
        }
        let actual = Sha256::digest(bytes);
        if actual != delta.sha256 {
            return Err(bad(format!(
                "its sha256 is {actual}, the manifest says {}",
                delta.sha256
            )));
        }
        DeltaIndex::parse(bytes)
    }

    /// Parses an index file (signed bytes: see [`DeltaIndex::from_signed`]).
    pub fn parse(bytes: &[u8]) -> Result<DeltaIndex, ArtifactError> {
        // Decompressed as it is read: the digests are not held twice.
        let decoder = zstd::stream::read::Decoder::with_buffer(bytes)
            .map_err(|e| bad(format!("it does not decompress: {e}")))?;
        let mut r = Fields { r: decoder };
        if r.array::<8>()? != *DELTA_MAGIC {
            return Err(bad("it is not a format 1 delta index"));
        }
        if r.u32()? != BLOCK_LEN {
            return Err(bad("its block length is not 4096"));
        }
        let segment_len = r.u32()?;
        let image_len = r.u64()?;
        let swu_len = r.u64()?;
        let swu_sha256 = Sha256::from_bytes(r.array()?);
        let (head_len, tail_len) = (r.u32()?, r.u32()?);
        if head_len > MAX_HEAD_LEN || tail_len > MAX_TAIL_LEN || segment_len == 0 {
            return Err(bad("its head, tail or segment length is out of bounds"));
        }
        let blocks = image_len.div_ceil(u64::from(BLOCK_LEN));
        let segments = image_len.div_ceil(u64::from(segment_len));
        let listed = blocks * 32 + segments * SEGMENT_ENTRY_LEN as u64;
        if listed > MAX_INDEX_LEN as u64 {
            return Err(bad(format!(
                "an image of {image_len} bytes needs {listed} bytes of digests, more than an index may hold"
            )));
        }
        let head = r.vec(head_len as usize)?;
        let tail = r.vec(tail_len as usize)?;
        let blocks = (0..blocks)
            .map(|_| r.array().map(Sha256::from_bytes))
            .collect::<Result<_, _>>()?;
        let segments = (0..segments)
            .map(|_| Ok((r.u32()?, Sha256::from_bytes(r.array()?))))
            .collect::<Result<_, ArtifactError>>()?;
        if r.r.read(&mut [0u8; 1]).unwrap_or(1) != 0 {
            return Err(bad("it holds more than its header lists"));
        }
        DeltaIndex::new(DeltaParts {
            segment_len,
            image_len,
            swu_len,
            swu_sha256,
            head,
            tail,
            blocks,
            segments,
        })
    }

    /// The delta `.swu`'s length (what SWUpdate is told it will read).
    pub fn swu_len(&self) -> u64 {
        self.swu_len
    }

    /// The pack's length.
    pub fn pack_len(&self) -> u64 {
        self.segments
            .last()
            .map_or(0, |s| s.offset + u64::from(s.len))
    }

    /// Bytes per segment.
    pub fn segment_len(&self) -> u32 {
        self.segment_len
    }

    /// The compressed segments, in pack order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The image's length.
    pub fn image_len(&self) -> u64 {
        self.image_len
    }

    fn blocks_per_segment(&self) -> usize {
        (self.segment_len / BLOCK_LEN) as usize
    }

    /// The length of block `i` (the last may be shorter).
    fn block_len(&self, i: usize) -> usize {
        let start = i as u64 * u64::from(BLOCK_LEN);
        (self.image_len - start).min(u64::from(BLOCK_LEN)) as usize
    }

    /// Checks that segment `i`'s decompressed bytes are the image's.
    pub fn check_segment(&self, i: usize, data: &[u8]) -> Result<(), ArtifactError> {
        let first = i * self.blocks_per_segment();
        let start = i as u64 * u64::from(self.segment_len);
        let expected = (self.image_len - start).min(u64::from(self.segment_len));
        if data.len() as u64 != expected {
            return Err(bad(format!(
                "segment {i} holds {} bytes, not {expected}",
                data.len()
            )));
        }
        for (j, block) in data.chunks(BLOCK_LEN as usize).enumerate() {
            if Sha256::digest(block) != self.blocks[first + j] {
                return Err(bad(format!(
                    "segment {i} does not decompress to the image's blocks"
                )));
            }
        }
        Ok(())
    }

    /// Finds, in `slot` (the running slot, read from its start), every
    /// block of the new image it holds. Blocks of zeros (free space) are
    /// never looked for: they are written as zeros.
    pub fn locate(&self, slot: &mut impl Read) -> io::Result<Located> {
        let zero_digest = Sha256::digest(&[0u8; BLOCK_LEN as usize]);
        let is_zero =
            |i: usize| self.blocks[i] == zero_digest && self.block_len(i) == BLOCK_LEN as usize;
        let zero: Vec<usize> = (0..self.blocks.len()).filter(|&i| is_zero(i)).collect();
        let mut source = vec![NOT_FOUND; self.blocks.len()];
        // The blocks to look for, ordered by digest for binary search.
        let mut wanted: Vec<u32> = (0..self.blocks.len() as u32)
            .filter(|&i| !is_zero(i as usize))
            .collect();
        wanted.sort_unstable_by_key(|&i| self.blocks[i as usize]);
        let mut buf = vec![0u8; BLOCK_LEN as usize];
        let mut at = 0u32;
        let mut scanned = 0u64;
        loop {
            let n = crate::index::read_chunk(slot, &mut buf)?;
            if n == 0 {
                break;
            }
            scanned += n as u64;
            if buf[..n].iter().any(|b| *b != 0) {
                let digest = Sha256::digest(&buf[..n]);
                let first = wanted.partition_point(|&i| self.blocks[i as usize] < digest);
                for &i in wanted[first..]
                    .iter()
                    .take_while(|&&i| self.blocks[i as usize] == digest)
                {
                    if source[i as usize] == NOT_FOUND {
                        source[i as usize] = at;
                    }
                }
            }
            if n < buf.len() || at == NOT_FOUND - 1 {
                break;
            }
            at += 1;
        }
        Ok(Located {
            source,
            zero,
            scanned,
        })
    }
}

/// Where a delta release's index and pack sit beside its full `.swu` (as
/// `build --delta` writes them and `publish` lays them out): the same path
/// with `.delta` and `.pack` appended.
pub fn files_beside(swu: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let with = |suffix: &str| {
        let mut name = swu.as_os_str().to_owned();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    (with(".delta"), with(".pack"))
}

/// What [`pack_image`] learnt about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// The image's length.
    pub image_len: u64,
    /// Each block's SHA-256.
    pub blocks: Vec<Sha256>,
    /// Each compressed segment's length and SHA-256.
    pub segments: Vec<(u32, Sha256)>,
    /// The image entry's ([`image_entry`]) SHA-256, length and byte sum
    /// (the cpio `newc` checksum).
    pub entry_sha256: Sha256,
    /// See `entry_sha256`.
    pub entry_len: u64,
    /// See `entry_sha256`.
    pub entry_sum: u32,
}

/// Reads `n` bytes unless the stream ends first.
fn read_segment(image: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let got = crate::index::read_chunk(image, &mut buf)?;
    buf.truncate(got);
    Ok(buf)
}

/// Writes the pack of `image` (each segment compressed with zstd at
/// `level`) into `pack`, and returns the digests for the index.
pub fn pack_image(
    mut image: impl Read,
    segment_len: u32,
    level: i32,
    mut pack: impl io::Write,
) -> io::Result<Packed> {
    let mut entry = ring::digest::Context::new(&ring::digest::SHA256);
    let mut sum = 0u32;
    let mut add = |bytes: &[u8], entry: &mut ring::digest::Context| {
        entry.update(bytes);
        sum = bytes.iter().fold(sum, |s, b| s.wrapping_add(u32::from(*b)));
    };
    add(&FRAME_HEADER, &mut entry);
    let (mut blocks, mut segments, mut image_len) = (Vec::new(), Vec::new(), 0u64);
    let mut current = read_segment(&mut image, segment_len as usize)?;
    loop {
        let next = read_segment(&mut image, segment_len as usize)?;
        let last = next.is_empty();
        image_len += current.len() as u64;
        blocks.extend(current.chunks(BLOCK_LEN as usize).map(Sha256::digest));
        add(&block_header(current.len() as u32, last), &mut entry);
        add(&current, &mut entry);
        if !current.is_empty() {
            let compressed = zstd::bulk::compress(&current, level)?;
            pack.write_all(&compressed)?;
            segments.push((compressed.len() as u32, Sha256::digest(&compressed)));
        }
        if last {
            break;
        }
        current = next;
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(entry.finish().as_ref());
    Ok(Packed {
        image_len,
        blocks,
        segments,
        entry_sha256: Sha256::from_bytes(digest),
        entry_len: image_entry_len(image_len, segment_len),
        entry_sum: sum,
    })
}

/// Writes the delta `.swu`'s image entry for `image` into `out`: the zstd
/// frame of stored blocks that the device rebuilds.
pub fn image_entry(
    mut image: impl Read,
    segment_len: u32,
    mut out: impl io::Write,
) -> io::Result<()> {
    out.write_all(&FRAME_HEADER)?;
    let mut current = read_segment(&mut image, segment_len as usize)?;
    loop {
        let next = read_segment(&mut image, segment_len as usize)?;
        let last = next.is_empty();
        out.write_all(&block_header(current.len() as u32, last))?;
        out.write_all(&current)?;
        if last {
            return Ok(());
        }
        current = next;
    }
}

/// Where each block of the new image comes from: see
/// [`DeltaIndex::locate`].
#[derive(Debug, Clone)]
pub struct Located {
    /// The slot block that holds block `i`, or [`NOT_FOUND`].
    source: Vec<u32>,
    /// Blocks of zeros, in order.
    zero: Vec<usize>,
    /// Bytes of the slot read.
    scanned: u64,
}

impl Located {
    fn is_zero(&self, i: usize) -> bool {
        self.zero.binary_search(&i).is_ok()
    }

    /// Blocks found in the slot.
    pub fn found(&self) -> usize {
        self.source.iter().filter(|&&s| s != NOT_FOUND).count()
    }

    /// Bytes of the slot read.
    pub fn scanned(&self) -> u64 {
        self.scanned
    }
}

/// Reads parts of the pack: `open(offset, len)` returns exactly those
/// bytes of the pack file (an HTTP `Range` request on the device).
pub trait Pack {
    /// The pack's bytes from `offset`, `len` of them.
    fn open(&mut self, offset: u64, len: u64) -> io::Result<Box<dyn Read + Send>>;
}

impl<F: FnMut(u64, u64) -> io::Result<Box<dyn Read + Send>>> Pack for F {
    fn open(&mut self, offset: u64, len: u64) -> io::Result<Box<dyn Read + Send>> {
        self(offset, len)
    }
}

/// Reads a block of the running slot.
pub trait Slot {
    /// Fills `buf` from `offset`; fewer bytes only at the end.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

impl Slot for std::fs::File {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match std::os::unix::fs::FileExt::read_at(
                self,
                &mut buf[filled..],
                offset + filled as u64,
            ) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
}

impl Slot for io::Cursor<Vec<u8>> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let data = self.get_ref();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }
}

/// What a delta install reused and fetched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeltaCounts {
    /// Blocks copied from the running slot.
    pub reused_blocks: u64,
    /// Blocks of zeros written as such.
    pub zero_blocks: u64,
    /// Segments fetched from the pack.
    pub fetched_segments: u64,
    /// Pack bytes fetched.
    pub fetched_bytes: u64,
}

/// Most pack bytes asked for in one request: consecutive segments to fetch
/// go in one `Range` request up to this.
const MAX_RUN: u64 = 8 << 20;

/// The delta `.swu`, rebuilt from the running slot and the pack: the head,
/// the image entry (each block checked against the index before it goes
/// on), then, once the whole stream matched the index's SHA-256, the tail.
/// Errors are `InvalidData` carrying an [`ArtifactError`] for anything
/// that does not match; a failed fetch passes through as it is.
pub struct DeltaReader<'a, S, P> {
    index: &'a DeltaIndex,
    located: Located,
    slot: S,
    pack: P,
    /// The open `Range` request: the next pack offset it yields, its end.
    run: Option<(u64, u64, Box<dyn Read + Send>)>,
    checker: Option<ArtifactChecker>,
    /// The next segment to produce; `None` before the head.
    next: Option<usize>,
    out: Vec<u8>,
    pos: usize,
    counts: DeltaCounts,
}

impl<S, P> std::fmt::Debug for DeltaReader<'_, S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaReader")
            .field("next", &self.next)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl<'a, S: Slot, P: Pack> DeltaReader<'a, S, P> {
    /// The reader; `located` comes from [`DeltaIndex::locate`] over the
    /// same slot.
    pub fn new(index: &'a DeltaIndex, located: Located, slot: S, pack: P) -> DeltaReader<'a, S, P> {
        let mut out = index.head.clone();
        out.extend_from_slice(&FRAME_HEADER);
        let mut checker = ArtifactChecker::new(index.swu_sha256, index.swu_len);
        // Signed bytes, so this cannot fail; if it did, finish() would say.
        let _ = checker.update(&out);
        DeltaReader {
            index,
            located,
            slot,
            pack,
            run: None,
            checker: Some(checker),
            next: Some(0),
            out,
            pos: 0,
            counts: DeltaCounts::default(),
        }
    }

    /// What was reused and fetched so far.
    pub fn counts(&self) -> DeltaCounts {
        self.counts
    }

    /// Whether segment `i` has a block that the slot does not hold.
    fn needs_fetch(&self, i: usize) -> bool {
        let per = self.index.blocks_per_segment();
        let end = ((i + 1) * per).min(self.index.blocks.len());
        (i * per..end).any(|b| self.located.source[b] == NOT_FOUND && !self.located.is_zero(b))
    }

    /// Segment `i`'s compressed bytes, checked against the index.
    fn fetch(&mut self, i: usize) -> io::Result<Vec<u8>> {
        let segment = self.index.segments[i];
        let continues = self
            .run
            .as_ref()
            .is_some_and(|(next, end, _)| *next == segment.offset && *end > segment.offset);
        if !continues {
            // One request for this segment and the ones after it that are
            // to be fetched too.
            let mut end = segment.offset + u64::from(segment.len);
            let mut j = i + 1;
            while j < self.index.segments.len()
                && self.needs_fetch(j)
                && end + u64::from(self.index.segments[j].len) - segment.offset <= MAX_RUN
            {
                end += u64::from(self.index.segments[j].len);
                j += 1;
            }
            let reader = self.pack.open(segment.offset, end - segment.offset)?;
            self.run = Some((segment.offset, end, reader));
        }
        let mut bytes = vec![0u8; segment.len as usize];
        let Some((next, _, reader)) = self.run.as_mut() else {
            return Err(io::Error::other("no pack request open"));
        };
        let got = crate::index::read_chunk(reader, &mut bytes)?;
        *next += got as u64;
        if got < bytes.len() {
            self.run = None;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the pack ended {got} bytes into the segment at offset {}",
                    segment.offset
                ),
            ));
        }
        self.counts.fetched_segments += 1;
        self.counts.fetched_bytes += bytes.len() as u64;
        if Sha256::digest(&bytes) != segment.sha256 {
            self.run = None;
            return Err(invalid(ArtifactError::SegmentMismatch {
                offset: segment.offset,
            }));
        }
        Ok(bytes)
    }

    /// Segment `i` of the image, every block checked.
    fn segment(&mut self, i: usize) -> io::Result<Vec<u8>> {
        let index = self.index;
        let per = index.blocks_per_segment();
        let first = i * per;
        let end = ((i + 1) * per).min(index.blocks.len());
        let mut data = Vec::with_capacity(index.segment_len as usize);
        let (mut reused, mut zero) = (0, 0);
        let mut buf = [0u8; BLOCK_LEN as usize];
        for b in first..end {
            let len = index.block_len(b);
            if self.located.is_zero(b) {
                data.resize(data.len() + len, 0);
                zero += 1;
                continue;
            }
            let source = self.located.source[b];
            if source != NOT_FOUND {
                let n = self
                    .slot
                    .read_at(u64::from(source) * u64::from(BLOCK_LEN), &mut buf[..len])?;
                if n == len && Sha256::digest(&buf[..len]) == index.blocks[b] {
                    data.extend_from_slice(&buf[..len]);
                    reused += 1;
                    continue;
                }
                // The slot changed since it was scanned, or is damaged:
                // the block is fetched instead.
                self.located.source[b] = NOT_FOUND;
            }
            let compressed = self.fetch(i)?;
            let decompressed = zstd::bulk::decompress(&compressed, index.segment_len as usize)
                .map_err(|e| invalid(bad(format!("segment {i} does not decompress: {e}"))))?;
            index.check_segment(i, &decompressed).map_err(invalid)?;
            return Ok(decompressed);
        }
        self.counts.reused_blocks += reused;
        self.counts.zero_blocks += zero;
        Ok(data)
    }

    /// Fills `out` with the next part of the stream; false at the end.
    fn produce(&mut self) -> io::Result<bool> {
        let Some(i) = self.next else {
            return Ok(false);
        };
        let segments = self.index.segments.len();
        self.out.clear();
        self.pos = 0;
        if i < segments.max(1) {
            let data = if segments == 0 {
                Vec::new()
            } else {
                self.segment(i)?
            };
            let last = i + 1 >= segments;
            self.out
                .extend_from_slice(&block_header(data.len() as u32, last));
            self.out.extend_from_slice(&data);
            self.next = Some(i + 1);
        } else {
            // The tail goes on only once the whole stream matched.
            let mut checker = self
                .checker
                .take()
                .ok_or_else(|| io::Error::other("checked twice"))?;
            checker.update(&self.index.tail).map_err(invalid)?;
            checker.finish().map_err(invalid)?;
            self.out.extend_from_slice(&self.index.tail);
            self.next = None;
            return Ok(true);
        }
        if let Some(checker) = self.checker.as_mut() {
            checker.update(&self.out).map_err(invalid)?;
        }
        Ok(true)
    }
}

impl<S: Slot, P: Pack> Read for DeltaReader<'_, S, P> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos == self.out.len() {
            if !self.produce()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads big-endian fields off a stream.
struct Fields<R> {
    r: R,
}

impl<R: Read> Fields<R> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ArtifactError> {
        let mut a = [0u8; N];
        self.r
            .read_exact(&mut a)
            .map_err(|e| bad(format!("it ends early or does not decompress: {e}")))?;
        Ok(a)
    }

    fn vec(&mut self, n: usize) -> Result<Vec<u8>, ArtifactError> {
        let mut v = vec![0u8; n];
        self.r
            .read_exact(&mut v)
            .map_err(|e| bad(format!("it ends early or does not decompress: {e}")))?;
        Ok(v)
    }

    fn u32(&mut self) -> Result<u32, ArtifactError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, ArtifactError> {
        self.array().map(u64::from_be_bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SEG: u32 = 16 * 1024;

    /// An image of `blocks` blocks: each block's bytes come from `seed`
    /// and its number, except every fifth, which is zeros (free space).
    fn image(blocks: usize, seed: u8) -> Vec<u8> {
        let mut out = Vec::new();
        for b in 0..blocks {
            let fill = if b % 5 == 4 {
                0
            } else {
                (b as u8).wrapping_mul(31) ^ seed
            };
            out.extend((0..BLOCK_LEN as usize).map(|i| fill.wrapping_add((i % 7) as u8)));
        }
        out
    }

    /// A release of `image`: its index, its pack and the delta `.swu` the
    /// device must rebuild.
    fn release(image: &[u8]) -> (DeltaIndex, Vec<u8>, Vec<u8>) {
        let mut pack = Vec::new();
        let packed = pack_image(image, SEG, 3, &mut pack).unwrap();
        let (head, tail) = (b"HEAD: cpio and sw-description".to_vec(), b"TAIL".to_vec());
        let mut swu = head.clone();
        image_entry(image, SEG, &mut swu).unwrap();
        assert_eq!(swu.len() as u64 - head.len() as u64, packed.entry_len);
        assert_eq!(Sha256::digest(&swu[head.len()..]), packed.entry_sha256);
        swu.extend_from_slice(&tail);
        let index = DeltaIndex::new(DeltaParts {
            segment_len: SEG,
            image_len: packed.image_len,
            swu_len: swu.len() as u64,
            swu_sha256: Sha256::digest(&swu),
            head,
            tail,
            blocks: packed.blocks,
            segments: packed.segments,
        })
        .unwrap();
        (index, pack, swu)
    }

    /// A pack served from memory that logs each request.
    type Serve = Box<dyn FnMut(u64, u64) -> io::Result<Box<dyn Read + Send>>>;

    fn served(pack: Vec<u8>, log: std::sync::Arc<std::sync::Mutex<Vec<(u64, u64)>>>) -> Serve {
        Box::new(
            move |offset: u64, len: u64| -> io::Result<Box<dyn Read + Send>> {
                log.lock().unwrap().push((offset, len));
                let part = pack[offset as usize..(offset + len) as usize].to_vec();
                Ok(Box::new(io::Cursor::new(part)))
            },
        )
    }

    fn rebuild(
        index: &DeltaIndex,
        slot: Vec<u8>,
        pack: impl Pack,
    ) -> (io::Result<Vec<u8>>, DeltaCounts) {
        let located = index.locate(&mut &slot[..]).unwrap();
        let mut reader = DeltaReader::new(index, located, io::Cursor::new(slot), pack);
        let mut out = Vec::new();
        let result = reader.read_to_end(&mut out).map(|_| out);
        (result, reader.counts())
    }

    #[test]
    fn the_image_entry_is_a_zstd_stream_of_the_image() {
        let data = image(37, 1);
        let mut entry = Vec::new();
        image_entry(&data[..], SEG, &mut entry).unwrap();
        assert_eq!(zstd::stream::decode_all(&entry[..]).unwrap(), data);
        let mut empty = Vec::new();
        image_entry(&[][..], SEG, &mut empty).unwrap();
        assert_eq!(zstd::stream::decode_all(&empty[..]).unwrap(), b"");
    }

    #[test]
    fn the_index_round_trips_and_a_device_with_nothing_fetches_everything() {
        let data = image(37, 1);
        let (index, pack, swu) = release(&data);
        assert_eq!(DeltaIndex::parse(&index.to_bytes()).unwrap(), index);
        let log = Default::default();
        let (out, counts) = rebuild(&index, Vec::new(), served(pack.clone(), log));
        assert_eq!(out.unwrap(), swu);
        assert_eq!(counts.reused_blocks, 0);
        // Segments with only zeros are written, not fetched.
        assert!(counts.fetched_bytes <= pack.len() as u64);
    }

    #[test]
    fn blocks_the_slot_holds_anywhere_are_reused_and_only_the_rest_fetched() {
        let old = image(64, 1);
        // The new image: the old one shifted by three blocks (a new file
        // in front), with two changed blocks.
        let mut new = image(3, 9);
        new.extend_from_slice(&old[..old.len() - 3 * BLOCK_LEN as usize]);
        new[40 * BLOCK_LEN as usize] ^= 0xff;
        new[41 * BLOCK_LEN as usize + 5] ^= 0xff;
        let (index, pack, swu) = release(&new);
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (out, counts) = rebuild(&index, old, served(pack.clone(), log.clone()));
        assert_eq!(out.unwrap(), swu);
        // Blocks 0-2 and 40-41 are new: segments 0 and 10 (4 blocks each).
        assert_eq!(counts.fetched_segments, 2, "{counts:?}");
        let requests = log.lock().unwrap().clone();
        assert_eq!(requests.len(), 2, "{requests:?}");
        assert!(counts.fetched_bytes < pack.len() as u64 / 5, "{counts:?}");
        assert!(counts.reused_blocks > 40, "{counts:?}");
    }

    #[test]
    fn a_reused_block_that_no_longer_matches_is_fetched_instead() {
        let data = image(20, 2);
        let (index, pack, swu) = release(&data);
        let located = index.locate(&mut &data[..]).unwrap();
        // The slot is damaged after it was scanned.
        let mut damaged = data.clone();
        damaged[6 * BLOCK_LEN as usize] ^= 1;
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut reader = DeltaReader::new(
            &index,
            located,
            io::Cursor::new(damaged),
            served(pack, log.clone()),
        );
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, swu);
        assert_eq!(reader.counts().fetched_segments, 1);
        assert_eq!(
            *log.lock().unwrap(),
            [(
                index.segments()[1].offset,
                u64::from(index.segments()[1].len)
            )]
        );
    }

    /// What `r` hands out before its error, and the error.
    fn until_error(r: &mut impl Read) -> (Vec<u8>, io::Error) {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) => panic!("no error: the stream ended"),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, e),
            }
        }
    }

    #[test]
    fn a_tampered_segment_or_a_range_answered_with_other_bytes_stops_before_its_bytes() {
        let old = image(32, 1);
        let mut new = old.clone();
        new[20 * BLOCK_LEN as usize] ^= 0xff; // segment 5 is fetched
        let (index, pack, swu) = release(&new);
        let offset = index.segments()[5].offset;
        // A flipped byte in the pack on the server.
        let mut tampered = pack.clone();
        tampered[offset as usize + 3] ^= 1;
        // A server that answers a Range request with other bytes of the pack.
        let other = move |o: u64, len: u64| -> io::Result<Box<dyn Read + Send>> {
            let from = if o == 0 { 1 } else { 0 };
            Ok(Box::new(io::Cursor::new(
                pack[from..from + len as usize].to_vec(),
            )))
        };
        let cases: Vec<(&str, Serve)> = vec![
            ("tampered", served(tampered, Default::default())),
            ("other bytes", Box::new(other)),
        ];
        for (what, pack) in cases {
            let located = index.locate(&mut &old[..]).unwrap();
            let mut reader = DeltaReader::new(&index, located, io::Cursor::new(old.clone()), pack);
            let (out, error) = until_error(&mut reader);
            let error = ArtifactError::from_io(error).unwrap();
            assert_eq!(error, ArtifactError::SegmentMismatch { offset }, "{what}");
            // Nothing of segment 5 went on: what came out is the stream
            // up to segment 4's end.
            let upto = index.head.len() + FRAME_HEADER.len() + 5 * (3 + SEG as usize);
            assert_eq!(out, swu[..upto], "{what}");
        }
    }

    #[test]
    fn a_truncated_pack_is_an_error_not_a_short_image() {
        let data = image(8, 3);
        let (index, pack, _) = release(&data);
        let short = move |o: u64, len: u64| -> io::Result<Box<dyn Read + Send>> {
            let end = (o + len - 1) as usize;
            Ok(Box::new(io::Cursor::new(pack[o as usize..end].to_vec())))
        };
        let (out, _) = rebuild(&index, Vec::new(), short);
        let error = out.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
    }

    #[test]
    fn an_index_that_is_not_the_signed_one_is_refused() {
        let (index, _, _) = release(&image(8, 4));
        let bytes = index.to_bytes();
        let delta = Delta {
            urls: vec!["https://u.example/a.swu.delta".parse().unwrap()],
            size: bytes.len() as u64,
            sha256: Sha256::digest(&bytes),
            pack_urls: vec!["https://u.example/a.swu.pack".parse().unwrap()],
        };
        assert_eq!(DeltaIndex::from_signed(&bytes, &delta).unwrap(), index);
        let mut flipped = bytes.clone();
        flipped[10] ^= 1;
        let e = DeltaIndex::from_signed(&flipped, &delta).unwrap_err();
        assert!(e.to_string().contains("sha256"), "{e}");
        let e = DeltaIndex::from_signed(&bytes[..bytes.len() - 1], &delta).unwrap_err();
        assert!(e.to_string().contains("the manifest says"), "{e}");
        // Signed but inconsistent (a vendor tool's bug): refused too.
        let mut parts = DeltaParts {
            segment_len: SEG,
            image_len: index.image_len,
            swu_len: index.swu_len + 1,
            swu_sha256: index.swu_sha256,
            head: index.head.clone(),
            tail: index.tail.clone(),
            blocks: index.blocks.clone(),
            segments: index.segments.iter().map(|s| (s.len, s.sha256)).collect(),
        };
        assert!(DeltaIndex::new(parts.clone()).is_err());
        parts.swu_len -= 1;
        parts.blocks.pop();
        assert!(DeltaIndex::new(parts).is_err());
    }
}

//! The progress socket's frames (`struct progress_msg`, SWUpdate
//! `include/progress_ipc.h`) and the 2024.12+ connect acknowledgement,
//! encoded and decoded by hand, without I/O.
//!
//! The frame layout changed without an API version bump, so the caller
//! names it explicitly with [`ProgressLayout`]; the first `u32` cannot tell
//! the layouts apart.

use crate::error::{DecodeError, EncodeError};
use crate::msg::{RecoveryStatus, SourceType};
use crate::wire::{get_cstr, get_u32, get_u64, put_cstr, put_u32, put_u64};

/// `PRINFOSIZE`: size of the `info` field.
pub const INFO_SIZE: usize = 2048;

/// `sizeof(struct progress_connect_ack)`.
pub const CONNECT_ACK_SIZE: usize = 8;

/// `PROGRESS_API_VERSION` of 2023.12 (major 1): the first frame field.
pub const PROGRESS_API_V1: u32 = 0x0001_0000;
/// `PROGRESS_API_VERSION` of 2024.12 and later (major 2).
pub const PROGRESS_API_V2: u32 = 0x0002_0000;

/// Which C layout of `struct progress_msg` the daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgressLayout {
    /// Natural C alignment: SWUpdate 2022.12 (Debian bookworm) up to 2025.05.
    /// `dwl_bytes` (a `u64`) is 8-aligned, so a 4-byte hole follows
    /// `dwl_percent`: 2416 bytes on x86_64, aarch64 and armhf. On i386,
    /// where the C ABI aligns `u64` to 4, the hole and the tail padding are
    /// absent (2408 bytes), and this crate follows that.
    V2022_12,
    /// `__attribute__((packed))`: SWUpdate 2025.12 and later (commit
    /// 485fd2be), 2408 bytes on every target.
    Packed2025_12,
}

/// Byte offsets of one layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressOffsets {
    /// `magic` (2022.12) / `apiversion` (2023.12+).
    pub apiversion: usize,
    /// `status`.
    pub status: usize,
    /// `dwl_percent`.
    pub dwl_percent: usize,
    /// `dwl_bytes` (`unsigned long long`).
    pub dwl_bytes: usize,
    /// `nsteps`.
    pub nsteps: usize,
    /// `cur_step`.
    pub cur_step: usize,
    /// `cur_percent`.
    pub cur_percent: usize,
    /// `cur_image[256]`.
    pub cur_image: usize,
    /// `hnd_name[64]`.
    pub hnd_name: usize,
    /// `source`.
    pub source: usize,
    /// `infolen`.
    pub infolen: usize,
    /// `info[2048]`.
    pub info: usize,
    /// `sizeof(struct progress_msg)`.
    pub size: usize,
}

/// Alignment of `unsigned long long` inside a C struct on this target.
const U64_ALIGN: usize = if cfg!(target_arch = "x86") { 4 } else { 8 };

const fn offsets(u64_align: usize) -> ProgressOffsets {
    let dwl_bytes = crate::wire::align_up(12, u64_align);
    let nsteps = dwl_bytes + 8;
    let info = nsteps + 12 + 256 + 64 + 8;
    ProgressOffsets {
        apiversion: 0,
        status: 4,
        dwl_percent: 8,
        dwl_bytes,
        nsteps,
        cur_step: nsteps + 4,
        cur_percent: nsteps + 8,
        cur_image: nsteps + 12,
        hnd_name: nsteps + 12 + 256,
        source: nsteps + 12 + 256 + 64,
        infolen: nsteps + 12 + 256 + 64 + 4,
        info,
        size: crate::wire::align_up(info + INFO_SIZE, u64_align),
    }
}

impl ProgressLayout {
    /// Field offsets of this layout on this target.
    pub const fn offsets(self) -> ProgressOffsets {
        match self {
            ProgressLayout::V2022_12 => offsets(U64_ALIGN),
            ProgressLayout::Packed2025_12 => offsets(1),
        }
    }

    /// Bytes per frame.
    pub const fn frame_size(self) -> usize {
        self.offsets().size
    }
}

/// Which frames and handshake to expect on the progress socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProgressProtocol {
    /// Frame layout.
    pub layout: ProgressLayout,
    /// Whether the server sends a [`ConnectAck`] right after `accept()`
    /// (2024.12 and later).
    pub connect_ack: bool,
}

impl ProgressProtocol {
    /// SWUpdate 2022.12 (Debian bookworm) to 2024.05: natural layout, no ack.
    pub const SWUPDATE_2022_12: ProgressProtocol = ProgressProtocol {
        layout: ProgressLayout::V2022_12,
        connect_ack: false,
    };
    /// SWUpdate 2024.12 to 2025.05: natural layout, connect ack.
    pub const SWUPDATE_2024_12: ProgressProtocol = ProgressProtocol {
        layout: ProgressLayout::V2022_12,
        connect_ack: true,
    };
    /// SWUpdate 2025.12 and later: packed layout, connect ack.
    pub const SWUPDATE_2025_12: ProgressProtocol = ProgressProtocol {
        layout: ProgressLayout::Packed2025_12,
        connect_ack: true,
    };
}

/// One progress frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProgressMessage {
    /// `magic` (always 0 in 2022.12) or `apiversion` (2023.12+:
    /// [`PROGRESS_API_V1`], 2024.12+: [`PROGRESS_API_V2`]).
    pub apiversion: u32,
    /// What happened: START, RUN, PROGRESS, SUCCESS, FAILURE, DONE, ...
    pub status: RecoveryStatus,
    /// Download percentage.
    pub dwl_percent: u32,
    /// Bytes to download in total.
    pub dwl_bytes: u64,
    /// Number of steps (images) to install.
    pub nsteps: u32,
    /// Current step, from 1.
    pub cur_step: u32,
    /// Percentage of the current step.
    pub cur_percent: u32,
    /// Image being installed.
    pub cur_image: String,
    /// Handler installing it (`raw`, ...).
    pub hnd_name: String,
    /// Who triggered the installation.
    pub source: SourceType,
    /// Event data (`info[0..infolen]`): the install request's `info` on
    /// START, or `{"<cause>": <json>}` events. Empty when `infolen` is 0.
    pub info: String,
}

impl ProgressMessage {
    /// Decodes one frame of exactly `layout.frame_size()` bytes.
    pub fn decode(layout: ProgressLayout, buf: &[u8]) -> Result<ProgressMessage, DecodeError> {
        let o = layout.offsets();
        if buf.len() != o.size {
            return Err(DecodeError::WrongLength {
                expected: o.size,
                actual: buf.len(),
            });
        }
        // A corrupt infolen must not read past `info`.
        let infolen = (get_u32(buf, o.infolen) as usize).min(INFO_SIZE);
        let info = &buf[o.info..o.info + infolen];
        let info_end = info.iter().position(|&b| b == 0).unwrap_or(infolen);
        Ok(ProgressMessage {
            apiversion: get_u32(buf, o.apiversion),
            status: RecoveryStatus::from_code(get_u32(buf, o.status)),
            dwl_percent: get_u32(buf, o.dwl_percent),
            dwl_bytes: get_u64(buf, o.dwl_bytes),
            nsteps: get_u32(buf, o.nsteps),
            cur_step: get_u32(buf, o.cur_step),
            cur_percent: get_u32(buf, o.cur_percent),
            cur_image: get_cstr(buf, o.cur_image, 256),
            hnd_name: get_cstr(buf, o.hnd_name, 64),
            source: SourceType::from_code(get_u32(buf, o.source)),
            info: String::from_utf8_lossy(&info[..info_end]).into_owned(),
        })
    }

    /// Encodes a frame as the daemon would (for fakes and tests).
    pub fn encode(&self, layout: ProgressLayout) -> Result<Vec<u8>, EncodeError> {
        let o = layout.offsets();
        let mut buf = vec![0u8; o.size];
        put_u32(&mut buf, o.apiversion, self.apiversion);
        put_u32(&mut buf, o.status, self.status.code());
        put_u32(&mut buf, o.dwl_percent, self.dwl_percent);
        put_u64(&mut buf, o.dwl_bytes, self.dwl_bytes);
        put_u32(&mut buf, o.nsteps, self.nsteps);
        put_u32(&mut buf, o.cur_step, self.cur_step);
        put_u32(&mut buf, o.cur_percent, self.cur_percent);
        put_cstr(&mut buf, o.cur_image, 256, &self.cur_image, "cur_image")?;
        put_cstr(&mut buf, o.hnd_name, 64, &self.hnd_name, "hnd_name")?;
        put_u32(&mut buf, o.source, self.source.code());
        put_cstr(&mut buf, o.info, INFO_SIZE, &self.info, "info")?;
        put_u32(&mut buf, o.infolen, self.info.len() as u32);
        Ok(buf)
    }
}

/// `struct progress_connect_ack`, sent by SWUpdate 2024.12+ right after it
/// accepts a progress connection: `{ u32 apiversion; char magic[4] = "ACK\0" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectAck {
    /// The server's `PROGRESS_API_VERSION`.
    pub apiversion: u32,
}

impl ConnectAck {
    /// Decodes the 8 bytes, checking the magic.
    pub fn decode(buf: &[u8]) -> Result<ConnectAck, DecodeError> {
        if buf.len() != CONNECT_ACK_SIZE {
            return Err(DecodeError::WrongLength {
                expected: CONNECT_ACK_SIZE,
                actual: buf.len(),
            });
        }
        let magic = [buf[4], buf[5], buf[6], buf[7]];
        if &magic != b"ACK\0" {
            return Err(DecodeError::BadAckMagic(magic));
        }
        Ok(ConnectAck {
            apiversion: get_u32(buf, 0),
        })
    }

    /// Encodes the acknowledgement (for fakes and tests).
    pub fn encode(self) -> [u8; CONNECT_ACK_SIZE] {
        let mut buf = [0u8; CONNECT_ACK_SIZE];
        put_u32(&mut buf, 0, self.apiversion);
        buf[4..].copy_from_slice(b"ACK\0");
        buf
    }

    /// Major API version (bits 23..16). Clients built for major 2 must
    /// refuse other majors, as SWUpdate's own client does.
    pub fn major(self) -> u32 {
        (self.apiversion >> 16) & 0xff
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[cfg(not(target_arch = "x86"))]
    #[test]
    fn natural_layout_offsets_and_size() {
        let o = ProgressLayout::V2022_12.offsets();
        assert_eq!(
            (o.apiversion, o.status, o.dwl_percent, o.dwl_bytes, o.nsteps),
            (0, 4, 8, 16, 24)
        );
        assert_eq!((o.cur_step, o.cur_percent, o.cur_image), (28, 32, 36));
        assert_eq!(
            (o.hnd_name, o.source, o.infolen, o.info),
            (292, 356, 360, 364)
        );
        assert_eq!(ProgressLayout::V2022_12.frame_size(), 2416);
    }

    #[cfg(target_arch = "x86")]
    #[test]
    fn i386_natural_layout_has_no_hole() {
        assert_eq!(
            ProgressLayout::V2022_12.offsets(),
            ProgressLayout::Packed2025_12.offsets()
        );
    }

    /// i386 aligns `unsigned long long` to 4 in structs (`gcc -m32` gives
    /// 2408 bytes, `dwl_bytes` at 12), checked on any host.
    #[test]
    fn u64_aligned_to_4_gives_the_packed_offsets() {
        let mut natural_i386 = offsets(4);
        let packed = offsets(1);
        assert_eq!(natural_i386.size, 2408);
        natural_i386.size = packed.size;
        assert_eq!(natural_i386, packed);
        assert_eq!(offsets(8).size, 2416);
    }

    #[test]
    fn packed_layout_offsets_and_size() {
        let o = ProgressLayout::Packed2025_12.offsets();
        assert_eq!(
            (o.apiversion, o.status, o.dwl_percent, o.dwl_bytes, o.nsteps),
            (0, 4, 8, 12, 20)
        );
        assert_eq!((o.cur_step, o.cur_percent, o.cur_image), (24, 28, 32));
        assert_eq!(
            (o.hnd_name, o.source, o.infolen, o.info),
            (288, 352, 356, 360)
        );
        assert_eq!(ProgressLayout::Packed2025_12.frame_size(), 2408);
    }

    /// A frame built byte by byte at the 2022.12 offsets, as swupdate sends
    /// the RUN frame for the first image.
    #[cfg(not(target_arch = "x86"))]
    #[test]
    fn decodes_a_hand_built_2022_12_frame() {
        let mut f = vec![0u8; 2416];
        f[4..8].copy_from_slice(&2u32.to_ne_bytes()); // RUN
        f[8..12].copy_from_slice(&50u32.to_ne_bytes());
        f[12..16].copy_from_slice(&[0xee; 4]); // the hole: ignored
        f[16..24].copy_from_slice(&0x1_0000_0001u64.to_ne_bytes());
        f[24..28].copy_from_slice(&1u32.to_ne_bytes());
        f[28..32].copy_from_slice(&1u32.to_ne_bytes());
        f[32..36].copy_from_slice(&99u32.to_ne_bytes());
        f[36..47].copy_from_slice(b"rootfs.img\0");
        f[292..296].copy_from_slice(b"raw\0");
        f[356..360].copy_from_slice(&4u32.to_ne_bytes());
        f[360..364].copy_from_slice(&6u32.to_ne_bytes());
        f[364..370].copy_from_slice(b"hearth");
        f[370] = b'X'; // beyond infolen: not part of info
        let m = ProgressMessage::decode(ProgressLayout::V2022_12, &f).unwrap();
        assert_eq!(
            m,
            ProgressMessage {
                apiversion: 0,
                status: RecoveryStatus::Run,
                dwl_percent: 50,
                dwl_bytes: 0x1_0000_0001,
                nsteps: 1,
                cur_step: 1,
                cur_percent: 99,
                cur_image: "rootfs.img".into(),
                hnd_name: "raw".into(),
                source: SourceType::Local,
                info: "hearth".into(),
            }
        );
        // The same bytes read with the wrong layout give wrong fields, which
        // is why the caller must choose: the length check catches it first.
        assert!(ProgressMessage::decode(ProgressLayout::Packed2025_12, &f).is_err());
    }

    #[test]
    fn decodes_a_hand_built_packed_frame() {
        let mut f = vec![0u8; 2408];
        f[0..4].copy_from_slice(&PROGRESS_API_V2.to_ne_bytes());
        f[4..8].copy_from_slice(&3u32.to_ne_bytes()); // SUCCESS
        f[12..20].copy_from_slice(&4096u64.to_ne_bytes());
        f[20..24].copy_from_slice(&2u32.to_ne_bytes());
        f[32..40].copy_from_slice(b"app.tar\0");
        f[288..296].copy_from_slice(b"archive\0");
        f[352..356].copy_from_slice(&2u32.to_ne_bytes());
        let info = br#"{"1": {"reboot-mode":"no-reboot"}}"#;
        f[356..360].copy_from_slice(&(info.len() as u32).to_ne_bytes());
        f[360..360 + info.len()].copy_from_slice(info);
        let m = ProgressMessage::decode(ProgressLayout::Packed2025_12, &f).unwrap();
        assert_eq!(m.apiversion, 0x0002_0000);
        assert_eq!(m.status, RecoveryStatus::Success);
        assert_eq!(m.dwl_bytes, 4096);
        assert_eq!(m.nsteps, 2);
        assert_eq!(m.cur_image, "app.tar");
        assert_eq!(m.hnd_name, "archive");
        assert_eq!(m.source, SourceType::Suricatta);
        assert_eq!(m.info, r#"{"1": {"reboot-mode":"no-reboot"}}"#);
        assert_eq!(m.encode(ProgressLayout::Packed2025_12).unwrap(), f);
    }

    #[test]
    fn oversized_infolen_is_clamped() {
        let layout = ProgressLayout::Packed2025_12;
        let mut f = vec![b'i'; layout.frame_size()];
        f[356..360].copy_from_slice(&u32::MAX.to_ne_bytes());
        let m = ProgressMessage::decode(layout, &f).unwrap();
        assert_eq!(m.info.len(), INFO_SIZE);
    }

    #[test]
    fn round_trips_in_both_layouts() {
        let m = ProgressMessage {
            apiversion: PROGRESS_API_V1,
            status: RecoveryStatus::Progress,
            dwl_percent: 7,
            dwl_bytes: u64::MAX,
            nsteps: 3,
            cur_step: 2,
            cur_percent: 42,
            cur_image: "rootfs.ext4.zst".into(),
            hnd_name: "raw".into(),
            source: SourceType::Other(77),
            info: "{}".into(),
        };
        for layout in [ProgressLayout::V2022_12, ProgressLayout::Packed2025_12] {
            let buf = m.encode(layout).unwrap();
            assert_eq!(buf.len(), layout.frame_size());
            assert_eq!(ProgressMessage::decode(layout, &buf).unwrap(), m);
        }
    }

    #[test]
    fn connect_ack_bytes() {
        let ack = ConnectAck {
            apiversion: PROGRESS_API_V2,
        };
        let buf = ack.encode();
        #[cfg(target_endian = "little")]
        assert_eq!(buf, [0x00, 0x00, 0x02, 0x00, b'A', b'C', b'K', 0]);
        assert_eq!(ConnectAck::decode(&buf).unwrap(), ack);
        assert_eq!(ack.major(), 2);
        let mut bad = buf;
        bad[7] = b'!';
        assert_eq!(
            ConnectAck::decode(&bad).unwrap_err(),
            DecodeError::BadAckMagic(*b"ACK!")
        );
        assert!(ConnectAck::decode(&buf[..7]).is_err());
    }
}

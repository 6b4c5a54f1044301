//! The `.swu` container (cpio "crc" format, `070702`) and the
//! `sw-description` template of the Yocto layer.

use std::io::{self, Read, Write};

use update_manifest::{HardwareRevision, Model, Sha256, Version};

use crate::Error;

/// The layer's sw-description template, the one the Yocto recipe
/// `hearth-update` fills too. `build --template` can point elsewhere.
pub const LAYER_TEMPLATE: &str = include_str!(
    "../../../yocto-layer/meta-hearth/recipes-core/hearth-update/files/sw-description"
);

/// cpio limit: the size field has 8 hex digits.
pub const MAX_ENTRY: u64 = 0xffff_ffff;

/// Writes one cpio `crc` header and name; `check` is the byte sum of the
/// data (what "crc" means in this format).
pub fn write_header(
    out: &mut impl Write,
    ino: u32,
    name: &str,
    size: u64,
    check: u32,
) -> io::Result<()> {
    let size =
        u32::try_from(size).map_err(|_| io::Error::other("a cpio entry is limited to 4 GiB"))?;
    let trailer = name == "TRAILER!!!";
    let mode: u32 = if trailer { 0 } else { 0o100644 };
    let namesize = name.len() as u32 + 1;
    let header = format!(
        "070702{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{check:08x}",
        0, 0, 1, 0, 0, 0, 0, 0
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    out.write_all(&[0u8; 3][..pad4(110 + namesize as usize)])
}

/// Padding needed after `len` bytes to reach a multiple of 4.
pub fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Writes a whole in-memory entry.
pub fn write_entry(out: &mut impl Write, ino: u32, name: &str, data: &[u8]) -> io::Result<()> {
    write_header(out, ino, name, data.len() as u64, byte_sum(0, data))?;
    out.write_all(data)?;
    out.write_all(&[0u8; 3][..pad4(data.len())])
}

/// Writes the end-of-archive entry.
pub fn write_trailer(out: &mut impl Write) -> io::Result<()> {
    write_header(out, 0, "TRAILER!!!", 0, 0)
}

/// Adds `data` to a cpio crc checksum.
pub fn byte_sum(acc: u32, data: &[u8]) -> u32 {
    data.iter().fold(acc, |a, &b| a.wrapping_add(u32::from(b)))
}

/// One entry as seen by [`read_entries`].
#[derive(Debug, Clone)]
pub struct EntryInfo {
    /// File name in the archive.
    pub name: String,
    /// Data length.
    pub size: u64,
    /// SHA-256 of the data.
    pub sha256: Sha256,
    /// The data itself for the first two entries (sw-description and its
    /// signature), capped at 1 MiB; empty for the others.
    pub data: Vec<u8>,
}

fn hex_field(h: &[u8], i: usize) -> Result<u32, Error> {
    let s =
        std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).map_err(|_| bad("header is not ASCII"))?;
    u32::from_str_radix(s, 16).map_err(|_| bad("header field is not hex"))
}

fn bad(why: &str) -> Error {
    Error::Msg(format!("not a valid .swu (cpio crc archive): {why}"))
}

/// Reads a `.swu`, hashing every entry and checking the crc checksums
/// (as SWUpdate does), and keeping the first two entries' data.
pub fn read_entries(mut input: impl Read) -> Result<Vec<EntryInfo>, Error> {
    let mut entries = Vec::new();
    loop {
        let mut h = [0u8; 110];
        input
            .read_exact(&mut h)
            .map_err(|_| bad("truncated header"))?;
        if &h[..6] != b"070702" {
            return Err(bad("an entry is not in the crc format (070702)"));
        }
        let size = u64::from(hex_field(&h, 6)?);
        let namesize = hex_field(&h, 11)? as usize;
        let check = hex_field(&h, 12)?;
        if namesize == 0 || namesize > 4096 {
            return Err(bad("bad name length"));
        }
        let mut name = vec![0u8; namesize + pad4(110 + namesize)];
        input
            .read_exact(&mut name)
            .map_err(|_| bad("truncated name"))?;
        name.truncate(namesize - 1);
        let name = String::from_utf8(name).map_err(|_| bad("name is not UTF-8"))?;
        if name == "TRAILER!!!" {
            return Ok(entries);
        }
        let keep = entries.len() < 2;
        if keep && size > 1 << 20 {
            return Err(bad(&format!("{name} is larger than 1 MiB")));
        }
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut sum = 0u32;
        let mut data = Vec::new();
        let mut left = size;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            input
                .read_exact(&mut buf[..n])
                .map_err(|_| bad(&format!("{name} is truncated")))?;
            ctx.update(&buf[..n]);
            sum = byte_sum(sum, &buf[..n]);
            if keep {
                data.extend_from_slice(&buf[..n]);
            }
            left -= n as u64;
        }
        if sum != check {
            return Err(bad(&format!("{name}: checksum mismatch")));
        }
        let mut pad = [0u8; 3];
        input
            .read_exact(&mut pad[..pad4(usize::try_from(size % 4).unwrap_or(0))])
            .map_err(|_| bad("truncated padding"))?;
        let mut digest = [0u8; 32];
        digest.copy_from_slice(ctx.finish().as_ref());
        entries.push(EntryInfo {
            name,
            size,
            sha256: Sha256::from_bytes(digest),
            data,
        });
    }
}

/// The values filled into the template's `@@NAME@@` placeholders.
#[derive(Debug, Clone)]
pub struct TemplateValues {
    /// HEARTH_FIRMWARE_VERSION
    pub version: Version,
    /// HEARTH_SWU_DESCRIPTION
    pub description: String,
    /// HEARTH_SWU_BOARD (the model)
    pub model: Model,
    /// HEARTH_SWU_HW_COMPATIBILITY
    pub hw_revisions: Vec<HardwareRevision>,
    /// HEARTH_SWU_ROOTFS_FILE
    pub rootfs_file: String,
    /// HEARTH_SLOT_A_DEVICE
    pub slot_a: String,
    /// HEARTH_SLOT_B_DEVICE
    pub slot_b: String,
    /// `$swupdate_get_sha256(rootfs_file)`
    pub rootfs_sha256: Sha256,
}

fn libconfig_safe(what: &str, v: &str) -> Result<(), Error> {
    if v.is_empty() || v.len() > 256 || v.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return Err(Error::Usage(format!(
            "{what} {v:?} must be 1-256 characters without quotes, backslashes or control characters"
        )));
    }
    Ok(())
}

/// Fills the template the way meta-swupdate's swupdate class does for the
/// Yocto recipe: every `@@NAME@@`, then `$swupdate_get_sha256(file)`.
pub fn fill_template(template: &str, v: &TemplateValues) -> Result<String, Error> {
    libconfig_safe("description", &v.description)?;
    libconfig_safe("rootfs name", &v.rootfs_file)?;
    libconfig_safe("slot A device", &v.slot_a)?;
    libconfig_safe("slot B device", &v.slot_b)?;
    if v.rootfs_file.contains('/') || v.rootfs_file.starts_with('.') {
        return Err(Error::Usage(
            "the rootfs name must be a plain file name".into(),
        ));
    }
    let hw = v
        .hw_revisions
        .iter()
        .map(|r| format!("\"{r}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = template.to_owned();
    for (name, value) in [
        ("HEARTH_FIRMWARE_VERSION", v.version.to_string()),
        ("HEARTH_SWU_DESCRIPTION", v.description.clone()),
        ("HEARTH_SWU_BOARD", v.model.to_string()),
        ("HEARTH_SWU_HW_COMPATIBILITY", hw),
        ("HEARTH_SWU_ROOTFS_FILE", v.rootfs_file.clone()),
        ("HEARTH_SLOT_A_DEVICE", v.slot_a.clone()),
        ("HEARTH_SLOT_B_DEVICE", v.slot_b.clone()),
    ] {
        out = out.replace(&format!("@@{name}@@"), &value);
    }
    out = out.replace(
        &format!("$swupdate_get_sha256({})", v.rootfs_file),
        &v.rootfs_sha256.to_string(),
    );
    // Only the template's comment may mention the placeholder syntax.
    let body = out.find("software =").map(|i| &out[i..]).unwrap_or(&out);
    if let Some(i) = body.find("@@").or_else(|| body.find("$swupdate_")) {
        let rest: String = body[i..].chars().take(60).collect();
        return Err(Error::Msg(format!(
            "the template has a placeholder this tool does not know: {rest:?}"
        )));
    }
    Ok(out)
}

/// What `manifest` reads back from a built `.swu`'s sw-description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwDescriptionFacts {
    /// `software.version`.
    pub version: String,
    /// The board section name (the model).
    pub board: String,
    /// `hardware-compatibility` entries.
    pub hw_revisions: Vec<String>,
    /// Every `sha256 = "..."` value.
    pub sha256s: Vec<String>,
}

/// Extracts version, board, hardware revisions and image hashes from a
/// sw-description written from the layer's template. This is a reader
/// for our own template's shape, not a libconfig parser.
pub fn describe(sw_description: &str) -> Result<SwDescriptionFacts, Error> {
    let quoted = |line: &str| line.split('"').nth(1).map(str::to_owned);
    let body = sw_description
        .find("software =")
        .map(|i| &sw_description[i..])
        .ok_or_else(|| bad("sw-description has no `software =` section"))?;
    let lines: Vec<&str> = body.lines().map(str::trim).collect();
    let version = lines
        .iter()
        .find(|l| l.starts_with("version ="))
        .and_then(|l| quoted(l))
        .ok_or_else(|| bad("sw-description has no version"))?;
    let hw_at = lines
        .iter()
        .position(|l| l.starts_with("hardware-compatibility"))
        .ok_or_else(|| bad("sw-description has no hardware-compatibility"))?;
    let board = lines[..hw_at]
        .iter()
        .rev()
        .find_map(|l| l.strip_suffix("= {").map(|b| b.trim().to_owned()))
        .ok_or_else(|| bad("sw-description has no board section"))?;
    let list = lines[hw_at];
    let inner = list
        .split_once('[')
        .and_then(|(_, r)| r.split_once(']'))
        .map(|(i, _)| i)
        .ok_or_else(|| bad("hardware-compatibility is not a [ list ]"))?;
    let hw_revisions = inner
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let sha256s = lines
        .iter()
        .filter(|l| l.starts_with("sha256 ="))
        .filter_map(|l| quoted(l))
        .collect();
    Ok(SwDescriptionFacts {
        version,
        board,
        hw_revisions,
        sha256s,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn values() -> TemplateValues {
        TemplateValues {
            version: "1.2.3".parse().unwrap(),
            description: "Hearth 1.2.3".into(),
            model: "HRH-1".parse().unwrap(),
            hw_revisions: vec!["A".parse().unwrap(), "B".parse().unwrap()],
            rootfs_file: "rootfs.ext4.zst".into(),
            slot_a: "/dev/a".into(),
            slot_b: "/dev/b".into(),
            rootfs_sha256: Sha256::digest(b"x"),
        }
    }

    #[test]
    fn the_layer_template_fills_completely_and_reads_back() {
        let text = fill_template(LAYER_TEMPLATE, &values()).unwrap();
        assert!(text.contains("installed-directly = true;"));
        assert!(text.contains("compressed = \"zstd\";"));
        assert_eq!(
            text.matches("{ name = \"ustate\"; value = \"1\"; }")
                .count(),
            2
        );
        let facts = describe(&text).unwrap();
        assert_eq!(facts.version, "1.2.3");
        assert_eq!(facts.board, "HRH-1");
        assert_eq!(facts.hw_revisions, vec!["A", "B"]);
        assert_eq!(facts.sha256s, vec![Sha256::digest(b"x").to_string(); 2]);
    }

    #[test]
    fn quotes_in_values_and_unknown_placeholders_are_refused() {
        let mut v = values();
        v.description = "a\"; evil = 1; \"".into();
        assert!(fill_template(LAYER_TEMPLATE, &v).is_err());
        let t = format!("{LAYER_TEMPLATE}\nsoftware = {{ x = \"@@NEW_THING@@\"; }}");
        assert!(fill_template(&t, &values()).is_err());
    }

    #[test]
    fn cpio_round_trips_and_detects_a_bad_checksum() {
        let mut out = Vec::new();
        write_entry(&mut out, 1, "sw-description", b"abc").unwrap();
        write_entry(&mut out, 2, "sw-description.sig", b"sig!").unwrap();
        write_entry(&mut out, 3, "img", &[9u8; 1001]).unwrap();
        write_trailer(&mut out).unwrap();
        let e = read_entries(&out[..]).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].data, b"abc");
        assert_eq!(e[2].size, 1001);
        assert_eq!(e[2].sha256, Sha256::digest(&[9u8; 1001]));
        let at = out.len() - 200;
        out[at] ^= 1;
        assert!(read_entries(&out[..]).is_err());
    }
}

//! `build`: pack a signed SWUpdate `.swu` from a root file system image.
//!
//! Fills the layer's sw-description template (the one the Yocto recipe
//! uses), compresses the rootfs with zstd (SWUpdate streams it into the
//! inactive slot, `installed-directly`), signs sw-description with CMS
//! (every `--signer`, for rotation overlaps) and writes the cpio `crc`
//! archive: sw-description, sw-description.sig, the image.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use update_manifest::{HardwareRevision, Model, Sha256, Version};

use crate::keyfiles::{KeyFiles, tmp_name};
use crate::swu::{self, TemplateValues};
use crate::{Error, cli, openssl, progress};

const HELP: &str = "usage: hearth-release build --rootfs FILE --version X.Y.Z --model M --hw-revision R --signer PREFIX --out FILE.swu [options]
  --rootfs FILE      the ext4 image (compressed here with zstd) or an already .zst-compressed one
  --hw-revision R    a hardware revision it installs on (repeatable; SWUpdate hardware-compatibility)
  --signer PREFIX    PREFIX.key.pem + PREFIX.cert.pem; repeat for a CMS signature by several keys
  --slot-a DEV       slot A device (default /dev/disk/by-partlabel/hearth-a)
  --slot-b DEV       slot B device (default /dev/disk/by-partlabel/hearth-b)
  --template FILE    sw-description template (default: the Yocto layer's, built in)
  --description TEXT (default \"Hearth X.Y.Z for M\")
  --rootfs-name NAME file name inside the .swu (default: the rootfs name + .zst)
  --zstd-level N     1-19 (default 9)
  --delta            also write the delta release (FILE.swu.delta, FILE.swu.pack) that devices
                     install by reusing the blocks their running slot holds (needs the
                     uncompressed rootfs)
  --dev              allow development keys";

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Options.
#[derive(Debug, Clone)]
pub struct Args {
    /// Root file system image.
    pub rootfs: PathBuf,
    /// Release version.
    pub version: Version,
    /// Model (board section).
    pub model: Model,
    /// Hardware revisions.
    pub hw_revisions: Vec<HardwareRevision>,
    /// CMS signers.
    pub signers: Vec<PathBuf>,
    /// Output `.swu`.
    pub out: PathBuf,
    /// Slot A device.
    pub slot_a: String,
    /// Slot B device.
    pub slot_b: String,
    /// Template override.
    pub template: Option<PathBuf>,
    /// Description.
    pub description: Option<String>,
    /// Image name inside the archive.
    pub rootfs_name: Option<String>,
    /// zstd level.
    pub zstd_level: u32,
    /// Also write the delta release.
    pub delta: bool,
    /// Allow development keys.
    pub dev: bool,
}

/// Parses and runs.
pub fn main(p: &mut lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let (mut rootfs, mut version, mut model, mut out) = (None, None, None, None);
    let mut a = Args {
        rootfs: PathBuf::new(),
        version: Version::new(0, 0, 0),
        model: "X".parse()?,
        hw_revisions: Vec::new(),
        signers: Vec::new(),
        out: PathBuf::new(),
        slot_a: "/dev/disk/by-partlabel/hearth-a".into(),
        slot_b: "/dev/disk/by-partlabel/hearth-b".into(),
        template: None,
        description: None,
        rootfs_name: None,
        zstd_level: 9,
        delta: false,
        dev: false,
    };
    while let Some(arg) = p.next()? {
        match arg {
            Long("rootfs") => rootfs = Some(cli::path(p)?),
            Long("version") => version = Some(cli::parse(p, "version")?),
            Long("model") => model = Some(cli::parse(p, "model")?),
            Long("hw-revision") => a.hw_revisions.push(cli::parse(p, "hw-revision")?),
            Long("signer") => a.signers.push(cli::path(p)?),
            Long("out") => out = Some(cli::path(p)?),
            Long("slot-a") => a.slot_a = cli::string(p)?,
            Long("slot-b") => a.slot_b = cli::string(p)?,
            Long("template") => a.template = Some(cli::path(p)?),
            Long("description") => a.description = Some(cli::string(p)?),
            Long("rootfs-name") => a.rootfs_name = Some(cli::string(p)?),
            Long("zstd-level") => a.zstd_level = cli::parse(p, "zstd-level")?,
            Long("delta") => a.delta = true,
            Long("dev") => a.dev = true,
            Long("help") => return cli::help(HELP),
            _ => return Err(arg.unexpected().into()),
        }
    }
    a.rootfs = cli::required(rootfs, "rootfs")?;
    a.version = cli::required(version, "version")?;
    a.model = cli::required(model, "model")?;
    a.out = cli::required(out, "out")?;
    let (sha, len) = run(&a)?;
    eprintln!(
        "hearth-release: {} written: {len} bytes, sha256 {sha}",
        a.out.display()
    );
    Ok(())
}

/// Builds the `.swu`; returns its SHA-256 and length.
pub fn run(a: &Args) -> Result<(Sha256, u64), Error> {
    if a.hw_revisions.is_empty() {
        return Err(Error::Usage(
            "--hw-revision is required (at least one)".into(),
        ));
    }
    if a.signers.is_empty() {
        return Err(Error::Usage("--signer is required (at least one)".into()));
    }
    if !(1..=19).contains(&a.zstd_level) {
        return Err(Error::Usage("--zstd-level must be 1 to 19".into()));
    }
    if a.out.exists() {
        return Err(Error::Exists(a.out.clone()));
    }
    if a.delta {
        if starts_with_zstd_magic(&a.rootfs)? {
            return Err(Error::Usage(
                "--delta needs the uncompressed root file system: its blocks are what devices reuse"
                    .into(),
            ));
        }
        let (index, pack) = delta_files(&a.out);
        for file in [index, pack] {
            if file.exists() {
                return Err(Error::Exists(file));
            }
        }
    }
    let mut signers = Vec::new();
    for s in &a.signers {
        let files = KeyFiles::new(s);
        let public = files.load_private()?.public_key().to_owned();
        files.refuse_dev(&public.key_id(), a.dev)?;
        let cert = files.cert();
        if !cert.exists() {
            return Err(Error::Msg(format!(
                "{} is missing: certify the key first (hearth-release certify)",
                cert.display()
            )));
        }
        if !openssl::cert_valid_for(&cert, 0) {
            return Err(Error::Msg(format!(
                "{} has expired or is not yet valid; certify the key again or rotate",
                cert.display()
            )));
        }
        signers.push((cert, files.key()));
    }
    let template = match &a.template {
        Some(t) => fs::read_to_string(t).map_err(Error::io(t))?,
        None => swu::LAYER_TEMPLATE.to_owned(),
    };

    let work = tmp_name(&a.out).with_extension("work");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(Error::io(&work))?;
    let result = build_in(a, &template, &signers, &work);
    let _ = fs::remove_dir_all(&work);
    result
}

fn build_in(
    a: &Args,
    template: &str,
    signers: &[(PathBuf, PathBuf)],
    work: &Path,
) -> Result<(Sha256, u64), Error> {
    let base = a
        .rootfs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rootfs".into());
    let (image, default_name) = if starts_with_zstd_magic(&a.rootfs)? {
        (a.rootfs.clone(), base)
    } else {
        let name = format!("{base}.zst");
        let out = work.join("rootfs.zst");
        compress(&a.rootfs, &out, a.zstd_level)?;
        (out, name)
    };
    let rootfs_file = a.rootfs_name.clone().unwrap_or(default_name);
    let (sha, sum, len) = hash_file(&image, "hashing")?;
    if len > swu::MAX_ENTRY {
        return Err(Error::Msg(
            "the compressed rootfs is 4 GiB or more, beyond the cpio limit".into(),
        ));
    }

    let desc = swu::fill_template(template, &template_values(a, &rootfs_file, sha))?;
    let desc_path = work.join("sw-description");
    let sig_path = work.join("sw-description.sig");
    fs::write(&desc_path, &desc).map_err(Error::io(&desc_path))?;
    openssl::cms_sign(&desc_path, &sig_path, signers)?;
    let sig = fs::read(&sig_path).map_err(Error::io(&sig_path))?;

    let tmp = tmp_name(&a.out);
    let file = fs::File::create(&tmp).map_err(Error::io(&tmp))?;
    let mut out = std::io::BufWriter::new(HashingWriter::new(file));
    let io = Error::io(&tmp);
    let written = (|| -> std::io::Result<HashingWriter> {
        swu::write_entry(&mut out, 1, "sw-description", desc.as_bytes())?;
        swu::write_entry(&mut out, 2, "sw-description.sig", &sig)?;
        swu::write_header(&mut out, 3, &rootfs_file, len, sum)?;
        let bar = progress::bytes(len, "packing");
        let mut input = fs::File::open(&image)?;
        std::io::copy(&mut bar.wrap_read(&mut input), &mut out)?;
        bar.finish_and_clear();
        out.write_all(&[0u8; 3][..swu::pad4(usize::try_from(len % 4).unwrap_or(0))])?;
        swu::write_trailer(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())
    })()
    .map_err(io)?;
    written.file.sync_all().map_err(Error::io(&tmp))?;
    let (swu_sha, swu_len) = written.finish();
    if a.out.exists() {
        let _ = fs::remove_file(&tmp);
        return Err(Error::Exists(a.out.clone()));
    }
    fs::rename(&tmp, &a.out).map_err(Error::io(&a.out))?;
    if a.delta {
        build_delta(a, template, signers, work, &rootfs_file)?;
    }
    Ok((swu_sha, swu_len))
}

fn template_values(a: &Args, rootfs_file: &str, rootfs_sha256: Sha256) -> TemplateValues {
    TemplateValues {
        version: a.version,
        description: a
            .description
            .clone()
            .unwrap_or_else(|| format!("Hearth {} for {}", a.version, a.model)),
        model: a.model.clone(),
        hw_revisions: a.hw_revisions.clone(),
        rootfs_file: rootfs_file.to_owned(),
        slot_a: a.slot_a.clone(),
        slot_b: a.slot_b.clone(),
        rootfs_sha256,
    }
}

/// The delta index and the pack of the `.swu` at `swu`.
pub use update_manifest::delta::files_beside as delta_files;

/// Writes the delta release (update_manifest::delta): the pack of the
/// uncompressed rootfs, and the index with the delta `.swu`'s own signed
/// sw-description, whose image entry is the rootfs as stored zstd blocks.
fn build_delta(
    a: &Args,
    template: &str,
    signers: &[(PathBuf, PathBuf)],
    work: &Path,
    rootfs_file: &str,
) -> Result<(), Error> {
    use update_manifest::delta::{self, DeltaIndex, DeltaParts};
    let segment_len = delta::DEFAULT_SEGMENT_LEN;
    let (index_path, pack_path) = delta_files(&a.out);
    let pack_tmp = tmp_name(&pack_path);
    let open_rootfs = || {
        fs::File::open(&a.rootfs)
            .map(std::io::BufReader::new)
            .map_err(Error::io(&a.rootfs))
    };
    let packed = (|| -> std::io::Result<delta::Packed> {
        let mut pack = std::io::BufWriter::new(fs::File::create(&pack_tmp)?);
        let len = fs::metadata(&a.rootfs)?.len();
        let bar = progress::bytes(len, "packing the delta");
        let packed = delta::pack_image(
            bar.wrap_read(open_rootfs().map_err(std::io::Error::other)?),
            segment_len,
            i32::try_from(a.zstd_level).unwrap_or(9),
            &mut pack,
        )?;
        bar.finish_and_clear();
        pack.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(packed)
    })()
    .map_err(Error::io(&pack_tmp))?;
    if packed.entry_len > swu::MAX_ENTRY {
        return Err(Error::Msg(
            "the delta's image entry is 4 GiB or more, beyond the cpio limit".into(),
        ));
    }

    let desc = swu::fill_template(
        template,
        &template_values(a, rootfs_file, packed.entry_sha256),
    )?;
    let desc_path = work.join("delta-sw-description");
    let sig_path = work.join("delta-sw-description.sig");
    fs::write(&desc_path, &desc).map_err(Error::io(&desc_path))?;
    openssl::cms_sign(&desc_path, &sig_path, signers)?;
    let sig = fs::read(&sig_path).map_err(Error::io(&sig_path))?;
    let mut head = Vec::new();
    let mut tail = Vec::new();
    (|| -> std::io::Result<()> {
        swu::write_entry(&mut head, 1, "sw-description", desc.as_bytes())?;
        swu::write_entry(&mut head, 2, "sw-description.sig", &sig)?;
        swu::write_header(
            &mut head,
            3,
            rootfs_file,
            packed.entry_len,
            packed.entry_sum,
        )?;
        let pad = swu::pad4(usize::try_from(packed.entry_len % 4).unwrap_or(0));
        tail.extend_from_slice(&[0u8; 3][..pad]);
        swu::write_trailer(&mut tail)
    })()
    .map_err(Error::io(&index_path))?;

    // The delta .swu's SHA-256, over the stream the device will rebuild.
    let mut hashed = HashSink::default();
    hashed.0.update(&head);
    delta::image_entry(open_rootfs()?, segment_len, &mut hashed).map_err(Error::io(&a.rootfs))?;
    hashed.0.update(&tail);
    let mut digest = [0u8; 32];
    digest.copy_from_slice(hashed.0.finish().as_ref());
    let swu_len = head.len() as u64 + packed.entry_len + tail.len() as u64;
    let index = DeltaIndex::new(DeltaParts {
        segment_len,
        image_len: packed.image_len,
        swu_len,
        swu_sha256: Sha256::from_bytes(digest),
        head,
        tail,
        blocks: packed.blocks,
        segments: packed.segments,
    })?;
    let index_tmp = tmp_name(&index_path);
    fs::write(&index_tmp, index.to_bytes()).map_err(Error::io(&index_tmp))?;
    fs::rename(&pack_tmp, &pack_path).map_err(Error::io(&pack_path))?;
    fs::rename(&index_tmp, &index_path).map_err(Error::io(&index_path))?;
    eprintln!(
        "hearth-release: delta release {} and {} written: {} segments, {} bytes packed",
        index_path.display(),
        pack_path.display(),
        index.segments().len(),
        index.pack_len()
    );
    Ok(())
}

/// Hashes what is written into it.
struct HashSink(ring::digest::Context);

impl Default for HashSink {
    fn default() -> Self {
        HashSink(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn starts_with_zstd_magic(path: &Path) -> Result<bool, Error> {
    let mut f = fs::File::open(path).map_err(Error::io(path))?;
    let mut magic = [0u8; 4];
    Ok(f.read_exact(&mut magic).is_ok() && magic == ZSTD_MAGIC)
}

/// Compresses with the `zstd` command (multi-threaded, same format the
/// Yocto build makes), feeding it through a progress bar.
fn compress(input: &Path, output: &Path, level: u32) -> Result<(), Error> {
    let len = fs::metadata(input).map_err(Error::io(input))?.len();
    let out = fs::File::create(output).map_err(Error::io(output))?;
    let mut child = Command::new("zstd")
        .args(["-q", "-c", "-T0", &format!("-{level}")])
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Tool {
            tool: "zstd".into(),
            detail: format!("{e} (install zstd)"),
        })?;
    let bar = progress::bytes(len, "compressing");
    let mut src = fs::File::open(input).map_err(Error::io(input))?;
    let copied = match child.stdin.take() {
        Some(mut stdin) => std::io::copy(&mut bar.wrap_read(&mut src), &mut stdin).map(|_| ()),
        None => Err(std::io::Error::other("no pipe to zstd")),
    };
    bar.finish_and_clear();
    let status = child.wait_with_output().map_err(|e| Error::Tool {
        tool: "zstd".into(),
        detail: e.to_string(),
    })?;
    if !status.status.success() || copied.is_err() {
        return Err(Error::Tool {
            tool: "zstd".into(),
            detail: format!(
                "{} {}",
                String::from_utf8_lossy(&status.stderr).trim(),
                copied.err().map(|e| e.to_string()).unwrap_or_default()
            ),
        });
    }
    Ok(())
}

/// SHA-256, cpio byte sum and length of a file, with a progress bar.
pub fn hash_file(path: &Path, label: &str) -> Result<(Sha256, u32, u64), Error> {
    let mut f = fs::File::open(path).map_err(Error::io(path))?;
    let len = f.metadata().map_err(Error::io(path))?.len();
    let bar = progress::bytes(len, label);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let (mut sum, mut total) = (0u32, 0u64);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        sum = swu::byte_sum(sum, &buf[..n]);
        total += n as u64;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let mut d = [0u8; 32];
    d.copy_from_slice(ctx.finish().as_ref());
    Ok((Sha256::from_bytes(d), sum, total))
}

/// The chunk index of the file at `path` (what `publish` serves beside it).
pub fn index_file(path: &Path, chunk_len: u32) -> Result<update_manifest::ChunkIndex, Error> {
    let f = fs::File::open(path).map_err(Error::io(path))?;
    update_manifest::ChunkIndex::of(std::io::BufReader::new(f), chunk_len).map_err(Error::io(path))
}

/// Hashes everything written to the file.
struct HashingWriter {
    file: fs::File,
    ctx: ring::digest::Context,
    len: u64,
}

impl HashingWriter {
    fn new(file: fs::File) -> HashingWriter {
        HashingWriter {
            file,
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            len: 0,
        }
    }
    fn finish(self) -> (Sha256, u64) {
        let mut d = [0u8; 32];
        d.copy_from_slice(self.ctx.finish().as_ref());
        (Sha256::from_bytes(d), self.len)
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.ctx.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

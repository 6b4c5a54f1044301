//! `verify`: check a release exactly as a device would.
//!
//! The manifest goes through `update_manifest::verify`, the function the
//! device runs (chain to the root, expiry, model and hardware, versions,
//! size cap). With `--artifact`, the artifact's chunk index (as `publish`
//! serves it) is made and checked against the manifest: its entries are
//! the SHA-256s of the artifact's prefixes, so that checks every chunk, the
//! exact size and the SHA-256. Then, as SWUpdate would next, the `.swu`'s
//! layout, image hashes and CMS signature are checked against the root
//! certificate.

use std::fs;
use std::io::Read;
use std::path::PathBuf;

use update_manifest::{
    DeviceFacts, HardwareRevision, MAX_MANIFEST_LEN, Model, Timestamp, TrustedRoot, Version,
};

use crate::keyfiles::KeyFiles;
use crate::{Error, cli, openssl, progress, swu};

const HELP: &str = "usage: hearth-release verify --root PREFIX --manifest FILE --model M --hw-revision R --installed-version X.Y.Z [options]
  --root PREFIX            the trusted root (PREFIX.pub.pem; PREFIX.cert.pem for the CMS check)
  --artifact FILE.swu      also check the artifact (chunk index, size, sha256, layout, CMS signature)
  --sbom FILE              also check that FILE is the SBOM the manifest names
  --security-floor N       the device's anti-rollback floor (default 0)
  --keyring-floor N        the highest key-ring version the device has seen (default 0)
  --max-artifact-size N    the device's size cap in bytes (default 4294967295)
  --now TIME               YYYY-MM-DDTHH:MM:SSZ instead of the system clock
  --dev                    allow a development root";

/// Options.
#[derive(Debug, Clone)]
pub struct Args {
    /// Root key files.
    pub root: PathBuf,
    /// Manifest file.
    pub manifest: PathBuf,
    /// Artifact file.
    pub artifact: Option<PathBuf>,
    /// SBOM file.
    pub sbom: Option<PathBuf>,
    /// What the device knows.
    pub device: DeviceFacts,
    /// The time.
    pub now: Option<Timestamp>,
    /// Allow a development root.
    pub dev: bool,
}

/// Parses and runs.
pub fn main(p: &mut lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let (mut root, mut manifest, mut artifact, mut now, mut dev) = (None, None, None, None, false);
    let mut sbom = None;
    let (mut model, mut hw, mut installed): (
        Option<Model>,
        Option<HardwareRevision>,
        Option<Version>,
    ) = (None, None, None);
    let (mut security_floor, mut keyring_floor, mut max) = (0u32, 0u64, u64::from(u32::MAX));
    while let Some(arg) = p.next()? {
        match arg {
            Long("root") => root = Some(cli::path(p)?),
            Long("manifest") => manifest = Some(cli::path(p)?),
            Long("artifact") => artifact = Some(cli::path(p)?),
            Long("sbom") => sbom = Some(cli::path(p)?),
            Long("model") => model = Some(cli::parse(p, "model")?),
            Long("hw-revision") => hw = Some(cli::parse(p, "hw-revision")?),
            Long("installed-version") => installed = Some(cli::parse(p, "installed-version")?),
            Long("security-floor") => security_floor = cli::parse(p, "security-floor")?,
            Long("keyring-floor") => keyring_floor = cli::parse(p, "keyring-floor")?,
            Long("max-artifact-size") => max = cli::parse(p, "max-artifact-size")?,
            Long("now") => now = Some(cli::parse(p, "now")?),
            Long("dev") => dev = true,
            Long("help") => return cli::help(HELP),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let a = Args {
        root: cli::required(root, "root")?,
        manifest: cli::required(manifest, "manifest")?,
        artifact,
        sbom,
        device: DeviceFacts {
            model: cli::required(model, "model")?,
            hardware_revision: cli::required(hw, "hw-revision")?,
            installed_version: cli::required(installed, "installed-version")?,
            security_floor,
            keyring_floor,
            max_artifact_size: max,
        },
        now,
        dev,
    };
    let release = run(&a)?;
    let m = release.manifest();
    eprintln!(
        "hearth-release: OK: {} {} for {} (security version {}, key ring v{}, signed by {}){}",
        m.product,
        m.version,
        m.model,
        m.security_version,
        release.keyring_version(),
        m.key_id,
        if a.artifact.is_some() {
            "; artifact matches and its CMS signature verifies"
        } else {
            "; artifact not checked (no --artifact)"
        }
    );
    if a.sbom.is_some() {
        eprintln!("hearth-release: the SBOM is the one the manifest names");
    }
    Ok(())
}

/// Checks; returns the verified release.
pub fn run(a: &Args) -> Result<update_manifest::VerifiedRelease, Error> {
    let root_files = KeyFiles::new(&a.root);
    let root = TrustedRoot::new(root_files.load_public()?);
    root_files.refuse_dev(&root.key_id(), a.dev)?;
    // Read at most one byte past the cap: verify() reports the size.
    let mut bytes = Vec::new();
    fs::File::open(&a.manifest)
        .and_then(|f| f.take(MAX_MANIFEST_LEN as u64 + 1).read_to_end(&mut bytes))
        .map_err(Error::io(&a.manifest))?;
    let now = a.now.unwrap_or_else(Timestamp::now);
    let release = update_manifest::verify(&bytes, &root, &a.device, now)?;

    if let Some(path) = &a.sbom {
        let Some(signed) = &release.manifest().sbom else {
            return Err(Error::Msg(format!(
                "{} names no SBOM; {} is not part of this release",
                a.manifest.display(),
                path.display()
            )));
        };
        let (sha256, _, size) = super::build::hash_file(path, "hashing the SBOM")?;
        if (sha256, size) != (signed.sha256, signed.size) {
            return Err(Error::Msg(format!(
                "{} is not the SBOM the manifest names: {size} bytes with sha256 {sha256}, the manifest says {} bytes with sha256 {}",
                path.display(),
                signed.size,
                signed.sha256
            )));
        }
    }
    let Some(artifact) = &a.artifact else {
        return Ok(release);
    };
    // 1. The artifact's chunk index must be the one the manifest pins: its
    //    entries are the digests of the artifact's prefixes (the last the
    //    whole artifact's), so a device streaming this artifact would pass
    //    every chunk, and no other artifact would.
    let f = fs::File::open(artifact).map_err(Error::io(artifact))?;
    let bar = progress::bytes(release.manifest().artifact.size, "checking");
    let chunk_len = release.manifest().artifact.index.chunk_len;
    let index = update_manifest::ChunkIndex::of(bar.wrap_read(f), chunk_len)
        .map_err(Error::io(artifact))?;
    bar.finish_and_clear();
    release.chunk_index(&index.to_bytes())?;

    // 2. As SWUpdate then does: layout, image hashes, CMS signature.
    let f = fs::File::open(artifact).map_err(Error::io(artifact))?;
    let entries = swu::read_entries(std::io::BufReader::new(f))?;
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    if names.len() < 3 || names[0] != "sw-description" || names[1] != "sw-description.sig" {
        return Err(Error::Msg(format!(
            "refused: {} must hold sw-description, sw-description.sig, then images; found {names:?}",
            artifact.display()
        )));
    }
    let facts = swu::describe(&String::from_utf8_lossy(&entries[0].data))?;
    for e in &entries[2..] {
        if !facts.sha256s.contains(&e.sha256.to_string()) {
            return Err(Error::Msg(format!(
                "refused: sw-description has no matching sha256 for {} (image altered)",
                e.name
            )));
        }
    }
    if facts.board != a.device.model.as_str()
        || !facts
            .hw_revisions
            .iter()
            .any(|r| r == a.device.hardware_revision.as_str())
    {
        return Err(Error::Msg(format!(
            "refused: the .swu is for {} {:?}, not {} {}",
            facts.board, facts.hw_revisions, a.device.model, a.device.hardware_revision
        )));
    }
    let ca = root_files.cert();
    if ca.exists() {
        let dir = tempdir_near(artifact)?;
        let desc = dir.join("sw-description");
        let sig = dir.join("sw-description.sig");
        let r = fs::write(&desc, &entries[0].data)
            .and_then(|()| fs::write(&sig, &entries[1].data))
            .map_err(Error::io(&dir))
            .and_then(|()| openssl::cms_verify(&desc, &sig, &ca));
        let _ = fs::remove_dir_all(&dir);
        r.map_err(|e| {
            Error::Msg(format!(
                "refused: the CMS signature of sw-description does not verify against {}: {e}",
                ca.display()
            ))
        })?;
    } else {
        eprintln!(
            "hearth-release: warning: {} not found, CMS signature not checked",
            ca.display()
        );
    }
    Ok(release)
}

fn tempdir_near(p: &std::path::Path) -> Result<PathBuf, Error> {
    let dir = std::env::temp_dir().join(format!(
        "hearth-release-verify-{}-{}",
        std::process::id(),
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    Ok(dir)
}

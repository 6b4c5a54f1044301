//! `manifest` (alias `sign`): the signed manifest for a built `.swu`.
//!
//! Model, hardware revisions and version are read from the `.swu`'s own
//! sw-description, so the manifest cannot describe another build. The
//! artifact's size and SHA-256, and the length and SHA-256 of its chunk
//! index, are computed here (`publish` serves the index beside the
//! artifact). The result is checked with the device's own
//! `update_manifest::verify` before it is written.

use std::fs;
use std::path::PathBuf;

use update_manifest::{
    Artifact, ArtifactIndex, ArtifactUrl, DEFAULT_CHUNK_LEN, Delta, DeltaIndex, DeviceFacts,
    HardwareRevision, Label, MANIFEST_FORMAT, Manifest, Model, Rollout, Sbom, Sha256,
    SignedKeyring, Timestamp, TrustedRoot, Urgency, Version,
};

use super::build::{delta_files, hash_file, index_file};
use super::certify::load_keyring;
use crate::keyfiles::{KeyFiles, write_replace};
use crate::{Error, cli, swu};

const HELP: &str = "usage: hearth-release manifest --artifact FILE.swu --key PREFIX --keyring FILE --root PREFIX --base-url URL --security-version N --release-notes URL --out FILE [options]
  --key PREFIX           the release-signing key (PREFIX.key.pem)
  --keyring FILE         the root-signed key ring that certifies it (embedded in the manifest)
  --root PREFIX          the root's public key (PREFIX.pub.pem), to check the key ring
  --base-url URL         https base; the artifact URL is BASE/MODEL/VERSION/FILE (see publish)
  --mirror URL           another https base serving the same tree (repeatable, up to 3)
  --security-version N   anti-rollback counter; raise it with every security fix
  --release-notes URL    https page for people
  --urgency security|feature  (default feature)
  --min-installed-version X.Y.Z  (default 0.0.0)
  --expires-days N       devices refuse the manifest after N days (default 30); re-sign to extend
  --rollout-start TIME   YYYY-MM-DDTHH:MM:SSZ (default now)
  --spread-hours N       spread the fleet over N hours (default 0)
  --product TEXT         product name (default Hearth)
  --chunk-kib N          chunk length of the chunk index: 64, 128, 256 (default), 512 or 1024
  --sbom FILE            the release's SBOM (hearth-release sbom, or the Yocto build's SPDX):
                         its size and SHA-256 are signed in; publish lays it beside the artifact
  --delta                sign in the delta release build --delta wrote beside the artifact
                         (FILE.swu.delta, FILE.swu.pack); publish lays them beside it
  --dev                  allow development keys";

/// Parses and runs.
pub fn main(p: &mut lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let mut a = Args {
        artifact: PathBuf::new(),
        key: PathBuf::new(),
        keyring: PathBuf::new(),
        root: PathBuf::new(),
        base_url: String::new(),
        mirrors: Vec::new(),
        security_version: 0,
        release_notes: "https://example.invalid/".parse()?,
        out: PathBuf::new(),
        urgency: Urgency::Feature,
        min_installed_version: Version::new(0, 0, 0),
        expires_days: 30,
        rollout_start: None,
        spread_hours: 0,
        product: "Hearth".parse()?,
        chunk_len: DEFAULT_CHUNK_LEN,
        sbom: None,
        delta: false,
        dev: false,
    };
    let mut req: [Option<String>; 8] = Default::default();
    let names = [
        "artifact",
        "key",
        "keyring",
        "root",
        "base-url",
        "security-version",
        "release-notes",
        "out",
    ];
    while let Some(arg) = p.next()? {
        match arg {
            Long(name) if names.contains(&name) => {
                let i = names.iter().position(|n| *n == name).unwrap_or(0);
                req[i] = Some(cli::string(p)?);
            }
            Long("mirror") => a.mirrors.push(cli::string(p)?),
            Long("urgency") => {
                a.urgency = match cli::string(p)?.as_str() {
                    "security" => Urgency::Security,
                    "feature" => Urgency::Feature,
                    other => {
                        return Err(Error::Usage(format!(
                            "--urgency {other:?}: use security or feature"
                        )));
                    }
                }
            }
            Long("min-installed-version") => {
                a.min_installed_version = cli::parse(p, "min-installed-version")?
            }
            Long("expires-days") => a.expires_days = cli::parse(p, "expires-days")?,
            Long("rollout-start") => a.rollout_start = Some(cli::parse(p, "rollout-start")?),
            Long("spread-hours") => a.spread_hours = cli::parse(p, "spread-hours")?,
            Long("product") => a.product = cli::parse(p, "product")?,
            Long("chunk-kib") => {
                let kib: u32 = cli::parse(p, "chunk-kib")?;
                a.chunk_len = kib.saturating_mul(1024);
                if !update_manifest::ChunkIndex::chunk_len_is_valid(a.chunk_len) {
                    return Err(Error::Usage(format!(
                        "--chunk-kib {kib}: use 64, 128, 256, 512 or 1024"
                    )));
                }
            }
            Long("sbom") => a.sbom = Some(cli::path(p)?),
            Long("delta") => a.delta = true,
            Long("dev") => a.dev = true,
            Long("help") => return cli::help(HELP),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let mut take = |i: usize| cli::required(req[i].take(), names[i]);
    a.artifact = take(0)?.into();
    a.key = take(1)?.into();
    a.keyring = take(2)?.into();
    a.root = take(3)?.into();
    a.base_url = take(4)?;
    a.security_version = take(5)?
        .parse()
        .map_err(|e| Error::Usage(format!("--security-version: {e}")))?;
    a.release_notes = take(6)?.parse()?;
    a.out = take(7)?.into();
    let m = run(&a)?;
    eprintln!(
        "hearth-release: manifest for {} {} ({} bytes, sha256 {}) written to {}; it expires {}",
        m.model,
        m.version,
        m.artifact.size,
        m.artifact.sha256,
        a.out.display(),
        m.expires
    );
    Ok(())
}

/// Options.
#[derive(Debug, Clone)]
pub struct Args {
    /// The `.swu`.
    pub artifact: PathBuf,
    /// Signing key files.
    pub key: PathBuf,
    /// Key ring file.
    pub keyring: PathBuf,
    /// Root key files (public part).
    pub root: PathBuf,
    /// https base URL.
    pub base_url: String,
    /// Mirror base URLs.
    pub mirrors: Vec<String>,
    /// Security version.
    pub security_version: u32,
    /// Release notes.
    pub release_notes: ArtifactUrl,
    /// Output file.
    pub out: PathBuf,
    /// Urgency.
    pub urgency: Urgency,
    /// Minimum installed version.
    pub min_installed_version: Version,
    /// Days until expiry.
    pub expires_days: u32,
    /// Rollout start.
    pub rollout_start: Option<Timestamp>,
    /// Rollout spread.
    pub spread_hours: u32,
    /// Product name.
    pub product: Label,
    /// Chunk length of the chunk index.
    pub chunk_len: u32,
    /// The release's SBOM, named and hashed in the manifest.
    pub sbom: Option<PathBuf>,
    /// Sign in the delta release beside the artifact.
    pub delta: bool,
    /// Allow development keys.
    pub dev: bool,
}

/// The artifact's URL under `base`: BASE/MODEL/VERSION/FILE.
pub fn artifact_url(
    base: &str,
    model: &Model,
    version: &Version,
    file: &str,
) -> Result<ArtifactUrl, Error> {
    Ok(format!("{}/{model}/{version}/{file}", base.trim_end_matches('/')).parse()?)
}

/// Where the chunk index of the artifact at `artifact` is published: the
/// same path with `.index` appended.
pub fn index_url(artifact: &ArtifactUrl) -> Result<ArtifactUrl, Error> {
    suffixed(artifact, ".index")
}

/// `url` with `suffix` appended (the files published beside the artifact).
pub fn suffixed(url: &ArtifactUrl, suffix: &str) -> Result<ArtifactUrl, Error> {
    Ok(format!("{url}{suffix}").parse()?)
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes the signed manifest; returns it.
pub fn run(a: &Args) -> Result<Manifest, Error> {
    let now = Timestamp::now();
    let key_files = KeyFiles::new(&a.key);
    let key = key_files.load_private()?;
    key_files.refuse_dev(&key.key_id(), a.dev)?;
    let root_files = KeyFiles::new(&a.root);
    let root = TrustedRoot::new(root_files.load_public()?);
    root_files.refuse_dev(&root.key_id(), a.dev)?;
    let keyring: SignedKeyring = load_keyring(&a.keyring, &root)?;
    keyring
        .verify(&root, now, 0)
        .map_err(|e| Error::Msg(format!("{}: {e}", a.keyring.display())))?;
    let entry = keyring.keyring.key(&key.key_id()).ok_or_else(|| {
        Error::Msg(format!(
            "{} does not certify key {}; run hearth-release certify first",
            a.keyring.display(),
            key.key_id()
        ))
    })?;
    if now < entry.not_before || now >= entry.not_after {
        return Err(Error::Msg(format!(
            "key {} is certified from {} until {}, not now; rotate to a current key",
            key.key_id(),
            entry.not_before,
            entry.not_after
        )));
    }

    // Read what was built.
    let (sha256, _, size) = hash_file(&a.artifact, "hashing")?;
    let f = fs::File::open(&a.artifact).map_err(Error::io(&a.artifact))?;
    let entries = swu::read_entries(std::io::BufReader::new(f))?;
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    if names.len() < 3 || names[0] != "sw-description" || names[1] != "sw-description.sig" {
        return Err(Error::Msg(format!(
            "{}: expected sw-description, sw-description.sig and an image, found {names:?}",
            a.artifact.display()
        )));
    }
    let text = String::from_utf8_lossy(&entries[0].data);
    let facts = swu::describe(&text)?;
    for e in &entries[2..] {
        if !facts.sha256s.contains(&e.sha256.to_string()) {
            return Err(Error::Msg(format!(
                "{}: sw-description has no sha256 for {}",
                a.artifact.display(),
                e.name
            )));
        }
    }
    let model: Model = facts.board.parse()?;
    let version: Version = facts.version.parse()?;
    let hardware_revisions = facts
        .hw_revisions
        .iter()
        .map(|r| r.parse::<HardwareRevision>())
        .collect::<Result<Vec<_>, _>>()?;
    if a.min_installed_version >= version {
        return Err(Error::Usage(format!(
            "--min-installed-version {} must be below the release version {version}",
            a.min_installed_version
        )));
    }
    let file = file_name(&a.artifact);
    let mut urls = vec![artifact_url(&a.base_url, &model, &version, &file)?];
    for m in &a.mirrors {
        urls.push(artifact_url(m, &model, &version, &file)?);
    }
    let index = index_file(&a.artifact, a.chunk_len)?;
    let index_bytes = index.to_bytes();
    let index = ArtifactIndex {
        urls: urls.iter().map(index_url).collect::<Result<_, _>>()?,
        chunk_len: index.chunk_len(),
        size: index_bytes.len() as u64,
        sha256: index.sha256(),
    };

    let sbom = match &a.sbom {
        Some(path) => {
            let (sha256, _, size) = hash_file(path, "hashing the SBOM")?;
            let name = file_name(path);
            let mut urls = vec![artifact_url(&a.base_url, &model, &version, &name)?];
            for m in &a.mirrors {
                urls.push(artifact_url(m, &model, &version, &name)?);
            }
            Some(Sbom { urls, size, sha256 })
        }
        None => None,
    };
    let delta = if a.delta {
        let (index_path, pack_path) = delta_files(&a.artifact);
        let bytes = fs::read(&index_path).map_err(Error::io(&index_path))?;
        let index = DeltaIndex::parse(&bytes)?;
        let pack_len = fs::metadata(&pack_path)
            .map_err(Error::io(&pack_path))?
            .len();
        if pack_len != index.pack_len() {
            return Err(Error::Msg(format!(
                "{} is {pack_len} bytes, its index {} says {}: build the release again",
                pack_path.display(),
                index_path.display(),
                index.pack_len()
            )));
        }
        let with = |suffix| -> Result<Vec<ArtifactUrl>, Error> {
            urls.iter().map(|u| suffixed(u, suffix)).collect()
        };
        Some(Delta {
            urls: with(".delta")?,
            size: bytes.len() as u64,
            sha256: Sha256::digest(&bytes),
            pack_urls: with(".pack")?,
        })
    } else {
        None
    };
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        product: a.product.clone(),
        model,
        hardware_revisions,
        version,
        security_version: a.security_version,
        min_installed_version: a.min_installed_version,
        urgency: a.urgency,
        release_notes: a.release_notes.clone(),
        artifact: Artifact {
            urls,
            size,
            sha256,
            index,
        },
        rollout: Rollout {
            start: a.rollout_start.unwrap_or(now),
            spread_hours: a.spread_hours,
        },
        issued: now,
        expires: now.plus_seconds(i64::from(a.expires_days) * 86_400),
        key_id: key.key_id(),
        sbom,
        delta,
    };
    let signed = manifest
        .clone()
        .sign(&key, keyring)
        .map_err(|source| Error::Key {
            path: key_files.key(),
            source,
        })?;
    let bytes = signed.to_json();
    // Check it the way a device of this model would, before publishing.
    let device = DeviceFacts {
        model: manifest.model.clone(),
        hardware_revision: manifest.hardware_revisions[0].clone(),
        installed_version: manifest.min_installed_version,
        security_floor: manifest.security_version,
        keyring_floor: 0,
        max_artifact_size: size,
    };
    update_manifest::verify(&bytes, &root, &device, now)?;
    write_replace(&a.out, &bytes)?;
    Ok(manifest)
}

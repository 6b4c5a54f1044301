//! `publish`: lay out a release for any static HTTPS server or CDN.
//!
//! The artifact goes where its first URL in the manifest points (the path
//! part, below `--out`), its chunk index where the index's first URL
//! points (rebuilt from the artifact and checked against the manifest),
//! the manifest beside them as `manifest.json`, and the model's
//! `latest.json` last, so a server never offers a manifest whose artifact
//! or index is not there yet. A published version is immutable:
//! publishing different bytes under the same path is refused.
//!
//! ```text
//! OUT/<base path>/<model>/latest.json
//! OUT/<base path>/<model>/<version>/manifest.json
//! OUT/<base path>/<model>/<version>/<file>.swu
//! OUT/<base path>/<model>/<version>/<file>.swu.index
//! OUT/<base path>/<model>/<version>/<sbom file>   (when the manifest names one)
//! OUT/<base path>/<model>/<version>/<file>.swu.delta, <file>.swu.pack   (a delta release)
//! ```
//!
//! A delta release's index and pack are taken from beside `--artifact`
//! (where `build --delta` wrote them); the pack is checked segment by
//! segment against the signed index before it is published.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use update_manifest::{ArtifactChecker, MAX_MANIFEST_LEN, SignedManifest};

use super::build::index_file;
use crate::keyfiles::{tmp_name, write_replace};
use crate::{Error, cli, progress};

const HELP: &str =
    "usage: hearth-release publish --manifest FILE --artifact FILE.swu [--sbom FILE] --out DIR
  DIR is the web root of the host named in the manifest's artifact URL
  --sbom FILE is required when the manifest names an SBOM (manifest --sbom)";

/// Parses and runs.
pub fn main(p: &mut lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let (mut manifest, mut artifact, mut out, mut sbom) = (None, None, None, None);
    while let Some(arg) = p.next()? {
        match arg {
            Long("manifest") => manifest = Some(cli::path(p)?),
            Long("artifact") => artifact = Some(cli::path(p)?),
            Long("out") => out = Some(cli::path(p)?),
            Long("sbom") => sbom = Some(cli::path(p)?),
            Long("help") => return cli::help(HELP),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let written = run(
        &cli::required(manifest, "manifest")?,
        &cli::required(artifact, "artifact")?,
        sbom.as_deref(),
        &cli::required(out, "out")?,
    )?;
    for w in written {
        eprintln!("hearth-release: published {}", w.display());
    }
    Ok(())
}

/// The relative path of a URL path, refusing anything that could leave
/// the output directory.
fn safe_relative(url_path: &str) -> Result<PathBuf, Error> {
    let segments: Vec<&str> = url_path.trim_start_matches('/').split('/').collect();
    let ok = segments.len() >= 3
        && segments.iter().all(|s| {
            !s.is_empty()
                && *s != "."
                && *s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
        });
    if !ok {
        return Err(Error::Msg(format!(
            "the artifact URL path {url_path:?} must be BASE/MODEL/VERSION/FILE made of letters, digits and -._~"
        )));
    }
    Ok(segments.iter().collect())
}

/// Publishes; returns the files written.
pub fn run(
    manifest: &Path,
    artifact: &Path,
    sbom: Option<&Path>,
    out: &Path,
) -> Result<Vec<PathBuf>, Error> {
    let mut bytes = Vec::new();
    fs::File::open(manifest)
        .and_then(|f| f.take(MAX_MANIFEST_LEN as u64 + 1).read_to_end(&mut bytes))
        .map_err(Error::io(manifest))?;
    let signed = SignedManifest::from_json(&bytes)?;
    let m = &signed.manifest;
    let rel = safe_relative(m.artifact.urls[0].path())?;
    let target = out.join(&rel);
    let version_dir = target
        .parent()
        .ok_or_else(|| Error::Msg("artifact URL has no directory".into()))?
        .to_owned();
    let model_dir = version_dir
        .parent()
        .ok_or_else(|| Error::Msg("artifact URL has no model directory".into()))?
        .to_owned();

    // The artifact must be the one the manifest describes.
    let mut checker = ArtifactChecker::new(m.artifact.sha256, m.artifact.size);
    copy_checked(artifact, None, &mut checker)?;
    checker.finish()?;

    fs::create_dir_all(&version_dir).map_err(Error::io(&version_dir))?;
    if target.exists() {
        // Any mismatch (length or digest) means the published bytes differ.
        let mut again = ArtifactChecker::new(m.artifact.sha256, m.artifact.size);
        let same = copy_checked(&target, None, &mut again).is_ok() && again.finish().is_ok();
        if !same {
            return Err(Error::Msg(format!(
                "{} already holds a different artifact; a published version is immutable, release a new version",
                target.display()
            )));
        }
    } else {
        let tmp = tmp_name(&target);
        let mut check = ArtifactChecker::new(m.artifact.sha256, m.artifact.size);
        copy_checked(artifact, Some(&tmp), &mut check)?;
        check.finish()?;
        fs::rename(&tmp, &target).map_err(Error::io(&target))?;
    }
    // The chunk index, rebuilt from the artifact: the one the manifest pins.
    let index_target = out.join(safe_relative(m.artifact.index.urls[0].path())?);
    let index = index_file(artifact, m.artifact.index.chunk_len)?.to_bytes();
    update_manifest::ChunkIndex::from_signed(&index, &m.artifact)?;
    publish_immutable(&index_target, &index, "chunk index")?;
    // The SBOM, when the manifest names one: the very file it hashes.
    let sbom_target = match (&m.sbom, sbom) {
        (None, None) => None,
        (None, Some(path)) => {
            return Err(Error::Msg(format!(
                "{} names no SBOM, so {} would be published unsigned: build the manifest with --sbom",
                manifest.display(),
                path.display()
            )));
        }
        (Some(_), None) => {
            return Err(Error::Msg(format!(
                "{} names an SBOM: give it with --sbom FILE",
                manifest.display()
            )));
        }
        (Some(signed), Some(path)) => {
            let target = out.join(safe_relative(signed.urls[0].path())?);
            let bytes = fs::read(path).map_err(Error::io(path))?;
            let mut check = ArtifactChecker::new(signed.sha256, signed.size);
            check
                .update(&bytes)
                .and_then(|()| check.finish())
                .map_err(|e| {
                    Error::Msg(format!(
                        "{} is not the SBOM {} names ({e})",
                        path.display(),
                        manifest.display()
                    ))
                })?;
            publish_immutable(&target, &bytes, "SBOM")?;
            Some(target)
        }
    };
    let delta_targets = match &m.delta {
        Some(delta) => publish_delta(delta, artifact, out)?,
        None => Vec::new(),
    };
    let version_manifest = version_dir.join("manifest.json");
    let latest = model_dir.join("latest.json");
    write_replace(&version_manifest, &bytes)?;
    write_replace(&latest, &bytes)?;
    let mut written = vec![target, index_target];
    written.extend(sbom_target);
    written.extend(delta_targets);
    written.extend([version_manifest, latest]);
    Ok(written)
}

/// Writes `bytes` (a small file: the chunk index, the SBOM) to `target`
/// unless it holds them already; different bytes there are refused, since
/// a published version is immutable.
/// Lays out the delta index and the pack that `build --delta` wrote beside
/// `artifact`, each checked against what the manifest signs.
fn publish_delta(
    delta: &update_manifest::Delta,
    artifact: &Path,
    out: &Path,
) -> Result<Vec<PathBuf>, Error> {
    let (index_path, pack_path) = super::build::delta_files(artifact);
    let bytes = fs::read(&index_path).map_err(Error::io(&index_path))?;
    let index = update_manifest::DeltaIndex::from_signed(&bytes, delta).map_err(|e| {
        Error::Msg(format!(
            "{} is not the delta index the manifest signs ({e})",
            index_path.display()
        ))
    })?;
    let index_target = out.join(safe_relative(delta.urls[0].path())?);
    let pack_target = out.join(safe_relative(delta.pack_urls[0].path())?);
    if pack_target.exists() {
        check_pack(&pack_target, &index).map_err(|e| {
            Error::Msg(format!(
                "{} already holds a different pack ({e}); a published version is immutable, release a new version",
                pack_target.display()
            ))
        })?;
    } else {
        check_pack(&pack_path, &index)?;
        let tmp = tmp_name(&pack_target);
        fs::copy(&pack_path, &tmp).map_err(Error::io(&tmp))?;
        check_pack(&tmp, &index)?;
        fs::rename(&tmp, &pack_target).map_err(Error::io(&pack_target))?;
    }
    publish_immutable(&index_target, &bytes, "delta index")?;
    Ok(vec![index_target, pack_target])
}

/// Checks each compressed segment of the pack at `path` against `index`.
fn check_pack(path: &Path, index: &update_manifest::DeltaIndex) -> Result<(), Error> {
    let mut file = std::io::BufReader::new(fs::File::open(path).map_err(Error::io(path))?);
    let mut buf = Vec::new();
    for segment in index.segments() {
        buf.resize(segment.len as usize, 0);
        file.read_exact(&mut buf).map_err(Error::io(path))?;
        if update_manifest::Sha256::digest(&buf) != segment.sha256 {
            return Err(Error::Msg(format!(
                "{}: the segment at offset {} is not the one the delta index lists",
                path.display(),
                segment.offset
            )));
        }
    }
    if file.read(&mut [0u8; 1]).map_err(Error::io(path))? != 0 {
        return Err(Error::Msg(format!(
            "{} is longer than its delta index says",
            path.display()
        )));
    }
    Ok(())
}

fn publish_immutable(target: &Path, bytes: &[u8], what: &str) -> Result<(), Error> {
    if target.exists() {
        if fs::read(target).map_err(Error::io(target))? != bytes {
            return Err(Error::Msg(format!(
                "{} already holds a different {what}; a published version is immutable, release a new version",
                target.display()
            )));
        }
        return Ok(());
    }
    if let Some(dir) = target.parent() {
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    write_replace(target, bytes)
}

/// Streams `from` through `checker`, copying to `to` when given.
fn copy_checked(
    from: &Path,
    to: Option<&Path>,
    checker: &mut ArtifactChecker,
) -> Result<(), Error> {
    use std::io::Write;
    let mut input = fs::File::open(from).map_err(Error::io(from))?;
    let len = input.metadata().map_err(Error::io(from))?.len();
    let mut output = match to {
        Some(p) => Some(fs::File::create(p).map_err(Error::io(p))?),
        None => None,
    };
    let bar = progress::bytes(len, if to.is_some() { "copying" } else { "checking" });
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = input.read(&mut buf).map_err(Error::io(from))?;
        if n == 0 {
            break;
        }
        checker.update(&buf[..n])?;
        if let (Some(o), Some(p)) = (output.as_mut(), to) {
            o.write_all(&buf[..n]).map_err(Error::io(p))?;
        }
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    if let (Some(o), Some(p)) = (output, to) {
        o.sync_all().map_err(Error::io(p))?;
    }
    Ok(())
}

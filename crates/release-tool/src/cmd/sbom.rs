//! `sbom`: the release's SPDX 2.3 SBOM ([`crate::sbom`]): the root file
//! system's Debian packages and the crates of the named workspace crates.

use std::path::PathBuf;

use update_manifest::Timestamp;

use crate::keyfiles::write_replace;
use crate::sbom::{self, Inputs};
use crate::{Error, cli};

const HELP: &str = "usage: hearth-release sbom --product TEXT --version X.Y.Z --cargo-lock FILE --crate NAME --out FILE.spdx.json [options]
  --product TEXT          what the SBOM describes, e.g. \"Hearth HRH-1\"
  --version X.Y.Z         the release version
  --cargo-lock FILE       the workspace's Cargo.lock
  --crate NAME            a workspace crate in the firmware (repeatable; hearthd)
  --debian-packages FILE  the root file system's packages, as printed by
                          dpkg-query -W -f '${Package} ${Version} ${Architecture}\\n'
  --debian-release NAME   Debian's code name for the purls, e.g. bookworm
  --organization TEXT     the vendor, as the SBOM's supplier and creator
  --namespace URL         base of the document's unique namespace
                          (default https://spdx.org/spdxdocs)
  The creation time is SOURCE_DATE_EPOCH when set, else now.";

/// Parses and runs.
pub fn main(p: &mut lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let (mut product, mut version, mut lock, mut out) = (None, None, None, None);
    let (mut crates, mut debian, mut release, mut organization) = (Vec::new(), None, None, None);
    let mut namespace = "https://spdx.org/spdxdocs".to_owned();
    while let Some(arg) = p.next()? {
        match arg {
            Long("product") => product = Some(cli::string(p)?),
            Long("version") => {
                version = Some(cli::parse::<update_manifest::Version>(p, "version")?)
            }
            Long("cargo-lock") => lock = Some(cli::path(p)?),
            Long("crate") => crates.push(cli::string(p)?),
            Long("debian-packages") => debian = Some(cli::path(p)?),
            Long("debian-release") => release = Some(cli::string(p)?),
            Long("organization") => organization = Some(cli::string(p)?),
            Long("namespace") => namespace = cli::string(p)?,
            Long("out") => out = Some(cli::path(p)?),
            Long("help") => return cli::help(HELP),
            _ => return Err(arg.unexpected().into()),
        }
    }
    if crates.is_empty() {
        return Err(Error::Usage(
            "--crate is required (the workspace crates in the firmware, e.g. --crate hearthd)"
                .into(),
        ));
    }
    if !namespace.starts_with("https://") && !namespace.starts_with("http://") {
        return Err(Error::Usage(format!(
            "--namespace {namespace:?}: give an http(s) URL"
        )));
    }
    let out: PathBuf = cli::required(out, "out")?;
    let lock = cli::required(lock, "cargo-lock")?;
    let inputs = Inputs {
        product: cli::required(product, "product")?,
        version: cli::required(version, "version")?.to_string(),
        organization,
        debian: match &debian {
            Some(path) => sbom::read_debian_packages(path)?,
            None => Vec::new(),
        },
        debian_release: release,
        crates: sbom::read_crates(&lock, &crates)?,
        namespace,
        created: created()?,
    };
    let doc = sbom::document(&inputs);
    let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|e| Error::Msg(e.to_string()))?;
    bytes.push(b'\n');
    write_replace(&out, &bytes)?;
    eprintln!(
        "hearth-release: SBOM {} written: {} Debian packages, {} crates (SPDX 2.3)",
        out.display(),
        inputs.debian.len(),
        inputs.crates.len()
    );
    Ok(())
}

/// SOURCE_DATE_EPOCH (reproducible builds) or now, as SPDX wants it.
fn created() -> Result<String, Error> {
    let now = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => {
            let secs: i64 = v.trim().parse().map_err(|e| {
                Error::Usage(format!(
                    "SOURCE_DATE_EPOCH {v:?} is not a number of seconds: {e}"
                ))
            })?;
            Timestamp::from_unix(secs)
                .map_err(|e| Error::Usage(format!("SOURCE_DATE_EPOCH {v:?}: {e}")))?
        }
        Err(_) => Timestamp::now(),
    };
    Ok(now.to_string())
}

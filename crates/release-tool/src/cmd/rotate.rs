//! `rotate`: replace a release-signing key.
//!
//! Makes the new key if it does not exist, certifies it (X.509 + key ring)
//! and either revokes the old key at once (`--overlap-days 0`, the
//! default, e.g. after a compromise) or keeps it valid for an overlap so
//! releases already signed with it stay installable. During an overlap,
//! `build --signer NEW --signer OLD` puts both CMS signatures on a `.swu`.
//! Devices learn of the revocation from the first manifest that carries
//! the new key ring, and everywhere by the old key ring's expiry.

use std::path::PathBuf;

use update_manifest::{KeyId, Timestamp};

use super::{certify, keygen};
use crate::keyfiles::KeyFiles;
use crate::{Error, cli};

const HELP: &str = "usage: hearth-release rotate --root PREFIX --keyring FILE --old PREFIX|KEY_ID --new PREFIX [options]
  --overlap-days N  keep the old key valid N more days (default 0: revoke now)
  --days N          the new key's validity (default 365)
  --keyring-days N  the new key ring's expiry (default 365)
  --dev             allow development keys";

/// Parses and runs.
pub fn main(p: &mut lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let (mut root, mut keyring, mut old, mut new) = (None, None, None, None);
    let (mut overlap, mut days, mut keyring_days, mut dev) = (0u32, 365u32, 365u32, false);
    while let Some(arg) = p.next()? {
        match arg {
            Long("root") => root = Some(cli::path(p)?),
            Long("keyring") => keyring = Some(cli::path(p)?),
            Long("old") => old = Some(cli::string(p)?),
            Long("new") => new = Some(cli::path(p)?),
            Long("overlap-days") => overlap = cli::parse(p, "overlap-days")?,
            Long("days") => days = cli::parse(p, "days")?,
            Long("keyring-days") => keyring_days = cli::parse(p, "keyring-days")?,
            Long("dev") => dev = true,
            Long("help") => return cli::help(HELP),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let new: PathBuf = cli::required(new, "new")?;
    let old = cli::required(old, "old")?;
    let old_id = match old.parse::<KeyId>() {
        Ok(id) => id,
        Err(_) => KeyFiles::new(&old).load_public()?.key_id(),
    };
    let files = KeyFiles::new(&new);
    if !files.key().exists() && !files.public().exists() {
        keygen::run(&keygen::Args {
            role: keygen::Role::Signing,
            out: new.clone(),
            name: None,
            days,
            dev,
        })?;
    }
    let mut args = certify::Args {
        root: cli::required(root, "root")?,
        keyring: cli::required(keyring, "keyring")?,
        key: Some(new),
        days,
        keyring_days,
        dev,
        ..certify::Args::default()
    };
    if overlap == 0 {
        args.revoke.push(old_id);
    } else {
        let until = Timestamp::now().plus_seconds(i64::from(overlap) * 86_400);
        args.retire_at.push((old_id, until));
    }
    let kr = certify::run(&args)?;
    eprintln!(
        "hearth-release: key ring version {} certifies {}; old key {} {}",
        kr.keyring.version,
        files.display(),
        old_id,
        if overlap == 0 {
            "revoked".to_owned()
        } else {
            format!("valid for {overlap} more day(s)")
        }
    );
    eprintln!(
        "hearth-release: publish a release (or re-sign the current manifest) so devices receive the new key ring"
    );
    Ok(())
}

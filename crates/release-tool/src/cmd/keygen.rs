//! `keygen`: a new root or release-signing key.
//!
//! Writes `PREFIX.key.pem` (PKCS#8, mode 0600) and `PREFIX.pub.pem`; for a
//! root also `PREFIX.cert.pem`, the self-signed CA certificate SWUpdate
//! trusts (`swupdate -k`). Never overwrites: all three names must be free.

use std::path::PathBuf;

use update_manifest::SigningKey;

use crate::keyfiles::{DEV_MARKER, KeyFiles, write_new};
use crate::{Error, cli, openssl};

const HELP: &str =
    "usage: hearth-release keygen --role root|signing --out PREFIX [--name TEXT] [--days N] [--dev]
  --role     root (offline; certifies signing keys) or signing (online; signs releases)
  --out      writes PREFIX.key.pem (0600), PREFIX.pub.pem, and for a root PREFIX.cert.pem
  --name     the certificate's common name (default: Hearth update root / release signer)
  --days     validity of the root certificate (default 3650)
  --dev      mark the key NOT FOR PRODUCTION (tests, development images)";

/// Which key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The offline root.
    Root,
    /// An online release-signing key.
    Signing,
}

/// Options.
#[derive(Debug, Clone)]
pub struct Args {
    /// Root or signing.
    pub role: Role,
    /// Output prefix.
    pub out: PathBuf,
    /// Common name.
    pub name: Option<String>,
    /// Root certificate validity.
    pub days: u32,
    /// Development key.
    pub dev: bool,
}

/// Parses and runs.
pub fn main(p: &mut lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let (mut role, mut out, mut name, mut days, mut dev) = (None, None, None, 3650, false);
    while let Some(arg) = p.next()? {
        match arg {
            Long("role") => {
                role = Some(match cli::string(p)?.as_str() {
                    "root" => Role::Root,
                    "signing" => Role::Signing,
                    other => {
                        return Err(Error::Usage(format!(
                            "--role {other:?}: use root or signing"
                        )));
                    }
                })
            }
            Long("out") => out = Some(cli::path(p)?),
            Long("name") => name = Some(cli::string(p)?),
            Long("days") => days = cli::parse(p, "days")?,
            Long("dev") => dev = true,
            Long("help") => return cli::help(HELP),
            _ => return Err(arg.unexpected().into()),
        }
    }
    run(&Args {
        role: cli::required(role, "role")?,
        out: cli::required(out, "out")?,
        name,
        days,
        dev,
    })
}

/// Makes the key files.
pub fn run(a: &Args) -> Result<(), Error> {
    let files = KeyFiles::new(&a.out);
    let mut outputs = vec![files.key(), files.public()];
    if a.role == Role::Root {
        outputs.push(files.cert());
    }
    // Check all names first, so a refusal leaves nothing half-made.
    for path in &outputs {
        if path.exists() {
            return Err(Error::Exists(path.clone()));
        }
    }
    let (key, pkcs8) = SigningKey::generate().map_err(|source| Error::Key {
        path: files.key(),
        source,
    })?;
    let mut key_pem = String::new();
    if a.dev {
        // Text before the PEM block is ignored by OpenSSL and by us, and
        // tells whoever finds the file what it is.
        key_pem.push_str(&format!(
            "{DEV_MARKER}: a development key, published with the source.\n"
        ));
    }
    key_pem.push_str(&SigningKey::pkcs8_to_pem(&pkcs8));
    write_new(&files.key(), key_pem.as_bytes(), 0o600)?;
    write_new(
        &files.public(),
        update_manifest::public_key_to_pem(key.public_key()).as_bytes(),
        0o644,
    )?;
    if a.role == Role::Root {
        let cn = a
            .name
            .clone()
            .unwrap_or_else(|| "Hearth update root".into());
        let subject = subject(&cn, a.dev);
        openssl::self_signed_ca(&files.key(), &files.cert(), &subject, a.days)?;
    }
    eprintln!(
        "hearth-release: {} key {} written to {}.key.pem (keep it {})",
        match a.role {
            Role::Root => "root",
            Role::Signing => "signing",
        },
        key.key_id(),
        files.display(),
        match a.role {
            Role::Root => "offline",
            Role::Signing => "secret",
        },
    );
    Ok(())
}

/// An X.509 subject for `cn`, marked when it is a development key.
pub fn subject(cn: &str, dev: bool) -> String {
    let clean: String = cn.chars().filter(|c| !"/=\\".contains(*c)).collect();
    if dev {
        format!("/O=Hearth DEVELOPMENT ONLY/CN={clean} ({DEV_MARKER})")
    } else {
        format!("/CN={clean}")
    }
}

//! `certify`: the root vouches for a release-signing key.
//!
//! Two things are signed with the root key, both with the same validity:
//! the key ring (`update_manifest::SignedKeyring`, what devices check in
//! every manifest) and an X.509 certificate for the signing key (what
//! SWUpdate checks in the CMS signature of sw-description). Each run
//! writes the next key-ring version; `--revoke` leaves keys out of it.
//! Without `--key` it just re-signs the key ring with a fresh expiry.

use std::fs;
use std::path::PathBuf;

use update_manifest::{
    CertifiedKey, KEYRING_FORMAT, KeyId, Keyring, SignedKeyring, Timestamp, TrustedRoot,
};

use crate::keyfiles::{KeyFiles, write_replace};
use crate::{Error, cli, openssl};

const HELP: &str =
    "usage: hearth-release certify --root PREFIX --keyring FILE [--key PREFIX] [options]
  --root          the root key files (PREFIX.key.pem, PREFIX.cert.pem)
  --keyring       the key ring to extend (created if missing); written back as the next version
  --key           the signing key to certify (only PREFIX.pub.pem is needed)
  --name TEXT     the key's name in the key ring and certificate
  --days N        the signing key's validity (default 365)
  --keyring-days N  the key ring's expiry (default 365); devices refuse releases after it
  --revoke KEY_ID leave this key out of the new key ring (repeatable)
  --cert-out FILE where to write the X.509 certificate (default PREFIX.cert.pem)
  --no-cert       key ring only; an existing PREFIX.cert.pem's dates are used
  --dev           allow development keys";

/// Options.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// Root key files.
    pub root: PathBuf,
    /// Key ring file.
    pub keyring: PathBuf,
    /// Signing key to add.
    pub key: Option<PathBuf>,
    /// Its name.
    pub name: Option<String>,
    /// Its validity in days.
    pub days: u32,
    /// Key-ring expiry in days.
    pub keyring_days: u32,
    /// Keys to drop.
    pub revoke: Vec<KeyId>,
    /// Keys to keep only until a time (rotation overlap).
    pub retire_at: Vec<(KeyId, Timestamp)>,
    /// Certificate output.
    pub cert_out: Option<PathBuf>,
    /// Skip the certificate.
    pub no_cert: bool,
    /// Allow development keys.
    pub dev: bool,
}

/// Parses and runs.
pub fn main(p: &mut lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let mut a = Args {
        days: 365,
        keyring_days: 365,
        ..Args::default()
    };
    let (mut root, mut keyring) = (None, None);
    while let Some(arg) = p.next()? {
        match arg {
            Long("root") => root = Some(cli::path(p)?),
            Long("keyring") => keyring = Some(cli::path(p)?),
            Long("key") => a.key = Some(cli::path(p)?),
            Long("name") => a.name = Some(cli::string(p)?),
            Long("days") => a.days = cli::parse(p, "days")?,
            Long("keyring-days") => a.keyring_days = cli::parse(p, "keyring-days")?,
            Long("revoke") => a.revoke.push(cli::parse(p, "revoke")?),
            Long("cert-out") => a.cert_out = Some(cli::path(p)?),
            Long("no-cert") => a.no_cert = true,
            Long("dev") => a.dev = true,
            Long("help") => return cli::help(HELP),
            _ => return Err(arg.unexpected().into()),
        }
    }
    a.root = cli::required(root, "root")?;
    a.keyring = cli::required(keyring, "keyring")?;
    let kr = run(&a)?;
    eprintln!(
        "hearth-release: key ring version {} written to {} ({} key(s), expires {})",
        kr.keyring.version,
        a.keyring.display(),
        kr.keyring.keys.len(),
        kr.keyring.expires
    );
    Ok(())
}

/// Reads a key ring file and checks that `root` signed it (expiry and
/// version are not checked: an expired key ring is what gets renewed).
pub fn load_keyring(path: &std::path::Path, root: &TrustedRoot) -> Result<SignedKeyring, Error> {
    let bytes = fs::read(path).map_err(Error::io(path))?;
    let kr = SignedKeyring::from_json(&bytes)
        .map_err(|e| Error::Msg(format!("{}: {e}", path.display())))?;
    // At its own issue time a key ring is not expired: this checks the
    // root id and the signature only.
    kr.verify(root, kr.keyring.issued, 0)
        .map_err(|e| Error::Msg(format!("{}: {e}", path.display())))?;
    Ok(kr)
}

/// Writes the next key-ring version (and the certificate); returns it.
pub fn run(a: &Args) -> Result<SignedKeyring, Error> {
    let root_files = KeyFiles::new(&a.root);
    let root_key = root_files.load_private()?;
    root_files.refuse_dev(&root_key.key_id(), a.dev)?;
    let trusted = TrustedRoot::new(*root_key.public_key());
    let now = Timestamp::now();

    let (old_version, mut keys) = if a.keyring.exists() {
        let kr = load_keyring(&a.keyring, &trusted)?;
        (kr.keyring.version, kr.keyring.keys)
    } else {
        (0, Vec::new())
    };
    for id in &a.revoke {
        if !keys.iter().any(|k| &k.key_id == id) {
            return Err(Error::Usage(format!(
                "--revoke {id}: the key ring has no such key"
            )));
        }
    }
    keys.retain(|k| !a.revoke.contains(&k.key_id) && k.not_after > now);
    for (id, until) in &a.retire_at {
        for k in keys.iter_mut().filter(|k| &k.key_id == id) {
            k.not_after = k.not_after.min(*until);
        }
    }

    if let Some(key) = &a.key {
        let files = KeyFiles::new(key);
        let public = files.load_public()?;
        files.refuse_dev(&public.key_id(), a.dev)?;
        let name = a.name.clone().unwrap_or_else(|| {
            format!(
                "Hearth release signer {}",
                &public.key_id().to_string()[..8]
            )
        });
        let (not_before, not_after) = if a.no_cert {
            // An existing certificate keeps both layers' dates equal.
            let cert = a.cert_out.clone().unwrap_or_else(|| files.cert());
            if cert.exists() {
                openssl::cert_dates(&cert)?
            } else {
                (now, now.plus_seconds(i64::from(a.days) * 86_400))
            }
        } else {
            let cert = a.cert_out.clone().unwrap_or_else(|| files.cert());
            // openssl needs the public key as a file; write it if only the
            // private key exists.
            let pub_path = files.public();
            if !pub_path.exists() {
                crate::keyfiles::write_new(
                    &pub_path,
                    update_manifest::public_key_to_pem(&public).as_bytes(),
                    0o644,
                )?;
            }
            let subject = super::keygen::subject(&name, a.dev && files.is_dev(&public.key_id()));
            let tmp = crate::keyfiles::tmp_name(&cert);
            openssl::issue_signing_cert(
                &root_files.cert(),
                &root_files.key(),
                &pub_path,
                &subject,
                a.days,
                &tmp,
            )?;
            fs::rename(&tmp, &cert).map_err(Error::io(&cert))?;
            eprintln!("hearth-release: certificate written to {}", cert.display());
            // The key ring carries exactly the certificate's dates.
            openssl::cert_dates(&cert)?
        };
        keys.retain(|k| k.key_id != public.key_id());
        keys.push(CertifiedKey {
            key_id: public.key_id(),
            public_key: public,
            name: name.parse()?,
            not_before,
            not_after,
        });
    }
    if keys.is_empty() {
        return Err(Error::Usage(
            "the key ring would certify no key; add one with --key".into(),
        ));
    }
    let keyring = Keyring {
        format: KEYRING_FORMAT,
        version: old_version + 1,
        issued: now,
        expires: now.plus_seconds(i64::from(a.keyring_days) * 86_400),
        keys,
    };
    let signed = keyring.sign(&root_key).map_err(|source| Error::Key {
        path: root_files.key(),
        source,
    })?;
    write_replace(&a.keyring, &signed.to_json())?;
    Ok(signed)
}

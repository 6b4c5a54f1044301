//! X.509 certificates and CMS signatures through the `openssl` command.
//!
//! SWUpdate checks `sw-description` with a CMS (PKCS#7) signature and an
//! X.509 chain; the `openssl` CLI is what SWUpdate's own documentation and
//! meta-swupdate use to make them, so the tool shells out to it rather
//! than bringing a second crypto library into the workspace.

use std::path::Path;
use std::process::Command;

use update_manifest::Timestamp;

use crate::Error;

/// Runs `openssl ARGS`, returning stdout or an error with its stderr.
pub fn openssl(args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, Error> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|e| Error::Tool {
            tool: "openssl".into(),
            detail: format!("{e} (install OpenSSL 3)"),
        })?;
    if !out.status.success() {
        let words: Vec<String> = args
            .iter()
            .take(2)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return Err(Error::Tool {
            tool: format!("openssl {}", words.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out.stdout)
}

macro_rules! os {
    ($($a:expr),* $(,)?) => { &[$(std::ffi::OsStr::new($a)),*] };
}

/// A self-signed CA certificate for the root key: it may only certify
/// signing certificates (pathlen 0). SWUpdate trusts it with `-k`.
pub fn self_signed_ca(key: &Path, cert: &Path, subject: &str, days: u32) -> Result<(), Error> {
    let days = days.to_string();
    openssl(os![
        "req",
        "-x509",
        "-new",
        "-key",
        key,
        "-out",
        cert,
        "-days",
        &days,
        "-subj",
        subject,
        "-addext",
        "basicConstraints=critical,CA:TRUE,pathlen:0",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "subjectKeyIdentifier=hash",
    ])?;
    Ok(())
}

/// Issues a signing certificate for `public_key` (a PUBLIC KEY PEM) under
/// the root CA, valid for `days` from now, with the key usages SWUpdate's
/// default `--cert-purpose` (S/MIME signing) requires. Only the public key
/// leaves the signing machine.
pub fn issue_signing_cert(
    ca_cert: &Path,
    ca_key: &Path,
    public_key: &Path,
    subject: &str,
    days: u32,
    out: &Path,
) -> Result<(), Error> {
    let dir = tempfile_dir(out)?;
    let ext = dir.join("ext.cnf");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=emailProtection\n\
         subjectKeyIdentifier=hash\n\
         authorityKeyIdentifier=keyid\n",
    )
    .map_err(Error::io(&ext))?;
    let days = days.to_string();
    let serial = dir.join("serial");
    let result = openssl(os![
        "x509",
        "-new",
        "-subj",
        subject,
        "-force_pubkey",
        public_key,
        "-CA",
        ca_cert,
        "-CAkey",
        ca_key,
        "-CAserial",
        &serial,
        "-CAcreateserial",
        "-days",
        &days,
        "-extfile",
        &ext,
        "-out",
        out,
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|_| ())
}

fn tempfile_dir(near: &Path) -> Result<std::path::PathBuf, Error> {
    let parent = near
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = parent.join(format!(".hearth-release-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    Ok(dir)
}

/// The certificate's validity period.
pub fn cert_dates(cert: &Path) -> Result<(Timestamp, Timestamp), Error> {
    let out = openssl(os![
        "x509",
        "-in",
        cert,
        "-noout",
        "-dateopt",
        "iso_8601",
        "-startdate",
        "-enddate"
    ])?;
    let text = String::from_utf8_lossy(&out);
    let get = |key: &str| -> Result<Timestamp, Error> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .ok_or_else(|| {
                Error::Msg(format!("{}: no {key} in openssl's output", cert.display()))
            })?;
        // "2026-11-28 09:02:35Z" -> "2026-11-28T09:02:35Z"
        line.trim()
            .replacen(' ', "T", 1)
            .parse()
            .map_err(|e| Error::Msg(format!("{}: {e}", cert.display())))
    };
    Ok((get("notBefore=")?, get("notAfter=")?))
}

/// The certificate's subject line.
pub fn cert_subject(cert: &Path) -> Result<String, Error> {
    let out = openssl(os!["x509", "-in", cert, "-noout", "-subject"])?;
    Ok(String::from_utf8_lossy(&out).trim().to_owned())
}

/// True if the certificate is valid now and for `secs` more seconds.
pub fn cert_valid_for(cert: &Path, secs: u64) -> bool {
    let secs = secs.to_string();
    openssl(os!["x509", "-in", cert, "-noout", "-checkend", &secs]).is_ok()
}

/// Signs `content` with every (certificate, key) pair: one CMS
/// SignedData with several signers, DER, as SWUpdate expects.
pub fn cms_sign(
    content: &Path,
    signature: &Path,
    signers: &[(std::path::PathBuf, std::path::PathBuf)],
) -> Result<(), Error> {
    let mut args: Vec<&std::ffi::OsStr> =
        os!["cms", "-sign", "-in", content, "-out", signature].to_vec();
    for (cert, key) in signers {
        args.extend_from_slice(os!["-signer", cert, "-inkey", key]);
    }
    args.extend_from_slice(os!["-outform", "DER", "-nosmimecap", "-binary"]);
    openssl(&args)?;
    Ok(())
}

/// Checks a detached DER CMS signature of `content` against `ca` the way
/// SWUpdate does (S/MIME signing purpose).
pub fn cms_verify(content: &Path, signature: &Path, ca: &Path) -> Result<(), Error> {
    let devnull = Path::new("/dev/null");
    openssl(os![
        "cms",
        "-verify",
        "-inform",
        "DER",
        "-in",
        signature,
        "-content",
        content,
        "-CAfile",
        ca,
        "-binary",
        "-purpose",
        "smimesign",
        "-out",
        devnull
    ])?;
    Ok(())
}

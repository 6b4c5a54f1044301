//! `hearth-release`, the vendor's release tool. One module per subcommand
//! under [`cmd`]; each parses its own options and calls into the shared
//! parts: [`keyfiles`] (key files, development-key detection), [`openssl`]
//! (X.509 and CMS through the `openssl` CLI, which SWUpdate's CMS format
//! needs), [`swu`] (the cpio container and the sw-description template)
//! and `update_manifest` (the signed manifest, shared with the device).
//!
//! Key files of one role share a prefix: `PREFIX.key.pem` (private, mode
//! 0600), `PREFIX.pub.pem` (public) and `PREFIX.cert.pem` (X.509, for
//! SWUpdate's CMS check).

pub mod cli;
pub mod cmd;
pub mod error;
pub mod keyfiles;
pub mod openssl;
pub mod progress;
pub mod sbom;
pub mod swu;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::Error;

/// The usage text (`hearth-release help`).
pub const USAGE: &str = "\
usage: hearth-release <command> [options]      (hearth-release <command> --help)

Keys (an offline root certifies online release-signing keys):
  keygen   --role root|signing --out PREFIX [--name TEXT] [--days N] [--dev]
  certify  --root PREFIX --keyring FILE [--key PREFIX] [--days N]
           [--keyring-days N] [--revoke KEY_ID]... [--cert-out FILE] [--no-cert] [--dev]
  rotate   --root PREFIX --keyring FILE --old PREFIX|KEY_ID --new PREFIX
           [--overlap-days N] [--days N] [--keyring-days N] [--dev]

Releases:
  build    --rootfs FILE --version X.Y.Z --model M --hw-revision R [...]
           --signer PREFIX [--signer PREFIX] --out FILE.swu
           [--slot-a DEV] [--slot-b DEV] [--template FILE] [--description TEXT]
           [--rootfs-name NAME] [--zstd-level N] [--delta] [--dev]
  manifest (alias: sign) --artifact FILE.swu --key PREFIX --keyring FILE
           --base-url https://... --security-version N --release-notes URL
           --out FILE [--urgency security|feature] [--min-installed-version X.Y.Z]
           [--expires-days N] [--rollout-start TIME] [--spread-hours N]
           [--product TEXT] [--root PREFIX] [--sbom FILE] [--delta] [--dev]
  verify   --root PREFIX|ROOT.pub.pem --manifest FILE [--artifact FILE.swu]
           --model M --hw-revision R --installed-version X.Y.Z
           [--security-floor N] [--keyring-floor N] [--max-artifact-size BYTES] [--sbom FILE]
           [--now TIME] [--dev]
  publish  --manifest FILE --artifact FILE.swu [--sbom FILE] --out DIR

Software bill of materials (SPDX 2.3) and its vulnerability check:
  sbom     --product TEXT --version X.Y.Z --cargo-lock FILE --crate NAME
           [--debian-packages FILE] [--debian-release NAME] --out FILE.spdx.json
  audit    --sbom FILE --db RUSTSEC_DB_DIR [--ignore RUSTSEC-ID]...

Development keys (published, NOT FOR PRODUCTION) are refused unless --dev.
Exit status: 0 done, 1 refused or failed, 2 bad command line.";

/// Runs the command line (without the program name).
pub fn run(mut parser: lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let command = match parser.next()? {
        Some(Value(v)) => v.string()?,
        Some(Long("help") | Short('h')) | None => {
            eprintln!("{USAGE}");
            return Ok(());
        }
        Some(other) => return Err(other.unexpected().into()),
    };
    match command.as_str() {
        "keygen" => cmd::keygen::main(&mut parser),
        "certify" => cmd::certify::main(&mut parser),
        "rotate" => cmd::rotate::main(&mut parser),
        "build" => cmd::build::main(&mut parser),
        "manifest" | "sign" => cmd::manifest::main(&mut parser),
        "verify" => cmd::verify::main(&mut parser),
        "publish" => cmd::publish::main(&mut parser),
        "sbom" => cmd::sbom::main(&mut parser),
        "audit" => cmd::audit::main(&mut parser),
        "help" => {
            eprintln!("{USAGE}");
            Ok(())
        }
        other => Err(Error::Usage(format!(
            "unknown command {other:?}; see hearth-release help"
        ))),
    }
}

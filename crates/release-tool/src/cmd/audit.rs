//! `audit`: the Rust crates an SBOM lists (its `pkg:cargo` purls), checked
//! against a local copy of the RustSec advisory database with RustSec's own
//! parser and version matching. Vulnerabilities fail the audit unless
//! `--ignore`d (each ignore is the vendor's recorded decision, as in
//! `deny.toml`); informational advisories (unmaintained, unsound) are
//! printed as warnings. Withdrawn advisories are left out.
//!
//! Debian's packages in the SBOM are not checked here: Debian's security
//! tracker is the source for them, and the vendor's process covers it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rustsec::advisory::Informational;
use rustsec::database::Query;

use crate::sbom::{self, Document};
use crate::{Error, cli};

const HELP: &str =
    "usage: hearth-release audit --sbom FILE.spdx.json --db DIR [--ignore RUSTSEC-YYYY-NNNN]...
  --db DIR       a checkout of the RustSec advisory database (github.com/rustsec/advisory-db)
  --ignore ID    an advisory the vendor has judged (repeatable); still printed
  Exit status: 0 no vulnerability outside the ignores, 1 otherwise.";

/// Parses and runs.
pub fn main(p: &mut lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let (mut sbom_path, mut db, mut ignores) = (None, None, BTreeSet::new());
    while let Some(arg) = p.next()? {
        match arg {
            Long("sbom") => sbom_path = Some(cli::path(p)?),
            Long("db") => db = Some(cli::path(p)?),
            Long("ignore") => {
                ignores.insert(cli::string(p)?);
            }
            Long("help") => return cli::help(HELP),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let sbom_path: PathBuf = cli::required(sbom_path, "sbom")?;
    let db: PathBuf = cli::required(db, "db")?;
    let report = run(&sbom_path, &db, &ignores)?;
    for f in &report.findings {
        eprintln!("{f}");
    }
    let failing = report.failing();
    eprintln!(
        "hearth-release audit: {} crates of {} checked against {} advisories in {}: {failing} vulnerabilit{} to act on, {} ignored, {} warning(s)",
        report.crates,
        sbom_path.display(),
        report.advisories,
        db.display(),
        if failing == 1 { "y" } else { "ies" },
        report
            .findings
            .iter()
            .filter(|f| f.ignored && f.warning.is_none())
            .count(),
        report
            .findings
            .iter()
            .filter(|f| f.warning.is_some())
            .count(),
    );
    if let Some(unused) = ignores
        .iter()
        .find(|id| !report.findings.iter().any(|f| &f.id == *id))
    {
        eprintln!(
            "hearth-release audit: --ignore {unused} matches nothing in this SBOM; drop it if the finding is gone"
        );
    }
    if failing > 0 {
        return Err(Error::Msg(format!(
            "{failing} crate version(s) in {} have RustSec vulnerabilities: upgrade them (cargo update -p NAME), or record a judged --ignore",
            sbom_path.display()
        )));
    }
    Ok(())
}

/// One advisory that applies to one crate version in the SBOM.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub id: String,
    pub name: String,
    pub version: String,
    pub title: String,
    /// `Some(kind)` for an informational advisory (unmaintained, unsound).
    pub warning: Option<String>,
    pub ignored: bool,
    pub patched: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match (&self.warning, self.ignored) {
            (Some(w), _) => format!("warning ({w})"),
            (None, true) => "vulnerability (ignored)".into(),
            (None, false) => "VULNERABILITY".into(),
        };
        write!(
            f,
            "{} {} {}: {kind}: {} (patched: {})",
            self.id, self.name, self.version, self.title, self.patched
        )
    }
}

/// What an audit found.
#[derive(Debug)]
pub struct Report {
    /// Crates with a `pkg:cargo` purl in the SBOM.
    pub crates: usize,
    /// Advisories in the database.
    pub advisories: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    /// Vulnerabilities not ignored.
    pub fn failing(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.warning.is_none() && !f.ignored)
            .count()
    }
}

/// Audits the SBOM at `sbom_path` against the database in `db`.
pub fn run(sbom_path: &Path, db: &Path, ignores: &BTreeSet<String>) -> Result<Report, Error> {
    let text = std::fs::read(sbom_path).map_err(Error::io(sbom_path))?;
    let doc: Document = serde_json::from_slice(&text).map_err(|e| {
        Error::Msg(format!(
            "{}: not an SPDX 2.x JSON document: {e}",
            sbom_path.display()
        ))
    })?;
    let database = rustsec::Database::open(db).map_err(|e| {
        Error::Msg(format!(
            "{}: cannot read it as a RustSec advisory database ({e}); give a checkout of github.com/rustsec/advisory-db",
            db.display()
        ))
    })?;
    let mut crates = BTreeSet::new();
    for package in &doc.packages {
        if let Some((name, version)) = package.purl().and_then(sbom::cargo_purl) {
            crates.insert((name, version));
        }
    }
    let mut findings = Vec::new();
    for (name, version) in &crates {
        let parsed_name = name.parse().map_err(|e| {
            Error::Msg(format!("{}: crate name {name:?}: {e}", sbom_path.display()))
        })?;
        let parsed_version = version.parse().map_err(|e| {
            Error::Msg(format!(
                "{}: crate {name} version {version:?}: {e}",
                sbom_path.display()
            ))
        })?;
        // Vulnerabilities and informational advisories, not withdrawn.
        let query = Query::new()
            .collection(rustsec::Collection::Crates)
            .package_name(parsed_name)
            .package_version(parsed_version)
            .withdrawn(false);
        for advisory in database.query(&query) {
            let m = &advisory.metadata;
            let id = m.id.to_string();
            findings.push(Finding {
                ignored: ignores.contains(&id),
                id,
                name: name.clone(),
                version: version.clone(),
                title: m.title.clone(),
                warning: m.informational.as_ref().map(|i| match i {
                    Informational::Unmaintained => "unmaintained".to_owned(),
                    Informational::Unsound => "unsound".to_owned(),
                    Informational::Notice => "notice".to_owned(),
                    other => other.to_string(),
                }),
                patched: patched(advisory),
            });
        }
    }
    findings.sort();
    Ok(Report {
        crates: crates.len(),
        advisories: database.iter().count(),
        findings,
    })
}

fn patched(advisory: &rustsec::Advisory) -> String {
    let list: Vec<String> = advisory
        .versions
        .patched()
        .iter()
        .map(ToString::to_string)
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

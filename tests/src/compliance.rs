//! The compliance matrices as typed data (`docs/compliance.toml`) and the
//! documents generated from it: `docs/compliance.md` (EN 303 645 5.1-5.3
//! and UK PSTI) and `docs/en18031-1.md` (EN 18031-1 beside them). The
//! conformance suite's ICS takes each provision's support from here, and
//! its report (`tests/artifacts/conformance/matrix.md`) sets it against
//! the verdicts of the run.
//!
//! The test below fails while a committed document differs from what the
//! data gives; `HEARTH_WRITE_DOCS=1` rewrites them instead.

use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

/// Where the data lives, relative to the repository.
pub const DATA: &str = "docs/compliance.toml";
pub const COMPLIANCE_MD: &str = "docs/compliance.md";
pub const EN18031_MD: &str = "docs/en18031-1.md";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    pub preface: String,
    pub section: Vec<Section>,
    pub en18031: En18031,
}

/// One EN 303 645 clause (5.1, 5.2, 5.3).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    pub title: String,
    /// Text after the table (a recorded vendor choice).
    #[serde(default)]
    pub after: String,
    pub row: Vec<Row>,
}

/// One row: provisions that share their evidence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub provisions: Vec<String>,
    pub title: String,
    /// EN 303 645 status: M, R, M/R ...
    pub status: String,
    pub support: Support,
    /// A qualifier shown after the support, e.g. "device side".
    #[serde(default)]
    pub note: String,
    pub how: String,
    pub code: String,
    pub tests: String,
}

/// How far the product meets a requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Support {
    Met,
    Partly,
    /// The vendor's process; Hearth gives the template and the tools.
    Process,
    NotApplicable,
    NotYet,
}

impl Support {
    pub fn words(self) -> &'static str {
        match self {
            Support::Met => "met",
            Support::Partly => "partly",
            Support::Process => "process",
            Support::NotApplicable => "not applicable",
            Support::NotYet => "not yet",
        }
    }

    /// The ICS support column (EN 303 645 Annex B): Y, N or NA.
    pub fn ics(self) -> &'static str {
        match self {
            Support::Met | Support::Partly | Support::Process => "Y",
            Support::NotApplicable => "NA",
            Support::NotYet => "N",
        }
    }

    /// Said before the detail in the ICS.
    pub fn ics_qualifier(self) -> &'static str {
        match self {
            Support::Partly => "Partly met. ",
            Support::Process => "The vendor's process. ",
            Support::NotYet => "Not yet met. ",
            Support::Met | Support::NotApplicable => "",
        }
    }
}

/// EN 18031-1, mapped to the same evidence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct En18031 {
    pub preface: String,
    pub requirement: Vec<Requirement>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub id: String,
    pub title: String,
    pub support: Support,
    pub how: String,
    pub evidence: String,
    /// EN 303 645 provisions whose row (code and tests) is also evidence.
    #[serde(default)]
    pub provisions: Vec<String>,
}

impl Matrix {
    pub fn load(repo: &Path) -> Result<Matrix, String> {
        let path = repo.join(DATA);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{DATA}: {e}"))?;
        let matrix: Matrix = toml::from_str(&text).map_err(|e| format!("{DATA}: {e}"))?;
        matrix.check()?;
        Ok(matrix)
    }

    /// The row that covers `provision`, if any.
    pub fn row(&self, provision: &str) -> Option<&Row> {
        self.rows()
            .find(|r| r.provisions.iter().any(|p| p == provision))
    }

    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.section.iter().flat_map(|s| s.row.iter())
    }

    /// Each provision in one row only; EN 18031-1 names only provisions
    /// that have a row.
    fn check(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for p in self.rows().flat_map(|r| r.provisions.iter()) {
            if !seen.insert(p) {
                return Err(format!("{DATA}: provision {p} is in two rows"));
            }
        }
        for r in &self.en18031.requirement {
            if let Some(p) = r.provisions.iter().find(|p| !seen.contains(p)) {
                return Err(format!(
                    "{DATA}: EN 18031-1 {} points at provision {p}, which has no row",
                    r.id
                ));
            }
        }
        Ok(())
    }

    pub fn compliance_md(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# Compliance matrix: ETSI EN 303 645 5.1–5.3 and UK PSTI Schedule 1\n"
        );
        let _ = writeln!(md, "{}\n", generated_note());
        let _ = writeln!(md, "{}", self.preface.trim_end());
        for s in &self.section {
            let _ = writeln!(md, "\n## {}\n", s.title);
            let _ = writeln!(
                md,
                "| provision | status | how Hearth meets it | code | test |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|");
            for r in &s.row {
                let note = if r.note.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.note)
                };
                let _ = writeln!(
                    md,
                    "| {} {} | {}, **{}**{note} | {} | {} | {} |",
                    r.provisions.join(", "),
                    r.title,
                    r.status,
                    r.support.words(),
                    cell(&r.how),
                    cell(&r.code),
                    cell(&r.tests)
                );
            }
            if !s.after.trim().is_empty() {
                let _ = writeln!(md, "\n{}", s.after.trim_end());
            }
        }
        let _ = writeln!(
            md,
            "\nEN 18031-1 (the EU radio equipment directive's cybersecurity standard) is mapped to the same evidence in `{EN18031_MD}`."
        );
        md
    }

    pub fn en18031_md(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# EN 18031-1 beside EN 303 645: internet-connected radio equipment (RED Art. 3(3)(d))\n"
        );
        let _ = writeln!(md, "{}\n", generated_note());
        let _ = writeln!(md, "{}\n", self.en18031.preface.trim_end());
        let _ = writeln!(
            md,
            "| requirement | status | how Hearth meets it | evidence | same evidence as (`{COMPLIANCE_MD}`) |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|");
        for r in &self.en18031.requirement {
            let _ = writeln!(
                md,
                "| {} {} | **{}** | {} | {} | {} |",
                r.id,
                r.title,
                r.support.words(),
                cell(&r.how),
                cell(&r.evidence),
                if r.provisions.is_empty() {
                    "-".to_owned()
                } else {
                    r.provisions.join(", ")
                }
            );
        }
        let counts = [
            Support::Met,
            Support::Partly,
            Support::Process,
            Support::NotApplicable,
            Support::NotYet,
        ]
        .iter()
        .map(|s| {
            let n = self
                .en18031
                .requirement
                .iter()
                .filter(|r| r.support == *s)
                .count();
            format!("{n} {}", s.words())
        })
        .collect::<Vec<_>>()
        .join(", ");
        let _ = writeln!(
            md,
            "\n{} requirements: {counts}.",
            self.en18031.requirement.len()
        );
        md
    }
}

fn generated_note() -> String {
    format!(
        "<!-- Generated from {DATA} by tests/src/compliance.rs. Edit that file, then run \
         HEARTH_WRITE_DOCS=1 cargo test -p system-tests --lib compliance -->"
    )
}

/// A table cell: one line, no stray column separators.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" | ", " / ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// CI's staleness check: the committed documents are what the data
    /// gives. With HEARTH_WRITE_DOCS=1 it writes them instead.
    #[test]
    fn the_compliance_documents_are_generated_from_their_data() {
        let repo = crate::repo_root();
        let matrix = Matrix::load(&repo).unwrap();
        let write = std::env::var_os("HEARTH_WRITE_DOCS").is_some();
        let mut stale = Vec::new();
        for (path, text) in [
            (COMPLIANCE_MD, matrix.compliance_md()),
            (EN18031_MD, matrix.en18031_md()),
        ] {
            let committed = std::fs::read_to_string(repo.join(path)).unwrap_or_default();
            if committed != text {
                if write {
                    std::fs::write(repo.join(path), &text).unwrap();
                    eprintln!("wrote {path}");
                } else {
                    stale.push(path);
                }
            }
        }
        assert!(
            stale.is_empty(),
            "{stale:?} differ from what {DATA} gives: regenerate them with \
             HEARTH_WRITE_DOCS=1 cargo test -p system-tests --lib compliance, and commit both"
        );
    }

    #[test]
    fn every_provision_of_5_1_to_5_3_has_one_row_and_the_en18031_table_is_whole() {
        let matrix = Matrix::load(&crate::repo_root()).unwrap();
        for id in [
            "5.1-1", "5.1-2", "5.1-2A", "5.1-3", "5.1-4", "5.1-5", "5.2-1", "5.2-2", "5.2-3",
            "5.3-1", "5.3-2", "5.3-3", "5.3-4", "5.3-5", "5.3-6", "5.3-7", "5.3-8", "5.3-9",
            "5.3-10", "5.3-11", "5.3-12", "5.3-13", "5.3-14", "5.3-15", "5.3-16",
        ] {
            assert!(matrix.row(id).is_some(), "{id} has no row in {DATA}");
        }
        let mechanisms: std::collections::BTreeSet<&str> = matrix
            .en18031
            .requirement
            .iter()
            .map(|r| r.id.split('-').next().unwrap())
            .collect();
        for m in [
            "ACM", "AUM", "SUM", "SSM", "SCM", "RLM", "NMM", "TCM", "CCK", "GEC", "CRY",
        ] {
            assert!(
                mechanisms.contains(m),
                "EN 18031-1 mechanism {m} has no row"
            );
        }
        for r in &matrix.en18031.requirement {
            if r.support == Support::NotApplicable {
                assert!(
                    r.how.len() > 20,
                    "{}: not applicable needs its reason",
                    r.id
                );
            }
        }
    }

    #[test]
    fn a_provision_in_two_rows_is_refused() {
        let matrix: Matrix = toml::from_str(
            "preface = \"p\"\n[[section]]\ntitle = \"t\"\n\
             [[section.row]]\nprovisions = [\"5.1-1\"]\ntitle = \"a\"\nstatus = \"M\"\nsupport = \"met\"\nhow = \"h\"\ncode = \"c\"\ntests = \"t\"\n\
             [[section.row]]\nprovisions = [\"5.1-1\"]\ntitle = \"b\"\nstatus = \"M\"\nsupport = \"partly\"\nhow = \"h\"\ncode = \"c\"\ntests = \"t\"\n\
             [en18031]\npreface = \"p\"\nrequirement = []\n",
        )
        .unwrap();
        assert!(matrix.check().unwrap_err().contains("two rows"));
    }
}

//! Verdicts and the report (Markdown and JSON) an assessor reads.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// A unit the case requires did not run (a tool or an input was
    /// missing): its case is INCONCLUSIVE, and the suite fails on that as
    /// on FAIL.
    NotTested,
    /// The IXIT says why this unit does not apply to this product (the
    /// reason is shown); it neither passes nor fails its case.
    NotApplicable,
    /// Shown for the assessor, with no verdict of its own.
    Informative,
    /// A case with a required unit that did not run.
    Inconclusive,
    /// A project target (not a provision) that was measured and missed:
    /// shown in the summary, but it does not fail the run
    /// (docs/conformance.md, "Targets").
    BelowTarget,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::NotTested => "NOT-TESTED",
            Verdict::NotApplicable => "NOT-APPLICABLE",
            Verdict::Informative => "INFORMATIVE",
            Verdict::Inconclusive => "INCONCLUSIVE",
            Verdict::BelowTarget => "BELOW-TARGET",
        }
    }
}

/// One lettered test unit (TS 103 701 "5.1-1-2a") with what was seen.
#[derive(Debug, Clone)]
pub struct Unit {
    pub name: String,
    pub verdict: Verdict,
    /// Why: the condition checked, or why it could not be.
    pub reason: String,
    pub evidence: Vec<String>,
}

/// One test case: a provision's functional test, or an external tool's run.
#[derive(Debug, Clone)]
pub struct Case {
    pub id: String,
    pub provision: String,
    pub title: String,
    /// The provision (or the tool's purpose), summarised.
    pub summary: String,
    pub units: Vec<Unit>,
    /// Wall time the case took, in seconds.
    pub seconds: f64,
}

impl Case {
    pub fn new(id: &str, provision: &str, title: &str, summary: &str) -> Case {
        Case {
            id: id.to_owned(),
            provision: provision.to_owned(),
            title: title.to_owned(),
            summary: summary.to_owned(),
            units: Vec::new(),
            seconds: 0.0,
        }
    }

    /// Records a unit whose verdict is `ok` (PASS) or not (FAIL).
    pub fn check(&mut self, name: &str, ok: bool, reason: &str, evidence: Vec<String>) {
        let verdict = if ok { Verdict::Pass } else { Verdict::Fail };
        self.unit(name, verdict, reason, evidence);
    }

    /// A unit the case requires that could not run: the case becomes
    /// INCONCLUSIVE.
    pub fn not_tested(&mut self, name: &str, reason: &str) {
        self.unit(name, Verdict::NotTested, reason, Vec::new());
    }

    /// A unit that does not apply to this product, with the IXIT's reason.
    pub fn not_applicable(&mut self, name: &str, ixit_reason: &str) {
        self.unit(name, Verdict::NotApplicable, ixit_reason, Vec::new());
    }

    /// Figures or facts for the assessor, with no verdict.
    pub fn informative(&mut self, name: &str, reason: &str, evidence: Vec<String>) {
        self.unit(name, Verdict::Informative, reason, evidence);
    }

    pub fn unit(&mut self, name: &str, verdict: Verdict, reason: &str, evidence: Vec<String>) {
        eprintln!("  {} {name}: {} ({reason})", self.id, verdict.as_str());
        self.units.push(Unit {
            name: name.to_owned(),
            verdict,
            reason: reason.to_owned(),
            evidence,
        });
    }

    /// FAIL if any unit failed; INCONCLUSIVE if a required unit did not
    /// run; BELOW-TARGET if a target was missed; PASS if a unit passed and
    /// the rest are not applicable or informative; NOT-APPLICABLE when no
    /// unit applies. A case never passes on what did not run.
    pub fn verdict(&self) -> Verdict {
        let any = |v: Verdict| self.units.iter().any(|u| u.verdict == v);
        if any(Verdict::Fail) {
            Verdict::Fail
        } else if any(Verdict::NotTested) || self.units.is_empty() {
            Verdict::Inconclusive
        } else if any(Verdict::BelowTarget) {
            Verdict::BelowTarget
        } else if any(Verdict::Pass) {
            Verdict::Pass
        } else {
            Verdict::NotApplicable
        }
    }

    /// Units that did not pass and are not failures: not applicable or
    /// informative (shown beside the case's verdict).
    fn unjudged(&self) -> usize {
        self.units
            .iter()
            .filter(|u| matches!(u.verdict, Verdict::NotApplicable | Verdict::Informative))
            .count()
    }
}

/// Everything the run found, written as `report.md` and `report.json`.
#[derive(Debug, Default)]
pub struct Report {
    pub target: String,
    pub started: String,
    pub cases: Vec<Case>,
    pub notes: Vec<String>,
    pub seconds: f64,
}

impl Report {
    /// The cases that fail the suite: FAIL, and INCONCLUSIVE (a required
    /// unit did not run).
    pub fn failed(&self) -> Vec<&Case> {
        self.cases
            .iter()
            .filter(|c| matches!(c.verdict(), Verdict::Fail | Verdict::Inconclusive))
            .collect()
    }

    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        let json = serde_json::to_string_pretty(&self.json()).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("report.json"), json + "\n")
    }

    fn json(&self) -> serde_json::Value {
        let cases: Vec<_> = self
            .cases
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "provision": c.provision,
                    "title": c.title,
                    "summary": c.summary,
                    "verdict": c.verdict().as_str(),
                    "seconds": c.seconds,
                    "units": c.units.iter().map(|u| json!({
                        "name": u.name,
                        "verdict": u.verdict.as_str(),
                        "reason": u.reason,
                        "evidence": u.evidence,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "suite": "Hearth conformance suite (ETSI EN 303 645 5.1-5.3, functional test cases after ETSI TS 103 701)",
            "target": self.target,
            "started_utc": self.started,
            "seconds": self.seconds,
            "cases": cases,
            "notes": self.notes,
        })
    }

    fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Hearth conformance report\n");
        let _ = writeln!(
            md,
            "Functional test cases for ETSI EN 303 645 provisions 5.1-5.3, numbered after \
             ETSI TS 103 701 (\"5.1-1-2\" is the functional test case of provision 5.1-1), run \
             from outside the device as an assessor would, plus external tools. Generated by \
             `tests/conformance` (see `docs/conformance.md`).\n"
        );
        let _ = writeln!(md, "- Device under test: {}", self.target);
        let _ = writeln!(md, "- Started (UTC): {}", self.started);
        let _ = writeln!(md, "- Duration: {:.0} s\n", self.seconds);
        let _ = writeln!(md, "## Summary\n");
        let _ = writeln!(md, "| test case | provision | title | verdict |");
        let _ = writeln!(md, "|---|---|---|---|");
        for c in &self.cases {
            let unjudged = c.unjudged();
            let note = if unjudged > 0 && c.verdict() != Verdict::NotApplicable {
                format!(" ({unjudged} unit(s) not applicable or informative)")
            } else {
                String::new()
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | **{}**{note} |",
                c.id,
                c.provision,
                c.title,
                c.verdict().as_str()
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(md, "\n## Scope and limits\n");
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        for c in &self.cases {
            let _ = writeln!(md, "\n## {} {}\n", c.id, c.title);
            let _ = writeln!(md, "- Provision: {}", c.provision);
            let _ = writeln!(md, "- What it requires: {}", c.summary);
            let _ = writeln!(
                md,
                "- Verdict: **{}** ({:.1} s)\n",
                c.verdict().as_str(),
                c.seconds
            );
            for u in &c.units {
                let _ = writeln!(
                    md,
                    "### {}: {}\n\n{}\n",
                    u.name,
                    u.verdict.as_str(),
                    u.reason
                );
                if !u.evidence.is_empty() {
                    let _ = writeln!(md, "```text");
                    for e in &u.evidence {
                        let _ = writeln!(md, "{}", e.trim_end());
                    }
                    let _ = writeln!(md, "```\n");
                }
            }
        }
        md
    }
}

/// At most `max` characters of `text` (for evidence excerpts).
pub fn excerpt(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}… [{} more characters]", text.chars().count() - max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case_with(units: &[Verdict]) -> Case {
        let mut case = Case::new("X-1", "test", "a case", "what it requires");
        for (i, v) in units.iter().enumerate() {
            case.unit(&format!("unit {i}"), *v, "why", Vec::new());
        }
        case
    }

    #[test]
    fn a_case_passes_only_when_every_required_unit_ran_and_passed() {
        use Verdict::*;
        assert_eq!(case_with(&[Pass, Pass]).verdict(), Pass);
        assert_eq!(
            case_with(&[Pass, NotApplicable, Informative]).verdict(),
            Pass
        );
        assert_eq!(case_with(&[Pass, NotTested]).verdict(), Inconclusive);
        assert_eq!(case_with(&[NotTested]).verdict(), Inconclusive);
        assert_eq!(
            case_with(&[]).verdict(),
            Inconclusive,
            "a case with no unit"
        );
        assert_eq!(case_with(&[Pass, NotTested, Fail]).verdict(), Fail);
        assert_eq!(
            case_with(&[NotApplicable, Informative]).verdict(),
            NotApplicable
        );
        assert_eq!(case_with(&[Pass, BelowTarget]).verdict(), BelowTarget);
    }

    #[test]
    fn the_suite_fails_on_an_inconclusive_case_as_on_a_failed_one() {
        let report = Report {
            cases: vec![
                case_with(&[Verdict::Pass]),
                case_with(&[Verdict::Pass, Verdict::NotTested]),
                case_with(&[Verdict::NotApplicable]),
            ],
            ..Report::default()
        };
        let failed: Vec<Verdict> = report.failed().iter().map(|c| c.verdict()).collect();
        assert_eq!(failed, [Verdict::Inconclusive]);
    }
}

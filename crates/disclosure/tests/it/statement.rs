//! The PSTI statement of compliance against reviewed golden files.
//!
//! To accept an intended change, run the tests with `UPDATE_GOLDEN=1`, then
//! review the diff of `tests/data/statement-reference.*` before committing.

use disclosure::statement::{self, BuildInfo, Format};

use crate::{data, edited, parse, reference};

fn build() -> BuildInfo {
    BuildInfo {
        firmware_version: "1.0.0".to_owned(),
        batch: "Lot 2026-12 (serial numbers 000001 to 010000)".to_owned(),
    }
}

fn check_golden(name: &str, got: &str) {
    let path = data(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).expect("write golden");
    }
    let want = std::fs::read_to_string(&path).expect("golden file exists");
    assert!(
        got == want,
        "{} differs from the generated statement; if the change is intended, rerun with UPDATE_GOLDEN=1 and review the diff.\n--- generated ---\n{got}",
        path.display()
    );
}

#[test]
fn markdown_statement_matches_the_golden_file() {
    check_golden(
        "statement-reference.md",
        &statement::render(&reference(), &build(), Format::Markdown),
    );
}

#[test]
fn html_statement_matches_the_golden_file() {
    check_golden(
        "statement-reference.html",
        &statement::render(&reference(), &build(), Format::Html),
    );
}

#[test]
fn the_statement_holds_every_schedule_4_item() {
    let md = statement::render(&reference(), &build(), Format::Markdown);
    for needle in [
        "| Product type | Smart-home hub (consumer connectable product) |",
        "| Batch | Lot 2026-12 (serial numbers 000001 to 010000) |",
        "| Name | Example Hearth Devices Ltd |",
        "| Address | 1 Example Street, Exampletown, EX1 2AB, United Kingdom |",
        "prepared by or on behalf of the manufacturer",
        "ETSI EN 303 645 V2.1.1 (2020-06)",
        "provisions 5.1-1 and 5.1-2",
        "provision 5.2-1",
        "provision 5.3-13",
        "until at least 31 December 2031 (end date 2031-12-31)",
        "| Signature |",
        "| Function |",
        "| Place of issue |",
        "| Date of issue |",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in\n{md}");
    }
}

#[test]
fn a_change_in_the_vendor_file_flows_into_the_statement() {
    let changed = parse(
        &edited("end_date = 2031-12-31", "end_date = 2033-06-30")
            .replace(
                "name = \"Example Hearth Devices Ltd\"",
                "name = \"Forked Devices plc\"",
            )
            .replace("model = \"HRH-1\"", "model = \"FD-9\"")
            .replace(
                "# signatory_name = \"A. N. Example\"",
                "signatory_name = \"Jo Bloggs\"",
            ),
    );
    for format in [Format::Markdown, Format::Html] {
        let before = statement::render(&reference(), &build(), format);
        let after = statement::render(&changed, &build(), format);
        assert_ne!(before, after);
        for needle in [
            "30 June 2033",
            "2033-06-30",
            "Forked Devices plc",
            "FD-9",
            "Jo Bloggs",
        ] {
            assert!(after.contains(needle), "{format:?}: {needle:?} missing");
            assert!(
                !before.contains(needle),
                "{format:?}: {needle:?} already there"
            );
        }
        for gone in ["31 December 2031", "Example Hearth Devices Ltd", "HRH-1"] {
            assert!(!after.contains(gone), "{format:?}: {gone:?} still there");
        }
    }
}

#[test]
fn markup_in_vendor_values_is_escaped() {
    let v = parse(&edited(
        "name = \"Example Hearth Devices Ltd\"",
        "name = \"<script>alert(1)</script> | *Ltd*\"",
    ));
    let html = statement::render(&v, &build(), Format::Html);
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; | *Ltd*"));
    let md = statement::render(&v, &build(), Format::Markdown);
    assert!(
        md.contains(r"\<script\>alert(1)\</script\> \| \*Ltd\*"),
        "{md}"
    );
}

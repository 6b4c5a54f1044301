//! The `hearth-vendor` binary: output and documented exit codes
//! (0 success, 1 vendor file unreadable or invalid, 2 usage, 3 output).

use std::process::{Command, Output};

use crate::{REFERENCE, edited};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth-vendor"))
        .args(args)
        .output()
        .expect("hearth-vendor runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_vendor(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vendor.toml");
    std::fs::write(&path, text).expect("write");
    let path = path.to_str().expect("utf-8 path").to_owned();
    (dir, path)
}

#[test]
fn check_accepts_the_reference_file_and_warns_it_is_fictional() {
    let o = run(&["check", REFERENCE, "--today", "2026-11-28"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).ends_with("vendor.toml: OK\n"));
    assert!(stderr(&o).contains("warning: this is the fictional reference vendor (example.com)"));
}

#[test]
fn check_warns_but_passes_when_support_has_ended() {
    let o = run(&["check", REFERENCE, "--today", "2032-01-01"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("warning: The support period ended on 31 December 2031"));
}

#[test]
fn check_fails_with_exit_1_and_the_sentences() {
    let (_d, path) = write_vendor(&edited("expires_in_days = 180", "expires_in_days = 0"));
    let o = run(&["check", &path]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("has 1 problem; fix it"), "{e}");
    assert!(
        e.contains(
            "`security_txt.expires_in_days`: 0 days would put security.txt's Expires in the past"
        ),
        "{e}"
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn check_fails_with_exit_1_on_an_unknown_key() {
    let (_d, path) = write_vendor(&edited("[support]", "[support]\nend = 2030-01-01"));
    let o = run(&["check", &path]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("`support.end`: line 61: unknown field `end`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_missing_file_exits_1() {
    let o = run(&["check", "/nonexistent/vendor.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read the vendor file /nonexistent/vendor.toml"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["frobnicate", REFERENCE][..],
        &["check"][..],
        &["check", REFERENCE, "--today", "28/11/2026"][..],
        &["os-release", REFERENCE][..],
        &[
            "statement",
            REFERENCE,
            "--format",
            "md",
            "--version",
            "1.0.0",
        ][..],
        &[
            "statement",
            REFERENCE,
            "--format",
            "docx",
            "--version",
            "1.0.0",
            "--batch",
            "b",
        ][..],
        &["check", REFERENCE, "--bogus"][..],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("Usage:"), "{args:?}");
    }
}

#[test]
fn help_prints_usage_and_exit_codes() {
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o)
            .contains("Exit codes: 0 success, 1 vendor file unreadable or invalid, 2 usage error")
    );
}

#[test]
fn os_release_prints_the_fragment() {
    let o = run(&["os-release", REFERENCE, "--version", "1.2.0"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("\nSUPPORT_END=2031-12-31\n"));
    assert!(stdout(&o).contains("\nIMAGE_VERSION=1.2.0\n"));
}

#[test]
fn security_txt_prints_the_file_for_the_given_day() {
    let o = run(&["security-txt", REFERENCE, "--today", "2026-11-28"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("\nExpires: 2027-05-27T00:00:00Z\n"));
}

#[test]
fn statement_prints_markdown_and_html_and_writes_to_a_file() {
    let o = run(&[
        "statement",
        REFERENCE,
        "--format",
        "md",
        "--version",
        "1.0.0",
        "--batch",
        "lot 7",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("# Statement of compliance: Hearth Reference Hub HRH-1\n"));
    assert!(stdout(&o).contains("| Batch | lot 7 |"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("statement.html");
    let out_s = out.to_str().expect("utf-8");
    let o = run(&[
        "statement",
        REFERENCE,
        "--format",
        "html",
        "--version",
        "1.0.0",
        "--batch",
        "lot 7",
        "--output",
        out_s,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let html = std::fs::read_to_string(&out).expect("written");
    assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
}

#[test]
fn an_unwritable_output_exits_3() {
    let o = run(&[
        "security-txt",
        REFERENCE,
        "--output",
        "/nonexistent/dir/security.txt",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("cannot write /nonexistent/dir/security.txt"));
}

#[test]
fn statement_pdf_is_made_by_weasyprint() {
    // WeasyPrint (Debian package `weasyprint`) turns the HTML statement into
    // PDF; the CI script installs it.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("statement.pdf");
    let out_s = out.to_str().expect("utf-8");
    let o = run(&[
        "statement",
        REFERENCE,
        "--format",
        "pdf",
        "--version",
        "1.0.0",
        "--batch",
        "lot 7",
        "--output",
        out_s,
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "PDF generation failed (install WeasyPrint with `apt-get install weasyprint`): {}",
        stderr(&o)
    );
    let pdf = std::fs::read(&out).expect("written");
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
    assert!(pdf.len() > 1000);
}

#[test]
fn statement_pdf_without_output_is_a_usage_error() {
    let o = run(&[
        "statement",
        REFERENCE,
        "--format",
        "pdf",
        "--version",
        "1.0.0",
        "--batch",
        "b",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

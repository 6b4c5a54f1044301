//! The independent validator: DigitalTrustCenter's `sectxt` (PyPI), the one
//! behind internet.nl, run on the generated security.txt.
//!
//! It validates the *content* locally (`sectxt.Parser(bytes)`), so no network
//! is involved. Two checks therefore do not run here: the transport ones
//! (HTTPS, Content-Type), which the daemon's HTTPS tests cover, and the
//! `no_canonical_match` check, which needs the retrieval URL; the device's
//! copy deliberately names the vendor's URL as Canonical (docs/disclosure.md).
//! Expires is checked against the real current time, as sectxt does.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::{edited, parse, reference};

const SCRIPT: &str = r#"
import json, sys
try:
    import sectxt
except ImportError:
    sys.stderr.write("the Python package sectxt is missing: run `pip install sectxt`\n")
    sys.exit(3)
p = sectxt.Parser(sys.stdin.buffer.read())
json.dump({"errors": p.errors, "recommendations": p.recommendations,
           "notifications": p.notifications}, sys.stdout)
"#;

/// Runs sectxt on `body`; returns its (errors, recommendations) codes.
fn sectxt(body: &str) -> (Vec<String>, Vec<String>) {
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed to run the sectxt validator test");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write to python3");
    let out = child.wait_with_output().expect("python3 runs");
    assert!(
        out.status.success(),
        "the sectxt validator could not run ({}): {}\nInstall it with `pip install sectxt`.",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sectxt prints JSON");
    let codes = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .expect("a list")
            .iter()
            .map(|e| format!("{}: {}", e["code"], e["message"]))
            .collect()
    };
    (codes("errors"), codes("recommendations"))
}

fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

#[test]
fn sectxt_finds_no_errors_in_the_generated_file() {
    let body = reference().security_txt(today());
    let (errors, recommendations) = sectxt(&body);
    assert!(errors.is_empty(), "sectxt errors: {errors:#?}\nin:\n{body}");
    // The generated file is not signed (a device holds no vendor signing
    // key); that is sectxt's only recommendation.
    assert_eq!(recommendations.len(), 1, "{recommendations:#?}");
    assert!(
        recommendations[0].contains("not_signed"),
        "{recommendations:#?}"
    );
}

#[test]
fn sectxt_finds_no_errors_at_the_longest_expiry() {
    let v = parse(&edited("expires_in_days = 180", "expires_in_days = 365"));
    let (errors, recommendations) = sectxt(&v.security_txt(today()));
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(
        !recommendations.iter().any(|r| r.contains("long_expiry")),
        "Expires must stay below one year: {recommendations:#?}"
    );
}

#[test]
fn sectxt_finds_no_errors_with_only_the_required_fields() {
    let text = edited(
        "encryption_url = \"https://example.com/.well-known/openpgp-key.asc\"\n",
        "",
    )
    .replace(
        "acknowledgments_url = \"https://example.com/security/thanks\"\n",
        "",
    )
    .replace(
        "canonical_urls = [\"https://example.com/.well-known/security.txt\"]\n",
        "",
    )
    .replace("preferred_languages = [\"en\"]\n", "");
    let (errors, _) = sectxt(&parse(&text).security_txt(today()));
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn sectxt_does_catch_a_broken_file() {
    // Shows the validator is really looking: an expired file fails.
    let body = reference().security_txt(time::macros::date!(2020 - 01 - 01));
    let (errors, _) = sectxt(&body);
    assert!(errors.iter().any(|e| e.contains("expired")), "{errors:#?}");
}

//! Parsing the vendor file and every validation error.

use disclosure::{Error, VendorFile};
use time::macros::date;

use crate::{REFERENCE, TODAY, edited, parse, reference};

/// The problems `text` has on `TODAY`, as `(field, message)`.
fn problems(text: &str) -> Vec<(String, String)> {
    parse(text)
        .problems()
        .into_iter()
        .map(|p| (p.field, p.message))
        .collect()
}

/// Asserts exactly one problem, on `field`, whose sentence contains `needle`.
fn one_problem(text: &str, field: &str, needle: &str) {
    let p = problems(text);
    assert_eq!(p.len(), 1, "expected one problem, got {p:#?}");
    assert_eq!(p[0].0, field);
    assert!(p[0].1.contains(needle), "{:?} lacks {needle:?}", p[0].1);
    assert!(p[0].1.ends_with('.'), "not a sentence: {:?}", p[0].1);
}

/// The sentence of a parse error (shape problems found by `parse`).
fn parse_error(text: &str) -> String {
    match VendorFile::parse(text, "vendor.toml") {
        Err(e @ Error::Parse { .. }) => e.to_string(),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn the_reference_file_loads_and_is_valid() {
    let v = reference();
    assert_eq!(v.vendor.name, "Example Hearth Devices Ltd");
    assert_eq!(v.product.model, "HRH-1");
    assert_eq!(v.product.hardware_revision, "A");
    assert_eq!(v.support.end_date, date!(2031 - 12 - 31));
    assert_eq!(v.support.release_date, Some(date!(2026 - 12 - 01)));
    assert_eq!(v.security_txt.expires_in_days, 180);
    assert_eq!(v.disclosure.contacts.len(), 2);
    assert_eq!(v.path, std::path::Path::new(REFERENCE));
    v.validate().expect("valid");
}

#[test]
fn the_reference_file_uses_only_the_reserved_example_domain() {
    // A fork must change it; the reference must never point at a real party.
    let text = crate::reference_text();
    for url in text
        .split('"')
        .filter(|s| s.starts_with("https://") || s.starts_with("mailto:"))
    {
        assert!(url.contains("example.com"), "{url} is not on example.com");
    }
    assert!(text.contains("FICTIONAL REFERENCE VENDOR"));
}

#[test]
fn an_ended_support_period_is_valid() {
    // The device must keep running and say so, not refuse to start.
    reference()
        .validate_for_build(date!(2040 - 01 - 01))
        .expect("still valid");
}

#[test]
fn a_missing_file_names_the_path() {
    let e = VendorFile::load("/nonexistent/vendor.toml").expect_err("missing");
    let s = e.to_string();
    assert!(s.contains("/nonexistent/vendor.toml"), "{s}");
    assert!(s.contains("Check that the image installs it"), "{s}");
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let s = parse_error(&edited(
        "hardware_revision = \"A\"",
        "hardware_revision = \"A\"\ncolour = \"red\"",
    ));
    assert!(s.starts_with("vendor.toml: `product.colour`: line "), "{s}");
    assert!(s.contains("unknown field `colour`"), "{s}");
    assert!(s.contains("remove the key or correct its spelling"), "{s}");
}

#[test]
fn an_unknown_section_is_rejected() {
    let s = parse_error(&format!("{}\n[extras]\nx = 1\n", crate::reference_text()));
    assert!(s.contains("unknown field `extras`"), "{s}");
}

#[test]
fn a_missing_key_is_named() {
    let s = parse_error(&edited(
        "policy_url = \"https://example.com/security/policy\"\n",
        "",
    ));
    assert!(s.contains("`disclosure`"), "{s}");
    assert!(s.contains("missing field `policy_url`; add it"), "{s}");
}

#[test]
fn a_quoted_date_gets_a_hint() {
    let s = parse_error(&edited(
        "end_date = 2031-12-31",
        "end_date = \"2031-12-31\"",
    ));
    assert!(s.contains("`support.end_date`"), "{s}");
    assert!(
        s.contains("write the date unquoted, like 2031-12-31"),
        "{s}"
    );
}

#[test]
fn a_date_time_is_not_a_date() {
    let s = parse_error(&edited(
        "end_date = 2031-12-31",
        "end_date = 2031-12-31T10:00:00Z",
    ));
    assert!(s.contains("expected a date without a time"), "{s}");
}

#[test]
fn invalid_toml_names_the_line() {
    let s = parse_error(&edited("[support]", "[support"));
    assert!(s.starts_with("vendor.toml: line 60:"), "{s}");
}

#[test]
fn a_wrong_type_is_named() {
    let s = parse_error(&edited(
        "expires_in_days = 180",
        "expires_in_days = \"soon\"",
    ));
    assert!(s.contains("`security_txt.expires_in_days`"), "{s}");
}

#[test]
fn no_contact_is_an_error() {
    let text = edited(
        "contacts = [\n    \"mailto:security@example.com\",\n    \"https://example.com/security/report\",\n]",
        "contacts = []",
    );
    one_problem(
        &text,
        "disclosure.contacts",
        "no security contact is given; add at least one",
    );
}

#[test]
fn an_http_contact_is_an_error() {
    let text = edited(
        "\"https://example.com/security/report\"",
        "\"http://example.com/security/report\"",
    );
    one_problem(
        &text,
        "disclosure.contacts[1]",
        "uses http://; web URIs must use https://",
    );
}

#[test]
fn a_contact_of_another_scheme_is_an_error() {
    let text = edited(
        "\"https://example.com/security/report\"",
        "\"tel:+441234567890\"",
    );
    one_problem(
        &text,
        "disclosure.contacts[1]",
        "neither a mailto: nor an https: URI",
    );
}

#[test]
fn a_broken_mailto_is_an_error() {
    let text = edited("\"mailto:security@example.com\"", "\"mailto:security\"");
    one_problem(
        &text,
        "disclosure.contacts[0]",
        "not a valid mailto: address",
    );
}

#[test]
fn a_non_https_policy_url_is_an_error() {
    let text = edited("policy_url = \"https://", "policy_url = \"http://");
    one_problem(&text, "disclosure.policy_url", "must use https://");
}

#[test]
fn every_web_uri_field_must_be_https() {
    for (key, field) in [
        ("url = \"https://example.com/\"", "vendor.url"),
        ("url = \"https://example.com/hearth/hrh-1\"", "product.url"),
        ("encryption_url = \"https://", "disclosure.encryption_url"),
        (
            "acknowledgments_url = \"https://",
            "disclosure.acknowledgments_url",
        ),
        (
            "canonical_urls = [\"https://",
            "disclosure.canonical_urls[0]",
        ),
        (
            "url = \"https://example.com/hearth/support-period\"",
            "support.url",
        ),
    ] {
        let text = edited(key, &key.replace("https://", "http://"));
        one_problem(&text, field, "must use https://");
    }
}

#[test]
fn a_url_without_host_is_an_error() {
    let text = edited(
        "policy_url = \"https://example.com/security/policy\"",
        "policy_url = \"https:///policy\"",
    );
    one_problem(
        &text,
        "disclosure.policy_url",
        "not an https:// URL with a host",
    );
}

#[test]
fn end_date_before_release_date_is_an_error() {
    let text = edited("end_date = 2031-12-31", "end_date = 2026-06-30");
    one_problem(&text, "support.end_date", "on or before the release date");
}

#[test]
fn end_date_equal_to_release_date_is_an_error() {
    let text = edited("end_date = 2031-12-31", "end_date = 2026-12-01");
    one_problem(
        &text,
        "support.end_date",
        "set an end date after the release date",
    );
}

#[test]
fn without_a_release_date_the_build_date_is_used() {
    let v = parse(&edited("release_date = 2026-12-01\n", ""));
    assert_eq!(v.support.release_date, None);
    assert_eq!(v.release_date_or(TODAY), TODAY);
    v.validate().expect("valid");
}

#[test]
fn expires_in_the_past_is_an_error() {
    for days in ["0", "-3"] {
        let text = edited(
            "expires_in_days = 180",
            &format!("expires_in_days = {days}"),
        );
        one_problem(
            &text,
            "security_txt.expires_in_days",
            "would put security.txt's Expires in the past",
        );
    }
}

#[test]
fn expires_more_than_a_year_out_is_an_error() {
    let text = edited("expires_in_days = 180", "expires_in_days = 366");
    one_problem(
        &text,
        "security_txt.expires_in_days",
        "more than a year out",
    );
}

#[test]
fn expires_bounds_are_allowed() {
    for days in ["1", "365"] {
        let text = edited(
            "expires_in_days = 180",
            &format!("expires_in_days = {days}"),
        );
        assert!(problems(&text).is_empty(), "{days}");
    }
}

#[test]
fn an_empty_required_text_is_an_error() {
    for (from, field) in [
        ("name = \"Example Hearth Devices Ltd\"", "vendor.name"),
        ("name = \"Hearth Reference Hub\"", "product.name"),
        (
            "type = \"Smart-home hub (consumer connectable product)\"",
            "product.type",
        ),
        ("model = \"HRH-1\"", "product.model"),
        ("hardware_revision = \"A\"", "product.hardware_revision"),
    ] {
        let key = from.split(" = ").next().expect("key");
        one_problem(
            &edited(from, &format!("{key} = \"  \"")),
            field,
            "is empty; fill in",
        );
    }
}

#[test]
fn empty_timelines_are_errors() {
    let text = edited(
        "acknowledgement = \"We confirm that we have received your report within 5 working days.\"",
        "acknowledgement = \"\"",
    );
    one_problem(
        &text,
        "disclosure.acknowledgement",
        "when a reporter can expect an acknowledgement",
    );
    let text = edited(
        "status_updates = \"We tell you what we are doing about it at least every 30 days until the issue is resolved.\"",
        "status_updates = \"\"",
    );
    one_problem(
        &text,
        "disclosure.status_updates",
        "how often a reporter gets status updates",
    );
}

#[test]
fn an_empty_address_is_an_error() {
    let text = edited(
        "address = [\n    \"1 Example Street\",\n    \"Exampletown\",\n    \"EX1 2AB\",\n    \"United Kingdom\",\n]",
        "address = []",
    );
    one_problem(&text, "vendor.address", "the postal address is missing");
}

#[test]
fn a_line_break_in_a_value_is_an_error() {
    // It would inject a line into security.txt or os-release.
    let text = edited(
        "name = \"Hearth Reference Hub\"",
        "name = \"Hub\\nContact: mailto:evil@example.net\"",
    );
    one_problem(
        &text,
        "product.name",
        "contains a line break or control character",
    );
}

#[test]
fn a_model_that_cannot_name_the_update_board_is_an_error() {
    for bad in ["HRH 1", "1HRH", "HRH/1"] {
        let text = edited("model = \"HRH-1\"", &format!("model = \"{bad}\""));
        one_problem(
            &text,
            "product.model",
            "cannot be used as the update system's board name",
        );
    }
}

#[test]
fn an_invalid_language_tag_is_an_error() {
    let text = edited(
        "preferred_languages = [\"en\"]",
        "preferred_languages = [\"en\", \"en_GB\"]",
    );
    one_problem(
        &text,
        "disclosure.preferred_languages[1]",
        "is not a language tag",
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = edited("policy_url = \"https://", "policy_url = \"http://")
        .replace("expires_in_days = 180", "expires_in_days = 0")
        .replace("end_date = 2031-12-31", "end_date = 2020-01-01");
    let e = parse(&text).validate().expect_err("invalid");
    assert_eq!(e.problems().len(), 3);
    let s = e.to_string();
    assert!(
        s.starts_with("the vendor file vendor.toml has 3 problems; fix them"),
        "{s}"
    );
    assert_eq!(s.lines().count(), 4, "{s}");
    assert!(
        s.contains("\n  vendor.toml: `disclosure.policy_url`: "),
        "{s}"
    );
}

#[test]
fn statement_fields_are_optional_and_parsed() {
    let v = reference();
    assert_eq!(v.statement, disclosure::Statement::default());
    let v = parse(&edited(
        "# signatory_name = \"A. N. Example\"",
        "signatory_name = \"A. N. Example\"\ndate_of_issue = 2026-12-01",
    ));
    assert_eq!(v.statement.signatory_name.as_deref(), Some("A. N. Example"));
    assert_eq!(v.statement.date_of_issue, Some(date!(2026 - 12 - 01)));
}

mod signed {
    //! A vendor-signed security.txt named by `security_txt.signed_file`.
    use super::*;
    use crate::data;

    /// A vendor file beside a copy of the signed fixture, in a temp dir.
    fn with_signed(signed: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("security.txt.asc"), signed).expect("write");
        let text = edited(
            "# signed_file = \"security.txt.asc\"",
            "signed_file = \"security.txt.asc\"",
        );
        let path = dir.path().join("vendor.toml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    fn fixture() -> String {
        // Clear-signed with a throwaway key (deleted after signing); only the
        // format is checked here, as on the device.
        std::fs::read_to_string(data("signed-security.txt")).expect("fixture")
    }

    #[test]
    fn a_signed_file_is_read_relative_to_the_vendor_file_and_served_verbatim() {
        let (_dir, path) = with_signed(&fixture());
        let v = VendorFile::load(&path).expect("loads");
        v.validate().expect("valid");
        assert_eq!(v.security_txt(TODAY), fixture());
    }

    #[test]
    fn a_missing_signed_file_is_a_load_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vendor.toml");
        std::fs::write(
            &path,
            edited(
                "# signed_file = \"security.txt.asc\"",
                "signed_file = \"security.txt.asc\"",
            ),
        )
        .expect("write");
        let s = VendorFile::load(&path).expect_err("missing").to_string();
        assert!(
            s.contains("`security_txt.signed_file`: cannot read the signed security.txt"),
            "{s}"
        );
    }

    fn signed_problems(signed: &str, today: time::Date) -> Vec<String> {
        let (_dir, path) = with_signed(signed);
        let v = VendorFile::load(&path).expect("loads");
        let mut problems = v.problems();
        problems.extend(v.dated_problems(today));
        problems
            .into_iter()
            .inspect(|p| assert_eq!(p.field, "security_txt.signed_file"))
            .map(|p| p.message)
            .collect()
    }

    #[test]
    fn an_unsigned_file_is_rejected() {
        let plain = crate::reference().security_txt(TODAY);
        let p = signed_problems(&plain, TODAY);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("not an OpenPGP clear-signed message"));
    }

    #[test]
    fn a_signed_file_without_its_signature_block_is_rejected() {
        let f = fixture();
        let cut = &f[..f.find("-----BEGIN PGP SIGNATURE-----").expect("block")];
        let p = signed_problems(cut, TODAY);
        assert!(
            p[0].contains("not an OpenPGP clear-signed message"),
            "{p:?}"
        );
    }

    #[test]
    fn data_after_the_signature_is_rejected() {
        let p = signed_problems(
            &format!("{}Contact: mailto:x@example.com\n", fixture()),
            TODAY,
        );
        assert!(
            p[0].contains("not an OpenPGP clear-signed message"),
            "{p:?}"
        );
    }

    #[test]
    fn an_expired_signed_file_is_rejected() {
        let p = signed_problems(&fixture(), date!(2027 - 07 - 01));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("expired on 2027-06-30T00:00:00Z"), "{p:?}");
    }

    #[test]
    fn an_expired_signed_file_fails_the_build_but_not_the_daemon() {
        let (_dir, path) = with_signed(&fixture());
        let v = VendorFile::load(&path).expect("loads");
        let later = date!(2027 - 07 - 01);
        // The daemon's start-up check does not depend on the date...
        v.validate().expect("the daemon still starts");
        // ...the build check does,
        let e = v.validate_for_build(later).expect_err("the build fails");
        assert!(
            e.to_string()
                .contains("the signed file expired on 2027-06-30T00:00:00Z")
        );
        // and the device serves a generated file rather than an expired one.
        let served = v.security_txt(later);
        assert_ne!(served, fixture());
        assert!(
            served.contains("\nExpires: 2027-12-28T00:00:00Z\n"),
            "{served}"
        );
        // On the file's last day it still serves the signed one.
        assert_eq!(v.security_txt(date!(2027 - 06 - 30)), fixture());
    }

    #[test]
    fn a_signed_file_more_than_a_year_ahead_is_rejected() {
        let p = signed_problems(&fixture(), date!(2026 - 06 - 01));
        assert!(p[0].contains("more than a year away"), "{p:?}");
    }

    #[test]
    fn a_signed_file_without_expires_is_rejected() {
        let f = fixture().replace("Expires: 2027-06-30T00:00:00Z\n", "");
        let p = signed_problems(&f, TODAY);
        assert!(p[0].contains("has no Expires field"), "{p:?}");
    }

    #[test]
    fn a_signed_file_naming_other_contacts_is_rejected() {
        let f = fixture().replace("Contact: https://example.com/security/report\n", "");
        let p = signed_problems(&f, TODAY);
        assert!(p[0].contains("differ from disclosure.contacts"), "{p:?}");
    }
}

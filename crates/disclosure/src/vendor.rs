//! The vendor file: its shape, loading and validation.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::Date;

use crate::error::{Error, Problem};
use crate::security_txt::{self, SignedCheck};

/// Most days ahead that `security_txt.expires_in_days` may set Expires.
pub const MAX_EXPIRES_DAYS: i64 = 365;

/// The parsed vendor file. Field names match the TOML keys; see
/// `docs/disclosure.md` for what each one means.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VendorFile {
    pub vendor: Vendor,
    pub product: Product,
    pub disclosure: Disclosure,
    pub support: Support,
    pub security_txt: SecurityTxtPolicy,
    #[serde(default)]
    pub statement: Statement,
    /// Where this was loaded from, for error sentences.
    #[serde(skip)]
    pub path: PathBuf,
    /// The content of `security_txt.signed_file`, read at load time so that
    /// serving it never touches the disk.
    #[serde(skip)]
    pub signed_security_txt: Option<String>,
}

/// `[vendor]`: the manufacturer.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Vendor {
    pub name: String,
    /// Postal address, one element per line.
    pub address: Vec<String>,
    pub url: String,
    pub bug_report_url: Option<String>,
}

/// `[product]`: what the device is (5.3-16: the model designation).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub name: String,
    /// PSTI product type, e.g. "Smart-home hub".
    #[serde(rename = "type")]
    pub product_type: String,
    pub model: String,
    pub hardware_revision: String,
    pub url: Option<String>,
}

/// `[disclosure]`: how to report a vulnerability (5.2-1).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Disclosure {
    pub contacts: Vec<String>,
    pub policy_url: String,
    /// When a reporter gets an acknowledgement, in plain words.
    pub acknowledgement: String,
    /// How often a reporter gets status updates, in plain words.
    pub status_updates: String,
    #[serde(default)]
    pub preferred_languages: Vec<String>,
    pub encryption_url: Option<String>,
    pub acknowledgments_url: Option<String>,
    #[serde(default)]
    pub canonical_urls: Vec<String>,
}

/// `[support]`: the defined support period (5.3-13).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Support {
    #[serde(deserialize_with = "de_date")]
    pub end_date: Date,
    pub url: String,
    #[serde(default, deserialize_with = "de_opt_date")]
    pub release_date: Option<Date>,
}

/// `[security_txt]`: how the device's security.txt is produced.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecurityTxtPolicy {
    /// Expires is this many days after the day of serving (1..=365).
    pub expires_in_days: i64,
    /// A vendor-signed file served verbatim instead of a generated one.
    pub signed_file: Option<PathBuf>,
}

/// `[statement]`: PSTI statement-of-compliance fields the vendor fills in.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    pub signatory_name: Option<String>,
    pub signatory_function: Option<String>,
    pub place_of_issue: Option<String>,
    #[serde(default, deserialize_with = "de_opt_date")]
    pub date_of_issue: Option<Date>,
    #[serde(default)]
    pub authorised_representative: Vec<String>,
}

fn toml_date_to_date(dt: toml::value::Datetime) -> Result<Date, String> {
    match (dt.date, dt.time, dt.offset) {
        (Some(d), None, None) => time::Month::try_from(d.month)
            .ok()
            .and_then(|m| Date::from_calendar_date(i32::from(d.year), m, d.day).ok())
            .ok_or_else(|| format!("{dt} is not a calendar date")),
        _ => Err(format!(
            "expected a date without a time, like 2031-12-31, found {dt}"
        )),
    }
}

fn de_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
    let dt = toml::value::Datetime::deserialize(d)?;
    toml_date_to_date(dt).map_err(serde::de::Error::custom)
}

fn de_opt_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
    de_date(d).map(Some)
}

impl VendorFile {
    /// Reads and parses the vendor file, and reads `security_txt.signed_file`
    /// if one is named. Checks shape only; call [`VendorFile::validate`] next.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut file = Self::parse(&text, path)?;
        if let Some(signed) = file.signed_file_path() {
            let content = std::fs::read_to_string(&signed).map_err(|e| Error::Parse {
                path: path.to_owned(),
                problem: Problem::new(
                    "security_txt.signed_file",
                    format!(
                        "cannot read the signed security.txt {}: {e}. Install it beside the vendor file or remove the key to let the device generate security.txt.",
                        signed.display()
                    ),
                ),
            })?;
            file.signed_security_txt = Some(content);
        }
        Ok(file)
    }

    /// Parses vendor-file text; `path` is only used in error sentences.
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let parse_error = |problem| Error::Parse {
            path: path.to_owned(),
            problem,
        };
        let de = toml::de::Deserializer::parse(text)
            .map_err(|e| parse_error(toml_problem(text, "", &e)))?;
        let mut file: VendorFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            parse_error(toml_problem(text, &field, e.inner()))
        })?;
        file.path = path.to_owned();
        Ok(file)
    }

    /// The absolute path of `security_txt.signed_file`, if set.
    pub fn signed_file_path(&self) -> Option<PathBuf> {
        let p = self.security_txt.signed_file.as_ref()?;
        Some(match self.path.parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.clone(),
        })
    }

    /// The release date if the file sets one, else `build_date`.
    pub fn release_date_or(&self, build_date: Date) -> Date {
        self.support.release_date.unwrap_or(build_date)
    }

    /// Checks the content against the rules in `docs/disclosure.md`; all
    /// problems are reported at once. This is what the daemon runs at start.
    ///
    /// Nothing here depends on the date, on purpose: a file that passed the
    /// build check must not stop a device later, e.g. one that boots with an
    /// unset clock, or runs old firmware after a signed file's Expires. An
    /// ended support period is not a problem either: the device must keep
    /// running and say so. Date-dependent findings come from
    /// [`VendorFile::dated_problems`].
    pub fn validate(&self) -> Result<(), Error> {
        self.fail_on(self.problems())
    }

    /// The build-time check (`hearth-vendor check`): [`VendorFile::validate`]
    /// plus [`VendorFile::dated_problems`] as of `today`.
    pub fn validate_for_build(&self, today: Date) -> Result<(), Error> {
        let mut problems = self.problems();
        problems.extend(self.dated_problems(today));
        self.fail_on(problems)
    }

    fn fail_on(&self, problems: Vec<Problem>) -> Result<(), Error> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid {
                path: self.path.clone(),
                problems,
            })
        }
    }

    /// Problems that depend on `today`: a signed security.txt that has
    /// expired or expires more than a year ahead. The build fails on them;
    /// the daemon logs them (and serves a generated file instead of an
    /// expired signed one).
    pub fn dated_problems(&self, today: Date) -> Vec<Problem> {
        let Some(signed) = &self.signed_security_txt else {
            return Vec::new();
        };
        security_txt::check_signed_dates(signed, today)
            .map(|c| Problem::new("security_txt.signed_file", signed_message(&c)))
            .into_iter()
            .collect()
    }

    /// Every date-independent problem in the file (empty when valid).
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let v = &self.vendor;
        text(&mut p, "vendor.name", &v.name, "the manufacturer's name");
        if v.address.iter().all(|l| l.trim().is_empty()) {
            p.push(Problem::new(
                "vendor.address",
                "the postal address is missing; add it, one line per element, e.g. [\"1 Example Street\", \"Exampletown\"] (PSTI Schedule 4 requires it).",
            ));
        }
        for (i, line) in v.address.iter().enumerate() {
            single_line(&mut p, &format!("vendor.address[{i}]"), line);
        }
        https_url(&mut p, "vendor.url", &v.url);
        if let Some(u) = &v.bug_report_url {
            https_url(&mut p, "vendor.bug_report_url", u);
        }

        let pr = &self.product;
        text(&mut p, "product.name", &pr.name, "the product name");
        text(&mut p, "product.type", &pr.product_type, "the product type");
        text(
            &mut p,
            "product.model",
            &pr.model,
            "the model designation printed on the label",
        );
        if !pr.model.trim().is_empty() && !is_board_name(&pr.model) {
            p.push(Problem::new(
                "product.model",
                format!(
                    "\"{}\" cannot be used as the update system's board name (SWUpdate's hardware check and sw-description use the model); use letters, digits, '-' and '_', starting with a letter, e.g. \"HRH-1\".",
                    pr.model
                ),
            ));
        }
        text(
            &mut p,
            "product.hardware_revision",
            &pr.hardware_revision,
            "the hardware revision",
        );
        if let Some(u) = &pr.url {
            https_url(&mut p, "product.url", u);
        }

        let d = &self.disclosure;
        if d.contacts.is_empty() {
            p.push(Problem::new(
                "disclosure.contacts",
                "no security contact is given; add at least one, e.g. \"mailto:security@your-company.example\" or \"https://your-company.example/security/report\" (EN 303 645 5.2-1 requires a contact).",
            ));
        }
        for (i, c) in d.contacts.iter().enumerate() {
            contact(&mut p, &format!("disclosure.contacts[{i}]"), c);
        }
        https_url(&mut p, "disclosure.policy_url", &d.policy_url);
        text(
            &mut p,
            "disclosure.acknowledgement",
            &d.acknowledgement,
            "when a reporter can expect an acknowledgement, e.g. \"within 5 working days\"",
        );
        text(
            &mut p,
            "disclosure.status_updates",
            &d.status_updates,
            "how often a reporter gets status updates, e.g. \"at least every 30 days until resolved\"",
        );
        for (i, lang) in d.preferred_languages.iter().enumerate() {
            if !is_language_tag(lang) {
                p.push(Problem::new(
                    format!("disclosure.preferred_languages[{i}]"),
                    format!(
                        "\"{lang}\" is not a language tag; use RFC 5646 tags such as \"en\", \"de\" or \"pt-BR\"."
                    ),
                ));
            }
        }
        if let Some(u) = &d.encryption_url {
            https_url(&mut p, "disclosure.encryption_url", u);
        }
        if let Some(u) = &d.acknowledgments_url {
            https_url(&mut p, "disclosure.acknowledgments_url", u);
        }
        for (i, u) in d.canonical_urls.iter().enumerate() {
            https_url(&mut p, &format!("disclosure.canonical_urls[{i}]"), u);
        }

        let s = &self.support;
        https_url(&mut p, "support.url", &s.url);
        if let Some(release) = s.release_date
            && s.end_date <= release
        {
            p.push(Problem::new(
                "support.end_date",
                format!(
                    "the support period ends ({}) on or before the release date ({release}); set an end date after the release date.",
                    s.end_date
                ),
            ));
        }

        let days = self.security_txt.expires_in_days;
        if days < 1 {
            p.push(Problem::new(
                "security_txt.expires_in_days",
                format!(
                    "{days} days would put security.txt's Expires in the past; use a number from 1 to {MAX_EXPIRES_DAYS}, e.g. 180."
                ),
            ));
        } else if days > MAX_EXPIRES_DAYS {
            p.push(Problem::new(
                "security_txt.expires_in_days",
                format!(
                    "{days} days would put security.txt's Expires more than a year out (RFC 9116 recommends less than a year); use a number from 1 to {MAX_EXPIRES_DAYS}, e.g. 180."
                ),
            ));
        }
        if let Some(signed) = &self.signed_security_txt {
            for c in security_txt::check_signed(signed, &self.disclosure.contacts) {
                p.push(Problem::new("security_txt.signed_file", signed_message(&c)));
            }
        }

        let st = &self.statement;
        for (key, value) in [
            ("statement.signatory_name", &st.signatory_name),
            ("statement.signatory_function", &st.signatory_function),
            ("statement.place_of_issue", &st.place_of_issue),
        ] {
            if let Some(v) = value {
                text(&mut p, key, v, "the value, or remove the key");
            }
        }
        for (i, line) in st.authorised_representative.iter().enumerate() {
            single_line(
                &mut p,
                &format!("statement.authorised_representative[{i}]"),
                line,
            );
        }
        p
    }
}

fn signed_message(c: &SignedCheck) -> String {
    match c {
        SignedCheck::NotClearSigned => "the file is not an OpenPGP clear-signed message (it must start with \"-----BEGIN PGP SIGNED MESSAGE-----\" and end with a signature block); sign it with `gpg --clearsign` or remove the key.".to_owned(),
        SignedCheck::NoExpires => "the signed file has no Expires field; add one and sign it again.".to_owned(),
        SignedCheck::Expired(e) => format!("the signed file expired on {e}; publish a new one with a later Expires, sign it and install it (until then the device serves a generated file)."),
        SignedCheck::TooFarAhead(e) => format!("the signed file's Expires ({e}) is more than a year away; RFC 9116 recommends less than a year, so sign a new one."),
        SignedCheck::ContactsDiffer => "the signed file's Contact fields differ from disclosure.contacts; make them the same so that every surface names the same contact.".to_owned(),
    }
}

/// Turns a TOML/serde error into a sentence with a line number and a hint.
fn toml_problem(text: &str, field: &str, e: &toml::de::Error) -> Problem {
    let line = e.span().map(|s| {
        text.as_bytes()[..s.start.min(text.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    });
    let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
    let msg = e.message().trim_end_matches('\n').replace('\n', " ");
    let hint = if msg.starts_with("unknown field") {
        "remove the key or correct its spelling; the keys are listed in docs/disclosure.md"
    } else if msg.starts_with("missing field") {
        "add it; the keys are listed in docs/disclosure.md"
    } else if msg.contains("datetime") || msg.contains("date") {
        "write the date unquoted, like 2031-12-31"
    } else {
        "fix the value; the keys and their types are listed in docs/disclosure.md"
    };
    Problem::new(field, format!("{at}{msg}; {hint}."))
}

fn has_line_break(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

/// Text values end up inside security.txt, os-release and HTML; a line break
/// or other control character would inject lines, so none are allowed.
fn single_line(p: &mut Vec<Problem>, field: &str, value: &str) {
    if has_line_break(value) {
        p.push(Problem::new(
            field,
            "contains a line break or control character; write it on one line.",
        ));
    }
}

fn text(p: &mut Vec<Problem>, field: &str, value: &str, what: &str) {
    if value.trim().is_empty() {
        p.push(Problem::new(field, format!("is empty; fill in {what}.")));
    } else {
        single_line(p, field, value);
    }
}

/// A web URI as RFC 9116 wants it: `https://host/...`, no spaces.
pub(crate) fn is_https_url(u: &str) -> bool {
    let Some(rest) = u.strip_prefix("https://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty() && !u.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn https_url(p: &mut Vec<Problem>, field: &str, u: &str) {
    if u.trim().is_empty() {
        p.push(Problem::new(
            field,
            "is empty; give an https:// URL.".to_owned(),
        ));
    } else if u.starts_with("http://") {
        p.push(Problem::new(
            field,
            format!("\"{u}\" uses http://; web URIs must use https:// (RFC 9116 §2.5.3), so change it to https://."),
        ));
    } else if !is_https_url(u) {
        p.push(Problem::new(
            field,
            format!("\"{u}\" is not an https:// URL with a host and without spaces; write it like \"https://example.com/security\"."),
        ));
    }
}

fn contact(p: &mut Vec<Problem>, field: &str, c: &str) {
    if let Some(addr) = c.strip_prefix("mailto:") {
        let ok = addr
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
            && !addr.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            p.push(Problem::new(
                field,
                format!("\"{c}\" is not a valid mailto: address; write it like \"mailto:security@example.com\"."),
            ));
        }
    } else if c.starts_with("https://") || c.starts_with("http://") {
        https_url(p, field, c);
    } else {
        p.push(Problem::new(
            field,
            format!("\"{c}\" is neither a mailto: nor an https: URI; write \"mailto:security@example.com\" or \"https://example.com/security/report\"."),
        ));
    }
}

/// The model doubles as SWUpdate's board name (`/etc/hwrevision`,
/// sw-description), where it is a libconfig setting name.
fn is_board_name(model: &str) -> bool {
    let mut chars = model.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A syntax check for RFC 5646 tags, enough to catch typos such as
/// "english" or "en_GB": a 2–3 letter primary language subtag (longer ones
/// are reserved or unused in practice) followed by 1–8 character
/// alphanumeric subtags.
pub(crate) fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let first = parts.next().unwrap_or("");
    matches!(first.len(), 2 | 3)
        && first.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|s| (1..=8).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags() {
        for ok in ["en", "de", "pt-BR", "zh-Hant-TW", "gsw", "es-419"] {
            assert!(is_language_tag(ok), "{ok}");
        }
        for bad in ["", "english", "en_GB", "e", "en-", "en-toolongsubtag", "1a"] {
            assert!(!is_language_tag(bad), "{bad}");
        }
    }

    #[test]
    fn https_urls() {
        assert!(is_https_url("https://example.com"));
        assert!(is_https_url("https://example.com/a?b#c"));
        assert!(!is_https_url("https://"));
        assert!(!is_https_url("https:///path"));
        assert!(!is_https_url("http://example.com"));
        assert!(!is_https_url("https://example.com/a b"));
    }
}

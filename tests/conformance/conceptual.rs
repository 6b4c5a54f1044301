//! Conceptual test cases (TS 103 701 "-1" cases), as far as a machine can
//! do them: the vendor's ICS and IXIT (ics.rs, generated from the vendor
//! file, the shipped configuration and the code) are compared with what the
//! device under test actually does. The judgement TS 103 701 leaves to the
//! assessor ("is this generator adequate?") is not automated; what is
//! automated is that the documents do not promise something the device does
//! not do.

use serde_json::json;

use crate::dut::{Dut, exchange};
use crate::functional::{Owner, strip_tags};
use crate::ics::Documents;
use crate::report::{Case, excerpt};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// "2031-12-31" -> "31 December 2031" (how the device's pages write dates).
fn long_date(iso: &str) -> Option<String> {
    let mut p = iso.split('-');
    let (y, m, d) = (p.next()?, p.next()?.parse::<usize>().ok()?, p.next()?);
    let day: u32 = d.parse().ok()?;
    Some(format!("{day} {} {y}", MONTHS.get(m.checked_sub(1)?)?))
}

fn unescape(html: &str) -> String {
    html.replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn session(dut: &Dut, password: &str) -> (Option<(String, String)>, String) {
    let body = json!({ "password": password }).to_string();
    let answer = dut.call("POST", "/api/login", &[], Some(&body));
    let evidence = exchange("POST", "/api/login", &answer);
    let s = answer.ok().and_then(|r| {
        let cookie = r.session_cookie()?;
        let csrf = r.json()["csrf_token"].as_str()?.to_owned();
        Some((cookie, csrf))
    });
    (s, evidence)
}

fn change(
    dut: &Dut,
    (cookie, csrf): &(String, String),
    current: &str,
    new: &str,
) -> Result<system_tests::https::Response, String> {
    let body = json!({ "current_password": current, "password": new, "password_confirm": new })
        .to_string();
    dut.call(
        "POST",
        "/api/password",
        &[("Cookie", cookie), ("X-CSRF-Token", csrf)],
        Some(&body),
    )
}

/// A password of exactly `len` characters, not in any blocklist.
fn password_of(len: usize) -> String {
    "conformance-length-probe-"
        .chars()
        .cycle()
        .take(len)
        .collect()
}

/// 5.1-1-1 / 5.1-4-1 against IXIT 1-AuthMech: the declared password rules
/// are the device's.
pub fn case_password_rules(dut: &Dut, docs: &Documents, owner: &Owner) -> Case {
    let mut case = Case::new(
        "5.1-1-1",
        "EN 303 645 5.1-1, 5.1-4 (IXIT 1-AuthMech)",
        "The declared password rules are the device's",
        "TS 103 701 5.1-1-1 and 5.1-4-1 check the documented authentication mechanism (IXIT \
         1-AuthMech). Here the IXIT's declared minimum password length is compared with the \
         device: what it reports, and what it refuses and accepts.",
    );
    let min = docs.password_min;
    let state = dut.call("GET", "/api/state", &[], None);
    let reported = state
        .as_ref()
        .ok()
        .and_then(|r| r.json()["password_min_length"].as_u64());
    case.check(
        "declared minimum = the device's",
        reported == Some(min as u64),
        &format!(
            "the IXIT declares a minimum of {min} characters; GET /api/state reports {reported:?}"
        ),
        vec![exchange("GET", "/api/state", &state)],
    );
    let Some(password) = owner.password.clone() else {
        case.not_tested(
            "one character shorter is refused, the minimum is accepted",
            "the suite does not know the owner's password",
        );
        return case;
    };
    let (s, login_evidence) = session(dut, &password);
    let Some(s) = s else {
        case.check(
            "one character shorter is refused, the minimum is accepted",
            false,
            "the owner's password did not log in",
            vec![login_evidence],
        );
        return case;
    };
    let short = password_of(min - 1);
    let exact = password_of(min);
    let ok =
        |r: &Result<system_tests::https::Response, String>| matches!(r, Ok(r) if r.status == 200);
    // Track the password the device has now: on a weakened device the short
    // one is accepted, and the owner's password must still be put back.
    let mut current = password.clone();
    let refused = change(dut, &s, &current, &short);
    if ok(&refused) {
        current = short.clone();
    }
    let accepted = change(dut, &s, &current, &exact);
    let accepted_ok = ok(&accepted);
    if accepted_ok {
        current = exact.clone();
    }
    let mut evidence = vec![
        format!(
            "change to {} characters:\n{}",
            min - 1,
            exchange("POST", "/api/password", &refused)
        ),
        format!(
            "change to {min} characters:\n{}",
            exchange("POST", "/api/password", &accepted)
        ),
    ];
    // Put the owner's password back (a change may end the session: log in again then).
    if current != password {
        let back = match change(dut, &s, &current, &password) {
            Ok(r) if r.status == 200 => Ok(r),
            _ => match session(dut, &current).0 {
                Some(s2) => change(dut, &s2, &current, &password),
                None => Err("no session with the changed password".to_owned()),
            },
        };
        evidence.push(format!(
            "the owner's password put back:\n{}",
            exchange("POST", "/api/password", &back)
        ));
        if !ok(&back) {
            evidence.push(format!(
                "THE OWNER'S PASSWORD IS NOW {current:?}; later cases will not log in"
            ));
        }
    }
    case.check(
        "one character shorter is refused, the minimum is accepted",
        matches!(&refused, Ok(r) if (400..500).contains(&r.status) && r.body.contains("too_short"))
            && accepted_ok,
        &format!(
            "a new password of {} characters is refused as too short, one of {min} is accepted: the device's \
             minimum is exactly the declared one",
            min - 1
        ),
        evidence,
    );
    case
}

/// 5.2-1-1 against IXIT 2-UserInfo: the declared contacts and timelines are
/// what the device publishes.
pub fn case_disclosure(dut: &Dut, docs: &Documents) -> Case {
    let mut case = Case::new(
        "5.2-1-1",
        "EN 303 645 5.2-1 (IXIT 2-UserInfo)",
        "The declared disclosure policy is the one published",
        "TS 103 701 5.2-1-1 checks that the policy has contact information and timelines for \
         acknowledgement and status updates. Here each contact, the policy URL and both timelines \
         declared in the IXIT must appear in what the device serves without an account.",
    );
    let txt = dut.call("GET", "/.well-known/security.txt", &[], None);
    let page = dut.call("GET", "/security", &[], None);
    let txt_body = txt.as_ref().map(|r| r.body.clone()).unwrap_or_default();
    let page_text = unescape(&strip_tags(
        &page.as_ref().map(|r| r.body.clone()).unwrap_or_default(),
    ));
    let mut evidence = Vec::new();
    let mut ok = !docs.contacts.is_empty();
    for c in &docs.contacts {
        let found = txt_body
            .lines()
            .any(|l| l.trim() == format!("Contact: {c}"));
        ok &= found;
        evidence.push(format!("security.txt Contact: {c}: {found}"));
    }
    let policy = txt_body
        .lines()
        .any(|l| l.trim() == format!("Policy: {}", docs.policy_url));
    ok &= policy;
    evidence.push(format!(
        "security.txt Policy: {}: {policy}",
        docs.policy_url
    ));
    for (name, text) in [
        ("acknowledgement", &docs.acknowledgement),
        ("status updates", &docs.status_updates),
    ] {
        let found = page_text.contains(text.as_str());
        ok &= found;
        evidence.push(format!(
            "/security states the {name} timeline {text:?}: {found}"
        ));
    }
    case.check(
        "IXIT contacts and timelines published",
        ok,
        "every declared contact is a Contact line of security.txt, the declared policy URL its Policy line, \
         and both declared timelines are on the Security page, word for word",
        evidence,
    );
    case
}

/// 5.3-13-1 against IXIT 9-ReplSup: the declared end date is the device's.
pub fn case_support_period(dut: &Dut, docs: &Documents, os_release: Option<&str>) -> Case {
    let mut case = Case::new(
        "5.3-13-1",
        "EN 303 645 5.3-13 (IXIT 9-ReplSup, 2-UserInfo)",
        "The declared support period is the one published",
        "TS 103 701 5.3-13-1 checks that the support period is published and understandable. Here the \
         end date declared in the IXIT must be the one the device states on its Security page \
         (without an account) and in /etc/os-release (SUPPORT_END).",
    );
    let end = &docs.support_end;
    let long = long_date(end).unwrap_or_default();
    let page = dut.call("GET", "/security", &[], None);
    let text = strip_tags(&page.as_ref().map(|r| r.body.clone()).unwrap_or_default());
    let on_page = !long.is_empty() && (text.contains(&long) || text.contains(end.as_str()));
    let mut evidence = vec![format!(
        "IXIT: {end}; /security states {long:?} or {end:?}: {on_page}"
    )];
    let mut ok = on_page;
    match os_release {
        Some(os) => {
            let line = os
                .lines()
                .find(|l| l.starts_with("SUPPORT_END="))
                .unwrap_or("(no SUPPORT_END)");
            let same = line == format!("SUPPORT_END={end}");
            ok &= same;
            evidence.push(format!("the image's /usr/lib/os-release: {line}: {same}"));
        }
        None => evidence.push("the image's os-release could not be read".to_owned()),
    }
    case.check(
        "IXIT end date = the device's",
        ok,
        "the declared end of the support period is the date on the Security page and in os-release",
        evidence,
    );
    case
}

/// 5.3-16-1 against IXIT 2-UserInfo: the declared model designation.
pub fn case_model(dut: &Dut, docs: &Documents) -> Case {
    let mut case = Case::new(
        "5.3-16-1",
        "EN 303 645 5.3-16 (IXIT 2-UserInfo)",
        "The declared model designation is the device's",
        "TS 103 701 5.3-16-1 checks that the model designation is documented and obtainable. Here \
         the model and hardware revision declared in the IXIT are compared with what the device \
         reports without an account.",
    );
    let state = dut.call("GET", "/api/state", &[], None);
    let product = state
        .as_ref()
        .map(|r| r.json()["product"].clone())
        .unwrap_or_default();
    let ok = product["model"] == docs.model.as_str()
        && product["hardware_revision"] == docs.hardware_revision.as_str();
    case.check(
        "IXIT model = the device's",
        ok,
        &format!(
            "the IXIT declares model {} revision {}; GET /api/state reports the same",
            docs.model, docs.hardware_revision
        ),
        vec![exchange("GET", "/api/state", &state)],
    );
    case
}

/// 4-1-1 (EN 303 645 5.0-1): every recommendation the ICS does not support
/// has a justification. Also lists the mandatory provisions the ICS says
/// are not (fully) met, without a verdict: that is the honest state of the
/// product, and their functional cases decide.
pub fn case_justifications(docs: &Documents) -> Case {
    let mut case = Case::new(
        "4-1-1",
        "EN 303 645 5.0-1 (M)",
        "Every recommendation not applied is justified",
        "TS 103 701 4-1-1: for each recommendation in the ICS that is not supported or not applicable, \
         a justification is recorded.",
    );
    let missing: Vec<String> = docs
        .ics
        .iter()
        .filter(|r| r.status.starts_with('R') && r.support != "Y")
        .filter(|r| r.detail.trim().is_empty() || r.detail.starts_with("NO ENTRY"))
        .map(|r| r.id.clone())
        .collect();
    let not_supported: Vec<String> = docs
        .ics
        .iter()
        .filter(|r| r.status.starts_with('R') && r.support != "Y")
        .map(|r| format!("{} {}: {}", r.id, r.support, excerpt(&r.detail, 160)))
        .collect();
    case.check(
        "justifications",
        missing.is_empty(),
        &format!(
            "{} recommendation(s) are not supported or not applicable, each with its justification in the ICS{}",
            not_supported.len(),
            if missing.is_empty() {
                String::new()
            } else {
                format!("; WITHOUT one: {}", missing.join(", "))
            }
        ),
        not_supported,
    );
    let mandatory: Vec<String> = docs
        .ics
        .iter()
        .filter(|r| {
            r.status.starts_with('M') && (r.support != "Y" || r.detail.starts_with("Partly"))
        })
        .map(|r| format!("{} {}: {}", r.id, r.support, excerpt(&r.detail, 160)))
        .collect();
    case.informative(
        "mandatory provisions declared not (fully) met",
        &format!(
            "informative: the ICS, generated from docs/compliance.md, declares {} mandatory provision(s) not or only \
             partly met, as docs/compliance.md states. Their verdicts come from their own test cases.",
            mandatory.len()
        ),
        mandatory,
    );
    case
}

#[test]
fn dates_read_like_the_pages() {
    assert_eq!(long_date("2031-12-31").as_deref(), Some("31 December 2031"));
    assert_eq!(long_date("2027-01-05").as_deref(), Some("5 January 2027"));
    assert_eq!(password_of(15).chars().count(), 15);
}

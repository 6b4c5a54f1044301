//! Functional test cases (TS 103 701 "-2" cases), run through the device's
//! HTTPS port and serial console only, as an assessor would.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::dut::{Dut, exchange};
use crate::report::{Case, excerpt};

/// The passwords the suite sets: long enough for the 15-character minimum,
/// and without the characters hydra's form module cannot send (hydra.rs).
pub const FIRST_PASSWORD: &str = "conformance-first-owner-passphrase";
pub const SECOND_PASSWORD: &str = "conformance-changed-owner-passphrase";

/// What earlier cases leave for later ones.
#[derive(Default)]
pub struct Owner {
    /// The owner's current password, once known.
    pub password: Option<String>,
    /// (cookie, csrf) of a logged-in session.
    pub session: Option<(String, String)>,
    /// The password the DUT had before the suite changed it (HEARTH_DUT).
    pub original: Option<String>,
    /// The claim's Set-Cookie line, token redacted.
    pub session_cookie_line: Option<String>,
}

pub fn setup_code(console: &str) -> Option<String> {
    system_tests::console_setup_code(console)
}

fn status_of(dut: &Dut) -> Option<String> {
    dut.call("GET", "/api/state", &[], None)
        .ok()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
        .and_then(|v| v["status"].as_str().map(str::to_owned))
}

fn login(dut: &Dut, password: &str) -> Result<system_tests::https::Response, String> {
    let body = json!({ "password": password }).to_string();
    dut.call("POST", "/api/login", &[], Some(&body))
}

/// 5.1-1-2: no password works before the owner sets one, and the owner must
/// set one (with the device's own setup code) before anything else works.
pub fn case_5_1_1(dut: &Dut, owner: &mut Owner) -> Case {
    let mut case = Case::new(
        "5.1-1-2",
        "EN 303 645 5.1-1 (M)",
        "No universal default password; the password is set before use",
        "Where passwords are used, outside the factory default state every password is unique per \
         device or defined by the user. TS 103 701 5.1-1-2: look for interfaces that accept a \
         default or empty password, and check that a user-defined password must be set before the \
         device can be used.",
    );
    let state = status_of(dut);
    if state.as_deref() != Some("unclaimed") {
        case.not_tested(
            "5.1-1-2a/b (factory state)",
            &format!(
                "the device is not in its factory state (status {state:?}); run the suite on a fresh or factory-reset device"
            ),
        );
        if let Some(p) = dut.known_password.clone() {
            owner.password = Some(p.clone());
            owner.original = Some(p);
        }
        return case;
    }

    // a) every protected API call and page refuses before the claim.
    let protected: &[(&str, &str, Option<&str>)] = &[
        ("GET", "/api/dashboard", None),
        ("GET", "/api/settings", None),
        ("GET", "/api/session", None),
        ("PUT", "/api/plug", Some(r#"{"on":true}"#)),
        (
            "PUT",
            "/api/settings",
            Some(r#"{"automatic_updates":false}"#),
        ),
        (
            "POST",
            "/api/password",
            Some(r#"{"current_password":"","password":"x","password_confirm":"x"}"#),
        ),
        ("POST", "/api/logout", None),
    ];
    let mut evidence = Vec::new();
    let mut ok = true;
    for (method, path, body) in protected {
        let answer = dut.call(method, path, &[], *body);
        ok &= matches!(&answer, Ok(r) if r.status == 403 && r.body.contains("not_set_up"));
        evidence.push(exchange(method, path, &answer));
    }
    for path in ["/", "/settings", "/login"] {
        let answer = dut.call("GET", path, &[], None);
        ok &= matches!(&answer, Ok(r) if (300..400).contains(&r.status)
            && r.headers.contains("location: /setup"));
        evidence.push(exchange("GET", path, &answer));
    }
    case.check(
        "5.1-1-2a protected interfaces refuse before setup",
        ok,
        "every protected API call answers 403 not_set_up, every protected page redirects to /setup",
        evidence,
    );

    // b) no default or empty password logs in.
    let mut evidence = Vec::new();
    let mut ok = true;
    for guess in ["", "admin", "password", "1234", "hearth", "default"] {
        let answer = login(dut, guess);
        ok &= matches!(&answer, Ok(r) if r.status != 200 && r.session_cookie().is_none());
        evidence.push(format!(
            "login with {guess:?}:\n{}",
            exchange("POST", "/api/login", &answer)
        ));
    }
    case.check(
        "5.1-1-2a no default or empty password",
        ok,
        "login with an empty or common default password gets no session",
        evidence,
    );

    // c) the password must be set, and only with the device's setup code.
    let console = dut.console();
    let code = console
        .as_deref()
        .and_then(setup_code)
        .or_else(|| std::env::var("HEARTH_DUT_SETUP_CODE").ok());
    let Some(code) = code else {
        case.not_tested(
            "5.1-1-2b password set before use",
            "no setup code: the suite sees no console (set HEARTH_DUT_CONSOLE or HEARTH_DUT_SETUP_CODE)",
        );
        return case;
    };
    let mut evidence = Vec::new();
    let claim = |code: &str, password: &str| {
        let body =
            json!({ "setup_code": code, "password": password, "password_confirm": password })
                .to_string();
        dut.call("POST", "/api/setup", &[], Some(&body))
    };
    let no_code = claim("", FIRST_PASSWORD);
    evidence.push(format!(
        "claim without the setup code:\n{}",
        exchange("POST", "/api/setup", &no_code)
    ));
    let empty_password = claim(&code, "");
    evidence.push(format!(
        "claim with the right setup code and an empty password:\n{}",
        exchange("POST", "/api/setup", &empty_password)
    ));
    let still = status_of(dut);
    evidence.push(format!("status afterwards: {still:?}"));
    let claimed = claim(&code, FIRST_PASSWORD);
    evidence.push(format!(
        "claim with the setup code and a new password:\n{}",
        exchange("POST", "/api/setup", &claimed)
    ));
    let session = claimed.as_ref().ok().and_then(|r| {
        let cookie = r.session_cookie()?;
        let csrf = serde_json::from_str::<serde_json::Value>(&r.body).ok()?["csrf_token"]
            .as_str()?
            .to_owned();
        Some((cookie, csrf))
    });
    let ok = matches!(&no_code, Ok(r) if r.status != 201)
        && matches!(&empty_password, Ok(r) if r.status != 201)
        && still.as_deref() == Some("unclaimed")
        && matches!(&claimed, Ok(r) if r.status == 201)
        && session.is_some();
    case.check(
        "5.1-1-2b the owner sets the password before use",
        ok,
        "a claim without the setup code or with an empty password is refused and leaves the device unclaimed; \
         the claim with the console's setup code and a password succeeds",
        evidence,
    );
    if let Ok(r) = &claimed {
        // The cookie's attributes are the session crypto's visible part (5.1-3).
        let set_cookie: Vec<&str> = r
            .raw_headers
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
            .collect();
        owner.session_cookie_line = set_cookie.first().map(|l| redact_cookie(l));
    }
    owner.password = Some(FIRST_PASSWORD.to_owned());
    owner.session = session;
    case
}

fn redact_cookie(line: &str) -> String {
    // The token is a secret; keep its name and attributes.
    match line.split_once('=') {
        Some((name, rest)) => {
            let attrs = rest.split_once(';').map_or("", |(_, a)| a);
            format!("{name}=<redacted>;{attrs}")
        }
        None => line.to_owned(),
    }
}

/// 5.1-2-2: the setup code (the one pre-installed unique secret) from the console.
pub fn case_5_1_2(dut: &Dut) -> Case {
    let mut case = Case::new(
        "5.1-2-2",
        "EN 303 645 5.1-2 (M)",
        "Pre-installed unique secret resists automated attacks",
        "Pre-installed unique-per-device passwords are generated so that they do not follow \
         obvious patterns and are not derived from public information (MAC address, serial, \
         model, name); TS 103 701 5.1-2-2 compares real samples with the documented generator.",
    );
    let Some(console) = dut.console() else {
        case.not_tested(
            "5.1-2-2a setup code format",
            "the suite sees no console for this DUT",
        );
        return case;
    };
    let Some(code) = setup_code(&console) else {
        case.not_tested(
            "5.1-2-2a setup code format",
            "the console shows no setup code (the device was already claimed when the console was captured)",
        );
        return case;
    };
    const ALPHABET: &str = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let symbols: Vec<char> = code.chars().filter(|c| *c != '-').collect();
    let distinct = {
        let mut s = symbols.clone();
        s.sort_unstable();
        s.dedup();
        s.len()
    };
    let longest_run = longest_sequential_run(&symbols, ALPHABET);
    let format_ok = symbols.len() == 10 && symbols.iter().all(|c| ALPHABET.contains(*c));
    let bits = symbols.len() as f64 * (ALPHABET.len() as f64).log2();
    case.check(
        "5.1-2-2a format and entropy",
        format_ok && bits >= 50.0 && distinct >= 4 && longest_run < 5,
        "the documented generator: 10 symbols of a 32-symbol alphabet (50 bits) from the OS random source, \
         no degenerate draws (the sample must have >= 4 distinct symbols and no run of 5 in alphabet order)",
        vec![
            format!("console: hearthd: SETUP CODE {}", mask(&code)),
            format!(
                "{} symbols, all in the alphabet: {format_ok}; {bits:.0} bits; {distinct} distinct; longest run in alphabet order {longest_run}",
                symbols.len()
            ),
        ],
    );
    // b) no relation to what an attacker can see: model, hardware revision,
    // certificate fingerprint, QEMU's MAC, firmware version.
    let mut public: Vec<String> = Vec::new();
    if let Ok(r) = dut.call("GET", "/api/state", &[], None)
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.body)
    {
        for key in ["model", "hardware_revision", "name", "vendor"] {
            if let Some(s) = v["product"][key].as_str() {
                public.push(s.to_owned());
            }
        }
        if let Some(s) = v["firmware_version"].as_str() {
            public.push(s.to_owned());
        }
    }
    if let Ok(r) = dut.call("GET", "/healthz", &[], None) {
        public.push(r.fingerprint.replace(':', ""));
    }
    public.push("525400123456".to_owned()); // QEMU's default MAC 52:54:00:12:34:56
    let compact: String = symbols.iter().collect();
    let related: Vec<&String> = public
        .iter()
        .filter(|p| {
            let p: String = p
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_ascii_uppercase();
            // Any 4-symbol piece of the code inside a public value, or the reverse.
            compact
                .as_bytes()
                .windows(4)
                .any(|w| p.contains(std::str::from_utf8(w).unwrap_or("")))
                || (p.len() >= 4
                    && p.as_bytes()
                        .windows(4)
                        .any(|w| compact.contains(std::str::from_utf8(w).unwrap_or("-"))))
        })
        .collect();
    case.check(
        "5.1-2-2b no relation to public information",
        related.is_empty(),
        "no 4-symbol piece of the code appears in the model, hardware revision, product or vendor name, \
         firmware version, certificate fingerprint or MAC address (one sample; several fresh boots are \
         compared by tests/system's unique-setup-code test, not by this suite)",
        vec![format!("public values compared: {}; matches: {related:?}", public.len())],
    );
    case
}

/// The code with its middle hidden: the report is kept as a CI artifact,
/// and a valid code of a live device (HEARTH_DUT) must not land in one.
fn mask(code: &str) -> String {
    code.chars()
        .enumerate()
        .map(|(i, c)| if c == '-' || i < 2 { c } else { '*' })
        .collect()
}

fn longest_sequential_run(symbols: &[char], alphabet: &str) -> usize {
    let pos: Vec<Option<usize>> = symbols.iter().map(|c| alphabet.find(*c)).collect();
    let (mut best, mut up, mut down) = (1, 1, 1);
    for w in pos.windows(2) {
        match (w[0], w[1]) {
            (Some(a), Some(b)) if b == a + 1 => (up, down) = (up + 1, 1),
            (Some(a), Some(b)) if a == b + 1 => (up, down) = (1, down + 1),
            _ => (up, down) = (1, 1),
        }
        best = best.max(up).max(down);
    }
    best
}

/// 5.1-3-2: TLS versions on the wire, the session cookie, and the password hash (documented).
pub fn case_5_1_3(dut: &Dut, owner: &Owner) -> Case {
    let mut case = Case::new(
        "5.1-3-2",
        "EN 303 645 5.1-3 (M)",
        "Best-practice cryptography for authentication",
        "Authentication mechanisms use best-practice cryptography for the technology, risk and \
         usage; TS 103 701 5.1-3-2 checks on the device that it really uses it (sniff, try a \
         downgrade).",
    );
    let target = dut.addr.to_string();
    let mut evidence = Vec::new();
    let mut ok = true;
    for (flag, want) in [("-tls1_3", true), ("-tls1_2", true)] {
        let (accepted, lines) = s_client(&target, flag, &[]);
        ok &= accepted == want;
        evidence.push(format!(
            "openssl s_client {flag}: {}\n{lines}",
            if accepted {
                "handshake completed"
            } else {
                "refused"
            }
        ));
    }
    case.check(
        "5.1-3-2a TLS 1.3 and 1.2 are offered",
        ok,
        "a client limited to TLS 1.3, and one limited to TLS 1.2, both complete a handshake",
        evidence,
    );
    // OpenSSL 3 refuses TLS 1.0/1.1 by itself at security level 2, which
    // would prove nothing about the server: level 0 makes it really offer them.
    let mut evidence = Vec::new();
    let mut ok = true;
    let mut inconclusive = false;
    for flag in ["-tls1_1", "-tls1"] {
        let (accepted, lines) = s_client(&target, flag, &["-cipher", "DEFAULT@SECLEVEL=0"]);
        // rustls answers an old version with a handshake_failure alert.
        let server_refused = lines.contains("alert protocol version")
            || lines.contains("alert handshake failure")
            || lines.contains("unsupported protocol")
            || lines.contains("wrong version number");
        inconclusive |= lines.contains("no protocols available");
        ok &= !accepted && server_refused;
        evidence.push(format!(
            "openssl s_client {flag} -cipher DEFAULT@SECLEVEL=0: {}\n{lines}",
            if accepted {
                "HANDSHAKE COMPLETED"
            } else {
                "refused"
            }
        ));
    }
    if inconclusive {
        case.unit(
            "5.1-3-2b TLS 1.1 and 1.0 are refused",
            crate::report::Verdict::NotTested,
            "this host's OpenSSL would not offer TLS 1.0/1.1 at all, so a refusal proves nothing; testssl.sh's own sockets check it below",
            evidence,
        );
    } else {
        case.check(
            "5.1-3-2b TLS 1.1 and 1.0 are refused",
            ok,
            "a client that offers only TLS 1.1, or only TLS 1.0 (OpenSSL at security level 0, so it really offers them), gets a fatal alert from the device (protocol_version or handshake_failure) and no session",
            evidence,
        );
    }
    match &owner.session_cookie_line {
        Some(line) => {
            let l = line.to_ascii_lowercase();
            case.check(
                "5.1-3-2c session cookie",
                line.contains("__Host-") && l.contains("httponly") && l.contains("secure") && l.contains("samesite=strict"),
                "the session token travels in a __Host- cookie marked HttpOnly, Secure and SameSite=Strict",
                vec![line.clone()],
            );
        }
        None => case.not_tested(
            "5.1-3-2c session cookie",
            "the suite did not claim this device, so it saw no new session cookie",
        ),
    }
    let documented = std::fs::read_to_string(system_tests::repo_root().join("docs/compliance.md"))
        .unwrap_or_default();
    case.unit(
        "5.1-3-2d password hashing (conceptual)",
        crate::report::Verdict::Informative,
        &format!(
            "a conceptual unit, not a functional one: not observable from outside the device; the stored hash is argon2id (m = 19 MiB, t = 2, p = 1) per \
             docs/compliance.md (mentions argon2id: {}); the IXIT sheet 1-AuthMech that should state it is not generated yet",
            documented.contains("argon2id")
        ),
        Vec::new(),
    );
    case
}

/// `openssl s_client` against `target` with one version flag; (handshake completed, output excerpt).
fn s_client(target: &str, version: &str, extra: &[&str]) -> (bool, String) {
    let out = Command::new("timeout")
        .args([
            "30",
            "openssl",
            "s_client",
            "-connect",
            target,
            "-servername",
            "hearth.local",
            version,
        ])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output();
    let Ok(out) = out else {
        return (false, "could not run openssl".to_owned());
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let accepted = text.lines().any(|l| {
        let l = l.trim();
        (l.starts_with("New, TLSv1") || l.starts_with("Protocol  :") || l.starts_with("Cipher is"))
            && !l.contains("(NONE)")
    }) && !text.contains("Cipher is (NONE)");
    let picked: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("New, ")
                || l.contains("Protocol")
                || l.contains("alert")
                || l.contains("error")
                || l.contains("Server public key")
                || l.contains("Peer signature type")
                || l.contains("no protocols")
                || l.contains("Cipher is")
        })
        .take(8)
        .collect();
    (accepted, picked.join("\n"))
}

/// 5.1-4-2: after a change, the old password fails and the new one works.
pub fn case_5_1_4(dut: &Dut, owner: &mut Owner) -> Case {
    let mut case = Case::new(
        "5.1-4-2",
        "EN 303 645 5.1-4 (M)",
        "A simple way to change the password",
        "The device provides a simple mechanism to change the authentication value; TS 103 701 \
         5.1-4-2: after a change, the old value no longer works and the new one does.",
    );
    let Some(current) = owner.password.clone() else {
        case.not_tested("5.1-4-2a change", "the suite does not know the owner's password (set HEARTH_DUT_PASSWORD for a claimed DUT)");
        return case;
    };
    let new = if current == SECOND_PASSWORD {
        FIRST_PASSWORD
    } else {
        SECOND_PASSWORD
    };
    let mut evidence = Vec::new();
    let session = match owner.session.clone() {
        Some(s) => Some(s),
        None => {
            let answer = login(dut, &current);
            evidence.push(exchange("POST", "/api/login", &answer));
            answer.ok().and_then(|r| {
                let cookie = r.session_cookie()?;
                let csrf = r.json()["csrf_token"].as_str()?.to_owned();
                Some((cookie, csrf))
            })
        }
    };
    let Some((cookie, csrf)) = session else {
        case.check(
            "5.1-4-2a change",
            false,
            "the owner's password did not log in",
            evidence,
        );
        return case;
    };
    let body = json!({ "current_password": current, "password": new, "password_confirm": new })
        .to_string();
    let changed = dut.call(
        "POST",
        "/api/password",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        Some(&body),
    );
    evidence.push(format!(
        "change password (session cookie + CSRF token):\n{}",
        exchange("POST", "/api/password", &changed)
    ));
    let old = login(dut, &current);
    evidence.push(format!(
        "login with the old password:\n{}",
        exchange("POST", "/api/login", &old)
    ));
    let fresh = login(dut, new);
    evidence.push(format!(
        "login with the new password:\n{}",
        exchange("POST", "/api/login", &fresh)
    ));
    let changed_ok = matches!(&changed, Ok(r) if r.status == 200);
    let old_refused = matches!(&old, Ok(r) if r.status == 401 && r.session_cookie().is_none());
    let new_works = matches!(&fresh, Ok(r) if r.status == 200 && r.session_cookie().is_some());
    if changed_ok {
        owner.password = Some(new.to_owned());
        owner.session = None;
    }
    case.check(
        "5.1-4-2a old fails, new works",
        changed_ok && old_refused && new_works,
        "POST /api/password with the current password succeeds; afterwards the old password gets 401 and the new one a session",
        evidence,
    );
    case
}

/// 5.1-5-2: a brute-force attempt over the network meets the throttle.
pub fn case_5_1_5(dut: &Dut, owner: &Owner) -> Case {
    const MAX_TRIES: usize = 16;
    const MIN_BLOCK_SECS: u64 = 4;
    let mut case = Case::new(
        "5.1-5-2",
        "EN 303 645 5.1-5 (M)",
        "Brute force over the network is impracticable",
        "For authentication over network interfaces, brute-force attacks are made impracticable \
         (delays, limits, lockout); TS 103 701 5.1-5-2 attempts one.",
    );
    let Some(password) = owner.password.clone() else {
        case.not_tested("5.1-5-2a throttle", "the suite does not know the owner's password, so it cannot show the owner gets back in");
        return case;
    };
    let started = Instant::now();
    let mut evidence = Vec::new();
    let mut first_block = None;
    let mut block = None;
    for i in 1..=MAX_TRIES {
        let t = Instant::now();
        let answer = login(dut, &format!("wrong guess number {i} for the owner"));
        let retry: Option<u64> = answer
            .as_ref()
            .ok()
            .filter(|r| r.status == 429)
            .and_then(|r| {
                r.headers
                    .lines()
                    .find_map(|l| l.strip_prefix("retry-after:"))
                    .and_then(|v| v.trim().parse().ok())
            });
        evidence.push(match &answer {
            Ok(r) => format!(
                "try {i}: {} {}{} ({:.1} s)",
                r.status,
                r.headers
                    .lines()
                    .find(|l| l.starts_with("retry-after:"))
                    .unwrap_or(""),
                if r.status == 429 {
                    format!(" {}", excerpt(&r.body, 120))
                } else {
                    String::new()
                },
                t.elapsed().as_secs_f64()
            ),
            Err(e) => format!("try {i}: error {e}"),
        });
        let Some(wait) = answer
            .as_ref()
            .ok()
            .filter(|r| r.status == 429)
            .map(|_| retry)
        else {
            continue;
        };
        first_block.get_or_insert((i, wait));
        // The right password goes in during a block long enough that the
        // request surely arrives before it ends (a TLS handshake under
        // emulation takes a second or two): the delays double, so guess
        // on after each short block.
        match wait {
            Some(secs) if secs >= MIN_BLOCK_SECS => {
                block = Some((Instant::now(), secs));
                break;
            }
            Some(secs) => {
                std::thread::sleep(Duration::from_secs(secs) + Duration::from_millis(300))
            }
            None => break,
        }
    }
    let Some((tries, retry_after)) = first_block else {
        case.check(
            "5.1-5-2a the throttle engages",
            false,
            &format!("{MAX_TRIES} wrong passwords in a row never met a 429"),
            evidence,
        );
        return case;
    };
    // During the block even the right password is refused: the delay is not
    // per guess, it is per address and account.
    let blocked = match block {
        Some((since, secs)) => {
            let right = login(dut, &password);
            evidence.push(format!(
                "the right password {:.1} s into a {secs} s block:\n{}",
                since.elapsed().as_secs_f64(),
                exchange("POST", "/api/login", &right)
            ));
            matches!(&right, Ok(r) if r.status == 429)
        }
        None => {
            evidence.push(format!(
                "no block of {MIN_BLOCK_SECS} s or more within {MAX_TRIES} wrong passwords"
            ));
            false
        }
    };
    case.check(
        "5.1-5-2a the throttle engages",
        retry_after.is_some_and(|s| s >= 1) && blocked,
        &format!(
            "within {MAX_TRIES} wrong passwords the device answers 429 with Retry-After (first at try {tries}, \
             after {:.0} s), the blocks grow, and during a block of {MIN_BLOCK_SECS} s or more even the right \
             password is refused",
            started.elapsed().as_secs_f64()
        ),
        evidence,
    );
    let retry_after = block.map(|(_, secs)| Some(secs)).unwrap_or(retry_after);
    // b) bounded: the owner is slowed, never locked out for good.
    let wait = retry_after.unwrap_or(0);
    if wait > 120 {
        case.not_tested(
            "5.1-5-2b the owner gets back in",
            &format!("Retry-After {wait} s is longer than this suite waits (120 s)"),
        );
        return case;
    }
    std::thread::sleep(Duration::from_secs(wait + 1));
    let back = login(dut, &password);
    case.check(
        "5.1-5-2b the owner gets back in",
        matches!(&back, Ok(r) if r.status == 200),
        &format!("after waiting the Retry-After ({wait} s) the right password logs in again"),
        vec![exchange("POST", "/api/login", &back)],
    );
    case
}

/// Puts the engineer's password back on a HEARTH_DUT device.
pub fn restore_password(dut: &Dut, owner: &Owner) -> Option<String> {
    let (Some(original), Some(current)) = (&owner.original, &owner.password) else {
        return None;
    };
    if original == current {
        return None;
    }
    let r = login(dut, current).ok()?;
    let cookie = r.session_cookie()?;
    let csrf = r.json()["csrf_token"].as_str()?.to_owned();
    let body =
        json!({ "current_password": current, "password": original, "password_confirm": original })
            .to_string();
    let answer = dut.call(
        "POST",
        "/api/password",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        Some(&body),
    );
    Some(match answer {
        Ok(r) if r.status == 200 => {
            "the DUT's original password (HEARTH_DUT_PASSWORD) was put back".to_owned()
        }
        other => format!(
            "could NOT put the DUT's original password back ({}); its password is now the suite's {SECOND_PASSWORD:?} or {FIRST_PASSWORD:?}",
            other.map(|r| r.status.to_string()).unwrap_or_else(|e| e)
        ),
    })
}

/// 5.2-1-2: the disclosure policy is readable without an account, with contact and timelines.
pub fn case_5_2_1(dut: &Dut) -> Case {
    let mut case = Case::new(
        "5.2-1-2",
        "EN 303 645 5.2-1 (M); PSTI Sch. 1 §2",
        "Vulnerability disclosure policy published",
        "The manufacturer publishes a vulnerability disclosure policy with at least contact \
         information and timelines for acknowledging a report and for status updates until \
         resolution; TS 103 701 5.2-1-2: readable without an account.",
    );
    let txt = dut.call("GET", "/.well-known/security.txt", &[], None);
    let mut evidence = vec![exchange("GET", "/.well-known/security.txt", &txt)];
    let body = txt.as_ref().map(|r| r.body.clone()).unwrap_or_default();
    let fields_ok = matches!(&txt, Ok(r) if r.status == 200 && r.headers.contains("content-type: text/plain"))
        && body.lines().any(|l| l.starts_with("Contact: "))
        && body.lines().filter(|l| l.starts_with("Expires: ")).count() == 1
        && body.lines().any(|l| l.starts_with("Policy: "));
    // The RFC 9116 validator (sectxt, installed by tests/run) on the served file.
    let sectxt = run_sectxt(&body);
    evidence.push(format!(
        "sectxt (RFC 9116 validator) on the served file: {sectxt:?}"
    ));
    case.check(
        "5.2-1-2a security.txt without an account",
        fields_ok && sectxt.as_ref().is_ok_and(|s| s.contains("\"errors\": []")),
        "GET /.well-known/security.txt with no session: 200 text/plain with Contact, exactly one Expires and a Policy; sectxt reports no errors",
        evidence,
    );
    let page = dut.call("GET", "/security", &[], None);
    let text = page.as_ref().map(|r| r.body.clone()).unwrap_or_default();
    let section = text
        .split_once("id=\"report-vulnerability\"")
        .map(|(_, s)| s.split("</section>").next().unwrap_or(""))
        .unwrap_or("");
    let contact = section.contains("mailto:") || section.contains("https://");
    let next = section
        .split_once("What happens next")
        .map(|(_, s)| s)
        .unwrap_or("");
    let timelines = next.matches("<li>").count() >= 2 && next.chars().any(|c| c.is_ascii_digit());
    case.check(
        "5.2-1-2b policy with contact and timelines",
        matches!(&page, Ok(r) if r.status == 200) && contact && timelines,
        "GET /security with no session shows a contact link and the acknowledgement and status-update timelines",
        vec![
            exchange("GET", "/security", &page).lines().next().unwrap_or("").to_owned(),
            excerpt(&strip_tags(section), 700),
        ],
    );
    case
}

/// `{"errors": [...], ...}` from sectxt's parser, or why it could not run.
fn run_sectxt(content: &str) -> Result<String, String> {
    let script = "import sys, json\nfrom sectxt import Parser\np = Parser(sys.stdin.buffer.read())\n\
                  print(json.dumps({'errors': p.errors, 'recommendations': p.recommendations}))";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("python3: {e}"))?;
    use std::io::Write;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(content.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "sectxt failed (tests/run installs it): {}",
            excerpt(&String::from_utf8_lossy(&out.stderr), 300)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in html.chars() {
        match c {
            '<' => inside = true,
            '>' => {
                inside = false;
                out.push(' ');
            }
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// 5.3-13-2: the support period is findable without registration.
pub fn case_5_3_13(dut: &Dut) -> Case {
    let mut case = Case::new(
        "5.3-13-2",
        "EN 303 645 5.3-13 (M); PSTI Sch. 1 §3",
        "Defined support period published",
        "The manufacturer publishes, accessibly, clearly and transparently, the defined support \
         period (with an end date under PSTI); TS 103 701 5.3-13-2: findable by a non-expert \
         without registration.",
    );
    let page = dut.call("GET", "/security", &[], None);
    let text = page.as_ref().map(|r| r.body.clone()).unwrap_or_default();
    let section = text
        .split_once("id=\"support-period\"")
        .map(|(_, s)| s.split("</section>").next().unwrap_or(""))
        .unwrap_or("");
    let plain = strip_tags(section);
    let year = plain
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 4 && w.starts_with("20"))
        .map(str::to_owned);
    let mut evidence = vec![
        exchange("GET", "/security", &page)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned(),
        excerpt(&plain, 500),
    ];
    let mut ok = matches!(&page, Ok(r) if r.status == 200) && year.is_some();
    match dut.console() {
        Some(console) => {
            let line = console
                .lines()
                .find(|l| l.contains("security updates until"))
                .map(str::trim)
                .map(str::to_owned);
            evidence.push(format!("console: {line:?}"));
            // The console's ISO date and the page's long date name the same year.
            ok &= line
                .as_deref()
                .zip(year.as_deref())
                .is_some_and(|(l, y)| l.contains(&format!("until {y}-")));
        }
        None => evidence.push("console: not visible to the suite".to_owned()),
    }
    case.check(
        "5.3-13-2a support period without registration",
        ok,
        "GET /security with no session states until when security updates are provided, with a date; the console states the same end date",
        evidence,
    );
    case
}

/// 5.3-16-2: the model designation is recognisable.
pub fn case_5_3_16(dut: &Dut) -> Case {
    let mut case = Case::new(
        "5.3-16-2",
        "EN 303 645 5.3-16 (M)",
        "Model designation recognisable",
        "The model designation of the device is clearly recognisable, by labelling on the device \
         or via a physical interface.",
    );
    let state = dut.call("GET", "/api/state", &[], None);
    let model = state
        .as_ref()
        .ok()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
        .and_then(|v| v["product"]["model"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let page = dut.call("GET", "/security", &[], None);
    let on_page = page
        .as_ref()
        .is_ok_and(|r| r.body.contains(&format!("<dt>Model</dt><dd>{model}</dd>")));
    let mut evidence = vec![
        format!("GET /api/state (no session): product.model = {model:?}"),
        format!("GET /security (no session) has <dt>Model</dt><dd>{model}</dd>: {on_page}"),
    ];
    let mut ok = !model.is_empty() && on_page;
    match dut.console() {
        Some(console) => {
            let line = console.lines().find(|l| l.contains("(model ")).map(|l| l.trim().to_owned());
            evidence.push(format!("console: {line:?}"));
            ok &= line.is_some_and(|l| l.contains(&format!("(model {model},")));
            case.check(
                "5.3-16-2a model on the security page and the console",
                ok,
                "the same model designation appears in the public API, on the public security page and in the console banner",
                evidence,
            );
        }
        None => case.check(
            "5.3-16-2a model on the security page",
            ok,
            "the model designation appears in the public API and on the public security page (console not visible)",
            evidence,
        ),
    }
    case.not_applicable(
        "5.3-16-2b physical label",
        "the printed label is the vendor's, on its product; the development image has no hardware to label (docs/compliance.md, 5.3-16 row)",
    );
    case
}

#[test]
fn setup_code_helpers() {
    const A: &str = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let run = |s: &str| longest_sequential_run(&s.chars().collect::<Vec<_>>(), A);
    assert_eq!(run("K7QM3XPR9D"), 1);
    assert_eq!(run("K7QM3XPA9D"), 2); // "A9" runs down
    assert_eq!(run("ABCDE7QM3X"), 5);
    assert_eq!(run("ZYXW7QM3XP"), 4);
    assert_eq!(mask("K7QM-3XPA-9D"), "K7**-****-**");
    assert_eq!(
        redact_cookie("set-cookie: __Host-hearth_session=secret; HttpOnly; Secure"),
        "set-cookie: __Host-hearth_session=<redacted>; HttpOnly; Secure"
    );
}

//! The vendor's documents for an assessment, generated from the sources of
//! truth: the ICS (EN 303 645 Annex B pro forma: status, support, detail for
//! every provision of 5.1, 5.2 and 5.3) and the IXIT sheets the 5.1-5.3
//! tests read (TS 103 701: 1-AuthMech, 2-UserInfo, 3-VulnTypes, 4-Conf,
//! 5-VulnMon, 6-SoftComp, 7-UpdMech, 8-UpdProc, 9-ReplSup, 26-UserDec).
//!
//! Sources, each named next to the value it gave:
//! - the vendor file (`yocto-layer/.../hearth-vendor/files/vendor.toml`);
//! - the shipped configuration (`yocto-layer/.../hearthd/files/hearth.toml`),
//!   and where it sets nothing, the code's default (the `credentials`
//!   crate's constants and `ThrottleConfig::default()`, hearthd's
//!   `Settings::default()`: the values the firmware is built with);
//! - `docs/compliance.toml` for each provision's support and detail (typed
//!   data, from which `docs/compliance.md` is generated), so the ICS says
//!   what the matrix says.
//!
//! Both TOML files are read with the `toml` crate.
//!
//! Written to `tests/artifacts/conformance/{ics,ixit}.{md,json}`. The
//! conceptual test cases (conceptual.rs) compare them with the device.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

pub const VENDOR_FILE: &str =
    "yocto-layer/meta-hearth/recipes-core/hearth-vendor/files/vendor.toml";
pub const CONFIG_FILE: &str = "yocto-layer/meta-hearth/recipes-core/hearthd/files/hearth.toml";
const POLICY_RS: &str = "crates/credentials/src/policy.rs";
const HASHING_RS: &str = "crates/credentials/src/hashing.rs";
const SETUP_CODE_RS: &str = "crates/credentials/src/setup_code.rs";
const THROTTLE_RS: &str = "crates/credentials/src/throttle.rs";
const SETTINGS_RS: &str = "daemon/src/settings.rs";
const COMPLIANCE_DATA: &str = system_tests::compliance::DATA;

/// A value from the vendor file or hearth.toml, as the IXIT shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Bare(String),
    List(Vec<String>),
}

impl Value {
    pub fn text(&self) -> String {
        match self {
            Value::Str(s) | Value::Bare(s) => s.clone(),
            Value::List(l) => l.join(", "),
        }
    }
}

/// Every leaf of a TOML document (parsed with the `toml` crate) as
/// "section.key". Tables inside arrays have no place in an IXIT field and
/// are refused, so a file this does not understand stops the generation.
pub fn parse_toml(text: &str) -> Result<BTreeMap<String, Value>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut out = BTreeMap::new();
    flatten("", &table, &mut out)?;
    Ok(out)
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut BTreeMap<String, Value>,
) -> Result<(), String> {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let leaf = match value {
            toml::Value::Table(t) => {
                flatten(&name, t, out)?;
                continue;
            }
            toml::Value::String(s) => Value::Str(s.clone()),
            toml::Value::Array(items) => Value::List(
                items
                    .iter()
                    .map(|i| match i {
                        toml::Value::String(s) => Ok(s.clone()),
                        toml::Value::Table(_) | toml::Value::Array(_) => {
                            Err(format!("{name}: nested values have no IXIT field"))
                        }
                        other => Ok(scalar(other)),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => Value::Bare(scalar(other)),
        };
        out.insert(name, leaf);
    }
    Ok(())
}

/// A number, boolean or date as written.
fn scalar(value: &toml::Value) -> String {
    match value {
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(x) => x.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(_) | toml::Value::Table(_) => String::new(),
    }
}

/// A duration as the IXIT says it.
fn secs(d: std::time::Duration) -> String {
    format!("{} s", d.as_secs())
}

/// One IXIT field: its name, the value, and where the value came from.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub value: String,
    pub source: String,
}

/// One IXIT sheet (TS 103 701 numbering).
#[derive(Debug, Clone)]
pub struct Sheet {
    pub id: String,
    pub title: String,
    /// Entries ("AuthMech-1 ...") with their fields.
    pub entries: Vec<(String, Vec<Field>)>,
}

/// One ICS row.
#[derive(Debug, Clone)]
pub struct IcsRow {
    pub id: String,
    pub status: String,
    pub requirement: String,
    /// Y, N or NA.
    pub support: String,
    pub detail: String,
}

/// Both documents, and the facts the conceptual test cases check.
#[derive(Debug, Clone)]
pub struct Documents {
    pub ics: Vec<IcsRow>,
    pub ixit: Vec<Sheet>,
    pub password_min: usize,
    pub model: String,
    pub hardware_revision: String,
    pub support_end: String,
    pub contacts: Vec<String>,
    pub acknowledgement: String,
    pub status_updates: String,
    pub policy_url: String,
}

/// The provisions of 5.1-5.3 with their EN 303 645 V3.1.3 status (Table
/// B.1; see ../shared notes: statuses as summarised there) and the
/// requirement in a few words.
const PROVISIONS: &[(&str, &str, &str)] = &[
    (
        "5.1-1",
        "M F(a)",
        "Passwords, outside the factory default, are unique per device or defined by the user",
    ),
    (
        "5.1-2",
        "M F(b)",
        "Pre-installed unique passwords are generated so as to resist automated attacks on a device class",
    ),
    (
        "5.1-2A",
        "R",
        "Passwords for machine-to-machine authentication",
    ),
    (
        "5.1-3",
        "M F(c)",
        "User authentication uses best practice cryptography",
    ),
    (
        "5.1-4",
        "M F(d)",
        "A simple way for the user to change the authentication value",
    ),
    (
        "5.1-5",
        "M C(14) F(e)",
        "Brute force over network interfaces is impracticable",
    ),
    (
        "5.2-1",
        "M",
        "A published vulnerability disclosure policy with contact information and timelines",
    ),
    (
        "5.2-2",
        "R",
        "Disclosed vulnerabilities are acted on in a timely manner",
    ),
    (
        "5.2-3",
        "R",
        "Vulnerabilities are monitored, identified and rectified during the support period",
    ),
    (
        "5.3-1",
        "R F(f)",
        "All software components are securely updateable",
    ),
    (
        "5.3-2",
        "M C(15)",
        "An update mechanism for the secure installation of updates",
    ),
    (
        "5.3-3",
        "M F(g)",
        "Updates are simple for the user to apply",
    ),
    (
        "5.3-4A",
        "R F(g)",
        "Updates are configurable to be automatic",
    ),
    (
        "5.3-4B",
        "R F(h)",
        "Automatic updates are enabled at initialization",
    ),
    (
        "5.3-5",
        "R F(g)",
        "The device checks for security updates after initialization, then periodically",
    ),
    (
        "5.3-6A",
        "R F(h)",
        "Automatic updates are on in the initialized state; the user can enable, disable, postpone",
    ),
    (
        "5.3-6B",
        "R F(i)",
        "Update notifications are on in the initialized state; the user can enable, disable, postpone",
    ),
    (
        "5.3-7",
        "M F(g)",
        "The update mechanism uses best practice cryptography",
    ),
    ("5.3-8", "M C(12)", "Security updates are timely"),
    (
        "5.3-9",
        "R F(g)",
        "The device verifies the authenticity and integrity of software updates",
    ),
    (
        "5.3-10",
        "M F(j)",
        "Updates over a network are verified through a trust relationship",
    ),
    (
        "5.3-11",
        "R C(12)",
        "The user is told that a security update is required and what risks it mitigates",
    ),
    (
        "5.3-12",
        "R C(12)",
        "The user is warned when an update will disrupt the device's basic functioning",
    ),
    (
        "5.3-13",
        "M",
        "The defined support period is published, accessibly, clearly and transparently",
    ),
    (
        "5.3-14",
        "R C(3)",
        "Non-updatable devices: the rationale, the hardware replacement and the support period are published",
    ),
    ("5.3-15A", "R C(3)", "Non-updatable devices are isolable"),
    (
        "5.3-15B",
        "R C(3)",
        "Non-updatable devices have replaceable hardware",
    ),
    (
        "5.3-16",
        "M",
        "The model designation is clearly recognisable",
    ),
];

fn read(repo: &Path, rel: &str) -> Result<String, String> {
    std::fs::read_to_string(repo.join(rel)).map_err(|e| format!("{rel}: {e}"))
}

fn f(name: &str, value: impl Into<String>, source: &str) -> Field {
    Field {
        name: name.to_owned(),
        value: value.into(),
        source: source.to_owned(),
    }
}

/// Builds both documents from the repository at `repo`.
pub fn generate(repo: &Path) -> Result<Documents, String> {
    let vendor =
        parse_toml(&read(repo, VENDOR_FILE)?).map_err(|e| format!("{VENDOR_FILE}: {e}"))?;
    let config =
        parse_toml(&read(repo, CONFIG_FILE)?).map_err(|e| format!("{CONFIG_FILE}: {e}"))?;
    let matrix = system_tests::compliance::Matrix::load(repo)?;

    let v = |key: &str| -> Result<String, String> {
        vendor
            .get(key)
            .map(Value::text)
            .ok_or_else(|| format!("{VENDOR_FILE} has no {key}"))
    };
    let list = |key: &str| -> Vec<String> {
        match vendor.get(key) {
            Some(Value::List(l)) => l.clone(),
            Some(other) => vec![other.text()],
            None => Vec::new(),
        }
    };

    // The values the firmware is built with, from the crates themselves.
    use credentials::{hashing, policy, setup_code};
    let (password_min, min_source) = match config.get("credentials.password_min_length") {
        Some(value) => (
            value.text().parse::<usize>().map_err(|_| {
                format!("{CONFIG_FILE}: credentials.password_min_length is not a number")
            })?,
            format!("{CONFIG_FILE} [credentials] password_min_length"),
        ),
        None => (
            policy::DEFAULT_MIN_CHARS,
            format!(
                "{POLICY_RS} DEFAULT_MIN_CHARS (the shipped {CONFIG_FILE} does not set credentials.password_min_length)"
            ),
        ),
    };
    let password_max = policy::MAX_CHARS;
    let absolute_min = policy::ABSOLUTE_MIN_CHARS.to_string();
    let memory_kib = hashing::OWASP_MEMORY_KIB;
    let iterations = hashing::OWASP_ITERATIONS;
    let alphabet = String::from_utf8_lossy(setup_code::ALPHABET).into_owned();
    let code_len = setup_code::LEN;
    let bits = (code_len as f64) * (alphabet.len() as f64).log2();
    let throttle = credentials::ThrottleConfig::default();
    let free = throttle.free_failures;
    let lockout_threshold = throttle.lockout_threshold;
    let lockout_window = secs(throttle.lockout_window);
    let max_backoff = secs(throttle.max_backoff);
    let automatic_updates_default = hearthd::settings::Settings::default().automatic_updates;

    let contacts = list("disclosure.contacts");
    let model = v("product.model")?;
    let hardware_revision = v("product.hardware_revision")?;
    let support_end = v("support.end_date")?;
    let acknowledgement = v("disclosure.acknowledgement")?;
    let status_updates = v("disclosure.status_updates")?;
    let policy_url = v("disclosure.policy_url")?;
    let vf = |k: &str| format!("{VENDOR_FILE} {k}");

    let ixit = vec![
        Sheet {
            id: "1-AuthMech".into(),
            title: "Authentication mechanisms".into(),
            entries: vec![
                (
                    "AuthMech-1: the owner's password (web UI and HTTPS API)".into(),
                    vec![
                        f(
                            "Description",
                            "The one user account of the device. No password exists in the factory state: the owner defines it when claiming the device with its setup code (AuthMech-2), and every protected page and API call answers \"not set up\" until then.",
                            "docs/compliance.md 5.1-1",
                        ),
                        f(
                            "Authentication factor",
                            "knowledge (password), user-defined",
                            "design",
                        ),
                        f(
                            "Password minimum length",
                            password_min.to_string(),
                            &min_source,
                        ),
                        f(
                            "Password maximum length",
                            password_max.to_string(),
                            &format!("{POLICY_RS} MAX_CHARS"),
                        ),
                        f(
                            "Lowest minimum a vendor may configure",
                            absolute_min,
                            &format!("{POLICY_RS} ABSOLUTE_MIN_CHARS"),
                        ),
                        f(
                            "Other password rules",
                            "NFKC normalisation; a blocklist of the 100,000 most common breached passwords plus context words (vendor, product, model); no composition rules; no expiry (NIST SP 800-63B-4)",
                            "docs/compliance.md",
                        ),
                        f(
                            "Storage",
                            format!(
                                "argon2id, m = {memory_kib} KiB, t = {iterations}, p = 1, 16-byte random salt; re-hashed when the parameters are raised"
                            ),
                            &format!("{HASHING_RS} OWASP_MEMORY_KIB, OWASP_ITERATIONS"),
                        ),
                        f(
                            "Cryptography in transit",
                            "TLS 1.3 and 1.2 only (rustls with ring), a per-device certificate made on first boot whose SHA-256 fingerprint the console shows; session: 256-bit random token in a __Host- cookie, HttpOnly, Secure, SameSite=Strict, with a CSRF token",
                            "docs/hardening.md, docs/compliance.md 5.1-3",
                        ),
                        f(
                            "Brute-force protection",
                            format!(
                                "per client address and per account: {free} failures without delay, then a delay doubling from 1 s up to {max_backoff}, and from the {lockout_threshold}th consecutive failure a lockout of {lockout_window} per failure; a global ceiling; at most two password checks at once. Every delay ends, so the owner is never locked out for good"
                            ),
                            &format!("{THROTTLE_RS} ThrottleConfig::default()"),
                        ),
                        f(
                            "How to change it",
                            "Settings, Change password: needs the current password; logs out every other session",
                            "docs/compliance.md 5.1-4",
                        ),
                    ],
                ),
                (
                    "AuthMech-2: the setup code (claiming the device)".into(),
                    vec![
                        f(
                            "Description",
                            "A pre-installed password unique per device, used once, to claim the device and set the owner's password. Shown on the serial console (and on the label from the production line).",
                            "docs/compliance.md 5.1-2",
                        ),
                        f(
                            "Generation",
                            format!(
                                "{code_len} symbols drawn uniformly from a {}-symbol alphabet ({alphabet}) by the operating system's random source (ring SystemRandom), about {bits:.0} bits; not derived from serial number, MAC address, time or model; degenerate draws (one symbol repeated, runs) are rejected",
                                alphabet.len()
                            ),
                            &format!("{SETUP_CODE_RS} ALPHABET, LEN"),
                        ),
                        f(
                            "Storage",
                            "only its argon2id hash; it works once, and the production line's file is deleted once the hash is stored",
                            "docs/compliance.md 5.1-2",
                        ),
                        f(
                            "Brute-force protection",
                            "the same throttle as AuthMech-1",
                            THROTTLE_RS,
                        ),
                    ],
                ),
                (
                    "AuthMech-3: operating-system accounts".into(),
                    vec![f(
                        "Description",
                        "Every account in /etc/shadow is locked (the image build fails otherwise); no getty autologin, no SSH or telnet server",
                        "docs/hardening.md, qemu/build-image",
                    )],
                ),
                (
                    "AuthMech-4: the fleet link (machine to machine)".into(),
                    vec![f(
                        "Description",
                        "MQTT over TLS to the vendor's broker, authenticated by the device's own client certificate and the vendor's CA; no password. Off unless the vendor configures [fleet]",
                        "docs/mqtt.md",
                    )],
                ),
            ],
        },
        Sheet {
            id: "2-UserInfo".into(),
            title: "Information published for the user".into(),
            entries: vec![(
                "UserInfo".into(),
                vec![
                    f(
                        "Disclosure policy",
                        format!(
                            "{policy_url}; on the device without an account: /.well-known/security.txt and the Security page"
                        ),
                        &vf("disclosure.policy_url"),
                    ),
                    f("Contacts", contacts.join(", "), &vf("disclosure.contacts")),
                    f(
                        "Acknowledgement timeline",
                        acknowledgement.clone(),
                        &vf("disclosure.acknowledgement"),
                    ),
                    f(
                        "Status-update timeline",
                        status_updates.clone(),
                        &vf("disclosure.status_updates"),
                    ),
                    f(
                        "Defined support period",
                        format!(
                            "security updates until at least {support_end}; published at {} and on the device's Security page, dashboard, console and os-release (SUPPORT_END)",
                            v("support.url")?
                        ),
                        &vf("support.end_date, support.url"),
                    ),
                    f(
                        "Model designation",
                        format!(
                            "{model}, hardware revision {hardware_revision} ({}); on the label, the Security page, the dashboard and the console",
                            v("product.name")?
                        ),
                        &vf("product.model, product.hardware_revision"),
                    ),
                    f(
                        "How to change the password",
                        "Settings, Change password",
                        "web-ui/settings.html",
                    ),
                ],
            )],
        },
        Sheet {
            id: "3-VulnTypes".into(),
            title: "Vulnerability types and the action on them".into(),
            entries: vec![(
                "VulnTypes".into(),
                vec![f(
                    "Action",
                    "VENDOR TO FILL IN: the reference vendor is fictional; docs/disclosure.md has the template (triage, fix, release through the signed update path)",
                    "docs/disclosure.md",
                )],
            )],
        },
        Sheet {
            id: "4-Conf".into(),
            title: "Confirmations by the vendor".into(),
            entries: vec![(
                "Conf".into(),
                vec![f(
                    "Confirmations",
                    "VENDOR TO FILL IN: timely action (5.2-2), monitoring (5.2-3) and timely security updates (5.3-8) are the vendor's process, which a reference firmware cannot confirm",
                    "EN 303 645 / TS 103 701",
                )],
            )],
        },
        Sheet {
            id: "5-VulnMon".into(),
            title: "Vulnerability monitoring".into(),
            entries: vec![(
                "VulnMon".into(),
                vec![f(
                    "Monitoring",
                    "cargo deny (licences, bans, sources) in CI; the RustSec advisories check needs an offline database that is not set up yet; the Yocto sbom-cve-check fragment for the OS (docs/disclosure.md). VENDOR TO FILL IN: who watches, how often",
                    "docs/conformance.md, docs/disclosure.md",
                )],
            )],
        },
        Sheet {
            id: "6-SoftComp".into(),
            title: "Software components".into(),
            entries: vec![(
                "SoftComp".into(),
                vec![
                    f(
                        "hearthd, its configuration and the vendor file",
                        "updatable: part of the root filesystem slot image",
                        "docs/boot.md",
                    ),
                    f(
                        "Operating system (kernel, initramfs, libraries, SWUpdate)",
                        "updatable: part of the root filesystem slot image (A/B)",
                        "docs/boot.md",
                    ),
                    f(
                        "Boot loader (GRUB on the ESP; U-Boot on the Pi) and its environment",
                        "NOT updatable by an update: the update writes only the inactive root file system slot and the boot environment (active slot, boot counter, trial state); the boot loader and its script stay as the factory wrote them",
                        "yocto-layer/meta-hearth/recipes-core/hearth-update/files/sw-description, docs/boot.md",
                    ),
                ],
            )],
        },
        Sheet {
            id: "7-UpdMech".into(),
            title: "Update mechanisms".into(),
            entries: vec![(
                "UpdMech-1: signed A/B image update".into(),
                vec![
                    f(
                        "Description",
                        "SWUpdate writes the inactive slot; GRUB boots it with a boot counter and falls back on failure",
                        "docs/boot.md, docs/update-security.md",
                    ),
                    f(
                        "Cryptography",
                        "a signed manifest (ECDSA P-256, keys certified by the vendor's root, expiry, model and hardware binding, version and security-version floors, size cap) checked before any byte is fetched; SWUpdate checks the .swu's CMS signature and every image's SHA-256",
                        "docs/update-security.md",
                    ),
                    f(
                        "Trust anchor",
                        format!(
                            "the vendor's release root, in the image (/usr/share/hearth/swupdate-trust.pem, hearthd's manifests and SWUpdate's CMS alike): key id {}",
                            crate::updates::declared_root_id()
                        ),
                        "docs/update-security.md; the development root here (HEARTH_SWU_TRUST_CERT)",
                    ),
                    f(
                        "Delivery",
                        "the release's signed manifest arrives as a retained MQTT message and from the HTTPS manifest URL, checked after start and at least daily; the artifact is downloaded over HTTPS (TLS 1.2/1.3) and verified before and while it is installed",
                        "docs/updates.md, docs/compliance.md 5.3-5",
                    ),
                ],
            )],
        },
        Sheet {
            id: "8-UpdProc".into(),
            title: "Update procedures".into(),
            entries: vec![(
                "UpdProc".into(),
                vec![f(
                    "Timeliness",
                    "VENDOR TO FILL IN: how fast a security fix is released after a report (the policy's timelines cover the communication, not the fix)",
                    "docs/disclosure.md",
                )],
            )],
        },
        Sheet {
            id: "9-ReplSup".into(),
            title: "Support period and replacement".into(),
            entries: vec![(
                "ReplSup".into(),
                vec![
                    f(
                        "Support period end",
                        support_end.clone(),
                        &vf("support.end_date"),
                    ),
                    f("Published at", v("support.url")?, &vf("support.url")),
                    f(
                        "Product placed on the market",
                        v("support.release_date").unwrap_or_else(|_| "(the build date)".into()),
                        &vf("support.release_date"),
                    ),
                    f(
                        "Hardware replacement",
                        "not applicable: the device's software is updatable, so 5.3-14 and 5.3-15 (devices that cannot be updated) do not apply; the boot loader alone is not updated (6-SoftComp)",
                        "docs/compliance.md",
                    ),
                ],
            )],
        },
        Sheet {
            id: "26-UserDec".into(),
            title: "Decisions the user can make".into(),
            entries: vec![(
                "UserDec".into(),
                vec![
                    f(
                        "Automatic updates",
                        format!(
                            "a setting, {} by default",
                            if automatic_updates_default {
                                "on"
                            } else {
                                "off"
                            }
                        ),
                        &format!("{SETTINGS_RS} Settings::default()"),
                    ),
                    f(
                        "Postpone an update",
                        "on the dashboard the owner postpones a release (1 to 14 days; a security release at most security_postpone_limit_hours after the device first saw it) or installs it now; in Settings, a maintenance window for restarts",
                        "docs/updates.md, docs/compliance.md 5.3-3, 5.3-4",
                    ),
                ],
            )],
        },
    ];

    let ics = PROVISIONS
        .iter()
        .map(|(id, status, requirement)| {
            // 5.3-4A/4B, 6A/6B, 15A/15B share their V2 row; 5.1-2A is new in V3.
            let base = id.trim_end_matches(['A', 'B']);
            let row = matrix
                .row(id)
                .or_else(|| (*id != "5.1-2A").then(|| matrix.row(base)).flatten());
            let (support, detail) = match row {
                Some(row) => (
                    row.support.ics().to_owned(),
                    format!("{}{}", row.support.ics_qualifier(), row.how),
                ),
                None => (
                    "N".to_owned(),
                    format!("NO ENTRY in {COMPLIANCE_DATA}: needs a decision and, for a recommendation, a justification (5.0-1)."),
                ),
            };
            IcsRow {
                id: (*id).to_owned(),
                status: (*status).to_owned(),
                requirement: (*requirement).to_owned(),
                support,
                detail,
            }
        })
        .collect();

    Ok(Documents {
        ics,
        ixit,
        password_min,
        model,
        hardware_revision,
        support_end,
        contacts,
        acknowledgement,
        status_updates,
        policy_url,
    })
}

const PREAMBLE: &str = "Generated by the conformance suite (`tests/conformance/ics.rs`) from the vendor file, the \
    shipped configuration, the code's defaults (the credentials crate's constants, hearthd's settings) and \
    `docs/compliance.toml`; each value names its source. \
    Do not edit: change the source and run `cargo test -p system-tests --test conformance vendor_documents`. \
    The reference vendor is fictional (docs/disclosure.md): a fork regenerates these from its own vendor file \
    and fills in the fields marked VENDOR TO FILL IN.";

impl Documents {
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut ics = String::new();
        let _ = writeln!(
            ics,
            "# Implementation Conformance Statement: EN 303 645 5.1, 5.2, 5.3\n"
        );
        let _ = writeln!(ics, "{PREAMBLE}\n");
        let _ = writeln!(
            ics,
            "Status (EN 303 645 V3.1.3 Table B.1): M mandatory, R recommended, C(n) conditional, F(x) only with feature x. Support: Y, N, NA.\n"
        );
        let _ = writeln!(
            ics,
            "| provision | status | requirement | support | detail |"
        );
        let _ = writeln!(ics, "|---|---|---|---|---|");
        for r in &self.ics {
            let _ = writeln!(
                ics,
                "| {} | {} | {} | {} | {} |",
                r.id,
                r.status,
                r.requirement,
                r.support,
                r.detail.replace('|', "/")
            );
        }
        std::fs::write(dir.join("ics.md"), ics)?;
        let mut ixit = String::new();
        let _ = writeln!(
            ixit,
            "# IXIT: extra information for testing (TS 103 701), 5.1-5.3\n"
        );
        let _ = writeln!(ixit, "{PREAMBLE}\n");
        for s in &self.ixit {
            let _ = writeln!(ixit, "## {} {}\n", s.id, s.title);
            for (entry, fields) in &s.entries {
                let _ = writeln!(ixit, "### {entry}\n");
                let _ = writeln!(ixit, "| field | value | source |");
                let _ = writeln!(ixit, "|---|---|---|");
                for f in fields {
                    let _ = writeln!(
                        ixit,
                        "| {} | {} | {} |",
                        f.name,
                        f.value.replace('|', "/"),
                        f.source.replace('|', "/")
                    );
                }
                let _ = writeln!(ixit);
            }
        }
        std::fs::write(dir.join("ixit.md"), ixit)?;
        let ics_json = json!({
            "document": "ICS, EN 303 645 Annex B pro forma, provisions 5.1-5.3",
            "generated_from": [VENDOR_FILE, CONFIG_FILE, COMPLIANCE_DATA, "the credentials crate and hearthd's settings defaults"],
            "rows": self.ics.iter().map(|r| json!({
                "provision": r.id, "status": r.status, "requirement": r.requirement,
                "support": r.support, "detail": r.detail,
            })).collect::<Vec<_>>(),
        });
        let ixit_json = json!({
            "document": "IXIT, TS 103 701, sheets used by 5.1-5.3",
            "sheets": self.ixit.iter().map(|s| json!({
                "id": s.id, "title": s.title,
                "entries": s.entries.iter().map(|(e, fields)| json!({
                    "entry": e,
                    "fields": fields.iter().map(|f| json!({"name": f.name, "value": f.value, "source": f.source})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        let pretty =
            |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
        std::fs::write(dir.join("ics.json"), pretty(&ics_json))?;
        std::fs::write(dir.join("ixit.json"), pretty(&ixit_json))
    }
}

/// Provision ids ("5.1-1", "5.3-13") named in a case's provision text.
pub fn provisions_in(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        .filter(|w| w.starts_with("5.") && w.contains('-'))
        .map(|w| {
            // "5.1-1-2a" (a test unit) -> "5.1-1"
            let mut parts = w.splitn(3, '-');
            format!(
                "{}-{}",
                parts.next().unwrap_or(""),
                parts.next().unwrap_or("")
            )
        })
        .filter(|id| id.len() > 4)
        .fold(Vec::new(), |mut v, id| {
            if !v.contains(&id) {
                v.push(id);
            }
            v
        })
}

/// The compliance matrix with the last verdicts: each ICS row, the suite's
/// cases for that provision and their verdicts, and a flag where the ICS
/// claims support that a case contradicts. Written as matrix.md/json.
pub fn write_matrix(
    docs: &Documents,
    cases: &[(String, String, String)],
    dir: &Path,
) -> std::io::Result<()> {
    let mut md = String::new();
    let _ = writeln!(md, "# Compliance matrix with the last verdicts\n");
    let _ = writeln!(
        md,
        "Generated by the conformance suite: each provision's ICS row (support from docs/compliance.toml) \
         next to the suite's test cases for it and their verdicts in this run. \
         \"CONTRADICTED\" means the ICS claims support and a case FAILed; \"INCONCLUSIVE\" that a \
         case's required unit did not run; \"not shown\" that the ICS claims support and no case \
         passed.\n"
    );
    let _ = writeln!(
        md,
        "| provision | status | ICS support | test cases (verdict) | consistent |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    let mut rows = Vec::new();
    for r in &docs.ics {
        // 5.3-4A/4B ... share their V2 cases; 5.1-2A (new in V3) has none.
        let base = if r.id == "5.1-2A" {
            r.id.as_str()
        } else {
            r.id.trim_end_matches(['A', 'B'])
        };
        // Only cases that test a provision ("EN 303 645 ..."), not the
        // hardening targets that merely support one.
        let mine: Vec<&(String, String, String)> = cases
            .iter()
            .filter(|(_, provision, _)| {
                provision.starts_with("EN 303 645")
                    && provisions_in(provision)
                        .iter()
                        .any(|p| p == &r.id || p == base)
            })
            .collect();
        let any = |verdict: &str| mine.iter().any(|(_, _, v)| v == verdict);
        let consistent = if mine.is_empty() {
            "no test case"
        } else if r.support == "Y" && any("FAIL") {
            "CONTRADICTED"
        } else if any("INCONCLUSIVE") {
            "INCONCLUSIVE"
        } else if r.support == "Y" && !any("PASS") {
            "not shown: no case passed"
        } else {
            "yes"
        };
        let list = mine
            .iter()
            .map(|(id, _, v)| format!("{id} ({v})"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {consistent} |",
            r.id,
            r.status,
            r.support,
            if list.is_empty() { "-" } else { &list }
        );
        rows.push(json!({
            "provision": r.id, "status": r.status, "support": r.support,
            "cases": mine.iter().map(|(id, _, v)| json!({"id": id, "verdict": v})).collect::<Vec<_>>(),
            "consistent": consistent,
        }));
    }
    std::fs::write(dir.join("matrix.md"), md)?;
    let json = serde_json::to_string_pretty(&json!({ "rows": rows })).unwrap_or_default();
    std::fs::write(dir.join("matrix.json"), json + "\n")
}

/// Generates the ICS and IXIT without a device (fast; also part of the suite).
#[test]
fn vendor_documents() {
    let docs = generate(&system_tests::repo_root()).expect("generate the ICS and IXIT");
    let dir = system_tests::artifacts_dir().join("conformance");
    docs.write(&dir).expect("write the ICS and IXIT");
    assert_eq!(docs.ics.len(), PROVISIONS.len());
    assert!(docs.password_min >= 8, "{}", docs.password_min);
    eprintln!("ICS and IXIT written to {}", dir.display());
}

#[test]
fn toml_leaves() {
    let t = parse_toml(
        "# c\n[a]\nname = \"x # not a comment\" # comment\nlist = [\n  \"p\",\n  \"q\",\n]\nday = 2031-12-31\n[b]\nn = 3\n",
    )
    .expect("parses");
    assert_eq!(t["a.name"], Value::Str("x # not a comment".into()));
    assert_eq!(t["a.list"], Value::List(vec!["p".into(), "q".into()]));
    assert_eq!(t["a.day"], Value::Bare("2031-12-31".into()));
    assert_eq!(t["b.n"], Value::Bare("3".into()));
    assert_eq!(
        parse_toml("[a]\nx = { y = 1 }\n").expect("parses")["a.x.y"],
        Value::Bare("1".into())
    );
    assert!(
        parse_toml("[[a]]\nx = 1\n").is_err(),
        "an array of tables has no IXIT field"
    );
}

#[test]
fn provision_ids_from_case_text() {
    assert_eq!(provisions_in("EN 303 645 5.1-1 (M)"), vec!["5.1-1"]);
    assert_eq!(
        provisions_in("EN 303 645 5.1-1 / 5.1-5 (TS 103 701 5.1-1-2a, 5.1-5-2: undocumented)"),
        vec!["5.1-1", "5.1-5"]
    );
    assert_eq!(
        provisions_in("EN 303 645 5.3-13 (M); PSTI Sch. 1 §3"),
        vec!["5.3-13"]
    );
    assert!(provisions_in("hardening (issue 8 target)").is_empty());
}

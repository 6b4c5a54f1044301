//! The release's software bill of materials, as an SPDX 2.3 JSON document.
//!
//! SPDX 2.3 because what consumes an SBOM today reads it (grype, Trivy,
//! Dependency-Track, GitHub), and independent validators for it are mature
//! (`pyspdxtools` from spdx-tools); SPDX 3.0, which Yocto 6.0 writes, has
//! only early validators so far. A Yocto build's own SPDX 3.0 document can
//! be signed into the manifest instead (`manifest --sbom`).
//!
//! What it lists:
//! - the firmware itself (the document describes it);
//! - every Debian package in the root file system, as
//!   `dpkg-query -W -f '${Package} ${Version} ${Architecture}\n'` prints
//!   them (the development image writes that list beside itself);
//! - every crate the named workspace crates (hearthd) depend on in
//!   `Cargo.lock`, with their dependency edges, less the workspace crates'
//!   test-only dependencies (read from their `Cargo.toml`). Dependencies
//!   for other targets are kept, so the list may hold a little more than
//!   one target links: the safe side for a vulnerability check.
//!
//! Packages carry purls (`pkg:deb/...`, `pkg:cargo/...`), which is what
//! [`crate::cmd::audit`] and other scanners match advisories on.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// An SPDX 2.3 document (the fields Hearth writes and reads).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    pub spdx_version: String,
    pub data_license: String,
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    pub name: String,
    pub document_namespace: String,
    pub creation_info: CreationInfo,
    #[serde(default)]
    pub packages: Vec<Package>,
    #[serde(default)]
    pub relationships: Vec<Relationship>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreationInfo {
    pub created: String,
    pub creators: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Package {
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_info: Option<String>,
    pub download_location: String,
    #[serde(default)]
    pub files_analyzed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_package_purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checksums: Vec<Checksum>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_refs: Vec<ExternalRef>,
}

impl Package {
    /// The package's purl, if it has one.
    pub fn purl(&self) -> Option<&str> {
        self.external_refs
            .iter()
            .find(|r| r.reference_type == "purl")
            .map(|r| r.reference_locator.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checksum {
    pub algorithm: String,
    pub checksum_value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRef {
    pub reference_category: String,
    pub reference_type: String,
    pub reference_locator: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Relationship {
    pub spdx_element_id: String,
    pub relationship_type: String,
    pub related_spdx_element: String,
}

/// A Debian package as `dpkg-query` lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DebianPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
}

/// Reads `dpkg-query -W -f '${Package} ${Version} ${Architecture}\n'`
/// output (blank lines and `#` comments skipped).
pub fn read_debian_packages(path: &Path) -> Result<Vec<DebianPackage>, Error> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, version, architecture] = fields[..] else {
            return Err(Error::Msg(format!(
                "{}:{}: expected \"package version architecture\" (dpkg-query -W -f '${{Package}} ${{Version}} ${{Architecture}}\\n'), found {line:?}",
                path.display(),
                n + 1
            )));
        };
        out.push(DebianPackage {
            name: name.into(),
            version: version.into(),
            architecture: architecture.into(),
        });
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// A crate from `Cargo.lock`: from crates.io (with its checksum) or from
/// the workspace (neither).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Crate {
    pub name: String,
    pub version: String,
    pub from_registry: bool,
    pub checksum: Option<String>,
    /// Indices into the same list.
    pub depends_on: Vec<usize>,
}

/// For each workspace member beside the lock file at `lock`: the names of
/// its dependencies that are for its tests only (`[dev-dependencies]` and
/// not also a normal or build dependency). `Cargo.lock` lists them like
/// any other dependency, and a test helper is not in the firmware.
fn dev_only_dependencies(lock: &Path) -> Result<HashMap<String, BTreeSet<String>>, Error> {
    let root = lock.parent().unwrap_or(Path::new("."));
    let read = |path: &Path| -> Result<toml::Table, Error> {
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        text.parse()
            .map_err(|e| Error::Msg(format!("{}: {e}", path.display())))
    };
    let workspace = read(&root.join("Cargo.toml"))?;
    let members = workspace
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(toml::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names = |table: Option<&toml::Value>| -> BTreeSet<String> {
        let Some(table) = table.and_then(toml::Value::as_table) else {
            return BTreeSet::new();
        };
        table
            .iter()
            .map(|(key, spec)| {
                spec.get("package")
                    .and_then(toml::Value::as_str)
                    .unwrap_or(key)
                    .to_owned()
            })
            .collect()
    };
    let mut out = HashMap::new();
    for member in members.iter().filter_map(toml::Value::as_str) {
        let manifest = read(&root.join(member).join("Cargo.toml"))?;
        let Some(name) = manifest
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(toml::Value::as_str)
        else {
            continue;
        };
        let mut tables = vec![&manifest];
        if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
            tables.extend(targets.values().filter_map(toml::Value::as_table));
        }
        let (mut normal, mut dev) = (BTreeSet::new(), BTreeSet::new());
        for t in tables {
            normal.extend(names(t.get("dependencies")));
            normal.extend(names(t.get("build-dependencies")));
            dev.extend(names(t.get("dev-dependencies")));
        }
        out.insert(name.to_owned(), &dev - &normal);
    }
    Ok(out)
}

/// The crates `roots` need, transitively, from the lock file at `path`
/// (a workspace's, with its members' `Cargo.toml` beside it): what is
/// built into them, without their test-only dependencies.
pub fn read_crates(path: &Path, roots: &[String]) -> Result<Vec<Crate>, Error> {
    let dev_only = dev_only_dependencies(path)?;
    let lock = rustsec::Lockfile::load(path).map_err(|e| {
        Error::Msg(format!(
            "{}: cannot read it as Cargo.lock: {e}",
            path.display()
        ))
    })?;
    let key = |name: &str, version: &str| format!("{name} {version}");
    let by_key: HashMap<String, usize> = lock
        .packages
        .iter()
        .enumerate()
        .map(|(i, p)| (key(p.name.as_str(), &p.version.to_string()), i))
        .collect();
    let mut wanted = BTreeSet::new();
    let mut queue = VecDeque::new();
    for root in roots {
        let found: Vec<usize> = lock
            .packages
            .iter()
            .enumerate()
            .filter(|(_, p)| p.name.as_str() == root && p.source.is_none())
            .map(|(i, _)| i)
            .collect();
        if found.is_empty() {
            return Err(Error::Msg(format!(
                "{}: no workspace crate named {root:?}",
                path.display()
            )));
        }
        queue.extend(found);
    }
    let no_tests = BTreeSet::new();
    let built_in = |p: &rustsec::cargo_lock::Package| -> Vec<usize> {
        let tests_only = match p.source {
            None => dev_only.get(p.name.as_str()).unwrap_or(&no_tests),
            Some(_) => &no_tests,
        };
        p.dependencies
            .iter()
            .filter(|d| !tests_only.contains(d.name.as_str()))
            .filter_map(|d| by_key.get(&key(d.name.as_str(), &d.version.to_string())))
            .copied()
            .collect()
    };
    while let Some(i) = queue.pop_front() {
        if wanted.insert(i) {
            queue.extend(built_in(&lock.packages[i]));
        }
    }
    let order: Vec<usize> = wanted.into_iter().collect();
    let position: HashMap<usize, usize> = order.iter().enumerate().map(|(n, &i)| (i, n)).collect();
    Ok(order
        .iter()
        .map(|&i| {
            let p = &lock.packages[i];
            let mut depends_on: Vec<usize> = built_in(p)
                .iter()
                .filter_map(|j| position.get(j).copied())
                .collect();
            depends_on.sort_unstable();
            Crate {
                name: p.name.to_string(),
                version: p.version.to_string(),
                from_registry: p.source.as_ref().is_some_and(|s| s.is_default_registry()),
                checksum: p.checksum.as_ref().map(|c| c.to_string()),
                depends_on,
            }
        })
        .collect())
}

/// What the SBOM describes.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The product (for example "Hearth HRH-1").
    pub product: String,
    pub version: String,
    /// The vendor, for the document's creators.
    pub organization: Option<String>,
    pub debian: Vec<DebianPackage>,
    /// The Debian release's code name, for the purls' `distro`.
    pub debian_release: Option<String>,
    pub crates: Vec<Crate>,
    /// Base URI of `documentNamespace`.
    pub namespace: String,
    /// RFC 3339 UTC, seconds.
    pub created: String,
}

const FIRMWARE: &str = "SPDXRef-firmware";

/// The SPDX document for `inputs`.
pub fn document(inputs: &Inputs) -> Document {
    let mut packages = vec![Package {
        spdx_id: FIRMWARE.into(),
        name: inputs.product.clone(),
        version_info: Some(inputs.version.clone()),
        download_location: "NOASSERTION".into(),
        files_analyzed: false,
        supplier: inputs
            .organization
            .as_ref()
            .map(|o| format!("Organization: {o}")),
        primary_package_purpose: Some("FIRMWARE".into()),
        checksums: Vec::new(),
        external_refs: Vec::new(),
    }];
    let mut relationships = vec![relationship("SPDXRef-DOCUMENT", "DESCRIBES", FIRMWARE)];
    for d in &inputs.debian {
        let id = spdx_id("deb", &d.name, &d.version);
        let mut purl = format!(
            "pkg:deb/debian/{}@{}?arch={}",
            purl_escape(&d.name),
            purl_escape(&d.version),
            purl_escape(&d.architecture)
        );
        if let Some(release) = &inputs.debian_release {
            let _ = write!(purl, "&distro={}", purl_escape(release));
        }
        packages.push(Package {
            spdx_id: id.clone(),
            name: d.name.clone(),
            version_info: Some(d.version.clone()),
            download_location: "NOASSERTION".into(),
            files_analyzed: false,
            supplier: Some("Organization: Debian".into()),
            primary_package_purpose: None,
            checksums: Vec::new(),
            external_refs: vec![purl_ref(purl)],
        });
        relationships.push(relationship(FIRMWARE, "CONTAINS", &id));
    }
    let crate_ids: Vec<String> = inputs
        .crates
        .iter()
        .map(|c| spdx_id("crate", &c.name, &c.version))
        .collect();
    let depended_on: BTreeSet<usize> = inputs
        .crates
        .iter()
        .flat_map(|c| c.depends_on.iter().copied())
        .collect();
    for (i, c) in inputs.crates.iter().enumerate() {
        let registry = c.from_registry;
        packages.push(Package {
            spdx_id: crate_ids[i].clone(),
            name: c.name.clone(),
            version_info: Some(c.version.clone()),
            download_location: if registry {
                format!(
                    "https://crates.io/api/v1/crates/{}/{}/download",
                    c.name, c.version
                )
            } else {
                "NOASSERTION".into()
            },
            files_analyzed: false,
            supplier: None,
            primary_package_purpose: Some(if registry { "LIBRARY" } else { "APPLICATION" }.into()),
            checksums: c
                .checksum
                .iter()
                .map(|v| Checksum {
                    algorithm: "SHA256".into(),
                    checksum_value: v.clone(),
                })
                .collect(),
            external_refs: if registry {
                vec![purl_ref(format!(
                    "pkg:cargo/{}@{}",
                    purl_escape(&c.name),
                    purl_escape(&c.version)
                ))]
            } else {
                Vec::new()
            },
        });
        // The roots (what nothing else here depends on) are in the firmware.
        if !depended_on.contains(&i) {
            relationships.push(relationship(FIRMWARE, "CONTAINS", &crate_ids[i]));
        }
        for &j in &c.depends_on {
            relationships.push(relationship(&crate_ids[i], "DEPENDS_ON", &crate_ids[j]));
        }
    }
    let mut creators = vec![format!(
        "Tool: hearth-release-{}",
        env!("CARGO_PKG_VERSION")
    )];
    if let Some(o) = &inputs.organization {
        creators.push(format!("Organization: {o}"));
    }
    let name = format!("{} {}", inputs.product, inputs.version);
    // Unique per content, and the same for the same inputs (reproducible).
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{name}\n{:?}\n{:?}", inputs.debian, inputs.crates).as_bytes(),
    );
    let tag: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Document {
        spdx_version: "SPDX-2.3".into(),
        data_license: "CC0-1.0".into(),
        spdx_id: "SPDXRef-DOCUMENT".into(),
        document_namespace: format!(
            "{}/{}-{}-{tag}",
            inputs.namespace.trim_end_matches('/'),
            sanitize(&inputs.product),
            sanitize(&inputs.version)
        ),
        name,
        creation_info: CreationInfo {
            created: inputs.created.clone(),
            creators,
        },
        packages,
        relationships,
    }
}

fn relationship(from: &str, kind: &str, to: &str) -> Relationship {
    Relationship {
        spdx_element_id: from.into(),
        relationship_type: kind.into(),
        related_spdx_element: to.into(),
    }
}

fn purl_ref(locator: String) -> ExternalRef {
    ExternalRef {
        reference_category: "PACKAGE-MANAGER".into(),
        reference_type: "purl".into(),
        reference_locator: locator,
    }
}

/// SPDX ids allow letters, digits, `.` and `-` only.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn spdx_id(kind: &str, name: &str, version: &str) -> String {
    format!("SPDXRef-{kind}-{}-{}", sanitize(name), sanitize(version))
}

/// Percent-encodes all but the characters purl leaves as they are.
fn purl_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The inverse of [`purl_escape`] (for reading any purl).
pub fn purl_unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The name and version of a `pkg:cargo/NAME@VERSION` purl.
pub fn cargo_purl(purl: &str) -> Option<(String, String)> {
    let rest = purl.strip_prefix("pkg:cargo/")?;
    let rest = rest.split(['?', '#']).next()?;
    let (name, version) = rest.split_once('@')?;
    Some((purl_unescape(name), purl_unescape(version)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            product: "Hearth HRH-1".into(),
            version: "1.4.2".into(),
            organization: Some("Example Ltd".into()),
            debian: vec![DebianPackage {
                name: "libstdc++6".into(),
                version: "1:12.2.0-14+deb12u1".into(),
                architecture: "amd64".into(),
            }],
            debian_release: Some("bookworm".into()),
            crates: vec![
                Crate {
                    name: "hearthd".into(),
                    version: "0.1.0".into(),
                    from_registry: false,
                    checksum: None,
                    depends_on: vec![1],
                },
                Crate {
                    name: "ring".into(),
                    version: "0.17.14".into(),
                    from_registry: true,
                    checksum: Some("ab".repeat(32)),
                    depends_on: vec![],
                },
            ],
            namespace: "https://spdx.example.com/".into(),
            created: "2026-12-07T10:00:00Z".into(),
        }
    }

    #[test]
    fn packages_carry_escaped_purls_and_the_crates_their_edges() {
        let doc = document(&inputs());
        let deb = &doc.packages[1];
        assert_eq!(
            deb.purl(),
            Some(
                "pkg:deb/debian/libstdc%2B%2B6@1%3A12.2.0-14%2Bdeb12u1?arch=amd64&distro=bookworm"
            )
        );
        assert_eq!(deb.spdx_id, "SPDXRef-deb-libstdc--6-1-12.2.0-14-deb12u1");
        let ring = &doc.packages[3];
        assert_eq!(ring.purl(), Some("pkg:cargo/ring@0.17.14"));
        assert_eq!(ring.checksums[0].algorithm, "SHA256");
        assert!(
            doc.packages[2].purl().is_none(),
            "a workspace crate has no purl"
        );
        let kinds: Vec<(&str, &str, &str)> = doc
            .relationships
            .iter()
            .map(|r| {
                (
                    r.spdx_element_id.as_str(),
                    r.relationship_type.as_str(),
                    r.related_spdx_element.as_str(),
                )
            })
            .collect();
        assert!(kinds.contains(&("SPDXRef-DOCUMENT", "DESCRIBES", FIRMWARE)));
        assert!(kinds.contains(&(FIRMWARE, "CONTAINS", "SPDXRef-crate-hearthd-0.1.0")));
        assert!(!kinds.contains(&(FIRMWARE, "CONTAINS", "SPDXRef-crate-ring-0.17.14")));
        assert!(kinds.contains(&(
            "SPDXRef-crate-hearthd-0.1.0",
            "DEPENDS_ON",
            "SPDXRef-crate-ring-0.17.14"
        )));
    }

    #[test]
    fn the_namespace_follows_the_content() {
        let a = document(&inputs());
        let mut other = inputs();
        other.crates[1].version = "0.17.15".into();
        let b = document(&other);
        assert_ne!(a.document_namespace, b.document_namespace);
        assert_eq!(a.document_namespace, document(&inputs()).document_namespace);
        assert!(
            a.document_namespace
                .starts_with("https://spdx.example.com/Hearth-HRH-1-1.4.2-")
        );
    }

    #[test]
    fn cargo_purls_read_back() {
        assert_eq!(
            cargo_purl("pkg:cargo/rustls-webpki@0.102.8?x=1"),
            Some(("rustls-webpki".into(), "0.102.8".into()))
        );
        assert_eq!(
            cargo_purl("pkg:cargo/a@1.0.0%2Bbuild"),
            Some(("a".into(), "1.0.0+build".into()))
        );
        assert_eq!(cargo_purl("pkg:deb/debian/a@1"), None);
    }

    #[test]
    fn a_malformed_package_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("packages");
        std::fs::write(&p, "# comment\nadduser 3.134 all\nbroken line\n").unwrap();
        let e = read_debian_packages(&p).unwrap_err().to_string();
        assert!(e.contains(":3:") && e.contains("broken line"), "{e}");
        std::fs::write(&p, "b 1 all\na 2 amd64\na 2 amd64\n").unwrap();
        let list = read_debian_packages(&p).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name, "a");
    }

    #[test]
    fn the_workspace_lock_gives_hearthd_and_its_dependencies() {
        let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
        let crates = read_crates(&lock, &["hearthd".into()]).unwrap();
        let names: Vec<&str> = crates.iter().map(|c| c.name.as_str()).collect();
        for expected in ["hearthd", "rustls", "ring", "tokio", "credentials"] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        assert!(
            !names.contains(&"rustsec"),
            "the release tool's own crates are not hearthd's"
        );
        let ring = crates.iter().find(|c| c.name == "ring").unwrap();
        assert!(ring.from_registry && ring.checksum.is_some());
        let e = read_crates(&lock, &["no-such-crate".into()]).unwrap_err();
        assert!(e.to_string().contains("no workspace crate"), "{e}");
    }
}

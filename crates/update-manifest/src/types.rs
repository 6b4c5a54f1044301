//! Parse-don't-validate newtypes for every field of the manifest.
//!
//! Each type can only hold a valid value, and each has exactly one text
//! form, so a value that parses re-encodes to the same bytes (the canonical
//! encoding check in [`crate::manifest`] depends on it).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a field's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is invalid: {why}")]
pub struct FieldError {
    /// The kind of field (e.g. "sha256", "artifact URL").
    pub what: &'static str,
    /// The offending text, cut to 80 characters.
    pub value: String,
    /// What the rule is.
    pub why: &'static str,
}

fn field_err(what: &'static str, value: &str, why: &'static str) -> FieldError {
    FieldError {
        what,
        value: value.chars().take(80).collect(),
        why,
    }
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// Decodes exactly `N` bytes of lowercase hex (uppercase is refused so that
/// every value has one spelling).
fn from_hex<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N], FieldError> {
    if s.len() != N * 2 {
        return Err(field_err(what, s, "wrong length of hex digits"));
    }
    let mut out = [0u8; N];
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        let nib = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        match (nib(pair[0]), nib(pair[1])) {
            (Some(h), Some(l)) => out[i] = (h << 4) | l,
            _ => return Err(field_err(what, s, "only lowercase hex digits 0-9a-f")),
        }
    }
    Ok(out)
}

macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // Borrowed when possible, owned when the JSON had escapes.
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

macro_rules! hex_bytes {
    ($(#[$doc:meta])* $t:ident, $n:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $t([u8; $n]);

        impl $t {
            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; $n]) -> Self {
                $t(bytes)
            }
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $n] {
                &self.0
            }
        }
        impl FromStr for $t {
            type Err = FieldError;
            fn from_str(s: &str) -> Result<Self, FieldError> {
                from_hex::<$n>($what, s).map($t)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&to_hex(&self.0))
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), self)
            }
        }
        string_serde!($t);
    };
}

hex_bytes!(
    /// A SHA-256 digest, written as 64 lowercase hex digits.
    Sha256,
    32,
    "sha256"
);
hex_bytes!(
    /// A key's id: the SHA-256 of its DER SubjectPublicKeyInfo, i.e.
    /// `openssl pkey -pubin -in key.pub.pem -outform DER | sha256sum`.
    KeyId,
    32,
    "key id"
);
hex_bytes!(
    /// An ECDSA P-256 signature in the fixed 64-byte `r || s` form.
    Signature,
    64,
    "signature"
);

impl Sha256 {
    /// The digest of `data`.
    pub fn digest(data: &[u8]) -> Sha256 {
        Sha256::from_ring(ring::digest::digest(&ring::digest::SHA256, data))
    }

    /// A finished `ring` SHA-256.
    pub(crate) fn from_ring(digest: ring::digest::Digest) -> Sha256 {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Sha256(out)
    }
}

/// An ECDSA P-256 public key: the 65-byte uncompressed point, written as
/// 130 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 65]);

/// DER prefix of a P-256 SubjectPublicKeyInfo before the 65-byte point
/// (SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING }).
pub(crate) const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

impl PublicKey {
    /// Wraps an uncompressed point (`0x04 || x || y`).
    pub fn from_point(point: &[u8]) -> Result<PublicKey, FieldError> {
        let p: [u8; 65] = point
            .try_into()
            .map_err(|_| field_err("public key", "", "not 65 bytes"))?;
        if p[0] != 0x04 {
            return Err(field_err(
                "public key",
                "",
                "not an uncompressed P-256 point",
            ));
        }
        Ok(PublicKey(p))
    }
    /// Reads a DER SubjectPublicKeyInfo of a P-256 key.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, FieldError> {
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) => PublicKey::from_point(point),
            None => Err(field_err(
                "public key",
                "",
                "not a P-256 (prime256v1) SubjectPublicKeyInfo",
            )),
        }
    }
    /// The uncompressed point.
    pub fn point(&self) -> &[u8; 65] {
        &self.0
    }
    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        let mut v = P256_SPKI_PREFIX.to_vec();
        v.extend_from_slice(&self.0);
        v
    }
    /// The key's id (SHA-256 of the SubjectPublicKeyInfo).
    pub fn key_id(&self) -> KeyId {
        KeyId(*Sha256::digest(&self.spki_der()).as_bytes())
    }
}

impl FromStr for PublicKey {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        let p = from_hex::<65>("public key", s)?;
        PublicKey::from_point(&p)
    }
}
impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}
impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(id {})", self.key_id())
    }
}
string_serde!(PublicKey);

/// A release version `MAJOR.MINOR.PATCH`, compared numerically.
///
/// Decimal numbers without leading zeros, so `1.02.0` (which would compare
/// equal to `1.2.0`) is refused rather than accepted as a second spelling.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    /// Incompatible changes.
    pub major: u32,
    /// Features.
    pub minor: u32,
    /// Fixes.
    pub patch: u32,
}

impl Version {
    /// `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }
}

impl FromStr for Version {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        let bad = |why| field_err("version", s, why);
        let mut parts = s.split('.');
        let mut next = || -> Result<u32, FieldError> {
            let p = parts.next().ok_or_else(|| bad("not MAJOR.MINOR.PATCH"))?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("each part must be decimal digits"));
            }
            if p.len() > 1 && p.starts_with('0') {
                return Err(bad("leading zeros are not allowed"));
            }
            p.parse()
                .map_err(|_| bad("a part is larger than 4294967295"))
        };
        let v = Version::new(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(bad("not MAJOR.MINOR.PATCH"));
        }
        Ok(v)
    }
}
impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}
impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({self})")
    }
}
string_serde!(Version);

/// A point in time, whole seconds, UTC, written `YYYY-MM-DDTHH:MM:SSZ`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

const TS_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

impl Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z. Values outside 1970..=9999 are
    /// refused because they have no text form here.
    pub fn from_unix(secs: i64) -> Result<Timestamp, FieldError> {
        // 9999-12-31T23:59:59Z
        if (0..=253_402_300_799).contains(&secs) {
            Ok(Timestamp(secs))
        } else {
            Err(field_err(
                "timestamp",
                &secs.to_string(),
                "outside 1970-01-01 .. 9999-12-31",
            ))
        }
    }
    /// The current system time. A device must make sure its clock is
    /// sane first (see docs/update-security.md, "Trusted time").
    pub fn now() -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Timestamp(i64::try_from(secs).unwrap_or(i64::MAX).min(253_402_300_799))
    }
    /// Seconds since the Unix epoch.
    pub fn unix(&self) -> i64 {
        self.0
    }
    /// `self + secs`, clamped to the representable range.
    pub fn plus_seconds(&self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs).clamp(0, 253_402_300_799))
    }
}

impl FromStr for Timestamp {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        let pdt = time::PrimitiveDateTime::parse(s, TS_FORMAT)
            .map_err(|_| field_err("timestamp", s, "not YYYY-MM-DDTHH:MM:SSZ (UTC)"))?;
        let t = Timestamp::from_unix(pdt.assume_utc().unix_timestamp())?;
        // time accepts e.g. a one-digit hour? Make sure there is one spelling.
        if t.to_string() != s {
            return Err(field_err("timestamp", s, "not YYYY-MM-DDTHH:MM:SSZ (UTC)"));
        }
        Ok(t)
    }
}
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dt = time::OffsetDateTime::from_unix_timestamp(self.0).map_err(|_| fmt::Error)?;
        let s = dt.format(TS_FORMAT).map_err(|_| fmt::Error)?;
        f.write_str(&s)
    }
}
impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}
string_serde!(Timestamp);

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// An `https://` URL (artifacts, release notes). Plain `http`, user
/// information (`user@host`), fragments, spaces and non-ASCII characters
/// are refused; the text is kept as given (no normalisation).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ArtifactUrl(String);

impl ArtifactUrl {
    /// The URL text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The path part (from the first `/` after the host), or "" when none.
    pub fn path(&self) -> &str {
        let rest = &self.0["https://".len()..];
        rest.find('/').map(|i| &rest[i..]).unwrap_or("")
    }
}

impl FromStr for ArtifactUrl {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        let bad = |why| field_err("URL", s, why);
        if s.len() > MAX_URL_LEN {
            return Err(bad("longer than 2048 characters"));
        }
        let rest = s
            .strip_prefix("https://")
            .ok_or_else(|| bad("must start with https:// (plain http is not allowed)"))?;
        // RFC 3986 characters only; no space, quotes, angle brackets, ...
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~:/?[]@!$&'()*+,;=%".contains(c);
        if !rest.chars().all(allowed) {
            return Err(bad("contains a character not allowed in a URL"));
        }
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        if authority.is_empty() {
            return Err(bad("has no host"));
        }
        if authority.contains('@') {
            return Err(bad("must not carry user information (user@host)"));
        }
        if authority.starts_with(':') || authority.starts_with('.') {
            return Err(bad("has no host"));
        }
        Ok(ArtifactUrl(s.to_owned()))
    }
}
impl fmt::Display for ArtifactUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for ArtifactUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArtifactUrl({})", self.0)
    }
}
string_serde!(ArtifactUrl);

/// A product model designation (EN 303 645 5.3-16), e.g. `HRH-1`.
///
/// It is also the name of the board section in `sw-description`, so it
/// follows libconfig's setting-name rule: a letter, then letters, digits,
/// `-` or `_`; at most 64 characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Model(String);

impl Model {
    /// The model text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl FromStr for Model {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        let ok = (1..=64).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Model(s.to_owned()))
        } else {
            Err(field_err(
                "model",
                s,
                "must be 1-64 characters: a letter, then letters, digits, '-' or '_'",
            ))
        }
    }
}
impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Model({})", self.0)
    }
}
string_serde!(Model);

/// A hardware revision, the second word of `/etc/hwrevision` (e.g. `A`,
/// `A-qemux86-64`): 1-64 letters, digits, `.`, `-` or `_`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HardwareRevision(String);

impl HardwareRevision {
    /// The revision text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl FromStr for HardwareRevision {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        let ok = (1..=64).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if ok {
            Ok(HardwareRevision(s.to_owned()))
        } else {
            Err(field_err(
                "hardware revision",
                s,
                "must be 1-64 letters, digits, '.', '-' or '_'",
            ))
        }
    }
}
impl fmt::Display for HardwareRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for HardwareRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HardwareRevision({})", self.0)
    }
}
string_serde!(HardwareRevision);

/// Short human text (product name, key name): 1-128 characters, no
/// control characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Label(String);

impl Label {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl FromStr for Label {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        if (1..=128).contains(&s.chars().count()) && !s.chars().any(char::is_control) {
            Ok(Label(s.to_owned()))
        } else {
            Err(field_err(
                "label",
                s,
                "must be 1-128 characters without control characters",
            ))
        }
    }
}
impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Label({:?})", self.0)
    }
}
string_serde!(Label);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sha256_has_one_spelling() {
        let s = "ab".repeat(32);
        assert_eq!(s.parse::<Sha256>().unwrap().to_string(), s);
        assert!("AB".repeat(32).parse::<Sha256>().is_err());
        assert!("ab".repeat(31).parse::<Sha256>().is_err());
        assert!("ab".repeat(33).parse::<Sha256>().is_err());
        assert!(format!("{}zz", "ab".repeat(31)).parse::<Sha256>().is_err());
    }

    #[test]
    fn versions_compare_numerically_and_refuse_leading_zeros() {
        let v = |s: &str| s.parse::<Version>();
        assert!(v("1.10.0").unwrap() > v("1.9.99").unwrap());
        for bad in [
            "1.02.0",
            "1.2",
            "1.2.3.4",
            "",
            "a.b.c",
            "1.2.-3",
            "1.2.+3",
            "4294967296.0.0",
            " 1.2.3",
        ] {
            assert!(v(bad).is_err(), "{bad}");
        }
        assert_eq!(v("0.0.0").unwrap(), Version::new(0, 0, 0));
    }

    #[test]
    fn urls_must_be_https_without_userinfo() {
        let u = |s: &str| s.parse::<ArtifactUrl>();
        assert!(u("https://updates.example.com/hrh-1/1.0.0/a.swu").is_ok());
        assert_eq!(u("https://h/x/y").unwrap().path(), "/x/y");
        for bad in [
            "http://updates.example.com/a.swu",
            "HTTPS://updates.example.com/a.swu",
            "https://user:pw@example.com/a",
            "https:///a",
            "https://",
            "https://ex ample.com/",
            "https://example.com/a\"b",
            "https://example.com/a#frag",
            "https://example.com/é",
            "file:///etc/passwd",
        ] {
            assert!(u(bad).is_err(), "{bad}");
        }
        assert!(u(&format!("https://e.com/{}", "a".repeat(MAX_URL_LEN))).is_err());
    }

    #[test]
    fn timestamps_are_utc_whole_seconds() {
        let t: Timestamp = "2027-01-02T03:04:05Z".parse().unwrap();
        assert_eq!(t.to_string(), "2027-01-02T03:04:05Z");
        for bad in [
            "2027-01-02T03:04:05+00:00",
            "2027-01-02T03:04:05.5Z",
            "2027-01-02 03:04:05Z",
            "2027-1-02T03:04:05Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad}");
        }
    }

    #[test]
    fn hwrevision_file_gives_model_and_revision() {
        let (m, r) = crate::DeviceFacts::parse_hwrevision("HRH-1 A-qemux86-64\n").unwrap();
        assert_eq!((m.as_str(), r.as_str()), ("HRH-1", "A-qemux86-64"));
        assert!(crate::DeviceFacts::parse_hwrevision("HRH-1").is_err());
        assert!(crate::DeviceFacts::parse_hwrevision("HRH-1 A extra").is_err());
    }

    #[test]
    fn model_and_revision_rules() {
        assert!("HRH-1".parse::<Model>().is_ok());
        assert!("1HRH".parse::<Model>().is_err());
        assert!("HRH 1".parse::<Model>().is_err());
        assert!("A-qemux86-64".parse::<HardwareRevision>().is_ok());
        assert!("A B".parse::<HardwareRevision>().is_err());
        assert!("x".repeat(65).parse::<Model>().is_err());
    }
}

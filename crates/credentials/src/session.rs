//! Login sessions: random 256-bit tokens, idle and absolute timeouts, a
//! per-session CSRF token, logout, and "revoke all other sessions".
//!
//! Only a SHA-256 of each token is kept (domain-separated), so a memory dump
//! or a state file does not hold a usable cookie. Tokens are 256-bit random,
//! so a fast unsalted hash is enough: there is nothing to brute-force.
//!
//! The CSRF token is derived from the session token (SHA-256 with another
//! label): the server can recompute it from the cookie on every request, the
//! page gets it from the login answer or an authenticated GET, and nobody
//! without the cookie can compute it. Comparison is constant-time.
//!
//! Sessions live in memory only: a reboot logs everybody out.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use ring::digest::{Context, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Cookie name. The `__Host-` prefix makes browsers require `Secure`,
/// `Path=/` and no `Domain`, so no other host can set or shadow it.
pub const COOKIE_NAME: &str = "__Host-hearth_session";

const TOKEN_BYTES: usize = 32;
const LOOKUP_LABEL: &[u8] = b"hearth session lookup v1\0";
const CSRF_LABEL: &[u8] = b"hearth session csrf v1\0";

/// Tunables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// A session unused for this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after login, used or not.
    pub absolute_timeout: Duration,
    /// Most concurrent sessions; the least recently used is dropped first.
    pub max_sessions: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 60 * 60),
            max_sessions: 16,
        }
    }
}

/// The session token as sent in the cookie (43 characters of base64url).
/// Zeroized on drop; `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(Zeroizing<String>);

impl SessionToken {
    /// The cookie value.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The full `Set-Cookie` value: `HttpOnly; Secure; SameSite=Strict`,
    /// valid until the absolute timeout.
    pub fn set_cookie(&self, config: &SessionConfig) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{COOKIE_NAME}={}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
            self.expose(),
            config.absolute_timeout.as_secs()
        ))
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// The `Set-Cookie` value that deletes the session cookie (logout).
pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

/// A session's CSRF token, to be sent back in a header (e.g.
/// `X-CSRF-Token`) with every state-changing request.
#[derive(Clone, PartialEq, Eq)]
pub struct CsrfToken(String);

impl CsrfToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfToken(<redacted>)")
    }
}

/// A public handle on a session (safe to log): the first 8 bytes of the
/// lookup hash, hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a fresh login gets.
#[derive(Debug)]
pub struct NewSession {
    pub token: SessionToken,
    pub csrf: CsrfToken,
    pub id: SessionId,
}

/// A valid session, as seen by a request handler.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: SessionId,
    pub csrf: CsrfToken,
}

/// Why a request's session is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error("You are not logged in, or your session ended; log in again.")]
    Unknown,
    #[error("Your session ended after a period of inactivity; log in again.")]
    IdleTimeout,
    #[error("Your session reached its maximum length; log in again.")]
    Expired,
    #[error("The request is missing a valid CSRF token; reload the page and try again.")]
    CsrfMismatch,
    #[error("The operating system's random number generator failed; try again.")]
    Random,
}

#[derive(Debug)]
struct Session {
    id: SessionId,
    created: Instant,
    last_seen: Instant,
}

/// All live sessions. Keep one per daemon behind a `Mutex`.
#[derive(Debug)]
pub struct Sessions {
    config: SessionConfig,
    by_hash: HashMap<[u8; 32], Session>,
    rng: SystemRandom,
}

impl Sessions {
    pub fn new(config: SessionConfig) -> Self {
        Self {
            config,
            by_hash: HashMap::new(),
            rng: SystemRandom::new(),
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Starts a session after a successful login.
    pub fn create(&mut self, now: Instant) -> Result<NewSession, SessionError> {
        self.purge_expired(now);
        if self.by_hash.len() >= self.config.max_sessions.max(1)
            && let Some(oldest) = self
                .by_hash
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k)
        {
            self.by_hash.remove(&oldest);
        }
        let mut raw = Zeroizing::new([0u8; TOKEN_BYTES]);
        self.rng
            .fill(raw.as_mut())
            .map_err(|_| SessionError::Random)?;
        let token = SessionToken(Zeroizing::new(base64url(raw.as_slice())));
        let key = digest(LOOKUP_LABEL, token.expose());
        let id = SessionId(hex(&key[..8]));
        self.by_hash.insert(
            key,
            Session {
                id: id.clone(),
                created: now,
                last_seen: now,
            },
        );
        Ok(NewSession {
            csrf: csrf_for(&token),
            token,
            id,
        })
    }

    /// Checks the cookie value of a request and marks the session as used.
    pub fn validate(
        &mut self,
        cookie_token: &str,
        now: Instant,
    ) -> Result<SessionInfo, SessionError> {
        let key = digest(LOOKUP_LABEL, cookie_token);
        let session = self.by_hash.get_mut(&key).ok_or(SessionError::Unknown)?;
        if now >= session.created + self.config.absolute_timeout {
            self.by_hash.remove(&key);
            return Err(SessionError::Expired);
        }
        if now >= session.last_seen + self.config.idle_timeout {
            self.by_hash.remove(&key);
            return Err(SessionError::IdleTimeout);
        }
        session.last_seen = now;
        let csrf = CsrfToken(hex(&digest(CSRF_LABEL, cookie_token)));
        Ok(SessionInfo {
            id: session.id.clone(),
            csrf,
        })
    }

    /// [`Sessions::validate`] plus the CSRF check, for state-changing
    /// requests (POST, PUT, DELETE).
    pub fn validate_with_csrf(
        &mut self,
        cookie_token: &str,
        presented_csrf: &str,
        now: Instant,
    ) -> Result<SessionInfo, SessionError> {
        let info = self.validate(cookie_token, now)?;
        if bool::from(info.csrf.0.as_bytes().ct_eq(presented_csrf.as_bytes())) {
            Ok(info)
        } else {
            Err(SessionError::CsrfMismatch)
        }
    }

    /// Ends the session of this cookie (logout). Unknown tokens are ignored.
    pub fn logout(&mut self, cookie_token: &str) {
        self.by_hash.remove(&digest(LOOKUP_LABEL, cookie_token));
    }

    /// Ends every session but `keep` (after a password change).
    pub fn revoke_all_except(&mut self, keep: &SessionId) {
        self.by_hash.retain(|_, s| &s.id == keep);
    }

    /// Ends every session (factory reset).
    pub fn revoke_all(&mut self) {
        self.by_hash.clear();
    }

    /// Drops expired sessions; `create` calls it, the daemon may call it
    /// periodically too.
    pub fn purge_expired(&mut self, now: Instant) {
        let c = &self.config;
        self.by_hash.retain(|_, s| {
            now < s.created + c.absolute_timeout && now < s.last_seen + c.idle_timeout
        });
    }

    /// Number of live (not yet purged) sessions.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

fn csrf_for(token: &SessionToken) -> CsrfToken {
    CsrfToken(hex(&digest(CSRF_LABEL, token.expose())))
}

pub(crate) fn digest(label: &[u8], token: &str) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(label);
    ctx.update(token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

/// Unpadded base64url (RFC 4648 §5): cookie-safe.
pub(crate) fn base64url(bytes: &[u8]) -> String {
    const ALPHA: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            s.push(char::from(ALPHA[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mins(m: u64) -> Duration {
        Duration::from_secs(60 * m)
    }

    #[test]
    fn tokens_are_256_bit_random_and_distinct() {
        let mut s = Sessions::new(SessionConfig {
            max_sessions: 1000,
            ..SessionConfig::default()
        });
        let now = Instant::now();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            let n = s.create(now).expect("session");
            assert_eq!(n.token.expose().len(), 43, "32 bytes in unpadded base64url");
            assert!(
                n.token
                    .expose()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert!(seen.insert(n.token.expose().to_owned()));
        }
    }

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn only_hashes_of_tokens_are_stored() {
        let mut s = Sessions::new(SessionConfig::default());
        let n = s.create(Instant::now()).expect("session");
        let dump = format!("{s:?}");
        assert!(!dump.contains(n.token.expose()));
        assert!(!dump.contains(n.csrf.as_str()));
        assert!(!format!("{n:?}").contains(n.token.expose()));
    }

    #[test]
    fn a_session_validates_and_carries_its_csrf_token() {
        let mut s = Sessions::new(SessionConfig::default());
        let t0 = Instant::now();
        let n = s.create(t0).expect("session");
        let info = s.validate(n.token.expose(), t0 + mins(1)).expect("valid");
        assert_eq!(info.id, n.id);
        assert_eq!(info.csrf, n.csrf);
        assert!(
            s.validate_with_csrf(n.token.expose(), n.csrf.as_str(), t0 + mins(2))
                .is_ok()
        );
        assert_eq!(
            s.validate_with_csrf(n.token.expose(), "", t0 + mins(2))
                .map(|_| ()),
            Err(SessionError::CsrfMismatch)
        );
        // Another session's CSRF token does not fit.
        let other = s.create(t0).expect("session");
        assert_eq!(
            s.validate_with_csrf(n.token.expose(), other.csrf.as_str(), t0 + mins(2))
                .map(|_| ()),
            Err(SessionError::CsrfMismatch)
        );
        assert_eq!(
            s.validate("forged", t0).map(|_| ()),
            Err(SessionError::Unknown)
        );
    }

    #[test]
    fn idle_timeout_ends_an_unused_session_and_use_extends_it() {
        let mut s = Sessions::new(SessionConfig::default());
        let t0 = Instant::now();
        let n = s.create(t0).expect("session");
        // Used every 29 minutes: still valid after 2 hours.
        for k in 1..=4 {
            assert!(s.validate(n.token.expose(), t0 + mins(29 * k)).is_ok());
        }
        assert_eq!(
            s.validate(n.token.expose(), t0 + mins(29 * 4 + 30))
                .map(|_| ()),
            Err(SessionError::IdleTimeout)
        );
        // Gone for good, even if used again "in time".
        assert_eq!(
            s.validate(n.token.expose(), t0 + mins(29 * 4)).map(|_| ()),
            Err(SessionError::Unknown)
        );
    }

    #[test]
    fn absolute_timeout_ends_even_a_busy_session() {
        let mut s = Sessions::new(SessionConfig::default());
        let t0 = Instant::now();
        let n = s.create(t0).expect("session");
        let mut now = t0;
        while now < t0 + mins(12 * 60 - 10) {
            now += mins(10);
            assert!(s.validate(n.token.expose(), now).is_ok());
        }
        now += mins(10);
        assert_eq!(
            s.validate(n.token.expose(), now).map(|_| ()),
            Err(SessionError::Expired)
        );
    }

    #[test]
    fn logout_and_revoke_others() {
        let mut s = Sessions::new(SessionConfig::default());
        let t0 = Instant::now();
        let a = s.create(t0).expect("a");
        let b = s.create(t0).expect("b");
        let c = s.create(t0).expect("c");
        s.logout(a.token.expose());
        assert_eq!(
            s.validate(a.token.expose(), t0).map(|_| ()),
            Err(SessionError::Unknown)
        );
        s.revoke_all_except(&b.id);
        assert!(s.validate(b.token.expose(), t0).is_ok());
        assert_eq!(
            s.validate(c.token.expose(), t0).map(|_| ()),
            Err(SessionError::Unknown)
        );
        s.revoke_all();
        assert!(s.is_empty());
    }

    #[test]
    fn session_count_is_bounded() {
        let mut s = Sessions::new(SessionConfig {
            max_sessions: 3,
            ..SessionConfig::default()
        });
        let t0 = Instant::now();
        let first = s.create(t0).expect("s");
        for i in 1..10 {
            s.create(t0 + Duration::from_secs(i)).expect("s");
        }
        assert_eq!(s.len(), 3);
        assert!(
            s.validate(first.token.expose(), t0 + Duration::from_secs(10))
                .is_err()
        );
    }

    #[test]
    fn cookies_have_the_required_attributes() {
        let mut s = Sessions::new(SessionConfig::default());
        let n = s.create(Instant::now()).expect("s");
        let c = n.token.set_cookie(s.config());
        assert!(c.starts_with("__Host-hearth_session="));
        for attr in [
            "; Path=/",
            "; HttpOnly",
            "; Secure",
            "; SameSite=Strict",
            "; Max-Age=43200",
        ] {
            assert!(c.contains(attr), "{attr}");
        }
        assert!(clear_cookie().contains("Max-Age=0"));
    }
}

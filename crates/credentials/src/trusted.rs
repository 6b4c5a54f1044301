//! Trusted browsers (OWASP's "device cookies"): a browser the owner logged
//! in with gets a long-lived random cookie, and with it a guessing budget
//! of its own in the [`crate::throttle`], so an attacker who exhausts the
//! anonymous limits does not lock the owner out.
//!
//! The cookie proves only "this browser logged in here before"; it is not a
//! session and opens nothing by itself: the password is still checked. Only
//! a domain-separated SHA-256 of each token is kept, as for sessions, so the
//! state file holds no usable cookie. The list is short (most recent first)
//! and is cleared by a factory reset and, except for the browser that made
//! the change, by a password change.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::session::{base64url, digest, hex};

/// Cookie name; `__Host-` as for the session cookie.
pub const TRUSTED_COOKIE_NAME: &str = "__Host-hearth_trusted";
/// How long a browser stays trusted without logging in again.
pub const TRUSTED_FOR_SECS: u64 = 365 * 24 * 60 * 60;
/// Most browsers trusted at once; the one trusted longest ago goes first.
pub const MAX_TRUSTED: usize = 16;

const TOKEN_BYTES: usize = 32;
const LOOKUP_LABEL: &[u8] = b"hearth trusted browser v1\0";

/// A public handle on a trusted browser (safe to log and to store): the
/// first 8 bytes of its token's lookup hash, hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrustedId(String);

impl fmt::Display for TrustedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The cookie value a browser is given. Zeroized on drop; `Debug` is
/// redacted.
#[derive(Clone)]
pub struct TrustedToken(Zeroizing<String>);

impl TrustedToken {
    /// The full `Set-Cookie` value: `HttpOnly; Secure; SameSite=Strict`.
    pub fn set_cookie(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{TRUSTED_COOKIE_NAME}={}; Path=/; Max-Age={TRUSTED_FOR_SECS}; HttpOnly; Secure; \
             SameSite=Strict",
            self.0.as_str()
        ))
    }
}

impl fmt::Debug for TrustedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TrustedToken(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Browser {
    /// Hex SHA-256 of the token (lookup label).
    hash: String,
    /// Unix seconds of the login that made it trusted.
    since: u64,
}

/// The trusted browsers, persisted as JSON by the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedBrowsers {
    browsers: Vec<Browser>,
}

/// The random number generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("The operating system's random number generator failed; try again.")]
pub struct RandomFailed;

impl TrustedBrowsers {
    /// Trusts a new browser as of `now_unix`, dropping the oldest beyond
    /// [`MAX_TRUSTED`].
    pub fn trust(&mut self, now_unix: u64) -> Result<(TrustedToken, TrustedId), RandomFailed> {
        let mut raw = Zeroizing::new([0u8; TOKEN_BYTES]);
        SystemRandom::new()
            .fill(raw.as_mut())
            .map_err(|_| RandomFailed)?;
        let token = TrustedToken(Zeroizing::new(base64url(raw.as_slice())));
        let hash = digest(LOOKUP_LABEL, &token.0);
        self.browsers.insert(
            0,
            Browser {
                hash: hex(&hash),
                since: now_unix,
            },
        );
        self.browsers.truncate(MAX_TRUSTED);
        Ok((token, id_of(&hash)))
    }

    /// The browser presenting `cookie`, if it is trusted and not expired.
    pub fn recognise(&self, cookie: &str, now_unix: u64) -> Option<TrustedId> {
        let hash = digest(LOOKUP_LABEL, cookie);
        let wanted = hex(&hash);
        self.browsers
            .iter()
            .find(|b| b.hash == wanted && now_unix < b.since.saturating_add(TRUSTED_FOR_SECS))
            .map(|_| id_of(&hash))
    }

    /// Forgets every browser but `keep` (after a password change).
    pub fn forget_all_except(&mut self, keep: Option<&TrustedId>) {
        self.browsers
            .retain(|b| keep.is_some_and(|keep| b.hash.get(..16) == Some(keep.0.as_str())));
    }

    pub fn len(&self) -> usize {
        self.browsers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.browsers.is_empty()
    }
}

fn id_of(hash: &[u8; 32]) -> TrustedId {
    TrustedId(hex(&hash[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie_value(token: &TrustedToken) -> String {
        let cookie = token.set_cookie();
        let (pair, _) = cookie.split_once(';').expect("attributes");
        pair.strip_prefix(&format!("{TRUSTED_COOKIE_NAME}="))
            .expect("name")
            .to_owned()
    }

    #[test]
    fn a_trusted_browser_is_recognised_and_others_are_not() {
        let mut list = TrustedBrowsers::default();
        let (token, id) = list.trust(1_000).expect("random");
        let value = cookie_value(&token);
        assert_eq!(list.recognise(&value, 1_001), Some(id));
        assert_eq!(list.recognise("forged", 1_001), None);
        assert_eq!(
            list.recognise(&value, 1_000 + TRUSTED_FOR_SECS),
            None,
            "trust ends after a year without a login"
        );
        let json = serde_json::to_string(&list).expect("json");
        assert!(!json.contains(&value), "the store never holds the cookie");
        let back: TrustedBrowsers = serde_json::from_str(&json).expect("parse");
        assert!(back.recognise(&value, 1_001).is_some());
    }

    #[test]
    fn the_list_is_bounded_and_a_password_change_keeps_only_its_browser() {
        let mut list = TrustedBrowsers::default();
        let tokens: Vec<_> = (0..MAX_TRUSTED + 3)
            .map(|i| list.trust(i as u64).expect("random"))
            .collect();
        assert_eq!(list.len(), MAX_TRUSTED);
        assert!(
            list.recognise(&cookie_value(&tokens[0].0), 100).is_none(),
            "the oldest went first"
        );
        let (keep, keep_id) = &tokens[MAX_TRUSTED + 2];
        list.forget_all_except(Some(keep_id));
        assert_eq!(list.len(), 1);
        assert!(list.recognise(&cookie_value(keep), 100).is_some());
        list.forget_all_except(None);
        assert!(list.is_empty());
    }
}

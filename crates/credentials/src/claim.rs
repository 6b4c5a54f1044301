//! The claim state machine and its persisted form.
//!
//! ```text
//!              first_boot / factory_reset
//!                        │
//!                        ▼
//!   ┌──────────── Unclaimed { setup_code_hash } ◀──────────┐
//!   │ claim(code ✓, password ✓)                             │ factory_reset
//!   ▼                                                       │
//!  Claimed { password_hash, … } ── change_password ──▶ Claimed
//!                                                           │
//!  Broken { reason } (record missing, corrupt, unknown) ────┘
//! ```
//!
//! `Broken` is never written to disk: it is what a missing or unreadable
//! record loads as, and it refuses everything but a factory reset (fail
//! closed: a damaged store must never reopen the setup flow).
//!
//! Every method that hashes is blocking (see [`crate::hashing`]). The daemon
//! keeps one `Credentials` behind a `std::sync::Mutex` and calls these
//! methods inside `spawn_blocking` while holding the lock: that makes a claim
//! atomic, so of any number of concurrent claims exactly one wins, and it
//! also serialises argon2 work (one 19 MiB hash at a time).

use std::fmt;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::hashing::{self, HashError, HashParams, PhcHash};
use crate::password::Password;
use crate::policy::{PasswordPolicy, Rejection};
use crate::setup_code::{SetupCode, SetupCodeError};

/// Version of the persisted record layout.
pub const RECORD_VERSION: u32 = 1;

/// The persisted form (JSON via `serde_json`), written by the daemon's
/// atomic state store. Read it back with [`Credentials::load`], which also
/// checks the hashes; deserializing this type directly does not.
///
/// ```json
/// {"version":1,"state":{"kind":"claimed","password_hash":"$argon2id$v=19$…",
///  "claimed_at_unix":1764320000,"password_changed_at_unix":1764320000}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRecord {
    pub version: u32,
    pub state: StoredState,
}

/// The persisted states (there is no persisted "broken").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoredState {
    Unclaimed {
        setup_code_hash: PhcHash,
    },
    Claimed {
        password_hash: PhcHash,
        claimed_at_unix: u64,
        password_changed_at_unix: u64,
    },
}

/// Why the credential record cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokenReason {
    #[error("the credential record is missing although the device was set up before")]
    Missing,
    #[error("the credential record is damaged ({0})")]
    Corrupt(String),
    #[error("the credential record has version {found}, which this firmware does not understand")]
    UnknownVersion { found: u32 },
}

impl BrokenReason {
    /// The sentence for the owner (web UI, console).
    pub fn advice(&self) -> String {
        format!(
            "The device's login data cannot be read: {self}. Logins are refused to keep the device safe; \
             factory-reset the device (see the manual) and set it up again."
        )
    }
}

/// The in-memory state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialState {
    Unclaimed {
        setup_code_hash: PhcHash,
    },
    Claimed {
        password_hash: PhcHash,
        claimed_at_unix: u64,
        password_changed_at_unix: u64,
    },
    Broken {
        reason: BrokenReason,
    },
}

/// The coarse state, for routing ("device not set up", login, or refuse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Unclaimed,
    Claimed,
    Broken,
}

/// The device's credentials. See the module docs for the locking contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    state: CredentialState,
}

/// Why a claim failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    #[error("This device is already set up; log in instead.")]
    AlreadyClaimed,
    #[error("{}", .0.advice())]
    Broken(BrokenReason),
    #[error("{0}")]
    MalformedCode(SetupCodeError),
    #[error("The setup code is wrong. Check the code on the device console or label.")]
    WrongCode,
    #[error("{0}")]
    Rejected(Rejection),
    #[error("{0}")]
    Hash(HashError),
}

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    #[error("This device is not set up yet; set it up with the setup code first.")]
    NotClaimed,
    #[error("{}", .0.advice())]
    Broken(BrokenReason),
    #[error("The password is wrong.")]
    WrongPassword,
    #[error("{0}")]
    Hash(HashError),
}

/// Why a password change failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    #[error("This device is not set up yet; set it up with the setup code first.")]
    NotClaimed,
    #[error("{}", .0.advice())]
    Broken(BrokenReason),
    #[error("The current password is wrong.")]
    WrongPassword,
    #[error("{0}")]
    Rejected(Rejection),
    #[error("{0}")]
    Hash(HashError),
}

/// Why the record cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    #[error(
        "The credential record is broken and is not written back; keep the damaged file until a factory reset replaces it."
    )]
    Broken,
    #[error("The credential record could not be serialised: {0}")]
    Serialize(String),
}

/// A successful login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct LoginOutcome {
    /// The stored hash was re-made with the current parameters: persist the
    /// record.
    pub rehashed: bool,
}

impl ClaimError {
    /// Stable identifier for the JSON API and the log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AlreadyClaimed => "already_claimed",
            Self::Broken(_) => "credentials_broken",
            Self::MalformedCode(_) => "malformed_code",
            Self::WrongCode => "wrong_code",
            Self::Rejected(r) => r.code(),
            Self::Hash(_) => "internal",
        }
    }
}

impl LoginError {
    /// Stable identifier for the JSON API and the log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotClaimed => "not_claimed",
            Self::Broken(_) => "credentials_broken",
            Self::WrongPassword => "wrong_password",
            Self::Hash(_) => "internal",
        }
    }
}

impl ChangeError {
    /// Stable identifier for the JSON API and the log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotClaimed => "not_claimed",
            Self::Broken(_) => "credentials_broken",
            Self::WrongPassword => "wrong_password",
            Self::Rejected(r) => r.code(),
            Self::Hash(_) => "internal",
        }
    }
}

impl Credentials {
    /// Factory state with a new setup code. Call this only on a device whose
    /// state store has never been initialised (first boot, or right after a
    /// factory reset wiped it); a record that disappears later is
    /// [`Credentials::missing`], never a new first boot.
    pub fn first_boot(code: &SetupCode, params: &HashParams) -> Result<Self, HashError> {
        Ok(Self {
            state: CredentialState::Unclaimed {
                setup_code_hash: hashing::hash_setup_code(code, params)?,
            },
        })
    }

    /// The stored record failed its integrity check: fail closed.
    pub fn corrupt(reason: impl Into<String>) -> Self {
        Self {
            state: CredentialState::Broken {
                reason: BrokenReason::Corrupt(reason.into()),
            },
        }
    }

    /// The record should exist but does not: fail closed.
    pub fn missing() -> Self {
        Self {
            state: CredentialState::Broken {
                reason: BrokenReason::Missing,
            },
        }
    }

    /// Loads the persisted record. Never fails: anything unreadable becomes
    /// [`CredentialState::Broken`].
    pub fn load(json: &[u8]) -> Self {
        let broken = |reason| Self {
            state: CredentialState::Broken { reason },
        };
        let record: CredentialRecord = match serde_json::from_slice(json) {
            Ok(r) => r,
            Err(e) => {
                // A record from a newer firmware may not parse; say so if the
                // version field is readable.
                if let Ok(serde_json::Value::Object(map)) =
                    serde_json::from_slice::<serde_json::Value>(json)
                    && let Some(v) = map.get("version").and_then(serde_json::Value::as_u64)
                    && v != u64::from(RECORD_VERSION)
                {
                    return broken(BrokenReason::UnknownVersion {
                        found: u32::try_from(v).unwrap_or(u32::MAX),
                    });
                }
                return broken(BrokenReason::Corrupt(format!("not a valid record: {e}")));
            }
        };
        if record.version != RECORD_VERSION {
            return broken(BrokenReason::UnknownVersion {
                found: record.version,
            });
        }
        let (hash, state) = match record.state {
            StoredState::Unclaimed { setup_code_hash } => (
                setup_code_hash.clone(),
                CredentialState::Unclaimed { setup_code_hash },
            ),
            StoredState::Claimed {
                password_hash,
                claimed_at_unix,
                password_changed_at_unix,
            } => (
                password_hash.clone(),
                CredentialState::Claimed {
                    password_hash,
                    claimed_at_unix,
                    password_changed_at_unix,
                },
            ),
        };
        match hash.params() {
            Ok(_) => Self { state },
            Err(e) => broken(BrokenReason::Corrupt(format!("bad hash: {e}"))),
        }
    }

    /// The persisted form, or `None` when broken.
    pub fn to_record(&self) -> Option<CredentialRecord> {
        let state = match &self.state {
            CredentialState::Unclaimed { setup_code_hash } => StoredState::Unclaimed {
                setup_code_hash: setup_code_hash.clone(),
            },
            CredentialState::Claimed {
                password_hash,
                claimed_at_unix,
                password_changed_at_unix,
            } => StoredState::Claimed {
                password_hash: password_hash.clone(),
                claimed_at_unix: *claimed_at_unix,
                password_changed_at_unix: *password_changed_at_unix,
            },
            CredentialState::Broken { .. } => return None,
        };
        Some(CredentialRecord {
            version: RECORD_VERSION,
            state,
        })
    }

    /// The JSON to hand to the state store.
    pub fn to_json(&self) -> Result<Vec<u8>, PersistError> {
        let record = self.to_record().ok_or(PersistError::Broken)?;
        serde_json::to_vec_pretty(&record).map_err(|e| PersistError::Serialize(e.to_string()))
    }

    pub fn state(&self) -> &CredentialState {
        &self.state
    }

    pub fn status(&self) -> Status {
        match self.state {
            CredentialState::Unclaimed { .. } => Status::Unclaimed,
            CredentialState::Claimed { .. } => Status::Claimed,
            CredentialState::Broken { .. } => Status::Broken,
        }
    }

    /// Claims the device: the setup code must match and the password must
    /// pass the policy. Blocking (up to two argon2id computations).
    ///
    /// The cheap policy check runs before the code is verified, so a policy
    /// answer tells nothing about the code. The daemon must count every
    /// `Err` as a failed attempt in the throttle (only `Ok` is a success).
    pub fn claim(
        &mut self,
        code_input: &str,
        password: &Password,
        confirmation: &Password,
        policy: &PasswordPolicy,
        params: &HashParams,
        now_unix: u64,
    ) -> Result<(), ClaimError> {
        let setup_code_hash = match &self.state {
            CredentialState::Unclaimed { setup_code_hash } => setup_code_hash,
            CredentialState::Claimed { .. } => return Err(ClaimError::AlreadyClaimed),
            CredentialState::Broken { reason } => return Err(ClaimError::Broken(reason.clone())),
        };
        let code = SetupCode::parse(code_input).map_err(ClaimError::MalformedCode)?;
        policy
            .check_pair(password, confirmation, Some(&code))
            .map_err(ClaimError::Rejected)?;
        if !hashing::verify_setup_code(&code, setup_code_hash).map_err(ClaimError::Hash)? {
            return Err(ClaimError::WrongCode);
        }
        let password_hash = hashing::hash_password(password, params).map_err(ClaimError::Hash)?;
        // Only now, with everything computed, does the state change: the
        // setup code stops working in the same step.
        self.state = CredentialState::Claimed {
            password_hash,
            claimed_at_unix: now_unix,
            password_changed_at_unix: now_unix,
        };
        Ok(())
    }

    /// Checks the owner's password. On success with a hash weaker than
    /// `params`, re-hashes it (then `rehashed` is true: persist the record).
    /// Blocking.
    pub fn verify_login(
        &mut self,
        password: &Password,
        params: &HashParams,
    ) -> Result<LoginOutcome, LoginError> {
        let password_hash = match &mut self.state {
            CredentialState::Claimed { password_hash, .. } => password_hash,
            CredentialState::Unclaimed { .. } => return Err(LoginError::NotClaimed),
            CredentialState::Broken { reason } => return Err(LoginError::Broken(reason.clone())),
        };
        if !hashing::verify_password(password, password_hash).map_err(LoginError::Hash)? {
            return Err(LoginError::WrongPassword);
        }
        let mut rehashed = false;
        if hashing::needs_rehash(password_hash, params) {
            // A failed rehash is not a failed login: keep the old hash.
            if let Ok(new) = hashing::hash_password(password, params) {
                *password_hash = new;
                rehashed = true;
            }
        }
        Ok(LoginOutcome { rehashed })
    }

    /// Changes the password; the current one is required. On success the
    /// daemon revokes all other sessions and persists the record. Blocking.
    #[allow(clippy::too_many_arguments)]
    pub fn change_password(
        &mut self,
        current: &Password,
        new: &Password,
        confirmation: &Password,
        policy: &PasswordPolicy,
        params: &HashParams,
        now_unix: u64,
    ) -> Result<(), ChangeError> {
        let (password_hash, changed_at) = match &mut self.state {
            CredentialState::Claimed {
                password_hash,
                password_changed_at_unix,
                ..
            } => (password_hash, password_changed_at_unix),
            CredentialState::Unclaimed { .. } => return Err(ChangeError::NotClaimed),
            CredentialState::Broken { reason } => return Err(ChangeError::Broken(reason.clone())),
        };
        if !hashing::verify_password(current, password_hash).map_err(ChangeError::Hash)? {
            return Err(ChangeError::WrongPassword);
        }
        policy
            .check_pair(new, confirmation, None)
            .map_err(ChangeError::Rejected)?;
        *password_hash = hashing::hash_password(new, params).map_err(ChangeError::Hash)?;
        *changed_at = now_unix;
        Ok(())
    }

    /// Factory reset from any state (including broken): back to unclaimed
    /// with a freshly generated setup code, which is returned for the
    /// console. The daemon also wipes sessions, TLS key and settings.
    /// Blocking.
    pub fn factory_reset(&mut self, params: &HashParams) -> Result<SetupCode, ClaimError> {
        let code = SetupCode::generate().map_err(ClaimError::MalformedCode)?;
        self.factory_reset_with_code(&code, params)
            .map_err(ClaimError::Hash)?;
        Ok(code)
    }

    /// Factory reset to a given code (the production line's code from the
    /// factory file). Blocking.
    pub fn factory_reset_with_code(
        &mut self,
        code: &SetupCode,
        params: &HashParams,
    ) -> Result<(), HashError> {
        *self = Self::first_boot(code, params)?;
        Ok(())
    }
}

/// What happened, for the daemon's log. Holds the address and the time,
/// never a password or code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEvent {
    pub kind: AuthEventKind,
    pub client: Option<IpAddr>,
    pub at: SystemTime,
}

/// Kinds of [`AuthEvent`]. `reason` fields take the `code()` of the error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthEventKind {
    LoginSucceeded,
    LoginFailed { reason: &'static str },
    Throttled { retry_after_secs: u64 },
    ClaimSucceeded,
    ClaimFailed { reason: &'static str },
    PasswordChanged,
    PasswordChangeFailed { reason: &'static str },
    Logout,
    FactoryReset,
    CredentialsBroken,
}

impl AuthEvent {
    pub fn new(kind: AuthEventKind, client: Option<IpAddr>, at: SystemTime) -> Self {
        Self { kind, client, at }
    }

    /// Stable event name for structured logs.
    pub fn name(&self) -> &'static str {
        match self.kind {
            AuthEventKind::LoginSucceeded => "login_succeeded",
            AuthEventKind::LoginFailed { .. } => "login_failed",
            AuthEventKind::Throttled { .. } => "throttled",
            AuthEventKind::ClaimSucceeded => "claim_succeeded",
            AuthEventKind::ClaimFailed { .. } => "claim_failed",
            AuthEventKind::PasswordChanged => "password_changed",
            AuthEventKind::PasswordChangeFailed { .. } => "password_change_failed",
            AuthEventKind::Logout => "logout",
            AuthEventKind::FactoryReset => "factory_reset",
            AuthEventKind::CredentialsBroken => "credentials_broken",
        }
    }
}

impl fmt::Display for AuthEvent {
    /// `event=login_failed client=192.0.2.1 at_unix=1764320000 reason=wrong_password`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event={}", self.name())?;
        match self.client {
            Some(ip) => write!(f, " client={ip}")?,
            None => f.write_str(" client=local")?,
        }
        let secs = self
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        write!(f, " at_unix={secs}")?;
        match &self.kind {
            AuthEventKind::LoginFailed { reason }
            | AuthEventKind::ClaimFailed { reason }
            | AuthEventKind::PasswordChangeFailed { reason } => write!(f, " reason={reason}"),
            AuthEventKind::Throttled { retry_after_secs } => {
                write!(f, " retry_after_secs={retry_after_secs}")
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::tests::FAST;
    use std::sync::{Arc, Mutex};

    const CODE: &str = "K7QM-3XPA-9D";
    const PW: &str = "tiger lamp rope falcon";
    const NOW: u64 = 1_764_320_000;

    fn unclaimed() -> Credentials {
        Credentials::first_boot(&SetupCode::parse(CODE).expect("valid"), &FAST).expect("hash")
    }

    fn pw(s: &str) -> Password {
        Password::from(s)
    }

    fn claimed() -> Credentials {
        let mut c = unclaimed();
        c.claim(
            CODE,
            &pw(PW),
            &pw(PW),
            &PasswordPolicy::default(),
            &FAST,
            NOW,
        )
        .expect("claim");
        c
    }

    #[test]
    fn claim_with_the_right_code_and_a_good_password() {
        let mut c = unclaimed();
        assert_eq!(c.status(), Status::Unclaimed);
        c.claim(
            "k7qm 3xpa 9d",
            &pw(PW),
            &pw(PW),
            &PasswordPolicy::default(),
            &FAST,
            NOW,
        )
        .expect("claim");
        assert_eq!(c.status(), Status::Claimed);
        assert_eq!(
            c.verify_login(&pw(PW), &FAST),
            Ok(LoginOutcome { rehashed: false })
        );
    }

    #[test]
    fn claim_refuses_wrong_codes_and_weak_passwords_without_changing_state() {
        let policy = PasswordPolicy::default();
        let mut c = unclaimed();
        let before = c.clone();
        assert_eq!(
            c.claim("K7QM-3XPA-9E", &pw(PW), &pw(PW), &policy, &FAST, NOW),
            Err(ClaimError::WrongCode)
        );
        assert!(matches!(
            c.claim("K7QM-3XPA", &pw(PW), &pw(PW), &policy, &FAST, NOW),
            Err(ClaimError::MalformedCode(SetupCodeError::WrongLength {
                found: 8
            }))
        ));
        assert_eq!(
            c.claim(CODE, &pw("password"), &pw("password"), &policy, &FAST, NOW),
            Err(ClaimError::Rejected(Rejection::TooShort {
                min: 15,
                found: 8
            }))
        );
        assert_eq!(
            c.claim(
                CODE,
                &pw(PW),
                &pw("something else entirely"),
                &policy,
                &FAST,
                NOW
            ),
            Err(ClaimError::Rejected(Rejection::Mismatch))
        );
        assert_eq!(
            c.claim(
                CODE,
                &pw("k7qm3xpa9d plus words"),
                &pw("k7qm3xpa9d plus words"),
                &policy,
                &FAST,
                NOW
            ),
            Err(ClaimError::Rejected(Rejection::ContainsSetupCode))
        );
        assert_eq!(c, before);
    }

    #[test]
    fn the_setup_code_stops_working_after_the_claim() {
        let mut c = claimed();
        let other = "another long password";
        assert_eq!(
            c.claim(
                CODE,
                &pw(other),
                &pw(other),
                &PasswordPolicy::default(),
                &FAST,
                NOW
            ),
            Err(ClaimError::AlreadyClaimed)
        );
        assert_eq!(
            c.verify_login(&pw(other), &FAST),
            Err(LoginError::WrongPassword)
        );
        assert_eq!(
            c.verify_login(&pw(CODE), &FAST),
            Err(LoginError::WrongPassword)
        );
        assert!(c.verify_login(&pw(PW), &FAST).is_ok());
    }

    #[test]
    fn login_before_the_claim_is_refused() {
        let mut c = unclaimed();
        assert_eq!(c.verify_login(&pw(PW), &FAST), Err(LoginError::NotClaimed));
        assert_eq!(
            c.verify_login(&pw(CODE), &FAST),
            Err(LoginError::NotClaimed)
        );
    }

    #[test]
    fn concurrent_claims_have_exactly_one_winner() {
        let shared = Arc::new(Mutex::new(unclaimed()));
        let policy = Arc::new(PasswordPolicy::default());
        let mut handles = Vec::new();
        for i in 0..50 {
            let shared = Arc::clone(&shared);
            let policy = Arc::clone(&policy);
            handles.push(std::thread::spawn(move || {
                // Half use the right code, each with its own password.
                let code = if i % 2 == 0 { CODE } else { "K7QM-3XPA-9E" };
                let p = format!("contender number {i} here");
                let mut c = shared.lock().expect("not poisoned");
                c.claim(code, &pw(&p), &pw(&p), &policy, &FAST, NOW)
                    .map(|()| p)
            }));
        }
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        let winners: Vec<(usize, &String)> = results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().ok().map(|p| (i, p)))
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        assert_eq!(winners[0].0 % 2, 0, "the winner used the right code");
        for (i, r) in results.iter().enumerate() {
            if i == winners[0].0 {
                continue;
            }
            // Losers either had the wrong code, or came after the winner.
            let ok = matches!(r, Err(ClaimError::AlreadyClaimed))
                || (i % 2 == 1 && matches!(r, Err(ClaimError::WrongCode)));
            assert!(ok, "contender {i}: {r:?}");
        }
        let winners: Vec<&String> = winners.into_iter().map(|(_, p)| p).collect();
        let mut c = shared.lock().expect("not poisoned");
        assert!(c.verify_login(&pw(winners[0]), &FAST).is_ok());
    }

    #[test]
    fn change_password_requires_the_current_one() {
        let policy = PasswordPolicy::default();
        let mut c = claimed();
        let new = "a completely new passphrase";
        assert_eq!(
            c.change_password(
                &pw("not the current one"),
                &pw(new),
                &pw(new),
                &policy,
                &FAST,
                NOW + 5
            ),
            Err(ChangeError::WrongPassword)
        );
        assert_eq!(
            c.change_password(&pw(PW), &pw("short"), &pw("short"), &policy, &FAST, NOW + 5),
            Err(ChangeError::Rejected(Rejection::TooShort {
                min: 15,
                found: 5
            }))
        );
        c.change_password(&pw(PW), &pw(new), &pw(new), &policy, &FAST, NOW + 5)
            .expect("change");
        assert_eq!(
            c.verify_login(&pw(PW), &FAST),
            Err(LoginError::WrongPassword)
        );
        assert!(c.verify_login(&pw(new), &FAST).is_ok());
        assert!(matches!(
            c.state(),
            CredentialState::Claimed { claimed_at_unix: NOW, password_changed_at_unix, .. } if *password_changed_at_unix == NOW + 5
        ));
    }

    #[test]
    fn weaker_hashes_are_upgraded_at_login() {
        let mut c = claimed();
        // The smallest settings `validate` accepts (OWASP 7 MiB × 5).
        let stronger = HashParams {
            memory_kib: 7_168,
            iterations: 5,
            parallelism: 1,
        };
        assert_eq!(
            c.verify_login(&pw(PW), &stronger),
            Ok(LoginOutcome { rehashed: true })
        );
        let CredentialState::Claimed { password_hash, .. } = c.state() else {
            panic!("claimed")
        };
        assert_eq!(password_hash.params(), Ok(stronger));
        assert_eq!(
            c.verify_login(&pw(PW), &stronger),
            Ok(LoginOutcome { rehashed: false })
        );
        // A wrong password never triggers a rehash.
        assert_eq!(
            c.verify_login(&pw("wrong"), &HashParams::default()),
            Err(LoginError::WrongPassword)
        );
    }

    #[test]
    fn factory_reset_returns_to_unclaimed_with_a_new_code() {
        let mut c = claimed();
        let code = c.factory_reset(&FAST).expect("reset");
        assert_eq!(c.status(), Status::Unclaimed);
        assert_eq!(c.verify_login(&pw(PW), &FAST), Err(LoginError::NotClaimed));
        let new = "the next owner's password";
        // The old code no longer works (unless the new draw equals it: 2^-50).
        if code.canonical() != b"K7QM3XPA9D" {
            assert_eq!(
                c.claim(
                    CODE,
                    &pw(new),
                    &pw(new),
                    &PasswordPolicy::default(),
                    &FAST,
                    NOW
                ),
                Err(ClaimError::WrongCode)
            );
        }
        c.claim(
            &code.grouped(),
            &pw(new),
            &pw(new),
            &PasswordPolicy::default(),
            &FAST,
            NOW,
        )
        .expect("claim");
    }

    #[test]
    fn persisted_record_round_trips() {
        for c in [unclaimed(), claimed()] {
            let json = c.to_json().expect("serialise");
            assert_eq!(Credentials::load(&json), c);
        }
        let json = String::from_utf8(claimed().to_json().expect("json")).expect("utf8");
        assert!(json.contains("\"kind\": \"claimed\""), "{json}");
        assert!(json.contains("$argon2id$v=19$"));
        assert!(!json.contains(PW));
    }

    #[test]
    fn missing_or_corrupt_records_fail_closed() {
        let good = String::from_utf8(claimed().to_json().expect("json")).expect("utf8");
        let unclaimed_json = String::from_utf8(unclaimed().to_json().expect("json")).expect("utf8");
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty file"),
            ("{".into(), "truncated"),
            (good[..good.len() / 2].into(), "half written"),
            ("null".into(), "null"),
            ("{}".into(), "no fields"),
            (
                good.replace("\"kind\": \"claimed\"", "\"kind\": \"unclaimed\""),
                "claimed record relabelled",
            ),
            (good.replace("$argon2id$", "$argon2i$"), "weaker algorithm"),
            (good.replace("$argon2id$v=19$", "garbage"), "mangled hash"),
            (
                unclaimed_json.replace("setup_code_hash", "setup_code"),
                "renamed field",
            ),
            (
                good.replace("\"version\": 1", "\"version\": 2"),
                "newer version",
            ),
            (good.replace('{', "{\"extra\": 1, "), "unknown field"),
        ];
        let policy = PasswordPolicy::default();
        for (json, what) in cases {
            let mut c = Credentials::load(json.as_bytes());
            assert_eq!(c.status(), Status::Broken, "{what}");
            assert!(
                matches!(c.verify_login(&pw(PW), &FAST), Err(LoginError::Broken(_))),
                "{what}"
            );
            assert!(
                matches!(
                    c.claim(CODE, &pw(PW), &pw(PW), &policy, &FAST, NOW),
                    Err(ClaimError::Broken(_))
                ),
                "{what}"
            );
            assert!(matches!(
                c.change_password(&pw(PW), &pw(PW), &pw(PW), &policy, &FAST, NOW),
                Err(ChangeError::Broken(_))
            ));
            assert_eq!(c.to_json(), Err(PersistError::Broken), "{what}");
        }
        let v2 = Credentials::load(good.replace("\"version\": 1", "\"version\": 2").as_bytes());
        assert_eq!(
            v2.state(),
            &CredentialState::Broken {
                reason: BrokenReason::UnknownVersion { found: 2 }
            }
        );
        let mut m = Credentials::missing();
        assert_eq!(m.status(), Status::Broken);
        let advice = LoginError::Broken(BrokenReason::Missing).to_string();
        assert!(advice.contains("factory-reset"), "{advice}");
        // Only a factory reset leaves the broken state.
        let code = m.factory_reset(&FAST).expect("reset");
        assert_eq!(m.status(), Status::Unclaimed);
        m.claim(&code.grouped(), &pw(PW), &pw(PW), &policy, &FAST, NOW)
            .expect("claim after reset");
    }

    #[test]
    fn events_log_address_and_time_but_no_secret() {
        let at = UNIX_EPOCH + std::time::Duration::from_secs(NOW);
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let e = AuthEvent::new(
            AuthEventKind::LoginFailed {
                reason: LoginError::WrongPassword.code(),
            },
            Some(ip),
            at,
        );
        assert_eq!(
            e.to_string(),
            "event=login_failed client=192.0.2.7 at_unix=1764320000 reason=wrong_password"
        );
        let t = AuthEvent::new(
            AuthEventKind::Throttled {
                retry_after_secs: 30,
            },
            Some(ip),
            at,
        );
        assert_eq!(
            t.to_string(),
            "event=throttled client=192.0.2.7 at_unix=1764320000 retry_after_secs=30"
        );
        let r = AuthEvent::new(AuthEventKind::FactoryReset, None, at);
        assert_eq!(
            r.to_string(),
            "event=factory_reset client=local at_unix=1764320000"
        );
    }
}

//! The owner's access to the device (EN 303 645 5.1): the `credentials`
//! crate's claim, login and session logic, wired to the state store, the
//! clock and the blocking pool.
//!
//! Every change to the credentials is made on a copy, written to the store,
//! and only then swapped in: if the write fails, memory and disk still agree.
//!
//! Guessing is throttled per trusted browser or per address, never per
//! account (`credentials::throttle`), and the throttle is saved before each
//! secret is checked, so neither a restart nor a crash is a free reset.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use credentials::Password;
use credentials::claim::ChangeError;
use credentials::claim::{AuthEvent, AuthEventKind, ClaimError, Credentials, LoginError, Status};
use credentials::hashing::HashParams;
use credentials::policy::PasswordPolicy;
use credentials::session::{NewSession, SessionConfig, SessionError, SessionInfo, Sessions};
use credentials::setup_code::SetupCode;
use credentials::throttle::{Requester, Snapshot, Throttle, ThrottleConfig, Throttled};
use credentials::trusted::{TrustedBrowsers, TrustedToken};
use tokio::sync::Semaphore;

use crate::persist::{Store, StoreError};

const RECORD: &str = "credentials";
const THROTTLE_RECORD: &str = "throttle";
const TRUSTED_RECORD: &str = "trusted-browsers";
/// argon2id takes 19 MiB per computation; two at once bounds a login flood
/// to under 40 MiB on the smallest Pi.
const CONCURRENT_HASHES: usize = 2;

#[derive(Debug)]
pub struct Access {
    store: Arc<Store>,
    credentials: Arc<Mutex<Credentials>>,
    sessions: Mutex<Sessions>,
    throttle: Mutex<Throttle>,
    trusted: Mutex<TrustedBrowsers>,
    hashing: Arc<Semaphore>,
    policy: Arc<PasswordPolicy>,
    params: HashParams,
}

/// Why a request was refused; the web layer turns it into a response.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "This device is not set up yet. Open the setup page and enter the setup code shown on \
         the device's console or label."
    )]
    NotSetUp,
    #[error("{0}")]
    Broken(String),
    #[error("{0}")]
    Throttled(Throttled),
    #[error("{0}")]
    Claim(ClaimError),
    #[error("{0}")]
    Login(LoginError),
    #[error("{0}")]
    Change(ChangeError),
    #[error("{0}")]
    Session(SessionError),
    #[error("The device could not save the change ({0}). Nothing was changed; try again.")]
    Store(StoreError),
    #[error("Internal error: {0}. Try again; if it persists, restart the device.")]
    Internal(String),
}

impl AccessError {
    /// A stable identifier, for the JSON API and the log.
    pub fn code(&self) -> &'static str {
        match self {
            AccessError::NotSetUp => "not_set_up",
            AccessError::Broken(_) => "credentials_broken",
            AccessError::Throttled(_) => "throttled",
            AccessError::Claim(e) => e.code(),
            AccessError::Login(e) => e.code(),
            AccessError::Change(e) => e.code(),
            AccessError::Session(SessionError::CsrfMismatch) => "csrf",
            AccessError::Session(_) => "not_logged_in",
            AccessError::Store(_) => "storage",
            AccessError::Internal(_) => "internal",
        }
    }
}

/// Who is asking: the address, and the trusted-browser cookie if the
/// browser sent one.
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: IpAddr,
    pub trusted_cookie: Option<String>,
}

/// A successful claim or login: the session, and a trusted-browser cookie
/// when the browser did not hold a valid one yet.
#[derive(Debug)]
pub struct Welcome {
    pub session: NewSession,
    pub trusted: Option<TrustedToken>,
}

/// What first boot prints on the console.
#[derive(Debug)]
pub struct FirstBoot {
    pub setup_code: SetupCode,
}

impl Access {
    /// Loads the credentials, or on a factory-new store makes the setup code
    /// (or takes the production line's) and stores its hash.
    pub fn open(
        store: &Store,
        factory_code: Option<&Path>,
    ) -> Result<(Credentials, Option<FirstBoot>), crate::Error> {
        let params = HashParams::default();
        if store.is_new() {
            let setup_code = factory_setup_code(factory_code)?;
            let credentials = Credentials::first_boot(&setup_code, &params)
                .map_err(|e| crate::Error::Credentials(e.to_string()))?;
            let json = credentials
                .to_json()
                .map_err(|e| crate::Error::Credentials(e.to_string()))?;
            store.write_bytes(RECORD, &json)?;
            return Ok((credentials, Some(FirstBoot { setup_code })));
        }
        let credentials = match store.read_bytes(RECORD) {
            Ok(json) => Credentials::load(&json),
            Err(StoreError::Missing { .. }) => Credentials::missing(),
            Err(StoreError::Corrupt { reason, .. }) => Credentials::corrupt(reason),
            Err(error) => return Err(error.into()),
        };
        if let credentials::claim::CredentialState::Broken { reason } = credentials.state() {
            // Fail closed, loudly: the owner reads this on the console.
            tracing::error!("{}", reason.advice());
            crate::console::show(&format!("hearthd: {}", reason.advice()));
        }
        Ok((credentials, None))
    }

    pub fn new(store: Arc<Store>, credentials: Credentials, policy: PasswordPolicy) -> Access {
        let now = Instant::now();
        let throttle = match store.read_optional::<Snapshot>(THROTTLE_RECORD) {
            Ok(Some(saved)) => Throttle::restore(ThrottleConfig::default(), saved, now),
            Ok(None) => Throttle::new(ThrottleConfig::default(), now),
            Err(error) => {
                // Only hearthd writes it; a damaged file starts the throttle
                // over with an empty burst, never with free guesses.
                tracing::warn!(%error, "the saved throttle state is unreadable; starting it over");
                Throttle::restore(ThrottleConfig::default(), Snapshot::default(), now)
            }
        };
        let trusted = store
            .read_optional::<TrustedBrowsers>(TRUSTED_RECORD)
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "the trusted browsers are unreadable; trusting none");
                None
            })
            .unwrap_or_default();
        Access {
            store,
            credentials: Arc::new(Mutex::new(credentials)),
            sessions: Mutex::new(Sessions::new(SessionConfig::default())),
            throttle: Mutex::new(throttle),
            trusted: Mutex::new(trusted),
            hashing: Arc::new(Semaphore::new(CONCURRENT_HASHES)),
            policy: Arc::new(policy),
            params: HashParams::default(),
        }
    }

    pub fn status(&self) -> Status {
        lock(&self.credentials).status()
    }

    pub fn password_min_length(&self) -> usize {
        self.policy.min_chars()
    }

    pub fn session_config(&self) -> SessionConfig {
        lock(&self.sessions).config().clone()
    }

    /// The claim: setup code and a new password. Exactly one of any number
    /// of concurrent claims wins; wrong codes count toward the throttle. On
    /// a claimed device the answer costs nothing and counts nothing: there
    /// is no code left to guess.
    pub async fn claim(
        &self,
        client: &Client,
        code: String,
        password: Password,
        confirmation: Password,
    ) -> Result<Welcome, AccessError> {
        if self.status() == Status::Claimed {
            return Err(AccessError::Claim(ClaimError::AlreadyClaimed));
        }
        let (policy, params) = (self.policy.clone(), self.params);
        let requester = self.requester(client);
        let outcome = self
            .throttled(&requester, move |credentials| {
                let mut next = credentials.clone();
                next.claim(
                    &code,
                    &password,
                    &confirmation,
                    &policy,
                    &params,
                    unix_now(),
                )
                .map_err(AccessError::Claim)?;
                Ok(next)
            })
            .await;
        self.log(
            client.addr,
            &outcome,
            AuthEventKind::ClaimSucceeded,
            |reason| AuthEventKind::ClaimFailed { reason },
        );
        outcome?;
        self.welcome(&requester)
    }

    pub async fn login(&self, client: &Client, password: Password) -> Result<Welcome, AccessError> {
        match self.status() {
            Status::Unclaimed => return Err(AccessError::NotSetUp),
            Status::Broken => return Err(self.broken()),
            Status::Claimed => {}
        }
        let params = self.params;
        let requester = self.requester(client);
        let outcome = self
            .throttled(&requester, move |credentials| {
                let mut next = credentials.clone();
                // A re-hash with stronger parameters changes `next`; `throttled` stores it.
                let _rehashed = next
                    .verify_login(&password, &params)
                    .map_err(AccessError::Login)?;
                Ok(next)
            })
            .await;
        self.log(
            client.addr,
            &outcome,
            AuthEventKind::LoginSucceeded,
            |reason| AuthEventKind::LoginFailed { reason },
        );
        outcome?;
        self.welcome(&requester)
    }

    /// Changing the password needs the current one, and ends every other
    /// session and every other browser's trust.
    pub async fn change_password(
        &self,
        client: &Client,
        session: &SessionInfo,
        current: Password,
        new: Password,
        confirmation: Password,
    ) -> Result<(), AccessError> {
        let (policy, params) = (self.policy.clone(), self.params);
        let requester = self.requester(client);
        let outcome = self
            .throttled(&requester, move |credentials| {
                let mut next = credentials.clone();
                next.change_password(&current, &new, &confirmation, &policy, &params, unix_now())
                    .map_err(AccessError::Change)?;
                Ok(next)
            })
            .await;
        self.log(
            client.addr,
            &outcome,
            AuthEventKind::PasswordChanged,
            |reason| AuthEventKind::PasswordChangeFailed { reason },
        );
        outcome?;
        lock(&self.sessions).revoke_all_except(&session.id);
        let keep = match &requester {
            Requester::Trusted(id) => Some(id),
            Requester::Anonymous(_) => None,
        };
        self.change_trusted(|trusted| trusted.forget_all_except(keep))?;
        tracing::info!(client = %client.addr, "password changed; other sessions and trusted browsers ended");
        Ok(())
    }

    /// The requester a client's attempts count against: its trusted-browser
    /// budget when it holds a valid cookie, else its address.
    fn requester(&self, client: &Client) -> Requester {
        client
            .trusted_cookie
            .as_deref()
            .and_then(|cookie| lock(&self.trusted).recognise(cookie, unix_now()))
            .map_or(Requester::Anonymous(client.addr), Requester::Trusted)
    }

    /// A new session, and trust for a browser that has none yet.
    fn welcome(&self, requester: &Requester) -> Result<Welcome, AccessError> {
        let session = self.new_session()?;
        let trusted = match requester {
            Requester::Trusted(_) => None,
            Requester::Anonymous(_) => {
                let mut token = None;
                self.change_trusted(|trusted| {
                    token = trusted.trust(unix_now()).ok().map(|(token, _)| token);
                })?;
                token
            }
        };
        Ok(Welcome { session, trusted })
    }

    /// Changes the trusted browsers, saved before the change takes effect.
    fn change_trusted(&self, change: impl FnOnce(&mut TrustedBrowsers)) -> Result<(), AccessError> {
        let mut current = lock(&self.trusted);
        let mut next = current.clone();
        change(&mut next);
        self.store
            .write(TRUSTED_RECORD, &next)
            .map_err(AccessError::Store)?;
        *current = next;
        Ok(())
    }

    /// Saves the throttle; a failure is logged, not fatal: the attempt is
    /// still counted in memory.
    fn save_throttle(&self, throttle: &Throttle) {
        if let Err(error) = self
            .store
            .write(THROTTLE_RECORD, &throttle.snapshot(Instant::now()))
        {
            tracing::warn!(%error, "could not save the throttle state");
        }
    }

    /// The session of a request. Refuses before the claim, and when the
    /// credentials are broken.
    pub fn session(
        &self,
        token: Option<&str>,
        csrf: Option<&str>,
    ) -> Result<SessionInfo, AccessError> {
        match self.status() {
            Status::Unclaimed => return Err(AccessError::NotSetUp),
            Status::Broken => return Err(self.broken()),
            Status::Claimed => {}
        }
        let token = token.ok_or(AccessError::Session(SessionError::Unknown))?;
        let mut sessions = lock(&self.sessions);
        let now = Instant::now();
        match csrf {
            None => sessions.validate(token, now),
            Some(csrf) => sessions.validate_with_csrf(token, csrf, now),
        }
        .map_err(AccessError::Session)
    }

    pub fn logout(&self, token: &str) {
        lock(&self.sessions).logout(token);
    }

    fn new_session(&self) -> Result<NewSession, AccessError> {
        let mut sessions = lock(&self.sessions);
        sessions.purge_expired(Instant::now());
        sessions
            .create(Instant::now())
            .map_err(AccessError::Session)
    }

    /// What the owner must do when the credentials cannot be read.
    pub fn broken_advice(&self) -> Option<String> {
        match lock(&self.credentials).state() {
            credentials::claim::CredentialState::Broken { reason } => Some(reason.advice()),
            _ => None,
        }
    }

    fn broken(&self) -> AccessError {
        self.broken_advice().map_or_else(
            || AccessError::Internal("credential state changed".into()),
            AccessError::Broken,
        )
    }

    /// Runs a credential change under the throttle, on the blocking pool
    /// (argon2id), and persists the result before it takes effect.
    async fn throttled<F>(&self, requester: &Requester, change: F) -> Result<(), AccessError>
    where
        F: FnOnce(&Credentials) -> Result<Credentials, AccessError> + Send + 'static,
    {
        let attempt = {
            let mut throttle = lock(&self.throttle);
            let attempt = throttle
                .begin(Instant::now(), requester)
                .map_err(AccessError::Throttled)?;
            // On disk before the secret is checked: a crash while it is
            // checked still counts the attempt.
            self.save_throttle(&throttle);
            attempt
        };
        let permit = self
            .hashing
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| AccessError::Internal(e.to_string()))?;
        let (credentials, store) = (self.credentials.clone(), self.store.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // Holding the lock across the check and the swap is what makes
            // concurrent claims resolve to exactly one winner.
            let mut current = lock(&credentials);
            let next = change(&current)?;
            if next != *current {
                let json = next
                    .to_json()
                    .map_err(|e| AccessError::Internal(e.to_string()))?;
                store
                    .write_bytes(RECORD, &json)
                    .map_err(AccessError::Store)?;
                *current = next;
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(AccessError::Internal(e.to_string())));
        let mut throttle = lock(&self.throttle);
        match outcome {
            Ok(()) => {
                throttle.succeeded(attempt);
                self.save_throttle(&throttle);
            }
            Err(_) => throttle.failed(attempt),
        }
        outcome
    }

    fn log<T>(
        &self,
        client: IpAddr,
        outcome: &Result<T, AccessError>,
        success: AuthEventKind,
        failure: impl FnOnce(&'static str) -> AuthEventKind,
    ) {
        let kind = match outcome {
            Ok(_) => success,
            Err(AccessError::Throttled(t)) => AuthEventKind::Throttled {
                retry_after_secs: t.retry_after_secs(),
            },
            Err(error) => failure(error.code()),
        };
        // Address and time, never the password or the code.
        tracing::info!("{}", AuthEvent::new(kind, Some(client), SystemTime::now()));
    }
}

fn factory_setup_code(path: Option<&Path>) -> Result<SetupCode, crate::Error> {
    let fail = |e: &dyn std::fmt::Display| crate::Error::Credentials(e.to_string());
    match path.map(std::fs::read_to_string) {
        Some(Ok(text)) => {
            tracing::info!("using the production line's setup code");
            SetupCode::from_factory_file(&text).map_err(|e| fail(&e))
        }
        Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => Err(fail(&e)),
        _ => SetupCode::generate().map_err(|e| fail(&e)),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A poisoned lock means a panic elsewhere; the data inside is still the
/// last consistent state, because changes are swapped in whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

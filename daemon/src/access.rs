//! The owner's access to the device (EN 303 645 5.1): the `credentials`
//! crate's claim, login and session logic, wired to the state store, the
//! clock and the blocking pool.
//!
//! Every change to the credentials is made on a copy, written to the store,
//! and only then swapped in: if the write fails, memory and disk still agree.

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
use credentials::throttle::{Throttle, ThrottleConfig, Throttled};
use tokio::sync::Semaphore;

use crate::persist::{Store, StoreError};

const RECORD: &str = "credentials";
/// The throttle's account key: the device has one owner account.
const OWNER: &str = "owner";
/// argon2id takes 19 MiB per computation; two at once bounds a login flood
/// to under 40 MiB on the smallest Pi.
const CONCURRENT_HASHES: usize = 2;

#[derive(Debug)]
pub struct Access {
    store: Arc<Store>,
    credentials: Arc<Mutex<Credentials>>,
    sessions: Mutex<Sessions>,
    throttle: Mutex<Throttle>,
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
        Access {
            store,
            credentials: Arc::new(Mutex::new(credentials)),
            sessions: Mutex::new(Sessions::new(SessionConfig::default())),
            throttle: Mutex::new(Throttle::new(ThrottleConfig::default(), Instant::now())),
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
    /// of concurrent claims wins; wrong codes count toward the throttle.
    pub async fn claim(
        &self,
        client: IpAddr,
        code: String,
        password: Password,
        confirmation: Password,
    ) -> Result<NewSession, AccessError> {
        let (policy, params) = (self.policy.clone(), self.params);
        let outcome = self
            .throttled(client, move |credentials| {
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
        self.log(client, &outcome, AuthEventKind::ClaimSucceeded, |reason| {
            AuthEventKind::ClaimFailed { reason }
        });
        outcome?;
        self.new_session()
    }

    pub async fn login(
        &self,
        client: IpAddr,
        password: Password,
    ) -> Result<NewSession, AccessError> {
        match self.status() {
            Status::Unclaimed => return Err(AccessError::NotSetUp),
            Status::Broken => return Err(self.broken()),
            Status::Claimed => {}
        }
        let params = self.params;
        let outcome = self
            .throttled(client, move |credentials| {
                let mut next = credentials.clone();
                // A re-hash with stronger parameters changes `next`; `throttled` stores it.
                let _rehashed = next
                    .verify_login(&password, &params)
                    .map_err(AccessError::Login)?;
                Ok(next)
            })
            .await;
        self.log(client, &outcome, AuthEventKind::LoginSucceeded, |reason| {
            AuthEventKind::LoginFailed { reason }
        });
        outcome?;
        self.new_session()
    }

    /// Changing the password needs the current one, and ends every other
    /// session.
    pub async fn change_password(
        &self,
        client: IpAddr,
        session: &SessionInfo,
        current: Password,
        new: Password,
        confirmation: Password,
    ) -> Result<(), AccessError> {
        let (policy, params) = (self.policy.clone(), self.params);
        let outcome = self
            .throttled(client, move |credentials| {
                let mut next = credentials.clone();
                next.change_password(&current, &new, &confirmation, &policy, &params, unix_now())
                    .map_err(AccessError::Change)?;
                Ok(next)
            })
            .await;
        self.log(client, &outcome, AuthEventKind::PasswordChanged, |reason| {
            AuthEventKind::PasswordChangeFailed { reason }
        });
        outcome?;
        lock(&self.sessions).revoke_all_except(&session.id);
        tracing::info!(%client, "password changed; other sessions ended");
        Ok(())
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
    async fn throttled<F>(&self, client: IpAddr, change: F) -> Result<(), AccessError>
    where
        F: FnOnce(&Credentials) -> Result<Credentials, AccessError> + Send + 'static,
    {
        let attempt = lock(&self.throttle)
            .begin(Instant::now(), client, OWNER)
            .map_err(AccessError::Throttled)?;
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
            Ok(()) => throttle.succeeded(attempt),
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

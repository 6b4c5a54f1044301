//! IO-free core of ETSI EN 303 645 provision 5.1 ("no universal default
//! passwords") for Hearth: the first-boot claim with a per-device setup code,
//! the password policy, argon2id hashing, brute-force throttling and login
//! sessions.
//!
//! No HTTP, no async, no files: the daemon (`hearthd`) owns IO, the web
//! server and the clock, and calls into this crate.
//!
//! # Design
//!
//! | Module | What it does | Standard |
//! |---|---|---|
//! | [`setup_code`] | 10-symbol code from `ring::rand::SystemRandom`, 50 bits, `K7QM-3XPA-9D`, degenerate draws rejected, factory-file parsing, terminal QR | 5.1-1, 5.1-2 |
//! | [`policy`] | NIST SP 800-63B-4 verifier rules: length 15 (8–128), NFKC, blocklist, context words, no composition rules | 5.1-1, 5.1-4 |
//! | [`blocklist`] | the 100,000 most common passwords (SecLists, MIT), front-coded into the binary | NIST §3.1.1.2 |
//! | [`hashing`] | argon2id PHC strings, OWASP defaults, `needs_rehash` | 5.1-3 |
//! | [`throttle`] | per-address backoff, lockout window, global ceiling with reserved slots, a budget per trusted browser, bounded memory, saved across restarts | 5.1-5 |
//! | [`trusted`] | trusted-browser cookies (OWASP device cookies): the owner's browsers are not held up by an attacker's guessing | 5.1-5 |
//! | [`session`] | 256-bit tokens stored as hashes, idle/absolute timeouts, CSRF, revoke others | 5.1-3 |
//! | [`claim`] | `Unclaimed → Claimed`, change password, factory reset, fail-closed `Broken`, persisted record, log events | 5.1-1, 5.1-4 |
//!
//! # How the daemon wires it
//!
//! ```text
//! startup:   state store never initialised → SetupCode::generate() or
//!            SetupCode::from_factory_file(..) → Credentials::first_boot → persist;
//!            print code.grouped() and code.qr(..) on the console only.
//!            record present → Credentials::load(bytes) (never fails; may be Broken)
//!            record absent on an initialised store → Credentials::missing()
//! request:   requester = trusted.recognise(cookie) or the client's address
//!            throttle.begin(now, &requester)  → Err(Throttled): 429 + Retry-After
//!            save throttle.snapshot(now) before the secret is checked
//!            spawn_blocking(|| { let _permit = …; creds.lock().verify_login(..) })
//!            Ok  → throttle.succeeded(attempt); sessions.create(now); Set-Cookie
//!                  (and trusted.trust(now) for a browser not yet trusted)
//!            Err → throttle.failed(attempt); log AuthEvent
//! change:    sessions.validate_with_csrf(..) → creds.change_password(..)
//!            → sessions.revoke_all_except(&info.id) → persist
//! reset:     creds.factory_reset(..) → sessions.revoke_all() → persist → console
//! ```
//!
//! - **Blocking work.** [`hashing`] functions and the [`claim::Credentials`]
//!   methods that call them (claim, login, change, reset, first boot) compute
//!   argon2id: 19 MiB and tens to hundreds of milliseconds each. Call them
//!   from `tokio::task::spawn_blocking`. The semaphore that bounds concurrent
//!   hash computations is async and belongs in the daemon; holding the
//!   `Mutex<Credentials>` across the call already serialises the hashing for
//!   one device.
//! - **Atomic claim.** `Credentials::claim(&mut self, ..)` checks, verifies,
//!   hashes and switches state in one `&mut` call; under a `Mutex` that makes
//!   exactly one of any number of concurrent claims win, and the setup code
//!   stops working in the same step.
//! - **Throttle counts first.** `Throttle::begin` records a failure before
//!   the secret is checked; `succeeded` undoes it. Count every claim or login
//!   `Err` as failed, including policy rejections during a claim (otherwise
//!   they could reset the counter). The web UI can call
//!   [`policy::PasswordPolicy::check`] through a separate endpoint to give
//!   policy feedback without touching the throttle.
//! - **Fail closed.** A missing, corrupt or unknown-version record becomes
//!   [`claim::CredentialState::Broken`]: logins, claims and changes are
//!   refused with [`claim::BrokenReason::advice`]; only a factory reset
//!   leaves it, and a broken state is never written back.
//! - **Secrets.** [`Password`], [`SetupCode`] and
//!   [`session::SessionToken`] are zeroized on drop and print as
//!   `<redacted>`; setup codes and passwords are stored only as argon2id
//!   hashes, session tokens only as SHA-256. Verification compares in
//!   constant time (argon2's output comparison and `subtle` for CSRF).
//! - **Events.** [`claim::AuthEvent`] carries kind, client address and time,
//!   never a secret, and formats as one log line.
//!
//! # Binary size
//!
//! The blocklist adds ~188 KiB of read-only data, front-coded (184 KiB of
//! entries, 5 KiB of index; the plain list is 347 KiB), searched in place
//! without decompression or heap. `qrcode` is used without its image and SVG
//! features.
//!
//! # Cost of a hash
//!
//! Measured with the default parameters (19 MiB, t=2, p=1) in a release
//! build on the 2-core x86-64 development machine: about 0.12 s per hash or
//! verification. Expect several times that on a Raspberry Pi. In debug
//! builds argon2 is ~10× slower (about 1.2 s); the workspace may want
//! `[profile.dev.package.argon2] opt-level = 3` (and `blake2`) so that debug
//! integration tests stay fast.
//!
//! # Current limitations
//!
//! - Normalisation (`unicode-normalization`) and lower-casing make
//!   temporary copies inside those crates that are not zeroized; `serde_json`
//!   request bodies are the daemon's to zeroize. Zeroizing is best effort in
//!   Rust in general (moves can leave copies).
//! - The blocklist matches whole passwords (after NFKC and lower-casing) and
//!   holds only entries of 8+ characters; it does not catch a listed word
//!   with digits appended ("qwerty123456789"). Repetition and sequence checks
//!   catch the simplest long patterns; keyboard walks are only caught when
//!   listed.
//! - Per-account throttling means an attacker who keeps failing against the
//!   owner account also delays the owner (at most `lockout_window`, 5 min by
//!   default, per attempt while the attack goes on). Nothing ever locks
//!   permanently, as NIST and the issue require, so this is a trade-off, not
//!   a bug. NIST's "disable after 100 failures" is deliberately not
//!   implemented for the same reason.
//! - Sessions live in memory: a reboot logs everybody out. The throttle's
//!   state is saved by the daemon ([`throttle::Snapshot`]), so neither a
//!   crash nor a reboot resets an attacker's backoff.
//! - The setup code is compared through argon2id; its 50 bits plus the
//!   throttle (≈ one guess per second globally after the burst) make online
//!   guessing impracticable, but an attacker who reads the stored hash can
//!   brute-force 2^50 argon2id evaluations offline: the hash is a second
//!   line of defence, the file permissions are the first.
//! - No keyed hash with a separately stored secret ("pepper"), which NIST
//!   suggests (SHOULD): Hearth has no separate secret store yet.

pub mod blocklist;
pub mod claim;
pub mod hashing;
pub mod password;
pub mod policy;
pub mod session;
pub mod setup_code;
pub mod throttle;
pub mod trusted;

pub use claim::{
    AuthEvent, AuthEventKind, BrokenReason, ChangeError, ClaimError, CredentialRecord,
    CredentialState, Credentials, LoginError, LoginOutcome, PersistError, Status,
};
pub use hashing::{HashError, HashParams, PhcHash};
pub use password::Password;
pub use policy::{PasswordPolicy, PolicyConfigError, Rejection};
pub use session::{
    CsrfToken, NewSession, SessionConfig, SessionError, SessionId, SessionInfo, SessionToken,
    Sessions,
};
pub use setup_code::{QrStyle, SetupCode, SetupCodeError};
pub use throttle::{Attempt, Requester, Scope, Throttle, ThrottleConfig, Throttled};
pub use trusted::{TrustedBrowsers, TrustedId, TrustedToken};

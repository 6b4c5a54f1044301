//! The owner's whole journey through the public API, the way `hearthd`
//! drives it: first boot, claim, login, session, password change, logout,
//! broken store, factory reset.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use credentials::{
    ClaimError, Credentials, HashParams, LoginError, Password, PasswordPolicy, Requester,
    SessionConfig, SessionError, Sessions, SetupCode, Status, Throttle, ThrottleConfig,
};

/// The smallest settings the crate accepts (OWASP's 7 MiB × 5 passes).
const PARAMS: HashParams = HashParams {
    memory_kib: 7_168,
    iterations: 5,
    parallelism: 1,
};

#[test]
fn owner_claims_logs_in_changes_password_and_factory_resets() {
    let policy = PasswordPolicy::default().with_context_words(["Hearth", "Example Vendor", "HP-1"]);
    let client: IpAddr = "192.0.2.10".parse().expect("ip");
    let t0 = Instant::now();
    let mut throttle = Throttle::new(ThrottleConfig::default(), t0);
    let mut sessions = Sessions::new(SessionConfig::default());

    // First boot: a code for the console, only its hash in the record.
    let code = SetupCode::generate().expect("rng");
    let shown = code.grouped();
    let creds = Mutex::new(Credentials::first_boot(&code, &PARAMS).expect("hash"));
    let stored = creds.lock().expect("lock").to_json().expect("json");
    assert!(!String::from_utf8_lossy(&stored).contains(shown.as_str()));
    assert!(!String::from_utf8_lossy(&stored).contains(&shown.replace('-', "")));

    // After a reboot, the record loads back unclaimed.
    let creds = Mutex::new(Credentials::load(&stored));
    assert_eq!(creds.lock().expect("lock").status(), Status::Unclaimed);

    // Claim with the code as typed from the console, lower case.
    let pw = Password::from("walnut ladder cinema sky");
    let attempt = throttle
        .begin(t0, &Requester::Anonymous(client))
        .expect("not throttled");
    creds
        .lock()
        .expect("lock")
        .claim(
            &shown.to_lowercase(),
            &pw,
            &pw,
            &policy,
            &PARAMS,
            1_764_320_000,
        )
        .expect("claim");
    throttle.succeeded(attempt);
    let record = creds.lock().expect("lock").to_json().expect("json");

    // Reboot again: claimed, and the code no longer claims.
    let creds = Mutex::new(Credentials::load(&record));
    let again = Password::from("someone else's password");
    assert_eq!(
        creds
            .lock()
            .expect("lock")
            .claim(&shown, &again, &again, &policy, &PARAMS, 0),
        Err(ClaimError::AlreadyClaimed)
    );

    // Login opens a session; state-changing requests need its CSRF token.
    let attempt = throttle
        .begin(t0, &Requester::Anonymous(client))
        .expect("not throttled");
    let outcome = creds
        .lock()
        .expect("lock")
        .verify_login(&pw, &PARAMS)
        .expect("login");
    assert!(!outcome.rehashed);
    throttle.succeeded(attempt);
    let phone = sessions.create(t0).expect("session");
    let laptop = sessions.create(t0).expect("session");
    assert_eq!(
        sessions
            .validate_with_csrf(laptop.token.expose(), "guess", t0)
            .map(|_| ()),
        Err(SessionError::CsrfMismatch)
    );
    let info = sessions
        .validate_with_csrf(laptop.token.expose(), laptop.csrf.as_str(), t0)
        .expect("csrf ok");

    // Change the password from the laptop: the phone is logged out.
    let new = Password::from("orbit velvet harbour mint");
    creds
        .lock()
        .expect("lock")
        .change_password(&pw, &new, &new, &policy, &PARAMS, 1_764_330_000)
        .expect("change");
    sessions.revoke_all_except(&info.id);
    assert_eq!(
        sessions.validate(phone.token.expose(), t0).map(|_| ()),
        Err(SessionError::Unknown)
    );
    assert!(sessions.validate(laptop.token.expose(), t0).is_ok());
    assert_eq!(
        creds.lock().expect("lock").verify_login(&pw, &PARAMS),
        Err(LoginError::WrongPassword)
    );

    // Logout.
    sessions.logout(laptop.token.expose());
    assert!(sessions.is_empty());

    // The record gets damaged: everything is refused, nothing reopens setup.
    let mut damaged = Credentials::load(b"{\"version\":1,\"state\":");
    assert_eq!(damaged.status(), Status::Broken);
    assert!(matches!(
        damaged.verify_login(&new, &PARAMS),
        Err(LoginError::Broken(_))
    ));
    assert!(matches!(
        damaged.claim(&shown, &new, &new, &policy, &PARAMS, 0),
        Err(ClaimError::Broken(_))
    ));

    // Factory reset: a new code, unclaimed, the old password gone.
    let fresh = damaged.factory_reset(&PARAMS).expect("reset");
    sessions.revoke_all();
    assert_eq!(damaged.status(), Status::Unclaimed);
    assert_eq!(
        damaged.verify_login(&new, &PARAMS),
        Err(LoginError::NotClaimed)
    );
    assert_ne!(fresh.grouped(), shown, "2^-50 chance of a false alarm");
}

#[test]
fn a_guessing_client_is_slowed_down_and_the_owner_gets_in_after_the_window() {
    let t0 = Instant::now();
    let mut throttle = Throttle::new(ThrottleConfig::default(), t0);
    let attacker = Requester::Anonymous("203.0.113.66".parse().expect("ip"));
    let owner = Requester::Anonymous("192.0.2.10".parse().expect("ip"));

    // The attacker guesses as fast as the throttle allows for an hour (the
    // secret check itself is left out: its cost is argon2's, tested above).
    let mut now = t0;
    let (mut guesses, mut refusals) = (0, 0);
    while now < t0 + Duration::from_secs(3600) {
        match throttle.begin(now, &attacker) {
            Ok(attempt) => {
                guesses += 1;
                throttle.failed(attempt);
            }
            Err(t) => {
                refusals += 1;
                assert!(
                    t.message()
                        .starts_with("Too many failed attempts. Try again in ")
                );
                now += t.retry_after;
            }
        }
    }
    // 9 attempts in the first ~63 s, then one per 5-minute window.
    assert!((15..=25).contains(&guesses), "{guesses} guesses in an hour");
    assert_eq!(
        refusals,
        guesses - 3,
        "every attempt after the free ones waited"
    );

    // Right after the attacker's last attempt the owner, from another
    // address, is not held up: there is no account-wide lockout.
    let attempt = throttle.begin(now, &attacker).expect("window over");
    throttle.failed(attempt);
    assert!(throttle.begin(now, &attacker).is_err());
    let attempt = throttle
        .begin(now, &owner)
        .expect("another address is not locked out by the attacker");
    throttle.succeeded(attempt);
}

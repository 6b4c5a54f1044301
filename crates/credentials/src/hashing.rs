//! argon2id hashing to PHC strings.
//!
//! **Blocking and memory-hungry by design**: one hash takes `memory_kib` KiB
//! (19 MiB by default) and tens to hundreds of milliseconds. The daemon calls
//! these functions from `tokio::task::spawn_blocking` and bounds how many run
//! at once with a semaphore (that part is async and lives in the daemon).

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::password::Password;
use crate::policy::MAX_INPUT_BYTES;
use crate::setup_code::SetupCode;

/// OWASP's minimum for argon2id: 19 MiB.
pub const OWASP_MEMORY_KIB: u32 = 19_456;
/// OWASP's minimum for argon2id: 2 passes.
pub const OWASP_ITERATIONS: u32 = 2;
/// The weakest memory × passes product in OWASP's table of equal-strength
/// argon2id settings (7 MiB × 5).
const MIN_COST_PRODUCT: u64 = 7_168 * 5;
/// Upper bounds, so a tampered or mistyped setting cannot exhaust a Pi.
const MAX_MEMORY_KIB: u32 = 256 * 1024;
const MAX_ITERATIONS: u32 = 20;
const MAX_PARALLELISM: u32 = 8;
/// Salt length in bytes (NIST: at least 32 bits; 128 is the usual choice).
const SALT_BYTES: usize = 16;

/// argon2id cost settings, vendor-tunable. The defaults are OWASP's minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashParams {
    /// Memory per hash, KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: OWASP_MEMORY_KIB,
            iterations: OWASP_ITERATIONS,
            parallelism: 1,
        }
    }
}

/// A stored argon2id hash in PHC string form,
/// `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`. Serialized as that string.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PhcHash(String);

impl PhcHash {
    /// Takes a stored string, checking it is an argon2id PHC string with
    /// parameters inside this crate's bounds.
    pub fn parse(s: &str) -> Result<Self, HashError> {
        let hash = Self(s.to_owned());
        hash.params()?;
        Ok(hash)
    }

    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The cost parameters recorded in the hash.
    pub fn params(&self) -> Result<HashParams, HashError> {
        let parsed = PasswordHash::new(&self.0).map_err(|_| HashError::Malformed)?;
        if parsed.algorithm != Algorithm::Argon2id.ident() {
            return Err(HashError::NotArgon2id);
        }
        if parsed.version != Some(Version::V0x13.into()) {
            return Err(HashError::Malformed);
        }
        if parsed.salt.is_none() || parsed.hash.is_none() {
            return Err(HashError::Malformed);
        }
        let p = Params::try_from(&parsed).map_err(|_| HashError::Malformed)?;
        let params = HashParams {
            memory_kib: p.m_cost(),
            iterations: p.t_cost(),
            parallelism: p.p_cost(),
        };
        if params.memory_kib > MAX_MEMORY_KIB
            || params.iterations > MAX_ITERATIONS
            || params.parallelism > MAX_PARALLELISM
        {
            return Err(HashError::Malformed);
        }
        Ok(params)
    }
}

impl fmt::Debug for PhcHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.params() {
            Ok(p) => write!(
                f,
                "PhcHash(argon2id m={},t={},p={})",
                p.memory_kib, p.iterations, p.parallelism
            ),
            Err(_) => f.write_str("PhcHash(<malformed>)"),
        }
    }
}

/// A hashing failure (never "wrong password": that is `Ok(false)`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    #[error(
        "The argon2id settings (memory {memory_kib} KiB, {iterations} passes, {parallelism} lanes) are outside the allowed range: \
         memory × passes must be at least {MIN_COST_PRODUCT} (OWASP), memory at most {MAX_MEMORY_KIB} KiB, passes 1-{MAX_ITERATIONS}, lanes 1-{MAX_PARALLELISM}; \
         fix the password-hashing settings in the configuration."
    )]
    BadParams {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    },
    #[error(
        "The stored credential hash is not a valid argon2id PHC string; the credential store is damaged, factory-reset the device."
    )]
    Malformed,
    #[error(
        "The stored credential hash is not argon2id; the credential store is damaged, factory-reset the device."
    )]
    NotArgon2id,
    #[error("The operating system's random number generator failed; try again.")]
    Random,
    #[error("argon2id hashing failed: {0}")]
    Argon2(String),
}

impl HashParams {
    /// Checks the settings against OWASP's floor and this crate's ceilings.
    pub fn validate(&self) -> Result<(), HashError> {
        let ok = (1..=MAX_ITERATIONS).contains(&self.iterations)
            && (1..=MAX_PARALLELISM).contains(&self.parallelism)
            && self.memory_kib <= MAX_MEMORY_KIB
            && self.memory_kib >= 8 * self.parallelism
            && u64::from(self.memory_kib) * u64::from(self.iterations) >= MIN_COST_PRODUCT;
        if ok {
            Ok(())
        } else {
            Err(HashError::BadParams {
                memory_kib: self.memory_kib,
                iterations: self.iterations,
                parallelism: self.parallelism,
            })
        }
    }

    fn argon2(&self) -> Result<Argon2<'static>, HashError> {
        // Unit tests may use tiny parameters so the suite stays fast in
        // debug builds; nothing else can skip the check.
        #[cfg(test)]
        let skip = *self == tests::FAST;
        #[cfg(not(test))]
        let skip = false;
        if !skip {
            self.validate()?;
        }
        let p = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| HashError::Argon2(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
    }
}

/// Hashes a password (its NFKC form) with a fresh random salt. Blocking.
pub fn hash_password(password: &Password, params: &HashParams) -> Result<PhcHash, HashError> {
    hash_bytes(password.normalized().as_bytes(), params)
}

/// Checks a password against a stored hash in constant time (argon2 compares
/// the outputs with `subtle`). `Ok(false)` means wrong password. Blocking.
pub fn verify_password(password: &Password, stored: &PhcHash) -> Result<bool, HashError> {
    if password.expose().len() > MAX_INPUT_BYTES {
        // Cannot match: the policy never accepted such a password. Still
        // check the stored hash so a damaged store is reported.
        stored.params()?;
        return Ok(false);
    }
    verify_bytes(password.normalized().as_bytes(), stored)
}

/// Hashes the canonical form of a setup code. Blocking.
pub fn hash_setup_code(code: &SetupCode, params: &HashParams) -> Result<PhcHash, HashError> {
    hash_bytes(code.canonical(), params)
}

/// Checks a setup code against its stored hash. Blocking.
pub fn verify_setup_code(code: &SetupCode, stored: &PhcHash) -> Result<bool, HashError> {
    verify_bytes(code.canonical(), stored)
}

/// Whether a stored hash is weaker than `current` in any parameter and
/// should be replaced after the next successful login. A malformed hash also
/// "needs rehash" (but will not verify in the first place).
pub fn needs_rehash(stored: &PhcHash, current: &HashParams) -> bool {
    match stored.params() {
        Ok(p) => {
            p.memory_kib < current.memory_kib
                || p.iterations < current.iterations
                || p.parallelism < current.parallelism
        }
        Err(_) => true,
    }
}

fn hash_bytes(secret: &[u8], params: &HashParams) -> Result<PhcHash, HashError> {
    let argon2 = params.argon2()?;
    let mut salt = Zeroizing::new([0u8; SALT_BYTES]);
    SystemRandom::new()
        .fill(salt.as_mut())
        .map_err(|_| HashError::Random)?;
    let salt =
        SaltString::encode_b64(salt.as_slice()).map_err(|e| HashError::Argon2(e.to_string()))?;
    let hash = argon2
        .hash_password(secret, &salt)
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    Ok(PhcHash(hash.to_string()))
}

fn verify_bytes(secret: &[u8], stored: &PhcHash) -> Result<bool, HashError> {
    stored.params()?;
    let parsed = PasswordHash::new(&stored.0).map_err(|_| HashError::Malformed)?;
    match Argon2::default().verify_password(secret, &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(HashError::Argon2(e.to_string())),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Tiny parameters for unit tests only (accepted by `argon2()` under
    /// `cfg(test)` although `validate` refuses them).
    pub(crate) const FAST: HashParams = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn the_test_parameters_would_be_refused_in_production() {
        assert!(FAST.validate().is_err());
    }

    #[test]
    fn defaults_are_owasp() {
        let d = HashParams::default();
        assert_eq!((d.memory_kib, d.iterations, d.parallelism), (19_456, 2, 1));
        assert_eq!(d.validate(), Ok(()));
    }

    #[test]
    fn weak_or_absurd_params_are_refused() {
        for (m, t, p) in [
            (19_456, 1, 1),
            (4_096, 2, 1),
            (0, 0, 0),
            (19_456, 2, 0),
            (19_456, 2, 9),
            (1 << 20, 2, 1),
            (47_104, 21, 1),
        ] {
            let params = HashParams {
                memory_kib: m,
                iterations: t,
                parallelism: p,
            };
            assert!(
                matches!(params.validate(), Err(HashError::BadParams { .. })),
                "{params:?}"
            );
            assert!(hash_password(&Password::from("x"), &params).is_err());
        }
        // OWASP's equal-strength alternatives are accepted.
        for (m, t) in [(47_104, 1), (12_288, 3), (9_216, 4), (7_168, 5)] {
            assert_eq!(
                HashParams {
                    memory_kib: m,
                    iterations: t,
                    parallelism: 1
                }
                .validate(),
                Ok(())
            );
        }
    }

    #[test]
    fn hash_is_a_phc_argon2id_string_that_verifies() {
        let pw = Password::from("a long enough passphrase");
        let h = hash_password(&pw, &HashParams::default()).expect("hash");
        assert!(
            h.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            h.as_str()
        );
        assert_eq!(verify_password(&pw, &h), Ok(true));
        assert_eq!(
            verify_password(&Password::from("a long enough passphrasE"), &h),
            Ok(false)
        );
        assert_eq!(PhcHash::parse(h.as_str()), Ok(h.clone()));
        assert_eq!(format!("{h:?}"), "PhcHash(argon2id m=19456,t=2,p=1)");
    }

    #[test]
    fn salts_differ_so_equal_passwords_hash_differently() {
        let pw = Password::from("same password twice");
        let a = hash_password(&pw, &FAST).expect("hash");
        let b = hash_password(&pw, &FAST).expect("hash");
        assert_ne!(a, b);
        assert_eq!(verify_password(&pw, &a), Ok(true));
        assert_eq!(verify_password(&pw, &b), Ok(true));
    }

    #[test]
    fn verification_uses_the_nfkc_form() {
        let h = hash_password(&Password::from("caf\u{e9} crème brûlée"), &FAST).expect("hash");
        assert_eq!(
            verify_password(&Password::from("cafe\u{301} crème brûlée"), &h),
            Ok(true)
        );
    }

    #[test]
    fn oversized_login_input_is_refused_without_hashing() {
        let h = hash_password(&Password::from("short one"), &FAST).expect("hash");
        assert_eq!(
            verify_password(&Password::new("a".repeat(10_000)), &h),
            Ok(false)
        );
    }

    #[test]
    fn rehash_is_needed_when_stored_params_are_weaker() {
        let h = hash_password(&Password::from("pw pw pw pw pw"), &FAST).expect("hash");
        assert!(needs_rehash(&h, &HashParams::default()), "64 KiB < 19 MiB");
        assert!(!needs_rehash(&h, &FAST));
        let more_passes = HashParams {
            memory_kib: 64,
            iterations: 2,
            parallelism: 1,
        };
        assert!(needs_rehash(&h, &more_passes));
        let more_lanes = HashParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 2,
        };
        assert!(needs_rehash(&h, &more_lanes));
        // Stored stronger than current: keep it.
        let strong = HashParams {
            memory_kib: 19_456,
            iterations: 5,
            parallelism: 1,
        };
        let h2 = hash_password(&Password::from("pw pw pw pw pw"), &strong).expect("hash");
        assert!(!needs_rehash(&h2, &FAST));
        assert!(!needs_rehash(&h2, &HashParams::default()));
    }

    #[test]
    fn malformed_or_foreign_hashes_are_errors_not_mismatches() {
        let pw = Password::from("whatever");
        for bad in [
            "",
            "not a hash",
            "$argon2id$v=19$m=19456,t=2,p=1$$",
            "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
            "$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
            "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
        ] {
            assert!(PhcHash::parse(bad).is_err(), "{bad}");
            let forced = PhcHash(bad.to_owned());
            assert!(verify_password(&pw, &forced).is_err(), "{bad}");
            assert!(needs_rehash(&forced, &HashParams::default()));
        }
    }

    #[test]
    fn setup_codes_hash_and_verify() {
        let code = SetupCode::parse("K7QM-3XPA-9D").expect("valid");
        let h = hash_setup_code(&code, &FAST).expect("hash");
        assert_eq!(verify_setup_code(&code, &h), Ok(true));
        let other = SetupCode::parse("K7QM-3XPA-9E").expect("valid");
        assert_eq!(verify_setup_code(&other, &h), Ok(false));
    }
}

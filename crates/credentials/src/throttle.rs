//! Brute-force throttle: exponential backoff per client address and per
//! account, a lockout window after a run of failures, and a global ceiling.
//!
//! NIST SP 800-63B-4 §3.2.2 "limit, then delay": every delay is capped, so
//! the owner is slowed down but never locked out for good.
//!
//! **Attempts are counted before the secret is checked.** [`Throttle::begin`]
//! records the attempt as a failure up front and [`Throttle::succeeded`]
//! undoes that, so fifty concurrent guesses cannot all slip through before
//! the first failure is recorded, and an attempt whose outcome is never
//! reported (a crashed handler) counts as failed.
//!
//! The clock is injected: every method takes `now: Instant`, so tests are
//! deterministic and the daemon passes `Instant::now()`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Tunables. The defaults: three free tries, then 1 s doubling up to 60 s,
/// a 5-minute lockout from the tenth consecutive failure on, and globally
/// a burst of 30 failures then one per second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures allowed without any delay.
    pub free_failures: u32,
    /// First delay after the free failures; doubles with each failure.
    pub base_delay: Duration,
    /// Cap on the exponential delay.
    pub max_backoff: Duration,
    /// From this many consecutive failures on, each failure locks for
    /// `lockout_window`.
    pub lockout_threshold: u32,
    /// Length of a lockout. Bounded: the key is usable again afterwards.
    pub lockout_window: Duration,
    /// A key with no failure for this long starts from zero again.
    pub forget_after: Duration,
    /// Most client addresses tracked at once (memory bound); the one seen
    /// longest ago is evicted first.
    pub max_clients: usize,
    /// Most accounts tracked at once.
    pub max_accounts: usize,
    /// Global ceiling: failures allowed in a burst across all clients.
    pub global_burst: u32,
    /// Global ceiling: one more failure allowed per this interval.
    pub global_refill: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            free_failures: 3,
            base_delay: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            lockout_threshold: 10,
            lockout_window: Duration::from_secs(5 * 60),
            forget_after: Duration::from_secs(24 * 60 * 60),
            max_clients: 1024,
            max_accounts: 16,
            global_burst: 30,
            global_refill: Duration::from_secs(1),
        }
    }
}

impl ThrottleConfig {
    /// The delay imposed after the `failures`-th consecutive failure.
    pub fn delay_after(&self, failures: u32) -> Duration {
        if failures >= self.lockout_threshold {
            self.lockout_window
        } else if failures <= self.free_failures {
            Duration::ZERO
        } else {
            let exp = (failures - self.free_failures - 1).min(31);
            self.base_delay
                .saturating_mul(1u32 << exp)
                .min(self.max_backoff)
        }
    }
}

/// Which limit refused the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This client address (IPv6: its /64) failed too often.
    Client,
    /// This account failed too often, from any address.
    Account,
    /// Too many failures across all clients.
    Global,
}

/// An attempt refused for now. Tell the user [`Throttled::message`] and send
/// `Retry-After: retry_after_secs()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Too many failed attempts. Try again in {} seconds.", self.retry_after_secs())]
pub struct Throttled {
    pub retry_after: Duration,
    pub scope: Scope,
}

impl Throttled {
    /// Whole seconds to wait, rounded up (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        let s = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        s.max(1)
    }

    /// "Too many failed attempts. Try again in N seconds."
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// A permitted attempt, already counted as a failure. Report the outcome
/// with [`Throttle::succeeded`] or [`Throttle::failed`].
#[derive(Debug)]
#[must_use = "report the outcome with Throttle::succeeded or Throttle::failed"]
pub struct Attempt {
    client: IpAddr,
    account: String,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    blocked_until: Instant,
    last_seen: Instant,
}

#[derive(Debug)]
struct Bucket {
    tokens: u32,
    last_refill: Instant,
}

/// The throttle state. Keep one per daemon behind a `Mutex`; every method is
/// cheap (no hashing, no IO).
#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    clients: HashMap<IpAddr, Entry>,
    accounts: HashMap<String, Entry>,
    global: Bucket,
}

impl Throttle {
    pub fn new(config: ThrottleConfig, now: Instant) -> Self {
        let global = Bucket {
            tokens: config.global_burst,
            last_refill: now,
        };
        Self {
            config,
            clients: HashMap::new(),
            accounts: HashMap::new(),
            global,
        }
    }

    /// Asks to make one attempt for `account` from `client`. On success the
    /// attempt is already counted as a failure (see the module docs).
    pub fn begin(
        &mut self,
        now: Instant,
        client: IpAddr,
        account: &str,
    ) -> Result<Attempt, Throttled> {
        let client = client_key(client);
        if let Some(t) = self.check(now, client, account) {
            return Err(t);
        }
        self.global.tokens -= 1;
        let config = &self.config;
        let bump = |e: &mut Entry| {
            e.failures = e.failures.saturating_add(1);
            e.blocked_until = now + config.delay_after(e.failures);
            e.last_seen = now;
        };
        bump(entry(
            &mut self.clients,
            client,
            now,
            config.max_clients,
            config.forget_after,
        ));
        bump(entry(
            &mut self.accounts,
            account.to_owned(),
            now,
            config.max_accounts,
            config.forget_after,
        ));
        Ok(Attempt {
            client,
            account: account.to_owned(),
        })
    }

    /// Whether an attempt would be refused now, without counting one (for
    /// showing "try again in N seconds" before the user types).
    pub fn status(&mut self, now: Instant, client: IpAddr, account: &str) -> Option<Throttled> {
        self.check(now, client_key(client), account)
    }

    /// The secret was right: forget the failures of this client and account
    /// and give the global allowance back.
    pub fn succeeded(&mut self, attempt: Attempt) {
        self.clients.remove(&attempt.client);
        self.accounts.remove(&attempt.account);
        self.global.tokens = (self.global.tokens + 1).min(self.config.global_burst);
    }

    /// The secret was wrong. Nothing left to do (it was counted in `begin`);
    /// this exists so callers state the outcome explicitly.
    pub fn failed(&mut self, attempt: Attempt) {
        drop(attempt);
    }

    /// Number of client addresses tracked (memory bound check).
    pub fn tracked_clients(&self) -> usize {
        self.clients.len()
    }

    fn check(&mut self, now: Instant, client: IpAddr, account: &str) -> Option<Throttled> {
        let forget = self.config.forget_after;
        let wait = |e: Option<&Entry>| -> Duration {
            match e {
                Some(e) if now < e.last_seen + forget => {
                    e.blocked_until.saturating_duration_since(now)
                }
                _ => Duration::ZERO,
            }
        };
        let client_wait = wait(self.clients.get(&client));
        let account_wait = wait(self.accounts.get(account));
        let worst = if client_wait >= account_wait {
            (client_wait, Scope::Client)
        } else {
            (account_wait, Scope::Account)
        };
        if worst.0 > Duration::ZERO {
            return Some(Throttled {
                retry_after: worst.0,
                scope: worst.1,
            });
        }
        self.refill(now);
        if self.global.tokens == 0 {
            let next = self.global.last_refill + self.config.global_refill;
            return Some(Throttled {
                retry_after: next
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
                scope: Scope::Global,
            });
        }
        None
    }

    fn refill(&mut self, now: Instant) {
        let step = self.config.global_refill.max(Duration::from_millis(1));
        let elapsed = now.saturating_duration_since(self.global.last_refill);
        let n = (elapsed.as_nanos() / step.as_nanos()).min(u128::from(u32::MAX)) as u32;
        if n > 0 {
            self.global.tokens = self
                .global
                .tokens
                .saturating_add(n)
                .min(self.config.global_burst);
            self.global.last_refill += step * n;
        }
        if self.global.tokens == self.config.global_burst {
            self.global.last_refill = now;
        }
    }
}

/// IPv4-mapped IPv6 counts as IPv4; other IPv6 addresses count per /64,
/// since one host usually holds a whole /64.
fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

/// The entry for `key`, fresh if it was forgotten; evicts the entry seen
/// longest ago when the map is full.
fn entry<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, Entry>,
    key: K,
    now: Instant,
    cap: usize,
    forget_after: Duration,
) -> &mut Entry {
    if !map.contains_key(&key) && map.len() >= cap.max(1) {
        map.retain(|_, e| now < e.last_seen + forget_after);
        if map.len() >= cap.max(1)
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    let e = map.entry(key).or_insert(Entry {
        failures: 0,
        blocked_until: now,
        last_seen: now,
    });
    if now >= e.last_seen + forget_after {
        *e = Entry {
            failures: 0,
            blocked_until: now,
            last_seen: now,
        };
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    const OWNER: &str = "owner";

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn backoff_arithmetic() {
        let c = ThrottleConfig::default();
        let delays: Vec<u64> = (1..=12).map(|f| c.delay_after(f).as_secs()).collect();
        assert_eq!(delays, [0, 0, 0, 1, 2, 4, 8, 16, 32, 300, 300, 300]);
        let capped = ThrottleConfig {
            lockout_threshold: 1000,
            ..c.clone()
        };
        assert_eq!(capped.delay_after(20), secs(60));
        assert_eq!(
            capped.delay_after(999),
            secs(60),
            "no overflow, still capped"
        );
        assert_eq!(
            c.delay_after(u32::MAX),
            secs(300),
            "never more than the lockout window"
        );
    }

    #[test]
    fn a_client_is_slowed_down_then_locked_out_but_never_forever() {
        let t0 = Instant::now();
        let mut t = Throttle::new(ThrottleConfig::default(), t0);
        let mut now = t0;
        // Three free failures.
        for _ in 0..3 {
            let a = t.begin(now, A, OWNER).expect("free try");
            t.failed(a);
        }
        // Fourth attempt allowed, then a 1 s wait.
        let a = t.begin(now, A, OWNER).expect("allowed");
        t.failed(a);
        let refused = t.begin(now, A, OWNER).expect_err("must wait");
        assert_eq!(refused.retry_after, secs(1));
        assert_eq!(
            refused.message(),
            "Too many failed attempts. Try again in 1 seconds."
        );
        // Keep failing as soon as allowed: 2, 4, 8, 16, 32 s, then lockouts.
        let mut waits = Vec::new();
        for _ in 0..8 {
            let wait = t.begin(now, A, OWNER).expect_err("waiting").retry_after;
            waits.push(wait.as_secs());
            now += wait;
            let a = t.begin(now, A, OWNER).expect("allowed after the wait");
            t.failed(a);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 300, 300]);
        // After the lockout window the owner can log in, and that resets it.
        let w = t.begin(now, A, OWNER).expect_err("locked").retry_after;
        assert_eq!(w, secs(300));
        now += w;
        let a = t.begin(now, A, OWNER).expect("never locked for good");
        t.succeeded(a);
        assert!(
            t.begin(now, A, OWNER).is_ok(),
            "success resets the counters"
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        let th = Throttled {
            retry_after: Duration::from_millis(1500),
            scope: Scope::Client,
        };
        assert_eq!(th.retry_after_secs(), 2);
        assert_eq!(
            th.message(),
            "Too many failed attempts. Try again in 2 seconds."
        );
        let tiny = Throttled {
            retry_after: Duration::from_nanos(1),
            scope: Scope::Global,
        };
        assert_eq!(tiny.retry_after_secs(), 1);
    }

    #[test]
    fn the_account_is_throttled_across_addresses() {
        let t0 = Instant::now();
        let mut t = Throttle::new(ThrottleConfig::default(), t0);
        for i in 0..4u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, i));
            let a = t.begin(t0, ip, OWNER).expect("each address is new");
            t.failed(a);
        }
        let r = t.begin(t0, B, OWNER).expect_err("the account must wait");
        assert_eq!(r.scope, Scope::Account);
        // Another account from a fresh address is not affected.
        assert!(t.begin(t0, B, "setup").is_ok());
    }

    #[test]
    fn concurrent_attempts_are_counted_before_their_outcome() {
        // 50 attempts begun at the same instant without reporting outcomes:
        // only the free ones get through.
        let t0 = Instant::now();
        let mut t = Throttle::new(ThrottleConfig::default(), t0);
        let mut permits = Vec::new();
        let mut refused = 0;
        for _ in 0..50 {
            match t.begin(t0, A, OWNER) {
                Ok(a) => permits.push(a),
                Err(_) => refused += 1,
            }
        }
        assert_eq!(permits.len(), 4, "3 free + 1 before the first delay");
        assert_eq!(refused, 46);
    }

    #[test]
    fn global_ceiling_limits_distributed_guessing() {
        let t0 = Instant::now();
        let config = ThrottleConfig {
            global_burst: 5,
            ..ThrottleConfig::default()
        };
        let mut t = Throttle::new(config, t0);
        // Five different addresses and accounts each fail once.
        for i in 0..5u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, i));
            let a = t.begin(t0, ip, &format!("acct{i}")).expect("within burst");
            t.failed(a);
        }
        let r = t.begin(t0, B, "acct9").expect_err("global ceiling");
        assert_eq!(r.scope, Scope::Global);
        assert_eq!(r.retry_after, secs(1));
        // One token per second comes back.
        let a = t.begin(t0 + secs(1), B, "acct9").expect("refilled");
        t.failed(a);
        assert!(t.begin(t0 + secs(1), A, "acct8").is_err());
        // A success returns its token.
        let a = t.begin(t0 + secs(2), A, "acct8").expect("refilled");
        t.succeeded(a);
        assert!(t.begin(t0 + secs(2), B, "acct7").is_ok());
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_client_is_evicted() {
        let t0 = Instant::now();
        let config = ThrottleConfig {
            max_clients: 100,
            global_burst: u32::MAX,
            ..ThrottleConfig::default()
        };
        let mut t = Throttle::new(config, t0);
        for i in 0..1000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            let a = t
                .begin(
                    t0 + Duration::from_millis(u64::from(i)),
                    ip,
                    &format!("a{i}"),
                )
                .expect("new client and account");
            t.failed(a);
            assert!(t.tracked_clients() <= 100);
        }
        assert!(t.accounts.len() <= 16);
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_day() {
        let t0 = Instant::now();
        let mut t = Throttle::new(ThrottleConfig::default(), t0);
        let mut now = t0;
        for _ in 0..12 {
            if let Ok(a) = t.begin(now, A, OWNER) {
                t.failed(a);
            }
            now += secs(301);
        }
        assert_eq!(t.clients[&A].failures, 12);
        now += secs(24 * 3600);
        let a = t.begin(now, A, OWNER).expect("forgotten");
        t.failed(a);
        assert_eq!(t.clients[&A].failures, 1);
    }

    proptest::proptest! {
        /// Whatever the history, no refusal asks for more than the longest
        /// configured wait, and after that wait the owner gets an attempt:
        /// the throttle never locks forever.
        #[test]
        fn never_locks_forever(ops in proptest::collection::vec((0u64..400, 0u8..4, proptest::bool::ANY), 1..200)) {
            let config = ThrottleConfig::default();
            let longest = config.lockout_window.max(config.max_backoff).max(config.global_refill);
            let t0 = Instant::now();
            let mut t = Throttle::new(config, t0);
            let mut now = t0;
            for (advance, who, ok) in ops {
                now += Duration::from_secs(advance);
                let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, who));
                match t.begin(now, ip, OWNER) {
                    Ok(a) if ok => t.succeeded(a),
                    Ok(a) => t.failed(a),
                    Err(th) => proptest::prop_assert!(th.retry_after <= longest, "{th:?}"),
                }
            }
            now += longest;
            proptest::prop_assert!(t.begin(now, A, OWNER).is_ok());
        }
    }

    #[test]
    fn ipv6_clients_are_grouped_by_64_and_mapped_v4_is_v4() {
        let x: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let y: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let z: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(client_key(x), client_key(y));
        assert_ne!(client_key(x), client_key(z));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(client_key(mapped), A);
        assert_eq!(
            client_key(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            "::".parse::<IpAddr>().expect("ip")
        );
    }
}

//! Brute-force throttle (EN 303 645 5.1-5): slows anyone who guesses, and
//! never lets a guesser lock the owner out.
//!
//! Two kinds of requester, after OWASP's "device cookies":
//! - a **trusted browser**, one the owner logged in with before (it holds a
//!   [`crate::trusted`] cookie), has a budget of its own that nobody else
//!   can spend;
//! - **anyone else** is known by address: exponential backoff per client
//!   (IPv6 per /64), a lockout window after a run of failures, and a global
//!   ceiling across all addresses.
//!
//! There is no account-wide counter: the device has one owner, and a limit
//! on "the owner" that any client can exhaust would be a lockout anyone on
//! the network can trigger. NIST SP 800-63B-4 §3.2.2 "limit, then delay":
//! every delay is capped.
//!
//! **A bounded wait under the global ceiling.** When the ceiling is reached
//! a refused address gets a reserved slot (a GCRA schedule): it is told the
//! time of its slot and the slot is kept for it, so a fresh browser waits
//! at most one interval per address queued before it, however fast the
//! others ask.
//!
//! **Attempts are counted before the secret is checked.** [`Throttle::begin`]
//! records the attempt as a failure up front and [`Throttle::succeeded`]
//! undoes that, so fifty concurrent guesses cannot all slip through before
//! the first failure is recorded, and an attempt whose outcome is never
//! reported (a crashed handler) counts as failed.
//!
//! **State survives a restart.** [`Throttle::snapshot`] and
//! [`Throttle::restore`] carry the counters and the waits (as durations, not
//! wall-clock times, which an attacker may set); the daemon writes the
//! snapshot before it checks a secret, so a crash is never a free reset.
//!
//! The clock is injected: every method takes `now: Instant`, so tests are
//! deterministic and the daemon passes `Instant::now()`.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::trusted::TrustedId;

/// Tunables. The defaults: three free tries, then 1 s doubling up to 60 s,
/// a 5-minute lockout from the tenth consecutive failure on, and globally
/// a burst of 30 anonymous attempts then one per second.
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
    /// Most trusted browsers tracked at once.
    pub max_browsers: usize,
    /// Global ceiling on anonymous attempts: a burst of this many.
    pub global_burst: u32,
    /// Global ceiling: then one attempt per this interval.
    pub global_refill: Duration,
    /// A reserved slot not used within this long after it opens is lost.
    pub reservation_grace: Duration,
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
            max_browsers: 32,
            global_burst: 30,
            global_refill: Duration::from_secs(1),
            reservation_grace: Duration::from_secs(30),
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

/// Who makes an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    /// A browser holding a valid trusted-browser cookie.
    Trusted(TrustedId),
    /// Anyone else, by address.
    Anonymous(IpAddr),
}

/// Which limit refused the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This trusted browser failed too often.
    Browser,
    /// This client address (IPv6: its /64) failed too often.
    Client,
    /// Too many anonymous attempts across all clients; a slot is reserved.
    Global,
}

/// An attempt refused for now. Tell the user [`Throttled::message`] and send
/// `Retry-After: retry_after_secs()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
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

    /// "Too many failed attempts. Try again in N seconds.", and for an
    /// anonymous client how the owner gets past an attacker's guessing.
    pub fn message(&self) -> String {
        let wait = format!(
            "Too many failed attempts. Try again in {} seconds.",
            self.retry_after_secs()
        );
        match self.scope {
            Scope::Browser => wait,
            Scope::Client | Scope::Global => format!(
                "{wait} A browser you have logged in with on this device before is not held up \
                 by other people's attempts."
            ),
        }
    }
}

/// A permitted attempt, already counted as a failure. Report the outcome
/// with [`Throttle::succeeded`] or [`Throttle::failed`].
#[derive(Debug)]
#[must_use = "report the outcome with Throttle::succeeded or Throttle::failed"]
pub struct Attempt {
    key: Key,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Browser(TrustedId),
    Client(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    blocked_until: Instant,
    last_seen: Instant,
}

/// The throttle state. Keep one per daemon behind a `Mutex`; every method is
/// cheap (no hashing, no IO).
#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    clients: HashMap<IpAddr, Entry>,
    browsers: HashMap<TrustedId, Entry>,
    /// The GCRA schedule of anonymous attempts: the next free slot. It
    /// trails `now` by up to the burst when the device is quiet.
    next_slot: Instant,
    /// Slots promised to refused clients, by client key.
    reserved: HashMap<IpAddr, Instant>,
}

impl Throttle {
    pub fn new(config: ThrottleConfig, now: Instant) -> Self {
        let burst = burst_span(&config);
        Self {
            next_slot: now.checked_sub(burst).unwrap_or(now),
            config,
            clients: HashMap::new(),
            browsers: HashMap::new(),
            reserved: HashMap::new(),
        }
    }

    /// Asks to make one attempt. On success the attempt is already counted
    /// as a failure (see the module docs).
    pub fn begin(&mut self, now: Instant, requester: &Requester) -> Result<Attempt, Throttled> {
        let key = match requester {
            Requester::Trusted(id) => Key::Browser(id.clone()),
            Requester::Anonymous(addr) => Key::Client(client_key(*addr)),
        };
        if let Some(refused) = self.backoff(now, &key) {
            return Err(refused);
        }
        if let Key::Client(client) = key {
            self.take_slot(now, client)?;
        }
        let config = &self.config;
        let entry = match &key {
            Key::Browser(id) => entry(
                &mut self.browsers,
                id.clone(),
                now,
                config.max_browsers,
                config.forget_after,
            ),
            Key::Client(client) => entry(
                &mut self.clients,
                *client,
                now,
                config.max_clients,
                config.forget_after,
            ),
        };
        entry.failures = entry.failures.saturating_add(1);
        entry.blocked_until = now + config.delay_after(entry.failures);
        entry.last_seen = now;
        Ok(Attempt { key })
    }

    /// Whether an attempt would be refused by its backoff now, without
    /// counting one (for showing "try again in N seconds" before the user
    /// types).
    pub fn status(&self, now: Instant, requester: &Requester) -> Option<Throttled> {
        let key = match requester {
            Requester::Trusted(id) => Key::Browser(id.clone()),
            Requester::Anonymous(addr) => Key::Client(client_key(*addr)),
        };
        self.backoff(now, &key)
    }

    /// The secret was right: forget this requester's failures.
    pub fn succeeded(&mut self, attempt: Attempt) {
        match attempt.key {
            Key::Browser(id) => self.browsers.remove(&id),
            Key::Client(client) => self.clients.remove(&client),
        };
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

    /// The state to keep across a restart, with times as durations from
    /// `now`.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let saved = |e: &Entry| SavedEntry {
            failures: e.failures,
            blocked_ms: millis(e.blocked_until.saturating_duration_since(now)),
            idle_ms: millis(now.saturating_duration_since(e.last_seen)),
        };
        Snapshot {
            clients: self.clients.iter().map(|(k, e)| (*k, saved(e))).collect(),
            browsers: self
                .browsers
                .iter()
                .map(|(k, e)| (k.clone(), saved(e)))
                .collect(),
            schedule_offset_ms: if self.next_slot >= now {
                i64::try_from(millis(self.next_slot - now)).unwrap_or(i64::MAX)
            } else {
                -i64::try_from(millis(now - self.next_slot)).unwrap_or(i64::MAX)
            },
        }
    }

    /// A throttle that continues `snapshot` as of `now`. Each wait resumes
    /// in full and the global schedule where it was: a restart never
    /// shortens anyone's wait.
    pub fn restore(config: ThrottleConfig, snapshot: Snapshot, now: Instant) -> Self {
        let entry = |s: &SavedEntry| Entry {
            failures: s.failures,
            blocked_until: now + Duration::from_millis(s.blocked_ms),
            last_seen: now
                .checked_sub(Duration::from_millis(s.idle_ms))
                .unwrap_or(now),
        };
        let mut throttle = Throttle::new(config, now);
        let offset = Duration::from_millis(snapshot.schedule_offset_ms.unsigned_abs());
        let trailing_most = now.checked_sub(burst_span(&throttle.config)).unwrap_or(now);
        throttle.next_slot = if snapshot.schedule_offset_ms >= 0 {
            now + offset
        } else {
            now.checked_sub(offset).unwrap_or(now).max(trailing_most)
        };
        let (max_clients, max_browsers) =
            (throttle.config.max_clients, throttle.config.max_browsers);
        throttle.clients = snapshot
            .clients
            .iter()
            .take(max_clients)
            .map(|(k, s)| (client_key(*k), entry(s)))
            .collect();
        throttle.browsers = snapshot
            .browsers
            .iter()
            .take(max_browsers)
            .map(|(k, s)| (k.clone(), entry(s)))
            .collect();
        throttle
    }

    fn backoff(&self, now: Instant, key: &Key) -> Option<Throttled> {
        let (entry, scope) = match key {
            Key::Browser(id) => (self.browsers.get(id), Scope::Browser),
            Key::Client(client) => (self.clients.get(client), Scope::Client),
        };
        let wait = match entry {
            Some(e) if now < e.last_seen + self.config.forget_after => {
                e.blocked_until.saturating_duration_since(now)
            }
            _ => Duration::ZERO,
        };
        (wait > Duration::ZERO).then_some(Throttled {
            retry_after: wait,
            scope,
        })
    }

    /// The global ceiling, as a GCRA schedule with reservations: a client
    /// holding a reserved slot gets it once it opens; anyone else gets a
    /// slot now if the burst allows, or else the next free one, reserved.
    fn take_slot(&mut self, now: Instant, client: IpAddr) -> Result<(), Throttled> {
        let refill = self.config.global_refill.max(Duration::from_millis(1));
        let grace = self.config.reservation_grace;
        self.reserved.retain(|_, slot| now < *slot + grace);
        if let Some(&slot) = self.reserved.get(&client) {
            if now >= slot {
                self.reserved.remove(&client);
                return Ok(());
            }
            return Err(Throttled {
                retry_after: slot - now,
                scope: Scope::Global,
            });
        }
        let earliest = now.checked_sub(burst_span(&self.config)).unwrap_or(now);
        let slot = self.next_slot.max(earliest);
        if slot <= now {
            self.next_slot = slot + refill;
            return Ok(());
        }
        if self.reserved.len() < self.config.max_clients.max(1) {
            self.reserved.insert(client, slot);
            self.next_slot = slot + refill;
        }
        Err(Throttled {
            retry_after: slot - now,
            scope: Scope::Global,
        })
    }
}

/// What [`Throttle::snapshot`] saves; JSON through serde.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    clients: Vec<(IpAddr, SavedEntry)>,
    browsers: Vec<(TrustedId, SavedEntry)>,
    /// Where the global schedule's next slot is, from the snapshot's `now`:
    /// ahead (a queue) or behind (unused burst).
    schedule_offset_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedEntry {
    failures: u32,
    blocked_ms: u64,
    idle_ms: u64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How far the schedule may trail `now`: the burst's worth of intervals.
fn burst_span(config: &ThrottleConfig) -> Duration {
    config
        .global_refill
        .saturating_mul(config.global_burst.saturating_sub(1))
}

/// The address a client is counted by: IPv4-mapped IPv6 counts as IPv4;
/// other IPv6 addresses count per /64, since one host usually holds a
/// whole /64.
pub fn client_key(addr: IpAddr) -> IpAddr {
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
fn entry<K: Hash + Eq + Clone>(
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

    fn anon(ip: IpAddr) -> Requester {
        Requester::Anonymous(ip)
    }

    fn browser(id: &str) -> Requester {
        Requester::Trusted(serde_json::from_str(&format!("\"{id}\"")).expect("id"))
    }

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
            let a = t.begin(now, &anon(A)).expect("free try");
            t.failed(a);
        }
        // Fourth attempt allowed, then a 1 s wait.
        let a = t.begin(now, &anon(A)).expect("allowed");
        t.failed(a);
        let refused = t.begin(now, &anon(A)).expect_err("must wait");
        assert_eq!(refused.retry_after, secs(1));
        assert!(
            refused
                .message()
                .starts_with("Too many failed attempts. Try again in 1 seconds."),
            "{}",
            refused.message()
        );
        // Keep failing as soon as allowed: 2, 4, 8, 16, 32 s, then lockouts.
        let mut waits = Vec::new();
        for _ in 0..8 {
            let wait = t.begin(now, &anon(A)).expect_err("waiting").retry_after;
            waits.push(wait.as_secs());
            now += wait;
            let a = t.begin(now, &anon(A)).expect("allowed after the wait");
            t.failed(a);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 300, 300]);
        // After the lockout window the owner can log in, and that resets it.
        let w = t.begin(now, &anon(A)).expect_err("locked").retry_after;
        assert_eq!(w, secs(300));
        now += w;
        let a = t.begin(now, &anon(A)).expect("never locked for good");
        t.succeeded(a);
        assert!(
            t.begin(now, &anon(A)).is_ok(),
            "success resets the counters"
        );
    }

    #[test]
    fn retry_after_rounds_up_and_anonymous_clients_hear_about_trusted_browsers() {
        let th = Throttled {
            retry_after: Duration::from_millis(1500),
            scope: Scope::Browser,
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
        assert!(tiny.message().contains("A browser you have logged in with"));
    }

    #[test]
    fn no_address_can_hold_up_another_or_a_trusted_browser() {
        // The attack that locked owners out: failures from many addresses
        // used to add up on one account-wide key.
        let t0 = Instant::now();
        let mut t = Throttle::new(ThrottleConfig::default(), t0);
        for i in 0..20u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, i));
            while let Ok(a) = t.begin(t0, &anon(ip)) {
                t.failed(a);
            }
        }
        let r = t.begin(t0, &anon(B)).expect_err("the global ceiling holds");
        assert_eq!(r.scope, Scope::Global);
        assert!(
            t.begin(t0, &browser("00aa")).is_ok(),
            "a trusted browser has its own budget"
        );
    }

    #[test]
    fn a_trusted_browser_has_a_budget_of_its_own() {
        let t0 = Instant::now();
        let mut t = Throttle::new(ThrottleConfig::default(), t0);
        for _ in 0..4 {
            let a = t.begin(t0, &browser("00aa")).expect("within its budget");
            t.failed(a);
        }
        let r = t.begin(t0, &browser("00aa")).expect_err("it backs off too");
        assert_eq!(r.scope, Scope::Browser);
        assert!(t.begin(t0, &browser("00bb")).is_ok());
        assert!(t.begin(t0, &anon(A)).is_ok());
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
            match t.begin(t0, &anon(A)) {
                Ok(a) => permits.push(a),
                Err(_) => refused += 1,
            }
        }
        assert_eq!(permits.len(), 4, "3 free + 1 before the first delay");
        assert_eq!(refused, 46);
    }

    #[test]
    fn the_global_ceiling_reserves_slots_so_a_newcomer_waits_a_bounded_time() {
        let t0 = Instant::now();
        let config = ThrottleConfig {
            global_burst: 5,
            ..ThrottleConfig::default()
        };
        let mut t = Throttle::new(config, t0);
        for i in 0..5u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, i));
            let a = t.begin(t0, &anon(ip)).expect("within burst");
            t.failed(a);
        }
        // Three more attackers are refused and get the next three slots.
        let mut waits = Vec::new();
        for i in 5..8u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, i));
            let r = t.begin(t0, &anon(ip)).expect_err("ceiling");
            assert_eq!(r.scope, Scope::Global);
            waits.push(r.retry_after.as_secs());
        }
        assert_eq!(waits, [1, 2, 3]);
        // A newcomer is told the slot after them, and asking again early
        // does not move it back.
        let r = t.begin(t0, &anon(B)).expect_err("ceiling");
        assert_eq!(r.retry_after, secs(4));
        let early = t.begin(t0 + secs(2), &anon(B)).expect_err("not yet");
        assert_eq!(early.retry_after, secs(2));
        // Someone asking at second 4 does not take the newcomer's slot.
        let late = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 99));
        assert!(t.begin(t0 + secs(4), &anon(late)).is_err());
        let a = t.begin(t0 + secs(4), &anon(B)).expect("its reserved slot");
        t.succeeded(a);
    }

    #[test]
    fn an_unused_reservation_lapses() {
        let t0 = Instant::now();
        let config = ThrottleConfig {
            global_burst: 1,
            ..ThrottleConfig::default()
        };
        let grace = config.reservation_grace;
        let mut t = Throttle::new(config, t0);
        let a = t.begin(t0, &anon(A)).expect("burst");
        t.failed(a);
        assert!(t.begin(t0, &anon(B)).is_err());
        assert_eq!(t.reserved.len(), 1);
        let later = t0 + secs(1) + grace + secs(1);
        let a = t
            .begin(later, &anon(B))
            .expect("a fresh slot after the lapse");
        t.failed(a);
        assert!(t.reserved.is_empty());
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
                .begin(t0 + Duration::from_millis(u64::from(i)), &anon(ip))
                .expect("new client");
            t.failed(a);
            assert!(t.tracked_clients() <= 100);
        }
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_day() {
        let t0 = Instant::now();
        let mut t = Throttle::new(ThrottleConfig::default(), t0);
        let mut now = t0;
        for _ in 0..12 {
            if let Ok(a) = t.begin(now, &anon(A)) {
                t.failed(a);
            }
            now += secs(301);
        }
        assert_eq!(t.clients[&A].failures, 12);
        now += secs(24 * 3600);
        let a = t.begin(now, &anon(A)).expect("forgotten");
        t.failed(a);
        assert_eq!(t.clients[&A].failures, 1);
    }

    #[test]
    fn a_restart_resumes_every_wait_in_full() {
        let t0 = Instant::now();
        let mut t = Throttle::new(ThrottleConfig::default(), t0);
        for _ in 0..10 {
            let a = t.begin(t0, &anon(A)).or_else(|w| {
                let now = t0 + w.retry_after;
                t.begin(now, &anon(A))
            });
            if let Ok(a) = a {
                t.failed(a);
            }
        }
        let before = t.status(t0, &anon(A)).expect("backing off").retry_after;
        let json = serde_json::to_string(&t.snapshot(t0)).expect("json");
        let later = t0 + secs(7);
        let snapshot: Snapshot = serde_json::from_str(&json).expect("parse");
        let restored = Throttle::restore(ThrottleConfig::default(), snapshot, later);
        let after = restored.status(later, &anon(A)).expect("still backing off");
        assert_eq!(after.retry_after, before, "a restart never shortens a wait");
        assert!(restored.status(later, &anon(B)).is_none());
    }

    proptest::proptest! {
        /// Whatever the history, no refusal asks for more than the longest
        /// configured wait (the global schedule can add one interval per
        /// tracked client), and after that wait a client gets an attempt:
        /// the throttle never locks forever.
        #[test]
        fn never_locks_forever(ops in proptest::collection::vec((0u64..400, 0u8..4, proptest::bool::ANY), 1..200)) {
            let config = ThrottleConfig::default();
            let longest = config.lockout_window.max(config.max_backoff)
                + config.global_refill * 4;
            let t0 = Instant::now();
            let mut t = Throttle::new(config, t0);
            let mut now = t0;
            for (advance, who, ok) in ops {
                now += Duration::from_secs(advance);
                let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, who));
                match t.begin(now, &anon(ip)) {
                    Ok(a) if ok => t.succeeded(a),
                    Ok(a) => t.failed(a),
                    Err(th) => proptest::prop_assert!(th.retry_after <= longest, "{th:?}"),
                }
            }
            now += longest;
            proptest::prop_assert!(t.begin(now, &anon(A)).is_ok());
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

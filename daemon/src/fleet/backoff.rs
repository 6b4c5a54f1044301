//! Reconnect delays: exponential growth with full jitter.
//!
//! rumqttc reconnects as soon as `poll()` is called again, so without this a
//! dead broker is hammered in a tight loop (rumqtt issues #703, #918), and
//! after a broker restart every device of a fleet would come back in the
//! same instant. Each failure doubles a window (from `initial` up to `max`)
//! and the delay is drawn uniformly from the whole window ("full jitter"),
//! which spreads a fleet over the window instead of synchronising it.
//!
//! The type is pure: the caller passes the random number, so tests can pin
//! it and the daemon can use ring's `SystemRandom`.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// `initial` is the first window, `max` the largest; `max` is raised to
    /// `initial` if it is smaller.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            failures: 0,
        }
    }

    /// The window the next delay is drawn from.
    pub fn window(&self) -> Duration {
        // 2^20 times any sane initial window is past any sane maximum, and
        // stopping there keeps the multiplication from overflowing.
        let factor = 1u32 << self.failures.min(20);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Consecutive failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure and returns how long to wait before the next try:
    /// `random` scaled into `[0, window]`.
    pub fn next_delay(&mut self, random: u64) -> Duration {
        let window = self.window();
        self.failures = self.failures.saturating_add(1);
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(random % window_ms.saturating_add(1))
    }

    /// A connection was accepted: the next failure starts small again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A random `u64` from the operating system through ring. Falls back to the
/// clock's nanoseconds if the OS source fails, which still differs from one
/// device to the next.
pub fn system_random() -> u64 {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 8];
    match SystemRandom::new().fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos()))
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_window_doubles_up_to_the_maximum() {
        let mut b = Backoff::new(S, 60 * S);
        let windows: Vec<u64> = (0..9)
            .map(|_| {
                let w = b.window().as_secs();
                b.next_delay(0);
                w
            })
            .collect();
        assert_eq!(windows, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(b.failures(), 9);
    }

    #[test]
    fn delays_stay_within_zero_and_the_window() {
        let mut b = Backoff::new(Duration::from_millis(500), 30 * S);
        for attempt in 0..40 {
            let window = b.window();
            for random in [0, 1, 499, 500, 12345, u64::MAX / 2, u64::MAX] {
                let delay = b.clone().next_delay(random);
                assert!(delay <= window, "attempt {attempt}: {delay:?} > {window:?}");
            }
            b.next_delay(0);
        }
        assert_eq!(b.window(), 30 * S);
    }

    #[test]
    fn the_random_number_decides_where_in_the_window() {
        let b = Backoff::new(4 * S, 60 * S);
        assert_eq!(b.clone().next_delay(0), Duration::ZERO);
        assert_eq!(b.clone().next_delay(4000), 4 * S);
        assert_eq!(b.clone().next_delay(4001), Duration::ZERO);
        assert_eq!(b.clone().next_delay(1234), Duration::from_millis(1234));
    }

    #[test]
    fn a_success_starts_again_from_the_first_window() {
        let mut b = Backoff::new(S, 60 * S);
        for _ in 0..5 {
            b.next_delay(7);
        }
        assert_eq!(b.window(), 32 * S);
        b.reset();
        assert_eq!(b.window(), S);
        assert_eq!(b.failures(), 0);
    }

    #[test]
    fn many_failures_neither_overflow_nor_exceed_the_maximum() {
        let mut b = Backoff::new(Duration::from_secs(u64::MAX / 4), Duration::MAX);
        for _ in 0..100 {
            let _ = b.next_delay(u64::MAX);
        }
        assert!(b.window() <= Duration::MAX);
        let mut small = Backoff::new(S, 300 * S);
        for _ in 0..1000 {
            assert!(small.next_delay(u64::MAX) <= 300 * S);
        }
    }

    /// What jitter is for: a thousand devices that lose the broker at the
    /// same moment do not come back in the same second. With a 4 s first
    /// window no single second gets more than a third of them.
    #[test]
    fn a_fleet_that_fails_together_spreads_its_first_retry() {
        let mut per_second = [0u32; 5];
        for _ in 0..1000 {
            let delay = Backoff::new(4 * S, 300 * S).next_delay(system_random());
            per_second[delay.as_secs() as usize] += 1;
        }
        let busiest = per_second.iter().max().copied().unwrap_or(0);
        assert!(busiest < 333, "{per_second:?}");
    }
}

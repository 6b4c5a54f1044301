//! When a verified release may be installed and when the device may reboot
//! into it: the owner's choices (automatic updates, postponing, the
//! maintenance window), the vendor's limit on postponing security fixes,
//! and the rollout waves. Pure functions of their inputs, so every rule is
//! tested here without a clock.

use serde::{Deserialize, Serialize};
use update_manifest::{Rollout, Timestamp, Urgency};

/// What to do with a release the device may install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Install now.
    Install,
    /// Not yet; look again at `until`.
    Wait { until: Timestamp, why: Wait },
    /// Automatic updates are off: tell the owner, install when asked.
    AskOwner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The device's rollout wave has not started.
    Wave,
    /// The owner postponed this release.
    Postponed,
}

impl Wait {
    pub fn sentence(self) -> &'static str {
        match self {
            Wait::Wave => "waiting for this device's rollout wave",
            Wait::Postponed => "postponed by the owner",
        }
    }
}

/// The release as policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    pub urgency: Urgency,
    pub rollout: &'a Rollout,
    /// When this device first saw the release (the security limit runs
    /// from here, so postponing again cannot extend it).
    pub first_seen: Timestamp,
}

/// The owner's choices for one release.
#[derive(Debug, Clone, Copy)]
pub struct Choices {
    pub automatic: bool,
    pub postponed_until: Option<Timestamp>,
}

/// Decides about one release. `wave_seed` places this device in the
/// rollout (see [`wave_seed`]); `security_limit_secs` is the vendor's
/// longest wait for a security release.
pub fn decide(
    offer: Offer<'_>,
    choices: Choices,
    wave_seed: u16,
    now: Timestamp,
    security_limit_secs: i64,
) -> Decision {
    if !choices.automatic {
        return Decision::AskOwner;
    }
    let security = offer.urgency == Urgency::Security;
    if let Some(until) = choices.postponed_until {
        let until = if security {
            until.min(offer.first_seen.plus_seconds(security_limit_secs))
        } else {
            until
        };
        if now < until {
            return Decision::Wait {
                until,
                why: Wait::Postponed,
            };
        }
    }
    // Security fixes skip the waves: waiting for a wave is what an
    // attacker would like.
    if !security {
        let start = offer.rollout.start_for(wave_seed);
        if now < start {
            return Decision::Wait {
                until: start,
                why: Wait::Wave,
            };
        }
    }
    Decision::Install
}

/// The device's place in every rollout: the first two bytes of the
/// SHA-256 of its id, modulo 1024 (Bottlerocket's update waves). Stable
/// across reboots and updates, spread evenly across a fleet.
pub fn wave_seed(device_id: &str) -> u16 {
    let digest = ring::digest::digest(&ring::digest::SHA256, device_id.as_bytes());
    let bytes = digest.as_ref();
    u16::from_be_bytes([bytes[0], bytes[1]]) % 1024
}

/// The owner's maintenance window for reboots, in whole UTC hours:
/// `[start_hour, end_hour)`, wrapping past midnight when start > end; equal
/// hours mean the whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub start_hour: u8,
    pub end_hour: u8,
}

impl Window {
    pub fn is_valid(&self) -> bool {
        self.start_hour < 24 && self.end_hour < 24
    }

    fn contains(&self, hour: u8) -> bool {
        if self.start_hour == self.end_hour {
            true
        } else if self.start_hour < self.end_hour {
            (self.start_hour..self.end_hour).contains(&hour)
        } else {
            hour >= self.start_hour || hour < self.end_hour
        }
    }

    /// `now` if it is inside the window, else the window's next start.
    pub fn next_open(&self, now: Timestamp) -> Timestamp {
        let secs = now.unix();
        let hour = u8::try_from(secs.rem_euclid(86_400) / 3600).unwrap_or(0);
        if self.contains(hour) {
            return now;
        }
        let day_start = secs - secs.rem_euclid(86_400);
        let mut start = day_start + i64::from(self.start_hour) * 3600;
        if start <= secs {
            start += 86_400;
        }
        now.plus_seconds(start - secs)
    }
}

/// When the device may reboot into an installed release: at once, or at
/// the window's next opening; a security release no later than
/// `security_deadline`.
pub fn reboot_time(
    window: Option<Window>,
    now: Timestamp,
    security_deadline: Option<Timestamp>,
) -> Timestamp {
    let open = window.map_or(now, |w| w.next_open(now));
    match security_deadline {
        Some(deadline) => open.min(deadline.max(now)),
        None => open,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_unix(secs).unwrap()
    }
    const DAY: i64 = 86_400;
    const T0: i64 = 1_800_000_000 - 1_800_000_000 % DAY; // a midnight UTC

    fn rollout(start: i64, spread_hours: u32) -> Rollout {
        Rollout {
            start: t(start),
            spread_hours,
        }
    }

    fn auto() -> Choices {
        Choices {
            automatic: true,
            postponed_until: None,
        }
    }

    #[test]
    fn automatic_off_asks_the_owner_even_for_security_fixes() {
        let r = rollout(T0, 0);
        let offer = Offer {
            urgency: Urgency::Security,
            rollout: &r,
            first_seen: t(T0),
        };
        let choices = Choices {
            automatic: false,
            postponed_until: None,
        };
        assert_eq!(
            decide(offer, choices, 0, t(T0 + 10), 3600),
            Decision::AskOwner
        );
    }

    #[test]
    fn a_feature_release_waits_for_the_devices_wave_and_a_security_fix_does_not() {
        let r = rollout(T0, 24);
        let seed = 512; // half-way through the spread: 12 hours in
        let feature = Offer {
            urgency: Urgency::Feature,
            rollout: &r,
            first_seen: t(T0),
        };
        assert_eq!(
            decide(feature, auto(), seed, t(T0 + 3600), 0),
            Decision::Wait {
                until: t(T0 + 12 * 3600),
                why: Wait::Wave
            }
        );
        assert_eq!(
            decide(feature, auto(), seed, t(T0 + 12 * 3600), 0),
            Decision::Install
        );
        let security = Offer {
            urgency: Urgency::Security,
            ..feature
        };
        assert_eq!(
            decide(security, auto(), seed, t(T0 + 3600), 0),
            Decision::Install
        );
    }

    #[test]
    fn postponing_a_security_fix_stops_at_the_vendors_limit() {
        let r = rollout(T0, 0);
        let offer = Offer {
            urgency: Urgency::Security,
            rollout: &r,
            first_seen: t(T0),
        };
        let choices = Choices {
            automatic: true,
            postponed_until: Some(t(T0 + 14 * DAY)),
        };
        let limit = 3 * DAY;
        assert_eq!(
            decide(offer, choices, 0, t(T0 + DAY), limit),
            Decision::Wait {
                until: t(T0 + 3 * DAY),
                why: Wait::Postponed
            }
        );
        assert_eq!(
            decide(offer, choices, 0, t(T0 + 3 * DAY), limit),
            Decision::Install
        );
        // A feature release waits as long as the owner said.
        let feature = Offer {
            urgency: Urgency::Feature,
            ..offer
        };
        assert_eq!(
            decide(feature, choices, 0, t(T0 + 3 * DAY), limit),
            Decision::Wait {
                until: t(T0 + 14 * DAY),
                why: Wait::Postponed
            }
        );
    }

    #[test]
    fn wave_seeds_are_stable_and_spread() {
        assert_eq!(wave_seed("hrh1-0001"), wave_seed("hrh1-0001"));
        let seeds: std::collections::BTreeSet<u16> =
            (0..2000).map(|i| wave_seed(&format!("dev-{i}"))).collect();
        assert!(seeds.iter().all(|&s| s < 1024));
        assert!(seeds.len() > 800, "{} distinct seeds", seeds.len());
    }

    #[test]
    fn the_window_opens_now_or_at_its_next_start_and_wraps_midnight() {
        let w = Window {
            start_hour: 2,
            end_hour: 5,
        };
        assert_eq!(w.next_open(t(T0 + 3 * 3600)), t(T0 + 3 * 3600));
        assert_eq!(w.next_open(t(T0 + 6 * 3600)), t(T0 + DAY + 2 * 3600));
        assert_eq!(w.next_open(t(T0 + 3600)), t(T0 + 2 * 3600));
        let night = Window {
            start_hour: 22,
            end_hour: 4,
        };
        assert_eq!(night.next_open(t(T0 + 23 * 3600)), t(T0 + 23 * 3600));
        assert_eq!(night.next_open(t(T0 + 3600)), t(T0 + 3600));
        assert_eq!(night.next_open(t(T0 + 12 * 3600)), t(T0 + 22 * 3600));
        let all_day = Window {
            start_hour: 3,
            end_hour: 3,
        };
        assert!(all_day.is_valid());
        assert_eq!(all_day.next_open(t(T0 + 12 * 3600)), t(T0 + 12 * 3600));
        assert!(
            !Window {
                start_hour: 24,
                end_hour: 3
            }
            .is_valid()
        );
    }

    #[test]
    fn a_security_reboot_does_not_wait_past_its_deadline() {
        let w = Window {
            start_hour: 2,
            end_hour: 4,
        };
        let now = t(T0 + 6 * 3600);
        assert_eq!(reboot_time(Some(w), now, None), t(T0 + DAY + 2 * 3600));
        assert_eq!(
            reboot_time(Some(w), now, Some(t(T0 + 8 * 3600))),
            t(T0 + 8 * 3600)
        );
        assert_eq!(reboot_time(None, now, None), now);
    }
}

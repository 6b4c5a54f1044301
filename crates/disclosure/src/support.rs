//! Where the device stands in its defined support period (5.3-13), in plain
//! words for the dashboard, the security page and MQTT.

use serde::{Deserialize, Serialize};
use time::Date;

use crate::dates::{days_between, long_date};

/// The owner is warned this many days before the support period ends.
pub const ENDING_SOON_DAYS: i64 = 90;

/// Support-period state on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SupportState {
    /// More than [`ENDING_SOON_DAYS`] days left.
    Inside,
    /// The end date is at most [`ENDING_SOON_DAYS`] days away (or today).
    EndingSoon,
    /// The end date has passed.
    Ended,
}

/// The support period's status on `today`, with its sentences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportStatus {
    pub state: SupportState,
    pub end_date: Date,
    /// Days until the end date (0 on the last day, negative once ended).
    pub days_left: i64,
}

impl SupportStatus {
    /// Security updates are promised up to and including `end_date`.
    pub fn on(end_date: Date, today: Date) -> Self {
        let days_left = days_between(today, end_date);
        let state = if days_left < 0 {
            SupportState::Ended
        } else if days_left <= ENDING_SOON_DAYS {
            SupportState::EndingSoon
        } else {
            SupportState::Inside
        };
        Self {
            state,
            end_date,
            days_left,
        }
    }

    /// A short heading, e.g. for a dashboard card.
    pub fn headline(&self) -> &'static str {
        match self.state {
            SupportState::Inside => "Receiving security updates",
            SupportState::EndingSoon => "Security updates end soon",
            SupportState::Ended => "Security updates have ended",
        }
    }

    /// One or two plain sentences for the owner.
    pub fn sentence(&self, vendor_name: &str) -> String {
        let end = long_date(self.end_date);
        match self.state {
            SupportState::Inside => format!(
                "{vendor_name} provides security updates for this device until at least {end}."
            ),
            SupportState::EndingSoon => {
                let when = match self.days_left {
                    0 => "today".to_owned(),
                    1 => "tomorrow".to_owned(),
                    n => format!("in {n} days"),
                };
                format!(
                    "Security updates from {vendor_name} for this device end {when}, on {end}. \
                     After that date the device keeps working but no longer receives fixes for security problems; \
                     plan to replace it or check whether {vendor_name} has extended the support period."
                )
            }
            SupportState::Ended => format!(
                "The support period ended on {end}: {vendor_name} no longer promises security updates for this device. \
                 It keeps working and still installs updates if any are published, but new security problems may stay unfixed; \
                 consider replacing it."
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const END: Date = date!(2031 - 12 - 31);

    #[test]
    fn far_from_the_end_is_inside() {
        let s = SupportStatus::on(END, date!(2027 - 01 - 01));
        assert_eq!(s.state, SupportState::Inside);
        assert_eq!(
            s.sentence("Acme"),
            "Acme provides security updates for this device until at least 31 December 2031."
        );
    }

    #[test]
    fn ninety_one_days_before_is_still_inside() {
        let s = SupportStatus::on(END, date!(2031 - 10 - 01));
        assert_eq!(s.days_left, 91);
        assert_eq!(s.state, SupportState::Inside);
    }

    #[test]
    fn ninety_days_before_is_ending_soon() {
        let s = SupportStatus::on(END, date!(2031 - 10 - 02));
        assert_eq!(s.days_left, 90);
        assert_eq!(s.state, SupportState::EndingSoon);
        assert!(
            s.sentence("Acme")
                .contains("end in 90 days, on 31 December 2031")
        );
    }

    #[test]
    fn the_last_day_is_ending_soon_not_ended() {
        let s = SupportStatus::on(END, END);
        assert_eq!(s.state, SupportState::EndingSoon);
        assert!(s.sentence("Acme").contains("end today"));
    }

    #[test]
    fn the_day_after_is_ended() {
        let s = SupportStatus::on(END, date!(2032 - 01 - 01));
        assert_eq!(s.state, SupportState::Ended);
        assert_eq!(s.days_left, -1);
        assert_eq!(s.headline(), "Security updates have ended");
        assert!(
            s.sentence("Acme")
                .starts_with("The support period ended on 31 December 2031")
        );
        assert!(s.sentence("Acme").contains("still installs updates"));
    }

    #[test]
    fn state_serialises_in_snake_case() {
        let json = serde_json::to_string(&SupportState::EndingSoon).expect("serialises");
        assert_eq!(json, "\"ending_soon\"");
    }
}

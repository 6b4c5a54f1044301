//! Calendar arithmetic that has to be right around year ends and leap days.

use time::{Date, Month};

/// The same day `years` later; 29 February becomes 28 February in a
/// non-leap year (the convention of Python's `relativedelta`, which the
/// `sectxt` validator uses for its "more than a year" check).
pub fn add_years(d: Date, years: i32) -> Date {
    let year = d.year() + years;
    let day = d.day().min(time::util::days_in_month(d.month(), year));
    Date::from_calendar_date(year, d.month(), day).unwrap_or(d)
}

/// The date security.txt's Expires names, for a file served on `today`:
/// `today + days`, but always strictly less than one calendar year after
/// `today`, so the field never reaches RFC 9116's one-year bound. `days` is
/// clamped to at least 1 so Expires is never today or earlier.
pub fn expires_date(today: Date, days: i64) -> Date {
    let limit = add_years(today, 1).previous_day().unwrap_or(today);
    let wanted = today
        .checked_add(time::Duration::days(days.max(1)))
        .unwrap_or(limit);
    wanted.min(limit)
}

/// Days from `from` to `to` (negative when `to` is earlier).
pub fn days_between(from: Date, to: Date) -> i64 {
    (to - from).whole_days()
}

/// `2031-12-31` → "31 December 2031": unambiguous for every reader.
pub fn long_date(d: Date) -> String {
    let month = match d.month() {
        Month::January => "January",
        Month::February => "February",
        Month::March => "March",
        Month::April => "April",
        Month::May => "May",
        Month::June => "June",
        Month::July => "July",
        Month::August => "August",
        Month::September => "September",
        Month::October => "October",
        Month::November => "November",
        Month::December => "December",
    };
    format!("{} {month} {}", d.day(), d.year())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn add_years_keeps_ordinary_days() {
        assert_eq!(add_years(date!(2026 - 11 - 28), 1), date!(2027 - 11 - 28));
        assert_eq!(add_years(date!(2026 - 12 - 31), 1), date!(2027 - 12 - 31));
    }

    #[test]
    fn add_years_moves_leap_day_to_28_february() {
        assert_eq!(add_years(date!(2028 - 02 - 29), 1), date!(2029 - 02 - 28));
        assert_eq!(add_years(date!(2028 - 02 - 29), 4), date!(2032 - 02 - 29));
    }

    #[test]
    fn expires_is_today_plus_days_when_well_inside_a_year() {
        assert_eq!(
            expires_date(date!(2026 - 11 - 28), 180),
            date!(2027 - 05 - 27)
        );
    }

    #[test]
    fn expires_crosses_the_year_end() {
        assert_eq!(
            expires_date(date!(2026 - 12 - 31), 1),
            date!(2027 - 01 - 01)
        );
        assert_eq!(
            expires_date(date!(2026 - 12 - 15), 30),
            date!(2027 - 01 - 14)
        );
    }

    #[test]
    fn expires_365_days_is_clamped_below_one_year_in_a_common_year() {
        // 2026-03-01 + 365 days = 2027-03-01, exactly one year: clamp.
        assert_eq!(
            expires_date(date!(2026 - 03 - 01), 365),
            date!(2027 - 02 - 28)
        );
        assert_eq!(
            expires_date(date!(2026 - 01 - 01), 365),
            date!(2026 - 12 - 31)
        );
    }

    #[test]
    fn expires_365_days_across_a_leap_day_is_already_below_one_year() {
        // 2027-03-01 + 365 days = 2028-02-29 (2028 is a leap year), one day
        // short of a year: no clamp needed.
        assert_eq!(
            expires_date(date!(2027 - 03 - 01), 365),
            date!(2028 - 02 - 29)
        );
    }

    #[test]
    fn expires_from_a_leap_day() {
        // One year after 2028-02-29 is 2029-02-28; Expires stays before it.
        assert_eq!(
            expires_date(date!(2028 - 02 - 29), 365),
            date!(2029 - 02 - 27)
        );
        assert_eq!(
            expires_date(date!(2028 - 02 - 29), 1),
            date!(2028 - 03 - 01)
        );
    }

    #[test]
    fn expires_is_never_today_or_earlier() {
        assert_eq!(
            expires_date(date!(2026 - 11 - 28), 0),
            date!(2026 - 11 - 29)
        );
        assert_eq!(
            expires_date(date!(2026 - 11 - 28), -5),
            date!(2026 - 11 - 29)
        );
    }

    #[test]
    fn expires_is_always_strictly_less_than_a_year_ahead() {
        let mut today = date!(2027 - 01 - 01);
        while today < date!(2033 - 01 - 01) {
            for days in [1, 180, 364, 365, 366, 1000] {
                let e = expires_date(today, days);
                assert!(e > today, "{today} + {days}");
                assert!(e < add_years(today, 1), "{today} + {days} gave {e}");
            }
            today = today.next_day().expect("in range");
        }
    }

    #[test]
    fn days_between_counts_leap_days() {
        assert_eq!(
            days_between(date!(2028 - 02 - 28), date!(2028 - 03 - 01)),
            2
        );
        assert_eq!(
            days_between(date!(2027 - 02 - 28), date!(2027 - 03 - 01)),
            1
        );
        assert_eq!(
            days_between(date!(2027 - 01 - 01), date!(2026 - 12 - 31)),
            -1
        );
    }

    #[test]
    fn long_date_is_day_month_year() {
        assert_eq!(long_date(date!(2031 - 12 - 31)), "31 December 2031");
    }
}

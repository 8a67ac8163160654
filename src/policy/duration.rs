//! Parsing durations (`365 days`, `1 year`, `12 hours`) as written in the
//! policy, with the reason a text is not one. What a duration means is
//! `model::duration`. No I/O here.

use std::fmt;

use crate::model::{Duration, Unit};

/// The longest duration accepted: beyond this, timestamps plus the interval
/// leave PostgreSQL's range long before any data could be that old.
const MAX_YEARS: u64 = 1000;

/// Why a duration is not valid; the caller adds the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// Not `N unit`.
    Syntax,
    /// `0 days`.
    Zero,
    /// `-3 days`.
    Negative,
    /// More than 1000 years.
    TooLong,
    /// A unit we don't know (e.g. `minutes`, `fortnights`).
    Unit(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Syntax => write!(f, "is not a duration"),
            DurationError::Zero => write!(f, "is zero; a retention must be positive"),
            DurationError::Negative => write!(f, "is negative; a retention must be positive"),
            DurationError::TooLong => write!(f, "is longer than {MAX_YEARS} years"),
            DurationError::Unit(u) => write!(f, "has an unknown unit `{u}`"),
        }
    }
}

/// The hint shown for every duration error.
pub const DURATION_HELP: &str =
    "write a whole number and a unit: `12 hours`, `30 days`, `2 weeks`, `6 months`, `1 year`";

/// Parse `N unit` (unit singular or plural, any case, any spacing).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let mut parts = text.split_whitespace();
    let (Some(num), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(DurationError::Syntax);
    };
    if let Some(rest) = num.strip_prefix('-') {
        return if rest.chars().all(|c| c.is_ascii_digit()) && !rest.is_empty() {
            Err(DurationError::Negative)
        } else {
            Err(DurationError::Syntax)
        };
    }
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit()) {
        return Err(DurationError::Syntax);
    }
    let unit = match unit.to_ascii_lowercase().as_str() {
        "hour" | "hours" => Unit::Hour,
        "day" | "days" => Unit::Day,
        "week" | "weeks" => Unit::Week,
        "month" | "months" => Unit::Month,
        "year" | "years" => Unit::Year,
        other => return Err(DurationError::Unit(other.to_string())),
    };
    let n: u64 = num.parse().map_err(|_| DurationError::TooLong)?;
    if n == 0 {
        return Err(DurationError::Zero);
    }
    let d = Duration {
        n: u32::try_from(n).map_err(|_| DurationError::TooLong)?,
        unit,
    };
    if d.pg_micros() > (MAX_YEARS as i128) * 360 * 86_400_000_000 {
        return Err(DurationError::TooLong);
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Fields;

    #[test]
    fn parses_units_singular_and_plural() {
        assert_eq!(parse("365 days").unwrap().sql(), "365 days");
        assert_eq!(parse("1 year").unwrap().sql(), "1 year");
        assert_eq!(parse(" 2  Weeks ").unwrap().sql(), "2 weeks");
        assert_eq!(parse("1 hours").unwrap().sql(), "1 hour");
    }

    #[test]
    fn rejects_bad_durations() {
        assert_eq!(parse("0 days"), Err(DurationError::Zero));
        assert_eq!(parse("-3 days"), Err(DurationError::Negative));
        assert_eq!(parse("3"), Err(DurationError::Syntax));
        assert_eq!(parse("days"), Err(DurationError::Syntax));
        assert_eq!(parse("3.5 days"), Err(DurationError::Syntax));
        assert_eq!(
            parse("3 minutes"),
            Err(DurationError::Unit("minutes".into()))
        );
        assert_eq!(parse("1001 years"), Err(DurationError::TooLong));
        assert_eq!(
            parse("99999999999999999999 days"),
            Err(DurationError::TooLong)
        );
    }

    fn f(text: &str) -> Fields {
        parse(text).unwrap().fields()
    }

    #[test]
    fn at_least_holds_for_every_row_time() {
        assert!(f("1 month").at_least(&f("28 days")));
        assert!(!f("1 month").at_least(&f("29 days")), "February");
        assert!(!f("30 days").at_least(&f("1 month")), "January");
        assert!(f("31 days").at_least(&f("1 month")));
        assert!(f("1 year").at_least(&f("12 months")));
        assert!(f("12 months").at_least(&f("1 year")));
        assert!(f("2 days").at_least(&f("48 hours")));
        assert!(!f("47 hours").at_least(&f("2 days")));
        assert!(f("1 hour").at_least(&f("1 hour")));
        assert!(f("2 months").at_least(&f("1 month")));
        assert!(f("1 month").at_least(&f("1 hour")));
        assert!(f("1 year").at_least(&f("365 days")));
        assert!(!f("1 year").at_least(&f("366 days")), "common years");
        assert!(!f("10 years").at_least(&f("3653 days")));
        assert!(
            f("10 years").at_least(&f("3651 days")),
            "2096-02-29 + 10 years, 2100 is no leap year"
        );
        assert!(!f("10 years").at_least(&f("3652 days")));
        assert!(!f("3652 days").at_least(&f("10 years")), "three leap days");
    }

    #[test]
    fn compares_like_postgres() {
        let y = parse("1 year").unwrap();
        let d = parse("365 days").unwrap();
        assert!(d > y, "PostgreSQL counts a year as 360 days when comparing");
    }
}

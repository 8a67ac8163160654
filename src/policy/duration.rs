//! Durations (`365 days`, `1 year`, `12 hours`): parsing, the PostgreSQL
//! interval they mean, and comparison the way PostgreSQL compares intervals.
//! No I/O here.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The unit of a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Year => "year",
        }
    }
}

/// A positive duration, as written in the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Duration {
    pub n: u32,
    pub unit: Unit,
}

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

impl Duration {
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

    /// The PostgreSQL interval literal text, e.g. `365 days`.
    pub fn sql(&self) -> String {
        format!(
            "{} {}{}",
            self.n,
            self.unit.name(),
            if self.n == 1 { "" } else { "s" }
        )
    }

    /// Whether the interval has a month part (months, years): calendar
    /// arithmetic that clamps to month ends.
    pub fn is_calendar(&self) -> bool {
        matches!(self.unit, Unit::Month | Unit::Year)
    }

    /// The length PostgreSQL uses to compare intervals: a month is 30 days,
    /// a year 12 months (360 days). Used for bounds checks so the policy
    /// check agrees with the database's check of run-time settings.
    pub fn pg_micros(&self) -> i128 {
        let day: i128 = 86_400_000_000;
        let n = self.n as i128;
        match self.unit {
            Unit::Hour => n * 3_600_000_000,
            Unit::Day => n * day,
            Unit::Week => n * 7 * day,
            Unit::Month => n * 30 * day,
            Unit::Year => n * 360 * day,
        }
    }

    /// An upper bound of the interval's length in days (a month counted as 31
    /// days, a year as 366): for sizing partitions.
    pub fn max_days(&self) -> u64 {
        let n = self.n as u64;
        match self.unit {
            Unit::Hour => n.div_ceil(24),
            Unit::Day => n,
            Unit::Week => n * 7,
            Unit::Month => n * 31,
            Unit::Year => n * 366,
        }
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sql())
    }
}

impl PartialOrd for Duration {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Duration {
    /// PostgreSQL's interval order, ties broken by unit for a total order.
    fn cmp(&self, other: &Self) -> Ordering {
        self.pg_micros()
            .cmp(&other.pg_micros())
            .then((self.unit as u8).cmp(&(other.unit as u8)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_singular_and_plural() {
        assert_eq!(Duration::parse("365 days").unwrap().sql(), "365 days");
        assert_eq!(Duration::parse("1 year").unwrap().sql(), "1 year");
        assert_eq!(Duration::parse(" 2  Weeks ").unwrap().sql(), "2 weeks");
        assert_eq!(Duration::parse("1 hours").unwrap().sql(), "1 hour");
    }

    #[test]
    fn rejects_bad_durations() {
        assert_eq!(Duration::parse("0 days"), Err(DurationError::Zero));
        assert_eq!(Duration::parse("-3 days"), Err(DurationError::Negative));
        assert_eq!(Duration::parse("3"), Err(DurationError::Syntax));
        assert_eq!(Duration::parse("days"), Err(DurationError::Syntax));
        assert_eq!(Duration::parse("3.5 days"), Err(DurationError::Syntax));
        assert_eq!(
            Duration::parse("3 minutes"),
            Err(DurationError::Unit("minutes".into()))
        );
        assert_eq!(Duration::parse("1001 years"), Err(DurationError::TooLong));
        assert_eq!(
            Duration::parse("99999999999999999999 days"),
            Err(DurationError::TooLong)
        );
    }

    #[test]
    fn compares_like_postgres() {
        let y = Duration::parse("1 year").unwrap();
        let d = Duration::parse("365 days").unwrap();
        assert!(d > y, "PostgreSQL counts a year as 360 days when comparing");
    }
}

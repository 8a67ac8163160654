//! Durations as the policy means them (`365 days`, `1 year`, `12 hours`):
//! the PostgreSQL interval each one is, and comparison the way PostgreSQL
//! compares intervals. Parsing the policy's text is `policy::duration`'s
//! job. No I/O here.

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

impl Duration {
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

    /// The interval's three fields as PostgreSQL stores them: months, days
    /// and microseconds (hours). Weeks are days, years are months.
    pub fn fields(&self) -> Fields {
        let n = self.n as i64;
        let (months, days, micros) = match self.unit {
            Unit::Hour => (0, 0, n * 3_600_000_000),
            Unit::Day => (0, n, 0),
            Unit::Week => (0, 7 * n, 0),
            Unit::Month => (n, 0, 0),
            Unit::Year => (12 * n, 0, 0),
        };
        Fields {
            months,
            days,
            micros,
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

/// An interval's fields (months, days, microseconds), as PostgreSQL keeps
/// them and applies them to a timestamp: months first, then days, then time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub months: i64,
    pub days: i64,
    pub micros: i64,
}

impl Fields {
    /// Whether `self` gives every row a deadline at least as late as `other`
    /// does, whatever the row's time, applied the way PostgreSQL adds an
    /// interval to a timestamp in UTC: months first (clamped to the month's
    /// end), then days, then time. Month lengths vary, so `1 month` is not at
    /// least `29 days` (February) and `30 days` is not at least `1 month`
    /// (January). The database's check of run-time tenant settings
    /// (`retention.keep_at_least`) applies the same rule, so `check` and the
    /// database agree.
    ///
    /// Exact: when both sides have months and days or time, it compares
    /// the two deadlines from every start that can differ, which are the 1st,
    /// 29th, 30th and 31st of every month of one 400-year Gregorian cycle
    /// (from any other day neither addition clamps, so the 1st stands for it).
    pub fn at_least(&self, other: &Fields) -> bool {
        const DAY: i128 = 86_400_000_000;
        let flat = |f: &Fields| f.days as i128 * DAY + f.micros as i128;
        if self.months == other.months {
            return flat(self) >= flat(other);
        }
        if flat(self) == 0 && flat(other) == 0 {
            return self.months >= other.months;
        }
        let add = |start: chrono::NaiveDate, f: &Fields| -> Option<chrono::NaiveDateTime> {
            let months = chrono::Months::new(u32::try_from(f.months).ok()?);
            let d = start.checked_add_months(months)?;
            d.and_hms_opt(0, 0, 0)?
                .checked_add_signed(chrono::TimeDelta::days(f.days))?
                .checked_add_signed(chrono::TimeDelta::microseconds(f.micros))
        };
        for year in 2000..2400 {
            for month in 1..=12 {
                for day in [1, 29, 30, 31] {
                    let Some(start) = chrono::NaiveDate::from_ymd_opt(year, month, day) else {
                        continue;
                    };
                    match (add(start, self), add(start, other)) {
                        (Some(a), Some(b)) if a >= b => {}
                        _ => return false,
                    }
                }
            }
        }
        true
    }

    /// No field is negative: the interval moves every timestamp forward or
    /// leaves it, never back (`1 month -29 days` moves a February row back).
    pub fn is_forward(&self) -> bool {
        self.months >= 0 && self.days >= 0 && self.micros >= 0
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

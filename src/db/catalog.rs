//! What schema `retention` says about the datasets, as a database has it:
//! the settings rows of `retention.dataset`, the policy overrides, the
//! legal holds and the run-time tenant settings, one row type each. Every
//! command reads them here: status, verify, plan, report, run and erase.

use std::fmt;

use postgres::GenericClient;

use super::{col, ctx, pg_message, DbError};

/// A retention as the database stores it (an interval), for sentences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    pub months: i32,
    pub days: i32,
    pub hours: i32,
}

impl Interval {
    /// The three select-list items that read `expr` (an interval) as an `Interval`.
    fn select(expr: &str) -> String {
        format!(
            "(date_part('year', {expr})::int * 12 + date_part('month', {expr})::int), date_part('day', {expr})::int, date_part('hour', {expr})::int"
        )
    }

    /// Read the three columns written by [`Interval::select`] starting at `i`.
    fn from_row(row: &postgres::Row, i: usize) -> Result<Option<Interval>, DbError> {
        let (months, days, hours) = (
            col::<Option<i32>>(row, i)?,
            col::<Option<i32>>(row, i + 1)?,
            col::<Option<i32>>(row, i + 2)?,
        );
        Ok(match (months, days, hours) {
            (Some(months), Some(days), Some(hours)) => Some(Interval {
                months,
                days,
                hours,
            }),
            _ => None,
        })
    }

    /// The length PostgreSQL compares intervals by, in days (a month is 30 days).
    pub fn days(&self) -> f64 {
        self.months as f64 * 30.0 + self.days as f64 + self.hours as f64 / 24.0
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = |n: i32, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        let mut parts = Vec::new();
        if self.months / 12 != 0 {
            parts.push(unit(self.months / 12, "year"));
        }
        if self.months % 12 != 0 {
            parts.push(unit(self.months % 12, "month"));
        }
        if self.days != 0 {
            parts.push(unit(self.days, "day"));
        }
        if self.hours != 0 {
            parts.push(unit(self.hours, "hour"));
        }
        if parts.is_empty() {
            parts.push("0 days".into());
        }
        f.write_str(&parts.join(" "))
    }
}

/// A dataset's row in `retention.dataset`.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetRow {
    pub name: String,
    /// The table as pgretain stored it (quoted: `"app"."events"`).
    pub relation: String,
    /// The table as PostgreSQL names it (`app.events`); the stored text
    /// when the table is gone.
    pub table: String,
    pub time_column: String,
    pub tenant_column: Option<String>,
    /// day, week or month.
    pub granularity: String,
    pub schedule: String,
    /// The default retention, as PostgreSQL prints the interval.
    pub keep: String,
    /// The same, for sentences (`None` if it cannot be read as one).
    pub keep_interval: Option<Interval>,
    pub min_keep: Option<String>,
    pub max_keep: Option<String>,
    /// The archive table, with `on_expiry: archive`.
    pub archive_relation: Option<String>,
}

/// Every dataset the database enforces, by name.
pub fn datasets(client: &mut impl GenericClient) -> Result<Vec<DatasetRow>, DbError> {
    let sql = format!(
        "SELECT name, relation, coalesce(pg_catalog.to_regclass(relation)::text, relation), time_column,
                tenant_column, granularity, schedule, keep::text, {}, min_keep::text, max_keep::text,
                archive_relation
           FROM retention.dataset ORDER BY name",
        Interval::select("keep")
    );
    let rows = client.query(sql.as_str(), &[]).map_err(|e| {
        DbError(format!(
            "cannot read retention.dataset ({}); has `pgretain apply` run on this database?",
            pg_message(&e)
        ))
    })?;
    rows.iter()
        .map(|r| {
            Ok(DatasetRow {
                name: col(r, 0)?,
                relation: col(r, 1)?,
                table: col(r, 2)?,
                time_column: col(r, 3)?,
                tenant_column: col(r, 4)?,
                granularity: col(r, 5)?,
                schedule: col(r, 6)?,
                keep: col(r, 7)?,
                keep_interval: Interval::from_row(r, 8)?,
                min_keep: col(r, 11)?,
                max_keep: col(r, 12)?,
                archive_relation: col(r, 13)?,
            })
        })
        .collect()
}

/// A row of `retention.policy_override`.
#[derive(Debug, Clone, PartialEq)]
pub struct OverrideRow {
    pub dataset: String,
    pub tenant: Option<String>,
    pub environment: Option<String>,
    /// `None` if the interval cannot be read as one.
    pub keep: Option<Interval>,
}

/// Every policy override in the database.
pub fn overrides(client: &mut impl GenericClient) -> Result<Vec<OverrideRow>, DbError> {
    let sql = format!(
        "SELECT dataset, tenant, environment, {} FROM retention.policy_override",
        Interval::select("keep")
    );
    client
        .query(sql.as_str(), &[])
        .map_err(ctx("reading retention.policy_override"))?
        .iter()
        .map(|r| {
            Ok(OverrideRow {
                dataset: col(r, 0)?,
                tenant: col(r, 1)?,
                environment: col(r, 2)?,
                keep: Interval::from_row(r, 3)?,
            })
        })
        .collect()
}

/// A row of `retention.hold`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRow {
    pub dataset: String,
    /// `None`: every tenant.
    pub tenant: Option<String>,
    /// `None`: every environment.
    pub environment: Option<String>,
    pub reason: String,
    /// Last day in force (UTC, `YYYY-MM-DD`); `None`: until removed.
    pub until: Option<String>,
    /// In force now (its `until` day included).
    pub active: bool,
}

/// Every legal hold in the database, by dataset, reason, tenant and
/// environment (every tenant or environment first).
pub fn holds(client: &mut impl GenericClient) -> Result<Vec<HoldRow>, DbError> {
    client
        .query(
            "SELECT dataset, tenant, environment, reason, until::text,
                    until IS NULL OR (now() AT TIME ZONE 'UTC') < (until + 1)::timestamp
               FROM retention.hold
              ORDER BY dataset, reason, tenant NULLS FIRST, environment NULLS FIRST",
            &[],
        )
        .map_err(ctx("reading retention.hold"))?
        .iter()
        .map(|r| {
            Ok(HoldRow {
                dataset: col(r, 0)?,
                tenant: col(r, 1)?,
                environment: col(r, 2)?,
                reason: col(r, 3)?,
                until: col(r, 4)?,
                active: col(r, 5)?,
            })
        })
        .collect()
}

/// The run-time tenant settings of one dataset (`retention.tenant_setting`),
/// summed up: how many, and the shortest and longest retention they set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantSettings {
    pub count: i64,
    pub shortest: Option<Interval>,
    pub longest: Option<Interval>,
}

/// The tenant settings of `dataset`.
pub fn tenant_settings(
    client: &mut impl GenericClient,
    dataset: &str,
) -> Result<TenantSettings, DbError> {
    let sql = format!(
        "SELECT count(*), {}, {} FROM retention.tenant_setting WHERE dataset = $1",
        Interval::select("min(keep)"),
        Interval::select("max(keep)")
    );
    let r = client
        .query_one(sql.as_str(), &[&dataset])
        .map_err(ctx("reading retention.tenant_setting"))?;
    Ok(TenantSettings {
        count: col(&r, 0)?,
        shortest: Interval::from_row(&r, 1)?,
        longest: Interval::from_row(&r, 4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_like_the_policy() {
        let i = |months, days, hours| Interval {
            months,
            days,
            hours,
        };
        assert_eq!(i(0, 365, 0).to_string(), "365 days");
        assert_eq!(i(18, 0, 0).to_string(), "1 year 6 months");
        assert_eq!(i(0, 0, 12).to_string(), "12 hours");
        assert_eq!(i(1, 0, 0).to_string(), "1 month");
    }
}

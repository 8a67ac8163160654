//! The expiry rule, written once: a row expires when its deadline (its
//! time in UTC plus the retention in force for it) is before the run's
//! start, unless a legal hold covers it.
//!
//! As SQL over row `t` of the dataset's table, for the view of expired rows
//! (`render`), and for the report's counts of rows past their deadline and
//! held (`db`); and in words, for the comment that opens each dataset's
//! migration. It mirrors `retention.expired_predicate()` of `runtime.sql`,
//! which each run specializes; tests check both remove the same rows.
//! Pure functions, no I/O.

use crate::model::{ChangesApplyTo, Clock, Dataset, STAMP_COLUMN};

use super::text::{comment, ident, lit};

/// The expiry rule of one dataset, over row `t`.
#[derive(Debug, Clone)]
pub struct Expiry<'a> {
    ds: &'a Dataset,
    /// The retention and the holds written out, as a run writes them
    /// (`retention.run_keep`, `retention.run_held`), in place of
    /// keep_for() and is_held(): on Citus, a function that reads the
    /// settings cannot be called per row of a distributed table.
    written_out: Option<(String, String)>,
}

impl<'a> Expiry<'a> {
    /// The rule of `ds`.
    pub fn of(ds: &'a Dataset) -> Expiry<'a> {
        Expiry {
            ds,
            written_out: None,
        }
    }

    /// The rule of `ds` with its retention (`keep`, SQL over row `t`) and
    /// its holds at the time in question (`held`, SQL over row `t`; `None`:
    /// no hold is active) written out, as `retention.run_keep()` and
    /// `retention.run_held()` give them.
    pub fn written_out(ds: &'a Dataset, keep: String, held: Option<String>) -> Expiry<'a> {
        let held = held.map(|h| format!("coalesce(({h}), false)"));
        Expiry {
            ds,
            written_out: Some((keep, held.unwrap_or_else(|| "false".into()))),
        }
    }

    /// Column `column` of row `t` as text, or `NULL::text` without one.
    fn column_text(column: Option<&str>) -> String {
        column
            .map(|c| format!("t.{}::text", ident(c)))
            .unwrap_or_else(|| "NULL::text".into())
    }

    fn tenant(&self) -> String {
        Self::column_text(self.ds.tenant.as_deref())
    }

    fn environment(&self) -> String {
        Self::column_text(self.ds.environment.as_deref())
    }

    /// The retention in force now for row `t`'s tenant and environment.
    pub fn keep_in_force(&self) -> String {
        format!(
            "retention.keep_for({}::text, {}, {})",
            lit(&self.ds.name),
            self.tenant(),
            self.environment()
        )
    }

    /// The retention of row `t`: its stamp (`changes_apply_to: new_rows`),
    /// or the retention in force now.
    pub fn keep(&self) -> String {
        if let Some((keep, _)) = &self.written_out {
            return keep.clone();
        }
        if self.ds.changes_apply_to == ChangesApplyTo::NewRows {
            format!("t.{}", ident(STAMP_COLUMN))
        } else {
            self.keep_in_force()
        }
    }

    /// The instant (a `timestamptz`) that `expr`, a value of the dataset's
    /// clock type, names: a `timestamp` is read in the dataset's zone, a
    /// `date` is midnight there. The same rule as `retention.clock_of()`.
    pub fn instant_of(&self, expr: &str) -> String {
        match self.ds.clock() {
            Some(Clock::Timestamptz) => expr.to_string(),
            Some(Clock::Timestamp) => {
                format!("({expr} AT TIME ZONE {}::text)", lit(self.ds.zone()))
            }
            Some(Clock::Date) => format!(
                "({expr}::timestamp without time zone AT TIME ZONE {}::text)",
                lit(self.ds.zone())
            ),
            // An existing table: PostgreSQL picks the overload of the
            // column's type (the same rules, in retention.instant).
            None => format!("retention.instant({expr}, {}::text)", lit(self.ds.zone())),
        }
    }

    /// Row `t`'s time, as an instant.
    pub fn instant(&self) -> String {
        self.instant_of(&format!("t.{}", ident(&self.ds.time)))
    }

    /// Row `t`'s deadline as a UTC timestamp without time zone.
    fn deadline_utc(&self) -> String {
        format!(
            "({} AT TIME ZONE 'UTC'::text) + {}",
            self.instant(),
            self.keep()
        )
    }

    /// Row `t`'s deadline, a `timestamptz`.
    pub fn deadline(&self) -> String {
        format!("({}) AT TIME ZONE 'UTC'::text", self.deadline_utc())
    }

    /// Whether row `t`'s deadline is before `at` (an SQL `timestamptz`).
    pub fn past_deadline(&self, at: &str) -> String {
        format!("{} < ({at} AT TIME ZONE 'UTC'::text)", self.deadline_utc())
    }

    /// Whether a legal hold covers row `t` at `at`.
    pub fn held(&self, at: &str) -> String {
        if let Some((_, held)) = &self.written_out {
            // Written out for `at` already; `at` is still named (never
            // NULL, so it changes nothing) so that a statement keeps it as
            // a parameter.
            return format!("({held} OR {at} IS NULL)");
        }
        format!(
            "retention.is_held({}::text, {}, {}, {at})",
            lit(&self.ds.name),
            self.tenant(),
            self.environment()
        )
    }

    /// Whether a run starting at `at` removes row `t`: past its deadline
    /// and not held. (Laid out on two lines, as the view shows it.)
    pub fn expired(&self, at: &str) -> String {
        format!("{}\n  AND NOT {}", self.past_deadline(at), self.held(at))
    }

    /// The rule in words, as the comment opening the dataset's migration
    /// says it (two comment lines).
    pub fn in_words(&self) -> String {
        let time = match self.ds.clock() {
            Some(Clock::Timestamptz) => ident(&self.ds.time),
            None => format!(
                "{} (as an instant; a timestamp or date read in {})",
                ident(&self.ds.time),
                comment(self.ds.zone())
            ),
            Some(Clock::Timestamp) => format!(
                "{} (a wall time in {})",
                ident(&self.ds.time),
                comment(self.ds.zone())
            ),
            Some(Clock::Date) => format!(
                "{} (midnight in {})",
                ident(&self.ds.time),
                comment(self.ds.zone())
            ),
        };
        format!(
            "-- Each run removes exactly the rows whose deadline, {time} + retention (UTC),\n-- is before the run's start, unless a legal hold covers them.\n"
        )
    }
}

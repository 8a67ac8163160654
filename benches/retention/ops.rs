//! The operator commands on the benchmark's data: the wall time of
//! `status`, `verify` and `plan` (each through pgretain's library, as the
//! binary runs them, less the process start), on the backlog before the
//! catch-up run and again after it, with the overdue figure each reports.
//! Target: each ≤ 3 s (issue 11).

use std::fmt::Write as _;
use std::time::Instant;

use pgretain::cmd::plan::{plan, PlanOptions};
use pgretain::cmd::status::{status, StatusOptions};
use pgretain::cmd::verify::{verify, FindingKind, VerifyOptions};
use pgretain::words::thousands;

use crate::config::Scenario;
use crate::db::Db;
use crate::output::{human_rows, secs};
use crate::setup::Bench;

/// The operator commands must answer within this, at any size.
pub(crate) const OPS_TARGET_SECS: f64 = 3.0;

#[derive(Clone, Debug)]
pub(crate) struct OpsTiming {
    pub(crate) rows: u64,
    pub(crate) scenario: Scenario,
    pub(crate) moment: &'static str,
    pub(crate) command: &'static str,
    pub(crate) secs: f64,
    /// What it said about the overdue rows.
    pub(crate) figure: String,
}

impl Bench {
    /// Times status, verify and plan on `db` as it is now, and counts the
    /// rows truly overdue (the bench's reference predicate) to compare.
    pub(crate) fn time_ops(&mut self, db: &Db, rows: u64, sc: Scenario, moment: &'static str) {
        let url = Some(db.conninfo.clone());
        let generated = db
            .generated
            .as_ref()
            .expect("a pgretain database")
            .path()
            .to_path_buf();
        let mut out = Vec::new();

        let t = Instant::now();
        let st = status(&StatusOptions {
            database_url: url.clone(),
            cron_database: None,
        })
        .unwrap_or_else(|e| panic!("status: {e}"));
        let s = t.elapsed().as_secs_f64();
        let o = st.datasets[0].overdue;
        let figure = if o.estimate {
            format!(
                "overdue ~{} (estimate; {} counted)",
                thousands(o.count),
                thousands(o.counted)
            )
        } else {
            format!("overdue {} (exact)", thousands(o.count))
        };
        out.push(("status", s, figure));

        let t = Instant::now();
        let report = verify(&VerifyOptions {
            database_url: url.clone(),
            generated_dir: generated.clone(),
            cron_database: None,
        })
        .unwrap_or_else(|e| panic!("verify: {e}"));
        let s = t.elapsed().as_secs_f64();
        // (The bench removes the pg_cron jobs: job_missing is expected.)
        let figure = match report.of(FindingKind::Overdue).first() {
            Some(f) => f
                .message
                .split(" past ")
                .next()
                .unwrap_or_default()
                .to_string(),
            None if report.unproven.is_empty() => "nothing overdue (proven)".to_string(),
            None => "nothing overdue seen (not proven)".to_string(),
        };
        out.push(("verify", s, figure));

        let t = Instant::now();
        let p = plan(&PlanOptions {
            database_url: url,
            generated_dir: generated,
            ..PlanOptions::default()
        })
        .unwrap_or_else(|e| panic!("plan: {e}"));
        let s = t.elapsed().as_secs_f64();
        let figure = match p.datasets.first().and_then(|d| d.next) {
            Some(c) if c.estimated => format!(
                "next run removes ~{} (estimate; {} counted)",
                thousands(c.rows),
                thousands(c.counted)
            ),
            Some(c) => format!("next run removes {} (exact)", thousands(c.rows)),
            None => "-".to_string(),
        };
        out.push(("plan", s, figure));

        // The truth, from the bench's own reference predicate at the same
        // moment (a full scan; not timed).
        let now: String = self
            .admin()
            .query_one("SELECT now()::text", &[])
            .map(|r| r.get(0))
            .unwrap_or_default();
        let truth_sql = format!(
            "SELECT count(*) FROM app.events WHERE {}",
            self.reference_expired(sc, &now, self.cfg.keep_days)
        );
        let mut c = self.cluster.client(&db.name);
        let truth: i64 = c.query_one(truth_sql.as_str(), &[]).unwrap().get(0);
        out[0].2.push_str(&format!("; truly {}", thousands(truth)));
        out[2].2.push_str(&format!("; truly {}", thousands(truth)));

        for (command, secs, figure) in out {
            self.log(&format!(
                "{} {} {moment}: pgretain {command} {secs:.3} s; {figure}",
                human_rows(rows),
                sc.name()
            ));
            self.ops.push(OpsTiming {
                rows,
                scenario: sc,
                moment,
                command,
                secs,
                figure,
            });
        }
    }

    pub(crate) fn ops_table(&self) -> String {
        let mut s = String::from(
            "| rows | scenario | moment | command | wall time | what it said |\n|---|---|---|---|--:|---|\n",
        );
        for o in &self.ops {
            let _ = writeln!(
                s,
                "| {} | {} | {} | `{}` | {} | {} |",
                human_rows(o.rows),
                o.scenario.name(),
                o.moment,
                o.command,
                secs(o.secs),
                o.figure
            );
        }
        s
    }

    /// One line per size: the slowest operator command against the target.
    pub(crate) fn ops_targets(&self) -> String {
        let mut s = String::new();
        let mut sizes: Vec<u64> = self.ops.iter().map(|o| o.rows).collect();
        sizes.dedup();
        for n in sizes {
            if let Some(worst) = self
                .ops
                .iter()
                .filter(|o| o.rows == n)
                .max_by(|a, b| a.secs.total_cmp(&b.secs))
            {
                let _ = writeln!(
                    s,
                    "- {} rows, operator commands: slowest `{}` ({}, {}) {} (target ≤ {OPS_TARGET_SECS} s: {})",
                    human_rows(n),
                    worst.command,
                    worst.scenario.name(),
                    worst.moment,
                    secs(worst.secs),
                    if worst.secs <= OPS_TARGET_SECS {
                        "met"
                    } else {
                        "**missed**"
                    }
                );
            }
        }
        s
    }
}

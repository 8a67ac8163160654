//! Erasure latency: `retention.erase('events', key)`, the call the
//! application makes to delete one session "at any point" (the seed), one
//! call per key, against the DELETE a DBA would write on the plain table
//! with an index on the same column. Measured on the uniform scenario's
//! databases after their runs, at every size. Target: p50 ≤ 5 ms at 10M
//! rows (issue 11).

use std::fmt::Write as _;
use std::time::Instant;

use crate::config::Method;
use crate::db::{q, Db};
use crate::output::{human_rows, ms};
use crate::setup::Bench;

/// Calls timed per database, after `WARM_UP` untimed ones.
const CALLS: usize = 200;
const WARM_UP: usize = 20;

#[derive(Clone, Debug)]
pub(crate) struct EraseTiming {
    pub(crate) rows: u64,
    pub(crate) method: Method,
    pub(crate) n: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) partitions: i64,
}

impl Bench {
    /// Erases `CALLS` keys of rows still there, one call each: on pgretain's
    /// database through `retention.erase()` (the policy redeployed with
    /// `erase_by: payload`, whose migration indexes it), on the plain one
    /// with `DELETE ... WHERE payload = $1` (an index made first).
    pub(crate) fn measure_erase(&mut self, db: &mut Db, rows: u64) {
        match db.method {
            Method::Pgretain => {
                let policy =
                    self.policy_yaml(self.cfg.new_keep_days, false, "    erase_by: payload\n");
                self.deploy(db, &policy);
            }
            _ => q(
                &mut db.client,
                "CREATE INDEX events_payload ON app.events (payload); ANALYZE app.events",
            ),
        }
        let partitions: i64 = db
            .client
            .query_one(
                "SELECT count(*) FROM pg_partition_tree('app.events') WHERE isleaf",
                &[],
            )
            .unwrap()
            .get(0);
        // Keys spread over the table: every 997th row's (by id, so the
        // same rows on every database).
        let keys: Vec<String> = db
            .client
            .query(
                &format!(
                    "SELECT payload FROM app.events WHERE tenant <> 'load' AND id % 997 = 0 LIMIT {}",
                    CALLS + WARM_UP
                ),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut lat = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let t = Instant::now();
            let removed: i64 = match db.method {
                Method::Pgretain => db
                    .client
                    .query_one(
                        "SELECT rows_deleted FROM retention.erase('events', $1)",
                        &[key],
                    )
                    .unwrap_or_else(|e| panic!("retention.erase: {e:?}"))
                    .get(0),
                _ => db
                    .client
                    .execute("DELETE FROM app.events WHERE payload = $1", &[key])
                    .unwrap_or_else(|e| panic!("DELETE by key: {e:?}")) as i64,
            };
            let secs = t.elapsed().as_secs_f64();
            assert!(removed >= 1, "erasing {key} removed nothing");
            if i >= WARM_UP {
                lat.push(secs * 1000.0);
            }
        }
        lat.sort_by(f64::total_cmp);
        let at = |p: f64| {
            lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        let e = EraseTiming {
            rows,
            method: db.method,
            n: lat.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: lat.last().copied().unwrap_or(0.0),
            partitions,
        };
        self.log(&format!(
            "{} rows, erase by key ({}, {} partitions): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} calls",
            human_rows(rows),
            e.method.name(),
            partitions,
            e.p50_ms,
            e.p99_ms,
            e.max_ms,
            e.n
        ));
        self.erase.push(e);
    }

    pub(crate) fn erase_table(&self) -> String {
        let mut s = String::new();
        if self.erase.is_empty() {
            return s;
        }
        s.push_str("\n### Erasure by key (one call per key)\n\n");
        s.push_str("| rows | method | partitions | calls | p50 | p99 | max |\n|--:|---|--:|--:|--:|--:|--:|\n");
        for e in &self.erase {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} ms | {} ms | {} ms |",
                human_rows(e.rows),
                e.method.name(),
                e.partitions,
                e.n,
                ms(e.p50_ms),
                ms(e.p99_ms),
                ms(e.max_ms)
            );
        }
        s
    }

    pub(crate) fn erase_targets(&self) -> String {
        let mut s = String::new();
        for e in self.erase.iter().filter(|e| e.method == Method::Pgretain) {
            let plain = self
                .erase
                .iter()
                .find(|p| p.rows == e.rows && p.method == Method::Delete);
            let _ = writeln!(
                s,
                "- {} rows, erase by key through `retention.erase()`: p50 {} ms, p99 {} ms{} \
                 (target p50 ≤ 5 ms at 10M rows: {})",
                human_rows(e.rows),
                ms(e.p50_ms),
                ms(e.p99_ms),
                plain.map_or(String::new(), |p| format!(
                    "; a DELETE by the indexed key on the plain table: p50 {} ms, p99 {} ms",
                    ms(p.p50_ms),
                    ms(p.p99_ms)
                )),
                if e.p50_ms <= 5.0 {
                    "met".to_string()
                } else {
                    "**missed**".to_string()
                }
            );
        }
        s
    }
}

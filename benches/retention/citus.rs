//! `--citus`: one catch-up run on a Citus cluster (a coordinator and two
//! workers on this machine, tests/common/citus.rs) against the same run on
//! one server, on the same generated rows, for the uniform and the mixed
//! scenario (the mixed one's tenant settings make rows go by key ranges).
//!
//! On one machine the three nodes share its cores, so the ratio of times
//! says little about speed. What the run shows is where the work is done:
//! the rows each worker held before and after the run (counted shard by
//! shard) and the shards of dropped partitions gone from each.

use std::time::Instant;

use pgretain::words::thousands;
use postgres::Client;

use crate::common::citus::CitusCluster;
use crate::common::deploy::deploy_policy as deploy;
use crate::db::{q, tune_and_restart};
use crate::setup::Bench;

/// One catch-up, measured on one engine.
pub(crate) struct Run {
    pub(crate) seconds: f64,
    pub(crate) left: i64,
    pub(crate) dropped: i64,
    /// Rows the run removed from each node holding shards (one server:
    /// the server; Citus: worker 1, worker 2).
    pub(crate) removed: Vec<i64>,
}

/// The same scenario on both engines.
pub(crate) struct Compared {
    pub(crate) scenario: &'static str,
    pub(crate) rows: u64,
    pub(crate) single: Run,
    pub(crate) citus: Run,
    /// Shards of the dataset's partitions on each worker, before and after.
    pub(crate) shards: Vec<(i64, i64)>,
}

/// The dataset's rows on each node that holds shards of it, in port order
/// (on one server: the server). Counted on the coordinator, shard by shard
/// (`run_command_on_shards`: a shard of the partitioned table counts the
/// shards of its partitions on the same node).
fn rows_per_node(c: &mut Client, citus: bool) -> Vec<i64> {
    if !citus {
        return vec![c
            .query_one("SELECT count(*) FROM app.events", &[])
            .unwrap()
            .get(0)];
    }
    c.query(
        "SELECT sum(r.result::bigint)::bigint
           FROM run_command_on_shards('app.events', 'SELECT count(*) FROM %s') r
           JOIN pg_dist_shard_placement p USING (shardid)
          GROUP BY p.nodeport ORDER BY p.nodeport",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

impl Bench {
    /// Partitions over the rows' days, the rows, statistics; the mixed
    /// scenario's tenant settings.
    fn citus_data(&self, c: &mut Client, rows: u64, mixed: bool) {
        let first = self.shift(&self.t0, -(self.cfg.days as i64) - 1);
        q(
            c,
            &format!(
                "SELECT count(retention.create_partition('events', d))
                   FROM generate_series(date_trunc('day', '{first}'::timestamptz, 'UTC'),
                                        '{}'::timestamptz, interval '1 day') AS d",
                self.shift(&self.t0, 2)
            ),
        );
        if mixed {
            let w = self.cfg.tenant_width();
            q(
                c,
                &format!(
                    "INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep)
                     SELECT 'events', 't' || lpad(n::text, {w}, '0'), NULL, interval '{} days'
                       FROM generate_series(0, {} - 1) AS n WHERE n % 20 = 0",
                    self.cfg.tenant_keep_days, self.cfg.tenants
                ),
            );
        }
        self.generate_base(c, rows);
        q(c, "ANALYZE app.events");
    }

    /// The catch-up run at T0, as the job runs it.
    fn citus_run(&self, c: &mut Client, citus: bool) -> Run {
        let before = rows_per_node(c, citus);
        let started = Instant::now();
        q(
            c,
            &format!("CALL retention.\"enforce_events\"(p_now => '{}')", self.t0),
        );
        let seconds = started.elapsed().as_secs_f64();
        let after = rows_per_node(c, citus);
        let left: i64 = c
            .query_one("SELECT count(*) FROM app.events", &[])
            .unwrap()
            .get(0);
        let dropped: i64 = c
            .query_one(
                "SELECT coalesce(sum(cardinality(partitions_dropped)), 0)::bigint FROM retention.run_log
                  WHERE dataset = 'events'",
                &[],
            )
            .unwrap()
            .get(0);
        Run {
            seconds,
            left,
            dropped,
            removed: before.iter().zip(&after).map(|(b, a)| b - a).collect(),
        }
    }

    /// `--citus`: the uniform and the mixed catch-up on both engines.
    pub(crate) fn run_citus(&mut self, rows: u64) -> Vec<Compared> {
        let citus = CitusCluster::start();
        for node in citus.nodes() {
            tune_and_restart(node, &self.cfg.shared_buffers);
        }
        let mut out = Vec::new();
        for (scenario, mixed) in [("uniform", false), ("mixed", true)] {
            let policy = self.policy_yaml(self.cfg.keep_days, false, "");
            self.log(&format!("citus {scenario}: {rows} rows on one server"));
            let name = format!("citus_single_{scenario}");
            let url = self.create_db(&name, None);
            let _single_files = deploy(&policy, &url);
            let mut single = self.cluster.client(&name);
            self.citus_data(&mut single, rows, mixed);
            let single_run = self.citus_run(&mut single, false);

            self.log(&format!(
                "citus {scenario}: {rows} rows on the 3-node cluster"
            ));
            let db = format!("bench_{scenario}");
            let curl = citus.create_database(&db);
            let _citus_files = deploy(
                &policy.replacen("version: 1\n", "version: 1\nengine: citus\n", 1),
                &curl,
            );
            let mut c = citus.coordinator.client(&db);
            self.citus_data(&mut c, rows, mixed);
            let before = citus.shards_on_workers(&db, "app", "events_p[0-9]+");
            let citus_run = self.citus_run(&mut c, true);
            let after = citus.shards_on_workers(&db, "app", "events_p[0-9]+");
            assert_eq!(
                single_run.left, citus_run.left,
                "{scenario}: one server and the cluster must leave the same rows"
            );
            out.push(Compared {
                scenario,
                rows,
                single: single_run,
                citus: citus_run,
                shards: before.into_iter().zip(after).collect(),
            });
        }
        out
    }
}

/// The markdown section for docs/benchmarks.md.
pub(crate) fn table(results: &[Compared]) -> String {
    let mut s = String::from(
        "| scenario | rows | one server | 3-node Citus | ratio | rows left | partitions dropped | rows removed: worker 1 / worker 2 | partition shards per worker, before → after |\n\
         |---|---:|---:|---:|---:|---:|---:|---|---|\n",
    );
    for r in results {
        s.push_str(&format!(
            "| {} | {} | {:.3} s | {:.3} s | {:.2}× | {} | {} | {} | {} |\n",
            r.scenario,
            thousands(r.rows as i64),
            r.single.seconds,
            r.citus.seconds,
            r.citus.seconds / r.single.seconds.max(1e-9),
            thousands(r.citus.left),
            r.citus.dropped,
            r.citus
                .removed
                .iter()
                .map(|n| thousands(*n))
                .collect::<Vec<_>>()
                .join(" / "),
            r.shards
                .iter()
                .map(|(b, a)| format!("{b} → {a}"))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    s
}

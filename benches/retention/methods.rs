//! Running each method on its database and measuring it: the run itself,
//! WAL, size, dead tuples, the VACUUM it leaves, the insert load's latency,
//! and the rows left checked against an independent reference predicate.

use std::thread;
use std::time::{Duration, Instant};

use pgretain::words::thousands;
use postgres::Client;

use crate::config::{Method, Scenario, Step};
use crate::db::{q, wal_lsn, wal_since, Db};
use crate::measure::{Load, Measurement};
use crate::output::{bytes, human_rows};
use crate::setup::{Bench, ARCHIVE_KEEP_DAYS};

impl Bench {
    // -- the methods ----------------------------------------------------------

    /// The rows a run at `t` must remove, as an independent SQL predicate over
    /// `app.events` (from the tenant numbers, not from any method's tables).
    pub(crate) fn reference_expired(&self, sc: Scenario, t: &str, keep: u32) -> String {
        let tk = self.cfg.tenant_keep_days;
        match sc {
            Scenario::Uniform | Scenario::Imported | Scenario::Archived => format!(
                "(tenant <> 'load' AND at < '{t}'::timestamptz - interval '{keep} days')"
            ),
            Scenario::Mixed => format!(
                "(CASE WHEN tenant = 'load' THEN false
                       WHEN substr(tenant, 2)::int % 100 = 1 THEN false
                       WHEN substr(tenant, 2)::int % 20 = 0 THEN at < '{t}'::timestamptz - interval '{tk} days'
                       ELSE at < '{t}'::timestamptz - interval '{keep} days' END)"
            ),
        }
    }

    /// What a DBA would write for (b) and (c) on the plain table (alias `t`).
    pub(crate) fn plain_predicate(&self, sc: Scenario, t: &str, keep: u32) -> String {
        match sc {
            Scenario::Uniform | Scenario::Imported | Scenario::Archived => {
                format!("t.at < '{t}'::timestamptz - interval '{keep} days'")
            }
            Scenario::Mixed => {
                let shortest = keep.min(self.cfg.tenant_keep_days);
                format!(
                    "t.at < '{t}'::timestamptz - interval '{shortest} days'
                     AND NOT EXISTS (SELECT 1 FROM app.legal_hold h WHERE h.tenant = t.tenant)
                     AND t.at < '{t}'::timestamptz
                                - coalesce((SELECT r.keep FROM app.tenant_retention r WHERE r.tenant = t.tenant),
                                           interval '{keep} days')"
                )
            }
        }
    }

    /// Runs the method once on `db` at `t`; returns a note.
    pub(crate) fn run_method(&self, db: &mut Db, sc: Scenario, t: &str, keep: u32) -> String {
        match db.method {
            Method::Pgretain => {
                q(
                    &mut db.client,
                    &format!("CALL retention.\"enforce_events\"(p_now => '{t}'::timestamptz)"),
                );
                let r = db
                    .client
                    .query_one(
                        "SELECT outcome, cardinality(partitions_dropped), rows_deleted,
                                rows_in_dropped, coalesce(detail, '')
                           FROM retention.run_log WHERE dataset = 'events' ORDER BY id DESC LIMIT 1",
                        &[],
                    )
                    .unwrap();
                let outcome: String = r.get(0);
                assert_eq!(
                    outcome,
                    "ok",
                    "pgretain run outcome: {} {}",
                    outcome,
                    r.get::<_, String>(4)
                );
                // The run log's own account (which strategy each partition
                // got, and why), for whoever reads the progress output.
                self.log(&format!("pgretain run log: {}", r.get::<_, String>(4)));
                format!(
                    "{} partitions dropped (~{} rows), {} rows deleted in batches",
                    r.get::<_, i32>(1),
                    thousands(r.get::<_, i64>(3)),
                    thousands(r.get::<_, i64>(2))
                )
            }
            Method::Delete if sc == Scenario::Archived => {
                // The DBA's archive: the expired rows moved with their
                // deadline, then the archive's rows past deadline + keep
                // deleted, in one transaction.
                let ak = ARCHIVE_KEEP_DAYS;
                let mut tx = db.client.transaction().unwrap();
                let n = tx
                    .execute(
                        &format!(
                            "WITH moved AS (DELETE FROM app.events t WHERE {} RETURNING t.*)
                             INSERT INTO app.events_archive
                             SELECT moved.*, '{t}'::timestamptz, moved.at + interval '{keep} days' FROM moved",
                            self.plain_predicate(sc, t, keep)
                        ),
                        &[],
                    )
                    .unwrap_or_else(|e| panic!("archive row copy: {e:?}"));
                let gone = tx
                    .execute(
                        &format!(
                            "DELETE FROM app.events_archive
                              WHERE retention_deadline + interval '{ak} days' < '{t}'::timestamptz"
                        ),
                        &[],
                    )
                    .unwrap_or_else(|e| panic!("archive expiry: {e:?}"));
                tx.commit().unwrap();
                format!(
                    "1 transaction: {} rows copied to the archive and deleted, {} archived rows past {ak} days deleted",
                    thousands(n as i64),
                    thousands(gone as i64)
                )
            }
            Method::Delete => {
                let n = db
                    .client
                    .execute(
                        &format!(
                            "DELETE FROM app.events t WHERE {}",
                            self.plain_predicate(sc, t, keep)
                        ),
                        &[],
                    )
                    .unwrap_or_else(|e| panic!("DELETE: {e:?}"));
                format!("1 statement, {} rows", thousands(n as i64))
            }
            Method::Batched => {
                let sql = format!(
                    "DELETE FROM app.events WHERE ctid IN (SELECT t.ctid FROM app.events t WHERE {} LIMIT {})",
                    self.plain_predicate(sc, t, keep),
                    self.cfg.batch
                );
                let mut batches = 0u64;
                loop {
                    let n = db
                        .client
                        .execute(&sql, &[])
                        .unwrap_or_else(|e| panic!("batched DELETE: {e:?}"));
                    batches += 1;
                    if n == 0 {
                        break;
                    }
                }
                format!(
                    "{batches} statements of ≤ {} rows",
                    thousands(self.cfg.batch as i64)
                )
            }
            Method::Partman => {
                q(&mut db.client, "CALL partman.run_maintenance_proc()");
                "CALL partman.run_maintenance_proc() (its own clock: now())".to_string()
            }
            Method::Floor => {
                let r = db
                    .client
                    .query_one(
                        &format!(
                            "SELECT count(*) FROM retention.partitions('events')
                              WHERE upper_bound IS NOT NULL
                                AND (upper_bound AT TIME ZONE 'UTC') + interval '{keep} days'
                                    <= ('{t}'::timestamptz AT TIME ZONE 'UTC')"
                        ),
                        &[],
                    )
                    .unwrap();
                let n: i64 = r.get(0);
                q(
                    &mut db.client,
                    &format!(
                        "DO $$
                         DECLARE r record;
                         BEGIN
                           FOR r IN SELECT partition FROM retention.partitions('events')
                                     WHERE upper_bound IS NOT NULL
                                       AND (upper_bound AT TIME ZONE 'UTC') + interval '{keep} days'
                                           <= ('{t}'::timestamptz AT TIME ZONE 'UTC')
                           LOOP
                             EXECUTE format('DROP TABLE %s', r.partition);
                             COMMIT;
                           END LOOP;
                         END $$"
                    ),
                );
                format!("{n} × (DROP TABLE; COMMIT), nothing else (rows of the boundary partition stay)")
            }
        }
    }

    /// Each relation of the table (itself and its partitions, at every
    /// level) with its heap block reads so far and its heap blocks, after
    /// flushing this session's statistics.
    pub(crate) fn heap_reads(&self, client: &mut Client) -> Vec<(u32, i64, i64)> {
        q(client, "SELECT pg_stat_force_next_flush()");
        client
            .query(
                "SELECT s.relid::oid, (coalesce(s.heap_blks_read, 0) + coalesce(s.heap_blks_hit, 0))::bigint,
                        (pg_relation_size(s.relid) / current_setting('block_size')::int)::bigint
                   FROM pg_statio_user_tables s
                  WHERE s.relid IN (SELECT relid FROM pg_partition_tree('app.events')
                                    UNION SELECT 'app.events'::regclass)",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    pub(crate) fn size_and_dead(&self, client: &mut Client) -> (i64, i64) {
        q(client, "SELECT pg_stat_force_next_flush()");
        // A new statement: the flush above happened when the backend went idle.
        let r = client
            .query_one(
                "WITH tree AS (SELECT relid FROM pg_partition_tree('app.events')
                               UNION SELECT 'app.events'::regclass)
                 SELECT (SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint FROM tree),
                        (SELECT coalesce(sum(s.n_dead_tup), 0)::bigint
                           FROM pg_stat_user_tables s WHERE s.relid IN (SELECT relid FROM tree))",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    }

    /// One measured run: checks before and after, load during, VACUUM after.
    pub(crate) fn measure(
        &mut self,
        db: &mut Db,
        rows: u64,
        sc: Scenario,
        step: Step,
        t: &str,
        keep: u32,
    ) -> Measurement {
        let reference = self.reference_expired(sc, t, keep);
        let count_sql = format!(
            "SELECT count(*) FILTER (WHERE tenant <> 'load'), count(*) FILTER (WHERE {reference})
               FROM app.events"
        );
        let r = db.client.query_one(&count_sql, &[]).unwrap();
        let (before, expired_before): (i64, i64) = (r.get(0), r.get(1));
        let (size_before, _) = self.size_and_dead(&mut db.client);

        // Idle baseline, just before the run, with the same load.
        q(&mut db.client, "CHECKPOINT");
        let lsn = wal_lsn(&mut db.client);
        let load = Load::start(&db.conninfo, self.cfg.rate);
        thread::sleep(Duration::from_secs_f64(self.cfg.idle_secs));
        let idle = load.finish();
        // The load's sessions report their statistics as they end: let them
        // land before the heap reads are taken.
        thread::sleep(Duration::from_millis(1500));
        let load_wal_per_insert = wal_since(&mut db.client, &lsn) as f64 / idle.n.max(1) as f64;

        // The run, with a checkpoint just before it (as if the last one had
        // just happened: every page touched first costs a full-page image).
        q(&mut db.client, "CHECKPOINT");
        let heap_before = self.heap_reads(&mut db.client);
        let lsn = wal_lsn(&mut db.client);
        let load = Load::start(&db.conninfo, self.cfg.rate);
        let t_start = Instant::now();
        let note = self.run_method(db, sc, t, keep);
        let secs = t_start.elapsed().as_secs_f64();
        let during = load.finish();
        let wal_total = wal_since(&mut db.client, &lsn);
        let wal = (wal_total as f64 - load_wal_per_insert * during.n as f64).max(0.0) as i64;
        thread::sleep(Duration::from_millis(1500));
        let heap_after = self.heap_reads(&mut db.client);
        let heap_total: i64 = heap_before.iter().map(|h| h.2).sum();
        // Per relation, at most its blocks: a buffer read counts each
        // access (a deleted row's page once per row), and no relation has
        // more distinct blocks to touch than it has.
        let heap_reads = heap_after
            .iter()
            .map(|&(rel, n, pages)| {
                let before = heap_before.iter().find(|h| h.0 == rel);
                (n - before.map_or(0, |h| h.1)).min(pages.max(before.map_or(0, |h| h.2)))
            })
            .chain(
                heap_before
                    .iter()
                    .filter(|h| !heap_after.iter().any(|a| a.0 == h.0))
                    .map(|h| h.2),
            )
            .sum::<i64>();

        let (size_after, dead) = self.size_and_dead(&mut db.client);
        let r = db.client.query_one(&count_sql, &[]).unwrap();
        let (after, expired_left): (i64, i64) = (r.get(0), r.get(1));
        let removed = before - after;
        let wrongly_removed = removed - (expired_before - expired_left);

        // What the run leaves for autovacuum: the tables (partitions) with
        // dead tuples, vacuumed as autovacuum would (no parallel workers).
        let dirty: Vec<String> = db
            .client
            .query(
                "WITH tree AS (SELECT relid FROM pg_partition_tree('app.events')
                               UNION SELECT 'app.events'::regclass)
                 SELECT s.relid::regclass::text FROM pg_stat_user_tables s
                  WHERE s.relid IN (SELECT relid FROM tree) AND s.n_dead_tup > 0",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let lsn = wal_lsn(&mut db.client);
        let v_start = Instant::now();
        if !dirty.is_empty() {
            q(
                &mut db.client,
                &format!("VACUUM (PARALLEL 0) {}", dirty.join(", ")),
            );
        }
        let vacuum_secs = v_start.elapsed().as_secs_f64();
        let vacuum_wal = wal_since(&mut db.client, &lsn);

        let m = Measurement {
            rows,
            scenario: sc,
            step,
            method: db.method,
            removed,
            secs,
            wal,
            size_before,
            size_after,
            dead,
            vacuum_secs,
            vacuum_wal,
            vacuum_rels: dirty.len(),
            rows_left: after,
            expired_left,
            wrongly_removed,
            idle,
            during,
            note,
            heap_reads: heap_reads.max(0),
            heap_total,
        };
        self.log(&format!(
            "{} {} {} ({}): {:.3} s, WAL {}, removed {}, left {}, expired left {}, wrongly removed {}, \
             size {} → {}, dead {}, VACUUM {:.3} s / {} WAL, insert p50/p99/max idle {:.2}/{:.2}/{:.2} ms \
             (n={}), during {:.2}/{:.2}/{:.2} ms (n={}, errors {}{}), heap blocks touched at most {} of {}; {}",
            human_rows(rows),
            sc.name(),
            step.label(&self.cfg),
            m.method.name(),
            m.secs,
            bytes(m.wal),
            thousands(m.removed),
            thousands(m.rows_left),
            m.expired_left,
            m.wrongly_removed,
            bytes(m.size_before),
            bytes(m.size_after),
            thousands(m.dead),
            m.vacuum_secs,
            bytes(m.vacuum_wal),
            m.idle.p50_ms,
            m.idle.p99_ms,
            m.idle.max_ms,
            m.idle.n,
            m.during.p50_ms,
            m.during.p99_ms,
            m.during.max_ms,
            m.during.n,
            m.during.errors,
            m.during
                .first_error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default(),
            thousands(m.heap_reads),
            thousands(m.heap_total),
            m.note
        ));
        if m.method.exact() {
            assert!(
                m.exact(),
                "{} is not exact: {} expired rows left, {} rows removed that had not expired",
                m.method.name(),
                m.expired_left,
                m.wrongly_removed
            );
        }
        self.results.push(m.clone());
        m
    }

    // -- one size -------------------------------------------------------------

    pub(crate) fn run_size(&mut self, rows: u64, scenarios: &[Scenario], methods: &[Method]) {
        let per_day = rows / u64::from(self.cfg.days);
        let aligned_rows = (per_day as f64 * self.t1_t2_hours / 24.0).round() as u64;
        let t0 = self.t0.clone();
        let t1 = self.t1.clone();
        let t2 = self.t2.clone();
        let keep = self.cfg.keep_days;

        let mut templates: Vec<Db> = Vec::new();
        if methods.contains(&Method::Pgretain) || methods.contains(&Method::Floor) {
            templates.push(self.make_pgretain_template(rows, false, false));
        }
        // Imported history: a pgretain table whose partitions reach back only
        // as far as premake makes them.
        let imported =
            if methods.contains(&Method::Pgretain) && scenarios.contains(&Scenario::Imported) {
                let mut t = self.make_pgretain_template(rows, true, false);
                t.client = self.admin();
                Some(t)
            } else {
                None
            };
        let archived =
            if methods.contains(&Method::Pgretain) && scenarios.contains(&Scenario::Archived) {
                let mut t = self.make_pgretain_template(rows, false, true);
                t.client = self.admin();
                Some(t)
            } else {
                None
            };
        if methods.contains(&Method::Delete) || methods.contains(&Method::Batched) {
            templates.push(self.make_plain_template(rows));
        }
        // Nobody may be connected to a template while it is copied: keep the
        // Db (for the pgretain template, its policy and generated dirs) but
        // move its connection to `postgres`.
        for t in templates.iter_mut() {
            t.client = self.admin();
        }
        let template_for = |m: Method| -> usize {
            let want = if matches!(m, Method::Pgretain | Method::Floor) {
                Method::Pgretain
            } else {
                Method::Delete
            };
            templates
                .iter()
                .position(|d| d.method == want)
                .expect("template")
        };

        for &sc in scenarios {
            for &m in methods {
                if sc != Scenario::Uniform && m.drops_only() {
                    continue; // no per-tenant retention, no holds, no default partition
                }
                if sc == Scenario::Archived && m == Method::Batched {
                    continue; // the archive's alternative is one row copy (b)
                }
                let name = format!("{}_{}_{}", m.letter(), sc.name(), rows);
                // Imported and archived history have pgretain templates of
                // their own.
                let own = match sc {
                    Scenario::Imported => imported.as_ref(),
                    Scenario::Archived => archived.as_ref(),
                    _ => None,
                };
                let mut db = match (m, own) {
                    (Method::Partman, _) => self.make_partman_db(rows),
                    (Method::Pgretain, Some(t)) => self.clone_db(t, &name, m),
                    _ => self.clone_db(&templates[template_for(m)], &name, m),
                };
                if sc == Scenario::Mixed {
                    self.configure_mixed(&mut db);
                }
                if sc == Scenario::Archived {
                    self.configure_archived(&mut db);
                }
                if m == Method::Pgretain {
                    self.time_ops(&db, rows, sc, "backlog, before catch-up");
                }
                if self.cfg.ops_only {
                    if m == Method::Pgretain {
                        self.run_method(&mut db, sc, &t0, keep);
                        self.time_ops(&db, rows, sc, "after catch-up");
                    }
                    self.drop_db(db);
                    continue;
                }
                self.measure(&mut db, rows, sc, Step::CatchUp, &t0, keep);
                if m == Method::Pgretain {
                    self.time_ops(&db, rows, sc, "after catch-up");
                }
                if sc == Scenario::Archived {
                    // pgretain's archive: the rows copied into
                    // archive.events and the partitions moved whole under
                    // archive.events_moved (runtime version 6).
                    let archive = if m == Method::Pgretain {
                        "archive.events (+ archive.events_moved)"
                    } else {
                        "app.events_archive"
                    };
                    let moved: Option<String> = db
                        .client
                        .query_one("SELECT to_regclass('archive.events_moved')::text", &[])
                        .unwrap()
                        .get(0);
                    let count = match (m, moved) {
                        (Method::Pgretain, Some(moved)) => format!(
                            "SELECT (SELECT count(*) FROM archive.events) + (SELECT count(*) FROM {moved})"
                        ),
                        (Method::Pgretain, None) => "SELECT count(*) FROM archive.events".to_string(),
                        _ => format!("SELECT count(*) FROM {archive}"),
                    };
                    let n: i64 = db.client.query_one(&count, &[]).unwrap().get(0);
                    self.log(&format!("{rows} rows, archived: {n} row(s) in {archive}"));
                    self.archived_left.push((rows, m, n));
                }
                if m == Method::Pgretain && sc == Scenario::Imported {
                    // SPEC §3: after a run, no row within its retention sits
                    // in a default partition (unless past premake's horizon,
                    // which no row of this history is).
                    let live: i64 = db
                        .client
                        .query_one(
                            &format!(
                                "SELECT count(*) FROM app.events t
                                  WHERE t.tableoid IN (SELECT p.partition FROM retention.partitions('events') p
                                                        WHERE p.lower_bound IS NULL)
                                    AND t.tenant <> 'load'
                                    AND NOT (t.at < '{t0}'::timestamptz - interval '{keep} days')"
                            ),
                            &[],
                        )
                        .unwrap()
                        .get(0);
                    self.log(&format!(
                        "{rows} rows, imported: {live} live row(s) left in the default partition"
                    ));
                    self.imported_live.push((rows, live));
                }
                if sc == Scenario::Mixed {
                    // The steady state with those tenant settings: one more
                    // day, the run one day later. SPEC §3: the run reads
                    // what it removes, not the table.
                    self.generate(&mut db.client, &t0, &t1, per_day, rows);
                    q(&mut db.client, "VACUUM (PARALLEL 0) app.events");
                    self.measure(&mut db, rows, sc, Step::Steady, &t1, keep);
                }
                if sc == Scenario::Uniform && !m.drops_only() {
                    self.generate(&mut db.client, &t0, &t1, per_day, rows);
                    q(&mut db.client, "VACUUM (PARALLEL 0) app.events");
                    self.measure(&mut db, rows, sc, Step::Steady, &t1, keep);

                    self.generate(&mut db.client, &t1, &t2, aligned_rows, rows + per_day);
                    q(&mut db.client, "VACUUM (PARALLEL 0) app.events");
                    self.measure(&mut db, rows, sc, Step::Aligned, &t2, keep);

                    if m == Method::Pgretain {
                        self.deploy(&db, &self.policy_yaml(self.cfg.new_keep_days, false, ""));
                    }
                    let nk = self.cfg.new_keep_days;
                    self.measure(&mut db, rows, sc, Step::Change, &t2, nk);
                    if matches!(m, Method::Pgretain | Method::Delete) {
                        self.measure_erase(&mut db, rows);
                    }
                }
                self.drop_db(db);

                // The same backlog enforced at a partition bound: no
                // boundary partition to handle row by row.
                if sc == Scenario::Uniform
                    && matches!(m, Method::Pgretain | Method::Delete)
                    && self.t0_bound != t0
                {
                    let name = format!("{}_{}_bound_{}", m.letter(), sc.name(), rows);
                    let mut db = self.clone_db(&templates[template_for(m)], &name, m);
                    let tb = self.t0_bound.clone();
                    self.measure(&mut db, rows, sc, Step::CatchUpBound, &tb, keep);
                    self.drop_db(db);
                }
            }
        }
        for t in templates.into_iter().chain(imported).chain(archived) {
            self.drop_db(t);
        }
    }
}

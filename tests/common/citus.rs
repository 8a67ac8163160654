//! A throwaway Citus cluster: a coordinator and two workers, each a
//! [`Cluster`] of its own (its own data directory and port) with
//! `shared_preload_libraries = 'citus,pg_cron'`, listening on 127.0.0.1 so
//! that the nodes reach each other. Citus 13.2 for PostgreSQL 15 comes from
//! `../shared/citus/install` (run by `scripts/test`). Dropping it stops and
//! removes all three.

use super::Cluster;

/// Settings for every node (after the harness's own: later lines win).
/// Four shards per distributed table (two per worker) keep the tests' lock
/// counts and times small; a partition is one table per shard.
const NODE_SETTINGS: &str = "listen_addresses = '127.0.0.1'\n\
                             shared_preload_libraries = 'citus,pg_cron'\n\
                             max_locks_per_transaction = 1024\n\
                             citus.shard_count = 4\n\
                             max_connections = 100\n";

/// The coordinator and its two workers, with one database set up for
/// Citus on all three.
pub struct CitusCluster {
    pub coordinator: Cluster,
    pub workers: Vec<Cluster>,
}

impl CitusCluster {
    /// Starts the three nodes (in parallel).
    pub fn start() -> CitusCluster {
        let handles: Vec<_> = (0..3)
            .map(|_| std::thread::spawn(|| Cluster::start_with(NODE_SETTINGS)))
            .collect();
        let mut nodes: Vec<Cluster> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| panic!("starting a Citus node failed"))
            })
            .collect();
        let coordinator = nodes.remove(0);
        CitusCluster {
            coordinator,
            workers: nodes,
        }
    }

    /// Creates database `name` on every node with extension citus, registers
    /// the coordinator and the workers in it, and returns the coordinator's
    /// conninfo for it.
    pub fn create_database(&self, name: &str) -> String {
        for node in self.nodes() {
            node.create_database(name);
            node.client(name)
                .batch_execute("CREATE EXTENSION citus")
                .unwrap_or_else(|e| panic!("CREATE EXTENSION citus: {e}\n{}", node.log_tail(30)));
        }
        let mut c = self.coordinator.client(name);
        c.execute(
            "SELECT citus_set_coordinator_host('127.0.0.1', $1)",
            &[&i32::from(self.coordinator.port())],
        )
        .unwrap_or_else(|e| panic!("citus_set_coordinator_host: {e}"));
        for w in &self.workers {
            c.execute(
                "SELECT citus_add_node('127.0.0.1', $1)",
                &[&i32::from(w.port())],
            )
            .unwrap_or_else(|e| panic!("citus_add_node: {e}\n{}", w.log_tail(30)));
        }
        self.coordinator.conninfo(name)
    }

    /// Creates the example policy's roles through database `db` of the
    /// coordinator (Citus makes them on the workers too).
    pub fn create_example_roles(&self, db: &str) {
        let mut c = self.coordinator.client(db);
        for r in ["retention_owner", "chatbot_app", "compliance_auditor"] {
            let exists: bool = c
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
                    &[&r],
                )
                .unwrap()
                .get(0);
            if !exists {
                c.batch_execute(&format!("CREATE ROLE {r} LOGIN")).unwrap();
            }
        }
    }

    /// The three nodes, coordinator first.
    pub fn nodes(&self) -> impl Iterator<Item = &Cluster> {
        std::iter::once(&self.coordinator).chain(self.workers.iter())
    }

    /// The shards (tables on the workers) of `relation` (`app.d_p20260101`),
    /// per worker: how many exist there now. Citus names a shard
    /// `<table>_<shard id>` in the table's schema; they are hidden from
    /// ordinary sessions, hence `citus.override_table_visibility`.
    pub fn shards_on_workers(&self, db: &str, schema: &str, table: &str) -> Vec<i64> {
        self.workers
            .iter()
            .map(|w| {
                let mut c = w.client(db);
                c.batch_execute("SET citus.override_table_visibility = off").unwrap();
                c.query_one(
                    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = $1 AND c.relname ~ ('^' || $2 || '_[0-9]+$') AND c.relkind = 'r'",
                    &[&schema, &table],
                )
                .unwrap()
                .get(0)
            })
            .collect()
    }

    /// The tables whose shards each worker holds, of the tables of `schema`
    /// whose names match `pattern` (a regular expression, anchored): each
    /// shard `<table>_<shard id>` counted as `<table>`.
    pub fn shard_tables(
        &self,
        db: &str,
        schema: &str,
        pattern: &str,
    ) -> Vec<std::collections::BTreeSet<String>> {
        self.workers
            .iter()
            .map(|w| {
                let mut c = w.client(db);
                c.batch_execute("SET citus.override_table_visibility = off").unwrap();
                c.query(
                    "SELECT DISTINCT (regexp_match(c.relname, '^(.*)_[0-9]+$'))[1]
                       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = $1 AND c.relname ~ ('^' || $2 || '_[0-9]+$') AND c.relkind = 'r'",
                    &[&schema, &pattern],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect()
            })
            .collect()
    }
}

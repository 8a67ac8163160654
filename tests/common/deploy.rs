//! A database with a policy compiled and applied, the way CI deploys it:
//! `pgretain::cmd::compile` into a temporary `generated/`, then
//! `pgretain::cmd::apply`. Shared by the integration tests that need a deployed
//! policy; each `Deployed` owns its own cluster.

use pgretain::cmd::apply::{apply, ApplyOptions, ApplyReport};
use pgretain::cmd::compile::{compile, CompileOptions, CompileOutcome};
use std::path::Path;

use postgres::Client;

use super::Cluster;

/// Compiles the policy of `policy_dir` into `generated_dir` (a new
/// migration if it changed) and applies what is compiled to `url`, the way
/// CI deploys. Panics with the error.
pub fn compile_and_apply(policy_dir: &Path, generated_dir: &Path, url: &str) -> ApplyReport {
    compile(&CompileOptions {
        policy_dir: policy_dir.to_path_buf(),
        generated_dir: generated_dir.to_path_buf(),
        check: false,
        allow_destructive: false,
    })
    .unwrap_or_else(|e| panic!("compiling {}: {e}", policy_dir.display()));
    apply(&ApplyOptions {
        database_url: Some(url.to_string()),
        generated_dir: generated_dir.to_path_buf(),
        dry_run: false,
        cron_database: None,
    })
    .unwrap_or_else(|e| panic!("applying {}: {e}", generated_dir.display()))
}

/// `policy` (one YAML file) compiled into a fresh `generated/` and applied
/// to `url`; the policy and generated directories, which live as long as
/// the caller keeps them.
pub fn deploy_policy(policy: &str, url: &str) -> (tempfile::TempDir, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let generated = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    compile_and_apply(dir.path(), generated.path(), url);
    (dir, generated)
}

/// A cluster with database `app`, a policy directory and its `generated/`.
pub struct Deployed {
    pub cluster: Cluster,
    /// Connection string of database `app`.
    pub url: String,
    pub policy: tempfile::TempDir,
    pub generated: tempfile::TempDir,
}

impl Deployed {
    /// A fresh cluster with `policy_yaml` compiled and applied.
    pub fn new(policy_yaml: &str) -> Deployed {
        let d = Deployed::compiled(policy_yaml);
        d.apply();
        d
    }

    /// A fresh cluster with `policy_yaml` compiled but not applied.
    pub fn compiled(policy_yaml: &str) -> Deployed {
        let cluster = Cluster::start();
        // The roles of the example policy's `access`, for policies that use it.
        cluster.create_example_roles();
        let url = cluster.create_database("app");
        let d = Deployed {
            cluster,
            url,
            policy: tempfile::tempdir().unwrap(),
            generated: tempfile::tempdir().unwrap(),
        };
        d.compile(policy_yaml);
        d
    }

    /// Write the policy and compile it (a new migration if it changed).
    pub fn compile(&self, policy_yaml: &str) -> CompileOutcome {
        std::fs::write(self.policy.path().join("policy.yaml"), policy_yaml).unwrap();
        compile(&CompileOptions {
            policy_dir: self.policy.path().to_path_buf(),
            generated_dir: self.generated.path().to_path_buf(),
            check: false,
            allow_destructive: false,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Apply what is compiled.
    pub fn apply(&self) -> ApplyReport {
        apply(&ApplyOptions {
            database_url: Some(self.url.clone()),
            generated_dir: self.generated.path().to_path_buf(),
            dry_run: false,
            cron_database: None,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Compile a changed policy and apply it.
    pub fn deploy(&self, policy_yaml: &str) {
        self.compile(policy_yaml);
        self.apply();
    }

    pub fn app(&self) -> Client {
        self.cluster.client("app")
    }

    /// Run SQL in database `app`.
    pub fn sql(&self, sql: &str) {
        self.app()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// The command pg_cron runs for `dataset`, read from cron.job.
    pub fn job_command(&self, dataset: &str) -> String {
        self.cluster
            .client("postgres")
            .query_one(
                "SELECT command FROM cron.job WHERE jobname = $1",
                &[&format!("pgretain:app:{dataset}")],
            )
            .unwrap_or_else(|e| panic!("job for {dataset}: {e}"))
            .get(0)
    }

    /// Run the job's exact command, as pg_cron would.
    pub fn run_job(&self, dataset: &str) {
        let cmd = self.job_command(dataset);
        self.sql(&cmd);
    }

    /// Run the job's procedure with T pinned.
    pub fn run_at(&self, dataset: &str, t: &str) {
        self.sql(&format!(
            "CALL retention.\"enforce_{dataset}\"(p_now => '{t}'::timestamptz)"
        ));
    }

    /// `count(*)` of a table.
    pub fn count(&self, table: &str) -> i64 {
        self.app()
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .unwrap()
            .get(0)
    }

    /// The sorted `label`s of the rows left in `table`.
    pub fn labels(&self, table: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .app()
            .query(&format!("SELECT label FROM {table}"), &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        v.sort();
        v
    }

    /// Create `dataset`'s partitions for the last `days` days, as if the
    /// table had existed that long.
    pub fn backfill_partitions(&self, dataset: &str, days: i32) {
        self.sql(&format!(
            "SELECT retention.create_partition('{dataset}', d)
               FROM generate_series(date_trunc('day', now() - interval '{days} days', 'UTC'),
                                    now(), interval '1 day') AS d"
        ));
    }
}

//! `pgretain apply` when things are wrong: each fault gets a one-paragraph
//! error saying what is wrong and what to do, exit 3, and no partial change.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::Cluster;
use pgretain::cmd::compile::{compile, CompileOptions};

const POLICY: &str = r#"
version: 1
datasets:
  events:
    description: Test events.
    table: app.events
    columns:
      id: bigint generated always as identity
      at: timestamptz not null
    time: at
    keep: 10 days
"#;

/// A compiled policy in a temp dir; returns (policy dir, generated dir).
fn compiled() -> (tempfile::TempDir, tempfile::TempDir) {
    let policy = tempfile::tempdir().unwrap();
    let generated = tempfile::tempdir().unwrap();
    std::fs::write(policy.path().join("p.yaml"), POLICY).unwrap();
    compile(&CompileOptions {
        policy_dir: policy.path().to_path_buf(),
        generated_dir: generated.path().to_path_buf(),
        check: false,
        allow_destructive: false,
    })
    .unwrap();
    (policy, generated)
}

fn apply_cli(url: &str, generated: &Path, extra: &[&str]) -> Output {
    Command::new(common::pgretain_bin())
        .arg("apply")
        .arg("--generated")
        .arg(generated)
        .args(extra)
        .env("DATABASE_URL", url)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Nothing of pgretain exists in the database.
fn untouched(cluster: &Cluster, db: &str) {
    let mut c = cluster.client(db);
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'retention'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        n, 0,
        "the retention schema must not exist after a failed apply"
    );
}

#[test]
fn unreachable_database_and_unknown_role() {
    let (_p, generated) = compiled();
    let out = apply_cli(
        "host=/nonexistent/socket/dir port=5999 user=postgres dbname=app",
        generated.path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: cannot connect to database `app`"),
        "{err}"
    );
    assert!(err.contains("Check --database-url"), "{err}");

    let cluster = Cluster::start();
    cluster.create_database("app");
    let url = format!(
        "host={} port={} user=nobody dbname=app",
        cluster.socket_dir().display(),
        cluster.port()
    );
    let out = apply_cli(&url, generated.path(), &[]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains("role \"nobody\" does not exist"), "{err}");
    untouched(&cluster, "app");
}

#[test]
fn pg_cron_not_preloaded_changes_nothing() {
    let cluster = Cluster::start_with("shared_preload_libraries = ''");
    let url = cluster.create_database("app");
    let (_p, generated) = compiled();
    let out = apply_cli(&url, generated.path(), &[]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains("pg_cron is not loaded on this server"),
        "{err}"
    );
    assert!(err.contains("shared_preload_libraries"), "{err}");
    untouched(&cluster, "app");
}

#[test]
fn missing_cron_database_changes_nothing() {
    let cluster = Cluster::start();
    let url = cluster.create_database("app");
    let (_p, generated) = compiled();
    let out = apply_cli(&url, generated.path(), &["--cron-database", "nowhere"]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains("the cron database `nowhere`"), "{err}");
    untouched(&cluster, "app");
}

#[test]
fn edited_migration_after_apply_is_refused() {
    let cluster = Cluster::start();
    let url = cluster.create_database("app");
    let (_p, generated) = compiled();
    let out = apply_cli(&url, generated.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v1 = generated.path().join("V1__init.sql");
    let mut sql = std::fs::read_to_string(&v1).unwrap();
    sql.push_str("\n-- a hand edit\n");
    std::fs::write(&v1, sql).unwrap();
    let out = apply_cli(&url, generated.path(), &[]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains("differs from the one applied"), "{err}");
    assert!(err.contains("git checkout"), "{err}");
}

#[test]
fn existing_table_of_another_shape_is_refused_and_nothing_applied() {
    let cluster = Cluster::start();
    let url = cluster.create_database("app");
    cluster
        .client("app")
        .batch_execute("CREATE SCHEMA app; CREATE TABLE app.events (id int, at timestamptz)")
        .unwrap();
    let (_p, generated) = compiled();
    let out = apply_cli(&url, generated.path(), &[]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains("already exists and is not range-partitioned on at"),
        "{err}"
    );
    assert!(err.contains("nothing was applied"), "{err}");
    untouched(&cluster, "app");
    // No job was registered either.
    let jobs: i64 = cluster
        .client("postgres")
        .query_one("SELECT count(*) FROM cron.job", &[])
        .map(|r| r.get(0))
        .unwrap_or(0);
    assert_eq!(jobs, 0);
}

#[test]
fn dry_run_prints_sql_and_jobs_and_changes_nothing() {
    let cluster = Cluster::start();
    let url = cluster.create_database("app");
    let (_p, generated) = compiled();
    let out = apply_cli(&url, generated.path(), &["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("-- migration V1__init would be applied"),
        "{stdout}"
    );
    assert!(stdout.contains("CREATE TABLE IF NOT EXISTS \"app\".\"events\""));
    assert!(stdout.contains("-- job pgretain:app:events `30 3 * * *` in database app would run: CALL retention.\"enforce_events\"()"));
    untouched(&cluster, "app");
}

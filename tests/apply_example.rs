//! The example policy compiles, applies to a fresh PostgreSQL 15 + pg_cron,
//! and its jobs appear in cron.job.

mod common;

use std::path::PathBuf;

use common::Cluster;
use pgretain::cmd::apply::{apply, ApplyOptions};
use pgretain::cmd::compile::{compile, CompileOptions, CompileOutcome};

#[test]
fn example_policy_applies_and_schedules_jobs() {
    let cluster = Cluster::start();
    cluster.create_example_roles();
    let url = cluster.create_database("app");
    let gen = tempfile::tempdir().unwrap();
    let out = compile(&CompileOptions {
        policy_dir: PathBuf::from("policies"),
        generated_dir: gen.path().to_path_buf(),
        check: false,
        allow_destructive: false,
    })
    .unwrap();
    assert!(matches!(out, CompileOutcome::Written { .. }));
    let opts = ApplyOptions {
        database_url: Some(url.clone()),
        generated_dir: gen.path().to_path_buf(),
        dry_run: false,
        cron_database: None,
    };
    let report = apply(&opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.migrations, vec!["V1__init".to_string()]);
    // Idempotent: a second apply has nothing to do.
    let again = apply(&opts).unwrap_or_else(|e| panic!("{e}"));
    assert!(again.migrations.is_empty());

    let mut cron = cluster.client("postgres");
    let jobs: Vec<(String, String, String, String)> = cron
        .query(
            "SELECT jobname, schedule, command, database FROM cron.job ORDER BY jobname",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let names: Vec<&str> = jobs.iter().map(|j| j.0.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "pgretain:app:conversations",
            "pgretain:app:error_logs",
            "pgretain:app:sessions",
            "pgretain:app:training_expressions",
            "pgretain:trim-job-run-details",
        ]
    );
    assert_eq!(jobs[0].1, "30 3 * * *");
    assert_eq!(jobs[0].2, r#"CALL retention."enforce_conversations"()"#);
    assert_eq!(jobs[0].3, "app");

    // Running every job's command works on the empty tables.
    let mut app = cluster.client("app");
    for j in jobs.iter().filter(|j| j.3 == "app") {
        app.batch_execute(&j.2)
            .unwrap_or_else(|e| panic!("{}: {e:?}", j.2));
    }
    let outcomes: Vec<String> = app
        .query("SELECT outcome FROM retention.run_log ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(outcomes, vec!["ok"; 4]);
}

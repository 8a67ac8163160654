//! Smoke tests for the integration-test harness in `tests/common`.

mod common;

use std::time::{Duration, Instant};

use common::{wait_for, Cluster};

#[test]
fn cluster_starts_with_pg_cron_and_utc() {
    let t0 = Instant::now();
    let cluster = Cluster::start();
    eprintln!(
        "cluster started in {:?} (port {}, socket dir {})",
        t0.elapsed(),
        cluster.port(),
        cluster.socket_dir().display()
    );

    let conninfo = cluster.conninfo("postgres");
    assert_eq!(
        conninfo,
        format!(
            "host={} port={} user=postgres dbname=postgres",
            cluster.socket_dir().display(),
            cluster.port()
        )
    );

    let mut pg = cluster.client("postgres");
    pg.batch_execute("CREATE EXTENSION pg_cron")
        .expect("CREATE EXTENSION pg_cron");

    let tz: String = pg.query_one("SHOW timezone", &[]).unwrap().get(0);
    assert_eq!(tz, "UTC");

    let preload: String = pg
        .query_one("SELECT current_setting('shared_preload_libraries')", &[])
        .unwrap()
        .get(0);
    assert!(
        preload.contains("pg_cron"),
        "shared_preload_libraries = {preload:?}"
    );

    let app_conninfo = cluster.create_database("app");
    assert_eq!(app_conninfo, cluster.conninfo("app"));
    let mut app = postgres::Client::connect(&app_conninfo, postgres::NoTls)
        .expect("connect to app via conninfo");
    let db: String = app
        .query_one("SELECT current_database()", &[])
        .unwrap()
        .get(0);
    assert_eq!(db, "app");
    let mut app2 = cluster.client("app");
    let one: i32 = app2.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
}

#[test]
fn pg_cron_runs_a_job() {
    let cluster = Cluster::start();
    cluster.create_database("app");

    let mut app = cluster.client("app");
    app.batch_execute("CREATE TABLE t(x int)").unwrap();

    let mut pg = cluster.client("postgres");
    pg.batch_execute("CREATE EXTENSION pg_cron").unwrap();
    let job_id: i64 = pg
        .query_one(
            "SELECT cron.schedule_in_database('smoke', '* * * * *', 'INSERT INTO t VALUES (1)', 'app')",
            &[],
        )
        .unwrap()
        .get(0);

    let t0 = Instant::now();
    let fired = wait_for(Duration::from_secs(75), || {
        app.query_one("SELECT count(*) FROM t", &[])
            .map(|r| r.get::<_, i64>(0) > 0)
            .unwrap_or(false)
    });
    assert!(
        fired,
        "pg_cron job did not insert a row within 75 s; job_run_details: {:?}\nserver log:\n{}",
        pg.query(
            "SELECT status, return_message FROM cron.job_run_details",
            &[]
        )
        .map(|rows| rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, Option<String>>(1)))
            .collect::<Vec<_>>()),
        cluster.log_tail(40)
    );
    eprintln!("pg_cron job fired after {:?}", t0.elapsed());

    // The run-details row is finalised right after the command completes.
    let succeeded = wait_for(Duration::from_secs(10), || {
        pg.query_one(
            "SELECT count(*) FROM cron.job_run_details WHERE jobid = $1 AND status = 'succeeded'",
            &[&job_id],
        )
        .map(|r| r.get::<_, i64>(0) > 0)
        .unwrap_or(false)
    });
    let details: Vec<(String, Option<String>)> = pg
        .query(
            "SELECT status, return_message FROM cron.job_run_details WHERE jobid = $1",
            &[&job_id],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(succeeded, "job_run_details: {details:?}");
}

#[test]
fn concurrent_clusters_are_isolated() {
    let handles: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                let cluster = Cluster::start();
                let mut pg = cluster.client("postgres");
                pg.batch_execute(&format!(
                    "CREATE TABLE marker(v int); INSERT INTO marker VALUES ({i})"
                ))
                .unwrap();
                (i, cluster)
            })
        })
        .collect();
    let clusters: Vec<(i32, Cluster)> = handles
        .into_iter()
        .map(|h| h.join().expect("cluster thread panicked"))
        .collect();

    let (a, b) = (&clusters[0].1, &clusters[1].1);
    assert_ne!(a.socket_dir(), b.socket_dir());
    assert_ne!(a.conninfo("postgres"), b.conninfo("postgres"));

    for (i, cluster) in &clusters {
        let mut pg = cluster.client("postgres");
        let values: Vec<i32> = pg
            .query("SELECT v FROM marker", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(values, vec![*i], "each cluster sees only its own data");
    }

    let dirs: Vec<_> = clusters
        .iter()
        .map(|(_, c)| c.socket_dir().to_path_buf())
        .collect();
    drop(clusters);
    for dir in dirs {
        assert!(!dir.exists(), "{} should be removed on drop", dir.display());
    }
}

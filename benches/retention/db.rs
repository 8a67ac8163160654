//! The databases under test: one per method and scenario, and the SQL
//! helpers every step uses; and the cluster, put back to production
//! settings.

use std::path::Path;
use std::process::{Command, Stdio};

use postgres::Client;

use crate::common::{self, Cluster};
use crate::config::Method;

/// One database under test.
pub(crate) struct Db {
    pub(crate) name: String,
    pub(crate) conninfo: String,
    pub(crate) client: Client,
    pub(crate) method: Method,
    /// pgretain: the policy and generated directories of this database.
    pub(crate) policy: Option<tempfile::TempDir>,
    pub(crate) generated: Option<tempfile::TempDir>,
}

pub(crate) fn q(client: &mut Client, sql: &str) {
    client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("`{}` failed: {e:?}", short(sql)));
}

pub(crate) fn short(sql: &str) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 300 {
        format!("{}…", one_line.chars().take(300).collect::<String>())
    } else {
        one_line
    }
}

pub(crate) fn wal_lsn(client: &mut Client) -> String {
    client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .expect("pg_current_wal_lsn")
        .get(0)
}

pub(crate) fn wal_since(client: &mut Client, lsn: &str) -> i64 {
    client
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint",
            &[&lsn],
        )
        .expect("pg_wal_lsn_diff")
        .get(0)
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The harness's clusters are tuned for tests (fsync, synchronous_commit and
/// full_page_writes off, 32 MB of shared_buffers). A benchmark of WAL and
/// latency needs production defaults: they are restored here, shared_buffers
/// raised, autovacuum turned off (so it never runs in the middle of a
/// measurement; the VACUUM each method leaves behind is measured instead),
/// and the server restarted.
pub(crate) fn tune_and_restart(cluster: &Cluster, shared_buffers: &str) {
    let mut c = cluster.client("postgres");
    // At least 256 locks per transaction (a Citus node has more: each
    // partition is a table per shard).
    let locks: String = c
        .query_one(
            "SELECT greatest(256, current_setting('max_locks_per_transaction')::int)::text",
            &[],
        )
        .unwrap()
        .get(0);
    for (k, v) in [
        ("shared_buffers", shared_buffers),
        ("fsync", "on"),
        ("synchronous_commit", "on"),
        ("full_page_writes", "on"),
        ("autovacuum", "off"),
        ("max_wal_size", "2GB"),
        ("checkpoint_timeout", "1h"),
        ("max_locks_per_transaction", locks.as_str()),
        ("work_mem", "16MB"),
        ("maintenance_work_mem", "256MB"),
    ] {
        q(&mut c, &format!("ALTER SYSTEM SET {k} = '{v}'"));
    }
    drop(c);
    let pg_ctl = Path::new(common::PG_BIN_DIR).join("pg_ctl");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
        c
    } else {
        Command::new(&pg_ctl)
    };
    cmd.arg("-D")
        .arg(cluster.data_dir())
        .arg("-l")
        .arg(cluster.log_file())
        .args(["-w", "-t", "120", "-m", "fast", "restart"])
        .current_dir(cluster.socket_dir())
        .stdin(Stdio::null());
    for var in [
        "PGDATA",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGOPTIONS",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("running pg_ctl restart");
    assert!(
        out.status.success(),
        "pg_ctl restart failed: {}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout),
        cluster.log_tail(30)
    );
    let mut c = cluster.client("postgres");
    let sb: String = c.query_one("SHOW shared_buffers", &[]).unwrap().get(0);
    let fpw: String = c.query_one("SHOW full_page_writes", &[]).unwrap().get(0);
    assert!(
        fpw == "on",
        "the restart did not take the benchmark settings (full_page_writes = {fpw}, shared_buffers = {sb})"
    );
}

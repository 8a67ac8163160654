//! Integration-test harness: throwaway PostgreSQL 15 clusters with pg_cron.
//!
//! Every [`Cluster::start`] gets its own data directory (copied from a cached,
//! once-initdb'd template), its own unix-socket directory and its own port
//! number; it listens on the unix socket only.  Dropping the `Cluster` (also
//! during unwinding after a test panic) stops the server with
//! `pg_ctl -m immediate stop` and removes the temporary directory.
//!
//! This module is compiled separately into every test binary that declares
//! `mod common;`, so items a particular binary does not use are marked
//! `#[allow(dead_code)]`.

#![allow(dead_code)]

pub mod citus;
pub mod deploy;
pub mod oracle;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// Major version of the PostgreSQL server the harness uses.
pub const PG_MAJOR: u32 = 15;

/// Directory holding the server binaries (initdb, pg_ctl, postgres).
pub const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// OS user the server runs as when the tests run as root.
const PG_OS_USER: &str = "postgres";

/// Environment variables that could redirect initdb/pg_ctl/libpq somewhere
/// else; they are removed from every command the harness spawns.
const SCRUBBED_ENV: &[&str] = &[
    "PGDATA",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGTZ",
    "PGCLIENTENCODING",
    "PGSSLMODE",
    "PGCONNECT_TIMEOUT",
    "PG_OOM_ADJUST_FILE",
    "PG_OOM_ADJUST_VALUE",
];

/// Path of the `pgretain` binary built by cargo for this test run.
#[allow(dead_code)]
pub fn pgretain_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pgretain"))
}

/// Polls `f` every 200 ms until it returns `true` or `timeout` elapses.
/// Returns whether `f` returned `true`. `f` is always called at least once,
/// and once more right at the deadline.
#[allow(dead_code)]
pub fn wait_for<F: FnMut() -> bool>(timeout: Duration, mut f: F) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(200)));
    }
}

/// A running, throwaway PostgreSQL cluster with pg_cron preloaded.
#[allow(dead_code)]
pub struct Cluster {
    /// Root of everything belonging to this cluster: `data/`, `server.log`
    /// and the unix socket. Removed when the Cluster is dropped (field drop
    /// order runs after `Drop::drop` has stopped the server).
    dir: TempDir,
    data_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
}

#[allow(dead_code)]
impl Cluster {
    /// Starts a new cluster. Panics with a descriptive message (command,
    /// exit status, stderr, tail of server.log) if anything fails.
    pub fn start() -> Cluster {
        Cluster::start_with("")
    }

    /// Like [`Cluster::start`], with extra `postgresql.conf` lines appended
    /// after the harness's own (later lines win), e.g. to start a server
    /// without pg_cron: `shared_preload_libraries = ''`.
    pub fn start_with(extra_settings: &str) -> Cluster {
        let template = template_dir();

        let base = cluster_base_dir();
        let dir = tempfile::Builder::new()
            .prefix("pgretain-pg")
            .tempdir_in(base)
            .unwrap_or_else(|e| panic!("creating cluster temp dir in {}: {e}", base.display()));
        let root = dir.path().to_path_buf();
        let data_dir = root.join("data");
        let log_file = root.join("server.log");

        // Copy the template as root (or as ourselves): `cp -a` keeps the
        // postgres ownership and the 0700 mode of the data directory.
        run_checked(Command::new("cp").arg("-a").arg(&template).arg(&data_dir));
        // The server (running as postgres) must be able to create its socket
        // and lock file in `root` and write server.log there.
        make_owned_by_server(&root);

        let port = free_port();
        let socket_dir = root
            .to_str()
            .unwrap_or_else(|| panic!("temp dir path is not UTF-8: {}", root.display()));
        let sd = conf_quote(socket_dir);
        let settings = format!(
            "\n# --- pgretain test harness ---\n\
             listen_addresses = ''\n\
             unix_socket_directories = '{sd}'\n\
             port = {port}\n\
             shared_preload_libraries = 'pg_cron'\n\
             cron.database_name = 'postgres'\n\
             cron.host = '{sd}'\n\
             cron.max_running_jobs = 5\n\
             timezone = 'UTC'\n\
             log_timezone = 'UTC'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             shared_buffers = 32MB\n\
             max_connections = 50\n\
             max_worker_processes = 16\n\
             log_min_messages = warning\n\
             {extra_settings}\n"
        );
        let conf_path = data_dir.join("postgresql.conf");
        fs::OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .and_then(|mut f| f.write_all(settings.as_bytes()))
            .unwrap_or_else(|e| panic!("appending to {}: {e}", conf_path.display()));

        // From here on, Drop takes care of stopping the server and removing
        // the directory, even if starting fails half-way.
        let cluster = Cluster {
            dir,
            data_dir,
            log_file,
            port,
        };

        let start = pg_command(
            "pg_ctl",
            [
                OsStr::new("-D"),
                cluster.data_dir.as_os_str(),
                OsStr::new("-l"),
                cluster.log_file.as_os_str(),
                OsStr::new("-w"),
                OsStr::new("-t"),
                OsStr::new("60"),
                OsStr::new("start"),
            ],
            &root,
        );
        let desc = describe(&start);
        let out = run(start);
        if !out.status.success() {
            panic!(
                "starting PostgreSQL failed: `{desc}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- tail of {} ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                cluster.log_file.display(),
                tail(&cluster.log_file, 60),
            );
        }
        cluster
    }

    /// libpq key/value connection string for database `dbname`:
    /// `host=<socketdir> port=<port> user=postgres dbname=<dbname>`.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={}",
            self.socket_dir().display(),
            self.port,
            dbname
        )
    }

    /// A new synchronous client connected to `dbname`. Panics on failure.
    pub fn client(&self, dbname: &str) -> postgres::Client {
        let conninfo = self.conninfo(dbname);
        postgres::Client::connect(&conninfo, postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "connecting with `{conninfo}` failed: {e}\n--- tail of {} ---\n{}",
                self.log_file.display(),
                tail(&self.log_file, 30)
            )
        })
    }

    /// Creates database `name` and returns its conninfo.
    pub fn create_database(&self, name: &str) -> String {
        let mut client = self.client("postgres");
        let sql = format!("CREATE DATABASE {}", quote_ident(name));
        client
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"));
        self.conninfo(name)
    }

    /// Creates the roles the example policy's `access` names (an owner that
    /// can log in for pg_cron, an application role, a reader), unless they
    /// exist. Roles are cluster-wide: once per cluster is enough.
    pub fn create_example_roles(&self) {
        self.create_roles(&["retention_owner", "chatbot_app", "compliance_auditor"]);
    }

    /// Creates login roles (not superusers), unless they exist.
    pub fn create_roles(&self, roles: &[&str]) {
        let mut client = self.client("postgres");
        for r in roles {
            let exists: bool = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
                    &[r],
                )
                .unwrap()
                .get(0);
            if !exists {
                let sql = format!("CREATE ROLE {} LOGIN", quote_ident(r));
                client
                    .batch_execute(&sql)
                    .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"));
            }
        }
    }

    /// Directory holding the server's unix socket (also the cluster's
    /// temp directory).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Port number of the server (only used for the socket file name,
    /// `.s.PGSQL.<port>`; the server does not listen on TCP).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Path of the server log file.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Last `lines` lines of the server log (for assertion messages).
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_file, lines)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Nothing in here may panic: Drop also runs while unwinding from a
        // failed test, and a second panic would abort the process.
        // Always try: a start that timed out may still have left a server.
        let stop = pg_command(
            "pg_ctl",
            [
                OsStr::new("-D"),
                self.data_dir.as_os_str(),
                OsStr::new("-m"),
                OsStr::new("immediate"),
                OsStr::new("-w"),
                OsStr::new("-t"),
                OsStr::new("30"),
                OsStr::new("stop"),
            ],
            self.dir.path(),
        );
        let _ = try_run(stop);
        // `self.dir` (TempDir) is dropped after this and removes the tree.
    }
}

/// Where cluster temp dirs are created: `$PGRETAIN_TEST_TMPDIR` if set,
/// else `/dev/shm` when it is a tmpfs with at least 1 GiB free (copying the
/// template and running the server there is several times faster than on
/// disk), else the system temp dir (`$TMPDIR` or `/tmp`). The directory
/// must be reachable by the postgres OS user, and the path short enough for a
/// unix socket path (~100 bytes).
fn cluster_base_dir() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        if let Some(dir) = std::env::var_os("PGRETAIN_TEST_TMPDIR") {
            return PathBuf::from(dir);
        }
        let shm = Path::new("/dev/shm");
        if shm.is_dir() && available_kib(shm).is_some_and(|kib| kib >= 1024 * 1024) {
            return shm.to_path_buf();
        }
        std::env::temp_dir()
    })
}

/// Free space of the file system holding `path`, in KiB (via `df -Pk`).
fn available_kib(path: &Path) -> Option<u64> {
    let out = Command::new("df")
        .arg("-Pk")
        .arg(path)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // "Filesystem 1024-blocks Used Available Capacity Mounted-on"
    text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

// ---------------------------------------------------------------------------
// Template data directory (initdb once per PG version, cached on disk)
// ---------------------------------------------------------------------------

/// Returns the cached, initdb'd template data directory, creating it on first
/// use: `<CARGO_TARGET_TMPDIR>/pg15-template`.
fn template_dir() -> PathBuf {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(create_template_if_missing).clone()
}

fn create_template_if_missing() -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let template = base.join(format!("pg{PG_MAJOR}-template"));
    if template.join("PG_VERSION").is_file() {
        return template;
    }
    fs::create_dir_all(&base).unwrap_or_else(|e| panic!("creating {}: {e}", base.display()));

    // initdb into a fresh directory in the system temp dir (guaranteed to be
    // reachable by the postgres OS user), then move it next to the final
    // location and rename it into place atomically.
    let work = tempfile::Builder::new()
        .prefix("pgretain-initdb")
        .tempdir()
        .unwrap_or_else(|e| panic!("creating initdb temp dir: {e}"));
    make_owned_by_server(work.path());
    let fresh = work.path().join("data");
    initdb(&fresh, work.path());

    let staging = base.join(format!("pg{PG_MAJOR}-template.tmp-{}", unique_suffix()));
    if fs::rename(&fresh, &staging).is_err() {
        // Different file system: copy instead (keeps owner and modes).
        run_checked(Command::new("cp").arg("-a").arg(&fresh).arg(&staging));
    }
    match fs::rename(&staging, &template) {
        Ok(()) => {}
        Err(e) => {
            // Lost the race against another process: use the winner's.
            let _ = fs::remove_dir_all(&staging);
            if !template.join("PG_VERSION").is_file() {
                panic!(
                    "could not move template data dir into place at {}: {e}",
                    template.display()
                );
            }
        }
    }
    template
}

fn initdb(data_dir: &Path, cwd: &Path) {
    let mut last_failure = String::new();
    for locale in ["C.UTF-8", "C"] {
        let locale_arg = format!("--locale={locale}");
        let args: [&OsStr; 9] = [
            OsStr::new("-D"),
            data_dir.as_os_str(),
            OsStr::new("-U"),
            OsStr::new("postgres"),
            OsStr::new("--auth=trust"),
            OsStr::new("--encoding=UTF8"),
            OsStr::new(&locale_arg),
            OsStr::new("-N"),
            // 1 MB WAL segments: a much smaller template to copy per cluster.
            OsStr::new("--wal-segsize=1"),
        ];
        let cmd = pg_command("initdb", args, cwd);
        let desc = describe(&cmd);
        let out = run(cmd);
        if out.status.success() {
            return;
        }
        last_failure = format!(
            "`{desc}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // initdb refuses a non-empty target; clear it before the fallback.
        let _ = fs::remove_dir_all(data_dir);
    }
    panic!("initdb failed with both C.UTF-8 and C locales: {last_failure}");
}

// ---------------------------------------------------------------------------
// Process helpers
// ---------------------------------------------------------------------------

fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    })
}

/// Builds a command running PostgreSQL binary `prog` with `args`, as the
/// postgres OS user when we are root.
fn pg_command<'a, I>(prog: &str, args: I, cwd: &Path) -> Command
where
    I: IntoIterator<Item = &'a OsStr>,
{
    let exe = Path::new(PG_BIN_DIR).join(prog);
    let mut cmd = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", PG_OS_USER, "--"]).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.args(args);
    // The test's working directory may not be accessible to postgres.
    cmd.current_dir(cwd);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd
}

fn describe(cmd: &Command) -> String {
    let mut parts: Vec<OsString> = vec![cmd.get_program().to_owned()];
    parts.extend(cmd.get_args().map(OsStr::to_owned));
    parts
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn try_run(mut cmd: Command) -> std::io::Result<Output> {
    cmd.stdin(Stdio::null()).output()
}

/// Runs `cmd`, panicking if it cannot be spawned. Returns its output.
fn run(cmd: Command) -> Output {
    let desc = describe(&cmd);
    try_run(cmd).unwrap_or_else(|e| panic!("could not run `{desc}`: {e}"))
}

/// Runs `cmd` and panics (with its stderr) unless it exits successfully.
fn run_checked(cmd: &mut Command) {
    let desc = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not run `{desc}`: {e}"));
    if !out.status.success() {
        panic!(
            "`{desc}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// When running as root, hands `path` to the postgres OS user (mode 0755) so
/// the server can create files in it.
fn make_owned_by_server(path: &Path) {
    if !running_as_root() {
        return;
    }
    run_checked(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{PG_OS_USER}:"))
            .arg(path),
    );
    run_checked(Command::new("chmod").arg("0755").arg(path));
}

// ---------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------

/// Picks a port number nobody is listening on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:0 to pick a port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr of port-picking listener: {e}"))
        .port()
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Quotes a value for a single-quoted postgresql.conf string.
fn conf_quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "''")
}

/// Quotes an SQL identifier.
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Last `lines` lines of a (log) file; never panics.
fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("<could not read {}: {e}>", path.display()),
    }
}

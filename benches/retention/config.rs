//! The benchmark's options, parsed by clap: each `--name value` (or
//! `--name=value`), or the environment variable `PGRETAIN_BENCH_<NAME>`;
//! `--help` lists them with their defaults.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Method {
    Pgretain,
    Delete,
    Batched,
    Partman,
    Floor,
}

impl Method {
    pub(crate) const ALL: [Method; 5] = [
        Method::Pgretain,
        Method::Delete,
        Method::Batched,
        Method::Partman,
        Method::Floor,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Method::Pgretain => "pgretain",
            Method::Delete => "DELETE",
            Method::Batched => "batched DELETE",
            Method::Partman => "pg_partman",
            Method::Floor => "bare DROP loop",
        }
    }

    pub(crate) fn letter(self) -> char {
        match self {
            Method::Pgretain => 'a',
            Method::Delete => 'b',
            Method::Batched => 'c',
            Method::Partman => 'd',
            Method::Floor => 'e',
        }
    }

    pub(crate) fn color(self) -> &'static str {
        match self {
            Method::Pgretain => "#2b8a3e",
            Method::Delete => "#c92a2a",
            Method::Batched => "#e8590c",
            Method::Partman => "#1971c2",
            Method::Floor => "#868e96",
        }
    }

    /// Whether the method promises the exact guarantee (checked).
    pub(crate) fn exact(self) -> bool {
        !matches!(self, Method::Partman | Method::Floor)
    }

    /// Methods that only drop whole partitions: uniform catch-up only.
    pub(crate) fn drops_only(self) -> bool {
        matches!(self, Method::Partman | Method::Floor)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Scenario {
    Uniform,
    Mixed,
    /// Uniform retention, but the history was imported after the policy was
    /// applied: partitions exist only as far back as premake makes them (the
    /// longest retention), older rows sit in the default partition.
    Imported,
    /// Uniform retention with `on_expiry: archive` (archive keep
    /// `archive_keep` days): every expired row goes to the archive, and
    /// archived rows whose deadline plus that keep has passed go too. The
    /// alternative is the DBA's row copy: one transaction that moves the
    /// expired rows to an archive table and deletes the archive's old ones.
    Archived,
}

impl Scenario {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Uniform => "uniform",
            Scenario::Mixed => "mixed",
            Scenario::Imported => "imported",
            Scenario::Archived => "archived",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Step {
    /// The backlog: everything older than the retention, at T0.
    CatchUp,
    /// The same backlog, with T at the UTC midnight before T0 (a partition bound).
    CatchUpBound,
    /// One day later (T1 = T0 + 1 day, same time of day as the schedule).
    Steady,
    /// At the next partition bound (T2 = UTC midnight after T1).
    Aligned,
    /// The policy shortens the retention for all rows, at T2.
    Change,
}

impl Step {
    pub(crate) fn label(self, cfg: &Config) -> String {
        match self {
            Step::CatchUp => format!("catch-up, T at {}", cfg.run_at),
            Step::CatchUpBound => "catch-up, T at a partition bound (00:00)".to_string(),
            Step::Steady => format!("steady state, +1 day, T at {}", cfg.run_at),
            Step::Aligned => "steady state, T at a partition bound (00:00)".to_string(),
            Step::Change => format!(
                "policy change {} → {} days",
                cfg.keep_days, cfg.new_keep_days
            ),
        }
    }
}

impl FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> Result<Method, String> {
        match s.trim() {
            "a" | "pgretain" => Ok(Method::Pgretain),
            "b" | "delete" => Ok(Method::Delete),
            "c" | "batched" => Ok(Method::Batched),
            "d" | "partman" | "pg_partman" => Ok(Method::Partman),
            "e" | "floor" => Ok(Method::Floor),
            other => Err(format!(
                "unknown method `{other}` (a|pgretain, b|delete, c|batched, d|partman, e|floor)"
            )),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Scenario, String> {
        match s.trim() {
            "uniform" => Ok(Scenario::Uniform),
            "mixed" => Ok(Scenario::Mixed),
            "imported" => Ok(Scenario::Imported),
            "archived" => Ok(Scenario::Archived),
            other => Err(format!(
                "unknown scenario `{other}` (uniform, mixed, imported, archived)"
            )),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A whole number, `_` allowed between digits: `10_000_000`.
fn number<T: FromStr>(text: &str) -> Result<T, String> {
    text.replace('_', "")
        .parse()
        .map_err(|_| format!("not a number: `{text}`"))
}

/// `cargo bench --bench retention -- [OPTIONS]`.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "retention",
    about = "pgretain's enforcement against a single DELETE, batched DELETE, pg_partman and a bare DROP loop, on identical data (docs/benchmarks.md)"
)]
pub(crate) struct Config {
    /// Rows generated (spread evenly over `days`).
    #[arg(long, default_value = "200000", value_parser = number::<u64>, env = "PGRETAIN_BENCH_ROWS")]
    pub(crate) rows: u64,
    /// A second, larger size for the uniform scenario (e.g. 10000000); empty: none.
    #[arg(
        long = "growth-rows",
        value_name = "ROWS",
        env = "PGRETAIN_BENCH_GROWTH_ROWS"
    )]
    growth: Option<String>,
    /// `growth` read as a number.
    #[arg(skip)]
    pub(crate) growth_rows: Option<u64>,
    /// Methods run at growth-rows.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "a,b,e",
        env = "PGRETAIN_BENCH_GROWTH_METHODS"
    )]
    pub(crate) growth_methods: Vec<Method>,
    /// Days of data: the backlog is days - keep.
    #[arg(long, default_value = "400", value_parser = number::<u32>, env = "PGRETAIN_BENCH_DAYS")]
    pub(crate) days: u32,
    /// Distinct tenants.
    #[arg(long, default_value = "1000", value_parser = number::<u32>, env = "PGRETAIN_BENCH_TENANTS")]
    pub(crate) tenants: u32,
    /// Retention in days.
    #[arg(long = "keep", default_value = "90", value_parser = number::<u32>, env = "PGRETAIN_BENCH_KEEP")]
    pub(crate) keep_days: u32,
    /// Retention after the policy change, in days.
    #[arg(long = "new-keep", default_value = "60", value_parser = number::<u32>, env = "PGRETAIN_BENCH_NEW_KEEP")]
    pub(crate) new_keep_days: u32,
    /// Mixed scenario: the run-time setting of 5% of tenants, in days.
    #[arg(long = "tenant-keep", default_value = "30", value_parser = number::<u32>, env = "PGRETAIN_BENCH_TENANT_KEEP")]
    pub(crate) tenant_keep_days: u32,
    /// Data generation seed.
    #[arg(long, default_value = "42", value_parser = number::<i64>, env = "PGRETAIN_BENCH_SEED")]
    pub(crate) seed: i64,
    /// Concurrent single-row inserts per second during each run.
    #[arg(long, default_value = "200", env = "PGRETAIN_BENCH_RATE")]
    pub(crate) rate: f64,
    /// Seconds of insert load measured just before each run (idle baseline).
    #[arg(long, default_value = "3", env = "PGRETAIN_BENCH_IDLE_SECS")]
    pub(crate) idle_secs: f64,
    /// Rows per batch of method (c).
    #[arg(long, default_value = "10000", value_parser = number::<u32>, env = "PGRETAIN_BENCH_BATCH")]
    pub(crate) batch: u32,
    /// Time of day (UTC) of T, as the default schedule `30 3 * * *`.
    #[arg(long, default_value = "03:30", env = "PGRETAIN_BENCH_RUN_AT")]
    pub(crate) run_at: String,
    /// Scenarios at `rows`: uniform, mixed, imported, archived.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "uniform,mixed,imported,archived",
        env = "PGRETAIN_BENCH_SCENARIOS"
    )]
    pub(crate) scenarios: Vec<Scenario>,
    /// Methods at `rows`: a pgretain, b DELETE, c batched DELETE, d pg_partman, e bare DROP loop (the floor of any partition-dropping method).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "a,b,c,d,e",
        env = "PGRETAIN_BENCH_METHODS"
    )]
    pub(crate) methods: Vec<Method>,
    /// Where to write the bar chart (default: <target tmpdir>/benchmarks.svg).
    #[arg(long, env = "PGRETAIN_BENCH_SVG")]
    svg: Option<PathBuf>,
    /// shared_buffers of the benchmark cluster.
    #[arg(long, default_value = "512MB", env = "PGRETAIN_BENCH_SHARED_BUFFERS")]
    pub(crate) shared_buffers: String,
    /// Only pgretain, and only the operator commands (status, verify,
    /// plan) before and after its catch-up run: no other method or moment.
    #[arg(long = "ops-only", env = "PGRETAIN_BENCH_OPS_ONLY")]
    pub(crate) ops_only: bool,
    /// Only the Citus comparison: one catch-up (uniform and mixed) on a
    /// coordinator and two workers against one server, on the same rows
    /// (`--rows` of them); nothing else.
    #[arg(long = "citus", env = "PGRETAIN_BENCH_CITUS")]
    pub(crate) citus: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Config {
    /// The options of this run, checked; exits with a usage error (2) on a
    /// bad one.
    pub(crate) fn parse_checked() -> Config {
        let mut cfg = Config::parse();
        let fail = |msg: &str| -> ! {
            Config::command()
                .error(ErrorKind::ValueValidation, msg)
                .exit()
        };
        cfg.growth_rows = match cfg.growth.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(g) => Some(number(g).unwrap_or_else(|e| fail(&format!("--growth-rows: {e}")))),
        };
        if cfg.days <= cfg.keep_days + 2 || cfg.keep_days <= cfg.new_keep_days {
            fail("need days > keep + 2 and keep > new-keep");
        }
        if cfg.tenants < 100 {
            fail("need at least 100 tenants (1% of them are held)");
        }
        if cfg.rows < u64::from(cfg.days) || cfg.rate <= 0.0 || cfg.batch == 0 {
            fail("need rows >= days, rate > 0, batch > 0");
        }
        cfg
    }

    /// Where the chart goes.
    pub(crate) fn svg(&self) -> PathBuf {
        self.svg
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("benchmarks.svg"))
    }

    /// Digits of the tenant number in tenant names (`t0042`).
    pub(crate) fn tenant_width(&self) -> usize {
        (self.tenants - 1).to_string().len().max(4)
    }
}

//! The resolved policy: plain, validated data that every later stage
//! (compile, apply, status, report) consumes without re-validating.
//!
//! A leaf: it imports nothing of pgretain, and owns its types, including
//! the ones `policy` fills in (durations, column types, the enums of the
//! policy language). Produced only by `policy::load`. Serializable, so
//! `compile` can record what it compiled in `generated/` and diff the next
//! policy against it. No I/O here.

pub mod column;
pub mod duration;
pub mod schedule;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use column::{Clock, ColumnType};
pub use duration::{Duration, Fields, Unit};

/// The column pgretain adds to a `changes_apply_to: new_rows` table: the
/// retention in force when the row was inserted. Reserved in the policy.
pub const STAMP_COLUMN: &str = "retention_keep";

/// What the name of a table's default partition adds to the table's name
/// (`sessions_default`). A dataset's table may not look like one.
pub const DEFAULT_PARTITION_SUFFIX: &str = "_default";

/// The columns an archive table adds to the dataset's own. Reserved in a
/// dataset that archives.
pub const ARCHIVE_COLUMNS: &[&str] = &["archived_at", "retention_deadline"];

/// Partition granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Day,
    Week,
    Month,
}

impl Granularity {
    /// The name in the policy and in `retention.dataset.granularity`.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
        }
    }

    /// The granularity of a dataset that does not set `partition`: `day` up
    /// to 400 days of `keep`, `week` up to 2000 days, `month` beyond.
    pub fn default_for(keep: Duration) -> Granularity {
        match keep.max_days() {
            0..=400 => Granularity::Day,
            401..=2000 => Granularity::Week,
            _ => Granularity::Month,
        }
    }
}

/// What happens to expired rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnExpiry {
    Delete,
    Archive,
}

/// What adopting an existing table does with a primary key or unique
/// constraint that does not include the clock (a partitioned table's
/// unique keys must).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UniqueKeys {
    /// Refuse to adopt the table, saying which key.
    #[default]
    Refuse,
    /// Extend the key by the clock: unique per (key, time) from then on.
    IncludeTime,
}

/// The database a policy targets: one PostgreSQL server, or a Citus cluster
/// (docs/citus.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// One PostgreSQL server.
    #[default]
    Postgresql,
    /// A Citus cluster: datasets distributed by their tenant from the
    /// coordinator, the settings tables reference tables.
    Citus,
}

impl Engine {
    /// The name in the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgresql => "postgresql",
            Engine::Citus => "citus",
        }
    }

    /// Whether this is the default engine (one PostgreSQL server).
    pub fn is_postgresql(&self) -> bool {
        *self == Engine::Postgresql
    }
}

/// Which rows a retention change reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangesApplyTo {
    AllRows,
    NewRows,
}

impl ChangesApplyTo {
    /// The name in the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangesApplyTo::AllRows => "all_rows",
            ChangesApplyTo::NewRows => "new_rows",
        }
    }
}

/// Where a rule was written: `policies/retention.yaml:14`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub file: String,
    pub line: usize,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A whole validated policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The policy files, as displayed (sorted).
    pub files: Vec<String>,
    /// The allowed environment values (empty: none declared).
    pub environments: Vec<String>,
    /// Datasets in file order, then order of appearance.
    pub datasets: Vec<Dataset>,
    /// Overrides, one per (override entry, dataset), most specific first.
    pub overrides: Vec<Override>,
    /// Legal holds, in policy order.
    pub holds: Vec<Hold>,
    /// Who may do what in the database; `None`: everything belongs to the
    /// role that runs `apply` (SPEC §3 "Access").
    #[serde(default)]
    pub access: Option<Access>,
    /// How long `retention.run_log` keeps a run's record.
    #[serde(default = "default_run_log_keep")]
    pub run_log_keep: Duration,
    /// Where `run_log_keep` is written; `None`: the default.
    #[serde(default)]
    pub run_log_keep_source: Option<Source>,
    /// Erasure across datasets by one key, in policy order.
    #[serde(default)]
    pub subjects: Vec<Subject>,
    /// The engine the policy targets (recorded only when not the default,
    /// so that state files written before `engine` existed still match).
    #[serde(default, skip_serializing_if = "Engine::is_postgresql")]
    pub engine: Engine,
}

/// A subject of erasure (GDPR art. 17): one key, held in a column of each
/// of several datasets; `pgretain erase --subject NAME KEY` removes the
/// key's rows from all of them at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    /// (dataset, column holding the key), in policy order; never empty.
    pub datasets: Vec<(String, String)>,
    /// Where the subject is defined.
    pub source: Source,
}

/// A dataset's `lock_timeout` when the policy does not set it: 5 seconds
/// (SPEC §3 "Existing tables").
pub fn default_lock_timeout_ms() -> u32 {
    5000
}

/// `run_log_keep` when the policy does not set it: 400 days (SPEC §3).
pub fn default_run_log_keep() -> Duration {
    Duration {
        n: 400,
        unit: Unit::Day,
    }
}

/// The roles of SPEC §3 "Access".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// Owns schema `retention`, everything in it and the dataset tables;
    /// the pg_cron jobs run as it.
    pub owner: String,
    /// Read and write the datasets' rows and tenant settings; call erase.
    pub application: Vec<String>,
    /// Read settings, holds, the run log and the expired-row views.
    pub readers: Vec<String>,
    /// Where `access` is written.
    pub source: Source,
}

impl Access {
    /// Every role named, owner first.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.owner.as_str())
            .chain(self.application.iter().map(String::as_str))
            .chain(self.readers.iter().map(String::as_str))
    }
}

/// One column of a table pgretain creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
}

/// Archive settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Archive {
    /// The schema of the archive table (the table keeps the dataset's table name).
    pub schema: String,
    /// How long an archived row stays after its deadline.
    pub keep: Duration,
}

/// A dataset with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    pub name: String,
    pub description: String,
    pub owner: Option<String>,
    pub legal_basis: Option<String>,
    /// Schema of the table.
    pub schema: String,
    /// Table name (unqualified).
    pub table: String,
    /// The columns pgretain creates; `None` for an existing table.
    pub columns: Option<Vec<Column>>,
    /// The retention clock (a timestamptz, timestamp or date column).
    pub time: String,
    /// The zone a `timestamp` or `date` clock's values are written in
    /// (`None`: UTC; always `None` for a timestamptz clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// An existing table's unique keys without the clock (`None` columns only).
    #[serde(default, skip_serializing_if = "is_refuse")]
    pub unique_keys: UniqueKeys,
    pub tenant: Option<String>,
    pub environment: Option<String>,
    pub keep: Duration,
    pub min_keep: Option<Duration>,
    pub max_keep: Option<Duration>,
    pub partition: Granularity,
    pub on_expiry: OnExpiry,
    pub archive: Option<Archive>,
    pub sliding: bool,
    pub changes_apply_to: ChangesApplyTo,
    pub erase_by: Option<String>,
    /// JSON column → keys stripped on write, in policy order.
    pub sensitive: Vec<(String, Vec<String>)>,
    /// The pg_cron schedule of this dataset's enforcement job (GMT).
    pub schedule: String,
    /// The longest lock wait of a run, in milliseconds.
    #[serde(default = "default_lock_timeout_ms")]
    pub lock_timeout_ms: u32,
    /// Where the dataset is defined.
    pub source: Source,
    /// Where its `keep` is written.
    pub keep_source: Source,
}

fn is_refuse(u: &UniqueKeys) -> bool {
    *u == UniqueKeys::Refuse
}

impl Dataset {
    /// The type of a column, when pgretain creates the table.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.as_ref()?.iter().find(|c| c.name == name)
    }

    /// The kind of its retention clock; `None` for an existing table, whose
    /// columns the policy does not declare (the database knows).
    pub fn clock(&self) -> Option<Clock> {
        self.column(&self.time).and_then(|c| c.ty.clock())
    }

    /// The zone its clock's values are read in: `time_zone`, or UTC.
    pub fn zone(&self) -> &str {
        self.time_zone.as_deref().unwrap_or("UTC")
    }
}

/// A policy override for one dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub dataset: String,
    pub tenant: Option<String>,
    pub environment: Option<String>,
    pub keep: Duration,
    pub reason: Option<String>,
    pub source: Source,
}

impl Override {
    /// 0: tenant and environment, 1: tenant, 2: environment (SPEC §3 order).
    pub fn rank(&self) -> u8 {
        match (&self.tenant, &self.environment) {
            (Some(_), Some(_)) => 0,
            (Some(_), None) => 1,
            _ => 2,
        }
    }
}

/// A legal hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub tenant: Option<String>,
    pub environment: Option<String>,
    /// The datasets it covers (resolved: never empty).
    pub datasets: Vec<String>,
    pub reason: String,
    /// Last day in force (UTC), `YYYY-MM-DD`.
    pub until: Option<String>,
    pub source: Source,
}

impl Policy {
    pub fn dataset(&self, name: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.name == name)
    }

    /// Overrides per dataset name.
    pub fn overrides_by_dataset(&self) -> BTreeMap<&str, Vec<&Override>> {
        let mut m: BTreeMap<&str, Vec<&Override>> = BTreeMap::new();
        for o in &self.overrides {
            m.entry(o.dataset.as_str()).or_default().push(o);
        }
        m
    }
}

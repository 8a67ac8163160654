//! The policy file format, exactly as written in YAML (SPEC §2).
//!
//! These types are the single source of both the parser (serde) and the JSON
//! Schema that editors use (`pgretain schema`, schemars), so the two cannot
//! drift. They hold raw, unvalidated text: durations, cron expressions,
//! dates and column definitions stay strings here and are checked by
//! `validate`, which knows where each value sits in the file. No I/O here.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{ChangesApplyTo, Engine, Granularity, OnExpiry, UniqueKeys};

/// A duration: a whole number and a unit, e.g. `365 days`, `1 year`, `12 hours`.
/// (Zero is not a duration: the number has a non-zero digit.)
pub const DURATION_PATTERN: &str =
    r"^\s*0*[1-9][0-9]*\s+(hour|hours|day|days|week|weeks|month|months|year|years)\s*$";

/// One policy file. Every `*.yaml` file of the policy directory has this shape;
/// together they form one policy.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "pgretain policy file")]
pub struct PolicyFile {
    /// The policy language version. Always `1`.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// When enforcement of this file's datasets runs: a pg_cron schedule in
    /// GMT (five cron fields or an `@daily`-style macro). Default: daily at 03:30.
    #[serde(default)]
    pub schedule: Option<String>,
    /// The allowed values of the environment column (e.g. `[draft, live]`).
    /// Overrides and holds may only name these.
    #[serde(default)]
    pub environments: Option<Vec<String>>,
    /// The datasets, by name (`[a-z][a-z0-9_]*`, unique across all files).
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": "^[a-z][a-z0-9_]{0,39}$" }))]
    pub datasets: IndexMap<String, DatasetSpec>,
    /// Policy-level retention settings for environments and tenants.
    #[serde(default)]
    pub overrides: Vec<OverrideSpec>,
    /// Legal holds: nothing they match is removed while they last.
    #[serde(default)]
    pub holds: Vec<HoldSpec>,
    /// Who may do what in the database: the role that owns the retention
    /// machinery and runs its jobs, the application's roles, and the readers
    /// of the evidence. Strongly recommended; in one policy file only.
    #[serde(default)]
    pub access: Option<AccessSpec>,
    /// The database the policy targets: `postgresql` (one server, the
    /// default) or `citus` (a Citus cluster: every dataset needs a `tenant`,
    /// its distribution column). The same in every file that sets it.
    #[serde(default)]
    pub engine: Option<Engine>,
    /// How long `retention.run_log` keeps a run's record, e.g. `400 days`
    /// (the default). Enforcement runs remove older records.
    #[serde(default)]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub run_log_keep: Option<String>,
    /// Erasure across datasets by one key (GDPR art. 17): subject name
    /// (`[a-z][a-z0-9_]*`, unique across all files) → dataset → the column
    /// holding the subject's key in that dataset, e.g.
    /// `conversation: { conversations: conversation_id, sessions: conversation_id }`.
    /// `pgretain erase --subject conversation KEY` removes the key's rows
    /// from every dataset named, in one transaction, holds respected.
    #[serde(default)]
    #[schemars(extend(
        "propertyNames" = { "pattern": "^[a-z][a-z0-9_]{0,39}$" },
        "additionalProperties" = {
            "type": "object",
            "minProperties": 1,
            "propertyNames": { "pattern": "^[a-z][a-z0-9_]{0,39}$" },
            "additionalProperties": { "type": "string", "pattern": "^[a-z_][a-z0-9_]{0,62}$" }
        }
    ))]
    pub subjects: IndexMap<String, SubjectSpec>,
}

/// One subject of `subjects`: dataset name → the column holding the
/// subject's key in it. At least one dataset.
pub type SubjectSpec = IndexMap<String, String>;

/// The roles of the database and what each may do (SPEC §3 "Access").
/// Role names are lowercase identifiers; each role appears once.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessSpec {
    /// The role that owns schema `retention` and everything in it, owns the
    /// dataset tables, and runs the pg_cron jobs. Must exist, must not be a
    /// superuser, and must be able to log in (pg_cron connects as it).
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]{0,62}$"))]
    pub owner: String,
    /// Roles that read and write the datasets' rows, write run-time tenant
    /// settings within the bounds, and call `retention.erase()`.
    #[serde(default)]
    pub application: Vec<String>,
    /// Roles that may read the settings, holds, the run log and the
    /// `retention.expired_<dataset>` views, and nothing else.
    #[serde(default)]
    pub readers: Vec<String>,
}

/// A dataset: one table whose rows pgretain enforces retention on.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// What the data is, in words a compliance officer understands.
    pub description: String,
    /// Who answers for this data (shown in reports).
    #[serde(default)]
    pub owner: Option<String>,
    /// Why the data may be kept (shown in reports).
    #[serde(default)]
    pub legal_basis: Option<String>,
    /// The table, schema-qualified: `schema.table`.
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$"))]
    pub table: String,
    /// The table's columns, in order: name → PostgreSQL type and constraints
    /// (e.g. `text not null`, `timestamptz not null default now()`).
    /// pgretain creates the table with these columns.
    #[serde(default)]
    pub columns: Option<IndexMap<String, String>>,
    /// The retention clock: a `timestamptz`, `timestamp` (without time zone)
    /// or `date` column.
    pub time: String,
    /// Only for a `timestamp` or `date` clock: the zone its values are
    /// written in, an IANA name such as `UTC` or `Europe/Paris` (default
    /// UTC).
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Only for an existing table (no `columns`): a primary key or unique
    /// constraint that does not include the `time` column is refused
    /// (`refuse`, the default) or extended by it (`include_time`).
    #[serde(default)]
    pub unique_keys: Option<UniqueKeys>,
    /// The column naming the tenant (e.g. the bot); enables per-tenant settings.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The column naming the environment; enables per-environment settings.
    #[serde(default)]
    pub environment: Option<String>,
    /// The default retention, e.g. `365 days`.
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub keep: String,
    /// The shortest retention a run-time tenant setting or override may set.
    #[serde(default)]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub min_keep: Option<String>,
    /// The longest retention a run-time tenant setting or override may set.
    #[serde(default)]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub max_keep: Option<String>,
    /// Partition granularity. Default: `day` up to 400 days of `keep`,
    /// `week` up to 2000 days, `month` beyond.
    #[serde(default)]
    pub partition: Option<Granularity>,
    /// What happens to a row when its retention ends. Default: `delete`.
    #[serde(default)]
    pub on_expiry: Option<OnExpiry>,
    /// Where expired rows go and how long they stay (`on_expiry: archive` only).
    #[serde(default)]
    pub archive: Option<ArchiveSpec>,
    /// `true`: the application moves the `time` column forward on activity,
    /// so expiry counts from the latest activity.
    #[serde(default)]
    pub sliding: Option<bool>,
    /// Whether a retention change reaches rows that already exist
    /// (`all_rows`, default) or only rows inserted afterwards (`new_rows`).
    #[serde(default)]
    pub changes_apply_to: Option<ChangesApplyTo>,
    /// The column identifying what `pgretain erase DATASET KEY` removes.
    #[serde(default)]
    pub erase_by: Option<String>,
    /// JSON columns → keys that are stripped by the database on every write.
    #[serde(default)]
    pub sensitive: Option<IndexMap<String, Vec<String>>>,
    /// The longest any lock wait of an enforcement run may take before it
    /// skips that step for the next run, e.g. `5 seconds` (the default) or
    /// `500 milliseconds`. Inserts queue behind a drop's lock for at most this.
    #[serde(default)]
    #[schemars(regex(pattern = LOCK_TIMEOUT_PATTERN))]
    pub lock_timeout: Option<String>,
}

/// A lock timeout: a whole number of milliseconds or seconds.
pub const LOCK_TIMEOUT_PATTERN: &str =
    r"^\s*0*[1-9][0-9]*\s+(millisecond|milliseconds|ms|second|seconds|s)\s*$";

/// Archive settings of a dataset with `on_expiry: archive`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSpec {
    /// The schema holding the archive table. Default: `archive`.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]*$"))]
    pub schema: Option<String>,
    /// How long an archived row is kept after its deadline.
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub keep: String,
}

/// A policy-level retention setting for a tenant, an environment, or both.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideSpec {
    /// The tenant this override applies to.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The environment this override applies to.
    #[serde(default)]
    pub environment: Option<String>,
    /// Dataset name → retention.
    #[schemars(extend("additionalProperties" = { "type": "string", "pattern": DURATION_PATTERN }))]
    pub keep: IndexMap<String, String>,
    /// Why (shown in reports).
    #[serde(default)]
    pub reason: Option<String>,
}

/// A legal hold: matching rows are not removed while it lasts.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldSpec {
    /// The tenant held. Omitted: every tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The environment held. Omitted: every environment.
    #[serde(default)]
    pub environment: Option<String>,
    /// The datasets held. Default: every dataset the hold can apply to.
    #[serde(default)]
    pub datasets: Option<Vec<String>>,
    /// Why the hold exists (e.g. a case reference). Required.
    pub reason: String,
    /// The last day (UTC) the hold is in force, `YYYY-MM-DD`. Omitted: until removed.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))]
    pub until: Option<String>,
}

/// The JSON Schema of a policy file, pretty-printed, with a trailing newline.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(PolicyFile);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

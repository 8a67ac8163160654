//! Compile: the next migration for a policy (SPEC §4). The first one
//! installs the runtime and every dataset; each later one holds only what
//! changed since the policy compiled last (`diff`, `dataset`), named for
//! its changes (`naming`). Changes that cannot be migrated safely are
//! refused, all at once.
//!
//! Pure: the policies in, the migration's name, SQL and change lines out.
//! Reading and writing `generated/` is `generated`'s job, running the
//! command `cmd::compile`'s; the SQL itself is written by `render`.

mod dataset;
mod diff;
mod naming;

use crate::model::Policy;
use crate::render;
use crate::render::access::{self, Transfer};

/// What the opening and closing statements of a migration do besides
/// pinning its search_path (see `render::access`).
#[derive(Debug, Clone, Copy, Default)]
struct Frame {
    /// Hand what pgretain made to another role first.
    transfer: Option<Transfer>,
    /// Re-issue every grant of `access` at the end (new objects, new roles).
    grants: bool,
}

/// One change between two policies, rendered.
struct Change {
    /// A line for humans: "conversations: keep 365 days -> 90 days".
    what: String,
    /// A word or two for the migration's file name.
    slug: String,
    sql: String,
}

/// What was compiled before.
#[derive(Debug, Clone, Copy)]
pub struct Previous<'a> {
    /// The policy the last migration brings the database to.
    pub policy: &'a Policy,
    /// The runtime version the migrations so far install.
    pub runtime_version: u32,
    /// The version number of the last migration.
    pub last_version: u32,
}

/// A migration to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// `V2__shorten_conversations.sql`.
    pub file: String,
    /// Its whole text.
    pub sql: String,
    /// What it changes, a line each: "conversations: keep 365 days -> 90 days".
    pub changes: Vec<String>,
}

/// The migration that brings a database from `previous` (none: an empty
/// database) to `policy`; `Ok(None)` when nothing changed, `Err` with every
/// reason when the change is refused (`allow_destructive`: removing a
/// dataset, and so dropping its table, is allowed). `previous` was compiled
/// with this runtime version or an older one (`cmd::compile` refuses a
/// newer one before it gets here).
pub fn next_migration(
    previous: Option<Previous<'_>>,
    policy: &Policy,
    allow_destructive: bool,
) -> Result<Option<Migration>, Vec<String>> {
    let Some(prev) = previous else {
        let init = Change {
            what: format!(
                "create the retention runtime and {} dataset(s)",
                policy.datasets.len()
            ),
            slug: "init".into(),
            sql: render::initial(policy),
        };
        let file = naming::file(1, std::slice::from_ref(&init));
        return Ok(Some(Migration {
            file,
            sql: init.sql,
            changes: vec![init.what],
        }));
    };
    let (changes, frame) =
        diff::diff(prev.policy, prev.runtime_version, policy, allow_destructive)?;
    if changes.is_empty() {
        return Ok(None);
    }
    let number = prev.last_version + 1;
    let mut sql = render::header(&policy.files, &naming::title(number, &changes));
    sql.push_str(&access::prologue(policy, frame.transfer));
    for c in &changes {
        sql.push('\n');
        // One blank line between groups, whatever each starts with.
        sql.push_str(c.sql.trim_start_matches('\n'));
    }
    sql.push('\n');
    sql.push_str(&access::epilogue(policy, frame.grants));
    Ok(Some(Migration {
        file: naming::file(number, &changes),
        sql: render::finish(policy, sql),
        changes: changes.into_iter().map(|c| c.what).collect(),
    }))
}

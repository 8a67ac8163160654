//! The changes from the policy compiled last to the new one, in the order a
//! migration makes them: the runtime, `run_log_keep`, `access`, the
//! environments, the datasets (added, changed, removed), overrides, holds,
//! subjects.
//! Each change says in a line what it does and carries its SQL (written by
//! `render`); changes that cannot be migrated safely are refused, all at
//! once. Pure functions, no I/O.

use std::collections::BTreeMap;

use crate::model::{Access, Hold, Override, Policy};
use crate::render::access::{self, Transfer};
use crate::render::dataset::dataset_create;
use crate::render::names::{archive_relation, relation};
use crate::render::rules::{self, who};
use crate::render::{change, RUNTIME_VERSION};

use super::dataset::dataset_change;
use super::{Change, Frame};

/// The changes from `old` to `new`, or why they are refused.
pub(super) fn diff(
    old: &Policy,
    old_runtime: u32,
    new: &Policy,
    allow_destructive: bool,
) -> Result<(Vec<Change>, Frame), Vec<String>> {
    let mut changes = Vec::new();
    let mut refused = Vec::new();
    let mut frame = Frame::default();

    // The tables are made for one engine: a server's are not distributed,
    // a cluster's are. Moving them is a migration of the data, not of the
    // policy (docs/citus.md).
    if old.engine != new.engine {
        refused.push(format!(
            "`engine` changed from `{}` to `{}`: the tables of an applied policy stay on the engine they were made for; keep `engine: {}`, or compile the policy afresh (an empty --generated directory) for a new database on `{}`",
            old.engine.as_str(),
            new.engine.as_str(),
            old.engine.as_str(),
            new.engine.as_str()
        ));
        return Err(refused);
    }

    if old_runtime != RUNTIME_VERSION {
        let sql = change::runtime_upgrade(old_runtime, old, new);
        frame.grants = true;
        if new.access.is_some() {
            frame.transfer = Some(Transfer::ToOwner);
        }
        changes.push(Change {
            what: format!("install pgretain runtime version {RUNTIME_VERSION}"),
            slug: "upgrade_runtime".into(),
            sql,
        });
    }

    if old.run_log_keep != new.run_log_keep {
        changes.push(Change {
            what: format!("run_log_keep {} -> {}", old.run_log_keep, new.run_log_keep),
            slug: "run_log_keep".into(),
            sql: rules::config(new),
        });
    }

    if let Some(c) = access_change(old.access.as_ref(), new, &mut frame) {
        changes.push(c);
    }

    // The allowed environments are a set: their order in the file means nothing.
    let set = |v: &[String]| v.iter().cloned().collect::<std::collections::BTreeSet<_>>();
    if set(&old.environments) != set(&new.environments) {
        changes.push(Change {
            what: format!(
                "environments: [{}] -> [{}]",
                old.environments.join(", "),
                new.environments.join(", ")
            ),
            slug: "environments".into(),
            sql: rules::environments(&new.environments),
        });
    }

    for ds in &new.datasets {
        match old.dataset(&ds.name) {
            None => {
                frame.grants = true;
                changes.push(Change {
                    what: format!("add dataset {}", ds.name),
                    slug: format!("add_{}", ds.name),
                    sql: dataset_create(ds, new.engine),
                })
            }
            Some(before) => match dataset_change(before, ds, new.engine) {
                Ok(Some(c)) => {
                    if c.what.contains(": add column ") {
                        frame.grants = true;
                    }
                    changes.push(c)
                }
                Ok(None) => {}
                Err(mut why) => refused.append(&mut why),
            },
        }
    }
    for before in &old.datasets {
        if new.dataset(&before.name).is_none() {
            // An adopted table without an archive loses no row: released.
            if before.columns.is_none() && before.archive.is_none() {
                changes.push(Change {
                    what: format!(
                        "release dataset {}: table {} stays, unenforced",
                        before.name,
                        relation(before)
                    ),
                    slug: format!("release_{}", before.name),
                    sql: change::remove_dataset(before, new.engine),
                });
            } else if allow_destructive {
                changes.push(Change {
                    what: format!("remove dataset {} and drop its table", before.name),
                    slug: format!("remove_{}", before.name),
                    sql: change::remove_dataset(before, new.engine),
                });
            } else {
                refused.push(format!(
                    "dataset `{}` was removed from the policy: that would drop table {} and every row in it{}; pgretain would also stop enforcing it. If that is what you want, run `pgretain compile --allow-destructive`; otherwise restore the dataset in the policy",
                    before.name,
                    relation(before),
                    archive_relation(before).map(|a| format!(" (and the archive {a})")).unwrap_or_default()
                ));
            }
        }
    }
    if !refused.is_empty() {
        return Err(refused);
    }

    // Overrides, keyed by dataset, tenant and environment.
    type Key = (String, Option<String>, Option<String>);
    let okey =
        |o: &Override| -> Key { (o.dataset.clone(), o.tenant.clone(), o.environment.clone()) };
    let olds: BTreeMap<Key, &Override> = old.overrides.iter().map(|o| (okey(o), o)).collect();
    let news: BTreeMap<Key, &Override> = new.overrides.iter().map(|o| (okey(o), o)).collect();
    let mut sql = String::new();
    let mut whats = Vec::new();
    for (k, o) in &news {
        let who = who(o.tenant.as_deref(), o.environment.as_deref());
        match olds.get(k) {
            Some(prev) if prev.keep == o.keep && prev.reason == o.reason => {}
            Some(prev) => {
                whats.push(if prev.keep == o.keep {
                    format!("{}: override for {who}: reason changed", o.dataset)
                } else {
                    format!(
                        "{}: override for {who}: keep {} -> {}",
                        o.dataset, prev.keep, o.keep
                    )
                });
                sql.push_str(&rules::override_upsert(o));
            }
            None => {
                whats.push(format!(
                    "{}: new override for {who}: keep {}",
                    o.dataset, o.keep
                ));
                sql.push_str(&rules::override_upsert(o));
            }
        }
    }
    for (k, o) in &olds {
        if !news.contains_key(k) && new.dataset(&o.dataset).is_some() {
            whats.push(format!(
                "{}: override for {} removed",
                o.dataset,
                who(o.tenant.as_deref(), o.environment.as_deref())
            ));
            sql.push_str(&rules::override_delete(o));
        }
    }
    if !whats.is_empty() {
        changes.push(Change {
            what: whats.join("; "),
            slug: "overrides".into(),
            sql,
        });
    }

    // Holds, per dataset, keyed by dataset, tenant, environment and reason.
    type HKey = (String, Option<String>, Option<String>, String);
    let expand = |p: &Policy| -> BTreeMap<HKey, Hold> {
        let mut m = BTreeMap::new();
        for h in &p.holds {
            for d in &h.datasets {
                m.insert(
                    (
                        d.clone(),
                        h.tenant.clone(),
                        h.environment.clone(),
                        h.reason.clone(),
                    ),
                    h.clone(),
                );
            }
        }
        m
    };
    let (oh, nh) = (expand(old), expand(new));
    let mut sql = String::new();
    let mut whats = Vec::new();
    for (k, h) in &nh {
        let what = match oh.get(k) {
            Some(prev) if prev.until == h.until => continue,
            Some(prev) => format!(
                "until {} -> {}",
                prev.until.as_deref().unwrap_or("(none)"),
                h.until.as_deref().unwrap_or("(none)")
            ),
            None => "added".to_string(),
        };
        whats.push(format!("{}: hold \"{}\" {what}", k.0, h.reason));
        sql.push_str(&rules::hold_upsert(h, &k.0));
    }
    for (k, h) in &oh {
        if !nh.contains_key(k) && new.dataset(&k.0).is_some() {
            whats.push(format!("{}: hold \"{}\" removed", k.0, h.reason));
            sql.push_str(&rules::hold_delete(h, &k.0));
        }
    }
    if !whats.is_empty() {
        changes.push(Change {
            what: whats.join("; "),
            slug: "holds".into(),
            sql,
        });
    }

    // Subjects: rewritten whole when any (subject, dataset, column) changed.
    let pairs = |p: &Policy| -> BTreeMap<(String, String), String> {
        p.subjects
            .iter()
            .flat_map(|s| {
                s.datasets
                    .iter()
                    .map(|(d, c)| ((s.name.clone(), d.clone()), c.clone()))
            })
            .collect()
    };
    let (os, ns) = (pairs(old), pairs(new));
    if os != ns {
        let mut whats = Vec::new();
        for ((s, d), c) in &ns {
            match os.get(&(s.clone(), d.clone())) {
                Some(prev) if prev == c => {}
                Some(prev) => whats.push(format!("subject {s}: {d} by {prev} -> {c}")),
                None => whats.push(format!("subject {s}: {d} by {c} added")),
            }
        }
        for ((s, d), c) in &os {
            if !ns.contains_key(&(s.clone(), d.clone())) {
                whats.push(format!("subject {s}: {d} by {c} removed"));
            }
        }
        // A column an old subject or the old erase_by already indexed keeps its index.
        let indexed = |d: &str, c: &str| {
            os.iter().any(|((_, od), oc)| od == d && oc == c)
                || old
                    .dataset(d)
                    .is_some_and(|ds| ds.erase_by.as_deref() == Some(c))
        };
        changes.push(Change {
            what: whats.join("; "),
            slug: "subjects".into(),
            sql: rules::subjects(new, &indexed),
        });
    }
    Ok((changes, frame))
}

/// A change of `access`: who owns the machinery, who is granted what. The
/// ownership moves in the migration's opening (`frame.transfer`), the grants
/// are re-issued in its closing (`frame.grants`); here, what is taken back.
fn access_change(old: Option<&Access>, new: &Policy, frame: &mut Frame) -> Option<Change> {
    let new_access = new.access.as_ref();
    let same = |a: &Access, b: &Access| {
        (&a.owner, &a.application, &a.readers) == (&b.owner, &b.application, &b.readers)
    };
    match (old, new_access) {
        (None, None) => return None,
        (Some(a), Some(b)) if same(a, b) => return None,
        _ => {}
    }
    let mut whats = Vec::new();
    let mut sql = String::new();
    let old_owner = old.map(|a| a.owner.as_str());
    let new_owner = new_access.map(|a| a.owner.as_str());
    if old_owner != new_owner {
        frame.transfer = Some(if new_owner.is_some() {
            Transfer::ToOwner
        } else {
            Transfer::ToApplier
        });
        whats.push(format!(
            "access: owner {} -> {}",
            old_owner.unwrap_or("(the role that applies)"),
            new_owner.unwrap_or("(the role that applies)")
        ));
        if let Some(o) = old_owner {
            sql.push_str(&change::forget_owner_timeout(o));
        }
    }
    let list = |a: Option<&Access>, f: fn(&Access) -> &Vec<String>| {
        a.map(|a| f(a).join(", ")).unwrap_or_default()
    };
    for (label, f) in [
        (
            "application",
            (|a: &Access| &a.application) as fn(&Access) -> &Vec<String>,
        ),
        ("readers", |a: &Access| &a.readers),
    ] {
        if list(old, f) != list(new_access, f) {
            whats.push(format!(
                "access: {label} [{}] -> [{}]",
                list(old, f),
                list(new_access, f)
            ));
        }
    }
    sql.push_str(&access::revoke(
        &access::removed_roles(old, new_access),
        new,
    ));
    frame.grants = true;
    Some(Change {
        what: whats.join("; "),
        slug: "access".into(),
        sql,
    })
}

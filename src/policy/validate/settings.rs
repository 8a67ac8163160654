//! The policy-wide settings: `access` (in one file at most, each role
//! once across its lists) and `run_log_keep` (the same wherever it is set).
//! No I/O here.

use std::collections::BTreeMap;

use crate::model::{Access, Duration, Engine, Source};
use crate::policy::position::Seg;
use crate::policy::{At, ParsedFile};
use crate::ypath;

use super::{is_ident, source, Ctx};

/// Why a role name cannot be used in `access`, if it cannot.
fn bad_role(name: &str) -> Option<&'static str> {
    if !is_ident(name) {
        Some("is not a lowercase identifier")
    } else if name == "public" {
        Some("is `public`, which means every role")
    } else if name.starts_with("pg_") {
        Some("starts with `pg_`, which PostgreSQL reserves for its predefined roles")
    } else if matches!(
        name,
        "current_user" | "current_role" | "session_user" | "none" | "all"
    ) {
        Some("is a reserved word where PostgreSQL expects a role")
    } else {
        None
    }
}

/// `access`: in one file at most; each role once across the three lists.
pub(super) fn access(cx: &mut Ctx, files: &[ParsedFile]) -> Option<Access> {
    let mut found: Option<(Access, &ParsedFile)> = None;
    for f in files {
        let Some(a) = &f.access else { continue };
        if let Some((_, first)) = &found {
            let mut d = f.src.diag(
                &ypath!["access"],
                At::Key,
                "`access` is declared in two policy files".into(),
                Some("declare `access` once, in one file of the policy".into()),
            );
            d.note = Some(format!(
                "first declared at {}:{}",
                first.src.display.display(),
                first.src.index.key(&ypath!["access"]).line
            ));
            cx.push(d);
            continue;
        }
        let mut ok = true;
        // Every role with where it is written, in order.
        let mut named: Vec<(String, Vec<Seg>)> = vec![(a.owner.clone(), ypath!["access", "owner"])];
        for (i, r) in a.application.iter().enumerate() {
            named.push((r.clone(), ypath!["access", "application", i]));
        }
        for (i, r) in a.readers.iter().enumerate() {
            named.push((r.clone(), ypath!["access", "readers", i]));
        }
        let mut seen: BTreeMap<&str, &Vec<Seg>> = BTreeMap::new();
        for (role, path) in &named {
            if f.was_reported(path) {
                ok = false;
                continue;
            }
            if let Some(why) = bad_role(role) {
                cx.err(
                    &f.src,
                    path,
                    At::Value,
                    format!("`access`: role `{role}` {why}"),
                    "name a role of the database in lowercase letters, digits and `_` (create it with `CREATE ROLE name`), not `public` or a `pg_` role",
                );
                ok = false;
                continue;
            }
            if let Some(first) = seen.get(role.as_str()) {
                let list = |p: &[Seg]| match p.get(1) {
                    Some(Seg::Key(k)) => k.clone(),
                    _ => String::new(),
                };
                let mut d = f.src.diag(
                    path,
                    At::Value,
                    if list(first) == list(path) {
                        format!("`access`: role `{role}` is listed twice in `{}`", list(path))
                    } else {
                        format!(
                            "`access`: role `{role}` is both in `{}` and in `{}`",
                            list(first),
                            list(path)
                        )
                    },
                    Some("give each role one part: the owner runs the machinery, application roles write data, readers only read; use separate roles".into()),
                );
                d.note = Some(format!(
                    "first named at {}:{}",
                    f.src.display.display(),
                    f.src.index.value(first).line
                ));
                cx.push(d);
                ok = false;
                continue;
            }
            seen.insert(role.as_str(), path);
        }
        if ok {
            found = Some((
                Access {
                    owner: a.owner.clone(),
                    application: a.application.clone(),
                    readers: a.readers.clone(),
                    source: source(&f.src, &ypath!["access"]),
                },
                f,
            ));
        } else {
            // Reported; remember the file so a second `access` is still caught.
            found = found.or(Some((
                Access {
                    owner: String::new(),
                    application: Vec::new(),
                    readers: Vec::new(),
                    source: source(&f.src, &ypath!["access"]),
                },
                f,
            )));
        }
    }
    found.map(|(a, _)| a).filter(|a| !a.owner.is_empty())
}

/// `run_log_keep`: a duration, the same in every file that sets it.
pub(super) fn run_log_keep(cx: &mut Ctx, files: &[ParsedFile]) -> (Duration, Option<Source>) {
    let mut found: Option<(Duration, &ParsedFile)> = None;
    for f in files {
        let Some(text) = &f.run_log_keep else {
            continue;
        };
        let Some(d) = cx.duration(&f.src, &ypath!["run_log_keep"], text, "`run_log_keep`") else {
            continue;
        };
        match &found {
            None => found = Some((d, f)),
            Some((first, ff)) if *first != d => {
                let mut diag = f.src.diag(
                    &ypath!["run_log_keep"],
                    At::Value,
                    format!("`run_log_keep` `{d}` differs from `{first}` in another policy file"),
                    Some("set `run_log_keep` once, or to the same duration in every file".into()),
                );
                diag.note = Some(format!(
                    "first set at {}:{}",
                    ff.src.display.display(),
                    ff.src.index.key(&ypath!["run_log_keep"]).line
                ));
                cx.push(diag);
            }
            Some(_) => {}
        }
    }
    match found {
        Some((d, f)) => (d, Some(source(&f.src, &ypath!["run_log_keep"]))),
        None => (crate::model::default_run_log_keep(), None),
    }
}

/// `engine`: the same in every file that sets it; `postgresql` when none does.
pub(super) fn engine(cx: &mut Ctx, files: &[ParsedFile]) -> Engine {
    let mut found: Option<(Engine, &ParsedFile)> = None;
    for f in files {
        let Some(e) = f.engine else {
            continue;
        };
        match &found {
            None => found = Some((e, f)),
            Some((first, ff)) if *first != e => {
                let mut diag = f.src.diag(
                    &ypath!["engine"],
                    At::Value,
                    format!(
                        "`engine: {}` differs from `engine: {}` in another policy file",
                        e.as_str(),
                        first.as_str()
                    ),
                    Some("set `engine` once, or to the same engine in every file".into()),
                );
                diag.note = Some(format!(
                    "first set at {}:{}",
                    ff.src.display.display(),
                    ff.src.index.key(&ypath!["engine"]).line
                ));
                cx.push(diag);
            }
            Some(_) => {}
        }
    }
    found.map(|(e, _)| e).unwrap_or_default()
}

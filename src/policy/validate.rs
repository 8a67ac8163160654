//! Semantic validation: the parsed files as one policy, checked as a whole
//! (SPEC §2 "Errors"), resolved into `model::Policy` with every default
//! filled in. Every problem is reported at the offending key; nothing stops
//! at the first error. No I/O here.

use std::collections::{BTreeMap, BTreeSet};

use super::columns::{self, COLUMN_HELP};
use super::cron;
use super::duration::{self, DURATION_HELP};
use super::position::Seg;
use super::spec::DatasetSpec;
use super::{suggest, At, ParsedFile, SourceFile};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::{
    Access, Archive, ChangesApplyTo, Column, Dataset, Duration, Granularity, Hold, OnExpiry,
    Override, Policy, Source, ARCHIVE_COLUMNS, STAMP_COLUMN,
};
use crate::ypath;

/// Schemas pgretain must never create tables in.
const RESERVED_SCHEMAS: &[&str] = &[
    "pg_catalog",
    "information_schema",
    "pg_toast",
    "retention",
    "cron",
    "public_retention",
];

/// Longest table name: partition names add `_pYYYYMMDD` (10 bytes) within 63.
const MAX_TABLE_NAME: usize = 50;

/// `x_default` or `x_p20260101`: names pgretain gives partitions.
fn looks_like_partition(table: &str) -> bool {
    if table.ends_with("_default") {
        return true;
    }
    match table.rsplit_once("_p") {
        Some((_, digits)) => digits.len() == 8 && digits.chars().all(|c| c.is_ascii_digit()),
        None => false,
    }
}

/// Longest dataset name: generated object names are `enforce_<name>` etc.
const MAX_DATASET_NAME: usize = 40;

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && s.len() <= 63
}

const IDENT_HELP: &str = "use lowercase letters, digits and `_`, starting with a letter or `_`, at most 63 characters (pgretain quotes every identifier, but refuses names that would need quoting)";

/// A value compared with data at run time (tenant, environment): free text
/// (SPEC §2), so anything PostgreSQL text can hold, which is every character
/// but NUL; not empty, and short enough for the settings tables' indexes.
/// Quoting makes it data wherever it appears.
fn is_value(s: &str) -> bool {
    !s.is_empty() && !s.contains('\0') && s.len() <= MAX_VALUE
}

/// Longest tenant or environment value, in bytes.
const MAX_VALUE: usize = 200;

/// Longest reason (of a hold or override), in bytes: it is part of a unique
/// key of `retention.hold`, and a btree entry must fit in a page.
const MAX_REASON: usize = 1000;

/// Free text (a description, owner, legal basis, reason) may contain
/// anything, newlines, quotes and SQL included: it is rendered as data. Only
/// NUL cannot be stored in PostgreSQL text. Reports it and returns false when
/// `text` holds one.
fn free_text(cx: &mut Ctx, src: &SourceFile, path: &[Seg], what: &str, text: &str) -> bool {
    if text.contains('\0') {
        cx.err(
            src,
            path,
            At::Value,
            format!("{what} contains a NUL character (`\\0`), which PostgreSQL text cannot store"),
            "remove the `\\0` escape from the text",
        );
        return false;
    }
    true
}

struct Ctx<'a> {
    diags: &'a mut Diagnostics,
}

impl Ctx<'_> {
    fn err(&mut self, src: &SourceFile, path: &[Seg], at: At, msg: String, help: &str) {
        let d = src.diag(path, at, msg, (!help.is_empty()).then(|| help.to_string()));
        self.diags.push(d);
    }
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn duration(
        &mut self,
        src: &SourceFile,
        path: &[Seg],
        text: &str,
        what: &str,
    ) -> Option<Duration> {
        match duration::parse(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    src,
                    path,
                    At::Value,
                    format!("{what} `{}` {e}", text.trim()),
                    DURATION_HELP,
                );
                None
            }
        }
    }
}

fn source(src: &SourceFile, path: &[Seg]) -> Source {
    Source {
        file: src.display.display().to_string(),
        line: src.index.key(path).line,
    }
}

/// A dataset as far as it validated, with where it came from.
struct Found<'a> {
    file: &'a ParsedFile,
    model: Option<Dataset>,
}

pub(super) fn validate(files: &[ParsedFile], diags: &mut Diagnostics) -> Policy {
    let mut cx = Ctx { diags };

    // File-level keys.
    let mut environments: Option<(Vec<String>, &ParsedFile)> = None;
    for f in files {
        if let Some(v) = f.version {
            if v != 1 {
                cx.err(
                    &f.src,
                    &ypath!["version"],
                    At::Value,
                    format!("unsupported policy version {v}"),
                    "this pgretain reads `version: 1`",
                );
            }
        }
        if let Some(s) = &f.schedule {
            if let Err(why) = cron::validate(s) {
                cx.err(&f.src, &ypath!["schedule"], At::Value, format!("schedule `{s}` {why}"), "write a pg_cron schedule in GMT: five fields `minute hour day-of-month month day-of-week`, e.g. `30 3 * * *` for 03:30 daily, or `@hourly`");
            }
        }
        if let Some(envs) = &f.environments {
            let mut seen = BTreeSet::new();
            for (i, e) in envs.iter().enumerate() {
                if !is_value(e) {
                    cx.err(
                        &f.src,
                        &ypath!["environments", i],
                        At::Value,
                        format!("environment `{e}` is empty, longer than {MAX_VALUE} bytes, or holds a NUL character"),
                        "use a short name such as `draft` or `live`",
                    );
                }
                if !seen.insert(e) {
                    cx.err(
                        &f.src,
                        &ypath!["environments", i],
                        At::Value,
                        format!("environment `{e}` is listed twice"),
                        "list each environment once",
                    );
                }
            }
            match &environments {
                None => environments = Some((envs.clone(), f)),
                Some((first, ff)) => {
                    let a: BTreeSet<&String> = first.iter().collect();
                    let b: BTreeSet<&String> = envs.iter().collect();
                    if a != b {
                        let mut d = f.src.diag(
                            &ypath!["environments"],
                            At::Key,
                            "`environments` differs from the list in another policy file".into(),
                            Some(
                                "declare the same environments in every file, or in one file only"
                                    .into(),
                            ),
                        );
                        d.note = Some(format!(
                            "first declared at {}:{}",
                            ff.src.display.display(),
                            ff.src.index.key(&ypath!["environments"]).line
                        ));
                        cx.push(d);
                    }
                }
            }
        }
    }
    let env_list: Vec<String> = environments.map(|(e, _)| e).unwrap_or_default();
    let access = access(&mut cx, files);
    let (run_log_keep, run_log_keep_source) = run_log_keep(&mut cx, files);
    // An invalid `environments` (reported) leaves the allowed names unknown;
    // an invalid `datasets` leaves some dataset names unknown. Checking
    // references against them would only repeat that error.
    let envs_known = !files.iter().any(|f| f.environments_invalid);
    let datasets_known = !files.iter().any(|f| f.datasets_invalid);
    let env_check = Envs {
        list: &env_list,
        known: envs_known,
    };

    // Datasets, unique across files.
    let mut found: Vec<Found> = Vec::new();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    let mut tables: BTreeMap<String, (String, &ParsedFile)> = BTreeMap::new();
    for f in files {
        for (name, spec) in &f.datasets {
            let path = ypath!["datasets", name];
            if let Some(&first) = by_name.get(name) {
                let ff = found[first].file;
                let mut d = f.src.diag(&path, At::Key, format!("dataset `{name}` is defined twice"), Some("dataset names are unique across all policy files; rename one or merge them".into()));
                d.note = Some(format!(
                    "first defined at {}:{}",
                    ff.src.display.display(),
                    ff.src.index.key(&path).line
                ));
                cx.push(d);
                continue;
            }
            let model = spec
                .as_ref()
                .and_then(|spec| dataset(&mut cx, f, name, spec, &env_list));
            if let Some(m) = &model {
                for t in [
                    Some(format!("{}.{}", m.schema, m.table)),
                    m.archive
                        .as_ref()
                        .map(|a| format!("{}.{}", a.schema, m.table)),
                ]
                .into_iter()
                .flatten()
                {
                    if let Some((other, of)) = tables.get(&t) {
                        let mut d = f.src.diag(&ypath!["datasets", name, "table"], At::Value, format!("dataset `{name}` uses table `{t}`, which dataset `{other}` already uses"), Some("give each dataset (and each archive) its own table".into()));
                        d.note = Some(format!(
                            "`{other}` is defined at {}:{}",
                            of.src.display.display(),
                            of.src.index.key(&ypath!["datasets", other]).line
                        ));
                        cx.push(d);
                    } else {
                        tables.insert(t, (name.clone(), f));
                    }
                }
            }
            by_name.insert(name.clone(), found.len());
            found.push(Found { file: f, model });
        }
    }
    let all_names: Vec<&str> = by_name.keys().map(String::as_str).collect();
    // The help for an unknown dataset name, by name: a typo tends to repeat.
    let mut help_memo: BTreeMap<String, String> = BTreeMap::new();

    // Overrides.
    let mut overrides: Vec<Override> = Vec::new();
    let mut seen_override: BTreeMap<(String, Option<String>, Option<String>), Source> =
        BTreeMap::new();
    for f in files {
        for (i, o) in &f.overrides {
            let base = ypath!["overrides", *i];
            let what = format!("override #{}", i + 1);
            // A key of this override had an error while parsing (e.g. a
            // tenant of the wrong type): check what is left, but nothing
            // that depends on what it would have said.
            let damaged = f.reported_under(&base);
            if o.tenant.is_none() && o.environment.is_none() && !damaged {
                cx.err(&f.src, &base, At::Key, format!("{what} names neither a tenant nor an environment"), "add `tenant:`, `environment:` or both; to change a dataset's default, edit its `keep`");
                continue;
            }
            if let Some(t) = &o.tenant {
                if !is_value(t) {
                    cx.err(
                        &f.src,
                        &ypath!["overrides", *i, "tenant"],
                        At::Value,
                        format!("{what}: `tenant` is empty, longer than {MAX_VALUE} bytes, or holds a NUL character"),
                        "write the tenant's id, e.g. `tenant: \"bot-42\"`",
                    );
                }
            }
            if let Some(r) = &o.reason {
                let rpath = ypath!["overrides", *i, "reason"];
                if free_text(&mut cx, &f.src, &rpath, &format!("{what}: `reason`"), r)
                    && r.len() > MAX_REASON
                {
                    cx.err(&f.src, &rpath, At::Value, format!("{what}: `reason` is longer than {MAX_REASON} bytes"), "say why in a sentence or two, and point to the document that holds the rest");
                }
            }
            if let Some(e) = &o.environment {
                check_env(
                    &mut cx,
                    &f.src,
                    &ypath!["overrides", *i, "environment"],
                    e,
                    &env_check,
                    &what,
                );
            }
            if o.keep.is_empty() && !f.was_reported(&ypath!["overrides", *i, "keep"]) {
                cx.err(
                    &f.src,
                    &ypath!["overrides", *i, "keep"],
                    At::Key,
                    format!("{what} has an empty `keep`"),
                    "write `keep: { dataset_name: 90 days }`",
                );
            }
            for (ds_name, text) in &o.keep {
                let kpath = ypath!["overrides", *i, "keep", ds_name];
                let Some(&idx) = by_name.get(ds_name) else {
                    if datasets_known {
                        cx.err(
                            &f.src,
                            &kpath,
                            At::Key,
                            format!("{what} names unknown dataset `{ds_name}`"),
                            help_memo
                                .entry(ds_name.clone())
                                .or_insert_with(|| known_datasets_help(ds_name, &all_names)),
                        );
                    }
                    continue;
                };
                let Some(keep) = cx.duration(
                    &f.src,
                    &kpath,
                    text,
                    &format!("{what}: retention for `{ds_name}`"),
                ) else {
                    continue;
                };
                let Some(ds) = &found[idx].model else {
                    continue;
                };
                if damaged {
                    continue;
                }
                if o.tenant.is_some() && ds.tenant.is_none() {
                    cx.err(&f.src, &kpath, At::Key, format!("{what} sets a tenant retention for dataset `{ds_name}`, which has no `tenant` column"), &format!("add `tenant: <column>` to dataset `{ds_name}`, or remove it from this override"));
                    continue;
                }
                if o.environment.is_some() && ds.environment.is_none() {
                    cx.err(&f.src, &kpath, At::Key, format!("{what} sets an environment retention for dataset `{ds_name}`, which has no `environment` column"), &format!("add `environment: <column>` to dataset `{ds_name}`, or remove it from this override"));
                    continue;
                }
                if let Some(msg) = bounds(ds, keep) {
                    cx.err(
                        &f.src,
                        &kpath,
                        At::Value,
                        format!("{what}: retention `{keep}` for `{ds_name}` {msg}"),
                        &bounds_help(ds),
                    );
                    continue;
                }
                let key = (ds_name.clone(), o.tenant.clone(), o.environment.clone());
                let src_here = source(&f.src, &kpath);
                if let Some(first) = seen_override.get(&key) {
                    let mut d = f.src.diag(&kpath, At::Key, format!("{what} conflicts with another override of equal specificity for `{ds_name}`{}{}", o.tenant.as_ref().map(|t| format!(", tenant `{t}`")).unwrap_or_default(), o.environment.as_ref().map(|e| format!(", environment `{e}`")).unwrap_or_default()), Some("keep one override per dataset, tenant and environment".into()));
                    d.note = Some(format!("the other override is at {first}"));
                    cx.push(d);
                    continue;
                }
                seen_override.insert(key, src_here.clone());
                overrides.push(Override {
                    dataset: ds_name.clone(),
                    tenant: o.tenant.clone(),
                    environment: o.environment.clone(),
                    keep,
                    reason: o.reason.clone(),
                    source: src_here,
                });
            }
        }
    }
    overrides.sort_by(|a, b| {
        (a.rank(), &a.dataset, &a.tenant, &a.environment).cmp(&(
            b.rank(),
            &b.dataset,
            &b.tenant,
            &b.environment,
        ))
    });

    // Holds.
    let mut holds: Vec<Hold> = Vec::new();
    for f in files {
        for (i, h) in &f.holds {
            let what = format!("hold #{}", i + 1);
            let mut ok = true;
            if f.was_reported(&ypath!["holds", *i, "reason"]) {
                ok = false;
            } else if h.reason.trim().is_empty() {
                cx.err(
                    &f.src,
                    &ypath!["holds", *i, "reason"],
                    At::Value,
                    format!("{what} has an empty `reason`"),
                    "say why the data is held, e.g. `reason: \"litigation hold 2026-14\"`",
                );
                ok = false;
            } else if !free_text(
                &mut cx,
                &f.src,
                &ypath!["holds", *i, "reason"],
                &format!("{what}: `reason`"),
                &h.reason,
            ) {
                ok = false;
            } else if h.reason.len() > MAX_REASON {
                cx.err(&f.src, &ypath!["holds", *i, "reason"], At::Value, format!("{what}: `reason` is longer than {MAX_REASON} bytes"), "name the case in a sentence, e.g. `reason: \"litigation hold 2026-14\"`, and keep the rest in the case file");
                ok = false;
            }
            if let Some(u) = &h.until {
                if chrono::NaiveDate::parse_from_str(u.trim(), "%Y-%m-%d").is_err() {
                    let shaped = {
                        let b = u.trim().as_bytes();
                        b.len() == 10
                            && b.iter().enumerate().all(|(i, c)| {
                                if i == 4 || i == 7 {
                                    *c == b'-'
                                } else {
                                    c.is_ascii_digit()
                                }
                            })
                    };
                    let why = if shaped {
                        "is not a day of the calendar"
                    } else {
                        "is not a date written `YYYY-MM-DD`"
                    };
                    cx.err(
                        &f.src,
                        &ypath!["holds", *i, "until"],
                        At::Value,
                        format!("{what}: `until` `{u}` {why}"),
                        "write the last day of the hold as `YYYY-MM-DD`, e.g. `until: 2027-06-30`",
                    );
                    ok = false;
                }
            }
            if let Some(t) = &h.tenant {
                if !is_value(t) {
                    cx.err(
                        &f.src,
                        &ypath!["holds", *i, "tenant"],
                        At::Value,
                        format!("{what}: `tenant` is empty, longer than {MAX_VALUE} bytes, or holds a NUL character"),
                        "write the tenant's id, e.g. `tenant: \"bot-7\"`",
                    );
                    ok = false;
                }
            }
            if let Some(e) = &h.environment {
                ok &= check_env(
                    &mut cx,
                    &f.src,
                    &ypath!["holds", *i, "environment"],
                    e,
                    &env_check,
                    &what,
                );
            }
            let applies = |ds: &Dataset| {
                (h.tenant.is_none() || ds.tenant.is_some())
                    && (h.environment.is_none() || ds.environment.is_some())
            };
            let mut datasets = Vec::new();
            match &h.datasets {
                Some(list) => {
                    if list.is_empty() {
                        cx.err(
                            &f.src,
                            &ypath!["holds", *i, "datasets"],
                            At::Value,
                            format!("{what} lists no datasets"),
                            "list the held datasets, or omit `datasets` to hold every dataset",
                        );
                        ok = false;
                    }
                    for (j, n) in list.iter().enumerate() {
                        let p = ypath!["holds", *i, "datasets", j];
                        match by_name.get(n) {
                            None => {
                                if datasets_known {
                                    cx.err(
                                        &f.src,
                                        &p,
                                        At::Value,
                                        format!("{what} names unknown dataset `{n}`"),
                                        help_memo
                                            .entry(n.clone())
                                            .or_insert_with(|| known_datasets_help(n, &all_names)),
                                    );
                                }
                                ok = false;
                            }
                            Some(&idx) => {
                                if let Some(ds) = &found[idx].model {
                                    if !applies(ds) {
                                        cx.err(&f.src, &p, At::Value, format!("{what} holds a tenant or environment of dataset `{n}`, which has no such column"), "remove the dataset from the hold, or declare its `tenant` / `environment` column");
                                        ok = false;
                                    }
                                }
                                if datasets.contains(n) {
                                    cx.err(
                                        &f.src,
                                        &p,
                                        At::Value,
                                        format!("{what} lists dataset `{n}` twice"),
                                        "list each dataset once",
                                    );
                                    ok = false;
                                }
                                datasets.push(n.clone());
                            }
                        }
                    }
                }
                None => {
                    datasets = found
                        .iter()
                        .filter_map(|fd| fd.model.as_ref())
                        .filter(|d| applies(d))
                        .map(|d| d.name.clone())
                        .collect();
                    if datasets.is_empty()
                        && !found.is_empty()
                        && found.iter().all(|fd| fd.model.is_some())
                    {
                        cx.err(&f.src, &ypath!["holds", *i], At::Key, format!("{what} applies to no dataset: none has the tenant / environment column it names"), "declare `tenant:` / `environment:` on the held datasets, or list them under `datasets:`");
                        ok = false;
                    }
                }
            }
            if ok {
                holds.push(Hold {
                    tenant: h.tenant.clone(),
                    environment: h.environment.clone(),
                    datasets,
                    reason: h.reason.clone(),
                    until: h.until.as_ref().map(|u| u.trim().to_string()),
                    source: source(&f.src, &ypath!["holds", *i]),
                });
            }
        }
    }

    // A policy that retains nothing is almost certainly a mistake (a wrong
    // directory, an emptied file): say so rather than compile no rules.
    if found.is_empty() && cx.diags.is_empty() {
        if let Some(f) = files.first() {
            let d = f.src.diag_at(
                super::position::Pos { line: 1, col: 1 },
                "the policy defines no dataset".into(),
                Some("add a `datasets:` section with at least one dataset (see docs/policy-reference.md)".into()),
            );
            cx.push(d);
        }
    }

    let mut file_names: Vec<String> = files
        .iter()
        .map(|f| f.src.display.display().to_string())
        .collect();
    file_names.sort();
    Policy {
        files: file_names,
        environments: env_list,
        datasets: found.into_iter().filter_map(|f| f.model).collect(),
        overrides,
        holds,
        access,
        run_log_keep,
        run_log_keep_source,
    }
}

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
fn access(cx: &mut Ctx, files: &[ParsedFile]) -> Option<Access> {
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
fn run_log_keep(cx: &mut Ctx, files: &[ParsedFile]) -> (Duration, Option<Source>) {
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

/// The declared environments, and whether they could be read.
struct Envs<'a> {
    list: &'a [String],
    known: bool,
}

fn check_env(
    cx: &mut Ctx,
    src: &SourceFile,
    path: &[Seg],
    e: &str,
    envs: &Envs,
    what: &str,
) -> bool {
    if !envs.known {
        return false;
    }
    let envs = envs.list;
    if envs.iter().any(|x| x == e) {
        return true;
    }
    let help = if envs.is_empty() {
        "declare the environments first, e.g. `environments: [draft, live]`, then name one of them"
            .to_string()
    } else {
        let list: Vec<&str> = envs.iter().map(String::as_str).collect();
        format!(
            "use one of the declared environments: {}",
            choices(e, &list)
        )
    };
    cx.err(
        src,
        path,
        At::Value,
        format!("{what} names unknown environment `{e}`"),
        &help,
    );
    false
}

/// "name a dataset defined in the policy: `a`, `b`; did you mean `a`?"
fn known_datasets_help(name: &str, all: &[&str]) -> String {
    if all.is_empty() {
        return "define the dataset under `datasets:` first; the policy defines none".into();
    }
    format!(
        "name a dataset defined in the policy: {}",
        choices(name, all)
    )
}

/// "`a`, `b`; did you mean `a`?" (no question when there is one choice).
fn choices(word: &str, names: &[&str]) -> String {
    const SHOWN: usize = 12;
    let mut listed = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        listed.push_str(&format!(", … ({} in all)", names.len()));
    }
    if names.len() > 1 {
        format!("{listed}{}", suggest(word, names))
    } else {
        listed
    }
}

/// `Some(why)` when `keep` lies outside the dataset's [min_keep, max_keep]
/// for some row: bounds are compared as PostgreSQL applies intervals to a
/// row's time (`Fields::at_least`), so `1 month` is below a `min_keep` of
/// `30 days` (February rows), as the database's check of tenant settings
/// agrees.
fn bounds(ds: &Dataset, keep: Duration) -> Option<String> {
    // "for some rows" when it depends on the row's month (`1 month` against
    // `30 days`); plainly below or above otherwise.
    let some = |always: bool| {
        if always {
            ""
        } else {
            " for some rows (months last 28 to 31 days)"
        }
    };
    if let Some(min) = ds.min_keep {
        if !keep.fields().at_least(&min.fields()) {
            let always = min.fields().at_least(&keep.fields());
            return Some(format!("is below `min_keep` ({min}){}", some(always)));
        }
    }
    if let Some(max) = ds.max_keep {
        if !max.fields().at_least(&keep.fields()) {
            let always = keep.fields().at_least(&max.fields());
            return Some(format!("is above `max_keep` ({max}){}", some(always)));
        }
    }
    None
}

fn bounds_help(ds: &Dataset) -> String {
    let range = match (ds.min_keep, ds.max_keep) {
        (Some(a), Some(b)) => format!("between {a} and {b}"),
        (Some(a), None) => format!("at least {a}"),
        (None, Some(b)) => format!("at most {b}"),
        (None, None) => String::new(),
    };
    format!("choose a retention {range} for dataset `{}`, or widen its bounds (a retention in months and a bound in days compare for the shortest and longest months: write both in the same unit)", ds.name)
}

/// Validate one dataset; `None` when it has errors (already reported).
fn dataset(
    cx: &mut Ctx,
    f: &ParsedFile,
    name: &str,
    s: &DatasetSpec,
    envs: &[String],
) -> Option<Dataset> {
    let src = &f.src;
    let p = |k: &str| ypath!["datasets", name, k];
    let before = cx.diags.len();
    let what = format!("dataset `{name}`");

    let name_ok = name.len() <= MAX_DATASET_NAME
        && matches!(name.chars().next(), Some('a'..='z'))
        && name
            .chars()
            .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'));
    if !name_ok {
        let mut example: String = name
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(MAX_DATASET_NAME)
            .collect();
        if !matches!(example.chars().next(), Some('a'..='z')) {
            example = "conversations".into();
        }
        let why = if name.len() > MAX_DATASET_NAME {
            format!("is longer than {MAX_DATASET_NAME} characters")
        } else {
            "is not lowercase letters, digits and `_` starting with a letter".into()
        };
        cx.err(
            src,
            &ypath!["datasets", name],
            At::Key,
            format!("dataset name `{name}` {why}"),
            &format!(
                "use `[a-z][a-z0-9_]*`, at most {MAX_DATASET_NAME} characters, e.g. `{example}`"
            ),
        );
    }
    // Keys whose error was reported while parsing (missing, wrong type).
    let reported = |k: &str| f.was_reported(&p(k));
    if s.description.trim().is_empty() && !reported("description") {
        cx.err(
            src,
            &p("description"),
            At::Value,
            format!("{what} has an empty `description`"),
            "say in a sentence what the data is; reports show it to auditors",
        );
    }
    for (key, text) in [
        ("description", Some(&s.description)),
        ("owner", s.owner.as_ref()),
        ("legal_basis", s.legal_basis.as_ref()),
    ] {
        if let Some(text) = text {
            free_text(cx, src, &p(key), &format!("{what}: `{key}`"), text);
        }
    }

    // Table.
    let (schema, table) = match s.table.split_once('.') {
        _ if reported("table") => (String::new(), String::new()),
        None if is_ident(&s.table) => {
            cx.err(
                src,
                &p("table"),
                At::Value,
                format!("{what}: `table` `{}` names no schema", s.table),
                &format!(
                    "write `schema.table`, e.g. `app.{}`; pgretain never relies on the search path",
                    s.table
                ),
            );
            (String::new(), String::new())
        }
        Some((a, b)) if is_ident(a) && is_ident(b) => {
            if RESERVED_SCHEMAS.contains(&a) || a.starts_with("pg_") {
                cx.err(
                    src,
                    &p("table"),
                    At::Value,
                    format!("{what}: schema `{a}` is reserved"),
                    "put the table in an application schema, e.g. `app.conversations`",
                );
            }
            // pgretain names the table's partitions `<table>_pYYYYMMDD` and
            // `<table>_default`: keep those within PostgreSQL's 63-byte
            // identifiers, and never let a table look like another's partition.
            if b.len() > MAX_TABLE_NAME {
                cx.err(
                    src,
                    &p("table"),
                    At::Value,
                    format!("{what}: table name `{b}` is longer than {MAX_TABLE_NAME} characters"),
                    "shorten it: pgretain adds `_pYYYYMMDD` and `_default` for partition names, which PostgreSQL limits to 63 bytes",
                );
            } else if looks_like_partition(b) {
                cx.err(
                    src,
                    &p("table"),
                    At::Value,
                    format!("{what}: table name `{b}` looks like the name of a pgretain partition"),
                    "choose a name that does not end in `_default` or `_p` followed by eight digits",
                );
            }
            (a.to_string(), b.to_string())
        }
        _ => {
            cx.err(
                src,
                &p("table"),
                At::Value,
                format!(
                    "{what}: `table` `{}` is not a schema-qualified SQL identifier",
                    s.table
                ),
                &format!("write `schema.table`, e.g. `app.{name}`; {IDENT_HELP}"),
            );
            (String::new(), String::new())
        }
    };

    // Columns.
    let mut columns: Option<Vec<Column>> = None;
    if let Some(cols) = &s.columns {
        let mut out = Vec::new();
        if cols.is_empty() {
            cx.err(
                src,
                &p("columns"),
                At::Key,
                format!("{what} has an empty `columns`"),
                "list the table's columns, or omit `columns` to use an existing table",
            );
        }
        for (cname, def) in cols {
            let cpath = ypath!["datasets", name, "columns", cname];
            if !is_ident(cname) {
                cx.err(
                    src,
                    &cpath,
                    At::Key,
                    format!("{what}: column name `{cname}` is not a valid SQL identifier"),
                    IDENT_HELP,
                );
                continue;
            }
            if cname == STAMP_COLUMN {
                cx.err(src, &cpath, At::Key, format!("{what}: column name `{STAMP_COLUMN}` is reserved for pgretain's retention stamp"), "rename the column");
                continue;
            }
            if ARCHIVE_COLUMNS.contains(&cname.as_str()) && s.on_expiry == Some(OnExpiry::Archive) {
                cx.err(src, &cpath, At::Key, format!("{what}: column name `{cname}` is reserved: the archive table adds it to every archived row"), "rename the column");
                continue;
            }
            match columns::parse(def) {
                Ok(ty) => out.push(Column {
                    name: cname.clone(),
                    ty,
                }),
                Err(why) => cx.err(
                    src,
                    &cpath,
                    At::Value,
                    format!("{what}: column `{cname}` definition `{def}` {why}"),
                    COLUMN_HELP,
                ),
            }
        }
        columns = Some(out);
    }
    let declared: Vec<&str> = s
        .columns
        .as_ref()
        .map(|c| c.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let col_type = |c: &str| {
        columns
            .as_ref()
            .and_then(|cs| cs.iter().find(|x| x.name == c))
            .map(|x| x.ty.clone())
    };
    let check_col = |cx: &mut Ctx, key: &str, col: &str| -> bool {
        if !is_ident(col) {
            cx.err(
                src,
                &p(key),
                At::Value,
                format!("{what}: `{key}` `{col}` is not a valid SQL identifier"),
                IDENT_HELP,
            );
            return false;
        }
        // (An empty `columns` is reported once, not once per column named.)
        if s.columns.is_some() && !declared.is_empty() && !declared.contains(&col) {
            cx.err(
                src,
                &p(key),
                At::Value,
                format!("{what}: `{key}` names column `{col}`, which is not in `columns`"),
                &format!(
                    "name one of the declared columns: {}",
                    choices(col, &declared)
                ),
            );
            return false;
        }
        true
    };
    let mut time_ok = !reported("time") && check_col(cx, "time", &s.time);
    if time_ok {
        if let Some(ty) = col_type(&s.time) {
            time_ok = ty.is_timestamptz() && ty.not_null;
            if !ty.is_timestamptz() {
                let why = if ty.is_temporal() {
                    format!("is `{}`, not `timestamptz`", ty.sql_type)
                } else {
                    format!("is `{}`, not a timestamp", ty.sql_type)
                };
                cx.err(src, &p("time"), At::Value, format!("{what}: the time column `{}` {why}", s.time), "the retention clock must be a `timestamptz` column (an instant), e.g. `created_at: timestamptz not null default now()`");
            } else if !ty.not_null {
                cx.err(src, &p("time"), At::Value, format!("{what}: the time column `{}` may be null, and a row without a time never expires", s.time), &format!("declare it `not null`, e.g. `{}: timestamptz not null default now()`", s.time));
            }
        }
    }
    for (key, val) in [
        ("tenant", &s.tenant),
        ("environment", &s.environment),
        ("erase_by", &s.erase_by),
    ] {
        if let Some(col) = val {
            if check_col(cx, key, col) && time_ok && col == &s.time {
                let holds = match key {
                    "tenant" => "the tenant (e.g. `bot_id`)",
                    "environment" => "the environment (e.g. `environment`)",
                    _ => "the key `pgretain erase` removes rows by (e.g. `conversation_id`)",
                };
                cx.err(
                    src,
                    &p(key),
                    At::Value,
                    format!("{what}: `{key}` names the time column `{col}`"),
                    &format!("name the column that holds {holds}"),
                );
            }
        }
    }
    if s.environment.is_some() && envs.is_empty() {
        // Allowed: without a declared list, any environment value is stored,
        // but overrides and holds cannot name environments.
    }

    // Retention.
    let keep = if reported("keep") {
        None
    } else {
        cx.duration(src, &p("keep"), &s.keep, &format!("{what}: `keep`"))
    };
    let min_keep = s
        .min_keep
        .as_ref()
        .and_then(|t| cx.duration(src, &p("min_keep"), t, &format!("{what}: `min_keep`")));
    let max_keep = s
        .max_keep
        .as_ref()
        .and_then(|t| cx.duration(src, &p("max_keep"), t, &format!("{what}: `max_keep`")));
    if let (Some(a), Some(b)) = (min_keep, max_keep) {
        if !b.fields().at_least(&a.fields()) {
            cx.err(
                src,
                &p("min_keep"),
                At::Value,
                format!(
                    "{what}: `min_keep` ({a}) is above `max_keep` ({b}){}",
                    if a.fields().at_least(&b.fields()) {
                        ""
                    } else {
                        " for some rows (months last 28 to 31 days)"
                    }
                ),
                "make `min_keep` at most `max_keep`",
            );
        }
    }
    if (s.min_keep.is_some() || s.max_keep.is_some())
        && s.tenant.is_none()
        && s.environment.is_none()
        && !reported("tenant")
        && !reported("environment")
    {
        cx.err(src, &p(if s.min_keep.is_some() { "min_keep" } else { "max_keep" }), At::Key, format!("{what} sets bounds but has neither a `tenant` nor an `environment` column, so nothing can vary its retention"), "declare `tenant:` (for per-tenant settings) or remove `min_keep` / `max_keep`");
    }
    let bounds_ok =
        !matches!((min_keep, max_keep), (Some(a), Some(b)) if !b.fields().at_least(&a.fields()));
    if let (Some(k), true) = (keep, bounds_ok) {
        let tmp = Dataset {
            min_keep,
            max_keep,
            ..placeholder(name)
        };
        if let Some(msg) = bounds(&tmp, k) {
            cx.err(
                src,
                &p("keep"),
                At::Value,
                format!("{what}: `keep` ({k}) {msg}"),
                &bounds_help(&tmp),
            );
        }
    }

    // Expiry.
    let on_expiry = s.on_expiry.unwrap_or(OnExpiry::Delete);
    let archive = match (&s.archive, on_expiry) {
        // One of the two had an error already: their pairing is unknown.
        _ if reported("on_expiry") || reported("archive") => None,
        (Some(_), OnExpiry::Delete) => {
            cx.err(
                src,
                &p("archive"),
                At::Key,
                format!("{what} has `archive` settings but does not archive"),
                "add `on_expiry: archive`, or remove `archive`",
            );
            None
        }
        (None, OnExpiry::Archive) => {
            cx.err(
                src,
                &p("on_expiry"),
                At::Value,
                format!("{what} archives but says nothing of how long the archive keeps rows"),
                "add `archive: { schema: archive, keep: 1 year }`",
            );
            None
        }
        (Some(a), OnExpiry::Archive) => {
            let apath = ypath!["datasets", name, "archive", "schema"];
            let schema_name = a.schema.clone().unwrap_or_else(|| "archive".into());
            if !is_ident(&schema_name)
                || RESERVED_SCHEMAS.contains(&schema_name.as_str())
                || schema_name.starts_with("pg_")
            {
                cx.err(src, &apath, At::Value, format!("{what}: archive schema `{schema_name}` is not a valid, unreserved SQL identifier"), IDENT_HELP);
            } else if schema_name == schema {
                cx.err(
                    src,
                    &apath,
                    At::Value,
                    format!("{what}: the archive schema is the table's own schema `{schema}`"),
                    "use a separate schema for archives, e.g. `archive`",
                );
            }
            let akeep = cx.duration(
                src,
                &ypath!["datasets", name, "archive", "keep"],
                &a.keep,
                &format!("{what}: `archive.keep`"),
            );
            akeep.map(|k| Archive {
                schema: schema_name,
                keep: k,
            })
        }
        (None, OnExpiry::Delete) => None,
    };

    // Sensitive keys.
    let mut sensitive = Vec::new();
    if let Some(map) = &s.sensitive {
        for (col, keys) in map {
            let spath = ypath!["datasets", name, "sensitive", col];
            if !is_ident(col) {
                cx.err(
                    src,
                    &spath,
                    At::Key,
                    format!("{what}: sensitive column `{col}` is not a valid SQL identifier"),
                    IDENT_HELP,
                );
                continue;
            }
            if s.columns.is_some() && !declared.is_empty() && !declared.contains(&col.as_str()) {
                cx.err(
                    src,
                    &spath,
                    At::Key,
                    format!("{what}: sensitive column `{col}` is not in `columns`"),
                    &{
                        let json: Vec<&str> = columns
                            .iter()
                            .flatten()
                            .filter(|c| c.ty.is_json())
                            .map(|c| c.name.as_str())
                            .collect();
                        if json.is_empty() {
                            "name a declared json or jsonb column; this dataset declares none"
                                .to_string()
                        } else {
                            format!(
                                "name a declared json or jsonb column: {}",
                                choices(col, &json)
                            )
                        }
                    },
                );
                continue;
            }
            if let Some(ty) = col_type(col) {
                if !ty.is_json() {
                    cx.err(src, &spath, At::Key, format!("{what}: sensitive column `{col}` is `{}`; only json and jsonb keys can be stripped", ty.sql_type), "make the column `jsonb`, or remove it from `sensitive`");
                    continue;
                }
            }
            if keys.is_empty() {
                cx.err(
                    src,
                    &spath,
                    At::Value,
                    format!("{what}: sensitive column `{col}` lists no keys"),
                    "list the JSON keys never to store, e.g. `[password, iban]`",
                );
            }
            for (j, k) in keys.iter().enumerate() {
                if k.is_empty() || k.contains('\0') {
                    cx.err(
                        src,
                        &ypath!["datasets", name, "sensitive", col, j],
                        At::Value,
                        format!("{what}: sensitive key #{} of `{col}` is empty or holds a NUL character", j + 1),
                        "write the JSON key's name, e.g. `password`",
                    );
                }
            }
            sensitive.push((col.clone(), keys.clone()));
        }
    }

    let mut lock_timeout_ms = crate::model::default_lock_timeout_ms();
    if let Some(text) = &s.lock_timeout {
        match lock_timeout(text) {
            Some(ms) => lock_timeout_ms = ms,
            None => cx.err(
                src,
                &p("lock_timeout"),
                At::Value,
                format!("{what}: `lock_timeout` `{}` is not a lock timeout between 1 millisecond and 10 minutes", text.trim()),
                "write a whole number of milliseconds or seconds, e.g. `5 seconds` or `500 milliseconds`",
            ),
        }
    }

    if cx.diags.len() > before || f.reported_under(&ypath!["datasets", name]) {
        return None;
    }
    let keep = keep?;
    let partition = s.partition.unwrap_or(Granularity::default_for(keep));
    Some(Dataset {
        name: name.to_string(),
        description: s.description.clone(),
        owner: s.owner.clone(),
        legal_basis: s.legal_basis.clone(),
        schema,
        table,
        columns,
        time: s.time.clone(),
        tenant: s.tenant.clone(),
        environment: s.environment.clone(),
        keep,
        min_keep,
        max_keep,
        partition,
        on_expiry,
        archive,
        sliding: s.sliding.unwrap_or(false),
        changes_apply_to: s.changes_apply_to.unwrap_or(ChangesApplyTo::AllRows),
        erase_by: s.erase_by.clone(),
        sensitive,
        schedule: f
            .schedule
            .clone()
            .unwrap_or_else(|| cron::DEFAULT_SCHEDULE.to_string())
            .trim()
            .to_string(),
        source: source(src, &ypath!["datasets", name]),
        keep_source: source(src, &p("keep")),
        lock_timeout_ms,
    })
}

/// `5 seconds`, `500 ms` → milliseconds, within 1 ms ..= 10 minutes.
fn lock_timeout(text: &str) -> Option<u32> {
    let mut parts = text.split_whitespace();
    let (Some(num), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let n: u64 = num.parse().ok()?;
    let ms = match unit.to_ascii_lowercase().as_str() {
        "millisecond" | "milliseconds" | "ms" => n,
        "second" | "seconds" | "s" => n.checked_mul(1000)?,
        _ => return None,
    };
    (1..=600_000).contains(&ms).then_some(ms as u32)
}

/// A dataset with nothing set, for bounds checks before the real one exists.
fn placeholder(name: &str) -> Dataset {
    Dataset {
        name: name.to_string(),
        description: String::new(),
        owner: None,
        legal_basis: None,
        schema: String::new(),
        table: String::new(),
        columns: None,
        time: String::new(),
        tenant: None,
        environment: None,
        keep: Duration {
            n: 1,
            unit: crate::model::Unit::Day,
        },
        min_keep: None,
        max_keep: None,
        partition: Granularity::Day,
        on_expiry: OnExpiry::Delete,
        archive: None,
        sliding: false,
        changes_apply_to: ChangesApplyTo::AllRows,
        erase_by: None,
        sensitive: Vec::new(),
        schedule: String::new(),
        lock_timeout_ms: crate::model::default_lock_timeout_ms(),
        source: Source {
            file: String::new(),
            line: 0,
        },
        keep_source: Source {
            file: String::new(),
            line: 0,
        },
    }
}

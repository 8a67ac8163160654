//! Semantic validation: the parsed files as one policy, checked as a whole
//! (SPEC §2 "Errors"), resolved into `model::Policy` with every default
//! filled in. Every problem is reported at the offending key; nothing stops
//! at the first error. No I/O here.
//!
//! Here: the file-level keys, the datasets' names, overrides and holds, and
//! the helpers every check shares. One dataset's own keys are checked in
//! `dataset`; `access` and `run_log_keep` in `settings`; `subjects` in
//! `subjects`.

mod dataset;
mod settings;
mod subjects;

use std::collections::{BTreeMap, BTreeSet};

use super::cron;
use super::duration::{self, DURATION_HELP};
use super::position::Seg;
use super::{suggest, At, ParsedFile, SourceFile};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::{Dataset, Duration, Engine, Hold, Override, Policy, Source};
use crate::ypath;
use dataset::{bounds, bounds_help, dataset};
use settings::{access, engine, run_log_keep};

pub(super) fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && s.len() <= 63
}

pub(super) const IDENT_HELP: &str = "use lowercase letters, digits and `_`, starting with a letter or `_`, at most 63 characters (pgretain quotes every identifier, but refuses names that would need quoting)";

/// A value compared with data at run time (tenant, environment): free text
/// (SPEC §2), so anything PostgreSQL text can hold, which is every character
/// but NUL; not empty, and short enough for the settings tables' indexes.
/// Quoting makes it data wherever it appears.
pub(super) fn is_value(s: &str) -> bool {
    !s.is_empty() && !s.contains('\0') && s.len() <= MAX_VALUE
}

/// Longest tenant or environment value, in bytes.
pub(super) const MAX_VALUE: usize = 200;

/// Longest reason (of a hold or override), in bytes: it is part of a unique
/// key of `retention.hold`, and a btree entry must fit in a page.
pub(super) const MAX_REASON: usize = 1000;

/// Free text (a description, owner, legal basis, reason) may contain
/// anything, newlines, quotes and SQL included: it is rendered as data. Only
/// NUL cannot be stored in PostgreSQL text. Reports it and returns false when
/// `text` holds one.
pub(super) fn free_text(
    cx: &mut Ctx,
    src: &SourceFile,
    path: &[Seg],
    what: &str,
    text: &str,
) -> bool {
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

pub(super) struct Ctx<'a> {
    diags: &'a mut Diagnostics,
}

impl Ctx<'_> {
    pub(super) fn err(&mut self, src: &SourceFile, path: &[Seg], at: At, msg: String, help: &str) {
        let d = src.diag(path, at, msg, (!help.is_empty()).then(|| help.to_string()));
        self.diags.push(d);
    }
    pub(super) fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    pub(super) fn duration(
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

pub(super) fn source(src: &SourceFile, path: &[Seg]) -> Source {
    Source {
        file: src.display.display().to_string(),
        line: src.index.key(path).line,
    }
}

/// A dataset as far as it validated, with where it came from.
pub(super) struct Found<'a> {
    file: &'a ParsedFile,
    model: Option<Dataset>,
}

pub(crate) fn validate(files: &[ParsedFile], diags: &mut Diagnostics) -> Policy {
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
    let engine = engine(&mut cx, files);
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
    if engine == Engine::Citus {
        for f in &found {
            if let Some(m) = &f.model {
                citus_dataset(&mut cx, f.file, m);
            }
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

    // Subjects: over the datasets, as far as they validated.
    let by_model: BTreeMap<String, Option<&Dataset>> = by_name
        .iter()
        .map(|(n, &i)| (n.clone(), found[i].model.as_ref()))
        .collect();
    let subjects = subjects::subjects(&mut cx, files, &by_model, datasets_known);

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
        subjects,
        engine,
    }
}

/// What a Citus cluster would refuse of a dataset, said by `check` rather
/// than by `apply` (SPEC §3 "Citus"): the tenant is the distribution
/// column, so every dataset needs one and it cannot hold NULL; and tables
/// are created distributed, so an existing table is not taken over.
fn citus_dataset(cx: &mut Ctx, f: &ParsedFile, m: &Dataset) {
    let path = ypath!["datasets", &m.name];
    let Some(tenant) = &m.tenant else {
        cx.err(
            &f.src,
            &path,
            At::Key,
            format!(
                "dataset `{}` has no `tenant`; with `engine: citus` every dataset is distributed by its tenant column",
                m.name
            ),
            "declare `tenant:` (the column rows are sharded by, e.g. `bot_id`), or set `engine: postgresql`",
        );
        return;
    };
    let Some(columns) = &m.columns else {
        cx.err(
            &f.src,
            &ypath!["datasets", &m.name, "table"],
            At::Value,
            format!(
                "dataset `{}` names an existing table; with `engine: citus` pgretain creates the distributed tables itself and does not take over existing ones",
                m.name
            ),
            "declare the table's `columns` so that pgretain creates it distributed, or keep this dataset on `engine: postgresql`",
        );
        return;
    };
    if let Some(c) = columns.iter().find(|c| &c.name == tenant) {
        if !c.ty.not_null && c.ty.identity.is_none() {
            cx.err(
                &f.src,
                &ypath!["datasets", &m.name, "columns", tenant],
                At::Value,
                format!(
                    "tenant column `{tenant}` of dataset `{}` may be NULL; Citus refuses a row whose distribution column is NULL",
                    m.name
                ),
                "add `not null` to the column's definition",
            );
        }
    }
}

/// The declared environments, and whether they could be read.
pub(super) struct Envs<'a> {
    list: &'a [String],
    known: bool,
}

pub(super) fn check_env(
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
pub(super) fn known_datasets_help(name: &str, all: &[&str]) -> String {
    if all.is_empty() {
        return "define the dataset under `datasets:` first; the policy defines none".into();
    }
    format!(
        "name a dataset defined in the policy: {}",
        choices(name, all)
    )
}

/// "`a`, `b`; did you mean `a`?" (no question when there is one choice).
pub(super) fn choices(word: &str, names: &[&str]) -> String {
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

//! `subjects`: erasure across datasets by one key. A subject's name follows
//! the dataset names' rule and is unique across files; it names at least
//! one dataset, each defined in the policy, with a column of that dataset's
//! `columns`. No I/O here.

use std::collections::BTreeMap;

use crate::model::{Dataset, Subject};
use crate::policy::{At, ParsedFile};
use crate::ypath;

use super::dataset::MAX_DATASET_NAME;
use super::{choices, is_ident, known_datasets_help, source, Ctx, IDENT_HELP};

/// Whether `name` may name a subject: the rule of dataset names.
fn name_ok(name: &str) -> bool {
    name.len() <= MAX_DATASET_NAME
        && matches!(name.chars().next(), Some('a'..='z'))
        && name
            .chars()
            .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// The subjects of every file, checked against the datasets that validated
/// (`datasets`: by name; `None` for a dataset whose errors were reported).
/// `datasets_known`: every dataset name could be read, so an unknown one is
/// an error (otherwise it would only repeat an error already reported).
pub(super) fn subjects(
    cx: &mut Ctx,
    files: &[ParsedFile],
    datasets: &BTreeMap<String, Option<&Dataset>>,
    datasets_known: bool,
) -> Vec<Subject> {
    let all_names: Vec<&str> = datasets.keys().map(String::as_str).collect();
    let mut out: Vec<Subject> = Vec::new();
    let mut first_at: BTreeMap<&str, &ParsedFile> = BTreeMap::new();
    for f in files {
        for (name, spec) in &f.subjects {
            let spath = ypath!["subjects", name];
            let what = format!("subject `{name}`");
            if let Some(ff) = first_at.get(name.as_str()) {
                let mut d = f.src.diag(
                    &spath,
                    At::Key,
                    format!("{what} is defined twice"),
                    Some("subject names are unique across all policy files; rename one or merge them".into()),
                );
                d.note = Some(format!(
                    "first defined at {}:{}",
                    ff.src.display.display(),
                    ff.src.index.key(&spath).line
                ));
                cx.push(d);
                continue;
            }
            first_at.insert(name, f);
            let mut ok = true;
            if !name_ok(name) {
                let why = if name.len() > MAX_DATASET_NAME {
                    format!("is longer than {MAX_DATASET_NAME} characters")
                } else {
                    "is not lowercase letters, digits and `_` starting with a letter".into()
                };
                let mut example: String = name
                    .to_lowercase()
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .take(MAX_DATASET_NAME)
                    .collect();
                if !matches!(example.chars().next(), Some('a'..='z')) {
                    example = "conversation".into();
                }
                cx.err(
                    &f.src,
                    &spath,
                    At::Key,
                    format!("subject name `{name}` {why}"),
                    &format!(
                        "use `[a-z][a-z0-9_]*`, at most {MAX_DATASET_NAME} characters, e.g. `{example}`"
                    ),
                );
                ok = false;
            }
            if spec.is_empty() && !f.reported_under(&spath) {
                cx.err(
                    &f.src,
                    &spath,
                    At::Value,
                    format!("{what} names no dataset"),
                    &format!("map each dataset holding the subject's key to its column, e.g. `{name}: {{ conversations: conversation_id }}`"),
                );
                ok = false;
            }
            let mut pairs = Vec::new();
            for (ds_name, column) in spec {
                let dpath = ypath!["subjects", name, ds_name];
                let Some(found) = datasets.get(ds_name) else {
                    if datasets_known {
                        cx.err(
                            &f.src,
                            &dpath,
                            At::Key,
                            format!("{what} names unknown dataset `{ds_name}`"),
                            &known_datasets_help(ds_name, &all_names),
                        );
                    }
                    ok = false;
                    continue;
                };
                if !is_ident(column) {
                    cx.err(
                        &f.src,
                        &dpath,
                        At::Value,
                        format!("{what}: column `{column}` of dataset `{ds_name}` is not a valid SQL identifier"),
                        IDENT_HELP,
                    );
                    ok = false;
                    continue;
                }
                let Some(ds) = found else {
                    // The dataset's own errors were reported; its columns
                    // are not known for sure.
                    ok = false;
                    continue;
                };
                if let Some(cols) = &ds.columns {
                    if !cols.iter().any(|c| &c.name == column) {
                        let declared: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
                        cx.err(
                            &f.src,
                            &dpath,
                            At::Value,
                            format!("{what} names column `{column}` of dataset `{ds_name}`, which is not in its `columns`"),
                            &format!(
                                "name the column of `{ds_name}` that holds the subject's key: {}",
                                choices(column, &declared)
                            ),
                        );
                        ok = false;
                        continue;
                    }
                }
                pairs.push((ds_name.clone(), column.clone()));
            }
            if ok {
                out.push(Subject {
                    name: name.clone(),
                    datasets: pairs,
                    source: source(&f.src, &spath),
                });
            }
        }
    }
    out
}

//! Reading one policy file: its bytes as UTF-8 YAML, refused before parsing
//! when absurdly nested, parsed by serde_yaml piece by piece so that one bad
//! dataset does not hide the errors of the next, with every structural
//! error (syntax, types, unknown and missing keys) reported at its key.

use std::path::Path;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::messages::{and_list, describe_serde_error, list, scalar_text, value_kind, yaml_error};
use super::position::{Pos, PositionIndex, Seg};
use super::spec::{DatasetSpec, HoldSpec, OverrideSpec, SubjectSpec};
use super::{suggest, whole, At, ParsedFile, SourceFile, TOP_LEVEL_KEYS};
use crate::diagnostic::Diagnostics;

/// Deeper nesting than this is refused before parsing.
const MAX_NESTING: usize = 200;

/// Where `text` first nests deeper than `MAX_NESTING` levels, by a cheap
/// over-estimate: open `[` / `{` outside quotes and comments, plus the
/// number of indentation levels open. Real policies nest a handful.
fn too_deep(text: &str) -> Option<Pos> {
    let mut flow: usize = 0;
    let mut indents: Vec<usize> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let body = line.trim_start_matches(' ');
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = line.len() - body.len();
        if flow == 0 {
            while indents.last().is_some_and(|&top| top > indent) {
                indents.pop();
            }
            if indents.last().is_none_or(|&top| top < indent) {
                indents.push(indent);
            }
        }
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for (col, c) in line.chars().enumerate() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '#') if prev == ' ' => break,
                (None, '"' | '\'') if matches!(prev, ' ' | '[' | '{' | ',' | ':') => {
                    quote = Some(c)
                }
                (None, '[' | '{') => {
                    flow += 1;
                    if flow + indents.len() > MAX_NESTING {
                        return Some(Pos {
                            line: i + 1,
                            col: col + 1,
                        });
                    }
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
            prev = c;
        }
        if flow + indents.len() > MAX_NESTING {
            return Some(Pos {
                line: i + 1,
                col: indent + 1,
            });
        }
    }
    None
}

/// Parse one file into its parts, reporting every structural error found.
pub(super) fn parse_file(path: &Path, diags: &mut Diagnostics) -> Option<ParsedFile> {
    let text = match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            // A byte-order mark is not part of the YAML.
            Ok(t) => match t.strip_prefix('\u{feff}') {
                Some(rest) => rest.to_string(),
                None => t,
            },
            Err(e) => {
                let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let good = std::str::from_utf8(good).unwrap_or_default();
                let line = good.matches('\n').count() + 1;
                let col = good.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                let mut d = whole(
                    path,
                    "the file is not valid UTF-8".into(),
                    "save the policy file as UTF-8",
                );
                d.line = line;
                d.col = col;
                diags.push(d);
                return None;
            }
        },
        Err(e) => {
            diags.push(whole(
                path,
                format!("cannot read the file: {e}"),
                "check the file's permissions",
            ));
            return None;
        }
    };
    parse_text(path, &text, diags)
}

/// Parse the text of one file (`path` names it in diagnostics).
pub(super) fn parse_text(path: &Path, text: &str, diags: &mut Diagnostics) -> Option<ParsedFile> {
    if let Some(pos) = too_deep(text) {
        // Both YAML parsers take quadratic time on absurd nesting; refuse
        // it before parsing (deserializing fails beyond 128 levels anyway).
        let src = SourceFile {
            display: path.to_path_buf(),
            lines: text.lines().map(str::to_string).collect(),
            index: PositionIndex::default(),
        };
        let mut d = src.diag_at(
            pos,
            format!("invalid YAML: nested more than {MAX_NESTING} levels deep"),
            Some("a policy nests only a few levels (datasets → name → columns); look for unclosed `[` or `{`, or runaway indentation".into()),
        );
        d.span = 1;
        diags.push(d);
        return None;
    }
    let src = SourceFile::new(path.to_path_buf(), text);
    let root: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            diags.push(yaml_error(&src, &e));
            return None;
        }
    };
    let mut file = ParsedFile {
        src,
        version: None,
        schedule: None,
        environments: None,
        datasets: Vec::new(),
        overrides: Vec::new(),
        holds: Vec::new(),
        access: None,
        run_log_keep: None,
        engine: None,
        subjects: Vec::new(),
        environments_invalid: false,
        datasets_invalid: false,
        reported: Vec::new(),
    };
    let top = match root {
        Value::Mapping(top) => top,
        Value::Null => {
            diags.push(file.src.diag_at(
                Pos { line: 1, col: 1 },
                "the policy file is empty".into(),
                Some("start the file with `version: 1`, then `datasets:`; or delete it".into()),
            ));
            return None;
        }
        other => {
            diags.push(file.src.diag_at(
                Pos { line: 1, col: 1 },
                format!(
                    "a policy file must be a mapping with `version: 1` and `datasets:`, not {}",
                    value_kind(&other)
                ),
                Some("start the file with `version: 1`".into()),
            ));
            return None;
        }
    };
    let mut saw_version = false;
    for (key, value) in top {
        let Some(key) = key.as_str().map(str::to_string) else {
            diags.push(file.src.diag(
                &[Seg::Key(scalar_text(&key))],
                At::Key,
                format!("a top-level key is not text: {}", value_kind(&key)),
                Some(format!("use only the keys {}", list(TOP_LEVEL_KEYS))),
            ));
            continue;
        };
        let path = vec![Seg::Key(key.clone())];
        match key.as_str() {
            "version" => {
                saw_version = true;
                if let Some(v) = de::<u32>(
                    &file.src,
                    value,
                    &path,
                    "`version`",
                    diags,
                    &mut file.reported,
                ) {
                    file.version = Some(v);
                }
            }
            "schedule" => {
                file.schedule = de(
                    &file.src,
                    value,
                    &path,
                    "`schedule`",
                    diags,
                    &mut file.reported,
                )
            }
            "access" => {
                file.access = de(
                    &file.src,
                    value,
                    &path,
                    "`access`",
                    diags,
                    &mut file.reported,
                )
            }
            "engine" => {
                file.engine = de(
                    &file.src,
                    value,
                    &path,
                    "`engine`",
                    diags,
                    &mut file.reported,
                )
            }
            "run_log_keep" => {
                file.run_log_keep = de(
                    &file.src,
                    value,
                    &path,
                    "`run_log_keep`",
                    diags,
                    &mut file.reported,
                )
            }
            "environments" => {
                file.environments = de(
                    &file.src,
                    value,
                    &path,
                    "`environments`",
                    diags,
                    &mut file.reported,
                );
                file.environments_invalid = file.environments.is_none();
            }
            "datasets" => match value {
                Value::Mapping(m) => {
                    for (name, ds) in m {
                        let Some(name) = name.as_str().map(str::to_string) else {
                            file.datasets_invalid = true;
                            diags.push(file.src.diag(
                                &[Seg::Key("datasets".into()), Seg::Key(scalar_text(&name))],
                                At::Key,
                                format!(
                                    "a dataset name is not text: {}",
                                    value_kind(&name)
                                ),
                                Some("name each dataset with `[a-z][a-z0-9_]*`, e.g. `conversations:`".into()),
                            ));
                            continue;
                        };
                        let dpath = vec![Seg::Key("datasets".into()), Seg::Key(name.clone())];
                        let what = format!("dataset `{name}`");
                        if ds.is_null() {
                            diags.push(file.src.diag(
                                &dpath,
                                At::Key,
                                format!("{what} has no settings"),
                                Some(format!("add its settings below `{name}:`, indented: at least `description:`, `table:`, `time:` and `keep:`")),
                            ));
                            file.datasets.push((name, None));
                            continue;
                        }
                        let spec = de::<DatasetSpec>(
                            &file.src,
                            ds,
                            &dpath,
                            &what,
                            diags,
                            &mut file.reported,
                        );
                        file.datasets.push((name, spec));
                    }
                }
                Value::Null => {}
                other => {
                    file.datasets_invalid = true;
                    diags.push(file.src.diag(
                        &path,
                        At::Value,
                        format!(
                            "`datasets` must be a mapping of dataset names to their settings, not {}",
                            value_kind(&other)
                        ),
                        Some("write `datasets:` followed by indented `name:` entries, without `- `".into()),
                    ))
                }
            },
            "subjects" => match value {
                Value::Mapping(m) => {
                    for (name, subject) in m {
                        let Some(name) = name.as_str().map(str::to_string) else {
                            diags.push(file.src.diag(
                                &[Seg::Key("subjects".into()), Seg::Key(scalar_text(&name))],
                                At::Key,
                                format!("a subject name is not text: {}", value_kind(&name)),
                                Some("name each subject with `[a-z][a-z0-9_]*`, e.g. `conversation:`".into()),
                            ));
                            continue;
                        };
                        let spath = vec![Seg::Key("subjects".into()), Seg::Key(name.clone())];
                        if subject.is_null() {
                            diags.push(file.src.diag(
                                &spath,
                                At::Key,
                                format!("subject `{name}` names no dataset"),
                                Some(format!("map each dataset holding the subject's key to its column, e.g. `{name}: {{ conversations: conversation_id }}`")),
                            ));
                            continue;
                        }
                        let what = format!("subject `{name}`");
                        if let Some(spec) = de::<SubjectSpec>(
                            &file.src,
                            subject,
                            &spath,
                            &what,
                            diags,
                            &mut file.reported,
                        ) {
                            file.subjects.push((name, spec));
                        }
                    }
                }
                Value::Null => {}
                other => diags.push(file.src.diag(
                    &path,
                    At::Value,
                    format!(
                        "`subjects` must be a mapping of subject names to their datasets, not {}",
                        value_kind(&other)
                    ),
                    Some("write `subjects:` followed by indented entries such as `conversation: { conversations: conversation_id }`".into()),
                )),
            },
            "overrides" | "holds" => match value {
                Value::Sequence(items) => {
                    for (i, item) in items.into_iter().enumerate() {
                        let ipath = vec![Seg::Key(key.clone()), Seg::Index(i)];
                        if key == "overrides" {
                            let what = format!("override #{}", i + 1);
                            if let Some(o) = de::<OverrideSpec>(
                                &file.src,
                                item,
                                &ipath,
                                &what,
                                diags,
                                &mut file.reported,
                            ) {
                                file.overrides.push((i, o));
                            }
                        } else {
                            let what = format!("hold #{}", i + 1);
                            if let Some(h) = de::<HoldSpec>(
                                &file.src,
                                item,
                                &ipath,
                                &what,
                                diags,
                                &mut file.reported,
                            ) {
                                file.holds.push((i, h));
                            }
                        }
                    }
                }
                Value::Null => {}
                other => diags.push(file.src.diag(
                    &path,
                    At::Value,
                    format!("`{key}` must be a list, not {}", value_kind(&other)),
                    Some(format!(
                        "write each entry of `{key}` on its own line starting with `- `"
                    )),
                )),
            },
            other => diags.push(file.src.diag(
                &path,
                At::Key,
                format!("unknown key `{other}` at the top level"),
                Some(format!(
                    "expected one of {}{}",
                    list(TOP_LEVEL_KEYS),
                    suggest(other, TOP_LEVEL_KEYS)
                )),
            )),
        }
    }
    if !saw_version {
        diags.push(file.src.diag_at(
            Pos { line: 1, col: 1 },
            "missing the required key `version`".into(),
            Some("add `version: 1` at the top of the file".into()),
        ));
    }
    Some(file)
}

/// Deserialize `value` (found at `path`) into `T`, reporting a precise error.
///
/// To report more than the first error of a dataset, an offending key
/// (unknown, or of the wrong type) is removed and deserialization retried,
/// until it succeeds or fails for a reason removal cannot fix (a missing key).
/// A required key removed this way is not reported missing again.
fn de<T: DeserializeOwned + JsonSchema>(
    src: &SourceFile,
    mut value: Value,
    path: &[Seg],
    what: &str,
    diags: &mut Diagnostics,
    reported: &mut Vec<Vec<Seg>>,
) -> Option<T> {
    // Removed nodes, as paths into the original value.
    let mut removed: Vec<Vec<Seg>> = Vec::new();
    for _ in 0..64 {
        match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(t) => return Some(t),
            Err(err) => {
                let mut rel: Vec<Seg> = Vec::new();
                for seg in err.path().iter() {
                    match seg {
                        serde_path_to_error::Segment::Map { key } => {
                            rel.push(Seg::Key(key.clone()))
                        }
                        serde_path_to_error::Segment::Seq { index } => rel.push(Seg::Index(*index)),
                        _ => {}
                    }
                }
                let inner = err.into_inner().to_string();
                if let Some(rest) = inner.strip_prefix("missing field `") {
                    let orig = original_path(&rel, &removed);
                    let field = rest.split('`').next().unwrap_or("").to_string();
                    if !orig.is_empty() {
                        // A nested mapping (e.g. `archive`) lacks a key: report
                        // it, unless it was removed for its type (reported).
                        let mut key_path = orig.clone();
                        key_path.push(Seg::Key(field));
                        if !removed.contains(&key_path) {
                            diags.push(describe_serde_error(src, path, &orig, what, &inner));
                        }
                        return None;
                    }
                    // Name every missing required key at once, then fill each
                    // with a placeholder (recorded in `reported`, so `validate`
                    // skips it) and go on, so the rest is still checked.
                    let absent = absent_required::<T>(&value);
                    let unreported: Vec<&str> = absent
                        .iter()
                        .map(|(k, _)| k.as_str())
                        .filter(|k| !removed.contains(&vec![Seg::Key(k.to_string())]))
                        .collect();
                    match unreported.as_slice() {
                        [] => {}
                        [_] => diags.push(describe_serde_error(src, path, &orig, what, &inner)),
                        keys => diags.push(src.diag(
                            path,
                            At::Key,
                            format!("{what} is missing the required keys {}", and_list(keys)),
                            Some(format!(
                                "add {} to {what}",
                                and_list(&keys.iter().map(|k| format!("{k}:")).collect::<Vec<_>>())
                            )),
                        )),
                    }
                    let Value::Mapping(m) = &mut value else {
                        return None;
                    };
                    if !absent.iter().any(|(k, _)| *k == field) {
                        return None;
                    }
                    for (k, placeholder) in absent {
                        let mut full = path.to_vec();
                        full.push(Seg::Key(k.clone()));
                        reported.push(full);
                        m.insert(Value::String(k), placeholder);
                    }
                    continue;
                }
                if let Some(rest) = inner.strip_prefix("unknown field `") {
                    // serde_path_to_error's path already ends at the unknown key.
                    let field = Seg::Key(rest.split('`').next().unwrap_or("").to_string());
                    if rel.last() != Some(&field) {
                        rel.push(field);
                    }
                }
                let orig = original_path(&rel, &removed);
                diags.push(describe_serde_error(src, path, &orig, what, &inner));
                if rel.is_empty() || !remove_at(&mut value, &rel) {
                    return None;
                }
                let mut full = path.to_vec();
                full.extend(orig.iter().cloned());
                reported.push(full);
                removed.push(orig);
            }
        }
    }
    None
}

/// The required keys of `T` (per its JSON Schema) that `value` lacks, each
/// with a placeholder of its type (`""`, `{}`); none for a non-mapping.
fn absent_required<T: JsonSchema>(value: &Value) -> Vec<(String, Value)> {
    let Value::Mapping(m) = value else {
        return Vec::new();
    };
    let schema = schemars::schema_for!(T);
    let Some(required) = schema.get("required").and_then(|r| r.as_array()) else {
        return Vec::new();
    };
    let props = schema.get("properties");
    required
        .iter()
        .filter_map(|k| k.as_str())
        .filter(|k| !m.contains_key(*k))
        .filter_map(|k| {
            let ty = props
                .and_then(|p| p.get(k))
                .and_then(|p| p.get("type"))
                .and_then(|t| t.as_str());
            let placeholder = match ty {
                Some("string") => Value::String(String::new()),
                Some("object") => Value::Mapping(serde_yaml::Mapping::new()),
                Some("array") => Value::Sequence(Vec::new()),
                _ => return None,
            };
            Some((k.to_string(), placeholder))
        })
        .collect()
}

/// A path into the value after some nodes were removed → the same node's
/// path in the original value (list items after a removed one moved up).
fn original_path(rel: &[Seg], removed: &[Vec<Seg>]) -> Vec<Seg> {
    let mut out: Vec<Seg> = Vec::new();
    for seg in rel {
        match seg {
            Seg::Index(i) => {
                let mut gone: Vec<usize> = removed
                    .iter()
                    .filter_map(|r| match r.split_last() {
                        Some((Seg::Index(j), parent)) if parent == out.as_slice() => Some(*j),
                        _ => None,
                    })
                    .collect();
                gone.sort_unstable();
                let mut orig = *i;
                for j in gone {
                    if j <= orig {
                        orig += 1;
                    }
                }
                out.push(Seg::Index(orig));
            }
            key => out.push(key.clone()),
        }
    }
    out
}

/// Remove the node at `path` inside `value`; false when there is none.
fn remove_at(value: &mut Value, path: &[Seg]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = value;
    for seg in parents {
        let next = match (seg, cur) {
            (Seg::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str()),
            (Seg::Index(i), Value::Sequence(s)) => s.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match (last, cur) {
        (Seg::Key(k), Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
        (Seg::Index(i), Value::Sequence(s)) if *i < s.len() => {
            s.remove(*i);
            true
        }
        _ => false,
    }
}

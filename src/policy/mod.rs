//! Parse and validate: a policy directory in, a resolved `model::Policy` or
//! every error found out (SPEC §2).
//!
//! Reading files is the only I/O here. Each file is parsed by serde_yaml
//! (syntax, types, unknown keys) piece by piece, so that one bad dataset
//! does not hide the errors of the next, and indexed by `position` so that
//! semantic errors point at the offending key. `validate` then checks the
//! policy as a whole.

pub mod columns;
pub mod cron;
pub mod duration;
pub mod position;
pub mod spec;
mod validate;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::Policy;
use position::{Pos, PositionIndex, Seg};
use spec::{DatasetSpec, HoldSpec, OverrideSpec, PolicyFile};

/// The top-level keys of a policy file (kept in step with `PolicyFile` by a test).
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "version",
    "schedule",
    "environments",
    "datasets",
    "overrides",
    "holds",
];

/// One policy file: its text, positions and parsed content.
pub(crate) struct SourceFile {
    /// The path as shown in diagnostics (the directory as given, joined with the file name).
    pub display: PathBuf,
    pub lines: Vec<String>,
    pub index: PositionIndex,
}

/// Where in a file a diagnostic points.
#[derive(Clone, Copy)]
pub(crate) enum At {
    /// The key naming the node.
    Key,
    /// The node's value.
    Value,
}

impl SourceFile {
    fn new(display: PathBuf, text: &str) -> SourceFile {
        SourceFile {
            display,
            lines: text.lines().map(str::to_string).collect(),
            index: PositionIndex::build(text),
        }
    }

    pub fn pos(&self, path: &[Seg], at: At) -> Pos {
        match at {
            At::Key => self.index.key(path),
            At::Value => self.index.value(path),
        }
    }

    /// A diagnostic at a position, underlining the token there.
    pub fn diag_at(&self, pos: Pos, message: String, help: Option<String>) -> Diagnostic {
        let source_line = self.lines.get(pos.line.saturating_sub(1)).cloned();
        let span = source_line
            .as_deref()
            .map(|l| token_len(l, pos.col))
            .unwrap_or(1);
        Diagnostic {
            file: self.display.clone(),
            line: pos.line,
            col: pos.col,
            message,
            help,
            note: None,
            source_line,
            span,
        }
    }

    /// A diagnostic at the key or value of `path`.
    pub fn diag(&self, path: &[Seg], at: At, message: String, help: Option<String>) -> Diagnostic {
        self.diag_at(self.pos(path, at), message, help)
    }
}

/// The length of the token starting at 1-based `col` of `line`: a quoted
/// string, or plain text up to a comment, `:` key end, or line end.
fn token_len(line: &str, col: usize) -> usize {
    let rest: Vec<char> = line.chars().skip(col.saturating_sub(1)).collect();
    match rest.first() {
        None => 1,
        Some(q @ ('"' | '\'')) => rest
            .iter()
            .skip(1)
            .position(|c| c == q)
            .map(|p| p + 2)
            .unwrap_or(rest.len()),
        Some('{' | '[') => rest.len().max(1),
        Some(_) => {
            let mut end = rest.len();
            for (i, c) in rest.iter().enumerate() {
                let next_space = rest.get(i + 1).is_none_or(|n| n.is_whitespace());
                if (*c == ':' && next_space) || (*c == '#' && i > 0 && rest[i - 1].is_whitespace())
                {
                    end = i;
                    break;
                }
                if *c == ',' || *c == '}' || *c == ']' {
                    end = i;
                    break;
                }
            }
            let s: String = rest[..end].iter().collect();
            s.trim_end().chars().count().max(1)
        }
    }
}

/// A file parsed as far as its structure allows.
pub(crate) struct ParsedFile {
    pub src: SourceFile,
    pub version: Option<u32>,
    pub schedule: Option<String>,
    pub environments: Option<Vec<String>>,
    /// Datasets in file order; `None` for one whose errors were reported
    /// (its name still counts as defined, so nothing else cascades).
    pub datasets: Vec<(String, Option<DatasetSpec>)>,
    /// Overrides that deserialized, with their index in the file.
    pub overrides: Vec<(usize, OverrideSpec)>,
    /// Holds that deserialized, with their index in the file.
    pub holds: Vec<(usize, HoldSpec)>,
}

/// Load and validate the policy in `dir`: every `*.yaml` file, sorted by name.
pub fn load(dir: &Path) -> Result<Policy, Diagnostics> {
    let mut diags = Diagnostics::default();
    let files = match list_files(dir, &mut diags) {
        Some(f) => f,
        None => return Err(diags.finish()),
    };
    let mut parsed = Vec::new();
    for path in files {
        if let Some(p) = parse_file(&path, &mut diags) {
            parsed.push(p);
        }
    }
    let policy = validate::validate(&parsed, &mut diags);
    if diags.is_empty() {
        Ok(policy)
    } else {
        Err(diags.finish())
    }
}

/// A diagnostic about a file or directory as a whole (no line to show).
fn whole(path: &Path, message: String, help: &str) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        line: 1,
        col: 1,
        message,
        help: Some(help.to_string()),
        note: None,
        source_line: None,
        span: 1,
    }
}

fn list_files(dir: &Path, diags: &mut Diagnostics) -> Option<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(whole(
                dir,
                format!("cannot read the policy directory: {e}"),
                "pass the directory holding your *.yaml policy files, e.g. `pgretain check policies`",
            ));
            return None;
        }
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        if name.ends_with(".yaml") {
            files.push(dir.join(&name));
        } else if name.ends_with(".yml") {
            diags.push(whole(
                &dir.join(&name),
                "policy files must end in `.yaml`; this file would be ignored".into(),
                "rename it to `.yaml` (pgretain reads only *.yaml, so nothing is skipped silently)",
            ));
        }
    }
    files.sort();
    if files.is_empty() && diags.is_empty() {
        diags.push(whole(
            dir,
            "the policy directory has no *.yaml files".into(),
            "add a policy file, e.g. `policies/retention.yaml` starting with `version: 1`",
        ));
        return None;
    }
    Some(files)
}

/// Parse one file into its parts, reporting every structural error found.
fn parse_file(path: &Path, diags: &mut Diagnostics) -> Option<ParsedFile> {
    let text = match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                diags.push(whole(
                    path,
                    "the file is not valid UTF-8".into(),
                    "save the policy file as UTF-8",
                ));
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
    let src = SourceFile::new(path.to_path_buf(), &text);
    let root: Value = match serde_yaml::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line(),
                    col: l.column(),
                })
                .unwrap_or(Pos { line: 1, col: 1 });
            let msg = yaml_message(&e.to_string());
            diags.push(src.diag_at(
                pos,
                format!("invalid YAML: {msg}"),
                Some("fix the YAML syntax (indentation, a missing `:` or an unclosed quote or bracket)".into()),
            ));
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
    };
    let Value::Mapping(top) = root else {
        diags.push(file.src.diag_at(
            Pos { line: 1, col: 1 },
            "a policy file must be a mapping with `version: 1` and `datasets:`".into(),
            Some("start the file with `version: 1`".into()),
        ));
        return None;
    };
    let mut saw_version = false;
    for (key, value) in top {
        let Some(key) = key.as_str().map(str::to_string) else {
            diags.push(file.src.diag_at(
                Pos { line: 1, col: 1 },
                "a top-level key is not a string".into(),
                None,
            ));
            continue;
        };
        let path = vec![Seg::Key(key.clone())];
        match key.as_str() {
            "version" => {
                saw_version = true;
                if let Some(v) = de::<u32>(&file.src, value, &path, "the policy version", diags) {
                    file.version = Some(v);
                }
            }
            "schedule" => file.schedule = de(&file.src, value, &path, "`schedule`", diags),
            "environments" => {
                file.environments = de(&file.src, value, &path, "`environments`", diags)
            }
            "datasets" => match value {
                Value::Mapping(m) => {
                    for (name, ds) in m {
                        let Some(name) = name.as_str().map(str::to_string) else {
                            diags.push(file.src.diag(
                                &path,
                                At::Key,
                                "a dataset name is not a string".into(),
                                None,
                            ));
                            continue;
                        };
                        let dpath = vec![Seg::Key("datasets".into()), Seg::Key(name.clone())];
                        let what = format!("dataset `{name}`");
                        let spec = de::<DatasetSpec>(&file.src, ds, &dpath, &what, diags);
                        file.datasets.push((name, spec));
                    }
                }
                Value::Null => {}
                _ => diags.push(file.src.diag(
                    &path,
                    At::Value,
                    "`datasets` must be a mapping of dataset names to their settings".into(),
                    Some("write `datasets:` followed by indented `name:` entries".into()),
                )),
            },
            "overrides" | "holds" => match value {
                Value::Sequence(items) => {
                    for (i, item) in items.into_iter().enumerate() {
                        let ipath = vec![Seg::Key(key.clone()), Seg::Index(i)];
                        if key == "overrides" {
                            let what = format!("override #{}", i + 1);
                            if let Some(o) =
                                de::<OverrideSpec>(&file.src, item, &ipath, &what, diags)
                            {
                                file.overrides.push((i, o));
                            }
                        } else {
                            let what = format!("hold #{}", i + 1);
                            if let Some(h) = de::<HoldSpec>(&file.src, item, &ipath, &what, diags) {
                                file.holds.push((i, h));
                            }
                        }
                    }
                }
                Value::Null => {}
                _ => diags.push(file.src.diag(
                    &path,
                    At::Value,
                    format!("`{key}` must be a list"),
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
fn de<T: DeserializeOwned>(
    src: &SourceFile,
    mut value: Value,
    path: &[Seg],
    what: &str,
    diags: &mut Diagnostics,
) -> Option<T> {
    for _ in 0..64 {
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
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
                let mut full: Vec<Seg> = path.to_vec();
                full.extend(rel.iter().cloned());
                diags.push(describe_serde_error(src, &full, what, &inner));
                if let Some(rest) = inner.strip_prefix("unknown field `") {
                    // serde_path_to_error's path already ends at the unknown key.
                    let field = Seg::Key(rest.split('`').next().unwrap_or("").to_string());
                    if rel.last() != Some(&field) {
                        rel.push(field);
                    }
                } else if inner.starts_with("missing field") || rel.is_empty() {
                    return None;
                }
                if !remove_at(&mut value, &rel) {
                    return None;
                }
            }
        }
    }
    None
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

/// Turn serde's message into ours: say which key, what is wrong, what is right.
fn describe_serde_error(src: &SourceFile, path: &[Seg], what: &str, msg: &str) -> Diagnostic {
    let key_name = match path.last() {
        Some(Seg::Key(k)) => format!("`{k}`"),
        Some(Seg::Index(i)) => format!("item #{}", i + 1),
        None => what.to_string(),
    };
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("");
        let expected = expected_list(msg);
        let mut kpath = path.to_vec();
        if kpath.last() != Some(&Seg::Key(field.to_string())) {
            kpath.push(Seg::Key(field.to_string()));
        }
        let exp: Vec<&str> = expected.iter().map(String::as_str).collect();
        return src.diag(
            &kpath,
            At::Key,
            format!("unknown key `{field}` in {what}"),
            Some(format!(
                "expected one of {}{}",
                list(&exp),
                suggest(field, &exp)
            )),
        );
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or("");
        return src.diag(
            path,
            At::Key,
            format!("{what} is missing the required key `{field}`"),
            Some(format!("add `{field}:` to {what}{}", field_hint(field))),
        );
    }
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        let variant = rest.split('`').next().unwrap_or("");
        let expected = expected_list(msg);
        let exp: Vec<&str> = expected.iter().map(String::as_str).collect();
        return src.diag(
            path,
            At::Value,
            format!("{key_name} of {what} has an unknown value `{variant}`"),
            Some(format!(
                "use one of {}{}",
                list(&exp),
                suggest(variant, &exp)
            )),
        );
    }
    if msg.starts_with("invalid type") {
        let found = msg
            .strip_prefix("invalid type: ")
            .and_then(|r| r.split(", expected").next())
            .unwrap_or("a value");
        let expected = msg.split(", expected ").nth(1).unwrap_or("another type");
        return src.diag(
            path,
            At::Value,
            format!(
                "{key_name} of {what} has the wrong type: found {found}, expected {}",
                plain_expected(expected)
            ),
            Some(format!(
                "write {key_name} as {}{}",
                plain_expected(expected),
                field_hint(last_key(path))
            )),
        );
    }
    src.diag(
        path,
        At::Value,
        format!("{key_name} of {what}: {msg}"),
        None,
    )
}

fn last_key(path: &[Seg]) -> &str {
    match path.last() {
        Some(Seg::Key(k)) => k,
        _ => "",
    }
}

/// A short example for keys whose format is not obvious.
fn field_hint(field: &str) -> String {
    match field {
        "keep" | "min_keep" | "max_keep" => ", e.g. `365 days`".into(),
        "version" => ": `version: 1`".into(),
        "table" => ", e.g. `app.conversations`".into(),
        "time" => ", naming a timestamptz column, e.g. `created_at`".into(),
        "reason" => ", e.g. `\"litigation hold 2026-14\"`".into(),
        "description" => ", a sentence saying what the data is".into(),
        "until" => ", a date `YYYY-MM-DD`".into(),
        _ => String::new(),
    }
}

/// serde's "expected a string" → "a string"; "expected u32" → "a whole number".
fn plain_expected(expected: &str) -> String {
    match expected.trim() {
        "u32" | "u64" | "i64" => "a whole number".into(),
        "a boolean" => "`true` or `false`".into(),
        "a sequence" => "a list".into(),
        "a map" => "a mapping".into(),
        "struct DatasetSpec" | "struct OverrideSpec" | "struct HoldSpec" | "struct ArchiveSpec" => {
            "a mapping of keys".into()
        }
        other => other.to_string(),
    }
}

fn expected_list(msg: &str) -> Vec<String> {
    let Some(rest) = msg
        .split("expected one of ")
        .nth(1)
        .or_else(|| msg.split("expected ").nth(1))
    else {
        return Vec::new();
    };
    rest.split(", ")
        .map(|s| s.trim().trim_matches('`').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// serde_yaml's syntax message without its own " at line X column Y".
fn yaml_message(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "; did you mean `keep`?" when a known name is a small edit away.
pub(crate) fn suggest(word: &str, candidates: &[&str]) -> String {
    let best = candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .min();
    match best {
        Some((d, c)) if d > 0 && d <= 2.max(word.len() / 3) => format!("; did you mean `{c}`?"),
        _ => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The structure the schema is derived from; used by tests to keep
/// `TOP_LEVEL_KEYS` honest.
pub fn top_level_schema_keys() -> Vec<String> {
    let schema = schemars::schema_for!(PolicyFile);
    schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_keys_match_the_schema() {
        let mut a = top_level_schema_keys();
        a.sort();
        let mut b: Vec<String> = TOP_LEVEL_KEYS.iter().map(|s| s.to_string()).collect();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn suggests_close_names() {
        assert_eq!(suggest("kep", &["keep", "time"]), "; did you mean `keep`?");
        assert_eq!(suggest("zzzzzz", &["keep", "time"]), "");
    }
}

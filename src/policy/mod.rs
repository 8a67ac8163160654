//! Parse and validate: a policy directory in, a resolved `model::Policy` or
//! every error found out (SPEC §2).
//!
//! Reading files is the only I/O here. Each file is parsed (`parse`) by
//! serde_yaml (syntax, types, unknown keys) piece by piece, so that one bad
//! dataset does not hide the errors of the next, into the types of `spec`,
//! and indexed by `position` so that semantic errors point at the offending
//! key; `messages` words serde's and the YAML parser's errors. `validate`
//! then checks the policy as a whole and resolves it into `model`.

pub mod columns;
pub mod cron;
pub mod duration;
mod messages;
mod parse;
pub mod position;
pub mod spec;
mod validate;

use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::Policy;
pub(crate) use messages::suggest;
use position::{Pos, PositionIndex, Seg};
use spec::{AccessSpec, DatasetSpec, HoldSpec, OverrideSpec, PolicyFile};

/// The top-level keys of a policy file (kept in step with `PolicyFile` by a test).
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "version",
    "schedule",
    "environments",
    "datasets",
    "overrides",
    "holds",
    "access",
    "run_log_keep",
    "subjects",
    "engine",
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
        Some(q @ ('"' | '\'')) => {
            // The closing quote: `\"` escapes inside double quotes, `''`
            // inside single quotes.
            let mut i = 1;
            while i < rest.len() {
                let c = rest[i];
                if *q == '"' && c == '\\' {
                    i += 2;
                    continue;
                }
                if c == *q {
                    if *q == '\'' && rest.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    return i + 1;
                }
                i += 1;
            }
            rest.len()
        }
        Some('{' | '[') => {
            // Up to the matching bracket, skipping quoted text.
            let mut depth = 0usize;
            let mut quote: Option<char> = None;
            for (i, c) in rest.iter().enumerate() {
                match (quote, c) {
                    (Some(q), c) if *c == q => quote = None,
                    (Some(_), _) => {}
                    (None, '"' | '\'') => quote = Some(*c),
                    (None, '{' | '[') => depth += 1,
                    (None, '}' | ']') => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
            }
            rest.len().max(1)
        }
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
    /// `access`, when present and well-formed.
    pub access: Option<AccessSpec>,
    /// `run_log_keep`, when present and text.
    pub run_log_keep: Option<String>,
    /// `engine`, when present and one of the engines.
    pub engine: Option<crate::model::Engine>,
    /// `subjects`, when present and well-formed (name → dataset → column).
    pub subjects: Vec<(String, spec::SubjectSpec)>,
    /// `environments` is present but invalid (reported): the allowed
    /// environments are unknown, so names are not checked against them.
    pub environments_invalid: bool,
    /// `datasets` (or a dataset name) is invalid (reported): some dataset
    /// names are unknown, so references to datasets are not checked.
    pub datasets_invalid: bool,
    /// Keys whose error was reported while parsing: required keys found
    /// missing (filled with a placeholder so the rest of their entry is
    /// still checked) and keys removed for a wrong type or value.
    /// `validate` does not check them again, nor what depends on them.
    pub reported: Vec<Vec<Seg>>,
}

impl ParsedFile {
    /// Whether the key at `path` had an error reported while parsing.
    pub fn was_reported(&self, path: &[Seg]) -> bool {
        self.reported.iter().any(|m| m.as_slice() == path)
    }

    /// Whether anything at or below `path` had an error reported while parsing.
    pub fn reported_under(&self, path: &[Seg]) -> bool {
        self.reported.iter().any(|m| m.starts_with(path))
    }
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
        if let Some(p) = parse::parse_file(&path, &mut diags) {
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

/// Validate one policy file given as text, as `load` would if it were the
/// only file of a directory (`display` names it in diagnostics): for text
/// pgretain writes itself (`pgretain init`'s stub), checked before it is shown.
pub fn load_text(display: &Path, text: &str) -> Result<Policy, Diagnostics> {
    let mut diags = Diagnostics::default();
    let parsed: Vec<_> = parse::parse_text(display, text, &mut diags)
        .into_iter()
        .collect();
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
            &format!(
                "add a policy file, e.g. `{}` starting with `version: 1`",
                dir.join("retention.yaml").display()
            ),
        ));
        return None;
    }
    Some(files)
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
}

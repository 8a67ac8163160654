//! Messages: serde's and the YAML parser's errors turned into diagnostics
//! that name the key, say what is wrong and what would be right, plus the
//! small wording helpers (`did you mean`, lists) the checks share.
//! No I/O here.

use serde_yaml::Value;

use super::position::{Pos, Seg};
use super::{At, SourceFile};
use crate::diagnostic::Diagnostic;

/// Turn serde's message into ours: say which key, what is wrong, what is right.
///
/// `base` is where `what` sits in the file; `rel` the offending node below it.
pub(super) fn describe_serde_error(
    src: &SourceFile,
    base: &[Seg],
    rel: &[Seg],
    what: &str,
    msg: &str,
) -> Diagnostic {
    let mut full: Vec<Seg> = base.to_vec();
    full.extend(rel.iter().cloned());
    // "`archive.keep` of dataset `sessions`", or `what` itself.
    let within = |rel: &[Seg]| {
        if rel.is_empty() {
            what.to_string()
        } else {
            format!("`{}` of {what}", dotted(rel))
        }
    };
    let subject = within(rel);
    let short = if rel.is_empty() {
        what.to_string()
    } else {
        format!("`{}`", dotted(rel))
    };

    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("");
        let parent = match rel.split_last() {
            Some((Seg::Key(k), parent)) if k == field => parent,
            _ => rel,
        };
        let expected = expected_list(msg);
        let exp: Vec<&str> = expected.iter().map(String::as_str).collect();
        let mut kpath = base.to_vec();
        kpath.extend(parent.iter().cloned());
        kpath.push(Seg::Key(field.to_string()));
        return src.diag(
            &kpath,
            At::Key,
            format!("unknown key `{field}` in {}", within(parent)),
            Some(if exp.is_empty() {
                "remove it".to_string()
            } else {
                format!("expected one of {}{}", list(&exp), suggest(field, &exp))
            }),
        );
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or("");
        let mut fpath = rel.to_vec();
        fpath.push(Seg::Key(field.to_string()));
        return src.diag(
            &full,
            At::Key,
            format!("{subject} is missing the required key `{field}`"),
            Some(format!(
                "add `{field}:` to {subject}{}",
                field_hint(what, &fpath)
            )),
        );
    }
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        let variant = rest.split('`').next().unwrap_or("");
        let expected = expected_list(msg);
        let exp: Vec<&str> = expected.iter().map(String::as_str).collect();
        return src.diag(
            &full,
            At::Value,
            format!("{subject} has an unknown value `{variant}`"),
            Some(format!(
                "use one of {}{}",
                list(&exp),
                suggest(variant, &exp)
            )),
        );
    }
    for (prefix, problem) in [
        ("invalid type: ", "the wrong type"),
        ("invalid value: ", "an invalid value"),
    ] {
        let Some(rest) = msg.strip_prefix(prefix) else {
            continue;
        };
        let (found, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another type"));
        let expected = if is_duration_key(what, rel) {
            "a duration".to_string()
        } else {
            plain_expected(expected)
        };
        if is_duration_key(what, rel)
            && (found.starts_with("integer") || found.starts_with("floating"))
        {
            let number = found.split('`').nth(1).unwrap_or(found);
            return src.diag(
                &full,
                At::Value,
                format!("{subject} is a bare number `{number}`; a duration needs a unit"),
                Some(format!(
                    "write a whole number and a unit, e.g. `{number} days` (units: hours, days, weeks, months, years)"
                )),
            );
        }
        if found == "unit value" {
            return src.diag(
                &full,
                At::Value,
                format!("{subject} is empty"),
                Some(format!(
                    "write {short} as {expected}{}",
                    field_hint(what, rel)
                )),
            );
        }
        if rel.is_empty() && expected == "a mapping of keys" {
            return src.diag(
                &full,
                At::Value,
                format!(
                    "{subject} has {problem}: found {}, expected its settings as a mapping",
                    plain_found(found)
                ),
                Some(format!(
                    "give {subject} its settings as indented `key: value` lines"
                )),
            );
        }
        return src.diag(
            &full,
            At::Value,
            format!(
                "{subject} has {problem}: found {}, expected {expected}",
                plain_found(found)
            ),
            Some(format!(
                "write {short} as {expected}{}",
                field_hint(what, rel)
            )),
        );
    }
    src.diag(&full, At::Value, format!("{subject}: {msg}"), None)
}

/// Whether the node at `rel` below `what` holds a duration.
fn is_duration_key(what: &str, rel: &[Seg]) -> bool {
    let keys: Vec<&str> = rel
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    if what.starts_with("override") {
        return keys.len() == 2 && keys[0] == "keep";
    }
    what.starts_with("dataset")
        && matches!(
            keys.as_slice(),
            ["keep"] | ["min_keep"] | ["max_keep"] | ["archive", "keep"]
        )
}

/// A short example for keys whose format is not obvious.
fn field_hint(what: &str, rel: &[Seg]) -> String {
    if is_duration_key(what, rel) {
        return ", e.g. `365 days`".into();
    }
    let field = match rel.last() {
        Some(Seg::Key(k)) => k.as_str(),
        Some(Seg::Index(_)) => "",
        None => what.trim_matches('`'),
    };
    match field {
        "keep" if what.starts_with("override") => {
            ", e.g. `keep: { conversations: 90 days }`".into()
        }
        "datasets" if what.starts_with("hold") => ", e.g. `datasets: [conversations]`".into(),
        "environments" => ", e.g. `environments: [draft, live]`".into(),
        "schedule" => ", e.g. `schedule: \"30 3 * * *\"`".into(),
        "version" => ": `version: 1`".into(),
        "table" => ", e.g. `app.conversations`".into(),
        "time" => ", naming a timestamptz column, e.g. `created_at`".into(),
        "reason" => ", e.g. `\"litigation hold 2026-14\"`".into(),
        "description" => ", a sentence saying what the data is".into(),
        "until" => ", a date `YYYY-MM-DD`".into(),
        "columns" => ", one `name: type` line per column, e.g. `created_at: timestamptz not null default now()`".into(),
        "sensitive" => ", e.g. `transcript: [password, iban]`".into(),
        "" if rel.first() == Some(&Seg::Key("sensitive".into())) => {
            ", the name of a JSON key, e.g. `password`".into()
        }
        "tenant" if !what.starts_with("dataset") => {
            ", in quotes if it looks like a number: `tenant: \"42\"`".into()
        }
        "environment" if !what.starts_with("dataset") => {
            ", one of the declared `environments`, e.g. `environment: live`".into()
        }
        "tenant" => ", naming the column that holds the tenant, e.g. `bot_id`".into(),
        "environment" => ", naming the column that holds the environment, e.g. `environment`".into(),
        "erase_by" => ", naming a column, e.g. `conversation_id`".into(),
        _ => String::new(),
    }
}

/// serde's "integer `365`" → "the number `365`", "unit value" → "an empty value".
fn plain_found(found: &str) -> String {
    let found = found.trim();
    if found == "unit value" {
        return "an empty value".into();
    }
    if let Some(rest) = found
        .strip_prefix("integer ")
        .or_else(|| found.strip_prefix("floating point "))
    {
        return format!("the number {rest}");
    }
    if let Some(rest) = found.strip_prefix("string ") {
        return format!("the text {rest}");
    }
    if let Some(rest) = found.strip_prefix("boolean ") {
        return rest.to_string();
    }
    match found {
        "sequence" => "a list".into(),
        "map" => "a mapping".into(),
        other => other.to_string(),
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

/// A scalar as written (for finding a non-text key in the position index).
pub(super) fn scalar_text(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => String::new(),
    }
}

/// "a list", "the text `x`": what a YAML value is, for messages.
pub(super) fn value_kind(v: &Value) -> String {
    match v {
        Value::Null => "an empty value".into(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number `{n}`"),
        Value::String(s) => format!("the text `{s}`"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged `{}`", t.tag),
    }
}

/// The names serde lists after "expected": "one of `a`, `b`" or "`a` or `b`".
fn expected_list(msg: &str) -> Vec<String> {
    let Some((_, rest)) = msg.split_once(", expected ") else {
        return Vec::new();
    };
    rest.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .filter(|s| !s.is_empty())
        .collect()
}

/// A YAML syntax error, pointing where the user has to look: the bracket
/// left open, the key written twice, the line indented wrongly.
pub(super) fn yaml_error(src: &SourceFile, e: &serde_yaml::Error) -> Diagnostic {
    const HELP: &str =
        "fix the YAML syntax (indentation, a missing `:` or an unclosed quote or bracket)";
    let text = e.to_string();
    let pos = e
        .location()
        .map(|l| Pos {
            line: l.line(),
            col: l.column(),
        })
        .unwrap_or(Pos { line: 1, col: 1 });
    let (problem, context) = split_yaml_message(&text);
    let help = |h: &str| Some(h.to_string());

    let (problem_text, _) = problem.split_once(" at line ").unwrap_or((problem, ""));

    if problem_text.contains("more than one document") {
        let second = second_document(&src.lines).unwrap_or(pos);
        return src.diag_at(
            second,
            "invalid YAML: a policy file holds one YAML document, and this `---` starts another"
                .into(),
            help("put each document in a file of its own, or remove the `---` line"),
        );
    }

    // `datasets.conversations: duplicate entry with key "keep"`.
    if let Some((parent, key)) = duplicate_key(problem_text) {
        let mut path = parse_yaml_path(parent);
        path.push(Seg::Key(key.clone()));
        let place = yaml_parent(&path[..path.len() - 1]);
        let mut d = match src.index.duplicate(&path) {
            Some((first, second)) => {
                let mut d = src.diag_at(
                    second,
                    format!("invalid YAML: `{key}` is written twice in {place}"),
                    help(&format!("keep one `{key}:` and delete the other")),
                );
                d.note = Some(format!("first written at line {}", first.line));
                d
            }
            None => src.diag_at(
                pos,
                format!("invalid YAML: `{key}` is written twice in {place}"),
                help(&format!("keep one `{key}:` and delete the other")),
            ),
        };
        d.span = d.span.max(1);
        return d;
    }

    match context {
        // An unclosed `[` or `{`: the parser notices only where the list
        // should have ended; point at where it was opened.
        Some((ctx, Some(open)))
            if ctx.contains("flow sequence") || ctx.contains("flow mapping") =>
        {
            let (bracket, close) = if ctx.contains("flow sequence") {
                ('[', ']')
            } else {
                ('{', '}')
            };
            let mut d = src.diag_at(
                open,
                format!("invalid YAML: this `{bracket}` is never closed"),
                help(&format!(
                    "close it with `{close}` (a flow list or mapping must end before the next key)"
                )),
            );
            d.span = 1;
            d.note = Some(format!(
                "the parser reached line {} column {} still inside it: {problem_text}",
                pos.line, pos.col
            ));
            d
        }
        Some((ctx, open))
            if problem_text == "did not find expected key" && ctx.contains("block mapping") =>
        {
            let mut d = src.diag_at(
                pos,
                "invalid YAML: this line is not indented like the keys around it".into(),
                help("indent every key of a mapping by the same number of spaces as the keys next to it (spaces, not tabs)"),
            );
            if let Some(open) = open {
                d.note = Some(format!(
                    "the enclosing mapping starts at line {} with keys at column {}",
                    open.line, open.col
                ));
            }
            d
        }
        Some((ctx, Some(open))) if ctx.contains("quoted scalar") => {
            let mut d = src.diag_at(
                open,
                "invalid YAML: this quoted text is never closed".into(),
                help("close the quote on the same line (or escape a quote inside the text: `\\\"` in double quotes, `''` in single quotes)"),
            );
            d.note = Some(format!(
                "the parser reached line {} column {} still inside it: {problem_text}",
                pos.line, pos.col
            ));
            d
        }
        _ if problem_text.contains("tab character") => {
            let mut d = src.diag_at(
                pos,
                format!("invalid YAML: {problem_text}"),
                help("indent with spaces: YAML does not allow tab characters in indentation"),
            );
            d.span = 1;
            d
        }
        Some((ctx, open)) => {
            let mut d = src.diag_at(pos, format!("invalid YAML: {problem_text}"), help(HELP));
            d.note = Some(match open {
                Some(o) => format!("{ctx} that starts at line {} column {}", o.line, o.col),
                None => ctx.to_string(),
            });
            d
        }
        None => src.diag_at(pos, format!("invalid YAML: {problem_text}"), help(HELP)),
    }
}

/// serde_yaml's duplicate-key message → (path of the mapping, key).
fn duplicate_key(problem: &str) -> Option<(&str, String)> {
    let (parent, rest) = match problem.split_once(": duplicate entry with key ") {
        Some((parent, rest)) => (parent, rest),
        None => ("", problem.strip_prefix("duplicate entry with key ")?),
    };
    let key = rest.trim();
    let key = key
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .or_else(|| key.strip_prefix('`').and_then(|k| k.strip_suffix('`')))
        .unwrap_or(key);
    Some((parent, key.to_string()))
}

/// serde_yaml's path text (`overrides[1].keep`) → a path.
fn parse_yaml_path(text: &str) -> Vec<Seg> {
    let mut path = Vec::new();
    if text.is_empty() || text == "." {
        return path;
    }
    for part in text.split('.') {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next() {
            if !key.is_empty() {
                path.push(Seg::Key(key.to_string()));
            }
        }
        for idx in pieces {
            if let Ok(i) = idx.trim_end_matches(']').parse::<usize>() {
                path.push(Seg::Index(i));
            }
        }
    }
    path
}

/// Where the second document of a multi-document file starts: the first
/// `---` line after some content.
fn second_document(lines: &[String]) -> Option<Pos> {
    let mut content = false;
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- ") {
            if content {
                return Some(Pos {
                    line: i + 1,
                    col: 1,
                });
            }
            content = true;
        } else if !(t.is_empty() || t.starts_with('#') || t.starts_with('%')) {
            content = true;
        }
    }
    None
}

/// Where a mapping sits, in words: "dataset `conversations`", "override #2".
fn yaml_parent(path: &[Seg]) -> String {
    match path {
        [] => "the top level".into(),
        [Seg::Key(d), Seg::Key(name)] if d == "datasets" => format!("dataset `{name}`"),
        [Seg::Key(o), Seg::Index(i)] if o == "overrides" => format!("override #{}", i + 1),
        [Seg::Key(h), Seg::Index(i)] if h == "holds" => format!("hold #{}", i + 1),
        _ => format!("`{}`", dotted(path)),
    }
}

/// A path as the user would write it: `datasets.sessions.archive`, `sensitive.transcript[1]`.
fn dotted(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// libyaml's "PROBLEM at line L column C, while CONTEXT at line A column B"
/// → (PROBLEM at …, Some((CONTEXT, Some(A:B)))).
fn split_yaml_message(msg: &str) -> (&str, Option<(&str, Option<Pos>)>) {
    let Some((problem, context)) = msg.split_once(", while ") else {
        return (msg, None);
    };
    let (ctx, at) = match context.rsplit_once(" at line ") {
        Some((c, at)) => {
            let mut nums = at.split(" column ").map(|n| n.trim().parse::<usize>());
            match (nums.next(), nums.next()) {
                (Some(Ok(line)), Some(Ok(col))) => (c, Some(Pos { line, col })),
                _ => (context, None),
            }
        }
        None => (context, None),
    };
    (problem, Some((ctx, at)))
}

/// "`a`, `b` and `c`".
pub(super) fn and_list<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{}`", i.as_ref())).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

pub(super) fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "; did you mean `keep`?" when a known name is a small edit away.
pub(crate) fn suggest(word: &str, candidates: &[&str]) -> String {
    let a: Vec<char> = word.chars().collect();
    let limit = 2.max(a.len() / 3);
    let mut rows = (Vec::new(), Vec::new());
    let mut b: Vec<char> = Vec::new();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        b.clear();
        b.extend(c.chars());
        // The distance is at least the difference in length.
        if a.len().abs_diff(b.len()) > limit {
            continue;
        }
        let d = edit_distance(&a, &b, limit, &mut rows);
        if best.is_none_or(|(bd, bc)| (d, *c) < (bd, bc)) {
            best = Some((d, c));
        }
    }
    match best {
        // (Not when every character would change: `zz` is not a typo of `t`.)
        Some((d, c)) if d > 0 && d <= limit && d < a.len().max(c.chars().count()) => {
            format!("; did you mean `{c}`?")
        }
        _ => String::new(),
    }
}

/// Levenshtein distance, reusing `rows` between calls; anything above
/// `limit` may be reported as `limit + 1`.
fn edit_distance(
    a: &[char],
    b: &[char],
    limit: usize,
    rows: &mut (Vec<usize>, Vec<usize>),
) -> usize {
    let (prev, cur) = rows;
    prev.clear();
    prev.extend(0..=b.len());
    for i in 1..=a.len() {
        cur.clear();
        cur.push(i);
        let mut row_min = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            row_min = row_min.min(v);
            cur.push(v);
        }
        // Distances never shrink from one row to the next.
        if row_min > limit {
            return limit + 1;
        }
        std::mem::swap(prev, cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_serde_expected_lists() {
        assert_eq!(
            expected_list("unknown field `x`, expected `schema` or `keep`"),
            ["schema", "keep"]
        );
        assert_eq!(
            expected_list("unknown variant `x`, expected one of `day`, `week`, `month`"),
            ["day", "week", "month"]
        );
        assert!(expected_list("unknown field `x`, there are no fields").is_empty());
    }

    #[test]
    fn splits_libyaml_messages() {
        let (problem, context) = split_yaml_message(
            "did not find expected ',' or ']' at line 5 column 9, while parsing a flow sequence at line 3 column 15",
        );
        assert_eq!(
            problem,
            "did not find expected ',' or ']' at line 5 column 9"
        );
        assert_eq!(
            context,
            Some(("parsing a flow sequence", Some(Pos { line: 3, col: 15 })))
        );
        assert_eq!(split_yaml_message("plain"), ("plain", None));
    }

    #[test]
    fn parses_serde_yaml_paths() {
        assert_eq!(
            parse_yaml_path("overrides[1].keep"),
            vec![
                Seg::Key("overrides".into()),
                Seg::Index(1),
                Seg::Key("keep".into())
            ]
        );
        assert!(parse_yaml_path(".").is_empty());
        assert_eq!(
            duplicate_key("datasets.a: duplicate entry with key \"keep\""),
            Some(("datasets.a", "keep".to_string()))
        );
        assert_eq!(
            duplicate_key("duplicate entry with key \"version\""),
            Some(("", "version".to_string()))
        );
    }

    #[test]
    fn finds_the_second_document() {
        let lines: Vec<String> = ["# c", "---", "version: 1", "---", "x: 1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(second_document(&lines), Some(Pos { line: 4, col: 1 }));
    }

    #[test]
    fn words_lists_and_suggestions() {
        assert_eq!(and_list(&["a"]), "`a`");
        assert_eq!(and_list(&["a", "b", "c"]), "`a`, `b` and `c`");
        assert_eq!(suggest("kep", &["keep", "time"]), "; did you mean `keep`?");
        assert_eq!(suggest("zzzzzz", &["keep", "time"]), "");
        assert_eq!(suggest("zz", &["t"]), "", "a full rewrite is no typo");
        assert_eq!(
            suggest("keep", &["keep"]),
            "",
            "an exact match needs no hint"
        );
        let mut rows = (Vec::new(), Vec::new());
        let d = |a: &str, b: &str, rows: &mut (Vec<usize>, Vec<usize>)| {
            let a: Vec<char> = a.chars().collect();
            let b: Vec<char> = b.chars().collect();
            edit_distance(&a, &b, 10, rows)
        };
        assert_eq!(d("kitten", "sitting", &mut rows), 3);
        assert_eq!(d("", "abc", &mut rows), 3);
        assert_eq!(d("ünï", "uni", &mut rows), 2);
    }
}

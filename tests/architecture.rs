//! The import rule of docs/architecture.md, checked on every `cargo test`.
//!
//! Reads the paths every file of `src/` names through `crate::` (in `use`
//! lines and in code), `super::` and `self::` (and `pgretain::` in
//! `main.rs`), resolves each to the module it reaches, and fails when:
//!
//! - modules that share a parent import each other in a circle (the
//!   top-level modules most of all; a parent and its own submodules may
//!   use each other);
//! - a `cmd` module imports another `cmd` module;
//! - a top-level module imports one the layering below does not allow.
//!
//! No external parser: comments, strings and character literals are
//! skipped by a small scanner, which is all Rust's paths need.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module by its path from the crate root: `["render", "names"]`.
type ModPath = Vec<String>;

/// What each top-level module may import (docs/architecture.md keeps the
/// same table). `main` is the binary.
const ALLOWED: &[(&str, &[&str])] = &[
    ("diagnostic", &[]),
    ("hash", &[]),
    ("words", &[]),
    ("model", &[]),
    ("policy", &["model", "diagnostic", "words"]),
    ("render", &["model", "words", "hash"]),
    ("compile", &["model", "render", "words"]),
    ("generated", &["model", "hash"]),
    ("db", &["model", "render", "words"]),
    (
        "cmd",
        &[
            "model",
            "words",
            "hash",
            "diagnostic",
            "policy",
            "render",
            "compile",
            "generated",
            "db",
        ],
    ),
    ("main", &["cmd"]),
];

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The module a file of `src/` is: `src/render/names.rs` → `render::names`,
/// `src/db/mod.rs` → `db`, `src/lib.rs` → the root, `src/main.rs` → `main`.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).expect("a file under src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    match parts.last().map(String::as_str) {
        Some("mod") | Some("lib") => {
            parts.pop();
        }
        _ => {}
    }
    parts
}

/// The code of a Rust file with comments, string literals and character
/// literals blanked out (so that `crate::` in a message or a doc is not a path).
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_char(prev(&b, i)) {
            // A raw string: r"...", r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F}'), or a lifetime ('a).
            let close = if next == Some('\\') {
                (i + 2..b.len().min(i + 12)).find(|&j| b[j] == '\'')
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(j) => {
                    i = j + 1;
                    out.push_str("' '");
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev(b: &[char], i: usize) -> char {
    if i == 0 {
        ' '
    } else {
        b[i - 1]
    }
}

fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every path the code names from `crate`, `super`, `self` or `pgretain`
/// (`crate::db::{catalog, connect::config}` gives `crate::db::catalog` and
/// `crate::db::connect::config`), each with the inline modules (`mod
/// tests { ... }`) it sits in, which `super` and `self` are relative to.
fn paths(code: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    // Inline modules open at a brace depth.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut last_mod: Option<String> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            depth += 1;
            if let Some(m) = last_mod.take() {
                inline.push((m, depth));
            }
            i += 1;
        } else if c == '}' {
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
            i += 1;
        } else if ident_char(c) && (i == 0 || !ident_char(chars[i - 1]) && chars[i - 1] != ':') {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if word == "mod" {
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let name: String = chars[j..].iter().take_while(|c| ident_char(**c)).collect();
                last_mod = Some(name);
            } else if matches!(word.as_str(), "crate" | "super" | "self" | "pgretain")
                && chars.get(i) == Some(&':')
                && chars.get(i + 1) == Some(&':')
            {
                let (tree, end) = use_tree(&chars, i + 2, vec![word]);
                let here: Vec<String> = inline.iter().map(|(m, _)| m.clone()).collect();
                out.extend(tree.into_iter().map(|p| (here.clone(), p)));
                i = end;
            }
        } else {
            if c == ';' {
                last_mod = None; // `mod x;`: a file, not an inline module
            }
            i += 1;
        }
    }
    out
}

/// The paths of a use tree starting at `i` (after `prefix::`), and where it ends.
fn use_tree(c: &[char], mut i: usize, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let skip_ws = |i: &mut usize| {
        while *i < c.len() && c[*i].is_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if c.get(i) == Some(&'{') {
        i += 1;
        let mut out = Vec::new();
        loop {
            skip_ws(&mut i);
            match c.get(i) {
                None => return (out, i),
                Some('}') => return (out, i + 1),
                Some(',') => i += 1,
                _ => {
                    let (mut t, end) = use_tree(c, i, prefix.clone());
                    out.append(&mut t);
                    i = end;
                }
            }
        }
    }
    let start = i;
    while i < c.len() && ident_char(c[i]) {
        i += 1;
    }
    let word: String = c[start..i].iter().collect();
    if word.is_empty() {
        return (vec![prefix], i);
    }
    let mut path = prefix;
    path.push(word);
    if c.get(i) == Some(&':') && c.get(i + 1) == Some(&':') {
        return use_tree(c, i + 2, path);
    }
    (vec![path], i)
}

/// Where a path leads: the longest known module it names. `super` and
/// `self` are relative to `from` (a file's module); `crate` and, from the
/// binary, `pgretain` are the root.
fn resolve(
    from: &ModPath,
    path: &[String],
    modules: &BTreeSet<ModPath>,
    macros: &BTreeMap<String, ModPath>,
) -> Option<ModPath> {
    let (base, rest): (ModPath, &[String]) = match path.first().map(String::as_str) {
        Some("crate") | Some("pgretain") => (Vec::new(), &path[1..]),
        // `self` of a file is its module; each `super` goes up one.
        Some("self") => (from.clone(), &path[1..]),
        Some("super") => {
            let ups = path.iter().take_while(|s| *s == "super").count();
            (
                from[..from.len().saturating_sub(ups)].to_vec(),
                &path[ups..],
            )
        }
        _ => return None,
    };
    if base.is_empty() {
        if let Some(m) = rest.first().and_then(|m| macros.get(m)) {
            return Some(m.clone());
        }
    }
    let mut best = base.clone();
    let mut cur = base;
    for seg in rest {
        cur.push(seg.clone());
        if modules.contains(&cur) {
            best = cur.clone();
        } else {
            break;
        }
    }
    Some(best)
}

/// Module → the modules it imports, from the source of `src/`.
fn imports() -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_of(&src, f)).collect();
    // `#[macro_export]` macros live at the root; they belong to their file.
    let mut macros = BTreeMap::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("a source file");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if let Some(rest) = line.trim().strip_prefix("macro_rules!") {
                let exported = lines[i.saturating_sub(8)..i]
                    .iter()
                    .any(|l| l.contains("#[macro_export]"));
                if exported {
                    let name: String = rest.trim().chars().take_while(|c| ident_char(*c)).collect();
                    macros.insert(name, module_of(&src, f));
                }
            }
        }
    }
    let mut out: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for f in &files {
        let from = module_of(&src, f);
        let code = code_only(&std::fs::read_to_string(f).expect("a source file"));
        let entry = out.entry(from.clone()).or_default();
        for (inline, p) in paths(&code) {
            if from == ["main"] && p.first().map(String::as_str) == Some("crate") {
                continue; // the binary's own items
            }
            if from != ["main"] && p.first().map(String::as_str) == Some("pgretain") {
                continue;
            }
            let here: ModPath = from.iter().chain(&inline).cloned().collect();
            if let Some(to) = resolve(&here, &p, &modules, &macros) {
                // Into an inline module of the file itself: the file.
                let to = if to.starts_with(&from) {
                    from.clone()
                } else {
                    to
                };
                if to != from {
                    entry.insert(to);
                }
            }
        }
    }
    out
}

/// The edges between the children of `parent`: child → children it imports
/// (through any module of its subtree), leaving out imports of `parent`
/// itself and of modules outside it.
fn sibling_edges(
    imports: &BTreeMap<ModPath, BTreeSet<ModPath>>,
    parent: &ModPath,
) -> BTreeMap<String, BTreeSet<String>> {
    let child = |m: &ModPath| -> Option<String> {
        (m.len() > parent.len() && m.starts_with(parent)).then(|| m[parent.len()].clone())
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in imports {
        let Some(a) = child(from) else { continue };
        for to in tos {
            if let Some(b) = child(to) {
                if a != b {
                    edges.entry(a.clone()).or_default().insert(b);
                }
            }
        }
    }
    edges
}

/// A circle in `edges`, if there is one: `a -> b -> a`.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| s == n) {
            let mut c = stack[pos..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_import_circles_between_sibling_modules() {
    let imports = imports();
    let parents: BTreeSet<ModPath> = imports
        .keys()
        .flat_map(|m| (0..m.len()).map(|k| m[..k].to_vec()))
        .collect();
    let mut found = Vec::new();
    for parent in &parents {
        if let Some(c) = circle(&sibling_edges(&imports, parent)) {
            let prefix = if parent.is_empty() {
                String::new()
            } else {
                format!("{}::", parent.join("::"))
            };
            found.push(
                c.iter()
                    .map(|m| format!("{prefix}{m}"))
                    .collect::<Vec<_>>()
                    .join(" -> "),
            );
        }
    }
    assert!(
        found.is_empty(),
        "import circles (docs/architecture.md: modules import downward only):\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn no_cmd_module_imports_another() {
    let imports = imports();
    let edges = sibling_edges(&imports, &vec!["cmd".to_string()]);
    let found: Vec<String> = edges
        .iter()
        .flat_map(|(a, bs)| bs.iter().map(move |b| format!("cmd::{a} imports cmd::{b}")))
        .collect();
    assert!(
        found.is_empty(),
        "a cmd module never imports another; move what they share below cmd (db, render, words, model):\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn top_level_modules_import_only_what_the_layering_allows() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let edges = sibling_edges(&imports(), &Vec::new());
    let mut found = Vec::new();
    for (from, tos) in &edges {
        let Some(ok) = allowed.get(from.as_str()) else {
            found.push(format!(
                "{from} is a new top-level module: add it to ALLOWED here and to docs/architecture.md"
            ));
            continue;
        };
        for to in tos {
            if !ok.contains(&to.as_str()) {
                found.push(format!("{from} imports {to}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "imports the layering of docs/architecture.md does not allow:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn super_in_an_inline_module_is_relative_to_it() {
    let code = code_only("mod tests {\n    use super::validate;\n}\nuse super::spec;");
    assert_eq!(
        paths(&code),
        [
            (
                vec!["tests".to_string()],
                vec!["super".to_string(), "validate".to_string()]
            ),
            (vec![], vec!["super".to_string(), "spec".to_string()]),
        ]
    );
}

#[test]
fn the_scanner_reads_paths_and_skips_text() {
    let code = code_only(
        "use crate::db::{catalog, connect::{config, connect}};\n// use crate::cmd::plan;\nlet s = \"crate::cmd::x\"; let r = r#\"crate::y\"#; let c = '{';\nfn f<'a>(x: &'a str) { crate::words::plural(1, x); super::names::relation(); }",
    );
    let p: Vec<String> = paths(&code).iter().map(|(_, p)| p.join("::")).collect();
    assert_eq!(
        p,
        [
            "crate::db::catalog",
            "crate::db::connect::config",
            "crate::db::connect::connect",
            "crate::words::plural",
            "super::names::relation",
        ]
    );
}

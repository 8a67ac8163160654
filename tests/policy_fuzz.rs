//! Robustness of `pgretain::cmd::check` on hostile input: whatever a policy file
//! holds, checking it never panics, never hangs, and a rejection renders as
//! compiler-style diagnostics naming the file.
//!
//! Three generators: arbitrary bytes, "YAML soup" (random sequences of the
//! fragments YAML parsers trip over), and the example policy with random
//! mutations (lines deleted or duplicated, tokens replaced by nasty values).
//! About 256 cases each, so the whole file runs in seconds; raise
//! `PROPTEST_CASES` for a longer hunt.

use std::path::Path;

use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../policies/chatbot.yaml");

/// Values that have broken YAML-driven tools before.
const NASTY: &[&str] = &[
    "0 days",
    "-1",
    "-1 days",
    "'",
    "\"",
    ";",
    "{}",
    "[]",
    "~",
    "null",
    "",
    " ",
    "{",
    "[",
    "]",
    "}",
    ":",
    "- ",
    "#",
    "!!binary aGVsbG8=",
    "!!binary",
    "!!str",
    "!!int 3",
    "!!map {}",
    "!custom x",
    "&a",
    "*a",
    "&a x",
    "*b",
    "<<: *a",
    "<<: {keep: 1 day}",
    "? complex",
    "|",
    ">-",
    "true",
    "yes",
    "1e400",
    "0x1F",
    "99999999999999999999999999",
    "4294967296 days",
    "18446744073709551616",
    "1 fortnight",
    "365 days; drop table x",
    "app.users; drop table x",
    "\"a\\\"b\"",
    "text default pg_sleep(1)",
    "timestamptz not null default now()); drop table t; --",
    "2027-02-30",
    "2027/01/01",
    "*/0 * * * *",
    "@reboot",
    "60 seconds",
    "\u{0}",
    "\u{7}",
    "\t",
    "\r",
    "\u{feff}",
    "\u{200b}",
    "日本語",
    "ünïcödé",
    "🦀🦀🦀",
    "\u{202e}evil",
    "Ω≈ç√∫",
    "%YAML 1.2",
    "---",
    "...",
];

/// YAML fragments for the soup generator.
const FRAGMENTS: &[&str] = &[
    "version: 1",
    "datasets:",
    "overrides:",
    "holds:",
    "environments:",
    "schedule:",
    "keep:",
    "min_keep:",
    "max_keep:",
    "table:",
    "time:",
    "columns:",
    "sensitive:",
    "archive:",
    "tenant:",
    "environment:",
    "reason:",
    "until:",
    "a:",
    "b:",
    "\n",
    "\n  ",
    "\n    ",
    "\n      ",
    "  ",
    " ",
    "\t",
    "- ",
    "-",
    ":",
    ": ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "?",
    "'",
    "\"",
    "#",
    "&a ",
    "*a",
    "!!binary ",
    "!!str ",
    "<<: ",
    "|",
    ">",
    "---",
    "...",
    "~",
    "365 days",
    "0 days",
    "x",
    "app.t",
    "%YAML 1.1\n",
    "\\",
    "\u{0}",
    "🦀",
    "\r\n",
];

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(256),
        // A failure is a panic; shrinking it is what makes it readable.
        max_shrink_iters: 2048,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Check a policy directory holding one file with `bytes`; panics (the
/// failure proptest reports) only through `check` itself or a bad rendering.
fn check_bytes(dir: &Path, bytes: &[u8]) {
    std::fs::write(dir.join("policy.yaml"), bytes).expect("write policy");
    match pgretain::cmd::check::check(dir) {
        Ok(summary) => {
            assert!(summary.starts_with("policy ok: "), "{summary}");
            // A valid policy also compiles, or is refused cleanly.
            let out = tempfile::tempdir().expect("tempdir");
            compile_cleanly(dir, out.path());
        }
        Err(diags) => {
            assert!(!diags.is_empty(), "Err without diagnostics");
            let text = format!("{diags}");
            assert!(
                text.ends_with("; nothing was written"),
                "rendering does not end with the summary:\n{text}"
            );
            let file = dir.join("policy.yaml").display().to_string();
            for d in &diags.0 {
                assert_eq!(d.file.display().to_string(), file, "{text}");
                assert!(d.line >= 1 && d.col >= 1, "{text}");
                assert!(!d.message.is_empty(), "{text}");
                assert!(d.help.is_some(), "no help:\n{text}");
            }
        }
    }
}

/// Compile `policy` into `generated`: a written migration, "up to date", or
/// a clean refusal with a message; never a panic or an I/O error.
fn compile_cleanly(policy: &Path, generated: &Path) {
    let opts = pgretain::cmd::compile::CompileOptions {
        policy_dir: policy.to_path_buf(),
        generated_dir: generated.to_path_buf(),
        check: false,
        allow_destructive: false,
    };
    match pgretain::cmd::compile::compile(&opts) {
        Ok(_) => {}
        Err(pgretain::cmd::compile::CompileError::Refused(reasons)) => {
            assert!(!reasons.is_empty() && reasons.iter().all(|r| !r.is_empty()));
        }
        Err(e) => panic!("compile failed on a valid policy: {e}"),
    }
}

/// One edit of a policy text.
#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    /// Replace the `n`th whitespace-separated token of a line.
    ReplaceToken {
        line: usize,
        token: usize,
        value: usize,
    },
    /// Insert a nasty value as a line of its own.
    InsertLine {
        line: usize,
        value: usize,
        indent: usize,
    },
    /// Replace a value (after `: `) with a very long string.
    LongValue {
        line: usize,
        len: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(line, token, value)| { Mutation::ReplaceToken { line, token, value } }),
        (any::<usize>(), any::<usize>(), 0usize..8).prop_map(|(line, value, indent)| {
            Mutation::InsertLine {
                line,
                value,
                indent,
            }
        }),
        (any::<usize>(), 1usize..100_000).prop_map(|(line, len)| Mutation::LongValue { line, len }),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for m in mutations {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let n = lines.len();
        match *m {
            Mutation::DeleteLine(i) => {
                lines.remove(i % n);
            }
            Mutation::DuplicateLine(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::ReplaceToken { line, token, value } => {
                let l = &lines[line % n];
                let mut tokens: Vec<&str> = l.split(' ').collect();
                let t = token % tokens.len();
                tokens[t] = NASTY[value % NASTY.len()];
                lines[line % n] = tokens.join(" ");
            }
            Mutation::InsertLine {
                line,
                value,
                indent,
            } => {
                let l = format!("{}{}", " ".repeat(indent), NASTY[value % NASTY.len()]);
                lines.insert(line % (n + 1), l);
            }
            Mutation::LongValue { line, len } => {
                let l = &lines[line % n];
                let key = l.split_once(": ").map_or(l.as_str(), |(k, _)| k);
                let long = "ü".repeat(len / 2) + &"x".repeat(len - len / 2);
                lines[line % n] = format!("{key}: {long}");
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

proptest! {
    #![proptest_config(config())]

    /// (a) Any bytes at all, as a policy file.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let tmp = tempfile::tempdir().expect("tempdir");
        check_bytes(tmp.path(), &bytes);
    }

    /// (a) Any text, as a policy file.
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let tmp = tempfile::tempdir().expect("tempdir");
        check_bytes(tmp.path(), text.as_bytes());
    }

    /// (a) Random sequences of YAML fragments: reaches parser states that
    /// random bytes almost never do.
    #[test]
    fn yaml_soup_never_panics(parts in prop::collection::vec(0..FRAGMENTS.len(), 0..200)) {
        let text: String = parts.iter().map(|&i| FRAGMENTS[i]).collect();
        let tmp = tempfile::tempdir().expect("tempdir");
        check_bytes(tmp.path(), text.as_bytes());
    }

    /// (b) The valid example with 1 to 6 random mutations.
    #[test]
    fn mutated_example_never_panics(mutations in prop::collection::vec(mutation(), 1..7)) {
        let text = apply(EXAMPLE, &mutations);
        let tmp = tempfile::tempdir().expect("tempdir");
        check_bytes(tmp.path(), text.as_bytes());
        // The mutation as a policy change on top of the compiled example:
        // the incremental diff must write a migration or refuse cleanly.
        if pgretain::cmd::check::check(tmp.path()).is_ok() {
            let base = tempfile::tempdir().expect("tempdir");
            std::fs::write(base.path().join("policy.yaml"), EXAMPLE).expect("write");
            let generated = tempfile::tempdir().expect("tempdir");
            compile_cleanly(base.path(), generated.path());
            compile_cleanly(tmp.path(), generated.path());
        }
    }
}

/// The mutator itself is sane: no mutation leaves the example valid-looking
/// but unparsed, and the unmutated example is valid.
#[test]
fn unmutated_example_is_valid() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("policy.yaml"), apply(EXAMPLE, &[])).expect("write");
    let summary = pgretain::cmd::check::check(tmp.path()).expect("the example is valid");
    assert!(summary.starts_with("policy ok: 4 datasets"), "{summary}");
}

/// Deep nesting must fail cleanly, not overflow the stack (which would
/// abort the process rather than fail a test).
#[test]
fn deeply_nested_input_is_rejected_without_overflow() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let depth = 100_000;
    let flow = format!(
        "version: 1\ndatasets: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    check_bytes(tmp.path(), flow.as_bytes());
    let flow_maps = format!(
        "version: 1\ndatasets: {}{}\n",
        "{a: ".repeat(depth),
        "}".repeat(depth)
    );
    check_bytes(tmp.path(), flow_maps.as_bytes());
    let mut block = String::from("version: 1\ndatasets:\n");
    for i in 0..2_000 {
        block.push_str(&" ".repeat(2 * (i + 1)));
        block.push_str("a:\n");
    }
    check_bytes(tmp.path(), block.as_bytes());
}

/// Alias expansion ("billion laughs") must be refused, not exhaust memory.
#[test]
fn alias_bomb_is_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut text = String::from("version: 1\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = format!("*a{}", i - 1);
        text.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            [prev.as_str(); 10].join(", ")
        ));
    }
    text.push_str("datasets:\n  x:\n    description: *a11\n");
    check_bytes(tmp.path(), text.as_bytes());
}

//! The invalid-policy corpus: every folder under `tests/invalid/` is a policy
//! with one thing wrong (or, in the `many_errors` cases, many). For each,
//! `pgretain::cmd::check` must fail, and the full rendered error text is pinned
//! with insta (`tests/snapshots/policy_errors__<case>.snap`), so any change
//! to a message, a position or the set of errors reported shows up in
//! review. The `pgretain check` binary must print exactly the same text on
//! stderr, nothing on stdout, and exit 2.
//!
//! To add a case: create `tests/invalid/NN_short_name/retention.yaml`, run
//! `INSTA_UPDATE=always cargo test --test policy_errors` (or `cargo insta
//! test --review`), then read the new `.snap` file: it must point at the
//! offending key or value, say what is wrong, and say how to fix it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CORPUS: &str = "tests/invalid";

/// The case folders, sorted by name.
fn cases() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(CORPUS);
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry"))
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    cases
}

/// Run the built binary in the crate root.
fn pgretain(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgretain"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run pgretain")
}

fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The rendered errors of `dir`, which must be invalid.
fn rendered_errors(dir: &Path) -> String {
    match pgretain::cmd::check::check(dir) {
        Ok(summary) => panic!("{} was accepted: {summary}", dir.display()),
        Err(diags) => {
            assert!(
                !diags.is_empty(),
                "{}: Err without diagnostics",
                dir.display()
            );
            format!("{diags}")
        }
    }
}

/// `file:line:col: error: ` with `file` = `{prefix}NAME.yaml` (or `.yml`)
/// and a non-empty message after it.
fn is_located_header(line: &str, prefix: &str) -> bool {
    let Some(rest) = line.strip_prefix(prefix) else {
        return false;
    };
    let mut parts = rest.splitn(4, ':');
    let (Some(file), Some(l), Some(c), Some(msg)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|ch| ch.is_ascii_digit());
    !file.is_empty()
        && !file.contains('/')
        && (file.ends_with(".yaml") || file.ends_with(".yml"))
        && digits(l)
        && digits(c)
        && msg.starts_with(" error: ")
        && msg.len() > " error: ".len()
}

/// The diagnostics of a rendering: blocks separated by blank lines, then
/// the summary line.
fn blocks(text: &str) -> (Vec<&str>, &str) {
    let mut blocks: Vec<&str> = text.split("\n\n").collect();
    let summary = blocks.pop().unwrap_or_default();
    (blocks, summary)
}

/// Check the shape every rendering shares: located headers (unless
/// `whole_dir`), a `= help:` line in every diagnostic, an honest count.
fn check_shape(case: &str, text: &str, prefix: &str, whole_dir: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let (diags, summary) = blocks(text);
    let n = diags.len();
    let expected_summary = format!(
        "error: the policy has {n} error{}; nothing was written",
        if n == 1 { "" } else { "s" }
    );
    if summary != expected_summary {
        problems.push(format!(
            "{case}: last line is {summary:?}, expected {expected_summary:?}"
        ));
    }
    if n == 0 {
        problems.push(format!("{case}: no diagnostics"));
    }
    for block in diags {
        let header = block.lines().next().unwrap_or_default();
        if !whole_dir && !is_located_header(header, prefix) {
            problems.push(format!(
                "{case}: header does not match `^{prefix}[^:]+\\.ya?ml:\\d+:\\d+: error: `: {header:?}"
            ));
        }
        if whole_dir && !header.starts_with(prefix.trim_end_matches('/')) {
            problems.push(format!("{case}: header does not name {prefix}: {header:?}"));
        }
        if !block.lines().any(|l| l.starts_with("  = help: ")) {
            problems.push(format!("{case}: no `= help:` line in\n{block}"));
        }
    }
    problems
}

/// Every case: `check` fails, the text is pinned, the shape is right.
#[test]
fn invalid_policies_are_rejected_with_pinned_errors() {
    let cases = cases();
    assert!(
        cases.len() >= 35,
        "the corpus has {} cases, expected at least 35",
        cases.len()
    );
    let mut problems = Vec::new();
    let mut mismatched = Vec::new();
    for case in &cases {
        let dir = format!("{CORPUS}/{case}");
        let text = rendered_errors(Path::new(&dir));
        problems.extend(check_shape(case, &text, &format!("{dir}/"), false));
        // Keep going after a mismatch so one run shows every changed case.
        let outcome = std::panic::catch_unwind(|| {
            insta::with_settings!({
                description => format!("pgretain check {dir}"),
                omit_expression => true,
            }, {
                insta::assert_snapshot!(case.as_str(), text);
            });
        });
        if outcome.is_err() {
            mismatched.push(case.clone());
        }
    }
    assert!(
        mismatched.is_empty(),
        "snapshots differ for {} case(s): {}\nreview with `cargo insta review`, or rerun with INSTA_UPDATE=always and read the diff",
        mismatched.len(),
        mismatched.join(", ")
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The binary prints exactly what the library renders, on stderr, exit 2.
#[test]
fn check_command_prints_the_same_errors_and_exits_2() {
    let root = crate_root();
    let mut problems = Vec::new();
    for case in cases() {
        let dir = format!("{CORPUS}/{case}");
        // Integration tests run in the crate root, like the binary below.
        let text = rendered_errors(Path::new(&dir));
        let out = pgretain(&root, &["check", &dir]);
        if out.status.code() != Some(2) {
            problems.push(format!("{case}: exit {:?}, expected 2", out.status.code()));
        }
        if !out.stdout.is_empty() {
            problems.push(format!(
                "{case}: stdout is not empty: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr != format!("{text}\n") {
            problems.push(format!(
                "{case}: stderr differs from the library's rendering\n--- stderr\n{stderr}\n--- library\n{text}\n"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Git keeps no empty directory, so this case is made at test time.
#[test]
fn empty_directory_is_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("policies");
    std::fs::create_dir(&dir).expect("create empty policy dir");

    let text = rendered_errors(&dir).replace(&dir.display().to_string(), "policies");
    let problems = check_shape("empty_directory", &text, "policies", true);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    insta::with_settings!({
        description => "pgretain check policies (an empty directory)",
        omit_expression => true,
    }, {
        insta::assert_snapshot!("00_empty_directory", text);
    });

    // Run from the temp dir so the path shown is the relative `policies`.
    let out = pgretain(tmp.path(), &["check", "policies"]);
    assert_eq!(out.status.code(), Some(2), "exit code");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), format!("{text}\n"));
}

/// A directory that does not exist is an error too, not an empty policy.
#[test]
fn missing_directory_is_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = pgretain(tmp.path(), &["check", "no-such-dir"]);
    assert_eq!(out.status.code(), Some(2), "exit code");
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("no-such-dir:1:1: error: cannot read the policy directory"),
        "{stderr}"
    );
    assert!(stderr.contains("  = help: "), "{stderr}");
}

/// The example policy is valid: exit 0, one summary line, nothing on stderr.
#[test]
fn example_policy_checks_ok() {
    let out = pgretain(&crate_root(), &["check", "policies"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.is_empty(), "stderr: {stderr}");
    assert_eq!(stdout.lines().count(), 1, "stdout: {stdout}");
    assert!(stdout.starts_with("policy ok: "), "stdout: {stdout}");
    assert!(stdout.ends_with('\n'));
}

//! Compiler-style diagnostics for policy errors: a grep-able
//! `file:line:column: error: what` header (the form editors and CI problem
//! matchers parse), the source line with the offending text underlined, and
//! a `help:` line saying what would be right.
//!
//! Rendering only; deciding what is an error belongs to `policy`.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a policy, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as given on the command line (relative paths stay relative).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    /// What is wrong, lowercase, naming the dataset or key.
    pub message: String,
    /// What would be right.
    pub help: Option<String>,
    /// A related location (e.g. the first definition of a duplicate).
    pub note: Option<String>,
    /// The text of the offending line, for the snippet.
    pub source_line: Option<String>,
    /// How many characters to underline (at least 1).
    pub span: usize,
}

impl Diagnostic {
    /// Order: file, then position, then message (deterministic output).
    fn sort_key(&self) -> (&Path, usize, usize, &str) {
        (&self.file, self.line, self.col, &self.message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}:{}:{}: error: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )?;
        if let Some(src) = &self.source_line {
            let gutter = self.line.to_string().len();
            let pad = " ".repeat(gutter);
            let (shown, col, span) = excerpt(src, self.col, self.span);
            writeln!(f, "{pad} |")?;
            writeln!(f, "{} | {}", self.line, shown)?;
            let indent: String = shown
                .chars()
                .take(col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(f, "{pad} | {indent}{}", "^".repeat(span.max(1)))?;
        }
        if let Some(note) = &self.note {
            writeln!(f, "  = note: {note}")?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "  = help: {help}")?;
        }
        Ok(())
    }
}

/// Longest source line shown in full; longer ones are cut around the column.
const MAX_SHOWN: usize = 120;

/// The part of `line` to show (with `…` where cut), and the column and
/// underline length within it.
fn excerpt(line: &str, col: usize, span: usize) -> (String, usize, usize) {
    let chars: Vec<char> = line.chars().collect();
    let span = span.max(1);
    if chars.len() <= MAX_SHOWN {
        return (line.to_string(), col, span);
    }
    let at = col.saturating_sub(1).min(chars.len());
    let start = at.saturating_sub(MAX_SHOWN / 3);
    let end = (start + MAX_SHOWN).min(chars.len());
    let mut shown = String::new();
    if start > 0 {
        shown.push('…');
    }
    shown.extend(&chars[start..end]);
    if end < chars.len() {
        shown.push('…');
    }
    let col = at - start + 1 + usize::from(start > 0);
    let span = span.min(end.saturating_sub(at)).max(1);
    (shown, col, span)
}

/// All diagnostics of one run, sorted for stable output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    /// Sort by file and position and drop exact duplicates.
    pub fn finish(mut self) -> Diagnostics {
        self.0.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        self.0.dedup();
        self
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        let n = self.0.len();
        write!(
            f,
            "error: the policy has {n} error{}; nothing was written",
            if n == 1 { "" } else { "s" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(line: &str, col: usize, span: usize) -> Diagnostic {
        Diagnostic {
            file: PathBuf::from("p.yaml"),
            line: 3,
            col,
            message: "bad".into(),
            help: Some("fix it".into()),
            note: None,
            source_line: Some(line.into()),
            span,
        }
    }

    #[test]
    fn renders_header_snippet_and_help() {
        let text = diag("keep: 0 days", 7, 6).to_string();
        assert_eq!(
            text,
            "p.yaml:3:7: error: bad\n  |\n3 | keep: 0 days\n  |       ^^^^^^\n  = help: fix it\n"
        );
    }

    #[test]
    fn cuts_long_lines_around_the_column() {
        let line = format!("key: {}", "x".repeat(10_000));
        let text = diag(&line, 5_000, 9_000).to_string();
        let shown = text.lines().nth(2).unwrap();
        let carets = text.lines().nth(3).unwrap();
        assert!(shown.chars().count() < MAX_SHOWN + 10, "{shown}");
        assert!(
            shown.starts_with("3 | …") && shown.ends_with('…'),
            "{shown}"
        );
        let caret_col = carets.find('^').unwrap();
        // "3 | " then one column for the `…`, then the cut-off context.
        assert_eq!(caret_col, "3 | ".len() + 1 + MAX_SHOWN / 3);
        assert!(carets.trim_end().ends_with('^'));
    }
}

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
            writeln!(f, "{pad} |")?;
            writeln!(f, "{} | {}", self.line, src)?;
            let indent: String = src
                .chars()
                .take(self.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(f, "{pad} | {indent}{}", "^".repeat(self.span.max(1)))?;
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

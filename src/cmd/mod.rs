//! The commands of SPEC §5, one module each: orchestration only. A command
//! loads the policy (`policy`), reads and writes `generated/`
//! (`generated`), decides the next migration (`compile`) and talks to the
//! database (`db`); it never writes SQL itself. Each returns a result type
//! that renders itself ([`Outcome`]: text for people, JSON for machines)
//! or an error that knows its exit code ([`Failure`]); `main.rs` prints
//! the one or the other and exits.
//!
//! A command module never imports another: what two commands share lives
//! below them (`db`, `render::names`, `words`, `model`).

pub mod apply;
pub mod check;
pub mod compile;
pub mod erase;
pub mod init;
pub mod plan;
pub mod report;
pub mod run;
pub mod schema;
pub mod status;
pub mod verify;

use std::fmt;

use serde::Serialize;

use crate::db::DbError;
use crate::diagnostic::Diagnostics;

/// Process exit codes (SPEC §5).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// A check found a problem (stale output, overdue rows, rows kept by a hold).
    pub const PROBLEM: i32 = 1;
    /// Invalid input or usage.
    pub const INVALID: i32 = 2;
    /// Database error.
    pub const DATABASE: i32 = 3;
}

/// What a command did or found, ready to print: `warnings` on stderr
/// first, then `text` (or `json`) on stdout, then the `problem`, if any,
/// on stderr; the process exits with `exit_code`.
pub trait Outcome: Serialize {
    /// The output for people, exactly as printed on stdout.
    fn text(&self) -> String;

    /// Things the user should know (without `warning: `), printed on
    /// stderr before the output.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// The problem a check found (the whole message), printed on stderr
    /// after the output.
    fn problem(&self) -> Option<String> {
        None
    }

    /// The exit code: [`exit::PROBLEM`] when a check found a problem, else
    /// [`exit::OK`].
    fn exit_code(&self) -> i32 {
        if self.problem().is_some() {
            exit::PROBLEM
        } else {
            exit::OK
        }
    }

    /// The output for machines, pretty-printed JSON.
    fn json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}

/// Why a command could not do its work: the message (printed on stderr as
/// it displays) and the exit code.
pub trait Failure: fmt::Display {
    /// [`exit::INVALID`] for invalid input, [`exit::DATABASE`] for a
    /// database failure.
    fn exit_code(&self) -> i32;
}

/// The policy is invalid.
impl Failure for Diagnostics {
    fn exit_code(&self) -> i32 {
        exit::INVALID
    }
}

/// A command that cannot fail.
impl Failure for std::convert::Infallible {
    fn exit_code(&self) -> i32 {
        match *self {}
    }
}

/// The database failed, or refused what was asked.
impl Failure for DbError {
    fn exit_code(&self) -> i32 {
        exit::DATABASE
    }
}

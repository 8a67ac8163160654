//! pgretain: compile declarative YAML data-retention policies into
//! PostgreSQL partitioning, enforcement procedures and pg_cron jobs.
//!
//! The pipeline, one module per stage (docs/architecture.md draws it, with
//! the imports each module may make): `policy` (YAML → `model`, the
//! resolved policy) → `render` (model → SQL) → `compile` (the next
//! migration) → `generated` (the directory of migrations) → `db` (the live
//! database) → `cmd` (one module per command). `words`, `hash` and
//! `diagnostic` are leaves every stage may use. `main.rs` only parses
//! arguments, calls one `cmd` function and prints its outcome.

pub mod cmd;
pub mod compile;
pub mod db;
pub mod diagnostic;
pub mod generated;
pub mod hash;
pub mod model;
pub mod policy;
pub mod render;
pub mod words;

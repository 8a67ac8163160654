//! The commands: one module each, orchestration only. A command module
//! never imports another one.

pub mod compile;

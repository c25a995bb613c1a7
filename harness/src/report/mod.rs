//! Reporters: each takes a finished [`RunReport`](crate::run::RunReport) (or a runner event)
//! and any `io::Write`. They never run anything, read the clock or the environment.

pub mod discover;
pub mod json;
pub mod junit;
pub mod matrix;
pub mod terminal;

//! The core: every decision reapd makes, as plain types driven by inputs and a `now`.
//!
//! Owns: the supervisor and its components (services, requests, reload, teardown, hooks, sweep,
//! report, recovery, tracking), the stop procedure, the shutdown phases and budget, the
//! process-tree model, the timers, and the order of one turn of the loop.
//! Must never: make a system call, read a clock, the environment or a file, or touch a file
//! descriptor. The lint below makes reading a clock or the filesystem fail the lint run; `unsafe`
//! is denied for the whole crate outside `sys`.
#![deny(clippy::disallowed_methods)]

pub mod checks;
pub mod hooks;
pub mod io;
pub mod outbox;
pub mod proctree;
pub mod recovery;
pub mod reload;
pub mod report;
pub mod requests;
pub mod service;
pub mod shutdown;
pub mod stop;
pub mod supervisor;
pub mod sweep;
pub mod teardown;
pub mod timers;
pub mod tracking;
pub mod turn;

#[cfg(test)]
mod scenarios;
#[cfg(test)]
pub(crate) mod sim;

//! The core: every decision reapd makes, as plain types driven by inputs and a `now`.
//!
//! Owns: the supervisor state machine, the stop procedure, the shutdown phases and budget, and
//! the process-tree model the stop procedure reasons about.
//! Must never: make a system call, read a clock, the environment or a file, or touch a file
//! descriptor. The lints below make reading a clock or the filesystem fail the lint run; `unsafe`
//! is denied for the whole crate outside `sys`.
#![deny(clippy::disallowed_methods)]

pub mod proctree;
pub mod recovery;
pub mod shutdown;
pub mod stop;
pub mod supervisor;

#[cfg(test)]
pub(crate) mod sim;

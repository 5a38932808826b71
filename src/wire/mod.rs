//! The wire: the formats reapd speaks at its boundaries, as pure data and parsers.
//!
//! Owns: the config file, the command line, the control protocol (the command registry,
//! requests, replies, events and line framing), strict JSON reading (repeated keys, raw values),
//! exit statuses, signal names, and text helpers (suggestions, durations).
//! Must never: do I/O or import from `core` or `sys`: callers hand it text and bytes.
#![deny(clippy::disallowed_methods)]

pub mod cli;
pub mod commands;
pub mod config;
pub mod env_file;
pub mod events;
pub mod exit;
pub mod json;
pub mod loglines;
pub mod narrative;
pub mod protocol;
pub mod replies;
pub mod signal_names;
pub mod state_file;
pub mod text;

//! reapd: a small, single-threaded process supervisor whose shutdown leaves nothing behind.
//!
//! # Architecture
//!
//! The tree shows the layers:
//!
//! - [`wire`]: the formats at reapd's boundaries, pure: the config file, the command line, the
//!   control protocol (one table of its commands, typed replies and events, and the narrative
//!   that tells events to people), exit statuses, signal names, env files, service output as
//!   lines and tails, text helpers.
//! - [`core`]: every decision, as plain types driven with fake time and fake process tables in
//!   tests: the supervisor, the stop procedure, the shutdown phases and budget, the process tree.
//! - [`sys`]: the system calls: the event loop (the only `mio::Poll`), the control socket,
//!   signals, `/proc`, pidfds, spawning (a service's identity and limits), services' output
//!   pipes, readiness notification, logging.
//! - [`ctl`]: the `reapd ctl` client: typed replies and events, told as the log tells them.
//!
//! `unsafe` is denied outside `sys`; `core` and `wire` may not read a clock, a file or the
//! environment (clippy `disallowed-methods`, see `clippy.toml`).
//!
//! # The loop
//!
//! One thread. [`core::supervisor::Supervisor`] is a state machine fed [`core::io::Input`]s and
//! the current time; it queues [`core::io::Action`]s and says what it needs next (a scan of
//! `/proc`, a deadline). [`core::turn`] fixes the order of one turn, and both the real loop
//! (`sys::event_loop`) and the simulation (`core::sim`) run it:
//!
//! 1. feed each input, performing every queued action before the next input (what performing
//!    learns, a spawn's pid or a process already gone, is fed next);
//! 2. while a scan is wanted: reap first, then scan, then feed the snapshot (at most 50 ms of
//!    scanning, or until a deadline is due, per turn);
//! 3. while a deadline has passed: feed a tick, then scan again;
//! 4. write the state file and the service manager's status at most once.
//!
//! The loop then polls until the next deadline (at once while a scan is wanted, for ever when
//! idle). It decides nothing: a failing `poll` is an input, and so is the last look at `/proc`.
//! `ARCHITECTURE.md` follows one stop request through all of it.

// As PID 1 a panic (with panic = "abort", any panic) takes the whole container down, so the
// daemon may contain nothing that can panic on input: no unwrap, expect, panic! or unchecked
// indexing. Unit tests are exempt (clippy.toml); integration tests are separate crates.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
// System calls and `unsafe` live in `sys` only; the core must not read clocks or files
// (clippy.toml lists what counts; `core` and `wire` deny it).
#![deny(unsafe_code)]

pub mod core;
pub mod ctl;
#[allow(unsafe_code)]
pub mod sys;
pub mod wire;

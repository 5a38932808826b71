//! reapd: a small, single-threaded process supervisor whose shutdown leaves nothing behind.
//!
//! # Architecture
//!
//! The decisions live in plain types that never touch the system and are driven with fake time
//! and fake process tables in tests:
//!
//! - [`config`]: the JSON config file, validated with a JSON path for every error.
//! - [`cli`]: the command line.
//! - [`protocol`]: newline-delimited JSON requests, replies and events, and line framing.
//! - [`proctree`]: process-table snapshots, trees, and which service every process belongs to.
//! - [`stop`]: the one stop procedure (bottom-up stop signal, then freeze-then-kill).
//! - [`shutdown`]: the phase machine Running → Draining → Killing → CleanedUp → Exit and the
//!   budget planner that shares the shutdown bound among stop waves.
//! - [`supervisor`]: the core that ties services, restarts, requests and shutdown together.
//!
//! The system calls live at the edge:
//!
//! - [`event_loop`]: the only owner of `mio::Poll`; performs the supervisor's actions.
//! - [`control`]: the control socket, its lock file and connection buffers.
//! - [`signals`]: the signal self-pipe.
//! - [`procfs`]: reading `/proc`.
//! - [`pidfd`]: pidfds, the only way reapd signals a process.
//! - [`spawn`]: starting processes with a clean slate.
//! - [`notify`]: readiness for s6 and systemd.
//! - [`ctl`], [`logging`]: the client and the log format.

// As PID 1 a panic (with panic = "abort", any panic) takes the whole container down, so the
// daemon may contain nothing that can panic on input: no unwrap, expect, panic! or unchecked
// indexing. Unit tests are exempt (clippy.toml); integration tests are separate crates.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod cli;
pub mod config;
pub mod control;
pub mod ctl;
pub mod event_loop;
pub mod logging;
pub mod notify;
pub mod pidfd;
pub mod procfs;
pub mod proctree;
pub mod protocol;
pub mod shutdown;
pub mod signals;
pub mod spawn;
pub mod stop;
pub mod supervisor;

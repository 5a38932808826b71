//! Shared helpers for the integration tests (and `benches/shutdown.rs`), one concern a module:
//!
//! - [`dirs`]: a temporary directory per test ([`TestDir`]), unique names, fixture paths.
//! - [`builder`]: the one way to start the real `reapd`, [`Daemon::builder`].
//! - [`daemon`]: what a test asks of a running reapd (requests, `watch`, signals, its exit and
//!   what it left behind).
//! - [`client`]: control-socket clients ([`Watcher`], [`request_at`]) and event look-ups.
//! - [`procs`]: `/proc` read-outs (stat, status, environment, descriptors) and processes found by
//!   a test's marker, never by name.
//! - [`marked`]: [`Marked`], the guard around any process tree a test starts, and
//!   [`kill_marked`].
//! - [`fixtures`]: the logs `tests/fixtures` write (`chain.sh`, `slowstop.sh`) and their
//!   commands.
//! - [`tools`]: external tools and preconditions (`require`, `run_bounded`, `reapd check`, the C
//!   fixtures, the static binary).
//! - [`cage`]: [`PidsCage`], the pids cgroup and watchdog every fork bomb runs in.
//! - [`running`]: `reapd ctl`, start loggers and readiness gates for the run-side tests.
//!
//! Every process a test starts carries `REAPD_TEST_MARKER=<marker>` in its environment or the
//! marker in its argv. Dropping a [`Daemon`] or a [`Marked`] (also when a test fails) SIGKILLs,
//! by pid, every process that carries its marker, so nothing outlives a test.

// Each test crate uses a part of the harness.
#![allow(dead_code, unused_imports)]

mod builder;
mod cage;
mod client;
mod daemon;
mod dirs;
mod fixtures;
mod marked;
mod procs;
mod running;
mod tools;

pub use builder::*;
pub use cage::*;
pub use client::*;
pub use daemon::*;
pub use dirs::*;
pub use fixtures::*;
pub use marked::*;
pub use procs::*;
pub use running::*;
pub use tools::*;

use std::time::{Duration, Instant};

/// The `reapd` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_reapd");

/// Generous bound for anything that should happen "soon" on a loaded 2-core machine.
pub const SOON: Duration = Duration::from_secs(10);

/// Polls `cond` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

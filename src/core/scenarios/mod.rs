//! Scenarios: the core's behaviour, specified on virtual time.
//!
//! Each test drives the whole supervisor through `core::turn` against the fake kernel of
//! `core::sim`, so what it proves holds for the daemon's own loop; each runs in milliseconds
//! whatever the timeouts, and asserts on events, replies, signals and the exit status, with
//! times exact to the millisecond of virtual time. The kernel-only facts (pidfds, `/proc`,
//! signals between real processes, the socket) are the integration tests' business.
//!
//! One file per subject: `shutdown` (from every moment, and the bound), `budgets` (how waves
//! share the bound), `hooks` (cleanup commands), `sweeps` (the final sweep), `requests`
//! (control requests and their waiters), `reload` (reload races), `single` (single-command
//! mode), `lifecycle` (restarts, leftovers, readiness, the state file, recovery), `liveness`
//! (processes reapd cannot watch or see, shell loops and traps), `running` (start order by
//! readiness, checks, one-shots, restart limits, essential services).

use std::time::Duration;

use crate::wire::events::Event;

mod budgets;
mod hooks;
mod lifecycle;
mod liveness;
mod reload;
mod requests;
mod running;
mod shutdown;
mod single;
mod sweeps;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The `Stopping` event's timeout for `service` (its first stop).
fn stop_timeout_of(w: &crate::core::sim::World, service: &str) -> u64 {
    match w.first(|e| matches!(e, Event::Stopping { service: s, .. } if s == service)) {
        Some((_, Event::Stopping { timeout_ms, .. })) => *timeout_ms,
        other => panic!("{service} never stopped: {other:?}"),
    }
}

/// Whether the final report says clean.
fn clean(w: &crate::core::sim::World) -> bool {
    matches!(w.done(), Some(Event::Done { clean: true, .. }))
}

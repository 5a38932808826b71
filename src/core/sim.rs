//! Virtual time and a fake kernel for driving the core in tests.
//!
//! Owns: the one origin of virtual time. Scenario tests take `epoch()` once and move time forward
//! by adding durations; nothing in them waits.
//! Must never: be used by the daemon.

use std::time::Instant;

/// The origin of virtual time. `Instant` has no constructor but `now`, so this is the one place
/// the core's tests read the clock; everything after is arithmetic on it.
#[allow(clippy::disallowed_methods)]
pub(crate) fn epoch() -> Instant {
    Instant::now()
}

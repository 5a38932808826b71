//! Timers: every kind of deadline the core keeps, behind the one next deadline.
//!
//! Owns: [`Timer`], one variant per kind of deadline with what it is for, and [`earliest`], which
//! picks the next one. The edge waits until that moment (its poll timeout) and feeds
//! `Input::Tick`; there are no periodic wake-ups, so an idle reapd makes no system calls.
//! Must never: hold a deadline that a tick cannot clear: a tick that comes early, late or twice
//! must only ever act on what is due.

use std::time::Instant;

/// Every kind of deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// A service waits out its restart delay.
    Restart,
    /// Requests in flight when the shutdown began get `grace_ms` to finish.
    RequestGrace,
    /// The stop waves' share of the bound is used up: whatever is left gets killed.
    DrainBudget,
    /// The kill and sweep are out of time: the cleanup hooks (or the report) come next.
    KillStage,
    /// The hard end of the shutdown: the report is due.
    Bound,
    /// A stop procedure: its stop timeout, a level's share, a second look after a level was
    /// signalled, or a rescan while it cannot watch every process.
    Stop,
    /// A cleanup hook's share of the bound is used up: it gets killed.
    Hook,
    /// A readiness or health check: an attempt is due or out of time, or a service must be ready
    /// by now.
    Check,
}

/// The earliest of `timers`.
pub fn earliest(timers: impl IntoIterator<Item = (Timer, Instant)>) -> Option<(Timer, Instant)> {
    timers.into_iter().min_by_key(|&(_, at)| at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sim::epoch;
    use std::time::Duration;

    #[test]
    fn the_earliest_wins_and_none_means_idle() {
        let t0 = epoch();
        let s = Duration::from_secs(1);
        assert_eq!(
            earliest([(Timer::Bound, t0 + 2 * s), (Timer::Stop, t0 + s)]),
            Some((Timer::Stop, t0 + s))
        );
        assert_eq!(earliest([]), None);
    }
}

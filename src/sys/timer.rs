//! The loop's precise wake-up: a timerfd armed for the core's next deadline when that deadline
//! is closer than the poll timeout can express.
//!
//! Owns: one `timerfd` (non-blocking, close-on-exec), registered with the poll.
//! Must never: wake the loop on a schedule of its own: it is armed only for the deadline the
//! core gave, and only when `epoll_wait`'s millisecond timeout would overshoot it.
//!
//! Why: `epoll_wait` counts in whole milliseconds and mio rounds a shorter timeout up to one.
//! A stop that waits for a held level to show stopped pauses for a fraction of that (reapd runs
//! at real-time priority while it stops things, so a target that shares its CPU runs only while
//! reapd waits); a millisecond per level is most of the cost of stopping a small tree.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Registry};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::sys::tokens;

/// Deadlines at least this far away are left to the poll timeout.
pub const PRECISE_BELOW: Duration = Duration::from_millis(2);

/// The timerfd and whether it is armed.
#[derive(Debug)]
pub struct PreciseTimer {
    fd: TimerFd,
    armed: bool,
}

impl PreciseTimer {
    /// Creates the timerfd and registers it.
    pub fn new(registry: &Registry) -> io::Result<PreciseTimer> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        registry.register(
            &mut SourceFd(&fd.as_fd().as_raw_fd()),
            tokens::TIMER,
            Interest::READABLE,
        )?;
        Ok(PreciseTimer { fd, armed: false })
    }

    /// Before the poll: arms the timer when `timeout` is short enough to need it.
    pub fn before_poll(&mut self, timeout: Option<Duration>) {
        let Some(t) = timeout.filter(|t| !t.is_zero() && *t < PRECISE_BELOW) else {
            return;
        };
        let spec = TimeSpec::from_duration(t);
        if self
            .fd
            .set(Expiration::OneShot(spec), TimerSetTimeFlags::empty())
            .is_ok()
        {
            self.armed = true;
        }
    }

    /// After the poll: disarms the timer (whatever woke the loop, the next turn computes its own
    /// deadline) and clears its expiry.
    pub fn after_poll(&mut self) {
        if !self.armed {
            return;
        }
        self.armed = false;
        let _ = self.fd.unset();
        let _ = nix::unistd::read(&self.fd, &mut [0u8; 8]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};

    #[test]
    fn a_short_deadline_ends_the_wait_and_leaves_nothing_behind() {
        let mut poll = Poll::new().expect("poll");
        let mut timer = PreciseTimer::new(poll.registry()).expect("timerfd");
        let mut events = Events::with_capacity(4);
        // Far deadlines are the poll timeout's business: nothing armed.
        timer.before_poll(Some(Duration::from_secs(1)));
        assert!(!timer.armed);
        timer.before_poll(Some(Duration::from_micros(200)));
        assert!(timer.armed);
        // Without the timer this poll would wait its whole (generous) timeout.
        poll.poll(&mut events, Some(Duration::from_secs(30)))
            .expect("poll");
        assert!(events.iter().any(|e| e.token() == tokens::TIMER));
        timer.after_poll();
        poll.poll(&mut events, Some(Duration::ZERO)).expect("poll");
        assert!(events.is_empty(), "cleared: no stale wake-up");
    }
}

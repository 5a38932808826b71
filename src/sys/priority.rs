//! reapd's own scheduling priority while it stops processes.
//!
//! Owns: raising reapd above every ordinary process while a stop is under way, and lowering it
//! again afterwards. A CPU-bound fork storm of thousands of processes on two cores leaves an
//! ordinary process a few microseconds per second: reapd would need minutes for one pass over
//! `/proc`. `SCHED_RR` at priority 1, the lowest real-time one, lets it run whenever it has work;
//! round-robin rather than FIFO so that two reapds stopping storms at once (or any other task at
//! that priority) share the CPU instead of one starving the other while it scans. Where that is
//! not permitted, the lowest nice value is the fallback.
//! Must never: let a child inherit the raised priority (`SCHED_RESET_ON_FORK` resets both the
//! policy and a negative nice value in every child), or fail the daemon: an unprivileged reapd
//! simply keeps its priority.

use log::{debug, info};

/// The priority reapd runs at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// As started.
    Normal,
    /// Above every ordinary process, while stopping.
    Urgent,
}

/// What reapd managed to get when it asked for [`Priority::Urgent`].
#[derive(Debug, Default)]
pub struct PriorityControl {
    current: Option<Priority>,
    original_nice: Option<i32>,
    reported: bool,
}

impl PriorityControl {
    /// Applies `want` if it differs from what is in force.
    pub fn set(&mut self, want: Priority) {
        if self.current == Some(want) || (self.current.is_none() && want == Priority::Normal) {
            return;
        }
        match want {
            Priority::Urgent => self.raise(),
            Priority::Normal => self.lower(),
        }
        self.current = Some(want);
    }

    fn raise(&mut self) {
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: sched_setscheduler reads the struct we pass; pid 0 is this process.
        let rt = unsafe {
            libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param)
        };
        if rt == 0 {
            self.note("real-time priority (SCHED_RR 1)");
            return;
        }
        let rt_err = std::io::Error::last_os_error();
        // SAFETY: getpriority/setpriority take plain integers. errno distinguishes -1 results,
        // but a failed read only means we will not restore it exactly.
        let before = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        // Children must not inherit the lower nice value: keep the current policy and add
        // SCHED_RESET_ON_FORK (allowed without privilege), which resets a negative nice value to
        // 0 in every child.
        // SAFETY: sched_getscheduler takes a pid; sched_setscheduler reads the struct we pass.
        let flagged = unsafe {
            let policy = libc::sched_getscheduler(0);
            policy >= 0
                && libc::sched_setscheduler(
                    0,
                    policy | libc::SCHED_RESET_ON_FORK,
                    &libc::sched_param { sched_priority: 0 },
                ) == 0
        };
        // SAFETY: setpriority takes plain integers.
        let nice = if flagged {
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -20) }
        } else {
            -1
        };
        if nice == 0 {
            self.original_nice = Some(before);
            self.note(&format!("nice -20 (real-time priority refused: {rt_err})"));
        } else if !self.reported {
            self.reported = true;
            info!(
                "cannot raise reapd's priority while stopping ({rt_err}); a CPU-bound fork storm \
                 can slow the stop down: give reapd CAP_SYS_NICE to avoid this"
            );
        }
    }

    fn lower(&mut self) {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: as in `raise`.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_OTHER | libc::SCHED_RESET_ON_FORK, &param)
        };
        if let Some(n) = self.original_nice.take() {
            // SAFETY: as in `raise`.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, n) };
        }
        debug!("back to normal priority");
    }

    fn note(&mut self, what: &str) {
        if self.reported {
            debug!("raised to {what} while stopping");
        } else {
            self.reported = true;
            info!("raised to {what} while stopping processes");
        }
    }
}

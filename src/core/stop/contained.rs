//! A stop whose members are a cgroup's: the kill stage kills the cgroup whole, and the kernel's
//! word that the cgroup is empty (`populated 0`) ends the stop without a scan.
//! Must never: end a stop on emptiness read before the stop had seen its members, or wait for
//! that word without a scan to fall back on ([`EMPTY_WAIT`]).

use std::time::Instant;

use super::{EMPTY_WAIT, GROUP_KILL_WAIT, JobOut, Stage, StopHow, StopJob};

impl StopJob {
    /// The members are exactly a cgroup's (membership read from `cgroup.procs`): the kill stage
    /// freezes and kills the cgroup, and [`StopJob::on_empty`] may end the stop.
    pub fn contain(&mut self) {
        self.contained = true;
    }

    /// True when the stop ended on the cgroup's `populated 0` rather than a scan.
    pub fn confirmed_by_cgroup(&self) -> bool {
        self.confirmed_by_cgroup
    }

    /// The cgroup became empty (`populated 0`): every member is gone, without a scan to prove
    /// it. Ignored unless the job is contained and a scan has found members (an emptiness read
    /// before then may predate the processes this stop is for).
    pub fn on_empty(&mut self) {
        if !self.contained || !self.seen_any || self.is_done() {
            return;
        }
        for m in self.members.values_mut() {
            m.gone = true;
        }
        self.in_play.clear();
        self.killed_alive = 0;
        self.checks.clear();
        self.check_at = None;
        self.retry_at = None;
        self.empty_by = None;
        let killed = self.group_killed || self.members.values().any(|m| m.killed);
        self.stage = Stage::Done(if killed {
            StopHow::Killed
        } else {
            StopHow::Exited
        });
        self.confirmed_by_cgroup = true;
    }

    /// The kill stage begins here: a contained stop kills its cgroup, once. Then a look chases
    /// what was forked before the kill, unless every member is in the cgroup: nothing can outrun
    /// that kill, so the stop waits for `populated 0` (at most [`GROUP_KILL_WAIT`]) instead.
    pub(super) fn kill_group(&mut self, out: &mut Vec<JobOut>, now: Instant) {
        if self.contained && !self.group_killed {
            self.group_killed = true;
            out.push(JobOut::KillGroup);
        }
        let reaches_all = self.group_kill_reaches_all();
        self.scan_wanted = !reaches_all;
        if reaches_all {
            self.empty_by.get_or_insert(now + GROUP_KILL_WAIT);
        }
    }

    /// The cgroup was killed whole and, as of the last scan, every member was in it.
    fn group_kill_reaches_all(&self) -> bool {
        self.group_killed && !self.outside_group && self.seen_any
    }

    /// What the last scan showed: whether some member is outside the cgroup.
    pub fn set_outside_group(&mut self, outside: bool) {
        self.outside_group = outside;
    }

    /// Every member the job knows is gone: a contained stop waits a moment for the cgroup to
    /// say it is empty (the kernel tells it a little after the exits), then looks; any other
    /// looks at once.
    pub(super) fn confirm_gone(&mut self, now: Instant) {
        if self.contained {
            let by = now + EMPTY_WAIT;
            self.empty_by = Some(self.empty_by.map_or(by, |t| t.min(by)));
        } else {
            self.scan_wanted = true;
        }
    }
}

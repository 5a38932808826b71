//! The end of the graceful part: everything frozen and killed in one pass (deepest first), and
//! the looks after the kill that chase what was forked just before it.
//! Must never: wait for a process to show stopped before killing it.

use std::time::Instant;

use nix::sys::signal::Signal;

use super::{JobOut, Stage, StopJob};
use crate::core::proctree::{Forest, ProcId, Snapshot};

impl StopJob {
    /// The stop timeout has passed: every member is held (SIGSTOP, top-down) and killed
    /// (SIGKILL, deepest first) in one pass, then looked for again at once. Waiting for each to
    /// show stopped first would take, in a storm of runnable processes, as long as the scheduler
    /// needs to run each once; and it is not needed: the kernel links a child under the same
    /// lock a signal takes, and abandons a fork in flight when SIGKILL arrives, so a look that
    /// begins after the kill lists every child any of them will ever have. The look after the
    /// kill catches those ([`StopJob::kill_stragglers`]) until one finds nobody new.
    pub(super) fn freeze_and_kill(
        &mut self,
        snap: &Snapshot,
        forest: &Forest,
        out: &mut Vec<JobOut>,
        now: Instant,
    ) {
        self.kill_group(out, now);
        let unstopped = self.records_where(snap, forest.top_down(), |m| !m.stopped && !m.killed);
        self.stop_procs(&unstopped, snap, out);
        self.kill(forest, snap, out);
        self.stage = Stage::Killing;
    }

    /// A look after the kill: a process not killed yet was forked just before its parent's
    /// signal, and is frozen and killed in turn, and looked for again (it may have forked too).
    /// One whose SIGKILL could not be sent (no pidfd) gets it again.
    pub(super) fn kill_stragglers(
        &mut self,
        snap: &Snapshot,
        forest: &Forest,
        out: &mut Vec<JobOut>,
        now: Instant,
    ) {
        let fresh = self.records_where(snap, forest.members().iter().copied(), |m| !m.killed);
        if !fresh.is_empty() {
            let sub = Forest::new(snap, fresh.iter().copied());
            self.freeze_and_kill(snap, &sub, out, now);
        }
        for p in forest.deepest_first() {
            if let Some(i) = snap.procs.get(&p)
                && let Some(m) = self.members.get(&i.id())
                && m.killed
                && m.unwatchable
                && !m.gone
            {
                out.push(JobOut::Signal {
                    proc: i.id(),
                    signal: Signal::SIGKILL,
                    what: m.comm.clone(),
                });
            }
        }
    }

    pub(super) fn kill(&mut self, forest: &Forest, snap: &Snapshot, out: &mut Vec<JobOut>) {
        let ids: Vec<ProcId> = forest
            .deepest_first()
            .into_iter()
            .filter_map(|p| snap.procs.get(&p).map(|i| i.id()))
            .collect();
        self.kill_ids(&ids, out);
    }

    /// SIGKILLs these members, in this order, each once.
    pub(super) fn kill_ids(&mut self, ids: &[ProcId], out: &mut Vec<JobOut>) {
        let mut pids = Vec::new();
        for id in ids {
            if let Some(m) = self.members.get_mut(id)
                && !m.killed
            {
                m.killed = true;
                self.killed_alive += 1;
                out.push(JobOut::Signal {
                    proc: *id,
                    signal: Signal::SIGKILL,
                    what: m.comm.clone(),
                });
                pids.push(id.pid);
            }
        }
        if !pids.is_empty() {
            out.push(JobOut::Killed { pids });
        }
    }
}

//! The graceful part: each held process gets the stop signal (and SIGCONT) once every process
//! below it is gone, a level gives way when its share of the stop timeout is used up, and a
//! signal lost in a fork-exec window is sent again.
//! Must never: signal a process that still has a child in play (but for a level whose share ran
//! out), or one born after its ancestor got the signal.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use nix::sys::signal::Signal;

use super::rules::{Signalled, lost_its_signal};
use super::{JobOut, SETTLE, StopJob};
use crate::core::proctree::{Forest, Pid, ProcId, Snapshot};

impl StopJob {
    /// After a full scan (the records are fresh): signals lost on the way are sent again,
    /// processes found since the hold are held, and the due ones asked.
    pub(super) fn graceful(
        &mut self,
        snap: &Snapshot,
        forest: &Forest,
        now: Instant,
        out: &mut Vec<JobOut>,
    ) {
        // Signals lost in a fork-exec window are sent again.
        let lost: Vec<ProcId> = forest
            .members()
            .iter()
            .filter_map(|&p| snap.procs.get(&p))
            .filter(|i| {
                self.members
                    .get(&i.id())
                    .is_some_and(|m| !m.gone && lost_its_signal(m, &i.comm))
            })
            .map(|i| i.id())
            .collect();
        if !lost.is_empty() {
            self.signal_procs(lost, now, out);
        }
        // Processes found since the hold (an orphan, a child that slipped through) are held
        // first, and asked once a scan shows them stopped.
        let unheld = self.records_where(snap, forest.top_down(), |m| {
            !m.spared && !m.stopped && m.signalled.is_none() && !m.gone
        });
        if !unheld.is_empty() {
            self.stop_procs(&unheld, snap, out);
            self.scan_wanted = true;
        }
        // Due: everything below is gone, and it was held before this scan, so what it started
        // is known (the ones just held are not: `stop_procs` marked them, and they wait for a
        // look that shows them stopped).
        let just_held: HashSet<ProcId> = unheld
            .iter()
            .filter_map(|p| snap.procs.get(p).map(|i| i.id()))
            .collect();
        let mut due: Vec<ProcId> = self
            .due_records()
            .into_iter()
            .filter(|id| !just_held.contains(id))
            .collect();
        let (next, levels) = self.levels();
        if std::mem::take(&mut self.force_level) {
            let already: HashSet<ProcId> = due.iter().copied().collect();
            due.extend(next.into_iter().filter(|id| !already.contains(id)));
        }
        if !due.is_empty() {
            self.signal_procs(due, now, out);
            self.level_share(levels.saturating_sub(1), now);
        } else if self.level_deadline.is_none() && levels > 0 {
            self.level_share(levels, now);
        }
    }

    /// A level outlived its share of the stop timeout: the next one is asked now, from the
    /// records, without a scan (with a thousand levels a share is a few milliseconds).
    pub(super) fn force_next_level(&mut self, now: Instant, out: &mut Vec<JobOut>) {
        let (next, levels) = self.levels();
        if !next.is_empty() {
            self.signal_procs(next, now, out);
        }
        self.level_share(levels.saturating_sub(1), now);
    }

    /// From the records, in one pass deepest first: the next level (processes still to be asked
    /// all of whose processes below were asked) and the levels left (the longest chain of
    /// processes still to be asked).
    pub(super) fn levels(&self) -> (Vec<ProcId>, usize) {
        let waiting = |id: &ProcId| {
            self.in_play.contains(id) && self.members.get(id).is_some_and(|m| m.signalled.is_none())
        };
        let mut order: Vec<(usize, ProcId)> = self
            .in_play
            .iter()
            .filter_map(|id| self.members.get(id).map(|m| (m.depth, *id)))
            .collect();
        order.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.pid.cmp(&b.1.pid)));
        // Per process: every process below in play was asked; the longest chain still waiting.
        let mut below: HashMap<ProcId, (bool, usize)> = HashMap::with_capacity(order.len());
        let mut next = Vec::new();
        let mut levels = 0;
        for &(_, id) in &order {
            let (asked, chain) = self
                .children
                .get(&id)
                .into_iter()
                .flatten()
                .filter(|c| self.in_play.contains(c))
                .fold((true, 0), |(asked, chain), c| {
                    let (c_asked, c_chain) = below.get(c).copied().unwrap_or((true, 0));
                    (asked && c_asked && !waiting(c), chain.max(c_chain))
                });
            let me = usize::from(waiting(&id));
            if me == 1 && asked {
                next.push(id);
            }
            levels = levels.max(chain + me);
            below.insert(id, (asked, chain + me));
        }
        (next, levels)
    }

    /// The share of what is left of the stop timeout the next level may take before the one
    /// above is asked anyway.
    pub(super) fn level_share(&mut self, levels_above: usize, now: Instant) {
        let remaining = self.deadline.saturating_duration_since(now);
        let parts = u32::try_from(levels_above)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        self.level_deadline = (levels_above > 0).then(|| now + remaining / parts);
    }

    /// A held process whose children are all gone, judged from the records alone (no scan):
    /// the work is this process's children, not the tree.
    pub(super) fn due_by_records(&self, id: ProcId) -> bool {
        let Some(m) = self.members.get(&id) else {
            return false;
        };
        m.stopped
            && m.signalled.is_none()
            && self.in_play.contains(&id)
            && self
                .children
                .get(&id)
                .is_none_or(|cs| cs.iter().all(|c| !self.in_play.contains(c)))
    }

    pub(super) fn no_live_member(&self) -> bool {
        self.in_play.is_empty()
    }

    /// Holds processes still (SIGSTOP), in the given order.
    pub(super) fn stop_procs(&mut self, pids: &[Pid], snap: &Snapshot, out: &mut Vec<JobOut>) {
        for &p in pids {
            let Some(info) = snap.procs.get(&p) else {
                continue;
            };
            if let Some(m) = self.members.get_mut(&info.id()) {
                m.stopped = true;
                out.push(JobOut::Signal {
                    proc: info.id(),
                    signal: Signal::SIGSTOP,
                    what: m.comm.clone(),
                });
            }
        }
    }

    /// Sends the stop signal, then SIGCONT, to these processes (deepest first).
    pub(super) fn signal_procs(&mut self, ids: Vec<ProcId>, now: Instant, out: &mut Vec<JobOut>) {
        let tick = self.tick;
        let mut sent = Vec::new();
        for id in ids {
            let Some(m) = self.members.get_mut(&id).filter(|m| !m.gone) else {
                continue;
            };
            m.signalled = Some(Signalled {
                comm: m.comm.clone(),
                held: m.stopped && matches!(m.state, 'T' | 't'),
                tick,
            });
            m.stopped = false;
            out.push(JobOut::Signal {
                proc: id,
                signal: self.signal,
                what: m.comm.clone(),
            });
            // A held (or otherwise stopped) process acts on its signal once continued.
            out.push(JobOut::Signal {
                proc: id,
                signal: Signal::SIGCONT,
                what: m.comm.clone(),
            });
            sent.push(id.pid);
        }
        if !sent.is_empty() {
            let remaining = self.deadline.saturating_duration_since(now);
            let settle = now + (remaining / 2).min(SETTLE);
            self.settle_at = Some(self.settle_at.map_or(settle, |t| t.min(settle)));
            out.push(JobOut::Signalled {
                signal: self.signal,
                pids: sent,
            });
        }
    }
}

//! The hold: every process of the tree stopped (SIGSTOP) one level at a time from the top, each
//! level once a check of its parents' states shows them stopped, then the confirming scan; and
//! `main-first`'s main process alone first.
//! Must never: signal a level before the level above shows stopped (within the bounds of
//! [`MAX_HOLD_CHECKS`] and the hold's share of the stop timeout).

use std::time::Instant;

use nix::sys::signal::Signal;

use super::{JobOut, MAX_HOLD, MAX_HOLD_CHECKS, Stage, StopJob, check_pause};
use crate::core::proctree::{ProcId, Snapshot};

impl StopJob {
    pub(super) fn main_alone(&mut self, snap: &Snapshot, out: &mut Vec<JobOut>, now: Instant) {
        let Some(main) = self
            .main
            .filter(|m| snap.get(*m).is_some_and(|p| !p.is_dead()))
        else {
            self.leave_main_alone();
            return;
        };
        let Some(m) = self.members.get(&main) else {
            return;
        };
        if m.signalled.is_some() {
            return;
        }
        if !m.stopped {
            // Held first: what it starts once it has the signal is then known to be its own.
            self.stop_procs(&[main.pid], snap, out);
            self.scan_wanted = true;
        } else if snap.get(main).is_some_and(|p| p.is_stopped()) {
            self.signal_procs(vec![main], now, out);
        } else {
            self.scan_wanted = true;
        }
    }

    /// `main-first`: the main process is gone (or had its time alone): whatever is left of its
    /// tree, what it started after its signal included, is stopped bottom-up.
    pub(super) fn leave_main_alone(&mut self) {
        if let Stage::MainAlone { .. } = self.stage {
            for m in self.members.values_mut() {
                m.spared = false;
            }
            self.stage = Stage::Holding { checks: 0 };
            self.tree_confirmed = false;
            self.scan_wanted = true;
        }
    }

    /// A check of held processes' states came back.
    pub(super) fn on_check(&mut self, snap: &Snapshot, now: Instant, out: &mut Vec<JobOut>) {
        for id in std::mem::take(&mut self.checks) {
            let Some(m) = self.members.get_mut(&id) else {
                continue;
            };
            match snap.get(id) {
                Some(p) => m.state = p.state,
                // Read completely and not there: it exited (its pidfd will say so too).
                None if !snap.incomplete => {
                    m.gone = true;
                    if m.killed {
                        self.killed_alive = self.killed_alive.saturating_sub(1);
                    }
                    self.in_play.remove(&id);
                }
                None => {}
            }
        }
        match self.stage {
            Stage::Holding { .. } => self.advance_hold_records(now, out),
            Stage::Graceful => {
                // Processes found late were held: ask the due ones once they show stopped.
                let due: Vec<ProcId> = self.due_records();
                if !due.is_empty() {
                    self.signal_procs(due, now, out);
                }
            }
            _ => {}
        }
    }

    /// The next step of the hold, judged from the records, from the top level not yet done
    /// down: wait for a held level that does not show stopped yet; else hold the next level not
    /// held yet; else, once a full scan has confirmed the whole tree, the deepest processes get
    /// the signal. Levels above [`StopJob::hold_from`] are done, so the work of a step is its
    /// level's, not the tree's.
    pub(super) fn advance_hold_records(&mut self, now: Instant, out: &mut Vec<JobOut>) {
        let Stage::Holding { mut checks } = self.stage else {
            return;
        };
        self.checks.clear();
        self.check_at = None;
        let hold_by = *self.hold_by.get_or_insert_with(|| {
            now + (self.deadline.saturating_duration_since(now) / 8).min(MAX_HOLD)
        });
        if now >= hold_by {
            self.hold_the_rest(out);
        }
        let depths: Vec<usize> = self
            .levels_to_hold
            .range(self.hold_from..)
            .map(|(d, _)| *d)
            .collect();
        for depth in depths {
            let (unheld, unconfirmed) = self.level_state(depth);
            if !unheld.is_empty() {
                // This level's parents are stopped: holding it now, none of them can be in the
                // middle of handling its SIGCHLD.
                self.stop_ids(&unheld, out);
                self.checks = unheld;
                self.tree_confirmed = false;
                self.stage = Stage::Holding { checks: 0 };
                return;
            }
            if !unconfirmed.is_empty() && checks < MAX_HOLD_CHECKS && now < hold_by {
                self.checks = unconfirmed;
                // A stop lands when its target next runs: the first checks are immediate,
                // later ones leave the CPU to the processes still to stop.
                self.check_at = check_pause(checks + 1).map(|p| now + p);
                self.stage = Stage::Holding { checks: checks + 1 };
                return;
            }
            // Held and showing stopped (or given up on: a process in uninterruptible sleep);
            // the next level gets its own checks.
            self.hold_from = depth + 1;
            checks = 0;
            self.stage = Stage::Holding { checks };
        }
        if !self.tree_confirmed {
            // Every process known is held: one full scan shows anything started just before its
            // parent stopped.
            self.scan_wanted = true;
            return;
        }
        self.stage = Stage::Graceful;
        let due = self.due_records();
        if !due.is_empty() {
            self.signal_procs(due, now, out);
        }
        let levels = self
            .in_play
            .iter()
            .filter_map(|id| self.members.get(id))
            .map(|m| m.waiting_above + 1)
            .max()
            .unwrap_or(0);
        self.level_share(levels.saturating_sub(1), now);
    }

    /// One level of the hold: its processes not held yet, and those held that do not show
    /// stopped yet (in pid order, so the same tree is always held the same way).
    fn level_state(&self, depth: usize) -> (Vec<ProcId>, Vec<ProcId>) {
        let mut unheld = Vec::new();
        let mut unconfirmed = Vec::new();
        for id in self.levels_to_hold.get(&depth).into_iter().flatten() {
            // A process asked already (main-first's main process) is left to its handler.
            let Some(m) = self
                .members
                .get(id)
                .filter(|m| m.signalled.is_none() && !m.gone && self.in_play.contains(id))
            else {
                continue;
            };
            // A zombie cannot handle anything either.
            let shows_stopped = matches!(m.state, 'T' | 't' | 'Z' | 'X');
            if !m.stopped {
                unheld.push(*id);
            } else if !shows_stopped {
                unconfirmed.push(*id);
            }
        }
        (unheld, unconfirmed)
    }

    /// The hold's time is up: everything not held yet is held at once, top-down, and a full
    /// scan confirms it (in a fork storm a stop lands only when its target gets the CPU, and
    /// thousands of runnable processes would make each level wait).
    fn hold_the_rest(&mut self, out: &mut Vec<JobOut>) {
        let rest: Vec<ProcId> = self
            .levels_to_hold
            .range(self.hold_from..)
            .flat_map(|(_, ids)| ids.iter().copied())
            .filter(|id| {
                self.in_play.contains(id)
                    && self
                        .members
                        .get(id)
                        .is_some_and(|m| !m.stopped && !m.gone && m.signalled.is_none())
            })
            .collect();
        self.hold_from = usize::MAX;
        if !rest.is_empty() {
            self.stop_ids(&rest, out);
            self.tree_confirmed = false;
        }
    }

    /// Held processes whose children are all gone, deepest first: due now.
    pub(super) fn due_records(&self) -> Vec<ProcId> {
        let mut due: Vec<(usize, ProcId)> = self
            .in_play
            .iter()
            .filter(|id| self.due_by_records(**id))
            .filter_map(|id| self.members.get(id).map(|m| (m.depth, *id)))
            .collect();
        due.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        due.into_iter().map(|(_, id)| id).collect()
    }

    /// Holds these processes still (SIGSTOP).
    pub(super) fn stop_ids(&mut self, ids: &[ProcId], out: &mut Vec<JobOut>) {
        for id in ids {
            if let Some(m) = self.members.get_mut(id) {
                m.stopped = true;
                out.push(JobOut::Signal {
                    proc: *id,
                    signal: Signal::SIGSTOP,
                    what: m.comm.clone(),
                });
            }
        }
    }
}

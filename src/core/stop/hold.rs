//! The hold: every process of the tree stopped (SIGSTOP) one level at a time from the top, each
//! level once a check of its parents' states shows them stopped, then the confirming scan; and
//! `main-first`'s main process alone first.
//! Must never: signal a level before the level above shows stopped (within the bounds of
//! [`MAX_HOLD_CHECKS`] and the hold's share of the stop timeout).

use std::time::Instant;

use nix::sys::signal::Signal;

use super::{CHECK_PAUSE, IMMEDIATE_CHECKS, JobOut, MAX_HOLD, MAX_HOLD_CHECKS, Stage, StopJob};
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

    /// The next step of the hold, judged from the records: wait for the shallowest held level
    /// that does not show stopped yet; else hold the shallowest level not held yet; else, once a
    /// full scan has confirmed the whole tree, the deepest processes get the signal.
    pub(super) fn advance_hold_records(&mut self, now: Instant, out: &mut Vec<JobOut>) {
        let Stage::Holding { checks } = self.stage else {
            return;
        };
        self.checks.clear();
        self.check_at = None;
        let hold_by = *self.hold_by.get_or_insert_with(|| {
            now + (self.deadline.saturating_duration_since(now) / 8).min(MAX_HOLD)
        });
        let out_of_time = now >= hold_by;
        let mut in_play: Vec<(ProcId, usize, bool, bool)> = self
            .in_play
            .iter()
            .filter_map(|id| {
                // A process asked already (main-first's main process) is left to its handler.
                let m = self.members.get(id).filter(|m| m.signalled.is_none())?;
                // A zombie cannot handle anything either.
                let shows_stopped = matches!(m.state, 'T' | 't' | 'Z' | 'X');
                Some((*id, m.depth, m.stopped, shows_stopped))
            })
            .collect();
        // In pid order: the same tree is always held the same way.
        in_play.sort_unstable_by_key(|&(id, ..)| id.pid);
        let unconfirmed = in_play
            .iter()
            .filter(|(_, _, stopped, shows)| *stopped && !*shows)
            .map(|&(_, d, _, _)| d)
            .min();
        let unheld = in_play
            .iter()
            .filter(|(_, _, stopped, _)| !*stopped)
            .map(|&(_, d, _, _)| d)
            .min();
        let waiting_on = match (unconfirmed, unheld) {
            (Some(w), Some(u)) if w < u => Some(w),
            (Some(w), None) => Some(w),
            _ => None,
        };
        if out_of_time && unheld.is_some() {
            // Everything left at once, top-down (in_play is in pid order; depth decides).
            let mut rest: Vec<(usize, ProcId)> = in_play
                .iter()
                .filter(|(_, _, stopped, _)| !*stopped)
                .map(|&(id, d, ..)| (d, id))
                .collect();
            rest.sort_unstable_by_key(|&(d, id)| (d, id.pid));
            let ids: Vec<ProcId> = rest.into_iter().map(|(_, id)| id).collect();
            self.stop_ids(&ids, out);
            self.tree_confirmed = false;
            self.scan_wanted = true;
            return;
        }
        if let Some(depth) = waiting_on
            && checks < MAX_HOLD_CHECKS
            && !out_of_time
        {
            self.checks = in_play
                .iter()
                .filter(|&&(_, d, stopped, shows)| d == depth && stopped && !shows)
                .map(|&(id, ..)| id)
                .collect();
            // A stop lands when its target next runs: the first checks are immediate, later
            // ones leave the CPU to the processes still to stop.
            if checks + 1 >= IMMEDIATE_CHECKS {
                self.check_at = Some(now + CHECK_PAUSE);
            }
            self.stage = Stage::Holding { checks: checks + 1 };
            return;
        }
        if let Some(depth) = unheld {
            // This level's parents are stopped: holding it now, none of them can be in the middle
            // of handling its SIGCHLD.
            let level: Vec<ProcId> = in_play
                .iter()
                .filter(|&&(_, d, stopped, _)| d == depth && !stopped)
                .map(|&(id, ..)| id)
                .collect();
            self.stop_ids(&level, out);
            self.checks = level;
            self.tree_confirmed = false;
            self.stage = Stage::Holding { checks: 0 };
            return;
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

//! Cleanup hooks: the config's `cleanup` commands, run one after another once every process is
//! gone.
//!
//! Owns: the order of the hooks, each one's fair share of what is left of the bound, killing one
//! that overruns (and whatever a hook leaves running), and the report of each.
//! Must never: let one hook starve the rest, or let a hook's processes outlive the shutdown.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::core::outbox::Outbox;
use crate::core::proctree::ProcId;
use crate::core::stop::StopJob;
use crate::wire::events::{Event, ExitStatus};
use crate::wire::text::ms;

/// Time kept at the end of the hooks' share to kill one that overruns.
pub const HOOK_KILL_MARGIN: Duration = Duration::from_millis(250);

/// The hook that runs now.
#[derive(Debug)]
pub struct HookRun {
    /// Its place in the `cleanup` list.
    pub index: usize,
    /// Its process, once spawned.
    pub proc: Option<ProcId>,
    /// Its process was reaped.
    reaped: bool,
    started: Instant,
    /// The end of its share.
    deadline: Instant,
    /// Whether it succeeded, and what happened, once known.
    outcome: Option<(bool, String)>,
    /// The kill of an overrunning hook, or of what a finished hook left running.
    pub reaper: Option<StopJob>,
}

/// The cleanup stage of a shutdown.
#[derive(Debug)]
pub struct Hooks {
    next: usize,
    deadline: Instant,
    /// The hook that runs now.
    pub run: Option<HookRun>,
    /// Processes the kill did not end (uninterruptible, say), alive when the hooks began: not
    /// any hook's, whatever they are descended from.
    pub survivors: HashSet<ProcId>,
}

impl Hooks {
    /// Hooks that must all be over by `deadline`, with the kill's `survivors` still alive.
    pub fn new(deadline: Instant, survivors: HashSet<ProcId>) -> Hooks {
        Hooks {
            next: 0,
            deadline,
            run: None,
            survivors,
        }
    }

    /// Reports the hook that just ended (if it has) and starts the next one. True once every
    /// hook has run.
    pub fn advance(
        &mut self,
        cmds: &[Vec<String>],
        now: Instant,
        out: &mut Outbox,
        failures: &mut Vec<String>,
    ) -> bool {
        if let Some(h) = &mut self.run {
            let Some((ok, result)) = h.outcome.clone() else {
                return false;
            };
            if h.reaper.as_ref().is_some_and(|j| !j.is_done()) {
                return false;
            }
            // Children of a hook that exited are killed too: nothing may outlive shutdown.
            if h.reaper.is_none() && h.proc.is_some() {
                h.reaper = Some(StopJob::kill_now(now));
                return false;
            }
            let cmd = cmds.get(h.index).cloned().unwrap_or_default();
            if !ok {
                failures.push(format!("cleanup[{}] {}: {result}", h.index, cmd.join(" ")));
            }
            out.event(Event::Cleanup {
                index: h.index,
                cmd,
                ok,
                result,
                elapsed_ms: ms(now.saturating_duration_since(h.started)),
            });
            self.run = None;
        }
        let Some(cmd) = cmds.get(self.next).cloned() else {
            return true;
        };
        let index = self.next;
        self.next += 1;
        let left = u32::try_from(cmds.len() - index).unwrap_or(u32::MAX);
        // Each hook gets a fair share of what is left, so one that hangs cannot starve the rest,
        // and the last share ends early enough to kill an overrunning hook before the deadline.
        let remaining = self.deadline.saturating_duration_since(now);
        let usable = remaining.saturating_sub((remaining / 10).min(HOOK_KILL_MARGIN));
        let share = usable / left;
        self.run = Some(HookRun {
            index,
            proc: None,
            reaped: false,
            started: now,
            deadline: now + share,
            outcome: None,
            reaper: None,
        });
        out.event(Event::CleanupStarted {
            index,
            cmd: cmd.clone(),
            limit_ms: ms(share),
        });
        out.push(crate::core::io::Action::Spawn {
            who: crate::core::io::Spawnee::Hook(index),
            cmd,
            env: Vec::new(),
            cwd: None,
            inherit_stdin: false,
            launch: Default::default(),
            notify_fd: None,
            cgroup: None,
        });
        false
    }

    /// The running hook's process started.
    pub fn spawned(&mut self, index: usize, proc: ProcId) -> bool {
        match self.run.as_mut().filter(|h| h.index == index) {
            Some(h) => {
                h.proc = Some(proc);
                true
            }
            None => false,
        }
    }

    /// The running hook could not be started.
    pub fn spawn_failed(&mut self, index: usize, error: &str) {
        if let Some(h) = self.run.as_mut().filter(|h| h.index == index) {
            h.outcome = Some((false, format!("cannot start: {error}")));
        }
    }

    /// A child was reaped; true if it was the running hook.
    pub fn reaped(&mut self, pid: i32, status: ExitStatus) -> bool {
        let Some(h) = self
            .run
            .as_mut()
            .filter(|h| h.proc.is_some_and(|p| p.pid == pid))
        else {
            return false;
        };
        h.reaped = true;
        h.outcome
            .get_or_insert_with(|| (status.success(), status.to_string()));
        true
    }

    /// Time passed: a hook still running at the end of its share is killed.
    pub fn tick(&mut self, now: Instant, out: &mut Outbox) {
        if let Some(h) = self.run.as_mut()
            && h.outcome.is_none()
            && h.reaper.is_none()
            && now >= h.deadline
        {
            out.event(Event::CleanupOverran { index: h.index });
            h.outcome = Some((
                false,
                "killed: ran past its share of the shutdown bound".into(),
            ));
            h.reaper = Some(StopJob::kill_now(now));
        }
    }

    /// True when the running hook is over: its outcome is known, its process reaped (or being
    /// killed), and whatever it left is gone.
    pub fn ready_to_advance(&self) -> bool {
        self.run.as_ref().is_some_and(|h| {
            h.outcome.is_some()
                && h.reaper.as_ref().is_none_or(StopJob::is_done)
                && (h.proc.is_none() || h.reaped || h.reaper.is_some())
        })
    }

    /// When [`Hooks::tick`] has work to do.
    pub fn deadline(&self) -> Option<Instant> {
        self.run
            .as_ref()
            .filter(|h| h.reaper.is_none() && h.outcome.is_none())
            .map(|h| h.deadline)
    }

    /// The running kill, if any.
    pub fn reaper(&self) -> Option<&StopJob> {
        self.run.as_ref().and_then(|h| h.reaper.as_ref())
    }

    /// The running kill, to feed it.
    pub fn reaper_mut(&mut self) -> Option<&mut StopJob> {
        self.run.as_mut().and_then(|h| h.reaper.as_mut())
    }

    /// The shutdown bound is reached: a hook still running is reported failed and its process
    /// returned, to be killed and listed as a survivor; hooks never started are failures too.
    pub fn abandon(
        &mut self,
        cmds: &[Vec<String>],
        now: Instant,
        out: &mut Outbox,
        failures: &mut Vec<String>,
    ) -> Option<(ProcId, String)> {
        let mut left = None;
        if let Some(h) = self.run.take() {
            let cmd = cmds.get(h.index).cloned().unwrap_or_default();
            let result = h
                .outcome
                .map(|(_, r)| r)
                .unwrap_or_else(|| "killed at the shutdown deadline".into());
            if let Some(p) = h.proc.filter(|_| !h.reaped) {
                left = Some((p, cmd.join(" ")));
            }
            failures.push(format!("cleanup[{}] {}: {result}", h.index, cmd.join(" ")));
            out.event(Event::Cleanup {
                index: h.index,
                cmd,
                ok: false,
                result,
                elapsed_ms: ms(now.saturating_duration_since(h.started)),
            });
        }
        let skipped = cmds.len().saturating_sub(self.next);
        if skipped > 0 {
            failures.push(format!(
                "{skipped} cleanup command(s) not run: no time left"
            ));
        }
        self.next = cmds.len();
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::io::Action;
    use crate::core::sim::epoch;

    fn cmds(n: usize) -> Vec<Vec<String>> {
        (0..n).map(|i| vec![format!("hook{i}")]).collect()
    }

    fn limits(out: &mut Outbox) -> Vec<u64> {
        out.take()
            .into_iter()
            .filter_map(|a| match a {
                Action::Event(Event::CleanupStarted { limit_ms, .. }) => Some(limit_ms),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn each_hook_gets_a_fair_share_and_the_last_leaves_time_to_kill() {
        let t0 = epoch();
        let c = cmds(3);
        let mut out = Outbox::default();
        let mut failures = Vec::new();
        let mut h = Hooks::new(t0 + Duration::from_secs(3), HashSet::new());
        assert!(!h.advance(&c, t0, &mut out, &mut failures));
        // 3 s less a margin of 250 ms, shared by three.
        assert_eq!(limits(&mut out), [916]);
        // The first one finishes at once: the next two share what is left.
        h.spawned(0, ProcId { pid: 9, start: 1 });
        h.reaped(9, ExitStatus::Code(0));
        assert!(
            !h.advance(&c, t0, &mut out, &mut failures),
            "leftover check"
        );
        if let Some(j) = h.reaper_mut() {
            j.on_scan(&crate::core::proctree::Snapshot::new(1, []), &[], t0);
        }
        assert!(h.ready_to_advance());
        assert!(!h.advance(&c, t0, &mut out, &mut failures));
        assert_eq!(limits(&mut out), [1375]);
        assert!(failures.is_empty());
    }

    #[test]
    fn an_overrunning_hook_is_killed_and_the_rest_are_failures_at_the_bound() {
        let t0 = epoch();
        let c = cmds(2);
        let mut out = Outbox::default();
        let mut failures = Vec::new();
        let mut h = Hooks::new(t0 + Duration::from_secs(2), HashSet::new());
        h.advance(&c, t0, &mut out, &mut failures);
        h.spawned(0, ProcId { pid: 9, start: 1 });
        let end = h.deadline().expect("a share");
        h.tick(end, &mut out);
        assert!(h.reaper().is_some(), "killed at the end of its share");
        assert!(h.deadline().is_none());
        let left = h.abandon(&c, end, &mut out, &mut failures);
        assert_eq!(left.map(|(p, _)| p.pid), Some(9));
        assert_eq!(failures.len(), 2, "{failures:?}");
    }
}

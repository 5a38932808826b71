//! The stop procedure for one set of processes: graceful bottom-up, then freeze-then-kill.
//!
//! Owns: [`StopJob`], used for every stop reapd performs — `stop NAME`, restarts, reload, each
//! service of a shutdown wave, the final kill of everything left, and overrunning cleanup hooks.
//! One code path, so what the tests prove for shutdown holds for all of them.
//! Must never: read `/proc`, send a signal or look at a clock. It is fed snapshots, "process
//! gone" notices and the current time, and answers with [`JobOut`] actions.
//!
//! Contract: after creating a job or feeding it anything, the caller checks [`StopJob::wants_scan`]
//! and, if set, scans and calls [`StopJob::on_scan`]; it calls [`StopJob::on_tick`] once
//! [`StopJob::deadline`] has passed (early or repeated ticks are harmless).
//!
//! Bottom-up is something to wait for, not something to send: signalling six levels within a
//! microsecond lets the scheduler pick the order. So a process receives the stop signal only once
//! every process below it is gone, or once that level's share of the stop timeout is used up.

#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::core::proctree::{Forest, Pid, ProcId, Snapshot};
use crate::wire::config::StopScope;

/// Freeze passes before reapd gives up on reaching a fixpoint and kills what it has.
pub const MAX_FREEZE_ROUNDS: u32 = 64;
/// How soon to look again while reapd cannot see or watch every member (the process table could
/// not be read completely, or no pidfd could be opened): there is no exit event to wait for.
pub const RETRY: Duration = Duration::from_millis(100);
/// Longest wait, after a level got its signal, before reapd looks again for processes that
/// exec'd since and may have lost the signal on the way (see [`StopJob`]'s graceful rules).
pub const SETTLE: Duration = Duration::from_secs(1);
/// How long a process that just lost a child we stopped gets, in any case, to start a replacement
/// before it is taken for a leaf: its wake-up may not even have happened when reapd looks.
pub const RESPAWN_MIN: Duration = Duration::from_millis(20);
/// How long it gets while it keeps running: a shell loop forks its next command at once.
pub const RESPAWN_WAIT: Duration = Duration::from_millis(200);
/// How often to look while waiting for such a replacement.
pub const RESPAWN_POLL: Duration = Duration::from_millis(20);

/// How a stop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopHow {
    /// Every process left after the stop signal.
    Exited,
    /// Some processes had to be killed.
    Killed,
    /// Nothing was running.
    Idle,
}

impl StopHow {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StopHow::Exited => "exited",
            StopHow::Killed => "killed",
            StopHow::Idle => "idle",
        }
    }
}

/// What a job asks the event loop to do, or reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOut {
    /// Send a signal through the process's pidfd.
    Signal {
        /// Target.
        proc: ProcId,
        /// Signal.
        signal: Signal,
    },
    /// Open a pidfd for the process so its exit is noticed.
    Watch(ProcId),
    /// Progress: these pids just received the stop signal (one level, deepest first).
    Signalled {
        /// Signal sent.
        signal: Signal,
        /// Pids.
        pids: Vec<Pid>,
    },
    /// Progress: these pids were frozen and killed, deepest first.
    Killed {
        /// Pids.
        pids: Vec<Pid>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Graceful,
    Freezing { round: u32 },
    Killing,
    Done(StopHow),
}

/// One stop in progress.
#[derive(Debug)]
pub struct StopJob {
    signal: Signal,
    scope: StopScope,
    main: Option<ProcId>,
    started: Instant,
    deadline: Instant,
    stage: Stage,
    level_deadline: Option<Instant>,
    force_level: bool,
    /// A second look shortly after a level got the signal (for signals lost in a fork-exec
    /// window), or soon while a process is expected to start a replacement.
    settle_at: Option<Instant>,
    scan_wanted: bool,
    seen_any: bool,
    signalled: HashMap<ProcId, Option<ProcId>>,
    /// The command name each signalled process had when it was signalled.
    signalled_as: HashMap<ProcId, String>,
    /// Processes that lost a child we signalled: the number of scans done at that moment, and
    /// the time of the first scan after it.
    bereaved: HashMap<ProcId, (u64, Option<Instant>)>,
    /// The scan in which each member was first seen.
    first_seen: HashMap<ProcId, u64>,
    scans: u64,
    frozen: HashSet<ProcId>,
    killed: HashSet<ProcId>,
    gone: HashSet<ProcId>,
    watched: HashSet<ProcId>,
    /// Members reapd could not open a pidfd for: their exit is only noticed by rescanning.
    unwatched: HashSet<ProcId>,
    /// While blind (an incomplete scan, unwatched members), when to scan again.
    retry_at: Option<Instant>,
    /// No exit will ever be announced (the event loop cannot wait for events): rescan every
    /// [`RETRY`] until the job is done.
    blind: bool,
}

impl StopJob {
    /// A graceful stop: `signal` bottom-up (or to `main` only, with [`StopScope::Main`]), then
    /// freeze-then-kill once `timeout` has passed.
    pub fn new(
        signal: Signal,
        scope: StopScope,
        main: Option<ProcId>,
        timeout: Duration,
        now: Instant,
    ) -> Self {
        StopJob {
            signal,
            scope,
            main,
            started: now,
            deadline: now + timeout,
            stage: Stage::Graceful,
            level_deadline: None,
            force_level: false,
            settle_at: None,
            scan_wanted: true,
            seen_any: false,
            signalled: HashMap::new(),
            signalled_as: HashMap::new(),
            bereaved: HashMap::new(),
            first_seen: HashMap::new(),
            scans: 0,
            frozen: HashSet::new(),
            killed: HashSet::new(),
            gone: HashSet::new(),
            watched: HashSet::new(),
            unwatched: HashSet::new(),
            retry_at: None,
            blind: false,
        }
    }

    /// A stop that skips the graceful part: freeze and kill at once.
    pub fn kill_now(now: Instant) -> Self {
        let mut job = StopJob::new(Signal::SIGKILL, StopScope::Tree, None, Duration::ZERO, now);
        job.stage = Stage::Freezing { round: 0 };
        job
    }

    /// True once a scan has found a member.
    pub fn has_seen_any(&self) -> bool {
        self.seen_any
    }

    /// When the job was created.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// True once a scan is needed to make progress.
    pub fn wants_scan(&self) -> bool {
        self.scan_wanted && !self.is_done()
    }

    /// How the job ended, once every member is gone.
    pub fn outcome(&self) -> Option<StopHow> {
        match self.stage {
            Stage::Done(how) => Some(how),
            _ => None,
        }
    }

    /// True once every member is gone.
    pub fn is_done(&self) -> bool {
        self.outcome().is_some()
    }

    /// True once the graceful part is over.
    #[cfg(test)]
    pub fn is_killing(&self) -> bool {
        matches!(self.stage, Stage::Freezing { .. } | Stage::Killing)
    }

    /// Every process this job has sent a signal to.
    pub fn touched(&self) -> impl Iterator<Item = ProcId> + '_ {
        self.signalled.keys().chain(self.frozen.iter()).copied()
    }

    /// The next moment [`StopJob::on_tick`] has work to do.
    pub fn deadline(&self) -> Option<Instant> {
        let graceful = match self.stage {
            Stage::Graceful => [Some(self.deadline), self.level_deadline, self.settle_at],
            _ => [None; 3],
        };
        graceful.into_iter().chain([self.retry_at]).flatten().min()
    }

    /// Moves the stop timeout earlier (a shutdown wave with less time than the service asks).
    pub fn clip(&mut self, deadline: Instant) {
        if deadline < self.deadline {
            self.deadline = deadline;
        }
    }

    /// Skips what is left of the graceful part.
    pub fn escalate(&mut self) {
        if self.stage == Stage::Graceful {
            self.stage = Stage::Freezing { round: 0 };
            self.scan_wanted = true;
        }
    }

    /// Time has passed: end a level's share or the graceful part.
    pub fn on_tick(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|r| now >= r) {
            self.retry_at = None;
            self.scan_wanted = true;
        }
        if self.stage != Stage::Graceful {
            return;
        }
        if now >= self.deadline {
            self.escalate();
            return;
        }
        if self.level_deadline.is_some_and(|l| now >= l) {
            self.level_deadline = None;
            self.force_level = true;
            self.scan_wanted = true;
        }
        if self.settle_at.is_some_and(|t| now >= t) {
            self.settle_at = None;
            self.scan_wanted = true;
        }
    }

    /// No pidfd could be opened for a member (out of descriptors, ...): it is alive as far as
    /// anyone knows, but its exit will not be announced, so the job rescans on its own.
    pub fn on_unwatchable(&mut self, id: ProcId, now: Instant) {
        if !self.gone.contains(&id) && self.unwatched.insert(id) {
            self.retry_at.get_or_insert(now + RETRY);
        }
    }

    /// From now on no exit will be announced: the job rescans until it is done.
    pub fn set_blind(&mut self, now: Instant) {
        if !self.blind {
            self.blind = true;
            self.retry_at.get_or_insert(now + RETRY);
        }
    }

    /// A member's pidfd became readable (it exited) or it could not be found any more.
    pub fn on_gone(&mut self, id: ProcId) {
        if !self.gone.insert(id) {
            return;
        }
        if let Some(Some(parent)) = self.signalled.get(&id) {
            self.bereaved.entry(*parent).or_insert((self.scans, None));
        }
        self.after_gone();
    }

    /// The same, learnt from a scan.
    fn note_gone(&mut self, id: ProcId, now: Instant) {
        if !self.gone.insert(id) {
            return;
        }
        if let Some(Some(parent)) = self.signalled.get(&id) {
            self.bereaved
                .entry(*parent)
                .or_insert((self.scans.saturating_sub(1), Some(now)));
        }
    }

    fn after_gone(&mut self) {
        match self.stage {
            Stage::Graceful => self.scan_wanted = true,
            Stage::Killing => {
                // One confirming scan once every killed process is gone, not one per death.
                if self.killed.iter().all(|k| self.gone.contains(k)) {
                    self.scan_wanted = true;
                }
            }
            Stage::Freezing { .. } | Stage::Done(_) => {}
        }
    }

    /// Feeds a fresh scan. `members` are the pids that belong to this job in `snap`.
    pub fn on_scan(&mut self, snap: &Snapshot, members: &[Pid], now: Instant) -> Vec<JobOut> {
        self.scan_wanted = false;
        let mut out = Vec::new();
        if self.is_done() {
            return out;
        }
        self.scans += 1;
        for (_, at) in self.bereaved.values_mut() {
            at.get_or_insert(now);
        }
        let alive: Vec<Pid> = members
            .iter()
            .copied()
            .filter(|p| {
                snap.procs
                    .get(p)
                    .is_some_and(|i| !i.is_dead() && !self.gone.contains(&i.id()))
            })
            .collect();
        let id = |p: Pid| snap.procs.get(&p).map(|i| i.id());
        for &p in &alive {
            if let Some(i) = id(p)
                && self.watched.insert(i)
            {
                self.first_seen.insert(i, self.scans);
                out.push(JobOut::Watch(i));
            }
        }
        let alive_ids: HashSet<ProcId> = alive.iter().filter_map(|&p| id(p)).collect();
        self.unwatched.retain(|u| alive_ids.contains(u));
        // A complete scan is as good as the pidfd for telling who is gone, and may come first:
        // a parent must count as having lost its child as soon as the child is seen gone.
        if !snap.incomplete {
            let dead: Vec<ProcId> = self
                .watched
                .iter()
                .copied()
                .filter(|w| !self.gone.contains(w) && snap.get(*w).is_none_or(|p| p.is_dead()))
                .collect();
            for w in dead {
                self.note_gone(w, now);
            }
        }
        // Not seeing everything is not the same as everything being gone.
        let blind = self.blind || snap.incomplete || !self.unwatched.is_empty();
        self.retry_at = blind.then(|| now + RETRY);
        if alive.is_empty() && snap.incomplete {
            return out;
        }
        if alive.is_empty() {
            let how = if !self.killed.is_empty() {
                StopHow::Killed
            } else if self.seen_any || !self.signalled.is_empty() {
                StopHow::Exited
            } else {
                StopHow::Idle
            };
            self.stage = Stage::Done(how);
            return out;
        }
        self.seen_any = true;
        let forest = Forest::new(snap, alive.iter().copied());
        match self.stage {
            Stage::Graceful => self.graceful(snap, &forest, now, &mut out),
            Stage::Freezing { round } => {
                let new: Vec<Pid> = forest
                    .top_down()
                    .into_iter()
                    .filter(|&p| id(p).is_some_and(|i| !self.frozen.contains(&i)))
                    .collect();
                for &p in &new {
                    if let Some(i) = id(p) {
                        self.frozen.insert(i);
                        out.push(JobOut::Signal {
                            proc: i,
                            signal: Signal::SIGSTOP,
                        });
                    }
                }
                let all_stopped = alive
                    .iter()
                    .all(|p| snap.procs.get(p).is_some_and(|i| i.is_stopped()));
                if (new.is_empty() && all_stopped && !snap.incomplete) || round >= MAX_FREEZE_ROUNDS
                {
                    self.kill(&forest, snap, &mut out);
                    self.stage = Stage::Killing;
                } else {
                    self.stage = Stage::Freezing { round: round + 1 };
                    self.scan_wanted = true;
                }
            }
            Stage::Killing => {
                // Anything alive here escaped the freeze (it was forked while the fixpoint search
                // gave up); stop and kill it the same way.
                let fresh: Vec<Pid> = forest
                    .members()
                    .iter()
                    .copied()
                    .filter(|&p| id(p).is_some_and(|i| !self.killed.contains(&i)))
                    .collect();
                if !fresh.is_empty() {
                    let sub = Forest::new(snap, fresh);
                    for p in sub.top_down() {
                        if let Some(i) = id(p)
                            && self.frozen.insert(i)
                        {
                            out.push(JobOut::Signal {
                                proc: i,
                                signal: Signal::SIGSTOP,
                            });
                        }
                    }
                    self.kill(&sub, snap, &mut out);
                }
                // Still alive although killed: the SIGKILL could not be sent (no descriptor for
                // a pidfd, say). Sending it again is harmless.
                for p in forest.deepest_first() {
                    if let Some(i) = id(p).filter(|i| self.killed.contains(i)) {
                        out.push(JobOut::Signal {
                            proc: i,
                            signal: Signal::SIGKILL,
                        });
                    }
                }
            }
            Stage::Done(_) => {}
        }
        out
    }

    fn graceful(&mut self, snap: &Snapshot, forest: &Forest, now: Instant, out: &mut Vec<JobOut>) {
        let id = |p: Pid| snap.procs.get(&p).map(|i| i.id());
        let signalled = |p: Pid| id(p).is_some_and(|i| self.signalled.contains_key(&i));
        let main_alive = self
            .main
            .filter(|m| forest.members().contains(&m.pid) && id(m.pid) == Some(*m));
        if self.scope == StopScope::Main
            && let Some(m) = main_alive
        {
            // Only the main process is asked; the rest waits for the stop timeout.
            self.force_level = false;
            if !signalled(m.pid) {
                self.signal_level(snap, vec![m.pid], out);
            }
            return;
        }
        // Signalled between fork and exec, a child still runs its parent's code and handlers: a
        // trap handler takes the signal and exec then forgets it. So a process that has exec'd
        // since it was signalled (its command name changed) gets the signal once more.
        let lost: Vec<Pid> = forest
            .members()
            .iter()
            .copied()
            .filter(|&p| {
                let Some(info) = snap.procs.get(&p) else {
                    return false;
                };
                self.signalled_as
                    .get(&info.id())
                    .is_some_and(|comm| *comm != info.comm)
            })
            .collect();
        for p in lost {
            if let Some(info) = snap.procs.get(&p) {
                self.signalled_as.insert(info.id(), info.comm.clone());
                out.push(JobOut::Signal {
                    proc: info.id(),
                    signal: self.signal,
                });
                out.push(JobOut::Signal {
                    proc: info.id(),
                    signal: Signal::SIGCONT,
                });
            }
        }
        let lost_child_at =
            |p: Pid| id(p).and_then(|i| self.bereaved.get(&i).map(|(scan, _)| *scan));
        // It just lost a child we stopped and is running: probably starting the next one (a shell
        // loop). Signalled now, between two commands, it would start that command anyway and
        // only act on the signal once the command ends.
        let respawning = |p: Pid| {
            let running = snap.procs.get(&p).is_some_and(|i| i.state == 'R');
            let since = id(p)
                .and_then(|i| self.bereaved.get(&i))
                .and_then(|(_, at)| *at);
            since.is_some_and(|at| now < at + RESPAWN_MIN || (running && now < at + RESPAWN_WAIT))
        };
        let seen_at = |p: Pid| {
            id(p)
                .and_then(|i| self.first_seen.get(&i).copied())
                .unwrap_or(0)
        };
        // Started by a process that already has the stop signal: part of that process's own
        // shutdown (a trap running cleanup commands). It is left to that process, and killed with
        // the rest at the stop timeout if it lingers, as systemd does.
        let spared = |p: Pid| forest.above(p).into_iter().any(signalled);
        // `q` replaced a child of its parent `p` that we stopped (a shell loop's next command, a
        // master's respawned worker): it first appeared after `p` lost that child.
        let replaces = |q: Pid, p: Pid| lost_child_at(p).is_some_and(|at| seen_at(q) > at);
        // A replacement waits for its parent's turn: stopping it alone would only make the
        // parent start another.
        let held = |q: Pid| {
            forest
                .above(q)
                .first()
                .is_some_and(|&p| !signalled(p) && replaces(q, p))
        };
        let respawner = |p: Pid| {
            let below = forest.below(p);
            !spared(p)
                && lost_child_at(p).is_some()
                && !below.is_empty()
                && below.iter().all(|&q| replaces(q, p))
        };
        let mut chosen: HashSet<Pid> = forest
            .members()
            .iter()
            .copied()
            .filter(|&p| !signalled(p))
            .filter(|&p| {
                let below = forest.below(p);
                (below.is_empty() && !spared(p) && !held(p) && !respawning(p))
                    || respawner(p)
                    // A level's share is used up: the deepest processes still without the signal
                    // get it, so every process is asked before the timeout.
                    // (A replacement still waits for its parent, and what a signalled process
                    // started is that process's business.)
                    || (self.force_level
                        && !spared(p)
                        && !held(p)
                        && below.iter().all(|&q| signalled(q) || held(q) || spared(q)))
            })
            .collect();
        // Whatever still runs below a chosen process goes with it.
        for p in chosen.clone() {
            chosen.extend(
                forest
                    .below(p)
                    .into_iter()
                    .filter(|&q| !signalled(q) && !spared(q)),
            );
        }
        self.force_level = false;
        // Deepest first, except that a respawning parent goes just before its replacements: a
        // shell runs its trap only when its current command ends, so it must already have the
        // signal when that command dies, or it starts the next one first.
        let respawners: Vec<Pid> = chosen.iter().copied().filter(|&p| respawner(p)).collect();
        // Computed once: per-member lookups over every respawner's subtree would cost the cube of
        // the tree's size, and a fork storm has thousands of members.
        let order: Vec<Pid> = forest.deepest_first();
        let below_respawner: HashMap<Pid, HashSet<Pid>> = respawners
            .iter()
            .map(|&r| (r, forest.below(r).into_iter().collect()))
            .collect();
        let under_respawner: HashSet<Pid> = below_respawner.values().flatten().copied().collect();
        let follows_its_parent = |q: Pid| under_respawner.contains(&q);
        let mut eligible: Vec<Pid> = Vec::new();
        for &p in order.iter().filter(|p| chosen.contains(p)) {
            if follows_its_parent(p) {
                continue;
            }
            eligible.push(p);
            if let Some(below) = below_respawner.get(&p) {
                eligible.extend(
                    order
                        .iter()
                        .filter(|q| chosen.contains(q) && below.contains(q))
                        .copied(),
                );
            }
        }
        let awaiting_replacement = forest
            .members()
            .iter()
            .any(|&p| !signalled(p) && forest.below(p).is_empty() && respawning(p));
        let acted = !eligible.is_empty();
        if acted {
            self.signal_level(snap, eligible, out);
        }
        // The next looks: a short settle after a level got the signal, and the end of the next
        // level's share.
        // Processes started by signalled ones are their parents' business: not a level of their own.
        let has_signal = |p: Pid| id(p).is_some_and(|i| self.signalled.contains_key(&i));
        let unsignalled = |p: Pid| !has_signal(p) && !forest.above(p).into_iter().any(has_signal);
        let levels_left = forest
            .roots()
            .into_iter()
            .map(|r| forest.chain_len(r, &unsignalled))
            .max()
            .unwrap_or(0);
        let remaining = self.deadline.saturating_duration_since(now);
        if acted {
            self.settle_at = Some(now + (remaining / 2).min(SETTLE));
        }
        if awaiting_replacement {
            let soon = now + RESPAWN_POLL;
            self.settle_at = Some(self.settle_at.map_or(soon, |t| t.min(soon)));
        }
        if acted || self.level_deadline.is_none() {
            self.level_deadline =
                (levels_left > 0).then(|| now + remaining / (levels_left as u32 + 1));
        }
    }

    /// Sends the stop signal, then SIGCONT, to one level (deepest first).
    fn signal_level(&mut self, snap: &Snapshot, pids: Vec<Pid>, out: &mut Vec<JobOut>) {
        for &p in &pids {
            let Some(info) = snap.procs.get(&p) else {
                continue;
            };
            let parent = snap.procs.get(&info.ppid).map(|pp| pp.id());
            self.signalled.insert(info.id(), parent);
            self.signalled_as.insert(info.id(), info.comm.clone());
            out.push(JobOut::Signal {
                proc: info.id(),
                signal: self.signal,
            });
            // A stopped process cannot act on its stop signal until it is continued.
            out.push(JobOut::Signal {
                proc: info.id(),
                signal: Signal::SIGCONT,
            });
        }
        out.push(JobOut::Signalled {
            signal: self.signal,
            pids,
        });
    }

    fn kill(&mut self, forest: &Forest, snap: &Snapshot, out: &mut Vec<JobOut>) {
        let mut pids = Vec::new();
        for p in forest.deepest_first() {
            if let Some(i) = snap.procs.get(&p).map(|i| i.id())
                && self.killed.insert(i)
            {
                out.push(JobOut::Signal {
                    proc: i,
                    signal: Signal::SIGKILL,
                });
                pids.push(p);
            }
        }
        if !pids.is_empty() {
            out.push(JobOut::Killed { pids });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::proctree::tests::proc;

    const ME: Pid = 1;

    fn chain(n: i32) -> Snapshot {
        // 100 → 101 → ... → 100+n-1, all in session 100.
        Snapshot::new(
            ME,
            (0..n).map(|i| proc(100 + i, if i == 0 { ME } else { 99 + i }, 100)),
        )
    }

    /// A SIGTERM stop of a whole tree with a timeout of `secs`.
    fn tree_job(secs: u64, t0: Instant) -> StopJob {
        StopJob::new(
            Signal::SIGTERM,
            StopScope::Tree,
            None,
            Duration::from_secs(secs),
            t0,
        )
    }

    fn members(s: &Snapshot) -> Vec<Pid> {
        s.procs.keys().copied().filter(|&p| p != ME).collect()
    }

    fn signalled(out: &[JobOut]) -> Vec<(Pid, Signal)> {
        out.iter()
            .filter_map(|o| match o {
                JobOut::Signal { proc, signal } => Some((proc.pid, *signal)),
                _ => None,
            })
            .collect()
    }

    fn remove(s: &mut Snapshot, pid: Pid) -> ProcId {
        s.procs.remove(&pid).expect("present").id()
    }

    #[test]
    fn chain_is_signalled_one_level_at_a_time_as_levels_exit() {
        let t0 = crate::core::sim::epoch();
        let mut snap = chain(3);
        let main = snap.procs[&100].id();
        let mut job = StopJob::new(
            Signal::SIGTERM,
            StopScope::Tree,
            Some(main),
            Duration::from_secs(9),
            t0,
        );
        assert!(job.wants_scan());
        let out = job.on_scan(&snap, &members(&snap), t0);
        assert_eq!(
            signalled(&out),
            [(102, Signal::SIGTERM), (102, Signal::SIGCONT)]
        );
        assert_eq!(
            out.iter().filter(|o| matches!(o, JobOut::Watch(_))).count(),
            3
        );
        // First a short settle look, then the level share: 9 s over three levels.
        assert_eq!(job.deadline(), Some(t0 + SETTLE));
        job.on_tick(t0 + SETTLE);
        assert!(signalled(&job.on_scan(&snap, &members(&snap), t0 + SETTLE)).is_empty());
        assert_eq!(job.deadline(), Some(t0 + Duration::from_secs(3)));
        // Nothing new happens until the deepest level is gone.
        assert!(signalled(&job.on_scan(&snap, &members(&snap), t0)).is_empty());
        let gone = remove(&mut snap, 102);
        job.on_gone(gone);
        assert!(job.wants_scan());
        // Each level gets a moment (RESPAWN_MIN) to show a replacement for what it lost, then,
        // still childless, it is a leaf and gets the signal.
        let t1 = t0 + Duration::from_secs(1);
        assert!(signalled(&job.on_scan(&snap, &members(&snap), t1)).is_empty());
        let t2 = t1 + RESPAWN_MIN;
        assert_eq!(
            signalled(&job.on_scan(&snap, &members(&snap), t2)),
            [(101, Signal::SIGTERM), (101, Signal::SIGCONT)]
        );
        job.on_gone(remove(&mut snap, 101));
        job.on_scan(&snap, &members(&snap), t2);
        let t3 = t2 + RESPAWN_MIN;
        assert_eq!(
            signalled(&job.on_scan(&snap, &members(&snap), t3)),
            [(100, Signal::SIGTERM), (100, Signal::SIGCONT)]
        );
        job.on_gone(remove(&mut snap, 100));
        assert!(job.on_scan(&snap, &members(&snap), t3).is_empty());
        assert_eq!(job.outcome(), Some(StopHow::Exited));
    }

    #[test]
    fn a_stubborn_level_gives_way_after_its_share() {
        let t0 = crate::core::sim::epoch();
        let snap = chain(2);
        let mut job = tree_job(10, t0);
        job.on_scan(&snap, &members(&snap), t0);
        // The settle look finds nothing new: the stubborn level keeps its share.
        job.on_tick(t0 + SETTLE);
        assert!(signalled(&job.on_scan(&snap, &members(&snap), t0 + SETTLE)).is_empty());
        let share = job.deadline().expect("level deadline");
        assert_eq!(share, t0 + Duration::from_secs(5));
        job.on_tick(share - Duration::from_millis(1));
        assert!(!job.wants_scan(), "an early tick does nothing");
        job.on_tick(share);
        assert!(job.wants_scan());
        assert_eq!(
            signalled(&job.on_scan(&snap, &members(&snap), share)),
            [(100, Signal::SIGTERM), (100, Signal::SIGCONT)]
        );
        // Everyone has the signal: one more look after a short settle (half of what is left, at
        // most a second), for whatever the last level starts meanwhile.
        assert_eq!(job.deadline(), Some(share + SETTLE));
    }

    #[test]
    fn timeout_freezes_top_down_then_kills_deepest_first() {
        let t0 = crate::core::sim::epoch();
        let mut snap = chain(3);
        let mut job = tree_job(1, t0);
        job.on_scan(&snap, &members(&snap), t0);
        job.on_tick(t0 + Duration::from_secs(1));
        assert!(job.is_killing());
        let out = job.on_scan(&snap, &members(&snap), t0);
        assert_eq!(
            signalled(&out),
            [
                (100, Signal::SIGSTOP),
                (101, Signal::SIGSTOP),
                (102, Signal::SIGSTOP)
            ]
        );
        assert!(job.wants_scan(), "not all stopped yet: rescan");
        // A fork slipped through before the parent stopped.
        for p in snap.procs.values_mut() {
            p.state = 'T';
        }
        snap.procs.insert(103, proc(103, 102, 100));
        let out = job.on_scan(&snap, &members(&snap), t0);
        assert_eq!(signalled(&out), [(103, Signal::SIGSTOP)]);
        snap.procs.get_mut(&103).expect("103").state = 'T';
        let out = job.on_scan(&snap, &members(&snap), t0);
        assert_eq!(
            signalled(&out),
            [
                (103, Signal::SIGKILL),
                (102, Signal::SIGKILL),
                (101, Signal::SIGKILL),
                (100, Signal::SIGKILL)
            ]
        );
        assert!(out.contains(&JobOut::Killed {
            pids: vec![103, 102, 101, 100]
        }));
        for p in [100, 101, 102] {
            let id = remove(&mut snap, p);
            job.on_gone(id);
            assert!(!job.wants_scan(), "one confirming scan, not one per death");
        }
        job.on_gone(remove(&mut snap, 103));
        assert!(job.wants_scan());
        job.on_scan(&snap, &members(&snap), t0);
        assert_eq!(job.outcome(), Some(StopHow::Killed));
    }

    #[test]
    fn freezing_gives_up_on_a_fixpoint_after_bounded_rounds() {
        let t0 = crate::core::sim::epoch();
        let snap = chain(1); // never reaches state T (e.g. uninterruptible sleep)
        let mut job = StopJob::kill_now(t0);
        let mut rounds = 0;
        while job.wants_scan() && rounds < 1000 {
            job.on_scan(&snap, &members(&snap), t0);
            rounds += 1;
        }
        assert_eq!(rounds, MAX_FREEZE_ROUNDS as usize + 1);
        assert!(job.is_killing() && !job.is_done());
    }

    #[test]
    fn main_scope_signals_only_the_main_process() {
        let t0 = crate::core::sim::epoch();
        let snap = chain(3);
        let main = snap.procs[&100].id();
        let mut job = StopJob::new(
            Signal::SIGQUIT,
            StopScope::Main,
            Some(main),
            Duration::from_secs(5),
            t0,
        );
        let out = job.on_scan(&snap, &members(&snap), t0);
        assert_eq!(
            signalled(&out),
            [(100, Signal::SIGQUIT), (100, Signal::SIGCONT)]
        );
        assert_eq!(
            job.deadline(),
            Some(t0 + Duration::from_secs(5)),
            "no level shares"
        );
        assert!(signalled(&job.on_scan(&snap, &members(&snap), t0)).is_empty());
    }

    #[test]
    fn a_respawning_parent_is_signalled_once_its_stopped_child_is_replaced() {
        let t0 = crate::core::sim::epoch();
        // Shell 100 running `while :; do sleep 1; done`: child 101.
        let mut snap = chain(2);
        let mut job = tree_job(10, t0);
        assert_eq!(
            signalled(&job.on_scan(&snap, &members(&snap), t0))[0],
            (101, Signal::SIGTERM)
        );
        job.on_gone(remove(&mut snap, 101));
        snap.procs.insert(102, proc(102, 100, 100));
        let out = job.on_scan(&snap, &members(&snap), t0);
        assert_eq!(
            signalled(&out),
            [
                (100, Signal::SIGTERM),
                (100, Signal::SIGCONT),
                (102, Signal::SIGTERM),
                (102, Signal::SIGCONT)
            ]
        );
    }

    #[test]
    fn children_born_after_their_parent_got_the_stop_signal_are_left_to_it() {
        let t0 = crate::core::sim::epoch();
        let mut snap = chain(1);
        let mut job = tree_job(10, t0);
        assert_eq!(
            signalled(&job.on_scan(&snap, &members(&snap), t0))[0],
            (100, Signal::SIGTERM)
        );
        // Its TERM handler runs a cleanup command.
        snap.procs.insert(101, proc(101, 100, 100));
        for t in [
            t0 + Duration::from_millis(10),
            t0 + SETTLE,
            t0 + Duration::from_secs(5),
        ] {
            job.on_tick(t);
            assert!(
                signalled(&job.on_scan(&snap, &members(&snap), t)).is_empty(),
                "left alone at {t:?}"
            );
        }
        // If it lingers past the timeout, it is frozen and killed with the rest, like systemd does.
        job.on_tick(t0 + Duration::from_secs(10));
        let out = job.on_scan(&snap, &members(&snap), t0 + Duration::from_secs(10));
        assert_eq!(
            signalled(&out),
            [(100, Signal::SIGSTOP), (101, Signal::SIGSTOP)]
        );
    }

    #[test]
    fn a_running_process_that_just_lost_its_child_gets_time_to_start_the_next_one() {
        let t0 = crate::core::sim::epoch();
        // A shell loop (100) running `sleep` (101).
        let mut snap = chain(2);
        let mut job = tree_job(10, t0);
        assert_eq!(
            signalled(&job.on_scan(&snap, &members(&snap), t0))[0],
            (101, Signal::SIGTERM)
        );
        job.on_gone(remove(&mut snap, 101));
        // The shell is running (reaping, about to fork): not a leaf to signal yet.
        snap.procs.get_mut(&100).expect("100").state = 'R';
        let t1 = t0 + Duration::from_millis(5);
        assert!(signalled(&job.on_scan(&snap, &members(&snap), t1)).is_empty());
        assert_eq!(
            job.deadline(),
            Some(t1 + RESPAWN_POLL),
            "it looks again soon"
        );
        // It started the next command: both go together, the shell first (it must hold the signal
        // when its command ends).
        snap.procs.insert(102, proc(102, 100, 100));
        job.on_tick(t1 + RESPAWN_POLL);
        let out = job.on_scan(&snap, &members(&snap), t1 + RESPAWN_POLL);
        assert_eq!(
            signalled(&out),
            [
                (100, Signal::SIGTERM),
                (100, Signal::SIGCONT),
                (102, Signal::SIGTERM),
                (102, Signal::SIGCONT)
            ]
        );
    }

    #[test]
    fn a_process_that_lost_its_child_is_a_leaf_after_a_moment_or_a_while_if_it_keeps_running() {
        let t0 = crate::core::sim::epoch();
        for (state, wait) in [('S', RESPAWN_MIN), ('R', RESPAWN_WAIT)] {
            let mut snap = chain(2);
            let mut job = tree_job(10, t0);
            job.on_scan(&snap, &members(&snap), t0);
            job.on_gone(remove(&mut snap, 101));
            snap.procs.get_mut(&100).expect("100").state = state;
            let mut out = job.on_scan(&snap, &members(&snap), t0);
            out.extend(job.on_scan(&snap, &members(&snap), t0 + wait));
            assert_eq!(
                signalled(&out),
                [(100, Signal::SIGTERM), (100, Signal::SIGCONT)],
                "state {state}"
            );
        }
    }

    #[test]
    fn a_job_never_finishes_on_what_it_could_not_see() {
        let t0 = crate::core::sim::epoch();
        let snap = chain(2);
        let mut job = tree_job(10, t0);
        job.on_scan(&snap, &members(&snap), t0);
        // The process table could not be read (out of descriptors): nothing visible is alive.
        let mut blind = Snapshot::new(ME, []);
        blind.incomplete = true;
        job.on_scan(&blind, &[], t0);
        assert!(!job.is_done(), "an incomplete scan proves nothing");
        assert_eq!(job.deadline(), Some(t0 + RETRY), "so it looks again soon");
        // A member whose exit cannot be watched keeps the job rescanning too.
        job.on_scan(&snap, &members(&snap), t0);
        job.on_unwatchable(snap.procs[&101].id(), t0);
        assert_eq!(job.deadline(), Some(t0 + RETRY));
        job.on_tick(t0 + RETRY);
        assert!(job.wants_scan());
        job.on_scan(&Snapshot::new(ME, []), &[], t0 + RETRY);
        assert_eq!(
            job.outcome(),
            Some(StopHow::Exited),
            "a complete empty scan does"
        );
    }

    #[test]
    fn a_kill_that_could_not_be_sent_is_sent_again() {
        let t0 = crate::core::sim::epoch();
        let mut snap = chain(1);
        snap.procs.get_mut(&100).expect("100").state = 'T';
        let mut job = StopJob::kill_now(t0);
        // Freeze pass, then the confirming pass that kills.
        job.on_scan(&snap, &members(&snap), t0);
        let out = job.on_scan(&snap, &members(&snap), t0);
        assert!(signalled(&out).contains(&(100, Signal::SIGKILL)));
        job.on_unwatchable(snap.procs[&100].id(), t0);
        job.on_tick(t0 + RETRY);
        let out = job.on_scan(&snap, &members(&snap), t0 + RETRY);
        assert_eq!(signalled(&out), [(100, Signal::SIGKILL)]);
    }

    #[test]
    fn a_respawned_child_waits_for_its_parents_turn() {
        let t0 = crate::core::sim::epoch();
        // Master 100 with worker 101 (and its child 103) and loop child 102.
        let mut snap = Snapshot::new(
            ME,
            [
                proc(100, ME, 100),
                proc(101, 100, 100),
                proc(103, 101, 100),
                proc(102, 100, 100),
            ],
        );
        let mut job = tree_job(10, t0);
        let out = job.on_scan(&snap, &members(&snap), t0);
        assert!(
            out.contains(&JobOut::Signalled {
                signal: Signal::SIGTERM,
                pids: vec![103, 102]
            }),
            "{out:?}"
        );
        // The loop child dies and the master starts another one while the worker still stops.
        job.on_gone(remove(&mut snap, 102));
        job.on_gone(remove(&mut snap, 103));
        snap.procs.insert(104, proc(104, 100, 100));
        job.on_scan(&snap, &members(&snap), t0);
        let out = job.on_scan(&snap, &members(&snap), t0 + RESPAWN_MIN);
        assert_eq!(
            signalled(&out),
            [(101, Signal::SIGTERM), (101, Signal::SIGCONT)],
            "the replacement waits"
        );
        // Once the worker is gone, the master and its replacement go together, the master first.
        job.on_gone(remove(&mut snap, 101));
        let out = job.on_scan(&snap, &members(&snap), t0 + RESPAWN_MIN);
        assert_eq!(
            signalled(&out),
            [
                (100, Signal::SIGTERM),
                (100, Signal::SIGCONT),
                (104, Signal::SIGTERM),
                (104, Signal::SIGCONT)
            ]
        );
    }

    #[test]
    fn a_parent_waits_while_any_signalled_child_lives() {
        let t0 = crate::core::sim::epoch();
        // 100 with children 101 and 102.
        let mut snap = Snapshot::new(
            ME,
            [proc(100, ME, 100), proc(101, 100, 100), proc(102, 100, 100)],
        );
        let mut job = tree_job(10, t0);
        let out = job.on_scan(&snap, &members(&snap), t0);
        assert!(out.contains(&JobOut::Signalled {
            signal: Signal::SIGTERM,
            pids: vec![101, 102]
        }));
        job.on_gone(remove(&mut snap, 101));
        assert!(signalled(&job.on_scan(&snap, &members(&snap), t0)).is_empty());
    }

    #[test]
    fn nothing_running_is_idle_and_reused_pids_are_not_members() {
        let t0 = crate::core::sim::epoch();
        let snap = Snapshot::new(ME, []);
        let mut job = tree_job(1, t0);
        job.on_scan(&snap, &[], t0);
        assert_eq!(job.outcome(), Some(StopHow::Idle));
        // A zombie counts as gone.
        let mut snap = chain(1);
        snap.procs.get_mut(&100).expect("100").state = 'Z';
        let mut job = tree_job(1, t0);
        job.on_scan(&snap, &members(&snap), t0);
        assert!(job.is_done());
    }
}

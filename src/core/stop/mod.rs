//! The stop procedure for one set of processes: graceful bottom-up, then freeze-then-kill.
//!
//! Owns: [`StopJob`], used for every stop reapd performs — `stop NAME`, restarts, reload, each
//! service of a shutdown, what a main process left behind, a crashed predecessor's processes, the
//! final kill of everything left, and overrunning cleanup hooks. One code path, so what the tests
//! prove for shutdown holds for all of them.
//! Must never: read `/proc`, send a signal or look at a clock. It is fed snapshots, "process
//! gone" notices and the current time, and answers with [`JobOut`] actions.
//!
//! Contract: after creating a job or feeding it anything, the caller checks [`StopJob::wants_scan`]
//! and, if set, scans and calls [`StopJob::on_scan`]; it calls [`StopJob::on_tick`] once
//! [`StopJob::deadline`] has passed (early or repeated ticks are harmless), and performs whatever
//! [`StopJob::on_gone`] and `on_tick` answer.
//!
//! # Bottom-up at the speed of the kernel
//!
//! Bottom-up is something to wait for, not something to send: signalling six levels within a
//! microsecond lets the scheduler pick the order. So a process receives the stop signal only once
//! every process below it is gone. To make that safe without waiting for anything in particular,
//! every process of the tree is first *held* with SIGSTOP, one level at a time from the top: a
//! level is stopped only once a check of its parents' states shows them stopped, so no parent
//! ever sees a child stop while it is itself about to (bash, handling that SIGCHLD at the moment
//! its own stop lands, loses the trap it runs for a later signal). A held process cannot start a
//! replacement for a child that exits (a shell loop's next command, a master's new worker), and
//! the full scan that confirms the hold lists every child it had started. Then the deepest processes get the stop signal, each followed by SIGCONT; and as
//! soon as a process's pidfd says it exited, its parent, still held and now without children,
//! gets its own signal and SIGCONT at once, without a scan: the work per level is that level's.
//! Whatever a signalled process starts afterwards (a trap's cleanup command) is its own business,
//! left to it until the stop timeout. A level that outlives its share of the stop timeout lets
//! the next one be asked anyway, so every process is asked before the timeout; at the timeout
//! everything left is frozen and killed, deepest first.
//!
//! The parts: `hold` (the level-by-level hold and `main-first`'s main process), `graceful` (the
//! signals as levels exit), `kill` (freeze-and-kill and the chase after it), `rules` (the named
//! rules, over the member records).
//!
//! The cost of holding: a process that watches its children with `WUNTRACED` (a shell with job
//! control, a debugger) sees them stop for the moment it takes the level below to exit.

mod contained;
mod graceful;
mod hold;
mod kill;
mod rules;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::core::proctree::{Forest, Pid, ProcId, Snapshot};
use crate::wire::config::StopScope;

pub use rules::Member;
use rules::{Members, Signalled, born_after_signal};

/// Checks of one level's states before reapd gives up waiting for it to show stopped (a process
/// in uninterruptible sleep does not until it wakes) and goes on.
pub const MAX_HOLD_CHECKS: u32 = 16;
/// Checks of a level made at once; the rest wait a pause each (see [`check_pause`]).
pub const IMMEDIATE_CHECKS: u32 = 1;
/// The first pause before a level is checked again. A stop lands when its target next runs, and
/// reapd, at real-time priority while it stops things, keeps its CPU until it waits: a target
/// woken on that CPU (the kernel's choice) needs this much, most of the time.
pub const FIRST_CHECK_PAUSE: Duration = Duration::from_micros(100);
/// The longest pause between checks: the pauses double up to it.
pub const CHECK_PAUSE: Duration = Duration::from_millis(2);

/// The pause before the check that follows `checks` checks of a level: none for the first
/// [`IMMEDIATE_CHECKS`], then [`FIRST_CHECK_PAUSE`] doubling up to [`CHECK_PAUSE`].
pub fn check_pause(checks: u32) -> Option<Duration> {
    let later = checks.checked_sub(IMMEDIATE_CHECKS)?;
    Some(
        FIRST_CHECK_PAUSE
            .saturating_mul(1u32 << later.min(16))
            .min(CHECK_PAUSE),
    )
}

/// The longest the level-by-level hold may take; a fraction of the stop timeout, this at most.
/// Past it, what is not held yet is held at once, top-down: in a fork storm a stop lands only
/// when its target gets the CPU, and thousands of runnable processes would make each level wait.
pub const MAX_HOLD: Duration = Duration::from_millis(500);
/// How soon to look again while reapd cannot see or watch every member (the process table could
/// not be read completely, or no pidfd could be opened): there is no exit event to wait for.
pub const RETRY: Duration = Duration::from_millis(100);
/// How long a contained stop whose known members are all gone waits for its cgroup to report
/// `populated 0` before it looks at `/proc` itself (the cgroup may hold a process forked since
/// the last look, which no pidfd announces). The kernel tells it from a work queue, within a
/// millisecond on an idle machine; the margin is for a loaded one.
pub const EMPTY_WAIT: Duration = Duration::from_millis(100);
/// How long a cgroup killed whole (`cgroup.kill`) may take to report `populated 0` before reapd
/// looks at `/proc` itself. Nothing in the cgroup can outrun that kill (the kernel kills what
/// forks into it meanwhile), so there is no straggler to chase, only the kernel's teardown to
/// wait for: about 5 000 processes a second on 2 cores, and a look meanwhile would compete with
/// it for the CPU.
pub const GROUP_KILL_WAIT: Duration = Duration::from_secs(1);
/// Longest wait, after a level got its signal, before reapd looks again for processes that
/// exec'd since and may have lost the signal on the way (see [`rules::lost_its_signal`]).
pub const SETTLE: Duration = Duration::from_secs(1);

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

/// What a job asks the edge to do, or reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOut {
    /// Send a signal through the process's pidfd.
    Signal {
        /// Target.
        proc: ProcId,
        /// Signal.
        signal: Signal,
        /// Its command name, to describe it should it survive.
        what: String,
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
    /// Freeze the service's cgroup and kill everything in it (`cgroup.kill`): no fork outruns
    /// it. Comes before the per-process kills, which then find most processes gone.
    KillGroup,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// `main-first`: the main process alone is held, then asked; the rest waits until it is
    /// gone or `until`.
    MainAlone {
        until: Instant,
    },
    /// `main`: only the main process is asked; the rest waits for the stop timeout.
    MainOnly,
    /// Every process is being held with SIGSTOP, a level at a time from the top, each level once
    /// its parents show stopped; `checks` counts the checks of the level awaited now.
    Holding {
        checks: u32,
    },
    /// Bottom-up: a process gets the signal as soon as everything below it is gone.
    Graceful,
    /// The graceful part is over: at the next look, everything is frozen and killed.
    Freezing,
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
    /// One record per process the job has seen.
    members: Members,
    /// Each member's children among the members, as of the last scan: a parent's turn is
    /// judged from these alone when a child exits.
    children: HashMap<ProcId, Vec<ProcId>>,
    /// Members still to stop (alive, not left to an ancestor).
    in_play: HashSet<ProcId>,
    /// The members in play by depth, in pid order, as of the last scan: the hold goes through
    /// them a level at a time.
    levels_to_hold: BTreeMap<usize, Vec<ProcId>>,
    /// Levels above this depth are held and show stopped (or were given up on).
    hold_from: usize,
    scans: u64,
    scan_wanted: bool,
    seen_any: bool,
    /// When the current level's share of the stop timeout ends.
    level_deadline: Option<Instant>,
    /// The next level is asked at the next scan (its share ended).
    force_level: bool,
    /// A second look after a level got the signal, for signals lost in a fork-exec window.
    settle_at: Option<Instant>,
    /// Held processes whose states must be read before the hold goes on (a check, not a scan).
    checks: Vec<ProcId>,
    /// The checks wait until then.
    check_at: Option<Instant>,
    /// When the level-by-level hold gives way to holding everything left at once.
    hold_by: Option<Instant>,
    /// No process was held since the last full scan: the tree it showed is the whole tree.
    tree_confirmed: bool,
    /// Members SIGKILLed and not seen gone yet: the confirming look waits for none of them.
    killed_alive: usize,
    /// The boot clock, in ticks, at the last scan or check (when the edge reads it).
    tick: Option<u64>,
    /// While blind (an incomplete scan, unwatched members), when to scan again.
    retry_at: Option<Instant>,
    /// No exit will ever be announced (the event loop cannot wait for events): rescan every
    /// [`RETRY`] until the job is done.
    blind: bool,
    /// The members are a service's cgroup: the kill stage kills the cgroup whole, and the
    /// kernel's word that it is empty ends the stop.
    contained: bool,
    /// [`JobOut::KillGroup`] was asked for.
    group_killed: bool,
    /// The stop ended on `populated 0` of the cgroup, not on a scan.
    confirmed_by_cgroup: bool,
    /// Every known member is gone: the scan that confirms it waits until then for the cgroup to
    /// say it is empty.
    empty_by: Option<Instant>,
    /// The last scan found a member outside the cgroup (moved out by a process with root): a
    /// kill of the cgroup does not reach everything, so the kill stage looks for stragglers.
    outside_group: bool,
}

impl StopJob {
    /// Of `pids` (in their order), those whose record, as the snapshot identifies them, passes
    /// `keep`: the one filter every stage applies to a tree it is about to signal.
    fn records_where(
        &self,
        snap: &Snapshot,
        pids: impl IntoIterator<Item = Pid>,
        keep: impl Fn(&Member) -> bool,
    ) -> Vec<Pid> {
        pids.into_iter()
            .filter(|p| {
                snap.procs
                    .get(p)
                    .and_then(|i| self.members.get(&i.id()))
                    .is_some_and(&keep)
            })
            .collect()
    }

    /// A graceful stop: `signal` bottom-up (or as `scope` says), then freeze-then-kill once
    /// `timeout` has passed.
    pub fn new(
        signal: Signal,
        scope: StopScope,
        main: Option<ProcId>,
        timeout: Duration,
        now: Instant,
    ) -> Self {
        let deadline = now + timeout;
        StopJob {
            stage: Self::first_stage(scope, main, deadline, now),
            scope,
            signal,
            main,
            started: now,
            deadline,
            members: Members::new(),
            children: HashMap::new(),
            in_play: HashSet::new(),
            levels_to_hold: BTreeMap::new(),
            hold_from: 0,
            scans: 0,
            scan_wanted: true,
            seen_any: false,
            level_deadline: None,
            force_level: false,
            settle_at: None,
            checks: Vec::new(),
            check_at: None,
            hold_by: None,
            killed_alive: 0,
            tick: None,
            tree_confirmed: false,
            retry_at: None,
            blind: false,
            contained: false,
            group_killed: false,
            confirmed_by_cgroup: false,
            empty_by: None,
            outside_group: false,
        }
    }

    fn first_stage(
        scope: StopScope,
        main: Option<ProcId>,
        deadline: Instant,
        now: Instant,
    ) -> Stage {
        match (scope, main) {
            (StopScope::Main, Some(_)) => Stage::MainOnly,
            (StopScope::MainFirst, Some(_)) => Stage::MainAlone {
                until: now + deadline.saturating_duration_since(now) / 2,
            },
            _ => Stage::Holding { checks: 0 },
        }
    }

    /// A stop that skips the graceful part: freeze and kill at once.
    pub fn kill_now(now: Instant) -> Self {
        let mut job = StopJob::new(Signal::SIGKILL, StopScope::Tree, None, Duration::ZERO, now);
        job.stage = Stage::Freezing;
        job
    }

    /// The main process, started after the stop began (its spawn was under way): `main` and
    /// `main-first` scopes treat it as such from now on.
    pub fn set_main(&mut self, main: ProcId, now: Instant) {
        if self.main.is_some() {
            return;
        }
        self.main = Some(main);
        let untouched = self
            .members
            .values()
            .all(|m| !m.stopped && m.signalled.is_none());
        if untouched && matches!(self.stage, Stage::Holding { .. }) {
            self.stage = Self::first_stage(self.scope, self.main, self.deadline, now);
            self.scan_wanted = true;
        }
    }

    /// When the job was created.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// True once a scan has found a member.
    pub fn has_seen_any(&self) -> bool {
        self.seen_any
    }

    /// True once a scan is needed to make progress.
    pub fn wants_scan(&self) -> bool {
        self.scan_wanted && !self.is_done()
    }

    /// True once the job needs a scan or a check to make progress.
    pub fn wants_look(&self) -> bool {
        self.wants_scan() || !self.wants_check().is_empty()
    }

    /// Processes whose states must be read (a check: their `stat` only) before the hold can go
    /// on; feed the result to [`StopJob::on_scan`] as a partial snapshot.
    pub fn wants_check(&self) -> &[ProcId] {
        if self.is_done() || self.check_at.is_some() {
            &[]
        } else {
            &self.checks
        }
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

    /// True while the job cannot see or watch every member (its last scan was incomplete, or a
    /// member has no pidfd): what it says about them is unproven.
    pub fn is_blind(&self) -> bool {
        self.blind || self.retry_at.is_some()
    }

    /// The stop timeout, while the graceful part lasts: then everything is frozen and killed.
    pub fn kill_at(&self) -> Option<Instant> {
        (!self.is_killing() && !self.is_done()).then_some(self.deadline)
    }

    /// True once the graceful part is over.
    pub fn is_killing(&self) -> bool {
        matches!(self.stage, Stage::Freezing | Stage::Killing)
    }

    /// Every process this job has sent a signal to.
    pub fn touched(&self) -> impl Iterator<Item = ProcId> + '_ {
        self.members
            .iter()
            .filter(|(_, m)| m.signalled.is_some() || m.stopped || m.killed)
            .map(|(id, _)| *id)
    }

    /// The next moment [`StopJob::on_tick`] has work to do.
    pub fn deadline(&self) -> Option<Instant> {
        let graceful = match self.stage {
            Stage::MainAlone { until } => [Some(self.deadline), Some(until), self.settle_at],
            Stage::MainOnly | Stage::Holding { .. } | Stage::Graceful => {
                [Some(self.deadline), self.level_deadline, self.settle_at]
            }
            _ => [None; 3],
        };
        graceful
            .into_iter()
            .chain([self.retry_at, self.check_at, self.empty_by])
            .flatten()
            .min()
    }

    /// Moves the stop timeout earlier (a shutdown with less time than the service asks).
    pub fn clip(&mut self, deadline: Instant) {
        if deadline < self.deadline {
            self.deadline = deadline;
        }
    }

    /// Skips what is left of the graceful part: every process the job knows alive is frozen
    /// and killed at once, from its records, without waiting for a scan (in a storm a scan
    /// takes a good part of a second); the look that follows finds what was forked since.
    pub fn escalate(&mut self, now: Instant) -> Vec<JobOut> {
        let mut out = Vec::new();
        if self.is_killing() || self.is_done() {
            return out;
        }
        self.checks.clear();
        self.check_at = None;
        self.stage = Stage::Freezing;
        self.kill_group(&mut out, now);
        let mut known: Vec<(usize, ProcId)> = self
            .members
            .iter()
            .filter(|(_, m)| !m.gone)
            .map(|(id, m)| (m.depth, *id))
            .collect();
        if known.is_empty() {
            return out;
        }
        known.sort_unstable_by_key(|&(depth, id)| (depth, id.pid));
        let top_down: Vec<ProcId> = known
            .iter()
            .filter(|(_, id)| self.members.get(id).is_some_and(|m| !m.stopped))
            .map(|&(_, id)| id)
            .collect();
        self.stop_ids(&top_down, &mut out);
        let deepest_first: Vec<ProcId> = known.iter().rev().map(|&(_, id)| id).collect();
        self.kill_ids(&deepest_first, &mut out);
        self.stage = Stage::Killing;
        out
    }

    /// From now on no exit will be announced: the job rescans until it is done.
    pub fn set_blind(&mut self, now: Instant) {
        if !self.blind {
            self.blind = true;
            self.retry_at.get_or_insert(now + RETRY);
        }
    }

    /// Time has passed: end `main-first`'s time alone, a level's share, or the graceful part
    /// (whose end freezes and kills what is known at once: perform what it answers).
    pub fn on_tick(&mut self, now: Instant) -> Vec<JobOut> {
        if self.check_at.is_some_and(|c| now >= c) {
            self.check_at = None;
        }
        if self.retry_at.is_some_and(|r| now >= r) {
            self.retry_at = None;
            self.scan_wanted = true;
        }
        if self.empty_by.is_some_and(|r| now >= r) {
            self.empty_by = None;
            self.scan_wanted = true;
        }
        if self.is_killing() || self.is_done() {
            return Vec::new();
        }
        if now >= self.deadline {
            return self.escalate(now);
        }
        if let Stage::MainAlone { until } = self.stage
            && now >= until
        {
            self.leave_main_alone();
        }
        let mut out = Vec::new();
        if self.level_deadline.is_some_and(|l| now >= l) {
            self.level_deadline = None;
            if self.stage == Stage::Graceful {
                self.force_next_level(now, &mut out);
            } else {
                self.force_level = true;
                self.scan_wanted = true;
            }
        }
        if self.settle_at.is_some_and(|t| now >= t) {
            self.settle_at = None;
            self.scan_wanted = true;
        }
        out
    }

    /// No pidfd could be opened for a member (out of descriptors, ...): it is alive as far as
    /// anyone knows, but its exit will not be announced, so the job rescans on its own.
    pub fn on_unwatchable(&mut self, id: ProcId, now: Instant) {
        if let Some(m) = self.members.get_mut(&id)
            && !m.gone
            && !m.unwatchable
        {
            m.unwatchable = true;
            self.retry_at.get_or_insert(now + RETRY);
        }
    }

    /// A member's pidfd became readable (it exited) or it could not be found any more. A held
    /// parent left without children gets its signal at once.
    pub fn on_gone(&mut self, id: ProcId, now: Instant) -> Vec<JobOut> {
        let mut out = Vec::new();
        let Some(m) = self.members.get_mut(&id) else {
            return out;
        };
        if m.gone {
            return out;
        }
        m.gone = true;
        if m.killed {
            self.killed_alive = self.killed_alive.saturating_sub(1);
        }
        let parent = m.parent;
        self.in_play.remove(&id);
        match self.stage {
            Stage::Graceful => {
                if let Some(p) = parent
                    && self.due_by_records(p)
                {
                    self.signal_procs(vec![p], now, &mut out);
                    let above = self.members.get(&p).map_or(0, |m| m.waiting_above);
                    self.level_share(above, now);
                }
                if self.no_live_member() {
                    self.confirm_gone(now);
                }
            }
            Stage::MainAlone { .. } if Some(id) == self.main => self.leave_main_alone(),
            Stage::Killing => {
                // One confirming scan once every killed process is gone, not one per death.
                if self.killed_alive == 0 {
                    self.confirm_gone(now);
                }
            }
            Stage::MainOnly | Stage::Holding { .. } => {
                if self.no_live_member() {
                    self.confirm_gone(now);
                }
            }
            Stage::MainAlone { .. } | Stage::Freezing | Stage::Done(_) => {}
        }
        out
    }

    /// Feeds a fresh scan. `members` are the pids that belong to this job in `snap`.
    pub fn on_scan(&mut self, snap: &Snapshot, members: &[Pid], now: Instant) -> Vec<JobOut> {
        let mut out = Vec::new();
        if self.is_done() {
            return out;
        }
        self.tick = snap.ticks.or(self.tick);
        if snap.partial {
            self.on_check(snap, now, &mut out);
            return out;
        }
        self.scan_wanted = false;
        self.empty_by = None;
        self.scans += 1;
        let alive: Vec<Pid> = members
            .iter()
            .copied()
            .filter(|p| {
                snap.procs.get(p).is_some_and(|i| {
                    !i.is_dead() && self.members.get(&i.id()).is_none_or(|m| !m.gone)
                })
            })
            .collect();
        // A complete scan is as good as the pidfd for telling who is gone.
        if !snap.incomplete {
            let live: HashSet<ProcId> = alive
                .iter()
                .filter_map(|p| snap.procs.get(p).map(|i| i.id()))
                .collect();
            for (id, m) in self.members.iter_mut() {
                if !m.gone && !live.contains(id) {
                    m.gone = true;
                    if m.killed {
                        self.killed_alive = self.killed_alive.saturating_sub(1);
                    }
                }
            }
        }
        let forest = Forest::new(snap, alive.iter().copied());
        self.learn(snap, &forest, &mut out);
        // Not seeing everything is not the same as everything being gone.
        let blind = self.blind
            || snap.incomplete
            || self.members.values().any(|m| m.unwatchable && !m.gone);
        self.retry_at = blind.then(|| now + RETRY);
        if alive.is_empty() {
            if !snap.incomplete {
                let how = if self.members.values().any(|m| m.killed) {
                    StopHow::Killed
                } else if self.seen_any {
                    StopHow::Exited
                } else {
                    StopHow::Idle
                };
                self.stage = Stage::Done(how);
            }
            return out;
        }
        self.seen_any = true;
        match self.stage {
            Stage::MainAlone { .. } => self.main_alone(snap, &mut out, now),
            Stage::MainOnly => {
                if let Some(m) = self.main.filter(|m| snap.get(*m).is_some())
                    && self.members.get(&m).is_some_and(|r| r.signalled.is_none())
                {
                    self.signal_procs(vec![m], now, &mut out);
                }
            }
            Stage::Holding { .. } => {
                self.tree_confirmed = true;
                self.advance_hold_records(now, &mut out);
            }
            Stage::Graceful => self.graceful(snap, &forest, now, &mut out),
            Stage::Freezing => self.freeze_and_kill(snap, &forest, &mut out, now),
            Stage::Killing => self.kill_stragglers(snap, &forest, &mut out, now),
            Stage::Done(_) => {}
        }
        out
    }

    /// Records what the scan shows, in one top-down pass: new members (watched, and left to an
    /// ancestor if they appeared after it got the signal), names, parents, children, and how many
    /// processes above each still wait for their signal.
    fn learn(&mut self, snap: &Snapshot, forest: &Forest, out: &mut Vec<JobOut>) {
        let scans = self.scans;
        let killing = self.is_killing();
        // Per pid: its nearest ancestor signalled before this scan; processes above still waiting.
        let mut above: HashMap<Pid, (Option<Signalled>, usize)> =
            HashMap::with_capacity(forest.members().len());
        self.children.clear();
        self.in_play.clear();
        for p in forest.top_down() {
            let Some(info) = snap.procs.get(&p) else {
                continue;
            };
            let parent = forest.parent_of(p);
            let parent_id = parent.and_then(|pp| snap.procs.get(&pp)).map(|i| i.id());
            let (signalled_above, waiting_above) = parent
                .and_then(|pp| {
                    let (s, w) = above.get(&pp)?;
                    let rec = parent_id.and_then(|i| self.members.get(&i))?;
                    let waiting = rec.signalled.is_none() && !rec.spared;
                    let nearest = rec.signalled.clone().or_else(|| s.clone());
                    Some((nearest, w + usize::from(waiting)))
                })
                .unwrap_or((None, 0));
            let m = self.members.entry(info.id()).or_insert_with(|| Member {
                first_seen: scans,
                spared: born_after_signal(signalled_above.as_ref(), info.start, killing),
                ..Member::default()
            });
            m.comm = info.comm.clone();
            m.parent = parent_id;
            m.waiting_above = waiting_above;
            m.depth = forest.depth(p);
            m.state = info.state;
            let spared = m.spared;
            if !m.watched {
                m.watched = true;
                out.push(JobOut::Watch(info.id()));
            }
            above.insert(p, (signalled_above, waiting_above));
            if let Some(pi) = parent_id {
                self.children.entry(pi).or_default().push(info.id());
            }
            if !spared {
                self.in_play.insert(info.id());
            }
        }
        self.levels_to_hold.clear();
        for id in &self.in_play {
            if let Some(m) = self.members.get(id) {
                self.levels_to_hold.entry(m.depth).or_default().push(*id);
            }
        }
        for level in self.levels_to_hold.values_mut() {
            level.sort_unstable_by_key(|id| id.pid);
        }
        self.hold_from = 0;
    }
}

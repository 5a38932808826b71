//! The supervisor: sequences services, requests, reloads and the shutdown they all end in.
//!
//! Owns: the order in which things happen. Each component keeps its own state and rules
//! (`service`, `requests`, `reload`, `teardown`, `hooks`, `sweep`, `report`, `recovery`,
//! `tracking`, the phase machine in `shutdown`, the stop procedure in `stop`); the supervisor
//! routes each [`Input`] to them, moves the shutdown forward when a stage is over, and queues the
//! [`Action`]s that result. Every fact it learns is told once, as an [`Event`].
//! Must never: make a system call, read a clock or touch a file descriptor: results of actions
//! (a spawn, a scan) come back as inputs, and time comes in as `now`.
//!
//! Contract with the edge (written once, in `core::turn`): after every [`Supervisor::handle`],
//! perform all [`Supervisor::take_actions`] in order; while [`Supervisor::scan_request`] asks,
//! reap, then scan `/proc` and feed [`Input::Scanned`]; feed [`Input::Tick`] once
//! [`Supervisor::deadline`] has passed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::core::hooks::Hooks;
use crate::core::io::{Action, ConnId, Input, Mode, Notice, ReplyTo, ScanRequest, Spawnee};
use crate::core::outbox::{Answer, Outbox};
use crate::core::proctree::{Owner, Pid, ProcId, Snapshot};
use crate::core::recovery::Recovery;
use crate::core::reload;
use crate::core::report::{self, Pending};
use crate::core::requests::{self, Waiter, Waiters};
use crate::core::service::{AfterStop, Service, ServiceState, Services};
use crate::core::shutdown::{Phase, Shutdown, ShutdownInput, Step, StopSpec, Trigger};
use crate::core::stop::{JobOut, StopHow, StopJob};
use crate::core::sweep;
use crate::core::teardown::{Reporting, Teardown};
use crate::core::timers::{Timer, earliest};
use crate::core::tracking::Tracking;
use crate::wire::config::{Config, ConfigError, Leftovers, ServiceSpec, StopScope};
use crate::wire::events::{Event, ExitStatus, Unheeded, WaveInfo};
use crate::wire::protocol::Request;
use crate::wire::replies::{ErrorCode, ErrorReply, Reply};
use crate::wire::signal_names::signal_name;
use crate::wire::state_file::{Recorded, StateRecord};
use crate::wire::text::{ms, secs};

/// Signals that single-command mode forwards to the command's process group.
pub const FORWARDED: [Signal; 5] = [
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGQUIT,
];

/// Name of the service in single-command mode.
pub const SINGLE_NAME: &str = "main";

/// A refused reload reports at most this many errors (a file can hold hundreds of thousands);
/// `reapd check` prints them all.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// The supervisor.
#[derive(Debug)]
pub struct Supervisor {
    mode: Mode,
    /// The config without its services (they live in `services`).
    cfg: Config,
    /// `--shutdown-timeout`, which keeps winning over the file on reload.
    shutdown_override: Option<u64>,
    self_pid: Pid,
    started: Instant,
    services: Services,
    tracking: Tracking,
    shutdown: Shutdown,
    teardown: Teardown,
    /// Stops of what a predecessor that died without cleaning up left running; the services
    /// start once they are over.
    recovery: Option<Recovery>,
    /// Initial spawns whose outcome is not known yet, and whether readiness was announced.
    starting: usize,
    ready_sent: bool,
    watchers: BTreeSet<ConnId>,
    waiters: Waiters,
    /// Signals to pass on to the command's process group (single-command mode).
    forwards: Vec<Signal>,
    /// Single-command mode: how the command ended.
    command_status: Option<ExitStatus>,
    /// Everything that makes the shutdown not clean, besides survivors.
    failures: Vec<String>,
    /// The event loop can no longer wait for events: stops rescan instead.
    blind: bool,
    /// What the state file says, and whether it must be rewritten at the end of the turn.
    persisted: Vec<Recorded>,
    status_due: bool,
    out: Outbox,
}

impl Supervisor {
    /// A supervisor for `cfg`, not yet started. `shutdown_override` is the command-line value
    /// that keeps winning over the file on reload.
    pub fn new(
        mode: Mode,
        mut cfg: Config,
        shutdown_override: Option<u64>,
        self_pid: Pid,
        now: Instant,
    ) -> Self {
        let shutdown = Shutdown::new(
            cfg.shutdown_timeout,
            cfg.effective_grace(),
            !cfg.cleanup.is_empty(),
        );
        let services = Services::new(
            std::mem::take(&mut cfg.services)
                .into_iter()
                .map(Service::new)
                .collect(),
        );
        let mut tracking = Tracking::default();
        tracking.refresh_roots(services.iter().map(|s| (s.name(), s.main())));
        Supervisor {
            mode,
            cfg,
            shutdown_override,
            self_pid,
            started: now,
            services,
            tracking,
            shutdown,
            teardown: Teardown::Idle,
            recovery: None,
            starting: 0,
            ready_sent: false,
            watchers: BTreeSet::new(),
            waiters: Waiters::default(),
            forwards: Vec::new(),
            command_status: None,
            failures: Vec::new(),
            blind: false,
            persisted: Vec::new(),
            status_due: false,
            out: Outbox::default(),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.shutdown.phase()
    }

    /// Actions produced so far, in order.
    #[must_use]
    pub fn take_actions(&mut self) -> Vec<Action> {
        self.out.take()
    }

    /// The next deadline and what it is for.
    pub fn next_timer(&self) -> Option<(Timer, Instant)> {
        let restarts = self
            .services
            .iter()
            .filter(|_| self.phase() == Phase::Running)
            .filter_map(|s| s.restart_at().map(|t| (Timer::Restart, t)));
        let stops = self
            .jobs()
            .filter_map(|j| j.deadline().map(|t| (Timer::Stop, t)));
        let hook = match &self.teardown {
            Teardown::Hooks(h) => h.deadline().map(|t| (Timer::Hook, t)),
            _ => None,
        };
        earliest(
            self.shutdown
                .next_timer()
                .into_iter()
                .chain(restarts)
                .chain(stops)
                .chain(hook),
        )
    }

    /// The earliest deadline at which [`Input::Tick`] has work to do.
    pub fn deadline(&self) -> Option<Instant> {
        self.next_timer().map(|(_, at)| at)
    }

    /// True while reapd is stopping something (a shutdown, or any stop in progress): the edge
    /// then runs above ordinary processes, so a CPU-bound fork storm cannot starve the stop.
    pub fn urgent(&self) -> bool {
        self.phase() != Phase::Running || self.jobs().next().is_some()
    }

    /// True once reapd has said its last word and exits.
    pub fn exiting(&self) -> bool {
        self.phase() == Phase::Exit
    }

    /// The scan needed before more progress can be made, if any.
    pub fn scan_request(&self) -> Option<ScanRequest> {
        match &self.teardown {
            Teardown::Reporting(Reporting::LastLook(_)) => {
                return Some(ScanRequest {
                    stopped_cmdlines: true,
                    ..ScanRequest::default()
                });
            }
            // Once the report is under way nothing is scanned or signalled any more.
            Teardown::Reporting(_) => return None,
            _ => {}
        }
        let wanted = !self.forwards.is_empty() || self.jobs().any(StopJob::wants_scan);
        if !wanted {
            return None;
        }
        let mut req = self.tracking.scan_request();
        if let Teardown::Killing { swept: None, .. } = self.teardown {
            req.foreign_cmdlines = self.services.iter().any(|s| !s.spec.matches.is_empty());
            let mut ports: Vec<u16> = self
                .services
                .iter()
                .flat_map(|s| s.spec.ports.iter().copied())
                .collect();
            ports.sort_unstable();
            ports.dedup();
            req.ports = ports;
        }
        Some(req)
    }

    /// Feeds one input.
    pub fn handle(&mut self, input: Input, now: Instant) {
        match input {
            Input::Start { predecessor } => self.start(predecessor, now),
            Input::Signal(sig) => self.on_signal(sig, now),
            Input::Reaped { pid, status } => self.on_reaped(pid, status, now),
            Input::Gone(id) => self.on_gone(id, now),
            Input::Unwatchable(id) => {
                for job in self.jobs_mut() {
                    job.on_unwatchable(id, now);
                }
            }
            Input::Spawned { who, proc } => self.on_spawned(who, proc, now),
            Input::SpawnFailed { who, error } => self.on_spawn_failed(who, error, now),
            Input::Scanned(snap) => self.on_scan(snap, now),
            Input::Request { conn, id, request } => self.on_request((conn, id), request, now),
            Input::ConnClosed(conn) => {
                self.watchers.remove(&conn);
                self.waiters.drop_conn(conn);
            }
            Input::ConfigLoaded { result, reply } => self.on_config(result, reply, now),
            Input::LoopFailed { error } => {
                self.blind = true;
                for job in self.jobs_mut() {
                    job.set_blind(now);
                }
                self.trigger(Trigger::LoopFailed(error), now);
            }
            Input::Released { failures } => self.released(failures),
            Input::Tick => self.on_tick(now),
        }
        if self.blind {
            for job in self.jobs_mut() {
                job.set_blind(now);
            }
        }
    }

    /// The state file's new content, when the processes reapd started changed this turn. The
    /// edge asks once per turn, so a burst of spawns costs one write.
    pub fn poll_persist(&mut self) -> Option<Action> {
        // Once the report is under way the state file keeps its last word.
        if matches!(self.phase(), Phase::CleanedUp | Phase::Exit) {
            return None;
        }
        let mut now: Vec<Recorded> = self
            .services
            .iter()
            .filter_map(|s| {
                s.main().map(|m| Recorded {
                    owner: s.spec.name.clone(),
                    pid: m.pid,
                    start: m.start,
                })
            })
            .collect();
        if let Teardown::Hooks(h) = &self.teardown
            && let Some(run) = &h.run
            && let Some(p) = run.proc
        {
            now.push(Recorded {
                owner: format!("cleanup[{}]", run.index),
                pid: p.pid,
                start: p.start,
            });
        }
        (now != self.persisted).then(|| {
            self.persisted = now.clone();
            Action::Persist(now)
        })
    }

    /// A status line for the service manager, when services started or stopped this turn.
    pub fn poll_status(&mut self) -> Option<Action> {
        if !std::mem::take(&mut self.status_due) || self.phase() != Phase::Running {
            return None;
        }
        let running = self
            .services
            .iter()
            .filter(|s| matches!(s.state, ServiceState::Running { .. }))
            .count();
        Some(Action::Notify(Notice::Status(format!(
            "running: {running}/{} services up",
            self.services.len()
        ))))
    }

    // ----- starting and restarting -------------------------------------------------------------

    fn start(&mut self, predecessor: Option<StateRecord>, now: Instant) {
        let services = &self.services;
        let rec = predecessor
            .map(|r| {
                Recovery::plan(
                    &r,
                    |name| services.get(name).map(|s| &s.spec),
                    self.self_pid,
                    now,
                )
            })
            .filter(|r| !r.owners.is_empty());
        match rec {
            Some(rec) => {
                self.out.event(Event::Recovering {
                    predecessor: rec.predecessor,
                    services: rec.owners.iter().map(|o| o.owner.clone()).collect(),
                });
                self.recovery = Some(rec);
            }
            None => self.start_all(),
        }
    }

    fn start_all(&mut self) {
        if self.phase() != Phase::Running {
            // Asked to stop before anything started: start nothing, and say ready so whoever
            // waits for readiness is not left hanging.
            self.initial_spawn_resolved();
            return;
        }
        let names = self.services.names();
        self.starting = names.len();
        if names.is_empty() && self.mode == Mode::Config {
            self.out.event(Event::NoServices);
        }
        for name in names {
            self.spawn(&name);
        }
        if self.starting == 0 {
            self.initial_spawn_resolved();
        }
    }

    /// Readiness means every initial service was spawned (or failed to be): counted down as the
    /// edge reports each spawn's outcome, so the first status already counts them.
    fn initial_spawn_resolved(&mut self) {
        if self.ready_sent {
            return;
        }
        self.starting = self.starting.saturating_sub(1);
        if self.starting > 0 {
            return;
        }
        self.ready_sent = true;
        self.out.push(Action::Notify(Notice::Ready));
        self.status_due = true;
    }

    fn spawn(&mut self, name: &str) {
        let inherit_stdin = self.mode == Mode::Single;
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        s.wanted = true;
        s.state = ServiceState::Starting;
        let mut env: Vec<(String, String)> = s
            .spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.push(("REAPD_SERVICE".into(), s.spec.name.clone()));
        self.out.push(Action::Spawn {
            who: Spawnee::Service(s.spec.name.clone()),
            cmd: s.spec.cmd.clone(),
            env,
            cwd: s.spec.cwd.clone(),
            inherit_stdin,
        });
    }

    fn on_spawned(&mut self, who: Spawnee, proc: ProcId, now: Instant) {
        match who {
            Spawnee::Service(name) => {
                let Some(s) = self.services.get_mut(&name) else {
                    return;
                };
                s.started(proc, now);
                self.tracking.spawned_service(proc, &name);
                self.out.event(Event::Spawned {
                    service: name.clone(),
                    pid: proc.pid,
                });
                if !self.ready_sent {
                    self.initial_spawn_resolved();
                }
                self.answer_running(&name);
                self.status_due = true;
            }
            Spawnee::Hook(index) => {
                if let Teardown::Hooks(h) = &mut self.teardown
                    && h.spawned(index, proc)
                {
                    self.tracking.spawned_hook(proc, index);
                }
            }
        }
    }

    fn on_spawn_failed(&mut self, who: Spawnee, error: String, now: Instant) {
        match who {
            Spawnee::Service(name) => {
                self.out.event(Event::SpawnFailed {
                    service: name.clone(),
                    error: error.clone(),
                });
                if !self.ready_sent {
                    self.initial_spawn_resolved();
                }
                for to in self.waiters.take(&Waiter::Running(name.clone())) {
                    self.out.answer(
                        &to,
                        Err(ErrorReply::new(
                            ErrorCode::Failed,
                            format!("{name}: cannot start: {error}"),
                        )),
                    );
                }
                // Like a shell: a command that cannot be executed exits 127.
                let status = ExitStatus::Code(127);
                if self.mode == Mode::Single {
                    self.command_status = Some(status);
                    self.trigger(Trigger::CommandExited, now);
                    return;
                }
                if let Some(s) = self.services.get_mut(&name) {
                    s.ended(status, now);
                }
                self.restart(&name, status, now);
            }
            Spawnee::Hook(index) => {
                if let Teardown::Hooks(h) = &mut self.teardown {
                    h.spawn_failed(index, &error);
                }
                self.advance_hooks(now);
            }
        }
    }

    fn on_reaped(&mut self, pid: Pid, status: ExitStatus, now: Instant) {
        self.tracking.reaped(pid);
        if let Teardown::Hooks(h) = &mut self.teardown
            && h.reaped(pid, status)
        {
            self.advance_hooks(now);
            return;
        }
        let phase = self.phase();
        let mode = self.mode;
        let Some(s) = self.services.by_main_pid(pid) else {
            return;
        };
        let name = s.spec.name.clone();
        s.last_exit = Some(status);
        if let ServiceState::Stopping { job, main, since } = &mut s.state {
            *main = None;
            *since = None;
            let after_ms = Some(ms(now.saturating_duration_since(job.started())));
            // The main process counts as a member of the tree: let the job see it gone.
            let id = job.touched().find(|id| id.pid == pid);
            if let Some(id) = id {
                job.on_gone(id);
            }
            let done = job.is_done();
            self.out.event(Event::Exited {
                service: name.clone(),
                pid,
                status,
                after_ms,
            });
            if done {
                self.finish_stop(&name, now);
                self.check_progress(now);
            }
            return;
        }
        self.out.event(Event::Exited {
            service: name.clone(),
            pid,
            status,
            after_ms: None,
        });
        s.ended(status, now);
        self.status_due = true;
        if mode == Mode::Single {
            self.command_status = Some(status);
            self.trigger(Trigger::CommandExited, now);
            return;
        }
        if phase != Phase::Running {
            return;
        }
        if s.spec.leftovers == Leftovers::Stop {
            // Whatever the main process left running is stopped before the service runs again,
            // or every restart would add another generation of orphans.
            s.leftovers_of = Some(status);
            s.begin_stop(None, StopScope::Tree, now);
        } else {
            self.restart(&name, status, now);
        }
    }

    /// Applies the restart policy after the main process ended.
    fn restart(&mut self, name: &str, status: ExitStatus, now: Instant) {
        if self.phase() != Phase::Running {
            return;
        }
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        match s.schedule_restart(status, now) {
            Some(delay) => self.out.event(Event::Restarting {
                service: name.to_string(),
                delay_ms: ms(delay),
                restarts: s.restarts,
            }),
            None => self.out.event(Event::KeptDown {
                service: name.to_string(),
                restart: s.spec.restart.as_str().into(),
            }),
        }
    }

    // ----- signals and ticks -------------------------------------------------------------------

    fn on_signal(&mut self, sig: Signal, now: Instant) {
        match (self.mode, sig) {
            (_, Signal::SIGTERM | Signal::SIGINT) | (Mode::Config, Signal::SIGQUIT) => {
                self.trigger(Trigger::Signal(sig), now)
            }
            (Mode::Single, s) if FORWARDED.contains(&s) => self.forwards.push(s),
            (Mode::Config, Signal::SIGHUP) if self.phase() == Phase::Running => {
                self.out.event(Event::Reloading {
                    by: "SIGHUP".into(),
                });
                self.out.push(Action::LoadConfig { reply: None });
            }
            (_, other) => {
                let why = match other {
                    Signal::SIGCONT => Unheeded::Harmless,
                    Signal::SIGHUP => Unheeded::ShuttingDown,
                    _ => Unheeded::NoAction,
                };
                self.out.event(Event::Unheeded {
                    signal: other.as_str().into(),
                    why,
                });
            }
        }
    }

    fn on_tick(&mut self, now: Instant) {
        if self.phase() == Phase::Running {
            let due: Vec<String> = self
                .services
                .iter()
                .filter(|s| s.restart_at().is_some_and(|t| t <= now))
                .map(|s| s.spec.name.clone())
                .collect();
            for name in due {
                self.spawn(&name);
            }
        }
        for job in self.jobs_mut() {
            job.on_tick(now);
        }
        if let Teardown::Hooks(h) = &mut self.teardown {
            h.tick(now, &mut self.out);
        }
        self.shutdown_input(ShutdownInput::Tick, now);
    }

    // ----- scans -------------------------------------------------------------------------------

    fn on_scan(&mut self, snap: Snapshot, now: Instant) {
        if let Teardown::Reporting(Reporting::LastLook(_)) = self.teardown {
            self.last_look(&snap, now);
            return;
        }
        let owners = self.tracking.scanned(&snap);
        self.deliver_forwards(&snap);
        // Service stops.
        let mut finished = Vec::new();
        let mut outs = Vec::new();
        for svc in self.services.iter_mut() {
            let name = svc.spec.name.clone();
            let main = svc.main();
            let Some(job) = svc.job_mut() else {
                continue;
            };
            if !job.wants_scan() {
                continue;
            }
            let mut members: Vec<Pid> = owners
                .iter()
                .filter(|(_, o)| matches!(o, Owner::Service(n) if *n == name))
                .map(|(p, _)| *p)
                .collect();
            if let Some(m) = main
                && snap.get(m).is_some()
                && !members.contains(&m.pid)
            {
                members.push(m.pid);
            }
            outs.push((Some(name.clone()), job.on_scan(&snap, &members, now)));
            // The main process is our child: the stop is complete once it is reaped, so its exit
            // status is always reported before the service counts as stopped.
            if job.is_done() && main.is_none() {
                finished.push(name);
            }
        }
        // What a predecessor that died without cleaning up left running.
        if let Some(rec) = self.recovery.as_mut() {
            for o in &mut rec.owners {
                if !o.job.wants_scan() {
                    continue;
                }
                let members = o.members(&snap);
                if !o.job.has_seen_any() && !members.is_empty() {
                    self.out.event(Event::LeftByPredecessor {
                        service: o.owner.clone(),
                        pids: members.clone(),
                    });
                }
                outs.push((Some(o.owner.clone()), o.job.on_scan(&snap, &members, now)));
            }
        }
        let stopping: BTreeSet<&str> = self
            .services
            .iter()
            .filter(|s| s.job().is_some())
            .map(|s| s.name())
            .collect();
        match &mut self.teardown {
            // Orphans of no known service, during the first wave.
            Teardown::Draining {
                orphans: Some(job), ..
            } if job.wants_scan() => {
                let members: Vec<Pid> = owners
                    .iter()
                    .filter(|(_, o)| **o == Owner::Unknown)
                    .map(|(p, _)| *p)
                    .collect();
                outs.push((None, job.on_scan(&snap, &members, now)));
            }
            // Everything left at Killing time, and what the sweep finds.
            Teardown::Killing { leftovers, swept } if leftovers.wants_scan() => {
                let mut members: Vec<Pid> = owners
                    .iter()
                    .filter(|(_, o)| match o {
                        Owner::Service(n) => !stopping.contains(n.as_str()),
                        Owner::Hook(_) | Owner::Unknown => true,
                    })
                    .map(|(p, _)| *p)
                    .collect();
                let found = swept.get_or_insert_with(|| {
                    let found =
                        sweep::targets(&snap, self.services.iter().map(|s| &s.spec), &owners);
                    for (id, reason) in &found {
                        self.out.event(Event::Sweep {
                            pid: id.pid,
                            cmdline: snap.get(*id).map(|p| p.describe()).unwrap_or_default(),
                            reason: reason.clone(),
                        });
                    }
                    found
                });
                let protected = snap.protected();
                for id in found.keys() {
                    if snap.get(*id).is_some() {
                        members.push(id.pid);
                        members.extend(snap.descendants(id.pid));
                    }
                }
                members.retain(|p| !protected.contains(p));
                members.sort_unstable();
                members.dedup();
                outs.push((None, leftovers.on_scan(&snap, &members, now)));
            }
            // An overrunning cleanup hook: services and leftovers are gone by now, so every
            // descendant is the hook's, even children it left that were never seen while it ran.
            Teardown::Hooks(h) => {
                if let Some(job) = h.reaper_mut().filter(|j| j.wants_scan()) {
                    let members: Vec<Pid> = owners.keys().copied().collect();
                    outs.push((None, job.on_scan(&snap, &members, now)));
                }
            }
            _ => {}
        }
        for (who, o) in outs {
            self.perform(o, who.as_deref(), &snap);
        }
        for name in finished {
            self.finish_stop(&name, now);
        }
        self.check_progress(now);
    }

    /// Turns a stop's outputs into actions and events.
    fn perform(&mut self, outs: Vec<JobOut>, service: Option<&str>, snap: &Snapshot) {
        for o in outs {
            match o {
                JobOut::Signal { proc, signal } => {
                    let desc = snap.get(proc).map(|p| p.describe()).unwrap_or_default();
                    self.tracking.touch(proc, desc);
                    self.out.signal(proc, signal);
                }
                JobOut::Watch(proc) => self.out.push(Action::Watch(proc)),
                JobOut::Signalled { signal, pids } => self.out.event(Event::Signalled {
                    service: service.map(str::to_string),
                    signal: signal.as_str().into(),
                    pids,
                }),
                JobOut::Killed { pids } => self.out.event(Event::Killed {
                    service: service.map(str::to_string),
                    count: pids.len(),
                    pids,
                }),
            }
        }
    }

    /// Single-command mode: passes queued signals on to the command's process group.
    fn deliver_forwards(&mut self, snap: &Snapshot) {
        let sigs = std::mem::take(&mut self.forwards);
        let main = self.services.iter().next().and_then(Service::main);
        let group: Vec<ProcId> = main.map_or_else(Vec::new, |m| {
            snap.procs
                .values()
                .filter(|p| p.pgid == m.pid && !p.is_dead())
                .map(|p| p.id())
                .collect()
        });
        for sig in sigs {
            self.out.event(Event::Forwarded {
                signal: sig.as_str().into(),
                pgid: main.map(|m| m.pid),
                count: group.len(),
            });
            for &id in &group {
                let desc = snap.get(id).map(|p| p.describe()).unwrap_or_default();
                self.tracking.touch(id, desc);
                self.out.signal(id, sig);
            }
        }
    }

    fn on_gone(&mut self, id: ProcId, now: Instant) {
        self.tracking.gone(id);
        for job in self.jobs_mut() {
            job.on_gone(id);
        }
        self.check_progress(now);
    }

    // ----- stopping ----------------------------------------------------------------------------

    /// Starts (or tightens) the stop procedure of a service. The one path every stop goes through.
    fn begin_stop(&mut self, name: &str, deadline: Option<Instant>, now: Instant) {
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        let scope = s.spec.stop_scope;
        if let Some(timeout) = s.begin_stop(deadline, scope, now) {
            self.out.event(Event::Stopping {
                service: name.to_string(),
                signal: signal_name(s.spec.stop_signal as i32),
                timeout_ms: ms(timeout),
                scope: match scope {
                    StopScope::Tree => "tree",
                    StopScope::Main => "main",
                }
                .into(),
            });
        }
    }

    fn finish_stop(&mut self, name: &str, now: Instant) {
        let Some(svc) = self.services.get_mut(name) else {
            return;
        };
        let ServiceState::Stopping { job, .. } =
            std::mem::replace(&mut svc.state, ServiceState::Down)
        else {
            return;
        };
        let then = std::mem::replace(&mut svc.then, AfterStop::Stay);
        let wanted = svc.wanted;
        let leftovers_of = svc.leftovers_of.take();
        let how = job.outcome().unwrap_or(StopHow::Killed);
        let elapsed_ms = ms(now.saturating_duration_since(job.started()));
        // A main process that left nothing behind needs no report.
        if leftovers_of.is_none() || how != StopHow::Idle {
            self.out.event(Event::Stopped {
                service: name.to_string(),
                how: how.as_str().into(),
                elapsed_ms,
                leftovers: leftovers_of.is_some(),
            });
        }
        self.status_due = true;
        let running = self.phase() == Phase::Running;
        for to in self.waiters.take(&Waiter::Stopped(name.to_string())) {
            self.out.answer(
                &to,
                Ok(Reply::Service {
                    name: name.into(),
                    state: "stopped".into(),
                    pid: None,
                    how: Some(how.as_str().into()),
                    elapsed_ms: Some(elapsed_ms),
                }),
            );
        }
        match then {
            AfterStop::Stay => {
                if let Some(status) = leftovers_of {
                    self.restart(name, status, now);
                }
            }
            AfterStop::Remove => {
                self.services.remove(name);
                self.refresh_roots();
                self.out.event(Event::Removed {
                    service: name.to_string(),
                });
                for to in self.waiters.take(&Waiter::Running(name.to_string())) {
                    self.out.answer(
                        &to,
                        Err(ErrorReply::new(
                            ErrorCode::NoSuchService,
                            format!("{name} was removed from the config"),
                        )),
                    );
                }
            }
            AfterStop::Replace(spec) => {
                if let Some(svc) = self.services.get_mut(name) {
                    svc.spec = *spec;
                }
                if running && wanted {
                    self.spawn(name);
                }
            }
            AfterStop::Start => {
                if running {
                    self.spawn(name);
                }
            }
        }
        if !running {
            for to in self.waiters.take(&Waiter::Running(name.to_string())) {
                self.out.answer(
                    &to,
                    Err(ErrorReply::new(
                        ErrorCode::ShuttingDown,
                        format!(
                            "{name} was stopped, but shutdown began before it could start again"
                        ),
                    )),
                );
            }
        }
    }

    /// Moves things forward once a stop, the recovery, a wave, the kill or a hook is over.
    fn check_progress(&mut self, now: Instant) {
        if self.recovery.as_ref().is_some_and(Recovery::is_done)
            && let Some(rec) = self.recovery.take()
        {
            for o in &rec.owners {
                self.out.event(Event::Recovered {
                    service: o.owner.clone(),
                    how: o.job.outcome().map_or("killed", StopHow::as_str).into(),
                });
            }
            if self.phase() == Phase::Running {
                self.start_all();
            } else {
                self.initial_spawn_resolved();
            }
        }
        let stopping = |sup: &Self, n: &str| sup.services.get(n).is_some_and(|s| s.job().is_some());
        let wave_over = match &mut self.teardown {
            Teardown::Draining { wave, orphans, .. } => {
                if orphans.as_ref().is_some_and(StopJob::is_done) {
                    *orphans = None;
                }
                !wave.is_empty() && orphans.is_none()
            }
            _ => false,
        };
        if wave_over
            && let Teardown::Draining { wave, .. } = &self.teardown
            && !wave.iter().any(|n| stopping(self, n))
        {
            if let Teardown::Draining { wave, .. } = &mut self.teardown {
                wave.clear();
            }
            self.shutdown_input(ShutdownInput::WaveStopped, now);
        }
        if let Teardown::Killing { leftovers, .. } = &self.teardown
            && leftovers.is_done()
            && self.services.iter().all(|s| s.job().is_none())
            && self.recovery.is_none()
            && self.tracking.touched.is_empty()
        {
            self.shutdown_input(ShutdownInput::KillFinished, now);
        }
        if let Teardown::Hooks(h) = &self.teardown
            && h.ready_to_advance()
        {
            self.advance_hooks(now);
        }
    }

    fn trigger(&mut self, t: Trigger, now: Instant) {
        self.shutdown_input(ShutdownInput::Trigger(t), now);
    }

    fn shutdown_input(&mut self, input: ShutdownInput, now: Instant) {
        // Only the trigger that starts the shutdown plans the waves: the list costs
        // O(services) and is not built for every tick and every wave's end.
        let specs: Vec<StopSpec> = if self.shutdown.needs_specs(&input) {
            self.services
                .iter()
                .map(|s| StopSpec {
                    name: s.spec.name.clone(),
                    after: s.spec.after.clone(),
                    stop_timeout: s.spec.stop_timeout,
                })
                .collect()
        } else {
            Vec::new()
        };
        for step in self.shutdown.on_input(input, &specs, now) {
            self.apply(step, now);
        }
    }

    fn apply(&mut self, step: Step, now: Instant) {
        match step {
            Step::Entered { phase, reason } => {
                self.out.event(Event::State {
                    state: phase.as_str().into(),
                    reason: reason.clone(),
                });
                if phase == Phase::Draining {
                    self.out.push(Action::Notify(Notice::Stopping));
                    for s in self.services.iter_mut() {
                        if let ServiceState::Backoff { .. } = s.state {
                            s.state = ServiceState::Down;
                        }
                    }
                    self.teardown = Teardown::Draining {
                        wave: Vec::new(),
                        orphans: None,
                        orphans_asked: false,
                    };
                }
                self.out.push(Action::Notify(Notice::Status(format!(
                    "{}: {reason}",
                    phase.as_str()
                ))));
            }
            Step::AlreadyStopping { trigger, phase } => self.out.event(Event::AlreadyStopping {
                trigger,
                state: phase.as_str().into(),
            }),
            Step::CloseListener => self.out.push(Action::CloseListener),
            Step::Announce(plan) => self.out.event(Event::ShutdownPlan {
                budget_ms: ms(plan.budget),
                reserve_ms: ms(plan.reserve),
                waves: plan
                    .waves
                    .iter()
                    .map(|w| WaveInfo {
                        services: w.services.clone(),
                        requested_ms: ms(w.requested),
                        timeout_ms: ms(w.allotted),
                    })
                    .collect(),
            }),
            Step::StopWave { services, deadline } => {
                for name in &services {
                    self.begin_stop(name, Some(deadline), now);
                }
                if let Teardown::Draining {
                    wave,
                    orphans,
                    orphans_asked,
                } = &mut self.teardown
                {
                    *wave = services;
                    if !*orphans_asked {
                        *orphans_asked = true;
                        let timeout = deadline.saturating_duration_since(now);
                        let mut job =
                            StopJob::new(Signal::SIGTERM, StopScope::Tree, None, timeout, now);
                        if self.blind {
                            job.set_blind(now);
                        }
                        *orphans = Some(job);
                    }
                }
                self.check_progress(now);
            }
            Step::EndGrace => {
                for to in self.waiters.take_all() {
                    self.out.answer(
                        &to,
                        Err(ErrorReply::new(
                            ErrorCode::ShuttingDown,
                            "request not finished within grace_ms of the shutdown",
                        )),
                    );
                }
                self.out.push(Action::CloseIdle);
            }
            Step::KillEverything { .. } => {
                // Services still stopping (or still running, after a second SIGINT) are killed by
                // their own stop; everything else left over is the leftovers' kill's. Orphans
                // still alive are the leftovers' now.
                let names = self.services.names();
                for name in names {
                    let Some(s) = self.services.get_mut(&name) else {
                        continue;
                    };
                    match &mut s.state {
                        ServiceState::Stopping { job, .. } => {
                            job.clip(now);
                            job.escalate();
                        }
                        ServiceState::Running { main, since } => {
                            let (main, since) = (*main, *since);
                            s.state = ServiceState::Stopping {
                                job: Box::new(StopJob::kill_now(now)),
                                main: Some(main),
                                since: Some(since),
                            };
                        }
                        ServiceState::Backoff { .. } => s.state = ServiceState::Down,
                        ServiceState::Down | ServiceState::Starting => {}
                    }
                }
                if let Some(rec) = self.recovery.as_mut() {
                    rec.clip(now);
                    rec.escalate();
                }
                self.teardown = Teardown::Killing {
                    leftovers: StopJob::kill_now(now),
                    swept: None,
                };
            }
            Step::RunHooks { deadline } => {
                self.teardown = Teardown::Hooks(Hooks::new(deadline));
                self.advance_hooks(now);
            }
            Step::Finish => self.finish(now),
        }
    }

    // ----- cleanup hooks -----------------------------------------------------------------------

    fn advance_hooks(&mut self, now: Instant) {
        if self.phase() != Phase::Killing {
            return;
        }
        let Teardown::Hooks(h) = &mut self.teardown else {
            return;
        };
        if h.advance(&self.cfg.cleanup, now, &mut self.out, &mut self.failures) {
            self.shutdown_input(ShutdownInput::HooksFinished, now);
        }
    }

    // ----- the end -----------------------------------------------------------------------------

    /// The bound is reached or everything is done: what may still live is listed, and the last
    /// look at `/proc` decides.
    fn finish(&mut self, now: Instant) {
        let mut pending = Pending {
            candidates: self.tracking.touched.clone(),
            failures: Vec::new(),
        };
        for s in self.services.iter() {
            if let Some(m) = s.main() {
                pending
                    .candidates
                    .entry(m)
                    .or_insert_with(|| s.spec.cmd.join(" "));
            }
        }
        if let Teardown::Hooks(h) = &mut self.teardown
            && let Some((proc, cmd)) =
                h.abandon(&self.cfg.cleanup, now, &mut self.out, &mut self.failures)
        {
            // A hook still running at the deadline: killed now, listed unless the look finds it
            // gone.
            self.out.signal(proc, Signal::SIGKILL);
            pending.candidates.entry(proc).or_insert(cmd);
        } else if !matches!(self.teardown, Teardown::Hooks(_)) && !self.cfg.cleanup.is_empty() {
            self.failures.push(format!(
                "{} cleanup command(s) not run: no time left",
                self.cfg.cleanup.len()
            ));
        }
        pending.failures = std::mem::take(&mut self.failures);
        self.teardown = Teardown::Reporting(Reporting::LastLook(pending));
    }

    /// The last look at `/proc`: who survived; then the socket, lock and state file.
    fn last_look(&mut self, snap: &Snapshot, now: Instant) {
        let Teardown::Reporting(Reporting::LastLook(pending)) =
            std::mem::replace(&mut self.teardown, Teardown::Reporting(Reporting::Done))
        else {
            return;
        };
        let survivors = report::survivors(&pending, snap);
        let took = self
            .shutdown
            .started()
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        if !survivors.is_empty() {
            // Kept for the next instance on this socket, which stops them before it starts.
            let recorded = survivors
                .iter()
                .filter_map(|s| snap.procs.get(&s.pid))
                .map(|p| Recorded {
                    owner: "survivor".into(),
                    pid: p.pid,
                    start: p.start,
                })
                .collect();
            self.out.push(Action::Persist(recorded));
        }
        self.out.push(Action::Release {
            keep_state: !survivors.is_empty(),
        });
        self.teardown = Teardown::Reporting(Reporting::Releasing {
            survivors,
            failures: pending.failures,
            took,
        });
    }

    /// The socket, lock and state file are dealt with: the verdict, `done`, and exit.
    fn released(&mut self, more: Vec<String>) {
        let Teardown::Reporting(Reporting::Releasing {
            survivors,
            mut failures,
            took,
        }) = std::mem::replace(&mut self.teardown, Teardown::Reporting(Reporting::Done))
        else {
            return;
        };
        failures.extend(more);
        let bound = self.shutdown.budget();
        let verdict = report::verdict(survivors, &failures, took, bound, self.command_status);
        if !verdict.within_bound {
            failures.push(format!(
                "the shutdown took {} and overran its bound of {}",
                secs(took),
                secs(bound)
            ));
        }
        self.out.event(Event::Done {
            clean: verdict.clean,
            within_bound: verdict.within_bound,
            elapsed_ms: ms(took),
            bound_ms: ms(bound),
            exit_code: verdict.exit_code,
            survivors: verdict.survivors,
            failures,
        });
        self.shutdown.exited();
        self.out.push(Action::Exit {
            code: verdict.exit_code,
        });
    }

    // ----- control requests --------------------------------------------------------------------

    fn on_request(&mut self, to: ReplyTo, req: Request, now: Instant) {
        if req.is_mutating() && self.phase() != Phase::Running {
            let msg = format!(
                "reapd is {}; it no longer starts, stops or reloads anything",
                self.phase().as_str()
            );
            self.out
                .answer(&to, Err(ErrorReply::new(ErrorCode::ShuttingDown, msg)));
            return;
        }
        let answer: Answer = match req {
            Request::Ping => Ok(Reply::Pong { pong: true }),
            Request::Status => Ok(requests::status(
                self.phase().as_str(),
                self.self_pid,
                self.mode,
                now.saturating_duration_since(self.started),
                &self.services,
            )),
            Request::List => Ok(requests::list(&self.services, now)),
            Request::Watch => {
                self.watchers.insert(to.0);
                Ok(Reply::Watching {
                    watching: true,
                    state: self.phase().as_str().into(),
                })
            }
            Request::Shutdown => {
                self.trigger(Trigger::Request, now);
                Ok(Reply::ShuttingDown {
                    state: self.phase().as_str().into(),
                })
            }
            Request::Reload if self.mode == Mode::Single => Err(ErrorReply::new(
                ErrorCode::Failed,
                "nothing to reload: reapd runs a single command, not a config file",
            )),
            Request::Reload => {
                self.out.event(Event::Reloading {
                    by: "reload request".into(),
                });
                self.out.push(Action::LoadConfig { reply: Some(to) });
                return;
            }
            Request::Start { name } | Request::Restart { name }
                if self
                    .services
                    .get(&name)
                    .is_some_and(|s| s.then == AfterStop::Remove) =>
            {
                Err(ErrorReply::new(
                    ErrorCode::NoSuchService,
                    format!(
                        "{name} is being removed: it is no longer in the config file (add it back and reload)"
                    ),
                ))
            }
            Request::Start { name } => match self.services.get_mut(&name) {
                None => Err(requests::no_such(&name, &self.services)),
                Some(s) => match s.state {
                    ServiceState::Running { .. } => Ok(requests::running(&self.services, &name)),
                    ServiceState::Stopping { .. } => {
                        if s.then == AfterStop::Stay {
                            s.then = AfterStop::Start;
                        }
                        self.waiters.push(to, Waiter::Running(name));
                        return;
                    }
                    ServiceState::Starting => {
                        self.waiters.push(to, Waiter::Running(name));
                        return;
                    }
                    _ => {
                        self.waiters.push(to, Waiter::Running(name.clone()));
                        self.spawn(&name);
                        return;
                    }
                },
            },
            Request::Stop { name } => match self.services.get_mut(&name) {
                None => Err(requests::no_such(&name, &self.services)),
                Some(s) => {
                    s.wanted = false;
                    if s.then == AfterStop::Start {
                        s.then = AfterStop::Stay;
                    }
                    self.waiters.push(to, Waiter::Stopped(name.clone()));
                    self.begin_stop(&name, None, now);
                    return;
                }
            },
            Request::Restart { name } => match self.services.get_mut(&name) {
                None => Err(requests::no_such(&name, &self.services)),
                Some(s) => {
                    if s.then == AfterStop::Stay {
                        s.then = AfterStop::Start;
                    }
                    s.wanted = true;
                    self.waiters.push(to, Waiter::Running(name.clone()));
                    self.begin_stop(&name, None, now);
                    return;
                }
            },
            Request::Signal { name, signal } => match self.services.get(&name) {
                None => Err(requests::no_such(&name, &self.services)),
                Some(s) => match s.main() {
                    None => Err(ErrorReply::new(
                        ErrorCode::NotRunning,
                        format!("{name} has no running main process ({})", s.state_name()),
                    )),
                    Some(main) => {
                        self.tracking.touch(main, s.spec.cmd.join(" "));
                        self.out.signal(main, signal);
                        self.out.event(Event::SignalSent {
                            service: name.clone(),
                            pid: main.pid,
                            signal: signal.as_str().into(),
                        });
                        Ok(Reply::SignalSent {
                            name,
                            pid: main.pid,
                            signal: signal.as_str().into(),
                        })
                    }
                },
            },
        };
        self.out.answer(&to, answer);
    }

    /// Answers everyone waiting for `name` to run.
    fn answer_running(&mut self, name: &str) {
        for to in self.waiters.take(&Waiter::Running(name.to_string())) {
            self.out
                .answer(&to, Ok(requests::running(&self.services, name)));
        }
    }

    // ----- reload ------------------------------------------------------------------------------

    fn on_config(
        &mut self,
        result: Result<Config, Vec<ConfigError>>,
        reply: Option<ReplyTo>,
        now: Instant,
    ) {
        if self.phase() != Phase::Running {
            if let Some(to) = reply {
                self.out.answer(
                    &to,
                    Err(ErrorReply::new(
                        ErrorCode::ShuttingDown,
                        "shutdown began before the reload could be applied",
                    )),
                );
            }
            return;
        }
        let mut new = match result {
            Ok(c) => c,
            Err(errors) => {
                let mut list: Vec<String> = errors
                    .iter()
                    .take(MAX_REPORTED_ERRORS)
                    .map(ToString::to_string)
                    .collect();
                if errors.len() > MAX_REPORTED_ERRORS {
                    list.push(format!(
                        "… and {} more (`reapd check --config FILE` prints them all)",
                        errors.len() - MAX_REPORTED_ERRORS
                    ));
                }
                self.out.event(Event::ReloadRejected {
                    errors: list.clone(),
                    total: errors.len(),
                });
                if let Some(to) = reply {
                    self.out.answer(
                        &to,
                        Err(ErrorReply {
                            code: ErrorCode::ConfigError,
                            error: format!(
                                "config rejected ({} error{}); nothing changed",
                                errors.len(),
                                if errors.len() == 1 { "" } else { "s" }
                            ),
                            errors: list,
                        }),
                    );
                }
                return;
            }
        };
        if let Some(ms) = self.shutdown_override
            && let Err(e) = new.set_shutdown_timeout(ms)
        {
            new.warnings.push(format!("--shutdown-timeout: {e}"));
        }
        if new.socket.is_some() && new.socket != self.cfg.socket {
            new.warnings.push(
                "the control socket path changed in the config; it takes effect only after a restart of reapd"
                    .into(),
            );
        }
        for warning in std::mem::take(&mut new.warnings) {
            self.out.event(Event::ConfigWarning { warning });
        }
        let plan = reload::plan(&self.services, &new);
        let to_stop = reload::apply(&mut self.services, &new, &plan);
        self.shutdown.reconfigure(
            new.shutdown_timeout,
            new.effective_grace(),
            !new.cleanup.is_empty(),
        );
        self.cfg = Config {
            services: Vec::new(),
            ..new
        };
        self.refresh_roots();
        self.out.event(Event::Reloaded {
            added: plan.added.clone(),
            removed: plan.removed.clone(),
            changed: plan.changed.clone(),
        });
        for name in &to_stop {
            self.begin_stop(name, None, now);
        }
        for name in &plan.added {
            // One still stopping starts once its stop is over (see `AfterStop`).
            if self
                .services
                .get(name)
                .is_some_and(|s| matches!(s.state, ServiceState::Down))
            {
                self.spawn(name);
            }
        }
        if let Some(to) = reply {
            self.out.answer(
                &to,
                Ok(Reply::Reloaded {
                    added: plan.added,
                    removed: plan.removed,
                    changed: plan.changed,
                }),
            );
        }
        self.status_due = true;
    }

    // ----- bookkeeping -------------------------------------------------------------------------

    /// Every stop in progress: services', the recovery's, and the shutdown stage's.
    fn jobs(&self) -> impl Iterator<Item = &StopJob> {
        let recovery = self
            .recovery
            .iter()
            .flat_map(|r| r.owners.iter().map(|o| &o.job));
        self.services
            .iter()
            .filter_map(Service::job)
            .chain(recovery)
            .chain(self.teardown.jobs())
    }

    fn jobs_mut(&mut self) -> impl Iterator<Item = &mut StopJob> {
        let recovery = self
            .recovery
            .iter_mut()
            .flat_map(|r| r.owners.iter_mut().map(|o| &mut o.job));
        self.services
            .iter_mut()
            .filter_map(Service::job_mut)
            .chain(recovery)
            .chain(self.teardown.jobs_mut())
    }

    fn refresh_roots(&mut self) {
        self.tracking
            .refresh_roots(self.services.iter().map(|s| (s.name(), s.main())));
    }

    /// Whether `conn` watches events.
    pub fn is_watcher(&self, conn: ConnId) -> bool {
        self.watchers.contains(&conn)
    }

    /// The service definitions, in start order (for tests and the simulation).
    pub fn specs(&self) -> impl Iterator<Item = &ServiceSpec> {
        self.services.iter().map(|s| &s.spec)
    }
}

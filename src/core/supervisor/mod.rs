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

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use nix::sys::signal::Signal;

use crate::core::io::{Action, ConnId, Containment, Input, Mode, Notice, ScanRequest};
use crate::core::outbox::Outbox;
use crate::core::proctree::Pid;
use crate::core::recovery::Recovery;
use crate::core::requests::Waiters;
use crate::core::service::{Service, ServiceState, Services};
use crate::core::shutdown::{Phase, Shutdown, Trigger};
use crate::core::stop::StopJob;
use crate::core::teardown::{Reporting, Teardown};
use crate::core::timers::{Timer, earliest};
use crate::core::tracking::Tracking;
use crate::wire::config::Config;
use crate::wire::events::ExitStatus;
use crate::wire::protocol::Request;
use crate::wire::replies::Usage;
use crate::wire::state_file::Recorded;

mod control;
mod ending;
mod lifecycle;
mod running;
mod stopping;

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
    /// Whether readiness was announced.
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
    /// The last complete scan found no live process under reapd, and nothing was spawned since.
    nothing_left_seen: bool,
    /// What the state file says, and whether it must be rewritten at the end of the turn.
    persisted: Vec<Recorded>,
    status_due: bool,
    /// cgroups or the `/proc` walk, as the edge found at start.
    containment: Containment,
    /// What services' cgroups have used, while the request it was read for is answered.
    accounted: BTreeMap<String, Usage>,
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
            ready_sent: false,
            watchers: BTreeSet::new(),
            waiters: Waiters::default(),
            forwards: Vec::new(),
            command_status: None,
            failures: Vec::new(),
            blind: false,
            nothing_left_seen: false,
            persisted: Vec::new(),
            status_due: false,
            containment: Containment::default(),
            accounted: BTreeMap::new(),
            out: Outbox::default(),
        }
    }

    /// How services are contained: told by the edge before [`Input::Start`].
    pub fn set_containment(&mut self, containment: Containment) {
        self.containment = containment;
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
        let checks = self
            .services
            .iter()
            .filter(|_| self.phase() == Phase::Running)
            .filter_map(|s| s.checks.deadline().map(|t| (Timer::Check, t)));
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
                .chain(checks)
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
            Teardown::Reporting(Reporting::LastLook(pending)) => {
                return Some(ScanRequest {
                    stopped_cmdlines: true,
                    also: pending.candidates.keys().map(|id| id.pid).collect(),
                    ..ScanRequest::default()
                });
            }
            // Once the report is under way nothing is scanned or signalled any more.
            Teardown::Reporting(_) => return None,
            _ => {}
        }
        let wanted = !self.forwards.is_empty() || self.jobs().any(StopJob::wants_scan);
        if !wanted {
            // Only held processes' states to check: a few `stat` reads, not a walk of `/proc`.
            let only: Vec<Pid> = self
                .jobs()
                .flat_map(|j| j.wants_check().iter().map(|id| id.pid))
                .collect();
            return (!only.is_empty()).then(|| ScanRequest {
                only,
                ..ScanRequest::default()
            });
        }
        let mut req = self.tracking.scan_request();
        // A crashed predecessor's processes are not in reapd's tree.
        req.everyone = self.recovery.is_some();
        req.until = self.jobs().filter_map(StopJob::kill_at).min();
        if self.containment.cgroups {
            // Membership matters to a stop: the services being stopped have theirs read.
            req.groups = self
                .services
                .iter()
                .filter(|s| s.job().is_some())
                .map(|s| s.name().to_string())
                .collect();
        }
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
            Input::GroupEmpty(name) => self.on_group_empty(&name, now),
            Input::Unwatchable(id) => {
                for job in self.jobs_mut() {
                    job.on_unwatchable(id, now);
                }
            }
            Input::Spawned { who, proc } => {
                self.nothing_left_seen = false;
                self.on_spawned(who, proc, now)
            }
            Input::Notified { service, pid } => self.on_notified(&service, pid, now),
            Input::Probed {
                service,
                seq,
                result,
            } => self.on_check_result(&service, seq, result, now),
            Input::SpawnFailed { who, error } => self.on_spawn_failed(who, error, now),
            Input::Scanned(snap) => {
                // A complete look that found nothing of reapd's alive stays true until reapd
                // starts something: nothing can join an empty tree but reapd's own children.
                self.nothing_left_seen = !snap.partial
                    && !snap.incomplete
                    && snap
                        .descendants(self.self_pid)
                        .iter()
                        .all(|pid| snap.procs.get(pid).is_none_or(|p| p.is_dead()));
                self.on_scan(snap, now)
            }
            // What cgroups have used is read for the reply, not sampled: the edge reads it first.
            Input::Request { conn, id, request }
                if self.containment.cgroups
                    && matches!(request, Request::Status | Request::List) =>
            {
                self.out.push(Action::Account {
                    to: (conn, id),
                    request,
                    services: self.services.names(),
                });
            }
            Input::Request { conn, id, request } => self.on_request((conn, id), request, now),
            Input::Accounted { to, request, usage } => {
                self.accounted = usage;
                self.on_request(to, request, now);
                self.accounted.clear();
            }
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

    // ----- bookkeeping -------------------------------------------------------------------------

    /// Every stop in progress: services', the recovery's, and the shutdown stage's.
    pub(super) fn jobs(&self) -> impl Iterator<Item = &StopJob> {
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

    pub(super) fn jobs_mut(&mut self) -> impl Iterator<Item = &mut StopJob> {
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

    pub(super) fn refresh_roots(&mut self) {
        self.tracking
            .refresh_roots(self.services.iter().map(|s| (s.name(), s.main())));
    }

    /// Whether `conn` watches events.
    pub fn is_watcher(&self, conn: ConnId) -> bool {
        self.watchers.contains(&conn)
    }
}

//! The supervisor core: services, restarts, control requests, and the shutdown they all end in.
//!
//! Owns: every decision reapd makes — when to spawn, restart, signal, scan, reply, and exit —
//! as a deterministic state machine. [`Supervisor::handle`] takes one [`Input`] and the current
//! time; [`Supervisor::take_actions`] drains the [`Action`]s for the event loop to perform;
//! [`Supervisor::deadline`] says when to call again with [`Input::Tick`].
//! Must never: make a system call, read a clock or touch a file descriptor. Results of actions
//! that the loop performs (a spawn, a scan) come back as inputs.
//!
//! Contract with the loop: after every `handle`, perform all actions in order; then, while
//! [`Supervisor::scan_request`] returns a request, scan `/proc` and feed [`Input::Scanned`].

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::core::proctree::{Attribution, Owner, Pid, ProcId, Roots, Snapshot};
use crate::core::recovery::Recovery;
use crate::core::shutdown::{Phase, Shutdown, ShutdownInput, Step, StopSpec, Trigger};
use crate::core::stop::{JobOut, StopHow, StopJob};
use crate::wire::config::{
    Config, ConfigError, Leftovers, RestartPolicy, ServiceSpec, StopScope, stop_signal_name,
};
use crate::wire::protocol::{
    ErrorCode, Event, ExitStatus, Request, RequestId, Survivor, WaveInfo, reply_err,
    reply_err_with, reply_ok,
};
use crate::wire::state_file::{Recorded, StateRecord};
use crate::wire::text::secs;

/// First restart delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run this long resets the back-off.
pub const HEALTHY_RUN: Duration = Duration::from_secs(10);
/// Time kept at the end of the hooks' share to kill one that overruns.
pub const HOOK_KILL_MARGIN: Duration = Duration::from_millis(250);
/// Signals that single-command mode forwards to the command's process group.
pub const FORWARDED: [Signal; 5] = [
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGQUIT,
];

/// Most config errors a rejected reload logs and replies with.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// Name of the service in single-command mode.
pub const SINGLE_NAME: &str = "main";

/// A control connection, as numbered by the loop.
pub type ConnId = u64;

/// A reply destination: the connection and the request's `id`.
pub type ReplyTo = (ConnId, Option<RequestId>);

/// How reapd was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `--config FILE`: services from a file, reloadable.
    Config,
    /// `-- CMD ARGS`: one command; its exit ends reapd.
    Single,
}

/// Who a spawn is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spawnee {
    /// A service's main process.
    Service(String),
    /// A cleanup hook, by index.
    Hook(usize),
}

/// What a scan must read beyond every process's `stat`.
///
/// Scans read `stat` only, unless told otherwise: `environ` and `cmdline` take the target's
/// memory-map lock, which a process holds for the whole of each `fork()`. In a CPU-bound fork
/// storm that lock is almost always held by a process that gets a few microseconds of CPU per
/// second, and reading it would stall reapd for minutes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanRequest {
    /// Read the command lines of processes outside reapd's tree (for `match` sweeps); reapd's
    /// own descendants are attributed by ancestry instead.
    pub foreign_cmdlines: bool,
    /// Find the processes listening on these TCP ports.
    pub ports: Vec<u16>,
    /// Children of reapd whose owner is already known (the processes it spawned, and orphans it
    /// has attributed before): their `REAPD_SERVICE` marker need not be read.
    pub attributed: HashSet<Pid>,
    /// Sessions of services: an orphan in one of them needs no marker either.
    pub service_sessions: HashSet<Pid>,
}

/// Messages for the service manager (s6 readiness fd, systemd `NOTIFY_SOCKET`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Socket bound, initial services spawned.
    Ready,
    /// Shutdown began.
    Stopping,
    /// A human-readable status line.
    Status(String),
}

/// Everything the supervisor reacts to.
#[derive(Clone, Debug)]
pub enum Input {
    /// The loop is ready: spawn the initial services, after stopping whatever a predecessor
    /// that died without cleaning up left running (its state file, when there is one).
    Start {
        /// The predecessor's state file.
        predecessor: Option<StateRecord>,
    },
    /// A signal arrived (SIGCHLD excepted: the loop reaps and reports [`Input::Reaped`]).
    Signal(Signal),
    /// `waitpid` collected a child.
    Reaped {
        /// Its pid.
        pid: Pid,
        /// How it ended.
        status: ExitStatus,
    },
    /// A process is gone: its pidfd became readable, or it vanished before one could be opened.
    Gone(ProcId),
    /// No pidfd could be opened for a process (out of descriptors): it may still be alive, but
    /// its exit will not be announced.
    Unwatchable(ProcId),
    /// A spawn succeeded.
    Spawned {
        /// For whom.
        who: Spawnee,
        /// The new process.
        proc: ProcId,
    },
    /// A spawn failed.
    SpawnFailed {
        /// For whom.
        who: Spawnee,
        /// Why, ready to log.
        error: String,
    },
    /// A scan the supervisor asked for.
    Scanned(Snapshot),
    /// A control request.
    Request {
        /// From which connection.
        conn: ConnId,
        /// The request's `id`.
        id: Option<RequestId>,
        /// The request.
        request: Request,
    },
    /// A control connection went away.
    ConnClosed(ConnId),
    /// The config file was re-read.
    ConfigLoaded {
        /// The new config, or its errors.
        result: Result<Config, Vec<ConfigError>>,
        /// Who asked, if a client did.
        reply: Option<ReplyTo>,
    },
    /// A deadline passed.
    Tick,
}

/// Everything the loop does on the supervisor's behalf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start a process in its own session; answer with [`Input::Spawned`] or [`Input::SpawnFailed`].
    Spawn {
        /// For whom.
        who: Spawnee,
        /// argv.
        cmd: Vec<String>,
        /// Variables added to reapd's environment.
        env: Vec<(String, String)>,
        /// Working directory.
        cwd: Option<PathBuf>,
        /// Keep reapd's stdin (single-command mode) instead of `/dev/null`.
        inherit_stdin: bool,
    },
    /// Send a signal through the process's pidfd (opening one if needed).
    Signal {
        /// Target.
        proc: ProcId,
        /// Signal.
        signal: Signal,
    },
    /// Open a pidfd so the process's exit produces [`Input::Gone`].
    Watch(ProcId),
    /// Send a reply line.
    Reply {
        /// To whom.
        conn: ConnId,
        /// The line, newline included.
        line: String,
    },
    /// Send an event to every watcher.
    Event(Event),
    /// Close a connection once its output is flushed.
    Close(ConnId),
    /// Close every connection that is not watching.
    CloseIdle,
    /// Stop accepting connections.
    CloseListener,
    /// Re-read the config file and answer with [`Input::ConfigLoaded`].
    LoadConfig {
        /// Who asked.
        reply: Option<ReplyTo>,
    },
    /// Tell the service manager something.
    Notify(Notice),
    /// Record these processes in the state file, so that a successor can stop them if reapd
    /// dies without cleaning up.
    Persist(Vec<Recorded>),
    /// Remove the socket and lock, flush, and exit with this status.
    Exit {
        /// Exit status.
        code: i32,
    },
}

#[derive(Debug)]
struct Service {
    spec: ServiceSpec,
    main: Option<ProcId>,
    running_since: Option<Instant>,
    restart_at: Option<Instant>,
    backoff: Duration,
    restarts: u32,
    last_exit: Option<ExitStatus>,
    /// Asked to be down (stopped by a client, or never to be restarted).
    down: bool,
    stop: Option<StopJob>,
    /// What happens once the stop finishes.
    then: AfterStop,
    /// The stop in progress is of what the main process left behind when it exited like this;
    /// the restart policy is applied once it is over.
    leftovers_of: Option<ExitStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AfterStop {
    Stay,
    Start,
    Replace(Box<ServiceSpec>),
    Remove,
}

impl Service {
    fn new(spec: ServiceSpec) -> Self {
        Service {
            spec,
            main: None,
            running_since: None,
            restart_at: None,
            backoff: BACKOFF_MIN,
            restarts: 0,
            last_exit: None,
            down: false,
            stop: None,
            then: AfterStop::Stay,
            leftovers_of: None,
        }
    }

    fn state(&self) -> &'static str {
        if self.stop.is_some() {
            "stopping"
        } else if self.main.is_some() {
            "running"
        } else if self.restart_at.is_some() {
            "backoff"
        } else if self.down || self.last_exit.is_none() {
            "stopped"
        } else {
            "exited"
        }
    }
}

#[derive(Debug)]
enum Waiter {
    Stopped(String),
    Running(String),
}

#[derive(Debug)]
struct HookRun {
    index: usize,
    proc: Option<ProcId>,
    started: Instant,
    deadline: Instant,
    result: Option<String>,
    ok: bool,
    reaper: Option<StopJob>,
}

/// The supervisor.
#[derive(Debug)]
pub struct Supervisor {
    mode: Mode,
    cfg: Config,
    shutdown_timeout_override: Option<u64>,
    self_pid: Pid,
    started: Instant,
    services: Vec<Service>,
    /// Position of each service in `services` by name, so that a lookup does not scan 10 000
    /// services (see [`Supervisor::reindex`]).
    index: HashMap<String, usize>,
    attribution: Attribution,
    roots: Roots,
    shutdown: Shutdown,
    wave: Vec<String>,
    /// Orphans reparented to reapd whose service cannot be told, stopped gracefully with the
    /// first wave.
    orphans: Option<StopJob>,
    orphans_started: bool,
    /// Everything left at Killing time that no service claims, plus sweep targets.
    leftovers: Option<StopJob>,
    sweep_done: bool,
    sweep_set: BTreeMap<ProcId, String>,
    hooks_deadline: Option<Instant>,
    next_hook: usize,
    hook: Option<HookRun>,
    /// Every process reapd signalled that it has not yet seen gone, with a description.
    touched: BTreeMap<ProcId, String>,
    failures: Vec<String>,
    watchers: BTreeSet<ConnId>,
    waiters: Vec<(ReplyTo, Waiter)>,
    forwards: Vec<Signal>,
    command_status: Option<ExitStatus>,
    /// Initial spawns whose outcome is not known yet.
    starting: usize,
    /// Stops of what a predecessor that died without cleaning up left running; the services
    /// start once they are over.
    recovery: Option<Recovery>,
    /// What the state file says now.
    persisted: Vec<Recorded>,
    ready_sent: bool,
    actions: Vec<Action>,
}

impl Supervisor {
    /// A supervisor for `cfg`, not yet started. `shutdown_timeout_override` is the command-line
    /// value that keeps winning over the file on reload.
    pub fn new(
        mode: Mode,
        cfg: Config,
        shutdown_timeout_override: Option<u64>,
        self_pid: Pid,
        now: Instant,
    ) -> Self {
        let shutdown = Shutdown::new(
            cfg.shutdown_timeout,
            cfg.effective_grace(),
            !cfg.cleanup.is_empty(),
        );
        let services = cfg.services.iter().cloned().map(Service::new).collect();
        let mut sup = Supervisor {
            mode,
            cfg,
            shutdown_timeout_override,
            self_pid,
            started: now,
            services,
            index: HashMap::new(),
            attribution: Attribution::default(),
            roots: Roots::default(),
            shutdown,
            wave: Vec::new(),
            orphans: None,
            orphans_started: false,
            leftovers: None,
            sweep_done: false,
            sweep_set: BTreeMap::new(),
            hooks_deadline: None,
            next_hook: 0,
            hook: None,
            touched: BTreeMap::new(),
            failures: Vec::new(),
            watchers: BTreeSet::new(),
            waiters: Vec::new(),
            forwards: Vec::new(),
            command_status: None,
            starting: 0,
            recovery: None,
            persisted: Vec::new(),
            ready_sent: false,
            actions: Vec::new(),
        };
        sup.reindex();
        sup.refresh_roots();
        sup
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.shutdown.phase()
    }

    /// Actions produced so far, in order.
    #[must_use]
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// The earliest deadline at which [`Input::Tick`] has work to do.
    pub fn deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut add = |x: Option<Instant>| {
            if let Some(x) = x {
                d = Some(d.map_or(x, |d| d.min(x)));
            }
        };
        add(self.shutdown.deadline());
        if self.phase() == Phase::Running {
            for s in &self.services {
                add(s.restart_at);
            }
        }
        for job in self.jobs() {
            add(job.deadline());
        }
        if let Some(h) = &self.hook
            && h.reaper.is_none()
            && h.result.is_none()
        {
            add(Some(h.deadline));
        }
        d
    }

    /// True while reapd is stopping something (a shutdown, or any stop in progress): the loop
    /// then runs above ordinary processes, so a CPU-bound fork storm cannot starve the stop.
    pub fn urgent(&self) -> bool {
        self.phase() != Phase::Running || self.jobs().next().is_some()
    }

    /// The scan needed before more progress can be made, if any.
    pub fn scan_request(&self) -> Option<ScanRequest> {
        // Once the report is out nothing is scanned or signalled any more.
        if matches!(self.phase(), Phase::CleanedUp | Phase::Exit) {
            return None;
        }
        let wanted = !self.forwards.is_empty() || self.jobs().any(StopJob::wants_scan);
        if !wanted {
            return None;
        }
        let mut req = ScanRequest {
            attributed: self
                .attribution
                .known_pids()
                .chain(self.roots.spawned.keys().map(|id| id.pid))
                .collect(),
            service_sessions: self.roots.sessions.keys().copied().collect(),
            ..ScanRequest::default()
        };
        if self.leftovers.is_some() && !self.sweep_done {
            req.foreign_cmdlines = self.services.iter().any(|s| !s.spec.matches.is_empty());
            req.ports = self
                .services
                .iter()
                .flat_map(|s| s.spec.ports.iter().copied())
                .collect();
            req.ports.sort_unstable();
            req.ports.dedup();
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
                self.waiters.retain(|((c, _), _)| *c != conn);
            }
            Input::ConfigLoaded { result, reply } => self.on_config(result, reply, now),
            Input::Tick => self.on_tick(now),
        }
        // Only the report is left once reapd is exiting: the state file keeps its last word.
        if !matches!(self.phase(), Phase::CleanedUp | Phase::Exit) {
            self.persist();
        }
    }

    // ----- starting and restarting -------------------------------------------------------------

    fn start(&mut self, predecessor: Option<StateRecord>, now: Instant) {
        let rec = predecessor
            .map(|r| Recovery::plan(&r, &self.cfg, self.self_pid, now))
            .filter(|r| !r.owners.is_empty());
        match rec {
            Some(rec) => {
                let owners: Vec<&str> = rec.owners.iter().map(|o| o.owner.as_str()).collect();
                warn!(
                    "a reapd (pid {}) on this socket died without cleaning up; stopping what it \
                     left running of {} before starting anything",
                    rec.predecessor.map_or("unknown".into(), |p| p.to_string()),
                    owners.join(", ")
                );
                self.recovery = Some(rec);
            }
            None => self.start_all(now),
        }
    }

    fn start_all(&mut self, now: Instant) {
        if self.phase() != Phase::Running {
            // Asked to stop before anything started: start nothing, and say ready so whoever
            // waits for readiness is not left hanging.
            self.initial_spawn_resolved();
            return;
        }
        let names: Vec<String> = self.services.iter().map(|s| s.spec.name.clone()).collect();
        self.starting = names.len();
        for name in names {
            self.spawn(&name, now);
        }
        if self.services.is_empty() && self.mode == Mode::Config {
            warn!("no services configured; add some and send SIGHUP (or `reapd ctl reload`)");
        }
        if self.starting == 0 {
            self.initial_spawn_resolved();
        }
    }

    /// Readiness means every initial service was spawned (or failed to be): counted down as the
    /// loop reports each spawn's outcome, so the first status already counts them.
    fn initial_spawn_resolved(&mut self) {
        if self.ready_sent {
            return;
        }
        if self.starting > 0 {
            self.starting -= 1;
            if self.starting > 0 {
                return;
            }
        }
        self.ready_sent = true;
        self.actions.push(Action::Notify(Notice::Ready));
        self.notify_status();
    }

    fn spawn(&mut self, name: &str, now: Instant) {
        let inherit_stdin = self.mode == Mode::Single;
        let Some(s) = self.service_mut(name) else {
            return;
        };
        s.restart_at = None;
        s.down = false;
        let mut env: Vec<(String, String)> = s
            .spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.push(("REAPD_SERVICE".into(), s.spec.name.clone()));
        let action = Action::Spawn {
            who: Spawnee::Service(s.spec.name.clone()),
            cmd: s.spec.cmd.clone(),
            env,
            cwd: s.spec.cwd.clone(),
            inherit_stdin,
        };
        s.running_since = Some(now);
        self.actions.push(action);
    }

    fn on_spawned(&mut self, who: Spawnee, proc: ProcId, now: Instant) {
        match who {
            Spawnee::Service(name) => {
                let Some(s) = self.service_mut(&name) else {
                    return;
                };
                s.main = Some(proc);
                s.running_since = Some(now);
                // What `refresh_roots` would add, without rebuilding the roots of every service
                // for each spawn (quadratic at the start of 10 000 services).
                self.roots
                    .spawned
                    .insert(proc, Owner::Service(name.clone()));
                self.roots.sessions.insert(proc.pid, name.clone());
                info!("{name}: started, pid {}", proc.pid);
                if !self.ready_sent {
                    self.initial_spawn_resolved();
                }
                self.actions.push(Action::Event(Event::Spawned {
                    service: name.clone(),
                    pid: proc.pid,
                }));
                self.answer_waiters(
                    |w| matches!(w, Waiter::Running(n) if *n == name),
                    |s| s.ok_running(&name),
                );
                self.notify_status();
            }
            Spawnee::Hook(index) => {
                if let Some(h) = self.hook.as_mut().filter(|h| h.index == index) {
                    h.proc = Some(proc);
                    self.roots.spawned.insert(proc, Owner::Hook(index));
                    debug!("cleanup[{index}]: started, pid {}", proc.pid);
                }
            }
        }
    }

    fn on_spawn_failed(&mut self, who: Spawnee, err: String, now: Instant) {
        match who {
            Spawnee::Service(name) => {
                error!("{name}: cannot start: {err}");
                if !self.ready_sent {
                    self.initial_spawn_resolved();
                }
                self.actions.push(Action::Event(Event::SpawnFailed {
                    service: name.clone(),
                    error: err.clone(),
                }));
                let fail_waiters = |sup: &mut Self| {
                    sup.answer_waiters(
                        |w| matches!(w, Waiter::Running(n) if *n == name),
                        |_| Err((ErrorCode::Failed, format!("{name}: cannot start: {err}"))),
                    )
                };
                fail_waiters(self);
                if self.mode == Mode::Single {
                    // Like a shell: a command that cannot be executed exits 127.
                    self.command_status = Some(ExitStatus::Code(127));
                    self.trigger(Trigger::CommandExited, now);
                    return;
                }
                let Some(s) = self.service_mut(&name) else {
                    return;
                };
                s.running_since = None;
                s.last_exit = Some(ExitStatus::Code(127));
                self.schedule_restart(&name, ExitStatus::Code(127), now);
            }
            Spawnee::Hook(index) => {
                if let Some(h) = self.hook.as_mut().filter(|h| h.index == index) {
                    h.result = Some(format!("cannot start: {err}"));
                    h.ok = false;
                }
                self.advance_hooks(now);
            }
        }
    }

    fn on_reaped(&mut self, pid: Pid, status: ExitStatus, now: Instant) {
        self.touched.retain(|id, _| id.pid != pid);
        self.roots.spawned.retain(|id, _| id.pid != pid);
        if let Some(h) = self.hook.as_mut()
            && h.proc.is_some_and(|p| p.pid == pid)
        {
            if h.result.is_none() {
                h.ok = status.success();
                h.result = Some(status.to_string());
            }
            self.advance_hooks(now);
            return;
        }
        let phase = self.phase();
        let mode = self.mode;
        let Some(s) = self
            .services
            .iter_mut()
            .find(|s| s.main.is_some_and(|m| m.pid == pid))
        else {
            debug!("reaped pid {pid} ({status})");
            return;
        };
        let name = s.spec.name.clone();
        s.main = None;
        s.last_exit = Some(status);
        let after_ms = s
            .stop
            .as_ref()
            .map(|j| ms(now.saturating_duration_since(j.started())));
        self.actions.push(Action::Event(Event::Exited {
            service: name.clone(),
            pid,
            status,
            after_ms,
        }));
        if let Some(job) = s.stop.as_mut() {
            info!("{name}: main process {pid} ended ({status}) while stopping");
            // The main process counts as a member of the tree: let the job see it gone.
            let id = job.touched().find(|id| id.pid == pid);
            if let Some(id) = id {
                job.on_gone(id);
            }
            if job.is_done() {
                self.finish_stop(&name, now);
                self.check_progress(now);
            }
            return;
        }
        if mode == Mode::Single {
            info!("{name}: command exited ({status})");
            self.command_status = Some(status);
            self.trigger(Trigger::CommandExited, now);
            return;
        }
        if phase != Phase::Running {
            info!("{name}: exited ({status}) during shutdown");
            return;
        }
        let ran = s
            .running_since
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default();
        s.running_since = None;
        if ran >= HEALTHY_RUN {
            s.backoff = BACKOFF_MIN;
        }
        if s.spec.leftovers == Leftovers::Stop {
            // Whatever the main process left running is stopped before the service runs again,
            // or every restart would add another generation of orphans.
            s.leftovers_of = Some(status);
            debug!("{name}: stopping what main process {pid} left behind, if anything");
            s.stop = Some(StopJob::new(
                s.spec.stop_signal,
                StopScope::Tree,
                None,
                s.spec.stop_timeout,
                now,
            ));
        } else {
            self.schedule_restart(&name, status, now);
        }
        self.notify_status();
    }

    fn schedule_restart(&mut self, name: &str, status: ExitStatus, now: Instant) {
        if self.phase() != Phase::Running {
            return;
        }
        let Some(s) = self.service_mut(name) else {
            return;
        };
        let restart = !s.down
            && match s.spec.restart {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => !status.success(),
                RestartPolicy::Never => false,
            };
        if !restart {
            info!(
                "{name}: exited ({status}); restart policy {} keeps it down",
                s.spec.restart.as_str()
            );
            return;
        }
        let delay = s.backoff;
        s.backoff = (s.backoff * 2).min(BACKOFF_MAX);
        s.restarts += 1;
        s.restart_at = Some(now + delay);
        let restarts = s.restarts;
        info!("{name}: exited ({status}); restarting in {}", secs(delay));
        self.actions.push(Action::Event(Event::Restarting {
            service: name.to_string(),
            delay_ms: ms(delay),
            restarts,
        }));
    }

    // ----- signals and ticks -------------------------------------------------------------------

    fn on_signal(&mut self, sig: Signal, now: Instant) {
        match (self.mode, sig) {
            (_, Signal::SIGTERM | Signal::SIGINT) | (Mode::Config, Signal::SIGQUIT) => {
                self.trigger(Trigger::Signal(sig), now)
            }
            (Mode::Single, s) if FORWARDED.contains(&s) => {
                self.forwards.push(s);
            }
            (Mode::Config, Signal::SIGHUP) => {
                if self.phase() == Phase::Running {
                    info!("SIGHUP: reloading the config");
                    self.actions.push(Action::LoadConfig { reply: None });
                } else {
                    info!("SIGHUP ignored: shutdown under way");
                }
            }
            (_, Signal::SIGCONT) => {
                debug!("SIGCONT received (harmless; supervisors send it after SIGTERM)")
            }
            (_, other) => info!("{} received; reapd takes no action on it", other.as_str()),
        }
    }

    fn on_tick(&mut self, now: Instant) {
        if self.phase() == Phase::Running {
            let due: Vec<String> = self
                .services
                .iter()
                .filter(|s| s.restart_at.is_some_and(|t| t <= now))
                .map(|s| s.spec.name.clone())
                .collect();
            for name in due {
                info!("{name}: restarting");
                self.spawn(&name, now);
            }
        }
        for job in self.jobs_mut() {
            job.on_tick(now);
        }
        if let Some(h) = self.hook.as_mut()
            && h.result.is_none()
            && h.reaper.is_none()
            && now >= h.deadline
        {
            warn!(
                "cleanup[{}]: still running at its deadline; killing it",
                h.index
            );
            h.result = Some("killed: ran past its share of the shutdown bound".into());
            h.ok = false;
            h.reaper = Some(StopJob::kill_now(now));
        }
        self.shutdown_input(ShutdownInput::Tick, now);
    }

    // ----- scans -------------------------------------------------------------------------------

    fn on_scan(&mut self, snap: Snapshot, now: Instant) {
        let owners = self.attribution.update(&snap, &self.roots);
        // A complete scan also settles processes whose exit was never announced (no pidfd).
        if !snap.incomplete {
            self.touched
                .retain(|id, _| snap.get(*id).is_some_and(|p| !p.is_dead()));
        }
        self.prune_sessions(&snap);
        self.deliver_forwards(&snap);
        // Service stops.
        let mut finished = Vec::new();
        for i in 0..self.services.len() {
            let Some(svc) = self.services.get_mut(i) else {
                continue;
            };
            let name = svc.spec.name.clone();
            let main = svc.main;
            let Some(job) = svc.stop.as_mut() else {
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
            let outs = job.on_scan(&snap, &members, now);
            // The main process is our child: the stop is complete once it is reaped, so its exit
            // status is always reported before the service counts as stopped.
            let done = job.is_done() && main.is_none();
            self.perform(outs, Some(&name), &snap);
            if done {
                finished.push(name);
            }
        }
        // What a predecessor that died without cleaning up left running.
        if let Some(rec) = self.recovery.as_mut() {
            let mut outs_by_owner = Vec::new();
            for o in &mut rec.owners {
                if !o.job.wants_scan() {
                    continue;
                }
                let members = o.members(&snap);
                if !o.job.has_seen_any() && !members.is_empty() {
                    warn!(
                        "{}: left running by the predecessor: {}",
                        o.owner,
                        pid_list(&members)
                    );
                }
                outs_by_owner.push((o.owner.clone(), o.job.on_scan(&snap, &members, now)));
            }
            for (owner, outs) in outs_by_owner {
                self.perform(outs, Some(&owner), &snap);
            }
        }
        // Orphans of no known service, during the first wave.
        if let Some(job) = self.orphans.as_mut()
            && job.wants_scan()
        {
            let members: Vec<Pid> = owners
                .iter()
                .filter(|(_, o)| **o == Owner::Unknown)
                .map(|(p, _)| *p)
                .collect();
            let outs = job.on_scan(&snap, &members, now);
            self.perform(outs, None, &snap);
        }
        // Everything left at Killing time.
        if let Some(job) = self.leftovers.as_mut()
            && job.wants_scan()
        {
            let mut members: Vec<Pid> = owners
                .iter()
                .filter(|(_, o)| match o {
                    Owner::Service(n) => !self
                        .services
                        .iter()
                        .any(|s| s.spec.name == *n && s.stop.is_some()),
                    Owner::Hook(_) | Owner::Unknown => true,
                })
                .map(|(p, _)| *p)
                .collect();
            if !self.sweep_done {
                self.sweep_done = true;
                let found = sweep_targets(&snap, &self.services, &owners);
                for (id, reason) in found {
                    let cmdline = snap.get(id).map(|p| p.describe()).unwrap_or_default();
                    warn!("sweep: pid {} ({cmdline}): {reason}", id.pid);
                    self.actions.push(Action::Event(Event::Sweep {
                        pid: id.pid,
                        cmdline,
                        reason: reason.clone(),
                    }));
                    self.sweep_set.insert(id, reason);
                }
            }
            let protected = snap.protected();
            for id in self.sweep_set.keys() {
                if snap.get(*id).is_some() {
                    members.push(id.pid);
                    members.extend(snap.descendants(id.pid));
                }
            }
            members.retain(|p| !protected.contains(p));
            members.sort_unstable();
            members.dedup();
            let outs = job.on_scan(&snap, &members, now);
            self.perform(outs, None, &snap);
        }
        // An overrunning cleanup hook.
        if let Some(h) = self.hook.as_mut()
            && let Some(job) = h.reaper.as_mut()
            && job.wants_scan()
        {
            // Services and leftovers are gone by now, so every descendant is the hook's: even
            // children it left behind that were never seen while it ran (they look like orphans).
            let members: Vec<Pid> = owners.keys().copied().collect();
            let outs = job.on_scan(&snap, &members, now);
            self.perform(outs, None, &snap);
        }
        for name in finished {
            self.finish_stop(&name, now);
        }
        self.check_progress(now);
    }

    /// Turns a job's outputs into actions and events.
    fn perform(&mut self, outs: Vec<JobOut>, service: Option<&str>, snap: &Snapshot) {
        for o in outs {
            match o {
                JobOut::Signal { proc, signal } => {
                    let desc = snap.get(proc).map(|p| p.describe()).unwrap_or_default();
                    self.touched.insert(proc, desc);
                    self.actions.push(Action::Signal { proc, signal });
                }
                JobOut::Watch(proc) => self.actions.push(Action::Watch(proc)),
                JobOut::Signalled { signal, pids } => {
                    let who = service.unwrap_or("processes of no known service");
                    info!("{who}: sent {} to {}", signal.as_str(), pid_list(&pids));
                    if let Some(s) = service {
                        self.actions.push(Action::Event(Event::Signalled {
                            service: s.to_string(),
                            signal: signal.as_str().to_string(),
                            pids,
                        }));
                    }
                }
                JobOut::Killed { pids } => {
                    let who = service.unwrap_or("processes of no known service");
                    warn!(
                        "{who}: froze and killed {} process{}: {}",
                        pids.len(),
                        if pids.len() == 1 { "" } else { "es" },
                        pid_list(&pids)
                    );
                    self.actions.push(Action::Event(Event::Killed {
                        service: service.map(str::to_string),
                        count: pids.len(),
                        pids,
                    }));
                }
            }
        }
    }

    fn deliver_forwards(&mut self, snap: &Snapshot) {
        let sigs = std::mem::take(&mut self.forwards);
        let Some(main) = self.services.first().and_then(|s| s.main) else {
            if !sigs.is_empty() {
                debug!("no command running; not forwarding {sigs:?}");
            }
            return;
        };
        let group: Vec<ProcId> = snap
            .procs
            .values()
            .filter(|p| p.pgid == main.pid && !p.is_dead())
            .map(|p| p.id())
            .collect();
        for sig in sigs {
            info!(
                "forwarding {} to process group {} ({} process{})",
                sig.as_str(),
                main.pid,
                group.len(),
                if group.len() == 1 { "" } else { "es" }
            );
            for &id in &group {
                let desc = snap.get(id).map(|p| p.describe()).unwrap_or_default();
                self.touched.insert(id, desc);
                self.actions.push(Action::Signal {
                    proc: id,
                    signal: sig,
                });
            }
        }
    }

    fn on_gone(&mut self, id: ProcId, now: Instant) {
        self.touched.remove(&id);
        for job in self.jobs_mut() {
            job.on_gone(id);
        }
        self.check_progress(now);
    }

    // ----- stopping ----------------------------------------------------------------------------

    /// Starts (or tightens) the stop procedure of a service. The one path every stop goes through.
    fn begin_stop(&mut self, name: &str, deadline: Option<Instant>, now: Instant) {
        let Some(s) = self.service_mut(name) else {
            return;
        };
        s.restart_at = None;
        if let Some(job) = s.stop.as_mut() {
            if let Some(d) = deadline {
                job.clip(d);
            }
            return;
        }
        let timeout = match deadline {
            Some(d) => s.spec.stop_timeout.min(d.saturating_duration_since(now)),
            None => s.spec.stop_timeout,
        };
        s.stop = Some(StopJob::new(
            s.spec.stop_signal,
            s.spec.stop_scope,
            s.main,
            timeout,
            now,
        ));
        let signal = stop_signal_name(s.spec.stop_signal);
        let scope = match s.spec.stop_scope {
            StopScope::Tree => "its whole tree, deepest first",
            StopScope::Main => "its main process",
        };
        info!(
            "{name}: stopping: {signal} to {scope}, killed after {}",
            secs(timeout)
        );
        self.actions.push(Action::Event(Event::Stopping {
            service: name.to_string(),
            signal,
            timeout_ms: ms(timeout),
        }));
    }

    fn finish_stop(&mut self, name: &str, now: Instant) {
        let Some(svc) = self.service_mut(name) else {
            return;
        };
        let Some(job) = svc.stop.take() else {
            return;
        };
        let then = std::mem::replace(&mut svc.then, AfterStop::Stay);
        let down = svc.down;
        let leftovers_of = svc.leftovers_of.take();
        let how = job.outcome().unwrap_or(StopHow::Killed);
        let elapsed = ms(now.saturating_duration_since(job.started()));
        // A main process that left nothing behind needs no report.
        if leftovers_of.is_none() || how != StopHow::Idle {
            let what = if leftovers_of.is_some() {
                " what its main process left behind:"
            } else {
                ""
            };
            info!(
                "{name}:{what} stopped ({}) after {elapsed} ms",
                how.as_str()
            );
            self.actions.push(Action::Event(Event::Stopped {
                service: name.to_string(),
                how: how.as_str().into(),
                elapsed_ms: elapsed,
            }));
        }
        let running = self.phase() == Phase::Running;
        self.answer_waiters(
            |w| matches!(w, Waiter::Stopped(n) if n == name),
            |_| Ok(json!({ "name": name, "state": "stopped", "how": how.as_str(), "elapsed_ms": elapsed })),
        );
        match then {
            AfterStop::Stay => {
                if let Some(status) = leftovers_of {
                    self.schedule_restart(name, status, now);
                }
            }
            AfterStop::Remove => {
                self.remove_service(name);
                info!("{name}: removed");
                self.answer_waiters(
                    |w| matches!(w, Waiter::Running(n) if n == name),
                    |_| {
                        Err((
                            ErrorCode::NoSuchService,
                            format!("{name} was removed from the config"),
                        ))
                    },
                );
            }
            AfterStop::Replace(spec) => {
                if let Some(svc) = self.service_mut(name) {
                    svc.spec = *spec;
                }
                if running && !down {
                    self.spawn(name, now);
                }
            }
            AfterStop::Start => {
                if running {
                    self.spawn(name, now);
                }
            }
        }
        if !running {
            self.answer_waiters(
                |w| matches!(w, Waiter::Running(n) if n == name),
                |_| {
                    Err((
                        ErrorCode::ShuttingDown,
                        format!(
                            "{name} was stopped, but shutdown began before it could start again"
                        ),
                    ))
                },
            );
        }
        self.notify_status();
    }

    /// Moves the shutdown forward once the current wave, the kill or a hook is complete.
    fn check_progress(&mut self, now: Instant) {
        if self.orphans.as_ref().is_some_and(StopJob::is_done) {
            self.orphans = None;
        }
        if self.recovery.as_ref().is_some_and(Recovery::is_done)
            && let Some(rec) = self.recovery.take()
        {
            for o in &rec.owners {
                let how = o.job.outcome().map_or("?", StopHow::as_str);
                info!("{}: the predecessor's processes are gone ({how})", o.owner);
            }
            if self.phase() == Phase::Running {
                self.start_all(now);
            } else {
                self.initial_spawn_resolved();
            }
        }
        if self.phase() == Phase::Draining
            && !self.wave.is_empty()
            && self.orphans.is_none()
            && self
                .wave
                .iter()
                .all(|n| self.service(n).is_none_or(|s| s.stop.is_none()))
        {
            self.wave.clear();
            self.shutdown_input(ShutdownInput::WaveStopped, now);
        }
        if self.phase() == Phase::Killing
            && let Some(job) = &self.leftovers
            && job.is_done()
            && self.services.iter().all(|s| s.stop.is_none())
            && self.recovery.is_none()
            && self.touched.is_empty()
        {
            self.leftovers = None;
            self.shutdown_input(ShutdownInput::KillFinished, now);
        }
        if let Some(h) = &self.hook
            && h.result.is_some()
            && h.reaper.as_ref().is_none_or(StopJob::is_done)
            && h.proc
                .is_none_or(|p| !self.roots.spawned.contains_key(&p) || h.reaper.is_some())
        {
            self.advance_hooks(now);
        }
    }

    fn trigger(&mut self, t: Trigger, now: Instant) {
        self.shutdown_input(ShutdownInput::Trigger(t), now);
    }

    fn shutdown_input(&mut self, input: ShutdownInput, now: Instant) {
        // Built only for the input that plans the waves: for every tick it would cost a copy of
        // every service's name and dependencies (seconds, over 10 000 waves of 10 000 services).
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
        let steps = self.shutdown.on_input(input, &specs, now);
        for step in steps {
            self.apply(step, now);
        }
    }

    fn apply(&mut self, step: Step, now: Instant) {
        match step {
            Step::Entered { phase, reason } => {
                info!("{}: {reason}", phase.as_str());
                self.actions.push(Action::Event(Event::State {
                    state: phase.as_str().into(),
                    reason: reason.clone(),
                }));
                if phase == Phase::Draining {
                    self.actions.push(Action::Notify(Notice::Stopping));
                }
                self.actions.push(Action::Notify(Notice::Status(format!(
                    "{}: {reason}",
                    phase.as_str()
                ))));
                if phase == Phase::Draining {
                    for s in &mut self.services {
                        s.restart_at = None;
                    }
                }
            }
            Step::AlreadyStopping(msg) => info!("{msg}"),
            Step::CloseListener => self.actions.push(Action::CloseListener),
            Step::Announce(plan) => {
                info!("shutdown plan: {}", plan.describe());
                let waves = plan
                    .waves
                    .iter()
                    .map(|w| WaveInfo {
                        services: w.services.clone(),
                        requested_ms: ms(w.requested),
                        timeout_ms: ms(w.allotted),
                    })
                    .collect();
                self.actions.push(Action::Event(Event::ShutdownPlan {
                    budget_ms: ms(plan.budget),
                    reserve_ms: ms(plan.reserve),
                    waves,
                }));
            }
            Step::StopWave { services, deadline } => {
                self.wave = services.clone();
                for name in &services {
                    self.begin_stop(name, Some(deadline), now);
                }
                if !self.orphans_started {
                    self.orphans_started = true;
                    let timeout = deadline.saturating_duration_since(now);
                    self.orphans = Some(StopJob::new(
                        Signal::SIGTERM,
                        StopScope::Tree,
                        None,
                        timeout,
                        now,
                    ));
                }
                self.check_progress(now);
            }
            Step::EndGrace => {
                let waiting = std::mem::take(&mut self.waiters);
                for ((conn, id), _) in waiting {
                    self.actions.push(Action::Reply {
                        conn,
                        line: reply_err(
                            id.as_ref(),
                            ErrorCode::ShuttingDown,
                            "request not finished within grace_ms of the shutdown",
                        ),
                    });
                }
                self.actions.push(Action::CloseIdle);
            }
            Step::KillEverything { .. } => {
                // Services still stopping (or still running, after a second SIGINT) are killed by
                // their own job; everything else left over is the `leftovers` job's.
                for s in &mut self.services {
                    s.restart_at = None;
                    match s.stop.as_mut() {
                        Some(job) => {
                            job.clip(now);
                            job.escalate();
                        }
                        None if s.main.is_some() => s.stop = Some(StopJob::kill_now(now)),
                        None => {}
                    }
                }
                if let Some(rec) = self.recovery.as_mut() {
                    rec.clip(now);
                    rec.escalate();
                }
                self.wave.clear();
                // Unknown orphans still alive are the leftovers job's now.
                self.orphans = None;
                self.leftovers = Some(StopJob::kill_now(now));
            }
            Step::RunHooks { deadline } => {
                self.hooks_deadline = Some(deadline);
                self.next_hook = 0;
                self.advance_hooks(now);
            }
            Step::Finish => self.finish(now),
        }
    }

    // ----- cleanup hooks -----------------------------------------------------------------------

    /// Reports the hook that just ended (if any) and starts the next one.
    fn advance_hooks(&mut self, now: Instant) {
        if let Some(h) = &self.hook {
            let Some(result) = h.result.clone() else {
                return;
            };
            if h.reaper.as_ref().is_some_and(|j| !j.is_done()) {
                return;
            }
            // Leftover children of a hook that exited are killed too: nothing may outlive shutdown.
            if h.reaper.is_none() && h.proc.is_some() {
                if let Some(h) = self.hook.as_mut() {
                    h.reaper = Some(StopJob::kill_now(now));
                }
                return;
            }
            let cmd = self.cfg.cleanup.get(h.index).cloned().unwrap_or_default();
            let elapsed = ms(now.saturating_duration_since(h.started));
            if h.ok {
                info!(
                    "cleanup[{}] {:?}: {result} after {elapsed} ms",
                    h.index,
                    cmd.join(" ")
                );
            } else {
                error!(
                    "cleanup[{}] {:?} failed: {result} after {elapsed} ms",
                    h.index,
                    cmd.join(" ")
                );
                self.failures
                    .push(format!("cleanup[{}] {}: {result}", h.index, cmd.join(" ")));
            }
            self.actions.push(Action::Event(Event::Cleanup {
                cmd,
                ok: h.ok,
                result,
                elapsed_ms: elapsed,
            }));
            self.hook = None;
        }
        if self.phase() != Phase::Killing {
            return;
        }
        let Some(hard) = self.hooks_deadline else {
            return;
        };
        let Some(cmd) = self.cfg.cleanup.get(self.next_hook).cloned() else {
            self.hooks_deadline = None;
            self.shutdown_input(ShutdownInput::HooksFinished, now);
            return;
        };
        let index = self.next_hook;
        self.next_hook += 1;
        let left = self.cfg.cleanup.len() - index;
        // Each hook gets a fair share of what is left, so one that hangs cannot starve the rest,
        // and the last share ends early enough to kill an overrunning hook before the deadline.
        let remaining = hard.saturating_duration_since(now);
        let usable = remaining.saturating_sub((remaining / 10).min(HOOK_KILL_MARGIN));
        let share = usable / left as u32;
        self.hook = Some(HookRun {
            index,
            proc: None,
            started: now,
            deadline: now + share,
            result: None,
            ok: false,
            reaper: None,
        });
        info!(
            "cleanup[{index}]: running {:?} (at most {})",
            cmd.join(" "),
            secs(share)
        );
        self.actions.push(Action::Spawn {
            who: Spawnee::Hook(index),
            cmd,
            env: Vec::new(),
            cwd: None,
            inherit_stdin: false,
        });
    }

    // ----- the end -----------------------------------------------------------------------------

    fn finish(&mut self, now: Instant) {
        let mut survivors: Vec<Survivor> = Vec::new();
        for (id, desc) in &self.touched {
            survivors.push(Survivor {
                pid: id.pid,
                state: "?".into(),
                cmdline: desc.clone(),
            });
        }
        for s in &self.services {
            if let Some(m) = s.main
                && !self.touched.contains_key(&m)
            {
                survivors.push(Survivor {
                    pid: m.pid,
                    state: "?".into(),
                    // The loop's last look at /proc fills in the real command line.
                    cmdline: s.spec.cmd.join(" "),
                });
            }
        }
        // A hook still running (or being killed) at the deadline: kill it and report it now,
        // so its `cleanup` event comes before `done`.
        if let Some(h) = self.hook.take() {
            let cmd = self.cfg.cleanup.get(h.index).cloned().unwrap_or_default();
            let result = h
                .result
                .clone()
                .unwrap_or_else(|| "killed at the shutdown deadline".into());
            if let Some(p) = h.proc.filter(|p| self.roots.spawned.contains_key(p)) {
                self.actions.push(Action::Signal {
                    proc: p,
                    signal: Signal::SIGKILL,
                });
                if !self.touched.contains_key(&p) {
                    survivors.push(Survivor {
                        pid: p.pid,
                        state: "?".into(),
                        cmdline: cmd.join(" "),
                    });
                }
            }
            error!("cleanup[{}] {:?} failed: {result}", h.index, cmd.join(" "));
            self.failures
                .push(format!("cleanup[{}] {}: {result}", h.index, cmd.join(" ")));
            let elapsed_ms = ms(now.saturating_duration_since(h.started));
            self.actions.push(Action::Event(Event::Cleanup {
                cmd,
                ok: false,
                result,
                elapsed_ms,
            }));
        }
        let hooks_skipped = self.cfg.cleanup.len().saturating_sub(self.next_hook);
        if hooks_skipped > 0 {
            self.failures.push(format!(
                "{hooks_skipped} cleanup command(s) not run: no time left"
            ));
        }
        let took = self
            .shutdown
            .started()
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let bound = self.shutdown.budget();
        let within_bound = took <= bound;
        if !within_bound {
            self.failures.push(format!(
                "the shutdown took {} and overran its bound of {}",
                secs(took),
                secs(bound)
            ));
        }
        let clean = survivors.is_empty() && self.failures.is_empty();
        let code = match self.command_status {
            Some(status) if !status.success() || clean => status.as_exit_code(),
            _ => i32::from(!clean),
        };
        let elapsed = ms(took);
        for f in &self.failures {
            error!("not clean: {f}");
        }
        for s in &survivors {
            error!("survivor: pid {} ({})", s.pid, s.cmdline);
        }
        info!(
            "done: {} after {elapsed} ms ({} the bound of {}), {} survivor{}, exit status {code}",
            if clean { "clean" } else { "NOT clean" },
            if within_bound { "within" } else { "OVER" },
            secs(bound),
            survivors.len(),
            if survivors.len() == 1 { "" } else { "s" }
        );
        self.actions.push(Action::Event(Event::Done {
            clean,
            within_bound,
            elapsed_ms: elapsed,
            exit_code: code,
            survivors,
        }));
        self.shutdown.exited();
        self.actions.push(Action::Exit { code });
    }

    // ----- control requests --------------------------------------------------------------------

    fn on_request(&mut self, to: ReplyTo, req: Request, now: Instant) {
        if req.is_mutating() && self.phase() != Phase::Running {
            let msg = format!(
                "reapd is {}; it no longer starts, stops or reloads anything",
                self.phase().as_str()
            );
            self.reply(&to, Err((ErrorCode::ShuttingDown, msg)));
            return;
        }
        let result = match req {
            Request::Ping => Ok(json!({ "pong": true })),
            Request::Status => Ok(self.status_json(now)),
            Request::List => Ok(json!({ "services": self.list_json(now) })),
            Request::Watch => {
                self.watchers.insert(to.0);
                Ok(json!({ "watching": true, "state": self.phase().as_str() }))
            }
            Request::Shutdown => {
                self.trigger(Trigger::Request, now);
                Ok(json!({ "state": self.phase().as_str() }))
            }
            Request::Reload => {
                if self.mode == Mode::Single {
                    Err((
                        ErrorCode::Failed,
                        "nothing to reload: reapd runs a single command, not a config file"
                            .to_string(),
                    ))
                } else {
                    self.actions.push(Action::LoadConfig { reply: Some(to) });
                    return;
                }
            }
            Request::Start { name } | Request::Restart { name }
                if self
                    .service(&name)
                    .is_some_and(|s| s.then == AfterStop::Remove) =>
            {
                Err((
                    ErrorCode::NoSuchService,
                    format!(
                        "{name} is being removed: it is no longer in the config file (add it back and reload)"
                    ),
                ))
            }
            Request::Start { name } => match self.service(&name) {
                None => Err(self.no_such(&name)),
                Some(s) if s.main.is_some() && s.stop.is_none() => s.ok_running(&name),
                Some(s) if s.stop.is_some() => {
                    if let Some(s) = self.service_mut(&name)
                        && s.then == AfterStop::Stay
                    {
                        s.then = AfterStop::Start;
                    }
                    self.waiters.push((to, Waiter::Running(name)));
                    return;
                }
                Some(_) => {
                    self.waiters.push((to, Waiter::Running(name.clone())));
                    self.spawn(&name, now);
                    return;
                }
            },
            Request::Stop { name } => match self.service_mut(&name) {
                None => Err(self.no_such(&name)),
                Some(s) => {
                    s.down = true;
                    if s.then == AfterStop::Start {
                        s.then = AfterStop::Stay;
                    }
                    self.waiters.push((to, Waiter::Stopped(name.clone())));
                    self.begin_stop(&name, None, now);
                    return;
                }
            },
            Request::Restart { name } => match self.service_mut(&name) {
                None => Err(self.no_such(&name)),
                Some(s) => {
                    if s.then == AfterStop::Stay {
                        s.then = AfterStop::Start;
                    }
                    s.down = false;
                    self.waiters.push((to, Waiter::Running(name.clone())));
                    self.begin_stop(&name, None, now);
                    return;
                }
            },
            Request::Signal { name, signal } => match self.service(&name) {
                None => Err(self.no_such(&name)),
                Some(s) => match s.main {
                    None => Err((
                        ErrorCode::NotRunning,
                        format!("{name} has no running main process ({})", s.state()),
                    )),
                    Some(main) => {
                        self.touched.insert(main, s.spec.cmd.join(" "));
                        self.actions.push(Action::Signal { proc: main, signal });
                        info!(
                            "{name}: sent {} to pid {} on request",
                            signal.as_str(),
                            main.pid
                        );
                        Ok(json!({ "name": name, "pid": main.pid, "signal": signal.as_str() }))
                    }
                },
            },
        };
        self.reply(&to, result);
    }

    fn no_such(&self, name: &str) -> (ErrorCode, String) {
        let hint = crate::wire::text::did_you_mean(
            name,
            self.services.iter().map(|s| s.spec.name.as_str()),
        );
        (
            ErrorCode::NoSuchService,
            format!("no service named {}{hint}", crate::wire::text::quoted(name)),
        )
    }

    fn reply(&mut self, (conn, id): &ReplyTo, result: Result<Value, (ErrorCode, String)>) {
        let line = match result {
            Ok(v) => reply_ok(id.as_ref(), v),
            Err((code, msg)) => reply_err(id.as_ref(), code, &msg),
        };
        self.actions.push(Action::Reply { conn: *conn, line });
    }

    fn answer_waiters(
        &mut self,
        matches: impl Fn(&Waiter) -> bool,
        answer: impl Fn(&Service) -> Result<Value, (ErrorCode, String)>,
    ) {
        let (hit, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|(_, w)| matches(w));
        self.waiters = keep;
        for (to, w) in hit {
            let name = match &w {
                Waiter::Stopped(n) | Waiter::Running(n) => n.clone(),
            };
            let result = match self.service(&name) {
                Some(s) => answer(s),
                None => answer(&Service::new(ServiceSpec::new(&name, Vec::new()))),
            };
            self.reply(&to, result);
        }
    }

    fn status_json(&self, now: Instant) -> Value {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &self.services {
            *counts.entry(s.state()).or_default() += 1;
        }
        json!({
            "state": self.phase().as_str(),
            "pid": self.self_pid,
            "version": env!("CARGO_PKG_VERSION"),
            "mode": match self.mode { Mode::Config => "config", Mode::Single => "single" },
            "uptime_ms": ms(now.saturating_duration_since(self.started)),
            "services": { "total": self.services.len(), "by_state": counts },
        })
    }

    fn list_json(&self, now: Instant) -> Vec<Value> {
        self.services
            .iter()
            .map(|s| {
                json!({
                    "name": s.spec.name,
                    "state": s.state(),
                    "pid": s.main.map(|m| m.pid),
                    "restarts": s.restarts,
                    "last_exit": s.last_exit,
                    "uptime_ms": s.main.and(s.running_since).map(|t| ms(now.saturating_duration_since(t))),
                })
            })
            .collect()
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
                self.reply(
                    &to,
                    Err((
                        ErrorCode::ShuttingDown,
                        "shutdown began before the reload could be applied".into(),
                    )),
                );
            }
            return;
        }
        let mut new = match result {
            Ok(c) => c,
            Err(errors) => {
                error!("reload rejected; the running services are unchanged:");
                // A file can hold hundreds of thousands of errors: the log and the reply carry the
                // first ones (a reply must stay far below what a client may have queued).
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
                for e in &list {
                    error!("  {e}");
                }
                if let Some(to) = reply {
                    let line = reply_err_with(
                        to.1.as_ref(),
                        ErrorCode::ConfigError,
                        &format!(
                            "config rejected ({} error{}); nothing changed",
                            errors.len(),
                            if errors.len() == 1 { "" } else { "s" }
                        ),
                        json!({ "errors": list }),
                    );
                    self.actions.push(Action::Reply { conn: to.0, line });
                }
                return;
            }
        };
        if let Some(ms) = self.shutdown_timeout_override
            && let Err(e) = new.set_shutdown_timeout(ms)
        {
            warn!("--shutdown-timeout: {e}");
        }
        for w in &new.warnings {
            warn!("{w}");
        }
        if new.socket.is_some() && new.socket != self.cfg.socket {
            warn!(
                "the control socket path changed in the config; it takes effect only after a restart of reapd"
            );
        }
        // Compare with what each service is about to become: a pending replacement counts, and
        // a service still being removed is no longer part of the running set.
        let effective: BTreeMap<String, Option<ServiceSpec>> = self
            .services
            .iter()
            .map(|s| {
                let eff = match &s.then {
                    AfterStop::Remove => None,
                    AfterStop::Replace(spec) => Some((**spec).clone()),
                    AfterStop::Stay | AfterStop::Start => Some(s.spec.clone()),
                };
                (s.spec.name.clone(), eff)
            })
            .collect();
        let mut added = Vec::new();
        let mut removed = Vec::new();
        let mut changed = Vec::new();
        for spec in &new.services {
            match effective.get(&spec.name) {
                None | Some(None) => added.push(spec.name.clone()),
                Some(Some(o)) if o != spec => changed.push(spec.name.clone()),
                Some(Some(_)) => {}
            }
        }
        let new_names: HashSet<&str> = new.services.iter().map(|s| s.name.as_str()).collect();
        for (name, eff) in &effective {
            if eff.is_some() && !new_names.contains(name.as_str()) {
                removed.push(name.clone());
            }
        }
        let renewed: HashSet<&str> = added.iter().chain(&changed).map(String::as_str).collect();
        // Rebuild the table in the new start order; removed services stay until they are stopped.
        let mut table: Vec<Service> = Vec::new();
        let mut current: BTreeMap<String, Service> = std::mem::take(&mut self.services)
            .into_iter()
            .map(|s| (s.spec.name.clone(), s))
            .collect();
        for spec in &new.services {
            match current.remove(&spec.name) {
                Some(mut s) => {
                    if renewed.contains(spec.name.as_str()) {
                        // Back in the config while being removed: it stays after all.
                        s.down = false;
                        s.then = if s.stop.is_some() {
                            if s.spec == *spec {
                                AfterStop::Start
                            } else {
                                AfterStop::Replace(Box::new(spec.clone()))
                            }
                        } else if s.main.is_some() {
                            AfterStop::Replace(Box::new(spec.clone()))
                        } else {
                            s.spec = spec.clone();
                            AfterStop::Stay
                        };
                    }
                    table.push(s);
                }
                None => table.push(Service::new(spec.clone())),
            }
        }
        for (_, mut s) in current {
            s.then = AfterStop::Remove;
            s.down = true;
            table.push(s);
        }
        self.services = table;
        self.reindex();
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
        info!(
            "reload: added [{}], removed [{}], changed [{}]",
            added.join(", "),
            removed.join(", "),
            changed.join(", ")
        );
        for name in &removed {
            self.begin_stop(name, None, now);
        }
        for name in &changed {
            let needs_stop = self
                .service(name)
                .is_some_and(|s| matches!(s.then, AfterStop::Replace(_)));
            if needs_stop {
                self.begin_stop(name, None, now);
            }
        }
        for name in &added {
            // One still stopping starts once its stop is over (see `AfterStop`).
            if self
                .service(name)
                .is_some_and(|s| s.stop.is_none() && s.main.is_none())
            {
                self.spawn(name, now);
            }
        }
        self.actions.push(Action::Event(Event::Reloaded {
            added: added.clone(),
            removed: removed.clone(),
            changed: changed.clone(),
        }));
        if let Some(to) = reply {
            self.reply(
                &to,
                Ok(json!({ "added": added, "removed": removed, "changed": changed })),
            );
        }
        self.notify_status();
    }

    // ----- bookkeeping -------------------------------------------------------------------------

    /// Every stop in progress: services', the final kill of leftovers, an overrunning hook's.
    fn jobs(&self) -> impl Iterator<Item = &StopJob> {
        let hook = self.hook.as_ref().and_then(|h| h.reaper.as_ref());
        let recovery = self
            .recovery
            .iter()
            .flat_map(|r| r.owners.iter().map(|o| &o.job));
        self.services
            .iter()
            .filter_map(|s| s.stop.as_ref())
            .chain(self.orphans.as_ref())
            .chain(self.leftovers.as_ref())
            .chain(hook)
            .chain(recovery)
    }

    fn jobs_mut(&mut self) -> impl Iterator<Item = &mut StopJob> {
        let hook = self.hook.as_mut().and_then(|h| h.reaper.as_mut());
        let recovery = self
            .recovery
            .iter_mut()
            .flat_map(|r| r.owners.iter_mut().map(|o| &mut o.job));
        self.services
            .iter_mut()
            .filter_map(|s| s.stop.as_mut())
            .chain(self.orphans.as_mut())
            .chain(self.leftovers.as_mut())
            .chain(hook)
            .chain(recovery)
    }

    fn service(&self, name: &str) -> Option<&Service> {
        self.position(name).and_then(|i| self.services.get(i))
    }

    fn service_mut(&mut self, name: &str) -> Option<&mut Service> {
        self.position(name).and_then(|i| self.services.get_mut(i))
    }

    /// Rebuilds the name index; needed whenever `services` is replaced or reordered.
    fn reindex(&mut self) {
        self.index = self
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.spec.name.clone(), i))
            .collect();
    }

    fn position(&self, name: &str) -> Option<usize> {
        match self.index.get(name) {
            Some(&i) if self.services.get(i).is_some_and(|s| s.spec.name == name) => Some(i),
            // An index out of step with the table (a change without `reindex`) costs a scan,
            // never a wrong answer.
            _ if self.index.len() != self.services.len() || self.index.contains_key(name) => {
                self.services.iter().position(|s| s.spec.name == name)
            }
            _ => None,
        }
    }

    /// Takes a stopped service out of the table, the index and the roots.
    fn remove_service(&mut self, name: &str) {
        let Some(pos) = self.position(name) else {
            return;
        };
        self.services.remove(pos);
        self.index.remove(name);
        for i in self.index.values_mut() {
            if *i > pos {
                *i -= 1;
            }
        }
        self.roots.services.remove(name);
        self.roots.sessions.retain(|_, n| n != name);
    }

    fn refresh_roots(&mut self) {
        self.roots.services = self.services.iter().map(|s| s.spec.name.clone()).collect();
        for s in &self.services {
            if let Some(m) = s.main {
                self.roots
                    .spawned
                    .insert(m, Owner::Service(s.spec.name.clone()));
                self.roots.sessions.insert(m.pid, s.spec.name.clone());
            }
        }
        let names = &self.roots.services;
        self.roots.sessions.retain(|_, n| names.contains(n));
    }

    /// Forgets session ids no process uses any more (their numbers may be reused).
    fn prune_sessions(&mut self, snap: &Snapshot) {
        let live: HashSet<Pid> = snap.procs.values().map(|p| p.sid).collect();
        let mains: HashSet<Pid> = self
            .services
            .iter()
            .filter_map(|s| s.main.map(|m| m.pid))
            .collect();
        self.roots
            .sessions
            .retain(|sid, _| live.contains(sid) || mains.contains(sid));
    }

    /// Keeps the state file in line with the processes reapd started: a successor uses it to stop
    /// them should reapd die without cleaning up.
    fn persist(&mut self) {
        let mut now: Vec<Recorded> = self
            .services
            .iter()
            .filter_map(|s| {
                s.main.map(|m| Recorded {
                    owner: s.spec.name.clone(),
                    pid: m.pid,
                    start: m.start,
                })
            })
            .collect();
        if let Some(h) = &self.hook
            && let Some(p) = h.proc
        {
            now.push(Recorded {
                owner: format!("cleanup[{}]", h.index),
                pid: p.pid,
                start: p.start,
            });
        }
        if now != self.persisted {
            self.persisted = now.clone();
            self.actions.push(Action::Persist(now));
        }
    }

    fn notify_status(&mut self) {
        if self.phase() != Phase::Running {
            return;
        }
        let running = self.services.iter().filter(|s| s.main.is_some()).count();
        self.actions.push(Action::Notify(Notice::Status(format!(
            "running: {running}/{} services up",
            self.services.len()
        ))));
    }
}

impl Service {
    fn ok_running(&self, name: &str) -> Result<Value, (ErrorCode, String)> {
        Ok(json!({ "name": name, "state": self.state(), "pid": self.main.map(|m| m.pid) }))
    }
}

/// Processes the final sweep chooses beyond reapd's own descendants: listeners on the services'
/// ports and command lines containing their `match` strings. Never pid 1, reapd or its ancestors.
fn sweep_targets(
    snap: &Snapshot,
    services: &[Service],
    owners: &HashMap<Pid, Owner>,
) -> Vec<(ProcId, String)> {
    let protected = snap.protected();
    let mut out: BTreeMap<ProcId, String> = BTreeMap::new();
    for (pid, owner) in owners {
        if *owner == Owner::Unknown
            && let Some(p) = snap.procs.get(pid)
            && !p.is_dead()
            && p.ppid == snap.self_pid
        {
            out.insert(
                p.id(),
                "orphan reparented to reapd, belonging to no service".into(),
            );
        }
    }
    for s in services {
        for l in snap
            .listeners
            .iter()
            .filter(|l| s.spec.ports.contains(&l.port))
        {
            if let Some(p) = snap
                .procs
                .get(&l.pid)
                .filter(|p| !p.is_dead() && !protected.contains(&p.pid))
            {
                out.entry(p.id()).or_insert_with(|| {
                    format!("listening on port {} of service {}", l.port, s.spec.name)
                });
            }
        }
        for m in &s.spec.matches {
            for p in snap.procs.values() {
                if !p.is_dead()
                    && !protected.contains(&p.pid)
                    && p.cmdline.as_deref().is_some_and(|c| c.contains(m.as_str()))
                {
                    out.entry(p.id()).or_insert_with(|| {
                        format!("command line matches {m:?} of service {}", s.spec.name)
                    });
                }
            }
        }
    }
    out.into_iter().collect()
}

fn pid_list(pids: &[Pid]) -> String {
    let shown: Vec<String> = pids.iter().take(12).map(ToString::to_string).collect();
    let more = pids.len().saturating_sub(12);
    if more > 0 {
        format!("pids {} and {more} more", shown.join(", "))
    } else {
        format!(
            "pid{} {}",
            if pids.len() == 1 { "" } else { "s" },
            shown.join(", ")
        )
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    //! The whole supervisor driven against a fake process table and a fake clock: every action is
    //! carried out by [`World`], which plays the kernel (signals, deaths, reparenting to reapd).

    use std::collections::{BTreeMap, VecDeque};

    use super::*;
    use crate::core::proctree::ProcInfo;
    use crate::wire::config::parse;

    const ME: Pid = 1000;

    #[derive(Clone, Copy, Default)]
    struct Quirks {
        ignores_term: bool,
        unkillable: bool,
    }

    struct World {
        sup: Supervisor,
        now: Instant,
        t0: Instant,
        procs: BTreeMap<Pid, (ProcInfo, Quirks)>,
        next_pid: Pid,
        events: Vec<Event>,
        signals: Vec<(Pid, Signal)>,
        exit: Option<(i32, Instant)>,
        /// How each spawned main process behaves, by service name; children to create under it.
        plan: HashMap<String, (Quirks, Vec<Quirks>)>,
    }

    impl World {
        fn new(cfg: &str) -> World {
            let cfg = parse(cfg).expect("valid config");
            let t0 = crate::core::sim::epoch();
            let mut procs = BTreeMap::new();
            let me = ProcInfo {
                pid: ME,
                ppid: 1,
                pgid: ME,
                sid: ME,
                start: 1,
                state: 'S',
                threads: 1,
                comm: "reapd".into(),
                marker: None,
                cmdline: None,
            };
            procs.insert(ME, (me, Quirks::default()));
            World {
                sup: Supervisor::new(Mode::Config, cfg, None, ME, t0),
                now: t0,
                t0,
                procs,
                next_pid: 2000,
                events: Vec::new(),
                signals: Vec::new(),
                exit: None,
                plan: HashMap::new(),
            }
        }

        fn snapshot(&self) -> Snapshot {
            Snapshot::new(ME, self.procs.values().map(|(p, _)| p.clone()))
        }

        fn feed(&mut self, input: Input) {
            let mut queue = VecDeque::from([input]);
            loop {
                while let Some(i) = queue.pop_front() {
                    self.sup.handle(i, self.now);
                    for a in self.sup.take_actions() {
                        self.perform(a, &mut queue);
                    }
                }
                match self.sup.scan_request() {
                    Some(_) => queue.push_back(Input::Scanned(self.snapshot())),
                    None => break,
                }
            }
        }

        fn new_proc(&mut self, ppid: Pid, sid: Pid, marker: Option<String>, q: Quirks) -> ProcId {
            let pid = self.next_pid;
            self.next_pid += 1;
            let p = ProcInfo {
                pid,
                ppid,
                pgid: sid,
                sid: if sid == 0 { pid } else { sid },
                start: pid as u64 * 7,
                state: 'S',
                threads: 1,
                comm: "fake".into(),
                marker,
                cmdline: Some(format!("fake {pid}")),
            };
            let id = p.id();
            self.procs.insert(pid, (p, q));
            id
        }

        fn perform(&mut self, a: Action, queue: &mut VecDeque<Input>) {
            match a {
                Action::Spawn { who, .. } => {
                    let name = match &who {
                        Spawnee::Service(n) => n.clone(),
                        Spawnee::Hook(i) => format!("hook{i}"),
                    };
                    let (q, kids) = self.plan.get(&name).cloned().unwrap_or_default();
                    let main = self.new_proc(ME, 0, Some(name.clone()), q);
                    for k in kids {
                        self.new_proc(main.pid, main.pid, Some(name.clone()), k);
                    }
                    queue.push_back(Input::Spawned { who, proc: main });
                }
                Action::Signal { proc, signal } => {
                    self.signals.push((proc.pid, signal));
                    let Some((p, q)) = self
                        .procs
                        .get_mut(&proc.pid)
                        .filter(|(p, _)| p.start == proc.start)
                    else {
                        queue.push_back(Input::Gone(proc));
                        return;
                    };
                    let dies = match signal {
                        Signal::SIGKILL => !q.unkillable,
                        Signal::SIGSTOP => {
                            if !q.unkillable {
                                p.state = 'T';
                            }
                            false
                        }
                        Signal::SIGCONT => {
                            if p.state == 'T' {
                                p.state = 'S';
                            }
                            false
                        }
                        Signal::SIGTERM => !q.ignores_term && !q.unkillable,
                        _ => false,
                    };
                    if dies {
                        self.kill(proc.pid, signal, queue);
                    }
                }
                Action::Watch(proc) => {
                    if self
                        .procs
                        .get(&proc.pid)
                        .is_none_or(|(p, _)| p.start != proc.start)
                    {
                        queue.push_back(Input::Gone(proc));
                    }
                }
                Action::Event(e) => self.events.push(e),
                Action::Exit { code } => self.exit = Some((code, self.now)),
                Action::Reply { .. }
                | Action::Close(_)
                | Action::CloseIdle
                | Action::CloseListener
                | Action::LoadConfig { .. }
                | Action::Notify(_)
                | Action::Persist(_) => {}
            }
        }

        /// A process dies: its children are reparented to reapd (the subreaper), and reapd
        /// reaps it if it was its child.
        fn kill(&mut self, pid: Pid, signal: Signal, queue: &mut VecDeque<Input>) {
            let Some((p, _)) = self.procs.remove(&pid) else {
                return;
            };
            for (c, _) in self.procs.values_mut() {
                if c.ppid == pid {
                    c.ppid = ME;
                }
            }
            if p.ppid == ME {
                queue.push_back(Input::Reaped {
                    pid,
                    status: ExitStatus::Signal(signal as i32),
                });
            }
            queue.push_back(Input::Gone(p.id()));
        }

        /// The only service's main process dies of SIGKILL.
        fn crash_main(&mut self) {
            let main = self
                .procs
                .values()
                .find(|(p, _)| p.ppid == ME && p.pid != ME)
                .map(|(p, _)| p.pid)
                .expect("main");
            let mut q = VecDeque::new();
            self.kill(main, Signal::SIGKILL, &mut q);
            for i in q {
                self.feed(i);
            }
        }

        /// Moves the clock to each deadline in turn until `limit` (or exit).
        fn run_until(&mut self, limit: Duration) {
            let end = self.t0 + limit;
            while self.exit.is_none() {
                let Some(d) = self.sup.deadline() else { break };
                if d > end {
                    break;
                }
                self.now = self.now.max(d);
                self.feed(Input::Tick);
            }
        }

        fn done(&self) -> Option<&Event> {
            self.events.iter().find(|e| matches!(e, Event::Done { .. }))
        }
    }

    #[test]
    fn an_unkillable_process_is_listed_as_a_survivor_and_the_exit_status_is_1() {
        let mut w = World::new(
            r#"{"shutdown_timeout_ms": 3000, "services": {"db": {"cmd": ["x"], "stop_timeout_ms": 1000}}}"#,
        );
        w.plan.insert(
            "db".into(),
            (
                Quirks::default(),
                vec![Quirks {
                    unkillable: true,
                    ..Quirks::default()
                }],
            ),
        );
        w.feed(Input::Start { predecessor: None });
        let stuck = w
            .procs
            .values()
            .find(|(p, q)| q.unkillable && p.ppid != ME)
            .map(|(p, _)| p.pid)
            .expect("child");
        w.feed(Input::Signal(Signal::SIGTERM));
        w.run_until(Duration::from_secs(60));
        let (code, at) = w.exit.expect("exited");
        assert_eq!(code, 1);
        assert!(
            at - w.t0 <= Duration::from_secs(3),
            "within the bound: {:?}",
            at - w.t0
        );
        let Some(Event::Done {
            clean,
            survivors,
            exit_code,
            ..
        }) = w.done()
        else {
            panic!("no done")
        };
        assert!(!clean);
        assert_eq!(*exit_code, 1);
        assert_eq!(
            survivors.iter().map(|s| s.pid).collect::<Vec<_>>(),
            vec![stuck]
        );
        assert!(
            w.signals.contains(&(stuck, Signal::SIGKILL)),
            "it was killed, it just did not die"
        );
    }

    #[test]
    fn a_clean_shutdown_exits_0_and_signals_children_before_their_parent() {
        let mut w = World::new(r#"{"services": {"web": {"cmd": ["x"]}}}"#);
        w.plan.insert(
            "web".into(),
            (
                Quirks::default(),
                vec![Quirks::default(), Quirks::default()],
            ),
        );
        w.feed(Input::Start { predecessor: None });
        w.feed(Input::Signal(Signal::SIGTERM));
        w.run_until(Duration::from_secs(60));
        assert_eq!(w.exit.map(|e| e.0), Some(0));
        let terms: Vec<Pid> = w
            .signals
            .iter()
            .filter(|(_, s)| *s == Signal::SIGTERM)
            .map(|(p, _)| *p)
            .collect();
        let main = 2000;
        assert_eq!(terms.last(), Some(&main), "main last: {terms:?}");
        assert_eq!(terms.len(), 3);
        assert!(matches!(w.done(), Some(Event::Done { clean: true, .. })));
    }

    #[test]
    fn stubborn_services_in_three_waves_finish_within_the_bound() {
        let mut w = World::new(
            r#"{"shutdown_timeout_ms": 6000, "services": {
                "a": {"cmd": ["x"], "stop_timeout_ms": 20000},
                "b": {"cmd": ["x"], "after": ["a"], "stop_timeout_ms": 20000},
                "c": {"cmd": ["x"], "after": ["b"], "stop_timeout_ms": 20000}}}"#,
        );
        for s in ["a", "b", "c"] {
            w.plan.insert(
                s.into(),
                (
                    Quirks {
                        ignores_term: true,
                        ..Quirks::default()
                    },
                    vec![],
                ),
            );
        }
        w.feed(Input::Start { predecessor: None });
        w.feed(Input::Signal(Signal::SIGTERM));
        w.run_until(Duration::from_secs(60));
        let (code, at) = w.exit.expect("exit");
        assert_eq!(code, 0);
        assert!(at - w.t0 <= Duration::from_secs(6), "{:?}", at - w.t0);
        let stopped: Vec<&str> = w
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Stopped { service, how, .. } if how == "killed" => Some(service.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(stopped, ["c", "b", "a"]);
    }

    #[test]
    fn orphans_are_stopped_with_their_service_or_in_the_first_wave() {
        let mut w = World::new(r#"{"services": {"web": {"cmd": ["x"]}}}"#);
        w.feed(Input::Start { predecessor: None });
        let deaf = Quirks {
            ignores_term: true,
            ..Quirks::default()
        };
        // Reparented to reapd with only the marker to go on; and two with no clue at all.
        let ours = w.new_proc(ME, 5555, Some("web".into()), deaf);
        let stray = w.new_proc(ME, 6666, None, Quirks::default());
        let deaf_stray = w.new_proc(ME, 7777, None, deaf);
        w.feed(Input::Signal(Signal::SIGTERM));
        w.run_until(Duration::from_secs(60));
        assert_eq!(w.exit.map(|e| e.0), Some(0));
        assert!(
            w.signals.contains(&(ours.pid, Signal::SIGTERM)),
            "stopped gracefully as part of web"
        );
        assert!(w.events.iter().any(|e| matches!(e, Event::Killed { service: Some(s), pids, .. } if s == "web" && pids == &vec![ours.pid])));
        // Unknown orphans are asked to stop with the first wave, and killed when it ends.
        assert!(w.signals.contains(&(stray.pid, Signal::SIGTERM)));
        assert!(w.signals.contains(&(deaf_stray.pid, Signal::SIGTERM)));
        assert!(!w.procs.contains_key(&stray.pid) && !w.procs.contains_key(&deaf_stray.pid));
        assert!(w.events.iter().any(|e| matches!(e, Event::Killed { service: None, pids, .. } if pids == &vec![deaf_stray.pid])));
    }

    #[test]
    fn a_second_sigint_kills_everything_at_once() {
        let mut w = World::new(r#"{"services": {"a": {"cmd": ["x"], "stop_timeout_ms": 20000}}}"#);
        w.plan.insert(
            "a".into(),
            (
                Quirks {
                    ignores_term: true,
                    ..Quirks::default()
                },
                vec![],
            ),
        );
        w.feed(Input::Start { predecessor: None });
        w.feed(Input::Signal(Signal::SIGINT));
        w.now += Duration::from_millis(10);
        w.feed(Input::Signal(Signal::SIGINT));
        w.run_until(Duration::from_secs(60));
        let (code, at) = w.exit.expect("exit");
        assert_eq!(code, 0);
        assert!(
            at - w.t0 < Duration::from_secs(1),
            "no waiting for the 20 s timeout: {:?}",
            at - w.t0
        );
    }

    #[test]
    fn restart_backoff_doubles_and_resets_after_a_healthy_run() {
        let mut w = World::new(r#"{"services": {"a": {"cmd": ["x"]}}}"#);
        w.feed(Input::Start { predecessor: None });
        let mut delays = Vec::new();
        for _ in 0..4 {
            w.crash_main();
            let Some(Event::Restarting { delay_ms, .. }) = w.events.last() else {
                panic!("{:?}", w.events.last())
            };
            delays.push(*delay_ms);
            w.now = w.sup.deadline().expect("restart deadline");
            w.feed(Input::Tick);
        }
        assert_eq!(delays, vec![100, 200, 400, 800]);
        // Ten healthy seconds later, the next crash restarts after 100 ms again.
        w.now += HEALTHY_RUN;
        w.crash_main();
        assert!(matches!(
            w.events.last(),
            Some(Event::Restarting { delay_ms: 100, .. })
        ));
    }
}

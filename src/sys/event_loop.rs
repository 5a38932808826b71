//! The event loop: the only owner of `mio::Poll`, and the only place actions become syscalls.
//!
//! Owns: waiting for readiness (the signal self-pipe, the listener, connections, one pidfd per
//! watched process), turning it into the core's inputs, the single reaper (`waitpid(-1,
//! WNOHANG)` until nothing is left), and carrying out the core's actions as the [`Edge`] of
//! `core::turn`, whose order every turn follows.
//! Must never: decide anything, or wake up on a timer of its own: the poll timeout is the core's
//! next deadline, so an idle reapd makes no system calls at all. The one exception is a broken
//! `epoll_wait`: the core is told (it then stops everything), and the loop keeps turning on a
//! bounded sleep until reapd exits, because a supervisor must never abandon its tree.
//!
//! Descriptors are budgeted once, from the open-file limit: what start-up opened, a reserve for
//! the stop path, a cap on clients, and the rest for pidfds. When the stop path still runs out,
//! clients are closed before a process goes unwatched.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, error, info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use crate::core::io::{Action, Input, Mode, ScanRequest};
use crate::core::proctree::{Pid, ProcId, Snapshot};
use crate::core::supervisor::Supervisor;
use crate::core::turn::{self, Edge};
use crate::sys::config_file;
use crate::sys::control::{self, Control, Incoming, Lock};
use crate::sys::logging;
use crate::sys::notify::Notifier;
use crate::sys::pidfd::PidFd;
use crate::sys::priority::{Priority, PriorityControl};
use crate::sys::procfs;
use crate::sys::rlimits;
use crate::sys::signals::SignalSource;
use crate::sys::spawn::{SpawnSpec, Spawner};
use crate::sys::state_file;
use crate::sys::tokens::{self, Source};
use crate::wire::config::{Config, ConfigError};
use crate::wire::events::{ExitStatus, event_line};
use crate::wire::state_file::{Recorded, StateRecord};

/// How long exiting may spend delivering the last lines to clients.
const FINAL_FLUSH: Duration = Duration::from_millis(200);
/// How long one turn may spend serving clients (checked between requests)...
const CLIENTS_PER_TURN: Duration = Duration::from_millis(10);
/// ...and one client within it.
const CLIENT_PER_TURN: Duration = Duration::from_millis(2);
/// Descriptors kept free for the stop path at all times: a `/proc` scan holds two (the
/// directory and one file), signalling a process without a held pidfd one, spawning a clean-up
/// hook a few (stdin, the exec-error pipe), re-reading the config one; with room to spare.
pub const STOP_RESERVE: usize = 16;
/// With `epoll_wait` broken, the longest the loop sleeps between turns: often enough to notice
/// exits by rescanning, rarely enough not to spin.
const BROKEN_LOOP_NAP: Duration = Duration::from_millis(100);

/// Everything the loop needs, prepared by `main`.
#[derive(Debug)]
pub struct Setup {
    /// Config file or single command.
    pub mode: Mode,
    /// The validated config (single-command mode: one service).
    pub config: Config,
    /// Where to re-read the config on reload.
    pub config_path: Option<PathBuf>,
    /// Control socket to bind, if any.
    pub socket: Option<PathBuf>,
    /// `--shutdown-timeout`, which keeps overriding the file on reload.
    pub shutdown_override: Option<u64>,
    /// Readiness channels.
    pub notifier: Notifier,
    /// What every child receives (file limit, stdin).
    pub spawner: Spawner,
    /// The installed signal handlers.
    pub signals: SignalSource,
}

/// Whether a process could be reached through a pidfd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    /// A pidfd is held: its exit will be announced.
    Yes,
    /// It is gone (or the pid belongs to another process now).
    Gone,
    /// It could not be checked or watched (out of descriptors): assume it lives.
    Blind,
}

struct Watched {
    start: u64,
    fd: PidFd,
}

/// The system side of a turn: every resource the loop holds.
pub struct SysEdge {
    poll: Poll,
    signals: SignalSource,
    control: Option<Control>,
    lock: Option<Lock>,
    pidfds: HashMap<Pid, Watched>,
    notifier: Notifier,
    spawner: Spawner,
    config_path: Option<PathBuf>,
    self_pid: Pid,
    /// reapd's own start time, the state file's first record.
    self_start: u64,
    /// `<socket>.state`, when there is a socket.
    state_path: Option<PathBuf>,
    /// Set by the core's last action.
    exit_code: Option<i32>,
    /// What was learnt while performing an action or reaping, for the core.
    learnt: Vec<Input>,
    /// Most pidfds held at once (the descriptor budget).
    watch_cap: usize,
    warned_fds: bool,
    priority: PriorityControl,
    /// A descriptor was closed this turn: connections waiting for one may be accepted.
    fds_freed: bool,
}

impl std::fmt::Debug for SysEdge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SysEdge")
            .field("watched", &self.pidfds.len())
            .finish_non_exhaustive()
    }
}

/// Runs reapd until it exits; returns the exit status.
pub fn run(setup: Setup) -> i32 {
    let Setup {
        mode,
        config,
        config_path,
        socket,
        shutdown_override,
        notifier,
        spawner,
        mut signals,
    } = setup;
    let poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            error!("cannot create the event loop (epoll): {e}");
            return 3;
        }
    };
    if let Err(e) = poll
        .registry()
        .register(signals.source(), tokens::SIGNALS, Interest::READABLE)
    {
        error!("cannot watch the signal pipe: {e}");
        return 3;
    }
    let (control, lock, budget) = match &socket {
        None => (None, None, FdBudget::new(open_fds(), false)),
        Some(path) => {
            let lock = match Lock::acquire(path) {
                Ok(l) => l,
                Err(e) => {
                    error!("cannot start: {e}");
                    return 3;
                }
            };
            let listener = match control::bind(path) {
                Ok(l) => l,
                Err(e) => {
                    error!("cannot start: {e}");
                    let _ = lock.release();
                    return 3;
                }
            };
            // Counted now, with the lock and the listener open.
            let budget = FdBudget::new(open_fds(), true);
            match Control::new(listener, path.clone(), poll.registry(), budget.conns) {
                Ok(c) => (Some(c), Some(lock), budget),
                Err(e) => {
                    error!("cannot start: cannot watch the control socket: {e}");
                    let _ = std::fs::remove_file(path);
                    let _ = lock.release();
                    return 3;
                }
            }
        }
    };
    debug!(
        "descriptors: limit {}, {} open at start, {STOP_RESERVE} reserved for the stop path, up \
         to {} clients, up to {} pidfds",
        budget.limit, budget.base, budget.conns, budget.pidfds
    );
    if let Some(c) = &control {
        info!("control socket {}", c.path().display());
    }
    let self_pid = std::process::id() as Pid;
    let mut sup = Supervisor::new(mode, config, shutdown_override, self_pid, Instant::now());
    let mut edge = SysEdge {
        poll,
        signals,
        control,
        lock,
        pidfds: HashMap::new(),
        notifier,
        spawner,
        config_path,
        self_pid,
        self_start: procfs::read_stat(self_pid).map_or(0, |p| p.start),
        state_path: socket.as_deref().map(state_file::path_for),
        exit_code: None,
        learnt: Vec::new(),
        watch_cap: budget.pidfds,
        warned_fds: false,
        priority: PriorityControl::default(),
        fds_freed: false,
    };
    // A SIGCHLD delivered before the handler existed is lost, but its zombie is not; and a stop
    // signal that arrived during start-up (held blocked until the handlers existed) is acted on
    // before anything is started.
    let mut first = edge.reap();
    first.extend(edge.read_signals().1);
    turn::feed(&mut sup, &mut edge, first);
    // We hold the lock: a state file left at this socket is a predecessor's that died without
    // cleaning up.
    let predecessor = edge.state_path.as_deref().and_then(state_file::read);
    turn::turn(&mut sup, &mut edge, vec![Input::Start { predecessor }]);
    turn_loop(&mut sup, &mut edge)
}

fn turn_loop(sup: &mut Supervisor, edge: &mut SysEdge) -> i32 {
    let mut events = Events::with_capacity(256);
    let mut broken = false;
    loop {
        if let Some(code) = edge.exit_code {
            return edge.exit(code);
        }
        let busy = edge
            .control
            .as_ref()
            .is_some_and(|c| c.has_work() || (edge.fds_freed && c.waiting_for_descriptor()));
        let timeout = if busy {
            Some(Duration::ZERO)
        } else {
            turn::poll_timeout(sup, Instant::now())
        };
        let mut inputs = Vec::new();
        if broken {
            std::thread::sleep(timeout.unwrap_or(BROKEN_LOOP_NAP).min(BROKEN_LOOP_NAP));
            events.clear();
        } else {
            match edge.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                // A signal arrived during epoll_wait, which is never restarted; it is in the pipe.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // No event can be waited for any more: the core stops everything, the loop
                    // turns on a nap from now on (signals and children are still read below).
                    error!("event loop failure: epoll_wait: {e}");
                    broken = true;
                    events.clear();
                    inputs.push(Input::LoopFailed {
                        error: e.to_string(),
                    });
                }
            }
        }
        let mut reap = broken;
        let mut accept = false;
        for ev in events.iter() {
            match tokens::source(ev.token()) {
                Source::Signals => {
                    let (chld, sigs) = edge.read_signals();
                    reap |= chld;
                    inputs.extend(sigs);
                }
                Source::Listener => accept = true,
                Source::Conn(conn) => {
                    let Some(c) = edge.control.as_mut() else {
                        continue;
                    };
                    let mut got = Vec::new();
                    if ev.is_write_closed() || ev.is_error() {
                        // The peer is gone altogether (not merely done sending): a watcher that
                        // left would otherwise hold its slot until the next event fails to write.
                        got.extend(c.hang_up(conn, edge.poll.registry()));
                    } else {
                        // Reading happens in the client's turn, within its budget.
                        if ev.is_readable() || ev.is_read_closed() {
                            c.readable(conn);
                        }
                        if ev.is_writable() {
                            got.extend(c.writable(conn, edge.poll.registry()));
                        }
                    }
                    inputs.extend(edge.incoming(got));
                }
                Source::Pidfd(pid) => {
                    edge.forget(pid);
                    reap = true;
                }
                // Sporadic events of sources already gone.
                Source::Unknown => {}
            }
        }
        if broken {
            inputs.extend(edge.read_signals().1);
        }
        if reap {
            inputs.extend(edge.reap());
        }
        inputs.append(&mut edge.learnt);
        turn::feed(sup, edge, inputs);
        edge.accept_clients(accept);
        serve_clients(sup, edge);
        turn::settle(sup, edge);
    }
}

/// Gives connections with input their turn, round robin: each at most its read and request
/// budget and [`CLIENT_PER_TURN`], all together about [`CLIENTS_PER_TURN`]. Each request reaches
/// the core (and its reply the connection) before the next is read. Who is left over goes first
/// next turn, which comes without waiting.
fn serve_clients(sup: &mut Supervisor, edge: &mut SysEdge) {
    let start = Instant::now();
    let queued = edge.control.as_ref().map_or(0, Control::ready_len);
    for _ in 0..queued {
        if start.elapsed() >= CLIENTS_PER_TURN || edge.exit_code.is_some() {
            return;
        }
        let Some(id) = edge.control.as_mut().and_then(Control::pop_ready) else {
            return;
        };
        let own = Instant::now();
        loop {
            let Some(c) = edge.control.as_mut() else {
                return;
            };
            let Some(got) = c.next_request(id, edge.poll.registry()) else {
                break;
            };
            let inputs = edge.incoming(vec![got]);
            turn::feed(sup, edge, inputs);
            if own.elapsed() >= CLIENT_PER_TURN {
                break;
            }
        }
        let got = edge
            .control
            .as_mut()
            .map(|c| c.end_turn(id, edge.poll.registry()))
            .unwrap_or_default();
        let inputs = edge.incoming(got);
        turn::feed(sup, edge, inputs);
    }
}

impl Edge for SysEdge {
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// Collects every child that has exited: SIGCHLD coalesces, so one signal may stand for many.
    fn reap(&mut self) -> Vec<Input> {
        loop {
            let (pid, status) =
                match waitpid(nix::unistd::Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), ExitStatus::Code(code)),
                    Ok(WaitStatus::Signaled(pid, sig, _)) => {
                        (pid.as_raw(), ExitStatus::Signal(sig as i32))
                    }
                    Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                    Ok(_) | Err(Errno::EINTR) => continue,
                    Err(e) => {
                        error!("waitpid: {e}");
                        break;
                    }
                };
            debug!("reaped pid {pid} ({status})");
            self.learnt.push(Input::Reaped { pid, status });
            self.forget(pid);
        }
        std::mem::take(&mut self.learnt)
    }

    fn perform(&mut self, action: Action) -> Vec<Input> {
        match action {
            Action::Spawn {
                who,
                cmd,
                env,
                cwd,
                inherit_stdin,
            } => {
                let spec = SpawnSpec {
                    cmd: &cmd,
                    env: &env,
                    cwd: cwd.as_ref(),
                    inherit_stdin,
                };
                let input = match self.spawner.spawn(&spec) {
                    Ok(pid) => match self.adopt_child(pid) {
                        Ok(proc) => Input::Spawned { who, proc },
                        Err(e) => Input::SpawnFailed { who, error: e },
                    },
                    Err(e) => Input::SpawnFailed { who, error: e },
                };
                self.learnt.push(input);
            }
            Action::Signal { proc, signal } => {
                let reach = self.send(proc, signal);
                self.reached(proc, reach);
            }
            Action::Watch(proc) => {
                let reach = self.watch(proc);
                self.reached(proc, reach);
            }
            Action::Reply { conn, line } => {
                let got = self
                    .control
                    .as_mut()
                    .map(|c| c.reply(conn, &line, self.poll.registry()))
                    .unwrap_or_default();
                let inputs = self.incoming(got);
                self.learnt.extend(inputs);
            }
            Action::Event(ev) => {
                logging::event(&ev);
                let line = event_line(&ev, logging::unix_ms(SystemTime::now()));
                let got = self
                    .control
                    .as_mut()
                    .map(|c| c.broadcast(&line, self.poll.registry()))
                    .unwrap_or_default();
                let inputs = self.incoming(got);
                self.learnt.extend(inputs);
            }
            Action::CloseIdle => {
                let got = self
                    .control
                    .as_mut()
                    .map(|c| c.close_idle(self.poll.registry()))
                    .unwrap_or_default();
                let inputs = self.incoming(got);
                self.learnt.extend(inputs);
            }
            Action::CloseListener => {
                if let Some(c) = self.control.as_mut() {
                    c.close_listener(self.poll.registry());
                }
            }
            Action::LoadConfig { reply } => {
                let result = match &self.config_path {
                    Some(p) => config_file::load(p),
                    None => Err(vec![ConfigError {
                        path: String::new(),
                        message: "no config file to reload".into(),
                    }]),
                };
                self.learnt.push(Input::ConfigLoaded { result, reply });
            }
            Action::Notify(n) => self.notifier.send(&n),
            Action::Persist(procs) => self.persist(procs),
            Action::Release { keep_state } => {
                let failures = self.release(keep_state);
                self.learnt.push(Input::Released { failures });
            }
            Action::Exit { code } => self.exit_code = Some(code),
        }
        std::mem::take(&mut self.learnt)
    }

    fn scan(&mut self, req: &ScanRequest) -> Snapshot {
        let snap = procfs::scan(self.self_pid, req);
        if snap.incomplete
            && out_of_fds(self.poll.as_raw_fd())
            && self.shed_client("scanning /proc")
        {
            return procfs::scan(self.self_pid, req);
        }
        snap
    }

    fn set_urgent(&mut self, urgent: bool) {
        self.priority.set(if urgent {
            Priority::Urgent
        } else {
            Priority::Normal
        });
    }
}

impl SysEdge {
    /// Drains the signal pipe: whether SIGCHLD was among them (reap then), and the others.
    fn read_signals(&mut self) -> (bool, Vec<Input>) {
        let mut chld = false;
        let mut inputs = Vec::new();
        for sig in self.signals.pending() {
            if sig == Signal::SIGCHLD {
                chld = true;
            } else {
                inputs.push(Input::Signal(sig));
            }
        }
        (chld, inputs)
    }

    /// Accepts new connections (on a listener event), and those left waiting for a descriptor
    /// once one has been freed.
    fn accept_clients(&mut self, event: bool) {
        let freed = std::mem::take(&mut self.fds_freed);
        if let Some(c) = self.control.as_mut() {
            if event {
                c.accept(self.poll.registry());
            } else {
                c.accept_again(self.poll.registry(), freed);
            }
        }
    }

    /// The process behind a pidfd is gone: close the pidfd and say so.
    fn forget(&mut self, pid: Pid) {
        if let Some(w) = self.pidfds.remove(&pid) {
            let _ = self.poll.registry().deregister(&mut SourceFd(&w.fd.raw()));
            self.fds_freed = true;
            self.learnt.push(Input::Gone(ProcId {
                pid,
                start: w.start,
            }));
        }
    }

    fn incoming(&mut self, got: Vec<Incoming>) -> Vec<Input> {
        got.into_iter()
            .map(|i| match i {
                Incoming::Request { conn, id, request } => Input::Request { conn, id, request },
                Incoming::Closed(conn) => {
                    self.fds_freed = true;
                    Input::ConnClosed(conn)
                }
            })
            .collect()
    }

    /// The stop path found no free descriptor: closes a client (an idle one first, then a
    /// watcher) so that processes stay watched. False when there was none to close.
    fn shed_client(&mut self, why: &str) -> bool {
        let Some(c) = self.control.as_mut() else {
            return false;
        };
        let Some((kind, got)) = c.shed_one(self.poll.registry()) else {
            return false;
        };
        warn!(
            "out of descriptors ({why}): closed {kind} of the control socket to keep watching \
             processes; raise the open-file limit (ulimit -n) to avoid this"
        );
        let inputs = self.incoming(got);
        self.learnt.extend(inputs);
        true
    }

    /// Takes a freshly spawned child under watch. It is our unreaped child, so its pid cannot
    /// have been reused yet and its `/proc` entry exists even if it already exited.
    fn adopt_child(&mut self, pid: Pid) -> Result<ProcId, String> {
        let start = procfs::read_stat(pid)
            .map(|p| p.start)
            .ok_or_else(|| format!("pid {pid} vanished from /proc right after it was spawned"))?;
        let proc = ProcId { pid, start };
        // Beyond the pidfd cap a child of ours is still seen to exit, through SIGCHLD; the
        // descriptors stay for clients and the stop path.
        if self.pidfds.len() >= self.watch_cap {
            self.short_of_fds("the pidfd cap (the open-file limit) is reached");
            return Ok(proc);
        }
        match PidFd::open(pid) {
            Ok(fd) => self.register(proc, fd),
            Err(e) => warn!("pidfd_open({pid}): {e}; relying on SIGCHLD for it"),
        }
        Ok(proc)
    }

    fn reached(&mut self, proc: ProcId, reach: Reach) {
        match reach {
            Reach::Yes => {}
            Reach::Gone => self.learnt.push(Input::Gone(proc)),
            Reach::Blind => self.learnt.push(Input::Unwatchable(proc)),
        }
    }

    fn register(&mut self, proc: ProcId, fd: PidFd) {
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&fd.raw()),
            tokens::pidfd(proc.pid),
            Interest::READABLE,
        ) {
            warn!("cannot watch pid {}: {e}", proc.pid);
        }
        self.pidfds.insert(
            proc.pid,
            Watched {
                start: proc.start,
                fd,
            },
        );
    }

    /// Makes sure a pidfd is held for exactly this process, so its exit is announced.
    fn watch(&mut self, proc: ProcId) -> Reach {
        match self.pidfds.get(&proc.pid) {
            Some(w) if w.start == proc.start => return Reach::Yes,
            Some(_) => self.forget(proc.pid),
            None => {}
        }
        // Keep descriptors for sockets and spawning: beyond the cap, fall back on rescans.
        if self.pidfds.len() >= self.watch_cap {
            self.short_of_fds("the pidfd cap (the open-file limit) is reached");
            return Reach::Blind;
        }
        match self.open_pidfd(proc) {
            Ok(Some(fd)) => {
                self.register(proc, fd);
                Reach::Yes
            }
            Ok(None) => Reach::Gone,
            Err(e) => {
                self.short_of_fds(&e.to_string());
                Reach::Blind
            }
        }
    }

    /// Opens a verified pidfd; out of descriptors, closes a client to make room and tries once
    /// more.
    fn open_pidfd(&mut self, proc: ProcId) -> io::Result<Option<PidFd>> {
        match PidFd::open_verified(proc) {
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                    && self.shed_client(&format!("watching pid {}: {e}", proc.pid)) =>
            {
                PidFd::open_verified(proc)
            }
            r => r,
        }
    }

    /// Signals one process through a pidfd: the one held for it, or else a short-lived one.
    fn send(&mut self, proc: ProcId, signal: Signal) -> Reach {
        let reach = self.watch(proc);
        let transient;
        let fd = match (reach, self.pidfds.get(&proc.pid)) {
            (Reach::Gone, _) => return Reach::Gone,
            (Reach::Yes, Some(w)) => &w.fd,
            _ => match self.open_pidfd(proc) {
                Ok(Some(fd)) => {
                    transient = fd;
                    &transient
                }
                Ok(None) => return Reach::Gone,
                Err(e) => {
                    warn!("cannot send {} to pid {}: {e}", signal.as_str(), proc.pid);
                    return Reach::Blind;
                }
            },
        };
        match fd.send_signal(signal) {
            Ok(()) => {
                debug!("sent {} to pid {}", signal.as_str(), proc.pid);
                reach
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Reach::Gone,
            Err(e) => {
                warn!("cannot send {} to pid {}: {e}", signal.as_str(), proc.pid);
                reach
            }
        }
    }

    fn persist(&self, procs: Vec<Recorded>) {
        if let Some(path) = &self.state_path {
            state_file::write(
                path,
                &StateRecord {
                    reapd: Some((self.self_pid, self.self_start)),
                    procs,
                },
            );
        }
    }

    /// Says once why processes are being watched by rescanning instead of pidfds.
    fn short_of_fds(&mut self, why: &str) {
        if !self.warned_fds {
            self.warned_fds = true;
            warn!(
                "cannot watch every process through a pidfd ({why}): noticing their exit by rescanning \
                 /proc instead; raise the open-file limit (ulimit -n) to avoid this"
            );
        }
    }

    /// The end: the listener closes, the socket and lock go, and the state file unless survivors
    /// are kept in it. Returns what could not be removed.
    fn release(&mut self, keep_state: bool) -> Vec<String> {
        let mut failures = Vec::new();
        if let Some(path) = &self.state_path
            && !keep_state
            && let Err(e) = state_file::remove(path)
        {
            failures.push(format!("cannot remove state file {}: {e}", path.display()));
        }
        if let Some(c) = self.control.as_mut() {
            c.close_listener(self.poll.registry());
            if let Err(e) = c.remove_socket() {
                failures.push(format!("cannot remove socket {}: {e}", c.path().display()));
            }
        }
        if let Some(l) = self.lock.take()
            && let Err(e) = l.release()
        {
            failures.push(format!("cannot remove lock file: {e}"));
        }
        failures
    }

    fn exit(&mut self, code: i32) -> i32 {
        if let Some(c) = self.control.as_mut() {
            c.flush_all(Instant::now() + FINAL_FLUSH);
        }
        logging::flush();
        code
    }
}

/// How the open-file limit is shared: what start-up opened, [`STOP_RESERVE`] for the stop
/// path, a quarter of the rest (at most [`control::MAX_CONNS`]) for clients, the remainder for
/// pidfds. Processes beyond the pidfd cap are watched by rescanning `/proc`; clients beyond the
/// cap wait in the listen backlog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FdBudget {
    limit: usize,
    base: usize,
    conns: usize,
    pidfds: usize,
}

impl FdBudget {
    fn new(base: usize, with_socket: bool) -> FdBudget {
        FdBudget::split(rlimits::nofile_soft(), base, with_socket)
    }

    fn split(limit: usize, base: usize, with_socket: bool) -> FdBudget {
        let spare = limit.saturating_sub(base.saturating_add(STOP_RESERVE));
        let conns = if with_socket {
            (spare / 4).clamp(1, control::MAX_CONNS)
        } else {
            0
        };
        FdBudget {
            limit,
            base,
            conns,
            pidfds: spare.saturating_sub(conns),
        }
    }
}

/// Descriptors open now (inherited ones included), or a pessimistic guess.
fn open_fds() -> usize {
    match std::fs::read_dir("/proc/self/fd") {
        // The directory's own descriptor is listed too.
        Ok(dir) => dir.count().saturating_sub(1),
        Err(_) => 32,
    }
}

/// True when no descriptor can be opened right now; `open` is any open descriptor.
fn out_of_fds(open: RawFd) -> bool {
    // SAFETY: F_DUPFD_CLOEXEC duplicates an open descriptor (or fails); the copy is closed at
    // once.
    let fd = unsafe { libc::fcntl(open, libc::F_DUPFD_CLOEXEC, 0) };
    if fd >= 0 {
        // SAFETY: closing the descriptor we just created, which nothing else knows.
        unsafe { libc::close(fd) };
        return false;
    }
    matches!(
        io::Error::last_os_error().raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_budget_keeps_a_reserve_and_caps_clients() {
        let b = FdBudget::split(64, 10, true);
        assert_eq!(b.conns + b.pidfds + b.base + STOP_RESERVE, 64);
        assert!(b.conns >= 1 && b.conns < 16, "{b:?}");
        assert!(b.pidfds > b.conns, "{b:?}");
        let b = FdBudget::split(1 << 20, 10, true);
        assert_eq!(b.conns, control::MAX_CONNS);
        let b = FdBudget::split(20, 10, true);
        assert_eq!((b.conns, b.pidfds), (1, 0), "{b:?}");
        let b = FdBudget::split(64, 10, false);
        assert_eq!(b.conns, 0);
        assert_eq!(b.pidfds, 38);
    }
}

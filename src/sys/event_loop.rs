//! The event loop: the only owner of `mio::Poll`, and the only place actions become syscalls.
//!
//! Owns: the poll tokens (signal self-pipe, listener, connections, one pidfd per watched
//! process), the single reaper (`waitpid(-1, WNOHANG)` until nothing is left), and carrying out
//! the supervisor's [`Action`]s.
//! Must never: decide anything, sleep, or wake up on a timer of its own. The poll timeout is the
//! supervisor's next deadline, so an idle reapd makes no system calls at all.
//!
//! Canonical turn: wait → turn readiness into inputs (signals, reaped children, gone processes)
//! → feed each to the supervisor and perform its actions → serve clients in turn, each within a
//! small budget → tick if a deadline passed → scan `/proc` while the supervisor asks for it →
//! wait again (without blocking while clients or scans still have work queued).
//!
//! Descriptors are budgeted once, from the open-file limit: what start-up opened, a reserve for
//! the stop path, a cap on clients, and the rest for pidfds. When the stop path still runs out,
//! clients are closed before a process goes unwatched.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, error, info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use crate::core::proctree::{Pid, ProcId, ProcInfo};
use crate::core::supervisor::{Action, Input, Mode, ScanRequest, Supervisor};
use crate::sys::config_file;
use crate::sys::control::{self, Control, Incoming, Lock};
use crate::sys::logging;
use crate::sys::notify::Notifier;
use crate::sys::pidfd::PidFd;
use crate::sys::priority::{Priority, PriorityControl};
use crate::sys::procfs;
use crate::sys::signals::SignalSource;
use crate::sys::spawn::{SpawnSpec, Spawner};
use crate::sys::state_file;
use crate::wire::config::{Config, ConfigError};
use crate::wire::protocol::ExitStatus;
use crate::wire::protocol::{Event, Survivor, event_line};
use crate::wire::state_file::{Recorded, StateRecord};

const SIGNALS: Token = Token(0);
const PIDFD_BASE: usize = 2 << 32;
/// How long one turn may spend scanning `/proc` before the loop lets other events and due
/// deadlines in: a fork storm keeps the stop asking for scans, and a stop timeout that is not
/// acted on in time would let the storm overrun the shutdown bound. One scan always completes.
const SCAN_BUDGET_PER_TURN: Duration = Duration::from_millis(50);
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

/// The running loop.
pub struct EventLoop {
    poll: Poll,
    signals: SignalSource,
    control: Option<Control>,
    lock: Option<Lock>,
    sup: Supervisor,
    pidfds: HashMap<Pid, Watched>,
    notifier: Notifier,
    spawner: Spawner,
    config_path: Option<PathBuf>,
    self_pid: Pid,
    exit_code: Option<i32>,
    inputs: VecDeque<Input>,
    /// Most pidfds held at once (the descriptor budget).
    watch_cap: usize,
    warned_fds: bool,
    priority: PriorityControl,
    /// `<socket>.state`, when there is a socket.
    state_path: Option<PathBuf>,
    /// reapd's own pid and start time, the state file's first record.
    self_start: u64,
    /// A descriptor was closed this turn: connections waiting for one may be accepted.
    fds_freed: bool,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("watched", &self.pidfds.len())
            .finish_non_exhaustive()
    }
}

fn pidfd_token(pid: Pid) -> Token {
    Token(PIDFD_BASE + pid as usize)
}

fn token_pid(t: Token) -> Option<Pid> {
    (t.0 >= PIDFD_BASE)
        .then(|| Pid::try_from(t.0 - PIDFD_BASE).ok())
        .flatten()
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
        .register(signals.source(), SIGNALS, Interest::READABLE)
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
    let sup = Supervisor::new(mode, config, shutdown_override, self_pid, Instant::now());
    let mut lp = EventLoop {
        poll,
        signals,
        control,
        lock,
        sup,
        pidfds: HashMap::new(),
        notifier,
        spawner,
        config_path,
        self_pid,
        exit_code: None,
        inputs: VecDeque::new(),
        watch_cap: budget.pidfds,
        warned_fds: false,
        priority: PriorityControl::default(),
        state_path: socket.as_deref().map(state_file::path_for),
        self_start: procfs::read_stat(self_pid).map_or(0, |p| p.start),
        fds_freed: false,
    };
    // A SIGCHLD delivered before the handler existed is lost, but its zombie is not.
    lp.reap();
    // A stop signal that arrived during start-up (held blocked until the handlers existed) is
    // acted on before anything is started.
    lp.read_signals();
    lp.drain_inputs();
    // We hold the lock: a state file left at this socket is a predecessor's that died without
    // cleaning up.
    let predecessor = lp.state_path.as_deref().and_then(state_file::read);
    lp.dispatch(Input::Start { predecessor });
    lp.turn_loop()
}

impl EventLoop {
    fn turn_loop(&mut self) -> i32 {
        let mut events = Events::with_capacity(256);
        let mut poll_failures = 0u32;
        loop {
            if let Some(code) = self.exit_code {
                return self.exit(code);
            }
            let now = Instant::now();
            let busy = self.sup.scan_request().is_some()
                || self.control.as_ref().is_some_and(|c| {
                    c.has_work() || (self.fds_freed && c.waiting_for_descriptor())
                });
            let timeout = if busy {
                Some(Duration::ZERO)
            } else {
                self.sup
                    .deadline()
                    .map(|d| d.saturating_duration_since(now))
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => poll_failures = 0,
                // A signal arrived during epoll_wait, which is never restarted; it is in the pipe.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // We must not die with services running: treat a broken loop like Ctrl-C
                    // twice, which kills everything bottom-up and exits.
                    poll_failures += 1;
                    error!("event loop failure ({e}); shutting down");
                    if poll_failures > 50 {
                        return self.exit(1);
                    }
                    self.dispatch(Input::Signal(Signal::SIGINT));
                    self.dispatch(Input::Signal(Signal::SIGINT));
                    events.clear();
                }
            }
            let mut reap = false;
            let mut gone: Vec<Pid> = Vec::new();
            let mut accept = false;
            for ev in events.iter() {
                let token = ev.token();
                if token == SIGNALS {
                    reap |= self.read_signals();
                } else if token == control::LISTENER {
                    accept = true;
                } else if let Some(conn) = control::token_conn(token) {
                    let Some(c) = self.control.as_mut() else {
                        continue;
                    };
                    let mut got = Vec::new();
                    if ev.is_write_closed() || ev.is_error() {
                        // The peer is gone altogether (not merely done sending): a watcher that
                        // left would otherwise hold its slot until the next event fails to write.
                        got.extend(c.hang_up(conn, self.poll.registry()));
                    } else {
                        // Reading happens in the client's turn, within its budget.
                        if ev.is_readable() || ev.is_read_closed() {
                            c.readable(conn);
                        }
                        if ev.is_writable() {
                            got.extend(c.writable(conn, self.poll.registry()));
                        }
                    }
                    self.queue_incoming(got);
                } else if let Some(pid) = token_pid(token) {
                    gone.push(pid);
                    reap = true;
                }
            }
            if reap {
                self.reap();
            }
            for pid in gone {
                self.forget(pid);
            }
            self.drain_inputs();
            self.accept_clients(accept);
            self.serve_clients();
            self.scans();
            // Several deadlines may have passed at once; what one tick starts (a kill) is
            // carried out by scans before the next tick (a report) can see it.
            for _ in 0..3 {
                if self.exit_code.is_some()
                    || self.sup.deadline().is_none_or(|d| d > Instant::now())
                {
                    break;
                }
                self.dispatch(Input::Tick);
                self.scans();
            }
        }
    }

    /// Drains the signal pipe into inputs; true if SIGCHLD was among them (reap then).
    fn read_signals(&mut self) -> bool {
        let mut chld = false;
        for sig in self.signals.pending() {
            if sig == Signal::SIGCHLD {
                chld = true;
            } else {
                self.inputs.push_back(Input::Signal(sig));
            }
        }
        chld
    }

    /// Gives connections with input their turn, round robin: each at most its read and
    /// request budget and [`CLIENT_PER_TURN`], all together about [`CLIENTS_PER_TURN`]. Who
    /// is left over goes first next turn, which comes without waiting.
    fn serve_clients(&mut self) {
        let start = Instant::now();
        let queued = self.control.as_ref().map_or(0, Control::ready_len);
        for _ in 0..queued {
            if start.elapsed() >= CLIENTS_PER_TURN || self.exit_code.is_some() {
                return;
            }
            let Some(id) = self.control.as_mut().and_then(Control::pop_ready) else {
                return;
            };
            let own = Instant::now();
            loop {
                let Some(c) = self.control.as_mut() else {
                    return;
                };
                let Some(got) = c.next_request(id, self.poll.registry()) else {
                    break;
                };
                self.queue_incoming(vec![got]);
                self.drain_inputs();
                if own.elapsed() >= CLIENT_PER_TURN {
                    break;
                }
            }
            let got = self
                .control
                .as_mut()
                .map(|c| c.end_turn(id, self.poll.registry()))
                .unwrap_or_default();
            self.queue_incoming(got);
            self.drain_inputs();
        }
    }

    /// Accepts new connections (on a listener event), and those left waiting for a
    /// descriptor once one has been freed.
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

    /// Collects every child that has exited: SIGCHLD coalesces, so one signal may stand for many.
    fn reap(&mut self) {
        loop {
            match waitpid(nix::unistd::Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    self.reaped(pid.as_raw(), ExitStatus::Code(code))
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.reaped(pid.as_raw(), ExitStatus::Signal(sig as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    error!("waitpid: {e}");
                    return;
                }
            }
        }
    }

    fn reaped(&mut self, pid: Pid, status: ExitStatus) {
        self.inputs.push_back(Input::Reaped { pid, status });
        self.forget(pid);
    }

    /// The process behind a pidfd is gone: close the pidfd and say so.
    fn forget(&mut self, pid: Pid) {
        if let Some(w) = self.pidfds.remove(&pid) {
            let _ = self.poll.registry().deregister(&mut SourceFd(&w.fd.raw()));
            self.fds_freed = true;
            self.inputs.push_back(Input::Gone(ProcId {
                pid,
                start: w.start,
            }));
        }
    }

    fn dispatch(&mut self, input: Input) {
        self.inputs.push_back(input);
        self.drain_inputs();
    }

    fn drain_inputs(&mut self) {
        while let Some(input) = self.inputs.pop_front() {
            self.sup.handle(input, Instant::now());
            // Before carrying out a stop's first signal: a fork storm must not starve it.
            self.priority.set(if self.sup.urgent() {
                Priority::Urgent
            } else {
                Priority::Normal
            });
            for action in self.sup.take_actions() {
                self.perform(action);
            }
        }
    }

    fn scans(&mut self) {
        let began = Instant::now();
        for n in 0.. {
            let Some(req) = self.sup.scan_request() else {
                return;
            };
            // After the first scan: out of budget, or a deadline is due. The poll timeout is
            // zero while a scan is wanted, so the next turn ticks and then carries on scanning.
            let now = Instant::now();
            if n > 0
                && (now.duration_since(began) >= SCAN_BUDGET_PER_TURN
                    || self.sup.deadline().is_some_and(|d| d <= now))
            {
                return;
            }
            // Collect exited children first, so their exit status is known before the scan
            // reports them gone.
            self.reap();
            self.drain_inputs();
            if self.sup.scan_request().is_none() {
                return;
            }
            let mut snap = procfs::scan(self.self_pid, &req);
            if snap.incomplete
                && out_of_fds(self.poll.as_raw_fd())
                && self.shed_client("scanning /proc")
            {
                snap = procfs::scan(self.self_pid, &req);
            }
            self.dispatch(Input::Scanned(snap));
        }
    }

    fn queue_incoming(&mut self, got: Vec<Incoming>) {
        for i in got {
            self.inputs.push_back(match i {
                Incoming::Request { conn, id, request } => Input::Request { conn, id, request },
                Incoming::Closed(conn) => {
                    self.fds_freed = true;
                    Input::ConnClosed(conn)
                }
            });
        }
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
        self.queue_incoming(got);
        true
    }

    fn perform(&mut self, action: Action) {
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
                self.inputs.push_back(input);
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
                self.queue_incoming(got);
            }
            Action::Event(ev) => {
                let ev = if let Event::Done { .. } = ev {
                    self.clean_up(ev)
                } else {
                    ev
                };
                let line = event_line(&ev, logging::unix_ms(SystemTime::now()));
                let got = self
                    .control
                    .as_mut()
                    .map(|c| c.broadcast(&line, self.poll.registry()))
                    .unwrap_or_default();
                self.queue_incoming(got);
            }
            Action::Close(conn) => {
                let got = self
                    .control
                    .as_mut()
                    .map(|c| c.close_after_flush(conn, self.poll.registry()))
                    .unwrap_or_default();
                self.queue_incoming(got);
            }
            Action::CloseIdle => {
                let got = self
                    .control
                    .as_mut()
                    .map(|c| c.close_idle(self.poll.registry()))
                    .unwrap_or_default();
                self.queue_incoming(got);
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
                self.inputs.push_back(Input::ConfigLoaded { result, reply });
            }
            Action::Notify(n) => self.notifier.send(&n),
            Action::Persist(procs) => self.persist(procs),
            // A failed clean-up step may already have turned a 0 into 1.
            Action::Exit { code } => {
                self.exit_code = Some(self.exit_code.filter(|_| code == 0).unwrap_or(code))
            }
        }
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
            Reach::Gone => self.inputs.push_back(Input::Gone(proc)),
            Reach::Blind => self.inputs.push_back(Input::Unwatchable(proc)),
        }
    }

    fn register(&mut self, proc: ProcId, fd: PidFd) {
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&fd.raw()),
            pidfd_token(proc.pid),
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

    /// Opens a verified pidfd; out of descriptors, closes a client to make room and tries
    /// once more.
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

    /// CleanedUp: remove the socket and the lock before watchers hear `done`, and fill in what
    /// survivors look like now.
    fn clean_up(&mut self, ev: Event) -> Event {
        let Event::Done {
            mut clean,
            within_bound,
            elapsed_ms,
            mut exit_code,
            survivors,
        } = ev
        else {
            return ev;
        };
        // A last look at /proc: whatever of reapd's is still alive is a survivor, whether the
        // supervisor knew about it or not; a listed survivor that has died meanwhile is not.
        let snap = procfs::scan(self.self_pid, &ScanRequest::default());
        // A stopped process cannot be in the middle of a fork, so reading its command line cannot
        // stall on its memory-map lock; any other survivor is named by its command name.
        let describe = |p: &ProcInfo| {
            p.is_stopped()
                .then(|| procfs::read_cmdline(p.pid))
                .flatten()
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| p.describe())
        };
        let mut still: Vec<Survivor> = survivors
            .into_iter()
            .filter_map(|s| {
                let p = snap.procs.get(&s.pid).filter(|p| !p.is_dead())?;
                Some(Survivor {
                    pid: s.pid,
                    state: p.state.to_string(),
                    cmdline: describe(p),
                })
            })
            .collect();
        for pid in snap.descendants(self.self_pid) {
            if let Some(p) = snap.procs.get(&pid).filter(|p| !p.is_dead())
                && !still.iter().any(|s| s.pid == pid)
            {
                still.push(Survivor {
                    pid,
                    state: p.state.to_string(),
                    cmdline: describe(p),
                });
            }
        }
        if snap.incomplete {
            warn!("the last look for survivors could not read all of /proc");
        }
        for s in &still {
            error!("survivor: pid {} state {} ({})", s.pid, s.state, s.cmdline);
        }
        if !still.is_empty() {
            clean = false;
        }
        // The state file goes only with a clean shutdown; survivors stay in it, so the next
        // instance on this socket stops them before it starts anything.
        if let Some(path) = &self.state_path {
            if still.is_empty() {
                if let Err(e) = state_file::remove(path) {
                    error!("cannot remove state file {}: {e}", path.display());
                }
            } else {
                let procs = still
                    .iter()
                    .filter_map(|s| snap.procs.get(&s.pid))
                    .map(|p| Recorded {
                        owner: "survivor".into(),
                        pid: p.pid,
                        start: p.start,
                    })
                    .collect();
                self.persist(procs);
            }
        }
        if let Some(c) = self.control.as_mut() {
            c.close_listener(self.poll.registry());
            if let Err(e) = c.remove_socket() {
                error!("cannot remove socket {}: {e}", c.path().display());
                clean = false;
            }
        }
        if let Some(l) = self.lock.take()
            && let Err(e) = l.release()
        {
            error!("cannot remove lock file: {e}");
            clean = false;
        }
        if !clean && exit_code == 0 {
            exit_code = 1;
            self.exit_code = Some(1);
        }
        Event::Done {
            clean,
            within_bound,
            elapsed_ms,
            exit_code,
            survivors: still,
        }
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
/// path, a quarter of the rest (at most [`control::MAX_CONNS`]) for clients, the remainder
/// for pidfds. Processes beyond the pidfd cap are watched by rescanning `/proc`; clients beyond
/// the cap wait in the listen backlog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FdBudget {
    limit: usize,
    base: usize,
    conns: usize,
    pidfds: usize,
}

impl FdBudget {
    fn new(base: usize, with_socket: bool) -> FdBudget {
        FdBudget::split(nofile_limit(), base, with_socket)
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

/// The soft open-file limit (reapd raised it to the hard limit at start-up).
fn nofile_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        1024
    };
    usize::try_from(soft).unwrap_or(usize::MAX)
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

//! The simulation: a fake kernel and a virtual clock to drive the whole core in tests.
//!
//! Owns: [`Kernel`], which plays the edge of `core::turn` (processes that fork, ignore signals,
//! take their time to exit, respawn children, run traps, die and are reparented to reapd;
//! pidfds that can or cannot be opened; scans that can be incomplete; listeners and command
//! lines for sweeps; replies, config loads, readiness notices and state-file writes), and
//! [`World`], which runs turns on virtual time: [`World::run_until`] jumps from deadline to
//! deadline (the supervisor's and the fake processes' own), so a 30 s shutdown is simulated in
//! microseconds. Scenario tests (`core::scenarios`) are the main specification of the core.
//! Must never: be used by the daemon, or wait: nothing here reads a real clock but [`epoch`].
//!
//! The kernel is faithful where the core could be fooled: an exit is announced ([`Input::Gone`])
//! only for a process reapd holds a pidfd for (one it spawned, watched or signalled), a child of
//! reapd is reaped ([`Input::Reaped`]), a scan reads a process's `REAPD_SERVICE` marker only for
//! orphans nothing else identifies and command lines only when asked (as `sys::procfs` does),
//! and a stop signal sent to a stopped process waits for SIGCONT.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::core::io::{Action, ConnId, Input, Mode, Notice, ScanRequest, Spawnee};
use crate::core::proctree::{Listener, Pid, ProcId, ProcInfo, Snapshot};
use crate::core::supervisor::Supervisor;
use crate::core::turn::{self, Edge};
use crate::wire::config::{Config, ConfigError, parse};
use crate::wire::events::{Event, ExitStatus};
use crate::wire::protocol::parse_request;
use crate::wire::state_file::{Recorded, StateRecord};

/// The origin of virtual time. `Instant` has no constructor but `now`, so this is the one place
/// the core's tests read the clock; everything after is arithmetic on it.
#[allow(clippy::disallowed_methods)]
pub(crate) fn epoch() -> Instant {
    Instant::now()
}

/// reapd's pid in the simulation.
pub(crate) const ME: Pid = 1000;

/// Replacements a respawning process may start in one simulation: a shell loop that outlives
/// a broken core must not spin the test for ever.
const MAX_RESPAWNS: usize = 10_000;

/// How a simulated process behaves. Plain processes die of their first stop signal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Quirks {
    /// SIGTERM (and the other stop signals) change nothing.
    pub ignores_term: bool,
    /// Not even SIGKILL ends it (uninterruptible sleep): its state is `D`.
    pub unkillable: bool,
    /// It takes this long to exit after its stop signal (a graceful shutdown of its own).
    pub term_delay: Option<Duration>,
    /// It exits on its own this long after it started, with this status.
    pub lifetime: Option<(Duration, ExitStatus)>,
    /// A child of it that dies is replaced at once by a new one like it (a shell loop, a master
    /// process), unless it is frozen.
    pub respawns: bool,
    /// A trap: its first stop signal makes it fork a cleanup child that runs this long; it
    /// exits (status 0) once its children are gone.
    pub trap: Option<Duration>,
}

impl Quirks {
    /// Dies of its first stop signal.
    pub const PLAIN: Quirks = Quirks {
        ignores_term: false,
        unkillable: false,
        term_delay: None,
        lifetime: None,
        respawns: false,
        trap: None,
    };
    /// Ignores stop signals; SIGKILL ends it.
    pub const DEAF: Quirks = Quirks {
        ignores_term: true,
        ..Quirks::PLAIN
    };
    /// Nothing ends it.
    pub const STUCK: Quirks = Quirks {
        ignores_term: true,
        unkillable: true,
        ..Quirks::PLAIN
    };

    /// Exits `d` after its stop signal.
    pub const fn slow(d: Duration) -> Quirks {
        Quirks {
            term_delay: Some(d),
            ..Quirks::PLAIN
        }
    }

    /// Exits on its own `d` after it started, with `status`.
    pub const fn lives(d: Duration, status: ExitStatus) -> Quirks {
        Quirks {
            lifetime: Some((d, status)),
            ..Quirks::PLAIN
        }
    }

    /// Replaces a child that dies (a shell loop).
    pub const fn respawning() -> Quirks {
        Quirks {
            respawns: true,
            ..Quirks::PLAIN
        }
    }

    /// On its stop signal, forks a cleanup child that runs `d`, and exits once it is gone.
    pub const fn trapping(d: Duration) -> Quirks {
        Quirks {
            trap: Some(d),
            ..Quirks::PLAIN
        }
    }
}

/// The tree a service's main process (or a cleanup hook) grows: its own quirks, and children,
/// each with the index of its parent (0 is the main process, 1 the first child, ...).
#[derive(Clone, Debug, Default)]
pub(crate) struct Shape {
    pub main: Quirks,
    pub children: Vec<(usize, Quirks)>,
}

impl Shape {
    /// A main process with `n` plain children.
    pub fn fan(n: usize) -> Shape {
        Shape {
            main: Quirks::PLAIN,
            children: vec![(0, Quirks::PLAIN); n],
        }
    }

    /// A main process that ignores SIGTERM.
    pub fn deaf() -> Shape {
        Shape::lone(Quirks::DEAF)
    }

    /// A lone main process with these quirks.
    pub fn lone(main: Quirks) -> Shape {
        Shape {
            main,
            children: Vec::new(),
        }
    }

    /// A main process with one child.
    pub fn parent_of(main: Quirks, child: Quirks) -> Shape {
        Shape {
            main,
            children: vec![(0, child)],
        }
    }
}

/// One spawn, as the kernel carried it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Launch {
    /// When.
    pub at: Instant,
    /// For whom.
    pub who: Spawnee,
    /// The new process.
    pub pid: Pid,
    /// Its argv.
    pub cmd: Vec<String>,
    /// reapd's other live descendants at that moment.
    pub company: Vec<Pid>,
}

/// The fake kernel: the edge of every simulated turn.
#[derive(Debug)]
pub(crate) struct Kernel {
    /// The virtual clock.
    pub now: Instant,
    /// Every live process (reapd included), by pid.
    pub procs: BTreeMap<Pid, (ProcInfo, Quirks)>,
    next_pid: Pid,
    /// How each service's processes look, by service name, and each hook's, by `cleanup[i]`
    /// (default: a lone plain process).
    pub shapes: HashMap<String, Shape>,
    /// Services (or `cleanup[i]` hooks) whose spawn fails.
    pub unspawnable: Vec<String>,
    /// What the next config load returns.
    pub next_config: Option<Result<Config, Vec<ConfigError>>>,
    /// Processes no pidfd can be opened for (out of descriptors): their exit is never announced.
    pub unwatchable: HashSet<Pid>,
    /// Processes a scan cannot read: while one of them lives, every scan is incomplete.
    pub hidden: HashSet<Pid>,
    /// Listening TCP sockets, found when a scan asks for their ports.
    pub listeners: Vec<Listener>,
    /// Processes reapd holds a pidfd for: their exit is announced.
    watched: HashSet<ProcId>,
    /// Processes that exit on their own at a given moment (a lifetime, a slow stop).
    timers: Vec<(Instant, ProcId, ExitStatus)>,
    /// Processes running their trap.
    trapping: HashSet<ProcId>,
    /// Stop signals sent to stopped processes, acted on at SIGCONT.
    pending_stop: HashMap<Pid, Signal>,
    pub respawns: usize,
    // What reapd did, in order.
    /// Every event, with its time.
    pub events: Vec<(Instant, Event)>,
    /// Every signal sent (to live processes or not), with its time.
    pub signals: Vec<(Instant, Pid, Signal)>,
    /// Every reply, by connection.
    pub replies: Vec<(ConnId, Value)>,
    /// Every message for the service manager.
    pub notices: Vec<Notice>,
    /// Every write of the state file.
    pub persisted: Vec<Vec<Recorded>>,
    /// Every spawn that succeeded: when, for whom, the pid.
    pub spawned: Vec<(Instant, Spawnee, Pid)>,
    /// The same, with the command and the processes alive then.
    pub launches: Vec<Launch>,
    /// The exit status and when.
    pub exit: Option<(i32, Instant)>,
    /// The listener was closed.
    pub listener_closed: bool,
    /// How often idle connections were closed.
    pub closed_idle: usize,
    /// The socket and lock were released, keeping the state file (true) or not.
    pub released: Option<bool>,
    /// How often the config file was read.
    pub config_loads: usize,
    /// How many scans of `/proc` were made.
    pub scans: usize,
}

impl Kernel {
    fn new(now: Instant) -> Kernel {
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
            cmdline: Some("reapd --config /etc/reapd.json".into()),
        };
        procs.insert(ME, (me, Quirks::PLAIN));
        Kernel {
            now,
            procs,
            next_pid: 2000,
            shapes: HashMap::new(),
            unspawnable: Vec::new(),
            next_config: None,
            unwatchable: HashSet::new(),
            hidden: HashSet::new(),
            listeners: Vec::new(),
            watched: HashSet::new(),
            timers: Vec::new(),
            trapping: HashSet::new(),
            pending_stop: HashMap::new(),
            respawns: 0,
            events: Vec::new(),
            signals: Vec::new(),
            replies: Vec::new(),
            notices: Vec::new(),
            persisted: Vec::new(),
            spawned: Vec::new(),
            launches: Vec::new(),
            exit: None,
            listener_closed: false,
            closed_idle: 0,
            released: None,
            config_loads: 0,
            scans: 0,
        }
    }

    /// A new process under `ppid`, in session `sid` (0: its own).
    pub fn new_proc(&mut self, ppid: Pid, sid: Pid, marker: Option<&str>, q: Quirks) -> ProcId {
        let pid = self.next_pid;
        self.next_pid += 1;
        self.add(
            ProcInfo {
                pid,
                ppid,
                pgid: if sid == 0 { pid } else { sid },
                sid: if sid == 0 { pid } else { sid },
                start: u64::try_from(pid).unwrap_or(0) * 7,
                state: if q.unkillable { 'D' } else { 'S' },
                threads: 1,
                comm: "fake".into(),
                marker: marker.map(str::to_string),
                cmdline: Some(format!("fake {pid}")),
            },
            q,
        )
    }

    /// Puts a process in the table as given (a foreign process, init, reapd's parent).
    pub fn add(&mut self, p: ProcInfo, q: Quirks) -> ProcId {
        let id = p.id();
        if let Some((d, status)) = q.lifetime {
            self.timers.push((self.now + d, id, status));
        }
        self.procs.insert(p.pid, (p, q));
        id
    }

    /// The process's identity, while it lives.
    pub fn id_of(&self, pid: Pid) -> Option<ProcId> {
        self.procs.get(&pid).map(|(p, _)| p.id())
    }

    /// Its live children.
    pub fn children_of(&self, pid: Pid) -> Vec<Pid> {
        self.procs
            .values()
            .filter(|(p, _)| p.ppid == pid && p.pid != pid)
            .map(|(p, _)| p.pid)
            .collect()
    }

    /// A process dies: its children are reparented to reapd (the subreaper); if it was reapd's
    /// child it is reaped, and if reapd held a pidfd for it its exit is announced; its parent may
    /// react (a shell loop starts the next command, a trap ends). Returns the inputs a real loop
    /// would see at once.
    pub fn kill(&mut self, pid: Pid, status: ExitStatus) -> Vec<Input> {
        let Some((p, q)) = self.procs.remove(&pid) else {
            return Vec::new();
        };
        let id = p.id();
        self.timers.retain(|(_, t, _)| *t != id);
        self.trapping.remove(&id);
        self.pending_stop.remove(&pid);
        for (c, _) in self.procs.values_mut() {
            if c.ppid == pid {
                c.ppid = ME;
            }
        }
        let mut out = Vec::new();
        if p.ppid == ME {
            out.push(Input::Reaped { pid, status });
        }
        if self.watched.remove(&id) {
            out.push(Input::Gone(id));
        }
        let parent = self
            .procs
            .get(&p.ppid)
            .map(|(pp, pq)| (pp.id(), pp.sid, pp.state, *pq));
        if let Some((parent, sid, state, pq)) = parent {
            if self.trapping.contains(&parent) && self.children_of(parent.pid).is_empty() {
                out.extend(self.kill(parent.pid, ExitStatus::Code(0)));
            } else if pq.respawns && state != 'T' && self.respawns < MAX_RESPAWNS {
                self.respawns += 1;
                self.new_proc(parent.pid, sid, p.marker.as_deref(), q);
            }
        }
        out
    }

    /// reapd holds (or tries to open) a pidfd for `proc`.
    fn watch(&mut self, proc: ProcId) -> Vec<Input> {
        if self.unwatchable.contains(&proc.pid) {
            vec![Input::Unwatchable(proc)]
        } else {
            self.watched.insert(proc);
            Vec::new()
        }
    }

    fn deliver(&mut self, proc: ProcId, signal: Signal) -> Vec<Input> {
        self.signals.push((self.now, proc.pid, signal));
        let Some((state, q)) = self
            .procs
            .get(&proc.pid)
            .filter(|(p, _)| p.start == proc.start)
            .map(|(p, q)| (p.state, *q))
        else {
            return vec![Input::Gone(proc)];
        };
        // Signals go through a pidfd, which the edge keeps to watch the process.
        let mut out = self.watch(proc);
        match signal {
            Signal::SIGKILL if !q.unkillable => {
                out.extend(self.kill(proc.pid, ExitStatus::Signal(Signal::SIGKILL as i32)));
            }
            Signal::SIGSTOP if !q.unkillable => self.set_state(proc.pid, 'T'),
            Signal::SIGCONT if state == 'T' => {
                self.set_state(proc.pid, 'S');
                if let Some(sig) = self.pending_stop.remove(&proc.pid) {
                    out.extend(self.stop_signal(proc, q, sig));
                }
            }
            Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT | Signal::SIGHUP => {
                if state == 'T' {
                    self.pending_stop.insert(proc.pid, signal);
                } else {
                    out.extend(self.stop_signal(proc, q, signal));
                }
            }
            _ => {}
        }
        out
    }

    fn set_state(&mut self, pid: Pid, state: char) {
        if let Some((p, _)) = self.procs.get_mut(&pid) {
            p.state = state;
        }
    }

    /// A running process acts on a stop signal.
    fn stop_signal(&mut self, proc: ProcId, q: Quirks, sig: Signal) -> Vec<Input> {
        if q.unkillable {
            return Vec::new();
        }
        if let Some(d) = q.trap {
            if self.trapping.insert(proc) {
                let (sid, marker) = self
                    .procs
                    .get(&proc.pid)
                    .map(|(p, _)| (p.sid, p.marker.clone()))
                    .unwrap_or_default();
                self.new_proc(
                    proc.pid,
                    sid,
                    marker.as_deref(),
                    Quirks::lives(d, ExitStatus::Code(0)),
                );
            }
            return Vec::new();
        }
        if q.ignores_term {
            return Vec::new();
        }
        let status = ExitStatus::Signal(sig as i32);
        if let Some(d) = q.term_delay {
            if !self.timers.iter().any(|(_, t, _)| *t == proc) {
                self.timers.push((self.now + d, proc, status));
            }
            return Vec::new();
        }
        self.kill(proc.pid, status)
    }

    /// The next moment a process exits on its own.
    pub fn next_timer(&self) -> Option<Instant> {
        self.timers.iter().map(|(at, _, _)| *at).min()
    }

    /// Processes whose time has come exit; returns what a real loop would see.
    pub fn due(&mut self) -> Vec<Input> {
        let now = self.now;
        let mut due: Vec<(Instant, ProcId, ExitStatus)> =
            self.timers.iter().filter(|t| t.0 <= now).copied().collect();
        due.sort_by_key(|t| (t.0, t.1));
        let mut out = Vec::new();
        for (_, id, status) in due {
            if self.id_of(id.pid) == Some(id) {
                out.extend(self.kill(id.pid, status));
            }
        }
        out
    }

    fn spawn(&mut self, who: Spawnee, cmd: Vec<String>) -> Input {
        let name = match &who {
            Spawnee::Service(n) => n.clone(),
            Spawnee::Hook(i) => format!("cleanup[{i}]"),
        };
        if self.unspawnable.contains(&name) {
            return Input::SpawnFailed {
                who,
                error: "no such file".into(),
            };
        }
        let mut company: Vec<Pid> = self.ours().into_iter().collect();
        company.sort_unstable();
        let shape = self.shapes.get(&name).cloned().unwrap_or_default();
        let main = self.new_proc(ME, 0, Some(&name), shape.main);
        if let Some((p, _)) = self.procs.get_mut(&main.pid) {
            p.cmdline = Some(cmd.join(" "));
        }
        let mut tree = vec![main];
        for (parent, q) in shape.children {
            let ppid = tree.get(parent).map_or(main.pid, |p| p.pid);
            let child = self.new_proc(ppid, main.pid, Some(&name), q);
            tree.push(child);
        }
        // Beyond the pidfd cap the edge relies on SIGCHLD for its own children: no input.
        if !self.unwatchable.contains(&main.pid) {
            self.watched.insert(main);
        }
        self.spawned.push((self.now, who.clone(), main.pid));
        self.launches.push(Launch {
            at: self.now,
            who: who.clone(),
            pid: main.pid,
            cmd,
            company,
        });
        Input::Spawned { who, proc: main }
    }

    /// Every live descendant of reapd.
    fn ours(&self) -> HashSet<Pid> {
        let mut out = HashSet::new();
        let mut frontier = vec![ME];
        while let Some(p) = frontier.pop() {
            for c in self.children_of(p) {
                if out.insert(c) {
                    frontier.push(c);
                }
            }
        }
        out
    }
}

impl Edge for Kernel {
    fn now(&self) -> Instant {
        self.now
    }

    fn reap(&mut self) -> Vec<Input> {
        // Deaths are reported as they happen (see `kill`).
        Vec::new()
    }

    fn perform(&mut self, action: Action) -> Vec<Input> {
        match action {
            Action::Spawn { who, cmd, .. } => vec![self.spawn(who, cmd)],
            Action::Signal { proc, signal } => self.deliver(proc, signal),
            Action::Watch(proc) => {
                if self.id_of(proc.pid) == Some(proc) {
                    self.watch(proc)
                } else {
                    vec![Input::Gone(proc)]
                }
            }
            Action::Reply { conn, line } => {
                let v = serde_json::from_str(&line).unwrap_or(Value::Null);
                self.replies.push((conn, v));
                Vec::new()
            }
            Action::Event(e) => {
                self.events.push((self.now, e));
                Vec::new()
            }
            Action::CloseListener => {
                self.listener_closed = true;
                Vec::new()
            }
            Action::CloseIdle => {
                self.closed_idle += 1;
                Vec::new()
            }
            Action::LoadConfig { reply } => {
                self.config_loads += 1;
                let result = self.next_config.take().unwrap_or_else(|| {
                    Err(vec![ConfigError {
                        path: String::new(),
                        message: "no config file to reload".into(),
                    }])
                });
                vec![Input::ConfigLoaded { result, reply }]
            }
            Action::Notify(n) => {
                self.notices.push(n);
                Vec::new()
            }
            Action::Persist(p) => {
                self.persisted.push(p);
                Vec::new()
            }
            Action::Release { keep_state } => {
                self.released = Some(keep_state);
                vec![Input::Released {
                    failures: Vec::new(),
                }]
            }
            Action::Exit { code } => {
                self.exit = Some((code, self.now));
                Vec::new()
            }
        }
    }

    fn scan(&mut self, req: &ScanRequest) -> Snapshot {
        self.scans += 1;
        assert!(
            self.scans < 1_000_000,
            "the supervisor keeps asking for scans: a livelock"
        );
        let ours = self.ours();
        let procs = self
            .procs
            .values()
            .filter(|(p, _)| !self.hidden.contains(&p.pid))
            // A check of held processes reads just those.
            .filter(|(p, _)| req.only.is_empty() || req.only.contains(&p.pid))
            .map(|(p, _)| {
                let mut p = p.clone();
                // Like `sys::procfs`: the marker is read only for orphans nothing else
                // identifies, command lines only where asked.
                let orphan = p.ppid == ME
                    && !req.attributed.contains(&p.pid)
                    && !req.service_sessions.contains(&p.sid);
                if !orphan {
                    p.marker = None;
                }
                let foreign = !ours.contains(&p.pid) && p.pid != ME;
                let wanted =
                    (req.foreign_cmdlines && foreign) || (req.stopped_cmdlines && p.is_stopped());
                if !wanted {
                    p.cmdline = None;
                }
                p
            });
        let mut snap = Snapshot::new(ME, procs);
        snap.partial = !req.only.is_empty();
        snap.incomplete = self.hidden.iter().any(|p| self.procs.contains_key(p));
        snap.listeners = self
            .listeners
            .iter()
            .filter(|l| req.ports.contains(&l.port) && snap.procs.contains_key(&l.pid))
            .cloned()
            .collect();
        snap
    }
}

/// A supervisor and its fake kernel on virtual time.
#[derive(Debug)]
pub(crate) struct World {
    pub sup: Supervisor,
    pub k: Kernel,
    pub t0: Instant,
}

impl World {
    /// A world running `cfg` (JSON text), not started yet.
    pub fn new(cfg: &str) -> World {
        World::with_mode(Mode::Config, cfg)
    }

    /// The same, in a given mode.
    pub fn with_mode(mode: Mode, cfg: &str) -> World {
        let cfg = parse(cfg).unwrap_or_else(|e| panic!("invalid config: {e:?}"));
        let t0 = epoch();
        World {
            sup: Supervisor::new(mode, cfg, None, ME, t0),
            k: Kernel::new(t0),
            t0,
        }
    }

    /// Single-command mode running one command (`reapd -- CMD`), as `main` builds it: never
    /// restarted, default stop signal and timeout.
    pub fn single() -> World {
        World::with_mode(
            Mode::Single,
            r#"{"services": {"main": {"cmd": ["cmd"], "restart": "never"}}}"#,
        )
    }

    /// How `name`'s processes look from now on.
    pub fn shape(&mut self, name: &str, shape: Shape) -> &mut World {
        self.k.shapes.insert(name.into(), shape);
        self
    }

    /// One turn with these inputs.
    pub fn feed(&mut self, inputs: Vec<Input>) {
        turn::turn(&mut self.sup, &mut self.k, inputs);
    }

    /// Starts the services (no predecessor).
    pub fn start(&mut self) {
        self.feed(vec![Input::Start { predecessor: None }]);
    }

    /// Starts after a predecessor that left this state file.
    pub fn start_after(&mut self, predecessor: StateRecord) {
        self.feed(vec![Input::Start {
            predecessor: Some(predecessor),
        }]);
    }

    /// A signal arrives.
    pub fn signal(&mut self, sig: Signal) {
        self.feed(vec![Input::Signal(sig)]);
    }

    /// A request line as an input, for a turn that carries several inputs.
    pub fn request_input(conn: ConnId, line: &str) -> Input {
        let env = parse_request(line.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
        Input::Request {
            conn,
            id: env.id,
            request: env.request,
        }
    }

    /// A client sends one request line on `conn`; returns the reply it got now, if any.
    pub fn request(&mut self, conn: ConnId, line: &str) -> Option<Value> {
        let before = self.k.replies.len();
        self.feed(vec![World::request_input(conn, line)]);
        self.k
            .replies
            .get(before..)
            .and_then(|r| r.iter().find(|(c, _)| *c == conn))
            .map(|(_, v)| v.clone())
    }

    /// A client's connection goes away.
    pub fn close(&mut self, conn: ConnId) {
        self.feed(vec![Input::ConnClosed(conn)]);
    }

    /// Every reply `conn` got, in order.
    pub fn replies_to(&self, conn: ConnId) -> Vec<&Value> {
        self.k
            .replies
            .iter()
            .filter(|(c, _)| *c == conn)
            .map(|(_, v)| v)
            .collect()
    }

    /// The one reply `conn` got (panics unless there is exactly one).
    pub fn only_reply(&self, conn: ConnId) -> &Value {
        match self.replies_to(conn).as_slice() {
            [one] => one,
            other => panic!("expected one reply to {conn}, got {other:?}"),
        }
    }

    /// The next config load returns this config (JSON text).
    pub fn queue_config(&mut self, cfg: &str) {
        let cfg = parse(cfg).unwrap_or_else(|e| panic!("invalid config: {e:?}"));
        self.k.next_config = Some(Ok(cfg));
    }

    /// The next config load fails with these errors (path, message).
    pub fn queue_config_errors(&mut self, errors: &[(&str, &str)]) {
        self.k.next_config = Some(Err(errors
            .iter()
            .map(|(path, message)| ConfigError {
                path: (*path).into(),
                message: (*message).into(),
            })
            .collect()));
    }

    /// The next deadline: the supervisor's or a fake process's own.
    fn next_deadline(&self) -> Option<Instant> {
        [self.sup.deadline(), self.k.next_timer()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Moves the clock to each deadline in turn until `limit` after the start (or exit).
    pub fn run_until(&mut self, limit: Duration) {
        let end = self.t0 + limit;
        for _ in 0..100_000 {
            if self.k.exit.is_some() {
                return;
            }
            let Some(d) = self.next_deadline() else {
                return;
            };
            if d > end {
                return;
            }
            self.k.now = self.k.now.max(d);
            let inputs = self.k.due();
            self.feed(inputs);
        }
        panic!("the core never settled: a deadline keeps coming back");
    }

    /// Runs until `at` after the start and leaves the clock there (unless reapd exited first).
    pub fn run_to(&mut self, at: Duration) {
        self.run_until(at);
        if self.k.exit.is_none() {
            self.k.now = self.k.now.max(self.t0 + at);
        }
    }

    /// Runs until reapd exits (the bound is 30 s at most).
    pub fn run_to_exit(&mut self) {
        self.run_until(Duration::from_secs(600));
        assert!(
            self.k.exit.is_some(),
            "reapd never exited: {:?}",
            self.events()
        );
    }

    /// Moves the clock by `d` without any deadline (time a tick must not need).
    pub fn advance(&mut self, d: Duration) {
        self.k.now += d;
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.k.now - self.t0
    }

    /// The live main process of `service` (the last one spawned for it).
    pub fn main_of(&self, service: &str) -> Pid {
        self.k
            .spawned
            .iter()
            .rev()
            .find(|(_, who, pid)| {
                *who == Spawnee::Service(service.into()) && self.k.procs.contains_key(pid)
            })
            .map(|(_, _, pid)| *pid)
            .unwrap_or_else(|| panic!("no live main process of {service}"))
    }

    /// Pids of every spawn for `service`, in order.
    pub fn spawns_of(&self, service: &str) -> Vec<Pid> {
        self.k
            .spawned
            .iter()
            .filter(|(_, who, _)| *who == Spawnee::Service(service.into()))
            .map(|(_, _, pid)| *pid)
            .collect()
    }

    /// A process exits on its own (or is killed by someone else) with `status`.
    pub fn end(&mut self, pid: Pid, status: ExitStatus) {
        let inputs = self.k.kill(pid, status);
        self.feed(inputs);
    }

    /// The main process of `service` dies of SIGKILL.
    pub fn crash_main(&mut self, service: &str) {
        let main = self.main_of(service);
        self.end(main, ExitStatus::Signal(9));
    }

    /// The main process of `service` exits with `code`.
    pub fn exit_main(&mut self, service: &str, code: i32) {
        let main = self.main_of(service);
        self.end(main, ExitStatus::Code(code));
    }

    /// A process that is no descendant of reapd (its parent is init), with this command line.
    pub fn foreign(&mut self, cmdline: &str, q: Quirks) -> ProcId {
        let id = self.k.new_proc(1, 0, None, q);
        if let Some((p, _)) = self.k.procs.get_mut(&id.pid) {
            p.cmdline = Some(cmdline.into());
        }
        id
    }

    /// `pid` listens on TCP `port`.
    pub fn listen(&mut self, pid: Pid, port: u16) {
        self.k.listeners.push(Listener { port, pid });
    }

    /// Every event, without times.
    pub fn events(&self) -> Vec<&Event> {
        self.k.events.iter().map(|(_, e)| e).collect()
    }

    /// Every event's wire name, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.k.events.iter().map(|(_, e)| e.name()).collect()
    }

    /// How many events have this wire name.
    pub fn count(&self, name: &str) -> usize {
        self.k
            .events
            .iter()
            .filter(|(_, e)| e.name() == name)
            .count()
    }

    /// The first event that matches, with its time since the start.
    pub fn first(&self, pred: impl Fn(&Event) -> bool) -> Option<(Duration, &Event)> {
        self.k
            .events
            .iter()
            .find(|(_, e)| pred(e))
            .map(|(at, e)| (*at - self.t0, e))
    }

    /// When the first event that matches came (panics if none did).
    pub fn when(&self, pred: impl Fn(&Event) -> bool) -> Duration {
        self.first(pred)
            .unwrap_or_else(|| panic!("no such event in {:?}", self.events()))
            .0
    }

    /// How `service`'s (first) stop ended, and when: `("exited", 2 s)`.
    pub fn stopped(&self, service: &str) -> Option<(String, Duration)> {
        self.first(|e| matches!(e, Event::Stopped { service: s, .. } if s == service))
            .and_then(|(at, e)| match e {
                Event::Stopped { how, .. } => Some((how.clone(), at)),
                _ => None,
            })
    }

    /// The final report.
    pub fn done(&self) -> Option<&Event> {
        self.k
            .events
            .iter()
            .map(|(_, e)| e)
            .find(|e| matches!(e, Event::Done { .. }))
    }

    /// The final report's failures.
    pub fn failures(&self) -> Vec<String> {
        match self.done() {
            Some(Event::Done { failures, .. }) => failures.clone(),
            other => panic!("no done: {other:?}"),
        }
    }

    /// Pids that received `sig`, in order.
    pub fn signalled_with(&self, sig: Signal) -> Vec<Pid> {
        self.k
            .signals
            .iter()
            .filter(|(_, _, s)| *s == sig)
            .map(|(_, p, _)| *p)
            .collect()
    }

    /// Signals `pid` received, in order.
    pub fn signals_to(&self, pid: Pid) -> Vec<Signal> {
        self.k
            .signals
            .iter()
            .filter(|(_, p, _)| *p == pid)
            .map(|(_, _, s)| *s)
            .collect()
    }

    /// When `pid` first received `sig`, since the start.
    pub fn signalled_at(&self, pid: Pid, sig: Signal) -> Option<Duration> {
        self.k
            .signals
            .iter()
            .find(|(_, p, s)| *p == pid && *s == sig)
            .map(|(at, _, _)| *at - self.t0)
    }

    /// Live processes other than reapd.
    pub fn alive(&self) -> Vec<Pid> {
        self.k.procs.keys().copied().filter(|&p| p != ME).collect()
    }

    /// Live descendants of reapd.
    pub fn ours(&self) -> Vec<Pid> {
        let mut v: Vec<Pid> = self.k.ours().into_iter().collect();
        v.sort_unstable();
        v
    }

    /// Whether this process lives.
    pub fn lives(&self, pid: Pid) -> bool {
        self.k.procs.contains_key(&pid)
    }

    /// The exit status and how long after the start it came.
    pub fn exited(&self) -> Option<(i32, Duration)> {
        self.k.exit.map(|(code, at)| (code, at - self.t0))
    }

    /// The exit status (panics if reapd has not exited).
    pub fn exit_code(&self) -> i32 {
        self.exited()
            .unwrap_or_else(|| panic!("not exited: {:?}", self.events()))
            .0
    }
}

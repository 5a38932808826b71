//! The fake kernel: processes that fork, ignore signals, take their time to exit, respawn
//! children, run traps, die and are reparented to reapd; pidfds that can or cannot be opened;
//! scans that can be incomplete; listeners and command lines for sweeps.
//! Must never: announce what the real kernel would not (see the module doc of `core::sim`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::core::io::{Action, ConnId, Input, Notice, ScanRequest, Spawnee};
use crate::core::proctree::{Listener, Pid, ProcId, ProcInfo, Snapshot};
use crate::core::turn::Edge;
use crate::wire::config::{Config, ConfigError};
use crate::wire::events::{Event, ExitStatus};
use crate::wire::state_file::Recorded;

use super::ME;

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
    /// Services whose connection checks (`tcp`, `unix`) are accepted.
    pub accepting: HashSet<String>,
    /// Connection checks made, by service, with when.
    pub probes: Vec<(Instant, String)>,
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
    pub(super) fn new(now: Instant) -> Kernel {
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
            accepting: HashSet::new(),
            probes: Vec::new(),
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
            // An exec check passes (exits 0) at once unless its shape says otherwise.
            Spawnee::Check { service, .. } => {
                let name = format!("{service}.check");
                self.shapes.entry(name.clone()).or_insert_with(|| {
                    Shape::lone(Quirks::lives(Duration::from_millis(1), ExitStatus::Code(0)))
                });
                name
            }
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
    pub(super) fn ours(&self) -> HashSet<Pid> {
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
            Action::Probe { service, seq, .. } => {
                self.probes.push((self.now, service.clone()));
                let result = if self.accepting.contains(&service) {
                    Ok(())
                } else {
                    Err("connection refused".into())
                };
                vec![Input::Probed {
                    service,
                    seq,
                    result,
                }]
            }
            Action::Signal { proc, signal } => self.deliver(proc, signal),
            Action::SignalGroup { pgid, signal } => {
                // Processes here lead their own sessions and groups: the group is the session.
                let members: Vec<ProcId> = self
                    .procs
                    .values()
                    .filter(|(p, _)| p.sid == pgid && !p.is_dead())
                    .map(|(p, _)| ProcId {
                        pid: p.pid,
                        start: p.start,
                    })
                    .collect();
                members
                    .into_iter()
                    .flat_map(|id| self.deliver(id, signal))
                    .collect()
            }
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
            // No pipes in the simulation: every tail is empty.
            Action::Logs {
                to: (conn, id),
                name,
                captured,
                ..
            } => {
                let line = crate::wire::replies::ok_line(
                    id.as_ref(),
                    &crate::wire::replies::Reply::Logs {
                        logs: name,
                        captured,
                        lines: Vec::new(),
                    },
                );
                let v = serde_json::from_str(&line).unwrap_or(Value::Null);
                self.replies.push((conn, v));
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
            // The simulated machine has no cgroups (the supervisor is never told it has).
            Action::KillGroup(_) | Action::RemoveGroup(_) => Vec::new(),
            Action::Account { to, request, .. } => vec![Input::Accounted {
                to,
                request,
                usage: Default::default(),
            }],
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

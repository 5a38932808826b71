//! The simulation: a fake kernel and a virtual clock to drive the whole core in tests.
//!
//! Owns: [`Kernel`], which plays the edge of `core::turn` (processes that fork, ignore signals,
//! die and are reparented to reapd, replies, config loads, readiness notices), and [`World`],
//! which runs turns on virtual time: [`World::run_until`] jumps from deadline to deadline, so a
//! 30 s shutdown is simulated in microseconds. Scenario tests (`core::scenarios`) are the main
//! specification of the core.
//! Must never: be used by the daemon, or wait: nothing here reads a real clock but [`epoch`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::core::io::{Action, ConnId, Input, Mode, Notice, ScanRequest, Spawnee};
use crate::core::proctree::{Pid, ProcId, ProcInfo, Snapshot};
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

/// How a simulated process behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Quirks {
    /// SIGTERM (and the other stop signals) change nothing.
    pub ignores_term: bool,
    /// Not even SIGKILL ends it (uninterruptible sleep).
    pub unkillable: bool,
    /// A stop signal that arrived while it was stopped waits until SIGCONT (set by the kernel).
    pub pending_stop: bool,
}

/// The tree a service's main process grows: its own quirks, and children, each with the index
/// of its parent (0 is the main process, 1 the first child, ...).
#[derive(Clone, Debug, Default)]
pub(crate) struct Shape {
    pub main: Quirks,
    pub children: Vec<(usize, Quirks)>,
}

impl Shape {
    /// A main process with `n` plain children.
    pub fn fan(n: usize) -> Shape {
        Shape {
            main: Quirks::default(),
            children: vec![(0, Quirks::default()); n],
        }
    }

    /// A main process that ignores SIGTERM.
    pub fn deaf() -> Shape {
        Shape {
            main: Quirks {
                ignores_term: true,
                ..Quirks::default()
            },
            children: Vec::new(),
        }
    }
}

/// The fake kernel: the edge of every simulated turn.
#[derive(Debug)]
pub(crate) struct Kernel {
    pub now: Instant,
    pub procs: BTreeMap<Pid, (ProcInfo, Quirks)>,
    next_pid: Pid,
    /// How each service's processes look, by service name (default: a lone main process).
    pub shapes: HashMap<String, Shape>,
    /// Services whose spawn fails.
    pub unspawnable: Vec<String>,
    /// What the next config load returns.
    pub next_config: Option<Result<Config, Vec<ConfigError>>>,
    pub events: Vec<(Instant, Event)>,
    pub signals: Vec<(Instant, Pid, Signal)>,
    pub replies: Vec<(ConnId, Value)>,
    pub notices: Vec<Notice>,
    pub persisted: Vec<Vec<Recorded>>,
    pub spawned: Vec<(Instant, Spawnee, Pid)>,
    pub exit: Option<(i32, Instant)>,
    pub listener_closed: bool,
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
            cmdline: None,
        };
        procs.insert(ME, (me, Quirks::default()));
        Kernel {
            now,
            procs,
            next_pid: 2000,
            shapes: HashMap::new(),
            unspawnable: Vec::new(),
            next_config: None,
            events: Vec::new(),
            signals: Vec::new(),
            replies: Vec::new(),
            notices: Vec::new(),
            persisted: Vec::new(),
            spawned: Vec::new(),
            exit: None,
            listener_closed: false,
            scans: 0,
        }
    }

    /// A new process under `ppid`, in session `sid` (0: its own).
    pub fn new_proc(&mut self, ppid: Pid, sid: Pid, marker: Option<&str>, q: Quirks) -> ProcId {
        let pid = self.next_pid;
        self.next_pid += 1;
        let sid = if sid == 0 { pid } else { sid };
        let p = ProcInfo {
            pid,
            ppid,
            pgid: sid,
            sid,
            start: u64::try_from(pid).unwrap_or(0) * 7,
            state: 'S',
            threads: 1,
            comm: "fake".into(),
            marker: marker.map(str::to_string),
            cmdline: Some(format!("fake {pid}")),
        };
        let id = p.id();
        self.procs.insert(pid, (p, q));
        id
    }

    /// A process dies: its children are reparented to reapd (the subreaper), and if it was
    /// reapd's child it waits to be reaped. Returns the inputs a real loop would see at once.
    pub fn kill(&mut self, pid: Pid, status: ExitStatus) -> Vec<Input> {
        let Some((p, _)) = self.procs.remove(&pid) else {
            return Vec::new();
        };
        for (c, _) in self.procs.values_mut() {
            if c.ppid == pid {
                c.ppid = ME;
            }
        }
        // reapd reaps its own child at once; the pidfd of any process becomes readable.
        let mut out = Vec::new();
        if p.ppid == ME {
            out.push(Input::Reaped { pid, status });
        }
        out.push(Input::Gone(p.id()));
        out
    }

    fn deliver(&mut self, proc: ProcId, signal: Signal) -> Vec<Input> {
        self.signals.push((self.now, proc.pid, signal));
        let Some((p, q)) = self
            .procs
            .get_mut(&proc.pid)
            .filter(|(p, _)| p.start == proc.start)
        else {
            return vec![Input::Gone(proc)];
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
                // A stop signal held while it was stopped is acted on now.
                std::mem::take(&mut q.pending_stop)
            }
            Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT | Signal::SIGHUP => {
                let fatal = !q.ignores_term && !q.unkillable;
                if fatal && p.state == 'T' {
                    q.pending_stop = true;
                    false
                } else {
                    fatal
                }
            }
            _ => false,
        };
        if dies {
            self.kill(proc.pid, ExitStatus::Signal(signal as i32))
        } else {
            Vec::new()
        }
    }

    fn spawn(&mut self, who: Spawnee) -> Input {
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
        let shape = self.shapes.get(&name).cloned().unwrap_or_default();
        let main = self.new_proc(ME, 0, Some(&name), shape.main);
        let mut tree = vec![main];
        for (parent, q) in shape.children {
            let ppid = tree.get(parent).map_or(main.pid, |p| p.pid);
            let child = self.new_proc(ppid, main.pid, Some(&name), q);
            tree.push(child);
        }
        self.spawned.push((self.now, who.clone(), main.pid));
        Input::Spawned { who, proc: main }
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
            Action::Spawn { who, .. } => vec![self.spawn(who)],
            Action::Signal { proc, signal } => self.deliver(proc, signal),
            Action::Watch(proc) => {
                let alive = self
                    .procs
                    .get(&proc.pid)
                    .is_some_and(|(p, _)| p.start == proc.start);
                if alive {
                    Vec::new()
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
            Action::CloseIdle => Vec::new(),
            Action::LoadConfig { reply } => {
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
            Action::Release { .. } => vec![Input::Released {
                failures: Vec::new(),
            }],
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
        if !req.only.is_empty() {
            let mut snap = Snapshot::new(
                ME,
                self.procs
                    .values()
                    .map(|(p, _)| p)
                    .filter(|p| req.only.contains(&p.pid))
                    .cloned(),
            );
            snap.partial = true;
            return snap;
        }
        Snapshot::new(ME, self.procs.values().map(|(p, _)| p.clone()))
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

    /// A client sends one request line on `conn`; returns the reply it got now, if any.
    pub fn request(&mut self, conn: ConnId, line: &str) -> Option<Value> {
        let env = parse_request(line.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
        let before = self.k.replies.len();
        self.feed(vec![Input::Request {
            conn,
            id: env.id,
            request: env.request,
        }]);
        self.k
            .replies
            .get(before..)
            .and_then(|r| r.iter().find(|(c, _)| *c == conn))
            .map(|(_, v)| v.clone())
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

    /// Moves the clock to each deadline in turn until `limit` after the start (or exit).
    pub fn run_until(&mut self, limit: Duration) {
        let end = self.t0 + limit;
        for _ in 0..100_000 {
            if self.k.exit.is_some() {
                return;
            }
            let Some(d) = self.sup.deadline() else { return };
            if d > end {
                return;
            }
            self.k.now = self.k.now.max(d);
            self.feed(Vec::new());
        }
        panic!("the core never settled: a deadline keeps coming back");
    }

    /// Moves the clock by `d` without any deadline (time a tick must not need).
    pub fn advance(&mut self, d: Duration) {
        self.k.now += d;
    }

    /// The main process of the (only, or first) service dies of SIGKILL.
    pub fn crash_main(&mut self, service: &str) {
        let main = self
            .k
            .procs
            .values()
            .find(|(p, _)| p.ppid == ME && p.marker.as_deref() == Some(service))
            .map(|(p, _)| p.pid)
            .unwrap_or_else(|| panic!("no main process of {service}"));
        let inputs = self.k.kill(main, ExitStatus::Signal(9));
        self.feed(inputs);
    }

    /// The main process of `service` exits with `code`.
    pub fn exit_main(&mut self, service: &str, code: i32) {
        let main = self
            .k
            .procs
            .values()
            .find(|(p, _)| p.ppid == ME && p.marker.as_deref() == Some(service))
            .map(|(p, _)| p.pid)
            .unwrap_or_else(|| panic!("no main process of {service}"));
        let inputs = self.k.kill(main, ExitStatus::Code(code));
        self.feed(inputs);
    }

    /// Every event, without times.
    pub fn events(&self) -> Vec<&Event> {
        self.k.events.iter().map(|(_, e)| e).collect()
    }

    /// The final report.
    pub fn done(&self) -> Option<&Event> {
        self.k
            .events
            .iter()
            .map(|(_, e)| e)
            .find(|e| matches!(e, Event::Done { .. }))
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

    /// Live processes other than reapd.
    pub fn alive(&self) -> Vec<Pid> {
        self.k.procs.keys().copied().filter(|&p| p != ME).collect()
    }

    /// The exit status and how long after the start it came.
    pub fn exited(&self) -> Option<(i32, Duration)> {
        self.k.exit.map(|(code, at)| (code, at - self.t0))
    }
}

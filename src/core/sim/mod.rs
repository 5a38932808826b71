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

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::core::io::{ConnId, Input, Mode, Spawnee};
use crate::core::proctree::{Listener, Pid, ProcId};
use crate::core::supervisor::Supervisor;
use crate::core::turn;
use crate::wire::config::{ConfigError, parse};
use crate::wire::events::{Event, ExitStatus};
use crate::wire::protocol::parse_request;
use crate::wire::state_file::StateRecord;

mod kernel;

pub(crate) use kernel::{Kernel, Quirks, Shape};

/// The origin of virtual time. `Instant` has no constructor but `now`, so this is the one place
/// the core's tests read the clock; everything after is arithmetic on it.
#[allow(clippy::disallowed_methods)]
pub(crate) fn epoch() -> Instant {
    Instant::now()
}

/// reapd's pid in the simulation.
pub(crate) const ME: Pid = 1000;

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

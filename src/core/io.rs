//! The core's inputs and actions: the whole vocabulary between the decisions and the edge.
//!
//! Owns: [`Input`] (everything the supervisor reacts to) and [`Action`] (everything it asks the
//! edge to do), and the small types they carry. `sys` speaks to the core in these terms only, and
//! the simulation (`core::sim`) plays the edge with the same ones.
//! Must never: carry a file descriptor, a clock or anything else only the edge can hold.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::core::proctree::{Pid, ProcId, Snapshot};
use crate::wire::config::{Config, ConfigError, Launch, Probe};
use crate::wire::events::{Event, ExitStatus};
use crate::wire::protocol::{Request, RequestId};
use crate::wire::replies::Usage;
use crate::wire::state_file::{Recorded, StateRecord};

/// A control connection, as numbered by the edge.
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

/// How services' processes are contained, as the edge found at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Containment {
    /// Each service has its own cgroup v2.
    pub cgroups: bool,
    /// `cgroup v2 at DIR`, or `/proc walk: REASON`.
    pub describe: String,
}

impl Default for Containment {
    fn default() -> Self {
        Containment {
            cgroups: false,
            describe: "/proc walk".into(),
        }
    }
}

/// Who a spawn is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spawnee {
    /// A service's main process.
    Service(String),
    /// A cleanup hook, by index.
    Hook(usize),
    /// A service's exec check (readiness or health), by attempt number.
    Check {
        /// The service checked.
        service: String,
        /// The attempt.
        seq: u64,
    },
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
    /// Read the command lines of stopped processes (which cannot be in the middle of a fork):
    /// the last look describes survivors with them.
    pub stopped_cmdlines: bool,
    /// Find the processes listening on these TCP ports.
    pub ports: Vec<u16>,
    /// Children of reapd whose owner is already known (the processes it spawned, and orphans it
    /// has attributed before): their `REAPD_SERVICE` marker need not be read.
    pub attributed: HashSet<Pid>,
    /// Sessions of services: an orphan in one of them needs no marker either.
    pub service_sessions: HashSet<Pid>,
    /// Services whose cgroup membership (`cgroup.procs`) to read into [`Snapshot::groups`].
    pub groups: Vec<String>,
    /// When not empty, read only these processes' `stat` (a stop checking that the processes it
    /// held have stopped): the snapshot is then partial.
    pub only: Vec<Pid>,
    /// Processes outside reapd's tree that reapd has records of (ones it signalled, a crashed
    /// predecessor's): a look at reapd's tree alone includes them and what descends from them.
    pub also: Vec<Pid>,
    /// Every process of the machine matters, not only reapd's tree and [`ScanRequest::also`]
    /// (a crashed predecessor's processes are being found).
    pub everyone: bool,
    /// A stop timeout falls then: the kill must not wait for a long look (thousands of processes
    /// in a fork storm), so a look still under way at that moment ends, marked incomplete (once
    /// it has had [`MIN_LOOK`]).
    pub until: Option<Instant>,
}

/// The least time a look gets before [`ScanRequest::until`] may end it: each look makes some
/// progress.
pub const MIN_LOOK: Duration = Duration::from_millis(10);

impl ScanRequest {
    /// True when the scan must read every process of the machine: processes outside reapd's
    /// tree are looked for (by command line or port), or [`ScanRequest::everyone`] says so.
    /// Otherwise reapd's tree, [`ScanRequest::also`] and their descendants are all that matter.
    pub fn needs_machine(&self) -> bool {
        self.everyone || self.foreign_cmdlines || !self.ports.is_empty()
    }
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
    /// The edge is ready: spawn the initial services, after stopping whatever a predecessor
    /// that died without cleaning up left running (its state file, when there is one).
    Start {
        /// The predecessor's state file.
        predecessor: Option<StateRecord>,
    },
    /// A signal arrived (SIGCHLD excepted: the edge reaps and reports [`Input::Reaped`]).
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
    /// A service's cgroup became empty (`cgroup.events`: `populated 0`).
    GroupEmpty(String),
    /// A spawn succeeded.
    Spawned {
        /// For whom.
        who: Spawnee,
        /// The new process.
        proc: ProcId,
    },
    /// A service wrote a newline to its notification fd (`ready: {"notify_fd": N}`).
    Notified {
        /// The service.
        service: String,
        /// Its main process, whose pipe it was.
        pid: Pid,
    },
    /// A connection check ([`Action::Probe`]) was made.
    Probed {
        /// The service checked.
        service: String,
        /// The attempt.
        seq: u64,
        /// Accepted, or why not.
        result: Result<(), String>,
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
    /// What services' cgroups have used, read for a request ([`Action::Account`]).
    Accounted {
        /// Who asked.
        to: ReplyTo,
        /// The request to answer now.
        request: Request,
        /// By service, for those whose cgroup could be read.
        usage: BTreeMap<String, Usage>,
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
    /// The edge can no longer wait for events (`epoll_wait` fails): from now on it only ticks and
    /// scans. reapd stops everything and exits.
    LoopFailed {
        /// What failed, for the log.
        error: String,
    },
    /// The socket, lock and state file were dealt with ([`Action::Release`]); these steps
    /// failed.
    Released {
        /// What could not be removed, each phrased for the log.
        failures: Vec<String>,
    },
    /// A deadline passed.
    Tick,
}

/// Everything the edge does on the supervisor's behalf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start a process in its own session; answer with [`Input::Spawned`] or
    /// [`Input::SpawnFailed`].
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
        /// Give the process the write end of a pipe as this descriptor, and announce a newline
        /// written to it as [`Input::Notified`].
        notify_fd: Option<i32>,
        /// Output, identity and limits (the default for hooks).
        launch: Launch,
        /// The service whose cgroup the process joins before it execs (cgroups only).
        cgroup: Option<String>,
    },
    /// Try a connection check (`tcp`, `unix`) without blocking; answer with [`Input::Probed`].
    Probe {
        /// The service checked.
        service: String,
        /// The attempt.
        seq: u64,
        /// The check.
        probe: Probe,
    },
    /// Freeze the service's cgroup and kill everything in it (`cgroup.kill`).
    KillGroup(String),
    /// Remove the service's cgroup: the service is gone for good.
    RemoveGroup(String),
    /// Read what these services' cgroups have used, for a reply; answer with
    /// [`Input::Accounted`], carrying the request back.
    Account {
        /// Who asked.
        to: ReplyTo,
        /// What was asked (`status` or `list`).
        request: Request,
        /// Whose cgroups to read.
        services: Vec<String>,
    },
    /// Send a signal to every process of a process group: what an exec check left in its group
    /// once it ended or ran out of time (reapd made the check the group's leader; the group's
    /// number cannot be reused while a member lives).
    SignalGroup {
        /// The group.
        pgid: Pid,
        /// The signal.
        signal: Signal,
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
    /// Log an event and send it to every watcher.
    Event(Event),
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
    /// Remove the socket and the lock, and the state file unless `keep_state` (survivors are
    /// recorded in it for the next instance); answer with [`Input::Released`].
    Release {
        /// Keep the state file.
        keep_state: bool,
    },
    /// Answer `logs` with the service's tail (held by the edge, which reads the pipes); with
    /// `follow`, keep sending its new lines to that connection.
    Logs {
        /// Who asked.
        to: ReplyTo,
        /// The service.
        name: String,
        /// Its output goes through reapd.
        captured: bool,
        /// How many of the last lines.
        lines: usize,
        /// Keep sending new lines.
        follow: bool,
    },
    /// Flush what clients are owed and the log, and exit with this status.
    Exit {
        /// Exit status.
        code: i32,
    },
}

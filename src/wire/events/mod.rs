//! Events: every fact reapd tells, as one typed value.
//!
//! Owns: [`Event`], the narrative of a reapd's life (spawns, exits, stops, the shutdown and its
//! report), its JSON form on the control socket (`watch`), and the vocabulary events carry
//! ([`ExitStatus`], [`Survivor`], [`PlanEntry`]). The core emits events; the daemon's log lines
//! and `reapd ctl`'s output are rendered from them (`wire::narrative`, `ctl`), so a fact is told
//! once and cannot be told two ways.
//! Must never: carry anything a watcher could not be shown, or change an existing field's meaning:
//! scripts parse these lines.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};

use crate::wire::signal_names::signal_name;

/// How a process ended, as reported by `waitpid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl ExitStatus {
    /// Exit code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The status a shell would report: the code, or 128 + the signal number.
    pub fn as_exit_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(n) => 128 + n,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ExitStatus::Code(c) => write!(f, "exit {c}"),
            ExitStatus::Signal(n) => write!(f, "killed by {}", signal_name(n)),
        }
    }
}

/// `{"code": 3}` or `{"signal": "SIGKILL", "signo": 9}`.
impl Serialize for ExitStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            ExitStatus::Code(c) => json!({ "code": c }).serialize(s),
            ExitStatus::Signal(n) => json!({ "signal": signal_name(n), "signo": n }).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ExitStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let int = |key: &str| {
            v.get(key)
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
        };
        match (int("code"), int("signo")) {
            (Some(c), _) => Ok(ExitStatus::Code(c)),
            (None, Some(n)) => Ok(ExitStatus::Signal(n)),
            (None, None) => Err(serde::de::Error::custom(
                "an exit status needs \"code\" or \"signo\"",
            )),
        }
    }
}

/// One service as planned in `shutdown_plan`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEntry {
    /// The service.
    pub service: String,
    /// The services that must be gone before it begins to stop (those that start after it).
    pub after: Vec<String>,
    /// Its own stop timeout.
    pub requested_ms: u64,
    /// Its share of the bound if every service before it takes its whole share.
    pub share_ms: u64,
    /// When it begins to stop at the latest, from the start of the shutdown.
    pub starts_ms: u64,
}

/// A process still alive after shutdown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Survivor {
    /// Pid.
    pub pid: i32,
    /// State letter from `/proc/<pid>/stat` (`D` = uninterruptible sleep).
    pub state: String,
    /// Command line.
    pub cmdline: String,
}

/// Why a signal reapd received changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unheeded {
    /// reapd takes no action on this signal (SIGUSR1, SIGUSR2, SIGWINCH with a config file).
    NoAction,
    /// SIGCONT: s6 and runit send it right after SIGTERM.
    Harmless,
    /// A reload was asked for after shutdown began.
    ShuttingDown,
}

/// Everything a `watch` client can receive. Each becomes one JSON line with an `"event"` field
/// and a `"ts_ms"` wall-clock timestamp added when sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The daemon changed state (`running`, `draining`, `killing`, `cleaned_up`).
    State {
        /// New state.
        state: String,
        /// What caused it.
        reason: String,
    },
    /// Another shutdown request (signal or `shutdown`) arrived while one is under way; it changes
    /// nothing.
    AlreadyStopping {
        /// What asked (`SIGTERM`, `shutdown request`, ...).
        trigger: String,
        /// The state reapd is in.
        state: String,
    },
    /// A signal reapd received changed nothing.
    Unheeded {
        /// The signal.
        signal: String,
        /// Why.
        why: Unheeded,
    },
    /// Single-command mode: a signal was passed on to the command's process group.
    Forwarded {
        /// The signal.
        signal: String,
        /// The process group (the command's pid), absent when no command runs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pgid: Option<i32>,
        /// How many processes received it.
        count: usize,
    },
    /// The config has no services.
    NoServices,
    /// A service's main process started.
    Spawned {
        /// Service.
        service: String,
        /// Its pid.
        pid: i32,
    },
    /// A service could not be started.
    SpawnFailed {
        /// Service.
        service: String,
        /// Why.
        error: String,
    },
    /// A service's main process exited.
    Exited {
        /// Service.
        service: String,
        /// Its pid.
        pid: i32,
        /// How it ended.
        status: ExitStatus,
        /// Milliseconds since the service was asked to stop, when it was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_ms: Option<u64>,
    },
    /// A service will be started again after a back-off delay.
    Restarting {
        /// Service.
        service: String,
        /// Back-off delay.
        delay_ms: u64,
        /// Restarts so far.
        restarts: u32,
    },
    /// A service waits to start until the services it is `after` are ready (or, one-shots,
    /// done).
    Waiting {
        /// Service.
        service: String,
        /// The services it still waits for.
        on: Vec<String>,
    },
    /// A service's readiness check passed.
    Ready {
        /// Service.
        service: String,
        /// Milliseconds since its main process started.
        after_ms: u64,
        /// The check that passed.
        check: String,
    },
    /// A service did not become ready within `ready_timeout_ms`: a failed start.
    NotReady {
        /// Service.
        service: String,
        /// What the last attempt said.
        why: String,
        /// Milliseconds since its main process started.
        after_ms: u64,
    },
    /// A one-shot exited 0: it is `done` and its dependents may start.
    Completed {
        /// Service.
        service: String,
        /// Milliseconds it ran.
        after_ms: u64,
    },
    /// A service is given up on (`failed`): restart limit reached, a one-shot failed, or it
    /// never became ready and is not restarted. Only `ctl start` starts it again.
    Failed {
        /// Service.
        service: String,
        /// Why.
        why: String,
        /// It is `essential`: reapd shuts down.
        essential: bool,
    },
    /// A health check result that changed the verdict (`healthy`, `failing`, `unhealthy`), and
    /// every failure counted.
    Health {
        /// Service.
        service: String,
        /// `healthy`, `failing` or `unhealthy` (restarted).
        status: String,
        /// Failures in a row.
        failures: u32,
        /// What the attempt said (`ok`, or why it failed).
        detail: String,
    },
    /// A service's main process exited and its restart policy keeps it down.
    KeptDown {
        /// Service.
        service: String,
        /// The policy (`never`, `on-failure`).
        restart: String,
    },
    /// A service's stop procedure began.
    Stopping {
        /// Service.
        service: String,
        /// Its stop signal.
        signal: String,
        /// Time it gets before it is killed.
        timeout_ms: u64,
        /// Who receives the signal: `tree` (deepest first) or `main`.
        scope: String,
    },
    /// Processes received a stop signal (one event per level of a tree, deepest first).
    Signalled {
        /// Service, or absent for processes that belonged to none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        /// Signal sent.
        signal: String,
        /// Pids signalled, deepest first.
        pids: Vec<i32>,
    },
    /// Processes were frozen and SIGKILLed.
    Killed {
        /// Service, or absent for processes that belonged to none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        /// How many.
        count: usize,
        /// Pids in the order they were killed (deepest first).
        pids: Vec<i32>,
    },
    /// Every process of a service is gone.
    Stopped {
        /// Service.
        service: String,
        /// `exited` (all went on their own after the stop signal), `killed`, or `idle` (nothing ran).
        how: String,
        /// Milliseconds the stop took.
        elapsed_ms: u64,
        /// True when what was stopped is what the main process left running when it exited on
        /// its own (see the service's `leftovers` key).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        leftovers: bool,
        /// True when the kernel's word ended the stop: the service's cgroup emptied
        /// (`cgroup.events`: `populated 0`), with no look at `/proc` to confirm it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cgroup_empty: bool,
    },
    /// A service left the config and is gone.
    Removed {
        /// Service.
        service: String,
    },
    /// A signal was sent to a service's main process on request (`signal`).
    SignalSent {
        /// Service.
        service: String,
        /// Its main process.
        pid: i32,
        /// The signal.
        signal: String,
    },
    /// The shutdown plan: the stop graph, each service with what it waits for and its share.
    ShutdownPlan {
        /// The whole bound.
        budget_ms: u64,
        /// Kept back for killing, sweeps and cleanup hooks.
        reserve_ms: u64,
        /// Every service, in an order in which each comes after those it waits for.
        services: Vec<PlanEntry>,
    },
    /// A process found by the final sweep.
    Sweep {
        /// Pid.
        pid: i32,
        /// Command line.
        cmdline: String,
        /// Why it was chosen.
        reason: String,
    },
    /// A cleanup command starts.
    CleanupStarted {
        /// Its place in the config's `cleanup` list.
        index: usize,
        /// The command.
        cmd: Vec<String>,
        /// Its share of what is left of the bound.
        limit_ms: u64,
    },
    /// A cleanup command is still running at the end of its share: it is being killed.
    CleanupOverran {
        /// Its place in the config's `cleanup` list.
        index: usize,
    },
    /// A cleanup command finished.
    Cleanup {
        /// Its place in the config's `cleanup` list.
        index: usize,
        /// The command.
        cmd: Vec<String>,
        /// True when it exited 0.
        ok: bool,
        /// What happened (`exit 0`, `killed at the shutdown deadline`, ...).
        result: String,
        /// How long it ran.
        elapsed_ms: u64,
    },
    /// The config file is being read again (SIGHUP or `reload`).
    Reloading {
        /// What asked: `SIGHUP` or `reload request`.
        by: String,
    },
    /// A config reload was applied.
    Reloaded {
        /// New services.
        added: Vec<String>,
        /// Services being stopped and removed.
        removed: Vec<String>,
        /// Services restarted with their new definition.
        changed: Vec<String>,
    },
    /// A config reload was refused; the running services are unchanged.
    ReloadRejected {
        /// The errors, each with its JSON path (the first 100).
        errors: Vec<String>,
        /// How many errors there were in all.
        total: usize,
    },
    /// Something in the config was accepted but adjusted or cannot take effect yet.
    ConfigWarning {
        /// What, in a sentence.
        warning: String,
    },
    /// A reapd on this socket died without cleaning up: what it left running is stopped before
    /// anything starts.
    Recovering {
        /// Its pid, when its state file says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        predecessor: Option<i32>,
        /// The services (and hooks) whose processes it left.
        services: Vec<String>,
    },
    /// Processes a dead predecessor left running, found for one of its services.
    LeftByPredecessor {
        /// The service (or hook) they belonged to.
        service: String,
        /// Their pids.
        pids: Vec<i32>,
    },
    /// Every process a dead predecessor left for a service is gone.
    Recovered {
        /// The service.
        service: String,
        /// `exited`, `killed` or `idle` (nothing was left).
        how: String,
    },
    /// The final report; the connection is closed after it.
    Done {
        /// True when every process was verified gone, every cleanup command succeeded and the
        /// shutdown ended within its bound.
        clean: bool,
        /// False when the shutdown took longer than `shutdown_timeout_ms` (counted from the
        /// moment the stop request arrived); such a shutdown is not clean.
        within_bound: bool,
        /// Length of the shutdown.
        elapsed_ms: u64,
        /// The bound it had to end within (`shutdown_timeout_ms`).
        bound_ms: u64,
        /// reapd's exit status.
        exit_code: i32,
        /// Processes still alive.
        survivors: Vec<Survivor>,
        /// What else made it not clean (a failed cleanup command, an overrun bound, ...).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failures: Vec<String>,
    },
}

impl Event {
    /// The wire name (the `"event"` field).
    pub fn name(&self) -> &'static str {
        match self {
            Event::State { .. } => "state",
            Event::AlreadyStopping { .. } => "already_stopping",
            Event::Unheeded { .. } => "unheeded",
            Event::Forwarded { .. } => "forwarded",
            Event::NoServices => "no_services",
            Event::Spawned { .. } => "spawned",
            Event::SpawnFailed { .. } => "spawn_failed",
            Event::Exited { .. } => "exited",
            Event::Restarting { .. } => "restarting",
            Event::Waiting { .. } => "waiting",
            Event::Ready { .. } => "ready",
            Event::NotReady { .. } => "not_ready",
            Event::Completed { .. } => "completed",
            Event::Failed { .. } => "failed",
            Event::Health { .. } => "health",
            Event::KeptDown { .. } => "kept_down",
            Event::Stopping { .. } => "stopping",
            Event::Signalled { .. } => "signalled",
            Event::Killed { .. } => "killed",
            Event::Stopped { .. } => "stopped",
            Event::Removed { .. } => "removed",
            Event::SignalSent { .. } => "signal_sent",
            Event::ShutdownPlan { .. } => "shutdown_plan",
            Event::Sweep { .. } => "sweep",
            Event::CleanupStarted { .. } => "cleanup_started",
            Event::CleanupOverran { .. } => "cleanup_overran",
            Event::Cleanup { .. } => "cleanup",
            Event::Reloading { .. } => "reloading",
            Event::Reloaded { .. } => "reloaded",
            Event::ReloadRejected { .. } => "reload_rejected",
            Event::ConfigWarning { .. } => "config_warning",
            Event::Recovering { .. } => "recovering",
            Event::LeftByPredecessor { .. } => "left_by_predecessor",
            Event::Recovered { .. } => "recovered",
            Event::Done { .. } => "done",
        }
    }
}

/// Every event name a watcher can receive, in the order of [`Event`]'s variants.
pub const EVENTS: &[&str] = &[
    "state",
    "already_stopping",
    "unheeded",
    "forwarded",
    "no_services",
    "spawned",
    "spawn_failed",
    "exited",
    "restarting",
    "waiting",
    "ready",
    "not_ready",
    "completed",
    "failed",
    "health",
    "kept_down",
    "stopping",
    "signalled",
    "killed",
    "stopped",
    "removed",
    "signal_sent",
    "shutdown_plan",
    "sweep",
    "cleanup_started",
    "cleanup_overran",
    "cleanup",
    "reloading",
    "reloaded",
    "reload_rejected",
    "config_warning",
    "recovering",
    "left_by_predecessor",
    "recovered",
    "done",
];

/// Encodes an event as one line (newline included) with its wall-clock timestamp.
pub fn event_line(ev: &Event, ts_ms: u64) -> String {
    let mut v = serde_json::to_value(ev)
        .unwrap_or_else(|e| json!({ "event": "error", "error": e.to_string() }));
    if let Value::Object(m) = &mut v {
        m.insert("ts_ms".into(), Value::from(ts_ms));
    }
    let mut s = v.to_string();
    s.push('\n');
    s
}

#[cfg(test)]
pub(crate) mod tests;

//! The configuration file: parsing, validation and defaults.
//!
//! Owns: the JSON schema of `reapd.json` (see `reapd.json(5)`), every limit and default, the start
//! order derived from `after`, and error messages that name the JSON path of each problem.
//! Must never: read files or touch the environment (callers pass text in), and never stop at the
//! first error: `reapd check` prints them all.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

pub use crate::wire::json::join;
use crate::wire::signal_names::signal_name;

/// Hard ceiling on the whole shutdown: the Kubernetes default grace period.
pub const MAX_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Smallest accepted shutdown bound; below it there is no room for a graceful stop at all.
pub const MIN_SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(100);
/// Ceiling for one service's stop timeout.
pub const MAX_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Default stop timeout of a service.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time in-flight control requests get once shutdown starts.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Shortest `match` string: a shorter one would sweep unrelated processes.
pub const MIN_MATCH_LEN: usize = 3;
/// Most errors of one file that get a "did you mean" suggestion: each compares a word with up
/// to `text::MAX_CANDIDATES` names, and a file may hold thousands of misspellings.
pub const MAX_HINTS: usize = 100;

/// Every top-level key the parser accepts.
pub const TOP_KEYS: &[&str] = &[
    "socket",
    "shutdown_timeout_ms",
    "grace_ms",
    "services",
    "cleanup",
    "cgroups",
];
/// Every key a service accepts.
pub const SERVICE_KEYS: &[&str] = &[
    "cmd",
    "after",
    "env",
    "cwd",
    "restart",
    "stop_signal",
    "stop_timeout_ms",
    "stop_scope",
    "leftovers",
    "ports",
    "match",
    "type",
    "ready",
    "ready_timeout_ms",
    "health",
    "max_restarts",
    "restart_window_ms",
    "essential",
    "autostart",
    "log",
    "user",
    "group",
    "groups",
    "umask",
    "limits",
    "env_file",
];

/// When a service is started again after its main process exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Always restart (with back-off).
    Always,
    /// Restart only after a non-zero exit or a death by signal.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
    }
}

/// Which processes receive a service's stop signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopScope {
    /// Every process of the service's tree, deepest first.
    Tree,
    /// Only the main process (master/worker daemons stop their own workers); the rest of the tree
    /// is still killed at the stop timeout.
    Main,
    /// The main process first (a server tells its clients "shutting down" before its helpers
    /// go); once it has exited, or after half the stop timeout, whatever is left of its tree is
    /// stopped bottom-up, then killed.
    MainFirst,
}

impl StopScope {
    /// The spelling used in the config file and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            StopScope::Tree => "tree",
            StopScope::Main => "main",
            StopScope::MainFirst => "main-first",
        }
    }
}

/// Whether reapd contains services in cgroup v2 (top-level `cgroups`, or `--cgroups`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CgroupMode {
    /// Use a writable cgroup v2 hierarchy when there is one, else walk `/proc`.
    #[default]
    Auto,
    /// Never: walk `/proc` only.
    Off,
    /// Refuse to start without a writable cgroup v2 hierarchy.
    Required,
}

impl CgroupMode {
    /// Every spelling, as written in the config file and on the command line.
    pub const NAMES: &'static [&'static str] = &["auto", "off", "required"];

    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupMode::Auto => "auto",
            CgroupMode::Off => "off",
            CgroupMode::Required => "required",
        }
    }

    /// Reads a spelling.
    pub fn parse(s: &str) -> Option<CgroupMode> {
        match s {
            "auto" => Some(CgroupMode::Auto),
            "off" => Some(CgroupMode::Off),
            "required" => Some(CgroupMode::Required),
            _ => None,
        }
    }
}

/// What happens to processes a service's main process leaves behind when it exits on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leftovers {
    /// Stopped with the service's stop procedure before it runs again (as systemd does).
    Stop,
    /// Left running (they are still stopped at shutdown).
    Keep,
}

/// One supervised service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Unique name (`[A-Za-z0-9][A-Za-z0-9_.@-]*`).
    pub name: String,
    /// Program and arguments; no shell is involved.
    pub cmd: Vec<String>,
    /// Services started before this one (and stopped after it).
    pub after: Vec<String>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Signal that asks the service to stop.
    pub stop_signal: Signal,
    /// How long the service gets to stop before it is killed.
    pub stop_timeout: Duration,
    /// Who receives the stop signal.
    pub stop_scope: StopScope,
    /// What happens to what the main process leaves behind when it exits.
    pub leftovers: Leftovers,
    /// TCP ports whose listeners are swept at shutdown.
    pub ports: Vec<u16>,
    /// Command-line substrings whose processes are swept at shutdown.
    pub matches: Vec<String>,
    /// How it runs: type, readiness, health, restart limits, essential, autostart.
    pub run: RunSpec,
    /// Output, identity and limits of its process.
    pub launch: Launch,
}

impl ServiceSpec {
    /// Sets the stop timeout, capped at [`MAX_STOP_TIMEOUT`]; returns a warning when capped.
    pub fn set_stop_timeout(&mut self, ms: u64) -> Option<String> {
        let d = Duration::from_millis(ms);
        self.stop_timeout = d.min(MAX_STOP_TIMEOUT);
        (d > MAX_STOP_TIMEOUT)
            .then(|| format!("{ms} ms capped to {} ms", MAX_STOP_TIMEOUT.as_millis()))
    }

    /// A service with every default and the given command.
    pub fn new(name: &str, cmd: Vec<String>) -> Self {
        ServiceSpec {
            name: name.to_string(),
            cmd,
            after: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            restart: RestartPolicy::Always,
            stop_signal: Signal::SIGTERM,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            stop_scope: StopScope::Tree,
            leftovers: Leftovers::Stop,
            ports: Vec::new(),
            matches: Vec::new(),
            run: RunSpec::default(),
            launch: Launch::default(),
        }
    }
}

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Control socket path from the file, if given.
    pub socket: Option<PathBuf>,
    /// Bound on the whole shutdown.
    pub shutdown_timeout: Duration,
    /// Time in-flight control requests get once shutdown starts.
    pub grace: Duration,
    /// Services in start order (dependencies first, otherwise by name).
    pub services: Vec<ServiceSpec>,
    /// Commands run one after another once every process is gone.
    pub cleanup: Vec<Vec<String>>,
    /// Things that were accepted but adjusted (capped timeouts).
    pub warnings: Vec<String>,
    /// cgroup v2 containment (read at start only).
    pub cgroups: CgroupMode,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: None,
            shutdown_timeout: MAX_SHUTDOWN_TIMEOUT,
            grace: DEFAULT_GRACE,
            services: Vec::new(),
            cleanup: Vec::new(),
            warnings: Vec::new(),
            cgroups: CgroupMode::Auto,
        }
    }
}

impl Config {
    /// The service with this name.
    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Applies a command-line `--shutdown-timeout`, with the same limits as the file.
    pub fn set_shutdown_timeout(&mut self, ms: u64) -> Result<(), String> {
        let d = Duration::from_millis(ms);
        if d < MIN_SHUTDOWN_TIMEOUT {
            return Err(format!(
                "shutdown timeout {ms} ms is below the minimum of {} ms",
                MIN_SHUTDOWN_TIMEOUT.as_millis()
            ));
        }
        if d > MAX_SHUTDOWN_TIMEOUT {
            self.warnings.push(format!(
                "shutdown timeout {ms} ms capped to {} ms",
                MAX_SHUTDOWN_TIMEOUT.as_millis()
            ));
        }
        self.shutdown_timeout = d.min(MAX_SHUTDOWN_TIMEOUT);
        Ok(())
    }

    /// The grace for in-flight requests, never past the shutdown bound.
    pub fn effective_grace(&self) -> Duration {
        self.grace.min(self.shutdown_timeout)
    }

    /// A one-line summary, as printed by `reapd check`.
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self.services.iter().map(|s| s.name.as_str()).collect();
        let mut s = format!(
            "ok: {} service{}",
            names.len(),
            if names.len() == 1 { "" } else { "s" }
        );
        if !names.is_empty() {
            s.push_str(&format!(" (start order: {})", names.join(", ")));
        }
        s.push_str(&format!(
            ", shutdown bound {} ms, {} cleanup command{}",
            self.shutdown_timeout.as_millis(),
            self.cleanup.len(),
            if self.cleanup.len() == 1 { "" } else { "s" }
        ));
        s
    }
}

/// One problem in a config file, located by its JSON path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path such as `services.web.stop_timeout_ms`; empty for the file as a whole.
    pub path: String,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Describes a stop signal for logs (`SIGTERM`).
pub fn stop_signal_name(sig: Signal) -> String {
    signal_name(sig as i32)
}

mod launch;
mod order;
mod parse;
mod run;
mod service;
#[cfg(test)]
mod tests;

pub use launch::{Launch, Limit, LogMode, RESOURCES, Resource};
pub use parse::parse;
pub use run::{
    DEFAULT_HEALTH_INTERVAL, DEFAULT_HEALTH_RETRIES, DEFAULT_HEALTH_TIMEOUT,
    DEFAULT_READY_INTERVAL, DEFAULT_READY_TIMEOUT, DEFAULT_RESTART_WINDOW, HEALTH_KEYS, Health,
    PROBE_INTERVAL_MAX, Probe, READY_KEYS, Readiness, RunSpec, ServiceKind,
};

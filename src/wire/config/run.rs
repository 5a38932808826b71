//! How a service runs, as opposed to how it stops: its type (long-running or one-shot), its
//! readiness check, its health check, its restart limits, and whether it is essential or starts
//! on its own. Each key checked and reported by its JSON path.
//!
//! Must never: accept a check that cannot work (a notification fd as a health check, a port
//! outside 1–65535, a one-shot with a readiness check) — say what to write instead.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use super::parse::{Cx, describe};
use super::*;
use crate::wire::text::quoted;

/// Readiness checks are tried this often at first, then less often (doubling) up to
/// [`PROBE_INTERVAL_MAX`].
pub const DEFAULT_READY_INTERVAL: Duration = Duration::from_millis(50);
/// The longest pause between two readiness attempts (unless `interval_ms` asks for longer).
pub const PROBE_INTERVAL_MAX: Duration = Duration::from_secs(1);
/// How long a service may take to become ready by default.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Health check defaults: every 10 s, 5 s per attempt, 3 failures in a row.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(10);
/// See [`DEFAULT_HEALTH_INTERVAL`].
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// See [`DEFAULT_HEALTH_INTERVAL`].
pub const DEFAULT_HEALTH_RETRIES: u32 = 3;
/// The window `max_restarts` counts in, by default.
pub const DEFAULT_RESTART_WINDOW: Duration = Duration::from_secs(60);
/// The shortest check interval: a check is a system call or a process.
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// Highest descriptor a notification fd may use (it must stay below the usual soft limit).
pub const MAX_NOTIFY_FD: i32 = 1023;

/// Keys of a `ready` object.
pub const READY_KEYS: &[&str] = &["notify_fd", "tcp", "unix", "exec", "interval_ms"];
/// Keys of a `health` object.
pub const HEALTH_KEYS: &[&str] = &[
    "exec",
    "tcp",
    "unix",
    "interval_ms",
    "timeout_ms",
    "retries",
    "start_period_ms",
];

/// What kind of program a service runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// A program that keeps running.
    Longrun,
    /// A task that runs once and must exit 0 (migrations, set-up) before its dependents start.
    Oneshot,
}

impl ServiceKind {
    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Longrun => "longrun",
            ServiceKind::Oneshot => "oneshot",
        }
    }
}

/// How reapd checks a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The service writes a newline to this descriptor when it is ready (s6's notification-fd).
    NotifyFd(i32),
    /// A TCP connection to this port on the loopback address is accepted.
    Tcp(u16),
    /// A connection to this Unix socket is accepted.
    Unix(PathBuf),
    /// This command exits 0.
    Exec(Vec<String>),
}

impl Probe {
    /// How the check is described in logs: `tcp 8080`, `exec [curl -f …]`.
    pub fn describe(&self) -> String {
        match self {
            Probe::NotifyFd(fd) => format!("a newline on fd {fd}"),
            Probe::Tcp(port) => format!("tcp port {port}"),
            Probe::Unix(p) => format!("unix socket {}", p.display()),
            Probe::Exec(argv) => format!("exec {}", argv.join(" ")),
        }
    }
}

/// When a service counts as ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// The check.
    pub probe: Probe,
    /// The first pause between attempts of a polled check; it doubles up to
    /// [`PROBE_INTERVAL_MAX`] (or this, if longer).
    pub interval: Duration,
}

/// A periodic check of a ready service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The check.
    pub probe: Probe,
    /// Time between the end of one attempt and the start of the next.
    pub interval: Duration,
    /// Longest an attempt may take; an exec check is killed then.
    pub timeout: Duration,
    /// Failures in a row that make the service unhealthy (it is restarted).
    pub retries: u32,
    /// Failures during this time after the service became ready do not count.
    pub start_period: Duration,
}

/// Everything about how a service runs, as read from the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    /// Long-running or one-shot.
    pub kind: ServiceKind,
    /// When it is ready; `None`: as soon as it is spawned.
    pub ready: Option<Readiness>,
    /// How long it may take to become ready: a failed start after that.
    pub ready_timeout: Duration,
    /// A one-shot with `ready_timeout_ms`: how long it may run before it counts as failed
    /// (without the key a one-shot may take as long as it needs, as a migration may).
    pub oneshot_timeout: Option<Duration>,
    /// Its health check.
    pub health: Option<Health>,
    /// At most this many restarts within `restart_window`; then `failed`.
    pub max_restarts: Option<u32>,
    /// The window of `max_restarts`.
    pub restart_window: Duration,
    /// When it fails for good, reapd stops everything and exits with its status.
    pub essential: bool,
    /// Started with reapd (true) or only by `ctl start`.
    pub autostart: bool,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            kind: ServiceKind::Longrun,
            ready: None,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            oneshot_timeout: None,
            health: None,
            max_restarts: None,
            restart_window: DEFAULT_RESTART_WINDOW,
            essential: false,
            autostart: true,
        }
    }
}

impl Cx {
    /// Reads the run keys of the service at `path` into `spec`.
    pub(super) fn run_keys(
        &mut self,
        path: &str,
        obj: &Map<String, Value>,
        spec: &mut ServiceSpec,
    ) {
        let run = &mut spec.run;
        if let Some(v) = obj.get("type") {
            let p = join(path, "type");
            if let Some(s) = self.string(&p, v) {
                match s {
                    "longrun" => run.kind = ServiceKind::Longrun,
                    "oneshot" => run.kind = ServiceKind::Oneshot,
                    other => self.err(
                        &p,
                        format!(
                            "expected \"longrun\" or \"oneshot\", found {}",
                            quoted(other)
                        ),
                    ),
                }
            }
        }
        if let Some(v) = obj.get("ready") {
            run.ready = self.readiness(&join(path, "ready"), v);
        }
        if let Some(v) = obj.get("ready_timeout_ms") {
            let p = join(path, "ready_timeout_ms");
            if let Some(ms) = self.millis(&p, v) {
                if ms == 0 {
                    self.err(&p, "expected at least 1 ms");
                } else {
                    run.ready_timeout = Duration::from_millis(ms);
                }
            }
        }
        if let Some(v) = obj.get("health") {
            run.health = self.health(&join(path, "health"), v);
        }
        if let Some(v) = obj.get("max_restarts") {
            let p = join(path, "max_restarts");
            match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => run.max_restarts = Some(n),
                None => self.err(
                    &p,
                    format!(
                        "expected a count from 0 to {}, found {}",
                        u32::MAX,
                        describe(v)
                    ),
                ),
            }
        }
        if let Some(v) = obj.get("restart_window_ms") {
            let p = join(path, "restart_window_ms");
            if let Some(ms) = self.millis(&p, v) {
                if ms == 0 {
                    self.err(&p, "expected at least 1 ms");
                } else {
                    run.restart_window = Duration::from_millis(ms);
                }
            }
            if run.max_restarts.is_none() {
                self.warnings
                    .push(format!("{p}: has no effect without \"max_restarts\""));
            }
        }
        if let Some(v) = obj.get("essential") {
            run.essential = self.boolean(&join(path, "essential"), v).unwrap_or(false);
        }
        if let Some(v) = obj.get("autostart") {
            run.autostart = self.boolean(&join(path, "autostart"), v).unwrap_or(true);
        }
        if run.kind == ServiceKind::Oneshot {
            if obj.contains_key("ready_timeout_ms") {
                run.oneshot_timeout = Some(run.ready_timeout);
            }
            if run.ready.is_some() {
                self.err(&join(path, "ready"), "a one-shot is ready when it exits 0: remove \"ready\", or make the service a \"longrun\"");
            }
            if run.health.is_some() {
                self.err(
                    &join(path, "health"),
                    "a one-shot has no health check: it runs once; remove \"health\"",
                );
            }
            match obj.get("restart") {
                None => spec.restart = RestartPolicy::Never,
                Some(_) if spec.restart == RestartPolicy::Always => self.err(
                    &join(path, "restart"),
                    "a one-shot is never run again after it succeeded: use \"on-failure\" (retry a failure) or \"never\"",
                ),
                Some(_) => {}
            }
        }
    }

    /// A service that starts with reapd but is `after` one that does not waits until a client
    /// starts that one: legal, but worth a word.
    pub(super) fn manual_dependencies(&mut self, services: &[ServiceSpec]) {
        let manual: std::collections::HashSet<&str> = services
            .iter()
            .filter(|s| !s.run.autostart)
            .map(|s| s.name.as_str())
            .collect();
        for s in services.iter().filter(|s| s.run.autostart) {
            for dep in s.after.iter().filter(|d| manual.contains(d.as_str())) {
                self.warnings.push(format!(
                    "{}: {dep} has \"autostart\": false, so {} waits until `reapd ctl start {dep}`",
                    join(&join("services", &s.name), "after"),
                    s.name
                ));
            }
        }
    }

    pub(super) fn boolean(&mut self, path: &str, v: &Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            other => {
                self.err(
                    path,
                    format!("expected true or false, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// The check of a `ready` or `health` object: exactly one of its kinds.
    fn probe(
        &mut self,
        path: &str,
        obj: &Map<String, Value>,
        notify_allowed: bool,
    ) -> Option<Probe> {
        let kinds: Vec<&str> = ["notify_fd", "tcp", "unix", "exec"]
            .into_iter()
            .filter(|k| obj.contains_key(*k))
            .collect();
        let allowed = if notify_allowed {
            "\"notify_fd\", \"tcp\", \"unix\" or \"exec\""
        } else {
            "\"tcp\", \"unix\" or \"exec\""
        };
        let (kind, v) = match kinds.as_slice() {
            [k] => (*k, obj.get(*k)?),
            [] => {
                self.err(path, format!("expected one check: {allowed}"));
                return None;
            }
            many => {
                self.err(
                    path,
                    format!("expected one check, found {}: keep one", many.join(" and ")),
                );
                return None;
            }
        };
        let p = join(path, kind);
        match kind {
            "notify_fd" if !notify_allowed => {
                self.err(&p, "a notification fd signals readiness once; a health check must be \"tcp\", \"unix\" or \"exec\"");
                None
            }
            "notify_fd" => match v.as_i64() {
                Some(fd @ 3..=1023) => i32::try_from(fd).ok().map(Probe::NotifyFd),
                _ => {
                    self.err(&p, format!("expected a descriptor number from 3 to {MAX_NOTIFY_FD} (0, 1 and 2 are stdin, stdout and stderr), found {}", describe(v)));
                    None
                }
            },
            "tcp" => match v.as_u64() {
                Some(n @ 1..=65535) => u16::try_from(n).ok().map(Probe::Tcp),
                _ => {
                    self.err(&p, format!("expected a TCP port number from 1 to 65535 (checked on the loopback address), found {}", describe(v)));
                    None
                }
            },
            "unix" => {
                let s = self.string(&p, v)?;
                if !s.starts_with('/') {
                    self.err(
                        &p,
                        format!("expected an absolute socket path, found {}", quoted(s)),
                    );
                    return None;
                }
                if s.len() >= 108 {
                    self.err(&p, "a Unix socket path must be shorter than 108 bytes");
                    return None;
                }
                Some(Probe::Unix(PathBuf::from(s)))
            }
            _ => self.argv(&p, v).map(Probe::Exec),
        }
    }

    fn interval(&mut self, path: &str, obj: &Map<String, Value>, default: Duration) -> Duration {
        let Some(v) = obj.get("interval_ms") else {
            return default;
        };
        let p = join(path, "interval_ms");
        match self.millis(&p, v).map(Duration::from_millis) {
            Some(d) if d >= MIN_PROBE_INTERVAL => d,
            Some(_) => {
                self.err(
                    &p,
                    format!(
                        "expected at least {} ms: every attempt is a system call or a process",
                        MIN_PROBE_INTERVAL.as_millis()
                    ),
                );
                default
            }
            None => default,
        }
    }

    fn readiness(&mut self, path: &str, v: &Value) -> Option<Readiness> {
        let obj = self.object(path, v)?;
        self.known_keys(path, obj, READY_KEYS);
        let probe = self.probe(path, obj, true)?;
        let interval = self.interval(path, obj, DEFAULT_READY_INTERVAL);
        Some(Readiness { probe, interval })
    }

    fn health(&mut self, path: &str, v: &Value) -> Option<Health> {
        let obj = self.object(path, v)?;
        // `notify_fd` gets its own message below rather than "unknown key".
        let mut others = obj.clone();
        others.remove("notify_fd");
        self.known_keys(path, &others, HEALTH_KEYS);
        let probe = self.probe(path, obj, false)?;
        let interval = self.interval(path, obj, DEFAULT_HEALTH_INTERVAL);
        let mut health = Health {
            probe,
            interval,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            retries: DEFAULT_HEALTH_RETRIES,
            start_period: Duration::ZERO,
        };
        if let Some(v) = obj.get("timeout_ms") {
            let p = join(path, "timeout_ms");
            match self.millis(&p, v) {
                Some(0) => self.err(&p, "expected at least 1 ms"),
                Some(ms) => health.timeout = Duration::from_millis(ms),
                None => {}
            }
        }
        if let Some(v) = obj.get("retries") {
            let p = join(path, "retries");
            match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n @ 1..) => health.retries = n,
                _ => self.err(
                    &p,
                    format!(
                        "expected a count from 1 to 4294967295 (failures in a row before a restart), found {}",
                        describe(v)
                    ),
                ),
            }
        }
        if let Some(v) = obj.get("start_period_ms")
            && let Some(ms) = self.millis(&join(path, "start_period_ms"), v)
        {
            health.start_period = Duration::from_millis(ms);
        }
        Some(health)
    }
}

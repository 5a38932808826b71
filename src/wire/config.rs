//! The configuration file: parsing, validation and defaults.
//!
//! Owns: the JSON schema of `reapd.json` (see `reapd.json(5)`), every limit and default, the start
//! order derived from `after`, and error messages that name the JSON path of each problem.
//! Must never: read files or touch the environment (callers pass text in), and never stop at the
//! first error: `reapd check` prints them all.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Map, Value};

pub use crate::wire::json::join;
use crate::wire::json::parse_strict;
use crate::wire::signal_names::{parse_signal, signal_name};
use crate::wire::text::{did_you_mean, quoted};

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

/// Parses and validates a config file's text. On failure returns every error found.
pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    let (root, repeated) = parse_strict(text, "").map_err(|e| {
        vec![ConfigError {
            path: String::new(),
            message: format!(
                "invalid JSON at line {} column {}: {}",
                e.line(),
                e.column().max(1),
                strip_position(&e)
            ),
        }]
    })?;
    let mut cx = Cx::default();
    for path in repeated {
        cx.err(
            &path,
            "defined twice in the same object; keep only one (reapd does not pick one for you)",
        );
    }
    let cfg = cx.config(&root);
    if cx.errors.is_empty() {
        let mut cfg = cfg;
        cfg.warnings = cx.warnings;
        Ok(cfg)
    } else {
        Err(cx.errors)
    }
}

/// serde_json appends " at line X column Y" to its messages; reapd puts the position first.
fn strip_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

#[derive(Default)]
struct Cx {
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    /// Suggestions made so far (see [`MAX_HINTS`]).
    hints: usize,
}

impl Cx {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// A "did you mean" for `word`, while the file's budget of suggestions lasts.
    fn hint<'a>(&mut self, word: &str, known: impl IntoIterator<Item = &'a str>) -> String {
        if self.hints >= MAX_HINTS {
            return String::new();
        }
        self.hints += 1;
        did_you_mean(word, known)
    }

    fn config(&mut self, root: &Value) -> Config {
        let mut cfg = Config::default();
        let Some(top) = self.object("", root) else {
            return cfg;
        };
        self.known_keys("", top, TOP_KEYS);
        if let Some(v) = top.get("socket")
            && let Some(s) = self.string("socket", v)
        {
            if s.len() >= 108 {
                self.err(
                    "socket",
                    format!(
                        "path is {} bytes long; a Unix socket path must be shorter than 108",
                        s.len()
                    ),
                );
            } else {
                cfg.socket = Some(PathBuf::from(s));
            }
        }
        if let Some(v) = top.get("shutdown_timeout_ms")
            && let Some(ms) = self.millis("shutdown_timeout_ms", v)
        {
            if let Err(e) = cfg.set_shutdown_timeout(ms) {
                self.err("shutdown_timeout_ms", e);
            }
            self.warnings.append(&mut cfg.warnings);
        }
        if let Some(v) = top.get("grace_ms")
            && let Some(ms) = self.millis("grace_ms", v)
        {
            cfg.grace = Duration::from_millis(ms);
        }
        if let Some(v) = top.get("services")
            && let Some(map) = self.object("services", v)
        {
            let mut specs = Vec::new();
            for (name, sv) in map {
                if name.starts_with('_') {
                    continue;
                }
                let path = join("services", name);
                if let Err(e) = check_name(name) {
                    self.err(&path, e);
                    continue;
                }
                if let Some(spec) = self.service(&path, name, sv) {
                    specs.push(spec);
                }
            }
            let declared: BTreeSet<&str> = map
                .keys()
                .filter(|k| !k.starts_with('_'))
                .map(String::as_str)
                .collect();
            cfg.services = self.start_order(specs, &declared);
        }
        if let Some(v) = top.get("cleanup")
            && let Some(list) = self.array("cleanup", v)
        {
            for (i, item) in list.iter().enumerate() {
                if let Some(argv) = self.argv(&format!("cleanup[{i}]"), item) {
                    cfg.cleanup.push(argv);
                }
            }
        }
        cfg
    }

    fn service(&mut self, path: &str, name: &str, v: &Value) -> Option<ServiceSpec> {
        let obj = self.object(path, v)?;
        self.known_keys(path, obj, SERVICE_KEYS);
        let before = self.errors.len();
        let mut spec = ServiceSpec::new(name, Vec::new());
        match obj.get("cmd") {
            Some(v) => spec.cmd = self.argv(&join(path, "cmd"), v).unwrap_or_default(),
            None => self.err(path, "missing required key \"cmd\" (the program and its arguments, e.g. [\"sleep\", \"60\"])"),
        }
        if let Some(v) = obj.get("after") {
            spec.after = self
                .string_list(&join(path, "after"), v)
                .unwrap_or_default();
        }
        if let Some(v) = obj.get("env") {
            let p = join(path, "env");
            if let Some(map) = self.object(&p, v) {
                for (k, val) in map {
                    let kp = join(&p, k);
                    if k.is_empty() || k.contains('=') || k.contains('\0') {
                        self.err(&kp, "environment variable names must be non-empty and contain no '=' or NUL");
                        continue;
                    }
                    if let Some(s) = self.string(&kp, val) {
                        spec.env.insert(k.clone(), s.to_string());
                    }
                }
            }
        }
        if let Some(v) = obj.get("cwd")
            && let Some(s) = self.string(&join(path, "cwd"), v)
        {
            spec.cwd = Some(PathBuf::from(s));
        }
        if let Some(v) = obj.get("restart") {
            let p = join(path, "restart");
            if let Some(s) = self.string(&p, v) {
                spec.restart = match s {
                    "always" => RestartPolicy::Always,
                    "on-failure" => RestartPolicy::OnFailure,
                    "never" => RestartPolicy::Never,
                    other => {
                        self.err(
                            &p,
                            format!(
                                "expected one of \"always\", \"on-failure\", \"never\", found {}",
                                quoted(other)
                            ),
                        );
                        RestartPolicy::Always
                    }
                };
            }
        }
        if let Some(v) = obj.get("stop_signal") {
            let p = join(path, "stop_signal");
            let parsed = match v {
                Value::String(s) => parse_signal(s),
                Value::Number(n) => n
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| format!("unknown signal number {n}"))
                    .and_then(|n| parse_signal(&n.to_string())),
                other => Err(format!(
                    "expected a signal name or number, found {}",
                    describe(other)
                )),
            };
            match parsed {
                Ok(Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU) => {
                    self.err(&p, "a job-control stop signal would freeze the service, not stop it; use TERM, INT, QUIT or HUP")
                }
                Ok(sig) => spec.stop_signal = sig,
                Err(e) => self.err(&p, e),
            }
        }
        if let Some(v) = obj.get("stop_timeout_ms") {
            let p = join(path, "stop_timeout_ms");
            if let Some(warning) = self.millis(&p, v).and_then(|ms| spec.set_stop_timeout(ms)) {
                self.warnings.push(format!("{p}: {warning}"));
            }
        }
        if let Some(v) = obj.get("stop_scope") {
            let p = join(path, "stop_scope");
            if let Some(s) = self.string(&p, v) {
                spec.stop_scope = match s {
                    "tree" => StopScope::Tree,
                    "main" => StopScope::Main,
                    other => {
                        self.err(
                            &p,
                            format!("expected \"tree\" or \"main\", found {}", quoted(other)),
                        );
                        StopScope::Tree
                    }
                };
            }
        }
        if let Some(v) = obj.get("leftovers") {
            let p = join(path, "leftovers");
            if let Some(s) = self.string(&p, v) {
                spec.leftovers = match s {
                    "stop" => Leftovers::Stop,
                    "keep" => Leftovers::Keep,
                    other => {
                        self.err(
                            &p,
                            format!("expected \"stop\" or \"keep\", found {other:?}"),
                        );
                        Leftovers::Stop
                    }
                };
            }
        }
        if let Some(v) = obj.get("ports") {
            let p = join(path, "ports");
            if let Some(list) = self.array(&p, v) {
                for (i, item) in list.iter().enumerate() {
                    match item.as_u64() {
                        Some(n @ 1..=65535) => spec.ports.push(n as u16),
                        _ => self.err(
                            &format!("{p}[{i}]"),
                            format!(
                                "expected a TCP port number from 1 to 65535, found {}",
                                describe(item)
                            ),
                        ),
                    }
                }
            }
        }
        if let Some(v) = obj.get("match") {
            let p = join(path, "match");
            for (i, s) in self
                .string_list(&p, v)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                if s.chars().count() < MIN_MATCH_LEN {
                    self.err(
                        &format!("{p}[{i}]"),
                        format!("{s:?} is too short: a match string needs at least {MIN_MATCH_LEN} characters, or it would sweep unrelated processes"),
                    );
                } else {
                    spec.matches.push(s);
                }
            }
        }
        (self.errors.len() == before).then_some(spec)
    }

    /// Orders services so every one comes after the services it names in `after`; reports
    /// unknown names and cycles. Services of one level (whose dependencies are all placed) go
    /// in name order. Kahn's algorithm, level by level: linear in services plus dependencies.
    /// `declared` holds every service name in the file, including services with errors of their
    /// own: depending on one of those is not an "unknown service".
    fn start_order(
        &mut self,
        specs: Vec<ServiceSpec>,
        declared: &BTreeSet<&str>,
    ) -> Vec<ServiceSpec> {
        let mut bad = !self.errors.is_empty();
        for s in &specs {
            for (i, dep) in s.after.iter().enumerate() {
                if !declared.contains(dep.as_str()) {
                    let hint = self.hint(dep, declared.iter().copied());
                    self.err(
                        &format!("{}[{i}]", join(&join("services", &s.name), "after")),
                        format!("unknown service {}{hint}", quoted(dep)),
                    );
                    bad = true;
                }
            }
        }
        if bad {
            return specs;
        }
        // `specs` is in name order (it comes from a sorted map), so indices sort like names.
        let index: HashMap<&str, usize> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let mut waiting_on: Vec<usize> = vec![0; specs.len()];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); specs.len()];
        for (i, s) in specs.iter().enumerate() {
            for dep in &s.after {
                if let (Some(&d), Some(n)) = (index.get(dep.as_str()), waiting_on.get_mut(i)) {
                    *n += 1;
                    if let Some(list) = dependents.get_mut(d) {
                        list.push(i);
                    }
                }
            }
        }
        let mut level: Vec<usize> = waiting_on
            .iter()
            .enumerate()
            .filter(|(_, n)| **n == 0)
            .map(|(i, _)| i)
            .collect();
        let mut placed: Vec<usize> = Vec::with_capacity(specs.len());
        while !level.is_empty() {
            let mut next = Vec::new();
            for &i in &level {
                for &d in dependents.get(i).into_iter().flatten() {
                    if let Some(n) = waiting_on.get_mut(d) {
                        *n -= 1;
                        if *n == 0 {
                            next.push(d);
                        }
                    }
                }
            }
            placed.append(&mut level);
            next.sort_unstable();
            level = next;
        }
        let mut slots: Vec<Option<ServiceSpec>> = specs.into_iter().map(Some).collect();
        let mut order: Vec<ServiceSpec> = placed
            .iter()
            .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
            .collect();
        // What is left waits, directly or not, on a cycle.
        let rest: Vec<ServiceSpec> = slots.into_iter().flatten().collect();
        if !rest.is_empty() {
            let cycle = find_cycle(&rest);
            self.err(
                &join(
                    &join("services", cycle.first().map_or("", String::as_str)),
                    "after",
                ),
                format!("dependency cycle: {}", cycle.join(" → ")),
            );
            order.extend(rest);
        }
        order
    }

    fn object<'a>(&mut self, path: &str, v: &'a Value) -> Option<&'a Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            other => {
                self.err(
                    path,
                    format!("expected an object, found {}", describe(other)),
                );
                None
            }
        }
    }

    fn array<'a>(&mut self, path: &str, v: &'a Value) -> Option<&'a Vec<Value>> {
        match v {
            Value::Array(a) => Some(a),
            other => {
                self.err(
                    path,
                    format!("expected an array, found {}", describe(other)),
                );
                None
            }
        }
    }

    fn string<'a>(&mut self, path: &str, v: &'a Value) -> Option<&'a str> {
        match v {
            Value::String(s) if s.contains('\0') => {
                self.err(path, "strings must not contain NUL characters");
                None
            }
            Value::String(s) if s.is_empty() => {
                self.err(path, "expected a non-empty string");
                None
            }
            Value::String(s) => Some(s),
            other => {
                self.err(
                    path,
                    format!("expected a string, found {}", describe(other)),
                );
                None
            }
        }
    }

    fn string_list(&mut self, path: &str, v: &Value) -> Option<Vec<String>> {
        let list = self.array(path, v)?;
        let mut out = Vec::new();
        for (i, item) in list.iter().enumerate() {
            if let Some(s) = self.string(&format!("{path}[{i}]"), item) {
                out.push(s.to_string());
            }
        }
        Some(out)
    }

    fn argv(&mut self, path: &str, v: &Value) -> Option<Vec<String>> {
        if let Value::String(s) = v {
            self.err(path, format!("expected an array of strings (argv, no shell), found {}; write [\"sh\", \"-c\", {}] to use a shell", describe(v), quoted(s)));
            return None;
        }
        let list = self.string_list(path, v)?;
        if list.is_empty() {
            self.err(path, "expected at least the program name");
            return None;
        }
        Some(list)
    }

    fn millis(&mut self, path: &str, v: &Value) -> Option<u64> {
        match v.as_u64() {
            Some(n) => Some(n),
            None => {
                self.err(path, format!("expected an integer, found {}", describe(v)));
                None
            }
        }
    }

    fn known_keys(&mut self, path: &str, obj: &Map<String, Value>, known: &[&str]) {
        for key in obj.keys() {
            if key.starts_with('_') || known.contains(&key.as_str()) {
                continue;
            }
            let hint = self.hint(key, known.iter().copied());
            let hint = if hint.is_empty() {
                format!(" (known keys: {})", known.join(", "))
            } else {
                hint
            };
            self.err(&join(path, key), format!("unknown key{hint}"));
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c));
    if name.len() > 64 || !ok_first || !ok_rest {
        return Err(format!(
            "invalid service name {}: use up to 64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit",
            quoted(name)
        ));
    }
    Ok(())
}

/// Finds one dependency cycle among services that could not be ordered, starting from the
/// first of them: every one of them waits on at least one other, so following those leads back.
fn find_cycle(rest: &[ServiceSpec]) -> Vec<String> {
    let deps: HashMap<&str, &Vec<String>> =
        rest.iter().map(|s| (s.name.as_str(), &s.after)).collect();
    let Some(start) = rest.first().map(|s| s.name.as_str()) else {
        return Vec::new();
    };
    let mut path: Vec<&str> = vec![start];
    let mut seen: HashMap<&str, usize> = HashMap::from([(start, 0)]);
    let mut cur = start;
    loop {
        let next = deps
            .get(cur)
            .and_then(|after| after.iter().find(|d| deps.contains_key(d.as_str())));
        let Some(next) = next.map(String::as_str) else {
            return path.iter().map(|s| s.to_string()).collect();
        };
        if let Some(&pos) = seen.get(next) {
            let mut cycle: Vec<String> = path
                .get(pos..)
                .unwrap_or_default()
                .iter()
                .map(|s| s.to_string())
                .collect();
            cycle.push(next.to_string());
            return cycle;
        }
        seen.insert(next, path.len());
        path.push(next);
        cur = next;
    }
}

/// A short description of a JSON value for error messages: the value itself for scalars.
fn describe(v: &Value) -> String {
    match v {
        Value::Object(_) => "an object".into(),
        Value::Array(_) => "an array".into(),
        Value::Null => "null".into(),
        other => {
            let s = other.to_string();
            if s.chars().count() > 40 {
                format!("{}…", s.chars().take(40).collect::<String>())
            } else {
                s
            }
        }
    }
}

/// Describes a stop signal for logs (`SIGTERM`).
pub fn stop_signal_name(sig: Signal) -> String {
    signal_name(sig as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        parse(text)
            .expect_err("should fail")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn full_example_parses_in_dependency_order() {
        let cfg = parse(
            r#"{ "socket": "/run/reapd.sock", "shutdown_timeout_ms": 30000, "grace_ms": 10000,
              "services": {
                "db":  { "cmd": ["postgres", "-D", "/data"], "stop_signal": "SIGINT", "stop_timeout_ms": 20000 },
                "web": { "cmd": ["./web"], "after": ["db"], "env": {"PORT": "8080"}, "cwd": "/srv",
                         "restart": "always", "ports": [8080], "match": ["web-worker"] },
                "aaa": { "cmd": ["true"], "after": ["web"], "stop_scope": "main", "stop_signal": 3 } },
              "cleanup": [["umount", "/mnt/build"]] }"#,
        )
        .expect("valid");
        let names: Vec<&str> = cfg.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["db", "web", "aaa"]);
        let db = cfg.service("db").expect("db");
        assert_eq!(
            (db.stop_signal, db.stop_timeout),
            (Signal::SIGINT, Duration::from_secs(20))
        );
        let web = cfg.service("web").expect("web");
        assert_eq!(web.ports, vec![8080]);
        assert_eq!(web.env.get("PORT").map(String::as_str), Some("8080"));
        let aaa = cfg.service("aaa").expect("aaa");
        assert_eq!(
            (aaa.stop_scope, aaa.stop_signal),
            (StopScope::Main, Signal::SIGQUIT)
        );
        assert_eq!(
            cfg.cleanup,
            vec![vec!["umount".to_string(), "/mnt/build".to_string()]]
        );
        assert!(cfg.warnings.is_empty());
    }

    #[test]
    fn wrong_types_name_their_path() {
        assert_eq!(
            errors(r#"{"services": {"web": {"cmd": ["x"], "stop_timeout_ms": "10s"}}}"#),
            ["services.web.stop_timeout_ms: expected an integer, found \"10s\""]
        );
    }

    #[test]
    fn every_error_is_reported() {
        let errs = errors(
            r#"{"sockett": "/x", "services": {"a": {"cmd": "sleep 1", "restart": "sometimes"},
                "b": {"cmd": [], "ports": [0, 70000], "match": ["x"]}, "bad name": {"cmd": ["x"]}}}"#,
        );
        assert_eq!(
            errs,
            [
                "sockett: unknown key (did you mean \"socket\"?)",
                "services.a.cmd: expected an array of strings (argv, no shell), found \"sleep 1\"; write [\"sh\", \"-c\", \"sleep 1\"] to use a shell",
                "services.a.restart: expected one of \"always\", \"on-failure\", \"never\", found \"sometimes\"",
                "services.b.cmd: expected at least the program name",
                "services.b.ports[0]: expected a TCP port number from 1 to 65535, found 0",
                "services.b.ports[1]: expected a TCP port number from 1 to 65535, found 70000",
                "services.b.match[0]: \"x\" is too short: a match string needs at least 3 characters, or it would sweep unrelated processes",
                "services[\"bad name\"]: invalid service name \"bad name\": use up to 64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit",
            ]
        );
    }

    #[test]
    fn unknown_dependency_and_cycles() {
        assert_eq!(
            errors(
                r#"{"services": {"db": {"cmd": ["x"]}, "web": {"cmd": ["x"], "after": ["dbb"]}}}"#
            ),
            ["services.web.after[0]: unknown service \"dbb\" (did you mean \"db\"?)"]
        );
        assert_eq!(
            errors(
                r#"{"services": {"a": {"cmd": ["x"], "after": ["c"]}, "b": {"cmd": ["x"], "after": ["a"]}, "c": {"cmd": ["x"], "after": ["b"]}, "d": {"cmd": ["x"]}}}"#
            ),
            ["services.a.after: dependency cycle: a → c → b → a"]
        );
        assert_eq!(
            errors(r#"{"services": {"a": {"cmd": ["x"], "after": ["a"]}}}"#),
            ["services.a.after: dependency cycle: a → a"]
        );
    }

    #[test]
    fn depending_on_a_service_with_errors_is_not_an_unknown_dependency() {
        assert_eq!(
            errors(
                r#"{"services": {"web": {"cmd": "x"}, "proxy": {"cmd": ["x"], "after": ["web", "wbe"]}}}"#
            ),
            [
                "services.web.cmd: expected an array of strings (argv, no shell), found \"x\"; write [\"sh\", \"-c\", \"x\"] to use a shell",
                "services.proxy.after[1]: unknown service \"wbe\" (did you mean \"web\"?)",
            ]
        );
    }

    #[test]
    fn limits_cap_with_warnings_and_reject_nonsense() {
        let cfg = parse(r#"{"shutdown_timeout_ms": 60000, "services": {"a": {"cmd": ["x"], "stop_timeout_ms": 45000}}}"#)
            .expect("valid");
        assert_eq!(cfg.shutdown_timeout, MAX_SHUTDOWN_TIMEOUT);
        assert_eq!(cfg.services[0].stop_timeout, MAX_STOP_TIMEOUT);
        assert_eq!(cfg.warnings.len(), 2, "{:?}", cfg.warnings);
        assert_eq!(
            errors(r#"{"shutdown_timeout_ms": 5}"#),
            ["shutdown_timeout_ms: shutdown timeout 5 ms is below the minimum of 100 ms"]
        );
        assert_eq!(
            errors(r#"{"services": {"a": {"cmd": ["x"], "stop_signal": "STOP"}}}"#),
            [
                "services.a.stop_signal: a job-control stop signal would freeze the service, not stop it; use TERM, INT, QUIT or HUP"
            ]
        );
        assert_eq!(
            errors(r#"{"services": {"a": {"cmd": ["x"], "stop_signal": "TERMINATE"}}}"#),
            [
                "services.a.stop_signal: unknown signal name \"TERMINATE\" (use a name such as TERM or a number)"
            ]
        );
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        assert_eq!(
            errors("{\n  \"services\": {,}\n}"),
            ["invalid JSON at line 2 column 16: key must be a string"]
        );
        assert_eq!(errors("[]"), ["expected an object, found an array"]);
    }

    #[test]
    fn underscore_keys_are_comments_and_grace_is_bounded() {
        let cfg = parse(r#"{"_comment": "hi", "grace_ms": 50000, "shutdown_timeout_ms": 6000, "services": {"_x": 1}}"#)
            .expect("valid");
        assert!(cfg.services.is_empty());
        assert_eq!(cfg.effective_grace(), Duration::from_secs(6));
    }

    #[test]
    fn repeated_keys_are_errors_naming_their_path() {
        assert_eq!(
            errors(
                r#"{"services": {"a": {"cmd": ["x"]}, "a": {"cmd": ["y"]}, "b": {"cmd": ["x"], "env": {"K": "1", "K": "2"}}}, "grace_ms": 1, "grace_ms": 2}"#
            ),
            [
                "services.a: defined twice in the same object; keep only one (reapd does not pick one for you)",
                "services.b.env.K: defined twice in the same object; keep only one (reapd does not pick one for you)",
                "grace_ms: defined twice in the same object; keep only one (reapd does not pick one for you)",
            ]
        );
    }

    #[test]
    fn a_long_chain_is_ordered_in_linear_time_and_a_long_cycle_is_named() {
        let n = 10_000;
        let chain = |cyclic: bool| {
            let services: Map<String, Value> = (0..n)
                .map(|i| {
                    let after = match (i, cyclic) {
                        (0, false) => vec![],
                        (0, true) => vec![format!("s{:05}", n - 1)],
                        _ => vec![format!("s{:05}", i - 1)],
                    };
                    (
                        format!("s{i:05}"),
                        serde_json::json!({ "cmd": ["x"], "after": after }),
                    )
                })
                .collect();
            serde_json::json!({ "services": services }).to_string()
        };
        let cfg = parse(&chain(false)).expect("valid");
        assert_eq!(cfg.services.len(), n);
        assert!(
            cfg.services
                .iter()
                .enumerate()
                .all(|(i, s)| s.name == format!("s{i:05}"))
        );
        let errs = errors(&chain(true));
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with(
                "services.s00000.after: dependency cycle: s00000 → s09999 → s09998 → "
            ),
            "{}",
            &errs[0][..200]
        );
        assert!(errs[0].ends_with("s00001 → s00000"));
    }

    #[test]
    fn long_names_are_clipped_in_messages_and_suggestions_are_bounded() {
        let long = "x".repeat(60_000);
        let errs = errors(&format!(
            r#"{{"services": {{"a": {{"cmd": ["x"], "after": ["{long}"]}}, "b": {{"cmd": ["x"], "restart": "{long}"}}}}}}"#
        ));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().all(|e| e.len() < 300), "{errs:?}");
        // Every unknown dependency is reported, the first MAX_HINTS with a suggestion.
        let services: Map<String, Value> = (0..500)
            .map(|i| {
                (
                    format!("s{i:03}"),
                    serde_json::json!({ "cmd": ["x"], "after": [format!("t{i:03}")] }),
                )
            })
            .collect();
        let errs = errors(&serde_json::json!({ "services": services }).to_string());
        assert_eq!(errs.len(), 500);
        assert_eq!(
            errs.iter().filter(|e| e.contains("did you mean")).count(),
            MAX_HINTS
        );
    }

    #[test]
    fn missing_cmd_says_what_to_write() {
        assert_eq!(
            errors(r#"{"services": {"a": {"after": []}}}"#),
            [
                "services.a: missing required key \"cmd\" (the program and its arguments, e.g. [\"sleep\", \"60\"])"
            ]
        );
    }
}

//! Reading the file: the parser's context (errors with their JSON path, warnings, a bounded
//! number of suggestions), the top level, and the typed helpers every key uses.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::wire::cli::socket_path_problem;
pub use crate::wire::json::join;
use crate::wire::json::{parse_strict, without_position};
use crate::wire::text::{did_you_mean, quoted};

use super::service::check_name;
use super::*;

/// Parses and validates a config file's text. On failure returns every error found.
pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    let (root, repeated) = parse_strict(text, "").map_err(|e| {
        vec![ConfigError {
            path: String::new(),
            message: format!(
                "invalid JSON at line {} column {}: {}",
                e.line(),
                e.column().max(1),
                without_position(&e)
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

#[derive(Default)]
pub(super) struct Cx {
    pub(super) errors: Vec<ConfigError>,
    pub(super) warnings: Vec<String>,
    /// Suggestions made so far (see [`MAX_HINTS`]).
    pub(super) hints: usize,
}

impl Cx {
    pub(super) fn err(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// A "did you mean" for `word`, while the file's budget of suggestions lasts.
    pub(super) fn hint<'a>(
        &mut self,
        word: &str,
        known: impl IntoIterator<Item = &'a str>,
    ) -> String {
        if self.hints >= MAX_HINTS {
            return String::new();
        }
        self.hints += 1;
        did_you_mean(word, known)
    }

    pub(super) fn config(&mut self, root: &Value) -> Config {
        let mut cfg = Config::default();
        let Some(top) = self.object("", root) else {
            return cfg;
        };
        self.known_keys("", top, TOP_KEYS);
        if let Some(v) = top.get("socket")
            && let Some(s) = self.string("socket", v)
        {
            if let Some(problem) = socket_path_problem(s.len()) {
                self.err("socket", format!("path is {problem}"));
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
        if let Some(v) = top.get("cgroups")
            && let Some(s) = self.string("cgroups", v)
        {
            match CgroupMode::parse(s) {
                Some(m) => cfg.cgroups = m,
                None => {
                    let hint = self.hint(s, CgroupMode::NAMES.iter().copied());
                    self.err(
                        "cgroups",
                        format!("unknown mode {s:?}: expected auto, off or required{hint}"),
                    );
                }
            }
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
            self.manual_dependencies(&cfg.services);
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

    pub(super) fn object<'a>(
        &mut self,
        path: &str,
        v: &'a Value,
    ) -> Option<&'a Map<String, Value>> {
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

    pub(super) fn array<'a>(&mut self, path: &str, v: &'a Value) -> Option<&'a Vec<Value>> {
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

    pub(super) fn string<'a>(&mut self, path: &str, v: &'a Value) -> Option<&'a str> {
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

    pub(super) fn string_list(&mut self, path: &str, v: &Value) -> Option<Vec<String>> {
        let list = self.array(path, v)?;
        let mut out = Vec::new();
        for (i, item) in list.iter().enumerate() {
            if let Some(s) = self.string(&format!("{path}[{i}]"), item) {
                out.push(s.to_string());
            }
        }
        Some(out)
    }

    pub(super) fn argv(&mut self, path: &str, v: &Value) -> Option<Vec<String>> {
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

    pub(super) fn millis(&mut self, path: &str, v: &Value) -> Option<u64> {
        match v.as_u64() {
            Some(n) => Some(n),
            None => {
                self.err(path, format!("expected an integer, found {}", describe(v)));
                None
            }
        }
    }

    pub(super) fn known_keys(&mut self, path: &str, obj: &Map<String, Value>, known: &[&str]) {
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

/// A short description of a JSON value for error messages: the value itself for scalars.
pub(super) fn describe(v: &Value) -> String {
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

//! One service's keys: each checked, defaulted and reported by its JSON path.

use std::path::PathBuf;

use nix::sys::signal::Signal;
use serde_json::Value;

pub use crate::wire::json::join;
use crate::wire::signal_names::parse_signal;
use crate::wire::text::quoted;

use super::parse::{Cx, describe};
use super::*;

impl Cx {
    pub(super) fn service(&mut self, path: &str, name: &str, v: &Value) -> Option<ServiceSpec> {
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
                    "main-first" => StopScope::MainFirst,
                    other => {
                        self.err(
                            &p,
                            format!(
                                "expected \"tree\", \"main\" or \"main-first\", found {}",
                                quoted(other)
                            ),
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
        self.run_keys(path, obj, &mut spec);
        spec.launch = self.launch(path, obj);
        (self.errors.len() == before).then_some(spec)
    }
}

pub(super) fn check_name(name: &str) -> Result<(), String> {
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

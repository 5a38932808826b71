//! How a service's process is launched beyond its command: where its output goes (`log`), who
//! it runs as (`user`, `group`, `groups`, `umask`), its resource limits (`limits`) and the file
//! its environment is read from (`env_file`).
//!
//! Owns: the schema and validation of these keys and their types, which the edge applies.
//! Must never: look a name up (ids are numeric: a static binary cannot load NSS modules) or read
//! the env file (the edge reads it at load; `wire::env_file` parses its text).

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::wire::json::join;
use crate::wire::text::quoted;

use super::parse::{Cx, describe};

/// What becomes of a service's standard output and error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogMode {
    /// The service writes to reapd's own stdout and stderr (as s6 and runit expect).
    #[default]
    Inherit,
    /// reapd reads both through pipes and writes whole lines as `name | line`.
    Prefix,
    /// As `Prefix`, each line led by the UTC time it was read (`12:00:01.234 name | line`).
    PrefixTime,
}

impl LogMode {
    /// The spelling in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogMode::Inherit => "inherit",
            LogMode::Prefix => "prefix",
            LogMode::PrefixTime => "prefix-time",
        }
    }

    /// Output goes through reapd.
    pub fn piped(self) -> bool {
        self != LogMode::Inherit
    }
}

/// A resource limit a service may set (`setrlimit(2)`), by its config name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    /// `as`: address space, bytes.
    As,
    /// `core`: core file size, bytes.
    Core,
    /// `cpu`: CPU time, seconds.
    Cpu,
    /// `data`: data segment, bytes.
    Data,
    /// `fsize`: file size, bytes.
    Fsize,
    /// `locks`: file locks.
    Locks,
    /// `memlock`: locked memory, bytes.
    Memlock,
    /// `msgqueue`: POSIX message queues, bytes.
    Msgqueue,
    /// `nice`: ceiling of the nice value (20 - nice).
    Nice,
    /// `nofile`: open files.
    Nofile,
    /// `nproc`: processes of the user.
    Nproc,
    /// `rtprio`: real-time priority.
    Rtprio,
    /// `sigpending`: queued signals.
    Sigpending,
    /// `stack`: stack size, bytes.
    Stack,
}

/// Every resource, with its config name.
pub const RESOURCES: &[(&str, Resource)] = &[
    ("as", Resource::As),
    ("core", Resource::Core),
    ("cpu", Resource::Cpu),
    ("data", Resource::Data),
    ("fsize", Resource::Fsize),
    ("locks", Resource::Locks),
    ("memlock", Resource::Memlock),
    ("msgqueue", Resource::Msgqueue),
    ("nice", Resource::Nice),
    ("nofile", Resource::Nofile),
    ("nproc", Resource::Nproc),
    ("rtprio", Resource::Rtprio),
    ("sigpending", Resource::Sigpending),
    ("stack", Resource::Stack),
];

impl Resource {
    /// Its config name.
    pub fn name(self) -> &'static str {
        RESOURCES
            .iter()
            .find(|(_, r)| *r == self)
            .map_or("?", |(n, _)| n)
    }
}

/// One limit: soft and hard, `None` meaning unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Which resource.
    pub resource: Resource,
    /// The soft limit.
    pub soft: Option<u64>,
    /// The hard limit.
    pub hard: Option<u64>,
}

/// Everything about launching a service besides argv, env and cwd.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Launch {
    /// Where its output goes.
    pub log: LogMode,
    /// Numeric user id to run as.
    pub user: Option<u32>,
    /// Numeric group id to run as.
    pub group: Option<u32>,
    /// Supplementary group ids; `None` keeps none when `user` is set, else reapd's own.
    pub groups: Option<Vec<u32>>,
    /// File mode creation mask.
    pub umask: Option<u32>,
    /// Resource limits, in config order.
    pub limits: Vec<Limit>,
    /// Where its environment file is (read at load and merged under `env`).
    pub env_file: Option<PathBuf>,
}

/// Most supplementary groups (the kernel's `NGROUPS_MAX`).
pub const MAX_GROUPS: usize = 65_536;

impl Cx {
    /// Reads the launch keys of one service object.
    pub(super) fn launch(&mut self, path: &str, obj: &Map<String, Value>) -> Launch {
        let mut l = Launch::default();
        if let Some(v) = obj.get("log") {
            let p = join(path, "log");
            if let Some(s) = self.string(&p, v) {
                l.log = match s {
                    "inherit" => LogMode::Inherit,
                    "prefix" => LogMode::Prefix,
                    "prefix-time" => LogMode::PrefixTime,
                    other => {
                        self.err(
                            &p,
                            format!(
                                "expected \"inherit\", \"prefix\" or \"prefix-time\", found {}",
                                quoted(other)
                            ),
                        );
                        LogMode::Inherit
                    }
                };
            }
        }
        if let Some(v) = obj.get("user") {
            l.user = self.id(&join(path, "user"), v);
        }
        if let Some(v) = obj.get("group") {
            l.group = self.id(&join(path, "group"), v);
        }
        if let Some(v) = obj.get("groups") {
            let p = join(path, "groups");
            if let Some(list) = self.array(&p, v) {
                if list.len() > MAX_GROUPS {
                    self.err(&p, format!("at most {MAX_GROUPS} supplementary groups"));
                } else {
                    let ids: Vec<Option<u32>> = list
                        .iter()
                        .enumerate()
                        .map(|(i, item)| self.id(&format!("{p}[{i}]"), item))
                        .collect();
                    l.groups = ids.into_iter().collect();
                }
            }
        }
        if let Some(v) = obj.get("umask") {
            l.umask = self.umask(&join(path, "umask"), v);
        }
        if let Some(v) = obj.get("limits") {
            let p = join(path, "limits");
            if let Some(map) = self.object(&p, v) {
                for (key, val) in map {
                    let kp = join(&p, key);
                    let Some(&(_, resource)) = RESOURCES.iter().find(|(n, _)| n == key) else {
                        let names: Vec<&str> = RESOURCES.iter().map(|(n, _)| *n).collect();
                        self.err(
                            &kp,
                            format!(
                                "unknown limit {}; limits: {}",
                                quoted(key),
                                names.join(", ")
                            ),
                        );
                        continue;
                    };
                    if let Some((soft, hard)) = self.limit(&kp, val) {
                        l.limits.push(Limit {
                            resource,
                            soft,
                            hard,
                        });
                    }
                }
            }
        }
        if let Some(v) = obj.get("env_file") {
            let p = join(path, "env_file");
            if let Some(s) = self.string(&p, v) {
                l.env_file = Some(PathBuf::from(s));
            }
        }
        l
    }

    /// A numeric user or group id.
    fn id(&mut self, path: &str, v: &Value) -> Option<u32> {
        match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n != u32::MAX => Some(n),
            _ => {
                let hint = if v.is_string() {
                    " (ids are numeric: reapd does not look names up, since a static binary \
                     cannot; find the number with `id -u NAME` or in /etc/passwd)"
                } else {
                    ""
                };
                self.err(
                    path,
                    format!(
                        "expected a numeric id from 0 to 4294967294, found {}{hint}",
                        describe(v)
                    ),
                );
                None
            }
        }
    }

    /// A umask: an octal string (`"027"`) or a number (its value, so 23 is `"027"`).
    fn umask(&mut self, path: &str, v: &Value) -> Option<u32> {
        let parsed = match v {
            Value::String(s)
                if !s.is_empty()
                    && s.len() <= 4
                    && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) =>
            {
                u32::from_str_radix(s, 8).ok()
            }
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            _ => None,
        };
        match parsed {
            Some(m) if m <= 0o777 => Some(m),
            _ => {
                self.err(
                    path,
                    format!(
                        "expected an octal string from \"000\" to \"777\" such as \"027\", found {}",
                        describe(v)
                    ),
                );
                None
            }
        }
    }

    /// A limit: a value for both soft and hard, or `{"soft": .., "hard": ..}`; each value a
    /// number or `"unlimited"`.
    fn limit(&mut self, path: &str, v: &Value) -> Option<(Option<u64>, Option<u64>)> {
        if let Value::Object(map) = v {
            self.known_keys(path, map, &["soft", "hard"]);
            let soft = map
                .get("soft")
                .map(|s| self.limit_value(&join(path, "soft"), s));
            let hard = map
                .get("hard")
                .map(|h| self.limit_value(&join(path, "hard"), h));
            let (Some(soft), Some(hard)) = (soft, hard) else {
                self.err(path, "needs both \"soft\" and \"hard\"");
                return None;
            };
            let (soft, hard) = (soft?, hard?);
            let above = match (soft, hard) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(s), Some(h)) => s > h,
            };
            if above {
                self.err(path, "the soft limit cannot be above the hard limit");
                return None;
            }
            return Some((soft, hard));
        }
        let both = self.limit_value(path, v)?;
        Some((both, both))
    }

    fn limit_value(&mut self, path: &str, v: &Value) -> Option<Option<u64>> {
        match v {
            Value::String(s) if s == "unlimited" => Some(None),
            // RLIM_INFINITY is all ones: a number that large could only mean "unlimited".
            Value::Number(n) if n.as_u64().is_some_and(|n| n < u64::MAX) => Some(n.as_u64()),
            other => {
                self.err(
                    path,
                    format!(
                        "expected a non-negative number or \"unlimited\", found {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::config::parse;

    fn launch(service: &str) -> Result<Launch, Vec<String>> {
        let text = format!(r#"{{"services":{{"web":{{"cmd":["x"],{service}}}}}}}"#);
        parse(&text)
            .map(|c| c.services[0].launch.clone())
            .map_err(|e| e.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn every_key_reads_as_meant() {
        let l = launch(
            r#""log":"prefix-time","user":65534,"group":65534,"groups":[100,5],"umask":"027",
            "limits":{"nofile":{"soft":1024,"hard":4096},"core":"unlimited","nproc":50},
            "env_file":"web.env""#,
        )
        .unwrap();
        assert_eq!(l.log, LogMode::PrefixTime);
        assert_eq!((l.user, l.group), (Some(65534), Some(65534)));
        assert_eq!(l.groups, Some(vec![100, 5]));
        assert_eq!(l.umask, Some(0o027));
        assert_eq!(
            l.limits,
            [
                Limit {
                    resource: Resource::Core,
                    soft: None,
                    hard: None
                },
                Limit {
                    resource: Resource::Nofile,
                    soft: Some(1024),
                    hard: Some(4096)
                },
                Limit {
                    resource: Resource::Nproc,
                    soft: Some(50),
                    hard: Some(50)
                },
            ]
        );
        assert_eq!(l.env_file, Some(PathBuf::from("web.env")));
        assert_eq!(launch(r#""umask":18"#).unwrap().umask, Some(0o22));
        assert_eq!(launch(r#""log":"inherit""#).unwrap(), Launch::default());
    }

    #[test]
    fn mistakes_are_named_by_path() {
        let e = launch(r#""log":"syslog""#).unwrap_err();
        assert_eq!(
            e,
            [
                "services.web.log: expected \"inherit\", \"prefix\" or \"prefix-time\", found \"syslog\""
            ]
        );
        let e = launch(r#""user":"www-data""#).unwrap_err();
        assert!(
            e[0].starts_with("services.web.user: expected a numeric id"),
            "{e:?}"
        );
        assert!(e[0].contains("id -u NAME"), "{e:?}");
        let e = launch(r#""groups":[1,-2]"#).unwrap_err();
        assert!(e[0].starts_with("services.web.groups[1]: "), "{e:?}");
        for bad in [r#""888""#, r#""0o27""#, "512", r#""""#] {
            let e = launch(&format!(r#""umask":{bad}"#)).unwrap_err();
            assert!(
                e[0].starts_with("services.web.umask: expected an octal string"),
                "{e:?}"
            );
        }
        let e = launch(r#""limits":{"files":10}"#).unwrap_err();
        assert!(
            e[0].starts_with(
                "services.web.limits.files: unknown limit \"files\"; limits: as, core"
            ),
            "{e:?}"
        );
        let e = launch(r#""limits":{"nofile":{"soft":10,"hard":5}}"#).unwrap_err();
        assert_eq!(
            e,
            ["services.web.limits.nofile: the soft limit cannot be above the hard limit"]
        );
        let e = launch(r#""limits":{"nofile":{"soft":"unlimited","hard":5}}"#).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        let e = launch(r#""limits":{"nofile":{"soft":10}}"#).unwrap_err();
        assert_eq!(
            e,
            ["services.web.limits.nofile: needs both \"soft\" and \"hard\""]
        );
        let e = launch(r#""limits":{"core":-1}"#).unwrap_err();
        assert!(
            e[0].contains("expected a non-negative number or \"unlimited\""),
            "{e:?}"
        );
        let e = launch(r#""env_file":"""#).unwrap_err();
        assert_eq!(e, ["services.web.env_file: expected a non-empty string"]);
    }
}

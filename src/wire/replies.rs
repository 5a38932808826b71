//! Replies: what each control command answers, as typed values.
//!
//! Owns: one type per successful reply ([`Reply`]), the error reply ([`ErrorReply`] with its
//! [`ErrorCode`]), and their encoding as one line with `ok` (and the request's `id`) first, so a
//! person reading socat output sees the verdict before the details. `reapd ctl` reads the same
//! types back.
//! Must never: add a field whose meaning a script could not rely on, or encode two replies for one
//! request: one request line gets exactly one reply line.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::wire::events::ExitStatus;
use crate::wire::protocol::RequestId;

/// Machine-readable error codes in `{"ok": false, "code": ...}` replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line is not a valid request (bad JSON, missing or wrong fields).
    BadRequest,
    /// The line exceeds the longest request line; the connection is closed after this reply.
    LineTooLong,
    /// `cmd` names no known command.
    UnknownCommand,
    /// `name` names no configured service.
    NoSuchService,
    /// A mutating command arrived after shutdown began, or the request could not finish in time.
    ShuttingDown,
    /// The service has no running main process.
    NotRunning,
    /// `reload` found errors in the config file; the running set is unchanged.
    ConfigError,
    /// Too many clients are connected.
    TooManyConnections,
    /// The operation failed (e.g. a service could not be started).
    Failed,
    /// A later request overrode this one before it could finish (a `stop` while a `start` or
    /// `restart` of the same service waited).
    Superseded,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::BadRequest,
        ErrorCode::LineTooLong,
        ErrorCode::UnknownCommand,
        ErrorCode::NoSuchService,
        ErrorCode::ShuttingDown,
        ErrorCode::NotRunning,
        ErrorCode::ConfigError,
        ErrorCode::TooManyConnections,
        ErrorCode::Failed,
        ErrorCode::Superseded,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::LineTooLong => "line_too_long",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::NoSuchService => "no_such_service",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::NotRunning => "not_running",
            ErrorCode::ConfigError => "config_error",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::Failed => "failed",
            ErrorCode::Superseded => "superseded",
        }
    }
}

/// `{"ok": false, "code": ..., "error": ...}`, with the config errors of a refused reload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What went wrong and what to do, for people.
    pub error: String,
    /// A refused reload's errors, each with its JSON path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl ErrorReply {
    /// An error with a message.
    pub fn new(code: ErrorCode, error: impl Into<String>) -> ErrorReply {
        ErrorReply {
            code,
            error: error.into(),
            errors: Vec::new(),
        }
    }
}

/// Services by state, in `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCounts {
    /// Every configured service.
    pub total: usize,
    /// How many are in each state.
    pub by_state: BTreeMap<String, usize>,
}

/// `status`: the daemon in a few fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// `running`, `draining`, `killing`, `cleaned_up`.
    pub state: String,
    /// reapd's pid.
    pub pid: i32,
    /// reapd's version.
    pub version: String,
    /// `config` or `single`.
    pub mode: String,
    /// Since start-up.
    pub uptime_ms: u64,
    /// Services by state.
    pub services: ServiceCounts,
    /// How services' processes are found and stopped, and why: `cgroup v2 at DIR`, or
    /// `/proc walk: REASON`.
    #[serde(default)]
    pub containment: String,
    /// True when each service has its own cgroup.
    #[serde(default)]
    pub cgroups: bool,
    /// Per service, what its cgroup has used (cgroups only; read for this reply).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage: BTreeMap<String, Usage>,
}

/// What a service's cgroup has used, read when asked (`null` where the file does not exist: the
/// controller is not enabled there).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// `memory.current`, in bytes.
    pub memory_bytes: Option<u64>,
    /// `usage_usec` of `cpu.stat`: CPU time of every process the cgroup ever held.
    pub cpu_usec: Option<u64>,
    /// `pids.current`.
    pub pids: Option<u64>,
}

/// One row of `list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRow {
    /// Service name.
    pub name: String,
    /// `waiting`, `starting`, `running`, `backoff`, `stopping`, `stopped`, `exited`, `done`,
    /// `failed`.
    pub state: String,
    /// Main process, while there is one.
    pub pid: Option<i32>,
    /// Restarts so far.
    pub restarts: u32,
    /// How the main process last ended.
    pub last_exit: Option<ExitStatus>,
    /// Since the main process started, while it runs.
    pub uptime_ms: Option<u64>,
    /// It runs and its readiness check passed (a one-shot: it is done).
    #[serde(default)]
    pub ready: bool,
    /// Why it is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// Its health check's verdict (`starting`, `healthy`, `failing`, `unhealthy`), when it has one
    /// and runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// What the last readiness or health attempt said (`ok`, or why it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<String>,
    /// What its cgroup has used (cgroups only; read for this reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// Every successful reply. Each serialises as its own fields next to `"ok": true`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    /// `ping`.
    Pong {
        /// Always true.
        pong: bool,
    },
    /// `status`.
    Status(StatusReply),
    /// `list`.
    List {
        /// Every service, in start order.
        services: Vec<ServiceRow>,
    },
    /// `start` and `restart`, once the service runs; `stop`, once it is stopped.
    Service {
        /// Service name.
        name: String,
        /// Its state now.
        state: String,
        /// Its main process, when it runs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<i32>,
        /// `stop`: `exited`, `killed` or `idle`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        how: Option<String>,
        /// `stop`: how long the stop took.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        elapsed_ms: Option<u64>,
    },
    /// `signal`.
    SignalSent {
        /// Service name.
        name: String,
        /// Its main process.
        pid: i32,
        /// The signal sent.
        signal: String,
    },
    /// `reload`.
    Reloaded {
        /// New services.
        added: Vec<String>,
        /// Services being stopped and removed.
        removed: Vec<String>,
        /// Services restarted with their new definition.
        changed: Vec<String>,
    },
    /// `watch`: events follow, one per line.
    Watching {
        /// Always true.
        watching: bool,
        /// The daemon's state now.
        state: String,
    },
    /// `shutdown`.
    ShuttingDown {
        /// The daemon's state now (`draining`, or later).
        state: String,
    },
    /// `ready`: whether every service that should run is ready (one-shots: done).
    Ready {
        /// All of them are.
        ready: bool,
        /// Those that are not, in start order.
        not_ready: Vec<String>,
    },
    /// `logs`: the service's last lines, oldest first (with `follow`, new lines follow, one
    /// per line, as `wire::loglines::FollowedLine`).
    Logs {
        /// The service.
        logs: String,
        /// Its output is piped through reapd (`log` is not `"inherit"`); otherwise there are
        /// never any lines.
        captured: bool,
        /// The lines.
        lines: Vec<crate::wire::loglines::LogLine>,
    },
}

/// An `{"ok": true, ...}` reply line (newline included).
pub fn ok_line(id: Option<&RequestId>, reply: &Reply) -> String {
    reply_line(true, id, serde_json::to_value(reply).unwrap_or(Value::Null))
}

/// An `{"ok": false, "code": ..., "error": ...}` reply line (newline included).
pub fn error_line(id: Option<&RequestId>, err: &ErrorReply) -> String {
    reply_line(false, id, serde_json::to_value(err).unwrap_or(Value::Null))
}

/// An error reply line with just a code and a message.
pub fn reply_err(id: Option<&RequestId>, code: ErrorCode, message: &str) -> String {
    error_line(id, &ErrorReply::new(code, message))
}

/// `{"ok":…,"id":…,` then the other fields: `ok` leads so a person reading socat output sees the
/// verdict first (serde_json would sort it among the rest).
fn reply_line(ok: bool, id: Option<&RequestId>, fields: Value) -> String {
    let mut out = format!("{{\"ok\":{ok}");
    if let Some(id) = id {
        out.push_str(",\"id\":");
        out.push_str(id.as_json());
    }
    if let Value::Object(f) = fields {
        let rest: Map<String, Value> = f
            .into_iter()
            .filter(|(k, _)| k != "ok" && k != "id")
            .collect();
        let rest = Value::Object(rest).to_string();
        if let Some(inner) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}'))
            && !inner.is_empty()
        {
            out.push(',');
            out.push_str(inner);
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_lead_with_ok_and_the_id() {
        let id = RequestId::from_json("\"a\"");
        assert_eq!(
            ok_line(id.as_ref(), &Reply::Pong { pong: true }),
            "{\"ok\":true,\"id\":\"a\",\"pong\":true}\n"
        );
        assert_eq!(
            error_line(
                None,
                &ErrorReply::new(ErrorCode::NoSuchService, "no service \"x\"")
            ),
            "{\"ok\":false,\"code\":\"no_such_service\",\"error\":\"no service \\\"x\\\"\"}\n"
        );
        let stopped = Reply::Service {
            name: "web".into(),
            state: "stopped".into(),
            pid: None,
            how: Some("exited".into()),
            elapsed_ms: Some(12),
        };
        assert_eq!(
            ok_line(None, &stopped),
            "{\"ok\":true,\"elapsed_ms\":12,\"how\":\"exited\",\"name\":\"web\",\"state\":\"stopped\"}\n"
        );
    }

    #[test]
    fn error_codes_spell_as_their_wire_names() {
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_value(code).expect("json"),
                Value::String(code.as_str().into())
            );
        }
    }
}

//! The control protocol: newline-delimited JSON requests, replies and events.
//!
//! Owns: request parsing and validation (with the error codes a client sees), reply and event
//! encoding, and [`LineBuf`], the framing that turns a byte stream into bounded lines.
//! Must never: touch a socket. `control.rs` moves bytes; this module only decides what they mean.
//! One request line always gets exactly one reply line (`watch` then streams events).

#![forbid(unsafe_code)]

use nix::sys::signal::Signal;
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::wire::commands::{self, ArgKind, Cmd, CommandSpec};
use crate::wire::json::{RawObject, join, parse_raw_object, parse_raw_value, without_position};
use crate::wire::replies::ErrorCode;
use crate::wire::signal_names::parse_signal;
use crate::wire::text::{clip, did_you_mean, quoted};

/// Longest accepted request line, newline excluded.
pub const MAX_LINE: usize = 64 * 1024;

/// A parsed request. Its commands, their arguments and which of them mutate are declared in
/// `wire::commands`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Liveness check.
    Ping,
    /// Daemon summary.
    Status,
    /// Per-service table.
    List,
    /// Start a stopped service.
    Start {
        /// Service name.
        name: String,
    },
    /// Stop a service (the same procedure as shutdown uses); replies once it is stopped.
    Stop {
        /// Service name.
        name: String,
    },
    /// Stop then start a service; replies once it runs again.
    Restart {
        /// Service name.
        name: String,
    },
    /// Send a signal to a service's main process.
    Signal {
        /// Service name.
        name: String,
        /// Signal to send.
        signal: Signal,
    },
    /// Re-read the config file.
    Reload,
    /// Shut the daemon down.
    Shutdown,
    /// Turn this connection into an event stream.
    Watch,
    /// Whether every service that should run is ready.
    Ready,
    /// Answer once every service that should run is ready.
    Wait,
    /// A service's last lines of output; with `follow`, its new lines as they come.
    Logs {
        /// Service name.
        name: String,
        /// How many of the last lines (`None`: the default).
        lines: Option<usize>,
        /// Keep sending new lines until the client leaves or reapd exits.
        follow: bool,
    },
}

impl Request {
    /// Its command.
    pub fn cmd(&self) -> Cmd {
        match self {
            Request::Ping => Cmd::Ping,
            Request::Status => Cmd::Status,
            Request::List => Cmd::List,
            Request::Start { .. } => Cmd::Start,
            Request::Stop { .. } => Cmd::Stop,
            Request::Restart { .. } => Cmd::Restart,
            Request::Signal { .. } => Cmd::Signal,
            Request::Reload => Cmd::Reload,
            Request::Shutdown => Cmd::Shutdown,
            Request::Watch => Cmd::Watch,
            Request::Ready => Cmd::Ready,
            Request::Wait => Cmd::Wait,
            Request::Logs { .. } => Cmd::Logs,
        }
    }

    /// Commands that change what runs; refused once shutdown has begun.
    pub fn is_mutating(&self) -> bool {
        self.cmd().spec().mutates
    }
}

/// A request's `id`: any JSON value, kept as the exact text the client sent, so that it comes
/// back byte for byte (a 30-digit integer as written, an object with its spacing and key order).
#[derive(Clone, Debug)]
pub struct RequestId(Box<RawValue>);

impl RequestId {
    /// The id's JSON text, exactly as sent.
    pub fn as_json(&self) -> &str {
        self.0.get()
    }

    /// An id from JSON text, if it is one valid JSON value.
    pub fn from_json(text: &str) -> Option<RequestId> {
        RawValue::from_string(text.to_string()).ok().map(RequestId)
    }
}

impl PartialEq for RequestId {
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json()
    }
}

impl Eq for RequestId {}

/// A request with the optional `id` the client wants echoed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Echoed verbatim in the reply.
    pub id: Option<RequestId>,
    /// The request.
    pub request: Request,
}

/// Why a line was not accepted as a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    /// The request's `id`, when it could be read.
    pub id: Option<RequestId>,
    /// Error code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

/// Parses one request line (without its newline).
///
/// Strict and lossless: a key given twice (at any depth) is an error naming its path, the `id`
/// is kept as sent, and an `id` read before a syntax error is still echoed in the error reply.
/// Every message repeats at most a clipped part of what the client sent.
pub fn parse_request(line: &[u8]) -> Result<Envelope, RequestError> {
    let bad = |id: Option<RequestId>, message: String| RequestError {
        id,
        code: ErrorCode::BadRequest,
        message,
    };
    let text = std::str::from_utf8(line).map_err(|e| {
        bad(
            None,
            format!("request is not valid UTF-8 (byte {})", e.valid_up_to() + 1),
        )
    })?;
    let text = text.trim_end_matches('\r');
    let not_an_object = || {
        bad(
            None,
            "a request must be a JSON object such as {\"cmd\": \"ping\"}".into(),
        )
    };
    if !text.trim_start().starts_with('{') {
        // Tell bad JSON from good JSON that is not an object, as for any other line.
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => not_an_object(),
            Err(e) => bad(None, invalid_json(&e)),
        });
    }
    let mut obj = RawObject::default();
    let parsed = parse_raw_object(text, &mut obj);
    let id = obj.get("id").map(|raw| RequestId(raw.to_owned()));
    if let Err(e) = parsed {
        return Err(bad(id, invalid_json(&e)));
    }
    if let Some(path) = obj.dups.first() {
        return Err(bad(id, defined_twice(path)));
    }
    let mut fields: Vec<(&str, Value)> = Vec::with_capacity(obj.fields.len());
    for (key, raw) in &obj.fields {
        let (value, dups) = parse_raw_value(raw, &join("", key)).map_err(|e| bad(id.clone(), e))?;
        if let Some(path) = dups.first() {
            return Err(bad(id, defined_twice(path)));
        }
        fields.push((key, value));
    }
    let get = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
    let cmd = match get("cmd") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(bad(
                id,
                format!("\"cmd\" must be a string, found {}", shown(other)),
            ));
        }
        None => {
            return Err(bad(
                id,
                format!("missing \"cmd\"; one of: {}", commands::name_list()),
            ));
        }
    };
    let Some(spec) = CommandSpec::find(cmd) else {
        return Err(RequestError {
            id,
            code: ErrorCode::UnknownCommand,
            message: format!(
                "unknown command {}{}; commands: {}",
                quoted(cmd),
                did_you_mean(cmd, commands::names()),
                commands::name_list()
            ),
        });
    };
    let accepted = || {
        spec.args
            .iter()
            .map(|a| a.kind.field())
            .chain(spec.options().iter().map(|o| o.field))
    };
    for (key, _) in &fields {
        if *key != "cmd" && *key != "id" && !accepted().any(|f| f == *key) {
            let hint = did_you_mean(key, accepted());
            return Err(bad(
                id,
                format!("unknown field {} for {cmd:?}{hint}", quoted(key)),
            ));
        }
    }
    // Each argument is read where the request needs it; the loop above has already refused any
    // field the table does not list for this command.
    let arg = |kind: ArgKind| -> Result<&Value, RequestError> {
        let what = spec.arg(kind).map_or("", |a| a.what);
        get(kind.field()).ok_or_else(|| {
            bad(
                id.clone(),
                format!("{cmd:?} needs {:?}: {what}", kind.field()),
            )
        })
    };
    let name = || -> Result<String, RequestError> {
        match arg(ArgKind::Service)? {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            other => Err(bad(
                id.clone(),
                format!(
                    "\"name\" must be a non-empty string, found {}",
                    shown(other)
                ),
            )),
        }
    };
    let signal = || -> Result<Signal, RequestError> {
        match arg(ArgKind::Signal)? {
            Value::String(s) => parse_signal(s),
            Value::Number(n) => parse_signal(&n.to_string()),
            other => Err(format!(
                "\"signal\" must be a name or a number, found {}",
                shown(other)
            )),
        }
        .map_err(|e| bad(id.clone(), e))
    };
    let request = match spec.cmd {
        Cmd::Ping => Request::Ping,
        Cmd::Status => Request::Status,
        Cmd::List => Request::List,
        Cmd::Reload => Request::Reload,
        Cmd::Shutdown => Request::Shutdown,
        Cmd::Watch => Request::Watch,
        Cmd::Ready => Request::Ready,
        Cmd::Wait => Request::Wait,
        Cmd::Logs => Request::Logs {
            name: name()?,
            lines: match get("lines") {
                None => None,
                Some(v) => Some(
                    v.as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| {
                            bad(
                                id.clone(),
                                format!(
                                    "\"lines\" must be a non-negative integer, found {}",
                                    shown(v)
                                ),
                            )
                        })?,
                ),
            },
            follow: match get("follow") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(v) => {
                    return Err(bad(
                        id.clone(),
                        format!("\"follow\" must be true or false, found {}", shown(v)),
                    ));
                }
            },
        },
        Cmd::Start => Request::Start { name: name()? },
        Cmd::Stop => Request::Stop { name: name()? },
        Cmd::Restart => Request::Restart { name: name()? },
        Cmd::Signal => Request::Signal {
            name: name()?,
            signal: signal()?,
        },
    };
    Ok(Envelope { id, request })
}

fn invalid_json(e: &serde_json::Error) -> String {
    // serde_json says column 0 for an empty line; columns count from 1.
    format!(
        "invalid JSON at column {}: {}",
        e.column().max(1),
        without_position(e)
    )
}

fn defined_twice(path: &str) -> String {
    format!("{path}: defined twice; a request may give each key only once")
}

/// A JSON value in an error message, clipped.
fn shown(v: &Value) -> String {
    clip(&v.to_string()).into_owned()
}

/// A line that could not be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineTooLong;

/// Accumulates bytes from a stream and hands out complete lines, each at most `max` bytes.
///
/// Handing out a line costs its own length, not the length of what is buffered behind it: the
/// consumed prefix is only moved away when more bytes arrive.
#[derive(Debug)]
pub struct LineBuf {
    buf: Vec<u8>,
    /// Bytes before this offset were handed out already.
    start: usize,
    /// Bytes from `start` on already searched for a newline.
    scanned: usize,
    max: usize,
}

impl LineBuf {
    /// A buffer for lines of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        LineBuf {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            max,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that were not handed out as lines yet.
    pub fn pending(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    /// True when bytes are held that were not searched for a newline yet: another call to
    /// [`LineBuf::next_line`] may produce a line without any new input.
    pub fn has_unscanned(&self) -> bool {
        self.pending() > self.scanned
    }

    /// Gives back the memory of an empty buffer beyond `keep` bytes (after a flood).
    pub fn shrink(&mut self, keep: usize) {
        if self.pending() == 0 {
            self.buf.clear();
            self.start = 0;
            self.scanned = 0;
            self.buf.shrink_to(keep);
        }
    }

    /// The next complete line without its newline, `None` when no full line is buffered, or
    /// `Err` when a line is longer than allowed (the stream cannot be resynchronised).
    pub fn next_line(&mut self) -> Option<Result<Vec<u8>, LineTooLong>> {
        let from = self.start + self.scanned;
        match self
            .buf
            .get(from..)
            .unwrap_or_default()
            .iter()
            .position(|&b| b == b'\n')
        {
            Some(off) => {
                let len = self.scanned + off;
                if len > self.max {
                    return Some(Err(LineTooLong));
                }
                let end = self.start + len;
                let line = self.buf.get(self.start..end).unwrap_or_default().to_vec();
                self.start = end + 1;
                self.scanned = 0;
                if self.start >= self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                Some(Ok(line))
            }
            None if self.pending() > self.max => Some(Err(LineTooLong)),
            None => {
                self.scanned = self.pending();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;

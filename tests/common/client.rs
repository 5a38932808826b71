//! Control-socket clients: one request and its reply, a [`Watcher`] that reads JSON lines with a
//! timeout, `watch` streams, and look-ups in the events a watcher collected. Events are what the
//! tests assert on (man/reapd.8, EVENTS); the log is rendered from them. Must never wait
//! without a bound.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{SOON, wait_until};

/// A connection that reads JSON lines with a timeout.
#[derive(Debug)]
pub struct Watcher {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Watcher {
    pub fn new(stream: UnixStream) -> Watcher {
        let reader = BufReader::new(stream.try_clone().expect("clone stream"));
        Watcher { stream, reader }
    }

    /// Connects to the control socket at `socket`.
    pub fn connect(socket: &Path) -> Result<Watcher, String> {
        UnixStream::connect(socket)
            .map(Watcher::new)
            .map_err(|e| format!("connect {}: {e}", socket.display()))
    }

    pub fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("send");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next line exactly as the daemon wrote it (newline included), or None at EOF or after
    /// `limit`.
    pub fn next_raw(&mut self, limit: Duration) -> Option<String> {
        self.stream.set_read_timeout(Some(limit)).ok()?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    }

    /// The next line as JSON, or None at EOF or after `limit`.
    pub fn next_line(&mut self, limit: Duration) -> Option<Value> {
        serde_json::from_str(&self.next_raw(limit)?).ok()
    }

    /// Reads events until one matches `pred` (returned) or `limit` passes; collects all seen.
    pub fn until(
        &mut self,
        limit: Duration,
        seen: &mut Vec<Value>,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            let left = end
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let v = self.next_line(left)?;
            seen.push(v.clone());
            if pred(&v) {
                return Some(v);
            }
        }
        None
    }

    /// Reads until EOF (or `limit`), returning every line.
    pub fn drain(&mut self, limit: Duration) -> Vec<Value> {
        let mut all = Vec::new();
        let end = Instant::now() + limit;
        while Instant::now() < end {
            match self.next_line(
                end.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ) {
                Some(v) => all.push(v),
                None => break,
            }
        }
        all
    }

    /// True once the peer has closed the connection (read returns EOF).
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(50)));
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// Sends one request line to the control socket at `socket` and returns the reply line exactly
/// as the daemon wrote it.
pub fn request_raw_at(socket: &Path, line: &str) -> Result<String, String> {
    let mut w = Watcher::connect(socket)?;
    w.send(line);
    w.next_raw(SOON)
        .ok_or_else(|| format!("no reply to {line}"))
}

/// Sends one request line to the control socket at `socket` and returns the parsed reply.
pub fn request_at(socket: &Path, line: &str) -> Result<Value, String> {
    let raw = request_raw_at(socket, line)?;
    serde_json::from_str(&raw).map_err(|e| format!("reply {raw:?}: {e}"))
}

/// Waits until a reapd answers `ping` on `socket`.
pub fn wait_ping(socket: &Path, limit: Duration) -> bool {
    wait_until(limit, || {
        request_at(socket, r#"{"cmd":"ping"}"#).is_ok_and(|v| v["pong"] == Value::Bool(true))
    })
}

/// Opens a `watch` stream on `socket` (its first reply checked).
pub fn watch_at(socket: &Path) -> Watcher {
    let mut w = Watcher::connect(socket).unwrap_or_else(|e| panic!("watch: {e}"));
    w.send(r#"{"cmd":"watch"}"#);
    let first = w.next_line(SOON).expect("watch reply");
    assert_eq!(
        (&first["ok"], &first["watching"]),
        (&Value::Bool(true), &Value::Bool(true)),
        "{first}"
    );
    w
}

/// Every event of `kind` in `events`.
pub fn events_of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// The one event of `kind` in `events`; fails the test if there is none or more than one.
pub fn one_event<'a>(events: &'a [Value], kind: &str) -> &'a Value {
    match events_of(events, kind).as_slice() {
        [one] => one,
        other => panic!(
            "expected one {kind} event, got {}: {events:#?}",
            other.len()
        ),
    }
}

/// The final report of a shutdown: the last event, which must be `done`.
pub fn done_event(events: &[Value]) -> &Value {
    let last = events.last().unwrap_or_else(|| panic!("no events at all"));
    assert_eq!(
        last["event"], "done",
        "the stream ends with done: {events:#?}"
    );
    last
}

/// The `service` field of each event of `kind`, in order.
pub fn services_in<'a>(events: &'a [Value], kind: &str) -> Vec<&'a str> {
    events_of(events, kind)
        .iter()
        .filter_map(|e| e["service"].as_str())
        .collect()
}

/// The (state, reason) of each `state` event, in order: `("draining", "SIGTERM")`,
/// `("killing", "second SIGINT")`, ...
pub fn states(events: &[Value]) -> Vec<(&str, &str)> {
    events_of(events, "state")
        .iter()
        .filter_map(|e| Some((e["state"].as_str()?, e["reason"].as_str()?)))
        .collect()
}

/// A client that writes `line` over and over without pause and never reads, until stopped (a
/// hostile client).
#[derive(Debug)]
pub struct Flooder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(UnixStream, usize)>>,
}

impl Flooder {
    pub fn start(socket: &std::path::Path, line: &str) -> Flooder {
        let mut s = UnixStream::connect(socket).expect("connect flooder");
        s.set_write_timeout(Some(Duration::from_millis(50)))
            .expect("write timeout");
        let chunk = format!("{line}\n").repeat(4096).into_bytes();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut sent = 0;
            while !flag.load(Ordering::Relaxed) {
                match s.write(&chunk) {
                    Ok(n) => sent += n,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
            (s, sent)
        });
        Flooder {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops writing; returns the connection and how much was written.
    pub fn finish(mut self) -> (UnixStream, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("flooder thread")
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! The control protocol through a generic client: `socat - UNIX-CONNECT:<socket>` with its
//! stdin and stdout as pipes, the way scripts talk to reapd without `reapd ctl`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A running `socat - UNIX-CONNECT:<socket>`: lines go to its stdin, its stdout comes back as
/// lines through a reader thread.
struct Socat {
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    proc: Marked,
}

impl Socat {
    fn connect(d: &Daemon, opts: &[&str]) -> Socat {
        let mut proc = Marked::spawn(
            Command::new("socat")
                .args(opts)
                .arg("-")
                .arg(format!("UNIX-CONNECT:{}", d.socket.display()))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
            &d.marker,
        );
        let stdin = proc.child.stdin.take();
        let stdout = proc.child.stdout.take().expect("socat stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
            // Dropping `tx` tells the receiver that socat's stdout reached EOF.
        });
        Socat { stdin, lines, proc }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to socat");
        stdin.flush().expect("flush");
    }

    /// The next line socat printed, parsed; panics on timeout or EOF.
    fn reply(&self, d: &Daemon) -> Value {
        let line = self
            .lines
            .recv_timeout(SOON)
            .unwrap_or_else(|e| panic!("no line from socat ({e:?}); log:\n{}", d.log()));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
    }

    /// Closes socat's stdin: socat half-closes the connection towards reapd.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Every line until socat's stdout reaches EOF; panics if it stays open past `limit`.
    fn rest(&self, limit: Duration) -> Vec<String> {
        let end = Instant::now() + limit;
        let mut out = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => out.push(l),
                Err(RecvTimeoutError::Disconnected) => return out,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("socat's output still open after {limit:?}; got {out:?}")
                }
            }
        }
    }

    /// Ends the conversation: socat half-closes at the end of its input, reapd finishes and
    /// closes, and socat exits 0 with nothing more printed.
    fn hang_up(&mut self) {
        self.close_stdin();
        assert_eq!(self.rest(SOON), Vec::<String>::new());
        assert_eq!(self.exit_code(SOON), 0);
    }

    /// Waits for socat to exit on its own and returns its exit code.
    fn exit_code(&mut self, limit: Duration) -> i32 {
        let st = self
            .proc
            .wait_exit(limit)
            .unwrap_or_else(|| panic!("socat did not exit by itself within {limit:?}"));
        code_of(st)
    }
}

fn start(tag: &str) -> Daemon {
    Daemon::builder(tag).config(db_and_web()).start()
}

#[test]
fn ping_and_list_through_socat_on_one_connection() {
    if !require_tool("socat") {
        return;
    }
    let mut d = start("socat-ping");
    let mut s = Socat::connect(&d, &[]);
    s.send(r#"{"cmd":"ping"}"#);
    assert_eq!(s.reply(&d), json!({"ok": true, "pong": true}));
    s.send(r#"{"cmd":"list","id":7}"#);
    let list = s.reply(&d);
    assert_eq!(list["ok"], true, "{list}");
    assert_eq!(list["id"], 7, "the id comes back: {list}");
    let services = list["services"].as_array().expect("services");
    let names: Vec<&str> = services.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["db", "web"], "{list}");
    assert!(
        services
            .iter()
            .all(|s| s["state"] == "running" && s["pid"].is_i64()),
        "{list}"
    );
    s.hang_up();
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_bad_line_gets_an_error_and_the_connection_stays_usable() {
    if !require_tool("socat") {
        return;
    }
    let mut d = start("socat-bad");
    let mut s = Socat::connect(&d, &[]);
    s.send(r#"{"cmd": ping}"#);
    let err = s.reply(&d);
    assert_eq!(err["ok"], false, "{err}");
    assert_eq!(err["code"], "bad_request", "{err}");
    let msg = err["error"].as_str().expect("error text");
    assert!(msg.starts_with("invalid JSON at column 9"), "{err}");
    s.send("this is not JSON either");
    assert_eq!(s.reply(&d)["code"], "bad_request");
    s.send(r#"{"cmd":"ping","id":"after"}"#);
    assert_eq!(
        s.reply(&d),
        json!({"ok": true, "pong": true, "id": "after"}),
        "the same connection still works"
    );
    s.hang_up();
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_watch_through_socat_streams_the_shutdown_until_done_and_socat_exits() {
    if !require_tool("socat") {
        return;
    }
    let mut d = start("socat-watch");
    // -t 60: after its stdin ends, socat keeps reading from reapd for up to 60 s. It must
    // exit long before that, because reapd closes the stream after `done`.
    let mut s = Socat::connect(&d, &["-t", "60"]);
    s.send(r#"{"cmd":"watch"}"#);
    let first = s.reply(&d);
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(first["watching"], true, "{first}");
    // Like `echo '{"cmd":"watch"}' | socat ...`: the client is done talking, not listening.
    s.close_stdin();
    let reply = d.request(r#"{"cmd":"shutdown"}"#);
    assert_eq!(reply["ok"], true, "{reply}");
    let lines = s.rest(Duration::from_secs(40));
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        kinds.len(),
        events.len(),
        "every line is an event: {lines:?}"
    );
    assert_eq!(
        events.first().map(|e| &e["state"]),
        Some(&json!("draining")),
        "{lines:?}"
    );
    let plan = one_event(&events, "shutdown_plan");
    assert_eq!(plan["services"][0]["service"], "web");
    assert_eq!(plan["services"][1]["service"], "db");
    assert_eq!(plan["services"][1]["after"], json!(["web"]));
    for kind in ["stopping", "signalled", "exited", "stopped"] {
        assert!(kinds.contains(&kind), "no {kind}: {kinds:?}");
    }
    let done = done_event(&events);
    assert_eq!(done["clean"], true, "{done}");
    assert_eq!(done["exit_code"], 0, "{done}");
    assert_eq!(s.exit_code(Duration::from_secs(30)), 0);
    d.assert_clean_exit();
}

#[test]
fn a_one_line_pipeline_through_socat_gets_its_reply() {
    if !require_tool("socat") {
        return;
    }
    let mut d = start("socat-echo");
    // `echo ... | socat`: the request and the end of input arrive together.
    let run = run_bounded(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo '{{\"cmd\":\"list\"}}' | socat -t 5 - UNIX-CONNECT:{}",
                d.socket.display()
            ))
            .env("REAPD_TEST_MARKER", &d.marker),
        SOON,
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let v: Value = serde_json::from_str(run.stdout.trim()).expect("one JSON line");
    assert!(
        v["ok"] == true && v["services"].as_array().is_some_and(|a| a.len() == 2),
        "{run:?}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

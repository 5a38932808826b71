//! The control socket through the real binary: every command, every bad-input case, and clients
//! that misbehave without affecting anyone else.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// reapd with three services: `a` (a sleep), `once` (runs once and exits 0) and `hup` (logs the
/// SIGHUPs it gets to `hup.log`).
fn start(tag: &str) -> Daemon {
    let cfg = json!({ "services": {
        "a": { "cmd": ["sleep", "1000"] },
        "once": { "cmd": ["true"], "restart": "never" },
        "hup": { "cmd": ["bash", "-c", "trap 'echo got HUP >> \"$TEST_DIR/hup.log\"' HUP; echo ready >> \"$TEST_DIR/hup.log\"; while :; do sleep 0.05; done"] },
    }});
    Daemon::builder(tag).config(cfg).start()
}

fn ok(v: &Value) -> bool {
    v["ok"] == Value::Bool(true)
}

#[test]
fn list_status_and_ping_describe_the_running_services() {
    let mut d = start("list");
    d.wait_state("once", "exited");
    let v = d.request(r#"{"cmd":"list","id":1}"#);
    assert!(ok(&v) && v["id"] == 1, "{v}");
    let services = v["services"].as_array().expect("services");
    let names: Vec<&str> = services.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["a", "hup", "once"]);
    let a = &services[0];
    assert_eq!(a["state"], "running");
    assert_eq!(a["restarts"], 0);
    assert!(a["uptime_ms"].is_u64());
    let pid = a["pid"].as_i64().expect("pid") as i32;
    assert_eq!(cmdline(pid), ["sleep", "1000"]);
    assert!(d.runs(pid));
    let once = &services[2];
    assert_eq!(
        (once["state"].as_str(), once["pid"].is_null()),
        (Some("exited"), true)
    );
    assert_eq!(once["last_exit"], json!({"code": 0}));
    let s = d.request(r#"{"cmd":"status"}"#);
    assert_eq!(s["state"], "running");
    assert_eq!(s["pid"], d.pid());
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["services"]["total"], 3);
    assert_eq!(
        d.request(r#"{"cmd":"ping"}"#),
        json!({"ok": true, "pong": true})
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn the_control_socket_is_private() {
    let mut d = start("private");
    let mode = std::fs::metadata(&d.socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "socket must be private");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn stop_start_and_restart_a_service() {
    let mut d = start("ssr");
    let old = d.pid_of("a").expect("a runs");
    let v = d.request(r#"{"cmd":"stop","name":"a"}"#);
    assert!(ok(&v), "{v}");
    assert_eq!(
        (v["name"].as_str(), v["state"].as_str(), v["how"].as_str()),
        (Some("a"), Some("stopped"), Some("exited"))
    );
    assert!(!d.runs(old), "stop replies once the process is gone");
    d.wait_state("a", "stopped");
    let v = d.request(r#"{"cmd":"start","name":"a"}"#);
    assert_eq!(v["state"], "running", "{v}");
    let started = v["pid"].as_i64().expect("pid") as i32;
    assert_ne!(started, old);
    let v = d.request(r#"{"cmd":"restart","name":"a"}"#);
    let restarted = v["pid"].as_i64().expect("pid") as i32;
    assert_ne!(restarted, started, "{v}");
    assert_eq!(d.pid_of("a"), Some(restarted));
    // A stopped service stays down: "stopped", not "backoff" (no restart is scheduled).
    d.request(r#"{"cmd":"stop","name":"a"}"#);
    let a = d.service("a").expect("a is listed");
    assert_eq!(a["state"], "stopped", "{a}");
    assert!(a["pid"].is_null());
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn signal_reaches_a_running_service_and_is_refused_for_a_stopped_one() {
    let mut d = start("signal");
    d.wait_for("hup.log", "ready");
    let v = d.request(r#"{"cmd":"signal","name":"hup","signal":"HUP"}"#);
    assert_eq!(v["signal"], "SIGHUP", "{v}");
    d.wait_for("hup.log", "got HUP");
    let v = d.request(r#"{"cmd":"stop","name":"a"}"#);
    assert!(ok(&v), "{v}");
    let v = d.request(r#"{"cmd":"signal","name":"a","signal":"USR1"}"#);
    assert_eq!(v["code"], "not_running", "{v}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn bad_requests_get_specific_errors_and_the_connection_stays_usable() {
    let mut d = start("bad");
    let mut c = Watcher::connect(&d.socket).expect("connect");
    let mut ask = |line: &str| {
        c.send(line);
        c.next_line(SOON).expect("reply")
    };
    let v = ask(r#"{"cmd": "list""#);
    assert_eq!(v["code"], "bad_request");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("invalid JSON at column 14"),
        "{v}"
    );
    let v = ask(r#"{"cmd":"lst","id":9}"#);
    assert_eq!(
        (v["code"].as_str(), v["id"].as_i64()),
        (Some("unknown_command"), Some(9))
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("did you mean \"list\""),
        "{v}"
    );
    let v = ask(r#"{"cmd":"stop","name":"aa"}"#);
    assert_eq!(v["code"], "no_such_service");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("did you mean \"a\""),
        "{v}"
    );
    let v = ask(r#"{"cmd":"stop"}"#);
    assert_eq!(v["code"], "bad_request");
    let v = ask("42");
    assert_eq!(v["code"], "bad_request");
    // After all that, the same connection still works.
    assert!(ok(&ask(r#"{"cmd":"ping"}"#)));
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn an_oversized_line_gets_an_error_then_the_connection_is_closed() {
    let mut d = start("long");
    let mut c = Watcher::connect(&d.socket).expect("connect");
    let big = vec![b'x'; 70 * 1024];
    let _ = c.send_raw(&big);
    let v = c.next_line(SOON).expect("error reply");
    assert_eq!(v["code"], "line_too_long", "{v}");
    assert!(c.closed_within(SOON), "connection must be closed");
    assert!(ok(&d.request(r#"{"cmd":"ping"}"#)), "daemon unaffected");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn clients_that_vanish_or_never_read_affect_nobody_else() {
    let mut d = start("rude");
    // Half a line, then gone.
    {
        let mut s = UnixStream::connect(&d.socket).expect("connect");
        s.write_all(br#"{"cmd":"li"#).expect("write");
    }
    // Connected and silent.
    let _idle = UnixStream::connect(&d.socket).expect("connect");
    // Floods requests and does not read a reply for now: reapd stops reading its requests
    // once its replies pile up (they wait in its socket), and serves everyone else meanwhile.
    let flood = UnixStream::connect(&d.socket).expect("connect");
    let mut writer = flood.try_clone().expect("clone");
    let sending = std::thread::spawn(move || {
        let line = b"{\"cmd\":\"list\"}\n".repeat(20_000);
        writer
            .write_all(&line)
            .expect("all requests sent, eventually");
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(ok(&d.request(r#"{"cmd":"ping"}"#)));
    assert!(d.pid_of("a").is_some());
    // It was slowed down, not dropped: once it reads, every reply is there.
    let mut reader = Watcher::new(flood);
    for i in 0..20_000 {
        let v = reader
            .next_line(SOON)
            .unwrap_or_else(|| panic!("reply {i} missing"));
        assert!(ok(&v), "{v}");
    }
    sending.join().expect("writer");
    // Dropping a client is the loop's own warning, not an event: only the log would say.
    assert!(!d.log().contains("is not reading"), "{}", d.log());
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn mutating_commands_are_refused_once_shutdown_has_begun() {
    let cfg = json!({ "services": {
        "slow": { "cmd": [fixture("chain.sh"), "1", "1", "/dev/null", "ignore"], "stop_timeout_ms": 3000 },
    }});
    let mut d = Daemon::builder("late").config(cfg).start();
    let mut c = Watcher::connect(&d.socket).expect("connect");
    c.send(r#"{"cmd":"shutdown"}"#);
    assert_eq!(c.next_line(SOON).expect("reply")["state"], "draining");
    c.send(r#"{"cmd":"stop","name":"slow"}"#);
    let v = c.next_line(SOON).expect("reply");
    assert_eq!(v["code"], "shutting_down", "{v}");
    c.send(r#"{"cmd":"list"}"#);
    let v = c.next_line(SOON).expect("reply");
    assert_eq!(
        v["services"][0]["state"], "stopping",
        "read-only commands still work: {v}"
    );
    c.send(r#"{"cmd":"shutdown"}"#);
    assert!(
        ok(&c.next_line(SOON).expect("reply")),
        "a repeated shutdown is harmless"
    );
    assert!(
        UnixStream::connect(&d.socket).is_err(),
        "listener closed while draining"
    );
    d.assert_clean_exit();
}

#[test]
fn watchers_that_hang_up_free_their_place() {
    let mut d = start("hangup");
    for _ in 0..3 {
        // Fill every connection slot with watchers, then close them all.
        let watchers: Vec<Watcher> = (0..64).map(|_| d.watch()).collect();
        drop(watchers);
        assert!(
            wait_until(SOON, || request_at(&d.socket, r#"{"cmd":"ping"}"#)
                .is_ok_and(|v| ok(&v))),
            "closed watchers still hold their places:\n{}",
            d.log()
        );
    }
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn ctl_watch_exits_quietly_when_its_reader_goes_away() {
    let mut d = start("ctl-pipe");
    let mut ctl = Marked::spawn(
        std::process::Command::new(BIN)
            .args(["ctl", "--socket", &d.socket.display().to_string(), "watch"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
        &d.marker,
    );
    {
        // Read the first line, then close the pipe, like `reapd ctl watch | head -1`.
        let mut out = std::io::BufReader::new(ctl.child.stdout.take().expect("stdout"));
        let mut first = String::new();
        std::io::BufRead::read_line(&mut out, &mut first).expect("first line");
        assert!(first.contains("watching"), "{first}");
    }
    // Events keep coming; writing them must now fail without a panic.
    d.request(r#"{"cmd":"restart","name":"a"}"#);
    let status = ctl.wait_exit(SOON);
    assert!(status.is_some(), "ctl watch did not exit");
    let mut err = String::new();
    if let Some(mut e) = ctl.child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert_eq!(status.map(code_of), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

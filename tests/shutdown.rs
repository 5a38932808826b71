//! Shutdown through the real binary: signals, the `shutdown` command, watchers, stop timeouts and
//! dependency order. Each service is a `chain.sh` tree whose levels log what they received.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A service running a chain of `levels` processes that log to `log`.
fn chain(d: &TestDir, log: &str, levels: u32, mode: &str) -> Value {
    json!({ "cmd": [fixture("chain.sh"), "1", levels.to_string(), d.join(log), mode] })
}

fn wait_started(d: &TestDir, log: &str, levels: usize) {
    assert!(
        wait_until(SOON, || chain_times(&d.read(log), "started").len()
            == levels),
        "{log}: not all {levels} levels started:\n{}",
        d.read(log)
    );
}

/// Starts reapd with `services` built by `f` in the daemon's own directory.
fn start_with(tag: &str, extra: Value, f: impl Fn(&TestDir) -> Value) -> Daemon {
    let dir = TestDir::new(tag);
    let mut cfg = json!({ "services": f(&dir) });
    if let (Value::Object(c), Value::Object(e)) = (&mut cfg, extra) {
        c.extend(e);
    }
    Daemon::start_in(dir, &cfg, &[])
}

#[test]
fn sigterm_stops_every_service_in_reverse_order_and_exits_clean() {
    let mut d = start_with(
        "term",
        json!({}),
        |dir| json!({ "db": chain(dir, "db.log", 3, "exit"), "web": { "after": ["db"], "cmd": chain(dir, "web.log", 2, "exit")["cmd"] } }),
    );
    wait_started(&d.dir, "db.log", 3);
    wait_started(&d.dir, "web.log", 2);
    let services: Vec<Proc> = live_with_marker(&d.marker)
        .into_iter()
        .filter(|p| p.pid != d.pid())
        .collect();
    assert_eq!(services.len(), 5, "{services:?}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
    let web_exit = chain_times(&d.dir.read("web.log"), "exiting");
    let db_term = chain_times(&d.dir.read("db.log"), "got TERM");
    assert_eq!(web_exit.len(), 2, "web:\n{}", d.dir.read("web.log"));
    assert_eq!(db_term.len(), 3, "db:\n{}", d.dir.read("db.log"));
    let last_web = web_exit.values().cloned().fold(f64::MIN, f64::max);
    let first_db = db_term.values().cloned().fold(f64::MAX, f64::min);
    assert!(
        last_web < first_db,
        "db was signalled before web had stopped"
    );
    assert!(d.log().contains("done: clean"), "{}", d.log());
}

#[test]
fn a_burst_of_twenty_sigterms_is_one_shutdown() {
    let mut d = start_with(
        "burst",
        json!({}),
        |dir| json!({ "a": chain(dir, "a.log", 2, "exit") }),
    );
    wait_started(&d.dir, "a.log", 2);
    for _ in 0..20 {
        d.signal(libc::SIGTERM);
    }
    d.assert_clean_exit();
    let log = d.log();
    assert_eq!(lines_with(&log, "info: draining:").len(), 1, "{log}");
    assert_eq!(lines_with(&log, "done: clean").len(), 1, "{log}");
    // Each level got exactly one TERM: repeats are not forwarded.
    assert_eq!(
        lines_with(&d.dir.read("a.log"), "got TERM").len(),
        2,
        "{}",
        d.dir.read("a.log")
    );
}

#[test]
fn one_sigint_is_a_graceful_shutdown() {
    let mut d = start_with(
        "int1",
        json!({}),
        |dir| json!({ "a": chain(dir, "a.log", 2, "exit") }),
    );
    wait_started(&d.dir, "a.log", 2);
    d.signal(libc::SIGINT);
    d.assert_clean_exit();
    assert_eq!(
        chain_times(&d.dir.read("a.log"), "exiting").len(),
        2,
        "both levels stopped on their own"
    );
    assert!(d.log().contains("draining: SIGINT"), "{}", d.log());
    assert!(!d.log().contains("killing: second SIGINT"));
}

#[test]
fn a_second_sigint_kills_at_once_and_still_exits_clean() {
    let mut d = start_with(
        "int2",
        json!({}),
        |dir| json!({ "stubborn": { "cmd": chain(dir, "a.log", 2, "ignore")["cmd"], "stop_timeout_ms": 25000 } }),
    );
    wait_started(&d.dir, "a.log", 2);
    d.signal(libc::SIGINT);
    assert!(
        wait_until(SOON, || d.dir.read("a.log").contains("level 2 got TERM")),
        "graceful stop began"
    );
    d.signal(libc::SIGINT);
    // Without the escalation this would take the 25 s stop timeout.
    assert!(
        d.wait_exit(Duration::from_secs(15)).is_some(),
        "second SIGINT did not escalate; log:\n{}",
        d.log()
    );
    d.assert_clean_exit();
    let log = d.log();
    assert!(log.contains("killing: second SIGINT"), "{log}");
    assert!(log.contains("froze and killed 2 processes"), "{log}");
}

#[test]
fn shutdown_request_streams_progress_to_a_watcher_until_done() {
    let mut d = start_with(
        "watch",
        json!({}),
        |dir| json!({ "db": chain(dir, "db.log", 1, "exit"), "web": { "after": ["db"], "cmd": chain(dir, "web.log", 2, "exit")["cmd"] } }),
    );
    wait_started(&d.dir, "web.log", 2);
    let mut w = d.watch();
    let reply = d.request(r#"{"cmd":"shutdown","id":"bye"}"#);
    assert_eq!(reply, json!({"ok": true, "id": "bye", "state": "draining"}));
    let events = w.drain(Duration::from_secs(20));
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"state"), "{kinds:?}");
    assert_eq!(events[0]["state"], "draining");
    assert_eq!(
        kinds.last(),
        Some(&"done"),
        "watcher must end with done: {kinds:?}"
    );
    let done = events.last().expect("done");
    assert_eq!(done["clean"], true);
    assert_eq!(done["exit_code"], 0);
    assert!(done["elapsed_ms"].is_u64());
    let plan = events_of(&events, "shutdown_plan");
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0]["waves"][0]["services"], json!(["web"]));
    assert_eq!(plan[0]["waves"][1]["services"], json!(["db"]));
    let stopped: Vec<&str> = events_of(&events, "stopped")
        .iter()
        .filter_map(|e| e["service"].as_str())
        .collect();
    assert_eq!(stopped, ["web", "db"]);
    let signalled = events_of(&events, "signalled");
    assert_eq!(
        signalled.first().map(|e| e["service"].clone()),
        Some(json!("web"))
    );
    assert!(kinds.contains(&"exited"));
    assert!(
        w.closed_within(SOON),
        "connection must be closed after done"
    );
    d.assert_clean_exit();
}

#[test]
fn a_service_that_ignores_term_is_killed_at_its_stop_timeout() {
    let mut d = start_with(
        "stubborn",
        json!({}),
        |dir| json!({ "stubborn": { "cmd": chain(dir, "a.log", 1, "ignore")["cmd"], "stop_timeout_ms": 1000 } }),
    );
    wait_started(&d.dir, "a.log", 1);
    let mut w = d.watch();
    d.signal(libc::SIGTERM);
    let events = w.drain(Duration::from_secs(20));
    d.assert_clean_exit();
    assert!(
        d.dir.read("a.log").contains("level 1 got TERM"),
        "it was asked first"
    );
    let killed = events_of(&events, "killed");
    assert_eq!(killed.len(), 1, "{events:?}");
    assert_eq!(killed[0]["service"], "stubborn");
    assert_eq!(killed[0]["count"], 1);
    let stopped = events_of(&events, "stopped");
    assert_eq!(stopped[0]["how"], "killed");
    assert!(
        stopped[0]["elapsed_ms"]
            .as_u64()
            .is_some_and(|ms| ms >= 1000),
        "killed before its timeout: {}",
        stopped[0]
    );
    let exited = events_of(&events, "exited");
    assert_eq!(exited[0]["status"]["signal"], "SIGKILL");
}

#[test]
fn after_starts_dependencies_first_and_independent_services_stop_together() {
    let mut d = start_with("order", json!({}), |dir| {
        json!({
            "a": chain(dir, "a.log", 1, "exit"),
            "b": { "after": ["a"], "cmd": chain(dir, "b.log", 1, "exit")["cmd"] },
            "c": { "after": ["b"], "cmd": chain(dir, "c.log", 1, "exit")["cmd"] },
            "d": chain(dir, "d.log", 1, "exit"),
        })
    });
    for l in ["a.log", "b.log", "c.log", "d.log"] {
        wait_started(&d.dir, l, 1);
    }
    // Start order is the order reapd spawns in (a service's own log may lag behind its spawn).
    let log = d.log();
    let spawned = |name: &str| {
        log.find(&format!("info: {name}: started, pid"))
            .unwrap_or(usize::MAX)
    };
    assert!(
        spawned("a") < spawned("b") && spawned("b") < spawned("c"),
        "start order a, b, c:\n{log}"
    );
    let mut w = d.watch();
    d.signal(libc::SIGTERM);
    let events = w.drain(Duration::from_secs(20));
    d.assert_clean_exit();
    let term = |l: &str| chain_times(&d.dir.read(l), "got TERM")[&1];
    let exit = |l: &str| chain_times(&d.dir.read(l), "exiting")[&1];
    assert!(
        exit("c.log") < term("b.log") && exit("b.log") < term("a.log"),
        "stop order c, b, a"
    );
    // d has no dependencies: it stops in the first wave, with c.
    let plan = events_of(&events, "shutdown_plan");
    assert_eq!(
        plan[0]["waves"],
        json!([
            {"services": ["c", "d"], "requested_ms": 10000, "timeout_ms": 9100},
            {"services": ["b"], "requested_ms": 10000, "timeout_ms": 9100},
            {"services": ["a"], "requested_ms": 10000, "timeout_ms": 9100},
        ])
    );
    assert!(
        term("d.log") < term("b.log"),
        "d stopped with the first wave"
    );
}

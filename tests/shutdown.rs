//! Shutdown through the real binary: signals, the `shutdown` command, watchers, stop timeouts and
//! dependency order. Each service is a `chain.sh` tree whose levels log what they received.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Starts reapd with the services `f` builds in the daemon's own directory.
fn start_with(tag: &str, f: impl Fn(&TestDir) -> Value) -> Daemon {
    let b = Daemon::builder(tag);
    let services = f(b.dir());
    b.config(json!({ "services": services })).start()
}

#[test]
fn sigterm_stops_every_service_in_reverse_order_and_exits_clean() {
    let mut d = start_with("term", |dir| {
        json!({
            "db": { "cmd": chain_cmd(dir, "db.log", 3, "exit") },
            "web": { "after": ["db"], "cmd": chain_cmd(dir, "web.log", 2, "exit") },
        })
    });
    wait_chain_started(&d.dir, "db.log", 3);
    wait_chain_started(&d.dir, "web.log", 2);
    let services = d.services_procs();
    assert_eq!(services.len(), 5, "{services:?}");
    let events = d.signal_and_watch(libc::SIGTERM);
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
    assert_eq!(done_event(&events)["clean"], true, "{events:#?}");
}

#[test]
fn a_burst_of_twenty_sigterms_is_one_shutdown() {
    let mut d = start_with(
        "burst",
        |dir| json!({ "a": { "cmd": chain_cmd(dir, "a.log", 2, "exit") } }),
    );
    wait_chain_started(&d.dir, "a.log", 2);
    let mut w = d.watch();
    for _ in 0..20 {
        d.signal(libc::SIGTERM);
    }
    let events = w.drain(Duration::from_secs(40));
    d.assert_clean_exit();
    let draining: Vec<_> = states(&events)
        .into_iter()
        .filter(|(state, _)| *state == "draining")
        .collect();
    assert_eq!(draining, [("draining", "SIGTERM")], "{events:#?}");
    assert_eq!(done_event(&events)["clean"], true, "{events:#?}");
    assert_eq!(events_of(&events, "done").len(), 1, "{events:#?}");
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
        |dir| json!({ "a": { "cmd": chain_cmd(dir, "a.log", 2, "exit") } }),
    );
    wait_chain_started(&d.dir, "a.log", 2);
    let events = d.signal_and_watch(libc::SIGINT);
    d.assert_clean_exit();
    assert_eq!(
        chain_times(&d.dir.read("a.log"), "exiting").len(),
        2,
        "both levels stopped on their own"
    );
    let states = states(&events);
    assert_eq!(states.first(), Some(&("draining", "SIGINT")), "{events:#?}");
    assert!(
        !states.contains(&("killing", "second SIGINT")),
        "{events:#?}"
    );
}

#[test]
fn a_second_sigint_kills_at_once_and_still_exits_clean() {
    let mut d = start_with(
        "int2",
        |dir| json!({ "stubborn": { "cmd": chain_cmd(dir, "a.log", 2, "ignore"), "stop_timeout_ms": 25000 } }),
    );
    wait_chain_started(&d.dir, "a.log", 2);
    let mut w = d.watch();
    d.signal(libc::SIGINT);
    d.wait_for("a.log", "level 2 got TERM");
    d.signal(libc::SIGINT);
    // Without the escalation this would take the 25 s stop timeout.
    assert!(
        d.wait_exit(Duration::from_secs(15)).is_some(),
        "second SIGINT did not escalate; log:\n{}",
        d.log()
    );
    let events = w.drain(SOON);
    d.assert_clean_exit();
    assert!(
        states(&events).contains(&("killing", "second SIGINT")),
        "{events:#?}"
    );
    assert!(
        events_of(&events, "killed")
            .iter()
            .any(|e| e["service"] == "stubborn" && e["count"] == 2),
        "both processes frozen and killed: {events:#?}"
    );
}

#[test]
fn shutdown_request_streams_progress_to_a_watcher_until_done() {
    let mut d = start_with("watch", |dir| {
        json!({
            "db": { "cmd": chain_cmd(dir, "db.log", 1, "exit") },
            "web": { "after": ["db"], "cmd": chain_cmd(dir, "web.log", 2, "exit") },
        })
    });
    wait_chain_started(&d.dir, "web.log", 2);
    let mut w = d.watch();
    let reply = d.request(r#"{"cmd":"shutdown","id":"bye"}"#);
    assert_eq!(reply, json!({"ok": true, "id": "bye", "state": "draining"}));
    let events = w.drain(Duration::from_secs(20));
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"state"), "{kinds:?}");
    assert_eq!(events[0]["state"], "draining");
    let done = done_event(&events);
    assert_eq!(done["clean"], true);
    assert_eq!(done["exit_code"], 0);
    assert!(done["elapsed_ms"].is_u64());
    let plan = one_event(&events, "shutdown_plan");
    assert_eq!(plan["services"][0]["service"], "web");
    assert_eq!(plan["services"][1]["service"], "db");
    assert_eq!(plan["services"][1]["after"], json!(["web"]));
    assert_eq!(services_in(&events, "stopped"), ["web", "db"]);
    assert_eq!(services_in(&events, "signalled").first(), Some(&"web"));
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
        |dir| json!({ "stubborn": { "cmd": chain_cmd(dir, "a.log", 1, "ignore"), "stop_timeout_ms": 1000 } }),
    );
    wait_chain_started(&d.dir, "a.log", 1);
    let events = d.signal_and_watch(libc::SIGTERM);
    d.assert_clean_exit();
    assert!(
        d.dir.read("a.log").contains("level 1 got TERM"),
        "it was asked first"
    );
    let killed = one_event(&events, "killed");
    assert_eq!(killed["service"], "stubborn");
    assert_eq!(killed["count"], 1);
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
    let mut d = start_with("order", |dir| {
        json!({
            "a": { "cmd": chain_cmd(dir, "a.log", 1, "exit") },
            "b": { "after": ["a"], "cmd": chain_cmd(dir, "b.log", 1, "exit") },
            "c": { "after": ["b"], "cmd": chain_cmd(dir, "c.log", 1, "exit") },
            "d": { "cmd": chain_cmd(dir, "d.log", 1, "exit") },
        })
    });
    for l in ["a.log", "b.log", "c.log", "d.log"] {
        wait_chain_started(&d.dir, l, 1);
    }
    // Start order is the order reapd spawns in (a service's own log may lag behind its spawn).
    // Services start before any client can watch: the start-up log is the only record.
    let log = d.log();
    let spawned = |name: &str| {
        log.find(&format!("info: {name}: started, pid"))
            .unwrap_or(usize::MAX)
    };
    assert!(
        spawned("a") < spawned("b") && spawned("b") < spawned("c"),
        "start order a, b, c:\n{log}"
    );
    let events = d.signal_and_watch(libc::SIGTERM);
    d.assert_clean_exit();
    let term = |l: &str| chain_times(&d.dir.read(l), "got TERM")[&1];
    let exit = |l: &str| chain_times(&d.dir.read(l), "exiting")[&1];
    assert!(
        exit("c.log") < term("b.log") && exit("b.log") < term("a.log"),
        "stop order c, b, a"
    );
    // d has no dependencies: it stops at once, with c, and keeps its whole 10 s; the path
    // c, b, a shares 27.3 s.
    let plan = one_event(&events, "shutdown_plan");
    assert_eq!(
        plan["services"],
        json!([
            {"service": "c", "after": [], "requested_ms": 10000, "share_ms": 9100, "starts_ms": 0},
            {"service": "d", "after": [], "requested_ms": 10000, "share_ms": 10000, "starts_ms": 0},
            {"service": "b", "after": ["c"], "requested_ms": 10000, "share_ms": 9100, "starts_ms": 9100},
            {"service": "a", "after": ["b"], "requested_ms": 10000, "share_ms": 9100, "starts_ms": 18200},
        ])
    );
    // Asked at once, with c, before b (the processes' own logs cannot say it: d's trap may run
    // after b got its signal, now that c exits within a millisecond).
    let asked = |svc: &str| {
        events
            .iter()
            .position(|e| e["event"] == "signalled" && e["service"] == svc)
            .unwrap_or(usize::MAX)
    };
    assert!(asked("d") < asked("b"), "d stopped at once: {events:?}");
    assert!(term("d.log") > 0.0, "d got its TERM");
}

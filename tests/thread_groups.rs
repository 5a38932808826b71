//! Liveness belongs to the thread group: a process whose main thread ended with `pthread_exit()`
//! shows `Z` in `/proc/PID/stat` while its other threads run. Such processes, as a service's main
//! process and as grandchildren, must be signalled, frozen, killed and verified like any other.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Pids of the fixture processes that logged `started` in `log`.
fn started(d: &TestDir, log: &str) -> Vec<i32> {
    lines_with(&d.read(log), "started")
        .iter()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Compiles the fixture, starts reapd with the services `services(fixture, log)` builds, and
/// waits until `n` fixtures run as zombie leaders; returns the daemon and their pids. None after
/// a loud skip when there is no C compiler.
fn start_zombie_leaders(
    tag: &str,
    n: usize,
    services: impl Fn(&str, &str) -> Value,
) -> Option<(Daemon, Vec<i32>)> {
    let b = Daemon::builder(tag);
    let zl = compile_fixture(b.dir(), "zombie_leader.c")?;
    let log = b.dir().join("z.log");
    let cfg = json!({
        "shutdown_timeout_ms": 8000,
        "services": services(&zl.display().to_string(), &log.display().to_string()),
    });
    let d = b.config(cfg).start();
    assert!(
        wait_until(SOON, || started(&d.dir, "z.log").len() == n),
        "fixtures did not start:\n{}",
        d.dir.read("z.log")
    );
    let pids = started(&d.dir, "z.log");
    // They really are zombie leaders that live on.
    assert!(
        wait_until(SOON, || pids
            .iter()
            .all(|&p| stat(p).is_some_and(|s| s.state == 'Z' && s.threads > 1))),
        "not all fixtures became zombie leaders: {:?}",
        pids.iter().map(|&p| stat(p)).collect::<Vec<_>>()
    );
    Some((d, pids))
}

/// Shuts `d` down and checks every one of `pids` was asked with SIGTERM first (the stop signal
/// reached the thread group), is gone, and that reapd reports no survivor. Returns the events.
fn shut_down_and_verify(d: &mut Daemon, pids: &[i32]) -> Vec<Value> {
    let events = d.signal_and_watch(libc::SIGTERM);
    d.assert_clean_exit();
    for &p in pids {
        assert!(
            !is_alive(p),
            "pid {p} survived the shutdown: {:?}; log:\n{}",
            stat(p),
            d.log()
        );
    }
    let text = d.dir.read("z.log");
    for &p in pids {
        assert!(
            text.contains(&format!("{p} got TERM")),
            "pid {p} never got SIGTERM:\n{text}"
        );
    }
    assert_eq!(done_event(&events)["survivors"], json!([]), "{events:#?}");
    events
}

/// The `how` of the `stopped` event of `service`.
fn how_stopped<'a>(events: &'a [Value], service: &str) -> &'a Value {
    let stopped = events_of(events, "stopped");
    &stopped
        .iter()
        .find(|e| e["service"] == service)
        .unwrap_or_else(|| panic!("{service} never stopped: {events:#?}"))["how"]
}

#[test]
fn a_zombie_leader_main_process_that_obeys_term_stops_on_it() {
    let Some((mut d, pids)) = start_zombie_leaders(
        "zl-obeys",
        1,
        |zl, log| json!({ "main-obeys": { "cmd": [zl, log, "obey"], "stop_timeout_ms": 3000 } }),
    ) else {
        return;
    };
    let events = shut_down_and_verify(&mut d, &pids);
    assert_eq!(how_stopped(&events, "main-obeys"), "exited", "{events:#?}");
}

#[test]
fn a_zombie_leader_main_process_that_ignores_term_is_frozen_and_killed() {
    let Some((mut d, pids)) = start_zombie_leaders(
        "zl-ignores",
        1,
        |zl, log| json!({ "main-ignores": { "cmd": [zl, log, "ignore"], "stop_timeout_ms": 1000 } }),
    ) else {
        return;
    };
    let events = shut_down_and_verify(&mut d, &pids);
    assert_eq!(
        how_stopped(&events, "main-ignores"),
        "killed",
        "{events:#?}"
    );
}

#[test]
fn zombie_leader_grandchildren_are_stopped_killed_and_verified_gone() {
    // A shell with one that obeys SIGTERM and one that ignores it below it.
    let Some((mut d, pids)) = start_zombie_leaders("zl-grandchildren", 2, |zl, log| {
        json!({ "grandchildren": {
            "cmd": ["sh", "-c", format!("{zl} {log} obey & {zl} {log} ignore & wait")],
            "stop_timeout_ms": 1000
        } })
    }) else {
        return;
    };
    let events = shut_down_and_verify(&mut d, &pids);
    assert_eq!(
        how_stopped(&events, "grandchildren"),
        "killed",
        "{events:#?}"
    );
}

#[test]
fn a_zombie_leader_left_by_a_stopped_service_is_no_survivor_of_a_stop_request() {
    let Some((mut d, pids)) = start_zombie_leaders("zleader-stop", 1, |zl, log| {
        json!({ "svc": {
            "cmd": ["sh", "-c", format!("{zl} {log} ignore & sleep 1000")],
            "stop_timeout_ms": 1000
        } })
    }) else {
        return;
    };
    let pid = pids[0];
    let reply = d.request(r#"{"cmd":"stop","name":"svc"}"#);
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["how"], "killed", "{reply}");
    assert!(
        wait_until(Duration::from_secs(5), || !is_alive(pid)),
        "the zombie leader {pid} still runs after `stop` said stopped"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

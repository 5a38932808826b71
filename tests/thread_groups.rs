//! Liveness belongs to the thread group: a process whose main thread ended with `pthread_exit()`
//! shows `Z` in `/proc/PID/stat` while its other threads run. Such processes, as a service's main
//! process and as grandchildren, must be signalled, frozen, killed and verified like any other.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Pids of the fixture processes that logged `started` in `log`.
fn started(d: &TestDir, log: &str) -> Vec<i32> {
    lines_with(&d.read(log), "started")
        .iter()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn zombie_leaders_are_stopped_killed_and_verified_gone() {
    let dir = TestDir::new("zleader");
    let Some(zl) = compile_fixture(&dir, "zombie_leader.c") else {
        return;
    };
    let zl = zl.display().to_string();
    let log = dir.join("z.log").display().to_string();
    let cfg = json!({
        "shutdown_timeout_ms": 8000,
        "services": {
            // The main process itself is a zombie leader that obeys SIGTERM.
            "main-obeys": { "cmd": [&zl, &log, "obey"], "stop_timeout_ms": 3000 },
            // One that ignores it: it must be frozen and killed at the stop timeout.
            "main-ignores": { "cmd": [&zl, &log, "ignore"], "stop_timeout_ms": 1000 },
            // Grandchildren: a shell with one of each below it.
            "grandchildren": {
                "cmd": ["sh", "-c", format!("{zl} {log} obey & {zl} {log} ignore & wait")],
                "stop_timeout_ms": 1000
            }
        }
    });
    let mut d = Daemon::start_in(dir, &cfg, &[]);
    assert!(
        wait_until(SOON, || started(&d.dir, "z.log").len() == 4),
        "fixtures did not start:\n{}",
        d.dir.read("z.log")
    );
    let pids = started(&d.dir, "z.log");
    // They really are zombie leaders that live on.
    assert!(
        wait_until(SOON, || pids.iter().all(|&p| {
            stat_fields(p).is_some_and(|(state, _)| state == 'Z')
                && thread_count(p).is_some_and(|n| n > 1)
        })),
        "not all fixtures became zombie leaders"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
    for &p in &pids {
        assert!(
            stat_fields(p).is_none_or(|(state, _)| state == 'Z')
                && thread_count(p).is_none_or(|n| n <= 1),
            "pid {p} survived the shutdown; log:\n{}",
            d.log()
        );
    }
    // Every one of them was asked with SIGTERM first: the stop signal reached the thread group.
    let text = d.dir.read("z.log");
    for &p in &pids {
        assert!(
            text.contains(&format!("{p} got TERM")),
            "pid {p} never got SIGTERM:\n{text}"
        );
    }
    let log = d.log();
    assert!(
        log.contains("main-ignores: stopped (killed)"),
        "the one that ignores TERM is killed:\n{log}"
    );
    assert!(log.contains("0 survivors"), "{log}");
}

#[test]
fn a_zombie_leader_left_by_a_stopped_service_is_no_survivor_of_a_stop_request() {
    let dir = TestDir::new("zleader-stop");
    let Some(zl) = compile_fixture(&dir, "zombie_leader.c") else {
        return;
    };
    let zl = zl.display().to_string();
    let log = dir.join("z.log").display().to_string();
    let cfg = json!({ "services": { "svc": {
        "cmd": ["sh", "-c", format!("{zl} {log} ignore & sleep 1000")],
        "stop_timeout_ms": 1000
    } } });
    let mut d = Daemon::start_in(dir, &cfg, &[]);
    assert!(wait_until(SOON, || started(&d.dir, "z.log").len() == 1));
    let pid = started(&d.dir, "z.log")[0];
    let reply = d.request(r#"{"cmd":"stop","name":"svc"}"#);
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["how"], "killed", "{reply}");
    assert!(
        wait_until(Duration::from_secs(5), || thread_count(pid)
            .is_none_or(|n| n <= 1)),
        "the zombie leader {pid} still runs after `stop` said stopped"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

//! Nothing left behind across a crash: after `kill -9` of reapd its services live on, re-parented;
//! the next instance on the same socket reads the state file its predecessor kept, stops those
//! processes bottom-up with their service's stop procedure, and only then starts its own.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[test]
fn the_next_instance_stops_a_crashed_predecessors_processes_before_starting_its_own() {
    let b = Daemon::builder("crash");
    let cfg = json!({ "services": {
        // A three-level tree whose levels log the TERM they get.
        "tree": { "cmd": chain_cmd(b.dir(), "chain.log", 3, "exit") },
        // A service whose child escaped into its own session and ignores TERM.
        "escapee": {
            "cmd": ["sh", "-c", "setsid sh -c 'trap \"\" TERM; exec sleep 1000' & exec sleep 1000"],
            "stop_timeout_ms": 1000
        }
    } });
    let mut first = b.config(&cfg).start();
    wait_chain_started(&first.dir, "chain.log", 3);
    let state = first.dir.join("s.sock.state");
    assert!(
        wait_until(SOON, || std::fs::read_to_string(&state)
            .is_ok_and(|s| s.contains("tree ") && s.contains("escapee "))),
        "no state file with both services"
    );
    let old: Vec<i32> = first.services_procs().iter().map(|p| p.pid).collect();
    assert!(old.len() >= 5, "expected the services' processes: {old:?}");
    // The crash: services live on without their supervisor.
    first.signal(libc::SIGKILL);
    assert!(first.wait_exit(SOON).is_some());
    assert!(old.iter().all(|&p| is_alive(p)), "services died with reapd");

    // A new instance on the same socket (the lock is free again, the state file is not).
    let dir = std::mem::replace(&mut first.dir, TestDir::new("crash-first-husk"));
    let mut second = Daemon::builder_in(dir).config(&cfg).start();
    for &p in &old {
        assert!(
            wait_until(Duration::from_secs(5), || !is_alive(p)),
            "pid {p} of the crashed instance is still alive; log:\n{}",
            second.log()
        );
    }
    // Recovery happens at start-up, before any client can watch: the log is its only record.
    assert!(
        wait_until(SOON, || second.log().contains("tree: started")),
        "services did not start after recovery; log:\n{}",
        second.log()
    );
    let log = second.log();
    let recovered = log
        .find("died without cleaning up")
        .expect("recovery is logged");
    let started = log.find("tree: started").expect("tree started again");
    assert!(
        recovered < started,
        "stopped before starting anything:\n{log}"
    );
    assert!(
        log.contains("escapee: left running by the predecessor"),
        "{log}"
    );
    // The crashed tree was stopped bottom-up, with its own stop signal.
    let text = second.dir.read("chain.log");
    let term = chain_times(&text, "got TERM");
    let exit = chain_times(&text, "exiting");
    assert_eq!(term.len(), 3, "{text}");
    for level in 1..3 {
        assert!(
            exit[&(level + 1)] <= term[&level],
            "level {level} got TERM before level {} exited:\n{text}",
            level + 1
        );
    }
    second.signal(libc::SIGTERM);
    second.assert_clean_exit();
    assert!(
        !second.dir.join("s.sock.state").exists(),
        "state file left after a clean exit"
    );
}

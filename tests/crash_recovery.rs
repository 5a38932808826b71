//! Nothing left behind across a crash: after `kill -9` of reapd its services live on, re-parented;
//! the next instance on the same socket reads the state file its predecessor kept, stops those
//! processes bottom-up with their service's stop procedure, and only then starts its own.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[test]
fn the_next_instance_stops_a_crashed_predecessors_processes_before_starting_its_own() {
    let dir = TestDir::new("crash");
    let log = dir.join("chain.log").display().to_string();
    let cfg = json!({ "services": {
        // A three-level tree whose levels log the TERM they get.
        "tree": { "cmd": [fixture("chain.sh"), "1", "3", &log, "exit"] },
        // A service whose child escaped into its own session and ignores TERM.
        "escapee": {
            "cmd": ["sh", "-c", "setsid sh -c 'trap \"\" TERM; exec sleep 1000' & exec sleep 1000"],
            "stop_timeout_ms": 1000
        }
    } });
    let path = dir.write("config.json", &cfg.to_string());
    let args = vec!["--config".to_string(), path.display().to_string()];
    let start = || Start {
        args: args.clone(),
        env: Vec::new(),
        with_socket: true,
    };
    let mut first = Daemon::spawn_in(dir, start());
    first.wait_ready();
    assert!(
        wait_until(SOON, || chain_times(
            &first.dir.read("chain.log"),
            "started"
        )
        .len()
            == 3),
        "chain did not start"
    );
    let state = first.dir.join("s.sock.state");
    assert!(
        wait_until(SOON, || std::fs::read_to_string(&state)
            .is_ok_and(|s| s.contains("tree ") && s.contains("escapee "))),
        "no state file with both services"
    );
    let old: Vec<i32> = live_with_marker(&first.marker)
        .into_iter()
        .filter(|p| p.pid != first.pid())
        .map(|p| p.pid)
        .collect();
    assert!(old.len() >= 5, "expected the services' processes: {old:?}");
    // The crash: services live on without their supervisor.
    first.signal(libc::SIGKILL);
    assert!(first.wait_exit(SOON).is_some());
    assert!(
        old.iter().all(|&p| stat_fields(p).is_some()),
        "services died with reapd"
    );

    // A new instance on the same socket (the lock is free again, the state file is not).
    let dir = std::mem::replace(&mut first.dir, TestDir::new("crash-first-husk"));
    let mut second = Daemon::spawn_in(dir, start());
    second.wait_ready();
    for &p in &old {
        assert!(
            wait_until(Duration::from_secs(5), || stat_fields(p)
                .is_none_or(|(s, _)| s == 'Z')),
            "pid {p} of the crashed instance is still alive; log:\n{}",
            second.log()
        );
    }
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

//! The bound holds against a CPU-bound fork storm: `perl -e 'while (1) { fork }'`, capped by a
//! pids cgroup, with a real-time watchdog (the cage) that kills it by its cgroup should reapd
//! fail.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn a_cpu_bound_fork_bomb_is_stopped_within_the_bound_with_no_survivor() {
    // This thread too must keep running while the storm fills both cores.
    if !require_tool("perl")
        || !require(
            realtime_priority(),
            "cannot run the test thread at real-time priority",
        )
    {
        return;
    }
    let Some(cage) = PidsCage::new("bomb", 3000, Duration::from_secs(90)) else {
        return;
    };
    let b = Daemon::builder("bomb");
    let marker = b.dir().marker();
    let bound_ms = 6000u64;
    // Only the service goes into the cage: reapd itself stays outside, as a user would run it.
    let bomb = format!(
        "{} && exec perl -e 'while (1) {{ fork }}' {marker}",
        cage.enter()
    );
    let cfg = json!({
        "shutdown_timeout_ms": bound_ms,
        "services": { "bomb": { "cmd": ["sh", "-c", bomb], "stop_timeout_ms": 2000 } }
    });
    let mut d = b.config(cfg).start();
    let grew = wait_until(Duration::from_secs(30), || cage.members().len() > 2500);
    let mut w = d.watch();
    let sent = Instant::now();
    d.signal(libc::SIGTERM);
    let events = w.drain(Duration::from_millis(bound_ms) + Duration::from_secs(20));
    let status = d.wait_exit(Duration::from_secs(5));
    let took = sent.elapsed();
    let left = cage.members().len();
    // Empty the cage before anything else looks at processes (or a failed assertion unwinds).
    drop(cage);
    let log = d.log();
    if std::env::var_os("REAPD_KEEP_BOMB_LOG").is_some() {
        let _ = std::fs::write(format!("/tmp/bomb-{}.log", std::process::id()), &log);
    }
    let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
    assert!(grew, "the fork bomb never filled its cage");
    assert_eq!(
        status.map(code_of),
        Some(0),
        "reapd did not exit clean (took {took:?}, {left} left); log tail:\n{tail}"
    );
    assert_eq!(left, 0, "processes survived");
    let done = done_event(&events);
    assert_eq!(
        (&done["within_bound"], &done["survivors"]),
        (&json!(true), &json!([])),
        "{done}"
    );
    // Behaviour, not a benchmark: the bound plus a generous margin for a loaded machine.
    assert!(
        took < Duration::from_millis(bound_ms) + Duration::from_secs(5),
        "took {took:?} for a {bound_ms} ms bound"
    );
}

//! Nothing left behind while running, either: when a service's main process exits and leaves
//! children running, they are stopped with the service's stop procedure before it runs again
//! (unless the service says `"leftovers": "keep"`).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Live `sleep` processes of this daemon (found by its marker).
fn sleepers(d: &Daemon) -> Vec<Proc> {
    live_with_marker(&d.marker)
        .into_iter()
        .filter(|p| p.cmdline.starts_with("sleep 99") || p.cmdline.starts_with("sleep 1000"))
        .collect()
}

fn restarts(d: &Daemon, name: &str) -> u64 {
    d.service(name)
        .and_then(|s| s["restarts"].as_u64())
        .unwrap_or(0)
}

#[test]
fn what_an_exited_main_process_left_behind_is_stopped_before_the_restart() {
    // Each run leaves a sleeper behind (one of them ignores TERM) and exits.
    let cfg = json!({ "services": { "leaky": {
        "cmd": ["sh", "-c", "sleep 1000 & (trap '' TERM; exec sleep 999) & sleep 0.2; exit 3"],
        "stop_timeout_ms": 500
    } } });
    let mut d = Daemon::builder("leftovers").config(cfg).start();
    let mut w = d.watch();
    let mut seen = Vec::new();
    let mut most = 0;
    let enough = wait_until(Duration::from_secs(30), || {
        most = most.max(sleepers(&d).len());
        restarts(&d, "leaky") >= 4
    });
    assert!(enough, "never restarted 4 times; log:\n{}", d.log());
    // One run's two sleepers at most: each generation is gone before the next starts.
    assert!(most <= 2, "leftovers piled up: {most} sleepers at once");
    let stopped = w.until(SOON, &mut seen, |e| {
        e["event"] == "stopped" && e["service"] == "leaky" && e["leftovers"] == true
    });
    assert_eq!(
        stopped.as_ref().map(|e| &e["how"]),
        Some(&json!("killed")),
        "what its main process left behind is stopped, the deaf one killed: {seen:#?}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn leftovers_keep_leaves_them_running_until_shutdown() {
    let cfg = json!({ "services": { "forker": {
        "cmd": ["sh", "-c", "sleep 1000 & exit 0"],
        "leftovers": "keep"
    } } });
    let mut d = Daemon::builder("leftovers-keep").config(cfg).start();
    assert!(
        wait_until(Duration::from_secs(30), || sleepers(&d).len() >= 3),
        "kept leftovers should pile up; log:\n{}",
        d.log()
    );
    d.signal(libc::SIGTERM);
    // Shutdown still stops every one of them.
    d.assert_clean_exit();
}

#[test]
fn a_main_process_that_leaves_nothing_restarts_without_a_stop_report() {
    let cfg = json!({ "services": { "tidy": { "cmd": ["sh", "-c", "sleep 0.2; exit 1"] } } });
    let mut d = Daemon::builder("leftovers-none").config(cfg).start();
    let mut w = d.watch();
    // Two runs that start after the watch began: the first one's exit comes before the second
    // one's spawn, and so would a stop of what it left.
    let mut seen = Vec::new();
    let mut spawns = 0;
    let again = w.until(Duration::from_secs(30), &mut seen, |e| {
        if e["event"] == "spawned" {
            spawns += 1;
        }
        spawns == 2
    });
    assert!(again.is_some(), "not restarted twice: {seen:#?}");
    let exits = events_of(&seen, "exited");
    assert!(!exits.is_empty(), "{seen:#?}");
    assert_eq!(
        events_of(&seen, "stopped"),
        Vec::<&Value>::new(),
        "{seen:#?}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

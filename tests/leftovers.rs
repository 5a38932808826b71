//! Nothing left behind while running, either: when a service's main process exits and leaves
//! children running, they are stopped with the service's stop procedure before it runs again
//! (unless the service says `"leftovers": "keep"`).

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Live `sleep` processes of this daemon (found by its marker).
fn sleepers(d: &Daemon) -> Vec<Proc> {
    live_with_marker(&d.marker)
        .into_iter()
        .filter(|p| p.cmdline.starts_with("sleep 99") || p.cmdline.starts_with("sleep 1000"))
        .collect()
}

fn restarts(d: &Daemon, name: &str) -> u64 {
    let v = d.request(r#"{"cmd":"list"}"#);
    v["services"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
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
    let mut d = Daemon::start_in(TestDir::new("leftovers"), &cfg, &[]);
    let mut most = 0;
    let enough = wait_until(Duration::from_secs(30), || {
        most = most.max(sleepers(&d).len());
        restarts(&d, "leaky") >= 4
    });
    assert!(enough, "never restarted 4 times; log:\n{}", d.log());
    // One run's two sleepers at most: each generation is gone before the next starts.
    assert!(most <= 2, "leftovers piled up: {most} sleepers at once");
    let log = d.log();
    assert!(
        log.contains("leaky: what its main process left behind: stopped (killed)"),
        "{log}"
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
    let mut d = Daemon::start_in(TestDir::new("leftovers-keep"), &cfg, &[]);
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
    let mut d = Daemon::start_in(TestDir::new("leftovers-none"), &cfg, &[]);
    assert!(wait_until(Duration::from_secs(30), || restarts(&d, "tidy") >= 2));
    let log = d.log();
    assert!(!log.contains("left behind: stopped"), "{log}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

//! A stop signal during start-up: reapd blocks the signals it handles from its first instruction
//! (before `main`), so one that arrives before the handlers exist waits for them instead of
//! killing reapd, and is acted on before any service starts. What remains is the time the kernel
//! and the loader take before reapd's first instruction; `scripts/bench` measures it.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Bit of `sig` in a `/proc/PID/status` signal mask line (`SigBlk:`, `SigCgt:`).
fn mask_has(pid: i32, field: &str, sig: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(field))?.to_string();
            u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
        })
        .is_some_and(|m| m & (1 << (sig - 1)) != 0)
}

#[test]
fn sigterm_as_soon_as_reapd_runs_its_first_instruction_is_a_clean_shutdown() {
    for round in 0..10 {
        let dir = TestDir::new("early-term");
        let cfg = dir.write(
            "config.json",
            &json!({ "services": { "svc": { "cmd": ["sleep", "1000"] } } }).to_string(),
        );
        let mut d = Daemon::spawn_in(
            dir,
            Start {
                args: vec!["--config".into(), cfg.display().to_string()],
                env: Vec::new(),
                with_socket: true,
            },
        );
        let pid = d.pid();
        // The earliest moment reapd's own code has run: SIGTERM is blocked (or already caught).
        assert!(
            wait_until(SOON, || mask_has(pid, "SigBlk:", libc::SIGTERM)
                || mask_has(pid, "SigCgt:", libc::SIGTERM)),
            "round {round}: SIGTERM was never blocked or caught"
        );
        d.signal(libc::SIGTERM);
        let code = d.exit_code(Duration::from_secs(30));
        assert_eq!(code, 0, "round {round}: log:\n{}", d.log());
        assert!(!d.socket.exists(), "round {round}: socket left behind");
        let left = live_with_marker(&d.marker);
        assert!(left.is_empty(), "round {round}: left behind: {left:?}");
    }
}

#[test]
fn a_stop_signal_pending_at_start_up_starts_nothing() {
    // Started with SIGTERM already pending is the same as SIGTERM arriving before the handlers:
    // block it in the initial mask, and have the wrapper send it to itself before exec'ing reapd.
    let dir = TestDir::new("pending-term");
    let cfg = dir.write(
        "config.json",
        &json!({ "services": { "svc": { "cmd": ["sh", "-c", "echo started >> \"$TEST_DIR/ran\"; exec sleep 1000"] } } })
            .to_string(),
    );
    let mut d = Daemon::spawn_wrapped(
        dir,
        &["sh", "-c", "kill -TERM $$; exec \"$@\"", "_"],
        &[libc::SIGTERM],
        Start {
            args: vec!["--config".into(), cfg.display().to_string()],
            env: Vec::new(),
            with_socket: true,
        },
    );
    let code = d.exit_code(Duration::from_secs(30));
    assert_eq!(code, 0, "log:\n{}", d.log());
    assert!(
        d.dir.read("ran").is_empty(),
        "a service was started although the stop signal came first; log:\n{}",
        d.log()
    );
    assert!(live_with_marker(&d.marker).is_empty());
}

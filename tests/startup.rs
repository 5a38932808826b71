//! A stop signal during start-up: reapd blocks the signals it handles from its first instruction
//! (before `main`), so one that arrives before the handlers exist waits for them instead of
//! killing reapd, and is acted on before any service starts. What remains is the time the kernel
//! and the loader take before reapd's first instruction; `scripts/bench` measures it.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Whether `sig` is in a signal set of `pid` (`SigBlk`, `SigCgt`).
fn mask_has(pid: i32, key: &str, sig: i32) -> bool {
    mask_of(pid, key).is_some_and(|m| m & sig_bit(sig) != 0)
}

#[test]
fn sigterm_as_soon_as_reapd_runs_its_first_instruction_is_a_clean_shutdown() {
    for round in 0..10 {
        let mut d = Daemon::builder("early-term")
            .config(json!({ "services": { "svc": { "cmd": ["sleep", "1000"] } } }))
            .spawn();
        let pid = d.pid();
        // The earliest moment reapd's own code has run: SIGTERM is blocked (or already caught).
        assert!(
            wait_until(SOON, || mask_has(pid, "SigBlk", libc::SIGTERM)
                || mask_has(pid, "SigCgt", libc::SIGTERM)),
            "round {round}: SIGTERM was never blocked or caught"
        );
        d.signal(libc::SIGTERM);
        let code = d.exit_code(Duration::from_secs(30));
        assert_eq!(code, 0, "round {round}: log:\n{}", d.log());
        d.assert_nothing_left();
    }
}

#[test]
fn a_stop_signal_pending_at_start_up_starts_nothing() {
    // Started with SIGTERM already pending is the same as SIGTERM arriving before the handlers:
    // block it in the initial mask, and have the wrapper send it to itself before exec'ing reapd.
    let mut d = Daemon::builder("pending-term")
        .config(json!({ "services": { "svc": { "cmd": ["sh", "-c", "echo started >> \"$TEST_DIR/ran\"; exec sleep 1000"] } } }))
        .wrapper(["sh", "-c", "kill -TERM $$; exec \"$@\"", "_"])
        .blocked_signals(&[libc::SIGTERM])
        .spawn();
    let code = d.exit_code(Duration::from_secs(30));
    assert_eq!(code, 0, "log:\n{}", d.log());
    assert!(
        d.dir.read("ran").is_empty(),
        "a service was started although the stop signal came first; log:\n{}",
        d.log()
    );
    d.assert_nothing_left();
}

//! reapd as PID 1 of a new PID namespace (`unshare --pid --fork --mount-proc`), as in a
//! container: every orphan is reaped, and a signal from outside is a clean shutdown whose exit
//! status `unshare` passes on.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Whether reapd can be started in a PID namespace here; skips loudly when not.
fn can_unshare_pid() -> bool {
    if !require(is_root(), "needs root to create a PID namespace") || !require_tool("unshare") {
        return false;
    }
    let probe = run_bounded(
        Command::new("unshare").args(["--pid", "--fork", "--mount-proc", "true"]),
        SOON,
    );
    require(
        probe.code == Some(0),
        &format!(
            "`unshare --pid --fork --mount-proc true` failed ({:?}): {}",
            probe.code,
            probe.stderr.trim()
        ),
    )
}

/// reapd running as PID 1 under `unshare`.
struct Pid1 {
    /// `unshare`'s: it forks reapd, so the daemon's own pid is unshare's.
    d: Daemon,
    /// reapd's pid as seen from outside the namespace (the child of `unshare`).
    outer: i32,
}

impl Pid1 {
    fn start(tag: &str, config: Value) -> Pid1 {
        let d = Daemon::builder(tag)
            .config(config)
            .wrapper(["unshare", "--pid", "--fork", "--mount-proc"])
            .spawn();
        let mut outer = 0;
        assert!(
            wait_until(SOON, || {
                match children_of(d.pid()).as_slice() {
                    [reapd] => {
                        outer = reapd.pid;
                        true
                    }
                    _ => false,
                }
            }),
            "unshare never forked reapd"
        );
        assert!(
            wait_ping(&d.socket, SOON),
            "reapd as PID 1 never answered; log:\n{}",
            d.log()
        );
        Pid1 { d, outer }
    }

    /// Signals reapd from outside the namespace, then checks the clean exit through `unshare`.
    fn stop_with(&mut self, sig: i32) -> Vec<Value> {
        let mut w = self.d.watch();
        // SAFETY: kill has no memory effects; `outer` is unshare's unreaped child.
        unsafe { libc::kill(self.outer, sig) };
        let events = w.drain(Duration::from_secs(40));
        // unshare passes on reapd's status.
        self.d.assert_clean_exit();
        let done = done_event(&events);
        assert_eq!(done["clean"], true, "{done}");
        assert_eq!(done["survivors"], json!([]), "{done}");
        events
    }
}

#[test]
fn as_pid_1_it_reaps_two_hundred_orphans_and_exits_0_on_sigterm() {
    if !can_unshare_pid() {
        return;
    }
    let mut p = Pid1::start(
        "pid1-orphans",
        json!({ "services": { "orphans": { "cmd": ["sh", "-c",
            "for i in $(seq 200); do (sleep 0.5 &); done; : > \"$TEST_DIR/spawned\"; exec sleep 1000"] } } }),
    );
    let lock = std::fs::read_to_string(lock_of(&p.d.socket)).expect("lock");
    assert_eq!(lock.trim(), "1", "reapd sees itself as PID 1");
    // Each `(sleep 0.5 &)` subshell exits at once: its sleep is orphaned, and the namespace's
    // init (reapd) inherits it. Watch some of them arrive while the loop runs.
    let is_orphan = |c: &Proc| c.cmdline == "sleep 0.5";
    let mut adopted = 0;
    assert!(
        wait_until(Duration::from_secs(60), || {
            adopted = adopted.max(children_of(p.outer).iter().filter(|c| is_orphan(c)).count());
            p.d.dir.join("spawned").exists()
        }),
        "the service never finished forking; log:\n{}",
        p.d.log()
    );
    adopted = adopted.max(children_of(p.outer).iter().filter(|c| is_orphan(c)).count());
    assert!(adopted > 0, "no orphan was ever reparented to reapd");
    // Once every orphan has exited, none may linger as a zombie of reapd.
    let settled = wait_until(Duration::from_secs(30), || {
        let kids = children_of(p.outer);
        !kids.iter().any(is_orphan)
            && kids.iter().all(|c| c.state != 'Z')
            && kids.iter().any(|c| c.cmdline == "sleep 1000")
    });
    let kids = children_of(p.outer);
    assert!(
        settled,
        "zombies or orphans left: {} zombies, {} live orphans; log:\n{}",
        zombies_of(p.outer).len(),
        kids.iter()
            .filter(|c| is_orphan(c) && c.state != 'Z')
            .count(),
        p.d.log()
    );
    assert_eq!(
        kids.iter().map(|c| c.cmdline.as_str()).collect::<Vec<_>>(),
        ["sleep 1000"],
        "only the service remains"
    );
    let events = p.stop_with(libc::SIGTERM);
    assert_eq!(one_event(&events, "stopped")["service"], "orphans");
    assert_eq!(
        states(&events).first(),
        Some(&("draining", "SIGTERM")),
        "{events:#?}"
    );
}

#[test]
fn as_pid_1_one_sigint_is_a_clean_shutdown() {
    if !can_unshare_pid() {
        return;
    }
    let mut p = Pid1::start("pid1-int", db_and_web());
    assert!(
        wait_until(SOON, || children_of(p.outer).len() == 2),
        "two services under reapd: {:?}",
        children_of(p.outer)
    );
    let events = p.stop_with(libc::SIGINT);
    assert_eq!(services_in(&events, "stopped"), ["web", "db"], "{events:?}");
    let states = states(&events);
    assert_eq!(states.first(), Some(&("draining", "SIGINT")), "{events:#?}");
    assert!(
        !states.contains(&("killing", "second SIGINT")),
        "{events:#?}"
    );
}

//! Liveness: a stop ends only on proof that every process is gone. A process reapd cannot hold
//! a pidfd for is rescanned for; a scan that could not read everything proves nothing. Real
//! trees are stopped as they behave: a shell loop that replaces the command it lost, a trap
//! that runs a cleanup command.

use nix::sys::signal::Signal;

use super::{ms, secs};
use crate::core::sim::{Quirks, Shape, World};

/// Service `a` (2 s stop timeout) whose main process has one child with these quirks, started;
/// returns the world and the child's pid.
fn with_child(child: Quirks) -> (World, i32) {
    let mut w = World::new(r#"{"services": {"a": {"cmd": ["a"], "stop_timeout_ms": 2000}}}"#);
    w.shape("a", Shape::parent_of(Quirks::PLAIN, child));
    w.start();
    let child = w.k.children_of(w.main_of("a"))[0];
    (w, child)
}

#[test]
fn an_unwatchable_process_is_rescanned_for_and_its_stop_ends_after_it() {
    let (mut w, child) = with_child(Quirks::slow(ms(650)));
    w.k.unwatchable.insert(child);
    w.request(1, r#"{"cmd":"stop","name":"a"}"#);
    let scans = w.k.scans;
    w.run_to(ms(649));
    assert_eq!(w.count("stopped"), 0);
    assert!(
        w.k.scans - scans >= 6,
        "rescanned every 100 ms: {}",
        w.k.scans - scans
    );
    w.run_to(secs(5));
    // It exits at 650 ms unannounced; the rescan at 700 ms finds it gone, and its parent, held
    // all along, gets the signal at once and exits at once.
    assert_eq!(w.stopped("a"), Some(("exited".into(), ms(700))));
    assert_eq!(w.only_reply(1)["how"], "exited");
}

#[test]
fn an_unwatchable_deaf_process_is_killed_and_seen_gone_by_rescanning() {
    let (mut w, child) = with_child(Quirks::DEAF);
    w.k.unwatchable.insert(child);
    w.request(1, r#"{"cmd":"stop","name":"a"}"#);
    w.run_to(secs(5));
    assert_eq!(w.signalled_at(child, Signal::SIGKILL), Some(secs(2)));
    // Its death is not announced: the look right after the kill (for stragglers) sees it gone.
    assert_eq!(w.stopped("a"), Some(("killed".into(), secs(2))));
}

#[test]
fn an_incomplete_scan_never_ends_a_stop_early() {
    let (mut w, child) = with_child(Quirks::DEAF);
    // The child's entry cannot be read: only its parent is seen, asked, and gone at once.
    w.k.hidden.insert(child);
    w.request(1, r#"{"cmd":"stop","name":"a"}"#);
    w.run_to(secs(3));
    assert_eq!(w.now(), secs(3));
    assert_eq!(w.count("stopped"), 0, "{:?}", w.names());
    assert!(w.replies_to(1).is_empty());
    assert!(w.lives(child));
    // It can be read again: past the stop timeout, it is killed at the next look.
    w.k.hidden.clear();
    w.run_to(secs(5));
    assert!(!w.lives(child));
    // (The next rescan, every 100 ms while blind.)
    assert_eq!(w.signalled_at(child, Signal::SIGKILL), Some(ms(3100)));
    assert_eq!(w.stopped("a"), Some(("killed".into(), ms(3100))));
    assert_eq!(w.only_reply(1)["how"], "killed");
}

#[test]
fn a_shell_loop_is_stopped_together_with_the_command_it_starts_next() {
    let mut w = World::new(r#"{"services": {"a": {"cmd": ["sh"], "stop_timeout_ms": 5000}}}"#);
    w.shape("a", Shape::parent_of(Quirks::respawning(), Quirks::PLAIN));
    w.start();
    let shell = w.main_of("a");
    let first = w.k.children_of(shell)[0];
    w.request(1, r#"{"cmd":"stop","name":"a"}"#);
    w.run_to(secs(10));
    let terms = w.signalled_with(Signal::SIGTERM);
    // The command, then the shell: held while its command exited, it started no other.
    assert_eq!(terms, [first, shell]);
    assert_eq!(w.k.respawns, 0, "no replacement to chase");
    assert_eq!(w.stopped("a").map(|s| s.0), Some("exited".into()));
    assert!(w.ours().is_empty());
    assert!(w.signalled_with(Signal::SIGKILL).is_empty());
}

#[test]
fn a_trap_is_left_to_run_its_cleanup_command() {
    let mut w = World::new(r#"{"services": {"a": {"cmd": ["a"], "stop_timeout_ms": 5000}}}"#);
    w.shape("a", Shape::lone(Quirks::trapping(ms(500))));
    w.start();
    let main = w.main_of("a");
    w.request(1, r#"{"cmd":"stop","name":"a"}"#);
    let cleanup = w.k.children_of(main)[0];
    w.run_to(secs(10));
    assert!(
        w.signals_to(cleanup).is_empty(),
        "started after the signal: the trap's business"
    );
    assert_eq!(w.stopped("a"), Some(("exited".into(), ms(500))));
}

#[test]
fn a_trap_whose_cleanup_lingers_is_killed_at_the_stop_timeout() {
    let mut w = World::new(r#"{"services": {"a": {"cmd": ["a"], "stop_timeout_ms": 2000}}}"#);
    w.shape("a", Shape::lone(Quirks::trapping(secs(60))));
    w.start();
    let main = w.main_of("a");
    w.request(1, r#"{"cmd":"stop","name":"a"}"#);
    let cleanup = w.k.children_of(main)[0];
    w.run_to(secs(10));
    assert_eq!(w.signals_to(cleanup), [Signal::SIGSTOP, Signal::SIGKILL]);
    assert_eq!(w.stopped("a"), Some(("killed".into(), secs(2))));
}

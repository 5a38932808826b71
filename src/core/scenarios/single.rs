//! Single-command mode (`reapd -- CMD`): the command's exit ends reapd, with the command's own
//! status (128+N for signal N, 127 when it cannot be executed), or 1 when it exited 0 but the
//! cleanup after it was not clean; a few signals are passed on to its process group.

use nix::sys::signal::Signal;

use super::{clean, secs};
use crate::core::sim::{Quirks, Shape, World};
use crate::wire::events::{Event, ExitStatus};

/// Runs a world in which the command ends with `status` at 1 s.
fn ends_with(status: ExitStatus, shape: Shape) -> World {
    let mut w = World::single();
    w.shape("main", shape);
    w.start();
    let main = w.main_of("main");
    w.run_to(secs(1));
    w.end(main, status);
    w.run_to_exit();
    w
}

#[test]
fn a_command_that_exits_0_makes_reapd_exit_0() {
    let w = ends_with(ExitStatus::Code(0), Shape::default());
    assert_eq!(w.exited(), Some((0, secs(1))));
    assert!(clean(&w));
    assert!(w.events().iter().any(|e| matches!(e,
        Event::State { state, reason } if state == "draining" && reason == "command exited")));
}

#[test]
fn a_command_that_exits_7_makes_reapd_exit_7() {
    let w = ends_with(ExitStatus::Code(7), Shape::default());
    assert_eq!(w.exit_code(), 7);
    assert_eq!(
        w.count("restarting") + w.count("kept_down"),
        0,
        "no restart policy applies"
    );
}

#[test]
fn a_command_killed_by_signal_n_makes_reapd_exit_128_plus_n() {
    assert_eq!(
        ends_with(ExitStatus::Signal(9), Shape::default()).exit_code(),
        137
    );
    assert_eq!(
        ends_with(ExitStatus::Signal(11), Shape::default()).exit_code(),
        139
    );
}

#[test]
fn a_command_that_cannot_be_executed_makes_reapd_exit_127() {
    let mut w = World::single();
    w.k.unspawnable.push("main".into());
    w.start();
    w.run_to_exit();
    assert_eq!(w.exited(), Some((127, std::time::Duration::ZERO)));
    assert_eq!(w.count("spawn_failed"), 1);
    assert!(w.k.notices.contains(&crate::core::io::Notice::Ready));
}

#[test]
fn a_command_that_exits_0_leaving_an_unkillable_process_makes_reapd_exit_1() {
    let w = ends_with(
        ExitStatus::Code(0),
        Shape::parent_of(Quirks::PLAIN, Quirks::STUCK),
    );
    assert_eq!(w.exit_code(), 1);
    assert!(!clean(&w));
}

#[test]
fn a_failed_command_keeps_its_own_status_even_when_the_cleanup_is_not_clean() {
    let w = ends_with(
        ExitStatus::Code(3),
        Shape::parent_of(Quirks::PLAIN, Quirks::STUCK),
    );
    assert_eq!(w.exit_code(), 3);
}

#[test]
fn what_the_command_leaves_is_stopped_and_its_status_kept() {
    let w = ends_with(
        ExitStatus::Code(0),
        Shape::parent_of(Quirks::PLAIN, Quirks::DEAF),
    );
    let left = w.spawns_of("main")[0] + 1;
    assert_eq!(
        w.signals_to(left)[..3],
        [Signal::SIGSTOP, Signal::SIGTERM, Signal::SIGCONT],
        "held, then asked"
    );
    // The default stop timeout of 10 s, from the command's exit.
    assert_eq!(w.signalled_at(left, Signal::SIGKILL), Some(secs(11)));
    assert_eq!(w.exited(), Some((0, secs(11))));
}

#[test]
fn sigterm_stops_the_command_and_reapd_exits_0_when_clean() {
    let mut w = World::single();
    w.shape("main", Shape::fan(1));
    w.start();
    w.signal(Signal::SIGTERM);
    w.run_to_exit();
    assert_eq!(w.signalled_with(Signal::SIGTERM), [2001, 2000]);
    assert_eq!(w.exit_code(), 0, "the command did not exit by itself");
}

#[test]
fn forwarded_signals_reach_the_commands_process_group() {
    let mut w = World::single();
    w.shape(
        "main",
        Shape {
            main: Quirks::DEAF,
            children: vec![(0, Quirks::DEAF), (1, Quirks::DEAF)],
        },
    );
    w.start();
    let main = w.main_of("main");
    // A child that moved to a group (and session) of its own is not in the command's group.
    let apart = w.k.new_proc(main, 0, Some("main"), Quirks::DEAF);
    let sent = [
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGQUIT,
    ];
    for sig in sent {
        w.signal(sig);
    }
    for pid in [main, main + 1, main + 2] {
        assert_eq!(w.signals_to(pid), sent, "{pid}");
    }
    assert!(w.signals_to(apart.pid).is_empty());
    assert!(
        w.events()
            .iter()
            .all(|e| matches!(e, Event::Spawned { .. } | Event::Forwarded { count: 3, .. })),
        "{:?}",
        w.events()
    );
    assert_eq!(w.count("forwarded"), 5);
    assert_eq!(
        w.k.config_loads, 0,
        "SIGHUP is no reload here, SIGQUIT no shutdown"
    );
}

#[test]
fn reload_is_refused_in_single_command_mode() {
    let mut w = World::single();
    w.start();
    let reply = w.request(1, r#"{"cmd":"reload"}"#).expect("at once");
    assert_eq!(reply["code"], "failed");
    assert_eq!(w.k.config_loads, 0);
}

//! A service's life: restart policies and their back-off, what a main process leaves behind
//! (`leftovers`), readiness and status notices, the state file, and the recovery of what a
//! crashed predecessor left running.

use nix::sys::signal::Signal;

use super::{ms, secs};
use crate::core::io::Notice;
use crate::core::sim::{Quirks, Shape, World};
use crate::wire::events::{Event, ExitStatus};
use crate::wire::state_file::{Recorded, StateRecord};

fn policy(restart: &str) -> World {
    let mut w = World::new(&format!(
        r#"{{"services": {{"a": {{"cmd": ["a"], "restart": "{restart}", "stop_timeout_ms": 1000}}}}}}"#
    ));
    w.start();
    w
}

/// The last event about service `a` among restarting / kept_down.
fn decision(w: &World) -> Option<Event> {
    w.events()
        .into_iter()
        .rev()
        .find(|e| matches!(e, Event::Restarting { .. } | Event::KeptDown { .. }))
        .cloned()
}

#[test]
fn restart_always_restarts_even_after_a_clean_exit() {
    let mut w = policy("always");
    w.exit_main("a", 0);
    assert!(matches!(
        decision(&w),
        Some(Event::Restarting {
            delay_ms: 100,
            restarts: 1,
            ..
        })
    ));
    w.run_to(secs(1));
    assert_eq!(w.spawns_of("a").len(), 2);
    assert_eq!(w.k.launches[1].at - w.t0, ms(100));
}

#[test]
fn restart_on_failure_restarts_a_failure_and_keeps_a_clean_exit_down() {
    let mut w = policy("on-failure");
    w.exit_main("a", 2);
    assert!(matches!(decision(&w), Some(Event::Restarting { .. })));
    w.run_to(secs(1));
    w.exit_main("a", 0);
    assert_eq!(
        decision(&w),
        Some(Event::KeptDown {
            service: "a".into(),
            restart: "on-failure".into()
        })
    );
    w.run_to(secs(60));
    assert_eq!(w.spawns_of("a").len(), 2);
}

#[test]
fn restart_never_keeps_it_down_whatever_the_status() {
    let mut w = policy("never");
    w.crash_main("a");
    assert!(matches!(decision(&w), Some(Event::KeptDown { restart, .. }) if restart == "never"));
    w.run_to(secs(60));
    assert_eq!(w.spawns_of("a").len(), 1);
    let list = w.request(1, r#"{"cmd":"list"}"#).expect("list");
    let row = &list["services"][0];
    assert_eq!(
        (&row["state"], &row["last_exit"]["signo"]),
        (&"exited".into(), &9.into())
    );
}

#[test]
fn restart_backoff_doubles_and_resets_after_a_healthy_run() {
    let mut w = World::new(r#"{"services": {"a": {"cmd": ["x"]}}}"#);
    w.start();
    let mut delays = Vec::new();
    for _ in 0..4 {
        w.crash_main("a");
        let Some(Event::Restarting { delay_ms, .. }) = w.events().last().copied() else {
            panic!("{:?}", w.events().last())
        };
        delays.push(*delay_ms);
        w.k.now = w.sup.deadline().expect("restart deadline");
        w.feed(Vec::new());
    }
    assert_eq!(delays, vec![100, 200, 400, 800]);
    // Ten healthy seconds later, the next crash restarts after 100 ms again.
    w.advance(crate::core::service::HEALTHY_RUN);
    w.crash_main("a");
    assert!(matches!(
        w.events().last(),
        Some(Event::Restarting { delay_ms: 100, .. })
    ));
}

#[test]
fn restart_backoff_stops_doubling_at_30_s() {
    let mut w = policy("always");
    for _ in 0..12 {
        w.crash_main("a");
        let next = w.sup.deadline().expect("restart");
        w.k.now = next;
        w.feed(Vec::new());
    }
    assert!(matches!(
        decision(&w),
        Some(Event::Restarting {
            delay_ms: 30_000,
            restarts: 12,
            ..
        })
    ));
}

#[test]
fn leftovers_are_stopped_before_the_service_restarts() {
    let mut w = World::new(r#"{"services": {"a": {"cmd": ["a"], "stop_timeout_ms": 1000}}}"#);
    w.shape("a", Shape::parent_of(Quirks::PLAIN, Quirks::DEAF));
    w.start();
    let left = w.k.children_of(w.main_of("a"))[0];
    w.exit_main("a", 1);
    assert_eq!(
        w.signals_to(left),
        [Signal::SIGSTOP, Signal::SIGTERM, Signal::SIGCONT],
        "held, then asked"
    );
    assert!(decision(&w).is_none(), "no restart while its leftovers run");
    w.run_to(secs(2));
    assert_eq!(w.signalled_at(left, Signal::SIGKILL), Some(secs(1)));
    assert_eq!(
        w.first(|e| e.name() == "stopped").map(|s| s.1.clone()),
        Some(Event::Stopped {
            service: "a".into(),
            how: "killed".into(),
            elapsed_ms: 1000,
            leftovers: true,
            cgroup_empty: false,
        })
    );
    assert!(matches!(
        decision(&w),
        Some(Event::Restarting { delay_ms: 100, .. })
    ));
    assert_eq!(w.k.launches.last().map(|l| l.at - w.t0), Some(ms(1100)));
}

#[test]
fn a_main_process_that_left_nothing_is_restarted_without_a_stop_report() {
    let mut w = policy("always");
    w.exit_main("a", 1);
    assert_eq!(w.count("stopped"), 0);
    assert!(matches!(decision(&w), Some(Event::Restarting { .. })));
}

#[test]
fn leftovers_keep_leaves_them_running_until_the_shutdown() {
    let mut w = World::new(r#"{"services": {"a": {"cmd": ["a"], "leftovers": "keep"}}}"#);
    w.shape("a", Shape::parent_of(Quirks::PLAIN, Quirks::PLAIN));
    w.start();
    let left = w.k.children_of(w.main_of("a"))[0];
    w.exit_main("a", 1);
    assert!(matches!(decision(&w), Some(Event::Restarting { .. })));
    w.run_to(secs(1));
    assert_eq!(w.spawns_of("a").len(), 2);
    assert!(w.lives(left) && w.signals_to(left).is_empty());
    w.signal(Signal::SIGTERM);
    w.run_to_exit();
    assert_eq!(
        w.signals_to(left)[..3],
        [Signal::SIGSTOP, Signal::SIGTERM, Signal::SIGCONT],
        "stopped with its service"
    );
    assert_eq!(w.exit_code(), 0);
}

#[test]
fn ready_waits_for_a_crash_looping_service_but_not_for_one_kept_down() {
    let mut w = World::new(r#"{"services": {"a": {"cmd": ["a"]}, "b": {"cmd": ["b"]}}}"#);
    w.k.unspawnable.push("b".into());
    w.start();
    w.run_to(secs(5));
    assert!(
        !w.k.notices.contains(&Notice::Ready),
        "b is still on its way (restarting): {:?}",
        w.k.notices
    );
    w.signal(Signal::SIGTERM);
    assert!(
        w.k.notices.contains(&Notice::Ready),
        "a shutdown releases whoever waits for readiness"
    );
}

#[test]
fn ready_is_notified_once_every_service_is_up_and_never_while_one_is_kept_down() {
    let mut w = World::new(r#"{"services": {"a": {"cmd": ["a"]}, "c": {"cmd": ["c"]}}}"#);
    w.start();
    assert_eq!(
        w.k.notices,
        [
            Notice::Ready,
            Notice::Status("running: 2/2 services up".into())
        ]
    );
    w.run_to(secs(1));
    assert_eq!(
        w.k.notices.iter().filter(|n| **n == Notice::Ready).count(),
        1
    );
    // As `ctl ready` says: a service that should run and does not holds readiness back.
    let mut down = World::new(
        r#"{"services": {"a": {"cmd": ["a"]}, "b": {"cmd": ["b"], "restart": "never"}}}"#,
    );
    down.k.unspawnable.push("b".into());
    down.start();
    down.run_to(secs(1));
    assert!(
        !down.k.notices.contains(&Notice::Ready),
        "{:?}",
        down.k.notices
    );
}

#[test]
fn without_services_ready_is_notified_at_once() {
    let mut w = World::new(r#"{"services": {}}"#);
    w.start();
    assert_eq!(w.k.notices.first(), Some(&Notice::Ready));
}

#[test]
fn stopping_is_notified_when_the_shutdown_begins() {
    let mut w = policy("always");
    w.k.notices.clear();
    w.signal(Signal::SIGTERM);
    assert_eq!(
        w.k.notices[..2],
        [Notice::Stopping, Notice::Status("draining: SIGTERM".into())]
    );
}

#[test]
fn the_state_file_follows_the_processes_reapd_started() {
    let mut w = World::new(
        r#"{"services": {"a": {"cmd": ["a"]}, "b": {"cmd": ["b"]}}, "cleanup": [["h"]]}"#,
    );
    w.shape(
        "cleanup[0]",
        Shape::lone(Quirks::lives(secs(1), ExitStatus::Code(0))),
    );
    w.start();
    let rec = |w: &World, owner: &str, pid| Recorded {
        owner: owner.into(),
        pid,
        start: w.k.procs.get(&pid).map_or(0, |p| p.0.start),
    };
    let (a, b) = (w.main_of("a"), w.main_of("b"));
    assert_eq!(
        w.k.persisted,
        [vec![rec(&w, "a", a), rec(&w, "b", b)]],
        "one write for the burst"
    );
    w.crash_main("a");
    assert_eq!(w.k.persisted.last(), Some(&vec![rec(&w, "b", b)]));
    w.run_to(secs(1));
    let a2 = w.main_of("a");
    assert_eq!(
        w.k.persisted.last(),
        Some(&vec![rec(&w, "a", a2), rec(&w, "b", b)])
    );
    w.signal(Signal::SIGTERM);
    let hook = w.k.launches.last().expect("hook").pid;
    assert_eq!(
        w.k.persisted.last(),
        Some(&vec![rec(&w, "cleanup[0]", hook)])
    );
    let writes = w.k.persisted.len();
    w.run_to_exit();
    // Once the report is under way the file keeps its last word; a clean exit removes it.
    assert_eq!(w.k.persisted.len(), writes);
    assert_eq!(w.k.released, Some(false));
}

#[test]
fn a_crashed_predecessors_processes_are_stopped_before_anything_starts() {
    let mut w = World::new(r#"{"services": {"web": {"cmd": ["x"], "stop_signal": "INT"}}}"#);
    // What the predecessor left: its main process (now init's child) and a child of it.
    let main = w.k.new_proc(1, 0, Some("web"), Quirks::PLAIN);
    let child = w.k.new_proc(main.pid, main.pid, Some("web"), Quirks::PLAIN);
    w.start_after(StateRecord {
        reapd: Some((999, 1)),
        procs: vec![Recorded {
            owner: "web".into(),
            pid: main.pid,
            start: main.start,
        }],
        cgroup: None,
    });
    w.run_until(secs(30));
    assert_eq!(
        w.signalled_with(Signal::SIGINT),
        [child.pid, main.pid],
        "bottom-up, its own signal"
    );
    assert_eq!(w.k.spawned.len(), 1, "then the service starts");
    let first_spawn = w.k.spawned[0].0;
    let last_signal = w.k.signals.iter().map(|s| s.0).max().expect("signals");
    assert!(last_signal <= first_spawn);
    assert!(w.events().iter().any(|e| matches!(e,
        Event::Recovered { service, how } if service == "web" && how == "exited")));
    assert!(w.events().iter().any(|e| matches!(e,
        Event::LeftByPredecessor { service, pids } if service == "web" && pids == &vec![main.pid, child.pid])));
}

#[test]
fn a_predecessors_record_whose_pid_was_reused_is_left_alone() {
    let mut w = World::new(r#"{"services": {"web": {"cmd": ["x"]}}}"#);
    let stranger = w.foreign("someone else", Quirks::PLAIN);
    w.start_after(StateRecord {
        reapd: Some((999, 1)),
        procs: vec![Recorded {
            owner: "web".into(),
            pid: stranger.pid,
            start: stranger.start + 1,
        }],
        cgroup: None,
    });
    w.run_to(secs(1));
    assert!(w.signals_to(stranger.pid).is_empty());
    assert!(w.events().iter().any(|e| matches!(e,
        Event::Recovered { how, .. } if how == "idle")));
    assert_eq!(w.spawns_of("web").len(), 1);
    assert_eq!(w.k.notices.first(), Some(&Notice::Ready));
}

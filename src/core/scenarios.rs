//! Scenarios: the core's behaviour, specified on virtual time.
//!
//! Each test drives the whole supervisor through `core::turn` against the fake kernel of
//! `core::sim`, so what it proves holds for the daemon's own loop; each runs in milliseconds
//! whatever the timeouts. The kernel-only facts (pidfds, `/proc`, signals between real
//! processes) are the integration tests' business.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::core::sim::{ME, Quirks, Shape, World};
use crate::wire::events::Event;

const DEAF: Quirks = Quirks {
    ignores_term: true,
    unkillable: false,
    pending_stop: false,
};
const STUCK: Quirks = Quirks {
    ignores_term: true,
    unkillable: true,
    pending_stop: false,
};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn an_unkillable_process_is_listed_as_a_survivor_and_the_exit_status_is_1() {
    let mut w = World::new(
        r#"{"shutdown_timeout_ms": 3000, "services": {"db": {"cmd": ["x"], "stop_timeout_ms": 1000}}}"#,
    );
    w.k.shapes.insert(
        "db".into(),
        Shape {
            main: Quirks::default(),
            children: vec![(0, STUCK)],
        },
    );
    w.start();
    let stuck =
        w.k.procs
            .values()
            .find(|(p, q)| q.unkillable && p.ppid != ME)
            .map(|(p, _)| p.pid)
            .expect("child");
    w.signal(Signal::SIGTERM);
    w.run_until(secs(60));
    let (code, at) = w.exited().expect("exited");
    assert_eq!(code, 1);
    assert!(at <= secs(3), "within the bound: {at:?}");
    let Some(Event::Done {
        clean,
        survivors,
        exit_code,
        ..
    }) = w.done()
    else {
        panic!("no done")
    };
    assert!(!clean);
    assert_eq!(*exit_code, 1);
    assert_eq!(
        survivors.iter().map(|s| s.pid).collect::<Vec<_>>(),
        vec![stuck]
    );
    assert!(
        w.signalled_with(Signal::SIGKILL).contains(&stuck),
        "it was killed, it just did not die"
    );
}

#[test]
fn a_clean_shutdown_exits_0_and_signals_children_before_their_parent() {
    let mut w = World::new(r#"{"services": {"web": {"cmd": ["x"]}}}"#);
    w.k.shapes.insert("web".into(), Shape::fan(2));
    w.start();
    w.signal(Signal::SIGTERM);
    w.run_until(secs(60));
    assert_eq!(w.exited().map(|e| e.0), Some(0));
    let terms = w.signalled_with(Signal::SIGTERM);
    let main = 2000;
    assert_eq!(terms.last(), Some(&main), "main last: {terms:?}");
    assert_eq!(terms.len(), 3);
    assert!(matches!(w.done(), Some(Event::Done { clean: true, .. })));
}

#[test]
fn stubborn_services_in_three_waves_finish_within_the_bound() {
    let mut w = World::new(
        r#"{"shutdown_timeout_ms": 6000, "services": {
            "a": {"cmd": ["x"], "stop_timeout_ms": 20000},
            "b": {"cmd": ["x"], "after": ["a"], "stop_timeout_ms": 20000},
            "c": {"cmd": ["x"], "after": ["b"], "stop_timeout_ms": 20000}}}"#,
    );
    for s in ["a", "b", "c"] {
        w.k.shapes.insert(s.into(), Shape::deaf());
    }
    w.start();
    w.signal(Signal::SIGTERM);
    w.run_until(secs(60));
    let (code, at) = w.exited().expect("exit");
    assert_eq!(code, 0);
    assert!(at <= secs(6), "{at:?}");
    let killed: Vec<&str> = w
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Stopped { service, how, .. } if how == "killed" => Some(service.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(killed, ["c", "b", "a"]);
}

#[test]
fn orphans_are_stopped_with_their_service_or_in_the_first_wave() {
    let mut w = World::new(r#"{"services": {"web": {"cmd": ["x"]}}}"#);
    w.start();
    // Reparented to reapd with only the marker to go on; and two with no clue at all.
    let ours = w.k.new_proc(ME, 5555, Some("web"), DEAF);
    let stray = w.k.new_proc(ME, 6666, None, Quirks::default());
    let deaf_stray = w.k.new_proc(ME, 7777, None, DEAF);
    w.signal(Signal::SIGTERM);
    w.run_until(secs(60));
    assert_eq!(w.exited().map(|e| e.0), Some(0));
    let terms = w.signalled_with(Signal::SIGTERM);
    assert!(
        terms.contains(&ours.pid),
        "stopped gracefully as part of web"
    );
    assert!(w.events().iter().any(|e| matches!(e, Event::Killed { service: Some(s), pids, .. } if s == "web" && pids == &vec![ours.pid])));
    // Unknown orphans are asked to stop with the first wave, and killed when it ends.
    assert!(terms.contains(&stray.pid) && terms.contains(&deaf_stray.pid));
    assert!(w.alive().is_empty());
    assert!(w.events().iter().any(
        |e| matches!(e, Event::Killed { service: None, pids, .. } if pids == &vec![deaf_stray.pid])
    ));
}

#[test]
fn a_second_sigint_kills_everything_at_once() {
    let mut w = World::new(r#"{"services": {"a": {"cmd": ["x"], "stop_timeout_ms": 20000}}}"#);
    w.k.shapes.insert("a".into(), Shape::deaf());
    w.start();
    w.signal(Signal::SIGINT);
    w.advance(Duration::from_millis(10));
    w.signal(Signal::SIGINT);
    w.run_until(secs(60));
    let (code, at) = w.exited().expect("exit");
    assert_eq!(code, 0);
    assert!(at < secs(1), "no waiting for the 20 s timeout: {at:?}");
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
fn a_broken_event_loop_still_kills_bottom_up_and_reports() {
    let mut w = World::new(r#"{"services": {"a": {"cmd": ["x"], "stop_timeout_ms": 20000}}}"#);
    w.k.shapes.insert(
        "a".into(),
        Shape {
            main: DEAF,
            children: vec![(0, DEAF), (1, DEAF)],
        },
    );
    w.start();
    w.feed(vec![crate::core::io::Input::LoopFailed {
        error: "epoll_wait: bad file descriptor".into(),
    }]);
    w.run_until(secs(60));
    let (code, at) = w.exited().expect("exit");
    assert_eq!(code, 0, "{:?}", w.done());
    assert!(at < secs(1), "killed at once: {at:?}");
    assert!(w.alive().is_empty());
    let kills = w.signalled_with(Signal::SIGKILL);
    assert_eq!(kills, [2002, 2001, 2000], "deepest first");
}

#[test]
fn stop_replies_once_every_process_is_gone_and_the_service_stays_down() {
    let mut w = World::new(r#"{"services": {"web": {"cmd": ["x"]}}}"#);
    w.k.shapes.insert("web".into(), Shape::fan(2));
    w.start();
    // The fake kernel acts at once: the whole stop fits in the request's own turn.
    w.request(7, r#"{"cmd":"stop","name":"web","id":1}"#);
    w.run_until(secs(30));
    let replies = w.replies_to(7);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["how"], "exited");
    assert_eq!(replies[0]["id"], 1);
    assert!(w.alive().is_empty());
    let list = w.request(8, r#"{"cmd":"list"}"#).expect("list");
    assert_eq!(list["services"][0]["state"], "stopped", "{list}");
    assert_eq!(w.k.spawned.len(), 1, "not restarted");
}

#[test]
fn single_command_mode_exits_with_the_commands_status() {
    let mut w = World::with_mode(
        crate::core::io::Mode::Single,
        r#"{"services": {"main": {"cmd": ["x"], "restart": "never"}}}"#,
    );
    w.start();
    w.exit_main("main", 7);
    w.run_until(secs(60));
    assert_eq!(w.exited().map(|e| e.0), Some(7));
}

#[test]
fn a_crashed_predecessors_processes_are_stopped_before_anything_starts() {
    let mut w = World::new(r#"{"services": {"web": {"cmd": ["x"], "stop_signal": "INT"}}}"#);
    // What the predecessor left: its main process (now init's child) and a child of it.
    let main = w.k.new_proc(1, 0, Some("web"), Quirks::default());
    let child =
        w.k.new_proc(main.pid, main.pid, Some("web"), Quirks::default());
    w.start_after(crate::wire::state_file::StateRecord {
        reapd: Some((999, 1)),
        procs: vec![crate::wire::state_file::Recorded {
            owner: "web".into(),
            pid: main.pid,
            start: main.start,
        }],
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
    assert!(w.events().iter().any(
        |e| matches!(e, Event::Recovered { service, how } if service == "web" && how == "exited")
    ));
}

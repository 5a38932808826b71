//! Budgets: how the graceful stops share the bound, path by path through the stop graph. With a
//! 12 s bound the reserve is 1 s and the exit margin 200 ms, so the stops share 10.8 s and the
//! hard deadline is 11.8 s.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::{ms, secs, stop_timeout_of};
use crate::core::sim::{Quirks, Shape, World};
use crate::wire::events::{Event, PlanEntry};

/// When `service`'s processes were killed.
fn killed_at(w: &World, service: &str) -> Duration {
    w.when(|e| matches!(e, Event::Killed { service: Some(s), .. } if s == service))
}

#[test]
fn the_services_of_one_path_share_the_bound() {
    let mut w = World::new(
        r#"{"shutdown_timeout_ms": 12000, "services": {
            "a": {"cmd": ["a"], "stop_timeout_ms": 20000},
            "b": {"cmd": ["b"], "after": ["a"], "stop_timeout_ms": 20000},
            "c": {"cmd": ["c"], "after": ["b"], "stop_timeout_ms": 1000}}}"#,
    );
    for s in ["a", "b", "c"] {
        w.shape(s, Shape::deaf());
    }
    w.start();
    w.signal(Signal::SIGTERM);
    w.run_to_exit();
    let entry = |s: &str, after: &str, requested_ms, share_ms, starts_ms| PlanEntry {
        service: s.into(),
        after: (!after.is_empty())
            .then(|| after.to_string())
            .into_iter()
            .collect(),
        requested_ms,
        share_ms,
        starts_ms,
    };
    assert_eq!(
        w.first(|e| e.name() == "shutdown_plan")
            .map(|p| p.1.clone()),
        Some(Event::ShutdownPlan {
            budget_ms: 12000,
            reserve_ms: 1000,
            // c asks for less than a third of 10.8 s and keeps it; b and a split the rest.
            services: vec![
                entry("c", "", 1000, 1000, 0),
                entry("b", "c", 20000, 4900, 1000),
                entry("a", "b", 20000, 4900, 5900)
            ],
        })
    );
    assert_eq!(
        ["c", "b", "a"].map(|s| killed_at(&w, s)),
        [ms(1000), ms(5900), ms(10800)]
    );
    assert_eq!(w.exited(), Some((0, ms(10800))));
}

#[test]
fn time_a_service_does_not_use_passes_on_to_the_services_after_it() {
    let mut w = World::new(
        r#"{"shutdown_timeout_ms": 12000, "services": {
            "a": {"cmd": ["a"], "stop_timeout_ms": 20000},
            "b": {"cmd": ["b"], "after": ["a"], "stop_timeout_ms": 20000}}}"#,
    );
    w.shape("a", Shape::deaf());
    w.shape("b", Shape::lone(Quirks::slow(secs(1))));
    w.start();
    w.signal(Signal::SIGTERM);
    w.run_to_exit();
    assert_eq!(stop_timeout_of(&w, "b"), 5400, "half of 10.8 s planned");
    assert_eq!(w.stopped("b"), Some(("exited".into(), secs(1))));
    // a gets everything b left: 10.8 s - 1 s.
    assert_eq!(stop_timeout_of(&w, "a"), 9800);
    assert_eq!(killed_at(&w, "a"), ms(10800));
}

#[test]
fn the_reserve_is_kept_for_killing_and_is_all_the_kill_gets() {
    let mut w = World::new(
        r#"{"shutdown_timeout_ms": 12000, "services": {"a": {"cmd": ["a"], "stop_timeout_ms": 30000}}}"#,
    );
    w.shape("a", Shape::parent_of(Quirks::DEAF, Quirks::STUCK));
    w.start();
    w.signal(Signal::SIGTERM);
    w.run_to_exit();
    // The stop is clipped to the graceful stops' 10.8 s; killing may use the reserve up to the hard
    // deadline (11.8 s), where the report is due whatever still lives.
    assert_eq!(stop_timeout_of(&w, "a"), 10800);
    assert_eq!(killed_at(&w, "a"), ms(10800));
    assert_eq!(w.exited(), Some((1, ms(11800))));
}

#[test]
fn a_path_of_twenty_fits_inside_a_short_bound() {
    // s00 <- s01 <- ... <- s19: twenty services in a row, each asking 10 s, inside one second.
    let services: Vec<String> = (0..20)
        .map(|i| {
            let after = if i == 0 {
                String::new()
            } else {
                format!(r#", "after": ["s{:02}"]"#, i - 1)
            };
            format!(r#""s{i:02}": {{"cmd": ["x"], "stop_timeout_ms": 10000{after}}}"#)
        })
        .collect();
    let mut w = World::new(&format!(
        r#"{{"shutdown_timeout_ms": 1000, "services": {{{}}}}}"#,
        services.join(", ")
    ));
    for i in 0..20 {
        w.shape(&format!("s{i:02}"), Shape::deaf());
    }
    w.start();
    w.signal(Signal::SIGTERM);
    w.run_to_exit();
    let killed: Vec<String> = w
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Killed {
                service: Some(s), ..
            } => Some(s.clone()),
            _ => None,
        })
        .collect();
    let expected: Vec<String> = (0..20).rev().map(|i| format!("s{i:02}")).collect();
    assert_eq!(killed, expected, "one after another, last started first");
    // 1 s less a 200 ms reserve and a 50 ms exit margin, shared by twenty: 37.5 ms each.
    assert_eq!(stop_timeout_of(&w, "s19"), 37);
    let (code, at) = w.exited().expect("exit");
    assert_eq!(code, 0);
    assert!(at <= ms(1000), "{at:?}");
}

#[test]
fn independent_services_stop_in_parallel_each_capped_by_its_share() {
    let mut w = World::new(
        r#"{"shutdown_timeout_ms": 6000, "services": {
            "a": {"cmd": ["a"], "stop_timeout_ms": 30000},
            "b": {"cmd": ["b"], "stop_timeout_ms": 2000}}}"#,
    );
    w.shape("a", Shape::deaf());
    w.shape("b", Shape::deaf());
    w.start();
    w.signal(Signal::SIGTERM);
    w.run_to_exit();
    // Nothing depends on anything: each path is one service, and gets 6 s - 500 ms - 200 ms.
    assert_eq!(stop_timeout_of(&w, "a"), 5300);
    assert_eq!(stop_timeout_of(&w, "b"), 2000, "asks less, keeps it");
    assert_eq!(killed_at(&w, "b"), secs(2));
    assert_eq!(killed_at(&w, "a"), ms(5300));
    assert_eq!(
        w.signalled_at(w.spawns_of("a")[0], Signal::SIGTERM),
        w.signalled_at(w.spawns_of("b")[0], Signal::SIGTERM),
        "asked together"
    );
}

#[test]
fn three_stubborn_services_in_a_row_finish_within_the_bound() {
    let mut w = World::new(
        r#"{"shutdown_timeout_ms": 6000, "services": {
            "a": {"cmd": ["x"], "stop_timeout_ms": 20000},
            "b": {"cmd": ["x"], "after": ["a"], "stop_timeout_ms": 20000},
            "c": {"cmd": ["x"], "after": ["b"], "stop_timeout_ms": 20000}}}"#,
    );
    for s in ["a", "b", "c"] {
        w.shape(s, Shape::deaf());
    }
    w.start();
    w.signal(Signal::SIGTERM);
    w.run_to_exit();
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
fn a_stubborn_service_holds_back_only_what_depends_on_it() {
    // api (stubborn) starts after db; web (quick) starts after cache.
    let mut w = World::new(
        r#"{"shutdown_timeout_ms": 12000, "services": {
            "db": {"cmd": ["x"], "stop_timeout_ms": 5000},
            "api": {"cmd": ["x"], "after": ["db"], "stop_timeout_ms": 5000},
            "cache": {"cmd": ["x"], "stop_timeout_ms": 5000},
            "web": {"cmd": ["x"], "after": ["cache"], "stop_timeout_ms": 5000}}}"#,
    );
    w.shape("api", Shape::deaf());
    w.shape("web", Shape::lone(Quirks::slow(ms(300))));
    w.start();
    w.signal(Signal::SIGTERM);
    w.run_to_exit();
    let term = |s: &str| w.signalled_at(w.spawns_of(s)[0], Signal::SIGTERM);
    assert_eq!(term("api"), Some(Duration::ZERO));
    assert_eq!(term("web"), Some(Duration::ZERO));
    // cache goes as soon as web is gone, not when api's stop ends.
    assert_eq!(term("cache"), Some(ms(300)));
    assert_eq!(w.stopped("cache"), Some(("exited".into(), ms(300))));
    // db waits for api, killed at the end of its own timeout, and then gets its whole own.
    assert_eq!(killed_at(&w, "api"), secs(5));
    assert_eq!(term("db"), Some(secs(5)));
    assert_eq!(stop_timeout_of(&w, "db"), 5000);
    assert_eq!(w.exit_code(), 0);
}

//! One of every event, and their JSON forms.

use super::*;

/// One of every event, for tests that must cover them all.
pub(crate) fn one_of_each() -> Vec<Event> {
    let s = || "x".to_string();
    vec![
        Event::State {
            state: s(),
            reason: s(),
        },
        Event::AlreadyStopping {
            trigger: s(),
            state: s(),
        },
        Event::Unheeded {
            signal: s(),
            why: Unheeded::NoAction,
        },
        Event::Forwarded {
            signal: s(),
            pgid: Some(4),
            count: 2,
        },
        Event::NoServices,
        Event::Spawned {
            service: s(),
            pid: 1,
        },
        Event::SpawnFailed {
            service: s(),
            error: s(),
        },
        Event::Exited {
            service: s(),
            pid: 1,
            status: ExitStatus::Signal(9),
            after_ms: Some(3),
        },
        Event::Restarting {
            service: s(),
            delay_ms: 100,
            restarts: 1,
        },
        Event::Waiting {
            service: s(),
            on: vec![s()],
        },
        Event::Ready {
            service: s(),
            after_ms: 5,
            check: s(),
        },
        Event::NotReady {
            service: s(),
            why: s(),
            after_ms: 5,
        },
        Event::Completed {
            service: s(),
            after_ms: 5,
        },
        Event::Failed {
            service: s(),
            why: s(),
            essential: true,
        },
        Event::Health {
            service: s(),
            status: "failing".into(),
            failures: 1,
            detail: s(),
        },
        Event::KeptDown {
            service: s(),
            restart: "never".into(),
        },
        Event::Stopping {
            service: s(),
            signal: s(),
            timeout_ms: 5,
            scope: "tree".into(),
        },
        Event::Signalled {
            service: Some(s()),
            signal: s(),
            pids: vec![1, 2],
        },
        Event::Killed {
            service: None,
            count: 1,
            pids: vec![3],
        },
        Event::Stopped {
            service: s(),
            how: "exited".into(),
            elapsed_ms: 1,
            leftovers: true,
            cgroup_empty: true,
        },
        Event::Removed { service: s() },
        Event::SignalSent {
            service: s(),
            pid: 2,
            signal: s(),
        },
        Event::ShutdownPlan {
            budget_ms: 1,
            reserve_ms: 1,
            services: vec![PlanEntry {
                service: s(),
                after: vec![s()],
                requested_ms: 2,
                share_ms: 1,
                starts_ms: 3,
            }],
        },
        Event::Sweep {
            pid: 1,
            cmdline: s(),
            reason: s(),
        },
        Event::CleanupStarted {
            index: 0,
            cmd: vec![s()],
            limit_ms: 9,
        },
        Event::CleanupOverran { index: 0 },
        Event::Cleanup {
            index: 0,
            cmd: vec![s()],
            ok: true,
            result: s(),
            elapsed_ms: 0,
        },
        Event::Reloading { by: s() },
        Event::Reloaded {
            added: vec![],
            removed: vec![s()],
            changed: vec![],
        },
        Event::ReloadRejected {
            errors: vec![s()],
            total: 1,
        },
        Event::ConfigWarning { warning: s() },
        Event::Recovering {
            predecessor: Some(7),
            services: vec![s()],
        },
        Event::LeftByPredecessor {
            service: s(),
            pids: vec![8],
        },
        Event::Recovered {
            service: s(),
            how: "exited".into(),
        },
        Event::Done {
            clean: false,
            within_bound: true,
            elapsed_ms: 0,
            bound_ms: 30_000,
            exit_code: 1,
            survivors: vec![Survivor {
                pid: 5,
                state: "D".into(),
                cmdline: s(),
            }],
            failures: vec![s()],
        },
    ]
}

#[test]
fn every_event_is_named_and_listed_and_reads_back_as_itself() {
    let all = one_of_each();
    let names: Vec<&str> = all.iter().map(Event::name).collect();
    assert_eq!(names, EVENTS);
    for ev in all {
        let line = event_line(&ev, 42);
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["event"], ev.name(), "{line}");
        assert_eq!(v["ts_ms"], 42);
        let back: Event = serde_json::from_str(&line).expect("reads back");
        assert_eq!(back, ev, "{line}");
    }
}

#[test]
fn lines_keep_their_established_shape() {
    let line = event_line(
        &Event::Killed {
            service: None,
            count: 2,
            pids: vec![5, 4],
        },
        99,
    );
    assert_eq!(
        line,
        "{\"count\":2,\"event\":\"killed\",\"pids\":[5,4],\"ts_ms\":99}\n"
    );
    let line = event_line(
        &Event::Exited {
            service: "a".into(),
            pid: 3,
            status: ExitStatus::Signal(9),
            after_ms: None,
        },
        1,
    );
    assert!(
        line.contains("\"status\":{\"signal\":\"SIGKILL\",\"signo\":9}"),
        "{line}"
    );
}

//! The run side: starting in dependency order once what a service is `after` is ready,
//! readiness checks and their deadline, one-shots, health checks, restart limits, essential
//! services, `autostart`, and the `ready` and `wait` requests.

use nix::sys::signal::Signal;

use super::{ms, secs};
use crate::core::io::{Input, Notice};
use crate::core::sim::{Quirks, Shape, World};
use crate::wire::events::{Event, ExitStatus};

fn world(services: &str) -> World {
    let mut w = World::new(&format!(r#"{{"services": {services}}}"#));
    w.start();
    w
}

fn state(w: &mut World, name: &str) -> String {
    let reply = w.request(99, r#"{"cmd":"list"}"#).expect("list answers");
    reply["services"]
        .as_array()
        .and_then(|l| l.iter().find(|r| r["name"] == name))
        .map(|r| r["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[test]
fn a_dependent_starts_in_the_turn_its_dependency_becomes_ready_and_not_before() {
    let mut w = world(
        r#"{"db": {"cmd": ["db"], "ready": {"tcp": 5432}},
            "web": {"cmd": ["web"], "after": ["db"]}}"#,
    );
    assert_eq!(w.spawns_of("web").len(), 0, "web waits for db");
    assert_eq!(state(&mut w, "db"), "starting");
    assert_eq!(state(&mut w, "web"), "waiting");
    assert_eq!(w.count("waiting"), 1);
    w.run_to(ms(500));
    assert!(w.k.probes.len() >= 3, "db is checked while it starts");
    assert_eq!(w.spawns_of("web").len(), 0);
    w.k.accepting.insert("db".into());
    w.run_to(secs(3));
    let ready = w.when(|e| matches!(e, Event::Ready { service, .. } if service == "db"));
    let spawned = w.when(|e| matches!(e, Event::Spawned { service, .. } if service == "web"));
    assert_eq!(
        ready, spawned,
        "web is spawned in the same turn db is ready"
    );
    assert_eq!(state(&mut w, "db"), "running");
    assert!(w.k.notices.contains(&Notice::Ready), "reapd is ready now");
}

#[test]
fn polled_checks_back_off_to_one_second_and_a_notification_needs_no_polling() {
    let mut w = world(r#"{"db": {"cmd": ["db"], "ready": {"tcp": 1, "interval_ms": 100}}}"#);
    w.run_to(secs(10));
    let times: Vec<u64> =
        w.k.probes
            .iter()
            .map(|(t, _)| (*t - w.t0).as_millis() as u64)
            .collect();
    assert_eq!(times[..6], [100, 200, 400, 800, 1600, 2600], "{times:?}");

    let mut n = world(r#"{"db": {"cmd": ["db"], "ready": {"notify_fd": 3}}}"#);
    n.run_to(secs(2));
    assert!(n.k.probes.is_empty(), "a notification fd is not polled");
    let pid = n.main_of("db");
    n.feed(vec![Input::Notified {
        service: "db".into(),
        pid,
    }]);
    assert_eq!(state(&mut n, "db"), "running");
    assert_eq!(n.count("ready"), 1);
}

#[test]
fn a_service_not_ready_in_time_is_a_failed_start_and_its_policy_decides() {
    let mut w = world(
        r#"{"db": {"cmd": ["db"], "ready": {"notify_fd": 3}, "ready_timeout_ms": 2000, "stop_timeout_ms": 500}}"#,
    );
    w.run_to(secs(3));
    let not_ready = w.when(|e| matches!(e, Event::NotReady { .. }));
    assert_eq!(not_ready, secs(2));
    assert!(
        w.signals_to(w.spawns_of("db")[0])
            .contains(&Signal::SIGTERM),
        "stopped through its stop procedure"
    );
    assert_eq!(w.count("restarting"), 1, "restart always: tried again");
    assert_eq!(w.spawns_of("db").len(), 2);

    let mut never = world(
        r#"{"db": {"cmd": ["db"], "ready": {"notify_fd": 3}, "ready_timeout_ms": 2000, "restart": "never"},
            "web": {"cmd": ["web"], "after": ["db"]}}"#,
    );
    never.run_to(secs(5));
    assert_eq!(state(&mut never, "db"), "failed");
    assert_eq!(
        state(&mut never, "web"),
        "waiting",
        "its dependent never starts"
    );
    assert!(
        !never.k.notices.contains(&Notice::Ready),
        "readiness is said only when it is true"
    );
    let r = never.request(7, r#"{"cmd":"ready"}"#).expect("answered");
    assert_eq!(r["ready"], false);
    assert_eq!(r["not_ready"], serde_json::json!(["db", "web"]));
    let w = never
        .request(8, r#"{"cmd":"wait"}"#)
        .expect("answered at once");
    assert_eq!(
        (w["ready"].clone(), w["not_ready"].clone()),
        (serde_json::json!(false), serde_json::json!(["db", "web"])),
        "nothing is on its way: waiting would be for ever"
    );
}

#[test]
fn a_one_shot_runs_before_its_dependents_and_is_done() {
    let mut w = World::new(
        r#"{"services": {"migrate": {"cmd": ["migrate"], "type": "oneshot"},
                         "web": {"cmd": ["web"], "after": ["migrate"]}}}"#,
    );
    w.shape(
        "migrate",
        Shape::lone(Quirks::lives(ms(300), ExitStatus::Code(0))),
    );
    w.start();
    assert_eq!(w.spawns_of("web").len(), 0);
    w.run_to(secs(2));
    assert_eq!(state(&mut w, "migrate"), "done");
    assert_eq!(w.spawns_of("migrate").len(), 1, "not run again");
    assert_eq!(
        w.when(|e| matches!(e, Event::Spawned { service, .. } if service == "web")),
        ms(300)
    );
    assert_eq!(w.count("completed"), 1);
}

#[test]
fn a_failed_one_shot_blocks_its_dependents_and_an_essential_one_ends_the_run_with_its_status() {
    let run = |essential: bool| {
        let mut w = World::new(&format!(
            r#"{{"services": {{"migrate": {{"cmd": ["migrate"], "type": "oneshot", "essential": {essential}}},
                             "web": {{"cmd": ["web"], "after": ["migrate"]}}}}}}"#
        ));
        w.shape(
            "migrate",
            Shape::lone(Quirks::lives(ms(300), ExitStatus::Code(3))),
        );
        w.start();
        w.run_to(secs(2));
        w
    };
    let mut w = run(false);
    assert_eq!(state(&mut w, "migrate"), "failed");
    assert_eq!(state(&mut w, "web"), "waiting");
    assert_eq!(w.spawns_of("web").len(), 0);
    assert!(w.exited().is_none(), "not essential: reapd goes on");

    let mut e = run(true);
    e.run_to_exit();
    assert_eq!(e.exit_code(), 3, "the one-shot's own status");
    assert!(matches!(
        e.first(|ev| matches!(ev, Event::Failed { .. })),
        Some((
            _,
            Event::Failed {
                essential: true,
                ..
            }
        ))
    ));
}

#[test]
fn an_essential_service_kept_down_stops_everything_bottom_up_and_exits_with_its_status() {
    let mut w = World::new(
        r#"{"services": {"db": {"cmd": ["db"]},
                         "app": {"cmd": ["app"], "after": ["db"], "essential": true, "restart": "never"}}}"#,
    );
    w.start();
    w.run_to(secs(1));
    let db = w.main_of("db");
    w.exit_main("app", 4);
    w.run_to_exit();
    assert_eq!(w.exit_code(), 4);
    assert!(
        w.signals_to(db).contains(&Signal::SIGTERM),
        "db stopped gracefully"
    );
    assert!(!w.signals_to(db).contains(&Signal::SIGKILL));
    assert!(!w.lives(db));
}

#[test]
fn health_failures_in_a_row_restart_the_service_and_the_restart_limit_fails_it() {
    let mut w = World::new(
        r#"{"services": {"web": {"cmd": ["web"], "stop_timeout_ms": 500,
            "health": {"tcp": 80, "interval_ms": 1000, "timeout_ms": 100, "retries": 2},
            "max_restarts": 1, "restart_window_ms": 60000}}}"#,
    );
    w.k.accepting.insert("web".into());
    w.start();
    w.run_to(ms(3500));
    assert_eq!(state(&mut w, "web"), "running");
    assert_eq!(w.count("health"), 1, "healthy, said once: {:?}", w.names());
    w.k.accepting.clear();
    w.run_to(ms(5500));
    assert_eq!(
        w.spawns_of("web").len(),
        2,
        "restarted after 2 failures in a row"
    );
    let first = w.spawns_of("web")[0];
    assert!(w.signals_to(first).contains(&Signal::SIGTERM));
    w.run_to(secs(20));
    assert_eq!(
        state(&mut w, "web"),
        "failed",
        "the second restart exceeds max_restarts"
    );
    assert_eq!(w.spawns_of("web").len(), 2);
    // A client's start forgives the limit.
    w.k.accepting.insert("web".into());
    w.request(3, r#"{"cmd":"start","name":"web"}"#);
    assert_eq!(w.spawns_of("web").len(), 3);
}

#[test]
fn an_exec_health_check_that_hangs_is_killed_at_its_timeout() {
    let mut w = World::new(
        r#"{"services": {"web": {"cmd": ["web"],
            "health": {"exec": ["check"], "interval_ms": 1000, "timeout_ms": 200, "retries": 3}}}}"#,
    );
    w.shape("web.check", Shape::lone(Quirks::PLAIN));
    w.start();
    w.run_to(ms(1500));
    let check =
        w.k.spawned
            .iter()
            .find(|(_, who, _)| matches!(who, crate::core::io::Spawnee::Check { .. }))
            .map(|(_, _, pid)| *pid)
            .expect("the check ran");
    assert_eq!(w.signalled_at(check, Signal::SIGKILL), Some(ms(1200)));
    assert!(!w.lives(check));
    assert!(matches!(
        w.first(|e| matches!(e, Event::Health { .. })),
        Some((_, Event::Health { failures: 1, .. }))
    ));
}

#[test]
fn restarting_a_dependency_does_not_duplicate_its_running_dependents() {
    let mut w = world(
        r#"{"db": {"cmd": ["db"], "ready": {"tcp": 1}},
            "web": {"cmd": ["web"], "after": ["db"]}}"#,
    );
    w.k.accepting.insert("db".into());
    w.run_to(secs(1));
    assert_eq!(w.spawns_of("web").len(), 1);
    w.crash_main("db");
    w.run_to(secs(5));
    assert_eq!(w.spawns_of("db").len(), 2);
    assert_eq!(w.count("ready"), 2);
    assert_eq!(
        w.spawns_of("web").len(),
        1,
        "web kept running, no duplicate"
    );
}

#[test]
fn autostart_false_waits_for_a_client_and_wait_answers_once_ready() {
    let mut w = world(
        r#"{"db": {"cmd": ["db"], "ready": {"tcp": 1}},
            "tool": {"cmd": ["tool"], "autostart": false}}"#,
    );
    assert_eq!(w.spawns_of("tool").len(), 0);
    assert_eq!(state(&mut w, "tool"), "stopped");
    assert_eq!(
        w.request(5, r#"{"cmd":"wait"}"#),
        None,
        "not ready yet: held"
    );
    w.k.accepting.insert("db".into());
    w.run_to(secs(1));
    assert_eq!(w.only_reply(5)["ready"], true, "answered once db is ready");
    let r = w.request(6, r#"{"cmd":"ready"}"#).expect("answered");
    assert_eq!(r["ready"], true, "tool is not meant to run: {r}");
    w.request(7, r#"{"cmd":"start","name":"tool"}"#);
    assert_eq!(w.spawns_of("tool").len(), 1);
}

#[test]
fn without_checks_an_idle_supervisor_has_no_deadline() {
    let mut w = world(r#"{"a": {"cmd": ["a"]}, "b": {"cmd": ["b"], "after": ["a"]}}"#);
    w.run_to(secs(1));
    assert_eq!(w.spawns_of("b").len(), 1);
    assert_eq!(w.sup.deadline(), None);
}

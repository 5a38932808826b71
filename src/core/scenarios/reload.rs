//! Reload races: a new config while services stop, restart or wait in back-off; a file with
//! errors changes nothing; once the shutdown began, no config is applied any more.

use nix::sys::signal::Signal;
use serde_json::json;

use super::{ms, secs};
use crate::core::io::Input;
use crate::core::sim::{Shape, World};
use crate::wire::events::Event;

/// `web` (deaf, 2 s stop timeout) and `db`, with `web`'s command given.
fn cfg(web_cmd: &str) -> String {
    format!(
        r#"{{"services": {{"web": {{"cmd": ["{web_cmd}"], "stop_timeout_ms": 2000}}, "db": {{"cmd": ["db"]}}}}}}"#
    )
}

fn world() -> World {
    let mut w = World::new(&cfg("web"));
    w.shape("web", Shape::deaf());
    w.start();
    w
}

/// Reloads `cfg` by request on connection 9; returns the reply.
fn reload(w: &mut World, cfg: &str) -> serde_json::Value {
    w.queue_config(cfg);
    w.request(9, r#"{"cmd":"reload"}"#)
        .expect("reload answers at once")
}

/// The command of every spawn of `service`, in order.
fn cmds_of(w: &World, service: &str) -> Vec<String> {
    w.k.launches
        .iter()
        .filter(|l| l.who == crate::core::io::Spawnee::Service(service.into()))
        .map(|l| l.cmd.join(" "))
        .collect()
}

#[test]
fn sighup_starts_added_services_stops_removed_ones_and_restarts_changed_ones() {
    let mut w = World::new(r#"{"services": {"a": {"cmd": ["a"]}, "b": {"cmd": ["b"]}}}"#);
    w.start();
    w.queue_config(r#"{"services": {"a": {"cmd": ["a", "-v"]}, "c": {"cmd": ["c"]}}}"#);
    w.signal(Signal::SIGHUP);
    w.run_to(secs(1));
    assert_eq!(
        w.first(|e| e.name() == "reloaded").map(|r| r.1.clone()),
        Some(Event::Reloaded {
            added: vec!["c".into()],
            removed: vec!["b".into()],
            changed: vec!["a".into()]
        })
    );
    assert_eq!(cmds_of(&w, "a"), ["a", "a -v"]);
    assert_eq!(cmds_of(&w, "c"), ["c"]);
    assert_eq!(w.count("removed"), 1);
    let list = w.request(1, r#"{"cmd":"list"}"#).expect("list");
    let names: Vec<&str> = list["services"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["a", "c"]);
}

#[test]
fn a_reload_that_changes_nothing_stops_nothing() {
    let mut w = world();
    let reply = reload(&mut w, &cfg("web"));
    assert_eq!(
        reply,
        json!({"ok": true, "added": [], "removed": [], "changed": []})
    );
    w.run_to(secs(5));
    assert_eq!(w.count("stopping"), 0);
    assert_eq!(w.k.launches.len(), 2);
}

#[test]
fn a_rejected_config_reports_its_errors_and_changes_nothing() {
    let mut w = world();
    w.queue_config_errors(&[
        ("services.web.cmd", "expected an array of strings"),
        ("services.db.stop_timeout_ms", "expected an integer"),
    ]);
    let reply = w.request(9, r#"{"cmd":"reload","id":3}"#).expect("at once");
    assert_eq!(
        reply,
        json!({"ok": false, "id": 3, "code": "config_error",
               "error": "config rejected (2 errors); nothing changed",
               "errors": ["services.web.cmd: expected an array of strings",
                          "services.db.stop_timeout_ms: expected an integer"]})
    );
    assert!(
        w.events()
            .iter()
            .any(|e| matches!(e, Event::ReloadRejected { total: 2, .. }))
    );
    w.run_to(secs(5));
    assert_eq!(w.count("stopping") + w.count("reloaded"), 0);
    assert_eq!(w.k.launches.len(), 2);
}

#[test]
fn a_rejected_config_reports_at_most_a_hundred_errors() {
    let mut w = world();
    let paths: Vec<String> = (0..250).map(|i| format!("services.s{i}.cmd")).collect();
    let errors: Vec<(&str, &str)> = paths.iter().map(|p| (p.as_str(), "missing")).collect();
    w.queue_config_errors(&errors);
    let reply = w.request(9, r#"{"cmd":"reload"}"#).expect("at once");
    let listed = reply["errors"].as_array().expect("errors");
    assert_eq!(listed.len(), 101);
    assert!(
        listed[100]
            .as_str()
            .unwrap_or("")
            .starts_with("… and 150 more"),
        "{}",
        listed[100]
    );
    assert!(
        w.events()
            .iter()
            .any(|e| matches!(e, Event::ReloadRejected { total: 250, .. }))
    );
}

#[test]
fn a_service_removed_then_added_back_before_its_stop_ends_stays() {
    let mut w = world();
    let old = w.main_of("web");
    assert_eq!(
        reload(&mut w, r#"{"services": {"db": {"cmd": ["db"]}}}"#)["removed"],
        json!(["web"])
    );
    w.run_to(ms(500));
    assert_eq!(reload(&mut w, &cfg("web"))["added"], json!(["web"]));
    w.run_to(secs(5));
    assert_eq!(
        w.signalled_at(old, Signal::SIGKILL),
        Some(secs(2)),
        "its stop goes on"
    );
    assert_eq!(w.count("removed"), 0, "it never left");
    assert_eq!(cmds_of(&w, "web"), ["web", "web"]);
    assert_eq!(w.k.launches.last().map(|l| l.at - w.t0), Some(secs(2)));
}

#[test]
fn a_service_removed_then_added_back_changed_starts_with_its_new_definition() {
    let mut w = world();
    reload(&mut w, r#"{"services": {"db": {"cmd": ["db"]}}}"#);
    w.run_to(ms(500));
    assert_eq!(reload(&mut w, &cfg("web2"))["added"], json!(["web"]));
    w.run_to(secs(5));
    assert_eq!(cmds_of(&w, "web"), ["web", "web2"]);
    assert_eq!(w.count("removed"), 0);
}

#[test]
fn a_service_changed_twice_while_it_stops_starts_with_the_last_definition() {
    let mut w = world();
    assert_eq!(reload(&mut w, &cfg("web2"))["changed"], json!(["web"]));
    w.run_to(ms(500));
    assert_eq!(reload(&mut w, &cfg("web3"))["changed"], json!(["web"]));
    assert_eq!(w.count("stopping"), 1, "one stop for both");
    w.run_to(secs(5));
    assert_eq!(cmds_of(&w, "web"), ["web", "web3"]);
    assert_eq!(w.k.launches.last().map(|l| l.at - w.t0), Some(secs(2)));
}

#[test]
fn a_changed_service_in_back_off_takes_its_new_definition_at_its_restart() {
    let mut w = world();
    w.crash_main("db");
    w.advance(ms(50));
    assert_eq!(
        reload(
            &mut w,
            r#"{"services": {"web": {"cmd": ["web"], "stop_timeout_ms": 2000}, "db": {"cmd": ["db2"]}}}"#
        )["changed"],
        json!(["db"])
    );
    assert_eq!(w.count("stopping"), 0, "nothing to stop");
    w.run_to(secs(1));
    assert_eq!(cmds_of(&w, "db"), ["db", "db2"]);
    assert_eq!(
        w.k.launches.last().map(|l| l.at - w.t0),
        Some(ms(100)),
        "at its restart time"
    );
}

#[test]
fn a_reloaded_bound_holds_for_the_next_shutdown() {
    let mut w = world();
    reload(
        &mut w,
        r#"{"shutdown_timeout_ms": 3000, "services": {"web": {"cmd": ["web"], "stop_timeout_ms": 2000}, "db": {"cmd": ["db"]}}}"#,
    );
    w.signal(Signal::SIGTERM);
    w.run_to_exit();
    assert!(matches!(
        w.first(|e| e.name() == "shutdown_plan"),
        Some((
            _,
            Event::ShutdownPlan {
                budget_ms: 3000,
                ..
            }
        ))
    ));
    assert!(matches!(w.done(), Some(Event::Done { bound_ms: 3000, .. })));
}

#[test]
fn a_config_read_after_the_shutdown_began_is_not_applied() {
    let mut w = world();
    w.queue_config(r#"{"services": {"web": {"cmd": ["web"]}, "db": {"cmd": ["db"]}, "new": {"cmd": ["new"]}}}"#);
    // SIGHUP and SIGTERM in the same wake-up: the file is read, the shutdown comes first.
    w.feed(vec![
        Input::Signal(Signal::SIGHUP),
        Input::Signal(Signal::SIGTERM),
    ]);
    assert_eq!(w.k.config_loads, 1);
    assert_eq!(w.count("reloaded"), 0);
    w.run_to_exit();
    assert!(w.spawns_of("new").is_empty());
    assert_eq!(w.exit_code(), 0);
}

#[test]
fn a_reload_request_whose_config_arrives_after_the_shutdown_began_is_refused() {
    let mut w = world();
    w.queue_config(&cfg("web2"));
    w.feed(vec![
        World::request_input(9, r#"{"cmd":"reload","id":1}"#),
        Input::Signal(Signal::SIGTERM),
    ]);
    let reply = w.only_reply(9);
    assert_eq!(
        (&reply["code"], &reply["id"]),
        (&"shutting_down".into(), &1.into())
    );
    w.run_to_exit();
    assert_eq!(cmds_of(&w, "web"), ["web"]);
}

#[test]
fn sighup_after_the_shutdown_began_is_unheeded() {
    let mut w = world();
    w.signal(Signal::SIGTERM);
    w.signal(Signal::SIGHUP);
    assert_eq!(w.k.config_loads, 0);
    assert!(w.events().iter().any(|e| matches!(e,
        Event::Unheeded { signal, why: crate::wire::events::Unheeded::ShuttingDown } if signal == "SIGHUP")));
}

#[test]
fn a_reload_while_a_restart_stops_the_service_starts_it_with_the_new_definition() {
    let mut w = world();
    assert_eq!(w.request(1, r#"{"cmd":"restart","name":"web"}"#), None);
    w.run_to(ms(500));
    assert_eq!(reload(&mut w, &cfg("web2"))["changed"], json!(["web"]));
    w.run_to(secs(5));
    assert_eq!(cmds_of(&w, "web"), ["web", "web2"]);
    assert_eq!(w.only_reply(1)["pid"], w.main_of("web"));
}

#[test]
fn a_service_removed_in_back_off_leaves_at_once() {
    let mut w = world();
    w.crash_main("db");
    reload(
        &mut w,
        r#"{"services": {"web": {"cmd": ["web"], "stop_timeout_ms": 2000}}}"#,
    );
    assert_eq!(w.stopped("db").map(|s| s.0), Some("idle".into()));
    assert_eq!(w.count("removed"), 1);
    w.run_to(secs(5));
    assert_eq!(w.spawns_of("db").len(), 1);
}

/// A service a client stopped stays down until started again, whatever a reload changes in its
/// definition: as it does when the reload comes after its stop ended, so when the reload comes
/// while the stop is still in progress.
#[test]
fn a_service_stopped_by_a_client_stays_down_across_a_reload_that_changes_it() {
    for reload_at in [secs(3), ms(500)] {
        let mut w =
            World::new(r#"{"services": {"web": {"cmd": ["web"], "stop_timeout_ms": 2000}}}"#);
        w.shape("web", Shape::deaf());
        w.start();
        w.request(1, r#"{"cmd":"stop","name":"web"}"#);
        w.run_to(reload_at);
        w.queue_config(r#"{"services": {"web": {"cmd": ["web2"], "stop_timeout_ms": 2000}}}"#);
        assert_eq!(
            w.request(9, r#"{"cmd":"reload"}"#).expect("reload")["changed"][0],
            "web"
        );
        w.run_to(secs(6));
        assert_eq!(w.only_reply(1)["how"], "killed");
        assert_eq!(
            w.spawns_of("web").len(),
            1,
            "reload at {reload_at:?}: started again"
        );
        // The new definition is what the next start runs.
        let reply = w
            .request(2, r#"{"cmd":"start","name":"web"}"#)
            .expect("started");
        assert_eq!(reply["state"], "running");
        assert_eq!(
            w.k.launches.last().map(|l| l.cmd.clone()),
            Some(vec!["web2".to_string()])
        );
    }
}

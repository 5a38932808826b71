//! Control requests and their waiters: `start`, `stop` and `restart` reply when they are done
//! (with the request's `id`), exactly once, or with an error once they can no longer get there;
//! a closed connection drops its waiters; after the shutdown began, nothing is started,
//! stopped or reloaded any more.

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use super::{ms, secs};
use crate::core::sim::{Quirks, Shape, World};
use crate::wire::events::Event;

/// A deaf `web` with a 2 s stop timeout, a plain `db`.
fn world() -> World {
    let mut w = World::new(
        r#"{"shutdown_timeout_ms": 6000, "grace_ms": 1000, "services": {
            "web": {"cmd": ["web"], "stop_timeout_ms": 2000},
            "db": {"cmd": ["db"]}}}"#,
    );
    w.shape("web", Shape::deaf());
    w.start();
    w
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}

#[test]
fn stop_replies_once_every_process_is_gone_and_the_service_stays_down() {
    let mut w = World::new(r#"{"services": {"web": {"cmd": ["x"]}}}"#);
    // A worker that takes 100 ms over its own graceful exit.
    w.shape(
        "web",
        Shape::parent_of(Quirks::PLAIN, Quirks::slow(ms(100))),
    );
    w.start();
    assert_eq!(
        w.request(7, r#"{"cmd":"stop","name":"web","id":1}"#),
        None,
        "not yet"
    );
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
fn stop_of_a_deaf_service_replies_killed_at_its_stop_timeout() {
    let mut w = world();
    w.request(1, r#"{"cmd":"stop","name":"web","id":"s"}"#);
    w.run_to(secs(5));
    assert_eq!(
        w.only_reply(1),
        &json!({"ok": true, "id": "s", "name": "web", "state": "stopped", "how": "killed", "elapsed_ms": 2000})
    );
}

#[test]
fn start_replies_once_it_runs_with_its_pid_and_the_requests_id() {
    let mut w = world();
    w.request(1, r#"{"cmd":"stop","name":"db"}"#);
    let reply = w.request(2, r#"{"cmd":"start","name":"db","id":{"n": [1, 2]}}"#);
    let new = w.main_of("db");
    assert_eq!(
        reply,
        Some(
            json!({"ok": true, "id": {"n": [1, 2]}, "name": "db", "state": "running", "pid": new})
        )
    );
    assert_eq!(w.spawns_of("db").len(), 2);
}

#[test]
fn start_of_a_running_service_answers_at_once_and_changes_nothing() {
    let mut w = world();
    let pid = w.main_of("db");
    let reply = w
        .request(1, r#"{"cmd":"start","name":"db"}"#)
        .expect("at once");
    assert_eq!(
        (&reply["state"], &reply["pid"]),
        (&"running".into(), &pid.into())
    );
    assert_eq!(w.spawns_of("db"), [pid]);
}

#[test]
fn restart_replies_once_the_service_runs_again() {
    let mut w = World::new(r#"{"services": {"db": {"cmd": ["db"]}}}"#);
    w.shape("db", Shape::lone(Quirks::slow(secs(1))));
    w.start();
    w.request(1, r#"{"cmd":"restart","name":"db","id":7}"#);
    w.run_to(ms(500));
    w.request(2, r#"{"cmd":"restart","name":"db"}"#);
    assert!(w.replies_to(1).is_empty() && w.replies_to(2).is_empty());
    w.run_to(secs(5));
    assert_eq!(
        w.spawns_of("db").len(),
        2,
        "one new process for both requests"
    );
    let new = w.spawns_of("db")[1];
    assert_eq!(
        w.k.launches[1].at - w.t0,
        secs(1),
        "once the old one exited"
    );
    assert_eq!(
        w.only_reply(1),
        &json!({"ok": true, "id": 7, "name": "db", "state": "running", "pid": new})
    );
    assert_eq!(w.only_reply(2)["pid"], new);
}

#[test]
fn restart_of_a_stopping_service_starts_it_once_stopped() {
    let mut w = world();
    let old = w.main_of("web");
    w.request(1, r#"{"cmd":"stop","name":"web"}"#);
    w.run_to(ms(500));
    assert_eq!(w.request(2, r#"{"cmd":"restart","name":"web"}"#), None);
    w.run_to(secs(5));
    assert_eq!(w.only_reply(1)["how"], "killed");
    let new = w.main_of("web");
    assert_ne!(new, old);
    assert_eq!(w.only_reply(2)["pid"], new);
    assert_eq!(w.k.launches.last().map(|l| l.at - w.t0), Some(secs(2)));
}

#[test]
fn start_of_a_service_being_removed_is_refused() {
    let mut w = world();
    w.queue_config(r#"{"services": {"db": {"cmd": ["db"]}}}"#);
    let reload = w.request(1, r#"{"cmd":"reload"}"#).expect("reload");
    assert_eq!(reload["removed"], json!(["web"]));
    for cmd in ["start", "restart"] {
        let reply = w
            .request(2, &format!(r#"{{"cmd":"{cmd}","name":"web"}}"#))
            .expect("at once");
        assert_eq!(code(&reply), "no_such_service", "{reply}");
        assert!(
            reply["error"]
                .as_str()
                .unwrap_or("")
                .contains("being removed")
        );
    }
    w.run_to(secs(5));
    assert_eq!(w.count("removed"), 1);
    assert_eq!(w.spawns_of("web").len(), 1);
}

#[test]
fn after_the_shutdown_began_only_questions_are_answered() {
    let mut w = world();
    w.signal(Signal::SIGTERM);
    for line in [
        r#"{"cmd":"start","name":"db"}"#,
        r#"{"cmd":"stop","name":"db"}"#,
        r#"{"cmd":"restart","name":"db"}"#,
        r#"{"cmd":"signal","name":"web","signal":"HUP"}"#,
        r#"{"cmd":"reload"}"#,
    ] {
        let reply = w.request(1, line).expect("at once");
        assert_eq!(code(&reply), "shutting_down", "{line}: {reply}");
    }
    assert_eq!(w.k.config_loads, 0);
    assert_eq!(
        w.request(2, r#"{"cmd":"ping"}"#),
        Some(json!({"ok": true, "pong": true}))
    );
    assert_eq!(
        w.request(2, r#"{"cmd":"status"}"#).expect("status")["state"],
        "draining"
    );
    assert!(w.request(2, r#"{"cmd":"list"}"#).is_some());
}

#[test]
fn waiters_get_shutting_down_when_grace_ms_runs_out() {
    let mut w = world();
    w.request(1, r#"{"cmd":"stop","name":"web","id":1}"#);
    w.run_to(ms(500));
    w.signal(Signal::SIGTERM);
    w.run_to(ms(1500));
    let reply = w.only_reply(1);
    assert_eq!(code(reply), "shutting_down");
    assert_eq!(reply["id"], 1);
    assert_eq!(w.k.closed_idle, 1, "idle connections are closed with it");
    w.run_to_exit();
    assert_eq!(w.replies_to(1).len(), 1, "and never a second reply");
}

#[test]
fn a_restart_cut_short_by_the_shutdown_is_answered_shutting_down() {
    let mut w = world();
    w.request(1, r#"{"cmd":"restart","name":"web"}"#);
    w.run_to(ms(500));
    w.signal(Signal::SIGTERM);
    w.run_to_exit();
    let reply = w.only_reply(1);
    assert_eq!(code(reply), "shutting_down", "{reply}");
    assert_eq!(w.spawns_of("web").len(), 1, "not started again");
}

#[test]
fn a_closed_connection_drops_its_waiters() {
    let mut w = world();
    w.request(1, r#"{"cmd":"stop","name":"web"}"#);
    w.request(2, r#"{"cmd":"stop","name":"web"}"#);
    w.close(1);
    w.run_to(secs(5));
    assert!(w.replies_to(1).is_empty());
    assert_eq!(w.only_reply(2)["how"], "killed", "the stop itself goes on");
}

#[test]
fn a_misspelt_service_gets_no_such_service_with_a_suggestion() {
    let mut w = world();
    let reply = w
        .request(1, r#"{"cmd":"stop","name":"webb"}"#)
        .expect("at once");
    assert_eq!(code(&reply), "no_such_service");
    assert!(
        reply["error"].as_str().unwrap_or("").contains("\"web\""),
        "{reply}"
    );
}

#[test]
fn start_of_a_command_that_cannot_be_executed_fails() {
    let mut w = world();
    w.request(1, r#"{"cmd":"stop","name":"db"}"#);
    w.k.unspawnable.push("db".into());
    let reply = w
        .request(2, r#"{"cmd":"start","name":"db"}"#)
        .expect("at once");
    assert_eq!(code(&reply), "failed");
    assert!(
        w.events()
            .iter()
            .any(|e| matches!(e, Event::SpawnFailed { service, .. } if service == "db"))
    );
}

#[test]
fn signal_goes_to_the_main_process_only_while_there_is_one() {
    let mut w = world();
    let main = w.main_of("db");
    let reply = w.request(1, r#"{"cmd":"signal","name":"db","signal":"USR1"}"#);
    assert_eq!(
        reply,
        Some(json!({"ok": true, "name": "db", "pid": main, "signal": "SIGUSR1"}))
    );
    assert_eq!(w.signals_to(main), [Signal::SIGUSR1]);
    w.request(2, r#"{"cmd":"stop","name":"db"}"#);
    let reply = w
        .request(3, r#"{"cmd":"signal","name":"db","signal":"USR1"}"#)
        .expect("at once");
    assert_eq!(code(&reply), "not_running");
}

#[test]
fn stop_of_a_service_in_back_off_cancels_its_restart() {
    let mut w = world();
    w.crash_main("db");
    let reply = w
        .request(1, r#"{"cmd":"stop","name":"db"}"#)
        .expect("nothing to wait for");
    assert_eq!(
        (&reply["state"], &reply["how"]),
        (&"stopped".into(), &"idle".into())
    );
    w.run_to(secs(5));
    assert_eq!(w.spawns_of("db").len(), 1, "never restarted");
}

#[test]
fn start_of_a_service_in_back_off_starts_it_at_once() {
    let mut w = world();
    w.crash_main("db");
    w.advance(ms(10));
    let reply = w
        .request(1, r#"{"cmd":"start","name":"db"}"#)
        .expect("at once");
    assert_eq!(reply["state"], "running");
    w.run_to(secs(5));
    assert_eq!(
        w.spawns_of("db").len(),
        2,
        "and not once more at the end of the delay"
    );
    assert_eq!(w.k.launches[2].at - w.t0, ms(10));
}

/// A `restart` (or a `start`) still waiting for its service when a `stop` of the same service
/// cancels it can no longer get what it waits for; like any waiter, it must be answered then,
/// not left hanging until its client gives up or the shutdown's grace runs out.
#[test]
fn a_restart_overridden_by_a_stop_is_answered() {
    let mut w = World::new(r#"{"services": {"web": {"cmd": ["web"], "stop_timeout_ms": 2000}}}"#);
    w.shape("web", Shape::deaf());
    w.start();
    w.request(1, r#"{"cmd":"restart","name":"web","id":1}"#);
    w.run_to(ms(500));
    w.request(2, r#"{"cmd":"stop","name":"web","id":2}"#);
    w.run_to(secs(5));
    assert_eq!(w.only_reply(2)["how"], "killed");
    assert_eq!(w.spawns_of("web").len(), 1, "the stop wins");
    let reply = w.only_reply(1);
    assert_eq!(
        (&reply["ok"], &reply["id"]),
        (&false.into(), &1.into()),
        "{reply}"
    );
    assert_eq!(reply["code"], "superseded");
}

#[test]
fn logs_is_answered_for_a_known_service_and_refused_for_an_unknown_one() {
    let mut w = World::new(
        r#"{"services": {"web": {"cmd": ["web"], "log": "prefix"}, "db": {"cmd": ["db"]}}}"#,
    );
    w.start();
    // The lines are the edge's; the simulation has none, but says whether they are captured.
    let r = w
        .request(1, r#"{"cmd":"logs","name":"web","id":4}"#)
        .expect("reply");
    assert_eq!(
        (&r["logs"], &r["captured"], &r["id"]),
        (&json!("web"), &json!(true), &json!(4))
    );
    let r = w
        .request(2, r#"{"cmd":"logs","name":"db","follow":true}"#)
        .expect("reply");
    assert_eq!(r["captured"], false, "{r}");
    let r = w
        .request(3, r#"{"cmd":"logs","name":"dbb"}"#)
        .expect("reply");
    assert_eq!(code(&r), "no_such_service", "{r}");
    // Not a mutation: still answered while shutting down.
    w.signal(Signal::SIGTERM);
    let r = w
        .request(4, r#"{"cmd":"logs","name":"web"}"#)
        .expect("reply");
    assert_eq!(r["ok"], true, "{r}");
}

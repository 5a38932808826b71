//! Reloading the config file through the real binary, by SIGHUP and by the `reload` command:
//! added services start, removed ones are stopped like at shutdown and leave `list`, changed ones
//! restart with their new definition, unchanged ones keep running, and a bad file changes nothing.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// `pid` and every live descendant of it carrying the daemon's marker.
fn tree(d: &Daemon, pid: i32) -> Vec<i32> {
    tree_of(pid, &live_with_marker(&d.marker))
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    n.sort();
    n
}

#[test]
fn sighup_starts_added_services_and_stops_removed_ones() {
    let b = Daemon::builder("addrm");
    let cfg = json!({ "services": {
        "keep": { "cmd": ["sleep", "1000"] },
        "gone": { "cmd": chain_cmd(b.dir(), "gone.log", 2, "exit") },
        "stubborn": { "cmd": chain_cmd(b.dir(), "stubborn.log", 2, "ignore"), "stop_timeout_ms": 1000 },
    }});
    let mut d = b.config(cfg).start();
    wait_chain_started(&d.dir, "gone.log", 2);
    wait_chain_started(&d.dir, "stubborn.log", 2);
    let before = d.running(&["keep", "gone", "stubborn"]);
    let gone_tree = tree(&d, before["gone"]);
    let stubborn_tree = tree(&d, before["stubborn"]);
    assert_eq!(gone_tree.len(), 2, "{gone_tree:?}");
    assert_eq!(stubborn_tree.len(), 2, "{stubborn_tree:?}");

    let mut w = d.watch();
    let cfg = json!({ "services": {
        "keep": { "cmd": ["sleep", "1000"] },
        "fresh": { "cmd": ["sleep", "1001"] },
    }});
    d.rewrite_config(&cfg);
    d.signal(libc::SIGHUP);

    let mut seen = Vec::new();
    let reloaded = w
        .until(SOON, &mut seen, |e| e["event"] == "reloaded")
        .unwrap_or_else(|| panic!("no reloaded event: {seen:?}\nlog:\n{}", d.log()));
    assert_eq!(names(&reloaded["added"]), ["fresh"], "{reloaded}");
    assert_eq!(
        names(&reloaded["removed"]),
        ["gone", "stubborn"],
        "{reloaded}"
    );
    assert_eq!(
        names(&reloaded["changed"]),
        Vec::<String>::new(),
        "{reloaded}"
    );

    // Both removed services are stopped with the shutdown procedure; the stubborn one is killed
    // at its stop timeout.
    let mut stopped: BTreeMap<String, Value> = BTreeMap::new();
    while stopped.len() < 2 {
        let e = w
            .until(Duration::from_secs(20), &mut seen, |e| {
                e["event"] == "stopped"
            })
            .unwrap_or_else(|| panic!("{seen:?}\nlog:\n{}", d.log()));
        stopped.insert(e["service"].as_str().unwrap_or_default().to_string(), e);
    }
    assert_eq!(stopped["gone"]["how"], "exited", "{}", stopped["gone"]);
    assert_eq!(
        stopped["stubborn"]["how"], "killed",
        "{}",
        stopped["stubborn"]
    );
    assert!(
        stopped["stubborn"]["elapsed_ms"]
            .as_u64()
            .is_some_and(|ms| ms >= 1000),
        "killed before its stop timeout: {}",
        stopped["stubborn"]
    );
    let killed = events_of(&seen, "killed");
    assert_eq!(killed.len(), 1, "{seen:?}");
    assert_eq!(killed[0]["service"], "stubborn");
    assert_eq!(killed[0]["count"], 2, "the whole tree: {}", killed[0]);
    for (log, levels) in [("gone.log", 2), ("stubborn.log", 2)] {
        let text = d.dir.read(log);
        assert_eq!(
            lines_with(&text, "got TERM").len(),
            levels,
            "{log}:\n{text}"
        );
    }

    // The removed services leave `list` and leave nothing behind in /proc.
    assert!(
        wait_until(SOON, || d.pids().len() == 2),
        "list: {:?}",
        d.pids()
    );
    let after = d.running(&["keep", "fresh"]);
    assert_eq!(after["keep"], before["keep"], "unchanged service restarted");
    assert_eq!(cmdline(after["fresh"]), ["sleep", "1001"]);
    for pid in gone_tree.iter().chain(&stubborn_tree) {
        assert!(
            wait_until(SOON, || !d.runs(*pid)),
            "pid {pid} of a removed service is still alive"
        );
    }
    let mut removed = services_in(&seen, "removed");
    while removed.len() < 2 {
        w.until(SOON, &mut seen, |e| e["event"] == "removed")
            .unwrap_or_else(|| panic!("not both removed: {seen:#?}"));
        removed = services_in(&seen, "removed");
    }
    removed.sort_unstable();
    assert_eq!(removed, ["gone", "stubborn"], "{seen:#?}");

    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn reload_command_restarts_changed_services_with_their_new_definition() {
    let cfg = json!({ "services": {
        "same": { "cmd": ["sleep", "1000"] },
        "argv": { "cmd": ["sleep", "1001"] },
        "envy": { "cmd": ["sleep", "1000"], "env": { "V": "1" } },
        "timeout": { "cmd": ["sleep", "1000"], "stop_timeout_ms": 5000 },
    }});
    let mut d = Daemon::builder("changed").config(cfg).start();
    let before = d.running(&["same", "argv", "envy", "timeout"]);
    let mut w = d.watch();
    let cfg = json!({ "services": {
        "same": { "cmd": ["sleep", "1000"] },
        "argv": { "cmd": ["sleep", "1002"] },
        "envy": { "cmd": ["sleep", "1000"], "env": { "V": "2" } },
        "timeout": { "cmd": ["sleep", "1000"], "stop_timeout_ms": 6000 },
    }});
    d.rewrite_config(&cfg);
    let reply = d.request(r#"{"cmd":"reload","id":"r1"}"#);
    assert_eq!(reply["ok"], true, "{reply}\nlog:\n{}", d.log());
    assert_eq!(reply["id"], "r1");
    assert_eq!(names(&reply["added"]), Vec::<String>::new(), "{reply}");
    assert_eq!(names(&reply["removed"]), Vec::<String>::new(), "{reply}");
    assert_eq!(
        names(&reply["changed"]),
        ["argv", "envy", "timeout"],
        "{reply}"
    );
    let mut seen = Vec::new();
    let reloaded = w
        .until(SOON, &mut seen, |e| e["event"] == "reloaded")
        .unwrap_or_else(|| panic!("no reloaded event: {seen:?}"));
    assert_eq!(names(&reloaded["changed"]), ["argv", "envy", "timeout"]);

    // Each changed service gets a new main process; the old one is gone.
    let mut after = BTreeMap::new();
    assert!(
        wait_until(SOON, || {
            after = d.running(&["same", "argv", "envy", "timeout"]);
            ["argv", "envy", "timeout"]
                .iter()
                .all(|n| after[*n] != before[*n])
        }),
        "changed services were not restarted: before {before:?}, now {:?}\nlog:\n{}",
        d.pids(),
        d.log()
    );
    assert_eq!(after["same"], before["same"], "unchanged service restarted");
    for n in ["argv", "envy", "timeout"] {
        assert!(
            wait_until(SOON, || !d.runs(before[n])),
            "old {n} pid {} still alive",
            before[n]
        );
    }
    assert_eq!(cmdline(after["argv"]), ["sleep", "1002"]);
    assert_eq!(
        environ(after["envy"]).get("V").map(String::as_str),
        Some("2"),
        "envy runs with its new env"
    );
    // The new stop timeout is the one used now.
    let v = d.request(r#"{"cmd":"stop","name":"timeout"}"#);
    assert_eq!(v["ok"], true, "{v}");
    let stopping = w
        .until(SOON, &mut seen, |e| {
            e["event"] == "stopping" && e["service"] == "timeout" && e["timeout_ms"] == 6000
        })
        .is_some();
    assert!(stopping, "no stopping event with the new timeout: {seen:?}");

    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

/// A reapd with two services, their pids, and a watcher: what a rejected reload must leave
/// unchanged.
fn start_for_a_rejection(tag: &str) -> (Daemon, BTreeMap<String, i32>, Watcher) {
    let good = json!({ "services": {
        "a": { "cmd": ["sleep", "1000"] },
        "web": { "cmd": ["sleep", "1001"] },
    }});
    let d = Daemon::builder(tag).config(good).start();
    let before = d.running(&["a", "web"]);
    let w = d.watch();
    (d, before, w)
}

/// Asserts a rejected reload changed nothing (same services, same pids) and applied nothing:
/// the first `reloaded` event the watcher sees is the next good reload's. Then shuts down.
fn assert_nothing_changed(
    mut d: Daemon,
    before: &BTreeMap<String, i32>,
    mut w: Watcher,
    seen: &mut Vec<Value>,
) {
    assert_eq!(&d.running(&["a", "web"]), before);
    assert_eq!(d.pids().len(), 2, "{:?}", d.pids());
    let next = json!({ "services": {
        "a": { "cmd": ["sleep", "1000"] },
        "web": { "cmd": ["sleep", "1001"] },
        "b": { "cmd": ["sleep", "1003"] },
    }});
    d.rewrite_config(&next);
    d.signal(libc::SIGHUP);
    let reloaded = w
        .until(SOON, seen, |e| e["event"] == "reloaded")
        .unwrap_or_else(|| panic!("no reloaded event: {seen:?}"));
    assert_eq!(names(&reloaded["added"]), ["b"], "{reloaded}");
    assert_eq!(names(&reloaded["removed"]), Vec::<String>::new());
    assert_eq!(names(&reloaded["changed"]), Vec::<String>::new());
    let after = d.running(&["a", "web", "b"]);
    assert_eq!((after["a"], after["web"]), (before["a"], before["web"]));
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn invalid_json_by_sighup_is_rejected_and_changes_nothing() {
    let (d, before, mut w) = start_for_a_rejection("badjson");
    // SIGHUP has no one to reply to: the event (and the log line told from it) says so.
    d.rewrite_config("{\"services\": {\"a\": {\"cmd\": [\"sleep\", \"1000\"]},}}");
    d.signal(libc::SIGHUP);
    let mut seen = Vec::new();
    let rejected = w
        .until(SOON, &mut seen, |e| e["event"] == "reload_rejected")
        .unwrap_or_else(|| panic!("no reload_rejected event: {seen:#?}"));
    assert!(
        rejected["errors"][0]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid JSON at line 1 column")),
        "{rejected}"
    );
    assert_nothing_changed(d, &before, w, &mut seen);
}

#[test]
fn a_wrong_type_and_an_unknown_key_by_the_reload_command_are_all_listed_and_change_nothing() {
    let (d, before, mut w) = start_for_a_rejection("badtypes");
    let bad = json!({ "services": {
        "a": { "cmd": ["sleep", "1000"] },
        "web": { "cmd": ["sleep", "1001"], "stop_timeout_ms": "10s" },
        "new": { "cmd": ["sleep", "1002"], "restrat": "always" },
    }});
    d.rewrite_config(&bad);
    let reply = d.request(r#"{"cmd":"reload","id":7}"#);
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["id"], 7);
    assert_eq!(reply["code"], "config_error", "{reply}");
    let errors = reply["errors"].as_array().expect("errors").clone();
    assert_eq!(
        errors,
        [
            json!(r#"services.new.restrat: unknown key (did you mean "restart"?)"#),
            json!(r#"services.web.stop_timeout_ms: expected an integer, found "10s""#),
        ],
        "{reply}"
    );
    // Watchers are told the same errors.
    let mut seen = Vec::new();
    let rejected = w
        .until(SOON, &mut seen, |e| e["event"] == "reload_rejected")
        .unwrap_or_else(|| panic!("no reload_rejected event: {seen:#?}"));
    assert_eq!(
        (&rejected["errors"], &rejected["total"]),
        (&Value::Array(errors), &json!(2)),
        "{rejected}"
    );
    assert_nothing_changed(d, &before, w, &mut seen);
}

#[test]
fn a_config_file_that_cannot_be_read_is_rejected_and_changes_nothing() {
    let (d, before, w) = start_for_a_rejection("badfile");
    std::fs::remove_file(d.config_path()).expect("remove config");
    let reply = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(reply["code"], "config_error", "{reply}");
    assert!(
        reply["errors"][0]
            .as_str()
            .is_some_and(|e| e.starts_with("cannot read ")),
        "{reply}"
    );
    assert_nothing_changed(d, &before, w, &mut Vec::new());
}

/// A service that, asked to stop, keeps running until the test creates `release`: a stop whose
/// length the test controls.
fn held(env_v: &str) -> Value {
    let script = r#"trap 'echo got TERM >> "$TEST_DIR/held.log"; while [ ! -e "$TEST_DIR/release" ]; do sleep 0.05; done; exit 0' TERM
echo "started V=$V" >> "$TEST_DIR/held.log"
while :; do sleep 0.1; done"#;
    json!({ "cmd": ["bash", "-c", script], "env": { "V": env_v }, "stop_timeout_ms": 25000 })
}

fn environ_v(pid: i32) -> Option<String> {
    environ(pid).get("V").cloned()
}

#[test]
fn a_service_re_added_while_it_is_being_removed_keeps_running() {
    let cfg = json!({ "services": { "keep": { "cmd": ["sleep", "1000"] }, "held": held("1") } });
    let mut d = Daemon::builder("readd").config(&cfg).start();
    d.running(&["keep", "held"]);
    d.wait_for("held.log", "started");
    let mut w = d.watch();
    d.rewrite_config(json!({ "services": { "keep": { "cmd": ["sleep", "1000"] } } }));
    let r = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(names(&r["removed"]), ["held"], "{r}");
    // The removal began.
    d.wait_for("held.log", "got TERM");
    // Put it back while it is still stopping.
    d.rewrite_config(&cfg);
    let r = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(r["ok"], true, "{r}");
    d.dir.write("release", "");
    let mut seen = Vec::new();
    assert!(
        w.until(SOON, &mut seen, |e| e["event"] == "stopped"
            && e["service"] == "held")
            .is_some(),
        "{seen:?}"
    );
    // It is in the config file, so it must be running again (the second reload could report it
    // as added, or the removal could be cancelled; either way it must not stay gone).
    let back = wait_until(SOON, || d.pid_of("held").is_some());
    assert!(
        back,
        "held is in the config but not running: list {:?}; second reload replied {r}\nlog:\n{}",
        d.pids(),
        d.log()
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn reverting_a_change_before_the_restart_finishes_runs_the_current_definition() {
    let cfg = |v: &str| json!({ "services": { "held": held(v) } }).to_string();
    let mut d = Daemon::builder("revert").config(cfg("1")).start();
    let first = d.running(&["held"])["held"];
    assert_eq!(environ_v(first).as_deref(), Some("1"));
    // Its TERM trap is set before it says so: a stop that came earlier would just kill it.
    d.wait_for("held.log", "started V=1");
    let mut w = d.watch();
    d.rewrite_config(cfg("2"));
    let r = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(names(&r["changed"]), ["held"], "{r}");
    // The restart began.
    d.wait_for("held.log", "got TERM");
    // Back to the running definition before the old process has stopped.
    d.rewrite_config(cfg("1"));
    let r = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(r["ok"], true, "{r}");
    d.dir.write("release", "");
    let mut seen = Vec::new();
    let spawned = w
        .until(SOON, &mut seen, |e| {
            e["event"] == "spawned" && e["service"] == "held"
        })
        .unwrap_or_else(|| panic!("held was not started again: {seen:?}"));
    let pid = spawned["pid"].as_i64().expect("pid") as i32;
    assert_ne!(pid, first);
    assert_eq!(
        environ_v(pid).as_deref(),
        Some("1"),
        "the config file says V=1; second reload replied {r}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn starting_a_service_that_is_being_removed_is_refused_at_once() {
    let b = Daemon::builder("start-removed");
    let cfg = json!({ "services": {
        "slow": { "cmd": slowstop_cmd(b.dir(), "slow", "2", "slow.log") },
        "keep": { "cmd": ["sleep", "1000"] },
    }});
    let mut d = b.config(cfg).start();
    d.wait_for("slow.log", "started");
    d.rewrite_config(json!({ "services": { "keep": { "cmd": ["sleep", "1000"] } } }));
    let v = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(v["removed"], json!(["slow"]), "{v}");
    for cmd in ["start", "restart"] {
        // `request` waits at most a few seconds: a reply must come before the stop is over.
        let v = d.request(&format!(r#"{{"cmd":"{cmd}","name":"slow"}}"#));
        assert_eq!(v["code"], "no_such_service", "{v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains("being removed"),
            "{v}"
        );
    }
    assert!(
        !d.dir.read("slow.log").contains("exiting"),
        "answered while it was still stopping"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

//! Reloading the config file through the real binary, by SIGHUP and by the `reload` command:
//! added services start, removed ones are stopped like at shutdown and leave `list`, changed ones
//! restart with their new definition, unchanged ones keep running, and a bad file changes nothing.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A service running a chain of `levels` processes that log to `log` (see `chain.sh`).
fn chain(d: &TestDir, log: &str, levels: u32, mode: &str) -> Value {
    json!([
        fixture("chain.sh"),
        "1",
        levels.to_string(),
        d.join(log),
        mode
    ])
}

/// Starts reapd on the config `f` builds in the daemon's own directory.
fn start_with(tag: &str, f: impl Fn(&TestDir) -> Value) -> Daemon {
    let dir = TestDir::new(tag);
    let cfg = f(&dir);
    Daemon::start_in(dir, &cfg, &[])
}

/// Replaces the config file (atomically, so a reload never reads half a file).
fn rewrite(d: &Daemon, text: &str) {
    let tmp = d.dir.write("config.json.new", text);
    std::fs::rename(tmp, d.dir.join("config.json")).expect("rename config");
}

/// Service name → pid (null when not running) from `list`.
fn pids(d: &Daemon) -> BTreeMap<String, Option<i64>> {
    let v = d.request(r#"{"cmd":"list"}"#);
    v["services"]
        .as_array()
        .unwrap_or_else(|| panic!("list: {v}"))
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                s["pid"].as_i64(),
            )
        })
        .collect()
}

/// Waits until every service in `names` is running and returns their pids.
fn running(d: &Daemon, names: &[&str]) -> BTreeMap<String, i32> {
    let mut out = BTreeMap::new();
    let ok = wait_until(SOON, || {
        let now = pids(d);
        out = names
            .iter()
            .filter_map(|n| Some((n.to_string(), (*now.get(*n)?)? as i32)))
            .collect();
        out.len() == names.len()
    });
    assert!(ok, "not all of {names:?} running: {:?}", pids(d));
    out
}

/// `pid` and every live descendant of it carrying the daemon's marker.
fn tree(d: &Daemon, pid: i32) -> Vec<i32> {
    let all = live_with_marker(&d.marker);
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(all.iter().filter(|p| p.ppid == parent).map(|p| p.pid));
        i += 1;
    }
    out
}

fn alive(d: &Daemon, pid: i32) -> bool {
    live_with_marker(&d.marker).iter().any(|p| p.pid == pid)
}

fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            String::from_utf8_lossy(&raw)
                .split_terminator('\0')
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
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

fn wait_started(d: &Daemon, log: &str, levels: usize) {
    assert!(
        wait_until(SOON, || lines_with(&d.dir.read(log), "started").len()
            == levels),
        "{log}: not all {levels} levels started:\n{}",
        d.dir.read(log)
    );
}

#[test]
fn sighup_starts_added_services_and_stops_removed_ones() {
    let mut d = start_with("addrm", |dir| {
        json!({ "services": {
            "keep": { "cmd": ["sleep", "1000"] },
            "gone": { "cmd": chain(dir, "gone.log", 2, "exit") },
            "stubborn": { "cmd": chain(dir, "stubborn.log", 2, "ignore"), "stop_timeout_ms": 1000 },
        }})
    });
    wait_started(&d, "gone.log", 2);
    wait_started(&d, "stubborn.log", 2);
    let before = running(&d, &["keep", "gone", "stubborn"]);
    let gone_tree = tree(&d, before["gone"]);
    let stubborn_tree = tree(&d, before["stubborn"]);
    assert_eq!(gone_tree.len(), 2, "{gone_tree:?}");
    assert_eq!(stubborn_tree.len(), 2, "{stubborn_tree:?}");

    let mut w = d.watch();
    let cfg = json!({ "services": {
        "keep": { "cmd": ["sleep", "1000"] },
        "fresh": { "cmd": ["sleep", "1001"] },
    }});
    rewrite(&d, &cfg.to_string());
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
        wait_until(SOON, || pids(&d).len() == 2),
        "list: {:?}",
        pids(&d)
    );
    let after = running(&d, &["keep", "fresh"]);
    assert_eq!(after["keep"], before["keep"], "unchanged service restarted");
    assert_eq!(cmdline(after["fresh"]), ["sleep", "1001"]);
    for pid in gone_tree.iter().chain(&stubborn_tree) {
        assert!(
            wait_until(SOON, || !alive(&d, *pid)),
            "pid {pid} of a removed service is still alive"
        );
    }
    assert!(d.log().contains("gone: removed"), "{}", d.log());
    assert!(d.log().contains("stubborn: removed"), "{}", d.log());

    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn reload_command_restarts_changed_services_with_their_new_definition() {
    let mut d = start_with("changed", |_| {
        json!({ "services": {
            "same": { "cmd": ["sleep", "1000"] },
            "argv": { "cmd": ["sleep", "1001"] },
            "envy": { "cmd": ["sleep", "1000"], "env": { "V": "1" } },
            "timeout": { "cmd": ["sleep", "1000"], "stop_timeout_ms": 5000 },
        }})
    });
    let before = running(&d, &["same", "argv", "envy", "timeout"]);
    let mut w = d.watch();
    let cfg = json!({ "services": {
        "same": { "cmd": ["sleep", "1000"] },
        "argv": { "cmd": ["sleep", "1002"] },
        "envy": { "cmd": ["sleep", "1000"], "env": { "V": "2" } },
        "timeout": { "cmd": ["sleep", "1000"], "stop_timeout_ms": 6000 },
    }});
    rewrite(&d, &cfg.to_string());
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
            after = running(&d, &["same", "argv", "envy", "timeout"]);
            ["argv", "envy", "timeout"]
                .iter()
                .all(|n| after[*n] != before[*n])
        }),
        "changed services were not restarted: before {before:?}, now {:?}\nlog:\n{}",
        pids(&d),
        d.log()
    );
    assert_eq!(after["same"], before["same"], "unchanged service restarted");
    for n in ["argv", "envy", "timeout"] {
        assert!(
            wait_until(SOON, || !alive(&d, before[n])),
            "old {n} pid {} still alive",
            before[n]
        );
    }
    assert_eq!(cmdline(after["argv"]), ["sleep", "1002"]);
    let environ = std::fs::read(format!("/proc/{}/environ", after["envy"])).expect("environ");
    assert!(
        environ.split(|&b| b == 0).any(|kv| kv == b"V=2"),
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

#[test]
fn a_bad_config_is_rejected_and_changes_nothing() {
    let good = json!({ "services": {
        "a": { "cmd": ["sleep", "1000"] },
        "web": { "cmd": ["sleep", "1001"] },
    }});
    let mut d = Daemon::start("badreload", &good.to_string());
    let before = running(&d, &["a", "web"]);
    let mut w = d.watch();

    // Invalid JSON, by SIGHUP: only the log says so.
    rewrite(
        &d,
        "{\"services\": {\"a\": {\"cmd\": [\"sleep\", \"1000\"]},}}",
    );
    d.signal(libc::SIGHUP);
    assert!(
        wait_until(SOON, || d
            .log()
            .contains("error:   invalid JSON at line 1 column")),
        "{}",
        d.log()
    );
    assert!(
        d.log()
            .contains("error: reload rejected; the running services are unchanged:"),
        "{}",
        d.log()
    );

    // A wrong type and an unknown key, by the reload command: the reply lists every error.
    let bad = json!({ "services": {
        "a": { "cmd": ["sleep", "1000"] },
        "web": { "cmd": ["sleep", "1001"], "stop_timeout_ms": "10s" },
        "new": { "cmd": ["sleep", "1002"], "restrat": "always" },
    }});
    rewrite(&d, &bad.to_string());
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
    for e in &errors {
        let e = e.as_str().expect("string");
        assert!(d.log().contains(&format!("error:   {e}")), "{}", d.log());
    }

    // A file that cannot be read, by the reload command.
    std::fs::remove_file(d.dir.join("config.json")).expect("remove config");
    let reply = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(reply["code"], "config_error", "{reply}");
    assert!(
        reply["errors"][0]
            .as_str()
            .is_some_and(|e| e.starts_with("cannot read ")),
        "{reply}"
    );

    // Nothing changed: same services, same pids.
    assert_eq!(running(&d, &["a", "web"]), before);
    assert_eq!(pids(&d).len(), 2, "{:?}", pids(&d));

    // No reload was applied: the first `reloaded` event a watcher sees is the next good one.
    let next = json!({ "services": {
        "a": { "cmd": ["sleep", "1000"] },
        "web": { "cmd": ["sleep", "1001"] },
        "b": { "cmd": ["sleep", "1003"] },
    }});
    rewrite(&d, &next.to_string());
    d.signal(libc::SIGHUP);
    let mut seen = Vec::new();
    let reloaded = w
        .until(SOON, &mut seen, |e| e["event"] == "reloaded")
        .unwrap_or_else(|| panic!("no reloaded event: {seen:?}"));
    assert_eq!(names(&reloaded["added"]), ["b"], "{reloaded}");
    assert_eq!(names(&reloaded["removed"]), Vec::<String>::new());
    assert_eq!(names(&reloaded["changed"]), Vec::<String>::new());
    let after = running(&d, &["a", "web", "b"]);
    assert_eq!((after["a"], after["web"]), (before["a"], before["web"]));

    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
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
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    raw.split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"V="))
        .map(|v| String::from_utf8_lossy(v).to_string())
}

#[test]
fn a_service_re_added_while_it_is_being_removed_keeps_running() {
    let cfg = json!({ "services": { "keep": { "cmd": ["sleep", "1000"] }, "held": held("1") } });
    let mut d = Daemon::start("readd", &cfg.to_string());
    running(&d, &["keep", "held"]);
    assert!(wait_until(SOON, || d
        .dir
        .read("held.log")
        .contains("started")));
    let mut w = d.watch();
    rewrite(
        &d,
        &json!({ "services": { "keep": { "cmd": ["sleep", "1000"] } } }).to_string(),
    );
    let r = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(names(&r["removed"]), ["held"], "{r}");
    assert!(
        wait_until(SOON, || d.dir.read("held.log").contains("got TERM")),
        "removal began"
    );
    // Put it back while it is still stopping.
    rewrite(&d, &cfg.to_string());
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
    let back = wait_until(SOON, || pids(&d).get("held").is_some_and(Option::is_some));
    assert!(
        back,
        "held is in the config but not running: list {:?}; second reload replied {r}\nlog:\n{}",
        pids(&d),
        d.log()
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn reverting_a_change_before_the_restart_finishes_runs_the_current_definition() {
    let cfg = |v: &str| json!({ "services": { "held": held(v) } }).to_string();
    let mut d = Daemon::start("revert", &cfg("1"));
    let first = running(&d, &["held"])["held"];
    assert_eq!(environ_v(first).as_deref(), Some("1"));
    let mut w = d.watch();
    rewrite(&d, &cfg("2"));
    let r = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(names(&r["changed"]), ["held"], "{r}");
    assert!(
        wait_until(SOON, || d.dir.read("held.log").contains("got TERM")),
        "restart began"
    );
    // Back to the running definition before the old process has stopped.
    rewrite(&d, &cfg("1"));
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
    let mut d = start_with("start-removed", |dir| {
        json!({ "services": {
            "slow": { "cmd": [fixture("slowstop.sh"), "slow", "2", dir.join("slow.log")] },
            "keep": { "cmd": ["sleep", "1000"] },
        }})
    });
    assert!(wait_until(SOON, || d
        .dir
        .read("slow.log")
        .contains("started")));
    rewrite(
        &d,
        &json!({ "services": { "keep": { "cmd": ["sleep", "1000"] } } }).to_string(),
    );
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

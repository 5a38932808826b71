//! "Nothing left behind": deep trees stopped bottom-up, escapees, fork storms, sweeps by port
//! and command line, the stop graph, the shutdown budget and cleanup hooks — all through the
//! real binary, with fixtures that log what they received and when.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

#[test]
fn a_six_level_chain_is_stopped_deepest_first() {
    let b = Daemon::builder("chain6");
    let cfg =
        json!({ "services": { "chain": { "cmd": chain_cmd(b.dir(), "chain.log", 6, "exit") } } });
    let mut d = b.config(cfg).start();
    wait_chain_started(&d.dir, "chain.log", 6);
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
    let log = d.dir.read("chain.log");
    let term = chain_times(&log, "got TERM");
    let exit = chain_times(&log, "exiting");
    assert_eq!(term.len(), 6, "every level got the stop signal:\n{log}");
    for level in 1..6 {
        // Observable bottom-up: a level hears TERM only after the level below it has exited.
        assert!(
            term[&level] > exit[&(level + 1)],
            "level {level} got TERM before level {} exited:\n{log}",
            level + 1
        );
    }
}

#[test]
fn a_six_level_chain_ignoring_term_is_signalled_then_killed_deepest_first() {
    let b = Daemon::builder("chain6k");
    let cfg = json!({ "services": { "chain": { "cmd": chain_cmd(b.dir(), "chain.log", 6, "ignore"), "stop_timeout_ms": 3000 } } });
    let mut d = b.config(cfg).start();
    wait_chain_started(&d.dir, "chain.log", 6);
    let events = d.signal_and_watch(libc::SIGTERM);
    d.assert_clean_exit();
    let log = d.dir.read("chain.log");
    let term = chain_times(&log, "got TERM");
    assert_eq!(
        term.len(),
        6,
        "each level still gets its graceful signal before the timeout:\n{log}"
    );
    for level in 1..6 {
        assert!(
            term[&level] > term[&(level + 1)],
            "TERM not deepest-first at level {level}:\n{log}"
        );
    }
    // SIGKILL order, from reapd's report: deepest level first.
    let pids = level_pids(&log);
    let deepest_first: Vec<i32> = (1..=6).rev().map(|l| pids[&l]).collect();
    assert_eq!(
        pid_list(&one_event(&events, "killed")["pids"]),
        deepest_first,
        "killed deepest first"
    );
    let signalled: Vec<Vec<i32>> = events_of(&events, "signalled")
        .iter()
        .map(|e| pid_list(&e["pids"]))
        .collect();
    assert_eq!(
        signalled,
        deepest_first.iter().map(|&p| vec![p]).collect::<Vec<_>>(),
        "one level per signalled event"
    );
}

/// The pids of an event's `pids` array.
fn pid_list(v: &Value) -> Vec<i32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a pid list: {v}"))
        .iter()
        .filter_map(|p| p.as_i64().map(|p| p as i32))
        .collect()
}

#[test]
fn escapees_and_stubborn_grandchildren_leave_nothing_behind() {
    let b = Daemon::builder("escape");
    let tag = b.dir().marker();
    let cfg = json!({ "services": {
        "sneaky": { "cmd": [fixture("escapees.sh"), tag, b.dir().join("sneaky.log")], "stop_timeout_ms": 1500 },
    }});
    let mut d = b.config(cfg).start();
    let found = |prefix: &str| {
        d.services_procs()
            .iter()
            .any(|p| p.cmdline.starts_with(prefix))
    };
    assert!(
        wait_until(SOON, || found("escapee-")
            && found("deaf-")
            && found("daemon-")),
        "escapees running"
    );
    let escapee = d
        .services_procs()
        .into_iter()
        .find(|p| p.cmdline.starts_with("escapee-"))
        .expect("escapee");
    assert_eq!(
        escapee.ppid,
        d.pid(),
        "double-forked orphan is reparented to reapd (subreaper)"
    );
    let events = d.signal_and_watch(libc::SIGTERM);
    d.assert_clean_exit();
    let done = done_event(&events);
    assert_eq!(done["survivors"], json!([]), "{done}");
    assert_eq!(done["clean"], true, "{done}");
}

#[test]
fn a_fork_storm_that_ignores_term_is_frozen_and_killed() {
    let cfg = json!({ "services": {
        "storm": { "cmd": ["sh", "-c", "trap '' TERM; while :; do sleep 100 & done"], "stop_timeout_ms": 1000 },
    }});
    let mut d = Daemon::builder("storm").config(cfg).start();
    assert!(
        wait_until(SOON, || d
            .services_procs()
            .iter()
            .filter(|p| p.cmdline == "sleep 100")
            .count()
            >= 20),
        "storm running"
    );
    let events = d.signal_and_watch(libc::SIGTERM);
    d.assert_clean_exit();
    let storm_killed: u64 = events_of(&events, "killed")
        .iter()
        .filter(|e| e["service"] == "storm")
        .filter_map(|e| e["count"].as_u64())
        .sum();
    assert!(
        storm_killed >= 20,
        "the fork storm was frozen and killed: {events:?}"
    );
    let done = done_event(&events);
    assert_eq!(done["survivors"], json!([]), "{done}");
}

/// A process the test starts itself, outside reapd's tree; killed by pid (and by `tag`) on drop,
/// also when the test fails before reapd could sweep it.
fn outside(cmd: &mut Command, tag: &str) -> Marked {
    Marked::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        tag,
    )
}

#[test]
fn listeners_on_service_ports_and_match_strings_are_swept_even_outside_the_tree() {
    let b = Daemon::builder("sweep");
    let tag = b.dir().marker();
    // Started by the test, not by reapd: only the sweep can find them.
    let port_file = b.dir().join("port");
    let mut listener = outside(
        Command::new(fixture("listen.sh")).arg(&port_file).arg(&tag),
        &tag,
    );
    let mut matched = outside(
        Command::new("bash").args(["-c", "exec -a \"matchme-$0\" sleep 1000", &tag]),
        &tag,
    );
    assert!(
        wait_until(SOON, || b.dir().read("port").trim().parse::<u16>().is_ok()),
        "listener up"
    );
    let port: u16 = b.dir().read("port").trim().parse().expect("port");
    let cfg = json!({ "services": { "web": { "cmd": ["sleep", "1000"], "ports": [port], "match": [format!("matchme-{tag}")] } } });
    let mut d = b.config(cfg).start();
    let events = d.signal_and_watch(libc::SIGTERM);
    d.assert_clean_exit();
    let sweeps = events_of(&events, "sweep");
    let reason = |pid: i32| {
        sweeps
            .iter()
            .find(|e| e["pid"] == pid)
            .map(|e| e["reason"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(
        reason(listener.pid()),
        Some(format!("listening on port {port} of service web")),
        "{sweeps:?}"
    );
    assert_eq!(
        reason(matched.pid()),
        Some(format!(
            "command line matches \"matchme-{tag}\" of service web"
        )),
        "{sweeps:?}"
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        listener.wait_exit(SOON).and_then(|st| st.signal()),
        Some(libc::SIGKILL)
    );
    assert_eq!(
        matched.wait_exit(SOON).and_then(|st| st.signal()),
        Some(libc::SIGKILL)
    );
}

#[test]
fn dependencies_stop_in_order_and_independent_services_overlap() {
    let b = Daemon::builder("graph");
    let svc = |name: &str, after: &[&str]| json!({ "cmd": slowstop_cmd(b.dir(), name, "0.5", "graph.log"), "after": after });
    let cfg = json!({ "services": {
        "db": svc("db", &[]),
        "web": svc("web", &["db"]),
        "proxy": svc("proxy", &["web"]),
        "cache": svc("cache", &[]),
    }});
    let mut d = b.config(cfg).start();
    assert!(wait_until(SOON, || named_times(
        &d.dir.read("graph.log"),
        "started"
    )
    .len()
        == 4));
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
    let text = d.dir.read("graph.log");
    let term = named_times(&text, "got TERM");
    let exit = named_times(&text, "exiting");
    assert!(
        exit["proxy"] < term["web"] && exit["web"] < term["db"],
        "proxy, then web, then db:\n{text}"
    );
    // proxy and cache are independent: they stop at the same time.
    assert!(
        term["cache"] < exit["proxy"] && term["proxy"] < exit["cache"],
        "independent stops overlap:\n{text}"
    );
}

#[test]
fn a_tree_is_stopped_bottom_up_each_node_only_after_all_its_children_exited() {
    // 1 → 3 → 9 → 27: forty processes, each logging its signal and its exit.
    let b = Daemon::builder("tree");
    let (depth, fanout) = (4, 3);
    let cfg =
        json!({ "services": { "tree": { "cmd": tree_cmd(b.dir(), "tree.log", depth, fanout) } } });
    let mut d = b.config(cfg).start();
    let n = tree_size(depth, fanout);
    assert!(
        wait_until(SOON, || named_times(&d.dir.read("tree.log"), "started")
            .len()
            == n),
        "not all {n} nodes started"
    );
    let events = d.signal_and_watch(libc::SIGTERM);
    d.assert_clean_exit();
    let text = d.dir.read("tree.log");
    let term = named_times(&text, "got TERM");
    let exit = named_times(&text, "exiting");
    assert_eq!(term.len(), n, "every node was asked:\n{text}");
    for (id, t) in &term {
        let prefix = format!("{id}.");
        for (child, e) in exit
            .range(prefix.clone()..)
            .take_while(|(c, _)| c.starts_with(&prefix))
        {
            assert!(
                e <= t,
                "{id} got TERM at {t} before its descendant {child} exited at {e}:\n{text}"
            );
        }
    }
    assert_eq!(one_event(&events, "stopped")["how"], "exited");
}

#[test]
fn a_stubborn_service_holds_back_only_the_services_it_depends_on() {
    // api ignores SIGTERM (killed after its 3 s) and starts after db; web starts after cache.
    let b = Daemon::builder("graph-stubborn");
    let svc = |log: &str, mode: &str, after: &[&str]| json!({ "cmd": chain_cmd(b.dir(), log, 1, mode), "after": after, "stop_timeout_ms": 3000 });
    let cfg = json!({ "services": {
        "db": svc("db.log", "exit", &[]),
        "api": svc("api.log", "ignore", &["db"]),
        "cache": svc("cache.log", "exit", &[]),
        "web": svc("web.log", "exit", &["cache"]),
    }});
    let mut d = b.config(cfg).start();
    for l in ["db.log", "api.log", "cache.log", "web.log"] {
        wait_chain_started(&d.dir, l, 1);
    }
    let events = d.signal_and_watch(libc::SIGTERM);
    d.assert_clean_exit();
    let term = |l: &str| chain_times(&d.dir.read(l), "got TERM").get(&1).copied();
    let exit = |l: &str| chain_times(&d.dir.read(l), "exiting").get(&1).copied();
    let (Some(api), Some(cache), Some(web_exit), Some(db)) = (
        term("api.log"),
        term("cache.log"),
        exit("web.log"),
        term("db.log"),
    ) else {
        panic!("every service was asked: {}", d.log());
    };
    assert!(web_exit <= cache, "cache only after web is gone");
    // cache did not wait for api, which held out for its whole 3 s.
    assert!(
        cache - api < 2.0,
        "cache asked {:.3} s after api: it waited for an unrelated service",
        cache - api
    );
    assert!(
        db - api >= 2.5,
        "db only once api was killed: {:.3} s",
        db - api
    );
    let stopped = events_of(&events, "stopped");
    let how = |name: &str| {
        stopped
            .iter()
            .find(|e| e["service"] == name)
            .map(|e| e["how"].clone())
    };
    assert_eq!(how("api"), Some(json!("killed")));
    for name in ["db", "cache", "web"] {
        assert_eq!(how(name), Some(json!("exited")), "{name}");
    }
}

#[test]
fn three_stubborn_services_in_a_row_fit_a_six_second_bound() {
    let b = Daemon::builder("budget");
    let svc = |log: &str, after: &[&str]| json!({ "cmd": chain_cmd(b.dir(), log, 1, "ignore"), "after": after, "stop_timeout_ms": 20000 });
    let cfg = json!({ "shutdown_timeout_ms": 6000, "services": { "a": svc("a.log", &[]), "b": svc("b.log", &["a"]), "c": svc("c.log", &["b"]) } });
    let mut d = b.config(cfg).start();
    for l in ["a.log", "b.log", "c.log"] {
        wait_chain_started(&d.dir, l, 1);
    }
    let mut w = d.watch();
    let t0 = Instant::now();
    d.signal(libc::SIGTERM);
    let code = d.exit_code(Duration::from_secs(20));
    let took = t0.elapsed();
    assert_eq!(code, 0, "{}", d.log());
    // The bound is 6 s; the margin only absorbs a loaded test machine.
    assert!(took < Duration::from_secs(12), "shutdown took {took:?}");
    d.assert_clean_exit();
    let events = w.drain(SOON);
    let entry = |name: &str, after: &[&str], starts_ms: u64| json!({ "service": name, "after": after, "requested_ms": 20000, "share_ms": 1766, "starts_ms": starts_ms });
    assert_eq!(
        one_event(&events, "shutdown_plan")["services"],
        json!([
            entry("c", &[], 0),
            entry("b", &["c"], 1766),
            entry("a", &["b"], 3533)
        ]),
        "each one's 20 s clipped to a third of the 5.3 s the path has"
    );
    for l in ["a.log", "b.log", "c.log"] {
        assert!(
            d.dir.read(l).contains("got TERM"),
            "{l}: every service was asked first"
        );
    }
}

#[test]
fn cleanup_hooks_run_after_everything_is_gone_and_a_failing_or_hanging_hook_means_exit_1() {
    let b = Daemon::builder("hooks");
    let pidfile = b.dir().join("svc.pid");
    let check = format!(
        "p=$(cat {}); if kill -0 \"$p\" 2>/dev/null; then echo still-running > {d}/hook0; exit 1; fi; echo all-gone > {d}/hook0",
        pidfile.display(),
        d = b.dir().path.display()
    );
    let cfg = json!({
        "shutdown_timeout_ms": 6000,
        "services": { "svc": { "cmd": ["bash", "-c", format!("echo $$ > {}; exec sleep 1000", pidfile.display())] } },
        "cleanup": [["sh", "-c", check], ["sh", "-c", "exit 3"], ["sleep", "1000"]],
    });
    let mut d = b.config(cfg).start();
    assert!(wait_until(SOON, || d
        .dir
        .read("svc.pid")
        .trim()
        .parse::<i32>()
        .is_ok()));
    let events = d.signal_and_watch(libc::SIGTERM);
    assert_eq!(d.exit_code(Duration::from_secs(20)), 1, "{}", d.log());
    assert_eq!(
        d.dir.read("hook0").trim(),
        "all-gone",
        "hooks run after every process is gone"
    );
    let hooks = events_of(&events, "cleanup");
    let told = |h: &Value| {
        (
            h["index"].as_u64(),
            h["cmd"].clone(),
            h["ok"].as_bool(),
            h["result"].as_str().map(str::to_string),
        )
    };
    assert_eq!(hooks.len(), 3, "{events:#?}");
    assert_eq!(
        told(hooks[0]),
        (
            Some(0),
            hooks[0]["cmd"].clone(),
            Some(true),
            Some("exit 0".into())
        )
    );
    assert_eq!(
        told(hooks[1]),
        (
            Some(1),
            json!(["sh", "-c", "exit 3"]),
            Some(false),
            Some("exit 3".into())
        )
    );
    assert_eq!(
        (hooks[2]["index"].as_u64(), &hooks[2]["ok"]),
        (Some(2), &json!(false))
    );
    assert!(
        hooks[2]["result"]
            .as_str()
            .unwrap_or("")
            .starts_with("killed"),
        "{}",
        hooks[2]
    );
    assert_eq!(
        one_event(&events, "cleanup_overran")["index"],
        2,
        "the hanging hook is killed at its deadline"
    );
    let done = done_event(&events);
    assert_eq!(
        (done["clean"].as_bool(), done["exit_code"].as_i64()),
        (Some(false), Some(1)),
        "{events:#?}"
    );
    assert!(
        !d.socket.exists() && !lock_of(&d.socket).exists(),
        "socket and lock removed anyway"
    );
    // It was SIGKILLed at the deadline, in the same instant reapd reported and exited: give the
    // kernel a moment to finish it off.
    assert!(
        wait_until(Duration::from_secs(2), || live_with_marker(&d.marker)
            .is_empty()),
        "the hanging hook was killed"
    );
}

#[test]
fn shutdown_right_after_start_up_is_clean() {
    // Services may still be starting.
    let b = Daemon::builder("early");
    let cfg = json!({ "services": { "a": { "cmd": chain_cmd(b.dir(), "a.log", 3, "exit") }, "b": { "cmd": ["sleep", "1000"], "after": ["a"] } } });
    let mut d = b.config(cfg).spawn();
    assert!(wait_until(SOON, || d.socket.exists()));
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn shutdown_during_a_restart_back_off_is_clean() {
    // A 30 s back-off would outlast any bound.
    let cfg = json!({ "services": { "crash": { "cmd": ["sh", "-c", "sleep 0.2; exit 1"] }, "a": { "cmd": ["sleep", "1000"] } } });
    let mut d = Daemon::builder("backoff-term").config(cfg).start();
    d.wait_state("crash", "backoff");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn shutdown_in_the_middle_of_a_reload_still_stops_the_removed_service_gracefully() {
    // A removed service still stopping, an added one just started.
    let b = Daemon::builder("reload-term");
    let slow = json!({ "cmd": slowstop_cmd(b.dir(), "old", "2", "old.log") });
    let mut d = b.config(json!({ "services": { "old": slow } })).start();
    d.wait_for("old.log", "started");
    d.rewrite_config(json!({ "services": { "new": { "cmd": ["sleep", "1000"] } } }));
    let v = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(
        (v["added"].clone(), v["removed"].clone()),
        (json!(["new"]), json!(["old"])),
        "{v}"
    );
    d.wait_state("old", "stopping");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
    assert!(
        d.dir.read("old.log").contains("old exiting"),
        "the removed service still stopped gracefully"
    );
}

#[test]
fn a_second_sigterm_while_a_cleanup_hook_runs_changes_nothing() {
    let b = Daemon::builder("hook-term");
    let cfg = json!({ "services": { "a": { "cmd": ["sleep", "1000"] } },
        "cleanup": [["bash", "-c", "echo running > \"$TEST_DIR/hook-running\"; sleep 1; echo ok > \"$TEST_DIR/hook-done\""]] });
    let mut d = b.config(cfg).start();
    let mut w = d.watch();
    d.signal(libc::SIGTERM);
    d.wait_for("hook-running", "running");
    d.signal(libc::SIGTERM);
    let events = w.drain(Duration::from_secs(40));
    d.assert_clean_exit();
    assert_eq!(
        d.dir.read("hook-done").trim(),
        "ok",
        "hook was not interrupted"
    );
    let repeat = one_event(&events, "already_stopping");
    assert_eq!(repeat["trigger"], "SIGTERM", "{repeat}");
    assert_eq!(done_event(&events)["clean"], true, "{events:#?}");
}

#[test]
fn a_tree_larger_than_the_open_file_limit_is_still_stopped_completely() {
    if !require_tool("prlimit") {
        return;
    }
    // 100 children, but reapd may hold only 64 descriptors: it cannot watch every process
    // through a pidfd and must notice their exit by rescanning instead.
    let cfg = json!({ "services": { "wide": {
        "cmd": ["sh", "-c", "i=0; while [ $i -lt 100 ]; do sleep 1000 & i=$((i+1)); done; wait"],
        "stop_timeout_ms": 2000,
    } } });
    let mut d = Daemon::builder("fdlimit")
        .config(cfg)
        .wrapper(["prlimit", "--nofile=64:64", "--"])
        .start();
    assert!(
        wait_until(SOON, || live_with_marker(&d.marker).len() > 100),
        "tree up"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
    // A warning of the loop itself, not an event: only the log has it.
    assert!(
        d.log()
            .contains("cannot watch every process through a pidfd"),
        "{}",
        d.log()
    );
}

/// Stops and starts `name` `times` times over the control socket; every stop must be graceful.
fn stop_start_gracefully(d: &Daemon, name: &str, times: usize) {
    for round in 0..times {
        let v = d.request(&format!(r#"{{"cmd":"stop","name":"{name}"}}"#));
        assert_eq!(v["how"], "exited", "round {round}: {v}\nlog:\n{}", d.log());
        assert!(
            v["elapsed_ms"].as_u64() < Some(5000),
            "round {round}: {v}\nlog:\n{}",
            d.log()
        );
        let v = d.request(&format!(r#"{{"cmd":"start","name":"{name}"}}"#));
        assert_eq!(v["state"], "running", "{v}");
        // Let the loop reach its `sleep` before the next stop.
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_shell_loop_stops_gracefully_however_the_signal_lands() {
    let cfg = json!({ "services": {
        "loop": { "cmd": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 30; done"], "stop_timeout_ms": 10000 },
    } });
    let mut d = Daemon::builder("shell-loop").config(cfg).start();
    stop_start_gracefully(&d, "loop", 5);
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_shell_master_of_shell_loops_stops_gracefully_however_the_signal_lands() {
    let cfg = json!({ "services": {
        "master": {
            "cmd": ["sh", "-c", "for i in 1 2; do sh -c 'trap \"exit 0\" TERM; while :; do sleep 30; done' & done; trap 'exit 0' TERM; while :; do sleep 30; done"],
            "stop_timeout_ms": 10000,
        },
    } });
    let mut d = Daemon::builder("shell-master").config(cfg).start();
    stop_start_gracefully(&d, "master", 3);
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

//! "Nothing left behind": deep trees stopped bottom-up, escapees, fork storms, sweeps by port
//! and command line, dependency waves, the shutdown budget and cleanup hooks — all through the
//! real binary, with fixtures that log what they received and when.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// Name → first time a line "<name> <kind> <time>" was logged.
fn named_times(text: &str, kind: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for l in text.lines().filter(|l| l.contains(kind)) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let (Some(name), Some(t)) = (f.first(), f.last().and_then(|s| s.parse().ok())) {
            out.entry(name.to_string()).or_insert(t);
        }
    }
    out
}

/// Level → pid from a chain log's "level N pid P started" lines.
fn level_pids(text: &str) -> BTreeMap<u32, i64> {
    text.lines()
        .filter(|l| l.contains(" started "))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(1)?.parse().ok()?, f.get(3)?.parse().ok()?))
        })
        .collect()
}

fn chain_cmd(dir: &TestDir, log: &str, levels: u32, mode: &str) -> Value {
    json!([
        fixture("chain.sh"),
        "1",
        levels.to_string(),
        dir.join(log),
        mode
    ])
}

#[test]
fn a_six_level_chain_is_stopped_deepest_first() {
    let dir = TestDir::new("chain6");
    let cfg =
        json!({ "services": { "chain": { "cmd": chain_cmd(&dir, "chain.log", 6, "exit") } } });
    let mut d = Daemon::start_in(dir, &cfg, &[]);
    assert!(wait_until(SOON, || level_pids(&d.dir.read("chain.log"))
        .len()
        == 6));
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
    let dir = TestDir::new("chain6k");
    let cfg = json!({ "services": { "chain": { "cmd": chain_cmd(&dir, "chain.log", 6, "ignore"), "stop_timeout_ms": 3000 } } });
    let mut d = Daemon::start_in(dir, &cfg, &[]);
    assert!(wait_until(SOON, || level_pids(&d.dir.read("chain.log"))
        .len()
        == 6));
    let mut w = d.watch();
    d.signal(libc::SIGTERM);
    let events = w.drain(Duration::from_secs(30));
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
    let killed = events_of(&events, "killed");
    assert_eq!(killed.len(), 1, "{events:?}");
    let order: Vec<i64> = killed[0]["pids"]
        .as_array()
        .expect("pids")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    let expected: Vec<i64> = (1..=6).rev().map(|l| pids[&l]).collect();
    assert_eq!(order, expected, "killed deepest first");
    let signalled: Vec<Vec<i64>> = events_of(&events, "signalled")
        .iter()
        .map(|e| {
            e["pids"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        signalled,
        (1..=6).rev().map(|l| vec![pids[&l]]).collect::<Vec<_>>(),
        "one level per signalled event"
    );
}

#[test]
fn escapees_stubborn_grandchildren_and_fork_storms_leave_nothing_behind() {
    let dir = TestDir::new("escape");
    let tag = marker_of(&dir);
    let cfg = json!({ "services": {
        "sneaky": { "cmd": [fixture("escapees.sh"), tag, dir.join("sneaky.log")], "stop_timeout_ms": 1500 },
        "storm": { "cmd": ["sh", "-c", "trap '' TERM; while :; do sleep 100 & done"], "stop_timeout_ms": 1000 },
    }});
    let mut d = Daemon::start_in(dir, &cfg, &[]);
    let marker = d.marker.clone();
    let found = |prefix: &str| {
        live_with_marker(&marker)
            .iter()
            .any(|p| p.cmdline.starts_with(prefix))
    };
    assert!(
        wait_until(SOON, || found("escapee-")
            && found("deaf-")
            && found("daemon-")),
        "escapees running"
    );
    assert!(
        wait_until(SOON, || live_with_marker(&marker)
            .iter()
            .filter(|p| p.cmdline == "sleep 100")
            .count()
            >= 20),
        "storm running"
    );
    let escapee = live_with_marker(&marker)
        .into_iter()
        .find(|p| p.cmdline.starts_with("escapee-"))
        .expect("escapee");
    assert_eq!(
        escapee.ppid,
        d.pid(),
        "double-forked orphan is reparented to reapd (subreaper)"
    );
    let mut w = d.watch();
    d.signal(libc::SIGTERM);
    let events = w.drain(Duration::from_secs(30));
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
    let done = events.last().expect("done");
    assert_eq!(done["event"], "done");
    assert_eq!(done["survivors"], json!([]));
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
    let dir = TestDir::new("sweep");
    let tag = marker_of(&dir);
    // Started by the test, not by reapd: only the sweep can find them.
    let port_file = dir.join("port");
    let mut listener = outside(
        Command::new(fixture("listen.sh")).arg(&port_file).arg(&tag),
        &tag,
    );
    let mut matched = outside(
        Command::new("bash").args(["-c", "exec -a \"matchme-$0\" sleep 1000", &tag]),
        &tag,
    );
    assert!(
        wait_until(SOON, || dir.read("port").trim().parse::<u16>().is_ok()),
        "listener up"
    );
    let port: u16 = dir.read("port").trim().parse().expect("port");
    let cfg = json!({ "services": { "web": { "cmd": ["sleep", "1000"], "ports": [port], "match": [format!("matchme-{tag}")] } } });
    let mut d = Daemon::start_in(dir, &cfg, &[]);
    let mut w = d.watch();
    d.signal(libc::SIGTERM);
    let events = w.drain(Duration::from_secs(30));
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
    assert!(
        d.log().contains(&format!("sweep: pid {}", listener.pid())),
        "each swept process is logged"
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
fn dependency_waves_stop_in_order_and_independent_services_overlap() {
    let dir = TestDir::new("waves");
    let log = dir.join("waves.log");
    let svc = |name: &str, after: &[&str]| json!({ "cmd": [fixture("slowstop.sh"), name, "0.5", log], "after": after });
    let cfg = json!({ "services": {
        "db": svc("db", &[]),
        "web": svc("web", &["db"]),
        "proxy": svc("proxy", &["web"]),
        "cache": svc("cache", &[]),
    }});
    let mut d = Daemon::start_in(dir, &cfg, &[]);
    assert!(wait_until(SOON, || named_times(
        &d.dir.read("waves.log"),
        "started"
    )
    .len()
        == 4));
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
    let text = d.dir.read("waves.log");
    let term = named_times(&text, "got TERM");
    let exit = named_times(&text, "exiting");
    assert!(
        exit["proxy"] < term["web"] && exit["web"] < term["db"],
        "proxy, then web, then db:\n{text}"
    );
    // proxy and cache are independent: they stop in the same wave, at the same time.
    assert!(
        term["cache"] < exit["proxy"] && term["proxy"] < exit["cache"],
        "independent stops overlap:\n{text}"
    );
}

#[test]
fn three_stubborn_waves_fit_a_six_second_bound() {
    let dir = TestDir::new("budget");
    let svc = |log: &str, after: &[&str]| json!({ "cmd": [fixture("chain.sh"), "1", "1", dir.join(log), "ignore"], "after": after, "stop_timeout_ms": 20000 });
    let cfg = json!({ "shutdown_timeout_ms": 6000, "services": { "a": svc("a.log", &[]), "b": svc("b.log", &["a"]), "c": svc("c.log", &["b"]) } });
    let mut d = Daemon::start_in(dir, &cfg, &[]);
    for l in ["a.log", "b.log", "c.log"] {
        assert!(wait_until(SOON, || d.dir.read(l).contains("started")));
    }
    let t0 = Instant::now();
    d.signal(libc::SIGTERM);
    let code = d.exit_code(Duration::from_secs(20));
    let took = t0.elapsed();
    assert_eq!(code, 0, "{}", d.log());
    // The bound is 6 s; the margin only absorbs a loaded test machine.
    assert!(took < Duration::from_secs(12), "shutdown took {took:?}");
    d.assert_clean_exit();
    let log = d.log();
    assert!(log.contains("shutdown plan: wave 1: c (20 s → clipped to 1.766 s); wave 2: b (20 s → clipped to 1.766 s); wave 3: a (20 s → clipped to 1.766 s)"), "{log}");
    for l in ["a.log", "b.log", "c.log"] {
        assert!(
            d.dir.read(l).contains("got TERM"),
            "{l}: every service was asked first"
        );
    }
}

#[test]
fn cleanup_hooks_run_after_everything_is_gone_and_a_failing_or_hanging_hook_means_exit_1() {
    let dir = TestDir::new("hooks");
    let pidfile = dir.join("svc.pid");
    let check = format!(
        "p=$(cat {}); if kill -0 \"$p\" 2>/dev/null; then echo still-running > {d}/hook0; exit 1; fi; echo all-gone > {d}/hook0",
        pidfile.display(),
        d = dir.path.display()
    );
    let cfg = json!({
        "shutdown_timeout_ms": 6000,
        "services": { "svc": { "cmd": ["bash", "-c", format!("echo $$ > {}; exec sleep 1000", pidfile.display())] } },
        "cleanup": [["sh", "-c", check], ["sh", "-c", "exit 3"], ["sleep", "1000"]],
    });
    let mut d = Daemon::start_in(dir, &cfg, &[]);
    assert!(wait_until(SOON, || d
        .dir
        .read("svc.pid")
        .trim()
        .parse::<i32>()
        .is_ok()));
    let mut w = d.watch();
    d.signal(libc::SIGTERM);
    let events = w.drain(Duration::from_secs(30));
    assert_eq!(d.exit_code(Duration::from_secs(20)), 1, "{}", d.log());
    assert_eq!(
        d.dir.read("hook0").trim(),
        "all-gone",
        "hooks run after every process is gone"
    );
    let hooks = events_of(&events, "cleanup");
    assert_eq!(hooks.len(), 3, "{events:?}");
    assert_eq!(
        (hooks[0]["ok"].as_bool(), hooks[0]["result"].as_str()),
        (Some(true), Some("exit 0"))
    );
    assert_eq!(
        (hooks[1]["ok"].as_bool(), hooks[1]["result"].as_str()),
        (Some(false), Some("exit 3"))
    );
    assert_eq!(hooks[2]["ok"], false);
    assert!(
        hooks[2]["result"]
            .as_str()
            .unwrap_or("")
            .starts_with("killed"),
        "{}",
        hooks[2]
    );
    let done = events.last().expect("done");
    assert_eq!(
        (done["clean"].as_bool(), done["exit_code"].as_i64()),
        (Some(false), Some(1)),
        "{events:#?}"
    );
    let log = d.log();
    assert!(
        log.contains("cleanup[1] \"sh -c exit 3\" failed: exit 3"),
        "{log}"
    );
    assert!(
        log.contains("cleanup[2]: still running at its deadline; killing it"),
        "{log}"
    );
    assert!(
        !d.socket.exists() && !d.dir.join("s.sock.lock").exists(),
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
fn shutdown_works_from_any_moment() {
    // Right after start-up: services may still be starting.
    let dir = TestDir::new("early");
    let cfg = json!({ "services": { "a": { "cmd": chain_cmd(&dir, "a.log", 3, "exit") }, "b": { "cmd": ["sleep", "1000"], "after": ["a"] } } });
    let path = dir.write("config.json", &cfg.to_string());
    let mut d = Daemon::spawn_in(
        dir,
        Start {
            args: vec!["--config".into(), path.display().to_string()],
            env: Vec::new(),
            with_socket: true,
        },
    );
    assert!(wait_until(SOON, || d.socket.exists()));
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();

    // While a service waits in restart back-off (a 30 s back-off would outlast any bound).
    let cfg = json!({ "services": { "crash": { "cmd": ["sh", "-c", "sleep 0.2; exit 1"] }, "a": { "cmd": ["sleep", "1000"] } } });
    let mut d = Daemon::start("backoff-term", &cfg.to_string());
    d.wait_state("crash", "backoff");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();

    // In the middle of a reload: a removed service still stopping, an added one just started.
    let dir = TestDir::new("reload-term");
    let slow = json!({ "cmd": [fixture("slowstop.sh"), "old", "2", dir.join("old.log")] });
    let mut d = Daemon::start_in(dir, &json!({ "services": { "old": slow } }), &[]);
    assert!(wait_until(SOON, || d
        .dir
        .read("old.log")
        .contains("started")));
    d.dir.write(
        "config.json",
        &json!({ "services": { "new": { "cmd": ["sleep", "1000"] } } }).to_string(),
    );
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

    // While a cleanup hook runs: the repeated SIGTERM changes nothing, the hook finishes.
    let dir = TestDir::new("hook-term");
    let done = dir.join("hook-done");
    let cfg = json!({ "services": { "a": { "cmd": ["sleep", "1000"] } },
        "cleanup": [["bash", "-c", format!("echo running > {d}/hook-running; sleep 1; echo ok > {}", done.display(), d = dir.path.display())]] });
    let mut d = Daemon::start_in(dir, &cfg, &[]);
    d.signal(libc::SIGTERM);
    assert!(
        wait_until(SOON, || d.dir.join("hook-running").exists()),
        "hook started"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
    assert_eq!(
        d.dir.read("hook-done").trim(),
        "ok",
        "hook was not interrupted"
    );
    assert!(
        d.log().contains("shutdown already under way"),
        "{}",
        d.log()
    );
}

#[test]
fn a_tree_larger_than_the_open_file_limit_is_still_stopped_completely() {
    if !require_tool("prlimit") {
        return;
    }
    // 100 children, but reapd may hold only 64 descriptors: it cannot watch every process
    // through a pidfd and must notice their exit by rescanning instead.
    let dir = TestDir::new("fdlimit");
    let cfg = json!({ "services": { "wide": {
        "cmd": ["sh", "-c", "i=0; while [ $i -lt 100 ]; do sleep 1000 & i=$((i+1)); done; wait"],
        "stop_timeout_ms": 2000,
    } } });
    let path = dir.write("config.json", &cfg.to_string());
    let args = vec!["--config".to_string(), path.display().to_string()];
    let wrapper = ["prlimit", "--nofile=64:64", "--"];
    let mut d = Daemon::spawn_wrapped(
        dir,
        &wrapper,
        &[],
        Start {
            args,
            env: Vec::new(),
            with_socket: true,
        },
    );
    d.wait_ready();
    let marker = d.marker.clone();
    assert!(
        wait_until(SOON, || live_with_marker(&marker).len() > 100),
        "tree up"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
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
fn shell_loops_and_shell_masters_stop_gracefully_however_the_signal_lands() {
    let cfg = json!({ "services": {
        "loop": { "cmd": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 30; done"], "stop_timeout_ms": 10000 },
        "master": {
            "cmd": ["sh", "-c", "for i in 1 2; do sh -c 'trap \"exit 0\" TERM; while :; do sleep 30; done' & done; trap 'exit 0' TERM; while :; do sleep 30; done"],
            "stop_timeout_ms": 10000,
        },
    } });
    let mut d = Daemon::start("shell-loops", &cfg.to_string());
    stop_start_gracefully(&d, "loop", 5);
    stop_start_gracefully(&d, "master", 3);
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

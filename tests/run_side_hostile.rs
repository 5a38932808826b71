//! The run side as its users would break it, part one: services that misuse their notification
//! pipe (close it, flood it, notify then exit), exec checks that fork, hang or ignore SIGTERM,
//! health checks that flap or always fail, restart limits at their edges, essential services
//! that die by a signal or are given up on, one-shots that hang or leave children, and real
//! listeners. Part two is `run_side_hostile_control.rs`.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::*;
use serde_json::json;

/// reapd's own CPU time so far, in clock ticks.
fn cpu_ticks(d: &Daemon) -> u64 {
    stat(d.pid()).map(|s| s.cpu_ticks).unwrap_or(0)
}

// ---- notification pipes -------------------------------------------------------------------

#[test]
fn a_service_that_closes_its_notify_fd_fails_at_its_deadline_without_spinning_reapd() {
    let b = Daemon::builder("notify-eof");
    let cfg = json!({ "services": {
        "eof": { "cmd": ["sh", "-c", "exec 3>&-; exec sleep 1000"], "ready": { "notify_fd": 3 },
                 "ready_timeout_ms": 1500, "restart": "never" },
    }});
    let mut d = b.config(cfg).start();
    let before = cpu_ticks(&d);
    d.wait_state("eof", "failed");
    let spent = cpu_ticks(&d) - before;
    // An EOF that stays readable (level-triggered, never deregistered) would burn ~150 ticks.
    assert!(
        spent < 50,
        "reapd spent {spent} ticks waiting on a closed pipe"
    );
    let eof = d.service("eof").expect("eof");
    assert!(
        eof["why"].as_str().is_some_and(|w| w.contains("not ready")),
        "{eof}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_flood_without_a_newline_is_capped_and_the_service_fails_at_its_deadline() {
    let b = Daemon::builder("notify-flood");
    // 1 MiB of 'x', no newline; `head` would block once reapd closes the pipe: the writer gets
    // EPIPE and the shell goes on to sleep.
    let cfg = json!({ "services": {
        "flood": { "cmd": ["sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' x >&3; exec sleep 1000"],
                   "ready": { "notify_fd": 3 }, "ready_timeout_ms": 1500, "restart": "never" },
        "dep": { "cmd": ["sleep", "1000"], "after": ["flood"] },
    }});
    let mut d = b.config(cfg).start();
    d.wait_state("flood", "failed");
    assert_eq!(d.service("dep").expect("dep")["state"], "waiting");
    let rss = status_number(d.pid(), "VmRSS");
    assert!(rss < 64 * 1024, "reapd holds {rss} KiB after a 1 MiB flood");
    let log = d.log();
    assert!(log.contains("without a newline"), "{log}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_newline_and_an_exit_seen_in_the_same_turn_still_count_as_ready() {
    // reapd is stopped while the service writes its newline and exits, so the pipe and the exit
    // are both pending when it resumes: the newline came first and must count.
    let b = Daemon::builder("notify-exit-race");
    let dir = b.dir().path.clone();
    let cmd = format!(
        "while [ ! -e {} ]; do sleep 0.02; done; echo >&3; exit 0",
        dir.join("go").display()
    );
    let cfg = json!({ "services": {
        "init": { "cmd": ["sh", "-c", cmd], "ready": { "notify_fd": 3 }, "restart": "never" },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["init"] },
    }});
    let mut d = b.config(cfg).start();
    let init = d.pid_of("init").expect("init runs");
    d.signal(libc::SIGSTOP);
    d.dir.write("go", "");
    let zombie = wait_until(SOON, || stat(init).is_some_and(|s| s.state == 'Z'));
    d.signal(libc::SIGCONT);
    assert!(zombie, "init never exited");
    d.wait_for("web.log", "started");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn services_that_notify_and_exit_at_once_all_release_their_dependents() {
    // When the child writes its newline and exits before reapd has registered its pidfd and
    // pipe, both are already readable and the exit may be handled first: `exited` reports the
    // reaping before `forget` drains the pipe, so the core hears of the newline from a pid it has
    // already buried. Sixteen such services on two cores hit it on most runs.
    let b = Daemon::builder("notify-exit-many");
    let dir = b.dir().path.clone();
    let mut services = serde_json::Map::new();
    for i in 0..16 {
        services.insert(
            format!("init{i:02}"),
            json!({ "cmd": ["sh", "-c", "echo >&3; exit 0"], "ready": { "notify_fd": 3 },
                    "restart": "never" }),
        );
        services.insert(
            format!("web{i:02}"),
            json!({ "cmd": start_logger(&dir, "web.log"), "after": [format!("init{i:02}")] }),
        );
    }
    let mut d = b.config(json!({ "services": services })).start();
    let all = wait_until(SOON, || line_count(&d, "web.log") == 16);
    let waiting: Vec<String> = d
        .list()
        .iter()
        .filter(|s| s["state"] == "waiting")
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    assert!(
        all,
        "dependents still waiting for an init that did notify: {waiting:?}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_notify_fd_held_by_a_grandchild_does_not_make_a_restarted_service_ready() {
    // The first run hands fd 3 to a background child and dies; the second run never notifies.
    // The old pipe's write end lives on in the orphan: its newline must not count for the new
    // run.
    let b = Daemon::builder("notify-orphan");
    let dir = b.dir().path.clone();
    let runs = dir.join("runs.log");
    let script = format!(
        "echo run >> {runs}; n=$(wc -l < {runs}); \
         if [ $n -eq 1 ]; then (sleep 0.6; echo >&3; exec sleep 1000) & exit 1; fi; \
         exec 3>&-; exec sleep 1000",
        runs = runs.display()
    );
    let cfg = json!({ "services": {
        "db": { "cmd": ["sh", "-c", script], "ready": { "notify_fd": 3 },
                "ready_timeout_ms": 2500, "restart": "on-failure" },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["db"] },
    }});
    let mut d = b.config(cfg).start();
    let twice = wait_until(SOON, || line_count(&d, "runs.log") >= 2);
    assert!(twice, "db never restarted:\n{}", d.log());
    // The orphan writes at 0.6 s; the second run's deadline is 2.5 s later.
    let gone = wait_until(SOON, || {
        d.service("db").is_some_and(|s| s["state"] != "starting") || d.dir.join("web.log").exists()
    });
    assert!(gone, "{:?}", d.service("db"));
    assert!(
        !d.dir.join("web.log").exists(),
        "web started on a stale notification:\n{}",
        d.log()
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_notify_fd_above_the_open_file_limit_is_reported_as_such() {
    if !require_tool("prlimit") {
        return;
    }
    let b = Daemon::builder("notify-rlimit");
    let cfg = json!({ "services": {
        "db": { "cmd": ["sleep", "1000"], "ready": { "notify_fd": 1000 }, "restart": "never" },
    }});
    let mut d = b
        .config(cfg)
        .wrapper(["prlimit", "--nofile=64:64", "--"])
        .start();
    d.wait_state("db", "exited");
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("db: cannot start"))
        .unwrap_or_else(|| panic!("no start error:\n{log}"));
    assert!(
        line.contains("1000") && !line.contains("cannot execute"),
        "the error must name the descriptor, not blame the program: {line}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

// ---- exec checks --------------------------------------------------------------------------

#[test]
fn a_health_exec_check_that_forks_leaves_no_child_behind() {
    let b = Daemon::builder("check-forks");
    let dir = b.dir().path.clone();
    let check = format!(
        "echo $$ >> {}; sleep 1000 & exit 0",
        dir.join("checks.log").display()
    );
    let cfg = json!({ "services": {
        "web": { "cmd": ["sleep", "1000"],
                 "health": { "exec": ["sh", "-c", check], "interval_ms": 50, "retries": 3 } },
    }});
    let mut d = b.config(cfg).start();
    let ran = wait_until(SOON, || line_count(&d, "checks.log") >= 6);
    assert!(ran, "checks never ran:\n{}", d.log());
    let web = d.pid_of("web").expect("web runs");
    let others: Vec<Proc> = d
        .services_procs()
        .into_iter()
        .filter(|p| p.pid != web && !p.cmdline.starts_with("sh -c echo"))
        .collect();
    assert!(
        others.len() <= 1,
        "{} check leftovers alive after 6 checks (they grow without bound): {others:?}",
        others.len()
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_ready_exec_check_that_forks_leaves_no_child_behind() {
    let b = Daemon::builder("ready-forks");
    let cfg = json!({ "services": {
        "web": { "cmd": ["sleep", "1000"],
                 "ready": { "exec": ["sh", "-c", "sleep 1000 & exit 0"] } },
    }});
    let mut d = b.config(cfg).start();
    let ok = wait_until(SOON, || {
        d.service("web").is_some_and(|s| s["ready"] == true)
    });
    assert!(ok, "{:?}", d.service("web"));
    let web = d.pid_of("web").expect("web");
    let others = || -> Vec<Proc> {
        d.services_procs()
            .into_iter()
            .filter(|p| p.pid != web)
            .collect()
    };
    let gone = wait_until(Duration::from_secs(3), || others().is_empty());
    assert!(gone, "the check's child lives on: {:?}", others());
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn an_exec_check_that_ignores_sigterm_is_still_killed_at_its_timeout() {
    let b = Daemon::builder("check-deaf");
    let dir = b.dir().path.clone();
    // An ignored signal stays ignored across exec: the sleep is deaf to SIGTERM.
    let check = format!(
        "trap '' TERM; echo $$ >> {}; exec sleep 1000",
        dir.join("checks.log").display()
    );
    let cfg = json!({ "services": {
        "web": { "cmd": ["sleep", "1000"],
                 "health": { "exec": ["sh", "-c", check], "interval_ms": 50,
                             "timeout_ms": 1000, "retries": 1000 } },
    }});
    let mut d = b.config(cfg).start();
    let ran = wait_until(SOON, || line_count(&d, "checks.log") >= 3);
    assert!(ran, "checks never ran:\n{}", d.log());
    let first: i32 = d
        .dir
        .read("checks.log")
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("a pid");
    assert!(
        !d.runs(first),
        "a check that ignores SIGTERM outlived its timeout"
    );
    let web = d.service("web").expect("web");
    assert_eq!(web["health"], "failing", "{web}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_ready_exec_check_in_flight_dies_with_its_service() {
    let b = Daemon::builder("check-orphaned");
    let dir = b.dir().path.clone();
    let check = format!(
        "echo $$ >> {}; exec sleep 1000",
        dir.join("checks.log").display()
    );
    let cmd = format!(
        "while [ ! -e {} ]; do sleep 0.02; done; exit 1",
        dir.join("checks.log").display()
    );
    let cfg = json!({ "services": {
        "db": { "cmd": ["sh", "-c", cmd], "ready": { "exec": ["sh", "-c", check] },
                "restart": "never" },
    }});
    let mut d = b.config(cfg).start();
    let text = d.wait_for("checks.log", "\n");
    let check_pid: i32 = text.trim().parse().expect("a pid");
    let over = wait_until(SOON, || {
        d.service("db")
            .is_some_and(|s| s["pid"].is_null() && s["state"] != "starting")
    });
    assert!(over, "{:?}", d.service("db"));
    let gone = wait_until(SOON, || !d.runs(check_pid));
    assert!(gone, "the ready check outlived its service:\n{}", d.log());
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn an_exec_check_runs_in_its_services_environment_and_directory() {
    let b = Daemon::builder("check-env");
    let dir = b.dir().path.clone();
    std::fs::create_dir(dir.join("work")).expect("mkdir");
    std::fs::write(dir.join("work/here"), "").expect("file");
    let cfg = json!({ "services": {
        "db": { "cmd": ["sleep", "1000"], "env": { "ROLE": "primary" }, "cwd": dir.join("work"),
                "ready": { "exec": ["sh", "-c", "test \"$ROLE\" = primary && test -e here"] },
                "ready_timeout_ms": 5000, "restart": "never" },
    }});
    let mut d = b.config(cfg).start();
    let ok = wait_until(SOON, || d.service("db").is_some_and(|s| s["ready"] == true));
    assert!(ok, "{:?}\n{}", d.service("db"), d.log());
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_shutdown_while_ready_and_health_checks_hang_leaves_nothing_and_exits_0() {
    let b = Daemon::builder("checks-in-flight");
    let dir = b.dir().path.clone();
    let hang = |log: &str| {
        json!([
            "sh",
            "-c",
            format!(
                "echo $$ >> {}; trap '' TERM; sleep 1000 & wait; wait",
                dir.join(log).display()
            )
        ])
    };
    let cfg = json!({ "services": {
        "a": { "cmd": ["sleep", "1000"], "ready": { "exec": hang("ready.log") },
               "ready_timeout_ms": 60000 },
        "b": { "cmd": ["sleep", "1000"],
               "health": { "exec": hang("health.log"), "interval_ms": 10, "timeout_ms": 60000 } },
        "c": { "cmd": ["sleep", "1000"], "after": ["a"] },
    }});
    let mut d = b.config(cfg).start();
    let both = wait_until(SOON, || {
        d.dir.join("ready.log").exists() && d.dir.join("health.log").exists()
    });
    assert!(both, "checks never started:\n{}", d.log());
    let down = reapd_ctl(&d, &["shutdown", "--wait"], Duration::from_secs(40));
    assert_eq!(down.code, Some(0), "{down:?}\n{}", d.log());
    d.assert_clean_exit();
}

// ---- health flapping and restart limits ---------------------------------------------------

#[test]
fn a_flapping_health_check_below_its_retries_never_restarts_the_service() {
    let b = Daemon::builder("flap");
    let dir = b.dir().path.clone();
    // Passes, fails, passes, fails... never two failures in a row.
    let check = format!(
        "f={}; n=$(wc -l < $f 2>/dev/null || echo 0); echo x >> $f; [ $((n % 2)) -eq 0 ]",
        dir.join("checks.log").display()
    );
    let cfg = json!({ "services": {
        "web": { "cmd": ["sleep", "1000"],
                 "health": { "exec": ["sh", "-c", check], "interval_ms": 20, "retries": 2 } },
    }});
    let mut d = b.config(cfg).start();
    let web = d.pid_of("web").expect("web");
    let ran = wait_until(SOON, || line_count(&d, "checks.log") >= 12);
    assert!(ran, "checks never ran:\n{}", d.log());
    let s = d.service("web").expect("web");
    assert_eq!(s["pid"], web, "restarted by a flapping check: {s}");
    assert_eq!(s["restarts"], 0, "{s}");
    assert_ne!(s["health"], "unhealthy", "{s}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn restarts_for_failed_health_checks_back_off_like_any_other() {
    let b = Daemon::builder("health-backoff");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "web": { "cmd": start_logger(&dir, "web.log"),
                 "health": { "exec": ["false"], "interval_ms": 10, "retries": 1 } },
    }});
    let mut d = b.config(cfg).start();
    d.wait_for("web.log", "started");
    // reapd.json(5): restarts back off 100 ms, 200, 400, 800...: at most 6 starts in 3 s.
    let storm = wait_until(Duration::from_secs(3), || line_count(&d, "web.log") >= 12);
    let starts = line_count(&d, "web.log");
    assert!(!storm, "{starts} starts in under 3 s: no back-off");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn max_restarts_zero_fails_at_the_first_exit_and_ctl_start_forgives_it_once() {
    let b = Daemon::builder("max-zero");
    let dir = b.dir().path.clone();
    let cmd = format!("echo run >> {}; exit 1", dir.join("runs.log").display());
    let cfg = json!({ "services": {
        "flaky": { "cmd": ["sh", "-c", cmd], "max_restarts": 0 },
    }});
    let mut d = b.config(cfg).start();
    d.wait_state("flaky", "failed");
    assert_eq!(line_count(&d, "runs.log"), 1);
    let again = reapd_ctl(&d, &["start", "flaky"], SOON);
    assert_eq!(again.code, Some(0), "{again:?}");
    let twice = wait_until(SOON, || {
        line_count(&d, "runs.log") == 2
            && d.service("flaky").is_some_and(|s| s["state"] == "failed")
    });
    assert!(twice, "{:?}\n{}", d.service("flaky"), d.log());
    assert_eq!(line_count(&d, "runs.log"), 2, "one run per ctl start");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

// ---- essential services -------------------------------------------------------------------

#[test]
fn an_essential_service_killed_by_a_signal_ends_reapd_with_128_plus_the_signal() {
    let b = Daemon::builder("essential-sig");
    let cfg = json!({ "services": {
        "db": { "cmd": chain_cmd(b.dir(), "db.log", 2, "exit") },
        "app": { "cmd": ["sh", "-c", "sleep 0.3; kill -KILL $$"], "essential": true,
                 "restart": "never", "after": ["db"] },
    }});
    let mut d = b.config(cfg).spawn();
    let code = d.exit_code(Duration::from_secs(40));
    assert_eq!(code, 128 + 9, "log:\n{}", d.log());
    d.assert_nothing_left();
}

#[test]
fn an_essential_one_shot_that_succeeds_keeps_reapd_running() {
    let b = Daemon::builder("essential-ok");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "migrate": { "cmd": ["true"], "type": "oneshot", "essential": true },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["migrate"] },
    }});
    let mut d = b.config(cfg).start();
    d.wait_for("web.log", "started");
    d.wait_state("migrate", "done");
    assert_eq!(reapd_ctl(&d, &["ready"], SOON).code, Some(0));
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_one_shot_that_hangs_past_its_ready_timeout_fails_or_the_key_is_refused() {
    let b = Daemon::builder("oneshot-hangs");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "migrate": { "cmd": ["sleep", "1000"], "type": "oneshot", "ready_timeout_ms": 300 },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["migrate"] },
    }});
    let checked = check(&b.dir().write("config.json", &cfg.to_string()));
    let warned = checked.code == Some(2) || checked.stderr.contains("ready_timeout_ms");
    let mut d = b.config(cfg).start();
    // systemd's TimeoutStartSec and s6-rc's timeout-up bound a one-shot; reapd's deadline is
    // the key the user wrote.
    let failed = wait_until(Duration::from_secs(5), || {
        d.service("migrate").is_some_and(|s| s["state"] == "failed")
    });
    assert!(
        warned || failed,
        "migrate still {:?} long after its 300 ms; check said {checked:?}",
        d.service("migrate")
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_one_shot_that_leaves_a_child_is_done_and_nothing_survives_the_shutdown() {
    // A one-shot that exits 0 but leaves a daemonised child: done, and nothing survives reapd.
    let b = Daemon::builder("oneshot-leftover");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "setup": { "cmd": ["sh", "-c", "sleep 1000 & exit 0"], "type": "oneshot" },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["setup"] },
    }});
    let mut d = b.config(cfg).start();
    d.wait_for("web.log", "started");
    assert_eq!(d.service("setup").expect("setup")["state"], "done");
    let down = reapd_ctl(&d, &["shutdown", "--wait"], Duration::from_secs(40));
    assert_eq!(down.code, Some(0), "{down:?}");
    d.assert_clean_exit();
}

#[test]
fn an_essential_service_stopped_by_reapd_s_own_shutdown_or_by_ctl_does_not_change_the_exit() {
    let b = Daemon::builder("essential-ctl");
    let cfg = json!({ "services": {
        "app": { "cmd": ["sleep", "1000"], "essential": true },
        "side": { "cmd": ["sleep", "1000"] },
    }});
    let mut d = b.config(cfg).start();
    let stop = reapd_ctl(&d, &["stop", "app"], SOON);
    assert_eq!(stop.code, Some(0), "{stop:?}");
    d.wait_state("app", "stopped");
    assert!(
        d.pid_of("side").is_some(),
        "an operator's stop ended the run"
    );
    let start = reapd_ctl(&d, &["restart", "app"], SOON);
    assert_eq!(start.code, Some(0), "{start:?}");
    d.wait_state("app", "running");
    // SIGTERM kills app as part of the shutdown: that is no failure of app's.
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn an_essential_service_that_never_becomes_ready_ends_reapd_with_1() {
    let b = Daemon::builder("essential-not-ready");
    let cfg = json!({ "services": {
        "app": { "cmd": ["sleep", "1000"], "essential": true, "ready": { "notify_fd": 3 },
                 "ready_timeout_ms": 300, "restart": "never" },
        "side": { "cmd": ["sleep", "1000"] },
    }});
    let mut d = b.config(cfg).spawn();
    let code = d.exit_code(Duration::from_secs(40));
    d.assert_nothing_left();
    // reapd(8): "1 if it ended with 0 yet failed, as a start that never became ready". A 143
    // reads, to an orchestrator, as "someone sent SIGTERM": it hides the real cause.
    assert_eq!(code, 1, "log:\n{}", d.log());
}

#[test]
fn an_essential_service_given_up_on_for_its_health_ends_reapd_with_1() {
    let b = Daemon::builder("essential-unhealthy");
    let cfg = json!({ "services": {
        "app": { "cmd": ["sleep", "1000"], "essential": true,
                 "health": { "exec": ["false"], "interval_ms": 20, "retries": 1 },
                 "max_restarts": 0 },
    }});
    let mut d = b.config(cfg).spawn();
    let code = d.exit_code(Duration::from_secs(40));
    d.assert_nothing_left();
    assert_eq!(code, 1, "log:\n{}", d.log());
}

// ---- real listeners -----------------------------------------------------------------------

#[test]
fn a_unix_socket_readiness_check_waits_for_a_real_listener() {
    if !require_tool("python3") {
        return;
    }
    let b = Daemon::builder("ready-unix");
    let dir = b.dir().path.clone();
    let sock = dir.join("db.sock");
    let script = b.dir().script(
        "server.py",
        r#"import socket, sys, time
path, log = sys.argv[1], sys.argv[2]
time.sleep(0.6)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(4)
open(log, "a").write("listening\n")
while True:
    c, _ = s.accept()
    c.close()
"#,
    );
    let cfg = json!({ "services": {
        "db": { "cmd": ["python3", script, sock, dir.join("db.log")], "ready": { "unix": sock } },
        "web": { "cmd": ["sh", "-c", format!("cat {} >> {}; exec sleep 1000",
                   dir.join("db.log").display(), dir.join("web.log").display())],
                 "after": ["db"] },
    }});
    let mut d = b.config(cfg).start();
    let text = d.wait_for("web.log", "listening");
    assert_eq!(text.trim(), "listening", "web saw db's log: {text}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_real_server_that_stops_listening_is_restarted_by_its_tcp_health_check() {
    if !require_tool("python3") {
        return;
    }
    let b = Daemon::builder("health-tcp");
    let dir = b.dir().path.clone();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    // Listens, answers until the file `sick` exists, then closes its listener and hangs on.
    let script = b.dir().script(
        "server.py",
        r#"import os, socket, sys, time
port, sick, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(16)
s.settimeout(0.05)
open(log, "a").write("up %d\n" % os.getpid())
while not os.path.exists(sick):
    try:
        c, _ = s.accept()
        c.close()
    except socket.timeout:
        pass
s.close()
time.sleep(1000)
"#,
    );
    let cfg = json!({ "services": {
        "web": { "cmd": ["python3", script, port.to_string(), dir.join("sick"), dir.join("web.log")],
                 "ready": { "tcp": port },
                 "health": { "tcp": port, "interval_ms": 50, "retries": 2 },
                 "restart": "always" },
    }});
    let mut d = b.config(cfg).start();
    let healthy = wait_until(SOON, || {
        d.service("web").is_some_and(|s| s["health"] == "healthy")
    });
    assert!(healthy, "{:?}\n{}", d.service("web"), d.log());
    d.dir.write("sick", "");
    let restarted = wait_until(SOON, || line_count(&d, "web.log") >= 2);
    assert!(restarted, "never restarted:\n{}", d.log());
    assert!(d.log().contains("unhealthy"), "{}", d.log());
    std::fs::remove_file(d.dir.join("sick")).expect("heal");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_tcp_readiness_check_is_not_fooled_by_a_bound_port_that_does_not_listen() {
    // A socket bound but never listening refuses connections: not ready.
    let b = Daemon::builder("ready-bound");
    let dir = b.dir().path.clone();
    let held = TcpListener::bind("127.0.0.1:0").expect("port");
    let port = held.local_addr().expect("addr").port();
    drop(held);
    let script = b.dir().script(
        "bound.py",
        "import socket, sys, time\ns = socket.socket()\ns.bind(('127.0.0.1', int(sys.argv[1])))\ntime.sleep(1000)\n",
    );
    if !require_tool("python3") {
        return;
    }
    let cfg = json!({ "services": {
        "db": { "cmd": ["python3", script, port.to_string()], "ready": { "tcp": port },
                "ready_timeout_ms": 1200, "restart": "never" },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["db"] },
    }});
    let mut d = b.config(cfg).start();
    d.wait_state("db", "failed");
    assert!(!d.dir.join("web.log").exists());
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

//! The run side as its users would break it, part two: control commands on waiting, failed and
//! finished services, `ctl wait` and `ctl ready` as scripts and probes use them, reloads that
//! change what a waiting service waits for, reapd's own readiness told to s6 and systemd while
//! services fail, and config values a user gets wrong. Part one is `run_side_hostile.rs`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

// ---- control on waiting, failed and finished services -------------------------------------

#[test]
fn a_waiting_service_stopped_by_ctl_stays_down_when_its_dependency_becomes_ready() {
    let b = Daemon::builder("stop-waiting");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "db": { "cmd": ready_on_go(&dir), "ready": { "notify_fd": 3 } },
        "api": { "cmd": start_logger(&dir, "api.log"), "after": ["db"] },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["db"] },
    }});
    let mut d = b.config(cfg).start();
    assert_eq!(d.service("api").expect("api")["state"], "waiting");
    let stop = reapd_ctl(&d, &["stop", "api"], SOON);
    assert_eq!(stop.code, Some(0), "{stop:?}");
    d.wait_state("api", "stopped");
    d.dir.write("go", "");
    d.wait_for("web.log", "started");
    assert_eq!(d.service("api").expect("api")["state"], "stopped");
    assert!(!d.dir.join("api.log").exists(), "a stopped service started");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn ctl_start_of_a_service_whose_dependency_is_not_ready_does_not_claim_success() {
    let b = Daemon::builder("start-waiting");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "db": { "cmd": ready_on_go(&dir), "ready": { "notify_fd": 3 } },
        "api": { "cmd": start_logger(&dir, "api.log"), "after": ["db"], "autostart": false },
    }});
    let mut d = b.config(cfg).start();
    let start = reapd_ctl(&d, &["start", "api"], Duration::from_secs(3));
    let state = d.service("api").expect("api")["state"].clone();
    assert!(
        !(start.code == Some(0) && state != "running"),
        "ctl start said done ({start:?}) while api is {state}"
    );
    d.dir.write("go", "");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn ctl_restart_of_a_done_one_shot_runs_it_again_and_leaves_its_dependents_alone() {
    let b = Daemon::builder("restart-done");
    let dir = b.dir().path.clone();
    let cmd = format!("echo run >> {}", dir.join("runs.log").display());
    let cfg = json!({ "services": {
        "setup": { "cmd": ["sh", "-c", cmd], "type": "oneshot" },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["setup"] },
    }});
    let mut d = b.config(cfg).start();
    d.wait_for("web.log", "started");
    d.wait_state("setup", "done");
    let web = d.pid_of("web").expect("web");
    let again = reapd_ctl(&d, &["restart", "setup"], SOON);
    assert_eq!(again.code, Some(0), "{again:?}");
    let twice = wait_until(SOON, || {
        line_count(&d, "runs.log") == 2 && d.service("setup").is_some_and(|s| s["state"] == "done")
    });
    assert!(twice, "{:?}\n{}", d.service("setup"), d.log());
    assert_eq!(d.pid_of("web"), Some(web));
    assert_eq!(line_count(&d, "web.log"), 1);
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_dependent_of_an_autostart_false_service_waits_until_ctl_start_releases_it() {
    let b = Daemon::builder("autostart-dep");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "tool": { "cmd": ["sleep", "1000"], "autostart": false },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["tool"] },
    }});
    let mut d = b.config(cfg).start();
    assert_eq!(d.service("web").expect("web")["state"], "waiting");
    let not = reapd_ctl(&d, &["ready"], SOON);
    assert_eq!(not.code, Some(1), "{not:?}");
    assert!(not.stdout.contains("web"), "{not:?}");
    assert!(!not.stdout.contains("tool"), "{not:?}");
    let start = reapd_ctl(&d, &["start", "tool"], SOON);
    assert_eq!(start.code, Some(0), "{start:?}");
    d.wait_for("web.log", "started");
    assert_eq!(reapd_ctl(&d, &["ready"], SOON).code, Some(0));
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn check_warns_about_a_dependent_of_an_autostart_false_service() {
    let dir = TestDir::new("autostart-warn");
    let path = dir.write(
        "config.json",
        &json!({ "services": {
            "tool": { "cmd": ["sleep", "1000"], "autostart": false },
            "web": { "cmd": ["sleep", "1000"], "after": ["tool"] },
        }})
        .to_string(),
    );
    let run = check(&path);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stderr.contains("autostart"),
        "no word that web waits until `ctl start tool`: {run:?}"
    );
}

#[test]
fn ctl_wait_during_a_shutdown_answers_at_once_with_failure() {
    let b = Daemon::builder("wait-shutdown");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "db": { "cmd": ready_on_go(&dir), "ready": { "notify_fd": 3 } },
        "slow": { "cmd": slowstop_cmd(b.dir(), "slow", "1", "slow.log") },
    }});
    let mut d = b.config(cfg).start();
    d.wait_for("slow.log", "started");
    let socket = d.socket.clone();
    let waiter = std::thread::spawn(move || {
        let s = socket.display().to_string();
        run_bounded(
            std::process::Command::new(BIN).args(["ctl", "--socket", &s, "wait", "--ready"]),
            Duration::from_secs(30),
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    d.signal(libc::SIGTERM);
    let waited = waiter.join().expect("waiter");
    assert_eq!(waited.code, Some(1), "{waited:?}");
    assert!(waited.stderr.contains("shut"), "{waited:?}");
    d.assert_clean_exit();
}

#[test]
fn ctl_wait_answers_when_a_failed_service_makes_readiness_impossible() {
    let b = Daemon::builder("wait-failed");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "migrate": { "cmd": ["sh", "-c", "exit 2"], "type": "oneshot" },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["migrate"] },
    }});
    let mut d = b.config(cfg).start();
    d.wait_state("migrate", "failed");
    // A deploy script's `reapd ctl wait --ready && smoke-test`: it must learn of the failure,
    // not hang until its own watchdog fires.
    let waited = reapd_ctl(&d, &["wait", "--ready"], Duration::from_secs(5));
    assert_eq!(
        waited.code,
        Some(1),
        "killed at 5 s means it hung: {waited:?}"
    );
    assert!(waited.stderr.contains("migrate"), "{waited:?}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn ctl_start_of_a_fixed_one_shot_releases_the_dependents_it_held_back() {
    let b = Daemon::builder("oneshot-fixed");
    let dir = b.dir().path.clone();
    let cmd = format!("test -e {}", dir.join("fixed").display());
    let cfg = json!({ "services": {
        "migrate": { "cmd": ["sh", "-c", cmd], "type": "oneshot" },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["migrate"] },
    }});
    let mut d = b.config(cfg).start();
    d.wait_state("migrate", "failed");
    assert_eq!(d.service("web").expect("web")["state"], "waiting");
    d.dir.write("fixed", "");
    let start = reapd_ctl(&d, &["start", "migrate"], SOON);
    assert_eq!(start.code, Some(0), "{start:?}");
    d.wait_for("web.log", "started");
    d.wait_state("migrate", "done");
    assert_eq!(reapd_ctl(&d, &["ready"], SOON).code, Some(0));
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn ctl_stop_of_a_starting_service_kills_its_ready_check_too() {
    let b = Daemon::builder("stop-starting");
    let dir = b.dir().path.clone();
    let check = format!(
        "echo $$ >> {}; exec sleep 1000",
        dir.join("checks.log").display()
    );
    let cfg = json!({ "services": {
        "db": { "cmd": ["sleep", "1000"], "ready": { "exec": ["sh", "-c", check] } },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["db"] },
    }});
    let mut d = b.config(cfg).start();
    let ran = wait_until(SOON, || line_count(&d, "checks.log") >= 1);
    assert!(ran, "{}", d.log());
    let stop = reapd_ctl(&d, &["stop", "db"], SOON);
    assert_eq!(stop.code, Some(0), "{stop:?}");
    d.wait_state("db", "stopped");
    let left = wait_until(SOON, || d.services_procs().is_empty());
    assert!(left, "left after stopping db: {:?}", d.services_procs());
    assert_eq!(d.service("web").expect("web")["state"], "waiting");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn ctl_wait_with_a_zero_timeout_is_a_usage_error_or_an_answer_not_unreachable() {
    let b = Daemon::builder("wait-zero");
    let cfg = json!({ "services": { "a": { "cmd": ["sleep", "1000"] } } });
    let mut d = b.config(cfg).start();
    let run = reapd_ctl(&d, &["wait", "--ready", "--timeout", "0"], SOON);
    assert!(
        matches!(run.code, Some(0) | Some(1) | Some(2)),
        "exit 3 says reapd cannot be reached, yet it runs: {run:?}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn ctl_restart_of_a_ready_dependency_does_not_duplicate_its_dependents() {
    let b = Daemon::builder("restart-dep");
    let dir = b.dir().path.clone();
    let cmd = format!(
        "echo up >> {}; echo >&3; exec sleep 1000",
        dir.join("db.log").display()
    );
    let cfg = json!({ "services": {
        "db": { "cmd": ["sh", "-c", cmd], "ready": { "notify_fd": 3 } },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["db"] },
    }});
    let mut d = b.config(cfg).start();
    d.wait_for("web.log", "started");
    let web = d.pid_of("web").expect("web");
    let again = reapd_ctl(&d, &["restart", "db"], SOON);
    assert_eq!(again.code, Some(0), "{again:?}");
    let back = wait_until(SOON, || {
        line_count(&d, "db.log") == 2 && d.service("db").is_some_and(|s| s["ready"] == true)
    });
    assert!(back, "{:?}\n{}", d.service("db"), d.log());
    assert_eq!(d.pid_of("web"), Some(web));
    assert_eq!(line_count(&d, "web.log"), 1);
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn pending_waits_do_not_lock_out_the_liveness_and_readiness_probes() {
    let b = Daemon::builder("wait-flood");
    let cfg = json!({ "services": {
        "db": { "cmd": ["sleep", "1000"], "ready": { "notify_fd": 3 } },
    }});
    let mut d = b.config(cfg).start();
    // Deploy scripts each running `reapd ctl wait --ready` while db starts slowly: reapd holds
    // a bounded number of them and answers the rest at once, so they leave.
    let mut waiters: Vec<std::process::Child> = (0..64)
        .map(|_| {
            std::process::Command::new(BIN)
                .args(["ctl", "--socket"])
                .arg(&d.socket)
                .args(["wait", "--ready"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn ctl wait")
        })
        .collect();
    let settled = wait_until(SOON, || {
        waiters
            .iter_mut()
            .map(|c| c.try_wait().ok().flatten().is_some())
            .filter(|done| *done)
            .count()
            >= 64 - 16
    });
    let ping = reapd_ctl(&d, &["ping"], SOON);
    let ready = reapd_ctl(&d, &["ready"], SOON);
    for mut c in waiters {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert!(
        settled,
        "the waits beyond the cap were not answered at once"
    );
    assert_eq!(ping.code, Some(0), "the liveness probe fails: {ping:?}");
    assert!(!ready.stderr.contains("too_many"), "{ready:?}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

// ---- reloads that change what a service waits for -----------------------------------------

#[test]
fn a_reload_that_drops_a_waiting_services_dependency_starts_it() {
    let b = Daemon::builder("reload-after");
    let dir = b.dir().path.clone();
    let web = start_logger(&dir, "web.log");
    let cfg = json!({ "services": {
        "db": { "cmd": ready_on_go(&dir), "ready": { "notify_fd": 3 } },
        "web": { "cmd": web.clone(), "after": ["db"] },
    }});
    let mut d = b.config(cfg.clone()).start();
    assert_eq!(d.service("web").expect("web")["state"], "waiting");
    let mut next = cfg;
    next["services"]["web"] = json!({ "cmd": web });
    d.rewrite_config(next);
    let reply = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(reply["ok"], true, "{reply}");
    d.wait_for("web.log", "started");
    assert_eq!(d.service("db").expect("db")["state"], "starting");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_reload_that_removes_a_starting_dependencys_ready_check_releases_its_dependents() {
    let b = Daemon::builder("reload-ready");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "db": { "cmd": ["sleep", "1000"], "ready": { "notify_fd": 3 } },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["db"] },
    }});
    let mut d = b.config(cfg.clone()).start();
    assert_eq!(d.service("db").expect("db")["state"], "starting");
    let mut next = cfg;
    next["services"]["db"] = json!({ "cmd": ["sleep", "1000"] });
    d.rewrite_config(next);
    let reply = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(reply["ok"], true, "{reply}");
    d.wait_for("web.log", "started");
    assert_eq!(line_count(&d, "web.log"), 1);
    assert_eq!(reapd_ctl(&d, &["ready"], SOON).code, Some(0));
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_reload_that_turns_a_starting_dependency_into_a_one_shot_releases_its_dependents() {
    let b = Daemon::builder("reload-type");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "db": { "cmd": ["sleep", "1000"], "ready": { "notify_fd": 3 } },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["db"] },
    }});
    let mut d = b.config(cfg.clone()).start();
    let mut next = cfg;
    next["services"]["db"] = json!({ "cmd": ["true"], "type": "oneshot" });
    d.rewrite_config(next);
    let reply = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(reply["ok"], true, "{reply}");
    d.wait_for("web.log", "started");
    d.wait_state("db", "done");
    assert_eq!(reapd_ctl(&d, &["ready"], SOON).code, Some(0));
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_reload_that_changes_a_done_one_shot_runs_the_new_one_or_says_why_not() {
    let b = Daemon::builder("reload-done");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "migrate": { "cmd": ["true"], "type": "oneshot" },
        "web": { "cmd": ["sleep", "1000"], "after": ["migrate"] },
    }});
    let mut d = b.config(cfg.clone()).start();
    d.wait_state("migrate", "done");
    let mut next = cfg;
    let cmd = format!("echo v2 >> {}", dir.join("v2.log").display());
    next["services"]["migrate"] = json!({ "cmd": ["sh", "-c", cmd], "type": "oneshot" });
    d.rewrite_config(next);
    let reply = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(reply.to_string().contains("migrate"), "{reply}");
    let ran = wait_until(Duration::from_secs(3), || d.dir.join("v2.log").exists());
    let log = d.log();
    let told = log
        .lines()
        .any(|l| l.contains("migrate") && (l.contains("not run again") || l.contains("ctl start")));
    assert!(
        ran || told,
        "migrate is listed as changed, still shows `done` for a command it never ran, and \
         nothing says so:\n{log}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_reload_that_makes_a_cycle_is_refused_and_changes_nothing() {
    let b = Daemon::builder("reload-cycle");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "db": { "cmd": ready_on_go(&dir), "ready": { "notify_fd": 3 } },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["db"] },
    }});
    let mut d = b.config(cfg.clone()).start();
    let db = d.pid_of("db").expect("db");
    let mut next = cfg;
    next["services"]["db"]["after"] = json!(["web"]);
    d.rewrite_config(next);
    let reply = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(reply.to_string().contains("cycle"), "{reply}");
    assert_eq!(d.pid_of("db"), Some(db));
    assert_eq!(d.service("web").expect("web")["state"], "waiting");
    d.dir.write("go", "");
    d.wait_for("web.log", "started");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

// ---- reapd's own readiness (s6 --notify-fd) -----------------------------------------------

#[test]
fn notify_fd_is_written_only_once_a_slow_dependency_and_its_dependent_are_ready() {
    let b = Daemon::builder("own-ready");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "db": { "cmd": ready_on_go(&dir), "ready": { "notify_fd": 3 } },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["db"] },
    }});
    let mut d = b
        .config(cfg)
        .args(["--notify-fd", "5"])
        .notify_pipe(5)
        .start();
    let mut pipe = d.notify.take().expect("pipe");
    let (early, eof) = read_until_eof(&mut pipe, Duration::from_millis(800));
    assert!(
        early.is_empty() && !eof,
        "reapd told s6 it was ready before db: {early:?}"
    );
    d.dir.write("go", "");
    let (got, eof) = read_until_eof(&mut pipe, SOON);
    assert_eq!(got, b"\n");
    assert!(eof);
    // web has no check: it counts as ready once spawned, before its shell has run.
    assert!(d.pid_of("web").is_some(), "ready before web was spawned");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn notify_fd_is_not_written_while_a_failed_one_shot_blocks_its_dependents() {
    let b = Daemon::builder("own-ready-fail");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "migrate": { "cmd": ["sh", "-c", "exit 2"], "type": "oneshot" },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["migrate"] },
    }});
    let mut d = b
        .config(cfg)
        .args(["--notify-fd", "5"])
        .notify_pipe(5)
        .start();
    d.wait_state("migrate", "failed");
    let probe = reapd_ctl(&d, &["ready"], SOON);
    assert_eq!(probe.code, Some(1), "ctl ready says not ready: {probe:?}");
    let mut pipe = d.notify.take().expect("pipe");
    let (got, _) = read_until_eof(&mut pipe, Duration::from_millis(800));
    assert!(
        got.is_empty(),
        "reapd announced readiness ({got:?}) though `ctl ready` says not ready: {}",
        probe.stdout
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn notify_fd_is_not_written_when_a_service_fails_to_become_ready() {
    let b = Daemon::builder("own-ready-timeout");
    let cfg = json!({ "services": {
        "mute": { "cmd": ["sleep", "1000"], "ready": { "notify_fd": 3 },
                  "ready_timeout_ms": 300, "restart": "never" },
        "ok": { "cmd": ["sleep", "1000"] },
    }});
    let mut d = b
        .config(cfg)
        .args(["--notify-fd", "5"])
        .notify_pipe(5)
        .start();
    d.wait_state("mute", "failed");
    let probe = reapd_ctl(&d, &["ready"], SOON);
    assert_eq!(probe.code, Some(1), "{probe:?}");
    let mut pipe = d.notify.take().expect("pipe");
    let (got, _) = read_until_eof(&mut pipe, Duration::from_millis(800));
    assert!(
        got.is_empty(),
        "reapd announced readiness ({got:?}) with mute failed: {}",
        probe.stdout
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn notify_socket_gets_no_ready_while_a_failed_one_shot_blocks_its_dependents() {
    use std::os::unix::net::UnixDatagram;
    let b = Daemon::builder("sd-ready-fail");
    let dir = b.dir().path.clone();
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let cfg = json!({ "services": {
        "migrate": { "cmd": ["sh", "-c", "exit 2"], "type": "oneshot" },
        "web": { "cmd": start_logger(&dir, "web.log"), "after": ["migrate"] },
    }});
    let mut d = b.config(cfg).env("NOTIFY_SOCKET", &path).start();
    d.wait_state("migrate", "failed");
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..8 {
        if let Ok(n) = sock.recv(&mut buf) {
            said.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    }
    assert_eq!(reapd_ctl(&d, &["ready"], SOON).code, Some(1));
    assert!(
        !said.iter().any(|m| m.contains("READY=1")),
        "systemd was told READY=1 with migrate failed and web waiting: {said:?}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

// ---- config values a user gets wrong ------------------------------------------------------

#[test]
fn bad_run_side_values_are_refused_with_where_and_what_to_do() {
    let dir = TestDir::new("bad-run-values");
    let cases: &[(serde_json::Value, &str)] = &[
        (
            json!({ "ready": { "notify_fd": 1 } }),
            "services.a.ready.notify_fd: expected a descriptor number from 3 to 1023",
        ),
        (
            json!({ "ready": { "tcp": 80, "unix": "/x" } }),
            "services.a.ready: expected one check",
        ),
        (
            json!({ "ready": { "unix": "rel.sock" } }),
            "services.a.ready.unix: expected an absolute socket path",
        ),
        (
            json!({ "health": { "notify_fd": 3 } }),
            "services.a.health.notify_fd:",
        ),
        (
            json!({ "health": { "exec": ["true"], "retries": 0 } }),
            "services.a.health.retries: expected a count from 1 to 4294967295",
        ),
        (
            json!({ "type": "oneshot", "restart": "always" }),
            "services.a.restart: a one-shot is never run again",
        ),
        (
            json!({ "type": "oneshot", "health": { "exec": ["true"] } }),
            "services.a.",
        ),
        (
            json!({ "ready": { "exec": [] } }),
            "services.a.ready.exec: expected at least the program name",
        ),
        (json!({ "essential": "yes" }), "services.a.essential:"),
        (
            json!({ "after": ["a"] }),
            "services.a.after: dependency cycle",
        ),
    ];
    for (i, (extra, error)) in cases.iter().enumerate() {
        let mut svc = json!({ "cmd": ["sleep", "1"] });
        for (k, v) in extra.as_object().expect("object") {
            svc[k] = v.clone();
        }
        let path = dir.write(
            &format!("c{i}.json"),
            &json!({ "services": { "a": svc } }).to_string(),
        );
        assert_check_refuses(&path, error);
    }
}

#[test]
fn an_over_large_count_is_refused_with_its_upper_bound() {
    let dir = TestDir::new("big-count");
    let path = dir.write(
        "config.json",
        &json!({ "services": { "a": { "cmd": ["true"], "max_restarts": u64::MAX } } }).to_string(),
    );
    let run = check(&path);
    assert_eq!(run.code, Some(2), "{run:?}");
    let first = run.stderr.lines().next().unwrap_or_default().to_string();
    assert!(
        first.contains(" to ") || first.contains("at most"),
        "the message must name the largest count accepted: {first}"
    );
}

#[test]
fn huge_run_side_durations_neither_crash_nor_wedge_reapd() {
    let b = Daemon::builder("huge-ms");
    let big = u64::MAX;
    let cfg = json!({ "services": {
        "a": { "cmd": ["sleep", "1000"], "ready": { "tcp": 1, "interval_ms": big },
               "ready_timeout_ms": big,
               "health": { "exec": ["true"], "interval_ms": big, "timeout_ms": big,
                           "start_period_ms": big } },
        "b": { "cmd": ["sh", "-c", "exit 1"], "max_restarts": 2, "restart_window_ms": big },
    }});
    let mut d = b.config(cfg).start();
    d.wait_state("b", "failed");
    assert_eq!(d.service("a").expect("a")["state"], "starting");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

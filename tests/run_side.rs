//! Running services through the real binary: a dependent starts only once a real server it is
//! `after` accepts connections or writes its readiness newline, a failing one-shot holds back
//! its dependents, an essential service's end ends reapd with its status, health checks restart
//! a service that stops answering, restart limits give up, and `ctl ready`, `ctl wait --ready`
//! and `ctl shutdown --wait` answer scripts and probes with honest exit statuses.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::*;
use serde_json::json;

/// A free loopback port (bound, then released for the service to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A Python server that logs `listening` with a timestamp after `delay` seconds, then accepts
/// connections for ever (closing each).
fn server_cmd(dir: &TestDir, port: u16, delay: &str, log: &str) -> serde_json::Value {
    let script = dir.script(
        "server.py",
        r#"import socket, sys, time
port, delay, log = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
time.sleep(delay)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(16)
with open(log, "a") as f:
    f.write("listening %.6f\n" % time.time())
while True:
    c, _ = s.accept()
    c.close()
"#,
    );
    json!(["python3", script, port.to_string(), delay, dir.join(log)])
}

fn stamp(text: &str, word: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(word)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {word:?} line in {text:?}"))
}

#[test]
fn a_dependent_starts_only_once_its_dependency_accepts_connections() {
    if !require_tool("python3") {
        return;
    }
    let port = free_port();
    let b = Daemon::builder("ready-tcp");
    let cfg = json!({ "services": {
        "db": { "cmd": server_cmd(b.dir(), port, "0.8", "db.log"), "ready": { "tcp": port } },
        "web": { "cmd": timed_start_logger(&b.dir().path, "web.log"), "after": ["db"] },
    }});
    let mut d = b.config(cfg).start();
    let not_yet = reapd_ctl(&d, &["ready"], SOON);
    assert_eq!(
        not_yet.code,
        Some(1),
        "not ready while db starts: {not_yet:?}"
    );
    assert!(not_yet.stdout.contains("db"), "{not_yet:?}");
    let waited = reapd_ctl(
        &d,
        &["wait", "--ready", "--timeout", "20000"],
        Duration::from_secs(30),
    );
    assert_eq!(waited.code, Some(0), "{waited:?}");
    let web = d.wait_for("web.log", "started");
    let db = d.dir.read("db.log");
    assert!(
        stamp(&web, "started") >= stamp(&db, "listening"),
        "web started before db listened:\nweb: {web}\ndb: {db}"
    );
    assert_eq!(d.service("db").expect("db")["state"], "running");
    assert_eq!(reapd_ctl(&d, &["ready"], SOON).code, Some(0));
    let down = reapd_ctl(&d, &["shutdown", "--wait"], Duration::from_secs(40));
    assert_eq!(down.code, Some(0), "a clean shutdown: {down:?}");
    assert!(down.stdout.contains("clean"), "{down:?}");
    d.assert_clean_exit();
}

#[test]
fn a_notification_newline_makes_a_service_ready_and_its_absence_is_a_failed_start() {
    let b = Daemon::builder("ready-fd");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "db": { "cmd": ["sh", "-c", "sleep 0.3; echo >&3; exec sleep 1000"], "ready": { "notify_fd": 3 } },
        "web": { "cmd": timed_start_logger(&dir, "web.log"), "after": ["db"] },
        "mute": { "cmd": ["sleep", "1000"], "ready": { "notify_fd": 4 }, "ready_timeout_ms": 500,
                  "restart": "never" },
    }});
    let mut d = b.config(cfg).start();
    d.wait_for("web.log", "started");
    d.wait_state("mute", "failed");
    let mute = d.service("mute").expect("mute");
    assert!(
        mute["why"]
            .as_str()
            .is_some_and(|w| w.contains("not ready")),
        "{mute}"
    );
    let not_ready = reapd_ctl(&d, &["ready"], SOON);
    assert_eq!(not_ready.code, Some(1), "{not_ready:?}");
    assert!(not_ready.stdout.contains("mute"), "{not_ready:?}");
    let log = d.log();
    assert!(log.contains("db: ready after"), "{log}");
    assert!(log.contains("mute: not ready after"), "{log}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_failing_one_shot_holds_back_its_dependents_and_an_essential_one_ends_reapd_with_its_status() {
    let b = Daemon::builder("oneshot");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "setup": { "cmd": ["sh", "-c", "echo setup >> $TEST_DIR/setup.log"], "type": "oneshot" },
        "migrate": { "cmd": ["sh", "-c", "exit 3"], "type": "oneshot", "after": ["setup"] },
        "web": { "cmd": timed_start_logger(&dir, "web.log"), "after": ["migrate"] },
        "other": { "cmd": timed_start_logger(&dir, "other.log"), "after": ["setup"] },
    }});
    let mut d = b.config(cfg).start();
    d.wait_state("migrate", "failed");
    d.wait_for("other.log", "started");
    assert_eq!(d.service("setup").expect("setup")["state"], "done");
    assert_eq!(d.service("web").expect("web")["state"], "waiting");
    assert!(!d.dir.join("web.log").exists(), "web must not start");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();

    let b = Daemon::builder("essential");
    let cfg = json!({ "services": {
        "db": { "cmd": chain_cmd(b.dir(), "db.log", 2, "exit") },
        "job": { "cmd": ["sh", "-c", "sleep 0.5; exit 7"], "after": ["db"], "essential": true,
                 "restart": "never" },
    }});
    let mut d = b.config(cfg).spawn();
    let code = d.exit_code(Duration::from_secs(40));
    assert_eq!(code, 7, "the essential service's status; log:\n{}", d.log());
    d.assert_nothing_left();
    let db = d.dir.read("db.log");
    assert!(db.contains("TERM"), "db was stopped gracefully: {db}");
}

#[test]
fn a_service_whose_health_check_fails_is_restarted_then_given_up_on() {
    let b = Daemon::builder("health");
    let dir = b.dir().path.clone();
    let flag = dir.join("healthy");
    std::fs::write(&flag, "").expect("flag");
    let cfg = json!({ "services": {
        "web": {
            "cmd": timed_start_logger(&dir, "web.log"),
            "health": { "exec": ["test", "-e", flag], "interval_ms": 100, "timeout_ms": 2000, "retries": 2 },
            "max_restarts": 1, "restart_window_ms": 60000, "stop_timeout_ms": 1000,
        },
    }});
    let mut d = b.config(cfg).start();
    let ok = wait_until(SOON, || {
        d.service("web").is_some_and(|s| s["health"] == "healthy")
    });
    assert!(ok, "never healthy: {:?}\n{}", d.service("web"), d.log());
    let first = d.pid_of("web").expect("web runs");
    std::fs::remove_file(&flag).expect("make it unhealthy");
    d.wait_state("web", "failed");
    let starts = d.dir.read("web.log").lines().count();
    assert_eq!(starts, 2, "started, restarted once, then failed");
    assert!(!d.runs(first));
    let log = d.log();
    assert!(
        log.contains("web: unhealthy after 2 failed checks"),
        "{log}"
    );
    assert!(log.contains("max_restarts"), "{log}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn autostart_false_waits_for_ctl_start_and_ctl_wait_times_out_honestly() {
    let b = Daemon::builder("autostart");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "tool": { "cmd": timed_start_logger(&dir, "tool.log"), "autostart": false },
        "slow": { "cmd": ["sleep", "1000"], "ready": { "notify_fd": 3 } },
    }});
    let mut d = b.config(cfg).start();
    assert_eq!(d.service("tool").expect("tool")["state"], "stopped");
    let timed_out = reapd_ctl(
        &d,
        &["wait", "--ready", "--timeout", "300"],
        Duration::from_secs(10),
    );
    assert_eq!(timed_out.code, Some(1), "{timed_out:?}");
    assert!(timed_out.stderr.contains("within 300 ms"), "{timed_out:?}");
    let usage = reapd_ctl(&d, &["list", "--wait"], SOON);
    assert_eq!(usage.code, Some(2), "{usage:?}");
    d.request(r#"{"cmd":"start","name":"tool"}"#);
    d.wait_for("tool.log", "started");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_dependency_that_restarts_is_waited_for_again_without_duplicating_its_dependents() {
    let b = Daemon::builder("dep-restart");
    let dir = b.dir().path.clone();
    let cfg = json!({ "services": {
        "db": { "cmd": ["sh", "-c", format!("echo up >> {}; sleep 0.2; echo >&3; exec sleep 1000", dir.join("db.log").display())],
                "ready": { "notify_fd": 3 } },
        "web": { "cmd": timed_start_logger(&dir, "web.log"), "after": ["db"] },
    }});
    let mut d = b.config(cfg).start();
    d.wait_for("web.log", "started");
    let web = d.pid_of("web").expect("web runs");
    let db = d.pid_of("db").expect("db runs");
    assert!(d.runs(db));
    // SAFETY: kill(2) on a pid this test's reapd started and `runs` just confirmed.
    unsafe { libc::kill(db, libc::SIGKILL) };
    let again = wait_until(SOON, || {
        d.dir.read("db.log").lines().count() == 2
            && d.service("db").is_some_and(|s| s["ready"] == true)
    });
    assert!(
        again,
        "db never came back ready: {:?}\n{}",
        d.service("db"),
        d.log()
    );
    assert_eq!(d.pid_of("web"), Some(web), "web kept running");
    assert_eq!(d.dir.read("web.log").lines().count(), 1, "web started once");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn an_exec_check_that_hangs_is_killed_at_its_timeout_and_never_left_behind() {
    let b = Daemon::builder("check-hangs");
    let dir = b.dir().path.clone();
    let check = format!(
        "echo $$ >> {}; exec sleep 1000",
        dir.join("checks.log").display()
    );
    let cfg = json!({ "services": {
        "web": { "cmd": ["sleep", "1000"],
                 "health": { "exec": ["sh", "-c", check], "interval_ms": 100, "timeout_ms": 300, "retries": 100 } },
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
    assert!(!d.runs(first), "the first check outlived its timeout");
    let web = d.service("web").expect("web");
    assert_eq!(web["health"], "failing", "{web}");
    assert!(
        web["last_check"]
            .as_str()
            .is_some_and(|c| c.contains("no answer within")),
        "{web}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

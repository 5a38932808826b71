//! One instance per socket: the lock, a second instance refused with status 3, a stale socket
//! from a crashed instance replaced, and the restart back-off of a crashing service.

mod common;

use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::*;
use serde_json::json;

fn sleeper() -> String {
    json!({ "services": { "a": { "cmd": ["sleep", "1000"] } } }).to_string()
}

#[test]
fn a_second_instance_on_the_same_socket_exits_3_naming_the_holder() {
    let mut first = Daemon::start("lock1", &sleeper());
    let lock = std::fs::read_to_string(first.dir.join("s.sock.lock")).expect("lock file");
    assert_eq!(
        lock.trim(),
        first.pid().to_string(),
        "lock file names its holder"
    );
    let cfg = first.dir.write("second.json", &sleeper());
    let out = std::process::Command::new(BIN)
        .args([
            "--config",
            &cfg.display().to_string(),
            "--socket",
            &first.socket.display().to_string(),
        ])
        .env("REAPD_TEST_MARKER", &first.marker)
        .output()
        .expect("second instance");
    assert_eq!(code_of(out.status), 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("another reapd (pid {}) holds", first.pid())),
        "{err}"
    );
    // The refused instance started nothing and took nothing away.
    assert!(first.socket.exists());
    assert_eq!(first.request(r#"{"cmd":"ping"}"#)["ok"], true);
    first.signal(libc::SIGTERM);
    first.assert_clean_exit();
}

#[test]
fn a_stale_socket_left_by_a_dead_instance_is_replaced() {
    let dir = TestDir::new("stale");
    let sock = dir.join("s.sock");
    // A bound-then-abandoned socket: the path exists, nobody listens.
    drop(UnixListener::bind(&sock).expect("bind"));
    assert!(sock.exists());
    let cfg = dir.write("config.json", &sleeper());
    let mut d = Daemon::spawn_in(
        dir,
        Start {
            args: vec!["--config".into(), cfg.display().to_string()],
            env: Vec::new(),
            with_socket: true,
        },
    );
    d.wait_ready();
    assert!(d.log().contains("replaced stale socket"), "{}", d.log());
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn something_else_at_the_socket_path_is_never_deleted() {
    let dir = TestDir::new("notsock");
    let path = dir.write("s.sock", "precious data");
    let cfg = dir.write("config.json", &sleeper());
    let mut d = Daemon::spawn_in(
        dir,
        Start {
            args: vec!["--config".into(), cfg.display().to_string()],
            env: Vec::new(),
            with_socket: true,
        },
    );
    assert_eq!(d.exit_code(SOON), 3);
    assert!(
        d.log().contains("exists and is not a socket"),
        "{}",
        d.log()
    );
    assert_eq!(
        std::fs::read_to_string(&path).ok().as_deref(),
        Some("precious data")
    );
    assert!(
        live_with_marker(&d.marker).is_empty(),
        "nothing may be started"
    );
}

#[test]
fn a_crashing_service_restarts_with_exponential_backoff() {
    let cfg = json!({ "services": { "crash": { "cmd": ["sh", "-c", "exit 3"] } } });
    let mut d = Daemon::start("backoff", &cfg.to_string());
    let mut w = d.watch();
    let mut seen = Vec::new();
    // Restarts announced from now on carry growing delays.
    let got = w.until(Duration::from_secs(20), &mut seen, |e| {
        e["event"] == "restarting" && e["delay_ms"].as_u64() >= Some(1600)
    });
    assert!(got.is_some(), "no back-off up to 1.6 s: {seen:?}");
    let delays: Vec<u64> = events_of(&seen, "restarting")
        .iter()
        .filter_map(|e| e["delay_ms"].as_u64())
        .collect();
    assert!(
        delays.windows(2).all(|w| w[1] == w[0] * 2),
        "delays double: {delays:?}"
    );
    let exits = events_of(&seen, "exited");
    assert!(exits.iter().all(|e| e["status"] == json!({"code": 3})));
    let v = d.request(r#"{"cmd":"list"}"#);
    assert!(v["services"][0]["restarts"].as_u64() >= Some(5), "{v}");
    assert!(v["services"][0]["last_exit"] == json!({"code": 3}));
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_service_that_cannot_be_executed_is_reported_and_retried() {
    let cfg = json!({ "services": {
        "ghost": { "cmd": ["/nonexistent/program"] },
        "a": { "cmd": ["sleep", "1000"] },
        "nowhere": { "cmd": ["sleep", "1000"], "cwd": "/nonexistent/dir", "restart": "never" },
    } });
    let mut d = Daemon::start("ghost", &cfg.to_string());
    assert!(
        wait_until(SOON, || d.log().contains(
            "ghost: cannot start: cannot execute \"/nonexistent/program\""
        )),
        "{}",
        d.log()
    );
    assert!(
        wait_until(SOON, || lines_with(&d.log(), "ghost: cannot start").len()
            >= 2),
        "retried with back-off"
    );
    assert!(d.pid_of("a").is_some(), "other services unaffected");
    let v = d.request(r#"{"cmd":"start","name":"nowhere"}"#);
    assert_eq!(v["code"], "failed", "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("working directory /nonexistent/dir does not exist"),
        "{v}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

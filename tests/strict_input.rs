//! Strict, lossless and bounded input through the real binary: repeated keys refused in the
//! config and in requests, ids echoed byte for byte, a config path that is a FIFO, a device or
//! an oversized file refused without blocking (on start-up, `check` and reload alike), a
//! 10 000-service chain checked, and requests naming huge services answered cheaply.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Largest config file reapd reads (`MAX_CONFIG_BYTES`).
const LIMIT: u64 = 4 * 1024 * 1024;

/// Sends one line and returns the reply line exactly as the daemon wrote it.
fn raw_request(d: &Daemon, line: &str) -> String {
    let mut s = UnixStream::connect(&d.socket).expect("connect");
    s.set_read_timeout(Some(SOON)).expect("timeout");
    s.write_all(format!("{line}\n").as_bytes()).expect("send");
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).expect("reply");
    reply
}

/// `reapd check` on `path`, killed if it takes longer than a generous bound.
fn check_bounded(path: &std::path::Path) -> ToolRun {
    run_bounded(
        Command::new(BIN).arg("check").arg("--config").arg(path),
        Duration::from_secs(30),
    )
}

fn mkfifo(path: &std::path::Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// Services that need no process: their working directory is missing, so each spawn fails in
/// reapd itself, and `never` keeps them down.
fn idle_services(n: usize, chain: bool) -> Value {
    let services: serde_json::Map<String, Value> = (0..n)
        .map(|i| {
            let mut s =
                json!({ "cmd": ["true"], "cwd": "/nonexistent/reapd-test", "restart": "never" });
            if chain && i > 0 {
                s["after"] = json!([format!("s{:05}", i - 1)]);
            }
            (format!("s{i:05}"), s)
        })
        .collect();
    json!({ "services": services })
}

#[test]
fn a_repeated_key_in_the_config_stops_start_up() {
    let text = r#"{"services": {"a": {"cmd": ["sh", "-c", "touch \"$TEST_DIR/started\"; exec sleep 1000"]},
                                "a": {"cmd": ["sleep", "1000"]}}}"#;
    let mut d = Daemon::start_config("dupstart", text, &[]);
    assert_eq!(d.exit_code(SOON), 2, "log:\n{}", d.log());
    let path = d.dir.join("config.json").display().to_string();
    let log = d.log();
    assert_eq!(
        lines_with(&log, &format!("error: {path}: services.a: defined twice")).len(),
        1,
        "log:\n{log}"
    );
    assert!(!d.dir.join("started").exists(), "a service was started");
    assert!(!d.socket.exists(), "socket left behind");
}

#[test]
fn a_repeated_key_in_a_request_is_refused_and_names_it() {
    let mut d = Daemon::start(
        "dupreq",
        &json!({ "services": { "a": { "cmd": ["sleep", "1000"] } } }).to_string(),
    );
    let pid = d.pid_of("a").expect("a runs");
    let v = d.request(r#"{"cmd":"stop","name":"a","id":5,"name":"zzz"}"#);
    assert_eq!(
        v,
        json!({"ok": false, "id": 5, "code": "bad_request",
               "error": "name: defined twice; a request may give each key only once"})
    );
    let v = d.request(r#"{"cmd":"ping","id":{"k":1,"k":2}}"#);
    assert_eq!(v["code"], "bad_request", "{v}");
    assert_eq!(
        v["error"],
        "id.k: defined twice; a request may give each key only once"
    );
    assert_eq!(d.pid_of("a"), Some(pid), "the service was not touched");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn ids_are_echoed_exactly_as_sent() {
    let mut d = Daemon::start("ids", &json!({ "services": {} }).to_string());
    let big = "123456789012345678901234567890";
    assert_eq!(
        raw_request(&d, &format!(r#"{{"cmd":"ping","id":{big}}}"#)),
        format!("{{\"ok\":true,\"id\":{big},\"pong\":true}}\n")
    );
    let nested = r#"{"b" : [1, 2.50, -0.0e1], "a":"\u00e9", "z":{}}"#;
    assert_eq!(
        raw_request(&d, &format!(r#"{{"id": {nested}, "cmd":"ping"}}"#)),
        format!("{{\"ok\":true,\"id\":{nested},\"pong\":true}}\n")
    );
    // Error replies echo it too, also when the line breaks off after the id.
    let reply = raw_request(&d, &format!(r#"{{"id":{big},"cmd":"lst"}}"#));
    assert!(
        reply.starts_with(&format!(
            "{{\"ok\":false,\"id\":{big},\"code\":\"unknown_command\""
        )),
        "{reply}"
    );
    let reply = raw_request(&d, &format!(r#"{{"id":{big},"cmd":"pi"#));
    assert!(
        reply.starts_with(&format!(
            "{{\"ok\":false,\"id\":{big},\"code\":\"bad_request\""
        )),
        "{reply}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_fifo_device_or_huge_file_at_the_config_path_is_refused_on_reload() {
    let dir = TestDir::new("fiforeload");
    let cfg = json!({ "services": { "a": { "cmd": ["sleep", "1000"] } } });
    let mut d = Daemon::start_in(dir, &cfg, &[]);
    let pid = d.pid_of("a").expect("a runs");
    let path = d.dir.join("config.json");
    std::fs::remove_file(&path).expect("remove config");
    mkfifo(&path);
    let v = d.request(r#"{"cmd":"reload","id":"r"}"#);
    assert_eq!(
        (v["ok"].as_bool(), v["code"].as_str(), v["id"].as_str()),
        (Some(false), Some("config_error"), Some("r")),
        "{v}"
    );
    let err = v["errors"][0].as_str().unwrap_or_default();
    assert!(
        err.contains("it is a FIFO (named pipe), not a regular file"),
        "{v}"
    );
    // SIGHUP reads the same FIFO; the loop must still answer afterwards.
    d.signal(libc::SIGHUP);
    assert_eq!(d.request(r#"{"cmd":"ping"}"#)["pong"], true);

    std::fs::remove_file(&path).expect("remove fifo");
    std::os::unix::fs::symlink("/dev/zero", &path).expect("symlink");
    let v = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(v["code"], "config_error", "{v}");
    assert!(
        v["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("it is a character device")),
        "{v}"
    );

    std::fs::remove_file(&path).expect("remove link");
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(LIMIT + 1))
        .expect("sparse file");
    let v = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(v["code"], "config_error", "{v}");
    assert!(
        v["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains(&format!("may have at most {LIMIT} bytes"))),
        "{v}"
    );

    assert_eq!(d.pid_of("a"), Some(pid), "the running set is unchanged");
    assert_eq!(d.request(r#"{"cmd":"ping"}"#)["pong"], true);
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn check_refuses_a_fifo_a_device_and_a_huge_file_without_hanging() {
    let dir = TestDir::new("fifocheck");
    let fifo = dir.join("fifo.json");
    mkfifo(&fifo);
    let big = dir.join("big.json");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(LIMIT + 1))
        .expect("sparse file");
    for (path, what) in [
        (
            fifo.as_path(),
            "it is a FIFO (named pipe), not a regular file",
        ),
        (
            std::path::Path::new("/dev/zero"),
            "it is a character device",
        ),
        (dir.path.as_path(), "it is a directory"),
        (big.as_path(), &format!("it is {} bytes", LIMIT + 1)),
    ] {
        let run = check_bounded(path);
        assert_eq!(run.code, Some(2), "{}: {run:?}", path.display());
        assert_eq!(run.stdout, "");
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{run:?}");
        assert!(
            lines[0].starts_with(&format!("cannot read {}: {what}", path.display())),
            "{run:?}"
        );
    }
    // Start-up refuses a FIFO the same way, and does not wait for a writer.
    let mut d = Daemon::spawn_in(
        TestDir::new("fifostart"),
        Start {
            args: vec!["--config".into(), fifo.display().to_string()],
            env: Vec::new(),
            with_socket: true,
        },
    );
    assert_eq!(d.exit_code(SOON), 2, "log:\n{}", d.log());
    assert!(d.log().contains("not a regular file"), "{}", d.log());
}

#[test]
fn check_orders_a_chain_of_ten_thousand_services() {
    let dir = TestDir::new("chain10k");
    let path = dir.write("config.json", &idle_services(10_000, true).to_string());
    let run = check_bounded(&path);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("ok: 10000 services (start order: s00000, s00001, s00002,"),
        "{}",
        &run.stdout[..200.min(run.stdout.len())]
    );
    assert!(run.stdout.contains("s09998, s09999), shutdown bound"));
}

#[test]
fn requests_naming_a_huge_service_are_answered_briefly() {
    let mut d = Daemon::start("hugename", &idle_services(300, false).to_string());
    let name = "s".repeat(60_000);
    for cmd in ["stop", "start", "restart", "signal"] {
        for _ in 0..3 {
            let extra = if cmd == "signal" {
                r#","signal":"HUP""#
            } else {
                ""
            };
            let line = format!(r#"{{"cmd":"{cmd}","name":"{name}"{extra}}}"#);
            let reply = raw_request(&d, &line);
            assert!(reply.len() < 300, "{cmd}: {} bytes", reply.len());
            let v: Value = serde_json::from_str(&reply).expect("reply is JSON");
            assert_eq!(v["code"], "no_such_service", "{v}");
            assert!(
                v["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("no service named \"sss") && e.contains("…")),
                "{v}"
            );
        }
    }
    let v = d.request(&format!(r#"{{"cmd":"{name}"}}"#));
    assert_eq!(v["code"], "unknown_command", "{v}");
    assert!(v.to_string().len() < 400, "{v}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

//! Strict, lossless and bounded input through the real binary: repeated keys refused in the
//! config and in requests, ids echoed byte for byte, a config path that is a FIFO, a device or
//! an oversized file refused without blocking (on start-up, `check` and reload alike), a
//! 10 000-service chain checked, and requests naming huge services answered cheaply.

mod common;

use std::ffi::OsStr;
use std::path::Path;

use common::*;
use serde_json::{Value, json};

/// Largest config file reapd reads (`MAX_CONFIG_BYTES`).
const LIMIT: u64 = 4 * 1024 * 1024;

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

#[test]
fn a_repeated_key_in_the_config_stops_start_up() {
    let text = r#"{"services": {"a": {"cmd": ["sh", "-c", "touch \"$TEST_DIR/started\"; exec sleep 1000"]},
                                "a": {"cmd": ["sleep", "1000"]}}}"#;
    let mut d = Daemon::builder("dupstart").config(text).spawn();
    assert_eq!(d.exit_code(SOON), 2, "log:\n{}", d.log());
    // The config errors a refused start-up prints are what is tested here.
    let path = d.config_path().display().to_string();
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
    let mut d = Daemon::builder("dupreq")
        .config(json!({ "services": { "a": { "cmd": ["sleep", "1000"] } } }))
        .start();
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
    let mut d = Daemon::builder("ids")
        .config(json!({ "services": {} }))
        .start();
    let big = "123456789012345678901234567890";
    assert_eq!(
        d.request_raw(&format!(r#"{{"cmd":"ping","id":{big}}}"#)),
        format!("{{\"ok\":true,\"id\":{big},\"pong\":true}}\n")
    );
    let nested = r#"{"b" : [1, 2.50, -0.0e1], "a":"\u00e9", "z":{}}"#;
    assert_eq!(
        d.request_raw(&format!(r#"{{"id": {nested}, "cmd":"ping"}}"#)),
        format!("{{\"ok\":true,\"id\":{nested},\"pong\":true}}\n")
    );
    // Error replies echo it too, also when the line breaks off after the id.
    let reply = d.request_raw(&format!(r#"{{"id":{big},"cmd":"lst"}}"#));
    assert!(
        reply.starts_with(&format!(
            "{{\"ok\":false,\"id\":{big},\"code\":\"unknown_command\""
        )),
        "{reply}"
    );
    let reply = d.request_raw(&format!(r#"{{"id":{big},"cmd":"pi"#));
    assert!(
        reply.starts_with(&format!(
            "{{\"ok\":false,\"id\":{big},\"code\":\"bad_request\""
        )),
        "{reply}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

/// Starts reapd on one service, replaces its config file with what `replace` makes at its path,
/// and asserts a `reload` is refused with an error containing `what`, without blocking. Returns
/// the daemon and its service's pid, to check it is untouched.
fn refused_on_reload(tag: &str, replace: impl FnOnce(&Path), what: &str) -> (Daemon, i32) {
    let cfg = json!({ "services": { "a": { "cmd": ["sleep", "1000"] } } });
    let d = Daemon::builder(tag).config(cfg).start();
    let pid = d.pid_of("a").expect("a runs");
    let path = d.config_path();
    std::fs::remove_file(&path).expect("remove config");
    replace(&path);
    let v = d.request(r#"{"cmd":"reload","id":"r"}"#);
    assert_eq!(
        (v["ok"].as_bool(), v["code"].as_str(), v["id"].as_str()),
        (Some(false), Some("config_error"), Some("r")),
        "{v}"
    );
    assert!(
        v["errors"][0].as_str().is_some_and(|e| e.contains(what)),
        "{v}"
    );
    (d, pid)
}

/// Asserts the running set is unchanged and the loop still answers, then shuts down.
fn assert_still_serving(mut d: Daemon, pid: i32) {
    assert_eq!(d.pid_of("a"), Some(pid), "the running set is unchanged");
    assert_eq!(d.request(r#"{"cmd":"ping"}"#)["pong"], true);
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_fifo_at_the_config_path_is_refused_on_reload_and_by_sighup() {
    let (d, pid) = refused_on_reload(
        "fiforeload",
        mkfifo,
        "it is a FIFO (named pipe), not a regular file",
    );
    // SIGHUP reads the same FIFO; the loop must still answer afterwards.
    d.signal(libc::SIGHUP);
    assert_eq!(d.request(r#"{"cmd":"ping"}"#)["pong"], true);
    assert_still_serving(d, pid);
}

#[test]
fn a_device_at_the_config_path_is_refused_on_reload() {
    let (d, pid) = refused_on_reload(
        "devreload",
        |path| std::os::unix::fs::symlink("/dev/zero", path).expect("symlink"),
        "it is a character device",
    );
    assert_still_serving(d, pid);
}

#[test]
fn a_huge_file_at_the_config_path_is_refused_on_reload() {
    let (d, pid) = refused_on_reload(
        "hugereload",
        |path| {
            std::fs::File::create(path)
                .and_then(|f| f.set_len(LIMIT + 1))
                .expect("sparse file");
        },
        &format!("may have at most {LIMIT} bytes"),
    );
    assert_still_serving(d, pid);
}

/// Asserts `reapd check` on `path` fails at once (a bounded run), saying `what` about it.
fn assert_check_refuses_file(path: &Path, what: &str) {
    assert_check_refuses(path, &format!("cannot read {}: {what}", path.display()));
}

#[test]
fn check_refuses_a_fifo_without_waiting_for_a_writer() {
    let dir = TestDir::new("fifocheck");
    let fifo = dir.join("fifo.json");
    mkfifo(&fifo);
    assert_check_refuses_file(&fifo, "it is a FIFO (named pipe), not a regular file");
}

#[test]
fn check_refuses_a_device() {
    assert_check_refuses_file(Path::new("/dev/zero"), "it is a character device");
}

#[test]
fn check_refuses_a_directory() {
    let dir = TestDir::new("dircheck");
    assert_check_refuses_file(&dir.path, "it is a directory");
}

#[test]
fn check_refuses_a_huge_file() {
    let dir = TestDir::new("bigcheck");
    let big = dir.join("big.json");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(LIMIT + 1))
        .expect("sparse file");
    assert_check_refuses_file(&big, &format!("it is {} bytes", LIMIT + 1));
}

#[test]
fn start_up_refuses_a_fifo_without_waiting_for_a_writer() {
    let b = Daemon::builder("fifostart");
    let fifo = b.dir().join("fifo.json");
    mkfifo(&fifo);
    let mut d = b.args([OsStr::new("--config"), fifo.as_os_str()]).spawn();
    assert_eq!(d.exit_code(SOON), 2, "log:\n{}", d.log());
    // Refused at start-up: the log says why.
    assert!(d.log().contains("not a regular file"), "{}", d.log());
}

#[test]
fn check_orders_a_chain_of_ten_thousand_services() {
    let dir = TestDir::new("chain10k");
    let path = dir.write("config.json", &idle_services(10_000, true, "a").to_string());
    let run = check(&path);
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
    let mut d = Daemon::builder("hugename")
        .config(idle_services(300, false, "a"))
        .start();
    let name = "s".repeat(60_000);
    for cmd in ["stop", "start", "restart", "signal"] {
        for _ in 0..3 {
            let extra = if cmd == "signal" {
                r#","signal":"HUP""#
            } else {
                ""
            };
            let line = format!(r#"{{"cmd":"{cmd}","name":"{name}"{extra}}}"#);
            let reply = d.request_raw(&line);
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

//! One instance per socket: the lock, a second instance refused with status 3, a stale socket
//! from a crashed instance replaced, and the restart back-off of a crashing service.

mod common;

use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn sleeper() -> Value {
    json!({ "services": { "a": { "cmd": ["sleep", "1000"] } } })
}

#[test]
fn a_second_instance_on_the_same_socket_exits_3_naming_the_holder() {
    let mut first = Daemon::builder("lock1").config(sleeper()).start();
    let lock = std::fs::read_to_string(lock_of(&first.socket)).expect("lock file");
    assert_eq!(
        lock.trim(),
        first.pid().to_string(),
        "lock file names its holder"
    );
    // Started and awaited like a tool: it must refuse at once.
    let cfg = first.dir.write("second.json", &sleeper().to_string());
    let second = run_bounded(
        std::process::Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .arg("--socket")
            .arg(&first.socket)
            .env("REAPD_TEST_MARKER", &first.marker),
        SOON,
    );
    assert_eq!(second.code, Some(3), "{second:?}");
    let err = &second.stderr;
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
    let b = Daemon::builder("stale");
    let sock = b.dir().join("s.sock");
    // A bound-then-abandoned socket: the path exists, nobody listens.
    drop(UnixListener::bind(&sock).expect("bind"));
    assert!(sock.exists());
    let mut d = b.config(sleeper()).start();
    // Start-up, before any client: the log is what tells.
    assert!(d.log().contains("replaced stale socket"), "{}", d.log());
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn something_else_at_the_socket_path_is_never_deleted() {
    let b = Daemon::builder("notsock");
    let path = b.dir().write("s.sock", "precious data");
    let d = refused_start(b);
    assert!(
        d.log().contains("exists and is not a socket"),
        "{}",
        d.log()
    );
    assert_eq!(
        std::fs::read_to_string(&path).ok().as_deref(),
        Some("precious data")
    );
}

#[test]
fn a_crashing_service_restarts_with_exponential_backoff() {
    let cfg = json!({ "services": { "crash": { "cmd": ["sh", "-c", "exit 3"] } } });
    let mut d = Daemon::builder("backoff").config(cfg).start();
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
    assert_eq!(v["services"][0]["last_exit"], json!({"code": 3}), "{v}");
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
    let mut d = Daemon::builder("ghost").config(cfg).start();
    let mut w = d.watch();
    // Retried with back-off: failures keep coming after the first (at start-up, unwatched).
    let mut seen = Vec::new();
    let failed = w
        .until(SOON, &mut seen, |e| {
            e["event"] == "spawn_failed" && e["service"] == "ghost"
        })
        .unwrap_or_else(|| panic!("ghost was not retried: {seen:#?}\nlog:\n{}", d.log()));
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot execute \"/nonexistent/program\"")),
        "{failed}"
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

/// Starts reapd with `sleeper()` and expects it to refuse to start with status 3, starting
/// nothing. Returns the exited daemon (its directory lives as long as it).
fn refused_start(b: DaemonBuilder) -> Daemon {
    let mut d = b.config(sleeper()).spawn();
    assert_eq!(d.exit_code(SOON), 3, "{}", d.log());
    assert!(
        live_with_marker(&d.marker).is_empty(),
        "nothing may be started"
    );
    d
}

#[test]
fn a_socket_another_process_listens_on_is_left_alone() {
    use std::io::{Read, Write};
    use std::os::unix::fs::MetadataExt;
    let b = Daemon::builder("foreign");
    let sock = b.dir().join("s.sock");
    let foreign = UnixListener::bind(&sock).expect("bind");
    let inode = std::fs::metadata(&sock).expect("socket").ino();
    let d = refused_start(b);
    assert!(
        d.log().contains(&format!(
            "another process is listening on {}",
            sock.display()
        )),
        "{}",
        d.log()
    );
    assert_eq!(
        std::fs::metadata(&sock).map(|m| m.ino()).ok(),
        Some(inode),
        "the socket file was replaced"
    );
    // The other program still gets its connections (reapd's probe is among them).
    let mut client = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
    foreign.set_nonblocking(true).expect("nonblocking");
    while let Ok((mut s, _)) = foreign.accept() {
        let _ = s.write_all(b"hello\n");
    }
    client.set_read_timeout(Some(SOON)).expect("timeout");
    let mut got = [0u8; 6];
    client
        .read_exact(&mut got)
        .expect("reply from the other listener");
    assert_eq!(&got, b"hello\n");
}

#[test]
fn a_symlink_at_the_lock_path_is_refused_and_its_target_left_unchanged() {
    let b = Daemon::builder("locklink");
    let victim = b.dir().write("victim", "precious data\n");
    std::os::unix::fs::symlink(&victim, b.dir().join("s.sock.lock")).expect("symlink");
    let d = refused_start(b);
    assert!(d.log().contains("is a symbolic link"), "{}", d.log());
    assert_eq!(
        std::fs::read_to_string(&victim).ok().as_deref(),
        Some("precious data\n")
    );
    assert!(
        d.dir.join("s.sock.lock").is_symlink(),
        "the link is left alone"
    );
}

#[test]
fn a_dangling_symlink_at_the_lock_path_is_refused_and_nothing_is_created() {
    let b = Daemon::builder("locklink2");
    let dangling = b.dir().join("nowhere");
    std::os::unix::fs::symlink(&dangling, b.dir().join("s.sock.lock")).expect("symlink");
    let d = refused_start(b);
    assert!(d.log().contains("is a symbolic link"), "{}", d.log());
    assert!(!dangling.exists(), "the link target was created");
}

#[test]
fn a_fifo_at_the_lock_path_is_refused() {
    let b = Daemon::builder("lockfifo");
    let fifo =
        std::ffi::CString::new(b.dir().join("s.sock.lock").display().to_string()).expect("path");
    // SAFETY: mkfifo reads the NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
    let d = refused_start(b);
    assert!(
        d.log().contains("is a FIFO, not a regular file"),
        "{}",
        d.log()
    );
}

#[test]
fn a_directory_at_the_lock_path_is_refused() {
    let b = Daemon::builder("lockdir");
    std::fs::create_dir(b.dir().join("s.sock.lock")).expect("mkdir");
    let d = refused_start(b);
    assert!(d.log().contains("is a directory"), "{}", d.log());
    assert!(d.dir.join("s.sock.lock").is_dir());
}

//! Telling a service manager about readiness: systemd's `NOTIFY_SOCKET` datagrams (a path and
//! the abstract namespace) and s6's `--notify-fd` (one newline, then the descriptor is closed).

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn config() -> Value {
    json!({ "services": {
        "db": { "cmd": ["sleep", "1000"] },
        // Records whether the service saw NOTIFY_SOCKET: readiness belongs to reapd.
        "web": { "after": ["db"], "cmd": ["sh", "-c",
            "echo \"NOTIFY_SOCKET=${NOTIFY_SOCKET-unset}\" > \"$TEST_DIR/web.env\"; exec sleep 1000"] },
    }})
}

/// Receives datagrams until one equals `want` or `limit` passes; returns all received.
fn recv_until(sock: &UnixDatagram, want: &str, limit: Duration) -> (Vec<String>, bool) {
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        let left = end
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        sock.set_read_timeout(Some(left)).expect("timeout");
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                let hit = msg == want;
                got.push(msg);
                if hit {
                    return (got, true);
                }
            }
            Err(_) => break,
        }
    }
    (got, false)
}

/// Every datagram still queued (after reapd has exited, nothing more can come).
fn recv_rest(sock: &UnixDatagram) -> Vec<String> {
    sock.set_nonblocking(true).expect("nonblocking");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    got
}

/// Runs reapd with `NOTIFY_SOCKET=notify_socket` and checks the whole conversation on `sock`.
fn notify_socket_conversation(dir: TestDir, sock: &UnixDatagram, notify_socket: String) {
    let mut d = Daemon::builder_in(dir)
        .config(config())
        .env("NOTIFY_SOCKET", notify_socket)
        .spawn();
    let (before, ready) = recv_until(sock, "READY=1", Duration::from_secs(20));
    assert!(ready, "no READY=1, got {before:?}; log:\n{}", d.log());
    // Ready means the control socket already answers: no retries.
    let pong = request_at(&d.socket, r#"{"cmd":"ping"}"#).expect("ping right after READY=1");
    assert_eq!(pong["pong"], true);
    d.wait_state("web", "running");
    assert_eq!(
        d.wait_for("web.env", "\n"),
        "NOTIFY_SOCKET=unset\n",
        "services must not inherit NOTIFY_SOCKET"
    );
    let (running, _) = recv_until(
        sock,
        "STATUS=running: 2/2 services up",
        Duration::from_secs(20),
    );
    assert!(
        running
            .iter()
            .any(|m| m == "STATUS=running: 2/2 services up"),
        "no status for both services up: {before:?} {running:?}; log:\n{}",
        d.log()
    );
    d.signal(libc::SIGTERM);
    let (stopping, ok) = recv_until(sock, "STOPPING=1", Duration::from_secs(20));
    assert!(ok, "no STOPPING=1 after SIGTERM: {stopping:?}");
    d.assert_clean_exit();
    let rest = recv_rest(sock);
    let all: Vec<&String> = before
        .iter()
        .chain(&running)
        .chain(&stopping)
        .chain(&rest)
        .collect();
    assert!(
        all.iter().all(|m| m.as_str() == "READY=1"
            || m.as_str() == "STOPPING=1"
            || m.starts_with("STATUS=")),
        "{all:?}"
    );
    assert_eq!(
        all.iter().filter(|m| m.as_str() == "READY=1").count(),
        1,
        "{all:?}"
    );
    assert_eq!(
        all.iter().filter(|m| m.as_str() == "STOPPING=1").count(),
        1,
        "{all:?}"
    );
    assert!(
        all.iter().any(|m| m.starts_with("STATUS=draining")),
        "a status for the shutdown: {all:?}"
    );
    let ready_at = all.iter().position(|m| m.as_str() == "READY=1");
    let stopping_at = all.iter().position(|m| m.as_str() == "STOPPING=1");
    assert!(ready_at < stopping_at, "{all:?}");
}

#[test]
fn notify_socket_path_gets_ready_status_and_stopping() {
    let dir = TestDir::new("notify-path");
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    notify_socket_conversation(dir, &sock, path.display().to_string());
}

#[test]
fn notify_socket_in_the_abstract_namespace_gets_ready_status_and_stopping() {
    let dir = TestDir::new("notify-abstract");
    let name = format!("{}-notify", dir.marker());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
    let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract notify socket");
    notify_socket_conversation(dir, &sock, format!("@{name}"));
}

#[test]
fn notify_fd_gets_one_newline_then_eof_once_the_socket_answers() {
    let mut d = Daemon::builder("notify-fd")
        .config(config())
        .args(["--notify-fd", "3"])
        .notify_pipe(3)
        .spawn();
    let mut pipe = d.notify.take().expect("notify pipe");
    let (got, eof) = read_until_eof(&mut pipe, Duration::from_secs(20));
    assert!(
        eof,
        "fd 3 still open after {got:?}: reapd must close it (and leak it to no service); log:\n{}",
        d.log()
    );
    assert_eq!(got, b"\n", "exactly one newline; log:\n{}", d.log());
    let pong = request_at(&d.socket, r#"{"cmd":"ping"}"#).expect("ping right after readiness");
    assert_eq!(pong["pong"], true);
    d.wait_state("db", "running");
    d.wait_state("web", "running");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn notify_fd_that_is_not_open_is_a_usage_error() {
    let mut d = Daemon::builder("notify-fd-closed")
        .config(config())
        .args(["--notify-fd", "9"])
        .spawn();
    assert_eq!(d.exit_code(SOON), 2, "log:\n{}", d.log());
    // A usage error, before anything runs: the log is all there is.
    assert!(d.log().contains("--notify-fd 9"), "{}", d.log());
    assert!(
        !d.socket.exists(),
        "no socket for a daemon that never started"
    );
}

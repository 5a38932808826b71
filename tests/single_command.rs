//! Single-command mode (`reapd [--socket P] -- CMD ARGS`) through the real binary: the exit
//! status is the command's own, leftovers are stopped, signals are forwarded to the command's
//! process group, SIGTERM stops it with its stop signal, and no socket is opened unless asked.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Starts reapd on `sh -c SCRIPT` (after `opts`), where the script begins only once the test
/// has a watcher (it waits for `$TEST_DIR/go`); returns reapd's exit code once it ends by itself,
/// and every event of its life from then on.
fn run_watched(tag: &str, opts: &[&str], script: &str) -> (Daemon, i32, Vec<Value>) {
    let gated = format!("while [ ! -e \"$TEST_DIR/go\" ]; do sleep 0.02; done; {script}");
    let mut d = Daemon::builder(tag)
        .args(opts)
        .command(["sh", "-c", &gated])
        .start();
    let mut w = d.watch();
    d.dir.write("go", "");
    let events = w.drain(Duration::from_secs(40));
    let code = d.exit_code(SOON);
    (d, code, events)
}

/// Asserts reapd exits with `want` for `sh -c SCRIPT`, reports it, and leaves nothing behind.
fn assert_exits_with(tag: &str, script: &str, want: i32) {
    let (d, code, events) = run_watched(tag, &[], script);
    assert_eq!(code, want, "sh -c {script:?}; log:\n{}", d.log());
    d.assert_nothing_left();
    assert_eq!(done_event(&events)["exit_code"], want, "{events:#?}");
}

#[test]
fn reapd_exits_0_when_the_command_does() {
    assert_exits_with("status0", "exit 0", 0);
}

#[test]
fn reapd_exits_with_the_commands_own_exit_code() {
    assert_exits_with("status7", "exit 7", 7);
}

#[test]
fn a_command_killed_by_a_signal_is_128_plus_its_number() {
    assert_exits_with("status137", "kill -9 $$", 128 + libc::SIGKILL);
}

#[test]
fn a_command_that_cannot_be_executed_exits_127() {
    let mut d = Daemon::builder("noexec")
        .command(["/nonexistent/command"])
        .spawn();
    let code = d.exit_code(SOON);
    assert_eq!(code, 127, "log:\n{}", d.log());
    // reapd gives up before any client could watch: what the operator reads is the log.
    assert!(
        d.log()
            .contains("cannot execute \"/nonexistent/command\": No such file or directory"),
        "{}",
        d.log()
    );
    d.assert_nothing_left();
}

#[test]
fn a_forwarded_signal_that_ends_the_command_is_its_status() {
    let mut d = Daemon::builder("fwdkill")
        .command(["sleep", "1000"])
        .start();
    d.pid_of("main").expect("command runs");
    d.signal(libc::SIGHUP);
    let code = d.exit_code(SOON);
    assert_eq!(code, 128 + libc::SIGHUP, "log:\n{}", d.log());
    d.assert_nothing_left();
}

#[test]
fn a_leftover_that_ignores_term_is_killed_at_the_stop_timeout() {
    let (d, code, events) = run_watched(
        "leftkill",
        &["--stop-timeout", "500"],
        "(trap '' TERM; echo ready > \"$TEST_DIR/x\"; exec sleep 1000) & \
         while [ ! -s \"$TEST_DIR/x\" ]; do sleep 0.05; done; exit 3",
    );
    assert_eq!(code, 3, "log:\n{}", d.log());
    d.assert_nothing_left();
    let killed = one_event(&events, "killed");
    assert_eq!(
        (&killed["service"], &killed["count"]),
        (&json!("main"), &json!(1)),
        "{killed}"
    );
    let stopped = one_event(&events, "stopped");
    assert_eq!(
        (&stopped["service"], &stopped["how"]),
        (&json!("main"), &json!("killed")),
        "{stopped}"
    );
}

#[test]
fn leftovers_of_a_command_that_exited_are_stopped() {
    let script = "bash -c 'trap \"echo got TERM >> \\\"$TEST_DIR/left.log\\\"; exit 0\" TERM; \
                  echo ready >> \"$TEST_DIR/left.log\"; while :; do sleep 0.1; done' & \
                  sleep 1000 & \
                  while ! grep -q ready \"$TEST_DIR/left.log\" 2>/dev/null; do sleep 0.05; done; \
                  exit 5";
    let (d, code, events) = run_watched("leftover", &[], script);
    assert_eq!(code, 5, "log:\n{}", d.log());
    d.assert_nothing_left();
    assert!(
        d.dir.read("left.log").contains("got TERM"),
        "the leftover was not asked to stop with TERM:\n{}",
        d.dir.read("left.log")
    );
    assert_eq!(done_event(&events)["clean"], true, "{events:#?}");
}

/// The main command traps every forwarded signal; a child in its process group traps four of
/// them (a non-interactive shell's background jobs ignore SIGQUIT).
const FORWARD_SCRIPT: &str = r#"
log="$TEST_DIR/sig.log"
(
    for s in HUP USR1 USR2 WINCH; do trap "echo child $s >> \"\$log\"" $s; done
    echo "child ready" >> "$log"
    while :; do sleep 0.1; done
) &
for s in HUP USR1 USR2 WINCH QUIT; do trap "echo main $s >> \"\$log\"" $s; done
echo "main ready" >> "$log"
while :; do sleep 0.1; done
"#;

#[test]
fn signals_are_forwarded_to_the_commands_process_group() {
    let mut d = Daemon::builder("fwd")
        .command(["bash", "-c", FORWARD_SCRIPT])
        .start();
    d.wait_for("sig.log", "main ready");
    d.wait_for("sig.log", "child ready");
    let main = d.pid_of("main").expect("command runs");
    let st = stat(main).expect("stat of the command");
    assert_eq!(
        (st.pgrp, st.session),
        (main, main),
        "the command leads its own session and group"
    );
    assert_ne!(stat(d.pid()).map(|s| s.session), Some(main));
    let mut w = d.watch();
    let mut seen = Vec::new();
    for (sig, name) in [
        (libc::SIGUSR1, "USR1"),
        (libc::SIGHUP, "HUP"),
        (libc::SIGUSR2, "USR2"),
        (libc::SIGWINCH, "WINCH"),
        (libc::SIGQUIT, "QUIT"),
    ] {
        d.signal(sig);
        d.wait_for("sig.log", &format!("main {name}"));
        if name != "QUIT" {
            d.wait_for("sig.log", &format!("child {name}"));
        }
        let forwarded = w
            .until(SOON, &mut seen, |e| {
                e["event"] == "forwarded" && e["signal"] == format!("SIG{name}")
            })
            .unwrap_or_else(|| panic!("no forwarded event for SIG{name}: {seen:#?}"));
        assert_eq!(forwarded["pgid"], main, "{forwarded}");
    }
    // Each signal arrived once, and none of them stopped reapd or the command.
    let log = d.dir.read("sig.log");
    for name in ["HUP", "USR1", "USR2", "WINCH", "QUIT"] {
        assert_eq!(lines_with(&log, &format!("main {name}")).len(), 1, "{log}");
    }
    assert_eq!(d.pid_of("main"), Some(main));
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn sigterm_stops_the_command_with_term_and_reapd_exits_0() {
    let script = r#"trap 'echo got TERM >> "$TEST_DIR/x"; exit 0' TERM; echo ready >> "$TEST_DIR/x"; while :; do sleep 0.1; done"#;
    let mut d = Daemon::builder("term")
        .command(["bash", "-c", script])
        .start();
    d.wait_for("x", "ready");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
    assert!(d.dir.read("x").contains("got TERM"), "{}", d.dir.read("x"));
}

#[test]
fn a_command_killed_by_the_stop_signal_still_means_exit_0() {
    let mut d = Daemon::builder("term143")
        .command(["sleep", "1000"])
        .start();
    let pid = d.pid_of("main").expect("command runs");
    let events = d.signal_and_watch(libc::SIGTERM);
    d.assert_clean_exit();
    let exited = one_event(&events, "exited");
    assert_eq!(exited["pid"], pid);
    assert_eq!(
        exited["status"]["signal"], "SIGTERM",
        "the command died of TERM: {exited}"
    );
    let done = done_event(&events);
    assert_eq!(done["exit_code"], 0, "not 143: {done}");
}

#[test]
fn stop_signal_int_replaces_term() {
    let script = r#"trap 'echo got INT >> "$TEST_DIR/x"; exit 0' INT; trap 'echo got TERM >> "$TEST_DIR/x"; exit 0' TERM; echo ready >> "$TEST_DIR/x"; while :; do sleep 0.1; done"#;
    let mut d = Daemon::builder("int")
        .args(["--stop-signal", "INT"])
        .command(["bash", "-c", script])
        .start();
    d.wait_for("x", "ready");
    let events = d.signal_and_watch(libc::SIGTERM);
    d.assert_clean_exit();
    let x = d.dir.read("x");
    assert!(x.contains("got INT"), "{x}");
    assert!(!x.contains("got TERM"), "{x}");
    let stopping = one_event(&events, "stopping");
    assert_eq!(stopping["signal"], "SIGINT");
    let stopped = events_of(&events, "stopped");
    assert_eq!(stopped[0]["how"], "exited", "not killed: {}", stopped[0]);
}

/// Paths of the Unix sockets bound to a name that `pid` holds open.
fn bound_unix_sockets(pid: i32) -> Vec<String> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().to_string();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Num RefCount Protocol Flags Type St Inode [Path]
            let path = f.get(7)?;
            inodes
                .iter()
                .any(|i| f.get(6) == Some(&i.as_str()))
                .then(|| path.to_string())
        })
        .collect()
}

fn sock_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.ends_with(".sock"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn without_socket_option_or_env_no_control_socket_is_opened() {
    let b = Daemon::builder("nosock");
    // Where the default socket would go if one were opened.
    let runtime = b.dir().path.clone();
    let mut d = b
        .no_socket()
        .env("XDG_RUNTIME_DIR", runtime)
        .command(["sh", "-c", "echo ready > \"$TEST_DIR/x\"; exec sleep 1000"])
        .spawn();
    // The socket would be bound before the command is started.
    d.wait_for("x", "ready");
    assert_eq!(sock_files(&d.dir.path), Vec::<String>::new());
    assert_eq!(bound_unix_sockets(d.pid()), Vec::<String>::new());
    // Nothing to watch without a socket: the start-up log is what tells.
    assert!(!d.log().contains("control socket"), "{}", d.log());
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn reapd_socket_in_the_environment_opens_a_socket() {
    let b = Daemon::builder("envsock");
    let path = b.dir().join("env.sock");
    let mut d = b
        .no_socket()
        .env("REAPD_SOCKET", &path)
        .command(["sleep", "1000"])
        .start();
    assert_eq!(d.socket, path);
    let v = d.request(r#"{"cmd":"status"}"#);
    assert_eq!(v["mode"], "single", "{v}");
    let mut bound = bound_unix_sockets(d.pid());
    // Accepted connections show the listener's path too.
    bound.dedup();
    assert_eq!(bound, vec![path.display().to_string()]);
    let v: Value = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(v["ok"], false, "{v}");
    d.signal(libc::SIGTERM);
    // The socket and its lock file are gone too.
    d.assert_clean_exit();
}

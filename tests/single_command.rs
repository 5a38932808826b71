//! Single-command mode (`reapd [--socket P] -- CMD ARGS`) through the real binary: the exit
//! status is the command's own, leftovers are stopped, signals are forwarded to the command's
//! process group, SIGTERM stops it with its stop signal, and no socket is opened unless asked.

mod common;

use common::*;
use serde_json::Value;

/// Runs `sh -c SCRIPT` under reapd and returns reapd's exit status once it ends by itself.
fn status_of(tag: &str, script: &str) -> (Daemon, i32) {
    let mut d = Daemon::start_single(tag, &[], &["sh", "-c", script]);
    let code = d.exit_code(SOON);
    (d, code)
}

/// Asserts reapd left nothing: no socket, no lock, no live marked process.
fn assert_nothing_left(d: &Daemon) {
    assert!(!d.socket.exists(), "socket left behind");
    assert!(!d.dir.join("s.sock.lock").exists(), "lock left behind");
    let left = live_with_marker(&d.marker);
    assert!(left.is_empty(), "left behind: {left:?}\nlog:\n{}", d.log());
}

fn wait_for(d: &Daemon, file: &str, needle: &str) {
    assert!(
        wait_until(SOON, || d.dir.read(file).contains(needle)),
        "{file} never contained {needle:?}:\n{}\nlog:\n{}",
        d.dir.read(file),
        d.log()
    );
}

#[test]
fn reapd_exits_with_the_commands_own_status() {
    for (script, want) in [("exit 0", 0), ("exit 7", 7), ("kill -9 $$", 137)] {
        let (d, code) = status_of("status", script);
        assert_eq!(code, want, "sh -c {script:?}; log:\n{}", d.log());
        assert_nothing_left(&d);
        assert!(
            d.log().contains(&format!("exit status {want}")),
            "{}",
            d.log()
        );
    }
}

#[test]
fn a_command_that_cannot_be_executed_exits_127() {
    let mut d = Daemon::start_single("noexec", &[], &["/nonexistent/command"]);
    let code = d.exit_code(SOON);
    assert_eq!(code, 127, "log:\n{}", d.log());
    assert!(
        d.log()
            .contains("cannot execute \"/nonexistent/command\": No such file or directory"),
        "{}",
        d.log()
    );
    assert_nothing_left(&d);
}

#[test]
fn a_forwarded_signal_that_ends_the_command_is_its_status() {
    let mut d = Daemon::start_single("fwdkill", &[], &["sleep", "1000"]);
    d.wait_ready();
    d.pid_of("main").expect("command runs");
    d.signal(libc::SIGHUP);
    let code = d.exit_code(SOON);
    assert_eq!(code, 128 + libc::SIGHUP, "log:\n{}", d.log());
    assert_nothing_left(&d);
}

#[test]
fn a_leftover_that_ignores_term_is_killed_at_the_stop_timeout() {
    let mut d = Daemon::start_single(
        "leftkill",
        &["--stop-timeout", "500"],
        &[
            "sh",
            "-c",
            "(trap '' TERM; echo ready > \"$TEST_DIR/x\"; exec sleep 1000) & \
             while [ ! -s \"$TEST_DIR/x\" ]; do sleep 0.05; done; exit 3",
        ],
    );
    let code = d.exit_code(SOON);
    assert_eq!(code, 3, "log:\n{}", d.log());
    assert_nothing_left(&d);
    let log = d.log();
    assert!(log.contains("main: froze and killed 1 process"), "{log}");
    assert!(log.contains("main: stopped (killed)"), "{log}");
}

#[test]
fn leftovers_of_a_command_that_exited_are_stopped() {
    let script = "bash -c 'trap \"echo got TERM >> \\\"$TEST_DIR/left.log\\\"; exit 0\" TERM; \
                  echo ready >> \"$TEST_DIR/left.log\"; while :; do sleep 0.1; done' & \
                  sleep 1000 & \
                  while ! grep -q ready \"$TEST_DIR/left.log\" 2>/dev/null; do sleep 0.05; done; \
                  exit 5";
    let (d, code) = status_of("leftover", script);
    assert_eq!(code, 5, "log:\n{}", d.log());
    assert_nothing_left(&d);
    assert!(
        d.dir.read("left.log").contains("got TERM"),
        "the leftover was not asked to stop with TERM:\n{}",
        d.dir.read("left.log")
    );
    assert!(d.log().contains("done: clean"), "{}", d.log());
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
    let mut d = Daemon::start_single("fwd", &[], &["bash", "-c", FORWARD_SCRIPT]);
    d.wait_ready();
    wait_for(&d, "sig.log", "main ready");
    wait_for(&d, "sig.log", "child ready");
    let main = d.pid_of("main").expect("command runs");
    let (_, pgrp, sid) = stat_ids(main).expect("stat of the command");
    assert_eq!(
        (pgrp, sid),
        (main, main),
        "the command leads its own session and group"
    );
    assert_ne!(stat_ids(d.pid()).map(|s| s.2), Some(main));
    for (sig, name) in [
        (libc::SIGUSR1, "USR1"),
        (libc::SIGHUP, "HUP"),
        (libc::SIGUSR2, "USR2"),
        (libc::SIGWINCH, "WINCH"),
        (libc::SIGQUIT, "QUIT"),
    ] {
        d.signal(sig);
        wait_for(&d, "sig.log", &format!("main {name}"));
        if name != "QUIT" {
            wait_for(&d, "sig.log", &format!("child {name}"));
        }
        assert!(
            d.log()
                .contains(&format!("forwarding SIG{name} to process group {main}")),
            "{}",
            d.log()
        );
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
    let mut d = Daemon::start_single("term", &[], &["bash", "-c", script]);
    d.wait_ready();
    wait_for(&d, "x", "ready");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
    assert!(d.dir.read("x").contains("got TERM"), "{}", d.dir.read("x"));
}

#[test]
fn a_command_killed_by_the_stop_signal_still_means_exit_0() {
    let mut d = Daemon::start_single("term143", &[], &["sleep", "1000"]);
    d.wait_ready();
    let pid = d.pid_of("main").expect("command runs");
    let mut w = d.watch();
    d.signal(libc::SIGTERM);
    let events = w.drain(SOON);
    d.assert_clean_exit();
    let exited = events_of(&events, "exited");
    assert_eq!(exited.len(), 1, "{events:?}");
    assert_eq!(exited[0]["pid"], pid);
    assert_eq!(
        exited[0]["status"]["signal"], "SIGTERM",
        "the command died of TERM: {}",
        exited[0]
    );
    let done = events_of(&events, "done");
    assert_eq!(done.len(), 1, "{events:?}");
    assert_eq!(done[0]["exit_code"], 0, "not 143: {}", done[0]);
}

#[test]
fn stop_signal_int_replaces_term() {
    let script = r#"trap 'echo got INT >> "$TEST_DIR/x"; exit 0' INT; trap 'echo got TERM >> "$TEST_DIR/x"; exit 0' TERM; echo ready >> "$TEST_DIR/x"; while :; do sleep 0.1; done"#;
    let mut d = Daemon::start_single("int", &["--stop-signal", "INT"], &["bash", "-c", script]);
    d.wait_ready();
    wait_for(&d, "x", "ready");
    let mut w = d.watch();
    d.signal(libc::SIGTERM);
    let events = w.drain(SOON);
    d.assert_clean_exit();
    let x = d.dir.read("x");
    assert!(x.contains("got INT"), "{x}");
    assert!(!x.contains("got TERM"), "{x}");
    let stopping = events_of(&events, "stopping");
    assert_eq!(stopping.len(), 1, "{events:?}");
    assert_eq!(stopping[0]["signal"], "SIGINT");
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
    let dir = TestDir::new("nosock");
    let runtime = dir.path.display().to_string();
    let mut d = Daemon::spawn_in(
        dir,
        Start {
            args: vec![
                "--".into(),
                "sh".into(),
                "-c".into(),
                "echo ready > \"$TEST_DIR/x\"; exec sleep 1000".into(),
            ],
            // Where the default socket would go if one were opened.
            env: vec![("XDG_RUNTIME_DIR", runtime)],
            with_socket: false,
        },
    );
    // The socket would be bound before the command is started.
    wait_for(&d, "x", "ready");
    assert_eq!(sock_files(&d.dir.path), Vec::<String>::new());
    assert_eq!(bound_unix_sockets(d.pid()), Vec::<String>::new());
    assert!(!d.log().contains("control socket"), "{}", d.log());
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn reapd_socket_in_the_environment_opens_a_socket() {
    let dir = TestDir::new("envsock");
    let path = dir.join("env.sock");
    let mut d = Daemon::spawn_in(
        dir,
        Start {
            args: vec!["--".into(), "sleep".into(), "1000".into()],
            env: vec![("REAPD_SOCKET", path.display().to_string())],
            with_socket: false,
        },
    );
    d.socket = path.clone();
    d.wait_ready();
    let v = d.request(r#"{"cmd":"status"}"#);
    assert_eq!(v["mode"], "single", "{v}");
    let mut bound = bound_unix_sockets(d.pid());
    // Accepted connections show the listener's path too.
    bound.dedup();
    assert_eq!(bound, vec![path.display().to_string()]);
    let v: Value = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(v["ok"], false, "{v}");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
    assert!(!d.dir.join("env.sock.lock").exists(), "lock left behind");
}

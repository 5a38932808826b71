//! reapd under s6: `s6-svscan` supervising a copy of `examples/s6/reapd`, with readiness through
//! the `notification-fd` protocol, a clean `s6-svc -d` and a restart with `s6-svc -u`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn example_dir() -> PathBuf {
    repo_root().join("examples/s6/reapd")
}

/// Runs an s6 tool, bounded.
fn s6(tool: &str, args: &[&str], path: &Path) -> ToolRun {
    run_bounded(
        Command::new(tool).args(args).arg(path),
        Duration::from_secs(60),
    )
}

/// Service name → pid from a `list` reply, for services in state `running`.
fn running_pids(list: &Value) -> Vec<(String, i64)> {
    list["services"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| s["state"] == "running")
                .filter_map(|s| Some((s["name"].as_str()?.to_string(), s["pid"].as_i64()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn ready_and_running(socket: &Path, log: &dyn Fn() -> String) -> Vec<(String, i64)> {
    // s6-svwait -U returned: reapd said it is ready, so it must answer at once, without retries.
    let pong = request_at(socket, r#"{"cmd":"ping"}"#)
        .unwrap_or_else(|e| panic!("ready but no answer: {e}\nlog:\n{}", log()));
    assert_eq!(pong, json!({"ok": true, "pong": true}));
    let list = request_at(socket, r#"{"cmd":"list"}"#).expect("list");
    let pids = running_pids(&list);
    let names: Vec<&str> = pids.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["db", "web"], "both services running: {list}");
    pids
}

#[test]
fn s6_svscan_runs_reapd_with_readiness_then_down_and_up_again() {
    for tool in [
        "s6-svscan",
        "s6-svscanctl",
        "s6-svc",
        "s6-svok",
        "s6-svwait",
        "s6-svstat",
    ] {
        if !require_tool(tool) {
            return;
        }
    }
    let dir = TestDir::new("s6");
    let marker = dir.marker();
    let scan = dir.join("scan");
    let svc = scan.join("reapd");
    copy_files(&example_dir(), &svc);
    let socket = dir.join("s.sock");
    let lock = lock_of(&socket);
    let config = dir.write("reapd.json", &db_and_web().to_string());
    let log = || dir.read("svscan.log");
    let mut svscan = Marked::spawn(
        dir.log_into(&mut Command::new("s6-svscan"), "svscan.log")
            .arg(&scan)
            .env("REAPD_BIN", BIN)
            .env("REAPD_CONFIG", &config)
            .env("REAPD_SOCKET", &socket)
            .env("REAPD_LOG", "debug")
            .env_remove("NOTIFY_SOCKET"),
        &marker,
    );
    assert!(
        wait_until(SOON, || s6("s6-svok", &[], &svc).code == Some(0)),
        "s6-supervise never started on {}",
        svc.display()
    );

    // Readiness: s6-supervise only reports "ready" after reapd wrote its newline on fd 3.
    let up = s6("s6-svwait", &["-U", "-t", "20000"], &svc);
    assert_eq!(up.code, Some(0), "s6-svwait -U: {up:?}\nlog:\n{}", log());
    let first = ready_and_running(&socket, &log);
    let stat = s6("s6-svstat", &["-o", "up,ready,pid"], &svc);
    let fields: Vec<String> = stat.stdout.split_whitespace().map(String::from).collect();
    assert!(
        fields.len() == 3 && fields[..2] == ["true", "true"],
        "{stat:?}"
    );
    let reapd_pid: i32 = fields[2].parse().expect("pid");
    assert_eq!(
        std::fs::read_to_string(&lock).expect("lock").trim(),
        reapd_pid.to_string(),
        "the lock holds the pid s6 supervises: run exec'd reapd"
    );
    // s6-svscan and s6-supervise stay; everything else marked is reapd and its services.
    let keepers: Vec<i32> = live_with_marker(&marker)
        .iter()
        .filter(|p| p.cmdline.starts_with("s6-sv") || p.cmdline.starts_with("s6-supervise"))
        .map(|p| p.pid)
        .collect();
    assert_eq!(keepers.len(), 2, "{:?}", live_with_marker(&marker));
    let tree_up = || {
        let procs = svscan.live_except(&keepers);
        procs.iter().any(|p| p.pid == reapd_pid)
            && procs.iter().filter(|p| p.cmdline == "sleep 1000").count() == 3
    };
    assert!(
        wait_until(SOON, tree_up),
        "reapd and three sleeps: {:?}",
        svscan.live_except(&keepers)
    );

    // Down: s6-supervise sends SIGTERM (then SIGCONT); reapd stops everything and exits 0.
    let mut w = watch_at(&socket);
    let down = s6("s6-svc", &["-d"], &svc);
    assert_eq!(down.code, Some(0), "{down:?}");
    let waited = s6("s6-svwait", &["-D", "-t", "40000"], &svc);
    assert_eq!(
        waited.code,
        Some(0),
        "s6-svwait -D: {waited:?}\nlog:\n{}",
        log()
    );
    let stat = s6("s6-svstat", &["-o", "up,exitcode,signal"], &svc);
    assert_eq!(
        stat.stdout.split_whitespace().collect::<Vec<_>>(),
        ["false", "0", "NA"],
        "reapd exited 0: {stat:?}\nlog:\n{}",
        log()
    );
    assert_nothing_left(&socket, &svscan.live_except(&keepers), &log());
    let events = w.drain(SOON);
    assert_eq!(done_event(&events)["clean"], true, "{events:#?}");

    // Up again: a fresh reapd, ready and running both services with new pids.
    let up = s6("s6-svc", &["-u"], &svc);
    assert_eq!(up.code, Some(0), "{up:?}");
    let up = s6("s6-svwait", &["-U", "-t", "20000"], &svc);
    assert_eq!(
        up.code,
        Some(0),
        "s6-svwait -U again: {up:?}\nlog:\n{}",
        log()
    );
    let second = ready_and_running(&socket, &log);
    for ((name, old), (_, new)) in first.iter().zip(&second) {
        assert_ne!(old, new, "{name} was not restarted");
    }

    // Tear down the whole tree the documented way: s6-svscanctl -t brings the services down and
    // makes s6-svscan exit.
    let mut w = watch_at(&socket);
    let t = s6("s6-svscanctl", &["-t"], &scan);
    assert_eq!(t.code, Some(0), "{t:?}");
    let st = svscan
        .wait_exit(Duration::from_secs(45))
        .unwrap_or_else(|| panic!("s6-svscan did not exit\nlog:\n{}", log()));
    assert!(st.success(), "s6-svscan: {st:?}");
    assert_nothing_left(&socket, &live_with_marker(&marker), &log());
    let events = w.drain(SOON);
    assert_eq!(done_event(&events)["clean"], true, "{events:#?}");
}

#[test]
fn the_s6_example_waits_longer_than_any_shutdown_and_uses_its_notification_fd() {
    let dir = example_dir();
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect(f);
    let kill_ms: u64 = read("timeout-kill")
        .trim()
        .parse()
        .expect("timeout-kill is ms");
    let bound = max_shutdown_ms();
    assert!(
        kill_ms > bound,
        "timeout-kill {kill_ms} ms must exceed reapd's shutdown bound {bound} ms"
    );
    let fd = read("notification-fd").trim().to_string();
    assert!(fd.parse::<u32>().is_ok_and(|n| n > 2), "{fd:?}");
    let run = read("run");
    assert!(run.contains(&format!("--notify-fd {fd}")), "{run}");
    assert!(run.contains("exec 2>&1"), "{run}");
}

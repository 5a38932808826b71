//! reapd under runit: `runsv` on a copy of `examples/runit/reapd`, started with `sv up` (which
//! waits for the example's `check` script), stopped with `sv down` (TERM, then CONT).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

fn example_dir() -> PathBuf {
    repo_root().join("examples/runit/reapd")
}

#[test]
fn runsv_runs_reapd_and_sv_down_stops_it_cleanly() {
    if !require_tool("runsv") || !require_tool("sv") {
        return;
    }
    let dir = TestDir::new("runit");
    let marker = dir.marker();
    let svc = dir.join("sv/reapd");
    copy_files(&example_dir(), &svc);
    // Start down, so that `sv up` is what starts reapd; record how ./run ended.
    dir.write("sv/reapd/down", "");
    let finish_log = dir.join("finish.log");
    dir.script(
        "sv/reapd/finish",
        &format!("echo \"$1 $2\" >> '{}'", finish_log.display()),
    );
    let socket = dir.join("s.sock");
    let lock = lock_of(&socket);
    let config = dir.write("reapd.json", &db_and_web().to_string());
    let log = || dir.read("runsv.log");
    let env = [
        ("REAPD_BIN", BIN.to_string()),
        ("REAPD_CONFIG", config.display().to_string()),
        ("REAPD_SOCKET", socket.display().to_string()),
    ];
    let mut runsv = Marked::spawn(
        dir.log_into(&mut Command::new("runsv"), "runsv.log")
            .arg(&svc)
            .envs(env.iter().cloned())
            .env("REAPD_LOG", "debug")
            .env_remove("NOTIFY_SOCKET"),
        &marker,
    );
    // sv runs ./check itself, so it needs the same overrides; the marker makes it findable.
    let sv = |args: &[&str]| {
        run_bounded(
            Command::new("sv")
                .args(args)
                .arg(&svc)
                .envs(env.iter().cloned())
                .env("REAPD_TEST_MARKER", &marker),
            Duration::from_secs(60),
        )
    };
    assert!(
        wait_until(SOON, || sv(&["status"]).stdout.starts_with("down:")),
        "runsv never reported the service down: {:?}",
        sv(&["status"])
    );
    let keepers = vec![runsv.pid()];
    let early = runsv.live_except(&keepers);
    assert!(
        early.is_empty(),
        "the down file keeps reapd from starting: {early:?}"
    );

    // `sv -w 30 up` returns once ./run is running and ./check (ping over the socket) succeeds.
    let up = sv(&["-w", "30", "up"]);
    assert_eq!(up.code, Some(0), "sv up: {up:?}\nlog:\n{}", log());
    assert!(up.stdout.starts_with("ok: run:"), "{up:?}");
    let pong = request_at(&socket, r#"{"cmd":"ping"}"#).unwrap_or_else(|e| {
        panic!(
            "sv up returned but reapd does not answer: {e}\nlog:\n{}",
            log()
        )
    });
    assert_eq!(pong["pong"], true);
    let status = sv(&["status"]);
    assert!(status.stdout.starts_with("run:"), "{status:?}");
    let reapd_pid = std::fs::read_to_string(&lock)
        .expect("lock")
        .trim()
        .to_string();
    assert!(
        status.stdout.contains(&format!("(pid {reapd_pid})")),
        "runsv supervises reapd itself (run exec'd it): {status:?}, lock {reapd_pid}"
    );
    let list = request_at(&socket, r#"{"cmd":"list"}"#).expect("list");
    let running: Vec<&str> = list["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter(|s| s["state"] == "running")
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(running, ["db", "web"], "{list}");
    assert!(
        wait_until(SOON, || runsv
            .live_except(&keepers)
            .iter()
            .filter(|p| p.cmdline == "sleep 1000")
            .count()
            == 3),
        "three sleeps: {:?}",
        runsv.live_except(&keepers)
    );
    let check = run_bounded(
        Command::new(svc.join("check")).envs(env.iter().cloned()),
        SOON,
    );
    assert_eq!(check.code, Some(0), "./check while up: {check:?}");

    // `sv down`: TERM then CONT. reapd must take the CONT in its stride and exit 0.
    let mut w = watch_at(&socket);
    let down = sv(&["-w", "40", "down"]);
    assert_eq!(down.code, Some(0), "sv down: {down:?}\nlog:\n{}", log());
    assert!(down.stdout.starts_with("ok: down:"), "{down:?}");
    assert!(sv(&["status"]).stdout.starts_with("down:"));
    assert!(
        wait_until(SOON, || std::fs::read_to_string(&finish_log)
            .is_ok_and(|t| t.ends_with('\n'))),
        "./finish did not run"
    );
    assert_eq!(
        std::fs::read_to_string(&finish_log).expect("finish log"),
        "0 0\n",
        "./run (reapd) exited normally with 0\nlog:\n{}",
        log()
    );
    assert_nothing_left(&socket, &runsv.live_except(&keepers), &log());
    let events = w.drain(SOON);
    assert_eq!(done_event(&events)["clean"], true, "{events:#?}");
    let check = run_bounded(
        Command::new(svc.join("check")).envs(env.iter().cloned()),
        SOON,
    );
    assert_ne!(check.code, Some(0), "./check while down: {check:?}");

    // `sv exit` ends runsv itself.
    let exit = sv(&["exit"]);
    assert_eq!(exit.code, Some(0), "sv exit: {exit:?}");
    let st = runsv
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("runsv did not exit\nlog:\n{}", log()));
    assert!(st.success(), "runsv: {st:?}");
    let left = live_with_marker(&marker);
    assert!(left.is_empty(), "left behind: {left:?}");
}

//! cgroup v2 containment, on the machine's own cgroup2 mount, and the same scenarios with
//! `"cgroups": "off"`: an escapee that left its tree, session and environment; a fork bomb (in a
//! pids cage) killed at its stop timeout; `populated 0` ending a stop; accounting; the
//! directories removed at exit; `"required"` refused where the hierarchy is read-only. Each test
//! sets `cgroups` in its config (absent: `auto`), whatever `REAPD_TEST_CGROUPS` says.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The escapee's service: the main process starts, through a subshell that exits at once, a
/// process that calls setsid and clears its environment (so neither the tree, the session nor
/// the `REAPD_SERVICE` marker leads to it); the test marker stays in its argv. The names are
/// split in the script (`"escap"ee-`), so the shell's own argv does not look like them.
fn escapee_config(marker: &str, cgroups: &str) -> Value {
    let script = format!(
        "( setsid env -i perl -e 'sleep 1000' \"escap\"ee-{marker} & ) ; exec perl -e 'sleep 1000' \"ma\"in-{marker}"
    );
    json!({
        "cgroups": cgroups,
        "services": {
            "app": { "cmd": ["sh", "-c", script], "stop_timeout_ms": 3000, "restart": "never" },
            "other": { "cmd": ["perl", "-e", "sleep 1000", format!("other-{marker}")] }
        }
    })
}

/// The live process whose argv holds `word`.
fn find(marker: &str, word: &str) -> Option<Proc> {
    live_with_marker(marker)
        .into_iter()
        .find(|p| p.cmdline.contains(&format!("{word}-{marker}")))
}

/// The cgroup directory reapd reports, or a loud skip (None) where it walks `/proc`.
fn cgroup_dir(d: &Daemon) -> Option<PathBuf> {
    let status = d.request(r#"{"cmd":"status"}"#);
    let containment = status["containment"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let dir = containment.strip_prefix("cgroup v2 at ").map(PathBuf::from);
    require(
        status["cgroups"] == true && dir.is_some(),
        &format!("no writable cgroup v2 hierarchy here ({containment})"),
    )
    .then_some(dir)
    .flatten()
}

#[test]
fn an_escapee_is_stopped_with_its_own_service_and_the_cgroup_says_when_it_is_empty() {
    if !require_tool("perl") {
        return;
    }
    let b = Daemon::builder("cg-escapee").config_cgroups();
    let marker = b.dir().marker();
    let mut d = b.config(escapee_config(&marker, "auto")).start();
    let Some(dir) = cgroup_dir(&d) else {
        return;
    };
    assert!(wait_until(SOON, || find(&marker, "escapee").is_some()));
    let escapee = find(&marker, "escapee").expect("escapee");
    assert_eq!(escapee.ppid, d.pid(), "reparented to reapd, the subreaper");
    let members = std::fs::read_to_string(dir.join("svc-app/cgroup.procs")).expect("procs");
    let main = d.pid_of("app").expect("app runs");
    for (who, pid) in [("the escapee", escapee.pid), ("the main process", main)] {
        assert!(
            members.lines().any(|l| l == pid.to_string()),
            "{who} is in its service's cgroup: {members}"
        );
    }
    let other = std::fs::read_to_string(dir.join("svc-other/cgroup.procs")).expect("procs");
    assert!(!other.lines().any(|l| l == escapee.pid.to_string()));
    let mut w = d.watch();
    let reply = d.request(r#"{"cmd":"stop","name":"app"}"#);
    assert_eq!(reply["state"], "stopped", "{reply}");
    assert!(
        !is_alive(escapee.pid),
        "the escapee was stopped with its service; log:\n{}",
        d.log()
    );
    assert!(
        find(&marker, "other").is_some(),
        "another service is left alone"
    );
    let mut seen = Vec::new();
    let stopped = w
        .until(SOON, &mut seen, |e| {
            e["event"] == "stopped" && e["service"] == "app"
        })
        .expect("stopped event");
    assert_eq!(stopped["how"], "exited", "{stopped}");
    assert_eq!(
        stopped["cgroup_empty"], true,
        "populated 0 ended the stop, with no scan after the last exit: {stopped}"
    );
    assert!(d.log().contains("app: stopped (exited)"));
    assert!(d.log().contains("its cgroup is empty"));
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
    assert!(!dir.exists(), "{} removed at exit", dir.display());
}

#[test]
fn with_cgroups_off_the_escapee_is_stopped_by_the_shutdown_at_the_latest() {
    if !require_tool("perl") {
        return;
    }
    let b = Daemon::builder("cg-escapee-off").config_cgroups();
    let marker = b.dir().marker();
    let mut d = b.config(escapee_config(&marker, "off")).start();
    let status = d.request(r#"{"cmd":"status"}"#);
    assert_eq!(status["cgroups"], false, "{status}");
    assert_eq!(status["containment"], "/proc walk: cgroups off", "{status}");
    assert!(wait_until(SOON, || find(&marker, "escapee").is_some()));
    let escapee = find(&marker, "escapee").expect("escapee");
    let reply = d.request(r#"{"cmd":"stop","name":"app"}"#);
    assert_eq!(reply["state"], "stopped", "{reply}");
    // Without cgroups nothing ties the escapee to `app` (the walk never saw its parent): `stop`
    // leaves it, and the shutdown stops it as an orphan of no service. That is the difference.
    let events = d.signal_and_watch(libc::SIGTERM);
    assert!(!is_alive(escapee.pid), "the shutdown stopped the escapee");
    assert!(
        events_of(&events, "stopped")
            .iter()
            .all(|e| e.get("cgroup_empty").is_none()),
        "no cgroup, no word from one"
    );
    d.assert_clean_exit();
}

#[test]
fn accounting_is_read_for_status_and_list() {
    let b = Daemon::builder("cg-usage").config_cgroups();
    let marker = b.dir().marker();
    let cfg = json!({ "services": {
        "busy": { "cmd": ["sh", "-c", format!("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 1000 {marker}")] }
    }});
    let mut d = b.config(cfg).start();
    let Some(dir) = cgroup_dir(&d) else {
        return;
    };
    // The loop's CPU time is counted once it is done.
    assert!(wait_until(SOON, || d.service("busy").is_some_and(|s| {
        s["usage"]["cpu_usec"].as_u64().is_some_and(|us| us > 0)
    })));
    let row = d.service("busy").expect("busy");
    let svc = dir.join("svc-busy");
    for (field, file) in [("memory_bytes", "memory.current"), ("pids", "pids.current")] {
        assert_eq!(
            row["usage"][field].is_u64(),
            svc.join(file).exists(),
            "{field} is shown exactly where {file} exists: {row}"
        );
    }
    let status = d.request(r#"{"cmd":"status"}"#);
    assert!(status["usage"]["busy"]["cpu_usec"].is_u64(), "{status}");
    let text = run_bounded(
        std::process::Command::new(BIN)
            .args(["ctl", "--socket"])
            .arg(&d.socket)
            .arg("list"),
        SOON,
    )
    .stdout;
    assert!(
        text.contains("CGROUP USAGE") && text.contains("cpu "),
        "{text}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
    assert!(!dir.exists());
}

#[test]
fn required_refuses_to_start_where_the_hierarchy_is_read_only() {
    // A mount namespace of its own where the cgroup2 mount is read-only: what a default Docker
    // or Kubernetes container shows.
    let Some(mount) = cgroup2_mount() else {
        require(false, "no cgroup2 mount");
        return;
    };
    if !require_tool("unshare")
        || !require_tool("mount")
        || !require(is_root(), "remounting needs root")
    {
        return;
    }
    let readonly = |b: DaemonBuilder| {
        b.wrapper([
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &format!("mount -o remount,bind,ro {mount} && exec \"$@\""),
            "sh",
        ])
    };
    let b = readonly(Daemon::builder("cg-required").config_cgroups());
    let mut d = b
        .config(json!({ "cgroups": "required", "services": { "a": { "cmd": ["sleep", "1000"] } } }))
        .spawn();
    let code = d.exit_code(SOON);
    let log = d.log();
    assert_eq!(code, 3, "refused to start; log:\n{log}");
    assert!(
        log.contains("cgroups are required") && log.contains("Read-only file system"),
        "the log says why: {log}"
    );
    assert!(!log.contains("a: started"), "{log}");
    // `auto` in the same place starts, walks /proc and says why.
    let b = readonly(Daemon::builder("cg-auto-ro").config_cgroups());
    let marker = b.dir().marker();
    let cfg = json!({ "services": { "a": { "cmd": ["sleep", "1000", marker] } } });
    let mut d = b.config(cfg).start();
    let status = d.request(r#"{"cmd":"status"}"#);
    let why = status["containment"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("/proc walk: not writable") && why.contains("Read-only file system"),
        "{status}"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

/// The mount point of cgroup2, from this process's mountinfo.
fn cgroup2_mount() -> Option<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .ok()?
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(str::to_string))
                .flatten()
        })
}

/// A fork bomb in a pids cage, with its service in its own cgroup (or not): `stop` answers
/// within a generous bound of its stop timeout, and nothing of it is left.
fn fork_bomb_is_killed_at_its_stop_timeout(cgroups: &str) {
    if !require_tool("perl")
        || !require(
            realtime_priority(),
            "cannot run the test thread at real-time priority",
        )
    {
        return;
    }
    let Some(cage) = PidsCage::new("cg-bomb", 2000, Duration::from_secs(60)) else {
        return;
    };
    let b = Daemon::builder("cg-bomb").config_cgroups();
    let marker = b.dir().marker();
    let stop_ms = 1000u64;
    let bomb = format!(
        "{} && exec perl -e 'while (1) {{ fork }}' {marker}",
        cage.enter()
    );
    let cfg = json!({
        "cgroups": cgroups,
        "services": { "bomb": { "cmd": ["sh", "-c", bomb], "stop_timeout_ms": stop_ms,
                                "restart": "never" } }
    });
    let mut d = b.config(cfg).start();
    let contained = d.request(r#"{"cmd":"status"}"#)["cgroups"] == true;
    let grew = wait_until(Duration::from_secs(30), || cage.members().len() > 1500);
    let sent = Instant::now();
    let reply = d.request(r#"{"cmd":"stop","name":"bomb"}"#);
    let took = sent.elapsed();
    let left = cage.members().len();
    // Empty the cage before anything else looks at processes (or a failed assertion unwinds).
    drop(cage);
    let tail: String = d
        .log()
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(grew, "the fork bomb never filled its cage");
    assert_eq!(reply["state"], "stopped", "{reply}; log tail:\n{tail}");
    assert_eq!(reply["how"], "killed", "{reply}");
    assert_eq!(left, 0, "processes survived the stop; log tail:\n{tail}");
    if cgroups != "off"
        && require(
            contained,
            "no writable cgroup v2 hierarchy: the bomb ran without its cgroup",
        )
    {
        assert!(
            d.log().contains("froze and killed the cgroup of bomb"),
            "the kill began with cgroup.freeze and cgroup.kill; log tail:\n{tail}"
        );
    }
    // Behaviour, not a benchmark (scripts/bench measures it): the timeout plus a generous margin.
    assert!(
        took < Duration::from_millis(stop_ms) + Duration::from_secs(5),
        "took {took:?} for a {stop_ms} ms stop timeout"
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_fork_bomb_in_its_cgroup_is_killed_at_its_stop_timeout() {
    fork_bomb_is_killed_at_its_stop_timeout("auto");
}

#[test]
fn a_fork_bomb_is_killed_at_its_stop_timeout_with_cgroups_off() {
    fork_bomb_is_killed_at_its_stop_timeout("off");
}

#[test]
fn a_refused_second_instance_leaves_no_cgroup_behind() {
    let b = Daemon::builder("cg-second").config_cgroups();
    let marker = b.dir().marker();
    let cfg = json!({ "services": { "a": { "cmd": ["sleep", "1000", marker] } } });
    let mut first = b.config(&cfg).start();
    if cgroup_dir(&first).is_none() {
        return;
    }
    let path = first.dir.write("second.json", &cfg.to_string());
    let second = run_bounded(
        std::process::Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .arg("--socket")
            .arg(&first.socket)
            .env("REAPD_TEST_MARKER", &first.marker),
        SOON,
    );
    assert_eq!(second.code, Some(3), "{second:?}");
    // It made its cgroup before it found the lock taken, and removed it on its way out.
    let dir = second
        .stderr
        .lines()
        .find_map(|l| l.split("containment: cgroup v2 at ").nth(1))
        .map(PathBuf::from)
        .expect("the refused instance's cgroup is logged");
    assert!(!dir.exists(), "{} left behind", dir.display());
    first.signal(libc::SIGTERM);
    first.assert_clean_exit();
}

#[test]
fn a_crashed_predecessors_cgroups_are_emptied_and_removed_by_its_successor() {
    if !require_tool("perl") {
        return;
    }
    let b = Daemon::builder("cg-crash").config_cgroups();
    let marker = b.dir().marker();
    let cfg = escapee_config(&marker, "auto");
    let mut first = b.config(&cfg).start();
    let Some(old_dir) = cgroup_dir(&first) else {
        return;
    };
    assert!(wait_until(SOON, || find(&marker, "escapee").is_some()));
    let escapee = find(&marker, "escapee").expect("escapee");
    let state = first.dir.join("s.sock.state");
    assert!(
        wait_until(SOON, || {
            std::fs::read_to_string(&state)
                .is_ok_and(|s| s.contains(&format!("cgroup {}", old_dir.display())))
        }),
        "the state file records the cgroup directory"
    );
    // The crash: the escapee was never recorded (it is nobody's child and in no service's
    // session); only the cgroup it is in remembers whose it is.
    first.signal(libc::SIGKILL);
    assert!(first.wait_exit(SOON).is_some());
    assert!(is_alive(escapee.pid));
    let dir = std::mem::replace(&mut first.dir, TestDir::new("cg-crash-husk"));
    let mut second = Daemon::builder_in(dir)
        .config_cgroups()
        .config(&cfg)
        .start();
    assert!(
        wait_until(Duration::from_secs(5), || !is_alive(escapee.pid)),
        "the escapee in the predecessor's cgroup is still alive; log:\n{}",
        second.log()
    );
    let log = second.log();
    assert!(
        log.contains("app: left running by the predecessor"),
        "{log}"
    );
    second.signal(libc::SIGTERM);
    second.assert_clean_exit();
    assert!(
        !old_dir.exists(),
        "the predecessor's {} removed",
        old_dir.display()
    );
}

#[test]
fn a_service_removed_by_a_reload_loses_its_cgroup() {
    let b = Daemon::builder("cg-reload").config_cgroups();
    let marker = b.dir().marker();
    let svc = |n: &str| json!({ "cmd": ["sleep", "1000", format!("{n}-{marker}")] });
    let mut d = b
        .config(json!({ "services": { "kept": svc("kept"), "gone": svc("gone") } }))
        .start();
    let Some(dir) = cgroup_dir(&d) else {
        return;
    };
    assert!(dir.join("svc-gone").is_dir() && dir.join("svc-kept").is_dir());
    let mut w = d.watch();
    d.rewrite_config(json!({ "services": { "kept": svc("kept") } }));
    let reply = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(reply["ok"], true, "{reply}");
    let mut seen = Vec::new();
    assert!(
        w.until(SOON, &mut seen, |e| e["event"] == "removed")
            .is_some(),
        "{seen:?}"
    );
    assert!(
        wait_until(SOON, || !dir.join("svc-gone").exists()),
        "svc-gone removed once the service is gone"
    );
    assert!(dir.join("svc-kept").is_dir(), "the others stay");
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
    assert!(!dir.exists());
}

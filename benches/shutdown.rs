//! Timings and sizes, printed as a table (run with `scripts/bench`): what the tests check as
//! behaviour with generous bounds, measured here.
//!
//! Figures: binary sizes, the idle daemon's wake-ups, memory, request throughput, hostile
//! clients (memory and other clients' answers during a flood, a pipelining reader), shutdown of
//! many services, time per level of a bottom-up stop, a fork storm frozen and killed, a CPU-bound
//! perl fork bomb against its bound, the same bomb's kill at its stop timeout with and without
//! cgroups, three stubborn services in a row inside a 6 s bound, a
//! 10 000-service dependency chain checked, started, reloaded and shut down, and the start-up
//! window in which a SIGTERM still kills reapd; the run side: what health checks cost an idle
//! reapd and the time from a dependency's readiness to its dependent running; prefixed logs'
//! throughput and CPU cost.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "sections/logs.rs"]
mod logs;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn row(what: &str, value: String) {
    println!("{what:<58} {value}");
}

fn cpu_ticks(pid: i32) -> u64 {
    stat(pid).map_or(0, |s| s.cpu_ticks)
}

/// Sends SIGTERM while `watch` collects every event of the shutdown; returns (wall ms, events).
fn shut_down(d: &mut Daemon) -> (u128, Vec<Value>) {
    let t0 = Instant::now();
    let events = d.signal_and_watch(libc::SIGTERM);
    let code = d.exit_code(Duration::from_secs(40));
    let wall = t0.elapsed().as_millis();
    assert_eq!(code, 0, "{}", d.log());
    (wall, events)
}

fn done_ms(events: &[Value]) -> u64 {
    events
        .iter()
        .find(|e| e["event"] == "done")
        .and_then(|e| e["elapsed_ms"].as_u64())
        .unwrap_or(0)
}

fn sizes() {
    // This benchmark's own reapd is the release build: <target>/release/reapd.
    let release = std::path::PathBuf::from(BIN);
    let target = release
        .parent()
        .and_then(|p| p.parent())
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let static_bin = target.join("x86_64-unknown-linux-gnu/release/reapd");
    for (what, path) in [
        ("binary size, release (dynamic)", release),
        ("binary size, static (scripts/build-static)", static_bin),
    ] {
        match std::fs::metadata(&path) {
            Ok(m) => row(what, format!("{} KiB", m.len() / 1024)),
            Err(_) => row(what, "not built".into()),
        }
    }
}

fn idle_and_memory() {
    let d = Daemon::builder("bench-idle").config(sleepers(50)).start();
    std::thread::sleep(Duration::from_millis(500));
    let pid = d.pid();
    let before = (
        status_number(pid, "voluntary_ctxt_switches"),
        status_number(pid, "nonvoluntary_ctxt_switches"),
        cpu_ticks(pid),
    );
    std::thread::sleep(Duration::from_secs(5));
    let after = (
        status_number(pid, "voluntary_ctxt_switches"),
        status_number(pid, "nonvoluntary_ctxt_switches"),
        cpu_ticks(pid),
    );
    row(
        "idle 5 s with 50 services: wake-ups (context switches)",
        format!("{}", (after.0 - before.0) + (after.1 - before.1)),
    );
    row(
        "idle 5 s with 50 services: CPU ticks",
        format!("{}", after.2 - before.2),
    );
    row(
        "resident memory with 50 services (VmRSS)",
        format!("{} KiB", status_number(pid, "VmRSS")),
    );
    row(
        "open descriptors with 50 services",
        format!(
            "{}",
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| d.count())
                .unwrap_or(0)
        ),
    );
}

/// Context switches and CPU ticks of reapd over `secs` seconds of idling.
fn idle_cost(pid: i32, secs: u64) -> (u64, u64) {
    let sample = || {
        (
            status_number(pid, "voluntary_ctxt_switches")
                + status_number(pid, "nonvoluntary_ctxt_switches"),
            cpu_ticks(pid),
        )
    };
    let before = sample();
    std::thread::sleep(Duration::from_secs(secs));
    let after = sample();
    (after.0 - before.0, after.1 - before.1)
}

/// The run side: what health checks cost an idle reapd, and how soon a dependent runs once its
/// dependency is ready.
fn run_side() {
    // Ten services checked every second by connecting to reapd's own control socket (always
    // accepting), beside forty unchecked ones.
    let b = Daemon::builder("bench-health");
    let socket = b.dir().join("s.sock");
    let mut cfg = sleepers(50);
    if let Some(services) = cfg["services"].as_object_mut() {
        for svc in services.values_mut().take(10) {
            svc["health"] = json!({ "unix": socket, "interval_ms": 1000 });
        }
    }
    let d = b.config(cfg).start();
    std::thread::sleep(Duration::from_millis(1500));
    let (wakeups, ticks) = idle_cost(d.pid(), 5);
    row(
        "idle 5 s, 50 services, 10 health checks at 1 s: wake-ups",
        format!("{wakeups} ({ticks} CPU ticks)"),
    );
    drop(d);
    // A chain of 20 services, each ready by a newline on fd 3 and after the one before: the
    // time from one service's newline to the next one's first instruction (reapd's readiness
    // handling, its spawn, and bash's own start).
    let b = Daemon::builder("bench-ready").env("REAPD_LOG", "info");
    let log = b.dir().join("ready.log");
    let n = 20;
    let services: serde_json::Map<String, Value> = (0..n)
        .map(|i| {
            let body = format!(
                "echo start {i} $EPOCHREALTIME >> {log}; echo ready {i} $EPOCHREALTIME >> {log}; echo >&3; exec sleep 1000",
                log = log.display()
            );
            let mut svc = json!({ "cmd": ["bash", "-c", body], "ready": { "notify_fd": 3 } });
            if i > 0 {
                svc["after"] = json!([format!("r{:02}", i - 1)]);
            }
            (format!("r{i:02}"), svc)
        })
        .collect();
    let d = b.config(json!({ "services": services })).start();
    let up = wait_until(Duration::from_secs(60), || {
        d.dir
            .read("ready.log")
            .lines()
            .filter(|l| l.starts_with("start"))
            .count()
            >= n
    });
    assert!(up, "the chain never became ready:\n{}", d.log());
    let text = d.dir.read("ready.log");
    let at = |word: &str, i: usize| -> f64 {
        text.lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(word) && w.next() == Some(&i.to_string()))
                    .then(|| w.next().and_then(|t| t.parse().ok()))
                    .flatten()
            })
            .unwrap_or(0.0)
    };
    let mut gaps: Vec<f64> = (1..n)
        .map(|i| (at("start", i) - at("ready", i - 1)) * 1000.0)
        .collect();
    gaps.sort_by(f64::total_cmp);
    // The same fork, exec and bash start-up without reapd: spawned from here.
    let mut direct: Vec<f64> = (0..n)
        .map(|_| {
            let before = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let out = std::process::Command::new("bash")
                .args(["-c", "echo $EPOCHREALTIME"])
                .output()
                .expect("bash");
            let at: f64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(before);
            (at - before) * 1000.0
        })
        .collect();
    direct.sort_by(f64::total_cmp);
    row(
        "bash spawned directly to its first instruction (baseline)",
        format!("median {:.2} ms", direct[direct.len() / 2]),
    );
    row(
        "dependency's readiness newline to its dependent running",
        format!(
            "median {:.2} ms, max {:.2} ms over {} (incl. fork+exec of bash)",
            gaps[gaps.len() / 2],
            gaps[gaps.len() - 1],
            gaps.len()
        ),
    );
}

fn throughput() {
    let d = Daemon::builder("bench-rps").config(sleepers(10)).start();
    let n = 5000;
    let mut s = UnixStream::connect(&d.socket).expect("connect");
    let reader = BufReader::new(s.try_clone().expect("clone"));
    let t0 = Instant::now();
    let writer = std::thread::spawn(move || {
        let line = b"{\"cmd\":\"ping\"}\n".repeat(n);
        s.write_all(&line).expect("write");
        s
    });
    let got = reader.lines().take(n).count();
    let took = t0.elapsed();
    drop(writer.join());
    assert_eq!(got, n);
    row(
        "pipelined ping requests on one connection",
        format!(
            "{:.0} per second ({:.1} µs each)",
            n as f64 / took.as_secs_f64(),
            took.as_micros() as f64 / n as f64
        ),
    );
    let t0 = Instant::now();
    for _ in 0..200 {
        let v = d.request(r#"{"cmd":"list"}"#);
        assert_eq!(v["ok"], true);
    }
    row(
        "list of 10 services, connect + request + reply",
        format!("{:.0} µs each", t0.elapsed().as_micros() as f64 / 200.0),
    );
}

fn hostile_clients() {
    let mut d = Daemon::builder("bench-hostile")
        .config(sleepers(40))
        .start();
    let pid = d.pid();
    let before = status_number(pid, "VmRSS");
    let flooders: Vec<Flooder> = (0..3)
        .map(|_| Flooder::start(&d.socket, r#"{"cmd":"list"}"#))
        .collect();
    let mut answers = Vec::new();
    let mut peak = 0;
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        let t0 = Instant::now();
        let v = d.request(r#"{"cmd":"ping"}"#);
        assert_eq!(v["pong"], true);
        answers.push(t0.elapsed());
        peak = peak.max(status_number(pid, "VmRSS"));
        std::thread::sleep(Duration::from_millis(20));
    }
    // Gone, unread.
    drop(flooders);
    std::thread::sleep(Duration::from_millis(500));
    let after = status_number(pid, "VmRSS");
    answers.sort();
    let median = answers.get(answers.len() / 2).copied().unwrap_or_default();
    let worst = answers.last().copied().unwrap_or_default();
    row(
        "3 clients flooding `list`, never reading: RSS",
        format!("{before} KiB before, {peak} KiB peak, {after} KiB after they leave"),
    );
    row(
        "3 clients flooding: another client's ping",
        format!(
            "median {:.2} ms, worst {:.2} ms ({} pings)",
            median.as_secs_f64() * 1000.0,
            worst.as_secs_f64() * 1000.0,
            answers.len()
        ),
    );
    let n = 100_000;
    let s = UnixStream::connect(&d.socket).expect("connect");
    let reader = BufReader::new(s.try_clone().expect("clone"));
    let mut w = s;
    let t0 = Instant::now();
    let writer = std::thread::spawn(move || {
        let all: String = (0..n)
            .map(|i| format!("{{\"cmd\":\"ping\",\"id\":{i}}}\n"))
            .collect();
        w.write_all(all.as_bytes()).expect("write");
    });
    let mut peak = 0;
    let mut got = 0;
    for (i, line) in reader.lines().take(n).enumerate() {
        let v: Value = serde_json::from_str(&line.expect("reply")).expect("JSON");
        assert_eq!(v["id"], i);
        got += 1;
        if i % 10_000 == 0 {
            peak = peak.max(status_number(pid, "VmRSS"));
        }
    }
    let took = t0.elapsed();
    let _ = writer.join();
    assert_eq!(got, n);
    row(
        "100 000 pipelined pings, replies to a reading client",
        format!(
            "{:.0} per second, in order; peak RSS {peak} KiB",
            n as f64 / took.as_secs_f64()
        ),
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.exit_code(Duration::from_secs(40)), 0, "{}", d.log());
}

fn many_services() {
    let mut d = Daemon::builder("bench-many").config(sleepers(50)).start();
    let (wall, events) = shut_down(&mut d);
    row(
        "shutdown of 50 services (one process each)",
        format!("{} ms reported, {wall} ms until exit", done_ms(&events)),
    );
}

/// Runs one service at the `info` log level (as in production: a debug line per signal would be
/// measured too) until `started` says its processes are up, then shuts down.
fn stop_once(
    tag: &str,
    cfg: impl FnOnce(&TestDir) -> Value,
    log: &str,
    procs: usize,
) -> (Daemon, u128, Vec<Value>) {
    let b = Daemon::builder(tag).env("REAPD_LOG", "info");
    let cfg = cfg(b.dir());
    let mut d = b.config(cfg).start();
    let up = wait_until(Duration::from_secs(120), || {
        named_times(&d.dir.read(log), "started").len() >= procs
    });
    assert!(up, "{tag}: not all {procs} processes started");
    let (wall, events) = shut_down(&mut d);
    (d, wall, events)
}

fn chain_levels() {
    let b = Daemon::builder("bench-chain").env("REAPD_LOG", "info");
    let cfg =
        json!({ "services": { "chain": { "cmd": chain_cmd(b.dir(), "chain.log", 6, "exit") } } });
    let mut d = b.config(cfg).start();
    wait_chain_started(&d.dir, "chain.log", 6);
    let (wall, events) = shut_down(&mut d);
    let text = d.dir.read("chain.log");
    let term = chain_times(&text, "got TERM");
    let exit = chain_times(&text, "exiting");
    let gaps: Vec<f64> = (1..6)
        .map(|l| (term[&l] - exit[&(l + 1)]) * 1000.0)
        .collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let max = gaps.iter().cloned().fold(0.0, f64::max);
    row(
        "6-level chain, bottom-up: a level's exit → next level's TERM",
        format!("mean {mean:.2} ms, max {max:.2} ms"),
    );
    row(
        "6-level chain, whole stop",
        format!("{} ms reported, {wall} ms until exit", done_ms(&events)),
    );
}

/// A cooperative 3-level tree (1 → 2 → 4) and a service with 200 children, stopped bottom-up.
fn trees() {
    for (label, depth, fanout) in [
        ("3-level tree (1 → 2 → 4), whole stop", 3, 2),
        ("200 children, whole stop", 2, 200),
    ] {
        let cfg = |dir: &TestDir| json!({ "services": { "t": { "cmd": tree_cmd(dir, "tree.log", depth, fanout) } } });
        let (_d, wall, events) = stop_once("bench-tree", cfg, "tree.log", tree_size(depth, fanout));
        row(
            label,
            format!("{} ms reported, {wall} ms until exit", done_ms(&events)),
        );
    }
}

/// A chain of 1 000 levels with a 4 s stop timeout: every level must get its signal in turn.
fn deep_chain() {
    let levels = 1000u32;
    let b = Daemon::builder("bench-deep").env("REAPD_LOG", "info");
    let cfg = json!({ "services": { "deep": {
        "cmd": chain_cmd(b.dir(), "deep.log", levels, "exit"), "stop_timeout_ms": 4000 } } });
    let mut d = b.config(cfg).start();
    let up = wait_until(Duration::from_secs(120), || {
        chain_times(&d.dir.read("deep.log"), "started").len() == levels as usize
    });
    assert!(up, "the 1000-deep chain did not start");
    let (wall, events) = shut_down(&mut d);
    let text = d.dir.read("deep.log");
    let asked = chain_times(&text, "got TERM").len();
    let how = events
        .iter()
        .find(|e| e["event"] == "stopped")
        .and_then(|e| e["how"].as_str())
        .unwrap_or("?")
        .to_string();
    row(
        "1000-deep chain, stop timeout 4 s",
        format!(
            "{asked} of {levels} levels got TERM, {how}, {} ms reported, {wall} ms until exit",
            done_ms(&events)
        ),
    );
}

fn fork_storm() {
    let cfg = json!({ "services": { "storm": { "cmd": ["sh", "-c", "trap '' TERM; while :; do sleep 100 & done"], "stop_timeout_ms": 1000 } } });
    let mut d = Daemon::builder("bench-storm")
        .env("REAPD_LOG", "info")
        .config(cfg)
        .start();
    assert!(wait_until(Duration::from_secs(60), || live_with_marker(
        &d.marker
    )
    .len()
        > 5000));
    let (wall, events) = shut_down(&mut d);
    let killed: u64 = events
        .iter()
        .filter(|e| e["event"] == "killed")
        .filter_map(|e| e["count"].as_u64())
        .sum();
    let stopped = events
        .iter()
        .find(|e| e["event"] == "stopped")
        .and_then(|e| e["elapsed_ms"].as_u64())
        .unwrap_or(0);
    row(
        "fork storm: processes frozen and killed",
        format!("{killed}"),
    );
    row(
        "fork storm: stop timeout 1000 ms → all gone",
        format!(
            "{stopped} ms (freeze + kill {} ms), {wall} ms until exit",
            stopped.saturating_sub(1000)
        ),
    );
    let left = live_with_marker(&d.marker).len();
    row("fork storm: survivors", format!("{left}"));
}

/// A CPU-bound perl fork bomb (3000 processes, capped by a pids cgroup) against a 6 s bound.
fn cpu_fork_bomb() {
    if !realtime_priority() || !perl_available() {
        row(
            "perl fork bomb (3000, pids cgroup)",
            "skipped: needs root and perl".into(),
        );
        return;
    }
    let Some(cage) = PidsCage::new("bench-bomb", 3000, Duration::from_secs(120)) else {
        row(
            "perl fork bomb (3000, pids cgroup)",
            "skipped: no pids cgroup".into(),
        );
        return;
    };
    let b = Daemon::builder("bench-bomb");
    let marker = b.dir().marker();
    let bomb = format!(
        "{} && exec perl -e 'while (1) {{ fork }}' {marker}",
        cage.enter()
    );
    let cfg = json!({ "shutdown_timeout_ms": 6000,
        "services": { "bomb": { "cmd": ["sh", "-c", bomb], "stop_timeout_ms": 2000 } } });
    let mut d = b.config(cfg).start();
    let grew = wait_until(Duration::from_secs(30), || cage.members().len() > 2500);
    let mut w = d.watch();
    let t0 = Instant::now();
    d.signal(libc::SIGTERM);
    let events = w.drain(Duration::from_secs(60));
    let code = d.wait_exit(Duration::from_secs(5)).map(code_of);
    let wall = t0.elapsed().as_millis();
    let left = cage.members().len();
    drop(cage);
    let reported = done_ms(&events);
    row(
        "perl fork bomb: 6000 ms bound, stop timeout 2000 ms",
        format!(
            "{reported} ms reported, {wall} ms until exit, exit {code:?}, {left} survivors{}",
            if grew {
                ""
            } else {
                " (storm did not fill its cage)"
            }
        ),
    );
}

/// The kill of a caged perl fork bomb (2000 tasks) at its 1000 ms stop timeout, by `stop`, with
/// the service in its own cgroup (freeze, `cgroup.kill`, `populated 0`) and with cgroups off
/// (SIGSTOP and SIGKILL per process, then a look at `/proc`): how long past the timeout until
/// the stop is over.
fn cgroup_kill() {
    if !realtime_priority() || !perl_available() {
        row(
            "fork bomb kill, cgroups",
            "skipped: needs root and perl".into(),
        );
        return;
    }
    for mode in ["auto", "off"] {
        let mut past = Vec::new();
        // From the timeout to the kill being issued (reapd), and from there to empty (kernel).
        let mut issued = Vec::new();
        let mut note = String::new();
        for _ in 0..3 {
            let Some(cage) = PidsCage::new("bench-cgkill", 2000, Duration::from_secs(60)) else {
                row("fork bomb kill, cgroups", "skipped: no pids cgroup".into());
                return;
            };
            let b = Daemon::builder("bench-cgkill").env("REAPD_LOG", "info");
            let marker = b.dir().marker();
            let bomb = format!(
                "{} && exec perl -e 'while (1) {{ fork }}' {marker}",
                cage.enter()
            );
            let cfg = json!({ "cgroups": mode, "services": { "bomb": {
                "cmd": ["sh", "-c", bomb], "stop_timeout_ms": 1000, "restart": "never" } } });
            let mut d = b.config(cfg).start();
            let contained = d.request(r#"{"cmd":"status"}"#)["cgroups"] == true;
            let grew = wait_until(Duration::from_secs(30), || cage.members().len() > 1500);
            let mut w = d.watch();
            let t0 = Instant::now();
            // A run whose stop is not answered within the client's wait is noted, not fatal.
            let reply = request_at(&d.socket, r#"{"cmd":"stop","name":"bomb"}"#)
                .unwrap_or_else(|e| json!({ "error": e }));
            let took = t0.elapsed().as_millis();
            let mut seen = Vec::new();
            let stopped = w.until(Duration::from_secs(5), &mut seen, |e| {
                e["event"] == "stopped"
            });
            let ts = |kind: &str| {
                seen.iter()
                    .find(|e| e["event"] == kind)
                    .and_then(|e| e["ts_ms"].as_u64())
            };
            if let (Some(begun), Some(killed), Some(end)) =
                (ts("stopping"), ts("killed"), ts("stopped"))
            {
                issued.push((
                    killed.saturating_sub(begun + 1000),
                    end.saturating_sub(killed),
                ));
            }
            let left = cage.members().len();
            drop(cage);
            past.push(took.saturating_sub(1000));
            note = format!(
                "{}{}, {left} left{}",
                if contained { "cgroup v2" } else { "/proc walk" },
                if stopped.is_some_and(|s| s["cgroup_empty"] == true) {
                    ", ended by populated 0"
                } else {
                    ""
                },
                if grew && reply["how"] == "killed" {
                    String::new()
                } else {
                    format!(" (storm did not fill its cage, or was not killed: {reply})")
                }
            );
            d.signal(libc::SIGTERM);
            let _ = d.wait_exit(Duration::from_secs(40));
        }
        past.sort_unstable();
        issued.sort_unstable();
        let (late, dying) = issued.get(issued.len() / 2).copied().unwrap_or_default();
        row(
            &format!("fork bomb (2000) kill past its 1000 ms timeout, cgroups {mode}"),
            format!(
                "median {} ms, worst {} ms of 3 ({note}); median run: kill issued {late} ms \
                 after the timeout, all gone {dying} ms later",
                past.get(1).copied().unwrap_or(0),
                past.last().copied().unwrap_or(0)
            ),
        );
    }
}

fn perl_available() -> bool {
    std::process::Command::new("perl")
        .arg("-e1")
        .status()
        .is_ok_and(|s| s.success())
}

/// How soon after exec a SIGTERM no longer kills reapd: the kernel's exec and the dynamic
/// loader run before reapd's first instruction blocks the signal.
fn startup_window() {
    let static_bin = format!(
        "{}/x86_64-unknown-linux-gnu/release/reapd",
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into())
    );
    for (name, bin) in [("dynamic", BIN.to_string()), ("static", static_bin)] {
        if !std::path::Path::new(&bin).exists() {
            continue;
        }
        let mut cells = Vec::new();
        for delay_us in [0u64, 100, 250, 500, 1000] {
            let runs = 20;
            let mut killed = 0;
            for _ in 0..runs {
                let mut child = std::process::Command::new(&bin)
                    .args(["--", "sleep", "5"])
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("spawn reapd");
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(delay_us) {}
                // SAFETY: kill by the pid of the child just spawned.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                let st = child.wait().expect("wait");
                if code_of(st) == 128 + libc::SIGTERM {
                    killed += 1;
                }
            }
            cells.push(format!("{delay_us}µs: {killed}/{runs}"));
        }
        row(
            &format!("SIGTERM after exec kills reapd ({name} binary)"),
            cells.join(", "),
        );
    }
}

fn budget() {
    let b = Daemon::builder("bench-budget");
    let svc = |log: &str, after: &[&str]| json!({ "cmd": chain_cmd(b.dir(), log, 1, "ignore"), "after": after, "stop_timeout_ms": 20000 });
    let cfg = json!({ "shutdown_timeout_ms": 6000, "services": { "a": svc("a.log", &[]), "b": svc("b.log", &["a"]), "c": svc("c.log", &["b"]) } });
    let mut d = b.config(cfg).start();
    let (wall, events) = shut_down(&mut d);
    row(
        "3 stubborn services in a row (20 s timeouts) in a 6000 ms bound",
        format!("{} ms reported, {wall} ms until exit", done_ms(&events)),
    );
}

fn ten_thousand() {
    let n = 10_000;
    let dir = TestDir::new("bench-10k");
    let path = dir.write("chain.json", &idle_services(n, true, "a").to_string());
    let best = (0..3)
        .map(|_| {
            let t0 = Instant::now();
            let run = check(&path);
            assert_eq!(run.code, Some(0), "{run:?}");
            t0.elapsed()
        })
        .min()
        .unwrap_or_default();
    row(
        "check of a 10 000-service chain (best of 3)",
        format!("{} ms", best.as_millis()),
    );
    let t0 = Instant::now();
    let mut d = Daemon::builder_in(dir)
        .config(idle_services(n, true, "a"))
        .start();
    row(
        "start-up with a 10 000-service chain, until ping answers",
        format!("{} ms", t0.elapsed().as_millis()),
    );
    let reload = |d: &Daemon, what: &str| {
        let t0 = Instant::now();
        let v = d.request(r#"{"cmd":"reload"}"#);
        let took = t0.elapsed();
        assert_eq!(v["ok"], true, "{v}");
        row(
            &format!("reload of a 10 000-service chain, {what}"),
            format!("{} ms", took.as_millis()),
        );
    };
    reload(&d, "unchanged");
    d.rewrite_config(idle_services(n, true, "b"));
    reload(&d, "every service changed");
    let (wall, events) = shut_down(&mut d);
    row(
        "shutdown of a 10 000-service chain (a path of 10 000, no process)",
        format!("{} ms reported, {wall} ms until exit", done_ms(&events)),
    );
}

fn main() {
    // `cargo test --all-targets` runs benchmarks once as tests: only `cargo bench` measures.
    if !std::env::args().any(|a| a == "--bench") {
        println!("run `scripts/bench` (cargo bench) to measure");
        return;
    }
    // REAPD_BENCH=chain,storm runs only the sections named (see `SECTIONS`).
    let only = std::env::var("REAPD_BENCH").ok();
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|w| w.trim() == name))
    };
    println!("{:<58} value", "measure");
    for (name, section) in SECTIONS {
        if wanted(name) {
            section();
        }
    }
}

/// Every section of the table, by the name `REAPD_BENCH` selects it with.
const SECTIONS: &[(&str, fn())] = &[
    ("sizes", sizes),
    ("idle", idle_and_memory),
    ("run", run_side),
    ("throughput", throughput),
    ("hostile", hostile_clients),
    ("services", many_services),
    ("chain", chain_levels),
    ("trees", trees),
    ("deep", deep_chain),
    ("storm", fork_storm),
    ("bomb", cpu_fork_bomb),
    ("cgroups", cgroup_kill),
    ("budget", budget),
    ("ten_thousand", ten_thousand),
    ("startup", startup_window),
    ("logs", logs::prefixed_logs),
];

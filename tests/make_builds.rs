//! Real GNU make builds stopped in the middle: a recursive `make -j4` starts jobs all the time,
//! so a stop lands while make is forking one. make does not pass SIGINT or SIGTERM on to its
//! jobs (the terminal sends them to the whole process group); it waits for them, removes their
//! targets and exits. A job missed by the stop would keep make waiting until the kill: every stop
//! must end with `how: exited`, never `killed`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Stops per signal.
const RUNS: u32 = 50;

/// A top-level makefile that runs four sub-makes under one jobserver, each building 300 targets
/// of 20 ms: make starts a job somewhere about every 5 ms.
fn write_build(dir: &TestDir) {
    for sub in ["build", "build/a", "build/b", "build/c", "build/d"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    let top = "SUBS := a b c d\nall: $(SUBS)\n$(SUBS):\n\t@$(MAKE) -s -C $@\n.PHONY: all $(SUBS)\n";
    dir.write("build/Makefile", top);
    let sub =
        "N := $(shell seq 1 300)\nall: $(addprefix t,$(N))\nt%:\n\t@sleep 0.02\n.PHONY: all\n";
    for s in ["a", "b", "c", "d"] {
        dir.write(&format!("build/{s}/Makefile"), sub);
    }
}

fn stops_gracefully_every_time(signal: &str) {
    if !require_tool("make") {
        return;
    }
    let b = Daemon::builder(&format!("make-{signal}"));
    write_build(b.dir());
    let build_dir = b.dir().join("build");
    let cfg = json!({ "services": { "build": {
        "cmd": ["make", "-s", "-j4", "-C", build_dir],
        "restart": "never",
        "stop_signal": signal,
        "stop_timeout_ms": 10000,
    }}});
    let mut d = b.config(cfg).start();
    let mut outcomes = Vec::new();
    for run in 0..RUNS {
        // Every stop lands at another point of the build: after 60 to 250 ms.
        let started = wait_until(SOON, || {
            d.services_procs()
                .iter()
                .any(|p| p.cmdline.starts_with("sleep"))
        });
        assert!(started, "run {run}: no job started\n{}", d.log());
        std::thread::sleep(Duration::from_millis(60 + u64::from(run * 37 % 190)));
        let reply = d.request(r#"{"cmd":"stop","name":"build"}"#);
        assert_eq!(reply["ok"], true, "run {run}: {reply}");
        outcomes.push(reply["how"].as_str().unwrap_or("?").to_string());
        let reply = d.request(r#"{"cmd":"start","name":"build"}"#);
        assert_eq!(reply["state"], "running", "run {run}: {reply}");
    }
    let killed: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, how)| *how != "exited")
        .map(|(i, _)| i)
        .collect();
    assert!(
        killed.is_empty(),
        "{signal}: runs {killed:?} of {RUNS} did not stop gracefully: {outcomes:?}\n{}",
        d.log()
    );
    let events = d.signal_and_watch(libc::SIGTERM);
    assert_eq!(done_event(&events)["clean"], true);
    d.assert_clean_exit();
}

#[test]
fn a_recursive_make_stopped_with_sigint_always_exits_before_its_timeout() {
    stops_gracefully_every_time("SIGINT");
}

#[test]
fn a_recursive_make_stopped_with_sigterm_always_exits_before_its_timeout() {
    stops_gracefully_every_time("SIGTERM");
}

//! The fixtures in `tests/fixtures` and the logs they write. `chain.sh` logs
//! `level N pid P started T`, `level N got TERM T` and `level N exiting T`; `slowstop.sh` logs
//! `NAME started T`, `NAME got TERM T` and `NAME exiting T` (T in seconds, `$EPOCHREALTIME`).
//! Also the configs several tests share. Must never read reapd's own log: these are what the
//! processes themselves recorded.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde_json::{Value, json};

use super::dirs::{TestDir, fixture};
use super::{SOON, wait_until};

/// The argv of a `chain.sh` tree of `levels` processes logging to `log` in `dir`; `mode` is
/// `exit` (each level exits on SIGTERM) or `ignore`.
pub fn chain_cmd(dir: &TestDir, log: &str, levels: u32, mode: &str) -> Value {
    json!([
        fixture("chain.sh"),
        "1",
        levels.to_string(),
        dir.join(log),
        mode
    ])
}

/// The argv of a `tree.sh` service: a tree `depth` levels deep, each node above the last with
/// `fanout` children, logging to `log` (times by node path, see [`named_times`]).
pub fn tree_cmd(dir: &TestDir, log: &str, depth: u32, fanout: u32) -> Value {
    json!([
        fixture("tree.sh"),
        "1",
        depth.to_string(),
        fanout.to_string(),
        dir.join(log)
    ])
}

/// Nodes of a `tree.sh` tree: 1 + fanout + fanout² + ... over `depth` levels.
pub fn tree_size(depth: u32, fanout: u32) -> usize {
    (0..depth).map(|l| (fanout as usize).pow(l)).sum()
}

/// The argv of a `slowstop.sh` service `name` that takes `delay` seconds to stop.
pub fn slowstop_cmd(dir: &TestDir, name: &str, delay: &str, log: &str) -> Value {
    json!([fixture("slowstop.sh"), name, delay, dir.join(log)])
}

/// A config of two services: `db` (one `sleep 1000`) and `web` after it (a shell that leaves a
/// `sleep 1000` child and execs another): three processes, web stopped before db.
pub fn db_and_web() -> Value {
    json!({ "services": {
        "db": { "cmd": ["sleep", "1000"] },
        "web": { "after": ["db"], "cmd": ["sh", "-c", "sleep 1000 & exec sleep 1000"] },
    }})
}

/// A config of `n` services `s000`, `s001`, ... each running `sleep 1000`.
pub fn sleepers(n: usize) -> Value {
    let services: serde_json::Map<String, Value> = (0..n)
        .map(|i| (format!("s{i:03}"), json!({ "cmd": ["sleep", "1000"] })))
        .collect();
    json!({ "services": services })
}

/// A config of `n` services `s00000`, `s00001`, ... that need no process: each one's working
/// directory is missing, so its spawn fails inside reapd, and `never` keeps it down. With
/// `chain`, each starts after the one before (one path of `n` services in the stop graph). `arg` is their
/// command's argument: two such configs with different ones differ in every service.
pub fn idle_services(n: usize, chain: bool, arg: &str) -> Value {
    let services: serde_json::Map<String, Value> = (0..n)
        .map(|i| {
            let mut s = json!({
                "cmd": ["true", arg], "cwd": "/nonexistent/reapd-test", "restart": "never"
            });
            if chain && i > 0 {
                s["after"] = json!([format!("s{:05}", i - 1)]);
            }
            (format!("s{i:05}"), s)
        })
        .collect();
    json!({ "services": services })
}

/// Key (field `key` of the line) → time of its first line containing `kind`.
fn first_times<K: FromStr + Ord>(text: &str, kind: &str, key: usize) -> BTreeMap<K, f64> {
    let mut out = BTreeMap::new();
    for l in text.lines().filter(|l| l.contains(kind)) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let (Some(k), Some(t)) = (
            f.get(key).and_then(|s| s.parse().ok()),
            f.last().and_then(|s| s.parse().ok()),
        ) {
            out.entry(k).or_insert(t);
        }
    }
    out
}

/// From a `chain.sh` log: level → time of its first line containing `kind` ("started",
/// "got TERM", "exiting").
pub fn chain_times(text: &str, kind: &str) -> BTreeMap<u32, f64> {
    first_times(text, kind, 1)
}

/// From a `slowstop.sh` log: name → time of its first line containing `kind`.
pub fn named_times(text: &str, kind: &str) -> BTreeMap<String, f64> {
    first_times(text, kind, 0)
}

/// From a `chain.sh` log: level → pid.
pub fn level_pids(text: &str) -> BTreeMap<u32, i32> {
    text.lines()
        .filter(|l| l.contains(" started "))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(1)?.parse().ok()?, f.get(3)?.parse().ok()?))
        })
        .collect()
}

/// Waits until all `levels` levels of the `chain.sh` tree logging to `log` in `dir` started.
pub fn wait_chain_started(dir: &TestDir, log: &str, levels: usize) {
    assert!(
        wait_until(SOON, || chain_times(&dir.read(log), "started").len()
            == levels),
        "{log}: not all {levels} levels started:\n{}",
        dir.read(log)
    );
}

/// Lines of a fixture log that contain `needle`.
pub fn lines_with(text: &str, needle: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

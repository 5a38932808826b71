//! Collecting children and looking at `/proc` at the cost of reapd's own tree: hundreds of
//! orphans ending at once are all reaped (past the first few, by pid), and a stop reads reapd's
//! tree alone where the kernel lists each process's children.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::json;

#[test]
fn hundreds_of_zombies_handed_to_reapd_at_once_are_all_reaped() {
    // The main process (an exec'd `sleep`) never reaps the 300 children its shell left: they
    // end as zombies, and come back to reapd all at once when it exits, one SIGCHLD for them all.
    let cfg = json!({ "services": { "burst": {
        "cmd": ["sh", "-c", "for i in $(seq 300); do sleep 0.2 & done; exec sleep 2"],
        "restart": "never",
        "leftovers": "keep"
    } } });
    let mut d = Daemon::builder("reap-burst").config(cfg).start();
    let main = wait_until(Duration::from_secs(30), || d.pid_of("burst").is_some());
    assert!(main, "burst never started:\n{}", d.log());
    let pid = d.pid_of("burst").unwrap_or(0);
    let piled = wait_until(Duration::from_secs(30), || zombies_of(pid).len() >= 250);
    assert!(
        piled,
        "the children did not end as zombies of the main process"
    );
    let gone = wait_until(Duration::from_secs(30), || {
        d.service("burst").is_some_and(|s| s["state"] != "running")
            && zombies_of(d.pid()).is_empty()
            && children_of(d.pid()).is_empty()
    });
    assert!(
        gone,
        "children left unreaped: {} zombies\n{}",
        zombies_of(d.pid()).len(),
        d.log()
    );
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
}

#[test]
fn a_stop_reads_reapds_tree_alone_where_the_kernel_lists_children() {
    let me = std::process::id();
    let lists = Path::new(&format!("/proc/{me}/task/{me}/children")).exists();
    if !require(
        lists,
        "the kernel's /proc/PID/task/TID/children lists (CONFIG_PROC_CHILDREN)",
    ) {
        return;
    }
    let b = Daemon::builder("reap-walk").env("REAPD_LOG", "trace");
    let cfg = json!({ "services": { "t": { "cmd": tree_cmd(b.dir(), "tree.log", 3, 2) } } });
    let mut d = b.config(cfg).start();
    let up = wait_until(Duration::from_secs(30), || {
        named_times(&d.dir.read("tree.log"), "started").len() == 7
    });
    assert!(up, "the tree did not start:\n{}", d.log());
    d.signal(libc::SIGTERM);
    d.assert_clean_exit();
    let log = d.log();
    assert!(
        log.contains("walk of reapd's tree"),
        "a small tree on a machine with more processes is read alone:\n{log}"
    );
    // Bottom-up all the same: every node exited before its parent got the signal.
    let text = d.dir.read("tree.log");
    let term = named_times(&text, "got TERM");
    let exit = named_times(&text, "exiting");
    for (id, t) in &term {
        for (child, e) in &exit {
            if child.rsplit_once('.').map(|(parent, _)| parent) == Some(id.as_str()) {
                assert!(e < t, "{child} exited after {id} got TERM:\n{text}");
            }
        }
    }
}

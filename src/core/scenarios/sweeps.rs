//! The final sweep: after the waves, reapd kills orphans of no service, processes listening on
//! a service's `ports` and processes whose command line contains a service's `match` string —
//! never PID 1, reapd or one of its ancestors.

use nix::sys::signal::Signal;

use super::{ms, secs};
use crate::core::proctree::{Pid, ProcInfo};
use crate::core::sim::{ME, Quirks, Shape, World};
use crate::wire::events::Event;

/// The sweep's finds: (pid, command line, reason).
fn swept(w: &World) -> Vec<(Pid, String, String)> {
    w.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Sweep {
                pid,
                cmdline,
                reason,
            } => Some((*pid, cmdline.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

fn shutdown(w: &mut World) {
    w.start();
    w.signal(Signal::SIGTERM);
    w.run_to_exit();
}

#[test]
fn orphans_are_stopped_with_their_service_or_as_the_shutdown_begins() {
    let mut w = World::new(r#"{"services": {"web": {"cmd": ["x"]}}}"#);
    w.start();
    // Reparented to reapd with only the marker to go on; and two with no clue at all.
    let ours = w.k.new_proc(ME, 5555, Some("web"), Quirks::DEAF);
    let stray = w.k.new_proc(ME, 6666, None, Quirks::PLAIN);
    let deaf_stray = w.k.new_proc(ME, 7777, None, Quirks::DEAF);
    w.signal(Signal::SIGTERM);
    w.run_to_exit();
    assert_eq!(w.exit_code(), 0);
    let terms = w.signalled_with(Signal::SIGTERM);
    assert!(
        terms.contains(&ours.pid),
        "stopped gracefully as part of web"
    );
    assert!(w.events().iter().any(|e| matches!(e,
        Event::Killed { service: Some(s), pids, .. } if s == "web" && pids == &vec![ours.pid])));
    // Unknown orphans are asked to stop as the shutdown begins, and killed after the default
    // stop timeout.
    assert!(terms.contains(&stray.pid) && terms.contains(&deaf_stray.pid));
    assert!(w.alive().is_empty());
    assert!(w.events().iter().any(|e| matches!(e,
        Event::Killed { service: None, pids, .. } if pids == &vec![deaf_stray.pid])));
}

#[test]
fn without_services_orphans_of_nobody_are_still_asked_before_they_are_killed() {
    let mut w = World::new(r#"{"services": {}}"#);
    w.start();
    assert_eq!(w.names(), ["no_services"]);
    let stray = w.k.new_proc(ME, 6666, None, Quirks::DEAF);
    w.signal(Signal::SIGTERM);
    w.run_to_exit();
    assert_eq!(
        w.signals_to(stray.pid),
        [
            Signal::SIGSTOP,
            Signal::SIGTERM,
            Signal::SIGCONT,
            Signal::SIGSTOP,
            Signal::SIGKILL
        ]
    );
    // After the default stop timeout of 10 s.
    assert_eq!(w.signalled_at(stray.pid, Signal::SIGKILL), Some(secs(10)));
    assert!(swept(&w).is_empty(), "nothing left for the sweep");
    assert_eq!(w.exited(), Some((0, secs(10))));
}

#[test]
fn an_orphan_of_nobody_found_only_at_the_end_is_swept() {
    let mut w = World::new(r#"{"services": {"a": {"cmd": ["a"], "stop_timeout_ms": 1000}}}"#);
    w.shape("a", Shape::deaf());
    w.start();
    w.signal(Signal::SIGTERM);
    // Reparented to reapd while the shutdown runs, after the orphans were asked.
    w.run_to(ms(500));
    let stray = w.k.new_proc(ME, 6666, None, Quirks::DEAF);
    w.run_to_exit();
    // (Its command line is not read: an orphan may be forking, and reading it would wait for
    // its memory-map lock. It is named by its command name.)
    assert_eq!(
        swept(&w),
        [(
            stray.pid,
            "[fake]".into(),
            "orphan reparented to reapd, belonging to no service".into()
        )]
    );
    assert_eq!(w.signals_to(stray.pid), [Signal::SIGSTOP, Signal::SIGKILL]);
    assert_eq!(w.exit_code(), 0);
}

#[test]
fn processes_listening_on_a_services_ports_are_swept_with_their_children() {
    let mut w = World::new(r#"{"services": {"web": {"cmd": ["web"], "ports": [8080]}}}"#);
    let squatter = w.foreign("old-web --port 8080", Quirks::DEAF);
    let its_child = w.k.new_proc(squatter.pid, squatter.pid, None, Quirks::DEAF);
    let neighbour = w.foreign("db --port 5432", Quirks::PLAIN);
    w.listen(squatter.pid, 8080);
    w.listen(neighbour.pid, 5432);
    shutdown(&mut w);
    assert_eq!(
        swept(&w),
        [(
            squatter.pid,
            "[fake]".into(),
            "listening on port 8080 of service web".into()
        )]
    );
    // Frozen top-down, killed deepest first.
    let order: Vec<(Pid, Signal)> =
        w.k.signals
            .iter()
            .filter(|(_, p, _)| [squatter.pid, its_child.pid].contains(p))
            .map(|(_, p, s)| (*p, *s))
            .collect();
    assert_eq!(
        order,
        [
            (squatter.pid, Signal::SIGSTOP),
            (its_child.pid, Signal::SIGSTOP),
            (its_child.pid, Signal::SIGKILL),
            (squatter.pid, Signal::SIGKILL)
        ]
    );
    assert!(w.signals_to(neighbour.pid).is_empty());
    assert!(w.lives(neighbour.pid) && !w.lives(squatter.pid) && !w.lives(its_child.pid));
    assert_eq!(w.exit_code(), 0);
}

#[test]
fn processes_whose_command_line_matches_a_services_match_string_are_swept() {
    let mut w = World::new(
        r#"{"services": {"web": {"cmd": ["web"], "match": ["web-worker"]}, "db": {"cmd": ["db"]}}}"#,
    );
    w.shape("web", Shape::fan(1));
    let escaped = w.foreign("/usr/bin/web-worker --id 3", Quirks::DEAF);
    let other = w.foreign("/usr/bin/webworker", Quirks::PLAIN);
    shutdown(&mut w);
    assert_eq!(
        swept(&w),
        [(
            escaped.pid,
            "/usr/bin/web-worker --id 3".into(),
            r#"command line matches "web-worker" of service web"#.into()
        )]
    );
    assert_eq!(
        w.signals_to(escaped.pid),
        [Signal::SIGSTOP, Signal::SIGKILL]
    );
    assert!(w.signals_to(other.pid).is_empty());
    assert_eq!(w.exit_code(), 0);
}

#[test]
fn the_sweep_never_touches_pid_1_reapd_or_its_ancestors() {
    let mut w = World::new(
        r#"{"services": {"web": {"cmd": ["web"], "ports": [8080], "match": ["web-worker"]}}}"#,
    );
    // init and the shell that started reapd both match, and so does reapd itself.
    let proc = |pid: Pid, ppid: Pid, cmdline: &str| ProcInfo {
        pid,
        ppid,
        pgid: pid,
        sid: pid,
        start: 5,
        state: 'S',
        threads: 1,
        comm: "sh".into(),
        marker: None,
        cmdline: Some(cmdline.into()),
    };
    w.k.add(proc(1, 0, "/sbin/init web-worker"), Quirks::PLAIN);
    w.k.add(proc(900, 1, "sh -c 'reapd; web-worker'"), Quirks::PLAIN);
    if let Some((me, _)) = w.k.procs.get_mut(&ME) {
        me.ppid = 900;
        me.cmdline = Some("reapd --config web-worker.json".into());
    }
    for pid in [1, 900, ME] {
        w.listen(pid, 8080);
    }
    let real = w.foreign("web-worker", Quirks::PLAIN);
    shutdown(&mut w);
    assert_eq!(
        swept(&w).iter().map(|s| s.0).collect::<Vec<_>>(),
        [real.pid]
    );
    for pid in [1, 900, ME] {
        assert!(w.signals_to(pid).is_empty(), "{pid} was signalled");
    }
    assert_eq!(w.exit_code(), 0);
}

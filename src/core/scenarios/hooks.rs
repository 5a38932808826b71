//! Cleanup hooks: run one after another once every process is gone, each within a fair share of
//! what is left of the bound; one that fails or overruns makes the exit status 1 and the rest
//! still run. With a 12 s bound the hooks must end by 11.8 s, less a kill margin of 250 ms.

use nix::sys::signal::Signal;

use super::{ms, secs};
use crate::core::io::Spawnee;
use crate::core::sim::{Quirks, Shape, World};
use crate::wire::events::{Event, ExitStatus};

fn world(hooks: usize) -> World {
    let cleanup: Vec<String> = (0..hooks).map(|i| format!(r#"["h{i}"]"#)).collect();
    World::new(&format!(
        r#"{{"shutdown_timeout_ms": 12000, "services": {{"a": {{"cmd": ["a"], "stop_timeout_ms": 1000}}}},
            "cleanup": [{}]}}"#,
        cleanup.join(", ")
    ))
}

fn hook(w: &mut World, i: usize, shape: Shape) {
    w.shape(&format!("cleanup[{i}]"), shape);
}

/// Each hook's share (`limit_ms`), in order.
fn limits(w: &World) -> Vec<u64> {
    w.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::CleanupStarted { limit_ms, .. } => Some(*limit_ms),
            _ => None,
        })
        .collect()
}

/// Each hook's outcome: (index, ok, result).
fn outcomes(w: &World) -> Vec<(usize, bool, String)> {
    w.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Cleanup {
                index, ok, result, ..
            } => Some((*index, *ok, result.clone())),
            _ => None,
        })
        .collect()
}

fn ok(i: usize) -> (usize, bool, String) {
    (i, true, "exit 0".into())
}

fn shutdown(w: &mut World) {
    w.start();
    w.signal(Signal::SIGTERM);
    w.run_to_exit();
}

#[test]
fn hooks_run_once_every_process_is_gone() {
    let mut w = world(1);
    w.shape(
        "a",
        Shape::parent_of(Quirks::slow(ms(500)), Quirks::slow(ms(300))),
    );
    hook(
        &mut w,
        0,
        Shape::lone(Quirks::lives(ms(500), ExitStatus::Code(0))),
    );
    shutdown(&mut w);
    let launch = w.k.launches.last().expect("a launch");
    assert_eq!(
        (&launch.who, &launch.cmd),
        (&Spawnee::Hook(0), &vec!["h0".to_string()])
    );
    assert!(
        launch.company.is_empty(),
        "nothing else lives: {:?}",
        launch.company
    );
    // The child exits at 300 ms, its parent gets the signal at once and takes 500 ms.
    assert_eq!(w.stopped("a"), Some(("exited".into(), ms(800))));
    assert_eq!(launch.at - w.t0, ms(800));
    assert_eq!(outcomes(&w), [ok(0)]);
    assert_eq!(w.exited(), Some((0, ms(1300))));
}

#[test]
fn each_hook_gets_a_fair_share_of_what_is_left() {
    let mut w = world(3);
    for i in 0..3 {
        hook(
            &mut w,
            i,
            Shape::lone(Quirks::lives(secs(1), ExitStatus::Code(0))),
        );
    }
    shutdown(&mut w);
    // 11.8 s less 250 ms over three; then 10.8 s less 250 ms over two; then 9.8 s less 250 ms.
    assert_eq!(limits(&w), [3850, 5275, 9550]);
    assert_eq!(outcomes(&w), [ok(0), ok(1), ok(2)]);
    assert_eq!(w.exited(), Some((0, secs(3))));
}

#[test]
fn an_overrunning_hook_is_killed_and_the_next_one_still_runs() {
    let mut w = world(2);
    hook(&mut w, 0, Shape::deaf());
    hook(
        &mut w,
        1,
        Shape::lone(Quirks::lives(secs(1), ExitStatus::Code(0))),
    );
    shutdown(&mut w);
    let first =
        w.k.launches
            .iter()
            .find(|l| l.who == Spawnee::Hook(0))
            .expect("h0")
            .pid;
    assert_eq!(
        w.when(|e| matches!(e, Event::CleanupOverran { index: 0 })),
        ms(5775)
    );
    assert_eq!(w.signalled_at(first, Signal::SIGKILL), Some(ms(5775)));
    assert_eq!(
        outcomes(&w),
        [
            (
                0,
                false,
                "killed: ran past its share of the shutdown bound".into()
            ),
            ok(1)
        ]
    );
    assert_eq!(limits(&w), [5775, 5775]);
    assert_eq!(w.exited(), Some((1, ms(6775))));
    assert_eq!(
        w.failures(),
        ["cleanup[0] h0: killed: ran past its share of the shutdown bound"]
    );
}

#[test]
fn a_failing_hook_makes_the_exit_status_1_and_the_rest_still_run() {
    let mut w = world(2);
    hook(
        &mut w,
        0,
        Shape::lone(Quirks::lives(ms(500), ExitStatus::Code(3))),
    );
    hook(
        &mut w,
        1,
        Shape::lone(Quirks::lives(ms(500), ExitStatus::Code(0))),
    );
    shutdown(&mut w);
    assert_eq!(outcomes(&w), [(0, false, "exit 3".into()), ok(1)]);
    assert_eq!(w.failures(), ["cleanup[0] h0: exit 3"]);
    assert_eq!(w.exited(), Some((1, secs(1))));
}

#[test]
fn a_hook_that_cannot_be_started_fails_and_the_rest_still_run() {
    let mut w = world(2);
    w.k.unspawnable.push("cleanup[0]".into());
    hook(
        &mut w,
        1,
        Shape::lone(Quirks::lives(ms(500), ExitStatus::Code(0))),
    );
    shutdown(&mut w);
    assert_eq!(
        outcomes(&w),
        [(0, false, "cannot start: no such file".into()), ok(1)]
    );
    assert_eq!(w.exit_code(), 1);
}

#[test]
fn hooks_never_started_by_the_bound_count_as_failures() {
    let mut w = world(2);
    hook(&mut w, 0, Shape::lone(Quirks::STUCK));
    shutdown(&mut w);
    let stuck =
        w.k.launches
            .iter()
            .find(|l| l.who == Spawnee::Hook(0))
            .expect("h0")
            .pid;
    assert_eq!(w.count("cleanup_started"), 1, "the second never starts");
    assert_eq!(
        w.failures(),
        [
            "cleanup[0] h0: killed: ran past its share of the shutdown bound",
            "1 cleanup command(s) not run: no time left"
        ]
    );
    let Some(Event::Done { survivors, .. }) = w.done() else {
        panic!()
    };
    assert_eq!(survivors.iter().map(|s| s.pid).collect::<Vec<_>>(), [stuck]);
    assert_eq!(w.exited(), Some((1, ms(11800))));
}

#[test]
fn what_a_hook_leaves_running_is_killed() {
    let mut w = world(1);
    hook(
        &mut w,
        0,
        Shape::parent_of(Quirks::lives(ms(100), ExitStatus::Code(0)), Quirks::DEAF),
    );
    shutdown(&mut w);
    let left = w.k.launches.last().expect("h0").pid + 1;
    assert_eq!(w.signalled_at(left, Signal::SIGKILL), Some(ms(100)));
    assert!(w.ours().is_empty());
    assert_eq!(outcomes(&w), [ok(0)], "the hook itself succeeded");
    assert_eq!(w.exited(), Some((0, ms(100))));
}

#[test]
fn hooks_get_half_of_what_is_left_after_a_kill_that_cannot_finish() {
    let mut w = World::new(
        r#"{"shutdown_timeout_ms": 12000, "services": {"a": {"cmd": ["a"], "ports": [8080]}},
            "cleanup": [["h0"]]}"#,
    );
    // Someone else's process on a's port, which not even SIGKILL ends: the sweep takes it.
    let squatter = w.foreign("squatter", Quirks::STUCK);
    w.listen(squatter.pid, 8080);
    hook(
        &mut w,
        0,
        Shape::lone(Quirks::lives(ms(100), ExitStatus::Code(0))),
    );
    shutdown(&mut w);
    // Killing begins at once and may take half of what is left before the hard deadline
    // (11.8 s / 2); the hooks get the rest, less a kill margin of 250 ms.
    assert_eq!(w.signalled_at(squatter.pid, Signal::SIGKILL), Some(ms(0)));
    assert_eq!(w.when(|e| e.name() == "cleanup_started"), ms(5900));
    assert_eq!(limits(&w), [5650]);
    assert_eq!(outcomes(&w), [ok(0)]);
    let Some(Event::Done {
        survivors,
        failures,
        ..
    }) = w.done()
    else {
        panic!()
    };
    assert_eq!(
        survivors.iter().map(|s| s.pid).collect::<Vec<_>>(),
        [squatter.pid]
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(w.exited(), Some((1, ms(6000))));
}

/// A service process that survives SIGKILL (uninterruptible sleep) is still alive when the
/// cleanup hooks run. A hook that exits 0 at once must be reported as succeeded then, and its
/// leftover check must not take the service's process for the hook's.
#[test]
fn a_services_unkillable_process_does_not_make_a_successful_hook_fail() {
    let mut w = World::new(
        r#"{"shutdown_timeout_ms": 12000, "services": {"a": {"cmd": ["a"], "stop_timeout_ms": 1000}},
            "cleanup": [["h0"]]}"#,
    );
    w.shape("a", Shape::parent_of(Quirks::DEAF, Quirks::STUCK));
    w.shape(
        "cleanup[0]",
        Shape::lone(Quirks::lives(ms(100), ExitStatus::Code(0))),
    );
    w.start();
    let stuck = w.k.children_of(w.main_of("a"))[0];
    w.signal(Signal::SIGTERM);
    w.run_to_exit();
    // The hook starts at 11.3 s (the stuck process holds its wave to the end of the drain
    // budget, 10.8 s; killing takes half of the rest) and exits 0 at 11.4 s.
    assert_eq!(w.when(|e| e.name() == "cleanup_started"), ms(11300));
    let hook_done = w.first(|e| e.name() == "cleanup");
    assert!(
        matches!(hook_done, Some((at, Event::Cleanup { ok: true, .. })) if at == ms(11400)),
        "{hook_done:?}"
    );
    assert!(
        !w.events().iter().any(
            |e| matches!(e, Event::Killed { service: None, pids, .. } if pids.contains(&stuck))
        ),
        "not the hook's leftover"
    );
    assert!(w.failures().is_empty(), "{:?}", w.failures());
    assert_eq!(w.exited(), Some((1, ms(11400))), "1 for the survivor only");
}

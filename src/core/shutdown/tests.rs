//! The shutdown machine and the stop graph on virtual time.

use super::*;
use crate::core::sim::epoch;
use graph::share;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn spec(name: &str, after: &[&str], timeout_ms: u64) -> StopSpec {
    StopSpec {
        name: name.into(),
        after: after.iter().map(|s| s.to_string()).collect(),
        stop_timeout: ms(timeout_ms),
    }
}

fn names(ready: &[(String, Instant)]) -> Vec<&str> {
    ready.iter().map(|(n, _)| n.as_str()).collect()
}

fn stops(steps: &[Step]) -> Vec<(String, Instant)> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::StopServices(list) => Some(list.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn a_service_begins_to_stop_once_everything_that_depends_on_it_is_gone() {
    let t0 = epoch();
    let specs = [
        spec("db", &[], 1_000),
        spec("web", &["db"], 1_000),
        spec("proxy", &["web"], 1_000),
        spec("worker", &["db"], 1_000),
        spec("cron", &[], 1_000),
    ];
    let mut g = StopGraph::new(&specs, ms(27_300));
    let drain = t0 + ms(27_300);
    assert_eq!(names(&g.ready(t0, drain)), ["cron", "proxy", "worker"]);
    assert!(g.stopped("worker"));
    assert!(g.ready(t0, drain).is_empty(), "db still waits for web");
    assert!(g.stopped("proxy"));
    assert_eq!(names(&g.ready(t0, drain)), ["web"]);
    assert!(g.stopped("web"));
    assert_eq!(names(&g.ready(t0, drain)), ["db"], "cron is not in its way");
    assert!(!g.stopped("web"), "told twice: no effect");
    assert!(!g.stopped("nosuch"));
    assert!(g.stopped("db") && g.stopped("cron"));
    assert!(g.all_stopped());
}

#[test]
fn a_stubborn_service_holds_back_only_what_depends_on_it() {
    let t0 = epoch();
    // slow ← a (a starts after slow); b ← c, unrelated.
    let specs = [
        spec("slow", &[], 20_000),
        spec("a", &["slow"], 20_000),
        spec("c", &[], 1_000),
        spec("b", &["c"], 1_000),
    ];
    let mut g = StopGraph::new(&specs, ms(10_000));
    let first = g.ready(t0, t0 + ms(10_000));
    assert_eq!(names(&first), ["a", "b"]);
    // b's path (b, c) fits: b gets its own second. a's path (a, slow) does not: half each.
    assert_eq!(first[0].1, t0 + ms(5_000));
    assert_eq!(first[1].1, t0 + ms(1_000));
    assert!(g.stopped("b"));
    let next = g.ready(t0 + ms(10), t0 + ms(10_000));
    assert_eq!(names(&next), ["c"], "c goes at once, not after a's share");
}

#[test]
fn time_a_service_does_not_use_passes_on_to_the_services_after_it() {
    let t0 = epoch();
    let specs = [spec("db", &[], 20_000), spec("web", &["db"], 20_000)];
    let mut g = StopGraph::new(&specs, ms(27_300));
    let drain = t0 + ms(27_300);
    assert_eq!(g.ready(t0, drain), [("web".to_string(), t0 + ms(13_650))]);
    assert!(g.stopped("web"));
    // web took one second: db gets its own 20 s, which still fits.
    assert_eq!(
        g.ready(t0 + ms(1_000), drain),
        [("db".to_string(), t0 + ms(21_000))]
    );
}

#[test]
fn the_share_rule() {
    let s = |r, rest, levels, left| share(ms(r), ms(rest), levels, ms(left)).as_millis();
    assert_eq!(s(10_000, 17_000, 2, 27_300), 10_000, "the path fits");
    assert_eq!(s(20_000, 20_000, 2, 27_300), 13_650, "an equal share");
    assert_eq!(
        s(20_000, 1_000, 2, 10_000),
        9_000,
        "more when the rest needs less"
    );
    assert_eq!(s(1_000, 40_000, 3, 10_800), 1_000, "never more than asked");
    assert_eq!(s(5_000, 0, 1, 2_000), 2_000, "never more than left");
    assert_eq!(s(5_000, 0, 0, 2_000), 2_000, "levels of 0 mean 1");
}

#[test]
fn every_path_fits_the_drain_if_every_service_takes_its_whole_share() {
    // A diamond, a long chain and a loner, with requests far over the budget.
    let mut specs = vec![
        spec("top", &["l", "r"], 30_000),
        spec("l", &["bottom"], 5_000),
        spec("r", &["bottom"], 30_000),
        spec("bottom", &[], 30_000),
        spec("alone", &[], 60_000),
    ];
    for i in 0..20 {
        let after: Vec<String> = if i == 0 {
            vec![]
        } else {
            vec![format!("c{:02}", i - 1)]
        };
        specs.push(StopSpec {
            name: format!("c{i:02}"),
            after,
            stop_timeout: ms(10_000),
        });
    }
    let available = ms(10_800);
    let plan = StopGraph::new(&specs, available).plan(ms(12_000), ms(1_000), available);
    assert_eq!(plan.stops.len(), specs.len());
    for s in &plan.stops {
        assert!(
            s.starts + s.share <= available,
            "{} ends at {:?}",
            s.service,
            s.starts + s.share
        );
        assert!(s.share > Duration::ZERO, "{} gets no time", s.service);
    }
    let bottom = plan
        .stops
        .iter()
        .find(|s| s.service == "bottom")
        .expect("bottom");
    assert_eq!(bottom.after, ["l", "r"]);
}

#[test]
fn a_chain_of_ten_thousand_is_planned_and_run_without_recursion() {
    let t0 = epoch();
    let names: Vec<String> = (0..10_000).map(|i| format!("s{i:05}")).collect();
    let specs: Vec<StopSpec> = names
        .iter()
        .enumerate()
        .map(|(i, n)| StopSpec {
            name: n.clone(),
            after: i
                .checked_sub(1)
                .map(|p| names[p].clone())
                .into_iter()
                .collect(),
            stop_timeout: ms(1),
        })
        .collect();
    let mut g = StopGraph::new(&specs, ms(27_300));
    let drain = t0 + ms(27_300);
    for n in names.iter().rev() {
        assert_eq!(names_of(g.ready(t0, drain)), std::slice::from_ref(n));
        assert!(g.stopped(n));
    }
    assert!(g.all_stopped());
    // A cycle (which validation rejects) still stops every service.
    let cyclic = [
        spec("a", &["b"], 1),
        spec("b", &["a"], 1),
        spec("c", &["a"], 1),
    ];
    let mut g = StopGraph::new(&cyclic, ms(1_000));
    let mut seen = Vec::new();
    for _ in 0..3 {
        for (n, _) in g.ready(t0, drain) {
            assert!(g.stopped(&n));
            seen.push(n);
        }
    }
    seen.sort();
    assert_eq!(seen, ["a", "b", "c"]);
}

fn names_of(ready: Vec<(String, Instant)>) -> Vec<String> {
    ready.into_iter().map(|(n, _)| n).collect()
}

#[test]
fn repeated_sigterm_starts_one_shutdown() {
    let t0 = epoch();
    let specs = [spec("a", &[], 1_000)];
    let mut s = Shutdown::new(ms(30_000), ms(10_000), false);
    let steps = s.on_input(
        ShutdownInput::Trigger(Trigger::Signal(Signal::SIGTERM)),
        &specs,
        t0,
    );
    assert_eq!(s.phase(), Phase::Draining);
    assert!(steps.contains(&Step::CloseListener));
    assert_eq!(stops(&steps), [("a".to_string(), t0 + ms(1_000))]);
    for i in 0..20 {
        let steps = s.on_input(
            ShutdownInput::Trigger(Trigger::Signal(Signal::SIGTERM)),
            &specs,
            t0 + ms(i),
        );
        assert!(
            matches!(steps.as_slice(), [Step::AlreadyStopping { .. }]),
            "{steps:?}"
        );
        let steps = s.on_input(ShutdownInput::Trigger(Trigger::Request), &specs, t0 + ms(i));
        assert!(matches!(steps.as_slice(), [Step::AlreadyStopping { .. }]));
    }
    assert_eq!(s.phase(), Phase::Draining);
    assert_eq!(s.started(), Some(t0));
}

#[test]
fn second_sigint_escalates_to_killing() {
    let t0 = epoch();
    let mut s = Shutdown::new(ms(30_000), ms(10_000), false);
    s.on_input(
        ShutdownInput::Trigger(Trigger::Signal(Signal::SIGINT)),
        &[spec("a", &[], 9_000)],
        t0,
    );
    let steps = s.on_input(
        ShutdownInput::Trigger(Trigger::Signal(Signal::SIGINT)),
        &[],
        t0 + ms(5),
    );
    assert_eq!(s.phase(), Phase::Killing);
    assert!(steps.iter().any(|st| matches!(st, Step::KillEverything)));
    // A third one changes nothing.
    let steps = s.on_input(
        ShutdownInput::Trigger(Trigger::Signal(Signal::SIGINT)),
        &[],
        t0 + ms(6),
    );
    assert!(matches!(steps.as_slice(), [Step::AlreadyStopping { .. }]));
}

#[test]
fn sigterm_then_sigint_does_not_escalate() {
    let t0 = epoch();
    let mut s = Shutdown::new(ms(30_000), ms(10_000), false);
    s.on_input(
        ShutdownInput::Trigger(Trigger::Signal(Signal::SIGTERM)),
        &[spec("a", &[], 9_000)],
        t0,
    );
    s.on_input(
        ShutdownInput::Trigger(Trigger::Signal(Signal::SIGINT)),
        &[],
        t0,
    );
    assert_eq!(s.phase(), Phase::Draining);
}

#[test]
fn the_drain_ends_once_every_service_and_the_orphans_are_gone() {
    let t0 = epoch();
    let specs = [spec("db", &[], 20_000), spec("web", &["db"], 20_000)];
    let mut s = Shutdown::new(ms(30_000), ms(10_000), false);
    let steps = s.on_input(ShutdownInput::Trigger(Trigger::Request), &specs, t0);
    // 30 s - 2.5 s reserve - 0.2 s exit margin = 27.3 s, split over the two on the path.
    assert_eq!(stops(&steps), [("web".to_string(), t0 + ms(13_650))]);
    assert!(steps.contains(&Step::StopOrphans {
        deadline: t0 + DEFAULT_STOP_TIMEOUT
    }));
    let steps = s.on_input(
        ShutdownInput::ServiceStopped("web".into()),
        &[],
        t0 + ms(1_000),
    );
    assert_eq!(stops(&steps), [("db".to_string(), t0 + ms(21_000))]);
    let steps = s.on_input(
        ShutdownInput::ServiceStopped("db".into()),
        &[],
        t0 + ms(2_000),
    );
    assert_eq!(s.phase(), Phase::Draining, "the orphans are not gone yet");
    assert!(steps.is_empty());
    let steps = s.on_input(ShutdownInput::OrphansStopped, &[], t0 + ms(2_050));
    assert_eq!(s.phase(), Phase::Killing);
    assert!(steps.contains(&Step::KillEverything));
    let steps = s.on_input(ShutdownInput::KillFinished, &[], t0 + ms(2_100));
    assert_eq!(steps.last(), Some(&Step::Finish));
    assert_eq!(s.phase(), Phase::CleanedUp);
}

#[test]
fn deadlines_escalate_and_finish_no_matter_what() {
    let t0 = epoch();
    let specs = [spec("a", &[], 30_000)];
    let mut s = Shutdown::new(ms(6_000), ms(1_000), true);
    s.on_input(ShutdownInput::Trigger(Trigger::Request), &specs, t0);
    assert_eq!(
        s.next_timer().map(|(_, t)| t),
        Some(t0 + ms(1_000)),
        "grace first"
    );
    assert!(
        s.on_input(ShutdownInput::Tick, &specs, t0 + ms(999))
            .is_empty(),
        "early tick is a no-op"
    );
    assert_eq!(
        s.on_input(ShutdownInput::Tick, &specs, t0 + ms(1_000)),
        vec![Step::EndGrace]
    );
    // 6 s - 0.5 s reserve - 0.2 s margin.
    assert_eq!(s.next_timer().map(|(_, t)| t), Some(t0 + ms(5_300)));
    let steps = s.on_input(ShutdownInput::Tick, &specs, t0 + ms(5_300));
    assert!(steps.contains(&Step::KillEverything), "{steps:?}");
    assert_eq!(
        s.next_timer().map(|(_, t)| t),
        Some(t0 + ms(5_550)),
        "with hooks, killing gets half of what is left"
    );
    let steps = s.on_input(ShutdownInput::Tick, &specs, t0 + ms(5_550));
    assert_eq!(
        steps,
        vec![Step::RunHooks {
            deadline: t0 + ms(5_800)
        }]
    );
    let steps = s.on_input(ShutdownInput::Tick, &specs, t0 + ms(5_800));
    assert_eq!(steps.last(), Some(&Step::Finish));
    assert_eq!(s.phase(), Phase::CleanedUp);
    assert!(
        s.on_input(ShutdownInput::Tick, &specs, t0 + ms(9_000))
            .is_empty()
    );
    s.exited();
    assert_eq!(s.phase(), Phase::Exit);
}

#[test]
fn a_late_wake_up_still_kills_before_it_reports() {
    let t0 = epoch();
    let mut s = Shutdown::new(ms(1_000), ms(1_000), false);
    s.on_input(
        ShutdownInput::Trigger(Trigger::Request),
        &[spec("a", &[], 10_000)],
        t0,
    );
    // The first tick comes long after every deadline.
    let steps = s.on_input(ShutdownInput::Tick, &[], t0 + ms(5_000));
    assert_eq!(s.phase(), Phase::Killing);
    assert!(
        steps.iter().any(|st| matches!(st, Step::KillEverything)),
        "{steps:?}"
    );
    assert!(!steps.contains(&Step::Finish));
    let steps = s.on_input(ShutdownInput::Tick, &[], t0 + ms(5_001));
    assert_eq!(steps.last(), Some(&Step::Finish));
}

#[test]
fn with_no_services_the_orphans_still_get_their_graceful_stop() {
    let t0 = epoch();
    let mut s = Shutdown::new(ms(30_000), ms(10_000), false);
    let steps = s.on_input(ShutdownInput::Trigger(Trigger::Request), &[], t0);
    assert_eq!(s.phase(), Phase::Draining);
    assert!(steps.contains(&Step::StopOrphans {
        deadline: t0 + DEFAULT_STOP_TIMEOUT
    }));
    let steps = s.on_input(ShutdownInput::OrphansStopped, &[], t0 + ms(3));
    assert_eq!(s.phase(), Phase::Killing);
    assert!(steps.iter().any(|st| matches!(st, Step::KillEverything)));
}

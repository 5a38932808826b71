//! The stop procedure on fake process tables and virtual time.

use super::*;
use crate::core::proctree::tests::proc;
use crate::core::sim::epoch;

const ME: Pid = 1;

fn chain(n: i32) -> Snapshot {
    // 100 → 101 → ... → 100+n-1, all in session 100.
    Snapshot::new(
        ME,
        (0..n).map(|i| proc(100 + i, if i == 0 { ME } else { 99 + i }, 100)),
    )
}

/// A SIGTERM stop of a whole tree with a timeout of `secs`.
fn tree_job(secs: u64, t0: Instant) -> StopJob {
    StopJob::new(
        Signal::SIGTERM,
        StopScope::Tree,
        None,
        Duration::from_secs(secs),
        t0,
    )
}

fn members(s: &Snapshot) -> Vec<Pid> {
    s.procs.keys().copied().filter(|&p| p != ME).collect()
}

fn signals(out: &[JobOut]) -> Vec<(Pid, Signal)> {
    out.iter()
        .filter_map(|o| match o {
            JobOut::Signal { proc, signal, .. } => Some((proc.pid, *signal)),
            _ => None,
        })
        .collect()
}

fn sent(out: &[JobOut], sig: Signal) -> Vec<Pid> {
    signals(out)
        .into_iter()
        .filter(|(_, s)| *s == sig)
        .map(|(p, _)| p)
        .collect()
}

/// Marks the processes the job stopped as stopped in the table, as the kernel would.
fn obey_stops(snap: &mut Snapshot, out: &[JobOut]) {
    for p in sent(out, Signal::SIGSTOP) {
        if let Some(i) = snap.procs.get_mut(&p) {
            i.state = 'T';
        }
    }
    for p in sent(out, Signal::SIGCONT) {
        if let Some(i) = snap.procs.get_mut(&p) {
            i.state = 'S';
        }
    }
}

fn remove(s: &mut Snapshot, pid: Pid) -> ProcId {
    s.procs.remove(&pid).expect("present").id()
}

/// What the job was fed at each step of [`drive`].
#[derive(Debug, PartialEq)]
enum Fed {
    Scan,
    Check(Vec<Pid>),
}

/// Feeds the job what it asks for (checks of held processes, full scans), waiting out check
/// pauses in virtual time, until it asks for nothing more. With `obey`, the table follows the
/// job's SIGSTOPs and SIGCONTs as the kernel would.
fn drive_with(
    job: &mut StopJob,
    snap: &mut Snapshot,
    mut now: Instant,
    obey: bool,
) -> Vec<(Fed, Vec<JobOut>)> {
    let mut steps = Vec::new();
    for _ in 0..10_000 {
        if job.wants_check().is_empty()
            && !job.wants_scan()
            && let Some(at) = job.check_at.filter(|_| !job.checks.is_empty())
        {
            now = at;
            job.on_tick(now);
        }
        let (fed, out) = if !job.wants_check().is_empty() {
            let only: Vec<Pid> = job.wants_check().iter().map(|id| id.pid).collect();
            let mut part =
                Snapshot::new(ME, only.iter().filter_map(|p| snap.procs.get(p).cloned()));
            part.partial = true;
            (Fed::Check(only), job.on_scan(&part, &[], now))
        } else if job.wants_scan() {
            (Fed::Scan, job.on_scan(snap, &members(snap), now))
        } else {
            break;
        };
        if obey {
            obey_stops(snap, &out);
        }
        steps.push((fed, out));
    }
    steps
}

/// Runs the hold to its end and returns everything the job sent.
fn held(job: &mut StopJob, snap: &mut Snapshot, now: Instant) -> Vec<JobOut> {
    let steps = drive_with(job, snap, now, true);
    let last = steps.len().saturating_sub(1);
    for (i, (_, out)) in steps.iter().enumerate() {
        if i < last {
            assert_eq!(
                sent(out, Signal::SIGTERM),
                Vec::<Pid>::new(),
                "nothing is asked before everything is held"
            );
        }
    }
    steps.into_iter().flat_map(|(_, out)| out).collect()
}

#[test]
fn a_chain_is_held_one_level_at_a_time_once_the_level_above_shows_stopped() {
    let t0 = epoch();
    let mut snap = chain(3);
    let mut job = tree_job(9, t0);
    let steps = drive_with(&mut job, &mut snap, t0, true);
    let trace: Vec<(&Fed, Vec<(Pid, Signal)>)> =
        steps.iter().map(|(f, out)| (f, signals(out))).collect();
    assert_eq!(
        trace,
        [
            (&Fed::Scan, vec![(100, Signal::SIGSTOP)]),
            (&Fed::Check(vec![100]), vec![(101, Signal::SIGSTOP)]),
            (&Fed::Check(vec![101]), vec![(102, Signal::SIGSTOP)]),
            (&Fed::Check(vec![102]), vec![]),
            // One full scan confirms that nothing was started before its parent stopped.
            (
                &Fed::Scan,
                vec![(102, Signal::SIGTERM), (102, Signal::SIGCONT)]
            ),
        ]
    );
}

#[test]
fn a_level_is_not_held_before_the_level_above_shows_stopped() {
    let t0 = epoch();
    let mut snap = chain(2);
    let mut job = tree_job(9, t0);
    let steps = drive_with(&mut job, &mut snap, t0, false);
    // 100 never shows stopped (uninterruptible sleep): its child waits for the bounded checks.
    let checks = steps
        .iter()
        .take_while(|(_, out)| !sent(out, Signal::SIGSTOP).contains(&101))
        .filter(|(f, _)| matches!(f, Fed::Check(_)))
        .count();
    assert_eq!(checks, MAX_HOLD_CHECKS as usize);
    let last = &steps.last().expect("steps").1;
    assert_eq!(sent(last, Signal::SIGTERM), [101], "bottom-up all the same");
}

#[test]
fn later_checks_of_a_level_leave_the_cpu_to_it() {
    let t0 = epoch();
    let snap = chain(1);
    let mut job = tree_job(9, t0);
    job.on_scan(&snap, &members(&snap), t0);
    let mut part = Snapshot::new(ME, [proc(100, ME, 100)]);
    part.partial = true;
    for _ in 0..IMMEDIATE_CHECKS {
        assert_eq!(job.wants_check().len(), 1, "checked at once");
        job.on_scan(&part, &[], t0);
    }
    assert!(job.wants_check().is_empty(), "then after a pause");
    let first = check_pause(IMMEDIATE_CHECKS).expect("a pause");
    assert_eq!(job.deadline(), Some(t0 + first));
    job.on_tick(t0 + first);
    assert_eq!(job.wants_check().len(), 1);
    // The pauses double, up to the longest.
    job.on_scan(&part, &[], t0 + first);
    assert_eq!(job.deadline(), Some(t0 + first + 2 * first));
    assert_eq!(check_pause(40), Some(CHECK_PAUSE));
    assert_eq!(check_pause(0), None);
}

#[test]
fn a_chain_is_signalled_level_by_level_as_levels_exit() {
    let t0 = epoch();
    let mut snap = chain(3);
    let mut job = tree_job(9, t0);
    let out = held(&mut job, &mut snap, t0);
    assert_eq!(sent(&out, Signal::SIGTERM), [102]);
    // The deepest exits: its parent, held and now childless, is asked at once, without a scan.
    let out = job.on_gone(remove(&mut snap, 102), t0);
    assert_eq!(
        signals(&out),
        [(101, Signal::SIGTERM), (101, Signal::SIGCONT)]
    );
    assert!(!job.wants_scan());
    let out = job.on_gone(remove(&mut snap, 101), t0);
    assert_eq!(sent(&out, Signal::SIGTERM), [100]);
    let out = job.on_gone(remove(&mut snap, 100), t0);
    assert!(out.is_empty());
    assert!(
        job.wants_scan(),
        "one confirming scan once everything is gone"
    );
    job.on_scan(&snap, &members(&snap), t0);
    assert_eq!(job.outcome(), Some(StopHow::Exited));
}

#[test]
fn a_held_shell_cannot_respawn_so_the_next_level_goes_without_a_chase() {
    let t0 = epoch();
    // A shell loop (100) running `sleep` (101): held, it cannot start the next sleep when this
    // one dies, so it is asked as soon as its child is gone.
    let mut snap = chain(2);
    let mut job = tree_job(10, t0);
    let out = held(&mut job, &mut snap, t0);
    assert_eq!(sent(&out, Signal::SIGTERM), [101]);
    let out = job.on_gone(remove(&mut snap, 101), t0);
    assert_eq!(sent(&out, Signal::SIGTERM), [100]);
}

#[test]
fn the_next_level_and_the_levels_left_come_from_the_records() {
    let t0 = epoch();
    // 100 → 101 → 102, and 100 → 103 (a leaf beside the chain).
    let mut snap = Snapshot::new(
        ME,
        [
            proc(100, ME, 100),
            proc(101, 100, 100),
            proc(102, 101, 100),
            proc(103, 100, 100),
        ],
    );
    let mut job = tree_job(9, t0);
    let out = held(&mut job, &mut snap, t0);
    assert_eq!(sent(&out, Signal::SIGTERM), [102, 103], "the leaves first");
    let (next, levels) = job.levels();
    let pids: Vec<Pid> = next.iter().map(|id| id.pid).collect();
    assert_eq!(pids, [101], "101's only child was asked; 100 waits for 101");
    assert_eq!(levels, 2, "101 and 100 are still to be asked");
}

#[test]
fn a_thousand_levels_sharing_four_seconds_give_way_without_a_scan() {
    let t0 = epoch();
    let mut snap = chain(1000);
    let mut job = tree_job(4, t0);
    let out = held(&mut job, &mut snap, t0);
    assert_eq!(sent(&out, Signal::SIGTERM), [1099]);
    // The deepest level refuses to go: at the end of its share the next is asked, from the
    // records, without a scan.
    let share = job.deadline().expect("a level's share");
    assert!(share < t0 + Duration::from_millis(10), "{:?}", share - t0);
    let out = job.on_tick(share);
    assert_eq!(sent(&out, Signal::SIGTERM), [1098]);
    assert!(!job.wants_scan(), "no scan for a forced level");
}

#[test]
fn a_stubborn_level_gives_way_after_its_share() {
    let t0 = epoch();
    let mut snap = chain(2);
    let mut job = tree_job(10, t0);
    held(&mut job, &mut snap, t0);
    // A second look after a second, for signals lost on the way; nothing new.
    assert_eq!(job.deadline(), Some(t0 + SETTLE));
    job.on_tick(t0 + SETTLE);
    assert!(
        sent(
            &job.on_scan(&snap, &members(&snap), t0 + SETTLE),
            Signal::SIGTERM
        )
        .is_empty()
    );
    // Two levels, 10 s: the deepest gets half before its parent is asked anyway.
    let share = job.deadline().expect("level deadline");
    assert_eq!(share, t0 + Duration::from_secs(5));
    assert!(
        job.on_tick(share - Duration::from_millis(1)).is_empty(),
        "an early tick does nothing"
    );
    let out = job.on_tick(share);
    assert_eq!(sent(&out, Signal::SIGTERM), [100]);
}

#[test]
fn children_born_after_their_parent_got_the_signal_are_left_to_it() {
    let t0 = epoch();
    let mut snap = chain(1);
    let mut job = tree_job(10, t0);
    let out = held(&mut job, &mut snap, t0);
    assert_eq!(sent(&out, Signal::SIGTERM), [100]);
    // Its TERM handler runs a cleanup command.
    snap.procs.insert(101, proc(101, 100, 100));
    for t in [
        t0 + Duration::from_millis(10),
        t0 + SETTLE,
        t0 + Duration::from_secs(5),
    ] {
        job.on_tick(t);
        let out = job.on_scan(&snap, &members(&snap), t);
        assert_eq!(
            sent(&out, Signal::SIGTERM),
            Vec::<Pid>::new(),
            "left alone at {t:?}"
        );
        assert_eq!(sent(&out, Signal::SIGSTOP), Vec::<Pid>::new());
    }
    // If it lingers past the timeout, it is frozen and killed with the rest, as systemd does:
    // at once, from what the job knows, without waiting for a scan.
    let out = job.on_tick(t0 + Duration::from_secs(10));
    assert_eq!(sent(&out, Signal::SIGSTOP), [100, 101]);
    assert_eq!(sent(&out, Signal::SIGKILL), [101, 100]);
    assert!(job.wants_scan(), "then a look for what forked since");
}

#[test]
fn a_child_seen_while_its_parent_was_held_is_no_trap_child() {
    let t0 = epoch();
    // make (100) forked a job (101) in the instant before it was held: the confirming scan lists
    // it, so it is signalled like any job, not left to make (which does not forward SIGINT).
    let mut snap = chain(1);
    let mut job = StopJob::new(
        Signal::SIGINT,
        StopScope::Tree,
        None,
        Duration::from_secs(10),
        t0,
    );
    let out = job.on_scan(&snap, &members(&snap), t0);
    obey_stops(&mut snap, &out);
    snap.procs.insert(101, proc(101, 100, 100));
    let out = held(&mut job, &mut snap, t0);
    assert_eq!(sent(&out, Signal::SIGSTOP), [101], "held too");
    assert_eq!(sent(&out, Signal::SIGINT), [101]);
    let out = job.on_gone(remove(&mut snap, 101), t0);
    assert_eq!(sent(&out, Signal::SIGINT), [100]);
}

#[test]
fn a_child_of_an_unheld_parent_is_judged_by_its_start_time() {
    let t0 = epoch();
    // make (100) never shows stopped (busy in uninterruptible I/O), so it is asked unheld.
    let mut snap = chain(1);
    snap.ticks = Some(5000);
    let mut job = StopJob::new(
        Signal::SIGINT,
        StopScope::Tree,
        None,
        Duration::from_secs(10),
        t0,
    );
    let steps = drive_with(&mut job, &mut snap, t0, false);
    assert!(
        steps
            .iter()
            .any(|(_, out)| sent(out, Signal::SIGINT) == [100])
    );
    // A job it started in the same tick as the last look: maybe before the signal. It is asked
    // (after being held), since make does not forward SIGINT.
    let mut job_proc = proc(101, 100, 100);
    job_proc.start = 5000;
    snap.procs.insert(101, job_proc);
    // A cleanup command its handler started a tick later: left to it.
    let mut cleanup = proc(102, 100, 100);
    cleanup.start = 5001;
    snap.procs.insert(102, cleanup);
    let settle = job.deadline().expect("a second look is due");
    job.on_tick(settle);
    let steps = drive_with(&mut job, &mut snap, settle, true);
    let all: Vec<JobOut> = steps.into_iter().flat_map(|(_, o)| o).collect();
    assert_eq!(sent(&all, Signal::SIGSTOP), [101]);
    assert_eq!(sent(&all, Signal::SIGINT), [101]);
}

#[test]
fn timeout_freezes_top_down_then_kills_deepest_first_in_one_pass() {
    let t0 = epoch();
    let mut snap = chain(3);
    let mut job = StopJob::kill_now(t0);
    let out = job.on_scan(&snap, &members(&snap), t0);
    assert_eq!(
        signals(&out),
        [
            (100, Signal::SIGSTOP),
            (101, Signal::SIGSTOP),
            (102, Signal::SIGSTOP),
            (102, Signal::SIGKILL),
            (101, Signal::SIGKILL),
            (100, Signal::SIGKILL),
        ],
        "no wait for them to show stopped"
    );
    assert!(out.contains(&JobOut::Killed {
        pids: vec![102, 101, 100]
    }));
    assert!(job.wants_scan(), "one look at once for stragglers");
    // A fork slipped through just before its parent's signal.
    snap.procs.insert(103, proc(103, 102, 100));
    let out = job.on_scan(&snap, &members(&snap), t0);
    assert_eq!(
        signals(&out),
        [(103, Signal::SIGSTOP), (103, Signal::SIGKILL)],
        "the killed are not signalled again"
    );
    assert!(job.wants_scan(), "it may have forked too");
    let out = job.on_scan(&snap, &members(&snap), t0);
    assert!(signals(&out).is_empty(), "nobody new: wait for the deaths");
    assert!(!job.wants_scan());
    for p in [100, 101, 102] {
        let id = remove(&mut snap, p);
        job.on_gone(id, t0);
        assert!(!job.wants_scan(), "one confirming scan, not one per death");
    }
    job.on_gone(remove(&mut snap, 103), t0);
    assert!(job.wants_scan());
    job.on_scan(&snap, &members(&snap), t0);
    assert_eq!(job.outcome(), Some(StopHow::Killed));
}

#[test]
fn a_storm_that_outruns_each_look_is_chased_until_a_look_finds_nobody_new() {
    let t0 = epoch();
    let mut snap = chain(1);
    let mut job = StopJob::kill_now(t0);
    let mut killed = Vec::new();
    for next in 101..111 {
        let out = job.on_scan(&snap, &members(&snap), t0);
        killed.extend(sent(&out, Signal::SIGKILL));
        assert!(job.wants_scan());
        // Each look finds one more, forked before the last kill reached its parent.
        snap.procs.insert(next, proc(next, next - 1, 100));
    }
    let out = job.on_scan(&snap, &members(&snap), t0);
    killed.extend(sent(&out, Signal::SIGKILL));
    let out = job.on_scan(&snap, &members(&snap), t0);
    assert!(signals(&out).is_empty());
    assert!(!job.wants_scan(), "settled");
    assert_eq!(killed, (100..111).collect::<Vec<_>>(), "each killed once");
}

#[test]
fn main_scope_signals_only_the_main_process() {
    let t0 = epoch();
    let snap = chain(3);
    let main = snap.procs[&100].id();
    let mut job = StopJob::new(
        Signal::SIGQUIT,
        StopScope::Main,
        Some(main),
        Duration::from_secs(5),
        t0,
    );
    let out = job.on_scan(&snap, &members(&snap), t0);
    assert_eq!(
        signals(&out),
        [(100, Signal::SIGQUIT), (100, Signal::SIGCONT)]
    );
    assert!(signals(&job.on_scan(&snap, &members(&snap), t0)).is_empty());
}

#[test]
fn main_first_asks_the_main_process_then_the_rest_bottom_up() {
    let t0 = epoch();
    // Server 100 with a tool child per stream (101, 102).
    let mut snap = Snapshot::new(
        ME,
        [proc(100, ME, 100), proc(101, 100, 100), proc(102, 100, 100)],
    );
    let main = snap.procs[&100].id();
    let mut job = StopJob::new(
        Signal::SIGTERM,
        StopScope::MainFirst,
        Some(main),
        Duration::from_secs(8),
        t0,
    );
    let out = job.on_scan(&snap, &members(&snap), t0);
    assert_eq!(
        signals(&out),
        [(100, Signal::SIGSTOP)],
        "the main process alone, held"
    );
    obey_stops(&mut snap, &out);
    let out = job.on_scan(&snap, &members(&snap), t0);
    assert_eq!(
        signals(&out),
        [(100, Signal::SIGTERM), (100, Signal::SIGCONT)]
    );
    obey_stops(&mut snap, &out);
    // It tells its clients and exits; its tools are left: now they go, bottom-up.
    let out = job.on_gone(remove(&mut snap, 100), t0);
    assert!(out.is_empty());
    assert!(job.wants_scan());
    for p in snap.procs.values_mut() {
        p.ppid = ME;
    }
    let out = held(&mut job, &mut snap, t0);
    assert_eq!(sent(&out, Signal::SIGTERM), [101, 102]);
}

#[test]
fn main_first_stops_the_rest_after_half_the_timeout_if_the_main_process_lingers() {
    let t0 = epoch();
    let mut snap = chain(2);
    let main = snap.procs[&100].id();
    let mut job = StopJob::new(
        Signal::SIGTERM,
        StopScope::MainFirst,
        Some(main),
        Duration::from_secs(8),
        t0,
    );
    let out = job.on_scan(&snap, &members(&snap), t0);
    obey_stops(&mut snap, &out);
    let out = job.on_scan(&snap, &members(&snap), t0);
    obey_stops(&mut snap, &out);
    assert_eq!(job.deadline(), Some(t0 + SETTLE));
    job.on_tick(t0 + Duration::from_secs(4));
    assert!(job.wants_scan());
    let out = job.on_scan(&snap, &members(&snap), t0 + Duration::from_secs(4));
    assert_eq!(sent(&out, Signal::SIGSTOP), [101], "the rest is held");
}

#[test]
fn a_job_never_finishes_on_what_it_could_not_see() {
    let t0 = epoch();
    let mut snap = chain(2);
    let mut job = tree_job(10, t0);
    held(&mut job, &mut snap, t0);
    // The process table could not be read (out of descriptors): nothing visible is alive.
    let mut blind = Snapshot::new(ME, []);
    blind.incomplete = true;
    job.on_scan(&blind, &[], t0);
    assert!(!job.is_done(), "an incomplete scan proves nothing");
    assert_eq!(job.deadline(), Some(t0 + RETRY), "so it looks again soon");
    job.on_unwatchable(snap.procs[&101].id(), t0);
    job.on_tick(t0 + RETRY);
    assert!(job.wants_scan());
    job.on_scan(&Snapshot::new(ME, []), &[], t0 + RETRY);
    assert_eq!(
        job.outcome(),
        Some(StopHow::Exited),
        "a complete empty scan does"
    );
}

#[test]
fn a_kill_that_could_not_be_sent_is_sent_again() {
    let t0 = epoch();
    let mut snap = chain(1);
    snap.procs.get_mut(&100).expect("100").state = 'T';
    let mut job = StopJob::kill_now(t0);
    let out = job.on_scan(&snap, &members(&snap), t0);
    assert_eq!(sent(&out, Signal::SIGKILL), [100]);
    job.on_unwatchable(snap.procs[&100].id(), t0);
    job.on_tick(t0 + RETRY);
    let out = job.on_scan(&snap, &members(&snap), t0 + RETRY);
    assert_eq!(sent(&out, Signal::SIGKILL), [100]);
}

#[test]
fn a_signal_lost_in_a_fork_exec_window_is_sent_again() {
    let t0 = epoch();
    let mut snap = chain(1);
    let mut job = tree_job(10, t0);
    held(&mut job, &mut snap, t0);
    snap.procs.get_mut(&100).expect("100").comm = "sleep".into();
    job.on_tick(t0 + SETTLE);
    let out = job.on_scan(&snap, &members(&snap), t0 + SETTLE);
    assert_eq!(sent(&out, Signal::SIGTERM), [100]);
}

#[test]
fn nothing_running_is_idle_and_a_zombie_counts_as_gone() {
    let t0 = epoch();
    let mut job = tree_job(1, t0);
    job.on_scan(&Snapshot::new(ME, []), &[], t0);
    assert_eq!(job.outcome(), Some(StopHow::Idle));
    let mut snap = chain(1);
    snap.procs.get_mut(&100).expect("100").state = 'Z';
    let mut job = tree_job(1, t0);
    job.on_scan(&snap, &members(&snap), t0);
    assert!(job.is_done());
}

#[test]
fn a_thousand_deep_chain_advances_one_level_per_exit_without_scans() {
    let t0 = epoch();
    let mut snap = chain(1000);
    let mut job = tree_job(4, t0);
    let out = held(&mut job, &mut snap, t0);
    assert_eq!(sent(&out, Signal::SIGTERM), [1099]);
    for level in (100..1099).rev() {
        let out = job.on_gone(remove(&mut snap, level + 1), t0);
        assert_eq!(sent(&out, Signal::SIGTERM), [level]);
        assert!(!job.wants_scan());
    }
}

#[test]
fn a_contained_stop_ends_on_the_cgroup_being_empty_without_a_scan() {
    let t0 = epoch();
    let mut snap = chain(2);
    let mut job = tree_job(9, t0);
    job.contain();
    let out = held(&mut job, &mut snap, t0);
    assert_eq!(sent(&out, Signal::SIGTERM), [101]);
    job.on_gone(remove(&mut snap, 101), t0);
    job.on_gone(remove(&mut snap, 100), t0);
    assert!(
        !job.wants_scan(),
        "every known member is gone: the cgroup's word is awaited first"
    );
    assert_eq!(job.deadline(), Some(t0 + EMPTY_WAIT));
    job.on_empty();
    assert_eq!(job.outcome(), Some(StopHow::Exited));
    assert!(job.confirmed_by_cgroup());
}

#[test]
fn without_the_cgroups_word_a_contained_stop_looks_for_itself() {
    let t0 = epoch();
    let mut snap = chain(1);
    let mut job = tree_job(9, t0);
    job.contain();
    held(&mut job, &mut snap, t0);
    job.on_gone(remove(&mut snap, 100), t0);
    assert!(!job.wants_scan());
    // A process forked since the last look keeps the cgroup populated: no word comes.
    job.on_tick(t0 + EMPTY_WAIT);
    assert!(job.wants_scan());
    job.on_scan(&snap, &members(&snap), t0 + EMPTY_WAIT);
    assert_eq!(job.outcome(), Some(StopHow::Exited));
    assert!(!job.confirmed_by_cgroup());
}

#[test]
fn emptiness_before_the_stop_saw_its_members_is_not_taken_for_the_end() {
    let t0 = epoch();
    let mut job = tree_job(9, t0);
    job.contain();
    job.on_empty();
    assert!(
        !job.is_done(),
        "read before the first scan: may predate the members"
    );
    let mut uncontained = tree_job(9, t0);
    let snap = chain(1);
    uncontained.on_scan(&snap, &members(&snap), t0);
    uncontained.on_empty();
    assert!(
        !uncontained.is_done(),
        "only a contained stop hears of its cgroup"
    );
}

#[test]
fn a_contained_kill_kills_the_cgroup_first_and_once() {
    let t0 = epoch();
    let snap = chain(3);
    let mut job = tree_job(1, t0);
    job.contain();
    job.on_scan(&snap, &members(&snap), t0);
    let out = job.on_tick(t0 + Duration::from_secs(1));
    assert_eq!(out.first(), Some(&JobOut::KillGroup), "{out:?}");
    assert_eq!(
        sent(&out, Signal::SIGKILL),
        [102, 101, 100],
        "then each process"
    );
    let out = job.on_scan(&snap, &members(&snap), t0 + Duration::from_secs(1));
    assert!(!out.contains(&JobOut::KillGroup), "once");
    let mut plain = tree_job(1, t0);
    plain.on_scan(&snap, &members(&snap), t0);
    let out = plain.on_tick(t0 + Duration::from_secs(1));
    assert!(!out.contains(&JobOut::KillGroup));
}

#[test]
fn after_a_whole_cgroup_kill_the_stop_waits_for_its_word_not_for_a_look() {
    let t0 = epoch();
    let t1 = t0 + Duration::from_secs(1);
    let snap = chain(3);
    let mut job = tree_job(1, t0);
    job.contain();
    job.set_outside_group(false);
    job.on_scan(&snap, &members(&snap), t0);
    let out = job.on_tick(t1);
    assert_eq!(out.first(), Some(&JobOut::KillGroup), "{out:?}");
    assert!(
        !job.wants_scan(),
        "nothing in the cgroup outruns its kill: no straggler to look for"
    );
    assert_eq!(job.deadline(), Some(t1 + GROUP_KILL_WAIT));
    job.on_empty();
    assert_eq!(job.outcome(), Some(StopHow::Killed));
    // Without the kernel's word in time, it looks for itself.
    let mut late = tree_job(1, t0);
    late.contain();
    late.on_scan(&snap, &members(&snap), t0);
    late.on_tick(t1);
    late.on_tick(t1 + GROUP_KILL_WAIT);
    assert!(late.wants_scan());
    // A member outside the cgroup (moved out by root) is not reached by its kill: stragglers
    // are looked for at once.
    let mut outside = tree_job(1, t0);
    outside.contain();
    outside.set_outside_group(true);
    outside.on_scan(&snap, &members(&snap), t0);
    let out = outside.on_tick(t1);
    assert_eq!(out.first(), Some(&JobOut::KillGroup));
    assert!(outside.wants_scan());
}

//! The rules of a graceful stop, as named functions over the members and a tree view built once
//! per scan.
//!
//! Owns: who is left to an ancestor (born after it got the signal), who may get the signal now
//! (every process below it is gone), which processes form the next level when a level's share of
//! the stop timeout is used up, how many levels are left, and who may have lost its signal in a
//! fork-exec window.
//! Must never: look at anything but the member records, the tree view and the snapshot they were
//! built from.

use std::collections::HashMap;

use crate::core::proctree::{Forest, Pid, ProcId, Snapshot};

/// What a stop knows about one process.
#[derive(Clone, Debug, Default)]
pub struct Member {
    /// The scan that first saw it.
    pub first_seen: u64,
    /// Its command name when last seen.
    pub comm: String,
    /// Its parent among the members when last seen.
    pub parent: Option<ProcId>,
    /// Stopped by reapd (held still, or frozen for the kill) and not continued since: it cannot
    /// fork, exit or act on a signal until it is.
    pub stopped: bool,
    /// Processes above it still waiting for their signal, as of the last scan: the levels that
    /// share what is left of the stop timeout once it is gone.
    pub waiting_above: usize,
    /// Its depth in the tree of members, as of the last full scan.
    pub depth: usize,
    /// Its state letter when last read (a full scan, or a check of held processes).
    pub state: char,
    /// When it got the stop signal, if it did.
    pub signalled: Option<Signalled>,
    /// Born after an ancestor got the stop signal: that ancestor's business, not the stop's,
    /// until the stop timeout.
    pub spared: bool,
    /// SIGKILLed.
    pub killed: bool,
    /// Known to be gone.
    pub gone: bool,
    /// A pidfd is held for it (or was asked for).
    pub watched: bool,
    /// No pidfd could be held: its exit is only noticed by rescanning.
    pub unwatchable: bool,
}

/// What reapd knew when it sent a member the stop signal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signalled {
    /// Its command name then (see [`lost_its_signal`]).
    pub comm: String,
    /// It was held (stopped, and seen stopped) until the signal: it started nothing between the
    /// scan that listed its children and the signal.
    pub held: bool,
    /// The boot clock, in clock ticks, at the last look before the signal (when known): the
    /// signal was sent at or after it.
    pub tick: Option<u64>,
}

/// Member records by process.
pub type Members = HashMap<ProcId, Member>;

/// The record of the process with this pid in `snap`.
pub fn record<'a>(snap: &Snapshot, members: &'a Members, pid: Pid) -> Option<&'a Member> {
    snap.procs.get(&pid).and_then(|p| members.get(&p.id()))
}

fn is_signalled(snap: &Snapshot, members: &Members, pid: Pid) -> bool {
    record(snap, members, pid).is_some_and(|m| m.signalled.is_some())
}

/// Born after its nearest signalled ancestor got the stop signal, judged for a process first
/// seen after that signal: a trap's cleanup command, say, which is that ancestor's business until
/// the stop timeout. The process's own start time decides: a start in a tick later than the last
/// look before the signal is after it. Within the same tick the start time cannot tell, and the
/// hold can: an ancestor held until the signal started nothing in between, so whatever the
/// confirming scan did not list came after. An unheld ancestor's same-tick child counts as
/// before, and gets its own signal: a job GNU make started at that moment must not wait for a
/// make that does not forward SIGINT. While killing, nothing is spared.
pub fn born_after_signal(ancestor: Option<&Signalled>, start: u64, killing: bool) -> bool {
    let Some(sig) = ancestor.filter(|_| !killing) else {
        return false;
    };
    sig.held || sig.tick.is_some_and(|t| start > t)
}

/// Counts as live for the order: not gone, not left to an ancestor.
fn in_play(snap: &Snapshot, members: &Members, pid: Pid) -> bool {
    record(snap, members, pid).is_some_and(|m| !m.gone && !m.spared)
}

/// May get the stop signal now: not signalled, not spared, and every process below it is gone
/// (or left to a signalled ancestor).
pub fn is_due(forest: &Forest, snap: &Snapshot, members: &Members, pid: Pid) -> bool {
    in_play(snap, members, pid)
        && !is_signalled(snap, members, pid)
        && forest
            .children_of(pid)
            .iter()
            .all(|&c| !in_play(snap, members, c))
}

/// The next level, when the current one outlived its share: every process not yet signalled
/// whose processes below are all signalled (or left to someone), so every process is asked before
/// the stop timeout even if a level below refuses to go.
pub fn next_level(forest: &Forest, snap: &Snapshot, members: &Members) -> Vec<Pid> {
    forest
        .deepest_first()
        .into_iter()
        .filter(|&p| {
            in_play(snap, members, p)
                && !is_signalled(snap, members, p)
                && forest
                    .below(p)
                    .iter()
                    .all(|&q| !in_play(snap, members, q) || is_signalled(snap, members, q))
        })
        .collect()
}

/// The longest chain of processes still to be signalled: the levels left to share the rest of
/// the stop timeout among.
pub fn levels_left(forest: &Forest, snap: &Snapshot, members: &Members) -> usize {
    let waiting = |p: Pid| in_play(snap, members, p) && !is_signalled(snap, members, p);
    forest
        .roots()
        .into_iter()
        .map(|r| forest.chain_len(r, &waiting))
        .max()
        .unwrap_or(0)
}

/// Signalled between fork and exec, a child still runs its parent's code and handlers: a trap
/// handler takes the signal and exec then forgets it. A process whose command name changed since
/// it was signalled has exec'd since, and gets the signal once more.
pub fn lost_its_signal(member: &Member, comm_now: &str) -> bool {
    member
        .signalled
        .as_ref()
        .is_some_and(|s| s.comm != comm_now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::proctree::tests::proc;

    fn chain(n: i32) -> Snapshot {
        Snapshot::new(
            1,
            (0..n).map(|i| proc(100 + i, if i == 0 { 1 } else { 99 + i }, 100)),
        )
    }

    fn members_of(snap: &Snapshot) -> Members {
        snap.procs
            .values()
            .filter(|p| p.pid != 1)
            .map(|p| (p.id(), Member::default()))
            .collect()
    }

    #[test]
    fn only_the_deepest_is_due_until_it_is_gone() {
        let snap = chain(3);
        let forest = Forest::new(&snap, [100, 101, 102]);
        let mut m = members_of(&snap);
        let due = |m: &Members| {
            [100, 101, 102]
                .into_iter()
                .filter(|&p| is_due(&forest, &snap, m, p))
                .collect::<Vec<_>>()
        };
        assert_eq!(due(&m), [102]);
        assert_eq!(levels_left(&forest, &snap, &m), 3);
        if let Some(r) = m.get_mut(&snap.procs[&102].id()) {
            r.gone = true;
        }
        assert_eq!(due(&m), [101]);
        assert_eq!(levels_left(&forest, &snap, &m), 2);
    }

    #[test]
    fn a_level_that_outlives_its_share_lets_the_next_one_be_asked() {
        let snap = chain(3);
        let forest = Forest::new(&snap, [100, 101, 102]);
        let mut m = members_of(&snap);
        if let Some(r) = m.get_mut(&snap.procs[&102].id()) {
            r.signalled = Some(Signalled::default());
        }
        assert_eq!(next_level(&forest, &snap, &m), [101]);
        assert!(
            !is_due(&forest, &snap, &m, 101),
            "not due: its child still runs"
        );
    }

    #[test]
    fn born_after_the_signal_is_read_from_the_start_time_or_the_hold() {
        let unheld = Signalled {
            comm: "make".into(),
            held: false,
            tick: Some(500),
        };
        assert!(born_after_signal(Some(&unheld), 501, false), "a later tick");
        assert!(
            !born_after_signal(Some(&unheld), 500, false),
            "the same tick as the last look: a job make may have started before; it is asked"
        );
        assert!(!born_after_signal(Some(&unheld), 499, false));
        let held = Signalled {
            held: true,
            ..unheld.clone()
        };
        assert!(
            born_after_signal(Some(&held), 500, false),
            "held: nothing in between"
        );
        assert!(
            !born_after_signal(None, 900, false),
            "no signalled ancestor"
        );
        assert!(
            !born_after_signal(Some(&held), 900, true),
            "nothing is spared from the kill"
        );
        let blind = Signalled {
            tick: None,
            ..unheld
        };
        assert!(
            !born_after_signal(Some(&blind), 900, false),
            "no clock, no hold: asked"
        );
    }

    #[test]
    fn a_changed_command_name_means_an_exec_that_may_have_lost_the_signal() {
        let signalled = Member {
            signalled: Some(Signalled {
                comm: "sh".into(),
                ..Signalled::default()
            }),
            ..Member::default()
        };
        assert!(lost_its_signal(&signalled, "sleep"));
        assert!(!lost_its_signal(&signalled, "sh"));
    }
}

//! Recovery: stopping what a reapd that died without cleaning up left running.
//!
//! Owns: which processes of the system belong to a crashed predecessor, from its state file (see
//! `wire::state_file`): each recorded process that is still the same process (pid and start
//! time), everything below it, and the members of its session, which every service main process
//! leads. They are stopped with the owner's stop procedure, bottom-up, before anything starts.
//! Must never: touch pid 1, reapd itself or its ancestors, or a process merely sharing a reused
//! number: a session counts only while its leader is the recorded process or no process holds
//! that pid (the kernel keeps a session's number allocated while any member lives), and only
//! members started no earlier than the recorded leader.

use std::collections::HashSet;
use std::time::Instant;

use nix::sys::signal::Signal;

use crate::core::proctree::{Pid, ProcId, Snapshot};
use crate::core::stop::{JobOut, StopJob};
use crate::wire::config::{DEFAULT_STOP_TIMEOUT, ServiceSpec, StopScope};
use crate::wire::state_file::StateRecord;

/// The stop of one owner's left-over processes.
#[derive(Debug)]
pub struct OrphanedOwner {
    /// The service (or hook) that owned them.
    pub owner: String,
    /// The recorded processes.
    pub roots: Vec<ProcId>,
    /// Every process found to belong to them so far: one that leaves the tree (its parent died)
    /// and the session (it called `setsid`) stays theirs.
    pub seen: HashSet<ProcId>,
    /// The stop in progress.
    pub job: StopJob,
}

impl OrphanedOwner {
    /// This owner's live processes in `snap`, remembering them for later scans.
    pub fn members(&mut self, snap: &Snapshot) -> Vec<Pid> {
        let mut now = members(snap, &self.roots);
        let kept = self
            .seen
            .iter()
            .filter(|id| snap.get(**id).is_some_and(|p| !p.is_dead()))
            .map(|id| id.pid);
        now.extend(kept);
        now.sort_unstable();
        now.dedup();
        self.seen = now
            .iter()
            .filter_map(|p| snap.procs.get(p).map(|i| i.id()))
            .collect();
        now
    }
}

/// Every stop of a crashed predecessor's processes.
#[derive(Debug, Default)]
pub struct Recovery {
    /// The predecessor's pid, for the log.
    pub predecessor: Option<Pid>,
    /// One stop per owner.
    pub owners: Vec<OrphanedOwner>,
}

impl Recovery {
    /// Plans the stops for `record`, using each service's current stop signal and timeout (a
    /// service no longer configured gets SIGTERM and the default timeout).
    pub fn plan<'a>(
        record: &StateRecord,
        spec_of: impl Fn(&str) -> Option<&'a ServiceSpec>,
        self_pid: Pid,
        now: Instant,
    ) -> Recovery {
        let mut owners: Vec<OrphanedOwner> = Vec::new();
        for r in &record.procs {
            if r.pid == self_pid {
                continue;
            }
            let id = ProcId {
                pid: r.pid,
                start: r.start,
            };
            match owners.iter_mut().find(|o| o.owner == r.owner) {
                Some(o) => o.roots.push(id),
                None => {
                    let (signal, timeout) = spec_of(&r.owner)
                        .map_or((Signal::SIGTERM, DEFAULT_STOP_TIMEOUT), |s| {
                            (s.stop_signal, s.stop_timeout)
                        });
                    owners.push(OrphanedOwner {
                        owner: r.owner.clone(),
                        roots: vec![id],
                        seen: HashSet::new(),
                        job: StopJob::new(signal, StopScope::Tree, None, timeout, now),
                    });
                }
            }
        }
        Recovery {
            predecessor: record.reapd.map(|(pid, _)| pid),
            owners,
        }
    }

    /// True once every stop is over.
    pub fn is_done(&self) -> bool {
        self.owners.iter().all(|o| o.job.is_done())
    }

    /// Clips every stop to `deadline` (a shutdown began meanwhile).
    pub fn clip(&mut self, deadline: Instant) {
        for o in &mut self.owners {
            o.job.clip(deadline);
        }
    }

    /// Skips what is left of every graceful stop; what to perform, by owner.
    pub fn escalate(&mut self, now: Instant) -> Vec<(String, Vec<JobOut>)> {
        self.owners
            .iter_mut()
            .map(|o| (o.owner.clone(), o.job.escalate(now)))
            .collect()
    }
}

/// The live processes in `snap` that belong to `roots` by the rules of the module doc.
pub fn members(snap: &Snapshot, roots: &[ProcId]) -> Vec<Pid> {
    let protected = snap.protected();
    let ours: HashSet<Pid> = snap.descendants(snap.self_pid).into_iter().collect();
    let mut out: HashSet<Pid> = HashSet::new();
    for root in roots {
        if snap.get(*root).is_some_and(|p| !p.is_dead()) {
            out.insert(root.pid);
            out.extend(snap.descendants(root.pid));
        }
        let session_is_its = match snap.procs.get(&root.pid) {
            Some(leader) => leader.start == root.start,
            None => true,
        };
        if session_is_its {
            out.extend(
                snap.procs
                    .values()
                    .filter(|p| p.sid == root.pid && p.start >= root.start && !p.is_dead())
                    .map(|p| p.pid),
            );
        }
    }
    let mut v: Vec<Pid> = out
        .into_iter()
        .filter(|p| !protected.contains(p) && !ours.contains(p))
        .collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::proctree::tests::proc;

    #[test]
    fn a_recorded_tree_and_its_session_but_nothing_reused_or_protected() {
        let me = 5000;
        // Recorded main 100 (start 1000) still alive with a child; an escapee in its session
        // that was reparented to init; an unrelated process.
        let main = proc(100, 1, 100);
        let child = proc(101, 100, 100);
        let mut escapee = proc(150, 1, 100);
        escapee.start = 1600;
        let other = proc(200, 1, 200);
        let snap = Snapshot::new(
            me,
            [
                proc(1, 0, 1),
                proc(me, 1, me),
                main.clone(),
                child,
                escapee,
                other,
            ],
        );
        assert_eq!(members(&snap, &[main.id()]), vec![100, 101, 150]);
        // The recorded process is gone and its number now belongs to someone else's session.
        let mut reused = proc(100, 1, 100);
        reused.start = 99_999;
        let snap = Snapshot::new(me, [proc(me, 1, me), reused, proc(101, 100, 100)]);
        assert_eq!(members(&snap, &[main.id()]), Vec::<Pid>::new());
        // The leader is gone, the number is still the session's: its members are the leftovers.
        let mut left = proc(300, 1, 100);
        left.start = 2000;
        let mut older = proc(301, 1, 100);
        older.start = 10; // started before the recorded leader: not its.
        let snap = Snapshot::new(me, [proc(me, 1, me), left, older]);
        assert_eq!(members(&snap, &[main.id()]), vec![300]);
        // Never reapd or its ancestors.
        let snap = Snapshot::new(me, [proc(1, 0, 1), proc(me, 1, 100)]);
        assert_eq!(members(&snap, &[main.id()]), Vec::<Pid>::new());
    }
}

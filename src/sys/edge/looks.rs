//! Looking at `/proc` and collecting children, at the edge: which way to look (reapd's tree
//! alone, or every process of the machine, whichever reads fewer files and sees what the
//! request needs), and reaping exited children without walking every child for each.
//! Must never: leave a zombie child unreaped once its SIGCHLD has been read, or look at reapd's
//! tree alone when the request needs processes outside it.

use std::collections::BTreeMap;

use log::{debug, error, trace};
use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use super::{SysEdge, reaped};
use crate::core::io::{Input, ScanRequest};
use crate::core::proctree::{Pid, Snapshot};
use crate::sys::procfs;
use crate::wire::events::ExitStatus;

/// The sizes that decide between walking reapd's tree and scanning the machine.
#[derive(Debug)]
pub(super) struct Sizes {
    /// Processes of the machine, as of the last scan of every process.
    machine: usize,
    /// What a walk of reapd's tree (and the request's records) reads, as of the last look: a
    /// process's `stat`, and a `children` list per thread.
    tree: usize,
}

impl Sizes {
    pub(super) fn new() -> Sizes {
        Sizes {
            machine: procfs::count(),
            tree: 0,
        }
    }

    /// A walk is the cheaper look: it reads at most half as many files as a scan would.
    /// `members` is what the cgroups hold now (the tree may have grown since the last look).
    fn walk_is_cheaper(&self, members: usize) -> bool {
        2 * self.tree.max(members) < self.machine
    }

    fn learn(&mut self, snap: &Snapshot, req: &ScanRequest, walked: bool) {
        let cost = |pids: &mut dyn Iterator<Item = Pid>| -> usize {
            pids.filter_map(|p| snap.procs.get(&p))
                .map(|p| p.threads.max(1) as usize)
                .sum()
        };
        if walked {
            self.tree = cost(&mut snap.procs.keys().copied());
        } else {
            // A scan knows both.
            self.machine = snap.procs.len();
            self.tree = cost(&mut snap.descendants(snap.self_pid).into_iter()) + req.also.len();
        }
    }
}

/// Children reaped with `waitpid(-1)` in one go before the rest are reaped by pid.
const REAP_ANY: usize = 32;

/// What a look that walked reapd's tree is called in the trace.
const WALK: &str = "walk of reapd's tree";

impl SysEdge {
    /// Collects every child that has exited: SIGCHLD coalesces, so one signal may stand for many.
    pub(super) fn reap_children(&mut self) -> Vec<Input> {
        let mut any = 0;
        loop {
            if any == REAP_ANY && self.walk_works {
                self.reap_by_pid();
                break;
            }
            any += 1;
            let (pid, status) =
                match waitpid(nix::unistd::Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(w) => match reaped(w) {
                        Some(r) => r,
                        None if w == WaitStatus::StillAlive => {
                            return std::mem::take(&mut self.learnt);
                        }
                        None => continue,
                    },
                    Err(Errno::ECHILD) => return std::mem::take(&mut self.learnt),
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        error!("waitpid: {e}");
                        return std::mem::take(&mut self.learnt);
                    }
                };
            self.collected(pid, status);
        }
        std::mem::take(&mut self.learnt)
    }

    /// Reads `/proc` as the request needs: reapd's tree (with the cgroups' members and what the
    /// request names) when nothing outside it matters and the kernel can list it, else every
    /// process of the machine.
    pub(super) fn look(
        &mut self,
        req: &ScanRequest,
        groups: &BTreeMap<String, Vec<Pid>>,
    ) -> Snapshot {
        let t0 = std::time::Instant::now();
        // A walk reads two files per process of the tree, a scan one per process of the machine.
        let tree_is_small = self
            .sizes
            .walk_is_cheaper(groups.values().map(Vec::len).sum());
        let (how, snap) = if !req.only.is_empty() {
            ("check", procfs::scan(self.self_pid, req))
        } else if self.walk_works && tree_is_small && !req.needs_machine() {
            let roots: Vec<Pid> = req
                .also
                .iter()
                .chain(groups.values().flatten())
                .copied()
                .collect();
            (WALK, procfs::walk(self.self_pid, req, &roots))
        } else {
            ("scan of every process", procfs::scan(self.self_pid, req))
        };
        trace!(
            "{how}: {} processes in {} µs",
            snap.procs.len(),
            t0.elapsed().as_micros()
        );
        if req.only.is_empty() {
            self.sizes.learn(&snap, req, how == WALK);
        }
        snap
    }

    /// Many children ended at once (a killed storm's zombies, handed to reapd): each
    /// `waitpid(-1)` walks every child, the square of their number in all, so the rest are
    /// reaped by pid from the kernel's list of reapd's children, one step each. One reparented
    /// meanwhile brings its own SIGCHLD.
    fn reap_by_pid(&mut self) {
        for pid in procfs::own_children(self.self_pid) {
            loop {
                match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                    Ok(w) => {
                        if let Some((pid, status)) = reaped(w) {
                            self.collected(pid, status);
                        }
                    }
                    Err(Errno::EINTR) => continue,
                    Err(_) => {}
                }
                break;
            }
        }
    }

    /// A child was reaped: its exit status is told, its pidfd forgotten.
    fn collected(&mut self, pid: Pid, status: ExitStatus) {
        debug!("reaped pid {pid} ({status})");
        self.notified(pid);
        self.learnt.push(Input::Reaped { pid, status });
        self.forget(pid);
    }
}

//! Tracking: what reapd knows about the processes it is responsible for.
//!
//! Owns: the roots it spawned (service main processes, cleanup hooks) and the sessions they
//! lead, the attribution of every descendant to its owner across scans, and `touched`: every
//! process reapd has signalled and not yet seen gone, which is what a shutdown must verify.
//! Must never: forget a touched process on anything but proof that it is gone: its exit was
//! announced, it was reaped, or a complete scan no longer shows it alive.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::core::io::ScanRequest;
use crate::core::proctree::{Attribution, Owner, Pid, ProcId, Roots, Snapshot};

/// Process knowledge.
#[derive(Debug, Default)]
pub struct Tracking {
    /// Which owner every descendant has.
    pub attribution: Attribution,
    /// What reapd spawned, and the sessions of service main processes.
    pub roots: Roots,
    /// Every process reapd signalled and has not yet seen gone, with a description.
    pub touched: BTreeMap<ProcId, String>,
}

impl Tracking {
    /// Rebuilds the roots from the services' names and main processes.
    pub fn refresh_roots<'a>(&mut self, services: impl Iterator<Item = (&'a str, Option<ProcId>)>) {
        self.roots.services.clear();
        for (name, main) in services {
            self.roots.services.insert(name.to_string());
            if let Some(m) = main {
                self.roots
                    .spawned
                    .insert(m, Owner::Service(name.to_string()));
                self.roots.sessions.insert(m.pid, name.to_string());
            }
        }
        let names = &self.roots.services;
        self.roots.sessions.retain(|_, n| names.contains(n));
    }

    /// A service's main process started: it is a root and leads its session.
    pub fn spawned_service(&mut self, proc: ProcId, name: &str) {
        self.roots
            .spawned
            .insert(proc, Owner::Service(name.to_string()));
        self.roots.sessions.insert(proc.pid, name.to_string());
    }

    /// An exec check of a service started: it belongs to the service (its stop takes it along).
    pub fn spawned_check(&mut self, proc: ProcId, name: &str) {
        self.roots
            .spawned
            .insert(proc, Owner::Service(name.to_string()));
    }

    /// A cleanup hook started.
    pub fn spawned_hook(&mut self, proc: ProcId, index: usize) {
        self.roots.spawned.insert(proc, Owner::Hook(index));
    }

    /// A child was reaped: it is gone for certain.
    pub fn reaped(&mut self, pid: Pid) {
        // By range, not by a walk: thousands of children may be reaped one after another.
        let with_pid: Vec<ProcId> = self
            .touched
            .range(
                ProcId { pid, start: 0 }..=ProcId {
                    pid,
                    start: u64::MAX,
                },
            )
            .map(|(id, _)| *id)
            .collect();
        for id in with_pid {
            self.touched.remove(&id);
        }
        self.roots.spawned.retain(|id, _| id.pid != pid);
    }

    /// A process's exit was announced.
    pub fn gone(&mut self, id: ProcId) {
        self.touched.remove(&id);
    }

    /// Notes that reapd is about to signal `proc`.
    pub fn touch(&mut self, proc: ProcId, description: String) {
        self.touched.insert(proc, description);
    }

    /// Learns from a scan: attributes every descendant (returned by pid), settles touched
    /// processes a complete scan shows gone, and forgets sessions nobody uses any more (their
    /// numbers may be reused).
    pub fn scanned(&mut self, snap: &Snapshot) -> HashMap<Pid, Owner> {
        let mut owners = self.attribution.update(snap, &self.roots);
        // A service's cgroup says who is its own, whatever the ancestry shows (a process that
        // called setsid, cleared its environment and was reparented is still in it).
        for (name, pids) in &snap.groups {
            if !self.roots.services.contains(name) {
                continue;
            }
            for p in pids {
                if snap.procs.get(p).is_some_and(|i| !i.is_dead()) {
                    owners.insert(*p, Owner::Service(name.clone()));
                }
            }
        }
        if !snap.incomplete {
            self.touched
                .retain(|id, _| snap.get(*id).is_some_and(|p| !p.is_dead()));
        }
        let live: HashSet<Pid> = snap.procs.values().map(|p| p.sid).collect();
        let mains: HashSet<Pid> = self.roots.spawned.keys().map(|id| id.pid).collect();
        self.roots
            .sessions
            .retain(|sid, _| live.contains(sid) || mains.contains(sid));
        owners
    }

    /// The scan request that lets `/proc` be read sparingly: who needs no marker.
    pub fn scan_request(&self) -> ScanRequest {
        ScanRequest {
            attributed: self
                .attribution
                .known_pids()
                .chain(self.roots.spawned.keys().map(|id| id.pid))
                .collect(),
            service_sessions: self.roots.sessions.keys().copied().collect(),
            // What reapd signalled outside its tree (a sweep's targets) must stay in sight.
            also: self.touched.keys().map(|id| id.pid).collect(),
            ..ScanRequest::default()
        }
    }
}

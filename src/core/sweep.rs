//! The final sweep: what the last kill takes beyond the services' own trees.
//!
//! Owns: the choice of sweep targets: orphans reparented to reapd that belong to no service,
//! processes listening on a service's `ports`, and processes whose command line contains one of
//! its `match` strings, each with the reason it was chosen.
//! Must never: choose PID 1, reapd or one of its ancestors, whatever matches.

use std::collections::{BTreeMap, HashMap};

use crate::core::proctree::{Owner, Pid, ProcId, Snapshot};
use crate::wire::config::ServiceSpec;

/// Processes the final sweep takes, with why.
pub fn targets<'a>(
    snap: &Snapshot,
    services: impl Iterator<Item = &'a ServiceSpec>,
    owners: &HashMap<Pid, Owner>,
) -> BTreeMap<ProcId, String> {
    let protected = snap.protected();
    let mut out: BTreeMap<ProcId, String> = BTreeMap::new();
    for (pid, owner) in owners {
        if *owner == Owner::Unknown
            && let Some(p) = snap.procs.get(pid)
            && !p.is_dead()
            && p.ppid == snap.self_pid
        {
            out.insert(
                p.id(),
                "orphan reparented to reapd, belonging to no service".into(),
            );
        }
    }
    for s in services {
        for l in snap.listeners.iter().filter(|l| s.ports.contains(&l.port)) {
            if let Some(p) = snap
                .procs
                .get(&l.pid)
                .filter(|p| !p.is_dead() && !protected.contains(&p.pid))
            {
                out.entry(p.id()).or_insert_with(|| {
                    format!("listening on port {} of service {}", l.port, s.name)
                });
            }
        }
        for m in &s.matches {
            for p in snap.procs.values() {
                if !p.is_dead()
                    && !protected.contains(&p.pid)
                    && p.cmdline.as_deref().is_some_and(|c| c.contains(m.as_str()))
                {
                    out.entry(p.id()).or_insert_with(|| {
                        format!("command line matches {m:?} of service {}", s.name)
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::proctree::Listener;
    use crate::core::proctree::tests::proc;

    #[test]
    fn orphans_listeners_and_matches_but_never_reapd_or_its_ancestors() {
        let me = 10;
        let mut spec = ServiceSpec::new("web", vec!["x".into()]);
        spec.ports = vec![8080];
        spec.matches = vec!["web-worker".into()];
        let mut worker = proc(30, 1, 30);
        worker.cmdline = Some("/usr/bin/web-worker --fast".into());
        let mut parent = proc(5, 1, 5);
        parent.cmdline = Some("supervisor of web-worker".into());
        let mut snap = Snapshot::new(
            me,
            [
                proc(1, 0, 1),
                parent,
                proc(me, 5, me),
                proc(20, me, 20),
                worker,
                proc(40, 1, 40),
            ],
        );
        snap.listeners = vec![
            Listener {
                port: 8080,
                pid: 40,
            },
            Listener { port: 8080, pid: 1 },
        ];
        let owners = HashMap::from([(20, Owner::Unknown)]);
        let found = targets(&snap, [&spec].into_iter(), &owners);
        let pids: Vec<Pid> = found.keys().map(|id| id.pid).collect();
        assert_eq!(pids, vec![20, 30, 40]);
        assert!(found.values().any(|r| r.contains("port 8080")));
    }
}

//! Reload: what a new config changes, and the service table it leaves.
//!
//! Owns: [`plan`], which compares what each service is about to become (a pending replacement
//! counts, a service being removed no longer does) with the new config, and [`apply`], which
//! rebuilds the table in the new start order and says, per service, what its stop leads to.
//! Must never: start or stop anything itself; the supervisor does that from the plan, through the
//! one stop procedure.

use std::collections::{BTreeMap, HashSet};

use crate::core::service::{AfterStop, Service, ServiceState, Services};
use crate::wire::config::{Config, ServiceSpec};

/// What a reload changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// New services: they start.
    pub added: Vec<String>,
    /// Services gone from the config: they stop and leave.
    pub removed: Vec<String>,
    /// Services whose definition changed: they restart with it.
    pub changed: Vec<String>,
}

/// What each service is about to become: its pending replacement if it has one, nothing if it is
/// being removed.
fn effective(s: &Service) -> Option<&ServiceSpec> {
    match &s.then {
        AfterStop::Remove => None,
        AfterStop::Replace(spec) => Some(spec),
        AfterStop::Stay | AfterStop::Start | AfterStop::Retry => Some(&s.spec),
    }
}

/// Compares the running set with `new`.
pub fn plan(services: &Services, new: &Config) -> ReloadPlan {
    let mut p = ReloadPlan::default();
    for spec in &new.services {
        match services.get(&spec.name).and_then(effective) {
            None => p.added.push(spec.name.clone()),
            Some(old) if old != spec => p.changed.push(spec.name.clone()),
            Some(_) => {}
        }
    }
    let new_names: HashSet<&str> = new.services.iter().map(|s| s.name.as_str()).collect();
    let mut removed: Vec<String> = services
        .iter()
        .filter(|s| effective(s).is_some() && !new_names.contains(s.name()))
        .map(|s| s.spec.name.clone())
        .collect();
    removed.sort();
    p.removed = removed;
    p
}

/// Rebuilds the table in the new start order. A renewed service that runs (or is stopping)
/// restarts with its new definition once stopped; one that does not run just takes it. Removed
/// services stay, marked to leave, until their stop is over. Returns the services that must be
/// stopped for the plan to take effect, and the one-shots that completed under their old
/// definition: they run again with the new one.
pub fn apply(
    services: &mut Services,
    new: &Config,
    plan: &ReloadPlan,
) -> (Vec<String>, Vec<String>) {
    let mut rerun = Vec::new();
    let renewed: HashSet<&str> = plan
        .added
        .iter()
        .chain(&plan.changed)
        .map(String::as_str)
        .collect();
    let mut current: BTreeMap<String, Service> = services
        .take_all()
        .into_iter()
        .map(|s| (s.spec.name.clone(), s))
        .collect();
    let mut table: Vec<Service> = Vec::new();
    let mut to_stop: Vec<String> = plan.removed.clone();
    for spec in &new.services {
        let Some(mut s) = current.remove(&spec.name) else {
            table.push(Service::new(spec.clone()));
            continue;
        };
        if renewed.contains(spec.name.as_str()) {
            // Back in the config while being removed: it stays after all. A service a client
            // stopped stays down, whatever its new definition.
            if s.then == AfterStop::Remove {
                s.wanted = true;
            }
            s.then = match s.state {
                ServiceState::Stopping { .. } if s.spec == *spec && s.wanted => AfterStop::Start,
                ServiceState::Stopping { .. } if s.spec == *spec => AfterStop::Stay,
                ServiceState::Stopping { .. } => AfterStop::Replace(Box::new(spec.clone())),
                ServiceState::Running { .. } | ServiceState::Starting => {
                    to_stop.push(spec.name.clone());
                    AfterStop::Replace(Box::new(spec.clone()))
                }
                ServiceState::Done => {
                    s.spec = spec.clone();
                    s.state = ServiceState::Down;
                    rerun.push(spec.name.clone());
                    AfterStop::Stay
                }
                ServiceState::Down
                | ServiceState::Backoff { .. }
                | ServiceState::Waiting
                | ServiceState::Failed { .. } => {
                    s.spec = spec.clone();
                    AfterStop::Stay
                }
            };
        }
        table.push(s);
    }
    for (_, mut s) in current {
        s.then = AfterStop::Remove;
        s.wanted = false;
        table.push(s);
    }
    *services = Services::new(table);
    (to_stop, rerun)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::proctree::ProcId;
    use crate::core::sim::epoch;
    use crate::wire::config::parse;

    fn table(cfg: &str) -> Services {
        let c = parse(cfg).expect("valid");
        Services::new(c.services.into_iter().map(Service::new).collect())
    }

    #[test]
    fn added_removed_and_changed_against_what_services_are_about_to_become() {
        let mut s = table(
            r#"{"services": {"a": {"cmd": ["x"]}, "b": {"cmd": ["x"]}, "c": {"cmd": ["x"]}}}"#,
        );
        let new = parse(
            r#"{"services": {"a": {"cmd": ["x"]}, "b": {"cmd": ["y"]}, "d": {"cmd": ["x"]}}}"#,
        )
        .expect("valid");
        let p = plan(&s, &new);
        assert_eq!(p.added, ["d"]);
        assert_eq!(p.removed, ["c"]);
        assert_eq!(p.changed, ["b"]);
        // b runs: it restarts with its new definition; c leaves once stopped.
        if let Some(b) = s.get_mut("b") {
            b.started(ProcId { pid: 5, start: 1 }, epoch());
        }
        let (to_stop, _) = apply(&mut s, &new, &p);
        assert_eq!(to_stop, ["c", "b"]);
        assert_eq!(s.names(), ["a", "b", "d", "c"]);
        assert!(matches!(
            s.get("b").map(|b| &b.then),
            Some(AfterStop::Replace(_))
        ));
        assert_eq!(s.get("c").map(|c| &c.then), Some(&AfterStop::Remove));
        // The same file again changes nothing: b's pending replacement counts, c is leaving.
        let again = plan(&s, &new);
        assert_eq!(again, ReloadPlan::default());
    }

    #[test]
    fn a_service_put_back_while_it_is_being_removed_stays() {
        let cfg = r#"{"services": {"a": {"cmd": ["x"]}}}"#;
        let mut s = table(cfg);
        let empty = parse(r#"{"services": {}}"#).expect("valid");
        let p = plan(&s, &empty);
        apply(&mut s, &empty, &p);
        assert_eq!(s.get("a").map(|a| a.wanted), Some(false));
        let back = parse(cfg).expect("valid");
        let p = plan(&s, &back);
        assert_eq!(p.added, ["a"]);
        apply(&mut s, &back, &p);
        let a = s.get("a").expect("a");
        assert!(a.wanted && a.then == AfterStop::Stay);
    }
}

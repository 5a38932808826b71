//! Start order: every service after those it names in `after`, in linear time, with unknown
//! names and cycles reported (a cycle is named).

use std::collections::{BTreeSet, HashMap};

pub use crate::wire::json::join;
use crate::wire::text::quoted;

use super::parse::Cx;
use super::*;

impl Cx {
    /// Orders services so every one comes after the services it names in `after`; reports
    /// unknown names and cycles. Services of one level (whose dependencies are all placed) go
    /// in name order. Kahn's algorithm, level by level: linear in services plus dependencies.
    /// `declared` holds every service name in the file, including services with errors of their
    /// own: depending on one of those is not an "unknown service".
    pub(super) fn start_order(
        &mut self,
        specs: Vec<ServiceSpec>,
        declared: &BTreeSet<&str>,
    ) -> Vec<ServiceSpec> {
        let mut bad = !self.errors.is_empty();
        for s in &specs {
            for (i, dep) in s.after.iter().enumerate() {
                if !declared.contains(dep.as_str()) {
                    let hint = self.hint(dep, declared.iter().copied());
                    self.err(
                        &format!("{}[{i}]", join(&join("services", &s.name), "after")),
                        format!("unknown service {}{hint}", quoted(dep)),
                    );
                    bad = true;
                }
            }
        }
        if bad {
            return specs;
        }
        // `specs` is in name order (it comes from a sorted map), so indices sort like names.
        let index: HashMap<&str, usize> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let mut waiting_on: Vec<usize> = vec![0; specs.len()];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); specs.len()];
        for (i, s) in specs.iter().enumerate() {
            for dep in &s.after {
                if let (Some(&d), Some(n)) = (index.get(dep.as_str()), waiting_on.get_mut(i)) {
                    *n += 1;
                    if let Some(list) = dependents.get_mut(d) {
                        list.push(i);
                    }
                }
            }
        }
        let mut level: Vec<usize> = waiting_on
            .iter()
            .enumerate()
            .filter(|(_, n)| **n == 0)
            .map(|(i, _)| i)
            .collect();
        let mut placed: Vec<usize> = Vec::with_capacity(specs.len());
        while !level.is_empty() {
            let mut next = Vec::new();
            for &i in &level {
                for &d in dependents.get(i).into_iter().flatten() {
                    if let Some(n) = waiting_on.get_mut(d) {
                        *n -= 1;
                        if *n == 0 {
                            next.push(d);
                        }
                    }
                }
            }
            placed.append(&mut level);
            next.sort_unstable();
            level = next;
        }
        let mut slots: Vec<Option<ServiceSpec>> = specs.into_iter().map(Some).collect();
        let mut order: Vec<ServiceSpec> = placed
            .iter()
            .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
            .collect();
        // What is left waits, directly or not, on a cycle.
        let rest: Vec<ServiceSpec> = slots.into_iter().flatten().collect();
        if !rest.is_empty() {
            let cycle = find_cycle(&rest);
            self.err(
                &join(
                    &join("services", cycle.first().map_or("", String::as_str)),
                    "after",
                ),
                format!("dependency cycle: {}", cycle.join(" → ")),
            );
            order.extend(rest);
        }
        order
    }
}

/// Finds one dependency cycle among services that could not be ordered, starting from the
/// first of them: every one of them waits on at least one other, so following those leads back.
pub(super) fn find_cycle(rest: &[ServiceSpec]) -> Vec<String> {
    let deps: HashMap<&str, &Vec<String>> =
        rest.iter().map(|s| (s.name.as_str(), &s.after)).collect();
    let Some(start) = rest.first().map(|s| s.name.as_str()) else {
        return Vec::new();
    };
    let mut path: Vec<&str> = vec![start];
    let mut seen: HashMap<&str, usize> = HashMap::from([(start, 0)]);
    let mut cur = start;
    loop {
        let next = deps
            .get(cur)
            .and_then(|after| after.iter().find(|d| deps.contains_key(d.as_str())));
        let Some(next) = next.map(String::as_str) else {
            return path.iter().map(|s| s.to_string()).collect();
        };
        if let Some(&pos) = seen.get(next) {
            let mut cycle: Vec<String> = path
                .get(pos..)
                .unwrap_or_default()
                .iter()
                .map(|s| s.to_string())
                .collect();
            cycle.push(next.to_string());
            return cycle;
        }
        seen.insert(next, path.len());
        path.push(next);
        cur = next;
    }
}

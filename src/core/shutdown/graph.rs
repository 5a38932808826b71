//! The stop graph: which service may begin to stop, and how much of the bound it gets.
//!
//! Owns: [`StopGraph`] (services as nodes, `after` dependencies as edges), the share rule
//! ([`share`]) and the announced [`Plan`].
//! Must never: look at processes or clocks; it is told when a service is gone and what time it
//! is.
//!
//! A service begins to stop as soon as every service that depends on it (every service that
//! starts after it) is gone; independent chains proceed independently, so a stubborn service
//! holds back only what depends on it. The bound is planned per dependency path: when a service
//! begins to stop it gets its own stop timeout if the heaviest path after it still fits in what
//! is left, and otherwise at least an equal share of what is left among the services on its
//! longest path. Time a service does not use stays on the clock for those after it. All of it
//! is linear in services plus dependencies, and nothing recurses.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What the planner needs to know about one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopSpec {
    /// Service name.
    pub name: String,
    /// Services it starts after (they stop after it).
    pub after: Vec<String>,
    /// Its own stop timeout.
    pub stop_timeout: Duration,
}

/// The share of `left` a service gets when it begins to stop: what it asks (`requested`) if the
/// heaviest path after it (`rest`) still fits; otherwise at least `left / levels` (`levels`: the
/// services on its longest path, itself included), more when the rest needs less.
pub fn share(requested: Duration, rest: Duration, levels: u32, left: Duration) -> Duration {
    if requested.saturating_add(rest) <= left {
        return requested;
    }
    let equal = left / levels.max(1);
    requested.min(equal.max(left.saturating_sub(rest)))
}

/// One service in the announced plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedStop {
    /// The service.
    pub service: String,
    /// The services that must be gone before it begins to stop (those that depend on it).
    pub after: Vec<String>,
    /// Its own stop timeout.
    pub requested: Duration,
    /// Its share if everything before it took its whole share.
    pub share: Duration,
    /// When it begins to stop at the latest (every service before it taking its whole share),
    /// from the start of the shutdown.
    pub starts: Duration,
}

/// The shutdown plan announced when shutdown starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The whole bound.
    pub budget: Duration,
    /// Kept back for killing, sweeps, verification and cleanup hooks.
    pub reserve: Duration,
    /// Every service: first those nothing depends on, then those only they depend on, and so
    /// on, by name within each rank.
    pub stops: Vec<PlannedStop>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Progress {
    /// Some service that depends on it still runs.
    Waiting,
    /// Its stop began.
    Stopping,
    /// Gone.
    Stopped,
}

/// One service of the graph.
#[derive(Debug)]
struct Node {
    name: String,
    /// The services it starts after: they begin to stop once it is gone.
    deps: Vec<usize>,
    /// The services that start after it, still running.
    waiting_on: usize,
    requested: Duration,
    /// The heaviest path after it (requests capped at what the drain has).
    rest: Duration,
    /// The services on its longest path, itself included.
    levels: u32,
    progress: Progress,
}

/// The services of one shutdown and how far each is.
#[derive(Debug)]
pub struct StopGraph {
    nodes: Vec<Node>,
    index: HashMap<String, usize>,
    /// Dependents first: an order in which every service comes after those that depend on it.
    order: Vec<usize>,
    /// Services whose dependents are all gone, not yet handed out by [`StopGraph::ready`].
    unblocked: Vec<usize>,
    left_to_stop: usize,
}

impl StopGraph {
    /// The graph of `specs`, planned for `available` (the time the drain has).
    pub fn new(specs: &[StopSpec], available: Duration) -> StopGraph {
        let index: HashMap<String, usize> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let mut nodes: Vec<Node> = specs
            .iter()
            .map(|s| {
                // Names that are not (or no longer) services are ignored.
                let mut deps: Vec<usize> = s
                    .after
                    .iter()
                    .filter_map(|a| index.get(a).copied())
                    .collect();
                deps.sort_unstable();
                deps.dedup();
                Node {
                    name: s.name.clone(),
                    deps,
                    waiting_on: 0,
                    requested: s.stop_timeout,
                    rest: Duration::ZERO,
                    levels: 1,
                    progress: Progress::Waiting,
                }
            })
            .collect();
        let edges: Vec<(usize, usize)> = nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.deps.iter().map(move |&d| (i, d)))
            .collect();
        for &(_, d) in &edges {
            if let Some(n) = nodes.get_mut(d) {
                n.waiting_on += 1;
            }
        }
        // Kahn's algorithm from the services nothing depends on: dependents first.
        let mut pending: Vec<usize> = nodes.iter().map(|n| n.waiting_on).collect();
        let mut order: Vec<usize> = (0..nodes.len())
            .filter(|&i| pending.get(i) == Some(&0))
            .collect();
        let mut next = 0;
        while let Some(&i) = order.get(next) {
            next += 1;
            for &d in nodes.get(i).map(|n| n.deps.as_slice()).unwrap_or_default() {
                if let Some(p) = pending.get_mut(d) {
                    *p -= 1;
                    if *p == 0 {
                        order.push(d);
                    }
                }
            }
        }
        if order.len() < nodes.len() {
            // A cycle (config validation rejects them) would wait forever: its services begin
            // to stop at once instead, and still stop.
            for (i, n) in nodes.iter_mut().enumerate() {
                if pending.get(i).is_some_and(|&p| p > 0) {
                    n.waiting_on = 0;
                    order.push(i);
                }
            }
        }
        // Dependencies last: walking the order backwards sees every dependency before the
        // services that start after it.
        for &i in order.iter().rev() {
            let (rest, levels) = nodes
                .get(i)
                .map(|n| n.deps.as_slice())
                .unwrap_or_default()
                .iter()
                .filter_map(|&d| nodes.get(d))
                .fold((Duration::ZERO, 1u32), |(rest, levels), d| {
                    let weight = d.requested.min(available).saturating_add(d.rest);
                    (rest.max(weight), levels.max(d.levels.saturating_add(1)))
                });
            if let Some(n) = nodes.get_mut(i) {
                n.rest = rest;
                n.levels = levels;
            }
        }
        let unblocked = order
            .iter()
            .copied()
            .filter(|&i| nodes.get(i).is_some_and(|n| n.waiting_on == 0))
            .collect();
        StopGraph {
            left_to_stop: nodes.len(),
            nodes,
            index,
            order,
            unblocked,
        }
    }

    /// The plan as announced: each service's share if every service before it took its whole
    /// share, within `available`.
    pub fn plan(&self, budget: Duration, reserve: Duration, available: Duration) -> Plan {
        struct Planned {
            starts: Duration,
            share: Duration,
            /// How many services at most stand in its way, one behind the other.
            rank: usize,
            dependents: Vec<usize>,
        }
        let mut planned: Vec<Planned> = self
            .nodes
            .iter()
            .map(|_| Planned {
                starts: Duration::ZERO,
                share: Duration::ZERO,
                rank: 0,
                dependents: Vec::new(),
            })
            .collect();
        for &i in &self.order {
            let (Some(n), Some(p)) = (self.nodes.get(i), planned.get_mut(i)) else {
                continue;
            };
            let left = available.saturating_sub(p.starts);
            p.share = share(n.requested, n.rest, n.levels, left);
            let (end, rank) = (p.starts + p.share, p.rank + 1);
            for &d in &n.deps {
                if let Some(q) = planned.get_mut(d) {
                    q.starts = q.starts.max(end);
                    q.rank = q.rank.max(rank);
                    q.dependents.push(i);
                }
            }
        }
        let name = |i: &usize| self.nodes.get(*i).map_or("", |n| n.name.as_str());
        let mut stops: Vec<(usize, &Planned)> = planned.iter().enumerate().collect();
        stops.sort_unstable_by(|(a, pa), (b, pb)| (pa.rank, name(a)).cmp(&(pb.rank, name(b))));
        let stops = stops
            .into_iter()
            .filter_map(|(i, p)| {
                let n = self.nodes.get(i)?;
                let mut after: Vec<String> =
                    p.dependents.iter().map(|d| name(d).to_string()).collect();
                after.sort_unstable();
                Some(PlannedStop {
                    service: n.name.clone(),
                    after,
                    requested: n.requested,
                    share: p.share,
                    starts: p.starts,
                })
            })
            .collect();
        Plan {
            budget,
            reserve,
            stops,
        }
    }

    /// Services that may begin to stop now, each with its deadline; they count as stopping
    /// from now on.
    pub fn ready(&mut self, now: Instant, drain_deadline: Instant) -> Vec<(String, Instant)> {
        let left = drain_deadline.saturating_duration_since(now);
        let mut ready = std::mem::take(&mut self.unblocked);
        let name = |i: &usize| self.nodes.get(*i).map_or("", |n| n.name.as_str());
        ready.sort_unstable_by(|a, b| name(a).cmp(name(b)));
        let mut out = Vec::with_capacity(ready.len());
        for i in ready {
            if let Some(n) = self.nodes.get_mut(i)
                && n.progress == Progress::Waiting
            {
                n.progress = Progress::Stopping;
                let share = share(n.requested, n.rest, n.levels, left);
                out.push((n.name.clone(), now + share));
            }
        }
        out
    }

    /// A service is gone: the services it starts after wait for one fewer. False when it was
    /// not stopping (unknown, or stopped already).
    pub fn stopped(&mut self, name: &str) -> bool {
        let Some(n) = self.index.get(name).and_then(|&i| self.nodes.get_mut(i)) else {
            return false;
        };
        if n.progress != Progress::Stopping {
            return false;
        }
        n.progress = Progress::Stopped;
        let deps = n.deps.clone();
        self.left_to_stop = self.left_to_stop.saturating_sub(1);
        for d in deps {
            if let Some(dn) = self.nodes.get_mut(d)
                && dn.waiting_on > 0
            {
                dn.waiting_on -= 1;
                if dn.waiting_on == 0 {
                    self.unblocked.push(d);
                }
            }
        }
        true
    }

    /// True once every service is gone.
    pub fn all_stopped(&self) -> bool {
        self.left_to_stop == 0
    }
}

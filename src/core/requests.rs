//! Control requests that are answered later, and the answers built from the service table.
//!
//! Owns: [`Waiters`], the requests (`start`, `stop`, `restart`) whose reply waits for a service to
//! run or to be stopped, and the replies describing the daemon (`status`, `list`) and errors that
//! name what was meant.
//! Must never: answer a request twice or not at all: a waiter is answered when its service gets
//! there, when it can no longer get there, when its connection goes away (dropped unanswered),
//! or when the shutdown's grace for requests runs out.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::core::io::{ConnId, Containment, Mode, ReplyTo};
use crate::core::service::Services;
use crate::wire::replies::{ErrorCode, ErrorReply, Reply, ServiceCounts, StatusReply, Usage};
use crate::wire::text::{did_you_mean, ms, quoted};

/// What a deferred request waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waiter {
    /// The service to be stopped (`stop`).
    Stopped(String),
    /// The service to run (`start`, `restart`).
    Running(String),
    /// Every service that should run to be ready (`ready` with `wait`).
    Ready,
}

/// Requests whose replies wait.
#[derive(Debug, Default)]
pub struct Waiters {
    list: Vec<(ReplyTo, Waiter)>,
}

impl Waiters {
    /// A request waits.
    pub fn push(&mut self, to: ReplyTo, w: Waiter) {
        self.list.push((to, w));
    }

    /// How many requests wait for this.
    pub fn count(&self, what: &Waiter) -> usize {
        self.list.iter().filter(|(_, w)| w == what).count()
    }

    /// Takes every request waiting for this.
    pub fn take(&mut self, what: &Waiter) -> Vec<ReplyTo> {
        let (hit, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.list)
            .into_iter()
            .partition(|(_, w)| w == what);
        self.list = keep;
        hit.into_iter().map(|(to, _)| to).collect()
    }

    /// Takes every waiting request (the grace for requests is over).
    pub fn take_all(&mut self) -> Vec<ReplyTo> {
        std::mem::take(&mut self.list)
            .into_iter()
            .map(|(to, _)| to)
            .collect()
    }

    /// Forgets the requests of a connection that went away.
    pub fn drop_conn(&mut self, conn: ConnId) {
        self.list.retain(|((c, _), _)| *c != conn);
    }
}

/// `status`.
pub fn status(
    state: &str,
    pid: i32,
    mode: Mode,
    uptime: std::time::Duration,
    services: &Services,
    containment: &Containment,
    usage: &BTreeMap<String, Usage>,
) -> Reply {
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for s in services.iter() {
        *by_state.entry(s.state_name().to_string()).or_default() += 1;
    }
    Reply::Status(StatusReply {
        state: state.into(),
        pid,
        version: env!("CARGO_PKG_VERSION").into(),
        mode: match mode {
            Mode::Config => "config",
            Mode::Single => "single",
        }
        .into(),
        uptime_ms: ms(uptime),
        services: ServiceCounts {
            total: services.len(),
            by_state,
        },
        containment: containment.describe.clone(),
        cgroups: containment.cgroups,
        usage: usage.clone(),
    })
}

/// `list`.
pub fn list(services: &Services, now: Instant, usage: &BTreeMap<String, Usage>) -> Reply {
    Reply::List {
        services: services
            .iter()
            .map(|s| {
                let mut row = s.row(now);
                row.usage = usage.get(s.name()).cloned();
                row
            })
            .collect(),
    }
}

/// `start` or `restart` is answered once the service runs.
pub fn running(services: &Services, name: &str) -> Reply {
    let s = services.get(name);
    Reply::Service {
        name: name.into(),
        state: s.map_or("stopped", |s| s.state_name()).into(),
        pid: s.and_then(|s| s.main()).map(|m| m.pid),
        how: None,
        elapsed_ms: None,
    }
}

/// A name that names no service, with a suggestion when one is close.
pub fn no_such(name: &str, services: &Services) -> ErrorReply {
    let hint = did_you_mean(name, services.iter().map(|s| s.name()));
    ErrorReply::new(
        ErrorCode::NoSuchService,
        format!("no service named {}{hint}", quoted(name)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_are_taken_once_and_dropped_with_their_connection() {
        let mut w = Waiters::default();
        w.push((1, None), Waiter::Running("a".into()));
        w.push((2, None), Waiter::Running("a".into()));
        w.push((2, None), Waiter::Stopped("b".into()));
        w.drop_conn(1);
        assert_eq!(w.take(&Waiter::Running("a".into())).len(), 1);
        assert!(w.take(&Waiter::Running("a".into())).is_empty());
        assert_eq!(w.take_all().len(), 1);
    }
}

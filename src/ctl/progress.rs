//! The live shutdown view of `reapd ctl watch`: service by service, and the time left.
//!
//! Owns: [`Progress`], which follows the typed events of a shutdown (`shutdown_plan`,
//! `stopping`, `stopped`, `killed`, `state`, `done`) and after each step prints one line: every
//! service in stop order with where it stands, and the time left of the budget.
//! Must never: invent a fact: each cell is an event's field or the time between two events'
//! timestamps, and nothing is shown before the plan says what the budget is.

use crate::ctl::render::{Colour, Style, rough};
use crate::wire::events::{Event, PlanEntry};
use crate::wire::text::duration_ms;

/// Where the shutdown stands, as far as the events told.
#[derive(Debug, Default)]
pub struct Progress {
    /// When the budget runs out (the plan's timestamp plus its budget), until `done`.
    budget_end_ms: Option<u64>,
    /// Services in stop order, with their state.
    services: Vec<(String, StopState)>,
    /// The last progress line printed (nothing changed: nothing printed).
    last: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum StopState {
    Waiting,
    Stopping { since_ms: u64, timeout_ms: u64 },
    Stopped { how: String, elapsed_ms: u64 },
}

/// What an event does to the shutdown's progress.
#[derive(Debug, PartialEq, Eq)]
enum Step<'a> {
    /// The plan: the budget and the services, in an order they may stop in.
    Plan {
        budget_ms: u64,
        services: &'a [PlanEntry],
    },
    /// A service's stop began.
    Stopping { service: &'a str, timeout_ms: u64 },
    /// A service is gone.
    Stopped {
        service: &'a str,
        how: &'a str,
        elapsed_ms: u64,
    },
    /// A step worth a progress line that changes no service (a phase, a kill).
    Moved,
    /// The shutdown is over.
    Done,
    /// Nothing the progress shows.
    Nothing,
}

fn step(ev: &Event) -> Step<'_> {
    match ev {
        Event::ShutdownPlan {
            budget_ms,
            services,
            ..
        } => Step::Plan {
            budget_ms: *budget_ms,
            services,
        },
        Event::Stopping {
            service,
            timeout_ms,
            ..
        } => Step::Stopping {
            service,
            timeout_ms: *timeout_ms,
        },
        Event::Stopped {
            service,
            how,
            elapsed_ms,
            ..
        } => Step::Stopped {
            service,
            how,
            elapsed_ms: *elapsed_ms,
        },
        Event::State { .. } | Event::Killed { .. } => Step::Moved,
        Event::Done { .. } => Step::Done,
        Event::AlreadyStopping { .. }
        | Event::Unheeded { .. }
        | Event::Forwarded { .. }
        | Event::NoServices
        | Event::Spawned { .. }
        | Event::SpawnFailed { .. }
        | Event::Exited { .. }
        | Event::Restarting { .. }
        | Event::KeptDown { .. }
        | Event::Waiting { .. }
        | Event::Ready { .. }
        | Event::NotReady { .. }
        | Event::Completed { .. }
        | Event::Failed { .. }
        | Event::Health { .. }
        | Event::Signalled { .. }
        | Event::Removed { .. }
        | Event::SignalSent { .. }
        | Event::Sweep { .. }
        | Event::CleanupStarted { .. }
        | Event::CleanupOverran { .. }
        | Event::Cleanup { .. }
        | Event::Reloading { .. }
        | Event::Reloaded { .. }
        | Event::ReloadRejected { .. }
        | Event::ConfigWarning { .. }
        | Event::Recovering { .. }
        | Event::LeftByPredecessor { .. }
        | Event::Recovered { .. } => Step::Nothing,
    }
}

/// What to show with one event.
#[derive(Debug, PartialEq, Eq)]
pub struct Shown {
    /// Milliseconds left of the budget at the event, while a shutdown runs (not with the plan,
    /// which states the budget, nor with `done`).
    pub left_ms: Option<u64>,
    /// The progress line to print after the event, when it moved something.
    pub line: Option<String>,
}

impl Progress {
    /// Takes in one event that happened at `ts_ms`.
    pub fn observe(&mut self, ev: &Event, ts_ms: u64, style: &Style) -> Shown {
        let left_ms = self.budget_end_ms.map(|end| end.saturating_sub(ts_ms));
        let mut set = |name: &str, state: StopState| {
            if let Some((_, st)) = self.services.iter_mut().find(|(n, _)| n == name) {
                *st = state;
            }
        };
        // State changes are recorded on every event, but a line is printed only when a service
        // finishes or reapd changes phase: one line per step, not one per signal.
        match step(ev) {
            Step::Plan {
                budget_ms,
                services,
            } => {
                self.budget_end_ms = Some(ts_ms.saturating_add(budget_ms));
                self.services = services
                    .iter()
                    .map(|s| (s.service.clone(), StopState::Waiting))
                    .collect();
                return Shown {
                    left_ms: None,
                    line: None,
                };
            }
            Step::Stopping {
                service,
                timeout_ms,
            } => {
                set(
                    service,
                    StopState::Stopping {
                        since_ms: ts_ms,
                        timeout_ms,
                    },
                );
                return Shown {
                    left_ms,
                    line: None,
                };
            }
            Step::Stopped {
                service,
                how,
                elapsed_ms,
            } => set(
                service,
                StopState::Stopped {
                    how: how.to_string(),
                    elapsed_ms,
                },
            ),
            Step::Moved => {}
            Step::Done => {
                self.budget_end_ms = None;
                return Shown {
                    left_ms: None,
                    line: None,
                };
            }
            Step::Nothing => {
                return Shown {
                    left_ms,
                    line: None,
                };
            }
        }
        Shown {
            left_ms,
            line: self.line(ts_ms, style),
        }
    }

    /// `    progress: web exited in 1.2 s, db waiting | 27.8 s left of the budget`, unless it
    /// says what the last one said.
    fn line(&mut self, ts_ms: u64, style: &Style) -> Option<String> {
        let end = self.budget_end_ms?;
        let cells: Vec<String> = self
            .services
            .iter()
            .map(|(name, st)| match st {
                StopState::Waiting => format!("{name} waiting"),
                StopState::Stopping {
                    since_ms,
                    timeout_ms,
                } => style.paint(
                    Some(Colour::Yellow),
                    &format!(
                        "{name} stopping ({} of {})",
                        duration_ms(rough(ts_ms.saturating_sub(*since_ms))),
                        duration_ms(*timeout_ms)
                    ),
                ),
                StopState::Stopped { how, elapsed_ms } if how == "killed" => style.paint(
                    Some(Colour::Red),
                    &format!("{name} killed after {}", duration_ms(*elapsed_ms)),
                ),
                StopState::Stopped { how, elapsed_ms } => style.paint(
                    Some(Colour::Green),
                    &format!("{name} {how} in {}", duration_ms(*elapsed_ms)),
                ),
            })
            .collect();
        let cells = cells.join(", ");
        if cells == self.last {
            return None;
        }
        self.last = cells.clone();
        Some(format!(
            "    progress: {cells} | {} left of the budget",
            duration_ms(rough(end.saturating_sub(ts_ms)))
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::events::tests::one_of_each;

    fn entry(
        service: &str,
        after: &[&str],
        requested_ms: u64,
        share_ms: u64,
        starts_ms: u64,
    ) -> PlanEntry {
        PlanEntry {
            service: service.into(),
            after: after.iter().map(|a| a.to_string()).collect(),
            requested_ms,
            share_ms,
            starts_ms,
        }
    }

    fn plan() -> Event {
        Event::ShutdownPlan {
            budget_ms: 30_000,
            reserve_ms: 2_500,
            services: vec![
                entry("web", &[], 10_000, 10_000, 0),
                entry("worker", &[], 10_000, 10_000, 0),
                entry("db", &["web", "worker"], 20_000, 17_300, 10_000),
            ],
        }
    }

    fn stopping(service: &str, timeout_ms: u64) -> Event {
        Event::Stopping {
            service: service.into(),
            signal: "SIGTERM".into(),
            timeout_ms,
            scope: "tree".into(),
        }
    }

    fn stopped(service: &str, how: &str, elapsed_ms: u64) -> Event {
        Event::Stopped {
            service: service.into(),
            how: how.into(),
            elapsed_ms,
            leftovers: false,
            cgroup_empty: false,
        }
    }

    #[test]
    fn shutdown_progress_goes_service_by_service_with_the_budget_left() {
        let mut p = Progress::default();
        let s = Style::plain();
        let mut ev = |e: Event, ts: u64| p.observe(&e, ts, &s);
        assert_eq!(
            ev(plan(), 1000),
            Shown {
                left_ms: None,
                line: None
            },
            "the plan line says it all"
        );
        assert_eq!(ev(stopping("web", 10_000), 1000).line, None);
        assert_eq!(ev(stopping("worker", 5_000), 1000).left_ms, Some(30_000));
        let shown = ev(stopped("web", "exited", 1200), 2200);
        assert_eq!(shown.left_ms, Some(28_800));
        assert_eq!(
            shown.line.as_deref(),
            Some(
                "    progress: web exited in 1.2 s, worker stopping (1.2 s of 5 s), db waiting | 28.8 s left of the budget"
            )
        );
        let line = ev(stopped("worker", "killed", 5000), 6000).line;
        assert_eq!(
            line.as_deref(),
            Some(
                "    progress: web exited in 1.2 s, worker killed after 5 s, db waiting | 25 s left of the budget"
            )
        );
        let spawned = Event::Spawned {
            service: "x".into(),
            pid: 1,
        };
        assert_eq!(ev(spawned, 6001).line, None);
        let done = one_of_each().pop().expect("done");
        assert_eq!(
            ev(done, 7000),
            Shown {
                left_ms: None,
                line: None
            }
        );
    }

    #[test]
    fn nothing_is_shown_before_the_plan() {
        let mut p = Progress::default();
        let s = Style::plain();
        for ev in one_of_each() {
            if !matches!(ev, Event::ShutdownPlan { .. }) {
                assert_eq!(
                    p.observe(&ev, 5, &s),
                    Shown {
                        left_ms: None,
                        line: None
                    },
                    "{ev:?}"
                );
            }
        }
    }

    #[test]
    fn a_step_that_changes_nothing_prints_nothing() {
        let mut p = Progress::default();
        let s = Style::plain();
        p.observe(&plan(), 0, &s);
        let state = Event::State {
            state: "killing".into(),
            reason: "x".into(),
        };
        assert!(p.observe(&state, 10, &s).line.is_some());
        assert_eq!(p.observe(&state, 20, &s).line, None);
    }
}

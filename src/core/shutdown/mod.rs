//! The daemon's shutdown state machine.
//!
//! Owns: [`Phase`] (Running → Draining → Killing → CleanedUp → Exit), the transitions between
//! phases, the stop graph's progress ([`graph`]: which service may begin to stop, and its share
//! of the bound), and every shutdown deadline.
//! Must never: stop a service itself, make a system call or read a clock. It turns triggers,
//! progress reports and the current time into [`Step`]s that the supervisor carries out.
//!
//! Budget: the whole shutdown must end before `shutdown_timeout`. A reserve at the end is kept for
//! killing, sweeping and cleanup hooks; the graceful stops share the rest, per dependency path
//! (see [`graph`]).

#![forbid(unsafe_code)]

pub mod graph;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::core::timers::{Timer, earliest};
use crate::wire::config::DEFAULT_STOP_TIMEOUT;

pub use graph::{Plan, PlannedStop, StopGraph, StopSpec};

/// Where the daemon is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Supervising.
    Running,
    /// Listener closed; services stopping as the stop graph allows.
    Draining,
    /// Freezing and killing whatever is left, sweeping, verifying, running cleanup hooks.
    Killing,
    /// Everything is done; the socket and lock are being removed.
    CleanedUp,
    /// The process is exiting.
    Exit,
}

impl Phase {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Draining => "draining",
            Phase::Killing => "killing",
            Phase::CleanedUp => "cleaned_up",
            Phase::Exit => "exit",
        }
    }
}

/// What asked for the shutdown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A signal (SIGTERM, SIGINT, SIGQUIT).
    Signal(Signal),
    /// The `shutdown` control command.
    Request,
    /// Single-command mode: the command exited on its own.
    CommandExited,
    /// The event loop can no longer wait for events: everything is killed at once.
    LoopFailed(String),
    /// An essential service ended for good.
    EssentialEnded(String),
}

impl Trigger {
    /// For logs and events.
    pub fn describe(&self) -> String {
        match self {
            Trigger::Signal(s) => s.as_str().to_string(),
            Trigger::Request => "shutdown request".into(),
            Trigger::CommandExited => "command exited".into(),
            Trigger::LoopFailed(e) => format!("event loop failure ({e})"),
            Trigger::EssentialEnded(name) => format!("essential service {name} ended"),
        }
    }
}

/// The least kept back for killing, sweeping and cleanup: a freeze-and-kill pass and one look.
pub const RESERVE_MIN: Duration = Duration::from_millis(200);
/// The most kept back: with cleanup hooks they get what killing leaves of it.
pub const RESERVE_MAX: Duration = Duration::from_millis(2500);
/// The most kept at the very end: removing a socket and a lock and exiting take microseconds,
/// but a loaded machine may not run reapd at once.
pub const EXIT_MARGIN_MAX: Duration = Duration::from_millis(200);

/// Time kept back from the graceful stops for killing, sweeping and cleanup: a twelfth of the
/// budget, within [`RESERVE_MIN`] and [`RESERVE_MAX`] (never more than half the budget).
pub fn reserve_for(budget: Duration) -> Duration {
    (budget / 12)
        .clamp(RESERVE_MIN, RESERVE_MAX)
        .min(budget / 2)
}

/// Time kept at the very end to remove the socket and lock, flush and exit: a twentieth of the
/// budget, at most [`EXIT_MARGIN_MAX`].
pub fn exit_margin(budget: Duration) -> Duration {
    (budget / 20).min(EXIT_MARGIN_MAX)
}

/// What the shutdown machine is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShutdownInput {
    /// Something asked for a shutdown (again).
    Trigger(Trigger),
    /// A service whose stop the graph began is gone.
    ServiceStopped(String),
    /// The orphans no service claims are gone.
    OrphansStopped,
    /// Everything left was killed and verified gone (or could not be).
    KillFinished,
    /// The last cleanup hook ended.
    HooksFinished,
    /// Time passed.
    Tick,
}

/// What the supervisor must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Entered a new phase (log it, tell watchers and the service manager).
    Entered {
        /// The new phase.
        phase: Phase,
        /// Why.
        reason: String,
    },
    /// Shutdown began: stop accepting connections.
    CloseListener,
    /// Announce the plan.
    Announce(Plan),
    /// Stop these services, each by its deadline at the latest.
    StopServices(Vec<(String, Instant)>),
    /// Stop the orphans no service claims, by `deadline` at the latest.
    StopOrphans {
        /// End of their graceful stop.
        deadline: Instant,
    },
    /// In-flight requests are out of time: fail them and close idle connections.
    EndGrace,
    /// Freeze and kill everything that is left, then sweep. (How long killed processes may take
    /// to disappear is the machine's own timer: [`Shutdown::next_timer`].)
    KillEverything,
    /// Run the cleanup hooks; the last one must end by `deadline`.
    RunHooks {
        /// Hard end of the hooks.
        deadline: Instant,
    },
    /// Everything is done (or out of time): report, remove the socket and lock, exit.
    Finish,
    /// A repeated trigger: tell it, change nothing.
    AlreadyStopping {
        /// What asked.
        trigger: String,
        /// The phase the shutdown is in.
        phase: Phase,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KillStage {
    Sweeping { until: Instant },
    Hooks,
}

/// The shutdown state machine.
#[derive(Debug)]
pub struct Shutdown {
    phase: Phase,
    budget: Duration,
    grace: Duration,
    has_hooks: bool,
    started: Option<Instant>,
    grace_over: bool,
    sigints: u32,
    graph: Option<StopGraph>,
    orphans_stopped: bool,
    kill: Option<KillStage>,
}

impl Shutdown {
    /// A machine in [`Phase::Running`].
    pub fn new(budget: Duration, grace: Duration, has_hooks: bool) -> Self {
        Shutdown {
            phase: Phase::Running,
            budget,
            grace: grace.min(budget),
            has_hooks,
            started: None,
            grace_over: false,
            sigints: 0,
            graph: None,
            orphans_stopped: false,
            kill: None,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The bound on the whole shutdown.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// When shutdown began.
    pub fn started(&self) -> Option<Instant> {
        self.started
    }

    /// Updates limits after a config reload (only meaningful while running).
    pub fn reconfigure(&mut self, budget: Duration, grace: Duration, has_hooks: bool) {
        if self.phase == Phase::Running {
            *self = Shutdown::new(budget, grace, has_hooks);
        }
    }

    /// The moment the whole shutdown must be over (exit margin excluded).
    pub fn hard_deadline(&self) -> Option<Instant> {
        self.started
            .map(|t| t + self.budget.saturating_sub(exit_margin(self.budget)))
    }

    /// What the graceful stops share: the bound less the reserve and the exit margin.
    fn drain_budget(&self) -> Duration {
        self.budget
            .saturating_sub(reserve_for(self.budget) + exit_margin(self.budget))
    }

    fn drain_deadline(&self) -> Option<Instant> {
        self.started.map(|t| t + self.drain_budget())
    }

    /// The next moment [`ShutdownInput::Tick`] has work to do, and what for.
    pub fn next_timer(&self) -> Option<(Timer, Instant)> {
        let t0 = self.started?;
        let stage = match self.phase {
            Phase::Draining => self.drain_deadline().map(|d| (Timer::DrainBudget, d)),
            Phase::Killing => match self.kill {
                Some(KillStage::Sweeping { until }) => Some((Timer::KillStage, until)),
                _ => self.hard_deadline().map(|d| (Timer::Bound, d)),
            },
            _ => None,
        };
        let grace = (!self.grace_over && matches!(self.phase, Phase::Draining | Phase::Killing))
            .then(|| (Timer::RequestGrace, t0 + self.grace));
        earliest(stage.into_iter().chain(grace))
    }

    /// Whether [`Shutdown::on_input`] reads its `specs` for this input: only the trigger that
    /// starts the shutdown plans the stops. Callers with many services skip building the list
    /// for every other input (a tick, each service's end), which would cost O(services) each.
    pub fn needs_specs(&self, input: &ShutdownInput) -> bool {
        self.phase == Phase::Running && matches!(input, ShutdownInput::Trigger(_))
    }

    /// Feeds one input. `specs` is read only when [`Shutdown::needs_specs`] says so.
    pub fn on_input(
        &mut self,
        input: ShutdownInput,
        specs: &[StopSpec],
        now: Instant,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        match (self.phase, input) {
            (Phase::Running, ShutdownInput::Trigger(t)) => {
                if t == Trigger::Signal(Signal::SIGINT) {
                    self.sigints = 1;
                }
                self.started = Some(now);
                self.phase = Phase::Draining;
                steps.push(Step::Entered {
                    phase: Phase::Draining,
                    reason: t.describe(),
                });
                steps.push(Step::CloseListener);
                let available = self.drain_budget();
                let graph = StopGraph::new(specs, available);
                steps.push(Step::Announce(graph.plan(
                    self.budget,
                    reserve_for(self.budget),
                    available,
                )));
                self.graph = Some(graph);
                self.orphans_stopped = false;
                if let Trigger::LoopFailed(_) = t {
                    // Nothing can be waited for: everything is killed at once.
                    self.enter_killing(t.describe(), now, &mut steps);
                } else {
                    steps.push(Step::StopOrphans {
                        deadline: now + DEFAULT_STOP_TIMEOUT.min(available),
                    });
                    self.advance_graph(now, &mut steps);
                }
            }
            (Phase::Draining, ShutdownInput::Trigger(Trigger::Signal(Signal::SIGINT)))
                if self.sigints >= 1 =>
            {
                self.sigints += 1;
                self.enter_killing("second SIGINT".into(), now, &mut steps);
            }
            (Phase::Draining, ShutdownInput::Trigger(t @ Trigger::LoopFailed(_))) => {
                self.enter_killing(t.describe(), now, &mut steps);
            }
            (
                Phase::Draining | Phase::Killing | Phase::CleanedUp | Phase::Exit,
                ShutdownInput::Trigger(t),
            ) => {
                if t == Trigger::Signal(Signal::SIGINT) {
                    self.sigints += 1;
                }
                steps.push(Step::AlreadyStopping {
                    trigger: t.describe(),
                    phase: self.phase,
                });
            }
            (Phase::Draining, ShutdownInput::ServiceStopped(name)) => {
                if let Some(g) = self.graph.as_mut()
                    && g.stopped(&name)
                {
                    self.advance_graph(now, &mut steps);
                }
            }
            (Phase::Draining, ShutdownInput::OrphansStopped) => {
                self.orphans_stopped = true;
                self.advance_graph(now, &mut steps);
            }
            (Phase::Killing, ShutdownInput::KillFinished) => {
                if matches!(self.kill, Some(KillStage::Sweeping { .. })) {
                    self.after_sweep(now, &mut steps);
                }
            }
            (Phase::Killing, ShutdownInput::HooksFinished) => {
                if self.kill == Some(KillStage::Hooks) {
                    self.finish(&mut steps);
                }
            }
            (Phase::Draining | Phase::Killing, ShutdownInput::Tick) => {
                if let Some(t0) = self.started
                    && !self.grace_over
                    && now >= t0 + self.grace
                {
                    self.grace_over = true;
                    steps.push(Step::EndGrace);
                }
                // Killing is never skipped, even when the loop wakes up late (reapd was stopped,
                // or the machine stalled) and both deadlines have passed: one kill pass runs
                // before the report.
                if self.phase == Phase::Draining && self.drain_deadline().is_some_and(|d| now >= d)
                {
                    self.enter_killing(
                        "shutdown budget for graceful stops used up".into(),
                        now,
                        &mut steps,
                    );
                } else if self.hard_deadline().is_some_and(|h| now >= h) {
                    self.finish(&mut steps);
                } else if let Some(KillStage::Sweeping { until }) = self.kill
                    && now >= until
                {
                    self.after_sweep(now, &mut steps);
                }
            }
            // Progress reports that arrive in a phase where they mean nothing (a service finishing
            // after a second SIGINT, a tick while running) are ignored on purpose.
            (
                Phase::Running,
                ShutdownInput::ServiceStopped(_)
                | ShutdownInput::OrphansStopped
                | ShutdownInput::KillFinished
                | ShutdownInput::HooksFinished
                | ShutdownInput::Tick,
            )
            | (Phase::Draining, ShutdownInput::KillFinished | ShutdownInput::HooksFinished)
            | (Phase::Killing, ShutdownInput::ServiceStopped(_) | ShutdownInput::OrphansStopped)
            | (Phase::CleanedUp | Phase::Exit, _) => {}
        }
        steps
    }

    /// The supervisor has carried out [`Step::Finish`] and is about to exit.
    pub fn exited(&mut self) {
        self.phase = Phase::Exit;
    }

    /// Hands out the services that may begin to stop now; once every service and the
    /// orphans are gone, killing begins.
    fn advance_graph(&mut self, now: Instant, steps: &mut Vec<Step>) {
        let drain = self.drain_deadline().unwrap_or(now);
        let Some(g) = self.graph.as_mut() else {
            return;
        };
        let ready = g.ready(now, drain);
        if !ready.is_empty() {
            steps.push(Step::StopServices(ready));
        }
        if g.all_stopped() && self.orphans_stopped {
            self.enter_killing("every service stopped".into(), now, steps);
        }
    }

    fn enter_killing(&mut self, reason: String, now: Instant, steps: &mut Vec<Step>) {
        // (Entered late, past the hard deadline, `until` is in the past: the next tick reports.)
        self.phase = Phase::Killing;
        steps.push(Step::Entered {
            phase: Phase::Killing,
            reason,
        });
        let hard = self.hard_deadline().unwrap_or(now);
        // With hooks to run, killing may use at most half of what is left; without, all of it.
        let until = if self.has_hooks {
            now + hard.saturating_duration_since(now) / 2
        } else {
            hard
        };
        self.kill = Some(KillStage::Sweeping { until });
        steps.push(Step::KillEverything);
    }

    fn after_sweep(&mut self, now: Instant, steps: &mut Vec<Step>) {
        if self.has_hooks {
            self.kill = Some(KillStage::Hooks);
            steps.push(Step::RunHooks {
                deadline: self.hard_deadline().unwrap_or(now),
            });
        } else {
            self.finish(steps);
        }
    }

    fn finish(&mut self, steps: &mut Vec<Step>) {
        self.phase = Phase::CleanedUp;
        self.kill = None;
        steps.push(Step::Entered {
            phase: Phase::CleanedUp,
            reason: "shutdown complete".into(),
        });
        steps.push(Step::Finish);
    }
}

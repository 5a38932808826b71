//! The daemon's shutdown state machine and its budget planner.
//!
//! Owns: [`Phase`] (Running → Draining → Killing → CleanedUp → Exit), the transitions between
//! phases, the stop waves (reverse dependency order) and how the shutdown bound is shared among
//! them ([`plan`]), and every shutdown deadline.
//! Must never: stop a service itself, make a system call or read a clock. It turns triggers,
//! progress reports and the current time into [`Step`]s that the supervisor carries out.
//!
//! Budget: the whole shutdown must end before `shutdown_timeout`. A reserve at the end is kept for
//! killing, sweeping and cleanup hooks; the waves share the rest. A wave whose services ask for
//! less than a fair share keeps its full timeout and leaves the remainder to the others
//! (max-min fairness), and time a wave does not use rolls over to the next one.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::core::timers::{Timer, earliest};
use crate::wire::text::secs;

/// Where the daemon is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Supervising.
    Running,
    /// Listener closed; services stopping wave by wave.
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
}

impl Trigger {
    /// For logs and events.
    pub fn describe(&self) -> String {
        match self {
            Trigger::Signal(s) => s.as_str().to_string(),
            Trigger::Request => "shutdown request".into(),
            Trigger::CommandExited => "command exited".into(),
            Trigger::LoopFailed(e) => format!("event loop failure ({e})"),
        }
    }
}

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

/// Services stopped in parallel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wave {
    /// Names, sorted.
    pub services: Vec<String>,
    /// The longest stop timeout among them.
    pub requested: Duration,
    /// What the plan gives the wave.
    pub allotted: Duration,
}

/// The shutdown plan announced when shutdown starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The whole bound.
    pub budget: Duration,
    /// Kept back for killing, sweeps, verification and cleanup hooks.
    pub reserve: Duration,
    /// Waves in stop order.
    pub waves: Vec<Wave>,
}

impl Plan {
    /// `wave 1: web, worker (10 s); wave 2: db (20 s → clipped to 17.5 s)`.
    pub fn describe(&self) -> String {
        if self.waves.is_empty() {
            return "no services to stop".into();
        }
        let waves: Vec<String> = self
            .waves
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let t = if w.allotted < w.requested {
                    format!("{} → clipped to {}", secs(w.requested), secs(w.allotted))
                } else {
                    secs(w.requested)
                };
                format!("wave {}: {} ({t})", i + 1, w.services.join(", "))
            })
            .collect();
        format!(
            "{}; reserve {} of {}",
            waves.join("; "),
            secs(self.reserve),
            secs(self.budget)
        )
    }
}

/// Time kept back from the waves for killing, sweeping and cleanup: a twelfth of the budget,
/// at least 200 ms and at most 2.5 s (never more than half the budget).
pub fn reserve_for(budget: Duration) -> Duration {
    (budget / 12)
        .clamp(Duration::from_millis(200), Duration::from_millis(2500))
        .min(budget / 2)
}

/// Time kept at the very end to remove the socket and lock, flush and exit.
pub fn exit_margin(budget: Duration) -> Duration {
    (budget / 20).min(Duration::from_millis(200))
}

/// Shares `available` among `wants` by max-min fairness: nobody gets more than they want, and
/// those who want more than an equal share split what the others leave.
pub fn water_fill(wants: &[Duration], available: Duration) -> Vec<Duration> {
    let mut out = vec![Duration::ZERO; wants.len()];
    let mut order: Vec<(usize, Duration)> = wants.iter().copied().enumerate().collect();
    order.sort_by_key(|&(_, want)| want);
    let mut left = available;
    for (k, (i, want)) in order.into_iter().enumerate() {
        let share = left / u32::try_from(wants.len() - k).unwrap_or(u32::MAX);
        let got = want.min(share);
        if let Some(slot) = out.get_mut(i) {
            *slot = got;
        }
        left = left.saturating_sub(got);
    }
    out
}

/// Groups services into stop waves: a service stops only after every service that starts after
/// it has stopped. Independent services share a wave, in name order.
///
/// A service's wave is the length of the longest chain of services waiting on it, found from
/// the services nothing waits on, without recursion: a chain of 10 000 services must not take
/// 10 000 stack frames. Linear in services plus dependencies.
pub fn waves(specs: &[StopSpec]) -> Vec<Vec<String>> {
    let index: HashMap<&str, usize> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    // Each dependency as an index; names that are not (or no longer) services are ignored.
    let after: Vec<Vec<usize>> = specs
        .iter()
        .map(|s| {
            s.after
                .iter()
                .filter_map(|a| index.get(a.as_str()).copied())
                .collect()
        })
        .collect();
    let mut waited_on_by = vec![0usize; specs.len()];
    for &a in after.iter().flatten() {
        if let Some(n) = waited_on_by.get_mut(a) {
            *n += 1;
        }
    }
    let mut level = vec![0usize; specs.len()];
    let mut ready: Vec<usize> = (0..specs.len())
        .filter(|&i| waited_on_by.get(i) == Some(&0))
        .collect();
    while let Some(i) = ready.pop() {
        let l = level.get(i).copied().unwrap_or(0);
        for &a in after.get(i).into_iter().flatten() {
            if let Some(la) = level.get_mut(a) {
                *la = (*la).max(l + 1);
            }
            if let Some(n) = waited_on_by.get_mut(a) {
                *n -= 1;
                if *n == 0 {
                    ready.push(a);
                }
            }
        }
    }
    // Config validation rejects cycles; should one slip through, its services (never reached
    // above) keep the level found so far and are still stopped, in some wave.
    let mut by_level: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (s, l) in specs.iter().zip(&level) {
        by_level.entry(*l).or_default().push(s.name.as_str());
    }
    by_level
        .into_values()
        .map(|mut names| {
            names.sort_unstable();
            names.into_iter().map(str::to_string).collect()
        })
        .collect()
}

/// Plans the waves within `budget`.
pub fn plan(specs: &[StopSpec], budget: Duration) -> Plan {
    let reserve = reserve_for(budget);
    let timeout: BTreeMap<&str, Duration> = specs
        .iter()
        .map(|s| (s.name.as_str(), s.stop_timeout))
        .collect();
    let groups = waves(specs);
    let wants: Vec<Duration> = groups
        .iter()
        .map(|g| {
            g.iter()
                .filter_map(|n| timeout.get(n.as_str()))
                .copied()
                .max()
                .unwrap_or_default()
        })
        .collect();
    let available = budget.saturating_sub(reserve + exit_margin(budget));
    let allotted = water_fill(&wants, available);
    let waves = groups
        .into_iter()
        .zip(wants)
        .zip(allotted)
        .map(|((services, requested), allotted)| Wave {
            services,
            requested,
            allotted,
        })
        .collect();
    Plan {
        budget,
        reserve,
        waves,
    }
}

/// What the shutdown machine is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShutdownInput {
    /// Something asked for a shutdown (again).
    Trigger(Trigger),
    /// Every service of the current wave is stopped.
    WaveStopped,
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
    /// Stop these services, each by `deadline` at the latest.
    StopWave {
        /// Services.
        services: Vec<String>,
        /// End of the wave's allotment.
        deadline: Instant,
    },
    /// In-flight requests are out of time: fail them and close idle connections.
    EndGrace,
    /// Freeze and kill everything that is left, then sweep; verify by `deadline`.
    KillEverything {
        /// When to stop waiting for killed processes to disappear.
        deadline: Instant,
    },
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
    plan: Option<Plan>,
    wave: usize,
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
            plan: None,
            wave: 0,
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

    fn drain_deadline(&self) -> Option<Instant> {
        self.started.map(|t| {
            t + self
                .budget
                .saturating_sub(reserve_for(self.budget) + exit_margin(self.budget))
        })
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
    /// starts the shutdown plans the waves. Callers with many services skip building the list
    /// for every other input (a tick, each wave's end), which would cost O(services) each.
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
                let plan = plan(specs, self.budget);
                steps.push(Step::Announce(plan.clone()));
                self.plan = Some(plan);
                self.wave = 0;
                if let Trigger::LoopFailed(_) = t {
                    // Nothing can be waited for: everything is killed at once.
                    self.enter_killing(t.describe(), now, &mut steps);
                } else {
                    self.start_wave(now, &mut steps);
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
            (Phase::Draining, ShutdownInput::WaveStopped) => {
                self.wave += 1;
                self.start_wave(now, &mut steps);
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
            // Progress reports that arrive in a phase where they mean nothing (a wave finishing
            // after a second SIGINT, a tick while running) are ignored on purpose.
            (
                Phase::Running,
                ShutdownInput::WaveStopped
                | ShutdownInput::KillFinished
                | ShutdownInput::HooksFinished
                | ShutdownInput::Tick,
            )
            | (Phase::Draining, ShutdownInput::KillFinished | ShutdownInput::HooksFinished)
            | (Phase::Killing, ShutdownInput::WaveStopped)
            | (Phase::CleanedUp | Phase::Exit, _) => {}
        }
        steps
    }

    /// The supervisor has carried out [`Step::Finish`] and is about to exit.
    pub fn exited(&mut self) {
        self.phase = Phase::Exit;
    }

    fn start_wave(&mut self, now: Instant, steps: &mut Vec<Step>) {
        let Some(plan) = &self.plan else { return };
        let Some(wave) = plan.waves.get(self.wave) else {
            self.enter_killing("every service stopped".into(), now, steps);
            return;
        };
        // Re-share what is left: time earlier waves did not use rolls over.
        let left = self
            .drain_deadline()
            .map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
        let wants: Vec<Duration> = plan
            .waves
            .get(self.wave..)
            .unwrap_or_default()
            .iter()
            .map(|w| w.requested)
            .collect();
        let allotted = water_fill(&wants, left)
            .first()
            .copied()
            .unwrap_or_default();
        steps.push(Step::StopWave {
            services: wave.services.clone(),
            deadline: now + allotted,
        });
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
        steps.push(Step::KillEverything { deadline: until });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn spec(name: &str, after: &[&str], timeout_ms: u64) -> StopSpec {
        StopSpec {
            name: name.into(),
            after: after.iter().map(|s| s.to_string()).collect(),
            stop_timeout: ms(timeout_ms),
        }
    }

    #[test]
    fn waves_follow_reverse_dependency_order() {
        let specs = [
            spec("db", &[], 1),
            spec("web", &["db"], 1),
            spec("proxy", &["web"], 1),
            spec("worker", &["db"], 1),
            spec("cron", &[], 1),
        ];
        assert_eq!(
            waves(&specs),
            vec![vec!["cron", "proxy", "worker"], vec!["web"], vec!["db"]]
        );
    }

    #[test]
    fn a_chain_of_ten_thousand_makes_ten_thousand_waves_without_recursion() {
        let names: Vec<String> = (0..10_000).map(|i| format!("s{i:05}")).collect();
        let specs: Vec<StopSpec> = names
            .iter()
            .enumerate()
            .map(|(i, n)| StopSpec {
                name: n.clone(),
                after: i
                    .checked_sub(1)
                    .map(|p| names[p].clone())
                    .into_iter()
                    .collect(),
                stop_timeout: ms(1),
            })
            .collect();
        let w = waves(&specs);
        assert_eq!(w.len(), 10_000);
        assert_eq!(w[0], ["s09999"]);
        assert_eq!(w[9_999], ["s00000"]);
        // A cycle (which validation rejects) still stops every service.
        let cyclic = [
            spec("a", &["b"], 1),
            spec("b", &["a"], 1),
            spec("c", &["a"], 1),
        ];
        let all: Vec<String> = waves(&cyclic).concat();
        assert_eq!(all.len(), 3, "{all:?}");
    }

    #[test]
    fn water_filling_keeps_small_waves_whole() {
        assert_eq!(
            water_fill(&[ms(10_000), ms(20_000)], ms(27_500)),
            vec![ms(10_000), ms(17_500)]
        );
        assert_eq!(water_fill(&[ms(20_000); 3], ms(6_000)), vec![ms(2_000); 3]);
        assert_eq!(
            water_fill(&[ms(1_000), ms(1_000)], ms(10_000)),
            vec![ms(1_000), ms(1_000)]
        );
        assert_eq!(water_fill(&[], ms(10_000)), Vec::<Duration>::new());
    }

    #[test]
    fn plan_clips_to_the_budget_and_describes_itself() {
        let specs = [
            spec("db", &[], 20_000),
            spec("web", &["db"], 10_000),
            spec("worker", &["db"], 5_000),
        ];
        let p = plan(&specs, ms(30_000));
        assert_eq!(p.reserve, ms(2_500));
        assert_eq!(p.waves[0].allotted, ms(10_000));
        assert_eq!(p.waves[1].allotted, ms(17_300));
        assert_eq!(
            p.describe(),
            "wave 1: web, worker (10 s); wave 2: db (20 s → clipped to 17.3 s); reserve 2.5 s of 30 s"
        );
        let total: Duration = p.waves.iter().map(|w| w.allotted).sum();
        assert!(total + p.reserve <= p.budget);
    }

    #[test]
    fn repeated_sigterm_starts_one_shutdown() {
        let t0 = crate::core::sim::epoch();
        let specs = [spec("a", &[], 1_000)];
        let mut s = Shutdown::new(ms(30_000), ms(10_000), false);
        let steps = s.on_input(
            ShutdownInput::Trigger(Trigger::Signal(Signal::SIGTERM)),
            &specs,
            t0,
        );
        assert_eq!(s.phase(), Phase::Draining);
        assert!(steps.contains(&Step::CloseListener));
        assert!(steps.contains(&Step::StopWave {
            services: vec!["a".into()],
            deadline: t0 + ms(1_000)
        }));
        for i in 0..20 {
            let steps = s.on_input(
                ShutdownInput::Trigger(Trigger::Signal(Signal::SIGTERM)),
                &specs,
                t0 + ms(i),
            );
            assert!(
                matches!(steps.as_slice(), [Step::AlreadyStopping { .. }]),
                "{steps:?}"
            );
            let steps = s.on_input(ShutdownInput::Trigger(Trigger::Request), &specs, t0 + ms(i));
            assert!(matches!(steps.as_slice(), [Step::AlreadyStopping { .. }]));
        }
        assert_eq!(s.phase(), Phase::Draining);
        assert_eq!(s.started(), Some(t0));
    }

    #[test]
    fn second_sigint_escalates_to_killing() {
        let t0 = crate::core::sim::epoch();
        let mut s = Shutdown::new(ms(30_000), ms(10_000), false);
        s.on_input(
            ShutdownInput::Trigger(Trigger::Signal(Signal::SIGINT)),
            &[spec("a", &[], 9_000)],
            t0,
        );
        let steps = s.on_input(
            ShutdownInput::Trigger(Trigger::Signal(Signal::SIGINT)),
            &[],
            t0 + ms(5),
        );
        assert_eq!(s.phase(), Phase::Killing);
        assert!(
            steps
                .iter()
                .any(|st| matches!(st, Step::KillEverything { .. }))
        );
        // A third one changes nothing.
        let steps = s.on_input(
            ShutdownInput::Trigger(Trigger::Signal(Signal::SIGINT)),
            &[],
            t0 + ms(6),
        );
        assert!(matches!(steps.as_slice(), [Step::AlreadyStopping { .. }]));
    }

    #[test]
    fn sigterm_then_sigint_does_not_escalate() {
        let t0 = crate::core::sim::epoch();
        let mut s = Shutdown::new(ms(30_000), ms(10_000), false);
        s.on_input(
            ShutdownInput::Trigger(Trigger::Signal(Signal::SIGTERM)),
            &[spec("a", &[], 9_000)],
            t0,
        );
        s.on_input(
            ShutdownInput::Trigger(Trigger::Signal(Signal::SIGINT)),
            &[],
            t0,
        );
        assert_eq!(s.phase(), Phase::Draining);
    }

    #[test]
    fn waves_advance_and_unused_time_rolls_over() {
        let t0 = crate::core::sim::epoch();
        let specs = [spec("db", &[], 20_000), spec("web", &["db"], 20_000)];
        let mut s = Shutdown::new(ms(30_000), ms(10_000), false);
        let steps = s.on_input(ShutdownInput::Trigger(Trigger::Request), &specs, t0);
        // 30 s - 2.5 s reserve - 0.2 s exit margin = 27.3 s, split over two waves.
        assert!(steps.contains(&Step::StopWave {
            services: vec!["web".into()],
            deadline: t0 + ms(13_650)
        }));
        let steps = s.on_input(ShutdownInput::WaveStopped, &specs, t0 + ms(1_000));
        assert!(steps.contains(&Step::StopWave {
            services: vec!["db".into()],
            deadline: t0 + ms(20_000) + ms(1_000)
        }));
        let steps = s.on_input(ShutdownInput::WaveStopped, &specs, t0 + ms(2_000));
        assert_eq!(s.phase(), Phase::Killing);
        assert!(steps.contains(&Step::KillEverything {
            deadline: t0 + ms(29_800)
        }));
        let steps = s.on_input(ShutdownInput::KillFinished, &specs, t0 + ms(2_100));
        assert_eq!(steps.last(), Some(&Step::Finish));
        assert_eq!(s.phase(), Phase::CleanedUp);
    }

    #[test]
    fn deadlines_escalate_and_finish_no_matter_what() {
        let t0 = crate::core::sim::epoch();
        let specs = [spec("a", &[], 30_000)];
        let mut s = Shutdown::new(ms(6_000), ms(1_000), true);
        s.on_input(ShutdownInput::Trigger(Trigger::Request), &specs, t0);
        assert_eq!(
            s.next_timer().map(|(_, t)| t),
            Some(t0 + ms(1_000)),
            "grace first"
        );
        assert!(
            s.on_input(ShutdownInput::Tick, &specs, t0 + ms(999))
                .is_empty(),
            "early tick is a no-op"
        );
        assert_eq!(
            s.on_input(ShutdownInput::Tick, &specs, t0 + ms(1_000)),
            vec![Step::EndGrace]
        );
        // 6 s - 0.5 s reserve - 0.2 s margin.
        assert_eq!(s.next_timer().map(|(_, t)| t), Some(t0 + ms(5_300)));
        let steps = s.on_input(ShutdownInput::Tick, &specs, t0 + ms(5_300));
        assert!(
            steps.contains(&Step::KillEverything {
                deadline: t0 + ms(5_550)
            }),
            "{steps:?}"
        );
        let steps = s.on_input(ShutdownInput::Tick, &specs, t0 + ms(5_550));
        assert_eq!(
            steps,
            vec![Step::RunHooks {
                deadline: t0 + ms(5_800)
            }]
        );
        let steps = s.on_input(ShutdownInput::Tick, &specs, t0 + ms(5_800));
        assert_eq!(steps.last(), Some(&Step::Finish));
        assert_eq!(s.phase(), Phase::CleanedUp);
        assert!(
            s.on_input(ShutdownInput::Tick, &specs, t0 + ms(9_000))
                .is_empty()
        );
        s.exited();
        assert_eq!(s.phase(), Phase::Exit);
    }

    #[test]
    fn a_late_wake_up_still_kills_before_it_reports() {
        let t0 = crate::core::sim::epoch();
        let mut s = Shutdown::new(ms(1_000), ms(1_000), false);
        s.on_input(
            ShutdownInput::Trigger(Trigger::Request),
            &[spec("a", &[], 10_000)],
            t0,
        );
        // The first tick comes long after every deadline.
        let steps = s.on_input(ShutdownInput::Tick, &[], t0 + ms(5_000));
        assert_eq!(s.phase(), Phase::Killing);
        assert!(
            steps
                .iter()
                .any(|st| matches!(st, Step::KillEverything { .. })),
            "{steps:?}"
        );
        assert!(!steps.contains(&Step::Finish));
        let steps = s.on_input(ShutdownInput::Tick, &[], t0 + ms(5_001));
        assert_eq!(steps.last(), Some(&Step::Finish));
    }

    #[test]
    fn no_services_goes_straight_to_killing() {
        let t0 = crate::core::sim::epoch();
        let mut s = Shutdown::new(ms(30_000), ms(10_000), false);
        let steps = s.on_input(ShutdownInput::Trigger(Trigger::Request), &[], t0);
        assert_eq!(s.phase(), Phase::Killing);
        assert!(
            steps
                .iter()
                .any(|st| matches!(st, Step::KillEverything { .. }))
        );
    }
}

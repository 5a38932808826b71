//! Services: what each one is doing, and the table of all of them.
//!
//! Owns: [`Service`] with its [`ServiceState`] (an enum that carries the data of its state: the
//! main process, the restart deadline, the stop in progress), the restart policy and its
//! back-off, what happens once a stop is over ([`AfterStop`]), and [`Services`], the table in
//! start order with a name index.
//! Must never: decide about other services or the daemon: the supervisor sequences services
//! against each other and against the shutdown.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::core::checks::Checks;
use crate::core::proctree::ProcId;
use crate::core::stop::StopJob;
use crate::wire::config::{RestartPolicy, ServiceKind, ServiceSpec, StopScope};
use crate::wire::events::ExitStatus;
use crate::wire::replies::ServiceRow;
use crate::wire::text::ms;

/// First restart delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run this long resets the back-off.
pub const HEALTHY_RUN: Duration = Duration::from_secs(10);

/// What a service is doing.
#[derive(Debug)]
pub enum ServiceState {
    /// Not running and not about to: never started, stopped, or kept down by its restart policy.
    Down,
    /// To start once every service it is `after` is ready (or, for a one-shot, done).
    Waiting,
    /// Its spawn was asked for; the outcome comes back within the same turn.
    Starting,
    /// Its main process runs.
    Running {
        /// The main process.
        main: ProcId,
        /// When it started.
        since: Instant,
        /// Its readiness check passed (at once when it has none).
        ready: bool,
    },
    /// A one-shot that exited 0: its dependents may start; it is not run again.
    Done,
    /// Given up on (restart limit, a failed one-shot, not ready in time): not started again
    /// until `ctl start`.
    Failed {
        /// Why, for `list` and the log.
        why: String,
    },
    /// Waiting out its restart delay.
    Backoff {
        /// When to start it again.
        until: Instant,
    },
    /// Its stop procedure runs: a stop, a restart, a reload, the shutdown, or the stop of what
    /// its main process left running when it exited.
    Stopping {
        /// The stop (boxed: it is the largest state by far).
        job: Box<StopJob>,
        /// The main process until it is reaped (the stop is over only then, so its exit status
        /// is always reported before the service counts as stopped).
        main: Option<ProcId>,
        /// When the main process started, while it runs.
        since: Option<Instant>,
    },
}

/// What happens once a service's stop is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterStop {
    /// Nothing: it stays down (or its restart policy decides, after a stop of leftovers).
    Stay,
    /// It starts again (`restart`, or `start` while it stopped).
    Start,
    /// It starts again with a new definition (a reload changed it).
    Replace(Box<ServiceSpec>),
    /// It leaves the table (a reload removed it).
    Remove,
    /// Its restart policy decides, as after a failure (it did not become ready in time, or it
    /// was unhealthy).
    Retry,
}

/// One supervised service.
#[derive(Debug)]
pub struct Service {
    /// Its definition.
    pub spec: ServiceSpec,
    /// What it is doing.
    pub state: ServiceState,
    /// Restarts so far.
    pub restarts: u32,
    /// The next restart delay.
    pub backoff: Duration,
    /// How its main process last ended.
    pub last_exit: Option<ExitStatus>,
    /// False once a client stopped it or a reload removed it: not to be restarted.
    pub wanted: bool,
    /// What happens once the stop in progress is over.
    pub then: AfterStop,
    /// The stop in progress is of what the main process left running when it exited like this;
    /// the restart policy is applied once it is over.
    pub leftovers_of: Option<ExitStatus>,
    /// Its readiness and health checks.
    pub checks: Checks,
    /// How long its main process ran, the last time it ended on its own.
    pub ran_for: Option<Duration>,
    /// Its start failed (it did not become ready in time): the restart policy treats the end of
    /// its stop as a failure.
    pub start_failure: Option<String>,
    /// When it was restarted within its `restart_window`, oldest first (at most
    /// `max_restarts` + 1 kept).
    pub recent_restarts: VecDeque<Instant>,
}

/// What the restart policy and limits decided after the main process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restart {
    /// It starts again after this delay.
    After(Duration),
    /// Its policy (or a client) keeps it down.
    KeptDown,
    /// It reached `max_restarts` within `restart_window`: it is `failed`.
    Failed(String),
}

impl Service {
    /// A service that has not run yet.
    pub fn new(spec: ServiceSpec) -> Self {
        let autostart = spec.run.autostart;
        Service {
            spec,
            state: ServiceState::Down,
            restarts: 0,
            backoff: BACKOFF_MIN,
            last_exit: None,
            // A service that does not start with reapd waits for `ctl start`.
            wanted: autostart,
            then: AfterStop::Stay,
            leftovers_of: None,
            checks: Checks::default(),
            ran_for: None,
            start_failure: None,
            recent_restarts: VecDeque::new(),
        }
    }

    /// Its main process runs and its readiness check passed; a one-shot: it completed.
    pub fn is_ready(&self) -> bool {
        match self.state {
            ServiceState::Running { ready, .. } => {
                ready && self.spec.run.kind == ServiceKind::Longrun
            }
            ServiceState::Done => true,
            _ => false,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// What its processes (main process and exec checks) get added to reapd's environment:
    /// its `env`, and the `REAPD_SERVICE` marker that attributes an escaped orphan to it.
    pub fn spawn_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.push(("REAPD_SERVICE".into(), self.spec.name.clone()));
        env
    }

    /// The main process, while there is one.
    pub fn main(&self) -> Option<ProcId> {
        match &self.state {
            ServiceState::Running { main, .. } => Some(*main),
            ServiceState::Stopping { main, .. } => *main,
            _ => None,
        }
    }

    /// The stop in progress.
    pub fn job(&self) -> Option<&StopJob> {
        match &self.state {
            ServiceState::Stopping { job, .. } => Some(job),
            _ => None,
        }
    }

    /// The stop in progress, to feed it.
    pub fn job_mut(&mut self) -> Option<&mut StopJob> {
        match &mut self.state {
            ServiceState::Stopping { job, .. } => Some(job),
            _ => None,
        }
    }

    /// When to restart it, while it waits to.
    pub fn restart_at(&self) -> Option<Instant> {
        match self.state {
            ServiceState::Backoff { until } => Some(until),
            _ => None,
        }
    }

    /// The state's wire name: `waiting`, `starting`, `running`, `backoff`, `stopping`,
    /// `stopped`, `exited`, `done`, `failed`.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            ServiceState::Running { ready: false, .. }
                if self.spec.run.kind == ServiceKind::Longrun =>
            {
                "starting"
            }
            ServiceState::Running { .. } => "running",
            ServiceState::Waiting => "waiting",
            ServiceState::Done => "done",
            ServiceState::Failed { .. } => "failed",
            ServiceState::Backoff { .. } => "backoff",
            ServiceState::Stopping { .. } => "stopping",
            ServiceState::Starting => "starting",
            ServiceState::Down if !self.wanted || self.last_exit.is_none() => "stopped",
            ServiceState::Down => "exited",
        }
    }

    /// Its row in `list`.
    pub fn row(&self, now: Instant) -> ServiceRow {
        let since = match self.state {
            ServiceState::Running { since, .. } => Some(since),
            ServiceState::Stopping { since, .. } => since,
            _ => None,
        };
        ServiceRow {
            name: self.spec.name.clone(),
            state: self.state_name().into(),
            pid: self.main().map(|m| m.pid),
            restarts: self.restarts,
            last_exit: self.last_exit,
            uptime_ms: since.map(|t| ms(now.saturating_duration_since(t))),
            ready: self.is_ready(),
            why: match &self.state {
                ServiceState::Failed { why } => Some(why.clone()),
                _ => None,
            },
            health: self.checks.health.map(|h| h.as_str().to_string()),
            last_check: self.checks.last.clone(),
            usage: None,
        }
    }

    /// The main process started.
    pub fn started(&mut self, main: ProcId, now: Instant) {
        match &mut self.state {
            // Its stop began while the spawn was under way: the stop takes the new process too.
            ServiceState::Stopping {
                job,
                main: m @ None,
                since,
            } if !job.is_done() => {
                job.set_main(main, now);
                *m = Some(main);
                *since = Some(now);
            }
            _ => {
                // Ready when spawned, unless a readiness check says when (a one-shot: when done).
                let ready = self.spec.run.ready.is_none();
                self.checks.spawned(&self.spec.run, now);
                self.state = ServiceState::Running {
                    main,
                    since: now,
                    ready,
                };
            }
        }
    }

    /// The main process exited (or could not be started) while nothing was stopping it: the
    /// back-off resets after a healthy run.
    pub fn ended(&mut self, status: ExitStatus, now: Instant) {
        if let ServiceState::Running { since, .. } = self.state {
            let ran = now.saturating_duration_since(since);
            self.ran_for = Some(ran);
            if ran >= HEALTHY_RUN {
                self.backoff = BACKOFF_MIN;
            }
        }
        self.last_exit = Some(status);
        self.state = ServiceState::Down;
    }

    /// Applies the restart policy after the main process ended with `status`: the delay before
    /// it starts again, or `None` when the policy (or a client) keeps it down.
    pub fn schedule_restart(&mut self, status: ExitStatus, now: Instant) -> Restart {
        let restart = self.wanted
            && match self.spec.restart {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => !status.success(),
                RestartPolicy::Never => false,
            };
        if !restart {
            return Restart::KeptDown;
        }
        if let Some(why) = self.count_restart(now) {
            self.state = ServiceState::Failed { why: why.clone() };
            return Restart::Failed(why);
        }
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        self.restarts += 1;
        self.state = ServiceState::Backoff { until: now + delay };
        Restart::After(delay)
    }

    /// Counts a restart against `max_restarts` within `restart_window`: why it may not restart
    /// any more, if it reached the limit.
    pub fn count_restart(&mut self, now: Instant) -> Option<String> {
        let max = self.spec.run.max_restarts?;
        let window = self.spec.run.restart_window;
        while self
            .recent_restarts
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.recent_restarts.pop_front();
        }
        if self.recent_restarts.len() >= max as usize {
            return Some(format!(
                "{max} restart{} within {} ms (max_restarts)",
                if max == 1 { "" } else { "s" },
                ms(window)
            ));
        }
        self.recent_restarts.push_back(now);
        None
    }

    /// Starts the stop procedure, or tightens the one in progress to `deadline`. Returns the
    /// timeout of a new stop (None when one was already running).
    pub fn begin_stop(
        &mut self,
        deadline: Option<Instant>,
        scope: StopScope,
        now: Instant,
    ) -> Option<Duration> {
        if let ServiceState::Stopping { job, .. } = &mut self.state {
            if let Some(d) = deadline {
                job.clip(d);
            }
            return None;
        }
        let timeout = match deadline {
            Some(d) => self.spec.stop_timeout.min(d.saturating_duration_since(now)),
            None => self.spec.stop_timeout,
        };
        let (main, since) = match self.state {
            ServiceState::Running { main, since, .. } => (Some(main), Some(since)),
            _ => (None, None),
        };
        let job = Box::new(StopJob::new(
            self.spec.stop_signal,
            scope,
            main,
            timeout,
            now,
        ));
        self.state = ServiceState::Stopping { job, main, since };
        Some(timeout)
    }
}

/// Every service, in start order, with a name index.
#[derive(Debug, Default)]
pub struct Services {
    list: Vec<Service>,
    index: HashMap<String, usize>,
}

impl Services {
    /// A table in this order.
    pub fn new(list: Vec<Service>) -> Self {
        let mut s = Services {
            list,
            index: HashMap::new(),
        };
        s.reindex();
        s
    }

    fn reindex(&mut self) {
        self.index = self
            .list
            .iter()
            .enumerate()
            .map(|(i, s)| (s.spec.name.clone(), i))
            .collect();
    }

    /// The service with this name.
    pub fn get(&self, name: &str) -> Option<&Service> {
        self.index.get(name).and_then(|&i| self.list.get(i))
    }

    /// The service with this name, to change it.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Service> {
        let i = *self.index.get(name)?;
        self.list.get_mut(i)
    }

    /// The service whose main process has this pid.
    pub fn by_main_pid(&mut self, pid: i32) -> Option<&mut Service> {
        self.list
            .iter_mut()
            .find(|s| s.main().is_some_and(|m| m.pid == pid))
    }

    /// Every service, in start order.
    pub fn iter(&self) -> impl Iterator<Item = &Service> {
        self.list.iter()
    }

    /// Every service, to change them.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Service> {
        self.list.iter_mut()
    }

    /// Every name, in start order.
    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|s| s.spec.name.clone()).collect()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// None at all.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Removes a service.
    pub fn remove(&mut self, name: &str) {
        if let Some(i) = self.index.remove(name) {
            self.list.remove(i);
            self.reindex();
        }
    }

    /// Takes every service out (a reload rebuilds the table).
    pub fn take_all(&mut self) -> Vec<Service> {
        self.index.clear();
        std::mem::take(&mut self.list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sim::epoch;

    fn svc(restart: RestartPolicy) -> Service {
        let mut spec = ServiceSpec::new("web", vec!["x".into()]);
        spec.restart = restart;
        Service::new(spec)
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets_after_a_healthy_run() {
        let t0 = epoch();
        let mut s = svc(RestartPolicy::Always);
        let mut delays = Vec::new();
        for _ in 0..12 {
            s.started(ProcId { pid: 2, start: 1 }, t0);
            s.ended(ExitStatus::Code(1), t0);
            let Restart::After(delay) = s.schedule_restart(ExitStatus::Code(1), t0) else {
                panic!("restarts");
            };
            delays.push(delay);
        }
        assert_eq!(delays[..4], [100, 200, 400, 800].map(Duration::from_millis));
        assert_eq!(delays.last(), Some(&BACKOFF_MAX));
        assert_eq!(s.restarts, 12);
        s.started(ProcId { pid: 2, start: 1 }, t0);
        s.ended(ExitStatus::Code(1), t0 + HEALTHY_RUN);
        assert_eq!(
            s.schedule_restart(ExitStatus::Code(1), t0),
            Restart::After(BACKOFF_MIN)
        );
    }

    #[test]
    fn the_restart_policy_and_a_client_decide_who_stays_down() {
        let t0 = epoch();
        let ok = ExitStatus::Code(0);
        let bad = ExitStatus::Signal(9);
        assert!(svc(RestartPolicy::Never).schedule_restart(bad, t0) == Restart::KeptDown);
        assert!(svc(RestartPolicy::OnFailure).schedule_restart(ok, t0) == Restart::KeptDown);
        assert!(svc(RestartPolicy::OnFailure).schedule_restart(bad, t0) != Restart::KeptDown);
        let mut stopped = svc(RestartPolicy::Always);
        stopped.wanted = false;
        assert_eq!(stopped.schedule_restart(bad, t0), Restart::KeptDown);
    }

    #[test]
    fn max_restarts_within_the_window_fails_the_service_and_the_window_forgets() {
        let t0 = epoch();
        let mut s = svc(RestartPolicy::Always);
        s.spec.run.max_restarts = Some(2);
        s.spec.run.restart_window = Duration::from_secs(10);
        let bad = ExitStatus::Code(1);
        assert!(matches!(s.schedule_restart(bad, t0), Restart::After(_)));
        assert!(matches!(s.schedule_restart(bad, t0), Restart::After(_)));
        let Restart::Failed(why) = s.schedule_restart(bad, t0) else {
            panic!("the third restart within the window is refused");
        };
        assert_eq!(why, "2 restarts within 10000 ms (max_restarts)");
        assert_eq!(s.state_name(), "failed");
        assert!(
            matches!(
                s.schedule_restart(bad, t0 + Duration::from_secs(10)),
                Restart::After(_)
            ),
            "restarts older than the window no longer count"
        );
    }

    #[test]
    fn state_names_follow_the_state() {
        let t0 = epoch();
        let mut s = svc(RestartPolicy::Never);
        assert_eq!(s.state_name(), "stopped");
        s.started(ProcId { pid: 5, start: 1 }, t0);
        assert_eq!(
            (s.state_name(), s.main().map(|m| m.pid)),
            ("running", Some(5))
        );
        assert_eq!(
            s.row(t0 + Duration::from_secs(3)).uptime_ms,
            Some(3000),
            "uptime while running"
        );
        s.ended(ExitStatus::Code(0), t0);
        assert_eq!(s.state_name(), "exited");
        s.wanted = false;
        assert_eq!(s.state_name(), "stopped");
        s.started(ProcId { pid: 6, start: 1 }, t0);
        assert_eq!(
            s.begin_stop(None, StopScope::Tree, t0),
            Some(s.spec.stop_timeout)
        );
        assert_eq!(s.state_name(), "stopping");
        assert_eq!(
            s.main().map(|m| m.pid),
            Some(6),
            "the main runs until reaped"
        );
        assert_eq!(
            s.begin_stop(Some(t0), StopScope::Tree, t0),
            None,
            "only tightened"
        );
    }
}

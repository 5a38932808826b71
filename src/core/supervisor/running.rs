//! The supervisor's sequencing of the run side: a service starts once what it is `after` is
//! ready, readiness and health checks and what their results do, one-shots, restart limits and
//! essential services, and reapd's own readiness.

use std::time::Instant;

use nix::sys::signal::Signal;

use crate::core::checks::{HealthStatus, Purpose, Verdict};
use crate::core::io::{Action, Spawnee};
use crate::core::proctree::{Pid, ProcId};
use crate::core::requests::Waiter;
use crate::core::service::{AfterStop, Restart, ServiceState};
use crate::core::shutdown::{Phase, Trigger};
use crate::wire::config::{Probe, ServiceKind};
use crate::wire::events::{Event, ExitStatus};
use crate::wire::replies::Reply;
use crate::wire::text::ms;

use super::Supervisor;

impl Supervisor {
    // ----- starting in dependency order --------------------------------------------------------

    /// The services `name` is `after` that are not ready (one-shots: not done) yet.
    fn unmet(&self, name: &str) -> Vec<String> {
        let Some(s) = self.services.get(name) else {
            return Vec::new();
        };
        s.spec
            .after
            .iter()
            .filter(|dep| !self.services.get(dep).is_some_and(|d| d.is_ready()))
            .cloned()
            .collect()
    }

    /// Starts `name` now if everything it is `after` is ready, or has it wait.
    pub(super) fn request_start(&mut self, name: &str) {
        if self.phase() != Phase::Running {
            return;
        }
        let unmet = self.unmet(name);
        if unmet.is_empty() {
            self.spawn(name);
            return;
        }
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        s.wanted = true;
        if !matches!(s.state, ServiceState::Waiting) {
            s.state = ServiceState::Waiting;
            self.out.event(Event::Waiting {
                service: name.to_string(),
                on: unmet,
            });
            self.status_due = true;
        }
    }

    /// A service became ready (or done): whoever waited for it and nothing else starts now.
    pub(super) fn start_waiting(&mut self) {
        if self.phase() != Phase::Running {
            return;
        }
        let waiting: Vec<String> = self
            .services
            .iter()
            .filter(|s| matches!(s.state, ServiceState::Waiting))
            .map(|s| s.spec.name.clone())
            .collect();
        for name in waiting {
            if self.unmet(&name).is_empty() {
                self.spawn(&name);
            }
        }
    }

    // ----- readiness ---------------------------------------------------------------------------

    /// Whether every service that should run is ready (one-shots: done), and which are not.
    pub(super) fn not_ready(&self) -> Vec<String> {
        self.services
            .iter()
            .filter(|s| s.wanted && !s.is_ready())
            .map(|s| s.spec.name.clone())
            .collect()
    }

    /// Whether readiness can still come without a client's help: some service that should
    /// run is on its way (starting, restarting, stopping to start again).
    pub(super) fn readiness_on_its_way(&self) -> bool {
        self.services.iter().any(|s| {
            s.wanted
                && matches!(
                    s.state,
                    ServiceState::Starting
                        | ServiceState::Running { ready: false, .. }
                        | ServiceState::Backoff { .. }
                        | ServiceState::Stopping { .. }
                )
        })
    }

    /// Readiness may have changed: announce reapd's own once every service that should run is
    /// ready (as `ctl ready` says; a failed service holds it back), and answer `wait` requests
    /// once everything is ready, or once nothing is on its way any more (it cannot be, then).
    pub(super) fn readiness_changed(&mut self) {
        if self.phase() != Phase::Running || self.recovery.is_some() {
            return;
        }
        let not_ready = self.not_ready();
        if not_ready.is_empty() || !self.readiness_on_its_way() {
            let ready = not_ready.is_empty();
            for to in self.waiters.take(&Waiter::Ready) {
                self.out.answer(
                    &to,
                    Ok(Reply::Ready {
                        ready,
                        not_ready: not_ready.clone(),
                    }),
                );
            }
        }
        if not_ready.is_empty() {
            self.announce_ready();
        }
    }

    /// The main process of `name` runs and its check (if any) passed.
    pub(super) fn became_ready(&mut self, name: &str, now: Instant) {
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        let ServiceState::Running { since, ready, .. } = &mut s.state else {
            return;
        };
        if *ready {
            return;
        }
        *ready = true;
        let after_ms = ms(now.saturating_duration_since(*since));
        s.checks.became_ready(&s.spec.run, now);
        if let Some(r) = &s.spec.run.ready {
            self.out.event(Event::Ready {
                service: name.to_string(),
                after_ms,
                check: r.probe.describe(),
            });
        }
        self.status_due = true;
        self.start_waiting();
        self.readiness_changed();
    }

    /// A newline arrived on a service's notification fd.
    pub(super) fn on_notified(&mut self, name: &str, pid: Pid, now: Instant) {
        if self
            .services
            .get(name)
            .and_then(|s| s.main())
            .is_some_and(|m| m.pid == pid)
        {
            self.became_ready(name, now);
        }
    }

    /// The result of a check's attempt.
    pub(super) fn on_check_result(
        &mut self,
        name: &str,
        seq: u64,
        result: Result<(), String>,
        now: Instant,
    ) {
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        let verdict = s.checks.result(seq, result, &s.spec.run, now);
        self.apply_verdict(name, verdict, now);
    }

    fn apply_verdict(&mut self, name: &str, verdict: Verdict, now: Instant) {
        match verdict {
            Verdict::Ready => self.became_ready(name, now),
            Verdict::NotYet | Verdict::Stale => {}
            Verdict::Health { status, changed } => {
                let Some(s) = self.services.get_mut(name) else {
                    return;
                };
                if changed {
                    let failures = match status {
                        HealthStatus::Failing(n) => n,
                        HealthStatus::Unhealthy => {
                            s.spec.run.health.as_ref().map_or(0, |h| h.retries)
                        }
                        _ => 0,
                    };
                    self.out.event(Event::Health {
                        service: name.to_string(),
                        status: status.as_str().into(),
                        failures,
                        detail: s.checks.last.clone().unwrap_or_default(),
                    });
                    self.status_due = true;
                }
                if status == HealthStatus::Unhealthy {
                    self.restart_unhealthy(name, now);
                }
            }
        }
    }

    /// An unhealthy service is stopped through its stop procedure; then its restart policy
    /// decides as after a failure, with its back-off and its restart limit.
    fn restart_unhealthy(&mut self, name: &str, now: Instant) {
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        let detail = s.checks.last.clone().unwrap_or_default();
        s.start_failure = Some(format!("unhealthy: {detail}"));
        if s.then == AfterStop::Stay {
            s.then = AfterStop::Retry;
        }
        self.begin_stop(name, None, now);
    }

    /// Checks due now: attempts to begin, attempts out of time, readiness deadlines passed.
    pub(super) fn tick_checks(&mut self, now: Instant) {
        if self.phase() != Phase::Running {
            return;
        }
        let due: Vec<String> = self
            .services
            .iter()
            .filter(|s| s.checks.deadline().is_some_and(|t| t <= now))
            .map(|s| s.spec.name.clone())
            .collect();
        for name in due {
            let Some(s) = self.services.get_mut(&name) else {
                continue;
            };
            if let Some((proc, verdict)) = s.checks.overdue(&s.spec.run, now) {
                if let Some(p) = proc {
                    self.kill_check(p);
                }
                self.apply_verdict(&name, verdict, now);
            }
            let Some(s) = self.services.get_mut(&name) else {
                continue;
            };
            if s.checks.ready_by.is_some_and(|t| t <= now) {
                let since = match s.state {
                    ServiceState::Running { since, .. } => since,
                    _ => now,
                };
                let why = match (s.spec.run.kind, s.checks.last.clone()) {
                    (ServiceKind::Oneshot, _) => "still running at its ready_timeout_ms".into(),
                    (_, Some(last)) => last,
                    (_, None) => "no notification".into(),
                };
                self.failed_start(&name, why, since, now);
                continue;
            }
            let Some((seq, purpose)) = s.checks.begin_due(&s.spec.run, now) else {
                continue;
            };
            let probe = match purpose {
                Purpose::Ready => s.spec.run.ready.as_ref().map(|r| &r.probe),
                Purpose::Health => s.spec.run.health.as_ref().map(|h| &h.probe),
            };
            match probe {
                Some(Probe::Exec(argv)) => {
                    let env = s.spawn_env();
                    self.out.push(Action::Spawn {
                        who: Spawnee::Check {
                            service: name.clone(),
                            seq,
                        },
                        cmd: argv.clone(),
                        env,
                        cwd: s.spec.cwd.clone(),
                        inherit_stdin: false,
                        notify_fd: None,
                        // A check belongs to its service: inside its cgroup when it has one.
                        cgroup: self.containment.cgroups.then(|| name.clone()),
                        // A check runs as the service does, its output told under its name.
                        launch: s.spec.launch.clone(),
                    });
                }
                Some(probe) => self.out.push(Action::Probe {
                    service: name.clone(),
                    seq,
                    probe: probe.clone(),
                }),
                None => {}
            }
        }
    }

    /// A service did not become ready in time: stopped, then its restart policy decides as
    /// after a failure.
    fn failed_start(&mut self, name: &str, why: String, since: Instant, now: Instant) {
        self.out.event(Event::NotReady {
            service: name.to_string(),
            why: why.clone(),
            after_ms: ms(now.saturating_duration_since(since)),
        });
        self.cancel_checks(name);
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        s.start_failure = Some(format!("not ready: {why}"));
        if s.then == AfterStop::Stay {
            s.then = AfterStop::Retry;
        }
        self.begin_stop(name, None, now);
    }

    /// An exec check started.
    pub(super) fn check_spawned(&mut self, name: &str, seq: u64, proc: ProcId) {
        let Some(s) = self.services.get_mut(name) else {
            // Its service is gone: the check has nothing to check.
            self.out.signal(proc, Signal::SIGKILL);
            return;
        };
        if s.checks.spawned_check(seq, proc) {
            // Part of its service: a stop of the service takes its check with it.
            self.tracking.spawned_check(proc, name);
        } else {
            self.out.signal(proc, Signal::SIGKILL);
        }
    }

    /// A reaped child was an exec check: its result. Returns whether it was one.
    pub(super) fn check_reaped(&mut self, pid: Pid, status: ExitStatus, now: Instant) -> bool {
        let found = self.services.iter().find_map(|s| {
            s.checks
                .attempt_of(pid)
                .map(|seq| (s.spec.name.clone(), seq))
        });
        let Some((name, seq)) = found else {
            return false;
        };
        // What it left in its process group would pile up, one generation per check: a check
        // is over when its leader is.
        self.out.push(Action::SignalGroup {
            pgid: pid,
            signal: Signal::SIGKILL,
        });
        let result = if status.success() {
            Ok(())
        } else {
            Err(status.to_string())
        };
        self.on_check_result(&name, seq, result, now);
        true
    }

    /// Stops the checks of a service whose main process ended or is being stopped.
    pub(super) fn cancel_checks(&mut self, name: &str) {
        if let Some(s) = self.services.get_mut(name)
            && let Some(p) = s.checks.cancel()
        {
            self.kill_check(p);
        }
    }

    /// An exec check out of time or no longer wanted: it and whatever it started in its
    /// process group (reapd made it the group's leader) are killed.
    fn kill_check(&mut self, check: ProcId) {
        self.out.signal(check, Signal::SIGKILL);
        self.out.push(Action::SignalGroup {
            pgid: check.pid,
            signal: Signal::SIGKILL,
        });
    }

    // ----- the end of a run: restart, done, failed, essential ----------------------------------

    /// Applies the restart policy and limits after the main process ended with `status` (or, with
    /// `start_failure`, failed to become ready).
    pub(super) fn restart(&mut self, name: &str, status: ExitStatus, now: Instant) {
        if self.phase() != Phase::Running {
            return;
        }
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        let start_failure = s.start_failure.take();
        // A start that failed is a failure whatever the process's own status.
        let policy_status = match (&start_failure, status.success()) {
            (Some(_), true) => ExitStatus::Code(1),
            _ => status,
        };
        // An essential service given up on for a failure of reapd's checks ends reapd with 1,
        // not with the signal its stop sent.
        let end_status = if start_failure.is_some() {
            ExitStatus::Code(1)
        } else {
            status
        };
        let oneshot = s.spec.run.kind == ServiceKind::Oneshot;
        let wanted = s.wanted;
        match s.schedule_restart(policy_status, now) {
            Restart::After(delay) => self.out.event(Event::Restarting {
                service: name.to_string(),
                delay_ms: ms(delay),
                restarts: s.restarts,
            }),
            Restart::KeptDown
                if oneshot && wanted && status.success() && start_failure.is_none() =>
            {
                s.state = ServiceState::Done;
                self.out.event(Event::Completed {
                    service: name.to_string(),
                    after_ms: s.ran_for.map_or(0, ms),
                });
                self.status_due = true;
                self.start_waiting();
                self.readiness_changed();
            }
            Restart::KeptDown if wanted && (oneshot || start_failure.is_some()) => {
                let why = start_failure.unwrap_or_else(|| format!("one-shot ended with {status}"));
                self.fail(name, why, end_status, now);
            }
            Restart::KeptDown => {
                self.out.event(Event::KeptDown {
                    service: name.to_string(),
                    restart: s.spec.restart.as_str().into(),
                });
                let essential = wanted && s.spec.run.essential;
                self.readiness_changed();
                if essential {
                    self.essential_ended(name, status, now);
                }
            }
            Restart::Failed(limit) => {
                let why = match start_failure {
                    Some(cause) => format!("{cause}; {limit}"),
                    None => format!("ended with {status}; {limit}"),
                };
                self.fail(name, why, end_status, now);
            }
        }
    }

    /// `name` is given up on: `failed` until `ctl start`; an essential one ends the run.
    pub(super) fn fail(&mut self, name: &str, why: String, status: ExitStatus, now: Instant) {
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        s.state = ServiceState::Failed { why: why.clone() };
        let essential = s.spec.run.essential;
        self.out.event(Event::Failed {
            service: name.to_string(),
            why,
            essential,
        });
        self.status_due = true;
        self.readiness_changed();
        if essential {
            self.essential_ended(name, status, now);
        }
    }

    /// An essential service will not run again: everything is stopped, and reapd exits with the
    /// service's own status (1 if it ended well but failed all the same, as a start that never
    /// became ready), as single-command mode does with its command.
    fn essential_ended(&mut self, name: &str, status: ExitStatus, now: Instant) {
        if self.phase() != Phase::Running {
            return;
        }
        self.command_status = Some(status);
        self.trigger(Trigger::EssentialEnded(name.to_string()), now);
    }
}

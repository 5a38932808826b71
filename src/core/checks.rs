//! Checks: when a service's readiness and health checks run, and what their results mean.
//!
//! Owns: [`Checks`], one per service: the readiness deadline, the next attempt (readiness with a
//! doubling pause, health at its interval), the one attempt in flight with its own deadline, and
//! the health verdict (failures in a row against `retries`, the start period).
//! Must never: run a check itself or decide what happens to the service: it says an attempt is
//! due and what a result means; the supervisor asks the edge to connect or spawn, and restarts or
//! fails the service.

use std::time::{Duration, Instant};

use crate::core::proctree::ProcId;
use crate::wire::config::{Health, PROBE_INTERVAL_MAX, Probe, Readiness, RunSpec};
use crate::wire::text::ms;

/// What an attempt is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Is the service ready yet?
    Ready,
    /// Is the ready service still healthy?
    Health,
}

/// The attempt in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// Its number: a result for an older attempt is ignored.
    pub seq: u64,
    /// What it is for.
    pub purpose: Purpose,
    /// When it began.
    pub began: Instant,
    /// When it counts as failed if no result came.
    pub until: Instant,
    /// An exec check's process, once spawned.
    pub proc: Option<ProcId>,
}

/// A health check's verdict, as `list` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthStatus {
    /// No result yet, or still within the start period.
    Starting,
    /// The last attempt passed.
    Healthy,
    /// Failures in a row, fewer than `retries`.
    Failing(u32),
    /// `retries` failures in a row: the service is restarted.
    Unhealthy,
}

impl HealthStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Failing(_) => "failing",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// What a result means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The service is ready.
    Ready,
    /// Not ready yet: another attempt comes later.
    NotYet,
    /// The health status changed (or a failure was counted); `restart` when it reached
    /// `retries`.
    Health {
        /// The new status.
        status: HealthStatus,
        /// The status changed (or another failure was counted): worth an event.
        changed: bool,
    },
    /// A result for an attempt no longer in flight.
    Stale,
}

/// One service's checks.
#[derive(Clone, Debug, Default)]
pub struct Checks {
    /// While it is not ready yet: when it must be.
    pub ready_by: Option<Instant>,
    next: Option<(Purpose, Instant)>,
    pause: Duration,
    /// The attempt in flight.
    pub attempt: Option<Attempt>,
    health_from: Option<Instant>,
    failures: u32,
    /// The last result of an attempt: `ok`, or why it failed.
    pub last: Option<String>,
    /// The health verdict, once health checks run.
    pub health: Option<HealthStatus>,
    seq: u64,
}

impl Checks {
    /// The main process was spawned: readiness checks begin (polled ones after their first
    /// interval: a program that just started is seldom ready).
    pub fn spawned(&mut self, run: &RunSpec, now: Instant) {
        *self = Checks {
            seq: self.seq,
            ..Checks::default()
        };
        if let Some(limit) = run.oneshot_timeout {
            self.ready_by = Some(now + limit);
        }
        if let Some(Readiness { probe, interval }) = &run.ready {
            self.ready_by = Some(now + run.ready_timeout);
            if !matches!(probe, Probe::NotifyFd(_)) {
                self.pause = *interval;
                self.next = Some((Purpose::Ready, now + *interval));
            }
        }
    }

    /// The service became ready: health checks begin, after their interval.
    pub fn became_ready(&mut self, run: &RunSpec, now: Instant) {
        self.ready_by = None;
        self.next = None;
        if self
            .attempt
            .as_ref()
            .is_some_and(|a| a.purpose == Purpose::Ready)
        {
            self.attempt = None;
        }
        if let Some(h) = &run.health {
            self.health = Some(HealthStatus::Starting);
            self.health_from = Some(now + h.start_period);
            self.next = Some((Purpose::Health, now + h.interval));
        }
    }

    /// The service stopped or exited: nothing more is checked. Returns the exec check still
    /// running, which the caller kills.
    pub fn cancel(&mut self) -> Option<ProcId> {
        self.ready_by = None;
        self.next = None;
        self.health = None;
        self.attempt.take().and_then(|a| a.proc)
    }

    /// The earliest moment something is due.
    pub fn deadline(&self) -> Option<Instant> {
        let next = match self.attempt {
            Some(_) => None,
            None => self.next.map(|(_, at)| at),
        };
        [self.ready_by, next, self.attempt.as_ref().map(|a| a.until)]
            .into_iter()
            .flatten()
            .min()
    }

    /// An attempt due now, begun: its number and purpose. `check_timeout` is how long a health
    /// attempt may take; a readiness attempt may take until the readiness deadline.
    pub fn begin_due(&mut self, run: &RunSpec, now: Instant) -> Option<(u64, Purpose)> {
        if self.attempt.is_some() {
            return None;
        }
        let (purpose, at) = self.next?;
        if at > now {
            return None;
        }
        let until = match (purpose, &run.health) {
            (Purpose::Health, Some(h)) => now + h.timeout,
            _ => self.ready_by.unwrap_or(now + PROBE_INTERVAL_MAX),
        };
        self.next = None;
        self.seq += 1;
        self.attempt = Some(Attempt {
            seq: self.seq,
            purpose,
            began: now,
            until,
            proc: None,
        });
        Some((self.seq, purpose))
    }

    /// An exec attempt's process started.
    pub fn spawned_check(&mut self, seq: u64, proc: ProcId) -> bool {
        match &mut self.attempt {
            Some(a) if a.seq == seq => {
                a.proc = Some(proc);
                true
            }
            _ => false,
        }
    }

    /// The attempt whose exec process has this pid.
    pub fn attempt_of(&self, pid: i32) -> Option<u64> {
        self.attempt
            .as_ref()
            .filter(|a| a.proc.is_some_and(|p| p.pid == pid))
            .map(|a| a.seq)
    }

    /// The attempt in flight that ran out of time, ended as a failure: its process (to kill),
    /// and what the failure means.
    pub fn overdue(&mut self, run: &RunSpec, now: Instant) -> Option<(Option<ProcId>, Verdict)> {
        let a = self.attempt.as_ref().filter(|a| a.until <= now)?;
        let (seq, proc, took) = (a.seq, a.proc, now.saturating_duration_since(a.began));
        let verdict = self.result(
            seq,
            Err(format!("no answer within {} ms", ms(took))),
            run,
            now,
        );
        Some((proc, verdict))
    }

    /// The result of attempt `seq`.
    pub fn result(
        &mut self,
        seq: u64,
        result: Result<(), String>,
        run: &RunSpec,
        now: Instant,
    ) -> Verdict {
        let Some(a) = self.attempt.take_if(|a| a.seq == seq) else {
            return Verdict::Stale;
        };
        self.last = Some(match &result {
            Ok(()) => "ok".into(),
            Err(e) => e.clone(),
        });
        match (a.purpose, result) {
            (Purpose::Ready, Ok(())) => Verdict::Ready,
            (Purpose::Ready, Err(_)) => {
                if let Some(r) = &run.ready {
                    self.next = Some((Purpose::Ready, now + self.pause));
                    self.pause = (self.pause * 2).min(PROBE_INTERVAL_MAX.max(r.interval));
                }
                Verdict::NotYet
            }
            (Purpose::Health, result) => {
                let Some(h) = &run.health else {
                    return Verdict::Stale;
                };
                self.next = Some((Purpose::Health, now + h.interval));
                self.health_result(h, result.is_ok(), now)
            }
        }
    }

    fn health_result(&mut self, h: &Health, ok: bool, now: Instant) -> Verdict {
        let before = self.health;
        let status = if ok {
            self.failures = 0;
            HealthStatus::Healthy
        } else if self.health_from.is_some_and(|t| now < t) {
            // Within the start period a failure does not count (as Docker's start_period).
            before.unwrap_or(HealthStatus::Starting)
        } else {
            self.failures += 1;
            if self.failures >= h.retries {
                self.next = None;
                HealthStatus::Unhealthy
            } else {
                HealthStatus::Failing(self.failures)
            }
        };
        self.health = Some(status);
        Verdict::Health {
            status,
            changed: before != Some(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sim::epoch;
    use crate::wire::config::Readiness;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn run(ready: Option<Probe>, health: Option<Probe>) -> RunSpec {
        RunSpec {
            ready: ready.map(|probe| Readiness {
                probe,
                interval: MS(50),
            }),
            ready_timeout: MS(5000),
            health: health.map(|probe| Health {
                probe,
                interval: MS(1000),
                timeout: MS(200),
                retries: 3,
                start_period: MS(0),
            }),
            ..RunSpec::default()
        }
    }

    #[test]
    fn readiness_attempts_back_off_and_a_pass_makes_it_ready() {
        let t0 = epoch();
        let r = run(Some(Probe::Tcp(8080)), None);
        let mut c = Checks::default();
        c.spawned(&r, t0);
        assert_eq!(
            c.deadline(),
            Some(t0 + MS(50)),
            "the first attempt after one interval"
        );
        assert_eq!(c.begin_due(&r, t0), None, "not due yet");
        let mut at = t0 + MS(50);
        let mut pauses = Vec::new();
        for _ in 0..7 {
            let (seq, purpose) = c.begin_due(&r, at).expect("due");
            assert_eq!(purpose, Purpose::Ready);
            assert_eq!(
                c.result(seq, Err("refused".into()), &r, at),
                Verdict::NotYet
            );
            let next = c.deadline().expect("next attempt");
            pauses.push(next - at);
            at = next;
        }
        assert_eq!(
            pauses,
            [50, 100, 200, 400, 800, 1000, 1000].map(MS),
            "doubling up to 1 s"
        );
        let (seq, _) = c.begin_due(&r, at).expect("due");
        assert_eq!(c.result(seq, Ok(()), &r, at), Verdict::Ready);
        assert_eq!(
            c.result(seq, Ok(()), &r, at),
            Verdict::Stale,
            "answered once"
        );
    }

    #[test]
    fn a_notification_fd_is_waited_for_not_polled() {
        let t0 = epoch();
        let r = run(Some(Probe::NotifyFd(3)), None);
        let mut c = Checks::default();
        c.spawned(&r, t0);
        assert_eq!(
            c.deadline(),
            Some(t0 + MS(5000)),
            "only the readiness deadline"
        );
        assert_eq!(c.begin_due(&r, t0 + MS(4000)), None);
    }

    #[test]
    fn health_counts_failures_in_a_row_and_a_pass_resets_them() {
        let t0 = epoch();
        let r = run(None, Some(Probe::Tcp(1)));
        let mut c = Checks::default();
        c.spawned(&r, t0);
        assert_eq!(c.deadline(), None, "ready at once: nothing to check yet");
        c.became_ready(&r, t0);
        let mut at = t0;
        let mut step = |c: &mut Checks, ok: bool| {
            at = c.deadline().expect("an attempt is due");
            let (seq, p) = c.begin_due(&r, at).expect("due");
            assert_eq!(p, Purpose::Health);
            c.result(seq, if ok { Ok(()) } else { Err("refused".into()) }, &r, at)
        };
        let health = |status, changed| Verdict::Health { status, changed };
        assert_eq!(step(&mut c, true), health(HealthStatus::Healthy, true));
        assert_eq!(step(&mut c, false), health(HealthStatus::Failing(1), true));
        assert_eq!(step(&mut c, true), health(HealthStatus::Healthy, true));
        assert_eq!(step(&mut c, false), health(HealthStatus::Failing(1), true));
        assert_eq!(step(&mut c, false), health(HealthStatus::Failing(2), true));
        assert_eq!(step(&mut c, false), health(HealthStatus::Unhealthy, true));
        assert_eq!(c.deadline(), None, "no more attempts once unhealthy");
    }

    #[test]
    fn an_attempt_without_an_answer_fails_at_its_timeout_and_its_process_is_handed_back() {
        let t0 = epoch();
        let r = run(None, Some(Probe::Exec(vec!["check".into()])));
        let mut c = Checks::default();
        c.spawned(&r, t0);
        c.became_ready(&r, t0);
        let at = t0 + MS(1000);
        let (seq, _) = c.begin_due(&r, at).expect("due");
        let proc = ProcId { pid: 42, start: 7 };
        assert!(c.spawned_check(seq, proc));
        assert_eq!(c.attempt_of(42), Some(seq));
        assert_eq!(
            c.deadline(),
            Some(at + MS(200)),
            "the attempt's own timeout"
        );
        assert_eq!(c.overdue(&r, at + MS(199)), None);
        let (p, v) = c.overdue(&r, at + MS(200)).expect("overdue");
        assert_eq!(p, Some(proc));
        assert_eq!(
            v,
            Verdict::Health {
                status: HealthStatus::Failing(1),
                changed: true
            }
        );
        assert_eq!(c.last.as_deref(), Some("no answer within 200 ms"));
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let t0 = epoch();
        let mut r = run(None, Some(Probe::Tcp(1)));
        if let Some(h) = r.health.as_mut() {
            h.start_period = MS(2500);
        }
        let mut c = Checks::default();
        c.became_ready(&r, t0);
        for i in 1..=2 {
            let at = t0 + MS(1000 * i);
            let (seq, _) = c.begin_due(&r, at).expect("due");
            assert_eq!(
                c.result(seq, Err("x".into()), &r, at),
                Verdict::Health {
                    status: HealthStatus::Starting,
                    changed: false
                }
            );
        }
        let at = t0 + MS(3000);
        let (seq, _) = c.begin_due(&r, at).expect("due");
        assert_eq!(
            c.result(seq, Err("x".into()), &r, at),
            Verdict::Health {
                status: HealthStatus::Failing(1),
                changed: true
            }
        );
        assert_eq!(c.cancel(), None);
        assert_eq!(c.deadline(), None, "cancelled");
    }
}

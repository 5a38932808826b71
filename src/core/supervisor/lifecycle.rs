//! The supervisor's sequencing of a service's life: start-up (after any recovery), spawns and
//! their outcomes, exits and the restart policy, signals, and ticks.

use std::time::Instant;

use nix::sys::signal::Signal;

use crate::core::io::{Action, Mode, Notice, Spawnee};
use crate::core::proctree::{Pid, ProcId};
use crate::core::recovery::Recovery;
use crate::core::requests::Waiter;
use crate::core::service::ServiceState;
use crate::core::shutdown::{Phase, ShutdownInput, Trigger};
use crate::core::teardown::Teardown;
use crate::wire::config::{Leftovers, Probe, ServiceKind, StopScope};
use crate::wire::events::{Event, ExitStatus, Unheeded};
use crate::wire::replies::{ErrorCode, ErrorReply};
use crate::wire::state_file::StateRecord;
use crate::wire::text::ms;

use super::{FORWARDED, Supervisor};

impl Supervisor {
    // ----- starting and restarting -------------------------------------------------------------

    pub(super) fn start(&mut self, predecessor: Option<StateRecord>, now: Instant) {
        let services = &self.services;
        let rec = predecessor
            .map(|r| {
                Recovery::plan(
                    &r,
                    |name| services.get(name).map(|s| &s.spec),
                    self.self_pid,
                    now,
                )
            })
            .filter(|r| !r.owners.is_empty());
        match rec {
            Some(rec) => {
                self.out.event(Event::Recovering {
                    predecessor: rec.predecessor,
                    services: rec.owners.iter().map(|o| o.owner.clone()).collect(),
                });
                self.recovery = Some(rec);
            }
            None => self.start_all(),
        }
    }

    pub(super) fn start_all(&mut self) {
        if self.phase() != Phase::Running {
            // Asked to stop before anything started: start nothing, and say ready so whoever
            // waits for readiness is not left hanging.
            self.announce_ready();
            return;
        }
        let names = self.services.names();
        if names.is_empty() && self.mode == Mode::Config {
            self.out.event(Event::NoServices);
        }
        for name in names {
            if self.services.get(&name).is_some_and(|s| s.wanted) {
                self.request_start(&name);
            }
        }
        self.readiness_changed();
    }

    /// Tells the service manager reapd is ready, once.
    pub(super) fn announce_ready(&mut self) {
        if !self.ready_sent {
            self.ready_sent = true;
            self.out.push(Action::Notify(Notice::Ready));
            self.status_due = true;
        }
    }

    pub(super) fn spawn(&mut self, name: &str) {
        let inherit_stdin = self.mode == Mode::Single;
        let contained = self.containment.cgroups;
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        s.wanted = true;
        s.state = ServiceState::Starting;
        let env = s.spawn_env();
        self.out.push(Action::Spawn {
            who: Spawnee::Service(s.spec.name.clone()),
            cmd: s.spec.cmd.clone(),
            env,
            cwd: s.spec.cwd.clone(),
            inherit_stdin,
            launch: s.spec.launch.clone(),
            notify_fd: match s.spec.run.ready.as_ref().map(|r| &r.probe) {
                Some(Probe::NotifyFd(fd)) => Some(*fd),
                _ => None,
            },
            cgroup: contained.then(|| s.spec.name.clone()),
        });
    }

    pub(super) fn on_spawned(&mut self, who: Spawnee, proc: ProcId, now: Instant) {
        match who {
            Spawnee::Service(name) => {
                let Some(s) = self.services.get_mut(&name) else {
                    return;
                };
                s.started(proc, now);
                let ready = matches!(s.state, ServiceState::Running { ready: true, .. })
                    && s.spec.run.kind == ServiceKind::Longrun;
                self.tracking.spawned_service(proc, &name);
                self.out.event(Event::Spawned {
                    service: name.clone(),
                    pid: proc.pid,
                });
                self.answer_running(&name);
                self.status_due = true;
                if ready {
                    // No readiness check: ready as soon as it runs; its dependents start now.
                    if let Some(s) = self.services.get_mut(&name) {
                        s.checks.became_ready(&s.spec.run, now);
                    }
                    self.start_waiting();
                }
                self.readiness_changed();
            }
            Spawnee::Check { service, seq } => self.check_spawned(&service, seq, proc),
            Spawnee::Hook(index) => {
                if let Teardown::Hooks(h) = &mut self.teardown
                    && h.spawned(index, proc)
                {
                    self.tracking.spawned_hook(proc, index);
                }
            }
        }
    }

    pub(super) fn on_spawn_failed(&mut self, who: Spawnee, error: String, now: Instant) {
        match who {
            Spawnee::Service(name) => {
                self.out.event(Event::SpawnFailed {
                    service: name.clone(),
                    error: error.clone(),
                });
                for to in self.waiters.take(&Waiter::Running(name.clone())) {
                    self.out.answer(
                        &to,
                        Err(ErrorReply::new(
                            ErrorCode::Failed,
                            format!("{name}: cannot start: {error}"),
                        )),
                    );
                }
                // Like a shell: a command that cannot be executed exits 127.
                let status = ExitStatus::Code(127);
                if self.mode == Mode::Single {
                    self.command_status = Some(status);
                    self.trigger(Trigger::CommandExited, now);
                    return;
                }
                if let Some(s) = self.services.get_mut(&name) {
                    s.ended(status, now);
                }
                self.restart(&name, status, now);
            }
            Spawnee::Hook(index) => {
                if let Teardown::Hooks(h) = &mut self.teardown {
                    h.spawn_failed(index, &error);
                }
                self.advance_hooks(now);
            }
            Spawnee::Check { service, seq } => self.on_check_result(
                &service,
                seq,
                Err(format!("cannot run the check: {error}")),
                now,
            ),
        }
    }

    pub(super) fn on_reaped(&mut self, pid: Pid, status: ExitStatus, now: Instant) {
        self.tracking.reaped(pid);
        if let Teardown::Hooks(h) = &mut self.teardown
            && h.reaped(pid, status)
        {
            self.advance_hooks(now);
            return;
        }
        if self.check_reaped(pid, status, now) {
            return;
        }
        let phase = self.phase();
        let mode = self.mode;
        let Some(s) = self.services.by_main_pid(pid) else {
            return;
        };
        let name = s.spec.name.clone();
        self.cancel_checks(&name);
        let Some(s) = self.services.get_mut(&name) else {
            return;
        };
        s.last_exit = Some(status);
        if let ServiceState::Stopping { job, main, since } = &mut s.state {
            let main_id = main.take();
            *since = None;
            let after_ms = Some(ms(now.saturating_duration_since(job.started())));
            // The main process counts as a member of the tree: let the job see it gone.
            let outs = main_id.map(|m| job.on_gone(m, now)).unwrap_or_default();
            let done = job.is_done();
            self.out.event(Event::Exited {
                service: name.clone(),
                pid,
                status,
                after_ms,
            });
            self.perform(outs, Some(&name));
            if done {
                self.finish_stop(&name, now);
                self.check_progress(now);
            }
            return;
        }
        self.out.event(Event::Exited {
            service: name.clone(),
            pid,
            status,
            after_ms: None,
        });
        s.ended(status, now);
        self.status_due = true;
        if mode == Mode::Single {
            self.command_status = Some(status);
            self.trigger(Trigger::CommandExited, now);
            return;
        }
        if phase != Phase::Running {
            return;
        }
        if s.spec.leftovers == Leftovers::Stop {
            // Whatever the main process left running is stopped before the service runs again,
            // or every restart would add another generation of orphans.
            s.leftovers_of = Some(status);
            s.begin_stop(None, StopScope::Tree, now);
        } else {
            self.restart(&name, status, now);
        }
    }

    // ----- signals and ticks -------------------------------------------------------------------

    pub(super) fn on_signal(&mut self, sig: Signal, now: Instant) {
        match (self.mode, sig) {
            (_, Signal::SIGTERM | Signal::SIGINT) | (Mode::Config, Signal::SIGQUIT) => {
                self.trigger(Trigger::Signal(sig), now)
            }
            (Mode::Single, s) if FORWARDED.contains(&s) => self.forwards.push(s),
            (Mode::Config, Signal::SIGHUP) if self.phase() == Phase::Running => {
                self.out.event(Event::Reloading {
                    by: "SIGHUP".into(),
                });
                self.out.push(Action::LoadConfig { reply: None });
            }
            (_, other) => {
                let why = match other {
                    Signal::SIGCONT => Unheeded::Harmless,
                    Signal::SIGHUP => Unheeded::ShuttingDown,
                    _ => Unheeded::NoAction,
                };
                self.out.event(Event::Unheeded {
                    signal: other.as_str().into(),
                    why,
                });
            }
        }
    }

    pub(super) fn on_tick(&mut self, now: Instant) {
        if self.phase() == Phase::Running {
            let due: Vec<String> = self
                .services
                .iter()
                .filter(|s| s.restart_at().is_some_and(|t| t <= now))
                .map(|s| s.spec.name.clone())
                .collect();
            for name in due {
                self.request_start(&name);
            }
            self.tick_checks(now);
        }
        // The end of a graceful part freezes and kills at once: each stop's answer is carried
        // out under its owner's name.
        let mut outs = Vec::new();
        for svc in self.services.iter_mut() {
            let name = svc.spec.name.clone();
            if let Some(job) = svc.job_mut() {
                outs.push((Some(name), job.on_tick(now)));
            }
        }
        if let Some(rec) = self.recovery.as_mut() {
            for o in &mut rec.owners {
                outs.push((Some(o.owner.clone()), o.job.on_tick(now)));
            }
        }
        for job in self.teardown.jobs_mut() {
            outs.push((None, job.on_tick(now)));
        }
        for (who, out) in outs {
            if !out.is_empty() {
                self.perform(out, who.as_deref());
            }
        }
        if let Teardown::Hooks(h) = &mut self.teardown {
            h.tick(now, &mut self.out);
        }
        self.shutdown_input(ShutdownInput::Tick, now);
    }
}

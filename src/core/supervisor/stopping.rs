//! The supervisor's sequencing of stops: scans fed to every stop in progress, the one stop
//! procedure for services, and the shutdown's stages (waves, killing, the sweep, hooks) as the
//! phase machine moves.

use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use nix::sys::signal::Signal;

use crate::core::hooks::Hooks;
use crate::core::io::{Action, Notice};
use crate::core::proctree::{Owner, Pid, ProcId, Snapshot};
use crate::core::recovery::Recovery;
use crate::core::requests::Waiter;
use crate::core::service::{AfterStop, Service, ServiceState};
use crate::core::shutdown::{Phase, ShutdownInput, Step, StopSpec, Trigger};
use crate::core::stop::{JobOut, StopHow, StopJob};
use crate::core::sweep;
use crate::core::teardown::{Reporting, Teardown};
use crate::wire::config::StopScope;
use crate::wire::events::ExitStatus;
use crate::wire::events::{Event, PlanEntry};
use crate::wire::replies::{ErrorCode, ErrorReply, Reply};
use crate::wire::signal_names::signal_name;
use crate::wire::text::ms;

use super::Supervisor;

impl Supervisor {
    // ----- scans -------------------------------------------------------------------------------

    pub(super) fn on_scan(&mut self, snap: Snapshot, now: Instant) {
        if let Teardown::Reporting(Reporting::LastLook(_)) = self.teardown {
            self.last_look(&snap, now);
            return;
        }
        if snap.partial {
            self.on_check(&snap, now);
            return;
        }
        let owners = self.tracking.scanned(&snap);
        self.deliver_forwards(&snap);
        // Service stops.
        let mut finished = Vec::new();
        let mut outs = Vec::new();
        for svc in self.services.iter_mut() {
            let name = svc.spec.name.clone();
            let main = svc.main();
            let Some(job) = svc.job_mut() else {
                continue;
            };
            if !job.wants_look() {
                continue;
            }
            let mut members: Vec<Pid> = owners
                .iter()
                .filter(|(_, o)| matches!(o, Owner::Service(n) if *n == name))
                .map(|(p, _)| *p)
                .collect();
            if let Some(m) = main
                && snap.get(m).is_some()
                && !members.contains(&m.pid)
            {
                members.push(m.pid);
            }
            if let Some(group) = snap.groups.get(&name) {
                let group: HashSet<Pid> = group.iter().copied().collect();
                job.set_outside_group(members.iter().any(|p| !group.contains(p)));
            }
            outs.push((Some(name.clone()), job.on_scan(&snap, &members, now)));
            // The main process is our child: the stop is complete once it is reaped, so its exit
            // status is always reported before the service counts as stopped.
            if job.is_done() && main.is_none() {
                finished.push(name);
            }
        }
        // What a predecessor that died without cleaning up left running.
        if let Some(rec) = self.recovery.as_mut() {
            for o in &mut rec.owners {
                if !o.job.wants_look() {
                    continue;
                }
                let members = o.members(&snap);
                if !o.job.has_seen_any() && !members.is_empty() {
                    self.out.event(Event::LeftByPredecessor {
                        service: o.owner.clone(),
                        pids: members.clone(),
                    });
                }
                outs.push((Some(o.owner.clone()), o.job.on_scan(&snap, &members, now)));
            }
        }
        let stopping: BTreeSet<&str> = self
            .services
            .iter()
            .filter(|s| s.job().is_some())
            .map(|s| s.name())
            .collect();
        match &mut self.teardown {
            // Orphans of no known service, during the first wave.
            Teardown::Draining {
                orphans: Some(job), ..
            } if job.wants_look() => {
                let members: Vec<Pid> = owners
                    .iter()
                    .filter(|(_, o)| **o == Owner::Unknown)
                    .map(|(p, _)| *p)
                    .collect();
                outs.push((None, job.on_scan(&snap, &members, now)));
            }
            // Everything left at Killing time, and what the sweep finds.
            Teardown::Killing { leftovers, swept } if leftovers.wants_look() => {
                let mut members: Vec<Pid> = owners
                    .iter()
                    .filter(|(_, o)| match o {
                        Owner::Service(n) => !stopping.contains(n.as_str()),
                        Owner::Hook(_) | Owner::Unknown => true,
                    })
                    .map(|(p, _)| *p)
                    .collect();
                let found = swept.get_or_insert_with(|| {
                    let found =
                        sweep::targets(&snap, self.services.iter().map(|s| &s.spec), &owners);
                    for (id, reason) in &found {
                        self.out.event(Event::Sweep {
                            pid: id.pid,
                            cmdline: snap.get(*id).map(|p| p.describe()).unwrap_or_default(),
                            reason: reason.clone(),
                        });
                    }
                    found
                });
                let protected = snap.protected();
                for id in found.keys() {
                    if snap.get(*id).is_some() {
                        members.push(id.pid);
                        members.extend(snap.descendants(id.pid));
                    }
                }
                members.retain(|p| !protected.contains(p));
                members.sort_unstable();
                members.dedup();
                outs.push((None, leftovers.on_scan(&snap, &members, now)));
            }
            // An overrunning cleanup hook: services and leftovers are gone by now (but for what
            // survived the kill), so every other descendant is the hook's, even children it left
            // that were never seen while it ran.
            Teardown::Hooks(h) => {
                let survivors = h.survivors.clone();
                if let Some(job) = h.reaper_mut().filter(|j| j.wants_look()) {
                    let members: Vec<Pid> = owners
                        .keys()
                        .copied()
                        .filter(|p| {
                            snap.procs
                                .get(p)
                                .is_none_or(|i| !survivors.contains(&i.id()))
                        })
                        .collect();
                    outs.push((None, job.on_scan(&snap, &members, now)));
                }
            }
            _ => {}
        }
        for (who, o) in outs {
            self.perform(o, who.as_deref());
        }
        for name in finished {
            self.finish_stop(&name, now);
        }
        self.check_progress(now);
    }

    /// A check of held processes' states: it concerns the stops that asked for it, and nothing
    /// else (it shows too little for attribution or a sweep).
    fn on_check(&mut self, snap: &Snapshot, now: Instant) {
        let mut outs = Vec::new();
        for svc in self.services.iter_mut() {
            let name = svc.spec.name.clone();
            if let Some(job) = svc.job_mut().filter(|j| !j.wants_check().is_empty()) {
                outs.push((Some(name), job.on_scan(snap, &[], now)));
            }
        }
        if let Some(rec) = self.recovery.as_mut() {
            for o in &mut rec.owners {
                if !o.job.wants_check().is_empty() {
                    outs.push((Some(o.owner.clone()), o.job.on_scan(snap, &[], now)));
                }
            }
        }
        for job in self.teardown.jobs_mut() {
            if !job.wants_check().is_empty() {
                outs.push((None, job.on_scan(snap, &[], now)));
            }
        }
        for (who, o) in outs {
            self.perform(o, who.as_deref());
        }
        self.check_progress(now);
    }

    /// Turns a stop's outputs into actions and events.
    pub(super) fn perform(&mut self, outs: Vec<JobOut>, service: Option<&str>) {
        for o in outs {
            match o {
                JobOut::Signal { proc, signal, what } => {
                    self.tracking.touch(proc, format!("[{what}]"));
                    self.out.signal(proc, signal);
                }
                JobOut::Watch(proc) => self.out.push(Action::Watch(proc)),
                JobOut::Signalled { signal, pids } => self.out.event(Event::Signalled {
                    service: service.map(str::to_string),
                    signal: signal.as_str().into(),
                    pids,
                }),
                JobOut::Killed { pids } => self.out.event(Event::Killed {
                    service: service.map(str::to_string),
                    count: pids.len(),
                    pids,
                }),
                JobOut::KillGroup => {
                    if let Some(name) = service {
                        self.out.push(Action::KillGroup(name.to_string()));
                    }
                }
            }
        }
    }

    /// Single-command mode: passes queued signals on to the command's process group.
    pub(super) fn deliver_forwards(&mut self, snap: &Snapshot) {
        let sigs = std::mem::take(&mut self.forwards);
        let main = self.services.iter().next().and_then(Service::main);
        let group: Vec<ProcId> = main.map_or_else(Vec::new, |m| {
            snap.procs
                .values()
                .filter(|p| p.pgid == m.pid && !p.is_dead())
                .map(|p| p.id())
                .collect()
        });
        for sig in sigs {
            self.out.event(Event::Forwarded {
                signal: sig.as_str().into(),
                pgid: main.map(|m| m.pid),
                count: group.len(),
            });
            for &id in &group {
                let desc = snap.get(id).map(|p| p.describe()).unwrap_or_default();
                self.tracking.touch(id, desc);
                self.out.signal(id, sig);
            }
        }
    }

    /// A service's cgroup is empty: its stop, if one is under way, is over without a scan.
    pub(super) fn on_group_empty(&mut self, name: &str, now: Instant) {
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        let main = s.main();
        let Some(job) = s.job_mut() else {
            return;
        };
        job.on_empty();
        // The main process is our child: the stop completes once it is reaped.
        if job.is_done() && main.is_none() {
            self.finish_stop(name, now);
        }
        self.check_progress(now);
    }

    pub(super) fn on_gone(&mut self, id: ProcId, now: Instant) {
        self.tracking.gone(id);
        // A held parent left without children gets its signal at once: no scan in between.
        let outs = self.feed_jobs(|job| job.on_gone(id, now));
        for (owner, o) in outs {
            self.perform(o, owner.as_deref());
        }
        self.check_progress(now);
    }

    /// Feeds every stop in progress, and returns what each answered, with whose stop it is (a
    /// service's, a predecessor's owner's, or none for the shutdown's own stops).
    pub(super) fn feed_jobs(
        &mut self,
        mut f: impl FnMut(&mut StopJob) -> Vec<JobOut>,
    ) -> Vec<(Option<String>, Vec<JobOut>)> {
        let mut outs = Vec::new();
        for s in self.services.iter_mut() {
            let name = s.spec.name.clone();
            if let Some(job) = s.job_mut() {
                outs.push((Some(name), f(job)));
            }
        }
        if let Some(rec) = self.recovery.as_mut() {
            for o in &mut rec.owners {
                outs.push((Some(o.owner.clone()), f(&mut o.job)));
            }
        }
        for job in self.teardown.jobs_mut() {
            outs.push((None, f(job)));
        }
        outs.retain(|(_, o)| !o.is_empty());
        outs
    }

    // ----- stopping ----------------------------------------------------------------------------

    /// Starts (or tightens) the stop procedure of a service. The one path every stop goes through.
    pub(super) fn begin_stop(&mut self, name: &str, deadline: Option<Instant>, now: Instant) {
        let Some(s) = self.services.get_mut(name) else {
            return;
        };
        let scope = s.spec.stop_scope;
        let stop_signal = s.spec.stop_signal;
        let started = s.begin_stop(deadline, scope, now);
        if self.containment.cgroups
            && let Some(job) = s.job_mut()
        {
            job.contain();
        }
        self.cancel_checks(name);
        if let Some(timeout) = started {
            self.out.event(Event::Stopping {
                service: name.to_string(),
                signal: signal_name(stop_signal as i32),
                timeout_ms: ms(timeout),
                scope: scope.as_str().into(),
            });
        }
    }

    pub(super) fn finish_stop(&mut self, name: &str, now: Instant) {
        let Some(svc) = self.services.get_mut(name) else {
            return;
        };
        let ServiceState::Stopping { job, .. } =
            std::mem::replace(&mut svc.state, ServiceState::Down)
        else {
            return;
        };
        let then = std::mem::replace(&mut svc.then, AfterStop::Stay);
        let last_exit = svc.last_exit;
        let wanted = svc.wanted;
        let leftovers_of = svc.leftovers_of.take();
        let how = job.outcome().unwrap_or(StopHow::Killed);
        let elapsed_ms = ms(now.saturating_duration_since(job.started()));
        // A main process that left nothing behind needs no report.
        if leftovers_of.is_none() || how != StopHow::Idle {
            self.out.event(Event::Stopped {
                service: name.to_string(),
                how: how.as_str().into(),
                elapsed_ms,
                leftovers: leftovers_of.is_some(),
                cgroup_empty: job.confirmed_by_cgroup(),
            });
        }
        self.status_due = true;
        let running = self.phase() == Phase::Running;
        for to in self.waiters.take(&Waiter::Stopped(name.to_string())) {
            self.out.answer(
                &to,
                Ok(Reply::Service {
                    name: name.into(),
                    state: "stopped".into(),
                    pid: None,
                    how: Some(how.as_str().into()),
                    elapsed_ms: Some(elapsed_ms),
                }),
            );
        }
        match then {
            AfterStop::Stay => {
                if let Some(status) = leftovers_of {
                    self.restart(name, status, now);
                }
            }
            AfterStop::Remove => {
                self.services.remove(name);
                self.refresh_roots();
                if self.containment.cgroups {
                    self.out.push(Action::RemoveGroup(name.to_string()));
                }
                self.out.event(Event::Removed {
                    service: name.to_string(),
                });
                for to in self.waiters.take(&Waiter::Running(name.to_string())) {
                    self.out.answer(
                        &to,
                        Err(ErrorReply::new(
                            ErrorCode::NoSuchService,
                            format!("{name} was removed from the config"),
                        )),
                    );
                }
            }
            AfterStop::Replace(spec) => {
                if let Some(svc) = self.services.get_mut(name) {
                    svc.spec = *spec;
                }
                if running && wanted {
                    self.request_start(name);
                }
            }
            AfterStop::Start => {
                if running {
                    self.request_start(name);
                }
            }
            AfterStop::Retry => {
                self.restart(name, last_exit.unwrap_or(ExitStatus::Code(1)), now);
            }
        }
        if !running {
            for to in self.waiters.take(&Waiter::Running(name.to_string())) {
                self.out.answer(
                    &to,
                    Err(ErrorReply::new(
                        ErrorCode::ShuttingDown,
                        format!(
                            "{name} was stopped, but shutdown began before it could start again"
                        ),
                    )),
                );
            }
        }
        if self.phase() == Phase::Draining {
            self.shutdown_input(ShutdownInput::ServiceStopped(name.to_string()), now);
        }
    }

    /// Moves things forward once a stop, the recovery, a wave, the kill or a hook is over.
    pub(super) fn check_progress(&mut self, now: Instant) {
        if self.recovery.as_ref().is_some_and(Recovery::is_done)
            && let Some(rec) = self.recovery.take()
        {
            for o in &rec.owners {
                self.out.event(Event::Recovered {
                    service: o.owner.clone(),
                    how: o.job.outcome().map_or("killed", StopHow::as_str).into(),
                });
            }
            if self.phase() == Phase::Running {
                self.start_all();
            } else {
                self.announce_ready();
            }
        }
        if let Teardown::Draining { orphans, .. } = &mut self.teardown
            && orphans.as_ref().is_some_and(StopJob::is_done)
        {
            *orphans = None;
            self.shutdown_input(ShutdownInput::OrphansStopped, now);
        }
        if let Teardown::Killing { leftovers, .. } = &self.teardown
            && leftovers.is_done()
            && self.services.iter().all(|s| s.job().is_none())
            && self.recovery.is_none()
            && self.tracking.touched.is_empty()
        {
            self.shutdown_input(ShutdownInput::KillFinished, now);
        }
        if let Teardown::Hooks(h) = &self.teardown
            && h.ready_to_advance()
        {
            self.advance_hooks(now);
        }
    }

    pub(super) fn trigger(&mut self, t: Trigger, now: Instant) {
        // Whoever still waits for reapd to be ready must not wait through its shutdown.
        self.announce_ready();
        for to in self.waiters.take(&Waiter::Ready) {
            self.out.answer(
                &to,
                Err(ErrorReply::new(
                    ErrorCode::ShuttingDown,
                    "reapd began to shut down before every service was ready",
                )),
            );
        }
        self.shutdown_input(ShutdownInput::Trigger(t), now);
    }

    pub(super) fn shutdown_input(&mut self, input: ShutdownInput, now: Instant) {
        // Only the trigger that starts the shutdown plans the waves: the list costs
        // O(services) and is not built for every tick and every wave's end.
        let specs: Vec<StopSpec> = if self.shutdown.needs_specs(&input) {
            self.services
                .iter()
                .map(|s| StopSpec {
                    name: s.spec.name.clone(),
                    after: s.spec.after.clone(),
                    stop_timeout: s.spec.stop_timeout,
                })
                .collect()
        } else {
            Vec::new()
        };
        for step in self.shutdown.on_input(input, &specs, now) {
            self.apply(step, now);
        }
    }

    pub(super) fn apply(&mut self, step: Step, now: Instant) {
        match step {
            Step::Entered { phase, reason } => {
                self.out.event(Event::State {
                    state: phase.as_str().into(),
                    reason: reason.clone(),
                });
                if phase == Phase::Draining {
                    self.out.push(Action::Notify(Notice::Stopping));
                    for s in self.services.iter_mut() {
                        if let ServiceState::Backoff { .. } = s.state {
                            s.state = ServiceState::Down;
                        }
                    }
                    self.teardown = Teardown::Draining { orphans: None };
                }
                self.out.push(Action::Notify(Notice::Status(format!(
                    "{}: {reason}",
                    phase.as_str()
                ))));
            }
            Step::AlreadyStopping { trigger, phase } => self.out.event(Event::AlreadyStopping {
                trigger,
                state: phase.as_str().into(),
            }),
            Step::CloseListener => self.out.push(Action::CloseListener),
            Step::Announce(plan) => self.out.event(Event::ShutdownPlan {
                budget_ms: ms(plan.budget),
                reserve_ms: ms(plan.reserve),
                services: plan
                    .stops
                    .into_iter()
                    .map(|s| PlanEntry {
                        service: s.service,
                        after: s.after,
                        requested_ms: ms(s.requested),
                        share_ms: ms(s.share),
                        starts_ms: ms(s.starts),
                    })
                    .collect(),
            }),
            Step::StopServices(list) => {
                for (name, deadline) in &list {
                    self.begin_stop(name, Some(*deadline), now);
                }
                self.check_progress(now);
            }
            Step::StopOrphans { deadline } => {
                if let Teardown::Draining { orphans, .. } = &mut self.teardown {
                    let timeout = deadline.saturating_duration_since(now);
                    let mut job =
                        StopJob::new(Signal::SIGTERM, StopScope::Tree, None, timeout, now);
                    if self.blind {
                        job.set_blind(now);
                    }
                    *orphans = Some(job);
                }
            }
            Step::EndGrace => {
                for to in self.waiters.take_all() {
                    self.out.answer(
                        &to,
                        Err(ErrorReply::new(
                            ErrorCode::ShuttingDown,
                            "request not finished within grace_ms of the shutdown",
                        )),
                    );
                }
                self.out.push(Action::CloseIdle);
            }
            Step::KillEverything => {
                // Services still stopping (or still running, after a second SIGINT) are killed by
                // their own stop; everything else left over is the leftovers' kill's. Orphans
                // still alive are the leftovers' now.
                let names = self.services.names();
                let mut outs = Vec::new();
                for name in names {
                    let Some(s) = self.services.get_mut(&name) else {
                        continue;
                    };
                    match &mut s.state {
                        ServiceState::Stopping { job, .. } => {
                            job.clip(now);
                            outs.push((Some(name.clone()), job.escalate(now)));
                        }
                        ServiceState::Running { main, since, .. } => {
                            let (main, since) = (*main, *since);
                            let mut job = Box::new(StopJob::kill_now(now));
                            if self.containment.cgroups {
                                job.contain();
                            }
                            s.state = ServiceState::Stopping {
                                job,
                                main: Some(main),
                                since: Some(since),
                            };
                        }
                        ServiceState::Backoff { .. } | ServiceState::Waiting => {
                            s.state = ServiceState::Down
                        }
                        ServiceState::Down
                        | ServiceState::Starting
                        | ServiceState::Done
                        | ServiceState::Failed { .. } => {}
                    }
                }
                if let Some(rec) = self.recovery.as_mut() {
                    rec.clip(now);
                    outs.extend(rec.escalate(now).into_iter().map(|(o, out)| (Some(o), out)));
                }
                self.teardown = Teardown::Killing {
                    leftovers: StopJob::kill_now(now),
                    swept: None,
                };
                for (who, out) in outs {
                    self.perform(out, who.as_deref());
                }
            }
            Step::RunHooks { deadline } => {
                let survivors = self.tracking.touched.keys().copied().collect();
                self.teardown = Teardown::Hooks(Hooks::new(deadline, survivors));
                self.advance_hooks(now);
            }
            Step::Finish => self.finish(now),
        }
    }

    // ----- cleanup hooks -----------------------------------------------------------------------

    pub(super) fn advance_hooks(&mut self, now: Instant) {
        if self.phase() != Phase::Killing {
            return;
        }
        let Teardown::Hooks(h) = &mut self.teardown else {
            return;
        };
        if h.advance(&self.cfg.cleanup, now, &mut self.out, &mut self.failures) {
            self.shutdown_input(ShutdownInput::HooksFinished, now);
        }
    }
}

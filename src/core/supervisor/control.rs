//! The supervisor's answers to the control socket: requests (some answered later, through the
//! waiters) and applying a reloaded config.

use std::time::Instant;

use crate::core::io::{Action, Mode, ReplyTo};
use crate::core::outbox::Answer;
use crate::core::reload;
use crate::core::requests::{self, Waiter};
use crate::core::service::{AfterStop, ServiceState};
use crate::core::shutdown::{Phase, Trigger};
use crate::wire::config::{Config, ConfigError};
use crate::wire::events::Event;
use crate::wire::protocol::Request;
use crate::wire::replies::{ErrorCode, ErrorReply, Reply};

use super::{MAX_REPORTED_ERRORS, Supervisor};

/// Most `wait` requests held at once: each holds a connection, and the control socket must keep
/// room for probes (`ping`, `ready`).
pub const MAX_READY_WAITERS: usize = 16;

impl Supervisor {
    // ----- control requests --------------------------------------------------------------------

    pub(super) fn on_request(&mut self, to: ReplyTo, req: Request, now: Instant) {
        if req.is_mutating() && self.phase() != Phase::Running {
            let msg = format!(
                "reapd is {}; it no longer starts, stops or reloads anything",
                self.phase().as_str()
            );
            self.out
                .answer(&to, Err(ErrorReply::new(ErrorCode::ShuttingDown, msg)));
            return;
        }
        let answer: Answer = match req {
            Request::Ping => Ok(Reply::Pong { pong: true }),
            Request::Status => Ok(requests::status(
                self.phase().as_str(),
                self.self_pid,
                self.mode,
                now.saturating_duration_since(self.started),
                &self.services,
                &self.containment,
                &self.accounted,
            )),
            Request::List => Ok(requests::list(&self.services, now, &self.accounted)),
            Request::Watch => {
                self.watchers.insert(to.0);
                Ok(Reply::Watching {
                    watching: true,
                    state: self.phase().as_str().into(),
                })
            }
            Request::Logs {
                name,
                lines,
                follow,
            } => match self.services.get(&name) {
                None => Err(requests::no_such(&name, &self.services)),
                Some(s) => {
                    // The lines are the edge's: it holds the pipes and each service's tail.
                    self.out.push(Action::Logs {
                        to,
                        name,
                        captured: s.spec.launch.log.piped(),
                        lines: lines.unwrap_or(crate::wire::loglines::DEFAULT_LINES),
                        follow,
                    });
                    return;
                }
            },
            Request::Ready => Ok(self.ready_reply()),
            Request::Wait => {
                let reply = self.ready_reply();
                if self.phase() != Phase::Running {
                    Err(ErrorReply::new(
                        ErrorCode::ShuttingDown,
                        format!(
                            "reapd is {}: its services will not become ready",
                            self.phase().as_str()
                        ),
                    ))
                } else if matches!(reply, Reply::Ready { ready: true, .. })
                    || !self.readiness_on_its_way()
                {
                    // Ready, or never going to be without a client's help: answered now.
                    Ok(reply)
                } else if self.waiters.count(&Waiter::Ready) >= MAX_READY_WAITERS {
                    // Each waiter holds a connection: past this, probes would find no slot.
                    Err(ErrorReply::new(
                        ErrorCode::Failed,
                        format!(
                            "{MAX_READY_WAITERS} clients already wait for readiness; ask `ready` instead, or wait later"
                        ),
                    ))
                } else {
                    self.waiters.push(to, Waiter::Ready);
                    return;
                }
            }
            Request::Shutdown => {
                self.trigger(Trigger::Request, now);
                Ok(Reply::ShuttingDown {
                    state: self.phase().as_str().into(),
                })
            }
            Request::Reload if self.mode == Mode::Single => Err(ErrorReply::new(
                ErrorCode::Failed,
                "nothing to reload: reapd runs a single command, not a config file",
            )),
            Request::Reload => {
                self.out.event(Event::Reloading {
                    by: "reload request".into(),
                });
                self.out.push(Action::LoadConfig { reply: Some(to) });
                return;
            }
            Request::Start { name } | Request::Restart { name }
                if self
                    .services
                    .get(&name)
                    .is_some_and(|s| s.then == AfterStop::Remove) =>
            {
                Err(ErrorReply::new(
                    ErrorCode::NoSuchService,
                    format!(
                        "{name} is being removed: it is no longer in the config file (add it back and reload)"
                    ),
                ))
            }
            Request::Start { name } => match self.services.get_mut(&name) {
                None => Err(requests::no_such(&name, &self.services)),
                Some(s) => match s.state {
                    ServiceState::Running { .. } => Ok(requests::running(&self.services, &name)),
                    // Answered once it runs, like any start.
                    ServiceState::Waiting => {
                        s.wanted = true;
                        self.waiters.push(to, Waiter::Running(name));
                        return;
                    }
                    ServiceState::Stopping { .. } => {
                        if s.then == AfterStop::Stay {
                            s.then = AfterStop::Start;
                        }
                        self.waiters.push(to, Waiter::Running(name));
                        return;
                    }
                    ServiceState::Starting => {
                        self.waiters.push(to, Waiter::Running(name));
                        return;
                    }
                    _ => {
                        // A client's start forgives a restart limit reached before.
                        s.recent_restarts.clear();
                        s.wanted = true;
                        self.waiters.push(to, Waiter::Running(name.clone()));
                        self.request_start(&name);
                        return;
                    }
                },
            },
            Request::Stop { name } => match self.services.get_mut(&name) {
                None => Err(requests::no_such(&name, &self.services)),
                Some(s) => {
                    s.wanted = false;
                    if s.then == AfterStop::Start {
                        s.then = AfterStop::Stay;
                    }
                    // A start or restart still waiting for it will not get what it waits for.
                    for earlier in self.waiters.take(&Waiter::Running(name.clone())) {
                        self.out.answer(
                            &earlier,
                            Err(ErrorReply::new(
                                ErrorCode::Superseded,
                                format!(
                                    "{name} was stopped by a later stop request before it could run again"
                                ),
                            )),
                        );
                    }
                    self.waiters.push(to, Waiter::Stopped(name.clone()));
                    self.begin_stop(&name, None, now);
                    return;
                }
            },
            Request::Restart { name } => match self.services.get_mut(&name) {
                None => Err(requests::no_such(&name, &self.services)),
                Some(s) => {
                    if s.then == AfterStop::Stay {
                        s.then = AfterStop::Start;
                    }
                    s.wanted = true;
                    self.waiters.push(to, Waiter::Running(name.clone()));
                    self.begin_stop(&name, None, now);
                    return;
                }
            },
            Request::Signal { name, signal } => match self.services.get(&name) {
                None => Err(requests::no_such(&name, &self.services)),
                Some(s) => match s.main() {
                    None => Err(ErrorReply::new(
                        ErrorCode::NotRunning,
                        format!("{name} has no running main process ({})", s.state_name()),
                    )),
                    Some(main) => {
                        self.tracking.touch(main, s.spec.cmd.join(" "));
                        self.out.signal(main, signal);
                        self.out.event(Event::SignalSent {
                            service: name.clone(),
                            pid: main.pid,
                            signal: signal.as_str().into(),
                        });
                        Ok(Reply::SignalSent {
                            name,
                            pid: main.pid,
                            signal: signal.as_str().into(),
                        })
                    }
                },
            },
        };
        self.out.answer(&to, answer);
    }

    /// The answer to `ready`.
    fn ready_reply(&self) -> Reply {
        let not_ready = if self.phase() == Phase::Running {
            self.not_ready()
        } else {
            self.services.names()
        };
        Reply::Ready {
            ready: not_ready.is_empty() && self.phase() == Phase::Running,
            not_ready,
        }
    }

    /// Answers everyone waiting for `name` to run.
    pub(super) fn answer_running(&mut self, name: &str) {
        for to in self.waiters.take(&Waiter::Running(name.to_string())) {
            self.out
                .answer(&to, Ok(requests::running(&self.services, name)));
        }
    }

    // ----- reload ------------------------------------------------------------------------------

    pub(super) fn on_config(
        &mut self,
        result: Result<Config, Vec<ConfigError>>,
        reply: Option<ReplyTo>,
        now: Instant,
    ) {
        if self.phase() != Phase::Running {
            if let Some(to) = reply {
                self.out.answer(
                    &to,
                    Err(ErrorReply::new(
                        ErrorCode::ShuttingDown,
                        "shutdown began before the reload could be applied",
                    )),
                );
            }
            return;
        }
        let mut new = match result {
            Ok(c) => c,
            Err(errors) => {
                let mut list: Vec<String> = errors
                    .iter()
                    .take(MAX_REPORTED_ERRORS)
                    .map(ToString::to_string)
                    .collect();
                if errors.len() > MAX_REPORTED_ERRORS {
                    list.push(format!(
                        "… and {} more (`reapd check --config FILE` prints them all)",
                        errors.len() - MAX_REPORTED_ERRORS
                    ));
                }
                self.out.event(Event::ReloadRejected {
                    errors: list.clone(),
                    total: errors.len(),
                });
                if let Some(to) = reply {
                    self.out.answer(
                        &to,
                        Err(ErrorReply {
                            code: ErrorCode::ConfigError,
                            error: format!(
                                "config rejected ({} error{}); nothing changed",
                                errors.len(),
                                if errors.len() == 1 { "" } else { "s" }
                            ),
                            errors: list,
                        }),
                    );
                }
                return;
            }
        };
        if let Some(ms) = self.shutdown_override
            && let Err(e) = new.set_shutdown_timeout(ms)
        {
            new.warnings.push(format!("--shutdown-timeout: {e}"));
        }
        if new.socket.is_some() && new.socket != self.cfg.socket {
            new.warnings.push(
                "the control socket path changed in the config; it takes effect only after a restart of reapd"
                    .into(),
            );
        }
        for warning in std::mem::take(&mut new.warnings) {
            self.out.event(Event::ConfigWarning { warning });
        }
        let plan = reload::plan(&self.services, &new);
        let (to_stop, rerun) = reload::apply(&mut self.services, &new, &plan);
        self.shutdown.reconfigure(
            new.shutdown_timeout,
            new.effective_grace(),
            !new.cleanup.is_empty(),
        );
        self.cfg = Config {
            services: Vec::new(),
            ..new
        };
        self.refresh_roots();
        self.out.event(Event::Reloaded {
            added: plan.added.clone(),
            removed: plan.removed.clone(),
            changed: plan.changed.clone(),
        });
        for name in &to_stop {
            self.begin_stop(name, None, now);
        }
        for name in plan.added.iter().chain(&rerun) {
            // One still stopping starts once its stop is over (see `AfterStop`).
            if self
                .services
                .get(name)
                .is_some_and(|s| matches!(s.state, ServiceState::Down) && s.wanted)
            {
                self.request_start(name);
            }
        }
        // A changed `after` may have released a waiting service.
        self.start_waiting();
        self.readiness_changed();
        if let Some(to) = reply {
            self.out.answer(
                &to,
                Ok(Reply::Reloaded {
                    added: plan.added,
                    removed: plan.removed,
                    changed: plan.changed,
                }),
            );
        }
        self.status_due = true;
    }
}
